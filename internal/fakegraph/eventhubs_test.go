package fakegraph

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// hubSink records events; the first failFirst calls fail.
type hubSink struct {
	mu        sync.Mutex
	events    []sentEvent
	failFirst int
	calls     int
}

type sentEvent struct {
	namespace, hub string
	body           []byte
}

func (h *hubSink) SendEvent(_ context.Context, namespace, hub string, body []byte) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls++
	if h.calls <= h.failFirst {
		return errors.New("hub unavailable")
	}
	h.events = append(h.events, sentEvent{namespace, hub, append([]byte(nil), body...)})
	return nil
}

func (h *hubSink) Events() []sentEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]sentEvent(nil), h.events...)
}

func eventNotifications(t *testing.T, body []byte) []map[string]any {
	t.Helper()
	var env struct {
		Value            []map[string]any `json:"value"`
		ValidationTokens []string         `json:"validationTokens"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("event body %s: %v", body, err)
	}
	return env.Value
}

const testHubNamespace = "contoso-graph.servicebus.windows.net"

func TestEventHubSubscriptionGetsAValidationEventNotAHandshake(t *testing.T) {
	sink := &hubSink{}
	s := newTestServer(t, func(o *Options) { o.EventHubs = sink; o.CoalesceWindow = -1 })
	hubURL := EventHubURL(testHubNamespace, "graph-events", "contoso.onmicrosoft.com")
	body := subBody(hubURL, "users", s.now().Add(24*time.Hour))
	body["lifecycleNotificationUrl"] = hubURL
	r := createSub(t, s, token(t, s), body)
	if r.Status != 201 {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	id := r.JSON(t)["id"].(string)
	evs := sink.Events()
	if len(evs) != 1 || evs[0].namespace != testHubNamespace || evs[0].hub != "graph-events" {
		t.Fatalf("events = %+v, want one validation event for the hub", evs)
	}
	ns := eventNotifications(t, evs[0].body)
	if len(ns) != 1 || ns[0]["subscriptionId"] != "NA" || ns[0]["clientState"] != "NA" || ns[0]["resource"] != "NA" ||
		ns[0]["subscriptionExpirationDateTime"] != "NA" || !strings.HasPrefix(ns[0]["changeType"].(string), "Validation: Testing client application reachability") {
		t.Errorf("validation event = %s", evs[0].body)
	}
	if ds := s.Deliveries(); len(ds) != 1 || ds[0].Kind != "validation" || ds[0].SubscriptionID != id || ds[0].Outcome != "delivered" {
		t.Errorf("deliveries = %+v", ds)
	}

	// Changes and lifecycle events arrive as event bodies, one changeNotificationCollection each.
	s.AddUser(User{ID: "u1", Props: map[string]any{"displayName": "One"}})
	s.Flush()
	if err := s.WaitDelivered(ctxT(t)); err != nil { // deliveries run concurrently: keep the order known
		t.Fatal(err)
	}
	s.SendLifecycle(id, "missed")
	s.Flush()
	if err := s.WaitDelivered(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	evs = sink.Events()
	if len(evs) != 3 {
		t.Fatalf("%d events, want validation + change + lifecycle", len(evs))
	}
	change := eventNotifications(t, evs[1].body)
	if len(change) != 1 || change[0]["subscriptionId"] != id || change[0]["clientState"] != "client-state-0123456789" || change[0]["changeType"] != "updated" {
		t.Errorf("change event = %s", evs[1].body)
	}
	if lc := eventNotifications(t, evs[2].body); len(lc) != 1 || lc[0]["lifecycleEvent"] != "missed" {
		t.Errorf("lifecycle event = %s", evs[2].body)
	}
	// The subscription keeps the URL as given (the timer compares it).
	if subs := s.Subscriptions(); len(subs) != 1 || subs[0].NotificationURL != hubURL {
		t.Errorf("stored %+v", subs)
	}
}

func TestEventHubDeliveryIsRetried(t *testing.T) {
	sink := &hubSink{}
	s := newTestServer(t, func(o *Options) { o.EventHubs = sink; o.CoalesceWindow = -1 })
	r := createSub(t, s, token(t, s), subBody(EventHubURL(testHubNamespace, "h", "contoso.com"), "users", s.now().Add(24*time.Hour)))
	if r.Status != 201 {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	sink.mu.Lock()
	sink.failFirst = sink.calls + 2
	sink.mu.Unlock()
	s.AddUser(User{ID: "u1"})
	s.Flush()
	if err := s.WaitDelivered(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	var outcomes []string
	for _, d := range s.Deliveries() {
		if d.Kind == "notification" {
			outcomes = append(outcomes, d.Outcome)
		}
	}
	if strings.Join(outcomes, ",") != "failed,failed,delivered" {
		t.Errorf("outcomes = %v", outcomes)
	}
	if n := len(sink.Events()); n != 2 {
		t.Errorf("%d events stored, want validation + change", n)
	}
}

func TestEventHubURLsRefused(t *testing.T) {
	cases := map[string]string{
		"EventHub:https://ns.servicebus.windows.net/eventhubname/h":                        "tenantId",
		"EventHub:https://ns.servicebus.windows.net/h?tenantId=contoso.com":                "/eventhubname/<hub>",
		"EventHub:http://ns.servicebus.windows.net/eventhubname/h?tenantId=contoso.com":    "EventHub:https://",
		"EventHub:https://kv.vault.azure.net/secrets/hubcs?tenantId=contoso.com":           "Key Vault",
		"eventhub:https://ns.servicebus.windows.net/eventhubname/?tenantId=contoso.com":    "/eventhubname/<hub>",
		"EventHub:https://ns.servicebus.windows.net/eventhubname/a/b?tenantId=contoso.com": "/eventhubname/<hub>",
	}
	s := newTestServer(t, func(o *Options) { o.EventHubs = &hubSink{} })
	tok := token(t, s)
	for u, want := range cases {
		r := createSub(t, s, tok, subBody(u, "users", s.now().Add(24*time.Hour)))
		if _, msg := r.ErrorCodeMsg(t); r.Status != 400 || !strings.Contains(msg, want) {
			t.Errorf("%s: %d %s, want 400 naming %s", u, r.Status, r.Body, want)
		}
	}
	if n := len(s.Subscriptions()); n != 0 {
		t.Errorf("%d subscriptions created", n)
	}
}

func TestEventHubUnreachableFailsTheCreate(t *testing.T) {
	for name, sink := range map[string]EventHubSink{"no sink": nil, "failing sink": &hubSink{failFirst: 1}} {
		t.Run(name, func(t *testing.T) {
			s := newTestServer(t, func(o *Options) { o.EventHubs = sink })
			r := createSub(t, s, token(t, s), subBody(EventHubURL(testHubNamespace, "h", "contoso.com"), "users", s.now().Add(24*time.Hour)))
			if code, _ := r.ErrorCodeMsg(t); r.Status != 400 || code != "ValidationError" {
				t.Errorf("create: %d %s, want 400 ValidationError", r.Status, r.Body)
			}
			if n := len(s.Subscriptions()); n != 0 {
				t.Errorf("%d subscriptions created", n)
			}
		})
	}
}

func TestPatchToAnEventHubSendsTheValidationEvent(t *testing.T) {
	sink := &hubSink{}
	s := newTestServer(t, func(o *Options) { o.EventHubs = sink })
	rx := newReceiver(t)
	id := subscribe(t, s, rx, "users")
	hubURL := EventHubURL(testHubNamespace, "moved", "contoso.com")
	r := call(t, s, token(t, s), "PATCH", "/v1.0/subscriptions/"+id, map[string]any{"notificationUrl": hubURL})
	if r.Status != 200 {
		t.Fatalf("patch: %d %s", r.Status, r.Body)
	}
	if evs := sink.Events(); len(evs) != 1 || evs[0].hub != "moved" || eventNotifications(t, evs[0].body)[0]["subscriptionId"] != "NA" {
		t.Errorf("events = %+v", evs)
	}
	if len(rx.Validations()) != 1 {
		t.Errorf("the event hub got an HTTP handshake")
	}
}
