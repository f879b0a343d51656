// Package events writes change events to graphchanges, the product's output. The queue worker and the
// resync both write through it, so every event is written the same way: directly by the handler (never
// through an output binding, because an event must be durable before what follows it, a resync
// checkpoint, moves), base64-encoded as a queue trigger expects, and with no expiry (a consumer that is
// away for a week still finds them).
package events

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

// Queue writes one message (*storagequeue.Client; storagequeue.Memory in tests).
type Queue interface {
	Enqueue(ctx context.Context, queue string, text []byte, delay time.Duration) error
}

// DefaultConcurrency is how many events are written at once.
const DefaultConcurrency = 8

// Writer writes events.
type Writer struct {
	queue       func() (Queue, error)
	concurrency int
}

// NewWriter returns a writer that gets its queue lazily, so a missing storage setting is reported by the
// invocation that writes.
func NewWriter(q func() (Queue, error)) *Writer {
	return &Writer{queue: q, concurrency: DefaultConcurrency}
}

// Write writes every event to graphchanges, a few at a time, and returns the first failure. Events that
// were written before a failure stay written: a retry writes them again with the same ids.
func (w *Writer) Write(ctx context.Context, es []message.Event) error {
	if len(es) == 0 {
		return nil
	}
	q, err := w.queue()
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, max(1, w.concurrency))
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for i := range es {
		b, err := json.Marshal(&es[i])
		if err != nil {
			return fmt.Errorf("events: encode: %w", err)
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := q.Enqueue(ctx, message.ChangesQueue, b, 0); err != nil {
				mu.Lock()
				if first == nil {
					first = fmt.Errorf("events: write to %s: %w", message.ChangesQueue, err)
					cancel()
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return first
}
