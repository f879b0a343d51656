package objectstate

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/graphwebhooks/graph-webhooks-go/internal/azuritetest"
	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
)

func TestMain(m *testing.M) {
	code := m.Run()
	azuritetest.StopShared()
	os.Exit(code)
}

var tableSeq atomic.Int64

// table is one state table that several stores (workers) can share.
type table struct {
	open   func(t testing.TB, o Options) *Store
	points bool // its stores read every row with a point read
}

func azuriteSettings(tb testing.TB) config.StorageSettings {
	tb.Helper()
	az := azuritetest.Shared(tb)
	return config.Load(func(k string) string {
		if k == config.Storage {
			return az.ConnectionString()
		}
		return ""
	}).Storage
}

func newAzuriteTable(tb testing.TB) table {
	s := azuriteSettings(tb)
	name := fmt.Sprintf("state%d%d", os.Getpid(), tableSeq.Add(1))
	return table{open: func(tb testing.TB, o Options) *Store {
		st, err := New(s, name, o)
		if err != nil {
			tb.Fatal(err)
		}
		return st
	}}
}

func newMemoryTable(testing.TB) table {
	m := NewMemoryTable()
	return table{open: func(_ testing.TB, o Options) *Store { return m.Store(o) }}
}

func newAzuritePointTable(tb testing.TB) table {
	tbl := newAzuriteTable(tb)
	return table{points: true, open: func(tb testing.TB, o Options) *Store {
		o.PointReads = true
		return tbl.open(tb, o)
	}}
}

// forEachStore runs the contract test against the Table store on Azurite (with queries, and with point
// reads only) and the in-memory one.
func forEachStore(t *testing.T, test func(t *testing.T, tbl table)) {
	for name, mk := range map[string]func(testing.TB) table{"azurite": newAzuriteTable, "azurite-point": newAzuritePointTable, "memory": newMemoryTable} {
		t.Run(name, func(t *testing.T) { test(t, mk(t)) })
	}
}

func userID(i int) string { return fmt.Sprintf("%08X-0000-4000-8000-%012d", i, i) }

func user(i int, jobTitle string, s int) Observation {
	return Observation{Collection: "users", ID: userID(i), Select: userSel, ReadAt: at(s), ChangeType: Updated,
		Properties: map[string]any{"id": userID(i), "displayName": fmt.Sprintf("User %d", i), "jobTitle": jobTitle}}
}

func decideCommit(t testing.TB, ctx context.Context, st *Store, obs ...Observation) []Decision {
	t.Helper()
	ds, err := st.Decide(ctx, obs)
	if err != nil {
		t.Fatalf("Decide: %v", err)
	}
	if err := st.Commit(ctx, ds); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return ds
}

func jobTitleOf(t *testing.T, ctx context.Context, st *Store, i int) string {
	t.Helper()
	r, err := st.Get(ctx, "users", userID(i))
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if r == nil {
		return "<no row>"
	}
	var state map[string]any
	if err := json.Unmarshal(r.State, &state); err != nil {
		t.Fatalf("stored state %q: %v", r.State, err)
	}
	s, _ := state["jobTitle"].(string)
	return s
}

func TestBatchAcrossManyObjects(t *testing.T) {
	forEachStore(t, func(t *testing.T, tbl table) {
		ctx := t.Context()
		st := tbl.open(t, Options{})
		const n = 250
		var first, second []Observation
		for i := range n {
			first = append(first, user(i, "Engineer", 0))
			second = append(second, user(i, "Engineer", 10))
		}
		first = append(first, Observation{Collection: "groups", ID: userID(1), Select: []string{"id"}, ReadAt: at(0),
			ChangeType: Updated, Properties: map[string]any{"id": userID(1)}})

		for i, d := range decideCommit(t, ctx, st, first...) {
			if !d.Emit || d.Reason != ReasonNew {
				t.Fatalf("first round, object %d: %s", i, d.Reason)
			}
		}
		// The store that wrote the rows decides from its cache; another reads them.
		before := st.Requests()
		if _, err := st.Decide(ctx, second); err != nil {
			t.Fatal(err)
		}
		if got := st.Requests() - before; got != 0 {
			t.Errorf("Decide of %d objects this store committed made %d requests, want none (cached)", n, got)
		}
		writer := st
		st = tbl.open(t, Options{})
		perPartition := map[string]int{}
		for _, o := range second {
			perPartition[keyOf(o.Collection, o.ID).partition]++
		}
		if len(perPartition) < Shards {
			t.Errorf("%d objects landed in %d partitions, want all %d shards used", n, len(perPartition), Shards)
		}
		var wantReads, wantWrites int64
		for _, k := range perPartition {
			wantReads += int64((k + maxQueryKeys - 1) / maxQueryKeys) // one query per 14 ids of a partition
			if tbl.points || k == 1 {
				wantReads += int64(k - (k+maxQueryKeys-1)/maxQueryKeys)
			}
			wantWrites += int64((k + maxBatch - 1) / maxBatch)
		}
		if tbl.points {
			wantReads = n
		}
		before = st.Requests()
		ds, err := st.Decide(ctx, second)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Requests() - before; got != wantReads {
			t.Errorf("Decide of %d objects made %d requests, want %d", n, got, wantReads)
		}
		for i, d := range ds {
			if d.Emit || d.Reason != ReasonUnchanged {
				t.Fatalf("second round, object %d: emit %v %s; want suppressed as unchanged", i, d.Emit, d.Reason)
			}
		}
		// Committed by the store that created the table, so that no table creation is counted.
		before = writer.Requests()
		if err := writer.Commit(ctx, ds); err != nil {
			t.Fatal(err)
		}
		if got := writer.Requests() - before; got != wantWrites {
			t.Errorf("Commit of %d rows in %d partitions made %d requests, want %d transactions", n, len(perPartition), got, wantWrites)
		}
		// A third round with a change sees every row, readAt moved.
		third := make([]Observation, n)
		for i := range n {
			third[i] = user(i, "Lead", 5)
		}
		third[7] = user(7, "Lead", 20)
		ds, err = st.Decide(ctx, third)
		if err != nil {
			t.Fatal(err)
		}
		for i, d := range ds {
			wantEmit := i == 7
			if d.Emit != wantEmit {
				t.Fatalf("object %d read at %v after rows at 10s: emit %v (%s)", i, d.Observation.ReadAt, d.Emit, d.Reason)
			}
		}
		if !reflect.DeepEqual(ds[7].Changed, []string{"jobTitle"}) || ds[7].Previous["jobTitle"] != "Engineer" {
			t.Errorf("changed %v previous %v", ds[7].Changed, ds[7].Previous)
		}
		if g, err := st.Get(ctx, "groups", userID(1)); err != nil || g == nil {
			t.Errorf("group row: %+v, %v", g, err)
		}
	})
}

func TestSameObjectTwiceInOneCall(t *testing.T) {
	forEachStore(t, func(t *testing.T, tbl table) {
		ctx := t.Context()
		st := tbl.open(t, Options{})
		ds := decideCommit(t, ctx, st, user(1, "Engineer", 0), user(1, "Lead", 10), user(1, "Intern", 5))
		if ds[0].Reason != ReasonNew || ds[1].Reason != ReasonChanged || ds[2].Reason != ReasonOlder {
			t.Errorf("reasons %s %s %s, want new changed older", ds[0].Reason, ds[1].Reason, ds[2].Reason)
		}
		if !reflect.DeepEqual(ds[1].Previous, map[string]any{"jobTitle": "Engineer"}) {
			t.Errorf("previous %v", ds[1].Previous)
		}
		if got := jobTitleOf(t, ctx, st, 1); got != "Lead" {
			t.Errorf("stored %q, want Lead", got)
		}
	})
}

func TestDeletes(t *testing.T) {
	forEachStore(t, func(t *testing.T, tbl table) {
		ctx := t.Context()
		st := tbl.open(t, Options{})
		decideCommit(t, ctx, st, user(1, "Engineer", 0), user(2, "Engineer", 0))
		soft := Observation{Collection: "users", ID: userID(1), Select: userSel, ReadAt: at(5), ChangeType: Deleted, SoftDeleted: true}
		gone := Observation{Collection: "users", ID: userID(2), Select: userSel, ReadAt: at(5), ChangeType: Deleted}
		for _, d := range decideCommit(t, ctx, st, soft, gone) {
			if !d.Emit {
				t.Errorf("%s delete suppressed", d.Observation.ID)
			}
		}
		if r, err := st.Get(ctx, "users", userID(1)); err != nil || r == nil || !r.SoftDeleted || !strings.Contains(string(r.State), "Engineer") {
			t.Errorf("soft-deleted row: %+v, %v; want kept, marked, with its state", r, err)
		}
		if r, err := st.Get(ctx, "users", userID(2)); err != nil || r != nil {
			t.Errorf("permanently deleted row: %+v, %v; want none", r, err)
		}
		ds := decideCommit(t, ctx, st, user(1, "Engineer", 9))
		if !ds[0].Emit || ds[0].Reason != ReasonRestored {
			t.Errorf("restore: emit %v %s", ds[0].Emit, ds[0].Reason)
		}
		if r, _ := st.Get(ctx, "users", userID(1)); r == nil || r.SoftDeleted {
			t.Errorf("restored row still marked: %+v", r)
		}
	})
}

// TestRacingWritersNeverMoveStateBack drives two workers whose reads finish out of order.
func TestRacingWritersNeverMoveStateBack(t *testing.T) {
	forEachStore(t, func(t *testing.T, tbl table) {
		ctx := t.Context()
		a, b := tbl.open(t, Options{}), tbl.open(t, Options{})
		for _, seed := range []bool{true, false} { // an existing row, and a row both insert
			t.Run(fmt.Sprintf("existing=%v", seed), func(t *testing.T) {
				id := 10
				if !seed {
					id = 11
				}
				if seed {
					decideCommit(t, ctx, a, user(id, "Engineer", 0))
				}
				// Newer wins when it commits first …
				older, err := a.Decide(ctx, []Observation{user(id, "Manager", 10)})
				if err != nil {
					t.Fatal(err)
				}
				newer, err := b.Decide(ctx, []Observation{user(id, "Director", 20)})
				if err != nil {
					t.Fatal(err)
				}
				if !older[0].Emit || !newer[0].Emit {
					t.Fatalf("both reads differ from the stored state and should emit: %s %s", older[0].Reason, newer[0].Reason)
				}
				if err := b.Commit(ctx, newer); err != nil {
					t.Fatal(err)
				}
				if err := a.Commit(ctx, older); err != nil {
					t.Fatal(err)
				}
				if got := jobTitleOf(t, ctx, a, id); got != "Director" {
					t.Fatalf("after the older commit lost its race: stored %q, want Director (the newer read)", got)
				}
				// … and when it commits last.
				older, _ = a.Decide(ctx, []Observation{user(id, "VP", 30)})
				newer, _ = b.Decide(ctx, []Observation{user(id, "CEO", 40)})
				if err := a.Commit(ctx, older); err != nil {
					t.Fatal(err)
				}
				if err := b.Commit(ctx, newer); err != nil {
					t.Fatal(err)
				}
				if got := jobTitleOf(t, ctx, a, id); got != "CEO" {
					t.Fatalf("stored %q, want CEO", got)
				}
				r, _ := a.Get(ctx, "users", userID(id))
				if !r.ReadAt.Equal(at(40)) {
					t.Errorf("readAt %v, want %v", r.ReadAt, at(40))
				}
			})
		}
	})
}

func TestConflictInATransactionKeepsTheOthers(t *testing.T) {
	forEachStore(t, func(t *testing.T, tbl table) {
		ctx := t.Context()
		a, b := tbl.open(t, Options{}), tbl.open(t, Options{})
		var seed, mine []Observation
		for i := range 10 {
			seed = append(seed, user(i, "Engineer", 0))
			mine = append(mine, user(i, "Lead", 10))
		}
		decideCommit(t, ctx, a, seed...)
		ds, err := a.Decide(ctx, mine)
		if err != nil {
			t.Fatal(err)
		}
		decideCommit(t, ctx, b, user(5, "Director", 20)) // another worker, with a newer read of one object
		partitions := map[string]int{}
		for _, o := range mine {
			partitions[keyOf(o.Collection, o.ID).partition]++
		}
		before := a.Requests()
		if err := a.Commit(ctx, ds); err != nil {
			t.Fatal(err)
		}
		// A transaction per partition, one of them refused; single writes of the refused one's rows (one
		// refused), 1 re-read of the refused row.
		want := int64(len(partitions) + partitions[keyOf("users", userID(5)).partition] + 1)
		if got := a.Requests() - before; got != want {
			t.Errorf("Commit made %d requests, want %d", got, want)
		}
		for i := range 10 {
			want := "Lead"
			if i == 5 {
				want = "Director"
			}
			if got := jobTitleOf(t, ctx, a, i); got != want {
				t.Errorf("user %d: stored %q, want %q", i, got, want)
			}
		}
	})
}

func TestBigObjects(t *testing.T) {
	forEachStore(t, func(t *testing.T, tbl table) {
		ctx := t.Context()
		st := tbl.open(t, Options{})
		// A group with many proxy addresses: over one property's 64 KiB, under the state limit.
		many := make([]any, 3000)
		for i := range many {
			many[i] = fmt.Sprintf("smtp:sales-alias-%04d@contoso.com", i)
		}
		g := Observation{Collection: "groups", ID: userID(1), Select: []string{"id", "proxyAddresses", "displayName"}, ReadAt: at(0),
			ChangeType: Updated, Properties: map[string]any{"id": userID(1), "displayName": "Sales", "proxyAddresses": many}}
		decideCommit(t, ctx, st, g)
		r, err := st.Get(ctx, "groups", userID(1))
		if err != nil || r == nil || len(r.State) < 100_000 {
			t.Fatalf("big group row: %v, state of %d bytes", err, len(r.State))
		}
		g2 := g
		g2.ReadAt = at(1)
		g2.Properties = map[string]any{"id": userID(1), "displayName": "Sales EMEA", "proxyAddresses": many}
		ds := decideCommit(t, ctx, st, g2)
		if !reflect.DeepEqual(ds[0].Changed, []string{"displayName"}) || ds[0].Previous["displayName"] != "Sales" {
			t.Errorf("change of a big group: changed %v previous %v", ds[0].Changed, ds[0].Previous)
		}

		// A user at the most a row keeps: twelve full parts, read back whole.
		full := user(3, "Engineer", 0)
		full.Properties["aboutMe"] = ""
		pad, _ := Canonical(full.Properties)
		full.Properties["aboutMe"] = strings.Repeat("y", MaxStateBytes-len(pad))
		decideCommit(t, ctx, st, full)
		if r, err := st.Get(ctx, "users", userID(3)); err != nil || r == nil || len(r.State) != MaxStateBytes {
			t.Fatalf("user at the limit: %v, state of %d bytes, want %d", err, len(r.State), MaxStateBytes)
		}

		// A user whose state exceeds what a row keeps: only its hash is stored.
		huge := user(2, "Engineer", 0)
		huge.Properties["aboutMe"] = strings.Repeat("x", MaxStateBytes+1)
		decideCommit(t, ctx, st, huge)
		again := user(2, "Engineer", 1)
		again.Properties["aboutMe"] = huge.Properties["aboutMe"]
		if ds := decideCommit(t, ctx, st, again); ds[0].Emit {
			t.Errorf("unchanged huge user emitted: %s", ds[0].Reason)
		}
		changed := user(2, "Lead", 2)
		changed.Properties["aboutMe"] = huge.Properties["aboutMe"]
		if ds := decideCommit(t, ctx, st, changed); !ds[0].Emit || ds[0].Changed != nil {
			t.Errorf("changed huge user: emit %v changed %v; want emitted without changed", ds[0].Emit, ds[0].Changed)
		}
	})
}

func TestEmitModeStore(t *testing.T) {
	forEachStore(t, func(t *testing.T, tbl table) {
		ctx := t.Context()
		st := tbl.open(t, Options{Mode: Emit})
		decideCommit(t, ctx, st, user(1, "Engineer", 0))
		ds := decideCommit(t, ctx, st, user(1, "Engineer", 1))
		if !ds[0].Emit || ds[0].Reason != ReasonUnchanged {
			t.Errorf("emit mode: emit %v %s", ds[0].Emit, ds[0].Reason)
		}
	})
}

func TestInvalidObservationMakesNoRequest(t *testing.T) {
	forEachStore(t, func(t *testing.T, tbl table) {
		st := tbl.open(t, Options{})
		bad := user(1, "Engineer", 0)
		bad.ID = "../x"
		if _, err := st.Decide(t.Context(), []Observation{user(2, "E", 0), bad}); err == nil || st.Requests() != 0 {
			t.Errorf("err %v after %d requests; want ErrInvalid before any", err, st.Requests())
		}
	})
}

func TestUnreadableRowStartsOver(t *testing.T) {
	ctx := t.Context()
	s := azuriteSettings(t)
	name := fmt.Sprintf("corrupt%d%d", os.Getpid(), tableSeq.Add(1))
	svc, err := aztables.NewServiceClientFromConnectionString(s.ConnectionString.Reveal(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateTable(ctx, name, nil); err != nil {
		t.Fatal(err)
	}
	for i, e := range []string{
		`{"PartitionKey":"%s","RowKey":"%s","v":99}`,
		`{"PartitionKey":"%s","RowKey":"%s","v":1,"readAt":"2026-12-01T10:00:00Z","stateParts":1,"state0":"{}","stateHash":"tampered"}`,
	} {
		k := keyOf("users", userID(i))
		if _, err := svc.NewClient(name).AddEntity(ctx, fmt.Appendf(nil, e, k.partition, k.row), nil); err != nil {
			t.Fatal(err)
		}
	}
	st, err := New(s, name, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ds := decideCommit(t, ctx, st, user(0, "Engineer", 0), user(1, "Engineer", 0))
	for i, d := range ds {
		if !d.Emit || d.Reason != ReasonSelectChanged || d.Changed != nil {
			t.Errorf("object %d over an unreadable row: emit %v %s changed %v; want it started over", i, d.Emit, d.Reason, d.Changed)
		}
		if got := jobTitleOf(t, ctx, st, i); got != "Engineer" {
			t.Errorf("object %d: row not replaced: %q", i, got)
		}
	}
}

func TestCommitWithNothingToWrite(t *testing.T) {
	forEachStore(t, func(t *testing.T, tbl table) {
		ctx := t.Context()
		st := tbl.open(t, Options{})
		decideCommit(t, ctx, st, user(1, "Engineer", 10))
		ds, err := st.Decide(ctx, []Observation{user(1, "Intern", 5), user(1, "Engineer", 10)})
		if err != nil {
			t.Fatal(err)
		}
		before := st.Requests()
		if err := st.Commit(ctx, ds); err != nil {
			t.Fatal(err)
		}
		if err := st.Commit(ctx, nil); err != nil {
			t.Fatal(err)
		}
		if got := st.Requests() - before; got != 0 {
			t.Errorf("Commit of an older and an equal read made %d requests, want none", got)
		}
	})
}

func TestCountRequestsPerContext(t *testing.T) {
	forEachStore(t, func(t *testing.T, tbl table) {
		st := tbl.open(t, Options{})
		var mine, other atomic.Int64
		ctx := CountRequests(t.Context(), &mine)
		decideCommit(t, ctx, st, user(1, "Engineer", 0), user(2, "Engineer", 0))
		decideCommit(t, CountRequests(t.Context(), &other), st, user(3, "Engineer", 0))
		if mine.Load() == 0 || other.Load() == 0 || mine.Load()+other.Load() != st.Requests() {
			t.Errorf("counted %d + %d, store sent %d", mine.Load(), other.Load(), st.Requests())
		}
		if other.Load() != 2 {
			t.Errorf("the second call counted %d, want 2 (one read, one transaction)", other.Load())
		}
	})
}

func TestNewNamesTheMissingSetting(t *testing.T) {
	key := "c2VjcmV0LWtleS1uZXZlci1sb2dnZWQ="
	for name, c := range map[string]struct {
		s    config.StorageSettings
		want string
	}{
		"nothing":             {config.StorageSettings{}, "AzureWebJobsStorage is not set"},
		"identity, no table":  {config.StorageSettings{QueueServiceURL: "https://a.queue.core.windows.net"}, "__tableServiceUri"},
		"no account name":     {config.StorageSettings{ConnectionString: config.Secret("AccountKey=" + key + ";TableEndpoint=http://127.0.0.1:1/x")}, "not usable by the table client"},
		"key is not base64":   {config.StorageSettings{ConnectionString: config.Secret("AccountName=a;AccountKey=%%%;TableEndpoint=http://127.0.0.1:1/x")}, "not usable by the table client"},
		"identity, table URL": {config.StorageSettings{TableServiceURL: "https://a.table.core.windows.net"}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			o := Options{}
			if c.want == "" {
				o.Credential = &fake.TokenCredential{}
			}
			_, err := New(c.s, "", o)
			switch {
			case c.want == "" && err != nil:
				t.Errorf("New: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("New: %v, want %q", err, c.want)
			case err != nil && strings.Contains(err.Error(), key):
				t.Errorf("the error shows the account key: %v", err)
			}
		})
	}
}

// TestProbe: a table that does not exist yet answers; a Table service that refuses connections does not.
func TestProbe(t *testing.T) {
	ctx := context.Background()
	if err := newAzuriteTable(t).open(t, Options{}).Probe(ctx); err != nil {
		t.Errorf("Azurite, no table yet: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	down := config.Load(func(k string) string {
		if k == config.Storage {
			return "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + config.AzuriteAccountKey + ";TableEndpoint=http://" + addr + "/devstoreaccount1;"
		}
		return ""
	}).Storage
	st, err := New(down, "graphstate", Options{Transport: &http.Client{Transport: &http.Transport{}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Probe(ctx); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("refused connections: %v", err)
	}
}
