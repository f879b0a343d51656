package subscription

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/family"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/testclock"
)

// memGraph keeps subscriptions in memory and records what was asked of it.
type memGraph struct {
	mu      sync.Mutex
	subs    []graph.Subscription
	created []graph.Subscription
	renewed []graph.SubscriptionUpdate
}

func (m *memGraph) ListSubscriptions(context.Context) ([]graph.Subscription, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.subs), nil
}

func (m *memGraph) CreateSubscription(_ context.Context, s graph.Subscription) (graph.Subscription, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s.ID = fmt.Sprintf("sub-%d", len(m.subs)+1)
	m.created = append(m.created, s)
	m.subs = append(m.subs, s)
	return s, nil
}

func (m *memGraph) UpdateSubscription(_ context.Context, id string, u graph.SubscriptionUpdate) (graph.Subscription, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.renewed = append(m.renewed, u)
	for i := range m.subs {
		if m.subs[i].ID == id {
			m.subs[i].ExpirationDateTime = u.ExpirationDateTime
			return m.subs[i], nil
		}
	}
	return graph.Subscription{}, graph.ErrNotFound
}

func (m *memGraph) DeleteSubscription(context.Context, string) error { return nil }

// A drive entry is subscribed on the drive's root, for updated alone, with Graph's drive lifetime, and a
// new subscription asks for a pass over that drive; it is renewed like the others.
func TestDriveSubscriptionFollowsItsPlan(t *testing.T) {
	const drive = "b!-RIj2DuyvEyV1T4NlOaMHk8XkS_I8MdFlUCq1BlcjgmhRfAj3-Z8RY2VpuvV_tpd"
	vars := map[string]string{config.TenantID: tenant, config.ClientID: clientID, config.ClientState: stateA,
		config.NotificationURL: "https://example.org/api/webhook", config.Resource: "users,drives/" + drive}
	cfg := config.Load(func(k string) string { return vars[k] })
	g := &memGraph{}
	now := testclock.Date(2026, 12, 1, 10, 0, 0)
	var gaps []string
	k := New(cfg, func() (Graph, error) { return g, nil }, func(_ context.Context, scope, _ string) error {
		gaps = append(gaps, scope)
		return nil
	}, func() time.Time { return now })
	if _, err := k.Ensure(context.Background(), Normal); err != nil {
		t.Fatal(err)
	}
	if len(g.created) != 2 {
		t.Fatalf("%d subscriptions created", len(g.created))
	}
	d := g.created[1]
	if d.Resource != "drives/"+drive+"/root" || d.ChangeType != "updated" || !d.ExpirationDateTime.Equal(now.Add(family.DriveMaxLifetime-time.Hour)) {
		t.Errorf("drive subscription %+v", d)
	}
	if u := g.created[0]; u.Resource != "users" || u.ChangeType != "deleted,updated" || !u.ExpirationDateTime.Equal(now.Add(Lifetime)) {
		t.Errorf("users subscription %+v", u)
	}
	if !slices.Equal(gaps, []string{"users", "drives/" + drive}) {
		t.Errorf("gaps %v", gaps)
	}
	// Converged: nothing to do; near expiry: renewed for the drive's lifetime.
	if _, err := k.Ensure(context.Background(), Normal); err != nil || len(g.created) != 2 || len(g.renewed) != 0 {
		t.Fatalf("second run: %v, %d created, %d renewed", err, len(g.created), len(g.renewed))
	}
	now = now.Add(5 * 24 * time.Hour)
	if _, err := k.Ensure(context.Background(), Normal); err != nil || len(g.renewed) != 2 {
		t.Fatalf("after 5 days: %v, %d renewed", err, len(g.renewed))
	}
	if got := g.renewed[1].ExpirationDateTime; !got.Equal(now.Add(family.DriveMaxLifetime - time.Hour)) {
		t.Errorf("drive renewed until %s", got)
	}
	if err := explain("create subscription", family.Drives.Permission, graph.ErrForbidden); !strings.Contains(err.Error(), "Files.Read.All") {
		t.Errorf("a 403 on a drive says %q", err)
	}
}
