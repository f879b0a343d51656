package fakegraph

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

func unified(name string, members ...string) Group {
	return Group{Props: map[string]any{"displayName": name, "groupTypes": []any{"Unified"}, "mailEnabled": true,
		"securityEnabled": false, "visibility": "Private"}, Members: members}
}

func TestGroupGoAPI(t *testing.T) {
	s := newTestServer(t, nil)
	sec := s.AddGroup(Group{Props: map[string]any{"displayName": "Sec"}, Members: []string{"u2", "u1", "u1"}})
	if !looksLikeGUID(sec) {
		t.Fatalf("generated id %q", sec)
	}
	g, ok := s.Group(sec)
	if !ok || g.Props["securityEnabled"] != true || g.Props["mailEnabled"] != false || fmt.Sprint(g.Props["groupTypes"]) != "[]" ||
		g.Props["createdDateTime"] == nil || !slices.Equal(g.Members, []string{"u1", "u2"}) {
		t.Fatalf("security group defaults %+v", g)
	}
	m365 := unified("M365", "u1")
	m365.ID = "g1"
	s.AddGroup(m365)
	if !s.UpdateGroup("G1", map[string]any{"description": "d", "visibility": nil}) {
		t.Fatal("UpdateGroup on an active group")
	}
	if g, _ := s.Group("g1"); g.Props["description"] != "d" || g.Props["visibility"] != nil || g.Props["displayName"] != "M365" {
		t.Fatalf("merge %+v", g.Props)
	}
	s.AddMembers("g1", "u3", "u1")
	s.RemoveMembers("g1", "u1", "nobody")
	if got := s.Members("g1"); !slices.Equal(got, []string{"u3"}) {
		t.Fatalf("members %v", got)
	}
	if n := len(s.Groups()); n != 2 {
		t.Fatalf("%d groups", n)
	}

	// A Microsoft 365 group is soft-deleted and restorable, with its members.
	if !s.SoftDeleteGroup("g1") || !s.GroupSoftDeleted("g1") || s.Members("g1") != nil {
		t.Fatal("soft delete of a Microsoft 365 group")
	}
	if s.UpdateGroup("g1", map[string]any{"x": 1}) || s.AddMembers("g1", "u9") || s.SoftDeleteGroup("g1") {
		t.Fatal("changes to a soft-deleted group must be refused")
	}
	if !s.RestoreGroup("g1") || !slices.Equal(s.Members("g1"), []string{"u3"}) || s.RestoreGroup("g1") {
		t.Fatal("restore")
	}
	// A security group cannot be soft-deleted: it is deleted for good.
	if !s.SoftDeleteGroup(sec) || s.GroupSoftDeleted(sec) {
		t.Fatal("security group went to deleted items")
	}
	if _, ok := s.Group(sec); ok || s.RestoreGroup(sec) || s.PermanentlyDeleteGroup(sec) {
		t.Fatal("security group still exists")
	}
	if !s.PermanentlyDeleteGroup("g1") || s.GroupSoftDeleted("g1") || len(s.Groups()) != 0 {
		t.Fatal("permanent delete")
	}
}

func looksLikeGUID(s string) bool {
	return len(s) == 36 && strings.Count(s, "-") == 4
}

func TestGetGroupAndDeletedItems(t *testing.T) {
	clock := newFakeClock()
	s := newTestServer(t, func(o *Options) { o.Clock = clock.Now })
	tok := token(t, s)
	g := unified("Team", "u1")
	g.ID = "g1"
	g.Props["description"] = "desc"
	g.Props["mail"] = "team@contoso.com"
	s.AddGroup(g)

	r := call(t, s, tok, "GET", "/v1.0/groups/g1?$select=displayName,groupTypes,members", nil)
	m := r.JSON(t)
	if r.Status != 200 || m["displayName"] != "Team" || fmt.Sprint(m["groupTypes"]) != "[Unified]" || len(m) != 4 ||
		!strings.HasSuffix(m["@odata.context"].(string), "#groups(displayName,groupTypes)/$entity") {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	m = call(t, s, tok, "GET", "/v1.0/groups/G1", nil).JSON(t)
	for _, k := range []string{"description", "mail", "mailEnabled", "securityEnabled", "visibility", "createdDateTime", "membershipRule"} {
		if _, ok := m[k]; !ok {
			t.Fatalf("default set lacks %s: %v", k, m)
		}
	}
	if r := call(t, s, tok, "GET", "/v1.0/groups/g1?$select=jobTitle", nil); r.Status != 400 {
		t.Fatalf("bad select: %d %s", r.Status, r.Body)
	}
	r = call(t, s, tok, "GET", "/v1.0/groups/missing", nil)
	if c, _ := r.ErrorCodeMsg(t); r.Status != 404 || c != "Request_ResourceNotFound" {
		t.Fatalf("missing: %d %s", r.Status, r.Body)
	}

	s.SoftDeleteGroup("g1")
	if r := call(t, s, tok, "GET", "/v1.0/groups/g1", nil); r.Status != 404 {
		t.Fatalf("soft-deleted group: %d", r.Status)
	}
	if r := call(t, s, tok, "GET", "/v1.0/groups/g1/members", nil); r.Status != 404 {
		t.Fatalf("members of a soft-deleted group: %d", r.Status)
	}
	r = call(t, s, tok, "GET", "/v1.0/directory/deletedItems/g1?$select=displayName", nil)
	m = r.JSON(t)
	if r.Status != 200 || m["@odata.type"] != "#microsoft.graph.group" || m["displayName"] != "Team" ||
		m["deletedDateTime"] != clock.Now().Format(time.RFC3339) {
		t.Fatalf("deletedItems: %d %s", r.Status, r.Body)
	}
	r = call(t, s, tok, "POST", "/v1.0/directory/deletedItems/g1/restore", nil)
	if m := r.JSON(t); r.Status != 200 || m["@odata.type"] != "#microsoft.graph.group" || m["id"] != "g1" {
		t.Fatalf("restore: %d %s", r.Status, r.Body)
	}
	if r := call(t, s, tok, "GET", "/v1.0/groups/g1", nil); r.Status != 200 || !slices.Equal(s.Members("g1"), []string{"u1"}) {
		t.Fatalf("restored group: %d, members %v", r.Status, s.Members("g1"))
	}
	if r := call(t, s, tok, "GET", "/v1.0/directory/deletedItems/g1", nil); r.Status != 404 {
		t.Fatalf("restored group still in deletedItems: %d", r.Status)
	}
	// A security group is never in deletedItems.
	s.AddGroup(Group{ID: "sec", Props: map[string]any{"displayName": "Sec"}})
	s.SoftDeleteGroup("sec")
	if r := call(t, s, tok, "GET", "/v1.0/directory/deletedItems/sec", nil); r.Status != 404 {
		t.Fatalf("deleted security group: %d", r.Status)
	}
	if r := call(t, s, tok, "POST", "/v1.0/directory/deletedItems/sec/restore", nil); r.Status != 404 {
		t.Fatalf("restore of a deleted security group: %d", r.Status)
	}

	s.SetReplicationLag(time.Minute)
	s.AddGroup(Group{ID: "late"})
	if r := call(t, s, tok, "GET", "/v1.0/groups/late", nil); r.Status != 404 {
		t.Fatalf("lagging group: %d", r.Status)
	}
	clock.Advance(time.Minute)
	if r := call(t, s, tok, "GET", "/v1.0/groups/late", nil); r.Status != 200 {
		t.Fatalf("after lag: %d", r.Status)
	}
}

// follow reads every page from start and returns the items and the number of pages.
func follow(t *testing.T, s *Server, tok, start string) ([]map[string]any, int) {
	t.Helper()
	var items []map[string]any
	pages := 0
	for next := start; next != ""; pages++ {
		r := call(t, s, tok, "GET", next, nil)
		if r.Status != 200 {
			t.Fatalf("%s: %d %s", next, r.Status, r.Body)
		}
		m := r.JSON(t)
		for _, v := range m["value"].([]any) {
			items = append(items, v.(map[string]any))
		}
		next, _ = m["@odata.nextLink"].(string)
	}
	return items, pages
}

func TestListGroupsAndMembers(t *testing.T) {
	s := newTestServer(t, func(o *Options) { o.GroupPageSize = 2; o.GroupMembersPerPage = 3 })
	tok := token(t, s)
	for i := range 5 {
		s.AddGroup(Group{ID: fmt.Sprintf("g%d", i), Props: map[string]any{"displayName": fmt.Sprint(i)}})
	}
	s.AddMembers("g0", "u1", "u2", "u3", "u4", "g1", "u5", "u6")
	items, pages := follow(t, s, tok, "/v1.0/groups?$select=displayName")
	if len(items) != 5 || pages != 3 || items[4]["displayName"] != "4" || len(items[0]) != 2 {
		t.Fatalf("list: %d items in %d pages: %v", len(items), pages, items)
	}
	items, pages = follow(t, s, tok, "/v1.0/groups/g0/members")
	var ids []string
	for _, it := range items {
		ids = append(ids, it["id"].(string))
		want := "#microsoft.graph.user"
		if it["id"] == "g1" {
			want = "#microsoft.graph.group"
		}
		if it["@odata.type"] != want || len(it) != 2 {
			t.Fatalf("member %v", it)
		}
	}
	if pages != 3 || strings.Join(ids, ",") != "g1,u1,u2,u3,u4,u5,u6" {
		t.Fatalf("members %v in %d pages", ids, pages)
	}
	if r := call(t, s, tok, "GET", "/v1.0/groups/nope/members", nil); r.Status != 404 {
		t.Fatalf("members of a missing group: %d", r.Status)
	}
	if r := call(t, s, tok, "GET", "/v1.0/groups?$skiptoken=not-a-token!", nil); r.Status != 400 {
		t.Fatalf("bad skiptoken: %d", r.Status)
	}
}

// groupState is what a client keeps per group from /groups/delta.
type groupState struct {
	props   map[string]any
	members map[string]bool
	removed string
	parts   int // entries of this group in the round
}

// applyGroupDelta is the simple client loop: follow nextLinks, merge the parts of each group (a
// large group spans pages), apply members@delta to the member set; returns the deltaLink and pages.
func applyGroupDelta(t *testing.T, s *Server, tok, start string, state map[string]*groupState) (string, int, map[string]*groupState) {
	t.Helper()
	round := map[string]*groupState{}
	next, pages := start, 0
	prevLast := ""
	for {
		r := call(t, s, tok, "GET", next, nil)
		if r.Status != 200 {
			t.Fatalf("%s: %d %s", next, r.Status, r.Body)
		}
		pages++
		m := r.JSON(t)
		vals := m["value"].([]any)
		for i, v := range vals {
			it := v.(map[string]any)
			id := it["id"].(string)
			rs := round[id]
			if rs == nil {
				rs = &groupState{}
				round[id] = rs
			} else if i != 0 || prevLast != id {
				t.Fatalf("group %s reappears on a non-consecutive position", id)
			}
			rs.parts++
			st := state[id]
			if st == nil {
				st = &groupState{props: map[string]any{}, members: map[string]bool{}}
				state[id] = st
			}
			if rm, ok := it["@removed"].(map[string]any); ok {
				st.removed = rm["reason"].(string)
				continue
			}
			st.removed = ""
			for k, v := range it {
				if k != "members@delta" && k != "id" {
					st.props[k] = v
				}
			}
			md, _ := it["members@delta"].([]any)
			for _, e := range md {
				e := e.(map[string]any)
				if e["@odata.type"] == nil {
					t.Fatalf("member entry without @odata.type: %v", e)
				}
				mid := e["id"].(string)
				if _, gone := e["@removed"]; gone {
					if e["@removed"].(map[string]any)["reason"] != "deleted" {
						t.Fatalf("removed member %v", e)
					}
					delete(st.members, mid)
				} else {
					st.members[mid] = true
				}
			}
		}
		if len(vals) > 0 {
			prevLast = vals[len(vals)-1].(map[string]any)["id"].(string)
		}
		nl, _ := m["@odata.nextLink"].(string)
		dl, _ := m["@odata.deltaLink"].(string)
		if (nl == "") == (dl == "") {
			t.Fatalf("page must have exactly one of nextLink/deltaLink: %v", m)
		}
		if dl != "" {
			return dl, pages, round
		}
		next = nl
	}
}

func memberSet(ids []string) map[string]bool {
	out := map[string]bool{}
	for _, id := range ids {
		out[id] = true
	}
	return out
}

func TestGroupsDeltaLargeGroupSpansPages(t *testing.T) {
	s := newTestServer(t, func(o *Options) { o.GroupMembersPerPage = 100 })
	tok := token(t, s)
	var members []string
	for i := range 250 {
		members = append(members, fmt.Sprintf("00000000-0000-4000-8000-%012d", i))
	}
	big := unified("Big", members...)
	big.ID = "big"
	s.AddGroup(big)
	s.AddGroup(Group{ID: "a-small", Props: map[string]any{"displayName": "Small"}, Members: []string{"x1"}})
	s.AddGroup(Group{ID: "c-after", Props: map[string]any{"displayName": "After"}})

	state := map[string]*groupState{}
	link, pages, round := applyGroupDelta(t, s, tok, "/v1.0/groups/delta?$select=displayName,members", state)
	if pages != 3 || round["big"].parts != 3 {
		t.Fatalf("250 members at 100 per page: %d pages, big in %d parts", pages, round["big"].parts)
	}
	if !maps.Equal(state["big"].members, memberSet(members)) || state["big"].props["displayName"] != "Big" {
		t.Fatalf("big reassembled to %d members, props %v", len(state["big"].members), state["big"].props)
	}
	if !maps.Equal(state["a-small"].members, memberSet([]string{"x1"})) || state["c-after"].props["displayName"] != "After" {
		t.Fatalf("small groups %v %v", state["a-small"], state["c-after"])
	}

	// Changes: 120 added (spans pages again), 3 removed, a rename of another group.
	var added []string
	for i := range 120 {
		added = append(added, fmt.Sprintf("00000000-0000-4000-8000-%012d", 1000+i))
	}
	s.AddMembers("big", added...)
	s.RemoveMembers("big", members[0], members[100], members[249])
	s.UpdateGroup("c-after", map[string]any{"displayName": "Renamed"})
	link, pages, round = applyGroupDelta(t, s, tok, link, state)
	if pages != 2 || len(round) != 2 || round["big"].parts != 2 {
		t.Fatalf("123 member changes: %d pages, round %v", pages, round)
	}
	if !maps.Equal(state["big"].members, memberSet(s.Members("big"))) || len(state["big"].members) != 367 {
		t.Fatalf("big after changes: %d members, want %d", len(state["big"].members), len(s.Members("big")))
	}
	if state["c-after"].props["displayName"] != "Renamed" {
		t.Fatalf("rename %v", state["c-after"].props)
	}
	if _, _, round = applyGroupDelta(t, s, tok, link, state); len(round) != 0 {
		t.Fatalf("no changes expected: %v", round)
	}
}

func TestGroupsDeltaContinuationCarriesNoProperties(t *testing.T) {
	s := newTestServer(t, func(o *Options) { o.GroupMembersPerPage = 2 })
	tok := token(t, s)
	s.AddGroup(Group{ID: "g", Props: map[string]any{"displayName": "G"}, Members: []string{"m1", "m2", "m3"}})
	r := call(t, s, tok, "GET", "/v1.0/groups/delta?$select=displayName,members", nil)
	p1 := r.JSON(t)
	first := p1["value"].([]any)[0].(map[string]any)
	if first["displayName"] != "G" || len(first["members@delta"].([]any)) != 2 {
		t.Fatalf("first part %v", first)
	}
	p2 := call(t, s, tok, "GET", p1["@odata.nextLink"].(string), nil).JSON(t)
	second := p2["value"].([]any)[0].(map[string]any)
	if _, ok := second["displayName"]; ok || second["id"] != "g" || len(second["members@delta"].([]any)) != 1 || p2["@odata.deltaLink"] == nil {
		t.Fatalf("second part %v", p2)
	}
}

func TestGroupsDeltaSelectRemovedAndTokens(t *testing.T) {
	s := newTestServer(t, func(o *Options) { o.GroupPageSize = 2 })
	tok := token(t, s)
	for _, id := range []string{"g1", "g2", "g3", "g4"} {
		g := unified(id, "m1")
		g.ID = id
		s.AddGroup(g)
	}
	s.AddGroup(Group{ID: "sec", Props: map[string]any{"displayName": "sec"}})
	withM := map[string]*groupState{}
	linkM, _, _ := applyGroupDelta(t, s, tok, "/v1.0/groups/delta?$select=displayName,members", withM)
	noM := map[string]*groupState{}
	linkNoM, _, round := applyGroupDelta(t, s, tok, "/v1.0/groups/delta?$select=displayName", noM)
	if len(round) != 5 || len(noM["g1"].members) != 0 {
		t.Fatalf("without members selected: %v", noM["g1"])
	}

	s.UpdateGroup("g1", map[string]any{"description": "not selected"})
	s.AddMembers("g2", "m2")
	s.SoftDeleteGroup("g3")
	s.PermanentlyDeleteGroup("g4")
	s.SoftDeleteGroup("sec") // a security group is deleted for good
	linkM, _, round = applyGroupDelta(t, s, tok, linkM, withM)
	got := map[string]string{}
	for id := range round {
		got[id] = withM[id].removed
	}
	if want := map[string]string{"g2": "", "g3": "changed", "g4": "deleted", "sec": "deleted"}; !maps.Equal(got, want) {
		t.Fatalf("with members: %v, want %v", got, want)
	}
	if !maps.Equal(withM["g2"].members, memberSet([]string{"m1", "m2"})) {
		t.Fatalf("g2 members %v", withM["g2"].members)
	}
	linkNoM, _, round = applyGroupDelta(t, s, tok, linkNoM, noM)
	if _, ok := round["g2"]; ok || len(round) != 3 {
		t.Fatalf("a membership change is not a change when members are not selected: %v", round)
	}

	// A restored group comes back as new, with every member.
	s.RestoreGroup("g3")
	s.RemoveMembers("g3", "m1")
	s.AddMembers("g3", "m7")
	r := call(t, s, tok, "GET", linkM, nil)
	v := r.JSON(t)["value"].([]any)
	if len(v) != 1 {
		t.Fatalf("restore round %s", r.Body)
	}
	it := v[0].(map[string]any)
	md := it["members@delta"].([]any)
	if it["displayName"] != "g3" || len(md) != 1 || md[0].(map[string]any)["id"] != "m7" || md[0].(map[string]any)["@removed"] != nil {
		t.Fatalf("restored group %v", it)
	}

	r = call(t, s, tok, "GET", "/v1.0/groups/delta?$deltatoken=latest&$select=displayName,members", nil)
	latest := r.JSON(t)
	if len(latest["value"].([]any)) != 0 || latest["@odata.deltaLink"] == nil {
		t.Fatalf("latest: %s", r.Body)
	}
	s.UpdateGroup("g1", map[string]any{"displayName": "one"})
	if _, _, round := applyGroupDelta(t, s, tok, latest["@odata.deltaLink"].(string), map[string]*groupState{}); len(round) != 1 || round["g1"] == nil {
		t.Fatalf("after latest: %v", round)
	}
	for _, q := range []string{"$expand=members", "$top=5", "$orderby=displayName", "$filter=id%20eq%20'g1'"} {
		if r := call(t, s, tok, "GET", "/v1.0/groups/delta?"+q, nil); r.Status != 400 {
			t.Fatalf("%s: %d", q, r.Status)
		}
	}
	if r := call(t, s, tok, "GET", "/v1.0/groups/delta?$select=nonsense", nil); r.Status != 400 {
		t.Fatalf("bad select: %d", r.Status)
	}
	s.ExpireDeltaTokens()
	r = call(t, s, tok, "GET", linkNoM, nil)
	if c, _ := r.ErrorCodeMsg(t); r.Status != 400 || c != "syncStateNotFound" {
		t.Fatalf("expired token: %d %s", r.Status, r.Body)
	}
}

func TestGroupsDeltaTokenAge(t *testing.T) {
	clock := newFakeClock()
	s := newTestServer(t, func(o *Options) { o.Clock = clock.Now })
	tok := token(t, s)
	link := call(t, s, tok, "GET", "/v1.0/groups/delta?$deltatoken=latest", nil).JSON(t)["@odata.deltaLink"].(string)
	clock.Advance(7*24*time.Hour + time.Minute)
	tok = token(t, s)
	if r := call(t, s, tok, "GET", link, nil); r.Status != 400 {
		t.Fatalf("token older than 7 days: %d", r.Status)
	}
}

func TestListDeletedGroups(t *testing.T) {
	s := newTestServer(t, func(o *Options) { o.GroupPageSize = 1 })
	tok := token(t, s)
	for _, id := range []string{"d1", "d2", "live"} {
		g := unified(id)
		g.ID = id
		s.AddGroup(g)
	}
	s.SoftDeleteGroup("d2")
	s.SoftDeleteGroup("d1")
	items, pages := follow(t, s, tok, "/v1.0/directory/deletedItems/microsoft.graph.group?$select=displayName")
	if len(items) != 2 || pages != 2 || items[0]["id"] != "d1" || items[1]["displayName"] != "d2" || items[0]["@odata.type"] != "#microsoft.graph.group" {
		t.Fatalf("deleted groups %v in %d pages", items, pages)
	}
}

func TestGroupNotifications(t *testing.T) {
	for _, membersDelta := range []bool{false, true} {
		t.Run(fmt.Sprint("NotifyMembersDelta=", membersDelta), func(t *testing.T) {
			s := newTestServer(t, func(o *Options) { o.NotifyMembersDelta = membersDelta })
			rxAll, rxOne, rxUsers := newReceiver(t), newReceiver(t), newReceiver(t)
			allID := subscribe(t, s, rxAll, "groups")
			subscribe(t, s, rxOne, "/groups/g2")
			subscribe(t, s, rxUsers, "users")

			g := unified("G1")
			g.ID = "g1"
			s.AddGroup(g)                      // updated
			s.AddMembers("g1", "u1", "u2")     // updated
			s.RemoveMembers("g1", "u1")        // updated
			s.AddMembers("g1", "u2")           // no change: nothing sent
			s.PermanentlyDeleteGroup("g1")     // updated (deleted items) then deleted
			s.AddGroup(Group{ID: "g2"})        // updated, also to groups/g2
			s.PermanentlyDeleteGroup("g2")     // security group: deleted only
			s.AddUser(User{ID: "u-not-group"}) // users subscription only
			if err := s.WaitDelivered(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			ns := rxAll.notifications(t)
			slices.SortFunc(ns, func(a, b map[string]any) int {
				x := a["resourceData"].(map[string]any)["sequenceNumber"].(json.Number)
				y := b["resourceData"].(map[string]any)["sequenceNumber"].(json.Number)
				return strings.Compare(string(x), string(y)) // same length: lexical order is numeric order
			})
			var seq []string
			for _, n := range ns {
				rd := n["resourceData"].(map[string]any)
				id := rd["id"].(string)
				if n["subscriptionId"] != allID || n["resource"] != "Groups/"+id || rd["@odata.type"] != "#Microsoft.Graph.Group" ||
					rd["@odata.id"] != "Groups/"+id || rd["organizationId"] != testTenant || rd["eventTime"] == nil || n["tenantId"] != testTenant {
					t.Fatalf("notification %v", n)
				}
				entry := id + ":" + n["changeType"].(string)
				md, _ := rd["members@delta"].([]any)
				for _, e := range md {
					e := e.(map[string]any)
					mark := "+"
					if e["@removed"] != nil {
						mark = "-"
					}
					entry += " " + mark + e["id"].(string)
				}
				seq = append(seq, entry)
			}
			want := "g1:updated|g1:updated|g1:updated|g1:updated|g1:deleted|g2:updated|g2:deleted"
			if membersDelta {
				want = "g1:updated|g1:updated +u1 +u2|g1:updated -u1|g1:updated|g1:deleted|g2:updated|g2:deleted"
			}
			if got := strings.Join(seq, "|"); got != want {
				t.Fatalf("group notifications\n got %s\nwant %s", got, want)
			}
			if one := rxOne.notifications(t); len(one) != 2 {
				t.Fatalf("groups/g2 subscription got %d notifications", len(one))
			}
			for _, n := range rxUsers.notifications(t) {
				if n["resource"] != "Users/u-not-group" {
					t.Fatalf("users subscription got %v", n)
				}
			}
		})
	}
}

func TestGroupSubscriptionsAndPermissions(t *testing.T) {
	s := newTestServer(t, func(o *Options) { o.MaxSubscriptions = 2 })
	rx := newReceiver(t)
	tok := token(t, s)
	body := subBody(rx.URL, "groups", s.now().Add(time.Hour))
	body["changeType"] = "created,updated"
	if r := createSub(t, s, tok, body); r.Status != 400 {
		t.Fatalf("created on groups: %d %s", r.Status, r.Body)
	}
	subscribe(t, s, rx, "groups")
	if r := createSub(t, s, tok, subBody(rx.URL, "groups", s.now().Add(time.Hour))); r.Status != 409 {
		t.Fatalf("same combination: %d", r.Status)
	}
	subscribe(t, s, rx, "users")
	if r := createSub(t, s, tok, subBody(rx.URL, "groups/g1", s.now().Add(time.Hour))); r.Status != 403 {
		t.Fatalf("over the quota shared by users and groups: %d %s", r.Status, r.Body)
	}

	usersOnly := newTestServer(t, func(o *Options) { o.AppRoles = []string{"User.Read.All"} })
	utok := token(t, usersOnly)
	usersOnly.AddGroup(Group{ID: "g"})
	if r := createSub(t, usersOnly, utok, subBody(rx.URL, "groups", usersOnly.now().Add(time.Hour))); r.Status != 403 {
		t.Fatalf("groups subscription with User.Read.All only: %d %s", r.Status, r.Body)
	}
	for _, p := range []string{"/v1.0/groups/g", "/v1.0/groups/delta", "/v1.0/groups"} {
		if r := call(t, usersOnly, utok, "GET", p, nil); r.Status != 403 {
			t.Fatalf("%s with User.Read.All only: %d", p, r.Status)
		}
	}
	memberOnly := newTestServer(t, func(o *Options) { o.AppRoles = []string{"GroupMember.Read.All"} })
	mtok := token(t, memberOnly)
	memberOnly.AddGroup(unified("G"))
	if r := call(t, memberOnly, mtok, "GET", "/v1.0/groups/delta", nil); r.Status != 200 {
		t.Fatalf("delta with GroupMember.Read.All: %d", r.Status)
	}
	if r := call(t, memberOnly, mtok, "GET", "/v1.0/users/x", nil); r.Status != 403 {
		t.Fatalf("users with GroupMember.Read.All: %d", r.Status)
	}
	if r := createSub(t, memberOnly, mtok, subBody(rx.URL, "groups", memberOnly.now().Add(time.Hour))); r.Status != 403 {
		t.Fatalf("groups subscription with GroupMember.Read.All: %d", r.Status)
	}
	if r := createSub(t, memberOnly, mtok, subBody(rx.URL, "users", memberOnly.now().Add(time.Hour))); r.Status != 403 {
		t.Fatalf("users subscription with GroupMember.Read.All: %d", r.Status)
	}
}

func TestGroupsBatch(t *testing.T) {
	s := newTestServer(t, nil)
	tok := token(t, s)
	g := unified("B", "u1")
	g.ID = "gb"
	s.AddGroup(g)
	d := unified("D")
	d.ID = "gd"
	s.AddGroup(d)
	s.SoftDeleteGroup("gd")
	_, resps := batchCall(t, s, tok, []map[string]any{
		{"id": "1", "method": "GET", "url": "/groups/gb?$select=displayName"},
		{"id": "2", "method": "GET", "url": "/groups/gb/members"},
		{"id": "3", "method": "GET", "url": "/groups/gd"},
		{"id": "4", "method": "GET", "url": "/directory/deletedItems/gd"},
		{"id": "5", "method": "GET", "url": "/groups/delta?$select=displayName,members"},
	})
	byID := map[string]map[string]any{}
	for _, r := range resps {
		byID[r["id"].(string)] = r
	}
	body := func(id string) map[string]any { return byID[id]["body"].(map[string]any) }
	if byID["1"]["status"] != float64(200) || body("1")["displayName"] != "B" {
		t.Fatalf("group %v", byID["1"])
	}
	if byID["2"]["status"] != float64(200) || len(body("2")["value"].([]any)) != 1 {
		t.Fatalf("members %v", byID["2"])
	}
	if byID["3"]["status"] != float64(404) {
		t.Fatalf("soft-deleted group %v", byID["3"])
	}
	if byID["4"]["status"] != float64(200) || body("4")["@odata.type"] != "#microsoft.graph.group" {
		t.Fatalf("deleted item %v", byID["4"])
	}
	if byID["5"]["status"] != float64(200) || body("5")["@odata.deltaLink"] == nil {
		t.Fatalf("delta %v", byID["5"])
	}
	if n := s.CountBatchItems("GET", "/v1.0/groups/"); n != 4 {
		t.Fatalf("%d inner group requests logged", n)
	}
}

func TestGroupControlAPI(t *testing.T) {
	s := newTestServer(t, func(o *Options) { o.ControlAPI = true })
	post := func(path, body string) (int, string) {
		resp, err := s.Client().Post(s.URL()+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	st, b := post("/_control/groups", `{"props":{"displayName":"C","groupTypes":["Unified"]},"members":["u1","u2"]}`)
	var created struct{ ID string }
	json.Unmarshal([]byte(b), &created)
	if st != 201 || !looksLikeGUID(created.ID) {
		t.Fatalf("add: %d %s", st, b)
	}
	id := created.ID
	if st, _ := post("/_control/groups/"+id, `{"description":"D"}`); st != 204 {
		t.Fatalf("update: %d", st)
	}
	if st, _ := post("/_control/groups/"+id+"/members", `{"add":["u3"],"remove":["u1"]}`); st != 204 {
		t.Fatalf("members: %d", st)
	}
	if g, _ := s.Group(id); g.Props["description"] != "D" || strings.Join(g.Members, ",") != "u2,u3" {
		t.Fatalf("group %+v", g)
	}
	resp, err := s.Client().Get(s.URL() + "/_control/groups")
	if err != nil {
		t.Fatal(err)
	}
	var list []map[string]any
	json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if len(list) != 1 || fmt.Sprint(list[0]["members"]) != "[u2 u3]" {
		t.Fatalf("list %v", list)
	}
	if st, _ := post("/_control/groups/"+id+"/softdelete", ""); st != 204 || !s.GroupSoftDeleted(id) {
		t.Fatalf("softdelete: %d", st)
	}
	if st, _ := post("/_control/groups/"+id+"/restore", ""); st != 204 || s.GroupSoftDeleted(id) {
		t.Fatalf("restore: %d", st)
	}
	if st, _ := post("/_control/groups/"+id+"/delete", ""); st != 204 {
		t.Fatalf("delete: %d", st)
	}
	for _, p := range []string{"", "/members", "/softdelete", "/restore", "/delete"} {
		if st, _ := post("/_control/groups/"+id+p, `{}`); st != 404 {
			t.Fatalf("%s on a missing group: %d", p, st)
		}
	}
	if st, _ := post("/_control/groups", `{"props":`); st != 400 {
		t.Fatalf("bad JSON: %d", st)
	}
}

// The members-per-page bound is per page, not per group: groups share a page's budget.
func TestGroupsDeltaMembersBudgetIsPerPage(t *testing.T) {
	s := newTestServer(t, func(o *Options) { o.GroupMembersPerPage = 4 })
	tok := token(t, s)
	s.AddGroup(Group{ID: "a", Members: []string{"m1", "m2", "m3"}})
	s.AddGroup(Group{ID: "b", Members: []string{"m4", "m5", "m6"}})
	s.AddGroup(Group{ID: "c"})
	var shape []string
	next := "/v1.0/groups/delta?$select=displayName,members"
	for next != "" {
		m := call(t, s, tok, "GET", next, nil).JSON(t)
		var page []string
		for _, v := range m["value"].([]any) {
			it := v.(map[string]any)
			md, _ := it["members@delta"].([]any)
			page = append(page, fmt.Sprintf("%s%d", it["id"], len(md)))
		}
		shape = append(shape, strings.Join(page, ","))
		next, _ = m["@odata.nextLink"].(string)
	}
	if got := strings.Join(shape, " | "); got != "a3,b1 | b2,c0" {
		t.Fatalf("pages %q, want %q", got, "a3,b1 | b2,c0")
	}
}
