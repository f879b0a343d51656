package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
)

// DefaultBaseURL is Graph's v1.0 endpoint in the public cloud.
const DefaultBaseURL = "https://graph.microsoft.com/v1.0"

const (
	defaultMaxRetryDelay = 10 * time.Second
	defaultMaxRetries    = 3
	// maxPages stops a list that never ends (a server bug or a loop of links) from running forever.
	maxPages = 1000
)

// ClientOptions configure a Client. The zero value talks to the public cloud.
type ClientOptions struct {
	// BaseURL is the Graph root including the version; default DefaultBaseURL. It must be https.
	BaseURL string
	// Transport sends the HTTP requests (tests pass a *http.Client trusting a TLS test server).
	Transport policy.Transporter
	// MaxRetryDelay caps how long one call waits between its own retries (default 10 s). A Retry-After
	// longer than this is not waited for: the call returns at once with a KindThrottled *Error carrying
	// the delay, so a queue-triggered caller can re-enqueue the work with that delay instead of holding
	// its invocation open. Negative means no cap.
	MaxRetryDelay time.Duration
	// MaxRetries is the number of retries after the first try (default 3; negative means none). Retries
	// cover 408, 429, 500, 502, 503, 504 and network errors.
	MaxRetries int32
	// Logger receives a Debug line per call and a Warn line per throttled call; nil discards.
	Logger *slog.Logger
	// LoggerFrom, when set, picks the logger for a call from its context instead, so that the lines carry
	// the invocation they belong to.
	LoggerFrom func(context.Context) *slog.Logger
	// Now is the clock a Retry-After HTTP-date is measured against. Required: the clock is given, never
	// taken.
	Now func() time.Time
}

// Client is a thin typed Microsoft Graph client on an azcore pipeline. It is safe for concurrent use and
// meant to be shared: the pipeline's bearer token policy caches the token between calls.
type Client struct {
	base    *url.URL // parsed BaseURL without a trailing slash
	baseURL string
	pl      runtime.Pipeline
	log     *slog.Logger
	logFrom func(context.Context) *slog.Logger
	now     func() time.Time // for Retry-After HTTP-dates
}

// NewClient builds a Client whose every request carries a token for the Graph host's scope.
func NewClient(cred azcore.TokenCredential, o ClientOptions) (*Client, error) {
	if cred == nil {
		return nil, errors.New("graph: a credential is required")
	}
	if o.Now == nil {
		return nil, errors.New("graph: a clock (ClientOptions.Now) is required")
	}
	base, err := parseBase(o.BaseURL)
	if err != nil {
		return nil, err
	}
	scope, _ := Scope(base.String())
	delay := o.MaxRetryDelay
	if delay == 0 {
		delay = defaultMaxRetryDelay
	}
	retries := o.MaxRetries
	if retries == 0 {
		retries = defaultMaxRetries
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	copts := policy.ClientOptions{
		Transport: o.Transport,
		// azcore waits out a Retry-After up to MaxRetryDelay and returns the response otherwise.
		Retry:     policy.RetryOptions{MaxRetries: retries, MaxRetryDelay: delay},
		Telemetry: policy.TelemetryOptions{ApplicationID: "graph-webhooks-go"},
	}
	pl := runtime.NewPipeline("graphwebhooks", "v1", runtime.PipelineOptions{
		// PerRetry, so a retry after a long wait gets a fresh token if the old one expired meanwhile.
		PerRetry: []policy.Policy{runtime.NewBearerTokenPolicy(markTokenErrors{cred}, []string{scope}, nil)},
	}, &copts)
	return &Client{base: base, baseURL: base.String(), pl: pl, log: logger, logFrom: o.LoggerFrom, now: o.Now}, nil
}

// Scope returns the OAuth scope for a Graph base URL: "<scheme>://<host>/.default". Each national cloud
// has its own Graph host and a token for another host is refused, so the scope follows the URL:
// https://graph.microsoft.us/.default, https://microsoftgraph.chinacloudapi.cn/.default, and so on.
// "" means DefaultBaseURL.
func Scope(baseURL string) (string, error) {
	u, err := parseBase(baseURL)
	if err != nil {
		return "", err
	}
	return "https://" + hostKey(u) + "/.default", nil
}

func parseBase(baseURL string) (*url.URL, error) {
	if baseURL == "" {
		baseURL = DefaultBaseURL
	}
	u, err := url.Parse(baseURL)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("graph: base URL %q: must be an https URL such as %s", baseURL, DefaultBaseURL)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// hostKey is the host as compared and put in scopes: lower case, without the default port.
func hostKey(u *url.URL) string {
	h := strings.ToLower(u.Host)
	return strings.TrimSuffix(h, ":443")
}

// markTokenErrors tags credential failures so they are classified as auth problems, not network ones.
type markTokenErrors struct{ cred azcore.TokenCredential }

func (m markTokenErrors) GetToken(ctx context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	tk, err := m.cred.GetToken(ctx, o)
	if err != nil {
		return tk, &tokenError{err}
	}
	return tk, nil
}

// request is one Graph call.
type request struct {
	op     string // for errors and logs
	method string
	url    string
	body   any // JSON-encoded when non-nil
	flags  opFlags
	// secrets the request carries (every form: internal/redact), removed from Graph's error message, which
	// may quote them, before it is shortened or kept
	secrets []string
}

// send runs one call through the pipeline (token, retries) and returns the body of a 2xx answer; any
// other outcome is an *Error.
func (c *Client) send(ctx context.Context, r request) ([]byte, error) {
	req, err := runtime.NewRequest(ctx, r.method, r.url)
	if err != nil {
		return nil, localError(r.op, "building the request: %v", err)
	}
	req.Raw().Header.Set("Accept", "application/json")
	if r.body != nil {
		b, err := json.Marshal(r.body)
		if err != nil {
			return nil, localError(r.op, "encoding the request: %v", err)
		}
		if err := req.SetBody(streaming.NopCloser(bytes.NewReader(b)), "application/json"); err != nil {
			return nil, localError(r.op, "setting the body: %v", err)
		}
	}
	log := c.log
	if c.logFrom != nil {
		log = c.logFrom(ctx)
	}
	start := time.Now()
	resp, err := c.pl.Do(req)
	if err != nil {
		e := transportError(r.op, err)
		log.Debug("graph call failed", "op", r.op, "kind", e.Kind.String(), "error", e.Error())
		return nil, e
	}
	body, err := runtime.Payload(resp)
	if err != nil {
		return nil, transportError(r.op, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		log.Debug("graph call", "op", r.op, "status", resp.StatusCode, "duration", time.Since(start))
		return body, nil
	}
	e := responseError(r.op, r.flags, resp.StatusCode, resp.Header, body, c.now(), r.secrets...)
	if e.Kind == KindThrottled {
		log.Warn("graph call throttled", "op", r.op, "retryAfter", e.RetryAfter, "requestId", e.RequestID)
	} else {
		log.Debug("graph call", "op", r.op, "status", resp.StatusCode, "code", e.Code, "requestId", e.RequestID)
	}
	return nil, e
}

// getJSON sends r and decodes the answer into v (numbers in maps stay json.Number).
func (c *Client) getJSON(ctx context.Context, r request, v any) error {
	body, err := c.send(ctx, r)
	if err != nil {
		return err
	}
	if err := decodeJSON(body, v); err != nil {
		return &Error{Op: r.op, Kind: KindOther, Err: fmt.Errorf("decoding the answer: %w", err)}
	}
	return nil
}

func decodeJSON(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	return d.Decode(v)
}

// url joins the base URL with an already escaped path and an optional raw query.
func (c *Client) url(path, query string) string {
	if query != "" {
		return c.baseURL + path + "?" + query
	}
	return c.baseURL + path
}

// checkLink accepts an @odata.nextLink or deltaLink only on the Graph host itself: the links come from
// responses (or, for delta, from storage), and following one elsewhere would send our token there.
func (c *Client) checkLink(op, link string) error {
	u, err := url.Parse(link)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return localError(op, "invalid link (not an absolute URL)")
	}
	if u.Scheme != "https" || hostKey(u) != hostKey(c.base) {
		return localError(op, "refusing to follow a link to %s://%s: not the Graph host %s", u.Scheme, u.Host, c.base.Host)
	}
	return nil
}

// segment escapes an id for use as one path segment, refusing ids that would change the path's meaning.
func segment(op, id string) (string, error) {
	if id == "" || id == "." || id == ".." {
		return "", localError(op, "invalid id %q", id)
	}
	return url.PathEscape(id), nil
}

// selectQuery renders $select for the given properties ("" for none).
func selectQuery(props []string) string {
	if len(props) == 0 {
		return ""
	}
	esc := make([]string, len(props))
	for i, p := range props {
		esc[i] = url.QueryEscape(strings.TrimSpace(p))
	}
	return "$select=" + strings.Join(esc, ",")
}

// page is the shape of every Graph collection answer.
type page[T any] struct {
	Value     []T    `json:"value"`
	NextLink  string `json:"@odata.nextLink"`
	DeltaLink string `json:"@odata.deltaLink"`
}

// listAll follows @odata.nextLink from first until the last page.
func listAll[T any](ctx context.Context, c *Client, op, first string) ([]T, error) {
	var all []T
	seen := map[string]bool{}
	link := first
	for range maxPages {
		var p page[T]
		if err := c.getJSON(ctx, request{op: op, method: http.MethodGet, url: link}, &p); err != nil {
			return nil, err
		}
		all = append(all, p.Value...)
		if p.NextLink == "" {
			return all, nil
		}
		if err := c.checkLink(op, p.NextLink); err != nil {
			return nil, err
		}
		if seen[p.NextLink] {
			return nil, &Error{Op: op, Kind: KindOther, Err: errors.New("the next page link repeats an earlier one")}
		}
		seen[p.NextLink] = true
		link = p.NextLink
	}
	return nil, &Error{Op: op, Kind: KindOther, Err: fmt.Errorf("more than %d pages", maxPages)}
}
