package mailbox_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/family"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/mailbox"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
	"github.com/graphwebhooks/graph-webhooks-go/internal/testclock"
)

const (
	tenant = "8c1f4b2e-0d6a-4f57-9a3e-2b9d7c6e5f41"
	client = "3f1b1c3e-0000-4000-8000-000000000001"
	secret = "fake~graph~secret~value"
	user   = "6e7b768e-07e2-4810-8459-485f84f8f204"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestCatchUpQueuesTheDaysItemsOnly(t *testing.T) {
	c := &clock{t: testclock.Date(2026, 3, 2, 8, 0, 0)}
	o := fakegraph.NewOptions(tenant, client, secret)
	o.Clock, o.AppRoles = c.Now, []string{"Mail.Read"}
	fg := fakegraph.New(o)
	defer fg.Close()
	cred, err := azidentity.NewClientSecretCredential(tenant, client, secret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions: azClientOptions(fg), DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	gc, err := graph.NewClient(cred, graph.ClientOptions{BaseURL: fg.GraphBaseURL(), Transport: fg.Client(), Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	old := fg.AddMessage(user, fakegraph.MailItem{})
	c.Advance(2 * mailbox.CatchUpWindow)
	var recent []string
	for range 150 { // two pages of the list
		recent = append(recent, fg.AddMessage(user, fakegraph.MailItem{}))
	}
	var texts [][]byte
	cu := &mailbox.CatchUp{Lister: gc, Tenant: tenant, Now: c.Now,
		Enqueue: func(_ context.Context, text []byte) error { texts = append(texts, text); return nil }}
	n, truncated, err := cu.Run(context.Background(), family.MailboxScope(user, family.Messages), "sub-1")
	if err != nil || n != 150 || truncated {
		t.Fatalf("Run = %d, %v, %v", n, truncated, err)
	}
	seen := map[string]bool{}
	for _, text := range texts {
		var m message.Message
		if err := json.Unmarshal(text, &m); err != nil || m.Validate() != nil {
			t.Fatalf("message %s: %v", text, err)
		}
		for _, n := range m.Notifications {
			tg, ok, err := family.Route(&n)
			if !ok || err != nil || tg.Family != &family.Mailboxes || n.ChangeType != "updated" || n.SubscriptionID != "sub-1" {
				t.Fatalf("notification %+v routes to %+v %v %v", n, tg, ok, err)
			}
			seen[tg.ID] = true
		}
	}
	if len(seen) != 150 || seen[old] {
		t.Fatalf("queued %d items (the day-old one: %v)", len(seen), seen[old])
	}
	for _, id := range recent {
		if !seen[id] {
			t.Fatalf("%s not queued", id)
		}
	}
	if _, _, err := cu.Run(context.Background(), "users/"+user+"/contacts", ""); err == nil || !strings.Contains(err.Error(), "not a mailbox resource") {
		t.Fatalf("a resource of no mailbox kind: %v", err)
	}
}
