package objectstate

import (
	"context"
	"fmt"
	"sync"
)

// MemoryTable is an in-memory stand-in for the state table: ETags, conditional writes and all-or-nothing
// transactions behave as the Table service's do, so pipeline tests need no storage. Several stores may
// share one table, as several workers share one.
type MemoryTable struct {
	mu   sync.Mutex
	seq  int
	rows map[key]*Record
}

// NewMemoryTable returns an empty table.
func NewMemoryTable() *MemoryTable { return &MemoryTable{rows: map[key]*Record{}} }

// Store returns a store over t with its own request count, counted as the Table store would send them:
// one per point read or query, one per transaction or single write.
func (t *MemoryTable) Store(o Options) *Store {
	m := &memBackend{t: t}
	s := newStore(m, o)
	m.s = s
	return s
}

type memBackend struct {
	t *MemoryTable
	s *Store
}

func (m *memBackend) get(ctx context.Context, p string, keys []string) (map[string]*Record, error) {
	m.s.count(ctx, 1)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.t.mu.Lock()
	defer m.t.mu.Unlock()
	out := map[string]*Record{}
	for _, k := range keys {
		if r := m.t.rows[key{p, k}]; r != nil {
			c := *r
			out[k] = &c
		}
	}
	return out, nil
}

func (m *memBackend) any(ctx context.Context, p string) (bool, error) {
	m.s.count(ctx, 1)
	if err := ctx.Err(); err != nil {
		return false, err
	}
	m.t.mu.Lock()
	defer m.t.mu.Unlock()
	for k := range m.t.rows {
		if k.partition == p {
			return true, nil
		}
	}
	return false, nil
}

func (m *memBackend) submit(ctx context.Context, p string, ops []op) ([]string, error) {
	m.s.count(ctx, 1)
	return m.t.write(ctx, p, ops)
}

func (m *memBackend) apply(ctx context.Context, p string, o op) (string, error) {
	m.s.count(ctx, 1)
	etags, err := m.t.write(ctx, p, []op{o})
	if err != nil {
		return "", err
	}
	return etags[0], nil
}

// entityLimit is Table storage's largest entity.
const entityLimit = 1 << 20

// write applies ops all or none, checking every condition first, and returns the rows' new ETags.
func (t *MemoryTable) write(ctx context.Context, p string, ops []op) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, o := range ops {
		r := t.rows[key{p, o.key}]
		switch {
		case o.etag == "" && o.row == nil:
			return nil, fmt.Errorf("objectstate: delete of %s/%s without an ETag", p, o.key)
		case o.etag == "" && r != nil, o.etag != "" && (r == nil || r.ETag != o.etag):
			return nil, errConflict
		case len(o.entity) > entityLimit:
			return nil, fmt.Errorf("objectstate: row %s/%s is larger than an entity may be", p, o.key)
		}
	}
	etags := make([]string, len(ops))
	for i, o := range ops {
		if o.row == nil {
			delete(t.rows, key{p, o.key})
			continue
		}
		t.seq++
		r := *o.row
		r.ID = o.key
		r.ETag = fmt.Sprintf(`W/"mem%d"`, t.seq)
		t.rows[key{p, o.key}] = &r
		etags[i] = r.ETag
	}
	return etags, nil
}
