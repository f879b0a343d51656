package jwtcheck

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Defaults for JWKS.
const (
	// DefaultTTL is how long a fetched key set is used before it is fetched again. Entra ID rotates its
	// signing keys about daily and publishes new keys well before using them.
	DefaultTTL = 12 * time.Hour
	// DefaultMinRefetch is the least time between two fetches caused by unknown key ids, so tokens with
	// made-up kids cannot make the handler hammer the key endpoint.
	DefaultMinRefetch = time.Minute
	// DefaultStaleFor is how long an expired key set is still used while the endpoint cannot be reached.
	DefaultStaleFor = 48 * time.Hour
	maxKeysBytes    = 1 << 20
	minRSABits      = 2048
)

// KeysURL is the published key set for an authority host ("" means DefaultAuthorityHost):
// {authority}common/discovery/v2.0/keys.
func KeysURL(authorityHost string) string {
	if authorityHost == "" {
		authorityHost = DefaultAuthorityHost
	}
	if !strings.HasSuffix(authorityHost, "/") {
		authorityHost += "/"
	}
	return authorityHost + "common/discovery/v2.0/keys"
}

// JWKS is a KeySource that fetches a JSON Web Key Set over HTTPS and caches it. It is safe for concurrent use
// and meant to be shared by the whole process.
type JWKS struct {
	url    string
	client *http.Client

	TTL        time.Duration    // 0: DefaultTTL
	MinRefetch time.Duration    // 0: DefaultMinRefetch
	StaleFor   time.Duration    // 0: DefaultStaleFor
	Now        func() time.Time // nil: time.Now

	fetchMu sync.Mutex // one fetch at a time
	mu      sync.Mutex
	keys    map[string]*rsa.PublicKey
	fetched time.Time // when keys were fetched
	tried   time.Time // last fetch attempt
	fetches int
}

// NewJWKS returns a key source for url (see KeysURL); client nil means http.DefaultClient.
func NewJWKS(url string, client *http.Client) *JWKS {
	if client == nil {
		client = http.DefaultClient
	}
	return &JWKS{url: url, client: client}
}

// Fetches counts the key set fetches made so far (for tests and diagnostics).
func (j *JWKS) Fetches() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.fetches
}

func (j *JWKS) now() time.Time {
	if j.Now != nil {
		return j.Now()
	}
	return time.Now()
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// lookup returns the cached key and whether the cache is fresh.
func (j *JWKS) lookup(kid string) (key *rsa.PublicKey, fresh, stale bool, lastTry time.Time) {
	j.mu.Lock()
	defer j.mu.Unlock()
	age := j.now().Sub(j.fetched)
	has := j.keys != nil
	return j.keys[kid], has && age < orDefault(j.TTL, DefaultTTL), has && age < orDefault(j.StaleFor, DefaultStaleFor), j.tried
}

// Key returns the key for kid: from the cache while it is fresh, otherwise after fetching the key set again
// (also when kid is unknown, at most once per MinRefetch). While the endpoint fails, a key set up to StaleFor
// old is still used.
func (j *JWKS) Key(ctx context.Context, kid string) (*rsa.PublicKey, error) {
	if k, fresh, _, _ := j.lookup(kid); fresh && k != nil {
		return k, nil
	}
	j.fetchMu.Lock()
	defer j.fetchMu.Unlock()
	// Another caller may have fetched while this one waited.
	k, fresh, usable, lastTry := j.lookup(kid)
	if fresh && k != nil {
		return k, nil
	}
	if fresh && j.now().Sub(lastTry) < orDefault(j.MinRefetch, DefaultMinRefetch) {
		return nil, ErrUnknownKey // fetched moments ago and the kid is not there
	}
	err := j.fetch(ctx)
	if err != nil {
		if usable && k != nil {
			return k, nil // the endpoint is down: keep using the keys we had
		}
		// Perhaps a key published since the last fetch: undecidable until the endpoint answers.
		return nil, err
	}
	k, _, _, _ = j.lookup(kid)
	if k == nil {
		return nil, ErrUnknownKey
	}
	return k, nil
}

type jwk struct {
	Kty string `json:"kty"`
	Use string `json:"use"`
	Kid string `json:"kid"`
	N   string `json:"n"`
	E   string `json:"e"`
}

func (j *JWKS) fetch(ctx context.Context) error {
	j.mu.Lock()
	j.tried = j.now()
	j.fetches++
	j.mu.Unlock()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.url, nil)
	if err != nil {
		return fmt.Errorf("signing keys: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := j.client.Do(req)
	if err != nil {
		return fmt.Errorf("signing keys: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxKeysBytes))
	if err != nil {
		return fmt.Errorf("signing keys: reading %s: %w", j.url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("signing keys: %s answered %d", j.url, resp.StatusCode)
	}
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return fmt.Errorf("signing keys: %s is not a JSON key set", j.url)
	}
	keys := map[string]*rsa.PublicKey{}
	for _, k := range set.Keys {
		if k.Kty != "RSA" || k.Kid == "" || (k.Use != "" && k.Use != "sig") {
			continue
		}
		pub, err := rsaKey(k)
		if err != nil {
			continue // one odd key must not hide the others
		}
		keys[k.Kid] = pub
	}
	if len(keys) == 0 {
		return errors.New("signing keys: " + j.url + " holds no usable RSA signing key")
	}
	j.mu.Lock()
	j.keys, j.fetched = keys, j.now()
	j.mu.Unlock()
	return nil
}

func rsaKey(k jwk) (*rsa.PublicKey, error) {
	nb, err := b64.DecodeString(strings.TrimRight(k.N, "="))
	if err != nil {
		return nil, err
	}
	eb, err := b64.DecodeString(strings.TrimRight(k.E, "="))
	if err != nil {
		return nil, err
	}
	n := new(big.Int).SetBytes(nb)
	e := new(big.Int).SetBytes(eb)
	if n.BitLen() < minRSABits || !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 || e.Bit(0) == 0 {
		return nil, errors.New("unacceptable RSA parameters")
	}
	return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
}
