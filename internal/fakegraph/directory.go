package fakegraph

import (
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// User is a directory user. Props are keyed by Graph property name (displayName,
// userPrincipalName, mail, accountEnabled, jobTitle, department, ...); "id" is ID.
type User struct {
	ID    string
	Props map[string]any
}

type userRec struct {
	id        string
	props     map[string]any
	visibleAt time.Time // replication lag: GET 404s before this (Clock)
	deleted   bool      // soft-deleted: in directory/deletedItems
	deletedAt time.Time
}

// changeRec is one entry of the directory change log that /users/delta reads.
type changeRec struct {
	seq     int64
	id      string
	kind    string // "upsert" (full object), "changed" (soft delete), "deleted" (permanent)
	keys    []string
	at      time.Time
	restore bool
}

// defaultUserSelect is Graph v1.0's default property set for a user without $select.
var defaultUserSelect = []string{"businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone", "officeLocation", "preferredLanguage", "surname", "userPrincipalName", "id"}

// knownUserProps are the v1.0 user properties $select may name (plus any key a test put in Props).
var knownUserProps = map[string]bool{}

func init() {
	for _, p := range strings.Split("id,accountEnabled,ageGroup,assignedLicenses,assignedPlans,businessPhones,city,companyName,consentProvidedForMinor,country,createdDateTime,creationType,deletedDateTime,department,displayName,employeeHireDate,employeeId,employeeOrgData,employeeType,externalUserState,faxNumber,givenName,identities,imAddresses,isResourceAccount,jobTitle,lastPasswordChangeDateTime,legalAgeGroupClassification,mail,mailNickname,manager,mobilePhone,officeLocation,onPremisesDistinguishedName,onPremisesDomainName,onPremisesExtensionAttributes,onPremisesImmutableId,onPremisesLastSyncDateTime,onPremisesSamAccountName,onPremisesSecurityIdentifier,onPremisesSyncEnabled,onPremisesUserPrincipalName,otherMails,passwordPolicies,postalCode,preferredDataLocation,preferredLanguage,provisionedPlans,proxyAddresses,securityIdentifier,showInAddressList,signInSessionsValidFromDateTime,state,streetAddress,surname,usageLocation,userPrincipalName,userType", ",") {
		knownUserProps[strings.ToLower(p)] = true
	}
}

// AddUser creates a user (a new GUID when ID is empty) and sends `updated` (docs/graph-facts.md §3.4: creation arrives as updated).
func (s *Server) AddUser(u User) {
	if u.ID == "" {
		u.ID = newGUID()
	}
	now := s.now()
	s.mu.Lock()
	props := maps.Clone(u.Props)
	if props == nil {
		props = map[string]any{}
	}
	props["id"] = u.ID
	if _, ok := props["createdDateTime"]; !ok {
		props["createdDateTime"] = now.UTC().Format(time.RFC3339)
	}
	s.users[strings.ToLower(u.ID)] = &userRec{id: u.ID, props: props, visibleAt: now.Add(s.lag)}
	s.recordChange(u.ID, "upsert", nil, false)
	n := s.notificationsFor(u.ID, "updated")
	s.mu.Unlock()
	s.enqueueAll(n)
}

// UpdateUser merges props into an active user (a nil value sets the property to null) and sends `updated`.
// Unknown or soft-deleted users are ignored (logged).
func (s *Server) UpdateUser(id string, props map[string]any) {
	s.mu.Lock()
	u := s.users[strings.ToLower(id)]
	if u == nil || u.deleted {
		s.mu.Unlock()
		s.log.Warn("fakegraph: UpdateUser on a missing or soft-deleted user", "id", id)
		return
	}
	keys := make([]string, 0, len(props))
	for k, v := range props {
		if k == "id" {
			continue
		}
		u.props[k] = v
		keys = append(keys, k)
	}
	s.recordChange(u.id, "upsert", keys, false)
	n := s.notificationsFor(u.id, "updated")
	s.mu.Unlock()
	s.enqueueAll(n)
}

// SoftDeleteUser moves an active user to directory/deletedItems and sends `updated` (docs/graph-facts.md §3.4).
func (s *Server) SoftDeleteUser(id string) {
	s.mu.Lock()
	u := s.users[strings.ToLower(id)]
	if u == nil || u.deleted {
		s.mu.Unlock()
		s.log.Warn("fakegraph: SoftDeleteUser on a missing or deleted user", "id", id)
		return
	}
	u.deleted, u.deletedAt = true, s.now()
	s.recordChange(u.id, "changed", nil, false)
	n := s.notificationsFor(u.id, "updated")
	s.mu.Unlock()
	s.enqueueAll(n)
}

// RestoreUser brings a soft-deleted user back and sends `updated`; delta reports it as new.
func (s *Server) RestoreUser(id string) {
	s.mu.Lock()
	ok := s.restoreLocked(id)
	var n []pendingNotification
	if ok {
		n = s.notificationsFor(s.users[strings.ToLower(id)].id, "updated")
	}
	s.mu.Unlock()
	if !ok {
		s.log.Warn("fakegraph: RestoreUser on a user that is not soft-deleted", "id", id)
	}
	s.enqueueAll(n)
}

func (s *Server) restoreLocked(id string) bool {
	u := s.users[strings.ToLower(id)]
	if u == nil || !u.deleted {
		return false
	}
	u.deleted, u.deletedAt = false, time.Time{}
	s.recordChange(u.id, "upsert", nil, true)
	return true
}

// PermanentlyDeleteUser removes a user for good and sends `deleted` (docs/graph-facts.md §3.4: only permanent
// deletion is `deleted`). Choice: an active user first goes through the deleted items, as in Entra ID,
// so it gets `updated` (soft delete) then `deleted`.
func (s *Server) PermanentlyDeleteUser(id string) {
	s.mu.Lock()
	u := s.users[strings.ToLower(id)]
	if u == nil {
		s.mu.Unlock()
		s.log.Warn("fakegraph: PermanentlyDeleteUser on a missing user", "id", id)
		return
	}
	var n []pendingNotification
	if !u.deleted {
		u.deleted, u.deletedAt = true, s.now()
		s.recordChange(u.id, "changed", nil, false)
		n = append(n, s.notificationsFor(u.id, "updated")...)
	}
	delete(s.users, strings.ToLower(id))
	s.recordChange(u.id, "deleted", nil, false)
	n = append(n, s.notificationsFor(u.id, "deleted")...)
	s.mu.Unlock()
	s.enqueueAll(n)
}

// User returns an active (not soft-deleted) user, ignoring replication lag.
func (s *Server) User(id string) (User, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[strings.ToLower(id)]
	if u == nil || u.deleted {
		return User{}, false
	}
	return User{ID: u.id, Props: maps.Clone(u.props)}, true
}

// Users returns every active user, sorted by id.
func (s *Server) Users() []User {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []User
	for _, u := range s.activeSorted() {
		out = append(out, User{ID: u.id, Props: maps.Clone(u.props)})
	}
	return out
}

// SoftDeleted reports whether id is in directory/deletedItems.
func (s *Server) SoftDeleted(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[strings.ToLower(id)]
	return u != nil && u.deleted
}

// ExpireDeltaTokens makes every delta link issued so far answer syncStateNotFound (docs/graph-facts.md §6).
func (s *Server) ExpireDeltaTokens() {
	s.mu.Lock()
	s.deltaGen++
	s.mu.Unlock()
}

func (s *Server) recordChange(id, kind string, keys []string, restore bool) {
	s.changeSeq++
	s.changes = append(s.changes, changeRec{seq: s.changeSeq, id: id, kind: kind, keys: keys, at: s.now(), restore: restore})
}

func (s *Server) activeSorted() []*userRec {
	var us []*userRec
	for _, u := range s.users {
		if !u.deleted {
			us = append(us, u)
		}
	}
	slices.SortFunc(us, func(a, b *userRec) int { return strings.Compare(strings.ToLower(a.id), strings.ToLower(b.id)) })
	return us
}

// parseSelect validates $select; returns nil for "no $select".
func parseSelect(q url.Values, extra map[string]any) ([]string, string) {
	raw := q.Get("$select")
	if raw == "" {
		return nil, ""
	}
	var sel []string
	for _, p := range strings.Split(raw, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !knownUserProps[strings.ToLower(p)] {
			if _, ok := extra[p]; !ok {
				return nil, p
			}
		}
		sel = append(sel, p)
	}
	return sel, ""
}

// project returns the selected properties (absent ones as null) plus id.
func project(props map[string]any, sel []string) map[string]any {
	if sel == nil {
		sel = defaultUserSelect
	}
	out := map[string]any{"id": props["id"]}
	for _, k := range sel {
		v, ok := props[k]
		if !ok {
			for pk, pv := range props { // Graph property names are case-insensitive in $select
				if strings.EqualFold(pk, k) {
					v, ok = pv, true
					k = pk
					break
				}
			}
		}
		if !ok {
			v = nil
		}
		out[k] = v
	}
	return out
}

func (s *Server) badSelect(w http.ResponseWriter, r *http.Request, p string) {
	s.graphError(w, r, http.StatusBadRequest, "Request_BadRequest", "Could not find a property named '"+p+"' on type 'microsoft.graph.user'.")
}

func (s *Server) handleGetUser(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	u := s.users[strings.ToLower(id)]
	if u == nil { // /users/{userPrincipalName}
		for _, c := range s.users {
			if upn, _ := c.props["userPrincipalName"].(string); upn != "" && strings.EqualFold(upn, id) {
				u = c
			}
		}
	}
	// [inferred] docs/graph-facts.md §3.4: a soft-deleted user 404s on /users/{id}.
	if u == nil || u.deleted || s.now().Before(u.visibleAt) {
		s.mu.Unlock()
		s.notFoundUser(w, r, id)
		return
	}
	sel, bad := parseSelect(r.URL.Query(), u.props)
	if bad != "" {
		s.mu.Unlock()
		s.badSelect(w, r, bad)
		return
	}
	body := project(u.props, sel)
	s.mu.Unlock()
	body["@odata.context"] = s.entityContext("users", sel)
	writeGraphJSON(w, http.StatusOK, body)
}

func (s *Server) handleGetDeletedItem(w http.ResponseWriter, r *http.Request) {
	if s.deletedItemPreamble(w, r, false) {
		return
	}
	id := r.PathValue("id")
	s.mu.Lock()
	u := s.users[strings.ToLower(id)]
	if u == nil || !u.deleted {
		s.mu.Unlock()
		s.notFoundUser(w, r, id)
		return
	}
	sel, bad := parseSelect(r.URL.Query(), u.props)
	if bad != "" {
		s.mu.Unlock()
		s.badSelect(w, r, bad)
		return
	}
	body := project(u.props, sel)
	body["deletedDateTime"] = u.deletedAt.UTC().Format(time.RFC3339)
	s.mu.Unlock()
	body["@odata.context"] = s.GraphBaseURL() + "/$metadata#directoryObjects/$entity"
	body["@odata.type"] = "#microsoft.graph.user"
	writeGraphJSON(w, http.StatusOK, body)
}

// handleRestoreDeletedItem is Graph's POST /directory/deletedItems/{id}/restore.
func (s *Server) handleRestoreDeletedItem(w http.ResponseWriter, r *http.Request) {
	if s.deletedItemPreamble(w, r, true) {
		return
	}
	id := r.PathValue("id")
	s.mu.Lock()
	ok := s.restoreLocked(id)
	var n []pendingNotification
	var body map[string]any
	if ok {
		u := s.users[strings.ToLower(id)]
		n = s.notificationsFor(u.id, "updated")
		body = project(u.props, nil)
	}
	s.mu.Unlock()
	if !ok {
		s.notFoundUser(w, r, id)
		return
	}
	s.enqueueAll(n)
	body["@odata.context"] = s.GraphBaseURL() + "/$metadata#directoryObjects/$entity"
	body["@odata.type"] = "#microsoft.graph.user"
	writeGraphJSON(w, http.StatusOK, body)
}

// pageToken is the opaque state behind $skiptoken / $deltatoken (base64url JSON).
type pageToken struct {
	Offset int    `json:"o,omitempty"`
	From   int64  `json:"f,omitempty"` // delta: changes after this seq
	Upto   int64  `json:"u,omitempty"` // delta: snapshot seq of this round
	Select string `json:"s,omitempty"`
	Full   bool   `json:"full,omitempty"`
	Issued int64  `json:"t,omitempty"` // Clock unix seconds
	Gen    int64  `json:"g,omitempty"` // ExpireDeltaTokens generation
	After  string `json:"a,omitempty"` // groups: resume at the first lower-case id >= After
	Member int    `json:"m,omitempty"` // groups delta: members of the After group already sent
}

func encodeToken(t pageToken) string {
	b, _ := json.Marshal(t)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeToken(s string) (pageToken, bool) {
	var t pageToken
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || json.Unmarshal(b, &t) != nil {
		return t, false
	}
	return t, true
}

// entityContext is the @odata.context of one object of a collection, naming the selected properties.
func (s *Server) entityContext(collection string, sel []string) string {
	if sel == nil {
		return s.GraphBaseURL() + "/$metadata#" + collection + "/$entity"
	}
	return s.GraphBaseURL() + "/$metadata#" + collection + "(" + strings.Join(sel, ",") + ")/$entity"
}

// skipToken reads a list request's $skiptoken (none: the zero token) and restores into q the $select the
// token was issued with, since Graph bakes the query into its next links. ok is false when the token is not
// one the double issued; the 400 has been written then.
func (s *Server) skipToken(w http.ResponseWriter, r *http.Request, q url.Values) (tok pageToken, ok bool) {
	st := q.Get("$skiptoken")
	if st == "" {
		return pageToken{}, true
	}
	if tok, ok = decodeToken(st); !ok {
		s.graphError(w, r, http.StatusBadRequest, "Request_BadRequest", "Invalid $skiptoken.")
		return tok, false
	}
	q.Set("$select", tok.Select)
	return tok, true
}

// handleListUsers is GET /users with $select and $top, paged by @odata.nextLink.
func (s *Server) handleListUsers(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	tok, ok := s.skipToken(w, r, q)
	if !ok {
		return
	}
	size := s.opts.UserPageSize
	s.mu.Lock()
	sel, bad := parseSelect(q, nil)
	if bad != "" {
		s.mu.Unlock()
		s.badSelect(w, r, bad)
		return
	}
	all := s.activeSorted()
	now := s.now()
	var vals []any
	i := tok.Offset
	for ; i < len(all) && len(vals) < size; i++ {
		if now.Before(all[i].visibleAt) {
			continue
		}
		vals = append(vals, project(all[i].props, sel))
	}
	more := i < len(all)
	s.mu.Unlock()
	body := map[string]any{"@odata.context": s.GraphBaseURL() + "/$metadata#users", "value": nonNil(vals)}
	if more {
		body["@odata.nextLink"] = s.GraphBaseURL() + "/users?$skiptoken=" + encodeToken(pageToken{Offset: i, Select: q.Get("$select")})
	}
	writeGraphJSON(w, http.StatusOK, body)
}

func nonNil(v []any) []any {
	if v == nil {
		return []any{}
	}
	return v
}

// handleUsersDelta is GET /users/delta (docs/graph-facts.md §6): a full round paged by $skiptoken ending in a
// $deltatoken link; $deltatoken=latest gives only a deltaLink; a delta link gives changes since it
// was issued, the last occurrence per user, @removed with reason "changed" (soft delete) or "deleted".
// With $select, updates touching none of the selected properties are left out.
// Choice: an expired token (ExpireDeltaTokens, or older than 7 days by Clock) answers 400 syncStateNotFound.
func (s *Server) handleUsersDelta(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for _, p := range []string{"$expand", "$top", "$orderby"} {
		if q.Has(p) {
			s.graphError(w, r, http.StatusBadRequest, "Request_UnsupportedQuery", "Unsupported query option '"+p+"' for delta on users.")
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	link := func(kind string, t pageToken) string {
		t.Issued = now.Unix()
		t.Gen = s.deltaGen
		return s.GraphBaseURL() + "/users/delta?" + kind + "=" + encodeToken(t)
	}
	var tok pageToken
	switch {
	case q.Get("$deltatoken") == "latest":
		sel := q.Get("$select")
		if _, bad := parseSelect(q, nil); bad != "" {
			s.badSelect(w, r, bad)
			return
		}
		writeGraphJSON(w, http.StatusOK, map[string]any{
			"@odata.context":   s.GraphBaseURL() + "/$metadata#users",
			"value":            []any{},
			"@odata.deltaLink": link("$deltatoken", pageToken{From: s.changeSeq, Select: sel}),
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
			tok = pageToken{From: tok.From, Upto: s.changeSeq, Select: tok.Select}
		}
	default:
		tok = pageToken{Full: true, Upto: s.changeSeq, Select: q.Get("$select")}
	}
	sq := url.Values{"$select": {tok.Select}}
	sel, bad := parseSelect(sq, nil)
	if bad != "" {
		s.badSelect(w, r, bad)
		return
	}
	var items []any
	var total int
	if tok.Full {
		all := s.activeSorted()
		total = len(all)
		for i := tok.Offset; i < total && len(items) < s.opts.UserPageSize; i++ {
			items = append(items, project(all[i].props, sel))
		}
	} else {
		// last occurrence per user in (From, Upto]
		last := map[string]changeRec{}
		touched := map[string]bool{}
		var order []string
		for _, c := range s.changes {
			if c.seq <= tok.From || c.seq > tok.Upto {
				continue
			}
			k := strings.ToLower(c.id)
			if _, seen := last[k]; !seen {
				order = append(order, k)
			}
			last[k] = c
			if c.kind != "upsert" || c.keys == nil || sel == nil || c.restore {
				touched[k] = true
			} else {
				for _, key := range c.keys {
					for _, sk := range sel {
						if strings.EqualFold(key, sk) {
							touched[k] = true
						}
					}
				}
			}
		}
		var ids []string
		for _, k := range order {
			if touched[k] {
				ids = append(ids, k)
			}
		}
		total = len(ids)
		for i := tok.Offset; i < total && len(items) < s.opts.UserPageSize; i++ {
			c := last[ids[i]]
			u := s.users[ids[i]]
			switch {
			case c.kind == "deleted" || u == nil:
				items = append(items, map[string]any{"id": c.id, "@removed": map[string]any{"reason": "deleted"}})
			case c.kind == "changed" || u.deleted:
				items = append(items, map[string]any{"id": c.id, "@removed": map[string]any{"reason": "changed"}})
			default:
				items = append(items, project(u.props, sel))
			}
		}
	}
	body := map[string]any{"@odata.context": s.GraphBaseURL() + "/$metadata#users", "value": nonNil(items)}
	if next := tok.Offset + len(items); next < total {
		t := tok
		t.Offset = next
		body["@odata.nextLink"] = link("$skiptoken", t)
	} else {
		body["@odata.deltaLink"] = link("$deltatoken", pageToken{From: tok.Upto, Select: tok.Select})
	}
	writeGraphJSON(w, http.StatusOK, body)
}
