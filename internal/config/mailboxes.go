package config

import (
	"slices"
	"strings"
)

// Mailbox settings: which Outlook mailboxes the product follows, and what it reads of their items.
const (
	Mailboxes        = "GRAPH_MAILBOXES"
	MailboxResources = "GRAPH_MAILBOX_RESOURCES"
)

// The mailbox resources: a user's messages (every folder) and a user's calendar events.
const (
	Messages = "messages"
	Events   = "events"
)

// MailboxSettings is GRAPH_MAILBOXES and what goes with it.
type MailboxSettings struct {
	Users     []string // user object ids (lower case), in the order named
	Groups    []string // group object ids (lower case) whose user members are followed, re-read on every run
	Resources []string // Messages and/or Events; default Messages
}

// Configured reports whether GRAPH_MAILBOXES names any mailbox or group.
func (m MailboxSettings) Configured() bool { return len(m.Users)+len(m.Groups) > 0 }

// mailboxes parses GRAPH_MAILBOXES (user ids and group:{id}) and GRAPH_MAILBOX_RESOURCES. The select settings
// (GRAPH_MESSAGE_SELECT, GRAPH_EVENT_SELECT) are read with every kind's, from the family table (Select).
func (l *loader) mailboxes() MailboxSettings {
	m := MailboxSettings{Resources: l.mailboxResources()}
	for _, e := range strings.Split(l.get(Mailboxes), ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		kind, id, isGroup := strings.Cut(e, ":")
		if !isGroup {
			id = kind
		} else if !strings.EqualFold(kind, "group") {
			isGroup = false
			id = e
		}
		if !guidRE.MatchString(id) {
			l.fail(Mailboxes, "must be a comma-separated list of user object ids and group:{group object id}, each a GUID (a user principal name is not accepted)")
			return MailboxSettings{Resources: m.Resources}
		}
		id = strings.ToLower(id)
		list := &m.Users
		if isGroup {
			list = &m.Groups
		}
		if !slices.Contains(*list, id) {
			*list = append(*list, id)
		}
	}
	return m
}

func (l *loader) mailboxResources() []string {
	v := l.get(MailboxResources)
	if v == "" {
		return []string{Messages}
	}
	var out []string
	for _, r := range strings.Split(v, ",") {
		r = strings.ToLower(strings.TrimSpace(r))
		switch r {
		case "":
		case Messages, Events:
			if !slices.Contains(out, r) {
				out = append(out, r)
			}
		default:
			l.fail(MailboxResources, "must be messages, events or messages,events")
			return []string{Messages}
		}
	}
	if len(out) == 0 {
		return []string{Messages}
	}
	return out
}
