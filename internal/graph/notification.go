// Package graph holds the Microsoft Graph wire types this product speaks and a thin typed client for the
// few calls it makes. The notification types keep what Graph sent byte for byte, because the webhook must
// queue notifications "field for field as Graph sent them" and Graph adds fields without notice
// (reference graph-change-notifications.md §2.1, §8.4 item 6).
package graph

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
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
	OrganizationID                 string // seen in place of tenantId in the wild (§2.1)
	ResourceData                   *ResourceData

	Raw json.RawMessage
}

// ResourceData is the part of a notification that names the changed object. Users carry only ids here (§3.3).
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

// wireNotification mirrors the documented fields; decoding into it checks their JSON types.
type wireNotification struct {
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
	var w wireNotification
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*n = fromWire(w, append(json.RawMessage(nil), b...))
	return nil
}

// MarshalJSON writes the notification exactly as it was received. A notification built in code (no Raw)
// is written from its known fields.
func (n ChangeNotification) MarshalJSON() ([]byte, error) {
	if len(n.Raw) > 0 {
		return n.Raw, nil
	}
	return json.Marshal(wireNotification{
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
// (payloads differ from the docs in the wild, §2.1, §5).
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
// ("Users/{id}", whose casing is unconfirmed, §3.3).
func (n *ChangeNotification) ResourceID() string {
	if n.ResourceData != nil && n.ResourceData.ID != "" {
		return n.ResourceData.ID
	}
	if i := strings.LastIndexByte(n.Resource, '/'); i >= 0 && i < len(n.Resource)-1 {
		return n.Resource[i+1:]
	}
	return ""
}

// NotificationCollection is the body Graph POSTs to a notification URL.
type NotificationCollection struct {
	Value            []ChangeNotification `json:"value"`
	ValidationTokens []string             `json:"validationTokens,omitempty"`
}

// DecodeCollection parses a notification POST body. It is strict about shape (an object with a "value"
// array of objects, strings where strings belong) and lenient about everything else: unknown fields are
// kept, validationTokens may be null.
//
// It runs on the webhook's hot path, so the body is decoded in one pass and each notification's raw bytes
// are found by a scan rather than by decoding every element a second time.
func DecodeCollection(body []byte) (NotificationCollection, error) {
	var c struct {
		Value            *[]wireNotification `json:"value"`
		ValidationTokens []string            `json:"validationTokens"`
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return NotificationCollection{}, errors.New("empty body")
	}
	if trimmed[0] != '{' {
		return NotificationCollection{}, errors.New("body is not a JSON object")
	}
	if err := json.Unmarshal(trimmed, &c); err != nil {
		return NotificationCollection{}, fmt.Errorf("body is not a notification collection: %w", plainJSONError(err))
	}
	if c.Value == nil {
		return NotificationCollection{}, errors.New(`body has no "value" array`)
	}
	raws := valueElements(trimmed)
	if len(raws) != len(*c.Value) {
		return NotificationCollection{}, errors.New("body is not a notification collection: value could not be split")
	}
	out := make([]ChangeNotification, len(raws))
	for i, w := range *c.Value {
		out[i] = fromWire(w, raws[i])
	}
	return NotificationCollection{Value: out, ValidationTokens: c.ValidationTokens}, nil
}

func fromWire(w wireNotification, raw json.RawMessage) ChangeNotification {
	return ChangeNotification{
		SubscriptionID:                 w.SubscriptionID,
		SubscriptionExpirationDateTime: w.SubscriptionExpirationDateTime,
		ChangeType:                     w.ChangeType,
		LifecycleEvent:                 w.LifecycleEvent,
		ClientState:                    w.ClientState,
		Resource:                       w.Resource,
		TenantID:                       w.TenantID,
		OrganizationID:                 w.OrganizationID,
		ResourceData:                   w.ResourceData,
		Raw:                            raw,
	}
}

// valueElements returns the raw bytes of each element of the top-level "value" array of b, which must be a
// valid JSON object. Like encoding/json, it matches the key without regard to case and lets the last
// occurrence win. The slices share b's memory.
func valueElements(b []byte) []json.RawMessage {
	var elems []json.RawMessage
	i := skipSpace(b, 1) // past '{'
	for i < len(b) && b[i] == '"' {
		keyEnd := stringEnd(b, i)
		key := b[i+1 : keyEnd-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			var k string
			json.Unmarshal(b[i:keyEnd], &k)
			key = []byte(k)
		}
		i = skipSpace(b, keyEnd)
		i = skipSpace(b, i+1) // past ':'
		if bytes.EqualFold(key, []byte("value")) && b[i] == '[' {
			elems = elems[:0]
			i = skipSpace(b, i+1)
			for b[i] != ']' {
				end := valueEnd(b, i)
				elems = append(elems, b[i:end])
				i = skipSpace(b, end)
				if b[i] == ',' {
					i = skipSpace(b, i+1)
				}
			}
			i++
		} else {
			i = valueEnd(b, i)
		}
		i = skipSpace(b, i)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	return elems
}

// valueEnd returns the index just past the JSON value starting at b[i].
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = stringEnd(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return i
	}
	for i < len(b) && !bytes.ContainsRune([]byte(",}] \t\r\n"), rune(b[i])) {
		i++
	}
	return i
}

// stringEnd returns the index just past the JSON string starting at b[i] (a quote).
func stringEnd(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// plainJSONError shortens encoding/json's errors to what a caller can act on, without echoing input.
func plainJSONError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			field = "value"
		}
		return fmt.Errorf("%s must be %s, not %s", field, jsonKind(te.Type.Kind().String()), te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("invalid JSON at offset %d", se.Offset)
	}
	return err
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "slice", "array":
		return "an array"
	case "struct", "map", "ptr":
		return "an object"
	}
	return goKind
}
