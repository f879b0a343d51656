package renewtimer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/customhandler"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/identity"
	"github.com/graphwebhooks/graph-webhooks-go/internal/logctx"
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

func newEnv(t *testing.T) *env {
	t.Helper()
	c := &clock{t: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	opts := fakegraph.NewOptions(tenant, clientID, secret)
	opts.Clock = c.Now
	fg := fakegraph.New(opts)
	t.Cleanup(fg.Close)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handshake(w, r) }))
	t.Cleanup(rcv.Close)
	cred, err := identity.NewGraphCredential(identity.Settings{TenantID: tenant, ClientID: clientID, ClientSecret: secret, AuthorityHost: fg.AuthorityHost()},
		identity.Options{Transport: fg.Client()})
	if err != nil {
		t.Fatal(err)
	}
	client, err := graph.NewClient(cred, graph.ClientOptions{BaseURL: fg.GraphBaseURL(), Transport: fg.Client(), MaxRetries: -1})
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
	k := NewKeeper(cfg, func() (Graph, error) { return e.client, nil }, e.clock.Now)
	k.settleDelay = 10 * time.Millisecond
	k.Gap = func(_ context.Context, reason string) error {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.gaps = append(e.gaps, reason)
		return nil
	}
	return k
}

func (e *env) writes() int {
	return e.fg.Count("POST", "/v1.0/subscriptions") + e.fg.Count("PATCH", "/v1.0/subscriptions") + e.fg.Count("DELETE", "/v1.0/subscriptions")
}

func ensure(t *testing.T, k *Keeper, mode Mode) Outcome {
	t.Helper()
	out, err := k.Ensure(context.Background(), mode)
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	return out
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

func TestTimerFunction(t *testing.T) {
	e := newEnv(t)
	f := NewFunction(e.keeper(t))
	var req customhandler.Request
	json.Unmarshal([]byte(`{"Data":{"timer":{"Schedule":{},"ScheduleStatus":null,"IsPastDue":true}},"Metadata":{}}`), &req)
	resp, err := f.Invoke(context.Background(), &req)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Logs) != 1 || !strings.Contains(resp.Logs[0], "created") || !strings.Contains(resp.Logs[0], "days left") {
		t.Errorf("Logs = %v", resp.Logs)
	}
}

func TestFailedGapResyncIsAskedAgain(t *testing.T) {
	e := newEnv(t)
	k := e.keeper(t)
	failing := true
	var asked []string
	k.Gap = func(_ context.Context, reason string) error {
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

func TestTimerLogsEachAlertAtErrorLevel(t *testing.T) {
	e := newEnv(t)
	f := NewFunction(e.keeper(t))
	f.Alerts = func(context.Context) []string {
		return []string{"poison-not-empty (q-poison): 2 message(s).", "resync-overdue (users): none completed."}
	}
	var buf bytes.Buffer
	ctx := logctx.With(context.Background(), slog.New(slog.NewTextHandler(&buf, nil)))
	var req customhandler.Request
	json.Unmarshal([]byte(`{"Data":{"timer":{"Schedule":{},"IsPastDue":false}},"Metadata":{}}`), &req)
	if _, err := f.Invoke(ctx, &req); err != nil {
		t.Fatalf("alerts must not fail the run: %v", err)
	}
	var errs []string
	for _, line := range strings.Split(buf.String(), "\n") {
		if strings.Contains(line, "level=ERROR") {
			errs = append(errs, line)
		}
	}
	if len(errs) != 2 || !strings.Contains(errs[0], "status: poison-not-empty") || !strings.Contains(errs[1], "status: resync-overdue") {
		t.Errorf("error lines %q", errs)
	}
}
