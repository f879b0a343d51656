package events

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/logctx"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
	"github.com/graphwebhooks/graph-webhooks-go/internal/objectstate"
	"github.com/graphwebhooks/graph-webhooks-go/internal/storagequeue"
	"github.com/graphwebhooks/graph-webhooks-go/internal/testclock"
)

const uid = "6e1f0001-7c3a-4b2d-9e8f-0a1b2c3d4e5f"

var (
	sel = []string{"id", "displayName", "jobTitle"}
	t0  = testclock.Date(2026, 12, 1, 10, 0, 0)
)

func newWriter(mode objectstate.Mode) (*Writer, *storagequeue.Memory, *objectstate.Store) {
	q := storagequeue.NewMemory()
	st := objectstate.NewMemoryTable().Store(objectstate.Options{Mode: mode})
	return NewWriter(func() (Queue, error) { return q, nil }, func() (State, error) { return st, nil }), q, st
}

func item(id string, readAt time.Time, props map[string]any) Item {
	e := message.Event{V: 1, ID: readAt.String(), Resource: "users", ResourceID: id, ChangeType: graph.Updated, Object: props, Field: message.FieldUser}
	return Item{Event: e, ReadAt: readAt, Select: sel}
}

func written(t *testing.T, q *storagequeue.Memory) []message.Event {
	t.Helper()
	var out []message.Event
	for _, m := range q.Take(message.ChangesQueue) {
		var e message.Event
		if err := json.Unmarshal(m.Text, &e); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func TestUnchangedStateIsWrittenOnce(t *testing.T) {
	w, q, _ := newWriter(objectstate.Suppress)
	props := map[string]any{"id": uid, "displayName": "Ada", "jobTitle": "Engineer"}
	for i := range 3 { // the same state read three times: duplicates spread over messages
		res, err := w.Write(context.Background(), []Item{item(uid, t0.Add(time.Duration(i)*time.Second), props)})
		if err != nil {
			t.Fatal(err)
		}
		if want := (Result{Written: 1}); i == 0 && res != want || i > 0 && res != (Result{Suppressed: 1}) {
			t.Errorf("write %d: %+v", i, res)
		}
	}
	evs := written(t, q)
	if len(evs) != 1 || evs[0].Changed != nil || evs[0].Previous != nil {
		t.Fatalf("events %+v: want one, without changed (nothing to compare with)", evs)
	}
}

func TestChangedAndPrevious(t *testing.T) {
	w, q, _ := newWriter(objectstate.Suppress)
	ctx := context.Background()
	w.Write(ctx, []Item{item(uid, t0, map[string]any{"id": uid, "displayName": "Ada", "jobTitle": "Engineer"})})
	written(t, q)
	w.Write(ctx, []Item{item(uid, t0.Add(time.Second), map[string]any{"id": uid, "displayName": "Ada", "jobTitle": "CTO"})})
	evs := written(t, q)
	if len(evs) != 1 || !slices.Equal(evs[0].Changed, []string{"jobTitle"}) || evs[0].Previous["jobTitle"] != "Engineer" {
		t.Fatalf("events %+v: want changed [jobTitle] with the old value", evs)
	}
	b, _ := json.Marshal(evs[0])
	var raw map[string]any
	json.Unmarshal(b, &raw)
	if _, ok := raw["changed"]; !ok {
		t.Errorf("changed is not in the JSON: %s", b)
	}
}

func TestOlderReadNeverMovesStateBack(t *testing.T) {
	w, q, st := newWriter(objectstate.Suppress)
	ctx := context.Background()
	newer := item(uid, t0.Add(2*time.Second), map[string]any{"id": uid, "displayName": "Ada", "jobTitle": "CTO"})
	older := item(uid, t0.Add(time.Second), map[string]any{"id": uid, "displayName": "Ada", "jobTitle": "Engineer"})
	w.Write(ctx, []Item{newer})
	if res, _ := w.Write(ctx, []Item{older}); res.Suppressed != 1 {
		t.Fatalf("an older read was written: %+v", res)
	}
	if evs := written(t, q); len(evs) != 1 || evs[0].Object["jobTitle"] != "CTO" {
		t.Fatalf("events %+v", evs)
	}
	r, err := st.Get(ctx, "users", uid)
	if err != nil || r == nil || !r.ReadAt.Equal(newer.ReadAt) {
		t.Fatalf("stored row %+v, %v: the state went back", r, err)
	}
}

func TestMembershipAndDeletesAreAlwaysWritten(t *testing.T) {
	w, q, _ := newWriter(objectstate.Suppress)
	ctx := context.Background()
	g := map[string]any{"id": uid, "displayName": "Team"}
	it := item(uid, t0, g)
	it.Event.Resource, it.Event.Field = "groups", message.FieldGroup
	w.Write(ctx, []Item{it})
	it.ReadAt = t0.Add(time.Second)
	it.Event.Members = &message.Members{Added: []string{"x"}, Removed: []string{}}
	if res, _ := w.Write(ctx, []Item{it}); res.Written != 1 {
		t.Fatalf("a membership change with unchanged properties was suppressed: %+v", res)
	}
	del := item(uid, t0.Add(-time.Hour), nil) // even read before the stored state
	del.Event.Resource, del.Event.ChangeType = "groups", graph.Deleted
	if res, _ := w.Write(ctx, []Item{del}); res.Written != 1 {
		t.Fatalf("a delete was suppressed: %+v", res)
	}
	if n := len(written(t, q)); n != 3 {
		t.Fatalf("%d events, want 3", n)
	}
}

func TestEmitModeWritesEverything(t *testing.T) {
	w, q, _ := newWriter(objectstate.Emit)
	props := map[string]any{"id": uid, "displayName": "Ada", "jobTitle": "Engineer"}
	w.Write(context.Background(), []Item{item(uid, t0, props)})
	w.Write(context.Background(), []Item{item(uid, t0.Add(time.Second), props)})
	evs := written(t, q)
	if len(evs) != 2 || evs[1].Changed == nil || len(evs[1].Changed) != 0 {
		t.Fatalf("events %+v: want both, the second with an empty changed list", evs)
	}
}

// flakyState is a state store whose Table storage can be switched off: Decide and Commit then fail as
// the Table service's 503 would reach them.
type flakyState struct {
	State
	down    bool
	commits int
}

var errTableDown = errors.New("objectstate: read users/x: RESPONSE 503: ServerBusy")

func (f *flakyState) Decide(ctx context.Context, obs []objectstate.Observation) ([]objectstate.Decision, error) {
	if f.down {
		return nil, errTableDown
	}
	return f.State.Decide(ctx, obs)
}

func (f *flakyState) Commit(ctx context.Context, ds []objectstate.Decision) error {
	f.commits++
	if f.down {
		return errTableDown
	}
	return f.State.Commit(ctx, ds)
}

// TestTableFailureStepsAside: with Table storage failing, every event is still written — unchecked (no
// changed/previous, nothing suppressed, even a state already emitted) — one warning says so, and the stored
// states stay where they were; once the table is back, detection resumes from them.
func TestTableFailureStepsAside(t *testing.T) {
	q := storagequeue.NewMemory()
	st := &flakyState{State: objectstate.NewMemoryTable().Store(objectstate.Options{Mode: objectstate.Suppress})}
	w := NewWriter(func() (Queue, error) { return q, nil }, func() (State, error) { return st, nil })
	var logs bytes.Buffer
	ctx := logctx.With(context.Background(), slog.New(slog.NewTextHandler(&logs, nil)))
	ada := map[string]any{"id": uid, "displayName": "Ada", "jobTitle": "Engineer"}
	w.Write(ctx, []Item{item(uid, t0, ada)})
	written(t, q)

	st.down = true
	commits := st.commits
	cto := map[string]any{"id": uid, "displayName": "Ada", "jobTitle": "CTO"}
	res, err := w.Write(ctx, []Item{item(uid, t0.Add(time.Second), ada), item(uid, t0.Add(2*time.Second), cto)})
	if err != nil || res != (Result{Written: 2, Unchecked: 2}) {
		t.Fatalf("with the table down: %+v, %v; want both events written, unchecked", res, err)
	}
	evs := written(t, q)
	if len(evs) != 2 || evs[0].Changed != nil || evs[1].Changed != nil || evs[1].Previous != nil {
		t.Fatalf("events %+v: want both, the unchanged one too, without changed/previous", evs)
	}
	if n := strings.Count(logs.String(), "change detection unavailable"); n != 1 || !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "ServerBusy") {
		t.Errorf("want one warning naming the cause, got:\n%s", logs.String())
	}
	if st.commits != commits {
		t.Error("states were committed without a decision")
	}

	st.down = false
	if _, err := w.Write(ctx, []Item{item(uid, t0.Add(3*time.Second), cto)}); err != nil {
		t.Fatal(err)
	}
	if evs := written(t, q); len(evs) != 1 || !slices.Equal(evs[0].Changed, []string{"jobTitle"}) || evs[0].Previous["jobTitle"] != "Engineer" {
		t.Fatalf("after the table is back: %+v; want jobTitle changed from the last stored state", evs)
	}
}

// TestQueueFailureFailsTheWrite: without the queue nothing can be written, and the caller must fail so the
// host retries its message; with the table down too, the same.
func TestQueueFailureFailsTheWrite(t *testing.T) {
	q := storagequeue.NewMemory()
	q.Fail = func(string) error { return errors.New("connection refused") }
	for _, down := range []bool{false, true} {
		st := &flakyState{State: objectstate.NewMemoryTable().Store(objectstate.Options{}), down: down}
		w := NewWriter(func() (Queue, error) { return q, nil }, func() (State, error) { return st, nil })
		if _, err := w.Write(context.Background(), []Item{item(uid, t0, map[string]any{"id": uid})}); err == nil {
			t.Errorf("table down %v: the write succeeded with the queue failing", down)
		}
		if st.commits != 0 {
			t.Errorf("table down %v: states moved although no event was written", down)
		}
	}
}

func TestWithoutStateEverythingIsWritten(t *testing.T) {
	q := storagequeue.NewMemory()
	w := NewWriter(func() (Queue, error) { return q, nil }, nil)
	props := map[string]any{"id": uid}
	if res, err := w.Write(context.Background(), []Item{item(uid, t0, props), item(uid, t0, props)}); err != nil || res.Written != 2 {
		t.Fatalf("%+v, %v", res, err)
	}
}

// TestStaleCacheStillEmits runs two writers over one table: writer a caches the state it wrote, b moves
// the object, then a reads the object back at a's cached state. Against a's cache that is nothing new;
// against the row it is news. The event is written (after the check by the commit), and the row follows.
func TestStaleCacheStillEmits(t *testing.T) {
	q := storagequeue.NewMemory()
	tbl := objectstate.NewMemoryTable()
	mk := func() *Writer {
		st := tbl.Store(objectstate.Options{})
		return NewWriter(func() (Queue, error) { return q, nil }, func() (State, error) { return st, nil })
	}
	a, b := mk(), mk()
	ctx := context.Background()
	engineer := map[string]any{"id": uid, "displayName": "Ada", "jobTitle": "Engineer"}
	director := map[string]any{"id": uid, "displayName": "Ada", "jobTitle": "Director"}
	for _, s := range []struct {
		w     *Writer
		at    time.Duration
		props map[string]any
	}{{a, 0, engineer}, {b, time.Second, director}, {a, 2 * time.Second, engineer}} {
		if _, err := s.w.Write(ctx, []Item{item(uid, t0.Add(s.at), s.props)}); err != nil {
			t.Fatal(err)
		}
	}
	evs := written(t, q)
	if len(evs) != 3 {
		t.Fatalf("%d events, want 3 (new, changed to Director, changed back)", len(evs))
	}
	if last := evs[2]; last.Object["jobTitle"] != "Engineer" || !slices.Equal(last.Changed, []string{"jobTitle"}) || last.Previous["jobTitle"] != "Director" {
		t.Errorf("last event: object %v changed %v previous %v", last.Object, last.Changed, last.Previous)
	}
	// The row moved after the event: a third writer reads Engineer and suppresses it.
	res, err := mk().Write(ctx, []Item{item(uid, t0.Add(3*time.Second), engineer)})
	if err != nil || res != (Result{Suppressed: 1}) {
		t.Errorf("after the late event: %+v, %v; want suppressed", res, err)
	}
}

// racingState is a state store whose rows always move between Decide and Commit: every Commit decides its
// observations again, and they become news only in the last round Write tries.
type racingState struct {
	State
	commits int
}

func (r *racingState) Commit(ctx context.Context, ds []objectstate.Decision) error {
	r.commits++
	late := &objectstate.Redecided{}
	for i, d := range ds {
		d.Emit = r.commits > maxRedecided
		late.Indexes = append(late.Indexes, i)
		late.Decisions = append(late.Decisions, d)
	}
	return late
}

// TestNewsFromTheLastRedecidedRoundIsWritten: when rows keep moving under every commit, Write gives up
// committing after maxRedecided rounds, but an event the last round found to be news is still written.
func TestNewsFromTheLastRedecidedRoundIsWritten(t *testing.T) {
	q := storagequeue.NewMemory()
	st := &racingState{State: objectstate.NewMemoryTable().Store(objectstate.Options{Mode: objectstate.Suppress})}
	w := NewWriter(func() (Queue, error) { return q, nil }, func() (State, error) { return st, nil })
	ctx := context.Background()
	props := map[string]any{"id": uid, "displayName": "Ada"}
	// First sight, committed for real, so that the next identical observation is suppressed by Decide.
	if _, err := NewWriter(func() (Queue, error) { return q, nil }, func() (State, error) { return st.State, nil }).Write(ctx, []Item{item(uid, t0, props)}); err != nil {
		t.Fatal(err)
	}
	q.Take(message.ChangesQueue)
	res, err := w.Write(ctx, []Item{item(uid, t0.Add(time.Minute), props)})
	if err != nil {
		t.Fatal(err)
	}
	if got := written(t, q); len(got) != 1 || res.Written != 1 || res.Suppressed != 0 {
		t.Fatalf("written %d events (result %+v), want the redecided one", len(got), res)
	}
	if st.commits != maxRedecided+1 {
		t.Errorf("%d commits, want %d", st.commits, maxRedecided+1)
	}
}
