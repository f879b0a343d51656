package message

import (
	"encoding/json"
	"fmt"

	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
)

const (
	// MaxNotifications caps a message so one worker invocation fits one Graph $batch (20 requests).
	MaxNotifications = 20
	// MaxPrintedBytes caps a message's text as the Functions host re-prints it: an object written to a queue
	// output binding is stored as indented JSON (docs/host-protocol.md §4.4), then base64-encoded, and a
	// queue message may not exceed 64 KiB. 48 KiB of text is 64 KiB of base64.
	MaxPrintedBytes = 48 << 10
)

// newline is counted as two bytes: the host prints Environment.NewLine, which is CRLF on Windows plans.
const newline = 2

// Split packs notifications into as few messages as the limits allow, in order. Each message copies tmpl's
// other fields (kind, validation tokens, attempt, timestamps). A notification that alone would overflow a
// message is returned in tooBig: no Graph notification for users comes near that size, so such an item is
// not from Graph.
func Split(tmpl Message, ns []graph.ChangeNotification) (msgs []Message, tooBig []graph.ChangeNotification, err error) {
	tmpl.Notifications = nil
	head, err := json.Marshal(tmpl)
	if err != nil {
		return nil, nil, fmt.Errorf("encode message: %w", err)
	}
	// Printed size of tmpl plus a "notifications" member holding an empty array, before any element.
	base := IndentedSize(head, 0) + 1 + newline + 2 + len(`"notifications": `) + len("[") + newline + 2 + len("]")

	var cur []graph.ChangeNotification
	size := base
	flush := func() {
		if len(cur) > 0 {
			m := tmpl
			m.Notifications = cur
			msgs = append(msgs, m)
		}
		cur, size = nil, base
	}
	for _, n := range ns {
		raw, err := n.MarshalJSON()
		if err != nil {
			return nil, nil, fmt.Errorf("encode notification: %w", err)
		}
		// Each element stands on its own line at depth 2, after a comma from the second one on.
		elem := newline + 4 + IndentedSize(raw, 2)
		if base+elem >= MaxPrintedBytes {
			tooBig = append(tooBig, n)
			continue
		}
		if len(cur) == MaxNotifications || size+1+elem >= MaxPrintedBytes {
			flush()
		}
		if len(cur) > 0 {
			size++ // the comma
		}
		cur = append(cur, n)
		size += elem
	}
	flush()
	return msgs, tooBig, nil
}

// PrintedSize is the size of m as the host re-prints it (indented, CRLF newlines).
func PrintedSize(m *Message) (int, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return 0, err
	}
	return IndentedSize(b, 0), nil
}

// IndentedSize returns the length of the JSON text b re-printed with two-space indentation starting at
// depth, as Newtonsoft's Formatting.Indented and encoding/json.Indent print it, counting each newline as
// two bytes. Whitespace in b is ignored; b must be valid JSON. It allocates nothing, which matters on the
// webhook's path.
func IndentedSize(b []byte, depth int) int {
	n := 0
	inString, escaped := false, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if inString {
			n++
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case ' ', '\t', '\n', '\r':
		case '"':
			inString = true
			n++
		case '{', '[':
			n++
			if j := nextNonSpace(b, i+1); j < len(b) && (b[j] == '}' || b[j] == ']') {
				n++ // empty container prints as {} or []
				i = j
				continue
			}
			depth++
			n += newline + 2*depth
		case '}', ']':
			depth--
			n += newline + 2*depth + 1
		case ',':
			n += 1 + newline + 2*depth
		case ':':
			n += 2
		default:
			n++
		}
	}
	return n
}

func nextNonSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
