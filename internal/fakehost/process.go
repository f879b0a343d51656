package fakehost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Supervision constants from the host (docs/host-protocol.md §2.3).
const (
	readinessPollInterval = 25 * time.Millisecond
	errorEventsThreshold  = 3
	errorWindow           = 30 * time.Minute
	exitCodeRestart       = 200
)

type procState int

const (
	stateStarting procState = iota
	stateReady
	stateExited // exit code 0: not restarted
	stateStopped
)

// generation is one handler process.
type generation struct {
	n       int
	cmd     *exec.Cmd
	port    int
	baseURL string
	ctx     context.Context // ends when the process ends or is being killed by the host
	cancel  context.CancelCauseFunc
	exited  chan struct{}
	// written before exited is closed
	exitCode int
	exitErr  error
	// set by the supervisor (under its mutex) when the host itself kills this process
	killedByHost bool
	stderrTail   *lineTail
}

// supervisor starts the handler and restarts it as the host does.
type supervisor struct {
	h *Host

	mu       sync.Mutex
	state    procState
	cur      *generation
	changed  chan struct{} // closed and replaced at every state change
	errors   []time.Time
	restarts int
	gens     int
}

func newSupervisor(h *Host) *supervisor {
	return &supervisor{h: h, changed: make(chan struct{})}
}

// setStateLocked changes the state and wakes waiters.
func (s *supervisor) setStateLocked(st procState) {
	s.state = st
	close(s.changed)
	s.changed = make(chan struct{})
}

// start starts a new handler process (with s.mu held).
func (s *supervisor) startLocked() error {
	h := s.h
	port, err := freePort()
	if err != nil {
		return err
	}
	exe := resolveExecutable(h.cfg.exePath, h.appRoot, h.env)
	args := append([]string(nil), h.cfg.arguments...)
	if h.cfg.workerPath != "" {
		args = append(args, h.cfg.workerPath)
		args = append(args, h.cfg.workerArguments...)
	}
	workerID := newGUID()
	cmd := exec.Command(exe, args...)
	cmd.Dir = h.cfg.workDir
	vars := h.handlerVars()
	env := make([]string, 0, len(vars)+6)
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	p := strconv.Itoa(port)
	env = append(env,
		"FUNCTIONS_CUSTOMHANDLER_PORT="+p,
		"FUNCTIONS_HTTPWORKER_PORT="+p,
		"FUNCTIONS_CUSTOMHANDLER_WORKER_ID="+workerID,
		"FUNCTIONS_HTTPWORKER_ID="+workerID,
		"FUNCTIONS_APP_ROOT_PATH="+h.appRoot,
	)
	cmd.Env = env
	setProcessGroup(cmd)
	s.gens++
	g := &generation{n: s.gens, cmd: cmd, port: port, baseURL: "http://127.0.0.1:" + p, exited: make(chan struct{}), stderrTail: &lineTail{max: 3}}
	stdout := &lineWriter{fn: func(line string) { s.outputLine(line, false, g) }}
	stderr := &lineWriter{fn: func(line string) { s.outputLine(line, true, g) }}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = time.Second // do not wait long for output pipes held open by the handler's children
	g.ctx, g.cancel = context.WithCancelCause(context.Background())
	if err := cmd.Start(); err != nil {
		g.cancel(err)
		return fmt.Errorf("starting handler %s: %w", exe, err)
	}
	h.logger.Info("handler process started", "exe", exe, "pid", cmd.Process.Pid, "port", port, "generation", g.n)
	s.cur = g
	s.setStateLocked(stateStarting)

	go func() {
		err := cmd.Wait()
		stdout.flush()
		stderr.flush()
		g.exitErr = err
		g.exitCode = exitCode(cmd, err)
		g.cancel(fmt.Errorf("handler process exited with code %d", g.exitCode))
		close(g.exited)
		s.onExit(g)
	}()
	go s.waitReady(g)
	return nil
}

// outputLine handles one line of the handler's output (docs/host-protocol.md §2.4): stdout at Information, stderr at Error, or
// Warning when the line contains "warn".
func (s *supervisor) outputLine(line string, isStderr bool, g *generation) {
	h := s.h
	if strings.HasPrefix(line, "LanguageWorkerConsoleLog") {
		h.logger.Info(strings.TrimPrefix(line, "LanguageWorkerConsoleLog"), "category", "Worker")
		return
	}
	if !isStderr {
		h.writeLine(h.stdout, "[handler] "+line)
		return
	}
	g.stderrTail.add(line)
	level := "error"
	if strings.Contains(strings.ToLower(line), "warn") {
		level = "warn"
	}
	h.writeLine(h.stderr, "[handler "+level+"] "+line)
}

// lineWriter calls fn for every complete line written to it.
type lineWriter struct {
	mu  sync.Mutex
	buf []byte
	fn  func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimRight(string(w.buf[:i]), "\r")
		w.buf = w.buf[i+1:]
		w.fn(line)
	}
	if len(w.buf) > 1<<20 { // a very long line without a newline
		w.fn(string(w.buf))
		w.buf = nil
	}
	return len(p), nil
}

func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.fn(string(w.buf))
		w.buf = nil
	}
}

// waitReady polls GET / every 25 ms until any HTTP response, for up to the initialization timeout (docs/host-protocol.md §2.2).
func (s *supervisor) waitReady(g *generation) {
	h := s.h
	client := &http.Client{Timeout: time.Second}
	deadline := time.NewTimer(h.cfg.initTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(readinessPollInterval)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(g.ctx, http.MethodGet, g.baseURL+"/", nil)
		if resp, err := client.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			s.mu.Lock()
			if s.cur == g && s.state == stateStarting {
				s.setStateLocked(stateReady)
				h.logger.Info("handler is ready", "generation", g.n, "port", g.port)
			}
			s.mu.Unlock()
			return
		}
		select {
		case <-g.ctx.Done():
			return
		case <-deadline.C:
			s.error(g, fmt.Errorf("the handler did not answer GET / within the initialization timeout %s", h.cfg.initTimeout))
			return
		case <-tick.C:
		}
	}
}

// onExit handles a process exit the host did not cause (docs/host-protocol.md §2.3).
func (s *supervisor) onExit(g *generation) {
	h := s.h
	s.mu.Lock()
	if g.killedByHost || s.cur != g || s.state == stateStopped {
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	switch g.exitCode {
	case 0:
		h.logger.Info("handler process exited with code 0: not restarted; later invocations fail", "generation", g.n)
		s.mu.Lock()
		if s.cur == g {
			s.setStateLocked(stateExited)
		}
		s.mu.Unlock()
	case exitCodeRestart:
		h.logger.Info("handler process exited with code 200: intentional restart", "generation", g.n)
		s.restart(g, "exit code 200", false)
	default:
		msg := fmt.Sprintf("%s exited with code %d", filepath.Base(h.cfg.exePath), g.exitCode)
		if tail := g.stderrTail.lines(); len(tail) > 0 {
			msg += "\n " + strings.Join(tail, "\n ")
		}
		s.error(g, errors.New(msg))
	}
}

// error records a worker error; the third within 30 minutes stops the host, otherwise the handler restarts.
func (s *supervisor) error(g *generation, err error) {
	h := s.h
	h.logger.Error("handler error", "generation", g.n, "error", err.Error())
	s.mu.Lock()
	if s.cur != g || s.state == stateStopped {
		s.mu.Unlock()
		return
	}
	now := time.Now()
	kept := s.errors[:0]
	for _, t := range s.errors {
		if now.Sub(t) < errorWindow {
			kept = append(kept, t)
		}
	}
	s.errors = append(kept, now)
	n := len(s.errors)
	s.mu.Unlock()
	if n >= errorEventsThreshold {
		h.logger.Error("Exceeded http worker restart retry count. Shutting down Functions Host")
		go h.stop(fmt.Errorf("handler failed %d times within %s; last: %w", n, errorWindow, err))
		return
	}
	s.restart(g, err.Error(), true)
}

// restart kills g (if it is still the current process) and starts a new one.
func (s *supervisor) restart(g *generation, reason string, afterError bool) {
	s.mu.Lock()
	if s.cur != g || s.state == stateStopped {
		s.mu.Unlock()
		return
	}
	g.killedByHost = true
	s.setStateLocked(stateStarting)
	s.mu.Unlock()

	g.cancel(fmt.Errorf("handler process restarted: %s", reason))
	killGroup(g.cmd)
	select {
	case <-g.exited:
	case <-time.After(5 * time.Second):
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != g || s.state == stateStopped {
		return
	}
	s.restarts++
	s.h.logger.Info("restarting handler", "reason", reason, "restarts", s.restarts)
	if err := s.startLocked(); err != nil {
		s.h.logger.Error("restarting handler failed", "error", err.Error())
		go s.h.stop(err)
	}
}

// restartAfterTimeout restarts g after a function timeout (not counted as an error).
func (s *supervisor) restartAfterTimeout(g *generation) {
	go s.restart(g, "function timeout", false)
}

// acquire waits until the handler is ready; invocations wait at most (3+1) × the initialization timeout.
func (s *supervisor) acquire(ctx context.Context) (*generation, error) {
	limit := time.NewTimer(4 * s.h.cfg.initTimeout)
	defer limit.Stop()
	for {
		s.mu.Lock()
		st, g, ch := s.state, s.cur, s.changed
		s.mu.Unlock()
		switch st {
		case stateReady:
			return g, nil
		case stateExited:
			return nil, fmt.Errorf("connection refused: the handler process exited with code 0 and the host does not restart it (127.0.0.1:%d)", g.port)
		case stateStopped:
			return nil, errors.New("the host has stopped")
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-limit.C:
			err := errors.New("the handler did not become ready within (3+1) × initialization timeout")
			go s.h.stop(err)
			return nil, err
		}
	}
}

// kill sends SIGKILL to the current handler without marking it: supervision sees an unexpected exit.
func (s *supervisor) kill() error {
	s.mu.Lock()
	g := s.cur
	st := s.state
	s.mu.Unlock()
	if g == nil || st == stateStopped {
		return errors.New("fakehost: no handler process")
	}
	select {
	case <-g.exited:
		return errors.New("fakehost: the handler process has already exited")
	default:
	}
	return killGroup(g.cmd)
}

// shutdown stops supervision and terminates the handler: SIGTERM, then SIGKILL after grace.
func (s *supervisor) shutdown(grace time.Duration) {
	s.mu.Lock()
	if s.state == stateStopped {
		s.mu.Unlock()
		return
	}
	g := s.cur
	if g != nil {
		g.killedByHost = true
	}
	s.setStateLocked(stateStopped)
	s.mu.Unlock()
	if g == nil {
		return
	}
	select {
	case <-g.exited:
		return
	default:
	}
	termGroup(g.cmd)
	select {
	case <-g.exited:
	case <-time.After(grace):
		killGroup(g.cmd)
		<-g.exited
	}
	g.cancel(errors.New("host stopped"))
}

func exitCode(cmd *exec.Cmd, err error) int {
	if cmd.ProcessState == nil {
		return -1
	}
	if code := cmd.ProcessState.ExitCode(); code >= 0 {
		return code
	}
	if sig := signalOf(cmd.ProcessState); sig > 0 {
		return 128 + sig // what .NET's Process.ExitCode reports for a signalled process on Unix
	}
	return -1
}

// resolveExecutable applies the host's rule: a relative path is used under the app root when that file
// exists, otherwise the name is looked up on PATH.
func resolveExecutable(p, appRoot string, env map[string]string) string {
	if filepath.IsAbs(p) {
		return p
	}
	if c := filepath.Join(appRoot, p); fileExists(c) {
		return c
	}
	if !strings.ContainsRune(p, filepath.Separator) {
		for _, dir := range filepath.SplitList(env["PATH"]) {
			if c := filepath.Join(dir, p); fileExists(c) {
				return c
			}
		}
	}
	return p
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// lineTail keeps the last max lines.
type lineTail struct {
	mu  sync.Mutex
	max int
	l   []string
}

func (t *lineTail) add(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.l = append(t.l, s)
	if len(t.l) > t.max {
		t.l = t.l[len(t.l)-t.max:]
	}
}

func (t *lineTail) lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.l...)
}
