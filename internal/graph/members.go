package graph

import "context"

// member is a directoryObject as a members list returns it.
type member struct {
	Type string `json:"@odata.type"`
	ID   string `json:"id"`
}

// ListUserMembers returns the ids of a group's direct members that are users, following every page of
// GET /groups/{id}/members (999 per page, Graph's maximum). Members of other types (groups, devices,
// service principals) are left out; so are ids that are not GUIDs, which no Graph URL may carry.
// KindNotFound means the group does not exist (or was deleted).
func (c *Client) ListUserMembers(ctx context.Context, groupID string) ([]string, error) {
	const op = "list group members"
	if !IsGUID(groupID) {
		return nil, localError(op, "invalid group id %q", groupID)
	}
	seg, err := segment(op, groupID)
	if err != nil {
		return nil, err
	}
	ms, err := listAll[member](ctx, c, op, c.url("/groups/"+seg+"/members", "$select=id&$top=999"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range ms {
		if m.Type == "#microsoft.graph.user" && IsGUID(m.ID) {
			out = append(out, m.ID)
		}
	}
	return out, nil
}
