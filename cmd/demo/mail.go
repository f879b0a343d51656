package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/devstack"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/family"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

// demoMailboxes are the mailboxes of GRAPH_MAILBOXES in the demo: users 1 and 2.
func demoMailboxes() []string { return []string{devstack.UserID(1), devstack.UserID(2)} }

// mailStory tells what happens to a mailbox: a message arrives, is read and categorised (Outlook notifies the
// edit three times), is moved to Archive, and a change Graph drops is caught up after its `missed`. It
// reports whether every step's events arrived.
func (d *demo) mailStory(ctx context.Context) bool {
	s, box := d.s, demoMailboxes()[0]
	var subs []string
	var sub string
	for _, x := range s.Graph.Subscriptions() {
		if strings.HasPrefix(strings.ToLower(x.Resource), "users/") {
			subs = append(subs, x.Resource)
			if strings.EqualFold(x.Resource, "users/"+box+"/messages") {
				sub = x.ID
			}
		}
	}
	d.say("Mail (GRAPH_MAILBOXES): renewtimer keeps one subscription per mailbox: %s (created,updated,deleted, at most 4,230 minutes, with the lifecycle URL).\n", strings.Join(subs, ", "))
	ok := true
	step := func(n int, title string, act func(), want func([]message.Event) bool) {
		d.say("  %d. %s", n, title)
		before := len(s.Events())
		act()
		wctx, cancel := context.WithTimeout(ctx, 45*time.Second)
		defer cancel()
		err := s.WaitEvents(wctx, func(evs []message.Event) bool { return want(evs[before:]) })
		s.Drain(ctx)
		for _, e := range s.Events()[before:] {
			if e.Resource == "messages" {
				d.say("     %s", mailLine(e))
			}
		}
		if err != nil {
			d.say("     NOT ALL EVENTS ARRIVED: %v", err)
			ok = false
		}
		d.say("")
	}
	has := func(id string, f func(message.Event) bool) func([]message.Event) bool {
		return func(evs []message.Event) bool {
			return slices.ContainsFunc(evs, func(e message.Event) bool { return e.ResourceID == id && f(e) })
		}
	}
	var id string
	step(1, "A customer's quote arrives in the inbox", func() {
		id = s.Graph.AddMessage(box, fakegraph.MailItem{Props: map[string]any{"subject": "Quote for Contoso",
			"from": map[string]any{"emailAddress": map[string]any{"address": "buyer@fabrikam.example"}}}})
	}, func(evs []message.Event) bool {
		return has(id, func(e message.Event) bool { return e.ChangeType == "created" })(evs)
	})
	step(2, "It is read and categorised; Outlook notifies the edit three times (duplicates are normal)", func() {
		s.Graph.SetMailDuplicates(2)
		s.Graph.UpdateMessage(box, id, map[string]any{"isRead": true, "categories": []any{"Customer"}})
	}, func(evs []message.Event) bool {
		return has(id, func(e message.Event) bool { return e.ChangeType == "updated" })(evs)
	})
	s.Graph.SetMailDuplicates(0)
	var moved string
	step(3, "It is moved to Archive: Graph gives it a new id (deleted in one place, created in the other)", func() {
		moved = s.Graph.MoveMessage(box, id, "archive")
	}, func(evs []message.Event) bool {
		return has(id, func(e message.Event) bool { return e.ChangeType == "deleted" })(evs) &&
			has(moved, func(e message.Event) bool { return e.ChangeType == "created" })(evs)
	})
	var quiet string
	step(4, "Graph drops a new message's notification, then sends `missed`: the mailbox's recent items are re-listed", func() {
		s.Graph.SetMailboxDropping(box, true)
		quiet = s.Graph.AddMessage(box, fakegraph.MailItem{Props: map[string]any{"subject": "Sent while notifications were dropped"}})
		s.Graph.SetMailboxDropping(box, false)
		s.Graph.SendLifecycle(sub, "missed")
	}, func(evs []message.Event) bool { return has(quiet, func(message.Event) bool { return true })(evs) })
	return ok
}

// mailLine is a mail event as one line.
func mailLine(e message.Event) string {
	subj, _ := e.Object["subject"].(string)
	change := string(e.ChangeType)
	if len(e.Changed) > 0 {
		change += " " + strings.Join(e.Changed, ",")
	}
	return fmt.Sprintf("%-26s mailbox %s  message %s  %q", change, e.Context[family.MailboxContext], short(e.ResourceID), subj)
}
