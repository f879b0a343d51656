package checkpoint_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"

	"github.com/graphwebhooks/graph-webhooks-go/internal/azuritetest"
	"github.com/graphwebhooks/graph-webhooks-go/internal/checkpoint"
	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
)

func TestMain(m *testing.M) {
	code := m.Run()
	azuritetest.StopShared()
	os.Exit(code)
}

var seq atomic.Int64

func settings(t *testing.T) (config.StorageSettings, *azuritetest.Azurite) {
	t.Helper()
	az := azuritetest.Shared(t)
	return config.Load(func(k string) string {
		if k == config.Storage {
			return az.ConnectionString()
		}
		return ""
	}).Storage, az
}

func container() string { return fmt.Sprintf("cp%d-%d", rand.Int64N(1e9), seq.Add(1)) }

type store interface {
	Load(ctx context.Context, resource string) (checkpoint.Checkpoint, checkpoint.ETag, error)
	Save(ctx context.Context, resource string, cp checkpoint.Checkpoint, etag checkpoint.ETag) (checkpoint.ETag, error)
}

func stores(t *testing.T) map[string]store {
	s, _ := settings(t)
	blob, err := checkpoint.New(s, container(), checkpoint.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]store{"azurite": blob, "memory": checkpoint.NewMemory()}
}

func TestSaveIsGuardedByETag(t *testing.T) {
	for name, st := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			cp, etag, err := st.Load(ctx, "users")
			if err != nil || etag != "" || cp.Resource != "users" || cp.Pass != nil || cp.DeltaLink != "" {
				t.Fatalf("Load of nothing (container not created yet) = %+v, %q, %v", cp, etag, err)
			}
			now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
			cp.Pass = &checkpoint.Pass{ID: "p1", Started: now, Updated: now}
			e1, err := st.Save(ctx, "users", cp, "")
			if err != nil || e1 == "" {
				t.Fatalf("first save: %q, %v", e1, err)
			}
			if _, err := st.Save(ctx, "users", cp, ""); !errors.Is(err, checkpoint.ErrConflict) {
				t.Fatalf("creating it twice: %v", err)
			}

			// Two writers holding the same ETag: exactly one wins.
			var wg sync.WaitGroup
			errs := make([]error, 2)
			tags := make([]checkpoint.ETag, 2)
			for i := range 2 {
				wg.Go(func() {
					c := cp
					c.Pass = &checkpoint.Pass{ID: "p1", Link: fmt.Sprintf("https://graph/next%d", i), Pages: 1}
					tags[i], errs[i] = st.Save(ctx, "users", c, e1)
				})
			}
			wg.Wait()
			won := -1
			for i, err := range errs {
				switch {
				case err == nil:
					won = i
				case !errors.Is(err, checkpoint.ErrConflict):
					t.Fatalf("save %d: %v", i, err)
				}
			}
			if won < 0 || errors.Is(errs[0], checkpoint.ErrConflict) == errors.Is(errs[1], checkpoint.ErrConflict) {
				t.Fatalf("two saves from one ETag: %v", errs)
			}
			got, e2, err := st.Load(ctx, "users")
			if err != nil || e2 != tags[won] || got.Pass.Link != fmt.Sprintf("https://graph/next%d", won) || got.V != checkpoint.Version {
				t.Fatalf("after the race: %+v, %q (winner %d, %q), %v", got.Pass, e2, won, tags[won], err)
			}
			if got.Pass.Pages != 1 || got.Pass.ID != "p1" || !got.LastCompleted.IsZero() {
				t.Errorf("round trip: %+v / %+v", got, got.Pass)
			}
			// The stale ETag stays refused.
			if _, err := st.Save(ctx, "users", got, e1); !errors.Is(err, checkpoint.ErrConflict) {
				t.Errorf("save with a stale ETag: %v", err)
			}
			// Resources are kept apart.
			if other, etag, err := st.Load(ctx, "users/abc"); err != nil || etag != "" || other.Pass != nil {
				t.Errorf("another resource: %+v, %q, %v", other, etag, err)
			}
		})
	}
}

func TestLoadRefusesWhatItCannotRead(t *testing.T) {
	s, _ := settings(t)
	name := container()
	st, err := checkpoint.New(s, name, checkpoint.Options{})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := service.NewClientFromConnectionString(s.ConnectionString.Reveal(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := svc.CreateContainer(ctx, name, nil); err != nil {
		t.Fatal(err)
	}
	bb := svc.NewContainerClient(name).NewBlockBlobClient(checkpoint.BlobName("users"))
	for _, body := range []string{`not json`, `{"v":2,"resource":"users"}`, `{"v":1,"resource":"groups"}`, `{"v":1,"resource":"users","pass":{"link":"x"}}`} {
		if _, err := bb.Upload(ctx, streaming.NopCloser(bytes.NewReader([]byte(body))), nil); err != nil {
			t.Fatal(err)
		}
		if _, _, err := st.Load(ctx, "users"); !errors.Is(err, checkpoint.ErrCorrupt) {
			t.Errorf("Load of %s: %v", body, err)
		}
	}
}

func TestNewSettings(t *testing.T) {
	if _, err := checkpoint.New(config.StorageSettings{}, "c", checkpoint.Options{}); err == nil || !strings.Contains(err.Error(), "AzureWebJobsStorage is not set") {
		t.Errorf("no settings: %v", err)
	}
	if _, err := checkpoint.New(config.StorageSettings{QueueServiceURL: "https://a.queue.core.windows.net"}, "c", checkpoint.Options{}); err == nil || !strings.Contains(err.Error(), "blobServiceUri") {
		t.Errorf("queue-only identity settings: %v", err)
	}
	if _, err := checkpoint.New(config.StorageSettings{BlobServiceURL: "https://a.blob.core.windows.net"}, "c", checkpoint.Options{Credential: &fake.TokenCredential{}}); err != nil {
		t.Errorf("identity-based: %v", err)
	}
	if _, err := checkpoint.New(config.StorageSettings{ConnectionString: "AccountName=x"}, "c", checkpoint.Options{}); err == nil || strings.Contains(err.Error(), "AccountName") {
		t.Errorf("bad connection string: %v", err)
	}
	for in, want := range map[string]string{"users": "delta/users.json", "/Users/": "delta/users.json", "users/ABC": "delta/users/abc.json", "": "delta/users.json"} {
		if got := checkpoint.BlobName(in); got != want {
			t.Errorf("BlobName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSelectHash(t *testing.T) {
	a := checkpoint.SelectHash([]string{"id", "displayName", "mail"})
	if b := checkpoint.SelectHash([]string{"Mail", " id", "displayname", "mail"}); a != b {
		t.Errorf("order, case and duplicates changed the hash: %s vs %s", a, b)
	}
	if c := checkpoint.SelectHash([]string{"id", "displayName"}); a == c {
		t.Error("a different select has the same hash")
	}
}
