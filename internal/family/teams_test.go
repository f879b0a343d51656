package family

import (
	"maps"
	"testing"

	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
)

func TestTeamsRoute(t *testing.T) {
	const team = "6e1f0001-7c3a-4b2d-9e8f-0a1b2c3d4e5f"
	tests := []struct {
		resource string
		ok       bool
		bad      bool
		id       string
		place    map[string]string
	}{
		{"teams('" + team + "')/channels('19:abc@thread.tacv2')/messages('1733480000001')", true, false, "1733480000001",
			map[string]string{"teamId": team, "channelId": "19:abc@thread.tacv2"}},
		{"Teams('6E1F0001-7C3A-4B2D-9E8F-0A1B2C3D4E5F')/Channels('19:abc@thread.tacv2')/Messages('1')/replies('2')", true, false, "2",
			map[string]string{"teamId": team, "channelId": "19:abc@thread.tacv2"}},
		{"chats('19:xyz@thread.v2')/messages('42')", true, false, "42", map[string]string{"chatId": "19:xyz@thread.v2"}},
		{"chats('19:00000000-0000-0000-0000-000000000001_00000000-0000-0000-0000-000000000002@unq.gbl.spaces')/messages('42')", true, false, "42",
			map[string]string{"chatId": "19:00000000-0000-0000-0000-000000000001_00000000-0000-0000-0000-000000000002@unq.gbl.spaces"}},
		{"teams('sales')/channels('19:abc@thread.tacv2')/messages('1')", true, true, "", nil},
		{"chats('19:xyz@thread.v2')/messages('../../users')", true, true, "", nil},
		{"chats('19:x y@thread.v2')/messages('1')", true, true, "", nil},
		{"Users/" + team, false, false, "", nil},
	}
	for _, tt := range tests {
		n := &graph.ChangeNotification{Resource: tt.resource, ChangeType: "created"}
		tg, ok, err := Route(n)
		if tt.ok != (ok && tg.Family == &Teams) && !tt.bad || (err != nil) != tt.bad {
			t.Errorf("%s: ok %v family %v err %v", tt.resource, ok, tg.Family, err)
			continue
		}
		if tt.bad || !tt.ok {
			continue
		}
		if tg.Kind != ChatMessages || tg.ID != tt.id || !maps.Equal(tg.Context, tt.place) {
			t.Errorf("%s: %+v", tt.resource, tg)
		}
	}
	if !Believable(&graph.ChangeNotification{Resource: tests[0].resource}) || Believable(&graph.ChangeNotification{Resource: tests[4].resource}) {
		t.Error("Believable disagrees with the grammar")
	}
}
