package graph

import (
	"context"
	"net/http"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/redact"
)

// Subscription is Graph's subscription resource, as far as this app uses it.
type Subscription struct {
	ID                        string `json:"id,omitempty"`
	Resource                  string `json:"resource,omitempty"`
	ChangeType                string `json:"changeType,omitempty"`
	NotificationURL           string `json:"notificationUrl,omitempty"`
	LifecycleNotificationURL  string `json:"lifecycleNotificationUrl,omitempty"`
	ClientState               string `json:"clientState,omitempty"` // secret; Graph returns null on reads
	ApplicationID             string `json:"applicationId,omitempty"`
	CreatorID                 string `json:"creatorId,omitempty"`
	LatestSupportedTLSVersion string `json:"latestSupportedTlsVersion,omitempty"`
	// ExpirationDateTime is sent in UTC, whole seconds (Graph's parser takes at most 7 fractional digits).
	ExpirationDateTime time.Time `json:"expirationDateTime,omitzero"`
	// Rich notifications: the resource comes encrypted for this certificate (the public part, base64 DER),
	// labelled EncryptionCertificateID.
	IncludeResourceData     bool   `json:"includeResourceData,omitempty"`
	EncryptionCertificate   string `json:"encryptionCertificate,omitempty"`
	EncryptionCertificateID string `json:"encryptionCertificateId,omitempty"`
}

// String omits ClientState, so a subscription can be logged with %v.
func (s Subscription) String() string {
	return "subscription " + s.ID + " on " + s.Resource + " (" + s.ChangeType + ") until " +
		s.ExpirationDateTime.UTC().Format(time.RFC3339)
}

// createBody holds only the fields a create accepts: Graph refuses read-only ones such as id.
type createBody struct {
	ChangeType                string    `json:"changeType"`
	NotificationURL           string    `json:"notificationUrl"`
	LifecycleNotificationURL  string    `json:"lifecycleNotificationUrl,omitempty"`
	Resource                  string    `json:"resource"`
	ExpirationDateTime        time.Time `json:"expirationDateTime"`
	ClientState               string    `json:"clientState,omitempty"`
	LatestSupportedTLSVersion string    `json:"latestSupportedTlsVersion,omitempty"`
	IncludeResourceData       bool      `json:"includeResourceData,omitempty"`
	EncryptionCertificate     string    `json:"encryptionCertificate,omitempty"`
	EncryptionCertificateID   string    `json:"encryptionCertificateId,omitempty"`
}

// SubscriptionUpdate is the body of a renewal; zero fields are left out.
type SubscriptionUpdate struct {
	ExpirationDateTime time.Time `json:"expirationDateTime,omitzero"`
	NotificationURL    string    `json:"notificationUrl,omitempty"`
	// A new encryption certificate (its public part) and id: how a rich subscription moves to a new
	// certificate.
	EncryptionCertificate   string `json:"encryptionCertificate,omitempty"`
	EncryptionCertificateID string `json:"encryptionCertificateId,omitempty"`
}

// ListSubscriptions returns the subscriptions this app created (with application permissions Graph
// lists only the caller's own), following every page.
func (c *Client) ListSubscriptions(ctx context.Context) ([]Subscription, error) {
	return listAll[Subscription](ctx, c, "list subscriptions", c.url("/subscriptions", ""))
}

// CreateSubscription creates s. Graph validates the notification URL(s) during this call, so a failure
// of the endpoint shows as KindValidationFailed; an existing identical subscription as KindConflict.
func (c *Client) CreateSubscription(ctx context.Context, s Subscription) (Subscription, error) {
	const op = "create subscription"
	body := createBody{
		ChangeType: s.ChangeType, NotificationURL: s.NotificationURL,
		LifecycleNotificationURL: s.LifecycleNotificationURL, Resource: s.Resource,
		ExpirationDateTime: wireTime(s.ExpirationDateTime), ClientState: s.ClientState,
		LatestSupportedTLSVersion: s.LatestSupportedTLSVersion, IncludeResourceData: s.IncludeResourceData,
		EncryptionCertificate: s.EncryptionCertificate, EncryptionCertificateID: s.EncryptionCertificateID,
	}
	var out Subscription
	err := c.getJSON(ctx, request{op: op, method: http.MethodPost, url: c.url("/subscriptions", ""),
		body: body, flags: flagSubscriptionWrite,
		secrets: append(redact.FunctionKeys(s.NotificationURL, s.LifecycleNotificationURL), redact.Forms(s.ClientState)...)}, &out)
	if err != nil {
		return Subscription{}, err
	}
	return out, nil
}

// UpdateSubscription renews (and so reauthorizes) a subscription. KindNotFound means it is gone: create
// a new one.
func (c *Client) UpdateSubscription(ctx context.Context, id string, u SubscriptionUpdate) (Subscription, error) {
	const op = "update subscription"
	seg, err := segment(op, id)
	if err != nil {
		return Subscription{}, err
	}
	if u.ExpirationDateTime.IsZero() && u.NotificationURL == "" && u.EncryptionCertificate == "" && u.EncryptionCertificateID == "" {
		return Subscription{}, localError(op, "nothing to update")
	}
	u.ExpirationDateTime = wireTime(u.ExpirationDateTime)
	var out Subscription
	err = c.getJSON(ctx, request{op: op, method: http.MethodPatch, url: c.url("/subscriptions/"+seg, ""),
		body: u, flags: flagSubscriptionWrite, secrets: redact.FunctionKeys(u.NotificationURL)}, &out)
	return out, err
}

// DeleteSubscription deletes a subscription; KindNotFound (errors.Is(err, ErrNotFound)) means it was
// already gone, which callers usually ignore.
func (c *Client) DeleteSubscription(ctx context.Context, id string) error {
	const op = "delete subscription"
	seg, err := segment(op, id)
	if err != nil {
		return err
	}
	_, err = c.send(ctx, request{op: op, method: http.MethodDelete, url: c.url("/subscriptions/"+seg, "")})
	return err
}

// ReauthorizeSubscription answers a reauthorizationRequired lifecycle event. Do not also PATCH the same
// subscription within 10 minutes: Graph says the pair can leave it inconsistent.
func (c *Client) ReauthorizeSubscription(ctx context.Context, id string) error {
	const op = "reauthorize subscription"
	seg, err := segment(op, id)
	if err != nil {
		return err
	}
	_, err = c.send(ctx, request{op: op, method: http.MethodPost, url: c.url("/subscriptions/"+seg+"/reauthorize", "")})
	return err
}

func wireTime(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC().Truncate(time.Second)
}
