package queueworker

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/directory"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
	"github.com/graphwebhooks/graph-webhooks-go/internal/storagequeue"
)

// jitter adds 0–10 % to d, chosen by seed so that the same work always gets the same delay while different
// messages spread out.
func jitter(d time.Duration, seed []byte) time.Duration {
	sum := sha256.Sum256(seed)
	frac := binary.BigEndian.Uint64(sum[:8]) % 1000 // 0–999 per mille of 10 %
	return d + time.Duration(uint64(d)/10*frac/1000)
}

// reason says why work is left for a later attempt.
type reason int

const (
	reasonNone      reason = iota
	reasonGate             // the gate was closed: nothing was tried
	reasonThrottled        // 429
	reasonTransient        // 5xx, network, the invocation's deadline, keys unavailable
	reasonNotFound         // not (yet) replicated
)

// reasonOf maps a failed call's classification to why its work waits.
func reasonOf(o directory.Outcome) reason {
	switch o {
	case directory.Deferred:
		return reasonGate
	case directory.Throttled:
		return reasonThrottled
	case directory.Transient:
		return reasonTransient
	}
	return reasonNone
}

var reasonNames = [...]string{"", "gate closed", "throttled", "transient failure", "not found yet"}

func (r reason) String() string { return reasonNames[r] }

// retry describes one re-enqueue.
type retry struct {
	notes   []int // indexes into the message's notifications, in order
	why     reason
	delay   time.Duration // before jitter
	sameTry bool          // nothing was attempted (gate, notBefore): attempt stays
}

// requeue writes the unfinished notifications of m as a new message, or moves them to the poison queue once
// the message has run out of attempts or age. It returns a line for the invocation's Logs. An error means
// the work could be neither re-enqueued nor poisoned: the invocation must fail so the host retries it.
func (f *Function) requeue(ctx context.Context, log *slog.Logger, m *message.Message, r retry) (string, error) {
	now := f.now().UTC()
	rem := message.Message{V: message.Version, Kind: m.Kind, ValidationTokens: m.ValidationTokens,
		Continuation: m.Continuation, Attempt: m.Attempt + 1, FirstSeen: m.FirstSeen}
	if r.sameTry {
		rem.Attempt = m.Attempt
	}
	if rem.FirstSeen.IsZero() {
		rem.FirstSeen = now.Truncate(time.Second) // a message from elsewhere: its age counts from now
	}
	seed := []byte(fmt.Sprintf("%d|%s", rem.Attempt, m.FirstSeen.Format(time.RFC3339Nano)))
	for _, i := range r.notes {
		n := m.Notifications[i]
		rem.Notifications = append(rem.Notifications, n)
		seed = append(seed, directory.NotificationIdentity(&n)...)
	}
	delay := min(jitter(r.delay, seed), storagequeue.MaxDelay)
	nb := now.Add(delay).Truncate(time.Second)
	rem.NotBefore = &nb
	text, err := json.Marshal(rem)
	if err != nil {
		return "", fmt.Errorf("encoding the re-enqueued message: %w", err)
	}

	age := now.Sub(rem.FirstSeen)
	if (!r.sameTry && rem.Attempt > MaxAttempts) || age >= MaxAge {
		poison := storagequeue.PoisonQueue(f.queue)
		rem.NotBefore = nil
		text, _ = json.Marshal(rem)
		if err := f.put(ctx, poison, text, 0); err != nil {
			return "", fmt.Errorf("giving up on %d notifications (%s), but moving them to %s failed: %w", len(r.notes), r.why, poison, err)
		}
		log.Error("gave up on notifications: moved to the poison queue", "queue", poison, "count", len(r.notes),
			"reason", r.why.String(), "attempts", m.Attempt+1, "age", age.Round(time.Second).String())
		return fmt.Sprintf("gave up on %d notifications after %d attempts (%s): moved to %s", len(r.notes), m.Attempt+1, r.why, poison), nil
	}
	if err := f.put(ctx, f.queue, text, delay); err != nil {
		return "", fmt.Errorf("re-enqueueing %d notifications (%s): %w", len(r.notes), r.why, err)
	}
	level := slog.LevelInfo
	if r.why == reasonThrottled || r.why == reasonTransient {
		level = slog.LevelWarn
	}
	log.Log(ctx, level, "re-enqueued unfinished notifications", "count", len(r.notes), "reason", r.why.String(),
		"delay", delay.Round(time.Second).String(), "next_attempt", rem.Attempt)
	return fmt.Sprintf("re-enqueued %d notifications (%s) for attempt %d in %s", len(r.notes), r.why, rem.Attempt, delay.Round(time.Second)), nil
}
