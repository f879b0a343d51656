package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/graphwebhooks/graph-webhooks-go/internal/customhandler"
)

// envelope20 is one host invocation carrying a Graph POST of 20 genuine notifications.
func envelope20(tb testing.TB) []byte {
	tb.Helper()
	var items []string
	for i := range 20 {
		items = append(items, fmt.Sprintf(`{"subscriptionId":"d850b120-7d8e-4a3b-9c2d-1e0f2a3b4c5d","subscriptionExpirationDateTime":"2026-12-20T10:00:00+00:00","changeType":"updated","clientState":%q,"resource":"Users/6e1f%04d-7c3a-4b2d-9e8f-0a1b2c3d4e5f","resourceData":{"@odata.type":"#Microsoft.Graph.User","@odata.id":"Users/6e1f%04d-7c3a-4b2d-9e8f-0a1b2c3d4e5f","id":"6e1f%04d-7c3a-4b2d-9e8f-0a1b2c3d4e5f","organizationId":%q,"eventTime":"2026-11-27T09:59:58.24Z","sequenceNumber":%d},"tenantId":%q}`,
			testState, i, i, i, testTenant, 638700000000000001+i, testTenant))
	}
	body := `{"value":[` + joinComma(items) + `]}`
	b, err := json.Marshal(map[string]any{
		"Data": map[string]any{"req": map[string]any{
			"Url": "https://graph-hooks.azurewebsites.net/api/webhook?code=FUNCKEY", "Method": "POST",
			"Query": map[string]string{"code": "FUNCKEY"}, "Headers": map[string][]string{"Content-Type": {"application/json; charset=utf-8"}},
			"Params": map[string]string{}, "Body": body}},
		"Metadata": map[string]any{"sys": map[string]string{"MethodName": "webhook"}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func joinComma(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += ","
		}
		out += x
	}
	return out
}

// BenchmarkWebhook20 is one invocation as the host sends it, through the handler's own server: read the
// request, decode the envelope, verify and split 20 notifications, encode the answer with its queue output,
// and log the invocation line.
func BenchmarkWebhook20(b *testing.B) {
	env := envelope20(b)
	srv := customhandler.NewServer(customhandler.NewLogger(io.Discard, io.Discard, slog.LevelInfo))
	newFunction(testSettings(nil)).Register(srv)
	serve(b, srv, env)
}

// BenchmarkBaseline20 is the least any handler must do with the same invocation: read it, decode the
// envelope generically, parse its body, and marshal an Outputs object of the same size. No checks, no
// schema, no log.
func BenchmarkBaseline20(b *testing.B) {
	env := envelope20(b)
	baseline := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req map[string]any
		if err := json.Unmarshal(body, &req); err != nil {
			b.Fatal(err)
		}
		raw := req["Data"].(map[string]any)["req"].(map[string]any)["Body"].(string)
		var coll map[string]any
		if err := json.Unmarshal([]byte(raw), &coll); err != nil {
			b.Fatal(err)
		}
		out, err := json.Marshal(map[string]any{"Outputs": map[string]any{
			"res":           map[string]any{"statusCode": 202, "body": ""},
			"notifications": []any{map[string]any{"v": 1, "kind": "notifications", "notifications": coll["value"], "attempt": 0, "firstSeen": "2026-11-27T10:00:00Z"}},
		}})
		if err != nil {
			b.Fatal(err)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(out)
	})
	serve(b, baseline, env)
}

func serve(b *testing.B, h http.Handler, env []byte) {
	b.ReportAllocs()
	b.SetBytes(int64(len(env)))
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/webhook", bytes.NewReader(env)))
		if rec.Code != 200 || rec.Body.Len() < 1000 {
			b.Fatalf("answer %d, %d bytes", rec.Code, rec.Body.Len())
		}
	}
}

// FuzzWebhook feeds arbitrary bodies through the whole function: it must never fail the invocation or
// panic for anything a caller sends, and must answer 202, 400 or 413.
func FuzzWebhook(f *testing.F) {
	f.Add(`{"value":[{"clientState":"` + testState + `","tenantId":"` + testTenant + `","changeType":"updated"}]}`)
	f.Add(`{"value":[{"lifecycleEvent":"missed","organizationId":"` + testTenant + `","clientState":"` + testState + `"}],"validationTokens":null}`)
	f.Add(`{"value":"x"}`)
	f.Add(`not json`)
	fn := newFunction(testSettings(nil))
	f.Fuzz(func(t *testing.T, body string) {
		resp, err := fn.Invoke(context.Background(), httpRequest(t, "POST", nil, &body))
		if err != nil {
			t.Fatalf("invocation failed: %v", err)
		}
		res := resp.Outputs[ResponseName].(customhandler.HTTPResponse)
		switch res.StatusCode {
		case 202, 400, 413:
		default:
			t.Fatalf("status %d", res.StatusCode)
		}
		if _, err := json.Marshal(resp); err != nil {
			t.Fatalf("answer does not encode: %v", err)
		}
	})
}

// BenchmarkWebhookHostile is one invocation carrying the 4 MiB body of 1.4 million empty notifications that
// once took the handler past 1 GiB, through the handler's own server: envelope, body and answer. Its B/op
// is what one such POST allocates; make reliability measures the built binary's peak RSS.
func BenchmarkWebhookHostile(b *testing.B) {
	var body strings.Builder
	body.WriteString(`{"value":[{}`)
	for body.Len() < MaxBodyBytes-8 {
		body.WriteString(`,{}`)
	}
	body.WriteString(`]}`)
	env, err := json.Marshal(map[string]any{"Data": map[string]any{"req": map[string]any{
		"Url": "https://graph-hooks.azurewebsites.net/api/webhook", "Method": "POST",
		"Headers": map[string][]string{"Content-Type": {"application/json"}}, "Body": body.String()}}})
	if err != nil {
		b.Fatal(err)
	}
	srv := customhandler.NewServer(customhandler.NewLogger(io.Discard, io.Discard, slog.LevelInfo))
	newFunction(testSettings(nil)).Register(srv)
	b.ReportAllocs()
	b.SetBytes(int64(body.Len()))
	for b.Loop() {
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest("POST", "/webhook", bytes.NewReader(env)))
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"statusCode":202`) {
			b.Fatalf("answer %d %.200s", rec.Code, rec.Body.String())
		}
	}
}
