package resync_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/events"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
	"github.com/graphwebhooks/graph-webhooks-go/internal/resync"
	"github.com/graphwebhooks/graph-webhooks-go/internal/storagequeue"
)

// pacedDelta is the delta fake on a clock: each page read moves the unit env's clock by perPage, and the
// page with index failAt (when > 0) fails as Graph refusing it.
type pacedDelta struct {
	*deltaFake
	e       *unitEnv
	perPage time.Duration
	failAt  int
	blockAt int // when > 0, that page read waits for its context to end
	reads   int
}

func (p *pacedDelta) Delta(ctx context.Context, link string) (graph.DeltaPage, error) {
	p.e.now = p.e.now.Add(p.perPage)
	p.reads++
	if p.failAt > 0 && p.reads == p.failAt {
		return graph.DeltaPage{}, &graph.Error{Op: "delta", Status: 400, Kind: graph.KindBadRequest}
	}
	if p.blockAt > 0 && p.reads == p.blockAt {
		<-ctx.Done()
		return graph.DeltaPage{}, ctx.Err()
	}
	return p.deltaFake.Delta(ctx, link)
}

func (p *pacedDelta) DeltaStart(ctx context.Context, collection string, sel []string, latest bool) (graph.DeltaPage, error) {
	p.e.now = p.e.now.Add(p.perPage)
	return p.deltaFake.DeltaStart(ctx, collection, sel, latest)
}

// refusingQueue fails every enqueue to the work queue while refuse is set.
type refusingQueue struct {
	*storagequeue.Memory
	refuse bool
}

func (q *refusingQueue) Enqueue(ctx context.Context, queue string, text []byte, delay time.Duration) error {
	if q.refuse && queue == message.WorkQueue {
		return errors.New("queue storage unavailable")
	}
	return q.Memory.Enqueue(ctx, queue, text, delay)
}

// newPacedEnv is a groups unit env whose runner takes pages within budget, each page taking perPage.
func newPacedEnv(t *testing.T, perPage time.Duration, budget time.Duration) (*unitEnv, *pacedDelta) {
	e, p, _ := newPacedEnvQueue(t, perPage, budget)
	return e, p
}

func newPacedEnvQueue(t *testing.T, perPage time.Duration, budget time.Duration) (*unitEnv, *pacedDelta, *refusingQueue) {
	e := newUnitEnv(t, "groups")
	p := &pacedDelta{deltaFake: e.g, e: e, perPage: perPage}
	rq := &refusingQueue{Memory: e.q}
	vars := map[string]string{config.TenantID: "8c1f4b2e-0d6a-4f57-9a3e-2b9d7c6e5f41", config.Storage: "UseDevelopmentStorage=true", config.Resource: "groups"}
	e.r = resync.New(resync.Deps{
		Config: config.Load(func(k string) string { return vars[k] }),
		Graph:  func() (resync.Graph, error) { return p, nil },
		Store:  func() (resync.Store, error) { return e.cp, nil },
		Queue:  func() (resync.Queue, error) { return rq, nil },
		Events: events.NewWriter(func() (events.Queue, error) { return e.q, nil }, nil),
		Now:    func() time.Time { return e.now },
	})
	e.r.StepBudget = budget
	if _, err := e.r.Request(context.Background(), "groups", "baseline"); err != nil {
		t.Fatal(err)
	}
	pages := make([][]graph.Object, 12)
	for i := range pages {
		pages[i] = []graph.Object{group(i+1, "displayName", fmt.Sprintf("Page %d", i+1))}
	}
	e.g.pages = pages
	if _, err := e.r.Request(context.Background(), "groups", "test"); err != nil {
		t.Fatal(err)
	}
	return e, p, rq
}

func (e *unitEnv) takeStep() (*message.Message, bool) {
	e.t.Helper()
	ms := e.q.Take(message.WorkQueue)
	if len(ms) > 1 {
		e.t.Fatalf("%d messages on the work queue, want one continuation at most", len(ms))
	}
	if len(ms) == 0 {
		return nil, false
	}
	m, err := message.Decode(ms[0].Text)
	if err != nil {
		e.t.Fatal(err)
	}
	return m, true
}

// TestUnitStepTakesPagesWithinItsBudget: with pages taking 10 s each and a 45 s budget, an invocation
// takes five pages (starting none after 45 s), checkpointing each, then hands over; 12 pages take three
// invocations, and every group's event is written once (a page's last group is reported with the next
// page, in case its members continue there).
func TestUnitStepTakesPagesWithinItsBudget(t *testing.T) {
	e, _ := newPacedEnv(t, 10*time.Second, 45*time.Second)
	var results []resync.StepResult
	for {
		m, ok := e.takeStep()
		if !ok {
			break
		}
		res, err := e.r.Step(context.Background(), m)
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, res)
		if !res.Done {
			cp, _, _ := e.cp.Load(context.Background(), "groups")
			if cp.Pass == nil || cp.Pass.Pages != res.Page {
				t.Fatalf("after the invocation that ended at page %d the checkpoint has %+v", res.Page, cp.Pass)
			}
		}
	}
	if len(results) != 3 {
		t.Fatalf("%d invocations, want 3 (5 + 5 + 2 pages): %+v", len(results), results)
	}
	for i, want := range []struct{ first, last int }{{1, 5}, {6, 10}, {11, 12}} {
		if r := results[i]; r.FirstPage != want.first || r.Page != want.last || r.Pages != want.last-want.first+1 {
			t.Errorf("invocation %d: pages %d–%d (%d); want pages %d–%d", i+1, r.FirstPage, r.Page, r.Pages, want.first, want.last)
		}
	}
	if !results[2].Done {
		t.Error("the last invocation did not complete the pass")
	}
	if evs := e.events(); len(evs) != 12 {
		t.Errorf("%d events, want 12 (one per page)", len(evs))
	}
}

// TestUnitStepRespectsItsDeadline: an invocation whose deadline leaves little time stops early even when
// the budget would allow more: at half the time to its deadline less Margin.
func TestUnitStepRespectsItsDeadline(t *testing.T) {
	e, _ := newPacedEnv(t, 10*time.Second, time.Hour)
	e.r.Margin = 20 * time.Second
	m, _ := e.takeStep()
	// A context's deadline is on the clock the context keeps: the env's clock starts where the invocation
	// does on it, 100 s before the deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Second)
	defer cancel()
	dl, _ := ctx.Deadline()
	e.now = dl.Add(-100 * time.Second)
	res, err := e.r.Step(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	// (100 s − 20 s) / 2 = 40 s: pages at 10, 20, 30, 40 s; none starts at 40 s.
	if res.Pages != 4 {
		t.Errorf("%d pages before handing over, want 4", res.Pages)
	}
}

// TestUnitLaterPageFailureHandsOver: a page that fails after others were done in the same invocation is
// handed over as a continuation (the message the invocation began with is stale by then), not failed.
func TestUnitLaterPageFailureHandsOver(t *testing.T) {
	e, p := newPacedEnv(t, time.Second, time.Hour)
	p.failAt = p.reads + 3 // the third page read by the step below
	m, _ := e.takeStep()
	res, err := e.r.Step(context.Background(), m)
	if err != nil {
		t.Fatalf("Step: %v; want the failed page handed over", err)
	}
	if res.Pages != 3 || res.Page != 3 {
		t.Errorf("pages %d (last %d), want 2 done and the third attempted", res.Pages, res.Page)
	}
	next, ok := e.takeStep()
	if !ok {
		t.Fatal("no continuation after the failed page")
	}
	c, err := resync.DecodeContinuation(next.Continuation)
	cp, _, _ := e.cp.Load(context.Background(), "groups")
	if err != nil || c.Link != cp.Pass.Link || cp.Pass.Pages != 2 {
		t.Fatalf("continuation %+v (%v) for checkpoint %+v: want the failed page's link", c, err, cp.Pass)
	}
	p.failAt = 0
	if _, err := e.r.Step(context.Background(), next); err != nil {
		t.Fatal(err)
	}
	e.drive()
	if evs := e.events(); len(evs) != 12 {
		t.Errorf("%d events after the hand-over, want 12", len(evs))
	}
}

// TestUnitStalledLaterPageHandsOverInTime: a later page that hangs (storage or Graph stalled) is cut short
// before the invocation's deadline, leaving time to enqueue its continuation, so the pass goes on in the
// next invocation instead of waiting to be found stalled.
func TestUnitStalledLaterPageHandsOverInTime(t *testing.T) {
	e, p := newPacedEnv(t, time.Second, time.Hour)
	e.r.Margin = 0
	p.blockAt = p.reads + 2 // the second page read by the step below
	m, _ := e.takeStep()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second+500*time.Millisecond)
	defer cancel()
	// The invocation's deadline lives in the context, on the wall clock: the runner measures it with its own
	// clock, so that clock starts at the wall clock here (otherwise the deadline would look days away, or
	// long past, depending on today's date).
	e.now = time.Now()
	res, err := e.r.Step(ctx, m)
	if err != nil || ctx.Err() != nil {
		t.Fatalf("Step: %v (invocation context: %v); want the stalled page handed over within the deadline", err, ctx.Err())
	}
	next, ok := e.takeStep()
	cp, _, _ := e.cp.Load(context.Background(), "groups")
	if !ok || res.Pages != 2 || cp.Pass.Pages != 1 {
		t.Fatalf("continuation %v, pages %d, checkpoint %+v: want page 2 handed over after page 1", ok, res.Pages, cp.Pass)
	}
	if c, _ := resync.DecodeContinuation(next.Continuation); c.Link != cp.Pass.Link {
		t.Errorf("continuation for %q, the pass stands at %q", c.Link, cp.Pass.Link)
	}
}

// TestUnitFailedHandOverIsRecoveredByRedelivery: an invocation that took several pages and then could not
// enqueue the continuation fails; the host's redelivery of the message it began with re-sends the
// continuation of the page the pass stands at, and the pass completes.
func TestUnitFailedHandOverIsRecoveredByRedelivery(t *testing.T) {
	e, _, rq := newPacedEnvQueue(t, 10*time.Second, 25*time.Second)
	m, _ := e.takeStep()
	rq.refuse = true
	res, err := e.r.Step(context.Background(), m)
	if err == nil || res.Pages != 3 {
		t.Fatalf("Step: %d pages, %v; want 3 pages and the hand-over failed", res.Pages, err)
	}
	rq.refuse = false
	res, err = e.r.Step(context.Background(), m) // the host redelivers the first message
	if err != nil || !res.Resent {
		t.Fatalf("redelivered first message: %+v, %v; want the continuation re-sent", res, err)
	}
	e.drive()
	cp, _, _ := e.cp.Load(context.Background(), "groups")
	if cp.Pass != nil || cp.LastPass == nil || cp.LastPass.Pages != 12 {
		t.Fatalf("checkpoint after the redelivery: %+v", cp)
	}
	if evs := e.events(); len(evs) != 12 {
		t.Errorf("%d events, want 12", len(evs))
	}
}
