package graph

import (
	"encoding/json"
	"net/http"
	"testing"
)

func TestGetUser(t *testing.T) {
	c, rec, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#users(id,displayName)/$entity",
			"id":"6e1f","displayName":"Ada","accountEnabled":true,"employeeNumber":638700000000000001,"@odata.type":"#microsoft.graph.user"}`))
	}), ClientOptions{})
	u, err := c.GetObject(t.Context(), "users", "6e1f", []string{"id", "displayName", "accountEnabled"})
	if err != nil {
		t.Fatal(err)
	}
	if u.ID() != "6e1f" || u["displayName"] != "Ada" || u["accountEnabled"] != true {
		t.Errorf("user %v", u)
	}
	if n, ok := u["employeeNumber"].(json.Number); !ok || n.String() != "638700000000000001" {
		t.Errorf("large number lost precision: %#v", u["employeeNumber"])
	}
	if _, ok := u["@odata.context"]; ok {
		t.Error("@odata.context kept")
	}
	r := rec.all()[0]
	if r.Path != "/v1.0/users/6e1f" || r.RawQuery != "$select=id,displayName,accountEnabled" {
		t.Errorf("request %s?%s", r.Path, r.RawQuery)
	}

	if _, err := c.GetDeleted(t.Context(), "6e1f", nil); err != nil {
		t.Fatal(err)
	}
	if r := rec.all()[1]; r.Path != "/v1.0/directory/deletedItems/6e1f" || r.RawQuery != "" {
		t.Errorf("deleted request %s?%s", r.Path, r.RawQuery)
	}
	// A UPN with characters that matter in a path stays one segment.
	if _, err := c.GetObject(t.Context(), "users", "a/b#EXT#@x.com", nil); err != nil {
		t.Fatal(err)
	}
	if r := rec.all()[2]; r.Path != "/v1.0/users/a/b#EXT#@x.com" {
		t.Errorf("escaped path decoded to %q", r.Path)
	}
}

func TestUserRemoved(t *testing.T) {
	tests := []struct {
		u    Object
		want string
	}{
		{Object{"id": "1"}, ""},
		{Object{"id": "1", "@removed": map[string]any{"reason": "changed"}}, "changed"},
		{Object{"id": "1", "@removed": map[string]any{"reason": "deleted"}}, "deleted"},
		{Object{"id": "1", "@removed": map[string]any{}}, "deleted"},
	}
	for _, tt := range tests {
		if got := tt.u.Removed(); got != tt.want {
			t.Errorf("%v: Removed = %q, want %q", tt.u, got, tt.want)
		}
	}
	if (Object{}).ID() != "" || (Object{"id": 5}).ID() != "" {
		t.Error("ID of a user without a string id")
	}
}
