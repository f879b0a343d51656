package graph

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestListSubscriptionsFollowsPages(t *testing.T) {
	var base string
	c, rec, srv := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("$skiptoken") {
		case "":
			writeJSON(w, 200, map[string]any{"value": []any{map[string]any{"id": "s1", "resource": "users", "clientState": nil,
				"expirationDateTime": "2026-01-20T10:00:00.1234567Z"}},
				"@odata.nextLink": base + "/subscriptions?$skiptoken=p2"})
		case "p2":
			writeJSON(w, 200, map[string]any{"value": []any{map[string]any{"id": "s2"}, map[string]any{"id": "s3"}},
				"@odata.nextLink": base + "/subscriptions?$skiptoken=p3"})
		case "p3":
			writeJSON(w, 200, map[string]any{"value": []any{map[string]any{"id": "s4"}}})
		}
	}), ClientOptions{})
	base = srv.URL + "/v1.0"
	subs, err := c.ListSubscriptions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range subs {
		ids = append(ids, s.ID)
	}
	if strings.Join(ids, ",") != "s1,s2,s3,s4" || rec.count() != 3 {
		t.Errorf("ids %v after %d requests", ids, rec.count())
	}
	if want := time.Date(2026, 1, 20, 10, 0, 0, 123456700, time.UTC); !subs[0].ExpirationDateTime.Equal(want) || subs[0].ClientState != "" {
		t.Errorf("first = %+v", subs[0])
	}
	if p := rec.all()[0]; p.Method != "GET" || p.Path != "/v1.0/subscriptions" || p.RawQuery != "" {
		t.Errorf("first request %+v", p)
	}
}

func TestNextLinkOnForeignHostRefused(t *testing.T) {
	for _, link := range []string{
		"https://graph.evil.test/v1.0/subscriptions?$skiptoken=x",
		"http://HOST/v1.0/subscriptions?$skiptoken=x", // same host, plain http
		"/v1.0/subscriptions?$skiptoken=x",            // not absolute
	} {
		var host string
		c, rec, srv := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 200, map[string]any{"value": []any{map[string]any{"id": "s1"}},
				"@odata.nextLink": strings.Replace(link, "HOST", host, 1)})
		}), ClientOptions{})
		host = strings.TrimPrefix(srv.URL, "https://")
		_, err := c.ListSubscriptions(t.Context())
		if KindOf(err) != KindBadRequest || rec.count() != 1 {
			t.Errorf("%s: err %v after %d requests", link, err, rec.count())
		}
		if strings.Contains(err.Error(), "skiptoken") {
			t.Errorf("the error repeats the link's token: %v", err)
		}
	}
}

func TestCreateSubscription(t *testing.T) {
	c, rec, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in map[string]any
		_ = json.NewDecoder(r.Body).Decode(&in)
		in["id"] = "new-id"
		in["applicationId"] = "app"
		in["creatorId"] = "sp"
		in["clientState"] = nil
		writeJSON(w, http.StatusCreated, in)
	}), ClientOptions{})
	exp := time.Date(2026, 1, 20, 11, 0, 0, 987654321, time.FixedZone("CET", 3600))
	got, err := c.CreateSubscription(t.Context(), Subscription{ID: "ignored", ApplicationID: "ignored",
		Resource: "users", ChangeType: "updated,deleted", NotificationURL: "https://h/api/webhook?code=k",
		LifecycleNotificationURL: "https://h/api/webhook?code=k", ClientState: "cs", LatestSupportedTLSVersion: "v1_2",
		ExpirationDateTime: exp})
	if err != nil {
		t.Fatal(err)
	}
	r := rec.all()[0]
	if r.Method != "POST" || r.Path != "/v1.0/subscriptions" {
		t.Errorf("request %s %s", r.Method, r.Path)
	}
	var sent map[string]any
	_ = json.Unmarshal(r.Body, &sent)
	want := map[string]any{"changeType": "updated,deleted", "notificationUrl": "https://h/api/webhook?code=k",
		"lifecycleNotificationUrl": "https://h/api/webhook?code=k", "resource": "users",
		"expirationDateTime": "2026-01-20T10:00:00Z", "clientState": "cs", "latestSupportedTlsVersion": "v1_2"}
	if len(sent) != len(want) {
		t.Errorf("sent %v, want exactly %v", sent, want)
	}
	for k, v := range want {
		if sent[k] != v {
			t.Errorf("sent %s = %v, want %v", k, sent[k], v)
		}
	}
	if got.ID != "new-id" || got.CreatorID != "sp" || got.ApplicationID != "app" || !got.ExpirationDateTime.Equal(exp.Truncate(time.Second)) {
		t.Errorf("got %+v", got)
	}
	if s := got.String(); strings.Contains(s, "cs") && strings.Contains(s, "clientState") {
		t.Errorf("String %q", s)
	}
}

func TestUpdateDeleteReauthorize(t *testing.T) {
	c, rec, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == "PATCH":
			writeJSON(w, 200, map[string]any{"id": "s1", "expirationDateTime": "2026-02-01T00:00:00Z"})
		case r.Method == "DELETE" && r.URL.Path == "/v1.0/subscriptions/gone":
			graphError(w, 404, "ResourceNotFound", "The object was not found.")
		case r.Method == "DELETE":
			w.WriteHeader(http.StatusNoContent)
		case r.Method == "POST" && strings.HasSuffix(r.URL.Path, "/reauthorize"):
			w.WriteHeader(http.StatusNoContent)
		default:
			http.NotFound(w, r)
		}
	}), ClientOptions{})
	ctx := t.Context()
	exp := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	s, err := c.UpdateSubscription(ctx, "s1", SubscriptionUpdate{ExpirationDateTime: exp})
	if err != nil || !s.ExpirationDateTime.Equal(exp) {
		t.Fatalf("update: %+v, %v", s, err)
	}
	if body := string(rec.all()[0].Body); body != `{"expirationDateTime":"2026-02-01T00:00:00Z"}` {
		t.Errorf("PATCH body %s", body)
	}
	if _, err := c.UpdateSubscription(ctx, "s1", SubscriptionUpdate{}); KindOf(err) != KindBadRequest {
		t.Errorf("empty update: %v", err)
	}
	if err := c.DeleteSubscription(ctx, "s1"); err != nil {
		t.Errorf("delete: %v", err)
	}
	if err := c.DeleteSubscription(ctx, "gone"); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete gone: %v", err)
	}
	if err := c.ReauthorizeSubscription(ctx, "s1"); err != nil {
		t.Errorf("reauthorize: %v", err)
	}
	if err := c.DeleteSubscription(ctx, ".."); KindOf(err) != KindBadRequest {
		t.Errorf("delete ..: %v", err)
	}
	var paths []string
	for _, r := range rec.all() {
		paths = append(paths, r.Method+" "+r.Path)
	}
	want := "PATCH /v1.0/subscriptions/s1,DELETE /v1.0/subscriptions/s1,DELETE /v1.0/subscriptions/gone,POST /v1.0/subscriptions/s1/reauthorize"
	if got := strings.Join(paths, ","); got != want {
		t.Errorf("requests\n%s\nwant\n%s", got, want)
	}
}
