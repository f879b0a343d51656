// Package storagequeue is the handler's own access to Azure Storage queues, for the messages it writes
// outside output bindings: re-enqueues with a delay, resync continuations, poison moves and replays.
//
// Messages are base64-encoded on the way in, because the Functions queue trigger expects base64 by default
// and moves anything else straight to the poison queue (custom-handler-protocol.md docs/host-protocol.md §7); azqueue itself never
// encodes (docs/sdk-facts.md).
package storagequeue

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/redact"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue/v2"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue/v2/queueerror"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
)

// MaxDelay is the longest visibility delay Azure Storage accepts for a new message.
const MaxDelay = 7 * 24 * time.Hour

// Options adjusts how the client reaches storage.
type Options struct {
	Transport policy.Transporter // nil: the SDK's default
	// Credential is used for identity-based settings; nil means a managed identity credential built from
	// AzureWebJobsStorage__clientId. It is never the Graph app's client secret.
	Credential azcore.TokenCredential
}

// Client enqueues to and reads from the storage account of AzureWebJobsStorage.
type Client struct {
	svc *azqueue.ServiceClient
}

// New builds a client from the AzureWebJobsStorage setting in any of its forms.
func New(s config.StorageSettings, o Options) (*Client, error) {
	opts := &azqueue.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: o.Transport}}
	switch {
	case s.ConnectionString != "":
		svc, err := azqueue.NewServiceClientFromConnectionString(s.ConnectionString.Reveal(), opts)
		if err != nil {
			// The SDK's message could quote the string, key included: keep only the fact.
			return nil, errors.New("AzureWebJobsStorage: the connection string is not usable by the queue client")
		}
		return &Client{svc: svc}, nil
	case s.QueueServiceURL != "":
		cred := o.Credential
		if cred == nil {
			var err error
			cred, err = ManagedIdentity(s)
			if err != nil {
				return nil, err
			}
		}
		svc, err := azqueue.NewServiceClient(s.QueueServiceURL, cred, opts)
		if err != nil {
			return nil, fmt.Errorf("AzureWebJobsStorage__queueServiceUri: %w", err)
		}
		return &Client{svc: svc}, nil
	}
	return nil, errors.New("AzureWebJobsStorage is not set: the handler needs it to enqueue follow-up messages")
}

// ManagedIdentity is the credential the Functions host uses for identity-based storage: the app's managed
// identity, user-assigned when AzureWebJobsStorage__clientId is set.
func ManagedIdentity(s config.StorageSettings) (azcore.TokenCredential, error) {
	var opts azidentity.ManagedIdentityCredentialOptions
	if s.ClientID != "" {
		opts.ID = azidentity.ClientID(s.ClientID)
	}
	cred, err := azidentity.NewManagedIdentityCredential(&opts)
	if err != nil {
		return nil, fmt.Errorf("AzureWebJobsStorage: managed identity: %w", err)
	}
	return cred, nil
}

// Enqueue adds text to queue, base64-encoded, visible after delay (capped at MaxDelay). The queue is created
// when it does not exist yet, as the host's output binding does.
func (c *Client) Enqueue(ctx context.Context, queue string, text []byte, delay time.Duration) error {
	return c.enqueueRaw(ctx, queue, base64.StdEncoding.EncodeToString(text), delay)
}

// enqueueRaw stores text as it is. Messages never expire: a delayed retry must not vanish before it runs.
func (c *Client) enqueueRaw(ctx context.Context, queue, text string, delay time.Duration) error {
	ttl := int32(-1)
	opts := azqueue.EnqueueMessageOptions{TimeToLive: &ttl}
	if delay > 0 {
		secs := int32(min(delay, MaxDelay).Round(time.Second) / time.Second)
		opts.VisibilityTimeout = &secs
	}
	q := c.svc.NewQueueClient(queue)
	_, err := q.EnqueueMessage(ctx, text, &opts)
	if queueerror.HasCode(err, queueerror.QueueNotFound) {
		if _, cerr := q.Create(ctx, nil); cerr != nil && !queueerror.HasCode(cerr, queueerror.QueueAlreadyExists) {
			return fmt.Errorf("create queue %s: %w", queue, scrub(cerr))
		}
		_, err = q.EnqueueMessage(ctx, text, &opts)
	}
	if err != nil {
		return fmt.Errorf("enqueue to %s: %w", queue, scrub(err))
	}
	return nil
}

// Message is one message read back, decoded.
type Message struct {
	ID, PopReceipt string
	Text           []byte // base64-decoded; the raw text when it was not base64
	RawText        string // as stored
	DequeueCount   int64
}

// Receive takes up to n messages from queue, hiding them for visibility.
func (c *Client) Receive(ctx context.Context, queue string, n int32, visibility time.Duration) ([]Message, error) {
	secs := int32(visibility / time.Second)
	resp, err := c.svc.NewQueueClient(queue).DequeueMessages(ctx, &azqueue.DequeueMessagesOptions{NumberOfMessages: &n, VisibilityTimeout: &secs})
	if queueerror.HasCode(err, queueerror.QueueNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("receive from %s: %w", queue, scrub(err))
	}
	out := make([]Message, 0, len(resp.Messages))
	for _, m := range resp.Messages {
		msg := Message{ID: deref(m.MessageID), PopReceipt: deref(m.PopReceipt), RawText: deref(m.MessageText)}
		if m.DequeueCount != nil {
			msg.DequeueCount = *m.DequeueCount
		}
		if b, err := base64.StdEncoding.DecodeString(msg.RawText); err == nil {
			msg.Text = b
		} else {
			msg.Text = []byte(msg.RawText)
		}
		out = append(out, msg)
	}
	return out, nil
}

// Delete removes a received message.
func (c *Client) Delete(ctx context.Context, queue string, m Message) error {
	_, err := c.svc.NewQueueClient(queue).DeleteMessage(ctx, m.ID, m.PopReceipt, nil)
	if err != nil && !queueerror.HasCode(err, queueerror.MessageNotFound) {
		return fmt.Errorf("delete from %s: %w", queue, scrub(err))
	}
	return nil
}

// PoisonQueue is the queue the Functions host moves failed messages to.
func PoisonQueue(queue string) string { return queue + "-poison" }

// ReplayResult counts what a replay did.
type ReplayResult struct{ Moved, Seen int }

// Replay moves the messages in queue's poison queue back to queue (or only counts them when dryRun),
// keeping each message's text as it was. It moves at most as many as were there when it started: a message
// that fails again while the replay runs goes back to poison, and must not be moved round in circles.
func (c *Client) Replay(ctx context.Context, queue string, dryRun bool) (ReplayResult, error) {
	var r ReplayResult
	poison := PoisonQueue(queue)
	props, err := c.svc.NewQueueClient(poison).GetProperties(ctx, nil)
	if queueerror.HasCode(err, queueerror.QueueNotFound) {
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("inspect %s: %w", poison, scrub(err))
	}
	limit := 0
	if props.ApproximateMessagesCount != nil {
		limit = int(*props.ApproximateMessagesCount)
	}
	if dryRun {
		r.Seen = limit
		return r, nil
	}
	for r.Seen < limit {
		msgs, err := c.Receive(ctx, poison, int32(min(32, limit-r.Seen)), time.Minute)
		if err != nil || len(msgs) == 0 {
			return r, err
		}
		for _, m := range msgs {
			r.Seen++
			// Put the text back exactly as stored: the host base64-decodes it again on the trigger.
			if err := c.enqueueRaw(ctx, queue, m.RawText, 0); err != nil {
				return r, err
			}
			if err := c.Delete(ctx, poison, m); err != nil {
				return r, err
			}
			r.Moved++
		}
	}
	return r, nil
}

// ApproximateCount is the queue's approximate message count (storage's own estimate, which includes
// messages not visible yet); a queue that does not exist holds 0.
func (c *Client) ApproximateCount(ctx context.Context, queue string) (int, error) {
	props, err := c.svc.NewQueueClient(queue).GetProperties(ctx, nil)
	if queueerror.HasCode(err, queueerror.QueueNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("inspect %s: %w", queue, scrub(err))
	}
	if props.ApproximateMessagesCount == nil {
		return 0, nil
	}
	return int(*props.ApproximateMessagesCount), nil
}

// OldestInserted is the earliest insertion time among the visible messages at the front of queue (up to
// 32, read with Peek, which leaves them where they are); ok is false when there is none to see.
func (c *Client) OldestInserted(ctx context.Context, queue string) (oldest time.Time, ok bool, err error) {
	n := int32(32)
	resp, err := c.svc.NewQueueClient(queue).PeekMessages(ctx, &azqueue.PeekMessagesOptions{NumberOfMessages: &n})
	if queueerror.HasCode(err, queueerror.QueueNotFound) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("peek %s: %w", queue, scrub(err))
	}
	for _, m := range resp.Messages {
		if m.InsertionTime != nil && (!ok || m.InsertionTime.Before(oldest)) {
			oldest, ok = *m.InsertionTime, true
		}
	}
	return oldest, ok, nil
}

// scrub removes the query from the URL inside a transport error: with a SAS connection string it holds the
// signature, and errors end up in logs.
func scrub(err error) error { return redact.URLError(err) }

// Scrub is scrub for the other storage clients (the checkpoint's blob client).
func Scrub(err error) error { return redact.URLError(err) }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
