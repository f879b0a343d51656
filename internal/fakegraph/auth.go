package fakegraph

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// signingKey is the RSA key the double signs access tokens and validation tokens with.
// Choice: one key per process, shared by every Server (RSA key generation is slow under -race).
// Access tokens carry the issuing Server's URL in the private claim "xms_fakegraph" (for debugging).
type signingKey struct {
	priv *rsa.PrivateKey
	cert *x509.Certificate
	kid  string // base64url SHA-1 thumbprint of cert, like Entra's kid/x5t
}

var (
	keyOnce   sync.Once
	sharedKey *signingKey
)

func sharedSigningKey() *signingKey {
	keyOnce.Do(func() {
		priv, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      pkix.Name{CommonName: "fakegraph token signing"},
			NotBefore:    time.Now().Add(-24 * time.Hour),
			NotAfter:     time.Now().Add(5 * 365 * 24 * time.Hour),
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
		if err != nil {
			panic(err)
		}
		cert, _ := x509.ParseCertificate(der)
		sum := sha1.Sum(der)
		sharedKey = &signingKey{priv: priv, cert: cert, kid: base64.RawURLEncoding.EncodeToString(sum[:])}
	})
	return sharedKey
}

var b64 = base64.RawURLEncoding

func signJWT(key *rsa.PrivateKey, header, claims map[string]any) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	input := b64.EncodeToString(h) + "." + b64.EncodeToString(c)
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		panic(err)
	}
	return input + "." + b64.EncodeToString(sig)
}

type parsedJWT struct {
	header  map[string]any
	claims  map[string]any
	signed  []byte
	sig     []byte
	rawBody []byte
}

func parseJWT(tok string) (*parsedJWT, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a compact JWS")
	}
	hb, err := b64.DecodeString(parts[0])
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	cb, err := b64.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("claims: %w", err)
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	p := &parsedJWT{signed: []byte(parts[0] + "." + parts[1]), sig: sig, rawBody: cb}
	if err := json.Unmarshal(hb, &p.header); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	d := json.NewDecoder(strings.NewReader(string(cb)))
	d.UseNumber()
	if err := d.Decode(&p.claims); err != nil {
		return nil, fmt.Errorf("claims: %w", err)
	}
	return p, nil
}

func (p *parsedJWT) str(k string) string {
	v, _ := p.claims[k].(string)
	return v
}

func (p *parsedJWT) num(k string) (int64, bool) {
	switch v := p.claims[k].(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i, true
		}
		if f, err := v.Float64(); err == nil {
			return int64(f), true
		}
	}
	return 0, false
}

func (p *parsedJWT) verifyRSA(pub *rsa.PublicKey) error {
	sum := sha256.Sum256(p.signed)
	switch alg, _ := p.header["alg"].(string); alg {
	case "RS256":
		return rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], p.sig)
	case "PS256":
		return rsa.VerifyPSS(pub, crypto.SHA256, sum[:], p.sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
	default:
		return fmt.Errorf("unsupported alg %q", alg)
	}
}

// ---- discovery ----

func (s *Server) issuerV2(tenant string) string { return s.URL() + "/" + tenant + "/v2.0" }

// accessTokenIssuer is the v1 issuer Graph access tokens carry.
func accessTokenIssuer(tenant string) string { return "https://sts.windows.net/" + tenant + "/" }

func (s *Server) handleOpenIDConfig(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	if tenant != s.opts.TenantID && tenant != "common" && tenant != "organizations" {
		s.aadError(w, http.StatusBadRequest, "invalid_tenant", 90002, fmt.Sprintf("Tenant '%s' not found.", tenant))
		return
	}
	base := s.URL() + "/" + tenant
	issuer := s.issuerV2(tenant)
	if tenant == "common" || tenant == "organizations" {
		issuer = s.URL() + "/{tenantid}/v2.0"
	}
	// MSAL (DisableInstanceDiscovery) checks that issuer's host matches the authority host.
	writeJSON(w, http.StatusOK, map[string]any{
		"token_endpoint":                        base + "/oauth2/v2.0/token",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"jwks_uri":                              base + "/discovery/v2.0/keys",
		"response_modes_supported":              []string{"query", "fragment", "form_post"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"issuer":                                issuer,
		"request_uri_parameter_supported":       false,
		"userinfo_endpoint":                     s.URL() + "/oidc/userinfo",
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"device_authorization_endpoint":         base + "/oauth2/v2.0/devicecode",
		"http_logout_supported":                 true,
		"frontchannel_logout_supported":         true,
		"end_session_endpoint":                  base + "/oauth2/v2.0/logout",
		"claims_supported":                      []string{"sub", "iss", "aud", "exp", "iat", "nbf", "tid", "ver", "azp", "appid"},
		"tenant_region_scope":                   "EU",
		"cloud_instance_name":                   strings.TrimPrefix(s.URL(), "https://"),
	})
}

// handleOpenIDConfigV1 serves the v1 metadata (what docs/graph-facts.md §2.4 points validation-token checkers at).
func (s *Server) handleOpenIDConfigV1(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	base := s.URL() + "/" + tenant
	issuer := accessTokenIssuer(tenant)
	if tenant == "common" {
		issuer = "https://sts.windows.net/{tenantid}/"
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"token_endpoint":                        base + "/oauth2/token",
		"jwks_uri":                              s.URL() + "/common/discovery/keys",
		"issuer":                                issuer,
		"authorization_endpoint":                base + "/oauth2/authorize",
		"id_token_signing_alg_values_supported": []string{"RS256"},
	})
}

func (s *Server) handleJWKS(w http.ResponseWriter, r *http.Request) {
	k := s.key
	pub := k.priv.PublicKey
	writeJSON(w, http.StatusOK, map[string]any{"keys": []any{map[string]any{
		"kty":    "RSA",
		"use":    "sig",
		"kid":    k.kid,
		"x5t":    k.kid,
		"n":      b64.EncodeToString(pub.N.Bytes()),
		"e":      b64.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
		"x5c":    []string{base64.StdEncoding.EncodeToString(k.cert.Raw)},
		"issuer": s.URL() + "/{tenantid}/v2.0",
	}}})
}

func (s *Server) handleInstanceDiscovery(w http.ResponseWriter, r *http.Request) {
	host := strings.TrimPrefix(s.URL(), "https://")
	writeJSON(w, http.StatusOK, map[string]any{
		"tenant_discovery_endpoint": s.URL() + "/" + s.opts.TenantID + "/v2.0/.well-known/openid-configuration",
		"api-version":               "1.1",
		"metadata":                  []any{map[string]any{"preferred_network": host, "preferred_cache": host, "aliases": []string{host}}},
	})
}

// ---- token endpoint ----

// aadError writes Entra ID's error JSON.
func (s *Server) aadError(w http.ResponseWriter, status int, errCode string, aadsts int, desc string) {
	now := time.Now().UTC()
	trace, corr := newGUID(), newGUID()
	full := desc
	if aadsts != 0 {
		full = fmt.Sprintf("AADSTS%d: %s", aadsts, desc)
	}
	full += fmt.Sprintf(" Trace ID: %s Correlation ID: %s Timestamp: %s", trace, corr, now.Format("2006-01-02 15:04:05Z"))
	body := map[string]any{
		"error":             errCode,
		"error_description": full,
		"timestamp":         now.Format("2006-01-02 15:04:05Z"),
		"trace_id":          trace,
		"correlation_id":    corr,
	}
	if aadsts != 0 {
		body["error_codes"] = []int{aadsts}
		body["error_uri"] = s.URL() + "/error?code=" + strconv.Itoa(aadsts)
	}
	w.Header().Set("Cache-Control", "no-store, no-cache")
	writeJSON(w, status, body)
}

// acceptedResource maps a requested resource (scope without "/.default", or MI resource) to the
// token audience. Choice: Graph's own identifier and the double's URL are accepted, nothing else.
func (s *Server) acceptedResource(res string) (string, bool) {
	res = strings.TrimSuffix(res, "/")
	switch {
	case strings.EqualFold(res, GraphResource):
		return GraphResource, true
	case strings.EqualFold(res, s.URL()):
		return s.URL(), true
	}
	return "", false
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	if !strings.EqualFold(tenant, s.opts.TenantID) {
		s.aadError(w, http.StatusBadRequest, "invalid_request", 90002, fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", tenant))
		return
	}
	if err := r.ParseForm(); err != nil {
		s.aadError(w, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
		return
	}
	f := r.PostForm
	switch gt := f.Get("grant_type"); gt {
	case "client_credentials":
	case "":
		s.aadError(w, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
		return
	default:
		s.aadError(w, http.StatusBadRequest, "unsupported_grant_type", 70003, fmt.Sprintf("The app requested an unsupported grant type '%s'.", gt))
		return
	}
	clientID := f.Get("client_id")
	if clientID == "" {
		s.aadError(w, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'client_id'.")
		return
	}
	if !strings.EqualFold(clientID, s.opts.ClientID) {
		s.aadError(w, http.StatusBadRequest, "unauthorized_client", 700016, fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'.", clientID, tenant))
		return
	}
	// scope: "<resource>/.default", plus the OIDC scopes MSAL always appends (openid profile offline_access), which are ignored.
	scope := strings.Fields(f.Get("scope"))
	if len(scope) == 0 {
		s.aadError(w, http.StatusBadRequest, "invalid_request", 90014, "The required field 'scope' is missing from the credential.")
		return
	}
	var audience string
	for _, sc := range scope {
		switch sc {
		case "openid", "profile", "offline_access", "email":
			continue
		}
		if audience != "" {
			s.aadError(w, http.StatusBadRequest, "invalid_scope", 70011, "The provided value for the input parameter 'scope' is not valid. Only one resource may be requested at a time.")
			return
		}
		res, ok := strings.CutSuffix(sc, "/.default")
		if !ok {
			s.aadError(w, http.StatusBadRequest, "invalid_scope", 1002012, fmt.Sprintf("The provided value for scope %s is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).", sc))
			return
		}
		aud, ok := s.acceptedResource(res)
		if !ok {
			s.aadError(w, http.StatusBadRequest, "invalid_resource", 500011, fmt.Sprintf("The resource principal named %s was not found in the tenant named %s.", res, tenant))
			return
		}
		audience = aud
	}
	if audience == "" {
		s.aadError(w, http.StatusBadRequest, "invalid_scope", 1002012, "The provided value for scope openid is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).")
		return
	}

	secret, assertion := f.Get("client_secret"), f.Get("client_assertion")
	if user, pass, ok := r.BasicAuth(); ok && secret == "" && strings.EqualFold(user, clientID) {
		secret = pass // client_secret_basic
	}
	acr := "1"
	switch {
	case secret != "" && assertion != "":
		s.aadError(w, http.StatusBadRequest, "invalid_request", 50027, "Only one client authentication method may be used.")
		return
	case secret != "":
		if s.opts.ClientSecret == "" || subtle.ConstantTimeCompare([]byte(secret), []byte(s.opts.ClientSecret)) != 1 {
			s.aadError(w, http.StatusUnauthorized, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '"+clientID+"'.")
			return
		}
	case assertion != "":
		if t := f.Get("client_assertion_type"); t != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
			s.aadError(w, http.StatusBadRequest, "invalid_request", 50027, fmt.Sprintf("Invalid client_assertion_type '%s'.", t))
			return
		}
		if code, msg := s.checkAssertion(assertion, tenant); code != 0 {
			s.aadError(w, http.StatusUnauthorized, "invalid_client", code, msg)
			return
		}
		acr = "2"
	default:
		s.aadError(w, http.StatusUnauthorized, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
		return
	}
	tok, _ := s.issueAccessToken(audience, acr)
	w.Header().Set("Cache-Control", "no-store, no-cache")
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type":     "Bearer",
		"expires_in":     3599,
		"ext_expires_in": 3599,
		"access_token":   tok,
	})
}

// checkAssertion verifies a client assertion (private_key_jwt). Returns an AADSTS code and message on failure.
// Times are checked against the real clock, like the SDK that made the assertion.
func (s *Server) checkAssertion(assertion, tenant string) (int, string) {
	cert := s.opts.ClientCert
	if cert == nil {
		return 700027, "Client assertion failed signature validation: no certificate is registered for the app."
	}
	p, err := parseJWT(assertion)
	if err != nil {
		return 50012, "Client assertion is not a valid JWT: " + err.Error()
	}
	// x5t (SHA-1) or x5t#S256 (SHA-256) thumbprint of the registered cert. MSAL encodes it with
	// standard base64, RFC 7515 says base64url: both are accepted.
	s1, s256 := sha1.Sum(cert.Raw), sha256.Sum256(cert.Raw)
	match := func(hdr string, want []byte) bool {
		v, _ := p.header[hdr].(string)
		if v == "" {
			return false
		}
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			if got, err := enc.DecodeString(v); err == nil && subtle.ConstantTimeCompare(got, want) == 1 {
				return true
			}
		}
		return false
	}
	if !match("x5t", s1[:]) && !match("x5t#S256", s256[:]) {
		return 700027, "Client assertion failed signature validation. The key was not found (x5t / x5t#S256 does not match a registered certificate)."
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return 700027, "Client assertion failed signature validation: the registered certificate has no RSA key."
	}
	if err := p.verifyRSA(pub); err != nil {
		return 700027, "Client assertion failed signature validation: " + err.Error()
	}
	okAud := false
	for _, a := range []string{s.URL() + "/" + tenant + "/oauth2/v2.0/token", s.URL() + "/" + tenant + "/oauth2/token", s.URL() + "/" + tenant + "/v2.0"} {
		if strings.EqualFold(p.str("aud"), a) {
			okAud = true
		}
	}
	if !okAud {
		return 700016, fmt.Sprintf("The audience claim value '%s' is invalid: expected the token endpoint %s.", p.str("aud"), s.TokenEndpoint())
	}
	if !strings.EqualFold(p.str("iss"), s.opts.ClientID) || !strings.EqualFold(p.str("sub"), s.opts.ClientID) {
		return 700021, "Client assertion application identifier doesn't match 'client_id' parameter (iss and sub must be the client id)."
	}
	now := time.Now().Unix()
	exp, ok := p.num("exp")
	if !ok || exp < now-300 {
		return 700024, "Client assertion is not within its valid time range."
	}
	if nbf, ok := p.num("nbf"); ok && nbf > now+300 {
		return 700024, "Client assertion is not within its valid time range."
	}
	return 0, ""
}

// issueAccessToken mints a v1 Graph-style app-only access token. Choice: its iat/exp use the
// real clock, because azidentity/MSAL cache tokens on the real clock; Options.Clock does not apply.
func (s *Server) issueAccessToken(audience, acr string) (string, time.Time) {
	now := time.Now()
	exp := now.Add(3599 * time.Second)
	claims := map[string]any{
		"aud":           audience,
		"iss":           accessTokenIssuer(s.opts.TenantID),
		"iat":           now.Unix(),
		"nbf":           now.Unix(),
		"exp":           exp.Unix(),
		"appid":         s.opts.ClientID,
		"appidacr":      acr,
		"idp":           accessTokenIssuer(s.opts.TenantID),
		"idtyp":         "app",
		"oid":           s.opts.ServicePrincipalID,
		"sub":           s.opts.ServicePrincipalID,
		"roles":         s.opts.AppRoles,
		"tid":           s.opts.TenantID,
		"ver":           "1.0",
		"uti":           newGUID(),
		"xms_fakegraph": s.URL(), // the issuing Server (private claim, the double's own)
	}
	return signJWT(s.key.priv, map[string]any{"typ": "JWT", "alg": "RS256", "x5t": s.key.kid, "kid": s.key.kid}, claims), exp
}

// authorize checks the bearer token on Graph routes and writes Graph's 401/403 on failure.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) bool {
	fail := func(msg string) bool {
		w.Header().Set("WWW-Authenticate", `Bearer realm="", authorization_uri="`+s.URL()+`/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"`)
		s.graphError(w, r, http.StatusUnauthorized, "InvalidAuthenticationToken", msg)
		return false
	}
	h := r.Header.Get("Authorization")
	scheme, tok, _ := strings.Cut(h, " ")
	if h == "" || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return fail("Access token is empty.")
	}
	p, err := parseJWT(strings.TrimSpace(tok))
	if err != nil {
		return fail("IDX14100: JWT is not well formed.")
	}
	if kid, _ := p.header["kid"].(string); kid != s.key.kid || p.verifyRSA(&s.key.priv.PublicKey) != nil || p.header["alg"] != "RS256" {
		return fail("Access token validation failure. Invalid signature.")
	}
	// Choice: a token from another Server of the same tenant in this process is accepted, because
	// MSAL's managed identity token cache is process-global and would hand it back; the tenant is checked.
	if p.str("iss") != accessTokenIssuer(s.opts.TenantID) || p.str("xms_fakegraph") == "" {
		return fail("Access token validation failure. Invalid issuer.")
	}
	if _, ok := s.acceptedResource(p.str("aud")); !ok {
		return fail("Access token validation failure. Invalid audience.")
	}
	if exp, ok := p.num("exp"); !ok || exp <= time.Now().Unix() {
		return fail("Lifetime validation failed, the token is expired.")
	}
	if roles, _ := p.claims["roles"].([]any); rolesAllow(r.URL.Path, roles) {
		return true
	}
	s.graphError(w, r, http.StatusForbidden, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
	return false
}

// ---- managed identity (App Service protocol 2019-08-01, as MSAL Go's managedidentity package sends it) ----

func (s *Server) handleManagedIdentity(w http.ResponseWriter, r *http.Request) {
	miErr := func(status int, msg string) {
		writeJSON(w, status, map[string]any{"statusCode": status, "message": msg, "correlationId": newGUID()})
	}
	if subtle.ConstantTimeCompare([]byte(r.Header.Get("X-IDENTITY-HEADER")), []byte(s.opts.ManagedIdentityHeader)) != 1 {
		miErr(http.StatusUnauthorized, "The X-IDENTITY-HEADER header is missing or does not match IDENTITY_HEADER.")
		return
	}
	q := r.URL.Query()
	if v := q.Get("api-version"); v != "2019-08-01" {
		miErr(http.StatusBadRequest, fmt.Sprintf("Unsupported api-version '%s'; expected 2019-08-01.", v))
		return
	}
	res := q.Get("resource")
	aud, ok := s.acceptedResource(strings.TrimSuffix(res, "/.default"))
	if !ok {
		miErr(http.StatusBadRequest, fmt.Sprintf("The resource '%s' is not accepted by the double.", res))
		return
	}
	if id := q.Get("client_id"); id != "" && !strings.EqualFold(id, s.opts.ClientID) {
		miErr(http.StatusBadRequest, fmt.Sprintf("No user-assigned identity with client_id '%s' is assigned to this app.", id))
		return
	}
	if q.Get("mi_res_id") != "" || q.Get("object_id") != "" || q.Get("principal_id") != "" {
		miErr(http.StatusBadRequest, "Only client_id (or none) selects the identity in the double.")
		return
	}
	tok, exp := s.issueAccessToken(aud, "2")
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": tok,
		"expires_on":   strconv.FormatInt(exp.Unix(), 10),
		"resource":     res,
		"token_type":   "Bearer",
		"client_id":    s.opts.ClientID,
	})
}

// ---- Graph's validationTokens ----

// ValidationTokenOptions shapes a validation token; zero values give a good one.
type ValidationTokenOptions struct {
	Audience     string // default: Options.ClientID
	Caller       string // azp (v2) / appid (v1); default GraphChangeTrackingAppID
	TenantID     string // default: Options.TenantID
	Version      string // "1.0" (default; iss https://sts.windows.net/{tid}/, appid) or "2.0" (iss {URL}/{tid}/v2.0, azp)
	Issuer       string // override iss
	Expired      bool   // iat/nbf 2 h ago, exp 1 h ago (by Clock)
	BadSignature bool   // the claims are altered after signing
	KeyID        string // override kid (an unknown key)
}

// ValidationToken returns a validation token like the ones Graph puts in validationTokens
// (docs/graph-facts.md §2.4): signed by the key in the double's JWKS, aud = audience (default ClientID),
// caller = GraphChangeTrackingAppID, v1.0 claims (appid). [inferred] Which token version Graph
// issues is not in the reference; ValidationTokenWith offers both.
func (s *Server) ValidationToken(audience string) string {
	return s.ValidationTokenWith(ValidationTokenOptions{Audience: audience})
}

// ValidationTokenWith returns a validation token shaped by o, e.g. a bad one for negative tests.
func (s *Server) ValidationTokenWith(o ValidationTokenOptions) string {
	if o.Audience == "" {
		o.Audience = s.opts.ClientID
	}
	if o.Caller == "" {
		o.Caller = GraphChangeTrackingAppID
	}
	if o.TenantID == "" {
		o.TenantID = s.opts.TenantID
	}
	if o.Version == "" {
		o.Version = "1.0"
	}
	now := s.now()
	iat, exp := now, now.Add(time.Hour)
	if o.Expired {
		iat, exp = now.Add(-2*time.Hour), now.Add(-time.Hour)
	}
	claims := map[string]any{
		"aud": o.Audience, "iat": iat.Unix(), "nbf": iat.Unix(), "exp": exp.Unix(),
		"tid": o.TenantID, "ver": o.Version, "idtyp": "app", "oid": newGUID(), "sub": newGUID(),
	}
	if o.Version == "2.0" {
		claims["iss"] = s.issuerV2(o.TenantID)
		claims["azp"] = o.Caller
		claims["azpacr"] = "2"
	} else {
		claims["iss"] = accessTokenIssuer(o.TenantID)
		claims["appid"] = o.Caller
		claims["appidacr"] = "2"
	}
	if o.Issuer != "" {
		claims["iss"] = o.Issuer
	}
	kid := s.key.kid
	if o.KeyID != "" {
		kid = o.KeyID
	}
	tok := signJWT(s.key.priv, map[string]any{"typ": "JWT", "alg": "RS256", "x5t": kid, "kid": kid}, claims)
	if o.BadSignature {
		parts := strings.Split(tok, ".")
		claims["aud"] = o.Audience + " "
		c, _ := json.Marshal(claims)
		tok = parts[0] + "." + b64.EncodeToString(c) + "." + parts[2]
	}
	return tok
}

// SigningKey returns the public key and kid the double signs tokens with (also published as JWKS).
func (s *Server) SigningKey() (*rsa.PublicKey, string) {
	return &s.key.priv.PublicKey, s.key.kid
}

// JWKSURL is the double's key set, URL()+"/common/discovery/v2.0/keys".
func (s *Server) JWKSURL() string { return s.URL() + "/common/discovery/v2.0/keys" }
