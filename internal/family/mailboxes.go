package family

import (
	"errors"
	"regexp"
	"strings"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
)

// The mailboxes' kinds: a user's messages and calendar events.
var (
	Messages = Kind{Collection: "messages", ODataType: "#microsoft.graph.message", EventField: "message",
		SelectSetting: "GRAPH_MESSAGE_SELECT", DefaultSelect: "id,subject,from,toRecipients,receivedDateTime,isRead,categories,parentFolderId,importance,flag,hasAttachments,conversationId,internetMessageId,lastModifiedDateTime", What: "message"}
	Events = Kind{Collection: "events", ODataType: "#microsoft.graph.event", EventField: "event",
		SelectSetting: "GRAPH_EVENT_SELECT", DefaultSelect: "id,subject,start,end,organizer,attendees,location,isAllDay,isCancelled,showAs,type,categories,iCalUId,lastModifiedDateTime", What: "calendar event"}
)

var mailboxKinds = []Kind{Messages, Events}

// MailboxMaxLifetime is Graph's maximum for Outlook subscriptions (4,230 minutes; docs/graph-facts.md,
// "Outlook mailboxes").
const MailboxMaxLifetime = 4230 * time.Minute

// MailboxContext is the event field naming the mailbox (the user id) an item lives in.
const MailboxContext = "mailbox"

// Mailboxes is the family of Outlook mailboxes: one subscription per mailbox and resource
// (users/{id}/messages, users/{id}/events), planned from GRAPH_MAILBOXES by the subscription package's
// mailbox keeper rather than from GRAPH_RESOURCE entries. A notification names one item, which the worker
// reads by id ($batch); a gap is recovered by a catch-up of the mailbox when Graph says it missed
// notifications or removed the subscription.
var Mailboxes = Family{
	Name:  "mailboxes",
	Kinds: mailboxKinds,
	Limits: Limits{
		MaxLifetime: MailboxMaxLifetime,
		ChangeTypes: []graph.ChangeType{graph.Created, graph.Updated, graph.Deleted},
		Lifecycle:   []graph.LifecycleEvent{graph.ReauthorizationRequired, graph.Missed, graph.SubscriptionRemoved},
		Rich:        true,
		Quota:       "1,000 per mailbox, shared by every app",
	},
	Learn:      ReadByID,
	Recovery:   CatchUp,
	Permission: "Mail.Read (for messages) or Calendars.Read (for events)",
	// GRAPH_RESOURCE takes no mailbox entries: GRAPH_MAILBOXES names them, and an entry "mailboxes" is
	// answered with that.
	Collections: []string{"mailboxes"},
	Entries:     "mailboxes through GRAPH_MAILBOXES (user ids and group:{id}), not GRAPH_RESOURCE",
	Parse: func(string, string) (Entry, error) {
		return Entry{}, errors.New("names mailboxes, which are set in GRAPH_MAILBOXES (user ids and group:{id}) and GRAPH_MAILBOX_RESOURCES")
	},
	Plan: func(e Entry, _ []string) Plan {
		kind := Messages
		if strings.HasSuffix(e.ID, "/"+Events.Collection) {
			kind = Events
		}
		perm := "Mail.Read"
		if kind == Events {
			perm = "Calendars.Read"
		}
		return Plan{Entry: e, Resource: "users/" + e.ID, ChangeTypes: []string{"created", "deleted", "updated"},
			Lifetime: MailboxMaxLifetime - 30*time.Minute, LifecycleURL: true, Permission: perm}
	},
	Route: routeMailbox,
}

// itemIDRE is the grammar of an Outlook item id: Graph's REST ids are URL-safe base64 (letters, digits,
// '-', '_', '='), some hundred characters long; the bound keeps anything else out of a URL.
var itemIDRE = regexp.MustCompile(`^[A-Za-z0-9_=-]{1,512}$`)

// IsItemID reports whether s has the form of an Outlook message or event id.
func IsItemID(s string) bool { return itemIDRE.MatchString(s) }

// MailboxKind finds a mailbox kind by its collection ("messages", "events"), without regard to case.
func MailboxKind(collection string) (Kind, bool) {
	for _, k := range mailboxKinds {
		if strings.EqualFold(k.Collection, collection) {
			return k, true
		}
	}
	return Kind{}, false
}

// MailboxScope is the scope of a mailbox item's notifications: the mailbox's subscription resource,
// users/{user-id}/messages or users/{user-id}/events (lower case).
func MailboxScope(user string, k Kind) string {
	return "users/" + strings.ToLower(user) + "/" + k.Collection
}

// MailboxOf reads a mailbox scope back: the user id and the kind.
func MailboxOf(scope string) (user string, k Kind, ok bool) {
	segs := strings.Split(scope, "/")
	if len(segs) != 3 || segs[0] != "users" || !graph.IsGUID(segs[1]) {
		return "", Kind{}, false
	}
	k, ok = MailboxKind(segs[2])
	return segs[1], k, ok
}

// routeMailbox claims a notification whose resource is Users/{user-id}/Messages/{id} or
// Users/{user-id}/Events/{id} (any case). The user id must be a GUID and the item id (resourceData.id,
// else the resource's last segment) must match the item grammar, and agree with the resource's.
func routeMailbox(n *graph.ChangeNotification) (Target, bool, error) {
	segs := strings.Split(strings.Trim(n.Resource, "/"), "/")
	if len(segs) != 4 || !strings.EqualFold(segs[0], "users") {
		return Target{}, false, nil
	}
	kind, ok := MailboxKind(segs[2])
	if !ok {
		return Target{}, false, nil
	}
	if !graph.IsGUID(segs[1]) {
		return Target{}, true, errors.New("mailbox is not a user object id (a GUID)")
	}
	id := segs[3]
	if rd := n.ResourceData; rd != nil && rd.ID != "" && rd.ID != id {
		return Target{}, true, errors.New("resourceData.id differs from the resource's item id")
	}
	if !IsItemID(id) {
		return Target{}, true, errors.New("item id is not an Outlook id")
	}
	scope := MailboxScope(segs[1], kind)
	return Target{Kind: kind, ID: id, Scope: scope, Key: scope + "/" + id}, true, nil
}
