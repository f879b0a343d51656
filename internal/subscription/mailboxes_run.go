package subscription

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/logctx"
)

// MailboxGraph is what a mailbox run needs of the Graph client.
type MailboxGraph interface {
	Graph
	ListUserMembers(ctx context.Context, groupID string) ([]string, error)
}

// RefusalStore keeps the refusals between runs: Graph's list says which subscriptions exist, not which
// creates were refused and why.
type RefusalStore interface {
	// Refusals returns every refusal on record, keyed by resource in lower case.
	Refusals(ctx context.Context) (map[string]Refusal, error)
	PutRefusal(ctx context.Context, r Refusal) error
	DeleteRefusal(ctx context.Context, resource string) error
}

// ThrottleGate is the process-wide pause after a 429: closed, no Graph request is sent.
type ThrottleGate interface {
	CloseUntil(t time.Time)
	Remaining(now time.Time) time.Duration
}

// MailboxOptions bound a mailbox run. Zero values get the defaults documented per field.
type MailboxOptions struct {
	Concurrency int           // requests in flight at once (default 8)
	Budget      int           // most subscription requests per run (default 4,000; urgent renewals always go)
	RunTime     time.Duration // the run stops starting steps after this (default 4 min), well inside functionTimeout
	Interval    time.Duration // the renew timer's period (default 1 h)
	// ThrottleDefault closes the gate after a 429 without Retry-After (default 30 s).
	ThrottleDefault time.Duration
	Gate            ThrottleGate                                     // shared with the process's other Graph callers; nil: a gate of the run's own
	Sleep           func(ctx context.Context, d time.Duration) error // waits out a closed gate (default: a timer)
	// Gap is told that a mailbox resource may have missed changes (its subscription was gone or stale and is
	// created again), so that it is caught up. Nil: nothing is told.
	Gap func(ctx context.Context, resource, reason string) error
}

// MailboxKeeper keeps one subscription per configured mailbox and resource.
type MailboxKeeper struct {
	cfg   *config.Config
	graph func() (MailboxGraph, error)
	store RefusalStore
	now   func() time.Time
	opts  MailboxOptions
	mu    sync.Mutex // one run at a time per process

	// planned is the mailbox resources the last run of this process wanted (GRAPH_MAILBOXES' users and
	// the members its groups had then): what lifecycle events may act on beyond the users named directly.
	plannedMu sync.Mutex
	planned   map[string]bool
}

// NewMailboxKeeper returns a keeper for GRAPH_MAILBOXES. store keeps the refusals; now is the clock.
func NewMailboxKeeper(cfg *config.Config, g func() (MailboxGraph, error), store RefusalStore, now func() time.Time, o MailboxOptions) *MailboxKeeper {
	if now == nil {
		panic("subscription.NewMailboxKeeper: now is nil: the clock is given, never taken")
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.Budget == 0 {
		o.Budget = 4000
	}
	if o.RunTime <= 0 {
		o.RunTime = 4 * time.Minute
	}
	if o.Interval <= 0 {
		o.Interval = time.Hour
	}
	if o.ThrottleDefault <= 0 {
		o.ThrottleDefault = 30 * time.Second
	}
	if o.Gate == nil {
		o.Gate = &runGate{}
	}
	if o.Sleep == nil {
		o.Sleep = sleepCtx
	}
	return &MailboxKeeper{cfg: cfg, graph: g, store: store, now: now, opts: o}
}

// MailboxOutcome is what one run did.
type MailboxOutcome struct {
	Desired, Existing                    int // mailbox resources asked for; mailbox subscriptions Graph listed
	Created, Recreated, Renewed, Deleted int
	Kept                                 int       // current, not due
	Refused                              []Refusal // refused in this run
	Waiting                              int       // refused earlier, still in their back-off
	Deferred                             int       // left for a later run (budget, run time, throttling)
	Failed                               int       // steps that failed otherwise (errors in Errors)
	Requests                             int       // subscription requests sent
	Throttled                            bool
	Incomplete                           []string // groups whose members could not be read: nothing was deleted
	Errors                               []error  // the first few failures
}

// Summary is one line for the log and the invocation's Logs.
func (o MailboxOutcome) Summary() string {
	s := fmt.Sprintf("mailboxes: %d wanted, %d listed; created %d, recreated %d, renewed %d, deleted %d, kept %d; refused %d (+%d waiting), deferred %d, failed %d; %d requests",
		o.Desired, o.Existing, o.Created, o.Recreated, o.Renewed, o.Deleted, o.Kept, len(o.Refused), o.Waiting, o.Deferred, o.Failed, o.Requests)
	if o.Throttled {
		s += "; throttled"
	}
	if len(o.Incomplete) > 0 {
		s += "; groups not read (no deletes): " + strings.Join(o.Incomplete, ", ")
	}
	return s
}

var mailboxSettings = []string{config.TenantID, config.ClientID, config.NotificationURL, config.LifecycleNotificationURL,
	config.ClientState, config.ClientStatePrevious, config.Mailboxes, config.MailboxResources}

// Desired reads the mailbox resources the settings ask for: every user of GRAPH_MAILBOXES and every user
// member of its groups (read now, every page), times GRAPH_MAILBOX_RESOURCES. complete is false when a
// group could not be read; its name is in failed.
func (k *MailboxKeeper) Desired(ctx context.Context, g MailboxGraph) (resources []string, complete bool, failed []string) {
	m := k.cfg.Mailboxes
	users := map[string]bool{}
	var order []string
	add := func(u string) {
		u = strings.ToLower(u)
		if !users[u] {
			users[u] = true
			order = append(order, u)
		}
	}
	for _, u := range m.Users {
		add(u)
	}
	complete = true
	for _, gid := range m.Groups {
		ids, err := g.ListUserMembers(ctx, gid)
		if err != nil {
			logctx.From(ctx).Warn("could not read a group of GRAPH_MAILBOXES; its members keep their subscriptions, none are deleted this run", "group", gid, "error", err)
			complete = false
			failed = append(failed, "group:"+gid)
			continue
		}
		for _, u := range ids {
			add(u)
		}
	}
	for _, u := range order {
		for _, kind := range m.Resources {
			resources = append(resources, MailboxResource(u, kind))
		}
	}
	return resources, complete, failed
}

// remember records a run's desired resources for Follows. A run that could not read every group keeps what
// the previous run planned too: like the run, which deletes nothing then, it does not drop those members.
func (k *MailboxKeeper) remember(desired []string, complete bool) {
	next := make(map[string]bool, len(desired))
	for _, r := range desired {
		next[r] = true
	}
	k.plannedMu.Lock()
	defer k.plannedMu.Unlock()
	if !complete {
		for r := range k.planned {
			next[r] = true
		}
	}
	k.planned = next
}

// Follows reports whether resource (users/{id}/messages or users/{id}/events) is one GRAPH_MAILBOXES asks
// for: its kind is in GRAPH_MAILBOX_RESOURCES and its user is named in GRAPH_MAILBOXES, or was a member of
// one of its groups when this process's last run read them. Group members are not read here: until a run
// of this process has resolved the groups, a member's mailbox is not followed (the timer's runs keep its
// subscription all the same).
func (k *MailboxKeeper) Follows(resource string) bool {
	user, kind, ok := ParseMailboxResource(resource)
	if !ok || !slices.Contains(k.cfg.Mailboxes.Resources, kind) {
		return false
	}
	if slices.Contains(k.cfg.Mailboxes.Users, user) {
		return true
	}
	k.plannedMu.Lock()
	defer k.plannedMu.Unlock()
	return k.planned[MailboxResource(user, kind)]
}

// Run converges the mailbox subscriptions once, within the run's budget and time; the next run continues.
func (k *MailboxKeeper) Run(ctx context.Context) (MailboxOutcome, error) { return k.run(ctx, "") }

// Recover is Run after Graph said it removed a subscription without saying which mailbox's (a removed
// subscription no longer lists): every subscription the run creates is taken to be one Graph removed, and
// its mailbox is caught up (Gap).
func (k *MailboxKeeper) Recover(ctx context.Context) (MailboxOutcome, error) {
	return k.run(ctx, "subscription removed")
}

// RenewOne renews one listed mailbox subscription now, for a reauthorizationRequired: one PATCH, which also
// reauthorizes it; a 404 creates it again and its mailbox is caught up.
func (k *MailboxKeeper) RenewOne(ctx context.Context, s graph.Subscription) (MailboxOutcome, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out MailboxOutcome
	res, kind, ok := ParseMailboxResource(s.Resource)
	if !ok {
		return out, fmt.Errorf("%q is not a mailbox subscription", s.Resource)
	}
	g, err := k.graph()
	if err != nil {
		return out, fmt.Errorf("graph client: %w", err)
	}
	probe := &Keeper{cfg: k.cfg}
	r := &mailboxRun{k: k, g: g, deadline: k.now().Add(k.opts.RunTime), out: &out, url: probe.notificationURL()}
	refusals, err := k.store.Refusals(ctx)
	if err == nil {
		r.refusals = refusals
	}
	r.do(ctx, Op{Kind: OpRenew, Resource: MailboxResource(res, kind), Sub: s, Urgent: true, Why: "reauthorizationRequired"})
	if out.Failed > 0 {
		return out, errors.Join(out.Errors...)
	}
	return out, nil
}

func (k *MailboxKeeper) run(ctx context.Context, recovering string) (MailboxOutcome, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out MailboxOutcome
	if err := k.cfg.Check(mailboxSettings...); err != nil {
		return out, err
	}
	if !k.cfg.Mailboxes.Configured() {
		return out, nil
	}
	start := k.now()
	deadline := start.Add(k.opts.RunTime)
	g, err := k.graph()
	if err != nil {
		return out, fmt.Errorf("graph client: %w", err)
	}
	log := logctx.From(ctx)
	desired, complete, failed := k.Desired(ctx, g)
	out.Desired, out.Incomplete = len(desired), failed
	k.remember(desired, complete)
	all, err := g.ListSubscriptions(ctx)
	if err != nil {
		return out, explain("list subscriptions", "Mail.Read or Calendars.Read", err)
	}
	refusals, err := k.store.Refusals(ctx)
	if err != nil {
		// Without the record every refused mailbox is tried again this run: costly, not wrong.
		log.Warn("could not read the mailbox refusals; refused mailboxes are tried again", "error", err)
		refusals = map[string]Refusal{}
	}
	probe := &Keeper{cfg: k.cfg}
	want := probe.notificationURL()
	plan := PlanMailboxes(MailboxPlanInput{
		Now: start, Desired: desired, Complete: complete, Existing: all, Refusals: refusals,
		Stale:      probe.stale,
		URLChanged: func(s graph.Subscription) bool { return !sameURL(s.NotificationURL, want) },
		Interval:   k.opts.Interval, Budget: k.opts.Budget,
	})
	for _, s := range all {
		if _, _, ok := ParseMailboxResource(s.Resource); ok {
			out.Existing++
		}
	}
	out.Kept, out.Waiting, out.Deferred = plan.Kept, len(plan.Waiting), plan.Deferred
	for _, res := range plan.Forget {
		if err := k.store.DeleteRefusal(ctx, res); err != nil {
			log.Warn("could not forget a refusal", "resource", res, "error", err)
		}
	}

	r := &mailboxRun{k: k, g: g, deadline: deadline, refusals: refusals, out: &out, url: want, recovering: recovering}
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(k.opts.Concurrency)
	for i, op := range plan.Ops {
		if !k.now().Before(deadline) || ectx.Err() != nil {
			r.defer_(len(plan.Ops) - i)
			break
		}
		eg.Go(func() error {
			r.do(ectx, op)
			return nil
		})
	}
	_ = eg.Wait()
	log.Info(out.Summary())
	if out.Failed > 0 {
		return out, fmt.Errorf("%d mailbox subscription step(s) failed: %w", out.Failed, errors.Join(out.Errors...))
	}
	return out, nil
}

// mailboxRun is the state of one Run's steps, shared by its workers.
type mailboxRun struct {
	k        *MailboxKeeper
	g        MailboxGraph
	deadline time.Time
	refusals map[string]Refusal // read-only during the run
	url      string
	// recovering, when set, is why every create of the run is taken to fill a gap (see Recover).
	recovering string
	mu         sync.Mutex
	out        *MailboxOutcome
}

func (r *mailboxRun) count(f func(o *MailboxOutcome)) {
	r.mu.Lock()
	f(r.out)
	r.mu.Unlock()
}

func (r *mailboxRun) defer_(n int) { r.count(func(o *MailboxOutcome) { o.Deferred += n }) }

func (r *mailboxRun) fail(op Op, err error) {
	r.count(func(o *MailboxOutcome) {
		o.Failed++
		if len(o.Errors) < 10 {
			o.Errors = append(o.Errors, fmt.Errorf("%s %s: %w", op.Kind, op.Resource, err))
		}
	})
}

// send waits for the throttling gate, then runs one request; false when the step must wait for a later run
// (past the deadline, or throttled now).
func (r *mailboxRun) send(ctx context.Context, call func() error) (err error, ok bool) {
	k := r.k
	if wait := k.opts.Gate.Remaining(k.now()); wait > 0 {
		if !k.now().Add(wait).Before(r.deadline) {
			return nil, false
		}
		if err := k.opts.Sleep(ctx, wait); err != nil {
			return nil, false
		}
	}
	if !k.now().Before(r.deadline) {
		return nil, false
	}
	err = call()
	r.count(func(o *MailboxOutcome) { o.Requests++ })
	if graph.KindOf(err) == graph.KindThrottled {
		wait := graph.RetryAfterOf(err)
		if wait <= 0 {
			wait = k.opts.ThrottleDefault
		}
		k.opts.Gate.CloseUntil(k.now().Add(wait))
		r.count(func(o *MailboxOutcome) { o.Throttled = true })
		return nil, false
	}
	return err, true
}

func (r *mailboxRun) do(ctx context.Context, op Op) {
	log := logctx.From(ctx)
	switch op.Kind {
	case OpDelete:
		err, ok := r.send(ctx, func() error { return r.g.DeleteSubscription(ctx, op.Sub.ID) })
		switch {
		case !ok:
			r.defer_(1)
		case err != nil && !errors.Is(err, graph.ErrNotFound):
			r.fail(op, err)
		default:
			log.Info("deleted a mailbox subscription", "id", op.Sub.ID, "resource", op.Resource, "why", op.Why)
			r.count(func(o *MailboxOutcome) { o.Deleted++ })
		}
	case OpRenew:
		u := graph.SubscriptionUpdate{ExpirationDateTime: r.k.now().Add(MailboxLifetime)}
		if !sameURL(op.Sub.NotificationURL, r.url) {
			u.NotificationURL = r.url
		}
		err, ok := r.send(ctx, func() error { _, err := r.g.UpdateSubscription(ctx, op.Sub.ID, u); return err })
		switch {
		case !ok:
			r.defer_(1)
		case errors.Is(err, graph.ErrNotFound):
			// Graph dropped it between the list and now: create it again, and catch up what it missed.
			r.create(ctx, op, true, "subscription gone")
		case err != nil && refusable(err):
			r.refuse(ctx, op.Resource, err)
		case err != nil:
			r.fail(op, err)
		default:
			r.count(func(o *MailboxOutcome) { o.Renewed++ })
		}
	case OpRecreate:
		for _, id := range op.Stale {
			err, ok := r.send(ctx, func() error { return r.g.DeleteSubscription(ctx, id) })
			if !ok {
				r.defer_(1)
				return
			}
			if err != nil && !errors.Is(err, graph.ErrNotFound) {
				r.fail(op, err)
				return
			}
		}
		r.create(ctx, op, true, "subscription stale")
	case OpCreate:
		r.create(ctx, op, r.recovering != "", r.recovering)
	}
}

// refusable reports whether Graph refused the mailbox itself (quota, access policy, no such mailbox), as
// opposed to a passing failure: such a create is not tried again before its back-off.
func refusable(err error) bool {
	switch graph.KindOf(err) {
	case graph.KindForbidden, graph.KindNotFound, graph.KindBadRequest:
		return true
	}
	return false
}

func (r *mailboxRun) create(ctx context.Context, op Op, again bool, gapReason string) {
	k := r.k
	req := graph.Subscription{
		ChangeType:                MailboxChangeTypes,
		NotificationURL:           r.url,
		LifecycleNotificationURL:  k.cfg.LifecycleNotificationURL,
		Resource:                  op.Resource,
		ExpirationDateTime:        k.now().Add(MailboxLifetime),
		ClientState:               k.cfg.ClientState.Reveal(),
		LatestSupportedTLSVersion: "v1_2",
	}
	err, ok := r.send(ctx, func() error { _, err := r.g.CreateSubscription(ctx, req); return err })
	switch {
	case !ok:
		r.defer_(1)
		return
	case errors.Is(err, graph.ErrConflict):
		// Another instance created it a moment ago: the next run lists and keeps it.
	case err != nil && refusable(err):
		r.refuse(ctx, op.Resource, err)
		return
	case err != nil:
		r.fail(op, explain("create subscription", "Mail.Read or Calendars.Read", err))
		return
	}
	if _, was := r.refusals[op.Resource]; was {
		if err := k.store.DeleteRefusal(ctx, op.Resource); err != nil {
			logctx.From(ctx).Warn("could not clear a refusal", "resource", op.Resource, "error", err)
		}
	}
	if again {
		r.count(func(o *MailboxOutcome) { o.Recreated++ })
		if k.opts.Gap != nil {
			if err := k.opts.Gap(ctx, op.Resource, gapReason); err != nil {
				r.fail(op, fmt.Errorf("catch-up after %s could not be requested: %w", gapReason, err))
			}
		}
		return
	}
	r.count(func(o *MailboxOutcome) { o.Created++ })
}

func (r *mailboxRun) refuse(ctx context.Context, resource string, err error) {
	var ge *graph.Error
	status, code, reason := 0, "", err.Error()
	if errors.As(err, &ge) {
		status, code = ge.Status, ge.Code
		if ge.Message != "" {
			reason = ge.Message
		}
	}
	ref := nextRefusal(r.refusals[resource], resource, status, code, reason, r.k.now())
	logctx.From(ctx).Warn("Graph refused a mailbox subscription; not tried again before its back-off",
		"resource", resource, "status", status, "code", code, "reason", reason, "retryAt", ref.RetryAt, "refusals", ref.Count)
	if perr := r.k.store.PutRefusal(ctx, ref); perr != nil {
		logctx.From(ctx).Warn("could not record a refusal; it is tried again next run", "resource", resource, "error", perr)
	}
	r.count(func(o *MailboxOutcome) { o.Refused = append(o.Refused, ref) })
}

// runGate is a ThrottleGate for a keeper given none.
type runGate struct {
	mu    sync.Mutex
	until time.Time
}

func (g *runGate) CloseUntil(t time.Time) {
	g.mu.Lock()
	if t.After(g.until) {
		g.until = t
	}
	g.mu.Unlock()
}

func (g *runGate) Remaining(now time.Time) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	return max(0, g.until.Sub(now))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// MemoryRefusals is a RefusalStore in memory, for tests and a single process.
type MemoryRefusals struct {
	mu sync.Mutex
	m  map[string]Refusal
}

// Refusals implements RefusalStore.
func (s *MemoryRefusals) Refusals(context.Context) (map[string]Refusal, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Refusal, len(s.m))
	for k, v := range s.m {
		out[k] = v
	}
	return out, nil
}

// PutRefusal implements RefusalStore.
func (s *MemoryRefusals) PutRefusal(_ context.Context, r Refusal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]Refusal{}
	}
	s.m[strings.ToLower(r.Resource)] = r
	return nil
}

// DeleteRefusal implements RefusalStore.
func (s *MemoryRefusals) DeleteRefusal(_ context.Context, resource string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, strings.ToLower(resource))
	return nil
}
