package fakehost

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

// hostConfig is what the double takes from host.json.
type hostConfig struct {
	exePath         string // as written, %VAR% expanded
	workerPath      string // description.defaultWorkerPath
	workDir         string // absolute
	arguments       []string
	workerArguments []string
	functionTimeout time.Duration // 0 = unbounded ("-1")
	initTimeout     time.Duration
	routePrefix     string
	queues          queueOptions
	eventHubs       eventHubOptions
}

type queueOptions struct {
	maxPollingInterval time.Duration
	visibilityTimeout  time.Duration
	batchSize          int
	newBatchThreshold  int
	maxDequeueCount    int
	base64             bool
}

type hostJSON struct {
	Version         string `json:"version"`
	FunctionTimeout string `json:"functionTimeout"`
	CustomHandler   *struct {
		Description *struct {
			DefaultExecutablePath string   `json:"defaultExecutablePath"`
			DefaultWorkerPath     string   `json:"defaultWorkerPath"`
			WorkingDirectory      string   `json:"workingDirectory"`
			Arguments             []string `json:"arguments"`
			WorkerArguments       []string `json:"workerArguments"`
		} `json:"description"`
		EnableForwardingHttpRequest bool   `json:"enableForwardingHttpRequest"`
		EnableProxyingHttpRequest   bool   `json:"enableProxyingHttpRequest"`
		InitializationTimeout       string `json:"initializationTimeout"`
	} `json:"customHandler"`
	HTTPWorker *json.RawMessage `json:"httpWorker"`
	Extensions struct {
		HTTP struct {
			RoutePrefix *string `json:"routePrefix"`
		} `json:"http"`
		Queues struct {
			MaxPollingInterval string `json:"maxPollingInterval"`
			VisibilityTimeout  string `json:"visibilityTimeout"`
			BatchSize          *int   `json:"batchSize"`
			NewBatchThreshold  *int   `json:"newBatchThreshold"`
			MaxDequeueCount    *int   `json:"maxDequeueCount"`
			MessageEncoding    string `json:"messageEncoding"`
		} `json:"queues"`
		EventHubs eventHubsJSON `json:"eventHubs"`
	} `json:"extensions"`
}

// defaultFunctionTimeout is the host's default outside Consumption, which is what `func start` uses locally.
const defaultFunctionTimeout = 30 * time.Minute

func loadHostConfig(appRoot string, env map[string]string) (*hostConfig, error) {
	raw, err := os.ReadFile(filepath.Join(appRoot, "host.json"))
	if err != nil {
		return nil, fmt.Errorf("host.json: %w", err)
	}
	var hj hostJSON
	if err := unmarshalLenient(raw, &hj); err != nil {
		return nil, fmt.Errorf("host.json: %w", err)
	}
	if hj.CustomHandler == nil {
		if hj.HTTPWorker != nil {
			return nil, errors.New("host.json: the legacy httpWorker section is not modelled by fakehost; use customHandler")
		}
		return nil, errors.New("host.json: no customHandler section (FUNCTIONS_WORKER_RUNTIME=custom needs one)")
	}
	if hj.CustomHandler.EnableForwardingHttpRequest || hj.CustomHandler.EnableProxyingHttpRequest {
		return nil, errors.New("host.json: enableForwardingHttpRequest/enableProxyingHttpRequest are not modelled by fakehost")
	}
	d := hj.CustomHandler.Description
	if d == nil {
		return nil, errors.New("host.json: Missing worker Description (customHandler.description)")
	}
	if strings.TrimSpace(d.DefaultExecutablePath) == "" {
		return nil, errors.New("host.json: customHandler.description.defaultExecutablePath is required")
	}
	cfg := &hostConfig{
		exePath:     expandPercent(d.DefaultExecutablePath, env, false),
		workerPath:  expandPercent(d.DefaultWorkerPath, env, false),
		initTimeout: 30 * time.Second,
		routePrefix: "api",
		queues: queueOptions{
			maxPollingInterval: time.Minute,
			batchSize:          16,
			maxDequeueCount:    5,
			base64:             true,
		},
		functionTimeout: defaultFunctionTimeout,
	}
	for _, a := range d.Arguments {
		if v := expandPercent(a, env, true); v != "" {
			cfg.arguments = append(cfg.arguments, v)
		}
	}
	for _, a := range d.WorkerArguments {
		if v := expandPercent(a, env, true); v != "" {
			cfg.workerArguments = append(cfg.workerArguments, v)
		}
	}
	cfg.workDir = appRoot
	if wd := d.WorkingDirectory; wd != "" {
		if filepath.IsAbs(wd) {
			cfg.workDir = wd
		} else {
			cfg.workDir = filepath.Join(appRoot, wd)
		}
	}
	if s := hj.CustomHandler.InitializationTimeout; s != "" {
		// [inferred] the reference marks honouring customHandler.initializationTimeout as unverified; the
		// double honours it since the whole section binds onto HttpWorkerOptions.
		t, err := parseTimeSpan(s)
		if err != nil || t <= 0 {
			return nil, fmt.Errorf("host.json: customHandler.initializationTimeout %q: invalid TimeSpan", s)
		}
		cfg.initTimeout = t
	}
	if s := strings.TrimSpace(hj.FunctionTimeout); s != "" {
		if s == "-1" {
			cfg.functionTimeout = 0
		} else {
			t, err := parseTimeSpan(s)
			if err != nil || t <= 0 {
				return nil, fmt.Errorf("host.json: functionTimeout %q: invalid TimeSpan", s)
			}
			cfg.functionTimeout = t
		}
	}
	if p := hj.Extensions.HTTP.RoutePrefix; p != nil {
		cfg.routePrefix = strings.Trim(*p, "/")
	}
	q := hj.Extensions.Queues
	if q.MaxPollingInterval != "" {
		t, err := parseTimeSpan(q.MaxPollingInterval)
		if err != nil {
			return nil, fmt.Errorf("host.json: extensions.queues.maxPollingInterval: %w", err)
		}
		if t < 100*time.Millisecond {
			return nil, fmt.Errorf("host.json: extensions.queues.maxPollingInterval %q is below the minimum 00:00:00.100", q.MaxPollingInterval)
		}
		cfg.queues.maxPollingInterval = t
	}
	if q.VisibilityTimeout != "" {
		t, err := parseTimeSpan(q.VisibilityTimeout)
		if err != nil || t < 0 {
			return nil, fmt.Errorf("host.json: extensions.queues.visibilityTimeout %q: invalid TimeSpan", q.VisibilityTimeout)
		}
		cfg.queues.visibilityTimeout = t
	}
	if q.BatchSize != nil {
		if *q.BatchSize < 1 || *q.BatchSize > 32 {
			return nil, fmt.Errorf("host.json: extensions.queues.batchSize %d: must be 1-32", *q.BatchSize)
		}
		cfg.queues.batchSize = *q.BatchSize
	}
	if q.MaxDequeueCount != nil {
		if *q.MaxDequeueCount < 1 {
			return nil, fmt.Errorf("host.json: extensions.queues.maxDequeueCount %d: must be at least 1", *q.MaxDequeueCount)
		}
		cfg.queues.maxDequeueCount = *q.MaxDequeueCount
	}
	cfg.queues.newBatchThreshold = runtime.NumCPU() * cfg.queues.batchSize / 2
	if q.NewBatchThreshold != nil {
		if *q.NewBatchThreshold < 0 {
			return nil, fmt.Errorf("host.json: extensions.queues.newBatchThreshold %d: must not be negative", *q.NewBatchThreshold)
		}
		cfg.queues.newBatchThreshold = *q.NewBatchThreshold
	}
	switch strings.ToLower(q.MessageEncoding) {
	case "", "base64":
	case "none":
		cfg.queues.base64 = false
	default:
		return nil, fmt.Errorf("host.json: extensions.queues.messageEncoding %q: want base64 or none", q.MessageEncoding)
	}
	if cfg.eventHubs, err = hj.Extensions.EventHubs.options(); err != nil {
		return nil, fmt.Errorf("host.json: extensions.eventHubs: %w", err)
	}
	return cfg, nil
}

// Binding is one entry of a function.json "bindings" array, with %SETTING% references resolved in
// queueName, schedule and connection.
type Binding struct {
	Type      string `json:"type"`
	Direction string `json:"direction"`
	Name      string `json:"name"`
	DataType  string `json:"dataType"`
	// HTTP trigger
	AuthLevel string   `json:"authLevel"`
	Methods   []string `json:"methods"`
	Route     string   `json:"route"`
	// queue trigger / output
	QueueName  string `json:"queueName"`
	Connection string `json:"connection"`
	// event hub trigger
	EventHubName  string `json:"eventHubName"`
	Cardinality   string `json:"cardinality"`
	ConsumerGroup string `json:"consumerGroup"`
	// timer trigger
	Schedule     string `json:"schedule"`
	RunOnStartup bool   `json:"runOnStartup"`
	UseMonitor   *bool  `json:"useMonitor"`
}

// RetryPolicy is function.json's "retry" (honoured for timer and event hub triggers, the two the host
// applies it to).
type RetryPolicy struct {
	Strategy        string `json:"strategy"`
	MaxRetryCount   int    `json:"maxRetryCount"`
	DelayInterval   string `json:"delayInterval"`
	MinimumInterval string `json:"minimumInterval"`
	MaximumInterval string `json:"maximumInterval"`

	delay, minDelay, maxDelay time.Duration
}

type functionJSON struct {
	Bindings []Binding    `json:"bindings"`
	Disabled any          `json:"disabled"`
	Retry    *RetryPolicy `json:"retry"`
}

// function is one loaded function.
type function struct {
	name     string
	bindings []Binding
	trigger  *Binding
	retry    *RetryPolicy

	// http
	route   *routeTemplate
	methods map[string]bool // nil: all

	// timer
	schedule   Schedule
	useMonitor bool

	// queue trigger
	queueName string

	// event hub trigger
	eventHub *eventHubTrigger
}

func (f *function) outputs() []*Binding {
	var out []*Binding
	for i := range f.bindings {
		b := &f.bindings[i]
		if strings.EqualFold(b.Direction, "out") && b != f.trigger {
			out = append(out, b)
		}
	}
	return out
}

func (f *function) hasReturnBinding() bool {
	for _, b := range f.outputs() {
		if b.Name == "$return" {
			return true
		}
	}
	return false
}

var percentRE = regexp.MustCompile(`%([^%\s]+)%`)

// expandPercent replaces %NAME% with the setting's value. Unresolved names stay as they are, or are removed
// when drop is set (the rule for customHandler arguments).
func expandPercent(s string, env map[string]string, drop bool) string {
	return percentRE.ReplaceAllStringFunc(s, func(m string) string {
		if v, ok := env[m[1:len(m)-1]]; ok {
			return v
		}
		if drop {
			return ""
		}
		return m
	})
}

// resolveSetting resolves %NAME% references the way the host's name resolver does for binding properties:
// an unresolved one is an indexing error for the function.
func resolveSetting(fn, prop, s string, env map[string]string) (string, error) {
	var missing []string
	out := percentRE.ReplaceAllStringFunc(s, func(m string) string {
		name := m[1 : len(m)-1]
		if v, ok := env[name]; ok && v != "" {
			return v
		}
		missing = append(missing, name)
		return m
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("function %s: %s %q: '%%%s%%' does not resolve to a value (app setting %s is missing)", fn, prop, s, missing[0], missing[0])
	}
	return out, nil
}

// loadFunctions reads every <AppRoot>/*/function.json.
func (h *Host) loadFunctions() error {
	matches, err := filepath.Glob(filepath.Join(h.appRoot, "*", "function.json"))
	if err != nil {
		return err
	}
	sort.Strings(matches)
	h.functions = map[string]*function{}
	for _, path := range matches {
		name := filepath.Base(filepath.Dir(path))
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var fj functionJSON
		if err := unmarshalLenient(raw, &fj); err != nil {
			return fmt.Errorf("function %s: %s: %w", name, path, err)
		}
		if disabled(fj.Disabled) || strings.EqualFold(h.env["AzureWebJobs."+name+".Disabled"], "true") {
			h.logger.Info("function disabled", "function", name)
			continue
		}
		fn, err := h.buildFunction(name, fj)
		if err != nil {
			return err
		}
		h.functions[name] = fn
		h.order = append(h.order, name)
	}
	if len(h.functions) == 0 {
		h.logger.Warn("no functions found", "appRoot", h.appRoot)
	}
	return nil
}

func disabled(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case string:
		b, _ := strconv.ParseBool(x)
		return b
	}
	return false
}

func (h *Host) buildFunction(name string, fj functionJSON) (*function, error) {
	fn := &function{name: name, bindings: fj.Bindings, retry: fj.Retry}
	for i := range fn.bindings {
		b := &fn.bindings[i]
		if b.Name == "" {
			return nil, fmt.Errorf("function %s: binding %d has no name", name, i)
		}
		var err error
		for _, p := range []struct {
			prop string
			v    *string
		}{{"queueName", &b.QueueName}, {"schedule", &b.Schedule}, {"connection", &b.Connection}, {"eventHubName", &b.EventHubName}, {"consumerGroup", &b.ConsumerGroup}} {
			if *p.v, err = resolveSetting(name, p.prop, *p.v, h.env); err != nil {
				return nil, err
			}
		}
		switch t := strings.ToLower(b.Type); t {
		case "httptrigger", "queuetrigger", "timertrigger", "eventhubtrigger":
			if fn.trigger != nil {
				return nil, fmt.Errorf("function %s: more than one trigger binding", name)
			}
			fn.trigger = b
		case "http", "queue":
			if !strings.EqualFold(b.Direction, "out") {
				return nil, fmt.Errorf("function %s: binding %s: type %s must have direction out", name, b.Name, b.Type)
			}
		default:
			return nil, fmt.Errorf("function %s: binding %s: type %q is not modelled by fakehost", name, b.Name, b.Type)
		}
	}
	if fn.trigger == nil {
		return nil, fmt.Errorf("function %s: no trigger binding", name)
	}
	tb := fn.trigger
	switch strings.ToLower(tb.Type) {
	case "httptrigger":
		route := tb.Route
		if route == "" {
			route = name
		}
		rt, err := parseRoute(route)
		if err != nil {
			return nil, fmt.Errorf("function %s: route %q: %w", name, route, err)
		}
		fn.route = rt
		if len(tb.Methods) > 0 {
			fn.methods = map[string]bool{}
			for _, m := range tb.Methods {
				fn.methods[strings.ToUpper(m)] = true
			}
		}
		switch strings.ToLower(tb.AuthLevel) {
		case "":
			tb.AuthLevel = "function"
		case "function", "anonymous", "admin":
		default:
			return nil, fmt.Errorf("function %s: authLevel %q: want function, anonymous or admin", name, tb.AuthLevel)
		}
	case "queuetrigger":
		if tb.QueueName == "" {
			return nil, fmt.Errorf("function %s: queueTrigger has no queueName", name)
		}
		fn.queueName = strings.ToLower(tb.QueueName)
		if err := validateQueueName(fn.queueName); err != nil {
			return nil, fmt.Errorf("function %s: %w", name, err)
		}
	case "eventhubtrigger":
		eh, err := h.buildEventHubTrigger(name, tb)
		if err != nil {
			return nil, err
		}
		fn.eventHub = eh
	case "timertrigger":
		if tb.Schedule == "" {
			return nil, fmt.Errorf("function %s: timerTrigger has no schedule", name)
		}
		s, err := ParseSchedule(tb.Schedule)
		if err != nil {
			return nil, fmt.Errorf("function %s: %w", name, err)
		}
		fn.schedule = s
		fn.useMonitor = tb.UseMonitor == nil || *tb.UseMonitor
		if fn.useMonitor {
			// The host turns monitoring off for schedules that fire more than once a minute.
			now := time.Now().UTC()
			a := s.Next(now)
			if b := s.Next(a); !a.IsZero() && !b.IsZero() && b.Sub(a) < time.Minute {
				fn.useMonitor = false
			}
		}
	}
	for _, b := range fn.outputs() {
		if strings.EqualFold(b.Type, "queue") {
			if b.QueueName == "" {
				return nil, fmt.Errorf("function %s: queue output %s has no queueName", name, b.Name)
			}
			if err := validateQueueName(strings.ToLower(b.QueueName)); err != nil {
				return nil, fmt.Errorf("function %s: output %s: %w", name, b.Name, err)
			}
		}
	}
	if fn.retry != nil {
		if err := fn.retry.validate(); err != nil {
			return nil, fmt.Errorf("function %s: retry: %w", name, err)
		}
	}
	return fn, nil
}

var queueNameRE = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9]|-[a-z0-9]){2,62}$`)

func validateQueueName(q string) error {
	if !queueNameRE.MatchString(q) {
		return fmt.Errorf("queue name %q is invalid (3-63 lower-case letters, digits and single hyphens)", q)
	}
	return nil
}

func (r *RetryPolicy) validate() error {
	switch strings.ToLower(r.Strategy) {
	case "fixeddelay":
		d, err := parseTimeSpan(r.DelayInterval)
		if err != nil || d < 0 {
			return fmt.Errorf("fixedDelay needs delayInterval (hh:mm:ss), got %q", r.DelayInterval)
		}
		r.delay = d
	case "exponentialbackoff":
		a, err1 := parseTimeSpan(r.MinimumInterval)
		b, err2 := parseTimeSpan(r.MaximumInterval)
		if err1 != nil || err2 != nil || a < 0 || b < a {
			return fmt.Errorf("exponentialBackoff needs minimumInterval <= maximumInterval, got %q and %q", r.MinimumInterval, r.MaximumInterval)
		}
		r.minDelay, r.maxDelay = a, b
	default:
		return fmt.Errorf("strategy %q: want fixedDelay or exponentialBackoff", r.Strategy)
	}
	if r.MaxRetryCount < -1 {
		return fmt.Errorf("maxRetryCount %d", r.MaxRetryCount)
	}
	return nil
}

// delayBefore returns the planned delay before retry number n (1-based).
// [inferred] The WebJobs SDK's exponential backoff randomises its delays; the double uses
// minimumInterval·2^(n-1), capped at maximumInterval, so tests are deterministic.
func (r *RetryPolicy) delayBefore(n int) time.Duration {
	if strings.EqualFold(r.Strategy, "fixedDelay") {
		return r.delay
	}
	d := r.minDelay
	for i := 1; i < n && d < r.maxDelay; i++ {
		d *= 2
	}
	if d > r.maxDelay {
		d = r.maxDelay
	}
	return d
}

// readLocalSettings reads Values from local.settings.json (empty when the file does not exist).
func readLocalSettings(appRoot string) (map[string]string, error) {
	raw, err := os.ReadFile(filepath.Join(appRoot, "local.settings.json"))
	if errors.Is(err, os.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	return ParseSettings(raw)
}

// ParseSettings reads the Values of a local.settings.json document as app settings.
func ParseSettings(raw []byte) (map[string]string, error) {
	var ls struct {
		IsEncrypted bool           `json:"IsEncrypted"`
		Values      map[string]any `json:"Values"`
	}
	if err := unmarshalLenient(raw, &ls); err != nil {
		return nil, fmt.Errorf("local.settings.json: %w", err)
	}
	if ls.IsEncrypted {
		return nil, errors.New("local.settings.json: encrypted settings are not supported")
	}
	out := make(map[string]string, len(ls.Values))
	for k, v := range ls.Values {
		switch x := v.(type) {
		case string:
			out[k] = x
		case nil:
			out[k] = ""
		default:
			b, _ := json.Marshal(x)
			out[k] = strings.Trim(string(b), `"`)
		}
	}
	return out, nil
}

// unmarshalLenient accepts the // and /* */ comments and trailing commas that the host's JSON reader
// tolerates in host.json and function.json.
func unmarshalLenient(raw []byte, v any) error {
	raw = bytes.TrimPrefix(raw, []byte("\xef\xbb\xbf"))
	return json.Unmarshal(stripJSONComments(raw), v)
}

func stripJSONComments(raw []byte) []byte {
	var out bytes.Buffer
	inStr := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if inStr {
			out.WriteByte(c)
			if c == '\\' && i+1 < len(raw) {
				i++
				out.WriteByte(raw[i])
			} else if c == '"' {
				inStr = false
			}
			continue
		}
		switch {
		case c == '"':
			inStr = true
			out.WriteByte(c)
		case c == '/' && i+1 < len(raw) && raw[i+1] == '/':
			for i < len(raw) && raw[i] != '\n' {
				i++
			}
			out.WriteByte('\n')
		case c == '/' && i+1 < len(raw) && raw[i+1] == '*':
			i += 2
			for i+1 < len(raw) && !(raw[i] == '*' && raw[i+1] == '/') {
				i++
			}
			i++
		case c == ',':
			// drop a trailing comma before } or ]
			j := i + 1
			for j < len(raw) && (raw[j] == ' ' || raw[j] == '\t' || raw[j] == '\r' || raw[j] == '\n') {
				j++
			}
			if j < len(raw) && (raw[j] == '}' || raw[j] == ']') {
				continue
			}
			out.WriteByte(c)
		default:
			out.WriteByte(c)
		}
	}
	return out.Bytes()
}

// DevelopmentStorageConnectionString expands UseDevelopmentStorage=true to the Azurite devstore string with
// the default ports (blob 10000, queue 10001, table 10002) on 127.0.0.1, or on the host of
// DevelopmentStorageProxyUri when given.
func DevelopmentStorageConnectionString(proxyURI string) string {
	host := "http://127.0.0.1"
	if proxyURI != "" {
		host = strings.TrimRight(proxyURI, "/")
	}
	return "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;" +
		"AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;" +
		"BlobEndpoint=" + host + ":10000/devstoreaccount1;QueueEndpoint=" + host + ":10001/devstoreaccount1;" +
		"TableEndpoint=" + host + ":10002/devstoreaccount1;"
}

// expandStorage turns UseDevelopmentStorage=true (with an optional DevelopmentStorageProxyUri) into a full
// connection string and leaves anything else alone.
func expandStorage(cs string) string {
	use := false
	proxy := ""
	for _, part := range strings.Split(cs, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch strings.ToLower(k) {
		case "usedevelopmentstorage":
			use = strings.EqualFold(v, "true")
		case "developmentstorageproxyuri":
			proxy = v
		}
	}
	if use {
		return DevelopmentStorageConnectionString(proxy)
	}
	return cs
}
