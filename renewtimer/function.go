package renewtimer

import (
	"context"
	"fmt"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/customhandler"
	"github.com/graphwebhooks/graph-webhooks-go/internal/logctx"
)

// Binding names, as in renewtimer/function.json.
const (
	Name        = "renewtimer"
	TriggerName = "timer"
)

// Function is the timer-triggered function: one Keeper run per tick, then the daily resync check.
type Function struct {
	keeper *Keeper
	now    func() time.Time
	// ResyncIfDue, when set, starts a delta resync when the last completed pass is older than a day (or one
	// stalled); it returns a line for the log, empty when nothing was due. Its failure is a warning: the
	// subscription is the timer's first duty, and the next tick asks again.
	ResyncIfDue func(ctx context.Context) (string, error)
	// Alerts, when set, returns one line per unhealthy finding of the status check (`handler status`). Each
	// is logged at error level, so that an alert on the function's errors (severityLevel >= 3 in
	// Application Insights) fires without anyone reading the logs; the run itself still succeeds.
	Alerts func(ctx context.Context) []string
}

// NewFunction wraps a keeper as the timer function.
func NewFunction(k *Keeper) *Function { return &Function{keeper: k, now: k.now} }

// Register adds the function to the handler's server. A run makes a handful of Graph calls, each bounded by
// the client's retries; two minutes stays far inside functionTimeout (5 minutes).
func (f *Function) Register(s *customhandler.Server) {
	s.Handle(Name, f.Invoke, customhandler.WithTimeout(2*time.Minute))
}

// Invoke runs the keeper once. A failure fails the invocation, and function.json's retry policy runs it
// again before the next tick.
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
	out, err := f.keeper.Ensure(ctx, Normal)
	if err != nil {
		return nil, err
	}
	summary := out.Summary(f.now())
	log.Info(summary, "action", string(out.Action), "id", out.ID, "expires", out.Expiry.UTC().Format(time.RFC3339),
		"days_left", fmt.Sprintf("%.1f", out.Expiry.Sub(f.now()).Hours()/24))
	logs := []string{"renewtimer: " + summary}
	if f.ResyncIfDue != nil {
		line, err := f.ResyncIfDue(ctx)
		switch {
		case err != nil:
			log.Warn("could not check or start the scheduled resync", "err", err)
		case line != "":
			log.Info(line)
			logs = append(logs, "renewtimer: "+line)
		}
	}
	if f.Alerts != nil {
		for _, line := range f.Alerts(ctx) {
			log.Error("status: " + line)
		}
	}
	return &customhandler.Response{Logs: logs}, nil
}
