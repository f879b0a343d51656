package resync

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/checkpoint"
	"github.com/graphwebhooks/graph-webhooks-go/internal/events"
	"github.com/graphwebhooks/graph-webhooks-go/internal/family"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
)

// DriveGraph is what a drive's passes need of the Graph client (*graph.Client) beyond Graph: a delta
// round over one drive.
type DriveGraph interface {
	DriveDeltaStart(ctx context.Context, driveID string, sel []string, latest bool) (graph.DeltaPage, error)
}

// SecondLook is how long after a drive pass that found nothing new one more pass looks again: delta can
// lag the notification by seconds (docs/graph-facts.md §10.1), so a tap whose pass saw nothing may be
// about a change delta shows a moment later.
const SecondLook = 10 * time.Second

// driveFacets are read on every drive delta whatever GRAPH_DRIVEITEM_SELECT says: they tell a deleted
// item, the root and a folder apart, and a folder created since the last pass from an older one.
var driveFacets = []string{"deleted", "root", "folder", "createdDateTime"}

// createdSkew widens the window in which a folder counts as created since the last pass: Graph's clock and
// this machine's may differ.
const createdSkew = 5 * time.Minute

// folderDerived are the properties of a folder that change whenever something inside it changes (its
// size, its modification time and author, its tags, its child count). A folder's state leaves them out, so
// that a folder is an event only when its own properties change: created, renamed, moved or deleted.
var folderDerived = []string{"size", "lastModifiedDateTime", "lastModifiedBy", "eTag", "cTag"}

// driveWalker walks the delta of one drive (/drives/{drive-id}/root/delta), a tap's pass and a gap's alike.
// Each page becomes one event per changed item; no item is read on its own.
type driveWalker struct {
	r     *Runner
	drive string // the drive id, checked against its grammar
}

func newDriveWalker(r *Runner, e family.Entry) walker { return driveWalker{r: r, drive: e.ID} }

func (w driveWalker) scope() string         { return "drives/" + w.drive }
func (w driveWalker) selectSetting() string { return family.DriveItems.SelectSetting }
func (w driveWalker) secondLook() time.Duration {
	return w.r.SecondLook
}

func (w driveWalker) deltaSelect() []string {
	sel := slices.Clone(w.r.cfg.Select(family.DriveItems.Collection))
	for _, f := range driveFacets {
		if !slices.ContainsFunc(sel, func(p string) bool { return strings.EqualFold(p, f) }) {
			sel = append(sel, f)
		}
	}
	return sel
}

func (w driveWalker) start(ctx context.Context, g Graph, latest bool) (graph.DeltaPage, error) {
	dg, ok := g.(DriveGraph)
	if !ok {
		return graph.DeltaPage{}, errors.New("resync: the Graph client reads no drive delta")
	}
	return dg.DriveDeltaStart(ctx, w.drive, w.deltaSelect(), latest)
}

func (w driveWalker) next(ctx context.Context, g Graph, link string) (graph.DeltaPage, error) {
	return g.Delta(ctx, link)
}

// page makes one event per item of the page (the last entry of an item wins): deleted for the deleted
// facet, updated otherwise with the item's selected properties, a folder's without folderDerived. The root
// is never an event; a folder Graph echoes because something inside it changed is one only when change
// detection finds its own properties changed, and one never seen before only when it was created since the
// last pass (otherwise its state is recorded quietly). Items whose id is off the grammar are skipped with a
// warning.
func (w driveWalker) page(ctx context.Context, log *slog.Logger, _ Graph, in pageInput) ([]events.Item, *checkpoint.Carry, error) {
	sel := w.r.cfg.Select(family.DriveItems.Collection)
	latest := map[string]graph.Object{}
	var order []string
	skipped := 0
	for _, o := range in.objects {
		id := o.ID()
		if !family.IsDriveID(id) {
			skipped++
			continue
		}
		if _, isRoot := o["root"]; isRoot {
			continue
		}
		if _, seen := latest[id]; !seen {
			order = append(order, id)
		}
		latest[id] = o
	}
	if skipped > 0 {
		log.Warn("resync: drive items whose id is off the drive item grammar were skipped", "count", skipped)
	}
	now := w.r.now()
	out := make([]events.Item, 0, len(order))
	for _, id := range order {
		o := latest[id]
		c := family.Change{Kind: family.DriveItems, ID: id, Source: in.source, ChangeType: graph.Updated,
			Context: map[string]string{family.DriveContext: w.drive}, Origin: []string{"resync", in.passID, in.link}}
		quiet := false
		if _, deleted := o["deleted"]; deleted {
			c.ChangeType = graph.Deleted
		} else {
			c.Object = ownState(o)
			quiet = isFolder(o) && !in.since.IsZero() && !createdAfter(o, in.since.Add(-createdSkew))
		}
		out = append(out, events.Item{Event: family.NewEvent(w.r.cfg.TenantID, sel, c, now), ReadAt: now, Select: sel,
			QuietIfNew: quiet, StateID: w.drive + ":" + id})
	}
	return out, nil, nil
}

func isFolder(o graph.Object) bool {
	_, ok := o["folder"]
	return ok
}

// createdAfter reports whether Graph says the item was created after t (false when it does not say).
func createdAfter(o graph.Object, t time.Time) bool {
	s, _ := o["createdDateTime"].(string)
	c, err := time.Parse(time.RFC3339Nano, s)
	return err == nil && c.After(t)
}

// ownState is what an item's event carries and its change detection compares: a file as Graph returned
// it; a folder without the properties its contents change (folderDerived, and the folder facet's
// childCount).
func ownState(o graph.Object) graph.Object {
	folder, ok := o["folder"]
	if !ok {
		return o
	}
	own := maps.Clone(o)
	for _, p := range folderDerived {
		delete(own, p)
	}
	if f, ok := folder.(map[string]any); ok {
		f = maps.Clone(f)
		delete(f, "childCount")
		own["folder"] = f
	}
	return own
}
