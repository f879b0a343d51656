package graph

import (
	"context"
	"net/http"
	"strings"
)

// Object is a directory object (a user, a group) as Graph returned it: only the selected properties, with
// numbers kept as json.Number. A map, not a struct, because the properties are chosen by configuration
// (GRAPH_USER_SELECT, GRAPH_GROUP_SELECT) and go into change events unchanged.
type Object map[string]any

// ID returns the user's object id, or "".
func (u Object) ID() string {
	id, _ := u["id"].(string)
	return id
}

// Removed reports a delta entry's "@removed" reason ("changed": soft-deleted, "deleted": gone for
// good), or "" when the entry is not a removal.
func (u Object) Removed() string {
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

// GetObject reads one object of a collection ("users", "groups"). KindNotFound may mean the object was
// soft-deleted: see GetDeleted.
func (c *Client) GetObject(ctx context.Context, collection, id string, selectProps []string) (Object, error) {
	return c.getObject(ctx, "get "+collection, "/"+collection+"/", id, selectProps)
}

// GetDeleted reads a soft-deleted object from directory/deletedItems (users and Microsoft 365 groups stay
// there for 30 days).
func (c *Client) GetDeleted(ctx context.Context, id string, selectProps []string) (Object, error) {
	return c.getObject(ctx, "get deleted item", "/directory/deletedItems/", id, selectProps)
}

func (c *Client) getObject(ctx context.Context, op, prefix, id string, selectProps []string) (Object, error) {
	seg, err := segment(op, id)
	if err != nil {
		return nil, err
	}
	var u Object
	if err := c.getJSON(ctx, request{op: op, method: http.MethodGet, url: c.url(prefix+seg, selectQuery(selectProps))}, &u); err != nil {
		return nil, err
	}
	delete(u, "@odata.context")
	return u, nil
}

// Project keeps the selected properties (matched without regard to case) and drops annotations such as
// @odata.type and @removed: what an event carries of a user.
func (u Object) Project(sel []string) map[string]any {
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
