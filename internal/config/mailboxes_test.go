package config

import (
	"slices"
	"strings"
	"testing"

	"github.com/graphwebhooks/graph-webhooks-go/internal/family"
)

func TestMailboxSettings(t *testing.T) {
	c := Load(env(nil))
	m := c.Mailboxes
	if m.Configured() || !slices.Equal(m.Resources, []string{Messages}) || !slices.Equal(c.Select("messages"), strings.Split(family.Messages.DefaultSelect, ",")) ||
		!slices.Equal(c.Select("events"), strings.Split(family.Events.DefaultSelect, ",")) {
		t.Fatalf("defaults: %+v", m)
	}
	c = Load(env(map[string]string{
		Mailboxes:              " 6E1F0001-7C3A-4B2D-9E8F-0A1B2C3D4E5F, group:0b6fa6b9-0c0a-4f47-9a43-2d1b1e4c5f60,GROUP:0B6FA6B9-0C0A-4F47-9A43-2D1B1E4C5F60, 6e1f0001-7c3a-4b2d-9e8f-0a1b2c3d4e5f",
		MailboxResources:       "events, Messages,events",
		"GRAPH_MESSAGE_SELECT": "subject,isRead",
		"GRAPH_EVENT_SELECT":   "subject",
	}))
	m = c.Mailboxes
	if ps := c.Problems(); len(ps) != 0 {
		t.Fatalf("problems: %v", ps)
	}
	if !slices.Equal(m.Users, []string{"6e1f0001-7c3a-4b2d-9e8f-0a1b2c3d4e5f"}) || !slices.Equal(m.Groups, []string{"0b6fa6b9-0c0a-4f47-9a43-2d1b1e4c5f60"}) {
		t.Fatalf("ids (lower case, once each): %+v", m)
	}
	if !slices.Equal(m.Resources, []string{Events, Messages}) || !slices.Equal(c.Select("messages"), []string{"id", "subject", "isRead"}) || !slices.Equal(c.Select("events"), []string{"id", "subject"}) {
		t.Fatalf("resources and selects: %+v", m)
	}
	if !m.Configured() {
		t.Fatal("Configured")
	}
}

func TestMalformedMailboxSettingsAreNamed(t *testing.T) {
	for _, tc := range []struct{ setting, value, want string }{
		{Mailboxes, "alice@contoso.com", "user principal name is not accepted"},
		{Mailboxes, "group:../users", "GUID"},
		{Mailboxes, "team:0b6fa6b9-0c0a-4f47-9a43-2d1b1e4c5f60", "group:{group object id}"},
		{MailboxResources, "contacts", "messages, events or messages,events"},
		{"GRAPH_MESSAGE_SELECT", "subject,body/content", "property names"},
		{"GRAPH_EVENT_SELECT", "start;end", "property names"},
	} {
		c := Load(env(map[string]string{tc.setting: tc.value}))
		err := c.Check(tc.setting)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%q: %v, want %q", tc.setting, tc.value, err, tc.want)
		}
		if tc.setting == Mailboxes && c.Mailboxes.Configured() {
			t.Errorf("%s=%q: a malformed list follows nothing, got %+v", tc.setting, tc.value, c.Mailboxes)
		}
	}
}
