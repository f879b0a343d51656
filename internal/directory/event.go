package directory

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

// Change is what an event reports about one object.
type Change struct {
	Kind        Kind
	ID          string
	ChangeType  graph.ChangeType // Updated or Deleted
	SoftDeleted bool
	// Object is what Graph returned; the event keeps the selected properties. Nil for a permanent delete.
	Object  graph.Object
	Members *message.Members
	Source  message.Source
	// SubscriptionID is the notification's subscription; empty for resync events.
	SubscriptionID string
	// Origin identifies what produced the change, for the event id: the identities of the coalesced
	// notifications (NotificationIdentity), or a resync pass and page.
	Origin []string
}

// NewEvent builds the change event for c, with the properties of sel, observed at now (whole seconds).
func NewEvent(tenant string, sel []string, c Change, now time.Time) message.Event {
	e := message.Event{
		V:           message.Version,
		ID:          EventID(tenant, c),
		Source:      c.Source,
		ChangeType:  c.ChangeType,
		SoftDeleted: c.SoftDeleted,
		Resource:    c.Kind.Collection,
		ResourceID:  c.ID,
		TenantID:    tenant,
		ObservedAt:  now.UTC().Truncate(time.Second),
		Object:      c.Object.Project(sel),
		Field:       c.Kind.EventField,
		Members:     c.Members,
	}
	if c.SubscriptionID != "" {
		s := c.SubscriptionID
		e.SubscriptionID = &s
	}
	return e
}

// EventID is the one rule for event ids: 128 bits of SHA-256 over the source, tenant, collection, object
// id, change type, soft-deleted flag and the sorted, de-duplicated origin. It depends on neither time nor
// attempt, so a redelivered message or a retried page yields the same ids for the same outcomes.
func EventID(tenant string, c Change) string {
	origin := slices.Clone(c.Origin)
	slices.Sort(origin)
	origin = slices.Compact(origin)
	parts := append([]string{string(c.Source), strings.ToLower(tenant), c.Kind.Collection, strings.ToLower(c.ID),
		string(c.ChangeType), strconv.FormatBool(c.SoftDeleted)}, origin...)
	return message.EventID(parts...)
}

// NotificationIdentity names one notification independently of how its JSON was printed: the host
// re-prints every queued message (indented, with its own escaping), and a re-enqueued remainder is printed
// by encoding/json, so raw bytes are not stable across a redelivery.
func NotificationIdentity(n *graph.ChangeNotification) string {
	if rd := n.ResourceData; rd != nil && (rd.SequenceNumber != "" || rd.EventTime != "") {
		return "s|" + strings.ToLower(n.SubscriptionID) + "|" + strings.ToLower(n.ChangeType) + "|" +
			rd.SequenceNumber.String() + "|" + normalTime(rd.EventTime)
	}
	return "j|" + canonicalJSON(n.Raw)
}

// normalTime writes an RFC 3339 time in UTC with its full precision, or the text as it was.
func normalTime(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// canonicalJSON hashes a JSON value re-encoded with sorted keys, no whitespace and encoding/json's escaping.
func canonicalJSON(raw json.RawMessage) string {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if d.Decode(&v) != nil {
		return string(raw)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return string(raw)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// MembersDelta reads a members@delta array (from a delta page, or the hint some group notifications
// carry): entries with @removed are removed members, the others added. Entries whose id is not a GUID are
// skipped. It returns nil when the array is absent, not an array, or names nobody.
func MembersDelta(raw any) *message.Members {
	var entries []any
	switch v := raw.(type) {
	case []any:
		entries = v
	case json.RawMessage:
		if json.Unmarshal(v, &entries) != nil {
			return nil
		}
	default:
		return nil
	}
	m := &message.Members{Added: []string{}, Removed: []string{}}
	for _, e := range entries {
		o, _ := e.(map[string]any)
		id, _ := o["id"].(string)
		if !graph.IsGUID(id) {
			continue
		}
		if _, removed := o["@removed"]; removed {
			m.Removed = append(m.Removed, strings.ToLower(id))
		} else {
			m.Added = append(m.Added, strings.ToLower(id))
		}
	}
	if len(m.Added) == 0 && len(m.Removed) == 0 {
		return nil
	}
	return m
}

// MergeMembers adds b's changes to a (b is later): a member added then removed ends removed, and the
// other way round; each id appears once.
func MergeMembers(a, b *message.Members) *message.Members {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	state := map[string]bool{} // id → added (true) or removed (false); the later report wins
	var order []string
	for _, m := range []*message.Members{a, b} {
		for _, id := range m.Added {
			if _, ok := state[id]; !ok {
				order = append(order, id)
			}
			state[id] = true
		}
		for _, id := range m.Removed {
			if _, ok := state[id]; !ok {
				order = append(order, id)
			}
			state[id] = false
		}
	}
	out := &message.Members{Added: []string{}, Removed: []string{}}
	for _, id := range order {
		if state[id] {
			out.Added = append(out.Added, id)
		} else {
			out.Removed = append(out.Removed, id)
		}
	}
	return out
}
