package identity

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

const (
	testTenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	testClient = "3f1b1c3e-0000-4000-8000-000000000001"
	graphScope = "https://graph.microsoft.com/.default"
)

// tokenServer is a minimal Entra ID and App Service managed identity endpoint over TLS. It records the
// requests it sees so tests can assert what azidentity/MSAL sent and how often.
type tokenServer struct {
	*httptest.Server
	t *testing.T

	mu       sync.Mutex
	counts   map[string]int
	lastForm map[string][]string
	lastMI   *http.Request
}

func newTokenServer(t *testing.T) *tokenServer {
	ts := &tokenServer{t: t, counts: map[string]int{}}
	mux := http.NewServeMux()
	// MSAL with instance discovery off reads the tenant's OpenID configuration; the issuer's host must
	// match the authority host it was given (here the request's Host, so example.com aliases work).
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		ts.count("openid")
		base := "https://" + r.Host + "/" + r.PathValue("tenant")
		writeJSON(w, map[string]any{
			"token_endpoint":         base + "/oauth2/v2.0/token",
			"authorization_endpoint": base + "/oauth2/v2.0/authorize",
			"issuer":                 base + "/v2.0",
		})
	})
	mux.HandleFunc("POST /{tenant}/oauth2/v2.0/token", func(w http.ResponseWriter, r *http.Request) {
		n := ts.count("token")
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ts.mu.Lock()
		ts.lastForm = r.PostForm
		ts.mu.Unlock()
		if r.PathValue("tenant") != testTenant {
			w.WriteHeader(http.StatusBadRequest)
			writeJSON(w, map[string]any{"error": "invalid_request", "error_description": "AADSTS90002: Tenant not found."})
			return
		}
		writeJSON(w, map[string]any{"token_type": "Bearer", "access_token": fmt.Sprintf("app-token-%d", n),
			"expires_in": 3600, "ext_expires_in": 3600})
	})
	// App Service managed identity (2019-08-01): GET $IDENTITY_ENDPOINT?api-version&resource[&client_id]
	// with the X-IDENTITY-HEADER secret; expires_on is a string of Unix seconds.
	mux.HandleFunc("GET /msi/token", func(w http.ResponseWriter, r *http.Request) {
		n := ts.count("mi")
		ts.mu.Lock()
		ts.lastMI = r.Clone(r.Context())
		ts.mu.Unlock()
		if r.Header.Get("X-IDENTITY-HEADER") != "identity-header-secret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		q := r.URL.Query()
		writeJSON(w, map[string]any{"access_token": fmt.Sprintf("mi-token-%d", n),
			"expires_on": strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10),
			"resource":   q.Get("resource"), "token_type": "Bearer", "client_id": q.Get("client_id")})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("unexpected request %s %s", r.Method, r.URL)
		http.NotFound(w, r)
	})
	ts.Server = httptest.NewTLSServer(mux)
	t.Cleanup(ts.Close)
	return ts
}

func (ts *tokenServer) count(name string) int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.counts[name]++
	return ts.counts[name]
}

func (ts *tokenServer) seen(name string) int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.counts[name]
}

func (ts *tokenServer) form() map[string][]string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.lastForm
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// getTwice fetches a Graph token twice and checks the credential served the second from its cache.
func getTwice(t *testing.T, cred azcore.TokenCredential) azcore.AccessToken {
	t.Helper()
	var first azcore.AccessToken
	for i := range 2 {
		tk, err := cred.GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{graphScope}})
		if err != nil {
			t.Fatalf("GetToken #%d: %v", i+1, err)
		}
		if i == 0 {
			first = tk
		} else if tk.Token != first.Token {
			t.Errorf("second GetToken returned %q, want the cached %q", tk.Token, first.Token)
		}
	}
	return first
}

func logger(b *bytes.Buffer) *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

func TestClientSecretCredential(t *testing.T) {
	ts := newTokenServer(t)
	var logs bytes.Buffer
	const secret = "super-secret-value~123"
	cred, err := NewGraphCredential(Settings{TenantID: testTenant, ClientID: testClient, ClientSecret: secret,
		AuthorityHost: ts.URL}, Options{Transport: ts.Client(), Logger: logger(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	tk := getTwice(t, cred)
	if tk.Token != "app-token-1" {
		t.Errorf("token = %q", tk.Token)
	}
	if n := ts.seen("token"); n != 1 {
		t.Errorf("token endpoint called %d times, want 1 (the token must be cached)", n)
	}
	f := ts.form()
	for k, want := range map[string]string{"grant_type": "client_credentials", "client_id": testClient, "client_secret": secret} {
		if got := strings.Join(f[k], ","); got != want {
			t.Errorf("form %s = %q, want %q", k, got, want)
		}
	}
	if got := strings.Join(f["scope"], " "); !strings.Contains(got, graphScope) {
		t.Errorf("scope = %q, want it to contain %s", got, graphScope)
	}
	out := logs.String()
	if strings.Count(out, "Graph credential") != 1 || !strings.Contains(out, "instance discovery off: loopback authority") {
		t.Errorf("want one Info line naming the credential and authority, got:\n%s", out)
	}
	if strings.Contains(out, secret) {
		t.Errorf("the log contains the client secret:\n%s", out)
	}
}

func TestClientCertificateCredential(t *testing.T) {
	ts := newTokenServer(t)
	var logs bytes.Buffer
	cred, err := NewGraphCredential(Settings{TenantID: testTenant, ClientID: testClient,
		CertificatePath: "testdata/certificate_encrypted_key.pfx", CertificatePassword: "password",
		AuthorityHost: ts.URL}, Options{Transport: ts.Client(), Logger: logger(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	getTwice(t, cred)
	if n := ts.seen("token"); n != 1 {
		t.Errorf("token endpoint called %d times, want 1", n)
	}
	f := ts.form()
	if got := strings.Join(f["client_assertion_type"], ""); got != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
		t.Errorf("client_assertion_type = %q", got)
	}
	if len(strings.Split(strings.Join(f["client_assertion"], ""), ".")) != 3 {
		t.Errorf("client_assertion is not a JWT: %q", f["client_assertion"])
	}
	if _, ok := f["client_secret"]; ok {
		t.Error("a certificate credential sent client_secret")
	}
	if strings.Contains(logs.String(), "password") {
		t.Errorf("the log contains the certificate password:\n%s", logs.String())
	}
}

// TestExplicitDisableInstanceDiscovery uses a non-loopback authority (example.com, which the httptest
// client routes to the server): only the explicit setting keeps MSAL from asking login.microsoftonline.com.
func TestExplicitDisableInstanceDiscovery(t *testing.T) {
	ts := newTokenServer(t)
	s := Settings{TenantID: testTenant, ClientID: testClient, ClientSecret: "s",
		AuthorityHost: "https://login.example.com/", DisableInstanceDiscovery: true}
	if d := Describe(s); !strings.Contains(d, "instance discovery off: AZURE_DISABLE_INSTANCE_DISCOVERY") {
		t.Errorf("Describe = %q", d)
	}
	cred, err := NewGraphCredential(s, Options{Transport: ts.Client(), Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	getTwice(t, cred)
	if ts.seen("openid") == 0 || ts.seen("token") != 1 {
		t.Errorf("openid %d, token %d", ts.seen("openid"), ts.seen("token"))
	}
}

func TestManagedIdentityCredential(t *testing.T) {
	ts := newTokenServer(t)
	// azidentity/MSAL read these from the process environment; the others would select another source.
	t.Setenv("IDENTITY_ENDPOINT", ts.URL+"/msi/token")
	t.Setenv("IDENTITY_HEADER", "identity-header-secret")
	for _, k := range []string{"IDENTITY_SERVER_THUMBPRINT", "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT"} {
		t.Setenv(k, "")
	}
	var logs bytes.Buffer
	// MSAL caches managed identity tokens process-wide, keyed by client id and resource: a client id unique
	// to this run keeps -count=N (and any other MI test) from being served a cached token.
	clientID := fmt.Sprintf("3f1b1c3e-0000-4000-8000-%012d", time.Now().UnixNano()%1e12)
	cred, err := NewGraphCredential(Settings{TenantID: testTenant, ClientID: clientID},
		Options{Transport: ts.Client(), Logger: logger(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	tk := getTwice(t, cred)
	if tk.Token != "mi-token-1" {
		t.Errorf("token = %q", tk.Token)
	}
	if n := ts.seen("mi"); n != 1 {
		t.Errorf("managed identity endpoint called %d times, want 1", n)
	}
	ts.mu.Lock()
	last := ts.lastMI
	ts.mu.Unlock()
	if last == nil {
		t.Fatal("no request reached the managed identity endpoint")
	}
	q := last.URL.Query()
	// Managed identity endpoints take a v1 resource, not a scope: azidentity strips "/.default".
	for k, want := range map[string]string{"api-version": "2019-08-01", "resource": "https://graph.microsoft.com", "client_id": clientID} {
		if got := q.Get(k); got != want {
			t.Errorf("query %s = %q, want %q", k, got, want)
		}
	}
	if out := logs.String(); !strings.Contains(out, "managed identity (user-assigned, client ID "+clientID+")") ||
		strings.Contains(out, "identity-header-secret") {
		t.Errorf("log:\n%s", out)
	}
}
