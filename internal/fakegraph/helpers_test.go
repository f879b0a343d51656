package fakegraph

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	testTenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	testClient = "11111111-2222-3333-4444-555555555555"
	testSecret = "s3cr3t~value"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 12, 9, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestServer(t *testing.T, mod func(*Options)) *Server {
	t.Helper()
	o := NewOptions(testTenant, testClient, testSecret)
	o.DeliveryBackoff = 20 * time.Millisecond
	o.DeliveryRetryWindow = 5 * time.Second
	o.HandshakeTimeout = 2 * time.Second
	o.DeliveryTimeout = time.Second
	if mod != nil {
		mod(&o)
	}
	s := New(o)
	t.Cleanup(s.Close)
	return s
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// token gets an access token with the client secret.
func token(t *testing.T, s *Server) string {
	t.Helper()
	resp, err := s.Client().PostForm(s.TokenEndpoint(), url.Values{
		"grant_type": {"client_credentials"}, "client_id": {testClient}, "client_secret": {testSecret},
		"scope": {"https://graph.microsoft.com/.default"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("token: %d %s", resp.StatusCode, b)
	}
	json.NewDecoder(resp.Body).Decode(&out)
	return out.AccessToken
}

type graphResp struct {
	Status int
	Header http.Header
	Body   []byte
}

func (g graphResp) JSON(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(g.Body))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatalf("decode %q: %v", g.Body, err)
	}
	return m
}

func (g graphResp) ErrorCodeMsg(t *testing.T) (string, string) {
	t.Helper()
	e, _ := g.JSON(t)["error"].(map[string]any)
	c, _ := e["code"].(string)
	m, _ := e["message"].(string)
	return c, m
}

// call sends a Graph request with a bearer token; path is relative to URL() or absolute.
func call(t *testing.T, s *Server, tok, method, path string, body any) graphResp {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	u := path
	if !strings.HasPrefix(u, "https://") {
		u = s.URL() + path
	}
	req, _ := http.NewRequest(method, u, rd)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return graphResp{resp.StatusCode, resp.Header, b}
}

// receiver is a subscriber endpoint (plain http on loopback, which the double accepts).
type receiver struct {
	*httptest.Server
	mu          sync.Mutex
	validations []*http.Request // validation requests (with their raw query)
	bodies      [][]byte        // notification POST bodies, answered or not
	statuses    []int           // statuses to answer notification POSTs with, in turn (then 202)
	hangFirst   int             // number of notification POSTs that hang
	onValidate  func(w http.ResponseWriter, r *http.Request) bool
}

func newReceiver(t *testing.T) *receiver {
	rx := &receiver{}
	rx.Server = httptest.NewServer(http.HandlerFunc(rx.handle))
	t.Cleanup(rx.Close)
	return rx
}

func (rx *receiver) handle(w http.ResponseWriter, r *http.Request) {
	if tok := r.URL.Query().Get("validationToken"); tok != "" {
		rx.mu.Lock()
		rx.validations = append(rx.validations, r.Clone(context.Background()))
		hook := rx.onValidate
		rx.mu.Unlock()
		if hook != nil && hook(w, r) {
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		io.WriteString(w, tok)
		return
	}
	b, _ := io.ReadAll(r.Body)
	rx.mu.Lock()
	rx.bodies = append(rx.bodies, b)
	status := http.StatusAccepted
	if len(rx.statuses) > 0 {
		status, rx.statuses = rx.statuses[0], rx.statuses[1:]
	}
	hang := rx.hangFirst > 0
	if hang {
		rx.hangFirst--
	}
	rx.mu.Unlock()
	if hang {
		<-r.Context().Done()
		return
	}
	w.WriteHeader(status)
}

func (rx *receiver) Bodies() [][]byte {
	rx.mu.Lock()
	defer rx.mu.Unlock()
	return append([][]byte(nil), rx.bodies...)
}

func (rx *receiver) Validations() []*http.Request {
	rx.mu.Lock()
	defer rx.mu.Unlock()
	return append([]*http.Request(nil), rx.validations...)
}

// notifications decodes every notification received so far.
func (rx *receiver) notifications(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, b := range rx.Bodies() {
		var env struct {
			Value []map[string]any `json:"value"`
		}
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		if err := d.Decode(&env); err != nil {
			t.Fatalf("bad notification body %q: %v", b, err)
		}
		out = append(out, env.Value...)
	}
	return out
}

func createSub(t *testing.T, s *Server, tok string, body map[string]any) graphResp {
	t.Helper()
	return call(t, s, tok, "POST", "/v1.0/subscriptions", body)
}

func subBody(notificationURL, resource string, exp time.Time) map[string]any {
	return map[string]any{
		"changeType":         "updated,deleted",
		"notificationUrl":    notificationURL,
		"resource":           resource,
		"expirationDateTime": exp.UTC().Format(time.RFC3339),
		"clientState":        "client-state-0123456789",
	}
}
