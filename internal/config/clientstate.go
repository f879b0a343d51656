package config

import (
	"fmt"
	"math"
)

// The rule a GRAPH_CLIENT_STATE must meet to count as strong. Each subscription's notification URL carries
// an 8-hex-digit fingerprint of it (the cs parameter), so anyone who sees that URL (a proxy's log, a
// browser history, a portal screenshot) can test guesses offline without asking this app anything: only a
// secret no one can enumerate stays secret. `openssl rand -base64 32` (44 characters, about 30 distinct)
// and `openssl rand -hex 32` (64 characters, 16 distinct) pass with a wide margin.
const (
	StrongClientStateLength   = 32  // characters at least
	StrongClientStateDistinct = 12  // distinct characters at least
	StrongClientStateBits     = 128 // estimated bits at least: length × the per-character entropy of its characters' frequencies
)

// RotateClientStateSteps is what to do about a weak GRAPH_CLIENT_STATE, without interrupting delivery.
const RotateClientStateSteps = "generate a new one (openssl rand -base64 32), set it as GRAPH_CLIENT_STATE and the current value as " +
	"GRAPH_CLIENT_STATE_PREVIOUS, let the renew timer run once (it recreates each subscription with the new secret; the resync " +
	"that follows covers the gap), then remove GRAPH_CLIENT_STATE_PREVIOUS. Until then notifications are verified as before."

// ClientStateWeakness says why a clientState is weak, or "" when it is strong (see StrongClientStateLength
// and the constants beside it). It never quotes the secret.
func ClientStateWeakness(s Secret) string {
	v := []rune(s.Reveal())
	if len(v) == 0 {
		return ""
	}
	counts := map[rune]int{}
	for _, r := range v {
		counts[r]++
	}
	var perChar float64
	for _, c := range counts {
		p := float64(c) / float64(len(v))
		perChar -= p * math.Log2(p)
	}
	bits := perChar * float64(len(v))
	switch {
	case len(v) < StrongClientStateLength:
		return fmt.Sprintf("it has %d characters, fewer than %d", len(v), StrongClientStateLength)
	case len(counts) < StrongClientStateDistinct:
		return fmt.Sprintf("it uses only %d distinct characters, fewer than %d", len(counts), StrongClientStateDistinct)
	case bits < StrongClientStateBits:
		return fmt.Sprintf("its characters carry about %.0f bits, fewer than %d", bits, StrongClientStateBits)
	}
	return ""
}

// WeakClientState is ClientStateWeakness of GRAPH_CLIENT_STATE.
func (c *Config) WeakClientState() string { return ClientStateWeakness(c.ClientState) }
