// Package customhandler speaks the Azure Functions custom handler protocol as the real host implements it
// (docs/host-protocol.md): invocation requests and responses, lenient decoding of the
// host's quirks, the HTTP server the host starts and polls, and logging routed the way the host reads it.
package customhandler

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Request is one invocation as the host POSTs it to /<FunctionName>: one Data entry per trigger and input
// binding (named as in function.json), and the trigger's binding data in Metadata (docs/host-protocol.md §3.1).
type Request struct {
	Data     map[string]json.RawMessage `json:"Data"`
	Metadata map[string]json.RawMessage `json:"Metadata"`

	// http holds an httpTrigger decoded in the same pass as the envelope (WithHTTPTrigger).
	http     *HTTPRequest
	httpName string
}

// httpEnvelope decodes an HTTP-triggered invocation in one pass. encoding/json validates its whole input on
// every Unmarshal, so decoding Data into raw values and each value again costs a second pass over the
// request, which on the webhook is most of its time. Metadata is skipped: for HTTP triggers it only repeats
// the query, the headers and the body's top-level scalars (docs/host-protocol.md §3.3).
type httpEnvelope struct {
	Data map[string]*HTTPRequest `json:"Data"`
}

// decodeHTTPEnvelope fills r from b, an invocation whose Data holds the httpTrigger called name.
func decodeHTTPEnvelope(b []byte, name string, r *Request) error {
	var env httpEnvelope
	if err := json.Unmarshal(b, &env); err != nil {
		return err
	}
	r.http, r.httpName = env.Data[name], name
	return nil
}

// HTTPRequest is Data.<name> of an httpTrigger (docs/host-protocol.md §3.3).
type HTTPRequest struct {
	URL     string    `json:"Url"`
	Method  string    `json:"Method"`
	Query   StringMap `json:"Query"`
	Headers HeaderMap `json:"Headers"`
	Params  StringMap `json:"Params"`
	Body    *string   `json:"Body"` // nil when the request had no body (Content-Length 0 or chunked)
}

// HTTP decodes the httpTrigger binding called name.
func (r *Request) HTTP(name string) (*HTTPRequest, error) {
	if r.httpName == name && r.http != nil {
		return r.http, nil
	}
	raw, ok := r.Data[name]
	if !ok || isNull(raw) {
		return nil, fmt.Errorf("invocation has no %q binding data", name)
	}
	var h HTTPRequest
	if err := json.Unmarshal(raw, &h); err != nil {
		return nil, fmt.Errorf("decode http trigger %q: %w", name, err)
	}
	return &h, nil
}

// QueryValue returns the query parameter key, matched without regard to case as ASP.NET Core does.
func (h *HTTPRequest) QueryValue(key string) (string, bool) { return h.Query.Get(key) }

// Header returns the first value of a header, matched without regard to case.
func (h *HTTPRequest) Header(key string) string {
	for k, v := range h.Headers {
		if strings.EqualFold(k, key) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// QueueItem decodes a queueTrigger value: the message text, which the real host JSON-encodes a second time
// and third-party fixtures encode once (docs/host-protocol.md §3.4). It unquotes a JSON string value up to three times, so a
// message that is a JSON document comes back as that document's text, and an object sent as-is comes back
// unchanged.
func (r *Request) QueueItem(name string) ([]byte, error) {
	raw, ok := r.Data[name]
	if !ok || isNull(raw) {
		return nil, fmt.Errorf("invocation has no %q binding data", name)
	}
	return unwrapString(raw), nil
}

// unwrapString peels JSON string encodings: `"\"{...}\""` → `{...}`. A value that is not a JSON string
// (an object sent as-is) is returned unchanged, and peeling stops at text that is not JSON-quoted.
func unwrapString(raw json.RawMessage) []byte {
	b := bytes.TrimSpace(raw)
	for i := 0; i < 3 && len(b) >= 2 && b[0] == '"'; i++ {
		var s string
		if json.Unmarshal(b, &s) != nil {
			break
		}
		b = []byte(s)
	}
	return b
}

// QueueMetadata is a queue trigger's binding data (docs/host-protocol.md §3.4). The host sends scalars JSON-encoded as strings
// (DequeueCount "1", Id "\"…\""); third-party fixtures send them plain. Both decode.
type QueueMetadata struct {
	ID              Scalar `json:"Id"`
	PopReceipt      Scalar `json:"PopReceipt"`
	DequeueCount    Scalar `json:"DequeueCount"`
	InsertionTime   Time   `json:"InsertionTime"`
	ExpirationTime  Time   `json:"ExpirationTime"`
	NextVisibleTime Time   `json:"NextVisibleTime"`
}

// QueueMetadata decodes the queue trigger's Metadata leniently; absent fields stay zero.
func (r *Request) QueueMetadata() (QueueMetadata, error) {
	var m QueueMetadata
	for key, dst := range map[string]any{
		"Id": &m.ID, "PopReceipt": &m.PopReceipt, "DequeueCount": &m.DequeueCount,
		"InsertionTime": &m.InsertionTime, "ExpirationTime": &m.ExpirationTime, "NextVisibleTime": &m.NextVisibleTime,
	} {
		raw, ok := lookupFold(r.Metadata, key)
		if !ok || isNull(raw) {
			continue
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			return m, fmt.Errorf("decode queue metadata %s: %w", key, err)
		}
	}
	return m, nil
}

// Dequeues is DequeueCount as a number (0 when absent or unreadable).
func (m QueueMetadata) Dequeues() int {
	n, _ := strconv.Atoi(string(m.DequeueCount))
	return n
}

// TimerInfo is a timerTrigger value (docs/host-protocol.md §3.5). ScheduleStatus is nil when the host does not monitor the schedule.
type TimerInfo struct {
	ScheduleStatus *ScheduleStatus `json:"ScheduleStatus"`
	IsPastDue      bool            `json:"IsPastDue"`
}

// ScheduleStatus is the timer's monitor record; timestamps may lack a zone offset.
type ScheduleStatus struct {
	Last        Time `json:"Last"`
	Next        Time `json:"Next"`
	LastUpdated Time `json:"LastUpdated"`
}

// Timer decodes the timerTrigger binding called name. The value is an object, or an object encoded as a
// JSON string by hosts that treat it as a scalar.
func (r *Request) Timer(name string) (*TimerInfo, error) {
	raw, ok := r.Data[name]
	if !ok || isNull(raw) {
		return nil, fmt.Errorf("invocation has no %q binding data", name)
	}
	var t TimerInfo
	if err := json.Unmarshal(unwrapString(raw), &t); err != nil {
		return nil, fmt.Errorf("decode timer trigger %q: %w", name, err)
	}
	return &t, nil
}

// RetryContext is Metadata.RetryContext, present when a retry policy is active (docs/host-protocol.md §3.1).
type RetryContext struct {
	RetryCount    int `json:"RetryCount"`
	MaxRetryCount int `json:"MaxRetryCount"`
}

// Retry decodes Metadata.RetryContext; ok is false when there is none.
func (r *Request) Retry() (rc RetryContext, ok bool) {
	raw, found := lookupFold(r.Metadata, "RetryContext")
	if !found || isNull(raw) {
		return rc, false
	}
	var w struct {
		RetryCount    Scalar `json:"RetryCount"`
		MaxRetryCount Scalar `json:"MaxRetryCount"`
	}
	if json.Unmarshal(unwrapString(raw), &w) != nil {
		return rc, false
	}
	rc.RetryCount, _ = strconv.Atoi(string(w.RetryCount))
	rc.MaxRetryCount, _ = strconv.Atoi(string(w.MaxRetryCount))
	return rc, true
}

// Scalar is a binding-data scalar as text, whether the host sent it JSON-encoded inside a string
// ("\"abc\"", "4"), plainly ("abc"), or as a bare number or bool (4, true).
type Scalar string

func (s *Scalar) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if isNull(b) {
		*s = ""
		return nil
	}
	if b[0] != '"' {
		if b[0] == '{' || b[0] == '[' {
			return errors.New("scalar expected, got " + kindOf(b))
		}
		*s = Scalar(b) // number or bool
		return nil
	}
	*s = Scalar(unwrapString(b))
	return nil
}

// StringMap is an object of strings. Query arrived as a JSON-encoded string before host 3.0.14785 (docs/host-protocol.md §3.3),
// and route values may be null; both decode.
type StringMap map[string]string

func (m *StringMap) UnmarshalJSON(b []byte) error {
	b = unwrapString(b)
	if isNull(b) || len(b) == 0 {
		*m = nil
		return nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("want an object of strings, got %s", kindOf(b))
	}
	out := make(StringMap, len(raw))
	for k, v := range raw {
		var s Scalar
		if err := s.UnmarshalJSON(v); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		out[k] = string(s)
	}
	*m = out
	return nil
}

// Get finds key without regard to case.
func (m StringMap) Get(key string) (string, bool) {
	if v, ok := m[key]; ok {
		return v, true
	}
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v, true
		}
	}
	return "", false
}

// HeaderMap is Headers: arrays of strings from the host, single strings in some fixtures.
type HeaderMap map[string][]string

func (m *HeaderMap) UnmarshalJSON(b []byte) error {
	b = unwrapString(b)
	if isNull(b) || len(b) == 0 {
		*m = nil
		return nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("want an object of headers, got %s", kindOf(b))
	}
	out := make(HeaderMap, len(raw))
	for k, v := range raw {
		var list []string
		if json.Unmarshal(v, &list) == nil {
			out[k] = list
			continue
		}
		var s Scalar
		if err := s.UnmarshalJSON(v); err != nil {
			return fmt.Errorf("header %s: %w", k, err)
		}
		out[k] = []string{string(s)}
	}
	*m = out
	return nil
}

// Time is a host timestamp, parsed leniently: RFC 3339 with or without fractional seconds, with or without a
// zone (then UTC), inside a JSON string or JSON-encoded twice (docs/host-protocol.md §3.5, issue #7391).
type Time struct{ time.Time }

var timeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05.9999999", "2006-01-02T15:04:05", "2006-01-02 15:04:05Z07:00", "2006-01-02 15:04:05"}

func (t *Time) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if isNull(b) {
		t.Time = time.Time{}
		return nil
	}
	s := strings.TrimSpace(string(unwrapString(b)))
	if s == "" {
		t.Time = time.Time{}
		return nil
	}
	for _, layout := range timeLayouts {
		if v, err := time.Parse(layout, s); err == nil {
			t.Time = v.UTC()
			return nil
		}
	}
	return fmt.Errorf("unreadable timestamp %q", s)
}

// BodyBytes returns the HTTP body bytes: the host sends octet-stream and multipart bodies base64-encoded (docs/host-protocol.md §3.3).
func (h *HTTPRequest) BodyBytes() []byte {
	if h.Body == nil {
		return nil
	}
	ct := strings.ToLower(h.Header("Content-Type"))
	if strings.HasPrefix(ct, "application/octet-stream") || strings.HasPrefix(ct, "multipart/") {
		if b, err := base64.StdEncoding.DecodeString(*h.Body); err == nil {
			return b
		}
	}
	return []byte(*h.Body)
}

func lookupFold(m map[string]json.RawMessage, key string) (json.RawMessage, bool) {
	if v, ok := m[key]; ok {
		return v, true
	}
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v, true
		}
	}
	return nil, false
}

func isNull(b []byte) bool { return len(b) == 0 || string(b) == "null" }

func kindOf(b []byte) string {
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	}
	return "a " + string(bytes.SplitN(b, []byte{','}, 2)[0])
}
