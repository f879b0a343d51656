package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestBaselineAnswers(t *testing.T) {
	post := func(body string) map[string]any {
		t.Helper()
		w := httptest.NewRecorder()
		webhook(w, httptest.NewRequest(http.MethodPost, "/webhook", strings.NewReader(body)))
		if w.Code != 200 || w.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("HTTP %d %q", w.Code, w.Header().Get("Content-Type"))
		}
		var out struct {
			Outputs struct {
				Res map[string]any `json:"res"`
			}
		}
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatal(err)
		}
		return out.Outputs.Res
	}
	res := post(`{"Data":{"req":{"Method":"POST","Query":{"code":"k","validationToken":"Validation: a+b <c>"},"Params":{}}},"Metadata":{}}`)
	if res["statusCode"] != 200.0 || res["body"] != "Validation: a+b <c>" {
		t.Errorf("handshake answered %v", res)
	}
	res = post(`{"Data":{"req":{"Method":"POST","Query":{"code":"k"},"Body":"{\"value\":[]}"}},"Metadata":{}}`)
	if res["statusCode"] != 202.0 || res["body"] != "" {
		t.Errorf("notifications answered %v", res)
	}
}
