package queueworker

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/backoff"
	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
	"github.com/graphwebhooks/graph-webhooks-go/internal/resync"
	"github.com/graphwebhooks/graph-webhooks-go/internal/storagequeue"
)

func TestCoalescesOneMessageIntoOneBatch(t *testing.T) {
	e := newEnv(t)
	ids := e.addUsers("a0000000", 5)
	var ns []graph.ChangeNotification
	for range 4 {
		for _, id := range ids {
			ns = append(ns, note(id, "updated"))
		}
	}
	before := time.Now().UTC().Truncate(time.Second)
	r := e.invokeMessage(msg(message.KindNotifications, ns...))

	if n := e.fg.Count("POST", "/v1.0/$batch"); n != 1 {
		t.Errorf("%d $batch calls, want 1", n)
	}
	if n := e.fg.Count("", "/v1.0/"); n != 1 {
		t.Errorf("%d Graph calls in all, want 1", n)
	}
	if n := e.fg.CountBatchItems("GET", "/v1.0/users/"); n != 5 {
		t.Errorf("%d users read in the batch, want 5", n)
	}
	if len(r.events) != 5 {
		t.Fatalf("%d events, want 5", len(r.events))
	}
	for i, ev := range r.events {
		if ev.ResourceID != ids[i] || ev.ChangeType != "updated" || ev.SoftDeleted || ev.Source != message.SourceNotification ||
			ev.Resource != "users" || ev.TenantID != testTenant || ev.SubscriptionID == nil || *ev.SubscriptionID != testSub || ev.V != 1 {
			t.Errorf("event %d: %+v", i, ev)
		}
		if ev.ObservedAt.Before(before) || ev.ObservedAt.Nanosecond() != 0 {
			t.Errorf("observedAt %v: want now in whole seconds", ev.ObservedAt)
		}
		want := userProps(ids[i])
		delete(want, "officeLocation")
		want["id"] = ids[i]
		if len(ev.Object) != len(want) {
			t.Errorf("user has %v, want exactly the selected properties %v", ev.Object, want)
		}
		for k, v := range want {
			if ev.Object[k] != v {
				t.Errorf("user[%s] = %v, want %v", k, ev.Object[k], v)
			}
		}
		if len(ev.ID) != 32 {
			t.Errorf("id %q", ev.ID)
		}
	}
	if out := e.enqueuedTo(e.queue); len(out) != 0 {
		t.Errorf("re-enqueued %d messages, want none", len(out))
	}
	if len(r.logs) == 0 || !strings.Contains(r.logs[0], "5 events") {
		t.Errorf("logs %q", r.logs)
	}
	if e.logs.contains(testClientState) {
		t.Error("the clientState reached the log")
	}
}

func TestBatchesOfTwentyPerMessage(t *testing.T) {
	e := newEnv(t)
	ids := e.addUsers("b0000000", 45)
	var ns []graph.ChangeNotification
	for _, id := range ids {
		ns = append(ns, note(id, "updated"))
	}
	// Split as the webhook does.
	msgs, tooBig, err := message.Split(message.Message{V: 1, Kind: message.KindNotifications, FirstSeen: firstSeen}, ns)
	if err != nil || len(tooBig) != 0 || len(msgs) != 1 {
		t.Fatalf("split: %d messages, %d too big, %v; want the 45 in one", len(msgs), len(tooBig), err)
	}
	seen := map[string]bool{}
	for i := range msgs {
		for _, ev := range e.invokeMessage(&msgs[i]).events {
			seen[ev.ResourceID] = true
		}
	}
	if n := e.fg.Count("POST", "/v1.0/$batch"); n != 3 {
		t.Errorf("%d $batch calls, want 3", n)
	}
	if n := e.fg.Count("", "/v1.0/"); n != 3 {
		t.Errorf("%d Graph calls, want 3", n)
	}
	if len(seen) != 45 {
		t.Errorf("events for %d users, want 45", len(seen))
	}

	// Batches of at most 20, whatever the message holds.
	e.fg.ResetRequests()
	if r := e.invokeMessage(msg(message.KindNotifications, ns[:25]...)); len(r.events) != 25 {
		t.Errorf("25-user message: %d events", len(r.events))
	}
	if n := e.fg.Count("POST", "/v1.0/$batch"); n != 2 {
		t.Errorf("25-user message: %d batches, want 2", n)
	}
}

// TestMixedOutcomes: found, soft-deleted, permanently deleted and throttled users in one message. Events go
// out for the finished ones; exactly the throttled rest comes back from Azurite, after its delay, as one
// message of attempt 1; finished users are not read again.
func TestMixedOutcomes(t *testing.T) {
	e := newEnv(t)
	throttled := e.addUsers("c0000000", 2)
	ok := e.addUsers("c1000000", 1)[0]
	soft := e.addUsers("c2000000", 1)[0]
	e.fg.SoftDeleteUser(soft)
	gone := "c3000000-0000-4000-8000-000000000000"

	// The batch lists users in order of first appearance: the throttled ones first.
	ns := []graph.ChangeNotification{note(throttled[0], "updated"), note(throttled[1], "updated"), note(throttled[0], "updated"),
		note(ok, "updated"), note(soft, "updated"), note(gone, "deleted")}
	m := msg(message.KindNotifications, ns...)
	e.fg.ThrottleBatchItems(2, time.Second)
	r := e.invokeMessage(m)

	got := byResource(r.events)
	if len(r.events) != 3 {
		t.Fatalf("%d events, want 3: %+v", len(r.events), r.events)
	}
	if ev := got[ok]; ev.ChangeType != "updated" || ev.SoftDeleted || ev.Object["displayName"] == nil {
		t.Errorf("found user: %+v", ev)
	}
	if ev := got[soft]; ev.ChangeType != "deleted" || !ev.SoftDeleted || ev.Object["id"] != soft || ev.Object["displayName"] == nil {
		t.Errorf("soft-deleted user: %+v", ev)
	} else if _, has := ev.Object["@odata.type"]; has {
		t.Errorf("soft-deleted user keeps annotations: %v", ev.Object)
	}
	if ev := got[gone]; ev.ChangeType != "deleted" || ev.SoftDeleted || ev.Object != nil {
		t.Errorf("permanently deleted user: %+v", ev)
	}
	// The soft-deleted user is looked for in deletedItems after /users missed it; the reported delete is
	// confirmed in both places in the first $batch.
	if n := e.fg.CountBatchItems("GET", "/v1.0/directory/deletedItems/"); n != 2 {
		t.Errorf("%d deletedItems reads, want 2", n)
	}
	if n := e.fg.Count("GET", "/v1.0/"); n != 0 {
		t.Errorf("%d reads outside $batch, want none", n)
	}

	out := e.enqueuedTo(e.queue)
	if len(out) != 1 {
		t.Fatalf("%d re-enqueued messages, want 1", len(out))
	}
	if out[0].delay < time.Second || out[0].delay > 2*time.Second {
		t.Errorf("delay %s, want Retry-After (1 s) plus at most 10 %%", out[0].delay)
	}
	// Not visible at once; visible after its delay.
	if ms, err := e.q.Receive(e.ctx, e.queue, 1, time.Minute); err != nil || len(ms) != 0 {
		t.Fatalf("the re-enqueued message is visible at once (%d, %v)", len(ms), err)
	}
	sm, found := e.receive(e.queue, 10*time.Second)
	if !found {
		t.Fatal("the re-enqueued message never became visible")
	}
	rem, err := message.Decode(sm.Text)
	if err != nil {
		t.Fatal(err)
	}
	if rem.Attempt != 1 || !rem.FirstSeen.Equal(firstSeen) || rem.NotBefore == nil || rem.Kind != message.KindNotifications {
		t.Errorf("remainder header: attempt %d firstSeen %v notBefore %v kind %s", rem.Attempt, rem.FirstSeen, rem.NotBefore, rem.Kind)
	}
	var remIDs []string
	for _, n := range rem.Notifications {
		remIDs = append(remIDs, n.ResourceID())
	}
	if want := []string{throttled[0], throttled[1], throttled[0]}; !slices.Equal(remIDs, want) {
		t.Errorf("remainder holds %v, want exactly the throttled users' notifications %v", remIDs, want)
	}
	if string(rem.Notifications[0].Raw) != string(ns[0].Raw) {
		t.Errorf("remainder changed a notification:\n%s\n%s", rem.Notifications[0].Raw, ns[0].Raw)
	}

	e.fg.ResetRequests()
	r2 := e.mustInvoke(hostRequest(t, sm.Text, 1))
	if len(r2.events) != 2 || byResource(r2.events)[throttled[1]].ChangeType != "updated" {
		t.Errorf("second delivery: %+v", r2.events)
	}
	if n := e.fg.CountBatchItems("GET", "/v1.0/users/"); n != 2 {
		t.Errorf("second delivery read %d users, want only the 2 throttled ones", n)
	}
	if len(e.enqueuedTo(e.queue)) != 1 || len(e.enqueuedTo(e.poison)) != 0 {
		t.Error("more messages were enqueued")
	}
}

// TestServiceUnavailableStorm: the batch fails with 503 three times; each failure re-enqueues with backoff,
// the invocations succeed, nothing is poisoned, and all events come out once Graph recovers.
func TestServiceUnavailableStorm(t *testing.T) {
	e := newEnv(t)
	e.f.backoffBase = 500 * time.Millisecond // rounds to 0, 1, 2 s
	ids := e.addUsers("d0000000", 4)
	var ns []graph.ChangeNotification
	for _, id := range ids {
		ns = append(ns, note(id, "updated"))
	}
	e.fg.Inject("POST /v1.0/$batch", fakegraph.Fault{Status: 503, Count: 3})
	first := e.invokeMessage(msg(message.KindNotifications, ns...))
	if len(first.events) != 0 {
		t.Fatalf("events despite 503: %+v", first.events)
	}
	events, delivered := e.drain(30 * time.Second)
	if len(delivered) != 3 {
		t.Fatalf("%d re-deliveries, want 3", len(delivered))
	}
	for i, m := range delivered {
		if m.Attempt != i+1 || len(m.Notifications) != 4 {
			t.Errorf("re-delivery %d: attempt %d, %d notifications", i, m.Attempt, len(m.Notifications))
		}
	}
	if len(events) != 4 {
		t.Fatalf("%d events after the storm, want 4", len(events))
	}
	out := e.enqueuedTo(e.queue)
	for i, x := range out {
		if want := backoff.Step(e.f.backoffBase, BackoffMax, i); x.delay < want || x.delay > want+want/10 {
			t.Errorf("delay %d = %s, want %s + ≤10 %%", i, x.delay, want)
		}
	}
	if n := len(e.enqueuedTo(e.poison)); n != 0 {
		t.Errorf("%d poison messages", n)
	}
	if n := e.fg.Count("POST", "/v1.0/$batch"); n != 4 {
		t.Errorf("%d batch calls, want 4", n)
	}
}

func TestGarbageIsPoisonedAtOnce(t *testing.T) {
	e := newEnv(t)
	for _, text := range []string{
		`this is not JSON, and it carries ` + testClientState,
		`{"v":2,"kind":"notifications","notifications":[{"clientState":"` + testClientState + `"}]}`,
		`{"v":1,"kind":"gossip"}`,
		`{"v":1,"kind":"notifications","notifications":[]}`,
		`{"v":1,"kind":"notifications","notifications":[{"subscriptionId":7}]}`,
	} {
		r := e.mustInvoke(hostRequest(t, []byte(text), 1))
		if len(r.events) != 0 || len(r.logs) == 0 || !strings.Contains(r.logs[0], "poison") {
			t.Errorf("%.30q: %+v", text, r)
		}
		m, ok := e.receive(e.poison, 5*time.Second)
		if !ok {
			t.Fatalf("%.30q: nothing in the poison queue", text)
		}
		if string(m.Text) != text {
			t.Errorf("poison text %q, want the original %q", m.Text, text)
		}
	}
	if e.logs.contains(testClientState) {
		t.Error("the message body reached the log")
	}
	if n := e.fg.Count("", "/"); n != 0 {
		t.Errorf("%d requests to Graph for garbage", n)
	}
}

func TestUnusableNotificationsArePoisonedAndTheRestProcessed(t *testing.T) {
	e := newEnv(t)
	id := e.addUsers("e0000000", 1)[0]
	var noID graph.ChangeNotification
	json.Unmarshal([]byte(`{"subscriptionId":"`+testSub+`","changeType":"updated","tenantId":"`+testTenant+`","resource":""}`), &noID)
	foreign := note(id, "updated")
	json.Unmarshal([]byte(strings.ReplaceAll(string(foreign.Raw), testTenant, "00000000-0000-0000-0000-00000000ffff")), &foreign)
	r := e.invokeMessage(msg(message.KindNotifications, noID, note(id, "created"), foreign))
	if len(r.events) != 1 || r.events[0].ResourceID != id {
		t.Errorf("events %+v", r.events)
	}
	p, ok := e.receive(e.poison, 5*time.Second)
	if !ok {
		t.Fatal("nothing poisoned")
	}
	pm, err := message.Decode(p.Text)
	if err != nil || len(pm.Notifications) != 1 || pm.Notifications[0].SubscriptionID != testSub {
		t.Errorf("poisoned %s (%v)", p.Text, err)
	}
	if !e.logs.contains("another tenant") {
		t.Error("the foreign notification was not reported")
	}
}

// TestRedeliveryKeepsIDs: the same message delivered again, encoded once instead of twice, and its
// re-enqueued remainder all yield the same event ids.
func TestRedeliveryKeepsIDs(t *testing.T) {
	e := newEnv(t)
	ids := e.addUsers("f0000000", 4)
	ns := []graph.ChangeNotification{note(ids[0], "updated"), note(ids[1], "updated"), note(ids[2], "updated"), note(ids[3], "deleted"), note(ids[0], "updated")}
	m := msg(message.KindNotifications, ns...)

	idsOf := func(evs []message.Event) map[string]string {
		out := map[string]string{}
		for _, ev := range evs {
			out[ev.ResourceID] = ev.ID
		}
		return out
	}
	first := idsOf(e.invokeMessage(m).events)
	if len(first) != 4 {
		t.Fatalf("first delivery: %v", first)
	}
	// Redelivered later (the clock moved): same ids.
	e.f.d.Now = func() time.Time { return time.Now().Add(time.Hour) }
	again := idsOf(e.invokeMessage(m).events)
	// Encoded once, as third-party fixtures do, and compact rather than indented.
	text, _ := json.Marshal(m)
	once, _ := json.Marshal(string(text))
	req := hostRequest(t, text, 2)
	req.Data["message"] = once
	third := idsOf(e.mustInvoke(req).events)
	// Throttled in part: the remainder's events keep the ids.
	e.fg.ThrottleBatchItems(2, time.Second)
	part := idsOf(e.invokeMessage(m).events)
	sm, ok := e.receive(e.queue, 10*time.Second)
	if !ok {
		t.Fatal("no remainder")
	}
	for k, v := range idsOf(e.mustInvoke(hostRequest(t, sm.Text, 1)).events) {
		part[k] = v
	}
	for name, got := range map[string]map[string]string{"redelivery": again, "encoded once": third, "remainder": part} {
		if len(got) != len(first) {
			t.Errorf("%s: %d events, want %d", name, len(got), len(first))
		}
		for k, v := range first {
			if got[k] != v {
				t.Errorf("%s: id for %s = %s, want %s", name, k, got[k], v)
			}
		}
	}
	// Different content, different id: another notification for the same user.
	other := idsOf(e.invokeMessage(msg(message.KindNotifications, note(ids[0], "updated"))).events)
	if other[ids[0]] == first[ids[0]] {
		t.Error("a different notification got the same event id")
	}
}

// TestGateStopsOtherInvocations: a 429 with a Retry-After longer than the client waits closes the
// process-wide gate; the next invocation re-enqueues its work for the remaining time without calling Graph.
func TestGateStopsOtherInvocations(t *testing.T) {
	e := newEnv(t)
	ids := e.addUsers("90000000", 3)
	e.fg.Inject("POST /v1.0/$batch", fakegraph.Fault{Status: 429, RetryAfter: 120 * time.Second})
	r := e.invokeMessage(msg(message.KindNotifications, note(ids[0], "updated")))
	if len(r.events) != 0 {
		t.Fatalf("events: %+v", r.events)
	}
	if rem := e.f.d.Gate.Remaining(time.Now()); rem < 110*time.Second {
		t.Fatalf("gate open for %s, want about 120 s", rem)
	}
	calls := e.fg.Count("", "/v1.0/")

	// Subsequent and concurrent invocations: no Graph call, not even to confirm a delete.
	var wg sync.WaitGroup
	results := make([]result, 3)
	for i := range results {
		wg.Go(func() {
			results[i] = e.invokeMessage(msg(message.KindNotifications, note(ids[1], "updated"), note(ids[2], "updated"), note("90000000-dead-4000-8000-000000000000", "deleted")))
		})
	}
	wg.Wait()
	if n := e.fg.Count("", "/v1.0/"); n != calls {
		t.Errorf("%d Graph calls while the gate was closed", n-calls)
	}
	for _, r := range results {
		if len(r.events) != 0 {
			t.Errorf("events while gated: %+v", r.events)
		}
	}
	out := e.enqueuedTo(e.queue)
	if len(out) != 4 {
		t.Fatalf("%d re-enqueued messages, want 4", len(out))
	}
	if out[0].delay < 120*time.Second || out[0].delay > 132*time.Second {
		t.Errorf("throttled message delay %s, want Retry-After 120 s + ≤10 %%", out[0].delay)
	}
	for _, x := range out[1:] {
		m, _ := message.Decode(x.text)
		if x.delay < 100*time.Second || x.delay > 132*time.Second || m.Attempt != 0 || len(m.Notifications) != 3 {
			t.Errorf("gated message: delay %s attempt %d notifications %d", x.delay, m.Attempt, len(m.Notifications))
		}
	}
	// None is visible yet.
	if ms, err := e.q.Receive(e.ctx, e.queue, 32, time.Minute); err != nil || len(ms) != 0 {
		t.Errorf("%d delayed messages visible at once (%v)", len(ms), err)
	}
}

func TestReplicationRetriesThenGone(t *testing.T) {
	e := newEnv(t)
	e.f.backoffBase = 500 * time.Millisecond // 1 s, 1 s, 2 s once rounded
	// A user found nowhere: retried ReplicationRetries times, then reported deleted (not soft).
	ghost := "a1000000-0000-4000-8000-000000000000"
	r := e.invokeMessage(msg(message.KindNotifications, note(ghost, "updated")))
	if len(r.events) != 0 {
		t.Fatalf("events at once: %+v", r.events)
	}
	events, delivered := e.drain(60 * time.Second)
	if len(delivered) != ReplicationRetries {
		t.Errorf("%d re-deliveries, want %d", len(delivered), ReplicationRetries)
	}
	if len(events) != 1 || events[0].ChangeType != "deleted" || events[0].SoftDeleted || events[0].Object != nil {
		t.Errorf("events %+v", events)
	}

	// A new user that replicates late: found on a retry.
	e.fg.SetReplicationLag(1500 * time.Millisecond)
	late := e.addUsers("a2000000", 1)[0]
	r = e.invokeMessage(msg(message.KindNotifications, note(late, "updated")))
	if len(r.events) != 0 {
		t.Fatalf("lagging user found at once: %+v", r.events)
	}
	events, _ = e.drain(30 * time.Second)
	if len(events) != 1 || events[0].ChangeType != "updated" || events[0].Object["id"] != late {
		t.Errorf("late user: %+v", events)
	}
}

func TestGivesUpIntoPoison(t *testing.T) {
	e := newEnv(t)
	id := e.addUsers("a3000000", 1)[0]
	e.fg.Inject("POST /v1.0/$batch", fakegraph.Fault{Status: 503, Count: -1})
	for name, m := range map[string]*message.Message{
		"attempts": {V: 1, Kind: message.KindNotifications, Notifications: []graph.ChangeNotification{note(id, "updated")}, Attempt: MaxAttempts, FirstSeen: time.Now().UTC()},
		"age":      {V: 1, Kind: message.KindNotifications, Notifications: []graph.ChangeNotification{note(id, "updated")}, Attempt: 3, FirstSeen: time.Now().Add(-MaxAge - time.Minute).UTC()},
	} {
		r := e.invokeMessage(m)
		if !strings.Contains(strings.Join(r.logs, "\n"), "gave up") {
			t.Errorf("%s: logs %q", name, r.logs)
		}
		p, ok := e.receive(e.poison, 5*time.Second)
		if !ok {
			t.Fatalf("%s: nothing poisoned", name)
		}
		pm, err := message.Decode(p.Text)
		if err != nil || len(pm.Notifications) != 1 || !pm.FirstSeen.Equal(m.FirstSeen) {
			t.Errorf("%s: poisoned %s", name, p.Text)
		}
	}
	if len(e.enqueuedTo(e.queue)) != 0 {
		t.Error("re-enqueued instead of giving up")
	}
	if !e.logs.contains("level=ERROR") {
		t.Error("giving up was not logged as an error")
	}
}

func TestDeadlineLeavesWorkForLater(t *testing.T) {
	e := newEnv(t)
	id := e.addUsers("a4000000", 1)[0]
	e.f.margin = time.Hour // the work deadline has passed before any call
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	resp, err := e.f.Invoke(ctx, hostRequest(t, hostText(t, msg(message.KindNotifications, note(id, "updated"), note("a4000000-dead-4000-8000-000000000000", "deleted"))), 1))
	if err != nil {
		t.Fatal(err)
	}
	if e.fg.Count("", "/v1.0/") != 0 {
		t.Error("Graph was called after the work deadline")
	}
	if len(resp.Outputs) != 0 || len(e.events.take()) != 0 {
		t.Error("an event went out although nothing was read (a reported delete is confirmed first)")
	}
	out := e.enqueuedTo(e.queue)
	if len(out) != 1 {
		t.Fatalf("%d re-enqueued, want 1", len(out))
	}
	if m, _ := message.Decode(out[0].text); m.Attempt != 1 || len(m.Notifications) != 2 {
		t.Errorf("remainder %s", out[0].text)
	}
}

func TestFailures(t *testing.T) {
	t.Run("missing setting", func(t *testing.T) {
		e := newEnv(t, withSettings(map[string]string{config.TenantID: ""}))
		_, err := e.invoke(hostRequest(t, hostText(t, msg(message.KindNotifications, note("x0000000-0000-4000-8000-000000000000", "updated"))), 1))
		if err == nil || !strings.Contains(err.Error(), config.TenantID) {
			t.Errorf("err = %v, want one naming %s", err, config.TenantID)
		}
	})
	t.Run("re-enqueue fails", func(t *testing.T) {
		e := newEnv(t)
		id := e.addUsers("a5000000", 1)[0]
		down := storagequeue.NewMemory()
		down.Fail = func(string) error { return errors.New("storage is down") }
		e.f.d.Queue = func() (Queue, error) { return down, nil }
		e.fg.Inject("POST /v1.0/$batch", fakegraph.Fault{Status: 503})
		if _, err := e.invoke(hostRequest(t, hostText(t, msg(message.KindNotifications, note(id, "updated"))), 1)); err == nil ||
			!strings.Contains(err.Error(), "storage is down") {
			t.Errorf("err = %v, want the invocation to fail", err)
		}
	})
	t.Run("forbidden", func(t *testing.T) {
		e := newEnv(t)
		id := e.addUsers("a6000000", 1)[0]
		e.fg.Inject("POST /v1.0/$batch", fakegraph.Fault{Status: 403})
		if _, err := e.invoke(hostRequest(t, hostText(t, msg(message.KindNotifications, note(id, "updated"))), 1)); err == nil ||
			!strings.Contains(err.Error(), "403") {
			t.Errorf("err = %v, want the invocation to fail with the 403", err)
		}
		if len(e.enqueuedTo(e.queue)) != 0 {
			t.Error("a 403 was re-enqueued")
		}
	})
	t.Run("not due yet", func(t *testing.T) {
		e := newEnv(t)
		m := msg(message.KindNotifications, note("a7000000-0000-4000-8000-000000000000", "updated"))
		nb := time.Now().Add(time.Minute)
		m.NotBefore = &nb
		e.invokeMessage(m)
		out := e.enqueuedTo(e.queue)
		if e.fg.Count("", "/v1.0/") != 0 || len(out) != 1 || out[0].delay < 50*time.Second {
			t.Errorf("calls %d, enqueued %+v", e.fg.Count("", "/v1.0/"), out)
		}
	})
}

func TestBackoffNumbers(t *testing.T) {
	want := []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 16 * time.Minute, 32 * time.Minute, time.Hour, time.Hour}
	var total time.Duration
	for i, w := range want {
		if got := backoff.Step(BackoffBase, BackoffMax, i); got != w {
			t.Errorf("backoff.Step(%d) = %s, want %s", i, got, w)
		}
	}
	n := 0
	for total < MaxAge {
		total += backoff.Step(BackoffBase, BackoffMax, n)
		n++
	}
	if n >= MaxAttempts {
		t.Errorf("MaxAge takes %d attempts, more than the MaxAttempts backstop %d", n, MaxAttempts)
	}
	t.Logf("MaxAge (%s) is reached after %d attempts", MaxAge, n)
	for _, seed := range []string{"a", "b", "c", "d"} {
		if j := jitter(time.Minute, []byte(seed)); j < time.Minute || j >= time.Minute+6*time.Second {
			t.Errorf("jitter %s out of range", j)
		}
	}
	seed := []byte("x")
	if first := jitter(time.Minute, seed); jitter(time.Minute, seed) != first {
		t.Error("jitter is not deterministic")
	}
}

// stepResync records the resync steps it is given.
type stepResync struct {
	fakeResync
	got []string
	err error
}

func (s *stepResync) Step(_ context.Context, m *message.Message) (resync.StepResult, error) {
	s.got = append(s.got, m.Continuation)
	return resync.StepResult{PassID: "p1", Page: 1, Done: true}, s.err
}

func TestResyncMessagesGoToTheStep(t *testing.T) {
	text := hostText(t, &message.Message{V: 1, Kind: message.KindResync, Continuation: `{"pass":"p1"}`, FirstSeen: firstSeen})
	e := newEnv(t)
	if _, err := e.invoke(hostRequest(t, text, 1)); err == nil || !strings.Contains(err.Error(), "no resync is wired") {
		t.Errorf("without a resync: err = %v", err)
	}
	rs := &stepResync{}
	e.f.d.Resync = rs
	if r := e.mustInvoke(hostRequest(t, text, 1)); !strings.Contains(r.logs[0], "pass p1 completed") {
		t.Errorf("logs %q", r.logs)
	}
	if !slices.Equal(rs.got, []string{`{"pass":"p1"}`}) {
		t.Errorf("step got %q", rs.got)
	}
	rs.err = errors.New("checkpoint store down")
	if _, err := e.invoke(hostRequest(t, text, 1)); err == nil || !strings.Contains(err.Error(), "checkpoint store down") {
		t.Errorf("err = %v", err)
	}
	if len(e.enqueuedTo(e.poison)) != 0 {
		t.Error("a resync message was poisoned")
	}
}

// Attempts used up by throttling are no replication wait: a new user that replicates late is still found,
// not reported deleted.
func TestReplicationWaitNotUsedUpByThrottling(t *testing.T) {
	e := newEnv(t)
	e.f.backoffBase = 500 * time.Millisecond // a 3.5 s replication window
	e.fg.SetReplicationLag(2 * time.Second)
	late := e.addUsers("a4000000", 1)[0]
	m := msg(message.KindNotifications, note(late, "updated"))
	m.Attempt = ReplicationRetries // three throttled attempts before the first lookup
	m.FirstSeen = time.Now().UTC().Truncate(time.Second)
	if r := e.invokeMessage(m); len(r.events) != 0 {
		t.Fatalf("lagging user reported at once: %+v", r.events)
	}
	events, _ := e.drain(30 * time.Second)
	if len(events) != 1 || events[0].ChangeType != "updated" || events[0].Object["id"] != late {
		t.Errorf("late user after throttling: %+v", events)
	}
}

// One user Graph refuses to read must not send the users it did read to the poison queue with it.
func TestRefusedUserGoesToPoisonAlone(t *testing.T) {
	e := newEnv(t)
	ids := e.addUsers("a8000000", 3)
	e.fg.Inject("GET /v1.0/users/{id}", fakegraph.Fault{Status: 400, Count: 1}) // the batch's first item
	r := e.invokeMessage(msg(message.KindNotifications, note(ids[0], "updated"), note(ids[1], "updated"), note(ids[2], "updated")))
	if len(r.events) != 2 || r.events[0].ResourceID != ids[1] || r.events[1].ResourceID != ids[2] {
		t.Fatalf("events %+v: want the two users Graph read", r.events)
	}
	poisoned := e.enqueuedTo(e.poison)
	if len(poisoned) != 1 {
		t.Fatalf("%d poison messages, want 1", len(poisoned))
	}
	m, err := message.Decode(poisoned[0].text)
	if err != nil || len(m.Notifications) != 1 || m.Notifications[0].ResourceID() != ids[0] {
		t.Errorf("poisoned %+v, %v: want only the refused user's notification", m, err)
	}
	if len(e.enqueuedTo(e.queue)) != 0 {
		t.Error("a refused read was re-enqueued")
	}

	// Refused for every user alike: a setting or permission problem, not a bad user. The invocation fails.
	e2 := newEnv(t)
	id := e2.addUsers("a9000000", 1)[0]
	e2.fg.Inject("GET /v1.0/users/{id}", fakegraph.Fault{Status: 400, Count: -1})
	if _, err := e2.invoke(hostRequest(t, hostText(t, msg(message.KindNotifications, note(id, "updated"))), 1)); err == nil || !strings.Contains(err.Error(), "refused to read every one") {
		t.Errorf("err = %v, want the invocation to fail", err)
	}
	if len(e2.enqueuedTo(e2.poison)) != 0 {
		t.Error("a refusal of every read poisoned the message instead of failing the invocation")
	}
}
