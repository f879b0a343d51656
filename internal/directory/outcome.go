package directory

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
)

// Outcome is what reading one object came to.
type Outcome int

const (
	// Found: the object is live; Read.Object holds its selected properties.
	Found Outcome = iota
	// SoftDeleted: the object is in directory/deletedItems; Read.Object holds what was readable there.
	SoftDeleted
	// Gone: the object is neither live nor in deletedItems: deleted for good, or not replicated yet.
	Gone
	// Deferred: nothing was tried, because Graph asked this process to wait (the Gate is closed).
	Deferred
	// Throttled: Graph answered 429; Read.RetryAfter is how long it asked to wait (0 when it did not say).
	Throttled
	// Transient: a failure that waiting can cure: 5xx, the network, the invocation's deadline, an answer
	// that could not be understood.
	Transient
	// Refused: Graph will not read this object for this app (403, 401, 400): retrying cannot help.
	Refused
)

var outcomeNames = [...]string{"found", "soft-deleted", "gone", "deferred", "throttled", "transient failure", "refused"}

func (o Outcome) String() string { return outcomeNames[o] }

// Retryable reports whether a later attempt may succeed.
func (o Outcome) Retryable() bool { return o == Deferred || o == Throttled || o == Transient }

// Classify is the one rule for what a failed Graph call means, used by every caller: the worker, the
// resync and the subscription keeper. A nil error is Found and a 404 is Gone. An error Graph did not
// classify (an unexpected status, a body that is not JSON) counts as transient: a later attempt is cheap,
// every retry is bounded by its caller's attempt and age limits, and treating it as a refusal would park
// work in the poison queue for what is usually a passing fault.
func Classify(err error) (Outcome, time.Duration) {
	if err == nil {
		return Found, 0
	}
	switch graph.KindOf(err) {
	case graph.KindNotFound:
		return Gone, 0
	case graph.KindThrottled:
		return Throttled, graph.RetryAfterOf(err)
	case graph.KindTransient:
		return Transient, graph.RetryAfterOf(err)
	case graph.KindForbidden, graph.KindUnauthorized, graph.KindBadRequest, graph.KindValidationFailed,
		graph.KindConflict, graph.KindResyncRequired:
		return Refused, 0
	}
	if errors.Is(err, context.Canceled) {
		return Refused, 0 // the invocation is over: nobody is left to retry for
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		switch {
		case re.StatusCode == http.StatusTooManyRequests:
			return Throttled, 0
		case re.StatusCode == http.StatusForbidden, re.StatusCode == http.StatusUnauthorized, re.StatusCode == http.StatusBadRequest:
			return Refused, 0
		}
		return Transient, 0
	}
	return Transient, 0 // the network, the invocation's deadline, anything unforeseen
}

// Gate remembers until when Graph asked this process to stay away (the longest Retry-After seen). One Gate
// serves every invocation of a process, the worker's and the resync's alike, and is safe for concurrent use.
type Gate struct {
	mu    sync.Mutex
	until time.Time
}

// CloseUntil keeps the gate closed until t at least.
func (g *Gate) CloseUntil(t time.Time) {
	if g == nil {
		return
	}
	g.mu.Lock()
	if t.After(g.until) {
		g.until = t
	}
	g.mu.Unlock()
}

// Remaining is how long the gate stays closed after now (0 when open).
func (g *Gate) Remaining(now time.Time) time.Duration {
	if g == nil {
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if d := g.until.Sub(now); d > 0 {
		return d
	}
	return 0
}
