package fakegraph

import "strings"

// The directory family: users and groups (docs/graph-facts.md §1.1, §3.1, §3.2). Its routes are mounted by
// routes() and its state lives on Server, as they predate the family table.
func init() {
	registerFamily(family{
		name: "directory",
		rules: []subscriptionRule{{
			pattern: "users, users/{id}, groups, groups/{id}",
			match:   matchDirectory,
			// docs/graph-facts.md §1.1: users accept only updated and deleted.
			changeTypes:        []string{"updated", "deleted"},
			maxLifetimeMinutes: MaxExpiryMinutes,
			rich:               richNever,
			roles: func(ref resourceRef) []string {
				if ref.Coll == "groups" {
					return groupRoles
				}
				return userRoles
			},
			// docs/graph-facts.md §3.2: per app and tenant, users and groups together.
			quotas: []subscriptionQuota{{
				scope:   func(resourceRef) string { return "" },
				limit:   func(o *Options) int { return o.MaxSubscriptions },
				message: "Operation: Create; Exception: [Status Code: Forbidden; Reason: The number of subscriptions for the app and tenant has reached its limit of %d.]",
			}},
		}},
	})
}

// matchDirectory accepts "users", "users/{id}", "groups" or "groups/{id}" (collection in any case); a
// query string is refused (choice: the directory's subscriptions take none).
func matchDirectory(segs []string, query string) (resourceRef, bool) {
	coll := strings.ToLower(segs[0])
	if (coll != "users" && coll != "groups") || query != "" {
		return resourceRef{}, false
	}
	switch {
	case len(segs) == 1:
		return resourceRef{Coll: coll}, true
	case len(segs) == 2 && segs[1] != "":
		return resourceRef{Coll: coll, IDs: []string{segs[1]}}, true
	}
	return resourceRef{}, false
}
