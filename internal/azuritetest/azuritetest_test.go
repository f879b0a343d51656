package azuritetest_test

import (
	"context"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue/v2"

	"github.com/graphwebhooks/graph-webhooks-go/internal/azuritetest"
)

func TestStartQueueBlobAndTable(t *testing.T) {
	a := azuritetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	cs := a.ConnectionString()
	for _, want := range []string{"AccountName=devstoreaccount1", "AccountKey=" + azuritetest.AccountKey, "QueueEndpoint=" + a.QueueURL, "BlobEndpoint=" + a.BlobURL, "TableEndpoint=" + a.TableURL} {
		if !strings.Contains(cs, want) {
			t.Errorf("connection string %q lacks %q", cs, want)
		}
	}

	qs, err := azqueue.NewServiceClientFromConnectionString(cs, nil)
	if err != nil {
		t.Fatal(err)
	}
	q := qs.NewQueueClient("azuritetest-roundtrip")
	if _, err := q.Create(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := q.EnqueueMessage(ctx, "aGVsbG8=", nil); err != nil {
		t.Fatal(err)
	}
	resp, err := q.DequeueMessage(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Messages) != 1 || *resp.Messages[0].MessageText != "aGVsbG8=" {
		t.Fatalf("dequeued %+v", resp.Messages)
	}

	bc, err := azblob.NewClientFromConnectionString(cs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bc.CreateContainer(ctx, "azuritetest", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := bc.UploadBuffer(ctx, "azuritetest", "b", []byte("x"), nil); err != nil {
		t.Fatal(err)
	}

	ts, err := aztables.NewServiceClientFromConnectionString(cs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.CreateTable(ctx, "azuritetest", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.NewClient("azuritetest").AddEntity(ctx, []byte(`{"PartitionKey":"p","RowKey":"r"}`), nil); err != nil {
		t.Fatal(err)
	}

	// Stop closes the ports.
	u, _ := url.Parse(a.QueueURL)
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", u.Host, time.Second); err == nil {
		c.Close()
		t.Errorf("queue port %s still open after Stop", u.Host)
	}
	if err := a.Stop(); err != nil { // idempotent
		t.Fatal(err)
	}
}

func TestModuleRoot(t *testing.T) {
	root, err := azuritetest.ModuleRoot("")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(root, "internal") {
		t.Errorf("module root %q", root)
	}
}

func TestNotInstalled(t *testing.T) {
	dir := t.TempDir()
	// A module without node_modules.
	if err := writeFile(dir+"/go.mod", "module x\n"); err != nil {
		t.Fatal(err)
	}
	_, err := azuritetest.StartProcess(context.Background(), dir)
	if err == nil || !strings.Contains(err.Error(), "npm ci") {
		t.Fatalf("err = %v, want ErrNotInstalled", err)
	}
}
