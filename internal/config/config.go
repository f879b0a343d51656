// Package config reads the app settings (design.md, "App settings") into one Config, in one place.
//
// Loading never fails: every setting is parsed, and what is missing or malformed is remembered by setting
// name. Each function then asks only for the settings it needs with Check, so that a webhook with no
// settings at all still answers Graph's validation handshake, and a function missing a setting fails with
// a sentence that names it.
package config

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/graphwebhooks/graph-webhooks-go/internal/redact"
)

// Setting names, as they appear in local.settings.json and the portal.
const (
	Storage                  = "AzureWebJobsStorage"
	TenantID                 = "AZURE_TENANT_ID"
	ClientID                 = "AZURE_CLIENT_ID"
	ClientSecret             = "AZURE_CLIENT_SECRET"
	CertificatePath          = "AZURE_CLIENT_CERTIFICATE_PATH"
	CertificatePassword      = "AZURE_CLIENT_CERTIFICATE_PASSWORD"
	AuthorityHost            = "AZURE_AUTHORITY_HOST"
	DisableInstanceDiscovery = "AZURE_DISABLE_INSTANCE_DISCOVERY"
	GraphBaseURL             = "GRAPH_BASE_URL"
	NotificationURL          = "GRAPH_NOTIFICATION_URL"
	LifecycleNotificationURL = "GRAPH_LIFECYCLE_NOTIFICATION_URL"
	ClientState              = "GRAPH_CLIENT_STATE"
	ClientStatePrevious      = "GRAPH_CLIENT_STATE_PREVIOUS"
	Resource                 = "GRAPH_RESOURCE"
	ChangeType               = "GRAPH_CHANGE_TYPE"
	UserSelect               = "GRAPH_USER_SELECT"
	RenewSchedule            = "RENEW_SCHEDULE"
	ResyncInitial            = "RESYNC_INITIAL"
	ResyncContainer          = "RESYNC_CONTAINER"
)

// Defaults for optional settings.
const (
	DefaultGraphBaseURL    = "https://graph.microsoft.com/v1.0"
	DefaultResource        = "users"
	DefaultChangeType      = "updated,deleted"
	DefaultResyncInitial   = "latest"
	DefaultResyncContainer = "graph-webhooks"
)

// DefaultUserSelect is the set of user properties fetched and put in events when GRAPH_USER_SELECT is empty.
var DefaultUserSelect = []string{"id", "displayName", "userPrincipalName", "mail", "accountEnabled", "jobTitle", "department"}

// Secret holds a value that must never reach a log: it prints as [redacted] through fmt, slog and JSON.
type Secret string

func (s Secret) String() string               { return redacted(s) }
func (s Secret) GoString() string             { return redacted(s) }
func (s Secret) LogValue() slog.Value         { return slog.StringValue(redacted(s)) }
func (s Secret) MarshalJSON() ([]byte, error) { return strconv.AppendQuote(nil, redacted(s)), nil }
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted(s)), nil }
func (s Secret) Reveal() string               { return string(s) }
func (s Secret) IsSet() bool                  { return s != "" }
func redacted(s Secret) string {
	if s == "" {
		return ""
	}
	return redact.Marker
}

// Config is every app setting, parsed.
type Config struct {
	TenantID                 string
	ClientID                 string
	ClientSecret             Secret
	CertificatePath          string
	CertificatePassword      Secret
	AuthorityHost            string
	DisableInstanceDiscovery bool

	GraphBaseURL             string
	NotificationURL          string // may carry ?code=<function key>: never log it
	LifecycleNotificationURL string // defaults to NotificationURL
	ClientState              Secret
	ClientStatePrevious      Secret
	Resource                 string   // "users" or "users/{id}"
	ChangeTypes              []string // sorted, e.g. [deleted updated]
	UserSelect               []string // always includes id
	RenewSchedule            string
	ResyncInitial            string // latest or full
	ResyncContainer          string

	Storage StorageSettings

	problems map[string]string // setting → what is wrong with it
}

// ChangeType is the changeType value Graph wants: a comma-separated list.
func (c *Config) ChangeType() string { return strings.Join(c.ChangeTypes, ",") }

// Load reads every setting through getenv. It never fails; see Check.
func Load(getenv func(string) string) *Config {
	l := loader{getenv: getenv, problems: map[string]string{}}
	c := &Config{
		TenantID:                 l.guid(TenantID),
		ClientID:                 l.guid(ClientID),
		ClientSecret:             Secret(l.get(ClientSecret)),
		CertificatePath:          l.get(CertificatePath),
		CertificatePassword:      Secret(l.get(CertificatePassword)),
		AuthorityHost:            l.authority(),
		DisableInstanceDiscovery: l.boolean(DisableInstanceDiscovery),
		GraphBaseURL:             l.graphBaseURL(),
		NotificationURL:          l.notificationURL(NotificationURL),
		LifecycleNotificationURL: l.notificationURL(LifecycleNotificationURL),
		ClientState:              l.clientState(ClientState),
		ClientStatePrevious:      l.clientState(ClientStatePrevious),
		Resource:                 l.resource(),
		ChangeTypes:              l.changeTypes(),
		UserSelect:               l.userSelect(),
		RenewSchedule:            l.schedule(),
		ResyncInitial:            l.oneOf(ResyncInitial, DefaultResyncInitial, "latest", "full"),
		ResyncContainer:          l.container(),
		Storage:                  l.storage(),
	}
	if c.LifecycleNotificationURL == "" {
		c.LifecycleNotificationURL = c.NotificationURL
	}
	c.problems = l.problems
	return c
}

// Problem is one setting that is missing or malformed.
type Problem struct {
	Setting string
	Text    string // a plain sentence without the value (it may be a secret)
}

func (p Problem) Error() string { return p.Setting + " " + p.Text }

// Error lists every problem found by Check.
type Error struct{ Problems []Problem }

func (e *Error) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.Error()
	}
	return "app settings: " + strings.Join(parts, "; ")
}

// Check reports the named settings that are missing or malformed, or nil when all of them are usable.
// Required settings that are empty count as missing; optional ones with defaults never do.
func (c *Config) Check(settings ...string) error {
	var ps []Problem
	for _, s := range settings {
		if text, ok := c.problems[s]; ok {
			ps = append(ps, Problem{s, text})
			continue
		}
		if sub := c.subProblems(s); len(sub) > 0 {
			ps = append(ps, sub...) // AzureWebJobsStorage__accountName and the like: name the part at fault
			continue
		}
		if c.missing(s) {
			ps = append(ps, Problem{s, "is not set"})
		}
	}
	if len(ps) == 0 {
		return nil
	}
	return &Error{Problems: ps}
}

// subProblems lists the problems of the parts of a setting given as Setting__part (identity-based storage).
func (c *Config) subProblems(setting string) []Problem {
	var ps []Problem
	for name, text := range c.problems {
		if strings.HasPrefix(name, setting+"__") {
			ps = append(ps, Problem{name, text})
		}
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].Setting < ps[j].Setting })
	return ps
}

// Problems lists every malformed setting, for a start-up warning.
func (c *Config) Problems() []Problem {
	ps := make([]Problem, 0, len(c.problems))
	for s, text := range c.problems {
		ps = append(ps, Problem{s, text})
	}
	slices.SortFunc(ps, func(a, b Problem) int { return strings.Compare(a.Setting, b.Setting) })
	return ps
}

func (c *Config) missing(setting string) bool {
	switch setting {
	case TenantID:
		return c.TenantID == ""
	case ClientID:
		return c.ClientID == ""
	case NotificationURL:
		return c.NotificationURL == ""
	case ClientState:
		return !c.ClientState.IsSet()
	case Storage:
		return !c.Storage.IsSet()
	}
	return false
}

// loader parses settings and records problems.
type loader struct {
	getenv   func(string) string
	problems map[string]string
}

func (l *loader) get(name string) string { return strings.TrimSpace(l.getenv(name)) }

func (l *loader) fail(name, format string, args ...any) {
	l.problems[name] = fmt.Sprintf(format, args...)
}

var guidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func (l *loader) guid(name string) string {
	v := l.get(name)
	if v == "" {
		return ""
	}
	if !guidRE.MatchString(v) {
		if name == TenantID && strings.Contains(v, ".") {
			l.fail(name, "must be the tenant's GUID (Directory ID in the Entra admin center), not a domain name")
		} else {
			l.fail(name, "must be a GUID like 00000000-0000-0000-0000-000000000000")
		}
		return ""
	}
	return strings.ToLower(v)
}

func (l *loader) boolean(name string) bool {
	v := l.get(name)
	if v == "" {
		return false
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		l.fail(name, "must be true or false")
	}
	return b
}

func (l *loader) authority() string {
	v := l.get(AuthorityHost)
	if v == "" {
		return ""
	}
	u, err := url.Parse(v)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		l.fail(AuthorityHost, "must be an https URL such as https://login.microsoftonline.us/")
		return ""
	}
	if !strings.HasSuffix(v, "/") {
		v += "/"
	}
	return v
}

func (l *loader) graphBaseURL() string {
	v := l.get(GraphBaseURL)
	if v == "" {
		return DefaultGraphBaseURL
	}
	u, err := url.Parse(v)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" {
		l.fail(GraphBaseURL, "must be an https URL with the API version, such as %s", DefaultGraphBaseURL)
		return DefaultGraphBaseURL
	}
	return strings.TrimRight(v, "/")
}

// notificationURL accepts https, and http only for loopback hosts (local tests against the Graph double).
func (l *loader) notificationURL(name string) string {
	v := l.get(name)
	if v == "" {
		return ""
	}
	u, err := url.Parse(v)
	if err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && IsLoopback(u.Hostname()))) {
		l.fail(name, "must be the public https URL of the webhook function (Graph refuses plain http)")
		return ""
	}
	return v
}

// IsLoopback reports whether host names this machine (127.0.0.0/8, ::1, localhost).
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (l *loader) clientState(name string) Secret {
	v := l.getenv(name) // not trimmed: the secret is compared byte for byte
	if v == "" {
		return ""
	}
	if n := len([]rune(v)); n < 16 || n > 128 {
		l.fail(name, "must be 16 to 128 characters long (it has %d); generate one with: openssl rand -base64 32", n)
		return ""
	}
	return Secret(v)
}

var userIDRE = regexp.MustCompile(`^[A-Za-z0-9@._-]+$`)

func (l *loader) resource() string {
	v := strings.Trim(l.get(Resource), "/")
	if v == "" {
		return DefaultResource
	}
	coll, id, hasID := strings.Cut(v, "/")
	if !strings.EqualFold(coll, "users") || (hasID && !userIDRE.MatchString(id)) {
		l.fail(Resource, "must be users or users/{id} (other resources are not supported yet)")
		return DefaultResource
	}
	if hasID {
		return "users/" + id
	}
	return "users"
}

func (l *loader) changeTypes() []string {
	v := l.get(ChangeType)
	if v == "" {
		v = DefaultChangeType
	}
	var out []string
	for _, t := range strings.Split(v, ",") {
		t = strings.ToLower(strings.TrimSpace(t))
		switch t {
		case "updated", "deleted":
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		case "created":
			l.fail(ChangeType, "cannot contain created: Graph sends user creations as updated and refuses created for users")
			return []string{"deleted", "updated"}
		default:
			l.fail(ChangeType, "must be a comma-separated list of updated and deleted")
			return []string{"deleted", "updated"}
		}
	}
	slices.Sort(out)
	return out
}

var propertyRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)

func (l *loader) userSelect() []string {
	v := l.get(UserSelect)
	if v == "" {
		return slices.Clone(DefaultUserSelect)
	}
	out := []string{"id"}
	for _, p := range strings.Split(v, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !propertyRE.MatchString(p) {
			l.fail(UserSelect, "must be a comma-separated list of user property names such as displayName,mail")
			return slices.Clone(DefaultUserSelect)
		}
		if !slices.ContainsFunc(out, func(q string) bool { return strings.EqualFold(p, q) }) {
			out = append(out, p)
		}
	}
	return out
}

func (l *loader) schedule() string {
	v := l.get(RenewSchedule)
	if v != "" && len(strings.Fields(v)) != 6 {
		l.fail(RenewSchedule, "must be an NCRONTAB expression with 6 fields (second minute hour day month weekday), such as 0 0 * * * *")
	}
	return v
}

func (l *loader) oneOf(name, def string, allowed ...string) string {
	v := strings.ToLower(l.get(name))
	if v == "" {
		return def
	}
	if !slices.Contains(allowed, v) {
		l.fail(name, "must be one of %s", strings.Join(allowed, ", "))
		return def
	}
	return v
}

var containerRE = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9]|-[a-z0-9]){2,62}$`)

func (l *loader) container() string {
	v := l.get(ResyncContainer)
	if v == "" {
		return DefaultResyncContainer
	}
	if !containerRE.MatchString(v) {
		l.fail(ResyncContainer, "must be a blob container name: 3 to 63 lower-case letters, digits and single hyphens")
		return DefaultResyncContainer
	}
	return v
}
