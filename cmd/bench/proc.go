package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// proc is one running handler (or baseline) process, started the way the host starts it (docs/host-protocol.md §2.1): its own
// port in FUNCTIONS_CUSTOMHANDLER_PORT and the legacy name, a worker id, the app root, the app settings,
// stdout and stderr read through pipes.
type proc struct {
	cmd    *exec.Cmd
	base   string // http://127.0.0.1:<port>
	exited chan struct{}
	err    error // from Wait, once exited is closed
	stdout *lineCounter
	stderr *lineCounter
}

// freePort asks the OS for a free loopback port, as the host does (it binds 127.0.0.1:0 and reads the result).
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// processEnv is the environment the binaries run with: a few inherited variables and the app settings.
// GOGC, GOMAXPROCS, GODEBUG and the like are deliberately not inherited, so both run with Go's defaults.
func processEnv(settings map[string]string, port int, dir string) []string {
	env := []string{}
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "LANG"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	for k, v := range settings {
		env = append(env, k+"="+v)
	}
	p := strconv.Itoa(port)
	return append(env,
		"FUNCTIONS_CUSTOMHANDLER_PORT="+p, "FUNCTIONS_HTTPWORKER_PORT="+p,
		"FUNCTIONS_CUSTOMHANDLER_WORKER_ID=0b9f2c4e-1a3d-4c5b-9e8f-7a6b5c4d3e2f", "FUNCTIONS_HTTPWORKER_ID=0b9f2c4e-1a3d-4c5b-9e8f-7a6b5c4d3e2f",
		"FUNCTIONS_APP_ROOT_PATH="+dir)
}

// startProc execs bin on a fresh port. It does not wait for readiness.
func startProc(bin string, settings map[string]string) (*proc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	return startOn(bin, settings, port)
}

func startOn(bin string, settings map[string]string, port int) (*proc, error) {
	dir := os.TempDir()
	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Env = processEnv(settings, port, dir)
	p := &proc{cmd: cmd, base: fmt.Sprintf("http://127.0.0.1:%d", port), exited: make(chan struct{}),
		stdout: &lineCounter{}, stderr: &lineCounter{}}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// alive reports whether the process is still running.
func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// exitError describes an early exit, with the last stderr lines.
func (p *proc) exitError() error {
	return fmt.Errorf("%s exited early (%v); stderr: %s", p.cmd.Path, p.err, p.stderr.tail())
}

// stop kills the process and waits for it (the host kills, too, docs/host-protocol.md §2.3).
func (p *proc) stop() {
	if p.alive() {
		p.cmd.Process.Kill()
	}
	<-p.exited
}

// lineCounter drains a pipe as the host does, counting lines and keeping the last few KiB for diagnostics.
type lineCounter struct {
	mu    sync.Mutex
	lines int64
	bytes int64
	part  []byte // the tail of the output, for tail()
}

func (c *lineCounter) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bytes += int64(len(b))
	c.lines += int64(bytes.Count(b, []byte{'\n'}))
	// Keep the tail for tail()'s last lines, cheaply: only the tail of this write matters.
	tail := b
	if len(tail) > 2048 {
		tail = tail[len(tail)-2048:]
	}
	c.part = append(c.part, tail...)
	if len(c.part) > 4096 {
		c.part = c.part[len(c.part)-4096:]
	}
	return len(b), nil
}

func (c *lineCounter) counts() (lines, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lines, c.bytes
}

func (c *lineCounter) tail() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ls := strings.Split(strings.TrimRight(string(c.part), "\n"), "\n")
	if len(ls) > 3 {
		ls = ls[len(ls)-3:]
	}
	return strings.Join(ls, " | ")
}

// memStatus reads VmRSS and VmHWM (peak RSS) of pid in bytes.
func memStatus(pid int) (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	return parseMemStatus(f)
}

func parseMemStatus(r interface{ Read([]byte) (int, error) }) (rss, hwm int64, err error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		kb, perr := strconv.ParseInt(f[1], 10, 64)
		if perr != nil {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			hwm = kb << 10
		}
	}
	if rss == 0 || hwm == 0 {
		return rss, hwm, errors.New("no VmRSS/VmHWM in /proc/<pid>/status")
	}
	return rss, hwm, sc.Err()
}

// userHZ is the unit of the times in /proc/<pid>/stat; the kernel ABI fixes it at 100 on Linux.
const userHZ = 100

// cpuTime is the user+system CPU time pid has used so far.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseCPUTime(string(b))
}

func parseCPUTime(stat string) (time.Duration, error) {
	// The command name (field 2) is in parentheses and may hold spaces: count fields after the last ')'.
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc/<pid>/stat")
	}
	f := strings.Fields(stat[i+1:])
	// After ')': state is field 3, so utime (14) and stime (15) are at indexes 11 and 12.
	if len(f) < 13 {
		return 0, errors.New("short /proc/<pid>/stat")
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(u+s) * time.Second / userHZ, nil
}
