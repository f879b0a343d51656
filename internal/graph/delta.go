package graph

import (
	"context"
	"net/http"
	"strconv"
	"strings"
)

// DeltaPage is one page of a delta query over a collection. Exactly one of NextLink (more pages follow) and
// DeltaLink (the round is complete; store it for the next round) is set.
type DeltaPage struct {
	// Objects may include removals: {"id": …, "@removed": {"reason": "changed"|"deleted"}} (see
	// Object.Removed). The same object can appear more than once; the last occurrence wins. A group with
	// members selected carries "members@delta", and a large group spans several pages, each with a part.
	Objects             []Object
	NextLink, DeltaLink string
}

// DeltaStart begins a delta round over a collection: GET /{collection}/delta?$select=… . With latest,
// Graph returns no objects, only a deltaLink from now ($deltatoken=latest). The query is baked into the
// links that follow, so it is only given here.
func (c *Client) DeltaStart(ctx context.Context, collection string, selectProps []string, latest bool) (DeltaPage, error) {
	if _, err := segment("delta", collection); err != nil || strings.Contains(collection, "/") {
		return DeltaPage{}, localError("delta", "invalid collection %q", collection)
	}
	q := selectQuery(selectProps)
	if latest {
		if q != "" {
			q += "&"
		}
		q += "$deltatoken=latest"
	}
	return c.delta(ctx, c.url("/"+collection+"/delta", q))
}

// DriveDeltaMaxTop is the most items a page of a drive's delta holds (1,000; docs/graph-facts.md §10.1):
// asked for on every round, so that a pass costs as few requests as Graph allows.
const DriveDeltaMaxTop = 1000

// DriveDeltaStart begins a delta round over a drive: GET /drives/{drive-id}/root/delta?$select=…&$top=… .
// With latest, Graph returns no items, only a deltaLink from now (token=latest). The caller has checked the
// drive id against its grammar; it is path-escaped here all the same.
func (c *Client) DriveDeltaStart(ctx context.Context, driveID string, selectProps []string, latest bool) (DeltaPage, error) {
	seg, err := segment("drive delta", driveID)
	if err != nil {
		return DeltaPage{}, err
	}
	q := selectQuery(selectProps)
	if q != "" {
		q += "&"
	}
	q += "$top=" + strconv.Itoa(DriveDeltaMaxTop)
	if latest {
		q += "&token=latest"
	}
	return c.delta(ctx, c.url("/drives/"+seg+"/root/delta", q))
}

// Delta fetches the page at a nextLink or a stored deltaLink. KindResyncRequired means the link has
// expired (410 Gone or syncStateNotFound; directory delta tokens last 7 days): start again with a full
// DeltaStart. The link must be on the Graph host.
func (c *Client) Delta(ctx context.Context, link string) (DeltaPage, error) {
	const op = "delta"
	if link == "" {
		return DeltaPage{}, localError(op, "empty link: start a round with DeltaStart")
	}
	if err := c.checkLink(op, link); err != nil {
		return DeltaPage{}, err
	}
	return c.delta(ctx, link)
}

func (c *Client) delta(ctx context.Context, u string) (DeltaPage, error) {
	const op = "delta"
	var p page[Object]
	if err := c.getJSON(ctx, request{op: op, method: http.MethodGet, url: u, flags: flagDelta}, &p); err != nil {
		return DeltaPage{}, err
	}
	if p.NextLink != "" {
		if err := c.checkLink(op, p.NextLink); err != nil {
			return DeltaPage{}, err
		}
	}
	if p.DeltaLink != "" {
		if err := c.checkLink(op, p.DeltaLink); err != nil {
			return DeltaPage{}, err
		}
	}
	return DeltaPage{Objects: p.Value, NextLink: p.NextLink, DeltaLink: p.DeltaLink}, nil
}
