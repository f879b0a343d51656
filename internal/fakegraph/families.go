package fakegraph

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// A resource family (the directory, drives, mailboxes, Teams messages) is one registerFamily call in the
// family's own file: its subscription rules (what Graph accepts on POST /subscriptions for its resources),
// its Graph and control routes, the roles its Graph paths need, and its state. The shared code
// (subscriptions.go, delivery.go, http.go, auth) looks families up here and never switches on one.

// family is what one resource family adds to the double.
type family struct {
	name  string
	rules []subscriptionRule
	// routes and controlRoutes mount the family's Graph routes and its /_control/ routes (the latter only
	// with Options.ControlAPI) on s.mux. Either may be nil.
	routes, controlRoutes func(s *Server)
	// pathRoles names the application roles a Graph path of the family needs (ok=false: not the family's
	// path). The token's roles are checked against them before the handler runs.
	pathRoles func(path string) (roles []string, ok bool)
	// sharedRoles are the roles that let a token reach the shared paths (/subscriptions, $batch) for
	// this family; the handlers then check the role the resource needs.
	sharedRoles []string
	// defaultRoles join the roles of issued access tokens when Options.AppRoles is nil.
	defaultRoles []string
	// newState builds the family's state when the Server is created (it may apply defaults to s.opts);
	// familyState returns it. It is guarded by s.mu.
	newState func(s *Server) any
	// ready runs once every family's state exists, before New returns (e.g. to add what Options names). May be nil.
	ready func(s *Server)
	// clearFaults undoes the family's own faults on ClearFaults (s.mu held). May be nil.
	clearFaults func(s *Server)
}

var families []family

// registerFamily adds a family; call it from an init func in the family's file.
func registerFamily(f family) {
	if f.name == "" || slices.ContainsFunc(families, func(g family) bool { return g.name == f.name }) {
		panic("fakegraph: family name empty or registered twice: " + f.name)
	}
	for i := range f.rules {
		f.rules[i].family = f.name
	}
	families = append(families, f)
}

// familyState returns the state newState built for the family name.
func (s *Server) familyState(name string) any { return s.famState[name] }

func (s *Server) initFamilies() {
	if s.opts.AppRoles == nil {
		s.opts.AppRoles = []string{"User.Read.All", "Group.Read.All"}
		for _, f := range families {
			s.opts.AppRoles = append(s.opts.AppRoles, f.defaultRoles...)
		}
	}
	s.famState = map[string]any{}
	for _, f := range families {
		if f.newState != nil {
			s.famState[f.name] = f.newState(s)
		}
	}
	for _, f := range families {
		if f.ready != nil {
			f.ready(s)
		}
	}
}

func (s *Server) familyRoutes() {
	for _, f := range families {
		if f.routes != nil {
			f.routes(s)
		}
		if f.controlRoutes != nil && s.opts.ControlAPI {
			f.controlRoutes(s)
		}
	}
}

func (s *Server) clearFamilyFaultsLocked() {
	for _, f := range families {
		if f.clearFaults != nil {
			f.clearFaults(s)
		}
	}
}

// familyPathRoles returns the roles a family claims for a Graph path (ok=false: no family claims it).
func familyPathRoles(path string) ([]string, bool) {
	for _, f := range families {
		if f.pathRoles == nil {
			continue
		}
		if roles, ok := f.pathRoles(path); ok {
			return roles, true
		}
	}
	return nil, false
}

// familySharedRoles is every family's sharedRoles.
func familySharedRoles() []string {
	var out []string
	for _, f := range families {
		out = append(out, f.sharedRoles...)
	}
	return out
}

// ---- subscription rules ----

// richRule says whether a family's subscriptions may, or must, ask for resource data.
type richRule int

const (
	richNever    richRule = iota // includeResourceData true → 400
	richAllowed                  // includeResourceData optional; when true an encryption certificate and its id are required
	richRequired                 // includeResourceData must be true (choice per family: the double's own strictness)
)

// resourceRef is a subscription resource parsed by its family's rule.
type resourceRef struct {
	Coll  string   // what the family calls the collection, e.g. "users", "groups", "drives", "messages"
	IDs   []string // the ids in the path, in order (empty for a whole collection)
	Query string   // the resource's query string, without '?' (e.g. a $select), "" when none
}

// ID is the i-th id of the path, "" when there is none.
func (r resourceRef) ID(i int) string {
	if i < len(r.IDs) {
		return r.IDs[i]
	}
	return ""
}

// subscriptionQuota is one of Graph's limits on how many subscriptions may exist together.
type subscriptionQuota struct {
	// scope names the set of subscriptions sharing the limit: subscriptions of the same family whose scope is
	// equal count together (e.g. "" for every subscription of the family, or the drive id for a per-drive limit).
	scope func(ref resourceRef) string
	// allApps: every app's subscriptions count (e.g. a mailbox's limit); else only this app's.
	allApps bool
	limit   func(o *Options) int // ≤0: unlimited
	message string               // Graph's 403 message; %d is the limit
}

// subscriptionRule is what Graph accepts on POST /subscriptions for one resource pattern.
type subscriptionRule struct {
	family  string // set by registerFamily
	pattern string // e.g. "drives/{drive-id}/root", for error messages
	// match parses a resource already stripped of Graph's base URL and leading '/', split into path
	// segments (original case) and its query ("" when none). ok=false: not this rule's resource.
	match                 func(segs []string, query string) (resourceRef, bool)
	changeTypes           []string // accepted change types
	badChangeType         string   // the 400 message for another change type; %s is the change type (default "Invalid 'changeType' attribute: '%s'")
	maxLifetimeMinutes    int      // beyond it: 400 when Options.RejectExpiryBeyondMax
	lifecycleRequiredOver int      // minutes; a longer lifetime requires a lifecycleNotificationUrl (0: never required)
	rich                  richRule
	richRefusal           string // the 400 message when rich is richNever and includeResourceData is true
	roles                 func(ref resourceRef) []string
	quotas                []subscriptionQuota
	check                 func(s *Server, req *subRequest, ref resourceRef) string // optional family check (s.mu not held): "" or a 400 message
	// forbid is an optional family refusal decided with the quotas (s.mu held): a 403's Graph error code and
	// message, or "" (e.g. a mailbox an Exchange application access policy excludes).
	forbid                   func(s *Server, ref resourceRef) (code, msg string)
	lifecycleRequiredMessage string // the 400 message when a lifecycleNotificationUrl is missing; %d is lifecycleRequiredOver
	// patch takes the family's own PATCH fields (e.g. a new encryption certificate) beyond expirationDateTime
	// and notificationUrl (s.mu not held): a 400 message, or apply, run under s.mu on the live subscription
	// with the shared fields (nil: nothing to apply). Nil: the family has no such fields.
	patch func(s *Server, req *subRequest, cur Subscription) (apply func(*Subscription), msg string)
}

// splitResource strips Graph's base URL and the leading slash and splits the path from its query.
func splitResource(res string) (segs []string, query string) {
	r := strings.TrimPrefix(res, "https://graph.microsoft.com/v1.0")
	r = strings.TrimPrefix(r, "/")
	r, query, _ = strings.Cut(r, "?")
	return strings.Split(r, "/"), query
}

// matchResource finds the rule that accepts a subscription resource.
func matchResource(res string) (*subscriptionRule, resourceRef, bool) {
	segs, query := splitResource(res)
	for fi := range families {
		for ri := range families[fi].rules {
			rule := &families[fi].rules[ri]
			if ref, ok := rule.match(segs, query); ok {
				return rule, ref, true
			}
		}
	}
	return nil, resourceRef{}, false
}

// supportedPatterns lists every rule's pattern, for the 400 on an unknown resource.
func supportedPatterns() string {
	var ps []string
	for _, f := range families {
		for _, r := range f.rules {
			ps = append(ps, r.pattern)
		}
	}
	return strings.Join(ps, ", ")
}

// parseChangeTypes splits a changeType list into its sorted distinct values; bad is the first value not in
// allowed ("" when all are; allowed nil accepts anything).
func parseChangeTypes(ct string, allowed []string) (set []string, bad string) {
	for _, p := range strings.Split(ct, ",") {
		p = strings.TrimSpace(p)
		if allowed != nil && !slices.Contains(allowed, p) {
			return nil, p
		}
		if !slices.Contains(set, p) {
			set = append(set, p)
		}
	}
	sort.Strings(set)
	return set, ""
}

// refusal checks a create request against its rule: the 400 message, or "".
func (rule *subscriptionRule) refusal(s *Server, req *subRequest, ref resourceRef) string {
	if _, bad := parseChangeTypes(*req.ChangeType, rule.changeTypes); bad != "" {
		msg := rule.badChangeType
		if msg == "" {
			msg = "Invalid 'changeType' attribute: '%s'"
		}
		return fmt.Sprintf(msg, bad)
	}
	rich := req.IncludeResourceData != nil && *req.IncludeResourceData
	switch {
	case rich && rule.rich == richNever:
		if rule.richRefusal != "" {
			return rule.richRefusal
		}
		return "Invalid 'includeResourceData' attribute: resource data is not supported for " + rule.pattern + "."
	case !rich && rule.rich == richRequired:
		return "Invalid 'includeResourceData' attribute: " + rule.pattern + " requires includeResourceData true (fakegraph)."
	case rich && (req.EncryptionCertificate == nil || *req.EncryptionCertificate == ""):
		return "Missing 'encryptionCertificate' attribute: it is required when includeResourceData is true."
	case rich && (req.EncryptionCertificateID == nil || *req.EncryptionCertificateID == ""):
		return "Missing 'encryptionCertificateId' attribute: it is required when includeResourceData is true."
	}
	if rule.check != nil {
		return rule.check(s, req, ref)
	}
	return ""
}

// lifecycleRefusal is the 400 message when a lifetime ending at exp needs a lifecycleNotificationUrl
// the subscription lacks, else "".
func (rule *subscriptionRule) lifecycleRefusal(now, exp time.Time, hasLifecycle bool) string {
	if rule.lifecycleRequiredOver <= 0 || hasLifecycle || !exp.After(now.Add(time.Duration(rule.lifecycleRequiredOver)*time.Minute)) {
		return ""
	}
	msg := rule.lifecycleRequiredMessage
	if msg == "" {
		msg = "Invalid 'lifecycleNotificationUrl' attribute: it is required for a subscription to this resource that lives longer than %d minutes."
	}
	return fmt.Sprintf(msg, rule.lifecycleRequiredOver)
}
