// Command handler is the Azure Functions custom handler for Microsoft Graph change notifications: one
// binary serving the webhook, queueworker and renewtimer functions (see README.md).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/eventhub"
	"github.com/graphwebhooks/graph-webhooks-go/internal/checkpoint"
	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/customhandler"
	"github.com/graphwebhooks/graph-webhooks-go/internal/directory"
	"github.com/graphwebhooks/graph-webhooks-go/internal/events"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/identity"
	"github.com/graphwebhooks/graph-webhooks-go/internal/logctx"
	"github.com/graphwebhooks/graph-webhooks-go/internal/mailbox"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
	"github.com/graphwebhooks/graph-webhooks-go/internal/objectstate"
	"github.com/graphwebhooks/graph-webhooks-go/internal/redact"
	"github.com/graphwebhooks/graph-webhooks-go/internal/refusals"
	"github.com/graphwebhooks/graph-webhooks-go/internal/resync"
	"github.com/graphwebhooks/graph-webhooks-go/internal/safetext"
	"github.com/graphwebhooks/graph-webhooks-go/internal/status"
	"github.com/graphwebhooks/graph-webhooks-go/internal/storagequeue"
	"github.com/graphwebhooks/graph-webhooks-go/internal/subscription"
	"github.com/graphwebhooks/graph-webhooks-go/queueworker"
	"github.com/graphwebhooks/graph-webhooks-go/renewtimer"
	"github.com/graphwebhooks/graph-webhooks-go/webhook"
)

func main() {
	tuneGC(os.Getenv)
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() { cancel(customhandler.Signaled{Signal: <-sigs}) }()

	getenv := os.Getenv
	if len(os.Args) > 1 && isCommand(os.Args[1]) && !slices.ContainsFunc(os.Args[2:], isHelpFlag) {
		// A command run by hand in the app folder reads local.settings.json as `func start` does; the
		// functions get their settings from the host.
		getenv = localSettings(os.LookupEnv, localSettingsFile, os.Stderr)
	}
	err := run(ctx, os.Args, getenv, os.Stdout, os.Stderr)
	var code exitStatus
	switch {
	case errors.As(err, &code):
		os.Exit(int(code))
	case err != nil && !errors.As(err, new(customhandler.Signaled)):
		fmt.Fprintln(os.Stderr, "handler:", safetext.Line(err.Error())) // it may quote what Graph or storage answered
	}
	os.Exit(customhandler.ExitCode(err))
}

// memoryLimit is the default soft limit on the Go runtime's memory (see tuneGC).
const memoryLimit = 40 << 20

// tuneGC sets the collector for the handler's load unless the operator chose (GOGC, GOMEMLIMIT).
func tuneGC(getenv func(string) string) {
	// The handler answers many small invocations that each allocate ~170 KB and keep nothing: with Go's
	// default GOGC=100 and its 4 MiB minimum heap target that is a collection every few milliseconds under
	// load, which shows in the webhook's tail latency (docs/benchmarks.md). Collect a quarter as often unless
	// the operator chose GOGC; the heap stays in the tens of MiB.
	if getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	// GOGC=400 lets the heap grow to five times what a collection left live, and one large invocation (a
	// 4 MiB webhook body is about 10 MiB live while its envelope is decoded) would set that bar for all that
	// follow. A soft limit makes the collector run sooner only when the heap nears it, so small invocations
	// keep the cheap setting and a burst of large ones stays bounded. GOMEMLIMIT overrides it.
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
}

// exitStatus is a command's verdict as an exit code, with nothing more to print (`handler status`).
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// testHookServer, set only by tests, adds functions to the server run builds (one that holds an invocation
// open, to test shutdown with work in flight).
var testHookServer func(*customhandler.Server)

// shutdownGrace is how long in-flight invocations may run after a stop signal.
const shutdownGrace = 30 * time.Second

const usage = `usage: handler [command]

With no command, serves the functions on the port the Functions host sets in FUNCTIONS_CUSTOMHANDLER_PORT.

Commands (they read the same app settings as the functions, from the environment, else from
local.settings.json Values in the working folder; -h on a command describes it):
  status [-json]           is it working? subscriptions, resync passes, queue depths, poison; exit 0 healthy,
                           1 needs attention, 2 could not check (docs/operations.md)
  unsubscribe              delete this app's Graph subscriptions for GRAPH_RESOURCE (clean uninstall)
  replay-poison [-dry-run] move messages from webhooksnotificationqueue-poison back to the queue
  resync [collection…]     start a delta-query resync pass now (after an outage you know of) for every
                           collection GRAPH_RESOURCE names, or for those given (users, groups,
                           drives/{drive-id}); the queue worker runs it page by page. A pass already running
                           is not started twice.
`

// run is the whole program behind main, with its dependencies passed in so tests can run it in-process.
//
// Everything that leaves the process passes through one redactor built from the settings' secrets: every
// line written to stdout and stderr (log lines, a command's output, the status report, its alert lines),
// every invocation's Logs, and the error run returns. An error from storage or Graph may quote a response
// body, and a proxy or a firewall may echo the request in it, function key or SAS signature included.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg := config.Load(getenv)
	red := redact.New(cfg.Secrets()...)
	out, errOut := redact.NewWriter(stdout, red), redact.NewWriter(stderr, red)
	err := runRedacted(ctx, args, getenv, cfg, red, out, errOut)
	out.Flush()
	errOut.Flush()
	return red.Error(err)
}

func runRedacted(ctx context.Context, args []string, getenv func(string) string, cfg *config.Config, red *redact.Redactor, stdout, stderr io.Writer) error {
	logOut := stdout
	if len(args) > 1 {
		logOut = stderr // a command's stdout is its answer (`status -json` is parsed)
	}
	log := customhandler.NewLogger(logOut, stderr, slog.LevelInfo)
	// Anything that logs without an invocation's logger (the SDKs, a library) goes the same way: information
	// to stdout, which the host would otherwise log as errors from stderr.
	slog.SetDefault(log)
	a := newApp(cfg, log)

	if len(args) > 1 {
		ctx = logctx.With(ctx, log)
		switch args[1] {
		case "-h", "-help", "--help", "help":
			fmt.Fprint(stdout, usage)
			return nil
		case "status":
			return a.statusCommand(ctx, args[2:], stdout, stderr)
		case "unsubscribe":
			if done, err := commandFlags(args[1:], stdout, stderr, nil); done || err != nil {
				return err
			}
			ids, err := a.keeper.Unsubscribe(ctx)
			for _, id := range ids {
				fmt.Fprintln(stdout, "deleted subscription", safetext.Line(id)) // as Graph listed it
			}
			if err == nil && len(ids) == 0 {
				fmt.Fprintln(stdout, "no subscription to delete")
			}
			return err
		case "replay-poison":
			return a.replayPoison(ctx, args[2:], stdout, stderr)
		case "resync":
			// The collections are arguments, not flags: the flags (-h) are checked on their own.
			flags, collections := []string{"resync"}, []string(nil)
			for _, arg := range args[2:] {
				if strings.HasPrefix(arg, "-") {
					flags = append(flags, arg)
				} else {
					collections = append(collections, arg)
				}
			}
			if done, err := commandFlags(flags, stdout, stderr, nil); done || err != nil {
				return err
			}
			rs, err := a.resync.RequestAll(ctx, "requested by hand", collections...)
			for _, r := range rs {
				fmt.Fprintf(stdout, "resync %s %s: pass %s (full=%v)\n", r.Collection, r.Action, r.PassID, r.Full)
			}
			return err
		default:
			fmt.Fprint(stderr, usage)
			return fmt.Errorf("unknown command %q", args[1])
		}
	}

	for _, p := range cfg.Problems() {
		log.Warn("app setting unusable; functions that need it will fail", "setting", p.Setting, "problem", p.Text)
	}
	if why := cfg.WeakClientState(); why != "" {
		log.Warn("GRAPH_CLIENT_STATE is weak: anyone who sees a subscription's notification URL can test guesses of it offline; it keeps working, but rotate it",
			"setting", config.ClientState, "problem", why, "rotate", config.RotateClientStateSteps)
	}
	srv := customhandler.NewServer(log)
	srv.RedactLogs(red.Text)
	webhook.New(cfg, time.Now).Register(srv)
	eventhub.New(cfg, time.Now).Register(srv)
	queueworker.New(queueworker.Deps{
		Config:        cfg,
		Graph:         func() (directory.Graph, error) { return a.graph() },
		Queue:         func() (queueworker.Queue, error) { return a.queue() },
		Events:        a.events,
		Subscriptions: a.keeper,
		Resync:        a.resync,
		CatchUp:       a.catchUp,
		Gate:          a.gate,
		Now:           time.Now,
	}).Register(srv)
	renewtimer.New(a.keeper, a.resync, statusAlerts{a.status}, time.Now).Register(srv)
	if testHookServer != nil {
		testHookServer(srv)
	}

	ln, err := customhandler.Listen(getenv)
	if err != nil {
		return err
	}
	log.Info("handler listening", "addr", ln.Addr().String())
	err = customhandler.Serve(ctx, ln, srv, shutdownGrace)
	log.Info("handler stopped", "reason", err)
	return err
}

// app holds what the functions share in one process: one Graph credential and client (tokens are cached
// per credential), one throttling gate, one storage client, one checkpoint store, one event writer with
// its object-state store, one subscription keeper, one resync runner. Clients are built on first use, so the handler starts at once and
// a function missing a setting fails with that setting's name.
type app struct {
	cfg    *config.Config
	graph  func() (*graph.Client, error)
	queue  func() (*storagequeue.Client, error)
	gate   *directory.Gate
	events *events.Writer
	keeper *subscription.Keeper
	resync *resync.Runner
	status *status.Checker

	refusals func() (*refusals.Store, error) // mailbox subscription refusals (mailboxes.go)
	catchUp  *mailbox.CatchUp
}

func newApp(cfg *config.Config, log *slog.Logger) *app {
	a := &app{cfg: cfg, gate: &directory.Gate{}}
	a.graph = sync.OnceValues(func() (*graph.Client, error) {
		if err := cfg.Check(config.TenantID, config.AuthorityHost, config.DisableInstanceDiscovery, config.GraphBaseURL); err != nil {
			return nil, err
		}
		cred, err := identity.NewGraphCredential(identity.Settings{
			TenantID:                 cfg.TenantID,
			ClientID:                 cfg.ClientID,
			ClientSecret:             cfg.ClientSecret.Reveal(),
			CertificatePath:          cfg.CertificatePath,
			CertificatePassword:      cfg.CertificatePassword.Reveal(),
			AuthorityHost:            cfg.AuthorityHost,
			DisableInstanceDiscovery: cfg.DisableInstanceDiscovery,
		}, identity.Options{Logger: log})
		if err != nil {
			return nil, err
		}
		return graph.NewClient(cred, graph.ClientOptions{BaseURL: cfg.GraphBaseURL, Logger: log, LoggerFrom: logctx.From, Now: time.Now})
	})
	a.queue = sync.OnceValues(func() (*storagequeue.Client, error) {
		if err := cfg.Check(config.Storage); err != nil {
			return nil, err
		}
		return storagequeue.New(cfg.Storage, storagequeue.Options{})
	})
	store := sync.OnceValues(func() (*checkpoint.Store, error) {
		if err := cfg.Check(config.Storage, config.ResyncContainer); err != nil {
			return nil, err
		}
		return checkpoint.New(cfg.Storage, cfg.ResyncContainer, checkpoint.Options{})
	})
	state := sync.OnceValues(func() (*objectstate.Store, error) {
		if err := cfg.Check(config.Storage, config.StateTable, config.EventsUnchanged); err != nil {
			return nil, err
		}
		return objectstate.New(cfg.Storage, cfg.StateTable, objectstate.Options{Mode: objectstate.Mode(cfg.EventsUnchanged)})
	})
	a.events = events.NewWriter(func() (events.Queue, error) { return a.queue() }, func() (events.State, error) { return state() })
	a.resync = resync.New(resync.Deps{
		Config: cfg,
		Graph:  func() (resync.Graph, error) { return a.graph() },
		Store:  func() (resync.Store, error) { return store() },
		Queue:  func() (resync.Queue, error) { return a.queue() },
		Events: a.events,
		Gate:   a.gate,
		Now:    time.Now,
	})
	// A new or recreated subscription means notifications may have been missed: resync its collection.
	a.keeper = subscription.New(cfg, func() (subscription.Graph, error) { return a.graph() }, a.resync.RequestResync, time.Now)
	a.wireMailboxes(cfg, time.Now)
	a.status = &status.Checker{
		Resources:   resourcePaths(cfg),
		Collections: cfg.Collections(),
		Mine: func(s graph.Subscription, resource string) bool {
			for _, p := range cfg.Plans() {
				if p.Resource == resource {
					return subscription.Matches(s, p.Resource, p.ChangeTypes)
				}
			}
			return false
		},
		WorkQueue:    message.WorkQueue,
		PoisonQueue:  storagequeue.PoisonQueue(message.WorkQueue),
		ChangesQueue: message.ChangesQueue,
		StallAfter:   resync.StallAfter,
		Graph:        func() (status.Graph, error) { return a.graph() },
		Checkpoints:  func() (status.Checkpoints, error) { return store() },
		Queues:       func() (status.Queues, error) { return a.queue() },
		Tables:       func() (status.Tables, error) { return state() },

		WeakClientState: cfg.WeakClientState(),
		MinLife:         minLife(cfg),
		Now:             time.Now,
	}
	if cfg.Mailboxes.Configured() {
		a.status.Refusals = func() (status.Refusals, error) { return a.refusals() }
	}
	if cfg.Teams.Previous != nil {
		a.status.PreviousCertificateID = cfg.Teams.Previous.ID()
	}
	if c := cfg.Teams.Certificate; c != nil {
		a.status.Certificate = &status.Certificate{ID: c.ID(), NotAfter: c.NotAfter()}
	}
	return a
}

func (a *app) statusCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var asJSON *bool
	done, err := commandFlags(append([]string{"status"}, args...), stdout, stderr, func(fs *flag.FlagSet) {
		asJSON = fs.Bool("json", false, "print the report as JSON (schema in docs/operations.md)")
	})
	if done || err != nil {
		return err
	}
	r := a.status.Check(ctx)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(r)
	} else {
		err = status.WriteText(stdout, r)
	}
	if err != nil {
		return err
	}
	if r.ExitCode != 0 {
		return exitStatus(r.ExitCode)
	}
	return nil
}

func (a *app) replayPoison(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var dry *bool
	done, err := commandFlags(append([]string{"replay-poison"}, args...), stdout, stderr, func(fs *flag.FlagSet) {
		dry = fs.Bool("dry-run", false, "only count the poison messages")
	})
	if done || err != nil {
		return err
	}
	q, err := a.queue()
	if err != nil {
		return err
	}
	r, err := q.Replay(ctx, message.WorkQueue, *dry)
	switch {
	case *dry && err != nil:
		// A count that could not be read is not zero: say nothing about it.
		return fmt.Errorf("could not count the messages in %s: %w", storagequeue.PoisonQueue(message.WorkQueue), err)
	case *dry:
		fmt.Fprintf(stdout, "%d message(s) in %s\n", r.Seen, storagequeue.PoisonQueue(message.WorkQueue))
	case err == nil || r.Moved > 0:
		fmt.Fprintf(stdout, "moved %d message(s) from %s back to %s\n", r.Moved, storagequeue.PoisonQueue(message.WorkQueue), message.WorkQueue)
	}
	return err
}

// resourcePaths lists the resources of the subscriptions GRAPH_RESOURCE implies, as Graph names them.
// minLife is, per subscription resource, the life left under which `handler status` calls for attention:
// the status default, or a quarter of the lifetime for subscriptions the timer renews at half theirs.
func minLife(cfg *config.Config) func(resource string) time.Duration {
	return func(resource string) time.Duration {
		for _, p := range cfg.Plans() {
			if p.Resource == resource && p.Lifetime <= subscription.RenewBelow {
				return p.Lifetime / 4
			}
		}
		return 0
	}
}

func resourcePaths(cfg *config.Config) []string {
	var out []string
	for _, p := range cfg.Plans() {
		out = append(out, p.Resource)
	}
	return out
}

// statusAlerts gives the renew timer the status check's unhealthy findings, one line each.
type statusAlerts struct{ c *status.Checker }

func (s statusAlerts) Alerts(ctx context.Context) []string {
	var lines []string
	for _, f := range s.c.Check(ctx).Findings {
		lines = append(lines, f.String())
	}
	return lines
}
