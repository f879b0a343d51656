// Package message defines the two schemas the functions share: the queue message on
// webhooksnotificationqueue and the change event on graphchanges (README.md, "Queue message" and "Change event").
package message

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
)

// The queues, as every function.json names them: the webhook's output and the worker's trigger, and the
// worker's output. Code that names one of them uses these.
const (
	WorkQueue    = "webhooksnotificationqueue"
	ChangesQueue = "graphchanges"
)

// Version is the schema version written in every message and event. A reader refuses versions it does not know
// rather than guessing.
const Version = 1

// Kind says what a queue message asks the worker to do.
type Kind string

const (
	KindNotifications Kind = "notifications" // resource changes to enrich
	KindLifecycle     Kind = "lifecycle"     // subscription lifecycle events
	KindResync        Kind = "resync"        // one page of a delta-query resync
	// KindResyncRequest asks for a resync pass of every collection (one the product itself found it needs,
	// such as a batch of events too large to read); Reason says why.
	KindResyncRequest Kind = "resyncRequest"
)

// Message is one queue message. It is kept within a queue message's limit: as the host re-prints it, under
// MaxPrintedBytes, and at most MaxNotifications notifications (see Split).
type Message struct {
	V                int                        `json:"v"`
	Kind             Kind                       `json:"kind"`
	Notifications    []graph.ChangeNotification `json:"notifications,omitempty"`
	ValidationTokens []string                   `json:"validationTokens,omitempty"`
	Continuation     string                     `json:"continuation,omitempty"`
	Reason           string                     `json:"reason,omitempty"` // resyncRequest: why, for the log
	Attempt          int                        `json:"attempt"`
	NotBefore        *time.Time                 `json:"notBefore,omitempty"`
	FirstSeen        time.Time                  `json:"firstSeen"`
}

// Decode parses a queue message and checks what every consumer relies on.
func Decode(b []byte) (*Message, error) {
	var m Message
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("message is not JSON of the queue schema: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate reports what makes a message unusable.
func (m *Message) Validate() error {
	if m.V != Version {
		return fmt.Errorf("message version %d is not supported (want %d)", m.V, Version)
	}
	switch m.Kind {
	case KindNotifications, KindLifecycle:
		if len(m.Notifications) == 0 {
			return fmt.Errorf("%s message has no notifications", m.Kind)
		}
	case KindResync, KindResyncRequest:
		if len(m.Notifications) > 0 {
			return fmt.Errorf("%s message carries notifications", m.Kind)
		}
	case "":
		return errors.New("message has no kind")
	default:
		return fmt.Errorf("message kind %q is unknown", m.Kind)
	}
	if m.Attempt < 0 {
		return fmt.Errorf("message attempt %d is negative", m.Attempt)
	}
	return nil
}

// CheckTimes reports a message whose notBefore or firstSeen lies more than ahead of now: no writer of this
// product sets either so far into the future, and such a message would re-enqueue itself for ever.
func (m *Message) CheckTimes(now time.Time, ahead time.Duration) error {
	limit := now.Add(ahead)
	if m.NotBefore != nil && m.NotBefore.After(limit) {
		return fmt.Errorf("message notBefore is more than %s ahead", ahead)
	}
	if m.FirstSeen.After(limit) {
		return fmt.Errorf("message firstSeen is more than %s ahead", ahead)
	}
	return nil
}

// Source says what produced a change event.
type Source string

const (
	SourceNotification Source = "notification"
	SourceResync       Source = "resync"
	SourceFullSync     Source = "fullsync"
)

// Event is one enriched change, written to graphchanges. Delivery is at least once; ID is stable for the
// same input so consumers can de-duplicate.
type Event struct {
	V           int              `json:"v"`
	ID          string           `json:"id"`
	Source      Source           `json:"source"`
	ChangeType  graph.ChangeType `json:"changeType"` // updated or deleted
	SoftDeleted bool             `json:"softDeleted"`
	Resource    string           `json:"resource"` // the collection: users, groups
	ResourceID  string           `json:"resourceId"`
	TenantID    string           `json:"tenantId"`
	// SubscriptionID is null for resync events.
	SubscriptionID *string   `json:"subscriptionId"`
	ObservedAt     time.Time `json:"observedAt"`
	// Members is a group's membership change, when Graph reported one.
	Members *Members `json:"members,omitempty"`
	// Changed names the selected properties whose values differ from the last emitted state, and Previous
	// holds their old values; both are absent when there is no earlier state to compare with.
	Changed  []string       `json:"changed,omitzero"`
	Previous map[string]any `json:"previous,omitzero"`

	// Object is the object's selected properties, or nil (JSON null) when it is deleted. It is written
	// under Field: "user" for users, "group" for groups.
	Object map[string]any `json:"-"`
	Field  string         `json:"-"`
	// Context holds fields that say where the object lives, written beside the common ones: a drive
	// item's "driveId". Nil for users and groups.
	Context map[string]string `json:"-"`
}

// Members lists the member ids a group gained and lost.
type Members struct {
	Added   []string `json:"added"`
	Removed []string `json:"removed"`
}

// The fields an event's object may be written under.
const (
	FieldUser  = "user"
	FieldGroup = "group"
)

type eventBase Event // without the methods, so encoding/json handles the common fields

// MarshalJSON writes the event with its object under Field ("user" when Field is empty).
func (e Event) MarshalJSON() ([]byte, error) {
	base, err := json.Marshal(eventBase(e))
	if err != nil {
		return nil, err
	}
	obj, err := json.Marshal(e.Object)
	if err != nil {
		return nil, err
	}
	field := e.Field
	if field == "" {
		field = FieldUser
	}
	out := make([]byte, 0, len(base)+len(field)+len(obj)+4)
	out = append(out, base[:len(base)-1]...)
	for _, k := range slices.Sorted(maps.Keys(e.Context)) {
		if _, common := commonFields[k]; common || k == field {
			continue // a context never hides a common field
		}
		kv, err := json.Marshal(map[string]string{k: e.Context[k]})
		if err != nil {
			return nil, err
		}
		out = append(out, ',')
		out = append(out, kv[1:len(kv)-1]...)
	}
	out = append(out, `,"`...)
	out = append(out, field...)
	out = append(out, `":`...)
	out = append(out, obj...)
	return append(out, '}'), nil
}

// commonFields are the JSON names of the fields every event has.
var commonFields = func() map[string]struct{} {
	b, _ := json.Marshal(eventBase{Members: &Members{}, Changed: []string{"x"}, Previous: map[string]any{"x": 1}})
	var m map[string]json.RawMessage
	_ = json.Unmarshal(b, &m)
	out := make(map[string]struct{}, len(m))
	for k := range m {
		out[k] = struct{}{}
	}
	return out
}()

// UnmarshalJSON reads an event written by MarshalJSON: the object from the one member that is not a
// common field and holds an object or null ("user" when there is none), and the other members that hold
// strings as the context.
func (e *Event) UnmarshalJSON(b []byte) error {
	var base eventBase
	if err := json.Unmarshal(b, &base); err != nil {
		return err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return err
	}
	*e = Event(base)
	e.Field = FieldUser
	raw, ok := fields[FieldUser]
	for k, v := range fields {
		if _, common := commonFields[k]; common || k == FieldUser {
			continue
		}
		v = bytes.TrimSpace(v)
		switch {
		case len(v) > 0 && v[0] == '"':
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return fmt.Errorf("event %s: %w", k, err)
			}
			if e.Context == nil {
				e.Context = map[string]string{}
			}
			e.Context[k] = s
		case len(v) > 0 && (v[0] == '{' || v[0] == 'n'):
			raw, ok, e.Field = v, true, k
		}
	}
	if ok {
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		if err := d.Decode(&e.Object); err != nil {
			return fmt.Errorf("event %s: %w", e.Field, err)
		}
	}
	return nil
}

// EncodeAll encodes messages as one JSON array, writing each notification's raw bytes as they are. It
// exists for the webhook's hot path: json.Marshal would re-validate and compact every notification
// (a json.Marshaler's output always is), which costs more than everything else the webhook does.
func EncodeAll(ms []Message) (json.RawMessage, error) {
	out := make([]byte, 0, 1024*len(ms))
	out = append(out, '[')
	for i := range ms {
		if i > 0 {
			out = append(out, ',')
		}
		head := ms[i]
		head.Notifications = nil
		h, err := json.Marshal(head)
		if err != nil {
			return nil, fmt.Errorf("encode message: %w", err)
		}
		if len(ms[i].Notifications) == 0 {
			out = append(out, h...)
			continue
		}
		out = append(out, h[:len(h)-1]...) // without the closing brace
		out = append(out, `,"notifications":[`...)
		for j := range ms[i].Notifications {
			if j > 0 {
				out = append(out, ',')
			}
			raw, err := ms[i].Notifications[j].MarshalJSON()
			if err != nil {
				return nil, fmt.Errorf("encode notification: %w", err)
			}
			out = append(out, raw...)
		}
		out = append(out, "]}"...)
	}
	return append(out, ']'), nil
}

// EventID derives an event id from the parts that identify a change (source, tenant, user, change type and
// what produced it), so that the same input always yields the same id: 128 bits of a SHA-256 over the
// NUL-separated parts, in hex.
func EventID(parts ...string) string {
	h := sha256.New()
	h.Write([]byte("event/v1\x00"))
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}
