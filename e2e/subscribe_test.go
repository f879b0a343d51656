package e2e

import (
	"strings"
	"testing"

	"github.com/graphwebhooks/graph-webhooks-go/internal/devstack"
)

func TestStartupSubscribesThroughTheHostFront(t *testing.T) {
	s := start(t, devstack.Options{Users: 3})
	subs := s.Graph.Subscriptions()
	if len(subs) != 1 || subs[0].ClientState != s.Settings["GRAPH_CLIENT_STATE"] || !strings.Contains(subs[0].NotificationURL, "/api/webhook?") {
		t.Fatalf("subscriptions: %+v", subs)
	}
}
