package family

import (
	"errors"
	"strings"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
)

// DriveItems is the drives' kind: files and folders of a OneDrive or a SharePoint document library.
var DriveItems = Kind{Collection: "driveItems", EventField: "driveItem", SelectSetting: "GRAPH_DRIVEITEM_SELECT",
	DefaultSelect: "id,name,webUrl,size,createdDateTime,lastModifiedDateTime,lastModifiedBy,parentReference,file,folder",
	What:          "drive item"}

// DriveMaxLifetime is Graph's maximum for a drive subscription (42,300 minutes; docs/graph-facts.md §10).
const DriveMaxLifetime = 42300 * time.Minute

// DriveContext is the event field naming the drive of a drive item.
const DriveContext = "driveId"

// Drives is the family of drives: one subscription per drive, on its root. A notification only says that
// something in the drive changed (a tap), so the worker runs a delta pass over the drive and emits one
// event per changed item; the same pass recovers any gap.
var Drives = Family{
	Name:  "drives",
	Kinds: []Kind{DriveItems},
	Limits: Limits{
		MaxLifetime: DriveMaxLifetime,
		ChangeTypes: []graph.ChangeType{graph.Updated},
		Lifecycle:   []graph.LifecycleEvent{graph.ReauthorizationRequired},
		Quota:       "not published; keep well under 100 subscriptions per drive (guidance)",
	},
	Learn:            DeltaOnTap,
	Recovery:         DeltaPass,
	Permission:       "Files.Read.All",
	CaseSensitiveIDs: true,
	Collections:      []string{"drives"},
	Entries:          "drives/{drive-id}, where {drive-id} is a drive's id (letters, digits, !, - and _)",
	Parse: func(_, rest string) (Entry, error) {
		if !IsDriveID(rest) {
			return Entry{}, errors.New("names no drive id (letters, digits, !, - and _)")
		}
		return Entry{Collection: "drives", ID: rest}, nil
	},
	Plan: func(e Entry, _ []string) Plan {
		return Plan{Entry: e, Resource: e.Path() + "/root", ChangeTypes: []string{string(graph.Updated)},
			Lifetime: DriveMaxLifetime - time.Hour, LifecycleURL: true, Scope: e.Path(), Permission: "Files.Read.All"}
	},
	Route: routeDrive,
}

// routeDrive claims a notification whose resource is a drive's root ("drives/{drive-id}/root", in any
// case, with or without slashes around it). Whatever resourceData says is not used: Graph does not reliably
// name an item there, and delta tells what changed.
func routeDrive(n *graph.ChangeNotification) (Target, bool, error) {
	segs := strings.Split(strings.Trim(n.Resource, "/"), "/")
	if len(segs) == 0 || !strings.EqualFold(segs[0], "drives") {
		return Target{}, false, nil
	}
	if len(segs) != 3 || !strings.EqualFold(segs[2], "root") || !IsDriveID(segs[1]) {
		return Target{}, true, errors.New("resource is not a drive's root (drives/{drive-id}/root with a drive id)")
	}
	scope := "drives/" + segs[1]
	return Target{Kind: DriveItems, ID: segs[1], Scope: scope, Key: scope}, true, nil
}

// maxDriveID bounds a drive or item id: business drive ids are 66 characters, item ids 34.
const maxDriveID = 256

// IsDriveID reports whether s may be a drive id or a drive item id: letters, digits, '!', '-' and '_'
// (business drives "b!…", business items upper-case letters and digits, personal "D4648F06C91D9D3D!54927").
// Graph publishes no grammar; this one admits every id seen and nothing that changes a URL's meaning.
func IsDriveID(s string) bool {
	if s == "" || len(s) > maxDriveID {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '!', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}
