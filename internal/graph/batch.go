package graph

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// MaxBatch is Graph's limit of requests in one JSON batch.
const MaxBatch = 20

// BatchItem is the outcome for one id of GetUsers. Err is classified like any call: an inner 404 is
// KindNotFound, an inner 429 KindThrottled with its own RetryAfter.
type BatchItem struct {
	ID   string
	User User
	Err  error
}

// BatchResult holds one item per requested id, in input order.
type BatchResult struct {
	Items []BatchItem
	// RetryAfter is the longest inner Retry-After: Graph throttles each inner request on its own and no
	// SDK retries them, so the caller retries the failed items after this delay.
	RetryAfter time.Duration
}

type batchRequest struct {
	ID     string `json:"id"`
	Method string `json:"method"`
	URL    string `json:"url"`
}

type batchResponse struct {
	ID      string          `json:"id"`
	Status  int             `json:"status"`
	Headers map[string]any  `json:"headers"`
	Body    json.RawMessage `json:"body"`
}

// GetUsers reads up to MaxBatch users in one POST /$batch. The call itself fails only when the batch
// does; per-user failures are in the items.
func (c *Client) GetUsers(ctx context.Context, ids []string, selectProps []string) (BatchResult, error) {
	const op = "get users"
	if len(ids) == 0 {
		return BatchResult{}, nil
	}
	if len(ids) > MaxBatch {
		return BatchResult{}, localError(op, "%d ids, but a batch holds at most %d", len(ids), MaxBatch)
	}
	q := selectQuery(selectProps)
	reqs := make([]batchRequest, len(ids))
	for i, id := range ids {
		seg, err := segment(op, id)
		if err != nil {
			return BatchResult{}, err
		}
		u := "/users/" + seg // relative to the version root
		if q != "" {
			u += "?" + q
		}
		reqs[i] = batchRequest{ID: strconv.Itoa(i + 1), Method: http.MethodGet, URL: u}
	}
	var out struct {
		Responses []batchResponse `json:"responses"`
	}
	err := c.getJSON(ctx, request{op: op, method: http.MethodPost, url: c.url("/$batch", ""),
		body: map[string]any{"requests": reqs}}, &out)
	if err != nil {
		return BatchResult{}, err
	}

	res := BatchResult{Items: make([]BatchItem, len(ids))}
	got := make([]bool, len(ids))
	now := c.now()
	for _, r := range out.Responses {
		n, err := strconv.Atoi(r.ID)
		if err != nil || n < 1 || n > len(ids) || got[n-1] {
			continue // not one of ours; Graph answers each id once
		}
		i := n - 1
		got[i] = true
		item := BatchItem{ID: ids[i]}
		if r.Status >= 200 && r.Status < 300 {
			var u User
			if err := decodeJSON(r.Body, &u); err != nil || u == nil {
				item.Err = &Error{Op: "get user", Status: r.Status, Kind: KindOther,
					Err: fmt.Errorf("decoding the batch item: %v", err)}
			} else {
				delete(u, "@odata.context")
				item.User = u
			}
		} else {
			e := responseError("get user", 0, r.Status, innerHeaders(r.Headers), r.Body, now)
			res.RetryAfter = max(res.RetryAfter, e.RetryAfter)
			item.Err = e
		}
		res.Items[i] = item
	}
	for i, ok := range got {
		if !ok {
			res.Items[i] = BatchItem{ID: ids[i], Err: &Error{Op: "get user", Kind: KindTransient,
				Err: fmt.Errorf("no answer for this id in the batch response")}}
		}
	}
	return res, nil
}

// innerHeaders turns a batch item's header object into an http.Header (names canonicalised, since
// Graph's casing varies).
func innerHeaders(m map[string]any) http.Header {
	h := make(http.Header, len(m))
	for k, v := range m {
		switch v := v.(type) {
		case string:
			h.Set(k, v)
		case json.Number, float64:
			h.Set(k, fmt.Sprint(v))
		}
	}
	return h
}
