package richnotify

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// EncryptedContent is a notification's encryptedContent exactly as Graph sends it (the
// changeNotificationEncryptedContent resource).
type EncryptedContent struct {
	Data                            string `json:"data"`          // base64 AES-256-CBC ciphertext
	DataKey                         string `json:"dataKey"`       // base64 RSA-OAEP-encrypted symmetric key
	DataSignature                   string `json:"dataSignature"` // base64 HMAC-SHA256 of the ciphertext
	EncryptionCertificateID         string `json:"encryptionCertificateId"`
	EncryptionCertificateThumbprint string `json:"encryptionCertificateThumbprint"`
}

// DefaultMaxData bounds the base64 data a Decryptor accepts when MaxData is 0. Graph's notification
// bodies are far smaller (a chat message's JSON is a few KiB); the bound keeps a forged message from making
// the receiver allocate without limit.
const DefaultMaxData = 4 << 20

// The symmetric key Graph generates per notification: AES-256, whose first 16 bytes are also the IV.
const keyBytes = 32

// Code names the step at which opening encryptedContent failed.
type Code string

// The failures Decrypt reports, in the order the steps run.
const (
	CodeMalformed          Code = "malformed"           // a field is missing, not base64, or too long
	CodeUnknownCertificate Code = "unknown-certificate" // encryptionCertificateId names no certificate held
	CodeThumbprint         Code = "thumbprint"          // encryptionCertificateThumbprint is not that certificate's
	CodeDataKey            Code = "data-key"            // dataKey does not open with the certificate's key
	CodeKeyLength          Code = "key-length"          // dataKey opens to something other than 32 bytes
	CodeSignature          Code = "signature"           // the HMAC of data does not match dataSignature
	CodeBlockLength        Code = "block-length"        // data is not a positive whole number of AES blocks
	CodePadding            Code = "padding"             // the plaintext's PKCS#7 padding is invalid
	CodePlaintext          Code = "plaintext"           // the plaintext is not UTF-8 JSON
)

// DecryptError is every failure of Decrypt. Detail never holds plaintext, key material or ciphertext: at most
// a certificate id, a thumbprint (public facts) and lengths.
type DecryptError struct {
	Code   Code
	Detail string
}

func (e *DecryptError) Error() string {
	if e.Detail == "" {
		return "richnotify: encryptedContent refused (" + string(e.Code) + ")"
	}
	return "richnotify: encryptedContent refused (" + string(e.Code) + "): " + e.Detail
}

// Is makes errors.Is(err, ErrSignature) and the like match any DecryptError with that Code.
func (e *DecryptError) Is(target error) bool {
	t, ok := target.(*DecryptError)
	return ok && t.Code == e.Code && t.Detail == ""
}

// Sentinels for errors.Is, one per Code.
var (
	ErrMalformed          = &DecryptError{Code: CodeMalformed}
	ErrUnknownCertificate = &DecryptError{Code: CodeUnknownCertificate}
	ErrThumbprint         = &DecryptError{Code: CodeThumbprint}
	ErrDataKey            = &DecryptError{Code: CodeDataKey}
	ErrKeyLength          = &DecryptError{Code: CodeKeyLength}
	ErrSignature          = &DecryptError{Code: CodeSignature}
	ErrBlockLength        = &DecryptError{Code: CodeBlockLength}
	ErrPadding            = &DecryptError{Code: CodePadding}
	ErrPlaintext          = &DecryptError{Code: CodePlaintext}
)

func refuse(code Code, format string, args ...any) error {
	return &DecryptError{Code: code, Detail: fmt.Sprintf(format, args...)}
}

// Decryptor opens encryptedContent for the certificates it holds, found by id. It is safe for concurrent
// use; build one per configuration and share it.
type Decryptor struct {
	byID map[string]*Certificate
	// MaxData bounds the length of the base64 data field; 0 means DefaultMaxData.
	MaxData int
}

// NewDecryptor holds certs by their ids (typically the current certificate and, while rotating, the previous
// one). Ids must be distinct and non-empty.
func NewDecryptor(certs ...*Certificate) (*Decryptor, error) {
	d := &Decryptor{byID: make(map[string]*Certificate, len(certs))}
	for _, c := range certs {
		if c == nil {
			return nil, errors.New("richnotify: a nil certificate")
		}
		if c.id == "" {
			return nil, errors.New("richnotify: a certificate without an id")
		}
		if _, dup := d.byID[c.id]; dup {
			return nil, fmt.Errorf("richnotify: two certificates with the id %q", c.id)
		}
		d.byID[c.id] = c
	}
	return d, nil
}

// IDs returns the ids of the certificates held, in no particular order.
func (d *Decryptor) IDs() []string {
	ids := make([]string, 0, len(d.byID))
	for id := range d.byID {
		ids = append(ids, id)
	}
	return ids
}

// String names the certificates held, never their keys.
func (d *Decryptor) String() string {
	return fmt.Sprintf("richnotify.Decryptor{certificates: %q}", d.IDs())
}

// Decrypt verifies and opens ec and returns the resource's JSON. Any failure is a *DecryptError (see Code);
// nothing is decrypted unless the signature over the ciphertext has verified first.
func (d *Decryptor) Decrypt(ec EncryptedContent) (json.RawMessage, error) {
	maxData := d.MaxData
	if maxData <= 0 {
		maxData = DefaultMaxData
	}
	switch {
	case ec.EncryptionCertificateID == "":
		return nil, refuse(CodeMalformed, "no encryptionCertificateId")
	case ec.Data == "" || ec.DataKey == "" || ec.DataSignature == "":
		return nil, refuse(CodeMalformed, "data, dataKey and dataSignature are all required")
	case len(ec.Data) > maxData:
		return nil, refuse(CodeMalformed, "data is %d characters, more than %d", len(ec.Data), maxData)
	case len(ec.DataKey) > 2048 || len(ec.DataSignature) > 256:
		return nil, refuse(CodeMalformed, "dataKey or dataSignature is longer than any Graph sends")
	}
	cert, ok := d.byID[ec.EncryptionCertificateID]
	if !ok {
		return nil, refuse(CodeUnknownCertificate, "encryptionCertificateId %q is not a certificate this receiver holds", short(ec.EncryptionCertificateID))
	}
	// The thumbprint is the certificate's SHA-1 in hex. Graph always sends it; a missing one is refused
	// rather than skipped, so a forger cannot opt out of the cross-check.
	if tp := ec.EncryptionCertificateThumbprint; !thumbprintMatches(tp, cert.thumbprint) {
		return nil, refuse(CodeThumbprint, "encryptionCertificateThumbprint %q is not the thumbprint %s of certificate %q", short(tp), cert.thumbprint, cert.id)
	}

	wrapped, err := decodeBase64(ec.DataKey)
	if err != nil {
		return nil, refuse(CodeMalformed, "dataKey is not base64")
	}
	data, err := decodeBase64(ec.Data)
	if err != nil {
		return nil, refuse(CodeMalformed, "data is not base64")
	}
	sig, err := decodeBase64(ec.DataSignature)
	if err != nil {
		return nil, refuse(CodeMalformed, "dataSignature is not base64")
	}

	// OAEP with SHA-1 for both the label hash and MGF1, as Graph encrypts it. Go's OAEP decryption does not
	// tell why it failed, so a padding oracle has nothing to read.
	key, err := rsa.DecryptOAEP(sha1.New(), nil, cert.key.k, wrapped, nil)
	if err != nil {
		return nil, refuse(CodeDataKey, "dataKey does not decrypt with certificate %q (RSA-OAEP, SHA-1)", cert.id)
	}
	defer clear(key)
	if len(key) != keyBytes {
		return nil, refuse(CodeKeyLength, "dataKey holds %d bytes, want %d", len(key), keyBytes)
	}

	mac := hmac.New(sha256.New, key)
	mac.Write(data)
	if !hmac.Equal(mac.Sum(nil), sig) {
		return nil, refuse(CodeSignature, "dataSignature does not match the HMAC-SHA256 of data")
	}

	if len(data) == 0 || len(data)%aes.BlockSize != 0 {
		return nil, refuse(CodeBlockLength, "data is %d bytes, not a positive multiple of %d", len(data), aes.BlockSize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, refuse(CodeKeyLength, "not an AES-256 key")
	}
	plain := make([]byte, len(data))
	cipher.NewCBCDecrypter(block, key[:aes.BlockSize]).CryptBlocks(plain, data)
	n, ok := unpad(plain)
	if !ok {
		clear(plain)
		return nil, refuse(CodePadding, "the decrypted data does not end in PKCS#7 padding")
	}
	plain = plain[:n]
	if !utf8.Valid(plain) || !json.Valid(plain) {
		clear(plain)
		return nil, refuse(CodePlaintext, "the decrypted data (%d bytes) is not UTF-8 JSON", n)
	}
	return plain, nil
}

// unpad checks PKCS#7 padding over the last block of a whole number of blocks and returns the length
// without it. Every pad byte is compared, without branching on their values, so that how far the check got
// is not visible in its timing.
func unpad(b []byte) (int, bool) {
	if len(b) == 0 || len(b)%aes.BlockSize != 0 {
		return 0, false
	}
	last := b[len(b)-aes.BlockSize:]
	p := int(last[aes.BlockSize-1])
	good := subtle.ConstantTimeLessOrEq(1, p) & subtle.ConstantTimeLessOrEq(p, aes.BlockSize)
	for i := range aes.BlockSize {
		// Positions within the padding (counted from the end) must hold p.
		inPad := subtle.ConstantTimeLessOrEq(aes.BlockSize-i, p)
		same := subtle.ConstantTimeByteEq(last[i], byte(p))
		good &= subtle.ConstantTimeSelect(inPad, same, 1)
	}
	if good != 1 {
		return 0, false
	}
	return len(b) - p, true
}

func thumbprintMatches(got, want string) bool {
	g, err := hex.DecodeString(strings.TrimSpace(got))
	w, _ := hex.DecodeString(want)
	return err == nil && len(g) == sha1.Size && subtle.ConstantTimeCompare(g, w) == 1
}

// decodeBase64 reads standard base64, padded or not (Graph pads; tolerance costs nothing here).
func decodeBase64(s string) ([]byte, error) {
	if strings.HasSuffix(s, "=") {
		return base64.StdEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}
