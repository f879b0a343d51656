package graph

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"
)

func TestBatchReadsObjects(t *testing.T) {
	var sent struct {
		Requests []batchRequest `json:"requests"`
	}
	c, rec, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := json.NewDecoder(r.Body).Decode(&sent); err != nil {
			t.Error(err)
		}
		// Answers out of order, as Graph may; header casing varies.
		writeJSON(w, 200, map[string]any{"responses": []any{
			map[string]any{"id": "4", "status": 429, "headers": map[string]any{"retry-after": "30"},
				"body": map[string]any{"error": map[string]any{"code": "TooManyRequests", "message": "slow"}}},
			map[string]any{"id": "2", "status": 404, "headers": map[string]any{"Content-Type": "application/json"},
				"body": map[string]any{"error": map[string]any{"code": "Request_ResourceNotFound", "message": "Resource 'b' does not exist"}}},
			map[string]any{"id": "1", "status": 200, "body": map[string]any{"id": "a", "displayName": "A"}},
			map[string]any{"id": "3", "status": 429, "headers": map[string]any{"Retry-After": "7"},
				"body": map[string]any{"error": map[string]any{"code": "TooManyRequests", "message": "slow"}}},
			map[string]any{"id": "5", "status": 503, "body": map[string]any{"error": map[string]any{"code": "serviceNotAvailable"}}},
		}})
	}), ClientOptions{})
	ids := []string{"a", "b", "c", "d", "e"}
	res, err := c.GetObjects(t.Context(), "users", ids, []string{"id", "displayName"})
	if err != nil {
		t.Fatal(err)
	}
	if r := rec.all()[0]; r.Method != "POST" || r.Path != "/v1.0/$batch" {
		t.Errorf("request %s %s", r.Method, r.Path)
	}
	if len(sent.Requests) != 5 || sent.Requests[0] != (batchRequest{"1", "GET", "/users/a?$select=id,displayName"}) {
		t.Errorf("inner requests %+v", sent.Requests)
	}
	if res.RetryAfter != 30*time.Second {
		t.Errorf("RetryAfter = %s, want the longest inner one, 30s", res.RetryAfter)
	}
	for i, it := range res.Items {
		if it.Path != "/users/"+ids[i] {
			t.Errorf("item %d is %q, want input order", i, it.Path)
		}
	}
	if it := res.Items[0]; it.Err != nil || it.Object.ID() != "a" || it.Object["displayName"] != "A" {
		t.Errorf("a: %+v", it)
	}
	if it := res.Items[1]; !errors.Is(it.Err, ErrNotFound) || it.Object != nil {
		t.Errorf("b: %+v", it)
	}
	if it := res.Items[2]; !errors.Is(it.Err, ErrThrottled) || RetryAfterOf(it.Err) != 7*time.Second {
		t.Errorf("c: %+v", it)
	}
	if it := res.Items[3]; !errors.Is(it.Err, ErrThrottled) || RetryAfterOf(it.Err) != 30*time.Second {
		t.Errorf("d: %+v", it)
	}
	if it := res.Items[4]; !errors.Is(it.Err, ErrTransient) {
		t.Errorf("e: %+v", it)
	}
}

func TestBatchLimitsAndGaps(t *testing.T) {
	c, rec, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Answers only the first request: the others must not be silently dropped.
		writeJSON(w, 200, map[string]any{"responses": []any{map[string]any{"id": "1", "status": 200, "body": map[string]any{"id": "x"}}}})
	}), ClientOptions{})
	ids := make([]string, MaxBatch+1)
	for i := range ids {
		ids[i] = fmt.Sprint("u", i)
	}
	if _, err := c.GetObjects(t.Context(), "users", ids, nil); KindOf(err) != KindBadRequest {
		t.Errorf("21 ids: %v", err)
	}
	if res, err := c.GetObjects(t.Context(), "users", nil, nil); err != nil || len(res.Items) != 0 {
		t.Errorf("no ids: %+v %v", res, err)
	}
	if rec.count() != 0 {
		t.Errorf("%d requests for invalid batches", rec.count())
	}
	res, err := c.GetObjects(t.Context(), "users", ids[:MaxBatch], nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Items[0].Err != nil || !errors.Is(res.Items[19].Err, ErrTransient) {
		t.Errorf("items %+v / %+v", res.Items[0], res.Items[19])
	}
}

func TestBatchItselfThrottled(t *testing.T) {
	c, rec, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "60")
		graphError(w, 429, "TooManyRequests", "slow")
	}), ClientOptions{})
	_, err := c.GetObjects(t.Context(), "users", []string{"a"}, nil)
	if !errors.Is(err, ErrThrottled) || RetryAfterOf(err) != time.Minute || rec.count() != 1 {
		t.Errorf("err %v after %d requests", err, rec.count())
	}
}
