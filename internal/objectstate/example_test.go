package objectstate_test

import (
	"context"
	"fmt"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/objectstate"
)

// The order one invocation follows: decide (reads), write the events, then commit (moves the rows).
func Example() {
	ctx := context.Background()
	store := objectstate.NewMemoryTable().Store(objectstate.Options{Mode: objectstate.Suppress})
	sel := []string{"id", "displayName", "jobTitle"}
	read := func(jobTitle string, at time.Time) objectstate.Observation {
		return objectstate.Observation{
			Collection: "users", ID: "6e1f5a2b-0000-4000-8000-000000000001", Select: sel, ReadAt: at, ChangeType: objectstate.Updated,
			Properties: map[string]any{"id": "6e1f5a2b-0000-4000-8000-000000000001", "displayName": "Adele Vance", "jobTitle": jobTitle},
		}
	}
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, batch := range [][]objectstate.Observation{
		{read("Engineer", t0)},
		{read("Engineer", t0.Add(time.Minute))}, // a duplicate notification: nothing new
		{read("Lead", t0.Add(2*time.Minute))},
	} {
		decisions, err := store.Decide(ctx, batch)
		if err != nil {
			panic(err)
		}
		for _, d := range decisions {
			if d.Emit { // here the pipeline writes the event, with d.Changed and d.Previous
				fmt.Println("emit", d.Reason, d.Changed, d.Previous)
			} else {
				fmt.Println("suppress", d.Reason)
			}
		}
		// Only after the events are written.
		if err := store.Commit(ctx, decisions); err != nil {
			panic(err)
		}
	}
	// Output:
	// emit new [] map[]
	// suppress unchanged
	// emit changed [jobTitle] map[jobTitle:Engineer]
}
