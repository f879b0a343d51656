package customhandler

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"time"
)

// Listen opens the port the host chose, on 127.0.0.1: the host always dials the IPv4 loopback literal
// (docs/host-protocol.md §2.1). FUNCTIONS_HTTPWORKER_PORT is the legacy name of the same value.
func Listen(getenv func(string) string) (net.Listener, error) {
	name := "FUNCTIONS_CUSTOMHANDLER_PORT"
	v := getenv(name)
	if v == "" {
		name = "FUNCTIONS_HTTPWORKER_PORT"
		v = getenv(name)
	}
	if v == "" {
		return nil, errors.New("FUNCTIONS_CUSTOMHANDLER_PORT is not set: the Functions host sets it when it starts the handler (run `func start`, or set it by hand to try the handler alone)")
	}
	port, err := strconv.Atoi(v)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("%s=%q is not a port number", name, v)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("listen on %s port %d: %w", name, port, err)
	}
	return ln, nil
}

// Serve answers on ln until ctx is done, then stops accepting, lets in-flight invocations finish for up to
// grace, and returns context.Cause(ctx): a Signaled when a signal stopped it. It never returns nil, because
// exit status 0 tells the host never to restart the handler (docs/host-protocol.md §2.3).
func Serve(ctx context.Context, ln net.Listener, h http.Handler, grace time.Duration) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		// No write timeout: an invocation may legitimately run up to functionTimeout.
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
		return fmt.Errorf("shutdown: in-flight invocations did not finish within %s: %w", grace, context.Cause(ctx))
	}
	return context.Cause(ctx)
}

// Signaled is the cause of a shutdown asked for by a signal.
type Signaled struct{ Signal os.Signal }

func (s Signaled) Error() string { return "stopped by " + s.Signal.String() }

// ExitCode maps run's error to a process exit status: 0 for success (commands that finish), 128+n after
// signal n as shells report it, 1 otherwise.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var s Signaled
	if errors.As(err, &s) {
		if n, ok := s.Signal.(syscall.Signal); ok {
			return 128 + int(n)
		}
	}
	return 1
}
