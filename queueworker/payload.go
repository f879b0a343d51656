package queueworker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/family"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
	"github.com/graphwebhooks/graph-webhooks-go/richnotify"
)

// A family whose notifications carry the resource (family.Payload: Teams messages) is never read from
// Graph. Its notifications are believed only when every validation token of the message passes (judged
// now, as lifecycle messages are) and each one's encryptedContent opens with a certificate this app holds
// (richnotify: signature checked before anything is decrypted). A notification that fails either goes to
// the poison queue with the reason, as received: its content is never decrypted into a log, and the work
// queue never held it in plaintext.

// payloadOpener holds the decryptor built from the settings, once per process.
type payloadOpener struct {
	once sync.Once
	d    *richnotify.Decryptor
	err  error
}

func (f *Function) decryptor() (*richnotify.Decryptor, error) {
	f.opener.once.Do(func() {
		cfg := f.d.Config
		if err := cfg.Check(config.EncryptionCertificate, config.EncryptionCertificateID, config.EncryptionCertificatePrevious, config.EncryptionCertificatePreviousID); err != nil {
			f.opener.err = err
			return
		}
		if cfg.Teams.Certificate == nil {
			f.opener.err = &config.Error{Problems: []config.Problem{{Setting: config.EncryptionCertificate, Text: "is not set"}}}
			return
		}
		// The dates are not judged here: Graph encrypts for the certificate a subscription names, and what
		// it sent under a certificate that has since expired still opens.
		certs := []*richnotify.Certificate{cfg.Teams.Certificate}
		if cfg.Teams.Previous != nil {
			certs = append(certs, cfg.Teams.Previous)
		}
		f.opener.d, f.opener.err = richnotify.NewDecryptor(certs...)
	})
	return f.opener.d, f.opener.err
}

// openPayloads settles the objects of payload families: an event for each whose notifications open, the
// notifications that do not to unusable (with the reason), and, when the signing keys cannot be had, the
// objects left for a later attempt. The others are returned for reading.
func (f *Function) openPayloads(ctx context.Context, log *slog.Logger, m *message.Message, objs []*object, unusable []malformed, t *tally) (toRead, opened []*object, _ []malformed, err error) {
	var payload []*object
	for _, o := range objs {
		if o.target.Family != nil && o.target.Family.Learn == family.Payload {
			payload = append(payload, o)
		} else {
			toRead = append(toRead, o)
		}
	}
	if len(payload) == 0 {
		return toRead, nil, unusable, nil
	}
	d, err := f.decryptor()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("cannot open rich notifications: %w", err)
	}

	work, cancel := f.workContext(ctx)
	defer cancel()
	cfg := f.d.Config
	v := &richnotify.TokenValidator{Keys: f.keySource(), ClientID: cfg.ClientID, TenantID: cfg.TenantID, AuthorityHost: cfg.AuthorityHost}
	terr := v.ValidateAll(work, m.ValidationTokens, f.now())
	var te *richnotify.TokenError
	switch {
	case errors.As(terr, &te):
		log.Warn("rich notifications refused: a validation token failed its check", "check", te.Check, "tokens", len(m.ValidationTokens))
		for _, o := range payload {
			for _, i := range o.notes {
				unusable = append(unusable, malformed{i, "rich notification refused: validation tokens (" + te.Check + ")"})
			}
		}
		return toRead, nil, unusable, nil
	case terr != nil:
		// The keys could not be fetched: nothing is known about the tokens yet.
		log.Warn("validation tokens of rich notifications cannot be checked yet", "error", terr.Error())
		for _, o := range payload {
			o.later(reasonTransient, 0)
		}
		return toRead, payload, unusable, nil
	}

	now := f.now()
	for _, o := range payload {
		var (
			last       graph.Object
			lastNote   = -1
			changeType graph.ChangeType
		)
		for _, i := range o.notes {
			n := &m.Notifications[i]
			obj, why := openOne(d, n, o)
			if why != "" {
				log.Warn("a rich notification was refused", "reason", why, "resource", o.target.Kind.Collection, "id", o.id)
				unusable = append(unusable, malformed{i, "rich notification refused: " + why})
				continue
			}
			ct, _ := graph.ParseChangeType(n.ChangeType)
			if changeType != graph.Deleted {
				changeType = ct // the last change, unless the message was deleted
			}
			if obj != nil || ct == graph.Deleted {
				last = obj
			}
			lastNote = i
		}
		if lastNote < 0 {
			continue // every notification of it went to unusable
		}
		origin := make([]string, len(o.notes))
		for k, j := range o.notes {
			origin[k] = family.NotificationIdentity(&m.Notifications[j])
		}
		e := family.NewEvent(cfg.TenantID, cfg.Select(o.target.Kind.Collection), family.Change{
			Kind: o.target.Kind, ID: o.id, ChangeType: changeType, Object: last, Context: o.target.Context,
			Source: message.SourceNotification, SubscriptionID: m.Notifications[lastNote].SubscriptionID, Origin: origin,
		}, now)
		o.event, o.readAt = &e, now
		opened = append(opened, o)
		switch changeType {
		case graph.Deleted:
			t.deleted++
		default:
			t.updated++
		}
	}
	return toRead, opened, unusable, nil
}

// openOne opens one notification's encryptedContent and checks the message it holds is the one the
// notification names. why is the reason for a refusal: a step name, never content.
func openOne(d *richnotify.Decryptor, n *graph.ChangeNotification, o *object) (graph.Object, string) {
	var wire struct {
		EncryptedContent *richnotify.EncryptedContent `json:"encryptedContent"`
	}
	if err := json.Unmarshal(n.Raw, &wire); err != nil {
		return nil, "encryptedContent is not an object of strings"
	}
	if wire.EncryptedContent == nil {
		if ct, _ := graph.ParseChangeType(n.ChangeType); ct == graph.Deleted {
			return nil, "" // a delete may come without the resource
		}
		return nil, "no encryptedContent"
	}
	plain, err := d.Decrypt(*wire.EncryptedContent)
	var de *richnotify.DecryptError
	if errors.As(err, &de) {
		return nil, string(de.Code)
	}
	if err != nil {
		return nil, "decryption failed"
	}
	var obj graph.Object
	dec := json.NewDecoder(bytes.NewReader(plain))
	dec.UseNumber()
	if dec.Decode(&obj) != nil || obj == nil {
		return nil, "the content is not a JSON object"
	}
	// The content is signed, the notification around it is not: a signed message pasted into another
	// notification must not be reported as the one that notification names.
	if id, _ := obj["id"].(string); id != o.id {
		return nil, "the content is another message than the notification names"
	}
	if chat, _ := obj["chatId"].(string); chat != "" && chat != o.target.Context["chatId"] {
		return nil, "the content is in another chat than the notification names"
	}
	if ch, ok := obj["channelIdentity"].(map[string]any); ok {
		team, _ := ch["teamId"].(string)
		channel, _ := ch["channelId"].(string)
		if !strings.EqualFold(team, o.target.Context["teamId"]) || channel != o.target.Context["channelId"] {
			return nil, "the content is in another channel than the notification names"
		}
	}
	return obj, ""
}
