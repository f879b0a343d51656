package family

import (
	"testing"

	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
)

const itemID = "AAMkAGI2THVSAAA-_x="

func TestRouteMailbox(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    graph.ChangeNotification
		kind Kind
		ok   bool
		err  bool
	}{
		{"message", graph.ChangeNotification{Resource: "Users/" + guid + "/Messages/" + itemID, ResourceData: &graph.ResourceData{ODataType: "#Microsoft.Graph.Message", ID: itemID}}, Messages, true, false},
		{"event, any case", graph.ChangeNotification{Resource: "/users/" + guid + "/events/" + itemID}, Events, true, false},
		{"a UPN for the mailbox", graph.ChangeNotification{Resource: "Users/adele@contoso.com/Messages/" + itemID}, Messages, true, true},
		{"an id off the grammar", graph.ChangeNotification{Resource: "Users/" + guid + "/Messages/..%2f"}, Messages, true, true},
		{"resourceData names another item", graph.ChangeNotification{Resource: "Users/" + guid + "/Messages/" + itemID, ResourceData: &graph.ResourceData{ID: "AAMkOther"}}, Messages, true, true},
		{"contacts are no family's", graph.ChangeNotification{Resource: "Users/" + guid + "/Contacts/" + itemID}, Kind{}, false, false},
		{"a user is the directory's", graph.ChangeNotification{Resource: "Users/" + guid}, Kind{}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := Mailboxes.Route(&tc.n)
			if ok != tc.ok || (err != nil) != tc.err {
				t.Fatalf("Route = %+v, %v, %v", got, ok, err)
			}
			if ok && !tc.err {
				if got.Kind != tc.kind || got.ID != itemID || got.Scope != MailboxScope(guid, tc.kind) || got.Key != got.Scope+"/"+itemID {
					t.Errorf("Route = %+v", got)
				}
				if u, k, ok := MailboxOf(got.Scope); !ok || u != guid || k != tc.kind {
					t.Errorf("MailboxOf(%q) = %q %v %v", got.Scope, u, k, ok)
				}
			}
		})
	}
	// Through the table: a mailbox notification reaches the mailbox family, and is believable.
	n := graph.ChangeNotification{Resource: "Users/" + guid + "/Messages/" + itemID}
	if got, ok, err := Route(&n); !ok || err != nil || got.Family != &Mailboxes || !Believable(&n) {
		t.Fatalf("table Route = %+v %v %v", got, ok, err)
	}
	if _, _, err := ParseEntry("mailboxes"); err == nil {
		t.Fatal("GRAPH_RESOURCE=mailboxes must point to GRAPH_MAILBOXES")
	}
}
