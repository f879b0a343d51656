package identity

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSelect(t *testing.T) {
	tests := []struct {
		name string
		s    Settings
		want Kind
	}{
		{"secret", Settings{ClientSecret: "x"}, KindClientSecret},
		{"secret wins over certificate", Settings{ClientSecret: "x", CertificatePath: "c.pem"}, KindClientSecret},
		{"certificate", Settings{CertificatePath: "c.pem", CertificatePassword: "p"}, KindClientCertificate},
		{"nothing: managed identity", Settings{}, KindManagedIdentity},
		{"client id only: user-assigned managed identity", Settings{ClientID: "abc"}, KindManagedIdentity},
		{"password alone is not a certificate", Settings{CertificatePassword: "p"}, KindManagedIdentity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Select(tt.s); got != tt.want {
				t.Errorf("Select = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestIsLoopback(t *testing.T) {
	tests := map[string]bool{
		"https://127.0.0.1:8443/":           true,
		"https://127.1.2.3/":                true,
		"https://[::1]:9000/":               true,
		"https://localhost/":                true,
		"https://LOCALHOST:443/":            true,
		"https://login.microsoftonline.com": false,
		"https://login.microsoftonline.us/": false,
		"https://128.0.0.1/":                false,
		"https://10.0.0.1/":                 false,
		"https://localhost.example.com/":    false,
		"https://[::2]/":                    false,
		"https://127.0.0.1.nip.io/":         false,
	}
	for in, want := range tests {
		if got := isLoopback(in); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestDescribe(t *testing.T) {
	tests := []struct {
		s    Settings
		want string
	}{
		{Settings{TenantID: "t", ClientID: "app", ClientSecret: "hunter2"},
			"client secret for app app at https://login.microsoftonline.com/ (instance discovery on)"},
		{Settings{TenantID: "t", ClientID: "app", ClientSecret: "hunter2", AuthorityHost: "https://127.0.0.1:8443"},
			"client secret for app app at https://127.0.0.1:8443/ (instance discovery off: loopback authority)"},
		{Settings{TenantID: "t", ClientID: "app", CertificatePath: "/c.pem", AuthorityHost: "https://login.microsoftonline.us/", DisableInstanceDiscovery: true},
			"client certificate /c.pem for app app at https://login.microsoftonline.us/ (instance discovery off: AZURE_DISABLE_INSTANCE_DISCOVERY)"},
		{Settings{}, "managed identity (system-assigned)"},
		{Settings{ClientID: "mi"}, "managed identity (user-assigned, client ID mi)"},
	}
	for _, tt := range tests {
		got := Describe(tt.s)
		if got != tt.want {
			t.Errorf("Describe = %q\nwant       %q", got, tt.want)
		}
		if strings.Contains(got, "hunter2") {
			t.Errorf("Describe leaks the secret: %q", got)
		}
	}
}

func TestNewGraphCredentialErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		s    Settings
		want string
	}{
		{"secret without tenant", Settings{ClientID: "a", ClientSecret: "s3cret"}, "AZURE_TENANT_ID: required with AZURE_CLIENT_SECRET"},
		{"secret without client", Settings{TenantID: "t", ClientSecret: "s3cret"}, "AZURE_CLIENT_ID: required with AZURE_CLIENT_SECRET"},
		{"certificate without client", Settings{TenantID: "t", CertificatePath: garbage}, "AZURE_CLIENT_ID: required with AZURE_CLIENT_CERTIFICATE_PATH"},
		{"http authority", Settings{TenantID: "t", ClientID: "a", ClientSecret: "s3cret", AuthorityHost: "http://127.0.0.1:1/"}, "AZURE_AUTHORITY_HOST: must be an https URL"},
		{"missing certificate", Settings{TenantID: "t", ClientID: "a", CertificatePath: filepath.Join(dir, "nope.pem")}, "AZURE_CLIENT_CERTIFICATE_PATH: cannot read"},
		{"garbage certificate", Settings{TenantID: "t", ClientID: "a", CertificatePath: garbage, CertificatePassword: "pw-secret"}, "AZURE_CLIENT_CERTIFICATE_PATH: cannot load"},
		{"wrong pfx password", Settings{TenantID: "t", ClientID: "a", CertificatePath: "testdata/certificate_encrypted_key.pfx", CertificatePassword: "wrong"}, "AZURE_CLIENT_CERTIFICATE_PASSWORD"},
		{"pfx without password", Settings{TenantID: "t", ClientID: "a", CertificatePath: "testdata/certificate_encrypted_key.pfx"}, "needs AZURE_CLIENT_CERTIFICATE_PASSWORD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewGraphCredential(tt.s, Options{Logger: discard()})
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			for _, secret := range []string{"s3cret", "pw-secret"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error leaks a secret: %q", err)
				}
			}
		})
	}
}

func TestCertificateFormats(t *testing.T) {
	pemPath := writeTestPEM(t)
	tests := []struct {
		name, path, password string
	}{
		{"PEM", pemPath, ""},
		{"PEM with a stray password", pemPath, "unused"},
		{"PKCS#12 with password", "testdata/certificate_encrypted_key.pfx", "password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewGraphCredential(Settings{TenantID: "t", ClientID: "a", CertificatePath: tt.path,
				CertificatePassword: tt.password}, Options{Logger: discard()})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// writeTestPEM writes a throwaway self-signed certificate and its PKCS#8 key as one PEM file.
func writeTestPEM(t *testing.T) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	_ = pem.Encode(&b, &pem.Block{Type: "PRIVATE KEY", Bytes: pk})
	p := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(p, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
