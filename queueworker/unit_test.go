package queueworker

// Unit tests: the worker with in-memory Graph, queue and event writer (no network, no Azurite). The tests
// beside this file drive it against the Graph double and Azurite.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/directory"
	"github.com/graphwebhooks/graph-webhooks-go/internal/directory/directorytest"
	"github.com/graphwebhooks/graph-webhooks-go/internal/events"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/logctx"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
	"github.com/graphwebhooks/graph-webhooks-go/internal/objectstate"
	"github.com/graphwebhooks/graph-webhooks-go/internal/storagequeue"
	"github.com/graphwebhooks/graph-webhooks-go/internal/testclock"
)

type unit struct {
	t      *testing.T
	g      *directorytest.FakeGraph
	q      *storagequeue.Memory
	events *recEvents
	rs     *fakeResync
	f      *Function
	now    time.Time
}

func newUnit(t *testing.T, settings ...string) *unit {
	vars := map[string]string{
		config.TenantID: testTenant, config.ClientID: testClient, config.Storage: "UseDevelopmentStorage=true",
		config.Resource: "users,groups",
	}
	for i := 0; i+1 < len(settings); i += 2 {
		vars[settings[i]] = settings[i+1]
	}
	u := &unit{t: t, g: directorytest.NewFakeGraph(), q: storagequeue.NewMemory(), events: &recEvents{}, rs: &fakeResync{},
		now: testclock.Date(2026, 12, 1, 10, 0, 0)}
	u.f = New(Deps{
		Config: config.Load(func(k string) string { return vars[k] }),
		Graph:  func() (directory.Graph, error) { return u.g, nil },
		Queue:  func() (Queue, error) { return u.q, nil },
		Events: u.events,
		Resync: u.rs,
		Now:    func() time.Time { return u.now },
	})
	return u
}

func guid(i int) string { return fmt.Sprintf("6e1f%04d-7c3a-4b2d-9e8f-0a1b2c3d4e5f", i) }

func (u *unit) user(i int, props ...any) graph.Object {
	o := graph.Object{"id": guid(i), "displayName": fmt.Sprintf("User %d", i), "jobTitle": "Engineer"}
	for j := 0; j+1 < len(props); j += 2 {
		o[props[j].(string)] = props[j+1]
	}
	return o
}

// groupNote is a group notification as Graph sends it, with an optional members@delta hint.
func groupNote(id, changeType, membersDelta string) graph.ChangeNotification {
	extra := ""
	if membersDelta != "" {
		extra = `,"members@delta":` + membersDelta
	}
	raw := fmt.Sprintf(`{"subscriptionId":%q,"changeType":%q,"tenantId":%q,"resource":"Groups/%s","resourceData":{"@odata.type":"#Microsoft.Graph.Group","@odata.id":"Groups/%s","id":%q,"organizationId":%q,"sequenceNumber":%d%s}}`,
		testSub, changeType, testTenant, id, id, id, testTenant, 638700000000000000+seqNo.Add(1), extra)
	var n graph.ChangeNotification
	if err := json.Unmarshal([]byte(raw), &n); err != nil {
		panic(err)
	}
	return n
}

func (u *unit) run(m *message.Message) ([]message.Event, []string) {
	u.t.Helper()
	resp, err := u.f.Invoke(u.ctx(), hostRequest(u.t, hostText(u.t, m), 1))
	if err != nil {
		u.t.Fatalf("Invoke: %v", err)
	}
	return u.events.take(), resp.Logs
}

// ctx carries a logger writing to the test log.
func (u *unit) ctx() context.Context {
	return logctx.With(context.Background(), slog.New(slog.NewTextHandler(tlog{u.t}, nil)))
}

type tlog struct{ t *testing.T }

func (w tlog) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func (u *unit) poisoned() []*message.Message {
	var out []*message.Message
	for _, x := range u.q.Messages(storagequeue.PoisonQueue(message.WorkQueue)) {
		m, err := message.Decode(x.Text)
		if err != nil {
			u.t.Fatalf("poison message does not decode: %v", err)
		}
		out = append(out, m)
	}
	return out
}

func TestUnitCoalescesAndReadsOnce(t *testing.T) {
	u := newUnit(t)
	u.g.Put(directory.Users, u.user(1))
	u.g.Put(directory.Users, u.user(2))
	evs, _ := u.run(u.msg(message.KindNotifications, note(guid(1), "updated"), note(guid(2), "updated"), note(strings.ToUpper(guid(1)), "updated")))
	if len(evs) != 2 || len(u.g.Batches()) != 1 || len(u.g.Batches()[0]) != 2 {
		t.Fatalf("%d events, batches %v: want 2 events from one $batch of 2", len(evs), u.g.Batches())
	}
	if evs[0].Field != message.FieldUser || evs[0].Object["displayName"] != "User 1" || evs[0].Resource != "users" {
		t.Errorf("event %+v", evs[0])
	}
}

func TestUnitNonGUIDIdsNeverReachGraph(t *testing.T) {
	u := newUnit(t)
	u.g.Put(directory.Users, u.user(1))
	var ns []graph.ChangeNotification
	for _, bad := range []string{"delta", "$count", "microsoft.graph.user", "alice@contoso.com", "..%2F..%2Fsubscriptions"} {
		ns = append(ns, note(bad, "updated"))
	}
	ns = append(ns, note(guid(1), "updated"))
	evs, _ := u.run(u.msg(message.KindNotifications, ns...))
	if len(evs) != 1 || evs[0].ResourceID != guid(1) {
		t.Fatalf("events %+v: want only the genuine user", evs)
	}
	for _, b := range u.g.Batches() {
		for _, get := range b {
			if !strings.HasSuffix(get.Path, guid(1)) {
				t.Errorf("a malformed id reached Graph: %s", get.Path)
			}
		}
	}
	p := u.poisoned()
	if len(p) != 1 || len(p[0].Notifications) != 5 {
		t.Fatalf("poisoned %+v: want the 5 malformed notifications in one message", p)
	}
}

func TestUnitPermanentDeleteIsConfirmed(t *testing.T) {
	u := newUnit(t)
	u.g.Put(directory.Users, u.user(1))        // reported deleted, but live
	u.g.PutDeleted(directory.Users, u.user(2)) // reported deleted, but only soft-deleted
	// user 3 is nowhere: the delete is real
	evs, _ := u.run(u.msg(message.KindNotifications, note(guid(1), "deleted"), note(guid(2), "deleted"), note(guid(3), "deleted")))
	got := byResource(evs)
	if e := got[guid(1)]; e.ChangeType != graph.Updated || e.Object["displayName"] != "User 1" {
		t.Errorf("a live user reported deleted: %+v", e)
	}
	if e := got[guid(2)]; e.ChangeType != graph.Deleted || !e.SoftDeleted || e.Object["displayName"] != "User 2" {
		t.Errorf("a soft-deleted user reported deleted: %+v", e)
	}
	if e := got[guid(3)]; e.ChangeType != graph.Deleted || e.SoftDeleted || e.Object != nil {
		t.Errorf("a user gone for good: %+v", e)
	}
	if b := u.g.Batches(); len(b) != 1 || len(b[0]) != 6 {
		t.Errorf("batches %v: want one $batch reading both places of each", b)
	}
}

func TestUnitDatesFarAheadArePoison(t *testing.T) {
	for _, tt := range []struct {
		name string
		set  func(m *message.Message, ahead time.Time)
	}{
		{"notBefore", func(m *message.Message, ahead time.Time) { m.NotBefore = &ahead }},
		{"firstSeen", func(m *message.Message, ahead time.Time) { m.FirstSeen = ahead }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u := newUnit(t)
			m := u.msg(message.KindNotifications, note(guid(1), "updated"))
			tt.set(m, u.now.Add(30*24*time.Hour))
			_, logs := u.run(m)
			if len(u.q.Messages(message.WorkQueue)) != 0 || len(u.g.Batches()) != 0 {
				t.Fatal("a message dated a month ahead was re-enqueued or read")
			}
			if len(u.q.Messages(storagequeue.PoisonQueue(message.WorkQueue))) != 1 || !strings.Contains(logs[0], tt.name) {
				t.Fatalf("not poisoned with the reason: %q", logs)
			}
		})
	}
	u := newUnit(t)
	m := u.msg(message.KindNotifications, note(guid(1), "updated"))
	m.Attempt = -1
	u.run(m)
	if len(u.q.Messages(storagequeue.PoisonQueue(message.WorkQueue))) != 1 {
		t.Fatal("a negative attempt was not poisoned")
	}
}

func TestUnitThrottledWorkWaitsForRetryAfter(t *testing.T) {
	u := newUnit(t)
	u.g.Put(directory.Users, u.user(1))
	u.g.Put(directory.Users, u.user(2))
	p, _ := graph.ObjectPath("users", guid(2))
	u.g.Answer(p, &graph.Error{Status: http.StatusTooManyRequests, Kind: graph.KindThrottled, RetryAfter: 40 * time.Second})
	evs, _ := u.run(u.msg(message.KindNotifications, note(guid(1), "updated"), note(guid(2), "updated")))
	if len(evs) != 1 || evs[0].ResourceID != guid(1) {
		t.Fatalf("events %+v: the read user's event must go out", evs)
	}
	re := u.q.Messages(message.WorkQueue)
	if len(re) != 1 || re[0].Delay < 40*time.Second || re[0].Delay > 44*time.Second {
		t.Fatalf("re-enqueued %+v: want the throttled user after Retry-After plus ≤10 %%", re)
	}
	m, _ := message.Decode(re[0].Text)
	if m.Attempt != 1 || len(m.Notifications) != 1 || m.Notifications[0].ResourceID() != guid(2) {
		t.Errorf("remainder %+v", m)
	}
	// The gate is closed for the rest of the process: the next message reads nothing.
	u.g.Answer(p, nil)
	before := len(u.g.Batches())
	u.run(u.msg(message.KindNotifications, note(guid(1), "updated")))
	if len(u.g.Batches()) != before {
		t.Error("Graph was called while the gate was closed")
	}
}

func TestUnitEventsAreWrittenBeforeAnythingElse(t *testing.T) {
	u := newUnit(t)
	u.g.Put(directory.Users, u.user(1))
	u.events.fail = fmt.Errorf("graphchanges unreachable")
	_, err := u.f.Invoke(u.ctx(), hostRequest(t, hostText(t, u.msg(message.KindNotifications, note(guid(1), "updated"))), 1))
	if err == nil || !strings.Contains(err.Error(), "graphchanges unreachable") {
		t.Fatalf("err = %v: an event that could not be written must fail the invocation (the host retries)", err)
	}
}

func TestUnitGroupNotifications(t *testing.T) {
	u := newUnit(t)
	g1, g2 := guid(100), guid(101)
	u.g.Put(directory.Groups, graph.Object{"id": g1, "displayName": "Engineering", "members": "not selected"})
	u.g.PutDeleted(directory.Groups, graph.Object{"id": g2, "displayName": "Old team", "groupTypes": []any{"Unified"}})
	hint := fmt.Sprintf(`[{"@odata.type":"#microsoft.graph.user","id":%q},{"id":%q,"@removed":{"reason":"deleted"}},{"id":"not-a-guid"}]`, guid(1), guid(2))
	evs, _ := u.run(u.msg(message.KindNotifications, groupNote(g1, "updated", hint), groupNote(g2, "updated", ""), note(guid(5), "updated")))
	got := byResource(evs)
	e := got[g1]
	if e.Resource != "groups" || e.Field != message.FieldGroup || e.Object["displayName"] != "Engineering" || e.Object["members"] != nil {
		t.Errorf("group event %+v", e)
	}
	// "Added to Engineering" is what a provisioning system acts on: a members@delta hint in a notification
	// (which needs only the clientState to forge) never becomes members in an event. Membership comes from
	// Graph, in the groups delta pass the notification requests.
	if e.Members != nil {
		t.Errorf("members taken from the notification's hint, Graph never asked: %+v", e.Members)
	}
	if e := got[g2]; e.ChangeType != graph.Deleted || !e.SoftDeleted || e.Object["displayName"] != "Old team" || e.Members != nil {
		t.Errorf("soft-deleted group: %+v", e)
	}
	b, _ := json.Marshal(got[g1])
	if !strings.Contains(string(b), `"group":{`) || strings.Contains(string(b), `"user"`) {
		t.Errorf("a group event carries its object under group: %s", b)
	}
	// A group notification may be a membership change, hinted or not: the groups delta reports it.
	if calls := u.rs.calls(); !slices.Equal(calls, []string{"groups:group notifications"}) {
		t.Errorf("resync requests %v", calls)
	}
}

func TestUnitRefusedObjectGoesAlone(t *testing.T) {
	u := newUnit(t)
	u.g.Put(directory.Users, u.user(1))
	u.g.Put(directory.Users, u.user(2))
	p, _ := graph.ObjectPath("users", guid(2))
	u.g.Answer(p, &graph.Error{Status: http.StatusForbidden, Kind: graph.KindForbidden})
	evs, _ := u.run(u.msg(message.KindNotifications, note(guid(1), "updated"), note(guid(2), "updated")))
	if len(evs) != 1 || evs[0].ResourceID != guid(1) {
		t.Fatalf("events %+v", evs)
	}
	if p := u.poisoned(); len(p) != 1 || p[0].Notifications[0].ResourceID() != guid(2) {
		t.Fatalf("poisoned %+v", p)
	}
}

// TestUnitChangeDetection runs the worker with the real event writer and an in-memory state table.
func TestUnitChangeDetection(t *testing.T) {
	u := newUnit(t)
	state := objectstate.NewMemoryTable().Store(objectstate.Options{})
	u.f.d.Events = events.NewWriter(func() (events.Queue, error) { return u.q, nil }, func() (events.State, error) { return state, nil })
	written := func() []message.Event {
		var out []message.Event
		for _, m := range u.q.Take(message.ChangesQueue) {
			var e message.Event
			if err := json.Unmarshal(m.Text, &e); err != nil {
				t.Fatal(err)
			}
			out = append(out, e)
		}
		return out
	}
	u.g.Put(directory.Users, u.user(1))
	// The same unchanged user notified twice, in separate messages (Graph's duplicates): one event.
	_, logs := u.run(u.msg(message.KindNotifications, note(guid(1), "updated")))
	u.now = u.now.Add(time.Second)
	_, logs2 := u.run(u.msg(message.KindNotifications, note(guid(1), "updated")))
	if evs := written(); len(evs) != 1 {
		t.Fatalf("%d events for one state, want 1", len(evs))
	}
	if !strings.Contains(logs[0], "0 suppressed") || !strings.Contains(logs2[0], "1 suppressed") {
		t.Errorf("summaries %q / %q: want the suppressed count", logs[0], logs2[0])
	}
	// A jobTitle change: changed and previous.
	u.g.Put(directory.Users, u.user(1, "jobTitle", "CTO"))
	u.now = u.now.Add(time.Second)
	u.run(u.msg(message.KindNotifications, note(guid(1), "updated")))
	evs := written()
	if len(evs) != 1 || !slices.Equal(evs[0].Changed, []string{"jobTitle"}) || evs[0].Previous["jobTitle"] != "Engineer" {
		t.Fatalf("events %+v: want changed [jobTitle], previous Engineer", evs)
	}
}

// msg is a message the webhook queued at the unit's clock: a unit never mixes its fixed clock with the wall clock.
func (u *unit) msg(kind message.Kind, ns ...graph.ChangeNotification) *message.Message {
	m := msg(kind, ns...)
	m.FirstSeen = u.now
	return m
}

// TestUnitContentTime: a chat message's content is dated by its own times, strictly RFC 3339, falling back
// to the queue message's firstSeen, and never later than the worker's clock.
func TestUnitContentTime(t *testing.T) {
	now := testclock.Date(2026, 12, 1, 10, 0, 0)
	seen := now.Add(-time.Hour)
	at := func(d time.Duration) string { return now.Add(d).UTC().Format("2006-01-02T15:04:05.000Z") }
	tests := []struct {
		name string
		obj  graph.Object
		ct   graph.ChangeType
		seen time.Time
		want time.Time
	}{
		{"lastModified", graph.Object{"createdDateTime": at(-3 * time.Hour), "lastModifiedDateTime": at(-2 * time.Hour)}, graph.Updated, seen, now.Add(-2 * time.Hour)},
		{"created when never modified", graph.Object{"createdDateTime": at(-3 * time.Hour), "lastModifiedDateTime": nil}, graph.Created, seen, now.Add(-3 * time.Hour)},
		{"a delete by deletedDateTime", graph.Object{"lastModifiedDateTime": at(-2 * time.Hour), "deletedDateTime": at(-time.Minute)}, graph.Deleted, seen, now.Add(-time.Minute)},
		{"deletedDateTime only counts for a delete", graph.Object{"lastModifiedDateTime": at(-2 * time.Hour), "deletedDateTime": at(-time.Minute)}, graph.Updated, seen, now.Add(-2 * time.Hour)},
		{"a delete without content", nil, graph.Deleted, seen, seen},
		{"not RFC 3339", graph.Object{"lastModifiedDateTime": "12/01/2026 08:00:00", "createdDateTime": 1764576000}, graph.Updated, seen, seen},
		{"content ahead of the clock", graph.Object{"lastModifiedDateTime": at(time.Hour)}, graph.Updated, seen, now},
		{"firstSeen ahead of the clock", nil, graph.Deleted, now.Add(time.Minute), now},
		{"no firstSeen", nil, graph.Deleted, time.Time{}, now},
	}
	for _, tt := range tests {
		if got := contentTime(tt.obj, tt.ct, tt.seen, now); !got.Equal(tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}
