package subscription

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/family"
	"github.com/graphwebhooks/graph-webhooks-go/internal/testclock"
)

// testCertPEMs are two RSA-2048 certificates with their keys (PKCS#8 and certificate, PEM), valid around
// the keeper tests' clock. Made once: key generation is slow under -race.
var testCertPEMs = sync.OnceValue(func() [2]string {
	var out [2]string
	at := testclock.Date(2026, 11, 27, 10, 0, 0) // the keeper tests' clock, shifted with it
	for i := range out {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 1)), Subject: pkix.Name{CommonName: "keeper test"},
			NotBefore: at.Add(-time.Hour), NotAfter: at.AddDate(1, 0, 0)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			panic(err)
		}
		kb, _ := x509.MarshalPKCS8PrivateKey(key)
		out[i] = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})) + string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	}
	return out
})

// TestTeamsSubscriptionsAreRichAndRotate: a Teams resource is subscribed with resource data, the
// certificate's public part and id, and the lifecycle URL; a new current certificate moves it by PATCH.
func TestTeamsSubscriptionsAreRichAndRotate(t *testing.T) {
	e := newEnv(t)
	certs := testCertPEMs()
	e.settings[config.Resource] = "chats/19:abc@thread.v2/messages"
	e.settings[config.EncryptionCertificate] = certs[0]
	e.settings[config.EncryptionCertificateID] = "cert-a"
	k := e.keeper(t)
	if out := ensure(t, k, Normal); out.Action != Created {
		t.Fatalf("first run: %+v", out)
	}
	cfg := config.Load(func(s string) string { return e.settings[s] })
	a := cfg.Teams.Certificate
	s := only(t, e.fg)
	if !s.IncludeResourceData || s.EncryptionCertificateID != "cert-a" || s.EncryptionCertificate != a.PublicBase64() || s.LifecycleNotificationURL == "" {
		t.Fatalf("created %+v", s)
	}
	if s.ChangeType != "created,deleted,updated" {
		t.Errorf("change types %q", s.ChangeType)
	}
	if life := s.ExpirationDateTime.Sub(e.clock.Now()); life > family.TeamsMaxLifetime || life < family.TeamsMaxLifetime-2*time.Hour {
		t.Errorf("lifetime %s", life)
	}

	// An hour on, nothing to do: a three-day subscription is renewed when half its life is gone.
	e.clock.Advance(time.Hour)
	before := e.writes()
	if out := ensure(t, k, Normal); out.Action != Unchanged {
		t.Errorf("an hour on: %+v", out)
	}
	e.clock.Advance(36 * time.Hour)
	if out := ensure(t, k, Normal); out.Action != Renewed {
		t.Errorf("36 hours on: %+v", out)
	}
	if e.writes() != before+1 {
		t.Errorf("%d writes, want one renewal", e.writes()-before)
	}

	// Rotation: cert-b current, cert-a previous. One PATCH moves the subscription.
	e.settings[config.EncryptionCertificate] = certs[1]
	e.settings[config.EncryptionCertificateID] = "cert-b"
	e.settings[config.EncryptionCertificatePrevious] = certs[0]
	e.settings[config.EncryptionCertificatePreviousID] = "cert-a"
	k = e.keeper(t)
	if out := ensure(t, k, Normal); out.Action != Renewed {
		t.Fatalf("rotation run: %+v", out)
	}
	b := config.Load(func(s string) string { return e.settings[s] }).Teams.Certificate
	if s := only(t, e.fg); s.EncryptionCertificateID != "cert-b" || s.EncryptionCertificate != b.PublicBase64() {
		t.Errorf("after rotation %+v", s)
	}
	if out := ensure(t, k, Normal); out.Action != Unchanged {
		t.Errorf("after rotation, again: %+v", out)
	}
}

func TestTeamsMeteredModel(t *testing.T) {
	e := newEnv(t)
	e.settings[config.Resource] = "teams/getAllMessages"
	e.settings[config.TeamsModel] = "B"
	e.settings[config.EncryptionCertificate] = testCertPEMs()[0]
	e.settings[config.EncryptionCertificateID] = "cert-a"
	if out := ensure(t, e.keeper(t), Normal); out.Action != Created {
		t.Fatalf("%+v", out)
	}
	if s := only(t, e.fg); s.Resource != "teams/getAllMessages?model=B" {
		t.Errorf("resource %q", s.Resource)
	}
	if out := ensure(t, e.keeper(t), Normal); out.Action != Unchanged {
		t.Errorf("second run: %+v", out)
	}
}

// TestTeamsWithoutCertificateFailsClearly: a Teams resource without its certificate says which setting.
func TestTeamsWithoutCertificateFailsClearly(t *testing.T) {
	e := newEnv(t)
	e.settings[config.Resource] = "chats/19:abc@thread.v2/messages"
	_, err := e.keeper(t).Ensure(t.Context(), Normal)
	if err == nil || !strings.Contains(err.Error(), config.EncryptionCertificate) {
		t.Fatalf("err = %v", err)
	}
	if e.writes() != 0 {
		t.Error("a subscription was attempted without a certificate")
	}
}
