package queueworker

import (
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/customhandler"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

func lifecycleEnv(t *testing.T, resync bool) (*env, *fakeSubs, *fakeResync) {
	subs, rs := &fakeSubs{}, &fakeResync{}
	e := newEnv(t, withDeps(func(d *Deps) {
		d.Subscriptions = subs
		if resync {
			d.Resync = rs
		}
	}))
	return e, subs, rs
}

func lifecycleMsg(tokens []string, events ...string) *message.Message {
	m := msg(message.KindLifecycle)
	for _, ev := range events {
		m.Notifications = append(m.Notifications, lifecycleNote(ev))
	}
	m.ValidationTokens = tokens
	return m
}

func TestLifecycleReauthorizationCoalesced(t *testing.T) {
	e, subs, rs := lifecycleEnv(t, true)
	tok := e.fg.ValidationToken("")
	r := e.invokeMessage(lifecycleMsg([]string{tok, e.fg.ValidationTokenWith(fakegraph.ValidationTokenOptions{Version: "2.0"})},
		string(graph.ReauthorizationRequired), string(graph.ReauthorizationRequired), string(graph.ReauthorizationRequired)))
	if n := subs.renew.Load(); n != 1 {
		t.Errorf("RenewNow called %d times, want once for 3 notifications", n)
	}
	// Delivery may have paused before the reauthorization: one resync recovers what it missed.
	if subs.recreate.Load() != 0 || !slices.Equal(rs.calls(), []string{"users:" + string(graph.ReauthorizationRequired)}) {
		t.Errorf("recreate %d, resync %v", subs.recreate.Load(), rs.calls())
	}
	if len(r.events) != 0 || !strings.Contains(r.logs[0], "renewed") {
		t.Errorf("result %+v", r)
	}
	if e.logs.contains(tok) || e.logs.contains(strings.Split(tok, ".")[2]) {
		t.Error("a token reached the log")
	}
}

func TestLifecycleRemovedRecreatesAndResyncs(t *testing.T) {
	e, subs, rs := lifecycleEnv(t, true)
	e.invokeMessage(lifecycleMsg(nil, string(graph.SubscriptionRemoved), string(graph.ReauthorizationRequired), string(graph.SubscriptionRemoved)))
	if subs.recreate.Load() != 1 || subs.renew.Load() != 0 {
		t.Errorf("recreate %d renew %d, want 1 and 0 (a new subscription needs no reauthorization)", subs.recreate.Load(), subs.renew.Load())
	}
	if got := rs.calls(); !slices.Equal(got, []string{"users:" + string(graph.SubscriptionRemoved)}) {
		t.Errorf("resync calls %v, want one for the removal (which covers the reauthorization)", got)
	}

	// missed and removed together: one resync naming both.
	e.invokeMessage(lifecycleMsg(nil, string(graph.Missed), string(graph.SubscriptionRemoved), string(graph.Missed)))
	if got := rs.calls(); len(got) != 2 || got[1] != "users:"+string(graph.Missed)+","+string(graph.SubscriptionRemoved) {
		t.Errorf("resync calls %v", got)
	}
	if !e.logs.contains("missed change notifications") {
		t.Error("missed was not warned about")
	}
}

func TestLifecycleMissedWithoutResync(t *testing.T) {
	e, subs, _ := lifecycleEnv(t, false)
	r := e.invokeMessage(lifecycleMsg(nil, string(graph.Missed), "somethingNew"))
	if subs.renew.Load()+subs.recreate.Load() != 0 || len(r.logs) == 0 {
		t.Errorf("result %+v", r)
	}
	for _, want := range []string{"level=WARN msg=\"Graph reports missed", "no resync is wired", "ignored lifecycle notifications"} {
		if !e.logs.contains(want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

func lifecycleNoteFor(sub, event string) graph.ChangeNotification {
	raw, _ := json.Marshal(map[string]string{"subscriptionId": sub, "tenantId": testTenant, "lifecycleEvent": event,
		"subscriptionExpirationDateTime": "2026-12-20T10:00:00+00:00"})
	var n graph.ChangeNotification
	if err := json.Unmarshal(raw, &n); err != nil {
		panic(err)
	}
	return n
}

// Only a subscription id of Graph's grammar is judged; only one Graph lists as this app's causes anything;
// the rest are dropped and counted, and one call judges every id of a message.
func TestLifecycleActsOnlyOnThisAppsSubscriptions(t *testing.T) {
	e, subs, rs := lifecycleEnv(t, true)
	subs.notListed = func(id string) bool { return id != testSub }
	m := lifecycleMsg(nil)
	m.Notifications = []graph.ChangeNotification{
		lifecycleNoteFor("not-a-guid\nERROR status: forged", string(graph.ReauthorizationRequired)),
		lifecycleNoteFor("../subscriptions", string(graph.SubscriptionRemoved)),
	}
	for i := range 17 {
		m.Notifications = append(m.Notifications, lifecycleNoteFor(fmt.Sprintf("0badf00d-0000-4000-8000-%012d", i), string(graph.SubscriptionRemoved)))
	}
	m.Notifications = append(m.Notifications, lifecycleNoteFor(testSub, string(graph.ReauthorizationRequired)))
	r := e.invokeMessage(m)
	if n := subs.calls.Load(); n != 1 {
		t.Errorf("%d Lifecycle calls for one message, want 1", n)
	}
	if subs.renew.Load() != 1 || subs.recreate.Load() != 0 {
		t.Errorf("renew %d recreate %d: only this app's subscription may be acted on", subs.renew.Load(), subs.recreate.Load())
	}
	if got := rs.calls(); !slices.Equal(got, []string{"users:" + string(graph.ReauthorizationRequired)}) {
		t.Errorf("resync calls %v", got)
	}
	if len(r.logs) == 0 || !strings.Contains(r.logs[0], "2 ignored, 17 for subscriptions not this app's") {
		t.Errorf("logs %q", r.logs)
	}
	if !e.logs.contains("2 for a subscription id that is not a GUID") || e.logs.contains("\nERROR status") {
		t.Errorf("log:\n%s", e.logs)
	}
}

// Lifecycle calls go through the process's Graph gate: closed, the message waits without a call; a
// throttled list closes it.
func TestLifecycleThroughTheGate(t *testing.T) {
	e, subs, _ := lifecycleEnv(t, true)
	subs.listErr = &graph.Error{Op: "list subscriptions", Status: 429, Kind: graph.KindThrottled, RetryAfter: 40 * time.Second}
	e.invokeMessage(lifecycleMsg(nil, string(graph.ReauthorizationRequired)))
	if subs.calls.Load() != 1 || e.f.d.Gate.Remaining(time.Now()) < 30*time.Second {
		t.Fatalf("calls %d, gate %s: a throttled list must close the gate", subs.calls.Load(), e.f.d.Gate.Remaining(time.Now()))
	}
	subs.listErr = nil
	e.invokeMessage(lifecycleMsg(nil, string(graph.ReauthorizationRequired)))
	if subs.calls.Load() != 1 {
		t.Errorf("%d calls: nothing may be sent while the gate is closed", subs.calls.Load())
	}
	out := e.enqueuedTo(e.queue)
	if len(out) != 2 || out[1].delay < 30*time.Second {
		t.Errorf("re-enqueued %+v, want both messages back, the second after the gate", out)
	}
}

// A message an earlier eventhub function wrote for a batch too large to read still asks for a resync of
// every collection, and acts on no subscription.
func TestLifecycleLegacyBatchTooLargeResyncs(t *testing.T) {
	e, subs, rs := lifecycleEnv(t, true)
	m := msg(message.KindLifecycle, graph.ChangeNotification{LifecycleEvent: string(graph.Missed), SubscriptionID: "eventhub-batch-too-large"})
	e.invokeMessage(m)
	if subs.calls.Load() != 0 || !slices.Equal(rs.calls(), []string{"users:eventhub batch too large"}) {
		t.Errorf("calls %d, resync %v", subs.calls.Load(), rs.calls())
	}
}

// The eventhub function's request for a resync is a message of its own kind.
func TestResyncRequestResyncsEveryCollection(t *testing.T) {
	e, subs, rs := lifecycleEnv(t, true)
	m := &message.Message{V: message.Version, Kind: message.KindResyncRequest, Reason: "eventhub batch too large", FirstSeen: firstSeen}
	r := e.invokeMessage(m)
	if subs.calls.Load() != 0 || !slices.Equal(rs.calls(), []string{"users:eventhub batch too large"}) || len(r.logs) == 0 {
		t.Errorf("calls %d, resync %v, logs %q", subs.calls.Load(), rs.calls(), r.logs)
	}
}

func TestLifecycleTokens(t *testing.T) {
	e, subs, _ := lifecycleEnv(t, true)
	good := e.fg.ValidationToken("")
	forged := map[string]struct {
		token string
		check string
	}{
		"bad signature": {e.fg.ValidationTokenWith(fakegraph.ValidationTokenOptions{BadSignature: true}), "signature"},
		"wrong aud":     {e.fg.ValidationTokenWith(fakegraph.ValidationTokenOptions{Audience: "99999999-0000-4000-8000-000000000000"}), "aud"},
		"wrong azp":     {e.fg.ValidationTokenWith(fakegraph.ValidationTokenOptions{Version: "2.0", Caller: testClient}), "caller"},
		"expired":       {e.fg.ValidationTokenWith(fakegraph.ValidationTokenOptions{Expired: true}), "exp"},
	}
	for name, tt := range forged {
		t.Run(name, func(t *testing.T) {
			r := e.invokeMessage(lifecycleMsg([]string{good, tt.token}, string(graph.ReauthorizationRequired)))
			if n := subs.renew.Load(); n != 0 {
				t.Fatalf("acted on a message with a forged token (%d renewals)", n)
			}
			if len(r.logs) == 0 || !strings.Contains(r.logs[0], "dropped") || !strings.Contains(r.logs[0], tt.check) {
				t.Errorf("logs %q, want a drop naming the %s check", r.logs, tt.check)
			}
			if e.logs.contains(tt.token) || !e.logs.contains("check="+tt.check) {
				t.Errorf("warning names the check %s and not the token? log:\n%s", tt.check, e.logs)
			}
		})
	}
	if len(e.enqueuedTo(e.queue))+len(e.enqueuedTo(e.poison)) != 0 {
		t.Error("a dropped message was re-enqueued or poisoned")
	}
	e.invokeMessage(lifecycleMsg([]string{good}, string(graph.ReauthorizationRequired)))
	if subs.renew.Load() != 1 {
		t.Error("a valid token was not accepted")
	}
}

// Tokens vouch for a message when it is acted on, not when it says it was first seen: a message whose
// tokens were good at its firstSeen but expired while it waited is dropped, not acted on.
func TestLifecycleTokensJudgedAtProcessingTime(t *testing.T) {
	subs := &fakeSubs{}
	later := 3 * time.Hour // the tokens live an hour, and the skew is minutes
	e := newEnv(t, withDeps(func(d *Deps) {
		d.Subscriptions = subs
		d.Now = func() time.Time { return time.Now().Add(later) }
	}))
	m := lifecycleMsg([]string{e.fg.ValidationToken("")}, string(graph.ReauthorizationRequired))
	m.FirstSeen = time.Now().UTC().Truncate(time.Second) // the tokens were good then
	r := e.invokeMessage(m)
	if n := subs.renew.Load(); n != 0 {
		t.Fatalf("acted on tokens that had expired when the message was processed (%d renewals)", n)
	}
	if len(r.logs) == 0 || !strings.Contains(r.logs[0], "dropped") || !strings.Contains(r.logs[0], "exp") {
		t.Errorf("logs %q, want a drop naming the exp check", r.logs)
	}
}

type brokenKeys struct{}

func (brokenKeys) Key(context.Context, string) (*rsa.PublicKey, error) {
	return nil, errors.New("keys endpoint unreachable")
}

func TestLifecycleKeysUnavailable(t *testing.T) {
	subs := &fakeSubs{}
	e := newEnv(t, withDeps(func(d *Deps) { d.Subscriptions = subs; d.Keys = brokenKeys{} }))
	tok := e.fg.ValidationToken("")
	e.invokeMessage(lifecycleMsg([]string{tok}, string(graph.ReauthorizationRequired)))
	out := e.enqueuedTo(e.queue)
	if subs.renew.Load() != 0 || len(out) != 1 {
		t.Fatalf("renew %d, re-enqueued %d", subs.renew.Load(), len(out))
	}
	m, _ := message.Decode(out[0].text)
	if m.Attempt != 1 || len(m.ValidationTokens) != 1 {
		t.Errorf("re-enqueued %+v: the tokens must stay, unchecked", m)
	}
}

func TestLifecycleFailures(t *testing.T) {
	t.Run("transient is retried", func(t *testing.T) {
		e, subs, _ := lifecycleEnv(t, true)
		subs.renewErr = &graph.Error{Op: "renew subscription", Status: 503, Kind: graph.KindTransient}
		r := e.invokeMessage(lifecycleMsg([]string{e.fg.ValidationToken("")}, string(graph.ReauthorizationRequired), string(graph.ReauthorizationRequired)))
		if len(r.logs) < 2 || !strings.Contains(r.logs[1], "re-enqueued 2") {
			t.Fatalf("logs %q", r.logs)
		}
		subs.renewErr = nil
		_, delivered := e.drain(20 * time.Second)
		if len(delivered) != 1 || delivered[0].Attempt != 1 || len(delivered[0].ValidationTokens) != 1 {
			t.Errorf("re-delivered %+v (a retried message keeps its tokens, to be judged again)", delivered)
		}
		if n := subs.renew.Load(); n != 2 {
			t.Errorf("RenewNow called %d times, want 2 (one failure, one retry)", n)
		}
	})
	t.Run("throttled resync after recreate", func(t *testing.T) {
		e, subs, rs := lifecycleEnv(t, true)
		rs.err = &graph.Error{Op: "x", Status: 429, Kind: graph.KindThrottled, RetryAfter: 3 * time.Second}
		e.invokeMessage(lifecycleMsg(nil, string(graph.SubscriptionRemoved)))
		out := e.enqueuedTo(e.queue)
		if subs.recreate.Load() != 1 || len(out) != 1 || out[0].delay < 3*time.Second {
			t.Errorf("recreate %d, re-enqueued %+v", subs.recreate.Load(), out)
		}
	})
	t.Run("other errors fail the invocation", func(t *testing.T) {
		e, subs, _ := lifecycleEnv(t, true)
		subs.recreateErr = &graph.Error{Op: "create subscription", Status: 403, Kind: graph.KindForbidden, Message: "Insufficient privileges"}
		_, err := e.invoke(hostRequest(t, hostText(t, lifecycleMsg(nil, string(graph.SubscriptionRemoved))), 1))
		if err == nil || !strings.Contains(err.Error(), "recreating subscription") || !strings.Contains(err.Error(), "403") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("no subscription manager", func(t *testing.T) {
		e := newEnv(t)
		if _, err := e.invoke(hostRequest(t, hostText(t, lifecycleMsg(nil, string(graph.ReauthorizationRequired))), 1)); err == nil {
			t.Error("succeeded without a subscription manager")
		}
	})
}

// ---- golden host payloads ----

func loadRequest(t *testing.T, name string) *customhandler.Request {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var req customhandler.Request
	if err := json.Unmarshal(b, &req); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return &req
}

const (
	goldenUser1 = "6e1f0000-0000-4000-8000-000000000001"
	goldenUser2 = "6e1f0000-0000-4000-8000-000000000002"
	goldenUser3 = "6e1f0000-0000-4000-8000-000000000003"
)

func TestGoldenPayloads(t *testing.T) {
	e, subs, _ := lifecycleEnv(t, true)
	for _, id := range []string{goldenUser1, goldenUser2} {
		e.fg.AddUser(fakegraph.User{ID: id, Props: userProps(id)})
	}
	host := e.mustInvoke(loadRequest(t, "queue-host.json"))
	once := e.mustInvoke(loadRequest(t, "queue-once.json"))
	for name, r := range map[string]result{"host (encoded twice)": host, "third-party (encoded once)": once} {
		got := byResource(r.events)
		if len(r.events) != 3 || got[goldenUser1].ChangeType != "updated" || got[goldenUser2].ChangeType != "updated" ||
			got[goldenUser3].ChangeType != "deleted" || got[goldenUser1].Object["displayName"] != "User 6e1f0000" {
			t.Errorf("%s: events %+v", name, r.events)
		}
	}
	for i := range host.events {
		if host.events[i].ID != once.events[i].ID {
			t.Errorf("event %d: id %s (host) ≠ %s (once)", i, host.events[i].ID, once.events[i].ID)
		}
	}
	if n := e.fg.Count("POST", "/v1.0/$batch"); n != 2 {
		t.Errorf("%d batches for two deliveries, want 2", n)
	}
	if want := "message 4d5c1c8e-62a5-4b6f-9d56-1f3a2b0c9e11 (dequeue 1)"; !strings.Contains(host.logs[0], want) || !strings.Contains(once.logs[0], want) {
		t.Errorf("logs %q, %q: want the queue metadata decoded (DequeueCount \"1\", quoted Id): %q", host.logs, once.logs, want)
	}

	e.mustInvoke(loadRequest(t, "lifecycle-host.json"))
	if subs.renew.Load() != 1 {
		t.Errorf("lifecycle golden: %d renewals, want 1", subs.renew.Load())
	}

	r := e.mustInvoke(loadRequest(t, "garbage-host.json"))
	if !strings.Contains(strings.Join(r.logs, ""), "poison") {
		t.Errorf("garbage: %q", r.logs)
	}
	p, ok := e.receive(e.poison, 5*time.Second)
	if !ok || !strings.HasPrefix(string(p.Text), `{"v":1,"kind":"notifications","notifications":[{`) {
		t.Errorf("garbage poisoned as %q", p.Text)
	}
}

// TestRegisteredRoute drives the function through the handler's HTTP server as the host does.
func TestRegisteredRoute(t *testing.T) {
	e := newEnv(t)
	for _, id := range []string{goldenUser1, goldenUser2} {
		e.fg.AddUser(fakegraph.User{ID: id, Props: userProps(id)})
	}
	srv := customhandler.NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)))
	e.f.Register(srv)
	hs := httptest.NewServer(srv)
	defer hs.Close()
	body, _ := os.ReadFile(filepath.Join("testdata", "queue-host.json"))
	req, _ := http.NewRequestWithContext(e.ctx, http.MethodPost, hs.URL+"/"+Name, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Azure-Functions-InvocationId", "0f0e0d0c-0000-4000-8000-000000000001")
	resp, err := hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	var got struct {
		Outputs map[string]json.RawMessage
		Logs    []string
	}
	if err := json.Unmarshal(b, &got); err != nil || len(got.Outputs) != 0 || len(got.Logs) == 0 {
		t.Errorf("answer %s (%v)", b, err)
	}
	if evs := e.events.take(); len(evs) != 3 {
		t.Errorf("%d events written, want 3", len(evs))
	}
}

// A renewal whose resync could not be requested is retried, and the retry is not refused by the rationing
// the renewal took: the resync is requested then.
func TestLifecycleResyncRetriedAfterRationedRenewal(t *testing.T) {
	e, subs, rs := lifecycleEnv(t, true)
	subs.ration = true
	rs.mu.Lock()
	rs.err = errors.New("queue unavailable")
	rs.mu.Unlock()
	r := e.invokeMessage(lifecycleMsg(nil, string(graph.ReauthorizationRequired)))
	if len(r.logs) < 2 || !strings.Contains(r.logs[1], "re-enqueued 1") {
		t.Fatalf("logs %q", r.logs)
	}
	rs.mu.Lock()
	rs.err = nil
	rs.mu.Unlock()
	_, delivered := e.drain(20 * time.Second)
	if len(delivered) != 1 {
		t.Fatalf("re-delivered %d messages, want 1", len(delivered))
	}
	want := []string{"users:" + string(graph.ReauthorizationRequired), "users:" + string(graph.ReauthorizationRequired)}
	if got := rs.calls(); !slices.Equal(got, want) {
		t.Errorf("resync calls %v, want %v (the retry requests it again)", got, want)
	}
	if n := subs.renew.Load(); n != 2 || subs.released.Load() != 1 {
		t.Errorf("renewed %d times, released %d slots; want 2 (the retry was not rationed away) and 1", n, subs.released.Load())
	}
	// A second event within the interval is still rationed: only a failed follow-up gives the slot back.
	e.invokeMessage(lifecycleMsg(nil, string(graph.ReauthorizationRequired)))
	if n := subs.renew.Load(); n != 2 || len(rs.calls()) != 2 {
		t.Errorf("after the retry: renewed %d times, resync calls %v; want no more", n, rs.calls())
	}
}
