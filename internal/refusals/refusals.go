// Package refusals keeps Graph's refusals to subscribe to a mailbox between timer runs: Graph's own list
// says which subscriptions exist, not which creates were refused, why, and when to try again.
//
// The records live in the state table (STATE_TABLE, default graphstate) of AzureWebJobsStorage, in a
// partition of their own, PartitionKey "mailbox-refusals", one row per mailbox resource: RowKey is the
// user id and the resource, "{user-id}_messages" or "{user-id}_events" (Table keys may not hold '/').
// The rows are few (one per refused mailbox), so a run reads the whole partition with one query.
package refusals

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/objectstate"
	"github.com/graphwebhooks/graph-webhooks-go/internal/storagequeue"
	"github.com/graphwebhooks/graph-webhooks-go/internal/subscription"
)

// Partition is the state table's partition of the refusal rows.
const Partition = "mailbox-refusals"

// Options adjusts a Store.
type Options struct {
	Transport  policy.Transporter     // nil: the SDK's default
	Credential azcore.TokenCredential // identity-based settings; nil: the app's managed identity
}

// Store is a subscription.RefusalStore on Table storage. It is safe for concurrent use.
type Store struct {
	svc  *aztables.ServiceClient
	c    *aztables.Client
	name string

	mu      sync.Mutex
	created bool
}

var _ subscription.RefusalStore = (*Store)(nil)

// New builds a store over table (STATE_TABLE) in the account of AzureWebJobsStorage: a connection string
// (with TableEndpoint, or an account name), or the identity-based table service URL. Nothing is contacted
// until a call; the table is created by the first write that needs it.
func New(s config.StorageSettings, table string, o Options) (*Store, error) {
	if table == "" {
		table = config.DefaultStateTable
	}
	opts := &aztables.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: o.Transport}}
	svc, err := objectstate.TableService(s, o.Credential, opts, "the record of mailbox refusals")
	if err != nil {
		return nil, err
	}
	return &Store{svc: svc, c: svc.NewClient(table), name: table}, nil
}

// RowKey is the row of a mailbox resource (users/{id}/messages → {id}_messages); "" for anything else.
func RowKey(resource string) string {
	user, kind, ok := subscription.ParseMailboxResource(resource)
	if !ok {
		return ""
	}
	return user + "_" + kind
}

func resourceOf(rowKey string) string {
	user, kind, ok := strings.Cut(rowKey, "_")
	if !ok {
		return ""
	}
	res := subscription.MailboxResource(user, kind)
	if _, _, ok := subscription.ParseMailboxResource(res); !ok {
		return ""
	}
	return res
}

// entity is a refusal row.
type entity struct {
	aztables.Entity
	Status  int
	Code    string
	Reason  string
	First   time.Time
	Last    time.Time
	Count   int
	RetryAt time.Time
}

// maxReason bounds the stored reason: Graph's messages are short, and a row holds at most 64 KiB.
const maxReason = 2000

// Refusals implements subscription.RefusalStore: the whole partition, keyed by resource. Rows that are not
// refusals (a key of another shape) are skipped.
func (s *Store) Refusals(ctx context.Context) (map[string]subscription.Refusal, error) {
	out := map[string]subscription.Refusal{}
	pager := s.c.NewListEntitiesPager(&aztables.ListEntitiesOptions{Filter: to.Ptr("PartitionKey eq '" + Partition + "'")})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		var re *azcore.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusNotFound {
			return out, nil // no table yet: nothing was ever refused
		}
		if err != nil {
			return nil, fmt.Errorf("refusals: list: %w", storagequeue.Scrub(err))
		}
		for _, b := range page.Entities {
			var e entity
			if err := json.Unmarshal(b, &e); err != nil {
				continue
			}
			res := resourceOf(e.RowKey)
			if res == "" {
				continue
			}
			out[res] = subscription.Refusal{Resource: res, Status: e.Status, Code: e.Code, Reason: e.Reason,
				First: e.First.UTC(), Last: e.Last.UTC(), Count: e.Count, RetryAt: e.RetryAt.UTC()}
		}
	}
	return out, nil
}

// PutRefusal implements subscription.RefusalStore (an upsert).
func (s *Store) PutRefusal(ctx context.Context, r subscription.Refusal) error {
	key := RowKey(r.Resource)
	if key == "" {
		return fmt.Errorf("refusals: %q is not a mailbox resource", r.Resource)
	}
	if err := s.ensureTable(ctx); err != nil {
		return err
	}
	reason := r.Reason
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	b, err := json.Marshal(entity{Entity: aztables.Entity{PartitionKey: Partition, RowKey: key},
		Status: r.Status, Code: r.Code, Reason: reason, First: r.First.UTC(), Last: r.Last.UTC(), Count: r.Count, RetryAt: r.RetryAt.UTC()})
	if err != nil {
		return err
	}
	if _, err := s.c.UpsertEntity(ctx, b, &aztables.UpsertEntityOptions{UpdateMode: aztables.UpdateModeReplace}); err != nil {
		return fmt.Errorf("refusals: write %s: %w", key, storagequeue.Scrub(err))
	}
	return nil
}

// DeleteRefusal implements subscription.RefusalStore; a row already gone is fine.
func (s *Store) DeleteRefusal(ctx context.Context, resource string) error {
	key := RowKey(resource)
	if key == "" {
		return nil
	}
	_, err := s.c.DeleteEntity(ctx, Partition, key, nil)
	var re *azcore.ResponseError
	if errors.As(err, &re) && re.StatusCode == http.StatusNotFound {
		return nil
	}
	if err != nil {
		return fmt.Errorf("refusals: delete %s: %w", key, storagequeue.Scrub(err))
	}
	return nil
}

// ensureTable creates the table once per store; an existing table is fine.
func (s *Store) ensureTable(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.created {
		return nil
	}
	_, err := s.svc.CreateTable(ctx, s.name, nil)
	var re *azcore.ResponseError
	if err != nil && !(errors.As(err, &re) && re.ErrorCode == string(aztables.TableAlreadyExists)) {
		return fmt.Errorf("refusals: create table %s: %w", s.name, storagequeue.Scrub(err))
	}
	s.created = true
	return nil
}
