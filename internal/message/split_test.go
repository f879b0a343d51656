package message

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
)

// printed is the reference: encoding/json.Indent's output length, each newline counted as CRLF.
func printed(t testing.TB, b []byte, depth int) int {
	t.Helper()
	var out bytes.Buffer
	// Indent copies trailing whitespace through; the host does not print it.
	if err := json.Indent(&out, bytes.TrimSpace(b), strings.Repeat("  ", depth), "  "); err != nil {
		t.Fatal(err)
	}
	nl := bytes.Count(out.Bytes(), []byte("\n"))
	// Indent puts the prefix after each newline only; IndentedSize counts from depth on those lines too.
	return out.Len() + nl
}

func TestIndentedSizeMatchesIndent(t *testing.T) {
	for _, s := range []string{
		`{}`, `[]`, `{"a":1}`, `{"a":[1,2,{"b":{}}],"c":"x,y:{}[]\"\\"}`, `[[],[{}],{"k":[]}]`,
		`{ "spaced" : [ 1 , 2 ] , "e" : { } }`, `"just a string"`, `123`,
	} {
		if got, want := IndentedSize([]byte(s), 0), printed(t, []byte(s), 0); got != want {
			t.Errorf("IndentedSize(%s) = %d, want %d", s, got, want)
		}
	}
}

func FuzzIndentedSize(f *testing.F) {
	f.Add([]byte(`{"value":[{"id":"x","n":638700000000000001,"o":{"a":[true,null]}}]}`))
	f.Add([]byte(`[ {} , [ ] ]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if !json.Valid(b) {
			return
		}
		if got, want := IndentedSize(b, 0), printed(t, b, 0); got != want {
			t.Fatalf("IndentedSize = %d, want %d for %q", got, want, b)
		}
	})
}

func notification(i int, pad int) graph.ChangeNotification {
	raw := fmt.Sprintf(`{"subscriptionId":"s","changeType":"updated","clientState":"c","resource":"Users/u%d","tenantId":"t","pad":%q}`, i, strings.Repeat("x", pad))
	var n graph.ChangeNotification
	if err := json.Unmarshal([]byte(raw), &n); err != nil {
		panic(err)
	}
	return n
}

func TestSplit(t *testing.T) {
	tmpl := Message{V: Version, Kind: KindNotifications, FirstSeen: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), ValidationTokens: []string{"tok"}}
	for _, tc := range []struct {
		count, pad   int
		wantMessages int
	}{
		{1, 0, 1}, {MaxNotifications, 0, 1}, {MaxNotifications + 1, 0, 2}, {2*MaxNotifications + 5, 0, 3},
		{100, 600, 2}, {10, 10_000, 3}, {7, 47_000, 7},
	} {
		t.Run(fmt.Sprintf("%dx%d", tc.count, tc.pad), func(t *testing.T) {
			var ns []graph.ChangeNotification
			for i := range tc.count {
				ns = append(ns, notification(i, tc.pad))
			}
			msgs, tooBig, err := Split(tmpl, ns)
			if err != nil || len(tooBig) != 0 {
				t.Fatalf("err %v, tooBig %d", err, len(tooBig))
			}
			if len(msgs) != tc.wantMessages {
				t.Errorf("%d messages, want %d", len(msgs), tc.wantMessages)
			}
			seen := 0
			for _, m := range msgs {
				b, _ := json.Marshal(m)
				size := printed(t, b, 0)
				if predicted, _ := PrintedSize(&m); predicted != size {
					t.Errorf("PrintedSize %d, Indent says %d", predicted, size)
				}
				if size >= MaxPrintedBytes || len(m.Notifications) > MaxNotifications {
					t.Errorf("message of %d notifications prints to %d bytes", len(m.Notifications), size)
				}
				if m.Kind != tmpl.Kind || m.ValidationTokens[0] != "tok" || !m.FirstSeen.Equal(tmpl.FirstSeen) {
					t.Errorf("template not copied: %+v", m)
				}
				for _, n := range m.Notifications {
					if want := fmt.Sprintf("Users/u%d", seen); n.Resource != want {
						t.Fatalf("order lost: got %s, want %s", n.Resource, want)
					}
					seen++
				}
			}
			if seen != tc.count {
				t.Errorf("%d notifications out, %d in", seen, tc.count)
			}
		})
	}
}

func TestSplitPacksTightly(t *testing.T) {
	// Two notifications that just fit together must share a message; one byte more and they must not.
	for pad := 24_000; pad < 24_600; pad += 50 {
		ns := []graph.ChangeNotification{notification(0, pad), notification(1, pad)}
		msgs, _, _ := Split(Message{V: Version, Kind: KindNotifications}, ns)
		joined := Message{V: Version, Kind: KindNotifications, Notifications: ns}
		size, _ := PrintedSize(&joined)
		if fits := size < MaxPrintedBytes; fits != (len(msgs) == 1) {
			t.Errorf("pad %d: together they print to %d bytes, Split made %d messages", pad, size, len(msgs))
		}
	}
}

func TestSplitRejectsOversize(t *testing.T) {
	msgs, tooBig, err := Split(Message{V: Version, Kind: KindNotifications}, []graph.ChangeNotification{notification(0, 1), notification(1, MaxPrintedBytes), notification(2, 1)})
	if err != nil || len(tooBig) != 1 || len(msgs) != 1 || len(msgs[0].Notifications) != 2 {
		t.Fatalf("msgs %d tooBig %d err %v", len(msgs), len(tooBig), err)
	}
}

func TestDecodeValidates(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"v":2,"kind":"notifications","notifications":[{}]}`, "version 2"},
		{`{"v":1,"kind":"notifications"}`, "no notifications"},
		{`{"v":1,"kind":"resync","notifications":[{}]}`, "carries notifications"},
		{`{"v":1,"kind":"bogus"}`, "unknown"},
		{`{"v":1}`, "no kind"},
		{`[1]`, "not JSON of the queue schema"},
		{`{"v":1,"kind":"resync","attempt":-1}`, "negative"},
	} {
		if _, err := Decode([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Decode(%s) = %v, want %q", tc.in, err, tc.want)
		}
	}
	m, err := Decode([]byte(`{"v":1,"kind":"resync","continuation":"https://graph/next","attempt":2,"firstSeen":"2026-01-02T03:04:05Z"}`))
	if err != nil || m.Continuation != "https://graph/next" || m.Attempt != 2 {
		t.Errorf("%+v %v", m, err)
	}
}

// TestSplitFillsMessagesWithGraphsNotifications packs 5,000 change notifications of the shape Graph sends
// for users (clientState already removed, as the webhook queues them): size, not count, ends a message,
// and a POST of 5,000 takes at most 80 messages.
func TestSplitFillsMessagesWithGraphsNotifications(t *testing.T) {
	var ns []graph.ChangeNotification
	for i := range 5000 {
		id := fmt.Sprintf("6e1f%04x-7c3a-4b2d-9e8f-0a1b2c3d4e5f", i)
		raw := fmt.Sprintf(`{"subscriptionId":"d850b120-7d8e-4a3b-9c2d-1e0f2a3b4c5d","subscriptionExpirationDateTime":"2026-12-20T10:00:00+00:00",`+
			`"changeType":"updated","resource":"Users/%s","resourceData":{"@odata.type":"#Microsoft.Graph.User","@odata.id":"Users/%s","id":"%s",`+
			`"organizationId":"8c1f4b2e-0d6a-4f57-9a3e-2b9d7c6e5f41","eventTime":"2026-11-27T09:59:58.24Z","sequenceNumber":%d},"tenantId":"8c1f4b2e-0d6a-4f57-9a3e-2b9d7c6e5f41"}`,
			id, id, id, 638700000000000001+i)
		var n graph.ChangeNotification
		if err := json.Unmarshal([]byte(raw), &n); err != nil {
			t.Fatal(err)
		}
		ns = append(ns, n)
	}
	msgs, tooBig, err := Split(Message{V: Version, Kind: KindNotifications, FirstSeen: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}, ns)
	if err != nil || len(tooBig) > 0 {
		t.Fatal(err, len(tooBig))
	}
	if len(msgs) > 80 {
		t.Errorf("5,000 notifications in %d messages, want at most 80", len(msgs))
	}
	for i, m := range msgs {
		if size, _ := PrintedSize(&m); size >= MaxPrintedBytes {
			t.Errorf("message %d: %d notifications print to %d bytes, limit %d", i, len(m.Notifications), size, MaxPrintedBytes)
		}
	}
	// A POST of 100: two messages either way, cut after a multiple of 20 (five $batches, not six).
	msgs, _, _ = Split(Message{V: Version, Kind: KindNotifications}, ns[:100])
	if len(msgs) != 2 || len(msgs[0].Notifications) != 60 {
		t.Errorf("100 notifications: %d messages, the first of %d; want 2, the first of 60", len(msgs), len(msgs[0].Notifications))
	}
	// Where cutting at a multiple of 20 would take another message, messages are filled: 144 = 72 + 72.
	full := len(msgs[0].Notifications)
	msgs, _, _ = Split(Message{V: Version, Kind: KindNotifications}, ns[:144])
	if msgs, _, _ := Split(Message{V: Version, Kind: KindNotifications}, ns[:72]); len(msgs) != 1 {
		t.Fatalf("72 notifications take %d messages; the case below assumes one", len(msgs))
	}
	if len(msgs) != 2 || len(msgs[0].Notifications) != 72 {
		t.Errorf("144 notifications: %d messages, the first of %d; want 2 of 72 (%d)", len(msgs), len(msgs[0].Notifications), full)
	}
	t.Logf("%d messages, %d notifications in the first", len(msgs), len(msgs[0].Notifications))
}
