package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/azuritetest"
	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
	"github.com/graphwebhooks/graph-webhooks-go/internal/storagequeue"
)

func TestReplayPoisonCommand(t *testing.T) {
	az := azuritetest.Start(t)
	env := map[string]string{config.Storage: az.ConnectionString()}
	getenv := func(k string) string { return env[k] }
	q, err := storagequeue.New(config.Load(getenv).Storage, storagequeue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, text := range []string{"one", "two"} {
		if err := q.Enqueue(ctx, storagequeue.PoisonQueue(message.WorkQueue), []byte(text), 0); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	if err := run(ctx, []string{"handler", "replay-poison", "-dry-run"}, getenv, &out, &out); err != nil || !strings.Contains(out.String(), "2 message(s) in webhooksnotificationqueue-poison") {
		t.Fatalf("dry run: %v %q", err, out.String())
	}
	out.Reset()
	if err := run(ctx, []string{"handler", "replay-poison"}, getenv, &out, &out); err != nil || !strings.Contains(out.String(), "moved 2 message(s)") {
		t.Fatalf("replay: %v %q", err, out.String())
	}
	got, err := q.Receive(ctx, message.WorkQueue, 32, time.Minute)
	if err != nil || len(got) != 2 {
		t.Fatalf("main queue holds %d messages (%v)", len(got), err)
	}
}

// TestUnsubscribeCommand runs `handler unsubscribe` as a real process against the Graph double, trusting
// the double's certificate the way a user trusts a private CA: SSL_CERT_FILE.
func TestUnsubscribeCommand(t *testing.T) {
	const tenant, client, secret = "8c1f4b2e-0d6a-4f57-9a3e-2b9d7c6e5f41", "3f2a1b0c-9d8e-4f7a-8b6c-5d4e3f2a1b0c", "s3cret"
	fg := fakegraph.New(fakegraph.NewOptions(tenant, client, secret))
	defer fg.Close()
	for _, s := range []fakegraph.Subscription{
		{ID: "mine-1", Resource: "users", ChangeType: "updated,deleted"},
		{ID: "other", Resource: "groups", ChangeType: "updated"},
	} {
		s.NotificationURL, s.ApplicationID, s.ExpirationDateTime = "https://example.test/api/webhook", client, time.Now().Add(24*time.Hour)
		fg.SeedSubscription(s)
	}
	certFile := filepath.Join(t.TempDir(), "fakegraph.pem")
	if err := os.WriteFile(certFile, fg.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "unsubscribe")
	cmd.Env = append(os.Environ(), "BE_HANDLER=1", "SSL_CERT_FILE="+certFile,
		"AZURE_TENANT_ID="+tenant, "AZURE_CLIENT_ID="+client, "AZURE_CLIENT_SECRET="+secret,
		"AZURE_AUTHORITY_HOST="+fg.AuthorityHost(), "GRAPH_BASE_URL="+fg.GraphBaseURL())
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "deleted subscription mine-1") {
		t.Fatalf("unsubscribe: %v\n%s", err, out)
	}
	if strings.Contains(string(out), secret) {
		t.Error("the output shows the client secret")
	}
	left := fg.Subscriptions()
	if len(left) != 1 || left[0].ID != "other" {
		t.Errorf("left %+v: only this app's users subscription may go", left)
	}
}
