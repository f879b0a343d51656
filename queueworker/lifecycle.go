package queueworker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/backoff"
	"github.com/graphwebhooks/graph-webhooks-go/internal/customhandler"
	"github.com/graphwebhooks/graph-webhooks-go/internal/directory"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/jwtcheck"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
	"github.com/graphwebhooks/graph-webhooks-go/internal/subscription"
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

	// Coalesce: one request per subscription and kind of action, however many notifications ask for it; a
	// removal covers a reauthorization of the same subscription. Only a subscription id of Graph's grammar
	// (a GUID) goes further; the intake drops any other, and so does this, for messages written elsewhere.
	type action struct {
		req   subscription.LifecycleRequest
		notes []int
	}
	var actions []*action
	byKey := map[string]*action{}
	var ignored []string
	legacyResync := false
	for i := range m.Notifications {
		n := &m.Notifications[i]
		ev, ok := graph.ParseLifecycleEvent(n.LifecycleEvent)
		switch {
		case ok && ev == graph.Missed && n.SubscriptionID == legacyBatchTooLarge && n.Tenant() == "":
			// Written by an earlier version's eventhub function (now a resyncRequest message).
			legacyResync = true
			continue
		case n.Tenant() != "" && !strings.EqualFold(n.Tenant(), cfg.TenantID):
			ignored = append(ignored, "another tenant")
			continue
		case !ok:
			ignored = append(ignored, "an unknown event")
			continue
		case !graph.IsGUID(n.SubscriptionID):
			ignored = append(ignored, "a subscription id that is not a GUID")
			continue
		}
		class := "subscription"
		if ev == graph.Missed {
			class = "missed"
		}
		key := strings.ToLower(n.SubscriptionID) + " " + class
		a := byKey[key]
		if a == nil {
			a = &action{req: subscription.LifecycleRequest{SubscriptionID: n.SubscriptionID, Event: ev}}
			byKey[key] = a
			actions = append(actions, a)
		}
		if ev == graph.SubscriptionRemoved {
			a.req.Event = ev
		}
		a.notes = append(a.notes, i)
	}
	if len(ignored) > 0 {
		counts := map[string]int{}
		for _, w := range ignored {
			counts[w]++
		}
		whys := make([]string, 0, len(counts))
		for w, c := range counts {
			whys = append(whys, fmt.Sprintf("%d for %s", c, w))
		}
		slices.Sort(whys)
		log.Warn("ignored lifecycle notifications", "count", len(ignored), "why", strings.Join(whys, ", "))
	}

	var (
		done    []string
		pending []int
		why     reason
		wait    time.Duration
	)
	// fail records a failed call: transient ones leave their notifications for later (and a throttled one
	// closes the process's gate), others end the invocation with an error.
	fail := func(what string, err error, notes ...[]int) error {
		o, ra := directory.Classify(err)
		r := reasonOf(o)
		if r == reasonNone {
			return fmt.Errorf("lifecycle: %s failed: %w", what, err)
		}
		if r == reasonThrottled {
			f.d.Gate.CloseUntil(now.Add(max(ra, f.backoffBase)))
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
	// Lifecycle calls are Graph calls like any other: while the process's gate is closed, nothing is sent.
	if wait := f.d.Gate.Remaining(now); wait > 0 && len(actions) > 0 {
		line, err := f.requeue(ctx, log, m, retry{notes: allIndexes(m), why: reasonGate, delay: wait, sameTry: true})
		if err != nil {
			return nil, err
		}
		resp.Logs = []string{fmt.Sprintf("%d lifecycle notifications: the Graph gate is closed: %s", len(m.Notifications), line)}
		return resp, nil
	}

	type catchUp struct {
		resource, subscription string
		notes                  []int
		result                 subscription.LifecycleResult
	}
	var catchUps []catchUp
	count := map[graph.LifecycleEvent]int{}
	verdicts := map[subscription.Verdict]int{}
	resyncs := map[string][]string{} // collection → reasons
	var resyncNotes [][]int
	var resyncResults []subscription.LifecycleResult // the Acted results the resync follows up
	if len(actions) > 0 {
		reqs := make([]subscription.LifecycleRequest, len(actions))
		for i, a := range actions {
			reqs[i] = a.req
			count[a.req.Event] += len(a.notes)
		}
		results, err := f.d.Subscriptions.Lifecycle(work, reqs)
		if err != nil {
			var all []int
			for _, a := range actions {
				all = append(all, a.notes...)
			}
			if err := fail("listing this app's subscriptions", err, all); err != nil {
				return nil, err
			}
		}
		for i, r := range results {
			a := actions[i]
			verdicts[r.Verdict]++
			switch r.Verdict {
			case subscription.NotListed:
				continue
			case subscription.Limited:
				log.Info("lifecycle action rationed: one ran for this subscription within the interval, or the process reached its limit",
					"subscription", r.SubscriptionID, "event", string(r.Event))
				continue
			case subscription.Failed:
				what := fmt.Sprintf("renewing subscription %q", r.SubscriptionID)
				if r.Event == graph.SubscriptionRemoved {
					what = fmt.Sprintf("recreating subscription %q", r.SubscriptionID)
				}
				if err := fail(what, r.Err, a.notes); err != nil {
					return nil, err
				}
				continue
			}
			if r.Mailbox != "" {
				// A mailbox subscription: a renewal (or a recreation, which caught its mailbox up) is done;
				// missed is caught up here, from the mailbox itself rather than by a delta pass.
				if r.Event != graph.Missed {
					done = append(done, fmt.Sprintf("renewed mailbox subscription %q (%s): %s", r.SubscriptionID, r.Mailbox, r.Outcome.Note))
					continue
				}
				log.Warn("Graph reports missed change notifications", "subscription", r.SubscriptionID, "resource", r.Mailbox)
				catchUps = append(catchUps, catchUp{r.Mailbox, r.SubscriptionID, a.notes, r})
				continue
			}
			if r.Event != graph.Missed {
				done = append(done, fmt.Sprintf("%s subscription %q (%s)", r.Outcome.Action, r.Outcome.ID, r.Resource.Path()))
			} else {
				log.Warn("Graph reports missed change notifications", "subscription", r.SubscriptionID, "resource", r.Resource.Path())
			}
			// Graph pauses delivery until a reauthorization, a removed subscription delivered nothing, and
			// missed says so: what changed meanwhile is lost to notifications. A delta pass of the
			// subscription's collection is cheap, and collapses into one already running.
			resyncs[r.Resource.Collection] = append(resyncs[r.Resource.Collection], string(r.Event))
			resyncNotes = append(resyncNotes, a.notes)
			resyncResults = append(resyncResults, r)
		}
		if n := verdicts[subscription.NotListed]; n > 0 {
			log.Warn("dropped lifecycle notifications for subscriptions that are not this app's (Graph does not list them)", "count", n)
		}
	}
	for _, c := range catchUps {
		if f.d.CatchUp == nil {
			log.Warn("no mailbox catch-up is wired: changes Graph did not deliver stay missing", "resource", c.resource)
			continue
		}
		n, truncated, err := f.d.CatchUp.Run(work, c.resource, c.subscription)
		if err != nil {
			// The missed took its rationing slot; the retry needs it back to catch up.
			f.d.Subscriptions.Release(c.result)
			if err := fail("catching up "+c.resource, err, c.notes); err != nil {
				return nil, err
			}
			continue
		}
		if truncated {
			log.Warn("the mailbox catch-up reached its bound; older changes of the gap are not re-read", "resource", c.resource, "items", n)
		}
		done = append(done, fmt.Sprintf("caught up %s (%d items queued)", c.resource, n))
	}
	if legacyResync {
		for _, c := range cfg.Collections() {
			resyncs[c] = append(resyncs[c], "eventhub batch too large")
		}
	}
	switch {
	case len(resyncs) == 0:
	case f.d.Resync == nil:
		log.Warn("no resync is wired: changes Graph did not deliver stay missing until one runs")
	default:
		var failed error
		for _, c := range slices.Sorted(maps.Keys(resyncs)) {
			reasons := resyncs[c]
			slices.Sort(reasons)
			if err := f.d.Resync.RequestResync(work, c, strings.Join(slices.Compact(reasons), ",")); err != nil && failed == nil {
				failed = err
			}
		}
		if failed != nil {
			// The retry repeats the actions (converging is idempotent) and then the resync: it needs their
			// rationing slots back, or it would be Limited and the resync never requested.
			for _, r := range resyncResults {
				f.d.Subscriptions.Release(r)
			}
			if err := fail("requesting a resync", failed, resyncNotes...); err != nil {
				return nil, err
			}
		} else {
			done = append(done, "requested a resync")
		}
	}

	summary := fmt.Sprintf("%d lifecycle notifications (%d %s, %d %s, %d %s; %d ignored, %d for subscriptions not this app's, %d rationed)", len(m.Notifications),
		count[graph.ReauthorizationRequired], graph.ReauthorizationRequired, count[graph.SubscriptionRemoved], graph.SubscriptionRemoved,
		count[graph.Missed], graph.Missed, len(ignored), verdicts[subscription.NotListed], verdicts[subscription.Limited])
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

// legacyBatchTooLarge is the subscriptionId of the missed notification an earlier version of the eventhub
// function queued for a batch too large to read; such a message, still queued, asks for a resync of every
// collection. It names no tenant, which no notification that passed the intake lacks.
const legacyBatchTooLarge = "eventhub-batch-too-large"
