// Package checkpoint keeps the delta-query checkpoint of a Graph resource in one blob of the
// AzureWebJobsStorage account, guarded by ETags so that two workers can never overwrite each other's
// progress.
//
// The blob is delta/<resource>.json in the container RESYNC_CONTAINER (default graph-webhooks), created on
// demand. It holds one JSON object (Checkpoint): the delta link where the next pass starts, when the last
// pass completed, the hash of the GRAPH_USER_SELECT that link was made with, and the pass in progress with
// the link of its next page, so that a run killed between pages resumes where it stopped.
//
// Every write is conditional: Save with the ETag Load returned sends If-Match, Save with an empty ETag
// (nothing stored yet) sends If-None-Match: *. A lost race is ErrConflict, never a silent overwrite.
package checkpoint

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/family"
	"github.com/graphwebhooks/graph-webhooks-go/internal/storagequeue"
)

// Version is the schema version of the stored checkpoint.
const Version = 1

// maxBlob bounds what Load reads: a checkpoint is a few KiB (two delta links).
const maxBlob = 1 << 20

// Checkpoint is the delta-query state of one resource.
type Checkpoint struct {
	V        int    `json:"v"`
	Resource string `json:"resource"`
	// SelectHash is SelectHash(GRAPH_USER_SELECT) of the pass that produced DeltaLink: $select is baked
	// into delta links, so a different hash means the link returns the wrong properties.
	SelectHash string `json:"selectHash,omitempty"`
	// DeltaLink is where the next pass starts: the @odata.deltaLink of the last completed pass.
	DeltaLink string `json:"deltaLink,omitempty"`
	// LastCompleted is when the last pass completed; zero when none ever did.
	LastCompleted time.Time `json:"lastCompleted,omitzero"`
	// Pass is the pass in progress, nil when idle.
	Pass *Pass `json:"pass,omitempty"`
	// LastPass is the pass that completed last (with Link and Prev cleared), kept for operators.
	LastPass *Pass `json:"lastPass,omitempty"`
	// Writer is a random value each writer sets, so that it can recognise its own write when the answer to
	// it was lost (a retried PUT then fails its own If-Match).
	Writer string `json:"writer,omitempty"`
}

// Pass is one delta-query pass: from the start link (or a full round) through every nextLink to the
// deltaLink.
type Pass struct {
	ID   string `json:"id"`
	Full bool   `json:"full,omitempty"` // a full round (fullsync events), not changes since DeltaLink
	// Latest: a first pass that only takes a deltaLink from now ($deltatoken=latest), emitting nothing.
	Latest bool `json:"latest,omitempty"`
	// Link is the next page to fetch; "" is the start of the pass (DeltaStart, or Checkpoint.DeltaLink).
	Link string `json:"link"`
	// Prev is the link of the page whose completion set Link ("" before the first page). A redelivered
	// continuation for Prev means the continuation for Link may have been lost.
	Prev string `json:"prev,omitempty"`
	// Origin is the link of the message whose invocation set Link ("" being the start of the pass), when
	// that invocation took several pages (nil otherwise): its redelivery, after the invocation failed, means
	// the same as one of Prev.
	Origin *string `json:"origin,omitempty"`
	// SelectHash is the hash of the select the pass's links were made with (set by its first page).
	SelectHash string    `json:"selectHash,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	Started    time.Time `json:"started"`
	Updated    time.Time `json:"updated"`
	// Wait is set while a step deliberately waits (Graph's Retry-After): the pass is not stalled before it.
	Wait     time.Time `json:"wait,omitzero"`
	Pages    int       `json:"pages"`
	Events   int       `json:"events"`
	Restarts int       `json:"restarts,omitempty"` // restarted as full after an expired token
	// Again holds the reason of a request that arrived while this pass ran. The pass may already be past
	// the changes that request is about, so when it completes a follow-up pass starts from its deltaLink.
	Again string `json:"again,omitempty"`
	// Look marks a pass that looks again after one that found nothing (delta can lag the notification);
	// it is never followed by another look.
	Look bool `json:"look,omitempty"`
	// Carry is an object whose delta entries may go on past this page (a group whose members@delta spans
	// pages): its event waits for the page where it ends, and the part read so far is kept here.
	Carry *Carry `json:"carry,omitempty"`
}

// Carry is the part of one object's delta entries read on earlier pages of a pass.
type Carry struct {
	ID      string         `json:"id"`
	Object  map[string]any `json:"object"`
	Added   []string       `json:"added,omitempty"`
	Removed []string       `json:"removed,omitempty"`
}

// ETag is the blob's entity tag as Load or Save returned it; "" means no blob.
type ETag string

// ErrConflict means another writer changed (or created, or deleted) the checkpoint since it was loaded.
var ErrConflict = errors.New("checkpoint: changed by another writer")

// ErrCorrupt means the stored checkpoint cannot be read as this version's schema.
var ErrCorrupt = errors.New("checkpoint: stored checkpoint is not readable")

// Options adjusts how the store reaches storage.
type Options struct {
	Transport policy.Transporter // nil: the SDK's default
	// Credential is used for identity-based settings; nil means the managed identity credential
	// storagequeue.ManagedIdentity builds (AzureWebJobsStorage__clientId). Never the Graph app's secret.
	Credential azcore.TokenCredential
}

// Store reads and writes checkpoints in one container.
type Store struct {
	cc *container.Client

	mu      sync.Mutex
	created bool // the container is known to exist
}

// New builds a store for container in the account of AzureWebJobsStorage (a connection string, or the
// identity-based blob service URL). Nothing is contacted until Load or Save.
func New(s config.StorageSettings, containerName string, o Options) (*Store, error) {
	if containerName == "" {
		containerName = config.DefaultResyncContainer
	}
	opts := &service.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: o.Transport}}
	var svc *service.Client
	switch {
	case s.ConnectionString != "":
		c, err := service.NewClientFromConnectionString(s.ConnectionString.Reveal(), opts)
		if err != nil {
			// The SDK's message could quote the string, key included: keep only the fact.
			return nil, errors.New("AzureWebJobsStorage: the connection string is not usable by the blob client")
		}
		svc = c
	case s.BlobServiceURL != "":
		cred := o.Credential
		if cred == nil {
			var err error
			if cred, err = storagequeue.ManagedIdentity(s); err != nil {
				return nil, err
			}
		}
		c, err := service.NewClient(s.BlobServiceURL, cred, opts)
		if err != nil {
			return nil, fmt.Errorf("AzureWebJobsStorage__blobServiceUri: %w", err)
		}
		svc = c
	case s.QueueServiceURL != "":
		return nil, errors.New("AzureWebJobsStorage: identity-based settings name no blob service: set AzureWebJobsStorage__blobServiceUri or __accountName")
	default:
		return nil, errors.New("AzureWebJobsStorage is not set: the resync keeps its checkpoint there")
	}
	return &Store{cc: svc.NewContainerClient(containerName)}, nil
}

// BlobName is where the checkpoint of a resync scope is stored: delta/users.json, delta/groups.json,
// delta/drives/{drive-id}.json. It is lower-cased, except for the id of a family whose ids are
// case-sensitive (a drive's).
func BlobName(resource string) string {
	coll, id, hasID := strings.Cut(strings.Trim(resource, "/"), "/")
	r := strings.ToLower(coll)
	if r == "" {
		r = config.Users
	}
	if hasID {
		if f, ok := family.ForCollection(coll); !ok || !f.CaseSensitiveIDs {
			id = strings.ToLower(id)
		}
		r += "/" + id
	}
	return "delta/" + r + ".json"
}

// Load reads the checkpoint of resource. A missing blob (or container) gives the zero Checkpoint for
// the resource and an empty ETag.
func (s *Store) Load(ctx context.Context, resource string) (Checkpoint, ETag, error) {
	resp, err := s.cc.NewBlockBlobClient(BlobName(resource)).DownloadStream(ctx, nil)
	if bloberror.HasCode(err, bloberror.BlobNotFound, bloberror.ContainerNotFound) {
		return Checkpoint{V: Version, Resource: resource}, "", nil
	}
	if err != nil {
		return Checkpoint{}, "", fmt.Errorf("checkpoint: read %s: %w", BlobName(resource), storagequeue.Scrub(err))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBlob+1))
	if err != nil {
		return Checkpoint{}, "", fmt.Errorf("checkpoint: read %s: %w", BlobName(resource), storagequeue.Scrub(err))
	}
	var etag ETag
	if resp.ETag != nil {
		etag = ETag(*resp.ETag)
	}
	cp, err := decode(b, resource)
	if err != nil {
		return Checkpoint{}, etag, fmt.Errorf("%w: %s: %v (delete the blob to start over)", ErrCorrupt, BlobName(resource), err)
	}
	return cp, etag, nil
}

// Save writes cp for resource if the blob still has etag (If-Match), or does not exist yet when etag is
// empty (If-None-Match: *). It returns the new ETag; a lost race is ErrConflict.
func (s *Store) Save(ctx context.Context, resource string, cp Checkpoint, etag ETag) (ETag, error) {
	cp.V, cp.Resource = Version, resource
	b, err := json.Marshal(cp)
	if err != nil {
		return "", fmt.Errorf("checkpoint: encode: %w", err)
	}
	cond := &blob.ModifiedAccessConditions{}
	if etag == "" {
		cond.IfNoneMatch = to.Ptr(azcore.ETagAny)
	} else {
		cond.IfMatch = to.Ptr(azcore.ETag(etag))
	}
	bb := s.cc.NewBlockBlobClient(BlobName(resource))
	upload := func() (blockblob.UploadResponse, error) {
		return bb.Upload(ctx, streaming.NopCloser(bytes.NewReader(b)), &blockblob.UploadOptions{
			HTTPHeaders:      &blob.HTTPHeaders{BlobContentType: to.Ptr("application/json")},
			AccessConditions: &blob.AccessConditions{ModifiedAccessConditions: cond},
		})
	}
	resp, err := upload()
	if bloberror.HasCode(err, bloberror.ContainerNotFound) {
		if err := s.ensureContainer(ctx); err != nil {
			return "", err
		}
		resp, err = upload()
	}
	switch {
	case bloberror.HasCode(err, bloberror.ConditionNotMet, bloberror.BlobAlreadyExists, bloberror.BlobNotFound):
		return "", ErrConflict
	case err != nil:
		return "", fmt.Errorf("checkpoint: write %s: %w", BlobName(resource), storagequeue.Scrub(err))
	case resp.ETag == nil:
		return "", fmt.Errorf("checkpoint: write %s: no ETag in the answer", BlobName(resource))
	}
	return ETag(*resp.ETag), nil
}

func (s *Store) ensureContainer(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.created {
		return nil
	}
	_, err := s.cc.Create(ctx, nil)
	if err != nil && !bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
		return fmt.Errorf("checkpoint: create container: %w", storagequeue.Scrub(err))
	}
	s.created = true
	return nil
}

func decode(b []byte, resource string) (Checkpoint, error) {
	if len(b) > maxBlob {
		return Checkpoint{}, fmt.Errorf("larger than %d bytes", maxBlob)
	}
	var cp Checkpoint
	if err := json.Unmarshal(b, &cp); err != nil {
		return Checkpoint{}, err
	}
	if cp.V != Version {
		return Checkpoint{}, fmt.Errorf("version %d is not supported (want %d)", cp.V, Version)
	}
	if !strings.EqualFold(cp.Resource, resource) {
		return Checkpoint{}, fmt.Errorf("holds resource %q, not %q", cp.Resource, resource)
	}
	if cp.Pass != nil && cp.Pass.ID == "" {
		return Checkpoint{}, errors.New("the pass in progress has no id")
	}
	return cp, nil
}
