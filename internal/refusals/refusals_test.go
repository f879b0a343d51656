package refusals

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/azuritetest"
	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/subscription"
	"github.com/graphwebhooks/graph-webhooks-go/internal/testclock"
)

func TestMain(m *testing.M) {
	code := m.Run()
	azuritetest.StopShared()
	os.Exit(code)
}

var tableSeq atomic.Int64

func newStore(t *testing.T) *Store {
	t.Helper()
	az := azuritetest.Shared(t)
	s := config.Load(func(k string) string {
		if k == config.Storage {
			return az.ConnectionString()
		}
		return ""
	}).Storage
	st, err := New(s, fmt.Sprintf("refusals%d%d", os.Getpid(), tableSeq.Add(1)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

const user = "6e1f0001-7c3a-4b2d-9e8f-0a1b2c3d4e5f"

func TestRefusalsRoundTripOnAzurite(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	got, err := st.Refusals(ctx)
	if err != nil || len(got) != 0 {
		t.Fatalf("before any write (no table yet): %v %v", got, err)
	}
	t0 := testclock.Date(2026, 3, 2, 8, 0, 0)
	msgs, evs := subscription.MailboxResource(user, "messages"), subscription.MailboxResource(user, "events")
	r := subscription.Refusal{Resource: msgs, Status: 403, Code: "ExtensionError", Reason: "Operation: Create; Exception: [Status Code: Forbidden; Reason: Access to OData is disabled.]",
		First: t0, Last: t0, Count: 1, RetryAt: t0.Add(12 * time.Hour)}
	if err := st.PutRefusal(ctx, r); err != nil {
		t.Fatal(err)
	}
	r2 := r
	r2.Resource, r2.Count, r2.Last = evs, 3, t0.Add(time.Hour)
	if err := st.PutRefusal(ctx, r2); err != nil {
		t.Fatal(err)
	}
	r.Count = 2 // an upsert replaces
	if err := st.PutRefusal(ctx, r); err != nil {
		t.Fatal(err)
	}
	got, err = st.Refusals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[msgs] != r || got[evs] != r2 {
		t.Fatalf("read back %+v", got)
	}
	if err := st.DeleteRefusal(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteRefusal(ctx, msgs); err != nil {
		t.Fatalf("deleting twice: %v", err)
	}
	got, _ = st.Refusals(ctx)
	if len(got) != 1 || got[evs].Count != 3 {
		t.Fatalf("after delete: %+v", got)
	}
	if err := st.PutRefusal(ctx, subscription.Refusal{Resource: "users"}); err == nil {
		t.Fatal("a resource that is not a mailbox's was stored")
	}
}

func TestRowKey(t *testing.T) {
	if k := RowKey("/Users/" + user + "/Events"); k != user+"_events" || resourceOf(k) != "users/"+user+"/events" {
		t.Fatalf("row key %q → %q", k, resourceOf(k))
	}
	for _, bad := range []string{"users", "users/x/messages", "drives/x/root"} {
		if RowKey(bad) != "" {
			t.Errorf("%q got a row key", bad)
		}
	}
	if resourceOf("not-a-key") != "" || resourceOf("abc_messages") != "" {
		t.Error("foreign rows must be skipped")
	}
}
