package status

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/subscription"
)

// Refusals is what a check needs of the mailbox refusal store (*refusals.Store).
type Refusals interface {
	Refusals(ctx context.Context) (map[string]subscription.Refusal, error)
}

// CodeMailboxRefused: Graph refused to subscribe to a mailbox.
const CodeMailboxRefused = "mailbox-refused"

// Mailboxes is the mailbox part of a Report.
type Mailboxes struct {
	Checked bool             `json:"checked"`
	Refused []MailboxRefusal `json:"refused"`
}

// MailboxRefusal is one mailbox resource Graph refused to subscribe to.
type MailboxRefusal struct {
	Mailbox  string    `json:"mailbox"`  // the user id
	Resource string    `json:"resource"` // users/{id}/messages or users/{id}/events
	Status   int       `json:"status"`
	Code     string    `json:"code,omitempty"`
	Reason   string    `json:"reason"`
	Since    time.Time `json:"since"`
	Count    int       `json:"count"`
	RetryAt  time.Time `json:"retryAt"`
}

// checkMailboxes reports every refusal on record, each a finding that names the mailbox and Graph's reason.
func (c *Checker) checkMailboxes(ctx context.Context, now time.Time) (*Mailboxes, []Finding) {
	if c.Refusals == nil {
		return nil, nil
	}
	out := &Mailboxes{Refused: []MailboxRefusal{}}
	store, err := c.Refusals()
	if err != nil {
		return out, []Finding{settingsFinding("the mailbox refusals", err)}
	}
	recs, err := store.Refusals(ctx)
	if err != nil {
		return out, []Finding{{Severity: CannotTell, Code: CodeStorageUnreachable, Subject: "AzureWebJobsStorage",
			Message: "could not read the mailbox refusals: " + cause(ctx, err) + ".",
			Action:  "check that the state table (STATE_TABLE) of AzureWebJobsStorage is reachable from here."}}
	}
	out.Checked = true
	var findings []Finding
	for _, res := range slices.Sorted(maps.Keys(recs)) {
		r := recs[res]
		out.Refused = append(out.Refused, MailboxRefusal{Mailbox: r.Mailbox(), Resource: r.Resource, Status: r.Status, Code: r.Code,
			Reason: r.Reason, Since: r.First.UTC(), Count: r.Count, RetryAt: r.RetryAt.UTC()})
		findings = append(findings, Finding{Severity: Attention, Code: CodeMailboxRefused, Subject: r.Mailbox(),
			Message: fmt.Sprintf("Graph refused to subscribe to %s (%d %s: %q), %d time(s) since %s; next try in %s: its changes are not followed.",
				r.Resource, r.Status, r.Code, r.Reason, r.Count, r.First.UTC().Format(time.RFC3339), ago(max(r.RetryAt.Sub(now), 0))),
			Action: refusalAction(r)})
	}
	return out, findings
}

// refusalAction says what to do about a refusal, by what Graph said.
func refusalAction(r subscription.Refusal) string {
	switch reason := strings.ToLower(r.Reason); {
	case strings.Contains(reason, "access to odata is disabled"):
		return "an Exchange application access policy (or RBAC for Applications) keeps this app out of the mailbox: add the mailbox to the policy's group " +
			"(check with Test-ApplicationAccessPolicy -Identity <mailbox> -AppId <client id>), or remove it from GRAPH_MAILBOXES."
	case strings.Contains(reason, "maximum number of subscriptions"), strings.Contains(reason, "limit"):
		return "the mailbox holds 1,000 subscriptions of all apps together: find the apps subscribing to it and remove theirs, or remove it from GRAPH_MAILBOXES."
	case r.Status == 404:
		return "Graph finds no mailbox for this user (no Exchange Online licence, or an on-premises mailbox): license it or remove it from GRAPH_MAILBOXES."
	case r.Status == 403:
		return "check the application permission Mail.Read (messages) or Calendars.Read (events) with admin consent."
	}
	return "read the renew timer's log line for this mailbox; the subscription is tried again at the time above."
}
