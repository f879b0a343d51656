package richnotify

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// GraphChangeTrackingAppID is the app that signs Graph's validation tokens: the caller every token must name.
const GraphChangeTrackingAppID = "0bf30f3b-4a52-48df-9a82-234910c4a086"

// DefaultAuthorityHost is the public cloud's Entra ID host.
const DefaultAuthorityHost = "https://login.microsoftonline.com/"

// DefaultSkew is the clock tolerance on exp and nbf (Microsoft.IdentityModel's default).
const DefaultSkew = 5 * time.Minute

// maxTokenBytes bounds what is parsed at all; Graph's tokens are about 1–2 KiB.
const maxTokenBytes = 16 << 10

// KeySource returns the RSA public key for a key id. An unknown kid is ErrUnknownKey; a failure to obtain
// the keys at all (network, a bad key document) is any other error, which callers treat as transient.
type KeySource interface {
	Key(ctx context.Context, kid string) (*rsa.PublicKey, error)
}

// ErrUnknownKey is returned by a KeySource for a kid that is not among the published keys.
var ErrUnknownKey = errors.New("richnotify: no published key has this key id")

// TokenError says which check a token failed. Detail never contains the token; it may contain claim
// values that are not secrets (an audience, an issuer, an app id).
type TokenError struct {
	Check  string // format, alg, kid, signature, exp, nbf, aud, caller, issuer
	Detail string
}

func (e *TokenError) Error() string {
	return "validation token rejected (" + e.Check + "): " + e.Detail
}

func invalid(check, format string, args ...any) error {
	return &TokenError{Check: check, Detail: fmt.Sprintf(format, args...)}
}

// IsInvalidToken reports whether err says the token is bad, as opposed to the keys being unavailable.
func IsInvalidToken(err error) bool {
	var ie *TokenError
	return errors.As(err, &ie)
}

// TokenValidator checks tokens for one app in one tenant.
type TokenValidator struct {
	Keys          KeySource
	ClientID      string        // expected aud: AZURE_CLIENT_ID
	TenantID      string        // our tenant (GUID)
	AuthorityHost string        // AZURE_AUTHORITY_HOST; "" means DefaultAuthorityHost
	Caller        string        // "" means GraphChangeTrackingAppID
	Skew          time.Duration // 0 means DefaultSkew
}

// Claims are the checked claims of an accepted token.
type Claims struct {
	Version  string // "1.0" or "2.0"
	Issuer   string
	Caller   string
	TenantID string
	Expires  time.Time
}

type header struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
}

type claims struct {
	Aud   json.RawMessage `json:"aud"`
	Iss   string          `json:"iss"`
	Exp   *json.Number    `json:"exp"`
	Nbf   *json.Number    `json:"nbf"`
	Azp   string          `json:"azp"`
	AppID string          `json:"appid"`
	Ver   string          `json:"ver"`
	Tid   string          `json:"tid"`
}

var b64 = base64.RawURLEncoding

// Validate checks token as of at: the time the notification was received, so that a message that waited
// in a queue is judged by when Graph sent it rather than by when it is processed. An *TokenError means the
// token is bad; any other error means the keys could not be obtained (retry later).
func (v *TokenValidator) Validate(ctx context.Context, token string, at time.Time) (*Claims, error) {
	if v.Keys == nil {
		return nil, errors.New("richnotify: no key source")
	}
	if len(token) > maxTokenBytes {
		return nil, invalid("format", "longer than %d bytes", maxTokenBytes)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, invalid("format", "not a signed JWT (want 3 dot-separated parts, got %d)", len(parts))
	}
	hb, err1 := b64.DecodeString(parts[0])
	cb, err2 := b64.DecodeString(parts[1])
	sig, err3 := b64.DecodeString(parts[2])
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, invalid("format", "a part is not base64url")
	}
	var h header
	if err := json.Unmarshal(hb, &h); err != nil {
		return nil, invalid("format", "the header is not a JSON object")
	}
	var c claims
	d := json.NewDecoder(bytes.NewReader(cb))
	d.UseNumber()
	if err := d.Decode(&c); err != nil {
		return nil, invalid("format", "the claims are not a JSON object of the expected types")
	}

	if h.Alg != "RS256" {
		return nil, invalid("alg", "algorithm %q is not RS256", short(h.Alg))
	}
	if h.Kid == "" {
		return nil, invalid("kid", "the header names no key id")
	}
	key, err := v.Keys.Key(ctx, h.Kid)
	if errors.Is(err, ErrUnknownKey) {
		return nil, invalid("kid", "key id %q is not among the published signing keys", short(h.Kid))
	}
	if err != nil {
		return nil, fmt.Errorf("richnotify: signing keys unavailable: %w", err)
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if rsa.VerifyPKCS1v15(key, crypto.SHA256, sum[:], sig) != nil {
		return nil, invalid("signature", "the RS256 signature does not verify with key %q", short(h.Kid))
	}

	skew := v.Skew
	if skew == 0 {
		skew = DefaultSkew
	}
	exp, ok := unixTime(c.Exp)
	if !ok {
		return nil, invalid("exp", "no readable exp claim")
	}
	if !at.Before(exp.Add(skew)) {
		return nil, invalid("exp", "expired at %s (checked at %s, skew %s)", exp.Format(time.RFC3339), at.UTC().Format(time.RFC3339), skew)
	}
	if c.Nbf != nil {
		nbf, ok := unixTime(c.Nbf)
		if !ok {
			return nil, invalid("nbf", "unreadable nbf claim")
		}
		if at.Add(skew).Before(nbf) {
			return nil, invalid("nbf", "not valid before %s (checked at %s, skew %s)", nbf.Format(time.RFC3339), at.UTC().Format(time.RFC3339), skew)
		}
	}

	if v.ClientID == "" {
		return nil, invalid("aud", "no client id configured to compare the audience with")
	}
	if !audienceMatches(c.Aud, v.ClientID) {
		return nil, invalid("aud", "audience %s is not this app (%s)", short(string(c.Aud)), v.ClientID)
	}

	want := v.Caller
	if want == "" {
		want = GraphChangeTrackingAppID
	}
	version, caller := c.Ver, c.AppID
	switch {
	case c.Ver == "2.0":
		caller = c.Azp
	case c.Ver == "" && c.AppID == "":
		version, caller = "2.0", c.Azp
	case c.Ver == "":
		version = "1.0"
	}
	if !strings.EqualFold(caller, want) {
		claim := "appid"
		if version == "2.0" {
			claim = "azp"
		}
		return nil, invalid("caller", "%s %q is not Graph's change-tracking app %s", claim, short(caller), want)
	}

	if v.TenantID == "" {
		return nil, invalid("issuer", "no tenant configured to compare the issuer with")
	}
	if !v.issuerMatches(c.Iss) {
		return nil, invalid("issuer", "issuer %q is not our tenant's", short(c.Iss))
	}
	if c.Tid != "" && !strings.EqualFold(c.Tid, v.TenantID) {
		return nil, invalid("issuer", "tid %q is not our tenant", short(c.Tid))
	}
	return &Claims{Version: version, Issuer: c.Iss, Caller: caller, TenantID: v.TenantID, Expires: exp}, nil
}

// issuerMatches accepts the v1.0 and v2.0 issuers of our tenant at the configured authority.
func (v *TokenValidator) issuerMatches(iss string) bool {
	auth := v.AuthorityHost
	if auth == "" {
		auth = DefaultAuthorityHost
	}
	if !strings.HasSuffix(auth, "/") {
		auth += "/"
	}
	for _, want := range []string{
		"https://sts.windows.net/" + v.TenantID + "/",
		auth + v.TenantID + "/",
		auth + v.TenantID + "/v2.0",
	} {
		if strings.EqualFold(iss, want) {
			return true
		}
	}
	return false
}

func audienceMatches(raw json.RawMessage, clientID string) bool {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return strings.EqualFold(one, clientID)
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		for _, a := range many {
			if strings.EqualFold(a, clientID) {
				return true
			}
		}
	}
	return false
}

func unixTime(n *json.Number) (time.Time, bool) {
	if n == nil {
		return time.Time{}, false
	}
	if i, err := n.Int64(); err == nil {
		return time.Unix(i, 0).UTC(), true
	}
	if f, err := n.Float64(); err == nil && f > 0 && f < 1e12 {
		return time.Unix(int64(f), 0).UTC(), true
	}
	return time.Time{}, false
}

// short bounds a value quoted in an error so a hostile token cannot flood the log.
func short(s string) string {
	const n = 80
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
