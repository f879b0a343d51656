package customhandler

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func load(t testing.TB, name string) *Request {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var r Request
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return &r
}

func TestQueueTriggerEncodings(t *testing.T) {
	want := `{"v":1,"kind":"resync","attempt":0}`
	for _, file := range []string{"queue-host.json", "queue-once.json"} {
		t.Run(file, func(t *testing.T) {
			r := load(t, file)
			item, err := r.QueueItem("message")
			if err != nil || string(item) != want {
				t.Fatalf("QueueItem = %s, %v; want %s", item, err, want)
			}
			md, err := r.QueueMetadata()
			if err != nil {
				t.Fatal(err)
			}
			if md.ID != "4d5c1c8e-62a5-4b6f-9d56-1f3a2b0c9e11" || md.PopReceipt != "AgAAAAMAAAAAAAAAAgtnj8x+1QE=" || md.Dequeues() != 4 {
				t.Errorf("metadata = %+v", md)
			}
			if !md.InsertionTime.Equal(time.Date(2024, 6, 1, 10, 0, 0, 0, time.UTC)) || md.ExpirationTime.IsZero() || md.NextVisibleTime.IsZero() {
				t.Errorf("times = %+v", md)
			}
		})
	}
}

func TestQueueItemShapes(t *testing.T) {
	for _, tc := range []struct{ raw, want string }{
		{`"plain text"`, `plain text`},
		{`"\"plain text\""`, `plain text`},
		{`"\"\\\"thrice\\\"\""`, `thrice`},
		{`{"v":1}`, `{"v":1}`}, // an object sent as-is stays an object
		{`"{\"a\":\"b\"}"`, `{"a":"b"}`},
		{`"\"not closed`, `"\"not closed`},
	} {
		r := &Request{Data: map[string]json.RawMessage{"m": json.RawMessage(tc.raw)}}
		got, err := r.QueueItem("m")
		if err != nil || string(got) != tc.want {
			t.Errorf("QueueItem(%s) = %s, %v; want %s", tc.raw, got, err, tc.want)
		}
	}
	if _, err := (&Request{}).QueueItem("m"); err == nil {
		t.Error("a missing binding must be an error")
	}
}

func TestTimerShapes(t *testing.T) {
	r := load(t, "timer.json")
	ti, err := r.Timer("timer")
	if err != nil || !ti.IsPastDue || ti.ScheduleStatus == nil || ti.ScheduleStatus.Next.Time != time.Date(2024, 6, 1, 10, 0, 0, 0, time.UTC) {
		t.Errorf("timer.json: %+v %v", ti, err)
	}
	if _, ok := r.Retry(); ok {
		t.Error("no RetryContext expected")
	}

	r = load(t, "timer-nozone.json")
	ti, err = r.Timer("timer")
	if err != nil || ti.ScheduleStatus.Last.Time != time.Date(2024, 6, 1, 9, 55, 0, 3100000, time.UTC) || !ti.ScheduleStatus.LastUpdated.Time.Equal(time.Time{}) {
		t.Errorf("timer-nozone.json: %+v %v", ti.ScheduleStatus, err)
	}
	if rc, ok := r.Retry(); !ok || rc.RetryCount != 2 || rc.MaxRetryCount != 4 {
		t.Errorf("RetryContext = %+v %v", rc, ok)
	}

	ti, err = load(t, "timer-nostatus.json").Timer("timer")
	if err != nil || ti.ScheduleStatus != nil {
		t.Errorf("timer-nostatus.json: %+v %v", ti, err)
	}

	// A timer value JSON-encoded as a string decodes too.
	s, _ := json.Marshal(`{"IsPastDue":true}`)
	ti, err = (&Request{Data: map[string]json.RawMessage{"timer": s}}).Timer("timer")
	if err != nil || !ti.IsPastDue {
		t.Errorf("string timer: %+v %v", ti, err)
	}
}

func TestHTTPShapes(t *testing.T) {
	h, err := load(t, "http-sample.json").HTTP("req")
	if err != nil {
		t.Fatal(err)
	}
	if x, _ := h.QueryValue("X"); x != "1,2" || h.Header("content-type") != "application/json" || h.Body == nil || *h.Body != `{"id":1005,"quantity":2}` {
		t.Errorf("%+v", h)
	}
	if v, ok := h.Params["id"]; !ok || v != "" {
		t.Errorf("null route value: %q %v", v, ok)
	}

	h, err = load(t, "http-legacy.json").HTTP("req")
	if err != nil {
		t.Fatal(err)
	}
	if tok, ok := h.QueryValue("validationToken"); !ok || tok != "a b:c" {
		t.Errorf("Query as a JSON string: %q %v", tok, ok)
	}
	if h.Body != nil || h.BodyBytes() != nil {
		t.Error("absent Body must stay absent")
	}
	if h.Header("Content-Type") != "text/plain" {
		t.Errorf("single-string header: %q", h.Header("Content-Type"))
	}
}

func TestBodyBytesBase64(t *testing.T) {
	body := "aGVsbG8="
	h := &HTTPRequest{Body: &body, Headers: HeaderMap{"Content-Type": {"application/octet-stream"}}}
	if string(h.BodyBytes()) != "hello" {
		t.Errorf("octet-stream body not decoded: %q", h.BodyBytes())
	}
	h.Headers = HeaderMap{"Content-Type": {"application/json"}}
	if string(h.BodyBytes()) != body {
		t.Errorf("JSON body altered")
	}
}

func TestScalarRejectsContainers(t *testing.T) {
	var s Scalar
	if err := json.Unmarshal([]byte(`{"a":1}`), &s); err == nil {
		t.Error("an object is not a scalar")
	}
	for raw, want := range map[string]string{`"\"x\""`: "x", `"x"`: "x", `7`: "7", `true`: "true", `null`: ""} {
		if err := json.Unmarshal([]byte(raw), &s); err != nil || string(s) != want {
			t.Errorf("Scalar(%s) = %q %v", raw, s, err)
		}
	}
}

func TestTimeRejectsGarbage(t *testing.T) {
	var tm Time
	if err := json.Unmarshal([]byte(`"yesterday"`), &tm); err == nil {
		t.Error("garbage timestamp accepted")
	}
}

func FuzzRequestDecode(f *testing.F) {
	for _, name := range []string{"queue-host.json", "queue-once.json", "timer.json", "timer-nozone.json", "timer-nostatus.json", "http-sample.json", "http-legacy.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Request
		if json.Unmarshal(b, &r) != nil {
			return
		}
		// None of these may panic, whatever the host sends.
		r.HTTP("req")
		r.QueueItem("message")
		r.QueueMetadata()
		r.Timer("timer")
		r.Retry()
	})
}
