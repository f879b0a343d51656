// Command handler is the Azure Functions custom handler for Microsoft Graph change notifications: one
// binary serving the webhook, queueworker and renewtimer functions (see README.md).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/customhandler"
	"github.com/graphwebhooks/graph-webhooks-go/webhook"
)

func main() {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() { cancel(customhandler.Signaled{Signal: <-sigs}) }()

	err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	if err != nil && !errors.As(err, new(customhandler.Signaled)) {
		fmt.Fprintln(os.Stderr, "handler:", err)
	}
	os.Exit(customhandler.ExitCode(err))
}

// shutdownGrace is how long in-flight invocations may run after a stop signal.
const shutdownGrace = 30 * time.Second

const usage = `usage: handler [command]

With no command, serves the functions on the port the Functions host sets in FUNCTIONS_CUSTOMHANDLER_PORT.
`

// run is the whole program behind main, with its dependencies passed in so tests can run it in-process.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	log := customhandler.NewLogger(stdout, stderr, slog.LevelInfo)
	if len(args) > 1 {
		switch args[1] {
		case "-h", "-help", "--help", "help":
			fmt.Fprint(stdout, usage)
			return nil
		default:
			fmt.Fprint(stderr, usage)
			return fmt.Errorf("unknown command %q", args[1])
		}
	}

	cfg := config.Load(getenv)
	for _, p := range cfg.Problems() {
		log.Warn("app setting unusable; functions that need it will fail", "setting", p.Setting, "problem", p.Text)
	}

	srv := customhandler.NewServer(log)
	webhook.New(cfg, time.Now).Register(srv)

	ln, err := customhandler.Listen(getenv)
	if err != nil {
		return err
	}
	log.Info("handler listening", "addr", ln.Addr().String())
	err = customhandler.Serve(ctx, ln, srv, shutdownGrace)
	log.Info("handler stopped", "reason", err)
	return err
}
