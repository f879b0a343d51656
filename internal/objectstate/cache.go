package objectstate

import (
	"container/list"
	"sync"
)

// Cache bounds: a cached row costs its state, its keys and ETag, and about entryOverhead bytes of
// bookkeeping. The defaults hold a pass over 20,000 typical users (a few hundred bytes of state each)
// in about 16 MiB, a quarter of the handler's memory budget.
const (
	DefaultCacheEntries = 50_000
	DefaultCacheBytes   = 16 << 20
	entryOverhead       = 200
)

// cache holds the rows this process committed most recently, least recently used first out. A cached
// row may be stale (another instance wrote since): a decision made from it is checked by the commit,
// which is conditional on the cached ETag; a refused commit drops the entry and reads the row again
// (see Store.Commit). Only rows written here, with the ETag the write returned, are cached.
type cache struct {
	maxEntries int
	maxBytes   int

	mu    sync.Mutex
	bytes int
	lru   *list.List // of *cacheEntry, most recent at the front
	byKey map[key]*list.Element
}

type cacheEntry struct {
	k    key
	r    *Record
	size int
}

// newCache returns nil (no cache) when either bound is negative.
func newCache(entries, bytes int) *cache {
	if entries < 0 || bytes < 0 {
		return nil
	}
	if entries == 0 {
		entries = DefaultCacheEntries
	}
	if bytes == 0 {
		bytes = DefaultCacheBytes
	}
	return &cache{maxEntries: entries, maxBytes: bytes, lru: list.New(), byKey: map[key]*list.Element{}}
}

// get returns a copy of the cached row, or nil.
func (c *cache) get(k key) *Record {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el := c.byKey[k]
	if el == nil {
		return nil
	}
	c.lru.MoveToFront(el)
	r := *el.Value.(*cacheEntry).r
	return &r
}

// put caches r (a row as stored, with its ETag) under k. A row without ETag or without its state (kept
// as a hash only) is not cached: a decision against it could not say what changed.
func (c *cache) put(k key, r *Record) {
	if c == nil {
		return
	}
	if r == nil || r.ETag == "" || (r.State == nil && r.StateHash != "") {
		c.drop(k)
		return
	}
	cp := *r
	size := entryOverhead + len(cp.State) + len(cp.ID) + len(cp.ETag) + len(k.partition)
	c.mu.Lock()
	defer c.mu.Unlock()
	if el := c.byKey[k]; el != nil {
		c.remove(el)
	}
	if size > c.maxBytes {
		return
	}
	c.byKey[k] = c.lru.PushFront(&cacheEntry{k: k, r: &cp, size: size})
	c.bytes += size
	for c.lru.Len() > c.maxEntries || c.bytes > c.maxBytes {
		c.remove(c.lru.Back())
	}
}

// drop forgets k.
func (c *cache) drop(k key) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el := c.byKey[k]; el != nil {
		c.remove(el)
	}
}

func (c *cache) remove(el *list.Element) {
	e := el.Value.(*cacheEntry)
	c.lru.Remove(el)
	delete(c.byKey, e.k)
	c.bytes -= e.size
}

// len is the number of cached rows and their accounted bytes.
func (c *cache) len() (int, int) {
	if c == nil {
		return 0, 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len(), c.bytes
}
