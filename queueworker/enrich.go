package queueworker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/backoff"
	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/customhandler"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
	"github.com/graphwebhooks/graph-webhooks-go/internal/storagequeue"
)

// user is the work for one changed user of a message: every notification about it, and the outcome.
type user struct {
	id      string // resource id as the first notification gave it
	notes   []int  // indexes into the message's notifications
	deleted bool   // a permanent deletion among them: no lookup

	event      *message.Event
	why        reason // when left for later
	retryAfter time.Duration
	refused    error // Graph refused to read this user for good: its notifications go to poison alone
}

// tally counts what an invocation did, for its Logs line.
type tally struct {
	updated, softDeleted, deleted, gone int
	foreign, unusable                   int
}

// prepare checks the settings every kind of work needs, and puts back a message whose notBefore lies ahead
// (deferred) without touching Graph.
func (f *Function) prepare(ctx context.Context, log *slog.Logger, m *message.Message, what string) (resp *customhandler.Response, deferred bool, err error) {
	if err := f.d.Config.Check(config.TenantID, config.ClientID, config.Storage); err != nil {
		return nil, false, fmt.Errorf("cannot %s: %w", what, err)
	}
	resp = &customhandler.Response{}
	now := f.now()
	if m.NotBefore == nil || m.NotBefore.Sub(now) <= notBeforeTolerance {
		return resp, false, nil
	}
	line, err := f.requeue(ctx, log, m, retry{notes: allIndexes(m), why: reasonGate, delay: m.NotBefore.Sub(now), sameTry: true})
	if err != nil {
		return nil, true, err
	}
	resp.Logs = []string{"not due yet: " + line}
	return resp, true, nil
}

func (f *Function) notifications(ctx context.Context, log *slog.Logger, m *message.Message) (*customhandler.Response, error) {
	resp, deferred, err := f.prepare(ctx, log, m, "enrich notifications")
	if err != nil || deferred {
		return resp, err
	}
	now := f.now()

	var t tally
	users, unusable := f.coalesce(m, &t)
	var logs []string
	if len(unusable) > 0 {
		if err := f.poisonNotes(ctx, log, m, unusable); err != nil {
			return nil, err
		}
		logs = append(logs, fmt.Sprintf("moved %d unusable notifications to the poison queue", len(unusable)))
	}

	var lookups []*user
	for _, u := range users {
		if u.deleted {
			f.finish(u, m, "deleted", false, nil, now)
			t.deleted++
			continue
		}
		lookups = append(lookups, u)
	}
	if len(lookups) > 0 {
		if err := f.lookUp(ctx, log, m, lookups, &t); err != nil {
			return nil, err
		}
	}

	// A user Graph refused to read (while it read the others) must not hold the rest hostage: its
	// notifications go to the poison queue on their own, with the reason in the log.
	var refused []int
	for _, u := range users {
		if u.refused != nil {
			refused = append(refused, u.notes...)
			log.Error("Graph refused to read a user; its notifications go to the poison queue", "user", u.id, "err", u.refused.Error())
		}
	}
	if len(refused) > 0 {
		slices.Sort(refused)
		if err := f.poisonNotes(ctx, log, m, refused); err != nil {
			return nil, err
		}
		logs = append(logs, fmt.Sprintf("moved %d notifications of users Graph refused to read to the poison queue", len(refused)))
	}

	var events []message.Event
	var rest retry
	for _, u := range users {
		if u.event != nil {
			events = append(events, *u.event)
			continue
		}
		if u.refused != nil {
			continue
		}
		rest.notes = append(rest.notes, u.notes...)
		rest.why = max(rest.why, u.why)
		d := f.delayFor(u, m.Attempt)
		rest.delay = max(rest.delay, d)
	}
	if len(rest.notes) > 0 {
		rest.sameTry = rest.why == reasonGate
		slices.Sort(rest.notes)
		line, err := f.requeue(ctx, log, m, rest)
		if err != nil {
			return nil, err
		}
		logs = append(logs, line)
	}
	if t.foreign > 0 {
		log.Warn("dropped notifications of another tenant", "count", t.foreign)
		logs = append(logs, fmt.Sprintf("dropped %d notifications of another tenant", t.foreign))
	}
	if len(events) > 0 {
		resp.SetOutput(ChangesOutput, events)
	}
	resp.Logs = []string{fmt.Sprintf("%d events (%d updated, %d soft-deleted, %d deleted, %d not found) from %d notifications, attempt %d",
		len(events), t.updated, t.softDeleted, t.deleted, t.gone, len(m.Notifications), m.Attempt)}
	resp.Logs = append(resp.Logs, logs...)
	return resp, nil
}

// delayFor is how long unfinished work waits: exactly Graph's Retry-After when it gave one (or the gate's
// remaining time when nothing was tried), as Graph asks (reference §7: waiting longer only delays the
// change, waiting less burns budget); otherwise the backoff step for the attempt.
func (f *Function) delayFor(u *user, attempt int) time.Duration {
	if u.retryAfter > 0 || u.why == reasonGate {
		return u.retryAfter
	}
	return backoff.Step(f.backoffBase, f.backoffMax, attempt)
}

func allIndexes(m *message.Message) []int {
	out := make([]int, len(m.Notifications))
	for i := range out {
		out[i] = i
	}
	return out
}

// coalesce groups the notifications by user, in order of first appearance, and sets aside those that cannot
// be processed. Notifications of another tenant are dropped (the webhook drops them too).
func (f *Function) coalesce(m *message.Message, t *tally) (users []*user, unusable []int) {
	byID := map[string]*user{}
	for i := range m.Notifications {
		n := &m.Notifications[i]
		if tenant := n.Tenant(); tenant != "" && !strings.EqualFold(tenant, f.d.Config.TenantID) {
			t.foreign++
			continue
		}
		id := n.ResourceID()
		ct := strings.ToLower(n.ChangeType)
		if id == "" || id == "." || id == ".." || n.IsLifecycle() || (ct != "updated" && ct != "created" && ct != "deleted") {
			unusable = append(unusable, i)
			continue
		}
		key := strings.ToLower(id)
		u := byID[key]
		if u == nil {
			u = &user{id: id}
			byID[key] = u
			users = append(users, u)
		}
		u.notes = append(u.notes, i)
		u.deleted = u.deleted || ct == "deleted"
	}
	t.unusable = len(unusable)
	return users, unusable
}

// poisonNotes moves notifications that cannot be processed to the poison queue as a message of their own.
func (f *Function) poisonNotes(ctx context.Context, log *slog.Logger, m *message.Message, idx []int) error {
	out := message.Message{V: message.Version, Kind: m.Kind, ValidationTokens: m.ValidationTokens, Attempt: m.Attempt, FirstSeen: m.FirstSeen}
	for _, i := range idx {
		out.Notifications = append(out.Notifications, m.Notifications[i])
	}
	text, err := json.Marshal(out)
	if err != nil {
		return fmt.Errorf("encoding unusable notifications: %w", err)
	}
	poison := storagequeue.PoisonQueue(f.queue)
	if err := f.put(ctx, poison, text, 0); err != nil {
		return fmt.Errorf("moving %d unusable notifications to %s: %w", len(idx), poison, err)
	}
	log.Error("notifications without a usable resource id or changeType moved to the poison queue", "queue", poison, "count", len(idx))
	return nil
}

// finish records the event for u.
func (f *Function) finish(u *user, m *message.Message, changeType string, softDeleted bool, props graph.User, now time.Time) {
	notes := make([]graph.ChangeNotification, len(u.notes))
	for i, j := range u.notes {
		notes[i] = m.Notifications[j]
	}
	tenant := f.d.Config.TenantID
	e := message.Event{
		V:           message.Version,
		ID:          eventID(message.SourceNotification, tenant, u.id, changeType, softDeleted, notes),
		Source:      message.SourceNotification,
		ChangeType:  changeType,
		SoftDeleted: softDeleted,
		Resource:    "users",
		ResourceID:  u.id,
		TenantID:    tenant,
		ObservedAt:  now.UTC().Truncate(time.Second),
		User:        props.Project(f.d.Config.UserSelect),
	}
	if sub := notes[0].SubscriptionID; sub != "" {
		e.SubscriptionID = &sub
	}
	u.event = &e
}

// later leaves u for a later attempt.
func (u *user) later(why reason, retryAfter time.Duration) {
	u.why, u.retryAfter = why, retryAfter
}

// lookUp reads the users with $batch, and those not found from deletedItems. Throttled and transient
// failures leave users for later; other failures are returned.
func (f *Function) lookUp(ctx context.Context, log *slog.Logger, m *message.Message, users []*user, t *tally) error {
	if wait := f.gate.Remaining(f.now()); wait > 0 {
		for _, u := range users {
			u.later(reasonGate, wait)
		}
		return nil
	}
	if f.d.Graph == nil {
		return errors.New("no Graph client is wired into the queue worker")
	}
	client, err := f.d.Graph()
	if err != nil {
		return fmt.Errorf("graph client: %w", err)
	}
	work, cancel := f.workContext(ctx)
	defer cancel()
	sel := f.d.Config.UserSelect

	var missing []*user
	for start := 0; start < len(users); start += graph.MaxBatch {
		chunk := users[start:min(start+graph.MaxBatch, len(users))]
		if stop, err := f.stopping(work, chunk); err != nil {
			return err
		} else if stop {
			continue
		}
		if wait := f.gate.Remaining(f.now()); start > 0 && wait > 0 {
			for _, u := range chunk { // an earlier batch of this message was throttled
				u.later(reasonGate, wait)
			}
			continue
		}
		ids := make([]string, len(chunk))
		for i, u := range chunk {
			ids[i] = u.id
		}
		res, err := client.GetUsers(work, ids, sel)
		if err != nil {
			why, ra := retryable(err)
			if why == reasonNone {
				return fmt.Errorf("reading %d users: %w", len(ids), err)
			}
			f.throttled(why, ra)
			for _, u := range chunk {
				u.later(why, ra)
			}
			log.Warn("user batch failed; will retry", "reason", why.String(), "error", err.Error())
			continue
		}
		if res.RetryAfter > 0 {
			f.gate.CloseUntil(f.now().Add(res.RetryAfter))
		}
		now := f.now()
		refused := 0
		for i, it := range res.Items {
			u := chunk[i]
			switch {
			case it.Err == nil:
				f.finish(u, m, "updated", false, it.User, now)
				t.updated++
			case graph.KindOf(it.Err) == graph.KindNotFound:
				missing = append(missing, u)
			default:
				why, ra := retryable(it.Err)
				if why == reasonNone {
					u.refused = it.Err
					refused++
					continue
				}
				if why == reasonThrottled && ra == 0 {
					ra = res.RetryAfter
				}
				f.throttled(why, ra)
				u.later(why, ra)
			}
		}
		if refused == len(res.Items) {
			// Every read refused alike is no bad user but a bad setting (GRAPH_USER_SELECT) or permission:
			// fail, so the host retries and the message is kept.
			return fmt.Errorf("reading %d users: Graph refused every one: %w", len(ids), res.Items[0].Err)
		}
	}
	if len(missing) > 0 {
		return f.lookUpDeleted(work, m, client, missing, t)
	}
	return nil
}

// stopping leaves the users for later when the work context is over (the invocation's deadline is near).
// A cancelled invocation is an error: the host is gone or stopping.
func (f *Function) stopping(work context.Context, users []*user) (stop bool, err error) {
	switch err := work.Err(); {
	case err == nil:
		return false, nil
	case errors.Is(err, context.DeadlineExceeded):
		for _, u := range users {
			u.later(reasonTransient, 0)
		}
		return true, nil
	default:
		return true, err
	}
}

// throttled closes the gate for a throttled answer: for its Retry-After, or one backoff step without one.
func (f *Function) throttled(why reason, retryAfter time.Duration) {
	if why != reasonThrottled {
		return
	}
	if retryAfter <= 0 {
		retryAfter = f.backoffBase
	}
	f.gate.CloseUntil(f.now().Add(retryAfter))
}

// lookUpDeleted reads users that /users did not find from deletedItems, a few at a time.
func (f *Function) lookUpDeleted(work context.Context, m *message.Message, client *graph.Client, users []*user, t *tally) error {
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
		sem   = make(chan struct{}, deletedLookups)
	)
	sel := f.d.Config.UserSelect
	for _, u := range users {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			// The gate is not consulted here: these few reads finish users this invocation has
			// already read once, even when other users of its batch were throttled.
			if err := work.Err(); err != nil {
				u.later(reasonTransient, 0)
				return
			}
			props, err := client.GetDeletedUser(work, u.id, sel)
			now := f.now()
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				f.finish(u, m, "deleted", true, props, now)
				t.softDeleted++
			case graph.KindOf(err) == graph.KindNotFound:
				// Attempts spent on throttling or failures are no replication wait: keep retrying until the
				// message is as old as the ReplicationRetries backoff steps add up to.
				if m.Attempt < ReplicationRetries || (!m.FirstSeen.IsZero() && now.Sub(m.FirstSeen) < f.replicationWindow()) {
					u.later(reasonNotFound, 0)
					return
				}
				f.finish(u, m, "deleted", false, nil, now)
				t.gone++
			default:
				why, ra := retryable(err)
				if why == reasonNone {
					if first == nil {
						first = fmt.Errorf("reading deleted user %s: %w", u.id, err)
					}
					return
				}
				f.throttled(why, ra)
				u.later(why, ra)
			}
		}()
	}
	wg.Wait()
	return first
}

// replicationWindow is how long the backoff steps of ReplicationRetries attempts add up to (30 + 60 + 120 s):
// a user found nowhere is retried at least that long after its message was first seen, however many attempts
// throttling or transient failures used up before it was first looked for.
func (f *Function) replicationWindow() time.Duration {
	var d time.Duration
	for i := range ReplicationRetries {
		d += backoff.Step(f.backoffBase, f.backoffMax, i)
	}
	return d
}
