package main

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/cmd/benchpipeline/pipekit"
	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/devstack"
)

// ---- resync after notifications ----

type resyncResult struct {
	label               string // baseline revision; empty for the working tree's handler
	users               int
	notified            int // users whose notification-phase state was readable before the resync
	events, genuine     int // since the first change, both phases
	notifEvents         int // events with source notification
	resyncEvents        int // events with source resync
	worker, resyncPhase pipekit.WorkerTally
	table, resyncTable  pipekit.TableTally
	deltaPages          int
	passDone, converged bool
	problems            []string
}

func (r resyncResult) perChange() float64 { return float64(r.events) / float64(max(r.users, 1)) }

// resyncAfter changes n users, waits until every change is readable from its notification, then runs
// `handler resync` with the stack's settings and waits for the users pass to complete: the pass reports the
// same changes again.
func resyncAfter(ctx context.Context, env *pipekit.Env, o options, bl pipekit.Build) (resyncResult, error) {
	r := resyncResult{label: bl.Label, users: o.resyncUsers}
	s, err := env.Start(ctx, devstack.Options{Users: o.resyncUsers, Handler: bl.Handler, Root: bl.Root}, o.poll)
	if err != nil {
		return r, err
	}
	defer s.Close()
	time.Sleep(300 * time.Millisecond)
	ids := make([]string, o.resyncUsers)
	t0 := time.Now()
	for i := range ids {
		ids[i] = devstack.UserID(i + 1)
		s.Graph.UpdateUser(ids[i], map[string]any{"jobTitle": fmt.Sprintf("resync bench %d", i+1)})
	}
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	_, err = s.AwaitState(wctx, ids)
	cancel()
	if err != nil {
		r.problems = append(r.problems, fmt.Sprintf("%d changes not readable from their notifications", len(s.Missing(ids))))
	}
	r.notified = len(ids) - len(s.Missing(ids))
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	s.Settle(sctx, 1500*time.Millisecond)
	cancel()

	t1 := time.Now()
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	cmd := exec.CommandContext(cctx, s.Handler, "resync")
	cmd.Env = s.EnvList()
	out, err := cmd.CombinedOutput()
	cancel()
	if err != nil {
		return r, fmt.Errorf("handler resync: %v: %s", err, strings.TrimSpace(string(out)))
	}
	// The pass is done when the worker's summary says so. A handler whose summary does not (an older one
	// says "resync step done") is taken as done once it has read a delta page and the work queue has
	// stayed empty: each page enqueues the next before its own message goes.
	dctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	err = devstack.Eventually(dctx, func() bool {
		w := s.Worker(t1, time.Time{})
		if w.PassesDone["users"]+w.PassesDone[""] > 0 {
			return true
		}
		if bl.Label == "" || pipekit.Calls(s.Graph.Requests(), t1).Delta == 0 {
			return false
		}
		qctx, qcancel := context.WithTimeout(dctx, 5*time.Second)
		defer qcancel()
		return s.Settle(qctx, 1500*time.Millisecond)
	})
	cancel()
	r.passDone = err == nil
	if !r.passDone {
		r.problems = append(r.problems, "the resync pass did not complete within 90 s")
	}
	sctx, cancel = context.WithTimeout(ctx, 30*time.Second)
	s.Settle(sctx, 1500*time.Millisecond)
	cancel()
	r.converged = len(s.Missing(ids)) == 0

	evs := s.Reader.Events()
	r.events, r.genuine = pipekit.Redundancy(evs, t0)
	for _, e := range evs {
		if e.ReadAt.Before(t0) {
			continue
		}
		switch e.Event.Source {
		case "notification":
			r.notifEvents++
		case "resync":
			r.resyncEvents++
		}
	}
	r.worker = s.Worker(t0, time.Time{})
	r.resyncPhase = s.Worker(t1, time.Time{})
	r.table = s.Table.Between(t0, time.Time{})
	r.resyncTable = s.Table.Between(t1, time.Time{})
	r.deltaPages = pipekit.Calls(s.Graph.Requests(), t1).Delta
	return r, nil
}

// ---- groups ----

type groupResult struct {
	groups, changes     int
	delivered, posts    int
	calls               pipekit.GraphCalls
	events, genuine     int // group events since the first change
	memberEvents        int // … carrying a membership change
	worker              pipekit.WorkerTally
	table               pipekit.TableTally
	drain               time.Duration
	converged, settled  bool
	missingName, pendMb int
}

func (g groupResult) perNotification() float64 {
	return float64(g.calls.Worker()+g.calls.GroupDelta) / float64(max(g.delivered, 1))
}

// groupsRun follows users and groups; each of n groups is renamed, gains a member and loses one.
func groupsRun(ctx context.Context, env *pipekit.Env, o options) (groupResult, error) {
	n := o.groups
	r := groupResult{groups: n}
	s, err := env.Start(ctx, devstack.Options{Users: 3 + n, Groups: n, Settings: map[string]string{config.Resource: "users,groups"}}, o.poll)
	if err != nil {
		return r, err
	}
	defer s.Close()
	time.Sleep(300 * time.Millisecond)
	gid := func(i int) string { return devstack.SeedGroup(i).ID }
	t0 := time.Now()
	for i := 1; i <= n; i++ {
		s.Graph.UpdateGroup(gid(i), map[string]any{"displayName": fmt.Sprintf("Group %03d renamed", i)})
		s.Graph.AddMembers(gid(i), devstack.UserID(3+i))
		s.Graph.RemoveMembers(gid(i), devstack.UserID(1))
		r.changes += 3
	}
	// Converged: every group's latest event carries its new name, and since t0 the events for it have
	// reported the member added and the member removed.
	check := func(evs []pipekit.Read) (missingName, pendingMembers int) {
		latest := map[string]pipekit.Read{}
		added, removed := map[string]bool{}, map[string]bool{}
		for _, e := range evs {
			if e.Event.Resource != config.Groups || e.ReadAt.Before(t0) {
				continue
			}
			id := strings.ToLower(e.Event.ResourceID)
			latest[id] = e
			if m := e.Event.Members; m != nil {
				for _, a := range m.Added {
					added[id+"/"+strings.ToLower(a)] = true
				}
				for _, x := range m.Removed {
					removed[id+"/"+strings.ToLower(x)] = true
				}
			}
		}
		for i := 1; i <= n; i++ {
			id := strings.ToLower(gid(i))
			if e, ok := latest[id]; !ok || !s.Matches(gid(i), e.Event) {
				missingName++
			}
			if !added[id+"/"+strings.ToLower(devstack.UserID(3+i))] || !removed[id+"/"+strings.ToLower(devstack.UserID(1))] {
				pendingMembers++
			}
		}
		return missingName, pendingMembers
	}
	var done time.Time
	wctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	err = s.Reader.WaitFor(wctx, func(evs []pipekit.Read) bool {
		a, b := check(evs)
		if a == 0 && b == 0 {
			done = time.Now()
			return true
		}
		return false
	})
	cancel()
	r.converged = err == nil
	if r.converged {
		r.drain = done.Sub(t0)
	} else {
		r.drain = time.Since(t0)
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	r.settled = s.Settle(sctx, 1500*time.Millisecond)
	cancel()
	evs := s.Reader.Events()
	r.missingName, r.pendMb = check(evs)

	for _, d := range s.Graph.Deliveries() {
		if d.Kind == "notification" && d.Outcome == "delivered" && !d.Time.Before(t0) {
			r.posts++
			r.delivered += d.Notifications
		}
	}
	r.calls = pipekit.Calls(s.Graph.Requests(), t0)
	var groupEvs []pipekit.Read
	for _, e := range evs {
		if e.Event.Resource == config.Groups {
			groupEvs = append(groupEvs, e)
			if !e.ReadAt.Before(t0) && e.Event.Members != nil && len(e.Event.Members.Added)+len(e.Event.Members.Removed) > 0 {
				r.memberEvents++
			}
		}
	}
	r.events, r.genuine = pipekit.Redundancy(groupEvs, t0)
	r.worker = s.Worker(t0, time.Time{})
	r.table = s.Table.Between(t0, time.Time{})
	return r, nil
}

// ---- the report ----

func writeDetection(p func(string, ...any), o options, hdr string, rr []resyncResult, g *groupResult) {
	p("### Change detection: events per genuine change, state-table cost, groups (`make bench-pipeline`)\n\n")
	p("%s", hdr)
	p("The economy table above has the same figures for its three scenarios (events per genuine state change, suppressed events,\n")
	p("state-table requests, worker invocation time). *Genuine*: an event whose state (change type, soft-delete mark, selected\n")
	p("properties) differs from the previous event read for the same object, or that carries a membership change; events per genuine\n")
	p("change is 1.0 when no event repeats what a consumer already has. *State-table requests* are counted by a reverse proxy\n")
	p("(`net/http/httputil`, 127.0.0.1) that the stack's `AzureWebJobsStorage` names as its `TableEndpoint`, in front of Azurite's;\n")
	p("*suppressed* is summed from the worker's and the resync's invocation summaries (\"N suppressed as carrying nothing new\").\n\n")
	if len(rr) > 0 {
		p("#### Resync after notifications\n\n")
		p("%d users change once (`UpdateUser`, a new `jobTitle`); once every change is readable from its notification, `handler resync`\n", rr[0].users)
		p("runs with the stack's settings and the users delta pass reports the same %d changes again (the pass starts from the\n", rr[0].users)
		p("start-up checkpoint, `RESYNC_INITIAL=latest`). Each handler gets a fresh stack.\n\n")
		p("| figure |")
		for _, r := range rr {
			p(" %s |", handlerName(r.label))
		}
		p("\n|---|")
		for range rr {
			p("---:|")
		}
		p("\n")
		row := func(name string, f func(resyncResult) string) {
			p("| %s |", name)
			for _, r := range rr {
				p(" %s |", f(r))
			}
			p("\n")
		}
		row("changes (readable from notifications before the resync)", func(r resyncResult) string { return fmt.Sprintf("%d (%d)", r.users, r.notified) })
		row("events written: from notifications + from the resync", func(r resyncResult) string {
			return fmt.Sprintf("%d + %d", r.notifEvents, r.resyncEvents)
		})
		row("**events per change**", func(r resyncResult) string { return fmt.Sprintf("**%.2f**", r.perChange()) })
		row("events per genuine state change", func(r resyncResult) string {
			return fmt.Sprintf("%.2f (%d ÷ %d)", float64(r.events)/float64(max(r.genuine, 1)), r.events, r.genuine)
		})
		row("suppressed as carrying nothing new: by the worker / by the resync", func(r resyncResult) string {
			if r.label != "" {
				return "– (no change detection)"
			}
			return fmt.Sprintf("%d / %d", r.worker.Suppressed-r.worker.ResyncSuppressed, r.worker.ResyncSuppressed)
		})
		row("resync: delta pages, pass completed", func(r resyncResult) string { return fmt.Sprintf("%d, %v", r.deltaPages, r.passDone) })
		row("state-table requests: whole run / the resync (by kind)", func(r resyncResult) string {
			return fmt.Sprintf("%d / %d (%s)", r.table.Total, r.resyncTable.Total, r.resyncTable.Kinds())
		})
		row("worker invocation p50 / p99, whole run (host record)", func(r resyncResult) string {
			return pipekit.Ms(pipekit.Pct(r.worker.Durations, 50)) + " / " + pipekit.Ms(pipekit.Pct(r.worker.Durations, 99))
		})
		row("every user's latest event carries its state; problems", func(r resyncResult) string {
			if len(r.problems) == 0 {
				return fmt.Sprintf("%v; none", r.converged)
			}
			return fmt.Sprintf("%v; %s", r.converged, strings.Join(r.problems, "; "))
		})
		p("\n")
		cur := rr[0]
		p("**Interpretation.** With change detection the resync re-reports the %d notified changes and writes %d events for them", cur.users, cur.resyncEvents)
		p(" (%d suppressed): **%.2f events per change** over the whole run", cur.worker.ResyncSuppressed, cur.perChange())
		for _, r := range rr[1:] {
			p(", against %.2f with the handler before change detection (%s: %d resync events)", r.perChange(), r.label, r.resyncEvents)
		}
		p(". The price is the state table: the resync's reads cost %d table requests for %d objects read.\n\n", cur.resyncTable.Total, cur.users)
	}
	if g != nil {
		p("#### Groups: rename, a member added, a member removed\n\n")
		p("`GRAPH_RESOURCE=users,groups`; %d seeded groups (`devstack.SeedGroup`, three members each). Each group is renamed\n", g.groups)
		p("(`UpdateGroup`), gains a member (`AddMembers`) and loses one (`RemoveMembers`): %d changes, each of which the Graph double\n", g.changes)
		p("notifies as `updated` on the group. The worker reads the groups with `$batch` and, after group notifications, asks for a\n")
		p("groups delta pass, which reports the membership (`members.added` / `members.removed`). *Graph requests per group\n")
		p("notification* counts the worker's `$batch` and group reads plus the groups delta pages, over the notifications delivered.\n\n")
		p("| figure | value |\n|---|---:|\n")
		p("| group changes / notifications delivered (POSTs) | %d / %d (%d) |\n", g.changes, g.delivered, g.posts)
		p("| worker Graph requests: `$batch` + group GETs / groups delta pages | %d + %d / %d |\n", g.calls.Batch, g.calls.GroupGet, g.calls.GroupDelta)
		p("| **Graph requests per group notification** (`$batch` + groups + groups delta) | **%.3f** |\n", g.perNotification())
		p("| reads inside `$batch` | %d |\n", g.calls.BatchItems)
		p("| group events written (with a membership change) | %d (%d) |\n", g.events, g.memberEvents)
		p("| **group events per change** | **%.2f** (%d ÷ %d) |\n", float64(g.events)/float64(max(g.changes, 1)), g.events, g.changes)
		p("| group events per genuine state change | %.2f (%d ÷ %d) |\n", float64(g.events)/float64(max(g.genuine, 1)), g.events, g.genuine)
		p("| suppressed as carrying nothing new: worker / resync | %d / %d |\n", g.worker.Suppressed-g.worker.ResyncSuppressed, g.worker.ResyncSuppressed)
		p("| state-table requests (by kind); per event | %d (%s); %.2f |\n", g.table.Total, g.table.Kinds(), float64(g.table.Total)/float64(max(g.events, 1)))
		p("| worker invocation p50 / p99 | %s / %s |\n", pipekit.Ms(pipekit.Pct(g.worker.Durations, 50)), pipekit.Ms(pipekit.Pct(g.worker.Durations, 99)))
		conv := fmt.Sprintf("**%s**", pipekit.Secs(g.drain))
		if !g.converged {
			conv = fmt.Sprintf("**did not converge** in %s (%d groups without their new name, %d without both membership changes)", pipekit.Secs(g.drain), g.missingName, g.pendMb)
		}
		p("| first change → every group's name and both membership changes readable | %s |\n", conv)
		p("| settled afterwards | %v |\n\n", g.settled)
		p("**Interpretation.** %d group changes cost %d Graph requests (%.3f per notification); the membership arrives through the\n", g.changes, g.calls.Worker()+g.calls.GroupDelta, g.perNotification())
		p("groups delta rather than the notification, so a group costs its notification's share of a `$batch` and a share of a delta\n")
		p("pass that collapses concurrent requests. %d events for %d changes: a group's rename and its two membership changes can\n", g.events, g.changes)
		p("arrive as one event (a notification read after all three) or as several (a delta page reporting the membership apart).\n\n")
	}
}

func handlerName(label string) string {
	if label == "" {
		return "this handler (change detection on)"
	}
	return "handler at " + label + " (before change detection)"
}
