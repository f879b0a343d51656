package resync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/backoff"
	"github.com/graphwebhooks/graph-webhooks-go/internal/directory"
	"github.com/graphwebhooks/graph-webhooks-go/internal/events"

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
		return fmt.Sprintf("resync %s pass %s completed: page %d, %d event(s), %d suppressed as carrying nothing new", s.Collection, s.PassID, s.Page, s.Events, s.Suppressed)
	}
	return fmt.Sprintf("resync %s pass %s page %d: %d event(s), %d suppressed as carrying nothing new, continuing", s.Collection, s.PassID, s.Page, s.Events, s.Suppressed)
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
	kind, ok := directory.ByCollection(c.collection())
	if !ok {
		log.Error("resync message dropped: unknown collection", "collection", c.Collection)
		return StepResult{Stale: true, Why: "unknown collection"}, nil
	}
	log = log.With("pass", c.Pass, "collection", kind.Collection)
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
	out := StepResult{PassID: c.Pass, Collection: kind.Collection}
	cp, etag, err := st.Load(ctx, kind.Collection)
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
		if c.Link == p.Prev && !c.Resent {
			// The step that moved the checkpoint to p.Link was redelivered: its process may have died before
			// enqueueing the continuation. Re-send it; a duplicate is dropped as stale later.
			if err := r.enqueueContinuation(ctx, q, Continuation{Collection: kind.Collection, Pass: p.ID, Link: p.Link, Resent: true}, 0, 0); err != nil {
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
	page, err := r.fetch(work, log, g, kind, &cp)
	out.Full = p.Full
	if err != nil {
		// An expired link restarts the pass as full; a full or latest start cannot expire.
		if errors.Is(err, graph.ErrResyncRequired) && (link != "" || !p.Full) {
			return r.restart(ctx, log, st, q, kind, cp, etag, out, err)
		}
		return r.retryOrFail(ctx, log, st, q, kind, cp, etag, m, c, out, err)
	}
	if page.NextLink == "" && page.DeltaLink == "" {
		return out, errors.New("resync: Graph returned a delta page with neither a nextLink nor a deltaLink")
	}
	source := message.SourceResync
	if p.Full {
		source = message.SourceFullSync
	}
	items, carry, err := r.events(work, log, g, kind, page.Objects, p.Carry, page.NextLink != "", source, p.ID, link)
	if err != nil {
		return r.retryOrFail(ctx, log, st, q, kind, cp, etag, m, c, out, err)
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
	cp, err = r.advance(ctx, st, kind.Collection, cp, etag, p.ID, link, func(cp *checkpoint.Checkpoint) {
		p := cp.Pass
		p.Full, p.Reason, p.SelectHash = full, reason, selHash
		p.Pages++
		p.Events += written.Written
		p.Updated, p.Wait, p.Carry = now, time.Time{}, carry
		if page.NextLink != "" {
			p.Prev, p.Link = p.Link, page.NextLink
			return
		}
		last := *p
		last.Link, last.Prev, last.Again = "", "", ""
		cp.DeltaLink, cp.SelectHash, cp.LastCompleted = page.DeltaLink, p.SelectHash, now
		cp.LastPass, cp.Pass = &last, nil
		if p.Again != "" {
			// A request arrived during this pass: the follow-up starts from the deltaLink just stored, in
			// the same write, so it cannot be lost between two saves.
			cp.Pass = &checkpoint.Pass{ID: r.newID(now), Reason: "requested during pass " + p.ID + ": " + p.Again, Started: now, Updated: now}
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
			if err := r.enqueueContinuation(ctx, q, Continuation{Collection: kind.Collection, Pass: next.ID}, 0, 0); err != nil {
				return out, err
			}
			log.Info("resync follow-up pass started", "pass", next.ID, "reason", next.Reason)
		}
		return out, nil
	}
	if err := r.enqueueContinuation(ctx, q, Continuation{Collection: kind.Collection, Pass: p.ID, Link: p.Link}, 0, 0); err != nil {
		// The host redelivers this message; its link is now the pass's Prev, so the retry re-sends.
		return out, err
	}
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
func (r *Runner) fetch(ctx context.Context, log *slog.Logger, g Graph, kind directory.Kind, cp *checkpoint.Checkpoint) (graph.DeltaPage, error) {
	p := cp.Pass
	if p.Link != "" {
		return g.Delta(ctx, p.Link)
	}
	sel := r.deltaSelect(kind)
	hash := checkpoint.SelectHash(sel)
	setting := config.SelectSetting(kind.Collection)
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
		return g.DeltaStart(ctx, kind.Collection, sel, false)
	}
	p.SelectHash = cp.SelectHash
	return g.Delta(ctx, cp.DeltaLink)
}

// restart turns the pass into a full pass from the beginning, after Graph said its link expired.
func (r *Runner) restart(ctx context.Context, log *slog.Logger, st Store, q Queue, kind directory.Kind, cp checkpoint.Checkpoint, etag checkpoint.ETag, out StepResult, cause error) (StepResult, error) {
	if cp.Pass.Restarts+1 > MaxRestarts {
		return out, fmt.Errorf("resync: delta links expired %d times in one pass: %w", cp.Pass.Restarts+1, cause)
	}
	log.Warn("resync: the delta link expired (syncStateNotFound or 410 Gone): restarting as a full pass", "err", cause)
	out.Full = true
	now := r.now()
	cp, err := r.advance(ctx, st, kind.Collection, cp, etag, cp.Pass.ID, cp.Pass.Link, func(cp *checkpoint.Checkpoint) {
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
	if err := r.enqueueContinuation(ctx, q, Continuation{Collection: kind.Collection, Pass: cp.Pass.ID}, 0, 0); err != nil {
		return out, err
	}
	out.Restarted = true
	return out, nil
}

// retryOrFail re-enqueues the same step after a throttled or transient failure, and returns any other
// failure. The checkpoint's link does not move; the pass's Wait records the delay, so it is not taken for
// stalled, and the ETag-guarded write makes sure only the current holder of the step re-enqueues it.
func (r *Runner) retryOrFail(ctx context.Context, log *slog.Logger, st Store, q Queue, kind directory.Kind, cp checkpoint.Checkpoint, etag checkpoint.ETag, m *message.Message, c Continuation, out StepResult, cause error) (StepResult, error) {
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
	if _, err := r.advance(ctx, st, kind.Collection, cp, etag, cp.Pass.ID, cp.Pass.Link, func(cp *checkpoint.Checkpoint) { cp.Pass.Wait = wait }); err != nil {
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

// MaxMembersPerEvent bounds the member ids one event carries, so that an event stays far below a queue
// message's 64 KiB; a larger membership change is split over several events with the same properties.
const MaxMembersPerEvent = 1000

// maxCarryMembers bounds the member ids carried from one page to the next in the checkpoint: a group whose
// change is larger is reported in parts instead.
const maxCarryMembers = 10000

// entry is where one object of the page stands.
type entry struct {
	id      string
	obj     graph.Object // from delta, then from $batch
	removed string       // "", "changed" (soft-deleted) or "deleted"
	members *message.Members
	read    *directory.Read
	last    int // index of the last occurrence in the page (-1: carried from the previous page)
}

// events turns a delta page into events: one per object (a large membership change in parts), the
// entries of an object merged in page order. When more pages follow, a group that ends the page may go on
// at the start of the next one: it is returned as the carry instead, and reported where it ends.
func (r *Runner) events(ctx context.Context, log *slog.Logger, g Graph, kind directory.Kind, objs []graph.Object,
	carry *checkpoint.Carry, more bool, source message.Source, passID, link string) ([]events.Item, *checkpoint.Carry, error) {
	sel := r.cfg.Select(kind.Collection)
	only := r.cfg.Only(kind.Collection)
	byID := map[string]*entry{}
	var entries []*entry
	if carry != nil {
		e := &entry{id: carry.ID, obj: graph.Object(carry.Object), last: -1}
		if len(carry.Added)+len(carry.Removed) > 0 {
			e.members = &message.Members{Added: carry.Added, Removed: carry.Removed}
		}
		byID[strings.ToLower(carry.ID)] = e
		entries = append(entries, e)
	}
	skipped := 0
	for i, o := range objs {
		id := o.ID()
		if !graph.IsGUID(id) {
			skipped++
			continue
		}
		if only != nil && !only[strings.ToLower(id)] {
			continue
		}
		k := strings.ToLower(id)
		e := byID[k]
		if e == nil {
			e = &entry{id: id}
			byID[k] = e
			entries = append(entries, e)
		}
		e.last = i
		if o.Removed() != "" {
			e.obj, e.removed = o, o.Removed()
			continue
		}
		if e.removed != "" || e.obj == nil {
			e.obj, e.removed = graph.Object{}, ""
		}
		maps.Copy(e.obj, o) // a later entry of the same object adds to, and overrides, an earlier one
		if kind == directory.Groups {
			e.members = directory.MergeMembers(e.members, directory.MembersDelta(o["members@delta"]))
		}
	}
	if skipped > 0 {
		log.Warn("resync: delta entries whose id is not an object id (a GUID) were skipped", "count", skipped)
	}
	slices.SortFunc(entries, func(a, b *entry) int { return a.last - b.last })

	var next *checkpoint.Carry
	if more && kind == directory.Groups && len(entries) > 0 {
		if e := entries[len(entries)-1]; e.removed == "" && e.last >= 0 && e.last == len(objs)-1 && membersCount(e.members) <= maxCarryMembers {
			next = &checkpoint.Carry{ID: e.id, Object: e.obj}
			if e.members != nil {
				next.Added, next.Removed = e.members.Added, e.members.Removed
			}
			entries = entries[:len(entries)-1]
		}
	}

	// Objects whose entry lacks selected properties are read in full; soft-deleted ones are looked up in
	// deletedItems for their properties.
	var reqs []directory.Request
	var asked []*entry
	for _, e := range entries {
		switch {
		case e.removed == "changed":
			reqs = append(reqs, directory.Request{ID: e.id, Probe: directory.DeletedOnly})
		case e.removed == "" && !complete(e.obj, sel):
			reqs = append(reqs, directory.Request{ID: e.id, Probe: directory.Live})
		default:
			continue
		}
		asked = append(asked, e)
	}
	if len(reqs) > 0 {
		reader := &directory.Reader{Graph: g, Gate: r.gate, Now: r.now}
		reads, err := reader.Read(ctx, kind, sel, reqs)
		if err != nil {
			return nil, nil, err
		}
		refused := 0
		var retry *graph.Error
		for i := range reads {
			rd := &reads[i]
			asked[i].read = rd
			switch {
			case rd.Outcome == directory.Refused:
				refused++
			case rd.Outcome.Retryable():
				k := graph.KindTransient
				if rd.Outcome != directory.Transient {
					k = graph.KindThrottled
				}
				if retry == nil || rd.RetryAfter > retry.RetryAfter || k == graph.KindThrottled && retry.Kind != k {
					retry = &graph.Error{Op: "read " + kind.Collection, Kind: k, RetryAfter: rd.RetryAfter, Err: rd.Err}
				}
			}
		}
		if retry != nil {
			return nil, nil, retry
		}
		if refused == len(reads) {
			// Every read refused alike is no bad object but a bad setting or a missing permission.
			return nil, nil, fmt.Errorf("resync: Graph refused to read all %d %s: %w", refused, kind.Collection, reads[0].Err)
		}
	}

	now := r.now()
	item := func(c directory.Change) events.Item {
		return events.Item{Event: directory.NewEvent(r.cfg.TenantID, sel, c, now), ReadAt: now, Select: sel}
	}
	out := make([]events.Item, 0, len(entries))
	for _, e := range entries {
		c := directory.Change{Kind: kind, ID: e.id, Source: source, ChangeType: graph.Updated, Object: e.obj,
			Origin: []string{"resync", passID, link}}
		rd := e.read
		switch {
		case e.removed == "changed":
			c.ChangeType, c.SoftDeleted, c.Object = graph.Deleted, true, nil
			if rd != nil && rd.Outcome == directory.SoftDeleted {
				c.Object = rd.Object
			} else if rd != nil && rd.Outcome == directory.Refused {
				log.Warn("resync: could not read a deleted object's properties; its event carries none", "id", e.id, "err", rd.Err)
			}
		case e.removed != "":
			c.ChangeType, c.Object = graph.Deleted, nil
		case rd == nil:
		case rd.Outcome == directory.Found:
			c.Object = rd.Object
		case rd.Outcome == directory.SoftDeleted: // soft-deleted since the round was taken
			c.ChangeType, c.SoftDeleted, c.Object = graph.Deleted, true, rd.Object
		case rd.Outcome == directory.Gone:
			// Readable neither live nor in deletedItems: a new object still replicating, or one deleted for
			// good since the round. Report what delta returned, not a deletion that may be false; a real
			// deletion comes back in the next round as @removed.
			log.Info("resync: object not readable now; reporting the properties delta returned", "id", e.id)
		default: // refused: this object alone; the others of the page go on
			log.Warn("resync: Graph refused to read an object; reporting the properties delta returned", "id", e.id, "err", rd.Err)
		}
		if c.ChangeType == graph.Deleted || e.members == nil {
			out = append(out, item(c))
			continue
		}
		for i, part := range splitMembers(e.members, MaxMembersPerEvent) {
			pc := c
			pc.Members = part
			if i > 0 {
				pc.Origin = append(slices.Clone(c.Origin), "part", strconv.Itoa(i))
			}
			out = append(out, item(pc))
		}
	}
	return out, next, nil
}

func membersCount(m *message.Members) int {
	if m == nil {
		return 0
	}
	return len(m.Added) + len(m.Removed)
}

// splitMembers cuts a membership change into parts of at most n ids (added first, then removed).
func splitMembers(m *message.Members, n int) []*message.Members {
	var parts []*message.Members
	cur := &message.Members{Added: []string{}, Removed: []string{}}
	size := 0
	flush := func() {
		parts = append(parts, cur)
		cur, size = &message.Members{Added: []string{}, Removed: []string{}}, 0
	}
	for _, id := range m.Added {
		if size == n {
			flush()
		}
		cur.Added = append(cur.Added, id)
		size++
	}
	for _, id := range m.Removed {
		if size == n {
			flush()
		}
		cur.Removed = append(cur.Removed, id)
		size++
	}
	return append(parts, cur)
}
