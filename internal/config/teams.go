package config

import (
	"errors"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/graphwebhooks/graph-webhooks-go/internal/family"
	"github.com/graphwebhooks/graph-webhooks-go/richnotify"
)

// Settings of the Teams family: the certificate Graph encrypts chat messages for, and what events carry.
const (
	EncryptionCertificate           = "GRAPH_ENCRYPTION_CERTIFICATE"
	EncryptionCertificateID         = "GRAPH_ENCRYPTION_CERTIFICATE_ID"
	EncryptionCertificatePrevious   = "GRAPH_ENCRYPTION_CERTIFICATE_PREVIOUS"
	EncryptionCertificatePreviousID = "GRAPH_ENCRYPTION_CERTIFICATE_PREVIOUS_ID"
	TeamsModel                      = "GRAPH_TEAMS_MODEL"
	ChatMessageSelect               = "GRAPH_CHATMESSAGE_SELECT"
)

// TeamsSettings are the Teams family's settings, read by Load. The certificates are read and checked
// (RSA, 2,048–4,096 bits, key and certificate a pair) but not against a clock: Certificates does that with
// the clock it is given.
type TeamsSettings struct {
	// Wanted is whether GRAPH_RESOURCE names a Teams resource (teams/… or chats/…): the certificate and its
	// id are then required.
	Wanted bool
	// Certificate is GRAPH_ENCRYPTION_CERTIFICATE under GRAPH_ENCRYPTION_CERTIFICATE_ID; nil when unset or
	// refused (Check says why). It prints and logs as its public facts only.
	Certificate *richnotify.Certificate
	// Previous is GRAPH_ENCRYPTION_CERTIFICATE_PREVIOUS under its id, while rotating; nil otherwise.
	Previous *richnotify.Certificate
	// Model is GRAPH_TEAMS_MODEL: "", "A" or "B" (the licensing model of the metered getAllMessages APIs).
	Model string
}

// IsTeamsResource reports whether one GRAPH_RESOURCE entry names a Teams resource (teams/… or chats/…),
// whatever else is wrong with it.
func IsTeamsResource(entry string) bool {
	e := strings.ToLower(strings.Trim(strings.TrimSpace(entry), "/"))
	return strings.HasPrefix(e, "teams/") || strings.HasPrefix(e, "chats/")
}

// maxCertificateID is Graph's limit on encryptionCertificateId.
const maxCertificateID = 128

func (l *loader) teams() TeamsSettings {
	t := TeamsSettings{Model: l.teamsModel()}
	for _, e := range strings.Split(l.get(Resource), ",") {
		if IsTeamsResource(e) {
			t.Wanted = true
		}
	}
	t.Certificate = l.certificate(EncryptionCertificate, EncryptionCertificateID)
	t.Previous = l.certificate(EncryptionCertificatePrevious, EncryptionCertificatePreviousID)
	switch {
	case t.Previous != nil && t.Certificate == nil && l.problems[EncryptionCertificate] == "":
		l.fail(EncryptionCertificatePrevious, "is set without %s: the previous certificate only opens notifications while the new one is current", EncryptionCertificate)
	case t.Previous != nil && t.Certificate != nil && t.Previous.ID() == t.Certificate.ID():
		l.fail(EncryptionCertificatePreviousID, "is the same id as %s: subscriptions tell the certificates apart by id", EncryptionCertificateID)
		t.Previous = nil
	case t.Previous != nil && t.Certificate != nil && t.Previous.Thumbprint() == t.Certificate.Thumbprint():
		l.fail(EncryptionCertificatePrevious, "is the same certificate as %s", EncryptionCertificate)
		t.Previous = nil
	}
	return t
}

func (l *loader) teamsModel() string {
	v := strings.ToUpper(l.get(TeamsModel))
	if v != "" && v != "A" && v != "B" {
		l.fail(TeamsModel, "must be A, B or empty (the licensing model Graph meters teams/getAllMessages and chats/getAllMessages under)")
		return ""
	}
	return v
}

// certificate reads a certificate setting and its id setting; nil when the certificate is unset or refused
// (the problem is recorded under the setting at fault, without its value).
func (l *loader) certificate(name, idName string) *richnotify.Certificate {
	v := l.getenv(name)
	id := l.get(idName)
	if strings.TrimSpace(v) == "" {
		if id != "" {
			l.fail(name, "is not set, but %s is", idName)
		}
		return nil
	}
	switch {
	case id == "":
		l.fail(idName, "is not set: it is the certificate's label in subscriptions (encryptionCertificateId)")
		return nil
	case len(id) > maxCertificateID || strings.IndexFunc(id, unicode.IsControl) >= 0:
		l.fail(idName, "must be 1 to %d printable characters", maxCertificateID)
		return nil
	}
	c, err := richnotify.ReadCertificate(id, v)
	if err != nil {
		l.fail(name, "%s", certificateProblem(err))
		return nil
	}
	return c
}

// certificateProblem says in a sentence what is wrong with a certificate, without its value.
func certificateProblem(err error) string {
	var ce *richnotify.CertificateError
	if !errors.As(err, &ce) {
		return "cannot be read"
	}
	switch ce.Code {
	case richnotify.CertUnreadable:
		return "must be PEM (private key and certificate) or base64 PKCS#12 without a password: " + ce.Detail
	case richnotify.CertEncrypted:
		return "must not be password-protected: " + ce.Detail
	case richnotify.CertExpired, richnotify.CertNotYetValid:
		return "is not valid now: " + ce.Detail
	default:
		return "is refused: " + ce.Detail
	}
}

// teamsMissing is Check's "is not set" for the Teams settings: the certificate and its id are required when
// a Teams resource is configured.
func (c *Config) teamsMissing(setting string) bool {
	switch setting {
	case EncryptionCertificate, EncryptionCertificateID:
		return c.Teams.Wanted && c.Teams.Certificate == nil
	}
	return false
}

// EncryptionCertificates returns the current certificate, judged valid at now, and the previous one, if
// any, which is not judged by its dates: it is kept only to open notifications Graph encrypted for it before
// a rotation, and an expired one must not stop the handler from opening the rest. A problem is a *Error
// naming the setting.
func (c *Config) EncryptionCertificates(now time.Time) (current, previous *richnotify.Certificate, err error) {
	if err := c.Check(EncryptionCertificate, EncryptionCertificateID, EncryptionCertificatePrevious, EncryptionCertificatePreviousID); err != nil {
		return nil, nil, err
	}
	if c.Teams.Certificate == nil {
		return nil, nil, &Error{Problems: []Problem{{EncryptionCertificate, "is not set"}}}
	}
	if err := c.Teams.Certificate.ValidAt(now); err != nil {
		return nil, nil, &Error{Problems: []Problem{{EncryptionCertificate, certificateProblem(err)}}}
	}
	return c.Teams.Certificate, c.Teams.Previous, nil
}

// withTeamsModel adds GRAPH_TEAMS_MODEL to a plan for a metered Teams resource (model=A or model=B).
func (c *Config) withTeamsModel(p family.Plan) family.Plan {
	if c.Teams.Model != "" && family.MeteredTeamsResource(p.Resource) {
		p.Resource += "?model=" + c.Teams.Model
	}
	return p
}

// TeamsSettingNames lists the Teams family's settings, for a function's Check.
func TeamsSettingNames() []string {
	return slices.Clone([]string{EncryptionCertificate, EncryptionCertificateID, EncryptionCertificatePrevious,
		EncryptionCertificatePreviousID, TeamsModel, ChatMessageSelect})
}
