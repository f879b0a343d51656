package checkpoint

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// SelectHash names a GRAPH_USER_SELECT independently of order and case (Graph's property names are
// case-insensitive): the first 64 bits of SHA-256 over the sorted, lower-cased, de-duplicated names.
func SelectHash(sel []string) string {
	names := make([]string, 0, len(sel))
	for _, p := range sel {
		if p = strings.ToLower(strings.TrimSpace(p)); p != "" {
			names = append(names, p)
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	sum := sha256.Sum256([]byte(strings.Join(names, ",")))
	return hex.EncodeToString(sum[:8])
}

// Memory is an in-process store with the same ETag semantics as Store, for tests of code that uses a
// checkpoint without storage. It is safe for concurrent use.
type Memory struct {
	mu   sync.Mutex
	seq  int
	data map[string]memEntry
}

type memEntry struct {
	b    []byte
	etag ETag
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory { return &Memory{data: map[string]memEntry{}} }

// Load behaves like Store.Load.
func (m *Memory) Load(_ context.Context, resource string) (Checkpoint, ETag, error) {
	m.mu.Lock()
	e, ok := m.data[BlobName(resource)]
	m.mu.Unlock()
	if !ok {
		return Checkpoint{V: Version, Resource: resource}, "", nil
	}
	cp, err := decode(e.b, resource)
	if err != nil {
		return Checkpoint{}, e.etag, err
	}
	return cp, e.etag, nil
}

// Save behaves like Store.Save.
func (m *Memory) Save(_ context.Context, resource string, cp Checkpoint, etag ETag) (ETag, error) {
	cp.V, cp.Resource = Version, resource
	b, err := json.Marshal(cp)
	if err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.data[BlobName(resource)]
	if (etag == "" && ok) || (etag != "" && (!ok || e.etag != etag)) {
		return "", ErrConflict
	}
	m.seq++
	e = memEntry{b: b, etag: ETag(`"m` + strconv.Itoa(m.seq) + `"`)}
	m.data[BlobName(resource)] = e
	return e.etag, nil
}
