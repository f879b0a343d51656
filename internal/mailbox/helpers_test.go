package mailbox_test

import (
	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"

	"github.com/graphwebhooks/graph-webhooks-go/internal/fakegraph"
)

func azClientOptions(fg *fakegraph.Server) azcore.ClientOptions {
	return azcore.ClientOptions{Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: fg.AuthorityHost()}, Transport: fg.Client()}
}
