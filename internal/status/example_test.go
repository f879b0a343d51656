package status_test

import (
	"context"
	"os"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/checkpoint"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/status"
)

type subs []graph.Subscription

func (s subs) ListSubscriptions(context.Context) ([]graph.Subscription, error) { return s, nil }

type store checkpoint.Checkpoint

func (s store) Load(context.Context, string) (checkpoint.Checkpoint, checkpoint.ETag, error) {
	return checkpoint.Checkpoint(s), "", nil
}

type queues map[string]int

func (q queues) ApproximateCount(_ context.Context, name string) (int, error) { return q[name], nil }
func (q queues) OldestInserted(_ context.Context, name string) (time.Time, bool, error) {
	if q[name] == 0 {
		return time.Time{}, false, nil
	}
	return now.Add(-(3*time.Hour + 5*time.Minute)), true, nil
}

var now = time.Date(2026, 12, 1, 22, 41, 31, 0, time.UTC)

// The example in docs/operations.md.
func ExampleWriteText() {
	c := &status.Checker{
		Resources: []string{"users"}, Collections: []string{"users"},
		Mine:      func(s graph.Subscription, res string) bool { return s.Resource == res },
		WorkQueue: "webhooksnotificationqueue", PoisonQueue: "webhooksnotificationqueue-poison", ChangesQueue: "graphchanges",
		StallAfter: 10 * time.Minute,
		Graph: func() (status.Graph, error) {
			return subs{{ID: "f91b7b70-3c1e-4a57-9b1e-2f6d8c0a1b2c", Resource: "users", ExpirationDateTime: now.Add(29 * 24 * time.Hour),
				NotificationURL:          "https://myapp.azurewebsites.net/api/webhook?code=KEY&cs=1a2b3c4d",
				LifecycleNotificationURL: "https://myapp.azurewebsites.net/api/webhook?code=KEY"}}, nil
		},
		Checkpoints: func() (status.Checkpoints, error) {
			return store{LastCompleted: now.Add(-time.Hour), LastPass: &checkpoint.Pass{ID: "20261201T214130Z-652f6a7b", Events: 40, Pages: 1}}, nil
		},
		Queues: func() (status.Queues, error) {
			return queues{"webhooksnotificationqueue-poison": 2, "graphchanges": 110}, nil
		},
		Now: func() time.Time { return now },
	}
	status.WriteText(os.Stdout, c.Check(context.Background()))
	// Output:
	// SUBSCRIPTION  STATE  EXPIRES               DAYS LEFT  DELIVERY                            LIFECYCLE URL  ID
	// users         live   2026-12-30T22:41:31Z  29.0       webhook to myapp.azurewebsites.net  set            f91b7b70-3c1e-4a57-9b1e-2f6d8c0a1b2c
	//
	// RESYNC  LAST COMPLETED        AGO    EVENTS  IN PROGRESS
	// users   2026-12-01T21:41:31Z  1h00m  40      idle
	//
	// QUEUE                             MESSAGES (APPROX.)  OLDEST
	// webhooksnotificationqueue         0                   -
	// webhooksnotificationqueue-poison  2                   3h05m old
	// graphchanges                      110                 -
	//
	// NEEDS ATTENTION  poison-not-empty (webhooksnotificationqueue-poison): 2 message(s) in webhooksnotificationqueue-poison, the oldest 3h05m old: their changes have not become events.
	//     what to do: read the queue worker's error line for each (it says why), fix the cause, then run `handler replay-poison` (`-dry-run` counts first).
	// status: needs attention (exit 1)
}
