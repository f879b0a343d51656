package devstack

import (
	"slices"
	"testing"

	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
)

func TestSeedGroupIDsAreGUIDsDistinctFromUsers(t *testing.T) {
	g := SeedGroup(7, UserID(1), UserID(2))
	if !graph.IsGUID(g.ID) || g.ID == UserID(7) || g.ID != SeedGroup(7).ID || g.ID == SeedGroup(8).ID {
		t.Fatalf("group id %q (user 7: %q)", g.ID, UserID(7))
	}
	if !slices.Equal(g.Members, []string{UserID(1), UserID(2)}) || g.Props["displayName"] != "Group 007" {
		t.Fatalf("group %+v", g)
	}
}
