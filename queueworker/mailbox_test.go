package queueworker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/family"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/mailbox"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
	"github.com/graphwebhooks/graph-webhooks-go/internal/subscription"
)

const (
	mailboxA = "6e7b768e-07e2-4810-8459-485f84f8f204"
	mailboxB = "87d349ed-44d7-43e1-9a83-5f2406dee5bd"
)

func mailEnvQW(t *testing.T) *env {
	return newEnv(t, withGraph(func(o *fakegraph.Options) { o.AppRoles = []string{"Mail.Read", "Calendars.Read"} }))
}

// mailNote builds a mailbox notification the way Graph sends it (docs/graph-facts.md, "Outlook mailboxes").
func mailNote(user, kind, id, changeType string) graph.ChangeNotification {
	seg, typ := "Messages", "#Microsoft.Graph.Message"
	if kind == "events" {
		seg, typ = "Events", "#Microsoft.Graph.Event"
	}
	res := "Users/" + user + "/" + seg + "/" + id
	raw := fmt.Sprintf(`{"subscriptionId":%q,"subscriptionExpirationDateTime":"2026-12-20T10:00:00+00:00","changeType":%q,`+
		`"clientState":%q,"tenantId":%q,"resource":%q,"resourceData":{"@odata.type":%q,"@odata.id":%q,"@odata.etag":"W/\"CQAAABYAAAB\"","id":%q}}`,
		testSub, changeType, testClientState, testTenant, res, typ, res, id)
	var n graph.ChangeNotification
	if err := json.Unmarshal([]byte(raw), &n); err != nil {
		panic(err)
	}
	return n
}

func TestMailboxItemsAreReadAcrossMailboxesInOneBatch(t *testing.T) {
	e := mailEnvQW(t)
	a1 := e.fg.AddMessage(mailboxA, fakegraph.MailItem{Props: map[string]any{"subject": "Quote", "isRead": true, "categories": []any{"Customer"}, "bodyPreview": "not selected"}})
	b1 := e.fg.AddMessage(mailboxB, fakegraph.MailItem{Props: map[string]any{"subject": "Invoice"}})
	ev := e.fg.AddEvent(mailboxA, fakegraph.MailItem{Props: map[string]any{"subject": "Review"}})
	gone := e.fg.AddMessage(mailboxB, fakegraph.MailItem{})
	e.fg.DeleteMessage(mailboxB, gone)
	live := e.fg.AddMessage(mailboxA, fakegraph.MailItem{})

	ns := []graph.ChangeNotification{
		mailNote(mailboxA, "messages", a1, "updated"), mailNote(mailboxA, "messages", a1, "updated"), mailNote(mailboxA, "messages", a1, "updated"),
		mailNote(mailboxB, "messages", b1, "created"),
		mailNote(mailboxA, "events", ev, "created"),
		mailNote(mailboxB, "messages", gone, "deleted"),
		mailNote(mailboxA, "messages", live, "deleted"),
	}
	r := e.invokeMessage(msg(message.KindNotifications, ns...))
	if n := e.fg.Count("POST", "/v1.0/$batch"); n != 1 {
		t.Errorf("%d $batch calls, want 1 for both mailboxes", n)
	}
	if n := e.fg.CountBatchItems("GET", "/v1.0/users/"); n != 5 {
		t.Errorf("%d items read, want 5 (three notifications of one edit make one read)", n)
	}
	byID := map[string]message.Event{}
	for _, ev := range r.events {
		byID[ev.ResourceID] = ev
	}
	if len(r.events) != 5 {
		t.Fatalf("%d events, want 5: %+v", len(r.events), r.events)
	}
	for id, want := range map[string]struct{ res, ct, mailbox string }{
		a1: {"messages", "updated", mailboxA}, b1: {"messages", "created", mailboxB}, ev: {"events", "created", mailboxA},
		gone: {"messages", "deleted", mailboxB}, live: {"messages", "updated", mailboxA},
	} {
		got, ok := byID[id]
		if !ok || got.Resource != want.res || string(got.ChangeType) != want.ct || got.Context[family.MailboxContext] != want.mailbox {
			t.Errorf("event for %s: %+v, want %+v", id[:12], got, want)
		}
	}
	m := byID[a1]
	if m.Field != "message" || m.Object["subject"] != "Quote" || m.Object["isRead"] != true || m.Object["bodyPreview"] != nil {
		t.Errorf("message event carries %q %v", m.Field, m.Object)
	}
	if byID[gone].Object != nil {
		t.Errorf("a confirmed delete carries no object: %v", byID[gone].Object)
	}
	if byID[ev].Field != "event" || byID[ev].Object["subject"] != "Review" {
		t.Errorf("calendar event: %q %v", byID[ev].Field, byID[ev].Object)
	}
	b, _ := json.Marshal(m)
	if !strings.Contains(string(b), `"mailbox":"`+mailboxA+`"`) || !strings.Contains(string(b), `"message":{`) {
		t.Errorf("event JSON %s", b)
	}
}

func TestMailboxNotificationsOffTheGrammarNeverReachGraph(t *testing.T) {
	e := mailEnvQW(t)
	bad := mailNote(mailboxA, "messages", "AAMk..%2F..%2Fdrives", "updated")
	bad.Resource = "Users/" + mailboxA + "/Messages/../../drives"
	r := e.invokeMessage(msg(message.KindNotifications, bad))
	if len(r.events) != 0 || e.fg.Count("", "/v1.0/") != 0 {
		t.Fatalf("%d events, %d Graph calls", len(r.events), e.fg.Count("", "/v1.0/"))
	}
	if out := e.enqueuedTo(e.poison); len(out) != 1 {
		t.Fatalf("poisoned %d messages, want 1", len(out))
	}
}

// TestMailboxMissedIsCaughtUp: a missed lifecycle event of a mailbox subscription re-lists the mailbox's
// recent items as work, and that work becomes events like any notification's.
func TestMailboxMissedIsCaughtUp(t *testing.T) {
	var keeper *subscription.Keeper
	var queued [][]byte
	e := newEnv(t,
		withGraph(func(o *fakegraph.Options) { o.AppRoles = []string{"Mail.Read"} }),
		withSettings(map[string]string{config.Mailboxes: mailboxA, config.NotificationURL: "https://example.test/api/webhook", config.ClientState: testClientState}),
		withDeps(func(d *Deps) {
			gc := func() (*graph.Client, error) { g, err := d.Graph(); return g.(*graph.Client), err }
			keeper = subscription.New(d.Config, func() (subscription.Graph, error) { return gc() }, nil, time.Now)
			keeper.SetMailboxes(subscription.NewMailboxKeeper(d.Config, func() (subscription.MailboxGraph, error) { return gc() },
				&subscription.MemoryRefusals{}, time.Now, subscription.MailboxOptions{}))
			d.Subscriptions = keeper
			g, _ := gc()
			d.CatchUp = &mailbox.CatchUp{Lister: g, Tenant: testTenant, Now: time.Now,
				Enqueue: func(_ context.Context, text []byte) error { queued = append(queued, text); return nil }}
		}))
	e.fg.SeedSubscription(currentMailboxSub(e, time.Now()))
	var ids []string
	for i := range 3 {
		ids = append(ids, e.fg.AddMessage(mailboxA, fakegraph.MailItem{Props: map[string]any{"subject": fmt.Sprint("missed ", i)}}))
	}
	r := e.invokeMessage(lifecycleMsg(nil, string(graph.Missed)))
	if len(r.logs) == 0 || !strings.Contains(r.logs[0], "caught up users/"+mailboxA+"/messages (3 items queued)") {
		t.Fatalf("logs %q", r.logs)
	}
	if len(queued) != 1 {
		t.Fatalf("%d catch-up messages, want 1", len(queued))
	}
	var m message.Message
	if err := json.Unmarshal(queued[0], &m); err != nil || m.Kind != message.KindNotifications || len(m.Notifications) != 3 {
		t.Fatalf("catch-up message %s (%v)", queued[0], err)
	}
	r = e.invokeMessage(&m)
	if len(r.events) != 3 {
		t.Fatalf("%d events from the catch-up, want 3", len(r.events))
	}
	for _, ev := range r.events {
		if ev.Resource != "messages" || ev.Context[family.MailboxContext] != mailboxA || !slices.Contains(ids, ev.ResourceID) {
			t.Errorf("event %+v", ev)
		}
	}
	// A reauthorizationRequired renews the one subscription with one PATCH.
	patches := e.fg.Count("PATCH", "/v1.0/subscriptions/")
	r = e.invokeMessage(lifecycleMsg(nil, string(graph.ReauthorizationRequired)))
	if e.fg.Count("PATCH", "/v1.0/subscriptions/") != patches+1 || !strings.Contains(r.logs[0], "renewed mailbox subscription") {
		t.Fatalf("reauthorization: %d PATCHes, logs %q", e.fg.Count("PATCH", "/v1.0/subscriptions/")-patches, r.logs)
	}
}

// A missed whose catch-up failed is retried, and the retry is not refused by the rationing the missed
// took (the real keeper's, its clock stopped so that the retry falls within the interval): it catches up.
func TestMailboxMissedCatchUpRetriedAfterFailure(t *testing.T) {
	var (
		mu      sync.Mutex
		queued  [][]byte
		failing = true
	)
	start := time.Now()
	e := newEnv(t,
		withGraph(func(o *fakegraph.Options) { o.AppRoles = []string{"Mail.Read"} }),
		withSettings(map[string]string{config.Mailboxes: mailboxA, config.NotificationURL: "https://example.test/api/webhook", config.ClientState: testClientState}),
		withDeps(func(d *Deps) {
			gc := func() (*graph.Client, error) { g, err := d.Graph(); return g.(*graph.Client), err }
			stopped := func() time.Time { return start }
			keeper := subscription.New(d.Config, func() (subscription.Graph, error) { return gc() }, nil, stopped)
			keeper.SetMailboxes(subscription.NewMailboxKeeper(d.Config, func() (subscription.MailboxGraph, error) { return gc() },
				&subscription.MemoryRefusals{}, stopped, subscription.MailboxOptions{}))
			d.Subscriptions = keeper
			g, _ := gc()
			d.CatchUp = &mailbox.CatchUp{Lister: g, Tenant: testTenant, Now: time.Now,
				Enqueue: func(_ context.Context, text []byte) error {
					mu.Lock()
					defer mu.Unlock()
					if failing {
						return errors.New("queue unavailable")
					}
					queued = append(queued, text)
					return nil
				}}
		}))
	e.fg.SeedSubscription(currentMailboxSub(e, start))
	e.fg.AddMessage(mailboxA, fakegraph.MailItem{Props: map[string]any{"subject": "missed"}})

	r := e.invokeMessage(lifecycleMsg(nil, string(graph.Missed)))
	if len(r.logs) < 2 || !strings.Contains(r.logs[1], "re-enqueued 1") {
		t.Fatalf("logs %q", r.logs)
	}
	mu.Lock()
	failing = false
	mu.Unlock()
	_, delivered := e.drain(20 * time.Second)
	mu.Lock()
	defer mu.Unlock()
	if len(delivered) != 1 || len(queued) != 1 {
		t.Fatalf("re-delivered %d messages, %d catch-up messages; want 1 and 1", len(delivered), len(queued))
	}
	var m message.Message
	if err := json.Unmarshal(queued[0], &m); err != nil || m.Kind != message.KindNotifications || len(m.Notifications) != 1 {
		t.Errorf("catch-up message %s (%v)", queued[0], err)
	}
}

// currentMailboxSub is mailboxA's messages subscription as the keeper makes it (its clientState fingerprint
// in the notification URL, the lifecycle URL the settings default to), so that lifecycle events act on it.
func currentMailboxSub(e *env, now time.Time) fakegraph.Subscription {
	return fakegraph.Subscription{ID: testSub, Resource: "users/" + mailboxA + "/messages", ChangeType: "created,updated,deleted",
		NotificationURL:          "https://example.test/api/webhook?cs=" + subscription.Fingerprint(e.cfg.ClientState),
		LifecycleNotificationURL: e.cfg.LifecycleNotificationURL, ExpirationDateTime: now.Add(48 * time.Hour)}
}
