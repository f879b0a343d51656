package richnotify_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/richnotify"
)

// A receiver loads its certificate once, from the app setting that holds it (PEM or base64 PKCS#12), and
// gives subscriptions the public part and the id.
func ExampleParseCertificate() {
	setting, err := os.ReadFile("testdata/graph-vectors/certificate-and-key.pem")
	if err != nil {
		log.Fatal(err)
	}
	// ParseCertificate(id, setting, now) also judges the validity dates at the clock it is given;
	// ReadCertificate leaves them to ValidAt.
	cert, err := richnotify.ReadCertificate("vector-cert", string(setting))
	if err != nil {
		log.Fatal(err) // a *richnotify.CertificateError: not RSA, too small, key and certificate apart…
	}
	subscription := map[string]any{
		"includeResourceData":     true,
		"encryptionCertificate":   cert.PublicBase64(), // the certificate only, never the key
		"encryptionCertificateId": cert.ID(),
	}
	_ = subscription
	fmt.Println(cert.ID(), cert.Bits(), cert.Thumbprint())
	fmt.Println(cert) // prints, logs and marshals as public facts only
	// Output:
	// vector-cert 2048 4EC0F6F457B7D334F0B9299B57789DE7BC34201B
	// richnotify.Certificate{id: "vector-cert", subject: "CN=rich-notification-vectors", thumbprint: 4EC0F6F457B7D334F0B9299B57789DE7BC34201B, notAfter: 2027-12-07T09:46:37Z}
}

// Decrypt opens one notification's encryptedContent, after checking its signature; a refusal says which
// step failed and never quotes the content.
func ExampleDecryptor_Decrypt() {
	setting, _ := os.ReadFile("testdata/graph-vectors/certificate-and-key.pem")
	cert, err := richnotify.ReadCertificate("vector-cert", string(setting))
	if err != nil {
		log.Fatal(err)
	}
	d, err := richnotify.NewDecryptor(cert) // while rotating: NewDecryptor(current, previous)
	if err != nil {
		log.Fatal(err)
	}
	for _, file := range []string{"valid.json", "bad-signature.json"} {
		raw, _ := os.ReadFile("testdata/graph-vectors/" + file)
		var notification struct {
			EncryptedContent richnotify.EncryptedContent `json:"encryptedContent"`
		}
		if err := json.Unmarshal(raw, &notification); err != nil {
			log.Fatal(err)
		}
		plaintext, err := d.Decrypt(notification.EncryptedContent)
		var refused *richnotify.DecryptError
		if errors.As(err, &refused) {
			fmt.Println(file, "refused:", refused.Code)
			continue
		}
		var msg struct {
			ID   string `json:"id"`
			Body struct {
				Content string `json:"content"`
			} `json:"body"`
		}
		json.Unmarshal(plaintext, &msg)
		fmt.Println(file, msg.ID, msg.Body.Content)
	}
	// Output:
	// valid.json 1733480000001 <p>hello from a vector</p>
	// bad-signature.json refused: signature
}

// Before believing anything in a body of rich notifications, check every validation token it carries
// against the tenant's published signing keys.
func ExampleTokenValidator_ValidateAll() {
	const tenant, clientID = "72f988bf-86f1-41af-91ab-2d7cd011db47", "11111111-2222-3333-4444-555555555555"
	v := &richnotify.TokenValidator{
		Keys:     richnotify.NewTenantJWKS("", tenant, http.DefaultClient, time.Now), // shared by the whole process
		ClientID: clientID,
		TenantID: tenant,
	}
	var body struct {
		ValidationTokens []string `json:"validationTokens"`
		Value            []struct {
			EncryptedContent richnotify.EncryptedContent `json:"encryptedContent"`
		} `json:"value"`
	}
	// … decode the request body into body, answer 202, then:
	err := v.ValidateAll(context.Background(), body.ValidationTokens, time.Now())
	switch {
	case richnotify.IsInvalidToken(err):
		fmt.Println("not from Graph:", err) // believe nothing in the body
	case err != nil:
		fmt.Println("signing keys unavailable, retry later:", err)
	}
}
