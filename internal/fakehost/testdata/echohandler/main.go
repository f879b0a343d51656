// Command echohandler is a tiny custom handler used by the fakehost tests. It dispatches on the function
// name in the path and behaves as the test app's function.json files expect:
//
//	echo   answers res with the whole invocation (request body, headers, pid, environment)
//	emit   copies the JSON in Data.req.Body to Outputs.out (query nores=1: no res; status=N: res status)
//	work   queue trigger: fails (500) when the message contains "fail", else writes Outputs.done
//	tick   timer: fails while RetryContext.RetryCount < TICK_FAILS, else writes Outputs.log
//	hub*   event hub: answers Logs [Data, Metadata] as JSON texts; fails when Data contains "fail" and
//	       RetryContext.RetryCount < HUB_FAILS (-1: always); sleeps 300 ms first when Data contains "sleep"
//	crash  exits with the code in the query
//	sleep  sleeps for the milliseconds in the query, then answers
//	null   answers 200 application/json "null"
//	plain  answers 200 text/plain
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

type invocation struct {
	Data     map[string]json.RawMessage `json:"Data"`
	Metadata map[string]json.RawMessage `json:"Metadata"`
}

func main() {
	if ms, _ := strconv.Atoi(os.Getenv("ECHO_STARTUP_DELAY_MS")); ms > 0 {
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
	port := os.Getenv("FUNCTIONS_CUSTOMHANDLER_PORT")
	fmt.Printf("echohandler: listening on 127.0.0.1:%s pid=%d\n", port, os.Getpid())
	fmt.Fprintln(os.Stderr, "echohandler: warning: this is a test handler")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("POST /{fn}", handle)
	if err := http.ListenAndServe("127.0.0.1:"+port, mux); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, why string) {
	fmt.Fprintln(os.Stderr, "echohandler: failing:", why)
	w.WriteHeader(http.StatusInternalServerError)
}

func handle(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	var inv invocation
	if err := json.Unmarshal(raw, &inv); err != nil {
		fail(w, "bad request body: "+err.Error())
		return
	}
	query := func(key string) string {
		var req struct{ Query map[string]string }
		json.Unmarshal(inv.Data["req"], &req)
		return req.Query[key]
	}
	switch fn := r.PathValue("fn"); fn {
	case "echo":
		env := map[string]string{}
		for _, k := range []string{"FUNCTIONS_CUSTOMHANDLER_PORT", "FUNCTIONS_HTTPWORKER_PORT", "FUNCTIONS_CUSTOMHANDLER_WORKER_ID", "FUNCTIONS_APP_ROOT_PATH", "MY_SETTING", "PATH"} {
			env[k] = os.Getenv(k)
		}
		wd, _ := os.Getwd()
		body, _ := json.Marshal(map[string]any{
			"invocation": json.RawMessage(raw),
			"headers":    r.Header,
			"pid":        os.Getpid(),
			"env":        env,
			"cwd":        wd,
		})
		reply(w, map[string]any{
			"Outputs": map[string]any{"res": map[string]any{
				"statusCode": 200,
				"headers":    map[string]any{"Content-Type": "application/json", "X-Echo": "yes"},
				"body":       string(body),
			}},
			"Logs": []string{"echo done"},
		})
	case "emit":
		var req struct{ Body string }
		json.Unmarshal(inv.Data["req"], &req)
		outputs := map[string]any{"out": json.RawMessage(req.Body)}
		if query("nores") == "" {
			status := query("status")
			if status == "" {
				status = "201"
			}
			outputs["res"] = map[string]any{"statusCode": status, "body": "emitted"}
		}
		reply(w, map[string]any{"Outputs": outputs})
	case "work":
		var once string
		if err := json.Unmarshal(inv.Data["msg"], &once); err != nil {
			fail(w, "Data.msg is not a JSON string: "+err.Error())
			return
		}
		text := once
		var twice string
		if json.Unmarshal([]byte(once), &twice) == nil {
			text = twice
		}
		if strings.Contains(text, "fail") {
			fail(w, "message asks to fail")
			return
		}
		if ms, _ := strconv.Atoi(strings.TrimPrefix(text, "sleep:")); strings.HasPrefix(text, "sleep:") {
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}
		reply(w, map[string]any{"Outputs": map[string]any{"done": map[string]any{
			"data": once, "text": text, "meta": inv.Metadata,
		}}})
	case "tick":
		var rc struct{ RetryCount int }
		json.Unmarshal(inv.Metadata["RetryContext"], &rc)
		fails, _ := strconv.Atoi(os.Getenv("TICK_FAILS"))
		if rc.RetryCount < fails {
			fail(w, fmt.Sprintf("tick attempt %d fails as asked", rc.RetryCount))
			return
		}
		reply(w, map[string]any{"Outputs": map[string]any{"log": map[string]any{
			"data": inv.Data, "meta": inv.Metadata,
		}}})
	case "hub", "hubone", "hubbin", "hubforever", "hubnoretry":
		var rc struct{ RetryCount int }
		json.Unmarshal(inv.Metadata["RetryContext"], &rc)
		fails, _ := strconv.Atoi(os.Getenv("HUB_FAILS"))
		var data strings.Builder
		for _, v := range inv.Data {
			data.Write(v)
		}
		if strings.Contains(data.String(), "sleep") {
			time.Sleep(300 * time.Millisecond)
		}
		if strings.Contains(data.String(), "fail") && (fails < 0 || rc.RetryCount < fails) {
			fail(w, fmt.Sprintf("%s attempt %d fails as asked", fn, rc.RetryCount))
			return
		}
		d, _ := json.Marshal(inv.Data)
		m, _ := json.Marshal(inv.Metadata)
		reply(w, map[string]any{"Outputs": map[string]any{}, "Logs": []string{string(d), string(m)}})
	case "crash":
		code, _ := strconv.Atoi(query("code"))
		fmt.Fprintf(os.Stderr, "echohandler: exiting with code %d\n", code)
		os.Exit(code)
	case "sleep":
		ms, _ := strconv.Atoi(query("ms"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		reply(w, map[string]any{"Outputs": map[string]any{"res": map[string]any{"body": "slept"}}})
	case "null":
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, "null")
	case "plain":
		io.WriteString(w, `{"Outputs":{}}`)
	default:
		fail(w, "unknown function "+fn)
	}
}
