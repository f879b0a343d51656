package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/cmd/benchpipeline/pipekit"
	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/devstack"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakehost"
	"github.com/graphwebhooks/graph-webhooks-go/internal/status"
)

// ---- storage faults (group storage) ----
//
// Each storage service of AzureWebJobsStorage — queue, table, blob — answers 503 ServerBusy for a stretch
// while changes arrive, then refuses connections for another. A fault proxy per service stands between
// Azurite and everything that uses the account: the handler and the host double alike, since in Azure the
// host's queue listener and output bindings share the account with the functions and see the same outage.
// Only the tool's own reader of graphchanges goes to Azurite directly, so that counting is not the fault.
// During each stretch `handler status -json` runs with the stack's settings and must name the failing
// service and how it fails. Graph's delivery retries last its real 4 hours (the double's default is
// compressed), as a queue outage of minutes is within what Graph rides out.

type faultMode int

const (
	passThrough faultMode = iota
	serverBusy            // every request answered 503 with the service's ServerBusy error
	refused               // nothing listens: every connection is refused, open ones are closed
)

func (m faultMode) String() string {
	return [...]string{"passing through", "503 ServerBusy", "connection refused"}[m]
}

// faultProxy is a reverse proxy on a fixed 127.0.0.1 port in front of one storage service of Azurite.
type faultProxy struct {
	service string
	addr    string
	rp      *httputil.ReverseProxy

	mu     sync.Mutex
	mode   faultMode
	target *url.URL
	srv    *http.Server
	busy   int // requests answered 503
}

func newFaultProxy(service string) (*faultProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("%s fault proxy: %w", service, err)
	}
	p := &faultProxy{service: service, addr: ln.Addr().String()}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			p.mu.Lock()
			t := p.target
			p.mu.Unlock()
			pr.SetURL(t)
			// The request already carries the account path: keep it as it came.
			pr.Out.URL.Path, pr.Out.URL.RawPath = pr.In.URL.Path, pr.In.URL.RawPath
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			http.Error(w, p.service+" fault proxy: "+err.Error(), http.StatusBadGateway)
		},
	}
	p.serve(ln)
	return p, nil
}

func (p *faultProxy) serve(ln net.Listener) {
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func(s *http.Server) { _ = s.Serve(ln) }(p.srv)
}

// ServeHTTP answers as the mode says: through to Azurite, or 503 ServerBusy in the service's own error
// format (XML for blobs and queues, JSON for tables), with the x-ms-error-code header the SDKs read.
func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	mode := p.mode
	if mode == serverBusy {
		p.busy++
	}
	p.mu.Unlock()
	if mode != serverBusy {
		p.rp.ServeHTTP(w, r)
		return
	}
	io.Copy(io.Discard, r.Body)
	w.Header().Set("x-ms-error-code", "ServerBusy")
	if p.service == status.TableStorage {
		w.Header().Set("Content-Type", "application/json;odata=minimalmetadata;streaming=true;charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"odata.error":{"code":"ServerBusy","message":{"lang":"en-US","value":"The server is busy."}}}`)
		return
	}
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(http.StatusServiceUnavailable)
	io.WriteString(w, `<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code><Message>The server is busy.</Message></Error>`)
}

// set switches the mode. Refusing closes the listener and every open connection; passing through again
// listens on the same address.
func (p *faultProxy) set(ctx context.Context, m faultMode) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m == p.mode {
		return nil
	}
	if p.mode == refused {
		var ln net.Listener
		err := devstack.Eventually(ctx, func() bool {
			var lerr error
			ln, lerr = net.Listen("tcp", p.addr)
			return lerr == nil
		})
		if err != nil {
			return fmt.Errorf("%s fault proxy: listen again on %s: %w", p.service, p.addr, err)
		}
		p.serve(ln)
	}
	if m == refused {
		p.srv.Close()
	}
	p.mode = m
	return nil
}

func (p *faultProxy) busyCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.busy
}

func (p *faultProxy) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mode != refused {
		p.srv.Close()
	}
}

// routeStorage points each service endpoint of the connection string at its fault proxy, which forwards to
// where the endpoint pointed.
func routeStorage(conn string, proxies map[string]*faultProxy) (string, error) {
	parts := strings.Split(conn, ";")
	routed := 0
	for i, part := range parts {
		k, v, ok := strings.Cut(part, "=")
		if !ok || !strings.HasSuffix(k, "Endpoint") {
			continue
		}
		p := proxies[strings.ToLower(strings.TrimSuffix(k, "Endpoint"))]
		if p == nil {
			continue
		}
		u, err := url.Parse(v)
		if err != nil || u.Host == "" {
			return "", fmt.Errorf("the storage connection string's %s is not a URL", k)
		}
		p.mu.Lock()
		p.target = &url.URL{Scheme: u.Scheme, Host: u.Host}
		p.mu.Unlock()
		parts[i] = k + "=http://" + p.addr + u.Path
		routed++
	}
	if routed != len(proxies) {
		return "", fmt.Errorf("the storage connection string names %d of the %d service endpoints", routed, len(proxies))
	}
	return strings.Join(parts, ";"), nil
}

// storageChangesPerStretch is how many users change during each stretch, evenly spread; one group is
// renamed in its middle too.
const storageChangesPerStretch = 6

func storageFaults(ctx context.Context, env *pipekit.Env, o options, rep *report, say func(string, ...any)) {
	services := []string{status.QueueStorage, status.TableStorage, status.BlobStorage}
	modes := []faultMode{serverBusy, refused}
	proxies := map[string]*faultProxy{}
	for _, svc := range services {
		p, err := newFaultProxy(svc)
		if err != nil {
			failedStart(rep, "storage", "storage faults", err)
			return
		}
		defer p.close()
		proxies[svc] = p
	}
	const firstUser = 10 // users 1–3 are the seeded groups' members
	var routeErr error
	s, err := env.Start(ctx, devstack.Options{
		Users:    firstUser + len(services)*len(modes)*storageChangesPerStretch,
		Groups:   len(services) * len(modes),
		Settings: map[string]string{config.Resource: "users,groups"},
		Graph:    func(g *fakegraph.Options) { g.DeliveryRetryWindow = 4 * time.Hour },
		Host: func(h *fakehost.Options) {
			conn, err := routeStorage(h.Settings[config.Storage], proxies)
			if err != nil {
				routeErr = err
				return
			}
			h.Settings[config.Storage] = conn
		},
	}, o.poll)
	if err == nil && routeErr != nil {
		s.Close()
		err = routeErr
	}
	if err != nil {
		failedStart(rep, "storage", "storage faults", err)
		return
	}
	defer s.Close()

	user, group := firstUser, 1
	for _, svc := range services {
		for _, mode := range modes {
			r := &row{group: "storage", name: fmt.Sprintf("%s storage: %s for %s", svc, mode, o.storageStretch),
				fault: fmt.Sprintf("every %s request of the handler and the host %s while %d users change and a group is renamed",
					svc, map[faultMode]string{serverBusy: "answered 503 ServerBusy", refused: "refused (nothing listening)"}[mode], storageChangesPerStretch),
				command: "`handler status -json` during the stretch"}
			storageStretch(ctx, env, s, proxies[svc], mode, o.storageStretch, user, group, r)
			user += storageChangesPerStretch
			group++
			rep.add(r)
			say("  storage %s, %s: %d/%d got, %d lost, %d duplicated, %d poison, %s", svc, mode, r.o.Got, r.o.Changes, r.o.Lost, r.o.Duplicated, r.poison, pipekit.Secs(r.took))
		}
	}
}

// storageRecovery bounds the wait for a stretch's changes after the service is back: Graph's next retry
// of a delivery the outage refused (its backoff doubles, so up to about the stretch again), and the host's
// lease on a message whose failure it could not record (10 minutes), with a margin.
const storageRecovery = 12 * time.Minute

// storageStretch runs one stretch: the fault on, changes arriving and `handler status` run in its middle,
// the fault off, then the changes accounted for.
func storageStretch(ctx context.Context, env *pipekit.Env, s *pipekit.Stack, p *faultProxy, mode faultMode, stretch time.Duration,
	firstUser, group int, r *row) {
	t0 := time.Now()
	busy0 := p.busyCount()
	if err := p.set(ctx, mode); err != nil {
		r.problems = append(r.problems, err.Error())
		return
	}
	var ids []string
	gid := devstack.SeedGroup(group).ID
	statusDone := make(chan string, 1)
	step := stretch / storageChangesPerStretch
	for i := range storageChangesPerStretch {
		if i == storageChangesPerStretch/2 {
			s.Graph.UpdateGroup(gid, map[string]any{"displayName": fmt.Sprintf("Renamed during the %s stretch", p.service)})
			ids = append(ids, gid)
			go func() { statusDone <- statusDuring(ctx, env, s, p.service, mode, r) }()
		}
		id := devstack.UserID(firstUser + i)
		s.Graph.UpdateUser(id, map[string]any{"department": fmt.Sprintf("%s %s %d", p.service, mode, i)})
		ids = append(ids, id)
		select {
		case <-ctx.Done():
		case <-time.After(step):
		}
	}
	line := <-statusDone
	if err := p.set(ctx, passThrough); err != nil {
		r.problems = append(r.problems, err.Error())
		return
	}
	back := time.Now()
	finish(ctx, s, r, ids, t0, stretch+storageRecovery)
	failed := map[string]int{}
	for _, inv := range s.Host.Invocations() {
		if !inv.Start.Before(t0) && inv.Status != fakehost.Succeeded {
			failed[inv.Function]++
		}
	}
	deliveries := 0
	for _, d := range s.Graph.Deliveries() {
		if d.Kind == "notification" && d.Outcome == "failed" && !d.Time.Before(t0) {
			deliveries++
		}
	}
	what := fmt.Sprintf("503s answered %d", p.busyCount()-busy0)
	if mode == refused {
		what = "connections refused"
	}
	after := "every change's event was read before the service was back"
	if d := r.took - back.Sub(t0); d > 0 {
		after = "the last change's event was read " + pipekit.Secs(d) + " after the service was back"
	}
	r.extra = append(r.extra, fmt.Sprintf("%s storage %s for %s (%s); invocations failed since the stretch began: %d webhook, %d queueworker; Graph deliveries that failed (and were retried): %d; %s",
		p.service, mode, pipekit.Secs(back.Sub(t0)), what, failed["webhook"], failed["queueworker"], deliveries, after))
	r.extra = append(r.extra, line)
	r.notes = map[string]string{
		status.QueueStorage: "nothing can be queued: the webhook fails and Graph retries its POST; a worker invocation whose writes fail fails, and the host retries its message once the queue answers",
		status.TableStorage: "change detection steps aside: the events are written unchecked (no changed/previous, none suppressed), one warning per invocation; nothing fails",
		status.BlobStorage:  "the groups resync a group notification asks for cannot be requested (a warning) and a resync step whose checkpoint fails is re-enqueued: resyncs wait, notifications do not",
	}[p.service]
}

// statusDuring runs `handler status -json` with the stack's settings and checks that a finding names the
// failing service and how it fails.
func statusDuring(ctx context.Context, env *pipekit.Env, s *pipekit.Stack, service string, mode faultMode, r *row) string {
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, env.Handler, "status", "-json")
	cmd.Env = s.EnvList()
	cmd.Dir = env.Root + "/cmd" // no local.settings.json there: the environment alone
	out, err := cmd.Output()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		r.problems = append(r.problems, "handler status: "+err.Error())
		return "handler status did not run"
	}
	var rep status.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		r.problems = append(r.problems, "handler status -json: not JSON: "+err.Error())
		return "handler status -json did not answer JSON"
	}
	want := map[faultMode]string{serverBusy: "503 ServerBusy", refused: "connection refused"}[mode]
	for _, f := range rep.Findings {
		if f.Code == status.CodeStorageUnreachable && strings.Contains(f.Subject, "("+service+")") {
			msg, _, _ := strings.Cut(f.Message, ". Detail:")
			if !strings.Contains(msg, service+" storage: "+want) {
				r.problems = append(r.problems, fmt.Sprintf("handler status names the %s service but not %q: %s", service, want, msg))
			}
			return fmt.Sprintf("`handler status` during the stretch: exit %d, %s", rep.ExitCode, quoteMD(msg))
		}
	}
	var got []string
	for _, f := range rep.Findings {
		got = append(got, f.Code+" ("+f.Subject+")")
	}
	r.problems = append(r.problems, fmt.Sprintf("handler status did not name the %s service (findings: %s)", service, strings.Join(got, ", ")))
	return "`handler status` did not name the failing service"
}

// quoteMD keeps a finding's text from breaking the report's table or list.
func quoteMD(s string) string { return "“" + strings.ReplaceAll(s, "|", "\\|") + "”" }

// renderStorage writes the storage group's sub-section of the report.
func renderStorage(rows []*row, o options, scenTime time.Duration, load0 string, panics int) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("### Storage faults (`make reliability`, group `storage`)\n\n")
	p("| | |\n|---|---|\n")
	p("| command | `go run ./cmd/reliability %s` |\n", strings.Join(o.args, " "))
	p("| machine | %s |\n", pipekit.Machine())
	p("| run time | scenarios %s (load average %s → %s) |\n\n", pipekit.Secs(scenTime), load0, pipekit.LoadAvg())
	p("One stack (users and groups followed), the real handler under the host double with Azurite and the Graph double. A fault\n")
	p("proxy stands in front of each storage service of `AzureWebJobsStorage` for the handler **and** the host double (in Azure\n")
	p("they share the account: the host's queue polling and output bindings see the same outage); only the tool's reader of\n")
	p("`graphchanges` goes to Azurite directly. Each stretch lasts `-storage-stretch` (%s): the service answers every request\n", o.storageStretch)
	p("503 with its `ServerBusy` error, or refuses every connection (nothing listens; open connections closed), while %d users\n", storageChangesPerStretch)
	p("change and a group is renamed, evenly spread over the stretch; `handler status -json` runs in its middle with the stack's\n")
	p("settings. Graph's delivery retries last 4 hours, as Graph's do. Changes are counted as in the section above, after the\n")
	p("stack settled: *converged* is the stretch's start → the last change's state readable.\n\n")
	renderRows(p, rows)
	p("- Handler/host log: %d `panic:` / `fatal error:` lines over all stacks of the run.\n\n", panics)
	var probs []string
	total, got, poison := 0, 0, 0
	for _, r := range rows {
		total += r.o.Changes
		got += r.o.Got
		poison = max(poison, r.poison)
		for _, x := range r.problems {
			probs = append(probs, r.name+": "+x)
		}
		if !r.converged && len(r.problems) == 0 {
			probs = append(probs, r.name+": did not converge")
		}
	}
	p("**Interpretation.** ")
	if len(probs) == 0 && len(rows) > 0 {
		p("Every one of the %d changes made while a storage service failed got an event carrying its latest state: 0 lost, %d in\n", total, poison)
		p("the poison queue; `handler status` named the failing service and how it failed during every stretch. A queue outage\n")
		p("holds changes back until Graph's next retry after it (its backoff doubles while the webhook fails); a table outage\n")
		p("only costs change detection; a blob outage only delays resyncs.\n\n")
		return b.String()
	}
	p("**Problems found:**\n\n")
	for _, x := range probs {
		p("- %s\n", x)
	}
	p("\n")
	return b.String()
}
