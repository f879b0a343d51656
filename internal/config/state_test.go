package config

import (
	"strings"
	"testing"
)

func TestObjectStateSettings(t *testing.T) {
	c := Load(env(nil))
	if c.StateTable != "graphstate" || c.EventsUnchanged != "suppress" {
		t.Errorf("defaults: table %q, unchanged %q", c.StateTable, c.EventsUnchanged)
	}
	c = Load(env(map[string]string{StateTable: "State2", EventsUnchanged: "Emit"}))
	if err := c.Check(StateTable, EventsUnchanged); err != nil || c.StateTable != "State2" || c.EventsUnchanged != "emit" {
		t.Errorf("table %q, unchanged %q, %v", c.StateTable, c.EventsUnchanged, err)
	}
	for setting, values := range map[string][]string{
		StateTable:      {"2state", "ab", "graph-state", "graph_state", strings.Repeat("a", 64)},
		EventsUnchanged: {"drop", "true"},
	} {
		for _, v := range values {
			c := Load(env(map[string]string{setting: v}))
			err := c.Check(setting)
			if err == nil || !strings.HasPrefix(err.Error(), "app settings: "+setting+" must be") {
				t.Errorf("%s=%q: %v, want a problem naming the setting", setting, v, err)
			}
			if c.StateTable != DefaultStateTable || c.EventsUnchanged != DefaultEventsUnchanged {
				t.Errorf("%s=%q: a malformed value must leave the default, got %q %q", setting, v, c.StateTable, c.EventsUnchanged)
			}
		}
	}
	if c := Load(env(map[string]string{StateTable: "a" + strings.Repeat("1", 62)})); c.Check(StateTable) != nil {
		t.Errorf("a 63-character name is valid: %v", c.Check(StateTable))
	}
}

func TestTableEndpoint(t *testing.T) {
	t.Run("development storage", func(t *testing.T) {
		for in, want := range map[string]string{
			"UseDevelopmentStorage=true": "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;",
			"UseDevelopmentStorage=true;DevelopmentStorageProxyUri=http://azurite": "TableEndpoint=http://azurite:10002/devstoreaccount1;",
		} {
			if cs := Load(env(map[string]string{Storage: in})).Storage.ConnectionString.Reveal(); !strings.Contains(cs, want) {
				t.Errorf("%s expands to %q, which lacks %q", in, cs, want)
			}
		}
	})
	t.Run("connection string with only a table endpoint", func(t *testing.T) {
		c := Load(env(map[string]string{Storage: "TableEndpoint=https://t.example.net/;SharedAccessSignature=sv=x"}))
		if err := c.Check(Storage); err != nil {
			t.Error(err)
		}
	})
	t.Run("identity by account name", func(t *testing.T) {
		s := Load(env(map[string]string{Storage + "__accountName": "acct"})).Storage
		if s.TableServiceURL != "https://acct.table.core.windows.net" {
			t.Errorf("table URL %q", s.TableServiceURL)
		}
	})
	t.Run("identity by service URI", func(t *testing.T) {
		c := Load(env(map[string]string{Storage + "__tableServiceUri": "https://t.example.net/", Storage + "__accountName": "acct"}))
		if c.Storage.TableServiceURL != "https://t.example.net" || !c.Storage.IsSet() || !c.Storage.UsesIdentity() {
			t.Errorf("%+v", c.Storage)
		}
		c = Load(env(map[string]string{Storage + "__tableServiceUri": "http://remote.example/"}))
		if err := c.Check(Storage + "__tableServiceUri"); err == nil || !strings.Contains(err.Error(), "https service URL") {
			t.Errorf("plain http accepted: %v", err)
		}
		if c := Load(env(map[string]string{Storage + "__tableServiceUri": "https://t.example.net"})); !c.Storage.IsSet() {
			t.Error("a table service URI alone is a storage setting")
		}
	})
}
