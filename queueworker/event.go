package queueworker

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

// notificationIdentity names one notification independently of how its JSON was printed: the host
// re-prints every queued message (indented, with Newtonsoft's own escaping and perhaps dates), and a
// re-enqueued remainder is printed by encoding/json, so raw bytes are not stable across a redelivery.
func notificationIdentity(n *graph.ChangeNotification) string {
	if rd := n.ResourceData; rd != nil && (rd.SequenceNumber != "" || rd.EventTime != "") {
		return "s|" + strings.ToLower(n.SubscriptionID) + "|" + strings.ToLower(n.ChangeType) + "|" +
			rd.SequenceNumber.String() + "|" + normalTime(rd.EventTime)
	}
	return "j|" + canonicalJSON(n.Raw)
}

// normalTime writes an RFC 3339 time in UTC with its full precision, or the text as it was.
func normalTime(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// canonicalJSON re-encodes a JSON value with sorted keys, no whitespace and encoding/json's escaping.
func canonicalJSON(raw json.RawMessage) string {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if d.Decode(&v) != nil {
		return string(raw)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return string(raw)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// eventID is stable for the same input: see the package documentation.
func eventID(source message.Source, tenant, resourceID, changeType string, softDeleted bool, notes []graph.ChangeNotification) string {
	ids := make([]string, len(notes))
	for i := range notes {
		ids[i] = notificationIdentity(&notes[i])
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	parts := append([]string{string(source), strings.ToLower(tenant), "users", strings.ToLower(resourceID),
		changeType, strconv.FormatBool(softDeleted)}, ids...)
	return message.EventID(parts...)
}
