// Command benchscale measures the pipeline at tenant scale: the real handler under the Functions host
// double, with Azurite and the Graph double (cmd/benchpipeline/pipekit), in four scenarios:
//
//   - full resync passes over a directory of 20,000 and 100,000 users (delta pages of 200), and a second
//     full pass over the 20,000 with nothing changed;
//   - a burst: 10,000 users each changed twice (two rounds), drained by the queue worker;
//   - one POST of 5,000 change notifications to the webhook.
//
// It writes its figures to the "scale" sub-section of the pipeline block of docs/benchmarks.md (which
// `make bench` keeps). It takes minutes: `make
// bench-scale`, never part of `make test`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"

	"github.com/graphwebhooks/graph-webhooks-go/cmd/benchpipeline/pipekit"
	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/devstack"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
)

type options struct {
	users     []int
	second    int // the directory size whose pass is repeated with nothing changed
	burst     int
	post      int
	pageSize  int
	out, log  string
	poll      time.Duration
	onlyParts string
}

func main() {
	var o options
	var users string
	flag.StringVar(&users, "users", "20000,100000", "directory sizes for the full pass, comma-separated")
	flag.IntVar(&o.second, "second", 20000, "repeat the pass over this many users with nothing changed (one of -users; 0: none)")
	flag.IntVar(&o.burst, "burst", 10000, "users changed twice in the burst (0: skip)")
	flag.IntVar(&o.post, "post", 5000, "notifications in the one POST (0: skip)")
	flag.IntVar(&o.pageSize, "page", 200, "users per delta page")
	flag.StringVar(&o.out, "out", "docs/benchmarks.md", "report to update (the scale sub-section of its pipeline block)")
	flag.StringVar(&o.log, "log", ".bench/scale.log", "handler and host log")
	flag.DurationVar(&o.poll, "poll", 200*time.Millisecond, "graphchanges reader poll")
	flag.StringVar(&o.onlyParts, "only", "", "run only these parts: pass,burst,post (comma-separated)")
	flag.Parse()
	for _, f := range strings.Split(users, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			o.users = append(o.users, n)
		}
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "benchscale:", err)
		os.Exit(1)
	}
}

func (o options) wants(part string) bool {
	return o.onlyParts == "" || strings.Contains(","+o.onlyParts+",", ","+part+",")
}

func run(o options) error {
	// Interrupted, the stacks still close (Azurite and the handler stopped, temporary files removed).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env, err := pipekit.Setup(ctx, o.log)
	if err != nil {
		return err
	}
	defer env.Close()
	rep := &report{machine: pipekit.Machine(), opts: o}
	if o.wants("pass") {
		for _, n := range o.users {
			fmt.Fprintf(os.Stderr, "full pass over %d users…\n", n)
			ps, err := passes(ctx, env, o, n, n == o.second)
			if err != nil {
				return fmt.Errorf("%d users: %w", n, err)
			}
			rep.passes = append(rep.passes, ps...)
		}
	}
	if o.wants("burst") && o.burst > 0 {
		fmt.Fprintf(os.Stderr, "burst of %d users, twice…\n", o.burst)
		b, err := burst(ctx, env, o)
		if err != nil {
			return fmt.Errorf("burst: %w", err)
		}
		rep.bursts = b
	}
	if o.wants("post") && o.post > 0 {
		fmt.Fprintf(os.Stderr, "one POST of %d notifications…\n", o.post)
		p, err := post(ctx, env, o)
		if err != nil {
			return fmt.Errorf("post: %w", err)
		}
		rep.post = &p
	}
	body := rep.render()
	fmt.Print(body)
	return pipekit.WriteSection(o.out, "scale", body)
}

// ---- resources of the processes ----

// procStat is a process's CPU time (its own and its waited-for children's) and resident memory.
type procStat struct {
	cpu       time.Duration
	rss, peak int64 // bytes; peak is VmHWM
}

func readProc(pid int) procStat {
	var st procStat
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i > 0 {
			f := strings.Fields(s[i+1:])
			// Fields after the command: state(0) … utime(11) stime(12) cutime(13) cstime(14).
			if len(f) > 14 {
				var ticks int64
				for _, k := range []int{11, 12, 13, 14} {
					v, _ := strconv.ParseInt(f[k], 10, 64)
					ticks += v
				}
				st.cpu = time.Duration(ticks) * time.Second / 100 // USER_HZ is 100 on Linux
			}
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(l, ":")
			f := strings.Fields(v)
			if len(f) == 0 {
				continue
			}
			n, _ := strconv.ParseInt(f[0], 10, 64)
			switch k {
			case "VmRSS":
				st.rss = n << 10
			case "VmHWM":
				st.peak = n << 10
			}
		}
	}
	return st
}

// watch samples the handler's memory until stop, keeping the largest resident size seen (the handler
// process may be restarted by the host; each process's VmHWM is taken too).
type watch struct {
	s    *pipekit.Stack
	mu   sync.Mutex
	peak int64
	stop chan struct{}
	done chan struct{}
}

func watchHandler(s *pipekit.Stack) *watch {
	w := &watch{s: s, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			w.sample()
			select {
			case <-w.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *watch) sample() {
	st := readProc(w.s.Host.HandlerPID())
	w.mu.Lock()
	w.peak = max(w.peak, st.rss, st.peak)
	w.mu.Unlock()
}

func (w *watch) end() int64 {
	close(w.stop)
	<-w.done
	w.sample()
	return w.peak
}

// ---- full passes ----

type passFig struct {
	users               int
	label               string
	wall                time.Duration
	done                bool
	invocations, failed int
	events, suppressed  int
	table               pipekit.TableTally
	handlerCPU, azCPU   time.Duration
	peakRSS             int64
	load                string
}

// passPoll is how often the passes' stacks read graphchanges: in effect never during a pass. Azurite, one
// Node.js process on a loaded machine, stalls for a minute at a time when a reader drains graphchanges while
// the pass writes 200 events a second into it; a consumer's reads are not the handler's work, and Azure
// Queue storage serves them apart. The passes are timed by the worker's reports, not by events read.
const passPoll = 10 * time.Minute

func startStack(ctx context.Context, env *pipekit.Env, o options, users int, poll time.Duration, graph func(*fakegraph.Options)) (*pipekit.Stack, error) {
	return env.Start(ctx, devstack.Options{Users: users, Graph: func(g *fakegraph.Options) {
		g.UserPageSize = o.pageSize
		if graph != nil {
			graph(g)
		}
	}}, poll)
}

// passes runs a full pass over a fresh directory of n users, and when again is set a second one with
// nothing changed, in the same stack (the same handler process).
func passes(ctx context.Context, env *pipekit.Env, o options, n int, again bool) ([]passFig, error) {
	s, err := startStack(ctx, env, o, n, passPoll, nil)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	w := watchHandler(s)
	first, err := fullPass(ctx, s, n, "first full pass")
	if err != nil {
		w.end()
		return nil, err
	}
	out := []passFig{first}
	if again && first.done {
		second, err := fullPass(ctx, s, n, "second full pass, nothing changed")
		if err != nil {
			w.end()
			return nil, err
		}
		out = append(out, second)
	}
	peak := w.end()
	for i := range out {
		out[i].peakRSS = peak
	}
	return out, nil
}

// fullPass forgets the users checkpoint (so that a pass has no delta link to start from), runs `handler
// resync` with RESYNC_INITIAL=full, and waits for the queue worker to report the pass completed.
func fullPass(ctx context.Context, s *pipekit.Stack, n int, label string) (passFig, error) {
	f := passFig{users: n, label: label}
	if err := forgetCheckpoint(ctx, s); err != nil {
		return f, err
	}
	hPID, aPID := s.Host.HandlerPID(), s.Azurite.Pid()
	h0, a0 := readProc(hPID), readProc(aPID)
	t0 := time.Now()
	cmd := exec.CommandContext(ctx, s.Handler, "resync", "users")
	cmd.Env = append(s.EnvList(), config.ResyncInitial+"=full")
	if out, err := cmd.CombinedOutput(); err != nil {
		return f, fmt.Errorf("handler resync: %v: %s", err, strings.TrimSpace(string(out)))
	}
	limit := time.Duration(n/1000+2) * 20 * time.Second // 20 s per 1,000 users: 20× the goal's rate
	wctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	err := devstack.Eventually(wctx, func() bool { return s.Worker(t0, time.Time{}).PassesDone["users"] > 0 })
	f.wall = time.Since(t0)
	f.done = err == nil
	f.load = pipekit.LoadAvg()
	h1, a1 := readProc(hPID), readProc(aPID)
	f.handlerCPU, f.azCPU = h1.cpu-h0.cpu, a1.cpu-a0.cpu
	// Let the last invocation's log reach the host's record before counting.
	time.Sleep(500 * time.Millisecond)
	wt := s.Worker(t0, time.Time{})
	f.invocations, f.failed = wt.Invocations, wt.Failed
	f.events, f.suppressed = wt.ResyncEvents, wt.ResyncSuppressed
	f.table = s.Table.Between(t0, time.Time{})
	fmt.Fprintf(os.Stderr, "  %s: %s, done %v, %d invocations, %d events, %d suppressed, %d table requests\n", label, pipekit.Secs(f.wall), f.done, f.invocations, f.events, f.suppressed, f.table.Total)
	return f, nil
}

func forgetCheckpoint(ctx context.Context, s *pipekit.Stack) error {
	c, err := azblob.NewClientFromConnectionString(s.Settings[config.Storage], nil)
	if err != nil {
		return err
	}
	container := s.Settings[config.ResyncContainer]
	if container == "" {
		container = config.DefaultResyncContainer
	}
	_, err = c.DeleteBlob(ctx, container, "delta/users.json", nil)
	if err != nil && !strings.Contains(err.Error(), "BlobNotFound") {
		return fmt.Errorf("forget the users checkpoint: %w", err)
	}
	return nil
}

// ---- burst ----

type burstFig struct {
	label               string
	changes             int
	notifications       int
	drain               time.Duration
	converged           bool
	events              int
	invocations, failed int
	table               pipekit.TableTally
	handlerCPU, azCPU   time.Duration
	peakRSS             int64
	load                string
}

// burst changes every one of n users, waits until each user's latest event carries its new state, then
// does it again: the second round finds the states this handler committed in its cache.
func burst(ctx context.Context, env *pipekit.Env, o options) ([]burstFig, error) {
	s, err := startStack(ctx, env, o, o.burst, o.poll, func(g *fakegraph.Options) { g.NotificationBatchSize = 100 })
	if err != nil {
		return nil, err
	}
	defer s.Close()
	w := watchHandler(s)
	ids := make([]string, o.burst)
	for i := range ids {
		ids[i] = devstack.UserID(i + 1)
	}
	var out []burstFig
	for round := 1; round <= 2; round++ {
		f := burstFig{label: fmt.Sprintf("round %d", round), changes: len(ids)}
		hPID, aPID := s.Host.HandlerPID(), s.Azurite.Pid()
		h0, a0 := readProc(hPID), readProc(aPID)
		t0 := time.Now()
		for i, id := range ids {
			s.Graph.UpdateUser(id, map[string]any{"jobTitle": fmt.Sprintf("burst %d-%d", round, i)})
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		last, err := s.AwaitState(wctx, ids)
		cancel()
		f.converged = err == nil
		f.drain = last.Sub(t0)
		if !f.converged {
			f.drain = time.Since(t0)
		}
		f.load = pipekit.LoadAvg()
		h1, a1 := readProc(hPID), readProc(aPID)
		f.handlerCPU, f.azCPU = h1.cpu-h0.cpu, a1.cpu-a0.cpu
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		s.Settle(sctx, 1500*time.Millisecond)
		cancel()
		wt := s.Worker(t0, time.Time{})
		f.invocations, f.failed, f.events = wt.Invocations, wt.Failed, wt.Events
		f.notifications = s.Webhook(t0).Queued
		f.table = s.Table.Between(t0, time.Time{})
		fmt.Fprintf(os.Stderr, "  %s: drain %s, converged %v, %d notifications, %d events, %d table requests\n", f.label, pipekit.Secs(f.drain), f.converged, f.notifications, f.events, f.table.Total)
		out = append(out, f)
	}
	peak := w.end()
	for i := range out {
		out[i].peakRSS = peak
	}
	return out, nil
}

// ---- one big POST ----

type postFig struct {
	notifications, posts int
	messages             int
	answer               time.Duration
	status               int
	load                 string
}

// post changes n users with deliveries held back, then lets the Graph double send them in one POST.
func post(ctx context.Context, env *pipekit.Env, o options) (postFig, error) {
	var f postFig
	s, err := startStack(ctx, env, o, o.post, o.poll, func(g *fakegraph.Options) {
		g.NotificationBatchSize = o.post
		g.CoalesceWindow = -1 // only Flush sends
	})
	if err != nil {
		return f, err
	}
	defer s.Close()
	t0 := time.Now()
	for i := range o.post {
		s.Graph.UpdateUser(devstack.UserID(i+1), map[string]any{"jobTitle": fmt.Sprintf("post %d", i)})
	}
	s.Graph.Flush()
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := s.Graph.WaitDelivered(wctx); err != nil {
		return f, err
	}
	f.load = pipekit.LoadAvg()
	for _, d := range s.Graph.Deliveries() {
		if d.Kind != "notification" || d.Time.Before(t0) {
			continue
		}
		f.posts++
		f.notifications += d.Notifications
		f.answer = max(f.answer, d.Duration)
		f.status = d.Status
	}
	time.Sleep(500 * time.Millisecond)
	f.messages = s.Webhook(t0).Messages
	fmt.Fprintf(os.Stderr, "  %d notifications in %d POST(s): %d messages, answered in %s (%d)\n", f.notifications, f.posts, f.messages, pipekit.Ms(f.answer), f.status)
	return f, nil
}

// ---- report ----

type report struct {
	machine string
	opts    options
	passes  []passFig
	bursts  []burstFig
	post    *postFig
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

func perObject(n, objects int) string {
	if objects == 0 {
		return "–"
	}
	return fmt.Sprintf("%.3f", float64(n)/float64(objects))
}

func (r *report) render() string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("### Tenant scale\n\n")
	p("Measured with `make bench-scale` (`go run ./cmd/benchscale`) on %s: the handler built from this tree\n", r.machine)
	p("under the Functions host double, Azurite for queues, blobs and the state table, the Graph double as Graph (delta pages of %d\n", r.opts.pageSize)
	p("users). State requests are the handler's requests to the state table, counted by a proxy in front of Azurite's table\n")
	p("endpoint (checkpoint blobs and queues are not in them). The load average (1 min) is read as each figure ends: other\n")
	p("engineers' builds share the machine's 2 cores, so wall times here are long for what the handler does. \"Before\" is the\n")
	p("version before sharded state, the state cache, fuller messages and multi-page steps, measured on this machine with a\n")
	p("harness outside the repository.\n\n")

	pass := func(n int, label string) *passFig {
		for i := range r.passes {
			if r.passes[i].users == n && strings.HasPrefix(r.passes[i].label, label) {
				return &r.passes[i]
			}
		}
		return nil
	}
	var peak int64
	for _, f := range r.passes {
		peak = max(peak, f.peakRSS)
	}
	for _, f := range r.bursts {
		peak = max(peak, f.peakRSS)
	}
	p("| scenario | before | now | goal |\n|---|---|---|---|\n")
	if f := pass(20000, "first"); f != nil {
		p("| full pass, 20,000 users | 105 s (190 objects/s), 100 worker invocations | %s (%.0f objects/s), %d worker invocations, load %s | ≤ 45 s |\n",
			pipekit.Secs(f.wall), float64(f.users)/f.wall.Seconds(), f.invocations, f.load)
	}
	if f := pass(20000, "second"); f != nil {
		p("| second full pass, nothing changed | 324 s, 20,000 state point reads (≥ 1 request per object) | %s, %s state requests per object, %d events, load %s | ≤ 0.1 requests per object |\n",
			pipekit.Secs(f.wall), perObject(f.table.Total, f.users), f.events, f.load)
	}
	if f := pass(100000, "first"); f != nil {
		done := "completed"
		if !f.done {
			done = "NOT completed"
		}
		p("| full pass, 100,000 users | not finished in 6 min (31,800 objects) | %s in %s (%.0f objects/s), load %s | completes |\n", done, pipekit.Secs(f.wall), float64(f.users)/f.wall.Seconds(), f.load)
	}
	if len(r.bursts) > 0 {
		f := r.bursts[0]
		p("| burst, %d users changed once | drain 37 s (270 notifications/s), 1.05 state requests per event | drain %s (%.0f notifications/s), %s state requests per event, load %s | |\n",
			r.opts.burst, pipekit.Secs(f.drain), float64(f.notifications)/f.drain.Seconds(), perObject(f.table.Total, f.events), f.load)
		total, events := 0, 0
		for _, f := range r.bursts {
			total += f.table.Total
			events += f.events
		}
		p("| … each changed twice (two rounds) | – | %s state requests per event | ≤ 0.3 |\n", perObject(total, events))
	}
	if f := r.post; f != nil {
		p("| one POST of %d notifications | 250 queue messages, answered in 0.55–0.65 s | %d queue messages, answered in %s, load %s | ≤ 80 messages |\n", f.notifications, f.messages, pipekit.Ms(f.answer), f.load)
	}
	if peak > 0 {
		p("| peak RSS of the handler | 40–51 MiB | %s | ≤ 64 MiB |\n", mib(peak))
	}
	p("\n")

	if len(r.passes) > 0 {
		p("**Full resync passes** (each started by `handler resync` with RESYNC_INITIAL=full, the checkpoint forgotten first;\n")
		p("graphchanges is not read while they run: Azurite stalls for a minute at a time when a reader drains it during a pass)\n\n")
		p("| pass | wall time | objects/s | worker invocations | events / suppressed | state requests per object (by kind) | CPU: handler / Azurite | peak RSS | load |\n")
		p("|---|---|---|---|---|---|---|---|---|\n")
		for _, f := range r.passes {
			status := ""
			if !f.done {
				status = " (not completed)"
			}
			p("| %d users, %s%s | %s | %.0f | %d (%d failed) | %d / %d | %s (%s) | %s / %s | %s | %s |\n",
				f.users, f.label, status, pipekit.Secs(f.wall), float64(f.users)/f.wall.Seconds(), f.invocations, f.failed,
				f.events, f.suppressed, perObject(f.table.Total, f.users), f.table.Kinds(), pipekit.Secs(f.handlerCPU), pipekit.Secs(f.azCPU),
				mib(f.peakRSS), f.load)
		}
		p("\n")
	}
	if len(r.bursts) > 0 {
		p("**Burst: %d users changed, then changed again** (the Graph double POSTs up to 100 notifications at a time)\n\n", r.opts.burst)
		p("| round | drain | notifications | notifications/s | events | worker invocations | state requests per event (by kind) | CPU: handler / Azurite | peak RSS | load |\n")
		p("|---|---|---|---|---|---|---|---|---|---|\n")
		for _, f := range r.bursts {
			conv := ""
			if !f.converged {
				conv = " (not converged)"
			}
			p("| %s | %s%s | %d | %.0f | %d | %d (%d failed) | %s (%s) | %s / %s | %s | %s |\n", f.label, pipekit.Secs(f.drain), conv, f.notifications,
				float64(f.notifications)/f.drain.Seconds(), f.events, f.invocations, f.failed, perObject(f.table.Total, f.events), f.table.Kinds(),
				pipekit.Secs(f.handlerCPU), pipekit.Secs(f.azCPU), mib(f.peakRSS), f.load)
		}
		p("\n")
	}
	var hCPU, aCPU time.Duration
	for _, f := range r.passes {
		hCPU, aCPU = hCPU+f.handlerCPU, aCPU+f.azCPU
	}
	for _, f := range r.bursts {
		hCPU, aCPU = hCPU+f.handlerCPU, aCPU+f.azCPU
	}
	if hCPU+aCPU > 0 {
		p("**What measures Azurite rather than the handler.** Over the passes and the burst, Azurite used %s of CPU and the handler\n", pipekit.Secs(aCPU))
		p("%s (%.0f%% Azurite): wall times and objects/s here are mostly Azurite's (one Node.js process serving every table, queue\n", pipekit.Secs(hCPU), 100*aCPU.Seconds()/(hCPU+aCPU).Seconds())
		p("and blob request on a loaded machine), and so is the drain rate of the burst. The handler's own figures are the request\n")
		p("counts (state requests per object or event, worker invocations, queue messages), which are the same against Azure\n")
		p("Table storage, and its memory. The POST's answer time includes the host double writing each queue message to Azurite.\n")
	}
	return b.String()
}
