package fakegraph

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/richnotify"
)

const (
	testTeam    = "6e1f0001-7c3a-4b2d-9e8f-0a1b2c3d4e5f"
	testChannel = "19:4a95f7d8db4c4e7fae857bcebe0623e6@thread.tacv2"
	testChat    = "19:2da4c29f6d7041eca70b638b43d45437@thread.v2"
)

// teamsCerts are two certificates with their keys, from richnotify's committed test material: the
// double encrypts with the public part, richnotify (written apart from the double) opens with the key.
var teamsCerts = sync.OnceValues(func() ([2]*richnotify.Certificate, error) {
	read := func(p string) string {
		b, err := os.ReadFile("../../richnotify/testdata/" + p)
		if err != nil {
			panic(err)
		}
		return string(b)
	}
	a, err := richnotify.ReadCertificate("cert-a", read("openssl/key-pkcs8.pem")+read("openssl/certificate.pem"))
	if err != nil {
		return [2]*richnotify.Certificate{}, err
	}
	b, err := richnotify.ReadCertificate("cert-b", read("graph-vectors/certificate-and-key.pem"))
	return [2]*richnotify.Certificate{a, b}, err
})

func testTeamsCerts(t *testing.T) (a, b *richnotify.Certificate) {
	t.Helper()
	cs, err := teamsCerts()
	if err != nil {
		t.Fatal(err)
	}
	return cs[0], cs[1]
}

func teamsSubBody(url, resource string, exp time.Time, cert *richnotify.Certificate) map[string]any {
	b := subBody(url, resource, exp)
	b["changeType"] = "created,updated,deleted"
	b["lifecycleNotificationUrl"] = url
	b["includeResourceData"] = true
	b["encryptionCertificate"] = cert.PublicBase64()
	b["encryptionCertificateId"] = cert.ID()
	return b
}

func TestTeamsSubscriptionRules(t *testing.T) {
	clock := newFakeClock()
	s := newTestServer(t, func(o *Options) { o.Clock = clock.Now; o.RejectExpiryBeyondMax = true })
	tok := token(t, s)
	rx := newReceiver(t)
	a, _ := testTeamsCerts(t)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ec"}, NotBefore: clock.Now(), NotAfter: clock.Now().Add(time.Hour)}
	ecDER, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &ecKey.PublicKey, ecKey)

	channel := "teams/" + testTeam + "/channels/" + testChannel + "/messages"
	chat := "chats/" + testChat + "/messages"
	long := clock.Now().Add(MaxTeamsExpiryMinutes * time.Minute)
	tests := []struct {
		name   string
		edit   func(b map[string]any)
		status int
		msg    string
	}{
		{"channel, the longest lifetime", func(b map[string]any) { b["resource"] = channel }, 201, ""},
		{"chat, escaped id", func(b map[string]any) {
			b["resource"] = "chats/19%3A2da4c29f6d7041eca70b638b43d45437%40thread.v2/messages"
		}, 201, ""},
		{"all channel messages, model A", func(b map[string]any) { b["resource"] = "teams/getAllMessages?model=A" }, 201, ""},
		{"all chat messages, model B", func(b map[string]any) { b["resource"] = "/chats/getAllMessages?model=B" }, 201, ""},
		{"beyond 4,320 minutes", func(b map[string]any) {
			b["resource"] = "chats/19:0aa4c29f6d7041eca70b638b43d45437@thread.v2/messages"
			b["expirationDateTime"] = long.Add(time.Minute).Format(time.RFC3339)
		}, 400, "4320 minutes"},
		{"over an hour without a lifecycle URL", func(b map[string]any) {
			b["resource"] = "chats/19:1aa4c29f6d7041eca70b638b43d45437@thread.v2/messages"
			delete(b, "lifecycleNotificationUrl")
			b["expirationDateTime"] = clock.Now().Add(61 * time.Minute).Format(time.RFC3339)
		}, 400, "lifecycleNotificationUrl is a required property"},
		{"an hour without a lifecycle URL", func(b map[string]any) {
			b["resource"] = "chats/19:2aa4c29f6d7041eca70b638b43d45437@thread.v2/messages"
			delete(b, "lifecycleNotificationUrl")
			b["expirationDateTime"] = clock.Now().Add(60 * time.Minute).Format(time.RFC3339)
		}, 201, ""},
		{"without resource data", func(b map[string]any) {
			b["resource"] = "chats/19:3aa4c29f6d7041eca70b638b43d45437@thread.v2/messages"
			b["includeResourceData"] = false
		}, 400, "includeResourceData"},
		{"no certificate", func(b map[string]any) { delete(b, "encryptionCertificate") }, 400, "encryptionCertificate"},
		{"no certificate id", func(b map[string]any) { delete(b, "encryptionCertificateId") }, 400, "encryptionCertificateId"},
		{"certificate not base64", func(b map[string]any) { b["encryptionCertificate"] = "%%%" }, 400, "X.509"},
		{"a private key instead of a certificate", func(b map[string]any) {
			b["encryptionCertificate"] = base64.StdEncoding.EncodeToString([]byte("-----BEGIN PRIVATE KEY-----"))
		}, 400, "X.509"},
		{"an ECDSA certificate", func(b map[string]any) { b["encryptionCertificate"] = base64.StdEncoding.EncodeToString(ecDER) }, 400, "RSA"},
		{"certificate id too long", func(b map[string]any) { b["encryptionCertificateId"] = strings.Repeat("x", 129) }, 400, "128"},
		{"model C", func(b map[string]any) { b["resource"] = "teams/getAllMessages?model=C" }, 400, "model must be A or B"},
		{"model on one chat", func(b map[string]any) { b["resource"] = chat + "?model=A" }, 400, "only to teams/getAllMessages"},
		{"$select", func(b map[string]any) { b["resource"] = channel + "?$select=body" }, 400, "not supported"},
		{"a team id that is not a GUID", func(b map[string]any) { b["resource"] = "teams/sales/channels/" + testChannel + "/messages" }, 400, "not supported by the double"},
		{"a channel id of the wrong shape", func(b map[string]any) { b["resource"] = "teams/" + testTeam + "/channels/general/messages" }, 400, "not supported by the double"},
		{"changeType renamed", func(b map[string]any) { b["changeType"] = "renamed" }, 400, "changeType"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := teamsSubBody(rx.URL, chat, long, a)
			tt.edit(b)
			r := createSub(t, s, tok, b)
			if r.Status != tt.status {
				t.Fatalf("%d %s, want %d", r.Status, r.Body, tt.status)
			}
			if tt.status != 201 {
				if _, msg := r.ErrorCodeMsg(t); !strings.Contains(msg, tt.msg) {
					t.Errorf("message %q, want …%s…", msg, tt.msg)
				}
				return
			}
			got := r.JSON(t)
			if got["includeResourceData"] != true || got["encryptionCertificateId"] != a.ID() || got["encryptionCertificate"] != a.PublicBase64() {
				t.Errorf("the subscription does not echo its certificate: %v", got)
			}
		})
	}

	// One subscription per app per chat: another change-type set on the same chat is over the quota.
	b := teamsSubBody(rx.URL, chat, long, a)
	b["changeType"] = "created"
	if r := createSub(t, s, tok, b); r.Status != 403 {
		t.Errorf("a second subscription to one chat: %d %s", r.Status, r.Body)
	}
}

func TestTeamsRoles(t *testing.T) {
	clock := newFakeClock()
	s := newTestServer(t, func(o *Options) { o.Clock = clock.Now; o.AppRoles = []string{"ChannelMessage.Read.All"} })
	tok := token(t, s)
	rx := newReceiver(t)
	a, _ := testTeamsCerts(t)
	if r := createSub(t, s, tok, teamsSubBody(rx.URL, "teams/getAllMessages", clock.Now().Add(time.Hour), a)); r.Status != 201 {
		t.Errorf("channel messages with ChannelMessage.Read.All: %d %s", r.Status, r.Body)
	}
	if r := createSub(t, s, tok, teamsSubBody(rx.URL, "chats/getAllMessages", clock.Now().Add(time.Hour), a)); r.Status != 403 {
		t.Errorf("chat messages without Chat.Read.All: %d %s", r.Status, r.Body)
	}
}

// teamsStack is a double with a receiver subscribed to one channel, one chat and every channel message.
type teamsStack struct {
	s       *Server
	clock   *fakeClock
	tok     string
	rx      *receiver
	subs    map[string]string // resource → subscription id
	tokens  *richnotify.TokenValidator
	decrypt *richnotify.Decryptor
}

func newTeamsStack(t *testing.T) *teamsStack {
	t.Helper()
	clock := newFakeClock()
	s := newTestServer(t, func(o *Options) { o.Clock = clock.Now })
	a, b := testTeamsCerts(t)
	d, err := richnotify.NewDecryptor(a, b)
	if err != nil {
		t.Fatal(err)
	}
	st := &teamsStack{s: s, clock: clock, tok: token(t, s), rx: newReceiver(t), subs: map[string]string{}, decrypt: d,
		tokens: &richnotify.TokenValidator{Keys: richnotify.NewTenantJWKS(s.AuthorityHost(), testTenant, s.Client(), clock.Now),
			ClientID: testClient, TenantID: testTenant, AuthorityHost: s.AuthorityHost()}}
	for _, res := range []string{"teams/" + testTeam + "/channels/" + testChannel + "/messages", "chats/" + testChat + "/messages", "teams/getAllMessages"} {
		r := createSub(t, s, st.tok, teamsSubBody(st.rx.URL, res, clock.Now().Add(3*24*time.Hour), a))
		if r.Status != 201 {
			t.Fatalf("subscribe %s: %d %s", res, r.Status, r.Body)
		}
		st.subs[res] = r.JSON(t)["id"].(string)
	}
	return st
}

type teamsBody struct {
	ValidationTokens []string `json:"validationTokens"`
	Value            []struct {
		SubscriptionID   string                       `json:"subscriptionId"`
		ChangeType       string                       `json:"changeType"`
		Resource         string                       `json:"resource"`
		ClientState      string                       `json:"clientState"`
		TenantID         string                       `json:"tenantId"`
		ResourceData     map[string]any               `json:"resourceData"`
		EncryptedContent *richnotify.EncryptedContent `json:"encryptedContent"`
	} `json:"value"`
}

// flushBodies sends what is queued and waits for n bodies in all.
func (st *teamsStack) flushBodies(t *testing.T, n int) []teamsBody {
	t.Helper()
	st.s.Flush()
	deadline := time.Now().Add(10 * time.Second)
	for len(st.rx.Bodies()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d bodies, want %d", len(st.rx.Bodies()), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	var out []teamsBody
	for _, raw := range st.rx.Bodies() {
		var b teamsBody
		if err := json.Unmarshal(raw, &b); err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

var (
	channelResourceRE = regexp.MustCompile(`^teams\('[0-9a-f-]{36}'\)/channels\('19:[^']+@thread\.tacv2'\)/messages\('[0-9]+'\)$`)
	chatResourceRE    = regexp.MustCompile(`^chats\('19:[^']+@thread\.v2'\)/messages\('[0-9]+'\)$`)
)

// TestTeamsNotificationsAreGraphs posts, edits and deletes messages and opens every notification with
// richnotify: tokens valid against the double's published keys, content decrypting to the message.
func TestTeamsNotificationsAreGraphs(t *testing.T) {
	st := newTeamsStack(t)
	posted, err := st.s.PostTeamsMessage(ChatMessage{TeamID: strings.ToUpper(testTeam), ChannelID: testChannel, FromDisplayName: "Ada", Content: "<p>first</p>"})
	if err != nil {
		t.Fatal(err)
	}
	if !ValidChatMessageID(posted.ID) || posted.TeamID != testTeam {
		t.Fatalf("posted %+v", posted)
	}
	if _, err := st.s.PostTeamsMessage(ChatMessage{ChatID: testChat, Content: "in a chat", ContentType: "text"}); err != nil {
		t.Fatal(err)
	}
	// A channel no subscription names: heard only by teams/getAllMessages.
	if _, err := st.s.PostTeamsMessage(ChatMessage{TeamID: testTeam, ChannelID: "19:other@thread.tacv2", Content: "elsewhere"}); err != nil {
		t.Fatal(err)
	}
	if err := st.s.EditTeamsMessage(ChatMessage{TeamID: testTeam, ChannelID: testChannel, ID: posted.ID, Content: "<p>edited</p>"}); err != nil {
		t.Fatal(err)
	}
	if err := st.s.DeleteTeamsMessage(ChatMessage{TeamID: testTeam, ChannelID: testChannel, ID: posted.ID}); err != nil {
		t.Fatal(err)
	}
	if err := st.s.EditTeamsMessage(ChatMessage{TeamID: testTeam, ChannelID: testChannel, ID: posted.ID, Content: "x"}); !errors.Is(err, ErrChatMessageNotFound) {
		t.Errorf("editing a deleted message: %v", err)
	}
	// channel sub: created, updated, deleted; chat sub: created; getAllMessages: 2 created, updated, deleted.
	const want = 3 + 1 + 4
	st.s.Flush()
	deadline := time.Now().Add(10 * time.Second)
	for len(st.rx.notifications(t)) < want {
		if time.Now().After(deadline) {
			t.Fatalf("%d notifications, want %d", len(st.rx.notifications(t)), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	var got []string
	for _, body := range st.flushBodies(t, 1) {
		if err := st.tokens.ValidateAll(ctxT(t), body.ValidationTokens, st.clock.Now()); err != nil {
			t.Fatalf("the body's validation tokens: %v", err)
		}
		for _, n := range body.Value {
			if n.EncryptedContent == nil {
				t.Fatalf("a notification without encryptedContent: %+v", n)
			}
			plain, err := st.decrypt.Decrypt(*n.EncryptedContent)
			if err != nil {
				t.Fatalf("%s %s: %v", n.ChangeType, n.Resource, err)
			}
			var msg struct {
				ID              string `json:"id"`
				DeletedDateTime *string
				ChatID          *string `json:"chatId"`
				Body            struct{ Content, ContentType string }
				From            struct{ User struct{ DisplayName string } }
				ChannelIdentity *struct{ TeamID, ChannelID string }
			}
			if err := json.Unmarshal(plain, &msg); err != nil {
				t.Fatal(err)
			}
			if n.ResourceData["id"] != msg.ID || n.ResourceData["@odata.id"] != n.Resource || n.ResourceData["@odata.type"] != "#Microsoft.Graph.chatMessage" {
				t.Errorf("resourceData %v for message %s", n.ResourceData, msg.ID)
			}
			if n.TenantID != testTenant || n.ClientState != "client-state-0123456789" {
				t.Errorf("envelope: %+v", n)
			}
			switch {
			case msg.ChatID != nil:
				if !chatResourceRE.MatchString(n.Resource) || msg.Body.Content != "in a chat" {
					t.Errorf("chat notification %s: %s", n.Resource, plain)
				}
			case channelResourceRE.MatchString(n.Resource):
				if msg.ChannelIdentity == nil || msg.ChannelIdentity.TeamID != testTeam {
					t.Errorf("channel identity: %s", plain)
				}
			default:
				t.Errorf("resource %q has neither shape", n.Resource)
			}
			if n.ChangeType == "deleted" && (msg.DeletedDateTime == nil || msg.Body.Content != "") {
				t.Errorf("a deleted message still has its body: %s", plain)
			}
			if n.ChangeType == "updated" && msg.Body.Content != "<p>edited</p>" {
				t.Errorf("updated: %s", plain)
			}
			got = append(got, n.SubscriptionID+" "+n.ChangeType)
		}
	}
	if len(got) != want {
		t.Fatalf("%d notifications, want %d: %v", len(got), want, got)
	}
	per := map[string]int{}
	for _, g := range got {
		per[strings.Fields(g)[0]]++
	}
	for res, n := range map[string]int{"teams/" + testTeam + "/channels/" + testChannel + "/messages": 3, "chats/" + testChat + "/messages": 1, "teams/getAllMessages": 4} {
		if per[st.subs[res]] != n {
			t.Errorf("%s heard %d notifications, want %d", res, per[st.subs[res]], n)
		}
	}
	// No Graph read was needed, and none was made.
	if n := st.s.Count("GET", "/v1.0/teams"); n != 0 {
		t.Errorf("%d reads of /teams", n)
	}
}

func TestTeamsCertificateRotationByPatch(t *testing.T) {
	st := newTeamsStack(t)
	_, b := testTeamsCerts(t)
	id := st.subs["chats/"+testChat+"/messages"]
	if r := call(t, st.s, st.tok, "PATCH", "/v1.0/subscriptions/"+id, map[string]any{"encryptionCertificate": "not a certificate"}); r.Status != 400 {
		t.Fatalf("PATCH with a bad certificate: %d %s", r.Status, r.Body)
	}
	r := call(t, st.s, st.tok, "PATCH", "/v1.0/subscriptions/"+id, map[string]any{
		"encryptionCertificate": b.PublicBase64(), "encryptionCertificateId": b.ID(),
		"expirationDateTime": st.clock.Now().Add(48 * time.Hour).Format(time.RFC3339)})
	if r.Status != 200 || r.JSON(t)["encryptionCertificateId"] != b.ID() {
		t.Fatalf("PATCH: %d %s", r.Status, r.Body)
	}
	for _, sub := range st.s.Subscriptions() {
		if sub.ID == id && (sub.EncryptionCertificateID != b.ID() || sub.EncryptionCertificate != b.PublicBase64()) {
			t.Errorf("stored: %+v", sub)
		}
	}
	if _, err := st.s.PostTeamsMessage(ChatMessage{ChatID: testChat, Content: "after the rotation"}); err != nil {
		t.Fatal(err)
	}
	body := st.flushBodies(t, 1)[0]
	ec := body.Value[0].EncryptedContent
	if ec.EncryptionCertificateID != b.ID() || ec.EncryptionCertificateThumbprint != b.Thumbprint() {
		t.Fatalf("content for %s/%s, want %s/%s", ec.EncryptionCertificateID, ec.EncryptionCertificateThumbprint, b.ID(), b.Thumbprint())
	}
	if _, err := st.decrypt.Decrypt(*ec); err != nil {
		t.Fatal(err)
	}
}

// TestTeamsTamper checks each switch damages exactly what it says, as richnotify judges it.
func TestTeamsTamper(t *testing.T) {
	tests := []struct {
		name   string
		tamper TeamsTamper
		code   richnotify.Code // "" when the content is good
		token  string          // the token check that fails, "" none, "missing" none sent
	}{
		{"bad signature", TeamsTamper{BadSignature: true}, richnotify.CodeSignature, ""},
		{"bad padding", TeamsTamper{BadPadding: true}, richnotify.CodePadding, ""},
		{"unknown certificate id", TeamsTamper{UnknownCertificateID: true}, richnotify.CodeUnknownCertificate, ""},
		{"wrong thumbprint", TeamsTamper{WrongThumbprint: true}, richnotify.CodeThumbprint, ""},
		{"no tokens", TeamsTamper{NoValidationTokens: true}, "", "missing"},
		{"forged token", TeamsTamper{Token: &ValidationTokenOptions{BadSignature: true}}, "", "signature"},
		{"expired token", TeamsTamper{Token: &ValidationTokenOptions{Expired: true}}, "", "exp"},
		{"token for another app", TeamsTamper{Token: &ValidationTokenOptions{Audience: "99999999-2222-3333-4444-555555555555"}}, "", "aud"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newTeamsStack(t)
			tt.tamper.Count = 1
			st.s.TamperTeams(tt.tamper)
			for _, c := range []string{"damaged", "sound"} {
				if _, err := st.s.PostTeamsMessage(ChatMessage{ChatID: testChat, Content: c}); err != nil {
					t.Fatal(err)
				}
				st.s.Flush()
			}
			// Bodies arrive in any order: the damaged one is the one that does not open, or opens to "damaged".
			damagedSeen := 0
			for i, body := range st.flushBodies(t, 2) {
				plain, derr := st.decrypt.Decrypt(*body.Value[0].EncryptedContent)
				damaged := derr != nil || strings.Contains(string(plain), `"damaged"`)
				if damaged {
					damagedSeen++
				}
				terr := st.tokens.ValidateAll(ctxT(t), body.ValidationTokens, st.clock.Now())
				var te *richnotify.TokenError
				switch {
				case damaged && tt.token != "":
					if !errors.As(terr, &te) || te.Check != tt.token {
						t.Errorf("tokens: %v, want check %q", terr, tt.token)
					}
				case terr != nil:
					t.Errorf("body %d tokens: %v", i, terr)
				}
				var de *richnotify.DecryptError
				switch {
				case damaged && tt.code != "":
					if !errors.As(derr, &de) || de.Code != tt.code {
						t.Errorf("content: %v, want %q", derr, tt.code)
					}
				case derr != nil:
					t.Errorf("body %d content: %v", i, derr)
				}
			}
			if damagedSeen != 1 {
				t.Errorf("%d damaged bodies, want 1 (Count 1)", damagedSeen)
			}
		})
	}
}

func TestTeamsControlAPI(t *testing.T) {
	clock := newFakeClock()
	s := newTestServer(t, func(o *Options) { o.Clock = clock.Now; o.ControlAPI = true })
	post := func(path string, body any) graphResp { return call(t, s, "", "POST", "/_control"+path, body) }
	r := post("/teams/messages", map[string]any{"chatId": testChat, "content": "hi"})
	if r.Status != 201 {
		t.Fatalf("post: %d %s", r.Status, r.Body)
	}
	id := r.JSON(t)["id"].(string)
	if r := post("/teams/messages/"+id, map[string]any{"chatId": testChat, "content": "edited"}); r.Status != 204 {
		t.Fatalf("edit: %d %s", r.Status, r.Body)
	}
	if r := post("/teams/messages/"+id+"/delete", map[string]any{"chatId": testChat}); r.Status != 204 {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	if r := post("/teams/messages/"+id+"/delete", map[string]any{"chatId": testChat}); r.Status != 404 {
		t.Fatalf("delete again: %d %s", r.Status, r.Body)
	}
	if r := post("/teams/messages", map[string]any{"chatId": "general", "content": "x"}); r.Status != 400 {
		t.Fatalf("bad chat id: %d %s", r.Status, r.Body)
	}
	if r := post("/teams/tamper", map[string]any{"badSignature": true, "count": 2}); r.Status != 204 {
		t.Fatalf("tamper: %d %s", r.Status, r.Body)
	}
	var msgs []ChatMessage
	if err := json.Unmarshal(call(t, s, "", "GET", "/_control/teams/messages", nil).Body, &msgs); err != nil || len(msgs) != 1 || msgs[0].DeletedDateTime.IsZero() {
		t.Fatalf("list: %v %+v", err, msgs)
	}
	s.mu.Lock()
	tamper := s.teamsLocked().tamper
	s.mu.Unlock()
	if !tamper.BadSignature || tamper.Count != 2 {
		t.Errorf("tamper %+v", tamper)
	}
	s.ClearFaults()
	s.mu.Lock()
	tamper = s.teamsLocked().tamper
	s.mu.Unlock()
	if tamper.BadSignature {
		t.Error("ClearFaults left the tamper switch on")
	}
}
