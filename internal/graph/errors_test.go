package graph

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

func TestErrorClasses(t *testing.T) {
	type answer struct {
		status      int
		code, msg   string
		retryAfter  string
		rawBody     string
		contentType string
	}
	var (
		mu  sync.Mutex
		cur answer
	)
	c, _, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		a := cur
		mu.Unlock()
		if a.retryAfter != "" {
			w.Header().Set("Retry-After", a.retryAfter)
		}
		w.Header().Set("request-id", "hdr-req-id")
		if a.rawBody != "" {
			w.Header().Set("Content-Type", a.contentType)
			w.WriteHeader(a.status)
			_, _ = w.Write([]byte(a.rawBody))
			return
		}
		graphError(w, a.status, a.code, a.msg)
	}), ClientOptions{MaxRetries: -1}) // no retries: each status is seen as is

	getUser := func(ctx context.Context) error { _, err := c.GetObject(ctx, "users", "u1", nil); return err }
	create := func(ctx context.Context) error {
		_, err := c.CreateSubscription(ctx, Subscription{Resource: "users", ChangeType: "updated,deleted",
			NotificationURL: "https://h/n", ExpirationDateTime: time.Date(2026, 11, 27, 11, 0, 0, 0, time.UTC)})
		return err
	}
	update := func(ctx context.Context) error {
		_, err := c.UpdateSubscription(ctx, "s1", SubscriptionUpdate{ExpirationDateTime: time.Date(2026, 11, 27, 11, 0, 0, 0, time.UTC)})
		return err
	}
	deltaNext := func(ctx context.Context) error {
		_, err := c.Delta(ctx, c.baseURL+"/users/delta?$deltatoken=old")
		return err
	}
	tests := []struct {
		name     string
		call     func(context.Context) error
		a        answer
		kind     Kind
		sentinel error
		text     string
	}{
		{"404", getUser, answer{status: 404, code: "Request_ResourceNotFound", msg: "Resource 'u1' does not exist"},
			KindNotFound, ErrNotFound, "graph: get users: 404 Request_ResourceNotFound: Resource 'u1' does not exist"},
		{"429", getUser, answer{status: 429, code: "TooManyRequests", msg: "x", retryAfter: "30"}, KindThrottled, ErrThrottled, "(retry after 30s)"},
		{"409", create, answer{status: 409, code: "ExtensionError", msg: "Subscription Id <> already exists for the requested combination"},
			KindConflict, ErrConflict, "graph: create subscription: 409 ExtensionError"},
		{"403 permission", create, answer{status: 403, code: "Authorization_RequestDenied", msg: "Insufficient privileges to complete the operation."},
			KindForbidden, ErrForbidden, "graph: create subscription: 403 Authorization_RequestDenied: Insufficient privileges to complete the operation."},
		{"403 quota", create, answer{status: 403, code: "ExtensionError", msg: "Operation: Create; Exception: [Status Code: Forbidden; Reason: Subscription limit reached]"},
			KindForbidden, ErrForbidden, "Subscription limit reached"},
		{"400 validation failed", create, answer{status: 400, code: "ValidationError",
			msg: "Subscription validation request failed. Must respond with 200 OK to this request."}, KindValidationFailed, ErrValidationFailed, "validation request failed"},
		{"400 validation timed out", update, answer{status: 400, code: "InvalidRequest",
			msg: "Subscription validation request timed out."}, KindValidationFailed, ErrValidationFailed, "graph: update subscription: 400"},
		{"400 other", create, answer{status: 400, code: "InvalidRequest", msg: "Invalid 'changeType' attribute: 'created'"},
			KindBadRequest, ErrBadRequest, "Invalid 'changeType'"},
		{"400 mentioning validation outside subscriptions", getUser, answer{status: 400, code: "Request_BadRequest", msg: "Property validation failed"},
			KindBadRequest, ErrBadRequest, ""},
		{"401", getUser, answer{status: 401, code: "InvalidAuthenticationToken", msg: "Access token has expired or is not yet valid."},
			KindUnauthorized, ErrUnauthorized, "401 InvalidAuthenticationToken"},
		{"500", getUser, answer{status: 500, code: "generalException", msg: "oops"}, KindTransient, ErrTransient, "500 generalException"},
		{"503 with Retry-After", getUser, answer{status: 503, code: "serviceNotAvailable", msg: "x", retryAfter: "5"}, KindTransient, ErrTransient, "(retry after 5s)"},
		{"504 from a proxy, not JSON", getUser, answer{status: 504, rawBody: "upstream timed out", contentType: "text/plain"},
			KindTransient, ErrTransient, "graph: get users: 504: upstream timed out"},
		{"408", getUser, answer{status: 408, code: "timeout", msg: "x"}, KindTransient, ErrTransient, ""},
		{"405", getUser, answer{status: 405, code: "Request_BadRequest", msg: "x"}, KindBadRequest, ErrBadRequest, ""},
		{"delta 410", deltaNext, answer{status: 410, code: "resyncRequired", msg: "gone"}, KindResyncRequired, ErrResyncRequired, ""},
		{"delta syncStateNotFound", deltaNext, answer{status: 400, code: "syncStateNotFound", msg: "The sync state generation is not found."},
			KindResyncRequired, ErrResyncRequired, ""},
		{"delta 404 stays not found", deltaNext, answer{status: 404, code: "x", msg: "x"}, KindNotFound, ErrNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			cur = tt.a
			mu.Unlock()
			err := tt.call(t.Context())
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %#v, want *Error", err)
			}
			if e.Kind != tt.kind || !errors.Is(err, tt.sentinel) {
				t.Errorf("kind = %s, want %s (err %v)", e.Kind, tt.kind, err)
			}
			for _, other := range []error{ErrNotFound, ErrThrottled, ErrConflict, ErrForbidden, ErrValidationFailed,
				ErrBadRequest, ErrUnauthorized, ErrTransient, ErrResyncRequired} {
				if other != tt.sentinel && errors.Is(err, other) {
					t.Errorf("errors.Is(err, %v) is true too", other)
				}
			}
			if e.Status != tt.a.status || e.RequestID != "hdr-req-id" {
				t.Errorf("status %d, request id %q", e.Status, e.RequestID)
			}
			if tt.text != "" && !strings.Contains(err.Error(), tt.text) {
				t.Errorf("message %q does not contain %q", err, tt.text)
			}
		})
	}
}

func TestNetworkErrorIsTransient(t *testing.T) {
	c, _, srv := newTestClient(t, http.NotFoundHandler(), ClientOptions{MaxRetries: -1})
	srv.Close()
	_, err := c.GetObject(t.Context(), "users", "u1", nil)
	if KindOf(err) != KindTransient || !errors.Is(err, ErrTransient) {
		t.Errorf("err = %v, kind %s", err, KindOf(err))
	}
	if e := (*Error)(nil); !errors.As(err, &e) || e.Err == nil || e.Status != 0 {
		t.Errorf("want the cause kept and no status: %#v", e)
	}
}

func TestContextErrors(t *testing.T) {
	c, _, _ := newTestClient(t, http.NotFoundHandler(), ClientOptions{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := c.GetObject(ctx, "users", "u1", nil)
	if !errors.Is(err, context.Canceled) || KindOf(err) != KindOther {
		t.Errorf("canceled: err = %v, kind %s", err, KindOf(err))
	}
	ctx, cancel = context.WithDeadline(t.Context(), time.Unix(0, 0)) // long past
	defer cancel()
	_, err = c.GetObject(ctx, "users", "u1", nil)
	if !errors.Is(err, context.DeadlineExceeded) || KindOf(err) != KindTransient {
		t.Errorf("deadline: err = %v, kind %s", err, KindOf(err))
	}
}

func TestTokenErrors(t *testing.T) {
	tests := []struct {
		name  string
		cause error
		kind  Kind
	}{
		{"refused", errors.New("AADSTS7000215: Invalid client secret provided"), KindUnauthorized},
		{"entra 400", &azidentity.AuthenticationFailedError{RawResponse: &http.Response{StatusCode: 400}}, KindUnauthorized},
		{"entra 503", &azidentity.AuthenticationFailedError{RawResponse: &http.Response{StatusCode: 503}}, KindTransient},
		{"entra unreachable", &azidentity.AuthenticationFailedError{}, KindTransient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			cred := &fake.TokenCredential{}
			cred.SetError(tt.cause)
			c, err := NewClient(cred, ClientOptions{BaseURL: "https://graph.microsoft.com/v1.0",
				Transport: handlerTransport{rec.wrap(http.NotFoundHandler())}, Now: func() time.Time { return time.Unix(0, 0) }})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.GetObject(t.Context(), "users", "u1", nil)
			if KindOf(err) != tt.kind {
				t.Errorf("kind %s, want %s: %v", KindOf(err), tt.kind, err)
			}
			if rec.count() != 0 {
				t.Error("a request went out without a token")
			}
			if !strings.HasPrefix(err.Error(), "graph: get users: acquiring a token: ") {
				t.Errorf("message %q", err)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 12, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		h    map[string]string
		want time.Duration
	}{
		{nil, 0},
		{map[string]string{"Retry-After": "7"}, 7 * time.Second},
		{map[string]string{"Retry-After": " 120 "}, 120 * time.Second},
		{map[string]string{"Retry-After": "0"}, 0},
		{map[string]string{"Retry-After": "-3"}, 0},
		{map[string]string{"Retry-After": "soon"}, 0},
		{map[string]string{"Retry-After": "Mon, 12 Jan 2026 09:02:00 GMT"}, 2 * time.Minute},
		{map[string]string{"Retry-After": "Monday, 12-Jan-26 09:00:30 GMT"}, 30 * time.Second},
		{map[string]string{"Retry-After": "Mon, 12 Jan 2026 08:59:00 GMT"}, 0}, // past
		{map[string]string{"retry-after-ms": "1500", "Retry-After": "9"}, 1500 * time.Millisecond},
		{map[string]string{"x-ms-retry-after-ms": "250"}, 250 * time.Millisecond},
	}
	for _, tt := range tests {
		h := http.Header{}
		for k, v := range tt.h {
			h.Set(k, v)
		}
		if got := parseRetryAfter(h, now); got != tt.want {
			t.Errorf("parseRetryAfter(%v) = %s, want %s", tt.h, got, tt.want)
		}
	}
}

func TestKindString(t *testing.T) {
	if KindThrottled.String() != "throttled" || Kind(99).String() != "kind(99)" {
		t.Error(KindThrottled.String(), Kind(99).String())
	}
	if KindOf(errors.New("x")) != KindOther || RetryAfterOf(errors.New("x")) != 0 {
		t.Error("non-graph errors")
	}
}
