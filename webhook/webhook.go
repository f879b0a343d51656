// Package webhook is the HTTP-triggered function Graph posts to. It answers the validation handshake,
// verifies each notification (clientState, tenant), and queues the genuine ones through its queue output
// binding. It never calls Graph or storage, so it answers well inside Graph's 3-second budget.
package webhook

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/customhandler"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/logctx"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

// Binding names, as in webhook/function.json.
const (
	Name          = "webhook"
	TriggerName   = "req"
	ResponseName  = "res"
	QueueOutput   = "notifications"
	MaxBodyBytes  = 4 << 20 // Graph publishes no batch limit (§2.1): generous, still bounded
	MaxTokenBytes = 8 << 10 // a validation token is about 100 bytes; anything near this is not from Graph
)

// maxEnvelopeBytes bounds the whole invocation request: the body travels inside it as an escaped JSON
// string, which can be up to twice as long, next to headers and metadata.
const maxEnvelopeBytes = 2*MaxBodyBytes + 1<<20

// Function verifies and queues notifications.
type Function struct {
	tenant  string
	secrets [][sha256.Size]byte // digests of GRAPH_CLIENT_STATE and GRAPH_CLIENT_STATE_PREVIOUS
	missing error               // settings without which notifications cannot be verified
	now     func() time.Time
}

// New builds the function from the app settings. Missing settings do not stop it: the handshake needs none,
// and notifications then fail the invocation so that Graph retries.
func New(cfg *config.Config, now func() time.Time) *Function {
	f := &Function{tenant: cfg.TenantID, now: now, missing: cfg.Check(config.TenantID, config.ClientState)}
	for _, s := range []config.Secret{cfg.ClientState, cfg.ClientStatePrevious} {
		if s.IsSet() {
			f.secrets = append(f.secrets, sha256.Sum256([]byte(s.Reveal())))
		}
	}
	return f
}

// Register adds the function to the handler's server.
func (f *Function) Register(s *customhandler.Server) {
	s.Handle(Name, f.Invoke,
		customhandler.WithMaxRequestBytes(maxEnvelopeBytes, func() *customhandler.Response {
			return reply(problem(http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes", MaxBodyBytes)))
		}),
		customhandler.WithSlowWarning(time.Second),
		customhandler.WithHTTPTrigger(TriggerName))
}

// Invoke handles one POST from Graph (or anyone else who knows the function key).
func (f *Function) Invoke(ctx context.Context, req *customhandler.Request) (*customhandler.Response, error) {
	hr, err := req.HTTP(TriggerName)
	if err != nil {
		return nil, err
	}
	if !strings.EqualFold(hr.Method, http.MethodPost) {
		r := problem(http.StatusMethodNotAllowed, "only POST is accepted")
		r.Headers["Allow"] = http.MethodPost
		return reply(r), nil
	}
	// Graph's validation request: echo the token, which the host has already URL-decoded once (§1.2).
	if token, ok := hr.QueryValue("validationToken"); ok {
		return f.handshake(token), nil
	}
	if f.missing != nil {
		return nil, fmt.Errorf("cannot verify notifications, so Graph will retry them: %w", f.missing)
	}
	body := hr.BodyBytes() // base64-decoded when the host sent it so (octet-stream, multipart)
	if len(body) == 0 {
		return reply(problem(http.StatusBadRequest, "the body is empty: expected a change notification collection")), nil
	}
	if len(body) > MaxBodyBytes {
		return reply(problem(http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes", MaxBodyBytes))), nil
	}
	coll, err := graph.DecodeCollection(body)
	if err != nil {
		return reply(problem(http.StatusBadRequest, err.Error())), nil
	}
	return f.accept(ctx, coll)
}

func (f *Function) handshake(token string) *customhandler.Response {
	switch {
	case token == "":
		return reply(problem(http.StatusBadRequest, "validationToken is empty"))
	case len(token) > MaxTokenBytes:
		return reply(problem(http.StatusBadRequest, fmt.Sprintf("validationToken is longer than %d bytes", MaxTokenBytes)))
	}
	return reply(customhandler.HTTPResponse{
		StatusCode: http.StatusOK,
		Headers: map[string]string{
			"Content-Type":           "text/plain; charset=utf-8",
			"X-Content-Type-Options": "nosniff",
		},
		Body: token,
	})
}

// tally counts what one POST became, for the log and the response's Logs.
type tally struct {
	changes, lifecycle, messages  int
	badClientState, foreignTenant int
	oversize                      int
	droppedSubscriptions          []string
}

func (f *Function) accept(ctx context.Context, coll graph.NotificationCollection) (*customhandler.Response, error) {
	var t tally
	var changes, lifecycle []graph.ChangeNotification
	for _, n := range coll.Value {
		okState, okTenant := f.clientStateMatches(n.ClientState), strings.EqualFold(n.Tenant(), f.tenant)
		if !okState || !okTenant {
			if !okState {
				t.badClientState++
			} else {
				t.foreignTenant++
			}
			if len(t.droppedSubscriptions) < 5 && !slices.Contains(t.droppedSubscriptions, n.SubscriptionID) {
				t.droppedSubscriptions = append(t.droppedSubscriptions, n.SubscriptionID)
			}
			continue
		}
		if n.IsLifecycle() {
			lifecycle = append(lifecycle, n)
		} else {
			changes = append(changes, n)
		}
	}

	seen := f.now().UTC().Truncate(time.Second)
	var msgs []message.Message
	for _, batch := range []struct {
		kind message.Kind
		ns   []graph.ChangeNotification
	}{{message.KindNotifications, changes}, {message.KindLifecycle, lifecycle}} {
		if len(batch.ns) == 0 {
			continue
		}
		tmpl := message.Message{V: message.Version, Kind: batch.kind, ValidationTokens: coll.ValidationTokens, FirstSeen: seen}
		ms, tooBig, err := message.Split(tmpl, batch.ns)
		if err != nil {
			return nil, fmt.Errorf("queue notifications: %w", err)
		}
		msgs = append(msgs, ms...)
		t.oversize += len(tooBig)
		queued := len(batch.ns) - len(tooBig)
		if batch.kind == message.KindLifecycle {
			t.lifecycle = queued
		} else {
			t.changes = queued
		}
	}
	t.messages = len(msgs)

	log := logctx.From(ctx)
	if dropped := t.badClientState + t.foreignTenant; dropped > 0 {
		log.Warn("dropped notifications that failed verification",
			"bad_client_state", t.badClientState, "foreign_tenant", t.foreignTenant, "subscriptions", t.droppedSubscriptions)
	}
	if t.oversize > 0 {
		log.Error("dropped notifications too large for a queue message", "count", t.oversize)
	}

	resp := reply(customhandler.HTTPResponse{StatusCode: http.StatusAccepted})
	if len(msgs) > 0 {
		// An array: the host writes one queue message per element, each object re-printed indented (§4.4).
		out, err := message.EncodeAll(msgs)
		if err != nil {
			return nil, fmt.Errorf("queue notifications: %w", err)
		}
		resp.SetOutput(QueueOutput, out)
	}
	resp.Logs = []string{fmt.Sprintf("webhook: queued %d change and %d lifecycle notifications in %d messages; dropped %d (clientState %d, tenant %d, oversize %d)",
		t.changes, t.lifecycle, t.messages, t.badClientState+t.foreignTenant+t.oversize, t.badClientState, t.foreignTenant, t.oversize)}
	return resp, nil
}

// clientStateMatches compares digests in constant time against every accepted secret, so neither the
// secret's length nor which secret matched shows in the timing.
func (f *Function) clientStateMatches(got string) bool {
	d := sha256.Sum256([]byte(got))
	match := 0
	for _, s := range f.secrets {
		match |= subtle.ConstantTimeCompare(d[:], s[:])
	}
	return match == 1
}

func reply(res customhandler.HTTPResponse) *customhandler.Response {
	r := &customhandler.Response{}
	r.SetOutput(ResponseName, res)
	return r
}

// problem is a short RFC 9457 problem document: what was wrong, never the input itself.
func problem(status int, detail string) customhandler.HTTPResponse {
	b, _ := json.Marshal(map[string]any{"status": status, "title": http.StatusText(status), "detail": detail})
	return customhandler.HTTPResponse{
		StatusCode: status,
		Headers:    map[string]string{"Content-Type": "application/problem+json"},
		Body:       string(b),
	}
}
