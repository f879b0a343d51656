package fakehost_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/fakehost"
)

const testNamespace = "test-ns.servicebus.windows.net"

func hubSettings(extra ...string) map[string]string {
	s := map[string]string{"HUB_NAME": "graph-hub", "HUB_CONN__fullyQualifiedNamespace": testNamespace}
	for i := 0; i+1 < len(extra); i += 2 {
		s[extra[i]] = extra[i+1]
	}
	return s
}

// hubInvocation is what the echo handler's hub functions log: the Data and Metadata they received.
type hubInvocation struct {
	Data map[string]json.RawMessage
	Meta map[string]json.RawMessage
	Rec  fakehost.InvocationRecord
}

func hubInvocations(t *testing.T, h *fakehost.Host, function string) []hubInvocation {
	t.Helper()
	var out []hubInvocation
	for _, r := range records(h, function, fakehost.Succeeded) {
		if len(r.Logs) != 2 {
			t.Fatalf("invocation logs = %q", r.Logs)
		}
		inv := hubInvocation{Rec: r}
		if err := json.Unmarshal([]byte(r.Logs[0]), &inv.Data); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(r.Logs[1]), &inv.Meta); err != nil {
			t.Fatal(err)
		}
		out = append(out, inv)
	}
	return out
}

// unquote decodes a JSON string value.
func unquote(t *testing.T, raw []byte) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("%s is not a JSON string: %v", raw, err)
	}
	return s
}

// stringArray decodes a value that is a JSON string holding a JSON array of strings.
func stringArray(t *testing.T, raw []byte) []string {
	t.Helper()
	var out []string
	if err := json.Unmarshal([]byte(unquote(t, raw)), &out); err != nil {
		t.Fatalf("%s does not hold an array of strings: %v", raw, err)
	}
	return out
}

func waitHost(t *testing.T, h *fakehost.Host, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := h.WaitFor(ctx, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func events(bodies ...string) []fakehost.EventData {
	out := make([]fakehost.EventData, len(bodies))
	for i, b := range bodies {
		out[i] = fakehost.EventData{Body: []byte(b), PartitionKey: "k", Properties: map[string]any{"n": i}}
	}
	return out
}

func TestEventHubBatchesInOrderWithTheHostsPayload(t *testing.T) {
	root := newApp(t, "00:01:00", "hub")
	h, _ := startHost(t, fakehost.Options{AppRoot: root, RetryDelay: compress, Settings: hubSettings()})

	bodies := []string{`{"value":[{"n":0}]}`, `{"value":[{"n":1}]}`, `say "hi"`, `{"value":[{"n":3}]}`, `ü<&>`, `{}`, `[]`}
	pos := h.SendEvents("GRAPH-HUB", events(bodies...)...) // hub names are case-insensitive
	p := pos[0].Partition
	for i, ps := range pos {
		if ps.Partition != p || ps.SequenceNumber != int64(i) {
			t.Fatalf("positions = %+v: one partition key must keep one partition, in order", pos)
		}
	}
	waitHost(t, h, "the checkpoint after the last event", func() bool {
		seq, _ := h.Checkpoint("hub", p)
		return seq == 6
	})
	invs := hubInvocations(t, h, "hub")
	if len(invs) != 3 {
		t.Fatalf("%d invocations, want 3 (maxEventBatchSize 3: 3+3+1)", len(invs))
	}
	var got []string
	for i, inv := range invs {
		if inv.Rec.Trigger != "eventhub" {
			t.Errorf("trigger = %q", inv.Rec.Trigger)
		}
		got = append(got, stringArray(t, inv.Data["events"])...)
		seqs := stringArray2[int64](t, inv.Meta["SequenceNumberArray"])
		if want := []int64{int64(3 * i), int64(3*i + 1), int64(3*i + 2)}[:len(seqs)]; !slices.Equal(seqs, want) || len(seqs) == 0 {
			t.Errorf("batch %d: SequenceNumberArray = %v", i, seqs)
		}
		for _, k := range []string{"PartitionKeyArray", "OffsetArray", "OffsetStringArray", "EnqueuedTimeUtcArray", "PropertiesArray", "SystemPropertiesArray"} {
			if v, ok := inv.Meta[k]; !ok || v[0] != '"' {
				t.Errorf("batch %d: Metadata.%s = %s, want a JSON string holding an array", i, k, v)
			}
		}
		var pc map[string]any
		if err := json.Unmarshal(inv.Meta["PartitionContext"], &pc); err != nil {
			t.Fatalf("PartitionContext = %s: %v", inv.Meta["PartitionContext"], err)
		}
		if pc["EventHubName"] != "graph-hub" || pc["FullyQualifiedNamespace"] != testNamespace ||
			pc["PartitionId"] != fmt.Sprint(p) || pc["ConsumerGroup"] != "$Default" {
			t.Errorf("PartitionContext = %v", pc)
		}
		if _, ok := inv.Meta["sys"]; !ok {
			t.Error("no sys")
		}
		if _, ok := inv.Meta["RetryContext"]; !ok {
			t.Error("a retry policy is set: RetryContext expected")
		}
	}
	if !slices.Equal(got, bodies) {
		t.Errorf("bodies = %q, want %q", got, bodies)
	}
	keys := stringArray(t, invs[0].Meta["PartitionKeyArray"])
	if keys[0] != "k" {
		t.Errorf("PartitionKeyArray = %q", keys)
	}
	if cps := h.Checkpoints("hub"); len(cps) != 2 || cps[1-p] != -1 {
		t.Errorf("checkpoints = %v, want the untouched partition at -1", cps)
	}
}

// stringArray2 decodes a JSON string holding an array of T.
func stringArray2[T any](t *testing.T, raw []byte) []T {
	t.Helper()
	var out []T
	if err := json.Unmarshal([]byte(unquote(t, raw)), &out); err != nil {
		t.Fatalf("%s does not hold an array: %v", raw, err)
	}
	return out
}

func TestEventHubRoundRobinWithoutPartitionKey(t *testing.T) {
	root := newApp(t, "00:01:00", "hub")
	h, _ := startHost(t, fakehost.Options{AppRoot: root, EventHubPartitions: 4, Settings: hubSettings()})
	var evs []fakehost.EventData
	for i := range 8 {
		evs = append(evs, fakehost.EventData{Body: []byte(fmt.Sprint(i))})
	}
	h.SendEvents("graph-hub", evs...)
	waitHost(t, h, "every partition checkpointed", func() bool {
		return slices.Equal(h.Checkpoints("hub"), []int64{1, 1, 1, 1})
	})
}

func TestEventHubEncodings(t *testing.T) {
	body := `{"value":[{"clientState":"a\"b"}]}`
	cases := []struct {
		name, function string
		enc            fakehost.EventHubEncoding
		check          func(t *testing.T, inv hubInvocation)
	}{
		{"host many", "hub", "", func(t *testing.T, inv hubInvocation) {
			if got := stringArray(t, inv.Data["events"]); !slices.Equal(got, []string{body}) {
				t.Errorf("events = %q", got)
			}
		}},
		{"array", "hub", fakehost.EventHubEncodingArray, func(t *testing.T, inv hubInvocation) {
			var got []string
			if err := json.Unmarshal(inv.Data["events"], &got); err != nil || !slices.Equal(got, []string{body}) {
				t.Errorf("events = %s, want a plain array of strings", inv.Data["events"])
			}
			var seqs []int64
			if err := json.Unmarshal(inv.Meta["SequenceNumberArray"], &seqs); err != nil || !slices.Equal(seqs, []int64{0}) {
				t.Errorf("SequenceNumberArray = %s, want a plain array", inv.Meta["SequenceNumberArray"])
			}
		}},
		{"quoted elements", "hub", fakehost.EventHubEncodingQuotedElements, func(t *testing.T, inv hubInvocation) {
			got := stringArray(t, inv.Data["events"])
			if len(got) != 1 || unquote(t, []byte(got[0])) != body {
				t.Errorf("events = %q, want each body quoted twice", got)
			}
		}},
		{"one", "hubone", "", func(t *testing.T, inv hubInvocation) {
			if got := unquote(t, []byte(unquote(t, inv.Data["event"]))); got != body {
				t.Errorf("event = %s, want the body JSON-encoded twice", inv.Data["event"])
			}
			if got := unquote(t, inv.Meta["SequenceNumber"]); got != "0" {
				t.Errorf("SequenceNumber = %s", inv.Meta["SequenceNumber"])
			}
			if got := unquote(t, inv.Meta["PartitionKey"]); got != `"k"` {
				t.Errorf("PartitionKey = %s, want a JSON-quoted string", inv.Meta["PartitionKey"])
			}
		}},
		{"binary many", "hubbin", "", func(t *testing.T, inv hubInvocation) {
			got := stringArray(t, inv.Data["events"])
			if len(got) != 1 {
				t.Fatalf("events = %q", got)
			}
			b, err := base64.StdEncoding.DecodeString(got[0])
			if err != nil || string(b) != body {
				t.Errorf("events[0] = %q, want base64 of the body", got[0])
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := newApp(t, "00:01:00", c.function)
			h, _ := startHost(t, fakehost.Options{AppRoot: root, EventHubEncoding: c.enc, Settings: hubSettings()})
			pos := h.SendEvents("graph-hub", events(body)...)
			waitHost(t, h, "the batch", func() bool {
				seq, _ := h.Checkpoint(c.function, pos[0].Partition)
				return seq == 0
			})
			invs := hubInvocations(t, h, c.function)
			if len(invs) != 1 {
				t.Fatalf("%d invocations", len(invs))
			}
			c.check(t, invs[0])
		})
	}
}

func TestEventHubRetryPolicyHoldsTheCheckpoint(t *testing.T) {
	root := newApp(t, "00:01:00", "hub")
	h, _ := startHost(t, fakehost.Options{AppRoot: root, RetryDelay: compress, Settings: hubSettings("HUB_FAILS", "2")})
	pos := h.SendEvents("graph-hub", events("please fail", "ok")...)
	p := pos[0].Partition
	waitHost(t, h, "the checkpoint", func() bool {
		seq, _ := h.Checkpoint("hub", p)
		return seq == 1
	})
	recs := records(h, "hub", "")
	if len(recs) != 3 || recs[0].Status != fakehost.Failed || recs[1].Status != fakehost.Failed || recs[2].Status != fakehost.Succeeded {
		t.Fatalf("records = %+v, want two failures then a success", recs)
	}
	for i, r := range recs {
		if r.RetryCount != i {
			t.Errorf("attempt %d has RetryCount %d", i, r.RetryCount)
		}
	}
	// The retry carried the same batch.
	invs := hubInvocations(t, h, "hub")
	if got := stringArray(t, invs[0].Data["events"]); !slices.Equal(got, []string{"please fail", "ok"}) {
		t.Errorf("retried batch = %q", got)
	}
}

func TestEventHubCheckpointMovesAfterAFailure(t *testing.T) {
	// Without a retry policy, and once a policy's retries are spent, the batch is lost: the checkpoint moves.
	for _, c := range []struct{ function, fails string }{{"hubnoretry", "-1"}, {"hub", "-1"}} {
		t.Run(c.function, func(t *testing.T) {
			root := newApp(t, "00:01:00", c.function)
			h, log := startHost(t, fakehost.Options{AppRoot: root, RetryDelay: compress, Settings: hubSettings("HUB_FAILS", c.fails)})
			pos := h.SendEvents("graph-hub", events("fail", "fail", "fail", "next")...)
			p := pos[0].Partition
			waitHost(t, h, "the checkpoint after the second batch", func() bool {
				seq, _ := h.Checkpoint(c.function, p)
				return seq == 3
			})
			failed := len(records(h, c.function, fakehost.Failed))
			want := 1
			if c.function == "hub" {
				want = 3 // maxRetryCount 2
			}
			if failed != want {
				t.Errorf("%d failed attempts, want %d", failed, want)
			}
			invs := hubInvocations(t, h, c.function)
			if len(invs) != 1 || !slices.Equal(stringArray(t, invs[0].Data["events"]), []string{"next"}) {
				t.Errorf("the batch after the failed one was not delivered alone")
			}
			if !strings.Contains(log.String(), "the checkpoint moves past it") {
				t.Error("no warning about the lost batch")
			}
		})
	}
}

func TestEventHubUnlimitedRetriesNeverSkip(t *testing.T) {
	root := newApp(t, "00:01:00", "hubforever")
	h, _ := startHost(t, fakehost.Options{AppRoot: root, RetryDelay: compress, Settings: hubSettings("HUB_FAILS", "-1")})
	pos := h.SendEvents("graph-hub", events("fail", "next")...)
	waitHost(t, h, "many attempts", func() bool { return len(records(h, "hubforever", fakehost.Failed)) >= 6 })
	if seq, _ := h.Checkpoint("hubforever", pos[0].Partition); seq != -1 {
		t.Errorf("checkpoint = %d while maxRetryCount -1 retries the first batch", seq)
	}
	if n := len(records(h, "hubforever", fakehost.Succeeded)); n != 0 {
		t.Errorf("%d successful invocations: a later batch overtook the failing one", n)
	}
	recs := records(h, "hubforever", fakehost.Failed)
	if recs[5].RetryCount != 5 {
		t.Errorf("RetryCount of the sixth attempt = %d", recs[5].RetryCount)
	}
}

func TestEventHubDisabledFunction(t *testing.T) {
	root := newApp(t, "00:01:00", "hub", "hubone")
	h, _ := startHost(t, fakehost.Options{AppRoot: root, Settings: hubSettings("AzureWebJobs.hub.Disabled", "true")})
	if cps := h.Checkpoints("hub"); cps != nil {
		t.Errorf("a disabled function has checkpoints %v", cps)
	}
	if slices.Contains(h.Functions(), "hub") {
		t.Error("disabled function loaded")
	}
	pos := h.SendEvents("graph-hub", events("x")...)
	// The other function on the same hub reads it; the disabled one never runs.
	waitHost(t, h, "hubone's checkpoint", func() bool {
		seq, _ := h.Checkpoint("hubone", pos[0].Partition)
		return seq == 0
	})
	if n := len(records(h, "hub", "")); n != 0 {
		t.Errorf("disabled function invoked %d times", n)
	}
}

func TestEventHubConfigurationErrors(t *testing.T) {
	cases := []struct {
		name     string
		settings map[string]string
		hostJSON string
		want     string
	}{
		{"no connection", map[string]string{"HUB_NAME": "h"}, "", "HUB_CONN__fullyQualifiedNamespace"},
		{"unresolved hub name", map[string]string{"HUB_CONN": "Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=v"}, "", "HUB_NAME"},
		{"bad batch size", hubSettings(), `{"version":"2.0","customHandler":{"description":{"defaultExecutablePath":"handler"}},"extensions":{"eventHubs":{"maxEventBatchSize":0}}}`, "maxEventBatchSize"},
		{"fromEnqueuedTime", hubSettings(), `{"version":"2.0","customHandler":{"description":{"defaultExecutablePath":"handler"}},"extensions":{"eventHubs":{"initialOffsetOptions":{"type":"fromEnqueuedTime"}}}}`, "fromEnqueuedTime"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := newApp(t, "00:01:00", "hub")
			if c.hostJSON != "" {
				if err := os.WriteFile(filepath.Join(root, "host.json"), []byte(c.hostJSON), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			h, err := fakehost.Start(ctx, fakehost.Options{AppRoot: root, Settings: c.settings, Logger: slog.New(slog.NewTextHandler(newTestLog(t), nil))})
			if err == nil {
				h.Close()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not name %s", err, c.want)
			}
		})
	}
}

func TestEventHubHandlerKilledMidBatchIsRetried(t *testing.T) {
	root := newApp(t, "00:01:00", "hub")
	h, log := startHost(t, fakehost.Options{AppRoot: root, RetryDelay: compress, Settings: hubSettings()})
	pos := h.SendEvents("graph-hub", events("sleep, then answer")...)
	waitFor(t, 10*time.Second, "the invocation to start", func() bool { return strings.Contains(log.String(), "Executing function") })
	if err := h.KillHandler(); err != nil {
		t.Fatal(err)
	}
	waitHost(t, h, "the batch to be done", func() bool {
		seq, _ := h.Checkpoint("hub", pos[0].Partition)
		return seq == 0
	})
	// The kill fails the running attempt; on a loaded machine a retry can also reach the dying process
	// before the restart, and fail as well. What must hold: failures only, then one success, each a retry
	// of the one before.
	recs := records(h, "hub", "")
	ok := len(recs) >= 2 && recs[len(recs)-1].Status == fakehost.Succeeded
	for i, r := range recs {
		ok = ok && r.RetryCount == i && (i == len(recs)-1 || r.Status == fakehost.Failed)
	}
	if !ok {
		t.Fatalf("records = %+v, want the killed attempt then a successful retry of the same batch", recs)
	}
	if got := stringArray(t, hubInvocations(t, h, "hub")[0].Data["events"]); !slices.Equal(got, []string{"sleep, then answer"}) {
		t.Errorf("retried batch = %q", got)
	}
}
