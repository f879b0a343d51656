// Package mailbox is the mailboxes family's behaviour (family.Mailboxes): how a set of mailbox items
// (messages, calendar events) is read by id, across mailboxes, in $batches of up to 20; what a read says
// happened to an item; and the catch-up of one mailbox after Graph says it missed notifications. The queue
// worker only orchestrates these steps.
package mailbox

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/directory"
	"github.com/graphwebhooks/graph-webhooks-go/internal/family"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
)

// Item is one mailbox item to read.
type Item struct {
	User string // the mailbox: a user object id
	Kind family.Kind
	ID   string // the message or event id
}

// Path is the item's Graph path, /users/{user}/messages/{id} (or events), with both ids checked against
// their grammar and escaped.
func Path(it Item) (string, error) {
	if !graph.IsGUID(it.User) {
		return "", fmt.Errorf("mailbox %q is not a user object id (a GUID)", it.User)
	}
	if !family.IsItemID(it.ID) {
		return "", fmt.Errorf("%q is not an Outlook item id", it.ID)
	}
	if _, ok := family.MailboxKind(it.Kind.Collection); !ok {
		return "", fmt.Errorf("%q is not a mailbox kind", it.Kind.Collection)
	}
	return "/users/" + url.PathEscape(strings.ToLower(it.User)) + "/" + it.Kind.Collection + "/" + url.PathEscape(it.ID), nil
}

// Reader reads mailbox items through Graph's $batch; it shares the directory's outcomes, classification
// and throttling gate, so the worker settles a mailbox read as it settles any other.
type Reader struct {
	Graph directory.Graph
	// Gate is the process's throttling gate: a throttled answer closes it, and while it is closed nothing
	// is sent. Nil means no gate.
	Gate *directory.Gate
	// Now is the clock (required).
	Now func() time.Time
	// ThrottleDefault closes the gate after a 429 that gave no Retry-After; 0 means 30 s.
	ThrottleDefault time.Duration
}

func (r *Reader) now() time.Time { return r.Now() }

// Read reads items of any mailboxes and kinds, each selecting sel(kind), 20 to a $batch. The result has
// one directory.Read per item, in order: Found (with the selected properties) or Gone (404: deleted, or
// moved, which gives a message a new id), or why not (Deferred while the gate is closed, Throttled,
// Transient, Refused). A batch refused as a whole is returned as an error: no bad item but a bad setting
// or a missing permission.
func (r *Reader) Read(ctx context.Context, items []Item, sel func(family.Kind) []string) ([]directory.Read, error) {
	out := make([]directory.Read, len(items))
	type get struct {
		i    int
		path string
	}
	var gets []get
	for i, it := range items {
		out[i].ID = it.ID
		p, err := Path(it)
		if err != nil {
			out[i].Outcome, out[i].Err = directory.Refused, err
			continue
		}
		gets = append(gets, get{i, p})
	}
	for start := 0; start < len(gets); start += graph.MaxBatch {
		chunk := gets[start:min(start+graph.MaxBatch, len(gets))]
		fail := func(o directory.Outcome, ra time.Duration, err error) {
			for _, g := range chunk {
				out[g.i] = directory.Read{ID: out[g.i].ID, Outcome: o, RetryAfter: ra, Err: err}
			}
		}
		if err := ctx.Err(); err != nil {
			if !errors.Is(err, context.DeadlineExceeded) {
				return nil, err
			}
			fail(directory.Transient, 0, err)
			continue
		}
		if wait := r.Gate.Remaining(r.now()); wait > 0 {
			fail(directory.Deferred, wait, nil)
			continue
		}
		bg := make([]graph.Get, len(chunk))
		for j, g := range chunk {
			bg[j] = graph.Get{Path: g.path, Select: sel(items[g.i].Kind)}
		}
		res, err := r.Graph.Batch(ctx, bg)
		if err != nil {
			o, ra := directory.Classify(err)
			if o == directory.Refused {
				return nil, fmt.Errorf("reading %d mailbox items: %w", len(chunk), err)
			}
			r.closeFor(o, ra)
			fail(o, ra, err)
			continue
		}
		if res.RetryAfter > 0 {
			r.Gate.CloseUntil(r.now().Add(res.RetryAfter))
		}
		for j, g := range chunk {
			it := res.Items[j]
			o, ra := directory.Classify(it.Err)
			if o == directory.Throttled && ra == 0 {
				ra = res.RetryAfter
			}
			r.closeFor(o, ra)
			out[g.i] = directory.Read{ID: items[g.i].ID, Outcome: o, RetryAfter: ra, Err: it.Err}
			if o == directory.Found {
				out[g.i].Object = it.Object
			}
		}
	}
	return out, nil
}

func (r *Reader) closeFor(o directory.Outcome, retryAfter time.Duration) {
	if o != directory.Throttled {
		return
	}
	if retryAfter <= 0 {
		retryAfter = r.ThrottleDefault
		if retryAfter <= 0 {
			retryAfter = 30 * time.Second
		}
	}
	r.Gate.CloseUntil(r.now().Add(retryAfter))
}

// Verdict is the one rule turning a read of a mailbox item into a change: found is created when every
// notification about it said created, else updated, with its properties; a 404 is deleted (deleted, or
// moved to another folder: a moved message has a new id, and its created arrives with it). A deleted
// notification for an item that is found is not believed: it is reported as updated. settled is false
// for the outcomes that say nothing about the item.
func Verdict(rd directory.Read, allCreated bool) (ct graph.ChangeType, obj graph.Object, settled bool) {
	switch rd.Outcome {
	case directory.Found:
		if allCreated {
			return graph.Created, rd.Object, true
		}
		return graph.Updated, rd.Object, true
	case directory.Gone:
		return graph.Deleted, nil, true
	}
	return "", nil, false
}
