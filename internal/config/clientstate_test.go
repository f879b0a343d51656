package config

import (
	"strings"
	"testing"
)

func TestClientStateWeakness(t *testing.T) {
	for s, weak := range map[string]bool{
		"s3cr3t-client-state-0123456789":                                   true,  // 30 characters
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa":                         true,  // one character
		"abababababababababababababababababababab":                         true,  // two
		"abcdefghijkabcdefghijkabcdefghijkabcdefghijk":                     true,  // 11 distinct
		"abcdefghijklmnopaaaaaaaaaaaaaaaaaaaaaaaaaaaa":                     true,  // 16 distinct, but mostly one: few bits
		"k2S8v0QyJ6m3rT1xW9pL4bN7cZ5dF0gH2jK8sA6uE4o=":                     false, // openssl rand -base64 32
		"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08": false, // openssl rand -hex 32
	} {
		why := ClientStateWeakness(Secret(s))
		if (why != "") != weak {
			t.Errorf("%s: weakness %q, want weak %v", s, why, weak)
		}
		if strings.Contains(why, s) {
			t.Errorf("the reason quotes the secret: %q", why)
		}
	}
	if ClientStateWeakness("") != "" {
		t.Error("an unset clientState is missing, not weak")
	}
}
