// Package pipekit is the shared harness of cmd/benchpipeline (Graph economy and end-to-end latency) and
// cmd/reliability (fault scenarios and fuzzing): it builds the handler, starts devstack stacks, reads
// graphchanges with a timestamp per event, counts what the webhook queued, and writes one sub-section of the
// pipeline block of docs/benchmarks.md (the block cmd/bench preserves between its bench-pipeline markers).
//
// Every wait here takes a context; callers give each one a deadline, so a run that does not converge ends
// and says so instead of hanging.
package pipekit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue/v2"

	"github.com/graphwebhooks/graph-webhooks-go/internal/azuritetest"
	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/devstack"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakehost"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
	"github.com/graphwebhooks/graph-webhooks-go/internal/storagequeue"
)

// Env is what every run needs: the module root (host.json, function.json files, node_modules with Azurite)
// and a freshly built handler binary.
type Env struct {
	Root    string
	Handler string
	Log     io.Writer // handler and host log lines of every stack (a file), never the terminal
	tmp     string
}

// Setup finds the module root, checks Azurite is installed, and builds the handler from the current tree
// (as `make build` does) into a temporary directory.
func Setup(ctx context.Context, logPath string) (*Env, error) {
	root, err := azuritetest.ModuleRoot(".")
	if err != nil {
		return nil, err
	}
	if _, err := azuritetest.Binary(root); err != nil {
		return nil, fmt.Errorf("%w (run `make deps`)", err)
	}
	tmp, err := os.MkdirTemp("", "pipekit-")
	if err != nil {
		return nil, err
	}
	e := &Env{Root: root, tmp: tmp, Handler: filepath.Join(tmp, "handler"), Log: io.Discard}
	build := exec.CommandContext(ctx, "go", "build", "-o", e.Handler, ".")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("go build the handler: %v\n%s", err, out)
	}
	if logPath != "" {
		if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err == nil {
			if f, err := os.Create(logPath); err == nil {
				e.Log = &lockedWriter{w: f}
			}
		}
	}
	return e, nil
}

// Close removes the built handler.
func (e *Env) Close() {
	if c, ok := e.Log.(*lockedWriter); ok {
		if f, ok := c.w.(*os.File); ok {
			f.Close()
		}
	}
	os.RemoveAll(e.tmp)
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Stack is a devstack stack with a timestamped reader of graphchanges.
type Stack struct {
	*devstack.Stack
	Reader  *Reader
	Started time.Duration // how long Start took
	Sel     []string      // GRAPH_USER_SELECT in effect
	Handler string        // the handler binary the stack runs
	// Table counts the handler's requests to Table storage (the object state): the stack's
	// AzureWebJobsStorage names this proxy as its TableEndpoint.
	Table *TableCounter
	stop  context.CancelFunc
	done  chan struct{}
}

// Start brings a stack up (within 90 s) and starts reading graphchanges every poll. The stack runs
// o.Handler and o.Root when set (a Build from BuildAt), else the Env's.
func (e *Env) Start(ctx context.Context, o devstack.Options, poll time.Duration) (*Stack, error) {
	if o.Root == "" {
		o.Root = e.Root
	}
	if o.Handler == "" {
		o.Handler = e.Handler
	}
	if o.HandlerOut == nil {
		o.HandlerOut = e.Log
	}
	tc, err := newTableCounter()
	if err != nil {
		return nil, err
	}
	// devstack builds AzureWebJobsStorage from the Azurite it starts, then hands the settings map to the
	// host double's options: route its TableEndpoint through the proxy there, before the handler starts.
	// The map is the stack's Settings too, so EnvList (for `handler resync`) goes through the proxy as well.
	// The caller's hook runs after, so it sees the settings as they are and may route them further (the
	// reliability tool's fault proxies stand in front of this one).
	var routeErr error
	host := o.Host
	o.Host = func(h *fakehost.Options) {
		conn, err := tc.route(h.Settings[config.Storage])
		if err != nil {
			routeErr = err
			return
		}
		h.Settings[config.Storage] = conn
		if host != nil {
			host(h)
		}
	}
	sctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	t0 := time.Now()
	ds, err := devstack.Start(sctx, o)
	if err == nil && routeErr != nil {
		ds.Close()
		err = routeErr
	}
	if err != nil {
		tc.Close()
		return nil, err
	}
	s := &Stack{Stack: ds, Started: time.Since(t0), Handler: o.Handler, Table: tc, done: make(chan struct{})}
	s.Sel = config.Load(func(k string) string { return ds.Settings[k] }).UserSelect
	s.Reader = &Reader{q: ds.Queue, poll: poll}
	rctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	go func() { defer close(s.done); s.Reader.run(rctx) }()
	return s, nil
}

// Close stops the reader and the stack.
func (s *Stack) Close() error {
	s.stop()
	<-s.done
	err := s.Stack.Close()
	s.Table.Close()
	return err
}

// Env returns the stack's settings as KEY=VALUE lines, for running the handler binary by hand.
func (s *Stack) EnvList() []string {
	var out []string
	for k, v := range s.Settings {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// QueueCount is the approximate number of messages in a queue of the stack's storage, invisible (delayed,
// leased) ones included; 0 when the queue does not exist.
func (s *Stack) QueueCount(ctx context.Context, queue string) (int, error) {
	svc, err := azqueue.NewServiceClientFromConnectionString(s.Settings[config.Storage], nil)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	p, err := svc.NewQueueClient(queue).GetProperties(ctx, nil)
	if err != nil {
		if strings.Contains(err.Error(), "QueueNotFound") {
			return 0, nil
		}
		return 0, err
	}
	if p.ApproximateMessagesCount == nil {
		return 0, nil
	}
	return int(*p.ApproximateMessagesCount), nil
}

// PoisonCount counts the messages in the notification queue's poison queue.
func (s *Stack) PoisonCount(ctx context.Context) int {
	n, _ := s.QueueCount(ctx, storagequeue.PoisonQueue(devstack.NotificationQueue))
	return n
}

// Matches reports whether e carries user id's current state in the Graph double.
func (s *Stack) Matches(id string, e message.Event) bool {
	return devstack.Matches(s.Graph, s.Sel, id, e)
}

// AwaitState waits until each user in ids has a latest event carrying its current state, and returns when
// the last of them became readable (the ReadAt of the event that completed the condition).
func (s *Stack) AwaitState(ctx context.Context, ids []string) (time.Time, error) {
	var at time.Time
	err := s.Reader.WaitFor(ctx, func(evs []Read) bool {
		latest := map[string]Read{}
		for _, r := range evs {
			latest[r.Event.ResourceID] = r
		}
		last := time.Time{}
		for _, id := range ids {
			r, ok := latest[id]
			if !ok || !s.Matches(id, r.Event) {
				return false
			}
			if r.ReadAt.After(last) {
				last = r.ReadAt
			}
		}
		at = last
		return true
	})
	return at, err
}

// Missing lists the ids whose latest event does not (yet) carry the current state.
func (s *Stack) Missing(ids []string) []string {
	latest := map[string]message.Event{}
	for _, r := range s.Reader.Events() {
		latest[r.Event.ResourceID] = r.Event
	}
	var out []string
	for _, id := range ids {
		if e, ok := latest[id]; !ok || !s.Matches(id, e) {
			out = append(out, id)
		}
	}
	return out
}

// Settle waits until nothing more can arrive: the Graph double has nothing queued or in delivery, the
// notification queue is empty (re-enqueued work included), and no event was read for quiet. It reports
// whether that state was reached before ctx ended.
func (s *Stack) Settle(ctx context.Context, quiet time.Duration) bool {
	for ctx.Err() == nil {
		n, err := s.QueueCount(ctx, devstack.NotificationQueue)
		if err == nil && n == 0 && s.Graph.Pending() == 0 && time.Since(s.Reader.LastRead()) >= quiet {
			return true
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	return false
}

// ---- reading graphchanges ----

// Read is one event read from graphchanges, with the time the read that returned it completed.
type Read struct {
	Event  message.Event
	ReadAt time.Time
}

// Reader takes every event out of graphchanges, polling every poll when the queue is empty (and at once
// again while it is not). A poll is one Receive of up to 32 messages; deletes run in the background so they
// do not delay the next poll.
type Reader struct {
	q    *storagequeue.Client
	poll time.Duration

	mu       sync.Mutex
	reads    []Read
	last     time.Time
	errs     []string
	badJSON  int
	deleteWG sync.WaitGroup
}

func (r *Reader) run(ctx context.Context) {
	del := make(chan storagequeue.Message, 1024)
	for range 4 {
		r.deleteWG.Add(1)
		go func() {
			defer r.deleteWG.Done()
			for m := range del {
				dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				if err := r.q.Delete(dctx, devstack.ChangesQueue, m); err != nil {
					r.noteErr(err)
				}
				cancel()
			}
		}()
	}
	defer func() { close(del); r.deleteWG.Wait() }()
	for ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		msgs, err := r.q.Receive(rctx, devstack.ChangesQueue, 32, 5*time.Minute)
		cancel()
		at := time.Now()
		if err != nil {
			if ctx.Err() == nil {
				r.noteErr(err)
			}
		}
		if len(msgs) > 0 {
			r.mu.Lock()
			for _, m := range msgs {
				var e message.Event
				if err := json.Unmarshal(m.Text, &e); err != nil {
					r.badJSON++
				} else {
					r.reads = append(r.reads, Read{Event: e, ReadAt: at})
				}
			}
			r.last = at
			r.mu.Unlock()
			for _, m := range msgs {
				select {
				case del <- m:
				case <-ctx.Done():
					return
				}
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(r.poll):
		}
	}
}

func (r *Reader) noteErr(err error) {
	r.mu.Lock()
	if len(r.errs) < 20 {
		r.errs = append(r.errs, err.Error())
	}
	r.mu.Unlock()
}

// Events returns every event read so far, in read order.
func (r *Reader) Events() []Read {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Read(nil), r.reads...)
}

// LastRead is when the last event was read (zero before the first).
func (r *Reader) LastRead() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// Problems reports read errors and events that were not JSON.
func (r *Reader) Problems() (errs []string, badJSON int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errs...), r.badJSON
}

// WaitFor polls cond over the events read so far every 10 ms until it holds or ctx ends.
func (r *Reader) WaitFor(ctx context.Context, cond func([]Read) bool) error {
	for {
		if cond(r.Events()) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for events: %w", context.Cause(ctx))
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// ---- what the webhook did ----

var queuedRE = regexp.MustCompile(`queued (\d+) change and (\d+) lifecycle notifications in (\d+) messages; dropped (\d+)`)

// WebhookTally sums the webhook's invocation Logs lines.
type WebhookTally struct {
	Invocations, Failed   int
	Queued, Messages      int // notifications queued (change + lifecycle), queue messages written
	Dropped, NotAccepting int // dropped after verification; invocations that queued nothing without a tally line
}

// Webhook tallies the webhook invocations that started at or after since.
func (s *Stack) Webhook(since time.Time) WebhookTally {
	var t WebhookTally
	for _, inv := range s.Host.Invocations() {
		if inv.Function != "webhook" || inv.Start.Before(since) {
			continue
		}
		t.Invocations++
		if inv.Status != "" && string(inv.Status) != "Succeeded" {
			t.Failed++
		}
		found := false
		for _, l := range inv.Logs {
			if m := queuedRE.FindStringSubmatch(l); m != nil {
				a, _ := strconv.Atoi(m[1])
				b, _ := strconv.Atoi(m[2])
				c, _ := strconv.Atoi(m[3])
				d, _ := strconv.Atoi(m[4])
				t.Queued += a + b
				t.Messages += c
				t.Dropped += d
				found = true
			}
		}
		if !found {
			t.NotAccepting++
		}
	}
	return t
}

// ---- per-change accounting (reliability) ----

// Outcome counts what became of a set of changes, one change per user id.
type Outcome struct {
	Changes    int
	Got        int // the user's latest event carries the state the change produced (or a later one)
	Lost       int
	Duplicated int // changes with more than one event
	SameID     int // … of which every extra event repeats an id already seen (a consumer's de-dup removes them)
	Events     int // events for these users
	LostIDs    []string
	DupDetail  []string
}

// Account counts, for each user in ids (changed once in the scenario), the events read for it since since.
func (s *Stack) Account(ids []string, since time.Time) Outcome {
	o := Outcome{Changes: len(ids)}
	per := map[string][]message.Event{}
	for _, r := range s.Reader.Events() {
		if r.ReadAt.Before(since) {
			continue
		}
		per[r.Event.ResourceID] = append(per[r.Event.ResourceID], r.Event)
	}
	for _, id := range ids {
		evs := per[id]
		o.Events += len(evs)
		if len(evs) == 0 || !s.Matches(id, evs[len(evs)-1]) {
			o.Lost++
			o.LostIDs = append(o.LostIDs, id)
		} else {
			o.Got++
		}
		if len(evs) > 1 {
			o.Duplicated++
			seen := map[string]bool{}
			distinct := 0
			var srcs []string
			for _, e := range evs {
				if !seen[e.ID] {
					distinct++
					seen[e.ID] = true
				}
				srcs = append(srcs, string(e.Source))
			}
			if distinct == 1 {
				o.SameID++
			}
			if len(o.DupDetail) < 5 {
				o.DupDetail = append(o.DupDetail, fmt.Sprintf("%s: %d events, %d distinct ids, sources %s", id, len(evs), distinct, strings.Join(srcs, "+")))
			}
		}
	}
	return o
}

// ---- the report block ----

// The block cmd/bench preserves, and this package's sub-sections inside it.
const (
	outerBegin  = "<!-- bench-pipeline:begin"
	outerEnd    = "<!-- bench-pipeline:end -->"
	placeholder = "_Not measured yet._"
	heading     = "## Graph economy, end-to-end latency and reliability"
	outerMarker = "<!-- bench-pipeline:begin (written by make bench-pipeline / make reliability; make bench keeps it) -->"
)

// Section names, in the order they appear in the block. The optional ones (cmd/benchscale's) follow, and get
// no placeholder while they have not been written.
var (
	sectionOrder     = []string{"economy", "detection", "drives", "reliability", "storage"}
	optionalSections = []string{"scale"}
	// sectionTarget is the make target that writes each section.
	sectionTarget = map[string]string{"economy": "bench-pipeline", "detection": "bench-pipeline", "drives": "bench-pipeline",
		"reliability": "reliability", "storage": "reliability", "scale": "bench-scale"}
)

// foreignBlockRE finds the begin marker of a block in the pipeline block that another tool writes.
var foreignBlockRE = regexp.MustCompile(`<!-- ([a-z][a-z0-9-]*):begin -->`)

func subBegin(name string) string { return "<!-- pipeline-" + name + ":begin -->" }
func subEnd(name string) string   { return "<!-- pipeline-" + name + ":end -->" }

// WriteSection replaces the sub-section name inside the preserved block of the report at path with body,
// keeping the other sub-section as it is. A report without the block gets it appended, under the heading
// cmd/bench uses; a missing report is created with the block alone.
func WriteSection(path, name, body string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	doc := string(old)
	i := strings.Index(doc, outerBegin)
	var before, inner, after string
	if i < 0 {
		before = strings.TrimRight(doc, "\n")
		if before != "" {
			before += "\n\n"
		}
		before += heading + "\n\n" + outerMarker + "\n"
		after = outerEnd + "\n"
	} else {
		nl := strings.Index(doc[i:], "\n")
		if nl < 0 {
			return fmt.Errorf("%s: the pipeline begin marker is not followed by a newline", path)
		}
		start := i + nl + 1
		j := strings.Index(doc[start:], outerEnd)
		if j < 0 {
			return fmt.Errorf("%s: %q without %q", path, outerBegin, outerEnd)
		}
		before, inner, after = doc[:start], doc[start:start+j], doc[start+j:]
	}
	sections := map[string]string{}
	all := append(slices.Clone(sectionOrder), optionalSections...)
	for _, n := range all {
		b, e := subBegin(n), subEnd(n)
		if x := strings.Index(inner, b); x >= 0 {
			if y := strings.Index(inner[x:], e); y >= 0 {
				sections[n] = inner[x : x+y+len(e)]
			}
		}
	}
	sections[name] = subBegin(name) + "\n" + strings.Trim(body, "\n") + "\n" + subEnd(name)
	var parts []string
	for _, n := range sectionOrder {
		if s, ok := sections[n]; ok {
			parts = append(parts, s)
		}
	}
	for _, n := range sectionOrder {
		if _, ok := sections[n]; !ok {
			parts = append(parts, fmt.Sprintf("_%s: not measured yet (`make %s`)._", n, sectionTarget[n]))
		}
	}
	for _, n := range optionalSections {
		if s, ok := sections[n]; ok {
			parts = append(parts, s)
		}
	}
	// Blocks other tools keep inside this one (<!-- name:begin --> … <!-- name:end -->) stay, after ours.
	for _, m := range foreignBlockRE.FindAllStringSubmatchIndex(inner, -1) {
		name := inner[m[2]:m[3]]
		if strings.HasPrefix(name, "pipeline-") {
			continue
		}
		if e := strings.Index(inner[m[1]:], "<!-- "+name+":end -->"); e >= 0 {
			parts = append(parts, inner[m[0]:m[1]+e+len("<!-- "+name+":end -->")])
		}
	}
	out := before + strings.Join(parts, "\n\n") + "\n" + after
	return os.WriteFile(path, []byte(out), 0o644)
}

// ---- small helpers ----

// Machine describes the machine in one line.
func Machine() string {
	cpu := runtime.GOARCH
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				if _, v, ok := strings.Cut(l, ":"); ok {
					cpu = strings.TrimSpace(v)
				}
				break
			}
		}
	}
	return fmt.Sprintf("%s, %d cores, %s %s/%s, %s", cpu, runtime.NumCPU(), runtime.Version(), runtime.GOOS, runtime.GOARCH, time.Now().UTC().Format("2006-01-02 15:04 UTC"))
}

// LoadAvg is the 1-minute load average ("" where unknown).
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// Pct returns the p-th percentile (0–100, nearest rank) of sorted ds.
func Pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	k := int(float64(len(ds))*p/100+0.999999) - 1
	k = max(0, min(k, len(ds)-1))
	return ds[k]
}

// Sorted returns a sorted copy.
func Sorted(ds []time.Duration) []time.Duration {
	out := append([]time.Duration(nil), ds...)
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Ms formats a duration in milliseconds (or seconds above 10 s).
func Ms(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= 100*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
}

// Secs formats a duration in seconds.
func Secs(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

// GraphCalls classifies the Graph double's wire requests (not inner $batch items) made at or after since.
type GraphCalls struct {
	Batch, UserGet, UserList, Delta, Deleted, Subscriptions, Token, Other int
	GroupGet, GroupDelta                                                  int // GET /groups…; of Delta, the groups delta pages
	BatchItems                                                            int // inner $batch requests
	Throttled, Failed                                                     int // wire answers 429 / 5xx
}

// Worker is what the queue worker spends reading objects: $batch, users, groups and deletedItems (not
// delta, subscriptions, tokens).
func (g GraphCalls) Worker() int { return g.Batch + g.UserGet + g.UserList + g.GroupGet + g.Deleted }

// Calls classifies the request log.
func Calls(reqs []fakegraph.Request, since time.Time) GraphCalls {
	var g GraphCalls
	for _, r := range reqs {
		if r.Time.Before(since) {
			continue
		}
		if r.InBatch {
			g.BatchItems++
			continue
		}
		switch {
		case r.Status == 429:
			g.Throttled++
		case r.Status >= 500:
			g.Failed++
		}
		p := r.Path
		switch {
		case p == "/v1.0/$batch":
			g.Batch++
		case strings.HasPrefix(p, "/v1.0/users/delta"):
			g.Delta++
		case strings.HasPrefix(p, "/v1.0/groups/delta"):
			g.Delta++
			g.GroupDelta++
		case p == "/v1.0/groups" || strings.HasPrefix(p, "/v1.0/groups/"):
			g.GroupGet++
		case p == "/v1.0/users":
			g.UserList++
		case strings.HasPrefix(p, "/v1.0/users/"):
			g.UserGet++
		case strings.HasPrefix(p, "/v1.0/directory/"):
			g.Deleted++
		case strings.HasPrefix(p, "/v1.0/subscriptions"):
			g.Subscriptions++
		case strings.Contains(p, "/oauth2/") || strings.Contains(p, "/discovery/") || strings.Contains(p, "openid-configuration"):
			g.Token++
		default:
			g.Other++
		}
	}
	return g
}
