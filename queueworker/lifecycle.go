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
	"github.com/graphwebhooks/graph-webhooks-go/internal/jwtcheck"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

// Lifecycle events (graph-change-notifications.md §5).
const (
	ReauthorizationRequired = "reauthorizationRequired"
	SubscriptionRemoved     = "subscriptionRemoved"
	Missed                  = "missed"
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

	// Tokens first: a message that fails them is not acted on at all.
	if len(m.ValidationTokens) > 0 {
		at := m.FirstSeen
		if at.IsZero() {
			at = now
		}
		v := &jwtcheck.Validator{Keys: f.keySource(), ClientID: cfg.ClientID, TenantID: cfg.TenantID, AuthorityHost: cfg.AuthorityHost}
		for i, tok := range m.ValidationTokens {
			_, err := v.Validate(work, tok, at)
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

	// Coalesce: one call per kind, however many notifications ask for it.
	byEvent := map[string][]int{}
	var ignored []string
	for i := range m.Notifications {
		n := &m.Notifications[i]
		if tenant := n.Tenant(); tenant != "" && !strings.EqualFold(tenant, cfg.TenantID) {
			ignored = append(ignored, "another tenant")
			continue
		}
		switch ev := canonicalEvent(n.LifecycleEvent); ev {
		case ReauthorizationRequired, SubscriptionRemoved, Missed:
			byEvent[ev] = append(byEvent[ev], i)
		default:
			ignored = append(ignored, "event "+short(n.LifecycleEvent))
		}
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
	fail := func(action string, err error, notes ...[]int) error {
		r, ra := retryable(err)
		if r == reasonNone {
			return fmt.Errorf("lifecycle: %s failed: %w", action, err)
		}
		log.Warn("lifecycle action failed; will retry", "action", action, "reason", r.String(), "error", err.Error())
		for _, n := range notes {
			pending = append(pending, n...)
		}
		why, wait = max(why, r), max(wait, ra)
		return nil
	}
	removed, reauth, missed := byEvent[SubscriptionRemoved], byEvent[ReauthorizationRequired], byEvent[Missed]
	needSubs := len(removed) > 0 || len(reauth) > 0
	if needSubs && f.d.Subscriptions == nil {
		return nil, errors.New("lifecycle: no subscription manager is wired into the queue worker")
	}

	recreated := false
	if len(removed) > 0 {
		if err := f.d.Subscriptions.Recreate(work); err != nil {
			// Renewing a removed subscription cannot work: both wait for the next attempt.
			if err := fail("recreating the subscription", err, removed, reauth); err != nil {
				return nil, err
			}
		} else {
			recreated = true
			done = append(done, "recreated the subscription")
		}
	}
	if len(reauth) > 0 && len(removed) == 0 {
		if err := f.d.Subscriptions.RenewNow(work); err != nil {
			if err := fail("renewing the subscription", err, reauth); err != nil {
				return nil, err
			}
		} else {
			done = append(done, "renewed the subscription")
		}
	}
	if len(missed) > 0 {
		log.Warn("Graph reports missed change notifications", "count", len(missed))
	}
	var reasons []string
	resyncNotes := [][]int{}
	if recreated {
		reasons = append(reasons, SubscriptionRemoved)
		resyncNotes = append(resyncNotes, removed)
	}
	if len(missed) > 0 {
		reasons = append(reasons, Missed)
		resyncNotes = append(resyncNotes, missed)
	}
	if len(reauth) > 0 {
		// Graph pauses delivery until a reauthorization; what changed during the pause is lost to webhooks
		// (reference §5). An incremental pass is cheap, and collapses into one already running.
		reasons = append(reasons, ReauthorizationRequired)
		resyncNotes = append(resyncNotes, reauth)
	}
	switch {
	case len(reasons) == 0:
	case f.d.Resync == nil:
		log.Warn("no resync is wired: changes Graph did not deliver stay missing until one runs", "reasons", strings.Join(reasons, ","))
	default:
		if err := f.d.Resync.RequestResync(work, strings.Join(reasons, ",")); err != nil {
			// A retry repeats the recreate as well: the subscription logic converges when run twice.
			if err := fail("requesting a resync", err, resyncNotes...); err != nil {
				return nil, err
			}
		} else {
			done = append(done, "requested a resync")
		}
	}

	summary := fmt.Sprintf("%d lifecycle notifications (%d %s, %d %s, %d %s)", len(m.Notifications),
		len(reauth), ReauthorizationRequired, len(removed), SubscriptionRemoved, len(missed), Missed)
	if len(done) > 0 {
		summary += ": " + strings.Join(done, ", ")
	}
	resp.Logs = []string{summary}
	if len(pending) > 0 {
		slices.Sort(pending)
		pending = slices.Compact(pending)
		line, err := f.requeue(ctx, log, m, retry{notes: pending, why: why,
			delay: max(wait, backoff.Step(f.backoffBase, f.backoffMax, m.Attempt)), dropTokens: true})
		if err != nil {
			return nil, err
		}
		resp.Logs = append(resp.Logs, line)
	}
	return resp, nil
}

// canonicalEvent matches lifecycle event names without regard to case.
func canonicalEvent(s string) string {
	for _, ev := range []string{ReauthorizationRequired, SubscriptionRemoved, Missed} {
		if strings.EqualFold(s, ev) {
			return ev
		}
	}
	return s
}

func short(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
