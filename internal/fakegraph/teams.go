package fakegraph

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Teams chat and channel messages (docs/graph-facts.md §11): subscriptions to teams/getAllMessages,
// chats/getAllMessages, teams/{team-id}/channels/{channel-id}/messages and chats/{chat-id}/messages carry
// the message itself, encrypted for the subscriber's certificate (teams_crypto.go), in every notification,
// with validationTokens in the body. teams_control.go serves the control API.

// MaxTeamsExpiryMinutes is the longest lifetime of a chat message subscription; a lifetime over
// TeamsLifecycleRequiredOver minutes needs a lifecycleNotificationUrl (docs/graph-facts.md §11.1).
const (
	MaxTeamsExpiryMinutes      = 4320
	TeamsLifecycleRequiredOver = 60
)

// Application roles that read channel messages and chat messages (docs/graph-facts.md §11.1).
var (
	channelMessageRoles = []string{"ChannelMessage.Read.All", "ChannelMessage.ReadWrite.All"}
	chatMessageRoles    = []string{"Chat.Read.All", "Chat.ReadWrite.All"}
)

// Id shapes (docs/graph-facts.md §11.1): team ids are GUIDs; channel ids 19:…@thread.tacv2 (older
// channels @thread.skype); chat ids 19:…@thread.v2 or, for one-on-one chats, 19:{guid}_{guid}@unq.gbl.spaces;
// message ids are decimal strings (milliseconds).
var (
	teamIDRE    = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	channelIDRE = regexp.MustCompile(`^19:[A-Za-z0-9_-]{1,200}@thread\.(tacv2|skype)$`)
	chatIDRE    = regexp.MustCompile(`^19:([A-Za-z0-9_-]{1,200}@thread\.v2|[0-9a-f-]{36}_[0-9a-f-]{36}@unq\.gbl\.spaces)$`)
	messageIDRE = regexp.MustCompile(`^[0-9]{1,20}$`)
)

// ValidTeamID, ValidChannelID, ValidChatID and ValidChatMessageID report whether an id has Graph's shape.
func ValidTeamID(id string) bool        { return teamIDRE.MatchString(id) }
func ValidChannelID(id string) bool     { return channelIDRE.MatchString(id) }
func ValidChatID(id string) bool        { return chatIDRE.MatchString(id) }
func ValidChatMessageID(id string) bool { return messageIDRE.MatchString(id) }

func init() {
	rule := func(pattern string, roles []string) subscriptionRule {
		return subscriptionRule{
			pattern:            pattern,
			match:              matchTeams(pattern),
			changeTypes:        []string{"created", "updated", "deleted"},
			maxLifetimeMinutes: MaxTeamsExpiryMinutes,
			// Choice: Graph also sends notifications without resource data for these resources; the double
			// models only rich ones, which is what the product subscribes to.
			rich:                     richRequired,
			lifecycleRequiredOver:    TeamsLifecycleRequiredOver,
			lifecycleRequiredMessage: "lifecycleNotificationUrl is a required property for subscription creation on this resource when the expirationDateTime value is set to greater than 1 hour.",
			roles:                    func(resourceRef) []string { return roles },
			quotas: []subscriptionQuota{{
				// One subscription per app per channel, chat, or tenant-wide resource (docs/graph-facts.md §11.1).
				scope:   func(ref resourceRef) string { return ref.Coll + "|" + strings.ToLower(strings.Join(ref.IDs, "|")) },
				limit:   func(*Options) int { return 1 },
				message: "Operation: Create; Exception: [Status Code: Forbidden; Reason: This app already has %d subscription to this resource.]",
			}},
			check: checkTeamsSubscription,
			patch: patchTeamsSubscription,
		}
	}
	registerFamily(family{
		name: "teams",
		rules: []subscriptionRule{
			rule("teams/getAllMessages", channelMessageRoles),
			rule("chats/getAllMessages", chatMessageRoles),
			rule("teams/{team-id}/channels/{channel-id}/messages", channelMessageRoles),
			rule("chats/{chat-id}/messages", chatMessageRoles),
		},
		controlRoutes: (*Server).teamsControlRoutes,
		sharedRoles:   append(slices.Clone(channelMessageRoles), chatMessageRoles...),
		defaultRoles:  []string{"ChannelMessage.Read.All", "Chat.Read.All"},
		newState: func(*Server) any {
			return &teamsStore{msgs: map[string]*chatMsgRec{}, certs: map[string]*encryptionCert{}}
		},
		clearFaults: func(s *Server) { s.teamsLocked().tamper = TeamsTamper{} },
	})
}

// The collections a Teams resourceRef names.
const (
	teamsAllChannels = "channelMessages" // teams/getAllMessages
	teamsAllChats    = "chatMessages"    // chats/getAllMessages
	teamsChannel     = "channel"         // teams/{team-id}/channels/{channel-id}/messages: IDs team, channel
	teamsChat        = "chat"            // chats/{chat-id}/messages: IDs chat
)

// matchTeams returns the matcher of one Teams pattern. Ids may arrive path-escaped (':' and '@' need not
// be, but clients escape them); the query is kept for checkTeamsSubscription to judge.
func matchTeams(pattern string) func(segs []string, query string) (resourceRef, bool) {
	return func(segs []string, query string) (resourceRef, bool) {
		un := make([]string, len(segs))
		for i, s := range segs {
			u, err := url.PathUnescape(s)
			if err != nil {
				return resourceRef{}, false
			}
			un[i] = u
		}
		is := func(i int, word string) bool { return strings.EqualFold(un[i], word) }
		switch pattern {
		case "teams/getAllMessages":
			if len(un) == 2 && is(0, "teams") && is(1, "getAllMessages") {
				return resourceRef{Coll: teamsAllChannels, Query: query}, true
			}
		case "chats/getAllMessages":
			if len(un) == 2 && is(0, "chats") && is(1, "getAllMessages") {
				return resourceRef{Coll: teamsAllChats, Query: query}, true
			}
		case "teams/{team-id}/channels/{channel-id}/messages":
			if len(un) == 5 && is(0, "teams") && is(2, "channels") && is(4, "messages") && ValidTeamID(un[1]) && ValidChannelID(un[3]) {
				return resourceRef{Coll: teamsChannel, IDs: []string{strings.ToLower(un[1]), un[3]}, Query: query}, true
			}
		case "chats/{chat-id}/messages":
			if len(un) == 3 && is(0, "chats") && is(2, "messages") && ValidChatID(un[1]) {
				return resourceRef{Coll: teamsChat, IDs: []string{un[1]}, Query: query}, true
			}
		}
		return resourceRef{}, false
	}
}

// checkTeamsSubscription judges what the shared checks do not: the certificate itself, its id, and the
// model= query of the metered resources (docs/graph-facts.md §11.1–11.2).
func checkTeamsSubscription(_ *Server, req *subRequest, ref resourceRef) string {
	if _, msg := parseEncryptionCertificate(*req.EncryptionCertificate); msg != "" {
		return msg
	}
	if len(*req.EncryptionCertificateID) > 128 {
		return "Invalid 'encryptionCertificateId' attribute: the maximum length is 128 characters."
	}
	return checkTeamsQuery(ref)
}

func checkTeamsQuery(ref resourceRef) string {
	if ref.Query == "" {
		return ""
	}
	metered := ref.Coll == teamsAllChannels || ref.Coll == teamsAllChats
	q, err := url.ParseQuery(ref.Query)
	if err != nil {
		return "Invalid 'resource' attribute: the query string does not parse."
	}
	for k, v := range q {
		switch {
		case k != "model":
			// Choice: Graph takes no $select or other option on these resources (no $select with
			// includeResourceData for Teams, docs/graph-facts.md §11.2); the double refuses any.
			return "Invalid 'resource' attribute: query option '" + k + "' is not supported on this resource."
		case !metered:
			// Choice: model= licenses the metered getAllMessages APIs only.
			return "Invalid 'resource' attribute: 'model' applies only to teams/getAllMessages and chats/getAllMessages."
		case len(v) != 1 || (v[0] != "A" && v[0] != "B"):
			return "Invalid 'resource' attribute: model must be A or B."
		}
	}
	return ""
}

// patchTeamsSubscription takes a new encryptionCertificate and/or encryptionCertificateId: how a subscriber
// rotates its certificate without recreating the subscription (docs/graph-facts.md §11.2).
func patchTeamsSubscription(_ *Server, req *subRequest, cur Subscription) (func(*Subscription), string) {
	cert, id := cur.EncryptionCertificate, cur.EncryptionCertificateID
	if req.EncryptionCertificate != nil {
		if _, msg := parseEncryptionCertificate(*req.EncryptionCertificate); msg != "" {
			return nil, msg
		}
		cert = *req.EncryptionCertificate
	}
	if req.EncryptionCertificateID != nil {
		if *req.EncryptionCertificateID == "" || len(*req.EncryptionCertificateID) > 128 {
			return nil, "Invalid 'encryptionCertificateId' attribute: 1 to 128 characters."
		}
		id = *req.EncryptionCertificateID
	}
	if cert == cur.EncryptionCertificate && id == cur.EncryptionCertificateID {
		return nil, ""
	}
	return func(sub *Subscription) { sub.EncryptionCertificate, sub.EncryptionCertificateID = cert, id }, ""
}

// ---- state ----

type teamsStore struct {
	msgs                  map[string]*chatMsgRec     // key: msgKey
	order                 []string                   // keys in posting order
	lastID                int64                      // message ids are strictly increasing milliseconds
	certs                 map[string]*encryptionCert // parsed encryptionCertificate values
	tamper                TeamsTamper
	tampered              int       // notifications damaged under tamper.Count
	token                 string    // the validation token current bodies carry
	tokenAt               time.Time // Clock time it was minted
	deletedWithoutContent bool
}

type chatMsgRec struct {
	teamID, channelID, chatID, id                string
	fromID, fromName, contentType, content, subj string
	created, modified, edited, deleted           time.Time
}

func (s *Server) teamsLocked() *teamsStore { return s.familyState("teams").(*teamsStore) }

func msgKey(teamID, channelID, chatID, id string) string {
	if chatID != "" {
		return "chat|" + chatID + "|" + id
	}
	return "channel|" + strings.ToLower(teamID) + "|" + channelID + "|" + id
}

// ---- Go API ----

// ChatMessage is a Teams message as the Go API posts, edits and lists it: in a channel (TeamID and
// ChannelID) or in a chat (ChatID).
type ChatMessage struct {
	TeamID          string `json:"teamId,omitempty"`
	ChannelID       string `json:"channelId,omitempty"`
	ChatID          string `json:"chatId,omitempty"`
	ID              string `json:"id,omitempty"`         // default: the next id (milliseconds of Clock)
	FromUserID      string `json:"fromUserId,omitempty"` // default: a new GUID
	FromDisplayName string `json:"fromDisplayName,omitempty"`
	ContentType     string `json:"contentType,omitempty"` // "html" (default) or "text"
	Content         string `json:"content"`
	Subject         string `json:"subject,omitempty"`
	// Read back only.
	CreatedDateTime      time.Time `json:"createdDateTime"`
	LastModifiedDateTime time.Time `json:"lastModifiedDateTime"`
	LastEditedDateTime   time.Time `json:"lastEditedDateTime"`
	DeletedDateTime      time.Time `json:"deletedDateTime"`
}

// TeamsTamper damages the Teams notifications the double sends, for tests of a receiver's refusals.
type TeamsTamper struct {
	BadSignature         bool `json:"badSignature"`         // one ciphertext bit flipped after signing
	BadPadding           bool `json:"badPadding"`           // signed correctly, but the plaintext is not PKCS#7-padded
	UnknownCertificateID bool `json:"unknownCertificateId"` // encryptionCertificateId names a certificate the subscriber never gave
	WrongThumbprint      bool `json:"wrongThumbprint"`      // encryptionCertificateThumbprint is not the certificate's
	NoValidationTokens   bool `json:"noValidationTokens"`   // the body carries no validationTokens
	// Token, when set, mints the body's validation token with these options (BadSignature, Expired, Audience…).
	Token *ValidationTokenOptions `json:"token"`
	// Count is how many notifications to damage; 0 means every one until ClearFaults or the next TamperTeams.
	Count int `json:"count"`
}

// ErrChatMessageNotFound answers the Go API for a message the double does not hold (or holds deleted).
var ErrChatMessageNotFound = errors.New("fakegraph: no such chat message")

// TamperTeams damages the Teams notifications sent from now on as t says.
func (s *Server) TamperTeams(t TeamsTamper) {
	s.mu.Lock()
	st := s.teamsLocked()
	st.tamper, st.tampered = t, 0
	s.mu.Unlock()
}

// SetTeamsDeletedWithoutContent makes deleted notifications carry no encryptedContent (resourceData only).
// UNCONFIRMED either way: Graph's documentation shows created and updated payloads only; by default the
// double encrypts the message as it is after deletion (deletedDateTime set, body empty).
func (s *Server) SetTeamsDeletedWithoutContent(on bool) {
	s.mu.Lock()
	s.teamsLocked().deletedWithoutContent = on
	s.mu.Unlock()
}

func checkMessagePlace(m ChatMessage) error {
	switch {
	case m.ChatID != "" && (m.TeamID != "" || m.ChannelID != ""):
		return errors.New("fakegraph: a message is in a channel or in a chat, not both")
	case m.ChatID != "" && !ValidChatID(m.ChatID):
		return fmt.Errorf("fakegraph: %q is not a chat id (19:…@thread.v2 or 19:{guid}_{guid}@unq.gbl.spaces)", m.ChatID)
	case m.ChatID == "" && !ValidTeamID(m.TeamID):
		return fmt.Errorf("fakegraph: %q is not a team id (a GUID)", m.TeamID)
	case m.ChatID == "" && !ValidChannelID(m.ChannelID):
		return fmt.Errorf("fakegraph: %q is not a channel id (19:…@thread.tacv2)", m.ChannelID)
	}
	return nil
}

// PostTeamsMessage posts a message and sends created to the subscriptions that cover it; it returns the
// message as stored.
func (s *Server) PostTeamsMessage(m ChatMessage) (ChatMessage, error) {
	if err := checkMessagePlace(m); err != nil {
		return ChatMessage{}, err
	}
	if m.ContentType == "" {
		m.ContentType = "html"
	}
	if m.ContentType != "html" && m.ContentType != "text" {
		return ChatMessage{}, errors.New("fakegraph: contentType must be html or text")
	}
	if m.FromUserID == "" {
		m.FromUserID = newGUID()
	}
	s.mu.Lock()
	st := s.teamsLocked()
	now := s.now().UTC()
	id := max(now.UnixMilli(), st.lastID+1)
	if m.ID != "" {
		given, err := strconv.ParseInt(m.ID, 10, 64)
		if err != nil || !ValidChatMessageID(m.ID) || st.msgs[msgKey(m.TeamID, m.ChannelID, m.ChatID, m.ID)] != nil {
			s.mu.Unlock()
			return ChatMessage{}, fmt.Errorf("fakegraph: message id %q is not a decimal id, or is taken", m.ID)
		}
		id = given
	}
	st.lastID = max(st.lastID, id)
	rec := &chatMsgRec{teamID: strings.ToLower(m.TeamID), channelID: m.ChannelID, chatID: m.ChatID, id: strconv.FormatInt(id, 10),
		fromID: m.FromUserID, fromName: m.FromDisplayName, contentType: m.ContentType, content: m.Content, subj: m.Subject,
		created: now, modified: now}
	k := msgKey(rec.teamID, rec.channelID, rec.chatID, rec.id)
	st.msgs[k] = rec
	st.order = append(st.order, k)
	ns := s.teamsNotificationsLocked(rec, "created")
	out := rec.export()
	s.mu.Unlock()
	s.enqueueAll(ns)
	return out, nil
}

// EditTeamsMessage replaces the content (and the subject, when m sets one) of the message m locates
// (TeamID+ChannelID or ChatID, and ID) and sends updated.
func (s *Server) EditTeamsMessage(m ChatMessage) error {
	return s.changeTeamsMessage(m, "updated", func(rec *chatMsgRec, now time.Time) {
		rec.content, rec.modified, rec.edited = m.Content, now, now
		if m.Subject != "" {
			rec.subj = m.Subject
		}
		if m.ContentType != "" {
			rec.contentType = m.ContentType
		}
	})
}

// DeleteTeamsMessage soft-deletes the message m locates, as Teams does (deletedDateTime set, the body
// emptied), and sends deleted.
func (s *Server) DeleteTeamsMessage(m ChatMessage) error {
	return s.changeTeamsMessage(m, "deleted", func(rec *chatMsgRec, now time.Time) {
		rec.content, rec.modified, rec.deleted = "", now, now
	})
}

func (s *Server) changeTeamsMessage(m ChatMessage, changeType string, f func(*chatMsgRec, time.Time)) error {
	if err := checkMessagePlace(m); err != nil {
		return err
	}
	s.mu.Lock()
	rec := s.teamsLocked().msgs[msgKey(m.TeamID, m.ChannelID, m.ChatID, m.ID)]
	if rec == nil || !rec.deleted.IsZero() {
		s.mu.Unlock()
		return ErrChatMessageNotFound
	}
	f(rec, s.now().UTC())
	ns := s.teamsNotificationsLocked(rec, changeType)
	s.mu.Unlock()
	s.enqueueAll(ns)
	return nil
}

// TeamsMessages lists every message, deleted ones included, in posting order.
func (s *Server) TeamsMessages() []ChatMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.teamsLocked()
	out := make([]ChatMessage, 0, len(st.order))
	for _, k := range st.order {
		out = append(out, st.msgs[k].export())
	}
	return out
}

func (rec *chatMsgRec) export() ChatMessage {
	return ChatMessage{TeamID: rec.teamID, ChannelID: rec.channelID, ChatID: rec.chatID, ID: rec.id, FromUserID: rec.fromID,
		FromDisplayName: rec.fromName, ContentType: rec.contentType, Content: rec.content, Subject: rec.subj,
		CreatedDateTime: rec.created, LastModifiedDateTime: rec.modified, LastEditedDateTime: rec.edited, DeletedDateTime: rec.deleted}
}

// resource is the notification's resource: teams('{team-id}')/channels('{channel-id}')/messages('{id}') or
// chats('{chat-id}')/messages('{id}') (docs/graph-facts.md §11.1).
func (rec *chatMsgRec) resource() string {
	if rec.chatID != "" {
		return "chats('" + rec.chatID + "')/messages('" + rec.id + "')"
	}
	return "teams('" + rec.teamID + "')/channels('" + rec.channelID + "')/messages('" + rec.id + "')"
}

// json is the message as GET would return it, which is what a rich notification encrypts.
func (rec *chatMsgRec) json(tenantID string) map[string]any {
	opt := func(t time.Time) any {
		if t.IsZero() {
			return nil
		}
		return t.Format("2006-01-02T15:04:05.000Z")
	}
	var subject, chatID, channel any
	if rec.subj != "" {
		subject = rec.subj
	}
	if rec.chatID != "" {
		chatID = rec.chatID
	} else {
		channel = map[string]any{"teamId": rec.teamID, "channelId": rec.channelID}
	}
	return map[string]any{
		"id": rec.id, "replyToId": nil, "etag": strconv.FormatInt(rec.modified.UnixMilli(), 10), "messageType": "message",
		"createdDateTime": opt(rec.created), "lastModifiedDateTime": opt(rec.modified), "lastEditedDateTime": opt(rec.edited),
		"deletedDateTime": opt(rec.deleted), "subject": subject, "summary": nil, "chatId": chatID, "importance": "normal",
		"locale": "en-us", "webUrl": nil, "policyViolation": nil, "eventDetail": nil,
		"from": map[string]any{"application": nil, "device": nil, "user": map[string]any{
			"@odata.type": "#microsoft.graph.teamworkUserIdentity", "id": rec.fromID, "displayName": rec.fromName,
			"userIdentityType": "aadUser", "tenantId": tenantID}},
		"body":            map[string]any{"contentType": rec.contentType, "content": rec.content},
		"channelIdentity": channel, "attachments": []any{}, "mentions": []any{}, "reactions": []any{},
	}
}

// covers reports whether a subscription's ref hears of rec.
func (rec *chatMsgRec) coveredBy(ref resourceRef) bool {
	switch ref.Coll {
	case teamsAllChannels:
		return rec.chatID == ""
	case teamsAllChats:
		return rec.chatID != ""
	case teamsChannel:
		return rec.chatID == "" && ref.ID(0) == rec.teamID && ref.ID(1) == rec.channelID
	case teamsChat:
		return rec.chatID == ref.ID(0)
	}
	return false
}

// teamsNotificationsLocked builds the rich notifications of a change to rec for every live subscription
// that covers it (s.mu held): resourceData names the message, encryptedContent carries it encrypted for
// the subscription's certificate, and the body carries a validation token.
func (s *Server) teamsNotificationsLocked(rec *chatMsgRec, changeType string) []pendingNotification {
	st := s.teamsLocked()
	plaintext, _ := json.Marshal(rec.json(s.opts.TenantID))
	var out []pendingNotification
	for _, sub := range s.subscribersLocked("teams", changeType, rec.coveredBy) {
		cert := st.certs[sub.EncryptionCertificate]
		if cert == nil {
			var msg string
			if cert, msg = parseEncryptionCertificate(sub.EncryptionCertificate); msg != "" {
				s.log.Warn("fakegraph: a Teams subscription's certificate does not parse; no notification", "subscription", sub.ID)
				continue
			}
			st.certs[sub.EncryptionCertificate] = cert
		}
		for _, p := range s.changeNotificationsLocked(sub, nil, func() map[string]any {
			return s.teamsNotificationLocked(st, sub, cert, rec, changeType, plaintext)
		}) {
			p.tokens = s.teamsTokensLocked(st)
			if st.tamper.Count > 0 {
				if st.tampered++; st.tampered >= st.tamper.Count {
					st.tamper = TeamsTamper{}
				}
			}
			out = append(out, p)
		}
	}
	return out
}

func (s *Server) teamsNotificationLocked(st *teamsStore, sub *Subscription, cert *encryptionCert, rec *chatMsgRec, changeType string, plaintext []byte) map[string]any {
	res := rec.resource()
	n := map[string]any{
		"changeType": changeType,
		"resource":   res,
		"resourceData": map[string]any{
			"id":          rec.id,
			"@odata.type": "#Microsoft.Graph.chatMessage",
			"@odata.id":   res,
		},
	}
	if changeType == "deleted" && st.deletedWithoutContent {
		return n
	}
	t := st.tamper
	certID := sub.EncryptionCertificateID
	if t.UnknownCertificateID {
		certID = "not-" + certID
	}
	ec, err := encryptContent(cert, certID, plaintext, encryptTampering{badSignature: t.BadSignature, badPadding: t.BadPadding})
	if err != nil {
		s.log.Warn("fakegraph: encrypting a Teams notification failed", "err", err)
		return n
	}
	if t.WrongThumbprint {
		ec["encryptionCertificateThumbprint"] = strings.Repeat("0", 40)
	}
	n["encryptedContent"] = ec
	return n
}

// teamsTokensLocked is the validationTokens a body of Teams notifications carries: one token for this app
// in this tenant, minted again every 30 minutes of Clock (choice; Graph's tokens live an hour), or as the
// tamper switch says.
func (s *Server) teamsTokensLocked(st *teamsStore) []string {
	switch {
	case st.tamper.NoValidationTokens:
		return nil
	case st.tamper.Token != nil:
		return []string{s.ValidationTokenWith(*st.tamper.Token)}
	}
	now := s.now()
	if st.token == "" || now.Sub(st.tokenAt) > 30*time.Minute || now.Before(st.tokenAt) {
		st.token, st.tokenAt = s.ValidationTokenWith(ValidationTokenOptions{}), now
	}
	return []string{st.token}
}
