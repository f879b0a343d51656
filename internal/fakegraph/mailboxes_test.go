package fakegraph

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

const (
	mbA = "6e7b768e-07e2-4810-8459-485f84f8f204"
	mbB = "87d349ed-44d7-43e1-9a83-5f2406dee5bd"
)

var itemIDRE = regexp.MustCompile(`^AAMk[A-Za-z0-9_=-]+$`)

func mailServer(t *testing.T, roles ...string) (*Server, string) {
	t.Helper()
	if roles == nil {
		roles = []string{"Mail.Read", "Calendars.Read", "User.Read.All"}
	}
	clock := newFakeClock()
	s := newTestServer(t, func(o *Options) { o.AppRoles = roles; o.Clock = clock.Now; o.ControlAPI = true })
	return s, token(t, s)
}

// seedMailSub plants a mailbox subscription of this app pointing at rx.
func seedMailSub(s *Server, rx *receiver, resource string) string {
	id := newGUID()
	s.SeedSubscription(Subscription{ID: id, Resource: resource, ChangeType: "created,updated,deleted",
		NotificationURL: rx.URL, LifecycleNotificationURL: rx.URL + "/lifecycle", ClientState: "cs-mail"})
	return id
}

func deliveredNotifications(t *testing.T, s *Server, rx *receiver) []map[string]any {
	t.Helper()
	s.Flush()
	if err := s.WaitDelivered(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	return rx.notifications(t)
}

func TestMailboxMessageReadSelectAndMoveChangesID(t *testing.T) {
	s, tok := mailServer(t)
	id := s.AddMessage(mbA, MailItem{Props: map[string]any{"subject": "Quote", "isRead": false, "categories": []any{"Blue"}}})
	if !itemIDRE.MatchString(id) {
		t.Fatalf("message id %q is not in Graph's shape", id)
	}
	r := call(t, s, tok, "GET", "/v1.0/users/"+mbA+"/messages/"+url.PathEscape(id)+"?$select=subject,isRead,parentFolderId", nil)
	if r.Status != 200 {
		t.Fatalf("GET message: %d %s", r.Status, r.Body)
	}
	m := r.JSON(t)
	if m["subject"] != "Quote" || m["isRead"] != false || m["parentFolderId"] != FolderID(mbA, "inbox") || m["id"] != id {
		t.Fatalf("selected message: %v", m)
	}
	if _, ok := m["categories"]; ok {
		t.Fatalf("$select did not limit the properties: %v", m)
	}
	if etag, _ := m["@odata.etag"].(string); !strings.HasPrefix(etag, `W/"`) {
		t.Fatalf("@odata.etag = %v", m["@odata.etag"])
	}
	if r := call(t, s, tok, "GET", "/v1.0/users/"+mbA+"/messages/"+id+"?$select=nope", nil); r.Status != 400 {
		t.Fatalf("unknown $select: %d", r.Status)
	}

	moved := s.MoveMessage(mbA, id, "archive")
	if moved == "" || moved == id || !itemIDRE.MatchString(moved) {
		t.Fatalf("a move must give a new id: %q (old %q)", moved, id)
	}
	r = call(t, s, tok, "GET", "/v1.0/users/"+mbA+"/messages/"+id, nil)
	if c, _ := r.ErrorCodeMsg(t); r.Status != 404 || c != "ErrorItemNotFound" {
		t.Fatalf("old id after a move: %d %s", r.Status, r.Body)
	}
	r = call(t, s, tok, "GET", "/v1.0/users/"+mbA+"/messages/"+moved+"?$select=parentFolderId,subject", nil)
	if m := r.JSON(t); r.Status != 200 || m["parentFolderId"] != FolderID(mbA, "archive") || m["subject"] != "Quote" {
		t.Fatalf("moved message: %d %v", r.Status, m)
	}
	if !s.DeleteMessage(mbA, moved) {
		t.Fatal("DeleteMessage")
	}
	if r := call(t, s, tok, "GET", "/v1.0/users/"+mbA+"/messages/"+moved, nil); r.Status != 404 {
		t.Fatalf("deleted message: %d", r.Status)
	}
	if r := call(t, s, tok, "GET", "/v1.0/users/nobody/messages/"+moved, nil); r.Status != 404 {
		t.Fatalf("a user without a mailbox: %d", r.Status)
	}
}

func TestMailboxEventsNeedCalendarsRead(t *testing.T) {
	s, tok := mailServer(t, "Mail.Read")
	ev := s.AddEvent(mbA, MailItem{Props: map[string]any{"subject": "Standup"}})
	msg := s.AddMessage(mbA, MailItem{})
	if r := call(t, s, tok, "GET", "/v1.0/users/"+mbA+"/events/"+ev, nil); r.Status != 403 {
		t.Fatalf("event without Calendars.Read: %d", r.Status)
	}
	if r := call(t, s, tok, "GET", "/v1.0/users/"+mbA+"/messages/"+msg, nil); r.Status != 200 {
		t.Fatalf("message with Mail.Read: %d %s", r.Status, r.Body)
	}
	s2, tok2 := mailServer(t, "Calendars.Read")
	ev = s2.AddEvent(mbA, MailItem{Props: map[string]any{"subject": "Standup"}})
	r := call(t, s2, tok2, "GET", "/v1.0/users/"+mbA+"/events/"+ev+"?$select=subject,start,organizer", nil)
	if m := r.JSON(t); r.Status != 200 || m["subject"] != "Standup" || m["start"] == nil || m["organizer"] == nil {
		t.Fatalf("event: %d %v", r.Status, m)
	}
	if r := call(t, s2, tok2, "GET", "/v1.0/users/"+mbA+"/messages/x", nil); r.Status != 403 {
		t.Fatalf("message without Mail.Read: %d", r.Status)
	}
}

func TestMailboxAccessPolicyRefusesReads(t *testing.T) {
	s, tok := mailServer(t)
	id := s.AddMessage(mbA, MailItem{})
	s.SetMailboxAccessDenied(mbA, true)
	r := call(t, s, tok, "GET", "/v1.0/users/"+mbA+"/messages/"+id, nil)
	if c, m := r.ErrorCodeMsg(t); r.Status != 403 || c != "ErrorAccessDenied" || m != accessPolicyReadMessage {
		t.Fatalf("denied mailbox: %d %s", r.Status, r.Body)
	}
	s.SetMailboxAccessDenied(mbA, false)
	if r := call(t, s, tok, "GET", "/v1.0/users/"+mbA+"/messages/"+id, nil); r.Status != 200 {
		t.Fatalf("allowed again: %d", r.Status)
	}
}

func TestMailboxNotificationsShapeDuplicatesAndMoves(t *testing.T) {
	s, _ := mailServer(t)
	rx := newReceiver(t)
	whole := seedMailSub(s, rx, "users/"+mbA+"/messages")
	inbox := seedMailSub(s, rx, "Users/"+mbA+"/mailFolders('Inbox')/messages")
	seedMailSub(s, rx, "users/"+mbB+"/messages")
	cal := seedMailSub(s, rx, "users/"+mbA+"/events")

	id := s.AddMessage(mbA, MailItem{Props: map[string]any{"subject": "hi"}})
	ns := deliveredNotifications(t, s, rx)
	if len(ns) != 2 {
		t.Fatalf("a created message reaches the mailbox and inbox subscriptions only: %v", ns)
	}
	n := ns[0]
	rd, _ := n["resourceData"].(map[string]any)
	if n["changeType"] != "created" || n["resource"] != "Users/"+mbA+"/Messages/"+id || n["clientState"] != "cs-mail" || n["tenantId"] != testTenant {
		t.Fatalf("envelope: %v", n)
	}
	if rd["@odata.type"] != "#Microsoft.Graph.Message" || rd["@odata.id"] != "Users/"+mbA+"/Messages/"+id || rd["id"] != id || !strings.HasPrefix(rd["@odata.etag"].(string), `W/"`) {
		t.Fatalf("resourceData: %v", rd)
	}

	s.SetMailDuplicates(2)
	s.UpdateMessage(mbA, id, map[string]any{"isRead": true})
	ns = deliveredNotifications(t, s, rx)[2:]
	perSub := map[any]int{}
	for _, n := range ns {
		if n["changeType"] != "updated" {
			t.Fatalf("edit sent %v", n["changeType"])
		}
		perSub[n["subscriptionId"]]++
	}
	if perSub[whole] != 3 || perSub[inbox] != 3 {
		t.Fatalf("two duplicates make three notifications per subscription: %v", perSub)
	}
	s.SetMailDuplicates(0)

	before := len(rx.notifications(t))
	moved := s.MoveMessage(mbA, id, "archive")
	ns = deliveredNotifications(t, s, rx)[before:]
	got := map[string]string{}
	for _, n := range ns {
		rd := n["resourceData"].(map[string]any)
		got[n["subscriptionId"].(string)+" "+n["changeType"].(string)] = rd["id"].(string)
	}
	want := map[string]string{whole + " deleted": id, whole + " created": moved, inbox + " deleted": id}
	if len(got) != len(want) {
		t.Fatalf("move notifications: %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("move notifications: %v, want %v", got, want)
		}
	}

	before = len(rx.notifications(t))
	ev := s.AddEvent(mbA, MailItem{})
	ns = deliveredNotifications(t, s, rx)[before:]
	if len(ns) != 1 || ns[0]["subscriptionId"] != cal || ns[0]["resource"] != "Users/"+mbA+"/Events/"+ev ||
		ns[0]["resourceData"].(map[string]any)["@odata.type"] != "#Microsoft.Graph.Event" {
		t.Fatalf("event notification: %v", ns)
	}
}

func TestMailboxDroppingThenMissedAndRemoved(t *testing.T) {
	s, _ := mailServer(t)
	rx := newReceiver(t)
	sub := seedMailSub(s, rx, "users/"+mbA+"/messages")
	s.SetMailboxDropping(mbA, true)
	s.AddMessage(mbA, MailItem{})
	if ns := deliveredNotifications(t, s, rx); len(ns) != 0 {
		t.Fatalf("dropping mailbox delivered %v", ns)
	}
	dropped := 0
	for _, d := range s.Deliveries() {
		if d.Outcome == "dropped" {
			dropped++
		}
	}
	if dropped != 1 {
		t.Fatalf("dropped deliveries recorded: %d", dropped)
	}
	s.SetMailboxDropping(mbA, false)
	resp := controlPost(t, s, "/_control/subscriptions/"+sub+"/lifecycle", `{"event":"missed"}`)
	if resp != 204 {
		t.Fatalf("lifecycle control: %d", resp)
	}
	ns := deliveredNotifications(t, s, rx)
	if len(ns) != 1 || ns[0]["lifecycleEvent"] != "missed" || ns[0]["subscriptionId"] != sub {
		t.Fatalf("missed: %v", ns)
	}
	s.SendLifecycle(sub, "subscriptionRemoved")
	if len(s.Subscriptions()) != 0 {
		t.Fatal("subscriptionRemoved must delete the subscription")
	}
}

func controlPost(t *testing.T, s *Server, path, body string) int {
	t.Helper()
	resp, err := s.Client().Post(s.URL()+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestMailboxListFilteredOnLastModifiedPages(t *testing.T) {
	clock := newFakeClock()
	s := newTestServer(t, func(o *Options) { o.AppRoles = []string{"Mail.Read"}; o.Clock = clock.Now })
	tok := token(t, s)
	old := s.AddMessage(mbA, MailItem{})
	clock.Advance(time.Hour)
	since := clock.Now()
	var recent []string
	for i := range 5 {
		folder := "inbox"
		if i%2 == 1 {
			folder = "archive"
		}
		recent = append(recent, s.AddMessage(mbA, MailItem{Folder: folder}))
		clock.Advance(time.Minute)
	}
	s.UpdateMessage(mbA, old, map[string]any{"isRead": true}) // modified now: listed again
	recent = append(recent, old)

	next := "/v1.0/users/" + mbA + "/messages?" + url.Values{"$filter": {"lastModifiedDateTime ge " + since.Format(time.RFC3339)}, "$select": {"isRead"}, "$top": {"4"}}.Encode()
	seen := map[string]bool{}
	pages := 0
	for next != "" {
		r := call(t, s, tok, "GET", next, nil)
		if r.Status != 200 {
			t.Fatalf("list: %d %s", r.Status, r.Body)
		}
		var body struct {
			Value []map[string]any `json:"value"`
			Next  string           `json:"@odata.nextLink"`
		}
		json.Unmarshal(r.Body, &body)
		for _, m := range body.Value {
			seen[m["id"].(string)] = true
			if _, ok := m["subject"]; ok {
				t.Fatalf("$select lost on a next page: %v", m)
			}
		}
		next, pages = body.Next, pages+1
	}
	if pages != 2 || len(seen) != len(recent) {
		t.Fatalf("pages %d, seen %d of %d", pages, len(seen), len(recent))
	}
	r := call(t, s, tok, "GET", "/v1.0/users/"+mbA+"/mailFolders/archive/messages?$top=10", nil)
	var body struct {
		Value []map[string]any `json:"value"`
	}
	json.Unmarshal(r.Body, &body)
	if r.Status != 200 || len(body.Value) != 2 {
		t.Fatalf("archive folder: %d %d", r.Status, len(body.Value))
	}
	if r := call(t, s, tok, "GET", "/v1.0/users/"+mbA+"/messages?$filter="+url.QueryEscape("subject eq 'x'"), nil); r.Status != 400 {
		t.Fatalf("unsupported filter: %d", r.Status)
	}
}

func TestMailboxBatchReadsAcrossMailboxes(t *testing.T) {
	s, tok := mailServer(t)
	a := s.AddMessage(mbA, MailItem{Props: map[string]any{"subject": "A"}})
	b := s.AddMessage(mbB, MailItem{Props: map[string]any{"subject": "B"}})
	st, resps := batchCall(t, s, tok, []map[string]any{
		{"id": "1", "method": "GET", "url": "/users/" + mbA + "/messages/" + a + "?$select=subject"},
		{"id": "2", "method": "GET", "url": "/users/" + mbB + "/messages/" + b + "?$select=subject"},
		{"id": "3", "method": "GET", "url": "/users/" + mbB + "/messages/" + a},
	})
	if st != 200 || len(resps) != 3 {
		t.Fatalf("batch: %d %v", st, resps)
	}
	for _, r := range resps {
		status := int(r["status"].(float64))
		body, _ := r["body"].(map[string]any)
		switch r["id"] {
		case "1", "2":
			want := map[any]string{"1": "A", "2": "B"}[r["id"]]
			if status != 200 || body["subject"] != want {
				t.Fatalf("item %v: %d %v", r["id"], status, body)
			}
		case "3":
			if status != 404 {
				t.Fatalf("another mailbox's message id: %d", status)
			}
		}
	}
	if n := s.CountBatchItems("GET", "/v1.0/users/"); n != 3 {
		t.Fatalf("inner requests logged: %d", n)
	}
}

func TestMailboxControlAPI(t *testing.T) {
	s, tok := mailServer(t)
	resp, err := s.Client().Post(s.URL()+"/_control/mailboxes/"+mbA+"/messages", "application/json", strings.NewReader(`{"folder":"inbox","props":{"subject":"via control"}}`))
	if err != nil {
		t.Fatal(err)
	}
	var out struct{ ID string }
	json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || out.ID == "" {
		t.Fatalf("add: %d %q", resp.StatusCode, out.ID)
	}
	if st := controlPost(t, s, "/_control/mailboxes/"+mbA+"/messages/"+out.ID, `{"isRead":true}`); st != 204 {
		t.Fatalf("update: %d", st)
	}
	if m, _ := s.Message(mbA, out.ID); m.Props["isRead"] != true {
		t.Fatalf("update not applied: %v", m.Props)
	}
	resp, _ = s.Client().Post(s.URL()+"/_control/mailboxes/"+mbA+"/messages/"+out.ID+"/move", "application/json", strings.NewReader(`{"folder":"deleteditems"}`))
	var moved struct{ ID string }
	json.NewDecoder(resp.Body).Decode(&moved)
	resp.Body.Close()
	if resp.StatusCode != 200 || moved.ID == out.ID {
		t.Fatalf("move: %d %q", resp.StatusCode, moved.ID)
	}
	if st := controlPost(t, s, "/_control/mailboxes/"+mbA+"/policy", `{"accessDenied":true}`); st != 204 {
		t.Fatalf("policy: %d", st)
	}
	if r := call(t, s, tok, "GET", "/v1.0/users/"+mbA+"/messages/"+moved.ID, nil); r.Status != 403 {
		t.Fatalf("policy not applied: %d", r.Status)
	}
	if st := controlPost(t, s, "/_control/mailboxes/"+mbA+"/messages/nope", `{}`); st != 404 {
		t.Fatalf("missing message: %d", st)
	}
}

func mailSubBody(rx *receiver, resource string, exp time.Time) map[string]any {
	b := subBody(rx.URL, resource, exp)
	b["changeType"] = "created,updated,deleted"
	b["lifecycleNotificationUrl"] = rx.URL + "/lifecycle"
	return b
}

func TestMailboxSubscriptionCreateRules(t *testing.T) {
	s, tok := mailServer(t, "Mail.Read")
	rx := newReceiver(t)
	now := s.now()
	r := createSub(t, s, tok, mailSubBody(rx, "users/"+mbA+"/messages", now.Add(MailboxMaxExpiryMinutes*time.Minute)))
	if r.Status != 201 {
		t.Fatalf("create at the maximum lifetime: %d %s", r.Status, r.Body)
	}
	if len(rx.Validations()) != 2 {
		t.Fatalf("handshakes on both URLs: %d", len(rx.Validations()))
	}
	r = createSub(t, s, tok, mailSubBody(rx, "users/"+mbB+"/messages", now.Add((MailboxMaxExpiryMinutes+5)*time.Minute)))
	if r.Status != 400 {
		t.Fatalf("beyond 4,230 minutes: %d %s", r.Status, r.Body)
	}
	if r := createSub(t, s, tok, mailSubBody(rx, "users/"+mbB+"/events", now.Add(time.Hour))); r.Status != 403 {
		t.Fatalf("events without Calendars.Read: %d %s", r.Status, r.Body)
	}
	rich := mailSubBody(rx, "users/"+mbB+"/messages", now.Add(time.Hour))
	rich["includeResourceData"], rich["encryptionCertificate"], rich["encryptionCertificateId"] = true, "MIIB", "k1"
	if r := createSub(t, s, tok, rich); r.Status != 400 {
		t.Fatalf("rich without $select: %d %s", r.Status, r.Body)
	}

	s.SetMailboxOverQuota(mbB, true)
	r = createSub(t, s, tok, mailSubBody(rx, "users/"+mbB+"/messages", now.Add(time.Hour)))
	if c, m := r.ErrorCodeMsg(t); r.Status != 403 || c != "ExtensionError" || m != mailboxQuotaMessage {
		t.Fatalf("over quota: %d %s", r.Status, r.Body)
	}
	const denied = "0a1b2c3d-0000-4000-8000-00000000000d"
	s.SetMailboxAccessDenied(denied, true)
	r = createSub(t, s, tok, mailSubBody(rx, "users/"+denied+"/messages", now.Add(time.Hour)))
	if _, m := r.ErrorCodeMsg(t); r.Status != 403 || m != accessPolicyCreateMessage {
		t.Fatalf("access policy: %d %s", r.Status, r.Body)
	}

	// The quota counts every app's subscriptions on the mailbox, whatever the case of the path.
	s.SetMailboxSubscriptionQuota(2)
	const third = "3d4f9a7c-1111-4222-8333-444455556666"
	s.SeedSubscription(Subscription{Resource: "/Users/" + strings.ToUpper(third) + "/Events", ApplicationID: "c0ffee00-0000-4000-8000-000000000001"})
	if r := createSub(t, s, tok, mailSubBody(rx, "users/"+third+"/messages", now.Add(time.Hour))); r.Status != 201 {
		t.Fatalf("one of two used: %d %s", r.Status, r.Body)
	}
	r = createSub(t, s, tok, mailSubBody(rx, "users/"+third+"/mailFolders('inbox')/messages", now.Add(time.Hour)))
	if _, m := r.ErrorCodeMsg(t); r.Status != 403 || m != mailboxQuotaMessage {
		t.Fatalf("quota shared by all apps: %d %s", r.Status, r.Body)
	}
}
