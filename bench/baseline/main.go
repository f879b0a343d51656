// Command baseline is the yardstick cmd/bench measures the real handler against: the least a custom handler
// for the webhook function can do and still be one. It is started exactly like the handler (same
// environment, same FUNCTIONS_CUSTOMHANDLER_PORT) and does only this:
//
//   - listens on 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT (FUNCTIONS_HTTPWORKER_PORT as a fallback) with a
//     plain net/http server and the default ServeMux;
//   - GET / answers 200 "ok\n" (the host's readiness poll, docs/host-protocol.md §2.2);
//   - POST /webhook reads the invocation request fully, then:
//   - if the raw bytes contain `"validationToken"`, it decodes only Data.req.Query from the envelope and
//     echoes the token as the http output (200, text/plain, nosniff), exactly what Graph's handshake needs;
//   - otherwise it answers the canned invocation response {"Outputs":{"res":{"statusCode":202,"body":""}}}
//     without parsing anything: no clientState or tenant check, no queue output, no log line.
//
// So for notifications the baseline is the cost of the transport alone (HTTP/1.1 on loopback, reading the
// envelope, writing a small answer); whatever the handler spends beyond it is the verify+split+encode work and
// its logging. It is not a usable handler: it queues nothing.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
)

var canned = []byte(`{"Outputs":{"res":{"statusCode":202,"body":""}}}`)

func main() {
	port := os.Getenv("FUNCTIONS_CUSTOMHANDLER_PORT")
	if port == "" {
		port = os.Getenv("FUNCTIONS_HTTPWORKER_PORT")
	}
	if port == "" {
		fmt.Fprintln(os.Stderr, "baseline: FUNCTIONS_CUSTOMHANDLER_PORT is not set")
		os.Exit(1)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		fmt.Fprintln(os.Stderr, "baseline:", err)
		os.Exit(1)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("POST /webhook", webhook)
	err = http.Serve(ln, mux)
	fmt.Fprintln(os.Stderr, "baseline:", err)
	os.Exit(1) // never 0: the host would not restart it (docs/host-protocol.md §2.3)
}

func webhook(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if !bytes.Contains(body, []byte(`"validationToken"`)) {
		w.Write(canned)
		return
	}
	var env struct {
		Data struct {
			Req struct {
				Query map[string]string `json:"Query"`
			} `json:"req"`
		} `json:"Data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	out, _ := json.Marshal(map[string]any{"Outputs": map[string]any{"res": map[string]any{
		"statusCode": 200,
		"headers":    map[string]string{"Content-Type": "text/plain; charset=utf-8", "X-Content-Type-Options": "nosniff"},
		"body":       env.Data.Req.Query["validationToken"],
	}}})
	w.Write(out)
}
