// Package graph holds the Microsoft Graph wire types this product speaks and a thin typed client for the
// few calls it makes. The notification types keep what Graph sent byte for byte, because the webhook must
// queue notifications "field for field as Graph sent them" and Graph adds fields without notice
// (docs/graph-facts.md §2.1, §5).
package graph

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
)

// ChangeNotification is one item of a changeNotificationCollection. The known fields are decoded for the
// product's checks; Raw keeps the object exactly as received, unknown fields and a sequenceNumber beyond
// 2^53 included, and is what MarshalJSON writes back.
type ChangeNotification struct {
	SubscriptionID                 string
	SubscriptionExpirationDateTime string
	ChangeType                     string // created, updated, deleted; empty on lifecycle notifications
	LifecycleEvent                 string // missed, subscriptionRemoved, reauthorizationRequired
	ClientState                    string
	Resource                       string // e.g. "Users/{id}"
	TenantID                       string
	OrganizationID                 string // seen in place of tenantId in the wild (docs/graph-facts.md §2.1)
	ResourceData                   *ResourceData

	Raw json.RawMessage
}

// ResourceData is the part of a notification that names the changed object. Users carry only ids here (docs/graph-facts.md §3.3).
type ResourceData struct {
	ODataType      string      `json:"@odata.type,omitempty"`
	ODataID        string      `json:"@odata.id,omitempty"`
	ID             string      `json:"id,omitempty"`
	OrganizationID string      `json:"organizationId,omitempty"`
	EventTime      string      `json:"eventTime,omitempty"`
	SequenceNumber json.Number `json:"sequenceNumber,omitempty"`
	// MembersDelta is what some group notifications are reported to carry: the members added and removed.
	// Its shape and completeness are not documented, so it is only ever a hint.
	MembersDelta json.RawMessage `json:"members@delta,omitempty"`
}

// WireNotification mirrors a notification's documented fields; decoding into it checks their JSON types.
// It is what ChangeNotification decodes, and what internal/intake verifies, so both read a notification
// the same way.
type WireNotification struct {
	SubscriptionID                 string        `json:"subscriptionId"`
	SubscriptionExpirationDateTime string        `json:"subscriptionExpirationDateTime"`
	ChangeType                     string        `json:"changeType"`
	LifecycleEvent                 string        `json:"lifecycleEvent"`
	ClientState                    string        `json:"clientState"`
	Resource                       string        `json:"resource"`
	TenantID                       string        `json:"tenantId"`
	OrganizationID                 string        `json:"organizationId"`
	ResourceData                   *ResourceData `json:"resourceData"`
}

// UnmarshalJSON decodes the known fields (wrong JSON types are errors) and keeps a copy of the raw object.
func (n *ChangeNotification) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return errors.New("notification is not a JSON object")
	}
	var w WireNotification
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*n = ChangeNotification{
		SubscriptionID:                 w.SubscriptionID,
		SubscriptionExpirationDateTime: w.SubscriptionExpirationDateTime,
		ChangeType:                     w.ChangeType,
		LifecycleEvent:                 w.LifecycleEvent,
		ClientState:                    w.ClientState,
		Resource:                       w.Resource,
		TenantID:                       w.TenantID,
		OrganizationID:                 w.OrganizationID,
		ResourceData:                   w.ResourceData,
		Raw:                            append(json.RawMessage(nil), b...),
	}
	return nil
}

// MarshalJSON writes the notification exactly as it was received. A notification built in code (no Raw)
// is written from its known fields.
func (n ChangeNotification) MarshalJSON() ([]byte, error) {
	if len(n.Raw) > 0 {
		return n.Raw, nil
	}
	return json.Marshal(WireNotification{
		SubscriptionID:                 n.SubscriptionID,
		SubscriptionExpirationDateTime: n.SubscriptionExpirationDateTime,
		ChangeType:                     n.ChangeType,
		LifecycleEvent:                 n.LifecycleEvent,
		ClientState:                    n.ClientState,
		Resource:                       n.Resource,
		TenantID:                       n.TenantID,
		OrganizationID:                 n.OrganizationID,
		ResourceData:                   n.ResourceData,
	})
}

// Tenant is the notification's tenant: tenantId, else organizationId, else resourceData.organizationId
// (payloads differ from the docs in the wild, docs/graph-facts.md §2.1, §5).
func (n *ChangeNotification) Tenant() string {
	switch {
	case n.TenantID != "":
		return n.TenantID
	case n.OrganizationID != "":
		return n.OrganizationID
	case n.ResourceData != nil:
		return n.ResourceData.OrganizationID
	}
	return ""
}

// IsLifecycle reports whether this is a lifecycle notification rather than a resource change.
func (n *ChangeNotification) IsLifecycle() bool { return n.LifecycleEvent != "" }

// ResourceID is the id of the changed object: resourceData.id, else the last segment of resource
// ("Users/{id}", whose casing is unconfirmed, docs/graph-facts.md §3.3).
func (n *ChangeNotification) ResourceID() string {
	if n.ResourceData != nil && n.ResourceData.ID != "" {
		return n.ResourceData.ID
	}
	if i := strings.LastIndexByte(n.Resource, '/'); i >= 0 && i < len(n.Resource)-1 {
		return n.Resource[i+1:]
	}
	return ""
}
