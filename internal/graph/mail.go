package graph

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ListMailboxItemsSince returns the ids of a mailbox's messages (kind "messages", every folder) or calendar
// events (kind "events") last modified at or after since, following pages until max ids (the caller's
// bound on a catch-up): GET /users/{id}/{kind}?$filter=lastModifiedDateTime ge {since}&$orderby=
// lastModifiedDateTime desc&$select=id&$top=100. The order makes a cut keep the newest items (Graph orders a
// list by nothing in particular otherwise; a $orderby must name the $filter's property first, as this one
// does). more reports that the bound cut the list short. The user id must be a GUID.
func (c *Client) ListMailboxItemsSince(ctx context.Context, user, kind string, since time.Time, max int) (ids []string, more bool, err error) {
	const op = "list mailbox items"
	if !IsGUID(user) {
		return nil, false, localError(op, "invalid user id %q", user)
	}
	if kind != "messages" && kind != "events" {
		return nil, false, localError(op, "invalid mailbox resource %q", kind)
	}
	q := url.Values{"$filter": {"lastModifiedDateTime ge " + since.UTC().Format(time.RFC3339)},
		"$orderby": {"lastModifiedDateTime desc"}, "$select": {"id"}, "$top": {"100"}}
	link := c.url("/users/"+url.PathEscape(strings.ToLower(user))+"/"+kind, q.Encode())
	seen := map[string]bool{}
	for range maxPages {
		var p page[struct {
			ID string `json:"id"`
		}]
		if err := c.getJSON(ctx, request{op: op, method: http.MethodGet, url: link}, &p); err != nil {
			return ids, false, err
		}
		for _, it := range p.Value {
			if len(ids) == max {
				return ids, true, nil
			}
			ids = append(ids, it.ID)
		}
		if p.NextLink == "" {
			return ids, false, nil
		}
		if err := c.checkLink(op, p.NextLink); err != nil {
			return ids, false, err
		}
		if seen[p.NextLink] {
			return ids, false, &Error{Op: op, Kind: KindOther, Err: errors.New("the next page link repeats an earlier one")}
		}
		seen[p.NextLink] = true
		link = p.NextLink
	}
	return ids, true, nil
}
