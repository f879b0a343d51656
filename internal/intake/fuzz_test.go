package intake

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
)

// FuzzVerifiedIsQueued compares two views of any body the intake accepts: encoding/json's (the reference,
// and what the worker uses to read queued notifications) and the intake's streamed one. Whatever is queued
// must be an element encoding/json sees in the body, that passes verification in encoding/json's reading
// of it, and that reads back, from the queued bytes, as the same notification without its clientState.
func FuzzVerifiedIsQueued(f *testing.F) {
	f.Add([]byte(`{"value":[` + change(testUser) + `]}`))
	f.Add([]byte(`{"value":[{}],"value":[` + change(testUser) + `]}`))
	f.Add([]byte(`{"Value":[` + change(testUser) + `],"validationTokens":["t"]}`))
	f.Add([]byte(`{"value":[` + strings.Replace(change(testUser), `"changeType"`, `"ClientState":"x","changeType"`, 1) + `]}`))
	f.Add([]byte(`{"value":[` + strings.Replace(change(testUser), `"clientState"`, `"clientStat\u0065"`, 1) + `]}`))
	f.Add([]byte(`{"value":[{"lifecycleEvent":"missed","clientState":"` + testState + `","tenantId":"` + testTenant + `"}]}`))
	f.Add([]byte(`{"value":[{"subscriptionId":"d850b120-7d8e-4a3b-9c2d-1e0f2a3b4c5d","lifecycleEvent":"missed","clientState":"` + testState + `","tenantId":"` + testTenant + `"}]}`))
	f.Add([]byte(`{"value":[` + strings.ReplaceAll(change(testUser), testUser, "delta") + `]}`))
	f.Add([]byte(`{"value":[{"clientState":"` + testState + `","tenantId":"` + testTenant + `","resource":"Users/` + testUser + `","resourceData":{"id":"` + testUser + `","Id":"x"}}]}`))
	f.Add([]byte(`{"value":[{"resourceData":{"sequenceNumber":"12"},"clientState":"` + testState + `"}]} `))
	v := newVerifier(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := v.Collection(context.Background(), body)
		if err != nil {
			if !errors.As(err, new(*BadInput)) {
				t.Fatalf("an error that is not a *BadInput: %v", err)
			}
			return
		}
		var ref struct{ Value []json.RawMessage }
		if err := json.Unmarshal(body, &ref); err != nil {
			t.Fatalf("accepted a body encoding/json refuses: %v", err)
		}
		if got := r.Changes + r.Lifecycle + r.Dropped(); got != len(ref.Value) {
			t.Fatalf("accounted for %d notifications, encoding/json sees %d", got, len(ref.Value))
		}
		var wantChanges, wantLifecycle []graph.ChangeNotification
		for _, raw := range ref.Value {
			var n graph.ChangeNotification
			if json.Unmarshal(raw, &n) != nil {
				continue // only ever dropped: it failed verification before its other fields were read
			}
			if !v.clientStateMatches(n.ClientState) || !strings.EqualFold(n.Tenant(), testTenant) {
				continue
			}
			switch {
			case n.IsLifecycle():
				if graph.IsGUID(n.SubscriptionID) {
					wantLifecycle = append(wantLifecycle, n)
				}
			case graph.IsGUID(n.ResourceID()):
				wantChanges = append(wantChanges, n)
			}
		}
		var gotChanges, gotLifecycle []graph.ChangeNotification
		for _, m := range queued(t, r.Output) {
			for _, n := range m.Notifications {
				if hasClientState(n.Raw) || n.ClientState != "" {
					t.Fatalf("queued notification carries clientState: %s", n.Raw)
				}
				if m.Kind == "lifecycle" {
					gotLifecycle = append(gotLifecycle, n)
				} else {
					gotChanges = append(gotChanges, n)
				}
			}
		}
		if r.Oversize > 0 {
			return // which ones were too large is not this test's business
		}
		same := func(kind string, got, want []graph.ChangeNotification) {
			if len(got) != len(want) {
				t.Fatalf("%s: queued %d, encoding/json's view verifies %d", kind, len(got), len(want))
			}
			for i := range got {
				g, w := got[i], want[i]
				w.ClientState, w.Raw, g.Raw = "", nil, nil
				gj, _ := json.Marshal(g)
				wj, _ := json.Marshal(w)
				if !bytes.Equal(gj, wj) {
					t.Fatalf("%s %d: queued %s, verified %s", kind, i, gj, wj)
				}
			}
		}
		same("change", gotChanges, wantChanges)
		same("lifecycle", gotLifecycle, wantLifecycle)
	})
}

// hasClientState reports whether the notification obj has a member encoding/json would read as clientState.
func hasClientState(obj []byte) bool {
	ms, _ := members(obj, nil, 1<<20)
	for _, m := range ms {
		if strings.EqualFold(string(m.name(obj)), nameClientState) {
			return true
		}
	}
	return false
}
