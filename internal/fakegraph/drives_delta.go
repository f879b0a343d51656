package fakegraph

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

func (s *Server) driveRoutes() {
	s.mux.HandleFunc("GET /v1.0/drives/{drive}/root/delta", s.handleDriveDelta)
	s.mux.HandleFunc("GET /v1.0/drives/{drive}/root", s.handleGetDriveItem)
	s.mux.HandleFunc("GET /v1.0/drives/{drive}/items/{item}", s.handleGetDriveItem)
}

// driveToken is the state a delta link carries in its token parameter.
type driveToken struct {
	Drive  string `json:"d"`
	Gen    int64  `json:"g"`
	Full   bool   `json:"full,omitempty"` // enumerating the whole drive (no token, or a 410's Location)
	From   int64  `json:"f,omitempty"`    // changes after this sequence
	Upto   int64  `json:"u,omitempty"`    // the round's snapshot (0: not started; set by the round's first call)
	Offset int    `json:"o,omitempty"`
}

func encodeDriveToken(t driveToken) string {
	b, _ := json.Marshal(t)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeDriveToken(raw string) (driveToken, bool) {
	var t driveToken
	b, err := base64.RawURLEncoding.DecodeString(raw)
	if err != nil || json.Unmarshal(b, &t) != nil {
		return t, false
	}
	return t, true
}

// driveItemProps are the driveItem properties $select may name (Graph's driveItem resource); the double
// fills only some of them and leaves the others out.
var driveItemProps = []string{
	"id", "name", "eTag", "cTag", "createdDateTime", "lastModifiedDateTime", "size", "parentReference", "file",
	"folder", "root", "deleted", "fileSystemInfo", "webUrl", "webDavUrl", "createdBy", "lastModifiedBy", "description",
	"package", "shared", "specialFolder", "image", "photo", "video", "audio", "location", "remoteItem",
	"sharepointIds", "publication", "malware", "searchResult", "bundle",
}

// parseDriveSelect returns the selected properties (nil: all), or the first unknown one.
func parseDriveSelect(raw string) (sel []string, bad string) {
	if raw == "" {
		return nil, ""
	}
	for _, p := range strings.Split(raw, ",") {
		p = strings.TrimSpace(p)
		i := slices.IndexFunc(driveItemProps, func(x string) bool { return strings.EqualFold(x, p) })
		if i < 0 {
			return nil, p
		}
		sel = append(sel, driveItemProps[i])
	}
	return sel, ""
}

func (s *Server) driveNotFound(w http.ResponseWriter, r *http.Request) {
	// OneDrive's code and wording for a missing drive or item.
	s.graphError(w, r, http.StatusNotFound, "itemNotFound", "The resource could not be found.")
}

// handleDriveDelta is GET /drives/{drive-id}/root/delta (docs/graph-facts.md §10.1):
//   - no token: the whole drive (live items, by creation: parents before children unless moved since),
//     in pages linked by @odata.nextLink, the last with @odata.deltaLink; both carry token=.
//   - token=latest: no items, a deltaLink from now.
//   - a deltaLink's token: every item with a change since, once each in its latest state (deleted ones with
//     the deleted facet and few properties), the root and the parent folders of each change included
//     unless Options.DriveNoParents or the deltaExcludeParent preference.
//   - a token the drive no longer honours (ExpireDriveDeltaTokens) or cannot read: 410 Gone, error code
//     resyncRequired (innerError.code only with Options.DriveResyncCode), and a Location header whose URL
//     enumerates the drive afresh.
//
// $select (unknown property: 400) and $top (at most DriveMaxTop, lowered silently, choice) are honoured and
// carried into the links (choice); $filter, $orderby, $expand, $skip and $search are refused with 400
// (choice: not modelled). A change is visible only once SetDriveDeltaLag's delay and call count have passed.
func (s *Server) handleDriveDelta(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for _, p := range []string{"$filter", "$orderby", "$expand", "$skip", "$search", "$count"} {
		if q.Has(p) {
			s.graphError(w, r, http.StatusBadRequest, "invalidRequest", "Query option '"+p+"' is not supported by the double on driveItem delta.")
			return
		}
	}
	sel, bad := parseDriveSelect(q.Get("$select"))
	if bad != "" {
		s.graphError(w, r, http.StatusBadRequest, "BadRequest", "Could not find a property named '"+bad+"' on type 'microsoft.graph.driveItem'.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pageSize := s.opts.DrivePageSize
	if t := q.Get("$top"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 1 {
			s.graphError(w, r, http.StatusBadRequest, "BadRequest", "Invalid $top value '"+t+"'.")
			return
		}
		pageSize = min(n, s.opts.DriveMaxTop)
	}
	dr, err := s.driveLocked(r.PathValue("drive"))
	if err != nil {
		s.driveNotFound(w, r)
		return
	}
	dr.calls++
	// UNCONFIRMED form: Graph's page names a deltaExcludeParent request header; the reference calls it a
	// preference. Both a header of that name and a Prefer value are honoured.
	excludeParents := s.opts.DriveNoParents || r.Header.Get("deltaExcludeParent") != "" ||
		slices.ContainsFunc(r.Header.Values("Prefer"), func(v string) bool { return strings.Contains(strings.ToLower(v), "deltaexcludeparent") })
	link := func(t driveToken) string {
		t.Drive, t.Gen = dr.id, dr.gen
		v := url.Values{"token": {encodeDriveToken(t)}}
		if q.Has("$select") {
			v.Set("$select", q.Get("$select"))
		}
		if q.Has("$top") {
			v.Set("$top", q.Get("$top"))
		}
		// The drive id reached here through its grammar (letters, digits, '!', '-', '_'): safe in a path as is.
		return s.GraphBaseURL() + "/drives/" + dr.id + "/root/delta?" + v.Encode()
	}
	high := dr.visibleHigh(s.now())
	var tok driveToken
	switch raw := q.Get("token"); raw {
	case "":
		tok = driveToken{Full: true, Upto: high}
	case "latest":
		writeGraphJSON(w, http.StatusOK, map[string]any{
			"@odata.context":   s.GraphBaseURL() + "/$metadata#Collection(driveItem)",
			"value":            []any{},
			"@odata.deltaLink": link(driveToken{From: high}),
		})
		return
	default:
		var ok bool
		tok, ok = decodeDriveToken(raw)
		if !ok || tok.Drive != dr.id || tok.Gen != dr.gen {
			s.driveResync(w, r, link(driveToken{Full: true}))
			return
		}
		if tok.Upto == 0 {
			tok.Upto = high
		}
	}
	var items []*itemRec
	if tok.Full {
		for _, it := range dr.sorted() {
			if it.createdSeq != 0 && it.createdSeq <= tok.Upto && (it.deletedSeq == 0 || it.deletedSeq > tok.Upto) {
				items = append(items, it)
			}
		}
	} else {
		items = dr.changedBetween(tok.From, tok.Upto, excludeParents)
	}
	end := min(len(items), tok.Offset+pageSize)
	vals := []any{}
	for _, it := range items[min(tok.Offset, end):end] {
		vals = append(vals, dr.itemJSON(it, sel, true))
	}
	body := map[string]any{"@odata.context": s.GraphBaseURL() + "/$metadata#Collection(driveItem)", "value": vals}
	if end < len(items) {
		next := tok
		next.Offset = end
		body["@odata.nextLink"] = link(next)
	} else {
		body["@odata.deltaLink"] = link(driveToken{From: tok.Upto})
	}
	writeGraphJSON(w, http.StatusOK, body)
}

// driveResync answers 410 Gone resyncRequired with a Location that enumerates the drive afresh.
func (s *Server) driveResync(w http.ResponseWriter, r *http.Request, location string) {
	w.Header().Set("Location", location)
	// The body as observed (OneDrive/onedrive-api-docs issue 1356); innerError.code only with DriveResyncCode.
	inner := map[string]any{
		"date":       s.now().UTC().Format("2006-01-02T15:04:05"),
		"request-id": w.Header().Get("request-id"),
	}
	if s.opts.DriveResyncCode != "" {
		inner["code"] = s.opts.DriveResyncCode
	}
	writeJSON(w, http.StatusGone, map[string]any{"error": map[string]any{
		"code":       "resyncRequired",
		"message":    "Resync required. Replace any local items with the server's version (including deletes) if you're sure that the service was up to date with your local changes when you last sync'd. Upload any local changes that the server doesn't know about.",
		"innerError": inner,
	}})
}

// handleGetDriveItem is GET /drives/{drive-id}/items/{item-id} and GET /drives/{drive-id}/root: one live
// item with its cTag; a deleted or unknown one 404s. $select as on delta.
func (s *Server) handleGetDriveItem(w http.ResponseWriter, r *http.Request) {
	sel, bad := parseDriveSelect(r.URL.Query().Get("$select"))
	if bad != "" {
		s.graphError(w, r, http.StatusBadRequest, "BadRequest", "Could not find a property named '"+bad+"' on type 'microsoft.graph.driveItem'.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	dr, err := s.driveLocked(r.PathValue("drive"))
	if err != nil {
		s.driveNotFound(w, r)
		return
	}
	id := r.PathValue("item")
	if id == "" {
		id = dr.rootID
	}
	it := dr.live(id)
	if it == nil {
		s.driveNotFound(w, r)
		return
	}
	body := dr.itemJSON(it, sel, false)
	body["@odata.context"] = s.GraphBaseURL() + "/$metadata#drives('" + dr.id + "')/items/$entity"
	writeGraphJSON(w, http.StatusOK, body)
}

// visibleHigh is the highest sequence up to which every change of the drive is visible to delta now.
func (dr *driveRec) visibleHigh(now time.Time) int64 {
	high := int64(0)
	for _, c := range dr.log {
		if now.Before(c.visibleAt) || dr.calls <= c.afterCall {
			break
		}
		high = c.seq
	}
	return high
}

// changedBetween lists, once each in the order of their first change, the items changed in (from, upto];
// an item there only as a parent is left out when excludeParents.
func (dr *driveRec) changedBetween(from, upto int64, excludeParents bool) []*itemRec {
	i, _ := slices.BinarySearchFunc(dr.log, from+1, func(c driveChange, seq int64) int { return cmp.Compare(c.seq, seq) })
	var order []string
	self := map[string]bool{}
	seen := map[string]bool{}
	for _, c := range dr.log[i:] {
		if c.seq > upto {
			break
		}
		if !seen[c.itemID] {
			seen[c.itemID] = true
			order = append(order, c.itemID)
		}
		if !c.parent {
			self[c.itemID] = true
		}
	}
	var out []*itemRec
	for _, id := range order {
		if excludeParents && !self[id] {
			continue
		}
		out = append(out, dr.items[id])
	}
	return out
}

// itemJSON renders an item as Graph does. In delta (inDelta) a business drive leaves out cTag, and a
// deleted item has only id, parentReference, the deleted facet and its file or folder facet (docs/graph-facts.md
// "Drives": few properties; Graph's page lists cTag and name as left out on delete, the double leaves out
// more, choice). parentReference carries no path (Graph's delta never does; the double never does).
// $select keeps id and, on a deleted item, the deleted facet (choice: a client must be able to act).
func (dr *driveRec) itemJSON(it *itemRec, sel []string, inDelta bool) map[string]any {
	parent := map[string]any{"driveType": dr.driveType, "driveId": dr.id}
	if it.id != dr.rootID {
		parent["id"] = it.parentID
	}
	var m map[string]any
	if it.deletedSeq != 0 {
		m = map[string]any{"id": it.id, "parentReference": parent, "deleted": map[string]any{"state": "deleted"}}
		if it.folder {
			m["folder"] = map[string]any{}
		} else {
			m["file"] = map[string]any{}
		}
	} else {
		size := it.size
		m = map[string]any{
			"id":                   it.id,
			"name":                 it.name,
			"eTag":                 it.eTag(),
			"createdDateTime":      it.created.UTC().Format(time.RFC3339),
			"lastModifiedDateTime": it.modified.UTC().Format(time.RFC3339),
			"parentReference":      parent,
			"fileSystemInfo": map[string]any{
				"createdDateTime":      it.created.UTC().Format(time.RFC3339),
				"lastModifiedDateTime": it.modified.UTC().Format(time.RFC3339),
			},
		}
		if !inDelta || dr.driveType == "personal" {
			m["cTag"] = it.cTag()
		}
		if it.folder {
			var n int
			size, n = dr.folderSize(it.id)
			m["folder"] = map[string]any{"childCount": n}
		} else {
			m["file"] = map[string]any{"mimeType": it.mimeType}
		}
		m["size"] = size
		if it.id == dr.rootID {
			m["root"] = map[string]any{}
		}
	}
	if sel == nil {
		return m
	}
	out := map[string]any{"id": it.id}
	for _, p := range sel {
		if v, ok := m[p]; ok {
			out[p] = v
		}
	}
	if d, ok := m["deleted"]; ok {
		out["deleted"] = d
	}
	return out
}
