package resync

import (
	"context"
	"errors"
	"fmt"
	"github.com/graphwebhooks/graph-webhooks-go/internal/backoff"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/checkpoint"
	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

// StepResult says what one Step did.
type StepResult struct {
	PassID string
	Page   int // the page handled, counted from 1 within the pass; 0 when none was
	Events int // events written
	Full   bool
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
		return fmt.Sprintf("resync pass %s completed: page %d, %d event(s)", s.PassID, s.Page, s.Events)
	}
	return fmt.Sprintf("resync pass %s page %d: %d event(s), continuing", s.PassID, s.Page, s.Events)
}

// Step handles one `kind: resync` message: one delta page (see the package documentation). An error means
// the invocation should fail so that the host redelivers the message; every outcome that waiting or
// dropping handles better is a nil error with the StepResult saying what happened.
func (r *Runner) Step(ctx context.Context, m *message.Message) (StepResult, error) {
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
	log = log.With("pass", c.Pass)
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
	cp, etag, err := st.Load(ctx, r.cfg.Resource)
	if err != nil {
		return StepResult{}, err
	}
	out := StepResult{PassID: c.Pass}
	p := cp.Pass
	switch {
	case p == nil || p.ID != c.Pass:
		out.Stale, out.Why = true, "its pass is over or was superseded"
		log.Info("resync message dropped: " + out.Why)
		return out, nil
	case c.Link != p.Link:
		if c.Link == p.Prev && !c.Resent {
			// The step that moved the checkpoint to p.Link was redelivered: its process may have died before
			// enqueueing the continuation. Re-send it; a duplicate is dropped as stale later.
			if err := r.enqueueContinuation(ctx, q, Continuation{Pass: p.ID, Link: p.Link, Resent: true}, 0, 0); err != nil {
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
	page, err := r.fetch(work, log, g, &cp)
	out.Full = p.Full
	if err != nil {
		// An expired link restarts the pass as full; a full or latest start cannot expire.
		if errors.Is(err, graph.ErrResyncRequired) && (link != "" || !p.Full) {
			return r.restart(ctx, log, st, q, cp, etag, out, err)
		}
		return r.retryOrFail(ctx, log, st, q, cp, etag, m, c, out, err)
	}
	if page.NextLink == "" && page.DeltaLink == "" {
		return out, errors.New("resync: Graph returned a delta page with neither a nextLink nor a deltaLink")
	}
	source := message.SourceResync
	if p.Full {
		source = message.SourceFullSync
	}
	events, err := r.events(work, log, g, page.Users, source, p.ID, link)
	if err != nil {
		return r.retryOrFail(ctx, log, st, q, cp, etag, m, c, out, err)
	}
	// 1. The events are durable before the checkpoint moves.
	if err := r.emit(ctx, q, events); err != nil {
		return out, err
	}
	out.Events = len(events)

	// 2. Move the checkpoint, guarded by the ETag it was read with.
	now := r.now()
	p.Pages++
	p.Events += len(events)
	p.Updated, p.Wait = now, time.Time{}
	if page.NextLink != "" {
		p.Prev, p.Link = p.Link, page.NextLink
	} else {
		last := *p
		last.Link, last.Prev, last.Again = "", "", ""
		cp.DeltaLink, cp.SelectHash, cp.LastCompleted = page.DeltaLink, p.SelectHash, now
		cp.LastPass, cp.Pass = &last, nil
		if p.Again != "" {
			// A request arrived during this pass: the follow-up starts from the deltaLink just stored, in
			// the same write, so it cannot be lost between two saves.
			cp.Pass = &checkpoint.Pass{ID: r.newID(now), Reason: "requested during pass " + p.ID + ": " + p.Again, Started: now, Updated: now}
		}
		out.Done = true
	}
	if _, err := r.save(ctx, st, cp, etag); err != nil {
		if !errors.Is(err, checkpoint.ErrConflict) {
			return out, err
		}
		out.Conflict, out.Done = true, false
		log.Info("resync: another worker advanced the checkpoint first; this step stops", "events", len(events))
		return out, nil
	}

	// 3. Hand the next page to the next invocation.
	if out.Done {
		log.Info("resync pass completed", "pages", p.Pages, "events", p.Events, "full", p.Full,
			"took", now.Sub(p.Started).Round(time.Second).String(), "reason", p.Reason)
		if next := cp.Pass; next != nil {
			// If this enqueue fails, the follow-up pass stalls and the next Request or timer tick resumes it.
			if err := r.enqueueContinuation(ctx, q, Continuation{Pass: next.ID}, 0, 0); err != nil {
				return out, err
			}
			log.Info("resync follow-up pass started", "pass", next.ID, "reason", next.Reason)
		}
		return out, nil
	}
	if err := r.enqueueContinuation(ctx, q, Continuation{Pass: p.ID, Link: p.Link}, 0, 0); err != nil {
		// The host redelivers this message; its link is now the pass's Prev, so the retry re-sends.
		return out, err
	}
	log.Info("resync page done", "events", len(events))
	return out, nil
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
func (r *Runner) fetch(ctx context.Context, log *slog.Logger, g Graph, cp *checkpoint.Checkpoint) (graph.DeltaPage, error) {
	p := cp.Pass
	if p.Link != "" {
		return g.Delta(ctx, p.Link)
	}
	sel := r.cfg.UserSelect
	hash := checkpoint.SelectHash(sel)
	switch {
	case p.Full:
	case cp.DeltaLink == "":
		p.Full = true
		p.Reason += "; no starting point stored"
		log.Warn("resync: no delta link is stored: running a full pass")
	case cp.SelectHash != hash:
		p.Full = true
		p.Reason += "; GRAPH_USER_SELECT changed"
		log.Warn("resync: GRAPH_USER_SELECT differs from the stored delta link's: running a full pass")
	}
	if p.Full {
		p.SelectHash = hash
		return g.DeltaStart(ctx, sel, false)
	}
	p.SelectHash = cp.SelectHash
	return g.Delta(ctx, cp.DeltaLink)
}

// restart turns the pass into a full pass from the beginning, after Graph said its link expired.
func (r *Runner) restart(ctx context.Context, log *slog.Logger, st Store, q Queue, cp checkpoint.Checkpoint, etag checkpoint.ETag, out StepResult, cause error) (StepResult, error) {
	p := cp.Pass
	p.Restarts++
	if p.Restarts > MaxRestarts {
		return out, fmt.Errorf("resync: delta links expired %d times in one pass: %w", p.Restarts, cause)
	}
	log.Warn("resync: the delta link expired (syncStateNotFound or 410 Gone): restarting as a full pass", "err", cause)
	p.Full = true
	p.Prev, p.Link = p.Link, ""
	p.Reason += "; delta link expired"
	p.Updated, p.Wait = r.now(), time.Time{}
	out.Full = true
	if _, err := r.save(ctx, st, cp, etag); err != nil {
		if errors.Is(err, checkpoint.ErrConflict) {
			out.Conflict = true
			return out, nil
		}
		return out, err
	}
	if err := r.enqueueContinuation(ctx, q, Continuation{Pass: p.ID}, 0, 0); err != nil {
		return out, err
	}
	out.Restarted = true
	return out, nil
}

// retryOrFail re-enqueues the same step after a throttled or transient failure, and returns any other
// failure. The checkpoint's link does not move; the pass's Wait records the delay, so it is not taken for
// stalled, and the ETag-guarded write makes sure only the current holder of the step re-enqueues it.
func (r *Runner) retryOrFail(ctx context.Context, log *slog.Logger, st Store, q Queue, cp checkpoint.Checkpoint, etag checkpoint.ETag, m *message.Message, c Continuation, out StepResult, cause error) (StepResult, error) {
	var delay time.Duration
	switch graph.KindOf(cause) {
	case graph.KindThrottled:
		out.Why = "throttled by Graph"
		delay = graph.RetryAfterOf(cause)
		if delay <= 0 {
			delay = r.backoff(m.Attempt)
		}
	case graph.KindTransient:
		out.Why = "Graph failed transiently"
		delay = r.backoff(m.Attempt)
	default:
		if ctx.Err() == nil && errors.Is(cause, context.DeadlineExceeded) {
			out.Why = "out of time"
			delay = r.BackoffBase
			break
		}
		return out, cause
	}
	cp.Pass.Wait = r.now().Add(delay)
	if _, err := r.save(ctx, st, cp, etag); err != nil {
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

func (r *Runner) backoff(attempt int) time.Duration {
	return backoff.Step(r.BackoffBase, r.BackoffMax, attempt)
}

// userState is where a user of the page stands.
type userState struct {
	id      string
	u       graph.User // from delta, then from $batch
	removed string     // "", "changed" (soft-deleted) or "deleted"
	gone    bool       // not found by $batch: removed after the delta round was taken
	user    map[string]any
	last    int // index of the last occurrence in the page
}

// events turns a delta page into events: one per user, the last occurrence winning.
func (r *Runner) events(ctx context.Context, log *slog.Logger, g Graph, users []graph.User, source message.Source, passID, link string) ([]message.Event, error) {
	sel := r.cfg.UserSelect
	only := ""
	if coll, id, ok := strings.Cut(r.cfg.Resource, "/"); ok && strings.EqualFold(coll, "users") {
		only = id
	}
	byID := map[string]*userState{}
	var states []*userState
	for i, u := range users {
		id := u.ID()
		if id == "" {
			log.Warn("resync: a delta entry without an id was skipped")
			continue
		}
		if only != "" && !strings.EqualFold(id, only) && !strings.EqualFold(fmt.Sprint(u["userPrincipalName"]), only) {
			continue
		}
		k := strings.ToLower(id)
		s := byID[k]
		if s == nil {
			s = &userState{id: id}
			byID[k] = s
			states = append(states, s)
		}
		s.u, s.removed, s.last = u, u.Removed(), i
	}
	slices.SortFunc(states, func(a, b *userState) int { return a.last - b.last })

	// Users whose delta entry lacks selected properties are read in full, 20 per $batch.
	var partial []*userState
	for _, s := range states {
		if s.removed == "" && !complete(s.u, sel) {
			partial = append(partial, s)
		}
	}
	for chunk := range slices.Chunk(partial, graph.MaxBatch) {
		ids := make([]string, len(chunk))
		for i, s := range chunk {
			ids[i] = s.id
		}
		res, err := g.GetUsers(ctx, ids, sel)
		if err != nil {
			return nil, err
		}
		var retry error
		for i, it := range res.Items {
			s := chunk[i]
			switch {
			case it.Err == nil:
				s.u = it.User
			case errors.Is(it.Err, graph.ErrNotFound):
				s.gone = true
			case errors.Is(it.Err, graph.ErrThrottled):
				retry = &graph.Error{Op: "get users", Kind: graph.KindThrottled, RetryAfter: res.RetryAfter, Err: it.Err}
			case errors.Is(it.Err, graph.ErrTransient) || graph.KindOf(it.Err) == graph.KindOther:
				if retry == nil {
					retry = &graph.Error{Op: "get users", Kind: graph.KindTransient, Err: it.Err}
				}
			default:
				return nil, it.Err
			}
		}
		if retry != nil {
			return nil, retry
		}
	}

	// Soft-deleted users, and users gone since the round, are looked up in deletedItems for their properties.
	if err := r.lookUpDeleted(ctx, log, g, states); err != nil {
		return nil, err
	}

	now := r.now().UTC().Truncate(time.Second)
	out := make([]message.Event, 0, len(states))
	for _, s := range states {
		e := message.Event{V: message.Version, Source: source, Resource: "users", ResourceID: s.id,
			TenantID: r.cfg.TenantID, ObservedAt: now}
		switch {
		case s.removed == "changed":
			e.ChangeType, e.SoftDeleted, e.User = "deleted", true, s.user
		case s.removed != "":
			e.ChangeType = "deleted"
		case s.gone && s.user != nil: // soft-deleted since the round was taken
			e.ChangeType, e.SoftDeleted, e.User = "deleted", true, s.user
		case s.gone:
			// Readable neither in /users nor in deletedItems: a new user still replicating (reference §6), or
			// one deleted for good since the round. Report what delta returned, not a deletion that may be
			// false; a real deletion comes back in the next round as @removed.
			e.ChangeType, e.User = "updated", s.u.Project(sel)
			log.Info("resync: user not readable now; reporting the properties delta returned", "id", s.id)
		default:
			e.ChangeType, e.User = "updated", s.u.Project(sel)
		}
		e.ID = eventID(source, r.cfg.TenantID, s.id, e.ChangeType, e.SoftDeleted, passID, link)
		out = append(out, e)
	}
	return out, nil
}

// lookUpDeleted reads soft-deleted and vanished users from deletedItems, deletedLookups at a time, when
// the Graph client can. A user not found there has no properties (nil); throttling and transient failures
// are returned so the step is retried; anything else leaves the user without properties, with a warning.
func (r *Runner) lookUpDeleted(ctx context.Context, log *slog.Logger, g Graph, states []*userState) error {
	dg, ok := g.(DeletedUserGetter)
	if !ok {
		return nil
	}
	var todo []*userState
	for _, s := range states {
		if s.removed == "changed" || s.gone {
			todo = append(todo, s)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	sel := r.cfg.UserSelect
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		retry error
		sem   = make(chan struct{}, deletedLookups)
	)
	for _, s := range todo {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			u, err := dg.GetDeletedUser(ctx, s.id, sel)
			switch {
			case err == nil:
				s.user = u.Project(sel)
			case errors.Is(err, graph.ErrNotFound):
			case errors.Is(err, graph.ErrThrottled), errors.Is(err, graph.ErrTransient):
				mu.Lock()
				if retry == nil || errors.Is(err, graph.ErrThrottled) && graph.RetryAfterOf(err) > graph.RetryAfterOf(retry) {
					retry = err
				}
				mu.Unlock()
			default:
				log.Warn("resync: could not read a deleted user's properties; its event carries none", "id", s.id, "err", err)
			}
		})
	}
	wg.Wait()
	return retry
}
