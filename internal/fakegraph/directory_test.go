package fakegraph

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"
)

func TestGetUser(t *testing.T) {
	clock := newFakeClock()
	s := newTestServer(t, func(o *Options) { o.Clock = clock.Now })
	tok := token(t, s)
	s.AddUser(User{ID: "u1", Props: map[string]any{"displayName": "Ada", "userPrincipalName": "ada@contoso.com",
		"accountEnabled": true, "department": "R&D", "jobTitle": "Eng"}})

	r := call(t, s, tok, "GET", "/v1.0/users/u1?$select=displayName,accountEnabled", nil)
	m := r.JSON(t)
	if r.Status != 200 || m["displayName"] != "Ada" || m["accountEnabled"] != true || m["id"] != "u1" || m["department"] != nil {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	if len(m) != 4 { // id, displayName, accountEnabled, @odata.context
		t.Fatalf("select returned %v", m)
	}
	m = call(t, s, tok, "GET", "/v1.0/users/ada@contoso.com", nil).JSON(t)
	if _, ok := m["surname"]; !ok || m["jobTitle"] != "Eng" || m["department"] != nil {
		t.Fatalf("default set %v", m)
	}
	if r := call(t, s, tok, "GET", "/v1.0/users/u1?$select=nonsense", nil); r.Status != 400 {
		t.Fatalf("bad select: %d", r.Status)
	}

	r = call(t, s, tok, "GET", "/v1.0/users/missing", nil)
	if c, msg := r.ErrorCodeMsg(t); r.Status != 404 || c != "Request_ResourceNotFound" ||
		msg != "Resource 'missing' does not exist or one of its queried reference-property objects are not present." {
		t.Fatalf("%d %s", r.Status, r.Body)
	}

	s.SoftDeleteUser("u1")
	if r := call(t, s, tok, "GET", "/v1.0/users/u1", nil); r.Status != 404 {
		t.Fatalf("soft-deleted user: %d", r.Status)
	}
	r = call(t, s, tok, "GET", "/v1.0/directory/deletedItems/u1", nil)
	m = r.JSON(t)
	if r.Status != 200 || m["@odata.type"] != "#microsoft.graph.user" || m["deletedDateTime"] != clock.Now().Format(time.RFC3339) {
		t.Fatalf("deletedItems: %d %s", r.Status, r.Body)
	}
	if r := call(t, s, tok, "POST", "/v1.0/directory/deletedItems/u1/restore", nil); r.Status != 200 {
		t.Fatalf("restore: %d", r.Status)
	}
	if r := call(t, s, tok, "GET", "/v1.0/directory/deletedItems/u1", nil); r.Status != 404 {
		t.Fatalf("restored user still deleted: %d", r.Status)
	}

	s.SetReplicationLag(time.Minute)
	s.AddUser(User{ID: "u2"})
	if r := call(t, s, tok, "GET", "/v1.0/users/u2", nil); r.Status != 404 {
		t.Fatalf("lagging user: %d", r.Status)
	}
	clock.Advance(time.Minute)
	if r := call(t, s, tok, "GET", "/v1.0/users/u2", nil); r.Status != 200 {
		t.Fatalf("after lag: %d", r.Status)
	}
	if r := call(t, s, tok, "GET", "/v1.0/devices", nil); r.Status != 400 {
		t.Fatalf("unknown segment: %d", r.Status)
	}
}

// deltaRound follows nextLinks from start and returns the items and the deltaLink.
func deltaRound(t *testing.T, s *Server, tok, start string) ([]map[string]any, string, int) {
	t.Helper()
	var items []map[string]any
	next, pages := start, 0
	for {
		r := call(t, s, tok, "GET", next, nil)
		if r.Status != 200 {
			t.Fatalf("%s: %d %s", next, r.Status, r.Body)
		}
		pages++
		m := r.JSON(t)
		for _, v := range m["value"].([]any) {
			items = append(items, v.(map[string]any))
		}
		nl, _ := m["@odata.nextLink"].(string)
		dl, _ := m["@odata.deltaLink"].(string)
		if (nl == "") == (dl == "") {
			t.Fatalf("page must have exactly one of nextLink/deltaLink: %v", m)
		}
		if dl != "" {
			return items, dl, pages
		}
		next = nl
	}
}

func TestUsersDelta(t *testing.T) {
	s := newTestServer(t, func(o *Options) { o.UserPageSize = 2 })
	tok := token(t, s)
	for i := range 5 {
		s.AddUser(User{ID: fmt.Sprintf("u%d", i), Props: map[string]any{"displayName": fmt.Sprint(i), "jobTitle": "x"}})
	}
	items, link, pages := deltaRound(t, s, tok, "/v1.0/users/delta?$select=displayName")
	if len(items) != 5 || pages != 3 || items[0]["jobTitle"] != nil {
		t.Fatalf("full round: %d items, %d pages, %v", len(items), pages, items[0])
	}
	s.UpdateUser("u0", map[string]any{"jobTitle": "y"}) // not selected: left out
	s.UpdateUser("u1", map[string]any{"displayName": "one"})
	s.UpdateUser("u1", map[string]any{"displayName": "uno"})
	s.SoftDeleteUser("u2")
	s.PermanentlyDeleteUser("u3")
	s.AddUser(User{ID: "u9", Props: map[string]any{"displayName": "nine"}})
	items, link2, _ := deltaRound(t, s, tok, link)
	got := map[string]string{}
	for _, it := range items {
		v, _ := it["displayName"].(string)
		if rm, ok := it["@removed"].(map[string]any); ok {
			v = "removed:" + rm["reason"].(string)
		}
		got[it["id"].(string)] = v
	}
	want := map[string]string{"u1": "uno", "u2": "removed:changed", "u3": "removed:deleted", "u9": "nine"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delta %v, want %v", got, want)
	}
	if items, _, _ := deltaRound(t, s, tok, link2); len(items) != 0 {
		t.Fatalf("no changes expected: %v", items)
	}
	r := call(t, s, tok, "GET", "/v1.0/users/delta?$deltatoken=latest", nil)
	if m := r.JSON(t); len(m["value"].([]any)) != 0 || m["@odata.deltaLink"] == nil {
		t.Fatalf("latest: %s", r.Body)
	}
	s.ExpireDeltaTokens()
	r = call(t, s, tok, "GET", link2, nil)
	if c, _ := r.ErrorCodeMsg(t); r.Status != 400 || c != "syncStateNotFound" {
		t.Fatalf("expired token: %d %s", r.Status, r.Body)
	}
}

func batchCall(t *testing.T, s *Server, tok string, reqs []map[string]any) (int, []map[string]any) {
	t.Helper()
	r := call(t, s, tok, "POST", "/v1.0/$batch", map[string]any{"requests": reqs})
	if r.Status != 200 {
		return r.Status, nil
	}
	var out struct {
		Responses []map[string]any `json:"responses"`
	}
	json.Unmarshal(r.Body, &out)
	return r.Status, out.Responses
}

func TestBatchMixed(t *testing.T) {
	s := newTestServer(t, nil)
	tok := token(t, s)
	s.AddUser(User{ID: "a", Props: map[string]any{"displayName": "A"}})
	s.AddUser(User{ID: "b", Props: map[string]any{"displayName": "B"}})
	s.ThrottleBatchItems(1, 1500*time.Millisecond)
	st, resps := batchCall(t, s, tok, []map[string]any{
		{"id": "1", "method": "GET", "url": "/users/b?$select=displayName"},
		{"id": "2", "method": "GET", "url": "/users/a?$select=displayName"},
		{"id": "3", "method": "GET", "url": "users/missing"},
	})
	if st != 200 || len(resps) != 3 {
		t.Fatalf("batch %d %v", st, resps)
	}
	byID := map[string]map[string]any{}
	for _, r := range resps {
		byID[r["id"].(string)] = r
	}
	if r := byID["1"]; r["status"] != float64(429) || r["headers"].(map[string]any)["Retry-After"] != "2" {
		t.Fatalf("throttled item %v", r)
	}
	if r := byID["2"]; r["status"] != float64(200) || r["body"].(map[string]any)["displayName"] != "A" {
		t.Fatalf("ok item %v", r)
	}
	if r := byID["3"]; r["status"] != float64(404) || r["body"].(map[string]any)["error"].(map[string]any)["code"] != "Request_ResourceNotFound" {
		t.Fatalf("404 item %v", r)
	}
	if n := s.CountBatchItems("GET", "/v1.0/users/"); n != 3 {
		t.Fatalf("%d inner requests logged", n)
	}
	if n := s.Count("GET", "/v1.0/users/"); n != 0 {
		t.Fatalf("Count includes inner items: %d", n)
	}

	var many []map[string]any
	for i := range 21 {
		many = append(many, map[string]any{"id": fmt.Sprint(i), "method": "GET", "url": "/users/a"})
	}
	if st, _ := batchCall(t, s, tok, many); st != 400 {
		t.Fatalf("21 requests: %d", st)
	}
	// Faults injected on a route apply to inner requests too; dependsOn on a failure gives 424.
	s.Inject("GET /v1.0/users/{userId}", Fault{Status: 503})
	_, resps = batchCall(t, s, tok, []map[string]any{
		{"id": "1", "method": "GET", "url": "/users/a"},
		{"id": "2", "method": "GET", "url": "/users/b", "dependsOn": []string{"1"}},
	})
	if resps[0]["status"] != float64(503) || resps[1]["status"] != float64(424) {
		t.Fatalf("%v", resps)
	}
	// The batch route itself can be faulted.
	s.Inject("POST /v1.0/$batch", Fault{Status: 429, RetryAfter: time.Second})
	if st, _ := batchCall(t, s, tok, []map[string]any{{"id": "1", "method": "GET", "url": "/users/a"}}); st != 429 {
		t.Fatalf("batch fault: %d", st)
	}
}

func TestInjectFaults(t *testing.T) {
	s := newTestServer(t, nil)
	tok := token(t, s)
	s.AddUser(User{ID: "a"})
	s.Inject("GET /v1.0/users/{id}", Fault{Status: 429, RetryAfter: 1500 * time.Millisecond, Count: 2})
	for i := range 2 {
		r := call(t, s, tok, "GET", "/v1.0/users/a", nil)
		if c, _ := r.ErrorCodeMsg(t); r.Status != 429 || r.Header.Get("Retry-After") != "2" || c != "TooManyRequests" {
			t.Fatalf("call %d: %d %v %s", i, r.Status, r.Header, r.Body)
		}
	}
	if r := call(t, s, tok, "GET", "/v1.0/users/a", nil); r.Status != 200 {
		t.Fatalf("after fault: %d", r.Status)
	}
	// Route matching is exact: the list route does not match by-id.
	s.Inject("GET /v1.0/subscriptions", Fault{Status: 500})
	s.SeedSubscription(Subscription{ID: "x"})
	if r := call(t, s, tok, "GET", "/v1.0/subscriptions/x", nil); r.Status != 200 {
		t.Fatalf("by id: %d", r.Status)
	}
	if r := call(t, s, tok, "GET", "/v1.0/subscriptions", nil); r.Status != 500 {
		t.Fatalf("list: %d", r.Status)
	}
	// Latency only.
	s.Inject("GET /v1.0/subscriptions/{id}", Fault{Hang: 150 * time.Millisecond})
	start := time.Now()
	if r := call(t, s, tok, "GET", "/v1.0/subscriptions/x", nil); r.Status != 200 || time.Since(start) < 150*time.Millisecond {
		t.Fatalf("hang: %d after %v", r.Status, time.Since(start))
	}
	// Token endpoint faults answer in Entra's error shape.
	s.Inject("POST /{tenant}/oauth2/v2.0/token", Fault{Status: 503, RetryAfter: time.Second})
	resp, err := s.Client().PostForm(s.TokenEndpoint(), url.Values{"grant_type": {"client_credentials"}})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	resp.Body.Close()
	if resp.StatusCode != 503 || m["error"] != "temporarily_unavailable" || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("token fault: %d %v", resp.StatusCode, m)
	}
	if token(t, s) == "" {
		t.Fatal("no token after fault")
	}
}

func TestRequestLog(t *testing.T) {
	s := newTestServer(t, nil)
	tok := token(t, s)
	call(t, s, tok, "GET", "/v1.0/users/nobody?$select=id", nil)
	reqs := s.Requests()
	last := reqs[len(reqs)-1]
	if last.Method != "GET" || last.Path != "/v1.0/users/nobody" || last.RawQuery != "$select=id" || last.Status != 404 || last.Pattern != "GET /v1.0/users/{id}" {
		t.Fatalf("%+v", last)
	}
	if s.Count("POST", "/"+testTenant+"/oauth2") != 1 || s.Count("", "/v1.0/") != 1 {
		t.Fatalf("counts %d %d", s.Count("POST", "/"+testTenant+"/oauth2"), s.Count("", "/v1.0/"))
	}
	s.ResetRequests()
	if len(s.Requests()) != 0 {
		t.Fatal("not reset")
	}
}

func TestControlAPI(t *testing.T) {
	s := newTestServer(t, func(o *Options) { o.ControlAPI = true })
	rx := newReceiver(t)
	subscribe(t, s, rx, "users")
	post := func(path, body string) int {
		resp, err := s.Client().Post(s.URL()+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := post("/_control/users", `{"id":"c1","props":{"displayName":"C"}}`); st != 201 {
		t.Fatalf("add: %d", st)
	}
	if st := post("/_control/users/c1", `{"jobTitle":"J"}`); st != 204 {
		t.Fatalf("update: %d", st)
	}
	if u, _ := s.User("c1"); u.Props["jobTitle"] != "J" {
		t.Fatalf("user %v", u)
	}
	post("/_control/users/c1/softdelete", "")
	post("/_control/users/c1/delete", "")
	if st := post("/_control/fault", `{"route":"GET /v1.0/users/{id}","status":503}`); st != 204 {
		t.Fatalf("fault: %d", st)
	}
	if r := call(t, s, token(t, s), "GET", "/v1.0/users/c1", nil); r.Status != 503 {
		t.Fatalf("fault not applied: %d", r.Status)
	}
	if err := s.WaitDelivered(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, n := range rx.notifications(t) {
		types = append(types, n["changeType"].(string))
	}
	sort.Strings(types)
	if strings.Join(types, ",") != "deleted,updated,updated,updated" {
		t.Fatalf("types %v", types)
	}
	resp, _ := s.Client().Get(s.URL() + "/_control/subscriptions")
	var subs []map[string]any
	json.NewDecoder(resp.Body).Decode(&subs)
	resp.Body.Close()
	if len(subs) != 1 || subs[0]["clientState"] == nil {
		t.Fatalf("control subscriptions %v", subs)
	}
	// Without ControlAPI the routes do not exist.
	s2 := newTestServer(t, nil)
	resp, _ = s2.Client().Post(s2.URL()+"/_control/flush", "application/json", bytes.NewReader(nil))
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("control API without ControlAPI: %d", resp.StatusCode)
	}
}
