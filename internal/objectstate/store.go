// Package objectstate keeps the last emitted state of each directory object (users, groups) and decides,
// for each new observation of an object, whether its change event carries anything new: which properties
// changed and from what, or nothing at all (then the event is suppressed).
//
// The state lives in Azure Table storage, table STATE_TABLE (default graphstate) of AzureWebJobsStorage:
// partition = collection ("users", "groups"), row = the object id in lower case. A row holds the canonical
// JSON of the state as it was emitted (see Canonical), its hash, the hash of the select it was read with,
// the time of the read (readAt), and whether the object is soft-deleted.
//
// # Order of work
//
// Per invocation, the caller:
//
//  1. calls Store.Decide with every observation it is about to turn into events (reads the rows: no writes);
//  2. writes the events of the decisions with Emit set, adding Changed and Previous;
//  3. only when those writes succeeded, calls Store.Commit with all the decisions (suppressed ones too).
//
// A crash between 2 and 3 leaves the rows behind the events: the retry decides again against the old rows
// and re-emits (at least once), never loses an event. Commit's writes are conditional on the ETags Decide
// read; an object another writer moved meanwhile is read again and decided again, so a row never goes
// back to an older read. A failed Commit loses no event either: the rows stay behind, and the next
// observation of those objects is decided against them (it may be emitted again); the caller can log the
// error and succeed rather than re-run the whole invocation.
//
// NewMemoryTable gives the same Store over an in-memory table with ETags and transactions modelled, for
// tests that need no storage.
package objectstate

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/graphwebhooks/graph-webhooks-go/internal/logctx"
)

// maxBatch is the most entities one Table transaction takes.
const maxBatch = 100

// maxBatchBytes bounds the encoded entities of one transaction: Table storage refuses a batch whose
// payload exceeds 4 MiB, and the multipart framing adds a little per entity.
const maxBatchBytes = 3 << 20

// maxRetries bounds how often Commit re-reads and re-decides one object that keeps changing under it.
const maxRetries = 5

// Options adjusts a Store.
type Options struct {
	// Mode is EVENTS_UNCHANGED; empty means Suppress.
	Mode Mode
	// Transport and Credential are for the Table service (see New).
	Transport  policy.Transporter     // nil: the SDK's default
	Credential azcore.TokenCredential // identity-based settings; nil: the app's managed identity
	// ReadConcurrency bounds concurrent point reads in Decide; 0 means 16.
	ReadConcurrency int
	// QueryReads makes Decide read rows with one query per 14 ids (RowKey eq … or …) instead of one point
	// read per id: about 10 times fewer requests, and faster against Azurite (BenchmarkRead), but Table
	// storage serves a filter that ORs RowKeys by scanning the whole partition (Microsoft's Table design
	// guide, "Design for querying"), and the partition grows with the directory; a scan also counts
	// against the partition's throughput target. Point reads cost the same whatever the table's size,
	// so they are the default; QueryReads suits directories of a few thousand objects.
	QueryReads bool
}

// Store decides observations against the stored rows and moves the rows. It is safe for concurrent use.
type Store struct {
	b        backend
	mode     Mode
	requests atomic.Int64
}

// backend is what Store needs of a table.
type backend interface {
	// get reads the rows of keys (distinct) in partition; absent rows are absent from the map.
	get(ctx context.Context, partition string, keys []string) (map[string]*Record, error)
	// submit applies ops (distinct keys of one partition, at most maxBatch) all or none. An op whose
	// condition fails fails them all: errConflict, or another error for other refusals.
	submit(ctx context.Context, partition string, ops []op) error
	// apply applies one op; a failed condition is errConflict.
	apply(ctx context.Context, partition string, o op) error
}

// op is one conditional row write: put row (insert when etag is "", else replace if it still has etag),
// or delete the row with key if it still has etag.
type op struct {
	key    string
	row    *Record // nil: delete
	etag   string
	entity []byte // the row encoded for the Table service (nil for a delete)
}

// errConflict is a failed ETag condition: the row is not what Decide read.
var errConflict = errors.New("objectstate: the row changed since it was read")

// Requests is the number of storage requests the store has sent (each attempt counts), for "storage
// requests per event". See CountRequests for one invocation's share.
func (s *Store) Requests() int64 { return s.requests.Load() }

type counterKey struct{}

// CountRequests returns ctx carrying n: the storage requests a Store sends for calls with that context
// are added to n as well, so an invocation counts its own while other invocations share the Store.
func CountRequests(ctx context.Context, n *atomic.Int64) context.Context {
	return context.WithValue(ctx, counterKey{}, n)
}

func (s *Store) count(ctx context.Context, n int64) {
	s.requests.Add(n)
	if c, ok := ctx.Value(counterKey{}).(*atomic.Int64); ok && c != nil {
		c.Add(n)
	}
}

// Mode is the store's EVENTS_UNCHANGED.
func (s *Store) Mode() Mode { return s.mode }

type key struct{ partition, row string }

// Decide reads the stored rows of the observations' objects (batched per partition) and decides each
// observation with Decide. Observations of the same object are decided in the order given, each against
// the row the ones before it leave. It writes nothing: see the package documentation for the order of
// Decide, event writes and Commit. An invalid observation fails the whole call with ErrInvalid, before
// any request.
func (s *Store) Decide(ctx context.Context, obs []Observation) ([]Decision, error) {
	for i := range obs {
		if err := obs[i].validate(); err != nil {
			return nil, err
		}
	}
	byPartition := map[string][]string{}
	seen := map[key]bool{}
	for _, o := range obs {
		k := key{o.Collection, rowKey(o.ID)}
		if !seen[k] {
			seen[k] = true
			byPartition[k.partition] = append(byPartition[k.partition], k.row)
		}
	}
	current := map[key]*Record{}
	for partition, keys := range byPartition {
		rows, err := s.b.get(ctx, partition, keys)
		if err != nil {
			return nil, err
		}
		for row, r := range rows {
			current[key{partition, row}] = r
		}
	}
	return decideChain(obs, current, s.mode)
}

// decideChain decides obs in order against current (updated as it goes). Every decision of one object
// carries the ETag of the row as read, since Commit writes only the last row against that.
func decideChain(obs []Observation, current map[key]*Record, mode Mode) ([]Decision, error) {
	base := map[key]string{}
	for k, r := range current {
		base[k] = r.ETag
	}
	out := make([]Decision, 0, len(obs))
	for _, o := range obs {
		k := key{o.Collection, rowKey(o.ID)}
		d, err := Decide(current[k], o, mode)
		if err != nil {
			return nil, err
		}
		d.base = base[k]
		if d.Write {
			if d.Row == nil {
				delete(current, k)
			} else {
				r := *d.Row
				r.ETag = base[k]
				current[k] = &r
			}
		}
		out = append(out, d)
	}
	return out, nil
}

// Commit moves the rows as decisions say, after the caller wrote the events (see the package
// documentation). Rows of one partition are written in Table transactions of up to 100; when one entity's
// condition fails the transaction, that batch is written entity by entity, so the others are kept. An
// object whose row changed since Decide is read again and its observations decided again; the event
// already written stands, and a row newer than the observation is left alone.
func (s *Store) Commit(ctx context.Context, ds []Decision) error {
	type plan struct {
		obs  []Observation
		last *Decision // the last decision that writes
	}
	plans := map[key]*plan{}
	var order []key
	for i := range ds {
		d := &ds[i]
		k := key{d.Observation.Collection, rowKey(d.Observation.ID)}
		p := plans[k]
		if p == nil {
			p = &plan{}
			plans[k] = p
			order = append(order, k)
		}
		p.obs = append(p.obs, d.Observation)
		if d.Write {
			p.last = d
		}
	}
	byPartition := map[string][]op{}
	for _, k := range order {
		p := plans[k]
		if p.last == nil || (p.last.Row == nil && p.last.base == "") {
			continue
		}
		o, err := newOp(k.row, p.last)
		if err != nil {
			return err
		}
		byPartition[k.partition] = append(byPartition[k.partition], o)
	}
	partitions := make([]string, 0, len(byPartition))
	for p := range byPartition {
		partitions = append(partitions, p)
	}
	slices.Sort(partitions)
	for _, partition := range partitions {
		for _, batch := range batches(byPartition[partition]) {
			err := s.b.submit(ctx, partition, batch)
			if err == nil {
				continue
			}
			if ctx.Err() != nil {
				return fmt.Errorf("objectstate: write %s: %w", partition, err)
			}
			logctx.From(ctx).Debug("objectstate: transaction refused; writing its rows one by one", "partition", partition, "rows", len(batch), "error", err)
			for _, o := range batch {
				if err := s.applyOne(ctx, partition, o, plans[key{partition, o.key}].obs); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func newOp(rowKey string, d *Decision) (op, error) {
	o := op{key: rowKey, row: d.Row, etag: d.base}
	if o.row != nil {
		var err error
		if o.entity, err = encodeEntity(o.row); err != nil {
			return op{}, err
		}
	}
	return o, nil
}

// batches splits ops into transactions of at most maxBatch entities and maxBatchBytes.
func batches(ops []op) [][]op {
	var out [][]op
	for len(ops) > 0 {
		n, size := 0, 0
		for n < len(ops) && n < maxBatch && (n == 0 || size+len(ops[n].entity) <= maxBatchBytes) {
			size += len(ops[n].entity)
			n++
		}
		out = append(out, ops[:n])
		ops = ops[n:]
	}
	return out
}

// applyOne writes one row; when its condition fails, it reads the row again, decides the object's
// observations again against it, and writes what that decides (nothing when the row is newer).
func (s *Store) applyOne(ctx context.Context, partition string, o op, obs []Observation) error {
	for range maxRetries {
		err := s.b.apply(ctx, partition, o)
		if !errors.Is(err, errConflict) {
			return err
		}
		rows, err := s.b.get(ctx, partition, []string{o.key})
		if err != nil {
			return err
		}
		current := map[key]*Record{}
		if r := rows[o.key]; r != nil {
			current[key{partition, o.key}] = r
		}
		ds, err := decideChain(obs, current, s.mode)
		if err != nil {
			return err
		}
		var last *Decision
		for i := range ds {
			if ds[i].Write {
				last = &ds[i]
			}
		}
		if last == nil || (last.Row == nil && last.base == "") {
			logctx.From(ctx).Debug("objectstate: row moved by another writer; nothing left to write", "partition", partition, "id", o.key)
			return nil
		}
		if o, err = newOp(o.key, last); err != nil {
			return err
		}
	}
	return fmt.Errorf("objectstate: %s/%s kept changing under %d attempts to write it", partition, o.key, maxRetries)
}

// countingPolicy counts every request sent, retries included.
type countingPolicy struct{ s *Store }

func (p countingPolicy) Do(req *policy.Request) (*http.Response, error) {
	p.s.count(req.Raw().Context(), 1)
	return req.Next()
}

func modeOrDefault(m Mode) Mode {
	if m == "" {
		return Suppress
	}
	return m
}

// Get returns the stored row of one object, or nil when there is none (one read request).
func (s *Store) Get(ctx context.Context, collection, id string) (*Record, error) {
	rows, err := s.b.get(ctx, collection, []string{rowKey(id)})
	if err != nil {
		return nil, err
	}
	return rows[rowKey(id)], nil
}
