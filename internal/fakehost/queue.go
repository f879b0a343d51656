package fakehost

import (
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue/v2"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue/v2/queueerror"
)

const (
	minPollingInterval = 100 * time.Millisecond // QueuePollingIntervals.Minimum
	messageLease       = 10 * time.Minute       // the queue listener's visibility timeout while processing
	storageOpTimeout   = 30 * time.Second
)

// storageFor returns the connection string for a queue binding: Options.Storage when set, else the app
// setting named by the binding's connection (default AzureWebJobsStorage; "X" is also tried as
// "AzureWebJobsX"), with UseDevelopmentStorage=true expanded.
func (h *Host) storageFor(b *Binding) (string, error) {
	if h.opts.Storage != "" {
		return expandStorage(h.opts.Storage), nil
	}
	name := b.Connection
	if name == "" {
		name = "AzureWebJobsStorage"
	}
	v := h.env[name]
	if v == "" {
		v = h.env["AzureWebJobs"+name]
	}
	if v == "" {
		if h.env[name+"__queueServiceUri"] != "" || h.env[name+"__accountName"] != "" {
			return "", fmt.Errorf("connection %s: identity-based connections are not modelled by fakehost; set Options.Storage", name)
		}
		return "", fmt.Errorf("connection %s: app setting %s is missing", name, name)
	}
	return expandStorage(v), nil
}

// queueClient returns a cached client for a queue in the account of a connection string.
func (h *Host) queueClient(conn, queue string) (*azqueue.QueueClient, error) {
	h.qmu.Lock()
	defer h.qmu.Unlock()
	svc, ok := h.services[conn]
	if !ok {
		var err error
		svc, err = azqueue.NewServiceClientFromConnectionString(conn, nil)
		if err != nil {
			return nil, fmt.Errorf("storage connection string: %w", err)
		}
		h.services[conn] = svc
	}
	return svc.NewQueueClient(queue), nil
}

// encodeMessage applies messageEncoding to a message text.
func (h *Host) encodeMessage(text string) string {
	if h.cfg.queues.base64 {
		return base64.StdEncoding.EncodeToString([]byte(text))
	}
	return text
}

// writeQueueMessages writes messages for a queue output binding: the queue name lower-cased, the queue
// created if it does not exist, each message encoded per messageEncoding.
func (h *Host) writeQueueMessages(ctx context.Context, fn *function, b *Binding, msgs []string) error {
	conn, err := h.storageFor(b)
	if err != nil {
		return err
	}
	q, err := h.queueClient(conn, strings.ToLower(b.QueueName))
	if err != nil {
		return err
	}
	ctx = context.WithoutCancel(ctx)
	ctx, cancel := context.WithTimeout(ctx, storageOpTimeout)
	defer cancel()
	for _, m := range msgs {
		if err := enqueueCreating(ctx, q, h.encodeMessage(m)); err != nil {
			return err
		}
	}
	return nil
}

func enqueueCreating(ctx context.Context, q *azqueue.QueueClient, text string) error {
	_, err := q.EnqueueMessage(ctx, text, nil)
	if queueerror.HasCode(err, queueerror.QueueNotFound) {
		if _, cerr := q.Create(ctx, nil); cerr != nil && !queueerror.HasCode(cerr, queueerror.QueueAlreadyExists) {
			return cerr
		}
		_, err = q.EnqueueMessage(ctx, text, nil)
	}
	return err
}

// queueListener polls one queue trigger (docs/host-protocol.md §1.3, §3.4, §4.5, §7).
type queueListener struct {
	h      *Host
	fn     *function
	q      *azqueue.QueueClient
	poison *azqueue.QueueClient

	mu       sync.Mutex
	inFlight int
	done     chan struct{} // signalled when an in-flight message finishes
}

func (h *Host) newQueueListener(fn *function) (*queueListener, error) {
	conn, err := h.storageFor(fn.trigger)
	if err != nil {
		return nil, fmt.Errorf("function %s: %w", fn.name, err)
	}
	q, err := h.queueClient(conn, fn.queueName)
	if err != nil {
		return nil, err
	}
	p, err := h.queueClient(conn, fn.queueName+"-poison")
	if err != nil {
		return nil, err
	}
	return &queueListener{h: h, fn: fn, q: q, poison: p, done: make(chan struct{}, 64)}, nil
}

func (l *queueListener) run(ctx context.Context) {
	opts := l.h.cfg.queues
	maxDelay := opts.maxPollingInterval
	minDelay := min(minPollingInterval, maxDelay)
	delay := minDelay
	var wg sync.WaitGroup
	defer wg.Wait()
	for ctx.Err() == nil {
		// Fetch a new batch only when in-flight work has dropped to newBatchThreshold.
		for {
			l.mu.Lock()
			n := l.inFlight
			l.mu.Unlock()
			if n <= opts.newBatchThreshold {
				break
			}
			select {
			case <-l.done:
			case <-ctx.Done():
				return
			}
		}
		msgs, err := l.dequeue(ctx)
		if err != nil && ctx.Err() == nil && !queueerror.HasCode(err, queueerror.QueueNotFound) {
			l.h.logger.Warn("queue poll failed", "function", l.fn.name, "queue", l.fn.queueName, "error", err.Error())
		}
		if len(msgs) == 0 {
			// Randomised exponential back-off up to maxPollingInterval.
			jittered := time.Duration(float64(delay) * (0.8 + 0.4*rand.Float64()))
			select {
			case <-ctx.Done():
				return
			case <-time.After(jittered):
			}
			delay = min(delay*2, maxDelay)
			continue
		}
		delay = minDelay
		for _, m := range msgs {
			l.mu.Lock()
			l.inFlight++
			l.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				l.process(ctx, m)
				l.mu.Lock()
				l.inFlight--
				l.mu.Unlock()
				select {
				case l.done <- struct{}{}:
				default:
				}
			}()
		}
	}
}

func (l *queueListener) dequeue(ctx context.Context) ([]*azqueue.DequeuedMessage, error) {
	ctx, cancel := context.WithTimeout(ctx, storageOpTimeout)
	defer cancel()
	n := int32(l.h.cfg.queues.batchSize)
	vis := int32(messageLease / time.Second)
	resp, err := l.q.DequeueMessages(ctx, &azqueue.DequeueMessagesOptions{NumberOfMessages: &n, VisibilityTimeout: &vis})
	if err != nil {
		return nil, err
	}
	return resp.Messages, nil
}

// leasedMessage tracks a message's pop receipt, which changes when its lease is renewed.
type leasedMessage struct {
	mu   sync.Mutex
	id   string
	pop  string
	text string
}

func (m *leasedMessage) popReceipt() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pop
}

func (l *queueListener) process(ctx context.Context, dm *azqueue.DequeuedMessage) {
	h := l.h
	msg := &leasedMessage{id: deref(dm.MessageID), pop: deref(dm.PopReceipt), text: deref(dm.MessageText)}
	dequeueCount := int64(0)
	if dm.DequeueCount != nil {
		dequeueCount = *dm.DequeueCount
	}
	// Storage operations after the invocation run even when the host is closing.
	opCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), storageOpTimeout)
	}

	payload := []byte(msg.text)
	if h.cfg.queues.base64 {
		b, ok := decodeBase64DotNet(msg.text)
		if !ok {
			// Not valid base64: straight to the poison queue, the function never runs (docs/host-protocol.md §7).
			h.logger.Warn("message is not valid base64: moved to the poison queue without running the function", "function", l.fn.name, "queue", l.fn.queueName, "messageId", msg.id)
			c, cancel := opCtx()
			defer cancel()
			l.moveToPoison(c, msg)
			return
		}
		payload = b
	}

	// Keep the lease while the invocation runs (the listener renews at half the lease).
	stopRenew := make(chan struct{})
	renewDone := make(chan struct{})
	go func() {
		defer close(renewDone)
		t := time.NewTicker(messageLease / 2)
		defer t.Stop()
		for {
			select {
			case <-stopRenew:
				return
			case <-t.C:
				c, cancel := opCtx()
				vis := int32(messageLease / time.Second)
				msg.mu.Lock()
				resp, err := l.q.UpdateMessage(c, msg.id, msg.pop, msg.text, &azqueue.UpdateMessageOptions{VisibilityTimeout: &vis})
				if err == nil && resp.PopReceipt != nil {
					msg.pop = *resp.PopReceipt
				}
				msg.mu.Unlock()
				cancel()
			}
		}
	}()

	text := strings.ToValidUTF8(string(payload), "\uFFFD")
	var value any
	if strings.EqualFold(l.fn.trigger.DataType, "binary") {
		// [inferred] with dataType binary the value is the message bytes, sent once as base64.
		value = EncodeValue(payload)
	} else {
		// The trigger value is a string, JSON-encoded a second time by docs/host-protocol.md §3.2: Data.<name> is the JSON text of
		// the JSON string of the message.
		value = EncodeValue(text)
	}
	data := map[string]any{l.fn.trigger.Name: value}
	meta := map[string]any{
		"DequeueCount":    EncodeValue(dequeueCount),
		"ExpirationTime":  formatDateSeconds(derefTime(dm.ExpirationTime)),
		"Id":              EncodeValue(msg.id),
		"InsertionTime":   formatDateSeconds(derefTime(dm.InsertionTime)),
		"NextVisibleTime": formatDateSeconds(derefTime(dm.TimeNextVisible)),
		"PopReceipt":      EncodeValue(msg.pop),
		"QueueTrigger":    EncodeValue(text), // dropped by the "ends in trigger" rule, as in the host
	}
	_, err := h.invoke(ctx, l.fn, "queue", data, meta, nil)
	close(stopRenew)
	<-renewDone

	c, cancel := opCtx()
	defer cancel()
	switch {
	case err == nil:
		if _, derr := l.q.DeleteMessage(c, msg.id, msg.popReceipt(), nil); derr != nil {
			h.logger.Warn("deleting a processed message failed", "function", l.fn.name, "messageId", msg.id, "error", derr.Error())
		}
	case dequeueCount >= int64(h.cfg.queues.maxDequeueCount):
		h.logger.Warn(fmt.Sprintf("Message has reached MaxDequeueCount of %d. Moving message to queue '%s-poison'.", h.cfg.queues.maxDequeueCount, l.fn.queueName), "function", l.fn.name, "messageId", msg.id)
		l.moveToPoison(c, msg)
	default:
		vis := int32(h.cfg.queues.visibilityTimeout / time.Second)
		if _, uerr := l.q.UpdateMessage(c, msg.id, msg.popReceipt(), msg.text, &azqueue.UpdateMessageOptions{VisibilityTimeout: &vis}); uerr != nil {
			h.logger.Warn("releasing a failed message failed; it becomes visible when its lease ends", "function", l.fn.name, "messageId", msg.id, "error", uerr.Error())
		}
	}
}

// moveToPoison copies the message text as it was to <queue>-poison (created on demand) and deletes it.
func (l *queueListener) moveToPoison(ctx context.Context, msg *leasedMessage) {
	if err := enqueueCreating(ctx, l.poison, msg.text); err != nil {
		l.h.logger.Error("writing to the poison queue failed", "queue", l.fn.queueName+"-poison", "error", err.Error())
		return
	}
	if _, err := l.q.DeleteMessage(ctx, msg.id, msg.popReceipt(), nil); err != nil {
		l.h.logger.Warn("deleting a poisoned message failed", "messageId", msg.id, "error", err.Error())
	}
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func derefTime(p *time.Time) time.Time {
	if p == nil {
		return time.Time{}
	}
	return p.UTC()
}
