// Package e2e runs the whole pipeline on one machine — the real handler binary under the Functions host
// double, Azurite, and the Graph double — and asserts delivery: what Graph changes arrives as events.
package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/azuritetest"
	"github.com/graphwebhooks/graph-webhooks-go/internal/devstack"
)

var handlerBin string

// TestMain builds the handler once, as `make build` would.
func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "e2e-handler-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		handlerBin = filepath.Join(dir, "handler")
		build := exec.Command("go", "build", "-o", handlerBin, "..")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build handler:", err)
			return 1
		}
		return m.Run()
	}())
}

// start brings up a stack for one test; its logs go to the test log when -v is given.
func start(t *testing.T, o devstack.Options) *devstack.Stack {
	t.Helper()
	root, err := azuritetest.ModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := azuritetest.Binary(root); err != nil {
		azuritetest.Check(t, err)
	}
	o.Root, o.Handler = root, handlerBin
	if o.HandlerOut == nil {
		o.HandlerOut = io.Discard
		if testing.Verbose() {
			o.HandlerOut = testWriter{t}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	s, err := devstack.Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }
