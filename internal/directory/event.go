package directory

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/family"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

// Change is what an event reports about one object.
type Change = family.Change

// NewEvent builds the change event for c, with the properties of sel, observed at now (whole seconds).
func NewEvent(tenant string, sel []string, c Change, now time.Time) message.Event {
	return family.NewEvent(tenant, sel, c, now)
}

// EventID is the one rule for event ids (family.EventID).
func EventID(tenant string, c Change) string { return family.EventID(tenant, c) }

// NotificationIdentity names one notification independently of how its JSON was printed
// (family.NotificationIdentity).
func NotificationIdentity(n *graph.ChangeNotification) string { return family.NotificationIdentity(n) }

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
