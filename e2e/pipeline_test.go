package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/devstack"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakehost"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
	"github.com/graphwebhooks/graph-webhooks-go/internal/storagequeue"
)

func deadline(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func ids(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, devstack.UserID(i))
	}
	return out
}

// noEventsFor checks, once everything in flight has landed, that no event names any of ids.
func noEventsFor(t *testing.T, s *devstack.Stack, ids ...string) {
	t.Helper()
	for _, e := range s.Events() {
		for _, id := range ids {
			if e.ResourceID == id {
				t.Errorf("an event exists for %s: %+v", id, e)
			}
		}
	}
}

func poisonCount(t *testing.T, s *devstack.Stack) int {
	t.Helper()
	msgs, err := s.Queue.Receive(context.Background(), storagequeue.PoisonQueue(devstack.NotificationQueue), 32, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return len(msgs)
}

func TestGenuineChangesBecomeEventsForgedOnesDoNot(t *testing.T) {
	s := start(t, devstack.Options{Users: 10})
	ctx := deadline(t, 60*time.Second)

	for i := 1; i <= 5; i++ {
		s.Graph.UpdateUser(devstack.UserID(i), map[string]any{"jobTitle": fmt.Sprintf("Title %d", i)})
	}
	s.Graph.SoftDeleteUser(devstack.UserID(6))
	s.Graph.PermanentlyDeleteUser(devstack.UserID(7))

	sub := s.Graph.Subscriptions()[0]
	forged := fmt.Sprintf(`{"value":[{"subscriptionId":%q,"changeType":"updated","clientState":"not-the-secret-0123456789","tenantId":%q,"resource":"Users/%s","resourceData":{"id":%q}},
		{"subscriptionId":%q,"changeType":"updated","clientState":%q,"tenantId":"11111111-2222-3333-4444-555555555555","resource":"Users/%s","resourceData":{"id":%q}}]}`,
		sub.ID, devstack.TenantID, devstack.UserID(8), devstack.UserID(8),
		sub.ID, s.Settings["GRAPH_CLIENT_STATE"], devstack.UserID(9), devstack.UserID(9))
	resp, err := s.Graph.Forge(s.Settings["GRAPH_NOTIFICATION_URL"], []byte(forged))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Errorf("forged POST answered %d, want 202 like any other", resp.StatusCode)
	}

	if err := s.AwaitState(ctx, ids(1, 7)); err != nil {
		t.Fatalf("%v; events: %+v", err, s.Events())
	}
	// Enriched: the selected properties, the subscription, the tenant, stable ids.
	latest := devstack.Latest(s.Events())
	e := latest[devstack.UserID(1)]
	if e.Source != message.SourceNotification || e.SubscriptionID == nil || *e.SubscriptionID != sub.ID || e.TenantID != devstack.TenantID ||
		e.Object["userPrincipalName"] != "user001@contoso.example" || e.ID == "" {
		t.Errorf("event not enriched as the schema says: %+v", e)
	}
	if !latest[devstack.UserID(6)].SoftDeleted || latest[devstack.UserID(7)].SoftDeleted {
		t.Errorf("soft delete %+v / permanent delete %+v", latest[devstack.UserID(6)], latest[devstack.UserID(7)])
	}
	// A genuine change made after the forgery has arrived, so the forgery had its chance to leak through.
	s.Graph.UpdateUser(devstack.UserID(10), map[string]any{"department": "after"})
	if err := s.AwaitState(ctx, ids(10, 10)); err != nil {
		t.Fatal(err)
	}
	noEventsFor(t, s, devstack.UserID(8), devstack.UserID(9))
	if n := poisonCount(t, s); n != 0 {
		t.Errorf("%d poison messages", n)
	}
}

func TestHandlerKilledMidBurstLosesNothing(t *testing.T) {
	s := start(t, devstack.Options{Users: 40})
	ctx := deadline(t, 120*time.Second)
	for i := 1; i <= 20; i++ {
		s.Graph.UpdateUser(devstack.UserID(i), map[string]any{"department": "burst-1"})
	}
	if err := s.Host.KillHandler(); err != nil {
		t.Fatal(err)
	}
	for i := 21; i <= 40; i++ {
		s.Graph.UpdateUser(devstack.UserID(i), map[string]any{"department": "burst-2"})
	}
	// Wait until the host has restarted it, then kill it again while work is in flight.
	if err := devstack.Eventually(ctx, func() bool { return s.Host.Ready() && s.Host.Restarts() >= 1 }); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 10; i++ {
		s.Graph.UpdateUser(devstack.UserID(i), map[string]any{"department": "burst-3"})
	}
	if err := s.Host.KillHandler(); err != nil {
		t.Fatal(err)
	}
	if err := s.AwaitState(ctx, ids(1, 40)); err != nil {
		t.Fatalf("%v after %d restarts", err, s.Host.Restarts())
	}
	if s.Host.Restarts() < 2 {
		t.Errorf("restarts = %d, want 2", s.Host.Restarts())
	}
}

func TestThrottleStormLosesNothing(t *testing.T) {
	s := start(t, devstack.Options{Users: 12})
	ctx := deadline(t, 90*time.Second)
	s.Graph.Inject("POST /v1.0/$batch", fakegraph.Fault{Status: 429, RetryAfter: 2 * time.Second, Count: 6})
	s.Graph.ThrottleBatchItems(5, time.Second)
	for i := 1; i <= 12; i++ {
		s.Graph.UpdateUser(devstack.UserID(i), map[string]any{"mail": fmt.Sprintf("storm%d@contoso.example", i)})
	}
	if err := s.AwaitState(ctx, ids(1, 12)); err != nil {
		t.Fatal(err)
	}
	if n := poisonCount(t, s); n != 0 {
		t.Errorf("%d poison messages after a storm", n)
	}
}

func TestSubscriptionDeletedOnGraphsSideIsRecreated(t *testing.T) {
	s := start(t, devstack.Options{Users: 3, Host: func(o *fakehost.Options) { o.DisableTimers = true }})
	ctx := deadline(t, 60*time.Second)
	old := s.Graph.Subscriptions()[0]
	s.Graph.DeleteSubscriptionSilently(old.ID)
	if err := s.Host.FireTimer(ctx, "renewtimer"); err != nil {
		t.Fatal(err)
	}
	subs := s.Graph.Subscriptions()
	if len(subs) != 1 || subs[0].ID == old.ID {
		t.Fatalf("after one timer run: %+v", subs)
	}
	s.Graph.UpdateUser(devstack.UserID(2), map[string]any{"jobTitle": "after recreation"})
	if err := s.AwaitState(ctx, ids(2, 2)); err != nil {
		t.Fatal(err)
	}
}

func TestPoisonAndReplay(t *testing.T) {
	s := start(t, devstack.Options{Users: 3})
	ctx := deadline(t, 60*time.Second)

	// Garbage lands in the poison queue at once, text intact.
	if err := s.Queue.Enqueue(ctx, devstack.NotificationQueue, []byte("this is not a queue message"), 0); err != nil {
		t.Fatal(err)
	}
	var poisoned []storagequeue.Message
	if err := devstack.Eventually(ctx, func() bool {
		poisoned, _ = s.Queue.Receive(ctx, storagequeue.PoisonQueue(devstack.NotificationQueue), 32, time.Second)
		return len(poisoned) > 0
	}); err != nil {
		t.Fatal("garbage never reached the poison queue")
	}
	if string(poisoned[0].Text) != "this is not a queue message" {
		t.Errorf("poison text = %q", poisoned[0].Text)
	}
	s.Queue.Delete(ctx, storagequeue.PoisonQueue(devstack.NotificationQueue), poisoned[0])

	// A good message left in the poison queue (by an outage, say) comes back with replay-poison and is
	// processed. Its change was not notified otherwise (an event for the same state would be suppressed).
	sub := s.Graph.Subscriptions()[0]
	s.Graph.DropNotifications(true)
	s.Graph.UpdateUser(devstack.UserID(3), map[string]any{"jobTitle": "replayed"})
	s.Graph.DropNotifications(false)
	before := len(s.Events())
	n := fmt.Sprintf(`{"subscriptionId":%q,"changeType":"updated","clientState":%q,"tenantId":%q,"resource":"Users/%s","resourceData":{"id":%q}}`,
		sub.ID, s.Settings["GRAPH_CLIENT_STATE"], devstack.TenantID, devstack.UserID(3), devstack.UserID(3))
	msg := fmt.Sprintf(`{"v":1,"kind":"notifications","notifications":[%s],"attempt":0,"firstSeen":%q}`, n, time.Now().UTC().Format(time.RFC3339))
	if err := s.Queue.Enqueue(ctx, storagequeue.PoisonQueue(devstack.NotificationQueue), []byte(msg), 0); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(handlerBin, "replay-poison")
	cmd.Env = []string{"AzureWebJobsStorage=" + s.Settings["AzureWebJobsStorage"]}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "moved 1 message(s)") {
		t.Fatalf("replay-poison: %v %s", err, out)
	}
	if err := s.WaitEvents(ctx, func(evs []message.Event) bool { return len(evs) > before }); err != nil {
		t.Fatal("the replayed message produced no event")
	}
	e := s.Events()[before]
	if b, _ := json.Marshal(e); e.ResourceID != devstack.UserID(3) || e.Object["jobTitle"] != "replayed" {
		t.Errorf("replayed event %s", b)
	}
}
