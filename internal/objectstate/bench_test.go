package objectstate

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkDecideCommit measures one invocation's state work against Azurite: Decide and Commit of n
// objects of one collection, every one changed (emitted, row replaced) or unchanged (suppressed, readAt
// moved), with queries (the default) or PointReads, from a store that did not write the rows (no cache).
// requests/object is the storage cost per event in the changed case.
func BenchmarkDecideCommit(b *testing.B) {
	for _, kind := range []string{"changed", "unchanged"} {
		for _, reads := range []string{"query", "point"} {
			for _, n := range []int{20, 100} {
				b.Run(fmt.Sprintf("%s/%s/objects=%d", kind, reads, n), func(b *testing.B) {
					benchDecideCommit(b, n, kind == "changed", Options{PointReads: reads == "point", CacheEntries: -1})
				})
			}
		}
	}
}

func benchDecideCommit(b *testing.B, n int, change bool, o Options) {
	ctx := context.Background()
	st := newAzuriteTable(b).open(b, o)
	seed := make([]Observation, n)
	for i := range n {
		seed[i] = user(i, "title 0", 0)
	}
	decideCommit(b, ctx, st, seed...)
	obs := make([]Observation, n)
	round := 0
	before := st.Requests()
	b.ReportAllocs()
	for b.Loop() {
		round++
		title := "title 0"
		if change {
			title = fmt.Sprintf("title %d", round)
		}
		for i := range n {
			obs[i] = user(i, title, round)
		}
		ds, err := st.Decide(ctx, obs)
		if err != nil {
			b.Fatal(err)
		}
		if err := st.Commit(ctx, ds); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(st.Requests()-before)/float64(b.N*n), "requests/object")
}

// BenchmarkRead compares the two ways of reading n rows against Azurite: concurrent point reads
// (PointReads) and queries of RowKey eq … or … per partition in chunks of 14 (the default; Table storage
// allows 15 comparisons per filter, one of them the PartitionKey).
func BenchmarkRead(b *testing.B) {
	for _, n := range []int{20, 100} {
		ctx := context.Background()
		tbl := newAzuriteTable(b)
		st, sq := tbl.open(b, Options{PointReads: true}), tbl.open(b, Options{})
		seed := make([]Observation, n)
		need := map[string][]string{}
		for i := range n {
			seed[i] = user(i, "x", 0)
			k := keyOf("users", userID(i))
			need[k.partition] = append(need[k.partition], k.row)
		}
		decideCommit(b, ctx, st, seed...)
		b.Run(fmt.Sprintf("point/objects=%d", n), func(b *testing.B) {
			before := st.Requests()
			for b.Loop() {
				rows, err := st.read(ctx, need)
				if err != nil || len(rows) != n {
					b.Fatalf("%d rows, %v", len(rows), err)
				}
			}
			b.ReportMetric(float64(st.Requests()-before)/float64(b.N*n), "requests/object")
		})
		b.Run(fmt.Sprintf("filter/objects=%d", n), func(b *testing.B) {
			before := sq.Requests()
			for b.Loop() {
				rows, err := sq.read(ctx, need)
				if err != nil || len(rows) != n {
					b.Fatalf("%d rows, %v", len(rows), err)
				}
			}
			b.ReportMetric(float64(sq.Requests()-before)/float64(b.N*n), "requests/object")
		})
	}
}

// BenchmarkReadLargeTable reads a page of 200 rows out of a table of 20,000 (a full pass's page in a
// directory that size): point reads against one query per shard per 14 ids. Azurite evaluates a query's
// filter against every entity of the table, where Table storage scans only the partition named: the
// query figures here grow with the table, the point reads' do not.
func BenchmarkReadLargeTable(b *testing.B) {
	const rows, page = 20_000, 200
	ctx := context.Background()
	tbl := newAzuriteTable(b)
	st, sq := tbl.open(b, Options{PointReads: true, CacheEntries: -1}), tbl.open(b, Options{CacheEntries: -1})
	for start := 0; start < rows; start += 2000 {
		var seed []Observation
		for i := start; i < start+2000; i++ {
			seed = append(seed, user(i, "x", 0))
		}
		decideCommit(b, ctx, st, seed...)
	}
	need := map[string][]string{}
	for i := 0; i < rows; i += rows / page {
		k := keyOf("users", userID(i))
		need[k.partition] = append(need[k.partition], k.row)
	}
	for name, s := range map[string]*Store{"point": st, "filter": sq} {
		b.Run(name, func(b *testing.B) {
			before := s.Requests()
			for b.Loop() {
				got, err := s.read(ctx, need)
				if err != nil || len(got) != page {
					b.Fatalf("%d rows, %v", len(got), err)
				}
			}
			b.ReportMetric(float64(s.Requests()-before)/float64(b.N*page), "requests/object")
		})
	}
}
