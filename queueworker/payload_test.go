package queueworker

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/events"
	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
	"github.com/graphwebhooks/graph-webhooks-go/internal/objectstate"
	"github.com/graphwebhooks/graph-webhooks-go/internal/storagequeue"
)

const (
	teamsChat    = "19:2da4c29f6d7041eca70b638b43d45437@thread.v2"
	teamsTeam    = "6e1f0001-7c3a-4b2d-9e8f-0a1b2c3d4e5f"
	teamsChannel = "19:4a95f7d8db4c4e7fae857bcebe0623e6@thread.tacv2"
)

// teamsRig is a worker env whose Graph double delivers Teams notifications to a recorder, subscribed to
// one chat and one channel with the test certificate.
type teamsRig struct {
	*env
	mu     sync.Mutex
	bodies [][]byte
}

func newTeamsRig(t testing.TB, extra ...map[string]string) *teamsRig {
	t.Helper()
	return newTeamsRigWith(t, nil, extra...)
}

// newTeamsRigWith is newTeamsRig with options of the env besides the settings.
func newTeamsRigWith(t testing.TB, opts []envOption, extra ...map[string]string) *teamsRig {
	t.Helper()
	pemText := func(p string) string {
		b, err := os.ReadFile("../richnotify/testdata/" + p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	r := &teamsRig{}
	settings := map[string]string{
		config.Resource:                "chats/" + teamsChat + "/messages",
		config.EncryptionCertificate:   pemText("openssl/key-pkcs8.pem") + pemText("openssl/certificate.pem"),
		config.EncryptionCertificateID: "cert-a",
		config.ChatMessageSelect:       "id,body,from,deletedDateTime,chatId,channelIdentity",
	}
	for _, x := range extra {
		for k, v := range x {
			settings[k] = strings.ReplaceAll(v, "GRAPH_VECTORS_PEM", pemText("graph-vectors/certificate-and-key.pem"))
		}
	}
	r.env = newEnv(t, append([]envOption{withSettings(settings)}, opts...)...)
	rx := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if tok := req.URL.Query().Get("validationToken"); tok != "" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			io.WriteString(w, tok)
			return
		}
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.bodies = append(r.bodies, b)
		r.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(rx.Close)
	cert := r.cfg.Teams.Certificate
	if r.cfg.Teams.Previous != nil {
		cert = r.cfg.Teams.Previous // subscriptions made before a rotation, not yet moved
	}
	for _, res := range []string{"chats/" + teamsChat + "/messages", "teams/" + teamsTeam + "/channels/" + teamsChannel + "/messages"} {
		_, err := r.graph.CreateSubscription(r.ctx, graph.Subscription{
			ChangeType: "created,updated,deleted", NotificationURL: rx.URL, LifecycleNotificationURL: rx.URL, Resource: res,
			ExpirationDateTime: time.Now().Add(2 * time.Hour), ClientState: testClientState,
			IncludeResourceData: true, EncryptionCertificate: cert.PublicBase64(), EncryptionCertificateID: cert.ID(),
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// deliveries sends what the double queued and returns the bodies received so far once there are n.
func (r *teamsRig) deliveries(n int) [][]byte {
	r.t.Helper()
	r.fg.Flush()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		got := append([][]byte(nil), r.bodies...)
		r.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%d bodies, want %d", len(got), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// queued is the work-queue message the webhook makes of a body: its notifications as received, byte for
// byte, and its validation tokens.
func queued(t *testing.T, body []byte) *message.Message {
	t.Helper()
	var b struct {
		Value            []graph.ChangeNotification `json:"value"`
		ValidationTokens []string                   `json:"validationTokens"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatal(err)
	}
	return &message.Message{V: message.Version, Kind: message.KindNotifications, Notifications: b.Value, ValidationTokens: b.ValidationTokens, FirstSeen: firstSeen}
}

// TestTeamsNotificationsBecomeEventsWithoutGraph: created, updated and deleted chat and channel messages
// become chatMessages events from the notifications alone.
func TestTeamsNotificationsBecomeEventsWithoutGraph(t *testing.T) {
	r := newTeamsRig(t)
	posted, err := r.fg.PostTeamsMessage(fakegraph.ChatMessage{ChatID: teamsChat, FromDisplayName: "Ada", Content: "<p>hello</p>"})
	if err != nil {
		t.Fatal(err)
	}
	var events []message.Event
	open := func(n int) {
		for _, body := range r.deliveries(n)[n-1:] {
			events = append(events, r.invokeMessage(queued(t, body)).events...)
		}
	}
	open(1)
	where := fakegraph.ChatMessage{ChatID: teamsChat, ID: posted.ID, Content: "<p>hello, edited</p>"}
	if err := r.fg.EditTeamsMessage(where); err != nil {
		t.Fatal(err)
	}
	open(2)
	if err := r.fg.DeleteTeamsMessage(where); err != nil {
		t.Fatal(err)
	}
	open(3)
	if _, err := r.fg.PostTeamsMessage(fakegraph.ChatMessage{TeamID: teamsTeam, ChannelID: teamsChannel, Content: "in a channel"}); err != nil {
		t.Fatal(err)
	}
	open(4)

	if len(events) != 4 {
		t.Fatalf("%d events, want 4: %+v", len(events), events)
	}
	for i, want := range []string{"created", "updated", "deleted", "created"} {
		e := events[i]
		if string(e.ChangeType) != want || e.Resource != "chatMessages" || e.Field != "chatMessage" {
			t.Errorf("event %d: %s %s %s", i, e.ChangeType, e.Resource, e.Field)
		}
	}
	body := func(e message.Event) string {
		b, _ := e.Object["body"].(map[string]any)
		s, _ := b["content"].(string)
		return s
	}
	if e := events[0]; e.ResourceID != posted.ID || e.Context["chatId"] != teamsChat || body(e) != "<p>hello</p>" {
		t.Errorf("created: %+v", e)
	}
	if _, ok := events[0].Object["importance"]; ok {
		t.Error("a property outside GRAPH_CHATMESSAGE_SELECT reached the event")
	}
	if body(events[1]) != "<p>hello, edited</p>" {
		t.Errorf("updated: %+v", events[1].Object)
	}
	if events[2].Object["deletedDateTime"] == nil {
		t.Errorf("deleted: %+v", events[2].Object)
	}
	if e := events[3]; e.Context["teamId"] != teamsTeam || e.Context["channelId"] != teamsChannel || e.Context["chatId"] != "" {
		t.Errorf("channel message context: %v", e.Context)
	}
	// Not one Graph request for any of them: only the two subscriptions were created.
	for _, req := range r.fg.Requests() {
		if strings.HasPrefix(req.Path, "/v1.0/") && (req.Method != "POST" || req.Path != "/v1.0/subscriptions") {
			t.Errorf("a Graph request: %s %s", req.Method, req.Path)
		}
	}
	if len(r.enqueuedTo(r.poison)) != 0 {
		t.Error("something went to the poison queue")
	}
}

// TestTeamsRefusals: a tampered or unverifiable notification goes to the poison queue as received, with the
// reason in the log, and never becomes an event nor puts its content in a log.
func TestTeamsRefusals(t *testing.T) {
	tests := []struct {
		name   string
		tamper fakegraph.TeamsTamper
		reason string
	}{
		{"tampered signature", fakegraph.TeamsTamper{BadSignature: true}, "rich notification refused: signature"},
		{"bad padding", fakegraph.TeamsTamper{BadPadding: true}, "rich notification refused: padding"},
		{"unknown certificate", fakegraph.TeamsTamper{UnknownCertificateID: true}, "rich notification refused: unknown-certificate"},
		{"missing tokens", fakegraph.TeamsTamper{NoValidationTokens: true}, "validation tokens (missing)"},
		{"forged token", fakegraph.TeamsTamper{Token: &fakegraph.ValidationTokenOptions{BadSignature: true}}, "validation tokens (signature)"},
		{"token for another app", fakegraph.TeamsTamper{Token: &fakegraph.ValidationTokenOptions{Audience: "99999999-2222-3333-4444-555555555555"}}, "validation tokens (aud)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTeamsRig(t)
			tt.tamper.Count = 1
			r.fg.TamperTeams(tt.tamper)
			const secret = "the quarterly numbers are in"
			if _, err := r.fg.PostTeamsMessage(fakegraph.ChatMessage{ChatID: teamsChat, Content: secret}); err != nil {
				t.Fatal(err)
			}
			body := r.deliveries(1)[0]
			m := queued(t, body)
			res := r.invokeMessage(m)
			if len(res.events) != 0 {
				t.Fatalf("a refused notification became an event: %+v", res.events)
			}
			poisoned := r.enqueuedTo(r.poison)
			if len(poisoned) != 1 {
				t.Fatalf("%d poison messages, want 1", len(poisoned))
			}
			pm, err := message.Decode(poisoned[0].text)
			if err != nil {
				t.Fatal(err)
			}
			// Kept as received: the encryptedContent in the poison queue is the one Graph sent, byte for byte.
			var sent struct {
				Value []json.RawMessage `json:"value"`
			}
			json.Unmarshal(body, &sent)
			got, _ := json.Marshal(pm.Notifications[0])
			if !bytes.Equal(got, sent.Value[0]) {
				t.Errorf("the poisoned notification differs from the one received:\n%s\n%s", got, sent.Value[0])
			}
			logs := r.logs.String() + strings.Join(res.logs, "\n")
			if !strings.Contains(logs, tt.reason) {
				t.Errorf("the log does not say %q:\n%s", tt.reason, logs)
			}
			if strings.Contains(logs, "quarterly") {
				t.Error("the message's content reached a log")
			}
		})
	}
}

// TestTeamsContentMustBeTheNamedMessage: signed content moved into a notification naming another message
// is refused, not reported as that message.
func TestTeamsContentMustBeTheNamedMessage(t *testing.T) {
	r := newTeamsRig(t)
	a, _ := r.fg.PostTeamsMessage(fakegraph.ChatMessage{ChatID: teamsChat, Content: "first"})
	b, _ := r.fg.PostTeamsMessage(fakegraph.ChatMessage{ChatID: teamsChat, Content: "second"})
	bodies := r.deliveries(1)
	var all []graph.ChangeNotification
	var tokens []string
	for _, body := range bodies {
		m := queued(t, body)
		all = append(all, m.Notifications...)
		tokens = m.ValidationTokens
	}
	for len(all) < 2 {
		bodies = r.deliveries(len(bodies) + 1)
		m := queued(t, bodies[len(bodies)-1])
		all = append(all, m.Notifications...)
	}
	var noteA, noteB graph.ChangeNotification
	for _, n := range all {
		switch n.ResourceID() {
		case a.ID:
			noteA = n
		case b.ID:
			noteB = n
		}
	}
	// b's notification with a's encryptedContent.
	var rawA, rawB map[string]json.RawMessage
	json.Unmarshal(noteA.Raw, &rawA)
	json.Unmarshal(noteB.Raw, &rawB)
	rawB["encryptedContent"] = rawA["encryptedContent"]
	forged, _ := json.Marshal(rawB)
	var n graph.ChangeNotification
	if err := json.Unmarshal(forged, &n); err != nil {
		t.Fatal(err)
	}
	res := r.invokeMessage(&message.Message{V: message.Version, Kind: message.KindNotifications, Notifications: []graph.ChangeNotification{n}, ValidationTokens: tokens, FirstSeen: firstSeen})
	if len(res.events) != 0 || len(r.enqueuedTo(r.poison)) != 1 || !strings.Contains(r.logs.String(), "another message") {
		t.Errorf("events %+v, poison %d, log:\n%s", res.events, len(r.enqueuedTo(r.poison)), r.logs.String())
	}
}

// TestTeamsRotationOpensUnderThePreviousCertificate: with a new certificate current and the old one
// previous, notifications Graph still encrypts for the old one open.
func TestTeamsRotationOpensUnderThePreviousCertificate(t *testing.T) {
	r := newTeamsRig(t, map[string]string{
		config.EncryptionCertificate:           "GRAPH_VECTORS_PEM",
		config.EncryptionCertificateID:         "cert-b",
		config.EncryptionCertificatePrevious:   r0PEM(t),
		config.EncryptionCertificatePreviousID: "cert-a",
	})
	if _, err := r.fg.PostTeamsMessage(fakegraph.ChatMessage{ChatID: teamsChat, Content: "under the old certificate"}); err != nil {
		t.Fatal(err)
	}
	m := queued(t, r.deliveries(1)[0])
	if !strings.Contains(string(m.Notifications[0].Raw), `"encryptionCertificateId":"cert-a"`) {
		t.Fatalf("the double did not encrypt for the previous certificate: %s", m.Notifications[0].Raw)
	}
	if evs := r.invokeMessage(m).events; len(evs) != 1 || evs[0].ResourceID == "" {
		t.Fatalf("events %+v", evs)
	}
}

func r0PEM(t *testing.T) string {
	t.Helper()
	k, err1 := os.ReadFile("../richnotify/testdata/openssl/key-pkcs8.pem")
	c, err2 := os.ReadFile("../richnotify/testdata/openssl/certificate.pem")
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	return string(k) + string(c)
}

// BenchmarkTeamsWorker1000 is the worker on 1,000 rich notifications (one chat, each a new message), packed
// into work-queue messages as the webhook packs them: validation tokens judged, content decrypted, events
// built, and not one Graph request. The events go to an in-memory writer: this is the worker's own cost.
func BenchmarkTeamsWorker1000(b *testing.B) {
	r := newTeamsRig(b)
	const n = 1000
	for i := range n {
		if _, err := r.fg.PostTeamsMessage(fakegraph.ChatMessage{ChatID: teamsChat, FromDisplayName: "Ada", Content: "<p>message " + strconv.Itoa(i) + " of a benchmark, about as long as a chat line</p>"}); err != nil {
			b.Fatal(err)
		}
	}
	var all []graph.ChangeNotification
	var tokens []string
	deadline := time.Now().Add(60 * time.Second)
	for len(all) < n {
		all, tokens = nil, nil
		for _, body := range r.deliveries(1) {
			var env struct {
				Value            []graph.ChangeNotification `json:"value"`
				ValidationTokens []string                   `json:"validationTokens"`
			}
			if err := json.Unmarshal(body, &env); err != nil {
				b.Fatal(err)
			}
			all = append(all, env.Value...)
			tokens = env.ValidationTokens
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d notifications delivered, want %d", len(all), n)
		}
	}
	msgs, tooBig, err := message.Split(message.Message{V: message.Version, Kind: message.KindNotifications, ValidationTokens: tokens, FirstSeen: firstSeen}, all)
	if err != nil || len(tooBig) != 0 {
		b.Fatal(err, len(tooBig))
	}
	reqs := make([][]byte, len(msgs))
	for i := range msgs {
		reqs[i] = hostText(b, &msgs[i])
	}
	graphBefore := len(r.fg.Requests())
	b.ResetTimer()
	for b.Loop() {
		events := 0
		for _, text := range reqs {
			events += len(r.mustInvoke(hostRequest(b, text, 1)).events)
		}
		if events != n {
			b.Fatalf("%d events, want %d", events, n)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(len(msgs)), "messages")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n/1e3, "µs/notification")
	var graphReqs int
	for _, req := range r.fg.Requests()[graphBefore:] {
		if strings.HasPrefix(req.Path, "/v1.0/") {
			graphReqs++
		}
	}
	b.ReportMetric(float64(graphReqs)/float64(b.N*n), "graph-requests/notification")
}

// TestTeamsDeleteWithoutContent: a deleted notification that carries no encryptedContent (Graph's payload
// for deletes is undocumented) is still reported, with no properties; any other change without content is
// refused.
func TestTeamsDeleteWithoutContent(t *testing.T) {
	r := newTeamsRig(t)
	r.fg.SetTeamsDeletedWithoutContent(true)
	m, err := r.fg.PostTeamsMessage(fakegraph.ChatMessage{ChatID: teamsChat, Content: "soon gone"})
	if err != nil {
		t.Fatal(err)
	}
	r.deliveries(1)
	if err := r.fg.DeleteTeamsMessage(fakegraph.ChatMessage{ChatID: teamsChat, ID: m.ID}); err != nil {
		t.Fatal(err)
	}
	del := queued(t, r.deliveries(2)[1])
	if strings.Contains(string(del.Notifications[0].Raw), "encryptedContent") {
		t.Fatalf("the double sent content: %s", del.Notifications[0].Raw)
	}
	evs := r.invokeMessage(del).events
	if len(evs) != 1 || evs[0].ChangeType != graph.Deleted || evs[0].ResourceID != m.ID || evs[0].Object != nil || evs[0].Context["chatId"] != teamsChat {
		t.Fatalf("events %+v", evs)
	}
	// The same notification claiming an update is refused: an update must bring the message.
	var raw map[string]any
	json.Unmarshal(del.Notifications[0].Raw, &raw)
	raw["changeType"] = "updated"
	b, _ := json.Marshal(raw)
	var n graph.ChangeNotification
	if err := json.Unmarshal(b, &n); err != nil {
		t.Fatal(err)
	}
	del.Notifications = []graph.ChangeNotification{n}
	if evs := r.invokeMessage(del).events; len(evs) != 0 || len(r.enqueuedTo(r.poison)) != 1 || !strings.Contains(r.logs.String(), "no encryptedContent") {
		t.Errorf("an update without content: events %+v, poison %d", evs, len(r.enqueuedTo(r.poison)))
	}
}

// teamsTimeRig is a Teams rig whose Graph double dates its messages by a clock ten minutes behind the
// worker's, moved a second at each step: content times are distinct and all before the worker's clock,
// so they are what dates the states (the worker never dates a state after its own clock). Its events go
// through the real writer, with an in-memory state table.
type teamsTimeRig struct {
	*teamsRig
	step  atomic.Int64
	q     *storagequeue.Memory
	state *objectstate.Store
}

func newTeamsTimeRig(t *testing.T) *teamsTimeRig {
	tr := &teamsTimeRig{q: storagequeue.NewMemory(), state: objectstate.NewMemoryTable().Store(objectstate.Options{})}
	clock := func() time.Time {
		return time.Now().Add(-10*time.Minute + time.Duration(tr.step.Load())*time.Second)
	}
	tr.teamsRig = newTeamsRigWith(t, []envOption{withGraph(func(o *fakegraph.Options) { o.Clock = clock })})
	tr.f.d.Events = events.NewWriter(func() (events.Queue, error) { return tr.q, nil }, func() (events.State, error) { return tr.state, nil })
	return tr
}

// written takes the events written to graphchanges so far.
func (tr *teamsTimeRig) written() []message.Event {
	var out []message.Event
	for _, m := range tr.q.Take(message.ChangesQueue) {
		var e message.Event
		if err := json.Unmarshal(m.Text, &e); err != nil {
			tr.t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// next is the body of the n-th delivery (from 1), once the double's clock has moved on.
func (tr *teamsTimeRig) next(n int, change func() error) *message.Message {
	tr.t.Helper()
	tr.step.Add(1)
	if err := change(); err != nil {
		tr.t.Fatal(err)
	}
	return queued(tr.t.(*testing.T), tr.deliveries(n)[n-1])
}

func bodyOf(e message.Event) string {
	b, _ := e.Object["body"].(map[string]any)
	s, _ := b["content"].(string)
	return s
}

// TestTeamsOutOfOrderEditsKeepTheLatest: two edits of one message processed in the wrong order (the later
// first, as after a re-queue) leave the later edit as the last event and the stored state; the older one
// is suppressed, not emitted as the newest.
func TestTeamsOutOfOrderEditsKeepTheLatest(t *testing.T) {
	tr := newTeamsTimeRig(t)
	var posted fakegraph.ChatMessage
	created := tr.next(1, func() (err error) {
		posted, err = tr.fg.PostTeamsMessage(fakegraph.ChatMessage{ChatID: teamsChat, Content: "v0"})
		return err
	})
	edit := func(content string) func() error {
		return func() error {
			return tr.fg.EditTeamsMessage(fakegraph.ChatMessage{ChatID: teamsChat, ID: posted.ID, Content: content})
		}
	}
	first := tr.next(2, edit("v1"))
	second := tr.next(3, edit("v2"))

	tr.invokeMessage(created)
	tr.invokeMessage(second)
	tr.invokeMessage(first)

	evs := tr.written()
	if len(evs) != 2 {
		t.Fatalf("%d events, want 2 (created v0, updated v2; v1 suppressed): %+v", len(evs), evs)
	}
	if last := evs[len(evs)-1]; bodyOf(last) != "v2" || last.ChangeType != graph.Updated {
		t.Errorf("last event: %s %q, want updated v2", last.ChangeType, bodyOf(last))
	}
	rec, err := tr.state.Get(tr.ctx, "chatMessages", posted.ID)
	if err != nil || rec == nil {
		t.Fatalf("stored state: %v %v", rec, err)
	}
	var st map[string]any
	if err := json.Unmarshal(rec.State, &st); err != nil {
		t.Fatal(err)
	}
	if b, _ := st["body"].(map[string]any); b["content"] != "v2" {
		t.Errorf("stored state %s, want the v2 edit", rec.State)
	}
	if !rec.ReadAt.Before(time.Now()) || rec.ReadAt.After(time.Now().Add(-9*time.Minute)) {
		t.Errorf("stored readAt %v: want the content's lastModifiedDateTime (the double's clock, minutes behind), not the processing time", rec.ReadAt)
	}
}

// TestTeamsOneMessageLatestContentWins: several notifications about one chat message in one queue
// message resolve to the one whose content is latest, change type and content together, whatever their
// order in the message.
func TestTeamsOneMessageLatestContentWins(t *testing.T) {
	tr := newTeamsTimeRig(t)
	var posted fakegraph.ChatMessage
	tr.next(1, func() (err error) {
		posted, err = tr.fg.PostTeamsMessage(fakegraph.ChatMessage{ChatID: teamsChat, Content: "v0"})
		return err
	})
	where := fakegraph.ChatMessage{ChatID: teamsChat, ID: posted.ID}
	edit := func(content string) func() error {
		return func() error { w := where; w.Content = content; return tr.fg.EditTeamsMessage(w) }
	}
	v1 := tr.next(2, edit("v1"))
	v2 := tr.next(3, edit("v2"))
	del := tr.next(4, func() error { return tr.fg.DeleteTeamsMessage(where) })
	one := func(ms ...*message.Message) *message.Message {
		out := &message.Message{V: message.Version, Kind: message.KindNotifications, ValidationTokens: ms[0].ValidationTokens, FirstSeen: firstSeen}
		for _, m := range ms {
			out.Notifications = append(out.Notifications, m.Notifications...)
		}
		return out
	}

	// The later edit listed first: the later edit is the event.
	tr.invokeMessage(one(v2, v1))
	evs := tr.written()
	if len(evs) != 1 || evs[0].ChangeType != graph.Updated || bodyOf(evs[0]) != "v2" {
		t.Errorf("two edits: events %+v, want one update with v2", evs)
	}
	// A delete followed by an older update: a delete, with the content of the deleted message (never
	// a delete carrying the update's content).
	tr.invokeMessage(one(del, v1))
	evs = tr.written()
	if len(evs) != 1 || evs[0].ChangeType != graph.Deleted || evs[0].Object["deletedDateTime"] == nil || bodyOf(evs[0]) != "" {
		t.Fatalf("delete then update: events %+v, want one delete with the deleted message's content", evs)
	}
	if len(tr.enqueuedTo(tr.poison)) != 0 {
		t.Error("something went to the poison queue")
	}
}
