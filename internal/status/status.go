// Package status answers an operator's question "is this receiver working?" in one place: this app's Graph
// subscription per configured resource, the resync checkpoint per collection, and the depths of the queues.
// `handler status` prints its Report, and the renew timer logs each of its findings at error level so that an
// alert on the function's errors fires (docs/operations.md).
//
// A check never changes anything: it lists subscriptions, reads checkpoints, reads queue properties and
// peeks (a peek leaves messages where they are), and reads one row of the object-state table. Each storage
// service is checked on its own, so that a finding names the one that fails and how ("table storage: 503
// ServerBusy") while it lasts. Every call runs under one deadline (Timeout), so a
// receiver whose storage or Graph does not answer is reported as "could not check" in bounded time.
package status

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/graphwebhooks/graph-webhooks-go/internal/checkpoint"
	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
)

// Version is the schema version of Report's JSON form (docs/operations.md describes it).
const Version = 1

// Thresholds of the findings.
const (
	// MinLifeLeft: a subscription with less life than this needs attention. The timer renews at 26 days
	// left, so under 3 days means it has not managed to for more than three weeks.
	MinLifeLeft = 3 * 24 * time.Hour
	// MaxResyncAge: the timer starts a pass when the last completed one is a day old; none completed in
	// twice that means passes are failing or not starting.
	MaxResyncAge = 48 * time.Hour
	// DefaultTimeout bounds a whole check, so that `handler status` answers within 30 s.
	DefaultTimeout = 25 * time.Second
)

// Graph is what a check needs of the Graph client (*graph.Client).
type Graph interface {
	ListSubscriptions(ctx context.Context) ([]graph.Subscription, error)
}

// Checkpoints is what a check needs of the resync checkpoint store (*checkpoint.Store).
type Checkpoints interface {
	Load(ctx context.Context, collection string) (checkpoint.Checkpoint, checkpoint.ETag, error)
}

// Tables is what a check needs of the object-state store (*objectstate.Store): one read that tells whether
// Table storage answers.
type Tables interface {
	Probe(ctx context.Context) error
}

// Queues is what a check needs of the queue client (*storagequeue.Client).
type Queues interface {
	ApproximateCount(ctx context.Context, queue string) (int, error)
	OldestInserted(ctx context.Context, queue string) (time.Time, bool, error)
}

// Checker runs checks. Its client constructors are called on each check; an error from one (a missing
// setting, typically) makes that part "could not check".
type Checker struct {
	Resources   []string // GRAPH_RESOURCE entries
	Collections []string // resync checkpoints to read
	// Mine reports whether s is this app's subscription for resource: the rule the renew timer converges on.
	Mine func(s graph.Subscription, resource string) bool
	// Queue names.
	WorkQueue, PoisonQueue, ChangesQueue string
	// StallAfter is how long a pass in progress may stand still before it counts as stalled.
	StallAfter time.Duration

	Graph       func() (Graph, error)
	Checkpoints func() (Checkpoints, error)
	Queues      func() (Queues, error)
	Tables      func() (Tables, error) // nil: Table storage is not checked
	// Refusals reads Graph's refusals to subscribe to mailboxes (mailboxes.go); nil: no mailboxes.
	Refusals func() (Refusals, error)

	// WeakClientState says why GRAPH_CLIENT_STATE is weak (config.Config.WeakClientState), or "".
	WeakClientState string
	// MinLife is, per resource, the life left under which a subscription needs attention; nil, or 0 for a
	// resource, means MinLifeLeft (subscriptions Graph lets live only days are renewed more often).
	MinLife func(resource string) time.Duration
	// PreviousCertificateID is GRAPH_ENCRYPTION_CERTIFICATE_PREVIOUS_ID while a certificate rotation is
	// under way, or "": subscriptions still naming it are reported, so the operator knows when it can go.
	PreviousCertificateID string
	// Certificate is the current encryption certificate's id and expiry (GRAPH_ENCRYPTION_CERTIFICATE), when
	// one is set: reported when it expires within CertificateWarning.
	Certificate *Certificate

	Now     func() time.Time // the clock: required
	Timeout time.Duration    // 0: DefaultTimeout
}

// Health is the overall verdict.
type Health string

const (
	Healthy    Health = "healthy"
	Attention  Health = "attention" // something needs an operator
	CannotTell Health = "unknown"   // a part could not be checked
)

// ExitCode is the process exit code of `handler status` for h.
func (h Health) ExitCode() int {
	switch h {
	case Healthy:
		return 0
	case Attention:
		return 1
	}
	return 2
}

// Report is the result of one check; its JSON form is the stable schema of `handler status -json`.
type Report struct {
	V             int            `json:"v"`
	CheckedAt     time.Time      `json:"checkedAt"`
	Health        Health         `json:"health"`
	ExitCode      int            `json:"exitCode"`
	Subscriptions []Subscription `json:"subscriptions"`
	Resync        []Resync       `json:"resync"`
	Queues        []Queue        `json:"queues"`
	// Mailboxes are the mailboxes Graph refused to subscribe to (absent when no mailboxes are configured).
	Mailboxes *Mailboxes `json:"mailboxes,omitempty"`
	Findings  []Finding  `json:"findings"`
}

// Subscription states.
const (
	Live      = "live"
	Expired   = "expired"
	None      = "none"
	Unchecked = "unchecked" // Graph could not be asked
)

// Subscription is this app's subscription for one resource.
type Subscription struct {
	Resource string     `json:"resource"`
	State    string     `json:"state"` // live, expired, none, unchecked
	ID       string     `json:"id,omitempty"`
	Expires  *time.Time `json:"expires,omitempty"`
	DaysLeft *float64   `json:"daysLeft,omitempty"`
	// NotificationHost is the host the notifications go to (never the URL: its query holds the function key).
	NotificationHost string `json:"notificationHost,omitempty"`
	LifecycleURLSet  bool   `json:"lifecycleUrlSet"`
	Delivery         string `json:"delivery,omitempty"` // webhook or eventhubs
	// Duplicates counts further subscriptions matching the resource (a race; the timer deletes them).
	Duplicates int `json:"duplicates,omitempty"`
	// EncryptionCertificateID is the certificate a rich subscription's notifications are encrypted for.
	EncryptionCertificateID string `json:"encryptionCertificateId,omitempty"`
}

// Resync is the resync checkpoint of one collection.
type Resync struct {
	Collection    string `json:"collection"`
	Checked       bool   `json:"checked"`
	LastCompleted *Pass  `json:"lastCompleted"` // null: none ever completed (or not checked)
	InProgress    *Pass  `json:"inProgress"`    // null: idle
}

// Pass is a resync pass, completed or in progress.
type Pass struct {
	ID      string    `json:"id,omitempty"`
	Full    bool      `json:"full"`
	Reason  string    `json:"reason,omitempty"`
	Started time.Time `json:"started,omitzero"`
	// At is when it completed, or, in progress, when its checkpoint last moved.
	At         time.Time `json:"at"`
	AgoSeconds int64     `json:"agoSeconds"`
	Events     int       `json:"events"`
	Pages      int       `json:"pages"`
	Page       int       `json:"page,omitempty"` // in progress: the page being fetched (1-based)
	Stalled    bool      `json:"stalled"`        // in progress: has not moved for StallAfter
}

// Queue is one queue's depth.
type Queue struct {
	Role    string `json:"role"` // work, poison, changes
	Name    string `json:"name"`
	Checked bool   `json:"checked"`
	// ApproximateMessages is storage's estimate, including messages delayed for a retry.
	ApproximateMessages int `json:"approximateMessages"`
	// OldestAgeSeconds is the age of the oldest visible message at the front (poison queue only).
	OldestAgeSeconds *int64 `json:"oldestAgeSeconds,omitempty"`
}

// Certificate names the current encryption certificate and when it expires.
type Certificate struct {
	ID       string
	NotAfter time.Time
}

// CertificateWarning is how long before the encryption certificate expires `handler status` asks for a
// rotation: Graph stops encrypting for an expired one only when its subscriptions are renewed, and the timer
// refuses to renew with it.
const CertificateWarning = 30 * 24 * time.Hour

// Finding is one thing that needs an operator, or one part that could not be checked.
type Finding struct {
	Severity Health `json:"severity"` // attention or unknown
	Code     string `json:"code"`
	Subject  string `json:"subject"` // the resource, collection, queue, setting or service concerned
	Message  string `json:"message"`
	Action   string `json:"action"`
}

// Finding codes.
const (
	CodeNoSubscription     = "no-subscription"
	CodeSubscriptionExpiry = "subscription-expiring"
	CodePoison             = "poison-not-empty"
	CodeResyncOverdue      = "resync-overdue"
	CodeCheckpoint         = "checkpoint-unreadable"
	CodeSettings           = "settings"
	CodeGraphUnreachable   = "graph-unreachable"
	CodeStorageUnreachable = "storage-unreachable"
	CodeWeakClientState    = "weak-client-state"
	CodePreviousCert       = "previous-certificate"
	CodeCertificateExpiry  = "certificate-expiring"
)

// String is the finding as one line: what, then what to do.
func (f Finding) String() string {
	return fmt.Sprintf("%s (%s): %s What to do: %s", f.Code, f.Subject, f.Message, f.Action)
}

// Check runs every check once, under Timeout. Graph and storage are asked concurrently.
func (c *Checker) Check(ctx context.Context) Report {
	now := c.Now
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	r := Report{V: Version, CheckedAt: now().UTC(), Subscriptions: []Subscription{}, Resync: []Resync{}, Queues: []Queue{}}
	var graphFindings, storageFindings, mailboxFindings []Finding
	var wg sync.WaitGroup
	wg.Go(func() { r.Subscriptions, graphFindings = c.checkGraph(ctx, r.CheckedAt) })
	wg.Go(func() { r.Resync, r.Queues, storageFindings = c.checkStorage(ctx, r.CheckedAt) })
	wg.Go(func() { r.Mailboxes, mailboxFindings = c.checkMailboxes(ctx, r.CheckedAt) })
	wg.Wait()
	// One missing setting can stop several parts (the checkpoint store and the queues): say it once.
	r.Findings = []Finding{}
	if c.WeakClientState != "" {
		r.Findings = append(r.Findings, Finding{Severity: Attention, Code: CodeWeakClientState, Subject: config.ClientState,
			Message: "GRAPH_CLIENT_STATE is weak: " + c.WeakClientState + ". Every subscription's notification URL carries a short fingerprint of it (cs), so whoever sees that URL can test guesses offline, and with the secret forge notifications.",
			Action:  config.RotateClientStateSteps})
	}
	if f, ok := c.certificateFinding(r.CheckedAt); ok {
		r.Findings = append(r.Findings, f)
	}
	for _, f := range slices.Concat(graphFindings, storageFindings, mailboxFindings) {
		if !slices.Contains(r.Findings, f) {
			r.Findings = append(r.Findings, f)
		}
	}

	r.Health = Healthy
	for _, f := range r.Findings {
		if f.Severity == CannotTell || (f.Severity == Attention && r.Health == Healthy) {
			r.Health = f.Severity
		}
	}
	r.ExitCode = r.Health.ExitCode()
	return r
}

// certificateFinding asks for a rotation when the encryption certificate expires within CertificateWarning.
func (c *Checker) certificateFinding(now time.Time) (Finding, bool) {
	if c.Certificate == nil {
		return Finding{}, false
	}
	left := c.Certificate.NotAfter.Sub(now)
	if left >= CertificateWarning {
		return Finding{}, false
	}
	at := c.Certificate.NotAfter.UTC().Format(time.RFC3339)
	msg := fmt.Sprintf("the encryption certificate %q expires at %s (in %.1f days).", c.Certificate.ID, at, left.Hours()/24)
	if left <= 0 {
		msg = fmt.Sprintf("the encryption certificate %q expired at %s: the timer no longer renews the Teams subscriptions.", c.Certificate.ID, at)
	}
	return Finding{Severity: Attention, Code: CodeCertificateExpiry, Subject: config.EncryptionCertificate, Message: msg,
		Action: "rotate: put a new certificate in GRAPH_ENCRYPTION_CERTIFICATE (and a new _ID), this one in " +
			"GRAPH_ENCRYPTION_CERTIFICATE_PREVIOUS (and _PREVIOUS_ID); the timer moves the subscriptions (README, \"Rotating the certificate\")."}, true
}

func (c *Checker) checkGraph(ctx context.Context, now time.Time) ([]Subscription, []Finding) {
	subs := make([]Subscription, len(c.Resources))
	for i, res := range c.Resources {
		subs[i] = Subscription{Resource: res, State: Unchecked}
	}
	g, err := c.Graph()
	if err != nil {
		return subs, []Finding{settingsFinding("Graph", err)}
	}
	all, err := g.ListSubscriptions(ctx)
	if err != nil {
		return subs, []Finding{{Severity: CannotTell, Code: CodeGraphUnreachable, Subject: "Graph",
			Message: "could not list the subscriptions: " + cause(ctx, err) + ".",
			Action: "check that GRAPH_BASE_URL and AZURE_AUTHORITY_HOST are reachable from here, and the credentials " +
				"(AZURE_TENANT_ID, AZURE_CLIENT_ID, the secret or certificate; User.Read.All with admin consent)."}}
	}
	var findings []Finding
	for i, res := range c.Resources {
		s, f := c.subscription(all, res, now)
		subs[i] = s
		findings = append(findings, f...)
	}
	return subs, findings
}

// subscription picks this app's subscription for res (the longest-lived, as the timer keeps) and judges it.
func (c *Checker) subscription(all []graph.Subscription, res string, now time.Time) (Subscription, []Finding) {
	out := Subscription{Resource: res, State: None}
	var best *graph.Subscription
	for i := range all {
		if !c.Mine(all[i], res) {
			continue
		}
		if best == nil {
			best = &all[i]
			continue
		}
		out.Duplicates++
		if all[i].ExpirationDateTime.After(best.ExpirationDateTime) {
			best = &all[i]
		}
	}
	timerAction := "check the renew timer's log lines (it creates and renews the subscription every tick; a failed " +
		"validation handshake or a 403 says why), then run `handler status` again after its next tick."
	if best == nil {
		return out, []Finding{{Severity: Attention, Code: CodeNoSubscription, Subject: res,
			Message: "this app has no subscription for " + res + ": no notifications arrive.", Action: timerAction}}
	}
	exp := best.ExpirationDateTime.UTC()
	days := float64(exp.Sub(now)) / float64(24*time.Hour)
	days = float64(int64(days*10)) / 10
	out.ID, out.Expires, out.DaysLeft = best.ID, &exp, &days
	out.Delivery, out.NotificationHost = delivery(best.NotificationURL)
	out.LifecycleURLSet = best.LifecycleNotificationURL != ""
	out.EncryptionCertificateID = best.EncryptionCertificateID
	minLife := MinLifeLeft
	if c.MinLife != nil {
		if d := c.MinLife(res); d > 0 {
			minLife = d
		}
	}
	var findings []Finding
	if c.PreviousCertificateID != "" && best.EncryptionCertificateID == c.PreviousCertificateID {
		findings = append(findings, Finding{Severity: Attention, Code: CodePreviousCert, Subject: res,
			Message: fmt.Sprintf("subscription %s for %s still names the previous encryption certificate %q.", best.ID, res, c.PreviousCertificateID),
			Action: "the renew timer moves it to GRAPH_ENCRYPTION_CERTIFICATE on its next tick; keep GRAPH_ENCRYPTION_CERTIFICATE_PREVIOUS " +
				"until no subscription names it and the work queue holds nothing older than that tick, then remove it."})
	}
	switch left := exp.Sub(now); {
	case left <= 0:
		out.State = Expired
		return out, append(findings, Finding{Severity: Attention, Code: CodeNoSubscription, Subject: res,
			Message: fmt.Sprintf("subscription %s for %s expired at %s: no notifications arrive.", best.ID, res, exp.Format(time.RFC3339)),
			Action:  timerAction})
	case left < minLife:
		out.State = Live
		return out, append(findings, Finding{Severity: Attention, Code: CodeSubscriptionExpiry, Subject: res,
			Message: fmt.Sprintf("subscription %s for %s expires in %.1f days (the timer renews it well before).", best.ID, res, days),
			Action:  timerAction})
	}
	out.State = Live
	return out, findings
}

// delivery tells Event Hubs delivery (a notification URL "EventHub:https://<namespace>…") from a webhook,
// and gives the host notifications go to.
func delivery(notificationURL string) (kind, host string) {
	kind, raw := "webhook", notificationURL
	if len(raw) >= len("EventHub:") && strings.EqualFold(raw[:len("EventHub:")], "EventHub:") {
		kind, raw = "eventhubs", raw[len("EventHub:"):]
	}
	if u, err := url.Parse(raw); err == nil {
		host = u.Host
	}
	return kind, host
}

// checkStorage checks each storage service on its own — blobs (the resync checkpoints), queues (their
// depths), tables (the object state) — so that a finding names the service that failed and how, as the
// functions meet it: "table storage: 503 ServerBusy", "queue storage: connection refused".
func (c *Checker) checkStorage(ctx context.Context, now time.Time) ([]Resync, []Queue, []Finding) {
	rs := make([]Resync, len(c.Collections))
	for i, col := range c.Collections {
		rs[i] = Resync{Collection: col}
	}
	qs := []Queue{{Role: "work", Name: c.WorkQueue}, {Role: "poison", Name: c.PoisonQueue}, {Role: "changes", Name: c.ChangesQueue}}
	var findings []Finding
	findings = append(findings, c.checkCheckpoints(ctx, now, rs)...)
	findings = append(findings, c.checkQueues(ctx, now, qs)...)
	if c.Tables != nil {
		findings = append(findings, c.checkTables(ctx)...)
	}
	return rs, qs, findings
}

// Storage services, as findings name them.
const (
	BlobStorage  = "blob"
	QueueStorage = "queue"
	TableStorage = "table"
)

var storageConsequence = map[string]string{
	BlobStorage:  "resync passes wait until it answers (notifications still become events)",
	QueueStorage: "notifications are not queued and events not written: Graph and the host retry them until it answers",
	TableStorage: "events are written without change detection (no changed/previous, none suppressed) until it answers",
}

// storageFinding says which storage service failed, how (StorageFault), and what that means for the pipeline.
func storageFinding(ctx context.Context, service, what string, err error) Finding {
	return Finding{Severity: CannotTell, Code: CodeStorageUnreachable, Subject: "AzureWebJobsStorage (" + service + ")",
		Message: service + " storage: " + StorageFault(ctx, err) + ", reading " + what + "; meanwhile " + storageConsequence[service] +
			". Detail: " + cause(ctx, err) + ".",
		Action: "check that the storage account in AzureWebJobsStorage is reachable from here (Azurite running, locally), " +
			"that this identity may use its " + service + "s, and the account's health in the portal; nothing is lost meanwhile."}
}

// StorageFault names how a storage call failed, in the terms an operator looks up: the HTTP status and the
// service's error code ("503 ServerBusy"), a refused connection, a name that does not resolve, no answer.
func StorageFault(ctx context.Context, err error) string {
	var re *azcore.ResponseError
	var dns *net.DNSError
	var ne net.Error
	switch {
	case errors.As(err, &re):
		code := re.ErrorCode
		if code == "" {
			code = http.StatusText(re.StatusCode)
		}
		return fmt.Sprintf("%d %s", re.StatusCode, code)
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "connection reset"
	case errors.As(err, &dns):
		return "host name not found"
	case ctx.Err() != nil:
		return "no answer within the check's deadline"
	case errors.As(err, &ne) && ne.Timeout():
		return "timed out"
	}
	return "failed"
}

func (c *Checker) checkCheckpoints(ctx context.Context, now time.Time, rs []Resync) []Finding {
	cps, err := c.Checkpoints()
	if err != nil {
		return []Finding{settingsFinding("storage", err)}
	}
	var findings []Finding
	for i, col := range c.Collections {
		cp, _, err := cps.Load(ctx, col)
		if errors.Is(err, checkpoint.ErrCorrupt) {
			rs[i].Checked = true
			findings = append(findings, Finding{Severity: Attention, Code: CodeCheckpoint, Subject: col,
				Message: "the resync checkpoint is unreadable: " + err.Error(),
				Action:  "delete the checkpoint blob named in the message; the next timer tick starts a new pass."})
			continue
		}
		if err != nil {
			return append(findings, storageFinding(ctx, BlobStorage, "the resync checkpoint of "+col, err))
		}
		rs[i] = c.resync(col, cp, now)
		if f, ok := resyncFinding(rs[i], now); ok {
			findings = append(findings, f)
		}
	}
	return findings
}

func (c *Checker) checkQueues(ctx context.Context, now time.Time, qs []Queue) []Finding {
	q, err := c.Queues()
	if err != nil {
		return []Finding{settingsFinding("storage", err)}
	}
	for i := range qs {
		n, err := q.ApproximateCount(ctx, qs[i].Name)
		if err != nil {
			return []Finding{storageFinding(ctx, QueueStorage, "queue "+qs[i].Name, err)}
		}
		qs[i].ApproximateMessages, qs[i].Checked = n, true
	}
	poison := &qs[1]
	oldest, ok, err := q.OldestInserted(ctx, poison.Name)
	if err != nil {
		return []Finding{storageFinding(ctx, QueueStorage, "queue "+poison.Name, err)}
	}
	if ok {
		age := int64(max(now.Sub(oldest), 0) / time.Second)
		poison.OldestAgeSeconds = &age
	}
	if poison.ApproximateMessages > 0 || ok {
		msg := fmt.Sprintf("%d message(s) in %s", poison.ApproximateMessages, poison.Name)
		if ok {
			msg += ", the oldest " + ago(now.Sub(oldest)) + " old"
		}
		return []Finding{{Severity: Attention, Code: CodePoison, Subject: poison.Name,
			Message: msg + ": their changes have not become events.",
			Action:  "read the queue worker's error line for each (it says why), fix the cause, then run `handler replay-poison` (`-dry-run` counts first)."}}
	}
	return nil
}

func (c *Checker) checkTables(ctx context.Context) []Finding {
	t, err := c.Tables()
	if err != nil {
		return []Finding{settingsFinding("storage", err)}
	}
	if err := t.Probe(ctx); err != nil {
		return []Finding{storageFinding(ctx, TableStorage, "the object-state table", err)}
	}
	return nil
}

func (c *Checker) resync(col string, cp checkpoint.Checkpoint, now time.Time) Resync {
	r := Resync{Collection: col, Checked: true}
	if !cp.LastCompleted.IsZero() {
		p := &Pass{At: cp.LastCompleted.UTC(), AgoSeconds: int64(max(now.Sub(cp.LastCompleted), 0) / time.Second)}
		if lp := cp.LastPass; lp != nil {
			p.ID, p.Full, p.Reason, p.Started, p.Events, p.Pages = lp.ID, lp.Full, lp.Reason, lp.Started.UTC(), lp.Events, lp.Pages
		}
		r.LastCompleted = p
	}
	if cp.Pass != nil {
		moved := cp.Pass.Updated
		if cp.Pass.Wait.After(moved) {
			moved = cp.Pass.Wait // waiting for Graph's Retry-After is not standing still
		}
		r.InProgress = &Pass{ID: cp.Pass.ID, Full: cp.Pass.Full, Reason: cp.Pass.Reason, Started: cp.Pass.Started.UTC(),
			At: moved.UTC(), AgoSeconds: int64(max(now.Sub(moved), 0) / time.Second), Events: cp.Pass.Events,
			Pages: cp.Pass.Pages, Page: cp.Pass.Pages + 1, Stalled: c.StallAfter > 0 && now.Sub(moved) >= c.StallAfter}
	}
	return r
}

// resyncFinding: no pass completed within MaxResyncAge. The clock of a collection that never completed one
// starts with its first pass, so an installation whose first pass is still running is not overdue.
func resyncFinding(r Resync, now time.Time) (Finding, bool) {
	var since time.Time
	switch {
	case r.LastCompleted != nil:
		since = r.LastCompleted.At
	case r.InProgress != nil:
		since = r.InProgress.Started
	}
	if !since.IsZero() && now.Sub(since) < MaxResyncAge {
		return Finding{}, false
	}
	msg := "no resync pass of " + r.Collection + " has ever completed"
	if r.LastCompleted != nil {
		msg = "the last resync pass of " + r.Collection + " completed " + ago(now.Sub(since)) + " ago"
	}
	if r.InProgress != nil && r.InProgress.Stalled {
		msg += fmt.Sprintf("; the pass in progress has not moved for %s", ago(time.Duration(r.InProgress.AgoSeconds)*time.Second))
	}
	return Finding{Severity: Attention, Code: CodeResyncOverdue, Subject: r.Collection,
		Message: msg + ": changes Graph did not notify are not being recovered.",
		Action:  "read the queue worker's resync log lines (a 403 or a failing delta query says why) and the renew timer's; after fixing, run `handler resync`."}, true
}

func settingsFinding(part string, err error) Finding {
	subject := part
	var ce *config.Error
	if errors.As(err, &ce) {
		names := make([]string, len(ce.Problems))
		for i, p := range ce.Problems {
			names[i] = p.Setting
		}
		subject = strings.Join(names, ",")
	}
	return Finding{Severity: CannotTell, Code: CodeSettings, Subject: subject,
		Message: "could not check " + part + ": " + err.Error() + ".",
		Action:  "set it in the environment or in local.settings.json Values (in Azure: the app settings)."}
}

// cause is err, said plainly when the check's deadline cut it short.
func cause(ctx context.Context, err error) string {
	// The SDKs' errors span several lines framed by dashes: one line reads better in a finding and a log.
	var words []string
	for _, w := range strings.Fields(err.Error()) {
		if strings.Trim(w, "-") != "" {
			words = append(words, w)
		}
	}
	msg := strings.Join(words, " ")
	if ctx.Err() != nil {
		return "no answer within the check's deadline (" + msg + ")"
	}
	return msg
}

// ago formats a duration for people: 45s, 12m, 5h10m, 3d4h.
func ago(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd%dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
}
