package richnotify

import (
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"software.sslmate.com/src/go-pkcs12"
)

// Graph's bounds on an encryption certificate's RSA key.
const (
	MinKeyBits = 2048
	MaxKeyBits = 4096
)

// CertCode names why a certificate setting was refused.
type CertCode string

// The failures ParseCertificate and NewCertificate report.
const (
	CertUnreadable    CertCode = "unreadable"     // neither PEM nor base64 PKCS#12, or a part does not parse
	CertEncrypted     CertCode = "encrypted"      // an encrypted PEM key or a PKCS#12 with a password
	CertNoKey         CertCode = "no-key"         // no private key in the setting
	CertNoCertificate CertCode = "no-certificate" // no certificate in the setting
	CertNotRSA        CertCode = "not-rsa"        // the key or the certificate is not RSA
	CertKeySize       CertCode = "key-size"       // the RSA key is outside 2,048–4,096 bits
	CertExpired       CertCode = "expired"        // the certificate's notAfter has passed
	CertNotYetValid   CertCode = "not-yet-valid"  // the certificate's notBefore is still ahead
	CertKeyMismatch   CertCode = "key-mismatch"   // the private key is not the certificate's
	CertBadID         CertCode = "bad-id"         // the id is empty or longer than Graph takes
)

// CertificateError is every failure of ParseCertificate and NewCertificate. Detail never holds key material.
type CertificateError struct {
	Code   CertCode
	Detail string
}

func (e *CertificateError) Error() string {
	return "richnotify: encryption certificate refused (" + string(e.Code) + "): " + e.Detail
}

// Is makes errors.Is(err, ErrCertExpired) and the like match any CertificateError with that Code.
func (e *CertificateError) Is(target error) bool {
	t, ok := target.(*CertificateError)
	return ok && t.Code == e.Code && t.Detail == ""
}

// Sentinels for errors.Is, one per CertCode.
var (
	ErrCertUnreadable    = &CertificateError{Code: CertUnreadable}
	ErrCertEncrypted     = &CertificateError{Code: CertEncrypted}
	ErrCertNoKey         = &CertificateError{Code: CertNoKey}
	ErrCertNoCertificate = &CertificateError{Code: CertNoCertificate}
	ErrCertNotRSA        = &CertificateError{Code: CertNotRSA}
	ErrCertKeySize       = &CertificateError{Code: CertKeySize}
	ErrCertExpired       = &CertificateError{Code: CertExpired}
	ErrCertNotYetValid   = &CertificateError{Code: CertNotYetValid}
	ErrCertKeyMismatch   = &CertificateError{Code: CertKeyMismatch}
	ErrCertBadID         = &CertificateError{Code: CertBadID}
)

func certErr(code CertCode, format string, args ...any) error {
	return &CertificateError{Code: code, Detail: fmt.Sprintf(format, args...)}
}

// maxIDLength is Graph's limit on encryptionCertificateId.
const maxIDLength = 128

// privateKey keeps the RSA private key out of every printed, logged or marshalled form, even when a
// caller formats a Certificate's fields by reflection.
type privateKey struct{ k *rsa.PrivateKey }

func (privateKey) Format(f fmt.State, _ rune)   { fmt.Fprint(f, "[private key redacted]") }
func (privateKey) LogValue() slog.Value         { return slog.StringValue("[private key redacted]") }
func (privateKey) MarshalJSON() ([]byte, error) { return []byte(`"[private key redacted]"`), nil }
func (privateKey) MarshalText() ([]byte, error) { return []byte("[private key redacted]"), nil }
func (privateKey) GobEncode() ([]byte, error) {
	return nil, errors.New("richnotify: a private key is not encoded")
}
func (privateKey) String() string                    { return "[private key redacted]" }
func (privateKey) GoString() string                  { return "[private key redacted]" }
func (p privateKey) matches(pub *rsa.PublicKey) bool { return p.k.PublicKey.Equal(pub) }
func (p privateKey) bits() int                       { return p.k.N.BitLen() }
func (p privateKey) valid() bool                     { return p.k.Validate() == nil }

// Certificate is an encryption certificate with its private key, under the id subscriptions name it by
// (encryptionCertificateId). Printed, logged or marshalled it shows its public facts only: id, subject,
// thumbprint, validity. The private key never leaves it except to decrypt.
type Certificate struct {
	id         string
	cert       *x509.Certificate
	key        privateKey
	thumbprint string // uppercase hex SHA-1 of the DER certificate
}

// ID is the label subscriptions carry as encryptionCertificateId.
func (c *Certificate) ID() string { return c.id }

// PublicBase64 is the certificate alone (DER, base64): what a subscription's encryptionCertificate carries.
func (c Certificate) PublicBase64() string { return base64.StdEncoding.EncodeToString(c.cert.Raw) }

// Thumbprint is the hex SHA-1 of the DER certificate, uppercase, as Graph sends
// encryptionCertificateThumbprint.
func (c *Certificate) Thumbprint() string { return c.thumbprint }

// NotAfter is when the certificate expires.
func (c *Certificate) NotAfter() time.Time { return c.cert.NotAfter }

// X509 returns the parsed certificate (public data only).
func (c *Certificate) X509() *x509.Certificate { return c.cert }

// Bits is the size of the RSA key.
func (c *Certificate) Bits() int { return c.key.bits() }

// String shows the public facts only.
func (c Certificate) String() string {
	if c.cert == nil {
		return "richnotify.Certificate(nil)"
	}
	return fmt.Sprintf("richnotify.Certificate{id: %q, subject: %q, thumbprint: %s, notAfter: %s}",
		c.id, c.cert.Subject.String(), c.thumbprint, c.cert.NotAfter.UTC().Format(time.RFC3339))
}

// Format prints String for every verb, so %#v and %+v show no more than %v.
func (c Certificate) Format(f fmt.State, _ rune) { fmt.Fprint(f, c.String()) }

// LogValue logs the public facts only.
func (c Certificate) LogValue() slog.Value {
	if c.cert == nil {
		return slog.StringValue("nil")
	}
	return slog.GroupValue(
		slog.String("id", c.id),
		slog.String("subject", c.cert.Subject.String()),
		slog.String("thumbprint", c.thumbprint),
		slog.Time("notAfter", c.cert.NotAfter),
	)
}

// MarshalJSON marshals the public facts, the certificate itself included (base64 DER), never the key.
func (c Certificate) MarshalJSON() ([]byte, error) {
	if c.cert == nil {
		return []byte("null"), nil
	}
	return json.Marshal(struct {
		ID          string    `json:"id"`
		Subject     string    `json:"subject"`
		Thumbprint  string    `json:"thumbprint"`
		NotAfter    time.Time `json:"notAfter"`
		Certificate string    `json:"certificate"`
	}{c.id, c.cert.Subject.String(), c.thumbprint, c.cert.NotAfter.UTC(), c.PublicBase64()})
}

// NewCertificate checks a certificate and its private key as ParseCertificate does and labels them id.
func NewCertificate(id string, cert *x509.Certificate, key any, now time.Time) (*Certificate, error) {
	c, err := newCertificate(id, cert, key)
	if err != nil {
		return nil, err
	}
	if err := c.ValidAt(now); err != nil {
		return nil, err
	}
	return c, nil
}

func newCertificate(id string, cert *x509.Certificate, key any) (*Certificate, error) {
	if id == "" || len(id) > maxIDLength {
		return nil, certErr(CertBadID, "the certificate id must be 1 to %d characters, got %d", maxIDLength, len(id))
	}
	if cert == nil {
		return nil, certErr(CertNoCertificate, "no certificate")
	}
	if key == nil {
		return nil, certErr(CertNoKey, "no private key")
	}
	rk, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, certErr(CertNotRSA, "the private key is %s, not RSA (Graph encrypts for RSA keys only)", keyKind(key))
	}
	pk := privateKey{rk}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, certErr(CertNotRSA, "the certificate's key is %s, not RSA", keyKind(cert.PublicKey))
	}
	if b := pk.bits(); b < MinKeyBits || b > MaxKeyBits {
		return nil, certErr(CertKeySize, "the RSA key has %d bits; Graph takes %d to %d", b, MinKeyBits, MaxKeyBits)
	}
	if !pk.matches(pub) {
		return nil, certErr(CertKeyMismatch, "the private key is not the key of certificate %q (thumbprint %s)", cert.Subject.String(), thumbprint(cert))
	}
	if !pk.valid() {
		return nil, certErr(CertUnreadable, "the RSA private key is inconsistent")
	}
	return &Certificate{id: id, cert: cert, key: pk, thumbprint: thumbprint(cert)}, nil
}

// ValidAt reports whether now is within the certificate's validity: a *CertificateError (CertExpired or
// CertNotYetValid) when it is not.
func (c *Certificate) ValidAt(now time.Time) error {
	if now.After(c.cert.NotAfter) {
		return certErr(CertExpired, "certificate %q (thumbprint %s) expired at %s", c.cert.Subject.String(), c.thumbprint, c.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(c.cert.NotBefore) {
		return certErr(CertNotYetValid, "certificate %q (thumbprint %s) is valid from %s", c.cert.Subject.String(), c.thumbprint, c.cert.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

func thumbprint(cert *x509.Certificate) string {
	sum := sha1.Sum(cert.Raw)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

func keyKind(k any) string {
	switch k.(type) {
	case nil:
		return "missing"
	case *rsa.PrivateKey, *rsa.PublicKey:
		return "RSA"
	default:
		name := fmt.Sprintf("%T", k)
		switch {
		case strings.Contains(name, "ecdsa"):
			return "ECDSA"
		case strings.Contains(name, "ed25519"):
			return "Ed25519"
		case strings.Contains(name, "ecdh"):
			return "ECDH"
		}
		return name
	}
}

// ParseCertificate reads an encryption certificate as an app setting holds it and labels it id:
//
//   - PEM: a private key (PKCS#8 "PRIVATE KEY" or PKCS#1 "RSA PRIVATE KEY") and one or more certificates,
//     in any order; the certificate used is the one whose public key is the private key's (a chain may
//     follow it).
//   - base64 of a PKCS#12 (PFX) file without a password: what an App Service Key Vault reference to a
//     certificate delivers.
//
// It is then checked at now: RSA, 2,048 to 4,096 bits, within its validity, key and certificate a pair.
// Errors are *CertificateError and name no key material.
func ParseCertificate(id, setting string, now time.Time) (*Certificate, error) {
	c, err := ReadCertificate(id, setting)
	if err != nil {
		return nil, err
	}
	if err := c.ValidAt(now); err != nil {
		return nil, err
	}
	return c, nil
}

// ReadCertificate is ParseCertificate without the validity dates, for a caller that judges them later with
// ValidAt (a configuration read before a clock is at hand), or never (a previous certificate kept after it
// expired, only to open notifications Graph encrypted for it before a rotation).
func ReadCertificate(id, setting string) (*Certificate, error) {
	s := strings.TrimSpace(setting)
	if s == "" {
		return nil, certErr(CertUnreadable, "the setting is empty")
	}
	if strings.Contains(s, "-----BEGIN") {
		return parsePEM(id, s)
	}
	der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		return nil, certErr(CertUnreadable, "the setting is neither PEM nor base64 (a PKCS#12 file)")
	}
	return parsePKCS12(id, der)
}

func parsePEM(id, s string) (*Certificate, error) {
	var (
		key   any
		certs []*x509.Certificate
		rest  = []byte(s)
	)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch b.Type {
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, certErr(CertUnreadable, "a CERTIFICATE block does not parse: %v", err)
			}
			certs = append(certs, c)
		case "PRIVATE KEY", "RSA PRIVATE KEY":
			if key != nil {
				return nil, certErr(CertUnreadable, "more than one private key")
			}
			var err error
			if b.Type == "PRIVATE KEY" {
				key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
			} else {
				key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
			}
			if err != nil {
				// The parser's message names the structure, not the key's numbers.
				return nil, certErr(CertUnreadable, "the %s block does not parse", b.Type)
			}
		case "ENCRYPTED PRIVATE KEY":
			return nil, certErr(CertEncrypted, "the private key is encrypted; store it unencrypted in Key Vault, which protects it")
		case "EC PRIVATE KEY":
			return nil, certErr(CertNotRSA, "the private key is ECDSA, not RSA (Graph encrypts for RSA keys only)")
		default:
			if _, ok := b.Headers["Proc-Type"]; ok {
				return nil, certErr(CertEncrypted, "the %s block is encrypted", b.Type)
			}
			// Other blocks (parameters, CSRs) carry nothing needed here.
		}
	}
	if key == nil {
		return nil, certErr(CertNoKey, "the PEM holds no PRIVATE KEY or RSA PRIVATE KEY block")
	}
	if len(certs) == 0 {
		return nil, certErr(CertNoCertificate, "the PEM holds no CERTIFICATE block")
	}
	return newCertificate(id, pickCertificate(key, certs), key)
}

// pickCertificate chooses the certificate of key among a leaf and its chain; when none matches it returns
// the first, for NewCertificate to report the mismatch.
func pickCertificate(key any, certs []*x509.Certificate) *x509.Certificate {
	if rk, ok := key.(*rsa.PrivateKey); ok {
		for _, c := range certs {
			if pub, ok := c.PublicKey.(*rsa.PublicKey); ok && rk.PublicKey.Equal(pub) {
				return c
			}
		}
	}
	return certs[0]
}

func parsePKCS12(id string, der []byte) (*Certificate, error) {
	key, cert, chain, err := pkcs12.DecodeChain(der, "")
	if errors.Is(err, pkcs12.ErrIncorrectPassword) {
		return nil, certErr(CertEncrypted, "the PKCS#12 file has a password; a Key Vault reference delivers it without one")
	}
	if err != nil {
		return nil, certErr(CertUnreadable, "the base64 setting is not a PKCS#12 file this reader understands: %v", err)
	}
	if key == nil {
		return nil, certErr(CertNoKey, "the PKCS#12 file holds no private key")
	}
	if cert == nil {
		return nil, certErr(CertNoCertificate, "the PKCS#12 file holds no certificate")
	}
	return newCertificate(id, pickCertificate(key, append([]*x509.Certificate{cert}, chain...)), key)
}
