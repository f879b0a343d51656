package intake

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/graphwebhooks/graph-webhooks-go/internal/family"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
)

// wire is a notification's documented fields, decoded from its raw bytes with encoding/json as
// graph.ChangeNotification decodes them when the worker reads the queued message, so what is verified here
// is what the worker sees (FuzzVerifiedIsQueued checks it).
type wire = graph.WireNotification

// Member names the product reads, as encoding/json matches them (without regard to case).
const (
	nameValue            = "value"
	nameValidationTokens = "validationTokens"
	nameClientState      = "clientState"
	nameResourceData     = "resourceData"
)

// collection is the state of one streamed body: the verified notifications, the counts, and scratch space
// reused from one element to the next so that a body of a million tiny elements allocates next to nothing.
type collection struct {
	v         *Verifier
	changes   []graph.ChangeNotification
	lifecycle []graph.ChangeNotification
	tokens    []string
	res       Result

	ms   []member
	rd   []member
	seen map[string]struct{}
	w    wire
}

// decode reads body, a changeNotificationCollection, one notification at a time: each element of "value" is
// verified where it lies in body and kept (as a copy without its clientState) only when it passes. Nothing
// is built for an element that fails, so memory is bounded by what is kept, never by the number of
// elements, and a body of a million empty objects costs one pass of validation and one of scanning.
func (c *collection) decode(body []byte) error {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return badInput("the body is empty: expected a change notification collection")
	}
	if trimmed[0] != '{' {
		return badInput("body is not a JSON object")
	}
	// encoding/json validates the whole text (syntax, nesting depth) without building anything; the scans
	// below rely on it.
	if !json.Valid(trimmed) {
		return bodyError(json.Unmarshal(trimmed, &skip{})) // only for the error's offset
	}
	top, err := members(trimmed, nil, maxCollectionMembers)
	if err != nil {
		return badInput("body is not a notification collection: it has more than %d members", maxCollectionMembers)
	}
	// Two members encoding/json would read as one field (two "value" arrays) make two views of one body:
	// whichever a reader keeps, another might keep the other. Refuse rather than choose.
	if dup, name := c.duplicate(trimmed, top); dup {
		return badInput("body is not a notification collection: it has two members named %s", describeName(name, nameValue, nameValidationTokens))
	}
	var value []byte
	for _, m := range top {
		v := trimmed[m.valueStart:m.valueEnd]
		switch name := string(m.name(trimmed)); {
		case strings.EqualFold(name, nameValue):
			switch v[0] {
			case 'n':
			case '[':
				value = v
			default:
				return badInput("body is not a notification collection: value must be an array, not %s", rawKind(v))
			}
		case strings.EqualFold(name, nameValidationTokens):
			if err := json.Unmarshal(v, &c.tokens); err != nil {
				return badInput("body is not a notification collection: validationTokens must be an array of strings")
			}
		}
	}
	if value == nil {
		return badInput(`body has no "value" array`)
	}
	for i := skipSpace(value, 1); value[i] != ']'; {
		end := valueEnd(value, i)
		if err := c.notification(value[i:end]); err != nil {
			return err
		}
		i = skipSpace(value, end)
		if value[i] == ',' {
			i = skipSpace(value, i+1)
		}
	}
	return nil
}

// Bounds on members, far above what Graph sends (two or three in a collection, about ten in a notification),
// so that one object with a million members cannot make a table of them.
const (
	maxCollectionMembers   = 64
	maxNotificationMembers = 256
)

// notification verifies one element of "value" and keeps it, without its clientState, when it
// passes. A malformed element refuses the whole body; one that fails verification is counted and dropped.
func (c *collection) notification(raw []byte) error {
	if raw[0] != '{' {
		return badInput("body is not a notification collection: value must be an object, not %s", rawKind(raw))
	}
	var err error
	if c.ms, err = members(raw, c.ms[:0], maxNotificationMembers); err != nil {
		return badInput("body is not a notification collection: a notification has more than %d members", maxNotificationMembers)
	}
	if dup, name := c.duplicate(raw, c.ms); dup {
		return badInput("body is not a notification collection: a notification has two members named %s", describeName(name, wireNames...))
	}
	for _, m := range c.ms {
		if strings.EqualFold(string(m.name(raw)), nameResourceData) && raw[m.valueStart] == '{' {
			obj := raw[m.valueStart:m.valueEnd]
			if c.rd, err = members(obj, c.rd[:0], maxNotificationMembers); err != nil {
				return badInput("body is not a notification collection: a notification's resourceData has more than %d members", maxNotificationMembers)
			}
			if dup, name := c.duplicate(obj, c.rd); dup {
				return badInput("body is not a notification collection: a notification's resourceData has two members named %s", describeName(name, resourceDataNames...))
			}
		}
	}
	// Most forgeries fail on clientState: check it before decoding the rest, so that a body of a million
	// forged elements costs a scan, not a million decodes.
	// An empty or missing clientState never matches (GRAPH_CLIENT_STATE has at least 16 characters), and
	// needs no digest to say so.
	if state, ok := stringMember(raw, c.ms, nameClientState); ok && (state == "" || !c.v.clientStateMatches(state)) {
		c.res.BadClientState++
		sub, _ := stringMember(raw, c.ms, "subscriptionId")
		c.noteDropped(sub)
		return nil
	}
	c.w = wire{}
	if err := json.Unmarshal(raw, &c.w); err != nil {
		return elementError(err)
	}
	w := &c.w
	n := graph.ChangeNotification{
		SubscriptionID:                 w.SubscriptionID,
		SubscriptionExpirationDateTime: w.SubscriptionExpirationDateTime,
		ChangeType:                     w.ChangeType,
		LifecycleEvent:                 w.LifecycleEvent,
		Resource:                       w.Resource,
		TenantID:                       w.TenantID,
		OrganizationID:                 w.OrganizationID,
		ResourceData:                   w.ResourceData,
	}
	switch {
	case !c.v.clientStateMatches(w.ClientState):
		c.res.BadClientState++
		c.noteDropped(n.SubscriptionID)
		return nil
	case !strings.EqualFold(n.Tenant(), c.v.tenant):
		c.res.ForeignTenant++
		c.noteDropped(n.SubscriptionID)
		return nil
	case n.IsLifecycle() && !graph.IsGUID(n.SubscriptionID):
		// Lifecycle notifications name a subscription, not an object; Graph's subscription ids are GUIDs,
		// and anything else is no subscription of this app's that the worker could act on.
		c.res.MalformedID++
		c.noteDropped(n.SubscriptionID)
		return nil
	case n.IsLifecycle():
		n.Raw = withoutClientState(raw, c.ms)
		c.lifecycle = append(c.lifecycle, n)
		return nil
	case !family.Believable(&n):
		// An id off its family's grammar (a UPN, "delta", a path where a GUID belongs) is never put in a URL.
		c.res.MalformedID++
		c.noteDropped(n.SubscriptionID)
		return nil
	}
	n.Raw = withoutClientState(raw, c.ms)
	c.changes = append(c.changes, n)
	return nil
}

// stringMember returns the value of obj's member called name (matched as encoding/json matches it) as
// encoding/json would decode it into a string. ok is false when there is no such member or its value is
// not a string; a missing member reads as "", as it does for encoding/json.
func stringMember(obj []byte, ms []member, name string) (string, bool) {
	for _, m := range ms {
		if !strings.EqualFold(string(m.name(obj)), name) {
			continue
		}
		v := obj[m.valueStart:m.valueEnd]
		if v[0] != '"' {
			return "", false
		}
		q := v[1 : len(v)-1]
		if bytes.IndexByte(q, '\\') < 0 && utf8.Valid(q) {
			return string(q), true
		}
		return unquote(v)
	}
	return "", true
}

// unquote decodes a JSON string with escapes or invalid UTF-8 as encoding/json does. It is a function of its
// own so that its result escapes to the heap only when it runs.
func unquote(v []byte) (string, bool) {
	var s string
	if json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return s, true
}

func (c *collection) noteDropped(sub string) {
	ds := c.res.DroppedSubscriptions
	if len(ds) >= 5 {
		return
	}
	for _, s := range ds {
		if s == sub {
			return
		}
	}
	// A subscription id from Graph is a GUID; anything else is shown as a placeholder, so the log never
	// carries arbitrary input.
	if !graph.IsGUID(sub) {
		sub = "(not a GUID)"
		for _, s := range ds {
			if s == sub {
				return
			}
		}
	}
	c.res.DroppedSubscriptions = append(ds, sub)
}

// withoutClientState returns a copy of the notification obj with every member named clientState (as
// encoding/json matches names) left out and everything else as Graph sent it: the secret must not sit in
// queue messages, which anyone with read access to the storage account can read, and the worker never
// needs it.
func withoutClientState(obj []byte, ms []member) json.RawMessage {
	if len(ms) == 0 {
		return append(json.RawMessage(nil), obj...)
	}
	out := make([]byte, 0, len(obj))
	out = append(out, obj[:ms[0].nameStart]...)
	kept := 0
	for i, m := range ms {
		if strings.EqualFold(string(m.name(obj)), nameClientState) {
			continue
		}
		if kept > 0 {
			out = append(out, obj[ms[i-1].valueEnd:m.nameStart]...) // the comma and spacing before m
		}
		out = append(out, obj[m.nameStart:m.valueEnd]...)
		kept++
	}
	return append(out, obj[ms[len(ms)-1].valueEnd:]...)
}

// duplicate reports whether two of obj's members have names encoding/json would read as the same field,
// and one of those names.
func (c *collection) duplicate(obj []byte, ms []member) (bool, string) {
	if len(ms) <= 16 {
		for i := 1; i < len(ms); i++ {
			a := ms[i].name(obj)
			for j := 0; j < i; j++ {
				if bytes.EqualFold(a, ms[j].name(obj)) {
					return true, string(a)
				}
			}
		}
		return false, ""
	}
	if c.seen == nil {
		c.seen = map[string]struct{}{}
	}
	clear(c.seen)
	for _, m := range ms {
		k := foldName(m.name(obj))
		if _, ok := c.seen[k]; ok {
			return true, string(m.name(obj))
		}
		c.seen[k] = struct{}{}
	}
	return false, ""
}

// foldName maps a name to a key equal for exactly the names bytes.EqualFold (and so encoding/json) treats as
// equal: every rune becomes the smallest rune of its case-folding orbit.
func foldName(b []byte) string {
	out := make([]byte, 0, len(b))
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		b = b[size:]
		low := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			low = min(low, f)
		}
		out = utf8.AppendRune(out, low)
	}
	return string(out)
}

var (
	wireNames         = []string{"subscriptionId", "subscriptionExpirationDateTime", "changeType", "lifecycleEvent", nameClientState, "resource", "tenantId", "organizationId", nameResourceData}
	resourceDataNames = []string{"@odata.type", "@odata.id", "id", "organizationId", "eventTime", "sequenceNumber"}
)

// describeName names a member in an error: one of the product's own names as the product spells it, and
// anything else not at all, so that no input is echoed.
func describeName(name string, known ...string) string {
	for _, k := range known {
		if strings.EqualFold(name, k) {
			return fmt.Sprintf("%q", k)
		}
	}
	return "alike"
}

// skip discards a JSON value the collection does not use.
type skip struct{}

func (*skip) UnmarshalJSON([]byte) error { return nil }

// bodyError describes a decoding error of the body without quoting it.
func bodyError(err error) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return badInput("body is not a notification collection: invalid JSON at offset %d", se.Offset)
	}
	return elementError(err)
}

// elementError describes an error decoding a notification without quoting it: encoding/json's own texts
// may carry input values (an invalid number literal is quoted whole).
func elementError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			field = "value"
		} else {
			field = "value." + field
		}
		return badInput("body is not a notification collection: %s must be %s, not %s", field, kindName(te.Type), valueKind(te.Value))
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return badInput("body is not a notification collection: invalid JSON at offset %d", se.Offset)
	}
	return badInput("body is not a notification collection: a notification member has a value of the wrong form")
}

// valueKind keeps the JSON kind of UnmarshalTypeError.Value ("number", "string", …), which for numbers may
// be followed by the literal itself.
func valueKind(v string) string {
	for _, k := range []string{"string", "number", "bool", "array", "object", "null"} {
		if len(v) >= len(k) && v[:len(k)] == k {
			return k
		}
	}
	return "another kind"
}

func kindName(t reflect.Type) string {
	if t == nil {
		return "another kind"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map, reflect.Pointer:
		return "an object"
	}
	return t.Kind().String()
}

func rawKind(raw []byte) string {
	switch raw[0] {
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return "number"
}
