package queueworker

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

const (
	figureUsers   = 500
	figureRepeats = 2   // each user changes twice
	figurePOST    = 100 // notifications per POST from Graph
	figureWorkers = 8   // concurrent invocations, as the host runs a queue function
)

// figureMessages builds 1,000 notifications for 500 users, each twice in a shuffled order, and splits them
// the way the webhook does: POSTs of up to 100, each message.Split as the webhook splits it.
func figureMessages(t testing.TB, ids []string) (msgs []message.Message, notifications int) {
	var ns []graph.ChangeNotification
	for range figureRepeats {
		for _, id := range ids {
			ns = append(ns, note(id, "updated"))
		}
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(ns), func(i, j int) { ns[i], ns[j] = ns[j], ns[i] })
	for start := 0; start < len(ns); start += figurePOST {
		post := ns[start:min(start+figurePOST, len(ns))]
		ms, tooBig, err := message.Split(message.Message{V: message.Version, Kind: message.KindNotifications, FirstSeen: firstSeen}, post)
		if err != nil || len(tooBig) > 0 {
			t.Fatalf("split: %v (%d too big)", err, len(tooBig))
		}
		msgs = append(msgs, ms...)
	}
	return msgs, len(ns)
}

// runFigure delivers every message to the worker, figureWorkers at a time, and returns the users that got an
// event.
func runFigure(t testing.TB, e *env, msgs []message.Message) map[string]int {
	var (
		mu   sync.Mutex
		seen = map[string]int{}
		wg   sync.WaitGroup
		sem  = make(chan struct{}, figureWorkers)
	)
	for i := range msgs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			r, err := e.invoke(hostRequest(t, hostText(t, &msgs[i]), 1))
			if err != nil {
				t.Errorf("invoke: %v", err)
				return
			}
			mu.Lock()
			for _, ev := range r.events {
				seen[ev.ResourceID]++
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	return seen
}

// TestGraphRequestsPerNotification is the figure: Graph HTTP requests per notification for 1,000
// notifications (500 users, each twice). Target: at most 0.05.
//
//	go test -race -run TestGraphRequestsPerNotification -v ./queueworker/
func TestGraphRequestsPerNotification(t *testing.T) {
	e := newEnv(t)
	ids := e.addUsers("f1000000", figureUsers)
	msgs, total := figureMessages(t, ids)
	e.fg.ResetRequests()
	start := time.Now()
	seen := runFigure(t, e, msgs)
	elapsed := time.Since(start)

	if len(seen) != figureUsers {
		t.Errorf("events for %d users, want %d", len(seen), figureUsers)
	}
	events := 0
	for _, n := range seen {
		events += n
	}
	graphCalls := e.fg.Count("", "/v1.0/")
	wire := e.fg.Count("", "/") // Graph plus the token endpoint and OpenID metadata
	perNotification := float64(graphCalls) / float64(total)
	t.Logf("%d notifications for %d users in %d messages → %d events; %d Graph HTTP requests (%d $batch, %d users read) = %.3f per notification; %d with Entra ID = %.3f; %s",
		total, figureUsers, len(msgs), events, graphCalls, e.fg.Count("POST", "/v1.0/$batch"), e.fg.CountBatchItems("GET", "/v1.0/users/"),
		perNotification, wire, float64(wire)/float64(total), elapsed.Round(time.Millisecond))
	if perNotification > 0.05 {
		t.Errorf("%.3f Graph requests per notification, target ≤ 0.05", perNotification)
	}
	if n := len(e.enqueuedTo(e.queue)); n != 0 {
		t.Errorf("%d re-enqueues without faults", n)
	}
}

// BenchmarkWorker reports the same figure per run of 1,000 notifications, and the time per notification.
//
//	go test -run '^$' -bench BenchmarkWorker -benchtime 5x ./queueworker/
func BenchmarkWorker(b *testing.B) {
	e := newEnv(b)
	ids := e.addUsers("f2000000", figureUsers)
	msgs, total := figureMessages(b, ids)
	e.fg.ResetRequests()
	runs := 0
	b.ReportAllocs()
	for b.Loop() {
		runFigure(b, e, msgs)
		runs++
	}
	b.ReportMetric(float64(e.fg.Count("", "/v1.0/"))/float64(total*runs), "graph-req/notification")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(total*runs), "ns/notification")
}
