package family

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

// Change is what an event reports about one object, whatever its family.
type Change struct {
	Kind        Kind
	ID          string
	ChangeType  graph.ChangeType
	SoftDeleted bool
	// Object is what Graph returned; the event keeps the selected properties. Nil for a delete that left
	// nothing to read.
	Object  graph.Object
	Members *message.Members
	// Context holds the event's fields that say where the object lives ({"driveId": …}), or nil.
	Context map[string]string
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
		Context:     c.Context,
	}
	if c.SubscriptionID != "" {
		s := c.SubscriptionID
		e.SubscriptionID = &s
	}
	return e
}

// EventID is the one rule for event ids: 128 bits of SHA-256 over the source, tenant, collection, object
// id, change type, soft-deleted flag, the context (when there is one) and the sorted, de-duplicated
// origin. It depends on neither time nor attempt, so a redelivered message or a retried page yields the
// same ids for the same outcomes.
func EventID(tenant string, c Change) string {
	origin := slices.Clone(c.Origin)
	slices.Sort(origin)
	origin = slices.Compact(origin)
	parts := []string{string(c.Source), strings.ToLower(tenant), c.Kind.Collection, strings.ToLower(c.ID),
		string(c.ChangeType), strconv.FormatBool(c.SoftDeleted)}
	for _, k := range slices.Sorted(maps.Keys(c.Context)) {
		parts = append(parts, "ctx", k, c.Context[k])
	}
	return message.EventID(append(parts, origin...)...)
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
