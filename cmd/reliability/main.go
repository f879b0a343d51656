// Command reliability runs genuine changes through the whole pipeline — the real handler under the Functions
// host double, Azurite, the Graph double — under injected faults, counts for every change whether an event
// carrying its state arrived, was lost or was duplicated, then fuzzes every decoder of the repository for a
// fixed time. It writes its sub-section of the pipeline block of docs/benchmarks.md (`make bench-pipeline`
// writes the other; `make bench` keeps both).
//
//	go run ./cmd/reliability -out docs/benchmarks.md     (make reliability: about 7 minutes, plus the storage
//	                                                     group's six stretches of -storage-stretch and their recovery)
//
// Scenarios (each on a stack of its own, every group but the hostile-input one concurrently; every wait has a deadline, and a
// scenario that does not converge is reported as such):
//   - 429 storm: POST /$batch answers 429 with Retry-After 15 s (longer than the Graph client's 10 s cap, so the
//     worker re-enqueues instead of waiting), then inner $batch items answer 429 with Retry-After 12 s.
//   - 503 burst: POST /$batch answers 503 more times than the Graph client retries.
//   - SIGKILL: the handler is killed twice per host lifetime (the real host stops after the third crash in
//     30 minutes), once right after a burst reaches the webhook and once while the worker is busy; then a
//     fresh stack, as the platform would start a new host, and the same again.
//   - forged flood: 500 forged POSTs (wrong, missing or foreign-tenant clientState, foreign tenants, forged
//     lifecycle events) while genuine changes flow.
//   - malformed and oversized bodies POSTed to the webhook front: expect 400 / 413 and nothing queued.
//   - dropped notifications (Graph's drop state), recovered by `handler resync`.
//   - Event Hubs (group eventhubs, eventhubs.go): on a stack subscribed through the hub, forged events sent
//     into it, malformed events in the same batches as Graph's, and a SIGKILL while the eventhub function
//     holds a batch.
//   - storage faults (group storage, storage.go): queue, table and blob storage each answering 503
//     ServerBusy, then refusing connections, for -storage-stretch (3 minutes) while changes arrive, for the
//     handler and the host double alike; `handler status -json` must name the failing service meanwhile.
//   - hostile input (group memory, run alone after the others): 4 MiB bodies of 1.4 million empty or forged
//     notifications, one and three at once, bodies with two views (duplicate members), ids that are not
//     GUIDs, a 1 MiB string sequenceNumber, and a genuine 4 MiB POST; the handler's peak RSS, CPU time and
//     what reached the queue (read back: no clientState) for each.
//
// Counting: each change touches a different user (one change per user per scenario), so every event read
// for that user after the scenario started belongs to that change. A change *got an event* when the user's
// last event carries its state (Graph double's current state, devstack.Matches); *lost* otherwise, after the
// scenario's deadline; *duplicated* when more than one event was read for it (same id: a redelivery a
// consumer de-duplicates by id; different ids: distinct outcomes, e.g. a notification and a resync).
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/cmd/benchpipeline/pipekit"
	"github.com/graphwebhooks/graph-webhooks-go/internal/devstack"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code, err := run(ctx, os.Args[1:], os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reliability:", err)
		os.Exit(2)
	}
	os.Exit(code)
}

type options struct {
	out      string
	fuzztime time.Duration
	noFuzz   bool
	only     string
	timeout  time.Duration
	logPath  string
	handler  string
	poll     time.Duration
	settle   time.Duration
	// storageStretch is how long each storage fault lasts (group storage).
	storageStretch time.Duration
	args           []string
}

// row is one scenario's line in the report.
type row struct {
	group, name, fault, command string
	o                           pipekit.Outcome
	converged                   bool
	took                        time.Duration
	extra                       []string // facts, shown under the table
	problems                    []string // anything that is a regression or an unexpected behaviour
	restarts, poison            int
	notes                       string
	unsettled                   bool
	pending                     string // work still under way at the deadline, by design (not lost)
}

type report struct {
	mu     sync.Mutex
	rows   []*row
	memory *memReport // the hostile-input group's table, when it ran
}

func (r *report) add(x *row) {
	r.mu.Lock()
	r.rows = append(r.rows, x)
	r.mu.Unlock()
}

func run(ctx context.Context, args []string, out io.Writer) (int, error) {
	fset := flag.NewFlagSet("reliability", flag.ContinueOnError)
	var o options
	fset.StringVar(&o.out, "out", "docs/benchmarks.md", "report to update (its pipeline block only), relative to the module root; empty: print only")
	fset.DurationVar(&o.fuzztime, "fuzztime", 8*time.Second, "fuzzing time per Fuzz target")
	fset.BoolVar(&o.noFuzz, "no-fuzz", false, "skip fuzzing")
	fset.StringVar(&o.only, "only", "", "comma-separated groups to run: throttle,unavailable,kill,hostile,lag,eventhubs,storage,memory (default all)")
	fset.DurationVar(&o.timeout, "timeout", 75*time.Minute, "the whole run's deadline")
	fset.DurationVar(&o.storageStretch, "storage-stretch", 3*time.Minute, "how long each storage fault of group storage lasts (six of them, one after the other)")
	fset.StringVar(&o.logPath, "log", filepath.Join(os.TempDir(), "reliability-handler.log"), "handler and host log lines")
	fset.DurationVar(&o.poll, "poll", 50*time.Millisecond, "how often graphchanges is read when empty")
	fset.StringVar(&o.handler, "handler", "", "a handler binary to drive instead of building one from this tree (to measure another version)")
	fset.DurationVar(&o.settle, "settle", 20*time.Second, "how long a scenario may take to settle after converging before its events are counted")
	if err := fset.Parse(args); err != nil {
		return 2, err
	}
	o.args = args
	settleLimit = o.settle
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	t0 := time.Now()
	load0 := pipekit.LoadAvg()
	say := func(format string, a ...any) { fmt.Fprintf(out, format+"\n", a...) }

	say("reliability: building the handler …")
	env, err := pipekit.Setup(ctx, o.logPath)
	if err != nil {
		return 2, err
	}
	defer env.Close()
	if o.handler != "" {
		env.Handler = o.handler
	}

	rep := &report{}
	groups := map[string]func(context.Context, *pipekit.Env, options, *report, func(string, ...any)){
		"throttle":    throttleStorm,
		"unavailable": unavailableBurst,
		"kill":        killHandler,
		"hostile":     hostile,
		"lag":         newUserDuringStorm,
		"eventhubs":   eventHubs,
		"storage":     storageFaults,
	}
	names := []string{"throttle", "unavailable", "kill", "hostile", "lag", "eventhubs", "storage", "memory"}
	if o.only != "" {
		names = strings.Split(o.only, ",")
	}
	var wg sync.WaitGroup
	alone := false
	for _, n := range names {
		if n == "memory" {
			alone = true // timed and measured after the others, so they do not share its CPU
			continue
		}
		g, ok := groups[n]
		if !ok {
			return 2, fmt.Errorf("unknown group %q", n)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			g(ctx, env, o, rep, say)
		}()
	}
	wg.Wait()
	if alone {
		memoryHostile(ctx, env, o, rep, say)
	}
	scenTime := time.Since(t0)
	say("reliability: scenarios done in %s", pipekit.Secs(scenTime))

	panics := countPanics(o.logPath)

	var fuzz []fuzzResult
	var fuzzTime time.Duration
	if !o.noFuzz {
		f0 := time.Now()
		targets, err := findFuzzTargets(env.Root)
		if err != nil {
			return 2, err
		}
		for _, t := range targets {
			say("reliability: fuzzing %s (%s) for %s …", t.name, t.pkg, o.fuzztime)
			r := runFuzz(ctx, env.Root, t, o.fuzztime)
			say("  %s: %d execs, %s", t.name, r.execs, map[bool]string{true: "no crash", false: "FAILED: " + r.failure}[r.ok])
			fuzz = append(fuzz, r)
		}
		fuzzTime = time.Since(f0)
	}
	elapsed := time.Since(t0)

	// The storage group has a sub-section of its own, so that either part can be measured again alone
	// (the storage group alone takes as long as the others together).
	var storageRows, otherRows []*row
	for _, r := range rep.rows {
		if r.group == "storage" {
			storageRows = append(storageRows, r)
		} else {
			otherRows = append(otherRows, r)
		}
	}
	sections := map[string]string{}
	if slices.ContainsFunc(names, func(n string) bool { return n != "storage" }) {
		sections["reliability"] = render(&report{rows: otherRows, memory: rep.memory}, fuzz, o, elapsed, scenTime, fuzzTime, load0, panics)
	}
	if slices.Contains(names, "storage") {
		sections["storage"] = renderStorage(storageRows, o, scenTime, load0, panics)
	}
	for _, name := range []string{"reliability", "storage"} {
		body, ok := sections[name]
		if !ok {
			continue
		}
		fmt.Fprintln(out)
		fmt.Fprint(out, body)
		if o.out != "" {
			path := o.out
			if !filepath.IsAbs(path) {
				path = filepath.Join(env.Root, path)
			}
			if err := pipekit.WriteSection(path, name, body); err != nil {
				return 2, err
			}
			say("reliability: wrote the %s sub-section of %s (%s)", name, o.out, pipekit.Secs(elapsed))
		}
	}
	failed := panics > 0 || len(memoryProblems(rep.memory)) > 0
	for _, r := range rep.rows {
		failed = failed || len(r.problems) > 0 || !r.converged
	}
	for _, f := range fuzz {
		failed = failed || !f.ok
	}
	if failed {
		say("reliability: PROBLEMS FOUND (see the report)")
		return 1, nil
	}
	return 0, nil
}

// ---- helpers shared by the scenarios ----

func ids(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, devstack.UserID(i))
	}
	return out
}

// settleLimit is -settle.
var settleLimit = 20 * time.Second

// finish waits for the changes' state (within limit), lets the stack settle, and accounts for them.
func finish(ctx context.Context, s *pipekit.Stack, r *row, changed []string, since time.Time, limit time.Duration) {
	settle := settleLimit
	wctx, cancel := context.WithTimeout(ctx, limit)
	last, err := s.AwaitState(wctx, changed)
	cancel()
	r.converged = err == nil
	if r.converged {
		r.took = last.Sub(since)
	} else {
		r.took = time.Since(since)
		r.problems = append(r.problems, fmt.Sprintf("did not converge within %s: %d of %d changes without their state", limit, len(s.Missing(changed)), len(changed)))
	}
	sctx, cancel := context.WithTimeout(ctx, settle)
	if !s.Settle(sctx, 2*time.Second) {
		qn, _ := s.QueueCount(ctx, devstack.NotificationQueue)
		r.extra = append(r.extra, fmt.Sprintf("not settled %s after converging: %d message(s) still in webhooksnotificationqueue, %d notification(s) in Graph's delivery (counted as they stood)", settle, qn, s.Graph.Pending()))
		r.unsettled = true
	}
	cancel()
	r.o = s.Account(changed, since)
	if r.o.Lost > 0 {
		r.problems = append(r.problems, fmt.Sprintf("LOST %d change(s): %s", r.o.Lost, strings.Join(first(r.o.LostIDs, 5), ", ")))
	}
	r.poison = s.PoisonCount(ctx)
	if r.poison > 0 {
		r.problems = append(r.problems, fmt.Sprintf("%d message(s) in the poison queue", r.poison))
	}
	if err := s.Host.StopErr(); err != nil {
		r.problems = append(r.problems, "the host stopped itself: "+err.Error())
	}
	if errs, bad := s.Reader.Problems(); len(errs) > 0 || bad > 0 {
		r.extra = append(r.extra, fmt.Sprintf("reader: %d error(s) %v, %d non-JSON event(s)", len(errs), first(errs, 2), bad))
		if bad > 0 {
			r.problems = append(r.problems, fmt.Sprintf("%d event(s) in graphchanges are not JSON", bad))
		}
	}
}

func first[T any](xs []T, n int) []T {
	if len(xs) > n {
		return xs[:n]
	}
	return xs
}

var reenqRE = regexp.MustCompile(`re-enqueued (\d+) notifications \(([^)]*)\) for attempt (\d+) in (\S+)`)

// workerRequeues sums the worker's re-enqueue lines since t0, by reason.
func workerRequeues(s *pipekit.Stack, t0 time.Time) (string, int) {
	by := map[string]int{}
	total := 0
	for _, inv := range s.Host.Invocations() {
		if inv.Function != "queueworker" || inv.Start.Before(t0) {
			continue
		}
		for _, l := range inv.Logs {
			for _, m := range reenqRE.FindAllStringSubmatch(l, -1) {
				n, _ := strconv.Atoi(m[1])
				by[m[2]] += n
				total++
			}
		}
	}
	var parts []string
	for k, v := range by {
		parts = append(parts, fmt.Sprintf("%d notifications %s", v, k))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", "), total
}

func start(ctx context.Context, env *pipekit.Env, o options, users int, g func(*fakegraph.Options)) (*pipekit.Stack, error) {
	s, err := env.Start(ctx, devstack.Options{Users: users, Graph: g}, o.poll)
	if err != nil {
		return nil, err
	}
	return s, nil // devstack.Start returns once the start-up timer run has finished
}

func failedStart(rep *report, group, name string, err error) {
	rep.add(&row{group: group, name: name, problems: []string{"the stack did not start: " + err.Error()}})
}

// ---- 429 storm ----

func throttleStorm(ctx context.Context, env *pipekit.Env, o options, rep *report, say func(string, ...any)) {
	const n = 40
	r := &row{group: "throttle", name: "Graph 429 storm", fault: "`POST /$batch` → 429, Retry-After 15 s, ×3; then 8 inner `$batch` items → 429, Retry-After 12 s"}
	defer rep.add(r)
	s, err := start(ctx, env, o, n, nil)
	if err != nil {
		r.problems = append(r.problems, err.Error())
		return
	}
	defer s.Close()
	t0 := time.Now()
	s.Graph.Inject("POST /v1.0/$batch", fakegraph.Fault{Status: 429, RetryAfter: 15 * time.Second, Count: 3})
	s.Graph.ThrottleBatchItems(8, 12*time.Second)
	for i := 1; i <= n; i++ {
		s.Graph.UpdateUser(devstack.UserID(i), map[string]any{"mail": fmt.Sprintf("storm%d@contoso.example", i)})
	}
	finish(ctx, s, r, ids(1, n), t0, 100*time.Second)
	calls := pipekit.Calls(s.Graph.Requests(), t0)
	reasons, count := workerRequeues(s, t0)
	r.extra = append(r.extra,
		fmt.Sprintf("Graph answered %d wire 429s; `$batch` requests %d, user reads in them %d; worker re-enqueues: %d (%s)", calls.Throttled, calls.Batch, calls.BatchItems, count, reasons))
	r.restarts = s.Host.Restarts()
	if calls.Throttled < 3 {
		r.problems = append(r.problems, fmt.Sprintf("only %d of the 3 injected 429s were requested: the storm did not happen as planned", calls.Throttled))
	}
	r.notes = "each throttled notification waits out Graph's Retry-After (re-enqueued with that delay + ≤10 % jitter; the process-wide gate holds other messages back meanwhile)"
	say("  throttle: %d/%d got, %d lost, %d duplicated, %s", r.o.Got, r.o.Changes, r.o.Lost, r.o.Duplicated, pipekit.Secs(r.took))
}

// ---- a new user, not yet replicated, during a 429 storm ----

// lagDeadline bounds the wait for the late user's event: three throttled attempts (about 33 s) and then one
// retry step at attempt 3 (240 s) find the user, whose replication lag ended at 50 s.
const lagDeadline = 6 * time.Minute

// newUserDuringStorm: Graph has just created a user (its GET answers 404 for a while: replication lag, which
// the worker waits out for at least 30 + 60 + 120 s after the notification was first seen) while throttling
// the worker with Retry-After 11 s. The right outcome is an `updated` event once the user is readable; a
// `deleted` event for a user that exists is a wrong latest state. Bounded: after lagDeadline, "no event yet"
// with the notification still queued is reported as pending, not as delivered.
func newUserDuringStorm(ctx context.Context, env *pipekit.Env, o options, rep *report, say func(string, ...any)) {
	r := &row{group: "lag", name: "new user, replication lag 50 s, during a 429 storm",
		fault: "`POST /$batch` → 429, Retry-After 11 s, ×3 (three re-enqueues); the new user's GET answers 404 for its first 50 s"}
	defer rep.add(r)
	s, err := start(ctx, env, o, 5, nil)
	if err != nil {
		r.problems = append(r.problems, err.Error())
		return
	}
	defer s.Close()
	t0 := time.Now()
	s.Graph.SetReplicationLag(50 * time.Second)
	s.Graph.Inject("POST /v1.0/$batch", fakegraph.Fault{Status: 429, RetryAfter: 11 * time.Second, Count: 3})
	s.Graph.AddUser(devstack.SeedUser(100))
	id := devstack.UserID(100)
	wctx, cancel := context.WithTimeout(ctx, lagDeadline)
	werr := s.Reader.WaitFor(wctx, func(rs []pipekit.Read) bool {
		for _, x := range rs {
			if x.Event.ResourceID == id {
				return true
			}
		}
		return false
	})
	cancel()
	r.o = s.Account([]string{id}, t0)
	r.took = time.Since(t0)
	r.converged = true
	reasons, count := workerRequeues(s, t0)
	var last string
	for _, x := range s.Reader.Events() {
		if x.Event.ResourceID == id {
			last = fmt.Sprintf("%s (softDeleted %v, user %v) read after %s", x.Event.ChangeType, x.Event.SoftDeleted, x.Event.Object != nil, pipekit.Secs(x.ReadAt.Sub(t0)))
		}
	}
	_, exists := s.Graph.User(id)
	switch {
	case werr != nil:
		qn, _ := s.QueueCount(ctx, devstack.NotificationQueue)
		r.o.Lost = 0
		r.pending = fmt.Sprintf("no event within %s; %d message(s) still queued: the worker is still waiting for the user to replicate", lagDeadline, qn)
		if qn == 0 {
			r.problems = append(r.problems, fmt.Sprintf("no event within %s and nothing queued: the change is LOST", lagDeadline))
		}
	case r.o.Got == 1:
		r.took = time.Since(t0)
	default:
		r.problems = append(r.problems, fmt.Sprintf("WRONG LATEST STATE: the user exists in Graph (%v) but its only event is %s — the throttled attempts used up the replication retries", exists, last))
	}
	r.extra = append(r.extra, fmt.Sprintf("event: %s; worker re-enqueues: %d (%s)", map[bool]string{true: last, false: "none"}[last != ""], count, reasons))
	r.notes = "the worker keeps retrying a user found nowhere for at least 30 + 60 + 120 s after its notification was first seen, however many attempts throttling used; the retry step follows the message's attempt, so after three throttled attempts it is 240 s"
	say("  lag: %d/%d got, %d lost: %s", r.o.Got, r.o.Changes, r.o.Lost, last)
}

// ---- 503 burst ----

func unavailableBurst(ctx context.Context, env *pipekit.Env, o options, rep *report, say func(string, ...any)) {
	const n = 40
	r := &row{group: "unavailable", name: "Graph 503 burst", fault: "`POST /$batch` → 503 ×8 (the Graph client's 3 retries exhausted for both messages); 2 of the users soft-deleted, 1 deleted"}
	defer rep.add(r)
	s, err := start(ctx, env, o, n, nil)
	if err != nil {
		r.problems = append(r.problems, err.Error())
		return
	}
	defer s.Close()
	t0 := time.Now()
	s.Graph.Inject("POST /v1.0/$batch", fakegraph.Fault{Status: 503, Count: 8})
	for i := 1; i <= n-3; i++ {
		s.Graph.UpdateUser(devstack.UserID(i), map[string]any{"department": fmt.Sprintf("burst %d", i)})
	}
	s.Graph.SoftDeleteUser(devstack.UserID(n - 2))
	s.Graph.SoftDeleteUser(devstack.UserID(n - 1))
	s.Graph.PermanentlyDeleteUser(devstack.UserID(n))
	finish(ctx, s, r, ids(1, n), t0, 100*time.Second)
	calls := pipekit.Calls(s.Graph.Requests(), t0)
	reasons, count := workerRequeues(s, t0)
	r.extra = append(r.extra, fmt.Sprintf("Graph answered %d wire 5xx; `$batch` requests %d; deletedItems reads %d; worker re-enqueues: %d (%s)", calls.Failed, calls.Batch, calls.Deleted, count, reasons))
	r.restarts = s.Host.Restarts()
	if calls.Failed < 8 {
		r.problems = append(r.problems, fmt.Sprintf("only %d of the 8 injected 503s were requested", calls.Failed))
	}
	if strings.Contains(reasons, "not found yet") {
		r.extra = append(r.extra, "the notification re-enqueued as \"not found yet\" is the `updated` that precedes user 40's permanent deletion (the double sends"+
			" `updated` then `deleted`, as a user passes through deleted items): the webhook's split put it in another queue message than the"+
			" `deleted`, which produced user 40's `deleted` event at once; /users and deletedItems both answer 404 for it, so the worker treats it as"+
			" possibly not yet replicated and retries it (backoff 30 s, 60 s, 120 s, ReplicationRetries 3) before emitting a second `deleted` event"+
			" with another id — the same final state, later than this count")
	}
	r.notes = "the Graph client retries a 503 three times (0.8 s doubling); after that the worker re-enqueues with its 30 s first backoff step"
	say("  unavailable: %d/%d got, %d lost, %d duplicated, %s", r.o.Got, r.o.Changes, r.o.Lost, r.o.Duplicated, pipekit.Secs(r.took))
}

// ---- SIGKILL ----

func killHandler(ctx context.Context, env *pipekit.Env, o options, rep *report, say func(string, ...any)) {
	for life := 1; life <= 2; life++ {
		r := &row{group: "kill", name: fmt.Sprintf("handler SIGKILL ×2, host lifetime %d", life),
			fault: "SIGKILL as Graph's 15 POSTs of a burst arrive (webhook kept busy by forged POSTs), and again while the worker's `$batch` for a third burst hangs"}
		if life == 2 {
			r.fault = "a fresh stack (as the platform starts a new host after the third crash), then the same"
		}
		func() {
			defer rep.add(r)
			s, err := start(ctx, env, o, 45, func(g *fakegraph.Options) { g.NotificationBatchSize = 1 })
			if err != nil {
				r.problems = append(r.problems, err.Error())
				return
			}
			defer s.Close()
			change := func(from, to int, v string) {
				for i := from; i <= to; i++ {
					s.Graph.UpdateUser(devstack.UserID(i), map[string]any{"jobTitle": v})
				}
			}
			// The handler's part of a webhook invocation takes about a millisecond, so a kill rarely finds one in
			// flight. Keep it busy with forged POSTs (8 at a time), make each change a POST of its own
			// (NotificationBatchSize 1: 15 POSTs together when the coalescing window ends), and kill just then.
			stopLoad := background(s, 8)
			time.Sleep(300 * time.Millisecond)
			t0 := time.Now()
			change(1, 15, "burst 1")
			time.Sleep(fakegraph.DefaultCoalesceWindow + 3*time.Millisecond)
			if err := s.Host.KillHandler(); err != nil {
				r.problems = append(r.problems, "first kill: "+err.Error())
			}
			stopLoad()
			change(16, 30, "burst 2")
			wctx, cancel := context.WithTimeout(ctx, 40*time.Second)
			err = devstack.Eventually(wctx, func() bool { return s.Host.Ready() && s.Host.Restarts() >= 1 })
			cancel()
			if err != nil {
				r.problems = append(r.problems, "the handler did not come back after the first kill within 40 s")
			}
			// The next $batch hangs, so the worker invocation for burst 3 is surely in flight when the kill comes:
			// 3 s after the webhook queued it is longer than the host's longest poll wait (2 s + 20 %).
			s.Graph.Inject("POST /v1.0/$batch", fakegraph.Fault{Hang: 20 * time.Second, Count: 1})
			t3 := time.Now()
			change(31, 45, "burst 3")
			wctx, cancel = context.WithTimeout(ctx, 20*time.Second)
			err = devstack.Eventually(wctx, func() bool { return s.Webhook(t3).Queued >= 15 })
			cancel()
			if err != nil {
				r.problems = append(r.problems, "burst 3 did not reach the queue within 20 s")
			}
			time.Sleep(3 * time.Second)
			if err := s.Host.KillHandler(); err != nil {
				r.problems = append(r.problems, "second kill: "+err.Error())
			}
			finish(ctx, s, r, ids(1, 45), t0, 90*time.Second)
			r.restarts = s.Host.Restarts()
			if r.restarts != 2 {
				r.problems = append(r.problems, fmt.Sprintf("%d restarts, want exactly 2 (one per kill)", r.restarts))
			}
			failedPOSTs, forgedFailed := 0, 0
			for _, d := range s.Graph.Deliveries() {
				if d.Kind == "notification" && d.Outcome == "failed" && !d.Time.Before(t0) {
					failedPOSTs++
				}
				if d.Kind == "forged" && d.Outcome == "failed" {
					forgedFailed++
				}
			}
			failed := map[string]int{}
			for _, inv := range s.Host.Invocations() {
				if !inv.Start.Before(t0) && inv.Status != "Succeeded" {
					failed[inv.Function]++
				}
			}
			r.extra = append(r.extra, fmt.Sprintf("lifetime %d: invocations failed by the kills: %d webhook (%d of them background forgeries), %d queueworker; genuine notification POSTs Graph had to retry: %d",
				life, failed["webhook"], forgedFailed, failed["queueworker"], failedPOSTs))
			if failedPOSTs == 0 {
				r.extra = append(r.extra, fmt.Sprintf("lifetime %d: no genuine POST was in the handler at the first kill (timing), so that kill tested delivery during a restart", life))
			}
			if failed["queueworker"] == 0 {
				r.problems = append(r.problems, "the second kill did not hit a worker invocation: the scenario did not test what it should")
			}
			r.notes = "a kill fails the invocations in flight: Graph retries a failed webhook POST, the host retries a failed queue message (stable event ids)"
			say("  kill (lifetime %d): %d/%d got, %d lost, %d duplicated, %d restarts, %s", life, r.o.Got, r.o.Changes, r.o.Lost, r.o.Duplicated, r.restarts, pipekit.Secs(r.took))
		}()
	}
}

// background POSTs forged notifications (wrong clientState) to the webhook from n workers until stopped.
func background(s *pipekit.Stack, n int) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	body := []byte(fmt.Sprintf(`{"value":[{"subscriptionId":"x","changeType":"updated","clientState":"background-load-0123456789","tenantId":%q,"resource":"Users/%s","resourceData":{"id":%q}}]}`,
		devstack.TenantID, devstack.UserID(999), devstack.UserID(999)))
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				if resp, err := s.Graph.Forge(s.Settings["GRAPH_NOTIFICATION_URL"], body); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}
	return func() { close(done); wg.Wait() }
}

// ---- hostile input and dropped notifications: one stack, in turn ----

func hostile(ctx context.Context, env *pipekit.Env, o options, rep *report, say func(string, ...any)) {
	s, err := start(ctx, env, o, 60, nil)
	if err != nil {
		failedStart(rep, "hostile", "forged flood, malformed bodies, dropped notifications", err)
		return
	}
	defer s.Close()
	forgedFlood(ctx, s, rep, say)
	malformed(ctx, s, rep, say)
	dropped(ctx, env, s, rep, say)
}

func forgedFlood(ctx context.Context, s *pipekit.Stack, rep *report, say func(string, ...any)) {
	const posts, per = 500, 4
	r := &row{group: "hostile", name: "forged-notification flood",
		fault: fmt.Sprintf("%d forged POSTs of %d notifications (wrong / missing / rotated-looking clientState, foreign tenant with our clientState, forged lifecycle events) while 20 users change", posts, per)}
	defer rep.add(r)
	sub := s.Graph.Subscriptions()[0]
	secret := s.Settings["GRAPH_CLIENT_STATE"]
	foreign := "11111111-2222-3333-4444-555555555555"
	forge := func(k int) []byte {
		var ns []string
		for j := range per {
			id := forgedTarget(k*per + j)
			var n string
			switch (k + j) % 6 {
			case 0: // a guessed clientState
				n = fmt.Sprintf(`{"subscriptionId":%q,"changeType":"updated","clientState":"guess-%08d-abcdefgh","tenantId":%q,"resource":"Users/%s","resourceData":{"id":%q}}`, sub.ID, k, devstack.TenantID, id, id)
			case 1: // no clientState at all
				n = fmt.Sprintf(`{"subscriptionId":%q,"changeType":"deleted","tenantId":%q,"resource":"Users/%s","resourceData":{"id":%q}}`, sub.ID, devstack.TenantID, id, id)
			case 2: // our clientState, another tenant
				n = fmt.Sprintf(`{"subscriptionId":%q,"changeType":"updated","clientState":%q,"tenantId":%q,"resource":"Users/%s","resourceData":{"id":%q}}`, sub.ID, secret, foreign, id, id)
			case 3: // our clientState's prefix (length and near-miss timing)
				n = fmt.Sprintf(`{"subscriptionId":%q,"changeType":"updated","clientState":%q,"organizationId":%q,"resource":"Users/%s","resourceData":{"id":%q}}`, sub.ID, secret[:len(secret)-1], devstack.TenantID, id, id)
			case 4: // a forged lifecycle event
				n = fmt.Sprintf(`{"subscriptionId":%q,"lifecycleEvent":"subscriptionRemoved","clientState":"forged-lifecycle-0123456789","tenantId":%q}`, sub.ID, devstack.TenantID)
			default: // our tenant only in resourceData, a random clientState, an unknown subscription
				n = fmt.Sprintf(`{"subscriptionId":"%08d-0000-4000-8000-000000000000","changeType":"updated","clientState":"%032d","resource":"Users/%s","resourceData":{"id":%q,"organizationId":%q}}`, k, k, id, id, devstack.TenantID)
			}
			ns = append(ns, n)
		}
		return []byte(`{"value":[` + strings.Join(ns, ",") + `]}`)
	}
	t0 := time.Now()
	var mu sync.Mutex
	status := map[int]int{}
	var worst time.Duration
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range jobs {
				st := time.Now()
				resp, err := s.Graph.Forge(s.Settings["GRAPH_NOTIFICATION_URL"], forge(k))
				d := time.Since(st)
				code := 0
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				}
				mu.Lock()
				status[code]++
				worst = max(worst, d)
				mu.Unlock()
			}
		}()
	}
	for k := range posts {
		if k == posts/4 || k == posts/2 { // genuine changes in the middle of the flood
			from := 1 + 10*(k/(posts/4)-1)
			for i := from; i < from+10; i++ {
				s.Graph.UpdateUser(devstack.UserID(i), map[string]any{"department": "during the flood"})
			}
		}
		select {
		case jobs <- k:
		case <-ctx.Done():
		}
	}
	close(jobs)
	wg.Wait()
	floodTook := time.Since(t0)
	finish(ctx, s, r, ids(1, 20), t0, 60*time.Second)
	wh := s.Webhook(t0)
	leaked := 0
	for _, e := range s.Reader.Events() {
		var n int
		if _, err := fmt.Sscanf(e.Event.ResourceID[len(e.Event.ResourceID)-12:], "%d", &n); err == nil && n > 40 {
			leaked++
		}
	}
	var codes []string
	for c, k := range status {
		codes = append(codes, fmt.Sprintf("%d×%d", k, c))
	}
	sort.Strings(codes)
	subsAfter := s.Graph.Subscriptions()
	r.extra = append(r.extra, fmt.Sprintf("forged POSTs answered %s in %s (slowest %s); the webhook queued %d notifications (the 20 genuine ones) and dropped %d of %d forged; events for forged targets: %d; subscription still %s",
		strings.Join(codes, ", "), pipekit.Secs(floodTook), pipekit.Ms(worst), wh.Queued, wh.Dropped, posts*per, leaked,
		map[bool]string{true: "the same", false: "CHANGED"}[len(subsAfter) == 1 && subsAfter[0].ID == sub.ID]))
	if status[202] != posts {
		r.problems = append(r.problems, fmt.Sprintf("forged POSTs answered %s, want 202 for all %d", strings.Join(codes, ", "), posts))
	}
	if leaked > 0 || wh.Dropped != posts*per || wh.Queued != 20 {
		r.problems = append(r.problems, fmt.Sprintf("forgeries leaked: %d events for forged targets, webhook dropped %d of %d, queued %d (want 20)", leaked, wh.Dropped, posts*per, wh.Queued))
	}
	r.notes = "forged POSTs get the same 202 as genuine ones (a forger learns nothing) and never reach the queue"
	say("  forged flood: %d/%d got, %d lost, %d leaked, %s", r.o.Got, r.o.Changes, r.o.Lost, leaked, pipekit.Secs(floodTook))
}

func malformed(ctx context.Context, s *pipekit.Stack, rep *report, say func(string, ...any)) {
	r := &row{group: "hostile", name: "malformed and oversized bodies", fault: "POSTed straight to the webhook front with the function key; then 10 genuine changes"}
	defer rep.add(r)
	big := func(n int) []byte {
		pad := strings.Repeat("x", n)
		return []byte(`{"value":[{"subscriptionId":"s","changeType":"updated","clientState":"c","resource":"Users/x","resourceData":{"id":"x"},"pad":"` + pad + `"}]}`)
	}
	// A well-formed collection whose one notification carries a 10,000-deep unknown field: decoded (unknown
	// fields are ignored), then dropped for its missing clientState. Deeper than encoding/json's 10,000 limit: 400.
	nested := `{"value":[{"deep":` + strings.Repeat(`[`, 9990) + strings.Repeat(`]`, 9990) + `}]}`
	tooDeep := `{"value":[` + strings.Repeat(`[`, 20000) + strings.Repeat(`]`, 20000) + `]}`
	type tc struct {
		name  string
		body  []byte
		query string
		want  []int
	}
	cases := []tc{
		{"empty body", nil, "", []int{400}},
		{"not JSON", []byte("this is not JSON"), "", []int{400}},
		{"a JSON array", []byte(`[1,2,3]`), "", []int{400}},
		{"value is a string", []byte(`{"value":"nope"}`), "", []int{400}},
		{"truncated JSON", []byte(`{"value":[{"subscriptionId":"a","changeType":"upd`), "", []int{400}},
		{"invalid UTF-8 in clientState", []byte("{\"value\":[{\"clientState\":\"\xff\xfe\"}]}"), "", []int{400, 202}},
		{"a notification with a 10,000-deep unknown field", []byte(nested), "", []int{202}},
		{"20,000 levels of nesting", []byte(tooDeep), "", []int{400}},
		{"an empty collection", []byte(`{"value":[]}`), "", []int{202, 400}},
		{"JSON null", []byte(`null`), "", []int{400}},
		{"5 MiB body (over the webhook's 4 MiB)", big(5 << 20), "", []int{413}},
		{"12 MiB body (over the invocation limit)", big(12 << 20), "", []int{413}},
		{"9 KiB validationToken", nil, "&validationToken=" + strings.Repeat("A", 9<<10), []int{400}},
	}
	t0 := time.Now()
	client := &http.Client{Timeout: 30 * time.Second}
	var results []string
	for _, c := range cases {
		u := s.Settings["GRAPH_NOTIFICATION_URL"] + c.query
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(c.body))
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		resp, err := client.Do(req)
		code := 0
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			code = resp.StatusCode
		}
		ok := false
		for _, w := range c.want {
			ok = ok || code == w
		}
		mark := "✓"
		if !ok {
			mark = "✗"
			r.problems = append(r.problems, fmt.Sprintf("%s: answered %d (err %v), want %v", c.name, code, err, c.want))
		}
		results = append(results, fmt.Sprintf("%s → %d %s", c.name, code, mark))
	}
	time.Sleep(time.Second) // anything queued would be picked up by now
	wh := s.Webhook(t0)
	workerInv := 0
	for _, inv := range s.Host.Invocations() {
		if inv.Function == "queueworker" && !inv.Start.Before(t0) {
			workerInv++
		}
	}
	qn, _ := s.QueueCount(ctx, devstack.NotificationQueue)
	if wh.Queued != 0 || workerInv != 0 || qn != 0 {
		r.problems = append(r.problems, fmt.Sprintf("something was queued: webhook queued %d, %d worker invocations, %d messages in the queue", wh.Queued, workerInv, qn))
	}
	r.extra = append(r.extra, "answers: "+strings.Join(results, "; "))
	r.extra = append(r.extra, fmt.Sprintf("queued by the webhook: %d notifications; worker invocations: %d; failed webhook invocations: %d", wh.Queued, workerInv, wh.Failed))
	// The pipeline still works.
	t1 := time.Now()
	for i := 21; i <= 30; i++ {
		s.Graph.UpdateUser(devstack.UserID(i), map[string]any{"department": "after the garbage"})
	}
	finish(ctx, s, r, ids(21, 30), t1, 30*time.Second)
	r.notes = "malformed → 400, oversized → 413, answered without queuing anything; well-formed collections whose notifications fail verification → 202 and dropped, like forgeries"
	say("  malformed: %d cases, %d problems", len(cases), len(r.problems))
}

func dropped(ctx context.Context, env *pipekit.Env, s *pipekit.Stack, rep *report, say func(string, ...any)) {
	r := &row{group: "hostile", name: "notifications dropped by Graph, then `handler resync`",
		fault:   "DropNotifications on: 6 updates, 1 soft delete, 1 permanent delete, 1 new user; off; `handler resync` with the stack's settings",
		command: "`handler resync`"}
	defer rep.add(r)
	t0 := time.Now()
	s.Graph.DropNotifications(true)
	for i := 31; i <= 36; i++ {
		s.Graph.UpdateUser(devstack.UserID(i), map[string]any{"jobTitle": "changed while dropped"})
	}
	s.Graph.SoftDeleteUser(devstack.UserID(37))
	s.Graph.PermanentlyDeleteUser(devstack.UserID(38))
	s.Graph.AddUser(devstack.SeedUser(70))
	s.Graph.DropNotifications(false)
	changed := append(ids(31, 38), devstack.UserID(70))
	// A change after the stretch arrives: anything of the stretch would have arrived by then.
	s.Graph.UpdateUser(devstack.UserID(39), map[string]any{"jobTitle": "after the stretch"})
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err := s.AwaitState(wctx, ids(39, 39))
	cancel()
	if err != nil {
		r.problems = append(r.problems, "the change after the dropped stretch did not arrive")
	}
	before := s.Account(changed, t0)
	droppedN := 0
	for _, d := range s.Graph.Deliveries() {
		if d.Outcome == "dropped" && !d.Time.Before(t0) {
			droppedN += d.Notifications
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	cmd := exec.CommandContext(cctx, env.Handler, "resync")
	cmd.Env = s.EnvList()
	out, err := cmd.CombinedOutput()
	cancel()
	if err != nil || !strings.Contains(string(out), "resync users started") {
		r.problems = append(r.problems, fmt.Sprintf("handler resync: %v: %s", err, strings.TrimSpace(string(out))))
	}
	finish(ctx, s, r, changed, t0, 60*time.Second)
	bySrc := map[string]int{}
	inSet := map[string]bool{}
	for _, id := range changed {
		inSet[id] = true
	}
	others := 0
	for _, e := range s.Reader.Events() {
		if !e.ReadAt.Before(t0) {
			bySrc[string(e.Event.Source)]++
			if e.Event.Source == "resync" && !inSet[e.Event.ResourceID] {
				others++
			}
		}
	}
	var srcs []string
	for k, v := range bySrc {
		srcs = append(srcs, fmt.Sprintf("%d %s", v, k))
	}
	sort.Strings(srcs)
	r.extra = append(r.extra, fmt.Sprintf("Graph dropped %d notifications; before the resync %d of the %d changes had an event; events read since the stretch began: %s — of the resync's, %d are for users changed earlier on this stack (the flood and malformed scenarios, the marker change): a resync replays every change since the last checkpoint, as the design says; delta pages read %d",
		droppedN, before.Got, len(changed), strings.Join(srcs, ", "), others, s.Graph.Count("GET", "/v1.0/users/delta")))
	if before.Got > 0 {
		r.problems = append(r.problems, fmt.Sprintf("%d dropped change(s) had an event before the resync: the drop did not happen as planned", before.Got))
	}
	r.notes = "delta query recovers every dropped change with the latest state (source resync)"
	say("  dropped+resync: %d/%d got, %d lost, %d duplicated", r.o.Got, r.o.Changes, r.o.Lost, r.o.Duplicated)
}

// countPanics counts "panic:" lines in the handler/host log.
func countPanics(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "panic:") || strings.Contains(sc.Text(), "fatal error:") {
			n++
		}
	}
	return n
}

// ---- fuzzing ----

type fuzzTarget struct{ name, pkg, file string }

type fuzzResult struct {
	fuzzTarget
	execs    int64
	ok       bool
	failure  string
	took     time.Duration
	interest string
	command  string
}

var fuzzFuncRE = regexp.MustCompile(`(?m)^func (Fuzz\w+)\(\w+ \*testing\.F\)`)

// findFuzzTargets finds every Fuzz function in the module's test files (as `grep -rn 'func Fuzz'` would).
func findFuzzTargets(root string) ([]fuzzTarget, error) {
	var out []fuzzTarget
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case "node_modules", ".git", "testdata", "vendor":
				return filepath.SkipDir
			}
			if strings.HasPrefix(d.Name(), ".") && p != root {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(p))
		for _, m := range fuzzFuncRE.FindAllStringSubmatch(string(b), -1) {
			fr, _ := filepath.Rel(root, p)
			out = append(out, fuzzTarget{name: m[1], pkg: "./" + filepath.ToSlash(rel), file: fr})
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].pkg+out[i].name < out[j].pkg+out[j].name })
	return out, err
}

var execsRE = regexp.MustCompile(`execs: (\d+)`)
var interestRE = regexp.MustCompile(`new interesting: \d+ \(total: (\d+)\)`)

func runFuzz(ctx context.Context, root string, t fuzzTarget, d time.Duration) fuzzResult {
	r := fuzzResult{fuzzTarget: t}
	args := []string{"test", "-run", "^$", "-fuzz", "^" + t.name + "$", "-fuzztime", d.String(), t.pkg}
	r.command = "go " + strings.Join(args, " ")
	cctx, cancel := context.WithTimeout(ctx, d+3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, "go", args...)
	cmd.Dir = root
	st := time.Now()
	out, err := cmd.CombinedOutput()
	r.took = time.Since(st)
	for _, m := range execsRE.FindAllStringSubmatch(string(out), -1) {
		r.execs, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if ms := interestRE.FindAllStringSubmatch(string(out), -1); len(ms) > 0 {
		r.interest = ms[len(ms)-1][1]
	}
	r.ok = err == nil && strings.Contains(string(out), "PASS")
	if !r.ok {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		var keep []string
		for _, l := range lines {
			if strings.Contains(l, "Failing input written to") || strings.Contains(l, "--- FAIL") || strings.Contains(l, "panic:") || strings.Contains(l, "To re-run") {
				keep = append(keep, strings.TrimSpace(l))
			}
		}
		if len(keep) == 0 {
			keep = first(lines, 5)
		}
		if err != nil && cctx.Err() != nil {
			keep = append(keep, "timed out")
		}
		r.failure = strings.Join(keep, " | ")
	}
	return r
}

// ---- report ----

func render(rep *report, fuzz []fuzzResult, o options, elapsed, scenTime, fuzzTime time.Duration, load0 string, panics int) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	order := map[string]int{"throttle": 0, "lag": 1, "unavailable": 2, "kill": 3, "hostile": 4, "eventhubs": 5, "storage": 6}
	rows := append([]*row(nil), rep.rows...)
	sort.SliceStable(rows, func(i, j int) bool { return order[rows[i].group] < order[rows[j].group] })

	p("### Reliability (`make reliability`)\n\n")
	p("| | |\n|---|---|\n")
	p("| command | `make reliability` → `go run ./cmd/reliability %s` |\n", strings.Join(o.args, " "))
	p("| machine | %s |\n", pipekit.Machine())
	p("| run time | %s: scenarios %s (the groups concurrently, each on its own stack, then the hostile-input group alone), fuzzing %s (load average %s → %s) |\n\n", pipekit.Secs(elapsed), pipekit.Secs(scenTime), pipekit.Secs(fuzzTime), load0, pipekit.LoadAvg())
	p("Genuine changes made on the Graph double under each fault, through the real handler under the host double with Azurite.\n")
	p("**How changes are counted:** every change touches a different user, so every event read for that user after the scenario\n")
	p("started belongs to that change. *Got* = the user's last event carries the state the change produced (`devstack.Matches`:\n")
	p("the selected properties, or deleted / soft-deleted as in the double); *lost* = not, by the scenario's deadline;\n")
	p("*duplicated* = more than one event for the change (*same id*: all its events share one id, i.e. redeliveries a consumer\n")
	p("drops by id; otherwise distinct outcomes, e.g. the state read twice). Counted after the stack settled: no notification\n")
	p("queued or in delivery, `webhooksnotificationqueue` empty (delayed re-enqueues included), 2 s without a new event.\n")
	p("*Converged* = first change → last change's state readable in `graphchanges` (read every %s).\n\n", o.poll)
	renderRows(p, rows)
	p("- Handler/host log: %d `panic:` / `fatal error:` lines over all stacks.\n\n", panics)
	if rep.memory != nil {
		renderMemory(p, rep.memory)
	}

	if len(fuzz) > 0 {
		p("#### Fuzzing: every `Fuzz*` target in the repository, %s each\n\n", o.fuzztime)
		p("Found with a scan of `*_test.go` for `func Fuzz…(*testing.F)`; each run is `go test -run '^$' -fuzz '^Name$' -fuzztime %s <pkg>`\n", o.fuzztime)
		p("(GOMAXPROCS workers, after the scenarios so nothing else competes for the 2 cores); *execs* is the last `execs: N` the\n")
		p("fuzzer printed, which includes the seed corpus and baseline coverage.\n\n")
		p("| target | package | execs | corpus (interesting) | wall time incl. build | result |\n|---|---|---:|---:|---:|---|\n")
		for _, f := range fuzz {
			res := "✓ no crash"
			if !f.ok {
				res = "**✗ " + f.failure + "**"
			}
			p("| `%s` | `%s` | %d | %s | %s | %s |\n", f.name, f.pkg, f.execs, f.interest, pipekit.Secs(f.took), res)
		}
		p("\n")
	}

	var probs []string
	for _, r := range rows {
		for _, x := range r.problems {
			probs = append(probs, r.name+": "+x)
		}
	}
	for _, f := range fuzz {
		if !f.ok {
			probs = append(probs, "fuzz "+f.name+": "+f.failure)
		}
	}
	if panics > 0 {
		probs = append(probs, fmt.Sprintf("%d panic lines in the handler/host log", panics))
	}
	for _, x := range memoryProblems(rep.memory) {
		probs = append(probs, "hostile input: "+x)
	}
	p("**Interpretation.** ")
	if len(probs) == 0 {
		total, got, dup, same := 0, 0, 0, 0
		for _, r := range rows {
			total += r.o.Changes
			got += r.o.Got
			dup += r.o.Duplicated
			same += r.o.SameID
		}
		p("Every one of the %d genuine changes got an event carrying its latest state under every fault; none was lost, nothing\n", total)
		p("reached the poison queue, the handler restarted only when killed, and no forged, malformed or oversized input was queued.\n")
		p("%d change(s) produced more than one event (%d of them same-id redeliveries), within the at-least-once contract.\n", dup, same)
		p("Recovery time is set by the waits the design chooses, not by the handler: Graph's Retry-After for throttling, the 30 s\n")
		p("first backoff step after the Graph client's own retries for 5xx, Graph's redelivery and the host's queue retry after a kill.\n")
	} else {
		p("**Problems found:**\n\n")
		for _, x := range probs {
			p("- %s\n", x)
		}
		p("\nReproduce one group alone: `go run ./cmd/reliability -only <throttle|lag|unavailable|kill|hostile|eventhubs|storage|memory> -no-fuzz -out ''`.\n")
	}
	p("\n")
	return b.String()
}

// forgedTarget is whom forged notification k names: users 41–60 exist and are never changed, 901+ do not
// exist, so any event for either is a forgery that got through.
func forgedTarget(k int) string {
	if k%2 == 0 {
		return devstack.UserID(41 + k%20)
	}
	return devstack.UserID(901 + k%50)
}

// renderRows writes the scenario table and its details.
func renderRows(p func(string, ...any), rows []*row) {
	p("| scenario | fault | changes | got an event | lost | duplicated (same id) | converged in | restarts | poison | verdict |\n")
	p("|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range rows {
		verdict := "✓ all delivered"
		if r.pending != "" {
			verdict = "… pending: " + r.pending
		}
		if r.unsettled {
			verdict += " (work still queued at the count: see details)"
		}
		if len(r.problems) > 0 {
			verdict = "**✗ " + strings.Join(r.problems, "; ") + "**"
		}
		conv := pipekit.Secs(r.took)
		if !r.converged {
			conv = "**did not converge** (" + conv + ")"
		}
		p("| %s | %s | %d | %d | %d | %d (%d) | %s | %d | %d | %s |\n", r.name, r.fault, r.o.Changes, r.o.Got, r.o.Lost, r.o.Duplicated, r.o.SameID, conv, r.restarts, r.poison, verdict)
	}
	p("\nDetails:\n\n")
	for _, r := range rows {
		p("- **%s** — %s", r.name, r.notes)
		if len(r.extra) > 0 {
			p(". %s", strings.Join(r.extra, ". "))
		}
		if len(r.o.DupDetail) > 0 {
			p(". Duplicates, e.g.: %s", strings.Join(r.o.DupDetail, "; "))
		}
		p(".\n")
	}
}
