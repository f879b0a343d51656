package graph

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/redact"
)

const sample = `{"value":[{"subscriptionId":"d850b120","subscriptionExpirationDateTime":"2026-01-20T10:00:00+00:00",
 "changeType":"updated","clientState":"cs","tenantId":"T1","resource":"Users/6e1f",
 "resourceData":{"@odata.type":"#Microsoft.Graph.Object","@odata.id":"Users/6e1f","id":"6e1f","organizationId":"T1",
   "eventTime":"2026-01-12T09:14:00.24Z","sequenceNumber":638700000000000001},
 "futureField":{"nested":[1,2.50,"x"]}}],"validationTokens":["jwt"]}`

func TestNotificationKeptFieldForField(t *testing.T) {
	var c struct {
		Value            []ChangeNotification
		ValidationTokens []string
	}
	if err := json.Unmarshal([]byte(sample), &c); err != nil {
		t.Fatal(err)
	}
	n := c.Value[0]
	if n.ResourceData.SequenceNumber.String() != "638700000000000001" {
		t.Errorf("sequenceNumber = %s: precision lost beyond 2^53", n.ResourceData.SequenceNumber)
	}
	out, err := json.Marshal(c.Value)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte(`"futureField":{"nested":[1,2.50,"x"]}`)) || !bytes.Contains(out, []byte("638700000000000001")) {
		t.Errorf("re-encoding changed the notification: %s", out)
	}
	if c.ValidationTokens[0] != "jwt" || n.ResourceID() != "6e1f" || n.Tenant() != "T1" || n.IsLifecycle() {
		t.Errorf("%+v", n)
	}
}

func TestTenantFallbacks(t *testing.T) {
	for _, tc := range []struct{ raw, want string }{
		{`{"tenantId":"A","organizationId":"B","resourceData":{"organizationId":"C"}}`, "A"},
		{`{"organizationId":"B","resourceData":{"organizationId":"C"}}`, "B"},
		{`{"resourceData":{"organizationId":"C"}}`, "C"},
		{`{}`, ""},
	} {
		var n ChangeNotification
		if err := json.Unmarshal([]byte(tc.raw), &n); err != nil {
			t.Fatal(err)
		}
		if got := n.Tenant(); got != tc.want {
			t.Errorf("Tenant(%s) = %q, want %q", tc.raw, got, tc.want)
		}
	}
}

func TestResourceIDFallsBackToResource(t *testing.T) {
	var n ChangeNotification
	json.Unmarshal([]byte(`{"resource":"users/abc"}`), &n)
	if n.ResourceID() != "abc" {
		t.Errorf("ResourceID = %q", n.ResourceID())
	}
}

func TestUserProject(t *testing.T) {
	u := Object{"id": "1", "DisplayName": "A", "mail": "a@x", "@odata.type": "#microsoft.graph.user", "@removed": map[string]any{"reason": "changed"}, "extra": 1}
	got := u.Project([]string{"id", "displayName", "mail"})
	if len(got) != 3 || got["DisplayName"] != "A" || got["mail"] != "a@x" {
		t.Errorf("Project = %v", got)
	}
	if Object(nil).Project([]string{"id"}) != nil {
		t.Error("a nil user projects to nil (a deleted user's event carries user: null)")
	}
}

func TestSubscriptionErrorsHideSecrets(t *testing.T) {
	// A function key as Azure makes them (base64: / + =), configured with a raw + and escaped / and =.
	notificationURL := "https://hooks.example/api/webhook?code=ab%2Fcd+ef%3D%3D&x=1"
	const state = "s3cret-client-state-0123"
	secrets := append(redact.FunctionKeys(notificationURL), redact.Forms(state)...)
	for _, quoted := range []string{
		"ab/cd+ef==",         // decoded
		"ab%2Fcd%2Bef%3D%3D", // query-escaped, as Graph re-encodes it
		"ab%2fcd%2bef%3d%3d", // the same in lower-case hex
		"ab%2Fcd+ef%3D%3D",   // as configured
		"ab/cd ef==",         // + read as a space
	} {
		for _, msg := range []string{
			"Subscription validation request failed. Notification endpoint 'https://hooks.example/api/webhook?code=" + quoted + "' did not respond.",
			"key " + quoted + " refused; clientState " + state,
			strings.Repeat("x", 500) + " " + quoted, // cut at 512 bytes: no prefix of the key may survive
		} {
			body, _ := json.Marshal(map[string]any{"error": map[string]string{"code": "InvalidRequest", "message": msg}})
			err := responseError("create subscription", flagSubscriptionWrite, 400, http.Header{}, body, time.Now(), secrets...)
			if got := err.Error(); strings.Contains(got, "ab/") || strings.Contains(strings.ToLower(got), "ab%2f") || strings.Contains(got, "s3cret") {
				t.Errorf("error shows a secret: %s", got)
			}
		}
	}
}
