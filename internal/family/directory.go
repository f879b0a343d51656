package family

import (
	"errors"
	"strings"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
)

// The directory's kinds: users and groups. Their ids are GUIDs.
var (
	Users = Kind{Collection: "users", ODataType: "#microsoft.graph.user", EventField: "user",
		SelectSetting: "GRAPH_USER_SELECT", DefaultSelect: "id,displayName,userPrincipalName,mail,accountEnabled,jobTitle,department", What: "user"}
	Groups = Kind{Collection: "groups", ODataType: "#microsoft.graph.group", EventField: "group",
		SelectSetting: "GRAPH_GROUP_SELECT", DefaultSelect: "id,displayName,description,mail,mailEnabled,securityEnabled,groupTypes,visibility", What: "group"}
)

var directoryKinds = []Kind{Users, Groups}

// DirectoryMaxLifetime is Graph's maximum for user and group subscriptions (41,760 minutes;
// docs/graph-facts.md §3.1).
const DirectoryMaxLifetime = 41760 * time.Minute

// Directory is the family of directory objects: users and groups, whole collections or single objects.
// A notification names one object, which the worker reads by id; Graph sends no missed event for them,
// so a delta pass per collection recovers what it drops.
var Directory = Family{
	Name:  "directory",
	Kinds: directoryKinds,
	Limits: Limits{
		MaxLifetime: DirectoryMaxLifetime,
		ChangeTypes: []graph.ChangeType{graph.Updated, graph.Deleted},
		Lifecycle:   []graph.LifecycleEvent{graph.ReauthorizationRequired},
		Quota:       "100 per app per tenant for directory objects; 1,000 per tenant over all apps",
	},
	Learn:       ReadByID,
	Recovery:    DeltaPass,
	Permission:  "User.Read.All (for users) or Group.Read.All (for groups)",
	Collections: []string{"users", "groups"},
	Entries:     "users, groups, users/{id} and groups/{id}, where {id} is an object id (a GUID)",
	Parse: func(collection, rest string) (Entry, error) {
		if rest != "" && !graph.IsGUID(rest) {
			return Entry{}, errors.New("names an object whose id is not a GUID")
		}
		return Entry{Collection: collection, ID: strings.ToLower(rest)}, nil
	},
	Plan: func(e Entry, changeTypes []string) Plan {
		perm := "User.Read.All"
		if e.Collection == Groups.Collection {
			perm = "Group.Read.All"
		}
		return Plan{Entry: e, Resource: e.Path(), ChangeTypes: changeTypes, Lifetime: DirectoryMaxLifetime - time.Hour,
			LifecycleURL: true, Scope: e.Collection, Permission: perm}
	},
	Route: routeDirectory,
}

// DirectoryKind finds a directory kind by its collection, without regard to case.
func DirectoryKind(collection string) (Kind, bool) {
	for _, k := range directoryKinds {
		if strings.EqualFold(k.Collection, collection) {
			return k, true
		}
	}
	return Kind{}, false
}

// routeDirectory claims a notification whose resource is "Users/{id}" or "Groups/{id}", or, without such a
// resource, whose resourceData's @odata.type is a user's or a group's; Graph's casing of both varies, so
// neither is compared with case. The object's id (resourceData.id, else the resource's last segment)
// must be a GUID.
func routeDirectory(n *graph.ChangeNotification) (Target, bool, error) {
	kind, ok := Kind{}, false
	segs := strings.Split(strings.Trim(n.Resource, "/"), "/")
	switch {
	case len(segs) == 2:
		kind, ok = DirectoryKind(segs[0])
	case len(segs) > 2:
		return Target{}, false, nil // below an object: another family's resource (a mailbox's messages)
	}
	if !ok && len(segs) <= 2 {
		if rd := n.ResourceData; rd != nil && rd.ODataType != "" {
			for _, k := range directoryKinds {
				if strings.EqualFold(rd.ODataType, k.ODataType) {
					kind, ok = k, true
				}
			}
		}
	}
	if !ok {
		return Target{}, false, nil
	}
	id := n.ResourceID()
	if !graph.IsGUID(id) {
		return Target{}, true, errors.New("resource id is not an object id (a GUID)")
	}
	return Target{Kind: kind, ID: id, Scope: kind.Collection,
		Key: kind.Collection + "/" + strings.ToLower(id)}, true, nil
}
