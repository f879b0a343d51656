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
	"time"

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
		// The state a rich notification brings is the message as Graph sent it, not a read made now: it is
		// dated by the message's own times, so that a notification processed late (re-queued, or out of
		// order) is recognised as older than a later edit already stored. Of several notifications about
		// the message in one queue message, the latest content wins, change type and content together.
		var (
			last     graph.Object
			lastNote = -1
			lastCT   graph.ChangeType
			lastAt   time.Time
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
			at := contentTime(obj, ct, m.FirstSeen, now)
			// On equal times a delete stands: a later notification at the same time does not revive it.
			if lastNote < 0 || at.After(lastAt) || (at.Equal(lastAt) && (ct == graph.Deleted || lastCT != graph.Deleted)) {
				last, lastNote, lastCT, lastAt = obj, i, ct, at
			}
		}
		if lastNote < 0 {
			continue // every notification of it went to unusable
		}
		changeType := lastCT
		origin := make([]string, len(o.notes))
		for k, j := range o.notes {
			origin[k] = family.NotificationIdentity(&m.Notifications[j])
		}
		e := family.NewEvent(cfg.TenantID, cfg.Select(o.target.Kind.Collection), family.Change{
			Kind: o.target.Kind, ID: o.id, ChangeType: changeType, Object: last, Context: o.target.Context,
			Source: message.SourceNotification, SubscriptionID: m.Notifications[lastNote].SubscriptionID, Origin: origin,
		}, now)
		o.event, o.readAt = &e, lastAt
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

// contentTime dates a chat message's content: its deletedDateTime for a delete, else its
// lastModifiedDateTime, else its createdDateTime (RFC 3339 strings, as Graph writes them). Content without
// a usable time (a delete sent without the resource) is dated by the queue message's firstSeen, when the
// webhook received it. Never later than now: a content clock ahead of this one must not date a state into
// the future, where no later read could ever supersede it.
func contentTime(obj graph.Object, ct graph.ChangeType, firstSeen, now time.Time) time.Time {
	names := []string{"lastModifiedDateTime", "createdDateTime"}
	if ct == graph.Deleted {
		names = append([]string{"deletedDateTime"}, names...)
	}
	for _, name := range names {
		v, ok := obj[name].(string)
		if !ok {
			continue
		}
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			return earliest(t, now)
		}
	}
	if !firstSeen.IsZero() {
		return earliest(firstSeen, now)
	}
	return now
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
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
