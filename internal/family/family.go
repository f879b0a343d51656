// Package family is the table of the resource families the product follows (directory objects, drives,
// and the ones to come), and the small types every family is described by: which GRAPH_RESOURCE entries
// it takes, which subscriptions they imply, Graph's limits for it, the grammar of its ids, how the worker
// learns what changed and how a gap is recovered, its select settings and its event fields.
//
// A family is data: an entry of Families, in a file of its own. The settings, the subscription keeper,
// the webhook's id check, the queue worker and the resync look families up here and act on what the entry
// says; none of them has a switch over families. Behaviour that is more than data (reading by id, walking
// a delta) lives with the code that runs it and is chosen by the entry's Learn and Recovery.
package family

import (
	"slices"
	"strings"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
)

// Name names a family.
type Name string

// Learn says how the worker learns what a notification is about.
type Learn int

const (
	// ReadByID: the notification names an object; the worker reads it by id ($batch) and emits its state.
	ReadByID Learn = iota
	// DeltaOnTap: the notification says only that something in a scope changed (a tap on the shoulder);
	// the worker runs a delta pass over that scope, never a read per item.
	DeltaOnTap
	// Payload: the notification carries the resource itself (encrypted); no Graph read is needed.
	Payload
)

var learnNames = [...]string{"read by id", "delta on a tap", "the notification's payload"}

func (l Learn) String() string { return learnNames[l] }

// Recovery says how the changes Graph did not deliver are recovered.
type Recovery int

const (
	// DeltaPass: a delta pass over the scope (internal/resync), after every known gap and daily.
	DeltaPass Recovery = iota
	// CatchUp: a catch-up of one subscription's resource, when Graph says it missed notifications
	// (lifecycle events missed and subscriptionRemoved).
	CatchUp
	// Resubscribe: nothing can be re-read; a removed subscription is created again.
	Resubscribe
)

// Limits are Graph's rules for a family's subscriptions (docs/graph-facts.md).
type Limits struct {
	// MaxLifetime is the longest expirationDateTime Graph accepts, from now.
	MaxLifetime time.Duration
	// ChangeTypes are those Graph accepts on a subscription.
	ChangeTypes []graph.ChangeType
	// Lifecycle are the lifecycle events Graph sends for the family.
	Lifecycle []graph.LifecycleEvent
	// LifecycleURLOver: a subscription living longer than this must have a lifecycle URL (0: never required).
	LifecycleURLOver time.Duration
	// Rich: Graph can include the resource in the notification (includeResourceData).
	Rich bool
	// Quota says, in words, how many subscriptions Graph allows.
	Quota string
}

// Kind is one kind of object a family emits events about. It is comparable, so it can key maps.
type Kind struct {
	// Collection is the event's resource and the object state's collection: "users", "driveItems".
	Collection string
	// ODataType is the type Graph gives objects of this kind ("#microsoft.graph.user"), or "".
	ODataType string
	// EventField is where an event carries the object's properties: "user", "driveItem".
	EventField string
	// SelectSetting is the app setting listing the properties read and put in events, and DefaultSelect
	// its default, comma-separated ("id" is always among them).
	SelectSetting, DefaultSelect string
	// What names one object in plain words, for messages ("user", "drive item").
	What string
}

// Entry is one GRAPH_RESOURCE entry, as its family read it: a collection ("users", "drives") and, for an
// entry naming one thing of it, that thing's id ("users/{id}", "drives/{drive-id}").
type Entry struct {
	Collection string
	ID         string // "" for the whole collection
}

// Path is the entry as written in GRAPH_RESOURCE.
func (e Entry) Path() string {
	if e.ID == "" {
		return e.Collection
	}
	return e.Collection + "/" + e.ID
}

func (e Entry) String() string { return e.Path() }

// Plan is one subscription the settings imply.
type Plan struct {
	Entry Entry
	// Resource is the subscription's resource as Graph takes it ("users", "drives/{drive-id}/root").
	Resource string
	// ChangeTypes are its change types, sorted ("deleted", "updated").
	ChangeTypes []string
	// Lifetime is what a create or renewal asks for: Graph's maximum less a margin for clock skew.
	Lifetime time.Duration
	// LifecycleURL: the lifecycle URL must be set (Graph requires it for this subscription).
	LifecycleURL bool
	// IncludeResourceData: Graph is to send the resource, encrypted, in each notification.
	IncludeResourceData bool
	// Scope is what a gap in this subscription's notifications is recovered over: the resync scope
	// ("users", "drives/{drive-id}"), or "" when the family recovers otherwise.
	Scope string
	// Permission is the application permission the subscription needs, for a hint on 403.
	Permission string
}

// ChangeType is the changeType value Graph wants: a comma-separated list.
func (p Plan) ChangeType() string { return strings.Join(p.ChangeTypes, ",") }

// Target is what a change notification is about, as its family read it. Every id in it has passed the
// family's grammar.
type Target struct {
	Family *Family // set by Route
	Kind   Kind
	// ID is the object's id (ReadByID, Payload), or the id of the scope a tap is about (DeltaOnTap).
	ID string
	// Scope is the resync scope the notification falls in ("users", "drives/{drive-id}").
	Scope string
	// Key identifies the object within the message, for coalescing notifications about it.
	Key string
	// Context says where the object lives, as its events carry it ({"teamId": …, "channelId": …}), or nil.
	Context map[string]string
}

// Family is one entry of the table.
type Family struct {
	Name     Name
	Kinds    []Kind
	Limits   Limits
	Learn    Learn
	Recovery Recovery
	// Permission is the application permission the family needs, for hints when Graph answers 403.
	Permission string
	// CaseSensitiveIDs: two ids that differ only in case name two things (drive ids), so a name built from
	// one keeps its case.
	CaseSensitiveIDs bool
	// Collections are the first segments of the GRAPH_RESOURCE entries the family takes, and Entries
	// says what those entries look like, for a message about a malformed one.
	Collections []string
	Entries     string
	// Parse reads one GRAPH_RESOURCE entry whose first segment is one of Collections (slashes trimmed,
	// the collection in lower case); an error says what is wrong with it, without quoting it.
	Parse func(collection, rest string) (Entry, error)
	// Plan is the subscription an entry implies. changeTypes is GRAPH_CHANGE_TYPE, for the families it
	// applies to.
	Plan func(e Entry, changeTypes []string) Plan
	// Route tells whether a change notification belongs to the family (ok) and what it is about; err
	// says why a notification of the family cannot be believed (an id off its grammar): it never reaches
	// Graph.
	Route func(n *graph.ChangeNotification) (t Target, ok bool, err error)
}

// Families is the table: every family the product follows, in the order notifications are routed.
var Families = []*Family{&Directory, &Drives, &Mailboxes, &Teams}

// ByName finds a family.
func ByName(name Name) (*Family, bool) {
	for _, f := range Families {
		if f.Name == name {
			return f, true
		}
	}
	return nil, false
}

// ForCollection finds the family taking GRAPH_RESOURCE entries of a collection ("users", "drives").
func ForCollection(collection string) (*Family, bool) {
	for _, f := range Families {
		if slices.Contains(f.Collections, strings.ToLower(collection)) {
			return f, true
		}
	}
	return nil, false
}

// KindOf finds the kind of objects an event's resource names ("users", "driveItems").
func KindOf(collection string) (Kind, *Family, bool) {
	for _, f := range Families {
		for _, k := range f.Kinds {
			if strings.EqualFold(k.Collection, collection) {
				return k, f, true
			}
		}
	}
	return Kind{}, nil, false
}

// Kinds lists every kind of every family, for the settings.
func Kinds() []Kind {
	var out []Kind
	for _, f := range Families {
		out = append(out, f.Kinds...)
	}
	return out
}

// ParseEntry reads one GRAPH_RESOURCE entry (surrounding slashes ignored) through its family.
func ParseEntry(entry string) (Entry, *Family, error) {
	entry = strings.Trim(strings.TrimSpace(entry), "/")
	coll, rest, _ := strings.Cut(entry, "/")
	f, ok := ForCollection(coll)
	if !ok {
		return Entry{}, nil, errUnknownEntry
	}
	e, err := f.Parse(strings.ToLower(coll), rest)
	return e, f, err
}

// EntryGrammar says, in words, what every family's entries look like.
func EntryGrammar() string {
	parts := make([]string, len(Families))
	for i, f := range Families {
		parts[i] = f.Entries
	}
	return strings.Join(parts, "; ")
}

// PlanOf is the subscription an entry implies.
func PlanOf(e Entry, changeTypes []string) (Plan, bool) {
	f, ok := ForCollection(e.Collection)
	if !ok {
		return Plan{}, false
	}
	return f.Plan(e, changeTypes), true
}

// Route finds the family of a change notification and what it is about. ok is false when no family
// claims it; err is non-nil when one does but an id in it is off the family's grammar.
func Route(n *graph.ChangeNotification) (Target, bool, error) {
	for _, f := range Families {
		if t, ok, err := f.Route(n); ok || err != nil {
			t.Family = f
			return t, ok, err
		}
	}
	return Target{}, false, nil
}

// Believable reports whether a change notification's ids may be acted on: its family's grammar holds
// for them, or, for a notification no family claims, its id is a GUID (the worker then sets it aside
// without reading anything). The webhook drops the others.
func Believable(n *graph.ChangeNotification) bool {
	_, ok, err := Route(n)
	return err == nil && (ok || graph.IsGUID(n.ResourceID()))
}

// ScopeOf is the resync scope an entry falls in: its collection for the directory ("users"), the entry
// itself for a drive ("drives/{drive-id}").
func ScopeOf(e Entry) string {
	if p, ok := PlanOf(e, nil); ok {
		return p.Scope
	}
	return ""
}

// FamilyOfScope finds the family of a resync scope ("users", "drives/{drive-id}").
func FamilyOfScope(scope string) (*Family, Entry, bool) {
	coll, rest, _ := strings.Cut(scope, "/")
	f, ok := ForCollection(coll)
	if !ok {
		return nil, Entry{}, false
	}
	e, err := f.Parse(strings.ToLower(coll), rest)
	if err != nil || f.Plan(e, nil).Scope != scope {
		return nil, Entry{}, false
	}
	return f, e, true
}

type entryError string

func (e entryError) Error() string { return string(e) }

const errUnknownEntry = entryError("names no resource family the product follows")
