package identity_test

// Each kind of credential NewGraphCredential builds, used by the real graph.Client against the
// fakegraph double (Entra ID token endpoint, App Service managed identity endpoint and Graph, all TLS on
// 127.0.0.1): one token is fetched and then reused for every call.

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/identity"
)

const fgSecret = "fakegraph-secret~0123456789"

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func fgCtx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	t.Cleanup(cancel)
	return c
}

// newDouble starts a double with a fresh tenant and app id. The fresh app id matters for managed
// identity: MSAL keeps MI tokens in a process-wide cache keyed by client id and resource, so a
// reused id would be served an earlier test's token without a request (also across -count runs).
func newDouble(t *testing.T, mod func(*fakegraph.Options)) *fakegraph.Server {
	t.Helper()
	o := fakegraph.NewOptions("", "", fgSecret)
	if mod != nil {
		mod(&o)
	}
	fg := fakegraph.New(o)
	t.Cleanup(fg.Close)
	return fg
}

// exercise makes several Graph calls (the first ones concurrently) with one Client on cred.
func exercise(t *testing.T, fg *fakegraph.Server, cred azcore.TokenCredential) {
	t.Helper()
	c, err := graph.NewClient(cred, graph.ClientOptions{BaseURL: fg.GraphBaseURL(), Transport: fg.Client(), Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	fg.AddUser(fakegraph.User{ID: "u1", Props: map[string]any{"displayName": "Ada"}})
	ctx := fgCtx(t)
	before := fg.Count("", "/v1.0/")
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			if u, err := c.GetObject(ctx, "users", "u1", []string{"displayName"}); err != nil || u["displayName"] != "Ada" {
				t.Errorf("GetUser: %v, %v", u, err)
			}
		})
	}
	wg.Wait()
	if _, err := c.ListSubscriptions(ctx); err != nil {
		t.Errorf("ListSubscriptions: %v", err)
	}
	if res, err := c.GetObjects(ctx, "users", []string{"u1", "nobody"}, nil); err != nil || res.Items[0].Err != nil ||
		!errors.Is(res.Items[1].Err, graph.ErrNotFound) {
		t.Errorf("GetObjects: %+v, %v", res, err)
	}
	if _, err := c.DeltaStart(ctx, "users", nil, true); err != nil {
		t.Errorf("DeltaStart: %v", err)
	}
	if n := fg.Count("", "/v1.0/") - before; n != 8 {
		t.Errorf("%d Graph requests, want 8", n)
	}
}

func tokenEndpointHits(fg *fakegraph.Server) int {
	return fg.Count(http.MethodPost, "/"+fg.TenantID()+"/oauth2/v2.0/token")
}

func miEndpointHits(fg *fakegraph.Server) int { return fg.Count(http.MethodGet, "/msi/token") }

func TestFakeGraphClientSecretTokenReused(t *testing.T) {
	t.Parallel()
	fg := newDouble(t, nil)
	s := identity.Settings{TenantID: fg.TenantID(), ClientID: fg.ClientID(), ClientSecret: fgSecret, AuthorityHost: fg.AuthorityHost()}
	if k := identity.Select(s); k != identity.KindClientSecret {
		t.Fatalf("Select = %v", k)
	}
	cred, err := identity.NewGraphCredential(s, identity.Options{Transport: fg.Client(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	exercise(t, fg, cred)
	if n, m := tokenEndpointHits(fg), miEndpointHits(fg); n != 1 || m != 0 {
		t.Errorf("token endpoint hit %d times (MI endpoint %d), want once", n, m)
	}
	if n := fg.Count("", "/common/discovery/instance"); n != 0 {
		t.Errorf("instance discovery ran %d times for a loopback authority", n)
	}
}

// testCert is a self-signed RSA certificate and its key, made once per process (key generation is the
// slow part, and the double registers the certificate per test anyway).
var testCert = sync.OnceValues(func() (*x509.Certificate, *rsa.PrivateKey) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "graph-webhooks test app"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return cert, key
})

// writePEM writes the certificate and its PKCS#8 key to one PEM file, as AZURE_CLIENT_CERTIFICATE_PATH takes it.
func writePEM(t *testing.T, cert *x509.Certificate, key *rsa.PrivateKey) string {
	t.Helper()
	k, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	b = append(b, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k})...)
	p := filepath.Join(t.TempDir(), "app.pem")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFakeGraphClientCertificateTokenReused(t *testing.T) {
	t.Parallel()
	cert, key := testCert()
	fg := newDouble(t, func(o *fakegraph.Options) { o.ClientSecret, o.ClientCert = "", cert })
	s := identity.Settings{TenantID: fg.TenantID(), ClientID: fg.ClientID(), CertificatePath: writePEM(t, cert, key),
		AuthorityHost: fg.AuthorityHost()}
	if k := identity.Select(s); k != identity.KindClientCertificate {
		t.Fatalf("Select = %v", k)
	}
	cred, err := identity.NewGraphCredential(s, identity.Options{Transport: fg.Client(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	exercise(t, fg, cred)
	if n, m := tokenEndpointHits(fg), miEndpointHits(fg); n != 1 || m != 0 {
		t.Errorf("token endpoint hit %d times (MI endpoint %d), want once", n, m)
	}
	for _, r := range fg.Requests() {
		if strings.HasSuffix(r.Path, "/oauth2/v2.0/token") &&
			(!strings.Contains(string(r.Body), "client_assertion=") || strings.Contains(string(r.Body), "client_secret=")) {
			t.Errorf("token request without a client assertion: %s", r.Body)
		}
	}
}

// TestFakeGraphClientCertificateNotRegistered: a certificate the app does not know is refused by
// Entra ID, which the client reports as unauthorized (not transient).
func TestFakeGraphClientCertificateNotRegistered(t *testing.T) {
	t.Parallel()
	cert, key := testCert()
	other := *cert
	other.Raw = append([]byte(nil), cert.Raw...)
	other.Raw[len(other.Raw)-1] ^= 0xff // a different thumbprint
	fg := newDouble(t, func(o *fakegraph.Options) { o.ClientCert = &other })
	cred, err := identity.NewGraphCredential(identity.Settings{TenantID: fg.TenantID(), ClientID: fg.ClientID(),
		CertificatePath: writePEM(t, cert, key), AuthorityHost: fg.AuthorityHost()},
		identity.Options{Transport: fg.Client(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	c, err := graph.NewClient(cred, graph.ClientOptions{BaseURL: fg.GraphBaseURL(), Transport: fg.Client(), Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ListSubscriptions(fgCtx(t))
	if !errors.Is(err, graph.ErrUnauthorized) {
		t.Fatalf("unregistered certificate: %v (kind %v), want unauthorized", err, graph.KindOf(err))
	}
	var afe *azidentity.AuthenticationFailedError
	if !errors.As(err, &afe) || afe.RawResponse == nil || afe.RawResponse.StatusCode != http.StatusUnauthorized {
		t.Errorf("cause: %v", err)
	}
	if n := fg.Count("", "/v1.0/"); n != 0 {
		t.Errorf("%d Graph requests without a token", n)
	}
}

// setMIEnv points azidentity/MSAL at the double's App Service managed identity endpoint and clears the
// variables that would select another source.
func setMIEnv(t *testing.T, fg *fakegraph.Server, header string) {
	t.Setenv("IDENTITY_ENDPOINT", fg.ManagedIdentityEndpoint())
	t.Setenv("IDENTITY_HEADER", header)
	for _, k := range []string{"IDENTITY_SERVER_THUMBPRINT", "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT"} {
		t.Setenv(k, "")
	}
}

// Not parallel: t.Setenv.
func TestFakeGraphManagedIdentityTokenReused(t *testing.T) {
	fg := newDouble(t, nil)
	setMIEnv(t, fg, fg.ManagedIdentityHeader())
	// User-assigned with the double's (fresh) client id; the Client's scope is the double's own URL, so
	// the (client id, resource) key of MSAL's process-wide cache is new: see newDouble.
	s := identity.Settings{ClientID: fg.ClientID()}
	if k := identity.Select(s); k != identity.KindManagedIdentity {
		t.Fatalf("Select = %v", k)
	}
	cred, err := identity.NewGraphCredential(s, identity.Options{Transport: fg.Client(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	exercise(t, fg, cred)
	if n, m := miEndpointHits(fg), tokenEndpointHits(fg); n != 1 || m != 0 {
		t.Errorf("MI endpoint hit %d times (token endpoint %d), want once", n, m)
	}
	// A second credential in the same process is served from MSAL's process-wide cache: no request.
	cred2, err := identity.NewGraphCredential(s, identity.Options{Transport: fg.Client(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	exercise(t, fg, cred2)
	if n := miEndpointHits(fg); n != 1 {
		t.Errorf("MI endpoint hit %d times after a second credential, want still 1 (process-wide cache)", n)
	}
}

// Not parallel: t.Setenv.
func TestFakeGraphManagedIdentityWrongHeader(t *testing.T) {
	fg := newDouble(t, nil)
	setMIEnv(t, fg, "not-the-header")
	cred, err := identity.NewGraphCredential(identity.Settings{ClientID: fg.ClientID()},
		identity.Options{Transport: fg.Client(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	c, err := graph.NewClient(cred, graph.ClientOptions{BaseURL: fg.GraphBaseURL(), Transport: fg.Client(), Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ListSubscriptions(fgCtx(t))
	if !errors.Is(err, graph.ErrUnauthorized) {
		t.Fatalf("wrong IDENTITY_HEADER: %v (kind %v), want unauthorized", err, graph.KindOf(err))
	}
	if n := fg.Count("", "/v1.0/"); n != 0 {
		t.Errorf("%d Graph requests without a token", n)
	}
}
