// Package directorytest is an in-memory Graph for tests of the code that reads directory objects: live and
// deleted objects by path, answers overridden per path, and a count of $batch calls.
package directorytest

import (
	"context"
	"net/http"
	"strings"
	"sync"

	"github.com/graphwebhooks/graph-webhooks-go/internal/family"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
)

// FakeGraph is an in-memory Graph (directory.Graph) for tests of the packages that read objects: live and
// deleted objects by path ("/users/{id}", "/directory/deletedItems/{id}"), answers overridden per path, and a count of
// $batch calls. It is safe for concurrent use.
type FakeGraph struct {
	mu      sync.Mutex
	objects map[string]graph.Object // lower-cased path → object
	answers map[string]error        // lower-cased path → the error to answer with
	batches [][]graph.Get
	// BatchErr, when set, fails whole batches.
	BatchErr error
}

// NewFakeGraph returns an empty FakeGraph.
func NewFakeGraph() *FakeGraph {
	return &FakeGraph{objects: map[string]graph.Object{}, answers: map[string]error{}}
}

// Put makes an object live in a collection.
func (f *FakeGraph) Put(k family.Kind, o graph.Object) {
	p, _ := graph.ObjectPath(k.Collection, o.ID())
	f.set(p, o)
}

// PutDeleted puts an object in deletedItems (and takes it out of its collection).
func (f *FakeGraph) PutDeleted(k family.Kind, o graph.Object) {
	p, _ := graph.ObjectPath(k.Collection, o.ID())
	d, _ := graph.DeletedPath(o.ID())
	f.mu.Lock()
	delete(f.objects, strings.ToLower(p))
	f.mu.Unlock()
	f.set(d, o)
}

// Remove deletes an object from everywhere.
func (f *FakeGraph) Remove(k family.Kind, id string) {
	p, _ := graph.ObjectPath(k.Collection, id)
	d, _ := graph.DeletedPath(id)
	f.mu.Lock()
	delete(f.objects, strings.ToLower(p))
	delete(f.objects, strings.ToLower(d))
	f.mu.Unlock()
}

// Answer makes every read of path fail with err (nil restores normal answers).
func (f *FakeGraph) Answer(path string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.answers, strings.ToLower(path))
		return
	}
	f.answers[strings.ToLower(path)] = err
}

// Batches returns the batches sent so far.
func (f *FakeGraph) Batches() [][]graph.Get {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]graph.Get(nil), f.batches...)
}

func (f *FakeGraph) set(path string, o graph.Object) {
	f.mu.Lock()
	f.objects[strings.ToLower(path)] = o
	f.mu.Unlock()
}

// Batch answers like Graph's $batch: one item per GET, 404 for what it does not hold.
func (f *FakeGraph) Batch(ctx context.Context, gets []graph.Get) (graph.BatchResult, error) {
	if err := ctx.Err(); err != nil {
		return graph.BatchResult{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.batches = append(f.batches, append([]graph.Get(nil), gets...))
	if f.BatchErr != nil {
		return graph.BatchResult{}, f.BatchErr
	}
	res := graph.BatchResult{Items: make([]graph.BatchItem, len(gets))}
	for i, g := range gets {
		key := strings.ToLower(g.Path)
		it := graph.BatchItem{Path: g.Path}
		switch o, ok := f.objects[key]; {
		case f.answers[key] != nil:
			it.Err = f.answers[key]
			if ra := graph.RetryAfterOf(it.Err); ra > res.RetryAfter {
				res.RetryAfter = ra
			}
		case ok:
			it.Object = o
		default:
			it.Err = &graph.Error{Op: "get " + g.Path, Status: http.StatusNotFound, Kind: graph.KindNotFound, Code: "Request_ResourceNotFound"}
		}
		res.Items[i] = it
	}
	return res, nil
}
