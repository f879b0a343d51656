package objectstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/storagequeue"
)

// New builds a store over table (STATE_TABLE, checked by internal/config) in the account of AzureWebJobsStorage: a connection string (with
// TableEndpoint, or an account name), or the identity-based table service URL. Nothing is contacted until
// Decide or Commit; the table is created by the first Commit that needs it.
func New(s config.StorageSettings, table string, o Options) (*Store, error) {
	if table == "" {
		table = config.DefaultStateTable
	}
	tb := &tableBackend{name: table}
	st := newStore(tb, o)
	opts := &aztables.ClientOptions{ClientOptions: azcore.ClientOptions{
		Transport:        o.Transport,
		PerRetryPolicies: []policy.Policy{countingPolicy{st}, etagPolicy{}},
	}}
	svc, err := TableService(s, o.Credential, opts, "the object state")
	if err != nil {
		return nil, err
	}
	tb.svc, tb.c = svc, svc.NewClient(table)
	return st, nil
}

// TableService builds the Table service client of AzureWebJobsStorage: from a connection string (with
// TableEndpoint, or an account name), or from the identity-based table service URL with cred (nil: the
// managed identity the storage settings name). what says what is kept there, for the error when nothing is
// set. It contacts nothing. Every user of the state table builds its client here.
func TableService(s config.StorageSettings, cred azcore.TokenCredential, opts *aztables.ClientOptions, what string) (*aztables.ServiceClient, error) {
	switch {
	case s.ConnectionString != "":
		c, err := aztables.NewServiceClientFromConnectionString(s.ConnectionString.Reveal(), opts)
		if err != nil {
			// The SDK's message could quote the string, key included: keep only the fact.
			return nil, errors.New("AzureWebJobsStorage: the connection string is not usable by the table client (it needs AccountName and AccountKey, and TableEndpoint for an emulator)")
		}
		return c, nil
	case s.TableServiceURL != "":
		if cred == nil {
			var err error
			if cred, err = storagequeue.ManagedIdentity(s); err != nil {
				return nil, err
			}
		}
		c, err := aztables.NewServiceClient(s.TableServiceURL, cred, opts)
		if err != nil {
			return nil, fmt.Errorf("AzureWebJobsStorage__tableServiceUri: %w", err)
		}
		return c, nil
	case s.IsSet():
		return nil, errors.New("AzureWebJobsStorage: identity-based settings name no table service: set AzureWebJobsStorage__tableServiceUri or __accountName")
	default:
		return nil, errors.New("AzureWebJobsStorage is not set: " + what + " is kept there")
	}
}

type tableBackend struct {
	svc  *aztables.ServiceClient
	c    *aztables.Client
	name string

	mu      sync.Mutex
	created bool
}

// get reads one row with a point read, or several with one query.
func (t *tableBackend) get(ctx context.Context, partition string, keys []string) (map[string]*Record, error) {
	if len(keys) == 1 {
		r, err := t.getOne(ctx, partition, keys[0])
		if err != nil || r == nil {
			return nil, err
		}
		return map[string]*Record{keys[0]: r}, nil
	}
	conds := make([]string, len(keys))
	for i, k := range keys {
		conds[i] = "RowKey eq " + quote(k)
	}
	filter := "PartitionKey eq " + quote(partition) + " and (" + strings.Join(conds, " or ") + ")"
	out := make(map[string]*Record, len(keys))
	err := t.list(ctx, filter, nil, func(r *Record) {
		if slices.Contains(keys, r.ID) {
			out[r.ID] = r
		}
	})
	if err != nil {
		return nil, fmt.Errorf("objectstate: query %s: %w", partition, err)
	}
	return out, nil
}

// list runs a query and hands each row to f; no table is no rows.
func (t *tableBackend) list(ctx context.Context, filter string, top *int32, f func(*Record)) error {
	pager := t.c.NewListEntitiesPager(&aztables.ListEntitiesOptions{Filter: &filter, Top: top})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		var re *azcore.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusNotFound {
			return nil
		}
		if err != nil {
			return storagequeue.Scrub(err)
		}
		for _, e := range page.Entities {
			r, err := decodeEntity(e, "")
			if errors.Is(err, errCorruptRow) {
				r, err = corruptRecord(r), nil
			}
			if err != nil {
				return err
			}
			f(r)
		}
		if top != nil {
			return nil
		}
	}
	return nil
}

func (t *tableBackend) any(ctx context.Context, partition string) (bool, error) {
	one := int32(1)
	found := false
	if err := t.list(ctx, "PartitionKey eq "+quote(partition), &one, func(*Record) { found = true }); err != nil {
		return false, fmt.Errorf("objectstate: look for rows in %s: %w", partition, err)
	}
	return found, nil
}

func (t *tableBackend) getOne(ctx context.Context, partition, k string) (*Record, error) {
	resp, err := t.c.GetEntity(ctx, partition, k, nil)
	var re *azcore.ResponseError
	if errors.As(err, &re) && re.StatusCode == http.StatusNotFound {
		return nil, nil // no row, or no table yet
	}
	if err != nil {
		return nil, fmt.Errorf("objectstate: read %s/%s: %w", partition, k, storagequeue.Scrub(err))
	}
	r, err := decodeEntity(resp.Value, string(resp.ETag))
	if errors.Is(err, errCorruptRow) {
		// Starting the object over is the way out; the next write replaces the row on its ETag.
		return corruptRecord(r), nil
	}
	return r, err
}

// quote is an OData string literal.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func (t *tableBackend) submit(ctx context.Context, partition string, ops []op) ([]string, error) {
	actions := make([]aztables.TransactionAction, 0, len(ops))
	for _, o := range ops {
		a, err := action(partition, o)
		if err != nil {
			return nil, err
		}
		actions = append(actions, a)
	}
	if err := t.ensureTable(ctx); err != nil {
		return nil, err
	}
	var answer batchAnswer
	if _, err := t.c.SubmitTransaction(context.WithValue(ctx, batchAnswerKey{}, &answer), actions, nil); err != nil {
		// The SDK reports a refused entity as an error for the whole answer, without saying which: the
		// caller writes that batch entity by entity.
		return nil, fmt.Errorf("objectstate: transaction of %d rows in %s: %w", len(ops), partition, storagequeue.Scrub(err))
	}
	if len(answer.etags) != len(ops) {
		return nil, nil
	}
	for i, o := range ops {
		if o.row == nil {
			answer.etags[i] = ""
		}
	}
	return answer.etags, nil
}

func action(partition string, o op) (aztables.TransactionAction, error) {
	etag := azcore.ETag(o.etag)
	switch {
	case o.row == nil:
		e, err := json.Marshal(map[string]string{"PartitionKey": partition, "RowKey": o.key})
		return aztables.TransactionAction{ActionType: aztables.TransactionTypeDelete, Entity: e, IfMatch: &etag}, err
	case o.etag == "":
		return aztables.TransactionAction{ActionType: aztables.TransactionTypeAdd, Entity: o.entity}, nil
	}
	return aztables.TransactionAction{ActionType: aztables.TransactionTypeUpdateReplace, Entity: o.entity, IfMatch: &etag}, nil
}

func (t *tableBackend) apply(ctx context.Context, partition string, o op) (string, error) {
	if err := t.ensureTable(ctx); err != nil {
		return "", err
	}
	var err error
	var written azcore.ETag
	switch {
	case o.row == nil:
		etag := azcore.ETag(o.etag)
		_, err = t.c.DeleteEntity(ctx, partition, o.key, &aztables.DeleteEntityOptions{IfMatch: &etag})
	case o.etag == "":
		var resp aztables.AddEntityResponse
		resp, err = t.c.AddEntity(ctx, o.entity, nil)
		written = resp.ETag
	default:
		etag := azcore.ETag(o.etag)
		var resp aztables.UpdateEntityResponse
		resp, err = t.c.UpdateEntity(ctx, o.entity, &aztables.UpdateEntityOptions{IfMatch: &etag, UpdateMode: aztables.UpdateModeReplace})
		written = resp.ETag
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		switch re.StatusCode {
		case http.StatusConflict, http.StatusPreconditionFailed, http.StatusNotFound:
			// Inserted meanwhile, changed meanwhile, or deleted meanwhile.
			return "", errConflict
		}
	}
	if err != nil {
		return "", fmt.Errorf("objectstate: write %s/%s: %w", partition, o.key, storagequeue.Scrub(err))
	}
	return string(written), nil
}

// ensureTable creates the table once per store; an existing table is fine.
func (t *tableBackend) ensureTable(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.created {
		return nil
	}
	_, err := t.svc.CreateTable(ctx, t.name, nil)
	var re *azcore.ResponseError
	if err != nil && !(errors.As(err, &re) && re.ErrorCode == string(aztables.TableAlreadyExists)) {
		return fmt.Errorf("objectstate: create table %s: %w", t.name, storagequeue.Scrub(err))
	}
	t.created = true
	return nil
}
