package fakehost_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/azuritetest"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakehost"
)

type tickMsg struct {
	Data struct {
		Timer struct {
			Schedule       map[string]any
			ScheduleStatus *struct{ Last, Next, LastUpdated string }
			IsPastDue      *bool
		} `json:"timer"`
	} `json:"data"`
	Meta map[string]json.RawMessage `json:"meta"`
}

func readTick(t *testing.T, conn, queue string) tickMsg {
	t.Helper()
	raw := receive(t, conn, queue, 1, 10*time.Second)
	var m tickMsg
	if err := json.Unmarshal([]byte(unb64(t, raw[0])), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func compress(int, time.Duration) time.Duration { return 10 * time.Millisecond }

func TestTimerRunOnStartupRetryAndFire(t *testing.T) {
	conn := azuritetest.Shared(t).ConnectionString()
	tq := queueName("tick")
	root := newApp(t, "00:01:00", "tick")
	h, _ := startHost(t, fakehost.Options{AppRoot: root, RetryDelay: compress, Settings: map[string]string{
		"AzureWebJobsStorage": conn, "TICK_QUEUE": tq, "TICK_SCHEDULE": "0 0 0 1 1 *", "TICK_FAILS": "1",
	}})

	// runOnStartup: the first attempt fails, the retry (RetryCount 1) succeeds.
	m := readTick(t, conn, tq)
	ti := m.Data.Timer
	if ti.Schedule["AdjustForDST"] != true || ti.IsPastDue == nil || *ti.IsPastDue || ti.ScheduleStatus == nil {
		t.Fatalf("TimerInfo = %+v", ti)
	}
	if ti.ScheduleStatus.Last != "0001-01-01T00:00:00" || !strings.HasSuffix(ti.ScheduleStatus.Next, "-01-01T00:00:00Z") {
		t.Errorf("ScheduleStatus = %+v", *ti.ScheduleStatus)
	}
	var rc struct {
		RetryCount, MaxRetryCount int
		Exception                 map[string]any
	}
	if err := json.Unmarshal(m.Meta["RetryContext"], &rc); err != nil || rc.RetryCount != 1 || rc.MaxRetryCount != 2 || rc.Exception == nil {
		t.Errorf("RetryContext = %s", m.Meta["RetryContext"])
	}
	if _, ok := m.Meta["TimerTrigger"]; ok {
		t.Error("Metadata.TimerTrigger not dropped")
	}
	waitFor(t, 5*time.Second, "startup records", func() bool {
		return len(records(h, "tick", fakehost.Failed)) == 1 && len(records(h, "tick", fakehost.Succeeded)) == 1
	})

	// FireTimer invokes now and waits.
	if err := h.FireTimer(context.Background(), "tick"); err != nil {
		t.Fatal(err)
	}
	m = readTick(t, conn, tq)
	if st := m.Data.Timer.ScheduleStatus; st == nil || st.Last == "0001-01-01T00:00:00" {
		t.Errorf("ScheduleStatus after a run = %+v", st)
	}

	// A handler restart does not fire runOnStartup again.
	if err := h.KillHandler(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "restart", func() bool { return h.Restarts() == 1 && h.Ready() })
	if err := h.FireTimer(context.Background(), "tick"); err != nil {
		t.Fatal(err)
	}
	readTick(t, conn, tq)
	if n := len(records(h, "tick", "")); n != 6 { // fail+retry at startup, then at each of two fires
		t.Errorf("%d tick invocations, want 6", n)
	}
}

func TestTimerRetriesExhausted(t *testing.T) {
	conn := azuritetest.Shared(t).ConnectionString()
	root := newApp(t, "00:01:00", "tick")
	h, _ := startHost(t, fakehost.Options{AppRoot: root, RetryDelay: compress, DisableRunOnStartup: true, Settings: map[string]string{
		"AzureWebJobsStorage": conn, "TICK_QUEUE": queueName("tick"), "TICK_SCHEDULE": "0 0 0 1 1 *", "TICK_FAILS": "99",
	}})
	if err := h.FireTimer(context.Background(), "tick"); err == nil {
		t.Fatal("FireTimer succeeded")
	}
	recs := records(h, "tick", fakehost.Failed)
	if len(recs) != 3 || recs[0].RetryCount != 0 || recs[2].RetryCount != 2 {
		t.Errorf("records = %+v, want 3 attempts (maxRetryCount 2)", recs)
	}
}

func TestTimerSchedule(t *testing.T) {
	conn := azuritetest.Shared(t).ConnectionString()
	tq := queueName("tick")
	root := newApp(t, "00:01:00", "tick")
	h, _ := startHost(t, fakehost.Options{AppRoot: root, DisableRunOnStartup: true, Settings: map[string]string{
		"AzureWebJobsStorage": conn, "TICK_QUEUE": tq, "TICK_SCHEDULE": "*/1 * * * * *",
	}})
	waitFor(t, 10*time.Second, "two scheduled runs", func() bool { return len(records(h, "tick", fakehost.Succeeded)) >= 2 })
	// Sub-minute schedules run without the monitor: ScheduleStatus is null.
	if m := readTick(t, conn, tq); m.Data.Timer.ScheduleStatus != nil {
		t.Errorf("ScheduleStatus = %+v, want null", m.Data.Timer.ScheduleStatus)
	}
}
