package resync

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/checkpoint"
	"github.com/graphwebhooks/graph-webhooks-go/internal/directory"
	"github.com/graphwebhooks/graph-webhooks-go/internal/events"
	"github.com/graphwebhooks/graph-webhooks-go/internal/family"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

// directoryWalker walks the delta of a directory collection (/users/delta, /groups/delta). Groups are
// read with their members, so that membership changes arrive as members@delta.
type directoryWalker struct {
	r    *Runner
	kind directory.Kind
}

func newDirectoryWalker(r *Runner, e family.Entry) walker {
	k, _ := directory.ByCollection(e.Collection)
	return directoryWalker{r: r, kind: k}
}

func (w directoryWalker) scope() string             { return w.kind.Collection }
func (w directoryWalker) secondLook() time.Duration { return 0 }
func (w directoryWalker) selectSetting() string     { return w.kind.SelectSetting }

// deltaSelect is what a delta round selects: the configured properties, and for groups their members.
func (w directoryWalker) deltaSelect() []string {
	sel := w.r.cfg.Select(w.kind.Collection)
	if directory.IsGroup(w.kind) {
		sel = append(slices.Clone(sel), "members")
	}
	return sel
}

func (w directoryWalker) start(ctx context.Context, g Graph, latest bool) (graph.DeltaPage, error) {
	return g.DeltaStart(ctx, w.kind.Collection, w.deltaSelect(), latest)
}

func (w directoryWalker) next(ctx context.Context, g Graph, link string) (graph.DeltaPage, error) {
	return g.Delta(ctx, link)
}

// MaxMembersPerEvent bounds the member ids one event carries, so that an event stays far below a queue
// message's 64 KiB; a larger membership change is split over several events with the same properties.
const MaxMembersPerEvent = 1000

// maxCarryMembers bounds the member ids carried from one page to the next in the checkpoint: a group whose
// change is larger is reported in parts instead.
const maxCarryMembers = 10000

// entry is where one object of the page stands.
type entry struct {
	id      string
	obj     graph.Object // from delta, then from $batch
	removed string       // "", "changed" (soft-deleted) or "deleted"
	members *message.Members
	read    *directory.Read
	last    int // index of the last occurrence in the page (-1: carried from the previous page)
}

// page turns a delta page into events: one per object (a large membership change in parts), the
// entries of an object merged in page order. When more pages follow, a group that ends the page may go on
// at the start of the next one: it is returned as the carry instead, and reported where it ends.
func (w directoryWalker) page(ctx context.Context, log *slog.Logger, g Graph, in pageInput) ([]events.Item, *checkpoint.Carry, error) {
	dp := &directoryPage{w: w, log: log, in: in, sel: w.r.cfg.Select(w.kind.Collection), byID: map[string]*entry{}}
	dp.collect()
	next := dp.carryOver()
	if err := dp.readMissing(ctx, g); err != nil {
		return nil, nil, err
	}
	return dp.items(), next, nil
}

// directoryPage is one delta page of a directory collection on its way to events.
type directoryPage struct {
	w       directoryWalker
	log     *slog.Logger
	in      pageInput
	sel     []string
	byID    map[string]*entry // lower-cased id → entry
	entries []*entry          // in order of their last occurrence
}

// collect merges the page's entries per object (after the part carried from the page before), skipping
// ids that are not GUIDs and objects GRAPH_RESOURCE does not name.
func (dp *directoryPage) collect() {
	if c := dp.in.carry; c != nil {
		e := &entry{id: c.ID, obj: graph.Object(c.Object), last: -1}
		if len(c.Added)+len(c.Removed) > 0 {
			e.members = &message.Members{Added: c.Added, Removed: c.Removed}
		}
		dp.byID[strings.ToLower(c.ID)] = e
		dp.entries = append(dp.entries, e)
	}
	only := dp.w.r.cfg.Only(dp.w.kind.Collection)
	skipped := 0
	for i, o := range dp.in.objects {
		id := o.ID()
		if !graph.IsGUID(id) {
			skipped++
			continue
		}
		k := strings.ToLower(id)
		if only != nil && !only[k] {
			continue
		}
		e := dp.byID[k]
		if e == nil {
			e = &entry{id: id}
			dp.byID[k] = e
			dp.entries = append(dp.entries, e)
		}
		e.add(i, o, directory.IsGroup(dp.w.kind))
	}
	if skipped > 0 {
		dp.log.Warn("resync: delta entries whose id is not an object id (a GUID) were skipped", "count", skipped)
	}
	slices.SortFunc(dp.entries, func(a, b *entry) int { return a.last - b.last })
}

// add merges the delta entry at index i into e: a removal replaces what came before, a later entry adds
// to and overrides an earlier one, and a group's members@delta parts are merged.
func (e *entry) add(i int, o graph.Object, group bool) {
	e.last = i
	if o.Removed() != "" {
		e.obj, e.removed = o, o.Removed()
		return
	}
	if e.removed != "" || e.obj == nil {
		e.obj, e.removed = graph.Object{}, ""
	}
	maps.Copy(e.obj, o)
	if group {
		e.members = directory.MergeMembers(e.members, directory.MembersDelta(o["members@delta"]))
	}
}

// carryOver takes the group that ends the page out of it when more pages follow: its members@delta may go
// on at the start of the next page.
func (dp *directoryPage) carryOver() *checkpoint.Carry {
	if !dp.in.more || !directory.IsGroup(dp.w.kind) || len(dp.entries) == 0 {
		return nil
	}
	e := dp.entries[len(dp.entries)-1]
	if e.removed != "" || e.last < 0 || e.last != len(dp.in.objects)-1 || membersCount(e.members) > maxCarryMembers {
		return nil
	}
	next := &checkpoint.Carry{ID: e.id, Object: e.obj}
	if e.members != nil {
		next.Added, next.Removed = e.members.Added, e.members.Removed
	}
	dp.entries = dp.entries[:len(dp.entries)-1]
	return next
}

// readMissing reads in full the objects whose entry lacks selected properties, and looks soft-deleted ones
// up in deletedItems for their properties. A read to be tried again retries the page; every read refused
// is a bad setting or permission.
func (dp *directoryPage) readMissing(ctx context.Context, g Graph) error {
	var reqs []directory.Request
	var asked []*entry
	for _, e := range dp.entries {
		switch {
		case e.removed == "changed":
			reqs = append(reqs, directory.Request{ID: e.id, Probe: directory.DeletedOnly})
		case e.removed == "" && !complete(e.obj, dp.sel):
			reqs = append(reqs, directory.Request{ID: e.id, Probe: directory.Live})
		default:
			continue
		}
		asked = append(asked, e)
	}
	if len(reqs) == 0 {
		return nil
	}
	kind := dp.w.kind
	reader := &directory.Reader{Graph: g, Gate: dp.w.r.gate, Now: dp.w.r.now}
	reads, err := reader.Read(ctx, kind, dp.sel, reqs)
	if err != nil {
		return err
	}
	var refusals directory.Refusals
	refusals.Add(reads...)
	var retry *graph.Error
	for i := range reads {
		rd := &reads[i]
		asked[i].read = rd
		if !rd.Outcome.Retryable() {
			continue
		}
		k := graph.KindTransient
		if rd.Outcome != directory.Transient {
			k = graph.KindThrottled
		}
		if retry == nil || rd.RetryAfter > retry.RetryAfter || k == graph.KindThrottled && retry.Kind != k {
			retry = &graph.Error{Op: "read " + kind.Collection, Kind: k, RetryAfter: rd.RetryAfter, Err: rd.Err}
		}
	}
	if retry != nil {
		return retry
	}
	if refusals.All() {
		return fmt.Errorf("resync: Graph refused to read all %d %s: %w", refusals.Refused, kind.Collection, refusals.First)
	}
	return nil
}

// items makes the events: one per object, a large membership change in parts.
func (dp *directoryPage) items() []events.Item {
	now := dp.w.r.now()
	item := func(c directory.Change) events.Item {
		return events.Item{Event: directory.NewEvent(dp.w.r.cfg.TenantID, dp.sel, c, now), ReadAt: now, Select: dp.sel}
	}
	out := make([]events.Item, 0, len(dp.entries))
	for _, e := range dp.entries {
		c := dp.change(e)
		if c.ChangeType == graph.Deleted || e.members == nil {
			out = append(out, item(c))
			continue
		}
		for i, part := range splitMembers(e.members, MaxMembersPerEvent) {
			pc := c
			pc.Members = part
			if i > 0 {
				pc.Origin = append(slices.Clone(c.Origin), "part", strconv.Itoa(i))
			}
			out = append(out, item(pc))
		}
	}
	return out
}

// change is what an entry and its read (directory.Read.Verdict) say happened to the object.
func (dp *directoryPage) change(e *entry) directory.Change {
	c := directory.Change{Kind: dp.w.kind, ID: e.id, Source: dp.in.source, ChangeType: graph.Updated, Object: e.obj,
		Origin: []string{"resync", dp.in.passID, dp.in.link}}
	rd := e.read
	var v directory.Verdict
	settled := false
	if rd != nil {
		v, settled = rd.Verdict()
	}
	switch {
	case e.removed == "changed":
		c.ChangeType, c.SoftDeleted, c.Object = graph.Deleted, true, nil
		if rd != nil && rd.Outcome == directory.SoftDeleted {
			c.Object = rd.Object
		} else if rd != nil && rd.Outcome == directory.Refused {
			dp.log.Warn("resync: could not read a deleted object's properties; its event carries none", "id", e.id, "err", rd.Err)
		}
	case e.removed != "":
		c.ChangeType, c.Object = graph.Deleted, nil
	case rd == nil:
	case settled && rd.Outcome != directory.Gone: // found live, or soft-deleted since the round was taken
		c.ChangeType, c.SoftDeleted, c.Object = v.ChangeType, v.SoftDeleted, v.Object
	case rd.Outcome == directory.Gone:
		// Readable neither live nor in deletedItems: a new object still replicating, or one deleted for good
		// since the round. Report what delta returned, not a deletion that may be false; a real deletion
		// comes back in the next round as @removed.
		dp.log.Info("resync: object not readable now; reporting the properties delta returned", "id", e.id)
	default: // refused: this object alone; the others of the page go on
		dp.log.Warn("resync: Graph refused to read an object; reporting the properties delta returned", "id", e.id, "err", rd.Err)
	}
	return c
}

func membersCount(m *message.Members) int {
	if m == nil {
		return 0
	}
	return len(m.Added) + len(m.Removed)
}

// splitMembers cuts a membership change into parts of at most n ids (added first, then removed).
func splitMembers(m *message.Members, n int) []*message.Members {
	var parts []*message.Members
	cur := &message.Members{Added: []string{}, Removed: []string{}}
	size := 0
	flush := func() {
		parts = append(parts, cur)
		cur, size = &message.Members{Added: []string{}, Removed: []string{}}, 0
	}
	for _, id := range m.Added {
		if size == n {
			flush()
		}
		cur.Added = append(cur.Added, id)
		size++
	}
	for _, id := range m.Removed {
		if size == n {
			flush()
		}
		cur.Removed = append(cur.Removed, id)
		size++
	}
	return append(parts, cur)
}
