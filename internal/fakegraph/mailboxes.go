package fakegraph

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Outlook mailboxes (docs/graph-facts.md, "Outlook mailboxes"): a user's mailbox holds messages in
// folders and events in a calendar. Message and event ids have Graph's shape (a base64 string that
// starts with AAMk and may carry '-', '_' and '='), and a message gets a NEW id when it moves to another
// folder, as Exchange gives it. Every change sends `created`, `updated` or `deleted` to the live
// subscriptions of that mailbox (users/{id}/messages, users/{id}/mailFolders('{folder}')/messages,
// users/{id}/events), MailDuplicates times over.

// WellKnownFolders are the mail folders every mailbox of the double has, by their well-known names.
var WellKnownFolders = []string{"inbox", "archive", "deleteditems", "drafts", "sentitems", "junkemail"}

// DefaultMailboxSubscriptionQuota is Exchange's limit of subscriptions per mailbox, shared by every app
// (docs/graph-facts.md, "Outlook mailboxes").
const DefaultMailboxSubscriptionQuota = 1000

// MailboxMaxExpiryMinutes is the longest lifetime of a mailbox subscription (docs/graph-facts.md,
// "Outlook mailboxes").
const MailboxMaxExpiryMinutes = 4230

// MailItem is a message or an event as the double stores it. Props are keyed by Graph property name;
// id, changeKey, lastModifiedDateTime and (messages) parentFolderId are the double's to keep.
type MailItem struct {
	ID     string
	Folder string // messages: the well-known folder name; events: ""
	Props  map[string]any
}

type mailItem struct {
	id       string
	folder   string // messages: well-known folder name
	props    map[string]any
	version  int
	modified time.Time
	created  time.Time
}

type mailboxRec struct {
	user      string
	messages  map[string]*mailItem // key: id (ids are case-sensitive)
	events    map[string]*mailItem
	overQuota bool // SetMailboxOverQuota: subscription creates answer the quota 403
	denied    bool // SetMailboxAccessDenied: an application access policy excludes the mailbox
	dropping  bool // SetMailboxDropping: its notifications are dropped (what a `missed` follows)
}

// mailStore is the mailboxes part of the double; Server.mu guards it.
type mailStore struct {
	byUser     map[string]*mailboxRec // key: lower-case user id
	quota      int                    // per mailbox, all apps (0: DefaultMailboxSubscriptionQuota)
	duplicates int                    // extra copies of each mail notification
}

// mailState is the family's state (s.mu guards it).
func (s *Server) mailState() *mailStore { return s.familyState("mailboxes").(*mailStore) }

func (s *Server) mailboxLocked(user string) *mailboxRec {
	return s.mailState().byUser[strings.ToLower(user)]
}

// newItemID returns an id in the shape of Exchange's REST ids: "AAMk" then base64 (URL-safe alphabet, as
// Graph's ids use '-' and '_') ending in '='.
func newItemID() string {
	var b [66]byte
	_, _ = rand.Read(b[:])
	return "AAMkAG" + base64.URLEncoding.EncodeToString(b[:]) + "AAA="
}

// FolderID is the id of a mailbox's well-known folder: stable for the mailbox, in the shape of Graph's ids.
func FolderID(user, folder string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(user) + "\x00" + strings.ToLower(folder)))
	return "AAMkAGFolder" + base64.URLEncoding.EncodeToString(sum[:]) + "AQ=="
}

// folderByRef resolves a folder reference in a URL (a well-known name, any case, or a folder id).
func folderByRef(user, ref string) (string, bool) {
	for _, f := range WellKnownFolders {
		if strings.EqualFold(f, ref) || ref == FolderID(user, f) {
			return f, true
		}
	}
	return "", false
}

// AddMailbox gives a user a mailbox (idempotent). The user need not exist in the directory: the double
// keeps mailboxes apart from users (choice: Graph would 404 a mailbox of an unknown user).
func (s *Server) AddMailbox(user string) {
	s.mu.Lock()
	s.addMailboxLocked(user)
	s.mu.Unlock()
}

func (s *Server) addMailboxLocked(user string) *mailboxRec {
	mb := s.mailboxLocked(user)
	if mb == nil {
		mb = &mailboxRec{user: user, messages: map[string]*mailItem{}, events: map[string]*mailItem{}}
		s.mailState().byUser[strings.ToLower(user)] = mb
	}
	return mb
}

// Mailboxes returns the users that have a mailbox, sorted.
func (s *Server) Mailboxes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, mb := range s.mailState().byUser {
		out = append(out, mb.user)
	}
	slices.Sort(out)
	return out
}

func (s *Server) touch(it *mailItem, now time.Time) {
	it.version++
	it.modified = now
	it.props["lastModifiedDateTime"] = now.UTC().Format(time.RFC3339)
	it.props["changeKey"] = fmt.Sprintf("CQAAABYAAAB%06d", it.version)
}

// AddMessage puts a message in a folder of user's mailbox (created if missing) and sends `created`.
// An empty folder means inbox; an empty ID gets a new one. It returns the message id. Choice: the
// properties a test leaves out get plausible defaults (subject "", isRead false, categories [], from
// nobody, receivedDateTime = Clock).
func (s *Server) AddMessage(user string, m MailItem) string {
	folder := m.Folder
	if folder == "" {
		folder = "inbox"
	}
	if _, ok := folderByRef(user, folder); !ok {
		panic("fakegraph: AddMessage: unknown folder " + folder)
	}
	if m.ID == "" {
		m.ID = newItemID()
	}
	now := s.now()
	props := maps.Clone(m.Props)
	if props == nil {
		props = map[string]any{}
	}
	defaults := map[string]any{
		"subject": "", "isRead": false, "categories": []any{}, "importance": "normal", "isDraft": folder == "drafts",
		"hasAttachments": false, "bodyPreview": "", "receivedDateTime": now.UTC().Format(time.RFC3339),
		"sentDateTime": now.UTC().Format(time.RFC3339), "createdDateTime": now.UTC().Format(time.RFC3339),
		"from": nil, "sender": nil, "toRecipients": []any{}, "ccRecipients": []any{},
		"conversationId":    "AAQkAG" + base64.URLEncoding.EncodeToString([]byte(m.ID))[:24] + "=",
		"internetMessageId": "<" + strings.TrimRight(m.ID[6:30], "=") + "@fakegraph.example>",
		"flag":              map[string]any{"flagStatus": "notFlagged"}, "inferenceClassification": "focused",
		"body": map[string]any{"contentType": "text", "content": ""},
	}
	for k, v := range defaults {
		if _, ok := props[k]; !ok {
			props[k] = v
		}
	}
	s.mu.Lock()
	mb := s.addMailboxLocked(user)
	it := &mailItem{id: m.ID, folder: folder, props: props, created: now}
	props["id"] = m.ID
	props["parentFolderId"] = FolderID(user, folder)
	s.touch(it, now)
	mb.messages[m.ID] = it
	n := s.mailNotificationsLocked(mb, "messages", it, "created")
	s.mu.Unlock()
	s.enqueueAll(n)
	return m.ID
}

// UpdateMessage merges props into a message (isRead, categories, subject…) and sends `updated`. It
// reports false for a message the mailbox does not hold.
func (s *Server) UpdateMessage(user, id string, props map[string]any) bool {
	s.mu.Lock()
	mb := s.mailboxLocked(user)
	if mb == nil || mb.messages[id] == nil {
		s.mu.Unlock()
		return false
	}
	it := mb.messages[id]
	for k, v := range props {
		switch k {
		case "id", "parentFolderId", "changeKey", "lastModifiedDateTime":
			continue
		}
		it.props[k] = v
	}
	s.touch(it, s.now())
	n := s.mailNotificationsLocked(mb, "messages", it, "updated")
	s.mu.Unlock()
	s.enqueueAll(n)
	return true
}

// MoveMessage moves a message to another folder, where it gets a new id (as in Exchange): the old id
// answers 404 afterwards. A subscription to the whole mailbox gets `deleted` for the old id and
// `created` for the new one (UNCONFIRMED: Graph documents that a move is a delete in the source
// folder's view and a create in the target's; what a mailbox-wide subscription receives is taken to
// be both); a folder subscription gets the half that concerns its folder. It returns the new id, ""
// when the message is missing or already in that folder.
func (s *Server) MoveMessage(user, id, folder string) string {
	to, ok := folderByRef(user, folder)
	if !ok {
		panic("fakegraph: MoveMessage: unknown folder " + folder)
	}
	s.mu.Lock()
	mb := s.mailboxLocked(user)
	if mb == nil || mb.messages[id] == nil || mb.messages[id].folder == to {
		s.mu.Unlock()
		return ""
	}
	old := mb.messages[id]
	delete(mb.messages, id)
	n := s.mailNotificationsLocked(mb, "messages", old, "deleted")
	moved := &mailItem{id: newItemID(), folder: to, props: maps.Clone(old.props), version: old.version, created: old.created}
	moved.props["id"] = moved.id
	moved.props["parentFolderId"] = FolderID(user, to)
	s.touch(moved, s.now())
	mb.messages[moved.id] = moved
	n = append(n, s.mailNotificationsLocked(mb, "messages", moved, "created")...)
	s.mu.Unlock()
	s.enqueueAll(n)
	return moved.id
}

// DeleteMessage removes a message for good (a hard delete; a delete in Outlook is MoveMessage to
// deleteditems) and sends `deleted`. It reports false for a message the mailbox does not hold.
func (s *Server) DeleteMessage(user, id string) bool {
	return s.deleteItem(user, "messages", id)
}

// Message returns a copy of a message, or false.
func (s *Server) Message(user, id string) (MailItem, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	mb := s.mailboxLocked(user)
	if mb == nil || mb.messages[id] == nil {
		return MailItem{}, false
	}
	it := mb.messages[id]
	return MailItem{ID: it.id, Folder: it.folder, Props: maps.Clone(it.props)}, true
}

// Messages returns the ids of a mailbox's messages, sorted.
func (s *Server) Messages(user string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	mb := s.mailboxLocked(user)
	if mb == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(mb.messages))
}

// AddEvent puts an event in user's calendar (the mailbox is created if missing) and sends `created`.
// Choice: left-out properties get defaults (subject "", an hour from Clock, no attendees).
func (s *Server) AddEvent(user string, e MailItem) string {
	if e.ID == "" {
		e.ID = newItemID()
	}
	now := s.now()
	props := maps.Clone(e.Props)
	if props == nil {
		props = map[string]any{}
	}
	dt := func(t time.Time) map[string]any {
		return map[string]any{"dateTime": t.UTC().Format("2006-01-02T15:04:05.0000000"), "timeZone": "UTC"}
	}
	defaults := map[string]any{
		"subject": "", "start": dt(now.Add(time.Hour)), "end": dt(now.Add(2 * time.Hour)), "isAllDay": false,
		"isCancelled": false, "showAs": "busy", "type": "singleInstance", "attendees": []any{},
		"organizer": map[string]any{"emailAddress": map[string]any{"name": user, "address": user}},
		"location":  map[string]any{"displayName": ""}, "createdDateTime": now.UTC().Format(time.RFC3339),
		"iCalUId":    "040000008200E00074C5B7101A82E008" + strings.ToUpper(fmt.Sprintf("%x", sha256.Sum256([]byte(e.ID))))[:32],
		"categories": []any{}, "bodyPreview": "", "importance": "normal", "sensitivity": "normal",
	}
	for k, v := range defaults {
		if _, ok := props[k]; !ok {
			props[k] = v
		}
	}
	props["id"] = e.ID
	s.mu.Lock()
	mb := s.addMailboxLocked(user)
	it := &mailItem{id: e.ID, props: props, created: now}
	s.touch(it, now)
	mb.events[e.ID] = it
	n := s.mailNotificationsLocked(mb, "events", it, "created")
	s.mu.Unlock()
	s.enqueueAll(n)
	return e.ID
}

// UpdateEvent merges props into an event and sends `updated`; false when the calendar has no such event.
func (s *Server) UpdateEvent(user, id string, props map[string]any) bool {
	s.mu.Lock()
	mb := s.mailboxLocked(user)
	if mb == nil || mb.events[id] == nil {
		s.mu.Unlock()
		return false
	}
	it := mb.events[id]
	for k, v := range props {
		if k == "id" || k == "changeKey" || k == "lastModifiedDateTime" {
			continue
		}
		it.props[k] = v
	}
	s.touch(it, s.now())
	n := s.mailNotificationsLocked(mb, "events", it, "updated")
	s.mu.Unlock()
	s.enqueueAll(n)
	return true
}

// DeleteEvent removes an event and sends `deleted`; false when the calendar has no such event.
func (s *Server) DeleteEvent(user, id string) bool { return s.deleteItem(user, "events", id) }

func (s *Server) deleteItem(user, kind, id string) bool {
	s.mu.Lock()
	mb := s.mailboxLocked(user)
	if mb == nil {
		s.mu.Unlock()
		return false
	}
	items := mb.items(kind)
	it := items[id]
	if it == nil {
		s.mu.Unlock()
		return false
	}
	delete(items, id)
	n := s.mailNotificationsLocked(mb, kind, it, "deleted")
	s.mu.Unlock()
	s.enqueueAll(n)
	return true
}

func (mb *mailboxRec) items(kind string) map[string]*mailItem {
	if kind == "events" {
		return mb.events
	}
	return mb.messages
}

// SetMailboxOverQuota makes subscription creates for the mailbox answer the quota 403, as when other
// apps hold its 1,000 subscriptions.
func (s *Server) SetMailboxOverQuota(user string, on bool) {
	s.mu.Lock()
	s.addMailboxLocked(user).overQuota = on
	s.mu.Unlock()
}

// SetMailboxAccessDenied makes the mailbox one an Exchange application access policy excludes: every
// read and every subscription create for it answers 403.
func (s *Server) SetMailboxAccessDenied(user string, on bool) {
	s.mu.Lock()
	s.addMailboxLocked(user).denied = on
	s.mu.Unlock()
}

// SetMailboxDropping makes the mailbox's change notifications dropped (recorded with Outcome "dropped")
// while on: the gap a `missed` lifecycle notification reports.
func (s *Server) SetMailboxDropping(user string, on bool) {
	s.mu.Lock()
	s.addMailboxLocked(user).dropping = on
	s.mu.Unlock()
}

// SetMailboxSubscriptionQuota sets the per-mailbox subscription limit shared by all apps (0: the
// default, 1,000).
func (s *Server) SetMailboxSubscriptionQuota(n int) {
	s.mu.Lock()
	s.mailState().quota = n
	s.mu.Unlock()
}

// SetMailDuplicates makes every mail and calendar change notification arrive 1+n times (Outlook sends
// two or three for one edit, docs/graph-facts.md); 0 turns duplicates off.
func (s *Server) SetMailDuplicates(n int) {
	s.mu.Lock()
	s.mailState().duplicates = n
	s.mu.Unlock()
}

// mailResource parses a mailbox subscription resource: users/{id}/messages,
// users/{id}/mailFolders('{folder}')/messages (or mailFolders/{folder}/messages) and users/{id}/events,
// any case, with an optional leading slash or Graph v1.0 URL and an optional query. kind is "messages" or
// "events"; folder is the well-known folder name ("" for the whole mailbox).
func mailResource(res string) (user, kind, folder string, ok bool) {
	segs, query := splitResource(res)
	ref, ok := matchMailbox(segs, query)
	return ref.ID(0), ref.Coll, ref.ID(1), ok
}

// matchMailbox is the family's rule: ref.Coll is "messages" or "events", ref.IDs the user and, for a
// folder's messages, the folder's well-known name.
func matchMailbox(parts []string, query string) (resourceRef, bool) {
	if len(parts) < 3 || !strings.EqualFold(parts[0], "users") || parts[1] == "" {
		return resourceRef{}, false
	}
	user := parts[1]
	folder := ""
	switch {
	case len(parts) == 3 && strings.EqualFold(parts[2], "messages"):
		return resourceRef{Coll: "messages", IDs: []string{user}, Query: query}, true
	case len(parts) == 3 && strings.EqualFold(parts[2], "events"):
		return resourceRef{Coll: "events", IDs: []string{user}, Query: query}, true
	case len(parts) == 4 && strings.EqualFold(parts[3], "messages"):
		const pre = "mailFolders('"
		p := parts[2]
		if len(p) <= len(pre)+2 || !strings.EqualFold(p[:len(pre)], pre) || !strings.HasSuffix(p, "')") {
			return resourceRef{}, false
		}
		folder = p[len(pre) : len(p)-2]
	case len(parts) == 5 && strings.EqualFold(parts[2], "mailFolders") && strings.EqualFold(parts[4], "messages"):
		folder = parts[3]
	default:
		return resourceRef{}, false
	}
	f, ok := folderByRef(user, folder)
	return resourceRef{Coll: "messages", IDs: []string{user, f}, Query: query}, ok
}

// mailNotificationsLocked builds the notifications of one change to item (of kind "messages" or
// "events") for every live subscription of the mailbox that covers it (s.mu held). The envelope is the
// directory's; resource is "Users/{id}/Messages/{id}" (or Events) and resourceData carries @odata.type,
// @odata.id, @odata.etag and id, as Graph sends them for Outlook resources (docs/graph-facts.md).
func (s *Server) mailNotificationsLocked(mb *mailboxRec, kind string, it *mailItem, changeType string) []pendingNotification {
	seg, odataType := "Messages", "#Microsoft.Graph.Message"
	if kind == "events" {
		seg, odataType = "Events", "#Microsoft.Graph.Event"
	}
	res := "Users/" + mb.user + "/" + seg + "/" + it.id
	etag := `W/"` + fmt.Sprint(it.props["changeKey"]) + `"`
	covers := func(ref resourceRef) bool {
		return ref.Coll == kind && strings.EqualFold(ref.ID(0), mb.user) && (ref.ID(1) == "" || ref.ID(1) == it.folder)
	}
	var out []pendingNotification
	for _, sub := range s.subscribersLocked("mailboxes", changeType, covers) {
		for range 1 + max(0, s.mailState().duplicates) {
			out = append(out, s.changeNotificationsLocked(sub, nil, func() map[string]any {
				return map[string]any{
					"changeType": changeType,
					"resource":   res,
					"resourceData": map[string]any{
						"@odata.type": odataType,
						"@odata.id":   res,
						"@odata.etag": etag,
						"id":          it.id,
					},
				}
			})...)
		}
	}
	if mb.dropping {
		for i := range out {
			out[i].drop = true
		}
	}
	return out
}

// mailboxSubscriptionsLocked counts the live subscriptions of every app on one mailbox (s.mu held).
func (s *Server) mailboxSubscriptionsLocked(user string) int {
	n := 0
	for _, sub := range s.liveSubsLocked() {
		// Parsed only when the user id is in it: a create costs one pass over every subscription, and a
		// tenant of 10,000 mailboxes makes 10,000 of them.
		if !containsFold(sub.Resource, user) {
			continue
		}
		if u, _, _, ok := mailResource(sub.Resource); ok && strings.EqualFold(u, user) {
			n++
		}
	}
	return n
}

// containsFold reports whether sub occurs in s, without regard to ASCII case, allocating nothing.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// Quota and access-policy refusals of a subscription create, in Graph's error form (status, code, message).
const (
	// Observed for a quota 403 on another Outlook-family resource (microsoft-graph-docs issue 21403);
	// UNCONFIRMED that a mailbox's quota uses the same words.
	mailboxQuotaMessage = "Operation: Create; Exception: [Status Code: Forbidden; Reason: Maximum number of subscriptions has been reached]"
	// Observed on subscription creates refused by an application access policy (msgraph-sdk-java issue 510).
	accessPolicyCreateMessage = "Operation: Create; Exception: [Status Code: Forbidden; Reason: Access to OData is disabled.]"
	// Observed on reads of a mailbox an application access policy excludes (public issue threads, e.g.
	// OfficeDev/office-js-docs-pr issue 2808).
	accessPolicyReadMessage = "Access to OData is disabled."
)

// forbidMailboxSubscription decides a create on a mailbox resource (s.mu held): "" when allowed, else the
// 403's code and message: the application access policy first, then the mailbox's quota, which counts the
// live subscriptions of every app on the mailbox (choice: creates still in their handshake are not
// counted). A mailbox the double does not hold is allowed (as if it existed and were empty, choice).
func forbidMailboxSubscription(s *Server, ref resourceRef) (code, msg string) {
	user := ref.ID(0)
	mb := s.mailboxLocked(user)
	quota := s.mailState().quota
	if quota <= 0 {
		quota = DefaultMailboxSubscriptionQuota
	}
	switch {
	case mb != nil && mb.denied:
		return "ExtensionError", accessPolicyCreateMessage
	case (mb != nil && mb.overQuota) || s.mailboxSubscriptionsLocked(user) >= quota:
		return "ExtensionError", mailboxQuotaMessage
	}
	return "", ""
}

func init() {
	registerFamily(family{
		name: "mailboxes",
		rules: []subscriptionRule{{
			pattern: "users/{id}/messages, users/{id}/mailFolders('{folder}')/messages, users/{id}/events",
			match:   matchMailbox,
			// docs/graph-facts.md, "Outlook mailboxes": created, updated, deleted; at most 4,230 minutes.
			changeTypes:        []string{"created", "updated", "deleted"},
			maxLifetimeMinutes: MailboxMaxExpiryMinutes,
			rich:               richAllowed,
			roles: func(ref resourceRef) []string {
				if ref.Coll == "events" {
					return calendarRoles
				}
				return mailRoles
			},
			check: func(_ *Server, req *subRequest, ref resourceRef) string {
				// With resource data, Outlook resources must carry a $select (docs/graph-facts.md).
				if req.IncludeResourceData != nil && *req.IncludeResourceData && !strings.Contains(strings.ToLower(ref.Query), "$select=") {
					return "Invalid 'resource' attribute: a subscription with includeResourceData to an Outlook resource requires $select."
				}
				return ""
			},
			forbid: forbidMailboxSubscription,
		}},
		routes:        func(s *Server) { s.mailboxRoutes() },
		controlRoutes: func(s *Server) { s.mailboxControlRoutes() },
		pathRoles:     mailboxRolesFor,
		defaultRoles:  []string{"Mail.Read", "Calendars.Read"},
		sharedRoles:   slices.Concat(mailRoles, calendarRoles),
		newState:      func(*Server) any { return &mailStore{byUser: map[string]*mailboxRec{}} },
	})
}
