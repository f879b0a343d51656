package safetext

import (
	"strings"
	"testing"
)

func TestLineEscapesWhatCouldForgeALine(t *testing.T) {
	for in, want := range map[string]string{
		"plain id 6e1f0c1e-0000-4000-8000-000000000001": "plain id 6e1f0c1e-0000-4000-8000-000000000001",
		"sub\nERROR status: forged":                     `sub\nERROR status: forged`,
		"a\r\nb":                                        `a\r\nb`,
		"esc\x1b[2Jcleared":                             `esc\x1b[2Jcleared`,
		"sep\u2028line":                                 `sep\u2028line`,
		"bidi\u202eevil":                                `bidi\u202eevil`,
		"nel\u0085x":                                    `nel\u0085x`,
		"bad\xffutf8":                                   `bad\xffutf8`,
		"tab\there":                                     `tab\there`,
		"ünïcödé and \uFFFD stay":                       "ünïcödé and \uFFFD stay",
	} {
		got := Line(in)
		if got != want {
			t.Errorf("Line(%q) = %q, want %q", in, got, want)
		}
		if strings.ContainsAny(got, "\n\r\x1b\u2028") || !Safe(got) {
			t.Errorf("Line(%q) = %q still breaks a line", in, got)
		}
	}
}
