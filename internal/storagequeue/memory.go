package storagequeue

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Memory is an in-process queue store for tests of code that enqueues without storage: it records every
// message with its delay, and can be told to fail. It is safe for concurrent use.
type Memory struct {
	mu   sync.Mutex
	msgs map[string][]MemoryMessage
	// Fail, when set, is returned by Enqueue for the queues it names (a nil func or a nil result enqueues).
	Fail func(queue string) error
}

// MemoryMessage is one message Memory holds.
type MemoryMessage struct {
	Text  []byte
	Delay time.Duration
}

// NewMemory returns an empty in-memory queue store.
func NewMemory() *Memory { return &Memory{msgs: map[string][]MemoryMessage{}} }

// Enqueue records text on queue.
func (m *Memory) Enqueue(_ context.Context, queue string, text []byte, delay time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Fail != nil {
		if err := m.Fail(queue); err != nil {
			return err
		}
	}
	m.msgs[queue] = append(m.msgs[queue], MemoryMessage{Text: slices.Clone(text), Delay: min(delay, MaxDelay)})
	return nil
}

// Messages returns what queue holds, oldest first.
func (m *Memory) Messages(queue string) []MemoryMessage {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.msgs[queue])
}

// Take removes and returns what queue holds, oldest first.
func (m *Memory) Take(queue string) []MemoryMessage {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := m.msgs[queue]
	delete(m.msgs, queue)
	return out
}
