package fakegraph

import (
	"maps"
	"slices"
	"strings"
	"time"
)

// Group is a directory group. Props are keyed by Graph property name (displayName, description,
// mail, mailEnabled, securityEnabled, groupTypes, visibility, ...); "id" is ID. Members are the
// object ids of its direct members (users, groups or any other directory object).
type Group struct {
	ID      string
	Props   map[string]any
	Members []string
}

type groupRec struct {
	id        string
	props     map[string]any
	members   map[string]string // lower-case id -> id as given
	visibleAt time.Time         // replication lag: GET 404s before this (Clock)
	deleted   bool              // soft-deleted: in directory/deletedItems
	deletedAt time.Time
}

// groupChange is one entry of the group change log that /groups/delta reads.
type groupChange struct {
	seq   int64
	id    string
	kind  string   // "upsert", "changed" (soft delete), "deleted" (permanent)
	full  bool     // upsert of the whole object: creation or restore (delta reports it as new)
	keys  []string // upsert: the properties that changed
	added []string // upsert: members added
	gone  []string // upsert: members removed
}

// groupStore is the groups half of the directory; Server.mu guards it. Its change log has its own
// sequence, so delta tokens of /users/delta and /groups/delta never mix.
type groupStore struct {
	byID    map[string]*groupRec // key: lower-case id
	changes []groupChange
	seq     int64
}

// isUnified reports whether props describe a Microsoft 365 group (groupTypes contains "Unified").
func isUnified(props map[string]any) bool {
	switch v := props["groupTypes"].(type) {
	case []string:
		return slices.ContainsFunc(v, func(t string) bool { return strings.EqualFold(t, "Unified") })
	case []any:
		return slices.ContainsFunc(v, func(t any) bool { s, _ := t.(string); return strings.EqualFold(s, "Unified") })
	}
	return false
}

func (s *Server) groupLocked(id string) *groupRec { return s.groups.byID[strings.ToLower(id)] }

func (s *Server) recordGroupChange(c groupChange) {
	s.groups.seq++
	c.seq = s.groups.seq
	s.groups.changes = append(s.groups.changes, c)
}

// AddGroup creates (or replaces) a group with its members and sends `updated` (creation arrives as
// updated, as for users). An empty ID gets a new GUID; the id is returned. Choice: without
// groupTypes, securityEnabled or mailEnabled the group is a plain security group (groupTypes [],
// securityEnabled true, mailEnabled false); createdDateTime defaults to Clock.
func (s *Server) AddGroup(g Group) string {
	if g.ID == "" {
		g.ID = newGUID()
	}
	now := s.now()
	props := maps.Clone(g.Props)
	if props == nil {
		props = map[string]any{}
	}
	props["id"] = g.ID
	defaults := map[string]any{"groupTypes": []any{}, "securityEnabled": true, "mailEnabled": false, "createdDateTime": now.UTC().Format(time.RFC3339)}
	for k, v := range defaults {
		if _, ok := props[k]; !ok {
			props[k] = v
		}
	}
	members := map[string]string{}
	for _, m := range g.Members {
		if m != "" {
			members[strings.ToLower(m)] = m
		}
	}
	s.mu.Lock()
	if s.groups.byID == nil {
		s.groups.byID = map[string]*groupRec{}
	}
	s.groups.byID[strings.ToLower(g.ID)] = &groupRec{id: g.ID, props: props, members: members, visibleAt: now.Add(s.lag)}
	s.recordGroupChange(groupChange{id: g.ID, kind: "upsert", full: true})
	n := s.groupNotificationsLocked(g.ID, "updated", nil, nil)
	s.mu.Unlock()
	s.enqueueAll(n)
	return g.ID
}

// UpdateGroup merges props into an active group (a nil value sets the property to null) and sends
// `updated`. It reports false, and changes nothing, for a missing or soft-deleted group.
func (s *Server) UpdateGroup(id string, props map[string]any) bool {
	s.mu.Lock()
	g := s.groupLocked(id)
	if g == nil || g.deleted {
		s.mu.Unlock()
		s.log.Warn("fakegraph: UpdateGroup on a missing or soft-deleted group", "id", id)
		return false
	}
	keys := make([]string, 0, len(props))
	for k, v := range props {
		if k == "id" {
			continue
		}
		g.props[k] = v
		keys = append(keys, k)
	}
	slices.Sort(keys)
	s.recordGroupChange(groupChange{id: g.id, kind: "upsert", keys: keys})
	n := s.groupNotificationsLocked(g.id, "updated", nil, nil)
	s.mu.Unlock()
	s.enqueueAll(n)
	return true
}

// AddMembers adds direct members to an active group and sends `updated` on the group (membership
// changes arrive as updated on the group). Ids already members are ignored; when none is new
// nothing is recorded or sent. It reports false for a missing or soft-deleted group.
func (s *Server) AddMembers(groupID string, memberIDs ...string) bool {
	return s.changeMembers("AddMembers", groupID, memberIDs, true)
}

// RemoveMembers removes direct members from an active group and sends `updated` on the group. Ids
// that are not members are ignored. It reports false for a missing or soft-deleted group.
func (s *Server) RemoveMembers(groupID string, memberIDs ...string) bool {
	return s.changeMembers("RemoveMembers", groupID, memberIDs, false)
}

func (s *Server) changeMembers(op, groupID string, ids []string, add bool) bool {
	s.mu.Lock()
	g := s.groupLocked(groupID)
	if g == nil || g.deleted {
		s.mu.Unlock()
		s.log.Warn("fakegraph: "+op+" on a missing or soft-deleted group", "id", groupID)
		return false
	}
	var changed []string
	for _, m := range ids {
		k := strings.ToLower(m)
		_, is := g.members[k]
		switch {
		case m == "" || is == add:
			continue
		case add:
			g.members[k] = m
		default:
			m = g.members[k]
			delete(g.members, k)
		}
		changed = append(changed, m)
	}
	if len(changed) == 0 {
		s.mu.Unlock()
		return true
	}
	c := groupChange{id: g.id, kind: "upsert", keys: []string{}}
	var added, removed []string
	if add {
		c.added, added = changed, changed
	} else {
		c.gone, removed = changed, changed
	}
	s.recordGroupChange(c)
	n := s.groupNotificationsLocked(g.id, "updated", added, removed)
	s.mu.Unlock()
	s.enqueueAll(n)
	return true
}

// SoftDeleteGroup deletes an active group as Graph's DELETE /groups/{id} does: a Microsoft 365
// group (groupTypes contains "Unified") moves to directory/deletedItems, restorable, and sends
// `updated`; any other group (a security group) cannot be soft-deleted in Entra ID, so it is deleted
// for good: `deleted` is sent, delta reports it removed with reason "deleted", and deletedItems
// 404s. It reports false, and changes nothing, for a missing or already soft-deleted group.
func (s *Server) SoftDeleteGroup(id string) bool {
	s.mu.Lock()
	g := s.groupLocked(id)
	if g == nil || g.deleted {
		s.mu.Unlock()
		s.log.Warn("fakegraph: SoftDeleteGroup on a missing or deleted group", "id", id)
		return false
	}
	var n []pendingNotification
	if isUnified(g.props) {
		g.deleted, g.deletedAt = true, s.now()
		s.recordGroupChange(groupChange{id: g.id, kind: "changed"})
		n = s.groupNotificationsLocked(g.id, "updated", nil, nil)
	} else {
		n = s.purgeGroupLocked(g)
	}
	s.mu.Unlock()
	s.enqueueAll(n)
	return true
}

// RestoreGroup brings a soft-deleted group back, with its members, and sends `updated`; delta
// reports it as new. It reports false for a group that is not soft-deleted.
func (s *Server) RestoreGroup(id string) bool {
	s.mu.Lock()
	g := s.restoreGroupLocked(id)
	var n []pendingNotification
	if g != nil {
		n = s.groupNotificationsLocked(g.id, "updated", nil, nil)
	}
	s.mu.Unlock()
	if g == nil {
		s.log.Warn("fakegraph: RestoreGroup on a group that is not soft-deleted", "id", id)
		return false
	}
	s.enqueueAll(n)
	return true
}

func (s *Server) restoreGroupLocked(id string) *groupRec {
	g := s.groupLocked(id)
	if g == nil || !g.deleted {
		return nil
	}
	g.deleted, g.deletedAt = false, time.Time{}
	s.recordGroupChange(groupChange{id: g.id, kind: "upsert", full: true})
	return g
}

// PermanentlyDeleteGroup removes a group for good and sends `deleted`. An active Microsoft 365 group
// first passes through the deleted items, as for users, so it gets `updated` then `deleted`; a
// security group gets `deleted` only. It reports false for a missing group.
func (s *Server) PermanentlyDeleteGroup(id string) bool {
	s.mu.Lock()
	g := s.groupLocked(id)
	if g == nil {
		s.mu.Unlock()
		s.log.Warn("fakegraph: PermanentlyDeleteGroup on a missing group", "id", id)
		return false
	}
	var n []pendingNotification
	if !g.deleted && isUnified(g.props) {
		g.deleted, g.deletedAt = true, s.now()
		s.recordGroupChange(groupChange{id: g.id, kind: "changed"})
		n = s.groupNotificationsLocked(g.id, "updated", nil, nil)
	}
	n = append(n, s.purgeGroupLocked(g)...)
	s.mu.Unlock()
	s.enqueueAll(n)
	return true
}

func (s *Server) purgeGroupLocked(g *groupRec) []pendingNotification {
	delete(s.groups.byID, strings.ToLower(g.id))
	s.recordGroupChange(groupChange{id: g.id, kind: "deleted"})
	return s.groupNotificationsLocked(g.id, "deleted", nil, nil)
}

func (g *groupRec) snapshot() Group {
	return Group{ID: g.id, Props: maps.Clone(g.props), Members: g.memberList()}
}

// memberList is the members sorted by lower-case id (the order of /members and members@delta).
func (g *groupRec) memberList() []string {
	keys := slices.Sorted(maps.Keys(g.members))
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = g.members[k]
	}
	return out
}

// Group returns an active (not soft-deleted) group with its members, ignoring replication lag.
func (s *Server) Group(id string) (Group, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groupLocked(id)
	if g == nil || g.deleted {
		return Group{}, false
	}
	return g.snapshot(), true
}

// Groups returns every active group, sorted by id.
func (s *Server) Groups() []Group {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Group
	for _, g := range s.activeGroupsLocked() {
		out = append(out, g.snapshot())
	}
	return out
}

// Members returns the direct members of an active group, sorted by id (nil for a missing or
// soft-deleted group).
func (s *Server) Members(groupID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groupLocked(groupID)
	if g == nil || g.deleted {
		return nil
	}
	return g.memberList()
}

// GroupSoftDeleted reports whether the group is in directory/deletedItems.
func (s *Server) GroupSoftDeleted(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groupLocked(id)
	return g != nil && g.deleted
}

func (s *Server) activeGroupsLocked() []*groupRec {
	var gs []*groupRec
	for _, g := range s.groups.byID {
		if !g.deleted {
			gs = append(gs, g)
		}
	}
	slices.SortFunc(gs, func(a, b *groupRec) int { return strings.Compare(strings.ToLower(a.id), strings.ToLower(b.id)) })
	return gs
}
