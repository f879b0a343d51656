// Package events writes change events to graphchanges, the product's output. The queue worker and the
// resync both write through it, so every event is written the same way: directly by the handler (never
// through an output binding, because an event must be durable before what follows it moves: a resync
// checkpoint, an object's stored state), base64-encoded as a queue trigger expects, and with no expiry (a
// consumer that is away for a week still finds them).
//
// With a state store (internal/objectstate) the writer also knows what changed: each event is decided
// against the object's last emitted state first, gains `changed` and `previous`, and an event that
// carries nothing new is not written (EVENTS_UNCHANGED=suppress). The order keeps at-least-once: decide
// (reads), write the events, then move the stored states; a crash between the last two re-emits, never
// loses.
//
// Change detection is a refinement, never a condition: when the state store cannot be read (Table
// storage failing, its setting unusable), every event is written as it is — without `changed` and
// `previous`, none suppressed, the stored states left where they were — and one warning per Write says
// so (the queue worker and a resync step each call Write once per invocation). Failing the invocation
// instead would send its message towards the poison queue for as long as Table storage is down. Only
// the queue failing fails a Write: then nothing can be written, and the host's retry of the invocation
// is what keeps the change.
package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/logctx"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
	"github.com/graphwebhooks/graph-webhooks-go/internal/objectstate"
)

// Queue writes one message (*storagequeue.Client; storagequeue.Memory in tests).
type Queue interface {
	Enqueue(ctx context.Context, queue string, text []byte, delay time.Duration) error
}

// State decides events against the last emitted states and moves them (*objectstate.Store).
type State interface {
	Decide(ctx context.Context, obs []objectstate.Observation) ([]objectstate.Decision, error)
	Commit(ctx context.Context, ds []objectstate.Decision) error
}

// DefaultConcurrency is how many events are written at once.
const DefaultConcurrency = 8

// Item is one event to write, with what its object's state was read with.
type Item struct {
	Event message.Event
	// ReadAt is when Graph was read for it, at full precision: per object, a read older than the stored
	// state is never emitted.
	ReadAt time.Time
	// Select is the property list the object was read with.
	Select []string
	// QuietIfNew: an object with no stored state is recorded, not written. Graph echoes a drive's folders
	// whenever something inside them changes; one never seen before is taken as it stands, so that only
	// a change of its own (a rename, a move, a delete) is an event.
	QuietIfNew bool
	// StateID keys the object's stored state when the event's resourceId alone does not name the object
	// (a drive item's id is unique within its drive only); "" means the resourceId.
	StateID string
}

// Result counts what Write did.
type Result struct {
	Written    int
	Suppressed int // carried nothing new (unchanged, or read before the stored state)
	// Unchecked counts the events written without change detection, the state store being unavailable.
	Unchecked int
}

// Writer writes events.
type Writer struct {
	queue       func() (Queue, error)
	state       func() (State, error)
	concurrency int
}

// NewWriter returns a writer that gets its queue, and its state store when state is not nil, lazily: a
// missing storage setting is reported by the invocation that writes. With a nil state every event is
// written as it is.
func NewWriter(q func() (Queue, error), state func() (State, error)) *Writer {
	return &Writer{queue: q, state: state, concurrency: DefaultConcurrency}
}

// Write decides the items against the stored states (when the writer has a store), writes the events
// that carry something new to graphchanges, a few at a time, then moves the stored states. Events written
// before a failure stay written: a retry writes them again with the same ids.
func (w *Writer) Write(ctx context.Context, items []Item) (Result, error) {
	if len(items) == 0 {
		return Result{}, nil
	}
	q, err := w.queue()
	if err != nil {
		return Result{}, fmt.Errorf("events: %w", err)
	}
	if w.state == nil {
		es := make([]message.Event, len(items))
		for i := range items {
			es[i] = items[i].Event
		}
		return Result{Written: len(es)}, w.put(ctx, q, es)
	}
	st, err := w.state()
	if err != nil {
		return w.unchecked(ctx, q, items, fmt.Errorf("state store: %w", err))
	}
	obs := make([]objectstate.Observation, len(items))
	for i, it := range items {
		e := it.Event
		ct := objectstate.Updated
		if e.ChangeType == graph.Deleted {
			ct = objectstate.Deleted
		}
		id := e.ResourceID
		if it.StateID != "" {
			id = it.StateID
		}
		obs[i] = objectstate.Observation{Collection: e.Resource, ID: id, Properties: e.Object, Select: it.Select,
			ReadAt: it.ReadAt, ChangeType: ct, SoftDeleted: e.SoftDeleted}
	}
	ds, err := st.Decide(ctx, obs)
	if err != nil {
		if ctx.Err() != nil {
			return Result{}, fmt.Errorf("events: %w", err) // the invocation is over: nothing can be written
		}
		return w.unchecked(ctx, q, items, err)
	}
	var out []message.Event
	var res Result
	emitted := make([]bool, len(ds))
	for i, d := range ds {
		e := items[i].Event
		// A membership change is a delta, not a state: it is news whatever the properties did.
		if !d.Emit && e.Members == nil || items[i].QuietIfNew && d.Reason == objectstate.ReasonNew {
			res.Suppressed++
			continue
		}
		e.Changed, e.Previous = d.Changed, d.Previous
		out = append(out, e)
		emitted[i] = true
	}
	if err := w.put(ctx, q, out); err != nil {
		return res, err
	}
	res.Written = len(out)
	// idx maps the decisions being committed to items.
	idx := make([]int, len(ds))
	for i := range idx {
		idx[i] = i
	}
	for attempt := 0; ; attempt++ {
		err := st.Commit(ctx, ds)
		var late *objectstate.Redecided
		if err == nil || !errors.As(err, &late) {
			if err != nil {
				// The events are written; the states stay behind them, so the next observation of these
				// objects is compared with older states and may be emitted again. Nothing is lost: not
				// worth a retry.
				logctx.From(ctx).Warn("events written, but the stored object states could not be moved", "err", err)
			}
			return res, nil
		}
		// Rows had moved since Decide, and against them some suppressed events are news: write those,
		// then commit again (their rows waited for the events).
		var more []message.Event
		next := make([]int, len(late.Decisions))
		for j, d := range late.Decisions {
			i := idx[late.Indexes[j]]
			next[j] = i
			e := items[i].Event
			if !d.Emit || e.Members != nil || emitted[i] || items[i].QuietIfNew && d.Reason == objectstate.ReasonNew {
				continue // not news, written already, or kept quiet as the first sight of an object
			}
			e.Changed, e.Previous = d.Changed, d.Previous
			more = append(more, e)
			emitted[i] = true
		}
		if err := w.put(ctx, q, more); err != nil {
			return res, err
		}
		res.Written += len(more)
		res.Suppressed -= len(more)
		if attempt == maxRedecided {
			// The news is written; the rows it waited for stay behind, another writer moving them still, so a
			// later observation of these objects is compared with older states and may be emitted again.
			logctx.From(ctx).Warn("events written, but the stored object states kept moving under the commit", "rounds", attempt+1)
			return res, nil
		}
		ds, idx = late.Decisions, next
	}
}

// unchecked writes every item's event as it is, the state store having failed with cause: no event is
// suppressed, none carries changed or previous, and no stored state moves.
func (w *Writer) unchecked(ctx context.Context, q Queue, items []Item, cause error) (Result, error) {
	es := make([]message.Event, len(items))
	for i := range items {
		es[i] = items[i].Event
	}
	logctx.From(ctx).Warn("change detection unavailable: events written without comparing them with the stored states "+
		"(no changed/previous, none suppressed)", "events", len(es), "err", cause)
	if err := w.put(ctx, q, es); err != nil {
		return Result{}, err
	}
	return Result{Written: len(es), Unchecked: len(es)}, nil
}

// maxRedecided bounds how often Write commits again after Commit decided observations again: each round
// needs another writer to move the same rows in between.
const maxRedecided = 3

// put writes events to graphchanges, a few at a time, and returns the first failure.
func (w *Writer) put(ctx context.Context, q Queue, es []message.Event) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, max(1, w.concurrency))
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for i := range es {
		b, err := json.Marshal(&es[i])
		if err != nil {
			return fmt.Errorf("events: encode: %w", err)
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := q.Enqueue(ctx, message.ChangesQueue, b, 0); err != nil {
				mu.Lock()
				if first == nil {
					first = fmt.Errorf("events: write to %s: %w", message.ChangesQueue, err)
					cancel()
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return first
}
