// Package intake turns the body of a Graph notification POST (a changeNotificationCollection) into the
// queue messages the worker reads: it verifies every notification (clientState, tenant) and packs the
// genuine ones under the queue's size rules. Every entry point that receives notifications (the webhook,
// an Event Hubs trigger) goes through it, so they verify alike.
package intake

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/logctx"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
	"github.com/graphwebhooks/graph-webhooks-go/internal/objectstate"
)

// BadInput says the body is not a notification collection. Its text describes what is wrong without
// quoting the input, so it can go back to the caller (an HTTP 400) and into logs.
type BadInput struct{ Detail string }

func (e *BadInput) Error() string { return e.Detail }

func badInput(format string, args ...any) error {
	return &BadInput{Detail: fmt.Sprintf(format, args...)}
}

// Verifier checks notifications against the app's clientState secrets and tenant.
type Verifier struct {
	tenant  string
	secrets [][sha256.Size]byte // digests of GRAPH_CLIENT_STATE and GRAPH_CLIENT_STATE_PREVIOUS
	missing error               // settings without which notifications cannot be verified
	now     func() time.Time
}

// New builds a verifier from the app settings. Missing settings do not stop it: Collection then returns
// an error that is not a BadInput, so that the caller fails and Graph retries.
func New(cfg *config.Config, now func() time.Time) *Verifier {
	v := &Verifier{tenant: cfg.TenantID, now: now, missing: cfg.Check(config.TenantID, config.ClientState)}
	for _, s := range []config.Secret{cfg.ClientState, cfg.ClientStatePrevious} {
		if s.IsSet() {
			v.secrets = append(v.secrets, sha256.Sum256([]byte(s.Reveal())))
		}
	}
	return v
}

// Result is what one collection became.
type Result struct {
	// Output is a JSON array for a queue output binding, one element per message; nil when nothing is queued.
	Output json.RawMessage

	Changes, Lifecycle int // notifications queued, by kind
	Messages           int // queue messages they fill

	BadClientState int // dropped: clientState matches no configured secret
	ForeignTenant  int // dropped: the tenant is not ours
	MalformedID    int // dropped: a change notification whose resource id, or a lifecycle one whose subscriptionId, is not a GUID
	Oversize       int // dropped: too large for a queue message on its own

	// DroppedSubscriptions names up to five subscriptions whose notifications failed verification, for the
	// operator to recognise a stale or foreign subscription.
	DroppedSubscriptions []string
}

// Dropped counts every notification not queued.
func (r Result) Dropped() int { return r.BadClientState + r.ForeignTenant + r.MalformedID + r.Oversize }

// Summary is one line for the invocation's Logs.
func (r Result) Summary() string {
	return fmt.Sprintf("queued %d change and %d lifecycle notifications in %d messages; dropped %d (clientState %d, tenant %d, id %d, oversize %d)",
		r.Changes, r.Lifecycle, r.Messages, r.Dropped(), r.BadClientState, r.ForeignTenant, r.MalformedID, r.Oversize)
}

// Collection verifies one changeNotificationCollection body and returns what to queue. A body that is not
// a collection is a *BadInput; missing settings are another error.
func (v *Verifier) Collection(ctx context.Context, body []byte) (Result, error) {
	if v.missing != nil {
		return Result{}, fmt.Errorf("cannot verify notifications, so Graph will retry them: %w", v.missing)
	}
	c := collection{v: v}
	if err := c.decode(body); err != nil {
		return Result{}, err
	}
	r, changes, lifecycle := c.res, c.changes, c.lifecycle

	seen := v.now().UTC().Truncate(time.Second)
	var msgs []message.Message
	for _, batch := range []struct {
		kind message.Kind
		ns   []graph.ChangeNotification
	}{{message.KindNotifications, changes}, {message.KindLifecycle, lifecycle}} {
		if len(batch.ns) == 0 {
			continue
		}
		tmpl := message.Message{V: message.Version, Kind: batch.kind, ValidationTokens: c.tokens, FirstSeen: seen}
		ms, tooBig, err := SplitByStateShard(tmpl, batch.ns)
		if err != nil {
			return Result{}, fmt.Errorf("queue notifications: %w", err)
		}
		msgs = append(msgs, ms...)
		r.Oversize += len(tooBig)
		queued := len(batch.ns) - len(tooBig)
		if batch.kind == message.KindLifecycle {
			r.Lifecycle = queued
		} else {
			r.Changes = queued
		}
	}
	r.Messages = len(msgs)

	log := logctx.From(ctx)
	if dropped := r.BadClientState + r.ForeignTenant + r.MalformedID; dropped > 0 {
		log.Warn("dropped notifications that failed verification",
			"bad_client_state", r.BadClientState, "foreign_tenant", r.ForeignTenant, "malformed_id", r.MalformedID, "subscriptions", r.DroppedSubscriptions)
	}
	if r.Oversize > 0 {
		log.Error("dropped notifications too large for a queue message", "count", r.Oversize)
	}
	if len(msgs) > 0 {
		// An array: the host writes one queue message per element, each object re-printed indented.
		out, err := message.EncodeAll(msgs)
		if err != nil {
			return Result{}, fmt.Errorf("queue notifications: %w", err)
		}
		r.Output = out
	}
	return r, nil
}

// SplitByStateShard is message.Split for the notifications of one POST or event batch. When they take
// several messages, change notifications are first ordered by the state shard of their object
// (objectstate.ShardOf), stably, so that each message's objects fall in a few of the state table's
// partitions: the worker's state reads and commit take a request per partition touched. The order of
// notifications carries no meaning: each object is read from Graph when its message is processed, and its
// state is ordered by that read's time. Notifications that fit one message keep their order.
func SplitByStateShard(tmpl message.Message, ns []graph.ChangeNotification) ([]message.Message, []graph.ChangeNotification, error) {
	ms, tooBig, err := message.Split(tmpl, ns)
	if err != nil || len(ms) <= 1 || tmpl.Kind != message.KindNotifications {
		return ms, tooBig, err
	}
	sorted := slices.Clone(ns)
	slices.SortStableFunc(sorted, func(a, b graph.ChangeNotification) int {
		return cmp.Compare(objectstate.ShardOf(a.ResourceID()), objectstate.ShardOf(b.ResourceID()))
	})
	return message.Split(tmpl, sorted)
}

// clientStateMatches compares digests in constant time against every accepted secret, so neither the
// secret's length nor which secret matched shows in the timing.
func (v *Verifier) clientStateMatches(got string) bool {
	d := sha256.Sum256([]byte(got))
	match := 0
	for _, s := range v.secrets {
		match |= subtle.ConstantTimeCompare(d[:], s[:])
	}
	return match == 1
}
