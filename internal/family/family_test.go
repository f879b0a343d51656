package family

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

const guid = "6e1f0001-7c3a-4b2d-9e8f-0a1b2c3d4e5f"

// Every entry of the table is complete, and no two families claim one collection or one kind.
func TestTableIsComplete(t *testing.T) {
	collections, kinds, settings := map[string]Name{}, map[string]Name{}, map[string]Name{}
	for _, f := range Families {
		if f.Name == "" || f.Parse == nil || f.Plan == nil || f.Route == nil || f.Permission == "" || f.Entries == "" ||
			len(f.Collections) == 0 || len(f.Kinds) == 0 || f.Limits.MaxLifetime <= 0 || len(f.Limits.ChangeTypes) == 0 {
			t.Errorf("family %q is incomplete: %+v", f.Name, f)
		}
		for _, c := range f.Collections {
			if other, dup := collections[c]; dup {
				t.Errorf("collection %q claimed by %s and %s", c, other, f.Name)
			}
			collections[c] = f.Name
		}
		for _, k := range f.Kinds {
			if k.Collection == "" || k.EventField == "" || k.SelectSetting == "" || !strings.HasPrefix(k.DefaultSelect, "id,") {
				t.Errorf("kind %+v of %s is incomplete (its default select starts with id)", k, f.Name)
			}
			if other, dup := kinds[k.Collection]; dup {
				t.Errorf("kind %q claimed by %s and %s", k.Collection, other, f.Name)
			}
			if other, dup := settings[k.SelectSetting]; dup {
				t.Errorf("select setting %s used by %s and %s", k.SelectSetting, other, f.Name)
			}
			kinds[k.Collection], settings[k.SelectSetting] = f.Name, f.Name
		}
	}
}

// A plan never asks Graph for more than the family allows, nor for a change type Graph refuses.
func TestPlansStayWithinGraphsLimits(t *testing.T) {
	for _, entry := range []string{"users", "groups", "users/" + guid, "groups/" + guid, "drives/b!abc_-1"} {
		e, f, err := ParseEntry(entry)
		if err != nil {
			t.Fatalf("%s: %v", entry, err)
		}
		p := f.Plan(e, []string{"deleted", "updated"})
		if p.Lifetime <= 0 || p.Lifetime > f.Limits.MaxLifetime-time.Minute {
			t.Errorf("%s: lifetime %s, Graph's maximum %s", entry, p.Lifetime, f.Limits.MaxLifetime)
		}
		for _, ct := range p.ChangeTypes {
			if !slices.Contains(f.Limits.ChangeTypes, graph.ChangeType(ct)) {
				t.Errorf("%s: change type %s, which Graph refuses for %s", entry, ct, f.Name)
			}
		}
		if p.Scope == "" || p.Permission == "" || !strings.HasPrefix(p.Resource, e.Path()) {
			t.Errorf("%s: plan %+v", entry, p)
		}
		if got, _, ok := FamilyOfScope(p.Scope); !ok || got != f {
			t.Errorf("%s: scope %q does not lead back to its family", entry, p.Scope)
		}
	}
}

func TestParseEntry(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Entry
	}{
		{"users", Entry{Collection: "users"}},
		{"/Groups/", Entry{Collection: "groups"}},
		{"users/" + strings.ToUpper(guid), Entry{Collection: "users", ID: guid}},
	} {
		got, _, err := ParseEntry(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseEntry(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"devices", "users/adele@contoso.com", "users/delta", "", "sites/x"} {
		if _, _, err := ParseEntry(bad); err == nil {
			t.Errorf("ParseEntry(%q) accepted it", bad)
		}
	}
}

func TestRouteDirectory(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    graph.ChangeNotification
		kind Kind
		ok   bool
		err  bool
	}{
		{"user by resource", graph.ChangeNotification{Resource: "Users/" + guid}, Users, true, false},
		{"group by resource, any case", graph.ChangeNotification{Resource: "/GROUPS/" + guid}, Groups, true, false},
		{"by @odata.type", graph.ChangeNotification{Resource: "", ResourceData: &graph.ResourceData{ODataType: "#Microsoft.Graph.Group", ID: guid}}, Groups, true, false},
		{"a UPN where the id goes", graph.ChangeNotification{Resource: "Users/adele@contoso.com"}, Users, true, true},
		{"below an object: not the directory's", graph.ChangeNotification{Resource: "Users/" + guid + "/Messages/AAMk=", ResourceData: &graph.ResourceData{ODataType: "#Microsoft.Graph.Message", ID: "AAMk="}}, Kind{}, false, false},
		{"another collection", graph.ChangeNotification{Resource: "devices/" + guid}, Kind{}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := Directory.Route(&tc.n)
			got.Family = &Directory
			if ok != tc.ok || (err != nil) != tc.err {
				t.Fatalf("Route = %+v, %v, %v", got, ok, err)
			}
			if ok && !tc.err && (got.Kind != tc.kind || got.Family != &Directory || got.ID == "" || got.Scope != tc.kind.Collection) {
				t.Errorf("Route = %+v", got)
			}
		})
	}
}

// The webhook keeps what a family believes, and a GUID nobody claims (the worker sets it aside), and
// drops an id off its family's grammar.
func TestBelievable(t *testing.T) {
	keep := []graph.ChangeNotification{
		{Resource: "Users/" + guid},
		{Resource: "unknown/" + guid},
	}
	drop := []graph.ChangeNotification{
		{Resource: "Users/delta"},
		{Resource: "unknown/$count"},
	}
	for _, n := range keep {
		if !Believable(&n) {
			t.Errorf("%s dropped", n.Resource)
		}
	}
	for _, n := range drop {
		if Believable(&n) {
			t.Errorf("%s kept", n.Resource)
		}
	}
}

// An event's context is written beside the common fields and read back, and takes part in its id.
func TestEventContext(t *testing.T) {
	kind := Kind{Collection: "things", EventField: "thing"}
	c := Change{Kind: kind, ID: "A1", ChangeType: graph.Updated, Object: graph.Object{"id": "A1", "name": "x"},
		Context: map[string]string{"parentId": "p!1"}, Source: message.SourceResync, Origin: []string{"o"}}
	e := NewEvent("t", []string{"id", "name"}, c, time.Unix(0, 0))
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["parentId"] != "p!1" || m["thing"] == nil || m["resource"] != "things" {
		t.Errorf("event JSON: %s", b)
	}
	var back message.Event
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Field != "thing" || back.Context["parentId"] != "p!1" || back.Object["name"] != "x" {
		t.Errorf("read back: %+v", back)
	}
	other := c
	other.Context = map[string]string{"parentId": "p!2"}
	if EventID("t", c) == EventID("t", other) {
		t.Error("two contexts, one event id")
	}
	// Users and groups have no context: their ids are what they were before contexts existed.
	u := Change{Kind: Users, ID: guid, ChangeType: graph.Updated, Source: message.SourceNotification, Origin: []string{"o"}}
	if got, want := EventID("t", u), message.EventID("notification", "t", "users", guid, "updated", "false", "o"); got != want {
		t.Errorf("user event id %s, want %s", got, want)
	}
}

const drive = "b!-RIj2DuyvEyV1T4NlOaMHk8XkS_I8MdFlUCq1BlcjgmhRfAj3-Z8RY2VpuvV_tpd"

func TestDrives(t *testing.T) {
	e, f, err := ParseEntry("drives/" + drive)
	if err != nil || f != &Drives || e != (Entry{Collection: "drives", ID: drive}) {
		t.Fatalf("ParseEntry = %+v, %v, %v", e, f, err)
	}
	p := f.Plan(e, []string{"deleted", "updated"})
	if p.Resource != "drives/"+drive+"/root" || !slices.Equal(p.ChangeTypes, []string{"updated"}) || p.Lifetime > DriveMaxLifetime ||
		p.Lifetime < DriveMaxLifetime-2*time.Hour || p.Scope != "drives/"+drive || p.Permission != "Files.Read.All" {
		t.Errorf("plan %+v: want the root, updated only whatever GRAPH_CHANGE_TYPE says, Graph's lifetime", p)
	}
	for _, bad := range []string{"drives", "drives/b!x/root", "drives/../users", "drives/b!x%2F", "drives/b!x y"} {
		if _, _, err := ParseEntry(bad); err == nil {
			t.Errorf("ParseEntry(%q) accepted it", bad)
		}
	}
	for _, tc := range []struct {
		resource string
		ok, bad  bool
	}{
		{"drives/" + drive + "/root", true, false},
		{"/Drives/" + drive + "/Root/", true, false},
		{"drives/" + drive + "/items/01BYE5RZ", true, true},
		{"drives/b!x%2F../root", true, true},
	} {
		n := graph.ChangeNotification{Resource: tc.resource, ResourceData: &graph.ResourceData{ID: "not relied on"}}
		tg, ok, err := Route(&n)
		if (ok && err == nil && tg.Family != &Drives) || (tc.ok && !ok) || (err != nil) != tc.bad {
			t.Errorf("Route(%s) = %+v, %v, %v", tc.resource, tg, ok, err)
			continue
		}
		if tc.ok && !tc.bad && (tg.Scope != "drives/"+drive || tg.ID != drive || tg.Kind != DriveItems) {
			t.Errorf("Route(%s) = %+v", tc.resource, tg)
		}
		if got := Believable(&n); got != (err == nil) {
			t.Errorf("Believable(%s) = %v", tc.resource, got)
		}
	}
	if _, e2, ok := FamilyOfScope("drives/" + drive); !ok || e2.ID != drive {
		t.Errorf("FamilyOfScope: %+v %v", e2, ok)
	}
}
