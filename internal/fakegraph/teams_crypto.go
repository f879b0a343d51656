package fakegraph

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// Graph's side of rich notifications (docs/graph-facts.md §11.3): the double encrypts a resource for the
// certificate a subscription carries, as Graph does. This is the sender's half, written on its own: the
// product's decryption (package richnotify) is tested against it and against vectors made by other tools,
// never only against its own inverse.

// encryptionCert is a subscription's encryptionCertificate, parsed.
type encryptionCert struct {
	pub        *rsa.PublicKey
	thumbprint string // upper-case hex SHA-1 of the DER certificate, as Graph sends it
}

// parseEncryptionCertificate reads a subscription's encryptionCertificate: base64 of an X.509 certificate
// (DER) whose key is RSA of 2,048 to 4,096 bits (docs/graph-facts.md §11.2). The message is the double's
// wording of the 400.
func parseEncryptionCertificate(b64cert string) (*encryptionCert, string) {
	der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64cert))
	if err != nil {
		return nil, "Invalid 'encryptionCertificate' attribute: it must be the base64 encoding of an X.509 certificate."
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, "Invalid 'encryptionCertificate' attribute: it must be the base64 encoding of an X.509 certificate."
	}
	pub, ok := c.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, "Invalid 'encryptionCertificate' attribute: the certificate's key must be RSA."
	}
	if n := pub.N.BitLen(); n < 2048 || n > 4096 {
		return nil, fmt.Sprintf("Invalid 'encryptionCertificate' attribute: the RSA key has %d bits; 2048 to 4096 are accepted.", n)
	}
	sum := sha1.Sum(der)
	return &encryptionCert{pub: pub, thumbprint: strings.ToUpper(hex.EncodeToString(sum[:]))}, ""
}

// encryptTampering damages what encryptContent makes, for tests of the receiver's refusals.
type encryptTampering struct {
	badSignature bool // a ciphertext bit flipped after signing
	badPadding   bool // the last plaintext block ends in a zero byte instead of PKCS#7 padding; signed correctly
}

// encryptContent makes a notification's encryptedContent for plaintext under cert, labelled certID:
// a fresh 32-byte key; data = AES-256-CBC(key, IV = key[:16], PKCS#7(plaintext)); dataSignature =
// HMAC-SHA256(key, data); dataKey = RSA-OAEP(SHA-1, MGF1-SHA-1) of the key under the certificate.
func encryptContent(cert *encryptionCert, certID string, plaintext []byte, t encryptTampering) (map[string]any, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	var padded []byte
	if t.badPadding {
		padded = append(bytes.Clone(plaintext), bytes.Repeat([]byte{' '}, aes.BlockSize-len(plaintext)%aes.BlockSize)...)
		padded[len(padded)-1] = 0
	} else {
		n := aes.BlockSize - len(plaintext)%aes.BlockSize // 1..16: a whole block when already aligned
		padded = append(bytes.Clone(plaintext), bytes.Repeat([]byte{byte(n)}, n)...)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	data := make([]byte, len(padded))
	cipher.NewCBCEncrypter(block, key[:aes.BlockSize]).CryptBlocks(data, padded)

	mac := hmac.New(sha256.New, key)
	mac.Write(data)
	sig := mac.Sum(nil)
	if t.badSignature {
		data[len(data)/2] ^= 0x01
	}
	wrapped, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, cert.pub, key, nil)
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"data":                            base64.StdEncoding.EncodeToString(data),
		"dataSignature":                   base64.StdEncoding.EncodeToString(sig),
		"dataKey":                         base64.StdEncoding.EncodeToString(wrapped),
		"encryptionCertificateId":         certID,
		"encryptionCertificateThumbprint": cert.thumbprint,
	}, nil
}
