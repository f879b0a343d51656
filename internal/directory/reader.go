package directory

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
)

// Graph is what reading objects needs of the Graph client (*graph.Client).
type Graph interface {
	Batch(ctx context.Context, gets []graph.Get) (graph.BatchResult, error)
}

// Probe says where an object is looked for.
type Probe int

const (
	// Live reads the object, and looks in deletedItems only when it is not found live (a second $batch).
	Live Probe = iota
	// LiveAndDeleted reads both places in the same $batch: for a reported permanent delete, which must be
	// confirmed (found live, it was not deleted; found in deletedItems, it was soft-deleted).
	LiveAndDeleted
	// DeletedOnly reads deletedItems only: for an object delta reported soft-deleted.
	DeletedOnly
)

// Request is one object to read.
type Request struct {
	ID    string // a GUID
	Probe Probe
}

// Read is the outcome for one Request.
type Read struct {
	ID         string
	Outcome    Outcome
	Object     graph.Object  // Found: the live object; SoftDeleted: what deletedItems returned
	RetryAfter time.Duration // Deferred, Throttled, Transient: how long Graph asked to wait (0: not said)
	Err        error         // Throttled, Transient, Refused: the cause
}

// Reader reads sets of objects through Graph's $batch.
type Reader struct {
	Graph Graph
	// Gate is shared by every reader of the process: a throttled answer closes it, and while it is closed
	// nothing is sent. Nil means no gate.
	Gate *Gate
	// Now is the clock; required (the clock is given, never taken).
	Now func() time.Time
	// ThrottleDefault closes the gate after a 429 that gave no Retry-After; 0 means 30 s.
	ThrottleDefault time.Duration
	// Concurrency is how many $batch calls one Read has in flight; 0 means DefaultConcurrency.
	Concurrency int
}

// DefaultConcurrency is how many $batch calls one Read sends at once: a message of 70 notifications is read
// in four $batches at once rather than one after another. Graph's throttling is per app and tenant, and
// each batch checks the gate before it is sent, so a throttled answer holds back the batches not yet sent.
const DefaultConcurrency = 4

func (r *Reader) concurrency() int {
	if r.Concurrency <= 0 {
		return DefaultConcurrency
	}
	return r.Concurrency
}

func (r *Reader) now() time.Time {
	if r.Now == nil {
		panic("directory.Reader: Now is nil: every reader is given its caller's clock")
	}
	return r.Now()
}

// get is one GET of a $batch, for the read at index i.
type get struct {
	i       int
	deleted bool // the deletedItems read
	path    string
}

// Read reads the objects of one kind, selecting sel. Requests go in $batches of at most graph.MaxBatch
// GETs, up to Concurrency at once; both GETs of a LiveAndDeleted request travel in the same batch. Objects a Live probe does not find
// are looked for in deletedItems in a second round. The result has one Read per request, in order.
//
// When the gate is closed before a batch, that batch's objects are Deferred. When ctx's deadline passes,
// the objects not yet read are Transient; when ctx is cancelled, Read returns the error. A batch that fails
// as a whole is classified for each of its objects, except a refusal, which is returned: a refused batch
// is no bad object but a bad setting or a missing permission.
func (r *Reader) Read(ctx context.Context, kind Kind, sel []string, reqs []Request) ([]Read, error) {
	out := make([]Read, len(reqs))
	var first []get
	for i, q := range reqs {
		out[i].ID = q.ID
		if !graph.IsGUID(q.ID) {
			out[i].Outcome, out[i].Err = Refused, fmt.Errorf("%q is not an object id (a GUID)", q.ID)
			continue
		}
		live, _ := graph.ObjectPath(kind.Collection, q.ID)
		deleted, _ := graph.DeletedPath(q.ID)
		switch q.Probe {
		case Live:
			first = append(first, get{i: i, path: live})
		case LiveAndDeleted:
			first = append(first, get{i: i, path: live}, get{i: i, deleted: true, path: deleted})
		case DeletedOnly:
			first = append(first, get{i: i, deleted: true, path: deleted})
		}
	}
	// answers[i] collects the live and deleted answers of request i.
	type answers struct{ live, deleted *graph.BatchItem }
	got := make([]answers, len(reqs))
	// settled marks reads whose outcome is known (an id refused, a batch that failed as a whole).
	settled := make([]bool, len(reqs))
	for i := range out {
		settled[i] = out[i].Outcome == Refused
	}
	fail := func(chunk []get, o Outcome, retryAfter time.Duration, err error) {
		for _, g := range chunk {
			out[g.i] = Read{ID: out[g.i].ID, Outcome: o, RetryAfter: retryAfter, Err: err}
			settled[g.i] = true
		}
	}

	// one sends one chunk's $batch and records its answers; an error is a refusal or ctx's cancellation.
	one := func(chunk []get, gated bool) error {
		if err := ctx.Err(); err != nil {
			if !errors.Is(err, context.DeadlineExceeded) {
				return err
			}
			fail(chunk, Transient, 0, err)
			return nil
		}
		if wait := r.Gate.Remaining(r.now()); gated && wait > 0 {
			fail(chunk, Deferred, wait, nil)
			return nil
		}
		bg := make([]graph.Get, len(chunk))
		for j, g := range chunk {
			bg[j] = graph.Get{Path: g.path, Select: sel}
		}
		res, err := r.Graph.Batch(ctx, bg)
		if err != nil {
			o, ra := Classify(err)
			if o == Refused {
				return fmt.Errorf("reading %d %s: %w", len(chunk), kind.Collection, err)
			}
			r.closeFor(o, ra)
			fail(chunk, o, ra, err)
			return nil
		}
		if res.RetryAfter > 0 {
			r.Gate.CloseUntil(r.now().Add(res.RetryAfter))
		}
		for j, g := range chunk {
			it := res.Items[j]
			if o, ra := Classify(it.Err); o == Throttled && ra == 0 {
				it.Err = &graph.Error{Op: "get " + g.path, Kind: graph.KindThrottled, RetryAfter: res.RetryAfter, Err: it.Err}
			} else if o == Throttled {
				r.closeFor(o, ra)
			}
			if g.deleted {
				got[g.i].deleted = &it
			} else {
				got[g.i].live = &it
			}
		}
		return nil
	}
	// run sends gets in $batches of at most graph.MaxBatch, up to Concurrency at once. Each chunk touches
	// only its own requests' entries of out, settled and got, so the chunks need no lock between them.
	run := func(gets []get, gated bool) error {
		var chunks [][]get
		for start := 0; start < len(gets); {
			end := min(start+graph.MaxBatch, len(gets))
			if end < len(gets) && end > start+1 && gets[end-1].i == gets[end].i {
				end-- // keep both GETs of a request in one batch
			}
			chunks = append(chunks, gets[start:end])
			start = end
		}
		errs := make([]error, len(chunks))
		sem := make(chan struct{}, r.concurrency())
		var wg sync.WaitGroup
		for ci, chunk := range chunks {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				errs[ci] = one(chunk, gated)
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return err
			}
		}
		return nil
	}
	if err := run(first, true); err != nil {
		return nil, err
	}

	// Decide what can be decided; Live probes not found live go to deletedItems.
	var second []get
	for i := range reqs {
		if settled[i] {
			continue
		}
		a := got[i]
		switch reqs[i].Probe {
		case Live:
			if o, _ := Classify(a.live.Err); o == Gone {
				p, _ := graph.DeletedPath(reqs[i].ID)
				second = append(second, get{i: i, deleted: true, path: p})
				continue
			}
			out[i] = fromItem(reqs[i].ID, a.live, Found)
		case LiveAndDeleted:
			lo, _ := Classify(a.live.Err)
			do, _ := Classify(a.deleted.Err)
			switch {
			case lo == Found:
				out[i] = fromItem(reqs[i].ID, a.live, Found)
			case lo == Gone && do == Found:
				out[i] = fromItem(reqs[i].ID, a.deleted, SoftDeleted)
			case lo == Gone && do == Gone:
				out[i] = Read{ID: reqs[i].ID, Outcome: Gone}
			case lo != Gone:
				out[i] = fromItem(reqs[i].ID, a.live, Found)
			default:
				out[i] = fromItem(reqs[i].ID, a.deleted, SoftDeleted)
			}
		case DeletedOnly:
			out[i] = fromItem(reqs[i].ID, a.deleted, SoftDeleted)
		}
	}
	if len(second) > 0 {
		// The gate is not consulted here: these few reads finish objects this call has already read once,
		// even when others of their batch were throttled.
		if err := run(second, false); err != nil {
			return nil, err
		}
		for _, g := range second {
			if !settled[g.i] {
				out[g.i] = fromItem(reqs[g.i].ID, got[g.i].deleted, SoftDeleted)
			}
		}
	}
	return out, nil
}

// fromItem turns one batch answer into a Read: ok is the outcome when the answer is a success.
func fromItem(id string, it *graph.BatchItem, ok Outcome) Read {
	if it == nil {
		return Read{ID: id, Outcome: Transient, Err: errors.New("no answer")}
	}
	o, ra := Classify(it.Err)
	if o == Found {
		return Read{ID: id, Outcome: ok, Object: it.Object}
	}
	return Read{ID: id, Outcome: o, RetryAfter: ra, Err: it.Err}
}

// closeFor closes the gate after a throttled answer: for its Retry-After, else for ThrottleDefault.
func (r *Reader) closeFor(o Outcome, retryAfter time.Duration) {
	if o != Throttled {
		return
	}
	if retryAfter <= 0 {
		retryAfter = r.ThrottleDefault
		if retryAfter <= 0 {
			retryAfter = 30 * time.Second
		}
	}
	r.Gate.CloseUntil(r.now().Add(retryAfter))
}
