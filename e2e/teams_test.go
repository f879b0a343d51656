package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/devstack"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakehost"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
	"github.com/graphwebhooks/graph-webhooks-go/internal/storagequeue"
)

const (
	e2eChat    = "19:e2ee2ee2ee2e4e2ee2ee2ee2ee2ee2ee@thread.v2"
	e2eTeam    = "0e7a0000-0000-4000-8000-0000000000e2"
	e2eChannel = "19:e2echannel@thread.tacv2"
)

// certificatePEM is a new RSA-2048 key and its self-signed certificate, valid from an hour ago for a year.
func certificatePEM(t *testing.T) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: "e2e rich notifications"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalPKCS8PrivateKey(key)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})) + string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}))
}

func chatEvents(evs []message.Event, id string) []message.Event {
	var out []message.Event
	for _, e := range evs {
		if e.Resource == "chatMessages" && e.ResourceID == id {
			out = append(out, e)
		}
	}
	return out
}

// poisonedCount waits until the poison queue holds n messages.
func poisonedCount(ctx context.Context, t *testing.T, s *devstack.Stack, n int) {
	t.Helper()
	got := 0
	err := devstack.Eventually(ctx, func() bool {
		c, err := s.Queue.ApproximateCount(ctx, storagequeue.PoisonQueue(devstack.NotificationQueue))
		if err != nil {
			t.Fatal(err)
		}
		got = c
		return c >= n
	})
	if err != nil {
		t.Fatalf("%d poison messages, want %d: %v", got, n, err)
	}
}

// TestTeamsMessagesEndToEnd: the timer subscribes a chat and a channel with resource data and the
// certificate; created, edited and deleted messages become chatMessages events from the notifications
// alone; tampered content, missing or wrong validation tokens and an unknown certificate go to the poison
// queue as Graph sent them and never become events; `handler status` names the certificate and, during a
// rotation, the subscriptions that still name the previous one.
func TestTeamsMessagesEndToEnd(t *testing.T) {
	current := certificatePEM(t)
	s := start(t, devstack.Options{Users: 1, Settings: map[string]string{
		config.Resource:                "users,chats/" + e2eChat + "/messages,teams/" + e2eTeam + "/channels/" + e2eChannel + "/messages",
		config.EncryptionCertificate:   current,
		config.EncryptionCertificateID: "e2e-cert-1",
	}})
	ctx := deadline(t, 150*time.Second)
	var rich []string
	for _, sub := range s.Graph.Subscriptions() {
		if sub.IncludeResourceData {
			if sub.EncryptionCertificateID != "e2e-cert-1" || strings.Contains(sub.EncryptionCertificate, "PRIVATE") || sub.LifecycleNotificationURL == "" {
				t.Errorf("rich subscription %+v", sub)
			}
			rich = append(rich, sub.Resource)
		}
	}
	slices.Sort(rich)
	if want := []string{"chats/" + e2eChat + "/messages", "teams/" + e2eTeam + "/channels/" + e2eChannel + "/messages"}; !slices.Equal(rich, want) {
		t.Fatalf("rich subscriptions %v, want %v", rich, want)
	}
	graphReadsBefore := graphReads(s)

	m, err := s.Graph.PostTeamsMessage(fakegraph.ChatMessage{ChatID: e2eChat, FromDisplayName: "Ada", Content: "<p>hello</p>"})
	if err != nil {
		t.Fatal(err)
	}
	has := func(id string, ok func(message.Event) bool) func([]message.Event) bool {
		return func(evs []message.Event) bool { return slices.ContainsFunc(chatEvents(evs, id), ok) }
	}
	if err := s.WaitEvents(ctx, has(m.ID, func(e message.Event) bool { return e.ChangeType == graph.Created })); err != nil {
		t.Fatalf("created: %v", err)
	}
	where := fakegraph.ChatMessage{ChatID: e2eChat, ID: m.ID, Content: "<p>hello, edited</p>"}
	if err := s.Graph.EditTeamsMessage(where); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitEvents(ctx, has(m.ID, func(e message.Event) bool { return e.ChangeType == graph.Updated && slices.Contains(e.Changed, "body") })); err != nil {
		t.Fatalf("edited: %v", err)
	}
	if err := s.Graph.DeleteTeamsMessage(where); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitEvents(ctx, has(m.ID, func(e message.Event) bool { return e.ChangeType == graph.Deleted })); err != nil {
		t.Fatalf("deleted: %v", err)
	}
	ch, err := s.Graph.PostTeamsMessage(fakegraph.ChatMessage{TeamID: e2eTeam, ChannelID: e2eChannel, Content: "in the channel"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WaitEvents(ctx, has(ch.ID, func(e message.Event) bool {
		return e.Context["teamId"] == e2eTeam && e.Context["channelId"] == e2eChannel && e.Field == "chatMessage"
	})); err != nil {
		t.Fatalf("channel message: %v", err)
	}
	if n := graphReads(s) - graphReadsBefore; n != 0 {
		t.Errorf("%d Graph reads for Teams notifications, want 0", n)
	}

	// Each kind of damage, once: the notification is refused, and the work queue kept it as received.
	damage := []fakegraph.TeamsTamper{
		{BadSignature: true},
		{NoValidationTokens: true},
		{Token: &fakegraph.ValidationTokenOptions{Audience: "99999999-2222-3333-4444-555555555555"}},
		{UnknownCertificateID: true},
	}
	var refusedIDs []string
	for i, d := range damage {
		d.Count = 1
		s.Graph.TamperTeams(d)
		bad, err := s.Graph.PostTeamsMessage(fakegraph.ChatMessage{ChatID: e2eChat, Content: "damaged"})
		if err != nil {
			t.Fatal(err)
		}
		refusedIDs = append(refusedIDs, bad.ID)
		poisonedCount(ctx, t, s, i+1)
	}
	if _, err := s.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range refusedIDs {
		if evs := chatEvents(s.Events(), id); len(evs) != 0 {
			t.Errorf("a refused notification became an event: %+v", evs)
		}
	}
	// The poisoned notifications carry their encryptedContent exactly as Graph delivered it (the webhook
	// keeps no clientState at rest; the content itself is kept byte for byte).
	content := func(raw []byte) json.RawMessage {
		var m map[string]json.RawMessage
		json.Unmarshal(raw, &m)
		return m["encryptedContent"]
	}
	var sent []json.RawMessage
	for _, d := range deliveredNotifications(t, s) {
		sent = append(sent, content(d))
	}
	pms, err := s.Queue.Receive(ctx, storagequeue.PoisonQueue(devstack.NotificationQueue), 32, time.Second)
	if err != nil || len(pms) != len(damage) {
		t.Fatalf("%d poison messages, want %d: %v", len(pms), len(damage), err)
	}
	for _, pm := range pms {
		msg, err := message.Decode(pm.Text)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range msg.Notifications {
			got := content(n.Raw)
			if len(got) == 0 || !slices.ContainsFunc(sent, func(d json.RawMessage) bool { return bytes.Equal(d, got) }) {
				t.Errorf("a poisoned notification's encryptedContent is not the one Graph delivered, byte for byte: %.200s", got)
			}
		}
	}

	// Rotation as `handler status` sees it: with a new certificate current and this one previous, both
	// subscriptions still name the previous one until the timer's next run moves them.
	r, _, stderr := runStatus(t, s, map[string]string{
		config.EncryptionCertificate:           certificatePEM(t),
		config.EncryptionCertificateID:         "e2e-cert-2",
		config.EncryptionCertificatePrevious:   current,
		config.EncryptionCertificatePreviousID: "e2e-cert-1",
	})
	named := 0
	for _, f := range r.Findings {
		if f.Code == "previous-certificate" {
			named++
		}
	}
	if named != 2 {
		t.Errorf("status findings %v, want two previous-certificate\n%s", findingCodes(r), stderr)
	}
}

// graphReads counts Graph requests that could read a message: anything under /teams or /chats, and
// $batch (the directory's only user here changes nothing during the test).
func graphReads(s *devstack.Stack) int {
	n := 0
	for _, r := range s.Graph.Requests() {
		if strings.HasPrefix(r.Path, "/v1.0/teams") || strings.HasPrefix(r.Path, "/v1.0/chats") || strings.HasPrefix(r.Path, "/v1.0/$batch") {
			n++
		}
	}
	return n
}

// deliveredNotifications is every notification the Graph double delivered, as it sent it.
func deliveredNotifications(t *testing.T, s *devstack.Stack) []json.RawMessage {
	t.Helper()
	var out []json.RawMessage
	for _, d := range s.Graph.Deliveries() {
		var body struct {
			Value []json.RawMessage `json:"value"`
		}
		if json.Unmarshal(d.Body, &body) == nil {
			out = append(out, body.Value...)
		}
	}
	return out
}

// TestTeamsCertificateRotation: the app is restarted with a new certificate current and the old one
// previous. Notifications Graph still encrypts for the old one open; the timer's next run moves the
// subscription to the new one (PATCH, no new subscription); what follows opens with the new one; and
// `handler status` then finds no subscription on the previous certificate.
func TestTeamsCertificateRotation(t *testing.T) {
	old, next := certificatePEM(t), certificatePEM(t)
	s := start(t, devstack.Options{Users: 1, Settings: map[string]string{
		config.Resource:                "users,chats/" + e2eChat + "/messages",
		config.EncryptionCertificate:   old,
		config.EncryptionCertificateID: "e2e-old",
	}, Host: func(o *fakehost.Options) { o.DisableTimers = true }})
	ctx := deadline(t, 150*time.Second)
	chatSub := func() fakegraph.Subscription {
		for _, sub := range s.Graph.Subscriptions() {
			if sub.IncludeResourceData {
				return sub
			}
		}
		t.Fatal("no Teams subscription")
		return fakegraph.Subscription{}
	}
	first := chatSub()
	arrives := func(what string) {
		t.Helper()
		m, err := s.Graph.PostTeamsMessage(fakegraph.ChatMessage{ChatID: e2eChat, Content: what})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.WaitEvents(ctx, func(evs []message.Event) bool { return len(chatEvents(evs, m.ID)) == 1 }); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	arrives("before the rotation")

	for k, v := range map[string]string{
		config.EncryptionCertificate: next, config.EncryptionCertificateID: "e2e-new",
		config.EncryptionCertificatePrevious: old, config.EncryptionCertificatePreviousID: "e2e-old",
	} {
		s.Host.SetHandlerSetting(k, v)
	}
	restarts := s.Host.Restarts()
	if err := s.Host.KillHandler(); err != nil {
		t.Fatal(err)
	}
	if err := devstack.Eventually(ctx, func() bool { return s.Host.Ready() && s.Host.Restarts() > restarts }); err != nil {
		t.Fatal(err)
	}
	if sub := chatSub(); sub.EncryptionCertificateID != "e2e-old" {
		t.Fatalf("the subscription moved before the timer ran: %+v", sub)
	}
	arrives("encrypted for the previous certificate")

	if err := s.Host.FireTimer(ctx, "renewtimer"); err != nil {
		t.Fatal(err)
	}
	moved := chatSub()
	if moved.ID != first.ID || moved.EncryptionCertificateID != "e2e-new" || moved.EncryptionCertificate == first.EncryptionCertificate {
		t.Fatalf("after the timer: %+v (was %s)", moved, first.ID)
	}
	if n := s.Graph.Count("PATCH", "/v1.0/subscriptions/"+first.ID); n < 1 {
		t.Errorf("%d PATCHes of the subscription", n)
	}
	arrives("encrypted for the new certificate")
	if strings.Contains(string(lastDelivered(t, s)), `"encryptionCertificateId":"e2e-old"`) {
		t.Error("the last notification is still for the old certificate")
	}
	r, _, stderr := runStatus(t, s, map[string]string{
		config.EncryptionCertificate: next, config.EncryptionCertificateID: "e2e-new",
		config.EncryptionCertificatePrevious: old, config.EncryptionCertificatePreviousID: "e2e-old",
	})
	if slices.Contains(findingCodes(r), "previous-certificate") {
		t.Errorf("status still finds a subscription on the previous certificate: %v\n%s", findingCodes(r), stderr)
	}
}

func lastDelivered(t *testing.T, s *devstack.Stack) json.RawMessage {
	t.Helper()
	ns := deliveredNotifications(t, s)
	if len(ns) == 0 {
		t.Fatal("nothing delivered")
	}
	return ns[len(ns)-1]
}
