// Package identity builds the one azcore.TokenCredential the handler uses to call Microsoft Graph.
//
// The choice follows the app settings: a client secret, else a client certificate, else managed identity.
// Build the credential once per process and share it: azidentity caches tokens inside the credential, so a
// credential per call would fetch a new token per call.
package identity

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"log/slog"
	"net/url"
	"os"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// Names of the app settings, used in error messages so an operator knows what to fix.
const (
	settingTenantID            = "AZURE_TENANT_ID"
	settingClientID            = "AZURE_CLIENT_ID"
	settingClientSecret        = "AZURE_CLIENT_SECRET"
	settingCertificatePath     = "AZURE_CLIENT_CERTIFICATE_PATH"
	settingCertificatePassword = "AZURE_CLIENT_CERTIFICATE_PASSWORD"
	settingAuthorityHost       = "AZURE_AUTHORITY_HOST"
	settingDisableDiscovery    = "AZURE_DISABLE_INSTANCE_DISCOVERY"
)

// Settings are the identity app settings, already read from the environment.
type Settings struct {
	TenantID, ClientID string
	// ClientSecret is a secret: it is never logged nor put in an error.
	ClientSecret string
	// CertificatePath names a PEM or PKCS#12 file (see azidentity.ParseCertificates);
	// CertificatePassword decrypts a PKCS#12 file.
	CertificatePath, CertificatePassword string
	// AuthorityHost is the Entra ID host for sovereign clouds or test doubles; "" means the public cloud.
	// It must be https.
	AuthorityHost string
	// DisableInstanceDiscovery turns MSAL's authority validation off for a non-loopback host: that means
	// trusting the configured host with the credential, so it is an explicit setting and never inferred.
	DisableInstanceDiscovery bool
}

// Options are the process-level dependencies of the credential.
type Options struct {
	// Transport carries the token traffic (tests pass a client trusting their TLS server).
	Transport policy.Transporter
	// Logger receives one Info line describing the credential; nil discards it.
	Logger *slog.Logger
}

// Kind is the kind of credential Settings select.
type Kind string

// The kinds of credential, in order of preference.
const (
	KindClientSecret      Kind = "client secret"
	KindClientCertificate Kind = "client certificate"
	KindManagedIdentity   Kind = "managed identity"
)

// Select reports which credential Settings lead to: a secret wins over a certificate (the documented
// order), and with neither the app runs as a managed identity.
func Select(s Settings) Kind {
	switch {
	case s.ClientSecret != "":
		return KindClientSecret
	case s.CertificatePath != "":
		return KindClientCertificate
	default:
		return KindManagedIdentity
	}
}

// NewGraphCredential builds the credential Settings select. Errors name the app setting at fault.
func NewGraphCredential(s Settings, o Options) (azcore.TokenCredential, error) {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	kind := Select(s)
	var (
		cred azcore.TokenCredential
		err  error
	)
	switch kind {
	case KindManagedIdentity:
		cred, err = newManagedIdentity(s, o)
	default:
		cred, err = newConfidential(kind, s, o)
	}
	if err != nil {
		return nil, err
	}
	attrs := []any{slog.String("credential", string(kind))}
	if s.ClientID != "" {
		attrs = append(attrs, slog.String("clientId", s.ClientID))
	}
	if kind != KindManagedIdentity {
		host, _ := authority(s)
		attrs = append(attrs, slog.String("tenantId", s.TenantID), slog.String("authority", host),
			slog.Bool("instanceDiscovery", !discoveryOff(s, host)))
		if s.ClientSecret != "" && s.CertificatePath != "" {
			logger.Warn("identity: both " + settingClientSecret + " and " + settingCertificatePath +
				" are set; using the client secret and ignoring the certificate")
		}
	}
	logger.Info("identity: Graph credential: "+Describe(s), attrs...)
	return cred, nil
}

// Describe says in one line which credential Settings select and where it authenticates, for logs and
// diagnostics. It never includes the secret or the certificate password.
func Describe(s Settings) string {
	kind := Select(s)
	if kind == KindManagedIdentity {
		if s.ClientID != "" {
			return fmt.Sprintf("managed identity (user-assigned, client ID %s)", s.ClientID)
		}
		return "managed identity (system-assigned)"
	}
	host, err := authority(s)
	if err != nil {
		host = s.AuthorityHost
	}
	what := string(kind)
	if kind == KindClientCertificate {
		what = fmt.Sprintf("client certificate %s", s.CertificatePath)
	}
	discovery := "instance discovery on"
	if discoveryOff(s, host) {
		if isLoopback(host) {
			discovery = "instance discovery off: loopback authority"
		} else {
			discovery = "instance discovery off: " + settingDisableDiscovery
		}
	}
	return fmt.Sprintf("%s for app %s at %s (%s)", what, s.ClientID, host, discovery)
}

func newConfidential(kind Kind, s Settings, o Options) (azcore.TokenCredential, error) {
	why := settingClientSecret
	if kind == KindClientCertificate {
		why = settingCertificatePath
	}
	if s.TenantID == "" {
		return nil, fmt.Errorf("%s: required with %s", settingTenantID, why)
	}
	if s.ClientID == "" {
		return nil, fmt.Errorf("%s: required with %s", settingClientID, why)
	}
	host, err := authority(s)
	if err != nil {
		return nil, err
	}
	co := azcore.ClientOptions{
		Transport: o.Transport,
		// Set explicitly so that AZURE_AUTHORITY_HOST in the process environment cannot override
		// what the config layer decided.
		Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: host},
	}
	off := discoveryOff(s, host)
	if kind == KindClientSecret {
		cred, err := azidentity.NewClientSecretCredential(s.TenantID, s.ClientID, s.ClientSecret,
			&azidentity.ClientSecretCredentialOptions{ClientOptions: co, DisableInstanceDiscovery: off})
		if err != nil {
			return nil, constructorError(settingClientSecret, err)
		}
		return cred, nil
	}
	data, err := os.ReadFile(s.CertificatePath)
	if err != nil {
		return nil, fmt.Errorf("%s: cannot read %q: %v", settingCertificatePath, s.CertificatePath, unwrapPathError(err))
	}
	certs, key, err := parseCertificates(data, s.CertificatePassword)
	if err != nil {
		hint := ""
		if s.CertificatePassword == "" {
			hint = fmt.Sprintf(" (a password-protected PKCS#12 file needs %s)", settingCertificatePassword)
		} else {
			hint = fmt.Sprintf(" (or %s is wrong)", settingCertificatePassword)
		}
		return nil, fmt.Errorf("%s: cannot load %q as PEM or PKCS#12%s: %v", settingCertificatePath, s.CertificatePath, hint, err)
	}
	cred, err := azidentity.NewClientCertificateCredential(s.TenantID, s.ClientID, certs, key,
		&azidentity.ClientCertificateCredentialOptions{ClientOptions: co, DisableInstanceDiscovery: off})
	if err != nil {
		return nil, constructorError(settingCertificatePath, err)
	}
	return cred, nil
}

// constructorError names the setting behind an azidentity constructor error: the tenant ID is the only
// value it validates besides the credential itself (for example a certificate whose key is not RSA).
// azidentity's messages never include the secret.
func constructorError(credentialSetting string, err error) error {
	if strings.Contains(strings.ToLower(err.Error()), "tenant") {
		return fmt.Errorf("%s: %v", settingTenantID, err)
	}
	return fmt.Errorf("%s: %v", credentialSetting, err)
}

// parseCertificates tries the password first; a PEM file with a password set by mistake still loads,
// since azidentity only uses the password for PKCS#12 and cannot decrypt PEM keys anyway.
func parseCertificates(data []byte, password string) ([]*x509.Certificate, crypto.PrivateKey, error) {
	certs, key, err := azidentity.ParseCertificates(data, []byte(password))
	if err != nil && password != "" && strings.Contains(string(data), "-----BEGIN") {
		if c, k, err2 := azidentity.ParseCertificates(data, nil); err2 == nil {
			return c, k, nil
		}
	}
	return certs, key, err
}

func newManagedIdentity(s Settings, o Options) (azcore.TokenCredential, error) {
	opts := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: azcore.ClientOptions{Transport: o.Transport}}
	if s.ClientID != "" {
		opts.ID = azidentity.ClientID(s.ClientID)
	}
	cred, err := azidentity.NewManagedIdentityCredential(opts)
	if err != nil {
		return nil, fmt.Errorf("managed identity (no %s or %s set): %v", settingClientSecret, settingCertificatePath, err)
	}
	return cred, nil
}

// authority returns the effective authority host, normalised to end in "/".
func authority(s Settings) (string, error) {
	if s.AuthorityHost == "" {
		return cloud.AzurePublic.ActiveDirectoryAuthorityHost, nil
	}
	u, err := url.Parse(s.AuthorityHost)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("%s: must be an https URL such as https://login.microsoftonline.us/, got %q",
			settingAuthorityHost, s.AuthorityHost)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	return u.String(), nil
}

// discoveryOff reports whether MSAL's instance discovery is skipped. Discovery asks
// login.microsoftonline.com to vouch for any host outside Microsoft's known clouds, which fails where
// that host is unreachable; skipping it is safe for loopback (a test double on this machine) and
// otherwise only on the explicit setting.
func discoveryOff(s Settings, host string) bool {
	return s.DisableInstanceDiscovery || isLoopback(host)
}

// isLoopback reports whether an authority URL points at this machine: 127.0.0.0/8, ::1 or localhost.
func isLoopback(authorityURL string) bool {
	u, err := url.Parse(authorityURL)
	return err == nil && config.IsLoopback(strings.TrimSuffix(u.Hostname(), "."))
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
