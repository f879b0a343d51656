package eventhub

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/graphwebhooks/graph-webhooks-go/internal/customhandler"
	"github.com/graphwebhooks/graph-webhooks-go/internal/logctx"
)

// BenchmarkBatch100 is a full batch as host.json asks for it: 100 events of one genuine notification each.
func BenchmarkBatch100(b *testing.B) {
	f := newFunction(nil)
	bodies := make([]string, 100)
	for i := range bodies {
		bodies[i] = collection(change(i))
	}
	benchInvoke(b, f, hostBatch(bodies...))
}

// BenchmarkHostileBatch is about 24 MB of forged notifications (wrong clientState) in 100 events: B/op
// shows what such a batch costs in memory.
func BenchmarkHostileBatch(b *testing.B) {
	f := newFunction(nil)
	forged := strings.Replace(change(0), testState, "guessed-client-state-000000", 1)
	per := make([]string, 400)
	for i := range per {
		per[i] = forged
	}
	body := collection(per...)
	bodies := make([]string, 100)
	for i := range bodies {
		bodies[i] = body
	}
	benchInvoke(b, f, hostBatch(bodies...))
}

func benchInvoke(b *testing.B, f *Function, data json.RawMessage) {
	b.Helper()
	req := &customhandler.Request{Data: map[string]json.RawMessage{TriggerName: data}}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	ctx := logctx.With(context.Background(), slog.New(slog.DiscardHandler))
	for b.Loop() {
		if _, err := f.Invoke(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
