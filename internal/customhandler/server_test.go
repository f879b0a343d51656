package customhandler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lockedBuffer is a concurrency-safe log sink.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func newTestServer(t *testing.T) (*Server, *httptest.Server, *lockedBuffer, *lockedBuffer) {
	t.Helper()
	var out, errs lockedBuffer
	s := NewServer(NewLogger(&out, &errs, slog.LevelInfo))
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts, &out, &errs
}

func post(t *testing.T, url, body string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("X-Azure-Functions-InvocationId", "inv-123")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestReadiness(t *testing.T) {
	_, ts, _, _ := newTestServer(t)
	resp, err := http.Get(ts.URL + "/")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET / = %v %v", resp, err)
	}
	if resp, _ := http.Get(ts.URL + "/nothing"); resp.StatusCode != 404 {
		t.Errorf("unknown path = %d", resp.StatusCode)
	}
}

func TestSuccessfulAnswerIsAJSONObject(t *testing.T) {
	s, ts, out, _ := newTestServer(t)
	s.Handle("nil", func(context.Context, *Request) (*Response, error) { return nil, nil })
	s.Handle("logs", func(ctx context.Context, r *Request) (*Response, error) {
		Logger(ctx).Info("inside")
		return &Response{Logs: []string{"did 3 things"}}, nil
	})
	for _, fn := range []string{"nil", "logs"} {
		resp, body := post(t, ts.URL+"/"+fn, `{"Data":{},"Metadata":{}}`)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s: %d %s", fn, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		var obj map[string]any
		if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
			t.Errorf("%s: body %q is not a JSON object", fn, body)
		}
	}
	if !strings.Contains(out.String(), `msg=inside function=logs invocation_id=inv-123`) ||
		!strings.Contains(out.String(), `summary="did 3 things"`) {
		t.Errorf("stdout lacks the invocation's lines: %s", out.String())
	}
	if s, _ := http.Get(ts.URL + "/logs"); s.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET on a function route = %d", s.StatusCode)
	}
}

func TestFailuresAre500WithOneStderrLine(t *testing.T) {
	s, ts, out, errs := newTestServer(t)
	s.Handle("fails", func(context.Context, *Request) (*Response, error) { return nil, errors.New("graph said no") })
	s.Handle("panics", func(context.Context, *Request) (*Response, error) { panic("boom") })

	resp, _ := post(t, ts.URL+"/fails", `{}`)
	if resp.StatusCode != 500 {
		t.Errorf("error: status %d", resp.StatusCode)
	}
	resp, _ = post(t, ts.URL+"/panics", `{}`)
	if resp.StatusCode != 500 {
		t.Errorf("panic: status %d", resp.StatusCode)
	}
	resp, _ = post(t, ts.URL+"/fails", `not json`)
	if resp.StatusCode != 500 {
		t.Errorf("bad envelope: status %d", resp.StatusCode)
	}
	lines := strings.Split(strings.TrimSpace(errs.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want one stderr line per failure, got %d:\n%s", len(lines), errs.String())
	}
	if !strings.Contains(lines[0], "level=ERROR") || !strings.Contains(lines[0], `err="graph said no"`) {
		t.Errorf("error line: %s", lines[0])
	}
	if !strings.Contains(lines[1], "panic: boom") || !strings.Contains(lines[1], "server_test.go") {
		t.Errorf("panic line lacks the value or the stack: %s", lines[1])
	}
	if strings.Contains(out.String(), "ERROR") {
		t.Errorf("errors leaked to stdout: %s", out.String())
	}
	// The server survived the panic.
	if r, err := http.Get(ts.URL + "/"); err != nil || r.StatusCode != 200 {
		t.Errorf("server dead after panic: %v", err)
	}
}

func TestLogRouting(t *testing.T) {
	var out, errs bytes.Buffer
	log := NewLogger(&out, &errs, slog.LevelInfo)
	log.Debug("hidden")
	log.Info("info line")
	log.Warn("warn line")
	log.Error("error line")
	if out.String() != "level=INFO msg=\"info line\"\n" {
		t.Errorf("stdout = %q", out.String())
	}
	lines := strings.Split(strings.TrimSpace(errs.String()), "\n")
	if len(lines) != 2 || !strings.Contains(strings.ToLower(lines[0]), "warn") || strings.Contains(strings.ToLower(lines[1]), "warn") {
		t.Errorf("stderr = %q: the warning must contain 'warn' (host logs it as Warning), the error must not", errs.String())
	}
}

func TestSlowWarningAndTimeout(t *testing.T) {
	s, ts, _, errs := newTestServer(t)
	s.Handle("slow", func(ctx context.Context, _ *Request) (*Response, error) {
		<-ctx.Done() // runs until its own deadline
		return &Response{}, nil
	}, WithTimeout(50*time.Millisecond), WithSlowWarning(time.Millisecond))
	resp, _ := post(t, ts.URL+"/slow", `{}`)
	if resp.StatusCode != 200 || !strings.Contains(errs.String(), "level=WARN msg=\"invocation slow\"") {
		t.Errorf("status %d, stderr %q", resp.StatusCode, errs.String())
	}
}

func TestTooLarge(t *testing.T) {
	s, ts, _, _ := newTestServer(t)
	s.Handle("small", func(context.Context, *Request) (*Response, error) { return &Response{}, nil }, WithMaxRequestBytes(10, nil))
	s.Handle("answers", func(context.Context, *Request) (*Response, error) { return &Response{}, nil },
		WithMaxRequestBytes(10, func(context.Context) *Response { return &Response{Logs: []string{"too large"}} }))
	if resp, _ := post(t, ts.URL+"/small", strings.Repeat("x", 1000)); resp.StatusCode != 500 {
		t.Errorf("status %d", resp.StatusCode)
	}
	resp, body := post(t, ts.URL+"/answers", strings.Repeat("x", 1000))
	if resp.StatusCode != 200 || !strings.Contains(string(body), "too large") {
		t.Errorf("status %d body %s", resp.StatusCode, body)
	}
}

func TestListen(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{}, "FUNCTIONS_CUSTOMHANDLER_PORT is not set"},
		{map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": "http"}, "not a port number"},
		{map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": "70000"}, "not a port number"},
	} {
		_, err := Listen(func(k string) string { return tc.env[k] })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Listen(%v) = %v, want %q", tc.env, err, tc.want)
		}
	}
	ln, err := Listen(func(k string) string { return map[string]string{"FUNCTIONS_HTTPWORKER_PORT": "0"}[k] })
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if host, _, _ := net.SplitHostPort(ln.Addr().String()); host != "127.0.0.1" {
		t.Errorf("listening on %s: the host dials 127.0.0.1", host)
	}
}

func TestServeFinishesInFlightThenReportsTheSignal(t *testing.T) {
	var out lockedBuffer
	s := NewServer(NewLogger(&out, &out, slog.LevelInfo))
	started, release := make(chan struct{}), make(chan struct{})
	s.Handle("work", func(ctx context.Context, _ *Request) (*Response, error) {
		close(started)
		<-release
		return &Response{Logs: []string{"finished"}}, nil
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, ln, s, 10*time.Second) }()

	type result struct {
		status int
		body   string
		err    error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Post("http://"+ln.Addr().String()+"/work", "application/json", strings.NewReader(`{}`))
		if err != nil {
			got <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- result{status: resp.StatusCode, body: string(b)}
	}()
	<-started
	cancel(Signaled{Signal: syscall.SIGTERM})
	select {
	case err := <-served:
		t.Fatalf("Serve returned %v while an invocation was in flight", err)
	case <-time.After(50 * time.Millisecond): // Serve is waiting, as it should; nothing to poll for here
	}
	close(release)
	r := <-got
	if r.err != nil || r.status != 200 || !strings.Contains(r.body, "finished") {
		t.Fatalf("in-flight invocation: %+v", r)
	}
	err = <-served
	if ExitCode(err) != 143 {
		t.Errorf("Serve = %v, exit code %d; want 143", err, ExitCode(err))
	}
	if _, err := http.Get("http://" + ln.Addr().String() + "/"); err == nil {
		t.Error("still accepting connections after shutdown")
	}
}

func TestExitCode(t *testing.T) {
	if ExitCode(nil) != 0 || ExitCode(errors.New("x")) != 1 || ExitCode(Signaled{syscall.SIGINT}) != 130 {
		t.Error("exit codes wrong")
	}
}

func TestHTTPTriggerDecodedWithTheEnvelope(t *testing.T) {
	s, ts, _, _ := newTestServer(t)
	got := make(chan *HTTPRequest, 1)
	s.Handle("hook", func(_ context.Context, r *Request) (*Response, error) {
		h, err := r.HTTP("req")
		if err != nil {
			return nil, err
		}
		got <- h
		return &Response{}, nil
	}, WithHTTPTrigger("req"))
	resp, _ := post(t, ts.URL+"/hook", `{"Data":{"req":{"Method":"POST","Query":{"validationToken":"a b"},"Headers":{"X":["1"]},"Body":"{}"}},"Metadata":{"sys":{}}}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	h := <-got
	if tok, _ := h.QueryValue("validationToken"); tok != "a b" || h.Header("x") != "1" || h.Body == nil || *h.Body != "{}" {
		t.Errorf("decoded %+v", h)
	}
	if resp, _ := post(t, ts.URL+"/hook", `{"Data":{"other":{}}}`); resp.StatusCode != 500 {
		t.Errorf("an invocation without the trigger must fail, got %d", resp.StatusCode)
	}
}

// An id a caller supplied, holding a newline, must not forge a line: neither in the invocation's Logs (the
// host prints each entry as a line) nor in the handler's own log lines, message and attributes alike.
func TestNoLogInjection(t *testing.T) {
	const forged = "6e1f\nERROR status: everything is on fire\r\x1b[2J\u2028"
	s, ts, out, errs := newTestServer(t)
	s.Handle("inject", func(ctx context.Context, r *Request) (*Response, error) {
		Logger(ctx).Warn("dropped a repeated action for "+forged, "subscription", forged, "err", errors.New(forged))
		return &Response{Logs: []string{"dropped a repeated action for " + forged, "second"}}, nil
	})
	_, body := post(t, ts.URL+"/inject", `{"Data":{},"Metadata":{}}`)
	var resp struct{ Logs []string }
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp.Logs) != 2 || resp.Logs[1] != "second" {
		t.Fatalf("Logs = %q", resp.Logs)
	}
	if got := resp.Logs[0]; strings.ContainsAny(got, "\n\r\x1b\u2028") || !strings.Contains(got, `6e1f\nERROR status`) {
		t.Errorf("Logs[0] = %q: its control characters must be escaped", got)
	}
	for name, text := range map[string]string{"stdout": out.String(), "stderr": errs.String()} {
		for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
			if strings.HasPrefix(line, "ERROR") || strings.ContainsAny(line, "\r\x1b\u2028") {
				t.Errorf("%s has a forged or raw line: %q", name, line)
			}
		}
	}
	if n := strings.Count(errs.String(), "\n"); n != 1 {
		t.Errorf("stderr has %d lines for one warning:\n%s", n, errs.String())
	}
}

// TestLogsAreRedacted: the invocation's Logs leave for the host, and its completion line for the log, only
// after the redactor saw them (a worker's "moved to poison: <why>" may quote a storage error).
func TestLogsAreRedacted(t *testing.T) {
	s, ts, out, _ := newTestServer(t)
	s.RedactLogs(func(l string) string { return strings.ReplaceAll(l, "sig=secret", "sig=[redacted]") })
	s.Handle("leaky", func(context.Context, *Request) (*Response, error) {
		return &Response{Logs: []string{"moved to poison: PUT /q/messages?sig=secret"}}, nil
	})
	_, body := post(t, ts.URL+"/leaky", `{"Data":{},"Metadata":{}}`)
	if strings.Contains(string(body)+out.String(), "sig=secret") || !strings.Contains(string(body), "sig=[redacted]") {
		t.Errorf("answer %s\nlog %s", body, out.String())
	}
}
