package pipekit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/fakehost"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

// TableCounter is a reverse proxy on 127.0.0.1 in front of Azurite's table endpoint that records every
// request the handler makes to Table storage (the object state), so a run can say how many storage requests
// an event costs. Only the table endpoint goes through it: queues and blobs go to Azurite directly.
type TableCounter struct {
	ln  net.Listener
	srv *http.Server

	mu     sync.Mutex
	target *url.URL
	reqs   []TableRequest
}

// TableRequest is one request seen by the proxy.
type TableRequest struct {
	Time   time.Time
	Method string
	Kind   string // "point read", "query", "transaction", "create table", "entity write", "other"
	Status int
}

func newTableCounter() (*TableCounter, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("table proxy: %w", err)
	}
	t := &TableCounter{ln: ln}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			t.mu.Lock()
			target := t.target
			t.mu.Unlock()
			pr.SetURL(target)
			// SetURL joins the target's path with the request's; the request already carries the account
			// path, so keep it as it came.
			pr.Out.URL.Path, pr.Out.URL.RawPath = pr.In.URL.Path, pr.In.URL.RawPath
		},
		ModifyResponse: func(resp *http.Response) error {
			t.record(resp.Request, resp.StatusCode)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			t.record(r, http.StatusBadGateway)
			http.Error(w, "table proxy: "+err.Error(), http.StatusBadGateway)
		},
	}
	t.srv = &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = t.srv.Serve(ln) }()
	return t, nil
}

// route points the proxy at the TableEndpoint of conn and returns conn with its TableEndpoint replaced by
// the proxy's address (same account path).
func (t *TableCounter) route(conn string) (string, error) {
	parts := strings.Split(conn, ";")
	for i, p := range parts {
		k, v, ok := strings.Cut(p, "=")
		if !ok || !strings.EqualFold(k, "TableEndpoint") {
			continue
		}
		u, err := url.Parse(v)
		if err != nil || u.Host == "" {
			return "", errors.New("table proxy: the storage connection string's TableEndpoint is not a URL")
		}
		t.mu.Lock()
		t.target = &url.URL{Scheme: u.Scheme, Host: u.Host}
		t.mu.Unlock()
		parts[i] = k + "=http://" + t.ln.Addr().String() + u.Path
		return strings.Join(parts, ";"), nil
	}
	return "", errors.New("table proxy: the storage connection string has no TableEndpoint")
}

func (t *TableCounter) record(r *http.Request, status int) {
	t.mu.Lock()
	t.reqs = append(t.reqs, TableRequest{Time: time.Now(), Method: r.Method, Kind: tableKind(r.Method, r.URL.Path), Status: status})
	t.mu.Unlock()
}

// tableKind names what a Table storage REST request does, from its method and path
// (/account/Tables, /account/$batch, /account/table(PartitionKey='p',RowKey='r'), /account/table()).
func tableKind(method, path string) string {
	last := path[strings.LastIndex(path, "/")+1:]
	switch {
	case method == http.MethodPost && last == "$batch":
		return "transaction"
	case method == http.MethodPost && strings.EqualFold(last, "Tables"):
		return "create table"
	case method == http.MethodGet && strings.Contains(last, "RowKey="):
		return "point read"
	case method == http.MethodGet:
		return "query"
	case method == http.MethodPut || method == http.MethodPatch || method == "MERGE" || method == http.MethodDelete || method == http.MethodPost:
		return "entity write"
	}
	return "other"
}

// Close stops the proxy.
func (t *TableCounter) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return t.srv.Shutdown(ctx)
}

// TableTally counts table requests in a window.
type TableTally struct {
	Total    int
	ByMethod map[string]int
	ByKind   map[string]int
	Failed   int // answers 5xx or the proxy's 502
}

// Between tallies the requests answered in [from, to) (a zero to means no end).
func (t *TableCounter) Between(from, to time.Time) TableTally {
	tt := TableTally{ByMethod: map[string]int{}, ByKind: map[string]int{}}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range t.reqs {
		if r.Time.Before(from) || (!to.IsZero() && !r.Time.Before(to)) {
			continue
		}
		tt.Total++
		tt.ByMethod[r.Method]++
		tt.ByKind[r.Kind]++
		if r.Status >= 500 {
			tt.Failed++
		}
	}
	return tt
}

// Methods formats the per-method counts, most first: "GET 510, POST 27".
func (tt TableTally) Methods() string { return countList(tt.ByMethod) }

// Kinds formats the per-kind counts, most first.
func (tt TableTally) Kinds() string { return countList(tt.ByKind) }

func countList(m map[string]int) string {
	type kv struct {
		k string
		v int
	}
	var l []kv
	for k, v := range m {
		l = append(l, kv{k, v})
	}
	if len(l) == 0 {
		return "none"
	}
	// Most first, then by name, so the text is stable.
	sort.Slice(l, func(i, j int) bool { return l[i].v > l[j].v || l[i].v == l[j].v && l[i].k < l[j].k })
	var out []string
	for _, x := range l {
		out = append(out, x.k+" "+strconv.Itoa(x.v))
	}
	return strings.Join(out, ", ")
}

// ---- what the worker and the resync said ----

var (
	// The host records the handler's summary behind its own prefix ("queueworker: message … (dequeue 1): "),
	// so these are not anchored.
	workerSummaryRE = regexp.MustCompile(`(\d+) events \(.*?(?:; (\d+) suppressed as carrying nothing new)?\) from (\d+) notifications`)
	resyncSummaryRE = regexp.MustCompile(`resync (?:\S+ )?pass \S+ (?:completed: page \d+,|page \d+:) (\d+) event\(s\)(?:, (\d+) suppressed as carrying nothing new)?`)
	resyncDoneRE    = regexp.MustCompile(`resync (?:(\S+) )?pass \S+ completed`)
)

// WorkerTally sums the queue worker's invocations that started in a window.
type WorkerTally struct {
	Invocations, Failed int
	Durations           []time.Duration // succeeded queue-triggered invocations, sorted
	Events              int             // events written, per the summaries (notifications and resync pages)
	Suppressed          int             // events suppressed as carrying nothing new, per the summaries
	ResyncEvents        int             // … of Events, by resync pages
	ResyncSuppressed    int
	PassesDone          map[string]int // resync passes completed, per collection ("" when the line names none)
}

// Worker tallies the queueworker invocations that started in [from, to) (a zero to means no end).
func (s *Stack) Worker(from, to time.Time) WorkerTally {
	w := WorkerTally{PassesDone: map[string]int{}}
	for _, inv := range s.Host.Invocations() {
		if inv.Function != "queueworker" || inv.Start.Before(from) || (!to.IsZero() && !inv.Start.Before(to)) {
			continue
		}
		w.Invocations++
		if inv.Status != fakehost.Succeeded {
			w.Failed++
		} else if inv.Trigger == "queue" {
			w.Durations = append(w.Durations, inv.Duration)
		}
		for _, l := range inv.Logs {
			if m := workerSummaryRE.FindStringSubmatch(l); m != nil {
				w.Events += atoi(m[1])
				w.Suppressed += atoi(m[2])
			}
			if m := resyncSummaryRE.FindStringSubmatch(l); m != nil {
				w.Events += atoi(m[1])
				w.Suppressed += atoi(m[2])
				w.ResyncEvents += atoi(m[1])
				w.ResyncSuppressed += atoi(m[2])
			}
			if m := resyncDoneRE.FindStringSubmatch(l); m != nil {
				w.PassesDone[m[1]]++
			}
		}
	}
	w.Durations = Sorted(w.Durations)
	return w
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// ---- redundancy of the events ----

// Redundancy counts the events read at or after since, and how many of them are genuine: the first event
// of an object, or one whose state (change type, soft-delete mark, selected properties) differs from the
// previous event read for the same object, or one carrying a membership change. Events read before since
// only set the previous state. Events per genuine change is events / genuine: 1.0 when no event repeats
// a state a consumer already has.
func Redundancy(reads []Read, since time.Time) (events, genuine int) {
	last := map[string]string{}
	for _, r := range reads {
		e := r.Event
		key := e.Resource + "/" + strings.ToLower(e.ResourceID)
		st := stateOf(e)
		prev, seen := last[key]
		last[key] = st
		if r.ReadAt.Before(since) {
			continue
		}
		events++
		if !seen || prev != st || (e.Members != nil && len(e.Members.Added)+len(e.Members.Removed) > 0) {
			genuine++
		}
	}
	return events, genuine
}

func stateOf(e message.Event) string {
	// encoding/json writes map keys sorted, so equal states give equal text.
	b, _ := json.Marshal(e.Object)
	return fmt.Sprintf("%s|%v|%s", e.ChangeType, e.SoftDeleted, b)
}

// ---- a handler built at another revision ----

// Build is a handler and the app root it runs with (host.json, function.json files, node_modules): the
// working tree's when zero.
type Build struct {
	Handler, Root string
	Label         string // the abbreviated revision
}

// BuildAt builds the handler as it was at git revision rev of the module (for a before/after comparison):
// the source is exported with git archive into the Env's temporary directory, and that tree is the
// stack's app root, since function.json bindings change with the handler (a worker that returned its
// events through an output binding needs that binding). node_modules (Azurite) is linked from the Env's root.
func (e *Env) BuildAt(ctx context.Context, rev string) (Build, error) {
	dir := filepath.Join(e.tmp, "src-"+strings.NewReplacer("/", "_", ".", "_").Replace(rev))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Build{}, err
	}
	archive := exec.CommandContext(ctx, "sh", "-c", `git archive --format=tar "$1" | tar -x -C "$2"`, "sh", rev, dir)
	archive.Dir = e.Root
	if out, err := archive.CombinedOutput(); err != nil {
		return Build{}, fmt.Errorf("git archive %s: %v\n%s", rev, err, out)
	}
	if err := os.Symlink(filepath.Join(e.Root, "node_modules"), filepath.Join(dir, "node_modules")); err != nil {
		return Build{}, err
	}
	bin := filepath.Join(e.tmp, "handler-"+filepath.Base(dir))
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		return Build{}, fmt.Errorf("go build the handler at %s: %v\n%s", rev, err, out)
	}
	return Build{Handler: bin, Root: dir, Label: e.ShortRev(rev)}, nil
}

// ShortRev resolves rev to its abbreviated commit hash (rev itself when git cannot).
func (e *Env) ShortRev(rev string) string {
	cmd := exec.Command("git", "rev-parse", "--short", rev)
	cmd.Dir = e.Root
	out, err := cmd.Output()
	if err != nil {
		return rev
	}
	return strings.TrimSpace(string(out))
}
