// Package webhook is the HTTP-triggered function Graph posts to. It answers the validation handshake and
// hands notification bodies to internal/intake, which verifies each notification (clientState, tenant);
// the genuine ones go out through its queue output binding. It never calls Graph or storage, so it answers well inside Graph's 3-second budget.
package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/customhandler"
	"github.com/graphwebhooks/graph-webhooks-go/internal/intake"
)

// Binding names, as in webhook/function.json.
const (
	Name          = "webhook"
	TriggerName   = "req"
	ResponseName  = "res"
	QueueOutput   = "notifications"
	MaxBodyBytes  = 4 << 20 // Graph publishes no batch limit (docs/graph-facts.md §2.1): generous, still bounded
	MaxTokenBytes = 8 << 10 // a validation token is about 100 bytes; anything near this is not from Graph
)

// maxEnvelopeBytes bounds the whole invocation request: the body travels inside it as an escaped JSON
// string, which can be up to twice as long, next to headers and metadata.
const maxEnvelopeBytes = 2*MaxBodyBytes + 1<<20

// Function answers Graph's POSTs; internal/intake does the verifying.
type Function struct {
	intake *intake.Verifier
}

// New builds the function from the app settings. Missing settings do not stop it: the handshake needs none,
// and notifications then fail the invocation so that Graph retries.
func New(cfg *config.Config, now func() time.Time) *Function {
	return &Function{intake: intake.New(cfg, now)}
}

// Register adds the function to the handler's server.
func (f *Function) Register(s *customhandler.Server) {
	s.Handle(Name, f.Invoke,
		customhandler.WithMaxRequestBytes(maxEnvelopeBytes, func(context.Context) *customhandler.Response {
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
	// Graph's validation request: echo the token, which the host has already URL-decoded once (docs/graph-facts.md §1.2).
	if token, ok := hr.QueryValue("validationToken"); ok {
		return f.handshake(token), nil
	}
	body := hr.BodyBytes() // base64-decoded when the host sent it so (octet-stream, multipart)
	hr.Body = nil          // the decoded copy is all that is needed: let a large body's string go
	if len(body) > MaxBodyBytes {
		return reply(problem(http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes", MaxBodyBytes))), nil
	}
	res, err := f.intake.Collection(ctx, body)
	var bad *intake.BadInput
	if errors.As(err, &bad) {
		return reply(problem(http.StatusBadRequest, bad.Detail)), nil
	}
	if err != nil {
		return nil, err
	}
	resp := reply(customhandler.HTTPResponse{StatusCode: http.StatusAccepted})
	if res.Output != nil {
		resp.SetOutput(QueueOutput, res.Output)
	}
	resp.Logs = []string{"webhook: " + res.Summary()}
	return resp, nil
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
