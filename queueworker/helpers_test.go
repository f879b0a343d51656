package queueworker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/graphwebhooks/graph-webhooks-go/internal/azuritetest"
	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/customhandler"
	"github.com/graphwebhooks/graph-webhooks-go/internal/directory"
	"github.com/graphwebhooks/graph-webhooks-go/internal/events"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/jwtcheck"
	"github.com/graphwebhooks/graph-webhooks-go/internal/logctx"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
	"github.com/graphwebhooks/graph-webhooks-go/internal/resync"
	"github.com/graphwebhooks/graph-webhooks-go/internal/storagequeue"
	"github.com/graphwebhooks/graph-webhooks-go/internal/subscription"
)

const (
	testTenant      = "8c1f4b2e-0d6a-4f57-9a3e-2b9d7c6e5f41"
	testClient      = "3f1b1c3e-0000-4000-8000-000000000001"
	testSecret      = "fake~graph~secret~value"
	testClientState = "s3cr3t-client-state-0123456789"
	testSub         = "d850b120-0000-4000-8000-0000000000aa"
)

// firstSeen is when the webhook queued the test messages: now, so that they are not too old to retry.
var firstSeen = time.Now().UTC().Truncate(time.Second)

func TestMain(m *testing.M) {
	code := m.Run()
	azuritetest.StopShared()
	os.Exit(code)
}

// enqueued is one message the function wrote through storagequeue.
type enqueued struct {
	queue string
	text  []byte
	delay time.Duration
}

// env is a Function wired to a Graph double and a real Azurite, with a queue of its own.
type env struct {
	t      testing.TB
	fg     *fakegraph.Server
	q      *storagequeue.Client
	f      *Function
	cfg    *config.Config
	graph  *graph.Client
	logs   *syncBuffer
	ctx    context.Context
	queue  string
	poison string

	events *recEvents

	mu        sync.Mutex
	out       []enqueued
	delivered int // re-enqueued messages drain has delivered
}

// recQueue records what the function enqueues, and passes it on to Azurite.
type recQueue struct {
	e *env
	q *storagequeue.Client
}

func (r recQueue) Enqueue(ctx context.Context, queue string, text []byte, delay time.Duration) error {
	r.e.mu.Lock()
	r.e.out = append(r.e.out, enqueued{queue, bytes.Clone(text), delay})
	r.e.mu.Unlock()
	return r.q.Enqueue(ctx, queue, text, delay)
}

// recEvents records the events the function writes: in the collector of the invocation's context when it
// has one (invocations run concurrently), else in evs, which take empties.
type recEvents struct {
	mu   sync.Mutex
	evs  []message.Event
	fail error
}

type collectorKey struct{}

// collect returns ctx with a collector for the events written under it.
func collect(ctx context.Context) (context.Context, *[]message.Event) {
	var evs []message.Event
	return context.WithValue(ctx, collectorKey{}, &evs), &evs
}

func (r *recEvents) Write(ctx context.Context, items []events.Item) (events.Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return events.Result{}, r.fail
	}
	dst := &r.evs
	if c, ok := ctx.Value(collectorKey{}).(*[]message.Event); ok {
		dst = c
	}
	for _, it := range items {
		e := it.Event
		// Through JSON, as a consumer reads them.
		b, err := json.Marshal(e)
		if err != nil {
			return events.Result{}, err
		}
		var back message.Event
		if err := json.Unmarshal(b, &back); err != nil {
			return events.Result{}, err
		}
		*dst = append(*dst, back)
	}
	return events.Result{Written: len(items)}, nil
}

func (r *recEvents) take() []message.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.evs
	r.evs = nil
	return out
}

type envOption func(*envConfig)

type envConfig struct {
	settings  map[string]string
	deps      func(*Deps)
	maxRetry  int32
	graphOpts func(*fakegraph.Options)
}

// withGraph adjusts the Graph double's options.
func withGraph(fn func(*fakegraph.Options)) envOption { return func(c *envConfig) { c.graphOpts = fn } }

func withSettings(kv map[string]string) envOption {
	return func(c *envConfig) {
		for k, v := range kv {
			c.settings[k] = v
		}
	}
}

func withDeps(fn func(*Deps)) envOption { return func(c *envConfig) { c.deps = fn } }

var queueSeq atomic.Int64

func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	// The options are applied twice: first for the double's own options (it must exist before the
	// settings that name it), then over those settings.
	c := envConfig{settings: map[string]string{}}
	for _, o := range opts {
		o(&c)
	}
	fo := fakegraph.NewOptions(testTenant, testClient, testSecret)
	if c.graphOpts != nil {
		c.graphOpts(&fo)
	}
	fg := fakegraph.New(fo)
	t.Cleanup(fg.Close)
	az := azuritetest.Shared(t)
	c = envConfig{settings: map[string]string{
		config.TenantID:      testTenant,
		config.ClientID:      testClient,
		config.ClientSecret:  testSecret,
		config.AuthorityHost: fg.AuthorityHost(),
		config.GraphBaseURL:  fg.GraphBaseURL(),
		config.Storage:       az.ConnectionString(),
	}, maxRetry: -1}
	for _, o := range opts {
		o(&c)
	}
	cfg := config.Load(func(k string) string { return c.settings[k] })

	cred, err := azidentity.NewClientSecretCredential(testTenant, testClient, testSecret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions:            azcore.ClientOptions{Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: fg.AuthorityHost()}, Transport: fg.Client()},
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	gc, err := graph.NewClient(cred, graph.ClientOptions{BaseURL: fg.GraphBaseURL(), Transport: fg.Client(), MaxRetries: c.maxRetry, Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	qc, err := storagequeue.New(cfg.Storage, storagequeue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, fg: fg, q: qc, cfg: cfg, graph: gc, logs: &syncBuffer{}}
	e.queue = fmt.Sprintf("qw%d-%d", time.Now().UnixNano()%1e9, queueSeq.Add(1))
	e.poison = storagequeue.PoisonQueue(e.queue)
	e.events = &recEvents{}
	d := Deps{
		Config: cfg,
		Graph:  func() (directory.Graph, error) { return gc, nil },
		Queue:  func() (Queue, error) { return recQueue{e, qc}, nil },
		Events: e.events,
		Keys:   jwtcheck.NewTenantJWKS(fg.AuthorityHost(), testTenant, fg.Client(), time.Now),
		Now:    time.Now, // the Graph double's clock too
	}
	if c.deps != nil {
		c.deps(&d)
	}
	e.f = New(d)
	e.f.queue = e.queue
	e.f.backoffBase = time.Second // whole seconds: storage delays are whole seconds
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	e.ctx = logctx.With(ctx, slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("function log:\n%s", e.logs.String())
		}
	})
	return e
}

// enqueuedTo returns what the function wrote to queue.
func (e *env) enqueuedTo(queue string) []enqueued {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []enqueued
	for _, x := range e.out {
		if x.queue == queue {
			out = append(out, x)
		}
	}
	return out
}

// addUsers adds users u0..u(n-1) with a prefix, returning their ids.
func (e *env) addUsers(prefix string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%04d-4000-8000-000000000000", prefix, i)
		e.fg.AddUser(fakegraph.User{ID: ids[i], Props: userProps(ids[i])})
	}
	return ids
}

func userProps(id string) map[string]any {
	return map[string]any{"displayName": "User " + id[:8], "userPrincipalName": id[:8] + "@contoso.example", "mail": id[:8] + "@contoso.example",
		"accountEnabled": true, "jobTitle": "Engineer", "department": "R&D", "officeLocation": "not selected"}
}

var seqNo atomic.Int64

// note builds a user change notification the way Graph sends it (docs/graph-facts.md §3.3).
func note(userID, changeType string) graph.ChangeNotification {
	return noteFor(testSub, userID, changeType, 638700000000000000+seqNo.Add(1))
}

func noteFor(sub, userID, changeType string, seq int64) graph.ChangeNotification {
	raw := fmt.Sprintf(`{"subscriptionId":%q,"subscriptionExpirationDateTime":"2026-12-20T10:00:00+00:00","changeType":%q,`+
		`"clientState":%q,"tenantId":%q,"resource":"Users/%s","resourceData":{"@odata.type":"#Microsoft.Graph.User",`+
		`"@odata.id":"Users/%s","id":%q,"organizationId":%q,"eventTime":"2026-11-27T09:59:58.24Z","sequenceNumber":%d}}`,
		sub, changeType, testClientState, testTenant, userID, userID, userID, testTenant, seq)
	var n graph.ChangeNotification
	if err := json.Unmarshal([]byte(raw), &n); err != nil {
		panic(err)
	}
	return n
}

func lifecycleNote(event string) graph.ChangeNotification {
	raw := fmt.Sprintf(`{"subscriptionId":%q,"subscriptionExpirationDateTime":"2026-12-20T10:00:00+00:00","tenantId":%q,"clientState":%q,"lifecycleEvent":%q}`,
		testSub, testTenant, testClientState, event)
	var n graph.ChangeNotification
	if err := json.Unmarshal([]byte(raw), &n); err != nil {
		panic(err)
	}
	return n
}

func msg(kind message.Kind, ns ...graph.ChangeNotification) *message.Message {
	return &message.Message{V: message.Version, Kind: kind, Notifications: ns, FirstSeen: firstSeen}
}

// hostText is the message as the host delivers what the webhook's output binding wrote: re-printed indented.
func hostText(t testing.TB, m *message.Message) []byte {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "  "); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// hostRequest is the invocation request the real host sends for a queue message (docs/host-protocol.md §3.4): the text
// JSON-encoded twice, DequeueCount as a string, Id and PopReceipt in extra quotes.
func hostRequest(t testing.TB, text []byte, dequeueCount int) *customhandler.Request {
	t.Helper()
	once, _ := json.Marshal(string(text))
	twice, _ := json.Marshal(string(once))
	q := func(s string) json.RawMessage { b, _ := json.Marshal(s); return b }
	return &customhandler.Request{
		Data: map[string]json.RawMessage{"message": twice},
		Metadata: map[string]json.RawMessage{
			"DequeueCount": q(fmt.Sprint(dequeueCount)),
			"Id":           q(`"4d5c1c8e-62a5-4b6f-9d56-1f3a2b0c9e11"`),
			"PopReceipt":   q(`"AgAAAAMAAAAAAAAAAgtnj8x+1QE="`),
		},
	}
}

// result is what one invocation produced, read back the way the host reads it.
type result struct {
	events []message.Event
	logs   []string
}

func (e *env) invoke(req *customhandler.Request) (result, error) {
	ctx, evs := collect(e.ctx)
	resp, err := e.f.Invoke(ctx, req)
	if err != nil {
		return result{}, err
	}
	wire, err := resp.MarshalJSON()
	if err != nil {
		e.t.Fatal(err)
	}
	var got struct {
		Outputs map[string]json.RawMessage
		Logs    []string
	}
	if err := json.Unmarshal(wire, &got); err != nil {
		e.t.Fatalf("response the host cannot read: %v", err)
	}
	if len(got.Outputs) > 0 {
		e.t.Fatalf("the worker writes no output bindings, got %s", wire)
	}
	e.events.mu.Lock()
	defer e.events.mu.Unlock()
	return result{events: *evs, logs: got.Logs}, nil
}

func (e *env) mustInvoke(req *customhandler.Request) result {
	e.t.Helper()
	r, err := e.invoke(req)
	if err != nil {
		e.t.Fatalf("Invoke failed: %v", err)
	}
	return r
}

func (e *env) invokeMessage(m *message.Message) result {
	e.t.Helper()
	return e.mustInvoke(hostRequest(e.t, hostText(e.t, m), 1))
}

// receive waits until a message is visible on queue (or the deadline passes) and takes it.
func (e *env) receive(queue string, within time.Duration) (storagequeue.Message, bool) {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for {
		ms, err := e.q.Receive(e.ctx, queue, 1, time.Minute)
		if err != nil {
			e.t.Fatal(err)
		}
		if len(ms) == 1 {
			if err := e.q.Delete(e.ctx, queue, ms[0]); err != nil {
				e.t.Fatal(err)
			}
			return ms[0], true
		}
		if time.Now().After(deadline) {
			return storagequeue.Message{}, false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// drain delivers the function's re-enqueued messages back to it, as the host would, until every message it
// wrote to its queue has been delivered (each must become visible within the deadline). It returns every
// event and every message delivered.
func (e *env) drain(within time.Duration) ([]message.Event, []*message.Message) {
	e.t.Helper()
	var events []message.Event
	var seen []*message.Message
	deadline := time.Now().Add(within)
	for e.delivered < len(e.enqueuedTo(e.queue)) {
		m, ok := e.receive(e.queue, time.Until(deadline))
		if !ok {
			e.t.Fatalf("queue %s: %d of %d re-enqueued messages delivered within %s", e.queue, e.delivered, len(e.enqueuedTo(e.queue)), within)
		}
		e.delivered++
		dm, err := message.Decode(m.Text)
		if err != nil {
			e.t.Fatalf("re-enqueued message does not decode: %v", err)
		}
		seen = append(seen, dm)
		r := e.mustInvoke(hostRequest(e.t, m.Text, int(m.DequeueCount)))
		events = append(events, r.events...)
	}
	return events, seen
}

func byResource(events []message.Event) map[string]message.Event {
	out := map[string]message.Event{}
	for _, ev := range events {
		out[ev.ResourceID] = ev
	}
	return out
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) contains(sub string) bool { return strings.Contains(s.String(), sub) }

// fakeSubs is a Subscriptions double counting calls per event. It lists every GUID as this app's
// subscription for users, unless notListed says otherwise. With ration, it rations as the keeper does for
// one interval: an action per subscription and kind (missed or not) until Release gives its slot back.
type fakeSubs struct {
	renew, recreate, missed atomic.Int32
	calls                   atomic.Int32
	renewErr                error
	recreateErr             error
	listErr                 error
	dropped                 bool // answer that the action ran within the interval
	notListed               func(id string) bool
	ration                  bool
	mu                      sync.Mutex
	taken                   map[string]bool
	released                atomic.Int32
}

func rationKey(r subscription.LifecycleRequest) string {
	return strings.ToLower(r.SubscriptionID) + " " + strconv.FormatBool(r.Event == graph.Missed)
}

// take reserves r's slot, or reports that it is taken.
func (f *fakeSubs) take(r subscription.LifecycleRequest) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.ration {
		return true
	}
	if f.taken == nil {
		f.taken = map[string]bool{}
	}
	if f.taken[rationKey(r)] {
		return false
	}
	f.taken[rationKey(r)] = true
	return true
}

func (f *fakeSubs) Release(r subscription.LifecycleResult) {
	if r.Verdict != subscription.Acted {
		return
	}
	f.released.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.taken, rationKey(r.LifecycleRequest))
}

func (f *fakeSubs) Lifecycle(_ context.Context, reqs []subscription.LifecycleRequest) ([]subscription.LifecycleResult, error) {
	f.calls.Add(1)
	if f.listErr != nil {
		return nil, f.listErr
	}
	users := config.ResourceSpec{Collection: config.Users}
	var out []subscription.LifecycleResult
	for _, r := range reqs {
		res := subscription.LifecycleResult{LifecycleRequest: r, Verdict: subscription.Acted, Resource: users}
		var err error
		switch {
		case f.notListed != nil && f.notListed(r.SubscriptionID):
			res.Verdict, res.Resource = subscription.NotListed, config.ResourceSpec{}
			out = append(out, res)
			continue
		case !f.take(r):
			res.Verdict = subscription.Limited
			out = append(out, res)
			continue
		case r.Event == graph.Missed:
			f.missed.Add(1)
		case r.Event == graph.SubscriptionRemoved:
			f.recreate.Add(1)
			err = f.recreateErr
			res.Outcome = subscription.Outcome{Resource: "users", Action: subscription.Recreated, ID: r.SubscriptionID}
		default:
			f.renew.Add(1)
			err = f.renewErr
			res.Outcome = subscription.Outcome{Resource: "users", Action: subscription.Renewed, ID: r.SubscriptionID}
		}
		switch {
		case err != nil:
			res.Verdict, res.Err = subscription.Failed, err
		case f.dropped:
			res.Verdict = subscription.Limited
		}
		out = append(out, res)
	}
	return out, nil
}

type fakeResync struct {
	mu      sync.Mutex
	reasons []string
	err     error
}

func (f *fakeResync) RequestResync(_ context.Context, collection, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reasons = append(f.reasons, collection+":"+reason)
	return f.err
}

func (f *fakeResync) Step(context.Context, *message.Message) (resync.StepResult, error) {
	return resync.StepResult{}, errors.New("no resync steps in this test")
}

func (f *fakeResync) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.reasons...)
}
