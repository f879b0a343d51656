package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaults(t *testing.T) {
	c := Load(env(nil))
	if c.GraphBaseURL != DefaultGraphBaseURL || !slices.Equal(c.Resources, []ResourceSpec{{Collection: Users}}) || c.ChangeType() != "deleted,updated" ||
		c.ResyncInitial != "latest" || c.ResyncContainer != "graph-webhooks" || !slices.Equal(c.UserSelect, DefaultUserSelect) ||
		!slices.Equal(c.GroupSelect, DefaultGroupSelect) {
		t.Errorf("defaults wrong: %+v", c)
	}
	if ps := c.Problems(); len(ps) != 0 {
		t.Errorf("empty settings are not malformed, got %v", ps)
	}
	err := c.Check(TenantID, ClientState, NotificationURL, Storage, ClientID)
	for _, name := range []string{TenantID, ClientState, NotificationURL, Storage, ClientID} {
		if err == nil || !strings.Contains(err.Error(), name+" is not set") {
			t.Errorf("Check error %v does not name %s", err, name)
		}
	}
}

func TestMalformedSettingsAreNamed(t *testing.T) {
	tests := []struct {
		setting, value, want string
	}{
		{TenantID, "contoso.onmicrosoft.com", "GUID (Directory ID"},
		{TenantID, "not-a-guid", "must be a GUID"},
		{ClientID, "xyz", "must be a GUID"},
		{AuthorityHost, "http://login.example", "https URL"},
		{DisableInstanceDiscovery, "maybe", "true or false"},
		{GraphBaseURL, "http://graph.microsoft.com/v1.0", "https URL"},
		{NotificationURL, "http://example.com/api/webhook", "public https URL"},
		{LifecycleNotificationURL, "ftp://x", "public https URL"},
		{ClientState, "too-short", "16 to 128 characters long (it has 9)"},
		{ClientStatePrevious, strings.Repeat("x", 129), "16 to 128"},
		{Resource, "devices", "users, groups, users/{id} and groups/{id}"},
		{Resource, "users/alice@contoso.com", "a GUID"},
		{Resource, "users/../subscriptions", "a GUID"},
		{Resource, "groups,groups", "names groups twice"},
		{Resource, "users,users/6e1f0001-7c3a-4b2d-9e8f-0a1b2c3d4e5f", "whole collection already covers it"},
		{GroupSelect, "displayName,members/$ref", "group property names"},
		{ChangeType, "created,updated", "cannot contain created"},
		{ChangeType, "updated,renamed", "comma-separated list of updated and deleted"},
		{UserSelect, "displayName,mail;drop", "user property names"},
		{RenewSchedule, "5 4 * * 1", "6 fields"},
		{ResyncInitial, "sometimes", "latest, full"},
		{ResyncContainer, "Graph_Webhooks", "container name"},
		{Storage, "not a connection string", "connection string"},
		{Storage + "__queueServiceUri", "http://remote.example/", "https service URL"},
		{Storage + "__credential", "password", "managedidentity"},
	}
	for _, tt := range tests {
		t.Run(tt.setting+"="+tt.value, func(t *testing.T) {
			c := Load(env(map[string]string{tt.setting: tt.value}))
			err := c.Check(tt.setting)
			if err == nil || !strings.Contains(err.Error(), tt.setting+" ") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Check(%s) = %v, want it to name the setting and say %q", tt.setting, err, tt.want)
			}
			if len(tt.value) > 3 && strings.Contains(err.Error(), tt.value) {
				t.Errorf("the error repeats the value, which may be a secret: %v", err)
			}
		})
	}
}

func TestCheckOnlyNamedSettings(t *testing.T) {
	c := Load(env(map[string]string{TenantID: "8C1F4B2E-0D6A-4F57-9A3E-2B9D7C6E5F41", ClientState: strings.Repeat("s", 16), ResyncInitial: "bogus"}))
	if err := c.Check(TenantID, ClientState); err != nil {
		t.Errorf("a malformed setting the caller does not need must not fail it: %v", err)
	}
	if c.TenantID != "8c1f4b2e-0d6a-4f57-9a3e-2b9d7c6e5f41" {
		t.Errorf("tenant not normalised: %s", c.TenantID)
	}
	if c.Check(ResyncInitial) == nil {
		t.Error("the malformed setting is not reported when asked for")
	}
}

func TestParsedValues(t *testing.T) {
	c := Load(env(map[string]string{
		Resource:                 "/Users/6e1f0001-7c3a-4b2d-9e8f-0a1b2c3d4e5f",
		ChangeType:               " deleted , updated,updated",
		UserSelect:               "displayName, mail ,ID",
		NotificationURL:          "https://app.azurewebsites.net/api/webhook?code=abc",
		AuthorityHost:            "https://login.microsoftonline.us",
		GraphBaseURL:             "https://graph.microsoft.us/v1.0/",
		DisableInstanceDiscovery: "true",
		ClientState:              "  spaces count as characters ",
	}))
	if want := []ResourceSpec{{Collection: Users, ID: "6e1f0001-7c3a-4b2d-9e8f-0a1b2c3d4e5f"}}; !slices.Equal(c.Resources, want) {
		t.Errorf("Resources = %v, want %v", c.Resources, want)
	}
	if c.ChangeType() != "deleted,updated" {
		t.Errorf("ChangeType = %q", c.ChangeType())
	}
	if !slices.Equal(c.UserSelect, []string{"id", "displayName", "mail"}) {
		t.Errorf("UserSelect = %v", c.UserSelect)
	}
	if c.LifecycleNotificationURL != c.NotificationURL {
		t.Errorf("lifecycle URL should default to the notification URL")
	}
	if c.AuthorityHost != "https://login.microsoftonline.us/" || c.GraphBaseURL != "https://graph.microsoft.us/v1.0" || !c.DisableInstanceDiscovery {
		t.Errorf("authority %q base %q discovery %v", c.AuthorityHost, c.GraphBaseURL, c.DisableInstanceDiscovery)
	}
	if c.ClientState.Reveal() != "  spaces count as characters " {
		t.Errorf("client state must be kept byte for byte")
	}
}

func TestLoopbackHTTPNotificationURLAllowed(t *testing.T) {
	for _, u := range []string{"http://127.0.0.1:7071/api/webhook", "http://localhost:7071/api/webhook", "http://[::1]:7071/api/webhook"} {
		if err := Load(env(map[string]string{NotificationURL: u})).Check(NotificationURL); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
}

func TestSecretsNeverPrint(t *testing.T) {
	const secret = "super-secret-value-123456"
	c := Load(env(map[string]string{ClientSecret: secret, ClientState: secret, CertificatePassword: secret,
		Storage: "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=" + secret}))
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "cfg", c, "state", c.ClientState)
	js, _ := json.Marshal(c)
	for _, out := range []string{fmt.Sprintf("%v %+v %#v %s", c, c, c, c.ClientState), buf.String(), string(js)} {
		if strings.Contains(out, secret) {
			t.Errorf("secret printed: %s", out)
		}
	}
	if c.ClientSecret.Reveal() != secret {
		t.Error("Reveal must return the value")
	}
}

func TestStorageForms(t *testing.T) {
	t.Run("development storage", func(t *testing.T) {
		c := Load(env(map[string]string{Storage: "UseDevelopmentStorage=true"}))
		cs := c.Storage.ConnectionString.Reveal()
		for _, want := range []string{"AccountName=devstoreaccount1", "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1", "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1", AzuriteAccountKey} {
			if !strings.Contains(cs, want) {
				t.Errorf("%q lacks %q", cs, want)
			}
		}
	})
	t.Run("proxy", func(t *testing.T) {
		c := Load(env(map[string]string{Storage: "UseDevelopmentStorage=true;DevelopmentStorageProxyUri=http://azurite"}))
		if cs := c.Storage.ConnectionString.Reveal(); !strings.Contains(cs, "QueueEndpoint=http://azurite:10001/devstoreaccount1") {
			t.Errorf("proxy not honoured: %s", cs)
		}
	})
	t.Run("identity by account name", func(t *testing.T) {
		c := Load(env(map[string]string{Storage + "__accountName": "acct", Storage + "__credential": "managedidentity", Storage + "__clientId": "cid"}))
		s := c.Storage
		if !s.UsesIdentity() || s.QueueServiceURL != "https://acct.queue.core.windows.net" || s.BlobServiceURL != "https://acct.blob.core.windows.net" || s.ClientID != "cid" {
			t.Errorf("%+v", s)
		}
		if err := c.Check(Storage); err != nil {
			t.Error(err)
		}
	})
	t.Run("account name that is not one", func(t *testing.T) {
		// The name becomes the storage host and receives the identity's token.
		for _, name := range []string{"evil.example#", "Acct", "ab", "a234567890123456789012345", "acct.queue.core.windows.net/x", "acct-1", "ac ct"} {
			c := Load(env(map[string]string{Storage + "__accountName": name, Storage + "__credential": "managedidentity"}))
			err := c.Check(Storage)
			if err == nil || !strings.Contains(err.Error(), Storage+"__accountName") || strings.Contains(err.Error(), name) {
				t.Errorf("%q: err = %v, want a problem naming %s__accountName without quoting the value", name, err, Storage)
			}
			if c.Storage.QueueServiceURL != "" || c.Storage.BlobServiceURL != "" {
				t.Errorf("%q: service URLs %q, %q built from a bad name", name, c.Storage.QueueServiceURL, c.Storage.BlobServiceURL)
			}
		}
		for _, name := range []string{"abc", "acct01", "a23456789012345678901234"} {
			if err := Load(env(map[string]string{Storage + "__accountName": name})).Check(Storage); err != nil {
				t.Errorf("%q: %v", name, err)
			}
		}
	})
	t.Run("identity by service URI", func(t *testing.T) {
		s := Load(env(map[string]string{Storage + "__queueServiceUri": "https://q.example.net/"})).Storage
		if s.QueueServiceURL != "https://q.example.net" || s.BlobServiceURL != "" {
			t.Errorf("%+v", s)
		}
	})
}

func TestResourceList(t *testing.T) {
	const g1, g2 = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", "1b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
	c := Load(env(map[string]string{Resource: " Users , groups/" + strings.ToUpper(g1) + ",/groups/" + g2 + "/"}))
	if err := c.Check(Resource); err != nil {
		t.Fatal(err)
	}
	want := []ResourceSpec{{Collection: Users}, {Collection: Groups, ID: g1}, {Collection: Groups, ID: g2}}
	if !slices.Equal(c.Resources, want) {
		t.Fatalf("Resources = %v, want %v", c.Resources, want)
	}
	if got := c.Collections(); !slices.Equal(got, []string{Users, Groups}) {
		t.Errorf("Collections = %v", got)
	}
	if c.Only(Users) != nil {
		t.Errorf("Only(users) = %v, want nil (the whole collection)", c.Only(Users))
	}
	if only := c.Only(Groups); len(only) != 2 || !only[g1] || !only[g2] {
		t.Errorf("Only(groups) = %v", only)
	}
	if want[1].Path() != "groups/"+g1 {
		t.Errorf("Path = %q", want[1].Path())
	}
}

func TestEventHubNotificationURL(t *testing.T) {
	good := "EventHub:https://contoso-ns.servicebus.windows.net/eventhubname/graph?tenantId=contoso.onmicrosoft.com"
	c := Load(env(map[string]string{NotificationURL: good}))
	if err := c.Check(NotificationURL); err != nil || c.NotificationURL != good || c.LifecycleNotificationURL != good {
		t.Fatalf("%v: %q", err, c.NotificationURL)
	}
	for _, bad := range []string{
		"EventHub:http://contoso-ns.servicebus.windows.net/eventhubname/graph",
		"EventHub:https://contoso-ns.servicebus.windows.net/graph",
		"EventHub:https://contoso-ns.servicebus.windows.net/eventhubname/",
		"EventHub:not a url",
	} {
		if err := Load(env(map[string]string{NotificationURL: bad})).Check(NotificationURL); err == nil || !strings.Contains(err.Error(), "Event Hubs URL") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestDriveResources(t *testing.T) {
	const drive = "b!-RIj2DuyvEyV1T4NlOaMHk8XkS_I8MdFlUCq1BlcjgmhRfAj3-Z8RY2VpuvV_tpd"
	c := Load(env(map[string]string{Resource: "users, drives/" + drive + ", /drives/D4648F06C91D9D3D/", DriveItemSelect: "name,size"}))
	if err := c.Check(Resource, DriveItemSelect); err != nil {
		t.Fatal(err)
	}
	want := []ResourceSpec{{Collection: Users}, {Collection: "drives", ID: drive}, {Collection: "drives", ID: "D4648F06C91D9D3D"}}
	if !slices.Equal(c.Resources, want) {
		t.Fatalf("Resources = %v", c.Resources)
	}
	if got := c.Collections(); !slices.Equal(got, []string{"users", "drives/" + drive, "drives/D4648F06C91D9D3D"}) {
		t.Errorf("Collections = %v: want each drive its own scope, its id's case kept", got)
	}
	if got := c.Select("driveItems"); !slices.Equal(got, []string{"id", "name", "size"}) {
		t.Errorf("Select(driveItems) = %v", got)
	}
	if got := c.Select("unknown"); got != nil {
		t.Errorf("Select(unknown) = %v: an unknown collection has no select", got)
	}
	if got := SelectSetting("driveItems"); got != DriveItemSelect {
		t.Errorf("SelectSetting = %q", got)
	}
	plans := c.Plans()
	if len(plans) != 3 || plans[1].Resource != "drives/"+drive+"/root" || plans[1].ChangeType() != "updated" || plans[0].ChangeType() != "deleted,updated" {
		t.Errorf("plans %+v", plans)
	}
	for _, bad := range []string{"drives", "drives/" + drive + "/root", "drives/a b", "drives/" + drive + ",drives/" + drive} {
		if err := Load(env(map[string]string{Resource: bad})).Check(Resource); err == nil {
			t.Errorf("GRAPH_RESOURCE=%s accepted", bad)
		}
	}
	if got := Load(env(nil)).Select("driveItems"); !slices.Equal(got, DefaultDriveItemSelect) {
		t.Errorf("default drive item select %v", got)
	}
}

func TestSecretsListsEverySecretSetting(t *testing.T) {
	env := map[string]string{
		NotificationURL:     "https://app.example/api/webhook?code=Fk%2B1%3D%3D",
		ClientState:         "client-state-value",
		ClientSecret:        "client-secret-value",
		CertificatePassword: "cert-password",
		Storage:             "DefaultEndpointsProtocol=https;AccountName=acct;SharedAccessSignature=sv=2024&sig=SiGnAtUrE;EndpointSuffix=core.windows.net",
	}
	got := Load(func(k string) string { return env[k] }).Secrets()
	for _, want := range []string{"Fk+1==", "client-state-value", "client-secret-value", "cert-password", "SiGnAtUrE"} {
		if !slices.Contains(got, want) {
			t.Errorf("Secrets() = %q lacks %q", got, want)
		}
	}
	env[Storage] = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + AzuriteAccountKey
	if got := Load(func(k string) string { return env[k] }).Secrets(); !slices.Contains(got, AzuriteAccountKey) {
		t.Errorf("Secrets() = %q lacks the account key", got)
	}
}
