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
	"sync"
	"syscall"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/checkpoint"
	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/customhandler"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/identity"
	"github.com/graphwebhooks/graph-webhooks-go/internal/logctx"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
	"github.com/graphwebhooks/graph-webhooks-go/internal/resync"
	"github.com/graphwebhooks/graph-webhooks-go/internal/status"
	"github.com/graphwebhooks/graph-webhooks-go/internal/storagequeue"
	"github.com/graphwebhooks/graph-webhooks-go/queueworker"
	"github.com/graphwebhooks/graph-webhooks-go/renewtimer"
	"github.com/graphwebhooks/graph-webhooks-go/webhook"
)

func main() {
	// The handler answers many small invocations that each allocate ~170 KB and keep nothing: with Go's
	// default GOGC=100 and its 4 MiB minimum heap target that is a collection every few milliseconds under
	// load, which shows in the webhook's tail latency (docs/benchmarks.md). Collect a quarter as often unless
	// the operator chose GOGC; the heap stays in the tens of MiB.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
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
		fmt.Fprintln(os.Stderr, "handler:", err)
	}
	os.Exit(customhandler.ExitCode(err))
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
  unsubscribe              delete this app's Graph subscription for GRAPH_RESOURCE (clean uninstall)
  replay-poison [-dry-run] move messages from webhooksnotificationqueue-poison back to the queue
  resync                   start a delta-query resync pass now (after an outage you know of); the queue
                           worker runs it page by page. A pass already running is not started twice.
`

// run is the whole program behind main, with its dependencies passed in so tests can run it in-process.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	logOut := stdout
	if len(args) > 1 {
		logOut = stderr // a command's stdout is its answer (`status -json` is parsed)
	}
	log := customhandler.NewLogger(logOut, stderr, slog.LevelInfo)
	// Anything that logs without an invocation's logger (the SDKs, a library) goes the same way: information
	// to stdout, which the host would otherwise log as errors from stderr.
	slog.SetDefault(log)
	cfg := config.Load(getenv)
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
				fmt.Fprintln(stdout, "deleted subscription", id)
			}
			if err == nil && len(ids) == 0 {
				fmt.Fprintln(stdout, "no subscription to delete")
			}
			return err
		case "replay-poison":
			return a.replayPoison(ctx, args[2:], stdout, stderr)
		case "resync":
			if done, err := commandFlags(args[1:], stdout, stderr, nil); done || err != nil {
				return err
			}
			r, err := a.resync.Request(ctx, "requested by hand")
			if err == nil {
				fmt.Fprintf(stdout, "resync %s: pass %s (full=%v)\n", r.Action, r.PassID, r.Full)
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
	srv := customhandler.NewServer(log)
	webhook.New(cfg, time.Now).Register(srv)
	queueworker.New(queueworker.Deps{
		Config:        cfg,
		Graph:         a.graph,
		Queue:         a.queue,
		Subscriptions: a.keeper,
		Resync:        a.resync,
		ResyncStep: func(ctx context.Context, m *message.Message) error {
			res, err := a.resync.Step(ctx, m)
			if err == nil {
				logctx.From(ctx).Info(res.Summary())
			}
			return err
		},
		Now: time.Now,
	}).Register(srv)
	timer := renewtimer.NewFunction(a.keeper)
	timer.ResyncIfDue = func(ctx context.Context) (string, error) {
		r, started, err := a.resync.RequestIfDue(ctx)
		if err != nil || !started {
			return "", err
		}
		return fmt.Sprintf("resync %s (%s): pass %s", r.Action, r.Reason, r.PassID), nil
	}
	// Each unhealthy finding of `handler status` becomes an error line of the timer, for alerts.
	timer.Alerts = func(ctx context.Context) []string {
		var lines []string
		for _, f := range a.status.Check(ctx).Findings {
			lines = append(lines, f.String())
		}
		return lines
	}
	timer.Register(srv)
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
// per credential), one storage client, one checkpoint store, one subscription keeper, one resync runner.
// Clients are built on first use, so the handler starts at once and a function missing a setting fails with
// that setting's name.
type app struct {
	cfg    *config.Config
	graph  func() (*graph.Client, error)
	queue  func() (*storagequeue.Client, error)
	keeper *renewtimer.Keeper
	resync *resync.Runner
	status *status.Checker
}

func newApp(cfg *config.Config, log *slog.Logger) *app {
	a := &app{cfg: cfg}
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
		return graph.NewClient(cred, graph.ClientOptions{BaseURL: cfg.GraphBaseURL, Logger: log, LoggerFrom: logctx.From})
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
	a.resync = resync.New(cfg,
		func() (resync.Graph, error) { return a.graph() },
		func() (resync.Store, error) { return store() },
		func() (resync.Queue, error) { return a.queue() },
		time.Now)
	a.keeper = renewtimer.NewKeeper(cfg, func() (renewtimer.Graph, error) { return a.graph() }, time.Now)
	// A new or recreated subscription means notifications may have been missed: resync.
	a.keeper.Gap = a.resync.RequestResync
	a.status = &status.Checker{
		Resources:   []string{cfg.Resource},
		Collections: []string{cfg.Resource}, // the checkpoint is kept per resource today
		Mine: func(s graph.Subscription, resource string) bool {
			return renewtimer.Matches(s, resource, cfg.ChangeTypes)
		},
		WorkQueue:    queueworkerQueue,
		PoisonQueue:  storagequeue.PoisonQueue(queueworkerQueue),
		ChangesQueue: message.ChangesQueue,
		StallAfter:   resync.StallAfter,
		Graph:        func() (status.Graph, error) { return a.graph() },
		Checkpoints:  func() (status.Checkpoints, error) { return store() },
		Queues:       func() (status.Queues, error) { return a.queue() },
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
	r, err := q.Replay(ctx, queueworkerQueue, *dry)
	switch {
	case *dry && err != nil:
		// A count that could not be read is not zero: say nothing about it.
		return fmt.Errorf("could not count the messages in %s: %w", storagequeue.PoisonQueue(queueworkerQueue), err)
	case *dry:
		fmt.Fprintf(stdout, "%d message(s) in %s\n", r.Seen, storagequeue.PoisonQueue(queueworkerQueue))
	case err == nil || r.Moved > 0:
		fmt.Fprintf(stdout, "moved %d message(s) from %s back to %s\n", r.Moved, storagequeue.PoisonQueue(queueworkerQueue), queueworkerQueue)
	}
	return err
}

// queueworkerQueue is the queue between the webhook and the worker (design.md).
const queueworkerQueue = message.WorkQueue
