package fakehost_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/fakehost"
)

var key = http.Header{"X-Functions-Key": {"test-function-key"}}

func TestExitZeroIsNotRestarted(t *testing.T) {
	root := newApp(t, "00:01:00", "echo", "crash")
	h, _ := startHost(t, fakehost.Options{AppRoot: root, Settings: map[string]string{}})
	if resp, _ := get(t, "POST", h.URL()+"/api/crash?code=0", nil, ""); resp.StatusCode != 500 {
		t.Errorf("crash: %d, want 500", resp.StatusCode)
	}
	waitFor(t, 10*time.Second, "the exit to be seen", func() bool { return !h.Ready() })
	resp, _ := get(t, "POST", h.URL()+"/api/echo", key, "")
	if resp.StatusCode != 500 {
		t.Errorf("invocation after exit 0: %d, want 500", resp.StatusCode)
	}
	recs := records(h, "echo", fakehost.Failed)
	if len(recs) != 1 || !strings.Contains(recs[0].Error, "exited with code 0") {
		t.Errorf("records = %+v", recs)
	}
	if h.Restarts() != 0 {
		t.Errorf("Restarts = %d, want 0", h.Restarts())
	}
	select {
	case <-h.Stopped():
		t.Error("the host stopped")
	default:
	}
}

func TestCrashesRestartThenStopTheHost(t *testing.T) {
	root := newApp(t, "00:01:00", "echo", "crash")
	h, _ := startHost(t, fakehost.Options{AppRoot: root, Settings: map[string]string{}})
	restarted := func(n int) func() bool {
		return func() bool { return h.Restarts() == n && h.Ready() }
	}
	pid := h.HandlerPID()

	// Error 1: exit code 3 → restart.
	get(t, "POST", h.URL()+"/api/crash?code=3", nil, "")
	waitFor(t, 10*time.Second, "restart after exit 3", restarted(1))
	if h.HandlerPID() == pid {
		t.Error("same pid after a restart")
	}
	// Exit code 200 is an intentional restart: not an error.
	get(t, "POST", h.URL()+"/api/crash?code=200", nil, "")
	waitFor(t, 10*time.Second, "restart after exit 200", restarted(2))
	// Error 2: killed.
	if err := h.KillHandler(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "restart after SIGKILL", restarted(3))
	if resp, _ := get(t, "POST", h.URL()+"/api/echo", key, ""); resp.StatusCode != 200 {
		t.Fatalf("echo after restarts: %d", resp.StatusCode)
	}
	// Error 3 within 30 minutes: the host stops itself.
	get(t, "POST", h.URL()+"/api/crash?code=1", nil, "")
	select {
	case <-h.Stopped():
	case <-time.After(10 * time.Second):
		t.Fatal("the host did not stop after the third error")
	}
	if err := h.StopErr(); err == nil || !strings.Contains(err.Error(), "exited with code 1") || !strings.Contains(err.Error(), "exiting with code 1") {
		t.Errorf("StopErr = %v, want the exit code and the last stderr lines", err)
	}
	if _, err := http.Get(h.URL() + "/"); err == nil {
		t.Error("the HTTP front still answers after the host stopped")
	}
}

func TestFunctionTimeoutRestartsTheHandler(t *testing.T) {
	root := newApp(t, "00:00:02", "echo", "sleep", "null")
	h, _ := startHost(t, fakehost.Options{AppRoot: root, Settings: map[string]string{}})

	// A times out after 2 s; B, started 1 s later, is in flight when the handler is restarted and fails
	// then, before its own timeout.
	var wg sync.WaitGroup
	status := make([]int, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i == 1 {
				time.Sleep(time.Second)
			}
			resp, err := http.Post(h.URL()+"/api/sleep?ms=20000", "", nil)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			status[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	// That B failed through A's restart, not its own timeout, is asserted on the records below (one timeout,
	// one aborted by the restart), not on wall-clock time, which a loaded machine stretches.
	if status[0] != 500 || status[1] != 500 {
		t.Errorf("statuses %v, want 500 500", status)
	}
	waitFor(t, 10*time.Second, "restart after the timeout", func() bool { return h.Restarts() == 1 && h.Ready() })
	recs := records(h, "sleep", fakehost.Failed)
	var timeouts, aborted int
	for _, r := range recs {
		switch {
		case strings.Contains(r.Error, "Timeout value of 00:00:02"):
			timeouts++
		case strings.Contains(r.Error, "handler process"):
			aborted++
		}
	}
	if timeouts != 1 || aborted != 1 {
		t.Errorf("records = %+v, want one timeout and one aborted by the restart", recs)
	}

	// A null body never completes: it times out too, and the handler restarts again.
	if resp, _ := get(t, "POST", h.URL()+"/api/null", nil, ""); resp.StatusCode != 500 {
		t.Errorf("null: %d", resp.StatusCode)
	}
	waitFor(t, 10*time.Second, "restart after the null reply", func() bool { return h.Restarts() == 2 && h.Ready() })
	if resp, _ := get(t, "POST", h.URL()+"/api/echo", key, ""); resp.StatusCode != 200 {
		t.Errorf("echo after timeouts: %d", resp.StatusCode)
	}
	select {
	case <-h.Stopped():
		t.Error("timeouts stopped the host: they are not worker errors")
	default:
	}
}
