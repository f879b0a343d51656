package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// commandHelp describes each command for `handler <command> -h`.
var commandHelp = map[string]string{
	"status": `Reports whether the receiver works: this app's Graph subscription per resource, the resync passes
per collection, the depths of the work, poison and graphchanges queues. Changes nothing.
Exit status: 0 healthy, 1 needs attention, 2 could not check (a setting missing, Graph or storage
unreachable); each finding says what to do. The JSON schema is in docs/operations.md.`,
	"unsubscribe": `Deletes this app's Graph subscription(s) for GRAPH_RESOURCE and GRAPH_CHANGE_TYPE (clean uninstall).
The renew timer creates a new one on its next run unless the app is stopped or removed first.`,
	"replay-poison": `Moves the messages of webhooksnotificationqueue-poison back to webhooksnotificationqueue, text
unchanged, once the cause of their failure is fixed. -dry-run only counts them.`,
	"resync": `Usage: handler resync [collection…]. Starts a delta-query resync pass now (after an outage you know
of) for every collection GRAPH_RESOURCE names, or for those given (users, groups); the queue worker runs
each page by page. A pass already running is not started twice.`,
}

func isCommand(name string) bool { _, ok := commandHelp[name]; return ok }

func isHelpFlag(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help" || arg == "--h"
}

// commandFlags parses a command's flags (args[0] is the command). -h prints the command's usage on stdout
// and reports done; a bad flag or a stray argument prints the usage on stderr and fails.
func commandFlags(args []string, stdout, stderr io.Writer, define func(*flag.FlagSet)) (done bool, err error) {
	name := args[0]
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // the usage is printed below, once, where it belongs
	if define != nil {
		define(fs)
	}
	usage := func(w io.Writer) {
		flags := ""
		fs.VisitAll(func(f *flag.Flag) { flags += " [-" + f.Name + "]" })
		fmt.Fprintf(w, "usage: handler %s%s\n\n%s\n", name, flags, commandHelp[name])
		if flags != "" {
			fmt.Fprintln(w)
			fs.SetOutput(w)
			fs.PrintDefaults()
			fs.SetOutput(io.Discard)
		}
	}
	err = fs.Parse(args[1:])
	switch {
	case errors.Is(err, flag.ErrHelp):
		usage(stdout)
		return true, nil
	case err != nil:
		usage(stderr)
		return true, fmt.Errorf("%s: %w", name, err)
	case fs.NArg() > 0:
		usage(stderr)
		return true, fmt.Errorf("%s: unexpected argument %q", name, fs.Arg(0))
	}
	return false, nil
}

// localSettingsFile is read from the working folder, as `func start` reads it.
const localSettingsFile = "local.settings.json"

// maxLocalSettings bounds what is read of local.settings.json (a real one is a few KiB).
const maxLocalSettings = 1 << 20

// localSettings returns a getenv that answers from the environment, and, for a setting the environment does
// not have, from the Values of the local.settings.json at path. It says on w which settings came from the
// file (names only: values may be secrets), or why the file could not be read; a missing file is silent.
func localSettings(lookup func(string) (string, bool), path string, w io.Writer) func(string) string {
	env := func(k string) string { v, _ := lookup(k); return v }
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return env
	}
	if err != nil {
		fmt.Fprintf(w, "handler: %s not read: %v\n", path, err)
		return env
	}
	defer f.Close()
	var file struct {
		Values map[string]any `json:"Values"`
	}
	b, err := io.ReadAll(io.LimitReader(f, maxLocalSettings+1))
	switch {
	case err != nil:
		fmt.Fprintf(w, "handler: %s not read: %v\n", path, err)
		return env
	case len(b) > maxLocalSettings:
		fmt.Fprintf(w, "handler: %s not read: larger than %d bytes\n", path, maxLocalSettings)
		return env
	}
	if err := json.Unmarshal(b, &file); err != nil {
		// The JSON error names a position and a type, never a value.
		fmt.Fprintf(w, "handler: %s not read: %v\n", path, err)
		return env
	}
	values := map[string]string{}
	var used []string
	for k, v := range file.Values {
		s, ok := v.(string)
		if !ok || s == "" {
			continue
		}
		if _, inEnv := lookup(k); inEnv {
			continue
		}
		values[k] = s
		used = append(used, k)
	}
	if len(used) > 0 {
		slices.Sort(used)
		fmt.Fprintf(w, "handler: from %s (not set in the environment): %s\n", path, strings.Join(used, ", "))
	}
	return func(k string) string {
		if v, ok := lookup(k); ok {
			return v
		}
		return values[k]
	}
}
