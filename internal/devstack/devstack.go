// Package devstack runs the whole pipeline on one machine: the real handler binary under the Functions host
// double (internal/fakehost), a real Azurite for every queue, and the Graph double (internal/fakegraph) as
// Graph and Entra ID. The end-to-end tests and `make demo` both stand on it, so what the demo shows is what
// the tests assert.
//
// The handler gets the settings a user would set, pointed at the doubles: AZURE_AUTHORITY_HOST and
// GRAPH_BASE_URL name the Graph double, whose certificate the handler trusts through SSL_CERT_FILE, and
// GRAPH_NOTIFICATION_URL names the host double's front with the function key, so Graph's handshake and
// notifications travel the same path they do in Azure.
package devstack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/azuritetest"
	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakehost"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
	"github.com/graphwebhooks/graph-webhooks-go/internal/storagequeue"
)

// Queue names from the design.
const (
	NotificationQueue = message.WorkQueue
	ChangesQueue      = message.ChangesQueue
)

// Options configure a stack.
type Options struct {
	Root    string // module root: host.json, */function.json, node_modules (Azurite)
	Handler string // the built handler binary
	Users   int    // users seeded in the Graph double (SeedUser(1) …)
	// Groups are seeded too (SeedGroup(1) …), each with the first three seeded users as members. Follow
	// them with Settings[GRAPH_RESOURCE] = "users,groups".
	Groups int
	// Drives are drive ids added to the Graph double (empty drives) before the host starts, so that a
	// GRAPH_RESOURCE entry drives/{id} is subscribed by the timer's first run.
	Drives []string
	// Graph adjusts the Graph double's options before it starts (delivery timing, page sizes…).
	Graph func(*fakegraph.Options)
	// Settings override or add app settings.
	Settings map[string]string
	// HandlerOut receives the handler's and the host's log lines; nil discards them.
	HandlerOut io.Writer
	// Host adjusts the host double's options before it starts.
	Host func(*fakehost.Options)
	// EventHubs switches the eventhub function on (it is laid out either way, disabled by default as in
	// local.settings.json) and connects the Graph double's Event Hubs deliveries to the host double's hub
	// EventHubName, so a subscription with EventHubURL() delivers through it.
	EventHubs bool
}

// The event hub of the stack: the host double keeps it in memory.
const (
	EventHubNamespace = "devstack.servicebus.windows.net"
	EventHubName      = "graph-notifications"
)

// EventHubURL is the notification URL that makes the Graph double deliver to the stack's event hub.
func EventHubURL() string {
	return fakegraph.EventHubURL(EventHubNamespace, EventHubName, "contoso.example")
}

// hubSink hands the Graph double's Event Hubs deliveries to the host double. A delivery can come while the
// host double is still starting (the timer's start-up run subscribes, and Graph sends its validation
// event): it waits for the host, as a hub would hold the event.
type hubSink struct{ s *Stack }

func (h hubSink) SendEvent(ctx context.Context, namespace, hub string, body []byte) error {
	if !strings.EqualFold(namespace, EventHubNamespace) || !strings.EqualFold(hub, EventHubName) {
		return fmt.Errorf("no event hub %s/%s in this stack", namespace, hub)
	}
	select {
	case <-h.s.hostUp:
	case <-ctx.Done():
		return errors.New("the host double is not running yet")
	}
	h.s.Host.SendEvents(hub, fakehost.EventData{Body: body})
	return nil
}

// Stack is a running pipeline.
type Stack struct {
	Azurite  *azuritetest.Azurite
	Graph    *fakegraph.Server
	Host     *fakehost.Host
	Settings map[string]string
	Queue    *storagequeue.Client

	appRoot string
	opts    Options
	hostUp  chan struct{} // closed once Host is set
	mu      sync.Mutex
	events  []message.Event
}

// Well-known identities of the stack's tenant and app (any GUIDs do).
const (
	TenantID = "8c1f4b2e-0d6a-4f57-9a3e-2b9d7c6e5f41"
	ClientID = "3f2a1b0c-9d8e-4f7a-8b6c-5d4e3f2a1b0c"
)

// Start brings everything up and waits until the renew timer's start-up run has created the subscription
// and taken the resync starting point.
func Start(ctx context.Context, o Options) (_ *Stack, err error) {
	s := &Stack{opts: o, hostUp: make(chan struct{})}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.Azurite, err = azuritetest.StartProcess(ctx, o.Root); err != nil {
		return nil, err
	}

	secret := randomHex(16)
	gopts := fakegraph.NewOptions(TenantID, ClientID, secret)
	gopts.EventHubs = hubSink{s}
	if o.Graph != nil {
		o.Graph(&gopts)
	}
	s.Graph = fakegraph.New(gopts)
	for i := 1; i <= o.Users; i++ {
		s.Graph.AddUser(SeedUser(i))
	}
	for i := 1; i <= o.Groups; i++ {
		var members []string
		for u := 1; u <= min(3, o.Users); u++ {
			members = append(members, UserID(u))
		}
		s.Graph.AddGroup(SeedGroup(i, members...))
	}

	for _, d := range o.Drives {
		if _, err := s.Graph.AddDrive(fakegraph.Drive{ID: d}); err != nil {
			return nil, err
		}
	}

	if s.appRoot, err = os.MkdirTemp("", "devstack-app-"); err != nil {
		return nil, err
	}
	if err := s.layOutApp(o); err != nil {
		return nil, err
	}
	certFile := filepath.Join(s.appRoot, "fakegraph-ca.pem")
	if err := os.WriteFile(certFile, s.Graph.CertPEM(), 0o600); err != nil {
		return nil, err
	}
	frontAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	key := randomHex(16)
	s.Settings = map[string]string{
		"FUNCTIONS_WORKER_RUNTIME":                "custom",
		config.Storage:                            s.Azurite.ConnectionString(),
		config.TenantID:                           TenantID,
		config.ClientID:                           ClientID,
		config.ClientSecret:                       secret,
		config.AuthorityHost:                      s.Graph.AuthorityHost(),
		config.GraphBaseURL:                       s.Graph.GraphBaseURL(),
		config.NotificationURL:                    "http://" + frontAddr + "/api/webhook?code=" + key,
		config.ClientState:                        randomHex(24),
		config.RenewSchedule:                      "0 0 * * * *",
		config.ResyncInitial:                      "latest",
		config.ResyncContainer:                    "graph-webhooks",
		"SSL_CERT_FILE":                           certFile,
		"AzureWebJobs.eventhub.Disabled":          strconv.FormatBool(!o.EventHubs),
		"GRAPH_EVENTHUB__fullyQualifiedNamespace": EventHubNamespace,
		"GRAPH_EVENTHUB_NAME":                     EventHubName,
	}
	for k, v := range o.Settings {
		s.Settings[k] = v
	}
	if s.Queue, err = storagequeue.New(config.Load(func(k string) string { return s.Settings[k] }).Storage, storagequeue.Options{}); err != nil {
		return nil, err
	}

	out := o.HandlerOut
	if out == nil {
		out = io.Discard
	}
	hopts := fakehost.Options{
		AppRoot:     s.appRoot,
		Settings:    s.Settings,
		FunctionKey: key,
		Addr:        frontAddr,
		Stdout:      out,
		Stderr:      out,
		Logger:      slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	if o.Host != nil {
		o.Host(&hopts)
	}
	if s.Host, err = fakehost.Start(ctx, hopts); err != nil {
		return nil, fmt.Errorf("start the host double: %w", err)
	}
	close(s.hostUp)
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	// Ready means the timer's start-up run finished: the subscriptions exist and the resync starting points
	// (taken right after each create) are stored.
	want := len(config.Load(func(k string) string { return s.Settings[k] }).Resources)
	if err := Eventually(wctx, func() bool {
		for _, inv := range s.Host.Invocations() {
			if inv.Function == "renewtimer" && inv.Status == fakehost.Succeeded {
				return len(s.Graph.Subscriptions()) >= want
			}
		}
		return false
	}); err != nil {
		return nil, fmt.Errorf("the renew timer did not create the subscription: %w", err)
	}
	return s, nil
}

// SeedUser is user i of the seeded directory.
func SeedUser(i int) fakegraph.User {
	id := fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
	return fakegraph.User{ID: id, Props: map[string]any{
		"displayName":       fmt.Sprintf("User %03d", i),
		"userPrincipalName": fmt.Sprintf("user%03d@contoso.example", i),
		"mail":              fmt.Sprintf("user%03d@contoso.example", i),
		"accountEnabled":    true,
		"jobTitle":          "Engineer",
		"department":        "R&D",
	}}
}

// UserID is the id of seeded user i.
func UserID(i int) string { return SeedUser(i).ID }

// SeedGroup is group i of a seeded directory, a Microsoft 365 group with the given members. Its id
// follows a pattern of its own (…-4000-9000-…), distinct from SeedUser's.
func SeedGroup(i int, members ...string) fakegraph.Group {
	return fakegraph.Group{ID: fmt.Sprintf("00000000-0000-4000-9000-%012d", i), Members: members, Props: map[string]any{
		"displayName":     fmt.Sprintf("Group %03d", i),
		"description":     fmt.Sprintf("Seeded group %d", i),
		"mail":            fmt.Sprintf("group%03d@contoso.example", i),
		"mailNickname":    fmt.Sprintf("group%03d", i),
		"mailEnabled":     true,
		"securityEnabled": false,
		"groupTypes":      []any{"Unified"},
		"visibility":      "Private",
	}}
}

// layOutApp builds the app root the host double runs: host.json, each function.json and the handler, as
// `func azure functionapp publish` would upload them (.funcignore).
func (s *Stack) layOutApp(o Options) error {
	files := []string{"host.json", "webhook/function.json", "queueworker/function.json", "renewtimer/function.json", "eventhub/function.json"}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(o.Root, f))
		if err != nil {
			return err
		}
		dst := filepath.Join(s.appRoot, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			return err
		}
	}
	bin, err := os.ReadFile(o.Handler)
	if err != nil {
		return fmt.Errorf("read the handler binary (build it first): %w", err)
	}
	return os.WriteFile(filepath.Join(s.appRoot, "handler"), bin, 0o755)
}

// Drain moves every event now in graphchanges into the stack's record and returns how many it read.
func (s *Stack) Drain(ctx context.Context) (int, error) {
	n := 0
	for {
		msgs, err := s.Queue.Receive(ctx, ChangesQueue, 32, time.Minute)
		if err != nil {
			return n, err
		}
		if len(msgs) == 0 {
			return n, nil
		}
		for _, m := range msgs {
			var e message.Event
			if err := json.Unmarshal(m.Text, &e); err != nil {
				return n, fmt.Errorf("an event in %s is not JSON: %w", ChangesQueue, err)
			}
			s.mu.Lock()
			s.events = append(s.events, e)
			s.mu.Unlock()
			n++
			if err := s.Queue.Delete(ctx, ChangesQueue, m); err != nil {
				return n, err
			}
		}
	}
}

// Events returns every event read so far.
func (s *Stack) Events() []message.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]message.Event(nil), s.events...)
}

// WaitEvents drains graphchanges until cond holds for the events read so far, or ctx ends.
func (s *Stack) WaitEvents(ctx context.Context, cond func([]message.Event) bool) error {
	for {
		if _, err := s.Drain(ctx); err != nil {
			return err
		}
		if cond(s.Events()) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for events: %w", context.Cause(ctx))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// AwaitState waits until every object in ids (users or groups) has a latest event carrying its current
// state in the Graph double: its selected properties when it exists, a deleted event (soft or not, as in
// Graph) when it does not.
func (s *Stack) AwaitState(ctx context.Context, ids []string) error {
	cfg := config.Load(func(k string) string { return s.Settings[k] })
	return s.WaitEvents(ctx, func(evs []message.Event) bool {
		latest := Latest(evs)
		for _, id := range ids {
			e := latest[id]
			if !Matches(s.Graph, cfg.Select(e.Resource), id, e) {
				return false
			}
		}
		return true
	})
}

// Matches reports whether e carries object id's current state in the Graph double, as far as the selected
// properties go.
func Matches(g *fakegraph.Server, sel []string, id string, e message.Event) bool {
	if e.ResourceID != id {
		return false
	}
	var props map[string]any
	var exists, soft bool
	if e.Resource == config.Groups {
		gr, ok := g.Group(id)
		props, exists, soft = gr.Props, ok, g.GroupSoftDeleted(id)
	} else {
		u, ok := g.User(id)
		props, exists, soft = u.Props, ok, g.SoftDeleted(id)
	}
	if !exists {
		return e.ChangeType == graph.Deleted && e.SoftDeleted == soft
	}
	if e.ChangeType != graph.Updated || e.Object == nil {
		return false
	}
	for _, k := range sel {
		if fmt.Sprint(e.Object[k]) != fmt.Sprint(props[k]) {
			return false
		}
	}
	return true
}

// Latest returns, per user id, the last event read for that user.
func Latest(events []message.Event) map[string]message.Event {
	m := map[string]message.Event{}
	for _, e := range events {
		m[e.ResourceID] = e
	}
	return m
}

// Close stops everything and removes the app root.
func (s *Stack) Close() error {
	var errs []error
	if s.Host != nil {
		errs = append(errs, s.Host.Close())
	}
	if s.Graph != nil {
		s.Graph.Close()
	}
	if s.Azurite != nil {
		errs = append(errs, s.Azurite.Stop())
	}
	if s.appRoot != "" {
		os.RemoveAll(s.appRoot)
	}
	return errors.Join(errs...)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// Eventually polls cond every 50 ms until it holds or ctx ends: for conditions on state outside the Graph
// double (queues, the host), whose own WaitFor only wakes on the double's changes.
func Eventually(ctx context.Context, cond func() bool) error {
	for !cond() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("condition not met: %w", context.Cause(ctx))
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}
