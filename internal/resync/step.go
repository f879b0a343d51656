package resync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/backoff"
	"github.com/graphwebhooks/graph-webhooks-go/internal/directory"

	"github.com/graphwebhooks/graph-webhooks-go/internal/checkpoint"
	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

// StepResult says what one Step did.
type StepResult struct {
	PassID     string
	Collection string
	Page       int // the page handled, counted from 1 within the pass; 0 when none was
	Events     int // events written
	Suppressed int // events not written: they carried nothing new
	Full       bool
	// Done: the pass completed; the checkpoint holds its deltaLink.
	Done bool
	// Stale: the message was not the current step of the current pass (a duplicate, or superseded): dropped.
	Stale bool
	// Conflict: another worker moved the checkpoint first; this step stopped (its events, if any, are
	// duplicates with the same ids).
	Conflict bool
	// Restarted: Graph said the delta link expired; the pass restarts as a full pass.
	Restarted bool
	// Resent: the continuation of the current step was re-sent (its predecessor was redelivered).
	Resent bool
	// RetryAfter > 0: the same step was re-enqueued with this delay (throttled, or a transient failure).
	RetryAfter time.Duration
	Why        string // for Stale and RetryAfter
	// Pages is how many pages this invocation handled; FirstPage the first of them. Events and
	// Suppressed count them all.
	Pages, FirstPage int

	next *Continuation // the pass's next page, when this page is done and the pass is not
}

// Summary is one line for the invocation's Logs.
func (s StepResult) Summary() string {
	switch {
	case s.Stale:
		return "resync message dropped: " + s.Why
	case s.Conflict:
		return fmt.Sprintf("resync pass %s: another worker advanced the checkpoint first; step stopped", s.PassID)
	case s.Resent:
		return fmt.Sprintf("resync pass %s: continuation re-sent", s.PassID)
	case s.Restarted:
		return fmt.Sprintf("resync pass %s: delta link expired, restarting as a full pass", s.PassID)
	case s.RetryAfter > 0:
		return fmt.Sprintf("resync pass %s page %d: %s, retrying in %s", s.PassID, s.Page, s.Why, s.RetryAfter)
	case s.Done:
		return fmt.Sprintf("resync %s pass %s completed: page %d, %d event(s), %d suppressed as carrying nothing new%s", s.Collection, s.PassID, s.Page, s.Events, s.Suppressed, s.pages())
	}
	return fmt.Sprintf("resync %s pass %s page %d: %d event(s), %d suppressed as carrying nothing new, continuing%s", s.Collection, s.PassID, s.Page, s.Events, s.Suppressed, s.pages())
}

func (s StepResult) pages() string {
	if s.Pages <= 1 {
		return ""
	}
	return fmt.Sprintf(" (pages %d–%d in this invocation)", s.FirstPage, s.Page)
}

// Step handles one `kind: resync` message: the delta page it names, then the pass's next pages one after
// another, each checkpointed as it completes, until the pass ends or StepBudget is spent; then it hands the
// pass over by enqueueing the continuation (see the package documentation). An error means the invocation
// should fail so that the host redelivers the message; every outcome that waiting or dropping handles
// better is a nil error with the StepResult saying what happened.
func (r *Runner) Step(ctx context.Context, m *message.Message) (StepResult, error) {
	start := r.now()
	var sum StepResult
	origin := ""
	if m != nil {
		if c, err := DecodeContinuation(m.Continuation); err == nil {
			origin = c.Link
		}
	}
	for {
		later := sum.Pages > 0
		pctx, cancel := ctx, context.CancelFunc(func() {})
		if dl, ok := ctx.Deadline(); ok && later {
			// A later page must leave time to hand itself over if it cannot finish (storage slowed down).
			pctx, cancel = context.WithDeadline(ctx, dl.Add(-handOverReserve))
		}
		out, err := r.step(pctx, m, origin)
		cancel()
		sum = sum.then(out)
		if err != nil && later {
			// A later page failed: the pages before it are checkpointed, and the host's redelivery of the
			// message this invocation began with would be stale by now. Hand this page over instead.
			c, _ := DecodeContinuation(m.Continuation)
			return sum, r.handOver(ctx, c, err)
		}
		if err != nil || out.next == nil {
			return sum, err
		}
		c := *out.next
		if !r.withinBudget(ctx, start) {
			// If this enqueue fails, the host redelivers the message this invocation began with, which the
			// pass's Origin recognises: its step re-sends the continuation.
			return sum, r.handOver(ctx, c, nil)
		}
		next := r.message(c, 0, nil)
		m = &next
	}
}

// handOverReserve is the time a later page of an invocation leaves before the invocation's deadline, to
// enqueue its own continuation when it cannot finish: one queue write, under a second when storage is well.
const handOverReserve = 10 * time.Second

// handOver enqueues c for another invocation; cause is logged when a failure ended this one's pages.
func (r *Runner) handOver(ctx context.Context, c Continuation, cause error) error {
	q, err := r.queue()
	if err == nil {
		err = r.enqueueContinuation(ctx, q, c, 0, 0)
	}
	if err != nil {
		if cause != nil {
			return fmt.Errorf("%w (handing the pass over after: %v)", err, cause)
		}
		return err
	}
	if cause != nil {
		logger(ctx).Warn("resync: a page failed after earlier pages of this invocation were done; handed it over to the next", "pass", c.Pass, "err", cause)
	}
	return nil
}

// withinBudget reports whether another page may start: StepBudget since start has not passed, nor half the
// time this invocation had until Margin before its deadline.
func (r *Runner) withinBudget(ctx context.Context, start time.Time) bool {
	budget := r.StepBudget
	if dl, ok := ctx.Deadline(); ok {
		budget = min(budget, dl.Add(-r.Margin).Sub(start)/2)
	}
	return r.now().Sub(start) < budget
}

// then adds the result of the next page of the same invocation to s.
func (s StepResult) then(next StepResult) StepResult {
	events, suppressed, pages, first := s.Events+next.Events, s.Suppressed+next.Suppressed, s.Pages, s.FirstPage
	if next.Page > 0 {
		pages++
		if first == 0 {
			first = next.Page
		}
	}
	next.Events, next.Suppressed, next.Pages, next.FirstPage = events, suppressed, pages, first
	if next.Page == 0 {
		next.Page = s.Page
	}
	return next
}

// step handles the one page m names; origin is the link of the message the invocation began with.
func (r *Runner) step(ctx context.Context, m *message.Message, origin string) (StepResult, error) {
	log := logger(ctx)
	if m == nil || m.Kind != message.KindResync {
		return StepResult{}, errors.New("resync: Step needs a resync message")
	}
	c, err := DecodeContinuation(m.Continuation)
	if err != nil {
		// It can never succeed: failing would only move it to the poison queue after five tries.
		log.Error("resync message dropped: unreadable continuation", "err", err)
		return StepResult{Stale: true, Why: err.Error()}, nil
	}
	w, err := r.walkerFor(c.collection())
	if err != nil {
		log.Error("resync message dropped: unknown collection", "collection", c.Collection)
		return StepResult{Stale: true, Why: "unknown collection"}, nil
	}
	scope := w.scope()
	log = log.With("pass", c.Pass, "collection", scope)
	if err := r.cfg.Check(config.TenantID, config.Storage); err != nil {
		return StepResult{}, err
	}
	st, err := r.store()
	if err != nil {
		return StepResult{}, err
	}
	q, err := r.queue()
	if err != nil {
		return StepResult{}, err
	}
	out := StepResult{PassID: c.Pass, Collection: scope}
	cp, etag, err := st.Load(ctx, scope)
	if err != nil {
		return r.checkpointUnavailable(ctx, log, q, m, c, out, err)
	}
	p := cp.Pass
	switch {
	case p == nil || p.ID != c.Pass:
		out.Stale, out.Why = true, "its pass is over or was superseded"
		log.Info("resync message dropped: " + out.Why)
		return out, nil
	case c.Link != p.Link:
		if (c.Link == p.Prev || (p.Origin != nil && c.Link == *p.Origin)) && !c.Resent {
			// The step that moved the checkpoint to p.Link (or the message its invocation began with) was
			// redelivered: its process may have died, or its invocation failed, before enqueueing the
			// continuation. Re-send it; a duplicate is dropped as stale later.
			if err := r.enqueueContinuation(ctx, q, Continuation{Collection: scope, Pass: p.ID, Link: p.Link, Resent: true}, 0, 0); err != nil {
				return out, err
			}
			out.Resent = true
			log.Info("resync: the previous step was redelivered; re-sent the continuation of the current page", "page", p.Pages+1)
			return out, nil
		}
		out.Stale, out.Why = true, "the pass has moved past this page"
		log.Info("resync message dropped: " + out.Why)
		return out, nil
	}
	out.Page = p.Pages + 1
	log = log.With("page", out.Page)

	g, err := r.graph()
	if err != nil {
		return out, err
	}
	work, cancel := r.workContext(ctx)
	defer cancel()
	link := p.Link // this step's identity, for event ids
	page, err := r.fetch(work, log, g, w, &cp)
	out.Full = p.Full
	if err != nil {
		// An expired link restarts the pass as full; a full or latest start cannot expire.
		if errors.Is(err, graph.ErrResyncRequired) && (link != "" || !p.Full) {
			return r.restart(ctx, log, st, q, scope, cp, etag, out, err)
		}
		return r.retryOrFail(ctx, log, st, q, scope, cp, etag, m, c, out, err)
	}
	if page.NextLink == "" && page.DeltaLink == "" {
		return out, errors.New("resync: Graph returned a delta page with neither a nextLink nor a deltaLink")
	}
	source := message.SourceResync
	if p.Full {
		source = message.SourceFullSync
	}
	in := pageInput{objects: page.Objects, carry: p.Carry, more: page.NextLink != "", source: source, passID: p.ID, link: link}
	if !p.Full {
		in.since = cp.LastCompleted
	}
	items, carry, err := w.page(work, log, g, in)
	if err != nil {
		return r.retryOrFail(ctx, log, st, q, scope, cp, etag, m, c, out, err)
	}
	// 1. The events are durable before the checkpoint moves.
	written, err := r.writer.Write(ctx, items)
	if err != nil {
		return out, err
	}
	out.Events, out.Suppressed = written.Written, written.Suppressed

	// 2. Move the checkpoint, guarded by the ETag it was read with.
	now := r.now()
	full, reason, selHash := p.Full, p.Reason, p.SelectHash // decided by fetch on a pass's first page
	cp, err = r.advance(ctx, st, scope, cp, etag, p.ID, link, func(cp *checkpoint.Checkpoint) {
		p := cp.Pass
		p.Full, p.Reason, p.SelectHash = full, reason, selHash
		p.Pages++
		p.Events += written.Written
		p.Updated, p.Wait, p.Carry = now, time.Time{}, carry
		if page.NextLink != "" {
			p.Prev, p.Link, p.Origin = p.Link, page.NextLink, nil
			if origin != link {
				p.Origin = &origin
			}
			return
		}
		last := *p
		last.Link, last.Prev, last.Origin, last.Again = "", "", nil, ""
		cp.DeltaLink, cp.SelectHash, cp.LastCompleted = page.DeltaLink, p.SelectHash, now
		cp.LastPass, cp.Pass = &last, nil
		switch look := w.secondLook(); {
		case p.Again != "":
			// A request arrived during this pass: the follow-up starts from the deltaLink just stored, in
			// the same write, so it cannot be lost between two saves.
			cp.Pass = &checkpoint.Pass{ID: r.newID(now), Reason: "requested during pass " + p.ID + ": " + p.Again, Started: now, Updated: now}
		case look > 0 && p.Events == 0 && !p.Full && !p.Latest && !p.Look:
			// Nothing found: the change that caused the pass may not be in delta yet. One more look
			// after a while; it waits deliberately, so it does not count as stalled meanwhile.
			cp.Pass = &checkpoint.Pass{ID: r.newID(now), Reason: "pass " + p.ID + " found nothing new: one more look, as delta can lag the notification",
				Look: true, Started: now, Updated: now, Wait: now.Add(look)}
		}
	})
	if err != nil {
		if !errors.Is(err, checkpoint.ErrConflict) {
			// The events are written; the retry writes them again with the same ids.
			return r.checkpointUnavailable(ctx, log, q, m, c, out, err)
		}
		out.Conflict = true
		log.Info("resync: another worker advanced the checkpoint first; this step stops", "events", written.Written)
		return out, nil
	}
	out.Done = page.NextLink == ""
	if out.Done {
		p = cp.LastPass
	} else {
		p = cp.Pass
	}

	// 3. Hand the next page to the next invocation.
	if out.Done {
		log.Info("resync pass completed", "pages", p.Pages, "events", p.Events, "full", p.Full,
			"took", now.Sub(p.Started).Round(time.Second).String(), "reason", p.Reason)
		if next := cp.Pass; next != nil {
			// If this enqueue fails, the follow-up pass stalls and the next Request or timer tick resumes it.
			if err := r.enqueueContinuation(ctx, q, Continuation{Collection: scope, Pass: next.ID}, 0, max(next.Wait.Sub(now), 0)); err != nil {
				return out, err
			}
			log.Info("resync follow-up pass started", "pass", next.ID, "reason", next.Reason)
		}
		return out, nil
	}
	out.next = &Continuation{Collection: scope, Pass: p.ID, Link: p.Link}
	log.Info("resync page done", "events", written.Written, "suppressed", written.Suppressed)
	return out, nil
}

// advance applies move to the checkpoint of a pass standing at link, and saves it guarded by etag. A
// conflict caused by a request that only marked the pass (Again, a resume's Updated) is no other worker's
// progress: the checkpoint is read again and move applied to it, so the mark is kept. ErrConflict means
// the pass itself moved on (another worker did this step) or ended.
func (r *Runner) advance(ctx context.Context, st Store, collection string, cp checkpoint.Checkpoint, etag checkpoint.ETag,
	passID, link string, move func(*checkpoint.Checkpoint)) (checkpoint.Checkpoint, error) {
	for range 5 {
		next := cp
		if cp.Pass != nil {
			p := *cp.Pass
			next.Pass = &p
		}
		move(&next)
		_, err := r.save(ctx, st, collection, next, etag)
		if !errors.Is(err, checkpoint.ErrConflict) {
			return next, err
		}
		if cp, etag, err = st.Load(ctx, collection); err != nil {
			return cp, err
		}
		if cp.Pass == nil || cp.Pass.ID != passID || cp.Pass.Link != link {
			return cp, checkpoint.ErrConflict
		}
	}
	return cp, checkpoint.ErrConflict
}

// workContext ends Graph work Margin before the invocation's deadline, leaving time to re-enqueue.
func (r *Runner) workContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok {
		return context.WithDeadline(ctx, dl.Add(-r.Margin))
	}
	return context.WithCancel(ctx)
}

// fetch gets the pass's next page. At the start of a pass it decides how: a full round, or the changes since
// the stored deltaLink (unless the select changed since that link was made). A pass "from now" never gets
// here: Request completes it at once.
func (r *Runner) fetch(ctx context.Context, log *slog.Logger, g Graph, w walker, cp *checkpoint.Checkpoint) (graph.DeltaPage, error) {
	p := cp.Pass
	if p.Link != "" {
		return w.next(ctx, g, p.Link)
	}
	hash := checkpoint.SelectHash(w.deltaSelect())
	setting := w.selectSetting()
	switch {
	case p.Full:
	case cp.DeltaLink == "":
		p.Full = true
		p.Reason += "; no starting point stored"
		log.Warn("resync: no delta link is stored: running a full pass")
	case cp.SelectHash != hash:
		p.Full = true
		p.Reason += "; " + setting + " changed"
		log.Warn("resync: " + setting + " differs from the stored delta link's: running a full pass")
	}
	if p.Full {
		p.SelectHash = hash
		return w.start(ctx, g, false)
	}
	p.SelectHash = cp.SelectHash
	return w.next(ctx, g, cp.DeltaLink)
}

// restart turns the pass into a full pass from the beginning, after Graph said its link expired.
func (r *Runner) restart(ctx context.Context, log *slog.Logger, st Store, q Queue, scope string, cp checkpoint.Checkpoint, etag checkpoint.ETag, out StepResult, cause error) (StepResult, error) {
	if cp.Pass.Restarts+1 > MaxRestarts {
		return out, fmt.Errorf("resync: delta links expired %d times in one pass: %w", cp.Pass.Restarts+1, cause)
	}
	log.Warn("resync: the delta link expired (syncStateNotFound or 410 Gone): restarting as a full pass", "err", cause)
	out.Full = true
	now := r.now()
	cp, err := r.advance(ctx, st, scope, cp, etag, cp.Pass.ID, cp.Pass.Link, func(cp *checkpoint.Checkpoint) {
		p := cp.Pass
		p.Restarts++
		p.Full = true
		p.Prev, p.Link, p.Carry = p.Link, "", nil
		p.Reason += "; delta link expired"
		p.Updated, p.Wait = now, time.Time{}
	})
	if err != nil {
		if errors.Is(err, checkpoint.ErrConflict) {
			out.Conflict = true
			return out, nil
		}
		return out, err
	}
	if err := r.enqueueContinuation(ctx, q, Continuation{Collection: scope, Pass: cp.Pass.ID}, 0, 0); err != nil {
		return out, err
	}
	out.Restarted = true
	return out, nil
}

// retryOrFail re-enqueues the same step after a throttled or transient failure, and returns any other
// failure. The checkpoint's link does not move; the pass's Wait records the delay, so it is not taken for
// stalled, and the ETag-guarded write makes sure only the current holder of the step re-enqueues it.
func (r *Runner) retryOrFail(ctx context.Context, log *slog.Logger, st Store, q Queue, scope string, cp checkpoint.Checkpoint, etag checkpoint.ETag, m *message.Message, c Continuation, out StepResult, cause error) (StepResult, error) {
	var delay time.Duration
	if ctx.Err() != nil {
		return out, cause // the invocation itself is over
	}
	switch o, ra := directory.Classify(cause); {
	case errors.Is(cause, context.DeadlineExceeded):
		out.Why = "out of time"
		delay = r.BackoffBase
	case o == directory.Throttled || o == directory.Deferred:
		out.Why = "throttled by Graph"
		delay = ra
		if delay <= 0 {
			delay = r.backoff(m.Attempt)
		}
	case o == directory.Transient:
		out.Why = "Graph failed transiently"
		delay = max(ra, r.backoff(m.Attempt))
	default:
		return out, cause
	}
	wait := r.now().Add(delay)
	if _, err := r.advance(ctx, st, scope, cp, etag, cp.Pass.ID, cp.Pass.Link, func(cp *checkpoint.Checkpoint) { cp.Pass.Wait = wait }); err != nil {
		if errors.Is(err, checkpoint.ErrConflict) {
			out.Conflict = true
			log.Info("resync: step failed and another worker has moved the checkpoint: leaving it to that one", "err", cause)
			return out, nil
		}
		log.Warn("resync: could not record the wait in the checkpoint", "err", err)
	}
	if err := r.enqueueContinuation(ctx, q, c, m.Attempt+1, delay); err != nil {
		return out, err
	}
	out.RetryAfter = delay
	log.Warn("resync step re-enqueued: "+out.Why, "retry_after", delay.String(), "attempt", m.Attempt+1, "err", cause)
	return out, nil
}

// checkpointUnavailable handles a step whose checkpoint could not be read or saved (blob storage failing):
// the same step is re-enqueued after the backoff step for its attempt, so a blob fault delays the pass
// instead of sending its message towards the poison queue through the host's retries. Only when that
// enqueue fails too (the queue is down as well) does the invocation fail, for the host to retry. A
// checkpoint that is unreadable as stored cannot get better by waiting: that error is returned as it is.
func (r *Runner) checkpointUnavailable(ctx context.Context, log *slog.Logger, q Queue, m *message.Message, c Continuation, out StepResult, cause error) (StepResult, error) {
	if ctx.Err() != nil || errors.Is(cause, checkpoint.ErrCorrupt) {
		return out, cause
	}
	delay := r.backoff(m.Attempt)
	if err := r.enqueueContinuation(ctx, q, c, m.Attempt+1, delay); err != nil {
		return out, fmt.Errorf("%w (after the checkpoint store failed: %v)", err, cause)
	}
	out.RetryAfter, out.Why = delay, "checkpoint storage failed"
	log.Warn("resync step re-enqueued: the checkpoint store failed", "retry_after", delay.String(), "attempt", m.Attempt+1, "err", cause)
	return out, nil
}

func (r *Runner) backoff(attempt int) time.Duration {
	return backoff.Step(r.BackoffBase, r.BackoffMax, attempt)
}
