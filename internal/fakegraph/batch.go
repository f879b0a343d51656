package fakegraph

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
)

// MaxBatchRequests is JSON batching's limit (docs/graph-facts.md §7).
const MaxBatchRequests = 20

type batchItem struct {
	ID        string            `json:"id"`
	Method    string            `json:"method"`
	URL       string            `json:"url"`
	Headers   map[string]string `json:"headers"`
	Body      json.RawMessage   `json:"body"`
	DependsOn []string          `json:"dependsOn"`
}

// handleBatch is POST /$batch (docs/graph-facts.md §7): at most 20 requests, each dispatched in-process to the
// same handlers (faults, request log with InBatch), answered with per-item status, headers and body.
// The batch itself is 200. ThrottleBatchItems makes inner items 429 with their own Retry-After.
// An item whose dependsOn item failed gets 424. Choice: items run sequentially in array order and
// responses come back in that order (Graph promises no order).
func (s *Server) handleBatch(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Requests []batchItem `json:"requests"`
	}
	b, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(b, &req); err != nil {
		s.graphError(w, r, http.StatusBadRequest, "BadRequest", "Invalid batch payload format.")
		return
	}
	switch n := len(req.Requests); {
	case n == 0:
		s.graphError(w, r, http.StatusBadRequest, "BadRequest", "Invalid batch payload format: at least one request is required.")
		return
	case n > MaxBatchRequests:
		s.graphError(w, r, http.StatusBadRequest, "BadRequest", fmt.Sprintf("Invalid batch payload format: the number of requests (%d) exceeds the limit of %d.", n, MaxBatchRequests))
		return
	}
	seen := map[string]bool{}
	for _, it := range req.Requests {
		if it.ID == "" || seen[it.ID] {
			s.graphError(w, r, http.StatusBadRequest, "BadRequest", "Invalid batch payload format: request ids must be present and unique.")
			return
		}
		if it.Method == "" || it.URL == "" {
			s.graphError(w, r, http.StatusBadRequest, "BadRequest", "Invalid batch payload format: method and url are required.")
			return
		}
		seen[it.ID] = true
	}
	status := map[string]int{}
	var out []any
	for _, it := range req.Requests {
		resp := s.batchOne(r, it, status)
		status[it.ID] = resp["status"].(int)
		out = append(out, resp)
	}
	writeJSON(w, http.StatusOK, map[string]any{"responses": out})
}

func (s *Server) batchOne(outer *http.Request, it batchItem, done map[string]int) map[string]any {
	res := map[string]any{"id": it.ID}
	for _, dep := range it.DependsOn {
		st, ok := done[dep]
		if !ok || st < 200 || st > 299 {
			res["status"] = http.StatusFailedDependency
			res["body"] = graphErrBody("BadRequest", "Failed dependency: request '"+dep+"' did not succeed.")
			return res
		}
	}
	s.mu.Lock()
	throttled := s.batchThrottle > 0
	retry := s.batchRetry
	if throttled {
		s.batchThrottle--
	}
	s.mu.Unlock()

	u := it.URL
	if strings.HasPrefix(u, "https://") || strings.HasPrefix(u, "http://") {
		res["status"] = http.StatusBadRequest
		res["body"] = graphErrBody("BadRequest", "Invalid request URL: batch request URLs must be relative.")
		return res
	}
	if !strings.HasPrefix(u, "/") {
		u = "/" + u
	}
	var body io.Reader = http.NoBody
	if len(it.Body) > 0 {
		body = bytes.NewReader(it.Body)
	}
	inner, err := http.NewRequestWithContext(outer.Context(), strings.ToUpper(it.Method), "/v1.0"+u, body)
	if err != nil {
		res["status"] = http.StatusBadRequest
		res["body"] = graphErrBody("BadRequest", "Invalid request URL.")
		return res
	}
	inner.Header.Set("Authorization", outer.Header.Get("Authorization"))
	for k, v := range it.Headers {
		inner.Header.Set(k, v)
	}
	inner.RemoteAddr, inner.Host = outer.RemoteAddr, outer.Host
	rec := httptest.NewRecorder()
	if throttled {
		// Logged like any inner request, but answered here.
		if retry > 0 {
			rec.Header().Set("Retry-After", retryAfterSeconds(retry))
		}
		s.logInner(inner, http.StatusTooManyRequests)
		s.graphError(rec, inner, http.StatusTooManyRequests, "TooManyRequests", "Too many requests.")
	} else {
		s.serve(rec, inner, true)
	}
	res["status"] = rec.Code
	hdr := map[string]string{}
	for k := range rec.Header() {
		switch k {
		case "Content-Type", "Retry-After", "Location", "Cache-Control", "Odata-Version", "Etag":
			hdr[k] = rec.Header().Get(k)
		}
	}
	if len(hdr) > 0 {
		res["headers"] = hdr
	}
	if rb := rec.Body.Bytes(); len(rb) > 0 {
		if json.Valid(rb) {
			res["body"] = json.RawMessage(rb)
		} else {
			res["body"] = base64.StdEncoding.EncodeToString(rb) // Graph base64-encodes non-JSON bodies
		}
	}
	return res
}

func (s *Server) logInner(r *http.Request, status int) {
	_, pattern := s.mux.Handler(r)
	s.mu.Lock()
	s.reqs = append(s.reqs, Request{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Time: s.now(),
		Status: status, Pattern: pattern, InBatch: true, Header: r.Header.Clone()})
	s.mu.Unlock()
	s.bump()
}

func graphErrBody(code, msg string) map[string]any {
	return map[string]any{"error": map[string]any{"code": code, "message": msg}}
}
