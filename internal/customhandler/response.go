package customhandler

// Response is the JSON object the handler answers an invocation with (§4.1). It always marshals to an
// object, never to an empty body or null, which would leave the invocation hanging until functionTimeout.
type Response struct {
	// Outputs keys must match function.json binding names exactly (the host matches them case-sensitively).
	Outputs map[string]any `json:"Outputs,omitempty"`
	// Logs are logged by the host at Information, after the answer and only for successful invocations.
	Logs []string `json:"Logs,omitempty"`
	// ReturnValue fills a $return binding; leave it nil otherwise, since the host copies an object's
	// properties over Outputs (§4.3).
	ReturnValue any `json:"ReturnValue,omitempty"`
}

// HTTPResponse is the value of an http output binding (§4.2): the body is a string, headers are strings, and
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
