package subscription

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/identity"
	"github.com/graphwebhooks/graph-webhooks-go/internal/testclock"
)

const (
	tenant   = "8c1f4b2e-0d6a-4f57-9a3e-2b9d7c6e5f41"
	clientID = "3f2a1b0c-9d8e-4f7a-8b6c-5d4e3f2a1b0c"
	secret   = "fake-client-secret"
	stateA   = "client-state-A-0123456789abcdef"
	stateB   = "client-state-B-fedcba9876543210"
)

// clock is a fake clock shared by the keeper and the Graph double.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	fg       *fakegraph.Server
	clock    *clock
	receiver *httptest.Server
	settings map[string]string
	client   *graph.Client

	mu   sync.Mutex
	gaps []string
}

// receiverFailing, when set, makes the notification endpoint refuse Graph's handshake.
var handshake = func(w http.ResponseWriter, r *http.Request) {
	tok := r.URL.Query().Get("validationToken")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, tok)
}

func newEnv(t *testing.T, adjust ...func(*fakegraph.Options)) *env {
	t.Helper()
	c := &clock{t: testclock.Date(2026, 11, 27, 10, 0, 0)}
	opts := fakegraph.NewOptions(tenant, clientID, secret)
	opts.Clock = c.Now
	for _, a := range adjust {
		a(&opts)
	}
	fg := fakegraph.New(opts)
	t.Cleanup(fg.Close)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handshake(w, r) }))
	t.Cleanup(rcv.Close)
	cred, err := identity.NewGraphCredential(identity.Settings{TenantID: tenant, ClientID: clientID, ClientSecret: secret, AuthorityHost: fg.AuthorityHost()},
		identity.Options{Transport: fg.Client()})
	if err != nil {
		t.Fatal(err)
	}
	client, err := graph.NewClient(cred, graph.ClientOptions{BaseURL: fg.GraphBaseURL(), Transport: fg.Client(), MaxRetries: -1, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	return &env{fg: fg, clock: c, receiver: rcv, client: client, settings: map[string]string{
		config.TenantID:        tenant,
		config.ClientID:        clientID,
		config.NotificationURL: rcv.URL + "/api/webhook?code=function-key",
		config.ClientState:     stateA,
	}}
}

func (e *env) keeper(t *testing.T) *Keeper {
	t.Helper()
	cfg := config.Load(func(k string) string { return e.settings[k] })
	k := New(cfg, func() (Graph, error) { return e.client, nil }, func(_ context.Context, collection, reason string) error {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.gaps = append(e.gaps, reason)
		return nil
	}, e.clock.Now)
	k.settleDelay = 10 * time.Millisecond
	return k
}

func (e *env) writes() int {
	return e.fg.Count("POST", "/v1.0/subscriptions") + e.fg.Count("PATCH", "/v1.0/subscriptions") + e.fg.Count("DELETE", "/v1.0/subscriptions")
}

func ensure(t *testing.T, k *Keeper, mode Mode) Outcome {
	t.Helper()
	outs, err := k.Ensure(context.Background(), mode)
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if len(outs) != 1 {
		t.Fatalf("Ensure: %d outcomes, want 1", len(outs))
	}
	return outs[0]
}

func only(t *testing.T, fg *fakegraph.Server) fakegraph.Subscription {
	t.Helper()
	subs := fg.Subscriptions()
	if len(subs) != 1 {
		t.Fatalf("want exactly one subscription, have %d: %+v", len(subs), subs)
	}
	return subs[0]
}

func TestCreateThenNothingThenRenew(t *testing.T) {
	e := newEnv(t)
	k := e.keeper(t)

	out := ensure(t, k, Normal)
	if out.Action != Created {
		t.Fatalf("first run: %s", out.Action)
	}
	s := only(t, e.fg)
	if s.ID != out.ID || s.ClientState != stateA || s.Resource != "users" || s.ChangeType != "deleted,updated" {
		t.Errorf("created %+v", s)
	}
	if !strings.Contains(s.NotificationURL, "code=function-key") || !strings.Contains(s.NotificationURL, FingerprintParam+"="+Fingerprint(stateA)) {
		t.Errorf("notification URL %s lacks the key or the fingerprint", s.NotificationURL)
	}
	if life := s.ExpirationDateTime.Sub(e.clock.Now()); life > MaxLifetime || life < MaxLifetime-2*time.Hour {
		t.Errorf("lifetime %s: want close to, never beyond, %s", life, MaxLifetime)
	}
	if len(e.gaps) != 1 {
		t.Errorf("a new subscription must request a resync, got %v", e.gaps)
	}

	before := e.writes()
	e.clock.Advance(time.Hour)
	if out := ensure(t, k, Normal); out.Action != Unchanged || out.ID != s.ID {
		t.Errorf("second run: %+v", out)
	}
	if e.writes() != before {
		t.Errorf("a second run wrote to Graph")
	}

	// Three days later less than RenewBelow is left: one PATCH, then quiet again.
	e.clock.Advance(3*24*time.Hour - time.Hour)
	if out := ensure(t, k, Normal); out.Action != Renewed || out.ID != s.ID {
		t.Errorf("third run: %+v", out)
	}
	if got := e.fg.Count("PATCH", "/v1.0/subscriptions"); got != 1 {
		t.Errorf("%d PATCHes, want 1", got)
	}
	if life := only(t, e.fg).ExpirationDateTime.Sub(e.clock.Now()); life > MaxLifetime || life < RenewBelow {
		t.Errorf("renewed lifetime %s", life)
	}
	if out := ensure(t, k, Normal); out.Action != Unchanged {
		t.Errorf("run after renewal: %s", out.Action)
	}
}

// TestSurvivesAWeekWithoutRuns walks the clock hour by hour: at every tick the subscription has more than a
// week left, so a week of missed ticks never loses it.
func TestSurvivesAWeekWithoutRuns(t *testing.T) {
	e := newEnv(t)
	k := e.keeper(t)
	ensure(t, k, Normal)
	for range 24 * 60 {
		e.clock.Advance(time.Hour)
		out := ensure(t, k, Normal)
		if left := out.Expiry.Sub(e.clock.Now()); left < 7*24*time.Hour {
			t.Fatalf("only %s left at %s", left, e.clock.Now())
		}
	}
	if patches := e.fg.Count("PATCH", "/v1.0/subscriptions"); patches > 25 {
		t.Errorf("%d renewals in 60 days: renewing too often", patches)
	}
}

func TestRenewNowAlwaysPatches(t *testing.T) {
	e := newEnv(t)
	k := e.keeper(t)
	ensure(t, k, Normal)
	if out := ensure(t, k, RenewNow); out.Action != Renewed {
		t.Errorf("RenewNow: %s", out.Action)
	}
	if e.fg.Count("PATCH", "/v1.0/subscriptions") != 1 || e.fg.Count("POST", "/v1.0/subscriptions/") != 0 {
		t.Errorf("want one PATCH and no /reauthorize")
	}
}

func TestDeletedOnGraphsSideIsBackAfterOneRun(t *testing.T) {
	e := newEnv(t)
	k := e.keeper(t)
	first := ensure(t, k, Normal)
	e.fg.DeleteSubscriptionSilently(first.ID)
	out := ensure(t, k, Normal)
	if out.Action != Created || out.ID == first.ID {
		t.Errorf("after deletion: %+v", out)
	}
	only(t, e.fg)
}

// notFoundOnPatch lists a subscription that is gone by the time it is renewed.
type notFoundOnPatch struct {
	*graph.Client
	fg *fakegraph.Server
}

func (g notFoundOnPatch) UpdateSubscription(ctx context.Context, id string, u graph.SubscriptionUpdate) (graph.Subscription, error) {
	g.fg.DeleteSubscriptionSilently(id)
	return g.Client.UpdateSubscription(ctx, id, u)
}

func TestNotFoundOnRenewRecreates(t *testing.T) {
	e := newEnv(t)
	k := e.keeper(t)
	first := ensure(t, k, Normal)
	k.graph = func() (Graph, error) { return notFoundOnPatch{e.client, e.fg}, nil }
	out := ensure(t, k, RenewNow)
	if out.Action != Recreated || out.ID == first.ID {
		t.Errorf("after a 404 on renew: %+v", out)
	}
	only(t, e.fg)
	if len(e.gaps) != 2 {
		t.Errorf("the recreation must request a resync: %v", e.gaps)
	}
}

func TestDuplicatesConvergeOnOne(t *testing.T) {
	e := newEnv(t)
	url := e.receiver.URL + "/api/webhook?code=function-key&" + FingerprintParam + "=" + Fingerprint(stateA)
	exp := e.clock.Now().Add(20 * 24 * time.Hour)
	for _, s := range []fakegraph.Subscription{
		{ID: "bbbb", ExpirationDateTime: exp},
		{ID: "aaaa", ExpirationDateTime: exp}, // same life, lower id: the keeper
		{ID: "cccc", ExpirationDateTime: exp.Add(-time.Hour)},
	} {
		s.Resource, s.ChangeType, s.NotificationURL, s.LifecycleNotificationURL, s.ClientState = "users", "updated,deleted", url, e.settings[config.NotificationURL], stateA
		s.ApplicationID = clientID
		e.fg.SeedSubscription(s)
	}
	out := ensure(t, e.keeper(t), Normal)
	if out.ID != "aaaa" || len(out.Deleted) != 2 {
		t.Errorf("kept %s, deleted %v", out.ID, out.Deleted)
	}
	if s := only(t, e.fg); s.ID != "aaaa" {
		t.Errorf("left %s", s.ID)
	}
}

func TestConcurrentRunsEndWithOne(t *testing.T) {
	e := newEnv(t)
	k1, k2 := e.keeper(t), e.keeper(t) // two instances: separate locks
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, k := range []*Keeper{k1, k2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := k.Ensure(context.Background(), Normal)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("a run failed: %v", err)
		}
	}
	only(t, e.fg)
	if out := ensure(t, k1, Normal); out.Action != Unchanged {
		t.Errorf("run after the race: %s", out.Action)
	}
}

func TestClientStateRotation(t *testing.T) {
	e := newEnv(t)
	old := ensure(t, e.keeper(t), Normal)

	e.settings[config.ClientState] = stateB
	e.settings[config.ClientStatePrevious] = stateA
	out := ensure(t, e.keeper(t), Normal)
	if out.Action != Recreated || out.ID == old.ID || len(out.Deleted) != 1 || out.Deleted[0] != old.ID {
		t.Fatalf("rotation: %+v", out)
	}
	s := only(t, e.fg)
	if s.ClientState != stateB || !strings.Contains(s.NotificationURL, Fingerprint(stateB)) {
		t.Errorf("new subscription %+v", s)
	}
	if strings.Contains(s.NotificationURL, stateB) {
		t.Error("the notification URL carries the secret itself")
	}
	if out := ensure(t, e.keeper(t), Normal); out.Action != Unchanged {
		t.Errorf("after rotation: %s", out.Action)
	}
}

func TestChangedURLs(t *testing.T) {
	e := newEnv(t)
	first := ensure(t, e.keeper(t), Normal)

	// A rotated function key: PATCHed in place (Graph validates the new URL).
	e.settings[config.NotificationURL] = e.receiver.URL + "/api/webhook?code=new-key"
	e.settings[config.LifecycleNotificationURL] = e.receiver.URL + "/api/webhook?code=function-key"
	out := ensure(t, e.keeper(t), Normal)
	if out.Action != Renewed || out.ID != first.ID || !strings.Contains(only(t, e.fg).NotificationURL, "code=new-key") {
		t.Errorf("new function key: %+v / %s", out, only(t, e.fg).NotificationURL)
	}

	// A new lifecycle URL cannot be PATCHed: recreate.
	e.settings[config.LifecycleNotificationURL] = e.receiver.URL + "/api/lifecycle?code=new-key"
	out = ensure(t, e.keeper(t), Normal)
	if out.Action != Recreated || out.ID == first.ID {
		t.Errorf("new lifecycle URL: %+v", out)
	}
	if s := only(t, e.fg); !strings.HasPrefix(s.LifecycleNotificationURL, e.receiver.URL+"/api/lifecycle") {
		t.Errorf("lifecycle URL %s", s.LifecycleNotificationURL)
	}
}

func TestFailuresSayWhatToCheck(t *testing.T) {
	t.Run("handshake fails", func(t *testing.T) {
		e := newEnv(t)
		prev := handshake
		handshake = func(w http.ResponseWriter, r *http.Request) { http.Error(w, "sign in first", http.StatusUnauthorized) }
		defer func() { handshake = prev }()
		_, err := e.keeper(t).Ensure(context.Background(), Normal)
		if err == nil || !strings.Contains(err.Error(), "could not validate the notification URL") || !strings.Contains(err.Error(), "?code=") {
			t.Errorf("err = %v", err)
		}
		if err != nil && (strings.Contains(err.Error(), stateA) || strings.Contains(err.Error(), "function-key")) {
			t.Errorf("error leaks a secret: %v", err)
		}
	})
	t.Run("forbidden", func(t *testing.T) {
		e := newEnv(t)
		e.fg.Inject("POST /v1.0/subscriptions", fakegraph.Fault{Status: 403})
		_, err := e.keeper(t).Ensure(context.Background(), Normal)
		if err == nil || !strings.Contains(err.Error(), "User.Read.All") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("missing setting", func(t *testing.T) {
		e := newEnv(t)
		delete(e.settings, config.NotificationURL)
		_, err := e.keeper(t).Ensure(context.Background(), Normal)
		if err == nil || !strings.Contains(err.Error(), "GRAPH_NOTIFICATION_URL is not set") {
			t.Errorf("err = %v", err)
		}
		if e.fg.Count("GET", "/v1.0/subscriptions") != 0 {
			t.Error("called Graph without the settings it needs")
		}
	})
}

func TestUnsubscribe(t *testing.T) {
	e := newEnv(t)
	k := e.keeper(t)
	out := ensure(t, k, Normal)
	ids, err := k.Unsubscribe(context.Background())
	if err != nil || len(ids) != 1 || ids[0] != out.ID || len(e.fg.Subscriptions()) != 0 {
		t.Errorf("Unsubscribe = %v %v, left %d", ids, err, len(e.fg.Subscriptions()))
	}
}

func TestFailedGapResyncIsAskedAgain(t *testing.T) {
	e := newEnv(t)
	k := e.keeper(t)
	failing := true
	var asked []string
	k.gap = func(_ context.Context, _, reason string) error {
		asked = append(asked, reason)
		if failing {
			return errors.New("storage unavailable")
		}
		return nil
	}
	if _, err := k.Ensure(context.Background(), Normal); err == nil || !strings.Contains(err.Error(), "resync it needs could not be requested") {
		t.Fatalf("first run: %v", err)
	}
	only(t, e.fg) // the subscription exists all the same
	failing = false
	out := ensure(t, k, Normal)
	if out.Action != Unchanged || len(asked) != 2 || asked[1] != "subscription created" {
		t.Errorf("second run %+v, resync asked %v", out, asked)
	}
	ensure(t, k, Normal)
	if len(asked) != 2 {
		t.Errorf("the pending gap was asked again after it succeeded: %v", asked)
	}
}

func lifecycle(t *testing.T, k *Keeper, id string, ev graph.LifecycleEvent) LifecycleResult {
	t.Helper()
	rs, err := k.Lifecycle(context.Background(), []LifecycleRequest{{SubscriptionID: id, Event: ev}})
	if err != nil || len(rs) != 1 {
		t.Fatalf("Lifecycle: %v, %d results", err, len(rs))
	}
	return rs[0]
}

func TestLifecycleActsOncePerInterval(t *testing.T) {
	e := newEnv(t)
	k := e.keeper(t)
	out := ensure(t, k, Normal)
	patches := func() int { return e.fg.Count("PATCH", "/v1.0/subscriptions") }
	if r := lifecycle(t, k, out.ID, graph.ReauthorizationRequired); r.Verdict != Acted || r.Resource.Path() != "users" || patches() != 1 {
		t.Fatalf("first lifecycle action: %+v, %d PATCHes", r, patches())
	}
	for range 3 { // a storm of (perhaps forged) lifecycle messages
		if r := lifecycle(t, k, out.ID, graph.ReauthorizationRequired); r.Verdict != Limited {
			t.Fatalf("a second action within %s: %+v", LifecycleInterval, r)
		}
	}
	if patches() != 1 {
		t.Fatalf("%d PATCHes, want 1 within the interval", patches())
	}
	// missed calls nothing on Graph and is rationed on its own: it names the resource to catch up.
	if r := lifecycle(t, k, strings.ToUpper(out.ID), graph.Missed); r.Verdict != Acted || r.Resource.Collection != config.Users || patches() != 1 {
		t.Fatalf("missed: %+v, %d PATCHes", r, patches())
	}
	e.clock.Advance(LifecycleInterval)
	if r := lifecycle(t, k, out.ID, graph.ReauthorizationRequired); r.Verdict != Acted || patches() != 2 {
		t.Fatalf("after the interval: %+v, %d PATCHes", r, patches())
	}
}

// Release gives back the slot of an Acted result (its follow-up failed): the retry acts again. It gives
// back nothing else: a Limited result releases no one's slot, and a released slot is taken again.
func TestLifecycleReleaseLetsTheRetryAct(t *testing.T) {
	e := newEnv(t)
	k := e.keeper(t)
	out := ensure(t, k, Normal)
	first := lifecycle(t, k, out.ID, graph.Missed)
	limited := lifecycle(t, k, out.ID, graph.Missed)
	if first.Verdict != Acted || limited.Verdict != Limited {
		t.Fatalf("missed twice: %s then %s", first.Verdict, limited.Verdict)
	}
	k.Release(limited)
	if r := lifecycle(t, k, out.ID, graph.Missed); r.Verdict != Limited {
		t.Fatalf("releasing a Limited result freed a slot: %+v", r)
	}
	k.Release(first)
	retry := lifecycle(t, k, out.ID, graph.Missed)
	if retry.Verdict != Acted {
		t.Fatalf("the retry after Release: %+v", retry)
	}
	if r := lifecycle(t, k, out.ID, graph.Missed); r.Verdict != Limited {
		t.Fatalf("the retry took the slot again, yet: %+v", r)
	}
	// A renewal whose resync failed: released, the retry renews again (one more PATCH) and can resync.
	renewed := lifecycle(t, k, out.ID, graph.ReauthorizationRequired)
	k.Release(renewed)
	if r := lifecycle(t, k, out.ID, graph.ReauthorizationRequired); r.Verdict != Acted || e.fg.Count("PATCH", "/v1.0/subscriptions") != 2 {
		t.Fatalf("renewal retried after Release: %+v, %d PATCHes", r, e.fg.Count("PATCH", "/v1.0/subscriptions"))
	}
}

// Ids that are not this app's subscriptions cause nothing but the one list call that judges them: no
// PATCH, no create, and nothing kept about them.
func TestLifecycleActsOnlyOnListedSubscriptions(t *testing.T) {
	e := newEnv(t)
	k := e.keeper(t)
	ensure(t, k, Normal)
	before := e.writes()
	lists := func() int { return e.fg.Count("GET", "/v1.0/subscriptions") }
	listsBefore := lists()
	var reqs []LifecycleRequest
	for i := range 50 {
		ev := []graph.LifecycleEvent{graph.ReauthorizationRequired, graph.SubscriptionRemoved, graph.Missed}[i%3]
		reqs = append(reqs, LifecycleRequest{SubscriptionID: fmt.Sprintf("0badf00d-0000-4000-8000-%012d", i), Event: ev})
	}
	for range 3 { // three messages of a flood
		rs, err := k.Lifecycle(context.Background(), reqs)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.Verdict != NotListed {
				t.Fatalf("%s %s: %s, want %s", r.SubscriptionID, r.Event, r.Verdict, NotListed)
			}
		}
	}
	if w := e.writes() - before; w != 0 {
		t.Errorf("%d subscription writes for ids that are not this app's", w)
	}
	if n := lists() - listsBefore; n != 1 {
		t.Errorf("%d list calls for 150 requests within %s, want 1", n, ListReuse)
	}
	if n := len(k.limits.last); n != 0 {
		t.Errorf("%d ids kept for rationing; only listed ids may enter", n)
	}
}

// Concurrent invocations share one list call: a flood spread over many messages, worked on at once,
// still costs one.
func TestLifecycleConcurrentCallsShareOneList(t *testing.T) {
	e := newEnv(t)
	k := e.keeper(t)
	ensure(t, k, Normal)
	before := e.fg.Count("GET", "/v1.0/subscriptions")
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			req := LifecycleRequest{SubscriptionID: fmt.Sprintf("0badf00d-0000-4000-8000-%012d", i), Event: graph.ReauthorizationRequired}
			if rs, err := k.Lifecycle(context.Background(), []LifecycleRequest{req}); err != nil || rs[0].Verdict != NotListed {
				t.Errorf("%v %v", rs, err)
			}
		})
	}
	wg.Wait()
	if n := e.fg.Count("GET", "/v1.0/subscriptions") - before; n != 1 {
		t.Errorf("%d list calls for 20 concurrent calls within %s, want 1", n, ListReuse)
	}
}

// A subscription Graph removed no longer lists: its subscriptionRemoved recreates it only because Graph's
// own list shows the resource uncovered, not because the notification says so.
func TestLifecycleRemovedRecreatesOnlyAnUncoveredResource(t *testing.T) {
	e := newEnv(t)
	k := e.keeper(t)
	out := ensure(t, k, Normal)
	gone := "0badf00d-0000-4000-8000-000000000001"
	if r := lifecycle(t, k, gone, graph.SubscriptionRemoved); r.Verdict != NotListed {
		t.Fatalf("a removal of an unknown id while the resource is covered: %+v", r)
	}
	if err := e.client.DeleteSubscription(context.Background(), out.ID); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(ListReuse)
	if r := lifecycle(t, k, out.ID, graph.SubscriptionRemoved); r.Verdict != Acted || r.Outcome.Action != Created || r.Resource.Path() != "users" {
		t.Fatalf("removal of this app's only subscription: %+v", r)
	}
	only(t, e.fg)
	// Within the interval another removal of it (forged, or repeated) does nothing, once it is listed.
	if r := lifecycle(t, k, gone, graph.SubscriptionRemoved); r.Verdict != NotListed {
		t.Fatalf("after the recreation: %+v", r)
	}
}

// The process-wide ration holds whatever the ids: with more of this app's subscriptions than
// MaxLifecycleActions, one round of reauthorizations acts on MaxLifecycleActions of them.
func TestLifecycleProcessWideLimit(t *testing.T) {
	e := newEnv(t)
	var res []string
	for i := range MaxLifecycleActions + 2 {
		id := fmt.Sprintf("6e1f0c1e-0000-4000-8000-%012d", i)
		e.fg.AddUser(fakegraph.User{ID: id, Props: map[string]any{"displayName": "u"}})
		res = append(res, "users/"+id)
	}
	e.settings[config.Resource] = strings.Join(res, ",")
	k := e.keeper(t)
	outs, err := k.Ensure(context.Background(), Normal)
	if err != nil || len(outs) != len(res) {
		t.Fatalf("Ensure: %d, %v", len(outs), err)
	}
	var reqs []LifecycleRequest
	for _, o := range outs {
		reqs = append(reqs, LifecycleRequest{SubscriptionID: o.ID, Event: graph.ReauthorizationRequired})
	}
	rs, err := k.Lifecycle(context.Background(), reqs)
	if err != nil {
		t.Fatal(err)
	}
	count := map[Verdict]int{}
	for _, r := range rs {
		count[r.Verdict]++
	}
	if count[Acted] != MaxLifecycleActions || count[Limited] != 2 {
		t.Errorf("verdicts %v, want %d acted and 2 limited", count, MaxLifecycleActions)
	}
	e.clock.Advance(LifecycleInterval)
	if r := lifecycle(t, k, outs[len(outs)-1].ID, graph.ReauthorizationRequired); r.Verdict != Acted {
		t.Errorf("after the interval: %+v", r)
	}
	if n := len(k.limits.last); n != 1 {
		t.Errorf("%d rationing entries after the interval, want 1 (old ones pruned)", n)
	}
}

// A flood of unlisted ids never waits for the lock a timer run holds.
func TestLifecycleFloodDoesNotTakeTheKeepersLock(t *testing.T) {
	e := newEnv(t)
	k := e.keeper(t)
	ensure(t, k, Normal)
	k.mu.Lock() // a timer run in progress
	defer k.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		_, err := k.Lifecycle(context.Background(), []LifecycleRequest{{SubscriptionID: "0badf00d-0000-4000-8000-000000000002", Event: graph.ReauthorizationRequired}})
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Lifecycle for an unlisted id waited for the keeper's lock")
	}
}

func TestUsersAndGroupsConvergeOnOneEach(t *testing.T) {
	e := newEnv(t)
	e.settings[config.Resource] = "users,groups"
	k := e.keeper(t)
	outs, err := k.Ensure(context.Background(), Normal)
	if err != nil || len(outs) != 2 || outs[0].Resource != "users" || outs[1].Resource != "groups" {
		t.Fatalf("Ensure = %+v, %v", outs, err)
	}
	var resources []string
	for _, s := range e.fg.Subscriptions() {
		resources = append(resources, s.Resource)
	}
	slices.Sort(resources)
	if !slices.Equal(resources, []string{"groups", "users"}) {
		t.Fatalf("subscriptions for %v", resources)
	}
	before := e.writes()
	if outs, err := k.Ensure(context.Background(), Normal); err != nil || outs[0].Action != Unchanged || outs[1].Action != Unchanged || e.writes() != before {
		t.Fatalf("a second run wrote %d times: %+v, %v", e.writes()-before, outs, err)
	}
	// Two instances at once converge too.
	k2 := e.keeper(t)
	var wg sync.WaitGroup
	for _, kk := range []*Keeper{k, k2} {
		wg.Go(func() {
			if _, err := kk.Ensure(context.Background(), RenewNow); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := len(e.fg.Subscriptions()); n != 2 {
		t.Fatalf("%d subscriptions after concurrent runs, want 2", n)
	}
	if ids, err := k.Unsubscribe(context.Background()); err != nil || len(ids) != 2 {
		t.Fatalf("Unsubscribe = %v, %v", ids, err)
	}
}

func TestForbiddenGroupsSubscriptionNamesGroupReadAll(t *testing.T) {
	e := newEnv(t, func(o *fakegraph.Options) { o.AppRoles = []string{"User.Read.All"} })
	e.settings[config.Resource] = "groups"
	_, err := e.keeper(t).Ensure(context.Background(), Normal)
	if err == nil || !strings.Contains(err.Error(), "Group.Read.All") {
		t.Fatalf("err = %v, want the hint naming Group.Read.All", err)
	}
}

// hub collects what the Graph double delivers to Event Hubs.
type hub struct {
	mu     sync.Mutex
	bodies []string
}

func (h *hub) SendEvent(_ context.Context, _, _ string, body []byte) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.bodies = append(h.bodies, string(body))
	return nil
}

func TestEventHubSubscriptions(t *testing.T) {
	h := &hub{}
	e := newEnv(t, func(o *fakegraph.Options) { o.EventHubs = h })
	hubURL := fakegraph.EventHubURL("contoso-ns.servicebus.windows.net", "graph", "contoso.example")
	e.settings[config.NotificationURL] = hubURL
	k := e.keeper(t)
	out := ensure(t, k, Normal)
	s := only(t, e.fg)
	if out.Action != Created || !IsEventHub(s.NotificationURL) || fingerprintOf(s.NotificationURL) != Fingerprint(config.Secret(stateA)) {
		t.Fatalf("created %+v with URL %q: want the hub URL with the fingerprint", out, s.NotificationURL)
	}
	if !strings.HasPrefix(s.NotificationURL, "EventHub:https://contoso-ns.servicebus.windows.net/eventhubname/graph?") {
		t.Errorf("URL %q lost its form", s.NotificationURL)
	}
	if len(h.bodies) == 0 {
		t.Error("no validation event reached the hub")
	}
	if out := ensure(t, e.keeper(t), Normal); out.Action != Unchanged {
		t.Errorf("second run: %+v", out)
	}

	// Graph may not keep the fingerprint in an EventHub: URL: a subscription without one is taken as
	// current while no rotation is under way…
	e.fg.DeleteSubscriptionSilently(s.ID)
	e.fg.SeedSubscription(fakegraph.Subscription{Resource: "users", ChangeType: "updated,deleted", NotificationURL: hubURL,
		LifecycleNotificationURL: hubURL, ClientState: stateA, ExpirationDateTime: e.clock.Now().Add(28 * 24 * time.Hour)})
	before := e.writes()
	if out := ensure(t, e.keeper(t), Normal); out.Action != Unchanged || e.writes() != before {
		t.Fatalf("a hub subscription without a fingerprint was replaced with no rotation under way: %+v", out)
	}
	// …and recreated when one is (GRAPH_CLIENT_STATE_PREVIOUS set).
	e.settings[config.ClientStatePrevious] = stateA
	e.settings[config.ClientState] = stateB
	out = ensure(t, e.keeper(t), Normal)
	if s := only(t, e.fg); out.Action != Recreated || s.ClientState != stateB {
		t.Fatalf("rotation: %+v, clientState %q", out, s.ClientState)
	}
}
