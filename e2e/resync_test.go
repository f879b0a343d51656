package e2e

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/devstack"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakehost"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

// TestDroppedStretchIsRecoveredByOneResync: Graph drops every notification for a while (an endpoint marked
// "drop", docs/graph-facts.md §2.2). One resync later, every change of that stretch has an event carrying the latest
// state — updates, a soft delete, a permanent delete, a user changed twice, a new user.
func TestDroppedStretchIsRecoveredByOneResync(t *testing.T) {
	s := start(t, devstack.Options{Users: 12, Graph: func(o *fakegraph.Options) { o.UserPageSize = 3 }})
	ctx := deadline(t, 90*time.Second)

	s.Graph.DropNotifications(true)
	for i := 1; i <= 6; i++ {
		s.Graph.UpdateUser(devstack.UserID(i), map[string]any{"jobTitle": "changed while dropped"})
	}
	s.Graph.UpdateUser(devstack.UserID(2), map[string]any{"jobTitle": "changed twice while dropped"})
	s.Graph.SoftDeleteUser(devstack.UserID(7))
	s.Graph.PermanentlyDeleteUser(devstack.UserID(8))
	s.Graph.AddUser(devstack.SeedUser(50))
	s.Graph.DropNotifications(false)
	changed := append(ids(1, 8), devstack.UserID(50))

	// Nothing arrived by webhook: prove it before the resync, with a change made after the stretch.
	s.Graph.UpdateUser(devstack.UserID(12), map[string]any{"jobTitle": "after the stretch"})
	if err := s.AwaitState(ctx, ids(12, 12)); err != nil {
		t.Fatal(err)
	}
	for _, e := range s.Events() {
		if e.ResourceID != devstack.UserID(12) {
			t.Fatalf("an event arrived for a dropped change: %+v", e)
		}
	}

	cmd := exec.Command(handlerBin, "resync")
	for k, v := range s.Settings {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "resync users started") {
		t.Fatalf("handler resync: %v\n%s", err, out)
	}
	if err := s.AwaitState(ctx, changed); err != nil {
		t.Fatalf("%v; events: %+v", err, s.Events())
	}
	for _, e := range devstack.Latest(s.Events()) {
		if e.ResourceID != devstack.UserID(12) && (e.Source != message.SourceResync || e.SubscriptionID != nil) {
			t.Errorf("recovered event %s: source %s, subscription %v", e.ResourceID, e.Source, e.SubscriptionID)
		}
	}
	// Several delta pages were walked, one per invocation.
	if pages := s.Graph.Count("GET", "/v1.0/users/delta"); pages < 3 {
		t.Errorf("%d delta requests: expected one per page across several pages", pages)
	}
}

// TestLapsedSubscriptionIsRecreatedAndItsGapRecovered: the subscription vanished on Graph's side, so changes
// were never notified. The next timer run recreates it, which starts a resync that recovers the gap.
func TestLapsedSubscriptionIsRecreatedAndItsGapRecovered(t *testing.T) {
	s := start(t, devstack.Options{Users: 6, Host: func(o *fakehost.Options) { o.DisableTimers = true }})
	ctx := deadline(t, 60*time.Second)
	s.Graph.DeleteSubscriptionSilently(s.Graph.Subscriptions()[0].ID)
	s.Graph.UpdateUser(devstack.UserID(3), map[string]any{"department": "changed with no subscription"})
	s.Graph.SoftDeleteUser(devstack.UserID(4))
	if err := s.Host.FireTimer(ctx, "renewtimer"); err != nil {
		t.Fatal(err)
	}
	if err := s.AwaitState(ctx, ids(3, 4)); err != nil {
		t.Fatal(err)
	}
}
