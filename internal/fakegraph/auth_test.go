package fakegraph

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

func postToken(t *testing.T, s *Server, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := s.Client().PostForm(s.TokenEndpoint(), form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

func TestTokenWithSecret(t *testing.T) {
	s := newTestServer(t, nil)
	form := url.Values{
		"grant_type": {"client_credentials"}, "client_id": {testClient}, "client_secret": {testSecret},
		"scope": {"https://graph.microsoft.com/.default openid profile offline_access"},
	}
	st, m := postToken(t, s, form)
	if st != 200 || m["token_type"] != "Bearer" || m["expires_in"] != float64(3599) || m["access_token"] == "" {
		t.Fatalf("got %d %v", st, m)
	}
	p, err := parseJWT(m["access_token"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if p.str("aud") != GraphResource || p.str("tid") != testTenant || p.str("appid") != testClient {
		t.Fatalf("claims %v", p.claims)
	}
	if r := call(t, s, m["access_token"].(string), "GET", "/v1.0/subscriptions", nil); r.Status != 200 {
		t.Fatalf("graph with token: %d %s", r.Status, r.Body)
	}

	cases := []struct {
		name   string
		change func(url.Values)
		status int
		code   string
	}{
		{"wrong secret", func(v url.Values) { v.Set("client_secret", "nope") }, 401, "AADSTS7000215"},
		{"no credential", func(v url.Values) { v.Del("client_secret") }, 401, "AADSTS7000218"},
		{"unknown client", func(v url.Values) { v.Set("client_id", "99999999-2222-3333-4444-555555555555") }, 400, "AADSTS700016"},
		{"wrong grant", func(v url.Values) { v.Set("grant_type", "password") }, 400, "AADSTS70003"},
		{"scope without .default", func(v url.Values) { v.Set("scope", "https://graph.microsoft.com/User.Read.All") }, 400, "AADSTS1002012"},
		{"other resource", func(v url.Values) { v.Set("scope", "https://vault.azure.net/.default") }, 400, "AADSTS500011"},
		{"own URL as resource", func(v url.Values) { v.Set("scope", s.URL()+"/.default") }, 200, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := url.Values{}
			for k, v := range form {
				f[k] = append([]string(nil), v...)
			}
			c.change(f)
			st, m := postToken(t, s, f)
			if st != c.status {
				t.Fatalf("status %d, want %d: %v", st, c.status, m)
			}
			if c.code != "" && !strings.HasPrefix(m["error_description"].(string), c.code+":") {
				t.Fatalf("error_description %q, want %s", m["error_description"], c.code)
			}
		})
	}

	resp, _ := s.Client().PostForm(s.URL()+"/00000000-0000-0000-0000-000000000000/oauth2/v2.0/token", form)
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("wrong tenant: %d", resp.StatusCode)
	}
}

func newClientCert(t *testing.T) (*x509.Certificate, *rsa.PrivateKey) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "app"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

// assertion builds a client assertion by hand, like MSAL does (PS256 + x5t#S256, standard base64) or RS256 + x5t.
func assertion(t *testing.T, key *rsa.PrivateKey, cert *x509.Certificate, alg string, claims map[string]any) string {
	t.Helper()
	h := map[string]any{"alg": alg, "typ": "JWT"}
	if alg == "PS256" {
		sum := sha256.Sum256(cert.Raw)
		h["x5t#S256"] = base64.StdEncoding.EncodeToString(sum[:])
	} else {
		sum := sha1.Sum(cert.Raw)
		h["x5t"] = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	hb, _ := json.Marshal(h)
	cb, _ := json.Marshal(claims)
	input := b64.EncodeToString(hb) + "." + b64.EncodeToString(cb)
	digest := sha256.Sum256([]byte(input))
	var sig []byte
	var err error
	if alg == "PS256" {
		sig, err = rsa.SignPSS(rand.Reader, key, crypto.SHA256, digest[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	} else {
		sig, err = rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	}
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + b64.EncodeToString(sig)
}

func TestTokenWithCertAssertion(t *testing.T) {
	cert, key := newClientCert(t)
	_, otherKey := newClientCert(t)
	s := newTestServer(t, func(o *Options) { o.ClientCert = cert; o.ClientSecret = "" })
	now := time.Now()
	good := func() map[string]any {
		return map[string]any{"aud": s.TokenEndpoint(), "iss": testClient, "sub": testClient, "jti": newGUID(),
			"nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()}
	}
	form := func(a string) url.Values {
		return url.Values{"grant_type": {"client_credentials"}, "client_id": {testClient},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
			"client_assertion":      {a}, "scope": {"https://graph.microsoft.com/.default"}}
	}
	for _, alg := range []string{"PS256", "RS256"} {
		st, m := postToken(t, s, form(assertion(t, key, cert, alg, good())))
		if st != 200 || m["access_token"] == nil {
			t.Fatalf("%s: %d %v", alg, st, m)
		}
	}
	bad := map[string]string{}
	bad["signed by another key"] = assertion(t, otherKey, cert, "PS256", good())
	c := good()
	c["aud"] = "https://login.microsoftonline.com/" + testTenant + "/oauth2/v2.0/token"
	bad["wrong aud"] = assertion(t, key, cert, "PS256", c)
	c = good()
	c["iss"] = "someone-else"
	bad["wrong iss"] = assertion(t, key, cert, "PS256", c)
	c = good()
	c["exp"] = now.Add(-time.Hour).Unix()
	bad["expired"] = assertion(t, key, cert, "RS256", c)
	for name, a := range bad {
		st, m := postToken(t, s, form(a))
		if st != 401 || m["error"] != "invalid_client" {
			t.Errorf("%s: %d %v", name, st, m)
		}
	}
	// The secret is refused when none is configured.
	st, _ := postToken(t, s, url.Values{"grant_type": {"client_credentials"}, "client_id": {testClient},
		"client_secret": {"x"}, "scope": {"https://graph.microsoft.com/.default"}})
	if st != 401 {
		t.Fatalf("secret without one configured: %d", st)
	}
}

func azOpts(s *Server) azcore.ClientOptions {
	return azcore.ClientOptions{Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: s.AuthorityHost()}, Transport: s.Client()}
}

// TestAzidentityAcceptsDouble proves the real SDK (azidentity v1.15 + MSAL) accepts the double:
// tenant discovery, the token endpoint with a secret and with a certificate, and managed identity.
func TestAzidentityAcceptsDouble(t *testing.T) {
	cert, key := newClientCert(t)
	s := newTestServer(t, func(o *Options) { o.ClientCert = cert })
	scope := policy.TokenRequestOptions{Scopes: []string{"https://graph.microsoft.com/.default"}}

	cred, err := azidentity.NewClientSecretCredential(testTenant, testClient, testSecret,
		&azidentity.ClientSecretCredentialOptions{ClientOptions: azOpts(s), DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := cred.GetToken(ctxT(t), scope)
	if err != nil {
		t.Fatalf("secret credential: %v", err)
	}
	if r := call(t, s, tok.Token, "GET", "/v1.0/subscriptions", nil); r.Status != 200 {
		t.Fatalf("graph with SDK token: %d %s", r.Status, r.Body)
	}
	if n := s.Count("GET", "/"+testTenant+"/v2.0/.well-known/openid-configuration"); n != 1 {
		t.Fatalf("openid-configuration fetched %d times", n)
	}

	certCred, err := azidentity.NewClientCertificateCredential(testTenant, testClient, []*x509.Certificate{cert}, key,
		&azidentity.ClientCertificateCredentialOptions{ClientOptions: azOpts(s), DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := certCred.GetToken(ctxT(t), scope); err != nil {
		t.Fatalf("certificate credential: %v", err)
	}

	wrong, _ := azidentity.NewClientSecretCredential(testTenant, testClient, "wrong",
		&azidentity.ClientSecretCredentialOptions{ClientOptions: azOpts(s), DisableInstanceDiscovery: true})
	if _, err := wrong.GetToken(ctxT(t), scope); err == nil || !strings.Contains(err.Error(), "AADSTS7000215") {
		t.Fatalf("wrong secret: %v", err)
	}

	t.Setenv("IDENTITY_ENDPOINT", s.ManagedIdentityEndpoint())
	t.Setenv("IDENTITY_HEADER", s.ManagedIdentityHeader())
	mi, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{
		ClientOptions: azcore.ClientOptions{Transport: s.Client()}, ID: azidentity.ClientID(testClient)})
	if err != nil {
		t.Fatal(err)
	}
	miTok, err := mi.GetToken(ctxT(t), scope)
	if err != nil {
		t.Fatalf("managed identity: %v", err)
	}
	if r := call(t, s, miTok.Token, "GET", "/v1.0/subscriptions", nil); r.Status != 200 {
		t.Fatalf("graph with MI token: %d %s", r.Status, r.Body)
	}
	// MSAL's managed identity cache is process-global, so the Graph token above may come from an
	// earlier Server in this process; a scope unique to this Server forces a request to check its shape.
	if _, err := mi.GetToken(ctxT(t), policy.TokenRequestOptions{Scopes: []string{s.URL() + "/.default"}}); err != nil {
		t.Fatalf("managed identity, own scope: %v", err)
	}
	var miReq *Request
	for _, r := range s.Requests() {
		if r.Path == "/msi/token" {
			miReq = &r
		}
	}
	if miReq == nil {
		t.Fatal("no request to the MI endpoint")
	}
	q, _ := url.ParseQuery(miReq.RawQuery)
	if q.Get("api-version") != "2019-08-01" || q.Get("resource") != s.URL() || q.Get("client_id") != testClient ||
		miReq.Header.Get("X-IDENTITY-HEADER") != s.ManagedIdentityHeader() {
		t.Fatalf("MI request %q %v", miReq.RawQuery, miReq.Header)
	}
}

func TestManagedIdentityHeaderRequired(t *testing.T) {
	s := newTestServer(t, nil)
	u := s.ManagedIdentityEndpoint() + "?api-version=2019-08-01&resource=" + url.QueryEscape(GraphResource)
	for hdr, want := range map[string]int{"": 401, "wrong": 401, s.ManagedIdentityHeader(): 200} {
		req, _ := http.NewRequest("GET", u, nil)
		if hdr != "" {
			req.Header.Set("X-IDENTITY-HEADER", hdr)
		}
		resp, err := s.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("header %q: %d", hdr, resp.StatusCode)
		}
		if want == 200 {
			if _, ok := m["expires_on"].(string); !ok || m["token_type"] != "Bearer" || m["resource"] != GraphResource {
				t.Fatalf("MI body %v", m)
			}
		}
	}
}

func TestGraphRequiresToken(t *testing.T) {
	s := newTestServer(t, nil)
	other := newTestServer(t, func(o *Options) { o.TenantID = "99999999-86f1-41af-91ab-2d7cd011db47" })
	otherTok, _ := other.issueAccessToken(GraphResource, "1")
	for name, tok := range map[string]string{"none": "", "garbage": "abc.def.ghi", "other tenant's": otherTok,
		"validation token": s.ValidationToken("")} {
		r := call(t, s, tok, "GET", "/v1.0/users/x", nil)
		if code, _ := r.ErrorCodeMsg(t); r.Status != 401 || code != "InvalidAuthenticationToken" {
			t.Errorf("%s: %d %s", name, r.Status, r.Body)
		}
	}
	s2 := newTestServer(t, func(o *Options) { o.AppRoles = []string{} })
	if r := call(t, s2, token(t, s2), "GET", "/v1.0/users/x", nil); r.Status != 403 {
		t.Fatalf("no roles: %d", r.Status)
	}
}

// TestValidationTokens checks good and bad validation tokens against the published JWKS, the way the product will.
func TestValidationTokens(t *testing.T) {
	clock := newFakeClock()
	s := newTestServer(t, func(o *Options) { o.Clock = clock.Now })
	resp, err := s.Client().Get(s.URL() + "/" + testTenant + "/v2.0/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	json.NewDecoder(resp.Body).Decode(&cfg)
	resp.Body.Close()
	if cfg["issuer"] != s.URL()+"/"+testTenant+"/v2.0" || !strings.HasPrefix(cfg["token_endpoint"].(string), s.URL()) {
		t.Fatalf("openid config %v", cfg)
	}
	resp, err = s.Client().Get(cfg["jwks_uri"].(string))
	if err != nil {
		t.Fatal(err)
	}
	var jwks struct {
		Keys []struct{ Kid, N, E, Kty string } `json:"keys"`
	}
	json.NewDecoder(resp.Body).Decode(&jwks)
	resp.Body.Close()
	if len(jwks.Keys) != 1 || jwks.Keys[0].Kty != "RSA" {
		t.Fatalf("jwks %+v", jwks)
	}
	nb, _ := b64.DecodeString(jwks.Keys[0].N)
	eb, _ := b64.DecodeString(jwks.Keys[0].E)
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(nb), E: int(new(big.Int).SetBytes(eb).Int64())}

	check := func(tok string) string {
		p, err := parseJWT(tok)
		if err != nil {
			return "parse"
		}
		if p.header["kid"] != jwks.Keys[0].Kid {
			return "kid"
		}
		if p.verifyRSA(pub) != nil {
			return "signature"
		}
		if exp, _ := p.num("exp"); exp <= clock.Now().Unix() {
			return "expired"
		}
		if p.str("aud") != testClient {
			return "aud"
		}
		caller := p.str("appid")
		if p.str("ver") == "2.0" {
			caller = p.str("azp")
		}
		if caller != GraphChangeTrackingAppID {
			return "caller"
		}
		return ""
	}
	cases := map[string]struct {
		o    ValidationTokenOptions
		want string
	}{
		"good v1":       {ValidationTokenOptions{}, ""},
		"good v2":       {ValidationTokenOptions{Version: "2.0"}, ""},
		"wrong aud":     {ValidationTokenOptions{Audience: "someone"}, "aud"},
		"wrong azp":     {ValidationTokenOptions{Version: "2.0", Caller: "evil"}, "caller"},
		"wrong appid":   {ValidationTokenOptions{Caller: "evil"}, "caller"},
		"expired":       {ValidationTokenOptions{Expired: true}, "expired"},
		"bad signature": {ValidationTokenOptions{BadSignature: true}, "signature"},
		"unknown key":   {ValidationTokenOptions{KeyID: "nope"}, "kid"},
	}
	for name, c := range cases {
		if got := check(s.ValidationTokenWith(c.o)); got != c.want {
			t.Errorf("%s: %q, want %q", name, got, c.want)
		}
	}
	if got := check(s.ValidationToken(testClient)); got != "" {
		t.Fatalf("ValidationToken: %s", got)
	}
	clock.Advance(2 * time.Hour)
	if got := check(s.ValidationToken("")); got != "" { // minted on the Clock
		t.Fatalf("after advancing the clock: %s", got)
	}
}
