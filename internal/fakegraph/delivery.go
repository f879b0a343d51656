package fakegraph

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Delivery is one attempt to POST to a subscriber (a handshake, a batch of notifications, a forged body).
type Delivery struct {
	Batch          int    // attempts of the same batch share this number (0 for handshakes and forged POSTs)
	Kind           string // "validation", "notification", "lifecycle", "forged"
	URL            string
	SubscriptionID string // for validation; notifications may mix subscriptions
	Attempt        int    // 1-based
	Notifications  int    // notifications in the body
	Status         int    // HTTP status; 0 when no reply (error or timeout)
	Err            string
	Duration       time.Duration
	Time           time.Time // real time the attempt started
	// Outcome: "delivered"; "failed" (will be retried, or a failed handshake); "dropped" (retry window
	// over, or DropNotifications); "abandoned" (Close during retries).
	Outcome string
	Body    []byte // the request body (notification batches), or the reply (handshakes)
}

type pendingNotification struct {
	url    string
	kind   string // notification | lifecycle
	n      map[string]any
	tokens []string // lifecycle: validationTokens (nil: none)
	drop   bool
}

type urlQueue struct {
	items []pendingNotification
	timer *time.Timer
}

// Notification time formats: subscriptionExpirationDateTime with an offset (docs/graph-facts.md §3.3 example).
const notifTime = "2006-01-02T15:04:05.9999999-07:00"

// nextSequenceNumber is strictly increasing and above 2^53 (.NET ticks of Clock, docs/graph-facts.md §3.3).
func (s *Server) nextSequenceNumber() int64 {
	ticks := s.now().UnixNano()/100 + 621355968000000000
	if ticks <= s.lastSeqNumber {
		ticks = s.lastSeqNumber + 1
	}
	s.lastSeqNumber = ticks
	return ticks
}

func (s *Server) setTenant(n map[string]any) {
	switch s.opts.NotificationTenantField {
	case "organizationId":
		n["organizationId"] = s.opts.TenantID
	case "none":
	default:
		n["tenantId"] = s.opts.TenantID
	}
}

// notificationsFor builds a user's change notifications (s.mu held).
func (s *Server) notificationsFor(userID, changeType string) []pendingNotification {
	return s.directoryNotificationsLocked("users", userID, changeType, nil)
}

// directoryNotificationsLocked builds the change notifications of object id in collection coll
// ("users" or "groups") for every live subscription matching (s.mu held); extra goes into resourceData.
func (s *Server) directoryNotificationsLocked(coll, id, changeType string, extra map[string]any) []pendingNotification {
	prefix, odataType := "Users/", "#Microsoft.Graph.User"
	if coll == "groups" {
		prefix, odataType = "Groups/", "#Microsoft.Graph.Group"
	}
	var out []pendingNotification
	subs := s.subscribersLocked("directory", changeType, func(ref resourceRef) bool {
		return ref.Coll == coll && (ref.ID(0) == "" || strings.EqualFold(ref.ID(0), id))
	})
	for _, sub := range subs {
		out = append(out, s.changeNotificationsLocked(sub, nil, func() map[string]any {
			rd := map[string]any{
				"@odata.type":    odataType,
				"@odata.id":      prefix + id,
				"id":             id,
				"organizationId": s.opts.TenantID,
				"eventTime":      s.now().UTC().Format(time.RFC3339Nano),
				"sequenceNumber": s.nextSequenceNumber(),
			}
			maps.Copy(rd, extra)
			return map[string]any{"changeType": changeType, "resource": prefix + id, "resourceData": rd}
		})...)
	}
	return out
}

// subscribersLocked returns the live subscriptions (any app) of a family whose resource its rule parses
// into a ref that want accepts and whose change types include changeType (s.mu held). A family calls it
// to find who hears of a change.
func (s *Server) subscribersLocked(family, changeType string, want func(ref resourceRef) bool) []*Subscription {
	var out []*Subscription
	for _, sub := range s.liveSubsLocked() {
		rule, ref, ok := matchResource(sub.Resource)
		if !ok || rule.family != family || !want(ref) {
			continue
		}
		if cts, _ := parseChangeTypes(sub.ChangeType, nil); !slices.Contains(cts, changeType) {
			continue
		}
		out = append(out, sub)
	}
	return out
}

// changeNotificationsLocked builds the change notifications for one subscription (s.mu held): build
// gives the family's fields (changeType, resource, resourceData or encryptedContent, …) and is called
// once per copy (1 + Options.DuplicateNotifications); the envelope adds subscriptionId,
// subscriptionExpirationDateTime, clientState and the tenant field. tokens become the batch's
// validationTokens (rich notifications; nil: none). Pass the result to enqueueAll after releasing
// s.mu: it is then coalesced, batched, retried and recorded like every notification.
func (s *Server) changeNotificationsLocked(sub *Subscription, tokens []string, build func() map[string]any) []pendingNotification {
	var out []pendingNotification
	for range 1 + max(0, s.opts.DuplicateNotifications) {
		n := map[string]any{
			"subscriptionId":                 sub.ID,
			"subscriptionExpirationDateTime": sub.ExpirationDateTime.UTC().Format(notifTime),
		}
		maps.Copy(n, build())
		if sub.ClientState != "" {
			n["clientState"] = sub.ClientState
		}
		s.setTenant(n)
		out = append(out, pendingNotification{url: sub.NotificationURL, kind: "notification", n: n, tokens: tokens, drop: s.drop})
	}
	return out
}

// enqueueAll queues notifications per URL; they are sent after CoalesceWindow (or on Flush),
// at most NotificationBatchSize per POST. Dropped ones are only recorded.
func (s *Server) enqueueAll(ns []pendingNotification) {
	if len(ns) == 0 {
		return
	}
	s.dmu.Lock()
	if s.closed {
		s.dmu.Unlock()
		return
	}
	for _, p := range ns {
		if p.drop {
			b, _ := json.Marshal(map[string]any{"value": []any{p.n}})
			s.deliveries = append(s.deliveries, Delivery{Kind: p.kind, URL: p.url, Notifications: 1, Time: time.Now(), Outcome: "dropped", Err: "DropNotifications is on", Body: b})
			continue
		}
		key := p.kind + " " + p.url
		q := s.queues[key]
		if q == nil {
			q = &urlQueue{}
			s.queues[key] = q
		}
		q.items = append(q.items, p)
		s.outstanding++
		if q.timer == nil && s.opts.CoalesceWindow > 0 {
			q.timer = time.AfterFunc(s.opts.CoalesceWindow, func() { s.flushKey(key) })
		}
	}
	s.dmu.Unlock()
	s.bump()
}

// Flush sends every queued notification now instead of waiting for the coalescing window.
func (s *Server) Flush() {
	s.dmu.Lock()
	keys := make([]string, 0, len(s.queues))
	for k := range s.queues {
		keys = append(keys, k)
	}
	s.dmu.Unlock()
	for _, k := range keys {
		s.flushKey(k)
	}
}

func (s *Server) flushKey(key string) {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	q := s.queues[key]
	if q == nil || s.closed {
		return
	}
	if q.timer != nil {
		q.timer.Stop()
	}
	delete(s.queues, key)
	for len(q.items) > 0 {
		n := min(len(q.items), s.opts.NotificationBatchSize)
		batch := q.items[:n]
		q.items = q.items[n:]
		vals := make([]any, len(batch))
		for i, p := range batch {
			vals[i] = p.n
		}
		env := map[string]any{"value": vals}
		var toks []string
		for _, p := range batch {
			for _, t := range p.tokens {
				if !slices.Contains(toks, t) {
					toks = append(toks, t)
				}
			}
		}
		if toks != nil {
			env["validationTokens"] = toks
		}
		body, _ := json.Marshal(env)
		s.batchSeq++
		s.wg.Add(1)
		go s.deliverBatch(s.batchSeq, batch[0].kind, batch[0].url, body, len(batch))
	}
}

// deliverBatch POSTs one batch like Graph (docs/graph-facts.md §2.2): a 2xx within DeliveryTimeout is delivered;
// otherwise it is retried with exponential backoff from DeliveryBackoff (each retry bounded by
// RetryAttemptTimeout) until DeliveryRetryWindow has passed, then dropped.
func (s *Server) deliverBatch(id int, kind, url string, body []byte, count int) {
	defer s.wg.Done()
	defer func() {
		s.dmu.Lock()
		s.outstanding -= count
		s.dmu.Unlock()
		s.bump()
	}()
	first := time.Now()
	delay := s.opts.DeliveryBackoff
	for attempt := 1; ; attempt++ {
		timeout := s.opts.DeliveryTimeout
		if attempt > 1 {
			timeout = s.opts.RetryAttemptTimeout
		}
		d := s.post(s.ctx, url, body, timeout)
		d.Batch, d.Kind, d.Attempt, d.Notifications = id, kind, attempt, count
		ok := d.Err == "" && d.Status >= 200 && d.Status < 300
		switch {
		case ok:
			d.Outcome = "delivered"
		case s.ctx.Err() != nil:
			d.Outcome = "abandoned"
		case time.Since(first)+delay > s.opts.DeliveryRetryWindow:
			d.Outcome = "dropped"
		default:
			d.Outcome = "failed"
		}
		s.recordDelivery(d)
		if d.Outcome != "failed" {
			if d.Outcome == "dropped" {
				s.log.Warn("fakegraph: notifications dropped after the retry window", "url", url, "count", count)
			}
			return
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			s.recordDelivery(Delivery{Batch: id, Kind: kind, URL: url, Attempt: attempt + 1, Notifications: count, Time: time.Now(), Outcome: "abandoned", Err: "server closed", Body: body})
			return
		}
		delay *= 2
	}
}

// post sends one JSON POST and reports it; a reply slower than timeout is a failure. An EventHub: URL gets
// the body as one event instead (eventhubs.go).
func (s *Server) post(ctx context.Context, url string, body []byte, timeout time.Duration) Delivery {
	if isEventHubURL(url) {
		return s.sendEvent(ctx, url, body, timeout)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := Delivery{URL: url, Time: time.Now(), Body: body}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		d.Err = err.Error()
		return d
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "fakegraph-ChangeNotifications/1.0")
	resp, err := s.deliver.Do(req)
	if err == nil {
		_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		d.Status = resp.StatusCode
	}
	d.Duration = time.Since(d.Time)
	if err != nil {
		d.Err = err.Error()
		if ctx.Err() == context.DeadlineExceeded {
			d.Err = fmt.Sprintf("no reply within %v: %v", timeout, err)
		}
	}
	return d
}

func (s *Server) recordDelivery(d Delivery) {
	s.dmu.Lock()
	s.deliveries = append(s.deliveries, d)
	s.dmu.Unlock()
	s.log.Debug("delivery", "kind", d.Kind, "url", d.URL, "attempt", d.Attempt, "status", d.Status, "outcome", d.Outcome, "err", d.Err)
	s.bump()
}

// Deliveries returns every delivery attempt so far, in order.
func (s *Server) Deliveries() []Delivery {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	return slices.Clone(s.deliveries)
}

// Pending is the number of notifications queued or being delivered (including retries).
func (s *Server) Pending() int {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	return s.outstanding
}

// WaitDelivered waits until no notification is queued or in delivery (delivered, dropped or abandoned).
func (s *Server) WaitDelivered(ctx context.Context) error {
	return s.WaitFor(ctx, func() bool { return s.Pending() == 0 })
}

// SendLifecycle sends a lifecycle notification (docs/graph-facts.md §5) for a live subscription to its
// lifecycleNotificationUrl, or its notificationUrl when it has none: reauthorizationRequired,
// subscriptionRemoved (the subscription is then removed) or missed. It carries one good
// validationToken, as observed in practice (docs/graph-facts.md §2.4). Unknown subscription: no-op (logged).
func (s *Server) SendLifecycle(subID, event string) {
	s.SendLifecycleWithTokens(subID, event, []string{s.ValidationToken("")})
}

// SendLifecycleWithTokens is SendLifecycle with the given validationTokens (nil: no validationTokens field).
func (s *Server) SendLifecycleWithTokens(subID, event string, tokens []string) {
	s.mu.Lock()
	sub := s.liveLocked(subID)
	if sub == nil {
		s.mu.Unlock()
		s.log.Warn("fakegraph: SendLifecycle for an unknown subscription", "id", subID)
		return
	}
	n := map[string]any{
		"subscriptionId":                 sub.ID,
		"subscriptionExpirationDateTime": sub.ExpirationDateTime.UTC().Format(notifTime),
		"lifecycleEvent":                 event,
	}
	if sub.ClientState != "" {
		n["clientState"] = sub.ClientState
	}
	s.setTenant(n)
	u := sub.LifecycleNotificationURL
	if u == "" {
		u = sub.NotificationURL
	}
	switch event {
	case "subscriptionRemoved":
		s.removeSubLocked(subID)
	case "reauthorizationRequired":
		s.subMeta[subID].needsReauth = true
	}
	p := pendingNotification{url: u, kind: "lifecycle", n: n, tokens: tokens, drop: s.drop}
	s.mu.Unlock()
	s.enqueueAll([]pendingNotification{p})
}

// Forge POSTs an arbitrary body to url the way Graph delivers notifications (Content-Type
// application/json; charset=utf-8, through the delivery client), synchronously, and records it.
// The caller closes the response body.
func (s *Server) Forge(url string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "fakegraph-ChangeNotifications/1.0")
	start := time.Now()
	resp, err := s.deliver.Do(req)
	d := Delivery{Kind: "forged", URL: url, Attempt: 1, Time: start, Duration: time.Since(start), Body: bytes.Clone(body)}
	if err != nil {
		d.Err, d.Outcome = err.Error(), "failed"
	} else {
		d.Status = resp.StatusCode
		d.Outcome = "delivered"
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			d.Outcome = "failed"
		}
	}
	s.recordDelivery(d)
	return resp, err
}
