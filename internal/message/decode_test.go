package message

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"v":1,"kind":"notifications","notifications":[{"subscriptionId":"s","changeType":"updated","resourceData":{"id":"u","sequenceNumber":638700000000000001}}],"attempt":2,"notBefore":"2026-11-27T10:00:30Z","firstSeen":"2026-11-27T10:00:00Z"}`))
	f.Add([]byte(`{"v":1,"kind":"lifecycle","notifications":[{"lifecycleEvent":"missed"}],"validationTokens":["a.b.c"],"firstSeen":"2026-11-27T10:00:00Z"}`))
	f.Add([]byte(`{"v":1,"kind":"resync","continuation":"{\"pass\":\"p\",\"link\":\"\"}","firstSeen":"2026-11-27T10:00:00Z"}`))
	f.Add([]byte(`{"v":1,"kind":"notifications","notifications":[1]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		// What decodes is valid, and survives a round trip through the encoder the worker uses to re-enqueue.
		out, err := EncodeAll([]Message{*m})
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		var back []json.RawMessage
		if err := json.Unmarshal(out, &back); err != nil || len(back) != 1 {
			t.Fatalf("EncodeAll wrote invalid JSON: %v", err)
		}
		m2, err := Decode(back[0])
		if err != nil {
			t.Fatalf("round trip: %v", err)
		}
		if m2.Kind != m.Kind || len(m2.Notifications) != len(m.Notifications) || m2.Attempt != m.Attempt || m2.Continuation != m.Continuation {
			t.Fatalf("round trip changed the message: %+v → %+v", m, m2)
		}
	})
}

func TestEventID(t *testing.T) {
	a := EventID("notification", "t", "users", "u1", "updated", "false")
	if a != EventID("notification", "t", "users", "u1", "updated", "false") || len(a) != 32 {
		t.Errorf("not stable: %s", a)
	}
	for _, other := range [][]string{
		{"notification", "t", "users", "u1", "updated", "true"},
		{"resync", "t", "users", "u1", "updated", "false"},
		{"notification", "t", "users", "u", "1updated", "false"}, // parts are separated, not concatenated
	} {
		if EventID(other...) == a {
			t.Errorf("%v collides with the first id", other)
		}
	}
}

func TestEventObjectField(t *testing.T) {
	for _, e := range []Event{
		{V: 1, Resource: "users", Field: FieldUser, Object: map[string]any{"displayName": "Ada"}},
		{V: 1, Resource: "groups", Field: FieldGroup, Object: map[string]any{"displayName": "Team"}},
		{V: 1, Resource: "groups", Field: FieldGroup},
		{V: 1, Resource: "users", Field: FieldUser},
	} {
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		other := FieldGroup
		if e.Field == FieldGroup {
			other = FieldUser
		}
		if !strings.Contains(string(b), `"`+e.Field+`":`) || strings.Contains(string(b), `"`+other+`"`) {
			t.Errorf("%s: want the object under %q only", b, e.Field)
		}
		var back Event
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if back.Field != e.Field || fmt.Sprint(back.Object) != fmt.Sprint(e.Object) || (e.Object == nil) != (back.Object == nil) {
			t.Errorf("%s read back as %+v", b, back)
		}
	}
}
