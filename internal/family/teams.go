package family

import (
	"errors"
	"regexp"
	"strings"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
)

// ChatMessages is the Teams family's one kind: channel and chat messages.
var ChatMessages = Kind{Collection: "chatMessages", ODataType: "#microsoft.graph.chatMessage", EventField: "chatMessage",
	SelectSetting: "GRAPH_CHATMESSAGE_SELECT",
	DefaultSelect: "id,replyToId,messageType,createdDateTime,lastModifiedDateTime,lastEditedDateTime,deletedDateTime,subject,importance,from,body,attachments,mentions,reactions,channelIdentity,chatId,webUrl",
	What:          "chat message"}

// TeamsMaxLifetime is Graph's maximum for chat message subscriptions (4,320 minutes; docs/graph-facts.md
// §11.1); over an hour they need a lifecycle URL, which every plan of this product has.
const TeamsMaxLifetime = 4320 * time.Minute

// Ids of the Teams family (docs/graph-facts.md §11.1): team ids are GUIDs; channel ids 19:…@thread.tacv2
// (older channels @thread.skype); chat ids 19:…@thread.v2 or 19:{guid}_{guid}@unq.gbl.spaces; message ids
// decimal.
var (
	channelIDRE = regexp.MustCompile(`^19:[A-Za-z0-9_-]{1,200}@thread\.(tacv2|skype)$`)
	chatIDRE    = regexp.MustCompile(`^19:([A-Za-z0-9_-]{1,200}@thread\.v2|[0-9a-f-]{36}_[0-9a-f-]{36}@unq\.gbl\.spaces)$`)
	messageIDRE = regexp.MustCompile(`^[0-9]{1,20}$`)
	// A notification's resource: teams('{team}')/channels('{channel}')/messages('{id}') or
	// chats('{chat}')/messages('{id}'), a reply adding /replies('{id}'). Quotes cannot occur in any id.
	channelResourceRE = regexp.MustCompile(`(?i)^teams\('([^']*)'\)/channels\('([^']*)'\)/messages\('([^']*)'\)(?:/replies\('([^']*)'\))?$`)
	chatResourceRE    = regexp.MustCompile(`(?i)^chats\('([^']*)'\)/messages\('([^']*)'\)(?:/replies\('([^']*)'\))?$`)
)

// ValidChannelID, ValidChatID and ValidChatMessageID hold a Teams id to its grammar.
func ValidChannelID(id string) bool     { return channelIDRE.MatchString(id) }
func ValidChatID(id string) bool        { return chatIDRE.MatchString(id) }
func ValidChatMessageID(id string) bool { return messageIDRE.MatchString(id) }

// MeteredTeamsResource reports whether a Teams subscription resource is one of the metered
// getAllMessages APIs, which take a licensing model (model=A or model=B).
func MeteredTeamsResource(resource string) bool {
	r, _, _ := strings.Cut(strings.Trim(resource, "/"), "?")
	return strings.EqualFold(r, "teams/getAllMessages") || strings.EqualFold(r, "chats/getAllMessages")
}

// Teams is the family of Teams channel and chat messages. Graph sends each message encrypted in its
// notification (includeResourceData), so the worker decrypts it and reads nothing from Graph; nothing can
// be re-read after a gap either, so a removed subscription is created again.
var Teams = Family{
	Name:  "teams",
	Kinds: []Kind{ChatMessages},
	Limits: Limits{
		MaxLifetime:      TeamsMaxLifetime,
		ChangeTypes:      []graph.ChangeType{graph.Created, graph.Updated, graph.Deleted},
		Lifecycle:        []graph.LifecycleEvent{graph.ReauthorizationRequired, graph.SubscriptionRemoved},
		LifecycleURLOver: time.Hour,
		Rich:             true,
		Quota:            "one subscription per app per channel or chat; 10,000 per organisation",
	},
	Learn:       Payload,
	Recovery:    Resubscribe,
	Permission:  "ChannelMessage.Read.All (for channel messages) or Chat.Read.All (for chat messages)",
	Collections: []string{"teams", "chats"},
	Entries: "teams/getAllMessages, chats/getAllMessages, teams/{team-id}/channels/{channel-id}/messages and " +
		"chats/{chat-id}/messages, where {team-id} is a GUID, {channel-id} 19:…@thread.tacv2 and {chat-id} 19:…@thread.v2",
	Parse: parseTeamsEntry,
	Plan:  planTeams,
	Route: routeTeams,
}

func parseTeamsEntry(collection, rest string) (Entry, error) {
	if strings.EqualFold(rest, "getAllMessages") {
		return Entry{Collection: collection, ID: "getAllMessages"}, nil
	}
	segs := strings.Split(rest, "/")
	switch {
	case collection == "teams" && len(segs) == 4 && strings.EqualFold(segs[1], "channels") && strings.EqualFold(segs[3], "messages"):
		if !graph.IsGUID(segs[0]) || !ValidChannelID(segs[2]) {
			return Entry{}, errors.New("names a channel whose team id is not a GUID or whose channel id is not 19:…@thread.tacv2")
		}
		return Entry{Collection: collection, ID: strings.ToLower(segs[0]) + "/channels/" + segs[2] + "/messages"}, nil
	case collection == "chats" && len(segs) == 2 && strings.EqualFold(segs[1], "messages"):
		if !ValidChatID(segs[0]) {
			return Entry{}, errors.New("names a chat whose id is not 19:…@thread.v2")
		}
		return Entry{Collection: collection, ID: segs[0] + "/messages"}, nil
	}
	return Entry{}, errors.New("is not a Teams message resource (getAllMessages, a channel's messages or a chat's messages)")
}

func planTeams(e Entry, _ []string) Plan {
	perm := "ChannelMessage.Read.All"
	if e.Collection == "chats" {
		perm = "Chat.Read.All"
	}
	// GRAPH_CHANGE_TYPE is the directory's: Teams subscriptions hear every change Graph sends for messages.
	return Plan{Entry: e, Resource: e.Path(), ChangeTypes: []string{"created", "deleted", "updated"},
		Lifetime: TeamsMaxLifetime - time.Hour, LifecycleURL: true, IncludeResourceData: true, Permission: perm}
}

// TeamsPlace reads a Teams notification's resource: the message id, and where the message lives
// ({"teamId", "channelId"} or {"chatId"}), every id held to its grammar. ok is false for a resource of
// another family.
func TeamsPlace(resource string) (id string, place map[string]string, ok bool, err error) {
	r := strings.Trim(resource, "/")
	if m := channelResourceRE.FindStringSubmatch(r); m != nil {
		id = m[3]
		if m[4] != "" {
			id = m[4]
		}
		if !graph.IsGUID(m[1]) || !ValidChannelID(m[2]) || !ValidChatMessageID(m[3]) || !ValidChatMessageID(id) {
			return "", nil, true, errors.New("a channel message resource with an id off its grammar")
		}
		return id, map[string]string{"teamId": strings.ToLower(m[1]), "channelId": m[2]}, true, nil
	}
	if m := chatResourceRE.FindStringSubmatch(r); m != nil {
		id = m[2]
		if m[3] != "" {
			id = m[3]
		}
		if !ValidChatID(m[1]) || !ValidChatMessageID(m[2]) || !ValidChatMessageID(id) {
			return "", nil, true, errors.New("a chat message resource with an id off its grammar")
		}
		return id, map[string]string{"chatId": m[1]}, true, nil
	}
	return "", nil, false, nil
}

func routeTeams(n *graph.ChangeNotification) (Target, bool, error) {
	id, place, ok, err := TeamsPlace(n.Resource)
	if !ok || err != nil {
		return Target{}, ok, err
	}
	where := place["chatId"]
	if where == "" {
		where = place["teamId"] + "/" + place["channelId"]
	}
	return Target{Kind: ChatMessages, ID: id, Key: ChatMessages.Collection + "/" + where + "/" + id, Context: place}, true, nil
}
