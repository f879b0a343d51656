package resync_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/checkpoint"
	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/events"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
	"github.com/graphwebhooks/graph-webhooks-go/internal/resync"
	"github.com/graphwebhooks/graph-webhooks-go/internal/storagequeue"
)

// flakyCheckpoints is a checkpoint store whose blob storage can fail: loads, saves, or both, as a 503 from
// the Blob service reaches them.
type flakyCheckpoints struct {
	*checkpoint.Memory
	loadDown, saveDown bool
}

var errBlobDown = errors.New("checkpoint: read delta/groups.json: RESPONSE 503: ServerBusy")

func (f *flakyCheckpoints) Load(ctx context.Context, r string) (checkpoint.Checkpoint, checkpoint.ETag, error) {
	if f.loadDown {
		return checkpoint.Checkpoint{}, "", errBlobDown
	}
	return f.Memory.Load(ctx, r)
}

func (f *flakyCheckpoints) Save(ctx context.Context, r string, cp checkpoint.Checkpoint, etag checkpoint.ETag) (checkpoint.ETag, error) {
	if f.saveDown {
		return "", errBlobDown
	}
	return f.Memory.Save(ctx, r, cp, etag)
}

// TestUnitCheckpointFaultDelaysTheStep: a step whose checkpoint cannot be read, or cannot be moved after
// its events were written, is re-enqueued with the backoff for its attempt and the invocation succeeds —
// the blob fault delays the pass, its message never heads for the poison queue. When the queue fails as
// well the step fails, for the host to retry it. Once the blob service is back the pass completes.
func TestUnitCheckpointFaultDelaysTheStep(t *testing.T) {
	e := newUnitEnv(t, "groups")
	store := &flakyCheckpoints{Memory: e.cp}
	vars := map[string]string{config.TenantID: "8c1f4b2e-0d6a-4f57-9a3e-2b9d7c6e5f41", config.Storage: "UseDevelopmentStorage=true", config.Resource: "groups"}
	e.r = resync.New(resync.Deps{
		Config: config.Load(func(k string) string { return vars[k] }),
		Graph:  func() (resync.Graph, error) { return e.g, nil },
		Store:  func() (resync.Store, error) { return store, nil },
		Queue:  func() (resync.Queue, error) { return e.q, nil },
		Events: events.NewWriter(func() (events.Queue, error) { return e.q, nil }, nil),
		Now:    func() time.Time { return e.now },
	})
	e.r.StepBudget = 0 // one page per invocation: these tests drive and count the steps
	ctx := context.Background()
	if _, err := e.r.Request(ctx, "groups", "baseline"); err != nil {
		t.Fatal(err)
	}
	// (A group that ends a page may go on in the next: it is reported there, hence group 3.)
	e.g.pages = [][]graph.Object{{group(1, "displayName", "Renamed"), group(3)}, {group(2, "displayName", "Also renamed")}}
	if _, err := e.r.Request(ctx, "groups", "test"); err != nil {
		t.Fatal(err)
	}
	next := func() *message.Message {
		t.Helper()
		ms := e.q.Take(message.WorkQueue)
		if len(ms) != 1 {
			t.Fatalf("%d messages in the work queue, want the one continuation", len(ms))
		}
		m, err := message.Decode(ms[0].Text)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}

	// The checkpoint cannot be read: the step comes back later, one attempt on.
	store.loadDown = true
	m := next()
	res, err := e.r.Step(ctx, m)
	if err != nil || res.RetryAfter <= 0 {
		t.Fatalf("load failing: %+v, %v; want the step re-enqueued with a delay", res, err)
	}
	m2 := next()
	if m2.Continuation != m.Continuation || m2.Attempt != m.Attempt+1 || m2.NotBefore == nil {
		t.Fatalf("re-enqueued %+v; want the same continuation, attempt %d, a notBefore", m2, m.Attempt+1)
	}

	// The checkpoint can be read but not moved: the page's events are out, and the step comes back.
	store.loadDown, store.saveDown = false, true
	if res, err := e.r.Step(ctx, m2); err != nil || res.RetryAfter <= 0 {
		t.Fatalf("save failing: %+v, %v", res, err)
	}
	if evs := e.events(); len(evs) != 1 || evs[0].ResourceID != gid(1) {
		t.Fatalf("events %+v: want group 1's, written before the checkpoint failed", evs)
	}
	m3 := next()

	// The queue fails too: nothing can hold the step but the host's retry.
	e.q.Fail = func(string) error { return errors.New("connection refused") }
	if _, err := e.r.Step(ctx, m3); err == nil {
		t.Fatal("with blob and queue failing the step succeeded: its message would be lost")
	}
	e.q.Fail = nil

	// Storage is back: the redelivered step runs the pass to its end.
	store.saveDown = false
	if _, err := e.r.Step(ctx, m3); err != nil {
		t.Fatal(err)
	}
	e.drive()
	got := map[string]bool{}
	for _, ev := range e.events() {
		got[ev.ResourceID] = true
	}
	if !got[gid(1)] || !got[gid(2)] || !got[gid(3)] {
		t.Fatalf("events after recovery for %v: want every group", got)
	}
	if cp, _, _ := e.cp.Load(ctx, "groups"); cp.Pass != nil || cp.LastPass == nil {
		t.Errorf("the pass did not complete: %+v", cp)
	}
	if n := len(e.q.Messages(storagequeue.PoisonQueue(message.WorkQueue))); n != 0 {
		t.Errorf("%d poison messages", n)
	}
}
