// Package config reads the app settings (README.md, "Settings") into one Config, in one place.
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

	"github.com/graphwebhooks/graph-webhooks-go/internal/family"
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
	GroupSelect              = "GRAPH_GROUP_SELECT"
	DriveItemSelect          = "GRAPH_DRIVEITEM_SELECT"
	RenewSchedule            = "RENEW_SCHEDULE"
	ResyncInitial            = "RESYNC_INITIAL"
	ResyncContainer          = "RESYNC_CONTAINER"
	StateTable               = "STATE_TABLE"
	EventsUnchanged          = "EVENTS_UNCHANGED"
)

// Defaults for optional settings.
const (
	DefaultGraphBaseURL    = "https://graph.microsoft.com/v1.0"
	DefaultChangeType      = "updated,deleted"
	DefaultResyncInitial   = "latest"
	DefaultResyncContainer = "graph-webhooks"
	DefaultStateTable      = "graphstate"
	DefaultEventsUnchanged = "suppress"
)

// DefaultUserSelect is the set of user properties fetched and put in events when GRAPH_USER_SELECT is empty.
var DefaultUserSelect = strings.Split(family.Users.DefaultSelect, ",")

// DefaultGroupSelect is the set of group properties fetched and put in events when GRAPH_GROUP_SELECT is empty.
var DefaultGroupSelect = strings.Split(family.Groups.DefaultSelect, ",")

// DefaultDriveItemSelect is the set of drive item properties read and put in events when
// GRAPH_DRIVEITEM_SELECT is empty.
var DefaultDriveItemSelect = strings.Split(family.DriveItems.DefaultSelect, ",")

// The directory collections the product follows. Their ids are GUIDs.
const (
	Users  = "users"
	Groups = "groups"
)

// ResourceSpec is one entry of GRAPH_RESOURCE, as its family read it: a whole collection ("users"), one
// object of it ("groups/{id}"), a drive ("drives/{drive-id}").
type ResourceSpec = family.Entry

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
	Resources                []ResourceSpec // at least one; at most one whole-collection entry per collection
	ChangeTypes              []string       // sorted, e.g. [deleted updated]; for the directory's entries
	UserSelect               []string       // always includes id
	GroupSelect              []string       // always includes id
	// Selects holds every kind's select (UserSelect and GroupSelect among them), by collection.
	Selects         map[string][]string
	RenewSchedule   string
	ResyncInitial   string // latest or full
	ResyncContainer string
	StateTable      string // Table storage table of the last emitted object states
	EventsUnchanged string // suppress or emit

	Storage StorageSettings
	Teams   TeamsSettings // teams.go

	Mailboxes MailboxSettings // GRAPH_MAILBOXES and the settings that go with it (mailboxes.go)

	problems map[string]string // setting → what is wrong with it
}

// ChangeType is the changeType value Graph wants: a comma-separated list.
func (c *Config) ChangeType() string { return strings.Join(c.ChangeTypes, ",") }

// Collections lists the resync scopes GRAPH_RESOURCE implies, each once, in the order first named: a
// directory entry's collection ("users", "groups"), a drive entry itself ("drives/{drive-id}").
func (c *Config) Collections() []string {
	var out []string
	for _, r := range c.Resources {
		if s := family.ScopeOf(r); s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// Plans lists the subscriptions GRAPH_RESOURCE implies, one per entry.
func (c *Config) Plans() []family.Plan {
	out := make([]family.Plan, 0, len(c.Resources))
	for _, r := range c.Resources {
		if p, ok := c.PlanOf(r); ok {
			out = append(out, p)
		}
	}
	return out
}

// PlanOf is the subscription one GRAPH_RESOURCE entry implies with these settings.
func (c *Config) PlanOf(r ResourceSpec) (family.Plan, bool) {
	p, ok := family.PlanOf(r, c.ChangeTypes)
	return c.withTeamsModel(p), ok
}

// Select is the property list fetched and put in events for a collection ("users", "driveItems"); nil
// for a collection no family has.
func (c *Config) Select(collection string) []string {
	k, _, ok := family.KindOf(collection)
	if !ok {
		return nil
	}
	return c.Selects[k.Collection]
}

// SelectSetting names the setting behind Select(collection), for messages ("" for an unknown collection).
func SelectSetting(collection string) string {
	k, _, _ := family.KindOf(collection)
	return k.SelectSetting
}

// Only is, for a collection GRAPH_RESOURCE names by single objects only, the set of those object ids (lower
// case); nil when the whole collection is followed.
func (c *Config) Only(collection string) map[string]bool {
	var only map[string]bool
	for _, r := range c.Resources {
		if r.Collection != collection {
			continue
		}
		if r.ID == "" {
			return nil
		}
		if only == nil {
			only = map[string]bool{}
		}
		only[strings.ToLower(r.ID)] = true
	}
	return only
}

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
		Resources:                l.resources(),
		ChangeTypes:              l.changeTypes(),
		Selects:                  l.selects(),
		RenewSchedule:            l.schedule(),
		ResyncInitial:            l.oneOf(ResyncInitial, DefaultResyncInitial, "latest", "full"),
		ResyncContainer:          l.storageName(ResyncContainer, DefaultResyncContainer, containerRE, "a blob container name: 3 to 63 lower-case letters, digits and single hyphens"),
		StateTable:               l.storageName(StateTable, DefaultStateTable, tableRE, "a table name: 3 to 63 letters and digits, not starting with a digit"),
		EventsUnchanged:          l.oneOf(EventsUnchanged, DefaultEventsUnchanged, "suppress", "emit"),
		Storage:                  l.storage(),
		Teams:                    l.teams(),
		Mailboxes:                l.mailboxes(),
	}
	c.UserSelect, c.GroupSelect = c.Selects[Users], c.Selects[Groups]
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
	return c.teamsMissing(setting)
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
	if len(v) >= len(eventHubPrefix) && strings.EqualFold(v[:len(eventHubPrefix)], eventHubPrefix) {
		u, err := url.Parse(v[len(eventHubPrefix):])
		if err != nil || u.Scheme != "https" || u.Host == "" || !strings.HasPrefix(u.Path, "/eventhubname/") || len(u.Path) == len("/eventhubname/") {
			l.fail(name, "must be an Event Hubs URL of the form EventHub:https://<namespace>.servicebus.windows.net/eventhubname/<hub>?tenantId=<tenant domain>")
			return ""
		}
		return v
	}
	u, err := url.Parse(v)
	if err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && IsLoopback(u.Hostname()))) {
		l.fail(name, "must be the public https URL of the webhook function (Graph refuses plain http), or an EventHub: URL")
		return ""
	}
	return v
}

// eventHubPrefix starts a notification URL that has Graph deliver into Azure Event Hubs.
const eventHubPrefix = "eventhub:"

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

// resources parses GRAPH_RESOURCE: a comma-separated list of entries, each read by its family
// (internal/family): users, groups, users/{id}, groups/{id}, drives/{drive-id}.
func (l *loader) resources() []ResourceSpec {
	def := []ResourceSpec{{Collection: Users}}
	v := l.get(Resource)
	if strings.TrimSpace(v) == "" {
		return def
	}
	var out []ResourceSpec
	for _, e := range strings.Split(v, ",") {
		e = strings.Trim(strings.TrimSpace(e), "/")
		if e == "" {
			continue
		}
		r, _, err := family.ParseEntry(e)
		if err != nil {
			l.fail(Resource, "must be a comma-separated list of %s", family.EntryGrammar())
			return def
		}
		for _, o := range out {
			if o.Collection != r.Collection {
				continue
			}
			if o == r {
				l.fail(Resource, "names %s twice", r.Path())
				return def
			}
			if o.ID == "" || r.ID == "" {
				l.fail(Resource, "names both %s and one of its objects: the whole collection already covers it", r.Collection)
				return def
			}
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return def
	}
	return out
}

// selects reads the select setting of every kind of every family.
func (l *loader) selects() map[string][]string {
	out := map[string][]string{}
	for _, k := range family.Kinds() {
		out[k.Collection] = l.selectList(k.SelectSetting, strings.Split(k.DefaultSelect, ","), k.What)
	}
	return out
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

func (l *loader) selectList(name string, def []string, what string) []string {
	v := l.get(name)
	if v == "" {
		return slices.Clone(def)
	}
	out := []string{"id"}
	for _, p := range strings.Split(v, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !propertyRE.MatchString(p) {
			l.fail(name, "must be a comma-separated list of %s property names such as displayName,mail", what)
			return slices.Clone(def)
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

// Azure Storage's naming rules for blob containers, and for tables (3 to 63 letters and digits, not
// starting with a digit).
var (
	containerRE = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9]|-[a-z0-9]){2,62}$`)
	tableRE     = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]{2,62}$`)
)

// storageName reads a setting that names a container or a table: def when empty, def and a problem when
// it breaks the naming rule re (said in words by rule).
func (l *loader) storageName(name, def string, re *regexp.Regexp, rule string) string {
	v := l.get(name)
	if v == "" {
		return def
	}
	if !re.MatchString(v) {
		l.fail(name, "must be %s", rule)
		return def
	}
	return v
}
