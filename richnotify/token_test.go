package richnotify

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	testTenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	testClient = "11111111-2222-3333-4444-555555555555"
)

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// testKey is one RSA key for hand-made tokens (generated once: slow under -race).
var testKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func sign(t *testing.T, header, claims map[string]any) string {
	t.Helper()
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	in := b64.EncodeToString(h) + "." + b64.EncodeToString(c)
	sum := sha256.Sum256([]byte(in))
	sig, err := rsa.SignPKCS1v15(rand.Reader, testKey(), crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return in + "." + b64.EncodeToString(sig)
}

func goodClaims(now time.Time) map[string]any {
	return map[string]any{"aud": testClient, "iss": "https://sts.windows.net/" + testTenant + "/", "appid": GraphChangeTrackingAppID,
		"ver": "1.0", "tid": testTenant, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix()}
}

// keyServer publishes the test key under kids it is told, and counts fetches.
type keyServer struct {
	*httptest.Server
	mu   sync.Mutex
	kids []string
	down bool
	hits atomic.Int32
}

func newKeyServer(t *testing.T, kids ...string) *keyServer {
	ks := &keyServer{kids: kids}
	ks.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ks.hits.Add(1)
		ks.mu.Lock()
		defer ks.mu.Unlock()
		if r.URL.Path != "/common/discovery/v2.0/keys" || ks.down {
			http.Error(w, "nope", http.StatusServiceUnavailable)
			return
		}
		pub := testKey().PublicKey
		var keys []any
		for _, kid := range ks.kids {
			keys = append(keys, map[string]any{"kty": "RSA", "use": "sig", "kid": kid,
				"n": b64.EncodeToString(pub.N.Bytes()), "e": b64.EncodeToString(big.NewInt(int64(pub.E)).Bytes())})
		}
		// An odd key must not hide the good ones.
		keys = append(keys, map[string]any{"kty": "EC", "kid": "ec", "crv": "P-256"})
		json.NewEncoder(w).Encode(map[string]any{"keys": keys})
	}))
	t.Cleanup(ks.Close)
	return ks
}

func (ks *keyServer) set(down bool, kids ...string) {
	ks.mu.Lock()
	ks.down = down
	if kids != nil {
		ks.kids = kids
	}
	ks.mu.Unlock()
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestValidatorChecks(t *testing.T) {
	ks := newKeyServer(t, "k1")
	now := time.Now()
	v := &TokenValidator{Keys: NewJWKS(KeysURL(ks.URL), ks.Client(), time.Now), ClientID: testClient, TenantID: testTenant}
	hdr := map[string]any{"alg": "RS256", "kid": "k1", "typ": "JWT"}
	with := func(k string, val any) map[string]any {
		c := goodClaims(now)
		if val == nil {
			delete(c, k)
		} else {
			c[k] = val
		}
		return c
	}
	tests := []struct {
		name   string
		token  string
		check  string // "" = accepted
		header map[string]any
	}{
		{name: "good", token: sign(t, hdr, goodClaims(now))},
		{name: "aud array", token: sign(t, hdr, with("aud", []string{"x", strings.ToUpper(testClient)}))},
		{name: "v2 issuer at the public authority", token: sign(t, hdr, map[string]any{"aud": testClient, "azp": GraphChangeTrackingAppID, "ver": "2.0",
			"iss": "https://login.microsoftonline.com/" + testTenant + "/v2.0", "exp": now.Add(time.Hour).Unix()})},
		{name: "v2 without ver reads azp", token: sign(t, hdr, map[string]any{"aud": testClient, "azp": GraphChangeTrackingAppID,
			"iss": "https://login.microsoftonline.com/" + testTenant + "/v2.0", "exp": now.Add(time.Hour).Unix()})},
		{name: "v2 with appid only", check: "caller", token: sign(t, hdr, with("ver", "2.0"))},
		{name: "alg none", check: "alg", token: b64.EncodeToString([]byte(`{"alg":"none","kid":"k1"}`)) + "." + b64.EncodeToString([]byte(`{}`)) + "."},
		{name: "alg HS256", check: "alg", token: sign(t, map[string]any{"alg": "HS256", "kid": "k1"}, goodClaims(now))},
		{name: "no kid", check: "kid", token: sign(t, map[string]any{"alg": "RS256"}, goodClaims(now))},
		{name: "not a JWT", check: "format", token: "abc.def"},
		{name: "bad base64", check: "format", token: "a.b!.c"},
		{name: "no exp", check: "exp", token: sign(t, hdr, with("exp", nil))},
		{name: "exp a string", check: "format", token: sign(t, hdr, with("exp", "tomorrow"))},
		{name: "expired beyond skew", check: "exp", token: sign(t, hdr, with("exp", now.Add(-6*time.Minute).Unix()))},
		{name: "expired within skew", token: sign(t, hdr, with("exp", now.Add(-4*time.Minute).Unix()))},
		{name: "not yet valid", check: "nbf", token: sign(t, hdr, with("nbf", now.Add(10*time.Minute).Unix()))},
		{name: "no aud", check: "aud", token: sign(t, hdr, with("aud", nil))},
		{name: "no caller", check: "caller", token: sign(t, hdr, with("appid", nil))},
		{name: "tid of another tenant", check: "issuer", token: sign(t, hdr, with("tid", "00000000-0000-0000-0000-000000000001"))},
		{name: "issuer of another authority", check: "issuer", token: sign(t, hdr, with("iss", "https://login.microsoftonline.us/"+testTenant+"/v2.0"))},
		{name: "issuer without tenant", check: "issuer", token: sign(t, hdr, with("iss", "https://sts.windows.net/common/"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Validate(ctxT(t), tt.token, now)
			if tt.check == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ie *TokenError
			if !errors.As(err, &ie) || ie.Check != tt.check {
				t.Fatalf("err = %v, want check %q", err, tt.check)
			}
		})
	}
}

func TestJWKSCachingAndRotation(t *testing.T) {
	ks := newKeyServer(t, "k1")
	clk := &clock{t: time.Now()}
	j := NewJWKS(KeysURL(ks.URL+"/"), ks.Client(), clk.Now)
	ctx := ctxT(t)

	for range 5 {
		if _, err := j.Key(ctx, "k1"); err != nil {
			t.Fatal(err)
		}
	}
	if n := ks.hits.Load(); n != 1 {
		t.Fatalf("fetched %d times for one kid, want 1", n)
	}

	// Unknown kid right after a fetch: no refetch. After MinRefetch: one refetch, then none again.
	if _, err := j.Key(ctx, "k2"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unknown kid: %v", err)
	}
	if n := ks.hits.Load(); n != 1 {
		t.Fatalf("fetched %d times, want 1 (the set was fetched moments ago)", n)
	}
	clk.Advance(DefaultMinRefetch + time.Second)
	for range 3 {
		if _, err := j.Key(ctx, "k2"); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("unknown kid again: %v", err)
		}
	}
	if n := ks.hits.Load(); n != 2 {
		t.Fatalf("fetched %d times, want 2 (one refetch for the unknown kid)", n)
	}

	// Rotation: the new key is published; after MinRefetch an unknown kid triggers a refetch that finds it.
	ks.set(false, "k1", "k2")
	clk.Advance(DefaultMinRefetch + time.Second)
	if _, err := j.Key(ctx, "k2"); err != nil {
		t.Fatalf("rotated key: %v", err)
	}

	// TTL: an old set is fetched again; if the endpoint is down, the stale keys still serve.
	ks.set(true)
	clk.Advance(DefaultTTL + time.Minute)
	if _, err := j.Key(ctx, "k1"); err != nil {
		t.Fatalf("stale key while the endpoint is down: %v", err)
	}
	hits := ks.hits.Load()
	clk.Advance(DefaultStaleFor)
	if _, err := j.Key(ctx, "k1"); err == nil || errors.Is(err, ErrUnknownKey) {
		t.Fatalf("keys older than StaleFor with the endpoint down: err = %v, want a fetch error", err)
	}
	if ks.hits.Load() != hits+1 {
		t.Fatal("no refetch attempt once the keys were too old")
	}
}

func TestJWKSUnavailableIsNotInvalid(t *testing.T) {
	ks := newKeyServer(t, "k1")
	ks.set(true)
	v := &TokenValidator{Keys: NewJWKS(KeysURL(ks.URL), ks.Client(), time.Now), ClientID: testClient, TenantID: testTenant}
	now := time.Now()
	_, err := v.Validate(ctxT(t), sign(t, map[string]any{"alg": "RS256", "kid": "k1"}, goodClaims(now)), now)
	if err == nil || IsInvalidToken(err) {
		t.Fatalf("err = %v, want a keys-unavailable error that is not an *TokenError", err)
	}
}

func TestKeysURL(t *testing.T) {
	for in, want := range map[string]string{
		"":                                 "https://login.microsoftonline.com/common/discovery/v2.0/keys",
		"https://login.microsoftonline.us": "https://login.microsoftonline.us/common/discovery/v2.0/keys",
		"https://127.0.0.1:8443/":          "https://127.0.0.1:8443/common/discovery/v2.0/keys",
	} {
		if got := KeysURL(in); got != want {
			t.Errorf("KeysURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSmallKeysRefused(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	_, err = rsaKey(jwk{Kty: "RSA", Kid: "x", N: b64.EncodeToString(k.N.Bytes()), E: b64.EncodeToString(big.NewInt(int64(k.E)).Bytes())})
	if err == nil {
		t.Fatal("a 1024-bit key was accepted")
	}
}

func TestDiscoveryMustNameKeysOnItsHost(t *testing.T) {
	for name, jwksURI := range map[string]string{
		"another host": "https://keys.evil.example/keys",
		"plain http":   "http://HOST/keys",
		"missing":      "",
	} {
		t.Run(name, func(t *testing.T) {
			ts := httptest.NewTLSServer(nil)
			t.Cleanup(ts.Close)
			ts.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				json.NewEncoder(w).Encode(map[string]string{"jwks_uri": strings.ReplaceAll(jwksURI, "HOST", r.Host)})
			})
			_, err := NewTenantJWKS(ts.URL, testTenant, ts.Client(), time.Now).Key(ctxT(t), "k1")
			if err == nil || !strings.Contains(err.Error(), "jwks_uri") {
				t.Errorf("err = %v, want a refusal of the jwks_uri", err)
			}
		})
	}
}

func TestDiscoveryURL(t *testing.T) {
	if got, want := DiscoveryURL("https://login.microsoftonline.us", testTenant), "https://login.microsoftonline.us/"+testTenant+"/v2.0/.well-known/openid-configuration"; got != want {
		t.Errorf("DiscoveryURL = %q, want %q", got, want)
	}
	if got := DiscoveryURL("", testTenant); !strings.HasPrefix(got, DefaultAuthorityHost) {
		t.Errorf("default authority: %q", got)
	}
}

func TestValidateAll(t *testing.T) {
	ks := newKeyServer(t, "k1")
	now := time.Now()
	v := &TokenValidator{Keys: NewJWKS(KeysURL(ks.URL), ks.Client(), time.Now), ClientID: testClient, TenantID: testTenant}
	hdr := map[string]any{"alg": "RS256", "kid": "k1"}
	good := sign(t, hdr, goodClaims(now))
	otherAud := goodClaims(now)
	otherAud["aud"] = "99999999-2222-3333-4444-555555555555"
	bad := sign(t, hdr, otherAud)

	if err := v.ValidateAll(ctxT(t), []string{good, good}, now); err != nil {
		t.Fatalf("two good tokens: %v", err)
	}
	for name, tt := range map[string]struct {
		tokens []string
		check  string
	}{
		"none":        {nil, "missing"},
		"one bad":     {[]string{good, bad}, "aud"},
		"bad first":   {[]string{bad, good}, "aud"},
		"a flood":     {slices.Repeat([]string{good}, maxTokensPerBody+1), "format"},
		"not a token": {[]string{good, "x"}, "format"},
	} {
		t.Run(name, func(t *testing.T) {
			err := v.ValidateAll(ctxT(t), tt.tokens, now)
			var te *TokenError
			if !errors.As(err, &te) || te.Check != tt.check {
				t.Fatalf("err = %v, want check %q", err, tt.check)
			}
			if !IsInvalidToken(err) {
				t.Error("IsInvalidToken is false")
			}
		})
	}
}

// Once the set is past its TTL and the endpoint is down, calls within MinRefetch of the last attempt use
// the stale key without trying again: one attempt, not one per call each waiting out a failing request.
func TestJWKSStaleKeyWhileDownFetchesOncePerMinRefetch(t *testing.T) {
	ks := newKeyServer(t, "k1")
	clk := &clock{t: time.Now()}
	j := NewJWKS(KeysURL(ks.URL), ks.Client(), clk.Now)
	ctx := ctxT(t)
	if _, err := j.Key(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	ks.set(true)
	clk.Advance(DefaultTTL + time.Minute)
	before := ks.hits.Load()
	for i := range 10 {
		if _, err := j.Key(ctx, "k1"); err != nil {
			t.Fatalf("call %d: stale key while the endpoint is down: %v", i, err)
		}
		clk.Advance(DefaultMinRefetch / 20)
	}
	if n := ks.hits.Load() - before; n != 1 {
		t.Fatalf("%d fetch attempts within MinRefetch, want 1", n)
	}
	// The next attempt is due after MinRefetch: one more, and the endpoint's recovery is seen.
	clk.Advance(DefaultMinRefetch)
	ks.set(false)
	if _, err := j.Key(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	if n := ks.hits.Load() - before; n != 2 {
		t.Fatalf("%d fetch attempts, want 2 (one more once MinRefetch had passed)", n)
	}
	// Fresh again: no further fetch.
	if _, err := j.Key(ctx, "k1"); err != nil || ks.hits.Load()-before != 2 {
		t.Fatalf("fresh set: err = %v, attempts = %d, want none more", err, ks.hits.Load()-before)
	}
	// An unknown kid is not served from a stale set, and is still refused.
	if _, err := j.Key(ctx, "nope"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unknown kid: %v", err)
	}
}

// While an attempt to refetch a stale set hangs on the endpoint, other calls use the stale key at once
// instead of queueing behind it.
func TestJWKSStaleKeyDoesNotWaitForAHangingFetch(t *testing.T) {
	var hits atomic.Int32
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) > 1 {
			select {
			case arrived <- struct{}{}:
			default:
			}
			<-release
			http.Error(w, "nope", http.StatusServiceUnavailable)
			return
		}
		pub := testKey().PublicKey
		json.NewEncoder(w).Encode(map[string]any{"keys": []any{map[string]any{"kty": "RSA", "use": "sig", "kid": "k1",
			"n": b64.EncodeToString(pub.N.Bytes()), "e": b64.EncodeToString(big.NewInt(int64(pub.E)).Bytes())}}})
	}))
	t.Cleanup(ts.Close)
	t.Cleanup(unblock) // before the server closes: its handler must not hang
	clk := &clock{t: time.Now()}
	j := NewJWKS(KeysURL(ts.URL), ts.Client(), clk.Now)
	ctx := ctxT(t)
	if _, err := j.Key(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(DefaultTTL + time.Minute)
	fetched := make(chan error, 1)
	go func() { _, err := j.Key(ctx, "k1"); fetched <- err }()
	select {
	case <-arrived:
	case <-ctx.Done():
		t.Fatal("no refetch of the stale set")
	}
	// The other calls must all return while the fetch still hangs (it hangs until they have).
	calls := make(chan error, 1)
	go func() {
		for range 5 {
			if _, err := j.Key(ctx, "k1"); err != nil {
				calls <- err
				return
			}
		}
		calls <- nil
	}()
	select {
	case err := <-calls:
		if err != nil {
			t.Fatalf("a call during the hanging fetch: %v", err)
		}
	case <-time.After(10 * time.Second):
		unblock()
		t.Fatal("calls waited for the hanging fetch instead of using the stale key")
	}
	unblock()
	if err := <-fetched; err != nil {
		t.Fatalf("the call that fetched: %v, want the stale key", err)
	}
	if n := hits.Load(); n != 2 {
		t.Fatalf("%d requests, want 2 (the first fetch, one refetch)", n)
	}
}
