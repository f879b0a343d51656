package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/devstack"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakehost"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

const (
	e2eDrive   = "b!E2eDriveOfTheDrivesTests-0123456789_abcdefghijklmnopqrstuvwxyzABCDEFG"
	otherDrive = "b!AnotherDriveNobodySubscribed-0123456789_abcdefghijklmnopqrstuvwxyz"
)

func startDrive(t *testing.T, graphOpts func(*fakegraph.Options)) *devstack.Stack {
	t.Helper()
	return start(t, devstack.Options{Users: 1, Drives: []string{e2eDrive, otherDrive}, Graph: graphOpts,
		Settings: map[string]string{config.Resource: "users,drives/" + e2eDrive}})
}

func driveEvents(evs []message.Event, id string) []message.Event {
	var out []message.Event
	for _, e := range evs {
		if e.Resource == "driveItems" && e.ResourceID == id {
			out = append(out, e)
		}
	}
	return out
}

func hasDriveEvent(id string, ok func(message.Event) bool) func([]message.Event) bool {
	return func(evs []message.Event) bool { return slices.ContainsFunc(driveEvents(evs, id), ok) }
}

// itemReads counts Graph requests that read one drive item: a drive's changes are only ever read by delta.
func itemReads(s *devstack.Stack) int {
	n := 0
	for _, r := range s.Graph.Requests() {
		if strings.Contains(r.Path, "/drives/") && strings.Contains(r.Path, "/items/") {
			n++
		}
	}
	return n
}

// TestDriveTapsBecomeEvents: the timer subscribes the drive's root; a tap makes the worker run a delta pass
// over the drive, which emits one event per item that changed: a folder created and renamed, a file added,
// edited and deleted. The root and folders echoed for their contents are not events; nothing is read per
// item; `handler status` shows the drive's subscription and pass.
func TestDriveTapsBecomeEvents(t *testing.T) {
	s := startDrive(t, nil)
	ctx := deadline(t, 150*time.Second)
	var subs []string
	for _, sub := range s.Graph.Subscriptions() {
		subs = append(subs, sub.Resource+" "+sub.ChangeType)
	}
	slices.Sort(subs)
	if want := []string{"drives/" + e2eDrive + "/root updated", "users updated,deleted"}; !slices.Equal(subs, want) &&
		!slices.Equal(subs, []string{"drives/" + e2eDrive + "/root updated", "users deleted,updated"}) {
		t.Fatalf("subscriptions %v, want the drive's root (updated) beside users", subs)
	}

	folder, err := s.Graph.AddDriveItem(e2eDrive, fakegraph.DriveItem{Name: "Reports", Folder: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WaitEvents(ctx, hasDriveEvent(folder, func(e message.Event) bool { return e.ChangeType == graph.Updated })); err != nil {
		t.Fatalf("folder created: %v", err)
	}
	file, err := s.Graph.AddDriveItem(e2eDrive, fakegraph.DriveItem{Name: "q3.xlsx", ParentID: folder, Size: 100})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WaitEvents(ctx, hasDriveEvent(file, func(e message.Event) bool { return e.ChangeType == graph.Updated })); err != nil {
		t.Fatalf("file added: %v", err)
	}
	if err := s.Graph.UpdateDriveItem(e2eDrive, file, 250); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitEvents(ctx, hasDriveEvent(file, func(e message.Event) bool { return slices.Contains(e.Changed, "size") })); err != nil {
		t.Fatalf("file edited: %v", err)
	}
	if err := s.Graph.RenameDriveItem(e2eDrive, folder, "Reports 2026"); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitEvents(ctx, hasDriveEvent(folder, func(e message.Event) bool { return slices.Contains(e.Changed, "name") })); err != nil {
		t.Fatalf("folder renamed: %v", err)
	}
	if err := s.Graph.DeleteDriveItem(e2eDrive, file); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitEvents(ctx, hasDriveEvent(file, func(e message.Event) bool { return e.ChangeType == graph.Deleted && e.Object == nil })); err != nil {
		t.Fatalf("file deleted: %v", err)
	}
	if _, err := s.Drain(ctx); err != nil {
		t.Fatal(err)
	}

	evs := s.Events()
	// The folder: created, renamed, and echoed (its contents changed) three more times without an event.
	if got := driveEvents(evs, folder); len(got) != 2 {
		t.Errorf("%d folder events, want 2 (created, renamed): %+v", len(got), got)
	}
	if got := driveEvents(evs, file); len(got) != 3 {
		t.Errorf("%d file events, want 3 (added, edited, deleted): %+v", len(got), got)
	}
	root := s.Graph.DriveRootID(e2eDrive)
	for _, e := range evs {
		if e.Resource != "driveItems" {
			continue
		}
		if e.ResourceID == root {
			t.Errorf("an event for the root: %+v", e)
		}
		if e.Context["driveId"] != e2eDrive || e.Field != "driveItem" || e.SubscriptionID != nil {
			t.Errorf("drive event %+v", e)
		}
		if e.ChangeType == graph.Updated && (e.Object["name"] == nil || e.Object["id"] != e.ResourceID) {
			t.Errorf("drive event without its properties: %+v", e)
		}
	}
	if n := itemReads(s); n != 0 {
		t.Errorf("%d drive items read one by one; a drive is read by delta alone", n)
	}

	r, code, stderr := runStatus(t, s, nil)
	var live, passes []string
	for _, sub := range r.Subscriptions {
		if sub.State == "live" {
			live = append(live, sub.Resource)
		}
	}
	for _, p := range r.Resync {
		if p.LastCompleted != nil {
			passes = append(passes, p.Collection)
		}
	}
	if code != 0 || !slices.Contains(live, "drives/"+e2eDrive+"/root") || !slices.Contains(passes, "drives/"+e2eDrive) {
		t.Errorf("status exit %d, live %v, passes %v, findings %v\n%s", code, live, passes, findingCodes(r), stderr)
	}
}

// TestDriveTapBurstCollapses: many taps for a handful of edits cost a few delta passes, not a request per
// tap, and each edited file comes once.
func TestDriveTapBurstCollapses(t *testing.T) {
	s := startDrive(t, nil)
	ctx := deadline(t, 150*time.Second)
	files := seedDrive(ctx, t, s, "report", 20)
	s.Graph.ResetRequests()
	before := len(s.Events())
	if err := s.Graph.EditDriveFiles(e2eDrive, files[:10], -1, 10); err != nil { // 100 taps for 10 edits
		t.Fatal(err)
	}
	if err := s.WaitEvents(ctx, func(evs []message.Event) bool { return len(evs) >= before+10 }); err != nil {
		t.Fatalf("edits: %v", err)
	}
	if _, err := s.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if got := len(s.Events()) - before; got != 10 {
		t.Errorf("%d events for 10 edits", got)
	}
	deltas := s.Graph.Count("GET", "/v1.0/drives/"+e2eDrive+"/root/delta")
	if deltas == 0 || deltas > 20 || itemReads(s) != 0 {
		t.Errorf("100 taps cost %d delta requests and %d item reads; want passes collapsed, no item read", deltas, itemReads(s))
	}
	t.Logf("100 taps for 10 edits: %d delta requests", deltas)
}

// TestDriveResyncRequiredAndLag: Graph's 410 resyncRequired makes the pass enumerate the drive again, and
// change detection keeps the unchanged items silent; a change delta shows only after the tap's pass is
// found by the second look.
func TestDriveResyncRequiredAndLag(t *testing.T) {
	s := startDrive(t, nil)
	ctx := deadline(t, 180*time.Second)
	files := seedDrive(ctx, t, s, "doc", 5)

	before := len(s.Events())
	if err := s.Graph.ExpireDriveDeltaTokens(e2eDrive); err != nil {
		t.Fatal(err)
	}
	if err := s.Graph.UpdateDriveItem(e2eDrive, files[0], 999); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitEvents(ctx, hasDriveEvent(files[0], func(e message.Event) bool { return e.Source == message.SourceFullSync })); err != nil {
		t.Fatalf("after 410: %v", err)
	}
	if _, err := s.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if got := s.Events()[before:]; len(got) != 1 {
		t.Errorf("the enumeration after 410 wrote %d events, want the one change: %+v", len(got), got)
	}

	// Delta lags: the tap's pass sees nothing; the look 10 s later finds the edit.
	before = len(s.Events())
	s.Graph.SetDriveDeltaLag(3*time.Second, 1)
	if err := s.Graph.UpdateDriveItem(e2eDrive, files[1], 4242); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitEvents(ctx, hasDriveEvent(files[1], func(e message.Event) bool { return slices.Contains(e.Changed, "size") })); err != nil {
		t.Fatalf("lagging change: %v", err)
	}
	if got := s.Events()[before:]; len(got) != 1 {
		t.Errorf("%d events for the lagging change", len(got))
	}
}

// TestDriveForgedAndForeignTaps: a tap naming no drive root, or a malformed drive id, is dropped by the
// webhook; a tap for a drive no GRAPH_RESOURCE entry names reaches the worker, which drops and counts it
// without reading anything. `handler resync drives/{id}` starts a pass on the drive by hand.
func TestDriveForgedAndForeignTaps(t *testing.T) {
	s := startDrive(t, nil)
	ctx := deadline(t, 120*time.Second)
	secret, url := s.Settings[config.ClientState], s.Settings[config.NotificationURL]
	tap := func(resource string) string {
		return fmt.Sprintf(`{"subscriptionId":"d850b120-7d8e-4a3b-9c2d-1e0f2a3b4c5d","changeType":"updated","clientState":%q,"resource":%q,"tenantId":%q}`,
			secret, resource, devstack.TenantID)
	}
	body := `{"value":[` + tap("drives/"+otherDrive+"/root") + `,` + tap("drives/b!x%2F..%2Fusers/root") + `,` + tap("drives/"+e2eDrive+"/items/01ABC") + `]}`
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("webhook answered %d", resp.StatusCode)
	}
	var dropped bool
	if err := devstack.Eventually(ctx, func() bool {
		for _, inv := range s.Host.Invocations() {
			if inv.Function == "queueworker" && slices.ContainsFunc(inv.Logs, func(l string) bool { return strings.Contains(l, "1 dropped") }) {
				dropped = true
			}
		}
		return dropped
	}); err != nil {
		t.Fatalf("the worker never dropped the foreign tap: %v", err)
	}
	if n := s.Graph.Count("GET", "/v1.0/drives/"+otherDrive); n != 0 {
		t.Errorf("a tap for a drive no subscription covers was read %d times", n)
	}
	for _, inv := range s.Host.Invocations() {
		if inv.Function == "webhook" && inv.Status != fakehost.Succeeded {
			t.Errorf("webhook invocation %+v", inv)
		}
	}

	// A change Graph never notified: `handler resync drives/{id}` finds it.
	s.Graph.DropNotifications(true)
	if _, err := s.Graph.AddDriveItem(e2eDrive, fakegraph.DriveItem{Name: "quiet.txt", Size: 1}); err != nil {
		t.Fatal(err)
	}
	s.Graph.DropNotifications(false)
	cmd := exec.Command(handlerBin, "resync", "drives/"+e2eDrive)
	for k, v := range s.Settings {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "resync drives/"+e2eDrive) {
		t.Fatalf("handler resync drives/…: %v\n%s", err, out)
	}
	if err := s.WaitEvents(ctx, func(evs []message.Event) bool {
		return slices.ContainsFunc(evs, func(e message.Event) bool { return e.Object["name"] == "quiet.txt" })
	}); err != nil {
		t.Fatalf("handler resync: %v", err)
	}
}

// seedDrive adds n files named prefix… to the drive, each notified, and returns their ids once every one has
// its event and the pipeline is idle.
func seedDrive(ctx context.Context, t *testing.T, s *devstack.Stack, prefix string, n int) []string {
	t.Helper()
	files, err := s.Graph.SeedDriveFiles(e2eDrive, "", prefix, n, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WaitEvents(ctx, func(evs []message.Event) bool {
		return !slices.ContainsFunc(files, func(id string) bool { return len(driveEvents(evs, id)) == 0 })
	}); err != nil {
		t.Fatalf("seeded files: %v", err)
	}
	if _, err := s.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	return files
}
