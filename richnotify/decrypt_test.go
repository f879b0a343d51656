package richnotify

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type vectorFile struct {
	EncryptedContent EncryptedContent `json:"encryptedContent"`
	Expect           string           `json:"expect"`
	Plaintext        json.RawMessage  `json:"plaintext"`
}

func readVector(t testing.TB, path string) vectorFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v vectorFile
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// notBefore reads the first certificate's notBefore from a PEM text: tests judge certificates an hour after
// it, so they pass on any day whatever the certificates' dates.
func notBefore(pemText string) time.Time {
	for rest := []byte(pemText); ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			panic("no certificate in the PEM")
		}
		if blk.Type == "CERTIFICATE" {
			x, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				panic(err)
			}
			return x.NotBefore
		}
	}
}

var graphVectors = sync.OnceValues(func() (*Decryptor, error) {
	pemText, err := os.ReadFile("testdata/graph-vectors/certificate-and-key.pem")
	if err != nil {
		return nil, err
	}
	at := notBefore(string(pemText)).Add(time.Hour)
	c, err := ParseCertificate("vector-cert", string(pemText), at)
	if err != nil {
		return nil, err
	}
	return NewDecryptor(c)
})

var opensslVectors = sync.OnceValues(func() (*Decryptor, error) {
	keyPEM, err1 := os.ReadFile("testdata/openssl/key-pkcs8.pem")
	certPEM, err2 := os.ReadFile("testdata/openssl/certificate.pem")
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	c, err := ParseCertificate("openssl-cert", string(keyPEM)+string(certPEM), notBefore(string(certPEM)).Add(time.Hour))
	if err != nil {
		return nil, err
	}
	return NewDecryptor(c)
})

func mustDecryptor(t testing.TB, f func() (*Decryptor, error)) *Decryptor {
	t.Helper()
	d, err := f()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestGraphVectors opens the vectors made outside the project with Python's cryptography package.
func TestGraphVectors(t *testing.T) {
	d := mustDecryptor(t, graphVectors)
	want := map[string]Code{
		"valid.json":             "",
		"bad-signature.json":     CodeSignature,
		"bad-padding.json":       CodePadding,
		"bad-padding-bytes.json": CodePadding,
	}
	files, _ := filepath.Glob("testdata/graph-vectors/*.json")
	if len(files) != len(want) {
		t.Fatalf("%d vector files, want %d: %v", len(files), len(want), files)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			v := readVector(t, f)
			code, ok := want[filepath.Base(f)]
			if !ok {
				t.Fatalf("no expectation for %s", f)
			}
			got, err := d.Decrypt(v.EncryptedContent)
			checkOutcome(t, v.EncryptedContent, got, err, code)
			if code == "" {
				if v.Expect != "decrypts" {
					t.Fatalf("the file expects %q", v.Expect)
				}
				if !jsonEqual(t, got, v.Plaintext) {
					t.Errorf("plaintext\n%s\nwant\n%s", got, v.Plaintext)
				}
			} else if !strings.HasPrefix(v.Expect, "refused") {
				t.Fatalf("the file expects %q", v.Expect)
			}
		})
	}
}

// TestOpenSSLVectors opens the vectors testdata/openssl/make-vectors.sh made with the openssl command line.
func TestOpenSSLVectors(t *testing.T) {
	d := mustDecryptor(t, opensslVectors)
	files, _ := filepath.Glob("testdata/openssl/*.json")
	if len(files) < 15 {
		t.Fatalf("only %d openssl vectors", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			v := readVector(t, f)
			got, err := d.Decrypt(v.EncryptedContent)
			if v.Expect == "decrypts" {
				checkOutcome(t, v.EncryptedContent, got, err, "")
				want := readFile(t, strings.TrimSuffix(f, ".json")+".plain")
				if string(got) != want {
					t.Errorf("plaintext\n%q\nwant\n%q", got, want)
				}
				return
			}
			checkOutcome(t, v.EncryptedContent, got, err, Code(v.Expect))
		})
	}
}

// checkOutcome asserts success (code "") or a refusal with code whose message leaks nothing of the content.
func checkOutcome(t *testing.T, ec EncryptedContent, got json.RawMessage, err error, code Code) {
	t.Helper()
	if code == "" {
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
		return
	}
	var de *DecryptError
	if !errors.As(err, &de) || de.Code != code {
		t.Fatalf("err = %v, want code %q", err, code)
	}
	if got != nil {
		t.Errorf("a refusal returned %d bytes", len(got))
	}
	if !errors.Is(err, &DecryptError{Code: code}) {
		t.Errorf("errors.Is does not match the sentinel for %q", code)
	}
	msg := err.Error()
	for _, secret := range []string{ec.Data, ec.DataKey, ec.DataSignature} {
		if len(secret) > 12 && strings.Contains(msg, secret[:12]) {
			t.Errorf("the error quotes the content: %s", msg)
		}
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var ca, cb bytes.Buffer
	if err := json.Compact(&ca, a); err != nil {
		t.Fatal(err)
	}
	if err := json.Compact(&cb, b); err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ca.Bytes(), cb.Bytes())
}

// TestDecryptChecksBeforeOpening covers the refusals that need no crafted ciphertext: they happen before
// any key is used, or on the envelope around the vectors.
func TestDecryptChecksBeforeOpening(t *testing.T) {
	d := mustDecryptor(t, graphVectors)
	good := readVector(t, "testdata/graph-vectors/valid.json").EncryptedContent
	with := func(f func(*EncryptedContent)) EncryptedContent { c := good; f(&c); return c }
	tests := []struct {
		name string
		ec   EncryptedContent
		code Code
	}{
		{"unknown certificate id", with(func(c *EncryptedContent) { c.EncryptionCertificateID = "another-cert" }), CodeUnknownCertificate},
		{"certificate id in another case", with(func(c *EncryptedContent) { c.EncryptionCertificateID = "VECTOR-CERT" }), CodeUnknownCertificate},
		{"no certificate id", with(func(c *EncryptedContent) { c.EncryptionCertificateID = "" }), CodeMalformed},
		{"thumbprint of another certificate", with(func(c *EncryptedContent) {
			c.EncryptionCertificateThumbprint = "0000000000000000000000000000000000000000"
		}), CodeThumbprint},
		{"no thumbprint", with(func(c *EncryptedContent) { c.EncryptionCertificateThumbprint = "" }), CodeThumbprint},
		{"thumbprint not hex", with(func(c *EncryptedContent) { c.EncryptionCertificateThumbprint = "vector-cert" }), CodeThumbprint},
		{"no data", with(func(c *EncryptedContent) { c.Data = "" }), CodeMalformed},
		{"no dataKey", with(func(c *EncryptedContent) { c.DataKey = "" }), CodeMalformed},
		{"no dataSignature", with(func(c *EncryptedContent) { c.DataSignature = "" }), CodeMalformed},
		{"data not base64", with(func(c *EncryptedContent) { c.Data = "!!" + c.Data[2:] }), CodeMalformed},
		{"dataKey not base64", with(func(c *EncryptedContent) { c.DataKey = "%" + c.DataKey[1:] }), CodeMalformed},
		{"dataSignature not base64", with(func(c *EncryptedContent) { c.DataSignature = "*" }), CodeMalformed},
		{"dataKey of another key", with(func(c *EncryptedContent) {
			c.DataKey = readVector(t, "testdata/openssl/valid-channel-message.json").EncryptedContent.DataKey
		}), CodeDataKey},
		{"signature of another notification", with(func(c *EncryptedContent) {
			c.DataSignature = readVector(t, "testdata/graph-vectors/bad-padding.json").EncryptedContent.DataSignature
		}), CodeSignature},
		{"signature truncated", with(func(c *EncryptedContent) {
			s, _ := base64.StdEncoding.DecodeString(c.DataSignature)
			c.DataSignature = base64.StdEncoding.EncodeToString(s[:16])
		}), CodeSignature},
		{"data too long", with(func(c *EncryptedContent) { c.Data = strings.Repeat("A", DefaultMaxData+4) }), CodeMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := d.Decrypt(tt.ec)
			checkOutcome(t, tt.ec, got, err, tt.code)
		})
	}
	// The thumbprint is compared case-insensitively, and unpadded base64 is read too.
	lower := with(func(c *EncryptedContent) {
		c.EncryptionCertificateThumbprint = strings.ToLower(c.EncryptionCertificateThumbprint)
		c.DataSignature = strings.TrimRight(c.DataSignature, "=")
	})
	if _, err := d.Decrypt(lower); err != nil {
		t.Errorf("lower-case thumbprint, unpadded signature: %v", err)
	}
}

// TestRotationDecryptsUnderEither holds two certificates, as while rotating: each notification opens with
// the one it names, and a notification is never tried against the other.
func TestRotationDecryptsUnderEither(t *testing.T) {
	g := mustDecryptor(t, graphVectors).byID["vector-cert"]
	o := mustDecryptor(t, opensslVectors).byID["openssl-cert"]
	d, err := NewDecryptor(o, g)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"testdata/graph-vectors/valid.json", "testdata/openssl/valid-channel-message.json"} {
		if _, err := d.Decrypt(readVector(t, f).EncryptedContent); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	// Named for the other certificate: refused at the key, not opened with the right one by trial.
	ec := readVector(t, "testdata/openssl/valid-channel-message.json").EncryptedContent
	ec.EncryptionCertificateID, ec.EncryptionCertificateThumbprint = g.ID(), g.Thumbprint()
	if _, err := d.Decrypt(ec); !errors.Is(err, ErrDataKey) {
		t.Errorf("content named for the other certificate: %v, want %v", err, ErrDataKey)
	}
	if _, err := NewDecryptor(g, g); err == nil {
		t.Error("two certificates with one id were accepted")
	}
}

func TestUnpad(t *testing.T) {
	block := func(tail ...byte) []byte {
		b := bytes.Repeat([]byte{'x'}, 16-len(tail))
		return append(b, tail...)
	}
	tests := []struct {
		in   []byte
		n    int
		good bool
	}{
		{block(1), 15, true},
		{block(2, 2), 14, true},
		{bytes.Repeat([]byte{16}, 16), 0, true},
		{append(block(), bytes.Repeat([]byte{16}, 16)...), 16, true},
		{block(0), 0, false},
		{block(17), 0, false},
		{block(255), 0, false},
		{block(1, 2, 2), 14, true},
		{block(3, 2, 3, 3), 0, false},
		{block(3, 3, 2), 0, false},
		{append(bytes.Repeat([]byte{16}, 15), 15), 0, false},
		{nil, 0, false},
		{[]byte{1}, 0, false},
		{append(block(1), 1), 0, false},
	}
	for i, tt := range tests {
		n, ok := unpad(tt.in)
		if ok != tt.good || (ok && n != tt.n) {
			t.Errorf("%d: unpad(% x) = %d, %v; want %d, %v", i, tt.in, n, ok, tt.n, tt.good)
		}
	}
}

func globJSON(dir string) ([]string, error) { return filepath.Glob(filepath.Join(dir, "*.json")) }

// BenchmarkDecrypt is the cost of opening one notification's encryptedContent (RSA-2048 OAEP, HMAC, AES):
// what a Teams notification costs the worker, which makes no Graph request for it.
func BenchmarkDecrypt(b *testing.B) {
	d := mustDecryptor(b, opensslVectors)
	ec := readVector(b, "testdata/openssl/valid-channel-message.json").EncryptedContent
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Decrypt(ec); err != nil {
			b.Fatal(err)
		}
	}
}
