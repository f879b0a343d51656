package fakehost

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestEncodeValue(t *testing.T) {
	tests := []struct {
		in   any
		want any
	}{
		{"stringTest", `"stringTest"`},
		{`{"orderId":1005}`, `"{\"orderId\":1005}"`},
		{"<&> é \u2028", "\"<&> é \\u2028\""},
		{int64(4), "4"},
		{true, "true"},
		{[]byte("hi"), "aGk="},
		{time.Date(2019, 10, 16, 17, 58, 31, 987654321, time.UTC), "2019-10-16T17:58:31+00:00"},
		{map[string]any{"a": 1}, map[string]any{"a": 1}},
	}
	for _, tt := range tests {
		if got := EncodeValue(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("EncodeValue(%#v) = %#v, want %#v", tt.in, got, tt.want)
		}
	}
}

func TestDecodeBase64DotNet(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"aGVsbG8=", "hello", true},
		{"aGVs bG8=\r\n", "hello", true}, // white space is ignored
		{"", "", true},                   // Convert.FromBase64String("") is an empty array
		{"test", "\xb5\xeb\x2d", true},   // the gotcha: plain words can be base64
		{"abc", "", false},               // not a multiple of 4
		{"{\"a\":1}", "", false},         // JSON is never base64
		{"aGVsbG8", "", false},           // missing padding
		{"a===", "", false},              // too much padding
		{"aG=sbG8=", "", false},          // padding in the middle
		{"aGVsbG8-", "", false},          // URL alphabet is not accepted
	}
	for _, tt := range tests {
		got, ok := decodeBase64DotNet(tt.in)
		if ok != tt.ok || (ok && string(got) != tt.want) {
			t.Errorf("decodeBase64DotNet(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestReprintJSON(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"id":1005}`, "{\n  \"id\": 1005\n}"},
		{`{}`, `{}`},
		{`[]`, `[]`},
		{`{"a":[1,2],"b":{},"c":[],"d":null,"e":true}`, "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": {},\n  \"c\": [],\n  \"d\": null,\n  \"e\": true\n}"},
		{`{"z":1,"a":2}`, "{\n  \"z\": 1,\n  \"a\": 2\n}"}, // member order kept
		{`{"f":2.50,"g":1e2,"h":0.1,"i":1e20,"j":-0.00001}`, "{\n  \"f\": 2.5,\n  \"g\": 100.0,\n  \"h\": 0.1,\n  \"i\": 1E+20,\n  \"j\": -1E-05\n}"},
		{`{"s":"<a&b>\u00e9\n"}`, "{\n  \"s\": \"<a&b>é\\n\"\n}"},
		{`{"t":"2024-06-01T10:00:00.123456789Z","u":"2024-06-01T10:00:00.000Z","v":"2024-06-01T12:00:00+02:00","w":"2024-06-01T10:00:00","x":"2024-06-01"}`,
			"{\n  \"t\": \"2024-06-01T10:00:00.1234567Z\",\n  \"u\": \"2024-06-01T10:00:00Z\",\n  \"v\": \"2024-06-01T10:00:00+00:00\",\n  \"w\": \"2024-06-01T10:00:00\",\n  \"x\": \"2024-06-01\"\n}"},
	}
	for _, tt := range tests {
		got, err := reprintJSON([]byte(tt.in))
		if err != nil || got != tt.want {
			t.Errorf("reprintJSON(%s) =\n%s (%v)\nwant\n%s", tt.in, got, err, tt.want)
		}
	}
	if _, err := reprintJSON([]byte(`{"a":1} x`)); err == nil {
		t.Error("trailing data accepted")
	}
}

func TestQueueOutputMessages(t *testing.T) {
	tests := []struct {
		out    string
		binary bool
		want   []string
	}{
		{out: `"order 1005"`, want: []string{"order 1005"}},
		{out: `{"id":1005}`, want: []string{"{\n  \"id\": 1005\n}"}},
		{out: `"{\"id\":1005}"`, want: []string{"{\n  \"id\": 1005\n}"}},
		{out: `["a",{"id":1}]`, want: []string{"a", "{\n  \"id\": 1\n}"}},
		{out: `"[1,2]"`, want: []string{"1", "2"}},
		{out: `100`, want: []string{"100"}},
		{out: `1.5`, want: []string{"1.5"}},
		{out: `true`, want: []string{"True"}},
		{out: `[true,false,null,[1]]`, want: []string{"True", "False", "[\n  1\n]"}},
		{out: `null`, want: nil},
		{out: `"aGVsbG8="`, want: []string{"hello"}},                  // valid base64 is decoded first
		{out: `"test"`, want: []string{"\xb5\xeb\x2d"}},               // … even when it was meant as text
		{out: `"aGVsbG8="`, binary: true, want: []string{"aGVsbG8="}}, // not for dataType binary
		{out: `"[not json"`, want: []string{"[not json"}},
	}
	for _, tt := range tests {
		got, err := queueOutputMessages(json.RawMessage(tt.out), tt.binary)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("queueOutputMessages(%s, binary=%v) = %q, %v; want %q", tt.out, tt.binary, got, err, tt.want)
		}
	}
}

func TestHTTPOutput(t *testing.T) {
	hr, err := httpOutput(json.RawMessage(`{"statusCode":"202","headers":{"X-A":"b","X-N":5,"X-B":true},"body":"hi"}`), false)
	if err != nil {
		t.Fatal(err)
	}
	if hr.StatusCode != 202 || string(hr.Body) != "hi" || hr.Header.Get("X-N") != "5" || hr.Header.Get("X-B") != "True" ||
		hr.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("got %+v", hr)
	}
	hr, err = httpOutput(json.RawMessage(`{"StatusCode":404,"Body":{"a":1},"Headers":{"content-type":"application/json"}}`), false)
	if err != nil {
		t.Fatal(err)
	}
	if hr.StatusCode != 404 || string(hr.Body) != "{\n  \"a\": 1\n}" || hr.Header.Get("Content-Type") != "application/json" {
		t.Errorf("got %+v body %q", hr, hr.Body)
	}
	hr, err = httpOutput(json.RawMessage(`"{\"body\":\"x\"}"`), false)
	if err != nil || hr.StatusCode != 200 || string(hr.Body) != "x" {
		t.Errorf("JSON object in a string: %+v, %v", hr, err)
	}
	for _, bad := range []string{`"hello"`, `[1]`, `{"statusCode":"abc"}`} {
		if _, err := httpOutput(json.RawMessage(bad), false); err == nil {
			t.Errorf("httpOutput(%s) accepted", bad)
		}
	}
}

func TestParseQuery(t *testing.T) {
	got := parseQuery("validationToken=Validation%3a+Testing+client+application+reachability+for+subscription+Request-Id%3a+abc%2Bdef%2525&x=1&X=2&code=k&flag&bad=%zz")
	want := []queryPair{
		{"validationToken", []string{"Validation: Testing client application reachability for subscription Request-Id: abc+def%25"}},
		{"x", []string{"1", "2"}},
		{"code", []string{"k"}},
		{"flag", []string{""}},
		{"bad", []string{"%zz"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseQuery = %q\nwant %q", got, want)
	}
}

func TestRouteMatch(t *testing.T) {
	rt, err := parseRoute("orders/{id?}")
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := rt.match("/Orders/7"); !ok || p["id"] != "7" {
		t.Errorf("match = %v %v", p, ok)
	}
	if p, ok := rt.match("/orders"); !ok || p["id"] != nil {
		t.Errorf("optional: %v %v", p, ok)
	}
	if _, ok := rt.match("/orders/7/x"); ok {
		t.Error("extra segment matched")
	}
	rt, _ = parseRoute("webhook")
	if _, ok := rt.match("/webhook/"); !ok {
		t.Error("trailing slash")
	}
}

func TestExpandStorage(t *testing.T) {
	got := expandStorage("UseDevelopmentStorage=true")
	if want := DevelopmentStorageConnectionString(""); got != want {
		t.Errorf("got %q", got)
	}
	got = expandStorage("UseDevelopmentStorage=true;DevelopmentStorageProxyUri=http://proxy")
	if want := "QueueEndpoint=http://proxy:10001/devstoreaccount1;"; !strings.Contains(got, want) {
		t.Errorf("got %q, want it to contain %q", got, want)
	}
	if got := expandStorage("AccountName=a;AccountKey=b"); got != "AccountName=a;AccountKey=b" {
		t.Errorf("got %q", got)
	}
}

func TestStripJSONComments(t *testing.T) {
	in := "{\n // comment\n \"a\": \"http://x\", /* block */ \"b\": [1,2,],\n}"
	var v map[string]any
	if err := unmarshalLenient([]byte(in), &v); err != nil {
		t.Fatal(err)
	}
	if v["a"] != "http://x" {
		t.Errorf("got %v", v)
	}
}
