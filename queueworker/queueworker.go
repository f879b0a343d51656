// Package queueworker is the queue-triggered function that turns queued Graph notifications into enriched
// change events. It reads one message of webhooksnotificationqueue per invocation (the schema is in
// internal/message) and writes events to graphchanges through internal/events. Reading the objects,
// classifying Graph's answers and building the events belong to internal/directory; subscription actions to
// internal/subscription; resync steps to internal/resync. This package orchestrates them.
//
// # Change events
//
// One event per changed object per message (internal/directory builds it; its id covers the coalesced
// notifications' identities, so a redelivered message, or the re-enqueued remainder of one, yields the same
// ids for the same outcomes). Notifications for the same object in one message are coalesced into one read;
// all objects of a message are read with $batch (20 GETs per request) with the collection's select.
// Outcomes:
//   - found live: event updated with the selected properties. A reported permanent delete of an object
//     found live is not believed: the event is updated, with a warning.
//   - found in directory/deletedItems: event deleted, softDeleted true, with what deletedItems returned (a
//     soft delete arrives as updated).
//   - changeType deleted and found nowhere (both places read in the same $batch): event deleted,
//     softDeleted false, object null.
//   - changeType updated and found nowhere: the object may be new and not yet replicated, so it is retried
//     ReplicationRetries (3) times with the backoff below, and at least as long as those steps add up to
//     (3.5 min) since the message was first seen; after that, event deleted with softDeleted false.
//   - groups: the event carries no members, whatever members@delta hint the notification holds (a hint is
//     not a fact, and membership grants access downstream); a groups resync is requested (it collapses
//     into a running pass), and its delta round, read from Graph, reports the membership change.
//
// # Taps
//
// A family that learns by delta (drives: internal/family) sends taps: notifications that say only that
// something in a scope changed. They are not read: each scope a message's taps name gets one pass request
// (internal/resync, which collapses requests into a running pass). A tap for a scope no GRAPH_RESOURCE entry
// names is dropped and counted, never read; a request that fails leaves the tap for a later attempt.
//
// A notification that cannot be processed (its id is off its family's grammar, it names no family, an unknown
// changeType) never reaches Graph: it is moved to webhooksnotificationqueue-poison as a message of its own,
// with the reason in the log. So is a message whose notBefore or firstSeen lies more than a day ahead, and
// one that cannot be understood at all (not JSON, unknown version or kind: its original text is copied).
// Notifications of another tenant are dropped with a warning, as the webhook does.
//
// # Failures
//
// Throttling (an inner $batch 429, a 429 whose Retry-After is longer than the Graph client waits, the
// closed gate) and transient failures never fail the invocation: the unfinished notifications, and only
// those, are re-enqueued as a new message (same firstSeen, attempt+1, notBefore) delayed by Graph's
// Retry-After when it gave one, else by the backoff step for the attempt — BackoffBase (30 s) doubling per
// attempt, at most BackoffMax (1 h) per step — and in both cases 0–10 % of deterministic jitter is added,
// so that messages throttled together do not come back together. The invocation then succeeds: no dequeue
// count is burnt, finished objects are not read again and their events still go out.
//
// One directory.Gate per process remembers the latest Retry-After; while it is closed, invocations
// re-enqueue their reads for the remaining time (attempt unchanged: nothing was tried) without calling
// Graph. A message whose notBefore lies more than 5 s ahead is put back the same way.
//
// A message is given up when its next attempt would exceed MaxAttempts (40) or it is older than MaxAge (24 h
// since firstSeen; with the backoff above that is about 30 attempts): the remainder is moved to the poison
// queue with an Error log, from where `handler replay-poison` can bring it back (a replayed message gets
// one more full try before it is given up again). An object Graph refuses to read (403) goes to the poison
// queue alone; a refusal of every object read is a bad setting or permission and fails the invocation.
//
// Every invocation ends well within functionTimeout (5 min): Register gives it Timeout (2 min), and Graph
// work stops deadlineMargin (20 s) before that deadline, leaving the rest to a re-enqueue. Only a failure to
// write events, to re-enqueue or to poison, a missing app setting, or a refusal of every read fails the
// invocation; the host then retries the whole message, which is harmless since event ids are stable.
//
// # Lifecycle messages
//
// When validationTokens are present every one must pass internal/jwtcheck as of the moment the message is
// processed (with the validator's skew), not as of the firstSeen it states; one bad or expired token drops
// the message with a warning naming the failed check. A re-enqueued message keeps its tokens, so every
// retry is judged again. Notifications of another tenant, of an unknown event, or whose subscriptionId is
// not a GUID are ignored (counted in a warning). The rest are coalesced per subscription and judged in one
// subscription.Keeper.Lifecycle call, through the process's Graph gate (closed: the message waits, as a
// notifications message does): only a subscription Graph lists as this app's causes anything.
// reauthorizationRequired and subscriptionRemoved renew it (a removal covers a reauthorization of the
// same subscription); missed needs no subscription call. Each rationed (one action per subscription per
// 10 minutes, ten per process); ids that do not list and rationed ones are dropped and counted. Each
// action may mean notifications were lost (Graph pauses delivery until a reauthorization), so a resync of
// the subscription's collection is requested. Transient failures of these calls re-enqueue the unfinished
// part with the backoff above, tokens included; other failures fail the invocation.
//
// A message an earlier version's eventhub function wrote for a batch too large to read (a missed
// notification named "eventhub-batch-too-large", with no tenant) still asks for a resync of every
// collection.
//
// # Resync messages
//
// A kind "resyncRequest" message (the eventhub function's, for a batch too large to read) requests a
// resync pass of every collection; a failure to request one fails the invocation.
//
// A kind "resync" message is one step of a delta resync and goes to the Resync dependency
// (internal/resync), which handles its own throttling; its errors fail the invocation.
package queueworker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/customhandler"
	"github.com/graphwebhooks/graph-webhooks-go/internal/directory"
	"github.com/graphwebhooks/graph-webhooks-go/internal/events"
	"github.com/graphwebhooks/graph-webhooks-go/internal/jwtcheck"
	"github.com/graphwebhooks/graph-webhooks-go/internal/logctx"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
	"github.com/graphwebhooks/graph-webhooks-go/internal/resync"
	"github.com/graphwebhooks/graph-webhooks-go/internal/safetext"
	"github.com/graphwebhooks/graph-webhooks-go/internal/storagequeue"
	"github.com/graphwebhooks/graph-webhooks-go/internal/subscription"
)

// Names, as in queueworker/function.json.
const (
	Name        = "queueworker"
	TriggerName = "message"
)

// The numbers behind the failure behaviour (see the package documentation).
const (
	Timeout            = 2 * time.Minute  // per invocation; functionTimeout is 5 min
	BackoffBase        = 30 * time.Second // delay after attempt 0, doubling per attempt
	BackoffMax         = time.Hour        // longest backoff step (a longer Retry-After is still honoured)
	MaxAge             = 24 * time.Hour   // since firstSeen, then the poison queue
	MaxAttempts        = 40               // a backstop to MaxAge
	ReplicationRetries = 3                // retries of an object found neither live nor in deletedItems
	// MaxAhead is how far in the future a message's notBefore or firstSeen may lie: further is no message
	// this product wrote, and would park itself for ever.
	MaxAhead = 24 * time.Hour

	deadlineMargin     = 20 * time.Second // Graph work stops this long before the invocation's deadline
	notBeforeTolerance = 5 * time.Second
)

// Subscriptions acts on lifecycle events (*subscription.Keeper): only for subscriptions Graph lists as
// this app's, rationed per subscription and per process; one call judges every request of a message.
// Release gives back the rationing slot of an Acted result whose follow-up (catch-up or resync) failed,
// so that the retry is not Limited.
type Subscriptions interface {
	Lifecycle(ctx context.Context, reqs []subscription.LifecycleRequest) ([]subscription.LifecycleResult, error)
	Release(r subscription.LifecycleResult)
}

// Resync is the delta resync (*resync.Runner): the worker runs its steps and asks it for passes.
type Resync interface {
	Step(ctx context.Context, m *message.Message) (resync.StepResult, error)
	RequestResync(ctx context.Context, collection, reason string) error
}

// Queue writes one message, base64-encoded as the trigger expects (*storagequeue.Client,
// storagequeue.Memory in tests): re-enqueues and poison moves.
type Queue interface {
	Enqueue(ctx context.Context, queue string, text []byte, delay time.Duration) error
}

// CatchUp re-reads one mailbox resource after Graph said it missed notifications (*mailbox.CatchUp): its
// recently modified items become notifications work; it returns how many.
type CatchUp interface {
	Run(ctx context.Context, resource, subscriptionID string) (queued int, truncated bool, err error)
}

// EventWriter writes change events, suppressing those that carry nothing new (*events.Writer).
type EventWriter interface {
	Write(ctx context.Context, items []events.Item) (events.Result, error)
}

// KeySource supplies the signing keys of validation tokens (jwtcheck.JWKS in production).
type KeySource = jwtcheck.KeySource

// Deps are the function's dependencies, built once per process. Graph and Queue are built lazily, so a
// missing setting is reported by the invocation that needs it.
type Deps struct {
	Config        *config.Config
	Graph         func() (directory.Graph, error)
	Queue         func() (Queue, error)
	Events        EventWriter
	Subscriptions Subscriptions
	Resync        Resync
	// CatchUp catches up a mailbox after a missed lifecycle event; nil: mailboxes are not caught up.
	CatchUp CatchUp
	// Gate is the process's Graph throttling gate, shared with the resync.
	Gate *directory.Gate
	// Keys verifies validation tokens; nil means the keys named by the tenant's own OpenID discovery
	// document at AZURE_AUTHORITY_HOST (or the public cloud), fetched with http.DefaultClient on first use.
	Keys KeySource
	Now  func() time.Time // the clock: required
}

// Function enriches queued notifications. One Function serves every invocation of the process.
type Function struct {
	d Deps

	// Knobs tests turn; production uses the constants.
	queue       string
	backoffBase time.Duration
	backoffMax  time.Duration
	margin      time.Duration

	keysOnce sync.Once
	keys     KeySource
	opener   payloadOpener
}

// New builds the function. Nothing is checked or connected until an invocation needs it.
func New(d Deps) *Function {
	if d.Now == nil {
		panic("queueworker.New: Deps.Now is nil: the clock is given, never taken")
	}
	if d.Config == nil {
		d.Config = config.Load(func(string) string { return "" })
	}
	if d.Gate == nil {
		d.Gate = &directory.Gate{}
	}
	return &Function{d: d, queue: message.WorkQueue, backoffBase: BackoffBase, backoffMax: BackoffMax, margin: deadlineMargin}
}

// Register adds the function to the handler's server with its own deadline, well below functionTimeout.
func (f *Function) Register(s *customhandler.Server) {
	s.Handle(Name, f.Invoke, customhandler.WithTimeout(Timeout))
}

// Invoke handles one queue message.
func (f *Function) Invoke(ctx context.Context, req *customhandler.Request) (*customhandler.Response, error) {
	text, err := req.QueueItem(TriggerName)
	if err != nil {
		return nil, err
	}
	log := logctx.From(ctx)
	meta, _ := req.QueueMetadata() // only for logs: lenient, absent fields stay empty
	log = log.With("message_id", string(meta.ID), "dequeue_count", meta.Dequeues())
	resp, err := f.handle(ctx, log, text)
	if resp != nil && len(resp.Logs) > 0 {
		resp.Logs[0] = fmt.Sprintf("%s: message %s (dequeue %d): %s", Name, meta.ID, meta.Dequeues(), resp.Logs[0])
	}
	return resp, err
}

func (f *Function) handle(ctx context.Context, log *slog.Logger, text []byte) (*customhandler.Response, error) {
	m, err := message.Decode(text)
	if err != nil {
		return f.poisonText(ctx, log, text, describeDecodeError(err))
	}
	if err := m.CheckTimes(f.now(), MaxAhead); err != nil {
		return f.poisonText(ctx, log, text, err.Error())
	}
	log = log.With("kind", string(m.Kind), "attempt", m.Attempt, "notifications", len(m.Notifications))
	switch m.Kind {
	case message.KindNotifications:
		return f.notifications(ctx, log, m)
	case message.KindLifecycle:
		return f.lifecycle(ctx, log, m)
	case message.KindResyncRequest:
		return f.resyncRequest(ctx, log, m)
	default: // resync (Decode refuses unknown kinds)
		if f.d.Resync == nil {
			return nil, errors.New("a resync message arrived, but no resync is wired into the queue worker")
		}
		res, err := f.d.Resync.Step(ctx, m)
		if err != nil {
			return nil, fmt.Errorf("resync step: %w", err)
		}
		log.Info(res.Summary())
		return &customhandler.Response{Logs: []string{res.Summary()}}, nil
	}
}

// resyncRequest starts a resync pass of every collection (each collapses into a pass already running). A
// failure fails the invocation, so the host retries the message.
func (f *Function) resyncRequest(ctx context.Context, log *slog.Logger, m *message.Message) (*customhandler.Response, error) {
	if f.d.Resync == nil {
		return nil, errors.New("a resync request arrived, but no resync is wired into the queue worker")
	}
	// The reason is only for logs and the checkpoint: kept short and on one line, whoever wrote it.
	reason := safetext.Line(m.Reason)
	if len(reason) > 80 {
		reason = reason[:80] + "…"
	}
	if reason == "" {
		reason = "resync request"
	}
	for _, c := range f.d.Config.Collections() {
		if err := f.d.Resync.RequestResync(ctx, c, reason); err != nil {
			return nil, fmt.Errorf("resync request (%s): %w", c, err)
		}
	}
	log.Info("resync requested for every collection", "reason", reason)
	return &customhandler.Response{Logs: []string{fmt.Sprintf("requested a resync of %s (%s)", strings.Join(f.d.Config.Collections(), ", "), reason)}}, nil
}

// describeDecodeError says why a message is unreadable without quoting it (it may hold a clientState).
func describeDecodeError(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("message is not JSON (syntax error at byte %d)", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("message does not fit the queue schema (%s must not be %s)", te.Field, te.Value)
	}
	why := err.Error()
	if len(why) > 200 {
		why = why[:200] + "…"
	}
	return why
}

// poisonText copies an unreadable message to the poison queue as it was and lets the invocation succeed:
// retrying it could only fail the same way.
func (f *Function) poisonText(ctx context.Context, log *slog.Logger, text []byte, why string) (*customhandler.Response, error) {
	poison := storagequeue.PoisonQueue(f.queue)
	if err := f.put(ctx, poison, text, 0); err != nil {
		return nil, fmt.Errorf("moving an unreadable message to %s: %w", poison, err)
	}
	log.Error("unreadable message moved to the poison queue", "queue", poison, "reason", why, "bytes", len(text))
	return &customhandler.Response{Logs: []string{"unreadable message moved to " + poison + ": " + why}}, nil
}

// put writes one message to a queue.
func (f *Function) put(ctx context.Context, queue string, text []byte, delay time.Duration) error {
	if f.d.Queue == nil {
		return errors.New("no storage queue client configured")
	}
	q, err := f.d.Queue()
	if err != nil {
		return err
	}
	return q.Enqueue(ctx, queue, text, delay)
}

// workContext ends Graph work deadlineMargin before the invocation's deadline, so there is time left to
// re-enqueue what remains.
func (f *Function) workContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok {
		return context.WithDeadline(ctx, dl.Add(-f.margin))
	}
	return context.WithCancel(ctx)
}

func (f *Function) now() time.Time { return f.d.Now() }

// keySource returns Deps.Keys, or the published keys of the configured authority.
func (f *Function) keySource() KeySource {
	f.keysOnce.Do(func() {
		f.keys = f.d.Keys
		if f.keys == nil {
			f.keys = jwtcheck.NewTenantJWKS(f.d.Config.AuthorityHost, f.d.Config.TenantID, http.DefaultClient, f.d.Now)
		}
	})
	return f.keys
}
