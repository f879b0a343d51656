package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

// demoDrive is the story's drive, in the shape of a business drive id ("b!" and base64url characters). The
// stack adds it to the Graph double before the handler starts (devstack.Options.Drives), so the start-up
// subscription can name it.
const demoDrive = "b!DemoDriveOfTheStory-0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGH"

// The tap storm: files uploaded, and taps Graph sends for each one's edit.
const (
	stormFiles   = 20
	stormTapsPer = 10
)

// driveStory is the drive part of the demo: items it made and what it counts.
type driveStory struct {
	d                       *demo
	projects, archive, plan string
	storm                   []string
	changes                 int // genuine changes of items the story made (each must be one event)
}

// driveEvents are the events about the story's drive.
func (ds *driveStory) events(evs []message.Event) []message.Event {
	var out []message.Event
	for _, e := range evs {
		if e.Resource == "driveItems" && e.Context["driveId"] == demoDrive {
			out = append(out, e)
		}
	}
	return out
}

// awaitItems waits until, among the events since the step began, every check holds for some event of its
// item; a check's nil func accepts any event of that item.
func (ds *driveStory) awaitItems(ctx context.Context, since int, checks map[string]func(message.Event) bool) bool {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	return ds.d.s.WaitEvents(ctx, func(all []message.Event) bool {
		for id, ok := range checks {
			found := false
			for _, e := range ds.events(all[min(since, len(all)):]) {
				if e.ResourceID == id && (ok == nil || ok(e)) {
					found = true
					break
				}
			}
			if !found {
				return false
			}
		}
		return true
	}) == nil
}

func named(name string) func(message.Event) bool {
	return func(e message.Event) bool { return e.ChangeType == "updated" && e.Object["name"] == name }
}

func deletedEvent(e message.Event) bool { return e.ChangeType == "deleted" }

// taps counts the drive notifications Graph delivered (each tap once, however many attempts).
func (ds *driveStory) taps() int {
	n := 0
	for _, d := range ds.d.s.Graph.Deliveries() {
		if d.Kind != "notification" || d.Outcome != "delivered" {
			continue
		}
		var env struct {
			Value []struct {
				Resource string `json:"resource"`
			} `json:"value"`
		}
		if json.Unmarshal(d.Body, &env) != nil {
			continue
		}
		for _, v := range env.Value {
			if strings.Contains(strings.ToLower(v.Resource), "drives/") {
				n++
			}
		}
	}
	return n
}

// deltaCalls counts the worker's requests for the drive's delta.
func (ds *driveStory) deltaCalls() int { return ds.d.s.Graph.Count("GET", "/v1.0/drives/") }

// stepLine says how many taps and delta requests a drive step took.
func (ds *driveStory) stepLine(evs []message.Event, tapsBefore, deltaBefore int) string {
	return fmt.Sprintf("%d tap(s) from Graph, %d delta request(s), %d drive event(s)", ds.taps()-tapsBefore, ds.deltaCalls()-deltaBefore, len(ds.events(evs)))
}

// steps is the drive story: each step says what changed in the drive and waits for its events.
func (ds *driveStory) steps(ctx context.Context) []step {
	g := ds.d.s.Graph
	var tapsBefore, deltaBefore int
	mark := func() { tapsBefore, deltaBefore = ds.taps(), ds.deltaCalls() }
	must := func(id string, err error) string {
		if err != nil {
			ds.d.say("   the Graph double refused the change: %v", err)
		}
		return id
	}
	return []step{
		{title: "Drive: a folder Projects with plan.docx in it, and a folder Archive, are created", act: func() []string {
			mark()
			ds.projects = must(g.AddDriveItem(demoDrive, fakegraph.DriveItem{Name: "Projects", Folder: true}))
			ds.plan = must(g.AddDriveItem(demoDrive, fakegraph.DriveItem{Name: "plan.docx", ParentID: ds.projects, Size: 18000,
				MimeType: "application/vnd.openxmlformats-officedocument.wordprocessingml.document"}))
			ds.archive = must(g.AddDriveItem(demoDrive, fakegraph.DriveItem{Name: "Archive", Folder: true}))
			ds.changes += 3
			return nil
		}, await: func(ctx context.Context, since int) bool {
			return ds.awaitItems(ctx, since, map[string]func(message.Event) bool{ds.projects: named("Projects"), ds.plan: named("plan.docx"), ds.archive: named("Archive")})
		}, why: func(evs []message.Event, _ []string) string {
			return ds.stepLine(evs, tapsBefore, deltaBefore) + ". A drive notification is a tap: it names the drive, not the item, so the worker ran a delta pass over the drive (taps that come during a pass make one follow-up pass) and wrote one event per new item. The drive's root came back in delta too: never an event"
		}},
		{title: "Drive: plan.docx is edited", act: func() []string {
			mark()
			must("", g.UpdateDriveItem(demoDrive, ds.plan, 24500))
			ds.changes++
			return nil
		}, await: func(ctx context.Context, since int) bool {
			return ds.awaitItems(ctx, since, map[string]func(message.Event) bool{ds.plan: func(e message.Event) bool { return fmt.Sprint(e.Object["size"]) == "24500" }})
		}, why: func(evs []message.Event, _ []string) string {
			return ds.stepLine(evs, tapsBefore, deltaBefore) + changedOf(ds.events(evs)) + ". Delta also returned the root and Projects, the parent of the edited file: a folder is an event only when its own properties change"
		}},
		{title: "Drive: plan.docx is renamed plan-v2.docx", act: func() []string {
			mark()
			must("", g.RenameDriveItem(demoDrive, ds.plan, "plan-v2.docx"))
			ds.changes++
			return nil
		}, await: func(ctx context.Context, since int) bool {
			return ds.awaitItems(ctx, since, map[string]func(message.Event) bool{ds.plan: named("plan-v2.docx")})
		}, why: func(evs []message.Event, _ []string) string {
			return ds.stepLine(evs, tapsBefore, deltaBefore) + changedOf(ds.events(evs))
		}},
		{title: "Drive: the folder Projects is moved into Archive", act: func() []string {
			mark()
			must("", g.MoveDriveItem(demoDrive, ds.projects, ds.archive))
			ds.changes++
			return nil
		}, await: func(ctx context.Context, since int) bool {
			return ds.awaitItems(ctx, since, map[string]func(message.Event) bool{ds.projects: func(e message.Event) bool {
				p, _ := e.Object["parentReference"].(map[string]any)
				return p["id"] == ds.archive
			}})
		}, why: func(evs []message.Event, _ []string) string {
			return ds.stepLine(evs, tapsBefore, deltaBefore) + changedOf(ds.events(evs)) + ". The file inside the moved folder did not change (its parent is still Projects) and delta does not return it"
		}},
		{title: "Drive: plan-v2.docx is deleted", act: func() []string {
			mark()
			must("", g.DeleteDriveItem(demoDrive, ds.plan))
			ds.changes++
			return nil
		}, await: func(ctx context.Context, since int) bool {
			return ds.awaitItems(ctx, since, map[string]func(message.Event) bool{ds.plan: deletedEvent})
		}, why: func(evs []message.Event, _ []string) string {
			return ds.stepLine(evs, tapsBefore, deltaBefore) + ". Delta returned the file with its deleted facet and hardly anything else: a deleted event"
		}},
		{title: fmt.Sprintf("Drive: a tap storm: %d files uploaded to Archive and edited, Graph sends %d taps for each edit (%d taps)", stormFiles, stormTapsPer, stormFiles*stormTapsPer), act: func() []string {
			mark()
			ids, err := g.SeedDriveFiles(demoDrive, ds.archive, "report", stormFiles, false)
			must("", err)
			ds.storm = ids
			must("", g.EditDriveFiles(demoDrive, ids, -1, stormTapsPer))
			ds.changes += len(ids)
			return nil
		}, await: func(ctx context.Context, since int) bool {
			checks := map[string]func(message.Event) bool{}
			for _, id := range ds.storm {
				checks[id] = nil
			}
			return ds.awaitItems(ctx, since, checks)
		}, why: func(evs []message.Event, _ []string) string {
			return ds.stepLine(evs, tapsBefore, deltaBefore) + ": the taps collapsed into a few passes, each reading delta pages of up to 1,000 items, and each file is one event in its latest state (an upload and an edit before the pass are one change)"
		}},
		{title: "Drive: Graph forgets the worker's delta token (410 Gone, resyncRequired) while one file changes", act: func() []string {
			mark()
			must("", g.ExpireDriveDeltaTokens(demoDrive))
			must("", g.UpdateDriveItem(demoDrive, ds.storm[0], 99000))
			ds.changes++
			return nil
		}, await: func(ctx context.Context, since int) bool {
			return ds.awaitItems(ctx, since, map[string]func(message.Event) bool{ds.storm[0]: func(e message.Event) bool { return fmt.Sprint(e.Object["size"]) == "99000" }})
		}, why: func(evs []message.Event, _ []string) string {
			items, _ := g.DriveItems(demoDrive)
			return ds.stepLine(evs, tapsBefore, deltaBefore) + fmt.Sprintf(". Delta answered 410 with a fresh link: the worker enumerated the whole drive again (%d items) and change detection kept every unchanged item silent", len(items))
		}},
		{title: "Drive: delta lags the tap by 3 s (as OneDrive's can): a file is renamed", prepare: func() {
			// Start from a quiet drive (no pass running or scheduled), so the first pass after the tap is the
			// one that finds nothing.
			ds.awaitQuiet(ctx, 11*time.Second)
		}, act: func() []string {
			mark()
			g.SetDriveDeltaLag(3*time.Second, 0)
			must("", g.RenameDriveItem(demoDrive, ds.storm[1], "report-final.txt"))
			ds.changes++
			return nil
		}, await: func(ctx context.Context, since int) bool {
			defer g.SetDriveDeltaLag(0, 0)
			return ds.awaitItems(ctx, since, map[string]func(message.Event) bool{ds.storm[1]: named("report-final.txt")})
		}, why: func(evs []message.Event, _ []string) string {
			return ds.stepLine(evs, tapsBefore, deltaBefore) + ". The pass right after the tap found nothing new; a pass that finds nothing takes one more look a few seconds later, and that one found the rename"
		}},
	}
}

// awaitQuiet waits (at most a minute) until the worker has not read the drive's delta for quiet.
func (ds *driveStory) awaitQuiet(ctx context.Context, quiet time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for ctx.Err() == nil {
		last := time.Time{}
		for _, r := range ds.d.s.Graph.Requests() {
			if strings.HasPrefix(r.Path, "/v1.0/drives/") && r.Time.After(last) {
				last = r.Time
			}
		}
		if time.Since(last) >= quiet {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// changedOf lists what the events say changed.
func changedOf(evs []message.Event) string {
	var parts []string
	for _, e := range evs {
		if len(e.Changed) > 0 {
			parts = append(parts, fmt.Sprintf("%s changed %v", e.Object["name"], e.Changed))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "; " + strings.Join(parts, "; ")
}

// summary explains the drive story's counts.
func (ds *driveStory) summary(all []message.Event) {
	evs := ds.events(all)
	deleted := 0
	for _, e := range evs {
		if e.ChangeType == "deleted" {
			deleted++
		}
	}
	ds.d.say("  drive: taps from Graph                  %d (a tap names the drive, never the item; the storm sent %d for %d edits)", ds.taps(), stormFiles*stormTapsPer, stormFiles)
	ds.d.say("  drive: delta requests                   %d (%.3f per tap): taps collapse into passes, and a page holds up to 1,000 items", ds.deltaCalls(), float64(ds.deltaCalls())/float64(max(ds.taps(), 1)))
	ds.d.say("  drive: item events                      %d (%d deleted) for the story's %d changes (%.2f per change): the root and folders echoed for their contents are not events, and items the 410 enumeration re-read unchanged were suppressed",
		len(evs), deleted, ds.changes, float64(len(evs))/float64(max(ds.changes, 1)))
}
