package status

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/safetext"
)

// WriteText prints r for people: one aligned table each for subscriptions, resync and queues, then the
// findings with what to do, then the verdict.
func WriteText(w io.Writer, r Report) error {
	subs := [][]string{{"SUBSCRIPTION", "STATE", "EXPIRES", "DAYS LEFT", "DELIVERY", "LIFECYCLE URL", "ID"}}
	for _, s := range r.Subscriptions {
		exp, days, deliv, life := "-", "-", "-", "-"
		if s.Expires != nil {
			exp = s.Expires.Format(time.RFC3339)
		}
		if s.DaysLeft != nil {
			days = fmt.Sprintf("%.1f", *s.DaysLeft)
		}
		if s.Delivery != "" {
			deliv = map[string]string{"webhook": "webhook", "eventhubs": "Event Hubs"}[s.Delivery] + " to " + s.NotificationHost
			life = map[bool]string{true: "set", false: "not set"}[s.LifecycleURLSet]
		}
		id := dash(s.ID)
		if s.Duplicates > 0 {
			id += fmt.Sprintf(" (+%d duplicate(s))", s.Duplicates)
		}
		if s.EncryptionCertificateID != "" {
			id += " (certificate " + s.EncryptionCertificateID + ")"
		}
		subs = append(subs, []string{s.Resource, s.State, exp, days, deliv, life, id})
	}
	resync := [][]string{{"RESYNC", "LAST COMPLETED", "AGO", "EVENTS", "IN PROGRESS"}}
	for _, rs := range r.Resync {
		last, lastAgo, events, now := "-", "-", "-", "idle"
		if !rs.Checked {
			last, now = "unchecked", "unchecked"
		}
		if p := rs.LastCompleted; p != nil {
			last, lastAgo, events = p.At.Format(time.RFC3339), ago(time.Duration(p.AgoSeconds)*time.Second), fmt.Sprint(p.Events)
			if p.Full {
				last += " (full)"
			}
		}
		if p := rs.InProgress; p != nil {
			now = fmt.Sprintf("page %d, %d event(s) so far, moved %s ago", p.Page, p.Events, ago(time.Duration(p.AgoSeconds)*time.Second))
			if p.Stalled {
				now += ", STALLED"
			}
		}
		resync = append(resync, []string{rs.Collection, last, lastAgo, events, now})
	}
	queues := [][]string{{"QUEUE", "MESSAGES (APPROX.)", "OLDEST"}}
	for _, q := range r.Queues {
		n, oldest := "unchecked", "-"
		if q.Checked {
			n = fmt.Sprint(q.ApproximateMessages)
		}
		if q.OldestAgeSeconds != nil {
			oldest = ago(time.Duration(*q.OldestAgeSeconds)*time.Second) + " old"
		}
		queues = append(queues, []string{q.Name, n, oldest})
	}
	for _, t := range [][][]string{subs, resync, queues} {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, row := range t {
			// Cells may hold what Graph or storage returned (a subscription id): escaped, so that none can
			// start a line of its own or break the table.
			for i, c := range row {
				row[i] = safetext.Line(c)
			}
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	for _, f := range r.Findings {
		label := "NEEDS ATTENTION"
		if f.Severity == CannotTell {
			label = "COULD NOT CHECK"
		}
		fmt.Fprintf(w, "%s  %s (%s): %s\n    what to do: %s\n", label, f.Code, safetext.Line(f.Subject), safetext.Line(f.Message), safetext.Line(f.Action))
	}
	verdict := map[Health]string{Healthy: "healthy", Attention: "needs attention", CannotTell: "could not check everything"}[r.Health]
	_, err := fmt.Fprintf(w, "status: %s (exit %d)\n", verdict, r.ExitCode)
	return err
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
