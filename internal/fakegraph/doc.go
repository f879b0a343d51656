// Package fakegraph is a test double — not an implementation — of Microsoft Graph v1.0 (the
// subset the product uses: subscriptions to `users`, `groups`, drives and Teams messages, users, groups and
// their members, deleted items, drive items, Teams messages as rich notifications, delta, $batch) and of the Entra ID token endpoints, served over TLS on 127.0.0.1
// with fault injection, a request log and a record of every delivery to subscribers. It follows
// docs/graph-facts.md (cited below as "§n") and docs/sdk-facts.md ("Identity") to the letter;
// every choice beyond them is marked "choice" (or [inferred]/UNCONFIRMED, as they mark it) in a
// comment next to the code.
//
// # What it models
//
// Entra ID (docs/sdk-facts.md, "Identity"): GET /{tenant}/v2.0/.well-known/openid-configuration (issuer
// on the double's host, so MSAL with instance discovery disabled accepts it), the v1 metadata at
// /{tenant}/.well-known/openid-configuration, JWKS at /common/discovery/v2.0/keys (and
// /{tenant}/discovery/v2.0/keys, /common/discovery/keys), and POST /{tenant}/oauth2/v2.0/token
// for grant_type=client_credentials with client_secret (post or basic) or a client_assertion
// (RS256/PS256 signed by Options.ClientCert's key, x5t or x5t#S256, aud = token endpoint,
// iss = sub = client id, exp/nbf). The scope must be "<resource>/.default" where resource is
// https://graph.microsoft.com or the double's own URL (choice); the OIDC scopes MSAL appends
// (openid profile offline_access) are ignored. Errors use AADSTS codes in Entra's error JSON.
// Access tokens are v1-shaped app tokens (aud, iss https://sts.windows.net/{tid}/, appid, roles,
// tid, 3599 s). Managed identity: the App Service protocol 2019-08-01 exactly as MSAL Go v1.10
// (azidentity v1.15) sends it — GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=…
// [&client_id=…] with X-IDENTITY-HEADER — answered with access_token, expires_on (unix seconds as
// a string), resource, token_type, client_id. ValidationToken / ValidationTokenWith mint Graph's
// validationTokens JWTs (docs/graph-facts.md §2.4), good or bad.
//
// Graph (all routes need a bearer token issued by this double; 401/403 in Graph's error form).
// Application roles are checked per resource: /users needs User.Read.All (or User.ReadWrite.All,
// Directory.Read.All, Directory.ReadWrite.All); /groups GroupMember.Read.All or higher (Group.Read.All,
// Group.ReadWrite.All, the Directory ones); a subscription to groups and a deleted group
// Group.Read.All or higher; a subscription to users and a deleted user a user role. Tokens carry
// Options.AppRoles (default User.Read.All and Group.Read.All, plus each family's: Files.Read.All, Mail.Read, Calendars.Read).
//   - POST /v1.0/subscriptions (docs/graph-facts.md §1.1–1.3): resource users, users/{id}, groups or
//     groups/{id} (one quota for both); field validation; users and groups accept only updated
//     and deleted ("Invalid 'changeType' attribute: 'created'"); HTTPS URLs (http:// only for
//     loopback, choice); expiry under 45 min raised to 45 min; beyond 41,760 min refused with 400 when
//     RejectExpiryBeyondMax (stricter than Graph, on purpose); 409 "Subscription Id <id> already
//     exists for the requested combination" for the same resource + changeType set of this app; 403
//     beyond MaxSubscriptions (docs/graph-facts.md §3.2); then the validation handshake on notificationUrl and on
//     lifecycleNotificationUrl (twice if equal): POST url?<original query>&validationToken=<token,
//     query-escaped, with spaces and ':'>, Content-Type text/plain; charset=utf-8, empty body; the
//     reply must be 200 within HandshakeTimeout with the exact token as body (and text/plain unless
//     LenientHandshake), else 400 "Subscription validation request failed. Must respond with 200 OK
//     to this request." / "Subscription validation request timed out." / "Validation error:
//     Response must exactly match validationToken query parameter.". 201 echoes clientState.
//   - GET /v1.0/subscriptions (this app's only, clientState null, no query options, pages of
//     SubscriptionPageSize via @odata.nextLink), GET/PATCH/DELETE /v1.0/subscriptions/{id},
//     POST /v1.0/subscriptions/{id}/reauthorize (204) (docs/graph-facts.md §4, §5). PATCH takes
//     expirationDateTime and notificationUrl (a changed URL is re-validated); lifecycleNotificationUrl
//     cannot be added or changed (400). Expiry is evaluated with Options.Clock: expired or deleted
//     subscriptions answer 404 and get no notifications.
//   - GET /v1.0/users/{id or userPrincipalName} ($select, else Graph's default set), GET /v1.0/users,
//     GET /v1.0/users/delta (docs/graph-facts.md §6: nextLink/deltaLink, $deltatoken=latest, @removed
//     changed/deleted, $select filtering, syncStateNotFound after ExpireDeltaTokens or 7 days),
//     GET /v1.0/directory/deletedItems/{id}, POST /v1.0/directory/deletedItems/{id}/restore.
//     404 body: Request_ResourceNotFound "Resource '<id>' does not exist or one of its queried
//     reference-property objects are not present.". A soft-deleted user 404s on /users/{id}
//     ([inferred], docs/graph-facts.md §3.4).
//   - Groups: GET /v1.0/groups/{id} ($select, else a default set; 404 when soft-deleted or
//     within replication lag; $select=members is ignored), GET /v1.0/groups
//     (GroupPageSize per page), GET /v1.0/groups/{id}/members (direct members as {@odata.type, id},
//     GroupMembersPerPage per page; a member that is a group of the double is #microsoft.graph.group,
//     any other id #microsoft.graph.user, choice), GET /v1.0/groups/delta (as users/delta, plus
//     members@delta when $select names members: every member in a full round and for a created or
//     restored group, else members added and removed since the token, removed ones with
//     "@removed":{"reason":"deleted"}; at most GroupPageSize groups and GroupMembersPerPage
//     members@delta entries per page, so a large group spans consecutive pages, [inferred] its
//     properties on the first part only; $filter unsupported, choice), GET and POST .../restore on
//     /v1.0/directory/deletedItems/{id} for groups (@odata.type #microsoft.graph.group), and GET
//     /v1.0/directory/deletedItems/microsoft.graph.group.
//   - Drives (docs/graph-facts.md §10.1; drives.go, drives_delta.go): drives (AddDrive or Options.Drives; ids "b!" and 64
//     base64url characters) hold a tree of files and folders under a root item (root facet), with Graph's
//     shapes: business item ids of 34 upper-case letters and digits sharing the drive's first 8, name,
//     size (a folder's is the total below it), file {mimeType} or folder {childCount}, eTag "{GUID},n"
//     (any change) and cTag "c:{GUID},n" (content), created/lastModifiedDateTime, fileSystemInfo,
//     parentReference {driveType, driveId, id} without path. POST /v1.0/subscriptions takes
//     drives/{drive-id}/root of an existing drive: changeType updated only (others refused with
//     "Invalid 'changeType' attribute"), at most 42,300 minutes (400 beyond when
//     RejectExpiryBeyondMax), no includeResourceData ("File Services workload is not enabled for rich
//     notifications."), role Files.Read.All, Files.ReadWrite.All, Sites.Read.All or Sites.ReadWrite.All,
//     at most DriveMaxSubscriptions per drive over all apps (UNCONFIRMED guidance, default 100).
//     GET /v1.0/drives/{drive-id}/root/delta: no token enumerates the drive's live items;
//     token=latest gives no items and a deltaLink from now; a deltaLink's token gives each item changed
//     since, once, in its latest state, in the order of its first change, with the root and every
//     ancestor folder of a change (unless DriveNoParents or the deltaExcludeParent request header or
//     Prefer value, header form UNCONFIRMED); deleted items carry {"deleted":{"state":"deleted"}}, id,
//     parentReference and their file or folder facet only; in delta a business item has no cTag
//     (Graph's delta page). Pages of DrivePageSize (default 200, UNCONFIRMED) or $top (at most
//     DriveMaxTop, default 1000, UNCONFIRMED: a OneDrive maintainer's figure, larger values lowered,
//     choice), linked by @odata.nextLink then @odata.deltaLink, both with token=; a round's pages are a
//     stable snapshot (later changes go to the next round). $select (unknown names 400; id and the
//     deleted facet always kept, choice) and $top are carried into the links. An expired
//     (ExpireDriveDeltaTokens), unreadable or foreign token answers 410 Gone, code resyncRequired,
//     innerError {date, request-id} as observed (DriveResyncCode adds a code, e.g. the documented
//     resyncChangesApplyDifferences), Location a delta URL that enumerates afresh. SetDriveDeltaLag (and DriveDeltaLag/DriveDeltaLagCalls) hides a change from
//     delta for a Clock duration and/or a number of delta calls on its drive after its tap. GET
//     /v1.0/drives/{drive-id}/items/{item-id} and /root return a live item with its cTag (404
//     itemNotFound otherwise). Every change (AddDriveItem, SeedDriveFiles, UpdateDriveItem,
//     EditDriveFiles, RenameDriveItem, MoveDriveItem, DeleteDriveItem; a folder's deletion deletes what
//     is below it, each listed as deleted, choice) taps each subscription to the drive: changeType
//     updated, resource exactly as subscribed, clientState, tenantId, no resourceData (DriveTapItemID:
//     resourceData {"id": the root's id}, the misleading id seen in the wild, UNCONFIRMED shape);
//     TapDrive sends taps without a change. Renaming a folder does not list its descendants.
//   - Teams messages (docs/graph-facts.md §11; teams.go, teams_crypto.go): POST /v1.0/subscriptions takes
//     teams/getAllMessages and chats/getAllMessages (optionally ?model=A or ?model=B, refused on the other
//     two, choice), teams/{team-id}/channels/{channel-id}/messages and chats/{chat-id}/messages (ids in
//     Graph's shapes, escaped or not): changeType created, updated, deleted; includeResourceData true
//     required (choice: Graph also has basic notifications here) with encryptionCertificate (base64 DER
//     X.509, RSA 2,048–4,096 bits, else 400) and encryptionCertificateId (≤ 128); over 60 minutes a
//     lifecycleNotificationUrl is required (Graph's 400 wording); at most 4,320 minutes; one subscription
//     per app per channel, chat or tenant-wide resource (403); roles ChannelMessage.Read.All for channels,
//     Chat.Read.All for chats. PATCH also takes encryptionCertificate and encryptionCertificateId (rotation).
//     PostTeamsMessage, EditTeamsMessage and DeleteTeamsMessage (a soft delete: deletedDateTime set, the
//     body emptied; later edits 404) send created, updated and deleted to each subscription covering the
//     message: resource teams('{team-id}')/channels('{channel-id}')/messages('{id}') or
//     chats('{chat-id}')/messages('{id}'), resourceData {id, @odata.type #Microsoft.Graph.chatMessage,
//     @odata.id}, and encryptedContent: the message as GET returns it, encrypted for the subscription's
//     certificate as Graph does (a fresh AES-256 key; AES-256-CBC, IV the key's first 16 bytes, PKCS#7;
//     HMAC-SHA256 of the ciphertext; the key wrapped with RSA-OAEP SHA-1; the certificate's id and SHA-1
//     thumbprint). UNCONFIRMED: deleted carries the deleted message encrypted; SetTeamsDeletedWithoutContent
//     sends resourceData only. The body carries validationTokens: one token (ValidationTokenWith's, signed
//     by the published key) minted again every 30 minutes of Clock. TamperTeams damages the next Count
//     notifications (or all until ClearFaults): a ciphertext bit flipped after signing, bad padding under a
//     good signature, an unknown certificate id, a wrong thumbprint, no validationTokens, or a token minted
//     with any ValidationTokenOptions. Message ids are Clock milliseconds, strictly increasing.
//   - POST /v1.0/$batch (docs/graph-facts.md §7): at most 20 requests (else 400), dispatched in-process to the
//     same handlers, per-item status/headers/body, inner 429 with Retry-After, batch 200, 424 for a
//     failed dependsOn.
//
// Notifications (docs/graph-facts.md §2, §3.3–3.4, §5): AddUser, UpdateUser, SoftDeleteUser and RestoreUser
// send `updated`; PermanentlyDeleteUser sends `deleted` (preceded by `updated` if the user was
// still active, as it passes through deleted items). Groups likewise: AddGroup, UpdateGroup,
// AddMembers, RemoveMembers (membership changes arrive as `updated` on the group),
// SoftDeleteGroup and RestoreGroup send `updated`; PermanentlyDeleteGroup sends `deleted`, preceded
// by `updated` for an active Microsoft 365 group. Only Microsoft 365 groups (groupTypes contains
// "Unified") are soft-deleted: SoftDeleteGroup on a security group deletes it for good, as Graph's
// DELETE does (`deleted`, delta "@removed" reason deleted, deletedItems 404). With
// NotifyMembersDelta a membership change also carries resourceData members@delta (the changed
// member ids, removed ones with @removed): UNCONFIRMED, users report such a node but its shape and
// completeness are not documented; off by default. Each goes to every live subscription whose
// resource (users or users/{id}; groups or groups/{id}) and changeType match, with subscriptionId,
// subscriptionExpirationDateTime, changeType, clientState, tenantId, resource "Users/{id}" or
// "Groups/{id}" and resourceData {@odata.type "#Microsoft.Graph.User" or "#Microsoft.Graph.Group",
// @odata.id, id, organizationId, eventTime,
// sequenceNumber > 2^53}. Changes are coalesced per URL for CoalesceWindow (default 20 ms; Flush
// sends at once) and POSTed as {"value":[…]} in batches of at most NotificationBatchSize (default
// 50, choice: Graph's maximum is unpublished, docs/graph-facts.md §2.1). A non-2xx answer, or none within
// DeliveryTimeout (retries: RetryAttemptTimeout), is retried with exponential backoff from
// DeliveryBackoff until DeliveryRetryWindow has passed, then dropped (recorded). Deliveries run in
// goroutines that Close cancels and waits for; WaitDelivered / WaitFor let tests wait on a
// condition. SendLifecycle sends reauthorizationRequired / subscriptionRemoved / missed to the
// lifecycle URL (or the notification URL), with a validationTokens array as observed in practice.
//
// Fault injection: Inject (status, Retry-After, latency, count, per route pattern),
// ThrottleBatchItems, SetReplicationLag, DropNotifications, ExpireSubscription,
// DeleteSubscriptionSilently, SeedSubscription (duplicates), ExpireDeltaTokens, Forge.
// Every request (and every inner $batch request, flagged InBatch) is in the request log.
//
// Resource families (families.go): each family of subscription resources (the directory here; others in
// their own files) registers what POST /subscriptions accepts for its resources (pattern, change
// types, maximum lifetime, whether a lifecycleNotificationUrl is required beyond some lifetime, rich
// notifications never/allowed/required with an encryption certificate, quotas and their scope, the
// application roles), its routes and its state; subscriptions.go and delivery.go look families up and
// never switch on one. A family delivers through subscribersLocked and changeNotificationsLocked
// (delivery.go), so every family's notifications are coalesced, batched, retried and recorded alike.
//
// Mailboxes (mailboxes*.go; docs/graph-facts.md, "Outlook mailboxes"): a user's mailbox (AddMailbox, or
// implied by AddMessage/AddEvent) with messages in the well-known folders (inbox, archive, deleteditems,
// drafts, sentitems, junkemail; FolderID gives each a stable id) and events. Ids have Graph's shape
// (AAMk…, base64 with '-', '_', '='); MoveMessage gives the message a NEW id, so the old one 404s.
// Routes: GET /v1.0/users/{id}/messages/{id} and /events/{id} with $select (404 ErrorItemNotFound when gone,
// 404 MailboxNotEnabledForRESTAPI for a user without a mailbox, 403 ErrorAccessDenied "Access to OData is
// disabled." when SetMailboxAccessDenied), also inside $batch; GET /v1.0/users/{id}/messages,
// /mailFolders/{folder}/messages and /events with $select, $top (≤ 1000) and only
// $filter=lastModifiedDateTime ge|gt {date-time}, newest first, paged by @odata.nextLink with $skip.
// Roles: Mail.Read(Write) for messages and folders, Calendars.Read(Write) for events. Subscriptions to
// users/{id}/messages, users/{id}/mailFolders('{folder}')/messages and users/{id}/events: created,updated,deleted,
// at most 4,230 minutes, rich allowed only with a $select in the resource; 403 ExtensionError when the
// mailbox is excluded by an application access policy, when SetMailboxOverQuota, or when every app's
// subscriptions on it reach SetMailboxSubscriptionQuota (default 1,000). Changes (AddMessage, UpdateMessage,
// MoveMessage = deleted + created, DeleteMessage, AddEvent, UpdateEvent, DeleteEvent) notify with resource
// Users/{id}/Messages/{id} (or Events) and resourceData {@odata.type, @odata.id, @odata.etag, id};
// SetMailDuplicates(n) sends each 1+n times; SetMailboxDropping drops a mailbox's notifications (then
// SendLifecycle(id, "missed")). Group members for GRAPH_MAILBOXES' group:{id} are the groups' paged
// /groups/{id}/members above.
//
// # What it does not model
//
// Other resources (drives: only drives/{id}/root subscriptions and delta on a drive's root; no
// /me, /users/{id}/drive or /sites/{id}/drive paths, no delta on folders, no timestamp tokens, no
// children listing, no content, no sharing or permissions, no token age limit, no restore from the
// recycle bin, no Graph writes to drives; mailboxes: no message or event delta (per-folder delta,
// calendarView), no writes to mail over Graph, no shared mailboxes or delegated access, no recurring
// events' instances, no count of creates still in their handshake in the mailbox quota; Teams: no GET or
// delta of messages, no replies, reactions, attachments or mentions, no basic (non-rich) Teams
// notifications, no metered-API billing or evaluation cap, no organisation-wide quota, no other Teams
// resources), rich notifications for users, groups and drives (they have none; mailboxes accept the
// subscription but send none), Event Grid
// delivery, Event Hubs itself (deliveries to an EventHub: URL go to Options.EventHubs, eventhubs.go),
// the slow/drop endpoint states of docs/graph-facts.md §2.2 (except DropNotifications by hand), Graph's
// token-expiry pause of deliveries, the resource-unit throttling budget of docs/graph-facts.md §7 (throttling is
// injected, not computed), quotas other than per app+tenant, delegated tokens, multi-tenant apps,
// writes to users or groups over Graph (the directory is changed through the Go API or the control
// API), subscriptions to /groups/{id}/members or /groups/{id}/owners, group owners, nested group
// membership (members are direct only: no transitiveMembers, and a change in a nested group does
// not touch its parents), dynamic groups (membershipRule is a plain property), the effect of a
// user's or a member group's deletion on the groups it belongs to, notifications to users
// subscriptions for their membership changes, mail-enabled security and distribution group rules,
// the 30-day purge of deleted items,
// $filter/$orderby/$count, notification latency (delivery is prompt), and ordering guarantees.
// Exact error messages other than the ones quoted from the reference are the double's own wording:
// code against statuses and codes, not messages. Access tokens and client assertions are timed on
// the real clock (MSAL caches tokens on it); Options.Clock governs everything on Graph's side.
// Delivery timing (backoff, windows, timeouts) uses real time, compressed by Options.
//
// # Control API (Options.ControlAPI; cmd/fakegraph turns it on)
//
// Unauthenticated, on the same loopback listener, JSON in and out:
//
//	POST /_control/users                      {"id":"…","props":{…}}  add a user (id optional) → 201 {"id"}
//	POST /_control/users/{id}                 {…props…}                update a user → 204
//	POST /_control/users/{id}/softdelete      soft delete → 204 (404: no such active user)
//	POST /_control/users/{id}/restore         restore → 204 (404: no such soft-deleted user)
//	POST /_control/users/{id}/delete          permanent delete → 204 (404: no such user)
//	DELETE /_control/users/{id}               the same permanent delete
//	GET  /_control/users                      active users
//	POST /_control/groups                     {"id":"…","props":{…},"members":["…"]}  add a group (id optional) → 201 {"id"}
//	POST /_control/groups/{id}                {…props…}                update a group → 204
//	POST /_control/groups/{id}/members        {"add":["…"],"remove":["…"]} → 204
//	POST /_control/groups/{id}/softdelete     soft delete (a security group is deleted for good) → 204
//	POST /_control/groups/{id}/restore        restore → 204
//	POST /_control/groups/{id}/delete         permanent delete → 204
//	GET  /_control/groups                     active groups, with members; a missing group: 404 above
//	POST /_control/fault                      {"route":"GET /v1.0/users/{id}","status":429,"retryAfterSeconds":2,"hangSeconds":0,"count":3}
//	POST /_control/throttle-batch             {"n":3,"retryAfterSeconds":1}
//	POST /_control/drop-notifications         {"on":true}
//	POST /_control/clear-faults
//	POST /_control/flush                      send queued notifications now
//	GET  /_control/subscriptions              live subscriptions, with clientState
//	POST /_control/subscriptions/{id}/lifecycle {"event":"reauthorizationRequired"}
//	POST /_control/subscriptions/{id}/expire
//	POST /_control/drives                     {"id":"b!…","driveType":"business"}  add a drive (all optional) → 201 {"id","rootId"}
//	GET  /_control/drives                     drive ids
//	GET  /_control/drives/{id}/items          live items
//	POST /_control/drives/{id}/items          {"name":"a.txt","parentId":"…","folder":false,"size":1,"mimeType":"…"} → 201 {"id"} (409: name taken)
//	POST /_control/drives/{id}/items/{item}   {"size":2} edit a file's content (no size: size+1) → 204
//	POST /_control/drives/{id}/items/{item}/rename {"name":"b.txt"} → 204
//	POST /_control/drives/{id}/items/{item}/move   {"parentId":"…"} → 204
//	POST /_control/drives/{id}/items/{item}/delete → 204 (404: no such live item)
//	POST /_control/drives/{id}/seed           {"n":1000,"parentId":"…","prefix":"f","notify":false} → 201 {"ids"}
//	POST /_control/drives/{id}/edit           {"ids":["…"],"taps":5} edit files, each tapping taps times → 204
//	POST /_control/drives/{id}/tap            {"n":800} taps without a change → 204
//	POST /_control/drives/{id}/expire-tokens  delta tokens answer 410 from now → 204
//	POST /_control/drives-lag                 {"seconds":2,"calls":1} → 204
//	POST /_control/teams/messages             {"teamId":"…","channelId":"19:…@thread.tacv2"} or {"chatId":"19:…@thread.v2"}, with "content", "contentType", "subject", "fromDisplayName", "id" (optional) → 201 the message
//	POST /_control/teams/messages/{id}        {"teamId","channelId" | "chatId","content"} edit → 204 (404: no such live message)
//	POST /_control/teams/messages/{id}/delete {"teamId","channelId" | "chatId"} → 204
//	GET  /_control/teams/messages             every message, deleted ones included
//	POST /_control/teams/tamper               {"badSignature":true,"badPadding":false,"unknownCertificateId":false,"wrongThumbprint":false,"noValidationTokens":false,"token":{"Expired":true},"count":1} → 204
//	GET  /_control/requests                   the request log
//	GET  /_control/deliveries                 delivery attempts
//	GET  /_control/mailboxes                  users with a mailbox
//	POST /_control/mailboxes/{user}/messages  {"folder":"inbox","props":{…}}  add a message → 201 {"id"}
//	POST /_control/mailboxes/{user}/messages/{id}       {…props…}  update → 204
//	POST /_control/mailboxes/{user}/messages/{id}/move  {"folder":"archive"} → 200 {"id": the new id}
//	DELETE /_control/mailboxes/{user}/messages/{id}     hard delete → 204
//	POST /_control/mailboxes/{user}/events    {"props":{…}}  add an event → 201 {"id"}; POST/DELETE …/events/{id} as messages
//	POST /_control/mailboxes/{user}/policy    {"overQuota":true,"accessDenied":false,"dropping":false} → 204
//	POST /_control/mail-duplicates            {"n":2}  each mail notification sent 1+n times
package fakegraph
