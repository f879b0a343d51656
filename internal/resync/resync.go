// Package resync runs delta-query passes (docs/graph-facts.md) over resync scopes: /users/delta and
// /groups/delta to recover the changes Graph did not deliver, and a drive's /root/delta, which is also how
// a drive's taps are turned into events. One checkpoint per scope kept durable and ETag-guarded
// (internal/checkpoint); run page after page by the queue worker, handing over through the queue within a
// time budget so that no invocation comes near functionTimeout. How a family's delta is walked is a
// walker's (walker.go; directory.go, drives.go); the passes, checkpoints, continuations and retries below
// are the same for every family.
//
// # Passes
//
// Request starts a pass over a collection unless one is in progress (concurrent requests collapse into it,
// and have it followed by one more pass when it completes). The pass is saved in the checkpoint first
// (If-None-Match/If-Match: of two workers racing, one wins), then a `kind: resync` message with the pass's
// continuation is enqueued on webhooksnotificationqueue. A pass starts:
//   - from the stored deltaLink (changes since the last completed pass; events with source "resync");
//   - as a full round (every object; source "fullsync") when RESYNC_INITIAL=full and no pass ever
//     completed, when the select differs from the one the stored link was made with ($select is baked into
//     delta links), or when Graph says the link expired (syncStateNotFound / 410 Gone): the pass then
//     restarts as full, logged as a warning;
//   - from "now" ($deltatoken=latest: only a deltaLink, no events) for the very first pass otherwise, taken
//     at once so that a gap reported before it cannot fall before its "now".
//
// Groups are read with members selected, so membership changes arrive as members@delta and become the
// event's members. A group with many members spans several pages: the group that ends a page is carried in
// the checkpoint and reported on the page where it ends, its membership change assembled; a change larger
// than MaxMembersPerEvent is split over several events.
//
// # Pages and steps
//
// Step handles one such message: its page, then the pass's following pages in the same invocation until
// StepBudget is spent, each page checkpointed before the next starts, then the continuation is enqueued for
// the next invocation (a pass no longer waits for a queue poll per page). The continuation names the collection, the pass and the link of the page
// to fetch (Continuation); a message that does not name the checkpoint's current pass and link is stale (a
// duplicate or a superseded step) and is dropped with a log line. For the current step, in this order:
//  1. fetch the page; objects missing selected properties (delta returns only changed ones) are read with
//     $batch; soft-deleted objects are looked up in directory/deletedItems for their properties;
//  2. write the events to graphchanges (internal/events);
//  3. save the checkpoint with the ETag it was loaded with: the next link, or on the last page the new
//     deltaLink, LastCompleted and no pass. ErrConflict means another worker advanced first: stop;
//  4. go on with the next page, or, past the budget, enqueue its continuation.
//
// Throttling (a 429 whose Retry-After the Graph client does not wait out, inner $batch 429s, the process's
// closed throttling gate) and transient failures re-enqueue the same step (the same continuation,
// attempt+1) with the Retry-After, or with the backoff BackoffBase·2^attempt up to BackoffMax; the
// checkpoint's link never moves, only the pass's Wait is recorded so the pass does not look stalled. Step
// then succeeds. Other failures (a refusal of every object read, 401, 403, a storage failure) return an
// error: the queue worker fails the invocation and the host redelivers the message, which is safe (below).
// One object Graph refuses to read does not hold the page: its event carries what delta returned.
//
// # Recovering a killed run
//
// A run killed before step 3 leaves its message undeleted: the host redelivers it and the page is done
// again (same event ids). A run killed between steps 3 and 4 has moved the checkpoint, but no continuation
// exists: when the host redelivers that message, its link equals the pass's Prev, so Step re-sends the
// continuation of the current link (marked resent, and a resent message never triggers another re-send, so
// duplicates cannot multiply). A continuation lost any other way leaves the pass without progress: once it
// has not moved for StallAfter (10 min), DueReason reports it and Request re-sends its continuation instead
// of starting a new pass.
//
// # Events
//
// The change events of internal/message, with source "resync" or "fullsync", subscriptionId null:
// `@removed.reason: changed` → changeType deleted, softDeleted true, the object's deletedItems properties
// (null when not readable); `deleted` → changeType deleted, softDeleted false, null; anything else →
// updated with the selected properties. An object $batch cannot find was removed after the delta round was
// taken: found in deletedItems it is reported soft-deleted; found nowhere, it is reported with the
// properties delta returned (a new object still replicating, or a deletion the next round reports). Entries
// whose id is not a GUID are skipped with a warning. The event id (internal/directory.EventID) covers the
// pass id and page link: a redelivered or retried page yields the same ids.
//
// For GRAPH_RESOURCE entries naming single objects (groups/{id}), the pass reads the collection's delta and
// emits events for those objects only.
package resync

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/checkpoint"
	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/directory"
	"github.com/graphwebhooks/graph-webhooks-go/internal/events"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/logctx"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

// Defaults of the Runner's knobs.
const (
	// StallAfter: a pass whose checkpoint has not moved (nor deliberately waited) for this long is resumed
	// by the next Request.
	StallAfter = 10 * time.Minute
	// MaxAge: Due reports true when the last completed pass is older than this.
	MaxAge = 24 * time.Hour
	// BackoffBase and BackoffMax shape the delay of a step retried after a transient failure, or after a
	// 429 without Retry-After.
	BackoffBase = 30 * time.Second
	BackoffMax  = 15 * time.Minute
	// MaxRestarts bounds how often one pass restarts as full after expired links.
	MaxRestarts = 3
	// deadlineMargin: Graph work stops this long before the invocation's deadline, leaving time to re-enqueue.
	deadlineMargin = 20 * time.Second
	// StepBudget is how long one invocation goes on taking pages of a pass before it hands the pass over to
	// the next through the queue. A page (a delta call, its $batch reads, its state and events) takes about
	// a second and at worst up to Margin; the queue worker's invocations end after 2 minutes
	// (queueworker.Timeout) and functionTimeout is 5. Starting no page after 45 s leaves the last one more
	// than a minute, and a hand-over every 45 s costs a pass one queue poll (up to the host's 2 s
	// maxPollingInterval) per 45 s instead of per page. Step also stops at half the time to its deadline.
	StepBudget = 45 * time.Second
)

// Graph is what a resync needs of the Graph client (*graph.Client): delta pages, and $batch reads of the
// objects whose entries lack selected properties.
type Graph interface {
	DeltaStart(ctx context.Context, collection string, sel []string, latest bool) (graph.DeltaPage, error)
	Delta(ctx context.Context, link string) (graph.DeltaPage, error)
	directory.Graph
}

// EventWriter writes change events, suppressing those that carry nothing new (*events.Writer).
type EventWriter interface {
	Write(ctx context.Context, items []events.Item) (events.Result, error)
}

// Queue writes one message, base64-encoded as the queue trigger expects (*storagequeue.Client).
type Queue interface {
	Enqueue(ctx context.Context, queue string, text []byte, delay time.Duration) error
}

// Store keeps checkpoints (*checkpoint.Store; checkpoint.Memory in tests).
type Store interface {
	Load(ctx context.Context, resource string) (checkpoint.Checkpoint, checkpoint.ETag, error)
	Save(ctx context.Context, resource string, cp checkpoint.Checkpoint, etag checkpoint.ETag) (checkpoint.ETag, error)
}

// Deps are what a Runner works with. Graph, Store and Queue are built lazily, on the first call that needs
// them, so that a missing setting is reported by the invocation that needs it.
type Deps struct {
	Config *config.Config
	Graph  func() (Graph, error)
	Store  func() (Store, error)
	Queue  func() (Queue, error) // for continuations, on webhooksnotificationqueue
	Events EventWriter
	// Gate is the process's Graph throttling gate, shared with the queue worker; nil means none.
	Gate *directory.Gate
	Now  func() time.Time // the clock: required
}

// Runner requests and runs resync passes, one checkpoint and one pass per collection. It holds no state
// of its own between calls: everything is in the checkpoints and the queue, so any number of workers may
// share the work.
type Runner struct {
	cfg    *config.Config
	graph  func() (Graph, error)
	store  func() (Store, error)
	queue  func() (Queue, error)
	writer EventWriter
	gate   *directory.Gate
	now    func() time.Time

	// Knobs; New sets the defaults above. Margin is how long before the invocation's deadline Graph work
	// stops, so a retry can still be enqueued. StepBudget 0 makes each invocation take one page.
	StallAfter, MaxAge              time.Duration
	BackoffBase, BackoffMax, Margin time.Duration
	StepBudget                      time.Duration
	// SecondLook is how long after a drive pass that found nothing the next one looks again.
	SecondLook time.Duration

	newID func(time.Time) string
}

// New returns a Runner.
func New(d Deps) *Runner {
	if d.Now == nil {
		panic("resync.New: Deps.Now is nil: the clock is given, never taken")
	}
	return &Runner{cfg: d.Config, graph: d.Graph, store: d.Store, queue: d.Queue, writer: d.Events, gate: d.Gate, now: d.Now,
		StallAfter: StallAfter, MaxAge: MaxAge, BackoffBase: BackoffBase, BackoffMax: BackoffMax, Margin: deadlineMargin,
		StepBudget: StepBudget, SecondLook: SecondLook, newID: newPassID}
}

// Continuation is the `continuation` of a resync message: which collection and pass, and which page of it.
// It is JSON, e.g. {"collection":"groups","pass":"20260102T030405Z-9f3a61c2","link":""} ("" is the start
// of the pass; a message without a collection, from before groups were followed, is about users). Link is
// compared with the checkpoint, never trusted: the checkpoint is the only source of where a pass stands.
type Continuation struct {
	Collection string `json:"collection,omitempty"`
	Pass       string `json:"pass"`
	Link       string `json:"link"`
	// Resent marks a copy sent to recover a continuation that may have been lost; a resent message never
	// causes another re-send.
	Resent bool `json:"resent,omitempty"`
}

func (c Continuation) collection() string {
	if c.Collection == "" {
		return config.Users
	}
	return c.Collection
}

// Encode returns the continuation's text.
func (c Continuation) Encode() string {
	b, _ := json.Marshal(c) // strings and a bool cannot fail
	return string(b)
}

// DecodeContinuation parses a resync message's continuation.
func DecodeContinuation(s string) (Continuation, error) {
	var c Continuation
	if err := json.Unmarshal([]byte(s), &c); err != nil {
		return c, fmt.Errorf("resync continuation is not JSON of the form {\"pass\":…,\"link\":…}: %w", err)
	}
	if c.Pass == "" {
		return c, errors.New("resync continuation names no pass")
	}
	return c, nil
}

// message returns the queue message carrying c.
func (r *Runner) message(c Continuation, attempt int, notBefore *time.Time) message.Message {
	return message.Message{V: message.Version, Kind: message.KindResync, Continuation: c.Encode(),
		Attempt: attempt, NotBefore: notBefore, FirstSeen: r.now().UTC().Truncate(time.Second)}
}

func (r *Runner) enqueueContinuation(ctx context.Context, q Queue, c Continuation, attempt int, delay time.Duration) error {
	var nb *time.Time
	if delay > 0 {
		t := r.now().Add(delay).UTC().Truncate(time.Second)
		nb = &t
	}
	m := r.message(c, attempt, nb)
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("resync: encode continuation: %w", err)
	}
	if err := q.Enqueue(ctx, message.WorkQueue, b, delay); err != nil {
		return fmt.Errorf("resync: enqueue continuation: %w", err)
	}
	return nil
}

// ---- requesting ----

// RequestAction says what Request did.
type RequestAction string

const (
	Started   RequestAction = "started"   // a new pass, with its first continuation enqueued
	Collapsed RequestAction = "collapsed" // a pass is already in progress and moving: nothing to do
	Resumed   RequestAction = "resumed"   // the pass in progress had stalled: its continuation was re-sent
)

// Requested is the outcome of Request.
type Requested struct {
	Action     RequestAction
	Collection string
	PassID     string
	Full       bool // a full round
	Latest     bool // a first pass from now, which emits nothing
	Reason     string
}

// RequestResync is Request for callers that only need the error: the queue worker's lifecycle handling
// and the subscription keeper's Gap.
func (r *Runner) RequestResync(ctx context.Context, collection, reason string) error {
	_, err := r.Request(ctx, collection, reason)
	return err
}

// RequestAll requests a pass for every configured collection (`handler resync`), or for the ones named.
func (r *Runner) RequestAll(ctx context.Context, reason string, collections ...string) ([]Requested, error) {
	if len(collections) == 0 {
		collections = r.cfg.Collections()
	}
	var out []Requested
	for _, c := range collections {
		if !slices.Contains(r.cfg.Collections(), c) {
			return out, fmt.Errorf("resync: %q is not a collection GRAPH_RESOURCE names (%s)", c, strings.Join(r.cfg.Collections(), ", "))
		}
		q, err := r.Request(ctx, c, reason)
		if err != nil {
			return out, fmt.Errorf("resync %s: %w", c, err)
		}
		out = append(out, q)
	}
	return out, nil
}

// Request starts a pass over a collection for reason, unless one is in progress: then it collapses into
// that pass, or, when that pass has stalled, re-sends its continuation so that it resumes where its
// checkpoint stands.
func (r *Runner) Request(ctx context.Context, collection, reason string) (Requested, error) {
	log := logctx.From(ctx).With("collection", collection)
	w, err := r.walkerFor(collection)
	if err != nil {
		return Requested{}, err
	}
	if err := r.cfg.Check(config.Storage); err != nil {
		return Requested{}, err
	}
	st, err := r.store()
	if err != nil {
		return Requested{}, err
	}
	q, err := r.queue()
	if err != nil {
		return Requested{}, err
	}
	for range 5 {
		cp, etag, err := st.Load(ctx, collection)
		if err != nil {
			return Requested{}, err
		}
		now := r.now()
		if p := cp.Pass; p != nil {
			out := Requested{Collection: collection, PassID: p.ID, Full: p.Full, Latest: p.Latest, Reason: p.Reason}
			if p.Look && p.Pages == 0 && p.Wait.After(now) {
				// A second look is waiting and has not started: it covers this request if it runs now, as
				// a pass of its own (which gets its own look when it finds nothing). Its delayed message is
				// then stale when it comes.
				p.Look, p.Wait, p.Updated = false, time.Time{}, now
				p.Reason += "; run at once: " + reason
				if _, err := r.save(ctx, st, collection, cp, etag); errors.Is(err, checkpoint.ErrConflict) {
					continue
				} else if err != nil {
					return Requested{}, err
				}
				if err := r.enqueueContinuation(ctx, q, Continuation{Collection: collection, Pass: p.ID, Link: p.Link, Resent: true}, 0, 0); err != nil {
					return Requested{}, err
				}
				out.Action, out.Reason = Collapsed, p.Reason
				log.Info("resync requested: the waiting second look runs at once", "reason", reason, "pass", p.ID)
				return out, nil
			}
			if !r.stalled(p, now) {
				// The pass may already be past the changes this request is about: have it followed by one
				// more pass when it completes (once, however many requests collapse into it).
				if p.Again == "" {
					p.Again = reason
					if _, err := r.save(ctx, st, collection, cp, etag); errors.Is(err, checkpoint.ErrConflict) {
						continue
					} else if err != nil {
						return Requested{}, err
					}
				}
				out.Action = Collapsed
				log.Info("resync requested: a pass is in progress; another will follow it", "reason", reason, "pass", p.ID, "page", p.Pages+1)
				return out, nil
			}
			idle := now.Sub(lastMove(p)).Round(time.Second)
			p.Updated, p.Wait = now, time.Time{}
			etag2, err := r.save(ctx, st, collection, cp, etag)
			if errors.Is(err, checkpoint.ErrConflict) {
				continue // it moved after all, or another request resumed it: look again
			}
			if err != nil {
				return Requested{}, err
			}
			if err := r.enqueueContinuation(ctx, q, Continuation{Collection: collection, Pass: p.ID, Link: p.Link, Resent: true}, 0, 0); err != nil {
				r.markStalled(ctx, st, collection, cp, etag2)
				return Requested{}, err
			}
			out.Action = Resumed
			log.Warn("resync pass had stalled: resuming it from its checkpoint", "reason", reason, "pass", p.ID,
				"page", p.Pages+1, "idle", idle.String())
			return out, nil
		}

		p := &checkpoint.Pass{ID: r.newID(now), Reason: reason, Started: now, Updated: now}
		switch {
		case cp.DeltaLink == "" && r.cfg.ResyncInitial == "full":
			p.Full = true
			p.Reason += "; first pass, RESYNC_INITIAL=full"
		case cp.DeltaLink == "":
			// "From now" is taken at once, not by a queued step: a gap reported before that step ran would
			// fall before its "now" and be lost.
			return r.startFromNow(ctx, st, w, cp, etag, p)
		case cp.SelectHash != checkpoint.SelectHash(w.deltaSelect()):
			p.Full = true
			p.Reason += "; " + w.selectSetting() + " changed"
		}
		cp.Pass = p
		etag2, err := r.save(ctx, st, collection, cp, etag)
		if errors.Is(err, checkpoint.ErrConflict) {
			continue // another request started one at the same moment: collapse into it
		}
		if err != nil {
			return Requested{}, err
		}
		if err := r.enqueueContinuation(ctx, q, Continuation{Collection: collection, Pass: p.ID}, 0, 0); err != nil {
			r.markStalled(ctx, st, collection, cp, etag2)
			return Requested{}, err
		}
		kind := "incremental"
		if p.Full {
			kind = "full"
			log.Warn("resync: starting a full pass", "pass", p.ID, "reason", p.Reason)
		}
		log.Info("resync pass started", "pass", p.ID, "kind", kind, "reason", p.Reason)
		return Requested{Action: Started, Collection: collection, PassID: p.ID, Full: p.Full, Latest: p.Latest, Reason: p.Reason}, nil
	}
	return Requested{}, errors.New("resync: the checkpoint kept changing under this request; try again")
}

// startFromNow completes a first pass with RESYNC_INITIAL=latest synchronously: one delta call that returns
// only a deltaLink ($deltatoken=latest), stored as the point the next pass starts from.
func (r *Runner) startFromNow(ctx context.Context, st Store, w walker, cp checkpoint.Checkpoint, etag checkpoint.ETag, p *checkpoint.Pass) (Requested, error) {
	g, err := r.graph()
	if err != nil {
		return Requested{}, err
	}
	sel := w.deltaSelect()
	page, err := w.start(ctx, g, true)
	if err != nil {
		return Requested{}, fmt.Errorf("resync: take the starting point: %w", err)
	}
	if page.DeltaLink == "" {
		return Requested{}, errors.New("resync: Graph returned no deltaLink for $deltatoken=latest")
	}
	now := r.now()
	p.Latest, p.Reason = true, p.Reason+"; first pass: from now (RESYNC_INITIAL=latest)"
	p.Pages, p.Updated, p.SelectHash = 1, now, checkpoint.SelectHash(sel)
	cp.DeltaLink, cp.SelectHash, cp.LastCompleted = page.DeltaLink, p.SelectHash, now
	cp.LastPass, cp.Pass = p, nil
	if _, err := r.save(ctx, st, w.scope(), cp, etag); err != nil {
		if errors.Is(err, checkpoint.ErrConflict) {
			return Requested{Action: Collapsed, Collection: w.scope(), PassID: p.ID, Latest: true, Reason: p.Reason}, nil
		}
		return Requested{}, err
	}
	logctx.From(ctx).Info("resync starting point taken: later passes report changes from now on", "collection", w.scope(), "pass", p.ID, "reason", p.Reason)
	return Requested{Action: Started, Collection: w.scope(), PassID: p.ID, Latest: true, Reason: p.Reason}, nil
}

// markStalled makes a pass whose continuation could not be enqueued resumable by the next Request at once
// (best effort: if this fails too, it becomes resumable after StallAfter).
func (r *Runner) markStalled(ctx context.Context, st Store, collection string, cp checkpoint.Checkpoint, etag checkpoint.ETag) {
	cp.Pass.Updated, cp.Pass.Wait = time.Time{}, time.Time{}
	if _, err := r.save(ctx, st, collection, cp, etag); err != nil {
		logctx.From(ctx).Warn("resync: could not mark the pass for an early resume", "pass", cp.Pass.ID, "err", err)
	}
}

func lastMove(p *checkpoint.Pass) time.Time {
	if p.Wait.After(p.Updated) {
		return p.Wait
	}
	return p.Updated
}

func (r *Runner) stalled(p *checkpoint.Pass, now time.Time) bool {
	return now.Sub(lastMove(p)) >= r.StallAfter
}

// DueReason says why the renew timer should Request a pass over a collection, "" when none is due: none
// ever completed, the last one completed more than MaxAge (24 h) ago, its select changed, or the pass in
// progress has stalled.
func (r *Runner) DueReason(ctx context.Context, collection string) (string, error) {
	w, err := r.walkerFor(collection)
	if err != nil {
		return "", err
	}
	if err := r.cfg.Check(config.Storage); err != nil {
		return "", err
	}
	st, err := r.store()
	if err != nil {
		return "", err
	}
	cp, _, err := st.Load(ctx, collection)
	if err != nil {
		return "", err
	}
	now := r.now()
	switch {
	case cp.Pass != nil:
		if r.stalled(cp.Pass, now) {
			return "the pass in progress has stalled", nil
		}
		return "", nil
	case cp.DeltaLink == "" || cp.LastCompleted.IsZero():
		return "no resync pass has completed yet", nil
	case now.Sub(cp.LastCompleted) >= r.MaxAge:
		return fmt.Sprintf("the last resync pass completed %s ago", now.Sub(cp.LastCompleted).Round(time.Minute)), nil
	case cp.SelectHash != checkpoint.SelectHash(w.deltaSelect()):
		return w.selectSetting() + " changed", nil
	}
	return "", nil
}

// RequestIfDue is what the renew timer calls: for each collection, Request when DueReason gives a reason.
// It returns a line per pass it started or resumed, and the failures of all collections together.
func (r *Runner) RequestIfDue(ctx context.Context) ([]string, error) {
	var lines []string
	var errs []error
	for _, c := range r.cfg.Collections() {
		why, err := r.DueReason(ctx, c)
		if err != nil || why == "" {
			errs = append(errs, err)
			continue
		}
		q, err := r.Request(ctx, c, "scheduled: "+why)
		if err != nil {
			errs = append(errs, fmt.Errorf("resync %s: %w", c, err))
			continue
		}
		lines = append(lines, fmt.Sprintf("resync %s %s (%s): pass %s", c, q.Action, q.Reason, q.PassID))
	}
	return lines, errors.Join(errs...)
}

// newPassID is sortable by start time and unique: 20260102T030405Z-9f3a61c2.
func newPassID(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// newWriter is a random nonce for Checkpoint.Writer.
// save writes cp guarded by etag. Each write carries a fresh Writer nonce, so that when the storage client
// retries a PUT whose answer was lost and the retry fails its own If-Match (412), the write is recognised as
// ours rather than taken for another worker's.
func (r *Runner) save(ctx context.Context, st Store, collection string, cp checkpoint.Checkpoint, etag checkpoint.ETag) (checkpoint.ETag, error) {
	cp.Writer = newWriter()
	et, err := st.Save(ctx, collection, cp, etag)
	if errors.Is(err, checkpoint.ErrConflict) {
		if got, et2, lerr := st.Load(ctx, collection); lerr == nil && got.Writer == cp.Writer {
			return et2, nil
		}
	}
	return et, err
}

func newWriter() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// complete reports whether u carries every selected property.
func complete(u graph.Object, sel []string) bool {
	have := make(map[string]bool, len(u))
	for k := range u {
		have[strings.ToLower(k)] = true
	}
	for _, p := range sel {
		if !have[strings.ToLower(p)] {
			return false
		}
	}
	return true
}

func logger(ctx context.Context) *slog.Logger { return logctx.From(ctx) }
