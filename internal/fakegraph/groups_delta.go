package fakegraph

import (
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"
)

// groupDeltaEntry is one group of a /groups/delta round, before paging.
type groupDeltaEntry struct {
	key     string // lower-case id: the round's order and the resume point of its pages
	id      string
	removed string // "", "changed" (soft-deleted) or "deleted"
	props   map[string]any
	members []memberDelta
}

type memberDelta struct {
	id      string
	removed bool
}

// handleGroupsDelta is GET /groups/delta: as /users/delta (full round paged by $skiptoken, then a
// $deltatoken link; $deltatoken=latest; @removed "changed" for soft-deleted and "deleted" for deleted
// groups; with $select only changes to selected properties count; syncStateNotFound after
// ExpireDeltaTokens or 7 days), plus members@delta when $select names members: every member in a
// full round or for a created or restored group, else the members added and removed since the
// token (removed ones with "@removed":{"reason":"deleted"}); for a member both added and removed
// within one round, the last change wins (choice). Without members in $select, membership changes
// do not make a group appear (choice).
//
// A page holds at most GroupPageSize groups and GroupMembersPerPage members@delta entries, so a
// large group spans pages: the same id on consecutive pages, each with part of its members@delta.
// [inferred] Only the first part carries the group's properties; later parts carry id and
// members@delta only, so a client must merge the parts of a group, not replace one with the next.
func (s *Server) handleGroupsDelta(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for _, p := range []string{"$expand", "$top", "$orderby", "$filter"} {
		if q.Has(p) {
			// $filter (id eq, up to 50 ids) is supported by Graph but not by the double (choice).
			s.graphError(w, r, http.StatusBadRequest, "Request_UnsupportedQuery", "Unsupported query option '"+p+"' for delta on groups.")
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	link := func(kind string, t pageToken) string {
		t.Issued = now.Unix()
		t.Gen = s.deltaGen
		return s.GraphBaseURL() + "/groups/delta?" + kind + "=" + encodeToken(t)
	}
	var tok pageToken
	switch {
	case q.Get("$deltatoken") == "latest":
		if _, _, bad := parseGroupSelect(q.Get("$select"), nil); bad != "" {
			s.badGroupSelect(w, r, bad)
			return
		}
		writeGraphJSON(w, http.StatusOK, map[string]any{
			"@odata.context":   s.GraphBaseURL() + "/$metadata#groups",
			"value":            []any{},
			"@odata.deltaLink": link("$deltatoken", pageToken{From: s.groups.seq, Select: q.Get("$select")}),
		})
		return
	case q.Get("$deltatoken") != "" || q.Get("$skiptoken") != "":
		raw := q.Get("$deltatoken")
		if raw == "" {
			raw = q.Get("$skiptoken")
		}
		var ok bool
		if tok, ok = decodeToken(raw); !ok {
			s.graphError(w, r, http.StatusBadRequest, "Request_BadRequest", "Invalid delta token.")
			return
		}
		if tok.Gen != s.deltaGen || now.Sub(time.Unix(tok.Issued, 0)) > 7*24*time.Hour {
			s.graphError(w, r, http.StatusBadRequest, "syncStateNotFound", "The sync state generation is not found. Please restart the sync.")
			return
		}
		if q.Get("$deltatoken") != "" { // a new round of changes
			tok = pageToken{From: tok.From, Upto: s.groups.seq, Select: tok.Select}
		}
	default:
		tok = pageToken{Full: true, Upto: s.groups.seq, Select: q.Get("$select")}
	}
	sel, withMembers, bad := parseGroupSelect(tok.Select, nil)
	if bad != "" {
		s.badGroupSelect(w, r, bad)
		return
	}
	var entries []groupDeltaEntry
	if tok.Full {
		entries = s.groupFullRoundLocked(tok.Upto, sel, withMembers)
	} else {
		entries = s.groupChangesRoundLocked(tok.From, tok.Upto, sel, withMembers)
	}

	items := []any{}
	budget := s.opts.GroupMembersPerPage
	i := 0
	for i < len(entries) && entries[i].key < tok.After {
		i++
	}
	mOff := 0
	if i < len(entries) && entries[i].key == tok.After {
		mOff = tok.Member
	}
	for i < len(entries) && len(items) < s.opts.GroupPageSize {
		e := entries[i]
		item := map[string]any{"id": e.id}
		if e.removed != "" {
			item["@removed"] = map[string]any{"reason": e.removed}
		} else if mOff == 0 {
			maps.Copy(item, e.props)
		}
		if len(e.members) > 0 {
			if budget == 0 {
				break // the next page starts with this group
			}
			take := min(budget, len(e.members)-mOff)
			part := make([]any, 0, take)
			for _, m := range e.members[mOff : mOff+take] {
				md := map[string]any{"@odata.type": s.memberTypeLocked(m.id), "id": m.id}
				if m.removed {
					md["@removed"] = map[string]any{"reason": "deleted"}
				}
				part = append(part, md)
			}
			item["members@delta"] = part
			budget -= take
			mOff += take
			items = append(items, item)
			if mOff < len(e.members) {
				break // the rest of this group's members go on the next page
			}
		} else {
			items = append(items, item)
		}
		i++
		mOff = 0
	}
	body := map[string]any{"@odata.context": s.GraphBaseURL() + "/$metadata#groups", "value": items}
	if i < len(entries) {
		t := tok
		t.After, t.Member = entries[i].key, mOff
		body["@odata.nextLink"] = link("$skiptoken", t)
	} else {
		body["@odata.deltaLink"] = link("$deltatoken", pageToken{From: tok.Upto, Select: tok.Select})
	}
	writeGraphJSON(w, http.StatusOK, body)
}

// groupFullRoundLocked lists every active group with its selected properties and, when members
// are selected, its membership as of change upto, so that member paging is stable while changes
// made during the round wait for the next one.
func (s *Server) groupFullRoundLocked(upto int64, sel []string, withMembers bool) []groupDeltaEntry {
	var out []groupDeltaEntry
	for _, g := range s.activeGroupsLocked() {
		e := groupDeltaEntry{key: strings.ToLower(g.id), id: g.id, props: projectGroup(g.props, sel)}
		if withMembers {
			for _, m := range s.membersAtLocked(g, upto) {
				e.members = append(e.members, memberDelta{id: m})
			}
		}
		out = append(out, e)
	}
	return out
}

// membersAtLocked is g's membership as of change seq upto (the current one with later changes undone), sorted.
func (s *Server) membersAtLocked(g *groupRec, upto int64) []string {
	members := maps.Clone(g.members)
	for _, c := range slices.Backward(s.groups.changes) {
		if c.seq <= upto {
			break
		}
		if !strings.EqualFold(c.id, g.id) {
			continue
		}
		for _, m := range c.added {
			delete(members, strings.ToLower(m))
		}
		for _, m := range c.gone {
			members[strings.ToLower(m)] = m
		}
	}
	keys := slices.Sorted(maps.Keys(members))
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = members[k]
	}
	return out
}

// groupChangesRoundLocked lists the groups changed in (from, upto], sorted by id: the last state of
// each, removed ones with their reason, the others with their selected properties and members@delta.
func (s *Server) groupChangesRoundLocked(from, upto int64, sel []string, withMembers bool) []groupDeltaEntry {
	type acc struct {
		id      string
		last    string
		full    bool
		touched bool
		members map[string]memberDelta // lower-case member id -> last change
	}
	byKey := map[string]*acc{}
	for _, c := range s.groups.changes {
		if c.seq <= from || c.seq > upto {
			continue
		}
		k := strings.ToLower(c.id)
		a := byKey[k]
		if a == nil {
			a = &acc{id: c.id, members: map[string]memberDelta{}}
			byKey[k] = a
		}
		a.last = c.kind
		a.full = a.full || c.full
		if c.kind != "upsert" || c.full || (withMembers && len(c.added)+len(c.gone) > 0) || touchesSelected(c.keys, sel) {
			a.touched = true
		}
		for _, m := range c.added {
			a.members[strings.ToLower(m)] = memberDelta{id: m}
		}
		for _, m := range c.gone {
			a.members[strings.ToLower(m)] = memberDelta{id: m, removed: true}
		}
	}
	var out []groupDeltaEntry
	for _, k := range slices.Sorted(maps.Keys(byKey)) {
		a := byKey[k]
		if !a.touched {
			continue
		}
		g := s.groups.byID[k]
		e := groupDeltaEntry{key: k, id: a.id}
		switch {
		case a.last == "deleted" || g == nil:
			e.removed = "deleted"
		case a.last == "changed" || g.deleted:
			e.removed = "changed"
		default:
			e.props = projectGroup(g.props, sel)
			if !withMembers {
				break
			}
			if a.full { // created or restored in this round: reported as new, with every member
				for _, m := range s.membersAtLocked(g, upto) {
					e.members = append(e.members, memberDelta{id: m})
				}
				break
			}
			for _, mk := range slices.Sorted(maps.Keys(a.members)) {
				e.members = append(e.members, a.members[mk])
			}
		}
		out = append(out, e)
	}
	return out
}

// touchesSelected reports whether a property change is visible under $select (nil: every property).
func touchesSelected(keys, sel []string) bool {
	if sel == nil {
		return len(keys) > 0
	}
	for _, k := range keys {
		if slices.ContainsFunc(sel, func(s string) bool { return strings.EqualFold(s, k) }) {
			return true
		}
	}
	return false
}
