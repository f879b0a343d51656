package intake

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

const (
	testTenant = "8c1f4b2e-0d6a-4f57-9a3e-2b9d7c6e5f41"
	testState  = "s3cr3t-client-state-0123456789"
	testUser   = "6e1f0001-7c3a-4b2d-9e8f-0a1b2c3d4e5f"
)

var fixedNow = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

func newVerifier(t testing.TB) *Verifier {
	t.Helper()
	env := map[string]string{config.TenantID: testTenant, config.ClientState: testState}
	return New(config.Load(func(k string) string { return env[k] }), func() time.Time { return fixedNow })
}

// change is one genuine change notification for user id, as Graph sends it.
func change(id string) string {
	return `{"subscriptionId":"d850b120-7d8e-4a3b-9c2d-1e0f2a3b4c5d","changeType":"updated","clientState":"` + testState +
		`","resource":"Users/` + id + `","resourceData":{"@odata.type":"#Microsoft.Graph.User","id":"` + id +
		`","organizationId":"` + testTenant + `","sequenceNumber":638700000000000002},"tenantId":"` + testTenant + `"}`
}

// queued decodes Output as the worker reads the queue.
func queued(t testing.TB, out json.RawMessage) []message.Message {
	t.Helper()
	if out == nil {
		return nil
	}
	var ms []json.RawMessage
	if err := json.Unmarshal(out, &ms); err != nil {
		t.Fatalf("output is not a JSON array: %v", err)
	}
	var got []message.Message
	for _, raw := range ms {
		m, err := message.Decode(raw)
		if err != nil {
			t.Fatalf("queued message unreadable: %v", err)
		}
		got = append(got, *m)
	}
	return got
}

func TestCollectionQueuesGenuineNotifications(t *testing.T) {
	body := `{"value":[` + change(testUser) + `]}`
	r, err := newVerifier(t).Collection(context.Background(), []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	ms := queued(t, r.Output)
	if r.Changes != 1 || r.Messages != 1 || len(ms) != 1 || len(ms[0].Notifications) != 1 {
		t.Fatalf("result %+v, messages %d; want one change in one message", r, len(ms))
	}
	if got := ms[0].Notifications[0].ResourceID(); got != testUser {
		t.Errorf("queued resource id %q, want %q", got, testUser)
	}
	if !strings.HasPrefix(r.Summary(), "queued 1 change and 0 lifecycle notifications in 1 messages") {
		t.Errorf("summary %q", r.Summary())
	}
}

func TestCollectionErrors(t *testing.T) {
	v := newVerifier(t)
	for _, body := range []string{``, `[]`, `{"value":"x-secret-input"}`, `{}`, `{"value":[1]}`} {
		_, err := v.Collection(context.Background(), []byte(body))
		var bad *BadInput
		if !errors.As(err, &bad) {
			t.Errorf("%s: err = %v, want a *BadInput", body, err)
			continue
		}
		if strings.Contains(err.Error(), "secret-input") {
			t.Errorf("%s: error quotes the input: %v", body, err)
		}
	}

	unset := New(config.Load(func(string) string { return "" }), time.Now)
	_, err := unset.Collection(context.Background(), []byte(`{"value":[`+change(testUser)+`]}`))
	if err == nil || errors.As(err, new(*BadInput)) || !strings.Contains(err.Error(), config.ClientState) {
		t.Errorf("missing settings: err = %v, want a settings error naming %s", err, config.ClientState)
	}
}
