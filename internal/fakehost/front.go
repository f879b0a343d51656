package fakehost

import (
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// MaxRequestBodyBytes is the request body limit of the HTTP front: 100 MB, the host's default
// (FUNCTIONS_REQUEST_BODY_SIZE_LIMIT = 104857600). Larger bodies get 413.
const MaxRequestBodyBytes = 104857600

// routeTemplate is an ASP.NET-style route: literal segments and {name}, {name?}, {*rest} parameters.
// Constraints ({id:int}) are accepted and ignored. Matching is case-insensitive, as in ASP.NET routing.
type routeTemplate struct {
	raw  string
	segs []routeSeg
}

type routeSeg struct {
	literal  string
	param    string
	optional bool
	catchAll bool
}

func parseRoute(route string) (*routeTemplate, error) {
	rt := &routeTemplate{raw: route}
	route = strings.Trim(route, "/")
	if route == "" {
		return rt, nil
	}
	for _, s := range strings.Split(route, "/") {
		if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") {
			p := s[1 : len(s)-1]
			seg := routeSeg{}
			if strings.HasPrefix(p, "*") {
				seg.catchAll = true
				p = strings.TrimLeft(p, "*")
			}
			if i := strings.IndexAny(p, ":="); i >= 0 {
				p = p[:i]
			}
			if strings.HasSuffix(p, "?") {
				seg.optional = true
				p = strings.TrimSuffix(p, "?")
			}
			if p == "" {
				return nil, errors.New("empty route parameter")
			}
			seg.param = p
			rt.segs = append(rt.segs, seg)
			continue
		}
		if strings.ContainsAny(s, "{}") {
			return nil, fmt.Errorf("segment %q: parameters must fill a whole segment in fakehost", s)
		}
		rt.segs = append(rt.segs, routeSeg{literal: s})
	}
	return rt, nil
}

// match matches a path below the route prefix and returns the route values (absent optional ones are nil).
func (rt *routeTemplate) match(path string) (map[string]any, bool) {
	path = strings.Trim(path, "/")
	var parts []string
	if path != "" {
		parts = strings.Split(path, "/")
	}
	params := map[string]any{}
	i := 0
	for _, seg := range rt.segs {
		switch {
		case seg.catchAll:
			if i < len(parts) {
				params[seg.param] = strings.Join(parts[i:], "/")
			} else {
				params[seg.param] = nil
			}
			return params, true
		case i >= len(parts):
			if seg.param != "" && seg.optional {
				params[seg.param] = nil
				continue
			}
			return nil, false
		case seg.param != "":
			v, err := url.PathUnescape(parts[i])
			if err != nil {
				v = parts[i]
			}
			params[seg.param] = v
		case !strings.EqualFold(seg.literal, parts[i]):
			return nil, false
		}
		i++
	}
	return params, i == len(parts)
}

func (h *Host) routePath(fn *function) string {
	p := "/"
	if h.cfg.routePrefix != "" {
		p += h.cfg.routePrefix + "/"
	}
	return p + strings.Trim(fn.route.raw, "/")
}

// serveFront is the HTTP front: /<routePrefix>/<route> for each httpTrigger function, GET / for the host page.
func (h *Host) serveFront(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "Your Functions 4.0 app is up and running (fakehost)\n")
		return
	}
	path := r.URL.Path
	if h.cfg.routePrefix != "" {
		prefix := "/" + h.cfg.routePrefix
		if len(path) < len(prefix) || !strings.EqualFold(path[:len(prefix)], prefix) ||
			(len(path) > len(prefix) && path[len(prefix)] != '/') {
			http.NotFound(w, r)
			return
		}
		path = path[len(prefix):]
	}
	var fn *function
	var params map[string]any
	for _, name := range h.order {
		f := h.functions[name]
		if f.route == nil {
			continue
		}
		p, ok := f.route.match(path)
		if !ok {
			continue
		}
		// A method the function does not allow does not match the route: ASP.NET routing, which the
		// host uses, then answers 404 (not 405).
		if f.methods != nil && !f.methods[r.Method] {
			continue
		}
		fn, params = f, p
		break
	}
	if fn == nil {
		http.NotFound(w, r)
		return
	}

	keyID, authorized := h.authorize(r, fn.trigger.AuthLevel)
	if !authorized {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}

	var body []byte
	if r.ContentLength > 0 {
		var err error
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBodyBytes))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				w.WriteHeader(http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, "reading request body: "+err.Error(), http.StatusBadRequest)
			return
		}
	}

	req, meta := h.buildHTTPRequestData(r, body, params, keyID)
	data := map[string]any{fn.trigger.Name: req}
	res, err := h.invoke(r.Context(), fn, "http", data, meta, nil)
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	resp := res.HTTP
	if resp == nil {
		// Outputs was null or absent: the host answers with a plain OkResult.
		w.WriteHeader(http.StatusOK)
		return
	}
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	if r.Method != http.MethodHead {
		_, _ = w.Write(resp.Body)
	}
}

// authorize applies the authLevel: the key is taken from the x-functions-key header, else from the code
// query parameter. It returns the key id ("default" or "master") of a valid key even for anonymous functions,
// as the host authenticates a key whenever one is presented.
func (h *Host) authorize(r *http.Request, level string) (keyID string, ok bool) {
	key := r.Header.Get("x-functions-key")
	if key == "" {
		key = firstQueryValue(r.URL.RawQuery, "code")
	}
	eq := func(a, b string) bool { return b != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }
	switch {
	case key == "":
	case eq(key, h.masterKey):
		keyID = "master"
	case eq(key, h.functionKey):
		keyID = "default"
	}
	if h.opts.DisableAuth {
		return keyID, true
	}
	switch strings.ToLower(level) {
	case "anonymous":
		return keyID, true
	case "admin":
		return keyID, keyID == "master"
	default:
		return keyID, keyID != ""
	}
}

// queryPair is one parsed query key with its values in order.
type queryPair struct {
	key    string
	values []string
}

// parseQuery parses a raw query the way ASP.NET Core's QueryHelpers does: '&'-separated, '+' is a space,
// %XX decoded once (an invalid escape is kept as it is), keys compared case-insensitively with the first
// spelling kept, repeated keys collected in order.
func parseQuery(raw string) []queryPair {
	var out []queryPair
	idx := map[string]int{}
	for _, part := range strings.Split(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		k, v = unescapeQuery(k), unescapeQuery(v)
		lk := strings.ToLower(k)
		if i, ok := idx[lk]; ok {
			out[i].values = append(out[i].values, v)
			continue
		}
		idx[lk] = len(out)
		out = append(out, queryPair{key: k, values: []string{v}})
	}
	return out
}

func firstQueryValue(raw, key string) string {
	for _, p := range parseQuery(raw) {
		if strings.EqualFold(p.key, key) {
			return p.values[0]
		}
	}
	return ""
}

func unescapeQuery(s string) string {
	s = strings.ReplaceAll(s, "+", " ")
	if !strings.Contains(s, "%") {
		return s
	}
	var b []byte
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			v, _ := strconv.ParseUint(s[i+1:i+3], 16, 8)
			b = append(b, byte(v))
			i += 2
			continue
		}
		b = append(b, s[i])
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// httpRequestData is Data.<name> for an httpTrigger (docs/host-protocol.md §3.3), fields in the host's order.
type httpRequestData struct {
	URL        string              `json:"Url"`
	Method     string              `json:"Method"`
	Query      orderedStrings      `json:"Query"`
	Headers    map[string][]string `json:"Headers"`
	Params     map[string]any      `json:"Params"`
	Identities []identity          `json:"Identities"`
	Body       *string             `json:"Body,omitempty"`
}

// orderedStrings is a JSON object of strings that keeps insertion order.
type orderedStrings []queryPair

func (o orderedStrings) MarshalJSON() ([]byte, error) {
	var b strings.Builder
	b.WriteByte('{')
	for i, p := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(quoteJSON(p.key))
		b.WriteByte(':')
		b.WriteString(quoteJSON(strings.Join(p.values, ",")))
	}
	b.WriteByte('}')
	return []byte(b.String()), nil
}

type identity struct {
	AuthenticationType *string `json:"AuthenticationType"`
	IsAuthenticated    bool    `json:"IsAuthenticated"`
	Actor              any     `json:"Actor"`
	BootstrapContext   any     `json:"BootstrapContext"`
	Label              any     `json:"Label"`
	Name               any     `json:"Name"`
	NameClaimType      string  `json:"NameClaimType"`
	RoleClaimType      string  `json:"RoleClaimType"`
	Claims             []claim `json:"Claims"`
}

type claim struct {
	Type           string         `json:"Type"`
	Value          string         `json:"Value"`
	ValueType      string         `json:"ValueType"`
	Issuer         string         `json:"Issuer"`
	OriginalIssuer string         `json:"OriginalIssuer"`
	Properties     map[string]any `json:"Properties"`
}

func newIdentity(keyID string) identity {
	id := identity{
		NameClaimType: "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
		RoleClaimType: "http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
		Claims:        []claim{},
	}
	if keyID == "" {
		return id
	}
	at := "WebJobsAuthLevel"
	id.AuthenticationType = &at
	id.IsAuthenticated = true
	level := "Function"
	if keyID == "master" {
		level = "Admin"
	}
	mk := func(t, v string) claim {
		return claim{Type: t, Value: v, ValueType: "http://www.w3.org/2001/XMLSchema#string",
			Issuer: "LOCAL AUTHORITY", OriginalIssuer: "LOCAL AUTHORITY", Properties: map[string]any{}}
	}
	id.Claims = append(id.Claims,
		mk("http://schemas.microsoft.com/2017/07/functions/claims/authlevel", level),
		mk("http://schemas.microsoft.com/2017/07/functions/claims/keyid", keyID))
	return id
}

// buildHTTPRequestData builds Data.req and the trigger's Metadata (docs/host-protocol.md §3.3).
func (h *Host) buildHTTPRequestData(r *http.Request, body []byte, params map[string]any, keyID string) (httpRequestData, map[string]any) {
	query := parseQuery(r.URL.RawQuery)
	headers := map[string][]string{}
	for k, vs := range r.Header {
		// Go canonicalises header names (Content-Type); the host keeps the client's spelling.
		headers[k] = append([]string(nil), vs...)
	}
	headers["Host"] = []string{r.Host}
	rawURL := "http://" + r.Host + r.URL.RequestURI()
	req := httpRequestData{
		URL:        rawURL,
		Method:     strings.ToUpper(r.Method),
		Query:      query,
		Headers:    headers,
		Params:     params,
		Identities: []identity{newIdentity(keyID)},
	}
	if len(body) > 0 {
		var s string
		if isOctetOrMultipart(r.Header.Get("Content-Type")) {
			s = base64.StdEncoding.EncodeToString(body)
		} else {
			s = strings.ToValidUTF8(string(body), "\uFFFD")
		}
		req.Body = &s
	}

	meta := map[string]any{}
	// [inferred] exact shape of HTTP binding data: top-level scalar properties of a JSON body first (as
	// strings, then JSON-quoted per docs/host-protocol.md §3.2), then query keys (except code) and route values, which win.
	if len(body) > 0 && isJSONContentType(r.Header.Get("Content-Type")) {
		var obj map[string]json.RawMessage
		if json.Unmarshal(body, &obj) == nil {
			for k, v := range obj {
				switch jsonKind(v) {
				case '"':
					var s string
					_ = json.Unmarshal(v, &s)
					meta[k] = EncodeValue(s)
				case '0', 't', 'f':
					meta[k] = EncodeValue(dotNetScalar(v))
				}
			}
		}
	}
	metaQuery := map[string]string{}
	for _, p := range query {
		v := strings.Join(p.values, ",")
		metaQuery[p.key] = v
		if !strings.EqualFold(p.key, "code") {
			meta[p.key] = EncodeValue(v)
		}
	}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if s, ok := params[k].(string); ok {
			meta[k] = EncodeValue(s)
		}
	}
	metaHeaders := map[string]string{}
	for k, vs := range headers {
		metaHeaders[k] = strings.Join(vs, ",")
	}
	meta["Query"] = metaQuery
	meta["Headers"] = metaHeaders
	return req, meta
}

func isOctetOrMultipart(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		mt = strings.ToLower(strings.TrimSpace(strings.Split(ct, ";")[0]))
	}
	return mt == "application/octet-stream" || strings.HasPrefix(mt, "multipart/")
}

func isJSONContentType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")
}
