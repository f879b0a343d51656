package jwtcheck

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
)

const (
	testTenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	testClient = "11111111-2222-3333-4444-555555555555"
)

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestFakeGraphTokens checks the validator against the tokens and the published keys of the Graph double.
func TestFakeGraphTokens(t *testing.T) {
	fg := fakegraph.New(fakegraph.NewOptions(testTenant, testClient, "secret"))
	t.Cleanup(fg.Close)
	keys := NewJWKS(KeysURL(fg.AuthorityHost()), fg.Client(), time.Now)
	v := &Validator{Keys: keys, ClientID: testClient, TenantID: testTenant, AuthorityHost: fg.AuthorityHost()}
	now := time.Now()

	good := []struct {
		name string
		o    fakegraph.ValidationTokenOptions
	}{
		{"v1 appid", fakegraph.ValidationTokenOptions{}},
		{"v2 azp", fakegraph.ValidationTokenOptions{Version: "2.0"}},
	}
	for _, tt := range good {
		t.Run(tt.name, func(t *testing.T) {
			c, err := v.Validate(ctxT(t), fg.ValidationTokenWith(tt.o), now)
			if err != nil {
				t.Fatalf("a good token was refused: %v", err)
			}
			if c.Caller != GraphChangeTrackingAppID {
				t.Errorf("caller %q", c.Caller)
			}
		})
	}

	bad := []struct {
		name  string
		o     fakegraph.ValidationTokenOptions
		check string
	}{
		{"bad signature", fakegraph.ValidationTokenOptions{BadSignature: true}, "signature"},
		{"wrong audience", fakegraph.ValidationTokenOptions{Audience: "99999999-2222-3333-4444-555555555555"}, "aud"},
		{"wrong caller v1", fakegraph.ValidationTokenOptions{Caller: "00000003-0000-0000-c000-000000000000"}, "caller"},
		{"wrong caller v2", fakegraph.ValidationTokenOptions{Version: "2.0", Caller: testClient}, "caller"},
		{"expired", fakegraph.ValidationTokenOptions{Expired: true}, "exp"},
		{"other tenant", fakegraph.ValidationTokenOptions{TenantID: "00000000-0000-0000-0000-0000000000aa"}, "issuer"},
		{"foreign issuer", fakegraph.ValidationTokenOptions{Issuer: "https://evil.example/" + testTenant + "/v2.0"}, "issuer"},
		{"unknown key", fakegraph.ValidationTokenOptions{KeyID: "not-a-published-kid"}, "kid"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			tok := fg.ValidationTokenWith(tt.o)
			_, err := v.Validate(ctxT(t), tok, now)
			var ie *InvalidError
			if !errors.As(err, &ie) {
				t.Fatalf("err = %v, want an *InvalidError", err)
			}
			if ie.Check != tt.check {
				t.Errorf("check = %q, want %q (%v)", ie.Check, tt.check, err)
			}
			if strings.Contains(err.Error(), tok) || strings.Contains(err.Error(), strings.Split(tok, ".")[2]) {
				t.Error("the error quotes the token")
			}
		})
	}

	// The expired token was valid when the notification arrived: judged at that time, it passes.
	tok := fg.ValidationTokenWith(fakegraph.ValidationTokenOptions{Expired: true})
	if _, err := v.Validate(ctxT(t), tok, now.Add(-90*time.Minute)); err != nil {
		t.Errorf("judged at its arrival, an expired token: %v", err)
	}
	// One fetch for all of the above, plus at most one for the unknown kid.
	if n := keys.Fetches(); n > 2 {
		t.Errorf("key set fetched %d times", n)
	}
}

// TestTenantKeysFromDiscovery checks the keys come from the tenant's own discovery document, through the
// Graph double, which serves Entra ID's documents: never from /common.
func TestTenantKeysFromDiscovery(t *testing.T) {
	fg := fakegraph.New(fakegraph.NewOptions(testTenant, testClient, "secret"))
	t.Cleanup(fg.Close)
	v := &Validator{Keys: NewTenantJWKS(fg.AuthorityHost(), testTenant, fg.Client(), time.Now), ClientID: testClient, TenantID: testTenant, AuthorityHost: fg.AuthorityHost()}
	if _, err := v.Validate(ctxT(t), fg.ValidationTokenWith(fakegraph.ValidationTokenOptions{}), time.Now()); err != nil {
		t.Fatalf("a good token was refused: %v", err)
	}
	if n := fg.Count("GET", "/"+testTenant+"/v2.0/.well-known/openid-configuration"); n != 1 {
		t.Errorf("the tenant's discovery document was read %d times, want 1", n)
	}
	if n := fg.Count("GET", "/"+testTenant+"/discovery/v2.0/keys"); n != 1 {
		t.Errorf("the tenant's key set was read %d times, want 1", n)
	}
	if n := fg.Count("GET", "/common/"); n != 0 {
		t.Errorf("/common was read %d times", n)
	}
}
