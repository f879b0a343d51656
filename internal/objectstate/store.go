// Package objectstate keeps the last emitted state of each directory object (users, groups) and decides,
// for each new observation of an object, whether its change event carries anything new: which properties
// changed and from what, or nothing at all (then the event is suppressed).
//
// The state lives in Azure Table storage, table STATE_TABLE (default graphstate) of AzureWebJobsStorage:
// partition = collection, a hyphen and a shard of the id ("users-7"; see Shards), row = the object id in
// lower case. Rows of earlier versions, one partition per collection ("users", "groups"), are still
// read, and moved to their shard when their object is next committed. A row holds the canonical
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
// A Store caches the rows it committed (bounded; see Options): a decision made from a cached row costs no
// read, and the commit, conditional on the cached ETag, finds out when another instance wrote the row
// meanwhile. The decision is then made again against the row as read; an observation it now emits, which
// had been suppressed, comes back to the caller as a *Redecided: its event is written, then committed.
//
// NewMemoryTable gives the same Store over an in-memory table with ETags and transactions modelled, for
// tests that need no storage.
package objectstate

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
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

// maxQueryKeys is how many rows one query reads: Table storage allows 15 comparisons in a filter, one of
// them the PartitionKey.
const maxQueryKeys = 14

// Options adjusts a Store.
type Options struct {
	// Mode is EVENTS_UNCHANGED; empty means Suppress.
	Mode Mode
	// Transport and Credential are for the Table service (see New).
	Transport  policy.Transporter     // nil: the SDK's default
	Credential azcore.TokenCredential // identity-based settings; nil: the app's managed identity
	// ReadConcurrency bounds concurrent read requests in Decide; 0 means 16.
	ReadConcurrency int
	// PointReads makes Decide read every row with its own point read. By default, two or more rows of
	// one partition are read with one query per 14 of them (PartitionKey eq … and (RowKey eq … or …)):
	// a page of 200 objects spread over 16 partitions is read in about 20 requests instead of 200. Table
	// storage serves such a filter by scanning the partition (Microsoft's Table design guide, "Design for
	// querying"), so its cost grows with the partition, a sixteenth of the collection; a point read costs
	// the same whatever the table's size.
	PointReads bool
	// CacheEntries and CacheBytes bound the cache of rows this process committed (0: the defaults,
	// DefaultCacheEntries and DefaultCacheBytes; negative: no cache). A decision made from a cached row
	// costs no read; the commit, conditional on the cached ETag, checks it.
	CacheEntries int
	CacheBytes   int
}

// Store decides observations against the stored rows and moves the rows. It is safe for concurrent use.
type Store struct {
	b        backend
	mode     Mode
	conc     int
	points   bool
	cache    *cache
	requests atomic.Int64

	mu     sync.Mutex
	legacy map[string]bool // collection → whether its one-partition layout still holds rows (probed once)
}

func newStore(b backend, o Options) *Store {
	s := &Store{b: b, mode: modeOrDefault(o.Mode), conc: o.ReadConcurrency, points: o.PointReads,
		cache: newCache(o.CacheEntries, o.CacheBytes), legacy: map[string]bool{}}
	if s.conc <= 0 {
		s.conc = 16
	}
	return s
}

// backend is what Store needs of a table. Each method sends one request.
type backend interface {
	// get reads the rows of keys (distinct, at most maxQueryKeys) in partition: a point read for one key,
	// a query for more. Absent rows are absent from the map; the records' Collection is not set.
	get(ctx context.Context, partition string, keys []string) (map[string]*Record, error)
	// any reports whether partition holds any row.
	any(ctx context.Context, partition string) (bool, error)
	// submit applies ops (distinct keys of one partition, at most maxBatch) all or none, and returns the
	// new ETag of each op's row in order ("" for a delete), or nil when the answer did not say. An op
	// whose condition fails fails them all: errConflict, or another error for other refusals.
	submit(ctx context.Context, partition string, ops []op) ([]string, error)
	// apply applies one op and returns the row's new ETag ("" for a delete); a failed condition is
	// errConflict.
	apply(ctx context.Context, partition string, o op) (string, error)
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

// Redecided is returned by Commit, possibly joined with another error, when rows had moved since Decide
// (another instance wrote them, or this process's cache was behind) and deciding the observations again
// against the rows as they are now emits some that had been suppressed. Their rows have not moved: the
// caller writes the events of the Decisions whose Emit is set, then commits Decisions. Indexes[i] is the
// index, in the slice given to Commit, of the observation Decisions[i] decides again.
type Redecided struct {
	Indexes   []int
	Decisions []Decision
}

func (r *Redecided) Error() string {
	return fmt.Sprintf("objectstate: %d observation(s) decided again against rows that had moved; their events are to be written before they are committed", len(r.Decisions))
}

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

// key is a row's place: its partition (see partitionOf) and row key (the lower-case id).
type key struct{ partition, row string }

func keyOf(collection, id string) key {
	row := rowKey(id)
	return key{partitionOf(collection, row), row}
}

// Decide decides each observation against its object's stored row: from this process's cache of rows it
// committed, else read (grouped per partition, see Options.PointReads). Observations of the same object
// are decided in the order given, each against the row the ones before it leave. It writes nothing: see
// the package documentation for the order of Decide, event writes and Commit. An invalid observation
// fails the whole call with ErrInvalid, before any request.
func (s *Store) Decide(ctx context.Context, obs []Observation) ([]Decision, error) {
	for i := range obs {
		if err := obs[i].validate(); err != nil {
			return nil, err
		}
	}
	current := map[key]*Record{}
	need := map[string][]string{}
	collection := map[key]string{}
	for _, o := range obs {
		k := keyOf(o.Collection, o.ID)
		if _, seen := collection[k]; seen {
			continue
		}
		collection[k] = o.Collection
		if r := s.cache.get(k); r != nil {
			current[k] = r
			continue
		}
		need[k.partition] = append(need[k.partition], k.row)
	}
	rows, err := s.read(ctx, need)
	if err != nil {
		return nil, err
	}
	for k, r := range rows {
		r.Collection = collection[k]
		current[k] = r
	}
	legacy, err := s.readLegacy(ctx, need, collection, current)
	if err != nil {
		return nil, err
	}
	return decideChain(obs, current, legacy, s.mode)
}

// read reads the rows of need (partition → row keys), one request per point read or query, at most
// s.conc at once.
func (s *Store) read(ctx context.Context, need map[string][]string) (map[key]*Record, error) {
	type unit struct {
		partition string
		keys      []string
	}
	var units []unit
	for p, keys := range need {
		n := maxQueryKeys
		if s.points || len(keys) == 1 {
			n = 1
		}
		for len(keys) > 0 {
			c := keys[:min(n, len(keys))]
			keys = keys[len(c):]
			units = append(units, unit{p, c})
		}
	}
	out := map[key]*Record{}
	if len(units) == 0 {
		return out, nil
	}
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	sem := make(chan struct{}, s.conc)
	for _, u := range units {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			rows, err := s.b.get(ctx, u.partition, u.keys)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if first == nil {
					first = err
				}
				return
			}
			for row, r := range rows {
				out[key{u.partition, row}] = r
			}
		})
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	return out, nil
}

// readLegacy looks for the rows the sharded layout lacks in the one-partition layout of earlier versions
// (see legacyCollections), adds those it finds to current as rows not stored yet (ETag ""), and returns
// their ETags in the old layout, so that Commit moves them.
func (s *Store) readLegacy(ctx context.Context, need map[string][]string, collection map[key]string, current map[key]*Record) (map[key]string, error) {
	old := map[string][]string{}
	for p, rows := range need {
		for _, row := range rows {
			k := key{p, row}
			c := collection[k]
			if current[k] != nil || !legacyCollections[c] {
				continue
			}
			present, err := s.legacyPresent(ctx, c)
			if err != nil {
				return nil, err
			}
			if present {
				old[c] = append(old[c], row)
			}
		}
	}
	if len(old) == 0 {
		return nil, nil
	}
	rows, err := s.read(ctx, old)
	if err != nil {
		return nil, err
	}
	etags := map[key]string{}
	for lk, r := range rows {
		k := keyOf(lk.partition, lk.row)
		etags[k] = r.ETag
		r.Collection, r.ETag = lk.partition, ""
		current[k] = r
	}
	return etags, nil
}

// legacyPresent reports whether collection's one-partition layout holds rows, asking the table once per
// store: rows of that layout are no longer written, so once it is empty it stays empty. (An instance of
// an earlier version still running during a deployment could write one; its object is then decided as
// new once, which emits an event rather than losing one.)
func (s *Store) legacyPresent(ctx context.Context, collection string) (bool, error) {
	s.mu.Lock()
	present, known := s.legacy[collection]
	s.mu.Unlock()
	if known {
		return present, nil
	}
	present, err := s.b.any(ctx, collection)
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	s.legacy[collection] = present
	s.mu.Unlock()
	return present, nil
}

// decideChain decides obs in order against current (updated as it goes). Every decision of one object
// carries the ETag of the row as read, since Commit writes only the last row against that, and the ETag
// of its row in the one-partition layout, if any.
func decideChain(obs []Observation, current map[key]*Record, legacy map[key]string, mode Mode) ([]Decision, error) {
	base := map[key]string{}
	for k, r := range current {
		base[k] = r.ETag
	}
	out := make([]Decision, 0, len(obs))
	for _, o := range obs {
		k := keyOf(o.Collection, o.ID)
		d, err := Decide(current[k], o, mode)
		if err != nil {
			return nil, err
		}
		d.base, d.legacy = base[k], legacy[k]
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

// plan is what Commit does for one object.
type plan struct {
	idx  []int         // indexes of its decisions in Commit's slice
	obs  []Observation // its observations, in order
	emit []bool        // whether each was emitted
	last *Decision     // the last decision that writes, or that moves a row of the one-partition layout
	// legacy is the ETag of its row in the one-partition layout, deleted once the sharded row is written.
	legacy string
	moved  bool // the sharded row is as the decisions say (written, or nothing to write)
}

// Commit moves the rows as decisions say, after the caller wrote the events (see the package
// documentation). Rows of one partition are written in Table transactions of up to 100; when one entity's
// condition fails the transaction, that batch is written entity by entity, so the others are kept. An
// object whose row changed since Decide is read again and its observations decided again: when that
// emits none of the suppressed ones, the event already written stands and a row newer than the
// observation is left alone; otherwise its row is left as it is and Commit returns a *Redecided for the
// caller to write those events and commit again. A row found in the one-partition layout is written to
// its shard, then deleted from the old layout.
func (s *Store) Commit(ctx context.Context, ds []Decision) error {
	plans := map[key]*plan{}
	var order []key
	for i := range ds {
		d := &ds[i]
		k := keyOf(d.Observation.Collection, d.Observation.ID)
		p := plans[k]
		if p == nil {
			p = &plan{legacy: d.legacy}
			plans[k] = p
			order = append(order, k)
		}
		p.idx = append(p.idx, i)
		p.obs = append(p.obs, d.Observation)
		p.emit = append(p.emit, d.Emit)
		if d.Write || (d.legacy != "" && d.Row != nil) {
			p.last = d
		}
	}
	byPartition := map[string][]op{}
	for _, k := range order {
		p := plans[k]
		if p.last == nil || (p.last.Row == nil && p.last.base == "") {
			p.moved = true
			continue
		}
		o, err := newOp(k, p.last)
		if err != nil {
			return err
		}
		byPartition[k.partition] = append(byPartition[k.partition], o)
	}
	// Partitions are written at once (at most ReadConcurrency of them): a page of 200 objects touches all
	// 16 shards, and one transaction after another would wait out 16 round trips.
	late := &lateDecisions{}
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	sem := make(chan struct{}, s.conc)
	for _, partition := range slices.Sorted(maps.Keys(byPartition)) {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := s.commitPartition(ctx, partition, byPartition[partition], plans, late); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if first != nil {
		return errors.Join(first, late.orNil())
	}
	var moves []key
	for _, k := range order {
		if p := plans[k]; p.legacy != "" && p.moved {
			moves = append(moves, k)
		}
	}
	if err := s.dropLegacy(ctx, moves, plans); err != nil {
		return errors.Join(err, late.orNil())
	}
	if err := late.orNil(); err != nil {
		return err
	}
	return nil
}

// lateDecisions collects the Redecided of a Commit whose partitions are written concurrently.
type lateDecisions struct {
	mu sync.Mutex
	r  Redecided
}

func (l *lateDecisions) add(idx []int, ds []Decision) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.r.Indexes = append(l.r.Indexes, idx...)
	l.r.Decisions = append(l.r.Decisions, ds...)
}

func (l *lateDecisions) orNil() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.r.Decisions) == 0 {
		return nil
	}
	r := l.r
	return &r
}

// commitPartition writes one partition's ops in transactions; a refused transaction is written op by op.
// Each op touches its own plan only, so partitions can be committed concurrently.
func (s *Store) commitPartition(ctx context.Context, partition string, ops []op, plans map[key]*plan, late *lateDecisions) error {
	for _, batch := range batches(ops) {
		etags, err := s.b.submit(ctx, partition, batch)
		if err == nil {
			for i, o := range batch {
				k := key{partition, o.key}
				plans[k].moved = true
				if etags == nil || o.row == nil {
					s.cache.drop(k)
					continue
				}
				r := *o.row
				r.ETag = etags[i]
				s.cache.put(k, &r)
			}
			continue
		}
		if ctx.Err() != nil {
			return fmt.Errorf("objectstate: write %s: %w", partition, err)
		}
		logctx.From(ctx).Debug("objectstate: transaction refused; writing its rows one by one", "partition", partition, "rows", len(batch), "error", err)
		for _, o := range batch {
			if err := s.applyOne(ctx, partition, o, plans[key{partition, o.key}], late); err != nil {
				return err
			}
		}
	}
	return nil
}

// dropLegacy deletes the one-partition rows of objects whose sharded row is written, each on the ETag it
// was read with: a row another instance moved or deleted meanwhile is left to it.
func (s *Store) dropLegacy(ctx context.Context, moves []key, plans map[key]*plan) error {
	byCollection := map[string][]op{}
	for _, k := range moves {
		c := plans[k].obs[0].Collection
		byCollection[c] = append(byCollection[c], op{key: k.row, etag: plans[k].legacy})
	}
	for _, c := range slices.Sorted(maps.Keys(byCollection)) {
		for _, batch := range batches(byCollection[c]) {
			if _, err := s.b.submit(ctx, c, batch); err == nil {
				continue
			}
			for _, o := range batch {
				if _, err := s.b.apply(ctx, c, o); err != nil && !errors.Is(err, errConflict) {
					return err
				}
			}
		}
	}
	return nil
}

func newOp(k key, d *Decision) (op, error) {
	o := op{key: k.row, row: d.Row, etag: d.base}
	if o.row != nil {
		var err error
		if o.entity, err = encodeEntity(k.partition, o.row); err != nil {
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

// applyOne writes one row; when its condition fails, it reads the row again and decides the object's
// observations again against it. When that emits an observation that had been suppressed, the row is
// left alone and the new decisions go to late; otherwise what they decide is written (nothing when the
// row is newer).
func (s *Store) applyOne(ctx context.Context, partition string, o op, p *plan, late *lateDecisions) error {
	k := key{partition, o.key}
	for range maxRetries {
		etag, err := s.b.apply(ctx, partition, o)
		if err == nil {
			p.moved = true
			if o.row == nil {
				s.cache.drop(k)
			} else {
				r := *o.row
				r.ETag = etag
				s.cache.put(k, &r)
			}
			return nil
		}
		s.cache.drop(k)
		if !errors.Is(err, errConflict) {
			return err
		}
		rows, err := s.b.get(ctx, partition, []string{o.key})
		if err != nil {
			return err
		}
		current := map[key]*Record{}
		if r := rows[o.key]; r != nil {
			r.Collection = p.obs[0].Collection
			current[k] = r
		}
		ds, err := decideChain(p.obs, current, nil, s.mode)
		if err != nil {
			return err
		}
		for i := range ds {
			if ds[i].Emit && !p.emit[i] {
				logctx.From(ctx).Debug("objectstate: row moved by another writer; a suppressed observation is news against it", "partition", partition, "id", o.key)
				late.add(p.idx, ds)
				return nil
			}
		}
		var last *Decision
		for i := range ds {
			if ds[i].Write {
				last = &ds[i]
			}
		}
		if last == nil || (last.Row == nil && last.base == "") {
			logctx.From(ctx).Debug("objectstate: row moved by another writer; nothing left to write", "partition", partition, "id", o.key)
			p.moved = true
			return nil
		}
		if o, err = newOp(k, last); err != nil {
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

// Get returns the stored row of one object, or nil when there is none. It reads the table, not the cache.
func (s *Store) Get(ctx context.Context, collection, id string) (*Record, error) {
	k := keyOf(collection, id)
	need := map[string][]string{k.partition: {k.row}}
	rows, err := s.read(ctx, need)
	if err != nil {
		return nil, err
	}
	current := map[key]*Record{}
	if r := rows[k]; r != nil {
		r.Collection = collection
		return r, nil
	}
	if _, err := s.readLegacy(ctx, need, map[key]string{k: collection}, current); err != nil {
		return nil, err
	}
	return current[k], nil
}
