package graph

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// MaxBatch is Graph's limit of requests in one JSON batch.
const MaxBatch = 20

// Get is one read in a $batch: a path below the version root, built by ObjectPath or DeletedPath, and the
// properties to select.
type Get struct {
	Path   string
	Select []string
}

// ObjectPath is the path of one object of a collection ("users", "groups"), refusing ids that would change
// the path's meaning.
func ObjectPath(collection, id string) (string, error) {
	seg, err := segment("get "+collection, id)
	if err != nil {
		return "", err
	}
	return "/" + collection + "/" + seg, nil
}

// DeletedPath is the path of a soft-deleted object in directory/deletedItems.
func DeletedPath(id string) (string, error) {
	seg, err := segment("get deleted item", id)
	if err != nil {
		return "", err
	}
	return "/directory/deletedItems/" + seg, nil
}

// BatchItem is the outcome of one Get of a Batch. Err is classified like any call: an inner 404 is
// KindNotFound, an inner 429 KindThrottled with its own RetryAfter.
type BatchItem struct {
	Path   string
	Object Object
	Err    error
}

// BatchResult holds one item per Get, in input order.
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

// GetObjects reads up to MaxBatch objects of one collection in one POST /$batch.
func (c *Client) GetObjects(ctx context.Context, collection string, ids []string, selectProps []string) (BatchResult, error) {
	gets := make([]Get, len(ids))
	for i, id := range ids {
		p, err := ObjectPath(collection, id)
		if err != nil {
			return BatchResult{}, err
		}
		gets[i] = Get{Path: p, Select: selectProps}
	}
	return c.Batch(ctx, gets)
}

// Batch sends up to MaxBatch GETs in one POST /$batch. The call itself fails only when the batch does;
// per-request failures are in the items.
func (c *Client) Batch(ctx context.Context, gets []Get) (BatchResult, error) {
	const op = "batch"
	if len(gets) == 0 {
		return BatchResult{}, nil
	}
	if len(gets) > MaxBatch {
		return BatchResult{}, localError(op, "%d requests, but a batch holds at most %d", len(gets), MaxBatch)
	}
	reqs := make([]batchRequest, len(gets))
	for i, g := range gets {
		if !strings.HasPrefix(g.Path, "/") || strings.ContainsAny(g.Path, "?#") {
			return BatchResult{}, localError(op, "request %d: %q is not a path built by ObjectPath or DeletedPath", i+1, g.Path)
		}
		u := g.Path // relative to the version root
		if q := selectQuery(g.Select); q != "" {
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

	res := BatchResult{Items: make([]BatchItem, len(gets))}
	got := make([]bool, len(gets))
	now := c.now()
	for _, r := range out.Responses {
		n, err := strconv.Atoi(r.ID)
		if err != nil || n < 1 || n > len(gets) || got[n-1] {
			continue // not one of ours; Graph answers each request once
		}
		i := n - 1
		got[i] = true
		item := BatchItem{Path: gets[i].Path}
		opi := "get " + gets[i].Path
		if r.Status >= 200 && r.Status < 300 {
			var o Object
			if err := decodeJSON(r.Body, &o); err != nil || o == nil {
				item.Err = &Error{Op: opi, Status: r.Status, Kind: KindOther,
					Err: fmt.Errorf("decoding the batch item: %v", err)}
			} else {
				delete(o, "@odata.context")
				item.Object = o
			}
		} else {
			e := responseError(opi, 0, r.Status, innerHeaders(r.Headers), r.Body, now)
			res.RetryAfter = max(res.RetryAfter, e.RetryAfter)
			item.Err = e
		}
		res.Items[i] = item
	}
	for i, ok := range got {
		if !ok {
			res.Items[i] = BatchItem{Path: gets[i].Path, Err: &Error{Op: "get " + gets[i].Path, Kind: KindTransient,
				Err: fmt.Errorf("no answer for this request in the batch response")}}
		}
	}
	return res, nil
}

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
