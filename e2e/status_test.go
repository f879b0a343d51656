package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/devstack"
	"github.com/graphwebhooks/graph-webhooks-go/internal/status"
)

// runStatus runs `handler status -json` as an operator would, with the stack's settings in the environment
// (changed by override), from an empty folder so no local.settings.json is read.
func runStatus(t *testing.T, s *devstack.Stack, override map[string]string) (status.Report, int, string) {
	t.Helper()
	env := os.Environ()
	for k, v := range s.Settings {
		if o, ok := override[k]; ok {
			v = o
		}
		env = append(env, k+"="+v)
	}
	for k, v := range override {
		if _, ok := s.Settings[k]; !ok {
			env = append(env, k+"="+v)
		}
	}
	cmd := exec.Command(handlerBin, "status", "-json")
	cmd.Env, cmd.Dir = env, t.TempDir()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	var r status.Report
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("stdout is not the JSON report (%v):\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	if r.ExitCode != code {
		t.Errorf("report says exit %d, the process exited %d", r.ExitCode, code)
	}
	if strings.Contains(stdout.String()+stderr.String(), s.Settings[config.ClientSecret]) {
		t.Error("the output shows the client secret")
	}
	return r, code, stderr.String()
}

func findingCodes(r status.Report) []string {
	var out []string
	for _, f := range r.Findings {
		out = append(out, f.Code)
	}
	return out
}

func TestStatusCommand(t *testing.T) {
	s := start(t, devstack.Options{Users: 3})

	r, code, stderr := runStatus(t, s, nil)
	if code != 0 || r.Health != status.Healthy {
		t.Fatalf("fresh stack: exit %d, findings %+v\nstderr:\n%s", code, r.Findings, stderr)
	}
	sub := r.Subscriptions[0]
	live := s.Graph.Subscriptions()
	if sub.State != status.Live || sub.ID != live[0].ID || sub.Delivery != "webhook" || *sub.DaysLeft < 28 {
		t.Errorf("subscription %+v; Graph has %+v", sub, live)
	}
	if key := strings.TrimPrefix(s.Settings[config.NotificationURL][strings.Index(s.Settings[config.NotificationURL], "code="):], "code="); strings.Contains(stderr, key) {
		t.Error("the function key was printed")
	}

	// Graph drops the subscription (the timer has not run since): attention, naming the finding.
	s.Graph.DeleteSubscriptionSilently(live[0].ID)
	r, code, _ = runStatus(t, s, nil)
	if code != 1 || r.Health != status.Attention || strings.Join(findingCodes(r), ",") != status.CodeNoSubscription ||
		r.Subscriptions[0].State != status.None {
		t.Fatalf("after the delete: exit %d, findings %+v", code, r.Findings)
	}

	// Storage unreachable: could not check, and says which.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	deadStorage := "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;" +
		"AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;" +
		"BlobEndpoint=http://127.0.0.1:" + port + "/devstoreaccount1;QueueEndpoint=http://127.0.0.1:" + port + "/devstoreaccount1;"
	r, code, _ = runStatus(t, s, map[string]string{config.Storage: deadStorage})
	codes := findingCodes(r)
	if code != 2 || r.Health != status.CannotTell || !strings.Contains(strings.Join(codes, ","), status.CodeStorageUnreachable) {
		t.Fatalf("storage unreachable: exit %d, findings %+v", code, r.Findings)
	}
}
