package fakegraph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Event Hubs delivery (docs/graph-facts.md §2.6): a subscription whose notificationUrl or lifecycleNotificationUrl is
// EventHub:https://<namespace>/eventhubname/<hub>?tenantId=<domain> gets no validation handshake; Graph
// sends one validation event instead, and every notification batch becomes one event whose body is the
// changeNotificationCollection. The double hands those events to Options.EventHubs.

// EventHubSink receives what the double delivers to Event Hubs: one event body per call, for the hub named
// in the subscription's URL. An error is a failed delivery, retried as a webhook POST would be.
type EventHubSink interface {
	SendEvent(ctx context.Context, namespace, hub string, body []byte) error
}

// EventHubPrefix starts a notification URL that names an event hub.
const EventHubPrefix = "EventHub:"

// EventHubTarget is a parsed EventHub: notification URL.
type EventHubTarget struct {
	Namespace string // fully qualified, e.g. contoso.servicebus.windows.net
	Hub       string
	TenantID  string // the tenantId query parameter: the domain of the tenant that holds the hub
}

// EventHubURL builds the notification URL Graph expects for a hub.
func EventHubURL(namespace, hub, tenantDomain string) string {
	return EventHubPrefix + "https://" + namespace + "/eventhubname/" + url.PathEscape(hub) + "?tenantId=" + url.QueryEscape(tenantDomain)
}

func isEventHubURL(raw string) bool {
	return len(raw) >= len(EventHubPrefix) && strings.EqualFold(raw[:len(EventHubPrefix)], EventHubPrefix)
}

// ParseEventHubURL reads an EventHub: URL. The Key Vault form (EventHub:https://<vault>.vault.azure.net/
// secrets/…), which Graph is deprecating, is refused: the double models the RBAC form only.
func ParseEventHubURL(raw string) (EventHubTarget, error) {
	if !isEventHubURL(raw) {
		return EventHubTarget{}, fmt.Errorf("%q does not start with %s", raw, EventHubPrefix)
	}
	u, err := url.Parse(raw[len(EventHubPrefix):])
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return EventHubTarget{}, errors.New("the Event Hubs URL must be EventHub:https://<namespace>/eventhubname/<hub>?tenantId=<domain>")
	}
	if strings.HasSuffix(strings.ToLower(u.Hostname()), ".vault.azure.net") {
		return EventHubTarget{}, errors.New("the Key Vault form of an Event Hubs URL is not modelled by the double (use the RBAC form)")
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) != 2 || !strings.EqualFold(parts[0], "eventhubname") || parts[1] == "" {
		return EventHubTarget{}, errors.New("the Event Hubs URL path must be /eventhubname/<hub>")
	}
	tenant := u.Query().Get("tenantId")
	if tenant == "" {
		return EventHubTarget{}, errors.New("the Event Hubs URL needs ?tenantId=<domain of the tenant that holds the hub>")
	}
	return EventHubTarget{Namespace: u.Host, Hub: parts[1], TenantID: tenant}, nil
}

// checkNotificationURL checks a notificationUrl or lifecycleNotificationUrl: an EventHub: URL, or HTTPS.
func checkNotificationURL(field, raw string) error {
	if isEventHubURL(raw) {
		if _, err := ParseEventHubURL(raw); err != nil {
			return fmt.Errorf("Invalid '%s' attribute: %v", field, err)
		}
		return nil
	}
	return checkURL(field, raw)
}

// validationEvent is the event Graph sends to a hub when a subscription with an EventHub: URL is created
// (docs/graph-facts.md §2.6): every field "NA" but changeType, which is not a change type.
func validationEvent() []byte {
	b, _ := json.Marshal(map[string]any{"value": []any{map[string]any{
		"subscriptionId":                 "NA",
		"subscriptionExpirationDateTime": "NA",
		"clientState":                    "NA",
		"resource":                       "NA",
		"changeType":                     "Validation: Testing client application reachability for subscription Request-Id: " + newGUID(),
	}}})
	return b
}

// eventHubValidation sends the validation event instead of a handshake; "" on success, else the error
// Graph answers the create with (choice: its wording for a hub it cannot send to is not documented).
func (s *Server) eventHubValidation(ctx context.Context, rawURL, subID string) string {
	body := validationEvent()
	d := s.sendEvent(ctx, rawURL, body, s.opts.HandshakeTimeout)
	d.Kind, d.Attempt, d.SubscriptionID = "validation", 1, subID
	msg := ""
	if d.Err == "" {
		d.Outcome = "delivered"
	} else {
		d.Outcome = "failed"
		msg = "Subscription validation request failed. The event hub could not be reached: " + d.Err
	}
	s.recordDelivery(d)
	return msg
}

// sendEvent delivers one event body to the sink named by an EventHub: URL.
func (s *Server) sendEvent(ctx context.Context, rawURL string, body []byte, timeout time.Duration) Delivery {
	d := Delivery{URL: rawURL, Time: time.Now(), Body: body}
	target, err := ParseEventHubURL(rawURL)
	switch {
	case err != nil:
		d.Err = err.Error()
	case s.opts.EventHubs == nil:
		d.Err = "the double has no Event Hubs sink (Options.EventHubs)"
	default:
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if err := s.opts.EventHubs.SendEvent(ctx, target.Namespace, target.Hub, body); err != nil {
			d.Err = err.Error()
		} else {
			d.Status = http.StatusCreated // what Event Hubs' REST send answers; recorded so 2xx means delivered
		}
	}
	d.Duration = time.Since(d.Time)
	return d
}
