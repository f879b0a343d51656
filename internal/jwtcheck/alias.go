// Package jwtcheck is the product's name for the validation-token checks of package richnotify, where they
// live so that code outside this module can use them with the rich-notification decryption they belong with.
// See richnotify.TokenValidator for the checks a token passes, in order.
package jwtcheck

import "github.com/graphwebhooks/graph-webhooks-go/richnotify"

// GraphChangeTrackingAppID is the app that signs Graph's validation tokens: the caller every token must name.
const GraphChangeTrackingAppID = richnotify.GraphChangeTrackingAppID

// DefaultAuthorityHost is the public cloud's Entra ID host.
const DefaultAuthorityHost = richnotify.DefaultAuthorityHost

// DefaultSkew is the clock tolerance on exp and nbf.
const DefaultSkew = richnotify.DefaultSkew

// Key-set cache defaults (see richnotify.JWKS).
const (
	DefaultTTL        = richnotify.DefaultTTL
	DefaultMinRefetch = richnotify.DefaultMinRefetch
	DefaultStaleFor   = richnotify.DefaultStaleFor
)

type (
	// KeySource returns the RSA public key for a key id.
	KeySource = richnotify.KeySource
	// Validator checks tokens for one app in one tenant.
	Validator = richnotify.TokenValidator
	// InvalidError says which check a token failed.
	InvalidError = richnotify.TokenError
	// Claims are the checked claims of an accepted token.
	Claims = richnotify.Claims
	// JWKS fetches and caches a JSON Web Key Set.
	JWKS = richnotify.JWKS
)

// ErrUnknownKey is returned by a KeySource for a kid that is not among the published keys.
var ErrUnknownKey = richnotify.ErrUnknownKey

// IsInvalid reports whether err says the token is bad, as opposed to the keys being unavailable.
var IsInvalid = richnotify.IsInvalidToken

// KeysURL is the key set Entra ID publishes for all tenants at an authority host.
var KeysURL = richnotify.KeysURL

// DiscoveryURL is a tenant's OpenID Connect discovery document.
var DiscoveryURL = richnotify.DiscoveryURL

// NewJWKS returns a key source for a key set URL.
var NewJWKS = richnotify.NewJWKS

// NewTenantJWKS returns a key source for the signing keys the tenant's own discovery document names.
var NewTenantJWKS = richnotify.NewTenantJWKS
