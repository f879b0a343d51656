package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	certPath := filepath.Join(t.TempDir(), "cert.pem")
	var stdout, stderr syncBuf
	ready := make(chan *fakegraph.Server, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-users", "2", "-cert-out", certPath}, &stdout, &stderr, func(s *fakegraph.Server) { ready <- s })
	}()
	var s *fakegraph.Server
	select {
	case s = <-ready:
	case err := <-done:
		t.Fatalf("run: %v (%s)", err, stderr.String())
	case <-ctx.Done():
		t.Fatal("not ready")
	}
	if len(s.Users()) != 2 || !strings.Contains(stdout.String(), "GRAPH_BASE_URL="+s.GraphBaseURL()) {
		t.Fatalf("users %d, stdout %q", len(s.Users()), stdout.String())
	}
	// A client trusting only the written certificate reaches the control API.
	pem, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Post(s.URL()+"/_control/users/00000000-0000-4000-a000-000000000001/softdelete", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 || len(s.Users()) != 1 {
		t.Fatalf("softdelete: %d, %d users", resp.StatusCode, len(s.Users()))
	}
	c.CloseIdleConnections()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestRunRefusesNonLoopback(t *testing.T) {
	var out syncBuf
	err := run(context.Background(), []string{"-addr", "0.0.0.0:0"}, &out, &out, nil)
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("err %v", err)
	}
}
