package status

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/subscription"
)

type fakeRefusals map[string]subscription.Refusal

func (f fakeRefusals) Refusals(context.Context) (map[string]subscription.Refusal, error) {
	return f, nil
}

const (
	quotaUser  = "6e7b768e-07e2-4810-8459-485f84f8f204"
	policyUser = "87d349ed-44d7-43e1-9a83-5f2406dee5bd"
)

func TestMailboxRefusalsNameTheMailboxAndTheReason(t *testing.T) {
	c := checker(healthy())
	r := c.Check(context.Background())
	if r.Mailboxes != nil || r.ExitCode != 0 {
		t.Fatalf("without mailboxes nothing is reported: %+v exit %d", r.Mailboxes, r.ExitCode)
	}
	q, p := subscription.MailboxResource(quotaUser, "messages"), subscription.MailboxResource(policyUser, "events")
	c.Refusals = func() (Refusals, error) {
		return fakeRefusals{
			q: {Resource: q, Status: 403, Code: "ExtensionError", Reason: "Operation: Create; Exception: [Status Code: Forbidden; Reason: Maximum number of subscriptions has been reached]",
				First: now.Add(-3 * time.Hour), Count: 2, RetryAt: now.Add(21 * time.Hour)},
			p: {Resource: p, Status: 403, Code: "ExtensionError", Reason: "Operation: Create; Exception: [Status Code: Forbidden; Reason: Access to OData is disabled.]",
				First: now.Add(-time.Hour), Count: 1, RetryAt: now.Add(11 * time.Hour)},
		}, nil
	}
	r = c.Check(context.Background())
	if r.Health != Attention || r.ExitCode != 1 {
		t.Fatalf("refusals need attention: %s exit %d", r.Health, r.ExitCode)
	}
	if got := codes(r); !slices.Equal(got, []string{CodeMailboxRefused + "/" + quotaUser, CodeMailboxRefused + "/" + policyUser}) {
		t.Fatalf("findings %v", got)
	}
	if f := r.Findings[0]; !strings.Contains(f.Message, "Maximum number of subscriptions") || !strings.Contains(f.Action, "1,000 subscriptions") {
		t.Errorf("quota finding %+v", f)
	}
	if f := r.Findings[1]; !strings.Contains(f.Message, "Access to OData is disabled") || !strings.Contains(f.Action, "application access policy") {
		t.Errorf("policy finding %+v", f)
	}
	if r.Mailboxes == nil || !r.Mailboxes.Checked || len(r.Mailboxes.Refused) != 2 || r.Mailboxes.Refused[0].Mailbox != quotaUser {
		t.Errorf("mailboxes %+v", r.Mailboxes)
	}
	var buf bytes.Buffer
	if err := WriteText(&buf, r); err != nil || !strings.Contains(buf.String(), quotaUser) || !strings.Contains(buf.String(), "exit 1") {
		t.Errorf("text %s (%v)", buf.String(), err)
	}
	if b, _ := json.Marshal(r); !strings.Contains(string(b), `"mailboxes":{"checked":true`) {
		t.Errorf("json %s", b)
	}
}
