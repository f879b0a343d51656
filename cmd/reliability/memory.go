package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/cmd/benchpipeline/pipekit"
	"github.com/graphwebhooks/graph-webhooks-go/internal/devstack"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakehost"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

// Targets of the hostile-input group, on the built handler: peak RSS of the handler process (VmHWM) for one
// 4 MiB hostile body and for three at once, and the time to answer one.
const (
	hostileRSSOne   = 64 << 20
	hostileRSSThree = 160 << 20
	hostileTimeOne  = time.Second
)

// memCase is one input of the hostile-input group and what became of it.
type memCase struct {
	name       string
	bodies     int // POSTed at once
	size       int // bytes per body
	status     []int
	took       time.Duration // slowest answer, at the front
	cpu        time.Duration // the handler process's CPU time during the case
	hwm        int64         // the handler's VmHWM after the case (reset before it)
	queued     int           // notifications the webhook reported queued
	dropped    int
	detail     int // longest answer body, bytes (a 400 detail must not echo the input)
	wantQueued int // -1: any
	problems   []string
}

// memReport is the hostile-input group's own table.
type memReport struct {
	baseRSS, baseHWM int64
	load             string
	cases            []*memCase
	restarts         int
	queueCheck       string
	problems         []string
}

// memoryHostile drives the built handler through the host double with bodies meant to exhaust memory or to
// slip something past verification, one case at a time on a stack of its own whose queue trigger is off
// (so the handler's memory is the webhook's alone and the queue holds exactly what the webhook wrote).
func memoryHostile(ctx context.Context, env *pipekit.Env, o options, rep *report, say func(string, ...any)) {
	mr := &memReport{}
	rep.mu.Lock()
	rep.memory = mr
	rep.mu.Unlock()
	s, err := env.Start(ctx, devstack.Options{Users: 20, Host: func(h *fakehost.Options) { h.DisableQueueTriggers = true }}, o.poll)
	if err != nil {
		mr.problems = append(mr.problems, "the stack did not start: "+err.Error())
		return
	}
	defer s.Close()
	pid := s.Host.HandlerPID()
	mr.baseRSS, mr.baseHWM, _ = memStatus(pid)
	mr.load = pipekit.LoadAvg()
	secret, url := s.Settings["GRAPH_CLIENT_STATE"], s.Settings["GRAPH_NOTIFICATION_URL"]
	before, _ := s.QueueCount(ctx, devstack.NotificationQueue)

	genuine := func(i int, id string) string {
		return fmt.Sprintf(`{"subscriptionId":"d850b120-7d8e-4a3b-9c2d-1e0f2a3b4c5d","subscriptionExpirationDateTime":"2026-12-20T10:00:00+00:00","changeType":"updated","clientState":%q,"resource":"Users/%s","resourceData":{"@odata.type":"#Microsoft.Graph.User","@odata.id":"Users/%s","id":%q,"organizationId":%q,"eventTime":"2026-11-27T09:59:58.24Z","sequenceNumber":%d},"tenantId":%q}`,
			secret, id, id, id, devstack.TenantID, 638700000000000001+i, devstack.TenantID)
	}
	fill := func(size int, elem func(i int) string) []byte {
		var b bytes.Buffer
		b.WriteString(`{"value":[`)
		for i := 0; ; i++ {
			e := elem(i)
			if b.Len()+len(e)+3 > size {
				break
			}
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(e)
		}
		b.WriteString(`]}`)
		return b.Bytes()
	}
	const mib4 = 4 << 20
	empty := fill(mib4, func(int) string { return "{}" })
	forged := fill(mib4, func(i int) string {
		return strings.Replace(genuine(i, devstack.UserID(1+i%20)), secret, "forged-client-state-00000000", 1)
	})
	genuine4 := fill(mib4, func(i int) string { return genuine(i, devstack.UserID(1+i%20)) })
	nGenuine := bytes.Count(genuine4, []byte(`"clientState"`))
	one := genuine(0, devstack.UserID(1))
	badIDs := []string{"delta", "$count", "microsoft.graph.user", "adele@contoso.example", "..%2F..%2Fsubscriptions", devstack.UserID(2) + "x"}
	var bad []string
	for i, id := range badIDs {
		bad = append(bad, genuine(i, id))
	}
	hugeSeq := strings.Replace(one, `"sequenceNumber":638700000000000001`, `"sequenceNumber":"`+strings.Repeat("9x", 512<<10)+`"`, 1)

	cases := []struct {
		c    *memCase
		body []byte
	}{
		{&memCase{name: "4 MiB of empty notifications `{\"value\":[{},{},…]}`", bodies: 1, status: []int{202}, wantQueued: 0}, empty},
		{&memCase{name: "the same, three at once", bodies: 3, status: []int{202}, wantQueued: 0}, empty},
		{&memCase{name: "4 MiB of complete notifications with a wrong clientState", bodies: 1, status: []int{202}, wantQueued: 0}, forged},
		{&memCase{name: "two `value` arrays: a forged notification, then a genuine one", bodies: 1, status: []int{400}, wantQueued: 0},
			[]byte(`{"value":[` + strings.Replace(one, `"clientState":"`+secret+`",`, "", 1) + `],"value":[` + one + `]}`)},
		{&memCase{name: "a genuine notification with a second `clientState`", bodies: 1, status: []int{400}, wantQueued: 0},
			[]byte(`{"value":[` + strings.Replace(one, `"changeType"`, `"clientState":"forged-client-state-00000000","changeType"`, 1) + `]}`)},
		{&memCase{name: "our clientState, ids that are not GUIDs (`delta`, `$count`, a UPN, a path…)", bodies: 1, status: []int{202}, wantQueued: 0},
			[]byte(`{"value":[` + strings.Join(bad, ",") + `]}`)},
		{&memCase{name: "a 1 MiB string `sequenceNumber`", bodies: 1, status: []int{400}, wantQueued: 0}, []byte(`{"value":[` + hugeSeq + `]}`)},
		{&memCase{name: fmt.Sprintf("a genuine 4 MiB POST of %d notifications", nGenuine), bodies: 1, status: []int{202}, wantQueued: nGenuine}, genuine4},
	}
	client := &http.Client{Timeout: 60 * time.Second}
	for _, tc := range cases {
		c := tc.c
		c.size = len(tc.body)
		mr.cases = append(mr.cases, c)
		if err := resetHWM(pid); err != nil {
			c.problems = append(c.problems, "cannot reset the peak RSS: "+err.Error())
		}
		cpu0, _ := cpuTime(pid)
		t0 := time.Now()
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range c.bodies {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st := time.Now()
				code, n, err := post(ctx, client, url, tc.body)
				took := time.Since(st)
				mu.Lock()
				defer mu.Unlock()
				c.took = max(c.took, took)
				c.detail = max(c.detail, n)
				if err != nil {
					c.problems = append(c.problems, err.Error())
					return
				}
				if !containsInt(c.status, code) {
					c.problems = append(c.problems, fmt.Sprintf("answered %d, want %v", code, c.status))
				}
			}()
		}
		wg.Wait()
		_, c.hwm, _ = memStatus(pid)
		if cpu1, err := cpuTime(pid); err == nil {
			c.cpu = cpu1 - cpu0
		}
		wh := s.Webhook(t0)
		c.queued, c.dropped = wh.Queued, wh.Dropped
		if wh.Failed > 0 {
			c.problems = append(c.problems, fmt.Sprintf("%d failed webhook invocation(s)", wh.Failed))
		}
		if c.wantQueued >= 0 && c.queued != c.wantQueued {
			c.problems = append(c.problems, fmt.Sprintf("queued %d notifications, want %d", c.queued, c.wantQueued))
		}
		if c.status[0] == 400 && c.detail > 512 {
			c.problems = append(c.problems, fmt.Sprintf("the 400 answer is %d bytes: it echoes the input", c.detail))
		}
		switch {
		case c.bodies == 1 && c.size >= mib4/2 && c.wantQueued == 0:
			if c.hwm > hostileRSSOne {
				c.problems = append(c.problems, fmt.Sprintf("peak RSS %s over the %s target", mib(c.hwm), mib(hostileRSSOne)))
			}
			// The time target is judged on the handler's CPU time: on a shared machine the wall time also
			// measures everyone else's load (shown next to it, with the load average).
			if c.cpu > hostileTimeOne {
				c.problems = append(c.problems, fmt.Sprintf("the handler spent %s of CPU on it, over the %s target", pipekit.Ms(c.cpu), hostileTimeOne))
			}
		case c.bodies == 3 && c.hwm > hostileRSSThree:
			c.problems = append(c.problems, fmt.Sprintf("peak RSS %s over the %s target", mib(c.hwm), mib(hostileRSSThree)))
		}
		if s.Host.HandlerPID() != pid {
			c.problems = append(c.problems, "the handler process was replaced: it crashed")
			pid = s.Host.HandlerPID()
		}
		say("  hostile input: %s → %s, peak RSS %s, queued %d", c.name, pipekit.Ms(c.took), mib(c.hwm), c.queued)
	}
	mr.restarts = s.Host.Restarts()
	mr.queueCheck = checkQueued(ctx, s, before, nGenuine, &mr.problems)
}

// checkQueued reads back every message the webhook wrote and checks they hold the genuine notifications,
// none of them with a clientState.
func checkQueued(ctx context.Context, s *pipekit.Stack, before, want int, problems *[]string) string {
	msgs, notes, withSecret := 0, 0, 0
	for {
		batch, err := s.Queue.Receive(ctx, devstack.NotificationQueue, 32, 10*time.Minute)
		if err != nil {
			*problems = append(*problems, "read the queue: "+err.Error())
			break
		}
		if len(batch) == 0 {
			break
		}
		for _, m := range batch {
			msg, err := message.Decode(m.Text)
			if err != nil || msg.Kind == message.KindResync {
				continue
			}
			msgs++
			notes += len(msg.Notifications)
			if bytes.Contains(bytes.ToLower(m.Text), []byte("clientstate")) {
				withSecret++
			}
		}
	}
	if notes != want || withSecret > 0 {
		*problems = append(*problems, fmt.Sprintf("the queue holds %d notifications (want %d), %d message(s) with a clientState", notes, want, withSecret))
	}
	return fmt.Sprintf("read back from `webhooksnotificationqueue`: %d messages holding %d notifications (%d resync request(s) from start-up before), %d of them carrying a `clientState`", msgs, notes, before, withSecret)
}

func post(ctx context.Context, client *http.Client, url string, body []byte) (status, answer int, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 8<<20))
	return resp.StatusCode, int(n), err
}

func containsInt(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// resetHWM resets pid's peak RSS (VmHWM) to its current RSS (Linux ≥ 4.0: "5" to clear_refs).
func resetHWM(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// memStatus reads VmRSS and VmHWM (peak RSS) of pid in bytes.
func memStatus(pid int) (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(fs[1], 10, 64)
		switch fs[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			hwm = kb << 10
		}
	}
	return rss, hwm, sc.Err()
}

// cpuTime is the user+system CPU time pid has used (fields 14 and 15 of /proc/<pid>/stat, in clock ticks
// of 1/100 s, which the kernel ABI fixes on Linux).
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	st := string(b)
	f := strings.Fields(st[strings.LastIndexByte(st, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+k) * 10 * time.Millisecond, nil
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// renderMemory writes the hostile-input table.
func renderMemory(p func(string, ...any), mr *memReport) {
	p("#### Hostile input: memory, time and what was queued\n\n")
	p("The built handler under the host double (queue trigger off, so its memory is the webhook's alone), bodies POSTed to the\n")
	p("webhook's front with the function key. *Peak RSS* is the handler process's VmHWM after the case, reset before it\n")
	p("(`/proc/<pid>/clear_refs`; memory an earlier case left mapped counts); *time* is the slowest answer at the front, *CPU* the\n")
	p("handler's user+system time for the case (the machine is shared: load average at the start %s, so the time target is judged\n", mr.load)
	p("on CPU). Targets: one 4 MiB hostile body ≤ %s and ≤ %s, ", mib(hostileRSSOne), hostileTimeOne)
	p("three at once ≤ %s; the genuine 4 MiB POST fully queued. Handler at rest: RSS %s.\n\n", mib(hostileRSSThree), mib(mr.baseRSS))
	p("| input | bodies × size | answer | time | CPU | peak RSS | queued | dropped | longest answer | verdict |\n|---|---:|---|---:|---:|---:|---:|---:|---:|---|\n")
	for _, c := range mr.cases {
		verdict := "✓"
		if len(c.problems) > 0 {
			verdict = "**✗ " + strings.Join(c.problems, "; ") + "**"
		}
		p("| %s | %d × %.2f MiB | %v | %s | %s | %s | %d | %d | %d B | %s |\n", c.name, c.bodies, float64(c.size)/(1<<20), c.status, pipekit.Ms(c.took), pipekit.Ms(c.cpu), mib(c.hwm), c.queued, c.dropped, c.detail, verdict)
	}
	p("\nInputs tried: %d; handler crashes (restarts): %d; %s.\n\n", len(mr.cases), mr.restarts, mr.queueCheck)
}

// memoryProblems lists everything wrong in the group, for the run's verdict.
func memoryProblems(mr *memReport) []string {
	if mr == nil {
		return nil
	}
	out := append([]string(nil), mr.problems...)
	for _, c := range mr.cases {
		for _, x := range c.problems {
			out = append(out, c.name+": "+x)
		}
	}
	if mr.restarts > 0 {
		out = append(out, fmt.Sprintf("the handler restarted %d time(s)", mr.restarts))
	}
	return out
}
