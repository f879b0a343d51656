package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

// The chat the Teams story happens in, and the certificate's label in its subscription.
const (
	demoChat   = "19:d3a0c0ffee4e4d6f9a1b2c3d4e5f6a7b@thread.v2"
	demoCertID = "demo-teams-cert"
)

// teamsSettings adds the Teams story's chat to GRAPH_RESOURCE with a certificate made for this run (RSA-2048,
// self-signed, valid for a day): only its public part reaches the Graph double.
func teamsSettings(settings map[string]string, now time.Time) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: "make demo: Teams messages"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	settings[config.Resource] += ",chats/" + demoChat + "/messages"
	settings[config.EncryptionCertificate] = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})) +
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	settings[config.EncryptionCertificateID] = demoCertID
	return nil
}

// teamsStory posts, edits and deletes a chat message, then sends one whose content was tampered with: three
// events from the notifications alone, no Graph request, and the tampered one refused. It reports whether
// everything arrived as told.
func (d *demo) teamsStory(ctx context.Context) bool {
	s := d.s
	d.say("Teams: a chat followed with rich notifications (Graph sends each message encrypted for the app's certificate)")
	for _, x := range s.Graph.Subscriptions() {
		if x.IncludeResourceData {
			d.say("     subscription %s on %q: includeResourceData, certificate %q (public part only), lifecycle URL set, expires in %.1f days",
				short(x.ID), x.Resource, x.EncryptionCertificateID, time.Until(x.ExpirationDateTime).Hours()/24)
		}
	}
	reads := teamsReads(s.Graph)
	ok := true
	wait := func(id string, ct graph.ChangeType) bool {
		wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		err := s.WaitEvents(wctx, func(evs []message.Event) bool {
			return slices.ContainsFunc(evs, func(e message.Event) bool {
				return e.Resource == "chatMessages" && e.ResourceID == id && e.ChangeType == ct
			})
		})
		if err != nil {
			d.say("     no %s event for message %s: %v", ct, id, err)
			return false
		}
		return true
	}
	m, err := s.Graph.PostTeamsMessage(fakegraph.ChatMessage{ChatID: demoChat, FromDisplayName: "Ada", Content: "<p>Release at 5pm?</p>"})
	if err != nil {
		d.say("     posting failed: %v", err)
		return false
	}
	where := fakegraph.ChatMessage{ChatID: demoChat, ID: m.ID, Content: "<p>Release at 6pm.</p>"}
	ok = wait(m.ID, graph.Created) && ok
	if err := s.Graph.EditTeamsMessage(where); err == nil {
		ok = wait(m.ID, graph.Updated) && ok
	}
	if err := s.Graph.DeleteTeamsMessage(where); err == nil {
		ok = wait(m.ID, graph.Deleted) && ok
	}
	for _, e := range s.Events() {
		if e.Resource == "chatMessages" && e.ResourceID == m.ID {
			d.say("     %-8s %s in chat %s: %s%s", e.ChangeType, e.ResourceID, short(e.Context["chatId"]), chatText(e), changedText(e))
		}
	}
	d.teamsGraph = teamsReads(s.Graph) - reads
	d.say("     Graph requests for them: %d (the notification is the message; nothing is read)", d.teamsGraph)

	before := d.poison(ctx)
	s.Graph.TamperTeams(fakegraph.TeamsTamper{BadSignature: true, Count: 1})
	bad, err := s.Graph.PostTeamsMessage(fakegraph.ChatMessage{ChatID: demoChat, FromDisplayName: "Mallory", Content: "<p>tampered on the way</p>"})
	if err != nil {
		d.say("     posting failed: %v", err)
		return false
	}
	deadline := time.Now().Add(60 * time.Second)
	for d.poison(ctx) <= before && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(200 * time.Millisecond)
	}
	refused := d.poison(ctx) > before
	for _, e := range s.Events() {
		if e.ResourceID == bad.ID {
			refused = false
		}
	}
	if refused {
		d.say("     a notification whose ciphertext was altered after signing: refused before decryption (HMAC), moved to the poison queue as received, no event")
	} else {
		d.say("     the tampered notification was not refused as it should have been")
	}
	d.say("")
	return ok && refused
}

// teamsReads counts requests to the Graph double that could read a message.
func teamsReads(g *fakegraph.Server) int {
	return g.Count("", "/v1.0/teams") + g.Count("", "/v1.0/chats") + g.Count("", "/v1.0/$batch")
}

func chatText(e message.Event) string {
	b, _ := e.Object["body"].(map[string]any)
	c, _ := b["content"].(string)
	if c == "" {
		return "(deleted)"
	}
	return fmt.Sprintf("%q", c)
}

func changedText(e message.Event) string {
	if len(e.Changed) == 0 || e.ChangeType != graph.Updated {
		return ""
	}
	return " (changed: " + strings.Join(e.Changed, ", ") + ")"
}
