package main

import (
	"bytes"
	"context"
	"encoding/json"
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

func TestEveryCommandHelpExitsZero(t *testing.T) {
	for _, cmd := range []string{"status", "unsubscribe", "replay-poison", "resync"} {
		for _, h := range []string{"-h", "-help", "--help"} {
			var out, errOut bytes.Buffer
			// No settings at all: a command that ran instead of printing its usage would fail.
			err := run(context.Background(), []string{"handler", cmd, h}, func(string) string { return "" }, &out, &errOut)
			if err != nil || !strings.HasPrefix(out.String(), "usage: handler "+cmd) || errOut.Len() != 0 {
				t.Errorf("%s %s: %v\nstdout %q\nstderr %q", cmd, h, err, out.String(), errOut.String())
			}
		}
	}
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"handler", "status", "-bogus"}, func(string) string { return "" }, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "-bogus") || !strings.HasPrefix(errOut.String(), "usage: handler status") {
		t.Errorf("bad flag: %v\nstderr %q", err, errOut.String())
	}
}

// TestReplayPoisonDryRunFailsWithoutACount: a count that could not be read must not read as "empty".
func TestReplayPoisonDryRunFailsWithoutACount(t *testing.T) {
	env := map[string]string{config.Storage: "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;" +
		"AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;" +
		"QueueEndpoint=http://127.0.0.1:" + freePort(t) + "/devstoreaccount1;"}
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := run(ctx, []string{"handler", "replay-poison", "-dry-run"}, func(k string) string { return env[k] }, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "could not count") {
		t.Fatalf("dry run against unreachable storage: %v", err)
	}
	if strings.Contains(out.String(), "message(s)") {
		t.Errorf("printed a count it could not read: %q", out.String())
	}
}

func TestLocalSettings(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "local.settings.json")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"IsEncrypted": false, "Values": {"AzureWebJobsStorage": "UseDevelopmentStorage=true",
		"AZURE_CLIENT_SECRET": "file-secret-value", "GRAPH_RESOURCE": "users", "EMPTY": "", "NUMBER": 3}}`)
	env := map[string]string{"GRAPH_RESOURCE": "users/abc", "AZURE_TENANT_ID": "from-env"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	var note bytes.Buffer
	getenv := localSettings(lookup, path, &note)
	for k, want := range map[string]string{
		"AzureWebJobsStorage": "UseDevelopmentStorage=true", // only in the file
		"AZURE_CLIENT_SECRET": "file-secret-value",
		"GRAPH_RESOURCE":      "users/abc", // the environment wins
		"AZURE_TENANT_ID":     "from-env",
		"EMPTY":               "",
		"NUMBER":              "", // func takes strings only
	} {
		if got := getenv(k); got != want {
			t.Errorf("%s = %q; want %q", k, got, want)
		}
	}
	if got, want := note.String(), "handler: from "+path+" (not set in the environment): AZURE_CLIENT_SECRET, AzureWebJobsStorage\n"; got != want {
		t.Errorf("note %q; want %q", got, want)
	}
	if strings.Contains(note.String(), "file-secret-value") || strings.Contains(note.String(), "UseDevelopmentStorage") {
		t.Errorf("the note shows a value: %q", note.String())
	}

	// A missing file is silent; a broken one is said, and the environment still answers.
	note.Reset()
	if g := localSettings(lookup, filepath.Join(dir, "none.json"), &note); g("AZURE_TENANT_ID") != "from-env" || note.Len() != 0 {
		t.Errorf("missing file: %q", note.String())
	}
	write(`{"Values": {"AZURE_CLIENT_SECRET": "file-secret-value",`)
	note.Reset()
	if g := localSettings(lookup, path, &note); g("AZURE_TENANT_ID") != "from-env" || g("AZURE_CLIENT_SECRET") != "" ||
		!strings.Contains(note.String(), "not read") || strings.Contains(note.String(), "file-secret-value") {
		t.Errorf("broken file: %q", note.String())
	}
}

// TestCommandReadsLocalSettings runs `handler replay-poison -dry-run` as a process in a folder whose
// local.settings.json names the storage, as an operator does in the app folder.
func TestCommandReadsLocalSettings(t *testing.T) {
	az := azuritetest.Start(t)
	dir := t.TempDir()
	b, _ := json.Marshal(map[string]any{"IsEncrypted": false, "Values": map[string]string{config.Storage: az.ConnectionString()}})
	if err := os.WriteFile(filepath.Join(dir, "local.settings.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, config.Storage) {
			env = append(env, kv)
		}
	}
	cmd := exec.Command(os.Args[0], "replay-poison", "-dry-run")
	cmd.Dir, cmd.Env = dir, append(env, "BE_HANDLER=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || !strings.Contains(stdout.String(), "0 message(s) in webhooksnotificationqueue-poison") {
		t.Fatalf("replay-poison -dry-run: %v\nstdout %s\nstderr %s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stderr.String(), "from local.settings.json (not set in the environment): AzureWebJobsStorage") {
		t.Errorf("stderr does not say where the setting came from: %s", stderr.String())
	}
	if strings.Contains(stdout.String()+stderr.String(), "AccountKey") {
		t.Error("the connection string was printed")
	}

	// -h exits 0 with the usage, in the same folder.
	cmd = exec.Command(os.Args[0], "replay-poison", "-h")
	cmd.Dir, cmd.Env = dir, append(env, "BE_HANDLER=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "usage: handler replay-poison") {
		t.Errorf("replay-poison -h: %v\n%s", err, out)
	}
}
