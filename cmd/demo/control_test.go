package main

import (
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/devstack"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

// TestControlExamplesWork runs every printed example against the Graph double, in order, with the directory
// as the story leaves it, and checks that every documented route has one.
func TestControlExamplesWork(t *testing.T) {
	opts := fakegraph.NewOptions(devstack.TenantID, devstack.ClientID, "secret")
	opts.ControlAPI = true
	g := fakegraph.New(opts)
	defer g.Close()
	for i := 1; i <= 5; i++ {
		g.AddUser(devstack.SeedUser(i))
	}
	g.SoftDeleteUser(devstack.UserID(4))
	for i := 1; i <= 3; i++ {
		g.AddGroup(devstack.SeedGroup(i, devstack.UserID(1), devstack.UserID(3)))
	}
	g.PermanentlyDeleteGroup(devstack.SeedGroup(2).ID)
	g.SeedSubscription(fakegraph.Subscription{ID: "sub-1", Resource: "users", ChangeType: "updated,deleted",
		NotificationURL: "https://example.test/api/webhook", ApplicationID: devstack.ClientID, ExpirationDateTime: time.Now().Add(time.Hour)})

	examples := controlExamples(g.URL(), "sub-1")
	for _, ex := range examples {
		req, err := http.NewRequest(ex.Method, g.URL()+ex.Path, strings.NewReader(ex.Body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := g.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Errorf("%s (%s) answered %d", ex, ex.Curl(), resp.StatusCode)
		}
		if !strings.HasPrefix(ex.Curl(), "curl -sk") || !strings.Contains(ex.Curl(), g.URL()+ex.Path) {
			t.Errorf("curl line %q", ex.Curl())
		}
	}

	// Every route in the package doc has an example.
	doc, err := os.ReadFile("../../internal/fakegraph/doc.go")
	if err != nil {
		t.Fatal(err)
	}
	var have []string
	for _, ex := range examples {
		have = append(have, ex.String())
	}
	for _, m := range regexp.MustCompile(`(?m)^//\t(GET|POST|DELETE)\s+(/_control/\S+)`).FindAllStringSubmatch(string(doc), -1) {
		route := m[1] + " " + m[2]
		if route == "POST /_control/users/{id}/delete" { // the same as DELETE /_control/users/{id}, which has one
			continue
		}
		if !slices.Contains(have, route) {
			t.Errorf("no example for %s", route)
		}
	}
}

func TestEventLineIsAlignedAndHasNoNil(t *testing.T) {
	lines := []string{
		eventLine(mkEvent("updated", false, map[string]any{"displayName": "Adele", "mail": nil})),
		eventLine(mkEvent("deleted", true, nil)),
		eventLine(mkEvent("deleted", false, nil)),
	}
	col := strings.Index(eventHeader, "USER ID")
	for _, l := range lines {
		if strings.Contains(l, "<nil>") || strings.Contains(l, "%!") {
			t.Errorf("line %q", l)
		}
		if !strings.HasPrefix(l[col:], devstack.UserID(1)) {
			t.Errorf("user id not under its header in %q", l)
		}
	}
	if !strings.HasSuffix(lines[0], "Adele") || !strings.Contains(lines[1], "deleted (soft)") {
		t.Errorf("lines %q", lines)
	}
}

func mkEvent(change string, soft bool, user map[string]any) message.Event {
	return message.Event{ChangeType: graph.ChangeType(change), SoftDeleted: soft, Source: message.SourceNotification,
		ResourceID: devstack.UserID(1), ObservedAt: time.Now(), Object: user}
}
