// Command demo runs the whole pipeline on this machine and tells its story: the real handler under the
// Functions host double, a real Azurite, and the Graph double standing in for Graph and Entra ID. It needs no
// Azure account. It exits 0 when every change made in Graph arrived as an enriched event, 1 otherwise.
//
//	go build -o handler . && go run ./cmd/demo            (or: make demo)
//	go run ./cmd/demo -follow                             keep running and print events as they come
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/azuritetest"
	"github.com/graphwebhooks/graph-webhooks-go/internal/checkpoint"
	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/devstack"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakehost"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	interrupted := ctx.Err() != nil
	stop()
	switch {
	case interrupted:
		// Ctrl-C is how -follow ends: run has stopped everything it started, so this is a clean exit.
		fmt.Println("\nStopped: Azurite, the host double, the handler and the Graph double are shut down.")
	case err != nil:
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	handler := fs.String("handler", "handler", "the built handler binary")
	users := fs.Int("users", 40, "users in the Graph double's directory")
	follow := fs.Bool("follow", false, "keep running after the story, printing events as they arrive")
	hubs := fs.Bool("eventhubs", false, "Graph delivers through Event Hubs (the eventhub function) instead of the webhook")
	logFile := fs.String("log", ".demo/handler.log", "where the handler's and host's log lines go")
	if err := fs.Parse(args); err != nil {
		return err
	}
	root, err := azuritetest.ModuleRoot(".")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(*logFile), 0o755); err != nil {
		return err
	}
	logw, err := os.Create(*logFile)
	if err != nil {
		return err
	}
	defer logw.Close()

	// Commands run from a folder of their own, so that the repository's local.settings.json (placeholders)
	// does not fill in settings the stack leaves at their defaults.
	cmdDir := filepath.Dir(*logFile)
	if *handler, err = filepath.Abs(*handler); err != nil {
		return err
	}

	d := &demo{out: out, start: time.Now()}
	d.say("Starting Azurite (storage), the Graph double with %d users and %d groups, and the Functions host double running ./%s …", *users, demoGroups, filepath.Base(*handler))
	settings := map[string]string{config.Resource: "users,groups,drives/" + demoDrive, config.Mailboxes: strings.Join(demoMailboxes(), ",")}
	if err := teamsSettings(settings, time.Now()); err != nil {
		return err
	}
	intake := "webhook"
	if *hubs {
		settings[config.NotificationURL] = devstack.EventHubURL()
		intake = "eventhub function"
	}
	s, err := devstack.Start(ctx, devstack.Options{Root: root, Handler: *handler, Users: *users, Groups: demoGroups, HandlerOut: logw,
		Settings: settings, EventHubs: *hubs,
		Drives: []string{demoDrive}, Graph: func(o *fakegraph.Options) { o.ControlAPI = *follow }})
	if err != nil {
		if errors.Is(err, azuritetest.ErrNotInstalled) {
			return fmt.Errorf("%w (make demo does this for you)", err)
		}
		return err
	}
	defer s.Close()
	d.s = s
	var sub fakegraph.Subscription
	for _, x := range s.Graph.Subscriptions() {
		d.say("renewtimer ran on start-up and subscribed: subscription %s on %q (%s), expires in %.1f days.",
			short(x.ID), x.Resource, x.ChangeType, time.Until(x.ExpirationDateTime).Hours()/24)
		if x.Resource == "users" {
			sub = x
		}
	}
	if *hubs {
		d.say("Graph delivers into the event hub %s: no handshake; its validation event reached the eventhub function, which skipped it.\n", devstack.EventHubName)
	} else {
		d.say("Graph's validation handshake reached the webhook through the host front with the function key.\n")
	}

	steps := []step{
		{title: "Three users are updated", act: func() []string {
			var ids []string
			for i := 1; i <= 3; i++ {
				id := devstack.UserID(i)
				s.Graph.UpdateUser(id, map[string]any{"jobTitle": "Principal Engineer", "displayName": fmt.Sprintf("User %03d (promoted)", i)})
				ids = append(ids, id)
			}
			return ids
		}},
		{title: "One user is soft-deleted (Graph sends `updated`; the worker finds it in deletedItems)", act: func() []string {
			s.Graph.SoftDeleteUser(devstack.UserID(4))
			return []string{devstack.UserID(4)}
		}},
		{title: "One user is permanently deleted (Graph sends `updated` for the soft delete, then `deleted`: one lookup, one event)", act: func() []string {
			s.Graph.PermanentlyDeleteUser(devstack.UserID(5))
			return []string{devstack.UserID(5)}
		}},
		{title: "A burst: 30 users updated twice each, 60 changes, duplicates included", act: func() []string {
			var ids []string
			for round := range 2 {
				for i := 6; i < 36; i++ {
					s.Graph.UpdateUser(devstack.UserID(i), map[string]any{"department": fmt.Sprintf("Dept %d", round)})
					if round == 0 {
						ids = append(ids, devstack.UserID(i))
					}
				}
			}
			return ids
		}, why: func(evs []message.Event, ids []string) string {
			if extra := len(evs) - len(ids); extra > 0 {
				return fmt.Sprintf("%d user(s) got two events: their two changes were read in two states (at least once: consumers keep the latest per resourceId)", extra)
			}
			return "one event per user: a user's notifications in one message make one read, and a read that found the state already emitted (the second notification in another message) wrote nothing"
		}},
		{title: "A forged notification (wrong clientState) is sent to the " + intake, act: func() []string {
			body := fmt.Sprintf(`{"value":[{"subscriptionId":%q,"changeType":"updated","clientState":"forged-client-state-123456","tenantId":%q,"resource":"Users/%s","resourceData":{"id":%q}}]}`,
				sub.ID, devstack.TenantID, devstack.UserID(900), devstack.UserID(900))
			if *hubs {
				s.Host.SendEvents(devstack.EventHubName, fakehost.EventData{Body: []byte(body)})
				d.say("   sent as an event into the hub: verified exactly as the webhook verifies a POST")
			} else if resp, err := s.Graph.Forge(s.Settings["GRAPH_NOTIFICATION_URL"], []byte(body)); err == nil {
				resp.Body.Close()
				d.say("   the webhook answered %d, as it does for genuine ones: a forger learns nothing", resp.StatusCode)
			}
			d.forgedUser = devstack.UserID(900)
			return nil
		}},
		{title: "A throttling storm: Graph answers 429 (Retry-After 2 s) to the next 4 $batch calls while 5 users change", act: func() []string {
			s.Graph.Inject("POST /v1.0/$batch", fakegraph.Fault{Status: 429, RetryAfter: 2 * time.Second, Count: 4})
			var ids []string
			for i := 36; i <= 40 && i <= *users; i++ {
				s.Graph.UpdateUser(devstack.UserID(i), map[string]any{"mail": fmt.Sprintf("user%03d@fabrikam.example", i)})
				ids = append(ids, devstack.UserID(i))
			}
			return ids
		}, why: func([]message.Event, []string) string {
			return "the worker re-enqueued the throttled lookups after each Retry-After instead of failing: nothing lost"
		}},
		{title: "Graph drops notifications for a while (an endpoint marked \"drop\"): 4 users change unseen; then `handler resync` (the daily pass, run now)", act: func() []string {
			s.Graph.DropNotifications(true)
			var ids []string
			for i := 10; i <= 12; i++ {
				s.Graph.UpdateUser(devstack.UserID(i), map[string]any{"jobTitle": "changed while Graph dropped notifications"})
				ids = append(ids, devstack.UserID(i))
			}
			s.Graph.SoftDeleteUser(devstack.UserID(13))
			ids = append(ids, devstack.UserID(13))
			s.Graph.DropNotifications(false)
			d.dropped = ids
			d.resyncAsked = time.Now()
			cmd := exec.CommandContext(ctx, *handler, "resync")
			cmd.Dir = cmdDir
			for k, v := range s.Settings {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr // the command's log lines; its answer is on stdout
			if out, err := cmd.Output(); err != nil {
				d.say("   $ handler resync  failed: %v\n%s", err, stderr.String())
			} else {
				d.say("   $ handler resync  → %s", strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", "\n                       "))
			}
			return ids
		}, why: func(evs []message.Event, ids []string) string {
			var dropped, other []string
			for _, e := range evs {
				if e.Source != message.SourceResync {
					continue
				}
				line := fmt.Sprintf("\n       %s %-18s changed %v", short(e.ResourceID), changeText(e), e.Changed)
				if slices.Contains(ids, e.ResourceID) {
					dropped = append(dropped, line)
				} else {
					other = append(other, line)
				}
			}
			why := fmt.Sprintf("the resync pass read every user changed since the last pass (at start-up) and wrote %d event(s), one for each user Graph dropped, with what changed:", len(dropped))
			why += strings.Join(dropped, "")
			why += "\n     the changes notifications had already delivered were read again and suppressed: they carry nothing new"
			if len(other) > 0 {
				why += fmt.Sprintf("\n     %d more: deletes are always written, so a consumer never misses one, and the pass read these again:%s", len(other), strings.Join(other, ""))
			}
			return why
		}},
		{title: "A group is renamed, gains two members and loses one", act: func() []string {
			g := devstack.SeedGroup(1).ID
			s.Graph.UpdateGroup(g, map[string]any{"displayName": "Platform team"})
			s.Graph.AddMembers(g, devstack.UserID(20), devstack.UserID(21))
			s.Graph.RemoveMembers(g, devstack.UserID(1))
			d.members = append(d.members, devstack.UserID(20), devstack.UserID(21), devstack.UserID(1))
			return []string{g}
		}, why: func(evs []message.Event, ids []string) string {
			var lines []string
			for _, e := range evs {
				line := fmt.Sprintf("\n       %-12s %s", e.Source, changeText(e))
				if e.Changed != nil {
					line += fmt.Sprintf(" changed %v", e.Changed)
				}
				if e.Members != nil {
					line += fmt.Sprintf(" members +%d −%d", len(e.Members.Added), len(e.Members.Removed))
				}
				lines = append(lines, line)
			}
			return "Graph notifies only that the group changed; the worker reads the group (its new name) and asks for a groups delta pass, which names the members:" + strings.Join(lines, "")
		}},
		{title: "A Microsoft 365 group is soft-deleted, then deleted for good", act: func() []string {
			g := devstack.SeedGroup(2).ID
			s.Graph.SoftDeleteGroup(g)
			s.Graph.PermanentlyDeleteGroup(g)
			return []string{g}
		}, why: func(evs []message.Event, _ []string) string {
			var what []string
			for _, e := range evs {
				what = append(what, fmt.Sprintf("%s from the %s", changeText(e), e.Source))
			}
			return strings.Join(what, "; ") + " (deletes are always written, and the groups pass a group notification asks for reports it too)"
		}},
	}
	drives := &driveStory{d: d}
	steps = append(steps, drives.steps(ctx)...)
	graphAtStart := d.graphRequests() // the start-up resync pass's delta call
	allOK := true
	for i, step := range steps {
		d.say("%d. %s", i+1, step.title)
		if step.prepare != nil {
			step.prepare()
		}
		graphBefore := d.graphRequests()
		eventsBefore := len(s.Events())
		t0 := time.Now()
		ids := step.act()
		var ok bool
		if step.await != nil {
			ok = step.await(ctx, eventsBefore)
		} else {
			ok = d.await(ctx, ids, 90*time.Second) && d.awaitMembers(ctx, 90*time.Second)
		}
		if !d.resyncAsked.IsZero() {
			d.awaitResync(ctx, 90*time.Second)
		}
		took := time.Since(t0)
		// Let the step's stragglers (duplicates) land, so that each event is counted in the step that caused it.
		d.settle(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		allOK = allOK && ok
		evs := s.Events()[eventsBefore:]
		d.say("   → %d event(s) for %d object(s) in %.1fs, %d Graph request(s)%s", len(evs), len(distinct(evs)), took.Seconds(),
			d.graphRequests()-graphBefore, map[bool]string{true: "", false: "  ✗ NOT ALL ARRIVED"}[ok])
		switch {
		case !ok:
		case step.why != nil:
			d.say("     %s", step.why(evs, ids))
		case len(evs) > len(distinct(evs)):
			d.say("     %d duplicate(s): Graph may notify a change more than once (at least once: consumers keep the latest per resourceId)",
				len(evs)-len(distinct(evs)))
		}
		d.say("")
	}
	forgedEvents := 0
	for _, e := range s.Events() {
		if e.ResourceID == d.forgedUser {
			forgedEvents++
		}
	}
	if forgedEvents > 0 {
		allOK = false
	}
	allOK = d.teamsStory(ctx) && allOK
	acc, dropped := d.webhookCounts()
	d.say("Summary")
	d.say("  notifications accepted                  %d by the %s (%d event(s): a user's notifications within one message make one event)",
		acc, intake, d.bySource(message.SourceNotification))
	d.say("  dropped as forged                       %d (events for the forged user: %d)", dropped, forgedEvents)
	d.say("  change events read from graphchanges    %d, for %d objects: %d from notifications + %d from delta passes (the resync, the groups and drive passes) + %d from full enumerations",
		len(s.Events()), len(devstack.Latest(s.Events())), d.bySource(message.SourceNotification), d.bySource(message.SourceResync), d.bySource(message.SourceFullSync))
	d.say("  changes only the resync recovered       %d (the users Graph dropped notifications for)", len(d.dropped))
	d.say("  suppressed: carried nothing new         %d (duplicate notifications, and the resync re-reading notified changes)", d.suppressed())
	d.say("  group events                            %d", d.byResource("groups"))
	d.say("  Teams chat message events               %d, with %d Graph requests for them", d.byResource("chatMessages"), d.teamsGraph)
	d.say("  Graph requests by the worker            %d: %d at start-up + %d in the steps ($batch %d, deletedItems %d, delta %d)",
		d.graphRequests(), graphAtStart, d.graphRequests()-graphAtStart,
		s.Graph.Count("POST", "/v1.0/$batch"), s.Graph.Count("GET", "/v1.0/directory/deletedItems"),
		s.Graph.Count("GET", "/v1.0/users/delta")+s.Graph.Count("GET", "/v1.0/groups/delta")+s.Graph.Count("GET", "/v1.0/drives/"))
	drives.summary(s.Events())
	d.say("  handler restarts                        %d", s.Host.Restarts())
	d.say("  poison messages                         %d (the tampered Teams message)", d.poison(ctx))
	d.say("  time                                    %.1fs (logs in %s)", time.Since(d.start).Seconds(), *logFile)
	if !d.mailStory(ctx) {
		allOK = false
	}
	if !allOK {
		return errors.New("some changes did not arrive as events (see the log)")
	}
	d.say("Every change arrived as an enriched event carrying the object's latest state.")

	if *follow {
		d.say("\nThe Graph double's control API (internal/fakegraph/doc.go); every example works as printed:")
		for _, ex := range controlExamples(s.Graph.URL(), s.Graph.Subscriptions()[0].ID) {
			d.say("  %-58s %s", ex.Method+" "+ex.Route, ex.What)
			d.say("      %s", ex.Curl())
		}
		d.say("\nFollowing graphchanges (Ctrl-C to stop):")
		d.say("  %s", eventHeader)
		seen := len(s.Events())
		for ctx.Err() == nil {
			s.Drain(ctx)
			evs := s.Events()
			for _, e := range evs[seen:] {
				d.say("  %s", eventLine(e))
			}
			seen = len(evs)
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
	return nil
}

// step is one change of the story and how its outcome is awaited and explained.
type step struct {
	title string
	act   func() []string // changes made; returns the user or group ids whose latest state must arrive
	// why explains the step's events (all events that arrived during the step), "" for nothing to add.
	why func(evs []message.Event, ids []string) string
	// await, when set, waits for the step's events instead (since: the number of events before the step).
	await func(ctx context.Context, since int) bool
	// prepare, when set, runs before the step is timed and counted (e.g. waiting for a quiet moment).
	prepare func()
}

type demo struct {
	out         io.Writer
	s           *devstack.Stack
	start       time.Time
	forgedUser  string
	dropped     []string  // users changed while Graph dropped notifications
	members     []string  // membership changes made to group 1 that must arrive
	resyncAsked time.Time // when `handler resync` was run
	teamsGraph  int       // Graph requests made while the Teams story's messages were processed
}

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.out, format+"\n", args...) }

// demoGroups is how many groups the demo's directory holds.
const demoGroups = 3

// graphRequests counts the worker's calls to Graph (users, groups, $batch, deletedItems, drives), not the
// subscription calls.
func (d *demo) graphRequests() int {
	return d.s.Graph.Count("POST", "/v1.0/$batch") + d.s.Graph.Count("GET", "/v1.0/users") +
		d.s.Graph.Count("GET", "/v1.0/groups") + d.s.Graph.Count("GET", "/v1.0/directory") +
		d.s.Graph.Count("GET", "/v1.0/drives/")
}

// awaitMembers waits until every membership change made to group 1 has arrived in some event's members.
func (d *demo) awaitMembers(ctx context.Context, limit time.Duration) bool {
	if len(d.members) == 0 {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	g := devstack.SeedGroup(1).ID
	return d.s.WaitEvents(ctx, func(evs []message.Event) bool {
		seen := map[string]bool{}
		for _, e := range evs {
			if e.ResourceID == g && e.Members != nil {
				for _, id := range append(slices.Clone(e.Members.Added), e.Members.Removed...) {
					seen[id] = true
				}
			}
		}
		for _, id := range d.members {
			if !seen[id] {
				return false
			}
		}
		return true
	}) == nil
}

// suppressed sums what the worker's invocations say they did not write.
func (d *demo) suppressed() int {
	n := 0
	for _, inv := range d.s.Host.Invocations() {
		if inv.Function != "queueworker" {
			continue
		}
		for _, l := range inv.Logs {
			if m := suppressedRE.FindStringSubmatch(l); m != nil {
				k, _ := strconv.Atoi(m[1])
				n += k
			}
		}
	}
	return n
}

var suppressedRE = regexp.MustCompile(`(\d+) suppressed as carrying nothing new`)

func (d *demo) byResource(r string) int {
	n := 0
	for _, e := range d.s.Events() {
		if e.Resource == r {
			n++
		}
	}
	return n
}

// changeText says what an event reports: updated, or which kind of delete.
func changeText(e message.Event) string {
	switch {
	case e.ChangeType == graph.Deleted && e.SoftDeleted:
		return "deleted (soft)"
	case e.ChangeType == graph.Deleted:
		return "deleted (for good)"
	}
	return string(e.ChangeType)
}

// await waits until every user in ids has an event carrying its current state in the Graph double.
func (d *demo) await(ctx context.Context, ids []string, limit time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	return d.s.AwaitState(ctx, ids) == nil
}

func (d *demo) bySource(src message.Source) int {
	n := 0
	for _, e := range d.s.Events() {
		if e.Source == src {
			n++
		}
	}
	return n
}

func distinct(evs []message.Event) map[string]bool {
	ids := map[string]bool{}
	for _, e := range evs {
		ids[e.ResourceID] = true
	}
	return ids
}

// awaitResync waits until the pass `handler resync` started has completed, reading its checkpoint.
func (d *demo) awaitResync(ctx context.Context, limit time.Duration) {
	cfg := config.Load(func(k string) string { return d.s.Settings[k] })
	st, err := checkpoint.New(cfg.Storage, cfg.ResyncContainer, checkpoint.Options{})
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	devstack.Eventually(ctx, func() bool {
		for _, c := range cfg.Collections() {
			cp, _, err := st.Load(ctx, c)
			if err != nil || cp.Pass != nil || !cp.LastCompleted.After(d.resyncAsked.Add(-time.Second)) {
				return false
			}
		}
		return true
	})
	d.resyncAsked = time.Time{}
}

// settle drains until two reads in a row find nothing new.
func (d *demo) settle(ctx context.Context) {
	for quiet := 0; quiet < 2 && ctx.Err() == nil; {
		n, _ := d.s.Drain(ctx)
		if n == 0 {
			quiet++
		} else {
			quiet = 0
		}
		time.Sleep(300 * time.Millisecond)
	}
}

var countRE = regexp.MustCompile(`queued (\d+) change and (\d+) lifecycle notifications in \d+ messages; dropped (\d+)`)

// webhookCounts sums what the webhook reported in its invocations' Logs.
func (d *demo) webhookCounts() (accepted, dropped int) {
	for _, inv := range d.s.Host.Invocations() {
		for _, l := range inv.Logs {
			if m := countRE.FindStringSubmatch(l); m != nil {
				a, _ := strconv.Atoi(m[1])
				b, _ := strconv.Atoi(m[2])
				c, _ := strconv.Atoi(m[3])
				accepted, dropped = accepted+a+b, dropped+c
			}
		}
	}
	return accepted, dropped
}

// poison counts the poison queue's messages without receiving them (a receive would hide them for a while).
func (d *demo) poison(ctx context.Context) int {
	n, _ := d.s.Queue.ApproximateCount(ctx, devstack.NotificationQueue+"-poison")
	return n
}

const eventHeader = "TIME      CHANGE               SOURCE        USER ID                               NAME, MAIL"

// eventLine is one event in the columns of eventHeader; properties Graph returned as null are left out.
func eventLine(e message.Event) string {
	change := changeText(e)
	var who []string
	for _, k := range []string{"displayName", "mail"} {
		if v, ok := e.Object[k].(string); ok && v != "" {
			who = append(who, v)
		}
	}
	return fmt.Sprintf("%-8s  %-19s  %-12s  %-36s  %s", e.ObservedAt.Local().Format("15:04:05"), change, e.Source, e.ResourceID, strings.Join(who, ", "))
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8] + "…"
	}
	return id
}
