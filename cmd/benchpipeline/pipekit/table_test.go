package pipekit

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

func TestTableCounterProxiesAndCounts(t *testing.T) {
	var paths []string
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.URL.Path)
		io.WriteString(w, "ok")
	}))
	defer backend.Close()
	tc, err := newTableCounter()
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	conn := "DefaultEndpointsProtocol=http;AccountName=a;AccountKey=k;QueueEndpoint=http://q/a;TableEndpoint=" + backend.URL + "/devstoreaccount1;"
	routed, err := tc.route(conn)
	if err != nil {
		t.Fatal(err)
	}
	want := "TableEndpoint=http://" + tc.ln.Addr().String() + "/devstoreaccount1;"
	if !strings.Contains(routed, want) || !strings.Contains(routed, "QueueEndpoint=http://q/a;") {
		t.Fatalf("routed %q, want it to contain %q and keep the queue endpoint", routed, want)
	}
	t0 := time.Now()
	base := "http://" + tc.ln.Addr().String() + "/devstoreaccount1"
	for _, req := range []struct{ method, path string }{
		{"GET", "/graphstate(PartitionKey='users',RowKey='x')"},
		{"POST", "/$batch"},
		{"POST", "/Tables"},
		{"GET", "/graphstate()"},
	} {
		r, _ := http.NewRequest(req.method, base+req.path, nil)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if len(paths) != 4 || paths[1] != "/devstoreaccount1/$batch" {
		t.Errorf("backend saw %q", paths)
	}
	got := tc.Between(t0, time.Time{})
	if got.Total != 4 || got.ByMethod["GET"] != 2 || got.ByMethod["POST"] != 2 {
		t.Errorf("tally %+v", got)
	}
	if got.Kinds() != "create table 1, point read 1, query 1, transaction 1" {
		t.Errorf("kinds %q", got.Kinds())
	}
	if n := tc.Between(time.Now().Add(time.Hour), time.Time{}).Total; n != 0 {
		t.Errorf("a window after the requests counts %d", n)
	}
}

func TestRouteWithoutTableEndpoint(t *testing.T) {
	tc, err := newTableCounter()
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if _, err := tc.route("UseDevelopmentStorage=true"); err == nil {
		t.Error("no error for a connection string without TableEndpoint")
	}
}

func TestSummaryExpressions(t *testing.T) {
	cases := []struct {
		line               string
		events, suppressed int
		resync, done       bool
	}{
		{"queueworker: message m (dequeue 1): 3 events (3 updated, 0 soft-deleted, 0 deleted, 0 not found, 0 reported deleted but live; 17 suppressed as carrying nothing new) from 20 notifications, attempt 0", 3, 17, false, false},
		{"queueworker: message m (dequeue 1): 20 events (20 updated, 0 soft-deleted, 0 deleted, 0 not found) from 20 notifications, attempt 0", 20, 0, false, false},
		{"queueworker: message m (dequeue 1): resync users pass P page 2: 1 event(s), 4 suppressed as carrying nothing new, continuing", 1, 4, true, false},
		{"queueworker: message m (dequeue 1): resync users pass P completed: page 4, 0 event(s), 5 suppressed as carrying nothing new", 0, 5, true, true},
		{"resync pass P completed: page 4, 5 event(s)", 5, 0, true, true},
		{"queueworker: message m (dequeue 1): resync drives/b!x-Y_1 pass P completed: page 1, 1 event(s), 21 suppressed as carrying nothing new", 1, 21, true, true},
	}
	for _, c := range cases {
		var ev, sup int
		var resync bool
		if m := workerSummaryRE.FindStringSubmatch(c.line); m != nil {
			ev, sup = atoi(m[1]), atoi(m[2])
		}
		if m := resyncSummaryRE.FindStringSubmatch(c.line); m != nil {
			ev, sup, resync = atoi(m[1]), atoi(m[2]), true
		}
		if ev != c.events || sup != c.suppressed || resync != c.resync || resyncDoneRE.MatchString(c.line) != c.done {
			t.Errorf("%q: events %d suppressed %d resync %v", c.line, ev, sup, resync)
		}
	}
}

func TestRedundancy(t *testing.T) {
	t0 := time.Now()
	ev := func(id, dept string, at time.Duration, members *message.Members) Read {
		return Read{ReadAt: t0.Add(at), Event: message.Event{Resource: "users", ResourceID: id, ChangeType: graph.Updated,
			Object: map[string]any{"department": dept}, Members: members}}
	}
	reads := []Read{
		ev("a", "x", -time.Second, nil), // before the window: sets a's state only
		ev("a", "x", 0, nil),            // repeats it
		ev("a", "y", 1, nil),            // new
		ev("A", "y", 2, nil),            // same object, same state
		ev("b", "x", 3, nil),            // first for b
		ev("b", "x", 4, &message.Members{Added: []string{"m"}}),
	}
	events, genuine := Redundancy(reads, t0)
	if events != 5 || genuine != 3 {
		t.Errorf("events %d genuine %d, want 5 and 3", events, genuine)
	}
}
