package graph_test

// Integration tests of the real Client, on a real azidentity credential, against the fakegraph double
// (TLS on 127.0.0.1). Nothing here leaves the machine: the token endpoint, Graph and the subscribers'
// endpoints are all loopback servers. Every test is instant except TestFakeGraphShortRetryAfterIsRetried,
// which waits out a real 1 s Retry-After (see there why testing/synctest cannot fake it).

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/identity"
)

const fgSecret = "fakegraph-secret~0123456789"

// fgEnv is one double plus a Client that talks to it with a client-secret credential.
type fgEnv struct {
	fg *fakegraph.Server
	c  *graph.Client
}

// newFG starts a double (mod may change its options) and builds the Client the product would: the
// credential from identity.NewGraphCredential, both carried by the double's TLS client.
func newFG(t *testing.T, mod func(*fakegraph.Options), co graph.ClientOptions) *fgEnv {
	t.Helper()
	o := fakegraph.NewOptions("", "", fgSecret) // a fresh tenant and app per test
	o.HandshakeTimeout = 5 * time.Second
	if mod != nil {
		mod(&o)
	}
	fg := fakegraph.New(o)
	t.Cleanup(fg.Close)
	return &fgEnv{fg: fg, c: newClient(t, fg, secretCred(t, fg, fgSecret), co)}
}

func secretCred(t *testing.T, fg *fakegraph.Server, secret string) azcore.TokenCredential {
	t.Helper()
	cred, err := identity.NewGraphCredential(identity.Settings{TenantID: fg.TenantID(), ClientID: fg.ClientID(),
		ClientSecret: secret, AuthorityHost: fg.AuthorityHost()}, identity.Options{Transport: fg.Client(), Logger: discardLog()})
	if err != nil {
		t.Fatal(err)
	}
	return cred
}

func newClient(t *testing.T, fg *fakegraph.Server, cred azcore.TokenCredential, co graph.ClientOptions) *graph.Client {
	t.Helper()
	co.BaseURL, co.Transport = fg.GraphBaseURL(), fg.Client()
	if co.Now == nil {
		co.Now = time.Now // the double's own clock
	}
	c, err := graph.NewClient(cred, co)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// ctx bounds every call of a test: a hang fails the test instead of stalling the run.
func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	t.Cleanup(cancel)
	return c
}

// fastRetries makes azcore's own retries of one call instant (the per-call override azcore honours).
func fastRetries(c context.Context, n int32) context.Context {
	return policy.WithRetryOptions(c, policy.RetryOptions{MaxRetries: n, RetryDelay: time.Millisecond,
		MaxRetryDelay: 5 * time.Millisecond})
}

func (e *fgEnv) addUser(id, name string) {
	e.fg.AddUser(fakegraph.User{ID: id, Props: map[string]any{"displayName": name,
		"userPrincipalName": strings.ToLower(name) + "@contoso.example", "jobTitle": "Engineer"}})
}

// graphErr asserts err is a *graph.Error of the wanted class and returns it.
func graphErr(t *testing.T, err error, want error) *graph.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v", want)
	}
	if !errors.Is(err, want) {
		t.Fatalf("error %v (kind %v), want %v", err, graph.KindOf(err), want)
	}
	var ge *graph.Error
	if !errors.As(err, &ge) {
		t.Fatalf("error %T %v is not a *graph.Error", err, err)
	}
	return ge
}

// onWire counts wire requests (not inner $batch items) to one route pattern, e.g. "GET /v1.0/users/{id}".
func onWire(fg *fakegraph.Server, pattern string) int {
	n := 0
	for _, r := range fg.Requests() {
		if !r.InBatch && r.Pattern == pattern {
			n++
		}
	}
	return n
}

func tokenRequests(fg *fakegraph.Server) int {
	return fg.Count(http.MethodPost, "/"+fg.TenantID()+"/oauth2/v2.0/token")
}

func TestFakeGraphTokenReusedAcrossCalls(t *testing.T) {
	t.Parallel()
	e := newFG(t, nil, graph.ClientOptions{})
	e.addUser("u1", "Ada")
	c := ctx(t)
	// Concurrent first calls: the bearer policy must still fetch a single token.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := e.c.GetObject(c, "users", "u1", nil); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if _, err := e.c.ListSubscriptions(c); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.DeltaStart(c, "users", nil, true); err != nil {
		t.Fatal(err)
	}
	if n := tokenRequests(e.fg); n != 1 {
		t.Errorf("token endpoint hit %d times for 10 Graph calls, want 1", n)
	}
	// Every Graph request carried the token (the double answers 401 otherwise).
	for _, r := range e.fg.Requests() {
		if strings.HasPrefix(r.Path, "/v1.0/") && r.Status == http.StatusUnauthorized {
			t.Errorf("%s %s: 401", r.Method, r.Path)
		}
	}
}

// TestFakeGraphShortRetryAfterIsRetried waits a real second. testing/synctest cannot fake it (tried
// with go1.26: the test hangs): the client and the double talk over a real TLS socket, and a goroutine
// blocked in network I/O is not "durably blocked", so the bubble's clock never advances to fire the
// retry timer while the transport's connection goroutines wait on the socket.
func TestFakeGraphShortRetryAfterIsRetried(t *testing.T) {
	t.Parallel()
	e := newFG(t, nil, graph.ClientOptions{})
	e.addUser("u1", "Ada")
	e.fg.Inject("GET /v1.0/users/{id}", fakegraph.Fault{Status: http.StatusTooManyRequests, RetryAfter: time.Second})
	start := time.Now()
	u, err := e.c.GetObject(ctx(t), "users", "u1", []string{"displayName"})
	took := time.Since(start)
	if err != nil {
		t.Fatalf("GetUser after a 1 s throttle: %v", err)
	}
	if u.ID() != "u1" || u["displayName"] != "Ada" {
		t.Errorf("user = %v", u)
	}
	var statuses []int
	for _, r := range e.fg.Requests() {
		if r.Pattern == "GET /v1.0/users/{id}" {
			statuses = append(statuses, r.Status)
		}
	}
	if len(statuses) != 2 || statuses[0] != 429 || statuses[1] != 200 {
		t.Errorf("GET users/{id} statuses %v, want [429 200]", statuses)
	}
	if took < 900*time.Millisecond {
		t.Errorf("the retry came after %v: Retry-After 1 s was not honoured", took)
	}
}

func TestFakeGraphLongRetryAfterComesBackAtOnce(t *testing.T) {
	t.Parallel()
	e := newFG(t, nil, graph.ClientOptions{})
	e.addUser("u1", "Ada")
	e.fg.Inject("GET /v1.0/users/{id}", fakegraph.Fault{Status: http.StatusTooManyRequests, RetryAfter: 120 * time.Second})
	start := time.Now()
	_, err := e.c.GetObject(ctx(t), "users", "u1", nil)
	took := time.Since(start)
	ge := graphErr(t, err, graph.ErrThrottled)
	if got := graph.RetryAfterOf(err); got != 120*time.Second {
		t.Errorf("RetryAfterOf = %v, want 2m0s", got)
	}
	if ge.Status != 429 || ge.Code != "TooManyRequests" || ge.RequestID == "" {
		t.Errorf("error fields: status %d code %q request-id %q", ge.Status, ge.Code, ge.RequestID)
	}
	if n := onWire(e.fg, "GET /v1.0/users/{id}"); n != 1 {
		t.Errorf("%d requests to GET users/{id}, want exactly 1 (no retry)", n)
	}
	if took > 3*time.Second {
		t.Errorf("took %v: the client waited instead of returning the throttle", took)
	}
}

func TestFakeGraphBatchMixedResults(t *testing.T) {
	t.Parallel()
	e := newFG(t, nil, graph.ClientOptions{})
	for _, u := range [][2]string{{"t1", "Throttled1"}, {"t2", "Throttled2"}, {"u1", "Ada"}, {"u2", "Grace"}, {"sd", "Gone"}} {
		e.addUser(u[0], u[1])
	}
	e.fg.SoftDeleteUser("sd")
	// Items run in order: item 1 is throttled by ThrottleBatchItems (2 s), item 2 by an injected inner
	// 429 with a longer Retry-After (5 s), the rest are answered normally.
	e.fg.ThrottleBatchItems(1, 2*time.Second)
	e.fg.Inject("GET /v1.0/users/{id}", fakegraph.Fault{Status: http.StatusTooManyRequests, RetryAfter: 5 * time.Second})
	ids := []string{"t1", "t2", "u1", "missing", "u2", "sd"}
	res, err := e.c.GetObjects(ctx(t), "users", ids, []string{"displayName"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Items) != len(ids) {
		t.Fatalf("%d items, want %d", len(res.Items), len(ids))
	}
	for i, it := range res.Items {
		if it.Path != "/users/"+ids[i] {
			t.Errorf("item %d is %q, want %q (input order)", i, it.Path, ids[i])
		}
	}
	want := []error{graph.ErrThrottled, graph.ErrThrottled, nil, graph.ErrNotFound, nil, graph.ErrNotFound}
	for i, w := range want {
		it := res.Items[i]
		switch {
		case w == nil && it.Err != nil:
			t.Errorf("%s: %v", it.Path, it.Err)
		case w == nil && "/users/"+it.Object.ID() != it.Path:
			t.Errorf("%s: user %v", it.Path, it.Object)
		case w != nil && !errors.Is(it.Err, w):
			t.Errorf("%s: error %v, want %v", it.Path, it.Err, w)
		}
	}
	if d := graph.RetryAfterOf(res.Items[0].Err); d != 2*time.Second {
		t.Errorf("item 1 Retry-After %v, want 2s", d)
	}
	if d := graph.RetryAfterOf(res.Items[1].Err); d != 5*time.Second {
		t.Errorf("item 2 Retry-After %v, want 5s", d)
	}
	if res.RetryAfter != 5*time.Second {
		t.Errorf("batch RetryAfter %v, want the longest, 5s", res.RetryAfter)
	}
	if got := res.Items[2].Object["displayName"]; got != "Ada" {
		t.Errorf("u1 displayName = %v", got)
	}
	if _, ok := res.Items[2].Object["@odata.context"]; ok {
		t.Error("@odata.context left in a batch item")
	}
	if n, m := e.fg.Count(http.MethodPost, "/v1.0/$batch"), e.fg.CountBatchItems(http.MethodGet, "/v1.0/users/"); n != 1 || m != len(ids) {
		t.Errorf("%d $batch POSTs with %d inner GETs, want 1 with %d", n, m, len(ids))
	}

	// The soft-deleted user 404s on /users (in the batch and alone) but is in the deleted items.
	_, err = e.c.GetObject(ctx(t), "users", "sd", nil)
	graphErr(t, err, graph.ErrNotFound)
	du, err := e.c.GetDeleted(ctx(t), "sd", []string{"displayName"})
	if err != nil {
		t.Fatalf("GetDeleted: %v", err)
	}
	if du.ID() != "sd" || du["displayName"] != "Gone" || du["deletedDateTime"] == nil {
		t.Errorf("deleted user = %v", du)
	}
	_, err = e.c.GetDeleted(ctx(t), "u1", nil)
	graphErr(t, err, graph.ErrNotFound)
}

func TestFakeGraphListSubscriptionsPages(t *testing.T) {
	t.Parallel()
	e := newFG(t, func(o *fakegraph.Options) { o.SubscriptionPageSize = 2 }, graph.ClientOptions{})
	var want []string
	for i := range 7 {
		id := "sub-" + string(rune('a'+i))
		e.fg.SeedSubscription(fakegraph.Subscription{ID: id, Resource: "users/u" + string(rune('a'+i)),
			NotificationURL: "https://hooks.contoso.example/api/notify", ClientState: "secret-state"})
		want = append(want, id)
	}
	// Another app's subscription in the same tenant is not listed.
	e.fg.SeedSubscription(fakegraph.Subscription{ID: "other-app", ApplicationID: "00000000-0000-4000-8000-00000000beef"})
	subs, err := e.c.ListSubscriptions(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range subs {
		got = append(got, s.ID)
		if s.ClientState != "" {
			t.Errorf("%s: clientState %q on a list (Graph returns null)", s.ID, s.ClientState)
		}
		if s.ExpirationDateTime.IsZero() || s.Resource == "" || s.ChangeType != "updated,deleted" {
			t.Errorf("decoded %+v", s)
		}
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("listed %v, want %v", got, want)
	}
	if n := onWire(e.fg, "GET /v1.0/subscriptions"); n != 4 {
		t.Errorf("%d list pages fetched, want 4 (7 subscriptions, 2 per page)", n)
	}

	// A failing page fails the whole list (no partial result).
	e.fg.Inject("GET /v1.0/subscriptions", fakegraph.Fault{Status: http.StatusNotFound})
	if subs, err := e.c.ListSubscriptions(ctx(t)); err == nil || subs != nil {
		t.Errorf("list with a failing page: %v, %v", subs, err)
	}
}

// rx is a subscriber endpoint: plain http on 127.0.0.1, which the double accepts for loopback.
type rx struct {
	*httptest.Server
	mu     sync.Mutex
	tokens []string
}

// newRx answers Graph's validation request with reply(token) (status, body).
func newRx(t *testing.T, reply func(token string) (int, string)) *rx {
	r := &rx{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		tok := req.URL.Query().Get("validationToken")
		io.Copy(io.Discard, req.Body)
		if tok == "" {
			w.WriteHeader(http.StatusAccepted) // a notification
			return
		}
		r.mu.Lock()
		r.tokens = append(r.tokens, tok)
		r.mu.Unlock()
		status, body := reply(tok)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *rx) validations() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.tokens)
}

func echo(tok string) (int, string) { return http.StatusOK, tok }

func TestFakeGraphSubscriptionLifecycle(t *testing.T) {
	t.Parallel()
	clock := &manualClock{t: time.Now().UTC().Truncate(time.Second)}
	e := newFG(t, func(o *fakegraph.Options) { o.Clock = clock.Now }, graph.ClientOptions{})
	good := newRx(t, echo)
	const state = "client-state-must-not-leak-42"
	c := ctx(t)
	exp := clock.Now().Add(2 * time.Hour)
	in := graph.Subscription{Resource: "users", ChangeType: "updated,deleted", NotificationURL: good.URL + "/api/notify?code=abc",
		ClientState: state, ExpirationDateTime: exp.Add(123 * time.Millisecond)}

	sub, err := e.c.CreateSubscription(c, in)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if sub.ID == "" || sub.ClientState != state || !sub.ExpirationDateTime.Equal(exp) || sub.NotificationURL != in.NotificationURL {
		t.Errorf("created %+v (clientState %q)", sub, sub.ClientState)
	}
	if good.validations() != 1 {
		t.Errorf("%d validation requests, want 1", good.validations())
	}
	if live := e.fg.Subscriptions(); len(live) != 1 || live[0].ID != sub.ID {
		t.Errorf("double holds %v", live)
	}

	// The same resource and changeType again: 409, without a second handshake.
	_, err = e.c.CreateSubscription(c, in)
	if ge := graphErr(t, err, graph.ErrConflict); ge.Status != 409 || !strings.Contains(ge.Message, sub.ID) {
		t.Errorf("conflict error %+v", ge)
	}
	if good.validations() != 1 {
		t.Errorf("the conflicting create ran a handshake")
	}

	// Renew.
	exp2 := clock.Now().Add(48 * time.Hour)
	upd, err := e.c.UpdateSubscription(c, sub.ID, graph.SubscriptionUpdate{ExpirationDateTime: exp2})
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	if !upd.ExpirationDateTime.Equal(exp2) || upd.ID != sub.ID {
		t.Errorf("updated %+v, want expiry %v", upd, exp2)
	}

	// Delete, then it is gone for every operation.
	if err := e.c.DeleteSubscription(c, sub.ID); err != nil {
		t.Fatalf("delete: %v", err)
	}
	graphErr(t, e.c.DeleteSubscription(c, sub.ID), graph.ErrNotFound)
	_, err = e.c.UpdateSubscription(c, sub.ID, graph.SubscriptionUpdate{ExpirationDateTime: exp2})
	graphErr(t, err, graph.ErrNotFound)
	graphErr(t, e.c.ReauthorizeSubscription(c, sub.ID), graph.ErrNotFound)

	// Removed behind our back, or expired on Graph's clock: 404 as well.
	sub2, err := e.c.CreateSubscription(c, in)
	if err != nil {
		t.Fatalf("re-create after delete: %v", err)
	}
	if err := e.c.ReauthorizeSubscription(c, sub2.ID); err != nil {
		t.Fatalf("reauthorize: %v", err)
	}
	e.fg.DeleteSubscriptionSilently(sub2.ID)
	_, err = e.c.UpdateSubscription(c, sub2.ID, graph.SubscriptionUpdate{ExpirationDateTime: exp2})
	graphErr(t, err, graph.ErrNotFound)

	sub3, err := e.c.CreateSubscription(c, in)
	if err != nil {
		t.Fatalf("third create: %v", err)
	}
	clock.Advance(3 * time.Hour) // past its 2 h expiry
	_, err = e.c.UpdateSubscription(c, sub3.ID, graph.SubscriptionUpdate{ExpirationDateTime: clock.Now().Add(time.Hour)})
	graphErr(t, err, graph.ErrNotFound)
	if subs, err := e.c.ListSubscriptions(c); err != nil || len(subs) != 0 {
		t.Errorf("list after expiry: %v, %v", subs, err)
	}
}

func TestFakeGraphSubscriptionValidationFails(t *testing.T) {
	t.Parallel()
	e := newFG(t, nil, graph.ClientOptions{})
	const state = "client-state-must-not-leak-42"
	cases := map[string]func(string) (int, string){
		"wrong body":  func(string) (int, string) { return http.StatusOK, "not the token" },
		"status 500":  func(tok string) (int, string) { return http.StatusInternalServerError, tok },
		"status 404":  func(string) (int, string) { return http.StatusNotFound, "" },
		"empty reply": func(string) (int, string) { return http.StatusOK, "" },
	}
	for name, reply := range cases {
		t.Run(name, func(t *testing.T) {
			bad := newRx(t, reply)
			_, err := e.c.CreateSubscription(ctx(t), graph.Subscription{Resource: "users", ChangeType: "updated",
				NotificationURL: bad.URL + "/api/notify", ClientState: state, ExpirationDateTime: time.Now().Add(time.Hour)})
			ge := graphErr(t, err, graph.ErrValidationFailed)
			if ge.Status != 400 || bad.validations() != 1 {
				t.Errorf("status %d, %d validation requests", ge.Status, bad.validations())
			}
			if strings.Contains(err.Error(), state) {
				t.Errorf("the error shows the clientState: %v", err)
			}
		})
	}
	if n := len(e.fg.Subscriptions()); n != 0 {
		t.Errorf("%d subscriptions after failed handshakes", n)
	}
	// A 400 that is not about validation stays a bad request.
	_, err := e.c.CreateSubscription(ctx(t), graph.Subscription{Resource: "users", ChangeType: "created",
		NotificationURL: "https://hooks.contoso.example/x", ExpirationDateTime: time.Now().Add(time.Hour)})
	graphErr(t, err, graph.ErrBadRequest)
}

func TestFakeGraphSubscriptionQuota(t *testing.T) {
	t.Parallel()
	e := newFG(t, func(o *fakegraph.Options) { o.MaxSubscriptions = 2 }, graph.ClientOptions{})
	good := newRx(t, echo)
	c := ctx(t)
	for i, res := range []string{"users/a", "users/b", "users/c"} {
		_, err := e.c.CreateSubscription(c, graph.Subscription{Resource: res, ChangeType: "updated",
			NotificationURL: good.URL, ExpirationDateTime: time.Now().Add(time.Hour)})
		if i < 2 {
			if err != nil {
				t.Fatalf("create %d: %v", i, err)
			}
			continue
		}
		if ge := graphErr(t, err, graph.ErrForbidden); ge.Status != 403 || !strings.Contains(ge.Message, "limit") {
			t.Errorf("quota error %+v", ge)
		}
	}
}

func TestFakeGraphErrorClasses(t *testing.T) {
	t.Parallel()
	e := newFG(t, nil, graph.ClientOptions{})
	e.addUser("u1", "Ada")
	const route = "GET /v1.0/users/{id}"
	cases := []struct {
		name     string
		fault    fakegraph.Fault
		want     error
		requests int // GET users/{id} on the wire
		code     string
	}{
		// Retried by azcore (2 fast retries), then classified.
		{"503 after retries", fakegraph.Fault{Status: 503, Count: -1}, graph.ErrTransient, 3, "serviceNotAvailable"},
		{"500", fakegraph.Fault{Status: 500, Count: -1}, graph.ErrTransient, 3, "generalException"},
		{"504", fakegraph.Fault{Status: 504, Count: -1}, graph.ErrTransient, 3, "gatewayTimeout"},
		{"429 without Retry-After", fakegraph.Fault{Status: 429, Count: -1}, graph.ErrThrottled, 3, "TooManyRequests"},
		// Not retried.
		{"404", fakegraph.Fault{Status: 404}, graph.ErrNotFound, 1, "Request_ResourceNotFound"},
		{"403", fakegraph.Fault{Status: 403}, graph.ErrForbidden, 1, "Authorization_RequestDenied"},
		{"401", fakegraph.Fault{Status: 401}, graph.ErrUnauthorized, 1, "InvalidAuthenticationToken"},
		{"409", fakegraph.Fault{Status: 409}, graph.ErrConflict, 1, "UnknownError"},
		{"400", fakegraph.Fault{Status: 400}, graph.ErrBadRequest, 1, "UnknownError"},
	}
	for _, tc := range cases {
		// Sequential: the faults share one route of one double.
		e.fg.ClearFaults()
		e.fg.ResetRequests()
		e.fg.Inject(route, tc.fault)
		_, err := e.c.GetObject(fastRetries(ctx(t), 2), "users", "u1", nil)
		ge := graphErr(t, err, tc.want)
		if ge.Code != tc.code || ge.Status != tc.fault.Status || ge.RequestID == "" {
			t.Errorf("%s: status %d code %q request-id %q", tc.name, ge.Status, ge.Code, ge.RequestID)
		}
		if n := onWire(e.fg, route); n != tc.requests {
			t.Errorf("%s: %d requests, want %d", tc.name, n, tc.requests)
		}
	}
	e.fg.ClearFaults()

	// The client's own MaxRetries (negative: none) without the per-call override.
	noRetry := newClient(t, e.fg, secretCred(t, e.fg, fgSecret), graph.ClientOptions{MaxRetries: -1})
	e.fg.ResetRequests()
	e.fg.Inject(route, fakegraph.Fault{Status: 503})
	_, err := noRetry.GetObject(ctx(t), "users", "u1", nil)
	graphErr(t, err, graph.ErrTransient)
	if n := onWire(e.fg, route); n != 1 {
		t.Errorf("MaxRetries -1: %d requests, want 1", n)
	}

	// A $select the directory does not know: Graph's 400.
	_, err = e.c.GetObject(ctx(t), "users", "u1", []string{"noSuchProperty"})
	if ge := graphErr(t, err, graph.ErrBadRequest); ge.Status != 400 || ge.Code != "Request_BadRequest" {
		t.Errorf("bad $select: %+v", ge)
	}
	// Refused locally: no request.
	e.fg.ResetRequests()
	_, err = e.c.GetObject(ctx(t), "users", "..", nil)
	if ge := graphErr(t, err, graph.ErrBadRequest); ge.Status != 0 {
		t.Errorf("local refusal has status %d", ge.Status)
	}
	if n := len(e.fg.Requests()); n != 0 {
		t.Errorf("a refused request reached the double (%d requests)", n)
	}
	// A cancelled context is the caller's doing: not transient.
	cc, cancel := context.WithCancel(ctx(t))
	cancel()
	_, err = e.c.GetObject(cc, "users", "u1", nil)
	if k := graph.KindOf(err); k != graph.KindOther || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: kind %v, %v", k, err)
	}
}

// TestFakeGraphMissingRole: a token without a Graph application role the double models (AuditLog.Read.All
// opens nothing it serves) gets 403 on every call.
func TestFakeGraphMissingRole(t *testing.T) {
	t.Parallel()
	e := newFG(t, func(o *fakegraph.Options) { o.AppRoles = []string{"AuditLog.Read.All"} }, graph.ClientOptions{})
	_, err := e.c.ListSubscriptions(ctx(t))
	if ge := graphErr(t, err, graph.ErrForbidden); ge.Code != "Authorization_RequestDenied" {
		t.Errorf("code %q", ge.Code)
	}
}

func TestFakeGraphCredentialFailures(t *testing.T) {
	t.Parallel()
	e := newFG(t, nil, graph.ClientOptions{})

	// Wrong secret: Entra's 401 invalid_client, an unauthorized error without an HTTP status of Graph's.
	bad := newClient(t, e.fg, secretCred(t, e.fg, "wrong-secret"), graph.ClientOptions{})
	_, err := bad.ListSubscriptions(ctx(t))
	ge := graphErr(t, err, graph.ErrUnauthorized)
	var afe *azidentity.AuthenticationFailedError
	if ge.Status != 0 || !errors.As(err, &afe) || afe.RawResponse == nil || afe.RawResponse.StatusCode != 401 {
		t.Errorf("wrong secret: status %d, cause %v", ge.Status, err)
	}
	if strings.Contains(err.Error(), "wrong-secret") || strings.Contains(err.Error(), fgSecret) {
		t.Errorf("the error shows a secret: %v", err)
	}
	if n := e.fg.Count("", "/v1.0/"); n != 0 {
		t.Errorf("%d Graph requests without a token", n)
	}

	// Unknown tenant: Entra's 400 AADSTS90002, still a credential refusal.
	cred, err := identity.NewGraphCredential(identity.Settings{TenantID: "00000000-0000-4000-8000-000000000000",
		ClientID: e.fg.ClientID(), ClientSecret: fgSecret, AuthorityHost: e.fg.AuthorityHost()},
		identity.Options{Transport: e.fg.Client(), Logger: discardLog()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = newClient(t, e.fg, cred, graph.ClientOptions{}).ListSubscriptions(ctx(t))
	graphErr(t, err, graph.ErrUnauthorized)

	// A token endpoint that throttles past azidentity's retry cap is transient, not a refusal.
	e.fg.Inject("POST /{tenant}/oauth2/v2.0/token", fakegraph.Fault{Status: 429, RetryAfter: 120 * time.Second})
	fresh := newClient(t, e.fg, secretCred(t, e.fg, fgSecret), graph.ClientOptions{})
	start := time.Now()
	_, err = fresh.ListSubscriptions(ctx(t))
	graphErr(t, err, graph.ErrTransient)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	// Once the endpoint recovers the same client works.
	if _, err := fresh.ListSubscriptions(ctx(t)); err != nil {
		t.Errorf("after the token endpoint recovered: %v", err)
	}
}

func TestFakeGraphDelta(t *testing.T) {
	t.Parallel()
	e := newFG(t, func(o *fakegraph.Options) { o.UserPageSize = 2 }, graph.ClientOptions{})
	for _, u := range [][2]string{{"u1", "Ada"}, {"u2", "Grace"}, {"u3", "Edsger"}, {"u4", "Barbara"}, {"u5", "Ken"}} {
		e.addUser(u[0], u[1])
	}
	c := ctx(t)
	sel := []string{"displayName", "jobTitle"}

	latest, err := e.c.DeltaStart(c, "users", sel, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(latest.Objects) != 0 || latest.DeltaLink == "" || latest.NextLink != "" {
		t.Fatalf("latest: %+v", latest)
	}

	// A full round pages through every user and ends in a deltaLink.
	full, pages := map[string]graph.Object{}, 0
	p, err := e.c.DeltaStart(c, "users", sel, false)
	for ; err == nil; p, err = e.c.Delta(c, p.NextLink) {
		pages++
		for _, u := range p.Objects {
			full[u.ID()] = u
		}
		if p.DeltaLink != "" {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(full) != 5 || pages != 3 || full["u3"]["displayName"] != "Edsger" {
		t.Errorf("full round: %d users in %d pages: %v", len(full), pages, full)
	}
	if _, ok := full["u1"]["userPrincipalName"]; ok {
		t.Errorf("$select not applied: %v", full["u1"])
	}
	fullLink := p.DeltaLink

	// Changes after both links.
	e.fg.UpdateUser("u1", map[string]any{"displayName": "Ada L."})
	e.fg.SoftDeleteUser("u2")
	e.fg.PermanentlyDeleteUser("u3")
	for name, link := range map[string]string{"from latest": latest.DeltaLink, "from full": fullLink} {
		got := map[string]graph.Object{}
		p, err := e.c.Delta(c, link)
		for ; err == nil && p.NextLink != ""; p, err = e.c.Delta(c, p.NextLink) {
			for _, u := range p.Objects {
				got[u.ID()] = u
			}
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, u := range p.Objects {
			got[u.ID()] = u
		}
		if len(got) != 3 || got["u1"]["displayName"] != "Ada L." || got["u1"].Removed() != "" ||
			got["u2"].Removed() != "changed" || got["u3"].Removed() != "deleted" {
			t.Errorf("%s: %v", name, got)
		}
		if p.DeltaLink == "" {
			t.Errorf("%s: the round did not end in a deltaLink", name)
		}
	}

	// Expired delta links call for a full resync.
	e.fg.ExpireDeltaTokens()
	_, err = e.c.Delta(c, fullLink)
	if ge := graphErr(t, err, graph.ErrResyncRequired); ge.Code != "syncStateNotFound" {
		t.Errorf("expired token: %+v", ge)
	}
	e.fg.Inject("GET /v1.0/users/delta", fakegraph.Fault{Status: http.StatusGone})
	_, err = e.c.DeltaStart(c, "users", sel, true)
	graphErr(t, err, graph.ErrResyncRequired)
	// The same 410 elsewhere is not a resync.
	e.fg.Inject("GET /v1.0/users/{id}", fakegraph.Fault{Status: http.StatusGone})
	_, err = e.c.GetObject(c, "users", "u1", nil)
	graphErr(t, err, graph.ErrBadRequest)

	// A link to another host is refused before any request carries the token there.
	e.fg.ResetRequests()
	_, err = e.c.Delta(c, "https://attacker.example/v1.0/users/delta?$deltatoken=x")
	graphErr(t, err, graph.ErrBadRequest)
	if n := len(e.fg.Requests()); n != 0 {
		t.Errorf("%d requests for a foreign link", n)
	}
}

// manualClock is Graph's clock in the double (subscription expiry); tokens stay on the real clock.
type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestMailboxCatchUpKeepsTheNewest: a catch-up cut short by its bound keeps the most recently modified
// items, because it asks Graph to order the list by lastModifiedDateTime, newest first.
func TestMailboxCatchUpKeepsTheNewest(t *testing.T) {
	t.Parallel()
	clock := &manualClock{t: time.Now().UTC().Truncate(time.Second)}
	e := newFG(t, func(o *fakegraph.Options) { o.Clock = clock.Now }, graph.ClientOptions{})
	const user = "6e1f0001-7c3a-4b2d-9e8f-0a1b2c3d4e5f"
	start := clock.Now()
	var ids []string
	for i := range 5 {
		ids = append(ids, e.fg.AddMessage(user, fakegraph.MailItem{Props: map[string]any{"subject": strconv.Itoa(i)}}))
		clock.Advance(time.Minute)
	}
	got, more, err := e.c.ListMailboxItemsSince(ctx(t), user, "messages", start, 2)
	if err != nil {
		t.Fatal(err)
	}
	if !more || !slices.Equal(got, []string{ids[4], ids[3]}) {
		t.Errorf("got %v (more %v), want the two newest %v", got, more, ids[3:])
	}
	for _, r := range e.fg.Requests() {
		if strings.HasSuffix(r.Path, "/messages") && !strings.Contains(r.RawQuery, "%24orderby=lastModifiedDateTime+desc") {
			t.Errorf("list without the newest-first order: %s?%s", r.Path, r.RawQuery)
		}
	}
}
