package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/cmd/benchpipeline/pipekit"
	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/devstack"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/resync"
)

// benchDrive is the drive of the drive runs, in the shape of a business drive id.
const benchDrive = "b!BenchDriveOfThePipeline-0123456789_abcdefghijklmnopqrstuvwxyzABCDE"

// driveQuiet is how long the drive runs wait without a delta request before counting: longer than the
// worker's second look after an empty pass, so every pass a run causes is counted.
const driveQuiet = resync.SecondLook + 2*time.Second

type driveVariant string

const (
	driveBurst  driveVariant = "burst"  // every file edited at once, each edit tapped tapsPer times
	driveSpread driveVariant = "spread" // the same edits in waves over a few seconds
)

type driveResult struct {
	v                 driveVariant
	files, tapsPer    int
	waves             int
	waveEvery         time.Duration
	taps, posts       int // drive notifications Graph delivered after the edits began, in POSTs
	deltaCalls        int // GET /v1.0/drives/{id}/root/delta (each a page: first pages and nextLinks)
	otherCalls        int // any other Graph request of the worker's (there should be none)
	events, genuine   int // events read since the edits began; of them, ones whose state changed
	passes            int // drive passes completed, per the worker's summaries
	drain             time.Duration
	afterLastTap      time.Duration // last tap delivered → last file's new state readable
	workerInvocations int
	seedEvents        int
	converged         bool
	missing           int
	poison            int
}

func (r driveResult) perTap() float64 { return float64(r.deltaCalls) / float64(max(r.taps, 1)) }
func (r driveResult) perChange() float64 {
	return float64(r.events) / float64(max(r.files, 1))
}

// driveRun: a drive of files (seeded, their events awaited and the stack left quiet), then every file edited
// once, each edit tapped tapsPer times (1,000 taps for 200 files by default); counted from the first edit:
// taps delivered, the worker's delta requests, events, and the time until every file's new state is readable.
func driveRun(ctx context.Context, env *pipekit.Env, o options, v driveVariant) (driveResult, error) {
	r := driveResult{v: v, files: o.driveFiles, tapsPer: o.driveTaps}
	if v == driveSpread {
		r.waves, r.waveEvery = 20, 250*time.Millisecond
	}
	s, err := env.Start(ctx, devstack.Options{Users: 1, Drives: []string{benchDrive},
		Settings: map[string]string{config.Resource: "drives/" + benchDrive},
		Graph:    func(g *fakegraph.Options) { g.NotificationBatchSize = o.batch }}, o.poll)
	if err != nil {
		return r, err
	}
	defer s.Close()
	time.Sleep(300 * time.Millisecond)

	// The drive's files, announced by one tap; awaited, then quiet (second looks included).
	ids, err := s.Graph.SeedDriveFiles(benchDrive, "", "bench", r.files, true)
	if err != nil {
		return r, err
	}
	wctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	_, err = awaitDriveState(wctx, s, ids)
	cancel()
	if err != nil {
		return r, fmt.Errorf("the seeded files did not all arrive: %w", err)
	}
	r.seedEvents = len(s.Reader.Events())
	if err := driveSettle(ctx, s); err != nil {
		return r, err
	}

	t0 := time.Now()
	if v == driveBurst {
		if err := s.Graph.EditDriveFiles(benchDrive, ids, -1, r.tapsPer); err != nil {
			return r, err
		}
	} else {
		per := (len(ids) + r.waves - 1) / r.waves
		for w := 0; w < r.waves; w++ {
			lo, hi := min(w*per, len(ids)), min((w+1)*per, len(ids))
			if err := s.Graph.EditDriveFiles(benchDrive, ids[lo:hi], -1, r.tapsPer); err != nil {
				return r, err
			}
			time.Sleep(r.waveEvery)
		}
	}
	wctx, cancel = context.WithTimeout(ctx, 180*time.Second)
	last, err := awaitDriveState(wctx, s, ids)
	cancel()
	r.converged = err == nil
	if r.converged {
		r.drain = last.Sub(t0)
	} else {
		r.drain = time.Since(t0)
		r.missing = len(missingDriveState(s, ids))
	}
	if err := driveSettle(ctx, s); err != nil && r.converged {
		return r, err
	}

	var lastTap time.Time
	for _, d := range s.Graph.Deliveries() {
		if d.Kind != "notification" || d.Time.Before(t0) || d.Outcome != "delivered" {
			continue
		}
		r.posts++
		r.taps += d.Notifications
		if end := d.Time.Add(d.Duration); end.After(lastTap) {
			lastTap = end
		}
	}
	if r.converged && !lastTap.IsZero() {
		r.afterLastTap = last.Sub(lastTap)
	}
	for _, q := range s.Graph.Requests() {
		if q.Time.Before(t0) || q.InBatch || strings.HasPrefix(q.Path, "/v1.0/subscriptions") || !strings.HasPrefix(q.Path, "/v1.0/") {
			continue
		}
		if strings.HasPrefix(q.Path, "/v1.0/drives/") && strings.HasSuffix(q.Path, "/root/delta") {
			r.deltaCalls++
		} else {
			r.otherCalls++
		}
	}
	evs := s.Reader.Events()
	r.events, r.genuine = pipekit.Redundancy(evs, t0)
	w := s.Worker(t0, time.Time{})
	r.workerInvocations = w.Invocations
	for scope, n := range w.PassesDone {
		if strings.HasPrefix(scope, "drives") {
			r.passes += n
		}
	}
	r.poison = s.PoisonCount(ctx)
	return r, nil
}

// awaitDriveState waits until each file's latest event carries its current size and name in the Graph
// double, and returns when the last of them became readable.
func awaitDriveState(ctx context.Context, s *pipekit.Stack, ids []string) (time.Time, error) {
	var at time.Time
	err := s.Reader.WaitFor(ctx, func(evs []pipekit.Read) bool {
		latest := map[string]pipekit.Read{}
		for _, r := range evs {
			latest[r.Event.ResourceID] = r
		}
		last := time.Time{}
		for _, id := range ids {
			r, ok := latest[id]
			if !ok || !driveStateMatches(s, id, r) {
				return false
			}
			if r.ReadAt.After(last) {
				last = r.ReadAt
			}
		}
		at = last
		return true
	})
	return at, err
}

func driveStateMatches(s *pipekit.Stack, id string, r pipekit.Read) bool {
	it, err := s.Graph.GetDriveItem(benchDrive, id)
	return err == nil && r.Event.Resource == "driveItems" && r.Event.Object != nil &&
		fmt.Sprint(r.Event.Object["size"]) == fmt.Sprint(it.Size) && r.Event.Object["name"] == it.Name
}

func missingDriveState(s *pipekit.Stack, ids []string) []string {
	latest := map[string]pipekit.Read{}
	for _, r := range s.Reader.Events() {
		latest[r.Event.ResourceID] = r
	}
	var out []string
	for _, id := range ids {
		if r, ok := latest[id]; !ok || !driveStateMatches(s, id, r) {
			out = append(out, id)
		}
	}
	return out
}

// driveSettle waits until the stack is settled and no delta request has come for driveQuiet.
func driveSettle(ctx context.Context, s *pipekit.Stack) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		qctx, qcancel := context.WithTimeout(ctx, 30*time.Second)
		settled := s.Settle(qctx, 1500*time.Millisecond)
		qcancel()
		lastDelta := time.Time{}
		for _, q := range s.Graph.Requests() {
			if strings.HasPrefix(q.Path, "/v1.0/drives/") && q.Time.After(lastDelta) {
				lastDelta = q.Time
			}
		}
		if settled && time.Since(lastDelta) >= driveQuiet {
			return nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return errors.New("the drive run did not settle within 90 s")
}

func sayDrive(say func(string, ...any), r driveResult) {
	say("  %d taps delivered, %d delta requests (%.4f per tap), %d events for %d changed files (%.2f per change), drained in %s%s",
		r.taps, r.deltaCalls, r.perTap(), r.events, r.files, r.perChange(), pipekit.Secs(r.drain), map[bool]string{true: "", false: " — DID NOT CONVERGE"}[r.converged])
}

func writeDrives(p func(string, ...any), o options, hdr string, rs []driveResult) {
	p("### Drives: taps, delta requests and events per change (`make bench-pipeline`)\n\n")
	p("%s", hdr)
	p("A drive (OneDrive or a SharePoint library) of %d files on the Graph double, the handler following it (`GRAPH_RESOURCE=drives/{drive-id}`). The files are uploaded first (one tap), their events awaited, and the stack left quiet for %s (longer than the worker's second look after an empty pass). Then every file is edited once and Graph taps the drive %d times for each edit: %d taps for %d genuine changes. A tap names the drive, not the item; the worker turns taps into delta passes over the drive (taps during a pass collapse into one follow-up; `$top` 1,000 per page) and writes one event per changed item. ",
		o.driveFiles, driveQuiet, o.driveTaps, o.driveFiles*o.driveTaps, o.driveFiles)
	p("Counted from the first edit until the stack is quiet again: taps Graph delivered (in POSTs of up to %d), the worker's delta requests (every page, second looks included), events read from graphchanges, and the time until every file's new state is readable there.\n\n", o.batch)
	p("| run | taps delivered (POSTs) | delta requests | **delta requests per tap** (goal ≤ 0.05) | events | **events per genuine change** (goal 1.00) | passes done | worker invocations | drain: first edit → all readable | last tap → all readable | other Graph requests | poison |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rs {
		name := fmt.Sprintf("%s: %d files × %d taps, all at once", r.v, r.files, r.tapsPer)
		if r.v == driveSpread {
			name = fmt.Sprintf("%s: %d files × %d taps, in %d waves %s apart", r.v, r.files, r.tapsPer, r.waves, r.waveEvery)
		}
		conv := ""
		if !r.converged {
			conv = fmt.Sprintf(" — **%d files never arrived**", r.missing)
		}
		p("| %s%s | %d (%d) | %d | **%.4f** | %d | **%.2f** | %d | %d | %s | %s | %d | %d |\n",
			name, conv, r.taps, r.posts, r.deltaCalls, r.perTap(), r.events, r.perChange(), r.passes, r.workerInvocations,
			pipekit.Secs(r.drain), pipekit.Secs(r.afterLastTap), r.otherCalls, r.poison)
	}
	p("\nEvents per genuine change counts every event read after the first edit (each file changed once). The drain includes the host's queue polling and the %d ms read interval of this program; the files' upload (%d events) is not counted.",
		o.poll.Milliseconds(), o.driveFiles)
	for _, r := range rs {
		if r.converged && r.afterLastTap >= resync.SecondLook-2*time.Second {
			p(" In the %s run the last files became readable about a second look (%s) after the last tap: a pass that finds nothing schedules one more look %s later, and taps that arrive while it is scheduled wait for it.", r.v, resync.SecondLook, resync.SecondLook)
		}
	}
	p("\n")
}
