package fakegraph

import (
	"bytes"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"
)

func subscribe(t *testing.T, s *Server, rx *receiver, resource string) string {
	t.Helper()
	r := createSub(t, s, token(t, s), subBody(rx.URL+"/hook?code=k", resource, s.now().Add(24*time.Hour)))
	if r.Status != 201 {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	return r.JSON(t)["id"].(string)
}

func TestUserChangesNotifyBatched(t *testing.T) {
	s := newTestServer(t, func(o *Options) {
		o.NotificationBatchSize = 2
		o.CoalesceWindow = -1 // only Flush sends: deterministic batching
	})
	rx := newReceiver(t)
	subID := subscribe(t, s, rx, "users")
	rxOne := newReceiver(t)
	oneID := subscribe(t, s, rxOne, "users/u2")

	s.AddUser(User{ID: "u1", Props: map[string]any{"displayName": "One"}})
	s.AddUser(User{ID: "u2", Props: map[string]any{"displayName": "Two"}})
	s.UpdateUser("u1", map[string]any{"jobTitle": "Boss"})
	if s.Pending() != 4 {
		t.Fatalf("pending %d", s.Pending())
	}
	s.Flush()
	if err := s.WaitDelivered(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if b := rx.Bodies(); len(b) != 2 {
		t.Fatalf("%d POSTs, want 2 (batch size 2)", len(b))
	}
	ns := rx.notifications(t)
	if len(ns) != 3 {
		t.Fatalf("%d notifications", len(ns))
	}
	limit := new(big.Int).Lsh(big.NewInt(1), 53)
	seen := map[string]bool{}
	for _, n := range ns {
		rd := n["resourceData"].(map[string]any)
		id := rd["id"].(string)
		if n["subscriptionId"] != subID || n["clientState"] != "client-state-0123456789" || n["tenantId"] != testTenant ||
			n["changeType"] != "updated" || n["resource"] != "Users/"+id || n["subscriptionExpirationDateTime"] == nil {
			t.Fatalf("notification %v", n)
		}
		if rd["@odata.type"] != "#Microsoft.Graph.User" || rd["@odata.id"] != "Users/"+id || rd["organizationId"] != testTenant || rd["eventTime"] == nil {
			t.Fatalf("resourceData %v", rd)
		}
		seq, ok := new(big.Int).SetString(string(rd["sequenceNumber"].(json.Number)), 10)
		if !ok || seq.Cmp(limit) <= 0 || seen[seq.String()] { // batches may arrive in any order: unique, not ordered
			t.Fatalf("sequenceNumber %v", rd["sequenceNumber"])
		}
		seen[seq.String()] = true
	}
	one := rxOne.notifications(t)
	if len(one) != 1 || one[0]["subscriptionId"] != oneID {
		t.Fatalf("users/u2 subscription got %v", one)
	}
	// The query of the notification URL is kept on deliveries.
	for _, d := range s.Deliveries() {
		if d.Kind == "notification" && !strings.Contains(d.URL, "?code=k") {
			t.Fatalf("delivery URL %s", d.URL)
		}
	}
}

func TestDeleteSemantics(t *testing.T) {
	s := newTestServer(t, nil)
	rx := newReceiver(t)
	subscribe(t, s, rx, "users")
	s.AddUser(User{ID: "u1"})
	s.SoftDeleteUser("u1")
	s.RestoreUser("u1")
	s.SoftDeleteUser("u1")
	s.PermanentlyDeleteUser("u1")
	if err := s.WaitDelivered(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, n := range rx.notifications(t) {
		types = append(types, n["changeType"].(string))
	}
	if got := strings.Join(types, ","); got != "updated,updated,updated,updated,deleted" {
		t.Fatalf("change types %s", got)
	}
}

func TestDeliveryRetriedAfter500(t *testing.T) {
	s := newTestServer(t, nil)
	rx := newReceiver(t)
	rx.statuses = []int{500, 503}
	subscribe(t, s, rx, "users")
	s.AddUser(User{ID: "u1"})
	if err := s.WaitDelivered(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	var outcomes []string
	for _, d := range s.Deliveries() {
		if d.Kind == "notification" {
			outcomes = append(outcomes, d.Outcome)
		}
	}
	if got := strings.Join(outcomes, ","); got != "failed,failed,delivered" {
		t.Fatalf("outcomes %s", got)
	}
	if b := rx.Bodies(); len(b) != 3 || !bytes.Equal(b[0], b[2]) {
		t.Fatalf("retries must resend the same body: %d bodies", len(b))
	}
}

func TestSlowReplyCountsAsFailure(t *testing.T) {
	s := newTestServer(t, func(o *Options) { o.DeliveryTimeout = 200 * time.Millisecond })
	rx := newReceiver(t)
	rx.hangFirst = 1
	subscribe(t, s, rx, "users")
	s.AddUser(User{ID: "u1"})
	if err := s.WaitDelivered(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	var ds []Delivery
	for _, d := range s.Deliveries() {
		if d.Kind == "notification" {
			ds = append(ds, d)
		}
	}
	if len(ds) != 2 || ds[0].Outcome != "failed" || ds[0].Status != 0 || !strings.Contains(ds[0].Err, "no reply within") || ds[1].Outcome != "delivered" {
		t.Fatalf("deliveries %+v", ds)
	}
}

func TestDeliveryDroppedAfterWindow(t *testing.T) {
	s := newTestServer(t, func(o *Options) {
		o.DeliveryRetryWindow = time.Second
		o.DeliveryBackoff = 100 * time.Millisecond
	})
	rx := newReceiver(t)
	rx.statuses = []int{500, 500, 500, 500, 500, 500, 500, 500}
	subscribe(t, s, rx, "users")
	s.AddUser(User{ID: "u1"})
	if err := s.WaitDelivered(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	ds := s.Deliveries()
	last := ds[len(ds)-1]
	if last.Outcome != "dropped" || last.Attempt < 2 {
		t.Fatalf("last delivery %+v", last)
	}
}

func TestDropNotificationsAndLifecycle(t *testing.T) {
	s := newTestServer(t, nil)
	rx, life := newReceiver(t), newReceiver(t)
	b := subBody(rx.URL, "users", time.Now().Add(24*time.Hour))
	b["lifecycleNotificationUrl"] = life.URL
	r := createSub(t, s, token(t, s), b)
	id := r.JSON(t)["id"].(string)

	s.DropNotifications(true)
	s.AddUser(User{ID: "u1"})
	s.DropNotifications(false)
	s.SendLifecycle(id, "reauthorizationRequired")
	if err := s.WaitDelivered(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if len(rx.Bodies()) != 0 {
		t.Fatal("dropped notification was delivered")
	}
	if !s.NeedsReauthorization(id) {
		t.Fatal("reauthorization not pending")
	}
	var env struct {
		Value            []map[string]any `json:"value"`
		ValidationTokens []string         `json:"validationTokens"`
	}
	bodies := life.Bodies()
	if len(bodies) != 1 {
		t.Fatalf("%d lifecycle POSTs", len(bodies))
	}
	json.Unmarshal(bodies[0], &env)
	n := env.Value[0]
	if n["lifecycleEvent"] != "reauthorizationRequired" || n["subscriptionId"] != id || n["clientState"] == nil || n["changeType"] != nil || len(env.ValidationTokens) != 1 {
		t.Fatalf("lifecycle %s", bodies[0])
	}
	if r := call(t, s, token(t, s), "POST", "/v1.0/subscriptions/"+id+"/reauthorize", nil); r.Status != 204 || s.NeedsReauthorization(id) {
		t.Fatalf("reauthorize: %d", r.Status)
	}
	s.SendLifecycle(id, "subscriptionRemoved")
	if len(s.Subscriptions()) != 0 {
		t.Fatal("subscriptionRemoved left the subscription")
	}
	dropped := 0
	for _, d := range s.Deliveries() {
		if d.Outcome == "dropped" {
			dropped++
		}
	}
	if dropped != 1 {
		t.Fatalf("%d dropped deliveries recorded", dropped)
	}
}

func TestForge(t *testing.T) {
	s := newTestServer(t, nil)
	rx := newReceiver(t)
	resp, err := s.Forge(rx.URL, []byte(`{"value":[{"clientState":"forged"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || len(rx.Bodies()) != 1 {
		t.Fatalf("forge: %d", resp.StatusCode)
	}
	if d := s.Deliveries(); len(d) != 1 || d[0].Kind != "forged" {
		t.Fatalf("deliveries %+v", d)
	}
}

func TestCloseStopsRetries(t *testing.T) {
	o := NewOptions(testTenant, testClient, testSecret)
	o.DeliveryBackoff = time.Hour
	s := New(o)
	rx := newReceiver(t)
	rx.statuses = []int{500}
	subscribe(t, s, rx, "users")
	s.AddUser(User{ID: "u1"})
	if err := s.WaitFor(ctxT(t), func() bool { return len(rx.Bodies()) == 1 }); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	if s.Pending() != 0 {
		t.Fatalf("pending %d after Close", s.Pending())
	}
}

func TestTenantFieldVariant(t *testing.T) {
	s := newTestServer(t, func(o *Options) { o.NotificationTenantField = "organizationId"; o.DuplicateNotifications = 1 })
	rx := newReceiver(t)
	subscribe(t, s, rx, "users")
	s.AddUser(User{ID: "u1"})
	if err := s.WaitDelivered(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	ns := rx.notifications(t)
	if len(ns) != 2 || ns[0]["tenantId"] != nil || ns[0]["organizationId"] != testTenant {
		t.Fatalf("%v", ns)
	}
}
