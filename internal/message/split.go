package message

import (
	"encoding/json"
	"fmt"

	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
)

const (
	// MaxNotifications caps a message's notifications whatever their size, which bounds one worker
	// invocation: 160 objects are 8 Graph $batches of 20, two rounds at the worker's 4 at once. Change
	// notifications as Graph sends them reach MaxPrintedBytes first (about 70 to a message): the fewer
	// the messages, the fewer queue writes by the host and worker invocations.
	MaxNotifications = 160
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
//
// Among the packings with that fewest number of messages, Split prefers to end a message after a multiple
// of graph.MaxBatch notifications: the worker reads a message's objects in $batches of 20, so a POST of 100
// goes out as 60 + 40 (five $batches) rather than 72 + 28 (six).
func Split(tmpl Message, ns []graph.ChangeNotification) (msgs []Message, tooBig []graph.ChangeNotification, err error) {
	tmpl.Notifications = nil
	head, err := json.Marshal(tmpl)
	if err != nil {
		return nil, nil, fmt.Errorf("encode message: %w", err)
	}
	// Printed size of tmpl plus a "notifications" member holding an empty array, before any element.
	base := IndentedSize(head, 0) + 1 + newline + 2 + len(`"notifications": `) + len("[") + newline + 2 + len("]")

	var fit []graph.ChangeNotification
	var sizes []int
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
		fit = append(fit, n)
		sizes = append(sizes, elem)
	}
	// end[i] is where a message starting at notification i ends when filled greedily; count[i] is how
	// many messages notifications i… take that way (the fewest possible: greedy is optimal here).
	end := make([]int, len(fit)+1)
	count := make([]int, len(fit)+1)
	for i := len(fit) - 1; i >= 0; i-- {
		j, size := i, base
		for j < len(fit) && j-i < MaxNotifications {
			add := sizes[j]
			if j > i {
				add++ // the comma
			}
			if size+add >= MaxPrintedBytes {
				break
			}
			size += add
			j++
		}
		end[i], count[i] = j, 1+count[j]
	}
	for i := 0; i < len(fit); {
		j := end[i]
		if cut := j - (j-i)%graph.MaxBatch; j < len(fit) && cut > i && count[cut] == count[j] {
			j = cut
		}
		m := tmpl
		m.Notifications = fit[i:j:j]
		msgs = append(msgs, m)
		i = j
	}
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
