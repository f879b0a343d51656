package intake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
	"github.com/graphwebhooks/graph-webhooks-go/internal/objectstate"
	"github.com/graphwebhooks/graph-webhooks-go/internal/testclock"
)

const (
	testTenant = "8c1f4b2e-0d6a-4f57-9a3e-2b9d7c6e5f41"
	testState  = "s3cr3t-client-state-0123456789"
	testUser   = "6e1f0001-7c3a-4b2d-9e8f-0a1b2c3d4e5f"
)

var fixedNow = testclock.Date(2026, 11, 27, 10, 0, 0)

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

	unset := New(config.Load(func(string) string { return "" }), func() time.Time { return fixedNow })
	_, err := unset.Collection(context.Background(), []byte(`{"value":[`+change(testUser)+`]}`))
	if err == nil || errors.As(err, new(*BadInput)) || !strings.Contains(err.Error(), config.ClientState) {
		t.Errorf("missing settings: err = %v, want a settings error naming %s", err, config.ClientState)
	}
}

// guid is a distinct user id for each n.
func guid(n int) string { return fmt.Sprintf("6e1f%04x-7c3a-4b2d-9e8f-%012x", n&0xffff, n) }

func TestDuplicateMembersAreRefused(t *testing.T) {
	forged := `{"subscriptionId":"x","changeType":"updated","tenantId":"` + testTenant + `","resource":"Users/` + guid(9) + `"}`
	genuine := change(testUser)
	for name, body := range map[string]string{
		// encoding/json merges two "value" arrays; a raw scan would keep the last: two views of one body.
		"two value arrays":             `{"value":[` + forged + `],"value":[` + genuine + `]}`,
		"value and VALUE":              `{"value":[` + genuine + `],"VALUE":[` + forged + `]}`,
		"escaped name":                 `{"value":[` + genuine + `],"v\u0061lue":[` + forged + `]}`,
		"two clientStates":             `{"value":[` + strings.Replace(genuine, `"changeType"`, `"clientState":"forged-000000000000000","changeType"`, 1) + `]}`,
		"clientState and CLIENTSTATE":  `{"value":[` + strings.Replace(genuine, `"changeType"`, `"CLIENTSTATE":"forged-000000000000000","changeType"`, 1) + `]}`,
		"two resourceData":             `{"value":[` + strings.Replace(genuine, `"tenantId"`, `"resourceData":{"id":"`+guid(9)+`"},"tenantId"`, 1) + `]}`,
		"two ids in resourceData":      `{"value":[` + strings.Replace(genuine, `"@odata.type"`, `"id":"`+guid(9)+`","@odata.type"`, 1) + `]}`,
		"Kelvin sign folds to k":       `{"value":[` + strings.Replace(genuine, `"tenantId"`, `"\u212aeep":1,"Keep":2,"tenantId"`, 1) + `]}`,
		"two validationTokens members": `{"value":[` + genuine + `],"validationTokens":["a"],"validationTokens":["b"]}`,
	} {
		t.Run(name, func(t *testing.T) {
			r, err := newVerifier(t).Collection(context.Background(), []byte(body))
			if !errors.As(err, new(*BadInput)) || r.Output != nil {
				t.Fatalf("err = %v, output %s; want a *BadInput and nothing queued", err, r.Output)
			}
			if strings.Contains(err.Error(), "forged") || strings.Contains(err.Error(), guid(9)) {
				t.Errorf("error quotes the input: %v", err)
			}
		})
	}
	// Many members take the map path; a duplicate among them is found all the same.
	var extra strings.Builder
	for i := range 40 {
		fmt.Fprintf(&extra, `"x%d":%d,`, i, i)
	}
	body := `{"value":[` + strings.Replace(genuine, `"tenantId"`, extra.String()+`"X7":0,"tenantId"`, 1) + `]}`
	if _, err := newVerifier(t).Collection(context.Background(), []byte(body)); !errors.As(err, new(*BadInput)) {
		t.Errorf("duplicate among 40 members: err = %v", err)
	}
	body = `{"value":[` + strings.Replace(genuine, `"tenantId"`, extra.String()+`"tenantId"`, 1) + `]}`
	if r, err := newVerifier(t).Collection(context.Background(), []byte(body)); err != nil || r.Changes != 1 {
		t.Errorf("40 distinct members: %+v, %v", r, err)
	}
}

func TestQueuedNotificationsCarryNoClientState(t *testing.T) {
	// Spacing, unknown fields and number literals are Graph's own, and stay so.
	n := `{ "subscriptionId" : "d850b120-7d8e-4a3b-9c2d-1e0f2a3b4c5d", "clientState":"` + testState +
		`", "changeType":"updated","resource":"Users/` + testUser + `","resourceData":{"id":"` + testUser +
		`","sequenceNumber":638700000000000002},"futureField":{"n":[1,2.50]},"tenantId":"` + testTenant + `" }`
	lc := `{"subscriptionId":"d850b120-7d8e-4a3b-9c2d-1e0f2a3b4c5d","lifecycleEvent":"missed","clientState":"` + testState + `","organizationId":"` + testTenant + `"}`
	r, err := newVerifier(t).Collection(context.Background(), []byte(`{"value":[`+n+`,`+lc+`]}`))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(r.Output), testState) || strings.Contains(strings.ToLower(string(r.Output)), "clientstate") {
		t.Fatalf("the secret is in the queue: %s", r.Output)
	}
	want := `{ "subscriptionId" : "d850b120-7d8e-4a3b-9c2d-1e0f2a3b4c5d", "changeType":"updated","resource":"Users/` + testUser +
		`","resourceData":{"id":"` + testUser + `","sequenceNumber":638700000000000002},"futureField":{"n":[1,2.50]},"tenantId":"` + testTenant + `" }`
	ms := queued(t, r.Output)
	if len(ms) != 2 || string(ms[0].Notifications[0].Raw) != want {
		t.Errorf("queued %d messages; notification\n%s\nwant\n%s", len(ms), ms[0].Notifications[0].Raw, want)
	}
	if r.Changes != 1 || r.Lifecycle != 1 {
		t.Errorf("%+v", r)
	}
}

func TestNonGUIDIdsAreDropped(t *testing.T) {
	bad := []string{"delta", "$count", "microsoft.graph.user", "adele@contoso.example", "..%2F..%2Fsubscriptions", testUser + "x", ""}
	var items []string
	for _, id := range bad {
		items = append(items, strings.ReplaceAll(change(testUser), testUser, id))
	}
	// resourceData.id wins over resource; a GUID in resource does not save a bad resourceData.id.
	items = append(items, strings.Replace(change(testUser), `"id":"`+testUser, `"id":"delta`, 1))
	// No resourceData.id: the tail of resource is the id.
	items = append(items, `{"subscriptionId":"s","changeType":"updated","clientState":"`+testState+`","resource":"Users/$count","tenantId":"`+testTenant+`"}`)
	items = append(items, `{"subscriptionId":"s","changeType":"updated","clientState":"`+testState+`","resource":"Users/`+guid(3)+`","tenantId":"`+testTenant+`"}`)
	// Lifecycle notifications name no object, but a subscription: its id must be a GUID too.
	sub := "d850b120-7d8e-4a3b-9c2d-1e0f2a3b4c5d"
	for _, id := range []string{sub, "s", "eventhub-batch-too-large", "x\\nERROR status: forged", ""} {
		items = append(items, `{"subscriptionId":"`+id+`","lifecycleEvent":"reauthorizationRequired","clientState":"`+testState+`","resource":"Subscriptions/`+id+`","tenantId":"`+testTenant+`"}`)
	}
	r, err := newVerifier(t).Collection(context.Background(), []byte(`{"value":[`+strings.Join(items, ",")+`]}`))
	if err != nil {
		t.Fatal(err)
	}
	if r.MalformedID != len(bad)+2+4 || r.Changes != 1 || r.Lifecycle != 1 {
		t.Errorf("malformed %d, changes %d, lifecycle %d; want %d, 1, 1", r.MalformedID, r.Changes, r.Lifecycle, len(bad)+2+4)
	}
	if !strings.Contains(r.Summary(), fmt.Sprintf("id %d", len(bad)+2+4)) {
		t.Errorf("summary %q does not count the malformed ids", r.Summary())
	}
	for _, m := range queued(t, r.Output) {
		for _, n := range m.Notifications {
			if !n.IsLifecycle() && n.ResourceID() != guid(3) {
				t.Errorf("queued id %q", n.ResourceID())
			}
			if n.IsLifecycle() && n.SubscriptionID != sub {
				t.Errorf("queued lifecycle subscription id %q", n.SubscriptionID)
			}
		}
	}
}

func TestBadInputNeverQuotesTheBody(t *testing.T) {
	long := strings.Repeat("Z", 1<<20)
	n := strings.Replace(change(testUser), `"sequenceNumber":638700000000000002`, `"sequenceNumber":"`+long+`"`, 1)
	for name, body := range map[string]string{
		"string sequenceNumber": `{"value":[` + n + `]}`,
		"huge number literal":   `{"value":[` + strings.Replace(change(testUser), `"changeType":"updated"`, `"changeType":1`+strings.Repeat("9", 1<<16), 1) + `]}`,
		"number where id goes":  `{"value":[` + strings.Replace(change(testUser), `"id":"`+testUser+`"`, `"id":1`+strings.Repeat("9", 1<<16), 1) + `]}`,
		"bad escape":            `{"value":[{"clientState":"\q` + long + `"}]}`,
		"trailing data":         `{"value":[]}` + long,
		"trailing brace":        `{"value":[]}}`,
		"truncated":             `{"value":[{"clientState":"` + long,
		"value is a string":     `{"value":"` + long + `"}`,
		"tokens of numbers":     `{"value":[],"validationTokens":[1` + strings.Repeat("9", 1<<16) + `]}`,
		"element is a string":   `{"value":["` + long + `"]}`,
	} {
		_, err := newVerifier(t).Collection(context.Background(), []byte(body))
		if !errors.As(err, new(*BadInput)) {
			t.Errorf("%s: err = %v, want a *BadInput", name, err)
			continue
		}
		if len(err.Error()) > 200 || strings.Contains(err.Error(), "ZZZ") || strings.Contains(err.Error(), "999") {
			t.Errorf("%s: the error quotes input (%d bytes): %.200s", name, len(err.Error()), err)
		}
	}
}

// TestManyNotificationsAreGroupedByStateShard: a POST that takes several messages is grouped by the state
// shard of each object, so each message touches few of the state table's partitions; nothing is lost, and
// a POST that fits one message keeps its order.
func TestManyNotificationsAreGroupedByStateShard(t *testing.T) {
	v := newVerifier(t)
	body := func(n int) ([]byte, []string) {
		var parts, ids []string
		for i := range n {
			id := fmt.Sprintf("6e1f%04x-7c3a-4b2d-9e8f-0a1b2c3d4e5f", i)
			ids = append(ids, id)
			parts = append(parts, change(id))
		}
		return []byte(`{"value":[` + strings.Join(parts, ",") + `]}`), ids
	}
	b, ids := body(500)
	r, err := v.Collection(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	msgs := queued(t, r.Output)
	if len(msgs) < 5 {
		t.Fatalf("%d messages for 500 notifications; the test needs several", len(msgs))
	}
	seen := map[string]int{}
	for i, m := range msgs {
		shards := map[int]bool{}
		for _, n := range m.Notifications {
			seen[n.ResourceID()]++
			shards[objectstate.ShardOf(n.ResourceID())] = true
		}
		if len(shards) > objectstate.Shards/2 {
			t.Errorf("message %d of %d: %d notifications in %d state shards; want them grouped", i, len(msgs), len(m.Notifications), len(shards))
		}
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Fatalf("notification for %s queued %d times", id, seen[id])
		}
	}

	b, ids = body(30)
	r, err = v.Collection(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	msgs = queued(t, r.Output)
	if len(msgs) != 1 {
		t.Fatalf("%d messages for 30 notifications", len(msgs))
	}
	for i, n := range msgs[0].Notifications {
		if n.ResourceID() != ids[i] {
			t.Fatalf("notification %d is for %s, want %s: one message keeps the POST's order", i, n.ResourceID(), ids[i])
		}
	}
}
