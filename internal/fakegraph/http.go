package fakegraph

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// routes registers every route of the double. Fault routes (Inject) name these patterns.
func (s *Server) routes() {
	m := s.mux
	// Entra ID (docs/sdk-facts.md, "Identity")
	m.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", s.handleOpenIDConfig)
	m.HandleFunc("GET /{tenant}/.well-known/openid-configuration", s.handleOpenIDConfigV1)
	m.HandleFunc("GET /{tenant}/discovery/v2.0/keys", s.handleJWKS)
	m.HandleFunc("GET /{tenant}/discovery/keys", s.handleJWKS)
	m.HandleFunc("GET /common/discovery/instance", s.handleInstanceDiscovery)
	m.HandleFunc("POST /{tenant}/oauth2/v2.0/token", s.handleToken)
	m.HandleFunc("GET /msi/token", s.handleManagedIdentity)

	// Graph v1.0 (bearer token required)
	m.HandleFunc("POST /v1.0/subscriptions", s.handleCreateSubscription)
	m.HandleFunc("GET /v1.0/subscriptions", s.handleListSubscriptions)
	m.HandleFunc("GET /v1.0/subscriptions/{id}", s.handleGetSubscription)
	m.HandleFunc("PATCH /v1.0/subscriptions/{id}", s.handlePatchSubscription)
	m.HandleFunc("DELETE /v1.0/subscriptions/{id}", s.handleDeleteSubscription)
	m.HandleFunc("POST /v1.0/subscriptions/{id}/reauthorize", s.handleReauthorize)
	m.HandleFunc("GET /v1.0/users", s.handleListUsers)
	m.HandleFunc("GET /v1.0/users/delta", s.handleUsersDelta)
	m.HandleFunc("GET /v1.0/users/{id}", s.handleGetUser)
	m.HandleFunc("GET /v1.0/groups", s.handleListGroups)
	m.HandleFunc("GET /v1.0/groups/delta", s.handleGroupsDelta)
	m.HandleFunc("GET /v1.0/groups/{id}", s.handleGetGroup)
	m.HandleFunc("GET /v1.0/groups/{id}/members", s.handleListMembers)
	m.HandleFunc("GET /v1.0/directory/deletedItems/{id}", s.handleGetDeletedItem)
	m.HandleFunc("GET /v1.0/directory/deletedItems/microsoft.graph.group", s.handleListDeletedGroups)
	m.HandleFunc("POST /v1.0/directory/deletedItems/{id}/restore", s.handleRestoreDeletedItem)
	m.HandleFunc("POST /v1.0/$batch", s.handleBatch)

	if s.opts.ControlAPI {
		s.controlRoutes()
		s.groupControlRoutes()
	}
	s.familyRoutes()
}

// statusWriter records the status code.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

const maxLoggedBody = 64 << 10

func (s *Server) serveTop(w http.ResponseWriter, r *http.Request) { s.serve(w, r, false) }

// serve is the single entry point for wire requests and inner $batch requests:
// log, authenticate Graph routes, apply injected faults, dispatch.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, inBatch bool) {
	arrived := s.now()
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(io.LimitReader(r.Body, 8<<20))
		r.Body.Close()
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	_, pattern := s.mux.Handler(r)
	sw := &statusWriter{ResponseWriter: w}
	w.Header().Set("request-id", newGUID())
	if c := r.Header.Get("client-request-id"); c != "" {
		w.Header().Set("client-request-id", c)
	}
	defer func() {
		logged := body
		if len(logged) > maxLoggedBody {
			logged = logged[:maxLoggedBody]
		}
		req := Request{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Time: arrived,
			Status: sw.status, Pattern: pattern, InBatch: inBatch, Body: bytes.Clone(logged), Header: r.Header.Clone()}
		s.mu.Lock()
		s.reqs = append(s.reqs, req)
		s.mu.Unlock()
		s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "status", sw.status, "inBatch", inBatch)
		s.bump()
	}()

	graph := strings.HasPrefix(r.URL.Path, "/v1.0/")
	if graph && !s.authorize(sw, r) {
		return
	}
	if f := s.takeFault(pattern); f != nil {
		if f.Hang > 0 {
			t := time.NewTimer(f.Hang)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			case <-s.ctx.Done():
				t.Stop()
				return
			}
		}
		if f.Status != 0 {
			s.writeFault(sw, r, pattern, f)
			return
		}
	}
	if graph && pattern == "" {
		s.handleUnknownGraph(sw, r)
		return
	}
	s.mux.ServeHTTP(sw, r)
}

func retryAfterSeconds(d time.Duration) string {
	return strconv.Itoa(int(math.Ceil(d.Seconds())))
}

func (s *Server) writeFault(w http.ResponseWriter, r *http.Request, pattern string, f *Fault) {
	if f.RetryAfter > 0 {
		w.Header().Set("Retry-After", retryAfterSeconds(f.RetryAfter))
	}
	if strings.Contains(pattern, "/oauth2/") || strings.HasPrefix(pattern, "GET /msi/") {
		s.aadError(w, f.Status, "temporarily_unavailable", 0, "injected fault")
		return
	}
	code, msg := "UnknownError", "Injected fault."
	switch f.Status {
	case http.StatusTooManyRequests:
		code, msg = "TooManyRequests", "Too many requests."
		w.Header().Set("x-ms-throttle-scope", "Tenant_Application/ReadWrite/"+s.opts.ClientID+"/"+s.opts.TenantID)
	case http.StatusServiceUnavailable:
		code, msg = "serviceNotAvailable", "Service unavailable."
	case http.StatusGatewayTimeout:
		code, msg = "gatewayTimeout", "Gateway timeout."
	case http.StatusInternalServerError:
		code, msg = "generalException", "An internal error occurred."
	case http.StatusBadGateway:
		code, msg = "badGateway", "Bad gateway."
	case http.StatusNotFound:
		code, msg = "Request_ResourceNotFound", "Injected not found."
	case http.StatusUnauthorized:
		code, msg = "InvalidAuthenticationToken", "Access token validation failure."
	case http.StatusForbidden:
		code, msg = "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
	}
	s.graphError(w, r, f.Status, code, msg)
}

// graphError writes Graph's error body {"error":{"code","message","innerError":{...}}}.
func (s *Server) graphError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	inner := map[string]any{
		"date":       s.now().UTC().Format("2006-01-02T15:04:05"),
		"request-id": w.Header().Get("request-id"),
	}
	if c := r.Header.Get("client-request-id"); c != "" {
		inner["client-request-id"] = c
	}
	writeJSON(w, status, map[string]any{"error": map[string]any{"code": code, "message": msg, "innerError": inner}})
}

func (s *Server) notFoundUser(w http.ResponseWriter, r *http.Request, id string) {
	s.graphError(w, r, http.StatusNotFound, "Request_ResourceNotFound",
		"Resource '"+id+"' does not exist or one of its queried reference-property objects are not present.")
}

func (s *Server) handleUnknownGraph(w http.ResponseWriter, r *http.Request) {
	seg := strings.TrimPrefix(r.URL.Path, "/v1.0/")
	if i := strings.IndexByte(seg, '/'); i >= 0 {
		seg = seg[:i]
	}
	// Choice: the double serves only the routes in the package doc; anything else is Graph's "segment" 400.
	s.graphError(w, r, http.StatusBadRequest, "BadRequest", "Resource not found for the segment '"+seg+"'.")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b)
}

func writeGraphJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8")
	w.WriteHeader(status)
	w.Write(b)
}
