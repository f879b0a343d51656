// Package directory is the directory family's behaviour (users and groups; the table entry is
// family.Directory): how a set of objects is read (one $batch per 20 requests, deleted items looked up
// the same way), how Graph's answers are classified, what a read says happened to an object, and a
// group's membership changes. The queue worker and the resync only orchestrate these steps.
package directory

import (
	"strings"

	"github.com/graphwebhooks/graph-webhooks-go/internal/family"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
)

// Kind is one kind of directory object.
type Kind = family.Kind

// The kinds the product follows.
var (
	Users  = family.Users
	Groups = family.Groups
)

// Kinds lists every kind.
var Kinds = []Kind{Users, Groups}

// ByCollection finds a kind by its collection name, without regard to case.
func ByCollection(collection string) (Kind, bool) { return family.DirectoryKind(collection) }

// OfNotification tells which kind a change notification is about (family.Directory's routing).
func OfNotification(n *graph.ChangeNotification) (Kind, bool) {
	t, ok, _ := family.Directory.Route(n)
	if !ok {
		return Kind{}, false
	}
	return t.Kind, true
}

// IsGroup reports whether k is the groups kind, whose notifications may hide membership changes.
func IsGroup(k Kind) bool { return strings.EqualFold(k.Collection, Groups.Collection) }
