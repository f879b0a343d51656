// Command bench measures the handler against a minimal baseline handler (bench/baseline) in one run and
// writes the report, docs/benchmarks.md: cold start, webhook throughput and latency, memory, binary size,
// and the webhook micro-benchmark with a CPU profile breakdown. Each figure sits beside the baseline's,
// measured in the same run on the same machine.
//
//	go run ./cmd/bench -out docs/benchmarks.md     (make bench: about two minutes)
//	go run ./cmd/bench -quick -out /tmp/bench.md   (make bench-quick: a smoke run of every step, ~20 s)
//
// Both binaries are built with the same `go build` flags and started the way the Functions host starts a
// custom handler (docs/host-protocol.md §2.1): a fresh loopback port in FUNCTIONS_CUSTOMHANDLER_PORT, the app settings
// in the environment, stdout and stderr read through pipes. The load generator runs in this process and
// speaks to them over loopback HTTP/1.1 as the host does.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	out         string
	quick       bool
	runs        int
	duration    time.Duration
	warmup      time.Duration
	concurrency []int
	poll        time.Duration
	benchCount  int
	benchTime   string
	env         []string // extra KEY=VALUE for both binaries (experiments: GOGC, GOMAXPROCS…)
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	o := options{}
	fs.StringVar(&o.out, "out", "docs/benchmarks.md", "where to write the report (relative to the module root)")
	fs.BoolVar(&o.quick, "quick", false, "a short smoke run of every step (3 cold starts, 1 s load phases); its figures are not for comparison")
	fs.IntVar(&o.runs, "runs", 20, "cold starts per binary")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured time of each load phase")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured warm-up before each load phase")
	conc := fs.String("concurrency", "16,64", "concurrent invocations of each load phase, comma-separated")
	fs.DurationVar(&o.poll, "poll", time.Millisecond, "readiness poll interval during cold starts")
	fs.IntVar(&o.benchCount, "bench-count", 5, "go test -count for the micro-benchmarks")
	fs.Func("env", "`KEY=VALUE` added to both binaries' environment, e.g. -env GOGC=400 (repeatable; shown in the report)", func(v string) error {
		if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
			return fmt.Errorf("%q is not KEY=VALUE", v)
		}
		o.env = append(o.env, v)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	o.benchTime = "1s"
	if o.quick {
		// Shrink whatever the caller did not set.
		if !set["runs"] {
			o.runs = 3
		}
		if !set["duration"] {
			o.duration = time.Second
		}
		if !set["warmup"] {
			o.warmup = 200 * time.Millisecond
		}
		if !set["bench-count"] {
			o.benchCount = 1
		}
		o.benchTime = "100ms"
	}
	for _, s := range strings.Split(*conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return o, fmt.Errorf("-concurrency: %q is not a positive number", s)
		}
		o.concurrency = append(o.concurrency, n)
	}
	if o.runs < 1 || o.duration < time.Second || o.benchCount < 1 {
		return o, errors.New("-runs and -bench-count must be at least 1, -duration at least 1s")
	}
	return o, nil
}

func run(ctx context.Context, args []string, log io.Writer) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "graph-webhooks-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	step := func(format string, a ...any) { fmt.Fprintf(log, "bench: "+format+"\n", a...) }

	r := &report{
		Quick:   o.quick,
		Command: "go run ./cmd/bench " + strings.Join(args, " "),
		Date:    time.Now().UTC(),
		Machine: readMachine(),
		Opts:    o,
	}
	r.Command = strings.TrimSpace(r.Command)
	r.LoadAvg[0] = loadAvg()
	if r.GoVersion, err = goOutput(ctx, root, "version"); err != nil {
		return err
	}
	if r.CGO, err = goOutput(ctx, root, "env", "CGO_ENABLED"); err != nil {
		return err
	}
	if r.GoExperiment, err = goOutput(ctx, root, "env", "GOEXPERIMENT"); err != nil {
		return err
	}

	// Builds.
	step("building the handler and the baseline")
	bins := map[string]string{}
	for _, b := range []struct {
		name, pkg string
		deploy    bool
	}{{"handler", ".", false}, {"baseline", "./bench/baseline", false}, {"handler-deploy", ".", true}, {"baseline-deploy", "./bench/baseline", true}} {
		out := filepath.Join(tmp, b.name)
		args := []string{"build", "-o", out, b.pkg}
		env := os.Environ()
		if b.deploy {
			// As `make build-linux` builds what is published.
			args = []string{"build", "-trimpath", "-ldflags=-s -w", "-o", out, b.pkg}
			env = append(env, "GOOS=linux", "GOARCH=amd64", "CGO_ENABLED=0")
		}
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir, cmd.Env = root, env
		if msg, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, msg)
		}
		fi, err := os.Stat(out)
		if err != nil {
			return err
		}
		bins[b.name] = out
		r.Sizes = append(r.Sizes, fi.Size())
	}
	canRunDeploy := runtime.GOOS == "linux" && runtime.GOARCH == "amd64"

	settings := handlerSettings()
	for _, kv := range o.env {
		k, v, _ := strings.Cut(kv, "=")
		settings[k] = v
	}

	// Cold start.
	step("cold start: %d runs of each binary, interleaved", o.runs)
	coldBins := []string{bins["handler"], bins["baseline"]}
	if canRunDeploy {
		coldBins = append(coldBins, bins["handler-deploy"], bins["baseline-deploy"])
	}
	cold, err := coldStarts(ctx, coldBins, settings, o.runs, o.poll)
	if err != nil {
		return fmt.Errorf("cold start: %w", err)
	}
	r.Cold = cold

	// Throughput, latency, memory.
	if err := measureLoad(ctx, r, bins["handler"], bins["baseline"], settings, o, step); err != nil {
		return err
	}

	// Micro-benchmarks and profile.
	r.GoBenchCmd = []string{"test", "-run", "^$", "-bench", ".", "-benchmem", "-count", strconv.Itoa(o.benchCount), "-benchtime", o.benchTime, "./webhook"}
	step("go %s", strings.Join(r.GoBenchCmd, " "))
	if r.GoBenchRaw, err = runGoBench(ctx, root, r.GoBenchCmd); err != nil {
		return err
	}
	r.GoBench = parseGoBench(r.GoBenchRaw)
	step("profiling BenchmarkWebhook20")
	profTime := "2s"
	if o.quick {
		profTime = "300ms"
	}
	if r.Profile, err = profileWebhook(ctx, root, tmp, profTime); err != nil {
		return err
	}

	// Report: keep what another tool wrote into the pipeline section.
	out := o.out
	if !filepath.IsAbs(out) {
		out = filepath.Join(root, out)
	}
	r.LoadAvg[1] = loadAvg()
	if old, err := os.ReadFile(out); err == nil {
		r.Pipeline = pipelineSection(string(old))
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(out, []byte(render(r)), 0o644); err != nil {
		return err
	}
	step("wrote %s", out)
	return nil
}

// measureLoad starts the handler and the baseline once each, measures idle memory, checks both answer the
// handshake and the 20-notification invocation as expected, then runs each load phase against each of them
// in turn (handler, baseline, handler, baseline…).
func measureLoad(ctx context.Context, r *report, handlerBin, baselineBin string, settings map[string]string, o options, step func(string, ...any)) error {
	env := notificationEnvelope(notificationBody(20))
	r.EnvelopeBytes = len(env)
	procs := make([]*proc, 2)
	for i, bin := range []string{handlerBin, baselineBin} {
		p, err := startProc(bin, settings)
		if err != nil {
			return err
		}
		defer p.stop()
		if err := waitReady(ctx, p); err != nil {
			return fmt.Errorf("%s: %w", bin, err)
		}
		status, body, err := invokeOnce(ctx, p, handshakeEnvelope(validationToken))
		if err == nil {
			err = checkHandshake(status, body)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", bin, err)
		}
		procs[i] = p
	}
	time.Sleep(500 * time.Millisecond) // let start-up garbage settle
	for i, p := range procs {
		rss, _, err := memStatus(p.pid())
		if err != nil {
			return err
		}
		r.IdleRSS[i] = rss
	}
	// The handler must take the full path: 20 verified notifications queued. The baseline queues none.
	for i, p := range procs {
		status, body, err := invokeOnce(ctx, p, env)
		if err == nil {
			err = checkNotifications(status, body, []int{20, 0}[i])
		}
		if err != nil {
			return fmt.Errorf("%s: %w", p.cmd.Path, err)
		}
		r.AnswerBytes[i] = len(body)
	}
	linesBefore, _ := procs[0].stdout.counts()
	for _, c := range o.concurrency {
		pair := loadPair{Concurrency: c}
		for i, p := range procs {
			step("load: %s at concurrency %d for %s (+%s warm-up)", []string{"handler", "baseline"}[i], c, o.duration, o.warmup)
			res, err := drive(ctx, p, env, c, o.warmup, o.duration)
			if err != nil {
				return fmt.Errorf("%s at concurrency %d: %w", p.cmd.Path, c, err)
			}
			pair.Results[i] = res
		}
		r.Load = append(r.Load, pair)
	}
	linesAfter, bytesOut := procs[0].stdout.counts()
	r.HandlerStdoutLines, r.HandlerStdoutBytes = linesAfter-linesBefore, bytesOut
	_, r.HandlerStderr = procs[0].stderr.counts()
	return nil
}

// moduleRoot is the directory holding go.mod, from the working directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod in the working directory or above: run from the module")
		}
		dir = parent
	}
}

func goOutput(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

// machine describes where the figures were measured.
type machine struct {
	CPU      string
	Cores    int
	MemTotal int64 // bytes
	Kernel   string
}

func readMachine() machine {
	m := machine{Cores: runtime.NumCPU(), CPU: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPU = cpuModel(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				m.MemTotal = kb << 10
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = runtime.GOOS + " " + strings.TrimSpace(string(b))
	} else {
		m.Kernel = runtime.GOOS
	}
	return m
}

// loadAvg is the 1-minute load average, or "" where /proc/loadavg does not exist.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return ""
}

func cpuModel(cpuinfo string) string {
	for _, l := range strings.Split(cpuinfo, "\n") {
		k, v, ok := strings.Cut(l, ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
