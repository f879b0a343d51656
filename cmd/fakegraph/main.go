// Command fakegraph runs internal/fakegraph — the test double of Microsoft Graph v1.0 and the
// Entra ID token endpoint — as a standalone loopback TLS server with its control API on, so a demo
// script can drive it. It prints the settings a client needs (KEY=value lines) and runs until
// interrupted. The control API is documented in the internal/fakegraph package doc.
//
//	fakegraph -addr 127.0.0.1:8443 -users 5 -cert-out /tmp/fakegraph.pem
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "fakegraph:", err)
		os.Exit(1)
	}
}

// run starts the double and blocks until ctx ends. ready, when non-nil, receives the server once it serves.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, ready func(*fakegraph.Server)) error {
	fs := flag.NewFlagSet("fakegraph", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:0", "listen address (loopback only)")
	tenant := fs.String("tenant", "00000000-0000-4000-8000-000000000001", "tenant id (GUID)")
	clientID := fs.String("client-id", "00000000-0000-4000-8000-000000000002", "app registration client id")
	secret := fs.String("client-secret", "fakegraph-secret", "accepted client secret")
	users := fs.Int("users", 3, "number of users to seed")
	certOut := fs.String("cert-out", "", "write the server certificate (PEM) here, for SSL_CERT_FILE")
	miHeader := fs.String("mi-header", fakegraph.DefaultManagedIdentityHeader, "expected X-IDENTITY-HEADER on the managed identity endpoint")
	batch := fs.Int("batch-size", fakegraph.DefaultNotificationBatchSize, "max notifications per POST")
	window := fs.Duration("retry-window", 2*time.Minute, "how long failed deliveries are retried (Graph: 4h)")
	verbose := fs.Bool("v", false, "log every request and delivery")
	if err := fs.Parse(args); err != nil {
		return err
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	o := fakegraph.NewOptions(*tenant, *clientID, *secret)
	o.Addr = *addr
	o.ManagedIdentityHeader = *miHeader
	o.NotificationBatchSize = *batch
	o.DeliveryRetryWindow = *window
	o.DeliveryBackoff = time.Second
	o.ControlAPI = true
	o.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	var (
		s   *fakegraph.Server
		err error
	)
	func() {
		defer func() {
			if r := recover(); r != nil { // New panics on listen failures (it is built for tests)
				err = fmt.Errorf("%v", r)
			}
		}()
		s = fakegraph.New(o)
	}()
	if err != nil {
		return err
	}
	defer s.Close()

	for i := 1; i <= *users; i++ {
		s.AddUser(fakegraph.User{
			ID: fmt.Sprintf("00000000-0000-4000-a000-%012d", i),
			Props: map[string]any{
				"displayName": fmt.Sprintf("User %d", i), "userPrincipalName": fmt.Sprintf("user%d@contoso.example", i),
				"mail": fmt.Sprintf("user%d@contoso.example", i), "accountEnabled": true,
				"jobTitle": "Engineer", "department": "R&D", "givenName": "User", "surname": fmt.Sprint(i),
			},
		})
	}
	if *certOut != "" {
		if err := os.WriteFile(*certOut, s.CertPEM(), 0o644); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "FAKEGRAPH_URL=%s\n", s.URL())
	fmt.Fprintf(stdout, "AZURE_AUTHORITY_HOST=%s\n", s.AuthorityHost())
	fmt.Fprintf(stdout, "AZURE_TENANT_ID=%s\n", *tenant)
	fmt.Fprintf(stdout, "AZURE_CLIENT_ID=%s\n", *clientID)
	fmt.Fprintf(stdout, "GRAPH_BASE_URL=%s\n", s.GraphBaseURL())
	fmt.Fprintf(stdout, "IDENTITY_ENDPOINT=%s\n", s.ManagedIdentityEndpoint())
	if *certOut != "" {
		fmt.Fprintf(stdout, "SSL_CERT_FILE=%s\n", *certOut)
	}
	if ready != nil {
		ready(s)
	}
	<-ctx.Done()
	return nil
}
