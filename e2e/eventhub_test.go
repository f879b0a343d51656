package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/devstack"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakehost"
)

// TestEventHubsIntake: with an EventHub: notification URL the timer subscribes to the hub (no handshake);
// Graph's notifications arrive as events through the eventhub function; its validation event, a forged
// event and a malformed one do not; nothing goes through the webhook.
func TestEventHubsIntake(t *testing.T) {
	s := start(t, devstack.Options{Users: 10, EventHubs: true, Settings: map[string]string{config.NotificationURL: devstack.EventHubURL()}})
	ctx := deadline(t, 60*time.Second)

	sub := s.Graph.Subscriptions()[0]
	if !strings.HasPrefix(sub.NotificationURL, "EventHub:") || !strings.HasPrefix(sub.LifecycleNotificationURL, "EventHub:") {
		t.Fatalf("the timer subscribed with %q / %q", sub.NotificationURL, sub.LifecycleNotificationURL)
	}
	webhookCalls := len(records(s.Host, "webhook"))

	hub := devstack.EventHubName
	validation := `{"value":[{"subscriptionId":"NA","subscriptionExpirationDateTime":"NA","clientState":"NA","resource":"NA","changeType":"Validation: Testing client application reachability for subscription Request-Id: 5b0f3a52-0c1e-4f5e-9d7f-1a2b3c4d5e6f"}]}`
	forged := fmt.Sprintf(`{"value":[{"subscriptionId":%q,"changeType":"updated","clientState":"not-the-secret-0123456789","tenantId":%q,"resource":"Users/%s","resourceData":{"id":%q}}]}`,
		sub.ID, devstack.TenantID, devstack.UserID(8), devstack.UserID(8))
	s.Host.SendEvents(hub, fakehost.EventData{Body: []byte(validation)})

	for i := 1; i <= 5; i++ {
		s.Graph.UpdateUser(devstack.UserID(i), map[string]any{"jobTitle": fmt.Sprintf("Hub %d", i)})
	}
	s.Graph.SoftDeleteUser(devstack.UserID(6))
	// User 8 does not change: a forged notification that got through would still yield an event for it.
	sent := s.Host.SendEvents(hub,
		fakehost.EventData{Body: []byte(forged)},
		fakehost.EventData{Body: []byte("garbage that is not JSON")},
	)

	if err := s.AwaitState(ctx, ids(1, 6)); err != nil {
		t.Fatalf("%v; events: %+v", err, s.Events())
	}
	for _, e := range s.Events() {
		if e.ResourceID == devstack.UserID(1) && (e.SubscriptionID == nil || *e.SubscriptionID != sub.ID) {
			t.Errorf("event %+v did not come from the Event Hubs subscription", e)
		}
	}
	// Every event sent has been read (the checkpoints passed the forged and the garbage events), and no
	// invocation failed: a malformed event is skipped, not retried.
	if err := s.Host.WaitFor(ctx, func() bool {
		for _, p := range sent {
			if seq, _ := s.Host.Checkpoint("eventhub", p.Partition); seq < p.SequenceNumber {
				return false
			}
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	for _, r := range records(s.Host, "eventhub") {
		if r.Status != fakehost.Succeeded {
			t.Errorf("eventhub invocation failed: %+v", r)
		}
	}
	if n := len(records(s.Host, "webhook")); n != webhookCalls {
		t.Errorf("the webhook was called %d times during the Event Hubs run", n-webhookCalls)
	}
	// A genuine change made after the forgery has arrived, so the forgery had its chance to leak through.
	s.Graph.UpdateUser(devstack.UserID(10), map[string]any{"department": "after"})
	if err := s.AwaitState(ctx, ids(10, 10)); err != nil {
		t.Fatal(err)
	}
	noEventsFor(t, s, devstack.UserID(8))
	if n := poisonCount(t, s); n != 0 {
		t.Errorf("%d poison messages", n)
	}
}

func records(h *fakehost.Host, function string) []fakehost.InvocationRecord {
	var out []fakehost.InvocationRecord
	for _, r := range h.Invocations() {
		if r.Function == function {
			out = append(out, r)
		}
	}
	return out
}

// TestEventHubsIntakeUnderEachEncoding runs a change through the real handler with each way the host
// might encode an event batch (the default one is covered above): the wire shape was read from the host's
// source, never observed, so the handler must read them all.
func TestEventHubsIntakeUnderEachEncoding(t *testing.T) {
	for _, enc := range []fakehost.EventHubEncoding{fakehost.EventHubEncodingArray, fakehost.EventHubEncodingQuotedElements} {
		t.Run(string(enc), func(t *testing.T) {
			s := start(t, devstack.Options{Users: 2, EventHubs: true, Host: func(o *fakehost.Options) { o.EventHubEncoding = enc }})
			ctx := deadline(t, 60*time.Second)
			s.Graph.DeleteSubscriptionSilently(s.Graph.Subscriptions()[0].ID)
			s.Graph.SeedSubscription(fakegraph.Subscription{NotificationURL: devstack.EventHubURL(), ClientState: s.Settings["GRAPH_CLIENT_STATE"]})
			s.Graph.UpdateUser(devstack.UserID(2), map[string]any{"jobTitle": "encoded " + string(enc)})
			if err := s.AwaitState(ctx, ids(2, 2)); err != nil {
				t.Fatalf("%v; events: %+v", err, s.Events())
			}
		})
	}
}
