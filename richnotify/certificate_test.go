package richnotify

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"testing"
	"time"
)

func opensslMaterial(t *testing.T) (keyPKCS8, keyPKCS1, certPEM string, at time.Time) {
	t.Helper()
	keyPKCS8 = readFile(t, "testdata/openssl/key-pkcs8.pem")
	keyPKCS1 = readFile(t, "testdata/openssl/key-pkcs1.pem")
	certPEM = readFile(t, "testdata/openssl/certificate.pem")
	return keyPKCS8, keyPKCS1, certPEM, notBefore(certPEM).Add(time.Hour)
}

// TestParseCertificateForms reads every form an app setting can hold and checks each yields the same
// certificate, whose thumbprint is the one openssl computed for the vectors.
func TestParseCertificateForms(t *testing.T) {
	k8, k1, cert, at := opensslMaterial(t)
	wantThumb := readVector(t, "testdata/openssl/valid-channel-message.json").EncryptedContent.EncryptionCertificateThumbprint
	forms := map[string]string{
		"PEM, PKCS#8 key first":             k8 + cert,
		"PEM, certificate first":            cert + "\n" + k8,
		"PEM, PKCS#1 key":                   k1 + cert,
		"PEM with CRLF and indentation":     strings.ReplaceAll("  "+cert+k8+"  ", "\n", "\r\n"),
		"PKCS#12 unencrypted, base64":       readFile(t, "testdata/openssl/certificate-nopbe.p12.b64"),
		"PKCS#12 OpenSSL 3 default, base64": readFile(t, "testdata/openssl/certificate.p12.b64"),
		"PKCS#12 base64 wrapped at 76":      wrap(readFile(t, "testdata/openssl/certificate.p12.b64"), 76),
	}
	for name, setting := range forms {
		t.Run(name, func(t *testing.T) {
			c, err := ParseCertificate("openssl-cert", setting, at)
			if err != nil {
				t.Fatal(err)
			}
			if c.Thumbprint() != wantThumb {
				t.Errorf("thumbprint %s, want %s", c.Thumbprint(), wantThumb)
			}
			if c.ID() != "openssl-cert" || c.Bits() != 2048 {
				t.Errorf("id %q, %d bits", c.ID(), c.Bits())
			}
			d, _ := NewDecryptor(c)
			if _, err := d.Decrypt(readVector(t, "testdata/openssl/valid-unicode.json").EncryptedContent); err != nil {
				t.Errorf("the parsed key does not open a vector: %v", err)
			}
		})
	}
	// The public part is the DER certificate itself, as the Graph vectors' certificate.der.b64 carries it.
	g := mustDecryptor(t, graphVectors).byID["vector-cert"]
	if got, want := g.PublicBase64(), strings.TrimSpace(readFile(t, "testdata/graph-vectors/certificate.der.b64")); got != want {
		t.Errorf("PublicBase64 is not the certificate's DER:\n%s\nwant\n%s", got, want)
	}
	if got := g.Thumbprint(); got != readVector(t, "testdata/graph-vectors/valid.json").EncryptedContent.EncryptionCertificateThumbprint {
		t.Errorf("thumbprint %s differs from the one the Graph vectors carry", got)
	}
}

func wrap(s string, n int) string {
	s = strings.TrimSpace(s)
	var b strings.Builder
	for len(s) > n {
		b.WriteString(s[:n] + "\n")
		s = s[n:]
	}
	return b.String() + s
}

// selfSigned makes a certificate for key valid from nb to na.
func selfSigned(t *testing.T, key any, nb, na time.Time) *x509.Certificate {
	t.Helper()
	var pub any
	switch k := key.(type) {
	case *rsa.PrivateKey:
		pub = &k.PublicKey
	case *ecdsa.PrivateKey:
		pub = &k.PublicKey
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "richnotify-test"}, NotBefore: nb, NotAfter: na}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func pemOf(t *testing.T, key any, cert *x509.Certificate) string {
	t.Helper()
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})) +
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))
}

func TestParseCertificateRefusals(t *testing.T) {
	k8, _, cert, at := opensslMaterial(t)
	otherKey := readFile(t, "testdata/graph-vectors/certificate-and-key.pem")
	otherKey = otherKey[:strings.Index(otherKey, "-----BEGIN CERTIFICATE")]
	nb, na := at.Add(-time.Hour), at.Add(24*time.Hour)

	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, _ := x509.MarshalECPrivateKey(ec)

	tests := []struct {
		name    string
		setting string
		at      time.Time
		code    CertCode
	}{
		{"empty", "  ", at, CertUnreadable},
		{"neither PEM nor base64", "not a certificate", at, CertUnreadable},
		{"base64 of something else", base64.StdEncoding.EncodeToString([]byte("hello")), at, CertUnreadable},
		{"PKCS#12 with a password", readFile(t, "testdata/openssl/certificate-password.p12.b64"), at, CertEncrypted},
		{"key only", k8, at, CertNoCertificate},
		{"certificate only", cert, at, CertNoKey},
		{"key of another certificate", otherKey + cert, at, CertKeyMismatch},
		{"expired", k8 + cert, notBefore(cert).AddDate(11, 0, 0), CertExpired},
		{"not yet valid", k8 + cert, notBefore(cert).Add(-time.Minute), CertNotYetValid},
		{"ECDSA", pemOf(t, ec, selfSigned(t, ec, nb, na)), at, CertNotRSA},
		{"SEC 1 EC key", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})) + cert, at, CertNotRSA},
		{"RSA-1024", pemOf(t, small, selfSigned(t, small, nb, na)), at, CertKeySize},
		{"encrypted PKCS#8", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n" + cert, at, CertEncrypted},
		{"two keys", k8 + k8 + cert, at, CertUnreadable},
		{"a corrupt key block", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n" + cert, at, CertUnreadable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseCertificate("id", tt.setting, tt.at)
			var ce *CertificateError
			if !errors.As(err, &ce) || ce.Code != tt.code {
				t.Fatalf("ParseCertificate = %v, %v; want code %q", c, err, tt.code)
			}
			if !errors.Is(err, &CertificateError{Code: tt.code}) {
				t.Error("errors.Is does not match the sentinel")
			}
			noKeyMaterial(t, err.Error())
		})
	}
	for _, id := range []string{"", strings.Repeat("x", 129)} {
		if _, err := ParseCertificate(id, k8+cert, at); !errors.Is(err, ErrCertBadID) {
			t.Errorf("id of %d characters: %v", len(id), err)
		}
	}
}

// TestCertificateChainPicksTheKeysCertificate: a PEM with the chain before the leaf still finds the leaf.
func TestCertificateChainPicksTheKeysCertificate(t *testing.T) {
	k8, _, cert, at := opensslMaterial(t)
	other := readFile(t, "testdata/graph-vectors/certificate-and-key.pem")
	chain := other[strings.Index(other, "-----BEGIN CERTIFICATE"):]
	c, err := ParseCertificate("openssl-cert", chain+k8+cert, at)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(c.X509().Subject.String(), "openssl") {
		t.Errorf("picked %s", c.X509().Subject)
	}
}

// noKeyMaterial fails if s holds any piece of the openssl test key, in PEM, base64 or decimal.
func noKeyMaterial(t *testing.T, s string) {
	t.Helper()
	k8 := readFile(t, "testdata/openssl/key-pkcs8.pem")
	key := mustParseKey(t, k8)
	// The PEM's early lines encode the public modulus, which the certificate carries too: look for its
	// later lines, the private exponent and the primes.
	lines := strings.Split(strings.TrimSpace(k8), "\n")
	for _, secret := range []string{
		lines[len(lines)-3], lines[len(lines)-6], lines[len(lines)/2+2],
		key.D.String()[:24], key.Primes[0].String()[:24], key.Primes[1].String()[:24],
		fmt.Sprintf("%x", key.D.Bytes()[:12]),
		base64.StdEncoding.EncodeToString(key.D.Bytes())[:24],
	} {
		if strings.Contains(s, secret) {
			t.Fatalf("key material in output: %s", s)
		}
	}
}

func mustParseKey(t *testing.T, k8 string) *rsa.PrivateKey {
	t.Helper()
	b, _ := pem.Decode([]byte(k8))
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(*rsa.PrivateKey)
}

// TestCertificateNeverShowsItsKey prints, logs and marshals a Certificate (and a struct holding one) every
// way a caller might, and finds no key material.
func TestCertificateNeverShowsItsKey(t *testing.T) {
	k8, _, cert, at := opensslMaterial(t)
	c, err := ParseCertificate("openssl-cert", k8+cert, at)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := NewDecryptor(c)
	holder := struct {
		C *Certificate
		V Certificate
		D *Decryptor
	}{c, *c, d}

	var out bytes.Buffer
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%d", "%x", "%q"} {
		fmt.Fprintf(&out, verb+"\n", c)
		fmt.Fprintf(&out, verb+"\n", *c)
		fmt.Fprintf(&out, verb+"\n", holder)
		fmt.Fprintf(&out, verb+"\n", d)
	}
	for _, h := range []slog.Handler{slog.NewJSONHandler(&out, nil), slog.NewTextHandler(&out, nil)} {
		slog.New(h).Info("loaded", "cert", c, "value", *c, "holder", holder)
	}
	j, err := json.Marshal(holder)
	if err != nil {
		t.Fatal(err)
	}
	out.Write(j)
	noKeyMaterial(t, out.String())
	if !strings.Contains(out.String(), c.Thumbprint()) || !strings.Contains(string(j), c.PublicBase64()) {
		t.Error("the public facts are missing from the output")
	}
}

// TestReadCertificateLeavesTheDatesToValidAt: a previous certificate past its notAfter is still read, to
// open what Graph encrypted for it; ValidAt then says it has expired.
func TestReadCertificateLeavesTheDatesToValidAt(t *testing.T) {
	k8, _, cert, _ := opensslMaterial(t)
	late := notBefore(cert).AddDate(11, 0, 0)
	c, err := ReadCertificate("old", k8+cert)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ValidAt(late); !errors.Is(err, ErrCertExpired) {
		t.Errorf("ValidAt(11 years on) = %v, want %v", err, ErrCertExpired)
	}
	if err := c.ValidAt(notBefore(cert).Add(time.Minute)); err != nil {
		t.Errorf("ValidAt(within) = %v", err)
	}
	if _, err := ReadCertificate("old", cert); !errors.Is(err, ErrCertNoKey) {
		t.Errorf("ReadCertificate still checks the rest: %v", err)
	}
}
