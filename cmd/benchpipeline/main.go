// Command benchpipeline measures the whole pipeline — the real handler under the Functions host double,
// Azurite, and the Graph double — for Graph economy and end-to-end latency, and writes its sub-section of the
// pipeline block of docs/benchmarks.md (the block between the bench-pipeline markers, which `make bench`
// keeps; `make reliability` writes the other sub-section).
//
//	go run ./cmd/benchpipeline -out docs/benchmarks.md      (make bench-pipeline: about 5 minutes)
//	go run ./cmd/benchpipeline -quick -out /tmp/x.md        (a smaller smoke run)
//
// Graph economy: 500 users each change twice on the Graph double (1,000 notifications, half of them
// redundant), delivered in POSTs of up to 100 (NotificationBatchSize 100), once with each user's two changes
// back to back and once as two rounds over all users. Counted: the worker's Graph HTTP requests ($batch,
// users, deletedItems — not subscriptions, not tokens, not delta) per notification delivered, beside the
// 1.0 of a receiver that GETs the user for each notification; and the time from the first change to the last
// user's latest state readable in graphchanges.
//
// End-to-end latency: single-user changes at a steady rate, then a few far apart; from the Graph double's
// delivery being answered (the webhook's 202) to the event being readable in graphchanges, which this
// program polls every 20 ms.
//
// Change detection (its own sub-section, "detection"): events per genuine state change, events suppressed,
// state-table requests (counted by a reverse proxy in front of Azurite's table endpoint, see
// pipekit.TableCounter) and worker invocation time, for the economy runs, for a resync reporting changes
// already notified, and for groups that are renamed and gain and lose members. The handler as it was before
// change detection (-baseline, built from git) runs beside this one in two rounds and the resync.
// -only-detection runs that sub-section alone and leaves the economy/latency figures as they were.
//
// Drives (their own sub-section, "drives", drives.go): a drive of 200 files, each edited once while Graph taps
// the drive 5 times per edit (1,000 taps), all at once and in waves; counted: the worker's delta requests per
// tap, events per genuine change, and the time until every file's new state is readable. -only-drives runs
// that sub-section alone.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/cmd/benchpipeline/pipekit"
	"github.com/graphwebhooks/graph-webhooks-go/internal/devstack"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakehost"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchpipeline:", err)
		os.Exit(1)
	}
}

type options struct {
	out           string
	quick         bool
	users         int           // economy: distinct users, each changed twice
	batch         int           // economy: NotificationBatchSize
	latN          int           // latency: steady-rate changes
	latEvery      time.Duration // latency: spacing of the steady-rate changes
	sparseN       int           // latency: changes far apart
	sparseEvery   time.Duration
	poll          time.Duration // graphchanges read interval
	timeout       time.Duration
	logPath       string
	skipEconomy   bool
	skipLatency   bool
	skipDetection bool
	baseline      string // git revision of a handler before change detection; empty: no comparison
	resyncUsers   int    // resync after notifications: users changed
	groups        int    // groups run: groups changed
	commandLine   string
	maxPollingInt string
	skipDrives    bool
	driveFiles    int // drive runs: files, each edited once
	driveTaps     int // drive runs: taps per edit
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("benchpipeline", flag.ContinueOnError)
	var o options
	var newOnly bool
	fs.StringVar(&o.out, "out", "docs/benchmarks.md", "report to update (its pipeline block only), relative to the module root; empty: print only")
	fs.BoolVar(&o.quick, "quick", false, "smaller run (200 users, 40+3 latency changes); figures not for comparison")
	fs.IntVar(&o.users, "users", 500, "economy: distinct users, each changed twice")
	fs.IntVar(&o.batch, "batch", 100, "economy: the Graph double's NotificationBatchSize")
	fs.IntVar(&o.latN, "lat-n", 200, "latency: single-user changes at a steady rate")
	fs.DurationVar(&o.latEvery, "lat-every", 100*time.Millisecond, "latency: spacing of the steady-rate changes")
	fs.IntVar(&o.sparseN, "sparse-n", 8, "latency: changes far apart (the host's queue poller has backed off)")
	fs.DurationVar(&o.sparseEvery, "sparse-every", 5*time.Second, "latency: spacing of the sparse changes")
	fs.DurationVar(&o.poll, "poll", 20*time.Millisecond, "how often graphchanges is read when empty")
	fs.DurationVar(&o.timeout, "timeout", 6*time.Minute, "the whole run's deadline")
	fs.StringVar(&o.logPath, "log", filepath.Join(os.TempDir(), "benchpipeline-handler.log"), "handler and host log lines")
	fs.BoolVar(&o.skipEconomy, "skip-economy", false, "skip the Graph economy runs")
	fs.BoolVar(&o.skipLatency, "skip-latency", false, "skip the latency runs")
	fs.BoolVar(&o.skipDetection, "skip-detection", false, "skip the change-detection section (resync after notifications, groups)")
	fs.BoolVar(&newOnly, "only-detection", false, "run only the change-detection section (= -skip-economy -skip-latency); the economy/latency sub-section keeps its figures")
	fs.StringVar(&o.baseline, "baseline", "e2fa1ed", "git revision of the handler before change detection, run beside this one (two rounds; resync after notifications); empty: none")
	fs.IntVar(&o.resyncUsers, "resync-users", 100, "resync after notifications: users changed")
	fs.IntVar(&o.groups, "groups", 50, "groups run: groups renamed, each also gaining and losing a member")
	var onlyDrives bool
	fs.BoolVar(&o.skipDrives, "skip-drives", false, "skip the drive runs")
	fs.BoolVar(&onlyDrives, "only-drives", false, "run only the drive runs (= -skip-economy -skip-latency -skip-detection); the other sub-sections keep their figures")
	fs.IntVar(&o.driveFiles, "drive-files", 200, "drive runs: files in the drive, each edited once")
	fs.IntVar(&o.driveTaps, "drive-taps", 5, "drive runs: taps Graph sends for each edit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.quick {
		o.users, o.latN, o.sparseN, o.resyncUsers, o.groups, o.driveFiles = 200, 40, 3, 40, 20, 50
	}
	if newOnly {
		o.skipEconomy, o.skipLatency, o.skipDrives = true, true, true
	}
	if onlyDrives {
		o.skipEconomy, o.skipLatency, o.skipDetection = true, true, true
	}
	o.commandLine = "go run ./cmd/benchpipeline " + strings.Join(args, " ")
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	t0 := time.Now()
	load0 := pipekit.LoadAvg()

	say := func(format string, a ...any) { fmt.Fprintf(out, format+"\n", a...) }
	say("benchpipeline: building the handler …")
	env, err := pipekit.Setup(ctx, o.logPath)
	if err != nil {
		return err
	}
	defer env.Close()
	o.maxPollingInt = hostPolling(env.Root)
	var base pipekit.Build
	if o.baseline != "" && (!o.skipEconomy || !o.skipDetection) {
		say("benchpipeline: building the handler at %s (before change detection) …", env.ShortRev(o.baseline))
		if base, err = env.BuildAt(ctx, o.baseline); err != nil {
			return err
		}
	}

	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("### Graph economy and end-to-end latency (`make bench-pipeline`)\n\n")
	p("| | |\n|---|---|\n")
	p("| command | `make bench-pipeline` → `%s` |\n", strings.TrimSpace(o.commandLine))
	p("| machine | %s |\n", pipekit.Machine())
	p("| pipeline | the real handler (built from the working tree) under the Functions host double (`internal/fakehost`, host.json as committed: queue `maxPollingInterval` %s, batchSize 16), a real Azurite, the Graph double (`internal/fakegraph`) as Graph and Entra ID; one machine, loopback only |\n", o.maxPollingInt)
	if o.quick {
		p("| note | **quick run** (`-quick`): smaller numbers, not for comparison |\n")
	}

	var econ []economyResult
	if !o.skipEconomy {
		for _, v := range []variant{adjacent, rounds, doubled} {
			say("benchpipeline: Graph economy, %s …", v)
			r, err := economy(ctx, env, o, v, pipekit.Build{})
			if err != nil {
				return fmt.Errorf("economy (%s): %w", v, err)
			}
			sayEconomy(say, r)
			econ = append(econ, r)
		}
		if base.Handler != "" {
			say("benchpipeline: Graph economy, %s, handler at %s …", rounds, base.Label)
			r, err := economy(ctx, env, o, rounds, base)
			if err != nil {
				return fmt.Errorf("economy (%s, %s): %w", rounds, base.Label, err)
			}
			sayEconomy(say, r)
			econ = append(econ, r)
		}
	}
	var rres []resyncResult
	var grp *groupResult
	if !o.skipDetection {
		builds := []pipekit.Build{{}}
		if base.Handler != "" {
			builds = append(builds, base)
		}
		for _, bl := range builds {
			say("benchpipeline: resync after notifications, %d users, %s …", o.resyncUsers, handlerName(bl.Label))
			r, err := resyncAfter(ctx, env, o, bl)
			if err != nil {
				return fmt.Errorf("resync after notifications (%s): %w", handlerName(bl.Label), err)
			}
			say("  %d + %d events (notification + resync) for %d changes: %.2f per change; %d suppressed by the resync; %d table requests",
				r.notifEvents, r.resyncEvents, r.users, r.perChange(), r.worker.ResyncSuppressed, r.table.Total)
			rres = append(rres, r)
		}
		say("benchpipeline: groups, %d groups renamed, a member added and one removed each …", o.groups)
		g, err := groupsRun(ctx, env, o)
		if err != nil {
			return fmt.Errorf("groups: %w", err)
		}
		say("  %d notifications, %d Graph requests (%.3f per notification), %d group events for %d changes, converged %v",
			g.delivered, g.calls.Worker()+g.calls.GroupDelta, g.perNotification(), g.events, g.changes, g.converged)
		grp = &g
	}
	var drv []driveResult
	if !o.skipDrives {
		for _, v := range []driveVariant{driveBurst, driveSpread} {
			say("benchpipeline: drives, %d files edited once, %d taps each (%s) …", o.driveFiles, o.driveTaps, v)
			r, err := driveRun(ctx, env, o, v)
			if err != nil {
				return fmt.Errorf("drives (%s): %w", v, err)
			}
			sayDrive(say, r)
			drv = append(drv, r)
		}
	}
	var lat *latencyResult
	if !o.skipLatency {
		say("benchpipeline: end-to-end latency, %d changes every %s, then %d every %s …", o.latN, o.latEvery, o.sparseN, o.sparseEvery)
		lat, err = latency(ctx, env, o)
		if err != nil {
			return fmt.Errorf("latency: %w", err)
		}
		say("  steady: p50 %s p99 %s; sparse: p50 %s p99 %s", pipekit.Ms(lat.steady.p(50)), pipekit.Ms(lat.steady.p(99)), pipekit.Ms(lat.sparse.p(50)), pipekit.Ms(lat.sparse.p(99)))
	}
	elapsed := time.Since(t0)
	p("| run time | %s (load average %s → %s) |\n\n", pipekit.Secs(elapsed), load0, pipekit.LoadAvg())
	if len(econ) > 0 {
		writeEconomy(p, o, econ)
	}
	if lat != nil {
		writeLatency(p, o, lat)
	}
	var d strings.Builder
	if len(rres) > 0 || grp != nil {
		pd := func(format string, a ...any) { fmt.Fprintf(&d, format, a...) }
		hdr := fmt.Sprintf("| | |\n|---|---|\n| command | `make bench-pipeline` → `%s` |\n| machine | %s |\n", strings.TrimSpace(o.commandLine), pipekit.Machine())
		if o.quick {
			hdr += "| note | **quick run** (`-quick`): smaller numbers, not for comparison |\n"
		}
		hdr += fmt.Sprintf("| run time | %s for the whole command (load average %s → %s) |\n\n", pipekit.Secs(elapsed), load0, pipekit.LoadAvg())
		writeDetection(pd, o, hdr, rres, grp)
	}
	var dr strings.Builder
	if len(drv) > 0 {
		hdr := fmt.Sprintf("| | |\n|---|---|\n| command | `make bench-pipeline` → `%s` |\n| machine | %s |\n", strings.TrimSpace(o.commandLine), pipekit.Machine())
		if o.quick {
			hdr += "| note | **quick run** (`-quick`): smaller numbers, not for comparison |\n"
		}
		hdr += fmt.Sprintf("| pipeline | as above: the real handler under the host double, Azurite, the Graph double; queue `maxPollingInterval` %s |\n", o.maxPollingInt)
		hdr += fmt.Sprintf("| run time | %s for the whole command (load average %s → %s) |\n\n", pipekit.Secs(elapsed), load0, pipekit.LoadAvg())
		writeDrives(func(format string, a ...any) { fmt.Fprintf(&dr, format, a...) }, o, hdr, drv)
	}
	path := o.out
	if path != "" && !filepath.IsAbs(path) {
		path = filepath.Join(env.Root, path)
	}
	for _, sec := range []struct{ name, body string }{{"economy", b.String()}, {"detection", d.String()}, {"drives", dr.String()}} {
		if sec.name == "economy" && o.skipEconomy && o.skipLatency || sec.body == "" {
			continue
		}
		fmt.Fprintln(out)
		fmt.Fprint(out, sec.body)
		if path != "" {
			if err := pipekit.WriteSection(path, sec.name, sec.body); err != nil {
				return err
			}
			say("benchpipeline: wrote the %s sub-section of %s (%s)", sec.name, o.out, pipekit.Secs(elapsed))
		}
	}
	for _, r := range econ {
		if !r.converged {
			return errors.New("a Graph economy run did not converge: see the report")
		}
	}
	for _, r := range rres {
		if len(r.problems) > 0 || !r.converged {
			return errors.New("a resync-after-notifications run had problems: see the report")
		}
	}
	for _, r := range drv {
		if !r.converged {
			return errors.New("a drive run did not converge: see the report")
		}
	}
	if grp != nil && !grp.converged {
		return errors.New("the groups run did not converge: see the report")
	}
	if lat != nil && (lat.steady.missing > 0 || lat.sparse.missing > 0) {
		return errors.New("some latency changes never arrived: see the report")
	}
	return nil
}

func sayEconomy(say func(string, ...any), r economyResult) {
	say("  %d notifications delivered, %d worker Graph requests (%.3f per notification), %d events (%.2f per genuine change, %d suppressed), %d table requests, drained in %s%s",
		r.delivered, r.calls.Worker(), r.perNotification(), r.events, r.perGenuine(), r.worker.Suppressed, r.table.Total, pipekit.Secs(r.drain), map[bool]string{true: "", false: " — DID NOT CONVERGE"}[r.converged])
}

// hostPolling reads extensions.queues.maxPollingInterval from host.json.
func hostPolling(root string) string {
	raw, err := os.ReadFile(filepath.Join(root, "host.json"))
	if err != nil {
		return "?"
	}
	var h struct {
		Extensions struct {
			Queues struct {
				MaxPollingInterval string `json:"maxPollingInterval"`
			} `json:"queues"`
		} `json:"extensions"`
	}
	if json.Unmarshal(raw, &h) != nil || h.Extensions.Queues.MaxPollingInterval == "" {
		return "(default 1 min)"
	}
	return h.Extensions.Queues.MaxPollingInterval
}

// ---- Graph economy ----

type variant string

const (
	adjacent variant = "each user's two changes back to back"
	rounds   variant = "two rounds over all users"
	doubled  variant = "one change per user, Graph sends each notification twice"
)

type economyResult struct {
	v                  variant
	label              string // the revision of a baseline handler; empty for the working tree's
	users              int
	changes            int
	delivered          int // notifications in delivered POSTs
	posts, failedPosts int
	maxPerPost         int
	calls              pipekit.GraphCalls
	wh                 pipekit.WebhookTally
	workerInvocations  int
	events, distinct   int // events read; distinct event ids
	usersWithEvents    int
	firstEvent, drain  time.Duration
	lastEvent          time.Duration // the last event read at all (after settling)
	converged, settled bool
	startup            time.Duration
	poison             int
	missing            []string
	genuine            int                 // events that carry a state new for their user (pipekit.Redundancy)
	worker             pipekit.WorkerTally // queue worker invocations of the window
	table              pipekit.TableTally  // state-table requests of the window
}

// perGenuine is events per genuine state change.
func (r economyResult) perGenuine() float64 { return float64(r.events) / float64(max(r.genuine, 1)) }

func (r economyResult) perNotification() float64 {
	if r.delivered == 0 {
		return 0
	}
	return float64(r.calls.Worker()) / float64(r.delivered)
}

// economy runs variant v on a fresh stack, with the working tree's handler or (bl not zero) a baseline's.
func economy(ctx context.Context, env *pipekit.Env, o options, v variant, bl pipekit.Build) (economyResult, error) {
	r := economyResult{v: v, users: o.users, label: bl.Label}
	s, err := env.Start(ctx, devstack.Options{Users: o.users, Handler: bl.Handler, Root: bl.Root, Graph: func(g *fakegraph.Options) {
		g.NotificationBatchSize = o.batch
		if v == doubled {
			g.DuplicateNotifications = 1 // docs/graph-facts.md §2.5: Graph may deliver a notification more than once
		}
	}}, o.poll)
	if err != nil {
		return r, err
	}
	defer s.Close()
	r.startup = s.Started
	// Let the start-up (subscription, resync starting point) finish its requests.
	time.Sleep(300 * time.Millisecond)

	ids := make([]string, o.users)
	for i := range ids {
		ids[i] = devstack.UserID(i + 1)
	}
	t0 := time.Now()
	change := func(i, round int) {
		s.Graph.UpdateUser(devstack.UserID(i), map[string]any{"department": fmt.Sprintf("econ-%d-%d", round, i)})
		r.changes++
	}
	switch v {
	case adjacent:
		for i := 1; i <= o.users; i++ {
			change(i, 0)
			change(i, 1)
		}
	case rounds:
		for round := range 2 {
			for i := 1; i <= o.users; i++ {
				change(i, round)
			}
		}
	case doubled:
		for i := 1; i <= o.users; i++ {
			change(i, 0)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	last, err := s.AwaitState(wctx, ids)
	cancel()
	r.converged = err == nil
	if r.converged {
		r.drain = last.Sub(t0)
	} else {
		r.drain = time.Since(t0)
		r.missing = s.Missing(ids)
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	r.settled = s.Settle(sctx, 1500*time.Millisecond)
	cancel()

	for _, d := range s.Graph.Deliveries() {
		if d.Kind != "notification" || d.Time.Before(t0) {
			continue
		}
		if d.Outcome == "delivered" {
			r.posts++
			r.delivered += d.Notifications
			r.maxPerPost = max(r.maxPerPost, d.Notifications)
		} else {
			r.failedPosts++
		}
	}
	r.calls = pipekit.Calls(s.Graph.Requests(), t0)
	r.wh = s.Webhook(t0)
	for _, inv := range s.Host.Invocations() {
		if inv.Function == "queueworker" && !inv.Start.Before(t0) {
			r.workerInvocations++
		}
	}
	seen := map[string]bool{}
	usersSeen := map[string]bool{}
	evs := s.Reader.Events()
	for i, e := range evs {
		if i == 0 {
			r.firstEvent = e.ReadAt.Sub(t0)
		}
		r.lastEvent = e.ReadAt.Sub(t0)
		r.events++
		if !seen[e.Event.ID] {
			seen[e.Event.ID] = true
			r.distinct++
		}
		usersSeen[e.Event.ResourceID] = true
	}
	r.usersWithEvents = len(usersSeen)
	r.poison = s.PoisonCount(ctx)
	_, r.genuine = pipekit.Redundancy(evs, t0)
	r.worker = s.Worker(t0, time.Time{})
	r.table = s.Table.Between(t0, time.Time{})
	return r, nil
}

func writeEconomy(p func(string, ...any), o options, rs []economyResult) {
	p("#### Graph economy: %d notifications, half of them redundant\n\n", rs[0].changes)
	p("%d users each change twice on the Graph double (`UpdateUser`, a different `department` each time): %d change\n", rs[0].users, rs[0].changes)
	p("notifications, so half are redundant for a receiver that only needs each user's latest state — once with each user's two\n")
	p("changes back to back, once as two rounds over all users. A third run makes one change per user and has the double deliver every\n")
	p("notification twice (`DuplicateNotifications: 1`, Graph's own duplicates, docs/graph-facts.md §2.5): again 1,000 notifications, half of them\n")
	p("exact copies. Each run is a fresh stack. The double delivers them in POSTs of up\n")
	p("to %d (`NotificationBatchSize`) through the host front to the webhook; the worker reads users with `$batch` (20 per request).\n", o.batch)
	p("*Graph requests* are the worker's wire requests to Graph — `POST /$batch`, `GET /users…`, `GET /directory/deletedItems…` —\n")
	p("counted in the double's request log; subscription, token and delta calls are not in them (listed apart). *Drain* is from the\n")
	p("first `UpdateUser` call to the moment every user's latest state was readable in `graphchanges` (read every %s).\n", dur(o.poll))
	p("A receiver that GETs the user for each notification, as the public samples do (docs/graph-facts.md §8: `aspnetcore-webhooks-sample`,\n")
	p("`nodejs-webhooks-sample`, `java-spring-webhooks-sample`, `msgraph-sample-azurefunction-csharp` — a Graph GET per notification, inline),\n")
	p("spends **1.0** request per notification: %d requests here. That naive figure is computed, not run.\n", rs[0].changes)
	for _, r := range rs[3:] {
		p("The last column repeats the two rounds with the handler as it was before change detection (%s, built from git, with its own\n", r.label)
		p("function.json files). The change-detection rows are defined in the sub-section below.\n")
	}
	p("\n")
	p("| figure | naive: one GET per notification |")
	for _, r := range rs {
		if r.label != "" {
			p(" handler at %s (before change detection): %s |", r.label, r.v)
			continue
		}
		p(" this handler: %s |", r.v)
	}
	p("\n|---|---:|")
	for range rs {
		p("---:|")
	}
	p("\n")
	row := func(name, naive string, f func(r economyResult) string) {
		p("| %s | %s |", name, naive)
		for _, r := range rs {
			p(" %s |", f(r))
		}
		p("\n")
	}
	row("notifications delivered (POSTs; most per POST)", fmt.Sprint(rs[0].changes), func(r economyResult) string {
		s := fmt.Sprintf("%d (%d; %d)", r.delivered, r.posts, r.maxPerPost)
		if r.failedPosts > 0 {
			s += fmt.Sprintf(", %d failed attempts", r.failedPosts)
		}
		return s
	})
	row("queue messages written by the webhook", "–", func(r economyResult) string {
		return fmt.Sprintf("%d (%d notifications in %d invocations)", r.wh.Messages, r.wh.Queued, r.wh.Invocations)
	})
	row("**worker Graph requests** ($batch + users + deletedItems)", fmt.Sprint(rs[0].changes), func(r economyResult) string {
		return fmt.Sprintf("**%d** (%d + %d + %d)", r.calls.Worker(), r.calls.Batch, r.calls.UserGet+r.calls.UserList, r.calls.Deleted)
	})
	row("**Graph requests per notification**", "**1.0**", func(r economyResult) string {
		return fmt.Sprintf("**%.3f** (%.0f× fewer)", r.perNotification(), 1/max(r.perNotification(), 1e-9))
	})
	row("user reads inside `$batch` per notification (Graph's throttling counts these)", "1.0", func(r economyResult) string {
		return fmt.Sprintf("%.3f (%d)", float64(r.calls.BatchItems)/float64(max(r.delivered, 1)), r.calls.BatchItems)
	})
	row("other Graph calls in the window (subscriptions / tokens / delta)", "–", func(r economyResult) string {
		return fmt.Sprintf("%d / %d / %d", r.calls.Subscriptions, r.calls.Token, r.calls.Delta)
	})
	row("throttled (429) / failed (5xx) Graph answers", "–", func(r economyResult) string {
		return fmt.Sprintf("%d / %d", r.calls.Throttled, r.calls.Failed)
	})
	row("queue worker invocations", "–", func(r economyResult) string { return fmt.Sprint(r.workerInvocations) })
	row("events written (distinct ids) for users", "–", func(r economyResult) string {
		return fmt.Sprintf("%d (%d) for %d", r.events, r.distinct, r.usersWithEvents)
	})
	row("**events per genuine state change** (events ÷ events whose state differs from the user's previous one)", "–", func(r economyResult) string {
		return fmt.Sprintf("**%.2f** (%d ÷ %d)", r.perGenuine(), r.events, r.genuine)
	})
	row("events suppressed as carrying nothing new (worker summaries)", "–", func(r economyResult) string { return fmt.Sprint(r.worker.Suppressed) })
	row("state-table requests (by kind)", "–", func(r economyResult) string {
		return fmt.Sprintf("%d (%s)", r.table.Total, r.table.Kinds())
	})
	row("**state-table requests per event written** / per notification", "–", func(r economyResult) string {
		return fmt.Sprintf("**%.2f** / %.2f", float64(r.table.Total)/float64(max(r.events, 1)), float64(r.table.Total)/float64(max(r.delivered, 1)))
	})
	row("worker invocation p50 / p99 (host record)", "–", func(r economyResult) string {
		return pipekit.Ms(pipekit.Pct(r.worker.Durations, 50)) + " / " + pipekit.Ms(pipekit.Pct(r.worker.Durations, 99))
	})
	row("first event readable", "–", func(r economyResult) string { return pipekit.Ms(r.firstEvent) })
	row("**drain: first change → every user's latest state readable**", "–", func(r economyResult) string {
		if !r.converged {
			return fmt.Sprintf("**did not converge** in %s (%d users missing)", pipekit.Secs(r.drain), len(r.missing))
		}
		return fmt.Sprintf("**%s** (%.0f notifications/s)", pipekit.Secs(r.drain), float64(r.delivered)/r.drain.Seconds())
	})
	row("last event readable (any event, after settling)", "–", func(r economyResult) string { return pipekit.Secs(r.lastEvent) })
	row("settled afterwards (queues empty, nothing in delivery) / poison messages", "–", func(r economyResult) string {
		return fmt.Sprintf("%v / %d", r.settled, r.poison)
	})
	p("\n")
	a := rs[0]
	p("**Interpretation.** The webhook packs each POST into queue messages as full as 48 KiB allows, and the worker reads the\n")
	p("users of a message with `$batch`es of 20, so the wire cost is about one request per 20 notifications: **%.3f** requests per\n", a.perNotification())
	p("notification against 1.0 for a GET per notification (**%.0f× fewer**, %d instead of %d). ", 1/max(a.perNotification(), 1e-9), a.calls.Worker(), a.changes)
	if len(rs) > 1 {
		b := rs[1]
		p("Duplicates are coalesced only within a message: with each user's two changes back to\n")
		p("back both usually land in the same message and cost one user read (%d reads, %d events for %d users); as two rounds they sit in\n", a.calls.BatchItems, a.events, a.usersWithEvents)
		p("different messages, so each is read (%d reads) — the same number of wire requests (%d vs %d), since a `$batch` costs one request\n", b.calls.BatchItems, a.calls.Worker(), b.calls.Worker())
		p("whether it carries 10 or 20 reads, but twice the user reads against Graph's throttling budget. Of those reads %d became events\n", b.events)
		p("and the worker suppressed %d as carrying nothing new (`EVENTS_UNCHANGED=suppress`): **%.2f events per genuine state change**", b.worker.Suppressed, b.perGenuine())
		if b.perGenuine() > 1.05 {
			p(", so\nsome events still repeat a state a consumer already has (at-least-once: two workers racing on one user can both emit).\n")
		} else {
			p(" —\na read that finds the state already emitted is not written, so the repeats never reach `graphchanges`.\n")
		}
		for _, r := range rs[3:] {
			p("The same two rounds with the handler as it was before change detection (%s) wrote %d events, %.2f per genuine state change.\n", r.label, r.events, r.perGenuine())
		}
		p("Change detection costs state-table requests: %.2f per event written in the two rounds (%s), against none before.\n", float64(b.table.Total)/float64(max(b.events, 1)), b.table.Kinds())
	}
	if len(rs) > 2 {
		c := rs[2]
		p("Graph's exact duplicates arrive next to each other and are coalesced into one read and one event per user (%d reads, %d events\n", c.calls.BatchItems, c.events)
		p("for %d users): the event id is computed from the de-duplicated notification identities, so a copy delivered apart would get the\n", c.usersWithEvents)
		p("same id too.\n")
	}
	p("The drain time is bounded by the work, not by Graph: %d worker invocations on a 2-core machine shared by Azurite, the host double,\n", a.workerInvocations)
	p("the Graph double and this reader.\n\n")
}

// ---- latency ----

type sample struct {
	id                  string
	called              time.Time
	postStart, accepted time.Time // the delivered POST carrying it: start, and its answer (the webhook's 202)
	readable            time.Time
	queueWait, worker   time.Duration
	tail                time.Duration // worker invocation end → readable
	hasDelivered        bool
}

type latencyPhase struct {
	name             string
	n                int
	every            time.Duration
	samples          []sample
	lat, fromCall    []time.Duration // sorted
	graphSide        []time.Duration // UpdateUser → 202 (coalescing window + POST)
	webhookRT        []time.Duration // POST → 202 as the Graph double measured it
	queueWait        []time.Duration
	worker           []time.Duration
	tail             []time.Duration
	pairedOK         bool
	missing          int
	workerInvs, webh int
}

func (ph *latencyPhase) p(q float64) time.Duration { return pipekit.Pct(ph.lat, q) }

type latencyResult struct {
	steady, sparse *latencyPhase
	startup        time.Duration
	whDur          []time.Duration // webhook invocation durations (host record)
}

func latency(ctx context.Context, env *pipekit.Env, o options) (*latencyResult, error) {
	total := o.latN + o.sparseN
	s, err := env.Start(ctx, devstack.Options{Users: total + 5}, o.poll)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	res := &latencyResult{startup: s.Started}
	time.Sleep(300 * time.Millisecond)

	runPhase := func(name string, first, n int, every time.Duration) (*latencyPhase, error) {
		ph := &latencyPhase{name: name, n: n, every: every}
		t0 := time.Now()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for k := range n {
			if k > 0 {
				select {
				case <-tick.C:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			id := devstack.UserID(first + k)
			ph.samples = append(ph.samples, sample{id: id, called: time.Now()})
			s.Graph.UpdateUser(id, map[string]any{"jobTitle": fmt.Sprintf("latency %d", first+k)})
		}
		ids := make([]string, n)
		for k := range ids {
			ids[k] = ph.samples[k].id
		}
		wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		_, werr := s.AwaitState(wctx, ids)
		cancel()
		if werr != nil {
			ph.missing = len(s.Missing(ids))
		}
		// Give the last worker invocations time to be recorded.
		time.Sleep(200 * time.Millisecond)
		measurePhase(s, ph, t0)
		return ph, nil
	}
	if res.steady, err = runPhase("steady", 1, o.latN, o.latEvery); err != nil {
		return nil, err
	}
	// Let the host's queue poller back off to its maximum before the sparse changes.
	time.Sleep(o.sparseEvery)
	if res.sparse, err = runPhase("sparse", o.latN+1, o.sparseN, o.sparseEvery); err != nil {
		return nil, err
	}
	for _, inv := range s.Host.Invocations() {
		if inv.Function == "webhook" && inv.Status == fakehost.Succeeded {
			res.whDur = append(res.whDur, inv.Duration)
		}
	}
	res.whDur = pipekit.Sorted(res.whDur)
	return res, nil
}

// measurePhase fills in delivery, readability and the FIFO-paired worker invocation of every sample.
func measurePhase(s *pipekit.Stack, ph *latencyPhase, t0 time.Time) {
	idx := map[string]int{}
	for i, sm := range ph.samples {
		idx[strings.ToLower(sm.id)] = i
	}
	for _, d := range s.Graph.Deliveries() {
		if d.Kind != "notification" || d.Outcome != "delivered" || d.Time.Before(t0) {
			continue
		}
		var body struct {
			Value []struct {
				ResourceData struct {
					ID string `json:"id"`
				} `json:"resourceData"`
			} `json:"value"`
		}
		if json.Unmarshal(d.Body, &body) != nil {
			continue
		}
		for _, n := range body.Value {
			if i, ok := idx[strings.ToLower(n.ResourceData.ID)]; ok && !ph.samples[i].hasDelivered {
				ph.samples[i].postStart, ph.samples[i].accepted, ph.samples[i].hasDelivered = d.Time, d.Time.Add(d.Duration), true
			}
		}
	}
	for _, r := range s.Reader.Events() {
		if i, ok := idx[strings.ToLower(r.Event.ResourceID)]; ok && ph.samples[i].readable.IsZero() && s.Matches(ph.samples[i].id, r.Event) {
			ph.samples[i].readable = r.ReadAt
		}
	}
	// Worker invocations of the phase, FIFO-paired with the changes in order of acceptance: each message holds
	// one notification here, and the queue hands them out in order.
	var invs []fakehost.InvocationRecord
	for _, inv := range s.Host.Invocations() {
		if inv.Function == "queueworker" && inv.Trigger == "queue" && !inv.Start.Before(t0) {
			invs = append(invs, inv)
		}
		if inv.Function == "webhook" && !inv.Start.Before(t0) {
			ph.webh++
		}
	}
	sort.Slice(invs, func(i, j int) bool { return invs[i].Start.Before(invs[j].Start) })
	ph.workerInvs = len(invs)
	order := make([]int, 0, len(ph.samples))
	for i, sm := range ph.samples {
		if sm.hasDelivered && !sm.readable.IsZero() {
			order = append(order, i)
		}
	}
	sort.Slice(order, func(a, b int) bool { return ph.samples[order[a]].accepted.Before(ph.samples[order[b]].accepted) })
	ph.pairedOK = len(invs) == len(order)
	for k, i := range order {
		sm := &ph.samples[i]
		ph.lat = append(ph.lat, sm.readable.Sub(sm.accepted))
		ph.fromCall = append(ph.fromCall, sm.readable.Sub(sm.called))
		ph.graphSide = append(ph.graphSide, sm.accepted.Sub(sm.called))
		ph.webhookRT = append(ph.webhookRT, sm.accepted.Sub(sm.postStart))
		if ph.pairedOK {
			inv := invs[k]
			sm.queueWait = inv.Start.Sub(sm.accepted)
			sm.worker = inv.Duration
			sm.tail = sm.readable.Sub(inv.Start.Add(inv.Duration))
			// The handler writes its events itself (internal/events) before the invocation returns, so an
			// event can be read before the host records the invocation's end: tail may be negative. Only a
			// change picked up before it was accepted means the pairing is wrong.
			if sm.queueWait < -5*time.Millisecond {
				ph.pairedOK = false
			}
			ph.queueWait = append(ph.queueWait, sm.queueWait)
			ph.worker = append(ph.worker, sm.worker)
			ph.tail = append(ph.tail, sm.tail)
		}
	}
	for _, l := range []*[]time.Duration{&ph.lat, &ph.fromCall, &ph.graphSide, &ph.webhookRT, &ph.queueWait, &ph.worker, &ph.tail} {
		*l = pipekit.Sorted(*l)
	}
	ph.missing = max(ph.missing, len(ph.samples)-len(order))
}

func writeLatency(p func(string, ...any), o options, r *latencyResult) {
	st, sp := r.steady, r.sparse
	p("#### End-to-end latency: notification accepted → enriched event readable\n\n")
	p("Single-user changes (`UpdateUser`, each user once): **%d at a steady %s spacing** (%.0f/s), then **%d spaced %s apart** (the\n", st.n, dur(o.latEvery), float64(time.Second)/float64(o.latEvery), sp.n, dur(o.sparseEvery))
	p("host's queue poller has backed off to its maximum between them). **Measured from** the Graph double's delivery being answered —\n")
	p("`Deliveries()` `Time + Duration` of the POST that carried the change, i.e. the webhook's 202, by which time the host has written\n")
	p("the queue message — **to** the moment this program read the event from `graphchanges`. It reads every **%s** when the queue is\n", dur(o.poll))
	p("empty (at once again when it is not), so a figure can be up to %s + one Azurite round trip late: that bounds the resolution.\n", dur(o.poll))
	p("The column from `UpdateUser` adds the double's %s coalescing window and the POST. Nearest-rank percentiles over every change\n", dur(fakegraph.DefaultCoalesceWindow))
	p("(with %d sparse changes, their p90 and p99 are the maximum).\n\n", sp.n)
	p("| figure | steady (%d × %s) | sparse (%d × %s) |\n|---|---:|---:|\n", st.n, dur(o.latEvery), sp.n, dur(o.sparseEvery))
	both := func(name string, f func(*latencyPhase) string) { p("| %s | %s | %s |\n", name, f(st), f(sp)) }
	pc := func(ds []time.Duration, q float64) string { return pipekit.Ms(pipekit.Pct(ds, q)) }
	both("changes measured (never arrived)", func(ph *latencyPhase) string { return fmt.Sprintf("%d (%d)", len(ph.lat), ph.missing) })
	both("**p50** accepted → readable", func(ph *latencyPhase) string { return "**" + pc(ph.lat, 50) + "**" })
	both("p90", func(ph *latencyPhase) string { return pc(ph.lat, 90) })
	both("**p99**", func(ph *latencyPhase) string { return "**" + pc(ph.lat, 99) + "**" })
	both("max", func(ph *latencyPhase) string { return pc(ph.lat, 100) })
	both("p50 / p99 from the `UpdateUser` call", func(ph *latencyPhase) string { return pc(ph.fromCall, 50) + " / " + pc(ph.fromCall, 99) })
	both("p50 webhook answer time (POST → 202, as Graph sees it)", func(ph *latencyPhase) string { return pc(ph.webhookRT, 50) })
	p("\n**Where the time goes** (per change; worker invocations paired with changes in order of acceptance — one notification per\n")
	p("message here, and the queue hands messages out in order; pairing %s):\n\n", map[bool]string{true: "consistent in both phases", false: "**inconsistent** in at least one phase, so the split is not shown there"}[st.pairedOK && sp.pairedOK])
	p("| part | steady p50 | steady p99 | sparse p50 | sparse p99 |\n|---|---:|---:|---:|---:|\n")
	part := func(name string, f func(*latencyPhase) []time.Duration) {
		cell := func(ph *latencyPhase, q float64) string {
			if !ph.pairedOK {
				return "n/a"
			}
			return pc(f(ph), q)
		}
		p("| %s | %s | %s | %s | %s |\n", name, cell(st, 50), cell(st, 99), cell(sp, 50), cell(sp, 99))
	}
	part("queue wait: 202 → the host's listener starts the worker invocation", func(ph *latencyPhase) []time.Duration { return ph.queueWait })
	part("worker invocation (decode, `$batch`, change detection, event written to `graphchanges`)", func(ph *latencyPhase) []time.Duration { return ph.worker })
	part(fmt.Sprintf("invocation end → read by this program (its %s poll; negative: read before the host recorded the end)", dur(o.poll)), func(ph *latencyPhase) []time.Duration { return ph.tail })
	p("\nWebhook invocations (host record, handler + queue write): p50 %s, p99 %s over %d.\n\n", pipekit.Ms(pipekit.Pct(r.whDur, 50)), pipekit.Ms(pipekit.Pct(r.whDur, 99)), len(r.whDur))

	dom := "the queue wait"
	if st.pairedOK && pipekit.Pct(st.worker, 50) > pipekit.Pct(st.queueWait, 50) {
		dom = "the worker invocation"
	}
	p("**Interpretation.** The slowest part of the pipeline is %s. The host double polls the trigger queue the way the Functions\n", dom)
	p("queue extension does: when a poll finds nothing it waits 100 ms, then doubles the wait (±20 %% jitter) up to `maxPollingInterval`\n")
	p("(%s in host.json), and goes back to 100 ms once a poll finds messages. At a steady %.0f changes/s the poller rarely backs off\n", o.maxPollingInt, float64(time.Second)/float64(o.latEvery))
	// Without a consistent pairing a phase has no split: say so rather than print an empty percentile.
	split := func(ph *latencyPhase, ds []time.Duration, q float64) string {
		if !ph.pairedOK {
			return "n/a (pairing inconsistent)"
		}
		return pc(ds, q)
	}
	p("far, so a change waits %s at the median (p99 %s); spaced %s apart it has backed off to the maximum and a change waits\n", split(st, st.queueWait, 50), split(st, st.queueWait, 99), dur(o.sparseEvery))
	p("anywhere up to ~%s + 20 %% (median %s). The handler's own work — one worker invocation with a `$batch` to the double, the\n", o.maxPollingInt, split(sp, sp.queueWait, 50))
	wk, wph := st, "steady"
	if !st.pairedOK {
		wk, wph = sp, "sparse"
	}
	p("object-state decision and the event's queue write — takes %s at the median (%s phase).", split(wk, wk.worker, 50), wph)
	p(" Lowering `maxPollingInterval` trades storage transactions (one poll per\n")
	p("interval per instance when idle) for latency; the handler cannot do better than the host's poll. Measured on loopback: real\n")
	p("Graph delivery and Azure Storage add their own network latency.\n\n")
}

// dur formats a flag duration for prose: "20 ms", "5 s".
func dur(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%d ms", d.Milliseconds())
	}
	return strings.TrimSuffix(fmt.Sprintf("%g", d.Seconds()), ".0") + " s"
}
