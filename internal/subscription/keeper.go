// Package subscription keeps this app's Graph subscriptions alive without any state of its own: Graph
// already knows the app's subscriptions, so every run lists them, and converges, for each entry of
// GRAPH_RESOURCE, on exactly one subscription with GRAPH_CHANGE_TYPE that is current (right URLs, current
// clientState) and far from expiry. The renew timer runs it every hour, the queue worker when a lifecycle
// notification asks, and `handler unsubscribe` removes what it keeps.
//
// The rules, in the order a run applies them to each resource:
//   - The candidates are this app's subscriptions for the resource and the change types (Graph allows one per
//     pair, and lists only the calling app's subscriptions under application permissions; see
//     docs/graph-facts.md).
//   - A candidate is stale when its lifecycle URL differs from the configured one (Graph cannot PATCH it,
//     docs/graph-facts.md) or when its clientState is not known to be GRAPH_CLIENT_STATE. Graph never returns clientState,
//     so each subscription carries a fingerprint of it in its notification URL (query parameter cs, which
//     Graph preserves); a missing or other fingerprint is not current. Stale subscriptions are deleted and
//     a new one is created. Changes that fall between the delete and the create are what a resync recovers.
//   - Of several good candidates (a race between instances can leave two), the longest-lived is kept, then
//     the lowest id; the rest are deleted. Every instance makes the same choice, so concurrent runs converge.
//   - The kept subscription is renewed with one PATCH, which also reauthorizes it, when less than RenewBelow
//     of its life is left, or always in RenewNow mode (a reauthorizationRequired lifecycle event). A changed
//     notification URL (a rotated function key) rides on the same PATCH. A 404 means Graph dropped it: create.
//   - With none left, create one for Lifetime, then list again to settle a race with another instance; a 409
//     on create means another instance won, and its subscription is adopted.
package subscription

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/family"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/logctx"
)

const (
	// MaxLifetime is Graph's maximum for user and group subscriptions (41,760 minutes; docs/graph-facts.md).
	MaxLifetime = family.DirectoryMaxLifetime
	// Lifetime is what a create or renewal of a user or group subscription asks for: the maximum less an
	// hour, so clock skew between this machine and Graph never pushes a request past the maximum. Each
	// family's plan says its own (family.Plan.Lifetime).
	Lifetime = MaxLifetime - time.Hour
	// RenewBelow is the remaining life under which a run renews. A renewal leaves about 29 days, so with an
	// hourly timer a subscription is renewed every three days and always has at least 26 days left: it
	// survives 26 days without any timer run.
	RenewBelow = 26 * 24 * time.Hour
	// FingerprintParam is the notification-URL query parameter holding the clientState fingerprint.
	FingerprintParam = "cs"
)

// Graph is what the keeper needs of the Graph client.
type Graph interface {
	ListSubscriptions(ctx context.Context) ([]graph.Subscription, error)
	CreateSubscription(ctx context.Context, s graph.Subscription) (graph.Subscription, error)
	UpdateSubscription(ctx context.Context, id string, u graph.SubscriptionUpdate) (graph.Subscription, error)
	DeleteSubscription(ctx context.Context, id string) error
}

// Mode says how eager a run is.
type Mode int

const (
	Normal   Mode = iota // renew only when below RenewBelow
	RenewNow             // renew whatever the remaining life (reauthorizationRequired)
)

// Action is what a run did to the kept subscription.
type Action string

const (
	Created   Action = "created"   // there was none
	Recreated Action = "recreated" // there was one, but it was stale or Graph had dropped it
	Renewed   Action = "renewed"
	Unchanged Action = "unchanged"
)

// Outcome is the result of one run for one resource.
type Outcome struct {
	Resource string // the GRAPH_RESOURCE entry, e.g. "users"
	Action   Action
	ID       string
	Expiry   time.Time
	Deleted  []string // duplicates and stale subscriptions removed
	Note     string   // a run over many subscriptions (the mailboxes): its summary, which Summary returns
}

// Summary is one line for the log and the invocation's Logs.
func (o Outcome) Summary(now time.Time) string {
	if o.Note != "" {
		return o.Note
	}
	s := fmt.Sprintf("%s: subscription %s %s, expires %s (%.1f days left)", o.Resource, o.ID, o.Action, o.Expiry.UTC().Format(time.RFC3339), o.Expiry.Sub(now).Hours()/24)
	if len(o.Deleted) > 0 {
		s += fmt.Sprintf("; deleted %d other(s): %s", len(o.Deleted), strings.Join(o.Deleted, ", "))
	}
	return s
}

// Gap is told that notifications for a collection may have been lost (a subscription was created or
// recreated), so that a resync can recover them.
type Gap func(ctx context.Context, collection, reason string) error

// Keeper runs the create-or-renew logic. It is shared by the timer, the queue worker's lifecycle handling
// and the commands; runs within one process are serialized. Lifecycle notifications are judged and
// rationed outside that serialization (see Lifecycle).
type Keeper struct {
	cfg   *config.Config
	graph func() (Graph, error)
	now   func() time.Time
	gap   Gap

	settleDelay time.Duration  // first wait for a competing create to be listed; doubles, five tries
	mailboxes   *MailboxKeeper // GRAPH_MAILBOXES' subscriptions; nil: none
	mu          sync.Mutex
	pendingGap  map[string]string // collection → a gap whose resync request failed: asked again first
	limits      lifecycleLimits
}

// New returns a keeper using the app settings, a lazily built Graph client and the clock now. gap may be
// nil.
func New(cfg *config.Config, g func() (Graph, error), gap Gap, now func() time.Time) *Keeper {
	if now == nil {
		panic("subscription.New: now is nil: the clock is given, never taken")
	}
	return &Keeper{cfg: cfg, graph: g, gap: gap, now: now, settleDelay: time.Second,
		pendingGap: map[string]string{}, limits: lifecycleLimits{last: map[string]time.Time{}}}
}

// The bounds on lifecycle notifications. They act only on this app's own subscriptions (an id Graph lists
// for the app), and still a forged lifecycle message needs only the clientState, so every action is rationed:
//   - LifecycleInterval: at most one renewal or recreation per subscription (and one catch-up for a missed
//     event) per interval. Graph asks apps not to reauthorize or PATCH a subscription more often than every
//     10 minutes.
//   - MaxLifecycleActions: at most this many actions per LifecycleInterval for the whole process, whatever
//     the ids, so that the Graph budget a flood of notifications can spend is fixed.
//   - ListReuse: the subscription list that judges the ids is reused this long (this keeper's own creates
//     and deletes refresh it), so a flood of messages costs at most one list call per ListReuse.
const (
	LifecycleInterval   = 10 * time.Minute
	MaxLifecycleActions = 10
	ListReuse           = time.Minute
)

// LifecycleRequest is one subscription's lifecycle event, as a notification reported it.
type LifecycleRequest struct {
	SubscriptionID string // a GUID (the intake drops any other)
	Event          graph.LifecycleEvent
}

// Verdict says what became of a LifecycleRequest.
type Verdict string

const (
	// Acted: the subscription lists as this app's, for Resource. reauthorizationRequired and
	// subscriptionRemoved renewed (or recreated) it; missed needs no Graph call, and the caller catches up
	// Resource. For a subscriptionRemoved whose id no longer lists, Acted means Graph's list showed Resource
	// without a subscription of this app, and one was created.
	Acted Verdict = "acted"
	// Limited: an action for the same subscription ran within LifecycleInterval, or the process reached
	// MaxLifecycleActions; nothing was done.
	Limited Verdict = "limited"
	// NotListed: Graph does not list the id as this app's subscription for a configured resource, or as a
	// current subscription of this app for a mailbox GRAPH_MAILBOXES follows; nothing was done.
	NotListed Verdict = "not listed"
	// Failed: the action was tried and failed (Err says how).
	Failed Verdict = "failed"
)

// LifecycleResult is the outcome of one LifecycleRequest.
type LifecycleResult struct {
	LifecycleRequest
	Verdict  Verdict
	Resource config.ResourceSpec // Acted, Limited, Failed: the configured resource the subscription is for
	Outcome  Outcome             // Acted for a renewal or recreation: what the run did
	Err      error               // Failed
	// Mailbox is, for a mailbox subscription, its resource (users/{id}/messages or users/{id}/events),
	// which a missed asks the caller to catch up; Resource is then empty.
	Mailbox string

	held reservation // Acted: the rationing slot the action took, which Release gives back
}

// reservation is one rationing slot taken: its key and when.
type reservation struct {
	key string
	at  time.Time
}

// Release gives back the rationing slot of an Acted result whose follow-up failed: the caller's catch-up
// of a missed, or the resync a renewal or recreation asks for. The caller retries the event later, and
// without the slot the retry would be Limited and the follow-up would never run. The retry repeats the
// action too (a renewal is idempotent) and takes the slot again, so the limits still bound what a flood
// of notifications can cause: a slot comes back only when this process's own follow-up failed.
func (k *Keeper) Release(r LifecycleResult) {
	if r.Verdict != Acted || r.held.key == "" {
		return
	}
	k.limits.release(r.held.key, r.held.at)
}

// lifecycleLimits is the rationing state: only ids that list as this app's (or the keys of configured
// resources) enter it, and entries older than LifecycleInterval are pruned on every use, so it never holds
// more than a few entries per configured resource.
type lifecycleLimits struct {
	listing  sync.Mutex // one lifecycle list call at a time: concurrent invocations share its answer
	mu       sync.Mutex // never held across a Graph call
	last     map[string]time.Time
	recent   []time.Time // the process's actions within LifecycleInterval, at most MaxLifecycleActions
	listed   []graph.Subscription
	listedAt time.Time
}

// take reserves an action for key at now, or reports that a limit forbids it.
func (l *lifecycleLimits) take(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, t := range l.last {
		if now.Sub(t) >= LifecycleInterval {
			delete(l.last, k)
		}
	}
	l.recent = slices.DeleteFunc(l.recent, func(t time.Time) bool { return now.Sub(t) >= LifecycleInterval })
	if _, ok := l.last[key]; ok || len(l.recent) >= MaxLifecycleActions {
		return false
	}
	l.last[key] = now
	l.recent = append(l.recent, now)
	return true
}

// release gives back a reservation whose action failed, so that a retry is not refused for it.
func (l *lifecycleLimits) release(key string, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.last[key]; ok && t.Equal(at) {
		delete(l.last, key)
	}
	if i := slices.IndexFunc(l.recent, func(t time.Time) bool { return t.Equal(at) }); i >= 0 {
		l.recent = slices.Delete(l.recent, i, i+1)
	}
}

// Lifecycle acts on lifecycle events, each for the one subscription it names, and only when Graph lists
// that id as this app's subscription for a configured resource: reauthorizationRequired and
// subscriptionRemoved renew it with one PATCH (which reauthorizes it; a 404 recreates it), missed calls
// nothing and returns the resource for the caller to catch up. An id that does not list is NotListed and
// nothing is done for it, with one exception that needs no trust in the id: a subscriptionRemoved when the
// list shows a configured resource without any subscription of this app (Graph removed it, so it cannot
// list) creates that resource's subscription. Every action is rationed (LifecycleInterval per subscription,
// MaxLifecycleActions for the process); a rationed one is Limited.
//
// One list call serves every request (and later calls within ListReuse). The keeper's lock, which the
// timer's runs take, is held only by the actions themselves, so the number of times a flood can take it is
// the rationed number of actions. The error is the listing's: then nothing was done.
func (k *Keeper) Lifecycle(ctx context.Context, reqs []LifecycleRequest) ([]LifecycleResult, error) {
	if len(reqs) == 0 {
		return nil, nil
	}
	all, err := k.listForLifecycle(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]LifecycleResult, len(reqs))
	for i, r := range reqs {
		res := LifecycleResult{LifecycleRequest: r, Verdict: NotListed}
		key := ""
		if spec, ok := k.listedResource(all, r.SubscriptionID); ok {
			res.Resource = spec
			key = "subscription " + strings.ToLower(r.SubscriptionID)
		} else if sub, ok := k.listedMailbox(all, r.SubscriptionID); ok {
			out[i] = k.mailboxLifecycle(ctx, res, sub)
			continue
		} else if r.Event == graph.SubscriptionRemoved {
			if spec, ok := k.uncovered(all); ok {
				res.Resource = spec
				key = "resource " + spec.Path()
			} else if k.mailboxes != nil && k.cfg.Mailboxes.Configured() {
				out[i] = k.mailboxRemoved(ctx, res)
				continue
			}
		}
		if key == "" {
			out[i] = res
			continue
		}
		if r.Event == graph.Missed {
			key += " missed"
		}
		now := k.now()
		if !k.limits.take(key, now) {
			res.Verdict = Limited
			out[i] = res
			continue
		}
		res.Verdict, res.held = Acted, reservation{key, now}
		if r.Event != graph.Missed {
			o, err := k.EnsureResource(ctx, res.Resource, RenewNow)
			res.Outcome = o
			if err != nil {
				k.limits.release(key, now)
				res.Verdict, res.Err = Failed, err
			}
		}
		out[i] = res
	}
	return out, nil
}

// listedMailbox returns the mailbox subscription of this app that id names, when it is one the mailbox
// keeper keeps: for a mailbox GRAPH_MAILBOXES follows (MailboxKeeper.Follows) and current (not stale).
// Any other the timer's next run deletes; acting on it would renew it, rewrite its notification URL, or
// after a 404 create one for a mailbox that is not configured.
func (k *Keeper) listedMailbox(all []graph.Subscription, id string) (graph.Subscription, bool) {
	if k.mailboxes == nil || !k.cfg.Mailboxes.Configured() {
		return graph.Subscription{}, false
	}
	for _, s := range all {
		if !strings.EqualFold(s.ID, id) || !sameChangeTypes(s.ChangeType, []string{"created", "deleted", "updated"}) {
			continue
		}
		if k.mailboxes.Follows(s.Resource) && k.stale(s) == "" {
			return s, true
		}
	}
	return graph.Subscription{}, false
}

// mailboxLifecycle acts on a lifecycle event of a listed mailbox subscription, under the same rationing as
// the others: missed needs no Graph call (the caller catches up res.Mailbox); reauthorizationRequired and
// subscriptionRemoved renew it with one PATCH (a 404 recreates it and catches it up).
func (k *Keeper) mailboxLifecycle(ctx context.Context, res LifecycleResult, sub graph.Subscription) LifecycleResult {
	user, kind, _ := ParseMailboxResource(sub.Resource)
	res.Mailbox = MailboxResource(user, kind)
	key := "subscription " + strings.ToLower(sub.ID)
	if res.Event == graph.Missed {
		key += " missed"
	}
	now := k.now()
	if !k.limits.take(key, now) {
		res.Verdict = Limited
		return res
	}
	res.Verdict, res.held = Acted, reservation{key, now}
	if res.Event == graph.Missed {
		return res
	}
	defer k.forgetListing()
	mo, err := k.mailboxes.RenewOne(ctx, sub)
	res.Outcome = Outcome{Resource: res.Mailbox, Action: Renewed, ID: sub.ID, Note: mo.Summary()}
	if err != nil {
		k.limits.release(key, now)
		res.Verdict, res.Err = Failed, err
	}
	return res
}

// mailboxRemoved acts on a subscriptionRemoved whose id no longer lists, when every configured directory
// resource has its subscription: one of the mailboxes' went. A recovering run creates what is missing and
// catches up each mailbox it subscribes again. One such run per LifecycleInterval.
func (k *Keeper) mailboxRemoved(ctx context.Context, res LifecycleResult) LifecycleResult {
	const key = "mailboxes removed"
	now := k.now()
	if !k.limits.take(key, now) {
		res.Verdict = Limited
		return res
	}
	defer k.forgetListing()
	res.Verdict = Acted
	mo, err := k.mailboxes.Recover(ctx)
	res.Outcome = Outcome{Resource: "mailboxes", Action: Recreated, Note: mo.Summary()}
	if err != nil {
		k.limits.release(key, now)
		res.Verdict, res.Err = Failed, err
	}
	return res
}

// listForLifecycle returns this app's subscriptions, listed at most ListReuse ago.
func (k *Keeper) listForLifecycle(ctx context.Context) ([]graph.Subscription, error) {
	k.limits.listing.Lock()
	defer k.limits.listing.Unlock()
	now := k.now()
	k.limits.mu.Lock()
	if !k.limits.listedAt.IsZero() && now.Sub(k.limits.listedAt) < ListReuse && now.Sub(k.limits.listedAt) >= 0 {
		all := k.limits.listed
		k.limits.mu.Unlock()
		return all, nil
	}
	k.limits.mu.Unlock()
	g, err := k.graph()
	if err != nil {
		return nil, fmt.Errorf("graph client: %w", err)
	}
	all, err := g.ListSubscriptions(ctx)
	if err != nil {
		return nil, explain("list subscriptions", "", err)
	}
	k.limits.mu.Lock()
	k.limits.listed, k.limits.listedAt = all, now
	k.limits.mu.Unlock()
	return all, nil
}

// forgetListing makes the next lifecycle call list again: this keeper changed what Graph would list.
func (k *Keeper) forgetListing() {
	k.limits.mu.Lock()
	k.limits.listed, k.limits.listedAt = nil, time.Time{}
	k.limits.mu.Unlock()
}

// listedResource returns the configured resource that subscription id is this app's subscription for.
func (k *Keeper) listedResource(all []graph.Subscription, id string) (config.ResourceSpec, bool) {
	for _, s := range all {
		if !strings.EqualFold(s.ID, id) {
			continue
		}
		for _, p := range k.cfg.Plans() {
			if Matches(s, p.Resource, p.ChangeTypes) {
				return p.Entry, true
			}
		}
	}
	return config.ResourceSpec{}, false
}

// uncovered returns the first configured resource for which the list holds no subscription of this app.
func (k *Keeper) uncovered(all []graph.Subscription) (config.ResourceSpec, bool) {
	for _, p := range k.cfg.Plans() {
		if len(Mine(all, p)) == 0 {
			return p.Entry, true
		}
	}
	return config.ResourceSpec{}, false
}

// settings are what every run needs.
var settings = []string{config.TenantID, config.ClientID, config.NotificationURL, config.LifecycleNotificationURL,
	config.ClientState, config.ClientStatePrevious, config.Resource, config.ChangeType}

// Ensure runs the rules of the package doc once for every resource. A failure for one resource does not
// stop the others; the errors are returned together.
func (k *Keeper) Ensure(ctx context.Context, mode Mode) ([]Outcome, error) {
	var outs []Outcome
	var errs []error
	for _, r := range k.cfg.Resources {
		out, err := k.EnsureResource(ctx, r, mode)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", r.Path(), err))
			continue
		}
		outs = append(outs, out)
	}
	if k.mailboxes != nil && k.cfg.Mailboxes.Configured() {
		mo, err := k.mailboxes.Run(ctx)
		outs = append(outs, Outcome{Resource: "mailboxes", Action: Unchanged, Note: mo.Summary()})
		if err != nil {
			errs = append(errs, fmt.Errorf("mailboxes: %w", err))
		}
	}
	return outs, errors.Join(errs...)
}

// SetMailboxes makes the keeper's runs and lifecycle handling cover GRAPH_MAILBOXES' subscriptions too.
func (k *Keeper) SetMailboxes(m *MailboxKeeper) { k.mailboxes = m }

// EnsureResource runs the rules of the package doc once for one resource.
func (k *Keeper) EnsureResource(ctx context.Context, res config.ResourceSpec, mode Mode) (Outcome, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	defer k.forgetListing() // a run may create or delete: lifecycle notifications are judged by a new list
	if err := k.cfg.Check(settings...); err != nil {
		return Outcome{}, err
	}
	plan, ok := k.cfg.PlanOf(res)
	if !ok {
		return Outcome{}, fmt.Errorf("%s names no resource family the product follows", res.Path())
	}
	if why := k.pendingGap[plan.Scope]; why != "" && k.gap != nil {
		if err := k.gap(ctx, plan.Scope, why); err != nil {
			return Outcome{}, fmt.Errorf("resync after %s (still pending): %w", why, err)
		}
		delete(k.pendingGap, plan.Scope)
	}
	g, err := k.graph()
	if err != nil {
		return Outcome{}, fmt.Errorf("graph client: %w", err)
	}
	log := logctx.From(ctx)

	subs, err := k.mine(ctx, g, plan)
	if err != nil {
		return Outcome{}, err
	}
	out := Outcome{Resource: res.Path()}
	var good []graph.Subscription
	for _, s := range subs {
		if reason := k.stale(s); reason != "" {
			log.Warn("deleting a stale subscription", "id", s.ID, "reason", reason)
			if err := deleteIgnoringNotFound(ctx, g, s.ID); err != nil {
				return out, err
			}
			out.Deleted = append(out.Deleted, s.ID)
			continue
		}
		good = append(good, s)
	}
	hadOne := len(subs) > 0

	keep, extra := choose(good)
	for _, s := range extra {
		if err := deleteIgnoringNotFound(ctx, g, s.ID); err != nil {
			return out, err
		}
		out.Deleted = append(out.Deleted, s.ID)
	}

	if keep != nil {
		renewed, action, err := k.renew(ctx, g, *keep, plan, mode)
		switch {
		case err == nil:
			out.Action, out.ID, out.Expiry = action, renewed.ID, renewed.ExpirationDateTime
			return out, nil
		case errors.Is(err, graph.ErrNotFound):
			log.Warn("the subscription is gone on Graph's side; creating a new one", "id", keep.ID)
		default:
			return out, err
		}
	}

	created, err := k.create(ctx, g, plan)
	if err != nil {
		return out, err
	}
	out.Action, out.ID, out.Expiry = Created, created.ID, created.ExpirationDateTime
	if hadOne {
		out.Action = Recreated
	}
	// Settle a race with another instance that created one at the same moment.
	subs, err = k.mine(ctx, g, plan)
	if err != nil {
		return out, err
	}
	var current []graph.Subscription
	for _, s := range subs {
		if k.stale(s) == "" {
			current = append(current, s)
		}
	}
	if keep, extra := choose(current); keep != nil && keep.ID != out.ID {
		out.ID, out.Expiry = keep.ID, keep.ExpirationDateTime
		for _, s := range extra {
			if err := deleteIgnoringNotFound(ctx, g, s.ID); err != nil {
				return out, err
			}
			out.Deleted = append(out.Deleted, s.ID)
		}
	}
	if k.gap != nil && plan.Scope != "" {
		// Notifications may have been lost before the subscription existed: the resync must happen. If it
		// cannot be requested now, fail the run (the retry policy runs it again soon) and ask first next time.
		reason := "subscription " + string(out.Action)
		if err := k.gap(ctx, plan.Scope, reason); err != nil {
			k.pendingGap[plan.Scope] = reason
			return out, fmt.Errorf("subscription %s, but the resync it needs could not be requested (asked again on the next run): %w", out.Action, err)
		}
	}
	return out, nil
}

// mine lists this app's subscriptions for a plan.
func (k *Keeper) mine(ctx context.Context, g Graph, plan family.Plan) ([]graph.Subscription, error) {
	all, err := g.ListSubscriptions(ctx)
	if err != nil {
		return nil, explain("list subscriptions", plan.Permission, err)
	}
	return Mine(all, plan), nil
}

// Mine picks, from a list of this app's subscriptions, those of a plan (its resource and change types):
// the rule the keeper converges by, for anyone who reports on subscriptions.
func Mine(all []graph.Subscription, plan family.Plan) []graph.Subscription {
	var out []graph.Subscription
	for _, s := range all {
		if Matches(s, plan.Resource, plan.ChangeTypes) {
			out = append(out, s)
		}
	}
	return out
}

// Matches reports whether s is this app's subscription for resource and changeTypes (sorted, as in
// config.Config.ChangeTypes): the rule the keeper converges on, shared with `handler status`.
func Matches(s graph.Subscription, resource string, changeTypes []string) bool {
	return sameResource(s.Resource, resource) && sameChangeTypes(s.ChangeType, changeTypes)
}

// stale says why s cannot be kept, or "".
func (k *Keeper) stale(s graph.Subscription) string {
	if !sameURL(s.LifecycleNotificationURL, k.cfg.LifecycleNotificationURL) {
		return "its lifecycle notification URL differs, and Graph cannot change it"
	}
	switch fp := fingerprintOf(s.NotificationURL); {
	case fp == Fingerprint(k.cfg.ClientState):
		return ""
	case k.cfg.ClientStatePrevious.IsSet() && fp == Fingerprint(k.cfg.ClientStatePrevious):
		return "it was made with GRAPH_CLIENT_STATE_PREVIOUS (rotation)"
	case fp == "" && IsEventHub(s.NotificationURL) && !k.cfg.ClientStatePrevious.IsSet():
		// Whether Graph keeps a query parameter of its own in an EventHub: URL is not documented. When it
		// drops the fingerprint, a subscription to the configured hub is taken as current: with no rotation
		// under way the clientState can only be GRAPH_CLIENT_STATE, or its notifications fail verification
		// and say so in the intake's log.
		return ""
	case fp == "" && IsEventHub(s.NotificationURL):
		return "Graph kept no clientState fingerprint in its Event Hubs URL and GRAPH_CLIENT_STATE_PREVIOUS is set (rotation): recreated with GRAPH_CLIENT_STATE; remove GRAPH_CLIENT_STATE_PREVIOUS once this has run"
	default:
		return "its clientState is not known to be GRAPH_CLIENT_STATE"
	}
}

// renewBelow is RenewBelow, or half the plan's lifetime for a family whose subscriptions live no longer
// than RenewBelow (Teams messages: three days), so that a run does not renew them every time.
func renewBelow(plan family.Plan) time.Duration {
	if plan.Lifetime > RenewBelow {
		return RenewBelow
	}
	return plan.Lifetime / 2
}

func (k *Keeper) renew(ctx context.Context, g Graph, s graph.Subscription, plan family.Plan, mode Mode) (graph.Subscription, Action, error) {
	now := k.now()
	var u graph.SubscriptionUpdate
	if want := k.notificationURL(); !sameURL(s.NotificationURL, want) {
		u.NotificationURL = want // a rotated function key, or a moved app
	}
	if plan.IncludeResourceData {
		cur, _, err := k.cfg.EncryptionCertificates(now)
		if err != nil {
			return s, "", fmt.Errorf("renew subscription %s: %w", s.ID, err)
		}
		if s.EncryptionCertificateID != cur.ID() || (s.EncryptionCertificate != "" && s.EncryptionCertificate != cur.PublicBase64()) {
			// Rotation: the subscription moves to the current certificate; notifications already encrypted
			// for the previous one still open while GRAPH_ENCRYPTION_CERTIFICATE_PREVIOUS holds it.
			u.EncryptionCertificate, u.EncryptionCertificateID = cur.PublicBase64(), cur.ID()
		}
	}
	if u.NotificationURL == "" && u.EncryptionCertificateID == "" && mode == Normal && s.ExpirationDateTime.Sub(now) >= renewBelow(plan) {
		return s, Unchanged, nil
	}
	u.ExpirationDateTime = now.Add(plan.Lifetime)
	updated, err := g.UpdateSubscription(ctx, s.ID, u)
	if err != nil {
		if errors.Is(err, graph.ErrNotFound) {
			return s, "", err
		}
		return s, "", explain("renew subscription "+s.ID, plan.Permission, err)
	}
	if updated.ExpirationDateTime.IsZero() {
		updated.ExpirationDateTime = u.ExpirationDateTime
	}
	if updated.ID == "" {
		updated.ID = s.ID
	}
	if updated.EncryptionCertificateID == "" {
		updated.EncryptionCertificateID = s.EncryptionCertificateID
		if u.EncryptionCertificateID != "" {
			updated.EncryptionCertificateID = u.EncryptionCertificateID
		}
	}
	return updated, Renewed, nil
}

func (k *Keeper) create(ctx context.Context, g Graph, plan family.Plan) (graph.Subscription, error) {
	req := graph.Subscription{
		ChangeType:                plan.ChangeType(),
		NotificationURL:           k.notificationURL(),
		LifecycleNotificationURL:  k.cfg.LifecycleNotificationURL,
		Resource:                  plan.Resource,
		ExpirationDateTime:        k.now().Add(plan.Lifetime),
		ClientState:               k.cfg.ClientState.Reveal(),
		LatestSupportedTLSVersion: "v1_2",
	}
	if plan.IncludeResourceData {
		cert, _, err := k.cfg.EncryptionCertificates(k.now())
		if err != nil {
			return graph.Subscription{}, fmt.Errorf("create subscription: %w", err)
		}
		// The certificate alone: its private key never leaves the process.
		req.IncludeResourceData, req.EncryptionCertificate, req.EncryptionCertificateID = true, cert.PublicBase64(), cert.ID()
	}
	created, err := g.CreateSubscription(ctx, req)
	if errors.Is(err, graph.ErrConflict) {
		// Another instance is creating it: adopt that one once Graph lists it, which may take until its
		// validation handshake (up to 10 s) is done.
		delay := k.settleDelay
		for range 5 {
			subs, lerr := k.mine(ctx, g, plan)
			if lerr != nil {
				return created, lerr
			}
			if keep, _ := choose(subs); keep != nil {
				return *keep, nil
			}
			select {
			case <-ctx.Done():
				return created, context.Cause(ctx)
			case <-time.After(delay):
			}
			delay *= 2
		}
	}
	if err != nil {
		return created, explain("create subscription", plan.Permission, err)
	}
	return created, nil
}

// eventHubPrefix starts a notification URL that has Graph deliver into Azure Event Hubs rather than POST to
// a webhook: EventHub:https://<namespace>.servicebus.windows.net/eventhubname/<hub>?tenantId=<domain>.
// Graph validates no handshake for it.
const eventHubPrefix = "eventhub:"

// IsEventHub reports whether a notification URL delivers into Event Hubs.
func IsEventHub(u string) bool {
	return len(u) >= len(eventHubPrefix) && strings.EqualFold(u[:len(eventHubPrefix)], eventHubPrefix)
}

// splitURL parses a notification URL, an EventHub: one as its inner https URL, and returns the prefix.
func splitURL(s string) (prefix string, u *url.URL, err error) {
	if IsEventHub(s) {
		prefix, s = s[:len(eventHubPrefix)], s[len(eventHubPrefix):]
	}
	u, err = url.Parse(s)
	return prefix, u, err
}

// notificationURL is GRAPH_NOTIFICATION_URL with the clientState fingerprint added (for an EventHub: URL,
// to its inner URL's query, beside tenantId).
func (k *Keeper) notificationURL() string {
	prefix, u, err := splitURL(k.cfg.NotificationURL)
	if err != nil {
		return k.cfg.NotificationURL // config already refused it
	}
	q := u.Query()
	q.Set(FingerprintParam, Fingerprint(k.cfg.ClientState))
	u.RawQuery = q.Encode()
	return prefix + u.String()
}

// Fingerprint is a short, non-secret digest of a clientState: enough to tell secrets apart, far too little
// to recover one.
func Fingerprint(s config.Secret) string {
	sum := sha256.Sum256([]byte("graph-webhooks clientState fingerprint\x00" + s.Reveal()))
	return hex.EncodeToString(sum[:4])
}

func fingerprintOf(notificationURL string) string {
	_, u, err := splitURL(notificationURL)
	if err != nil {
		return ""
	}
	return u.Query().Get(FingerprintParam)
}

// sameURL compares two URLs (webhook or EventHub:) ignoring the fingerprint parameter and the order of
// query parameters.
func sameURL(a, b string) bool {
	pa, ua, errA := splitURL(a)
	pb, ub, errB := splitURL(b)
	if errA != nil || errB != nil || (pa == "") != (pb == "") {
		return a == b
	}
	qa, qb := ua.Query(), ub.Query()
	qa.Del(FingerprintParam)
	qb.Del(FingerprintParam)
	ua.RawQuery, ub.RawQuery = qa.Encode(), qb.Encode()
	return strings.EqualFold(ua.Scheme, ub.Scheme) && strings.EqualFold(ua.Host, ub.Host) &&
		strings.TrimSuffix(ua.Path, "/") == strings.TrimSuffix(ub.Path, "/") && ua.RawQuery == ub.RawQuery
}

// sameResource compares resource paths as Graph may echo them ("users", "/Users", "users/{id}").
func sameResource(got, want string) bool {
	return strings.EqualFold(strings.Trim(got, "/"), strings.Trim(want, "/"))
}

func sameChangeTypes(got string, want []string) bool {
	var g []string
	for _, t := range strings.Split(got, ",") {
		if t = strings.ToLower(strings.TrimSpace(t)); t != "" && !slices.Contains(g, t) {
			g = append(g, t)
		}
	}
	slices.Sort(g)
	return slices.Equal(g, want)
}

// choose keeps the longest-lived subscription, then the lowest id, so that every instance keeps the same one.
func choose(subs []graph.Subscription) (keep *graph.Subscription, rest []graph.Subscription) {
	if len(subs) == 0 {
		return nil, nil
	}
	sorted := slices.Clone(subs)
	slices.SortFunc(sorted, func(a, b graph.Subscription) int {
		if c := b.ExpirationDateTime.Compare(a.ExpirationDateTime); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return &sorted[0], sorted[1:]
}

func deleteIgnoringNotFound(ctx context.Context, g Graph, id string) error {
	if err := g.DeleteSubscription(ctx, id); err != nil && !errors.Is(err, graph.ErrNotFound) {
		return explain("delete subscription "+id, "", err)
	}
	return nil
}

// explain adds what a person should check to the errors that have a usual cause; permission is the
// application permission the resource needs ("" when the call concerns every resource).
func explain(op, permission string, err error) error {
	if permission == "" {
		permission = anyPermission()
	}
	switch {
	case errors.Is(err, graph.ErrValidationFailed):
		return fmt.Errorf("%s: Graph could not validate the notification URL. Check that GRAPH_NOTIFICATION_URL is the public HTTPS address of the webhook function (a dev tunnel locally), that it carries the function key (?code=…), and that nothing in front of the function requires sign-in: %w", op, err)
	case errors.Is(err, graph.ErrForbidden):
		return fmt.Errorf("%s: Graph refused. Check that the app registration has the application permission %s with admin consent, and that the subscription quota is not reached: %w", op, permission, err)
	case errors.Is(err, graph.ErrUnauthorized):
		return fmt.Errorf("%s: no token for Graph. Check AZURE_TENANT_ID, AZURE_CLIENT_ID and the client secret or certificate: %w", op, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// anyPermission names the permissions of every family, for an error that concerns no one resource.
func anyPermission() string {
	parts := make([]string, len(family.Families))
	for i, f := range family.Families {
		parts[i] = f.Permission
	}
	return strings.Join(parts, "; ")
}

// Unsubscribe deletes this app's subscriptions for the configured resources and change types, and, with
// mailboxes wired (SetMailboxes), every mailbox subscription of this app, for a clean uninstall, and returns
// their ids.
func (k *Keeper) Unsubscribe(ctx context.Context) ([]string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	defer k.forgetListing()
	if err := k.cfg.Check(config.TenantID, config.ClientID, config.Resource, config.ChangeType); err != nil {
		return nil, err
	}
	g, err := k.graph()
	if err != nil {
		return nil, fmt.Errorf("graph client: %w", err)
	}
	var ids []string
	for _, plan := range k.cfg.Plans() {
		subs, err := k.mine(ctx, g, plan)
		if err != nil {
			return ids, err
		}
		for _, s := range subs {
			if err := deleteIgnoringNotFound(ctx, g, s.ID); err != nil {
				return ids, err
			}
			ids = append(ids, s.ID)
		}
	}
	if k.mailboxes == nil {
		return ids, nil
	}
	// Every mailbox subscription this app holds goes too, configured or not: Graph lists only this app's.
	all, err := g.ListSubscriptions(ctx)
	if err != nil {
		return ids, explain("list subscriptions", "", err)
	}
	for _, s := range all {
		if _, _, ok := ParseMailboxResource(s.Resource); !ok {
			continue
		}
		if err := deleteIgnoringNotFound(ctx, g, s.ID); err != nil {
			return ids, err
		}
		ids = append(ids, s.ID)
	}
	return ids, nil
}
