package resync_test

// Unit tests: the resync with in-memory Graph, checkpoint store and queues (no network, no Azurite). The
// tests beside this file drive it against the Graph double and Azurite.

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/checkpoint"
	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/directory"
	"github.com/graphwebhooks/graph-webhooks-go/internal/directory/directorytest"
	"github.com/graphwebhooks/graph-webhooks-go/internal/events"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
	"github.com/graphwebhooks/graph-webhooks-go/internal/objectstate"
	"github.com/graphwebhooks/graph-webhooks-go/internal/resync"
	"github.com/graphwebhooks/graph-webhooks-go/internal/storagequeue"
	"github.com/graphwebhooks/graph-webhooks-go/internal/testclock"
)

// deltaFake serves delta rounds from pages a test sets, and $batch reads from a directorytest.FakeGraph.
type deltaFake struct {
	*directorytest.FakeGraph
	mu      sync.Mutex
	round   int
	pages   [][]graph.Object // the next round's pages
	started []string         // collection and select of each DeltaStart
}

func (d *deltaFake) DeltaStart(_ context.Context, collection string, sel []string, latest bool) (graph.DeltaPage, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.started = append(d.started, collection+"?"+strings.Join(sel, ","))
	if latest {
		return graph.DeltaPage{DeltaLink: fmt.Sprintf("https://graph.test/v1.0/%s/delta?$deltatoken=r%d", collection, d.round)}, nil
	}
	return d.page(collection, 0), nil
}

func (d *deltaFake) Delta(_ context.Context, link string) (graph.DeltaPage, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	coll := strings.Split(strings.TrimPrefix(link, "https://graph.test/v1.0/"), "/")[0]
	if i := strings.Index(link, "$skiptoken="); i >= 0 {
		var n int
		fmt.Sscanf(link[i+len("$skiptoken="):], "%d", &n)
		return d.page(coll, n), nil
	}
	return d.page(coll, 0), nil
}

func (d *deltaFake) page(coll string, i int) graph.DeltaPage {
	if i+1 < len(d.pages) {
		return graph.DeltaPage{Objects: d.pages[i], NextLink: fmt.Sprintf("https://graph.test/v1.0/%s/delta?$skiptoken=%d", coll, i+1)}
	}
	var objs []graph.Object
	if i < len(d.pages) {
		objs = d.pages[i]
	}
	d.round++
	d.pages = nil
	return graph.DeltaPage{Objects: objs, DeltaLink: fmt.Sprintf("https://graph.test/v1.0/%s/delta?$deltatoken=r%d", coll, d.round)}
}

type unitEnv struct {
	t     *testing.T
	state func() (events.State, error) // nil: no change detection
	g     *deltaFake
	q     *storagequeue.Memory
	cp    *checkpoint.Memory
	r     *resync.Runner
	now   time.Time
}

func newUnitEnv(t *testing.T, resource string, state ...*objectstate.Store) *unitEnv {
	e := &unitEnv{t: t, g: &deltaFake{FakeGraph: directorytest.NewFakeGraph()}, q: storagequeue.NewMemory(), cp: checkpoint.NewMemory(),
		now: testclock.Date(2026, 12, 1, 10, 0, 0)}
	if len(state) > 0 {
		e.state = func() (events.State, error) { return state[0], nil }
	}
	vars := map[string]string{config.TenantID: "8c1f4b2e-0d6a-4f57-9a3e-2b9d7c6e5f41", config.Storage: "UseDevelopmentStorage=true", config.Resource: resource}
	e.r = resync.New(resync.Deps{
		Config: config.Load(func(k string) string { return vars[k] }),
		Graph:  func() (resync.Graph, error) { return e.g, nil },
		Store:  func() (resync.Store, error) { return e.cp, nil },
		Queue:  func() (resync.Queue, error) { return e.q, nil },
		Events: events.NewWriter(func() (events.Queue, error) { return e.q, nil }, e.state),
		Now:    func() time.Time { return e.now },
	})
	e.r.StepBudget = 0 // one page per invocation: these tests drive and count the steps
	return e
}

// drive runs every queued step until the work queue is empty.
func (e *unitEnv) drive() { e.t.Helper(); runSteps(e.t, e.q, e.r, 100) }

func (e *unitEnv) events() []message.Event { e.t.Helper(); return takeEvents(e.t, e.q) }

// runSteps runs every step queued on q until the work queue is empty, rounds at most: a pass that asks for more
// has not ended.
func runSteps(t *testing.T, q *storagequeue.Memory, r *resync.Runner, rounds int) {
	t.Helper()
	for range rounds {
		ms := q.Take(message.WorkQueue)
		if len(ms) == 0 {
			return
		}
		for _, x := range ms {
			m, err := message.Decode(x.Text)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.Step(context.Background(), m); err != nil {
				t.Fatalf("Step: %v", err)
			}
		}
	}
	t.Fatal("the pass did not end")
}

// takeEvents takes the events written to graphchanges.
func takeEvents(t *testing.T, q *storagequeue.Memory) []message.Event {
	t.Helper()
	var out []message.Event
	for _, x := range q.Take(message.ChangesQueue) {
		var ev message.Event
		if err := json.Unmarshal(x.Text, &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

func gid(i int) string { return fmt.Sprintf("9a0e%04d-1c2d-4e5f-8a9b-0c1d2e3f4a5b", i) }

func members(from, to int, removed bool) []any {
	var out []any
	for i := from; i < to; i++ {
		m := map[string]any{"@odata.type": "#microsoft.graph.user", "id": uid(i)}
		if removed {
			m["@removed"] = map[string]any{"reason": "deleted"}
		}
		out = append(out, m)
	}
	return out
}

func group(i int, props ...any) graph.Object {
	o := graph.Object{}
	for _, p := range config.DefaultGroupSelect {
		o[p] = nil
	}
	o["id"], o["displayName"] = gid(i), fmt.Sprintf("Group %d", i)
	for j := 0; j+1 < len(props); j += 2 {
		o[props[j].(string)] = props[j+1]
	}
	return o
}

func TestUnitGroupMembershipAcrossPages(t *testing.T) {
	e := newUnitEnv(t, "groups")
	if _, err := e.r.Request(context.Background(), "groups", "baseline"); err != nil {
		t.Fatal(err)
	}
	if len(e.g.started) != 1 || !strings.HasPrefix(e.g.started[0], "groups?") || !strings.HasSuffix(e.g.started[0], ",members") {
		t.Fatalf("delta started as %v: want groups with members selected", e.g.started)
	}
	// Group 2's 250 new members span three pages (a part on each); group 1 changes on the first page.
	e.g.pages = [][]graph.Object{
		{group(1, "displayName", "Renamed"), group(2, "members@delta", members(1, 100, false))},
		{{"id": gid(2), "members@delta": members(100, 200, false)}},
		{{"id": gid(2), "members@delta": append(members(200, 251, false), members(900, 902, true)...)}, {"id": "not-a-guid"}},
	}
	if _, err := e.r.Request(context.Background(), "groups", "test"); err != nil {
		t.Fatal(err)
	}
	e.drive()
	evs := e.events()
	by := map[string][]message.Event{}
	for _, ev := range evs {
		by[ev.ResourceID] = append(by[ev.ResourceID], ev)
	}
	if len(evs) != 2 || len(by[gid(1)]) != 1 || len(by[gid(2)]) != 1 {
		t.Fatalf("%d events: want one per group, the large one assembled: %+v", len(evs), evs)
	}
	g2 := by[gid(2)][0]
	if g2.Members == nil || len(g2.Members.Added) != 250 || !slices.Equal(g2.Members.Removed, []string{uid(900), uid(901)}) {
		t.Fatalf("group 2 members: added %d removed %v", len(g2.Members.Added), g2.Members)
	}
	if g2.Object["displayName"] != "Group 2" || g2.Field != message.FieldGroup || g2.Resource != "groups" {
		t.Errorf("group 2 event %+v", g2)
	}
	if g1 := by[gid(1)][0]; g1.Object["displayName"] != "Renamed" || g1.Members != nil {
		t.Errorf("group 1 event %+v", g1)
	}
	cp, _, _ := e.cp.Load(context.Background(), "groups")
	if cp.Pass != nil || cp.LastPass == nil || cp.LastPass.Carry != nil {
		t.Errorf("checkpoint after the pass: %+v", cp)
	}
}

func TestUnitLargeMembershipChangeIsSplit(t *testing.T) {
	e := newUnitEnv(t, "groups")
	if _, err := e.r.Request(context.Background(), "groups", "baseline"); err != nil {
		t.Fatal(err)
	}
	e.g.pages = [][]graph.Object{{group(3, "members@delta", members(1, 2501, false))}}
	if _, err := e.r.Request(context.Background(), "groups", "test"); err != nil {
		t.Fatal(err)
	}
	e.drive()
	evs := e.events()
	if len(evs) != 3 {
		t.Fatalf("%d events, want 3 parts of at most %d members", len(evs), resync.MaxMembersPerEvent)
	}
	seen := map[string]bool{}
	total := 0
	for _, ev := range evs {
		if seen[ev.ID] {
			t.Error("two parts share an event id")
		}
		seen[ev.ID] = true
		total += len(ev.Members.Added)
		if len(ev.Members.Added) > resync.MaxMembersPerEvent {
			t.Errorf("a part of %d members", len(ev.Members.Added))
		}
		if b, _ := json.Marshal(ev); len(b) > 48<<10 {
			t.Errorf("an event of %d bytes does not fit a queue message", len(b))
		}
	}
	if total != 2500 {
		t.Errorf("%d members over the parts, want 2500", total)
	}
}

func TestUnitRefusedObjectDoesNotHoldThePage(t *testing.T) {
	e := newUnitEnv(t, "users")
	if _, err := e.r.Request(context.Background(), "users", "baseline"); err != nil {
		t.Fatal(err)
	}
	// Partial entries: both users are read with $batch; Graph refuses one of them.
	e.g.Put(directory.Users, graph.Object{"id": uid(1), "displayName": "One", "jobTitle": "CTO"})
	e.g.Put(directory.Users, graph.Object{"id": uid(2), "displayName": "Two"})
	p, _ := graph.ObjectPath("users", uid(2))
	e.g.Answer(p, &graph.Error{Status: 403, Kind: graph.KindForbidden})
	e.g.pages = [][]graph.Object{{{"id": uid(1), "jobTitle": "CTO"}, {"id": uid(2), "displayName": "Two"}}}
	if _, err := e.r.Request(context.Background(), "users", "test"); err != nil {
		t.Fatal(err)
	}
	e.drive()
	evs := e.events()
	if len(evs) != 2 {
		t.Fatalf("%d events, want both users (the refused one with what delta returned)", len(evs))
	}
	for _, ev := range evs {
		if ev.ResourceID == uid(2) && ev.Object["displayName"] != "Two" {
			t.Errorf("refused user: %+v", ev)
		}
		if ev.ResourceID == uid(1) && ev.Object["displayName"] != "One" {
			t.Errorf("read user: %+v", ev)
		}
	}
}

func TestUnitRequestAllNamesEveryCollection(t *testing.T) {
	e := newUnitEnv(t, "users,groups")
	rs, err := e.r.RequestAll(context.Background(), "by hand")
	if err != nil || len(rs) != 2 || rs[0].Collection != "users" || rs[1].Collection != "groups" {
		t.Fatalf("RequestAll = %+v, %v", rs, err)
	}
	if _, err := e.r.RequestAll(context.Background(), "by hand", "devices"); err == nil {
		t.Error("a collection GRAPH_RESOURCE does not name was accepted")
	}
	for _, c := range []string{"users", "groups"} {
		if cp, _, _ := e.cp.Load(context.Background(), c); cp.DeltaLink == "" {
			t.Errorf("%s has no starting point: each collection keeps its own checkpoint", c)
		}
	}
}

// interfering marks the pass (as a concurrent Request does) just before the step's own save, once.
type interfering struct {
	resync.Store
	armed bool
}

func (s *interfering) Save(ctx context.Context, c string, cp checkpoint.Checkpoint, etag checkpoint.ETag) (checkpoint.ETag, error) {
	if s.armed && cp.Pass != nil && cp.Pass.Pages > 0 || s.armed && cp.Pass == nil {
		s.armed = false
		cur, et, err := s.Store.Load(ctx, c)
		if err == nil && cur.Pass != nil {
			cur.Pass.Again = "a request during the step"
			s.Store.Save(ctx, c, cur, et)
		}
	}
	return s.Store.Save(ctx, c, cp, etag)
}

// TestUnitRequestDuringAStepDoesNotStallThePass: a request that only marks the pass in progress changes
// the checkpoint's ETag under a step; the step must not take that for another worker's progress.
func TestUnitRequestDuringAStepDoesNotStallThePass(t *testing.T) {
	e := newUnitEnv(t, "groups")
	st := &interfering{Store: e.cp}
	vars := map[string]string{config.TenantID: "8c1f4b2e-0d6a-4f57-9a3e-2b9d7c6e5f41", config.Storage: "UseDevelopmentStorage=true", config.Resource: "groups"}
	e.r = resync.New(resync.Deps{
		Config: config.Load(func(k string) string { return vars[k] }),
		Graph:  func() (resync.Graph, error) { return e.g, nil },
		Store:  func() (resync.Store, error) { return st, nil },
		Queue:  func() (resync.Queue, error) { return e.q, nil },
		Events: events.NewWriter(func() (events.Queue, error) { return e.q, nil }, e.state),
		Now:    func() time.Time { return e.now },
	})
	e.r.StepBudget = 0 // one page per invocation: these tests drive and count the steps
	if _, err := e.r.Request(context.Background(), "groups", "baseline"); err != nil {
		t.Fatal(err)
	}
	e.g.pages = [][]graph.Object{{group(1, "displayName", "One")}, {group(2)}}
	if _, err := e.r.Request(context.Background(), "groups", "test"); err != nil {
		t.Fatal(err)
	}
	st.armed = true
	e.drive()
	cp, _, _ := e.cp.Load(context.Background(), "groups")
	if cp.Pass != nil || cp.LastPass == nil {
		t.Fatalf("the passes did not complete: %+v", cp)
	}
	// The request's mark was kept: a follow-up pass ran after the first (it found nothing more).
	if !strings.Contains(cp.LastPass.Reason, "a request during the step") {
		t.Errorf("last pass %+v: want the follow-up the request asked for", cp.LastPass)
	}
	if n := len(e.events()); n != 2 {
		t.Errorf("%d events, want 2", n)
	}
}

// TestUnitResyncAfterNotificationsIsSilent: the changes the notifications already reported (their states
// stored) yield no events when a resync reports them again; a change only the resync sees yields one.
func TestUnitResyncAfterNotificationsIsSilent(t *testing.T) {
	state := objectstate.NewMemoryTable().Store(objectstate.Options{})
	e := newUnitEnv(t, "users", state)
	sel := config.DefaultUserSelect
	full := func(i int, title string) graph.Object {
		o := graph.Object{}
		for _, p := range sel {
			o[p] = nil
		}
		o["id"], o["displayName"], o["jobTitle"] = uid(i), fmt.Sprintf("User %d", i), title
		return o
	}
	if _, err := e.r.Request(context.Background(), "users", "baseline"); err != nil {
		t.Fatal(err)
	}
	// What the worker emitted for notifications of users 1 and 2, a moment before the resync.
	w := events.NewWriter(func() (events.Queue, error) { return e.q, nil }, e.state)
	var items []events.Item
	for i := 1; i <= 2; i++ {
		ev := directory.NewEvent("t", sel, directory.Change{Kind: directory.Users, ID: uid(i), ChangeType: graph.Updated, Object: full(i, "CTO"), Source: message.SourceNotification}, e.now)
		items = append(items, events.Item{Event: ev, ReadAt: e.now.Add(-time.Second), Select: sel})
	}
	if _, err := w.Write(context.Background(), items); err != nil {
		t.Fatal(err)
	}
	e.q.Take(message.ChangesQueue)
	e.g.pages = [][]graph.Object{{full(1, "CTO"), full(2, "CTO"), full(3, "Dropped change")}}
	if _, err := e.r.Request(context.Background(), "users", "test"); err != nil {
		t.Fatal(err)
	}
	e.drive()
	evs := e.events()
	if len(evs) != 1 || evs[0].ResourceID != uid(3) {
		t.Fatalf("events %+v: want only the user whose change no notification reported", evs)
	}
	cp, _, _ := e.cp.Load(context.Background(), "users")
	if cp.LastPass == nil || cp.LastPass.Events != 1 {
		t.Errorf("last pass %+v: events counts what was written", cp.LastPass)
	}
}
