package graph

import "testing"

func TestIsGUID(t *testing.T) {
	for _, s := range []string{
		"0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
		"0B1C2D3E-4F50-6172-8394-A5B6C7D8E9F0",
	} {
		if !IsGUID(s) {
			t.Errorf("IsGUID(%q) = false, want true", s)
		}
	}
	for _, s := range []string{
		"", "delta", "$count", "microsoft.graph.user", "alice@contoso.com", "..%2F..%2Fsubscriptions",
		"0b1c2d3e4f5061728394a5b6c7d8e9f0",       // no hyphens
		"{0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0}", // braces
		"0b1c2d3e-4f50-6172-8394-a5b6c7d8e9fg",   // not hex
		"0b1c2d3e-4f50-6172-8394a-5b6c7d8e9f0",   // hyphen misplaced
		"0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0 ",  // trailing space
	} {
		if IsGUID(s) {
			t.Errorf("IsGUID(%q) = true, want false", s)
		}
	}
}
