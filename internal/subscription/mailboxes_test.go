package subscription

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/testclock"
)

var planT0 = testclock.Date(2026, 3, 2, 8, 0, 0)

func mbUser(i int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", i) }

func mbSub(id, res string, exp time.Time) graph.Subscription {
	return graph.Subscription{ID: id, Resource: res, ChangeType: "created,updated,deleted", ExpirationDateTime: exp}
}

func opsOf(p MailboxPlan, kind OpKind) []Op {
	var out []Op
	for _, o := range p.Ops {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

func TestPlanMailboxesCreatesRenewsAndDeletesDeparted(t *testing.T) {
	a, b, c, gone := MailboxResource(mbUser(1), "messages"), MailboxResource(mbUser(2), "messages"), MailboxResource(mbUser(3), "events"), MailboxResource(mbUser(4), "messages")
	existing := []graph.Subscription{
		mbSub("a-long", "/Users/"+mbUser(1)+"/Messages", planT0.Add(60*time.Hour)), // current, any case
		mbSub("a-short", a, planT0.Add(50*time.Hour)),                              // duplicate: the shorter-lived goes
		mbSub("b", b, planT0.Add(20*time.Hour)),                                    // under a day: urgent
		mbSub("gone", gone, planT0.Add(60*time.Hour)),                              // mailbox left the group
		{ID: "dir", Resource: "users", ChangeType: "updated,deleted", ExpirationDateTime: planT0.Add(600 * time.Hour)},
	}
	in := MailboxPlanInput{Now: planT0, Desired: []string{a, b, c, b}, Complete: true, Existing: existing}
	p := PlanMailboxes(in)
	if len(p.Ops) != 4 || p.Ops[0].Kind != OpRenew || p.Ops[0].Sub.ID != "b" || !p.Ops[0].Urgent {
		t.Fatalf("the urgent renewal comes first: %+v", p.Ops)
	}
	if cr := opsOf(p, OpCreate); len(cr) != 1 || cr[0].Resource != c {
		t.Fatalf("creates: %+v", cr)
	}
	var deleted []string
	for _, o := range opsOf(p, OpDelete) {
		deleted = append(deleted, o.Sub.ID)
	}
	if !slices.Equal(deleted, []string{"a-short", "gone"}) {
		t.Fatalf("deletes %v: the duplicate and the departed mailbox, never the directory's subscription", deleted)
	}
	if p.Kept != 1 {
		t.Fatalf("kept %d", p.Kept)
	}
	in.Complete = false
	p = PlanMailboxes(in)
	for _, o := range opsOf(p, OpDelete) {
		if o.Sub.ID == "gone" {
			t.Fatal("with a group unread, a mailbox that seems gone must not be unsubscribed")
		}
	}
}

func TestPlanMailboxesStaleIsRecreated(t *testing.T) {
	a := MailboxResource(mbUser(1), "messages")
	b := MailboxResource(mbUser(2), "messages")
	existing := []graph.Subscription{
		mbSub("old-state", a, planT0.Add(60*time.Hour)),
		{ID: "wrong-types", Resource: b, ChangeType: "updated", ExpirationDateTime: planT0.Add(60 * time.Hour)},
	}
	p := PlanMailboxes(MailboxPlanInput{Now: planT0, Desired: []string{a, b}, Complete: true, Existing: existing,
		Stale: func(s graph.Subscription) string {
			if s.ID == "old-state" {
				return "clientState rotated"
			}
			return ""
		}})
	rc := opsOf(p, OpRecreate)
	if len(rc) != 2 || !slices.Equal(rc[0].Stale, []string{"old-state"}) || !slices.Equal(rc[1].Stale, []string{"wrong-types"}) {
		t.Fatalf("recreates: %+v", rc)
	}
	if rc[0].Cost() != 2 {
		t.Fatalf("a recreate costs a delete and a create: %d", rc[0].Cost())
	}
}

func TestPlanMailboxesURLChangeIsUrgent(t *testing.T) {
	a := MailboxResource(mbUser(1), "messages")
	p := PlanMailboxes(MailboxPlanInput{Now: planT0, Desired: []string{a}, Complete: true,
		Existing:   []graph.Subscription{mbSub("a", a, planT0.Add(69*time.Hour))},
		URLChanged: func(graph.Subscription) bool { return true }})
	if len(p.Ops) != 1 || p.Ops[0].Kind != OpRenew || !p.Ops[0].Urgent {
		t.Fatalf("a rotated function key is PATCHed at once: %+v", p.Ops)
	}
}

func TestPlanMailboxesBudgetNeverDefersUrgent(t *testing.T) {
	var desired []string
	var existing []graph.Subscription
	for i := range 20 {
		r := MailboxResource(mbUser(i), "messages")
		desired = append(desired, r)
		if i < 10 {
			existing = append(existing, mbSub(fmt.Sprint("s", i), r, planT0.Add(time.Duration(i+1)*time.Hour)))
		}
	}
	p := PlanMailboxes(MailboxPlanInput{Now: planT0, Desired: desired, Complete: true, Existing: existing, Budget: 5})
	if n := len(opsOf(p, OpRenew)); n != 10 {
		t.Fatalf("urgent renewals beyond the budget: %d of 10 planned", n)
	}
	if len(opsOf(p, OpCreate)) != 0 || p.Deferred != 10 {
		t.Fatalf("creates beyond the budget wait: %d planned, %d deferred", len(opsOf(p, OpCreate)), p.Deferred)
	}
	for i := 1; i < 10; i++ {
		if p.Ops[i].Sub.ExpirationDateTime.Before(p.Ops[i-1].Sub.ExpirationDateTime) {
			t.Fatal("urgent renewals go soonest expiry first")
		}
	}
	p = PlanMailboxes(MailboxPlanInput{Now: planT0, Desired: desired, Complete: true, Existing: existing, Budget: 13})
	if len(opsOf(p, OpCreate)) != 3 || p.Deferred != 7 {
		t.Fatalf("budget 13: %d creates, %d deferred", len(opsOf(p, OpCreate)), p.Deferred)
	}
}

func TestPlanMailboxesRefusalWaitsForItsBackoff(t *testing.T) {
	a, b := MailboxResource(mbUser(1), "messages"), MailboxResource(mbUser(2), "messages")
	left := MailboxResource(mbUser(9), "events")
	refusals := map[string]Refusal{
		a:    {Resource: a, Status: 403, Reason: "quota", RetryAt: planT0.Add(time.Hour)},
		b:    {Resource: b, Status: 403, Reason: "policy", RetryAt: planT0.Add(-time.Minute)},
		left: {Resource: left, RetryAt: planT0.Add(time.Hour)},
	}
	p := PlanMailboxes(MailboxPlanInput{Now: planT0, Desired: []string{a, b}, Complete: true, Refusals: refusals})
	if cr := opsOf(p, OpCreate); len(cr) != 1 || cr[0].Resource != b {
		t.Fatalf("only the refusal whose back-off is over is tried: %+v", cr)
	}
	if len(p.Waiting) != 1 || p.Waiting[0].Resource != a {
		t.Fatalf("waiting: %+v", p.Waiting)
	}
	if !slices.Equal(p.Forget, []string{left}) {
		t.Fatalf("a refusal of a mailbox no longer configured is forgotten: %v", p.Forget)
	}
}

func TestNextRefusalBacksOffLonger(t *testing.T) {
	var r Refusal
	now := planT0
	var waits []time.Duration
	for range 6 {
		r = nextRefusal(r, "users/x/messages", 403, "ExtensionError", "quota", now)
		waits = append(waits, r.RetryAt.Sub(now))
		now = r.RetryAt
	}
	want := []time.Duration{12 * time.Hour, 24 * time.Hour, 48 * time.Hour, 96 * time.Hour, 7 * 24 * time.Hour, 7 * 24 * time.Hour}
	if !slices.Equal(waits, want) || r.Count != 6 || !r.First.Equal(planT0) {
		t.Fatalf("back-offs %v (count %d, first %v), want %v", waits, r.Count, r.First, want)
	}
}

func TestParseMailboxResource(t *testing.T) {
	for res, want := range map[string]string{
		"users/" + mbUser(1) + "/messages":        mbUser(1) + " messages",
		"/Users/" + mbUser(1) + "/Events":         mbUser(1) + " events",
		"users/" + mbUser(1):                      "",
		"users/alice@contoso.com/messages":        "",
		"users/" + mbUser(1) + "/mailFolders/x":   "",
		"groups/" + mbUser(1) + "/messages":       "",
		"users/" + mbUser(1) + "/messages/extra/": "",
	} {
		u, k, ok := ParseMailboxResource(res)
		got := ""
		if ok {
			got = u + " " + k
		}
		if got != want {
			t.Errorf("%q: %q, want %q", res, got, want)
		}
	}
}

// TestPlanMailboxesAtScaleSpreadsRenewals simulates five days of hourly runs for 10,000 mailboxes whose
// subscriptions were all created in the same hour (2,000 under the race detector), applying each plan as
// Graph would.
func TestPlanMailboxesAtScaleSpreadsRenewals(t *testing.T) {
	n := 10000
	if raceEnabled {
		n = 2000 // the property does not depend on the count; the race detector makes 10,000 take a minute
	}
	subs := make([]graph.Subscription, n)
	desired := make([]string, n)
	for i := range n {
		desired[i] = MailboxResource(mbUser(i), "messages")
		subs[i] = mbSub(fmt.Sprintf("sub-%05d", i), desired[i], planT0.Add(MailboxLifetime))
	}
	idx := map[string]int{}
	for i, s := range subs {
		idx[s.ID] = i
	}
	total, most := 0, 0
	const days = 5
	const hours = days * 24
	for h := 1; h <= hours; h++ {
		now := planT0.Add(time.Duration(h) * time.Hour)
		for _, s := range subs {
			if left := s.ExpirationDateTime.Sub(now); left < MailboxMustRenew {
				t.Fatalf("hour %d: %s has %v left", h, s.ID, left)
			}
		}
		p := PlanMailboxes(MailboxPlanInput{Now: now, Desired: desired, Complete: true, Existing: subs, Budget: 4000})
		if len(p.Ops) != len(opsOf(p, OpRenew)) || p.Deferred != 0 {
			t.Fatalf("hour %d: only renewals expected, got %d ops (%d deferred)", h, len(p.Ops), p.Deferred)
		}
		for _, o := range p.Ops {
			subs[idx[o.Sub.ID]].ExpirationDateTime = now.Add(MailboxLifetime)
		}
		total += len(p.Ops)
		most = max(most, len(p.Ops))
	}
	perDay := float64(total) / float64(n) / days
	t.Logf("%d mailboxes, %d days of hourly runs: %d renewals (%.2f per mailbox per day), at most %d in one run", n, days, total, perDay, most)
	if perDay > 1.0 {
		t.Errorf("%.2f renewals per mailbox per day, want at most one", perDay)
	}
	if most > n/10 {
		t.Errorf("%d renewals in one run: not spread", most)
	}
}
