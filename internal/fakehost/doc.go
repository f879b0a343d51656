// Package fakehost is a test double of the Azure Functions host (v4) for custom handlers: it drives a
// handler binary the way the host does, so the handler can be tested end to end without Azure Functions Core
// Tools (which cannot be installed offline).
//
// It follows docs/host-protocol.md §2–§7.
// Behaviours the reference marks [inferred] (traced through the host's code but not yet seen on the wire) are
// marked [inferred] in comments where they are implemented; check them against `func start` with
// logging.logLevel.default = "Trace" before trusting them.
//
// What it models:
//   - Configuration: host.json (customHandler.description with %VAR% expansion; functionTimeout;
//     extensions.http.routePrefix; extensions.queues) and every */function.json, with %SETTING% resolved in
//     queueName, schedule and connection. It refuses what the host refuses: a missing customHandler
//     description or defaultExecutablePath, an unresolved %SETTING%, a bad NCRONTAB or TimeSpan schedule.
//     (The real host marks such a function as errored and runs the others; the double refuses to start, so a
//     test notices.)
//   - Process: the handler starts in the app root (or workingDirectory) with the app settings plus
//     FUNCTIONS_CUSTOMHANDLER_PORT / FUNCTIONS_HTTPWORKER_PORT, FUNCTIONS_CUSTOMHANDLER_WORKER_ID and
//     FUNCTIONS_APP_ROOT_PATH; readiness is GET / every 25 ms for up to 30 s; exit 0 is not restarted, exit
//     200 is, any other exit is restarted and the third error within 30 minutes stops the host; a function
//     timeout fails the invocation and restarts the handler, failing every in-flight invocation. stdout lines
//     are Information, stderr lines Error (Warning when they contain "warn").
//   - Invocations: POST /<FunctionName> with the host's headers and a {"Data","Metadata"} body built with
//     the docs/host-protocol.md §3.2 encoding rules; replies handled as docs/host-protocol.md §4 (2xx + JSON content type required; null or empty body is
//     no completion; Outputs matched case-sensitively; the base64 rule; queue fan-out and re-printing; the
//     http output object; $return and ReturnValue). Invocations run concurrently.
//   - HTTP triggers: a front on 127.0.0.1 with /api/<route>, function keys (`code` or x-functions-key),
//     Data.req and Metadata as docs/host-protocol.md §3.3, a 100 MB body limit.
//   - Queue triggers and outputs against real Azure Storage (Azurite), with the extension's polling,
//     batching, visibility, retry and poison-queue semantics (docs/host-protocol.md §1.3, §3.4, §4.5, §7).
//   - Timer triggers: six-field NCRONTAB (or TimeSpan) schedules, runOnStartup, TimerInfo, and function.json
//     retry policies (fixedDelay, exponentialBackoff) with Metadata.RetryContext.
//   - Event hub triggers (docs/host-protocol.md §3.6, itself read from source and never observed, so the wire shape is switchable
//     with Options.EventHubEncoding): an in-memory hub per eventHubName (Options.EventHubPartitions
//     partitions, filled with SendEvents), one reader per partition handing over batches of up to
//     extensions.eventHubs.maxEventBatchSize events in order, cardinality one or many, dataType string or
//     binary, PartitionContext and the per-event metadata arrays, and a checkpoint per partition that moves
//     after every batch whatever its result, unless function.json's retry policy holds the batch and retries
//     it (maxRetryCount -1: for ever). Checkpoint, Checkpoints and WaitFor let tests watch it. The
//     connection must name <conn>__fullyQualifiedNamespace or a connection string, as the extension needs.
//
// What it does not model: forwarding and proxying of HTTP requests (enableForwardingHttpRequest,
// enableProxyingHttpRequest: refused), the legacy httpWorker section, binding types other than httpTrigger,
// http, queueTrigger, queue, timerTrigger and eventHubTrigger, identity-based storage connections (set
// Options.Storage), Event Hubs retention, partition ownership across instances and consumer groups shared
// by two functions, checkpoints in storage (they live in memory, so a new host starts from the beginning),
// minEventBatchSize/maxWaitTime (a batch goes as soon as events are there), batchCheckpointFrequency above 1,
// initialOffsetOptions fromEnqueuedTime (refused),
// the admin API (/admin/functions/<name>; use Invoke or FireTimer), host-level retry policies, persisted
// timer schedule status (kept in memory), time zones (UTC only), scale-out (one instance), the 230 s
// Azure front-end limit, Application Insights, and exact header-name casing (Go canonicalises request
// header names; the host keeps the client's spelling).
//
// Choices where the host's behaviour is not known or not reproducible:
//   - A disallowed method gets 404, as ASP.NET routing does when no route matches (not 405).
//   - The handler's environment is Options.Settings plus the InheritedEnv variables of the current process
//     (PATH, HOME, SSL_CERT_FILE, GOCOVERDIR, …), not the whole environment, unless
//     Options.InheritEnvironment is set. %SETTING% references resolve against that same environment.
//   - functionTimeout defaults to 30 minutes (the host's default off Consumption, as under `func start`).
//   - X-Azure-Functions-HostVersion is the constant HostVersion.
package fakehost
