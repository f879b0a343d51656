package fakehost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue/v2"
)

// HostVersion is the version the double reports in X-Azure-Functions-HostVersion and User-Agent.
const HostVersion = "4.1037.0.0"

// InheritedEnv lists the variables the handler inherits from the process running the double, besides the
// app settings. The real host passes its whole environment; the double passes only these (plus everything
// with Options.InheritEnvironment) so tests stay independent of the machine's environment.
var InheritedEnv = []string{
	"PATH", "HOME", "USER", "LOGNAME", "SHELL", "TMPDIR", "TMP", "TEMP", "LANG", "LC_ALL", "TZ",
	"SSL_CERT_FILE", "SSL_CERT_DIR", "GOCOVERDIR", "GORACE", "GODEBUG", "GOTRACEBACK", "SYSTEMROOT",
}

// Options configure a Host.
type Options struct {
	// AppRoot is the directory with host.json, */function.json and the handler executable.
	AppRoot string
	// Settings are the app settings. When nil, Values from AppRoot/local.settings.json are used. They are
	// the handler's environment, together with the InheritedEnv variables of this process (settings win),
	// and the source of %SETTING% references.
	Settings map[string]string
	// InheritEnvironment passes this process's whole environment to the handler (under Settings), as the
	// real host does.
	InheritEnvironment bool
	// Storage is the connection string for queue triggers and outputs. Default: the app setting the binding's
	// connection names (AzureWebJobsStorage), with UseDevelopmentStorage=true expanded to the Azurite
	// devstore string.
	Storage string
	// FunctionKey is the key authLevel function HTTP triggers require (`code` query or `x-functions-key`
	// header). A random key is made when empty; see Host.FunctionKey.
	FunctionKey string
	// MasterKey is the admin key (authLevel admin; also accepted for function). Random when empty.
	MasterKey string
	// DisableAuth skips key checks, as `func start` does locally.
	DisableAuth bool
	// Stdout and Stderr receive the handler's output lines, prefixed "[handler] " (stdout) and
	// "[handler error] " / "[handler warn] " (stderr, warn when the line contains "warn"). Default os.Stdout
	// and os.Stderr.
	Stdout, Stderr io.Writer
	// Logger receives the host's own log (invocations, restarts, Logs entries). Default: text to os.Stderr.
	Logger *slog.Logger
	// DisableTimers stops NCRONTAB scheduling; FireTimer still works and runOnStartup is still honoured
	// unless DisableRunOnStartup.
	DisableTimers       bool
	DisableRunOnStartup bool
	// DisableQueueTriggers starts no queue listeners (Invoke still works).
	DisableQueueTriggers bool
	// Now is the clock for sys.UtcNow, timer status and schedules. Default time.Now.
	Now func() time.Time
	// RetryDelay, when set, maps the planned delay before retry n (1-based) of a timer or event hub function
	// to the delay used, so tests can compress retry policies.
	RetryDelay func(n int, planned time.Duration) time.Duration
	// Addr is the front's listen address (default 127.0.0.1:0). The real `func start` listens on a known
	// port (Host.LocalHttpPort), which an app setting like GRAPH_NOTIFICATION_URL can then name.
	Addr string
	// FunctionTimeout and InitializationTimeout override host.json when non-zero.
	FunctionTimeout       time.Duration
	InitializationTimeout time.Duration
	// EventHubPartitions is the partition count of every in-memory event hub (default
	// DefaultEventHubPartitions).
	EventHubPartitions int
	// EventHubEncoding picks the wire shape of eventHubTrigger values (default EventHubEncodingHost).
	EventHubEncoding EventHubEncoding
}

// Host is a running double of the Functions host.
type Host struct {
	opts        Options
	appRoot     string
	cfg         *hostConfig
	env         map[string]string
	envMu       sync.Mutex
	handlerEnv  map[string]string // SetHandlerSetting's changes, for the handler's next start
	functions   map[string]*function
	order       []string
	timers      map[string]*timerState
	functionKey string
	masterKey   string
	logger      *slog.Logger
	stdout      io.Writer
	stderr      io.Writer
	outMu       sync.Mutex

	sup    *supervisor
	client *http.Client

	ln     net.Listener
	server *http.Server
	url    string

	qmu      sync.Mutex
	services map[string]*azqueue.ServiceClient

	ctx    context.Context // ends when the host stops
	cancel context.CancelFunc
	wg     sync.WaitGroup

	stopOnce sync.Once
	stopped  chan struct{}
	stopErr  error

	mu      sync.Mutex
	records []InvocationRecord

	ehmu      sync.Mutex
	hubs      map[string]*eventHub   // by lower-case name
	consumers map[string]*ehConsumer // by function; written only by Start
	bmu       sync.Mutex
	changed   chan struct{} // closed and replaced by bump
}

// Start reads the app's configuration, refuses what the real host refuses, starts the handler and waits for
// it to be ready, then starts the HTTP front, the queue listeners and the timers.
func Start(ctx context.Context, opts Options) (*Host, error) {
	root, err := filepath.Abs(opts.AppRoot)
	if err != nil {
		return nil, err
	}
	h := &Host{
		opts:     opts,
		appRoot:  root,
		services: map[string]*azqueue.ServiceClient{},
		stopped:  make(chan struct{}),
		timers:   map[string]*timerState{},
		logger:   opts.Logger,
		stdout:   opts.Stdout,
		stderr:   opts.Stderr,
	}
	if h.logger == nil {
		h.logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	h.logger = h.logger.With("component", "fakehost")
	if h.stdout == nil {
		h.stdout = os.Stdout
	}
	if h.stderr == nil {
		h.stderr = os.Stderr
	}
	settings := opts.Settings
	if settings == nil {
		if settings, err = readLocalSettings(root); err != nil {
			return nil, err
		}
	}
	h.env = map[string]string{}
	if opts.InheritEnvironment {
		for _, kv := range os.Environ() {
			if k, v, ok := strings.Cut(kv, "="); ok {
				h.env[k] = v
			}
		}
	} else {
		for _, k := range InheritedEnv {
			if v, ok := os.LookupEnv(k); ok {
				h.env[k] = v
			}
		}
	}
	for k, v := range settings {
		h.env[k] = v
	}
	if h.cfg, err = loadHostConfig(root, h.env); err != nil {
		return nil, err
	}
	if opts.FunctionTimeout > 0 {
		h.cfg.functionTimeout = opts.FunctionTimeout
	}
	if opts.InitializationTimeout > 0 {
		h.cfg.initTimeout = opts.InitializationTimeout
	}
	if err := h.loadFunctions(); err != nil {
		return nil, err
	}
	h.functionKey, h.masterKey = opts.FunctionKey, opts.MasterKey
	if h.functionKey == "" {
		h.functionKey = strings.ReplaceAll(newGUID(), "-", "")
	}
	if h.masterKey == "" {
		h.masterKey = strings.ReplaceAll(newGUID(), "-", "")
	}

	// Storage clients for every queue binding, so configuration errors surface now.
	var listeners []*queueListener
	for _, name := range h.order {
		fn := h.functions[name]
		for _, b := range fn.outputs() {
			if strings.EqualFold(b.Type, "queue") {
				if _, err := h.storageFor(b); err != nil {
					return nil, fmt.Errorf("function %s: output %s: %w", name, b.Name, err)
				}
			}
		}
		switch {
		case fn.queueName != "" && !opts.DisableQueueTriggers:
			l, err := h.newQueueListener(fn)
			if err != nil {
				return nil, err
			}
			listeners = append(listeners, l)
		case fn.schedule != nil:
			h.timers[name] = newTimerState(fn)
		case fn.eventHub != nil:
			if h.consumers == nil {
				h.consumers = map[string]*ehConsumer{}
			}
			h.consumers[name] = h.newEventHubConsumer(fn)
		}
	}

	h.client = &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		MaxIdleConnsPerHost: 64,
		DisableCompression:  true,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	h.sup = newSupervisor(h)

	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	h.ln, err = net.Listen("tcp", addr)
	if err != nil {
		h.cancel()
		return nil, err
	}
	h.url = "http://" + h.ln.Addr().String()

	h.sup.mu.Lock()
	err = h.sup.startLocked()
	h.sup.mu.Unlock()
	if err != nil {
		h.ln.Close()
		h.cancel()
		return nil, err
	}
	if err := h.waitFirstReady(ctx); err != nil {
		h.Close()
		return nil, err
	}

	h.server = &http.Server{Handler: http.HandlerFunc(h.serveFront), ReadHeaderTimeout: 30 * time.Second}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		if err := h.server.Serve(h.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.logger.Error("HTTP front stopped", "error", err.Error())
		}
	}()
	for _, name := range h.order {
		fn := h.functions[name]
		if fn.route != nil {
			methods := "all methods"
			if fn.methods != nil {
				var ms []string
				for m := range fn.methods {
					ms = append(ms, m)
				}
				sort.Strings(ms)
				methods = strings.Join(ms, ",")
			}
			h.logger.Info("function", "name", name, "trigger", "http", "url", h.url+h.routePath(fn), "methods", methods, "authLevel", fn.trigger.AuthLevel)
		} else if fn.queueName != "" {
			h.logger.Info("function", "name", name, "trigger", "queue", "queue", fn.queueName)
		} else if fn.schedule != nil {
			h.logger.Info("function", "name", name, "trigger", "timer", "schedule", fn.trigger.Schedule)
		} else if fn.eventHub != nil {
			h.logger.Info("function", "name", name, "trigger", "eventHub", "hub", fn.eventHub.hub, "cardinality", fn.trigger.Cardinality)
		}
	}
	for _, name := range h.order {
		c, ok := h.consumers[name]
		if !ok {
			continue
		}
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			c.run(h.ctx)
		}()
	}
	for _, l := range listeners {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			l.run(h.ctx)
		}()
	}
	for _, name := range h.order {
		ts, ok := h.timers[name]
		if !ok {
			continue
		}
		if ts.fn.trigger.RunOnStartup && !opts.DisableRunOnStartup {
			// runOnStartup fires once when the host starts, not when the handler restarts.
			h.wg.Add(1)
			go func() {
				defer h.wg.Done()
				if err := h.fireTimer(h.ctx, ts, "timer", time.Time{}, false); err != nil && h.ctx.Err() == nil {
					h.logger.Warn("runOnStartup invocation failed", "function", ts.fn.name, "error", err.Error())
				}
			}()
		}
		if !opts.DisableTimers {
			h.wg.Add(1)
			go func() {
				defer h.wg.Done()
				h.runTimer(h.ctx, ts)
			}()
		}
	}
	return h, nil
}

// waitFirstReady waits for the first handler process to be ready (supervision may restart it meanwhile).
func (h *Host) waitFirstReady(ctx context.Context) error {
	for {
		h.sup.mu.Lock()
		st, ch, g := h.sup.state, h.sup.changed, h.sup.cur
		h.sup.mu.Unlock()
		switch st {
		case stateReady:
			return nil
		case stateExited:
			return fmt.Errorf("fakehost: the handler exited with code 0 before it was ready (generation %d)", g.n)
		case stateStopped:
			if err := h.StopErr(); err != nil {
				return fmt.Errorf("fakehost: host stopped during start: %w", err)
			}
			return errors.New("fakehost: host stopped during start")
		}
		select {
		case <-ch:
		case <-h.stopped:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// URL is the base URL of the HTTP front, http://127.0.0.1:port; HTTP triggers are at /api/<function>.
func (h *Host) URL() string { return h.url }

// FunctionURL is the URL of an HTTP-triggered function (without the key).
func (h *Host) FunctionURL(function string) string {
	fn, ok := h.functions[function]
	if !ok || fn.route == nil {
		return ""
	}
	return h.url + h.routePath(fn)
}

// FunctionKey is the key for authLevel function triggers.
func (h *Host) FunctionKey() string { return h.functionKey }

// MasterKey is the admin key.
func (h *Host) MasterKey() string { return h.masterKey }

// Functions lists the loaded function names.
func (h *Host) Functions() []string { return append([]string(nil), h.order...) }

// HandlerURL is the base URL of the current handler process (http://127.0.0.1:<port>), or "" when none.
func (h *Host) HandlerURL() string {
	h.sup.mu.Lock()
	defer h.sup.mu.Unlock()
	if h.sup.cur == nil {
		return ""
	}
	return h.sup.cur.baseURL
}

// HandlerPID is the process id of the current handler process, or 0.
func (h *Host) HandlerPID() int {
	h.sup.mu.Lock()
	defer h.sup.mu.Unlock()
	if h.sup.cur == nil || h.sup.cur.cmd.Process == nil {
		return 0
	}
	return h.sup.cur.cmd.Process.Pid
}

// Ready reports whether the handler is up and invocations go through.
func (h *Host) Ready() bool {
	h.sup.mu.Lock()
	defer h.sup.mu.Unlock()
	return h.sup.state == stateReady
}

// KillHandler sends SIGKILL to the handler process. Supervision sees a crash and restarts it (counting an
// error), as the host does.
func (h *Host) KillHandler() error { return h.sup.kill() }

// SetHandlerSetting changes an app setting for the handler's next start (after KillHandler, or a crash), as
// changing an app setting in the portal restarts the app with it. The host's own use of settings (bindings,
// connections) keeps the values it started with.
func (h *Host) SetHandlerSetting(name, value string) {
	h.envMu.Lock()
	defer h.envMu.Unlock()
	if h.handlerEnv == nil {
		h.handlerEnv = map[string]string{}
	}
	h.handlerEnv[name] = value
}

// handlerVars is the environment a handler process starts with: the settings, then SetHandlerSetting's.
func (h *Host) handlerVars() map[string]string {
	h.envMu.Lock()
	defer h.envMu.Unlock()
	out := make(map[string]string, len(h.env)+len(h.handlerEnv))
	maps.Copy(out, h.env)
	maps.Copy(out, h.handlerEnv)
	return out
}

// Restarts is the number of handler restarts so far.
func (h *Host) Restarts() int {
	h.sup.mu.Lock()
	defer h.sup.mu.Unlock()
	return h.sup.restarts
}

// Stopped is closed when the host stops: by itself (the third handler error within 30 minutes, or invocations
// waiting too long for the handler; StopErr says why) or by Close.
func (h *Host) Stopped() <-chan struct{} { return h.stopped }

// StopErr tells why the host stopped itself; nil while running or after Close.
func (h *Host) StopErr() error {
	select {
	case <-h.stopped:
		return h.stopErr
	default:
		return nil
	}
}

// Invocations returns the finished invocations so far, in order of completion.
func (h *Host) Invocations() []InvocationRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]InvocationRecord(nil), h.records...)
}

// Close stops the HTTP front, the listeners and timers, sends SIGTERM to the handler (SIGKILL after 5 s)
// and waits for all of it.
func (h *Host) Close() error {
	h.stop(nil)
	h.wg.Wait()
	return nil
}

// stop shuts the host down once; err is the reason when the host stops itself.
func (h *Host) stop(err error) {
	h.stopOnce.Do(func() {
		h.stopErr = err
		if err != nil {
			h.logger.Error("host stopping", "reason", err.Error())
		}
		h.cancel()
		if h.server != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = h.server.Shutdown(sctx)
			cancel()
		} else if h.ln != nil {
			h.ln.Close()
		}
		h.sup.shutdown(5 * time.Second)
		if t, ok := h.client.Transport.(*http.Transport); ok {
			t.CloseIdleConnections()
		}
		close(h.stopped)
	})
}

func (h *Host) now() time.Time {
	if h.opts.Now != nil {
		return h.opts.Now().UTC()
	}
	return time.Now().UTC()
}

func (h *Host) writeLine(w io.Writer, line string) {
	h.outMu.Lock()
	defer h.outMu.Unlock()
	_, _ = io.WriteString(w, line+"\n")
}
