// Package directory owns the directory objects the product follows (users and groups): what each kind is
// called in Graph and in events, how a set of them is read (one $batch per 20 requests, deleted items
// looked up the same way), how Graph's answers are classified, and how a change event is built and
// identified. The queue worker and the resync only orchestrate these steps; neither has a copy of them.
package directory

import (
	"strings"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

// Kind is one kind of directory object.
type Kind struct {
	// Collection is the Graph collection and the event's resource: "users", "groups".
	Collection string
	// ODataType is the type Graph gives objects of this kind ("#microsoft.graph.user"), in deletedItems too.
	ODataType string
	// EventField is where an event carries the object's properties: "user", "group".
	EventField string
}

// The kinds the product follows.
var (
	Users  = Kind{Collection: config.Users, ODataType: "#microsoft.graph.user", EventField: message.FieldUser}
	Groups = Kind{Collection: config.Groups, ODataType: "#microsoft.graph.group", EventField: message.FieldGroup}
)

// Kinds lists every kind.
var Kinds = []Kind{Users, Groups}

// ByCollection finds a kind by its collection name, without regard to case.
func ByCollection(collection string) (Kind, bool) {
	for _, k := range Kinds {
		if strings.EqualFold(k.Collection, collection) {
			return k, true
		}
	}
	return Kind{}, false
}

// OfNotification tells which kind a change notification is about: from its resource ("Users/{id}",
// "Groups/{id}"), else from resourceData's @odata.type ("#Microsoft.Graph.User"); Graph's casing of both
// varies, so neither is compared with case.
func OfNotification(n *graph.ChangeNotification) (Kind, bool) {
	if coll, _, ok := strings.Cut(strings.TrimPrefix(n.Resource, "/"), "/"); ok {
		if k, ok := ByCollection(coll); ok {
			return k, true
		}
	}
	if rd := n.ResourceData; rd != nil && rd.ODataType != "" {
		for _, k := range Kinds {
			if strings.EqualFold(rd.ODataType, k.ODataType) {
				return k, true
			}
		}
	}
	return Kind{}, false
}
