package richnotify

import (
	"context"
	"crypto/rsa"
	"strings"
	"testing"
	"time"
)

// staticKeys serves the test key under every kid, so the fuzzer reaches signature checking.
type staticKeys struct{}

func (staticKeys) Key(context.Context, string) (*rsa.PublicKey, error) {
	return &testKey().PublicKey, nil
}

// FuzzValidateToken feeds validation tokens as a queue message would carry them (anyone who knows clientState can
// queue one): the validator must neither panic nor accept a token it did not see signed, and what it does
// accept must carry the header and claims of the one genuine token it was seeded with.
func FuzzValidateToken(f *testing.F) {
	now := time.Now()
	good := sign(&testing.T{}, map[string]any{"alg": "RS256", "kid": "k1", "typ": "JWT"}, goodClaims(now))
	f.Add(good)
	f.Add(strings.Replace(good, ".", "..", 1))
	f.Add(`eyJhbGciOiJub25lIn0.eyJhdWQiOiJ4In0.`)
	f.Add(`eyJhbGciOiJIUzI1NiIsImtpZCI6ImsxIn0.e30.AAAA`)
	f.Add(strings.Repeat("A", 9000))
	v := &TokenValidator{Keys: staticKeys{}, ClientID: testClient, TenantID: testTenant}
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Validate(context.Background(), token, now)
		// The signature covers the header and the claims as encoded: an accepted token has exactly those.
		signed := good[:strings.LastIndexByte(good, '.')]
		if err == nil && (c == nil || !strings.HasPrefix(token, signed+".")) {
			t.Fatalf("accepted a token that was never signed: %q", token)
		}
	})
}
