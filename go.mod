module github.com/graphwebhooks/graph-webhooks-go

go 1.26.0

// The newest Go 1.26 patch release, so builds get the standard library's security fixes; with the default
// GOTOOLCHAIN=auto a Go older than this downloads it from the module proxy.
toolchain go1.26.11

require (
	github.com/Azure/azure-sdk-for-go/sdk/azcore v1.24.0
	github.com/Azure/azure-sdk-for-go/sdk/azidentity v1.15.0
	github.com/Azure/azure-sdk-for-go/sdk/data/aztables v1.4.0
	// v1.8.0, not later: 1.8.1 added an Apache Arrow list format that links ~3 MB of Arrow into every
	// binary using the container package; the checkpoint only gets and puts one blob. Later fixes are in SAS,
	// batch and structured-message downloads, which it does not use.
	github.com/Azure/azure-sdk-for-go/sdk/storage/azblob v1.8.0
	github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue/v2 v2.1.2
	golang.org/x/sync v0.24.0
	// PKCS#12 (PFX) without a password: how a Key Vault reference delivers the rich-notification certificate.
	software.sslmate.com/src/go-pkcs12 v0.7.4
)

require (
	github.com/Azure/azure-sdk-for-go/sdk/internal v1.13.0 // indirect
	github.com/Azure/azure-sdk-for-go/sdk/storage/internal v0.1.0 // indirect
	github.com/AzureAD/microsoft-authentication-library-for-go v1.10.1 // indirect
	github.com/golang-jwt/jwt/v5 v5.3.1 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/kylelemons/godebug v1.1.0 // indirect
	github.com/pkg/browser v0.0.0-20240102092130-5ac0b6a4141c // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/net v0.62.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/text v0.43.0 // indirect
)
