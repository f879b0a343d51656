package directory

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/directory/directorytest"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

func id(i int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", i) }

func user(i int) graph.Object {
	return graph.Object{"id": id(i), "displayName": fmt.Sprintf("User %d", i), "@odata.type": "#microsoft.graph.user"}
}

// fixedClock is the readers' clock where time does not matter to the test.
func fixedClock() time.Time { return time.Unix(1000, 0) }

func throttled(ra time.Duration) error {
	return &graph.Error{Op: "get", Status: http.StatusTooManyRequests, Kind: graph.KindThrottled, RetryAfter: ra}
}

var forbidden = &graph.Error{Op: "get", Status: http.StatusForbidden, Kind: graph.KindForbidden}

func TestReadOutcomes(t *testing.T) {
	g := directorytest.NewFakeGraph()
	g.Put(Users, user(1))
	g.PutDeleted(Users, user(2))
	g.Put(Users, user(4))
	p5, _ := graph.ObjectPath("users", id(5))
	g.Answer(p5, forbidden)
	p6, _ := graph.ObjectPath("users", id(6))
	g.Answer(p6, throttled(7*time.Second))
	var gate Gate
	r := &Reader{Graph: g, Gate: &gate, Now: func() time.Time { return time.Unix(1000, 0) }}

	reads, err := r.Read(t.Context(), Users, []string{"id", "displayName"}, []Request{
		{ID: id(1)},                        // live
		{ID: id(2)},                        // soft-deleted: found in the second round
		{ID: id(3)},                        // nowhere
		{ID: id(4), Probe: LiveAndDeleted}, // a reported delete of a live object
		{ID: id(5)},                        // refused
		{ID: id(6)},                        // throttled
		{ID: "delta"},                      // not an id: never sent
		{ID: id(2), Probe: DeletedOnly},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []Outcome{Found, SoftDeleted, Gone, Found, Refused, Throttled, Refused, SoftDeleted}
	for i, w := range want {
		if reads[i].Outcome != w {
			t.Errorf("read %d (%s): %s, want %s (err %v)", i, reads[i].ID, reads[i].Outcome, w, reads[i].Err)
		}
	}
	if reads[0].Object["displayName"] != "User 1" || reads[1].Object["displayName"] != "User 2" {
		t.Errorf("objects: %v / %v", reads[0].Object, reads[1].Object)
	}
	if reads[5].RetryAfter != 7*time.Second {
		t.Errorf("throttled RetryAfter = %s", reads[5].RetryAfter)
	}
	if got := gate.Remaining(time.Unix(1000, 0)); got != 7*time.Second {
		t.Errorf("gate closed for %s, want the Retry-After", got)
	}
	for _, b := range g.Batches() {
		if len(b) > graph.MaxBatch {
			t.Errorf("a batch of %d", len(b))
		}
		for _, get := range b {
			if strings.Contains(get.Path, "delta") {
				t.Errorf("a non-id reached Graph: %s", get.Path)
			}
		}
	}
	// Round 1: 6 live reads + 2 for the confirmed delete + 1 deleted-only; round 2: ids 2 and 3.
	if n := len(g.Batches()); n != 2 {
		t.Errorf("%d batches, want 2", n)
	}
}

func TestReadConfirmsDeletes(t *testing.T) {
	g := directorytest.NewFakeGraph()
	g.PutDeleted(Users, user(1))
	r := &Reader{Graph: g, Now: fixedClock}
	reads, err := r.Read(t.Context(), Users, nil, []Request{{ID: id(1), Probe: LiveAndDeleted}, {ID: id(2), Probe: LiveAndDeleted}})
	if err != nil {
		t.Fatal(err)
	}
	if reads[0].Outcome != SoftDeleted || reads[1].Outcome != Gone {
		t.Fatalf("outcomes %s, %s; want soft-deleted, gone", reads[0].Outcome, reads[1].Outcome)
	}
	if b := g.Batches(); len(b) != 1 || len(b[0]) != 4 {
		t.Fatalf("want both places of both objects in one batch, got %v", b)
	}
}

func TestReadChunksKeepPairsTogether(t *testing.T) {
	g := directorytest.NewFakeGraph()
	var reqs []Request
	for i := range 25 {
		g.Put(Users, user(i))
		reqs = append(reqs, Request{ID: id(i), Probe: LiveAndDeleted})
	}
	reads, err := (&Reader{Graph: g, Now: fixedClock}).Read(t.Context(), Users, nil, reqs)
	if err != nil {
		t.Fatal(err)
	}
	for i, rd := range reads {
		if rd.Outcome != Found {
			t.Fatalf("read %d: %s", i, rd.Outcome)
		}
	}
	for _, b := range g.Batches() {
		if len(b) > graph.MaxBatch || len(b)%2 != 0 {
			t.Fatalf("batch of %d GETs splits a live/deleted pair or is too big", len(b))
		}
	}
}

func TestReadGateAndDeadline(t *testing.T) {
	g := directorytest.NewFakeGraph()
	g.Put(Users, user(1))
	now := time.Unix(1000, 0)
	gate := &Gate{}
	gate.CloseUntil(now.Add(time.Minute))
	r := &Reader{Graph: g, Gate: gate, Now: func() time.Time { return now }}
	reads, err := r.Read(t.Context(), Users, nil, []Request{{ID: id(1)}})
	if err != nil || reads[0].Outcome != Deferred || reads[0].RetryAfter != time.Minute {
		t.Fatalf("closed gate: %+v, %v", reads, err)
	}
	if len(g.Batches()) != 0 {
		t.Fatal("a closed gate must send nothing")
	}

	ctx, cancel := context.WithDeadline(t.Context(), time.Unix(0, 0)) // long past
	defer cancel()
	reads, err = (&Reader{Graph: g, Now: fixedClock}).Read(ctx, Users, nil, []Request{{ID: id(1)}})
	if err != nil || reads[0].Outcome != Transient {
		t.Fatalf("past deadline: %+v, %v", reads, err)
	}
	ctx, cancel = context.WithCancel(t.Context())
	cancel()
	if _, err := (&Reader{Graph: g, Now: fixedClock}).Read(ctx, Users, nil, []Request{{ID: id(1)}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestReadWholeBatchFailures(t *testing.T) {
	g := directorytest.NewFakeGraph()
	g.BatchErr = forbidden
	if _, err := (&Reader{Graph: g, Now: fixedClock}).Read(t.Context(), Users, nil, []Request{{ID: id(1)}}); !errors.Is(err, graph.ErrForbidden) {
		t.Fatalf("a refused batch must be an error, got %v", err)
	}
	g.BatchErr = &graph.Error{Status: 503, Kind: graph.KindTransient}
	reads, err := (&Reader{Graph: g, Now: fixedClock}).Read(t.Context(), Users, nil, []Request{{ID: id(1)}, {ID: id(2)}})
	if err != nil || reads[0].Outcome != Transient || reads[1].Outcome != Transient {
		t.Fatalf("a failed batch: %+v, %v", reads, err)
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		err  error
		want Outcome
	}{
		{nil, Found},
		{&graph.Error{Kind: graph.KindNotFound}, Gone},
		{throttled(time.Second), Throttled},
		{&graph.Error{Kind: graph.KindTransient}, Transient},
		{forbidden, Refused},
		{&graph.Error{Kind: graph.KindUnauthorized}, Refused},
		{&graph.Error{Kind: graph.KindBadRequest}, Refused},
		{&graph.Error{Kind: graph.KindOther, Status: 418}, Transient},
		{context.DeadlineExceeded, Transient},
		{context.Canceled, Refused},
		{errors.New("something else"), Transient},
	}
	for _, tt := range tests {
		if got, _ := Classify(tt.err); got != tt.want {
			t.Errorf("Classify(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
}

func TestEventIDAndBuilder(t *testing.T) {
	c := Change{Kind: Groups, ID: strings.ToUpper(id(1)), ChangeType: graph.Updated, Source: message.SourceNotification,
		Object:         graph.Object{"id": id(1), "displayName": "G", "members@delta": []any{}, "@odata.type": "x"},
		SubscriptionID: "sub", Origin: []string{"b", "a", "b"}}
	e := NewEvent("TENANT", []string{"id", "displayName"}, c, time.Unix(100, 5e8))
	if e.Resource != "groups" || e.Field != message.FieldGroup || *e.SubscriptionID != "sub" || !e.ObservedAt.Equal(time.Unix(100, 0)) {
		t.Errorf("event %+v", e)
	}
	if len(e.Object) != 2 {
		t.Errorf("object %v: want only the selected properties", e.Object)
	}
	same := c
	same.ID = strings.ToLower(c.ID)
	same.Origin = []string{"a", "b"}
	if EventID("tenant", same) != e.ID {
		t.Error("the id must not depend on case or on the order and repetition of origins")
	}
	for _, change := range []func(*Change){
		func(c *Change) { c.Kind = Users },
		func(c *Change) { c.ChangeType = graph.Deleted },
		func(c *Change) { c.SoftDeleted = true },
		func(c *Change) { c.Source = message.SourceResync },
		func(c *Change) { c.Origin = []string{"a"} },
	} {
		d := c
		change(&d)
		if EventID("tenant", d) == e.ID {
			t.Errorf("%+v has the same id as %+v", d, c)
		}
	}
}

func TestMembersDelta(t *testing.T) {
	m := MembersDelta([]any{
		map[string]any{"@odata.type": "#microsoft.graph.user", "id": strings.ToUpper(id(1))},
		map[string]any{"id": id(2), "@removed": map[string]any{"reason": "deleted"}},
		map[string]any{"id": "../../subscriptions"},
	})
	if m == nil || !slices.Equal(m.Added, []string{id(1)}) || !slices.Equal(m.Removed, []string{id(2)}) {
		t.Fatalf("MembersDelta = %+v", m)
	}
	if MembersDelta(nil) != nil || MembersDelta("x") != nil {
		t.Error("absent or malformed members@delta must give nil")
	}
	merged := MergeMembers(m, &message.Members{Added: []string{id(2)}, Removed: []string{id(1), id(3)}})
	if !slices.Equal(merged.Added, []string{id(2)}) || !slices.Equal(merged.Removed, []string{id(1), id(3)}) {
		t.Fatalf("MergeMembers = %+v: the later report must win", merged)
	}
}

// heldGraph holds every $batch until want of them are in flight at once, so a Read that sends them one
// after another never gets its first answer (and the test's deadline ends it).
type heldGraph struct {
	*directorytest.FakeGraph
	want     int
	mu       chan struct{} // a one-slot lock
	inFlight int
	most     int
	released bool
	release  chan struct{}
}

func (h *heldGraph) Batch(ctx context.Context, gets []graph.Get) (graph.BatchResult, error) {
	h.mu <- struct{}{}
	h.inFlight++
	h.most = max(h.most, h.inFlight)
	if h.inFlight == h.want && h.most == h.want && !h.released {
		h.released = true
		close(h.release)
	}
	<-h.mu
	select {
	case <-h.release:
	case <-ctx.Done():
		return graph.BatchResult{}, ctx.Err()
	}
	res, err := h.FakeGraph.Batch(ctx, gets)
	h.mu <- struct{}{}
	h.inFlight--
	<-h.mu
	return res, err
}

func TestReadSendsBatchesConcurrently(t *testing.T) {
	h := &heldGraph{FakeGraph: directorytest.NewFakeGraph(), want: DefaultConcurrency, mu: make(chan struct{}, 1), release: make(chan struct{})}
	var reqs []Request
	for i := range 5 * graph.MaxBatch { // five batches: four at once, then the fifth
		h.Put(Users, user(i))
		reqs = append(reqs, Request{ID: id(i), Probe: Live})
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	reads, err := (&Reader{Graph: h, Now: fixedClock}).Read(ctx, Users, nil, reqs)
	if err != nil {
		t.Fatal(err)
	}
	for i, rd := range reads {
		if rd.Outcome != Found || rd.ID != id(i) {
			t.Fatalf("read %d: %s %s (batches in flight at most %d)", i, rd.ID, rd.Outcome, h.most)
		}
	}
	if h.most != DefaultConcurrency || len(h.Batches()) != 5 {
		t.Errorf("%d batches, at most %d in flight; want 5, at most %d", len(h.Batches()), h.most, DefaultConcurrency)
	}
}
