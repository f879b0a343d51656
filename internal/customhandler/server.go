package customhandler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"
)

// Func runs one invocation. A returned error fails the invocation: the host sees HTTP 500 and the error is
// logged as one stderr line. Errors meant for an HTTP caller belong in an http output instead (docs/host-protocol.md §4.2).
type Func func(ctx context.Context, req *Request) (*Response, error)

// Server is the http.Handler the host talks to: GET / for readiness and pings, POST /<FunctionName> for
// invocations.
type Server struct {
	mux    *http.ServeMux
	log    *slog.Logger
	redact func(string) string // nil: Logs leave as the function wrote them
}

// DefaultMaxRequestBytes bounds an invocation request read into memory when a route sets no limit.
const DefaultMaxRequestBytes = 16 << 20

// drainLimit bounds how much of an oversized request is read and discarded so that the host receives an
// answer rather than a reset connection.
const drainLimit = 256 << 20

// NewServer returns a server with the readiness route and no functions.
func NewServer(log *slog.Logger) *Server {
	s := &Server{mux: http.NewServeMux(), log: log}
	// The host polls GET / every 25 ms until anything answers, then pings it for health (docs/host-protocol.md §2.2).
	s.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	return s
}

// RedactLogs makes every line of an invocation's Logs pass through f before it leaves for the host (an
// error in them may quote a secret). Set it before serving.
func (s *Server) RedactLogs(f func(string) string) { s.redact = f }

// RouteOption adjusts one function's route.
type RouteOption func(*route)

type route struct {
	name     string
	fn       Func
	maxBytes int64
	tooLarge func(ctx context.Context) *Response
	timeout  time.Duration
	slow     time.Duration
	http     string // the httpTrigger binding decoded with the envelope, if any
}

// WithMaxRequestBytes bounds the invocation request. A larger one is read to the end (up to a hard limit),
// and answered with tooLarge's response (its ctx carries the invocation's logger), or as a failed invocation
// when tooLarge is nil.
func WithMaxRequestBytes(n int64, tooLarge func(ctx context.Context) *Response) RouteOption {
	return func(r *route) { r.maxBytes, r.tooLarge = n, tooLarge }
}

// WithTimeout gives the function a deadline of its own, which should sit well below host.json's
// functionTimeout: a host timeout restarts the handler and fails every invocation in flight (docs/host-protocol.md §4.5).
func WithTimeout(d time.Duration) RouteOption { return func(r *route) { r.timeout = d } }

// WithSlowWarning logs a warning for any invocation slower than d (the webhook: Graph marks an endpoint slow
// when more than 10% of its answers take over 3 s).
func WithSlowWarning(d time.Duration) RouteOption { return func(r *route) { r.slow = d } }

// WithHTTPTrigger says the function is HTTP-triggered with the trigger binding name, so the server decodes
// the trigger together with the envelope, in one pass (Request.HTTP returns it). Data then holds no other
// entries: an HTTP function with input bindings must not use it.
func WithHTTPTrigger(name string) RouteOption { return func(r *route) { r.http = name } }

// Handle registers fn for POST /<function>. The name is the function's folder name, case and all (docs/host-protocol.md §3.1).
func (s *Server) Handle(function string, fn Func, opts ...RouteOption) {
	rt := &route{name: function, fn: fn, maxBytes: DefaultMaxRequestBytes}
	for _, o := range opts {
		o(rt)
	}
	s.mux.Handle("POST /"+function, s.invoke(rt))
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBytes is the largest request buffer kept for reuse: typical invocations are a few KiB, and a pool
// of buffers grown by a few 8 MiB requests would hold that memory for every later one.
const maxPooledBytes = 1 << 20

func putBuf(b *bytes.Buffer) {
	if b != nil && b.Cap() <= maxPooledBytes {
		bufPool.Put(b)
	}
}

func (s *Server) invoke(rt *route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Azure-Functions-InvocationId")
		log := s.log.With("function", rt.name, "invocation_id", id)
		ctx := WithLogger(r.Context(), log)
		if rt.timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, rt.timeout)
			defer cancel()
		}

		buf := bufPool.Get().(*bytes.Buffer)
		buf.Reset()
		defer func() { putBuf(buf) }()
		n, err := buf.ReadFrom(io.LimitReader(r.Body, rt.maxBytes+1))
		if err != nil {
			fail(w, log, "read invocation request", err)
			return
		}
		if n > rt.maxBytes {
			drained, _ := io.Copy(io.Discard, io.LimitReader(r.Body, drainLimit))
			log.Warn("invocation request too large", "bytes", n+drained, "limit", rt.maxBytes)
			if rt.tooLarge == nil {
				fail(w, log, "invocation request", fmt.Errorf("larger than %d bytes", rt.maxBytes))
				return
			}
			answer(w, log, rt.tooLarge(ctx))
			return
		}

		var req Request
		decode := func() error { return json.Unmarshal(buf.Bytes(), &req) }
		if rt.http != "" {
			decode = func() error { return decodeHTTPEnvelope(buf.Bytes(), rt.http, &req) }
		}
		if err := decode(); err != nil {
			fail(w, log, "decode invocation request", err)
			return
		}
		// The decoded request holds copies of everything it needs: let the request's bytes go before the
		// function runs, so a large invocation does not hold them and its decoded body at once.
		putBuf(buf)
		buf = nil
		resp, err := call(ctx, rt.fn, &req)
		elapsed := time.Since(start)
		if err != nil {
			fail(w, log.With("duration_ms", ms(elapsed)), "invocation failed", err)
			return
		}
		if s.redact != nil && resp != nil {
			for i, l := range resp.Logs {
				resp.Logs[i] = s.redact(l)
			}
		}
		answer(w, log, resp)
		done(log, rt, elapsed, resp)
	})
}

// done writes the invocation's one completion line, carrying the summary the function put in Logs.
func done(log *slog.Logger, rt *route, elapsed time.Duration, resp *Response) {
	level, msg := slog.LevelInfo, "invocation done"
	if rt.slow > 0 && elapsed > rt.slow {
		level, msg = slog.LevelWarn, "invocation slow"
	}
	var summary string
	if resp != nil {
		summary = strings.Join(resp.Logs, "; ")
	}
	log.Log(context.Background(), level, msg, "duration_ms", ms(elapsed), "summary", summary)
}

// call runs fn, turning a panic into a failed invocation: the process must survive, since every crash counts
// toward the host's three-in-30-minutes limit (docs/host-protocol.md §2.3).
func call(ctx context.Context, fn Func, req *Request) (resp *Response, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{value: v, stack: debug.Stack()}
		}
	}()
	return fn(ctx, req)
}

type panicError struct {
	value any
	stack []byte
}

func (p *panicError) Error() string { return fmt.Sprintf("panic: %v", p.value) }

// fail answers 500 and writes the reason as one stderr line (slog quotes newlines, so a stack stays on one).
func fail(w http.ResponseWriter, log *slog.Logger, what string, err error) {
	var p *panicError
	if errors.As(err, &p) {
		log.Error(what, "err", err, "stack", string(p.stack))
	} else {
		log.Error(what, "err", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusInternalServerError)
	// The host ignores the body of a non-2xx answer; a short one helps a person with curl.
	json.NewEncoder(w).Encode(map[string]string{"error": what})
}

// answer writes a successful invocation result: 200, application/json, a JSON object (docs/host-protocol.md §4.1).
func answer(w http.ResponseWriter, log *slog.Logger, resp *Response) {
	if resp == nil {
		resp = &Response{}
	}
	b, err := resp.MarshalJSON() // not json.Marshal: see Response.MarshalJSON
	if err != nil {
		fail(w, log, "encode invocation response", err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
