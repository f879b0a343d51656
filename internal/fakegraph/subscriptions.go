package fakegraph

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Subscription is a Graph subscription as the double stores it.
type Subscription struct {
	ID, Resource, ChangeType, NotificationURL, LifecycleNotificationURL, ClientState, ApplicationID, CreatorID, LatestSupportedTLSVersion string
	ExpirationDateTime                                                                                                                    time.Time
	// Rich notifications (only for a family whose rule allows them): the certificate is echoed as sent.
	IncludeResourceData                            bool
	EncryptionCertificate, EncryptionCertificateID string
}

type subMeta struct {
	created        time.Time
	reauthorizedAt time.Time // Clock of the last reauthorize POST
	patchedAt      time.Time // Clock of the last PATCH
	needsReauth    bool      // a reauthorizationRequired was sent and not yet answered
}

// graphTime is the format Graph uses for expirationDateTime in subscription objects.
const graphTime = "2006-01-02T15:04:05.0000000Z"

func (s *Server) subJSON(sub *Subscription, withClientState bool) map[string]any {
	var cs any
	if withClientState && sub.ClientState != "" {
		cs = sub.ClientState
	}
	var lc any
	if sub.LifecycleNotificationURL != "" {
		lc = sub.LifecycleNotificationURL
	}
	var cert, certID any
	if sub.EncryptionCertificate != "" {
		cert = sub.EncryptionCertificate
	}
	if sub.EncryptionCertificateID != "" {
		certID = sub.EncryptionCertificateID
	}
	return map[string]any{
		"id":                        sub.ID,
		"resource":                  sub.Resource,
		"applicationId":             sub.ApplicationID,
		"changeType":                sub.ChangeType,
		"clientState":               cs,
		"notificationUrl":           sub.NotificationURL,
		"notificationQueryOptions":  nil,
		"lifecycleNotificationUrl":  lc,
		"expirationDateTime":        sub.ExpirationDateTime.UTC().Format(graphTime),
		"creatorId":                 sub.CreatorID,
		"includeResourceData":       sub.IncludeResourceData,
		"latestSupportedTlsVersion": sub.LatestSupportedTLSVersion,
		"encryptionCertificate":     cert,
		"encryptionCertificateId":   certID,
		"notificationUrlAppId":      nil,
	}
}

// live reports whether a subscription exists on Graph's side (not expired by Clock); expired ones are purged.
func (s *Server) liveLocked(id string) *Subscription {
	sub := s.subs[id]
	if sub == nil {
		return nil
	}
	if !sub.ExpirationDateTime.After(s.now()) {
		s.removeSubLocked(id)
		return nil
	}
	return sub
}

func (s *Server) removeSubLocked(id string) {
	delete(s.subs, id)
	delete(s.subMeta, id)
	s.subOrder = slices.DeleteFunc(s.subOrder, func(x string) bool { return x == id })
}

func (s *Server) liveSubsLocked() []*Subscription {
	var out []*Subscription
	for _, id := range slices.Clone(s.subOrder) {
		if sub := s.liveLocked(id); sub != nil {
			out = append(out, sub)
		}
	}
	return out
}

// Subscriptions returns every live subscription (any app), in creation order, including clientState.
func (s *Server) Subscriptions() []Subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Subscription
	for _, sub := range s.liveSubsLocked() {
		out = append(out, *sub)
	}
	return out
}

// SeedSubscription plants a subscription directly: no validation, no handshake, no 409 check
// (e.g. duplicates left by a race). Defaults: a new id, resource "users", changeType "updated,deleted",
// applicationId = ClientID, creatorId = the service principal, TLS v1_2, expiry Clock()+41,760 min.
func (s *Server) SeedSubscription(sub Subscription) {
	if sub.ID == "" {
		sub.ID = newGUID()
	}
	if sub.Resource == "" {
		sub.Resource = "users"
	}
	if sub.ChangeType == "" {
		sub.ChangeType = "updated,deleted"
	}
	if sub.ApplicationID == "" {
		sub.ApplicationID = s.opts.ClientID
	}
	if sub.CreatorID == "" {
		sub.CreatorID = s.opts.ServicePrincipalID
	}
	if sub.LatestSupportedTLSVersion == "" {
		sub.LatestSupportedTLSVersion = "v1_2"
	}
	s.mu.Lock()
	if sub.ExpirationDateTime.IsZero() {
		sub.ExpirationDateTime = s.now().Add(MaxExpiryMinutes * time.Minute)
	}
	if _, ok := s.subs[sub.ID]; !ok {
		s.subOrder = append(s.subOrder, sub.ID)
	}
	s.subs[sub.ID] = &sub
	s.subMeta[sub.ID] = &subMeta{created: s.now()}
	s.mu.Unlock()
	s.bump()
}

// ExpireSubscription makes a subscription expire now: it is gone on Graph's side (404 afterwards).
func (s *Server) ExpireSubscription(id string) {
	s.mu.Lock()
	s.removeSubLocked(id)
	s.mu.Unlock()
	s.bump()
}

// DeleteSubscriptionSilently removes a subscription without telling anyone (404 afterwards).
func (s *Server) DeleteSubscriptionSilently(id string) { s.ExpireSubscription(id) }

func (s *Server) subNotFound(w http.ResponseWriter, r *http.Request, id string) {
	// Wording is the double's own; the reference fixes only the 404 status (docs/graph-facts.md §4).
	s.graphError(w, r, http.StatusNotFound, "ResourceNotFound", "The object was not found. Subscription '"+id+"' does not exist.")
}

func (s *Server) invalid(w http.ResponseWriter, r *http.Request, msg string) {
	s.graphError(w, r, http.StatusBadRequest, "InvalidRequest", msg)
}

func sameChangeTypes(a, b string) bool {
	x, _ := parseChangeTypes(a, nil)
	y, _ := parseChangeTypes(b, nil)
	return slices.Equal(x, y)
}

// checkURL enforces HTTPS; choice: http:// is accepted for loopback hosts so tests and the demo work.
func checkURL(field, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("Invalid '%s' attribute: '%s' is not an absolute URL.", field, raw)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopbackHost(u.Hostname()):
	default:
		return fmt.Errorf("Invalid '%s' attribute: the URL must use HTTPS.", field)
	}
	return nil
}

// clampExpiry applies docs/graph-facts.md §1.1/§3.1: below 45 min → raised to now+45 min (including values
// in the past, per the letter of the reference); beyond the family's maximum (41,760 min for the
// directory) → error if RejectExpiryBeyondMax.
func (s *Server) clampExpiry(raw string, maxMinutes int) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, raw)
	if err != nil {
		return time.Time{}, fmt.Errorf("Invalid 'expirationDateTime' attribute: '%s' is not an ISO 8601 date-time.", raw)
	}
	now := s.now()
	if t.Before(now.Add(MinExpiryMinutes * time.Minute)) {
		t = now.Add(MinExpiryMinutes * time.Minute)
	}
	if s.opts.RejectExpiryBeyondMax && t.After(now.Add(time.Duration(maxMinutes)*time.Minute)) {
		return time.Time{}, fmt.Errorf("Subscription expiration can only be %d minutes in the future.", maxMinutes)
	}
	return t.UTC(), nil
}

type subRequest struct {
	ChangeType                *string `json:"changeType"`
	NotificationURL           *string `json:"notificationUrl"`
	LifecycleNotificationURL  *string `json:"lifecycleNotificationUrl"`
	Resource                  *string `json:"resource"`
	ExpirationDateTime        *string `json:"expirationDateTime"`
	ClientState               *string `json:"clientState"`
	LatestSupportedTLSVersion *string `json:"latestSupportedTlsVersion"`
	IncludeResourceData       *bool   `json:"includeResourceData"`
	EncryptionCertificate     *string `json:"encryptionCertificate"`
	EncryptionCertificateID   *string `json:"encryptionCertificateId"`
	raw                       map[string]json.RawMessage
}

func decodeSubRequest(b []byte) (*subRequest, error) {
	var req subRequest
	if err := json.Unmarshal(b, &req); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &req.raw); err != nil {
		return nil, err
	}
	return &req, nil
}

func (s *Server) handleCreateSubscription(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	req, err := decodeSubRequest(b)
	if err != nil {
		s.graphError(w, r, http.StatusBadRequest, "BadRequest", "Invalid request body: "+err.Error())
		return
	}
	for _, f := range []string{"vapidPublicKey", "webPushSubscriptionEndpoint", "webPushP256dh", "webPushAuth", "notificationQueryOptions"} {
		if _, ok := req.raw[f]; ok {
			s.invalid(w, r, "Invalid '"+f+"' attribute: not supported for this resource.")
			return
		}
	}
	switch {
	case req.ChangeType == nil || *req.ChangeType == "":
		s.invalid(w, r, "Missing 'changeType' attribute.")
		return
	case req.NotificationURL == nil || *req.NotificationURL == "":
		s.invalid(w, r, "Missing 'notificationUrl' attribute.")
		return
	case req.Resource == nil || *req.Resource == "":
		s.invalid(w, r, "Missing 'resource' attribute.")
		return
	case req.ExpirationDateTime == nil || *req.ExpirationDateTime == "":
		s.invalid(w, r, "Missing 'expirationDateTime' attribute.")
		return
	}
	resource := *req.Resource
	rule, ref, ok := matchResource(resource)
	if !ok {
		s.invalid(w, r, "Invalid 'resource' attribute: '"+resource+"' is not supported by the double ("+supportedPatterns()+" only).")
		return
	}
	if !tokenHasRole(r, rule.roles(ref)) {
		s.forbidden(w, r)
		return
	}
	if msg := rule.refusal(s, req, ref); msg != "" {
		s.invalid(w, r, msg)
		return
	}
	if err := checkNotificationURL("notificationUrl", *req.NotificationURL); err != nil {
		s.invalid(w, r, err.Error())
		return
	}
	lifecycle := ""
	if req.LifecycleNotificationURL != nil && *req.LifecycleNotificationURL != "" {
		lifecycle = *req.LifecycleNotificationURL
		if err := checkNotificationURL("lifecycleNotificationUrl", lifecycle); err != nil {
			s.invalid(w, r, err.Error())
			return
		}
	}
	clientState := ""
	if req.ClientState != nil {
		clientState = *req.ClientState
	}
	if len(clientState) > 128 { // docs/graph-facts.md §1.1: 128 on the subscription page (255 elsewhere)
		s.invalid(w, r, "Invalid 'clientState' attribute: the maximum length is 128 characters.")
		return
	}
	tlsv := "v1_2"
	if req.LatestSupportedTLSVersion != nil && *req.LatestSupportedTLSVersion != "" {
		tlsv = *req.LatestSupportedTLSVersion
		if !slices.Contains([]string{"v1_0", "v1_1", "v1_2", "v1_3"}, tlsv) {
			s.invalid(w, r, "Invalid 'latestSupportedTlsVersion' attribute: '"+tlsv+"'.")
			return
		}
	}
	exp, err := s.clampExpiry(*req.ExpirationDateTime, rule.maxLifetimeMinutes)
	if err != nil {
		s.invalid(w, r, err.Error())
		return
	}
	if msg := rule.lifecycleRefusal(s.now(), exp, lifecycle != ""); msg != "" {
		s.invalid(w, r, msg)
		return
	}

	// 409 and quota, with a reservation so concurrent creates of one combination get a 409
	// (choice: deterministic; SeedSubscription plants race duplicates).
	id := newGUID()
	s.mu.Lock()
	for _, sub := range s.liveSubsLocked() {
		if strings.EqualFold(sub.ApplicationID, s.opts.ClientID) && strings.EqualFold(strings.TrimPrefix(sub.Resource, "/"), strings.TrimPrefix(resource, "/")) && sameChangeTypes(sub.ChangeType, *req.ChangeType) {
			s.mu.Unlock()
			s.graphError(w, r, http.StatusConflict, "ExtensionError", "Subscription Id "+sub.ID+" already exists for the requested combination")
			return
		}
	}
	for k, rid := range s.reserved {
		kr, kc, _ := strings.Cut(k, "|")
		if strings.EqualFold(kr, strings.TrimPrefix(resource, "/")) && sameChangeTypes(kc, *req.ChangeType) {
			s.mu.Unlock()
			s.graphError(w, r, http.StatusConflict, "ExtensionError", "Subscription Id "+rid+" already exists for the requested combination")
			return
		}
	}
	if msg := s.quotaRefusalLocked(rule, ref); msg != "" {
		s.mu.Unlock()
		s.graphError(w, r, http.StatusForbidden, "ExtensionError", msg)
		return
	}
	if rule.forbid != nil {
		if code, msg := rule.forbid(s, ref); msg != "" {
			s.mu.Unlock()
			s.graphError(w, r, http.StatusForbidden, code, msg)
			return
		}
	}
	key := strings.TrimPrefix(resource, "/") + "|" + *req.ChangeType
	s.reserved[key] = id
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.reserved, key)
		s.mu.Unlock()
	}()

	// Validation handshake (docs/graph-facts.md §1.2, §1.3): notificationUrl, then lifecycleNotificationUrl (twice if the same URL).
	// An event hub gets one validation event instead (docs/graph-facts.md §2.6), once when both URLs name it (choice).
	if msg := s.handshake(r.Context(), *req.NotificationURL, id); msg != "" {
		s.graphError(w, r, http.StatusBadRequest, "ValidationError", msg)
		return
	}
	if lifecycle != "" && !(isEventHubURL(lifecycle) && lifecycle == *req.NotificationURL) {
		if msg := s.handshake(r.Context(), lifecycle, id); msg != "" {
			s.graphError(w, r, http.StatusBadRequest, "ValidationError", msg)
			return
		}
	}
	sub := &Subscription{
		ID: id, Resource: resource, ChangeType: *req.ChangeType, NotificationURL: *req.NotificationURL,
		LifecycleNotificationURL: lifecycle, ClientState: clientState, ApplicationID: s.opts.ClientID,
		CreatorID: s.opts.ServicePrincipalID, LatestSupportedTLSVersion: tlsv, ExpirationDateTime: exp,
	}
	if req.IncludeResourceData != nil && *req.IncludeResourceData {
		sub.IncludeResourceData, sub.EncryptionCertificate, sub.EncryptionCertificateID = true, *req.EncryptionCertificate, *req.EncryptionCertificateID
	}
	s.mu.Lock()
	s.subs[id] = sub
	s.subOrder = append(s.subOrder, id)
	s.subMeta[id] = &subMeta{created: s.now()}
	body := s.subJSON(sub, true)
	s.mu.Unlock()
	body["@odata.context"] = s.GraphBaseURL() + "/$metadata#subscriptions/$entity"
	writeGraphJSON(w, http.StatusCreated, body)
}

// quotaRefusalLocked returns Graph's 403 message when creating a subscription to ref would exceed one of
// its rule's quotas, counting live subscriptions and creates in flight (s.mu held); "" when within them.
func (s *Server) quotaRefusalLocked(rule *subscriptionRule, ref resourceRef) string {
	for _, q := range rule.quotas {
		limit := q.limit(&s.opts)
		if limit <= 0 {
			continue
		}
		scope := q.scope(ref)
		same := func(res string) bool {
			other, oref, ok := matchResource(res)
			return ok && other.family == rule.family && q.scope(oref) == scope
		}
		n := 0
		for _, sub := range s.liveSubsLocked() {
			if (q.allApps || strings.EqualFold(sub.ApplicationID, s.opts.ClientID)) && same(sub.Resource) {
				n++
			}
		}
		for k := range s.reserved {
			if res, _, _ := strings.Cut(k, "|"); same(res) {
				n++
			}
		}
		if n >= limit {
			return fmt.Sprintf(q.message, limit)
		}
	}
	return ""
}

// handshake performs the validation POST and returns "" on success, else Graph's error message. An
// EventHub: URL gets the validation event instead.
func (s *Server) handshake(ctx context.Context, rawURL, subID string) string {
	if isEventHubURL(rawURL) {
		return s.eventHubValidation(ctx, rawURL, subID)
	}
	token := "Validation: Testing client application reachability for subscription Request-Id: " + newGUID()
	u, err := url.Parse(rawURL)
	if err != nil {
		return "Subscription validation request failed. Notification endpoint must be a valid URL."
	}
	// The original query is kept byte for byte; the token is appended url-encoded (spaces as '+', ':' as %3A).
	if u.RawQuery != "" {
		u.RawQuery += "&"
	}
	u.RawQuery += "validationToken=" + url.QueryEscape(token)
	ctx, cancel := context.WithTimeout(ctx, s.opts.HandshakeTimeout)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), http.NoBody)
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	req.Header.Set("User-Agent", "fakegraph-ChangeNotifications/1.0")
	start := time.Now()
	resp, err := s.deliver.Do(req)
	d := Delivery{Kind: "validation", URL: u.String(), Attempt: 1, Time: start, SubscriptionID: subID}
	msg := ""
	var body []byte
	switch {
	case err != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded)):
		msg = "Subscription validation request timed out."
		d.Err = err.Error()
	case err != nil:
		msg = "Subscription validation request failed. Must respond with 200 OK to this request."
		d.Err = err.Error()
	default:
		body, err = io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		d.Status = resp.StatusCode
		ct := resp.Header.Get("Content-Type")
		switch {
		case err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
			msg = "Subscription validation request timed out."
		case resp.StatusCode != http.StatusOK:
			msg = "Subscription validation request failed. Must respond with 200 OK to this request."
		case !bytes.Equal(body, []byte(token)):
			msg = "Validation error: Response must exactly match validationToken query parameter."
		case !s.opts.LenientHandshake && !strings.HasPrefix(strings.ToLower(ct), "text/plain"):
			// Stricter than Graph is known to be: docs/graph-facts.md §1.2 step 3 asks for text/plain.
			msg = "Subscription validation request failed. Response must have Content-Type text/plain (fakegraph)."
		}
	}
	d.Duration = time.Since(start)
	d.Body = body
	if msg == "" {
		d.Outcome = "delivered"
	} else {
		d.Outcome = "failed"
		if d.Err == "" {
			d.Err = msg
		}
	}
	s.recordDelivery(d)
	return msg
}

func (s *Server) handleListSubscriptions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	offset := 0
	for k := range q {
		if k != "$skiptoken" {
			// docs/graph-facts.md §4: the list call accepts no OData query parameters.
			s.graphError(w, r, http.StatusBadRequest, "BadRequest", "Query option '"+k+"' is not supported on subscriptions.")
			return
		}
	}
	if st := q.Get("$skiptoken"); st != "" {
		t, ok := decodeToken(st)
		if !ok {
			s.graphError(w, r, http.StatusBadRequest, "BadRequest", "Invalid $skiptoken.")
			return
		}
		offset = t.Offset
	}
	s.mu.Lock()
	var mine []*Subscription
	for _, sub := range s.liveSubsLocked() {
		if strings.EqualFold(sub.ApplicationID, s.opts.ClientID) { // docs/graph-facts.md §4: app permission lists this app's subscriptions
			mine = append(mine, sub)
		}
	}
	vals := []any{}
	i := offset
	for ; i < len(mine) && len(vals) < s.opts.SubscriptionPageSize; i++ {
		vals = append(vals, s.subJSON(mine[i], false))
	}
	more := i < len(mine)
	s.mu.Unlock()
	body := map[string]any{"@odata.context": s.GraphBaseURL() + "/$metadata#subscriptions", "value": vals}
	if more {
		body["@odata.nextLink"] = s.GraphBaseURL() + "/subscriptions?$skiptoken=" + encodeToken(pageToken{Offset: i})
	}
	writeGraphJSON(w, http.StatusOK, body)
}

// lockOwn takes the lock and returns this app's live subscription id with the lock held; for any other (gone,
// expired, another app's) it releases the lock, answers 404 as Graph does, and reports false.
func (s *Server) lockOwn(w http.ResponseWriter, r *http.Request, id string) (*Subscription, bool) {
	s.mu.Lock()
	sub := s.liveLocked(id)
	if sub == nil || !strings.EqualFold(sub.ApplicationID, s.opts.ClientID) {
		s.mu.Unlock()
		s.subNotFound(w, r, id)
		return nil, false
	}
	return sub, true
}

// handleGetSubscription: clientState comes back null, as on the list (choice: the reference documents null for list only).
func (s *Server) handleGetSubscription(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	sub, ok := s.lockOwn(w, r, id)
	if !ok {
		return
	}
	body := s.subJSON(sub, false)
	s.mu.Unlock()
	body["@odata.context"] = s.GraphBaseURL() + "/$metadata#subscriptions/$entity"
	writeGraphJSON(w, http.StatusOK, body)
}

// handlePatchSubscription renews (docs/graph-facts.md §4): expirationDateTime and/or notificationUrl.
// A changed notificationUrl is validated by a handshake (UNCONFIRMED in docs/graph-facts.md §1.3; the double does it).
// lifecycleNotificationUrl cannot be added or changed (docs/graph-facts.md §1.1); other fields cannot be changed (choice).
func (s *Server) handlePatchSubscription(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	b, _ := io.ReadAll(r.Body)
	req, err := decodeSubRequest(b)
	if err != nil {
		s.graphError(w, r, http.StatusBadRequest, "BadRequest", "Invalid request body: "+err.Error())
		return
	}
	sub, ok := s.lockOwn(w, r, id)
	if !ok {
		return
	}
	cur := *sub
	s.mu.Unlock()
	if req.LifecycleNotificationURL != nil && *req.LifecycleNotificationURL != cur.LifecycleNotificationURL {
		s.invalid(w, r, "Invalid 'lifecycleNotificationUrl' attribute: it cannot be added or changed after creation; delete the subscription and create a new one.")
		return
	}
	for k := range req.raw {
		switch k {
		case "expirationDateTime", "notificationUrl", "lifecycleNotificationUrl", "@odata.type":
		case "changeType", "resource", "clientState", "latestSupportedTlsVersion", "includeResourceData":
			var cmp string
			_ = json.Unmarshal(req.raw[k], &cmp)
			if (k == "changeType" && cmp == cur.ChangeType) || (k == "resource" && cmp == cur.Resource) {
				continue
			}
			s.invalid(w, r, "Invalid '"+k+"' attribute: only expirationDateTime and notificationUrl can be updated.")
			return
		}
	}
	newExp := cur.ExpirationDateTime
	if req.ExpirationDateTime != nil {
		rule, _, ok := matchResource(cur.Resource)
		maxMinutes := MaxExpiryMinutes // a planted subscription to a resource no family models: the directory's limit
		if ok {
			maxMinutes = rule.maxLifetimeMinutes
		}
		if newExp, err = s.clampExpiry(*req.ExpirationDateTime, maxMinutes); err != nil {
			s.invalid(w, r, err.Error())
			return
		}
		if ok {
			if msg := rule.lifecycleRefusal(s.now(), newExp, cur.LifecycleNotificationURL != ""); msg != "" {
				s.invalid(w, r, msg)
				return
			}
		}
	}
	var familyPatch func(*Subscription)
	if rule, _, ok := matchResource(cur.Resource); ok && rule.patch != nil {
		var msg string
		if familyPatch, msg = rule.patch(s, req, cur); msg != "" {
			s.invalid(w, r, msg)
			return
		}
	}
	newURL := cur.NotificationURL
	if req.NotificationURL != nil && *req.NotificationURL != cur.NotificationURL {
		if err := checkNotificationURL("notificationUrl", *req.NotificationURL); err != nil {
			s.invalid(w, r, err.Error())
			return
		}
		if msg := s.handshake(r.Context(), *req.NotificationURL, id); msg != "" {
			s.graphError(w, r, http.StatusBadRequest, "ValidationError", msg)
			return
		}
		newURL = *req.NotificationURL
	}
	s.mu.Lock()
	sub = s.liveLocked(id)
	if sub == nil {
		s.mu.Unlock()
		s.subNotFound(w, r, id)
		return
	}
	sub.ExpirationDateTime, sub.NotificationURL = newExp, newURL
	if familyPatch != nil {
		familyPatch(sub)
	}
	m := s.subMeta[id]
	now := s.now()
	if !m.reauthorizedAt.IsZero() && now.Sub(m.reauthorizedAt) < 10*time.Minute {
		s.log.Warn("fakegraph: PATCH within 10 minutes of reauthorize (docs/graph-facts.md §4 warns against it)", "subscription", id)
	}
	m.patchedAt, m.needsReauth = now, false // renewing also reauthorizes (docs/graph-facts.md §4)
	body := s.subJSON(sub, false)
	s.mu.Unlock()
	body["@odata.context"] = s.GraphBaseURL() + "/$metadata#subscriptions/$entity"
	writeGraphJSON(w, http.StatusOK, body)
}

func (s *Server) handleDeleteSubscription(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	_, ok := s.lockOwn(w, r, id)
	if !ok {
		return
	}
	s.removeSubLocked(id)
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleReauthorize(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	_, ok := s.lockOwn(w, r, id)
	if !ok {
		return
	}
	m := s.subMeta[id]
	now := s.now()
	if !m.patchedAt.IsZero() && now.Sub(m.patchedAt) < 10*time.Minute {
		s.log.Warn("fakegraph: reauthorize within 10 minutes of PATCH (docs/graph-facts.md §4 warns against it)", "subscription", id)
	}
	m.reauthorizedAt, m.needsReauth = now, false
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// NeedsReauthorization reports whether a reauthorizationRequired was sent for the subscription and
// neither reauthorize nor PATCH has answered it since.
func (s *Server) NeedsReauthorization(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.subMeta[id]
	return m != nil && m.needsReauth
}
