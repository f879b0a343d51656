package fakehost_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue/v2"

	"github.com/graphwebhooks/graph-webhooks-go/internal/azuritetest"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakehost"
)

var echoHandler string // path of the built testdata/echohandler

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fakehost-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	echoHandler = filepath.Join(dir, "echohandler")
	cmd := exec.Command("go", "build", "-o", echoHandler, "./testdata/echohandler")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building testdata/echohandler:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	azuritetest.StopShared()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Function definitions for the test app; each test picks the ones it needs.
var functionJSON = map[string]string{
	"echo": `{"bindings":[
		{"type":"httpTrigger","direction":"in","name":"req","authLevel":"function","methods":["get","post"]},
		{"type":"http","direction":"out","name":"res"}]}`,
	"emit": `{"bindings":[
		{"type":"httpTrigger","direction":"in","name":"req","authLevel":"anonymous","methods":["post"]},
		{"type":"http","direction":"out","name":"res"},
		{"type":"queue","direction":"out","name":"out","queueName":"%OUT_QUEUE%","connection":"AzureWebJobsStorage"}]}`,
	"work": `{"bindings":[
		{"type":"queueTrigger","direction":"in","name":"msg","queueName":"%IN_QUEUE%","connection":"AzureWebJobsStorage"},
		{"type":"queue","direction":"out","name":"done","queueName":"%DONE_QUEUE%"}]}`,
	"tick": `{"bindings":[
		{"type":"timerTrigger","direction":"in","name":"timer","schedule":"%TICK_SCHEDULE%","runOnStartup":true},
		{"type":"queue","direction":"out","name":"log","queueName":"%TICK_QUEUE%"}],
		"retry":{"strategy":"fixedDelay","maxRetryCount":2,"delayInterval":"00:01:00"}}`,
	"hub": `{"bindings":[
		{"type":"eventHubTrigger","direction":"in","name":"events","cardinality":"many","dataType":"string","eventHubName":"%HUB_NAME%","connection":"HUB_CONN"}],
		"retry":{"strategy":"exponentialBackoff","maxRetryCount":2,"minimumInterval":"00:00:01","maximumInterval":"00:01:00"}}`,
	"hubforever": `{"bindings":[
		{"type":"eventHubTrigger","direction":"in","name":"events","cardinality":"many","dataType":"string","eventHubName":"%HUB_NAME%","connection":"HUB_CONN"}],
		"retry":{"strategy":"fixedDelay","maxRetryCount":-1,"delayInterval":"00:00:05"}}`,
	"hubnoretry": `{"bindings":[
		{"type":"eventHubTrigger","direction":"in","name":"events","cardinality":"many","eventHubName":"%HUB_NAME%","connection":"HUB_CONN","dataType":"string"}]}`,
	"hubone": `{"bindings":[
		{"type":"eventHubTrigger","direction":"in","name":"event","eventHubName":"%HUB_NAME%","connection":"HUB_CONN"}]}`,
	"hubbin": `{"bindings":[
		{"type":"eventHubTrigger","direction":"in","name":"events","cardinality":"many","dataType":"binary","eventHubName":"%HUB_NAME%","connection":"HUB_CONN"}]}`,
	"crash": `{"bindings":[{"type":"httpTrigger","direction":"in","name":"req","authLevel":"anonymous"},{"type":"http","direction":"out","name":"res"}]}`,
	"sleep": `{"bindings":[{"type":"httpTrigger","direction":"in","name":"req","authLevel":"anonymous"},{"type":"http","direction":"out","name":"res"}]}`,
	"null":  `{"bindings":[{"type":"httpTrigger","direction":"in","name":"req","authLevel":"anonymous"},{"type":"http","direction":"out","name":"res"}]}`,
	"plain": `{"bindings":[{"type":"httpTrigger","direction":"in","name":"req","authLevel":"anonymous"},{"type":"http","direction":"out","name":"res"}]}`,
}

const testHostJSON = `{
  "version": "2.0",
  // comments are allowed, as the host allows them
  "customHandler": {"description": {"defaultExecutablePath": "handler", "workingDirectory": "", "arguments": []}},
  "functionTimeout": "%s",
  "extensions": {"queues": {"maxPollingInterval": "00:00:00.200", "visibilityTimeout": "00:00:00",
    "batchSize": 4, "newBatchThreshold": 2, "maxDequeueCount": 3, "messageEncoding": "base64"},
    "eventHubs": {"maxEventBatchSize": 3, "batchCheckpointFrequency": 1}}
}`

// newApp writes an app root with host.json, the named functions and the echo handler as ./handler.
func newApp(t *testing.T, functionTimeout string, functions ...string) string {
	t.Helper()
	root := t.TempDir()
	write(t, filepath.Join(root, "host.json"), fmt.Sprintf(testHostJSON, functionTimeout))
	for _, f := range functions {
		def, ok := functionJSON[f]
		if !ok {
			t.Fatalf("no function %q", f)
		}
		write(t, filepath.Join(root, f, "function.json"), def)
	}
	if err := os.Symlink(echoHandler, filepath.Join(root, "handler")); err != nil {
		t.Fatal(err)
	}
	return root
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// testLog writes to t.Log until the test's cleanup has run, and keeps everything for assertions.
type testLog struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
	buf  bytes.Buffer
}

func newTestLog(t *testing.T) *testLog {
	l := &testLog{t: t}
	t.Cleanup(func() { l.mu.Lock(); l.done = true; l.mu.Unlock() })
	return l
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	if !l.done {
		l.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (l *testLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// startHost starts the double with test logging and closes it when the test ends.
func startHost(t *testing.T, opts fakehost.Options) (*fakehost.Host, *testLog) {
	t.Helper()
	log := newTestLog(t)
	opts.Stdout, opts.Stderr = log, log
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	if opts.FunctionKey == "" {
		opts.FunctionKey = "test-function-key"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := fakehost.Start(ctx, opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	return h, log
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var queueSeq atomic.Int64

// queueName returns a unique queue name.
func queueName(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), queueSeq.Add(1))
}

func queueClient(t *testing.T, conn, name string) *azqueue.QueueClient {
	t.Helper()
	q, err := azqueue.NewQueueClientFromConnectionString(conn, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func enqueue(t *testing.T, conn, name, text string) {
	t.Helper()
	q := queueClient(t, conn, name)
	ctx := context.Background()
	if _, err := q.Create(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := q.EnqueueMessage(ctx, text, nil); err != nil {
		t.Fatal(err)
	}
}

// receive dequeues and deletes n messages (raw text as stored) from a queue, waiting up to timeout.
func receive(t *testing.T, conn, name string, n int, timeout time.Duration) []string {
	t.Helper()
	q := queueClient(t, conn, name)
	ctx := context.Background()
	var out []string
	waitFor(t, timeout, fmt.Sprintf("%d messages in %s", n, name), func() bool {
		num := int32(32)
		resp, err := q.DequeueMessages(ctx, &azqueue.DequeueMessagesOptions{NumberOfMessages: &num})
		if err != nil {
			return false
		}
		for _, m := range resp.Messages {
			out = append(out, *m.MessageText)
			q.DeleteMessage(ctx, *m.MessageID, *m.PopReceipt, nil)
		}
		return len(out) >= n
	})
	return out
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func unb64(t *testing.T, s string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("message %q is not base64: %v", s, err)
	}
	return string(b)
}

func countQueue(t *testing.T, conn, name string) int {
	t.Helper()
	props, err := queueClient(t, conn, name).GetProperties(context.Background(), nil)
	if err != nil {
		return -1
	}
	return int(*props.ApproximateMessagesCount)
}

func records(h *fakehost.Host, function string, status fakehost.InvocationStatus) []fakehost.InvocationRecord {
	var out []fakehost.InvocationRecord
	for _, r := range h.Invocations() {
		if r.Function == function && (status == "" || r.Status == status) {
			out = append(out, r)
		}
	}
	return out
}

func get(t *testing.T, method, url string, header http.Header, body string) (*http.Response, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}
