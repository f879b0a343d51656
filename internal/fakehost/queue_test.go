package fakehost_test

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/azuritetest"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakehost"
)

func TestQueueOutput(t *testing.T) {
	az := azuritetest.Shared(t)
	conn := az.ConnectionString()
	out := queueName("out")
	root := newApp(t, "00:01:00", "emit")
	h, _ := startHost(t, fakehost.Options{AppRoot: root, Settings: map[string]string{
		"AzureWebJobsStorage": conn,
		"OUT_QUEUE":           strings.ToUpper(out), // the output binding lower-cases queue names
	}})

	tests := []struct {
		output string // what the handler puts in Outputs.out
		want   []string
	}{
		{`["a",{"id":1}]`, []string{"a", "{\n  \"id\": 1\n}"}},
		{`{"b":[1,2.50],"when":"2024-06-01T10:00:00.123456789Z"}`, []string{"{\n  \"b\": [\n    1,\n    2.5\n  ],\n  \"when\": \"2024-06-01T10:00:00.1234567Z\"\n}"}},
		{`"{\"id\":1005}"`, []string{"{\n  \"id\": 1005\n}"}},
		{`"[1,2]"`, []string{"1", "2"}},
		{`"aGVsbG8="`, []string{"hello"}},
		{`"order 1005"`, []string{"order 1005"}},
		{`true`, []string{"True"}},
		{`42`, []string{"42"}},
	}
	for _, tt := range tests {
		resp, body := get(t, "POST", h.URL()+"/api/emit", nil, tt.output)
		if resp.StatusCode != 201 || string(body) != "emitted" || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Fatalf("emit %s: %d %q %v", tt.output, resp.StatusCode, body, resp.Header)
		}
		raw := receive(t, conn, out, len(tt.want), 10*time.Second)
		if len(raw) != len(tt.want) {
			t.Errorf("emit %s: %d messages, want %d", tt.output, len(raw), len(tt.want))
			continue
		}
		for i, r := range raw {
			if got := unb64(t, r); got != tt.want[i] {
				t.Errorf("emit %s: message %d = %q, want %q", tt.output, i, got, tt.want[i])
			}
		}
	}

	// No res in Outputs: the caller gets 200 with {}.
	resp, body := get(t, "POST", h.URL()+"/api/emit?nores=1", nil, `"x y"`)
	if resp.StatusCode != 200 || string(body) != "{}" {
		t.Errorf("no res: %d %q", resp.StatusCode, body)
	}
	if raw := receive(t, conn, out, 1, 10*time.Second); unb64(t, raw[0]) != "x y" {
		t.Errorf("no res: message %q", raw)
	}
	// statusCode as a number string other than 201.
	if resp, _ := get(t, "POST", h.URL()+"/api/emit?status=418", nil, `null`); resp.StatusCode != 418 {
		t.Errorf("status: %d", resp.StatusCode)
	}
	if n := countQueue(t, conn, out); n != 0 {
		t.Errorf("null output wrote %d messages", n)
	}
}

func TestQueueTrigger(t *testing.T) {
	az := azuritetest.Shared(t)
	conn := az.ConnectionString()
	in, done := queueName("in"), queueName("done")
	root := newApp(t, "00:01:00", "work")
	// The trigger queue exists before the host starts polling; the poison queue is created on demand.
	enqueue(t, conn, in, b64(`{"orderId":1005,"note":"<&>"}`))
	h, _ := startHost(t, fakehost.Options{AppRoot: root, Settings: map[string]string{
		"AzureWebJobsStorage": conn, "IN_QUEUE": in, "DONE_QUEUE": done,
	}})

	type doneMsg struct {
		Data string                     `json:"data"`
		Text string                     `json:"text"`
		Meta map[string]json.RawMessage `json:"meta"`
	}
	read := func() doneMsg {
		t.Helper()
		raw := receive(t, conn, done, 1, 10*time.Second)
		var m doneMsg
		if err := json.Unmarshal([]byte(unb64(t, raw[0])), &m); err != nil {
			t.Fatalf("done message: %v", err)
		}
		return m
	}
	m := read()
	if want := `"{\"orderId\":1005,\"note\":\"<&>\"}"`; m.Data != want {
		t.Errorf("Data.msg decoded once = %s, want %s (the message JSON-encoded twice on the wire)", m.Data, want)
	}
	metaString := func(k string) string {
		var s string
		if err := json.Unmarshal(m.Meta[k], &s); err != nil {
			t.Errorf("Metadata.%s = %s: not a string", k, m.Meta[k])
		}
		return s
	}
	if got := metaString("DequeueCount"); got != "1" {
		t.Errorf("DequeueCount = %q, want \"1\"", got)
	}
	for _, k := range []string{"Id", "PopReceipt"} {
		if v := metaString(k); len(v) < 3 || v[0] != '"' || v[len(v)-1] != '"' {
			t.Errorf("Metadata.%s = %q, want it wrapped in quotes", k, v)
		}
	}
	date := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$`)
	for _, k := range []string{"ExpirationTime", "InsertionTime", "NextVisibleTime"} {
		if v := metaString(k); !date.MatchString(v) {
			t.Errorf("Metadata.%s = %q, want whole seconds with offset", k, v)
		}
	}
	if _, ok := m.Meta["QueueTrigger"]; ok {
		t.Error("Metadata.QueueTrigger was not dropped")
	}
	if _, ok := m.Meta["sys"]; !ok {
		t.Error("Metadata.sys missing")
	}

	// A failing message is retried until maxDequeueCount (3), then moved to <queue>-poison as it was.
	enqueue(t, conn, in, b64("please fail"))
	poison := receive(t, conn, in+"-poison", 1, 20*time.Second)
	if poison[0] != b64("please fail") {
		t.Errorf("poison message = %q, want the original base64 text", poison[0])
	}
	if n := len(records(h, "work", fakehost.Failed)); n != 3 {
		t.Errorf("%d failed invocations, want 3 (maxDequeueCount)", n)
	}
	if n := countQueue(t, conn, in); n != 0 {
		t.Errorf("%d messages left in %s", n, in)
	}

	// Text that is not base64 goes to the poison queue at once; the function never runs.
	before := len(h.Invocations())
	enqueue(t, conn, in, "not base64!")
	poison = receive(t, conn, in+"-poison", 1, 10*time.Second)
	if poison[0] != "not base64!" {
		t.Errorf("poison message = %q", poison[0])
	}
	if after := len(h.Invocations()); after != before {
		t.Errorf("the function ran for an invalid message (%d → %d invocations)", before, after)
	}

	// A batch is processed in parallel: the four 700 ms invocations overlap in time (read from the host's
	// own records, not from wall-clock totals, which a loaded machine stretches).
	t0 := time.Now()
	for range 4 {
		enqueue(t, conn, in, b64("sleep:700"))
	}
	receive(t, conn, done, 4, 10*time.Second)
	var batch []fakehost.InvocationRecord
	for _, r := range records(h, "work", fakehost.Succeeded) {
		if !r.Start.Before(t0) {
			batch = append(batch, r)
		}
	}
	overlapping := false
	for i := range batch {
		for j := range batch {
			a, b := batch[i], batch[j]
			if i != j && !a.Start.After(b.Start) && b.Start.Before(a.Start.Add(a.Duration)) {
				overlapping = true
			}
		}
	}
	if len(batch) != 4 || !overlapping {
		t.Errorf("%d invocations, overlapping %v: a batch must be processed in parallel", len(batch), overlapping)
	}

	// Invoke: a raw invocation applies the outputs too.
	res, err := h.Invoke(context.Background(), "work", map[string]any{"msg": fakehost.EncodeValue("manual")}, map[string]any{"DequeueCount": "1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Messages["done"]) != 1 || !strings.Contains(res.Messages["done"][0], `"text": "manual"`) {
		t.Errorf("Invoke messages = %q", res.Messages)
	}
	if m := read(); m.Text != "manual" {
		t.Errorf("manual invocation wrote %+v", m)
	}
}
