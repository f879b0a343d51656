package fakegraph

import (
	"net/http"
	"slices"
	"strings"
	"time"
)

// defaultGroupSelect is the double's default property set for a group without $select: the
// properties of Graph v1.0's default group representation that it can hold (choice: Graph's exact
// default set also carries provisioning-error and license properties the double does not model).
var defaultGroupSelect = strings.Split("classification,createdDateTime,creationOptions,deletedDateTime,description,displayName,expirationDateTime,groupTypes,isAssignableToRole,mail,mailEnabled,mailNickname,membershipRule,membershipRuleProcessingState,onPremisesLastSyncDateTime,onPremisesSecurityIdentifier,onPremisesSyncEnabled,preferredDataLocation,preferredLanguage,proxyAddresses,renewedDateTime,resourceProvisioningOptions,securityEnabled,securityIdentifier,theme,visibility", ",")

// knownGroupProps are the v1.0 group properties $select may name (plus any key a test put in Props).
var knownGroupProps = map[string]bool{}

func init() {
	for _, p := range defaultGroupSelect {
		knownGroupProps[strings.ToLower(p)] = true
	}
	for _, p := range strings.Split("id,allowExternalSenders,assignedLabels,assignedLicenses,autoSubscribeNewMembers,hasMembersWithLicenseErrors,hideFromAddressLists,hideFromOutlookClients,isSubscribedByMail,licenseProcessingState,onPremisesDomainName,onPremisesNetBiosName,onPremisesProvisioningErrors,onPremisesSamAccountName,resourceBehaviorOptions,serviceProvisioningErrors,unseenCount", ",") {
		knownGroupProps[strings.ToLower(p)] = true
	}
}

// Application permissions (https://learn.microsoft.com/graph/permissions-reference and each API's
// page): reading users needs User.Read.All or higher; reading groups and their members needs
// GroupMember.Read.All or higher; subscribing to groups and reading deleted groups needs
// Group.Read.All or higher.
var (
	userRoles        = []string{"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
	groupMemberRoles = []string{"GroupMember.Read.All", "Group.Read.All", "Group.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
	groupRoles       = []string{"Group.Read.All", "Group.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
)

// rolesAllow decides whether a token's roles reach a Graph path: /users needs a user role, /groups
// a group-member role; a path a family claims (families.go) the roles it names; other paths
// (subscriptions, $batch, deletedItems) any of them, and their handlers check the role the object or
// resource needs.
func rolesAllow(path string, roles []any) bool {
	need, ok := familyPathRoles(path)
	switch {
	case ok:
	case strings.HasPrefix(path, "/v1.0/users"):
		need = userRoles
	case strings.HasPrefix(path, "/v1.0/groups"):
		need = groupMemberRoles
	default:
		need = append(slices.Clone(userRoles), groupMemberRoles...)
		need = append(need, familySharedRoles()...)
	}
	return slices.ContainsFunc(roles, func(r any) bool { s, _ := r.(string); return slices.Contains(need, s) })
}

// tokenHasRole reports whether the request's bearer token (already verified by authorize) carries one of roles.
func tokenHasRole(r *http.Request, roles []string) bool {
	_, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	p, err := parseJWT(strings.TrimSpace(tok))
	if err != nil {
		return false
	}
	have, _ := p.claims["roles"].([]any)
	return slices.ContainsFunc(have, func(x any) bool { s, _ := x.(string); return slices.Contains(roles, s) })
}

func (s *Server) forbidden(w http.ResponseWriter, r *http.Request) {
	s.graphError(w, r, http.StatusForbidden, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
}

// parseGroupSelect validates a group $select. members reports whether the members navigation
// property was named; it is never in sel. sel is nil when raw is empty (the default set), and
// empty but not nil when only members was named.
func parseGroupSelect(raw string, extra map[string]any) (sel []string, members bool, bad string) {
	if raw == "" {
		return nil, false, ""
	}
	sel = []string{}
	for _, p := range strings.Split(raw, ",") {
		p = strings.TrimSpace(p)
		switch {
		case p == "":
			continue
		case strings.EqualFold(p, "members"):
			members = true
			continue
		case !knownGroupProps[strings.ToLower(p)]:
			if _, ok := extra[p]; !ok {
				return nil, false, p
			}
		}
		sel = append(sel, p)
	}
	return sel, members, ""
}

func (s *Server) badGroupSelect(w http.ResponseWriter, r *http.Request, p string) {
	s.graphError(w, r, http.StatusBadRequest, "Request_BadRequest", "Could not find a property named '"+p+"' on type 'microsoft.graph.group'.")
}

func projectGroup(props map[string]any, sel []string) map[string]any {
	if sel == nil {
		sel = defaultGroupSelect
	}
	return project(props, sel)
}

// visibleGroupLocked returns an active group a GET may see (not soft-deleted, past replication lag).
func (s *Server) visibleGroupLocked(id string) *groupRec {
	g := s.groupLocked(id)
	if g == nil || g.deleted || s.now().Before(g.visibleAt) {
		return nil
	}
	return g
}

// handleGetGroup is GET /groups/{id}. [inferred] As for users, a soft-deleted group 404s here and is
// readable at /directory/deletedItems/{id}. $select=members is accepted and ignored (choice: members
// are read with /groups/{id}/members or delta).
func (s *Server) handleGetGroup(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	g := s.visibleGroupLocked(id)
	if g == nil {
		s.mu.Unlock()
		s.notFoundUser(w, r, id)
		return
	}
	raw := r.URL.Query().Get("$select")
	sel, _, bad := parseGroupSelect(raw, g.props)
	if bad != "" {
		s.mu.Unlock()
		s.badGroupSelect(w, r, bad)
		return
	}
	body := projectGroup(g.props, sel)
	s.mu.Unlock()
	body["@odata.context"] = s.entityContext("groups", sel)
	writeGraphJSON(w, http.StatusOK, body)
}

// handleListGroups is GET /groups with $select, paged by @odata.nextLink (GroupPageSize per page).
func (s *Server) handleListGroups(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	tok, ok := s.skipToken(w, r, q)
	if !ok {
		return
	}
	sel, _, bad := parseGroupSelect(q.Get("$select"), nil)
	if bad != "" {
		s.badGroupSelect(w, r, bad)
		return
	}
	s.mu.Lock()
	now := s.now()
	vals := []any{}
	next := ""
	for _, g := range s.activeGroupsLocked() {
		k := strings.ToLower(g.id)
		if k < tok.After || now.Before(g.visibleAt) {
			continue
		}
		if len(vals) == s.opts.GroupPageSize {
			next = k
			break
		}
		vals = append(vals, projectGroup(g.props, sel))
	}
	s.mu.Unlock()
	body := map[string]any{"@odata.context": s.GraphBaseURL() + "/$metadata#groups", "value": vals}
	if next != "" {
		body["@odata.nextLink"] = s.GraphBaseURL() + "/groups?$skiptoken=" + encodeToken(pageToken{After: next, Select: q.Get("$select")})
	}
	writeGraphJSON(w, http.StatusOK, body)
}

// memberTypeLocked is the @odata.type of a member: a group of the double is a group; any other
// object id is taken for a user (choice: the double holds no other directory object kinds).
func (s *Server) memberTypeLocked(id string) string {
	if s.groupLocked(id) != nil {
		return "#microsoft.graph.group"
	}
	return "#microsoft.graph.user"
}

// handleListMembers is GET /groups/{id}/members: direct members as minimal directoryObjects
// (@odata.type and id, choice: Graph returns each member's default properties), sorted by id,
// GroupMembersPerPage per page.
func (s *Server) handleListMembers(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	q := r.URL.Query()
	tok, ok := s.skipToken(w, r, q)
	if !ok {
		return
	}
	s.mu.Lock()
	g := s.visibleGroupLocked(id)
	if g == nil {
		s.mu.Unlock()
		s.notFoundUser(w, r, id)
		return
	}
	vals := []any{}
	next := ""
	for _, m := range g.memberList() {
		k := strings.ToLower(m)
		if k < tok.After {
			continue
		}
		if len(vals) == s.opts.GroupMembersPerPage {
			next = k
			break
		}
		vals = append(vals, map[string]any{"@odata.type": s.memberTypeLocked(m), "id": m})
	}
	gid := g.id
	s.mu.Unlock()
	body := map[string]any{"@odata.context": s.GraphBaseURL() + "/$metadata#directoryObjects", "value": vals}
	if next != "" {
		body["@odata.nextLink"] = s.GraphBaseURL() + "/groups/" + gid + "/members?$skiptoken=" + encodeToken(pageToken{After: next})
	}
	writeGraphJSON(w, http.StatusOK, body)
}

// deletedItemPreamble runs before the users' deletedItems handlers: it serves a soft-deleted group
// (Group.Read.All or higher), and answers 403 to a token without a user role for anything else.
// It reports whether it answered.
func (s *Server) deletedItemPreamble(w http.ResponseWriter, r *http.Request, restore bool) bool {
	id := r.PathValue("id")
	s.mu.Lock()
	g := s.groupLocked(id)
	isGroup := g != nil && g.deleted
	s.mu.Unlock()
	if !isGroup {
		if !tokenHasRole(r, userRoles) {
			s.forbidden(w, r)
			return true
		}
		return false
	}
	if !tokenHasRole(r, groupRoles) {
		s.forbidden(w, r)
		return true
	}
	if restore {
		s.restoreDeletedGroup(w, r, id)
	} else {
		s.getDeletedGroup(w, r, id)
	}
	return true
}

func (s *Server) getDeletedGroup(w http.ResponseWriter, r *http.Request, id string) {
	s.mu.Lock()
	g := s.groupLocked(id)
	if g == nil || !g.deleted {
		s.mu.Unlock()
		s.notFoundUser(w, r, id)
		return
	}
	sel, _, bad := parseGroupSelect(r.URL.Query().Get("$select"), g.props)
	if bad != "" {
		s.mu.Unlock()
		s.badGroupSelect(w, r, bad)
		return
	}
	body := deletedGroupJSON(g, sel)
	s.mu.Unlock()
	body["@odata.context"] = s.GraphBaseURL() + "/$metadata#directoryObjects/$entity"
	writeGraphJSON(w, http.StatusOK, body)
}

func deletedGroupJSON(g *groupRec, sel []string) map[string]any {
	body := projectGroup(g.props, sel)
	body["deletedDateTime"] = g.deletedAt.UTC().Format(time.RFC3339)
	body["@odata.type"] = "#microsoft.graph.group"
	return body
}

// restoreDeletedGroup is POST /directory/deletedItems/{id}/restore for a group: 200 with the group.
func (s *Server) restoreDeletedGroup(w http.ResponseWriter, r *http.Request, id string) {
	s.mu.Lock()
	g := s.restoreGroupLocked(id)
	if g == nil {
		s.mu.Unlock()
		s.notFoundUser(w, r, id)
		return
	}
	n := s.groupNotificationsLocked(g.id, "updated", nil, nil)
	body := projectGroup(g.props, nil)
	s.mu.Unlock()
	s.enqueueAll(n)
	body["@odata.context"] = s.GraphBaseURL() + "/$metadata#directoryObjects/$entity"
	body["@odata.type"] = "#microsoft.graph.group"
	writeGraphJSON(w, http.StatusOK, body)
}

// handleListDeletedGroups is GET /directory/deletedItems/microsoft.graph.group: soft-deleted groups
// sorted by id, GroupPageSize per page.
func (s *Server) handleListDeletedGroups(w http.ResponseWriter, r *http.Request) {
	if !tokenHasRole(r, groupRoles) {
		s.forbidden(w, r)
		return
	}
	q := r.URL.Query()
	tok, ok := s.skipToken(w, r, q)
	if !ok {
		return
	}
	sel, _, bad := parseGroupSelect(q.Get("$select"), nil)
	if bad != "" {
		s.badGroupSelect(w, r, bad)
		return
	}
	s.mu.Lock()
	var deleted []*groupRec
	for _, g := range s.groups.byID {
		if g.deleted && strings.ToLower(g.id) >= tok.After {
			deleted = append(deleted, g)
		}
	}
	slices.SortFunc(deleted, func(a, b *groupRec) int { return strings.Compare(strings.ToLower(a.id), strings.ToLower(b.id)) })
	vals := []any{}
	next := ""
	for _, g := range deleted {
		if len(vals) == s.opts.GroupPageSize {
			next = strings.ToLower(g.id)
			break
		}
		vals = append(vals, deletedGroupJSON(g, sel))
	}
	s.mu.Unlock()
	body := map[string]any{"@odata.context": s.GraphBaseURL() + "/$metadata#directoryObjects/microsoft.graph.group", "value": vals}
	if next != "" {
		body["@odata.nextLink"] = s.GraphBaseURL() + "/directory/deletedItems/microsoft.graph.group?$skiptoken=" + encodeToken(pageToken{After: next, Select: q.Get("$select")})
	}
	writeGraphJSON(w, http.StatusOK, body)
}
