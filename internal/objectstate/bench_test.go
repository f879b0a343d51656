package objectstate

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkDecideCommit measures one invocation's state work against Azurite: Decide and Commit of n
// objects of one collection, every one changed (emitted, row replaced) or unchanged (suppressed, readAt
// moved), with point reads (the default) or QueryReads. requests/object is the storage cost per event in
// the changed case.
func BenchmarkDecideCommit(b *testing.B) {
	for _, kind := range []string{"changed", "unchanged"} {
		for _, reads := range []string{"point", "query"} {
			for _, n := range []int{20, 100} {
				b.Run(fmt.Sprintf("%s/%s/objects=%d", kind, reads, n), func(b *testing.B) {
					benchDecideCommit(b, n, kind == "changed", Options{QueryReads: reads == "query"})
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

// BenchmarkRead compares the two ways of reading n rows of one partition against Azurite: concurrent point
// reads (what Decide does) and queries of RowKey eq … or … in chunks of 14 (Table storage allows 15
// comparisons per filter, one of them the PartitionKey).
func BenchmarkRead(b *testing.B) {
	for _, n := range []int{20, 100} {
		ctx := context.Background()
		tbl := newAzuriteTable(b)
		st, sq := tbl.open(b, Options{}), tbl.open(b, Options{QueryReads: true})
		seed := make([]Observation, n)
		keys := make([]string, n)
		for i := range n {
			seed[i] = user(i, "x", 0)
			keys[i] = rowKey(userID(i))
		}
		decideCommit(b, ctx, st, seed...)
		b.Run(fmt.Sprintf("point/objects=%d", n), func(b *testing.B) {
			before := st.Requests()
			for b.Loop() {
				rows, err := st.b.get(ctx, "users", keys)
				if err != nil || len(rows) != n {
					b.Fatalf("%d rows, %v", len(rows), err)
				}
			}
			b.ReportMetric(float64(st.Requests()-before)/float64(b.N*n), "requests/object")
		})
		b.Run(fmt.Sprintf("filter/objects=%d", n), func(b *testing.B) {
			before := sq.Requests()
			for b.Loop() {
				rows, err := sq.b.get(ctx, "users", keys)
				if err != nil || len(rows) != n {
					b.Fatalf("%d rows, %v", len(rows), err)
				}
			}
			b.ReportMetric(float64(sq.Requests()-before)/float64(b.N*n), "requests/object")
		})
	}
}
