package main

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// goBench is the median of one Go benchmark over its -count runs.
type goBench struct {
	Name                   string // without the -GOMAXPROCS suffix
	Runs                   int
	NsPerOp, MinNs, MaxNs  float64
	MBPerS                 float64
	BytesPerOp, AllocsPerO float64
}

// parseGoBench reads `go test -bench` output and returns one median line per benchmark, in first-seen order.
func parseGoBench(out string) []goBench {
	type acc struct{ ns, mbs, b, allocs []float64 }
	var order []string
	accs := map[string]*acc{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		a := accs[name]
		if a == nil {
			a = &acc{}
			accs[name] = a
			order = append(order, name)
		}
		// After the iteration count come value/unit pairs.
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "ns/op":
				a.ns = append(a.ns, v)
			case "MB/s":
				a.mbs = append(a.mbs, v)
			case "B/op":
				a.b = append(a.b, v)
			case "allocs/op":
				a.allocs = append(a.allocs, v)
			}
		}
	}
	med := func(xs []float64) float64 {
		if len(xs) == 0 {
			return 0
		}
		s := slices.Clone(xs)
		slices.Sort(s)
		return percentile(s, 50)
	}
	var res []goBench
	for _, name := range order {
		a := accs[name]
		if len(a.ns) == 0 {
			continue
		}
		res = append(res, goBench{Name: name, Runs: len(a.ns), NsPerOp: med(a.ns), MinNs: slices.Min(a.ns), MaxNs: slices.Max(a.ns),
			MBPerS: med(a.mbs), BytesPerOp: med(a.b), AllocsPerO: med(a.allocs)})
	}
	return res
}

// runGoBench runs the webhook micro-benchmarks (webhook vs baseline, in-process, no HTTP) in root.
func runGoBench(ctx context.Context, root string, args []string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// profileShare is one node of the CPU breakdown of BenchmarkWebhook20.
type profileShare struct {
	Path  []string // call path below the benchmark function
	Share float64  // fraction of all samples
}

// profileWebhook profiles BenchmarkWebhook20 and breaks its CPU time down by call path.
func profileWebhook(ctx context.Context, root, tmp, benchtime string) ([]profileShare, error) {
	prof, bin := filepath.Join(tmp, "cpu.pprof"), filepath.Join(tmp, "webhook.test")
	if _, err := runGoBench(ctx, root, []string{"test", "-run", "^$", "-bench", "^BenchmarkWebhook20$", "-benchtime", benchtime,
		"-cpuprofile", prof, "-o", bin, "./webhook"}); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "go", "tool", "pprof", "-traces", bin, prof)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go tool pprof -traces: %w", err)
	}
	return breakdown(string(out), "webhook.BenchmarkWebhook20", 3, 0.03), nil
}

// breakdown reads `go tool pprof -traces` output and sums sample time by call path below the frame whose
// name ends in root, down to depth levels. Only frames of this module are expanded (so a stage's
// encoding/json internals stay inside it), and nodes under minShare of the total are dropped. Samples
// outside root (GC workers, the testing harness) are one node named "(outside the call: GC workers, runtime)".
func breakdown(traces, root string, depth int, minShare float64) []profileShare {
	const module = "github.com/graphwebhooks/graph-webhooks-go/"
	sums := map[string]float64{}
	paths := map[string][]string{}
	var total float64
	add := func(path []string, v float64) {
		k := strings.Join(path, "\x00")
		sums[k] += v
		paths[k] = path
	}
	for _, block := range strings.Split(traces, "-----------+-------------------------------------------------------") {
		lines := strings.Split(strings.TrimSpace(block), "\n")
		if len(lines) == 0 {
			continue
		}
		first := strings.Fields(lines[0])
		if len(first) < 2 {
			continue
		}
		v, ok := parsePprofDuration(first[0])
		if !ok {
			continue
		}
		// Frames, leaf first.
		frames := []string{strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(lines[0]), first[0]))}
		for _, l := range lines[1:] {
			frames = append(frames, strings.TrimSpace(l))
		}
		for i := range frames {
			frames[i] = strings.TrimSuffix(frames[i], " (inline)")
		}
		total += v
		ri := slices.IndexFunc(frames, func(f string) bool { return strings.HasSuffix(f, root) })
		if ri < 0 {
			add([]string{"(outside the call: GC workers, runtime)"}, v)
			continue
		}
		var path []string
		for i := ri - 1; i >= 0 && len(path) < depth; i-- {
			f := frames[i]
			if strings.HasPrefix(f, "testing.") {
				continue
			}
			path = append(path, strings.TrimPrefix(f, module))
			add(slices.Clone(path), v)
			if !strings.HasPrefix(f, module) {
				break
			}
		}
		if len(path) == 0 {
			add([]string{"(the benchmark loop itself)"}, v)
		}
	}
	var res []profileShare
	for k, s := range sums {
		if total > 0 && s/total >= minShare {
			res = append(res, profileShare{Path: paths[k], Share: s / total})
		}
	}
	// Depth-first order, biggest first among siblings.
	slices.SortFunc(res, func(a, b profileShare) int {
		for i := 0; i < min(len(a.Path), len(b.Path)); i++ {
			if a.Path[i] != b.Path[i] {
				sa, sb := sums[strings.Join(a.Path[:i+1], "\x00")], sums[strings.Join(b.Path[:i+1], "\x00")]
				if sa != sb {
					if sa > sb {
						return -1
					}
					return 1
				}
				return strings.Compare(a.Path[i], b.Path[i])
			}
		}
		return len(a.Path) - len(b.Path)
	})
	return res
}

// parsePprofDuration reads pprof's sample values: "10ms", "1.20s", "500us".
func parsePprofDuration(s string) (float64, bool) {
	for _, u := range []struct {
		suffix string
		scale  float64
	}{{"ms", 1e-3}, {"us", 1e-6}, {"µs", 1e-6}, {"ns", 1e-9}, {"s", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			v, err := strconv.ParseFloat(strings.TrimSuffix(s, u.suffix), 64)
			return v * u.scale, err == nil
		}
	}
	return 0, false
}
