package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
)

// The secrets a storage error may quote. The function key is configured escaped, as an operator pastes
// it from the portal into GRAPH_NOTIFICATION_URL.
const (
	leakKey = "Kf8Q2mZ/x+Yt0pWqLr4N=="
	leakSig = "S1gN4tUr3xYzQw"
)

// leakParts are pieces of the secrets that no output may hold, whatever their encoding.
var leakParts = []string{"Kf8Q2mZ", "Yt0pWqLr4N", leakSig}

// echoingProxy answers every storage request as a firewall that refuses it and quotes the request it saw:
// the request line with a SAS, and the function key in each encoding a page or a JSON body gives it.
func echoingProxy(t *testing.T) *httptest.Server {
	body := strings.Join([]string{
		"<html><body>Request blocked by policy.",
		"PUT /devstoreaccount1/webhooksnotificationqueue/messages?sv=2024-08-04&ss=q&sig=" + leakSig + "%2B%3D HTTP/1.1",
		"Referer: https://app.example/api/webhook?code=Kf8Q2mZ%2Fx%2BYt0pWqLr4N%3D%3D",
		"next: acct.queue.core.windows.net/q?se=2027&sig=" + leakSig,
		`{"functionKey":"Kf8Q2mZ\/x+Yt0pWqLr4N\u003d\u003d"}`,
		"double-escaped: Kf8Q2mZ%252Fx%252BYt0pWqLr4N%253D%253D",
		"entity: Kf8Q2mZ/x+Yt0pWqLr4N&#61;&#61;",
		"</body></html>",
	}, "\n")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("x-ms-error-code", "AuthorizationFailure")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func leakEnv(t *testing.T) map[string]string {
	proxy := echoingProxy(t).URL + "/devstoreaccount1"
	return map[string]string{
		config.Storage: "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + config.AzuriteAccountKey +
			";QueueEndpoint=" + proxy + ";BlobEndpoint=" + proxy + ";TableEndpoint=" + proxy + ";",
		"GRAPH_RESOURCE":         "users",
		"GRAPH_NOTIFICATION_URL": "https://app.example/api/webhook?code=" + url.QueryEscape(leakKey),
		"GRAPH_CLIENT_STATE":     state,
		"AZURE_TENANT_ID":        tenant,
	}
}

func assertNoLeak(t *testing.T, what, out string) {
	t.Helper()
	for _, part := range leakParts {
		if strings.Contains(out, part) {
			t.Errorf("%s: %q leaks:\n%s", what, part, out)
		}
	}
}

// TestCommandsRedactWhatStorageQuotes: `handler status`, `status -json` and `replay-poison -dry-run`
// against storage whose answer quotes a SAS and the function key print neither, but still say what failed.
func TestCommandsRedactWhatStorageQuotes(t *testing.T) {
	env := leakEnv(t)
	for _, args := range [][]string{{"status"}, {"status", "-json"}, {"replay-poison", "-dry-run"}} {
		var out, errOut bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := run(ctx, append([]string{"handler"}, args...), func(k string) string { return env[k] }, &out, &errOut)
		cancel()
		all := out.String() + errOut.String()
		if err != nil {
			all += "\nerror: " + err.Error()
		}
		assertNoLeak(t, strings.Join(args, " "), all)
		if !strings.Contains(all, "403") || !strings.Contains(all, "AuthorizationFailure") {
			t.Errorf("%s does not say what storage answered:\n%s", strings.Join(args, " "), all)
		}
	}
}

// TestTimerAlertsRedactWhatStorageQuotes: the renew timer's error-level alert lines (the status findings)
// carry no secret either.
func TestTimerAlertsRedactWhatStorageQuotes(t *testing.T) {
	env := leakEnv(t)
	port := freePort(t)
	env["FUNCTIONS_CUSTOMHANDLER_PORT"] = port
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"handler"}, func(k string) string { return env[k] }, &stdout, &stderr)
	}()
	base := "http://127.0.0.1:" + port
	waitReady(t, base)
	resp, err := http.Post(base+"/renewtimer", "application/json", strings.NewReader(`{"Data":{"timer":{"IsPastDue":false}},"Metadata":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	<-done
	assertNoLeak(t, "timer", stdout.String()+stderr.String())
	if !strings.Contains(stderr.String(), "level=ERROR msg=\"status: storage-unreachable") || !strings.Contains(stderr.String(), "AuthorizationFailure") {
		t.Errorf("no alert line saying what storage answered:\n%s", stderr.String())
	}
}
