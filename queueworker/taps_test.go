package queueworker

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/directory"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

const (
	tapDrive   = "b!-RIj2DuyvEyV1T4NlOaMHk8XkS_I8MdFlUCq1BlcjgmhRfAj3-Z8RY2VpuvV_tpd"
	otherDrive = "b!unconfigured0000000000000000000000000000000000000000000000000000"
)

// tapNote is a drive notification as Graph sends it: the subscribed root as resource, sometimes an item
// id in resourceData that is not to be relied on.
func tapNote(drive, itemID string) graph.ChangeNotification {
	rd := ""
	if itemID != "" {
		rd = fmt.Sprintf(`,"resourceData":{"id":%q}`, itemID)
	}
	raw := fmt.Sprintf(`{"subscriptionId":%q,"changeType":"updated","tenantId":%q,"resource":"drives/%s/root"%s}`, testSub, testTenant, drive, rd)
	var n graph.ChangeNotification
	if err := json.Unmarshal([]byte(raw), &n); err != nil {
		panic(err)
	}
	return n
}

// Taps become one pass request per drive, never a Graph read; a tap for a drive no subscription covers is
// dropped and counted.
func TestUnitTapsRequestOnePassPerDrive(t *testing.T) {
	u := newUnit(t, config.Resource, "users,drives/"+tapDrive)
	u.g.Put(directory.Users, u.user(1))
	evs, logs := u.run(u.msg(message.KindNotifications,
		tapNote(tapDrive, ""), tapNote(tapDrive, "01BYE5RZ6QN3ZWBTUFOFD3GSPGOHDJD36K"), tapNote(tapDrive, "../../users"),
		tapNote(otherDrive, ""), note(guid(1), "updated")))
	if got := u.rs.calls(); !slices.Equal(got, []string{"drives/" + tapDrive + ":" + TapReason}) {
		t.Errorf("pass requests %v: want one for the configured drive", got)
	}
	if len(evs) != 1 || evs[0].ResourceID != guid(1) {
		t.Errorf("events %+v: want the user's alone", evs)
	}
	for _, b := range u.g.Batches() {
		for _, get := range b {
			if strings.Contains(get.Path, "drive") {
				t.Errorf("a tap was read: %s", get.Path)
			}
		}
	}
	if !slices.ContainsFunc(logs, func(l string) bool {
		return strings.Contains(l, "4 tap notifications") && strings.Contains(l, "1 scope(s)") && strings.Contains(l, "1 dropped")
	}) {
		t.Errorf("logs %q: want the taps counted, one dropped", logs)
	}
	if n := len(u.q.Messages(message.WorkQueue)); n != 0 {
		t.Errorf("%d messages re-enqueued: a requested pass is the taps' whole work", n)
	}
	if p := u.poisoned(); len(p) != 0 {
		t.Errorf("poisoned %+v", p)
	}
}

// A drive resource off the grammar never reaches a pass: the notification is set aside as malformed.
func TestUnitTapWithBadDriveIDIsPoisoned(t *testing.T) {
	u := newUnit(t, config.Resource, "drives/"+tapDrive)
	u.run(u.msg(message.KindNotifications, tapNote("b!x%2F..", ""), tapNote(tapDrive+"/items/x", "")))
	if got := u.rs.calls(); len(got) != 0 {
		t.Errorf("pass requests %v", got)
	}
	if p := u.poisoned(); len(p) != 1 || len(p[0].Notifications) != 2 {
		t.Fatalf("poisoned %+v: want both taps set aside", p)
	}
}

// A pass that cannot be requested leaves its taps for a later attempt.
func TestUnitTapRequestFailureIsRetried(t *testing.T) {
	u := newUnit(t, config.Resource, "drives/"+tapDrive)
	u.rs.err = errors.New("storage is down")
	u.run(u.msg(message.KindNotifications, tapNote(tapDrive, "")))
	ms := u.q.Messages(message.WorkQueue)
	if len(ms) != 1 {
		t.Fatalf("%d messages re-enqueued, want the tap's", len(ms))
	}
	m, err := message.Decode(ms[0].Text)
	if err != nil || len(m.Notifications) != 1 || m.Attempt != 1 {
		t.Fatalf("re-enqueued %+v (%v)", m, err)
	}
}
