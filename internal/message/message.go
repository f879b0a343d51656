// Package message defines the two schemas the functions share: the queue message on
// webhooksnotificationqueue and the change event on graphchanges (design.md, "Contracts").
package message

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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
)

// Message is one queue message. It is kept small: at most MaxNotifications notifications and, as the host
// re-prints it, under MaxPrintedBytes (see Split).
type Message struct {
	V                int                        `json:"v"`
	Kind             Kind                       `json:"kind"`
	Notifications    []graph.ChangeNotification `json:"notifications,omitempty"`
	ValidationTokens []string                   `json:"validationTokens,omitempty"`
	Continuation     string                     `json:"continuation,omitempty"`
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
	case KindResync:
		if len(m.Notifications) > 0 {
			return errors.New("resync message carries notifications")
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
	V              int            `json:"v"`
	ID             string         `json:"id"`
	Source         Source         `json:"source"`
	ChangeType     string         `json:"changeType"` // updated or deleted
	SoftDeleted    bool           `json:"softDeleted"`
	Resource       string         `json:"resource"`
	ResourceID     string         `json:"resourceId"`
	TenantID       string         `json:"tenantId"`
	SubscriptionID *string        `json:"subscriptionId"` // null for resync events
	ObservedAt     time.Time      `json:"observedAt"`
	User           map[string]any `json:"user"` // GRAPH_USER_SELECT properties; null when deleted
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
