// Command fakehost runs the Functions host test double (internal/fakehost) against a custom handler app,
// for `make demo` and manual use:
//
//	go build -o handler . && go run ./cmd/fakehost -root . -azurite
//
// It prints the HTTP front's URL and each HTTP function's URL with its key, then runs until interrupted or
// until the double stops itself (the third handler crash within 30 minutes), which exits 1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/graphwebhooks/graph-webhooks-go/internal/azuritetest"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakehost"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "fakehost:", err)
		os.Exit(1)
	}
}

type setFlags map[string]string

func (s setFlags) String() string { return "" }
func (s setFlags) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return errors.New("want KEY=VALUE")
	}
	s[k] = val
	return nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fakehost", flag.ContinueOnError)
	fs.SetOutput(stderr)
	root := fs.String("root", ".", "app root: host.json, */function.json and the handler executable")
	storage := fs.String("storage", "", "storage connection string for queue triggers and outputs (default: the AzureWebJobsStorage setting)")
	startAzurite := fs.Bool("azurite", false, "start Azurite from node_modules (npm ci) and use it as storage")
	key := fs.String("key", "", "function key for authLevel function triggers (default: random, printed)")
	settingsFile := fs.String("settings", "", "JSON file with app settings in Values (default: <root>/local.settings.json)")
	set := setFlags{}
	fs.Var(set, "set", "override one app setting, KEY=VALUE (repeatable)")
	noAuth := fs.Bool("no-auth", false, "do not check function keys (as `func start` locally)")
	noTimers := fs.Bool("no-timers", false, "do not schedule timer triggers (runOnStartup still fires)")
	inherit := fs.Bool("inherit-env", true, "pass this process's whole environment to the handler, as the host does")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return err
	}

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	settings, err := readSettings(*root, *settingsFile)
	if err != nil {
		return err
	}
	for k, v := range set {
		settings[k] = v
	}
	conn := *storage
	if *startAzurite {
		az, err := azuritetest.StartProcess(ctx, *root)
		if err != nil {
			return err
		}
		defer az.Stop()
		conn = az.ConnectionString()
		settings["AzureWebJobsStorage"] = conn
		fmt.Fprintf(stdout, "Azurite: %s\n", conn)
	}
	if conn == "" {
		conn = getenv("FAKEHOST_STORAGE")
	}

	h, err := fakehost.Start(ctx, fakehost.Options{
		AppRoot:            *root,
		Settings:           settings,
		InheritEnvironment: *inherit,
		Storage:            conn,
		FunctionKey:        *key,
		DisableAuth:        *noAuth,
		DisableTimers:      *noTimers,
		Stdout:             stdout,
		Stderr:             stderr,
		Logger:             logger,
	})
	if err != nil {
		return err
	}
	defer h.Close()
	fmt.Fprintf(stdout, "fakehost: listening on %s\n", h.URL())
	for _, name := range h.Functions() {
		if u := h.FunctionURL(name); u != "" {
			fmt.Fprintf(stdout, "  %s: %s?code=%s\n", name, u, h.FunctionKey())
		}
	}
	select {
	case <-ctx.Done():
		return nil
	case <-h.Stopped():
		return h.StopErr()
	}
}

// readSettings reads Values from a local.settings.json-style file; a missing default file gives none.
func readSettings(root, file string) (map[string]string, error) {
	explicit := file != ""
	if !explicit {
		file = filepath.Join(root, "local.settings.json")
	}
	raw, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) && !explicit {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	return fakehost.ParseSettings(raw)
}
