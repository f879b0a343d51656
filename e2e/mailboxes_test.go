package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/devstack"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/family"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
	"github.com/graphwebhooks/graph-webhooks-go/internal/status"
)

func mailEvents(evs []message.Event, id string) []message.Event {
	var out []message.Event
	for _, e := range evs {
		if e.Resource == "messages" && e.ResourceID == id {
			out = append(out, e)
		}
	}
	return out
}

func hasMailEvent(id string, ok func(message.Event) bool) func([]message.Event) bool {
	return func(evs []message.Event) bool { return slices.ContainsFunc(mailEvents(evs, id), ok) }
}

// TestMailboxesEndToEnd: the timer subscribes each configured mailbox (a refused one is recorded and named
// by `handler status`); a new message, an edit that Outlook notifies three times, a move and a delete become
// events with the mailbox; a missed lifecycle event catches the mailbox up.
func TestMailboxesEndToEnd(t *testing.T) {
	a, b, denied := devstack.UserID(1), devstack.UserID(2), devstack.UserID(3)
	s := start(t, devstack.Options{Users: 3,
		Graph: func(o *fakegraph.Options) {
			o.AppRoles = []string{"User.Read.All", "Group.Read.All", "Mail.Read", "Calendars.Read"}
		},
		Settings: map[string]string{config.Mailboxes: a + "," + b + "," + denied}})
	ctx := deadline(t, 150*time.Second)
	// An application access policy now excludes one mailbox: its subscription (made on start) goes, and the
	// next timer run is refused.
	s.Graph.SetMailboxAccessDenied(denied, true)
	if err := s.Host.FireTimer(ctx, "renewtimer"); err != nil {
		t.Fatalf("timer: %v", err)
	}
	for _, sub := range s.Graph.Subscriptions() {
		if strings.EqualFold(sub.Resource, "users/"+denied+"/messages") {
			s.Graph.DeleteSubscriptionSilently(sub.ID)
		}
	}
	var subs []string
	var mailSub string
	for _, sub := range s.Graph.Subscriptions() {
		subs = append(subs, sub.Resource+" "+sub.ChangeType)
		if strings.EqualFold(sub.Resource, "users/"+a+"/messages") {
			mailSub = sub.ID
			if sub.LifecycleNotificationURL == "" {
				t.Errorf("mailbox subscription without a lifecycle URL: %+v", sub)
			}
		}
	}
	if mailSub == "" {
		t.Fatalf("subscriptions %v: none for mailbox %s", subs, a)
	}

	id := s.Graph.AddMessage(a, fakegraph.MailItem{Props: map[string]any{"subject": "Quote", "isRead": false}})
	if err := s.WaitEvents(ctx, hasMailEvent(id, func(e message.Event) bool {
		return e.ChangeType == "created" && e.Context[family.MailboxContext] == a && e.Object["subject"] == "Quote"
	})); err != nil {
		t.Fatalf("new message: %v", err)
	}

	s.Graph.SetMailDuplicates(2)
	s.Graph.UpdateMessage(a, id, map[string]any{"isRead": true, "categories": []any{"Customer"}})
	if err := s.WaitEvents(ctx, hasMailEvent(id, func(e message.Event) bool {
		return e.ChangeType == "updated" && e.Object["isRead"] == true && slices.Contains(e.Changed, "isRead") && e.Previous["isRead"] == false
	})); err != nil {
		t.Fatalf("edit: %v", err)
	}
	s.Graph.SetMailDuplicates(0)
	if _, err := s.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	updates := 0
	for _, e := range mailEvents(s.Events(), id) {
		if e.ChangeType == "updated" {
			updates++
		}
	}
	if updates != 1 {
		t.Errorf("one edit notified three times made %d updated events, want 1", updates)
	}

	moved := s.Graph.MoveMessage(a, id, "archive")
	if err := s.WaitEvents(ctx, func(evs []message.Event) bool {
		return hasMailEvent(id, func(e message.Event) bool { return e.ChangeType == "deleted" })(evs) &&
			hasMailEvent(moved, func(e message.Event) bool {
				return e.ChangeType == "created" && e.Object["parentFolderId"] == fakegraph.FolderID(a, "archive")
			})(evs)
	}); err != nil {
		t.Fatalf("move: %v", err)
	}

	// Graph drops a change, then says so: the mailbox is caught up.
	s.Graph.SetMailboxDropping(a, true)
	quiet := s.Graph.AddMessage(a, fakegraph.MailItem{Props: map[string]any{"subject": "while dropping"}})
	s.Graph.SetMailboxDropping(a, false)
	s.Graph.SendLifecycle(mailSub, "missed")
	if err := s.WaitEvents(ctx, hasMailEvent(quiet, func(e message.Event) bool { return e.Object["subject"] == "while dropping" })); err != nil {
		t.Fatalf("catch-up after missed: %v", err)
	}

	// The excluded mailbox: a timer run is refused and records it, and `handler status` names it (exit 1).
	if err := s.Host.FireTimer(ctx, "renewtimer"); err != nil {
		t.Fatalf("timer: %v", err)
	}
	r, code, stderr := runStatus(t, s, nil)
	var refused []string
	for _, f := range r.Findings {
		if f.Code == status.CodeMailboxRefused {
			refused = append(refused, f.Subject+" "+f.Message)
		}
	}
	if code != 1 || len(refused) != 1 || !strings.HasPrefix(refused[0], denied) || !strings.Contains(refused[0], "Access to OData is disabled") {
		t.Fatalf("status exit %d, refusals %v\n%s", code, refused, stderr)
	}
}
