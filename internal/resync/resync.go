// Package resync recovers the changes Graph did not deliver, with delta query (reference §6): passes over
// /users/delta whose progress is kept in a durable, ETag-guarded checkpoint (internal/checkpoint), run one
// page per queue message so that no invocation comes near functionTimeout.
//
// # Passes
//
// Request starts a pass unless one is in progress (concurrent requests collapse into it). The pass is saved
// in the checkpoint first (If-None-Match/If-Match: of two workers racing, one wins), then a `kind: resync`
// message with the pass's continuation is enqueued on webhooksnotificationqueue. A pass starts:
//   - from the stored deltaLink (changes since the last completed pass; events with source "resync");
//   - as a full round (every user; source "fullsync") when RESYNC_INITIAL=full and no pass ever completed,
//     when GRAPH_USER_SELECT differs from the select the stored link was made with ($select is baked into
//     delta links), or when Graph says the link expired (syncStateNotFound / 410 Gone): the pass then
//     restarts as full, logged as a warning;
//   - from "now" ($deltatoken=latest: only a deltaLink, no events) for the very first pass otherwise.
//
// # One page per step
//
// Step handles one such message. The continuation names the pass and the link of the page to fetch
// (Continuation); a message that does not name the checkpoint's current pass and link is stale (a duplicate
// or a superseded step) and is dropped with a log line. For the current step, in this order:
//  1. fetch the page; users missing selected properties (delta returns only changed ones) are read with
//     $batch (20 per request); soft-deleted users are looked up in directory/deletedItems for their
//     properties when the Graph client can (DeletedUserGetter);
//  2. write one event per user (the last occurrence in the page wins) to graphchanges, through Queue;
//  3. save the checkpoint with the ETag it was loaded with: the next link, or on the last page the new
//     deltaLink, LastCompleted and no pass. ErrConflict means another worker advanced first: stop;
//  4. enqueue the continuation for the next page.
//
// Throttling (a 429 whose Retry-After the Graph client does not wait out, or inner $batch 429s) and
// transient failures re-enqueue the same step (the same continuation, attempt+1) with the Retry-After, or
// with the backoff BackoffBase·2^attempt up to BackoffMax; the checkpoint's link never moves, only the pass's
// Wait is recorded so the pass does not look stalled. Step then succeeds. Other failures (401, 403, 400, a
// storage failure) return an error: the queue worker fails the invocation and the host redelivers the
// message, which is safe (see below).
//
// # Recovering a killed run
//
// A run killed before step 3 leaves its message undeleted: the host redelivers it and the page is done
// again (same event ids). A run killed between steps 3 and 4 has moved the checkpoint, but no continuation
// exists: when the host redelivers that message, its link equals the pass's Prev, so Step re-sends the
// continuation of the current link (marked resent, and a resent message never triggers another re-send, so
// duplicates cannot multiply). A continuation lost any other way leaves the pass without progress: once it
// has not moved for StallAfter (10 min), Due reports true and Request re-sends its continuation instead of
// starting a new pass.
//
// # Events
//
// The change events of internal/message, with source "resync" or "fullsync", subscriptionId null:
// `@removed.reason: changed` → changeType deleted, softDeleted true, user = its deletedItems properties
// (null when not readable); `deleted` → changeType deleted, softDeleted false, user null; anything else →
// updated with the GRAPH_USER_SELECT properties. A user that $batch cannot find (404) was removed after the
// delta round was taken: it is looked up in deletedItems as above, and reported deleted (softDeleted false,
// user null) when not found there either; the next pass reports its removal again. The event id is the first
// 128 bits of SHA-256 over the source, tenant, user id, change type, soft-deleted flag, pass id and page
// link: a redelivered or retried page yields the same ids.
//
// For GRAPH_RESOURCE=users/{id} the pass reads the tenant's delta and emits events for that user only.
package resync

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/checkpoint"
	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/logctx"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

// Defaults of the Runner's knobs.
const (
	// ChangesQueue receives the events, as the queue worker's output binding does.
	ChangesQueue = message.ChangesQueue
	// WorkQueue is the queue worker's trigger queue, where continuations go.
	WorkQueue = message.WorkQueue
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
	// emitConcurrency is how many events are enqueued at once.
	emitConcurrency = 8
	// deletedLookups is how many deletedItems reads run at once.
	deletedLookups = 4
)

// Graph is what a resync needs of the Graph client (*graph.Client).
type Graph interface {
	DeltaStart(ctx context.Context, sel []string, latest bool) (graph.DeltaPage, error)
	Delta(ctx context.Context, link string) (graph.DeltaPage, error)
	GetUsers(ctx context.Context, ids, sel []string) (graph.BatchResult, error)
}

// DeletedUserGetter is optional: a Graph that has it (*graph.Client does) gives soft-deleted users their
// properties from directory/deletedItems.
type DeletedUserGetter interface {
	GetDeletedUser(ctx context.Context, id string, sel []string) (graph.User, error)
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

// Runner requests and runs resync passes. It holds no state of its own between calls: everything is in the
// checkpoint and the queue, so any number of workers may share the work.
type Runner struct {
	cfg   *config.Config
	graph func() (Graph, error)
	store func() (Store, error)
	queue func() (Queue, error)
	now   func() time.Time

	// Knobs; New sets the defaults above. Margin is how long before the invocation's deadline Graph work
	// stops, so a retry can still be enqueued.
	ChangesQueue, WorkQueue         string
	StallAfter, MaxAge              time.Duration
	BackoffBase, BackoffMax, Margin time.Duration

	newID     func(time.Time) string
	emitLimit int
}

// New returns a Runner. The dependencies are built lazily, on the first call that needs them, so that a
// missing setting is reported by the invocation that needs it.
func New(cfg *config.Config, g func() (Graph, error), store func() (Store, error), q func() (Queue, error), now func() time.Time) *Runner {
	if now == nil {
		now = time.Now
	}
	return &Runner{cfg: cfg, graph: g, store: store, queue: q, now: now,
		ChangesQueue: ChangesQueue, WorkQueue: WorkQueue, StallAfter: StallAfter, MaxAge: MaxAge,
		BackoffBase: BackoffBase, BackoffMax: BackoffMax, Margin: deadlineMargin, newID: newPassID, emitLimit: emitConcurrency}
}

// Continuation is the `continuation` of a resync message: which pass, and which page of it. It is JSON,
// e.g. {"pass":"20260102T030405Z-9f3a61c2","link":""} ("" is the start of the pass). Link is compared with
// the checkpoint, never trusted: the checkpoint is the only source of where a pass stands.
type Continuation struct {
	Pass string `json:"pass"`
	Link string `json:"link"`
	// Resent marks a copy sent to recover a continuation that may have been lost; a resent message never
	// causes another re-send.
	Resent bool `json:"resent,omitempty"`
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
	if err := q.Enqueue(ctx, r.WorkQueue, b, delay); err != nil {
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
	Action RequestAction
	PassID string
	Full   bool // a full round
	Latest bool // a first pass from now, which emits nothing
	Reason string
}

// RequestResync is Request for callers that only need the error: queueworker.Resyncer, renewtimer.Keeper.Gap.
func (r *Runner) RequestResync(ctx context.Context, reason string) error {
	_, err := r.Request(ctx, reason)
	return err
}

// Request starts a pass for reason, unless one is in progress: then it collapses into that pass, or, when
// that pass has stalled, re-sends its continuation so that it resumes where its checkpoint stands.
func (r *Runner) Request(ctx context.Context, reason string) (Requested, error) {
	log := logctx.From(ctx)
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
	res := r.cfg.Resource
	for range 5 {
		cp, etag, err := st.Load(ctx, res)
		if err != nil {
			return Requested{}, err
		}
		now := r.now()
		if p := cp.Pass; p != nil {
			out := Requested{PassID: p.ID, Full: p.Full, Latest: p.Latest, Reason: p.Reason}
			if !r.stalled(p, now) {
				// The pass may already be past the changes this request is about: have it followed by one
				// more pass when it completes (once, however many requests collapse into it).
				if p.Again == "" {
					p.Again = reason
					if _, err := r.save(ctx, st, cp, etag); errors.Is(err, checkpoint.ErrConflict) {
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
			etag2, err := r.save(ctx, st, cp, etag)
			if errors.Is(err, checkpoint.ErrConflict) {
				continue // it moved after all, or another request resumed it: look again
			}
			if err != nil {
				return Requested{}, err
			}
			if err := r.enqueueContinuation(ctx, q, Continuation{Pass: p.ID, Link: p.Link, Resent: true}, 0, 0); err != nil {
				r.markStalled(ctx, st, cp, etag2)
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
			return r.startFromNow(ctx, st, cp, etag, p)
		case cp.SelectHash != checkpoint.SelectHash(r.cfg.UserSelect):
			p.Full = true
			p.Reason += "; GRAPH_USER_SELECT changed"
		}
		cp.Pass = p
		etag2, err := r.save(ctx, st, cp, etag)
		if errors.Is(err, checkpoint.ErrConflict) {
			continue // another request started one at the same moment: collapse into it
		}
		if err != nil {
			return Requested{}, err
		}
		if err := r.enqueueContinuation(ctx, q, Continuation{Pass: p.ID}, 0, 0); err != nil {
			r.markStalled(ctx, st, cp, etag2)
			return Requested{}, err
		}
		kind := "incremental"
		if p.Full {
			kind = "full"
			log.Warn("resync: starting a full pass", "pass", p.ID, "reason", p.Reason)
		}
		log.Info("resync pass started", "pass", p.ID, "kind", kind, "reason", p.Reason)
		return Requested{Action: Started, PassID: p.ID, Full: p.Full, Latest: p.Latest, Reason: p.Reason}, nil
	}
	return Requested{}, errors.New("resync: the checkpoint kept changing under this request; try again")
}

// startFromNow completes a first pass with RESYNC_INITIAL=latest synchronously: one delta call that returns
// only a deltaLink ($deltatoken=latest), stored as the point the next pass starts from.
func (r *Runner) startFromNow(ctx context.Context, st Store, cp checkpoint.Checkpoint, etag checkpoint.ETag, p *checkpoint.Pass) (Requested, error) {
	g, err := r.graph()
	if err != nil {
		return Requested{}, err
	}
	page, err := g.DeltaStart(ctx, r.cfg.UserSelect, true)
	if err != nil {
		return Requested{}, fmt.Errorf("resync: take the starting point: %w", err)
	}
	if page.DeltaLink == "" {
		return Requested{}, errors.New("resync: Graph returned no deltaLink for $deltatoken=latest")
	}
	now := r.now()
	p.Latest, p.Reason = true, p.Reason+"; first pass: from now (RESYNC_INITIAL=latest)"
	p.Pages, p.Updated, p.SelectHash = 1, now, checkpoint.SelectHash(r.cfg.UserSelect)
	cp.DeltaLink, cp.SelectHash, cp.LastCompleted = page.DeltaLink, p.SelectHash, now
	cp.LastPass, cp.Pass = p, nil
	if _, err := r.save(ctx, st, cp, etag); err != nil {
		if errors.Is(err, checkpoint.ErrConflict) {
			return Requested{Action: Collapsed, PassID: p.ID, Latest: true, Reason: p.Reason}, nil
		}
		return Requested{}, err
	}
	logctx.From(ctx).Info("resync starting point taken: later passes report changes from now on", "pass", p.ID, "reason", p.Reason)
	return Requested{Action: Started, PassID: p.ID, Latest: true, Reason: p.Reason}, nil
}

// markStalled makes a pass whose continuation could not be enqueued resumable by the next Request at once
// (best effort: if this fails too, it becomes resumable after StallAfter).
func (r *Runner) markStalled(ctx context.Context, st Store, cp checkpoint.Checkpoint, etag checkpoint.ETag) {
	cp.Pass.Updated, cp.Pass.Wait = time.Time{}, time.Time{}
	if _, err := r.save(ctx, st, cp, etag); err != nil {
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

// Due reports whether the renew timer should Request a pass: none ever completed, the last one completed
// more than MaxAge (24 h) ago, GRAPH_USER_SELECT changed, or the pass in progress has stalled.
func (r *Runner) Due(ctx context.Context) (bool, error) {
	why, err := r.DueReason(ctx)
	return why != "", err
}

// DueReason is Due with the reason, "" when no pass is due.
func (r *Runner) DueReason(ctx context.Context) (string, error) {
	if err := r.cfg.Check(config.Storage); err != nil {
		return "", err
	}
	st, err := r.store()
	if err != nil {
		return "", err
	}
	cp, _, err := st.Load(ctx, r.cfg.Resource)
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
	case cp.SelectHash != checkpoint.SelectHash(r.cfg.UserSelect):
		return "GRAPH_USER_SELECT changed", nil
	}
	return "", nil
}

// RequestIfDue is what the renew timer calls: Request when DueReason gives a reason.
func (r *Runner) RequestIfDue(ctx context.Context) (Requested, bool, error) {
	why, err := r.DueReason(ctx)
	if err != nil || why == "" {
		return Requested{}, false, err
	}
	out, err := r.Request(ctx, "scheduled: "+why)
	return out, err == nil, err
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
func (r *Runner) save(ctx context.Context, st Store, cp checkpoint.Checkpoint, etag checkpoint.ETag) (checkpoint.ETag, error) {
	cp.Writer = newWriter()
	et, err := st.Save(ctx, r.cfg.Resource, cp, etag)
	if errors.Is(err, checkpoint.ErrConflict) {
		if got, et2, lerr := st.Load(ctx, r.cfg.Resource); lerr == nil && got.Writer == cp.Writer {
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

// ---- events ----

func eventID(source message.Source, tenant, userID, changeType string, softDeleted bool, pass, link string) string {
	return message.EventID(string(source), strings.ToLower(tenant), "users", strings.ToLower(userID),
		changeType, strconv.FormatBool(softDeleted), "resync", pass, link)
}

// complete reports whether u carries every selected property.
func complete(u graph.User, sel []string) bool {
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

// emit writes events to the changes queue, emitLimit at a time; the first failure is returned.
func (r *Runner) emit(ctx context.Context, q Queue, events []message.Event) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, max(1, r.emitLimit))
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for i := range events {
		b, err := json.Marshal(&events[i])
		if err != nil {
			return fmt.Errorf("resync: encode event: %w", err)
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
			if err := q.Enqueue(ctx, r.ChangesQueue, b, 0); err != nil {
				mu.Lock()
				if first == nil {
					first = fmt.Errorf("resync: write event to %s: %w", r.ChangesQueue, err)
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
