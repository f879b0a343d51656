// Package queueworker is the queue-triggered function that turns queued Graph notifications into enriched
// change events. It reads one message of webhooksnotificationqueue per invocation (design.md, "Queue
// message") and writes events to graphchanges through its `changes` output binding.
//
// # Change events
//
// One event per changed user per message, as a JSON array of message.Event (the host writes one queue
// message per element):
//
//	{ "v": 1, "id": "<32 hex>", "source": "notification", "changeType": "updated" | "deleted",
//	  "softDeleted": false, "resource": "users", "resourceId": "<user id>", "tenantId": "<tenant>",
//	  "subscriptionId": "<first notification's>", "observedAt": "<now, whole seconds>",
//	  "user": { GRAPH_USER_SELECT properties } | null }
//
// Notifications for the same user (resource id) in one message are coalesced into one lookup. All users of
// a message are read with one POST /$batch (20 per batch; a message holds at most 20 notifications) with
// $select=GRAPH_USER_SELECT. Outcomes:
//   - changeType deleted (permanent deletion): no lookup; event deleted, user null.
//   - found: event updated with the selected properties.
//   - 404 on /users/{id}: GET /directory/deletedItems/{id}; found there: event deleted, softDeleted true,
//     user = the selected properties deletedItems returned (a soft delete arrives as updated, reference §3.4).
//   - found nowhere: the user may be new and not yet replicated, so it is retried ReplicationRetries (3)
//     times with the backoff below (30 s, 60 s, 120 s, counted by the message's attempt); after that, event
//     deleted with softDeleted false and user null.
//
// The event id is the first 128 bits of SHA-256 over the source, tenant, resource id, change type, the
// soft-deleted flag and the sorted, de-duplicated identities of the coalesced notifications (subscriptionId,
// changeType, resourceData.sequenceNumber and eventTime, or the canonical notification JSON when those are
// absent). It depends on neither time nor attempt, so a redelivered message, or the re-enqueued remainder of
// one, yields the same ids for the same outcomes.
//
// # Failures
//
// Throttling (an inner $batch 429, a 429 whose Retry-After is longer than the Graph client waits) and
// transient failures (5xx, network errors, the invocation's own deadline) never fail the invocation: the
// unfinished notifications, and only those, are re-enqueued as a new message (same firstSeen, attempt+1,
// notBefore) delayed by Graph's Retry-After when it gave one (reference §7: wait exactly that long), else by
// the backoff step for the attempt — BackoffBase (30 s) doubling per attempt, at most BackoffMax (1 h) per
// step — plus 0–10 % of deterministic jitter so
// messages throttled together do not come back together. The invocation then succeeds: no dequeue count is
// burnt, finished users are not fetched again and their events still go out.
//
// One Gate per Function (so per process) remembers the latest Retry-After; while it is closed, invocations
// re-enqueue their lookups for the remaining time (attempt unchanged: nothing was tried) without calling
// Graph. A message whose notBefore lies more than 5 s ahead is put back the same way.
//
// A message is given up when its next attempt would exceed MaxAttempts (40) or it is older than MaxAge (24 h
// since firstSeen; with the backoff above that is about 30 attempts): the remainder is moved to
// webhooksnotificationqueue-poison with an Error log, from where storagequeue.Replay can bring it back (a
// replayed message gets one more full try before it is given up again). A message that cannot be
// understood at all (not JSON, unknown version or kind) is copied to the poison queue at once, with its
// original text, and the invocation succeeds; notifications that cannot be processed (no resource id, an
// unknown changeType) are moved there as a message of their own. Notifications of another tenant are dropped
// with a warning, as the webhook does.
//
// Every invocation ends well within functionTimeout (5 min): Register gives it Timeout (2 min), and Graph
// work stops deadlineMargin (20 s) before that deadline, leaving the rest to a re-enqueue. Only a failure to
// re-enqueue (or to poison), a missing app setting, or a Graph failure that waiting cannot cure (401, 403,
// 400) fails the invocation; the host then retries the whole message, which is harmless since event ids are
// stable.
//
// # Lifecycle messages
//
// When validationTokens are present every one must pass internal/jwtcheck (as of the message's firstSeen,
// so a message that waited in the queue is not judged by its age); one bad token drops the message with a
// warning naming the failed check. The notifications are then coalesced into one call per kind:
// subscriptionRemoved → Subscriptions.Recreate; reauthorizationRequired → Subscriptions.RenewNow (skipped
// when Recreate ran); missed → a warning. Each of the three may mean notifications were lost (Graph pauses
// delivery until a reauthorization), so one Resync.RequestResync names them all. Transient
// failures of these calls re-enqueue the unfinished part with the backoff above (without the tokens, which
// were checked and would expire); other failures fail the invocation with the error. A retry after a
// failed resync request repeats Recreate too: the subscription logic converges when run twice.
//
// # Resync messages
//
// A kind "resync" message is one step of a delta resync and goes to Deps.ResyncStep (internal/resync), which
// handles its own throttling; its errors fail the invocation.
package queueworker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/customhandler"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/jwtcheck"
	"github.com/graphwebhooks/graph-webhooks-go/internal/logctx"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
	"github.com/graphwebhooks/graph-webhooks-go/internal/storagequeue"
)

// Names, as in queueworker/function.json.
const (
	Name          = "queueworker"
	TriggerName   = "message"
	ChangesOutput = "changes"
	// Queue is the trigger's queue, where unfinished work is re-enqueued.
	Queue = message.WorkQueue
)

// The numbers behind the failure behaviour (see the package documentation).
const (
	Timeout            = 2 * time.Minute  // per invocation; functionTimeout is 5 min
	BackoffBase        = 30 * time.Second // delay after attempt 0, doubling per attempt
	BackoffMax         = time.Hour        // longest backoff step (a longer Retry-After is still honoured)
	MaxAge             = 24 * time.Hour   // since firstSeen, then the poison queue
	MaxAttempts        = 40               // a backstop to MaxAge
	ReplicationRetries = 3                // retries of a user found neither in users nor in deletedItems

	deadlineMargin     = 20 * time.Second // Graph work stops this long before the invocation's deadline
	notBeforeTolerance = 5 * time.Second
	deletedLookups     = 4 // concurrent deletedItems reads in one invocation
)

// Subscriptions is the renew timer's subscription logic, used for lifecycle notifications.
type Subscriptions interface {
	// RenewNow renews the subscription, which also reauthorizes it (one PATCH).
	RenewNow(ctx context.Context) error
	// Recreate creates the subscription again, after subscriptionRemoved or a 404 while renewing.
	Recreate(ctx context.Context) error
}

// Resyncer starts a delta-query resync. Deps.Resync may be nil: missed then only warns.
type Resyncer interface {
	RequestResync(ctx context.Context, reason string) error
}

// KeySource supplies the signing keys of validation tokens (jwtcheck.JWKS in production).
type KeySource = jwtcheck.KeySource

// Deps are the function's dependencies, built once per process.
type Deps struct {
	Config        *config.Config
	Graph         func() (*graph.Client, error)        // lazily built, shared per process
	Queue         func() (*storagequeue.Client, error) // for re-enqueues and poison moves
	Subscriptions Subscriptions
	Resync        Resyncer // may be nil
	// Keys verifies validation tokens; nil means jwtcheck.NewJWKS for AZURE_AUTHORITY_HOST (or the public
	// cloud) with http.DefaultClient, built on first use.
	Keys KeySource
	Now  func() time.Time // nil means time.Now
	// ResyncStep runs one step of a delta resync for a kind "resync" message: wire
	// func(ctx, m) error { _, err := runner.Step(ctx, m); return err } with an internal/resync Runner. Its
	// error fails the invocation (the runner re-enqueues throttled and transient steps itself). While it is
	// nil, resync messages fail the invocation, so the host keeps them and finally moves them to the poison
	// queue, from where they can be replayed.
	ResyncStep func(ctx context.Context, m *message.Message) error
}

// Function enriches queued notifications. One Function serves every invocation of the process: it holds the
// throttling Gate they share.
type Function struct {
	d    Deps
	gate *Gate

	// Knobs tests turn; production uses the constants.
	queue       string
	backoffBase time.Duration
	backoffMax  time.Duration
	margin      time.Duration
	// enqueue writes text (base64-encoded by storagequeue) to queue; nil means Deps.Queue().Enqueue.
	enqueue func(ctx context.Context, queue string, text []byte, delay time.Duration) error

	keysOnce sync.Once
	keys     KeySource
}

// New builds the function. Nothing is checked or connected until an invocation needs it.
func New(d Deps) *Function {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Config == nil {
		d.Config = config.Load(func(string) string { return "" })
	}
	return &Function{d: d, gate: &Gate{}, queue: Queue, backoffBase: BackoffBase, backoffMax: BackoffMax, margin: deadlineMargin}
}

// Gate returns the process-wide throttling gate.
func (f *Function) Gate() *Gate { return f.gate }

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
	log = log.With("kind", string(m.Kind), "attempt", m.Attempt, "notifications", len(m.Notifications))
	switch m.Kind {
	case message.KindNotifications:
		return f.notifications(ctx, log, m)
	case message.KindLifecycle:
		return f.lifecycle(ctx, log, m)
	default: // resync (Decode refuses unknown kinds)
		if f.d.ResyncStep == nil {
			return nil, errors.New("a resync message arrived, but no resync is wired into the queue worker (Deps.ResyncStep)")
		}
		if err := f.d.ResyncStep(ctx, m); err != nil {
			return nil, fmt.Errorf("resync step: %w", err)
		}
		return &customhandler.Response{Logs: []string{"resync step done"}}, nil
	}
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

// put writes one message through storagequeue (or the test hook).
func (f *Function) put(ctx context.Context, queue string, text []byte, delay time.Duration) error {
	if f.enqueue != nil {
		return f.enqueue(ctx, queue, text, delay)
	}
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
			f.keys = jwtcheck.NewJWKS(jwtcheck.KeysURL(f.d.Config.AuthorityHost), http.DefaultClient)
		}
	})
	return f.keys
}
