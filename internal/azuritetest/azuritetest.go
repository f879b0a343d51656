// Package azuritetest starts Azurite, the Azure Storage emulator, for integration tests and development
// programs.
//
// Azurite is the npm package pinned in the module's package.json (azurite 3.35.0; later releases declare a
// newer Node than the machines have). `npm ci` at the module root installs it into node_modules/.bin.
//
// Each Azurite started here is one process serving blob, queue and table on free loopback ports (Azurite is
// asked for port 0 and reports the ports it got, so there is no race for a port), with in-memory persistence,
// telemetry off and API version checks off. Tests share one instance per package where they like (Shared) and
// keep apart by using unique queue and container names.
package azuritetest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// Well-known development storage account of Azurite and the Storage Emulator.
const (
	AccountName = "devstoreaccount1"
	AccountKey  = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// StartTimeout bounds how long StartProcess waits for Azurite to listen when its context has no deadline.
const StartTimeout = 60 * time.Second

// ErrNotInstalled is returned (wrapped) by StartProcess when node_modules/.bin/azurite does not exist.
var ErrNotInstalled = errors.New("azurite is not installed: run `npm ci` at the module root")

// Azurite is a running Azurite process.
type Azurite struct {
	// QueueURL and BlobURL are the service endpoints including the account, e.g.
	// http://127.0.0.1:41234/devstoreaccount1.
	QueueURL string
	BlobURL  string
	// TableURL is served too, as the one-process `azurite` command always starts it.
	TableURL string

	cmd      *exec.Cmd
	location string
	exited   chan struct{}
	waitErr  error
	output   *tailBuffer
	stopOnce sync.Once
	stopErr  error
}

// ConnectionString returns a full connection string for the development account with explicit endpoints,
// usable by azqueue and azblob (which do not understand UseDevelopmentStorage=true).
func (a *Azurite) ConnectionString() string {
	return "DefaultEndpointsProtocol=http;AccountName=" + AccountName + ";AccountKey=" + AccountKey +
		";BlobEndpoint=" + a.BlobURL + ";QueueEndpoint=" + a.QueueURL + ";TableEndpoint=" + a.TableURL + ";"
}

// Start starts Azurite for a test and stops it when the test ends. When Azurite is not installed, the test is
// skipped with a hint to run `npm ci`, unless the environment variable CI is non-empty: then it fails.
func Start(tb testing.TB) *Azurite {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	a, err := StartProcess(ctx, "")
	if err != nil {
		Check(tb, err)
	}
	tb.Cleanup(func() {
		if err := a.Stop(); err != nil {
			tb.Logf("azuritetest: stop: %v", err)
		}
	})
	return a
}

// Check reports an error from StartProcess the way Start does: skip when Azurite is not installed (fail
// when CI is set), fail otherwise. It does nothing for a nil error.
func Check(tb testing.TB, err error) {
	tb.Helper()
	if err == nil {
		return
	}
	if errors.Is(err, ErrNotInstalled) && os.Getenv("CI") == "" {
		tb.Skipf("azuritetest: %v", err)
	}
	tb.Fatalf("azuritetest: %v", err)
}

var shared struct {
	mu  sync.Mutex
	a   *Azurite
	err error
}

// Shared returns one Azurite per test binary, started on first use. Call StopShared from TestMain after
// m.Run. Errors are reported as Start reports them.
func Shared(tb testing.TB) *Azurite {
	tb.Helper()
	shared.mu.Lock()
	if shared.a == nil && shared.err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
		shared.a, shared.err = StartProcess(ctx, "")
		cancel()
	}
	a, err := shared.a, shared.err
	shared.mu.Unlock()
	Check(tb, err)
	return a
}

// StopShared stops the Azurite started by Shared, if any.
func StopShared() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.a != nil {
		_ = shared.a.Stop()
		shared.a = nil
	}
}

// ModuleRoot walks up from dir (the working directory when empty) to the directory holding go.mod.
func ModuleRoot(dir string) (string, error) {
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return "", err
		}
		dir = wd
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no go.mod in %s or any parent", dir)
		}
		d = parent
	}
}

// Binary returns the path of node_modules/.bin/azurite under the module root found from dir.
func Binary(dir string) (string, error) {
	root, err := ModuleRoot(dir)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(root, "node_modules", ".bin", "azurite")
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("%w (looked for %s)", ErrNotInstalled, bin)
	}
	return bin, nil
}

var listeningRE = regexp.MustCompile(`Azurite (Blob|Queue|Table) service is successfully listening at (\S+)`)

// StartProcess starts Azurite from the module root found by walking up from dir (the working directory when
// dir is empty) and waits until its blob, queue and table ports accept connections, or ctx ends (StartTimeout
// when ctx has no deadline). The caller stops it with Stop; cancelling ctx later does not stop it.
func StartProcess(ctx context.Context, dir string) (*Azurite, error) {
	bin, err := Binary(dir)
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, StartTimeout)
		defer cancel()
	}
	location, err := os.MkdirTemp("", "azurite-")
	if err != nil {
		return nil, err
	}
	a := &Azurite{location: location, exited: make(chan struct{}), output: &tailBuffer{max: 40}}
	a.cmd = exec.Command(bin,
		"--blobHost", "127.0.0.1", "--blobPort", "0",
		"--queueHost", "127.0.0.1", "--queuePort", "0",
		"--tableHost", "127.0.0.1", "--tablePort", "0",
		"--inMemoryPersistence", "--disableTelemetry", "--skipApiVersionCheck", "--silent", "--loose")
	a.cmd.Dir = location // --location cannot be combined with --inMemoryPersistence; the working directory keeps stray files out of the tree
	setProcessGroup(a.cmd)
	stdout, err := a.cmd.StdoutPipe()
	if err != nil {
		os.RemoveAll(location)
		return nil, err
	}
	a.cmd.Stderr = a.output
	if err := a.cmd.Start(); err != nil {
		os.RemoveAll(location)
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}

	urls := make(chan [2]string, 3)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			a.output.WriteLine(line)
			if m := listeningRE.FindStringSubmatch(line); m != nil {
				urls <- [2]string{m[1], m[2]}
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		a.waitErr = a.cmd.Wait()
		close(a.exited)
	}()

	got := map[string]string{}
	for len(got) < 3 {
		select {
		case u := <-urls:
			got[u[0]] = u[1]
		case <-a.exited:
			a.cleanup()
			return nil, fmt.Errorf("azurite exited before listening (%v); output:\n%s", a.waitErr, a.output)
		case <-ctx.Done():
			_ = a.Stop()
			return nil, fmt.Errorf("azurite did not listen in time: %w; output:\n%s", ctx.Err(), a.output)
		}
	}
	a.BlobURL = strings.TrimRight(got["Blob"], "/") + "/" + AccountName
	a.QueueURL = strings.TrimRight(got["Queue"], "/") + "/" + AccountName
	a.TableURL = strings.TrimRight(got["Table"], "/") + "/" + AccountName
	for _, u := range []string{a.BlobURL, a.QueueURL, a.TableURL} {
		if err := waitDial(ctx, u); err != nil {
			_ = a.Stop()
			return nil, err
		}
	}
	return a, nil
}

func waitDial(ctx context.Context, rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	var d net.Dialer
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := d.DialContext(ctx, "tcp", u.Host)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("azurite at %s does not answer: %w", u.Host, err)
		case <-tick.C:
		}
	}
}

// Pid is the Azurite process's id, for benchmarks that measure its CPU time apart from the handler's.
func (a *Azurite) Pid() int { return a.cmd.Process.Pid }

// Stop terminates Azurite (SIGTERM, then SIGKILL after 5 s) and removes its temporary directory. It is safe to
// call more than once.
func (a *Azurite) Stop() error {
	a.stopOnce.Do(func() {
		select {
		case <-a.exited:
		default:
			terminate(a.cmd)
			select {
			case <-a.exited:
			case <-time.After(5 * time.Second):
				kill(a.cmd)
				<-a.exited
			}
		}
		a.cleanup()
	})
	return a.stopErr
}

func (a *Azurite) cleanup() {
	if err := os.RemoveAll(a.location); err != nil && a.stopErr == nil {
		a.stopErr = err
	}
}

// tailBuffer keeps the last max lines written to it, for error messages.
type tailBuffer struct {
	mu      sync.Mutex
	max     int
	lines   []string
	partial string
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.partial + string(p)
	parts := strings.Split(s, "\n")
	b.partial = parts[len(parts)-1]
	for _, l := range parts[:len(parts)-1] {
		b.add(l)
	}
	return len(p), nil
}

func (b *tailBuffer) WriteLine(l string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.add(l)
}

func (b *tailBuffer) add(l string) {
	b.lines = append(b.lines, l)
	if len(b.lines) > b.max {
		b.lines = b.lines[len(b.lines)-b.max:]
	}
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(append(append([]string(nil), b.lines...), b.partial), "\n")
}
