package fakehost

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// timerState is a timer function's schedule status (kept in memory; the host keeps it in storage when
// useMonitor is on) and its singleton lock: the host never runs one timer function twice at once.
type timerState struct {
	fn   *function
	lock chan struct{} // 1-slot semaphore, so waiting can be cancelled

	mu          sync.Mutex
	last        time.Time
	next        time.Time
	lastUpdated time.Time
}

func newTimerState(fn *function) *timerState {
	return &timerState{fn: fn, lock: make(chan struct{}, 1)}
}

// FireTimer invokes a timer function now (with its retry policy) and waits for the result.
func (h *Host) FireTimer(ctx context.Context, function string) error {
	ts, ok := h.timers[function]
	if !ok {
		return fmt.Errorf("fakehost: no timer function %q", function)
	}
	return h.fireTimer(ctx, ts, "timer", time.Time{}, false)
}

// runTimer fires the timer at each occurrence of its schedule.
func (h *Host) runTimer(ctx context.Context, ts *timerState) {
	for {
		now := h.now()
		next := ts.fn.schedule.Next(now)
		if next.IsZero() {
			h.logger.Warn("timer schedule has no next occurrence", "function", ts.fn.name)
			return
		}
		ts.mu.Lock()
		ts.next = next
		ts.mu.Unlock()
		t := time.NewTimer(next.Sub(now))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if err := h.fireTimer(ctx, ts, "timer", next, false); err != nil && ctx.Err() == nil {
			h.logger.Warn("timer invocation failed", "function", ts.fn.name, "error", err.Error())
		}
	}
}

// timerInfo builds the TimerInfo value (docs/host-protocol.md §3.5).
func (h *Host) timerInfo(ts *timerState, pastDue bool) map[string]any {
	schedule := map[string]any{}
	if _, ok := ts.fn.schedule.(*CronSchedule); ok {
		schedule["AdjustForDST"] = true
	}
	info := map[string]any{"Schedule": schedule, "ScheduleStatus": nil, "IsPastDue": pastDue}
	if ts.fn.useMonitor {
		ts.mu.Lock()
		next := ts.next
		if next.IsZero() {
			next = ts.fn.schedule.Next(h.now())
		}
		// [inferred] before the first run there is no stored status: Last and LastUpdated are
		// DateTime.MinValue ("0001-01-01T00:00:00").
		info["ScheduleStatus"] = map[string]any{
			"Last":        formatDateTimeFull(ts.last),
			"Next":        formatDateTimeFull(next),
			"LastUpdated": formatDateTimeFull(ts.lastUpdated),
		}
		ts.mu.Unlock()
	}
	return info
}

// fireTimer runs one occurrence: the invocation and, when function.json has a retry policy, its retries.
func (h *Host) fireTimer(ctx context.Context, ts *timerState, trigger string, scheduled time.Time, pastDue bool) error {
	select {
	case ts.lock <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-ts.lock }()

	fn := ts.fn
	data := map[string]any{fn.trigger.Name: h.timerInfo(ts, pastDue)}
	var err error
	for attempt := 0; ; attempt++ {
		_, err = h.invoke(ctx, fn, trigger, data, map[string]any{"TimerTrigger": formatDateSeconds(h.now())}, retryContext(fn, attempt, err))
		if err == nil || fn.retry == nil || ctx.Err() != nil || (fn.retry.MaxRetryCount >= 0 && attempt >= fn.retry.MaxRetryCount) {
			break
		}
		delay := fn.retry.delayBefore(attempt + 1)
		if h.opts.RetryDelay != nil {
			delay = h.opts.RetryDelay(attempt+1, delay)
		}
		h.logger.Info("retrying timer function", "function", fn.name, "retry", attempt+1, "delay", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
	}

	now := h.now()
	ts.mu.Lock()
	if scheduled.IsZero() {
		scheduled = now
	}
	ts.last = scheduled
	ts.lastUpdated = now
	ts.next = fn.schedule.Next(now)
	ts.mu.Unlock()
	return err
}

// retryContext is the RetryContext of an attempt of fn, nil without a retry policy. [inferred] It is sent on
// every attempt (RetryCount 0 first) while a policy is active; Exception is the previous failure as a
// serialised .NET exception (here: its ClassName and Message only).
func retryContext(fn *function, attempt int, prev error) map[string]any {
	if fn.retry == nil {
		return nil
	}
	var exc any
	if prev != nil {
		exc = map[string]any{
			"ClassName": "Microsoft.Azure.WebJobs.Script.Workers.Http.HttpWorkerException",
			"Message":   prev.Error(),
		}
	}
	return map[string]any{"RetryCount": attempt, "MaxRetryCount": fn.retry.MaxRetryCount, "Exception": exc}
}
