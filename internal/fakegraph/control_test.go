package fakegraph

import (
	"io"
	"net/http"
	"testing"
)

func TestControlUserOperationsOnMissingUsersAnswer404(t *testing.T) {
	s := newTestServer(t, func(o *Options) { o.ControlAPI = true })
	s.AddUser(User{ID: "u1", Props: map[string]any{"displayName": "U"}})
	do := func(method, path string) int {
		req, err := http.NewRequest(method, s.URL()+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := s.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	steps := []struct {
		method, path string
		want         int
	}{
		{"POST", "/_control/users/nobody/softdelete", 404},
		{"POST", "/_control/users/nobody/restore", 404},
		{"POST", "/_control/users/nobody/delete", 404},
		{"DELETE", "/_control/users/nobody", 404},
		{"POST", "/_control/users/u1/restore", 404}, // active, not soft-deleted
		{"POST", "/_control/users/u1/softdelete", 204},
		{"POST", "/_control/users/u1/softdelete", 404}, // no longer active
		{"POST", "/_control/users/u1/restore", 204},
		{"DELETE", "/_control/users/u1", 204},
		{"DELETE", "/_control/users/u1", 404},
	}
	for _, st := range steps {
		if got := do(st.method, st.path); got != st.want {
			t.Fatalf("%s %s = %d; want %d", st.method, st.path, got, st.want)
		}
	}
	if _, ok := s.User("u1"); ok || s.SoftDeleted("u1") {
		t.Error("DELETE left the user in the directory")
	}
	// A soft-deleted user can be deleted for good with either route.
	s.AddUser(User{ID: "u2"})
	s.SoftDeleteUser("u2")
	if got := do("POST", "/_control/users/u2/delete"); got != 204 || s.SoftDeleted("u2") {
		t.Errorf("delete of a soft-deleted user: %d", got)
	}
}
