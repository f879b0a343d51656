package subscription

import (
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
)

// Mailbox subscriptions: one per mailbox per resource (users/{id}/messages, users/{id}/events), thousands of
// them, each living under three days. Graph's list of this app's subscriptions stays the state, as for the
// directory; what a run decides is a pure function of that list, the desired set, the refusals on record and
// the time (PlanMailboxes), so that it can be tested for 10,000 mailboxes without any I/O.
//
// The rules:
//   - Every subscription is created and renewed for MailboxLifetime (Graph's maximum, 4,230 minutes, less
//     half an hour for clock skew).
//   - A subscription is renewed once its remaining life falls below its own threshold (RenewThreshold):
//     MailboxUrgent plus a share of MailboxRenewSpread drawn from a hash of its id and expiry. Thresholds are
//     spread evenly, so subscriptions created in the same run (a new tenant) renew across a day of runs, and
//     stay spread. Each subscription is renewed every 25 to 45 hours: about 0.7 requests per mailbox and
//     resource per day.
//   - One with less than MailboxUrgent left (a day plus one timer period) is urgent: it comes first in the
//     run, so that the next run never finds one with less than a day left.
//   - The order within a run: urgent renewals (soonest expiry first), then creates (missing mailboxes,
//     and refused ones whose back-off is over), recreates of stale ones, deletes (departed mailboxes,
//     duplicates), then due renewals. A run takes what fits in its budget of requests (urgent renewals
//     always); the rest waits for the next run, which starts from Graph's list again.
//   - A subscription for a mailbox that is no longer desired is deleted, but only when the desired set is
//     known to be complete (every group of GRAPH_MAILBOXES could be read); otherwise nothing is deleted.
//   - A refused create (403: the mailbox's quota of 1,000 subscriptions over all apps, or an Exchange
//     application access policy; also 400/404, a mailbox that cannot be subscribed to) is recorded with
//     its reason, and not tried again before its back-off (MailboxRefusalBackoff, doubling up to
//     MailboxRefusalBackoffMax) is over. The other mailboxes are unaffected.
const (
	// MailboxMaxLifetime is Graph's maximum for Outlook subscriptions (docs/graph-facts.md, "Outlook mailboxes").
	MailboxMaxLifetime = 4230 * time.Minute
	// MailboxLifetime is what a create or renewal asks for.
	MailboxLifetime = MailboxMaxLifetime - 30*time.Minute
	// MailboxMustRenew is the least life a subscription may have when a run looks at it.
	MailboxMustRenew = 24 * time.Hour
	// MailboxRenewSpread is the width of the jittered renewal thresholds above the urgent one.
	MailboxRenewSpread = 20 * time.Hour
	// MailboxRefusalBackoff is the first wait after a refused create; it doubles with each refusal.
	MailboxRefusalBackoff = 12 * time.Hour
	// MailboxRefusalBackoffMax caps the wait.
	MailboxRefusalBackoffMax = 7 * 24 * time.Hour
)

// MailboxChangeTypes is the changeType of every mailbox subscription.
const MailboxChangeTypes = "created,updated,deleted"

// MailboxResource is the subscription resource of a mailbox's messages or events.
func MailboxResource(user, kind string) string { return "users/" + strings.ToLower(user) + "/" + kind }

// ParseMailboxResource reads a subscription resource of the form users/{guid}/messages or users/{guid}/events
// (any case, an optional leading slash): the user id in lower case and "messages" or "events".
func ParseMailboxResource(res string) (user, kind string, ok bool) {
	parts := strings.Split(strings.Trim(res, "/"), "/")
	if len(parts) != 3 || !strings.EqualFold(parts[0], "users") || !graph.IsGUID(parts[1]) {
		return "", "", false
	}
	switch k := strings.ToLower(parts[2]); k {
	case "messages", "events":
		return strings.ToLower(parts[1]), k, true
	}
	return "", "", false
}

// Refusal is Graph's refusal to subscribe to one mailbox resource, as recorded between runs.
type Refusal struct {
	Resource string    // users/{id}/messages or users/{id}/events
	Status   int       // Graph's HTTP status, e.g. 403
	Code     string    // Graph's error code
	Reason   string    // Graph's error message (what `handler status` shows)
	First    time.Time // first refusal of this series
	Last     time.Time // latest refusal
	Count    int       // refusals in a row
	RetryAt  time.Time // no create is tried before this
}

// Mailbox is the user id of the refused resource.
func (r Refusal) Mailbox() string {
	u, _, _ := ParseMailboxResource(r.Resource)
	return u
}

// nextRefusal records one more refusal on top of prev (zero for the first).
func nextRefusal(prev Refusal, resource string, status int, code, reason string, now time.Time) Refusal {
	r := Refusal{Resource: resource, Status: status, Code: code, Reason: reason, First: now, Last: now, Count: 1}
	if prev.Count > 0 {
		r.First, r.Count = prev.First, prev.Count+1
	}
	wait := MailboxRefusalBackoff
	for i := 1; i < r.Count && wait < MailboxRefusalBackoffMax; i++ {
		wait *= 2
	}
	r.RetryAt = now.Add(min(wait, MailboxRefusalBackoffMax))
	return r
}

// OpKind is what one step of a mailbox run does.
type OpKind int

const (
	OpRenew    OpKind = iota // PATCH the expiry (and the notification URL when it changed)
	OpCreate                 // POST a subscription
	OpRecreate               // DELETE stale subscriptions of the resource, then POST
	OpDelete                 // DELETE one subscription
)

func (k OpKind) String() string {
	return [...]string{"renew", "create", "recreate", "delete"}[k]
}

// Op is one step of a mailbox run.
type Op struct {
	Kind     OpKind
	Resource string             // the mailbox resource
	Sub      graph.Subscription // OpRenew, OpDelete: the subscription
	Stale    []string           // OpRecreate: the ids to delete first
	Urgent   bool               // OpRenew: below MailboxUrgent, or its notification URL must change
	Why      string             // for the log
}

// Cost is the number of Graph requests the step takes when all goes well.
func (o Op) Cost() int {
	if o.Kind == OpRecreate {
		return 1 + len(o.Stale)
	}
	return 1
}

// MailboxPlanInput is everything a run's decision depends on.
type MailboxPlanInput struct {
	Now time.Time
	// Desired are the mailbox resources the settings ask for (any case; duplicates ignored).
	Desired []string
	// Complete says Desired is the whole desired set; when false (a group could not be read) nothing is deleted.
	Complete bool
	// Existing is Graph's list of this app's subscriptions; those that are not mailbox subscriptions are ignored.
	Existing []graph.Subscription
	// Refusals are the refusals on record, by resource (lower case).
	Refusals map[string]Refusal
	// Stale says why a subscription cannot be kept (its lifecycle URL or clientState), "" when it is current.
	Stale func(graph.Subscription) string
	// URLChanged says whether a kept subscription's notification URL must be PATCHed (a rotated function key).
	URLChanged func(graph.Subscription) bool
	// Interval is the timer's period (default one hour): a subscription that would have less than
	// MailboxMustRenew left at the next run is urgent.
	Interval time.Duration
	// Budget is the most Graph requests the steps may take (≤ 0: unlimited).
	Budget int
}

// MailboxPlan is what a run will do, in order.
type MailboxPlan struct {
	Ops      []Op
	Deferred int       // steps left for a later run (budget)
	Kept     int       // current subscriptions left alone
	Waiting  []Refusal // refused resources still in their back-off
	Forget   []string  // refusals on record for resources no longer desired: dropped
}

// MailboxUrgent is the remaining life below which a renewal cannot wait for a later run.
func MailboxUrgent(interval time.Duration) time.Duration {
	if interval <= 0 {
		interval = time.Hour
	}
	return MailboxMustRenew + interval
}

// RenewThreshold is the remaining life below which a subscription is renewed: MailboxUrgent plus a share of
// MailboxRenewSpread drawn from a hash of its id and its current expiry. The id spreads subscriptions made in
// the same run; the expiry draws a new share at every renewal, so that periods do not stay whole multiples
// of one another and pile up in the same runs days later. Every instance computes the same threshold.
func RenewThreshold(s graph.Subscription, interval time.Duration) time.Duration {
	// SHA-256 rather than a faster hash: ids differ only in their last characters, which FNV carries
	// poorly into its high bits, and the thresholds must be evenly spread.
	sum := sha256.Sum256([]byte(strings.ToLower(s.ID) + "\x00" + strconv.FormatInt(s.ExpirationDateTime.Unix(), 10)))
	frac := float64(binary.BigEndian.Uint64(sum[:8])>>11) / float64(1<<53)
	return MailboxUrgent(interval) + time.Duration(frac*float64(MailboxRenewSpread))
}

// PlanMailboxes decides a run (see the rules above). It is pure: same input, same plan.
func PlanMailboxes(in MailboxPlanInput) MailboxPlan {
	var plan MailboxPlan
	desired := map[string]bool{}
	var order []string
	for _, r := range in.Desired {
		r = strings.ToLower(strings.Trim(r, "/"))
		if !desired[r] {
			desired[r] = true
			order = append(order, r)
		}
	}
	slices.Sort(order)

	byRes := map[string][]graph.Subscription{}
	for _, s := range in.Existing {
		if _, _, ok := ParseMailboxResource(s.Resource); !ok {
			continue
		}
		key := strings.ToLower(strings.Trim(s.Resource, "/"))
		byRes[key] = append(byRes[key], s)
	}

	var urgent, creates, recreates, deletes, due []Op
	urgentBelow := MailboxUrgent(in.Interval)
	for _, res := range order {
		subs := byRes[res]
		var good []graph.Subscription
		var stale []string
		for _, s := range subs {
			switch {
			case !sameChangeTypes(s.ChangeType, []string{"created", "deleted", "updated"}):
				stale = append(stale, s.ID)
			case in.Stale != nil && in.Stale(s) != "":
				stale = append(stale, s.ID)
			case !s.ExpirationDateTime.After(in.Now):
				// Expired but still listed: Graph will drop it; it counts as missing.
			default:
				good = append(good, s)
			}
		}
		keep, extra := choose(good)
		if keep == nil {
			if ref, ok := in.Refusals[res]; ok && in.Now.Before(ref.RetryAt) {
				plan.Waiting = append(plan.Waiting, ref)
				continue
			}
			if len(stale) > 0 {
				recreates = append(recreates, Op{Kind: OpRecreate, Resource: res, Stale: stale, Why: "stale"})
			} else {
				creates = append(creates, Op{Kind: OpCreate, Resource: res, Why: "missing"})
			}
			continue
		}
		for _, id := range stale {
			deletes = append(deletes, Op{Kind: OpDelete, Resource: res, Sub: graph.Subscription{ID: id, Resource: res}, Why: "stale"})
		}
		for _, s := range extra {
			deletes = append(deletes, Op{Kind: OpDelete, Resource: res, Sub: s, Why: "duplicate"})
		}
		left := keep.ExpirationDateTime.Sub(in.Now)
		urlChanged := in.URLChanged != nil && in.URLChanged(*keep)
		switch {
		case left < urgentBelow || urlChanged:
			why := "less than a day left at the next run"
			if urlChanged {
				why = "notification URL changed"
			}
			urgent = append(urgent, Op{Kind: OpRenew, Resource: res, Sub: *keep, Urgent: true, Why: why})
		case left < RenewThreshold(*keep, in.Interval):
			due = append(due, Op{Kind: OpRenew, Resource: res, Sub: *keep, Why: "below its renewal threshold"})
		default:
			plan.Kept++
		}
	}
	if in.Complete {
		for res, subs := range byRes {
			if desired[res] {
				continue
			}
			for _, s := range subs {
				deletes = append(deletes, Op{Kind: OpDelete, Resource: res, Sub: s, Why: "mailbox no longer configured"})
			}
		}
	}
	for res := range in.Refusals {
		if !desired[strings.ToLower(res)] {
			plan.Forget = append(plan.Forget, res)
		}
	}
	slices.Sort(plan.Forget)
	byExpiry := func(a, b Op) int {
		if c := a.Sub.ExpirationDateTime.Compare(b.Sub.ExpirationDateTime); c != 0 {
			return c
		}
		return strings.Compare(a.Sub.ID, b.Sub.ID)
	}
	slices.SortFunc(urgent, byExpiry)
	slices.SortFunc(due, byExpiry)
	slices.SortFunc(deletes, func(a, b Op) int { return strings.Compare(a.Sub.ID, b.Sub.ID) })

	// Urgent renewals are never deferred for the budget: they are what keeps a subscription from lapsing.
	spent := 0
	for gi, group := range [][]Op{urgent, creates, recreates, deletes, due} {
		for _, op := range group {
			if gi > 0 && in.Budget > 0 && spent+op.Cost() > in.Budget {
				plan.Deferred++
				continue
			}
			spent += op.Cost()
			plan.Ops = append(plan.Ops, op)
		}
	}
	return plan
}
