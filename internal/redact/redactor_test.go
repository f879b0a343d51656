package redact

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"testing"
)

// key is a function key as Azure makes them: base64 with its == padding, a / and a +.
const key = "Kf8Q2mZ/x+Yt0pWqLr4N=="

// keyParts are pieces of key that no redacted text may hold.
var keyParts = []string{"Kf8Q2mZ", "Yt0pWqLr4N"}

// keyEncodings are the forms a proxy, a JSON writer or an HTML error page give the key.
var keyEncodings = map[string]string{
	"raw":             key,
	"json":            `Kf8Q2mZ\/x\u002bYt0pWqLr4N\u003d\u003d`,
	"json quoted":     `Kf8Q2mZ\\/x+Yt0pWqLr4N\\u003D\\u003D`,
	"escaped":         "Kf8Q2mZ%2Fx%2BYt0pWqLr4N%3D%3D",
	"double-escaped":  "Kf8Q2mZ%252Fx%252BYt0pWqLr4N%253D%253D",
	"html":            "Kf8Q2mZ&#47;x&#43;Yt0pWqLr4N&#61;&#61;",
	"html hex":        "Kf8Q2mZ/x+Yt0pWqLr4N&#x3D;&#x3d;",
	"html named":      "Kf8Q2mZ&sol;x&plus;Yt0pWqLr4N&equals;&equals;",
	"html in json":    `Kf8Q2mZ/x+Yt0pWqLr4N\u0026#61;\u0026#61;`,
	"plus as a space": "Kf8Q2mZ/x Yt0pWqLr4N==",
	"mixed":           `Kf8Q2mZ%2fx+Yt0pWqLr4N\u003d%253D`,
}

func TestRedactorRemovesAKeyInEveryEncoding(t *testing.T) {
	for _, given := range []string{key, "Kf8Q2mZ%2Fx%2BYt0pWqLr4N%3D%3D"} { // as configured: raw or escaped
		r := New(FunctionKeys("https://h.example/api/webhook?code=" + given)...)
		for name, form := range keyEncodings {
			for _, text := range []string{
				"key " + form + " echoed",              // bare, in a body
				`{"functionKey":"` + form + `"}`,       // in JSON
				"<td>" + form + "</td>",                // in an HTML page
				"webhook?code=" + form + "&x=1",        // in a query without a path
				"POST /api/webhook?code=" + form + " ", // in a request line
			} {
				got := r.Text(text)
				for _, part := range keyParts {
					if strings.Contains(got, part) {
						t.Errorf("configured %q, %s form: %q survives in %q", given, name, part, got)
					}
				}
			}
		}
	}
}

func TestRedactorRecognisesSignaturesUnaided(t *testing.T) {
	var r *Redactor // no secret given: the generic rules alone
	for _, text := range []string{
		"PUT /devstoreaccount1/webhooksnotificationqueue/messages?sv=2024-08-04&ss=q&sig=S1gN4tUr3%2B%3D HTTP/1.1",
		"acct.queue.core.windows.net/q/messages?se=2027&sig=S1gN4tUr3%2B%3D",
		"https://acct.blob.core.windows.net/c/b?sv=1&amp;sig=S1gN4tUr3+=",
		"Location: https%3A%2F%2Facct.table.core.windows.net%2Ft%3Fsv%3D1%26sig%3DS1gN4tUr3%252B%253D",
		`{"url":"https:\/\/acct.queue.core.windows.net\/q?sv=1\u0026sig=S1gN4tUr3\u002b\u003d"}`,
		"sig&#61;S1gN4tUr3&#43;&#61;",
		"DefaultEndpointsProtocol=https;AccountName=a;AccountKey=S1gN4tUr3+/==;EndpointSuffix=core.windows.net",
		"SharedAccessSignature=sv=1&sig=S1gN4tUr3",
		"Authorization: Bearer S1gN4tUr3.eyJ.x",
	} {
		if got := r.Text(text); strings.Contains(got, "S1gN4tUr3") {
			t.Errorf("signature survives: %q", got)
		}
	}
	// Ordinary text is kept: an error code, a question, a status line.
	for _, text := range []string{
		"RESPONSE 503: 503 The server is busy.\nERROR CODE: ServerBusy",
		`{"odata.error":{"code":"ServerBusy","message":{"value":"busy"}}}`,
		"<Code>ServerBusy</Code>",
		"is table storage down? yes, and/or not",
		"queueworker: message 1 (dequeue 2): moved to poison",
	} {
		if got := r.Text(text); got != text {
			t.Errorf("changed: %q → %q", text, got)
		}
	}
}

func TestWriterRedactsLinesWhole(t *testing.T) {
	var out bytes.Buffer
	w := NewWriter(&out, New(key))
	// A line arrives in pieces that split the key; nothing is passed on before its newline.
	w.Write([]byte("first Kf8Q2m"))
	if out.Len() != 0 {
		t.Fatalf("passed on half a line: %q", out.String())
	}
	w.Write([]byte("Z/x+Yt0pWqLr4N== end\nsecond sig=S1gN4tUr3"))
	w.Flush()
	if got := out.String(); got != "first [redacted] end\nsecond sig=[redacted]" {
		t.Errorf("got %q", got)
	}
}

func TestErrorKeepsTheChain(t *testing.T) {
	err := New().Error(&fs.PathError{Op: "open", Path: "/x?sig=S1gN4tUr3", Err: fs.ErrNotExist})
	if strings.Contains(err.Error(), "S1gN4tUr3") || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%v", err)
	}
	if New().Error(nil) != nil {
		t.Error("nil error became an error")
	}
}

// TestRedactedQuotedURLsKeepTheirQuotes: a URL quoted inside a JSON string (Go's url.Error quotes it: `Get "…?q": dial`)
// ends at an escaped quote; redacting its query must keep the backslash, or `status -json` stops parsing.
func TestRedactedQuotedURLsKeepTheirQuotes(t *testing.T) {
	msg := `Get "http://127.0.0.1:1/devstoreaccount1/q?comp=metadata&sig=S1gN4tUr3": dial tcp: connection refused; ` +
		`PUT "/devstoreaccount1/q/messages?sv=1&sig=S1gN4tUr3" and https://h/x?code=` + key
	b, err := json.MarshalIndent(map[string]string{"message": msg}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got := New(key).Text(string(b))
	var back map[string]string
	if err := json.Unmarshal([]byte(got), &back); err != nil {
		t.Fatalf("not JSON after redaction: %v\n%s", err, got)
	}
	if strings.Contains(got, "S1gN4tUr3") || strings.Contains(got, "Yt0pWqLr4N") || !strings.Contains(back["message"], `q?[redacted]": dial tcp`) {
		t.Errorf("got %s", back["message"])
	}
	// The same in a log value slog quoted.
	line := fmt.Sprintf("level=ERROR msg=failed err=%q n=1", msg)
	if got := New(key).Text(line); !strings.HasSuffix(got, `" n=1`) || strings.Contains(got, "S1gN4tUr3") {
		t.Errorf("log line %s", got)
	}
}

// BenchmarkWriterLogLine: what the redactor adds to each log line the handler writes (the webhook's
// completion line), with a function key and a clientState configured.
func BenchmarkWriterLogLine(b *testing.B) {
	w := NewWriter(io.Discard, New(append(FunctionKeys("https://h.example/api/webhook?code="+key), Forms("s3cret-client-state-0123456789")...)...))
	line := []byte(`level=INFO msg="invocation done" function=webhook invocation_id=c82a7489-3508-4e4e-83e2-49ed067ad418 duration_ms=0.885 summary="webhook: queued 1 change and 0 lifecycle notifications in 1 messages; dropped 0 (clientState 0, tenant 0, id 0, oversize 0)"` + "\n")
	b.ReportAllocs()
	for b.Loop() {
		w.Write(line)
	}
}

// A URL quoted inside a JSON string (an error message in `handler status -json`) ends at the escaped quote:
// redacting its query must leave the document valid JSON, and still remove what the query held.
func TestRedactedJSONDocumentsStayJSON(t *testing.T) {
	var r *Redactor
	for _, doc := range []string{
		`{"message":"Get \"http://127.0.0.1:4/devstoreaccount1/q?comp=metadata&sig=S1gN4tUr3\": dial tcp: refused"}`,
		`{"message":"PUT /q/messages?sv=1\u0026sig=S1gN4tUr3 HTTP/1.1\n"}`,
	} {
		got := r.Text(doc)
		if !json.Valid([]byte(got)) {
			t.Errorf("redacted JSON is no longer JSON:\n in  %s\n out %s", doc, got)
		}
		if strings.Contains(got, "S1gN4tUr3") {
			t.Errorf("the signature survives: %s", got)
		}
	}
}
