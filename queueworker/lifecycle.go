package queueworker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/backoff"
	"github.com/graphwebhooks/graph-webhooks-go/internal/customhandler"
	"github.com/graphwebhooks/graph-webhooks-go/internal/directory"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/jwtcheck"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

func (f *Function) lifecycle(ctx context.Context, log *slog.Logger, m *message.Message) (*customhandler.Response, error) {
	cfg := f.d.Config
	resp, deferred, err := f.prepare(ctx, log, m, "act on lifecycle notifications")
	if err != nil || deferred {
		return resp, err
	}
	now := f.now()
	work, cancel := f.workContext(ctx)
	defer cancel()

	// Tokens first: a message that fails them is not acted on at all. They are judged now, when the
	// message is acted on (with the validator's skew), not at the firstSeen the message states: a message
	// carries its tokens through every retry, and tokens that expired while it waited no longer vouch for
	// it (the renew timer converges the subscription on its next run whatever happens here).
	if len(m.ValidationTokens) > 0 {
		v := &jwtcheck.Validator{Keys: f.keySource(), ClientID: cfg.ClientID, TenantID: cfg.TenantID, AuthorityHost: cfg.AuthorityHost}
		for i, tok := range m.ValidationTokens {
			_, err := v.Validate(work, tok, now)
			var ie *jwtcheck.InvalidError
			switch {
			case err == nil:
				continue
			case errors.As(err, &ie):
				log.Warn("dropped a lifecycle message: a validation token failed its check",
					"check", ie.Check, "detail", ie.Detail, "token", i+1, "tokens", len(m.ValidationTokens))
				resp.Logs = []string{fmt.Sprintf("dropped %d lifecycle notifications: validation token %d of %d failed the %s check",
					len(m.Notifications), i+1, len(m.ValidationTokens), ie.Check)}
				return resp, nil
			default:
				// The keys could not be fetched: nothing is known about the token yet.
				line, rerr := f.requeue(ctx, log, m, retry{notes: allIndexes(m), why: reasonTransient,
					delay: backoff.Step(f.backoffBase, f.backoffMax, m.Attempt)})
				if rerr != nil {
					return nil, rerr
				}
				log.Warn("validation tokens cannot be checked yet", "error", err.Error())
				resp.Logs = []string{"validation keys unavailable: " + line}
				return resp, nil
			}
		}
	}

	// Coalesce: one action per subscription, however many notifications ask for it; a removal covers a
	// reauthorization of the same subscription.
	type action struct {
		sub   string
		ev    graph.LifecycleEvent
		notes []int
	}
	var actions []*action
	bySub := map[string]*action{}
	var missed []int
	var ignored []string
	for i := range m.Notifications {
		n := &m.Notifications[i]
		if tenant := n.Tenant(); tenant != "" && !strings.EqualFold(tenant, cfg.TenantID) {
			ignored = append(ignored, "another tenant")
			continue
		}
		ev, ok := graph.ParseLifecycleEvent(n.LifecycleEvent)
		switch {
		case !ok:
			ignored = append(ignored, "event "+short(n.LifecycleEvent))
			continue
		case ev == graph.Missed:
			missed = append(missed, i)
			continue
		}
		key := strings.ToLower(n.SubscriptionID)
		a := bySub[key]
		if a == nil {
			a = &action{sub: n.SubscriptionID, ev: ev}
			bySub[key] = a
			actions = append(actions, a)
		}
		if ev == graph.SubscriptionRemoved {
			a.ev = ev
		}
		a.notes = append(a.notes, i)
	}
	if len(ignored) > 0 {
		slices.Sort(ignored)
		log.Warn("ignored lifecycle notifications", "count", len(ignored), "why", strings.Join(slices.Compact(ignored), ", "))
	}

	var (
		done    []string
		pending []int
		why     reason
		wait    time.Duration
	)
	// fail records a failed call: transient ones leave their notifications for later, others end the
	// invocation with an error.
	fail := func(what string, err error, notes ...[]int) error {
		o, ra := directory.Classify(err)
		r := reasonOf(o)
		if r == reasonNone {
			return fmt.Errorf("lifecycle: %s failed: %w", what, err)
		}
		log.Warn("lifecycle action failed; will retry", "action", what, "reason", r.String(), "error", err.Error())
		for _, n := range notes {
			pending = append(pending, n...)
		}
		why, wait = max(why, r), max(wait, ra)
		return nil
	}
	if len(actions) > 0 && f.d.Subscriptions == nil {
		return nil, errors.New("lifecycle: no subscription manager is wired into the queue worker")
	}
	var count = map[graph.LifecycleEvent]int{}
	var resyncNotes [][]int
	var reasons []string
	for _, a := range actions {
		count[a.ev] += len(a.notes)
		what, did := "renewing subscription "+a.sub, "renewed subscription "+a.sub
		if a.ev == graph.SubscriptionRemoved {
			what, did = "recreating subscription "+a.sub, "recreated subscription "+a.sub
		}
		acted, err := f.d.Subscriptions.Lifecycle(work, a.sub, a.ev)
		switch {
		case err != nil:
			if err := fail(what, err, a.notes); err != nil {
				return nil, err
			}
			continue
		case acted:
			done = append(done, did)
		default:
			log.Info("lifecycle action dropped: one ran for this subscription within the last 10 minutes", "subscription", a.sub, "event", string(a.ev))
			done = append(done, "dropped a repeated action for "+a.sub)
		}
		// Graph pauses delivery until a reauthorization, and a removed subscription delivered nothing:
		// what changed meanwhile is lost to notifications. A delta pass is cheap, and collapses into one
		// already running.
		reasons = append(reasons, string(a.ev))
		resyncNotes = append(resyncNotes, a.notes)
	}
	if len(missed) > 0 {
		log.Warn("Graph reports missed change notifications", "count", len(missed))
		reasons = append(reasons, string(graph.Missed))
		resyncNotes = append(resyncNotes, missed)
	}
	slices.Sort(reasons)
	reasons = slices.Compact(reasons)
	switch {
	case len(reasons) == 0:
	case f.d.Resync == nil:
		log.Warn("no resync is wired: changes Graph did not deliver stay missing until one runs", "reasons", strings.Join(reasons, ","))
	default:
		var failed error
		for _, c := range cfg.Collections() {
			if err := f.d.Resync.RequestResync(work, c, strings.Join(reasons, ",")); err != nil && failed == nil {
				failed = err
			}
		}
		if failed != nil {
			// A retry repeats the subscription action only after its 10 minutes: converging is idempotent.
			if err := fail("requesting a resync", failed, resyncNotes...); err != nil {
				return nil, err
			}
		} else {
			done = append(done, "requested a resync")
		}
	}

	summary := fmt.Sprintf("%d lifecycle notifications (%d %s, %d %s, %d %s)", len(m.Notifications),
		count[graph.ReauthorizationRequired], graph.ReauthorizationRequired, count[graph.SubscriptionRemoved], graph.SubscriptionRemoved, len(missed), graph.Missed)
	if len(done) > 0 {
		summary += ": " + strings.Join(done, ", ")
	}
	resp.Logs = []string{summary}
	if len(pending) > 0 {
		slices.Sort(pending)
		pending = slices.Compact(pending)
		line, err := f.requeue(ctx, log, m, retry{notes: pending, why: why,
			delay: max(wait, backoff.Step(f.backoffBase, f.backoffMax, m.Attempt))})
		if err != nil {
			return nil, err
		}
		resp.Logs = append(resp.Logs, line)
	}
	return resp, nil
}

func short(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
