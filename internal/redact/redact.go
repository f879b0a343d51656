// Package redact keeps secrets out of logs and errors: the function key in the notification URL, the
// clientState secret, and SAS signatures in storage URLs. It is the one place that knows every form a
// secret takes on the wire, so that no caller scrubs the decoded form and lets the encoded one through.
package redact

import (
	"errors"
	"net/url"
	"sort"
	"strings"
)

// Marker replaces what is removed.
const Marker = "[redacted]"

// FunctionKeys returns every form of the function keys (query parameter code) in urls: a key may be written
// raw or escaped in the setting, and Graph quotes the URL back as it was sent (escaped) in its errors.
func FunctionKeys(urls ...string) []string {
	var out []string
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil {
			continue
		}
		for _, pair := range strings.Split(u.RawQuery, "&") {
			name, value, _ := strings.Cut(pair, "=")
			if n, err := url.QueryUnescape(name); err != nil || !strings.EqualFold(n, "code") || value == "" {
				continue
			}
			out = append(out, Forms(value)...)
		}
	}
	return out
}

// Forms returns a secret as written and in every encoding a URL or a text quoting one may carry it:
// decoded (a raw + kept as +, as the Functions host and Azure's keys mean it), path-escaped,
// query-escaped, with + read as a space, and each escape in lower-case hex too.
func Forms(secret string) []string {
	decoded := secret
	if d, err := url.PathUnescape(secret); err == nil {
		decoded = d
	}
	forms := []string{secret, decoded, url.QueryEscape(decoded), url.PathEscape(decoded), strings.ReplaceAll(secret, "+", " "), strings.ReplaceAll(decoded, "+", " ")}
	for _, f := range forms[:len(forms):len(forms)] {
		if l := lowerEscapes(f); l != f {
			forms = append(forms, l)
		}
	}
	return unique(forms)
}

// lowerEscapes writes the hex digits of every %XX escape in lower case.
func lowerEscapes(s string) string {
	b := []byte(s)
	for i := 0; i+2 < len(b); i++ {
		if b[i] == '%' && isHex(b[i+1]) && isHex(b[i+2]) {
			b[i+1], b[i+2] = lower(b[i+1]), lower(b[i+2])
			i += 2
		}
	}
	return string(b)
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

func lower(c byte) byte {
	if 'A' <= c && c <= 'F' {
		return c + 'a' - 'A'
	}
	return c
}

// unique drops empty and repeated forms and orders the rest longest first, so that a longer form is
// replaced whole before a shorter one inside it.
func unique(forms []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range forms {
		if f != "" && !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// Text returns s with every secret given (in any form: Forms, FunctionKeys) and every secret a Redactor
// recognises unaided (URL queries, signatures) replaced by Marker. A caller redacting many texts with the
// same secrets builds a Redactor once (New).
func Text(s string, secrets ...string) string { return New(secrets...).Text(s) }

// URLError replaces the query of the URL inside a transport error (*url.Error): with a SAS connection
// string it holds the signature, and errors end up in logs. It returns err itself, changed in place.
func URLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil && u.RawQuery != "" {
			u.RawQuery = Marker
			ue.URL = u.String()
		}
	}
	return err
}
