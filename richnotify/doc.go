// Package richnotify checks and opens Microsoft Graph's rich change notifications: the validation tokens
// Graph signs for every notification that carries resource data, and the encryptedContent that carries it.
// It uses the standard library only (and go-pkcs12 to read a PKCS#12 certificate), imports nothing of the
// handler around it, and can be used on its own.
//
// # Opening encryptedContent
//
// Graph encrypts each notification's resource for the certificate named by encryptionCertificateId (the
// subscriber's own label; docs/graph-facts.md in this repository cites Microsoft's documentation). A
// Decryptor holds the certificates by id and opens content in this order, stopping at the first failure
// with a *DecryptError whose Code names it:
//
//	certificate  encryptionCertificateId names a certificate the Decryptor holds (never a guess), and
//	             encryptionCertificateThumbprint is that certificate's SHA-1 thumbprint (hex, any case)
//	dataKey      base64; RSA-OAEP with SHA-1 and MGF1-SHA-1 under the certificate's private key; 32 bytes
//	signature    HMAC-SHA256 of the base64-decoded data under that key equals the base64-decoded
//	             dataSignature, compared in constant time; nothing is decrypted before this passes
//	data         AES-256-CBC, the IV being the key's first 16 bytes; whole blocks; PKCS#7 padding with
//	             every pad byte checked
//	plaintext    UTF-8 JSON: the resource as a GET would return it
//
// Errors never carry plaintext, key material or the content itself.
//
// # Validation tokens
//
// TokenValidator checks one token, ValidateAll every token of a notification body. A token is accepted
// when every one of these checks passes, in this order (the failing one is named in the *TokenError, never
// the token itself):
//
//	format     three base64url parts, JSON header and claims
//	alg        RS256 exactly ("none", HS256 and everything else are refused)
//	kid        the key id names a published RSA key (an unknown kid triggers one refetch of the key set)
//	signature  RSASSA-PKCS1-v1_5 with SHA-256 over header.claims
//	exp, nbf   exp required, nbf optional, both with Skew of tolerance, at the time asked for
//	aud        the app registration's client id; a string or an array containing it
//	caller     Graph's change-tracking app 0bf30f3b-4a52-48df-9a82-234910c4a086, read from azp on v2.0
//	           tokens and from appid on v1.0 tokens
//	issuer     the tenant: https://sts.windows.net/{tenant}/ (v1.0), {authority}{tenant}/ (v1.0 in a
//	           sovereign cloud) or {authority}{tenant}/v2.0 (v2.0); tid, when present, must be the tenant
//
// The signing keys come from Entra ID's published key set (JWKS, NewTenantJWKS), fetched and cached.
//
// # Certificates
//
// ParseCertificate reads what an app setting holds: PEM (private key, PKCS#8 or PKCS#1, and certificate,
// in any order) or base64 PKCS#12 without a password, as a Key Vault reference delivers a certificate.
// It refuses keys that are not RSA, RSA keys outside Graph's 2,048–4,096 bits, a certificate outside its
// validity at the time given, and a key that is not the certificate's. A *Certificate prints, logs and
// marshals as its public facts only; PublicBase64 is the part a subscription carries.
package richnotify
