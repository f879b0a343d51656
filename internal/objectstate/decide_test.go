package objectstate

import (
	"encoding/json"
	"errors"
	"github.com/graphwebhooks/graph-webhooks-go/internal/testclock"
	"reflect"
	"strings"
	"testing"
	"time"
)

var (
	t0       = testclock.Date(2026, 12, 1, 10, 0, 0)
	userSel  = []string{"id", "displayName", "jobTitle", "department"}
	adeleID  = "6E1F5A2B-0000-4000-8000-000000000001"
	adeleRow = strings.ToLower(adeleID)
)

func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

func upd(props map[string]any, readAt time.Time) Observation {
	return Observation{Collection: "users", ID: adeleID, Properties: props, Select: userSel, ReadAt: readAt, ChangeType: Updated}
}

func adele(jobTitle string) map[string]any {
	return map[string]any{"id": adeleID, "displayName": "Adele Vance", "jobTitle": jobTitle, "department": "R&D"}
}

// run decides obs in order, each against the row the one before left, as Store.Decide does.
func run(t *testing.T, mode Mode, obs ...Observation) ([]Decision, *Record) {
	t.Helper()
	var row *Record
	var out []Decision
	for _, o := range obs {
		d, err := Decide(row, o, mode)
		if err != nil {
			t.Fatalf("Decide(%+v): %v", o, err)
		}
		if d.Write {
			row = d.Row
		}
		out = append(out, d)
	}
	return out, row
}

func TestSameStateTwiceEmitsOnce(t *testing.T) {
	ds, row := run(t, Suppress, upd(adele("Engineer"), at(0)), upd(adele("Engineer"), at(5)))
	if !ds[0].Emit || ds[0].Reason != ReasonNew || ds[0].Changed != nil || ds[0].Previous != nil {
		t.Errorf("first = %+v, want emitted as new without changed/previous", ds[0])
	}
	if ds[1].Emit || ds[1].Reason != ReasonUnchanged {
		t.Errorf("second = emit %v reason %s, want suppressed as unchanged", ds[1].Emit, ds[1].Reason)
	}
	// The row's readAt moves forward, so that a read from in between arriving late counts as older.
	if !ds[1].Write || !row.ReadAt.Equal(at(5)) {
		t.Errorf("row after an unchanged read: write %v readAt %v, want the newer readAt stored", ds[1].Write, row.ReadAt)
	}
}

func TestEmitModeEmitsEverythingWithChanges(t *testing.T) {
	ds, _ := run(t, Emit, upd(adele("Engineer"), at(0)), upd(adele("Engineer"), at(5)), upd(adele("Lead"), at(1)))
	for i, d := range ds {
		if !d.Emit {
			t.Errorf("decision %d (%s) suppressed under emit", i, d.Reason)
		}
	}
	if ds[1].Reason != ReasonUnchanged || ds[1].Changed == nil || len(ds[1].Changed) != 0 {
		t.Errorf("unchanged under emit: reason %s changed %#v, want unchanged with an empty list", ds[1].Reason, ds[1].Changed)
	}
	if ds[2].Reason != ReasonOlder || ds[2].Write {
		t.Errorf("older under emit: reason %s write %v, want older and no write", ds[2].Reason, ds[2].Write)
	}
}

func TestJobTitleChange(t *testing.T) {
	ds, row := run(t, Suppress, upd(adele("Engineer"), at(0)), upd(adele("Lead Engineer"), at(10)))
	d := ds[1]
	if !d.Emit || d.Reason != ReasonChanged {
		t.Fatalf("got emit %v reason %s, want emitted as changed", d.Emit, d.Reason)
	}
	if !reflect.DeepEqual(d.Changed, []string{"jobTitle"}) {
		t.Errorf("changed = %v, want [jobTitle]", d.Changed)
	}
	if !reflect.DeepEqual(d.Previous, map[string]any{"jobTitle": "Engineer"}) {
		t.Errorf("previous = %v, want jobTitle: Engineer", d.Previous)
	}
	var state map[string]any
	if err := json.Unmarshal(row.State, &state); err != nil || state["jobTitle"] != "Lead Engineer" {
		t.Errorf("stored state = %s (%v), want the new jobTitle", row.State, err)
	}
}

func TestOlderReadAfterNewerIsSuppressed(t *testing.T) {
	ds, row := run(t, Suppress, upd(adele("Engineer"), at(0)), upd(adele("Lead"), at(20)), upd(adele("Manager"), at(10)))
	if ds[2].Emit || ds[2].Reason != ReasonOlder || ds[2].Write {
		t.Errorf("older read: emit %v reason %s write %v, want suppressed, no write", ds[2].Emit, ds[2].Reason, ds[2].Write)
	}
	if !row.ReadAt.Equal(at(20)) || !strings.Contains(string(row.State), `"Lead"`) {
		t.Errorf("row moved back: %+v", row)
	}
}

func TestReadFromBetweenAnUnchangedReadIsOlder(t *testing.T) {
	// Engineer at 0, Manager at 5, Engineer again at 10. The read at 10 arrives before the one at 5:
	// it is suppressed (unchanged), and the late read at 5 must not become the last state.
	ds, row := run(t, Suppress, upd(adele("Engineer"), at(0)), upd(adele("Engineer"), at(10)), upd(adele("Manager"), at(5)))
	if ds[2].Emit || ds[2].Reason != ReasonOlder {
		t.Errorf("late read from between: emit %v reason %s, want suppressed as older", ds[2].Emit, ds[2].Reason)
	}
	if strings.Contains(string(row.State), "Manager") {
		t.Errorf("row holds the late read: %s", row.State)
	}
}

func TestPermanentDeleteEndsTheRow(t *testing.T) {
	del := Observation{Collection: "users", ID: adeleID, Select: userSel, ReadAt: at(1), ChangeType: Deleted}
	for name, before := range map[string][]Observation{
		"after an update":         {upd(adele("Engineer"), at(0))},
		"after a newer update":    {upd(adele("Engineer"), at(30))},
		"after a soft delete":     {{Collection: "users", ID: adeleID, Select: userSel, ReadAt: at(0), ChangeType: Deleted, SoftDeleted: true}},
		"with nothing stored":     nil,
		"after a permanent one":   {{Collection: "users", ID: adeleID, Select: userSel, ReadAt: at(0), ChangeType: Deleted}},
		"after an unchanged pair": {upd(adele("Engineer"), at(0)), upd(adele("Engineer"), at(0))},
	} {
		t.Run(name, func(t *testing.T) {
			ds, row := run(t, Suppress, append(before, del)...)
			d := ds[len(ds)-1]
			if !d.Emit || d.Reason != ReasonDeleted || d.Row != nil {
				t.Errorf("delete: emit %v reason %s row %+v, want emitted and no row", d.Emit, d.Reason, d.Row)
			}
			if len(before) > 0 && before[len(before)-1].ChangeType == Updated && (!d.Write || row != nil) {
				t.Errorf("delete after a stored row: write %v, row %+v; want the row deleted", d.Write, row)
			}
		})
	}
}

func TestSoftDeleteKeepsTheRowAndRestoreIsEmitted(t *testing.T) {
	soft := Observation{Collection: "users", ID: adeleID, Select: userSel, ReadAt: at(10), ChangeType: Deleted, SoftDeleted: true}
	ds, row := run(t, Suppress, upd(adele("Engineer"), at(0)), soft)
	if !ds[1].Emit || ds[1].Reason != ReasonDeleted || !ds[1].Write || row == nil || !row.SoftDeleted {
		t.Fatalf("soft delete: %+v, row %+v; want emitted, row kept and marked", ds[1], row)
	}
	if !strings.Contains(string(row.State), "Engineer") || !row.ReadAt.Equal(at(10)) {
		t.Errorf("soft-deleted row lost its last state or readAt: %+v", row)
	}

	// The same state restored is still news: the object is back.
	ds, row = run(t, Suppress, upd(adele("Engineer"), at(0)), soft, upd(adele("Engineer"), at(20)))
	d := ds[2]
	if !d.Emit || d.Reason != ReasonRestored || row.SoftDeleted {
		t.Errorf("restore: emit %v reason %s, row soft-deleted %v; want emitted as restored, mark cleared", d.Emit, d.Reason, row.SoftDeleted)
	}
	if d.Changed == nil || len(d.Changed) != 0 {
		t.Errorf("restore with the same properties: changed %#v, want an empty list", d.Changed)
	}

	// A restore read before the soft delete is older: suppressed.
	ds, _ = run(t, Suppress, upd(adele("Engineer"), at(0)), soft, upd(adele("Engineer"), at(5)))
	if ds[2].Emit || ds[2].Reason != ReasonOlder {
		t.Errorf("update read before the soft delete: emit %v reason %s, want suppressed as older", ds[2].Emit, ds[2].Reason)
	}

	// A soft delete learnt late is still emitted, but does not mark a newer row.
	late := soft
	late.ReadAt = at(-5)
	ds, row = run(t, Suppress, upd(adele("Engineer"), at(0)), late)
	if !ds[1].Emit || ds[1].Write || row.SoftDeleted {
		t.Errorf("late soft delete: emit %v write %v marked %v; want emitted, row untouched", ds[1].Emit, ds[1].Write, row.SoftDeleted)
	}
}

func TestSoftDeleteWithPropertiesComparesThem(t *testing.T) {
	soft := upd(adele("Former"), at(10))
	soft.ChangeType, soft.SoftDeleted = Deleted, true
	ds, row := run(t, Suppress, upd(adele("Engineer"), at(0)), soft)
	if !reflect.DeepEqual(ds[1].Changed, []string{"jobTitle"}) || !strings.Contains(string(row.State), "Former") || !row.SoftDeleted {
		t.Errorf("soft delete with properties: changed %v, row %+v", ds[1].Changed, row)
	}
}

func TestSelectChangeStartsOver(t *testing.T) {
	wider := upd(adele("Lead"), at(10))
	wider.Properties["mail"] = "adele@contoso.com"
	wider.Select = append([]string{"mail"}, userSel...)
	ds, row := run(t, Suppress, upd(adele("Engineer"), at(0)), wider)
	d := ds[1]
	if !d.Emit || d.Reason != ReasonSelectChanged || d.Changed != nil || d.Previous != nil {
		t.Errorf("select changed: %+v; want emitted without changed/previous", d)
	}
	if row.SelectHash == "" || !strings.Contains(string(row.State), "adele@contoso.com") {
		t.Errorf("row not replaced: %+v", row)
	}
	// The same select in another order and case is the same select.
	reordered := upd(adele("Engineer"), at(20))
	reordered.Select = []string{"JOBTITLE", "department", "displayName", "id"}
	ds, _ = run(t, Suppress, upd(adele("Engineer"), at(0)), reordered)
	if ds[1].Emit {
		t.Errorf("select reordered: %s, want unchanged", ds[1].Reason)
	}
}

func TestValuesCompareAsJSON(t *testing.T) {
	base := map[string]any{
		"id": adeleID, "count": json.Number("1"), "big": json.Number("638700000000000001"),
		"nested": map[string]any{"a": []any{1, "x", nil}, "b": map[string]any{"c": true, "d": nil}},
		"gone":   nil,
	}
	same := map[string]any{
		"big": json.Number("638700000000000001"), "count": 1.0, "id": adeleID,
		"nested": map[string]any{"b": map[string]any{"c": true}, "a": []any{json.Number("1.0"), "x", nil}},
	}
	ds, _ := run(t, Suppress, upd(base, at(0)), upd(same, at(1)))
	if ds[1].Emit {
		t.Fatalf("semantically equal state emitted: changed %v", ds[1].Changed)
	}
	for name, c := range map[string]struct {
		change  func(m map[string]any)
		changed string
		prev    any
	}{
		"big integer beyond 2^53": {func(m map[string]any) { m["big"] = json.Number("638700000000000002") }, "big", json.Number("638700000000000001")},
		"array order": {func(m map[string]any) {
			m["nested"] = map[string]any{"a": []any{"x", 1, nil}, "b": map[string]any{"c": true}}
		}, "nested", nil},
		"null became a value": {func(m map[string]any) { m["gone"] = "here" }, "gone", nil},
		"value became null":   {func(m map[string]any) { m["count"] = nil }, "count", json.Number("1")},
		"value removed":       {func(m map[string]any) { delete(m, "count") }, "count", json.Number("1")},
	} {
		t.Run(name, func(t *testing.T) {
			next := map[string]any{}
			for k, v := range same {
				next[k] = v
			}
			c.change(next)
			ds, _ := run(t, Suppress, upd(base, at(0)), upd(next, at(1)))
			d := ds[1]
			if !d.Emit || !reflect.DeepEqual(d.Changed, []string{c.changed}) {
				t.Fatalf("emit %v changed %v, want [%s]", d.Emit, d.Changed, c.changed)
			}
			if c.prev != nil && !reflect.DeepEqual(d.Previous[c.changed], c.prev) {
				t.Errorf("previous[%s] = %#v, want %#v", c.changed, d.Previous[c.changed], c.prev)
			}
			if _, ok := d.Previous[c.changed]; !ok {
				t.Errorf("previous lacks %s", c.changed)
			}
		})
	}
}

func TestAnnotationsAreNotState(t *testing.T) {
	group := map[string]any{"id": adeleID, "displayName": "Sales"}
	withDelta := map[string]any{"id": adeleID, "displayName": "Sales", "@odata.type": "#microsoft.graph.group",
		"members@delta": []any{map[string]any{"id": "x"}}}
	o1, o2 := upd(group, at(0)), upd(withDelta, at(1))
	o1.Collection, o2.Collection = "groups", "groups"
	ds, _ := run(t, Suppress, o1, o2)
	if ds[1].Emit {
		t.Errorf("a members delta alone made the state change: %v", ds[1].Changed)
	}
}

func TestBigStateKeepsOnlyItsHash(t *testing.T) {
	big := adele("Engineer")
	big["aboutMe"] = strings.Repeat("é", MaxStateBytes/2)
	ds, row := run(t, Suppress, upd(big, at(0)))
	if row.State != nil || row.StateHash == "" || !ds[0].Emit {
		t.Fatalf("big state: kept %d bytes, hash %q", len(row.State), row.StateHash)
	}
	same := adele("Engineer")
	same["aboutMe"] = big["aboutMe"]
	ds, _ = run(t, Suppress, upd(big, at(0)), upd(same, at(1)))
	if ds[1].Emit {
		t.Errorf("equal big state emitted: %s", ds[1].Reason)
	}
	ds, _ = run(t, Suppress, upd(big, at(0)), upd(adele("Lead"), at(1)))
	if !ds[1].Emit || ds[1].Reason != ReasonChanged || ds[1].Changed != nil || ds[1].Previous != nil {
		t.Errorf("change after a big state: %+v; want emitted without changed/previous (the old values are not kept)", ds[1])
	}
}

func TestInvalidObservations(t *testing.T) {
	good := upd(adele("Engineer"), at(0))
	for name, change := range map[string]func(o *Observation){
		"empty id":            func(o *Observation) { o.ID = "" },
		"id with a slash":     func(o *Observation) { o.ID = "a/b" },
		"id with a control":   func(o *Observation) { o.ID = "a\x00b" },
		"empty collection":    func(o *Observation) { o.Collection = "" },
		"no readAt":           func(o *Observation) { o.ReadAt = time.Time{} },
		"unknown change":      func(o *Observation) { o.ChangeType = "created" },
		"update without read": func(o *Observation) { o.Properties = nil },
		"soft update":         func(o *Observation) { o.SoftDeleted = true },
		"not JSON":            func(o *Observation) { o.Properties = map[string]any{"f": func() {}} },
	} {
		t.Run(name, func(t *testing.T) {
			o := good
			o.Properties = adele("Engineer")
			change(&o)
			if _, err := Decide(nil, o, Suppress); !errors.Is(err, ErrInvalid) {
				t.Errorf("err = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestRowKeyIsLowerCase(t *testing.T) {
	_, row := run(t, Suppress, upd(adele("Engineer"), at(0)))
	if row.ID != adeleRow || row.Collection != "users" {
		t.Errorf("row key = %s/%s, want users/%s", row.Collection, row.ID, adeleRow)
	}
}

func TestCanonical(t *testing.T) {
	got, err := Canonical(map[string]any{"b": json.Number("1e2"), "a": []any{json.Number("0.50"), nil}, "c": nil, "x@y": 1})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"a":[0.5,null],"b":100}`; string(got) != want {
		t.Errorf("Canonical = %s, want %s", got, want)
	}
}

func TestSoftDeleteOfAnUnknownObject(t *testing.T) {
	soft := Observation{Collection: "users", ID: adeleID, Select: userSel, ReadAt: at(0), ChangeType: Deleted, SoftDeleted: true}
	ds, row := run(t, Suppress, soft, upd(adele("Engineer"), at(5)))
	if !ds[0].Emit || !ds[0].Write || row == nil {
		t.Fatalf("soft delete with nothing stored: %+v", ds[0])
	}
	if d := ds[1]; !d.Emit || d.Reason != ReasonRestored || d.Changed != nil || d.Previous != nil {
		t.Errorf("restore of an object whose state was never known: %+v; want emitted without changed/previous", d)
	}
}
