package fakehost_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/fakehost"
)

type echoReply struct {
	Invocation struct {
		Data struct {
			Req struct {
				URL        string              `json:"Url"`
				Method     string              `json:"Method"`
				Query      map[string]string   `json:"Query"`
				Headers    map[string][]string `json:"Headers"`
				Params     map[string]any      `json:"Params"`
				Identities []struct {
					AuthenticationType *string
					IsAuthenticated    bool
					Claims             []struct{ Type, Value string }
				} `json:"Identities"`
				Body *string `json:"Body"`
			} `json:"req"`
		} `json:"Data"`
		Metadata map[string]json.RawMessage `json:"Metadata"`
	} `json:"invocation"`
	Headers http.Header       `json:"headers"`
	PID     int               `json:"pid"`
	Env     map[string]string `json:"env"`
	Cwd     string            `json:"cwd"`
}

func TestHTTPFront(t *testing.T) {
	root := newApp(t, "00:01:00", "echo", "plain")
	start := time.Now()
	h, log := startHost(t, fakehost.Options{AppRoot: root, Settings: map[string]string{
		"MY_SETTING": "from settings", "ECHO_STARTUP_DELAY_MS": "300",
	}})
	if time.Since(start) < 300*time.Millisecond || !h.Ready() {
		t.Fatalf("Start returned before the handler listened")
	}
	if !strings.Contains(log.String(), "[handler] echohandler: listening") || !strings.Contains(log.String(), "[handler warn] echohandler: warning") {
		t.Errorf("handler output not relayed with prefixes:\n%s", log)
	}
	echoURL := h.URL() + "/api/echo"
	if got := h.FunctionURL("echo"); got != echoURL {
		t.Errorf("FunctionURL = %q, want %q", got, echoURL)
	}

	// Keys.
	if resp, _ := get(t, "POST", echoURL, nil, "{}"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no key: %d, want 401", resp.StatusCode)
	}
	if resp, _ := get(t, "POST", echoURL+"?code=wrong", nil, "{}"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong key: %d, want 401", resp.StatusCode)
	}
	if resp, _ := get(t, "PUT", echoURL+"?code=test-function-key", nil, "{}"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("method not allowed: %d, want 404 (ASP.NET routing)", resp.StatusCode)
	}
	if resp, _ := get(t, "GET", h.URL()+"/api/nothing", nil, ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown route: %d, want 404", resp.StatusCode)
	}
	if n := len(h.Invocations()); n != 0 {
		t.Fatalf("%d invocations before an authorised call", n)
	}

	// A Graph validation request, with a JSON body and repeated query keys and headers.
	token := "Validation: Testing client+application reachability 100% for subscription Request-Id: 6a1f"
	rawQuery := "code=test-function-key&validationToken=" + url.QueryEscape(token) + "&x=1&x=2"
	body := `{"id":1005,"name":"a b","nested":{"k":1},"ok":true}`
	resp, raw := get(t, "POST", echoURL+"?"+rawQuery, http.Header{
		"Content-Type": {"application/json"}, "X-Multi": {"a", "b"},
	}, body)
	if resp.StatusCode != 200 || resp.Header.Get("X-Echo") != "yes" || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("authorised call: %d %v %s", resp.StatusCode, resp.Header, raw)
	}
	var er echoReply
	if err := json.Unmarshal(raw, &er); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	req := er.Invocation.Data.Req
	if want := echoURL + "?" + rawQuery; req.URL != want {
		t.Errorf("Url = %q, want %q", req.URL, want)
	}
	if req.Method != "POST" {
		t.Errorf("Method = %q", req.Method)
	}
	if req.Query["validationToken"] != token {
		t.Errorf("Query.validationToken = %q, want %q (decoded once)", req.Query["validationToken"], token)
	}
	if req.Query["x"] != "1,2" || req.Query["code"] != "test-function-key" {
		t.Errorf("Query = %v", req.Query)
	}
	if got := req.Headers["X-Multi"]; len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Errorf("Headers.X-Multi = %q", got)
	}
	if got := req.Headers["Content-Type"]; len(got) != 1 || got[0] != "application/json" {
		t.Errorf("Headers.Content-Type = %q", got)
	}
	if len(req.Headers["Host"]) != 1 {
		t.Errorf("Headers.Host = %q", req.Headers["Host"])
	}
	if req.Params == nil || len(req.Params) != 0 {
		t.Errorf("Params = %v, want {}", req.Params)
	}
	if len(req.Identities) != 1 || req.Identities[0].AuthenticationType == nil || *req.Identities[0].AuthenticationType != "WebJobsAuthLevel" ||
		!req.Identities[0].IsAuthenticated || len(req.Identities[0].Claims) != 2 || req.Identities[0].Claims[0].Value != "Function" {
		t.Errorf("Identities = %+v", req.Identities)
	}
	if req.Body == nil || *req.Body != body {
		t.Errorf("Body = %v, want the raw text", req.Body)
	}
	meta := er.Invocation.Metadata
	wantMeta := map[string]string{
		"validationToken": `"` + strings.ReplaceAll(token, `"`, `\"`) + `"`,
		"x":               `"1,2"`,
		"id":              `"1005"`,
		"name":            `"a b"`,
		"ok":              `"True"`,
	}
	for k, want := range wantMeta {
		var got string
		if err := json.Unmarshal(meta[k], &got); err != nil || got != want {
			t.Errorf("Metadata.%s = %s, want the string %q", k, meta[k], want)
		}
	}
	for _, k := range []string{"code", "nested", "req"} {
		if _, ok := meta[k]; ok {
			t.Errorf("Metadata has %q", k)
		}
	}
	var mq map[string]string
	var mh map[string]string
	json.Unmarshal(meta["Query"], &mq)
	json.Unmarshal(meta["Headers"], &mh)
	if mq["x"] != "1,2" || mh["X-Multi"] != "a,b" {
		t.Errorf("Metadata.Query = %v, Metadata.Headers = %v", mq, mh)
	}
	var sys struct{ MethodName, UtcNow, RandGuid string }
	json.Unmarshal(meta["sys"], &sys)
	if sys.MethodName != "echo" || sys.UtcNow == "" || sys.RandGuid == "" {
		t.Errorf("Metadata.sys = %s", meta["sys"])
	}

	// What the handler saw on the wire.
	guid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	if id := er.Headers.Get("X-Azure-Functions-InvocationId"); !guid.MatchString(id) {
		t.Errorf("X-Azure-Functions-InvocationId = %q", id)
	}
	if er.Headers.Get("X-Azure-Functions-HostVersion") != fakehost.HostVersion ||
		er.Headers.Get("User-Agent") != "Azure-Functions-Host/"+fakehost.HostVersion ||
		!strings.HasPrefix(er.Headers.Get("Content-Type"), "application/json") {
		t.Errorf("invocation headers = %v", er.Headers)
	}
	env := er.Env
	if env["FUNCTIONS_CUSTOMHANDLER_PORT"] == "" || env["FUNCTIONS_CUSTOMHANDLER_PORT"] != env["FUNCTIONS_HTTPWORKER_PORT"] ||
		!guid.MatchString(env["FUNCTIONS_CUSTOMHANDLER_WORKER_ID"]) || env["FUNCTIONS_APP_ROOT_PATH"] != root ||
		env["MY_SETTING"] != "from settings" || env["PATH"] != os.Getenv("PATH") {
		t.Errorf("handler environment = %v", env)
	}
	if er.Cwd != root {
		t.Errorf("handler cwd = %q, want %q", er.Cwd, root)
	}
	recs := records(h, "echo", fakehost.Succeeded)
	if len(recs) != 1 || len(recs[0].Logs) != 1 || recs[0].Logs[0] != "echo done" || recs[0].Trigger != "http" {
		t.Errorf("records = %+v", recs)
	}

	// The key in a header; no body: Body is absent.
	resp, raw = get(t, "GET", echoURL, http.Header{"X-Functions-Key": {"test-function-key"}}, "")
	if resp.StatusCode != 200 {
		t.Fatalf("x-functions-key: %d", resp.StatusCode)
	}
	er = echoReply{}
	json.Unmarshal(raw, &er)
	if er.Invocation.Data.Req.Body != nil || er.Invocation.Data.Req.Method != "GET" {
		t.Errorf("GET without body: Body = %v, Method = %q", er.Invocation.Data.Req.Body, er.Invocation.Data.Req.Method)
	}

	// A reply without a JSON content type is a failed invocation: the caller gets 500.
	if resp, _ := get(t, "POST", h.URL()+"/api/plain", nil, ""); resp.StatusCode != 500 {
		t.Errorf("plain: %d, want 500", resp.StatusCode)
	}
	if recs := records(h, "plain", fakehost.Failed); len(recs) != 1 || !strings.Contains(recs[0].Error, "MediaTypeFormatter") {
		t.Errorf("plain records = %+v", recs)
	}
}

func TestConfigRefusals(t *testing.T) {
	tests := []struct {
		name     string
		hostJSON string
		settings map[string]string
		want     string
	}{
		{"no description", `{"version":"2.0","customHandler":{}}`, nil, "Missing worker Description"},
		{"no executable", `{"version":"2.0","customHandler":{"description":{"defaultExecutablePath":""}}}`, nil, "defaultExecutablePath"},
		{"unresolved schedule", "", map[string]string{"TICK_QUEUE": "q-x"}, "TICK_SCHEDULE"},
		{"five-field cron", "", map[string]string{"TICK_QUEUE": "q-x", "TICK_SCHEDULE": "0 * * * *"}, "6 fields"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := newApp(t, "00:01:00", "tick")
			if tt.hostJSON != "" {
				write(t, root+"/host.json", tt.hostJSON)
			}
			settings := tt.settings
			if settings == nil {
				settings = map[string]string{}
			}
			_, err := fakehost.Start(t.Context(), fakehost.Options{AppRoot: root, Settings: settings, Stdout: newTestLog(t), Stderr: newTestLog(t)})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Start error = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestSettingsFromLocalSettingsJSON(t *testing.T) {
	root := newApp(t, "00:01:00", "echo")
	write(t, root+"/local.settings.json", `{"IsEncrypted": false, "Values": {"FUNCTIONS_WORKER_RUNTIME": "custom", "MY_SETTING": "from file"}}`)
	h, _ := startHost(t, fakehost.Options{AppRoot: root})
	_, raw := get(t, "POST", h.URL()+"/api/echo", key, "")
	var er echoReply
	if err := json.Unmarshal(raw, &er); err != nil {
		t.Fatal(err)
	}
	if er.Env["MY_SETTING"] != "from file" {
		t.Errorf("MY_SETTING = %q", er.Env["MY_SETTING"])
	}
}
