package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/family"
	"github.com/graphwebhooks/graph-webhooks-go/richnotify"
)

// Test certificates: the package richnotify's committed test material (never used anywhere else).
func testCertificates(t *testing.T) (current, previous string, at time.Time) {
	t.Helper()
	read := func(p string) string {
		b, err := os.ReadFile("../../richnotify/testdata/" + p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	current = read("openssl/key-pkcs8.pem") + read("openssl/certificate.pem")
	previous = read("graph-vectors/certificate-and-key.pem")
	c, err := richnotify.ReadCertificate("probe", current)
	if err != nil {
		t.Fatal(err)
	}
	p, err := richnotify.ReadCertificate("probe", previous)
	if err != nil {
		t.Fatal(err)
	}
	// An instant both are valid at, whatever day the tests run.
	at = c.X509().NotBefore
	if p.X509().NotBefore.After(at) {
		at = p.X509().NotBefore
	}
	return current, previous, at.Add(time.Hour)
}

func TestTeamsSettings(t *testing.T) {
	cur, prev, at := testCertificates(t)
	c := Load(env(map[string]string{
		Resource:                        "teams/getAllMessages",
		EncryptionCertificate:           cur,
		EncryptionCertificateID:         "cert-2027",
		EncryptionCertificatePrevious:   prev,
		EncryptionCertificatePreviousID: "cert-2026",
		TeamsModel:                      "b",
		ChatMessageSelect:               "body,from",
	}))
	if !c.Teams.Wanted || c.Teams.Model != "B" || !slices.Equal(c.Select("chatMessages"), []string{"id", "body", "from"}) {
		t.Errorf("teams settings: %+v", c.Teams)
	}
	if err := c.Check(TeamsSettingNames()...); err != nil {
		t.Fatal(err)
	}
	got, old, err := c.EncryptionCertificates(at)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID() != "cert-2027" || old.ID() != "cert-2026" {
		t.Errorf("ids %q, %q", got.ID(), old.ID())
	}
	// The previous certificate is not judged by its dates (the test's previous one expires years before the
	// current one); the current one is.
	if !old.NotAfter().Before(got.NotAfter()) {
		t.Fatal("test material: the previous certificate should expire first")
	}
	if _, o, err := c.EncryptionCertificates(old.NotAfter().Add(time.Hour)); err != nil || o == nil {
		t.Errorf("with the previous certificate expired: %v, %v", o, err)
	}
	late := got.NotAfter().Add(time.Hour)
	if _, _, err := c.EncryptionCertificates(late); err == nil || !strings.Contains(err.Error(), EncryptionCertificate+" is not valid now: ") || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired current certificate: %v", err)
	}

	// The configuration prints, logs and marshals without the private keys.
	var out bytes.Buffer
	fmt.Fprintf(&out, "%v %+v %#v", c, c, c.Teams)
	slog.New(slog.NewJSONHandler(&out, nil)).Info("config", "teams", c.Teams)
	j, _ := json.Marshal(c.Teams)
	out.Write(j)
	for _, pemText := range []string{cur, prev} {
		// Late lines of the key: the private exponent and primes (early ones encode the public modulus).
		lines := strings.Split(pemText[:strings.Index(pemText, "-----END")], "\n")
		if strings.Contains(out.String(), lines[len(lines)-3]) || strings.Contains(out.String(), lines[len(lines)-8]) {
			t.Fatal("a private key reached the output")
		}
	}
	if !strings.Contains(out.String(), got.Thumbprint()) {
		t.Error("the public facts are missing")
	}
}

func TestTeamsDefaultsAndRequirement(t *testing.T) {
	c := Load(env(nil))
	if c.Teams.Wanted || c.Teams.Certificate != nil || c.Teams.Model != "" || !slices.Equal(c.Select("chatMessages"), strings.Split(family.ChatMessages.DefaultSelect, ",")) {
		t.Errorf("defaults: %+v", c.Teams)
	}
	if err := c.Check(EncryptionCertificate, EncryptionCertificateID); err != nil {
		t.Errorf("no Teams resource, yet the certificate is required: %v", err)
	}
	for _, res := range []string{"chats/getAllMessages", "users, teams/00000000-0000-0000-0000-000000000001/channels/19:a@thread.tacv2/messages", "/chats/19:x@thread.v2/messages"} {
		c := Load(env(map[string]string{Resource: res}))
		err := c.Check(EncryptionCertificate, EncryptionCertificateID)
		if err == nil || !strings.Contains(err.Error(), EncryptionCertificate+" is not set") || !strings.Contains(err.Error(), EncryptionCertificateID+" is not set") {
			t.Errorf("%s: Check = %v, want both settings required", res, err)
		}
	}
}

func TestTeamsSettingProblems(t *testing.T) {
	cur, prev, _ := testCertificates(t)
	tests := []struct {
		name    string
		set     map[string]string
		setting string
		want    string
	}{
		{"model", map[string]string{TeamsModel: "C"}, TeamsModel, "must be A, B or empty"},
		{"select", map[string]string{ChatMessageSelect: "body;from"}, ChatMessageSelect, "chat message property names"},
		{"no id", map[string]string{EncryptionCertificate: cur}, EncryptionCertificateID, "is not set"},
		{"id only", map[string]string{EncryptionCertificateID: "x"}, EncryptionCertificate, "is not set, but"},
		{"long id", map[string]string{EncryptionCertificate: cur, EncryptionCertificateID: strings.Repeat("x", 129)}, EncryptionCertificateID, "1 to 128"},
		{"garbage", map[string]string{EncryptionCertificate: "hello", EncryptionCertificateID: "x"}, EncryptionCertificate, "must be PEM"},
		{"key only", map[string]string{EncryptionCertificate: cur[:strings.Index(cur, "-----BEGIN CERTIFICATE")], EncryptionCertificateID: "x"}, EncryptionCertificate, "no CERTIFICATE"},
		{"mismatch", map[string]string{EncryptionCertificate: cur[:strings.Index(cur, "-----BEGIN CERTIFICATE")] + prev[strings.Index(prev, "-----BEGIN CERTIFICATE"):], EncryptionCertificateID: "x"}, EncryptionCertificate, "is refused: the private key is not the key"},
		{"previous alone", map[string]string{EncryptionCertificatePrevious: prev, EncryptionCertificatePreviousID: "old"}, EncryptionCertificatePrevious, "without " + EncryptionCertificate},
		{"same id", map[string]string{EncryptionCertificate: cur, EncryptionCertificateID: "x", EncryptionCertificatePrevious: prev, EncryptionCertificatePreviousID: "x"}, EncryptionCertificatePreviousID, "same id"},
		{"same certificate", map[string]string{EncryptionCertificate: cur, EncryptionCertificateID: "x", EncryptionCertificatePrevious: cur, EncryptionCertificatePreviousID: "y"}, EncryptionCertificatePrevious, "same certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Load(env(tt.set))
			err := c.Check(TeamsSettingNames()...)
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Check = %v", err)
			}
			found := false
			for _, p := range ce.Problems {
				found = found || p.Setting == tt.setting && strings.Contains(p.Text, tt.want)
				if strings.Contains(p.Text, "MII") {
					t.Errorf("a problem quotes the value: %s", p.Text)
				}
			}
			if !found {
				t.Errorf("Check = %v, want %s: …%s…", err, tt.setting, tt.want)
			}
		})
	}
}

// TestTeamsPlans: Teams entries imply rich subscriptions with every change type, a lifecycle URL and
// Graph's lifetime; GRAPH_TEAMS_MODEL goes on the metered resources only.
func TestTeamsPlans(t *testing.T) {
	c := Load(env(map[string]string{
		Resource:   "users, teams/getAllMessages, chats/getAllMessages, teams/6E1F0001-7c3a-4b2d-9e8f-0a1b2c3d4e5f/channels/19:abc@thread.tacv2/messages, chats/19:xyz@thread.v2/messages",
		TeamsModel: "A",
	}))
	if ps := c.Problems(); len(ps) != 0 {
		t.Fatal(ps)
	}
	var got []string
	for _, p := range c.Plans() {
		if p.Entry.Collection == "users" {
			if p.IncludeResourceData || strings.Contains(p.Resource, "model") {
				t.Errorf("users plan %+v", p)
			}
			continue
		}
		if !p.IncludeResourceData || !p.LifecycleURL || p.ChangeType() != "created,deleted,updated" || p.Lifetime > family.TeamsMaxLifetime || p.Lifetime < family.TeamsMaxLifetime-2*time.Hour {
			t.Errorf("plan %+v", p)
		}
		got = append(got, p.Resource)
	}
	want := []string{"teams/getAllMessages?model=A", "chats/getAllMessages?model=A",
		"teams/6e1f0001-7c3a-4b2d-9e8f-0a1b2c3d4e5f/channels/19:abc@thread.tacv2/messages", "chats/19:xyz@thread.v2/messages"}
	if !slices.Equal(got, want) {
		t.Errorf("resources %q, want %q", got, want)
	}
	for _, bad := range []string{"teams/sales/channels/19:abc@thread.tacv2/messages", "chats/general/messages", "teams/x", "chats/19:xyz@thread.v2/members"} {
		if ps := Load(env(map[string]string{Resource: bad})).Problems(); len(ps) == 0 {
			t.Errorf("%s was accepted", bad)
		}
	}
}
