package objectstate

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
)

// TestUpgradeFromOnePartitionLayout writes rows as earlier versions did (partition "users", row the id)
// and checks that the sharded store recognises an unchanged object as unchanged, compares a changed one
// with its old state, and moves each row to its shard when it commits.
func TestUpgradeFromOnePartitionLayout(t *testing.T) {
	ctx := t.Context()
	s := azuriteSettings(t)
	name := fmt.Sprintf("upgrade%d%d", os.Getpid(), tableSeq.Add(1))
	svc, err := aztables.NewServiceClientFromConnectionString(s.ConnectionString.Reveal(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateTable(ctx, name, nil); err != nil {
		t.Fatal(err)
	}
	old := svc.NewClient(name)
	for i := range 3 {
		r, err := newRecord(user(i, "Engineer", 0))
		if err != nil {
			t.Fatal(err)
		}
		e, err := encodeEntity("users", r) // the one-partition layout
		if err != nil {
			t.Fatal(err)
		}
		if _, err := old.AddEntity(ctx, e, nil); err != nil {
			t.Fatal(err)
		}
	}
	open := func() *Store {
		st, err := New(s, name, Options{})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	st := open()
	// 0 unchanged, read at the same time as stored; 1 unchanged, read later; 2 changed.
	ds := decideCommit(t, ctx, st, user(0, "Engineer", 0), user(1, "Engineer", 5), user(2, "Lead", 5))
	for i, want := range []Reason{ReasonUnchanged, ReasonUnchanged, ReasonChanged} {
		if ds[i].Reason != want || ds[i].Emit != (want == ReasonChanged) {
			t.Errorf("object %d over its old-layout row: emit %v %s, want %s", i, ds[i].Emit, ds[i].Reason, want)
		}
	}
	if ds[2].Previous["jobTitle"] != "Engineer" {
		t.Errorf("changed object: previous %v, want the old-layout state", ds[2].Previous)
	}

	// Every row now sits in its shard; the old partition is empty.
	for i := range 3 {
		k := keyOf("users", userID(i))
		if _, err := old.GetEntity(ctx, k.partition, k.row, nil); err != nil {
			t.Errorf("object %d: no row in %s: %v", i, k.partition, err)
		}
	}
	pager := old.NewListEntitiesPager(&aztables.ListEntitiesOptions{Filter: ptr("PartitionKey eq 'users'")})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Entities) > 0 {
			t.Errorf("%d rows left in the one-partition layout after their objects were committed", len(page.Entities))
		}
	}

	// A new instance (no cache) sees the moved rows: unchanged stays unchanged, and no old-layout lookup
	// is needed for objects that have a row.
	st = open()
	before := st.Requests()
	ds = decideCommit(t, ctx, st, user(0, "Engineer", 10), user(2, "Lead", 10))
	for i, d := range ds {
		if d.Emit {
			t.Errorf("object %d after the move: emitted (%s)", i, d.Reason)
		}
	}
	parts := int64(len(map[string]bool{keyOf("users", userID(0)).partition: true, keyOf("users", userID(2)).partition: true}))
	if got, want := st.Requests()-before, 2*parts+1; got != want {
		t.Errorf("%d requests for two moved objects, want %d: a read and a transaction per partition, the table's creation, no old-layout lookup", got, want)
	}
	if got := jobTitleOf(t, ctx, st, 2); got != "Lead" {
		t.Errorf("stored %q, want Lead", got)
	}
}

func ptr[T any](v T) *T { return &v }

// TestCachedRowsSaveReads checks that a store decides objects it committed without reading them, that the
// ETags of its transactions are right (the next commit goes through in one transaction), and that a
// cached row another instance moved meanwhile is caught by the commit: an observation the stale cache
// suppressed comes back as a Redecided, its row not moved until it is committed.
func TestCachedRowsSaveReads(t *testing.T) {
	forEachStore(t, func(t *testing.T, tbl table) {
		ctx := t.Context()
		a, b := tbl.open(t, Options{}), tbl.open(t, Options{})
		decideCommit(t, ctx, a, user(1, "Engineer", 0), user(2, "Engineer", 0))

		before := a.Requests()
		ds, err := a.Decide(ctx, []Observation{user(1, "Lead", 10)})
		if err != nil {
			t.Fatal(err)
		}
		if !ds[0].Emit || ds[0].Previous["jobTitle"] != "Engineer" {
			t.Errorf("second change of a cached object: emit %v previous %v", ds[0].Emit, ds[0].Previous)
		}
		if err := a.Commit(ctx, ds); err != nil {
			t.Fatal(err)
		}
		if got := a.Requests() - before; got != 1 {
			t.Errorf("a change of a cached object cost %d requests, want 1 (the write, no read)", got)
		}

		// Another instance moves user 2; a's cache still holds Engineer. The object went back to Engineer
		// after that (a read at 20): news against the row, though not against a's cache.
		decideCommit(t, ctx, b, user(2, "Director", 10))
		ds, err = a.Decide(ctx, []Observation{user(2, "Engineer", 20)})
		if err != nil {
			t.Fatal(err)
		}
		if ds[0].Emit {
			t.Fatalf("decided from the cache: want suppressed (the stale state), got %s", ds[0].Reason)
		}
		err = a.Commit(ctx, ds)
		var late *Redecided
		if !errors.As(err, &late) {
			t.Fatalf("Commit over a moved row: %v, want a Redecided", err)
		}
		if len(late.Decisions) != 1 || late.Indexes[0] != 0 || !late.Decisions[0].Emit || late.Decisions[0].Previous["jobTitle"] != "Director" {
			t.Fatalf("redecided: %+v", late)
		}
		if got := jobTitleOf(t, ctx, a, 2); got != "Director" {
			t.Errorf("stored %q before the late event is written; want Director, unmoved", got)
		}
		if err := a.Commit(ctx, late.Decisions); err != nil {
			t.Fatal(err)
		}
		if got := jobTitleOf(t, ctx, a, 2); got != "Engineer" {
			t.Errorf("stored %q, want Engineer", got)
		}
	})
}

func TestCacheBounds(t *testing.T) {
	r := func(i, stateBytes int) *Record {
		return &Record{ID: fmt.Sprint(i), ETag: "e", StateHash: "h", State: make([]byte, stateBytes)}
	}
	k := func(i int) key { return key{"users-0", fmt.Sprint(i)} }

	c := newCache(3, 1<<20)
	for i := range 5 {
		c.put(k(i), r(i, 10))
	}
	c.get(k(2)) // used: kept over 3
	c.put(k(5), r(5, 10))
	for i, want := range []bool{false, false, true, false, true, true} {
		if got := c.get(k(i)) != nil; got != want {
			t.Errorf("entry %d cached %v, want %v (3 entries, least recently used out)", i, got, want)
		}
	}

	c = newCache(100, 3*(entryOverhead+1000))
	for i := range 4 {
		c.put(k(i), r(i, 1000-len(fmt.Sprint(i))-len("e")-len("users-0")))
	}
	if n, bytes := c.len(); n != 3 || bytes > 3*(entryOverhead+1000) {
		t.Errorf("%d entries of %d bytes, want 3 within the byte bound", n, bytes)
	}
	c.put(k(9), r(9, 4000)) // larger than the whole cache: not kept
	if c.get(k(9)) != nil {
		t.Error("an entry larger than the bound was cached")
	}
	c.put(k(1), &Record{ID: "1", StateHash: "h"}) // no ETag: forgets the entry
	if c.get(k(1)) != nil {
		t.Error("a row without ETag replaced by nothing stayed cached")
	}
	if newCache(-1, 0) != nil {
		t.Error("a negative bound should disable the cache")
	}
}

func TestShardsSpreadIDsOfEveryShape(t *testing.T) {
	shapes := map[string]func(i int) string{
		"guid":        userID,
		"drive item":  func(i int) string { return fmt.Sprintf("01BYE5RZ%018dXYZ", i) },
		"message id":  func(i int) string { return fmt.Sprintf("AAMkAGI2TG93AAA%06d=", i) },
		"numeric":     func(i int) string { return fmt.Sprint(1_700_000_000_000 + i) },
		"upper/lower": func(i int) string { return fmt.Sprintf("ABCDEF%d", i) },
	}
	const n = 16_000
	for name, id := range shapes {
		count := map[string]int{}
		for i := range n {
			count[keyOf("things", id(i)).partition]++
		}
		if len(count) != Shards {
			t.Errorf("%s ids: %d partitions used, want %d", name, len(count), Shards)
		}
		for p, c := range count {
			if c < n/Shards*8/10 || c > n/Shards*12/10 {
				t.Errorf("%s ids: partition %s holds %d of %d, want within 20%% of %d", name, p, c, n, n/Shards)
			}
		}
	}
	if keyOf("users", "ABC") != keyOf("users", "abc") {
		t.Error("the shard depends on the id's case")
	}
}
