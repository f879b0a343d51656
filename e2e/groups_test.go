package e2e

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/devstack"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

// groupEvent is the first event for group id that satisfies ok.
func groupEventWith(evs []message.Event, id string, ok func(message.Event) bool) (message.Event, bool) {
	for _, e := range evs {
		if e.Resource == config.Groups && e.ResourceID == id && ok(e) {
			return e, true
		}
	}
	return message.Event{}, false
}

func added(id string) func(message.Event) bool {
	return func(e message.Event) bool { return e.Members != nil && slices.Contains(e.Members.Added, id) }
}

// TestGroupsFollowedBesideUsers: with GRAPH_RESOURCE=users,groups the timer keeps two subscriptions, and a
// group's rename, membership changes, soft delete and permanent delete become group events; a membership
// change Graph never notified is recovered by `handler resync groups`.
func TestGroupsFollowedBesideUsers(t *testing.T) {
	s := start(t, devstack.Options{Users: 6, Groups: 2, Settings: map[string]string{config.Resource: "users,groups"}})
	ctx := deadline(t, 120*time.Second)
	var resources []string
	for _, sub := range s.Graph.Subscriptions() {
		resources = append(resources, sub.Resource)
	}
	slices.Sort(resources)
	if !slices.Equal(resources, []string{"groups", "users"}) {
		t.Fatalf("subscriptions for %v, want users and groups", resources)
	}
	g1, g2 := devstack.SeedGroup(1).ID, devstack.SeedGroup(2).ID

	s.Graph.UpdateGroup(g1, map[string]any{"displayName": "Platform team"})
	if err := s.AwaitState(ctx, []string{g1}); err != nil {
		t.Fatal(err)
	}
	if e := devstack.Latest(s.Events())[g1]; e.Field != message.FieldGroup || e.Object["displayName"] != "Platform team" || e.SubscriptionID == nil {
		t.Fatalf("rename event %+v", e)
	}

	// Membership: the notification says only "updated"; the groups delta the worker asks for names the member.
	s.Graph.AddMembers(g1, devstack.UserID(5))
	if err := s.WaitEvents(ctx, func(evs []message.Event) bool { _, ok := groupEventWith(evs, g1, added(devstack.UserID(5))); return ok }); err != nil {
		t.Fatalf("member added: %v; events %+v", err, s.Events())
	}
	s.Graph.RemoveMembers(g1, devstack.UserID(1))
	if err := s.WaitEvents(ctx, func(evs []message.Event) bool {
		_, ok := groupEventWith(evs, g1, func(e message.Event) bool {
			return e.Members != nil && slices.Contains(e.Members.Removed, devstack.UserID(1))
		})
		return ok
	}); err != nil {
		t.Fatalf("member removed: %v", err)
	}

	// A Microsoft 365 group soft-deleted, then deleted for good.
	s.Graph.SoftDeleteGroup(g2)
	if err := s.AwaitState(ctx, []string{g2}); err != nil {
		t.Fatalf("soft delete: %v", err)
	}
	s.Graph.PermanentlyDeleteGroup(g2)
	if err := s.WaitEvents(ctx, func(evs []message.Event) bool {
		_, ok := groupEventWith(evs, g2, func(e message.Event) bool { return e.ChangeType == graph.Deleted && !e.SoftDeleted && e.Object == nil })
		return ok
	}); err != nil {
		t.Fatalf("permanent delete: %v", err)
	}

	// A membership change Graph never notified: the resync recovers it.
	s.Graph.DropNotifications(true)
	s.Graph.AddMembers(g1, devstack.UserID(6))
	s.Graph.DropNotifications(false)
	cmd := exec.Command(handlerBin, "resync", "groups")
	for k, v := range s.Settings {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "resync groups") {
		t.Fatalf("handler resync groups: %v\n%s", err, out)
	}
	if err := s.WaitEvents(ctx, func(evs []message.Event) bool { _, ok := groupEventWith(evs, g1, added(devstack.UserID(6))); return ok }); err != nil {
		t.Fatalf("unnotified member: %v; events %+v", err, s.Events())
	}
	e, _ := groupEventWith(s.Events(), g1, added(devstack.UserID(6)))
	if e.Source != message.SourceResync || e.SubscriptionID != nil {
		t.Errorf("recovered membership event: source %s, subscription %v", e.Source, e.SubscriptionID)
	}
	for _, ev := range s.Events() {
		if ev.Resource == config.Users && ev.Field != message.FieldUser {
			t.Errorf("a user event with its object under %q", ev.Field)
		}
	}

	// `handler status` reports both subscriptions and both collections' passes.
	r, code, stderr := runStatus(t, s, nil)
	var live, passes []string
	for _, sub := range r.Subscriptions {
		if sub.State == "live" {
			live = append(live, sub.Resource)
		}
	}
	for _, p := range r.Resync {
		passes = append(passes, p.Collection)
	}
	if code != 0 || !slices.Equal(live, []string{"users", "groups"}) || !slices.Equal(passes, []string{"users", "groups"}) {
		t.Errorf("status exit %d, live subscriptions %v, resync %v, findings %v\n%s", code, live, passes, findingCodes(r), stderr)
	}
}
