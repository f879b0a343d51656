package queueworker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/backoff"
	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/customhandler"
	"github.com/graphwebhooks/graph-webhooks-go/internal/directory"
	"github.com/graphwebhooks/graph-webhooks-go/internal/events"
	"github.com/graphwebhooks/graph-webhooks-go/internal/family"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/mailbox"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
	"github.com/graphwebhooks/graph-webhooks-go/internal/storagequeue"
)

// object is the work for one changed object of a message: every notification about it, and the outcome.
type object struct {
	target  family.Target // what the first notification is about, as its family read it
	kind    directory.Kind
	id      string // resource id as the first notification gave it
	notes   []int  // indexes into the message's notifications
	deleted bool   // a permanent deletion among them: confirmed before it is believed
	created bool   // every notification about it said created (a mailbox item's first event)

	event      *message.Event
	readAt     time.Time // when Graph was read for the event; for a payload family, the content's own time
	why        reason    // when left for later
	retryAfter time.Duration
	refused    error // Graph refused to read this object for good: its notifications go to poison alone
	done       bool  // settled without an event of its own: a tap whose pass was requested, or dropped
}

// tally counts what an invocation did, for its Logs line.
type tally struct {
	updated, softDeleted, deleted, gone, notDeleted int
	foreign                                         int
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

	var t tally
	objs, unusable := f.coalesce(m, &t)
	toRead, opened, unusable, err := f.openPayloads(ctx, log, m, objs, unusable, &t)
	if err != nil {
		return nil, err
	}
	objs = append(toRead, opened...)
	var logs []string
	if line, err := f.poisonMalformed(ctx, log, m, unusable); err != nil {
		return nil, err
	} else if line != "" {
		logs = append(logs, line)
	}

	// How the worker learns what changed is the family's to say (family.Learn): read each object by id,
	// or run a delta pass over the scope a tap names (payload objects were opened above).
	var byID, taps []*object
	for _, o := range toRead {
		switch o.target.Family.Learn {
		case family.ReadByID:
			byID = append(byID, o)
		case family.DeltaOnTap:
			taps = append(taps, o)
		default:
			o.refused = fmt.Errorf("%s notifications carry their resource, and no reader of it is wired into the queue worker", o.target.Family.Name)
		}
	}
	if len(byID) > 0 {
		if err := f.read(ctx, log, m, byID, &t); err != nil {
			return nil, err
		}
	}
	if line := f.tap(ctx, log, taps); line != "" {
		logs = append(logs, line)
	}

	if line, err := f.poisonRefused(ctx, log, m, objs); err != nil {
		return nil, err
	} else if line != "" {
		logs = append(logs, line)
	}

	written, groups, line, err := f.settleObjects(ctx, log, m, objs)
	if err != nil {
		return nil, err
	}
	if line != "" {
		logs = append(logs, line)
	}
	if groups && f.d.Resync != nil {
		// A group notification may be a membership change the notification does not describe: a groups
		// delta round reports it (and collapses into a pass already running). If the request fails, the
		// daily pass still finds the change.
		if err := f.d.Resync.RequestResync(ctx, config.Groups, "group notifications"); err != nil {
			log.Warn("could not request a groups resync for membership changes", "err", err)
		}
	}
	if t.foreign > 0 {
		log.Warn("dropped notifications of another tenant", "count", t.foreign)
		logs = append(logs, fmt.Sprintf("dropped %d notifications of another tenant", t.foreign))
	}
	resp.Logs = []string{fmt.Sprintf("%d events (%d updated, %d soft-deleted, %d deleted, %d not found, %d reported deleted but live; %d suppressed as carrying nothing new) from %d notifications, attempt %d",
		written.Written, t.updated, t.softDeleted, t.deleted, t.gone, t.notDeleted, written.Suppressed, len(m.Notifications), m.Attempt)}
	resp.Logs = append(resp.Logs, logs...)
	return resp, nil
}

// poisonMalformed moves the notifications that cannot be processed to the poison queue, and returns a
// line for the invocation's Logs ("" for none).
func (f *Function) poisonMalformed(ctx context.Context, log *slog.Logger, m *message.Message, unusable []malformed) (string, error) {
	if len(unusable) == 0 {
		return "", nil
	}
	idx := make([]int, 0, len(unusable))
	whys := map[string]int{}
	for _, u := range unusable {
		idx = append(idx, u.i)
		whys[u.why]++
	}
	if err := f.poisonNotes(ctx, m, idx); err != nil {
		return "", err
	}
	for why, n := range whys {
		log.Error("malformed notifications moved to the poison queue; they never reach Graph", "reason", why, "count", n)
	}
	return fmt.Sprintf("moved %d malformed notifications to the poison queue", len(unusable)), nil
}

// poisonRefused moves the notifications of objects Graph refused to read (while it read the others) to
// the poison queue on their own, with the reason in the log: they must not hold the rest hostage.
func (f *Function) poisonRefused(ctx context.Context, log *slog.Logger, m *message.Message, objs []*object) (string, error) {
	var refused []int
	for _, o := range objs {
		if o.refused != nil {
			refused = append(refused, o.notes...)
			log.Error("Graph refused to read an object; its notifications go to the poison queue", "resource", o.kind.Collection, "id", o.id, "err", o.refused.Error())
		}
	}
	if len(refused) == 0 {
		return "", nil
	}
	slices.Sort(refused)
	if err := f.poisonNotes(ctx, m, refused); err != nil {
		return "", err
	}
	return fmt.Sprintf("moved %d notifications of objects Graph refused to read to the poison queue", len(refused)), nil
}

// settleObjects writes the events of the objects that have one, then re-enqueues the notifications of
// those left for later (events first: once they are written, a crash before the re-enqueue only repeats
// them, with the same ids). groups says whether a group's event was among them; line is the re-enqueue's
// line for the Logs ("" for none).
func (f *Function) settleObjects(ctx context.Context, log *slog.Logger, m *message.Message, objs []*object) (written events.Result, groups bool, line string, err error) {
	var items []events.Item
	var rest retry
	for _, o := range objs {
		if o.event != nil {
			items = append(items, events.Item{Event: *o.event, ReadAt: o.readAt, Select: f.d.Config.Select(o.kind.Collection)})
			groups = groups || directory.IsGroup(o.kind)
			continue
		}
		if o.refused != nil || o.done {
			continue
		}
		rest.notes = append(rest.notes, o.notes...)
		rest.why = max(rest.why, o.why)
		rest.delay = max(rest.delay, f.delayFor(o, m.Attempt))
	}
	if written, err = f.d.Events.Write(ctx, items); err != nil {
		return written, groups, "", err
	}
	if len(rest.notes) > 0 {
		rest.sameTry = rest.why == reasonGate
		slices.Sort(rest.notes)
		line, err = f.requeue(ctx, log, m, rest)
	}
	return written, groups, line, err
}

// delayFor is how long unfinished work waits: Graph's Retry-After when it gave one (or the gate's remaining
// time when nothing was tried), as Graph asks (waiting longer only delays the change, waiting less burns
// budget); otherwise the backoff step for the attempt. requeue adds the jitter.
func (f *Function) delayFor(o *object, attempt int) time.Duration {
	if o.retryAfter > 0 || o.why == reasonGate {
		return o.retryAfter
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

// malformed is a notification that cannot be processed, and why.
type malformed struct {
	i   int
	why string
}

// coalesce groups the notifications by object, in order of first appearance, and sets aside those that
// cannot be processed. Notifications of another tenant are dropped (the webhook drops them too).
func (f *Function) coalesce(m *message.Message, t *tally) (objs []*object, unusable []malformed) {
	byID := map[string]*object{}
	for i := range m.Notifications {
		n := &m.Notifications[i]
		if tenant := n.Tenant(); tenant != "" && !strings.EqualFold(tenant, f.d.Config.TenantID) {
			t.foreign++
			continue
		}
		if n.IsLifecycle() {
			unusable = append(unusable, malformed{i, "a lifecycle notification in a notifications message"})
			continue
		}
		ct, ok := graph.ParseChangeType(n.ChangeType)
		if !ok {
			unusable = append(unusable, malformed{i, "unknown changeType"})
			continue
		}
		t, ok, err := family.Route(n)
		switch {
		case err != nil:
			unusable = append(unusable, malformed{i, err.Error()})
			continue
		case !ok:
			unusable = append(unusable, malformed{i, "resource is of no family the product follows"})
			continue
		}
		o := byID[t.Key]
		if o == nil {
			o = &object{target: t, kind: t.Kind, id: t.ID, created: true}
			byID[t.Key] = o
			objs = append(objs, o)
		}
		o.created = o.created && ct == graph.Created
		o.notes = append(o.notes, i)
		o.deleted = o.deleted || ct == graph.Deleted
	}
	return objs, unusable
}

// poisonNotes moves notifications that cannot be processed to the poison queue as a message of their own.
func (f *Function) poisonNotes(ctx context.Context, m *message.Message, idx []int) error {
	out := message.Message{V: message.Version, Kind: m.Kind, ValidationTokens: m.ValidationTokens, Attempt: m.Attempt, FirstSeen: m.FirstSeen}
	for _, i := range idx {
		out.Notifications = append(out.Notifications, m.Notifications[i])
	}
	text, err := json.Marshal(out)
	if err != nil {
		return fmt.Errorf("encoding notifications for the poison queue: %w", err)
	}
	poison := storagequeue.PoisonQueue(f.queue)
	if err := f.put(ctx, poison, text, 0); err != nil {
		return fmt.Errorf("moving %d notifications to %s: %w", len(idx), poison, err)
	}
	return nil
}

// finish records the event for o.
func (f *Function) finish(o *object, m *message.Message, ct graph.ChangeType, softDeleted bool, props graph.Object, now time.Time) {
	origin := make([]string, len(o.notes))
	for i, j := range o.notes {
		origin[i] = directory.NotificationIdentity(&m.Notifications[j])
	}
	// No members: a members@delta in a group notification is a hint anyone with the clientState can write,
	// and membership is what downstream systems grant access by. It comes only from Graph, in the groups
	// delta pass every group notification requests.
	var where map[string]string
	if user, _, ok := family.MailboxOf(o.target.Scope); ok {
		where = map[string]string{family.MailboxContext: user}
	}
	e := directory.NewEvent(f.d.Config.TenantID, f.d.Config.Select(o.kind.Collection), directory.Change{
		Kind: o.kind, ID: o.id, ChangeType: ct, SoftDeleted: softDeleted, Object: props, Context: where,
		Source: message.SourceNotification, SubscriptionID: m.Notifications[o.notes[0]].SubscriptionID, Origin: origin,
	}, now)
	o.event, o.readAt = &e, now
}

// later leaves o for a later attempt.
func (o *object) later(why reason, retryAfter time.Duration) {
	o.why, o.retryAfter = why, retryAfter
}

// read reads the objects of every kind through directory.Reader and settles each one: an event, a later
// attempt, or a refusal. A refusal of every read fails the invocation.
func (f *Function) read(ctx context.Context, log *slog.Logger, m *message.Message, objs []*object, t *tally) error {
	if f.d.Graph == nil {
		return fmt.Errorf("no Graph client is wired into the queue worker")
	}
	g, err := f.d.Graph()
	if err != nil {
		return fmt.Errorf("graph client: %w", err)
	}
	work, cancel := f.workContext(ctx)
	defer cancel()
	reader := &directory.Reader{Graph: g, Gate: f.d.Gate, Now: f.now, ThrottleDefault: f.backoffBase}

	var refusals directory.Refusals
	for _, kind := range directory.Kinds {
		var these []*object
		var reqs []directory.Request
		for _, o := range objs {
			if o.kind != kind {
				continue
			}
			probe := directory.Live
			if o.deleted {
				probe = directory.LiveAndDeleted // deletes are rare: confirm them in the same $batch
			}
			these = append(these, o)
			reqs = append(reqs, directory.Request{ID: o.id, Probe: probe})
		}
		if len(reqs) == 0 {
			continue
		}
		reads, err := reader.Read(work, kind, f.d.Config.Select(kind.Collection), reqs)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			return fmt.Errorf("reading %d %s: %w", len(reqs), kind.Collection, err)
		}
		refusals.Add(reads...)
		now := f.now()
		for i, rd := range reads {
			f.settle(log, m, these[i], rd, now, t)
		}
	}
	if err := f.readMailboxItems(work, log, m, objs, g, &refusals, t); err != nil {
		return err
	}
	if refusals.All() {
		return fmt.Errorf("graph refused to read every one of %d objects: %w", refusals.Asked, refusals.First)
	}
	return nil
}

// readMailboxItems reads the mailbox items among objs, across mailboxes, in shared $batches, and settles
// each: an event (mailbox.Verdict: a 404 is a confirmed delete, a found item is never reported deleted), a
// later attempt, or a refusal.
func (f *Function) readMailboxItems(ctx context.Context, log *slog.Logger, m *message.Message, objs []*object, g directory.Graph, refusals *directory.Refusals, t *tally) error {
	var these []*object
	var items []mailbox.Item
	for _, o := range objs {
		if user, kind, ok := family.MailboxOf(o.target.Scope); ok {
			these = append(these, o)
			items = append(items, mailbox.Item{User: user, Kind: kind, ID: o.id})
		}
	}
	if len(items) == 0 {
		return nil
	}
	reader := &mailbox.Reader{Graph: g, Gate: f.d.Gate, Now: f.now, ThrottleDefault: f.backoffBase}
	reads, err := reader.Read(ctx, items, func(k family.Kind) []string { return f.d.Config.Select(k.Collection) })
	if err != nil {
		return fmt.Errorf("reading %d mailbox items: %w", len(items), err)
	}
	refusals.Add(reads...)
	now := f.now()
	for i, rd := range reads {
		o := these[i]
		ct, obj, settled := mailbox.Verdict(rd, o.created)
		switch {
		case settled:
			f.finish(o, m, ct, false, obj, now)
			switch {
			case ct == graph.Deleted:
				t.deleted++
			case o.deleted:
				log.Warn("a mailbox item was reported deleted, but it exists: reporting it as updated", "resource", o.kind.Collection, "id", o.id)
				t.notDeleted++
				t.updated++
			default:
				t.updated++
			}
		case rd.Outcome == directory.Refused:
			o.refused = rd.Err
		default:
			o.later(reasonOf(rd.Outcome), rd.RetryAfter)
		}
	}
	return nil
}

// settle decides what one read means for its object: an event (directory.Read.Verdict), a later attempt,
// or a refusal.
func (f *Function) settle(log *slog.Logger, m *message.Message, o *object, rd directory.Read, now time.Time, t *tally) {
	v, settled := rd.Verdict()
	switch {
	case rd.Outcome == directory.Gone && !o.deleted &&
		(m.Attempt < ReplicationRetries || (!m.FirstSeen.IsZero() && now.Sub(m.FirstSeen) < f.replicationWindow())):
		// An update of an object found nowhere may be of one not replicated yet: it waits, and attempts
		// spent on throttling or failures do not shorten the wait.
		o.later(reasonNotFound, 0)
	case settled:
		f.finish(o, m, v.ChangeType, v.SoftDeleted, v.Object, now)
		switch {
		case rd.Outcome == directory.Found && o.deleted:
			log.Warn("a permanent delete was reported, but the object is live: reporting it as updated", "resource", o.kind.Collection, "id", o.id)
			t.notDeleted++
			t.updated++
		case rd.Outcome == directory.Found:
			t.updated++
		case rd.Outcome == directory.SoftDeleted:
			t.softDeleted++
		case o.deleted:
			t.deleted++ // a confirmed permanent delete
		default:
			t.gone++
		}
	case rd.Outcome == directory.Refused:
		o.refused = rd.Err
	default:
		o.later(reasonOf(rd.Outcome), rd.RetryAfter)
	}
}

// tap turns the notifications of families that learn by delta into passes over the scopes they name: one
// request per scope (a pass in progress collapses it into one follow-up), never a read per item. A tap for a
// scope no configured subscription covers is dropped and counted, never read. A request that fails leaves
// its notifications for a later attempt. It returns a line for the invocation's Logs ("" for no taps).
func (f *Function) tap(ctx context.Context, log *slog.Logger, objs []*object) string {
	if len(objs) == 0 {
		return ""
	}
	covered := f.d.Config.Collections()
	notes, passes, dropped := 0, 0, 0
	for _, o := range objs {
		notes += len(o.notes)
		if !slices.Contains(covered, o.target.Scope) {
			o.done = true
			dropped += len(o.notes)
			log.Warn("dropped notifications for a scope no configured subscription covers; nothing was read", "scope", o.target.Scope, "count", len(o.notes))
			continue
		}
		if f.d.Resync == nil {
			o.refused = errors.New("a tap arrived, but no resync is wired into the queue worker")
			continue
		}
		if err := f.d.Resync.RequestResync(ctx, o.target.Scope, TapReason); err != nil {
			log.Warn("could not request the pass a tap asks for; retrying later", "scope", o.target.Scope, "err", err)
			o.later(reasonTransient, 0)
			continue
		}
		o.done = true
		passes++
	}
	return fmt.Sprintf("%d tap notifications: a delta pass requested for %d scope(s); %d dropped, as no configured subscription covers their scope", notes, passes, dropped)
}

// TapReason is the reason of the passes taps request.
const TapReason = "change notification"

// replicationWindow is how long the backoff steps of ReplicationRetries attempts add up to (30 + 60 + 120 s):
// an object found nowhere is retried at least that long after its message was first seen, however many
// attempts throttling or transient failures used up before it was first looked for.
func (f *Function) replicationWindow() time.Duration {
	var d time.Duration
	for i := range ReplicationRetries {
		d += backoff.Step(f.backoffBase, f.backoffMax, i)
	}
	return d
}
