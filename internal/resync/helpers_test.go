package resync_test

// Integration tests: the Runner against the fakegraph double (TLS on loopback) and a real Azurite (blob
// for the checkpoint, queues for continuations and events). Tests wait on conditions only: a resync step
// enqueues its continuation before it returns, so "the work queue is empty" means the pass has nothing left
// to do. Delays the Runner asks for are recorded and then dropped (the message is visible at once), so the
// tests can check them without waiting for them.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/azuritetest"
	"github.com/graphwebhooks/graph-webhooks-go/internal/checkpoint"
	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/events"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/identity"
	"github.com/graphwebhooks/graph-webhooks-go/internal/logctx"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
	"github.com/graphwebhooks/graph-webhooks-go/internal/resync"
	"github.com/graphwebhooks/graph-webhooks-go/internal/storagequeue"
	"github.com/graphwebhooks/graph-webhooks-go/internal/testclock"
)

func TestMain(m *testing.M) {
	code := m.Run()
	azuritetest.StopShared()
	os.Exit(code)
}

const fgSecret = "fakegraph-secret~0123456789"

var seq atomic.Int64

func unique(prefix string) string {
	return fmt.Sprintf("%s%d-%d", prefix, rand.Int64N(1e9), seq.Add(1))
}

// clock is the Runner's injected time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// sent is one message the Runner enqueued.
type sent struct {
	queue string
	text  []byte
	delay time.Duration
}

// recQueue records every enqueue and passes it on to Azurite without its delay, on the env's own queues
// (rename maps the product's queue names to them, so that tests sharing one Azurite do not meet).
type recQueue struct {
	q      *storagequeue.Client
	rename map[string]string
	mu     sync.Mutex
	sent   []sent
}

func (r *recQueue) Enqueue(ctx context.Context, queue string, text []byte, delay time.Duration) error {
	if to, ok := r.rename[queue]; ok {
		queue = to
	}
	r.mu.Lock()
	r.sent = append(r.sent, sent{queue, append([]byte(nil), text...), delay})
	r.mu.Unlock()
	return r.q.Enqueue(ctx, queue, text, 0)
}

func (r *recQueue) to(queue string) []sent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []sent
	for _, s := range r.sent {
		if s.queue == queue {
			out = append(out, s)
		}
	}
	return out
}

type env struct {
	t       *testing.T
	fg      *fakegraph.Server
	gc      *graph.Client
	sq      *storagequeue.Client
	rq      *recQueue
	store   *checkpoint.Store
	clock   *clock
	cfg     *config.Config
	r       *resync.Runner
	graph   resync.Graph // what the Runner talks to (gc unless a test wraps it)
	work    string
	changes string
	vars    map[string]string
}

type envOption func(vars map[string]string, o *fakegraph.Options)

func withSetting(k, v string) envOption {
	return func(vars map[string]string, _ *fakegraph.Options) { vars[k] = v }
}

func withPageSize(n int) envOption {
	return func(_ map[string]string, o *fakegraph.Options) { o.UserPageSize = n }
}

// newEnv starts a double with users u01…u<users> and a Runner on fresh queues and a fresh container.
func newEnv(t *testing.T, users int, opts ...envOption) *env {
	t.Helper()
	az := azuritetest.Shared(t)
	clk := &clock{t: testclock.Date(2026, 3, 1, 12, 0, 0)}
	o := fakegraph.NewOptions("", "", fgSecret)
	o.Clock = clk.now // one clock for the runner, the Graph client and Graph's double
	o.UserPageSize = 2
	vars := map[string]string{config.ResyncContainer: unique("cp")}
	for _, f := range opts {
		f(vars, &o)
	}
	fg := fakegraph.New(o)
	t.Cleanup(fg.Close)
	fg.DropNotifications(true) // no subscription exists; and resync is what must catch up
	vars[config.Storage] = az.ConnectionString()
	vars[config.TenantID] = fg.TenantID()
	vars[config.ClientID] = fg.ClientID()
	vars[config.GraphBaseURL] = fg.GraphBaseURL()

	cred, err := identity.NewGraphCredential(identity.Settings{TenantID: fg.TenantID(), ClientID: fg.ClientID(),
		ClientSecret: fgSecret, AuthorityHost: fg.AuthorityHost()}, identity.Options{Transport: fg.Client(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	gc, err := graph.NewClient(cred, graph.ClientOptions{BaseURL: fg.GraphBaseURL(), Transport: fg.Client(), Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, fg: fg, gc: gc, graph: gc, clock: clk,
		work: unique("work"), changes: unique("changes"), vars: vars}
	e.cfg = config.Load(func(k string) string { return vars[k] })
	if ps := e.cfg.Problems(); len(ps) > 0 {
		t.Fatalf("config: %v", ps)
	}
	if e.sq, err = storagequeue.New(e.cfg.Storage, storagequeue.Options{}); err != nil {
		t.Fatal(err)
	}
	e.rq = &recQueue{q: e.sq, rename: map[string]string{message.WorkQueue: e.work, message.ChangesQueue: e.changes}}
	if e.store, err = checkpoint.New(e.cfg.Storage, e.cfg.ResyncContainer, checkpoint.Options{}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= users; i++ {
		fg.AddUser(fakegraph.User{ID: uid(i), Props: map[string]any{
			"displayName": fmt.Sprintf("User %d", i), "userPrincipalName": fmt.Sprintf("user%d@contoso.test", i),
			"mail": fmt.Sprintf("user%d@contoso.test", i), "accountEnabled": true, "jobTitle": "Engineer", "department": "R&D",
		}})
	}
	e.r = e.runner(e.cfg)
	return e
}

// runner builds a Runner for cfg on the env's queues, store, clock and Graph.
func (e *env) runner(cfg *config.Config) *resync.Runner {
	r := resync.New(resync.Deps{
		Config: cfg,
		Graph:  func() (resync.Graph, error) { return e.graph, nil },
		Store:  func() (resync.Store, error) { return e.store, nil },
		Queue:  func() (resync.Queue, error) { return e.rq, nil },
		Events: events.NewWriter(func() (events.Queue, error) { return e.rq, nil }, nil),
		Now:    e.clock.now,
	})
	r.StepBudget = 0 // one page per invocation: these tests drive and count the steps
	return r
}

// withConfig returns a Runner whose settings differ from the env's by the given ones.
func (e *env) withConfig(kv ...string) *resync.Runner {
	vars := map[string]string{}
	for k, v := range e.vars {
		vars[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		vars[kv[i]] = kv[i+1]
	}
	return e.runner(config.Load(func(k string) string { return vars[k] }))
}

func uid(i int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", i) }

type tlog struct{ t *testing.T }

func (w tlog) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// ctx bounds every call of a test and carries a logger writing to the test log.
func (e *env) ctx() context.Context {
	c, cancel := context.WithTimeout(e.t.Context(), 30*time.Second)
	e.t.Cleanup(cancel)
	return logctx.With(c, slog.New(slog.NewTextHandler(tlog{e.t}, &slog.HandlerOptions{Level: slog.LevelDebug})))
}

func (e *env) request(reason string) resync.Requested {
	e.t.Helper()
	out, err := e.r.Request(e.ctx(), "users", reason)
	if err != nil {
		e.t.Fatalf("Request: %v", err)
	}
	return out
}

// receive takes the next visible message of the work queue, or returns false when there is none.
func (e *env) receive() (storagequeue.Message, *message.Message, bool) {
	e.t.Helper()
	ms, err := e.sq.Receive(e.ctx(), e.work, 1, time.Minute)
	if err != nil {
		e.t.Fatal(err)
	}
	if len(ms) == 0 {
		return storagequeue.Message{}, nil, false
	}
	m, err := message.Decode(ms[0].Text)
	if err != nil {
		e.t.Fatalf("work queue holds an unreadable message %q: %v", ms[0].Text, err)
	}
	return ms[0], m, true
}

func (e *env) step(r *resync.Runner, m *message.Message) resync.StepResult {
	e.t.Helper()
	res, err := r.Step(e.ctx(), m)
	if err != nil {
		e.t.Fatalf("Step: %v", err)
	}
	return res
}

// drive plays the queue worker: it takes resync messages from the work queue and steps them, at most max,
// until the queue is empty.
func (e *env) drive(max int) []resync.StepResult {
	e.t.Helper()
	var out []resync.StepResult
	for len(out) < max {
		raw, m, ok := e.receive()
		if !ok {
			return out
		}
		out = append(out, e.step(e.r, m))
		if err := e.sq.Delete(e.ctx(), e.work, raw); err != nil {
			e.t.Fatal(err)
		}
	}
	return out
}

// driveToEnd drives until the queue is empty and checks that the pass completed.
func (e *env) driveToEnd() []resync.StepResult {
	e.t.Helper()
	rs := e.drive(100)
	if len(rs) == 0 || !rs[len(rs)-1].Done {
		e.t.Fatalf("the pass did not complete: %+v", rs)
	}
	return rs
}

// drain deletes every visible message of the work queue and returns how many there were.
func (e *env) drain() []*message.Message {
	e.t.Helper()
	var out []*message.Message
	for {
		raw, m, ok := e.receive()
		if !ok {
			return out
		}
		out = append(out, m)
		if err := e.sq.Delete(e.ctx(), e.work, raw); err != nil {
			e.t.Fatal(err)
		}
	}
}

// events reads (and removes) every event written so far.
func (e *env) events() []message.Event {
	e.t.Helper()
	var out []message.Event
	for {
		ms, err := e.sq.Receive(e.ctx(), e.changes, 32, time.Minute)
		if err != nil {
			e.t.Fatal(err)
		}
		if len(ms) == 0 {
			return out
		}
		for _, m := range ms {
			var ev message.Event
			if err := jsonUnmarshal(m.Text, &ev); err != nil {
				e.t.Fatalf("event %q: %v", m.Text, err)
			}
			out = append(out, ev)
			if err := e.sq.Delete(e.ctx(), e.changes, m); err != nil {
				e.t.Fatal(err)
			}
		}
	}
}

func (e *env) checkpoint() checkpoint.Checkpoint {
	e.t.Helper()
	cp, _, err := e.store.Load(e.ctx(), "users")
	if err != nil {
		e.t.Fatal(err)
	}
	return cp
}

// baseline runs the first pass (from now), which Request completes by itself: nothing is queued, nothing is
// emitted, and the checkpoint holds a starting point.
func (e *env) baseline() checkpoint.Checkpoint {
	e.t.Helper()
	if got := e.request("test baseline"); got.Action != resync.Started || !got.Latest {
		e.t.Fatalf("first request: %+v", got)
	}
	if rs := e.drive(10); len(rs) != 0 {
		e.t.Fatalf("a pass from now needs no queued step, got %+v", rs)
	}
	if evs := e.events(); len(evs) != 0 {
		e.t.Fatalf("a pass from now must emit nothing, got %d events", len(evs))
	}
	cp := e.checkpoint()
	if cp.Pass != nil || cp.DeltaLink == "" || cp.LastCompleted.IsZero() {
		e.t.Fatalf("after the pass from now: %+v", cp)
	}
	return cp
}

// deltaRequests returns the wire GETs of /users/delta since the last ResetRequests.
func (e *env) deltaRequests() []fakegraph.Request {
	var out []fakegraph.Request
	for _, q := range e.fg.Requests() {
		if !q.InBatch && q.Method == "GET" && q.Path == "/v1.0/users/delta" {
			out = append(out, q)
		}
	}
	return out
}

// latestByUser indexes events by user id; the last one written wins.
func latestByUser(evs []message.Event) map[string]message.Event {
	m := map[string]message.Event{}
	for _, e := range evs {
		m[e.ResourceID] = e
	}
	return m
}

var _ io.Writer = tlog{}

// due reports whether a users pass is due.
func due(r *resync.Runner, ctx context.Context) (bool, error) {
	why, err := r.DueReason(ctx, "users")
	return why != "", err
}
