package main

import (
	"fmt"
	"strings"

	"github.com/graphwebhooks/graph-webhooks-go/internal/devstack"
)

// The drive the drive examples add and change (not the story's drive, so they work after the story too),
// and two of its items, in Graph's id shapes.
const (
	exampleDrive  = "b!ExampleDriveOfTheControlApiExamples-0123456789_abcdefghijklmnopqrs"
	exampleFolder = "01EXAMPLE0FOLDER00000000000000000A"
	exampleFile   = "01EXAMPLE0FILE0000000000000000000B"
)

// The mailbox the mail examples add to and change, and two messages and an event, in Graph's id shapes.
const (
	exampleMailbox  = "0e5a11b0-0000-4000-8000-0000000000aa"
	exampleMessage  = "AAMkAGExampleMessageOfTheControlApiExamples0000000000000001AAA="
	exampleMessage2 = "AAMkAGExampleMessageOfTheControlApiExamples0000000000000002AAA="
	exampleEvent    = "AAMkAGExampleEventOfTheControlApiExamples000000000000000001AAA="
)

// The channel and message the Teams examples post to and change (an id far below the millisecond ids the
// double gives, so it is free after the story too).
const (
	exampleTeam         = "0e7a0000-0000-4000-8000-00000000beef"
	exampleChannel      = "19:examplechannel@thread.tacv2"
	exampleTeamsMessage = "1000000000001"
)

// controlExample is one route of the Graph double's control API with a request that works against the
// demo's directory as the story leaves it.
type controlExample struct {
	Method, Route, What string
	Path, Body          string // the request: Path under the double's URL
	base                string
}

// Curl is the example as a shell command. The double's certificate is its own, hence -k.
func (e controlExample) Curl() string {
	c := "curl -sk"
	if e.Method != "GET" {
		c += " -X" + e.Method
	}
	c += " " + e.base + e.Path
	if e.Body != "" {
		c += " -d '" + e.Body + "'"
	}
	return c
}

// controlExamples lists every control route (internal/fakegraph/doc.go) with a working example. Users 1–3
// are active and user 4 soft-deleted when the story ends, groups 1 and 3 active (group 2 deleted for good);
// subID is the live subscription.
func controlExamples(base, subID string) []controlExample {
	u := func(i int) string { return devstack.UserID(i) }
	g := func(i int) string { return devstack.SeedGroup(i).ID }
	ex := []controlExample{
		{"POST", "/_control/users", "add a user (id optional)", "/_control/users", `{"props":{"displayName":"New Person","mail":"new.person@contoso.example"}}`, ""},
		{"POST", "/_control/users/{id}", "update a user's properties", "/_control/users/" + u(1), `{"jobTitle":"CTO"}`, ""},
		{"POST", "/_control/users/{id}/softdelete", "soft-delete a user (404: no such active user)", "/_control/users/" + u(2) + "/softdelete", "", ""},
		{"POST", "/_control/users/{id}/restore", "restore a soft-deleted user", "/_control/users/" + u(4) + "/restore", "", ""},
		{"DELETE", "/_control/users/{id}", "delete a user for good (also POST …/{id}/delete)", "/_control/users/" + u(3), "", ""},
		{"GET", "/_control/users", "list the active users", "/_control/users", "", ""},
		{"POST", "/_control/groups", "add a group (id optional) with members", "/_control/groups", `{"props":{"displayName":"New team","groupTypes":["Unified"]},"members":["` + u(1) + `"]}`, ""},
		{"POST", "/_control/groups/{id}", "update a group's properties", "/_control/groups/" + g(1), `{"description":"Platform and tools"}`, ""},
		{"POST", "/_control/groups/{id}/members", "add and remove members", "/_control/groups/" + g(1) + "/members", `{"add":["` + u(2) + `"],"remove":["` + u(3) + `"]}`, ""},
		{"POST", "/_control/groups/{id}/softdelete", "soft-delete a Microsoft 365 group (a security group is deleted for good)", "/_control/groups/" + g(3) + "/softdelete", "", ""},
		{"POST", "/_control/groups/{id}/restore", "restore a soft-deleted group", "/_control/groups/" + g(3) + "/restore", "", ""},
		{"POST", "/_control/groups/{id}/delete", "delete a group for good", "/_control/groups/" + g(3) + "/delete", "", ""},
		{"GET", "/_control/groups", "list the active groups", "/_control/groups", "", ""},
		{"POST", "/_control/fault", "inject a fault: status, Retry-After, latency, count", "/_control/fault", `{"route":"POST /v1.0/$batch","status":429,"retryAfterSeconds":2,"count":3}`, ""},
		{"POST", "/_control/throttle-batch", "throttle the next n inner $batch requests", "/_control/throttle-batch", `{"n":3,"retryAfterSeconds":1}`, ""},
		{"POST", "/_control/drop-notifications", "stop (or resume) delivering notifications", "/_control/drop-notifications", `{"on":false}`, ""},
		{"POST", "/_control/clear-faults", "remove every injected fault", "/_control/clear-faults", "", ""},
		{"POST", "/_control/flush", "send queued notifications now", "/_control/flush", "", ""},
		{"GET", "/_control/subscriptions", "the live subscriptions", "/_control/subscriptions", "", ""},
		{"POST", "/_control/subscriptions/{id}/lifecycle", "send a lifecycle event", "/_control/subscriptions/" + subID + "/lifecycle", `{"event":"reauthorizationRequired"}`, ""},
		{"POST", "/_control/drives", "add a drive (id optional) → its id and root id", "/_control/drives", `{"id":"` + exampleDrive + `"}`, ""},
		{"GET", "/_control/drives", "the drive ids", "/_control/drives", "", ""},
		{"POST", "/_control/drives/{id}/items", "add a folder (id optional; parentId default the root)", "/_control/drives/" + exampleDrive + "/items", `{"id":"` + exampleFolder + `","name":"Reports","folder":true}`, ""},
		{"POST", "/_control/drives/{id}/items", "add a file", "/_control/drives/" + exampleDrive + "/items", `{"id":"` + exampleFile + `","name":"q1.xlsx","size":2048}`, ""},
		{"POST", "/_control/drives/{id}/items/{item}", "edit a file's content (new size; none: size+1)", "/_control/drives/" + exampleDrive + "/items/" + exampleFile, `{"size":4096}`, ""},
		{"POST", "/_control/drives/{id}/items/{item}/rename", "rename a file or folder", "/_control/drives/" + exampleDrive + "/items/" + exampleFile + "/rename", `{"name":"q1-final.xlsx"}`, ""},
		{"POST", "/_control/drives/{id}/items/{item}/move", "move a file or folder under another folder", "/_control/drives/" + exampleDrive + "/items/" + exampleFile + "/move", `{"parentId":"` + exampleFolder + `"}`, ""},
		{"POST", "/_control/drives/{id}/seed", "add n files at once (one tap in all with notify)", "/_control/drives/" + exampleDrive + "/seed", `{"n":10,"prefix":"report","notify":true}`, ""},
		{"POST", "/_control/drives/{id}/edit", "edit several files, each tapping taps times", "/_control/drives/" + exampleDrive + "/edit", `{"ids":["` + exampleFile + `"],"taps":5}`, ""},
		{"POST", "/_control/drives/{id}/tap", "tap the drive's subscribers n times without a change", "/_control/drives/" + exampleDrive + "/tap", `{"n":3}`, ""},
		{"GET", "/_control/drives/{id}/items", "the drive's live items", "/_control/drives/" + exampleDrive + "/items", "", ""},
		{"POST", "/_control/drives/{id}/expire-tokens", "make the drive's delta tokens answer 410 resyncRequired", "/_control/drives/" + exampleDrive + "/expire-tokens", "", ""},
		{"POST", "/_control/drives-lag", "delta sees a change only after this delay (and these many calls)", "/_control/drives-lag", `{"seconds":0,"calls":0}`, ""},
		{"POST", "/_control/drives/{id}/items/{item}/delete", "delete a file, or a folder and what is below it", "/_control/drives/" + exampleDrive + "/items/" + exampleFolder + "/delete", "", ""},
		{"POST", "/_control/mailboxes/{user}/messages", "add a message to a folder (id optional; default inbox)", "/_control/mailboxes/" + exampleMailbox + "/messages", `{"id":"` + exampleMessage + `","folder":"inbox","props":{"subject":"Quote for Contoso","from":{"emailAddress":{"address":"buyer@fabrikam.example"}}}}`, ""},
		{"POST", "/_control/mailboxes/{user}/messages", "add another", "/_control/mailboxes/" + exampleMailbox + "/messages", `{"id":"` + exampleMessage2 + `","props":{"subject":"Newsletter"}}`, ""},
		{"POST", "/_control/mailboxes/{user}/messages/{id}", "mark a message read, categorise it", "/_control/mailboxes/" + exampleMailbox + "/messages/" + exampleMessage, `{"isRead":true,"categories":["Customer"]}`, ""},
		{"POST", "/_control/mailboxes/{user}/messages/{id}/move", "move a message to another folder (it gets a new id)", "/_control/mailboxes/" + exampleMailbox + "/messages/" + exampleMessage + "/move", `{"folder":"archive"}`, ""},
		{"DELETE", "/_control/mailboxes/{user}/messages/{id}", "delete a message for good", "/_control/mailboxes/" + exampleMailbox + "/messages/" + exampleMessage2, "", ""},
		{"POST", "/_control/mailboxes/{user}/events", "add a calendar event (id optional)", "/_control/mailboxes/" + exampleMailbox + "/events", `{"id":"` + exampleEvent + `","props":{"subject":"Quarterly review"}}`, ""},
		{"POST", "/_control/mailboxes/{user}/policy", "over quota, excluded by an access policy, dropping notifications", "/_control/mailboxes/" + exampleMailbox + "/policy", `{"overQuota":false,"accessDenied":false,"dropping":false}`, ""},
		{"GET", "/_control/mailboxes", "the users with a mailbox", "/_control/mailboxes", "", ""},
		{"POST", "/_control/mail-duplicates", "send each mail notification 1+n times", "/_control/mail-duplicates", `{"n":0}`, ""},
		{"POST", "/_control/teams/messages", "post a channel message (id optional) → the message; or {\"chatId\":…} for a chat", "/_control/teams/messages", `{"teamId":"` + exampleTeam + `","channelId":"` + exampleChannel + `","id":"` + exampleTeamsMessage + `","fromDisplayName":"Ada","content":"<p>hello</p>"}`, ""},
		{"POST", "/_control/teams/messages/{id}", "edit a message's content (the place in the body)", "/_control/teams/messages/" + exampleTeamsMessage, `{"teamId":"` + exampleTeam + `","channelId":"` + exampleChannel + `","content":"<p>hello again</p>"}`, ""},
		{"POST", "/_control/teams/messages/{id}/delete", "delete a message (deletedDateTime set, body emptied)", "/_control/teams/messages/" + exampleTeamsMessage + "/delete", `{"teamId":"` + exampleTeam + `","channelId":"` + exampleChannel + `"}`, ""},
		{"GET", "/_control/teams/messages", "every message, deleted ones included", "/_control/teams/messages", "", ""},
		{"POST", "/_control/teams/tamper", "damage the next count Teams notifications (badSignature, badPadding, unknownCertificateId, wrongThumbprint, noValidationTokens, token)", "/_control/teams/tamper", `{"badSignature":true,"count":1}`, ""},
		{"GET", "/_control/requests", "the request log", "/_control/requests", "", ""},
		{"GET", "/_control/deliveries", "the delivery attempts", "/_control/deliveries", "", ""},
		// Last: it ends the subscription (the timer recreates it on its next tick, hourly).
		{"POST", "/_control/subscriptions/{id}/expire", "drop the subscription silently", "/_control/subscriptions/" + subID + "/expire", "", ""},
	}
	for i := range ex {
		ex[i].base = strings.TrimSuffix(base, "/")
	}
	return ex
}

func (e controlExample) String() string { return fmt.Sprintf("%s %s", e.Method, e.Route) }
