package customhandler

import (
	"encoding/json"
	"slices"
	"strconv"

	"github.com/graphwebhooks/graph-webhooks-go/internal/safetext"
)

// Response is the JSON object the handler answers an invocation with (docs/host-protocol.md §4.1). It always marshals to an
// object, never to an empty body or null, which would leave the invocation hanging until functionTimeout.
type Response struct {
	// Outputs keys must match function.json binding names exactly (the host matches them case-sensitively).
	Outputs map[string]any `json:"Outputs,omitempty"`
	// Logs are logged by the host at Information, after the answer and only for successful invocations,
	// one line each: MarshalJSON escapes every control character in them (internal/safetext), so an id a
	// caller supplied cannot start a line of its own.
	Logs []string `json:"Logs,omitempty"`
	// ReturnValue fills a $return binding; leave it nil otherwise, since the host copies an object's
	// properties over Outputs (docs/host-protocol.md §4.3).
	ReturnValue any `json:"ReturnValue,omitempty"`
}

// HTTPResponse is the value of an http output binding (docs/host-protocol.md §4.2): the body is a string, headers are strings, and
// statusCode, not status, sets the status.
type HTTPResponse struct {
	StatusCode int               `json:"statusCode"`
	Headers    map[string]string `json:"headers,omitempty"`
	Body       string            `json:"body"`
}

// SetOutput sets one output binding, creating Outputs as needed.
func (r *Response) SetOutput(name string, v any) {
	if r.Outputs == nil {
		r.Outputs = map[string]any{}
	}
	r.Outputs[name] = v
}

// MarshalJSON writes the response with json.RawMessage outputs copied as they are: a function that has
// already encoded a large output (the webhook's queue messages) does not pay for encoding/json validating
// and compacting it again. Such outputs must be valid JSON.
func (r Response) MarshalJSON() ([]byte, error) {
	out := []byte{'{'}
	if len(r.Outputs) > 0 {
		out = append(out, `"Outputs":{`...)
		keys := make([]string, 0, len(r.Outputs))
		for k := range r.Outputs {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				out = append(out, ',')
			}
			out = strconv.AppendQuote(out, k)
			out = append(out, ':')
			if raw, ok := r.Outputs[k].(json.RawMessage); ok {
				out = append(out, raw...)
				continue
			}
			b, err := json.Marshal(r.Outputs[k])
			if err != nil {
				return nil, err
			}
			out = append(out, b...)
		}
		out = append(out, '}')
	}
	var logs []string
	for i, l := range r.Logs {
		if !safetext.Safe(l) {
			if logs == nil {
				logs = slices.Clone(r.Logs)
			}
			logs[i] = safetext.Line(l)
		}
	}
	if logs == nil {
		logs = r.Logs
	}
	for _, f := range []struct {
		name string
		v    any
		set  bool
	}{{"Logs", logs, len(logs) > 0}, {"ReturnValue", r.ReturnValue, r.ReturnValue != nil}} {
		if !f.set {
			continue
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		b, err := json.Marshal(f.v)
		if err != nil {
			return nil, err
		}
		out = append(out, `"`+f.name+`":`...)
		out = append(out, b...)
	}
	return append(out, '}'), nil
}
