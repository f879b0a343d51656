package status

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"

	"github.com/graphwebhooks/graph-webhooks-go/internal/checkpoint"
	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/testclock"
)

var now = testclock.Date(2026, 12, 1, 12, 0, 0)

type fakeGraph struct {
	subs []graph.Subscription
	err  error
}

func (f *fakeGraph) ListSubscriptions(context.Context) ([]graph.Subscription, error) {
	return f.subs, f.err
}

type fakeStore struct {
	cps map[string]checkpoint.Checkpoint
	err error
}

func (f *fakeStore) Load(_ context.Context, col string) (checkpoint.Checkpoint, checkpoint.ETag, error) {
	if f.err != nil {
		return checkpoint.Checkpoint{}, "", f.err
	}
	return f.cps[col], "", nil
}

type fakeQueues struct {
	counts map[string]int
	oldest map[string]time.Time
	err    error
	// block makes every call wait for the context, as an unreachable account does.
	block bool
}

func (f *fakeQueues) ApproximateCount(ctx context.Context, q string) (int, error) {
	if f.block {
		<-ctx.Done()
		return 0, ctx.Err()
	}
	return f.counts[q], f.err
}

func (f *fakeQueues) OldestInserted(_ context.Context, q string) (time.Time, bool, error) {
	t, ok := f.oldest[q]
	return t, ok, f.err
}

// healthy is a world with nothing to report: a subscription with 20 days left, a pass completed an hour ago.
func healthy() (*fakeGraph, *fakeStore, *fakeQueues) {
	g := &fakeGraph{subs: []graph.Subscription{
		{ID: "sub-users", Resource: "users", ChangeType: "updated,deleted", ExpirationDateTime: now.Add(20 * 24 * time.Hour),
			NotificationURL: "https://app.example.net/api/webhook?code=SECRETKEY&cs=abcd", LifecycleNotificationURL: "https://app.example.net/api/webhook?code=SECRETKEY"},
		{ID: "someone-else", Resource: "groups", ChangeType: "updated", ExpirationDateTime: now.Add(time.Hour)},
	}}
	st := &fakeStore{cps: map[string]checkpoint.Checkpoint{"users": {
		LastCompleted: now.Add(-time.Hour),
		LastPass:      &checkpoint.Pass{ID: "p1", Events: 7, Pages: 2, Started: now.Add(-time.Hour - time.Minute)},
	}}}
	q := &fakeQueues{counts: map[string]int{"work": 3, "changes": 40}}
	return g, st, q
}

func checker(g *fakeGraph, st *fakeStore, q *fakeQueues) *Checker {
	return &Checker{
		Resources:   []string{"users"},
		Collections: []string{"users"},
		Mine:        func(s graph.Subscription, res string) bool { return s.Resource == res },
		WorkQueue:   "work", PoisonQueue: "poison", ChangesQueue: "changes",
		StallAfter:  10 * time.Minute,
		Graph:       func() (Graph, error) { return g, nil },
		Checkpoints: func() (Checkpoints, error) { return st, nil },
		Queues:      func() (Queues, error) { return q, nil },
		Now:         func() time.Time { return now },
	}
}

func codes(r Report) []string {
	var out []string
	for _, f := range r.Findings {
		out = append(out, f.Code+"/"+f.Subject)
	}
	return out
}

func TestHealthy(t *testing.T) {
	r := checker(healthy()).Check(context.Background())
	if r.Health != Healthy || r.ExitCode != 0 || len(r.Findings) != 0 {
		t.Fatalf("health %s exit %d findings %v", r.Health, r.ExitCode, codes(r))
	}
	s := r.Subscriptions[0]
	if s.State != Live || s.ID != "sub-users" || *s.DaysLeft != 20 || s.Delivery != "webhook" ||
		s.NotificationHost != "app.example.net" || !s.LifecycleURLSet || s.Duplicates != 0 {
		t.Errorf("subscription %+v", s)
	}
	if rs := r.Resync[0]; rs.LastCompleted == nil || rs.LastCompleted.Events != 7 || rs.LastCompleted.AgoSeconds != 3600 || rs.InProgress != nil {
		t.Errorf("resync %+v", rs)
	}
	if q := r.Queues; q[0].ApproximateMessages != 3 || q[1].ApproximateMessages != 0 || q[2].ApproximateMessages != 40 || q[1].OldestAgeSeconds != nil {
		t.Errorf("queues %+v", q)
	}
}

func TestFindings(t *testing.T) {
	cases := []struct {
		name   string
		change func(*fakeGraph, *fakeStore, *fakeQueues)
		health Health
		want   []string
	}{
		{"no subscription", func(g *fakeGraph, _ *fakeStore, _ *fakeQueues) { g.subs = g.subs[1:] }, Attention,
			[]string{"no-subscription/users"}},
		{"expired", func(g *fakeGraph, _ *fakeStore, _ *fakeQueues) { g.subs[0].ExpirationDateTime = now.Add(-time.Minute) }, Attention,
			[]string{"no-subscription/users"}},
		{"under 3 days", func(g *fakeGraph, _ *fakeStore, _ *fakeQueues) {
			g.subs[0].ExpirationDateTime = now.Add(71 * time.Hour)
		}, Attention,
			[]string{"subscription-expiring/users"}},
		{"3 days left is fine", func(g *fakeGraph, _ *fakeStore, _ *fakeQueues) {
			g.subs[0].ExpirationDateTime = now.Add(72 * time.Hour)
		}, Healthy, nil},
		{"poison", func(_ *fakeGraph, _ *fakeStore, q *fakeQueues) {
			q.counts["poison"] = 2
			q.oldest = map[string]time.Time{"poison": now.Add(-5 * time.Hour)}
		}, Attention, []string{"poison-not-empty/poison"}},
		{"resync older than 48 h", func(_ *fakeGraph, st *fakeStore, _ *fakeQueues) {
			cp := st.cps["users"]
			cp.LastCompleted = now.Add(-49 * time.Hour)
			st.cps["users"] = cp
		}, Attention, []string{"resync-overdue/users"}},
		{"no resync ever", func(_ *fakeGraph, st *fakeStore, _ *fakeQueues) { st.cps["users"] = checkpoint.Checkpoint{} }, Attention,
			[]string{"resync-overdue/users"}},
		{"first pass running", func(_ *fakeGraph, st *fakeStore, _ *fakeQueues) {
			st.cps["users"] = checkpoint.Checkpoint{Pass: &checkpoint.Pass{ID: "p", Started: now.Add(-time.Hour), Updated: now.Add(-time.Minute)}}
		}, Healthy, nil},
		{"first pass stuck for days", func(_ *fakeGraph, st *fakeStore, _ *fakeQueues) {
			st.cps["users"] = checkpoint.Checkpoint{Pass: &checkpoint.Pass{ID: "p", Started: now.Add(-50 * time.Hour), Updated: now.Add(-49 * time.Hour)}}
		}, Attention, []string{"resync-overdue/users"}},
		{"checkpoint unreadable", func(_ *fakeGraph, st *fakeStore, _ *fakeQueues) {
			st.err = fmt.Errorf("%w: delta/users.json: bad", checkpoint.ErrCorrupt)
		}, Attention, []string{"checkpoint-unreadable/users"}},
		{"graph unreachable", func(g *fakeGraph, _ *fakeStore, _ *fakeQueues) { g.err = errors.New("dial tcp: connection refused") }, CannotTell,
			[]string{"graph-unreachable/Graph"}},
		{"storage unreachable", func(_ *fakeGraph, st *fakeStore, _ *fakeQueues) { st.err = errors.New("dial tcp: connection refused") }, CannotTell,
			[]string{"storage-unreachable/AzureWebJobsStorage (blob)"}},
		{"attention and could not check: could not check wins", func(g *fakeGraph, _ *fakeStore, q *fakeQueues) {
			g.err = errors.New("timeout")
			q.counts["poison"] = 1
		}, CannotTell, []string{"graph-unreachable/Graph", "poison-not-empty/poison"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g, st, q := healthy()
			c.change(g, st, q)
			r := checker(g, st, q).Check(context.Background())
			if r.Health != c.health || r.ExitCode != c.health.ExitCode() || fmt.Sprint(codes(r)) != fmt.Sprint(c.want) {
				t.Fatalf("health %s exit %d findings %v; want %s %v", r.Health, r.ExitCode, codes(r), c.health, c.want)
			}
			for _, f := range r.Findings {
				if f.Message == "" || f.Action == "" {
					t.Errorf("finding %+v does not say what happened and what to do", f)
				}
			}
		})
	}
	if Healthy.ExitCode() != 0 || Attention.ExitCode() != 1 || CannotTell.ExitCode() != 2 {
		t.Error("exit codes are 0 healthy, 1 attention, 2 could not check")
	}
}

func TestMissingSettingIsCouldNotCheck(t *testing.T) {
	g, st, q := healthy()
	c := checker(g, st, q)
	cfg := config.Load(func(string) string { return "" })
	c.Queues = func() (Queues, error) { return nil, cfg.Check(config.Storage) }
	c.Checkpoints = func() (Checkpoints, error) { return nil, cfg.Check(config.Storage) }
	r := c.Check(context.Background())
	if r.ExitCode != 2 || fmt.Sprint(codes(r)) != "[settings/AzureWebJobsStorage]" {
		t.Fatalf("exit %d findings %v", r.ExitCode, codes(r))
	}
	if r.Subscriptions[0].State != Live {
		t.Error("Graph is still checked when storage settings are missing")
	}
}

func TestUnansweredStorageIsBoundedByTheTimeout(t *testing.T) {
	g, st, q := healthy()
	q.block = true
	c := checker(g, st, q)
	c.Timeout = 50 * time.Millisecond
	r := c.Check(context.Background())
	if r.ExitCode != 2 || fmt.Sprint(codes(r)) != "[storage-unreachable/AzureWebJobsStorage (queue)]" ||
		!strings.Contains(r.Findings[0].Message, "deadline") {
		t.Fatalf("exit %d findings %+v", r.ExitCode, r.Findings)
	}
}

func TestPassInProgressAndStall(t *testing.T) {
	g, st, q := healthy()
	cp := st.cps["users"]
	cp.Pass = &checkpoint.Pass{ID: "p2", Pages: 3, Events: 12, Started: now.Add(-time.Hour), Updated: now.Add(-11 * time.Minute)}
	st.cps["users"] = cp
	r := checker(g, st, q).Check(context.Background())
	p := r.Resync[0].InProgress
	if p == nil || p.Page != 4 || p.Events != 12 || !p.Stalled || p.AgoSeconds != 660 {
		t.Fatalf("in progress %+v", p)
	}
	// A pass waiting for Graph's Retry-After is not stalled.
	cp.Pass.Wait = now.Add(time.Minute)
	r = checker(g, st, q).Check(context.Background())
	if r.Resync[0].InProgress.Stalled {
		t.Error("a waiting pass is not stalled")
	}
}

func TestDuplicatesAndEventHubs(t *testing.T) {
	g, st, q := healthy()
	g.subs = append(g.subs, graph.Subscription{ID: "sub-2", Resource: "users", ExpirationDateTime: now.Add(25 * 24 * time.Hour),
		NotificationURL: "EventHub:https://ns.servicebus.windows.net/eventhubname/hub?tenantId=contoso.onmicrosoft.com"})
	r := checker(g, st, q).Check(context.Background())
	s := r.Subscriptions[0]
	if s.ID != "sub-2" || s.Duplicates != 1 || s.Delivery != "eventhubs" || s.NotificationHost != "ns.servicebus.windows.net" || s.LifecycleURLSet {
		t.Fatalf("subscription %+v: the longest-lived is the one the timer keeps", s)
	}
}

func TestSeveralResources(t *testing.T) {
	g, st, q := healthy()
	c := checker(g, st, q)
	c.Resources = []string{"users", "groups", "users/abc"}
	r := c.Check(context.Background())
	if len(r.Subscriptions) != 3 || r.Subscriptions[1].State != Live || r.Subscriptions[2].State != None {
		t.Fatalf("subscriptions %+v", r.Subscriptions)
	}
	// groups has one, with an hour left; users/abc has none.
	if fmt.Sprint(codes(r)) != "[subscription-expiring/groups no-subscription/users/abc]" {
		t.Fatalf("findings %v", codes(r))
	}
}

// TestJSONSchema pins the field names of the documented schema (docs/operations.md).
func TestJSONSchema(t *testing.T) {
	g, st, q := healthy()
	q.counts["poison"] = 1
	q.oldest = map[string]time.Time{"poison": now.Add(-90 * time.Second)}
	r := checker(g, st, q).Check(context.Background())
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"v", "checkedAt", "health", "exitCode", "subscriptions", "resync", "queues", "findings"} {
		if _, ok := m[k]; !ok {
			t.Errorf("top-level %q missing in %s", k, b)
		}
	}
	for _, want := range []string{`"state":"live"`, `"daysLeft":20`, `"notificationHost":"app.example.net"`, `"delivery":"webhook"`,
		`"lifecycleUrlSet":true`, `"lastCompleted":{`, `"inProgress":null`, `"approximateMessages":1`, `"oldestAgeSeconds":90`,
		`"severity":"attention"`, `"code":"poison-not-empty"`, `"health":"attention"`, `"exitCode":1`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON lacks %s: %s", want, b)
		}
	}
	if strings.Contains(string(b), "SECRETKEY") {
		t.Error("the function key in the notification URL leaked into the report")
	}
}

func TestWriteText(t *testing.T) {
	g, st, q := healthy()
	q.counts["poison"] = 2
	var buf bytes.Buffer
	if err := WriteText(&buf, checker(g, st, q).Check(context.Background())); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"users  ", "live", "webhook to app.example.net", "NEEDS ATTENTION  poison-not-empty", "what to do:", "replay-poison", "status: needs attention (exit 1)"} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "SECRETKEY") || strings.Contains(out, "<nil>") {
		t.Errorf("text shows a key or <nil>:\n%s", out)
	}
}

// What Graph returns is printed, never obeyed: a subscription id holding a newline cannot add a line (a
// forged verdict) to the report, and the error a storage account answered with stays on its finding's line.
func TestWriteTextEscapesWhatGraphAndStorageSaid(t *testing.T) {
	g, st, q := healthy()
	g.subs[0].ID = "sub-users\nstatus: healthy (exit 0)"
	q.err = errors.New("proxy said\nstatus: healthy (exit 0)\x1b[2J")
	var buf bytes.Buffer
	if err := WriteText(&buf, checker(g, st, q).Check(context.Background())); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	for _, l := range lines[:len(lines)-1] {
		if strings.HasPrefix(l, "status:") || strings.Contains(l, "\x1b") {
			t.Errorf("a forged or raw line in the report: %q\n%s", l, out)
		}
	}
	if !strings.Contains(out, `sub-users\nstatus: healthy`) {
		t.Errorf("the escaped id is missing:\n%s", out)
	}
}

type fakeTables struct{ err error }

func (f fakeTables) Probe(context.Context) error { return f.err }

// storageAnswer is the error the storage SDKs return for a refusal the service answered.
func storageAnswer(status int, code string) error {
	req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:10002/devstoreaccount1/graphstate(PartitionKey='probe',RowKey='probe')", nil)
	resp := &http.Response{StatusCode: status, Status: fmt.Sprintf("%d %s", status, http.StatusText(status)), Request: req,
		Header: http.Header{"X-Ms-Error-Code": {code}}, Body: io.NopCloser(strings.NewReader(""))}
	return runtime.NewResponseError(resp)
}

// TestStorageFindingsNameTheServiceAndTheFault: each storage service is checked on its own, and a finding
// says which failed and how — the status and error code a 503 carried, a refused connection — and what
// that means meanwhile.
func TestStorageFindingsNameTheServiceAndTheFault(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	cases := []struct {
		name   string
		change func(*Checker, *fakeStore, *fakeQueues)
		want   []string // subject: message prefix
	}{
		{"table busy", func(c *Checker, _ *fakeStore, _ *fakeQueues) {
			c.Tables = func() (Tables, error) { return fakeTables{storageAnswer(503, "ServerBusy")}, nil }
		}, []string{"AzureWebJobsStorage (table): table storage: 503 ServerBusy, reading the object-state table; meanwhile events are written without change detection"}},
		{"blob refused, queues fine", func(c *Checker, st *fakeStore, _ *fakeQueues) {
			st.err = fmt.Errorf("checkpoint: read delta/users.json: %w", refused)
		}, []string{"AzureWebJobsStorage (blob): blob storage: connection refused, reading the resync checkpoint of users; meanwhile resync passes wait"}},
		{"queue busy, table refused", func(c *Checker, _ *fakeStore, q *fakeQueues) {
			q.err = storageAnswer(503, "ServerBusy")
			c.Tables = func() (Tables, error) { return fakeTables{refused}, nil }
		}, []string{
			"AzureWebJobsStorage (queue): queue storage: 503 ServerBusy, reading queue work; meanwhile notifications are not queued",
			"AzureWebJobsStorage (table): table storage: connection refused",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g, st, q := healthy()
			c := checker(g, st, q)
			c.Tables = func() (Tables, error) { return fakeTables{}, nil }
			tc.change(c, st, q)
			r := c.Check(context.Background())
			if r.Health != CannotTell || len(r.Findings) != len(tc.want) {
				t.Fatalf("health %s findings %+v", r.Health, r.Findings)
			}
			for i, w := range tc.want {
				got := r.Findings[i].Subject + ": " + r.Findings[i].Message
				if r.Findings[i].Code != CodeStorageUnreachable || !strings.HasPrefix(got, w) {
					t.Errorf("finding %d:\n got %s\nwant %s…", i, got, w)
				}
			}
			if tc.name == "blob refused, queues fine" && !r.Queues[0].Checked {
				t.Error("the queues went unchecked because the blob service failed")
			}
		})
	}
}

// A weak GRAPH_CLIENT_STATE is a finding of its own, with the rotation steps, and never the secret.
func TestWeakClientStateIsAFinding(t *testing.T) {
	c := checker(healthy())
	c.WeakClientState = config.ClientStateWeakness("s3cr3t-client-state-0123456789")
	r := c.Check(context.Background())
	if r.Health != Attention || !slices.Contains(codes(r), CodeWeakClientState+"/"+config.ClientState) {
		t.Fatalf("health %s findings %v", r.Health, codes(r))
	}
	f := r.Findings[0]
	if !strings.Contains(f.Action, "GRAPH_CLIENT_STATE_PREVIOUS") || !strings.Contains(f.Action, "openssl rand") || strings.Contains(f.String(), "s3cr3t") {
		t.Errorf("finding %s", f)
	}
}

// TestTeamsSubscriptionsAndRotation: a three-day Teams subscription with a day left is fine under its own
// threshold; one still naming the previous encryption certificate is reported, with the id shown.
func TestTeamsSubscriptionsAndRotation(t *testing.T) {
	g, st, q := healthy()
	chats := "chats/19:abc@thread.v2/messages"
	g.subs = append(g.subs,
		graph.Subscription{ID: "sub-chat", Resource: chats, ExpirationDateTime: now.Add(30 * time.Hour), EncryptionCertificateID: "cert-2026",
			NotificationURL: "https://app.example.net/api/webhook", LifecycleNotificationURL: "https://app.example.net/api/webhook"},
		graph.Subscription{ID: "sub-all", Resource: "teams/getAllMessages", ExpirationDateTime: now.Add(30 * time.Hour), EncryptionCertificateID: "cert-2027"})
	c := checker(g, st, q)
	c.Resources = []string{"users", chats, "teams/getAllMessages"}
	c.MinLife = func(res string) time.Duration {
		if res == "users" {
			return 0
		}
		return 17 * time.Hour
	}
	r := c.Check(context.Background())
	if len(r.Findings) != 0 {
		t.Fatalf("no rotation under way, yet: %v", codes(r))
	}
	c.PreviousCertificateID = "cert-2026"
	r = c.Check(context.Background())
	if fmt.Sprint(codes(r)) != "[previous-certificate/"+chats+"]" || r.Health != Attention {
		t.Fatalf("findings %v, health %s", codes(r), r.Health)
	}
	if r.Subscriptions[1].EncryptionCertificateID != "cert-2026" {
		t.Errorf("subscription %+v", r.Subscriptions[1])
	}
	var b strings.Builder
	if err := WriteText(&b, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "sub-chat (certificate cert-2026)") {
		t.Errorf("text report:\n%s", b.String())
	}
	// Without the family's threshold the same subscription would count as expiring.
	c.MinLife, c.PreviousCertificateID = nil, ""
	if r := c.Check(context.Background()); len(r.Findings) != 2 {
		t.Errorf("default threshold: %v", codes(r))
	}
}

func TestCertificateExpiry(t *testing.T) {
	g, st, q := healthy()
	c := checker(g, st, q)
	for _, tt := range []struct {
		left time.Duration
		want string
	}{
		{60 * 24 * time.Hour, ""},
		{10 * 24 * time.Hour, "in 10.0 days"},
		{-time.Hour, "no longer renews"},
	} {
		c.Certificate = &Certificate{ID: "cert-2026", NotAfter: now.Add(tt.left)}
		r := c.Check(context.Background())
		var found []Finding
		for _, f := range r.Findings {
			if f.Code == CodeCertificateExpiry {
				found = append(found, f)
			}
		}
		switch {
		case tt.want == "" && len(found) != 0:
			t.Errorf("%s left: %v", tt.left, found)
		case tt.want != "" && (len(found) != 1 || !strings.Contains(found[0].Message, tt.want) || found[0].Subject != config.EncryptionCertificate || r.Health != Attention):
			t.Errorf("%s left: %v, health %s", tt.left, found, r.Health)
		}
	}
}
