package mailbox

import (
	"strings"
	"testing"

	"github.com/graphwebhooks/graph-webhooks-go/internal/directory"
	"github.com/graphwebhooks/graph-webhooks-go/internal/family"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
)

const user = "6E7B768E-07E2-4810-8459-485F84F8F204"

func TestPathChecksAndEscapes(t *testing.T) {
	p, err := Path(Item{User: user, Kind: family.Messages, ID: "AAMkAGI2-_x=="})
	if err != nil || p != "/users/"+strings.ToLower(user)+"/messages/AAMkAGI2-_x==" {
		t.Fatalf("Path = %q, %v", p, err)
	}
	for _, it := range []Item{
		{User: "adele@contoso.com", Kind: family.Messages, ID: "AAMk"},
		{User: user, Kind: family.Messages, ID: "../../me"},
		{User: user, Kind: family.Users, ID: "AAMk"},
		{User: user, Kind: family.Events, ID: ""},
	} {
		if _, err := Path(it); err == nil {
			t.Errorf("%+v reached a path", it)
		}
	}
}

func TestVerdict(t *testing.T) {
	obj := graph.Object{"id": "x"}
	for _, tc := range []struct {
		rd         directory.Read
		allCreated bool
		ct         graph.ChangeType
		settled    bool
	}{
		{directory.Read{Outcome: directory.Found, Object: obj}, true, graph.Created, true},
		{directory.Read{Outcome: directory.Found, Object: obj}, false, graph.Updated, true},
		{directory.Read{Outcome: directory.Gone}, true, graph.Deleted, true},
		{directory.Read{Outcome: directory.Throttled}, false, "", false},
		{directory.Read{Outcome: directory.Refused}, false, "", false},
	} {
		ct, o, settled := Verdict(tc.rd, tc.allCreated)
		if ct != tc.ct || settled != tc.settled || (ct == graph.Deleted) != (o == nil && settled) {
			t.Errorf("Verdict(%v, %v) = %q %v %v", tc.rd.Outcome, tc.allCreated, ct, o, settled)
		}
	}
}
