package resync_test

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/checkpoint"
	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/events"
	"github.com/graphwebhooks/graph-webhooks-go/internal/family"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
	"github.com/graphwebhooks/graph-webhooks-go/internal/objectstate"
	"github.com/graphwebhooks/graph-webhooks-go/internal/resync"
	"github.com/graphwebhooks/graph-webhooks-go/internal/storagequeue"
	"github.com/graphwebhooks/graph-webhooks-go/internal/testclock"
)

const testDrive = "b!-RIj2DuyvEyV1T4NlOaMHk8XkS_I8MdFlUCq1BlcjgmhRfAj3-Z8RY2VpuvV_tpd"

// driveFake is one drive's delta in memory: every change is logged with the item's state, the root and
// the parent folder echoed after it as Graph does; a link's token is a position in the log. It counts
// calls, can hide the newest changes (delta lagging the notification), and answers 410 once when told.
type driveFake struct {
	mu      sync.Mutex
	items   map[string]graph.Object
	log     []graph.Object
	hidden  int  // the newest changes delta does not show yet
	gone    bool // the next Delta answers 410 resyncRequired
	starts  []string
	calls   int
	created time.Time // createdDateTime given to new items
}

func newDriveFake(created time.Time) *driveFake {
	f := &driveFake{items: map[string]graph.Object{}, created: created}
	f.items["ROOT"] = graph.Object{"id": "ROOT", "name": "root", "root": map[string]any{}, "folder": map[string]any{"childCount": 0}, "size": 0}
	return f
}

// put adds or changes an item under a parent folder (or the root) and echoes the parents.
func (f *driveFake) put(id, parent string, props graph.Object) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o := maps.Clone(f.items[id])
	if o == nil {
		o = graph.Object{"id": id, "createdDateTime": f.created.Format(time.RFC3339), "parentReference": map[string]any{"id": parent}}
	}
	maps.Copy(o, props)
	f.items[id] = o
	f.log = append(f.log, maps.Clone(o))
	for p := parent; p != ""; {
		po := f.items[p]
		po["size"] = len(f.log) // what a folder's contents change
		po["folder"] = map[string]any{"childCount": len(f.log)}
		f.log = append(f.log, maps.Clone(po))
		next, _ := po["parentReference"].(map[string]any)
		p, _ = next["id"].(string)
	}
}

func (f *driveFake) remove(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.items, id)
	f.log = append(f.log, graph.Object{"id": id, "deleted": map[string]any{"state": "deleted"}})
}

func (f *driveFake) link(pos int) string {
	return "https://graph.test/v1.0/drives/" + testDrive + "/root/delta?token=" + strconv.Itoa(pos)
}

func (f *driveFake) DriveDeltaStart(_ context.Context, drive string, sel []string, latest bool) (graph.DeltaPage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.starts = append(f.starts, fmt.Sprintf("%s latest=%v select=%s", drive, latest, strings.Join(sel, ",")))
	visible := len(f.log) - f.hidden
	if latest {
		return graph.DeltaPage{DeltaLink: f.link(visible)}, nil
	}
	var all []graph.Object
	for _, id := range slices.Sorted(maps.Keys(f.items)) {
		all = append(all, maps.Clone(f.items[id]))
	}
	return graph.DeltaPage{Objects: all, DeltaLink: f.link(visible)}, nil
}

func (f *driveFake) Delta(_ context.Context, link string) (graph.DeltaPage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.gone {
		f.gone = false
		return graph.DeltaPage{}, &graph.Error{Op: "delta", Status: http.StatusGone, Code: "resyncRequired", Kind: graph.KindResyncRequired}
	}
	_, tok, _ := strings.Cut(link, "token=")
	from, err := strconv.Atoi(tok)
	if err != nil {
		return graph.DeltaPage{}, fmt.Errorf("bad link %q", link)
	}
	visible := len(f.log) - f.hidden
	return graph.DeltaPage{Objects: slices.Clone(f.log[from:visible]), DeltaLink: f.link(visible)}, nil
}

func (f *driveFake) DeltaStart(context.Context, string, []string, bool) (graph.DeltaPage, error) {
	return graph.DeltaPage{}, fmt.Errorf("no directory here")
}

func (f *driveFake) Batch(context.Context, []graph.Get) (graph.BatchResult, error) {
	return graph.BatchResult{}, fmt.Errorf("a drive pass read an item on its own")
}

type driveEnv struct {
	drive string
	t     *testing.T
	g     *driveFake
	q     *storagequeue.Memory
	cp    *checkpoint.Memory
	r     *resync.Runner
	now   time.Time
}

func newDriveEnv(t *testing.T, settings map[string]string) *driveEnv {
	return newDriveEnvFor(t, testDrive, objectstate.NewMemoryTable().Store(objectstate.Options{}), settings)
}

// newDriveEnvFor is a drive of the given id whose events are decided against state.
func newDriveEnvFor(t *testing.T, drive string, state *objectstate.Store, settings map[string]string) *driveEnv {
	now := testclock.Date(2026, 12, 1, 10, 0, 0)
	e := &driveEnv{t: t, g: newDriveFake(now.Add(-30 * 24 * time.Hour)), q: storagequeue.NewMemory(), cp: checkpoint.NewMemory(), now: now, drive: drive}
	vars := map[string]string{config.TenantID: "8c1f4b2e-0d6a-4f57-9a3e-2b9d7c6e5f41", config.Storage: "UseDevelopmentStorage=true",
		config.Resource: "drives/" + drive}
	maps.Copy(vars, settings)
	e.r = resync.New(resync.Deps{
		Config: config.Load(func(k string) string { return vars[k] }),
		Graph:  func() (resync.Graph, error) { return e.g, nil },
		Store:  func() (resync.Store, error) { return e.cp, nil },
		Queue:  func() (resync.Queue, error) { return e.q, nil },
		Events: events.NewWriter(func() (events.Queue, error) { return e.q, nil }, func() (events.State, error) { return state, nil }),
		Now:    func() time.Time { return e.now },
	})
	return e
}

// pass asks for a pass, as a tap does, and runs its steps (and any follow-up) to the end; it returns the
// events written.
func (e *driveEnv) pass() []message.Event {
	e.t.Helper()
	e.now = e.now.Add(time.Minute)
	if _, err := e.r.Request(context.Background(), "drives/"+e.drive, "change notification"); err != nil {
		e.t.Fatal(err)
	}
	e.steps()
	return e.events()
}

func (e *driveEnv) steps() { e.t.Helper(); runSteps(e.t, e.q, e.r, 20) }

func (e *driveEnv) events() []message.Event { e.t.Helper(); return takeEvents(e.t, e.q) }

func summary(evs []message.Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, fmt.Sprintf("%s %s %v", ev.ResourceID, ev.ChangeType, ev.Changed))
	}
	slices.Sort(out)
	return out
}

// The first pass takes a starting point and emits nothing; then each pass emits one event per item that
// changed, and none for the root or for folders echoed because something inside them changed.
func TestUnitDrivePassEmitsGenuineChangesOnly(t *testing.T) {
	e := newDriveEnv(t, nil)
	e.g.put("FOLDER1", "ROOT", graph.Object{"name": "Reports", "folder": map[string]any{"childCount": 0}})
	e.g.put("FILE1", "FOLDER1", graph.Object{"name": "q3.xlsx", "size": 10, "file": map[string]any{}})
	if evs := e.pass(); len(evs) != 0 || len(e.g.starts) != 1 || !strings.Contains(e.g.starts[0], "latest=true") {
		t.Fatalf("first pass: %d events, starts %v: want a starting point from now", len(evs), e.g.starts)
	}
	if !strings.Contains(e.g.starts[0], "select=id,name,webUrl,size,createdDateTime,lastModifiedDateTime,lastModifiedBy,parentReference,file,folder,deleted,root") {
		t.Errorf("delta select %q: want GRAPH_DRIVEITEM_SELECT's default and the facets", e.g.starts[0])
	}

	e.g.put("FILE1", "FOLDER1", graph.Object{"size": 20})
	evs := e.pass()
	if got := summary(evs); !slices.Equal(got, []string{"FILE1 updated []"}) {
		t.Fatalf("a file changed in an old folder: events %v, want the file's alone", got)
	}
	ev := evs[0]
	if ev.Resource != "driveItems" || ev.Field != "driveItem" || ev.Context["driveId"] != testDrive || fmt.Sprint(ev.Object["size"]) != "20" || ev.SubscriptionID != nil {
		t.Errorf("event %+v", ev)
	}

	e.g.put("FILE1", "FOLDER1", graph.Object{"size": 30})
	e.g.put("FOLDER1", "ROOT", graph.Object{"name": "Reports 2026"})
	e.g.created = e.now
	e.g.put("FOLDER2", "FOLDER1", graph.Object{"name": "New", "folder": map[string]any{"childCount": 0}})
	if got := summary(e.pass()); !slices.Equal(got, []string{"FILE1 updated [size]", "FOLDER1 updated [name]", "FOLDER2 updated []"}) {
		t.Fatalf("a change, a rename and a new folder: events %v", got)
	}

	e.g.remove("FILE1")
	e.g.put("FOLDER2", "FOLDER1", graph.Object{"description": "touched"}) // not selected: nothing new
	if got := summary(e.pass()); !slices.Equal(got, []string{"FILE1 deleted []"}) {
		t.Fatalf("a delete: events %v", got)
	}

	// A folder moved to the root: its own parentReference changed.
	e.g.put("FOLDER2", "ROOT", graph.Object{"parentReference": map[string]any{"id": "ROOT"}})
	if got := summary(e.pass()); !slices.Equal(got, []string{"FOLDER2 updated [parentReference]"}) {
		t.Fatalf("a move: events %v", got)
	}
}

// A pass that finds nothing looks once more after SecondLook, which catches a change delta showed late;
// that look is not followed by another.
func TestUnitDriveEmptyPassLooksAgain(t *testing.T) {
	e := newDriveEnv(t, nil)
	e.g.put("FILE1", "ROOT", graph.Object{"name": "a.txt", "size": 1, "file": map[string]any{}})
	e.pass()
	e.g.put("FILE1", "ROOT", graph.Object{"size": 2})
	if got := summary(e.pass()); !slices.Equal(got, []string{"FILE1 updated []"}) {
		t.Fatalf("%v", got)
	}
	e.g.put("FILE1", "ROOT", graph.Object{"size": 3})
	e.g.hidden = 2 // the change and the root's echo are not in delta yet

	e.now = e.now.Add(time.Minute)
	if _, err := e.r.Request(context.Background(), "drives/"+testDrive, "change notification"); err != nil {
		t.Fatal(err)
	}
	m := e.q.Take(message.WorkQueue)
	if len(m) != 1 {
		t.Fatalf("%d messages queued", len(m))
	}
	step := func(text []byte) {
		msg, err := message.Decode(text)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.r.Step(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}
	step(m[0].Text)
	if evs := e.events(); len(evs) != 0 {
		t.Fatalf("the lagging pass wrote %v", summary(evs))
	}
	look := e.q.Take(message.WorkQueue)
	if len(look) != 1 || look[0].Delay != resync.SecondLook {
		t.Fatalf("after an empty pass: %+v, want one look delayed by %s", look, resync.SecondLook)
	}
	e.g.hidden = 0
	e.now = e.now.Add(resync.SecondLook)
	step(look[0].Text)
	if got := summary(e.events()); !slices.Equal(got, []string{"FILE1 updated [size]"}) {
		t.Fatalf("the second look: %v", got)
	}

	// A look that finds nothing ends there.
	calls := e.g.calls
	if evs := e.pass(); len(evs) != 0 {
		t.Fatalf("%v", summary(evs))
	}
	if e.g.calls != calls+2 {
		t.Errorf("an empty pass and its look cost %d delta calls, want 2", e.g.calls-calls)
	}
	cp, _, _ := e.cp.Load(context.Background(), "drives/"+testDrive)
	if cp.Pass != nil || cp.LastPass == nil || !cp.LastPass.Look {
		t.Errorf("checkpoint after the look: %+v", cp)
	}
}

// Item ids are unique within their drive only: two drives' items of one id have states of their own.
func TestUnitDriveItemStatesAreKeptPerDrive(t *testing.T) {
	state := objectstate.NewMemoryTable().Store(objectstate.Options{})
	a := newDriveEnvFor(t, testDrive, state, nil)
	b := newDriveEnvFor(t, "b!second", state, nil)
	for _, e := range []*driveEnv{a, b} {
		e.pass()
		e.g.put("FILE1", "ROOT", graph.Object{"name": "same id", "size": 1, "file": map[string]any{}})
		if got := summary(e.pass()); !slices.Equal(got, []string{"FILE1 updated []"}) {
			t.Fatalf("drive %s: %v", e.drive, got)
		}
	}
	a.g.put("FILE1", "ROOT", graph.Object{"size": 2})
	if got := summary(a.pass()); !slices.Equal(got, []string{"FILE1 updated [size]"}) {
		t.Fatalf("drive a: %v", got)
	}
	b.g.put("FILE1", "ROOT", graph.Object{"size": 1}) // echoed, unchanged in drive b
	if got := summary(b.pass()); len(got) != 0 {
		t.Fatalf("drive b's unchanged item was compared with drive a's: %v", got)
	}
}

// A tap while a second look waits runs that look at once, as a pass of its own; the look's delayed message
// is then stale.
func TestUnitDriveTapStartsAWaitingLook(t *testing.T) {
	e := newDriveEnv(t, nil)
	e.g.put("FILE1", "ROOT", graph.Object{"name": "a.txt", "size": 1, "file": map[string]any{}})
	e.pass()
	e.now = e.now.Add(time.Minute)
	if _, err := e.r.Request(context.Background(), "drives/"+testDrive, "change notification"); err != nil {
		t.Fatal(err)
	}
	step := func(text []byte) resync.StepResult {
		t.Helper()
		msg, err := message.Decode(text)
		if err != nil {
			t.Fatal(err)
		}
		res, err := e.r.Step(context.Background(), msg)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	step(e.q.Take(message.WorkQueue)[0].Text) // finds nothing: a look is scheduled
	look := e.q.Take(message.WorkQueue)
	if len(look) != 1 || look[0].Delay != resync.SecondLook {
		t.Fatalf("%+v: want a delayed look", look)
	}

	e.g.put("FILE1", "ROOT", graph.Object{"size": 2})
	e.now = e.now.Add(time.Second)
	q, err := e.r.Request(context.Background(), "drives/"+testDrive, "change notification")
	if err != nil || q.Action != resync.Collapsed {
		t.Fatalf("Request = %+v, %v", q, err)
	}
	now := e.q.Take(message.WorkQueue)
	if len(now) != 1 || now[0].Delay != 0 {
		t.Fatalf("%+v: want the look's continuation at once", now)
	}
	step(now[0].Text)
	if got := summary(e.events()); !slices.Equal(got, []string{"FILE1 updated []"}) {
		t.Fatalf("the look run at once: %v", got)
	}
	if res := step(look[0].Text); !res.Stale {
		t.Errorf("the delayed look's message: %+v, want stale", res)
	}
}

// Graph's 410 resyncRequired makes the pass enumerate the drive again; change detection keeps the items
// that did not change silent.
func TestUnitDriveResyncRequiredEnumeratesAgain(t *testing.T) {
	e := newDriveEnv(t, nil)
	e.g.put("FOLDER1", "ROOT", graph.Object{"name": "Reports", "folder": map[string]any{}})
	e.g.put("FILE1", "FOLDER1", graph.Object{"name": "a.txt", "size": 1, "file": map[string]any{}})
	e.g.put("FILE2", "FOLDER1", graph.Object{"name": "b.txt", "size": 1, "file": map[string]any{}})
	e.pass()
	e.g.put("FILE1", "FOLDER1", graph.Object{"size": 2})
	e.g.put("FILE2", "FOLDER1", graph.Object{"size": 2})
	e.pass() // both files known now
	e.g.put("FILE2", "FOLDER1", graph.Object{"size": 3})
	e.g.gone = true
	evs := e.pass()
	if got := summary(evs); !slices.Equal(got, []string{"FILE2 updated [size]"}) {
		t.Fatalf("after 410: events %v, want the one change (and the folder seen for the first time, created long ago: recorded quietly)", got)
	}
	if evs[0].Source != message.SourceFullSync {
		t.Errorf("source %s, want fullsync", evs[0].Source)
	}
	if n := len(e.g.starts); n != 2 || strings.Contains(e.g.starts[1], "latest=true") {
		t.Errorf("starts %v: want the drive enumerated again", e.g.starts)
	}
}

// With RESYNC_INITIAL=full the first pass enumerates the drive: every item but the root is an event.
func TestUnitDriveInitialFull(t *testing.T) {
	e := newDriveEnv(t, map[string]string{config.ResyncInitial: "full"})
	e.g.put("FOLDER1", "ROOT", graph.Object{"name": "Reports", "folder": map[string]any{}})
	e.g.put("FILE1", "FOLDER1", graph.Object{"name": "a.txt", "size": 1, "file": map[string]any{}})
	e.g.put("bad/id", "ROOT", graph.Object{"name": "x"})
	if got := summary(e.pass()); !slices.Equal(got, []string{"FILE1 updated []", "FOLDER1 updated []"}) {
		t.Fatalf("full first pass: %v (the root, and an id off the grammar, are never events)", got)
	}
}

// A scope that is not a configured drive is refused, and a drive scope's checkpoint keeps the id's case.
func TestUnitDriveScopes(t *testing.T) {
	e := newDriveEnv(t, nil)
	if _, err := e.r.RequestAll(context.Background(), "test", "drives/b!other"); err == nil {
		t.Error("a drive GRAPH_RESOURCE does not name was accepted")
	}
	if got := checkpoint.BlobName("drives/" + testDrive); got != "delta/drives/"+testDrive+".json" {
		t.Errorf("BlobName = %s", got)
	}
	if p, ok := family.PlanOf(family.Entry{Collection: "drives", ID: testDrive}, nil); !ok || p.Resource != "drives/"+testDrive+"/root" {
		t.Errorf("plan %+v", p)
	}
}
