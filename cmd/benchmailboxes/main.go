// Command benchmailboxes measures the mailbox subscriptions at scale against the Graph double: a tenant of
// -n mailboxes (one group's members, GRAPH_MAILBOXES=group:{id}) converged from nothing by the renew timer's
// mailbox keeper, then kept for -days of hourly runs on the double's clock; and the enrichment's Graph
// requests per notification when Outlook sends duplicates. It prints a Markdown section (or writes it
// between the bench-mailboxes markers of -out). `make bench-mailboxes` runs it; it is not part of `make test`.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/directory"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/family"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/mailbox"
	"github.com/graphwebhooks/graph-webhooks-go/internal/subscription"
)

const (
	tenant = "8c1f4b2e-0d6a-4f57-9a3e-2b9d7c6e5f41"
	client = "3f1b1c3e-0000-4000-8000-000000000001"
	secret = "bench~mailboxes~secret~value"
	group  = "0b6fa6b9-0c0a-4f47-9a43-2d1b1e4c5f60"
	state  = "bench-client-state-0123456789abcdef"
)

// offsetClock is real time moved forward by whole hours between runs: the double's expiries and the
// keeper's plan follow it, while a run's own bound (its run time) is still measured in real seconds.
type offsetClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *offsetClock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return time.Now().Add(c.off) }
func (c *offsetClock) Advance(d time.Duration) { c.mu.Lock(); c.off += d; c.mu.Unlock() }

func main() {
	n := flag.Int("n", 10000, "mailboxes")
	days := flag.Int("days", 3, "days of hourly runs after convergence")
	out := flag.String("out", "", "write the section between the bench-mailboxes markers of this file (default: print)")
	flag.Parse()
	if err := run(*n, *days, *out); err != nil {
		fmt.Fprintln(os.Stderr, "benchmailboxes:", err)
		os.Exit(1)
	}
}

func run(n, days int, outPath string) error {
	clock := &offsetClock{}
	o := fakegraph.NewOptions(tenant, client, secret)
	o.Clock = clock.Now
	o.AppRoles = []string{"Mail.Read", "GroupMember.Read.All"}
	o.SubscriptionPageSize = 100 // choice: Graph's page size for subscriptions is unpublished
	o.CoalesceWindow = -1
	o.MaxSubscriptions = -1
	fg := fakegraph.New(o)
	defer fg.Close()
	rx := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tok := r.URL.Query().Get("validationToken"); tok != "" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			io.WriteString(w, tok)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer rx.Close()

	members := make([]string, n)
	for i := range members {
		members[i] = fmt.Sprintf("%08x-0000-4000-8000-%012d", i, i)
	}
	fg.AddGroup(fakegraph.Group{ID: group, Members: members})

	cred, err := azidentity.NewClientSecretCredential(tenant, client, secret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions:            azcore.ClientOptions{Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: fg.AuthorityHost()}, Transport: fg.Client()},
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		return err
	}
	gc, err := graph.NewClient(cred, graph.ClientOptions{BaseURL: fg.GraphBaseURL(), Transport: fg.Client(), Now: clock.Now})
	if err != nil {
		return err
	}
	settings := map[string]string{
		config.TenantID: tenant, config.ClientID: client, config.ClientState: state,
		config.NotificationURL: rx.URL + "/api/webhook?code=bench", config.Mailboxes: "group:" + group,
	}
	cfg := config.Load(func(k string) string { return settings[k] })
	k := subscription.NewMailboxKeeper(cfg, func() (subscription.MailboxGraph, error) { return gc, nil },
		&subscription.MemoryRefusals{}, clock.Now, subscription.MailboxOptions{RunTime: 3 * time.Minute, Gate: &directory.Gate{}})
	ctx := context.Background()
	slog.SetDefault(slog.New(slog.DiscardHandler))

	var b strings.Builder
	fmt.Fprintf(&b, "Measured with `make bench-mailboxes` (`go run ./cmd/benchmailboxes -n %d -days %d`) on this machine (%d cores, shared), against the Graph double: "+
		"%d mailboxes as the members of one group (GRAPH_MAILBOXES=group:{id}, members read 100 per page), messages only, subscriptions listed 100 per page, "+
		"the keeper's defaults (8 requests in flight, 4,000 subscription requests and 3 minutes per run). Every create includes the validation handshake "+
		"with a local receiver. Wall times are of the double on loopback: Graph's own latency (often 0.3–1 s per create) stretches them.\n\n",
		n, days, runtime.NumCPU(), n)

	// Converge from nothing: hourly runs until one plans nothing.
	fmt.Fprintf(&b, "| run | created | renewed | deferred | subscription requests | all Graph requests | wall time |\n|---|---|---|---|---|---|---|\n")
	var convergeRuns int
	var convergeWall time.Duration
	for run := 1; run <= 20; run++ {
		fg.ResetRequests()
		start := time.Now()
		mo, err := k.Run(ctx)
		if err != nil {
			return err
		}
		wall := time.Since(start)
		convergeWall += wall
		fmt.Fprintf(&b, "| %d | %d | %d | %d | %d | %d | %.1f s |\n", run, mo.Created, mo.Renewed, mo.Deferred, writes(fg), fg.Count("", "/v1.0/"), wall.Seconds())
		if mo.Created == 0 && mo.Deferred == 0 && mo.Renewed == 0 {
			break
		}
		convergeRuns = run
		clock.Advance(time.Hour)
	}
	fmt.Fprintf(&b, "\nConverged: %d subscriptions after %d run(s) (%.1f s of run time in all).\n\n", len(fg.Subscriptions()), convergeRuns, convergeWall.Seconds())

	// Keep them: hourly runs for days on the double's clock.
	var total, most, mostAll int
	var slowest time.Duration
	var peakHeap uint64
	for h := 0; h < days*24; h++ {
		clock.Advance(time.Hour)
		fg.ResetRequests()
		start := time.Now()
		if _, err := k.Run(ctx); err != nil {
			return err
		}
		slowest = max(slowest, time.Since(start))
		w := writes(fg)
		total += w
		most = max(most, w)
		mostAll = max(mostAll, fg.Count("", "/v1.0/"))
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		peakHeap = max(peakHeap, ms.HeapInuse)
	}
	live := len(fg.Subscriptions())
	fmt.Fprintf(&b, "Then %d hourly runs (%d days): %d subscription requests, **%.2f per mailbox per day**; at most %d subscription requests "+
		"and %d Graph requests in one run (the list and the group's member pages included); the slowest run %.1f s; "+
		"%d subscriptions live at the end. Peak Go heap in use of the bench process (the keeper and the double holding %d subscriptions together): %.0f MiB; "+
		"process peak RSS (VmHWM, both together): %s.\n\n",
		days*24, days, total, float64(total)/float64(n)/float64(days), most, mostAll, slowest.Seconds(), live, live, float64(peakHeap)/(1<<20), vmHWM())

	// Enrichment: Outlook's duplicates, coalesced and read in shared $batches.
	edits := 100
	if err := enrichment(&b, fg, gc, clock, members[:min(edits, n)]); err != nil {
		return err
	}
	text := b.String()
	if outPath == "" {
		fmt.Print(text)
		return nil
	}
	return writeSection(outPath, text)
}

func writes(fg *fakegraph.Server) int {
	return fg.Count("POST", "/v1.0/subscriptions") + fg.Count("PATCH", "/v1.0/subscriptions") + fg.Count("DELETE", "/v1.0/subscriptions")
}

// enrichment edits one message in each of len(users) mailboxes with Outlook's duplicates switched on (two
// extra notifications per edit), collects what the double delivers, and reads it the way the worker does:
// notifications coalesced by item (family.Route's key), items read through mailbox.Reader.
func enrichment(b *strings.Builder, fg *fakegraph.Server, gc *graph.Client, clock *offsetClock, users []string) error {
	var mu sync.Mutex
	var got []graph.ChangeNotification
	rx := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tok := r.URL.Query().Get("validationToken"); tok != "" {
			io.WriteString(w, tok)
			return
		}
		var env struct{ Value []graph.ChangeNotification }
		if err := jsonDecode(r.Body, &env); err == nil {
			mu.Lock()
			got = append(got, env.Value...)
			mu.Unlock()
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer rx.Close()
	ids := make([]string, len(users))
	for i, u := range users {
		ids[i] = fg.AddMessage(u, fakegraph.MailItem{Props: map[string]any{"subject": "before"}})
		fg.SeedSubscription(fakegraph.Subscription{Resource: "users/" + u + "/messages", ChangeType: "created,updated,deleted",
			NotificationURL: rx.URL, ExpirationDateTime: clock.Now().Add(48 * time.Hour), ApplicationID: "00000000-0000-4000-8000-00000000beef"})
	}
	fg.SetMailDuplicates(2)
	for i, u := range users {
		fg.UpdateMessage(u, ids[i], map[string]any{"isRead": true})
	}
	fg.Flush()
	wctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := fg.WaitDelivered(wctx); err != nil {
		return err
	}
	keys := map[string]mailbox.Item{}
	for _, n := range got {
		t, ok, err := family.Route(&n)
		if !ok || err != nil {
			return fmt.Errorf("a delivered notification did not route: %v", err)
		}
		user, kind, _ := family.MailboxOf(t.Scope)
		keys[t.Key] = mailbox.Item{User: user, Kind: kind, ID: t.ID}
	}
	items := make([]mailbox.Item, 0, len(keys))
	for _, it := range keys {
		items = append(items, it)
	}
	fg.ResetRequests()
	r := &mailbox.Reader{Graph: gc, Now: clock.Now}
	reads, err := r.Read(context.Background(), items, func(family.Kind) []string { return []string{"id", "isRead", "subject"} })
	if err != nil {
		return err
	}
	found := 0
	for _, rd := range reads {
		if rd.Outcome == directory.Found {
			found++
		}
	}
	batches := fg.Count("POST", "/v1.0/$batch")
	fmt.Fprintf(b, "Enrichment: %d edits in %d mailboxes, each delivered 3 times (Outlook's duplicates): %d notifications, coalesced to %d items "+
		"(%.2f events per genuine change), read in %d $batch requests: **%.3f Graph requests per notification**, %.2f per change; %d of %d items found. "+
		"Within one queue message duplicates coalesce; duplicates split across messages are read again and their event is suppressed by the object state "+
		"(EVENTS_UNCHANGED=suppress), not measured here.\n",
		len(users), len(users), len(got), len(items), float64(len(items))/float64(len(users)), batches, float64(batches)/float64(len(got)),
		float64(batches)/float64(len(users)), found, len(items))
	return nil
}
