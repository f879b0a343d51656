package graph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/graphwebhooks/graph-webhooks-go/internal/redact"
)

// Kind says what a caller should do about a failed Graph call; it is the stable part of an *Error.
type Kind int

const (
	KindOther Kind = iota
	// KindNotFound: the object does not exist (a lost subscription, a deleted user).
	KindNotFound
	// KindThrottled: 429; wait RetryAfter (when set) before trying again.
	KindThrottled
	// KindConflict: 409, for example a subscription for the same resource and changeType already exists.
	KindConflict
	// KindForbidden: 403, a missing permission or an exhausted subscription quota (the message says which).
	KindForbidden
	// KindValidationFailed: creating or updating a subscription failed because Graph's validation
	// handshake with the notification URL failed or timed out (400 whose message mentions validation).
	KindValidationFailed
	// KindBadRequest: 400 or another 4xx caused by the request, or a request this client refused to send.
	KindBadRequest
	// KindUnauthorized: 401, or no token could be acquired (wrong secret, unknown app, consent missing).
	KindUnauthorized
	// KindTransient: 5xx, 408, network errors and timeouts; retrying later is likely to work.
	KindTransient
	// KindResyncRequired: a delta link is no longer usable (410 Gone or syncStateNotFound): start a full sync.
	KindResyncRequired
)

var kindNames = [...]string{"other", "not found", "throttled", "conflict", "forbidden", "validation failed",
	"bad request", "unauthorized", "transient", "resync required"}

func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Sentinels for errors.Is: errors.Is(err, graph.ErrNotFound) is true for any *Error of KindNotFound.
var (
	ErrNotFound         = &sentinel{KindNotFound}
	ErrThrottled        = &sentinel{KindThrottled}
	ErrConflict         = &sentinel{KindConflict}
	ErrForbidden        = &sentinel{KindForbidden}
	ErrValidationFailed = &sentinel{KindValidationFailed}
	ErrBadRequest       = &sentinel{KindBadRequest}
	ErrUnauthorized     = &sentinel{KindUnauthorized}
	ErrTransient        = &sentinel{KindTransient}
	ErrResyncRequired   = &sentinel{KindResyncRequired}
)

type sentinel struct{ kind Kind }

func (s *sentinel) Error() string { return "graph: " + s.kind.String() }

// Error is every error the Client returns. Its text carries the operation, the HTTP status and Graph's
// error code and message, never a token or a clientState.
type Error struct {
	Op      string // what the client was doing, e.g. "create subscription"
	Status  int    // HTTP status; 0 when no answer came back or the client refused the request
	Code    string // Graph's error.code, e.g. "Authorization_RequestDenied"
	Message string // Graph's error.message
	Kind    Kind
	// RetryAfter is the server's Retry-After (throttled and some transient errors); 0 when absent.
	RetryAfter time.Duration
	// RequestID is Graph's request-id, which Microsoft support asks for.
	RequestID string
	// Err is the underlying cause for failures without an HTTP answer (network, token, context).
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("graph: ")
	b.WriteString(e.Op)
	if e.Status != 0 {
		fmt.Fprintf(&b, ": %d", e.Status)
		if e.Code != "" {
			b.WriteString(" " + e.Code)
		}
		if e.Message != "" {
			b.WriteString(": " + e.Message)
		}
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Is matches the package's sentinels by Kind.
func (e *Error) Is(target error) bool {
	s, ok := target.(*sentinel)
	return ok && s.kind == e.Kind
}

// KindOf returns the Kind of a Graph error, KindOther for anything else.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindOther
}

// RetryAfterOf returns the Retry-After a Graph error carries, or 0.
func RetryAfterOf(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// classification hints: the same status means different things to different operations.
type opFlags uint8

const (
	// flagSubscriptionWrite: a 400 mentioning validation is a failed notification-URL handshake.
	flagSubscriptionWrite opFlags = 1 << iota
	// flagDelta: 410 Gone and syncStateNotFound mean the delta link is dead.
	flagDelta
)

// maxMessage bounds the Graph message kept in an error, so a large HTML error page does not flood logs.
const maxMessage = 512

// responseError builds the *Error for a non-2xx answer. The message loses the query of every URL it quotes
// (Graph quotes the notification URL, function key and all) and the given secrets, before it is shortened,
// so that no part of a secret survives.
func responseError(op string, flags opFlags, status int, h http.Header, body []byte, now time.Time, secrets ...string) *Error {
	e := &Error{Op: op, Status: status, RetryAfter: parseRetryAfter(h, now), RequestID: h.Get("request-id")}
	var wire struct {
		Error struct {
			Code       string `json:"code"`
			Message    string `json:"message"`
			InnerError struct {
				RequestID string `json:"request-id"`
			} `json:"innerError"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &wire) == nil {
		e.Code, e.Message = wire.Error.Code, wire.Error.Message
		if e.RequestID == "" {
			e.RequestID = wire.Error.InnerError.RequestID
		}
	}
	if e.Message == "" && e.Code == "" && len(body) > 0 && !json.Valid(body) {
		e.Message = strings.TrimSpace(string(body)) // a proxy's plain-text answer
	}
	e.Message = redact.Text(e.Message, secrets...)
	if len(e.Message) > maxMessage {
		e.Message = e.Message[:maxMessage] + "…"
	}
	e.Kind = classify(flags, status, e.Code, e.Message)
	return e
}

func classify(flags opFlags, status int, code, message string) Kind {
	if flags&flagDelta != 0 && (status == http.StatusGone || strings.EqualFold(code, "syncStateNotFound")) {
		return KindResyncRequired
	}
	switch {
	case status == http.StatusNotFound:
		return KindNotFound
	case status == http.StatusTooManyRequests:
		return KindThrottled
	case status == http.StatusConflict:
		return KindConflict
	case status == http.StatusForbidden:
		return KindForbidden
	case status == http.StatusUnauthorized:
		return KindUnauthorized
	case status == http.StatusRequestTimeout, status >= 500:
		return KindTransient
	case status == http.StatusBadRequest:
		if flags&flagSubscriptionWrite != 0 && strings.Contains(strings.ToLower(message), "validation") {
			return KindValidationFailed
		}
		return KindBadRequest
	case status >= 400:
		return KindBadRequest
	}
	return KindOther
}

// tokenError marks a failure of the credential, so that it is told apart from a network failure of the
// Graph call itself. It stays non-retriable for azcore's retry policy, as the bearer policy intends.
type tokenError struct{ err error }

func (e *tokenError) Error() string { return "acquiring a token: " + e.err.Error() }
func (e *tokenError) Unwrap() error { return e.err }
func (e *tokenError) NonRetriable() {}

// transportError builds the *Error for a call that got no HTTP answer.
func transportError(op string, err error) *Error {
	e := &Error{Op: op, Err: err, Kind: KindTransient}
	var te *tokenError
	switch {
	case errors.Is(err, context.Canceled):
		e.Kind = KindOther // the caller gave up; nothing to retry on its behalf
	case errors.Is(err, context.DeadlineExceeded):
		e.Kind = KindTransient
	case errors.As(err, &te):
		e.Kind = KindUnauthorized
		// A token endpoint that is down or throttling is transient; a refusal (bad secret,
		// unknown tenant, no consent) is not.
		var afe *azidentity.AuthenticationFailedError
		if errors.As(err, &afe) && (afe.RawResponse == nil || afe.RawResponse.StatusCode >= 500 ||
			afe.RawResponse.StatusCode == http.StatusTooManyRequests) {
			e.Kind = KindTransient
		}
	}
	return e
}

// localError is a request the client refuses to send.
func localError(op string, format string, args ...any) *Error {
	return &Error{Op: op, Kind: KindBadRequest, Err: fmt.Errorf(format, args...)}
}

// parseRetryAfter reads the server's delay: retry-after-ms / x-ms-retry-after-ms (as azcore does), then
// Retry-After in seconds or as an HTTP-date. It returns 0 when absent, malformed or already past.
func parseRetryAfter(h http.Header, now time.Time) time.Duration {
	for _, k := range []string{"retry-after-ms", "x-ms-retry-after-ms"} {
		if v := strings.TrimSpace(h.Get(k)); v != "" {
			if ms, err := strconv.ParseInt(v, 10, 64); err == nil && ms > 0 {
				return time.Duration(ms) * time.Millisecond
			}
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		if s > int64(365*24*time.Hour/time.Second) {
			s = int64(365 * 24 * time.Hour / time.Second)
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return (d + time.Second - 1).Truncate(time.Second) // round up: waiting less is pointless
		}
	}
	return 0
}
