package mailbox

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/family"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

// The catch-up's bounds. A missed or removed subscription is caught up by re-listing the mailbox's items
// modified within CatchUpWindow (a list filtered on lastModifiedDateTime: no state to keep per mailbox, as
// a per-folder delta would need), at most CatchUpMax of them; each becomes work for the enrichment, which
// reads it and emits only what changed since its last event. Deletions within the gap are not seen by a
// list: they surface when the item's id is next read.
const (
	CatchUpWindow = 24 * time.Hour
	CatchUpMax    = 2000
)

// Lister lists a mailbox's recently modified items (*graph.Client).
type Lister interface {
	ListMailboxItemsSince(ctx context.Context, user, kind string, since time.Time, max int) (ids []string, more bool, err error)
}

// Enqueue puts one work message on the work queue.
type Enqueue func(ctx context.Context, text []byte) error

// CatchUp re-lists one mailbox resource and queues its items as notifications work.
type CatchUp struct {
	Lister  Lister
	Enqueue Enqueue
	Tenant  string
	Now     func() time.Time
}

// Run catches up resource (users/{id}/messages or users/{id}/events) for subscription subID (may be
// empty), and returns how many items it queued and whether CatchUpMax cut the list short.
func (c *CatchUp) Run(ctx context.Context, resource, subID string) (queued int, truncated bool, err error) {
	user, kind, ok := family.MailboxOf(resource)
	if !ok {
		return 0, false, fmt.Errorf("%q is not a mailbox resource", resource)
	}
	now := c.Now()
	ids, more, err := c.Lister.ListMailboxItemsSince(ctx, user, kind.Collection, now.Add(-CatchUpWindow), CatchUpMax)
	if err != nil {
		return 0, false, err
	}
	var ns []graph.ChangeNotification
	for _, id := range ids {
		if !family.IsItemID(id) {
			continue
		}
		n, err := Notification(c.Tenant, subID, user, kind, id, now)
		if err != nil {
			return 0, more, err
		}
		ns = append(ns, n)
	}
	if len(ns) == 0 {
		return 0, more, nil
	}
	msgs, _, err := message.Split(message.Message{V: message.Version, Kind: message.KindNotifications, FirstSeen: now.UTC()}, ns)
	if err != nil {
		return 0, more, err
	}
	for _, m := range msgs {
		text, err := json.Marshal(m)
		if err != nil {
			return queued, more, err
		}
		if err := c.Enqueue(ctx, text); err != nil {
			return queued, more, fmt.Errorf("queueing the catch-up of %s: %w", resource, err)
		}
		queued += len(m.Notifications)
	}
	return queued, more, nil
}

// Notification is the change notification a catch-up queues for one item: what Graph would have sent for
// an update, marked in its eventTime with the catch-up's time, so that its event id differs from a real one.
func Notification(tenant, subID, user string, kind family.Kind, id string, at time.Time) (graph.ChangeNotification, error) {
	seg, typ := "Messages", "#Microsoft.Graph.Message"
	if kind == family.Events {
		seg, typ = "Events", "#Microsoft.Graph.Event"
	}
	res := "Users/" + user + "/" + seg + "/" + id
	raw, err := json.Marshal(map[string]any{
		"subscriptionId": subID, "changeType": "updated", "tenantId": tenant, "resource": res,
		"resourceData": map[string]any{"@odata.type": typ, "@odata.id": res, "id": id, "eventTime": at.UTC().Format(time.RFC3339Nano)},
	})
	if err != nil {
		return graph.ChangeNotification{}, err
	}
	var n graph.ChangeNotification
	err = json.Unmarshal(raw, &n)
	return n, err
}
