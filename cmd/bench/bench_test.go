package main

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/customhandler"
	"github.com/graphwebhooks/graph-webhooks-go/webhook"
)

func TestPercentileNearestRank(t *testing.T) {
	xs := []int64{10, 20, 30, 40, 50, 60, 70, 80, 90, 100}
	for _, tc := range []struct {
		p    float64
		want int64
	}{{0, 10}, {1, 10}, {10, 10}, {11, 20}, {50, 50}, {90, 90}, {99, 100}, {100, 100}} {
		if got := percentile(xs, tc.p); got != tc.want {
			t.Errorf("percentile(%v) = %d, want %d", tc.p, got, tc.want)
		}
	}
	if got := percentile([]int64{}, 50); got != 0 {
		t.Errorf("empty: %d", got)
	}
	if got := percentile([]float64{7}, 99); got != 7 {
		t.Errorf("one value: %v", got)
	}
}

func TestSummarizeDoesNotReorderItsInput(t *testing.T) {
	in := []time.Duration{5, 1, 4, 2, 3}
	s := summarize(in)
	if s.N != 5 || s.Min != 1 || s.Max != 5 || s.P50 != 3 || s.P10 != 1 || s.P90 != 5 {
		t.Errorf("summary %+v", s)
	}
	if in[0] != 5 {
		t.Errorf("input sorted in place: %v", in)
	}
	if (summarize(nil) != summary{}) {
		t.Error("empty sample should give a zero summary")
	}
}

func TestRates(t *testing.T) {
	r := rates([]int64{100, 300, 200}, 500*time.Millisecond, 600, 1500*time.Millisecond)
	if r.Overall != 400 || r.Median != 400 || r.Min != 200 || r.Max != 600 || r.Windows != 3 {
		t.Errorf("rates %+v", r)
	}
	if !math.IsNaN(ratio(1, 0)) || ratio(3, 2) != 1.5 {
		t.Error("ratio")
	}
}

func TestParseGoBenchTakesMedians(t *testing.T) {
	out := `goos: linux
BenchmarkWebhook20-2    	    3634	    300000 ns/op	  44.66 MB/s	  162832 B/op	     396 allocs/op
BenchmarkWebhook20-2    	    4276	    280000 ns/op	  45.57 MB/s	  162824 B/op	     396 allocs/op
BenchmarkWebhook20-2    	    4276	    290000 ns/op	  45.00 MB/s	  162828 B/op	     396 allocs/op
BenchmarkBaseline20-2   	    5770	    201627 ns/op	  63.75 MB/s	  106177 B/op	    1485 allocs/op
PASS
`
	got := parseGoBench(out)
	if len(got) != 2 || got[0].Name != "BenchmarkWebhook20" || got[1].Name != "BenchmarkBaseline20" {
		t.Fatalf("parsed %+v", got)
	}
	w := got[0]
	if w.Runs != 3 || w.NsPerOp != 290000 || w.MinNs != 280000 || w.MaxNs != 300000 || w.MBPerS != 45 || w.BytesPerOp != 162828 || w.AllocsPerO != 396 {
		t.Errorf("webhook %+v", w)
	}
}

const sampleTraces = `File: webhook.test
-----------+-------------------------------------------------------
      30ms   encoding/json.checkValid
             encoding/json.Unmarshal
             github.com/graphwebhooks/graph-webhooks-go/internal/graph.DecodeCollection
             github.com/graphwebhooks/graph-webhooks-go/webhook.(*Function).Invoke
             github.com/graphwebhooks/graph-webhooks-go/webhook.BenchmarkWebhook20
             testing.(*B).runN
-----------+-------------------------------------------------------
      20ms   encoding/json.stateInString
             encoding/json.checkValid
             encoding/json.Unmarshal
             github.com/graphwebhooks/graph-webhooks-go/webhook.BenchmarkWebhook20
             testing.(*B).runN
-----------+-------------------------------------------------------
      10ms   runtime.scanobject
             runtime.gcDrain
             runtime.gcBgMarkWorker
-----------+-------------------------------------------------------
      40ms   internal/runtime/x.y (inline)
             github.com/graphwebhooks/graph-webhooks-go/internal/customhandler.(*Request).HTTP
             github.com/graphwebhooks/graph-webhooks-go/webhook.(*Function).Invoke
             testing.(*B).Loop (inline)
             github.com/graphwebhooks/graph-webhooks-go/webhook.BenchmarkWebhook20
`

func TestBreakdown(t *testing.T) {
	got := breakdown(sampleTraces, "webhook.BenchmarkWebhook20", 3, 0.05)
	share := map[string]float64{}
	for _, p := range got {
		share[strings.Join(p.Path, " > ")] = math.Round(p.Share * 100)
	}
	want := map[string]float64{
		"webhook.(*Function).Invoke":                                                                 70,
		"webhook.(*Function).Invoke > internal/customhandler.(*Request).HTTP":                        40,
		"webhook.(*Function).Invoke > internal/customhandler.(*Request).HTTP > internal/runtime/x.y": 40,
		"webhook.(*Function).Invoke > internal/graph.DecodeCollection":                               30,
		"webhook.(*Function).Invoke > internal/graph.DecodeCollection > encoding/json.Unmarshal":     30,
		"encoding/json.Unmarshal":                 20,
		"(outside the call: GC workers, runtime)": 10,
	}
	if len(share) != len(want) {
		t.Errorf("got %v", share)
	}
	for k, v := range want {
		if share[k] != v {
			t.Errorf("%s: %v%%, want %v%%", k, share[k], v)
		}
	}
	// Depth first, biggest sibling first.
	if got[0].Path[0] != "webhook.(*Function).Invoke" || len(got[1].Path) != 2 || !strings.HasSuffix(got[1].Path[1], "HTTP") {
		t.Errorf("order: %v", got)
	}
	if st, ok := slowestStage(got); !ok || !strings.HasSuffix(st.Path[len(st.Path)-1], ".(*Request).HTTP") {
		t.Errorf("slowest stage %v", st)
	}
	if js := jsonShare(got); math.Round(js*100) != 90 {
		t.Errorf("json share %v", js)
	}
	if d, ok := parsePprofDuration("1.5s"); !ok || d != 1.5 {
		t.Errorf("1.5s: %v", d)
	}
}

func TestProcParsers(t *testing.T) {
	rss, hwm, err := parseMemStatus(strings.NewReader("Name:\thandler\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n"))
	if err != nil || rss != 10<<20 || hwm != 20<<20 {
		t.Errorf("mem %d %d %v", rss, hwm, err)
	}
	if _, _, err := parseMemStatus(strings.NewReader("Name:\tx\n")); err == nil {
		t.Error("missing fields should fail")
	}
	// Field 2 may hold spaces and parentheses; utime=250 stime=50 ticks.
	stat := "1234 (my (odd) cmd) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 100 0 0"
	if d, err := parseCPUTime(stat); err != nil || d != 3*time.Second {
		t.Errorf("cpu %v %v", d, err)
	}
	if m := cpuModel("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\n"); m != "Intel(R) Xeon(R) Processor" {
		t.Errorf("cpu model %q", m)
	}
}

// The envelopes must be what the handler's own decoder and the webhook function take: the handshake is
// echoed, and all 20 notifications pass verification with the settings the binaries get.
func TestEnvelopesDriveTheRealFunction(t *testing.T) {
	settings := handlerSettings()
	cfg := config.Load(func(k string) string { return settings[k] })
	if ps := cfg.Problems(); len(ps) > 0 {
		t.Fatalf("bench settings have problems: %v", ps)
	}
	fn := webhook.New(cfg, func() time.Time { return time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC) })
	invoke := func(env []byte) []byte {
		t.Helper()
		var req customhandler.Request
		if err := json.Unmarshal(env, &req); err != nil {
			t.Fatal(err)
		}
		resp, err := fn.Invoke(context.Background(), &req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := resp.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if err := checkHandshake(200, invoke(handshakeEnvelope(validationToken))); err != nil {
		t.Error(err)
	}
	if err := checkNotifications(200, invoke(notificationEnvelope(notificationBody(20))), 20); err != nil {
		t.Error(err)
	}
	// And the checks do catch a wrong answer.
	if checkNotifications(200, []byte(`{"Outputs":{"res":{"statusCode":202,"body":""}}}`), 20) == nil {
		t.Error("an answer without queued notifications passed")
	}
	if checkHandshake(200, []byte(`{"Outputs":{"res":{"statusCode":200,"body":"other"}}}`)) == nil {
		t.Error("a wrong echo passed")
	}
	var env struct {
		Data struct {
			Req map[string]any `json:"req"`
		}
	}
	if err := json.Unmarshal(handshakeEnvelope(validationToken), &env); err != nil {
		t.Fatal(err)
	}
	if _, ok := env.Data.Req["Body"]; ok {
		t.Error("a handshake envelope has no Body (Graph sends none)")
	}
}

func TestRenderKeepsThePipelineSection(t *testing.T) {
	r := sampleReport()
	first := render(r)
	for _, want := range []string{
		"Graph economy, end-to-end latency and reliability: measured by `make bench-pipeline` / `make reliability`",
		pipelineBegin, pipelineEnd,
		"| 16 | invocations/s | **3000** (2900–3100) | **15000** (14500–15500) | **0.20×** |",
		"| `go build` | exec → `GET /` answers | **4.00 ms** (3.00 ms–5.00 ms) | **2.00 ms** (1.00 ms–3.00 ms) | 2.00× |",
		"**The slowest part is `internal/graph.DecodeCollection`**",
		"machine | Test CPU, 2 cores, 4.0 GiB RAM",
		"`go test -run '^$' -bench . ./webhook`",
	} {
		if !strings.Contains(first, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if got := pipelineSection(first); !strings.Contains(got, "_Not measured yet._") {
		t.Errorf("placeholder section %q", got)
	}

	// Another tool fills the section; the next run keeps it.
	filled := strings.Replace(first, pipelinePlaceholder, "| Graph requests per notification | 0.05 |\n", 1)
	r.Pipeline = pipelineSection(filled)
	second := render(r)
	if !strings.Contains(second, "| Graph requests per notification | 0.05 |\n"+pipelineEnd) || strings.Contains(second, "_Not measured yet._") {
		t.Errorf("pipeline section not kept:\n%s", second[strings.Index(second, pipelineBegin):])
	}
	if pipelineSection("no markers") != "" {
		t.Error("no markers should give an empty section")
	}
}

func TestFormatting(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{{0, "0"}, {450 * time.Microsecond, "450 µs"}, {4550 * time.Microsecond, "4.55 ms"}, {18900 * time.Microsecond, "18.9 ms"}, {134 * time.Millisecond, "134 ms"}, {12 * time.Second, "12.0 s"}} {
		if got := fmtDur(tc.d); got != tc.want {
			t.Errorf("fmtDur(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
	if fmtBytes(12<<20+1<<19) != "12.5 MiB" || fmtBytes(48) != "48 B" {
		t.Error("fmtBytes")
	}
	if fmtRatio(math.NaN()) != "–" || fmtRatio(0.184) != "0.18×" || fmtRatio(10.2) != "10×" {
		t.Error("fmtRatio")
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-quick", "-runs", "5"})
	if err != nil || o.runs != 5 || o.duration != time.Second || o.benchCount != 1 || len(o.concurrency) != 2 {
		t.Errorf("quick: %+v %v", o, err)
	}
	o, err = parseFlags(nil)
	if err != nil || o.runs != 20 || o.duration != 10*time.Second || o.out != "docs/benchmarks.md" || o.concurrency[1] != 64 {
		t.Errorf("defaults: %+v %v", o, err)
	}
	if _, err := parseFlags([]string{"-concurrency", "16,x"}); err == nil {
		t.Error("bad concurrency accepted")
	}
}

func sampleReport() *report {
	ms := time.Millisecond
	cold := func(ready ...time.Duration) []coldRun {
		var rs []coldRun
		for _, d := range ready {
			rs = append(rs, coldRun{Ready: d, Handshake: d + ms/2})
		}
		return rs
	}
	lr := func(median float64, p50 time.Duration) loadResult {
		return loadResult{Concurrency: 16, Measured: 10 * time.Second, Completed: int64(median * 10), Answered: int64(median * 11),
			Latency:   summary{N: 10, P50: p50, P99: 4 * p50, Max: 8 * p50},
			Rate:      rateSummary{Overall: median, Median: median, Min: median - median/30, Max: median + median/30, Windows: 10, WindowSeconds: 1},
			ServerCPU: time.Duration(median*10) * 400 * time.Microsecond, RSS: 17 << 20, HWM: 19 << 20}
	}
	return &report{
		Command: "go run ./cmd/bench -out docs/benchmarks.md", Date: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC),
		Machine:   machine{CPU: "Test CPU", Cores: 2, MemTotal: 4 << 30, Kernel: "linux 6.1"},
		Opts:      options{runs: 5, duration: 10 * time.Second, warmup: time.Second, poll: ms, benchCount: 5},
		GoVersion: "go version go1.26.8 linux/amd64", CGO: "1",
		Sizes:         []int64{13 << 20, 8 << 20, 9 << 20, 6 << 20},
		Cold:          [][]coldRun{cold(3*ms, 4*ms, 5*ms, 4*ms, 4*ms), cold(ms, 2*ms, 3*ms, 2*ms, 2*ms)},
		EnvelopeBytes: 14000, AnswerBytes: [2]int{12000, 48}, IdleRSS: [2]int64{10 << 20, 8 << 20},
		Load:       []loadPair{{Concurrency: 16, Results: [2]loadResult{lr(3000, 4*ms), lr(15000, ms)}}},
		GoBenchCmd: []string{"test", "-run", "^$", "-bench", ".", "./webhook"},
		GoBenchRaw: "BenchmarkWebhook20-2 1 300000 ns/op\n",
		GoBench:    []goBench{{Name: "BenchmarkWebhook20", Runs: 1, NsPerOp: 300000, MinNs: 300000, MaxNs: 300000}, {Name: "BenchmarkBaseline20", Runs: 1, NsPerOp: 200000, MinNs: 200000, MaxNs: 200000}},
		Profile: []profileShare{
			{Path: []string{"webhook.(*Function).Invoke"}, Share: 0.6},
			{Path: []string{"webhook.(*Function).Invoke", "internal/graph.DecodeCollection"}, Share: 0.4},
			{Path: []string{"encoding/json.Unmarshal"}, Share: 0.2},
		},
	}
}
