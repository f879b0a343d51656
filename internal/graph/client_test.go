package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// recorder counts and keeps the requests a test server saw.
type recorder struct {
	mu   sync.Mutex
	reqs []seenRequest
}

type seenRequest struct {
	Method, Path, RawQuery, Auth string
	Body                         []byte
}

func (rec *recorder) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body []byte
		if r.Body != nil { // nil for body-less requests that skip net/http's server
			body, _ = io.ReadAll(r.Body)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, seenRequest{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"), body})
		rec.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (rec *recorder) all() []seenRequest {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]seenRequest(nil), rec.reqs...)
}

func (rec *recorder) count() int { return len(rec.all()) }

// newTestClient starts a TLS server for h and returns a client whose base URL is the server's /v1.0.
func newTestClient(t *testing.T, h http.Handler, o ClientOptions) (*Client, *recorder, *httptest.Server) {
	t.Helper()
	rec := &recorder{}
	srv := httptest.NewTLSServer(rec.wrap(h))
	t.Cleanup(srv.Close)
	if o.BaseURL == "" {
		o.BaseURL = srv.URL + "/v1.0"
	}
	o.Transport = srv.Client()
	if o.Now == nil {
		o.Now = time.Now // the TLS test server's clock
	}
	c, err := NewClient(&fake.TokenCredential{}, o)
	if err != nil {
		t.Fatal(err)
	}
	return c, rec, srv
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func graphError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{"code": code, "message": msg,
		"innerError": map[string]any{"request-id": "req-123"}}})
}

// countingCredential hands out numbered tokens valid for an hour and counts how often it was asked.
type countingCredential struct{ n atomic.Int32 }

func (c *countingCredential) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	n := c.n.Add(1)
	return azcore.AccessToken{Token: "token-" + string(rune('0'+n)), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func TestTokenFetchedOnceAndReused(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewTLSServer(rec.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"id": "u1"})
	})))
	defer srv.Close()
	cred := &countingCredential{}
	c, err := NewClient(cred, ClientOptions{BaseURL: srv.URL + "/v1.0", Transport: srv.Client(), Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := c.GetObject(t.Context(), "users", "u1", nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := cred.n.Load(); n != 1 {
		t.Errorf("credential asked %d times, want 1", n)
	}
	for _, r := range rec.all() {
		if r.Auth != "Bearer token-1" {
			t.Errorf("Authorization = %q", r.Auth)
		}
	}
}

func TestRetryAfterBeyondCapReturnsAtOnce(t *testing.T) {
	c, rec, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "120")
		graphError(w, http.StatusTooManyRequests, "TooManyRequests", "Too many requests")
	}), ClientOptions{})
	_, err := c.GetObject(t.Context(), "users", "u1", nil)
	// One request seen proves azcore did not wait and retry: a retry would come after 120 s.
	if n := rec.count(); n != 1 {
		t.Fatalf("server saw %d requests, want 1", n)
	}
	if !errors.Is(err, ErrThrottled) || KindOf(err) != KindThrottled {
		t.Fatalf("err = %v, want throttled", err)
	}
	if d := RetryAfterOf(err); d != 120*time.Second {
		t.Errorf("RetryAfter = %s, want 2m0s", d)
	}
	if want := "graph: get users: 429 TooManyRequests: Too many requests (retry after 2m0s)"; err.Error() != want {
		t.Errorf("message = %q\nwant      %q", err, want)
	}
}

// handlerTransport serves requests in memory, so tests can run inside a synctest bubble where azcore's
// retry waits (time.After) pass in fake time: no test sleeps, none waits for real.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) Do(r *http.Request) (*http.Response, error) {
	w := httptest.NewRecorder()
	t.h.ServeHTTP(w, r)
	resp := w.Result()
	resp.Request = r
	return resp, nil
}

func newBubbleClient(t *testing.T, h http.Handler, o ClientOptions) (*Client, *recorder) {
	t.Helper()
	rec := &recorder{}
	o.BaseURL = "https://graph.microsoft.com/v1.0"
	o.Transport = handlerTransport{rec.wrap(h)}
	if o.Now == nil {
		o.Now = time.Now // the bubble's clock
	}
	c, err := NewClient(&fake.TokenCredential{}, o)
	if err != nil {
		t.Fatal(err)
	}
	return c, rec
}

func TestRetryAfterWithinCapIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n atomic.Int32
		c, rec := newBubbleClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if n.Add(1) == 1 {
				w.Header().Set("Retry-After", "1")
				graphError(w, http.StatusTooManyRequests, "TooManyRequests", "slow down")
				return
			}
			writeJSON(w, 200, map[string]any{"id": "u1"})
		}), ClientOptions{})
		start := time.Now()
		u, err := c.GetObject(t.Context(), "users", "u1", nil)
		if err != nil {
			t.Fatal(err)
		}
		if u.ID() != "u1" || rec.count() != 2 {
			t.Errorf("user %v after %d requests", u, rec.count())
		}
		if waited := time.Since(start); waited != time.Second {
			t.Errorf("waited %s (fake time), want exactly the Retry-After of 1s", waited)
		}
	})
}

func TestThrottledAfterRetriesExhausted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, rec := newBubbleClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "2")
			graphError(w, http.StatusTooManyRequests, "TooManyRequests", "slow down")
		}), ClientOptions{MaxRetries: 2})
		_, err := c.GetObject(t.Context(), "users", "u1", nil)
		if rec.count() != 3 || KindOf(err) != KindThrottled || RetryAfterOf(err) != 2*time.Second {
			t.Errorf("%d requests, err %v", rec.count(), err)
		}
	})
}

func TestTransientRetriedWithBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n atomic.Int32
		c, rec := newBubbleClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if n.Add(1) < 3 {
				graphError(w, http.StatusServiceUnavailable, "serviceNotAvailable", "try later")
				return
			}
			writeJSON(w, 200, map[string]any{"id": "u1"})
		}), ClientOptions{})
		if _, err := c.GetObject(t.Context(), "users", "u1", nil); err != nil || rec.count() != 3 {
			t.Errorf("%d requests, err %v", rec.count(), err)
		}
	})
}

func TestScope(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "https://graph.microsoft.com/.default"},
		{"https://graph.microsoft.com/v1.0", "https://graph.microsoft.com/.default"},
		{"https://graph.microsoft.com/beta/", "https://graph.microsoft.com/.default"},
		{"https://GRAPH.microsoft.com:443/v1.0", "https://graph.microsoft.com/.default"},
		{"https://graph.microsoft.us/v1.0", "https://graph.microsoft.us/.default"},
		{"https://dod-graph.microsoft.us/v1.0", "https://dod-graph.microsoft.us/.default"},
		{"https://microsoftgraph.chinacloudapi.cn/v1.0", "https://microsoftgraph.chinacloudapi.cn/.default"},
		{"https://127.0.0.1:8443/v1.0", "https://127.0.0.1:8443/.default"},
		{"http://graph.microsoft.com/v1.0", ""},
		{"graph.microsoft.com/v1.0", ""},
		{"https:///v1.0", ""},
		{"https://graph.microsoft.com/v1.0?x=1", ""},
	}
	for _, tt := range tests {
		got, err := Scope(tt.in)
		if tt.want == "" {
			if err == nil {
				t.Errorf("Scope(%q) = %q, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Scope(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if _, err := NewClient(&fake.TokenCredential{}, ClientOptions{BaseURL: "http://graph.microsoft.com/v1.0"}); err == nil {
		t.Error("NewClient accepted a plain-http base URL")
	}
}

func TestNoSecretsInLogsOrErrors(t *testing.T) {
	var logs bytes.Buffer
	const state = "client-state-secret-0123456789"
	c, _, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1.0/subscriptions":
			// A server that echoes the request in its message must not leak clientState through us.
			body, _ := io.ReadAll(r.Body)
			graphError(w, 400, "InvalidRequest", "bad body "+string(body))
		default:
			w.Header().Set("Retry-After", "300")
			graphError(w, 429, "TooManyRequests", "throttled")
		}
	}), ClientOptions{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	_, err1 := c.CreateSubscription(t.Context(), Subscription{Resource: "users", ChangeType: "updated",
		NotificationURL: "https://h/x", ClientState: state, ExpirationDateTime: time.Now().Add(time.Hour)})
	_, err2 := c.GetObject(t.Context(), "users", "u1", nil)
	for _, s := range []string{err1.Error(), err2.Error(), logs.String()} {
		if strings.Contains(s, state) || strings.Contains(s, "fake_token") || strings.Contains(s, "Bearer") {
			t.Errorf("secret leaked: %s", s)
		}
	}
	if !strings.Contains(logs.String(), "throttled") {
		t.Errorf("no warning for the throttled call:\n%s", logs.String())
	}
}
