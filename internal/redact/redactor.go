package redact

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
)

// Redactor removes secrets from texts that leave the process (log lines, command output, the status
// report, the invocation's Logs). It knows two kinds:
//
//   - secrets it was given (the function key, the clientState, an account key): removed in any encoding a
//     text may carry them in, escapes mixed or nested: percent-escaped once or more (%3D, %253D), JSON
//     escapes (\u003d, \/, re-quoted as \\u003d), HTML character references (&#61;, &#x3D;, &equals;), a +
//     read as a space;
//   - secrets it can recognise without being told: the query of any URL, with or without a scheme
//     (a proxy that echoes a request line writes "PUT /account/queue/messages?sv=…&sig=…"), the value of a
//     parameter that holds a signature or a key (sig, code, AccountKey, SharedAccessKey, …) in any of
//     the encodings above, and a bearer token.
//
// A nil *Redactor applies the second kind only.
type Redactor struct {
	secrets []secretPattern
}

type secretPattern struct {
	anchor string // the longest run of letters and digits: every encoding keeps it, so a text without it is skipped
	re     *regexp.Regexp
}

// New returns a Redactor for the given secrets. Any form of a secret may be passed (as configured,
// escaped, decoded): each is reduced to its decoded form, and the pattern built from that matches every
// encoding. Secrets shorter than 4 characters are ignored: removing them would shred ordinary text.
func New(secrets ...string) *Redactor {
	r := &Redactor{}
	seen := map[string]bool{}
	for _, s := range secrets {
		d := canonical(s)
		if len(d) < 4 || seen[d] {
			continue
		}
		seen[d] = true
		r.secrets = append(r.secrets, secretPattern{anchor: anchor(d), re: regexp.MustCompile(pattern(d))})
	}
	// Longest first, so that a secret containing another is removed whole.
	for i := 1; i < len(r.secrets); i++ {
		for j := i; j > 0 && len(r.secrets[j].re.String()) > len(r.secrets[j-1].re.String()); j-- {
			r.secrets[j], r.secrets[j-1] = r.secrets[j-1], r.secrets[j]
		}
	}
	return r
}

// canonical decodes every percent escape a secret was written with (repeatedly, for a double escape) and
// reads a space as the + it stood for.
func canonical(s string) string {
	for range 3 {
		d, ok := unescapePercent(s)
		if !ok || d == s {
			break
		}
		s = d
	}
	return strings.ReplaceAll(s, " ", "+")
}

// unescapePercent decodes %XX escapes, keeping a + as a + (url.PathUnescape would too, but fails on a
// stray %).
func unescapePercent(s string) (string, bool) {
	if !strings.Contains(s, "%") {
		return s, false
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String(), true
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

func isAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func anchor(s string) string {
	best, start := "", -1
	for i := 0; i <= len(s); i++ {
		if i < len(s) && isAlnum(s[i]) {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 && i-start > len(best) {
			best = s[start:i]
		}
		start = -1
	}
	return best
}

// amp is an ampersand as a text may carry it: raw, JSON-escaped, percent-escaped, or as &amp; itself.
const amp = `(?:&|\\+u0026|%(?:25)*26)(?:amp;)*`

// names of characters in HTML, for those a key or a signature holds.
var entityNames = map[byte]string{'=': "equals", '+': "plus", '/': "sol", '&': "amp", '%': "percnt", '-': "hyphen", '_': "lowbar", '.': "period"}

// charPattern matches one character of a secret in any encoding.
func charPattern(c byte) string {
	if isAlnum(c) {
		return string(c)
	}
	alts := []string{
		regexp.QuoteMeta(string(c)),
		fmt.Sprintf(`(?i:%%(?:25)*%02x)`, c),  // %3D, %253D, %25253D
		fmt.Sprintf(`(?i:\\+u00%02x)`, c),     // \u003d, and \\u003d once quoted again
		fmt.Sprintf(`(?i:%s#0*%d;)`, amp, c),  // &#61;
		fmt.Sprintf(`(?i:%s#x0*%x;)`, amp, c), // &#x3d;
	}
	if name, ok := entityNames[c]; ok {
		alts = append(alts, fmt.Sprintf(`(?i:%s%s;)`, amp, name))
	}
	switch c {
	case '+':
		alts = append(alts, ` `, `(?i:%(?:25)*20)`) // a + read as a space
	case '/':
		alts = append(alts, `\\+/`) // JSON's \/
	}
	return "(?:" + strings.Join(alts, "|") + ")"
}

func pattern(secret string) string {
	var b strings.Builder
	for i := 0; i < len(secret); i++ {
		b.WriteString(charPattern(secret[i]))
	}
	return b.String()
}

// queryChars is one character of a quoted query: a character reference (&#61;), a JSON escape (\u0026, \/),
// or anything that does not end a quotation. A backslash alone is not part of it: in a JSON or a quoted
// log value it escapes the quote that ends the URL, and removing it would break the text around.
const queryChars = `(?:&#?\w+;|\\+u[0-9a-fA-F]{4}|\\+/|[^\s'"<>#\\])`

// Generic rules, applied to every text.
var (
	// The query of a URL with a scheme, up to the characters that usually end a quotation; a character
	// reference (&#61;) or a JSON escape is part of it, a fragment is not, and any other backslash ends it
	// (in JSON text, \" closes the quoted URL: eating the backslash would break the document).
	schemeQuery = regexp.MustCompile(`(?i)(\bhttps?://[^\s'"<>?#\\]*)\?` + queryChars + `*`)
	// The query after a path without a scheme, as in an echoed request line: "/a/b?x=y".
	pathQuery = regexp.MustCompile(`(/[^\s'"<>?#\\]*)\?` + queryChars + `+`)
	// A parameter that holds a signature or a key, its = in any encoding, wherever it appears.
	secretParam = regexp.MustCompile(`(?i)((?:^|[^a-z0-9_]|%(?:25)*26|%(?:25)*3f|\\+u0026)(?:` + strings.Join(paramNames, "|") + `)(?:=|%(?:25)*3d|\\+u003d|` + amp + `#0*61;|` + amp + `#x0*3d;|` + amp + `equals;))(?:` + amp + `#?\w+;|[^\s'"<>&;\\]|\\+u00[0-9a-f]{2}|\\+/)+`)
	bearer      = regexp.MustCompile(`(?i)(\bbearer\s+)[a-z0-9._~+/=-]+`)
)

// paramNames are the parameters whose value is a secret (lower case).
var paramNames = []string{"sig", "code", "accountkey", "sharedaccesskey", "sharedaccesssignature", "client_secret", "clientstate"}

// Text returns s with every secret r knows, and every one it recognises, replaced by Marker. Every line
// the handler logs passes here, so each rule first checks cheaply whether it can match at all: the regular
// expressions cost about a microsecond per byte, the checks a few nanoseconds.
func (r *Redactor) Text(s string) string {
	if r != nil {
		for _, p := range r.secrets {
			if p.anchor == "" || strings.Contains(s, p.anchor) {
				s = p.re.ReplaceAllLiteralString(s, Marker)
			}
		}
	}
	if strings.Contains(s, "?") {
		s = schemeQuery.ReplaceAllString(s, "${1}?"+Marker)
		s = pathQuery.ReplaceAllString(s, "${1}?"+Marker)
	}
	lower := strings.ToLower(s)
	if mayHoldParam(lower) {
		s = secretParam.ReplaceAllString(s, "${1}"+Marker)
	}
	if strings.Contains(lower, "bearer") {
		s = bearer.ReplaceAllString(s, "${1}"+Marker)
	}
	return s
}

// mayHoldParam reports whether lower (a text in lower case) names one of paramNames followed by what may
// be an = in some encoding (=, %3d, \u003d, &#61;, &equals;), as secretParam requires.
func mayHoldParam(lower string) bool {
	for _, name := range paramNames {
		for rest := lower; ; {
			i := strings.Index(rest, name)
			if i < 0 {
				break
			}
			rest = rest[i+len(name):]
			if rest != "" && strings.IndexByte(`=%\&`, rest[0]) >= 0 {
				return true
			}
		}
	}
	return false
}

// Error is err with its text redacted; errors.Is and errors.As still see err.
func (r *Redactor) Error(err error) error {
	if err == nil {
		return nil
	}
	return &redactedError{msg: r.Text(err.Error()), err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// maxLine bounds what a Writer holds while waiting for the end of a line.
const maxLine = 256 << 10

// Writer redacts every line written through it before passing it on. A line is passed on when its newline
// arrives (so a secret split across writes is still seen whole), or in pieces of maxLine once it grows
// that long; Flush passes on what is left.
type Writer struct {
	mu  sync.Mutex
	w   io.Writer
	r   *Redactor
	buf []byte
}

// NewWriter returns a Writer that passes the lines written to it, redacted by r, on to w.
func NewWriter(w io.Writer, r *Redactor) *Writer { return &Writer{w: w, r: r} }

// Write takes p whole and passes on every complete line.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	end := bytes.LastIndexByte(w.buf, '\n') + 1
	if end == 0 && len(w.buf) >= maxLine {
		end = len(w.buf)
	}
	if end == 0 {
		return len(p), nil
	}
	_, err := io.WriteString(w.w, w.r.Text(string(w.buf[:end])))
	w.buf = append(w.buf[:0], w.buf[end:]...)
	return len(p), err
}

// Flush passes on a last line without a newline.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) == 0 {
		return nil
	}
	_, err := io.WriteString(w.w, w.r.Text(string(w.buf)))
	w.buf = w.buf[:0]
	return err
}
