package fakegraph

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// driveServer is a test server with a fake clock, a drive and a token that reads it.
func driveServer(t *testing.T, mod func(*Options)) (*Server, *fakeClock, string, string) {
	t.Helper()
	clock := newFakeClock()
	s := newTestServer(t, func(o *Options) {
		o.Clock = clock.Now
		if mod != nil {
			mod(o)
		}
	})
	d, err := s.AddDrive(Drive{})
	if err != nil {
		t.Fatal(err)
	}
	return s, clock, d, token(t, s)
}

// callH is call with extra request headers.
func callH(t *testing.T, s *Server, tok, path string, h http.Header) graphResp {
	t.Helper()
	u := path
	if !strings.HasPrefix(u, "https://") {
		u = s.URL() + path
	}
	req, _ := http.NewRequest("GET", u, nil)
	if h != nil {
		req.Header = h.Clone()
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return graphResp{resp.StatusCode, resp.Header, b}
}

type driveRound struct {
	items     []map[string]any
	pages     []int // items per page
	deltaLink string
}

// walkDelta follows nextLinks from first until a deltaLink, checking that every link carries a token.
func walkDelta(t *testing.T, s *Server, tok, first string, h http.Header) driveRound {
	t.Helper()
	var out driveRound
	next := first
	for range 1000 {
		r := callH(t, s, tok, next, h)
		if r.Status != 200 {
			t.Fatalf("GET %s: %d %s", next, r.Status, r.Body)
		}
		var page struct {
			Value     []map[string]any `json:"value"`
			NextLink  string           `json:"@odata.nextLink"`
			DeltaLink string           `json:"@odata.deltaLink"`
		}
		if err := json.Unmarshal(r.Body, &page); err != nil {
			t.Fatal(err)
		}
		out.items = append(out.items, page.Value...)
		out.pages = append(out.pages, len(page.Value))
		if (page.NextLink == "") == (page.DeltaLink == "") {
			t.Fatalf("a page has exactly one of nextLink and deltaLink: %s", r.Body)
		}
		for _, l := range []string{page.NextLink, page.DeltaLink} {
			if u, _ := url.Parse(l); l != "" && (u.Query().Get("token") == "" || !strings.HasPrefix(l, s.GraphBaseURL()+"/drives/")) {
				t.Fatalf("link without token: %s", l)
			}
		}
		if page.DeltaLink != "" {
			out.deltaLink = page.DeltaLink
			return out
		}
		next = page.NextLink
	}
	t.Fatal("delta did not end")
	return out
}

func ids(items []map[string]any) []string {
	var out []string
	for _, it := range items {
		out = append(out, it["id"].(string))
	}
	return out
}

func deltaPath(d string) string { return "/v1.0/drives/" + d + "/root/delta" }

func TestDriveIDShapes(t *testing.T) {
	s, _, d, _ := driveServer(t, nil)
	if !strings.HasPrefix(d, "b!") || len(d) != 66 || !ValidDriveID(d) {
		t.Fatalf("drive id %q", d)
	}
	f, err := s.AddDriveItem(d, DriveItem{Name: "a.txt"})
	if err != nil {
		t.Fatal(err)
	}
	root := s.DriveRootID(d)
	if len(f) != 34 || !ValidDriveItemID(f) || f[:8] != root[:8] || strings.ToUpper(f) != f {
		t.Fatalf("item id %q (root %q)", f, root)
	}
	for _, bad := range []string{"", "users", "b!", "b!a/b", "b!a b", "0123456789abcdef0"} {
		if ValidDriveID(bad) {
			t.Errorf("ValidDriveID(%q)", bad)
		}
	}
	for _, good := range []string{"b!-RIj2DuyvEyV1T4NlOaMHk8XkS_I8MdFlUCq1BlcjgmhRfAj3-Z8RY2VpuvV_tpd", "D4648F06C91D9D3D"} {
		if !ValidDriveID(good) {
			t.Errorf("!ValidDriveID(%q)", good)
		}
	}
	for _, good := range []string{"01BYE5RZ6QN3ZWBTUFOFD3GSPGOHDJD36K", "D4648F06C91D9D3D!54927"} {
		if !ValidDriveItemID(good) {
			t.Errorf("!ValidDriveItemID(%q)", good)
		}
	}
	if ValidDriveItemID("01byE5") || ValidDriveItemID("../x") {
		t.Error("lower case or path accepted as item id")
	}
}

func TestDriveSubscriptionRules(t *testing.T) {
	s, clock, d, tok := driveServer(t, nil)
	rx := newReceiver(t)
	res := "drives/" + d + "/root"
	body := func(ct string, exp time.Duration) map[string]any {
		b := subBody(rx.URL, res, clock.Now().Add(exp))
		b["changeType"] = ct
		return b
	}
	cases := []struct {
		name string
		body map[string]any
		msg  string
	}{
		{"deleted", body("updated,deleted", time.Hour), "Invalid 'changeType' attribute: 'deleted'"},
		{"created", body("created", time.Hour), "Invalid 'changeType' attribute: 'created'"},
		{"beyond 42,300 min", body("updated", 42301*time.Minute), "42300"},
		{"rich", func() map[string]any {
			b := body("updated", time.Hour)
			b["includeResourceData"], b["encryptionCertificate"], b["encryptionCertificateId"] = true, "MIIB", "k1"
			return b
		}(), "File Services workload is not enabled for rich notifications"},
		{"item", func() map[string]any {
			b := body("updated", time.Hour)
			b["resource"] = "drives/" + d + "/items/" + s.DriveRootID(d)
			return b
		}(), "resource"},
		{"missing drive", func() map[string]any {
			b := body("updated", time.Hour)
			b["resource"] = "drives/b!nosuchdrive/root"
			return b
		}(), "does not exist"},
	}
	for _, c := range cases {
		r := createSub(t, s, tok, c.body)
		code, msg := r.ErrorCodeMsg(t)
		if r.Status != 400 || code != "InvalidRequest" || !strings.Contains(msg, c.msg) {
			t.Errorf("%s: %d %s", c.name, r.Status, r.Body)
		}
	}
	r := createSub(t, s, tok, body("updated", 42300*time.Minute))
	if r.Status != 201 {
		t.Fatalf("42,300 min: %d %s", r.Status, r.Body)
	}
	if got := r.JSON(t)["resource"]; got != res {
		t.Fatalf("resource echoed as %v", got)
	}
	// The directory keeps its own limit.
	if r := createSub(t, s, tok, subBody(rx.URL, "users", clock.Now().Add(41761*time.Minute))); r.Status != 400 {
		t.Fatalf("users beyond 41,760 min: %d", r.Status)
	}

	// Roles: Sites.Read.All suffices; users and groups roles do not.
	sites := newTestServer(t, func(o *Options) { o.AppRoles, o.Clock = []string{"Sites.Read.All"}, clock.Now })
	sd, _ := sites.AddDrive(Drive{})
	if r := createSub(t, sites, token(t, sites), func() map[string]any {
		b := subBody(rx.URL, "drives/"+sd+"/root", clock.Now().Add(time.Hour))
		b["changeType"] = "updated"
		return b
	}()); r.Status != 201 {
		t.Fatalf("Sites.Read.All: %d %s", r.Status, r.Body)
	}
	dir := newTestServer(t, func(o *Options) { o.AppRoles, o.Clock = []string{"User.Read.All", "Group.Read.All"}, clock.Now })
	dd, _ := dir.AddDrive(Drive{})
	dtok := token(t, dir)
	if r := createSub(t, dir, dtok, func() map[string]any {
		b := subBody(rx.URL, "drives/"+dd+"/root", clock.Now().Add(time.Hour))
		b["changeType"] = "updated"
		return b
	}()); r.Status != 403 {
		t.Fatalf("without a files role: %d %s", r.Status, r.Body)
	}
	if r := call(t, dir, dtok, "GET", deltaPath(dd), nil); r.Status != 403 {
		t.Fatalf("delta without a files role: %d", r.Status)
	}
}

func TestDriveSubscriptionQuotaPerDrive(t *testing.T) {
	s, clock, d, tok := driveServer(t, func(o *Options) { o.DriveMaxSubscriptions = 1 })
	rx := newReceiver(t)
	other, _ := s.AddDrive(Drive{})
	s.SeedSubscription(Subscription{Resource: "drives/" + d + "/root", ChangeType: "updated", NotificationURL: rx.URL, ApplicationID: "another-app"})
	b := subBody(rx.URL, "drives/"+d+"/root", clock.Now().Add(time.Hour))
	b["changeType"] = "updated"
	if r := createSub(t, s, tok, b); r.Status != 403 {
		t.Fatalf("second subscription on the drive: %d %s", r.Status, r.Body)
	}
	b["resource"] = "drives/" + other + "/root"
	if r := createSub(t, s, tok, b); r.Status != 201 {
		t.Fatalf("another drive: %d %s", r.Status, r.Body)
	}
	// The directory's quota does not count drive subscriptions.
	if r := createSub(t, s, tok, subBody(rx.URL, "users", clock.Now().Add(time.Hour))); r.Status != 201 {
		t.Fatalf("users: %d %s", r.Status, r.Body)
	}
}

func subscribeDrive(t *testing.T, s *Server, tok, d, notificationURL string, clock *fakeClock) string {
	t.Helper()
	b := subBody(notificationURL, "/drives/"+d+"/root", clock.Now().Add(time.Hour))
	b["changeType"] = "updated"
	r := createSub(t, s, tok, b)
	if r.Status != 201 {
		t.Fatalf("subscribe: %d %s", r.Status, r.Body)
	}
	return r.JSON(t)["id"].(string)
}

func TestDriveTaps(t *testing.T) {
	s, clock, d, tok := driveServer(t, nil)
	rx := newReceiver(t)
	sub := subscribeDrive(t, s, tok, d, rx.URL, clock)
	other, _ := s.AddDrive(Drive{})
	if _, err := s.AddDriveItem(other, DriveItem{Name: "elsewhere.txt"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddDriveItem(d, DriveItem{Name: "a.txt"}); err != nil {
		t.Fatal(err)
	}
	s.Flush()
	if err := s.WaitDelivered(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	ns := rx.notifications(t)
	if len(ns) != 1 {
		t.Fatalf("%d notifications, want 1 (none for the other drive): %v", len(ns), ns)
	}
	n := ns[0]
	if n["subscriptionId"] != sub || n["changeType"] != "updated" || n["resource"] != "/drives/"+d+"/root" ||
		n["clientState"] != "client-state-0123456789" || n["tenantId"] != testTenant || n["subscriptionExpirationDateTime"] == nil {
		t.Fatalf("tap: %v", n)
	}
	if _, ok := n["resourceData"]; ok {
		t.Fatalf("a tap carries no resourceData: %v", n)
	}
	if err := s.TapDrive(d, 3); err != nil {
		t.Fatal(err)
	}
	s.Flush()
	if err := s.WaitFor(ctxT(t), func() bool { return s.Pending() == 0 && len(rx.notifications(t)) == 4 }); err != nil {
		t.Fatalf("%v: %d notifications", err, len(rx.notifications(t)))
	}
	if err := s.TapDrive("b!nosuchdrive", 1); err == nil {
		t.Fatal("tap on a missing drive")
	}

	// The option seen in the wild: an item id that names the root, not the changed item.
	s2, clock2, d2, tok2 := driveServer(t, func(o *Options) { o.DriveTapItemID = true })
	rx2 := newReceiver(t)
	subscribeDrive(t, s2, tok2, d2, rx2.URL, clock2)
	f, _ := s2.AddDriveItem(d2, DriveItem{Name: "b.txt"})
	s2.Flush()
	if err := s2.WaitFor(ctxT(t), func() bool { return len(rx2.notifications(t)) == 1 }); err != nil {
		t.Fatal(err)
	}
	rd, _ := rx2.notifications(t)[0]["resourceData"].(map[string]any)
	if rd["id"] != s2.DriveRootID(d2) || rd["id"] == f {
		t.Fatalf("resourceData %v", rd)
	}
}

func TestDriveDeltaEnumerationPaging(t *testing.T) {
	s, _, d, tok := driveServer(t, func(o *Options) { o.DrivePageSize = 3; o.DriveMaxTop = 4 })
	folder, _ := s.AddDriveItem(d, DriveItem{Name: "Docs", Folder: true})
	files, err := s.SeedDriveFiles(d, folder, "f", 6, false)
	if err != nil {
		t.Fatal(err)
	}
	round := walkDelta(t, s, tok, deltaPath(d), nil)
	if !slices.Equal(round.pages, []int{3, 3, 2}) {
		t.Fatalf("pages %v, want 3,3,2 (root, folder, 6 files)", round.pages)
	}
	got := ids(round.items)
	want := append([]string{s.DriveRootID(d), folder}, files...)
	if !slices.Equal(got, want) {
		t.Fatalf("items %v, want %v", got, want)
	}
	root := round.items[0]
	if _, ok := root["root"]; !ok || root["name"] != "root" {
		t.Fatalf("root item %v", root)
	}
	fo := round.items[1]
	if fo["folder"].(map[string]any)["childCount"] != float64(6) || fo["size"] != float64(100+101+102+103+104+105) {
		t.Fatalf("folder %v", fo)
	}
	fi := round.items[2]
	pr := fi["parentReference"].(map[string]any)
	if fi["name"] != "f-00001.txt" || fi["size"] != float64(100) || fi["file"].(map[string]any)["mimeType"] != "text/plain" ||
		pr["id"] != folder || pr["driveId"] != d || pr["driveType"] != "business" || pr["path"] != nil ||
		!strings.HasPrefix(fi["eTag"].(string), `"{`) || fi["lastModifiedDateTime"] == nil {
		t.Fatalf("file %v", fi)
	}
	if _, ok := fi["cTag"]; ok {
		t.Fatalf("business delta leaves cTag out: %v", fi)
	}

	// $top, lowered to DriveMaxTop; $select keeps id.
	if r := walkDelta(t, s, tok, deltaPath(d)+"?$top=2", nil); !slices.Equal(r.pages, []int{2, 2, 2, 2}) {
		t.Fatalf("$top=2: %v", r.pages)
	}
	if r := walkDelta(t, s, tok, deltaPath(d)+"?$top=50", nil); !slices.Equal(r.pages, []int{4, 4}) {
		t.Fatalf("$top=50 with max 4: %v", r.pages)
	}
	r := walkDelta(t, s, tok, deltaPath(d)+"?$select=name,size", nil)
	for _, it := range r.items {
		if len(it) != 3 || it["id"] == nil || it["name"] == nil || it["size"] == nil {
			t.Fatalf("$select=name,size: %v", it)
		}
	}
	for _, q := range []string{"?$select=nosuch", "?$top=0", "?$top=x", "?$filter=name eq 'a'"} {
		if r := call(t, s, tok, "GET", deltaPath(d)+strings.ReplaceAll(q, " ", "%20"), nil); r.Status != 400 {
			t.Errorf("%s: %d", q, r.Status)
		}
	}
	if r := call(t, s, tok, "GET", deltaPath("b!nosuchdrive"), nil); r.Status != 404 {
		t.Fatalf("missing drive: %d", r.Status)
	} else if code, _ := r.ErrorCodeMsg(t); code != "itemNotFound" {
		t.Fatalf("missing drive: %s", r.Body)
	}
}

func TestDriveDeltaChangesParentsAndDeletes(t *testing.T) {
	s, _, d, tok := driveServer(t, nil)
	root := s.DriveRootID(d)
	a, _ := s.AddDriveItem(d, DriveItem{Name: "A", Folder: true})
	b, _ := s.AddDriveItem(d, DriveItem{Name: "B", Folder: true, ParentID: a})
	keep, _ := s.AddDriveItem(d, DriveItem{Name: "keep.txt", ParentID: b})
	link := walkDelta(t, s, tok, deltaPath(d), nil).deltaLink

	// A new file deep down: the root and both folders come with it, parents first, once each.
	f, _ := s.AddDriveItem(d, DriveItem{Name: "new.txt", ParentID: b, Size: 5})
	r := walkDelta(t, s, tok, link, nil)
	if got := ids(r.items); !slices.Equal(got, []string{root, a, b, f}) {
		t.Fatalf("create: %v, want root, A, B, file", got)
	}
	// deltaExcludeParent (header or Prefer) and DriveNoParents leave the parents out.
	for _, h := range []http.Header{{"Prefer": {"deltaExcludeParent"}}, {"Deltaexcludeparent": {"true"}}} {
		if got := ids(walkDelta(t, s, tok, link, h).items); !slices.Equal(got, []string{f}) {
			t.Fatalf("%v: %v", h, got)
		}
	}
	link = r.deltaLink

	// Two edits: the file once, in its latest state.
	before, _ := s.GetDriveItem(d, f)
	_ = s.UpdateDriveItem(d, f, 10)
	_ = s.UpdateDriveItem(d, f, 20)
	r = walkDelta(t, s, tok, link, http.Header{"Prefer": {"deltaExcludeParent"}})
	after, _ := s.GetDriveItem(d, f)
	if len(r.items) != 1 || r.items[0]["size"] != float64(20) || r.items[0]["eTag"] != after.ETag || after.ETag == before.ETag || after.CTag == before.CTag {
		t.Fatalf("edits: %v (eTag %s → %s)", r.items, before.ETag, after.ETag)
	}
	link = r.deltaLink

	// A folder renamed: its descendants do not come back.
	_ = s.RenameDriveItem(d, b, "B2")
	r = walkDelta(t, s, tok, link, nil)
	if got := ids(r.items); !slices.Equal(got, []string{root, a, b}) || r.items[2]["name"] != "B2" {
		t.Fatalf("rename: %v", r.items)
	}
	link = r.deltaLink

	// A folder moved to the root: the folder and the ancestors of both places.
	_ = s.MoveDriveItem(d, b, root)
	r = walkDelta(t, s, tok, link, nil)
	if got := ids(r.items); !slices.Equal(got, []string{root, a, b}) || r.items[2]["parentReference"].(map[string]any)["id"] != root {
		t.Fatalf("move: %v", r.items)
	}
	if err := s.MoveDriveItem(d, a, a); err == nil {
		t.Fatal("a folder moved into itself")
	}
	link = r.deltaLink

	// A folder deleted: it and its files come back deleted, with few properties; its parent changed.
	_ = s.DeleteDriveItem(d, b)
	r = walkDelta(t, s, tok, link, nil)
	var deleted []string
	for _, it := range r.items {
		if del, ok := it["deleted"].(map[string]any); ok {
			if del["state"] != "deleted" || it["name"] != nil || it["cTag"] != nil || it["parentReference"] == nil {
				t.Fatalf("deleted item %v", it)
			}
			deleted = append(deleted, it["id"].(string))
		}
	}
	slices.Sort(deleted)
	want := []string{b, keep, f}
	slices.Sort(want)
	if !slices.Equal(deleted, want) || !slices.Contains(ids(r.items), root) {
		t.Fatalf("delete: %v", r.items)
	}
	if items, _ := s.DriveItems(d); len(items) != 2 {
		t.Fatalf("live items after delete: %v", items)
	}
	// A fresh enumeration leaves deleted items out.
	if got := ids(walkDelta(t, s, tok, deltaPath(d), nil).items); !slices.Equal(got, []string{root, a}) {
		t.Fatalf("enumeration after delete: %v", got)
	}
	// GET item: cTag, 404 when deleted.
	if r := call(t, s, tok, "GET", "/v1.0/drives/"+d+"/items/"+a, nil); r.Status != 200 || r.JSON(t)["cTag"] == nil {
		t.Fatalf("GET item: %d %s", r.Status, r.Body)
	}
	if r := call(t, s, tok, "GET", "/v1.0/drives/"+d+"/items/"+b, nil); r.Status != 404 {
		t.Fatalf("GET deleted item: %d", r.Status)
	}
	if r := call(t, s, tok, "GET", "/v1.0/drives/"+d+"/root", nil); r.Status != 200 || r.JSON(t)["id"] != root {
		t.Fatalf("GET root: %d %s", r.Status, r.Body)
	}
}

func TestDriveDeltaNoParentsOption(t *testing.T) {
	s, _, d, tok := driveServer(t, func(o *Options) { o.DriveNoParents = true })
	a, _ := s.AddDriveItem(d, DriveItem{Name: "A", Folder: true})
	link := walkDelta(t, s, tok, deltaPath(d), nil).deltaLink
	f, _ := s.AddDriveItem(d, DriveItem{Name: "x.txt", ParentID: a})
	if got := ids(walkDelta(t, s, tok, link, nil).items); !slices.Equal(got, []string{f}) {
		t.Fatalf("%v", got)
	}
}

func TestDriveDeltaLatestAndStablePages(t *testing.T) {
	s, _, d, tok := driveServer(t, func(o *Options) { o.DrivePageSize = 2 })
	if _, err := s.SeedDriveFiles(d, "", "old", 5, false); err != nil {
		t.Fatal(err)
	}
	r := callH(t, s, tok, deltaPath(d)+"?token=latest", nil)
	var latest struct {
		Value     []any  `json:"value"`
		DeltaLink string `json:"@odata.deltaLink"`
		NextLink  string `json:"@odata.nextLink"`
	}
	if err := json.Unmarshal(r.Body, &latest); err != nil || r.Status != 200 || len(latest.Value) != 0 || latest.DeltaLink == "" || latest.NextLink != "" {
		t.Fatalf("token=latest: %d %s", r.Status, r.Body)
	}
	if got := walkDelta(t, s, tok, latest.DeltaLink, http.Header{"Prefer": {"deltaExcludeParent"}}); len(got.items) != 0 {
		t.Fatalf("nothing changed since latest: %v", got.items)
	}
	// Pages of a round stay consistent while the drive changes: a change after the round's first page
	// shows in the next round, nothing is skipped.
	news, _ := s.SeedDriveFiles(d, "", "new", 3, false)
	first := callH(t, s, tok, latest.DeltaLink, http.Header{"Prefer": {"deltaExcludeParent"}})
	var p1 struct {
		Value    []map[string]any `json:"value"`
		NextLink string           `json:"@odata.nextLink"`
	}
	_ = json.Unmarshal(first.Body, &p1)
	late, _ := s.AddDriveItem(d, DriveItem{Name: "late.txt"})
	_ = s.UpdateDriveItem(d, news[0], 1)
	rest := walkDelta(t, s, tok, p1.NextLink, http.Header{"Prefer": {"deltaExcludeParent"}})
	if got := append(ids(p1.Value), ids(rest.items)...); !slices.Equal(got, news) {
		t.Fatalf("round: %v, want %v", got, news)
	}
	if got := ids(walkDelta(t, s, tok, rest.deltaLink, http.Header{"Prefer": {"deltaExcludeParent"}}).items); !slices.Equal(got, []string{late, news[0]}) {
		t.Fatalf("next round: %v, want late and the edited file", got)
	}
}

func TestDriveDelta410Resync(t *testing.T) {
	s, _, d, tok := driveServer(t, func(o *Options) { o.DrivePageSize = 2 })
	files, _ := s.SeedDriveFiles(d, "", "f", 3, false)
	other, _ := s.AddDrive(Drive{})
	link := walkDelta(t, s, tok, deltaPath(d), nil).deltaLink
	otherLink := walkDelta(t, s, tok, deltaPath(other), nil).deltaLink
	if err := s.ExpireDriveDeltaTokens(d); err != nil {
		t.Fatal(err)
	}
	check := func(name, u string) string {
		t.Helper()
		r := callH(t, s, tok, u, nil)
		code, _ := r.ErrorCodeMsg(t)
		inner, _ := r.JSON(t)["error"].(map[string]any)["innerError"].(map[string]any)
		loc := r.Header.Get("Location")
		if r.Status != 410 || code != "resyncRequired" || inner["code"] != nil || inner["date"] == nil || !strings.HasPrefix(loc, s.GraphBaseURL()+"/drives/"+d+"/root/delta?") {
			t.Fatalf("%s: %d %v %s", name, r.Status, r.Header, r.Body)
		}
		return loc
	}
	loc := check("expired", link)
	check("garbage", deltaPath(d)+"?token=garbage")
	check("another drive's token", strings.Replace(otherLink, other, d, 1))
	// The Location enumerates the drive afresh; its deltaLink then works.
	round := walkDelta(t, s, tok, loc, nil)
	if got := ids(round.items); !slices.Equal(got, append([]string{s.DriveRootID(d)}, files...)) {
		t.Fatalf("resync enumeration: %v", got)
	}
	f, _ := s.AddDriveItem(d, DriveItem{Name: "after.txt"})
	if got := ids(walkDelta(t, s, tok, round.deltaLink, http.Header{"Prefer": {"deltaExcludeParent"}}).items); !slices.Equal(got, []string{f}) {
		t.Fatalf("after resync: %v", got)
	}
	// The other drive's tokens still work.
	walkDelta(t, s, tok, otherLink, nil)

	// The documented error type as innerError.code, when asked for.
	s2, _, d2, tok2 := driveServer(t, func(o *Options) { o.DriveResyncCode = "resyncChangesUploadDifferences" })
	if r := callH(t, s2, tok2, deltaPath(d2)+"?token=x", nil); r.Status != 410 ||
		r.JSON(t)["error"].(map[string]any)["innerError"].(map[string]any)["code"] != "resyncChangesUploadDifferences" {
		t.Fatalf("DriveResyncCode: %d %s", r.Status, r.Body)
	}
}

func TestDriveDeltaLag(t *testing.T) {
	s, clock, d, tok := driveServer(t, nil)
	rx := newReceiver(t)
	subscribeDrive(t, s, tok, d, rx.URL, clock)
	h := http.Header{"Prefer": {"deltaExcludeParent"}}
	link := walkDelta(t, s, tok, deltaPath(d)+"?token=latest", h).deltaLink

	// Lag in time (Clock): the tap arrives, delta shows nothing until a minute has passed.
	s.SetDriveDeltaLag(time.Minute, 0)
	f, _ := s.AddDriveItem(d, DriveItem{Name: "slow.txt"})
	s.Flush()
	if err := s.WaitFor(ctxT(t), func() bool { return len(rx.notifications(t)) == 1 }); err != nil {
		t.Fatal(err)
	}
	r := walkDelta(t, s, tok, link, h)
	if len(r.items) != 0 {
		t.Fatalf("visible before the lag: %v", r.items)
	}
	clock.Advance(time.Minute)
	r = walkDelta(t, s, tok, r.deltaLink, h)
	if got := ids(r.items); !slices.Equal(got, []string{f}) {
		t.Fatalf("after the lag: %v", got)
	}

	// Lag in calls: the first delta call after the change does not see it, the second does.
	s.SetDriveDeltaLag(0, 1)
	g, _ := s.AddDriveItem(d, DriveItem{Name: "slower.txt"})
	r = walkDelta(t, s, tok, r.deltaLink, h)
	if len(r.items) != 0 {
		t.Fatalf("visible at the first call: %v", r.items)
	}
	if got := ids(walkDelta(t, s, tok, r.deltaLink, h).items); !slices.Equal(got, []string{g}) {
		t.Fatalf("second call: %v", got)
	}
	// ClearFaults ends the lag.
	s.ClearFaults()
	link = walkDelta(t, s, tok, deltaPath(d)+"?token=latest", h).deltaLink
	k, _ := s.AddDriveItem(d, DriveItem{Name: "now.txt"})
	if got := ids(walkDelta(t, s, tok, link, h).items); !slices.Equal(got, []string{k}) {
		t.Fatalf("after ClearFaults: %v", got)
	}
}

func TestDriveControlAPI(t *testing.T) {
	clock := newFakeClock()
	s := newTestServer(t, func(o *Options) { o.ControlAPI, o.Clock = true, clock.Now })
	tok := token(t, s)
	rx := newReceiver(t)
	post := func(path string, body any, want int) map[string]any {
		t.Helper()
		b, _ := json.Marshal(body)
		resp, err := s.Client().Post(s.URL()+"/_control"+path, "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("POST %s: %d %s", path, resp.StatusCode, out)
		}
		var m map[string]any
		_ = json.Unmarshal(out, &m)
		return m
	}
	dr := post("/drives", map[string]any{}, 201)
	d := dr["id"].(string)
	if dr["rootId"] != s.DriveRootID(d) {
		t.Fatalf("%v", dr)
	}
	b := subBody(rx.URL, "drives/"+d+"/root", clock.Now().Add(time.Hour))
	b["changeType"] = "updated"
	if r := createSub(t, s, tok, b); r.Status != 201 {
		t.Fatal(r.Status)
	}
	folder := post("/drives/"+d+"/items", map[string]any{"name": "Reports", "folder": true}, 201)["id"].(string)
	file := post("/drives/"+d+"/items", map[string]any{"name": "q1.xlsx", "size": 10}, 201)["id"].(string)
	post("/drives/"+d+"/items", map[string]any{"name": "Q1.XLSX"}, 409)
	post("/drives/"+d+"/items/"+file, map[string]any{"size": 11}, 204)
	post("/drives/"+d+"/items/"+file+"/rename", map[string]any{"name": "q1-final.xlsx"}, 204)
	post("/drives/"+d+"/items/"+file+"/move", map[string]any{"parentId": folder}, 204)
	seeded := post("/drives/"+d+"/seed", map[string]any{"n": 4, "notify": true}, 201)["ids"].([]any)
	post("/drives/"+d+"/edit", map[string]any{"ids": []any{seeded[0], seeded[1]}, "taps": 3}, 204)
	post("/drives/"+d+"/items/"+seeded[3].(string)+"/delete", nil, 204)
	post("/drives/"+d+"/tap", map[string]any{"n": 2}, 204)
	post("/drives/"+d+"/items/NOSUCHITEM/delete", nil, 404)
	post("/drives/b!nosuch/tap", map[string]any{"n": 1}, 404)
	// taps: create 2 + edit + rename + move + seed 1 + edit 2×3 + delete + tap 2 = 15
	s.Flush()
	if err := s.WaitFor(ctxT(t), func() bool { return s.Pending() == 0 && len(rx.notifications(t)) == 15 }); err != nil {
		t.Fatalf("%v: %d taps", err, len(rx.notifications(t)))
	}
	items, _ := s.DriveItems(d)
	if len(items) != 1+1+1+3 {
		t.Fatalf("%d live items", len(items))
	}
	got, _ := s.GetDriveItem(d, file)
	if got.Name != "q1-final.xlsx" || got.ParentID != folder || got.Size != 11 {
		t.Fatalf("%+v", got)
	}
	resp, err := s.Client().Get(s.URL() + "/_control/drives/" + d + "/items")
	if err != nil {
		t.Fatal(err)
	}
	var listed []map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&listed)
	resp.Body.Close()
	if len(listed) != 6 || listed[0]["root"] != true || listed[0]["id"] != s.DriveRootID(d) || listed[1]["name"] != "Reports" || listed[1]["folder"] != true {
		t.Fatalf("GET items: %v", listed)
	}
	link := walkDelta(t, s, tok, deltaPath(d), nil).deltaLink
	post("/drives/"+d+"/expire-tokens", nil, 204)
	if r := callH(t, s, tok, link, nil); r.Status != 410 {
		t.Fatalf("after expire-tokens: %d", r.Status)
	}
	post("/drives-lag", map[string]any{"seconds": 0, "calls": 2}, 204)
	post("/drives-lag", map[string]any{"calls": -1}, 400)
}

func TestDrivesFromOptions(t *testing.T) {
	const id = "b!fixed-drive_ID"
	s := newTestServer(t, func(o *Options) { o.Drives = []Drive{{ID: id}} })
	if got := s.Drives(); len(got) != 1 || got[0] != id || s.DriveRootID(id) == "" {
		t.Fatalf("drives %v", got)
	}
}
