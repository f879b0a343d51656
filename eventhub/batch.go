package eventhub

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
)

// The host's encoding of an eventHubTrigger batch for a custom handler was read from its source and never
// observed on a running host (README.md, "Event Hubs delivery"). With cardinality many and dataType
// string it should be a JSON string whose content is a JSON array of strings, one per event body; but every
// layer could as well arrive encoded once more or once less, and a dataType left unset gives objects, binary
// gives base64. The decoder accepts all of these, so a host that differs from that reading still delivers.

// maxPeel bounds how many JSON string encodings are taken off a value: the host applies at most two
// (the array serialised to a string, then the string serialised again), one more is tolerated.
const maxPeel = 3

// ErrNotBatch says the trigger value is neither an array of events nor a single event in any encoding the
// decoder knows.
var ErrNotBatch = errors.New("the trigger value is not an event batch")

// Events yields the body of each event in the trigger value v, in order, with an error for an event that
// cannot be read (the caller skips it). It returns ErrNotBatch when v as a whole is unreadable. Elements
// are decoded one at a time, so memory beyond v itself is one event.
func Events(v json.RawMessage) (iter.Seq2[[]byte, error], error) {
	t := peel(v)
	switch {
	case len(t) > 0 && t[0] == '[':
		if !json.Valid(t) {
			return nil, fmt.Errorf("%w: the array is not valid JSON", ErrNotBatch)
		}
		return func(yield func([]byte, error) bool) {
			dec := json.NewDecoder(bytes.NewReader(t))
			dec.UseNumber()
			if _, err := dec.Token(); err != nil { // '['
				return
			}
			for dec.More() {
				var elem json.RawMessage
				if err := dec.Decode(&elem); err != nil {
					return // cannot happen: t is valid JSON
				}
				if !yield(eventBody(elem)) {
					return
				}
			}
		}, nil
	case len(t) > 0 && t[0] == '{':
		// cardinality one, or a single object where an array was expected.
		return func(yield func([]byte, error) bool) { yield(t, nil) }, nil
	}
	if b, ok := base64JSON(t); ok {
		return func(yield func([]byte, error) bool) { yield(b, nil) }, nil
	}
	return nil, ErrNotBatch
}

// eventBody reads one array element: an object is the body itself (dataType unset); a string is the body
// encoded once or twice, or base64 of it (dataType binary).
func eventBody(elem json.RawMessage) ([]byte, error) {
	elem = bytes.TrimSpace(elem)
	switch {
	case len(elem) == 0:
		return nil, errors.New("empty element")
	case elem[0] == '{':
		return elem, nil
	case elem[0] != '"':
		return nil, fmt.Errorf("element is a JSON %s, not an event body", kindOf(elem))
	}
	b := peel(elem)
	if len(b) == 0 {
		return nil, errors.New("the event body is empty")
	}
	if b[0] == '{' || b[0] == '[' {
		return b, nil
	}
	if d, ok := base64JSON(b); ok {
		return d, nil
	}
	return b, nil // not JSON: the verifier says what is wrong with it
}

// peel takes JSON string encodings off b while it is a JSON string, at most maxPeel times.
func peel(b []byte) []byte {
	b = bytes.TrimSpace(b)
	for i := 0; i < maxPeel && len(b) >= 2 && b[0] == '"'; i++ {
		var s string
		if json.Unmarshal(b, &s) != nil {
			break
		}
		b = bytes.TrimSpace([]byte(s))
	}
	return b
}

// base64JSON decodes b when it is standard base64 of a JSON object (how dataType binary sends a body).
func base64JSON(b []byte) ([]byte, bool) {
	if len(b) == 0 || len(b)%4 != 0 {
		return nil, false
	}
	d := make([]byte, base64.StdEncoding.DecodedLen(len(b)))
	n, err := base64.StdEncoding.Decode(d, b)
	if err != nil {
		return nil, false
	}
	d = bytes.TrimSpace(d[:n])
	if len(d) == 0 || d[0] != '{' {
		return nil, false
	}
	return d, true
}

func kindOf(b []byte) string {
	switch b[0] {
	case '[':
		return "array"
	case 'n':
		return "null"
	case 't', 'f':
		return "boolean"
	default:
		return "number"
	}
}

// Position says where a batch came from, for log lines about one of its events.
type Position struct {
	Partition string   // PartitionContext.PartitionId; "" when the host did not say
	Sequence  []string // SequenceNumberArray (or SequenceNumber), as text; may be shorter than the batch
}

// SequenceNumber is event i's sequence number as text, or "" when unknown.
func (p Position) SequenceNumber(i int) string {
	if i < len(p.Sequence) {
		return p.Sequence[i]
	}
	return ""
}

// ReadPosition reads the partition and sequence numbers from the trigger metadata, leniently: every value may
// be JSON-encoded as a string once or more, numbers may be strings, and anything absent or unreadable is left
// empty (it only labels log lines).
func ReadPosition(meta map[string]json.RawMessage) Position {
	var p Position
	if raw, ok := lookupFold(meta, "PartitionContext"); ok {
		var pc map[string]json.RawMessage
		if json.Unmarshal(peel(raw), &pc) == nil {
			if id, ok := lookupFold(pc, "PartitionId"); ok {
				p.Partition = scalar(id)
			}
		}
	}
	if raw, ok := lookupFold(meta, "SequenceNumberArray"); ok {
		var elems []json.RawMessage
		if json.Unmarshal(peel(raw), &elems) == nil {
			for _, e := range elems {
				p.Sequence = append(p.Sequence, scalar(e))
			}
		}
	} else if raw, ok := lookupFold(meta, "SequenceNumber"); ok {
		p.Sequence = []string{scalar(raw)}
	}
	return p
}

// scalar is a number or string as text, unquoted as often as it was quoted; "" for anything else.
func scalar(raw json.RawMessage) string {
	b := peel(raw)
	if len(b) == 0 || len(b) > 64 {
		return ""
	}
	if b[0] == '"' || b[0] == '{' || b[0] == '[' {
		return ""
	}
	return string(b)
}

func lookupFold(m map[string]json.RawMessage, key string) (json.RawMessage, bool) {
	if v, ok := m[key]; ok {
		return v, true
	}
	for k, v := range m {
		if len(k) == len(key) && bytes.EqualFold([]byte(k), []byte(key)) {
			return v, true
		}
	}
	return nil, false
}
