package renewtimer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/customhandler"
	"github.com/graphwebhooks/graph-webhooks-go/internal/logctx"
	"github.com/graphwebhooks/graph-webhooks-go/internal/subscription"
	"github.com/graphwebhooks/graph-webhooks-go/internal/testclock"
)

type keeper struct {
	outs []subscription.Outcome
	err  error
	mode subscription.Mode
}

func (k *keeper) Ensure(_ context.Context, mode subscription.Mode) ([]subscription.Outcome, error) {
	k.mode = mode
	return k.outs, k.err
}

type resync struct {
	lines []string
	err   error
	calls int
}

func (r *resync) RequestIfDue(context.Context) ([]string, error) {
	r.calls++
	return r.lines, r.err
}

func timerRequest(t *testing.T) *customhandler.Request {
	var req customhandler.Request
	if err := json.Unmarshal([]byte(`{"Data":{"timer":{"Schedule":{},"ScheduleStatus":null,"IsPastDue":true}},"Metadata":{}}`), &req); err != nil {
		t.Fatal(err)
	}
	return &req
}

// now is the timer's clock in these tests.
var now = testclock.Date(2026, 12, 1, 10, 0, 0)

func TestTimerRunsKeeperAndResync(t *testing.T) {
	k := &keeper{outs: []subscription.Outcome{
		{Resource: "users", Action: subscription.Created, ID: "s1", Expiry: now.Add(29 * 24 * time.Hour)},
		{Resource: "groups", Action: subscription.Unchanged, ID: "s2", Expiry: now.Add(20 * 24 * time.Hour)},
	}}
	r := &resync{lines: []string{"resync groups started (scheduled): pass p1"}}
	resp, err := New(k, r, nil, func() time.Time { return now }).Invoke(context.Background(), timerRequest(t))
	if err != nil {
		t.Fatal(err)
	}
	if k.mode != subscription.Normal || r.calls != 1 || len(resp.Logs) != 3 {
		t.Fatalf("mode %v, resync calls %d, logs %q", k.mode, r.calls, resp.Logs)
	}
	if !strings.Contains(resp.Logs[0], "users: subscription s1 created") || !strings.Contains(resp.Logs[1], "groups: subscription s2 unchanged") ||
		!strings.Contains(resp.Logs[1], "20.0 days left") || !strings.Contains(resp.Logs[2], "pass p1") {
		t.Errorf("logs %q", resp.Logs)
	}
}

func TestTimerFailsWhenAKeeperRunFailsButStillChecksResync(t *testing.T) {
	k := &keeper{err: errors.New("groups: graph: create subscription: 403")}
	r := &resync{err: errors.New("storage down")}
	_, err := New(k, r, nil, func() time.Time { return now }).Invoke(context.Background(), timerRequest(t))
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("err = %v: a failed subscription run must fail the invocation (its retry policy runs it again)", err)
	}
	if r.calls != 1 {
		t.Error("the resync check was skipped")
	}
	// A resync failure alone is a warning: the subscriptions are the timer's first duty.
	if _, err := New(&keeper{}, r, nil, func() time.Time { return now }).Invoke(context.Background(), timerRequest(t)); err != nil {
		t.Errorf("resync failure failed the timer: %v", err)
	}
}

type alerts []string

func (a alerts) Alerts(context.Context) []string { return a }

func TestTimerLogsEachAlertAtErrorLevel(t *testing.T) {
	var buf bytes.Buffer
	ctx := logctx.With(context.Background(), slog.New(slog.NewTextHandler(&buf, nil)))
	a := alerts{"poison-not-empty (q-poison): 2 message(s).", "resync-overdue (users): none completed."}
	if _, err := New(&keeper{}, nil, a, func() time.Time { return now }).Invoke(ctx, timerRequest(t)); err != nil {
		t.Fatalf("alerts must not fail the run: %v", err)
	}
	var errs []string
	for _, line := range strings.Split(buf.String(), "\n") {
		if strings.Contains(line, "level=ERROR") {
			errs = append(errs, line)
		}
	}
	if len(errs) != 2 || !strings.Contains(errs[0], "status: poison-not-empty") || !strings.Contains(errs[1], "status: resync-overdue") {
		t.Errorf("error lines %q", errs)
	}
}
