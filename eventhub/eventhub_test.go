package eventhub

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/customhandler"
	"github.com/graphwebhooks/graph-webhooks-go/internal/logctx"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
	"github.com/graphwebhooks/graph-webhooks-go/internal/testclock"
)

const (
	testTenant = "8c1f4b2e-0d6a-4f57-9a3e-2b9d7c6e5f41"
	testState  = "s3cr3t-client-state-0123456789"
	testSub    = "d850b120-7d8e-4a3b-9c2d-1e0f2a3b4c5d"
)

var fixedNow = testclock.Date(2026, 11, 27, 10, 0, 0)

func newFunction(env map[string]string) *Function {
	if env == nil {
		env = map[string]string{config.TenantID: testTenant, config.ClientState: testState}
	}
	return New(config.Load(func(k string) string { return env[k] }), func() time.Time { return fixedNow })
}

func userID(i int) string { return fmt.Sprintf("6e1f%04d-7c3a-4b2d-9e8f-0a1b2c3d4e5f", i) }

// change is a genuine change notification for user i, as Graph sends it.
func change(i int) string {
	return `{"subscriptionId":"` + testSub + `","subscriptionExpirationDateTime":"2026-11-30T10:00:00+00:00","changeType":"updated","clientState":"` + testState +
		`","resource":"Users/` + userID(i) + `","resourceData":{"@odata.type":"#Microsoft.Graph.User","id":"` + userID(i) +
		`","organizationId":"` + testTenant + `","sequenceNumber":638700000000000002},"tenantId":"` + testTenant + `"}`
}

func collection(ns ...string) string { return `{"value":[` + strings.Join(ns, ",") + `]}` }

// validationEvent is what Graph sends when it creates a subscription with an Event Hubs URL.
const validationEvent = `{"value":[{"subscriptionId":"NA","subscriptionExpirationDateTime":"NA","clientState":"NA","resource":"NA",` +
	`"changeType":"Validation: Testing client application reachability for subscription Request-Id: 1c6cd6ad-53c5-4a0d-b1f9-7f0d6c2d4d3b"}]}`

// hostBatch encodes bodies as the host does for cardinality many, dataType string: a JSON string holding
// the JSON array of the bodies.
func hostBatch(bodies ...string) json.RawMessage {
	arr, _ := json.Marshal(bodies)
	s, _ := json.Marshal(string(arr))
	return s
}

func hostMeta(partition string, seqs ...int64) map[string]json.RawMessage {
	a, _ := json.Marshal(seqs)
	s, _ := json.Marshal(string(a))
	pc, _ := json.Marshal(map[string]any{"PartitionId": partition, "EventHubName": "graph", "ConsumerGroup": "$Default"})
	return map[string]json.RawMessage{"PartitionContext": pc, "SequenceNumberArray": s}
}

// logBuffer captures the invocation's log lines.
func logContext(buf *bytes.Buffer) context.Context {
	return logctx.With(context.Background(), slog.New(slog.NewTextHandler(buf, nil)))
}

type outcome struct {
	messages []message.Message
	logs     []string
	log      string
}

func invoke(t *testing.T, f *Function, data json.RawMessage, meta map[string]json.RawMessage) outcome {
	t.Helper()
	var buf bytes.Buffer
	req := &customhandler.Request{Data: map[string]json.RawMessage{TriggerName: data}, Metadata: meta}
	resp, err := f.Invoke(logContext(&buf), req)
	if err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	wire, err := resp.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Outputs map[string]json.RawMessage
		Logs    []string
	}
	if err := json.Unmarshal(wire, &got); err != nil {
		t.Fatalf("response %s: %v", wire, err)
	}
	o := outcome{logs: got.Logs, log: buf.String()}
	if out, ok := got.Outputs[QueueOutput]; ok {
		if err := json.Unmarshal(out, &o.messages); err != nil {
			t.Fatalf("output %s: %v", out, err)
		}
		for i := range o.messages {
			if err := o.messages[i].Validate(); err != nil {
				t.Errorf("message %d: %v", i, err)
			}
		}
	}
	return o
}

func notificationIDs(ms []message.Message) []string {
	var ids []string
	for _, m := range ms {
		for _, n := range m.Notifications {
			ids = append(ids, n.ResourceID())
		}
	}
	return ids
}

func TestGenuineEventsAreQueuedInFullMessages(t *testing.T) {
	f := newFunction(nil)
	var bodies []string
	var seqs []int64
	for i := range 25 {
		bodies = append(bodies, collection(change(i)))
		seqs = append(seqs, int64(100+i))
	}
	o := invoke(t, f, hostBatch(bodies...), hostMeta("3", seqs...))
	if len(o.messages) != 1 || len(o.messages[0].Notifications) != 25 {
		t.Fatalf("messages: %d, want 1 of 25: one event each must not mean one message each", len(o.messages))
	}
	ids := notificationIDs(o.messages)
	for i, id := range ids {
		if id != userID(i) {
			t.Fatalf("notification %d is for %s, want %s (order kept)", i, id, userID(i))
		}
	}
	m := o.messages[0]
	if m.Kind != message.KindNotifications || !m.FirstSeen.Equal(fixedNow) {
		t.Errorf("message = kind %s firstSeen %v", m.Kind, m.FirstSeen)
	}
	// Notifications are kept as Graph sent them (sequenceNumber beyond 2^53 included), less the secret,
	// which internal/intake keeps out of the queue.
	raw, _ := m.Notifications[0].MarshalJSON()
	if want := strings.Replace(change(0), `"clientState":"`+testState+`",`, "", 1); string(raw) != want {
		t.Errorf("notification changed:\n got %s\nwant %s", raw, want)
	}
	if len(o.logs) != 1 || !strings.Contains(o.logs[0], "partition 3: 25 events") || !strings.Contains(o.logs[0], "queued 25 change") {
		t.Errorf("Logs = %q", o.logs)
	}
}

func TestForgedAndForeignNotificationsAreDropped(t *testing.T) {
	f := newFunction(nil)
	forged := strings.Replace(change(1), testState, "guessed-client-state-000000", 1)
	foreign := strings.ReplaceAll(change(2), testTenant, "00000000-0000-0000-0000-00000000beef")
	o := invoke(t, f, hostBatch(collection(change(0), forged), collection(foreign)), hostMeta("0", 7, 8))
	if ids := notificationIDs(o.messages); len(ids) != 1 || ids[0] != userID(0) {
		t.Fatalf("queued %v, want only the genuine one", ids)
	}
	if !strings.Contains(o.log, "bad_client_state=1") || !strings.Contains(o.log, "foreign_tenant=1") || !strings.Contains(o.log, "partition=0") {
		t.Errorf("log does not count the drops with the partition:\n%s", o.log)
	}
	if strings.Contains(o.log, "guessed-client-state") || strings.Contains(o.log, testState) {
		t.Error("a clientState was logged")
	}
	if strings.Count(o.log, "dropped notifications") != 1 {
		t.Errorf("want one warning for the batch, not one per event:\n%s", o.log)
	}
}

func TestValidationEventIsIgnored(t *testing.T) {
	f := newFunction(nil)
	o := invoke(t, f, hostBatch(validationEvent, collection(change(0))), hostMeta("1", 0, 1))
	if ids := notificationIDs(o.messages); len(ids) != 1 {
		t.Fatalf("queued %v", ids)
	}
	if strings.Contains(o.log, "dropped") || strings.Contains(o.log, "malformed") {
		t.Errorf("the validation event was counted as forged or malformed:\n%s", o.log)
	}
	if !strings.Contains(o.logs[0], "1 validation") {
		t.Errorf("Logs = %q", o.logs)
	}
	// Alone, it queues nothing and succeeds.
	o = invoke(t, f, hostBatch(validationEvent), hostMeta("1", 0))
	if o.messages != nil {
		t.Errorf("the validation event queued %v", o.messages)
	}
	// "NA" elsewhere does not make an event a validation event.
	if isValidationEvent([]byte(collection(strings.Replace(change(0), "Users/", "NA/", 1)))) {
		t.Error("a notification with NA in another field taken for the validation event")
	}
}

func TestMalformedEventsAreSkippedNotFatal(t *testing.T) {
	f := newFunction(nil)
	malformed := []string{
		`not json at all`,
		`{"value":"not an array"}`,
		`{"value":[],"value":[]}`,
		``,
		`[1,2]`,
	}
	bodies := append([]string{collection(change(0))}, malformed...)
	bodies = append(bodies, collection(change(1)))
	seqs := []int64{50, 51, 52, 53, 54, 55, 56}
	o := invoke(t, f, hostBatch(bodies...), hostMeta("2", seqs...))
	if ids := notificationIDs(o.messages); len(ids) != 2 || ids[0] != userID(0) || ids[1] != userID(1) {
		t.Fatalf("queued %v, want the two genuine notifications around the malformed events", ids)
	}
	for i := range malformed {
		want := fmt.Sprintf("partition=2 sequence_number=%d index=%d", 51+i, 1+i)
		if !strings.Contains(o.log, want) {
			t.Errorf("no warning with %q:\n%s", want, o.log)
		}
	}
	if strings.Contains(o.log, "not json at all") {
		t.Error("an event body was echoed into the log")
	}
	// Elements that are not bodies at all: null, numbers, arrays.
	arr := json.RawMessage(`[null, 3, [1], ` + string(mustJSON(collection(change(2)))) + `]`)
	o = invoke(t, f, arr, nil)
	if ids := notificationIDs(o.messages); len(ids) != 1 || ids[0] != userID(2) {
		t.Fatalf("queued %v", ids)
	}
	if n := strings.Count(o.log, "malformed event skipped"); n != 3 {
		t.Errorf("%d malformed warnings, want 3:\n%s", n, o.log)
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func TestUnreadableBatchIsSkipped(t *testing.T) {
	f := newFunction(nil)
	for _, data := range []string{`123`, `"just text"`, `[1,`, `null`, `true`} {
		o := invoke(t, f, json.RawMessage(data), hostMeta("4", 9))
		if o.messages != nil || len(o.logs) != 1 || !strings.Contains(o.logs[0], "batch skipped") {
			t.Errorf("%s: messages %v, Logs %q", data, o.messages, o.logs)
		}
		if !strings.Contains(o.log, "partition=4") || !strings.Contains(o.log, "first_sequence_number=9") {
			t.Errorf("%s: log lacks the position:\n%s", data, o.log)
		}
	}
	o := invoke(t, f, nil, nil)
	if o.messages != nil {
		t.Error("nothing must be queued")
	}
}

func TestEveryEncodingOfTheBatchDecodes(t *testing.T) {
	body := collection(change(7))
	quoted := string(mustJSON(body))
	b64 := base64.StdEncoding.EncodeToString([]byte(body))
	cases := map[string]string{
		"host: string of an array of strings":      string(hostBatch(body)),
		"array of strings":                         string(mustJSON([]string{body})),
		"string of an array of quoted strings":     string(mustJSON(string(mustJSON([]string{quoted})))),
		"array of objects (dataType unset)":        `[` + body + `]`,
		"string of an array of objects":            string(mustJSON(`[` + body + `]`)),
		"string of an array of base64 (binary)":    string(mustJSON(string(mustJSON([]string{b64})))),
		"cardinality one: string of a string":      string(mustJSON(quoted)),
		"cardinality one: string":                  quoted,
		"cardinality one: object":                  body,
		"cardinality one: base64":                  string(mustJSON(b64)),
		"string of a string of an array (3 peels)": string(mustJSON(string(hostBatch(body)))),
	}
	f := newFunction(nil)
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			o := invoke(t, f, json.RawMessage(data), nil)
			if ids := notificationIDs(o.messages); len(ids) != 1 || ids[0] != userID(7) {
				t.Errorf("queued %v from %s", ids, data)
			}
		})
	}
}

func TestPositionIsReadLeniently(t *testing.T) {
	cases := []struct {
		meta      map[string]json.RawMessage
		partition string
		seq       []string
	}{
		{hostMeta("5", 1, 2), "5", []string{"1", "2"}},
		{map[string]json.RawMessage{"PartitionContext": json.RawMessage(`"{\"PartitionId\":\"6\"}"`), "SequenceNumberArray": json.RawMessage(`["7","8"]`)}, "6", []string{"7", "8"}},
		{map[string]json.RawMessage{"partitionContext": json.RawMessage(`{"partitionId":0}`), "SequenceNumber": json.RawMessage(`"\"12\""`)}, "0", []string{"12"}},
		{map[string]json.RawMessage{"PartitionContext": json.RawMessage(`[]`), "SequenceNumberArray": json.RawMessage(`{}`)}, "", nil},
		{nil, "", nil},
	}
	for _, c := range cases {
		p := ReadPosition(c.meta)
		if p.Partition != c.partition || fmt.Sprint(p.Sequence) != fmt.Sprint(c.seq) {
			t.Errorf("ReadPosition(%s) = %+v, want %s %v", c.meta, p, c.partition, c.seq)
		}
	}
	if (Position{}).SequenceNumber(3) != "" {
		t.Error("unknown sequence number must be empty")
	}
}

func TestLifecycleNotificationsKeepTheirKind(t *testing.T) {
	lc := `{"subscriptionId":"` + testSub + `","subscriptionExpirationDateTime":"2026-11-30T10:00:00+00:00","lifecycleEvent":"reauthorizationRequired","clientState":"` +
		testState + `","tenantId":"` + testTenant + `"}`
	o := invoke(t, newFunction(nil), hostBatch(collection(change(0)), collection(lc), collection(change(1))), nil)
	if len(o.messages) != 2 || o.messages[0].Kind != message.KindNotifications || len(o.messages[0].Notifications) != 2 ||
		o.messages[1].Kind != message.KindLifecycle {
		t.Fatalf("messages = %+v", o.messages)
	}
}

func TestMissingSettingsFailTheInvocation(t *testing.T) {
	// Nothing can be verified: the invocation fails, so the retry policy keeps the batch.
	f := newFunction(map[string]string{config.TenantID: testTenant})
	req := &customhandler.Request{Data: map[string]json.RawMessage{TriggerName: hostBatch(collection(change(0)))}}
	if _, err := f.Invoke(context.Background(), req); err == nil || !strings.Contains(err.Error(), config.ClientState) {
		t.Fatalf("err = %v, want one naming %s", err, config.ClientState)
	}
	// A batch of validation events needs no settings.
	req = &customhandler.Request{Data: map[string]json.RawMessage{TriggerName: hostBatch(validationEvent)}}
	if _, err := f.Invoke(context.Background(), req); err != nil {
		t.Fatalf("validation event: %v", err)
	}
}

func TestOversizeInvocationIsAnsweredNotFailed(t *testing.T) {
	defer func(n int64) { maxInvocationBytes = n }(maxInvocationBytes)
	maxInvocationBytes = 1 << 20
	srv := customhandler.NewServer(slog.New(slog.DiscardHandler))
	newFunction(nil).Register(srv)
	hs := httptest.NewServer(srv)
	defer hs.Close()
	big := bytes.Repeat([]byte("x"), int(maxInvocationBytes)+1)
	resp, err := http.Post(hs.URL+"/"+Name, "application/json", bytes.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct{ Outputs map[string][]json.RawMessage }
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&got) != nil {
		t.Fatalf("status %d: want 200, so the partition moves on", resp.StatusCode)
	}
	// Instead of the batch, one message that has the worker resync every collection: a request of its own
	// kind, dated by the function's clock, not a made-up lifecycle notification.
	out := got.Outputs[QueueOutput]
	if len(out) != 1 {
		t.Fatalf("outputs %v: want one message", got.Outputs)
	}
	m, err := message.Decode(out[0])
	if err != nil || m.Kind != message.KindResyncRequest || len(m.Notifications) != 0 || m.Reason == "" || !m.FirstSeen.Equal(fixedNow.UTC().Truncate(time.Second)) {
		t.Errorf("queued %s (%v): want a resyncRequest message dated %s", out[0], err, fixedNow)
	}
}
