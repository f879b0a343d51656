package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/customhandler"
	"github.com/graphwebhooks/graph-webhooks-go/internal/logctx"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

const (
	testTenant = "8c1f4b2e-0d6a-4f57-9a3e-2b9d7c6e5f41"
	testState  = "s3cr3t-client-state-0123456789"
	testOld    = "old-client-state-9876543210abcdef"
)

var fixedNow = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

func testSettings(extra map[string]string) func(string) string {
	m := map[string]string{
		config.TenantID:            testTenant,
		config.ClientState:         testState,
		config.ClientStatePrevious: testOld,
	}
	for k, v := range extra {
		m[k] = v
	}
	return func(k string) string { return m[k] }
}

func newFunction(getenv func(string) string) *Function {
	return New(config.Load(getenv), func() time.Time { return fixedNow })
}

func loadRequest(t testing.TB, name string) *customhandler.Request {
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

// result is what one invocation produced, read back the way the host reads it.
type result struct {
	res      customhandler.HTTPResponse
	messages []message.Message
	logs     []string
}

func invoke(t testing.TB, f *Function, req *customhandler.Request) (result, []byte) {
	t.Helper()
	resp, err := f.Invoke(context.Background(), req)
	if err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	wire, err := resp.MarshalJSON() // the bytes the server sends the host
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Outputs struct {
			Res           customhandler.HTTPResponse `json:"res"`
			Notifications []message.Message          `json:"notifications"`
		}
		Logs []string
	}
	if err := json.Unmarshal(wire, &got); err != nil {
		t.Fatalf("response is not what the host can read: %v", err)
	}
	return result{got.Outputs.Res, got.Outputs.Notifications, got.Logs}, wire
}

func TestGoldenPayloads(t *testing.T) {
	tests := []struct {
		file       string
		status     int
		queued     int // notifications across all messages
		messages   []message.Kind
		bodyPrefix string
	}{
		{file: "validation.json", status: 200},
		{file: "notifications.json", status: 202, queued: 3, messages: []message.Kind{"notifications"}},
		{file: "mixed.json", status: 202, queued: 3, messages: []message.Kind{"notifications"}},
		{file: "lifecycle.json", status: 202, queued: 2, messages: []message.Kind{"notifications", "lifecycle"}},
		{file: "legacy-shapes.json", status: 202, queued: 1, messages: []message.Kind{"notifications"}},
		{file: "batch45.json", status: 202, queued: 45, messages: []message.Kind{"notifications"}},
		{file: "not-json.json", status: 400, bodyPrefix: `{"detail":"body is not a JSON object"`},
		{file: "no-value.json", status: 400, bodyPrefix: `{"detail":"body has no \"value\" array"`},
		{file: "wrong-types.json", status: 400, bodyPrefix: `{"detail":"body is not a notification collection: value.subscriptionId must be a string, not number"`},
		{file: "no-body.json", status: 400, bodyPrefix: `{"detail":"the body is empty`},
		{file: "get.json", status: 405},
	}
	f := newFunction(testSettings(nil))
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, wire := invoke(t, f, loadRequest(t, tt.file))
			if got.res.StatusCode != tt.status {
				t.Errorf("status = %d, want %d (body %s)", got.res.StatusCode, tt.status, got.res.Body)
			}
			var kinds []message.Kind
			queued := 0
			for _, m := range got.messages {
				kinds = append(kinds, m.Kind)
				queued += len(m.Notifications)
				if err := m.Validate(); err != nil {
					t.Errorf("queued message invalid: %v", err)
				}
			}
			if queued != tt.queued || len(kinds) != len(tt.messages) {
				t.Errorf("queued %d notifications in %v, want %d in %v", queued, kinds, tt.queued, tt.messages)
			}
			for i := range min(len(kinds), len(tt.messages)) {
				if kinds[i] != tt.messages[i] {
					t.Errorf("message %d kind = %s, want %s", i, kinds[i], tt.messages[i])
				}
			}
			if !strings.HasPrefix(got.res.Body, tt.bodyPrefix) {
				t.Errorf("body = %s, want prefix %s", got.res.Body, tt.bodyPrefix)
			}
			golden(t, strings.TrimSuffix(tt.file, ".json")+".golden", wire)
		})
	}
}

// golden compares the whole invocation response with testdata/<name>, which -update rewrites.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, got, "", "  "); err != nil {
		t.Fatal(err)
	}
	pretty.WriteByte('\n')
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./webhook -update to create it)", err)
	}
	if !bytes.Equal(pretty.Bytes(), want) {
		t.Errorf("response differs from %s (go test ./webhook -update rewrites it):\n%s", path, pretty.String())
	}
}

func TestValidationEchoesTokenByteForByte(t *testing.T) {
	tokens := []string{
		"Validation: Testing client application reachability for subscription Request-Id: 3c8e7f2a",
		"a+b c%2Bd%25", // already decoded once: + and %XX stay as they are
		`<script>alert("x")</script>`,
		"émoji 🚀 ünïcödé",
		"QUJD", // valid base64: the host would decode it on output bindings, but res.body is not one
	}
	f := newFunction(func(string) string { return "" }) // no settings at all
	for _, tok := range tokens {
		req := httpRequest(t, "POST", map[string]string{"validationToken": tok}, nil)
		got, _ := invoke(t, f, req)
		if got.res.StatusCode != 200 || got.res.Body != tok {
			t.Errorf("token %q: got %d %q", tok, got.res.StatusCode, got.res.Body)
		}
		if ct := got.res.Headers["Content-Type"]; ct != "text/plain; charset=utf-8" {
			t.Errorf("Content-Type = %q", ct)
		}
		if got.res.Headers["X-Content-Type-Options"] != "nosniff" {
			t.Errorf("missing nosniff")
		}
		if len(got.messages) != 0 {
			t.Errorf("handshake queued %d messages", len(got.messages))
		}
	}
}

func TestValidationTokenLimits(t *testing.T) {
	f := newFunction(testSettings(nil))
	for _, tc := range []struct {
		token  string
		status int
	}{
		{strings.Repeat("x", MaxTokenBytes), 200},
		{strings.Repeat("x", MaxTokenBytes+1), 400},
		{"", 400},
	} {
		got, _ := invoke(t, f, httpRequest(t, "POST", map[string]string{"validationToken": tc.token}, nil))
		if got.res.StatusCode != tc.status {
			t.Errorf("token of %d bytes: status %d, want %d", len(tc.token), got.res.StatusCode, tc.status)
		}
	}
}

func TestNotificationsNeedSettings(t *testing.T) {
	body := `{"value":[{"subscriptionId":"x","clientState":"` + testState + `","tenantId":"` + testTenant + `","changeType":"updated","resource":"Users/1"}]}`
	for _, tc := range []struct {
		name    string
		env     map[string]string
		missing string
	}{
		{"no client state", map[string]string{config.TenantID: testTenant}, config.ClientState},
		{"no tenant", map[string]string{config.ClientState: testState}, config.TenantID},
		{"tenant is a domain", map[string]string{config.ClientState: testState, config.TenantID: "contoso.onmicrosoft.com"}, config.TenantID},
		{"client state too short", map[string]string{config.ClientState: "short", config.TenantID: testTenant}, config.ClientState},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := New(config.Load(func(k string) string { return tc.env[k] }), func() time.Time { return fixedNow })
			_, err := f.Invoke(context.Background(), httpRequest(t, "POST", nil, &body))
			if err == nil || !strings.Contains(err.Error(), tc.missing) {
				t.Fatalf("err = %v, want a failed invocation naming %s", err, tc.missing)
			}
			for _, secret := range []string{testState, "short"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error reveals a secret: %v", err)
				}
			}
		})
	}
}

func TestForgedNotificationsAreDroppedQuietly(t *testing.T) {
	var logBuf bytes.Buffer
	log := customhandler.NewLogger(io.Discard, &logBuf, slog.LevelInfo)
	ctx := logctx.With(context.Background(), log)
	forged := "forged-client-state-000000000"
	body := `{"value":[{"subscriptionId":"sub-1","clientState":"` + forged + `","tenantId":"` + testTenant + `","changeType":"updated","resource":"Users/1"}]}`
	f := newFunction(testSettings(nil))
	resp, err := f.Invoke(ctx, httpRequest(t, "POST", nil, &body))
	if err != nil {
		t.Fatal(err)
	}
	res := resp.Outputs[ResponseName].(customhandler.HTTPResponse)
	if res.StatusCode != 202 {
		t.Errorf("status = %d, want 202 so a forger learns nothing", res.StatusCode)
	}
	if _, ok := resp.Outputs[QueueOutput]; ok {
		t.Error("forged notification was queued")
	}
	line := logBuf.String()
	if !strings.Contains(line, "level=WARN") || !strings.Contains(line, "bad_client_state=1") {
		t.Errorf("want one warning counting the drop, got %q", line)
	}
	for _, secret := range []string{forged, testState, testOld} {
		if strings.Contains(line+strings.Join(resp.Logs, ""), secret) {
			t.Errorf("log reveals %q", secret)
		}
	}
}

func TestBodyTooLarge(t *testing.T) {
	f := newFunction(testSettings(nil))
	body := `{"value":[` + strings.Repeat(" ", MaxBodyBytes) + `]}`
	got, _ := invoke(t, f, httpRequest(t, "POST", nil, &body))
	if got.res.StatusCode != 413 {
		t.Errorf("status = %d, want 413", got.res.StatusCode)
	}
}

// TestEnvelopeTooLargeIsAnswered sends more than the server reads into memory and checks the host still gets
// a complete answer: the request is drained and the caller sees 413.
func TestEnvelopeTooLargeIsAnswered(t *testing.T) {
	srv := customhandler.NewServer(slog.New(slog.DiscardHandler))
	newFunction(testSettings(nil)).Register(srv)
	ts := httptest.NewServer(srv)
	defer ts.Close()
	big := `{"Data":{"req":{"Method":"POST","Body":"` + strings.Repeat("a", maxEnvelopeBytes+10) + `"}}}`
	resp, err := http.Post(ts.URL+"/webhook", "application/json", strings.NewReader(big))
	if err != nil {
		t.Fatalf("the server reset the connection instead of answering: %v", err)
	}
	defer resp.Body.Close()
	var out struct {
		Outputs map[string]customhandler.HTTPResponse
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || out.Outputs["res"].StatusCode != 413 {
		t.Errorf("host status %d, res %+v; want 200 carrying res 413", resp.StatusCode, out.Outputs["res"])
	}
}

// TestMessagesFitTheQueue checks the split rule on large notifications: every message, as the host re-prints
// it, stays under the limit, and nothing is lost.
func TestMessagesFitTheQueue(t *testing.T) {
	var items []string
	pad := strings.Repeat("p", 9000) // unknown fields are kept, so they count
	for i := range 30 {
		items = append(items, `{"subscriptionId":"s","clientState":"`+testState+`","tenantId":"`+testTenant+
			`","changeType":"updated","resource":"Users/`+fmt.Sprintf("6e1f%04d-7c3a-4b2d-9e8f-0a1b2c3d4e5f", i)+`","extra":"`+pad+`"}`)
	}
	body := `{"value":[` + strings.Join(items, ",") + `]}`
	got, _ := invoke(t, newFunction(testSettings(nil)), httpRequest(t, "POST", nil, &body))
	total := 0
	for _, m := range got.messages {
		total += len(m.Notifications)
		if n, _ := message.PrintedSize(&m); n >= message.MaxPrintedBytes {
			t.Errorf("message prints to %d bytes, limit %d", n, message.MaxPrintedBytes)
		}
	}
	if total != 30 || len(got.messages) < 6 {
		t.Errorf("queued %d notifications in %d messages, want 30 in at least 6", total, len(got.messages))
	}
}

// httpRequest builds an invocation request like the host's, for cases not worth a testdata file.
func httpRequest(t testing.TB, method string, query map[string]string, body *string) *customhandler.Request {
	t.Helper()
	req := map[string]any{"Url": "https://example.test/api/webhook", "Method": method, "Query": query,
		"Headers": map[string][]string{"Content-Type": {"application/json"}}, "Params": map[string]string{}}
	if body != nil {
		req["Body"] = *body
	}
	b, err := json.Marshal(map[string]any{"Data": map[string]any{"req": req}, "Metadata": map[string]any{}})
	if err != nil {
		t.Fatal(err)
	}
	var r customhandler.Request
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return &r
}
