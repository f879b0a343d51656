package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/cmd/benchpipeline/pipekit"
	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/devstack"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakehost"
)

// The eventhubs group: the same kind of faults as the webhook groups, on a stack whose subscription
// delivers through the host double's event hub (the eventhub function is the intake). Its three scenarios
// share one stack and run in turn:
//   - forged events: forged collections sent straight into the hub while genuine changes flow through it;
//   - hostile batches: malformed events in the same batches as Graph's genuine ones, and the handler's
//     peak RSS for each batch;
//   - a SIGKILL of the handler while the eventhub function holds a batch: the retry policy in
//     eventhub/function.json keeps the checkpoint, so the same batch comes again.
//
// Genuine events are Graph's own: hubTap sits between the Graph double and the hub and can hold Graph's
// event bodies, so a scenario can send them in one SendEvents call with hostile events (one partition key:
// one batch).

// hubTap is the Graph double's Event Hubs sink, in front of the stack's own.
type hubTap struct {
	next fakegraph.EventHubSink

	mu      sync.Mutex
	hold    bool
	held    [][]byte
	changes int // change notifications Graph delivered (held or not)
	ids     map[string]bool
}

// install puts the tap in front of the stack's sink. Graph sends each notification as an event of its own,
// so a scenario's genuine changes can be spread over several batches.
func (t *hubTap) install(o *fakegraph.Options) {
	t.next = o.EventHubs
	o.EventHubs = t
	o.NotificationBatchSize = 1
}

func (t *hubTap) SendEvent(ctx context.Context, namespace, hub string, body []byte) error {
	var c struct {
		Value []struct {
			SubscriptionID string `json:"subscriptionId"`
			ChangeType     string `json:"changeType"`
			ResourceData   struct {
				ID string `json:"id"`
			} `json:"resourceData"`
		} `json:"value"`
	}
	_ = json.Unmarshal(body, &c) // Graph's bodies are collections; anything else is not counted
	t.mu.Lock()
	for _, n := range c.Value {
		if n.ChangeType != "" && !strings.EqualFold(n.SubscriptionID, "NA") {
			t.changes++
			if t.ids == nil {
				t.ids = map[string]bool{}
			}
			t.ids[n.ResourceData.ID] = true
		}
	}
	if t.hold {
		t.held = append(t.held, append([]byte(nil), body...))
		t.mu.Unlock()
		return nil // Graph sees a delivery, as the hub would have accepted it
	}
	t.mu.Unlock()
	return t.next.SendEvent(ctx, namespace, hub, body)
}

// holdOn makes the tap keep Graph's bodies instead of sending them on.
func (t *hubTap) holdOn() {
	t.mu.Lock()
	t.hold, t.held, t.ids = true, nil, nil
	t.mu.Unlock()
}

// release ends the hold and returns what was held.
func (t *hubTap) release() [][]byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	held := t.held
	t.hold, t.held = false, nil
	return held
}

func (t *hubTap) delivered() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.changes
}

// seen reports whether Graph has delivered a notification for every id since the last holdOn.
func (t *hubTap) seen(ids []string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, id := range ids {
		if !t.ids[id] {
			return false
		}
	}
	return true
}

// execHook calls a function once when the host double logs the start of an eventhub invocation: the host
// logs "Executing function" just before it hands the invocation to the handler.
type execHook struct {
	slog.Handler
	fire *atomic.Pointer[func()]
}

func (h execHook) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "Executing function" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "function" && a.Value.String() == "eventhub" {
				if f := h.fire.Swap(nil); f != nil {
					go (*f)()
				}
				return false
			}
			return true
		})
	}
	return h.Handler.Handle(ctx, r)
}

func (h execHook) WithAttrs(as []slog.Attr) slog.Handler {
	return execHook{h.Handler.WithAttrs(as), h.fire}
}
func (h execHook) WithGroup(name string) slog.Handler {
	return execHook{h.Handler.WithGroup(name), h.fire}
}

var ehTallyRE = regexp.MustCompile(`eventhub: partition \S+: (\d+) events \((\d+) validation, (\d+) malformed\): queued (\d+) change and (\d+) lifecycle notifications in \d+ messages; dropped (\d+)`)

// ehTally sums the eventhub function's invocations that started at or after since.
type ehTally struct {
	invocations, failed, retried                      int
	events, validation, malformed, changes, lifecycle int
	dropped                                           int
}

func eventhubTally(s *pipekit.Stack, since time.Time) ehTally {
	var t ehTally
	for _, inv := range s.Host.Invocations() {
		if inv.Function != "eventhub" || inv.Start.Before(since) {
			continue
		}
		t.invocations++
		if inv.Status != fakehost.Succeeded {
			t.failed++
		}
		if inv.RetryCount > 0 {
			t.retried++
		}
		for _, l := range inv.Logs {
			if m := ehTallyRE.FindStringSubmatch(l); m != nil {
				n := make([]int, 6)
				for i := range n {
					n[i], _ = strconv.Atoi(m[i+1])
				}
				t.events += n[0]
				t.validation += n[1]
				t.malformed += n[2]
				t.changes += n[3]
				t.lifecycle += n[4]
				t.dropped += n[5]
			}
		}
	}
	return t
}

func (t ehTally) String() string {
	return fmt.Sprintf("%d eventhub invocations (%d failed, %d retries) read %d events: %d malformed, queued %d change and %d lifecycle notifications, dropped %d",
		t.invocations, t.failed, t.retried, t.events, t.malformed, t.changes, t.lifecycle, t.dropped)
}

// awaitCheckpoints waits until the eventhub function's checkpoint has passed every position in sent: the
// partitions did not stall on anything in them.
func awaitCheckpoints(ctx context.Context, s *pipekit.Stack, sent []fakehost.EventPosition, limit time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	return s.Host.WaitFor(wctx, func() bool {
		for _, p := range sent {
			if seq, _ := s.Host.Checkpoint("eventhub", p.Partition); seq < p.SequenceNumber {
				return false
			}
		}
		return true
	})
}

// leakedEvents counts events read since t0 for users no genuine change of the group touches.
func leakedEvents(s *pipekit.Stack, t0 time.Time, untouched map[string]bool) int {
	n := 0
	for _, e := range s.Reader.Events() {
		if !e.ReadAt.Before(t0) && untouched[e.Event.ResourceID] {
			n++
		}
	}
	return n
}

func eventHubs(ctx context.Context, env *pipekit.Env, o options, rep *report, say func(string, ...any)) {
	tap := &hubTap{}
	var fire atomic.Pointer[func()]
	s, err := env.Start(ctx, devstack.Options{
		Users:     60,
		EventHubs: true,
		Settings:  map[string]string{config.NotificationURL: devstack.EventHubURL()},
		Graph:     tap.install,
		Host: func(h *fakehost.Options) {
			h.Logger = slog.New(execHook{h.Logger.Handler(), &fire})
		},
	}, o.poll)
	if err != nil {
		failedStart(rep, "eventhubs", "Event Hubs: forged events, hostile batches, handler killed mid-batch", err)
		return
	}
	defer s.Close()
	if sub := s.Graph.Subscriptions(); len(sub) != 1 || !strings.HasPrefix(sub[0].NotificationURL, fakegraph.EventHubPrefix) {
		// Only the count: a subscription carries the clientState.
		failedStart(rep, "eventhubs", "Event Hubs: forged events, hostile batches, handler killed mid-batch",
			fmt.Errorf("want one subscription through the hub, have %d (or not through the hub)", len(sub)))
		return
	}
	// Users 41–60 and 901–950 (absent from Graph) are never changed: the forgeries and hostile events name
	// them, so any event for one of them is a forgery that got through.
	untouched := map[string]bool{}
	for i := 41; i <= 60; i++ {
		untouched[devstack.UserID(i)] = true
	}
	for i := 901; i <= 950; i++ {
		untouched[devstack.UserID(i)] = true
	}
	forgedEvents(ctx, s, tap, untouched, rep, say)
	hostileBatches(ctx, s, tap, untouched, rep, say)
	killMidBatch(ctx, s, tap, &fire, rep, say)
}

// ehNotification is a change notification as Graph sends it, with the given clientState (omitted when
// empty), tenant and user id.
func ehNotification(subID, clientState, tenant, id string) string {
	cs := ""
	if clientState != "" {
		cs = fmt.Sprintf(`"clientState":%q,`, clientState)
	}
	return fmt.Sprintf(`{"subscriptionId":%q,"subscriptionExpirationDateTime":"2026-12-20T10:00:00+00:00","changeType":"updated",%s"tenantId":%q,"resource":"Users/%s","resourceData":{"@odata.type":"#Microsoft.Graph.User","@odata.id":"Users/%s","id":%q,"organizationId":%q}}`,
		subID, cs, tenant, id, id, id, tenant)
}

func forgedEvents(ctx context.Context, s *pipekit.Stack, tap *hubTap, untouched map[string]bool, rep *report, say func(string, ...any)) {
	const events, per = 300, 4
	r := &row{group: "eventhubs", name: "Event Hubs: forged events",
		fault: fmt.Sprintf("%d forged events of %d notifications sent into the hub (wrong / missing clientState, our clientState with a foreign tenant, ids that are not GUIDs, forged lifecycle events) while 10 users change through Graph", events, per)}
	defer rep.add(r)
	sub := s.Graph.Subscriptions()[0]
	secret := s.Settings[config.ClientState]
	foreign := "11111111-2222-3333-4444-555555555555"
	badIDs := []string{"delta", "$count", "microsoft.graph.user", "adele@contoso.example", "..%2F..%2Fsubscriptions", devstack.UserID(41) + "x"}
	forge := func(k int) []byte {
		var ns []string
		for j := range per {
			id := forgedTarget(k*per + j)
			var n string
			switch (k + j) % 6 {
			case 0:
				n = ehNotification(sub.ID, fmt.Sprintf("guess-%08d-abcdefgh", k), devstack.TenantID, id)
			case 1:
				n = ehNotification(sub.ID, "", devstack.TenantID, id)
			case 2:
				n = ehNotification(sub.ID, secret, foreign, id)
			case 3:
				n = ehNotification(sub.ID, secret, devstack.TenantID, badIDs[k%len(badIDs)])
			case 4:
				n = fmt.Sprintf(`{"subscriptionId":%q,"lifecycleEvent":"subscriptionRemoved","clientState":"forged-lifecycle-0123456789","tenantId":%q}`, sub.ID, devstack.TenantID)
			default: // our secret minus its last character
				n = ehNotification(sub.ID, secret[:len(secret)-1], devstack.TenantID, id)
			}
			ns = append(ns, n)
		}
		return []byte(`{"value":[` + strings.Join(ns, ",") + `]}`)
	}
	t0 := time.Now()
	g0 := tap.delivered()
	var sent []fakehost.EventPosition
	const chunk = 25
	for k := 0; k < events; k += chunk {
		if k == events/3 || k == 2*events/3 { // genuine changes in the middle of the flood (both multiples of chunk)
			from := 1 + 5*(3*k/events-1)
			for i := from; i < from+5; i++ {
				s.Graph.UpdateUser(devstack.UserID(i), map[string]any{"department": "during the hub flood"})
			}
		}
		batch := make([]fakehost.EventData, 0, chunk)
		for j := k; j < min(k+chunk, events); j++ {
			batch = append(batch, fakehost.EventData{Body: forge(j)})
		}
		sent = append(sent, s.Host.SendEvents(devstack.EventHubName, batch...)...)
	}
	if err := awaitCheckpoints(ctx, s, sent, 30*time.Second); err != nil {
		r.problems = append(r.problems, "the checkpoints did not pass the forged events within 30 s: a partition stalled")
	}
	finish(ctx, s, r, ids(1, 10), t0, 60*time.Second)
	t := eventhubTally(s, t0)
	genuine := tap.delivered() - g0
	leaked := leakedEvents(s, t0, untouched)
	r.extra = append(r.extra, fmt.Sprintf("%s; Graph delivered %d genuine change notifications through the hub; events for forged targets: %d", t, genuine, leaked))
	if t.changes != genuine || t.lifecycle != 0 || leaked > 0 {
		r.problems = append(r.problems, fmt.Sprintf("forgeries leaked: queued %d change and %d lifecycle notifications for %d genuine ones; %d events for forged targets", t.changes, t.lifecycle, genuine, leaked))
	}
	if t.dropped != events*per {
		r.problems = append(r.problems, fmt.Sprintf("dropped %d notifications, want the %d forged ones", t.dropped, events*per))
	}
	if t.failed > 0 {
		r.problems = append(r.problems, fmt.Sprintf("%d eventhub invocation(s) failed", t.failed))
	}
	r.restarts = s.Host.Restarts()
	r.notes = "every forged notification is dropped by the same verification as the webhook's (clientState, tenant, GUID ids); the checkpoints pass them"
	say("  eventhubs forged: %d/%d got, %d lost, %d leaked, dropped %d", r.o.Got, r.o.Changes, r.o.Lost, leaked, t.dropped)
}

func hostileBatches(ctx context.Context, s *pipekit.Stack, tap *hubTap, untouched map[string]bool, rep *report, say func(string, ...any)) {
	r := &row{group: "eventhubs", name: "Event Hubs: hostile batches",
		fault: "3 batches (one partition key each) mixing Graph's genuine events for 10 users with malformed ones: not JSON, truncated JSON, `null`, invalid UTF-8, base64 garbage, duplicate `value` keys, 4 MiB `{\"value\":[{},{},…]}` (one, then two in a batch)"}
	defer rep.add(r)
	sub := s.Graph.Subscriptions()[0]
	secret := s.Settings[config.ClientState]
	changed := ids(11, 20)
	t0 := time.Now()
	g0 := tap.delivered()
	tap.holdOn()
	for _, id := range changed {
		s.Graph.UpdateUser(id, map[string]any{"officeLocation": "between hostile events"})
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := devstack.Eventually(wctx, func() bool { return tap.seen(changed) })
	cancel()
	genuine := tap.release()
	if err != nil {
		r.problems = append(r.problems, "Graph did not deliver the 10 changes to the hub within 30 s")
	}

	garbage := make([]byte, 3000)
	for i := range garbage {
		garbage[i] = byte(rand.IntN(256))
	}
	empties := []byte(`{"value":[` + strings.Repeat(`{},`, (4<<20-14)/3) + `{}]}`)
	// The webhook answers 400 to a body with two `value` arrays; the second names an untouched user with
	// our clientState, so reading it as the last one wins would leak.
	dupKeys := []byte(`{"value":[` + ehNotification(sub.ID, "", devstack.TenantID, devstack.UserID(42)) + `],"value":[` + ehNotification(sub.ID, secret, devstack.TenantID, devstack.UserID(42)) + `]}`)
	// malformed: skipped as unreadable; the others are collections that are read and whose notifications
	// fail verification (the host passes the invalid UTF-8 on with U+FFFD, which is valid JSON).
	type ev struct {
		body      []byte
		malformed bool
	}
	hostile := [][]ev{
		{{[]byte("this is not JSON"), true}, {[]byte(`{"value":[{"subscriptionId":"a","changeType":"upd`), true}, {[]byte("null"), true},
			{[]byte("{\"value\":[{\"clientState\":\"\xff\xfe\"}]}"), false}, {[]byte(base64.StdEncoding.EncodeToString(garbage)), true}, {garbage, true}},
		{{empties, false}, {dupKeys, true}, {[]byte("}{"), true}},
		{{empties, false}, {empties, false}, {[]byte(`[1,2,3]`), true}},
	}
	pid := s.Host.HandlerPID()
	var sent []fakehost.EventPosition
	var peaks []string
	var peak int64
	hostileN, wantMalformed := 0, 0
	for b, hs := range hostile {
		// Genuine events around the hostile ones: before, between and after them.
		var batch []fakehost.EventData
		key := fmt.Sprintf("hostile-batch-%d", b)
		var mine [][]byte
		for i, g := range genuine {
			if i%len(hostile) == b {
				mine = append(mine, g)
			}
		}
		for i, h := range hs {
			if i < len(mine) {
				batch = append(batch, fakehost.EventData{Body: mine[i], PartitionKey: key})
			}
			batch = append(batch, fakehost.EventData{Body: h.body, PartitionKey: key})
			hostileN++
			if h.malformed {
				wantMalformed++
			}
		}
		for i := len(hs); i < len(mine); i++ {
			batch = append(batch, fakehost.EventData{Body: mine[i], PartitionKey: key})
		}
		if err := resetHWM(pid); err != nil {
			r.problems = append(r.problems, "cannot reset the peak RSS: "+err.Error())
		}
		pos := s.Host.SendEvents(devstack.EventHubName, batch...)
		sent = append(sent, pos...)
		if err := awaitCheckpoints(ctx, s, pos, 30*time.Second); err != nil {
			r.problems = append(r.problems, fmt.Sprintf("batch %d: the checkpoint did not pass it within 30 s: the partition stalled", b+1))
		}
		_, hwm, err := memStatus(pid)
		if err != nil {
			r.problems = append(r.problems, "read the peak RSS: "+err.Error())
		}
		peak = max(peak, hwm)
		size := 0
		for _, e := range batch {
			size += len(e.Body)
		}
		peaks = append(peaks, fmt.Sprintf("batch %d (%d events, %.1f MiB) %s", b+1, len(batch), float64(size)/(1<<20), mib(hwm)))
	}
	if s.Host.HandlerPID() != pid {
		r.problems = append(r.problems, "the handler process was replaced: it crashed")
	}
	if peak > hostileRSSThree {
		r.problems = append(r.problems, fmt.Sprintf("peak RSS %s over the %s target (three 4 MiB hostile bodies at once)", mib(peak), mib(hostileRSSThree)))
	}
	finish(ctx, s, r, changed, t0, 60*time.Second)
	t := eventhubTally(s, t0)
	n := tap.delivered() - g0
	leaked := leakedEvents(s, t0, untouched)
	r.extra = append(r.extra, fmt.Sprintf("%s; Graph's %d events (%d change notifications) sent with %d hostile ones; handler peak RSS (VmHWM, reset before each batch): %s; events for untouched users: %d",
		t, len(genuine), n, hostileN, strings.Join(peaks, ", "), leaked))
	if t.events != len(sent) {
		r.problems = append(r.problems, fmt.Sprintf("the function read %d events of the %d sent", t.events, len(sent)))
	}
	if t.malformed != wantMalformed {
		r.problems = append(r.problems, fmt.Sprintf("%d events skipped as malformed, want %d", t.malformed, wantMalformed))
	}
	if t.changes != n || leaked > 0 {
		r.problems = append(r.problems, fmt.Sprintf("queued %d change notifications for Graph's %d; %d events for untouched users", t.changes, n, leaked))
	}
	if t.failed > 0 {
		r.problems = append(r.problems, fmt.Sprintf("%d eventhub invocation(s) failed: a malformed event must be skipped, not retried", t.failed))
	}
	r.restarts = s.Host.Restarts()
	r.notes = "a malformed event is logged and skipped, the rest of its batch is queued, and the checkpoint moves past it; the 4 MiB collections of empty notifications are read and dropped (no clientState)"
	say("  eventhubs hostile: %d/%d got, %d lost, %d malformed skipped, peak RSS %s", r.o.Got, r.o.Changes, r.o.Lost, t.malformed, mib(peak))
}

func killMidBatch(ctx context.Context, s *pipekit.Stack, tap *hubTap, fire *atomic.Pointer[func()], rep *report, say func(string, ...any)) {
	r := &row{group: "eventhubs", name: "Event Hubs: handler SIGKILL mid-batch",
		fault: "SIGKILL once the handler has read an invocation holding two 4 MiB events (so it takes the handler a while) and Graph's 15 events for 15 users, before it answers"}
	defer rep.add(r)
	changed := ids(21, 35)
	restarts0 := s.Host.Restarts()
	t0 := time.Now()
	tap.holdOn()
	for _, id := range changed {
		s.Graph.UpdateUser(id, map[string]any{"jobTitle": "killed mid-batch"})
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := devstack.Eventually(wctx, func() bool { return tap.seen(changed) })
	cancel()
	genuine := tap.release()
	if err != nil {
		r.problems = append(r.problems, "Graph did not deliver the 15 changes to the hub within 30 s")
	}
	empties := []byte(`{"value":[` + strings.Repeat(`{},`, (4<<20-14)/3) + `{}]}`)
	batch := []fakehost.EventData{{Body: empties, PartitionKey: "kill"}, {Body: empties, PartitionKey: "kill"}}
	for _, g := range genuine {
		batch = append(batch, fakehost.EventData{Body: g, PartitionKey: "kill"})
	}
	size := 0
	for _, e := range batch {
		size += len(e.Body)
	}
	// The kill comes once the handler has read the whole invocation (its rchar, which counts socket reads,
	// grew by the batch's size), so it dies while it decodes and verifies the batch, before it answers.
	var killErr error
	var readBefore, readAtKill int64
	killed := make(chan struct{})
	kill := func() {
		defer close(killed)
		pid := s.Host.HandlerPID()
		readBefore, _ = readChars(pid)
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if readAtKill, _ = readChars(pid); readAtKill-readBefore >= int64(size) {
				break
			}
			time.Sleep(time.Millisecond)
		}
		killErr = s.Host.KillHandler()
	}
	fire.Store(&kill)
	pos := s.Host.SendEvents(devstack.EventHubName, batch...)
	select {
	case <-killed:
	case <-time.After(30 * time.Second):
		if fire.Swap(nil) == nil {
			<-killed // it fired just now: let it finish before its results are read
		} else {
			r.problems = append(r.problems, "no eventhub invocation started within 30 s: nothing was killed")
		}
	}
	if killErr != nil {
		r.problems = append(r.problems, "kill: "+killErr.Error())
	}
	// The retry policy's first interval is 5 s; the handler restarts meanwhile.
	if err := awaitCheckpoints(ctx, s, pos, 60*time.Second); err != nil {
		r.problems = append(r.problems, "the checkpoint did not pass the killed batch within 60 s")
	}
	finish(ctx, s, r, changed, t0, 60*time.Second)
	t := eventhubTally(s, t0)
	r.restarts = s.Host.Restarts() - restarts0
	var failure string
	for _, inv := range s.Host.Invocations() {
		if inv.Function == "eventhub" && !inv.Start.Before(t0) && inv.Status != fakehost.Succeeded {
			failure = inv.Error
		}
	}
	r.extra = append(r.extra, fmt.Sprintf("%s; the killed batch: %d events (%d of them Graph's, %.1f MiB), killed after the handler had read %.1f MiB of the invocation; the failed invocation: %q", t, len(batch), len(genuine), float64(size)/(1<<20), float64(readAtKill-readBefore)/(1<<20), failure))
	if t.failed == 0 {
		r.problems = append(r.problems, "no eventhub invocation failed: the kill did not hit the batch (timing), so the scenario did not test what it should")
	}
	if t.failed > 0 && t.retried == 0 {
		r.problems = append(r.problems, "the failed batch was not retried")
	}
	if r.o.Duplicated > r.o.SameID {
		r.problems = append(r.problems, fmt.Sprintf("%d change(s) got events with different ids", r.o.Duplicated-r.o.SameID))
	}
	if r.restarts != 1 {
		r.problems = append(r.problems, fmt.Sprintf("%d restarts, want exactly 1", r.restarts))
	}
	r.notes = "the kill fails the invocation; the checkpoint stays (function.json's retry policy, 5 s first interval) and the same batch is invoked again on the restarted handler; its output is written only once the invocation succeeds"
	say("  eventhubs kill: %d/%d got, %d lost, %d duplicated (%d same id), %d failed invocations", r.o.Got, r.o.Changes, r.o.Lost, r.o.Duplicated, r.o.SameID, t.failed)
}

// readChars is the bytes pid has read through read-like system calls, sockets included (rchar in
// /proc/<pid>/io).
func readChars(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "rchar: "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("no rchar in /proc/%d/io", pid)
}
