package subscription

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
)

func mailEnv(t *testing.T, adjust ...func(*fakegraph.Options)) *env {
	t.Helper()
	e := newEnv(t, append([]func(*fakegraph.Options){func(o *fakegraph.Options) {
		o.AppRoles = []string{"Mail.Read", "Calendars.Read", "GroupMember.Read.All"}
		o.GroupMembersPerPage = 2
		o.SubscriptionPageSize = 5
	}}, adjust...)...)
	return e
}

// mailKeeper builds a keeper on e's settings; its waits for a closed gate advance the fake clock.
func (e *env) mailKeeper(t *testing.T, store RefusalStore, o MailboxOptions) (*MailboxKeeper, *[]time.Duration) {
	t.Helper()
	var mu sync.Mutex
	var slept []time.Duration
	if o.Sleep == nil {
		o.Sleep = func(_ context.Context, d time.Duration) error {
			mu.Lock()
			slept = append(slept, d)
			mu.Unlock()
			e.clock.Advance(d)
			return nil
		}
	}
	if o.Gap == nil {
		o.Gap = func(_ context.Context, resource, reason string) error {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.gaps = append(e.gaps, resource+" "+reason)
			return nil
		}
	}
	cfg := config.Load(func(k string) string { return e.settings[k] })
	g := func() (MailboxGraph, error) { return e.client, nil }
	return NewMailboxKeeper(cfg, g, store, e.clock.Now, o), &slept
}

func runMailboxes(t *testing.T, k *MailboxKeeper) MailboxOutcome {
	t.Helper()
	out, err := k.Run(context.Background())
	if err != nil {
		t.Fatalf("Run: %v (%s)", err, out.Summary())
	}
	return out
}

func mailboxSubs(fg *fakegraph.Server) map[string]fakegraph.Subscription {
	out := map[string]fakegraph.Subscription{}
	for _, s := range fg.Subscriptions() {
		out[strings.ToLower(s.Resource)] = s
	}
	return out
}

func TestMailboxKeeperFollowsGroupMembersAndResources(t *testing.T) {
	e := mailEnv(t)
	var members []string
	for i := 1; i <= 5; i++ {
		members = append(members, mbUser(i))
	}
	group := e.fg.AddGroup(fakegraph.Group{ID: "aaaaaaaa-0000-4000-8000-000000000001", Members: members})
	e.settings[config.Mailboxes] = mbUser(0) + ",group:" + group
	e.settings[config.MailboxResources] = "messages,events"
	k, _ := e.mailKeeper(t, &MemoryRefusals{}, MailboxOptions{})

	out := runMailboxes(t, k)
	if out.Desired != 12 || out.Created != 12 || out.Existing != 0 {
		t.Fatalf("first run: %s", out.Summary())
	}
	if n := e.fg.Count("GET", "/v1.0/groups/"+group+"/members"); n != 3 {
		t.Fatalf("the group's member pages read: %d, want 3", n)
	}
	subs := mailboxSubs(e.fg)
	for i := 0; i <= 5; i++ {
		for _, kind := range []string{"messages", "events"} {
			s, ok := subs[MailboxResource(mbUser(i), kind)]
			if !ok {
				t.Fatalf("no subscription for %s of %s", kind, mbUser(i))
			}
			if s.ChangeType != MailboxChangeTypes || s.LifecycleNotificationURL == "" || !s.ExpirationDateTime.Equal(e.clock.Now().Add(MailboxLifetime)) {
				t.Fatalf("subscription %+v", s)
			}
		}
	}

	e.clock.Advance(time.Hour)
	before := e.writes()
	out = runMailboxes(t, k)
	if e.writes() != before || out.Kept != 12 {
		t.Fatalf("a converged run writes nothing: %d writes, %s", e.writes()-before, out.Summary())
	}

	e.fg.RemoveMembers(group, mbUser(3))
	out = runMailboxes(t, k)
	if out.Deleted != 2 || len(mailboxSubs(e.fg)) != 10 {
		t.Fatalf("a departed member is unsubscribed: %s", out.Summary())
	}
	if _, ok := mailboxSubs(e.fg)[MailboxResource(mbUser(3), "messages")]; ok {
		t.Fatal("the departed member's subscription is still there")
	}

	// A rotated clientState makes every subscription stale: each is deleted and made again, and the gap
	// between the two is reported for a catch-up.
	e.settings[config.ClientState] = stateB
	k, _ = e.mailKeeper(t, &MemoryRefusals{}, MailboxOptions{})
	out = runMailboxes(t, k)
	if out.Recreated != 10 || len(e.gaps) != 10 || !strings.HasSuffix(e.gaps[0], " subscription stale") {
		t.Fatalf("stale subscriptions: %s; gaps %v", out.Summary(), e.gaps)
	}
}

func TestMailboxKeeperKeepsGroupMembersWhenTheGroupCannotBeRead(t *testing.T) {
	e := mailEnv(t)
	group := e.fg.AddGroup(fakegraph.Group{ID: "aaaaaaaa-0000-4000-8000-000000000002", Members: []string{mbUser(1), mbUser(2)}})
	e.settings[config.Mailboxes] = "group:" + group
	k, _ := e.mailKeeper(t, &MemoryRefusals{}, MailboxOptions{})
	runMailboxes(t, k)
	e.fg.Inject("GET /v1.0/groups/{id}/members", fakegraph.Fault{Status: 503, Count: 1})
	out := runMailboxes(t, k)
	if out.Deleted != 0 || len(out.Incomplete) != 1 || len(mailboxSubs(e.fg)) != 2 {
		t.Fatalf("an unread group must delete nothing: %s", out.Summary())
	}
}

func TestMailboxKeeperRecordsRefusalsAndBacksOff(t *testing.T) {
	e := mailEnv(t)
	ok, quota, policy := mbUser(1), mbUser(2), mbUser(3)
	e.fg.SetMailboxOverQuota(quota, true)
	e.fg.SetMailboxAccessDenied(policy, true)
	e.settings[config.Mailboxes] = strings.Join([]string{ok, quota, policy}, ",")
	store := &MemoryRefusals{}
	k, _ := e.mailKeeper(t, store, MailboxOptions{})

	out := runMailboxes(t, k)
	if out.Created != 1 || len(out.Refused) != 2 || out.Failed != 0 {
		t.Fatalf("refusals are recorded, not failures: %s", out.Summary())
	}
	recs, _ := store.Refusals(context.Background())
	q, p := recs[MailboxResource(quota, "messages")], recs[MailboxResource(policy, "messages")]
	if q.Status != 403 || !strings.Contains(q.Reason, "Maximum number of subscriptions") || q.Mailbox() != quota {
		t.Fatalf("quota refusal: %+v", q)
	}
	if p.Status != 403 || !strings.Contains(p.Reason, "Access to OData is disabled") {
		t.Fatalf("policy refusal: %+v", p)
	}

	posts := e.fg.Count("POST", "/v1.0/subscriptions")
	e.clock.Advance(time.Hour)
	out = runMailboxes(t, k)
	if e.fg.Count("POST", "/v1.0/subscriptions") != posts || out.Waiting != 2 {
		t.Fatalf("refused mailboxes are not tried every run: %s", out.Summary())
	}

	e.fg.SetMailboxAccessDenied(policy, false)
	e.clock.Advance(MailboxRefusalBackoff)
	out = runMailboxes(t, k)
	recs, _ = store.Refusals(context.Background())
	if out.Created != 1 || len(out.Refused) != 1 || len(recs) != 1 {
		t.Fatalf("after the back-off: %s; on record %v", out.Summary(), recs)
	}
	if r := recs[MailboxResource(quota, "messages")]; r.Count != 2 || !r.RetryAt.Equal(e.clock.Now().Add(2*MailboxRefusalBackoff)) {
		t.Fatalf("a second refusal waits twice as long: %+v", r)
	}
	if _, ok := mailboxSubs(e.fg)[MailboxResource(policy, "messages")]; !ok {
		t.Fatal("the mailbox the policy now allows was not subscribed")
	}
}

func TestMailboxKeeperWaitsOutThrottling(t *testing.T) {
	e := mailEnv(t)
	var users []string
	for i := range 4 {
		users = append(users, mbUser(i))
	}
	e.settings[config.Mailboxes] = strings.Join(users, ",")
	e.fg.Inject("POST /v1.0/subscriptions", fakegraph.Fault{Status: 429, RetryAfter: 7 * time.Second, Count: 1})
	k, slept := e.mailKeeper(t, &MemoryRefusals{}, MailboxOptions{Concurrency: 1})

	out := runMailboxes(t, k)
	if !out.Throttled || out.Created != 3 || out.Deferred != 1 {
		t.Fatalf("throttled run: %s", out.Summary())
	}
	if len(*slept) != 1 || (*slept)[0] != 7*time.Second {
		t.Fatalf("the run waits out Retry-After once: %v", *slept)
	}
	var throttledAt time.Time
	for _, r := range e.fg.Requests() {
		if r.Method != "POST" || r.Path != "/v1.0/subscriptions" {
			continue
		}
		switch {
		case r.Status == 429:
			throttledAt = r.Time
		case !throttledAt.IsZero() && r.Time.Before(throttledAt.Add(7*time.Second)):
			t.Fatalf("a create was sent %v after the 429, inside its Retry-After", r.Time.Sub(throttledAt))
		}
	}
	out = runMailboxes(t, k)
	if out.Created != 1 || len(mailboxSubs(e.fg)) != 4 {
		t.Fatalf("the next run finishes: %s", out.Summary())
	}
}

// slowGraph makes every subscription write take a minute of the fake clock.
type slowGraph struct {
	MailboxGraph
	c *clock
}

func (g slowGraph) CreateSubscription(ctx context.Context, s graph.Subscription) (graph.Subscription, error) {
	g.c.Advance(time.Minute)
	return g.MailboxGraph.CreateSubscription(ctx, s)
}

func (g slowGraph) UpdateSubscription(ctx context.Context, id string, u graph.SubscriptionUpdate) (graph.Subscription, error) {
	g.c.Advance(time.Minute)
	return g.MailboxGraph.UpdateSubscription(ctx, id, u)
}

func TestMailboxKeeperStopsAtItsRunTimeAndTheNextRunContinues(t *testing.T) {
	e := mailEnv(t)
	var users []string
	for i := range 25 {
		users = append(users, mbUser(i))
	}
	e.settings[config.Mailboxes] = strings.Join(users, ",")
	cfg := config.Load(func(k string) string { return e.settings[k] })
	k := NewMailboxKeeper(cfg, func() (MailboxGraph, error) { return slowGraph{e.client, e.clock}, nil }, &MemoryRefusals{}, e.clock.Now,
		MailboxOptions{Concurrency: 1, RunTime: 10 * time.Minute})
	var created []int
	for run := 0; run < 5 && len(mailboxSubs(e.fg)) < 25; run++ {
		start := e.clock.Now()
		out := runMailboxes(t, k)
		if took := e.clock.Now().Sub(start); took > 10*time.Minute {
			t.Fatalf("run %d took %v of its 10 min", run, took)
		}
		created = append(created, out.Created)
		e.clock.Advance(time.Hour)
	}
	if fmt.Sprint(created) != "[10 10 5]" {
		t.Fatalf("creates per run %v, want [10 10 5]", created)
	}

	// Two days on, every subscription is below its threshold: the renewals, too, spread over runs.
	e.clock.Advance(46 * time.Hour)
	patches := e.fg.Count("PATCH", "/v1.0/subscriptions")
	var renewed []int
	for range 3 {
		out := runMailboxes(t, k)
		renewed = append(renewed, out.Renewed)
	}
	if fmt.Sprint(renewed) != "[10 10 5]" || e.fg.Count("PATCH", "/v1.0/subscriptions")-patches != 25 {
		t.Fatalf("renewals per run %v", renewed)
	}
}

func TestKeeperLifecycleForMailboxSubscriptions(t *testing.T) {
	e := mailEnv(t, func(o *fakegraph.Options) {
		o.AppRoles = append(o.AppRoles, "User.Read.All")
	})
	e.settings[config.Mailboxes] = mbUser(1) + "," + mbUser(2)
	k := e.keeper(t)
	mk, _ := e.mailKeeper(t, &MemoryRefusals{}, MailboxOptions{})
	k.SetMailboxes(mk)
	outs := ensureAll(t, k)
	if len(outs) != 2 || !strings.Contains(outs[1].Summary(e.clock.Now()), "created 2") {
		t.Fatalf("the timer's run covers the mailboxes: %+v", outs)
	}
	subs := mailboxSubs(e.fg)
	s1 := subs[MailboxResource(mbUser(1), "messages")]

	res, err := k.Lifecycle(context.Background(), []LifecycleRequest{{SubscriptionID: s1.ID, Event: graph.Missed}})
	if err != nil || res[0].Verdict != Acted || res[0].Mailbox != MailboxResource(mbUser(1), "messages") {
		t.Fatalf("missed: %+v %v", res, err)
	}
	writes := e.writes()
	e.clock.Advance(time.Minute)
	res, _ = k.Lifecycle(context.Background(), []LifecycleRequest{{SubscriptionID: s1.ID, Event: graph.ReauthorizationRequired}})
	if res[0].Verdict != Acted || e.writes() != writes+1 || e.fg.NeedsReauthorization(s1.ID) {
		t.Fatalf("reauthorization: %+v, %d writes", res, e.writes()-writes)
	}

	// Graph removes the second mailbox's subscription: it lists no more, so a recovering run recreates
	// what is missing and catches that mailbox up.
	s2 := subs[MailboxResource(mbUser(2), "messages")]
	e.fg.SendLifecycle(s2.ID, "subscriptionRemoved")
	e.clock.Advance(2 * time.Minute)
	res, _ = k.Lifecycle(context.Background(), []LifecycleRequest{{SubscriptionID: s2.ID, Event: graph.SubscriptionRemoved}})
	if res[0].Verdict != Acted || len(mailboxSubs(e.fg)) != 3 {
		t.Fatalf("removed: %+v; subscriptions %v", res, mailboxSubs(e.fg))
	}
	var mailGaps []string
	for _, g := range e.gaps {
		if strings.HasPrefix(g, "users/") {
			mailGaps = append(mailGaps, g)
		}
	}
	if len(mailGaps) != 1 || mailGaps[0] != MailboxResource(mbUser(2), "messages")+" subscription removed" {
		t.Fatalf("catch-up asked for %v", mailGaps)
	}
	// Uninstall removes the mailbox subscriptions with the directory's.
	defer func() {
		ids, err := k.Unsubscribe(context.Background())
		if err != nil || len(ids) != 3 || len(e.fg.Subscriptions()) != 0 { // users and the two mailboxes
			t.Errorf("unsubscribe: %v %v; left %v", ids, err, e.fg.Subscriptions())
		}
	}()
	// A flood of the same is rationed.
	res, _ = k.Lifecycle(context.Background(), []LifecycleRequest{{SubscriptionID: s2.ID, Event: graph.SubscriptionRemoved}})
	if res[0].Verdict != Limited {
		t.Fatalf("second removal within the interval: %+v", res)
	}
}

func ensureAll(t *testing.T, k *Keeper) []Outcome {
	t.Helper()
	outs, err := k.Ensure(context.Background(), Normal)
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	return outs
}

// Lifecycle events act only on mailbox subscriptions the keeper keeps: for a mailbox GRAPH_MAILBOXES
// follows (a group member once a run of this process has read the group) and current. Any other, though
// Graph lists it as this app's, is NotListed and costs no write: no PATCH rewrites its notification URL,
// no create follows a 404.
func TestKeeperLifecycleActsOnlyOnKeptMailboxSubscriptions(t *testing.T) {
	e := mailEnv(t, func(o *fakegraph.Options) { o.AppRoles = append(o.AppRoles, "User.Read.All") })
	group := e.fg.AddGroup(fakegraph.Group{ID: "aaaaaaaa-0000-4000-8000-000000000003", Members: []string{mbUser(2)}})
	e.settings[config.Mailboxes] = mbUser(1) + ",group:" + group
	build := func() *Keeper {
		k := e.keeper(t)
		mk, _ := e.mailKeeper(t, &MemoryRefusals{}, MailboxOptions{})
		k.SetMailboxes(mk)
		return k
	}
	verdict := func(k *Keeper, user int, ev graph.LifecycleEvent) Verdict {
		t.Helper()
		id := mailboxSubs(e.fg)[MailboxResource(mbUser(user), "messages")].ID
		res, err := k.Lifecycle(context.Background(), []LifecycleRequest{{SubscriptionID: id, Event: ev}})
		if err != nil {
			t.Fatal(err)
		}
		return res[0].Verdict
	}
	ensureAll(t, build())
	if len(mailboxSubs(e.fg)) != 3 { // users and the two mailboxes
		t.Fatalf("subscriptions %v", mailboxSubs(e.fg))
	}

	// A process that has not read the group yet follows only the users named directly.
	fresh := build()
	if v := verdict(fresh, 2, graph.Missed); v != NotListed {
		t.Errorf("group member before any run: %s, want %s", v, NotListed)
	}
	if v := verdict(fresh, 1, graph.Missed); v != Acted {
		t.Errorf("named user: %s, want %s", v, Acted)
	}
	// Once its run has read the group, the member is followed.
	ensureAll(t, fresh)
	e.clock.Advance(time.Minute)
	if v := verdict(fresh, 2, graph.Missed); v != Acted {
		t.Errorf("group member after a run: %s, want %s", v, Acted)
	}

	// The group is no longer configured: its member's subscription, still listed until the timer's next
	// run deletes it, is not renewed.
	e.settings[config.Mailboxes] = mbUser(1)
	writes := e.writes()
	if v := verdict(build(), 2, graph.ReauthorizationRequired); v != NotListed || e.writes() != writes {
		t.Errorf("unconfigured mailbox: %s, %d writes; want %s and none", v, e.writes()-writes, NotListed)
	}

	// A rotated clientState makes every subscription stale: the timer recreates them, a lifecycle event
	// does not renew one.
	e.settings[config.ClientState] = stateB
	if v := verdict(build(), 1, graph.ReauthorizationRequired); v != NotListed || e.writes() != writes {
		t.Errorf("stale subscription: %s, %d writes; want %s and none", v, e.writes()-writes, NotListed)
	}
}
