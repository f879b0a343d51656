// Package safetext makes text safe to print as one line: every control character (a newline, a carriage
// return, an escape sequence's ESC, the Unicode line and paragraph separators) and every byte that is not
// UTF-8 is written as a Go escape (\n, \x1b, \u2028), so that text a caller or Graph supplied (a
// subscriptionId, an error from a proxy) can never start a line of its own or rewrite the terminal.
//
// It is applied where lines leave the process: the invocation's Logs (internal/customhandler), the log
// handler (which escapes every message and attribute), and the text of `handler status`.
package safetext

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Line returns s with every character that could break or disguise a line escaped; s is returned as it is
// when it holds none, which is the usual case.
func Line(s string) string {
	i := unsafeIndex(s)
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	rest := s[i:]
	for len(rest) > 0 {
		r, size := utf8.DecodeRuneInString(rest)
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteString(`\x`)
			b.WriteString(strconv.FormatUint(uint64(rest[0])|0x100, 16)[1:])
		case unsafeRune(r):
			q := strconv.QuoteRuneToASCII(r) // '\n', '\x1b', '\u2028'
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(rest[:size])
		}
		rest = rest[size:]
	}
	return b.String()
}

// Safe reports whether s prints as one line as it is.
func Safe(s string) bool { return unsafeIndex(s) < 0 }

func unsafeIndex(s string) int {
	for i, r := range s {
		if (r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD")) || unsafeRune(r) {
			return i
		}
	}
	return -1
}

func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || unicode.Is(unicode.Bidi_Control, r)
}
