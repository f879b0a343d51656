package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// The tenant and client state the benchmarked handler is configured with, so that every notification in
// the load passes verification and takes the full verify+split+encode path.
const (
	benchTenant      = "8c1f4b2e-0d6a-4f57-9a3e-2b9d7c6e5f41"
	benchClientState = "bench-client-state-0123456789abcdef"
	benchFunctionKey = "bench-function-key"
	benchSiteURL     = "https://graph-hooks.azurewebsites.net/api/webhook"
)

// handlerSettings are the app settings both binaries are started with: a complete, valid configuration, as in
// Azure (nothing is contacted: the handler builds its Graph and storage clients on first use).
func handlerSettings() map[string]string {
	return map[string]string{
		"FUNCTIONS_WORKER_RUNTIME": "custom",
		"AzureWebJobsStorage":      "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;QueueEndpoint=http://127.0.0.1:1/devstoreaccount1;BlobEndpoint=http://127.0.0.1:1/devstoreaccount1",
		"AZURE_TENANT_ID":          benchTenant,
		"AZURE_CLIENT_ID":          "3f2a1b0c-9d8e-4f7a-8b6c-5d4e3f2a1b0c",
		"AZURE_CLIENT_SECRET":      "bench-secret",
		"GRAPH_NOTIFICATION_URL":   benchSiteURL + "?code=" + benchFunctionKey,
		"GRAPH_CLIENT_STATE":       benchClientState,
		"RENEW_SCHEDULE":           "0 0 * * * *",
	}
}

// notificationBody is Graph's POST with n genuine change notifications for users, as webhook/bench_test.go
// builds it.
func notificationBody(n int) string {
	items := make([]string, n)
	for i := range n {
		items[i] = fmt.Sprintf(`{"subscriptionId":"d850b120-7d8e-4a3b-9c2d-1e0f2a3b4c5d","subscriptionExpirationDateTime":"2026-12-20T10:00:00+00:00","changeType":"updated","clientState":%q,"resource":"Users/6e1f%04d-7c3a-4b2d-9e8f-0a1b2c3d4e5f","resourceData":{"@odata.type":"#Microsoft.Graph.User","@odata.id":"Users/6e1f%04d-7c3a-4b2d-9e8f-0a1b2c3d4e5f","id":"6e1f%04d-7c3a-4b2d-9e8f-0a1b2c3d4e5f","organizationId":%q,"eventTime":"2026-11-27T09:59:58.24Z","sequenceNumber":%d},"tenantId":%q}`,
			benchClientState, i, i, i, benchTenant, 638700000000000001+i, benchTenant)
	}
	return `{"value":[` + strings.Join(items, ",") + `]}`
}

// validationToken is what Graph's handshake carries, already URL-decoded once by the host.
const validationToken = "Validation: Testing client application reachability for subscription Request-Id: 5b4a6c1e-2f3d-4e5a-8b9c-0d1e2f3a4b5c"

// notificationEnvelope is the host's invocation request for Graph POSTing body to the webhook (docs/host-protocol.md §3.3).
func notificationEnvelope(body string) []byte {
	return hostEnvelope(map[string]string{"code": benchFunctionKey}, "application/json; charset=utf-8", &body)
}

// handshakeEnvelope is the host's invocation request for Graph's validation POST: the token in the query
// string, text/plain and no body, so Data.req.Body is absent.
func handshakeEnvelope(token string) []byte {
	return hostEnvelope(map[string]string{"code": benchFunctionKey, "validationToken": token}, "text/plain; charset=utf-8", nil)
}

// hostEnvelope builds {"Data":{"req":…},"Metadata":…} as the Functions host does for an httpTrigger named req
// (docs/host-protocol.md §3.1–§3.3): PascalCase request fields, Query as strings, Headers as string arrays, the
// function-key identity, Body as raw text, Metadata with Query, Headers (joined), each query key but code
// as a JSON-quoted string, and sys.
func hostEnvelope(query map[string]string, contentType string, body *string) []byte {
	q := url.Values{}
	for k, v := range query {
		q.Set(k, v)
	}
	length := 0
	if body != nil {
		length = len(*body)
	}
	headers := map[string][]string{
		"Content-Type":   {contentType},
		"Content-Length": {strconv.Itoa(length)},
		"Host":           {"graph-hooks.azurewebsites.net"},
		"Accept":         {"*/*"},
	}
	req := map[string]any{
		"Url":     benchSiteURL + "?" + q.Encode(),
		"Method":  "POST",
		"Query":   query,
		"Headers": headers,
		"Params":  map[string]any{},
		"Identities": []any{map[string]any{
			"AuthenticationType": "WebJobsAuthLevel", "IsAuthenticated": true,
			"Actor": nil, "BootstrapContext": nil, "Label": nil, "Name": nil,
			"NameClaimType": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
			"RoleClaimType": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
			"Claims": []any{
				claim("http://schemas.microsoft.com/2017/07/functions/claims/authlevel", "Function"),
				claim("http://schemas.microsoft.com/2017/07/functions/claims/keyid", "default"),
			},
		}},
	}
	if body != nil {
		req["Body"] = *body
	}
	meta := map[string]any{}
	for k, v := range query {
		if k != "code" {
			b, _ := json.Marshal(v)
			meta[k] = string(b) // docs/host-protocol.md §3.2: a string arrives JSON-quoted
		}
	}
	joined := map[string]string{}
	for k, vs := range headers {
		joined[k] = strings.Join(vs, ",")
	}
	meta["Query"] = query
	meta["Headers"] = joined
	meta["sys"] = map[string]string{"MethodName": "webhook", "UtcNow": "2026-11-27T10:00:00.1234567Z", "RandGuid": "2f0e6c1a-3b4d-4e5f-8a9b-0c1d2e3f4a5b"}

	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // Newtonsoft does not escape <, > and &
	if err := enc.Encode(map[string]any{"Data": map[string]any{"req": req}, "Metadata": meta}); err != nil {
		panic(err) // only maps of strings: cannot fail
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func claim(typ, value string) map[string]any {
	return map[string]any{"Type": typ, "Value": value, "ValueType": "http://www.w3.org/2001/XMLSchema#string",
		"Issuer": "LOCAL AUTHORITY", "OriginalIssuer": "LOCAL AUTHORITY", "Properties": map[string]any{}}
}

// invocationAnswer is the part of a handler's answer the benchmark checks.
type invocationAnswer struct {
	Outputs struct {
		Res struct {
			StatusCode json.Number `json:"statusCode"`
			Body       string      `json:"body"`
		} `json:"res"`
		Notifications []struct {
			Notifications []json.RawMessage `json:"notifications"`
		} `json:"notifications"`
	} `json:"Outputs"`
}

// checkHandshake verifies an answer to handshakeEnvelope: the token echoed with status 200.
func checkHandshake(status int, body []byte) error {
	if status != 200 {
		return fmt.Errorf("handshake: HTTP %d: %.200s", status, body)
	}
	var a invocationAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return fmt.Errorf("handshake: %v: %.200s", err, body)
	}
	if a.Outputs.Res.StatusCode != "200" || a.Outputs.Res.Body != validationToken {
		return fmt.Errorf("handshake: answered status %s body %q, want 200 and the token", a.Outputs.Res.StatusCode, a.Outputs.Res.Body)
	}
	return nil
}

// checkNotifications verifies an answer to notificationEnvelope: 202, and (when queued > 0) that many
// notifications in the queue output, so the benchmark knows the full path ran.
func checkNotifications(status int, body []byte, queued int) error {
	if status != 200 {
		return fmt.Errorf("notifications: HTTP %d: %.200s", status, body)
	}
	var a invocationAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return fmt.Errorf("notifications: %v: %.200s", err, body)
	}
	if a.Outputs.Res.StatusCode != "202" {
		return fmt.Errorf("notifications: answered status %s, want 202: %.300s", a.Outputs.Res.StatusCode, body)
	}
	n := 0
	for _, m := range a.Outputs.Notifications {
		n += len(m.Notifications)
	}
	if n != queued {
		return fmt.Errorf("notifications: %d queued, want %d", n, queued)
	}
	return nil
}
