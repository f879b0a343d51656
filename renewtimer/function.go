// Package renewtimer is the timer-triggered function that keeps the Graph subscriptions alive
// (internal/subscription), starts the daily safety-net resync (internal/resync), and logs each unhealthy
// finding of the status check (internal/status) at error level, where alerts look. It holds no logic of
// its own beyond running the three and reporting what they did.
package renewtimer

import (
	"context"
	"fmt"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/customhandler"
	"github.com/graphwebhooks/graph-webhooks-go/internal/logctx"
	"github.com/graphwebhooks/graph-webhooks-go/internal/subscription"
)

// Binding names, as in renewtimer/function.json.
const (
	Name        = "renewtimer"
	TriggerName = "timer"
)

// Keeper converges every configured subscription (*subscription.Keeper).
type Keeper interface {
	Ensure(ctx context.Context, mode subscription.Mode) ([]subscription.Outcome, error)
}

// Resync starts the passes that are due: a collection whose last completed pass is older than a day, or
// whose pass stalled (*resync.Runner). It returns a line per pass it started.
type Resync interface {
	RequestIfDue(ctx context.Context) ([]string, error)
}

// Alerts returns one line per unhealthy finding of the status check (`handler status`). Each is logged at
// error level, so that an alert on the function's errors (severityLevel >= 3 in Application Insights)
// fires without anyone reading the logs; the findings alone never fail the run.
type Alerts interface {
	Alerts(ctx context.Context) []string
}

// Function is the timer-triggered function: one keeper run per tick, then the daily resync check, then the
// status findings.
type Function struct {
	keeper Keeper
	resync Resync // may be nil
	alerts Alerts // may be nil
	now    func() time.Time
}

// New builds the function from its dependencies and the clock; resync and alerts may be nil.
func New(k Keeper, r Resync, a Alerts, now func() time.Time) *Function {
	if now == nil {
		panic("renewtimer.New: now is nil: the clock is given, never taken")
	}
	return &Function{keeper: k, resync: r, alerts: a, now: now}
}

// Register adds the function to the handler's server. A run makes a handful of Graph calls per resource,
// each bounded by the client's retries, and a mailbox run is bounded by its own run time (3 minutes): four
// minutes stays inside functionTimeout (5 minutes).
func (f *Function) Register(s *customhandler.Server) {
	s.Handle(Name, f.Invoke, customhandler.WithTimeout(4*time.Minute))
}

// Invoke runs the keeper once. A failure fails the invocation, and function.json's retry policy runs it
// again before the next tick; the resync check still runs first, since its failure is independent.
func (f *Function) Invoke(ctx context.Context, req *customhandler.Request) (*customhandler.Response, error) {
	log := logctx.From(ctx)
	if t, err := req.Timer(TriggerName); err != nil {
		log.Warn("timer info unreadable; running anyway", "err", err)
	} else if t.IsPastDue {
		log.Warn("timer is past due: the previous tick was missed (the app was stopped or busy)")
	}
	if rc, ok := req.Retry(); ok && rc.RetryCount > 0 {
		log.Info("retrying after a failed run", "retry", rc.RetryCount, "max", rc.MaxRetryCount)
	}
	outs, keepErr := f.keeper.Ensure(ctx, subscription.Normal)
	var logs []string
	now := f.now()
	for _, out := range outs {
		summary := out.Summary(now)
		log.Info(summary, "resource", out.Resource, "action", string(out.Action), "id", out.ID,
			"expires", out.Expiry.UTC().Format(time.RFC3339), "days_left", fmt.Sprintf("%.1f", out.Expiry.Sub(now).Hours()/24))
		logs = append(logs, "renewtimer: "+summary)
	}
	if f.resync != nil {
		// The resync's failure is a warning: the subscription is the timer's first duty, and the next tick
		// asks again.
		lines, err := f.resync.RequestIfDue(ctx)
		if err != nil {
			log.Warn("could not check or start the scheduled resync", "err", err)
		}
		for _, l := range lines {
			log.Info(l)
			logs = append(logs, "renewtimer: "+l)
		}
	}
	if f.alerts != nil {
		for _, line := range f.alerts.Alerts(ctx) {
			log.Error("status: " + line)
		}
	}
	if keepErr != nil {
		return nil, keepErr
	}
	return &customhandler.Response{Logs: logs}, nil
}
