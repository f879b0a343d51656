package fakegraph

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestCreateSubscriptionHandshake(t *testing.T) {
	clock := newFakeClock()
	s := newTestServer(t, func(o *Options) { o.Clock = clock.Now })
	tok := token(t, s)
	rx := newReceiver(t)
	notify := rx.URL + "/api/webhook?code=fn%2Bkey&tenant=contoso"

	body := subBody(notify, "users", clock.Now().Add(10*time.Minute)) // < 45 min: raised
	body["lifecycleNotificationUrl"] = notify                         // same URL: two handshakes
	r := createSub(t, s, tok, body)
	if r.Status != 201 {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	m := r.JSON(t)
	if m["clientState"] != "client-state-0123456789" || m["applicationId"] != testClient || m["creatorId"] != s.ServicePrincipalID() ||
		m["latestSupportedTlsVersion"] != "v1_2" || m["id"] == "" {
		t.Fatalf("created %v", m)
	}
	exp, _ := time.Parse(time.RFC3339Nano, m["expirationDateTime"].(string))
	if !exp.Equal(clock.Now().Add(45 * time.Minute)) {
		t.Fatalf("expiry %v, want now+45m", exp)
	}
	v := rx.Validations()
	if len(v) != 2 {
		t.Fatalf("%d validation requests, want 2", len(v))
	}
	for _, req := range v {
		tokv := req.URL.Query().Get("validationToken")
		if !strings.Contains(tokv, " ") || !strings.Contains(tokv, ":") {
			t.Fatalf("token %q lacks spaces or ':'", tokv)
		}
		if !strings.HasPrefix(req.URL.RawQuery, "code=fn%2Bkey&tenant=contoso&validationToken=") {
			t.Fatalf("original query not preserved: %q", req.URL.RawQuery)
		}
		if req.Header.Get("Content-Type") != "text/plain; charset=utf-8" || req.Method != "POST" || req.ContentLength > 0 {
			t.Fatalf("validation request %s %v len %d", req.Method, req.Header, req.ContentLength)
		}
	}
	subs := s.Subscriptions()
	if len(subs) != 1 || subs[0].ClientState != "client-state-0123456789" || subs[0].LifecycleNotificationURL != notify {
		t.Fatalf("stored %+v", subs)
	}
	if n := len(s.Deliveries()); n != 2 {
		t.Fatalf("%d handshake deliveries recorded", n)
	}
}

func TestCreateSubscriptionHandshakeFailures(t *testing.T) {
	s := newTestServer(t, func(o *Options) { o.HandshakeTimeout = 300 * time.Millisecond })
	tok := token(t, s)
	exp := time.Now().Add(24 * time.Hour)
	cases := []struct {
		name string
		hook func(w http.ResponseWriter, r *http.Request) bool
		want string
	}{
		{"403", func(w http.ResponseWriter, r *http.Request) bool { w.WriteHeader(403); return true },
			"Subscription validation request failed. Must respond with 200 OK to this request."},
		{"timeout", func(w http.ResponseWriter, r *http.Request) bool { <-r.Context().Done(); return true },
			"Subscription validation request timed out."},
		{"still encoded", func(w http.ResponseWriter, r *http.Request) bool {
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte(strings.SplitN(r.URL.RawQuery, "validationToken=", 2)[1]))
			return true
		}, "Validation error: Response must exactly match validationToken query parameter."},
		{"html", func(w http.ResponseWriter, r *http.Request) bool {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte(r.URL.Query().Get("validationToken")))
			return true
		}, "Content-Type text/plain"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rx := newReceiver(t)
			rx.onValidate = c.hook
			r := createSub(t, s, tok, subBody(rx.URL, "users", exp))
			code, msg := r.ErrorCodeMsg(t)
			if r.Status != 400 || code == "" || !strings.Contains(msg, c.want) {
				t.Fatalf("%d %s", r.Status, r.Body)
			}
		})
	}
	if n := len(s.Subscriptions()); n != 0 {
		t.Fatalf("%d subscriptions after failed handshakes", n)
	}
	// The lifecycle URL is validated too.
	good, bad := newReceiver(t), newReceiver(t)
	bad.onValidate = func(w http.ResponseWriter, r *http.Request) bool { w.WriteHeader(500); return true }
	b := subBody(good.URL, "users", exp)
	b["lifecycleNotificationUrl"] = bad.URL
	if r := createSub(t, s, tok, b); r.Status != 400 {
		t.Fatalf("bad lifecycle URL: %d", r.Status)
	}
}

func TestCreateSubscriptionValidation(t *testing.T) {
	s := newTestServer(t, nil)
	tok := token(t, s)
	rx := newReceiver(t)
	exp := time.Now().Add(24 * time.Hour)
	with := func(k string, v any) map[string]any {
		b := subBody(rx.URL, "users", exp)
		if v == nil {
			delete(b, k)
		} else {
			b[k] = v
		}
		return b
	}
	cases := []struct {
		name string
		body map[string]any
		msg  string
	}{
		{"created", with("changeType", "created,updated"), "Invalid 'changeType' attribute: 'created'"},
		{"http non-loopback", with("notificationUrl", "http://example.com/hook"), "HTTPS"},
		{"beyond max", with("expirationDateTime", time.Now().Add(41761*time.Minute).UTC().Format(time.RFC3339)), "41760"},
		{"no resource", with("resource", nil), "resource"},
		{"other resource", with("resource", "devices"), "resource"},
		{"clientState too long", with("clientState", strings.Repeat("x", 129)), "clientState"},
		{"rich", with("includeResourceData", true), "includeResourceData"},
	}
	for _, c := range cases {
		r := createSub(t, s, tok, c.body)
		code, msg := r.ErrorCodeMsg(t)
		if r.Status != 400 || code != "InvalidRequest" || !strings.Contains(msg, c.msg) {
			t.Errorf("%s: %d %s", c.name, r.Status, r.Body)
		}
	}
	if len(rx.Validations()) != 0 {
		t.Fatal("handshake ran for an invalid request")
	}
	// RejectExpiryBeyondMax off: accepted.
	s2 := newTestServer(t, func(o *Options) { o.RejectExpiryBeyondMax = false })
	if r := createSub(t, s2, token(t, s2), with("expirationDateTime", time.Now().Add(50000*time.Minute).UTC().Format(time.RFC3339))); r.Status != 201 {
		t.Fatalf("lenient max: %d %s", r.Status, r.Body)
	}
}

func TestDuplicateSubscription409(t *testing.T) {
	s := newTestServer(t, nil)
	tok := token(t, s)
	rx := newReceiver(t)
	exp := time.Now().Add(24 * time.Hour)
	r := createSub(t, s, tok, subBody(rx.URL, "users", exp))
	if r.Status != 201 {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	id := r.JSON(t)["id"].(string)
	b := subBody(rx.URL+"/other", "users", exp)
	b["changeType"] = "deleted,updated" // same set
	r = createSub(t, s, tok, b)
	if _, msg := r.ErrorCodeMsg(t); r.Status != 409 || msg != "Subscription Id "+id+" already exists for the requested combination" {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	// A different combination is fine; a planted duplicate is allowed.
	b["changeType"] = "updated"
	if r := createSub(t, s, tok, b); r.Status != 201 {
		t.Fatalf("different changeType: %d", r.Status)
	}
	s.SeedSubscription(Subscription{NotificationURL: rx.URL})
	if n := len(s.Subscriptions()); n != 3 {
		t.Fatalf("%d subscriptions", n)
	}
}

func TestQuota403(t *testing.T) {
	s := newTestServer(t, func(o *Options) { o.MaxSubscriptions = 1 })
	tok := token(t, s)
	rx := newReceiver(t)
	s.SeedSubscription(Subscription{NotificationURL: rx.URL, Resource: "users/a"})
	if r := createSub(t, s, tok, subBody(rx.URL, "users", time.Now().Add(time.Hour*24))); r.Status != 403 {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
}

func TestListSubscriptionsPaging(t *testing.T) {
	s := newTestServer(t, func(o *Options) { o.SubscriptionPageSize = 2 })
	tok := token(t, s)
	want := map[string]bool{}
	for i := range 5 {
		id := newGUID()
		want[id] = true
		s.SeedSubscription(Subscription{ID: id, Resource: "users/" + string(rune('a'+i)), NotificationURL: "https://hooks.example.com/x", ClientState: "secret-state-value"})
	}
	s.SeedSubscription(Subscription{ApplicationID: "another-app", NotificationURL: "https://hooks.example.com/y"})
	got := map[string]bool{}
	pages := 0
	next := "/v1.0/subscriptions"
	for next != "" {
		r := call(t, s, tok, "GET", next, nil)
		if r.Status != 200 {
			t.Fatalf("%s: %d %s", next, r.Status, r.Body)
		}
		pages++
		m := r.JSON(t)
		for _, v := range m["value"].([]any) {
			sub := v.(map[string]any)
			if sub["clientState"] != nil {
				t.Fatalf("clientState in list: %v", sub)
			}
			got[sub["id"].(string)] = true
		}
		next, _ = m["@odata.nextLink"].(string)
	}
	if pages != 3 || len(got) != 5 {
		t.Fatalf("pages %d, got %d subscriptions", pages, len(got))
	}
	for id := range want {
		if !got[id] {
			t.Fatalf("missing %s", id)
		}
	}
	if r := call(t, s, tok, "GET", "/v1.0/subscriptions?$top=1", nil); r.Status != 400 {
		t.Fatalf("query option: %d", r.Status)
	}
}

func TestPatchDeleteAndExpiry(t *testing.T) {
	clock := newFakeClock()
	s := newTestServer(t, func(o *Options) { o.Clock = clock.Now })
	tok := token(t, s)
	rx, rx2 := newReceiver(t), newReceiver(t)
	r := createSub(t, s, tok, subBody(rx.URL, "users", clock.Now().Add(time.Hour)))
	if r.Status != 201 {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	id := r.JSON(t)["id"].(string)
	path := "/v1.0/subscriptions/" + id

	newExp := clock.Now().Add(3 * 24 * time.Hour)
	r = call(t, s, tok, "PATCH", path, map[string]any{"expirationDateTime": newExp.Format(time.RFC3339)})
	if r.Status != 200 {
		t.Fatalf("patch: %d %s", r.Status, r.Body)
	}
	if got, _ := time.Parse(time.RFC3339, r.JSON(t)["expirationDateTime"].(string)); !got.Equal(newExp) {
		t.Fatalf("expiry %v", got)
	}
	if r := call(t, s, tok, "PATCH", path, map[string]any{"lifecycleNotificationUrl": rx.URL}); r.Status != 400 {
		t.Fatalf("lifecycle patch: %d", r.Status)
	}
	r = call(t, s, tok, "PATCH", path, map[string]any{"notificationUrl": rx2.URL})
	if r.Status != 200 || len(rx2.Validations()) != 1 {
		t.Fatalf("url patch: %d, %d handshakes", r.Status, len(rx2.Validations()))
	}
	if r := call(t, s, tok, "POST", path+"/reauthorize", nil); r.Status != 204 {
		t.Fatalf("reauthorize: %d", r.Status)
	}
	if r := call(t, s, tok, "GET", path, nil); r.Status != 200 || r.JSON(t)["notificationUrl"] != rx2.URL {
		t.Fatalf("get: %d %s", r.Status, r.Body)
	}

	clock.Advance(3*24*time.Hour + time.Second) // past expiry
	for _, m := range []string{"GET", "PATCH", "DELETE"} {
		r := call(t, s, tok, m, path, map[string]any{"expirationDateTime": clock.Now().Add(time.Hour).Format(time.RFC3339)})
		if r.Status != 404 {
			t.Fatalf("%s after expiry: %d", m, r.Status)
		}
		if c, _ := r.ErrorCodeMsg(t); c == "" {
			t.Fatalf("no Graph error body: %s", r.Body)
		}
	}
	if len(s.Subscriptions()) != 0 {
		t.Fatal("expired subscription still listed")
	}

	r = createSub(t, s, tok, subBody(rx.URL, "users", clock.Now().Add(time.Hour)))
	id = r.JSON(t)["id"].(string)
	if r := call(t, s, tok, "DELETE", "/v1.0/subscriptions/"+id, nil); r.Status != 204 {
		t.Fatalf("delete: %d", r.Status)
	}
	if r := call(t, s, tok, "GET", "/v1.0/subscriptions/"+id, nil); r.Status != 404 {
		t.Fatalf("get after delete: %d", r.Status)
	}
	s.SeedSubscription(Subscription{ID: "seeded"})
	s.DeleteSubscriptionSilently("seeded")
	if r := call(t, s, tok, "POST", "/v1.0/subscriptions/seeded/reauthorize", nil); r.Status != 404 {
		t.Fatalf("reauthorize after silent delete: %d", r.Status)
	}
}
