package graph

import (
	"net/http"
	"strings"
	"testing"
)

func TestDelta(t *testing.T) {
	var base string
	c, rec, srv := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		switch {
		case q.Get("$deltatoken") == "latest":
			writeJSON(w, 200, map[string]any{"value": []any{}, "@odata.deltaLink": base + "/users/delta?$deltatoken=T0"})
		case q.Get("$deltatoken") == "T0":
			writeJSON(w, 200, map[string]any{"value": []any{
				map[string]any{"id": "u1", "displayName": "New Name"},
				map[string]any{"id": "u2", "@removed": map[string]any{"reason": "changed"}},
			}, "@odata.nextLink": base + "/users/delta?$skiptoken=S1"})
		case q.Get("$skiptoken") == "S1":
			writeJSON(w, 200, map[string]any{"value": []any{}, "@odata.deltaLink": "https://graph.evil.test/v1.0/users/delta?$deltatoken=T1"})
		default:
			writeJSON(w, 200, map[string]any{"value": []any{map[string]any{"id": "u1"}}, "@odata.deltaLink": base + "/users/delta?$deltatoken=T0"})
		}
	}), ClientOptions{})
	base = srv.URL + "/v1.0"
	ctx := t.Context()

	p, err := c.DeltaStart(ctx, "users", []string{"id", "displayName"}, true)
	if err != nil || p.DeltaLink != base+"/users/delta?$deltatoken=T0" || len(p.Objects) != 0 {
		t.Fatalf("start latest: %+v %v", p, err)
	}
	if r := rec.all()[0]; r.Path != "/v1.0/users/delta" || r.RawQuery != "$select=id,displayName&$deltatoken=latest" {
		t.Errorf("first request %s?%s", r.Path, r.RawQuery)
	}
	p, err = c.DeltaStart(ctx, "users", []string{"id"}, false)
	if err != nil || len(p.Objects) != 1 || rec.all()[1].RawQuery != "$select=id" {
		t.Fatalf("start full: %+v %v %q", p, err, rec.all()[1].RawQuery)
	}

	p, err = c.Delta(ctx, base+"/users/delta?$deltatoken=T0")
	if err != nil || p.NextLink == "" || p.DeltaLink != "" || len(p.Objects) != 2 || p.Objects[1].Removed() != "changed" {
		t.Fatalf("delta: %+v %v", p, err)
	}
	// A link to another host coming back from the server is refused, and its token is not repeated.
	_, err = c.Delta(ctx, p.NextLink)
	if KindOf(err) != KindBadRequest || strings.Contains(err.Error(), "T1") {
		t.Errorf("foreign deltaLink: %v", err)
	}
	// So is a stored link that points elsewhere, before any request.
	n := rec.count()
	if _, err := c.Delta(ctx, "https://graph.evil.test/v1.0/users/delta?$deltatoken=T0"); KindOf(err) != KindBadRequest || rec.count() != n {
		t.Errorf("foreign stored link: %v", err)
	}
	if _, err := c.Delta(ctx, ""); KindOf(err) != KindBadRequest || !strings.Contains(err.Error(), "DeltaStart") {
		t.Errorf("empty link: %v", err)
	}
}
