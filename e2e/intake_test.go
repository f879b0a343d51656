package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/devstack"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakehost"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

// TestWebhookTrustBoundary drives the built handler through the host double with the queue trigger off, so
// the queue holds exactly what the webhook wrote as the host wrote it: genuine notifications arrive without
// their clientState, ids that are not GUIDs and bodies with two views never arrive, and a 400 quotes nothing.
func TestWebhookTrustBoundary(t *testing.T) {
	s := start(t, devstack.Options{Users: 3, Host: func(o *fakehost.Options) { o.DisableQueueTriggers = true }})
	ctx := deadline(t, 60*time.Second)
	secret, url := s.Settings["GRAPH_CLIENT_STATE"], s.Settings["GRAPH_NOTIFICATION_URL"]
	note := func(id string) string {
		return fmt.Sprintf(`{"subscriptionId":"d850b120-7d8e-4a3b-9c2d-1e0f2a3b4c5d","changeType":"updated","clientState":%q,"resource":"Users/%s","resourceData":{"id":%q,"sequenceNumber":638700000000000001},"tenantId":%q}`,
			secret, id, id, devstack.TenantID)
	}
	post := func(body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	// Refused whole: two "value" arrays (a forged notification beside a genuine one), a second clientState,
	// and a string sequenceNumber whose text must not come back.
	forged := strings.Replace(note(devstack.UserID(1)), `"clientState":"`+secret+`",`, "", 1)
	long := strings.Repeat("Q", 64<<10)
	for name, body := range map[string]string{
		"two value arrays":  `{"value":[` + forged + `],"value":[` + note(devstack.UserID(2)) + `]}`,
		"two clientStates":  `{"value":[` + strings.Replace(note(devstack.UserID(2)), `"changeType"`, `"clientState":"forged-client-state-0000","changeType"`, 1) + `]}`,
		"string seq number": `{"value":[` + strings.Replace(note(devstack.UserID(2)), `638700000000000001`, `"`+long+`"`, 1) + `]}`,
	} {
		code, answer := post(body)
		if code != http.StatusBadRequest || strings.Contains(answer, "QQQQ") || strings.Contains(answer, secret) || len(answer) > 512 {
			t.Errorf("%s: answered %d %.300q; want 400 with a short detail", name, code, answer)
		}
	}
	// Accepted: two genuine changes and a lifecycle event queued; ids that are not GUIDs dropped.
	body := `{"value":[` + note(devstack.UserID(1)) + `,` + note("delta") + `,` + note("adele@contoso.example") + `,` + note(devstack.UserID(2)) +
		`,{"subscriptionId":"d850b120-7d8e-4a3b-9c2d-1e0f2a3b4c5d","lifecycleEvent":"missed","clientState":"` + secret + `","tenantId":"` + devstack.TenantID + `"}]}`
	if code, answer := post(body); code != http.StatusAccepted {
		t.Fatalf("genuine POST answered %d %s", code, answer)
	}

	var got []string
	lifecycle := 0
	err := devstack.Eventually(ctx, func() bool {
		msgs, err := s.Queue.Receive(context.Background(), devstack.NotificationQueue, 32, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if bytes.Contains(bytes.ToLower(m.Text), []byte("clientstate")) || bytes.Contains(m.Text, []byte(secret)) {
				t.Errorf("a queued message carries clientState: %s", m.Text)
			}
			msg, err := message.Decode(m.Text)
			if err != nil {
				t.Fatalf("queued message unreadable: %v", err)
			}
			for _, n := range msg.Notifications {
				if msg.Kind == message.KindLifecycle {
					lifecycle++
				} else {
					got = append(got, n.ResourceID())
				}
			}
		}
		return len(got)+lifecycle >= 3
	})
	if err != nil || len(got) != 2 || got[0] != devstack.UserID(1) || got[1] != devstack.UserID(2) || lifecycle != 1 {
		t.Fatalf("queued %q and %d lifecycle (%v); want the two genuine users and one lifecycle event", got, lifecycle, err)
	}
	var summary string
	for _, inv := range s.Host.Invocations() {
		for _, l := range inv.Logs {
			if inv.Function == "webhook" && strings.Contains(l, "queued 2 change") {
				summary = l
			}
		}
	}
	if !strings.Contains(summary, "id 2") {
		t.Errorf("the webhook's log line does not count the two malformed ids: %q", summary)
	}
}
