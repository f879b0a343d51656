package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Time is given, never taken: product code reads the clock it was handed, and logs with the logger its
// context carries. TestProductCodeTakesNoClock refuses any other read of the wall clock or of the default
// logger in product code, so that a hidden time.Now deep inside (a default for a nil clock, a date stamped
// beside the clock a function was given) cannot come back. The exceptions are listed here with their
// reason; a new one needs a reason as good.
var clockAllowed = map[string]map[string]string{
	"main.go": {
		"time.Now": "the composition root: it hands the wall clock to every function",
	},
	"internal/logctx/logctx.go": {
		"slog.Default": "the one fallback for code that runs without an invocation's logger (main sets the default)",
	},
	"internal/customhandler/server.go": {
		"time.Now":   "an invocation's duration for its log line: elapsed time on the monotonic clock, no date",
		"time.Since": "as above",
	},
	"internal/graph/client.go": {
		"time.Now":   "a Graph call's duration for its debug line: elapsed time, no date",
		"time.Since": "as above",
	},
}

// Packages that are no product code: commands, test doubles and test support run on the wall clock like
// the processes they stand for.
var clockExempt = []string{"cmd/", "e2e/", "bench/", "internal/fakegraph/", "internal/fakehost/", "internal/azuritetest/",
	"internal/devstack/", "internal/testclock/"}

// wallClock lists the references that read the wall clock or the default logger.
var wallClock = map[string][]string{"time": {"Now", "Since", "Until"}, "log/slog": {"Default"}}

func TestProductCodeTakesNoClock(t *testing.T) {
	for _, f := range goFiles(t) {
		if strings.HasSuffix(f, "_test.go") || slices.ContainsFunc(clockExempt, func(p string) bool { return strings.HasPrefix(f, p) }) {
			continue
		}
		for _, ref := range clockReads(t, f) {
			if _, ok := clockAllowed[f][ref.name]; !ok {
				t.Errorf("%s:%d: %s: product code takes the clock (or logger) it is given; a default belongs in main.go", f, ref.line, ref.name)
			}
		}
	}
}

// A test pins its clock to a date so that it passes on any day; one that also reads the wall clock can
// compare the two, and then fails once the calendar passes the pinned date. A test package may do both
// only when the two never meet, and says why here. (`make test` also runs the unit suites with their
// fixed clocks ten years ahead and behind: see internal/testclock.)
var mixedClockAllowed = map[string]string{
	"internal/fakegraph": "the double's own tests: fixed dates only in the options of tests that give it a Clock",
	"internal/fakehost":  "the host double's tests: fixed dates only in NCRONTAB and encoding tests, which read no clock",
	"internal/graph":     "fixed dates only in pure tests (Retry-After parsing, subscription JSON); clients get their clock explicitly",
	"internal/resync":    "the budget tests that give the runner an invocation deadline set its clock to the wall clock, since the deadline lives in a context, which knows no other; every other test runs on its env's fixed clock",
	"richnotify":         "fixed dates only where a test certificate vector is judged inside its validity; tokens are signed and judged by the wall clock, and the two never meet",
	"queueworker":        "unit tests run on the unit's fixed clock (internal/testclock), the Azurite tests on the wall clock Azurite and the Graph double use; the clock-shift runs of make test catch a unit test that dates anything by the wall clock",
}

func TestNoTestMixesAFixedDateWithTheWallClock(t *testing.T) {
	fixed, wall := map[string]string{}, map[string]string{}
	for _, f := range goFiles(t) {
		if !strings.HasSuffix(f, "_test.go") || f == "clock_test.go" {
			continue
		}
		pkg := filepath.ToSlash(filepath.Dir(f))
		for _, ref := range clockReads(t, f) {
			switch ref.name {
			case "time.Date":
				fixed[pkg] = f + ":" + strconv.Itoa(ref.line)
			case "time.Now", "time.Since", "time.Until":
				wall[pkg] = f + ":" + strconv.Itoa(ref.line)
			}
		}
	}
	for pkg, at := range fixed {
		if w, ok := wall[pkg]; ok && mixedClockAllowed[pkg] == "" {
			t.Errorf("%s: a fixed date (%s) and the wall clock (%s) in one test package: give the code under test one clock (internal/testclock for fixed dates)", pkg, at, w)
		}
	}
}

type clockRef struct {
	name string // "time.Now", "slog.Default", "time.Date"
	line int
}

// clockReads lists a file's references to the wall clock, the default logger, and time.Date, however the
// packages are imported.
func clockReads(t *testing.T, file string) []clockRef {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{} // local name → import path
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		if _, ok := wallClock[p]; !ok {
			continue
		}
		local := p[strings.LastIndex(p, "/")+1:]
		if imp.Name != nil {
			local = imp.Name.Name
		}
		names[local] = p
	}
	var out []clockRef
	ast.Inspect(f, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		x, ok := sel.X.(*ast.Ident)
		if !ok {
			return true
		}
		p, ok := names[x.Name]
		if !ok {
			return true
		}
		short := p[strings.LastIndex(p, "/")+1:]
		if slices.Contains(wallClock[p], sel.Sel.Name) || (p == "time" && sel.Sel.Name == "Date") {
			out = append(out, clockRef{name: short + "." + sel.Sel.Name, line: fset.Position(sel.Pos()).Line})
		}
		return true
	})
	return out
}

// goFiles lists the module's Go files, relative to its root, slash-separated.
func goFiles(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); p != "." && (strings.HasPrefix(n, ".") || n == "node_modules" || n == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(p, ".go") {
			out = append(out, filepath.ToSlash(p))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
