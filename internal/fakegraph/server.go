package fakegraph

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Defaults applied by New when the corresponding Options field is zero.
const (
	DefaultNotificationBatchSize = 50                    // choice: Graph's maximum is unpublished (docs/graph-facts.md §2.1); 50 > the product's 20-per-message chunk, so chunking is exercised
	DefaultCoalesceWindow        = 20 * time.Millisecond // choice: changes within this window share POSTs
	DefaultDeliveryRetryWindow   = 2 * time.Minute       // Graph: 4 h (docs/graph-facts.md §2.2); compressed for tests
	DefaultDeliveryBackoff       = 200 * time.Millisecond
	DefaultHandshakeTimeout      = 10 * time.Second // docs/graph-facts.md §1.2 step 3
	DefaultDeliveryTimeout       = 3 * time.Second  // docs/graph-facts.md §2.2
	DefaultSubscriptionPageSize  = 2                // choice: small so @odata.nextLink paging is exercised
	DefaultUserPageSize          = 5                // choice: small so paging of /users and /users/delta is exercised
	DefaultGroupPageSize         = 5                // choice: as DefaultUserPageSize, for /groups and /groups/delta
	DefaultGroupMembersPerPage   = 100              // members per page of /groups/{id}/members and members@delta entries per /groups/delta page (choice: Graph's default page of members is 100)
	DefaultMaxSubscriptions      = 100              // per app+tenant quota (docs/graph-facts.md §3.2)
	DefaultManagedIdentityHeader = "fakegraph-identity-header"
	MaxExpiryMinutes             = 41760 // docs/graph-facts.md §3.1
	MinExpiryMinutes             = 45    // docs/graph-facts.md §1.1 / docs/graph-facts.md §3.1

	// GraphChangeTrackingAppID is the caller (azp/appid) of Graph's validationTokens (docs/graph-facts.md §2.4).
	GraphChangeTrackingAppID = "0bf30f3b-4a52-48df-9a82-234910c4a086"
	// GraphResource is Microsoft Graph's resource identifier.
	GraphResource = "https://graph.microsoft.com"
)

// Options configures a Server. Zero values get the defaults documented per field.
type Options struct {
	TenantID              string            // GUID; token endpoint path /{tenant}/... (default: a random GUID)
	ClientID              string            // the app registration (default: a random GUID)
	ClientSecret          string            // accepted secret (client_credentials); empty: secrets are refused
	ClientCert            *x509.Certificate // optional: accept client_assertion JWTs signed by this cert's key (RS256/PS256, x5t or x5t#S256 header)
	ManagedIdentityHeader string            // value expected in X-IDENTITY-HEADER on the MI endpoint (default DefaultManagedIdentityHeader)
	Clock                 func() time.Time  // default time.Now; governs subscription expiry, eventTime, deletedDateTime, validation tokens, replication lag, delta token age
	NotificationBatchSize int               // max notifications per POST to a subscriber (default DefaultNotificationBatchSize)
	DeliveryRetryWindow   time.Duration     // how long failed deliveries are retried (Graph: 4 h; default DefaultDeliveryRetryWindow)
	DeliveryBackoff       time.Duration     // first retry delay, doubling (default DefaultDeliveryBackoff)
	HandshakeTimeout      time.Duration     // default 10 s (Graph's limit)
	DeliveryTimeout       time.Duration     // first attempt: a reply slower than this counts as failure (Graph: 3 s)
	// RetryAttemptTimeout bounds each retry attempt (Graph: 10 s, docs/graph-facts.md §2.2).
	// Default: DeliveryTimeout*10/3, i.e. 10 s when DeliveryTimeout is Graph's 3 s (choice: scales with compressed time).
	RetryAttemptTimeout time.Duration
	// RejectExpiryBeyondMax refuses expirationDateTime beyond 41,760 min with 400 (stricter than
	// Graph, on purpose; docs/graph-facts.md §3.1 says such requests "may start failing"). Use NewOptions to get
	// it true by default; with a plain Options literal it is whatever you set.
	RejectExpiryBeyondMax bool
	HTTPClient            *http.Client // client used to POST notifications/handshakes (default: trusts system roots + the double's own cert, accepts http:// loopback, does not follow redirects)
	EventHubs             EventHubSink // receives deliveries to EventHub: notification URLs (eventhubs.go); nil: such deliveries fail
	Logger                *slog.Logger // default: discards

	// Listening, paging, quotas and identities.
	Addr                   string        // listen address, must be loopback (default 127.0.0.1:0)
	CoalesceWindow         time.Duration // default DefaultCoalesceWindow; negative: only Flush sends
	SubscriptionPageSize   int           // GET /subscriptions page size (default DefaultSubscriptionPageSize)
	UserPageSize           int           // GET /users and /users/delta page size (default DefaultUserPageSize)
	MaxSubscriptions       int           // per app+tenant quota, 403 beyond (default DefaultMaxSubscriptions; negative: unlimited)
	ServicePrincipalID     string        // the app's service principal object id = creatorId (default: random GUID)
	AppRoles               []string      // roles in issued access tokens (default ["User.Read.All", "Group.Read.All"] plus each family's defaultRoles, e.g. Files.Read.All)
	DuplicateNotifications int           // extra copies of each change notification (Graph sends duplicates, docs/graph-facts.md §2.5); default 0
	// NotificationTenantField picks the envelope's tenant field: "tenantId" (default), "organizationId"
	// (observed variant, docs/graph-facts.md §2.1/§5), or "none" (only resourceData.organizationId remains).
	NotificationTenantField string
	// LenientHandshake accepts a validation reply with any Content-Type. By default the double also
	// requires text/plain (docs/graph-facts.md §1.2 step 3), which is stricter than what Graph is known to check.
	LenientHandshake bool
	ControlAPI       bool // mount the /_control/ API (see package doc); cmd/fakegraph turns it on

	// Groups.
	GroupPageSize int // groups per page of GET /groups and /groups/delta (default DefaultGroupPageSize)
	// GroupMembersPerPage bounds the members of GET /groups/{id}/members per page and the members@delta
	// entries per /groups/delta page, so a large group spans pages (default DefaultGroupMembersPerPage).
	GroupMembersPerPage int
	// NotifyMembersDelta adds a members@delta node (the changed member ids) to the resourceData of a
	// group notification caused by a membership change. Off by default: users report such a node, but
	// its shape and completeness are UNCONFIRMED (see the package doc).
	NotifyMembersDelta bool

	// Drives (drives.go).
	Drives                []Drive // drives New adds (empty, as AddDrive), so subscriptions to them can be made at once
	DrivePageSize         int     // delta items per page without $top (default DefaultDrivePageSize, UNCONFIRMED)
	DriveMaxTop           int     // the largest $top delta honours; larger ones are lowered to it (default DefaultDriveMaxTop, UNCONFIRMED)
	DriveMaxSubscriptions int     // subscriptions per drive, 403 beyond (default DefaultDriveMaxSubscriptions, UNCONFIRMED; negative: unlimited)
	// DriveResyncCode, when set, becomes innerError.code of delta's 410 resyncRequired: Graph's delta page names
	// the error types resyncChangesApplyDifferences and resyncChangesUploadDifferences, but an observed 410
	// (OneDrive/onedrive-api-docs issue 1356) carries code resyncRequired and no inner code, the default.
	DriveResyncCode string
	// DriveDeltaLag and DriveDeltaLagCalls: the initial SetDriveDeltaLag (a change reaches delta that long
	// on Clock after its tap, and after that many delta calls on its drive). Default 0: at once.
	DriveDeltaLag      time.Duration
	DriveDeltaLagCalls int
	// DriveNoParents leaves out of delta the parent folders Graph lists when something below them changed
	// (as the deltaExcludeParent request header does per request).
	DriveNoParents bool
	// DriveTapItemID gives taps a resourceData with an item id that does not name the changed item, as
	// some payloads seen in the wild do (UNCONFIRMED shape). Default: no resourceData, as documented.
	DriveTapItemID bool

	// Mailboxes (mailboxes.go).

	// Teams messages (teams.go).
}

// NewOptions returns Options with RejectExpiryBeyondMax true, the documented default.
func NewOptions(tenantID, clientID, clientSecret string) Options {
	return Options{TenantID: tenantID, ClientID: clientID, ClientSecret: clientSecret, RejectExpiryBeyondMax: true}
}

// Server is the running double.
type Server struct {
	opts     Options
	ts       *httptest.Server
	mux      *http.ServeMux
	client   *http.Client
	deliver  *http.Client
	certPEM  []byte
	key      *signingKey
	log      *slog.Logger
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	closeOne sync.Once

	mu            sync.Mutex
	users         map[string]*userRec // key: lower-case id
	groups        groupStore
	changes       []changeRec
	changeSeq     int64
	deltaGen      int64 // delta tokens of an older generation are expired (ExpireDeltaTokens)
	lastSeqNumber int64
	subs          map[string]*Subscription
	subOrder      []string
	subMeta       map[string]*subMeta
	reserved      map[string]string // resource|changeType -> id, during a create handshake
	famState      map[string]any    // each family's state (families.go), guarded by mu
	faults        []*faultRec
	batchThrottle int
	batchRetry    time.Duration
	lag           time.Duration
	drop          bool
	reqs          []Request

	dmu         sync.Mutex
	closed      bool
	queues      map[string]*urlQueue
	outstanding int
	deliveries  []Delivery
	batchSeq    int

	bmu     sync.Mutex
	changed chan struct{}
}

// New starts a Server serving TLS on 127.0.0.1 immediately. It panics if it cannot listen or
// generate keys (test setup failure).
func New(opts Options) *Server {
	if opts.TenantID == "" {
		opts.TenantID = newGUID()
	}
	if opts.ClientID == "" {
		opts.ClientID = newGUID()
	}
	if opts.ManagedIdentityHeader == "" {
		opts.ManagedIdentityHeader = DefaultManagedIdentityHeader
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.NotificationBatchSize <= 0 {
		opts.NotificationBatchSize = DefaultNotificationBatchSize
	}
	if opts.DeliveryRetryWindow <= 0 {
		opts.DeliveryRetryWindow = DefaultDeliveryRetryWindow
	}
	if opts.DeliveryBackoff <= 0 {
		opts.DeliveryBackoff = DefaultDeliveryBackoff
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if opts.DeliveryTimeout <= 0 {
		opts.DeliveryTimeout = DefaultDeliveryTimeout
	}
	if opts.RetryAttemptTimeout <= 0 {
		opts.RetryAttemptTimeout = opts.DeliveryTimeout * 10 / 3
	}
	if opts.CoalesceWindow == 0 {
		opts.CoalesceWindow = DefaultCoalesceWindow
	}
	if opts.SubscriptionPageSize <= 0 {
		opts.SubscriptionPageSize = DefaultSubscriptionPageSize
	}
	if opts.UserPageSize <= 0 {
		opts.UserPageSize = DefaultUserPageSize
	}
	if opts.GroupPageSize <= 0 {
		opts.GroupPageSize = DefaultGroupPageSize
	}
	if opts.GroupMembersPerPage <= 0 {
		opts.GroupMembersPerPage = DefaultGroupMembersPerPage
	}
	if opts.MaxSubscriptions == 0 {
		opts.MaxSubscriptions = DefaultMaxSubscriptions
	}
	if opts.ServicePrincipalID == "" {
		opts.ServicePrincipalID = newGUID()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}

	s := &Server{
		opts:     opts,
		log:      opts.Logger,
		key:      sharedSigningKey(),
		users:    map[string]*userRec{},
		subs:     map[string]*Subscription{},
		subMeta:  map[string]*subMeta{},
		reserved: map[string]string{},
		queues:   map[string]*urlQueue{},
		changed:  make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.initFamilies()

	host, _, err := net.SplitHostPort(opts.Addr)
	if err != nil || !isLoopbackHost(host) {
		panic(fmt.Sprintf("fakegraph: Addr %q must be a loopback host:port", opts.Addr))
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		panic(fmt.Sprintf("fakegraph: listen %s: %v", opts.Addr, err))
	}
	cert, certPEM, leaf := newTLSCert()
	s.certPEM = certPEM

	s.mux = http.NewServeMux()
	s.routes()
	s.ts = httptest.NewUnstartedServer(http.HandlerFunc(s.serveTop))
	s.ts.Listener.Close()
	s.ts.Listener = ln
	s.ts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	s.ts.Config.ErrorLog = slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)
	s.ts.StartTLS()

	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	s.client = &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2: true,
	}}
	if opts.HTTPClient != nil {
		s.deliver = opts.HTTPClient
	} else {
		roots, err := x509.SystemCertPool()
		if err != nil || roots == nil {
			roots = x509.NewCertPool()
		}
		roots.AddCert(leaf)
		s.deliver = &http.Client{
			Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}},
			// Choice: Graph is not documented to follow redirects; a 3xx is a non-2xx answer.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	s.log.Info("fakegraph started", "url", s.URL(), "tenant", opts.TenantID, "clientId", opts.ClientID)
	return s
}

// Close stops deliveries (queued notifications are discarded), waits for their goroutines and
// shuts the server down. It is safe to call more than once.
func (s *Server) Close() {
	s.closeOne.Do(func() {
		s.dmu.Lock()
		s.closed = true
		for _, q := range s.queues {
			if q.timer != nil {
				q.timer.Stop()
			}
		}
		s.dmu.Unlock()
		s.cancel()
		s.wg.Wait()
		s.ts.Close()
		if t, ok := s.client.Transport.(*http.Transport); ok {
			t.CloseIdleConnections()
		}
		if s.opts.HTTPClient == nil {
			s.deliver.CloseIdleConnections()
		}
		s.bump()
	})
}

// URL is https://127.0.0.1:port.
func (s *Server) URL() string { return s.ts.URL }

// GraphBaseURL is URL()+"/v1.0".
func (s *Server) GraphBaseURL() string { return s.ts.URL + "/v1.0" }

// AuthorityHost is URL()+"/", the value for AZURE_AUTHORITY_HOST / cloud.Configuration.ActiveDirectoryAuthorityHost.
func (s *Server) AuthorityHost() string { return s.ts.URL + "/" }

// Client returns an *http.Client that trusts the double's certificate.
func (s *Server) Client() *http.Client { return s.client }

// CertPEM is the double's self-signed certificate (its own CA), for SSL_CERT_FILE in a subprocess.
func (s *Server) CertPEM() []byte { return bytes.Clone(s.certPEM) }

// TenantID returns the tenant in use (generated when Options.TenantID was empty).
func (s *Server) TenantID() string { return s.opts.TenantID }

// ClientID returns the app registration's client id in use.
func (s *Server) ClientID() string { return s.opts.ClientID }

// ServicePrincipalID returns the app's service principal id (the creatorId of its subscriptions).
func (s *Server) ServicePrincipalID() string { return s.opts.ServicePrincipalID }

// ManagedIdentityEndpoint is the value for IDENTITY_ENDPOINT (App Service MI protocol 2019-08-01).
func (s *Server) ManagedIdentityEndpoint() string { return s.ts.URL + "/msi/token" }

// ManagedIdentityHeader is the value for IDENTITY_HEADER.
func (s *Server) ManagedIdentityHeader() string { return s.opts.ManagedIdentityHeader }

// TokenEndpoint is URL()+"/{tenant}/oauth2/v2.0/token".
func (s *Server) TokenEndpoint() string {
	return s.ts.URL + "/" + s.opts.TenantID + "/oauth2/v2.0/token"
}

func (s *Server) now() time.Time { return s.opts.Clock() }

// ---- request log ----

// Request is one entry of the request log.
type Request struct {
	Method, Path, RawQuery string
	Time                   time.Time // Clock() when the request arrived
	Status                 int
	Pattern                string // the route that served it, e.g. "GET /v1.0/users/{id}" (empty when none)
	InBatch                bool   // an inner request of a $batch (not on the wire; Count ignores these)
	Body                   []byte // request body, first 64 KiB
	Header                 http.Header
}

// Requests returns a copy of the request log (wire requests and, flagged InBatch, inner $batch requests).
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs...)
}

// ResetRequests empties the request log.
func (s *Server) ResetRequests() {
	s.mu.Lock()
	s.reqs = nil
	s.mu.Unlock()
}

// Count counts wire requests (not inner $batch items) with the method ("" = any) whose path starts with pathPrefix.
func (s *Server) Count(method, pathPrefix string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.reqs {
		if !r.InBatch && (method == "" || strings.EqualFold(method, r.Method)) && strings.HasPrefix(r.Path, pathPrefix) {
			n++
		}
	}
	return n
}

// CountBatchItems counts inner $batch requests like Count counts wire requests.
func (s *Server) CountBatchItems(method, pathPrefix string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.reqs {
		if r.InBatch && (method == "" || strings.EqualFold(method, r.Method)) && strings.HasPrefix(r.Path, pathPrefix) {
			n++
		}
	}
	return n
}

// ---- change broadcast, for WaitFor ----

func (s *Server) bump() {
	s.bmu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.bmu.Unlock()
}

func (s *Server) changedCh() <-chan struct{} {
	s.bmu.Lock()
	defer s.bmu.Unlock()
	return s.changed
}

// WaitFor returns nil once cond() is true, re-checking it whenever the double's state changes
// (a request is logged, a delivery attempt is recorded, a queue drains); ctx bounds the wait.
// cond must not call WaitFor.
func (s *Server) WaitFor(ctx context.Context, cond func() bool) error {
	for {
		ch := s.changedCh()
		if cond() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("fakegraph: condition not met: %w", ctx.Err())
		}
	}
}

// ---- faults ----

// Fault is an injected failure for the next Count matching calls.
type Fault struct {
	Status     int           // HTTP status to answer (0: none, only Hang)
	RetryAfter time.Duration // >0: Retry-After header in whole seconds, rounded up; 0: no header
	Hang       time.Duration // delay before answering (or before serving normally when Status is 0)
	Count      int           // how many matching calls (0 means 1; negative: until ClearFaults)
}

type faultRec struct {
	route string
	f     Fault
	left  int
}

var wildcardRE = regexp.MustCompile(`\{[^}]*\}`)

func normRoute(p string) string {
	p = strings.TrimSpace(wildcardRE.ReplaceAllString(p, "{}"))
	return strings.Join(strings.Fields(p), " ")
}

// Inject adds a fault for route, a pattern like "POST /v1.0/$batch", "GET /v1.0/users/{id}",
// "GET /v1.0/subscriptions", "POST /{tenant}/oauth2/v2.0/token" (wildcard names do not matter).
// It matches the route that serves the request, so "GET /v1.0/subscriptions" does not match
// "GET /v1.0/subscriptions/{id}". Inner $batch requests are matched too.
func (s *Server) Inject(route string, f Fault) {
	left := f.Count
	if left == 0 {
		left = 1
	}
	s.mu.Lock()
	s.faults = append(s.faults, &faultRec{route: normRoute(route), f: f, left: left})
	s.mu.Unlock()
}

// ClearFaults removes every injected fault, batch throttling, replication lag and notification dropping.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	s.faults, s.batchThrottle, s.lag, s.drop = nil, 0, 0, false
	s.clearFamilyFaultsLocked()
	s.mu.Unlock()
}

func (s *Server) takeFault(pattern string) *Fault {
	if pattern == "" {
		return nil
	}
	p := normRoute(pattern)
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, fr := range s.faults {
		if fr.route != p {
			continue
		}
		f := fr.f
		if fr.left > 0 {
			fr.left--
			if fr.left == 0 {
				s.faults = append(s.faults[:i], s.faults[i+1:]...)
			}
		}
		return &f
	}
	return nil
}

// ThrottleBatchItems makes the next n inner $batch items answer 429 with their own Retry-After
// header while the batch itself is 200 (docs/graph-facts.md §7).
func (s *Server) ThrottleBatchItems(n int, retryAfter time.Duration) {
	s.mu.Lock()
	s.batchThrottle, s.batchRetry = n, retryAfter
	s.mu.Unlock()
}

// SetReplicationLag makes a user added from now on answer 404 on GET for d (by Clock).
func (s *Server) SetReplicationLag(d time.Duration) {
	s.mu.Lock()
	s.lag = d
	s.mu.Unlock()
}

// DropNotifications makes the double drop change and lifecycle notifications instead of delivering them
// (recorded in Deliveries with Outcome "dropped"), as Graph does in its drop state (docs/graph-facts.md §2.2).
func (s *Server) DropNotifications(on bool) {
	s.mu.Lock()
	s.drop = on
	s.mu.Unlock()
}

// ---- TLS ----

func newTLSCert() (tls.Certificate, []byte, *x509.Certificate) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "fakegraph 127.0.0.1", Organization: []string{"fakegraph test double"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pemBytes, leaf
}

func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsLoopback()
}

func newGUID() string {
	var b [16]byte
	_, _ = io.ReadFull(rand.Reader, b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
