package fakehost

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// InvocationResult is the handler's answer to one invocation, after the host's processing.
type InvocationResult struct {
	ID string
	// StatusCode is the status the handler answered the host with.
	StatusCode int
	// Outputs, Logs and ReturnValue as the handler sent them (Outputs keys as sent).
	Outputs     map[string]json.RawMessage
	Logs        []string
	ReturnValue json.RawMessage
	// HTTP is the response the HTTP front would send for an http output binding; nil when the function has
	// none or Outputs was null.
	HTTP *HTTPResponse
	// Messages holds, per queue output binding name, the message texts written (before base64 encoding).
	Messages map[string][]string
}

// HTTPResponse is the response built from an http output binding (docs/host-protocol.md §4.2).
type HTTPResponse struct {
	StatusCode int
	Header     http.Header
	Body       []byte
}

// InvocationStatus is the outcome of an invocation.
type InvocationStatus string

const (
	Succeeded InvocationStatus = "Succeeded"
	Failed    InvocationStatus = "Failed"
)

// InvocationRecord describes one finished invocation.
type InvocationRecord struct {
	Function   string
	ID         string
	Trigger    string // "http", "queue", "timer", "eventhub" or "manual" (Invoke)
	Start      time.Time
	Duration   time.Duration
	Status     InvocationStatus
	Error      string
	Logs       []string
	RetryCount int // timer and event hub retries: 0 for the first attempt
}

// invocationError is a failed invocation, with the text the host would log.
type invocationError struct {
	msg     string
	timeout bool
}

func (e *invocationError) Error() string { return e.msg }

// IsTimeout reports whether err is a function timeout.
func IsTimeout(err error) bool {
	var ie *invocationError
	return errors.As(err, &ie) && ie.timeout
}

func newGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func (h *Host) sysData(fn *function) map[string]any {
	return map[string]any{
		"MethodName": fn.name,
		"UtcNow":     formatDateTimeFull(h.now()),
		"RandGuid":   newGUID(),
	}
}

// Invoke sends a raw invocation of function: data and metadata are sent as given (apply EncodeValue yourself
// where the host would), with sys added to metadata when absent and keys ending in "trigger" dropped.
// Output bindings are applied (queue messages are written). It returns the result, or the invocation's error.
func (h *Host) Invoke(ctx context.Context, function string, data, metadata map[string]any) (*InvocationResult, error) {
	fn, ok := h.functions[function]
	if !ok {
		return nil, fmt.Errorf("fakehost: no function %q", function)
	}
	return h.invoke(ctx, fn, "manual", data, metadata, nil)
}

// invoke runs one invocation the way the host does, records it and applies its outputs.
func (h *Host) invoke(ctx context.Context, fn *function, trigger string, data, metadata map[string]any, retry map[string]any) (*InvocationResult, error) {
	id := newGUID()
	start := h.now()
	startMono := time.Now()
	res, err := h.invokeOnce(ctx, fn, id, data, metadata, retry)
	rec := InvocationRecord{Function: fn.name, ID: id, Trigger: trigger, Start: start, Duration: time.Since(startMono), Status: Succeeded}
	if retry != nil {
		rec.RetryCount, _ = retry["RetryCount"].(int)
	}
	if err != nil {
		rec.Status = Failed
		rec.Error = err.Error()
		h.logger.Error("Executed function (Failed)", "function", fn.name, "invocationId", id, "trigger", trigger, "error", err.Error(), "duration", rec.Duration)
	} else {
		rec.Logs = res.Logs
		h.logger.Info("Executed function (Succeeded)", "function", fn.name, "invocationId", id, "trigger", trigger, "duration", rec.Duration)
	}
	h.mu.Lock()
	h.records = append(h.records, rec)
	h.mu.Unlock()
	h.bump()
	return res, err
}

func (h *Host) invokeOnce(ctx context.Context, fn *function, id string, data, metadata map[string]any, retry map[string]any) (*InvocationResult, error) {
	meta := map[string]any{}
	for k, v := range metadata {
		if strings.HasSuffix(strings.ToLower(k), "trigger") {
			continue // the host drops binding data keys ending in "trigger" (QueueTrigger, TimerTrigger…)
		}
		meta[k] = v
	}
	if _, ok := meta["sys"]; !ok {
		meta["sys"] = h.sysData(fn)
	}
	if retry != nil {
		meta["RetryContext"] = retry
	}
	if data == nil {
		data = map[string]any{}
	}
	body, err := marshalNoEscape(map[string]any{"Data": data, "Metadata": meta})
	if err != nil {
		return nil, fmt.Errorf("fakehost: encoding invocation: %w", err)
	}

	// The function timeout covers waiting for the handler and the call.
	var cancel context.CancelFunc
	if h.cfg.functionTimeout > 0 {
		ctx, cancel = context.WithTimeoutCause(ctx, h.cfg.functionTimeout, errFunctionTimeout)
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	defer cancel()
	// Closing the host aborts invocations.
	stopAfter := context.AfterFunc(h.ctx, cancel)
	defer stopAfter()

	h.logger.Info("Executing function", "function", fn.name, "invocationId", id)
	gen, err := h.sup.acquire(ctx)
	if err != nil {
		return nil, h.invocationFailure(ctx, fn, id, nil, err)
	}
	// A restart or exit of the handler process fails every in-flight invocation.
	stopGen := context.AfterFunc(gen.ctx, cancel)
	defer stopGen()

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, gen.baseURL+"/"+fn.name, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("X-Azure-Functions-InvocationId", id)
	req.Header.Set("X-Azure-Functions-HostVersion", HostVersion)
	req.Header.Set("User-Agent", "Azure-Functions-Host/"+HostVersion)
	req.Header.Set("Content-Type", "application/json; charset=utf-8") // [inferred] the charset parameter
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, h.invocationFailure(ctx, fn, id, gen, err)
	}
	respBody, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, h.invocationFailure(ctx, fn, id, gen, err)
	}
	res := &InvocationResult{ID: id, StatusCode: resp.StatusCode}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// EnsureSuccessStatusCode: the body is ignored.
		return res, &invocationError{msg: fmt.Sprintf("Response status code does not indicate success: %d (%s).", resp.StatusCode, http.StatusText(resp.StatusCode))}
	}
	trimmed := bytes.TrimSpace(respBody)
	ct := resp.Header.Get("Content-Type")
	if !isJSONMediaType(ct) {
		if len(respBody) == 0 {
			// [inferred] ReadAsAsync returns null for empty content it has no formatter for: no completion.
			return res, h.awaitNoCompletion(ctx, fn, id, gen)
		}
		if ct == "" {
			ct = "application/octet-stream"
		}
		return res, &invocationError{msg: fmt.Sprintf("No MediaTypeFormatter is available to read an object of type 'HttpScriptInvocationResult' from content with media type '%s'.", mediaTypeOnly(ct))}
	}
	if len(trimmed) == 0 || string(trimmed) == "null" {
		// [inferred] an empty body or null deserialises to a null result, and the host only completes the
		// invocation for a non-null one: it hangs until functionTimeout, then the handler is restarted.
		return res, h.awaitNoCompletion(ctx, fn, id, gen)
	}
	if err := parseResult(trimmed, res); err != nil {
		return res, &invocationError{msg: fmt.Sprintf("Invalid HttpResponseMessage: %v: %s", err, truncate(string(respBody), 500))}
	}
	for _, l := range res.Logs {
		h.logger.Info(l, "category", "Function."+fn.name+".User", "function", fn.name, "invocationId", id)
	}
	if err := h.bindOutputs(ctx, fn, trimmed, res); err != nil {
		return res, &invocationError{msg: err.Error()}
	}
	return res, nil
}

var errFunctionTimeout = errors.New("function timeout")

// invocationFailure turns a transport error into the invocation's error; on a function timeout it restarts
// the handler as the host does.
func (h *Host) invocationFailure(ctx context.Context, fn *function, id string, gen *generation, err error) error {
	if errors.Is(context.Cause(ctx), errFunctionTimeout) {
		h.logger.Error(fmt.Sprintf("Timeout value of %s exceeded by function 'Functions.%s' (Id: '%s'). Initiating cancellation.", formatTimeSpan(h.cfg.functionTimeout), fn.name, id))
		if gen != nil {
			h.logger.Error("A function timeout has occurred. Restarting worker process executing invocationId '" + id + "'.")
			h.sup.restartAfterTimeout(gen)
		}
		return &invocationError{msg: fmt.Sprintf("Timeout value of %s was exceeded by function: Functions.%s", formatTimeSpan(h.cfg.functionTimeout), fn.name), timeout: true}
	}
	if gen != nil && gen.ctx.Err() != nil {
		return &invocationError{msg: fmt.Sprintf("the handler process ended during the invocation (%v): %v", context.Cause(gen.ctx), err)}
	}
	if h.ctx.Err() != nil {
		return &invocationError{msg: "host is shutting down"}
	}
	return &invocationError{msg: err.Error()}
}

// awaitNoCompletion waits for the function timeout (or anything else that ends the invocation).
func (h *Host) awaitNoCompletion(ctx context.Context, fn *function, id string, gen *generation) error {
	h.logger.Warn("handler answered without a result (empty body or null): the invocation does not complete", "function", fn.name, "invocationId", id)
	<-ctx.Done()
	return h.invocationFailure(ctx, fn, id, gen, context.Cause(ctx))
}

func isJSONMediaType(ct string) bool {
	mt := mediaTypeOnly(ct)
	return mt == "application/json" || mt == "text/json"
}

func mediaTypeOnly(ct string) string {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return strings.ToLower(strings.TrimSpace(strings.Split(ct, ";")[0]))
	}
	return mt
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func formatTimeSpan(d time.Duration) string {
	d = d.Round(time.Millisecond)
	h := int(d / time.Hour)
	m := int(d % time.Hour / time.Minute)
	s := d % time.Minute
	secs := int(s / time.Second)
	out := fmt.Sprintf("%02d:%02d:%02d", h, m, secs)
	if ms := int(s % time.Second / time.Millisecond); ms != 0 {
		out += fmt.Sprintf(".%03d", ms)
	}
	return out
}

// parseResult reads the envelope: Outputs, Logs and ReturnValue are matched case-insensitively.
func parseResult(body []byte, res *InvocationResult) error {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return err
	}
	for k, v := range top {
		switch strings.ToLower(k) {
		case "outputs":
			if jsonKind(v) == 'n' {
				continue
			}
			if jsonKind(v) != '{' {
				return fmt.Errorf("Outputs is not an object")
			}
			if err := json.Unmarshal(v, &res.Outputs); err != nil {
				return err
			}
			if res.Outputs == nil {
				res.Outputs = map[string]json.RawMessage{}
			}
		case "logs":
			if jsonKind(v) == 'n' {
				continue
			}
			var logs []json.RawMessage
			if err := json.Unmarshal(v, &logs); err != nil {
				return fmt.Errorf("Logs: %w", err)
			}
			for _, l := range logs {
				switch jsonKind(l) {
				case '"':
					var s string
					_ = json.Unmarshal(l, &s)
					res.Logs = append(res.Logs, s)
				case '{', '[':
					return fmt.Errorf("Logs: an entry is not a string")
				case 'n':
					res.Logs = append(res.Logs, "")
				default:
					res.Logs = append(res.Logs, dotNetScalar(l))
				}
			}
		case "returnvalue":
			if jsonKind(v) != 'n' {
				res.ReturnValue = v
			}
		}
	}
	return nil
}

// bindOutputs applies the output bindings (docs/host-protocol.md §4.1–4.4).
func (h *Host) bindOutputs(ctx context.Context, fn *function, body []byte, res *InvocationResult) error {
	values := map[string]json.RawMessage{}
	outputsNull := res.Outputs == nil
	for k, v := range res.Outputs {
		values[k] = v // case-sensitive lookup below, as the host's dictionary lookup
	}
	if fn.hasReturnBinding() {
		// $return is filled only from ReturnValue, even when that is null.
		delete(values, "$return")
		if res.ReturnValue != nil {
			values["$return"] = res.ReturnValue
		}
	} else if jsonKind(res.ReturnValue) == '{' {
		// Without a $return binding, an object ReturnValue's properties override Outputs.
		var rv map[string]json.RawMessage
		if json.Unmarshal(res.ReturnValue, &rv) == nil {
			for k, v := range rv {
				values[k] = v
			}
			outputsNull = false
		}
	}
	// Queue writes are done after the HTTP response is built, so a bad res fails before anything is written.
	type pending struct {
		b    *Binding
		msgs []string
	}
	var writes []pending
	for _, b := range fn.outputs() {
		v, ok := values[b.Name]
		switch strings.ToLower(b.Type) {
		case "http":
			if outputsNull && !ok {
				continue
			}
			if !ok || jsonKind(v) == 'n' {
				// [inferred] the host still binds an empty response object: 200 with body {}.
				res.HTTP = &HTTPResponse{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json; charset=utf-8"}}, Body: []byte("{}")}
				continue
			}
			hr, err := httpOutput(v, strings.EqualFold(b.DataType, "binary"))
			if err != nil {
				return err
			}
			res.HTTP = hr
		case "queue":
			if !ok {
				continue
			}
			msgs, err := queueOutputMessages(v, strings.EqualFold(b.DataType, "binary"))
			if err != nil {
				return fmt.Errorf("output binding %s: %w", b.Name, err)
			}
			writes = append(writes, pending{b, msgs})
		}
	}
	for _, w := range writes {
		if len(w.msgs) == 0 {
			continue
		}
		if err := h.writeQueueMessages(ctx, fn, w.b, w.msgs); err != nil {
			return fmt.Errorf("output binding %s: %w", w.b.Name, err)
		}
		if res.Messages == nil {
			res.Messages = map[string][]string{}
		}
		res.Messages[w.b.Name] = append(res.Messages[w.b.Name], w.msgs...)
	}
	return nil
}

// applyBase64Rule is GetBindingValue's first step: for a binding whose dataType is not binary, a string value
// that Convert.FromBase64String accepts becomes those bytes (docs/host-protocol.md §4.4). It returns the bytes and true then.
func applyBase64Rule(v json.RawMessage, binary bool) ([]byte, bool) {
	if binary || jsonKind(v) != '"' {
		return nil, false
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return nil, false
	}
	return decodeBase64DotNet(s)
}

// queueOutputMessages turns one output value into message texts (docs/host-protocol.md §4.4 table).
func queueOutputMessages(v json.RawMessage, binary bool) ([]string, error) {
	if b, ok := applyBase64Rule(v, binary); ok {
		return []string{string(b)}, nil // the bytes as they are, even when they are not UTF-8
	}
	switch jsonKind(v) {
	case 'n', 0:
		return nil, nil
	case '"':
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, err
		}
		t := strings.TrimSpace(s)
		if strings.HasPrefix(t, "[") {
			if elems, err := splitArray([]byte(t)); err == nil {
				return arrayMessages(elems)
			}
		}
		if strings.HasPrefix(t, "{") {
			if out, err := reprintJSON([]byte(t)); err == nil {
				return []string{out}, nil
			}
		}
		return []string{s}, nil
	case '[':
		elems, err := splitArray(v)
		if err != nil {
			return nil, err
		}
		return arrayMessages(elems)
	case '{':
		out, err := reprintJSON(v)
		if err != nil {
			return nil, err
		}
		return []string{out}, nil
	default:
		return []string{dotNetScalar(v)}, nil
	}
}

func arrayMessages(elems []json.RawMessage) ([]string, error) {
	var out []string
	for _, e := range elems {
		switch jsonKind(e) {
		case 'n':
			// [inferred] a null element yields no message.
		case '"':
			var s string
			if err := json.Unmarshal(e, &s); err != nil {
				return nil, err
			}
			out = append(out, s)
		case '{', '[':
			s, err := reprintJSON(e)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		default:
			out = append(out, dotNetScalar(e))
		}
	}
	return out, nil
}

// httpOutput reads an http output binding value (docs/host-protocol.md §4.2).
func httpOutput(v json.RawMessage, binary bool) (*HTTPResponse, error) {
	raw := []byte(v)
	if b, ok := applyBase64Rule(v, binary); ok {
		raw = b
	} else if jsonKind(v) == '"' {
		var s string
		_ = json.Unmarshal(v, &s)
		raw = []byte(s)
	}
	var obj map[string]json.RawMessage
	if jsonKind(raw) != '{' || json.Unmarshal(raw, &obj) != nil {
		return nil, errors.New("Failed while trying to Deserialize to httpOutputBindingResponse: the http output value must be a JSON object")
	}
	hr := &HTTPResponse{StatusCode: 200, Header: http.Header{}}
	for k, fv := range obj {
		switch strings.ToLower(k) {
		case "statuscode":
			// "201" and 201 both work ([inferred] for the number: Newtonsoft converts it to the string field).
			switch jsonKind(fv) {
			case 'n':
			case '"', '0':
				s := strings.Trim(string(fv), `"`)
				code, err := strconv.Atoi(strings.TrimSpace(s))
				if err != nil || code < 100 || code > 999 {
					return nil, fmt.Errorf("http output: statusCode %s is not a status code", fv)
				}
				hr.StatusCode = code
			default:
				return nil, fmt.Errorf("http output: statusCode %s is not a status code", fv)
			}
		case "headers":
			if jsonKind(fv) == 'n' {
				continue
			}
			var hs map[string]json.RawMessage
			if err := json.Unmarshal(fv, &hs); err != nil {
				return nil, fmt.Errorf("http output: headers must be an object of strings: %w", err)
			}
			for hk, hv := range hs {
				hr.Header.Set(hk, netToString(hv))
			}
		case "body":
			switch jsonKind(fv) {
			case 'n':
			case '"':
				var s string
				_ = json.Unmarshal(fv, &s)
				hr.Body = []byte(s)
			default:
				hr.Body = []byte(netToString(fv))
			}
		}
	}
	if len(hr.Body) > 0 && hr.Header.Get("Content-Type") == "" {
		// [inferred] ASP.NET Core's StringOutputFormatter default.
		hr.Header.Set("Content-Type", "text/plain; charset=utf-8")
	}
	return hr, nil
}

// netToString is JToken.ToString(): strings as they are, scalars .NET-style, objects and arrays indented.
func netToString(v json.RawMessage) string {
	switch jsonKind(v) {
	case '"':
		var s string
		_ = json.Unmarshal(v, &s)
		return s
	case '{', '[':
		s, err := reprintJSON(v)
		if err != nil {
			return string(v)
		}
		return s
	case 'n':
		return ""
	default:
		return dotNetScalar(v)
	}
}
