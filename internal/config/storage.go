package config

import (
	"net/url"
	"strings"

	"github.com/graphwebhooks/graph-webhooks-go/internal/redact"
)

// AzuriteAccountKey is Azurite's well-known development account key (public, documented by Microsoft).
const AzuriteAccountKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

// StorageSettings is AzureWebJobsStorage in one of its forms: a connection string (UseDevelopmentStorage=true
// already expanded, since azqueue and azblob do not understand it), or identity-based service URIs with the
// credential settings the Functions host reads (AzureWebJobsStorage__credential, __clientId).
type StorageSettings struct {
	ConnectionString Secret // holds an account key
	QueueServiceURL  string // identity-based
	BlobServiceURL   string // identity-based
	TableServiceURL  string // identity-based
	Credential       string // "managedidentity" or "" (identity-based only)
	ClientID         string // user-assigned identity for storage; never the Graph app's secret
}

// IsSet reports whether any form of the setting is present.
func (s StorageSettings) IsSet() bool {
	return s.ConnectionString != "" || s.QueueServiceURL != "" || s.BlobServiceURL != "" || s.TableServiceURL != ""
}

// UsesIdentity reports whether storage is reached with a token rather than an account key.
func (s StorageSettings) UsesIdentity() bool { return s.ConnectionString == "" && s.IsSet() }

func (l *loader) storage() StorageSettings {
	if cs := l.get(Storage); cs != "" {
		expanded, ok := ExpandDevelopmentStorage(cs)
		if !ok {
			l.fail(Storage, "must be a storage connection string (with AccountName and AccountKey, or endpoints) or UseDevelopmentStorage=true")
			return StorageSettings{}
		}
		return StorageSettings{ConnectionString: Secret(expanded)}
	}
	s := StorageSettings{
		QueueServiceURL: l.serviceURL(Storage+"__queueServiceUri", ""),
		BlobServiceURL:  l.serviceURL(Storage+"__blobServiceUri", ""),
		TableServiceURL: l.serviceURL(Storage+"__tableServiceUri", ""),
		Credential:      strings.ToLower(l.get(Storage + "__credential")),
		ClientID:        l.get(Storage + "__clientId"),
	}
	if name := l.get(Storage + "__accountName"); name != "" {
		// The name becomes a host name and receives the identity's storage token: anything but an account
		// name (evil.example#, a dot, a slash) would send that token elsewhere.
		if !isAccountName(name) {
			l.fail(Storage+"__accountName", "must be a storage account name: 3 to 24 lower-case letters and digits")
			return s
		}
		if s.QueueServiceURL == "" {
			s.QueueServiceURL = "https://" + name + ".queue.core.windows.net"
		}
		if s.BlobServiceURL == "" {
			s.BlobServiceURL = "https://" + name + ".blob.core.windows.net"
		}
		if s.TableServiceURL == "" {
			s.TableServiceURL = "https://" + name + ".table.core.windows.net"
		}
	}
	if s.Credential != "" && s.Credential != "managedidentity" {
		l.fail(Storage+"__credential", "must be managedidentity or empty")
	}
	return s
}

func (l *loader) serviceURL(name, def string) string {
	v := l.get(name)
	if v == "" {
		return def
	}
	u, err := url.Parse(v)
	if err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && IsLoopback(u.Hostname()))) {
		l.fail(name, "must be an https service URL such as https://<account>.queue.core.windows.net")
		return ""
	}
	return strings.TrimRight(v, "/")
}

// ExpandDevelopmentStorage turns UseDevelopmentStorage=true (optionally with DevelopmentStorageProxyUri) into
// the full Azurite connection string, and checks that any other string names an account or endpoints. It
// reports false for text that is not a connection string.
func ExpandDevelopmentStorage(cs string) (string, bool) {
	kv := parseConnectionString(cs)
	if kv == nil {
		return "", false
	}
	if strings.EqualFold(kv["usedevelopmentstorage"], "true") {
		scheme, host := "http", "127.0.0.1"
		if p := kv["developmentstorageproxyuri"]; p != "" {
			u, err := url.Parse(p)
			if err != nil || u.Hostname() == "" {
				return "", false
			}
			scheme, host = u.Scheme, u.Hostname()
		}
		base := scheme + "://" + host
		return "DefaultEndpointsProtocol=" + scheme + ";AccountName=devstoreaccount1;AccountKey=" + AzuriteAccountKey +
			";BlobEndpoint=" + base + ":10000/devstoreaccount1;QueueEndpoint=" + base + ":10001/devstoreaccount1" +
			";TableEndpoint=" + base + ":10002/devstoreaccount1;", true
	}
	if kv["accountname"] == "" && kv["queueendpoint"] == "" && kv["blobendpoint"] == "" && kv["tableendpoint"] == "" {
		return "", false
	}
	return cs, true
}

// parseConnectionString splits key=value pairs separated by semicolons; keys are lower-cased. It returns
// nil when a non-empty part has no '='.
func parseConnectionString(cs string) map[string]string {
	kv := map[string]string{}
	for _, part := range strings.Split(cs, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil
		}
		kv[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
	}
	if len(kv) == 0 {
		return nil
	}
	return kv
}

// isAccountName reports whether s follows Azure's rule for storage account names: 3 to 24 characters, lower-case
// letters and digits only.
func isAccountName(s string) bool {
	if len(s) < 3 || len(s) > 24 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// Secrets lists every secret the settings hold, for internal/redact: the function keys in the notification
// URLs, the clientStates, the client secret and certificate password, and the storage account key or SAS.
func (c *Config) Secrets() []string {
	out := redact.FunctionKeys(c.NotificationURL, c.LifecycleNotificationURL)
	for _, s := range []Secret{c.ClientState, c.ClientStatePrevious, c.ClientSecret, c.CertificatePassword} {
		if s.IsSet() {
			out = append(out, s.Reveal())
		}
	}
	for _, part := range strings.Split(c.Storage.ConnectionString.Reveal(), ";") {
		name, value, _ := strings.Cut(part, "=")
		switch {
		case value == "":
		case strings.EqualFold(name, "AccountKey"):
			out = append(out, value)
		case strings.EqualFold(name, "SharedAccessSignature"):
			out = append(out, value)
			if q, err := url.ParseQuery(value); err == nil && q.Get("sig") != "" {
				out = append(out, q.Get("sig"))
			}
		}
	}
	return out
}
