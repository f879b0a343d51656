package queueworker

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/directory"
	"github.com/graphwebhooks/graph-webhooks-go/internal/events"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
	"github.com/graphwebhooks/graph-webhooks-go/internal/objectstate"
	"github.com/graphwebhooks/graph-webhooks-go/internal/storagequeue"
)

// Storage faults as they reach the worker: a 503 from a service that is busy, a refused connection.
var (
	errServerBusy = errors.New("RESPONSE 503: 503 The server is busy. ERROR CODE: ServerBusy")
	errRefused    = &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
)

// downState is a state store whose Table storage fails every call.
type downState struct{ err error }

func (d downState) Decide(context.Context, []objectstate.Observation) ([]objectstate.Decision, error) {
	return nil, d.err
}
func (d downState) Commit(context.Context, []objectstate.Decision) error { return d.err }

// withEventWriter gives the unit the real event writer over its memory queue and state.
func (u *unit) withEventWriter(state events.State) {
	w := events.NewWriter(func() (events.Queue, error) { return u.q, nil }, func() (events.State, error) { return state, nil })
	d := u.f.d
	d.Events = w
	u.f = New(d)
}

func (u *unit) written() []message.Event {
	u.t.Helper()
	var out []message.Event
	for _, m := range u.q.Take(message.ChangesQueue) {
		var e message.Event
		if err := json.Unmarshal(m.Text, &e); err != nil {
			u.t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// TestUnitTableFaultStepsAside: with Table storage failing, the invocation succeeds and every change has
// its event (unchecked); nothing is re-enqueued or poisoned.
func TestUnitTableFaultStepsAside(t *testing.T) {
	for _, cause := range []error{errServerBusy, errRefused} {
		u := newUnit(t)
		u.withEventWriter(downState{cause})
		u.g.Put(directory.Users, u.user(1, "jobTitle", "CTO"))
		u.g.Put(directory.Users, u.user(2))
		resp, err := u.f.Invoke(u.ctx(), hostRequest(t, hostText(t, u.msg(message.KindNotifications, note(guid(1), "updated"), note(guid(2), "updated"))), 1))
		if err != nil {
			t.Fatalf("%v: the invocation failed (towards the poison queue): %v", cause, err)
		}
		evs := u.written()
		if len(evs) != 2 || evs[0].Changed != nil {
			t.Fatalf("%v: events %+v; want both, unchecked", cause, evs)
		}
		if n := len(u.q.Messages(message.WorkQueue)) + len(u.poisoned()); n != 0 {
			t.Errorf("%v: %d messages re-enqueued or poisoned", cause, n)
		}
		t.Logf("%v: %v", cause, resp.Logs)
	}
}

// TestUnitBlobFaultNeverHoldsANotification: the groups resync a group notification asks for cannot be
// requested (its checkpoint is a blob): the event is written and the invocation succeeds all the same.
func TestUnitBlobFaultNeverHoldsANotification(t *testing.T) {
	u := newUnit(t)
	u.withEventWriter(objectstate.NewMemoryTable().Store(objectstate.Options{}))
	u.rs.err = errServerBusy
	g := guid(7)
	u.g.Put(directory.Groups, map[string]any{"id": g, "displayName": "Team"})
	if _, err := u.f.Invoke(u.ctx(), hostRequest(t, hostText(t, u.msg(message.KindNotifications, groupNote(g, "updated", ""))), 1)); err != nil {
		t.Fatalf("a failed resync request failed the notification's invocation: %v", err)
	}
	if evs := u.written(); len(evs) != 1 || evs[0].ResourceID != g {
		t.Fatalf("events %+v: want the group's", evs)
	}
	if calls := u.rs.calls(); len(calls) != 1 {
		t.Errorf("resync requests %v: want the one that failed", calls)
	}
}

// TestUnitQueueFaultFailsTheInvocation: when the worker's own enqueues fail — the events, a re-enqueue,
// a move to the poison queue — the invocation fails, so that the host keeps the message and retries it
// (up to maxDequeueCount): nothing is dropped on the floor.
func TestUnitQueueFaultFailsTheInvocation(t *testing.T) {
	failOn := func(u *unit, queue string) {
		u.q.Fail = func(q string) error {
			if q == queue {
				return errRefused
			}
			return nil
		}
	}
	cases := []struct {
		name  string
		queue string
		msg   func(u *unit) []byte
	}{
		{"events", message.ChangesQueue, func(u *unit) []byte {
			u.g.Put(directory.Users, u.user(1))
			return hostText(t, u.msg(message.KindNotifications, note(guid(1), "updated")))
		}},
		{"re-enqueue", message.WorkQueue, func(u *unit) []byte { // not replicated yet: retried later
			return hostText(t, u.msg(message.KindNotifications, note(guid(2), "updated")))
		}},
		{"poison", storagequeue.PoisonQueue(message.WorkQueue), func(*unit) []byte { return []byte("not json") }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u := newUnit(t)
			u.withEventWriter(objectstate.NewMemoryTable().Store(objectstate.Options{}))
			text := c.msg(u)
			failOn(u, c.queue)
			if _, err := u.f.Invoke(u.ctx(), hostRequest(t, text, 1)); err == nil || !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("Invoke = %v; want the queue's failure", err)
			}
			// Storage back: the host's retry of the same message does the work.
			u.q.Fail = nil
			u.now = u.now.Add(time.Minute)
			if _, err := u.f.Invoke(u.ctx(), hostRequest(t, text, 2)); err != nil {
				t.Fatalf("the retry failed: %v", err)
			}
			if n := len(u.q.Messages(message.ChangesQueue)) + len(u.q.Messages(message.WorkQueue)) + len(u.q.Messages(storagequeue.PoisonQueue(message.WorkQueue))); n != 1 {
				t.Errorf("after the retry %d messages out; want the one the work produces", n)
			}
		})
	}
}
