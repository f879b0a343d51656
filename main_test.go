package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/customhandler"
)

// TestMain lets the test binary act as the handler binary, so the process-level tests exercise main itself.
func TestMain(m *testing.M) {
	if os.Getenv("BE_HANDLER") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// waitReady polls GET / as the host does (every 25 ms), up to a deadline.
func waitReady(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(base + "/"); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatal("handler never answered GET /")
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

const (
	tenant = "8c1f4b2e-0d6a-4f57-9a3e-2b9d7c6e5f41"
	state  = "s3cr3t-client-state-0123456789"
)

func TestRunServesTheFunctions(t *testing.T) {
	holding, release := make(chan struct{}), make(chan struct{})
	testHookServer = func(s *customhandler.Server) {
		s.Handle("hold", func(context.Context, *customhandler.Request) (*customhandler.Response, error) {
			close(holding)
			<-release
			return &customhandler.Response{}, nil
		})
	}
	defer func() { testHookServer = nil }()
	port := freePort(t)
	env := map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": port, "AZURE_TENANT_ID": tenant, "GRAPH_CLIENT_STATE": state}
	ctx, cancel := context.WithCancelCause(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"handler"}, func(k string) string { return env[k] }, &stdout, &stderr)
	}()
	base := "http://127.0.0.1:" + port
	waitReady(t, base)

	// The validation handshake, as the host sends it.
	hs := `{"Data":{"req":{"Method":"POST","Query":{"validationToken":"Validation: a+b c"}}},"Metadata":{}}`
	out := invokeJSON(t, base+"/webhook", hs)
	if res := out.Outputs["res"]; res.StatusCode != 200 || res.Body != "Validation: a+b c" {
		t.Errorf("handshake answer %+v", res)
	}

	// A notification is queued as usual.
	body := fmt.Sprintf(`{"value":[{"subscriptionId":"s","changeType":"updated","clientState":%q,"tenantId":%q,"resource":"Users/6e1f0001-7c3a-4b2d-9e8f-0a1b2c3d4e5f","resourceData":{"id":"6e1f0001-7c3a-4b2d-9e8f-0a1b2c3d4e5f"}}]}`, state, tenant)
	envelope, _ := json.Marshal(map[string]any{"Data": map[string]any{"req": map[string]any{"Method": "POST", "Query": map[string]string{}, "Body": body}}, "Metadata": map[string]any{}})
	resp, err := http.Post(base+"/webhook", "application/json", bytes.NewReader(envelope))
	if err != nil {
		t.Fatal(err)
	}
	var a struct {
		Outputs struct {
			Res           customhandler.HTTPResponse `json:"res"`
			Notifications []json.RawMessage          `json:"notifications"`
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || resp.StatusCode != 200 || a.Outputs.Res.StatusCode != 202 || len(a.Outputs.Notifications) != 1 {
		t.Fatalf("notification: status %d, %+v, %v", resp.StatusCode, a, err)
	}
	resp.Body.Close()

	// An invocation is in flight when the stop signal comes: it finishes, then run returns.
	answered := make(chan error, 1)
	go func() {
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Post(base+"/hold", "application/json", strings.NewReader(`{"Data":{},"Metadata":{}}`))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != 200 {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		answered <- err
	}()
	<-holding
	cancel(customhandler.Signaled{Signal: syscall.SIGTERM})
	select {
	case err := <-done:
		t.Fatalf("run returned (%v) with an invocation in flight", err)
	case <-time.After(50 * time.Millisecond): // run is waiting, as it should: nothing to poll here
	}
	close(release)
	if err := <-answered; err != nil {
		t.Fatalf("the in-flight invocation was not answered: %v", err)
	}
	err = <-done
	if code := customhandler.ExitCode(err); code != 143 {
		t.Errorf("run = %v, exit %d; want 143 (never 0, which stops the host restarting the handler)", err, code)
	}
	if strings.Contains(stdout.String()+stderr.String(), state) {
		t.Error("clientState reached the log")
	}
}

func invokeJSON(t *testing.T, url, body string) (out struct {
	Outputs map[string]customhandler.HTTPResponse
}) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d type %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRunWithoutPortFailsClearly(t *testing.T) {
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"handler"}, func(string) string { return "" }, io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "FUNCTIONS_CUSTOMHANDLER_PORT is not set") || customhandler.ExitCode(err) != 1 {
		t.Errorf("run = %v", err)
	}
}

func TestRunWarnsAboutMalformedSettingsAtStart(t *testing.T) {
	var stderr syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	env := map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": freePort(t), "AZURE_TENANT_ID": "contoso.onmicrosoft.com"}
	run(ctx, []string{"handler"}, func(k string) string { return env[k] }, io.Discard, &stderr)
	if !strings.Contains(stderr.String(), "level=WARN") || !strings.Contains(stderr.String(), "setting=AZURE_TENANT_ID") {
		t.Errorf("stderr = %q", stderr.String())
	}
}

func TestRunWarnsAboutAWeakClientStateAtStart(t *testing.T) {
	for state, weak := range map[string]bool{"short-but-valid-state": true, "k2S8v0QyJ6m3rT1xW9pL4bN7cZ5dF0gH2jK8sA6uE4o=": false} {
		var stderr syncBuffer
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		env := map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": freePort(t), "GRAPH_CLIENT_STATE": state}
		run(ctx, []string{"handler"}, func(k string) string { return env[k] }, io.Discard, &stderr)
		if got := strings.Contains(stderr.String(), "GRAPH_CLIENT_STATE is weak"); got != weak {
			t.Errorf("%d characters: warned %v, want %v; stderr = %q", len(state), got, weak, stderr.String())
		}
		if weak && (!strings.Contains(stderr.String(), "GRAPH_CLIENT_STATE_PREVIOUS") || strings.Contains(stderr.String(), state)) {
			t.Errorf("the warning lacks the rotation steps or shows the secret: %q", stderr.String())
		}
	}
}

func TestUnknownCommand(t *testing.T) {
	err := run(context.Background(), []string{"handler", "frobnicate"}, os.Getenv, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "frobnicate") {
		t.Errorf("run = %v", err)
	}
}

// TestProcessExitStatus runs the real main in a child process and stops it with SIGTERM, as the platform
// does: the exit status must be 143, since 0 would tell the host never to restart the handler.
func TestProcessExitStatus(t *testing.T) {
	port := freePort(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "BE_HANDLER=1", "FUNCTIONS_CUSTOMHANDLER_PORT="+port)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, "http://127.0.0.1:"+port)
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 143 {
		t.Errorf("exit = %v, want status 143; stderr: %s", err, stderr.String())
	}

	// Without a port it exits 1 with one clear line.
	cmd = exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "BE_HANDLER=1", "FUNCTIONS_CUSTOMHANDLER_PORT=", "FUNCTIONS_HTTPWORKER_PORT=")
	out, err := cmd.CombinedOutput()
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "handler: FUNCTIONS_CUSTOMHANDLER_PORT is not set") {
		t.Errorf("exit = %v, output %q", err, out)
	}
}
