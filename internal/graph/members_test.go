package graph_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
)

func TestListUserMembersFollowsPagesAndKeepsUsersOnly(t *testing.T) {
	e := newFG(t, func(o *fakegraph.Options) { o.GroupMembersPerPage = 3 }, graph.ClientOptions{})
	var users []string
	for i := range 7 {
		users = append(users, fmt.Sprintf("00000000-0000-4000-8000-%012d", i))
	}
	nested := e.fg.AddGroup(fakegraph.Group{ID: "99999999-0000-4000-8000-000000000000"})
	g := e.fg.AddGroup(fakegraph.Group{ID: "11111111-0000-4000-8000-000000000000", Members: append(slices.Clone(users), nested)})
	got, err := e.c.ListUserMembers(ctx(t), g)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if !slices.Equal(got, users) {
		t.Fatalf("members %v, want the 7 users and not the nested group", got)
	}
	if n := e.fg.Count("GET", "/v1.0/groups/"+g+"/members"); n != 3 {
		t.Fatalf("pages read: %d, want 3", n)
	}
	if _, err := e.c.ListUserMembers(ctx(t), "22222222-0000-4000-8000-000000000000"); !errors.Is(err, graph.ErrNotFound) {
		t.Fatalf("missing group: %v", err)
	}
	if _, err := e.c.ListUserMembers(ctx(t), "../users"); err == nil {
		t.Fatal("an id that is not a GUID reached a URL")
	}
}
