package storagequeue

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/azuritetest"
	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
)

var queueSeq atomic.Int64

func uniqueQueue(t *testing.T) string {
	return fmt.Sprintf("q%d-%d", time.Now().UnixNano()%1e9, queueSeq.Add(1))
}

func newClient(t *testing.T) *Client {
	t.Helper()
	az := azuritetest.Start(t)
	s := config.Load(func(k string) string {
		if k == config.Storage {
			return az.ConnectionString()
		}
		return ""
	}).Storage
	c, err := New(s, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// receiveWithin polls until n messages are visible or the deadline passes.
func receiveWithin(t *testing.T, c *Client, queue string, n int, d time.Duration) []Message {
	t.Helper()
	var got []Message
	deadline := time.Now().Add(d)
	for len(got) < n && time.Now().Before(deadline) {
		ms, err := c.Receive(context.Background(), queue, 32, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ms...)
		if len(got) < n {
			time.Sleep(50 * time.Millisecond)
		}
	}
	return got
}

func TestEnqueueEncodesAndCreatesTheQueue(t *testing.T) {
	c := newClient(t)
	q := uniqueQueue(t)
	text := []byte(`{"v":1,"kind":"resync"}`)
	if err := c.Enqueue(context.Background(), q, text, 0); err != nil {
		t.Fatal(err)
	}
	got := receiveWithin(t, c, q, 1, 5*time.Second)
	if len(got) != 1 || string(got[0].Text) != string(text) || got[0].RawText != base64.StdEncoding.EncodeToString(text) {
		t.Fatalf("got %+v", got)
	}
}

func TestEnqueueDelay(t *testing.T) {
	c := newClient(t)
	q := uniqueQueue(t)
	ctx := context.Background()
	if err := c.Enqueue(ctx, q, []byte("later"), 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if ms, _ := c.Receive(ctx, q, 1, time.Minute); len(ms) != 0 {
		t.Fatal("a delayed message is visible at once")
	}
	if got := receiveWithin(t, c, q, 1, 10*time.Second); len(got) != 1 || string(got[0].Text) != "later" {
		t.Fatalf("delayed message never became visible: %+v", got)
	}
}

func TestReplayPoison(t *testing.T) {
	c := newClient(t)
	q := uniqueQueue(t)
	ctx := context.Background()
	for i := range 3 {
		// What the host leaves in -poison: the original stored text, base64.
		if err := c.Enqueue(ctx, PoisonQueue(q), []byte(fmt.Sprintf("msg %d", i)), 0); err != nil {
			t.Fatal(err)
		}
	}
	r, err := c.Replay(ctx, q, true)
	if err != nil || r.Seen != 3 || r.Moved != 0 {
		t.Fatalf("dry run = %+v %v", r, err)
	}
	r, err = c.Replay(ctx, q, false)
	if err != nil || r.Moved != 3 {
		t.Fatalf("replay = %+v %v", r, err)
	}
	got := receiveWithin(t, c, q, 3, 5*time.Second)
	var texts []string
	for _, m := range got {
		texts = append(texts, string(m.Text))
	}
	if len(got) != 3 || !strings.Contains(strings.Join(texts, ","), "msg 1") {
		t.Errorf("replayed %v", texts)
	}
	if left, _ := c.Receive(ctx, PoisonQueue(q), 32, time.Minute); len(left) != 0 {
		t.Errorf("%d messages left in poison", len(left))
	}
	if r, err := c.Replay(ctx, "never-created-queue", true); err != nil || r.Seen != 0 {
		t.Errorf("replay of a missing poison queue = %+v %v", r, err)
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := New(config.StorageSettings{}, Options{}); err == nil || !strings.Contains(err.Error(), "AzureWebJobsStorage is not set") {
		t.Errorf("err = %v", err)
	}
	_, err := New(config.StorageSettings{ConnectionString: "AccountName=x;AccountKey=SECRETKEY;Broken"}, Options{})
	if err != nil && strings.Contains(err.Error(), "SECRETKEY") {
		t.Errorf("error leaks the key: %v", err)
	}
}

func TestScrubRemovesTheSAS(t *testing.T) {
	inner := &url.Error{Op: "Post", URL: "http://127.0.0.1:1/devstoreaccount1/q/messages?sv=2024&sig=SUPERSECRETSIG", Err: errors.New("connection refused")}
	err := fmt.Errorf("enqueue to q: %w", scrub(inner))
	if strings.Contains(err.Error(), "SUPERSECRETSIG") || !strings.Contains(err.Error(), "/q/messages?%5Bredacted%5D") && !strings.Contains(err.Error(), "/q/messages?[redacted]") {
		t.Errorf("err = %v", err)
	}
	if !errors.Is(err, inner.Err) {
		t.Error("scrub must keep the error chain")
	}
}

func TestApproximateCountAndOldestInserted(t *testing.T) {
	c := newClient(t)
	ctx := context.Background()
	q := uniqueQueue(t)
	if n, err := c.ApproximateCount(ctx, q); err != nil || n != 0 {
		t.Fatalf("missing queue: %d, %v", n, err)
	}
	if _, ok, err := c.OldestInserted(ctx, q); err != nil || ok {
		t.Fatalf("missing queue: ok=%v, %v", ok, err)
	}
	before := time.Now().Add(-time.Minute) // Azurite's clock and ours may differ by a little
	for _, text := range []string{"a", "b", "c"} {
		if err := c.Enqueue(ctx, q, []byte(text), 0); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := c.ApproximateCount(ctx, q); err != nil || n != 3 {
		t.Fatalf("count %d, %v; want 3", n, err)
	}
	oldest, ok, err := c.OldestInserted(ctx, q)
	if err != nil || !ok || oldest.Before(before) || oldest.After(time.Now().Add(time.Minute)) {
		t.Fatalf("oldest %v ok=%v %v", oldest, ok, err)
	}
	// Peeking leaves the messages where they are.
	if got := receiveWithin(t, c, q, 3, 5*time.Second); len(got) != 3 {
		t.Fatalf("after peek, %d messages received; want 3", len(got))
	}
}
