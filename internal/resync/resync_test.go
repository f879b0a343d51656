package resync_test

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/checkpoint"
	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/events"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
	"github.com/graphwebhooks/graph-webhooks-go/internal/resync"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func continuation(t *testing.T, m *message.Message) resync.Continuation {
	t.Helper()
	c, err := resync.DecodeContinuation(m.Continuation)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestFirstPassFromNowThenCatchUpOnDroppedChanges(t *testing.T) {
	e := newEnv(t, 6)
	e.fg.ResetRequests()
	cp := e.baseline()
	if cp.DeltaLink == "" || cp.Pass != nil || !cp.LastCompleted.Equal(e.clock.now()) || cp.SelectHash != checkpoint.SelectHash(config.DefaultUserSelect) {
		t.Fatalf("after the first pass: %+v", cp)
	}
	if reqs := e.deltaRequests(); len(reqs) != 1 || !strings.Contains(reqs[0].RawQuery, "deltatoken=latest") {
		t.Fatalf("the first pass must ask for $deltatoken=latest once: %+v", reqs)
	}
	if due, err := due(e.r, e.ctx()); err != nil || due {
		t.Fatalf("Due right after a pass = %v, %v", due, err)
	}
	e.clock.advance(25 * time.Hour)
	if due, err := due(e.r, e.ctx()); err != nil || !due {
		t.Fatalf("Due 25 h after a pass = %v, %v", due, err)
	}

	// Changes Graph does not deliver (DropNotifications is on).
	e.fg.UpdateUser(uid(1), map[string]any{"jobTitle": "CTO"})
	e.fg.UpdateUser(uid(2), map[string]any{"displayName": "Renamed"})
	e.fg.SoftDeleteUser(uid(3))
	e.fg.PermanentlyDeleteUser(uid(4))
	e.fg.UpdateUser(uid(5), map[string]any{"department": "Sales"})
	e.fg.UpdateUser(uid(5), map[string]any{"department": "Marketing"})
	e.fg.AddUser(fakegraph.User{ID: uid(7), Props: map[string]any{"displayName": "Newcomer", "accountEnabled": false}})

	req := e.request("lifecycle: missed")
	if req.Action != resync.Started || req.Full || req.Latest {
		t.Fatalf("second request: %+v", req)
	}
	rs := e.driveToEnd()
	if len(rs) < 3 {
		t.Errorf("6 changed users in pages of 2 took %d steps", len(rs))
	}
	evs := e.events()
	by := latestByUser(evs)
	want := map[string]func(message.Event) bool{
		uid(1): func(ev message.Event) bool { return ev.ChangeType == "updated" && ev.Object["jobTitle"] == "CTO" },
		uid(2): func(ev message.Event) bool {
			return ev.ChangeType == "updated" && ev.Object["displayName"] == "Renamed"
		},
		uid(3): func(ev message.Event) bool {
			return ev.ChangeType == "deleted" && ev.SoftDeleted && ev.Object["displayName"] == "User 3"
		},
		uid(4): func(ev message.Event) bool { return ev.ChangeType == "deleted" && !ev.SoftDeleted && ev.Object == nil },
		uid(5): func(ev message.Event) bool {
			return ev.ChangeType == "updated" && ev.Object["department"] == "Marketing"
		},
		uid(7): func(ev message.Event) bool {
			return ev.ChangeType == "updated" && ev.Object["displayName"] == "Newcomer" && ev.Object["accountEnabled"] == false
		},
	}
	for id, ok := range want {
		ev, found := by[id]
		if !found || !ok(ev) {
			t.Errorf("user %s: latest event %+v (found %v)", id, ev, found)
		}
	}
	if _, found := by[uid(6)]; found {
		t.Errorf("unchanged user 6 got an event")
	}
	ids := map[string]bool{}
	for _, ev := range evs {
		if ev.Source != message.SourceResync || ev.V != 1 || ev.SubscriptionID != nil || ev.TenantID != e.cfg.TenantID || ev.Resource != "users" || ev.ID == "" {
			t.Errorf("event fields: %+v", ev)
		}
		if ids[ev.ID] {
			t.Errorf("duplicate event id %s", ev.ID)
		}
		ids[ev.ID] = true
		if ev.Object != nil {
			for k := range ev.Object {
				if !slices.ContainsFunc(config.DefaultUserSelect, func(p string) bool { return strings.EqualFold(p, k) }) {
					t.Errorf("event carries %q, which is not selected", k)
				}
			}
		}
	}
	after := e.checkpoint()
	if after.Pass != nil || after.DeltaLink == cp.DeltaLink || after.LastPass == nil || after.LastPass.Pages != len(rs) || after.LastPass.Events != len(evs) {
		t.Errorf("checkpoint after the pass: %+v (last pass %+v)", after, after.LastPass)
	}
	if due, _ := due(e.r, e.ctx()); due {
		t.Error("Due right after the catch-up pass")
	}
	// Nothing changed since: the next pass is one empty page.
	e.request("timer")
	if rs := e.driveToEnd(); len(rs) != 1 || rs[0].Events != 0 {
		t.Errorf("a pass with no changes: %+v", rs)
	}
}

func TestKilledPassResumesFromItsCheckpoint(t *testing.T) {
	e := newEnv(t, 6)
	e.baseline()
	for i := 1; i <= 6; i++ {
		e.fg.UpdateUser(uid(i), map[string]any{"jobTitle": "Lead"})
	}
	e.request("subscription recreated")
	if rs := e.drive(1); len(rs) != 1 || rs[0].Done || rs[0].Events != 2 {
		t.Fatalf("first page: %+v", rs)
	}
	// The process dies: the continuation of page 2 is lost.
	if lost := e.drain(); len(lost) != 1 {
		t.Fatalf("%d continuation(s) after one page", len(lost))
	}
	cp := e.checkpoint()
	if cp.Pass == nil || cp.Pass.Link == "" || cp.Pass.Pages != 1 {
		t.Fatalf("checkpoint after one page: %+v", cp.Pass)
	}

	// A request while the pass looks alive collapses into it and sends nothing.
	if got := e.request("lifecycle"); got.Action != resync.Collapsed || got.PassID != cp.Pass.ID {
		t.Fatalf("request during the pass: %+v", got)
	}
	if due, _ := due(e.r, e.ctx()); due {
		t.Fatal("a fresh pass is not due")
	}
	if n := len(e.drain()); n != 0 {
		t.Fatalf("a collapsed request enqueued %d message(s)", n)
	}

	e.clock.advance(resync.StallAfter + time.Minute)
	if due, _ := due(e.r, e.ctx()); !due {
		t.Fatal("a stalled pass must be due")
	}
	e.fg.ResetRequests()
	if got := e.request("timer"); got.Action != resync.Resumed || got.PassID != cp.Pass.ID {
		t.Fatalf("request after the stall: %+v", got)
	}
	// The remaining 4 users in pages of 2 take two steps; then the "lifecycle" request that collapsed into
	// the pass gets its follow-up pass, from the deltaLink the resumed pass ends with: one empty page.
	rs := e.driveToEnd()
	if len(rs) != 3 || rs[0].PassID != cp.Pass.ID || rs[1].PassID != cp.Pass.ID || rs[2].PassID == cp.Pass.ID || rs[2].Events != 0 {
		t.Errorf("steps after resuming: %+v", rs)
	}
	reqs := e.deltaRequests()
	if len(reqs) != 3 {
		t.Fatalf("delta requests after resuming: %+v", reqs)
	}
	if u, _ := url.Parse(cp.Pass.Link); reqs[0].RawQuery != u.RawQuery {
		t.Errorf("resumed at %q, want the checkpoint's link %q", reqs[0].RawQuery, u.RawQuery)
	}
	for _, q := range reqs[:2] {
		if strings.Contains(q.RawQuery, "deltatoken") {
			t.Errorf("the resumed pass went back to a delta link: %s", q.RawQuery)
		}
	}
	if !strings.Contains(reqs[2].RawQuery, "deltatoken") {
		t.Errorf("the follow-up pass did not start from the stored deltaLink: %s", reqs[2].RawQuery)
	}
	by := latestByUser(e.events())
	for i := 1; i <= 6; i++ {
		if ev := by[uid(i)]; ev.Object["jobTitle"] != "Lead" {
			t.Errorf("user %d: %+v", i, ev)
		}
	}
	if last := e.checkpoint().LastPass; last == nil || !strings.Contains(last.Reason, cp.Pass.ID) || last.Pages != 1 {
		t.Errorf("last pass (the follow-up of %s): %+v", cp.Pass.ID, last)
	}
}

func TestRedeliveredStepResendsItsContinuationAndKeepsEventIDs(t *testing.T) {
	e := newEnv(t, 4)
	e.baseline()
	for i := 1; i <= 4; i++ {
		e.fg.UpdateUser(uid(i), map[string]any{"department": "Ops"})
	}
	e.request("test")
	_, m1, ok := e.receive()
	if !ok {
		t.Fatal("no first message")
	}
	cp0, etag0, err := e.store.Load(e.ctx(), "users")
	if err != nil {
		t.Fatal(err)
	}
	if res := e.step(e.r, m1); res.Page != 1 || res.Events != 2 {
		t.Fatalf("page 1: %+v", res)
	}
	first := e.events()

	// The same page again (the checkpoint put back, as if the save had never happened) gives the same ids.
	_, etag1, _ := e.store.Load(e.ctx(), "users")
	if etag1 == etag0 {
		t.Fatal("the step did not write the checkpoint")
	}
	e.drain()
	if _, err := e.store.Save(e.ctx(), "users", cp0, etag1); err != nil {
		t.Fatal(err)
	}
	if res := e.step(e.r, m1); res.Events != 2 {
		t.Fatalf("page 1 again: %+v", res)
	}
	again := e.events()
	idsOf := func(evs []message.Event) []string {
		var s []string
		for _, ev := range evs {
			s = append(s, ev.ID)
		}
		slices.Sort(s)
		return s
	}
	if a, b := idsOf(first), idsOf(again); !slices.Equal(a, b) || len(a) != 2 {
		t.Errorf("event ids of a retried page: %v, then %v", a, b)
	}

	// The process died after saving, before enqueueing: the host redelivers m1.
	e.drain()
	res := e.step(e.r, m1)
	if !res.Resent {
		t.Fatalf("redelivered step: %+v", res)
	}
	msgs := e.drain()
	if len(msgs) != 1 {
		t.Fatalf("%d messages after the re-send", len(msgs))
	}
	c := continuation(t, msgs[0])
	if cp := e.checkpoint(); !c.Resent || c.Pass != cp.Pass.ID || c.Link != cp.Pass.Link {
		t.Fatalf("re-sent continuation %+v, checkpoint %+v", c, cp.Pass)
	}
	// Page 2 runs from the re-sent message; afterwards both older messages are stale.
	if res := e.step(e.r, msgs[0]); !res.Done || res.Events != 2 {
		t.Fatalf("page 2: %+v", res)
	}
	for _, m := range []*message.Message{m1, msgs[0]} {
		if res := e.step(e.r, m); !res.Stale {
			t.Errorf("an old message after the pass: %+v", res)
		}
	}
	// A resent copy never re-sends again, even when it matches the pass's previous page.
	if n := len(e.drain()); n != 0 {
		t.Errorf("%d messages left", n)
	}
	// An unreadable continuation is dropped, not failed.
	if res, err := e.r.Step(e.ctx(), &message.Message{V: 1, Kind: message.KindResync, Continuation: "users/delta?x"}); err != nil || !res.Stale {
		t.Errorf("unreadable continuation: %+v, %v", res, err)
	}
}

func TestConcurrentRequestsCollapseIntoOnePass(t *testing.T) {
	e := newEnv(t, 3)
	e.baseline()
	e.fg.UpdateUser(uid(1), map[string]any{"jobTitle": "Chief"})

	const n = 8
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		outs []resync.Requested
	)
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			out, err := e.r.Request(e.ctx(), "users", "concurrent")
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			outs = append(outs, out)
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	started := 0
	for _, o := range outs {
		if o.Action == resync.Started {
			started++
		} else if o.Action != resync.Collapsed {
			t.Errorf("request: %+v", o)
		}
	}
	if started != 1 || len(outs) != n {
		t.Fatalf("%d of %d requests started a pass", started, len(outs))
	}
	if got := len(e.rq.to(e.work)); got != 1 { // this pass's: the baseline needs none
		t.Errorf("%d continuation messages enqueued in all, want 1", got)
	}

	// Two workers given the same step at once: one does it, the other stands down.
	_, m, ok := e.receive()
	if !ok {
		t.Fatal("no continuation")
	}
	var results [2]resync.StepResult
	go2 := make(chan struct{})
	for i := range results {
		wg.Go(func() {
			<-go2
			res, err := e.r.Step(e.ctx(), m)
			if err != nil {
				t.Error(err)
			}
			results[i] = res
		})
	}
	close(go2)
	wg.Wait()
	done := 0
	for _, r := range results {
		if r.Done {
			done++
		} else if !r.Conflict && !r.Stale {
			t.Errorf("second worker: %+v", r)
		}
	}
	if done != 1 {
		t.Errorf("%d workers completed the step: %+v", done, results)
	}
	// The seven collapsed requests are answered by one follow-up pass, started as this one completed.
	if cp := e.checkpoint(); cp.LastPass.Pages != 1 || cp.Pass == nil || !strings.Contains(cp.Pass.Reason, "requested during pass") {
		t.Errorf("checkpoint: %+v", cp)
	}
	if ev := latestByUser(e.events())[uid(1)]; ev.Object["jobTitle"] != "Chief" {
		t.Errorf("event: %+v", ev)
	}
}

func TestExpiredDeltaTokenRestartsAsFullPass(t *testing.T) {
	e := newEnv(t, 5)
	e.baseline()
	e.fg.UpdateUser(uid(2), map[string]any{"jobTitle": "Architect"})
	e.fg.SoftDeleteUser(uid(5))
	e.fg.ExpireDeltaTokens()

	if got := e.request("timer"); got.Full {
		t.Fatalf("the request cannot know the token expired: %+v", got)
	}
	rs := e.driveToEnd()
	if !rs[0].Restarted || rs[0].Events != 0 {
		t.Fatalf("first step: %+v", rs[0])
	}
	for _, r := range rs[1:] {
		if !r.Full || r.Restarted {
			t.Errorf("step after the restart: %+v", r)
		}
	}
	evs := e.events()
	by := latestByUser(evs)
	for _, ev := range evs {
		if ev.Source != message.SourceFullSync || ev.ChangeType != "updated" {
			t.Errorf("full-pass event: %+v", ev)
		}
	}
	if len(by) != 4 || by[uid(2)].Object["jobTitle"] != "Architect" {
		t.Errorf("a full pass must report every active user (4) with its state: %v", by)
	}
	if _, ok := by[uid(5)]; ok {
		t.Error("a soft-deleted user is not in a full round")
	}
	cp := e.checkpoint()
	if cp.Pass != nil || cp.LastPass == nil || !cp.LastPass.Full || cp.LastPass.Restarts != 1 || !strings.Contains(cp.LastPass.Reason, "expired") {
		t.Errorf("last pass: %+v", cp.LastPass)
	}
	// The new link works: an incremental pass follows.
	e.fg.UpdateUser(uid(1), map[string]any{"jobTitle": "Again"})
	if got := e.request("timer"); got.Full {
		t.Errorf("after a full pass the next is incremental: %+v", got)
	}
	e.driveToEnd()
	if evs := e.events(); len(evs) != 1 || evs[0].Source != message.SourceResync || evs[0].Object["jobTitle"] != "Again" {
		t.Errorf("incremental events: %+v", evs)
	}
}

func TestChangedSelectRunsFullPass(t *testing.T) {
	e := newEnv(t, 3)
	e.baseline()
	r2 := e.withConfig(config.UserSelect, "displayName,department")
	if why, err := r2.DueReason(e.ctx(), "users"); err != nil || !strings.Contains(why, "GRAPH_USER_SELECT") {
		t.Fatalf("DueReason with a new select = %q, %v", why, err)
	}
	got, err := r2.Request(e.ctx(), "users", "deploy")
	if err != nil || got.Action != resync.Started || !got.Full || !strings.Contains(got.Reason, "GRAPH_USER_SELECT changed") {
		t.Fatalf("request with a new select: %+v, %v", got, err)
	}
	e.r = r2
	e.driveToEnd()
	evs := e.events()
	if len(evs) != 3 {
		t.Fatalf("%d events, want one per user", len(evs))
	}
	for _, ev := range evs {
		keys := make([]string, 0, len(ev.Object))
		for k := range ev.Object {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if ev.Source != message.SourceFullSync || !slices.Equal(keys, []string{"department", "displayName", "id"}) {
			t.Errorf("event: %+v", ev)
		}
	}
	if cp := e.checkpoint(); cp.SelectHash != checkpoint.SelectHash([]string{"id", "department", "displayName"}) {
		t.Errorf("select hash not updated: %+v", cp)
	}
	if due, _ := due(r2, e.ctx()); due {
		t.Error("still due after the full pass")
	}
}

func TestFirstPassFullWhenConfigured(t *testing.T) {
	e := newEnv(t, 3, withSetting(config.ResyncInitial, "full"))
	got := e.request("install")
	if !got.Full || got.Latest {
		t.Fatalf("first request with RESYNC_INITIAL=full: %+v", got)
	}
	e.driveToEnd()
	if evs := e.events(); len(evs) != 3 || evs[0].Source != message.SourceFullSync {
		t.Errorf("events: %+v", evs)
	}
}

func TestThrottledDeltaRetriesTheSameStepLater(t *testing.T) {
	e := newEnv(t, 3)
	base := e.baseline()
	e.fg.UpdateUser(uid(3), map[string]any{"jobTitle": "Throttled"})
	e.request("test")
	before := e.checkpoint()
	// 120 s is beyond what the Graph client waits itself: the 429 comes back to the step.
	e.fg.Inject("GET /v1.0/users/delta", fakegraph.Fault{Status: 429, RetryAfter: 120 * time.Second})
	rs := e.drive(1)
	if len(rs) != 1 || rs[0].RetryAfter != 120*time.Second || rs[0].Events != 0 {
		t.Fatalf("throttled step: %+v", rs)
	}
	sentWork := e.rq.to(e.work)
	last := sentWork[len(sentWork)-1]
	if last.delay != 120*time.Second {
		t.Errorf("re-enqueued with delay %s", last.delay)
	}
	cp := e.checkpoint()
	if cp.DeltaLink != base.DeltaLink || cp.Pass.Link != before.Pass.Link || cp.Pass.Pages != 0 || !cp.Pass.Wait.Equal(e.clock.now().Add(120*time.Second)) {
		t.Errorf("checkpoint moved on a throttled step: %+v", cp.Pass)
	}
	if evs := e.events(); len(evs) != 0 {
		t.Errorf("a throttled step wrote %d events", len(evs))
	}
	// The pass waits; it is not taken for stalled while it does.
	e.clock.advance(resync.StallAfter)
	if due, _ := due(e.r, e.ctx()); due {
		t.Error("a pass waiting for Retry-After is not stalled")
	}
	_, m, ok := e.receive()
	if !ok {
		t.Fatal("the step was not re-enqueued")
	}
	if c := continuation(t, m); c.Pass != before.Pass.ID || c.Link != before.Pass.Link || m.Attempt != 1 || m.NotBefore == nil {
		t.Errorf("re-enqueued message: %+v / %+v", c, m)
	}
	if res := e.step(e.r, m); !res.Done || res.Events != 1 {
		t.Errorf("retried step: %+v", res)
	}
	if ev := latestByUser(e.events())[uid(3)]; ev.Object["jobTitle"] != "Throttled" {
		t.Errorf("event: %+v", ev)
	}
}

// partialGraph makes delta entries look like real Graph's updates: the id plus only some properties.
type partialGraph struct{ *graph.Client }

func strip(p graph.DeltaPage, err error) (graph.DeltaPage, error) {
	for _, u := range p.Objects {
		if u.Removed() != "" {
			continue
		}
		for k := range u {
			if k != "id" && k != "displayName" {
				delete(u, k)
			}
		}
	}
	return p, err
}

func (g partialGraph) Delta(ctx context.Context, link string) (graph.DeltaPage, error) {
	return strip(g.Client.Delta(ctx, link))
}

func TestPartialEntriesAreReadWithBatch(t *testing.T) {
	e := newEnv(t, 25, withPageSize(50))
	e.graph = partialGraph{e.gc}
	e.baseline()
	for i := 1; i <= 25; i++ {
		e.fg.UpdateUser(uid(i), map[string]any{"department": "Dept " + uid(i)})
	}
	e.request("test")
	e.fg.ResetRequests()
	e.fg.ThrottleBatchItems(2, 90*time.Second)
	rs := e.drive(1)
	if len(rs) != 1 || rs[0].RetryAfter != 90*time.Second || rs[0].Events != 0 {
		t.Fatalf("step with throttled batch items: %+v", rs)
	}
	if evs := e.events(); len(evs) != 0 {
		t.Fatalf("%d events written by a throttled step", len(evs))
	}
	e.fg.ResetRequests()
	e.driveToEnd()
	if n := e.fg.Count("POST", "/v1.0/$batch"); n != 2 {
		t.Errorf("25 partial users took %d $batch calls, want 2", n)
	}
	by := latestByUser(e.events())
	for i := 1; i <= 25; i++ {
		ev := by[uid(i)]
		if ev.Object["department"] != "Dept "+uid(i) || ev.Object["userPrincipalName"] == nil {
			t.Errorf("user %d: %+v", i, ev)
		}
	}
}

func TestSingleUserResourceEmitsOnlyThatUser(t *testing.T) {
	e := newEnv(t, 3, withSetting(config.Resource, "users/"+uid(2)))
	e.baseline()
	for i := 1; i <= 3; i++ {
		e.fg.UpdateUser(uid(i), map[string]any{"jobTitle": "X"})
	}
	e.request("test")
	e.driveToEnd()
	if evs := e.events(); len(evs) != 1 || evs[0].ResourceID != uid(2) {
		t.Errorf("events: %+v", evs)
	}
}

func TestContinuationRoundTrip(t *testing.T) {
	c := resync.Continuation{Pass: "p1", Link: "https://graph.microsoft.com/v1.0/users/delta?$skiptoken=abc&x=\"y\""}
	got, err := resync.DecodeContinuation(c.Encode())
	if err != nil || got != c {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for _, bad := range []string{"", "{}", `{"link":"x"}`, "not json"} {
		if _, err := resync.DecodeContinuation(bad); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}

// lostReply applies a write and then answers as a storage client does when the reply to its PUT was lost
// and its retry failed its own If-Match: 412, a conflict.
type lostReply struct {
	resync.Store
	armed bool
}

func (l *lostReply) Save(ctx context.Context, resource string, cp checkpoint.Checkpoint, etag checkpoint.ETag) (checkpoint.ETag, error) {
	et, err := l.Store.Save(ctx, resource, cp, etag)
	if err == nil && l.armed {
		l.armed = false
		return "", checkpoint.ErrConflict
	}
	return et, err
}

func TestOwnWriteWithALostReplyIsNotAConflict(t *testing.T) {
	e := newEnv(t, 3)
	e.baseline()
	e.fg.UpdateUser(uid(1), map[string]any{"jobTitle": "After a lost reply"})
	lr := &lostReply{Store: e.store, armed: true}
	r := resync.New(resync.Deps{
		Config: e.cfg,
		Graph:  func() (resync.Graph, error) { return e.graph, nil },
		Store:  func() (resync.Store, error) { return lr, nil },
		Queue:  func() (resync.Queue, error) { return e.rq, nil },
		Events: events.NewWriter(func() (events.Queue, error) { return e.rq, nil }, nil),
		Now:    e.clock.now,
	})
	r.StepBudget = 0 // one page per invocation: these tests drive and count the steps
	got, err := r.Request(e.ctx(), "users", "gap")
	if err != nil || got.Action != resync.Started {
		t.Fatalf("Request after a lost reply = %+v, %v: the pass must start, not collapse into itself", got, err)
	}
	e.driveToEnd()
	if ev := latestByUser(e.events())[uid(1)]; ev.Object["jobTitle"] != "After a lost reply" {
		t.Errorf("event: %+v", ev)
	}
}
