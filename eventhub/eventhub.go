// Package eventhub is the function that reads Graph's change notifications from Azure Event Hubs, the
// intake for tenants that outgrow a webhook. Each event body is a changeNotificationCollection; it is
// verified by internal/intake exactly as the webhook's POSTs are, and the genuine notifications go to the
// same queue, so everything downstream is unchanged.
//
// Event Hubs checkpoints a batch after the invocation whether or not it succeeded, so the function fails only
// when it could not produce its output (function.json's retry policy then retries the same batch for ever);
// an event it cannot read is logged with its partition and sequence number and skipped, never a reason to
// hold the partition.
package eventhub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/customhandler"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/intake"
	"github.com/graphwebhooks/graph-webhooks-go/internal/logctx"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

// Binding names, as in eventhub/function.json.
const (
	Name        = "eventhub"
	TriggerName = "events"
	QueueOutput = "notifications"
)

// MaxInvocationBytes bounds the invocation request, and so the batch. Graph's notifications for users are
// about a kilobyte and host.json asks for at most 100 events per batch, so a genuine batch is well under a
// megabyte even with the host's double JSON encoding; a larger one is skipped whole (and logged), since
// failing it would retry it for ever. Decoding holds about three times this at its peak.
const MaxInvocationBytes = 16 << 20

// maxInvocationBytes is MaxInvocationBytes, lowered by tests.
var maxInvocationBytes int64 = MaxInvocationBytes

// validationSubscription is the subscriptionId of the event Graph sends when a subscription with an
// Event Hubs URL is created: its clientState and resource are "NA" too.
const validationSubscription = "NA"

// Verifier verifies one changeNotificationCollection and returns what to queue (internal/intake).
type Verifier interface {
	Collection(ctx context.Context, body []byte) (intake.Result, error)
}

// Function reads event batches.
type Function struct {
	verify Verifier
	now    func() time.Time
}

// New builds the function from the app settings; verification is the webhook's (internal/intake).
func New(cfg *config.Config, now func() time.Time) *Function {
	return NewWithVerifier(intake.New(cfg, now), now)
}

// NewWithVerifier builds the function around a verifier; now dates the messages it writes itself.
func NewWithVerifier(v Verifier, now func() time.Time) *Function {
	return &Function{verify: v, now: now}
}

// Register adds the function to the handler's server.
func (f *Function) Register(s *customhandler.Server) {
	s.Handle(Name, f.Invoke, customhandler.WithMaxRequestBytes(maxInvocationBytes, f.tooLarge))
}

// tooLarge answers a batch over MaxInvocationBytes: success, so the partition moves on, and instead of the
// batch's notifications (unread) a resyncRequest message: the worker starts a resync of every collection,
// which recovers the batch's changes within minutes rather than at the next daily pass. It is a kind of
// its own, not a made-up lifecycle notification, so that lifecycle notifications stay exactly what
// Graph sent and passed the intake.
func (f *Function) tooLarge(ctx context.Context) *customhandler.Response {
	msg := fmt.Sprintf("eventhub: batch skipped: the invocation is larger than %d bytes; a resync of every collection is requested to recover its changes", maxInvocationBytes)
	logctx.From(ctx).Error(msg)
	resp := &customhandler.Response{Logs: []string{msg}}
	req := message.Message{V: message.Version, Kind: message.KindResyncRequest, Reason: "eventhub batch too large",
		FirstSeen: f.now().UTC().Truncate(time.Second)}
	if out, err := message.EncodeAll([]message.Message{req}); err == nil {
		resp.SetOutput(QueueOutput, out)
	}
	return resp
}

// tally is what one batch became.
type tally struct {
	events, validation, malformed int
	intake.Result
}

func (t *tally) add(r intake.Result) {
	t.Changes += r.Changes
	t.Lifecycle += r.Lifecycle
	t.BadClientState += r.BadClientState
	t.ForeignTenant += r.ForeignTenant
	t.MalformedID += r.MalformedID
	t.Oversize += r.Oversize
	for _, id := range r.DroppedSubscriptions {
		if len(t.DroppedSubscriptions) < 5 && !slices.Contains(t.DroppedSubscriptions, id) {
			t.DroppedSubscriptions = append(t.DroppedSubscriptions, id)
		}
	}
}

// Invoke handles one batch.
func (f *Function) Invoke(ctx context.Context, req *customhandler.Request) (*customhandler.Response, error) {
	log := logctx.From(ctx)
	pos := ReadPosition(req.Metadata)
	raw, ok := req.Data[TriggerName]
	if !ok {
		log.Error("eventhub: the invocation has no events: skipped", "partition", pos.Partition)
		return &customhandler.Response{Logs: []string{"eventhub: no events in the invocation"}}, nil
	}
	events, err := Events(raw)
	if err != nil {
		// Retrying cannot make it readable: skip, so the partition moves on.
		log.Error("eventhub: batch skipped", "partition", pos.Partition, "first_sequence_number", pos.SequenceNumber(0), "reason", err.Error())
		return &customhandler.Response{Logs: []string{"eventhub: batch skipped: " + err.Error()}}, nil
	}

	// intake logs one line per collection; a batch gets one line for all its events instead.
	quiet := logctx.With(ctx, slog.New(slog.DiscardHandler))
	var t tally
	var msgs []message.Message
	i := -1
	for body, err := range events {
		i++
		t.events++
		if err == nil && isValidationEvent(body) {
			t.validation++
			continue
		}
		var res intake.Result
		if err == nil {
			res, err = f.verify.Collection(quiet, body)
		}
		var bad *intake.BadInput
		if err != nil && (errors.As(err, &bad) || body == nil) {
			t.malformed++
			log.Warn("eventhub: malformed event skipped", "partition", pos.Partition, "sequence_number", pos.SequenceNumber(i), "index", i, "reason", err.Error())
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("event %d of partition %s: %w", i, pos.Partition, err)
		}
		t.add(res)
		if res.Output != nil {
			var ms []message.Message
			if err := json.Unmarshal(res.Output, &ms); err != nil {
				return nil, fmt.Errorf("read back the messages of event %d: %w", i, err)
			}
			msgs = append(msgs, ms...)
		}
	}

	msgs, err = repack(msgs)
	if err != nil {
		return nil, err
	}
	t.Messages = len(msgs)
	if dropped := t.BadClientState + t.ForeignTenant + t.MalformedID; dropped > 0 {
		log.Warn("eventhub: dropped notifications that failed verification", "partition", pos.Partition,
			"bad_client_state", t.BadClientState, "foreign_tenant", t.ForeignTenant, "malformed_id", t.MalformedID,
			"subscriptions", t.DroppedSubscriptions)
	}
	if t.Oversize > 0 {
		log.Error("eventhub: dropped notifications too large for a queue message", "partition", pos.Partition, "count", t.Oversize)
	}
	resp := &customhandler.Response{}
	if len(msgs) > 0 {
		out, err := message.EncodeAll(msgs)
		if err != nil {
			return nil, fmt.Errorf("queue notifications: %w", err)
		}
		resp.SetOutput(QueueOutput, out)
	}
	resp.Logs = []string{fmt.Sprintf("eventhub: partition %s: %d events (%d validation, %d malformed): %s",
		pos.Partition, t.events, t.validation, t.malformed, t.Summary())}
	return resp, nil
}

// isValidationEvent reports whether body is the event Graph sends when it creates a subscription with an
// Event Hubs URL: every notification's subscriptionId is "NA". Its other fields are not dates or GUIDs, so
// it is recognised before anything parses them.
func isValidationEvent(body []byte) bool {
	if !bytes.Contains(body, []byte(`"`+validationSubscription+`"`)) {
		return false
	}
	var c struct {
		Value []struct {
			SubscriptionID any `json:"subscriptionId"`
		} `json:"value"`
	}
	if json.Unmarshal(body, &c) != nil || len(c.Value) == 0 {
		return false
	}
	for _, n := range c.Value {
		if s, _ := n.SubscriptionID.(string); !strings.EqualFold(s, validationSubscription) {
			return false
		}
	}
	return true
}

// repack merges the messages of a batch's events and splits them again under the queue's rules, so that
// events holding one notification each fill messages as full as message.Split allows instead of one
// message per event. Messages merge only with the same kind and validation tokens.
func repack(msgs []message.Message) ([]message.Message, error) {
	if len(msgs) <= 1 {
		return msgs, nil
	}
	type group struct {
		tmpl message.Message
		ns   []graph.ChangeNotification
	}
	var groups []*group
	byKey := map[string]*group{}
	for _, m := range msgs {
		key := string(m.Kind) + "\x00" + strings.Join(m.ValidationTokens, "\x00")
		g := byKey[key]
		if g == nil {
			tmpl := m
			tmpl.Notifications = nil
			g = &group{tmpl: tmpl}
			byKey[key] = g
			groups = append(groups, g)
		}
		if m.FirstSeen.Before(g.tmpl.FirstSeen) {
			g.tmpl.FirstSeen = m.FirstSeen
		}
		g.ns = append(g.ns, m.Notifications...)
	}
	var out []message.Message
	for _, g := range groups {
		ms, tooBig, err := intake.SplitByStateShard(g.tmpl, g.ns)
		if err != nil {
			return nil, fmt.Errorf("queue notifications: %w", err)
		}
		if len(tooBig) > 0 {
			// Each fitted a message alone a moment ago: Split is deterministic, so this is a bug.
			return nil, fmt.Errorf("queue notifications: %d notifications no longer fit a message", len(tooBig))
		}
		out = append(out, ms...)
	}
	return out, nil
}
