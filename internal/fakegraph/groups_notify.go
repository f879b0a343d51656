package fakegraph

// groupNotificationsLocked builds a group's change notifications (s.mu held). With
// Options.NotifyMembersDelta, a membership change also carries members@delta in resourceData: the
// added members, and the removed ones with "@removed":{"reason":"deleted"}. UNCONFIRMED: users
// report such a node in group notifications, but its shape and completeness are not documented;
// the double gives it the shape of /groups/delta's members@delta.
func (s *Server) groupNotificationsLocked(groupID, changeType string, added, removed []string) []pendingNotification {
	var extra map[string]any
	if s.opts.NotifyMembersDelta && len(added)+len(removed) > 0 {
		var md []any
		for _, m := range added {
			md = append(md, map[string]any{"@odata.type": s.memberTypeLocked(m), "id": m})
		}
		for _, m := range removed {
			md = append(md, map[string]any{"@odata.type": s.memberTypeLocked(m), "id": m, "@removed": map[string]any{"reason": "deleted"}})
		}
		extra = map[string]any{"members@delta": md}
	}
	return s.directoryNotificationsLocked("groups", groupID, changeType, extra)
}
