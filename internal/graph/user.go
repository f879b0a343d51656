package graph

import (
	"context"
	"net/http"
	"strings"
)

// User is a user as Graph returned it: only the selected properties, with numbers kept as json.Number.
// A map, not a struct, because the properties are chosen by configuration (GRAPH_USER_SELECT) and go
// into change events unchanged.
type User map[string]any

// ID returns the user's object id, or "".
func (u User) ID() string {
	id, _ := u["id"].(string)
	return id
}

// Removed reports a delta entry's "@removed" reason ("changed": soft-deleted, "deleted": gone for
// good), or "" when the entry is not a removal.
func (u User) Removed() string {
	r, ok := u["@removed"].(map[string]any)
	if !ok {
		if _, present := u["@removed"]; present {
			return "deleted"
		}
		return ""
	}
	reason, _ := r["reason"].(string)
	if reason == "" {
		reason = "deleted"
	}
	return reason
}

// GetUser reads one user. KindNotFound may mean the user was soft-deleted: see GetDeletedUser.
func (c *Client) GetUser(ctx context.Context, id string, selectProps []string) (User, error) {
	return c.getObject(ctx, "get user", "/users/", id, selectProps)
}

// GetDeletedUser reads a soft-deleted user from the directory's deleted items (kept 30 days).
func (c *Client) GetDeletedUser(ctx context.Context, id string, selectProps []string) (User, error) {
	return c.getObject(ctx, "get deleted user", "/directory/deletedItems/", id, selectProps)
}

func (c *Client) getObject(ctx context.Context, op, prefix, id string, selectProps []string) (User, error) {
	seg, err := segment(op, id)
	if err != nil {
		return nil, err
	}
	var u User
	if err := c.getJSON(ctx, request{op: op, method: http.MethodGet, url: c.url(prefix+seg, selectQuery(selectProps))}, &u); err != nil {
		return nil, err
	}
	delete(u, "@odata.context")
	return u, nil
}

// Project keeps the selected properties (matched without regard to case) and drops annotations such as
// @odata.type and @removed: what an event carries of a user.
func (u User) Project(sel []string) map[string]any {
	if u == nil {
		return nil
	}
	want := make(map[string]bool, len(sel))
	for _, p := range sel {
		want[strings.ToLower(p)] = true
	}
	out := make(map[string]any, len(sel))
	for k, v := range u {
		if strings.HasPrefix(k, "@") || (len(want) > 0 && !want[strings.ToLower(k)]) {
			continue
		}
		out[k] = v
	}
	return out
}
