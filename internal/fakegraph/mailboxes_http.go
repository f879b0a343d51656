package fakegraph

import (
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Application permissions for mailboxes (https://learn.microsoft.com/graph/permissions-reference):
// messages and mail folders need Mail.Read or higher, events Calendars.Read or higher, for reads and
// for subscriptions alike.
var (
	mailRoles     = []string{"Mail.Read", "Mail.ReadWrite"}
	calendarRoles = []string{"Calendars.Read", "Calendars.ReadWrite"}
)

// mailPathRE matches the mailbox routes' paths: /v1.0/users/{id}/messages…, /mailFolders…, /events….
var mailPathRE = regexp.MustCompile(`(?i)^/v1\.0/users/[^/]+/(messages|mailfolders|events)(/|$)`)

// mailboxRolesFor names the roles a mailbox path needs; ok is false for any other path.
func mailboxRolesFor(path string) (roles []string, ok bool) {
	m := mailPathRE.FindStringSubmatch(path)
	if m == nil {
		return nil, false
	}
	if strings.EqualFold(m[1], "events") {
		return calendarRoles, true
	}
	return mailRoles, true
}

// defaultMessageSelect is what a message GET without $select returns (choice: the properties of Graph's
// default message representation the double holds).
var defaultMessageSelect = strings.Split("id,createdDateTime,lastModifiedDateTime,changeKey,categories,receivedDateTime,sentDateTime,hasAttachments,internetMessageId,subject,bodyPreview,importance,parentFolderId,conversationId,isRead,isDraft,from,sender,toRecipients,ccRecipients,flag,inferenceClassification,body", ",")

var defaultEventSelect = strings.Split("id,createdDateTime,lastModifiedDateTime,changeKey,categories,subject,bodyPreview,importance,sensitivity,isAllDay,isCancelled,showAs,type,start,end,location,organizer,attendees,iCalUId", ",")

// knownMailProps are the properties $select may name per kind, lower-case (plus any key a test put in Props).
var knownMailProps = map[string]map[string]bool{"messages": {}, "events": {}}

func init() {
	for _, p := range append(slices.Clone(defaultMessageSelect), strings.Split("bccRecipients,replyTo,uniqueBody,conversationIndex,isDeliveryReceiptRequested,isReadReceiptRequested,webLink", ",")...) {
		knownMailProps["messages"][strings.ToLower(p)] = true
	}
	for _, p := range append(slices.Clone(defaultEventSelect), strings.Split("body,recurrence,responseStatus,seriesMasterId,webLink,onlineMeeting,isOnlineMeeting,reminderMinutesBeforeStart,isOrganizer,hasAttachments,originalStartTimeZone,originalEndTimeZone", ",")...) {
		knownMailProps["events"][strings.ToLower(p)] = true
	}
}

// mailboxRoutes mounts the mailbox routes (see the package doc).
func (s *Server) mailboxRoutes() {
	m := s.mux
	m.HandleFunc("GET /v1.0/users/{id}/messages/{item}", s.handleGetMailItem("messages"))
	m.HandleFunc("GET /v1.0/users/{id}/events/{item}", s.handleGetMailItem("events"))
	m.HandleFunc("GET /v1.0/users/{id}/messages", s.handleListMailItems("messages"))
	m.HandleFunc("GET /v1.0/users/{id}/events", s.handleListMailItems("events"))
	m.HandleFunc("GET /v1.0/users/{id}/mailFolders/{folder}/messages", s.handleListMailItems("messages"))
}

func odataType(kind string) string {
	if kind == "events" {
		return "microsoft.graph.event"
	}
	return "microsoft.graph.message"
}

// mailSelect validates a $select for kind; nil means the default set. id is always returned.
func mailSelect(kind, raw string, extra map[string]any) (sel []string, bad string) {
	if raw == "" {
		return nil, ""
	}
	for _, p := range strings.Split(raw, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if _, ok := extra[p]; !ok && !knownMailProps[kind][strings.ToLower(p)] {
			return nil, p
		}
		sel = append(sel, p)
	}
	return sel, ""
}

func projectMail(kind string, props map[string]any, sel []string) map[string]any {
	if sel == nil {
		sel = defaultMessageSelect
		if kind == "events" {
			sel = defaultEventSelect
		}
	}
	out := map[string]any{"@odata.etag": `W/"` + toString(props["changeKey"]) + `"`, "id": props["id"]}
	for _, p := range sel {
		for k, v := range props {
			if strings.EqualFold(k, p) {
				out[k] = v
			}
		}
	}
	return out
}

func toString(v any) string {
	s, _ := v.(string)
	return s
}

// mailboxPreamble finds the mailbox of a request and answers for it when it cannot be read: 403
// ErrorAccessDenied when an application access policy excludes it, 404 MailboxNotEnabledForRESTAPI
// when the double holds no mailbox for the user (the double's choice of Graph's answer for a user
// without an Exchange Online mailbox). s.mu is held on success.
func (s *Server) mailboxPreamble(w http.ResponseWriter, r *http.Request) (*mailboxRec, bool) {
	user := r.PathValue("id")
	s.mu.Lock()
	mb := s.mailboxLocked(user)
	switch {
	case mb == nil:
		s.mu.Unlock()
		s.graphError(w, r, http.StatusNotFound, "MailboxNotEnabledForRESTAPI", "The mailbox is either inactive, soft-deleted, or is hosted on-premise.")
		return nil, false
	case mb.denied:
		s.mu.Unlock()
		s.graphError(w, r, http.StatusForbidden, "ErrorAccessDenied", accessPolicyReadMessage)
		return nil, false
	}
	return mb, true
}

// handleGetMailItem is GET /users/{id}/messages/{id} and /users/{id}/events/{id} with $select; a
// message that moved (its old id) or was deleted answers 404 ErrorItemNotFound.
func (s *Server) handleGetMailItem(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("item")
		mb, ok := s.mailboxPreamble(w, r)
		if !ok {
			return
		}
		it := mb.items(kind)[id]
		if it == nil {
			s.mu.Unlock()
			s.graphError(w, r, http.StatusNotFound, "ErrorItemNotFound", "The specified object was not found in the store.")
			return
		}
		props := maps.Clone(it.props)
		user := mb.user
		s.mu.Unlock()
		sel, bad := mailSelect(kind, r.URL.Query().Get("$select"), props)
		if bad != "" {
			s.graphError(w, r, http.StatusBadRequest, "RequestBroker--ParseUri", "Could not find a property named '"+bad+"' on type '"+odataType(kind)+"'.")
			return
		}
		body := projectMail(kind, props, sel)
		ctx := s.GraphBaseURL() + "/$metadata#users('" + url.PathEscape(user) + "')/" + kind
		if sel != nil {
			ctx += "(" + strings.Join(sel, ",") + ")"
		}
		body["@odata.context"] = ctx + "/$entity"
		writeGraphJSON(w, http.StatusOK, body)
	}
}

// mailFilterRE is the one $filter the double understands on lists: lastModifiedDateTime ge|gt a date-time.
var mailFilterRE = regexp.MustCompile(`^lastModifiedDateTime (ge|gt) (\S+)$`)

// handleListMailItems lists a mailbox's messages (or one folder's) or events: $select, $top (default 10,
// at most 1000), $filter=lastModifiedDateTime ge|gt {date-time} and $orderby=lastModifiedDateTime desc
// (anything else 400, choice), ordered by lastModifiedDateTime descending then id (choice, with or without
// the $orderby), paged by @odata.nextLink with $skip as Outlook's lists page.
func (s *Server) handleListMailItems(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		top := 10
		if t := q.Get("$top"); t != "" {
			n, err := strconv.Atoi(t)
			if err != nil || n < 1 || n > 1000 {
				s.graphError(w, r, http.StatusBadRequest, "ErrorInvalidUrlQuery", "The value of $top must be between 1 and 1000.")
				return
			}
			top = n
		}
		skip := 0
		if t := q.Get("$skip"); t != "" {
			n, err := strconv.Atoi(t)
			if err != nil || n < 0 {
				s.graphError(w, r, http.StatusBadRequest, "ErrorInvalidUrlQuery", "Invalid $skip.")
				return
			}
			skip = n
		}
		if o := q.Get("$orderby"); o != "" && !strings.EqualFold(strings.Join(strings.Fields(o), " "), "lastModifiedDateTime desc") {
			s.graphError(w, r, http.StatusBadRequest, "ErrorInvalidUrlQuery", "The double supports only $orderby=lastModifiedDateTime desc.")
			return
		}
		var since time.Time
		strict := false
		if f := q.Get("$filter"); f != "" {
			m := mailFilterRE.FindStringSubmatch(strings.TrimSpace(f))
			var err error
			if m != nil {
				since, err = time.Parse(time.RFC3339Nano, m[2])
			}
			if m == nil || err != nil {
				s.graphError(w, r, http.StatusBadRequest, "ErrorInvalidUrlQueryFilter", "The double supports only $filter=lastModifiedDateTime ge|gt {date-time}.")
				return
			}
			strict = m[1] == "gt"
		}
		folder := ""
		if ref := r.PathValue("folder"); ref != "" {
			f, ok := folderByRef(r.PathValue("id"), ref)
			if !ok {
				s.graphError(w, r, http.StatusNotFound, "ErrorItemNotFound", "The specified object was not found in the store.")
				return
			}
			folder = f
		}
		mb, ok := s.mailboxPreamble(w, r)
		if !ok {
			return
		}
		var items []*mailItem
		for _, it := range mb.items(kind) {
			if folder != "" && it.folder != folder {
				continue
			}
			if !since.IsZero() && (it.modified.Before(since) || (strict && it.modified.Equal(since))) {
				continue
			}
			items = append(items, it)
		}
		slices.SortFunc(items, func(a, b *mailItem) int {
			if c := b.modified.Compare(a.modified); c != 0 {
				return c
			}
			return strings.Compare(a.id, b.id)
		})
		var page []map[string]any
		for i := skip; i < len(items) && len(page) < top; i++ {
			page = append(page, maps.Clone(items[i].props))
		}
		more := skip+top < len(items)
		user := mb.user
		s.mu.Unlock()
		var sel []string
		vals := []any{}
		for _, p := range page {
			var bad string
			if sel, bad = mailSelect(kind, q.Get("$select"), p); bad != "" {
				s.graphError(w, r, http.StatusBadRequest, "RequestBroker--ParseUri", "Could not find a property named '"+bad+"' on type '"+odataType(kind)+"'.")
				return
			}
			vals = append(vals, projectMail(kind, p, sel))
		}
		body := map[string]any{"@odata.context": s.GraphBaseURL() + "/$metadata#users('" + url.PathEscape(user) + "')/" + kind, "value": vals}
		if more {
			nq := url.Values{}
			for k, v := range q {
				nq[k] = v
			}
			nq.Set("$skip", strconv.Itoa(skip+top))
			body["@odata.nextLink"] = s.URL() + r.URL.Path + "?" + nq.Encode()
		}
		writeGraphJSON(w, http.StatusOK, body)
	}
}
