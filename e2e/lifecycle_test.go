package e2e

import (
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/devstack"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakehost"
)

// TestLifecycleFloodActsOnNothing: one POST as large as the webhook takes, full of lifecycle notifications
// with the right clientState and tenant but subscription ids that are not this app's, costs a handful of
// list calls and not one subscription write, whatever the number of notifications.
func TestLifecycleFloodActsOnNothing(t *testing.T) {
	s := start(t, devstack.Options{Users: 3})
	ctx := deadline(t, 4*time.Minute)
	secret, url := s.Settings["GRAPH_CLIENT_STATE"], s.Settings["GRAPH_NOTIFICATION_URL"]
	writes := func() int {
		return s.Graph.Count("POST", "/v1.0/subscriptions") + s.Graph.Count("PATCH", "/v1.0/subscriptions") + s.Graph.Count("DELETE", "/v1.0/subscriptions")
	}
	lists := func() int { return s.Graph.Count("GET", "/v1.0/subscriptions") }
	writesBefore, listsBefore := writes(), lists()

	events := []string{"reauthorizationRequired", "subscriptionRemoved", "missed"}
	var b strings.Builder
	b.WriteString(`{"value":[`)
	n := 0
	for b.Len() < 4_000_000-400 {
		if n > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"subscriptionId":%q,"subscriptionExpirationDateTime":"2026-12-20T10:00:00+00:00","lifecycleEvent":%q,"clientState":%q,"tenantId":%q}`,
			randomGUID(t), events[n%3], secret, devstack.TenantID)
		n++
	}
	b.WriteString(`]}`)
	started := time.Now()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(b.String()))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("webhook answered %d", resp.StatusCode)
	}

	count := regexp.MustCompile(`(\d+) lifecycle notifications \(`)
	seen, notOurs := 0, 0
	if err := devstack.Eventually(ctx, func() bool {
		seen, notOurs = 0, 0
		for _, inv := range s.Host.Invocations() {
			if inv.Function != "queueworker" || len(inv.Logs) == 0 {
				continue
			}
			if m := count.FindStringSubmatch(inv.Logs[0]); m != nil {
				k, _ := strconv.Atoi(m[1])
				seen += k
				if strings.Contains(inv.Logs[0], fmt.Sprintf("%d for subscriptions not this app's", k)) {
					notOurs += k
				}
			}
		}
		return seen >= n
	}); err != nil {
		t.Fatalf("the worker handled %d of %d lifecycle notifications: %v", seen, n, err)
	}
	elapsed := time.Since(started)
	for _, inv := range s.Host.Invocations() {
		if inv.Function == "queueworker" && inv.Status != fakehost.Succeeded {
			t.Errorf("worker invocation %+v", inv)
		}
	}
	if notOurs != n {
		t.Errorf("%d of %d notifications were dropped as not this app's", notOurs, n)
	}
	if w := writes() - writesBefore; w != 0 {
		t.Errorf("%d subscription writes for %d forged lifecycle notifications", w, n)
	}
	// The keeper lists at most once a minute for lifecycle notifications (the timer adds none here: it ran
	// at start-up).
	if l, limit := lists()-listsBefore, 1+int(elapsed/time.Minute); l > limit {
		t.Errorf("%d list calls in %s, want at most %d", l, elapsed.Round(time.Second), limit)
	}
	t.Logf("%d forged lifecycle notifications in one %d-byte POST: %d list call(s), %d subscription writes, handled in %s",
		n, b.Len(), lists()-listsBefore, writes()-writesBefore, elapsed.Round(time.Second))
}

func randomGUID(t *testing.T) string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
