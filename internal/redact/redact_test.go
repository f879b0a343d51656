package redact

import (
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
)

func TestFunctionKeysCoverEveryForm(t *testing.T) {
	keys := FunctionKeys("https://h.example/api/webhook?x=1&code=ab%2Fcd+ef%3D%3D")
	for _, want := range []string{
		"ab%2Fcd+ef%3D%3D",   // as configured
		"ab/cd+ef==",         // decoded: a raw + stays a +, as in the key Azure made
		"ab%2Fcd%2Bef%3D%3D", // query-escaped
		"ab%2Fcd+ef==",       // path-escaped
		"ab/cd ef==",         // + read as a space by a query decoder
		"ab%2fcd%2bef%3d%3d", // lower-case hex
	} {
		if !slices.Contains(keys, want) {
			t.Errorf("forms %q lack %q", keys, want)
		}
	}
	if keys := FunctionKeys("https://h.example/api/webhook?Code=k1", "https://h.example/x?codes=no", "::not a url"); !slices.Contains(keys, "k1") || slices.Contains(keys, "no") {
		t.Errorf("keys = %q", keys)
	}
}

func TestTextRemovesQueriesAndSecrets(t *testing.T) {
	in := `endpoint 'https://h.example/api/webhook?code=K%2B1%3D%3D' did not respond; see HTTPS://other.example/p?sig=abc#frag and "http://127.0.0.1:7071/api/webhook?code=x"; secret s3cret-long, again S3CRET-LONG`
	got := Text(in, Forms("s3cret-long")...)
	for _, leak := range []string{"K%2B1", "sig=abc", "code=x", "s3cret-long"} {
		if strings.Contains(got, leak) {
			t.Errorf("%q survives in %s", leak, got)
		}
	}
	for _, keep := range []string{"https://h.example/api/webhook?[redacted]' did not respond", "#frag", "S3CRET-LONG"} {
		if !strings.Contains(got, keep) {
			t.Errorf("%q lost from %s", keep, got)
		}
	}
}

func TestURLError(t *testing.T) {
	err := URLError(&url.Error{Op: "Put", URL: "https://acct.queue.core.windows.net/q/messages?sv=2024&sig=SECRET", Err: errors.New("refused")})
	if strings.Contains(err.Error(), "SECRET") || !strings.Contains(err.Error(), "acct.queue.core.windows.net/q/messages") {
		t.Errorf("%v", err)
	}
	if plain := errors.New("x"); URLError(plain) != plain {
		t.Error("other errors change")
	}
}

// FuzzText feeds texts as Graph quotes them back in errors: whatever surrounds a function key, no form of
// it survives, and the text is otherwise kept.
func FuzzText(f *testing.F) {
	f.Add("Notification endpoint 'https://h.example/api/webhook?code=", "' did not respond")
	f.Add("key ", " and more")
	f.Add("http://a/?", "#x")
	keys := FunctionKeys("https://h.example/api/webhook?code=ab%2Fcd+ef%3D%3D")
	f.Fuzz(func(t *testing.T, before, after string) {
		for _, k := range keys {
			got := Text(before+k+after, keys...)
			if strings.Contains(got, k) {
				t.Fatalf("%q survives in %q", k, got)
			}
		}
	})
}
