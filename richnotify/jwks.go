package richnotify

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
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

// KeysURL is the key set Entra ID publishes for all tenants at an authority host ("" means
// DefaultAuthorityHost): {authority}common/discovery/v2.0/keys. NewTenantJWKS, which finds the tenant's own
// set through its discovery document, is preferred.
func KeysURL(authorityHost string) string {
	if authorityHost == "" {
		authorityHost = DefaultAuthorityHost
	}
	if !strings.HasSuffix(authorityHost, "/") {
		authorityHost += "/"
	}
	return authorityHost + "common/discovery/v2.0/keys"
}

// DiscoveryURL is a tenant's OpenID Connect discovery document ("" authority means DefaultAuthorityHost):
// {authority}{tenant}/v2.0/.well-known/openid-configuration.
func DiscoveryURL(authorityHost, tenant string) string {
	if authorityHost == "" {
		authorityHost = DefaultAuthorityHost
	}
	if !strings.HasSuffix(authorityHost, "/") {
		authorityHost += "/"
	}
	return authorityHost + url.PathEscape(tenant) + "/v2.0/.well-known/openid-configuration"
}

// NewTenantJWKS returns a key source for the signing keys the tenant's own discovery document names
// (its jwks_uri), rather than the /common key set: the keys are then the ones Entra ID publishes for this
// tenant, found the way OpenID Connect says to find them. The document is read again at each fetch of the
// keys, which the TTL makes rare. client nil means http.DefaultClient.
func NewTenantJWKS(authorityHost, tenant string, client *http.Client, now func() time.Time) *JWKS {
	j := NewJWKS("", client, now)
	j.discovery = DiscoveryURL(authorityHost, tenant)
	return j
}

// JWKS is a KeySource that fetches a JSON Web Key Set over HTTPS and caches it. It is safe for concurrent use
// and meant to be shared by the whole process.
type JWKS struct {
	url       string // the key set, or "" to take it from the discovery document
	discovery string // the discovery document naming the key set, when url is ""
	client    *http.Client

	TTL        time.Duration    // 0: DefaultTTL
	MinRefetch time.Duration    // 0: DefaultMinRefetch
	StaleFor   time.Duration    // 0: DefaultStaleFor
	Now        func() time.Time // the clock the TTLs are measured with: required

	fetchMu sync.Mutex // one fetch at a time
	mu      sync.Mutex
	keys    map[string]*rsa.PublicKey
	fetched time.Time // when keys were fetched
	tried   time.Time // last fetch attempt
	fetches int
}

// NewJWKS returns a key source for url (see KeysURL) whose cache ages by now; client nil means
// http.DefaultClient.
func NewJWKS(url string, client *http.Client, now func() time.Time) *JWKS {
	if client == nil {
		client = http.DefaultClient
	}
	return &JWKS{url: url, client: client, Now: now}
}

// Fetches counts the key set fetches made so far (for tests and diagnostics).
func (j *JWKS) Fetches() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.fetches
}

func (j *JWKS) now() time.Time {
	if j.Now == nil {
		panic("richnotify.JWKS: Now is nil: set it, or build the key source with NewJWKS or NewTenantJWKS")
	}
	return j.Now()
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
// old is still used, and the endpoint is tried again at most once per MinRefetch.
func (j *JWKS) Key(ctx context.Context, kid string) (*rsa.PublicKey, error) {
	if k, ok := j.cached(kid); ok {
		return k, nil
	}
	j.fetchMu.Lock()
	defer j.fetchMu.Unlock()
	// Another caller may have fetched (or tried to) while this one waited.
	if k, ok := j.cached(kid); ok {
		return k, nil
	}
	k, fresh, usable, lastTry := j.lookup(kid)
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

// cached returns the key for kid when it may be used without a fetch: the set is fresh, or it is stale but
// still usable and a fetch was attempted less than MinRefetch ago. The second case keeps calls from queueing
// one after another behind a key endpoint that is down, each waiting out its own failing request: the stale
// key serves until the next attempt is due, and a call made while an attempt is under way does not wait for it.
func (j *JWKS) cached(kid string) (*rsa.PublicKey, bool) {
	k, fresh, usable, lastTry := j.lookup(kid)
	if k == nil {
		return nil, false
	}
	if fresh {
		return k, true
	}
	return k, usable && j.now().Sub(lastTry) < orDefault(j.MinRefetch, DefaultMinRefetch)
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

	keysURL := j.url
	if keysURL == "" {
		var err error
		if keysURL, err = j.keySetFromDiscovery(ctx); err != nil {
			return err
		}
	}
	body, err := j.get(ctx, keysURL)
	if err != nil {
		return err
	}
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return fmt.Errorf("signing keys: %s is not a JSON key set", keysURL)
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
		return errors.New("signing keys: " + keysURL + " holds no usable RSA signing key")
	}
	j.mu.Lock()
	j.keys, j.fetched = keys, j.now()
	j.mu.Unlock()
	return nil
}

// keySetFromDiscovery reads jwks_uri from the discovery document. The key set must be served over HTTPS by
// the same host as the document, the authority: keys from anywhere else would not be Entra ID's.
func (j *JWKS) keySetFromDiscovery(ctx context.Context) (string, error) {
	body, err := j.get(ctx, j.discovery)
	if err != nil {
		return "", err
	}
	var doc struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || doc.JWKSURI == "" {
		return "", fmt.Errorf("signing keys: %s is not a discovery document with a jwks_uri", j.discovery)
	}
	d, _ := url.Parse(j.discovery)
	k, err := url.Parse(doc.JWKSURI)
	if err != nil || k.Scheme != "https" || d == nil || !strings.EqualFold(k.Host, d.Host) {
		return "", fmt.Errorf("signing keys: the jwks_uri of %s is not an https URL on its host", j.discovery)
	}
	return k.String(), nil
}

// get reads a JSON document of at most maxKeysBytes.
func (j *JWKS) get(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := j.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxKeysBytes))
	if err != nil {
		return nil, fmt.Errorf("signing keys: reading %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("signing keys: %s answered %d", u, resp.StatusCode)
	}
	return body, nil
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
