#!/usr/bin/env bash
# make start: run the real thing locally.
#   1. checks that Azure Functions Core Tools v4 (`func`) is installed (nothing else starts without it),
#   2. builds ./handler for this machine (go build -o handler .),
#   3. installs the pinned Azurite with `npm ci` when node_modules/.bin/azurite is missing,
#   4. starts Azurite on 10000/10001/10002 with its data in .azurite/ (kept between runs, git-ignored),
#      unless something already listens there (then that emulator is used and left alone),
#   5. runs `func start` in the repository root, and stops Azurite again when func exits (Ctrl+C included).
# Arguments are passed to `func start` (for example: make start ARGS="--verbose" or scripts/start.sh --port 7072).
#
# Environment: FUNC (the Core Tools command, default func), AZURITE_LOCATION (default .azurite),
# AZURITE_READY_TIMEOUT (seconds, default 30).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

FUNC="${FUNC:-func}"
AZURITE_LOCATION="${AZURITE_LOCATION:-.azurite}"
AZURITE_READY_TIMEOUT="${AZURITE_READY_TIMEOUT:-30}"
AZURITE_PORTS=(10000 10001 10002)

say() { printf 'start: %s\n' "$*"; }
warn() { printf 'start: warning: %s\n' "$*" >&2; }
die() {
	printf 'start: error: %s\n' "$*" >&2
	exit 1
}

notification_url_reminder() {
	cat >&2 <<'EOF'

Reminder: Graph only delivers to a public HTTPS URL. Set GRAPH_NOTIFICATION_URL (local.settings.json
"Values", or the environment) to your dev tunnel's URL of the webhook, for example
    devtunnel host -p 7071 --allow-anonymous
    GRAPH_NOTIFICATION_URL=https://<tunnel-id>-7071.<region>.devtunnels.ms/api/webhook
Locally `func start` does not check function keys; in Azure the URL must carry one:
    https://<app host name>/api/webhook?code=<function key>
The URL changes whenever the tunnel does: the renew timer then moves the subscription to the new URL.
EOF
}

func_missing() {
	cat >&2 <<EOF
start: error: Azure Functions Core Tools ("$FUNC") is not installed or not on PATH.

Install Core Tools v4, then run make start again:
    npm i -g azure-functions-core-tools@4 --unsafe-perm true        # any OS with Node.js
    brew tap azure/functions && brew install azure-functions-core-tools@4    # macOS
    winget install Microsoft.Azure.FunctionsCoreTools               # Windows
    sudo apt-get install azure-functions-core-tools-4               # Debian/Ubuntu, after adding
                                                                    # packages.microsoft.com (see the page below)
Instructions: https://learn.microsoft.com/azure/azure-functions/functions-run-local#install-the-azure-functions-core-tools

Core Tools cannot be installed offline: its npm package downloads the Functions host from a CDN
during installation. Without network access, \`make demo\` runs the whole pipeline on this machine
(fake Functions host, fake Graph, real Azurite) and needs no Core Tools.

Nothing was started.
EOF
	notification_url_reminder
	exit 127
}

# 1. Core Tools first, so that a missing func leaves nothing running and builds nothing.
command -v "$FUNC" >/dev/null 2>&1 || func_missing
func_version="$("$FUNC" --version 2>/dev/null | head -n 1 || true)"
case "$func_version" in
4.*) say "Azure Functions Core Tools $func_version" ;;
*) warn "Core Tools reports version '${func_version:-unknown}'; this project needs v4 (npm i -g azure-functions-core-tools@4)" ;;
esac

# 2. The handler, for this machine (Core Tools runs it locally; Azure needs make build-linux).
command -v go >/dev/null 2>&1 || die "Go is not installed (https://go.dev/dl/); it builds ./handler"
say "building ./handler"
go build -o handler .

# 3. The pinned Azurite (package.json / package-lock.json).
if [ ! -x node_modules/.bin/azurite ]; then
	command -v npm >/dev/null 2>&1 || die "npm is not installed; it installs the pinned Azurite (Node.js 20+)"
	say "installing the pinned Azurite (npm ci)"
	npm ci --no-audit --no-fund --loglevel=error
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

azurite_pid=""
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	if [ -n "$azurite_pid" ] && kill -0 "$azurite_pid" 2>/dev/null; then
		say "stopping Azurite (pid $azurite_pid)"
		kill "$azurite_pid" 2>/dev/null || true
		wait "$azurite_pid" 2>/dev/null || true
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 4. Azurite on the default ports (AzureWebJobsStorage=UseDevelopmentStorage=true points there).
busy=()
for p in "${AZURITE_PORTS[@]}"; do
	if port_open "$p"; then busy+=("$p"); fi
done
if [ "${#busy[@]}" -eq "${#AZURITE_PORTS[@]}" ]; then
	say "ports ${AZURITE_PORTS[*]} already answer: using the storage emulator that is already running"
elif [ "${#busy[@]}" -gt 0 ]; then
	die "port(s) ${busy[*]} are in use by something else; free 10000-10002 or stop the other emulator"
else
	mkdir -p "$AZURITE_LOCATION"
	# Keep the emulator's data out of git without touching the repository's .gitignore.
	[ -f "$AZURITE_LOCATION/.gitignore" ] || printf '*\n' >"$AZURITE_LOCATION/.gitignore"
	say "starting Azurite (data in $AZURITE_LOCATION/, log in $AZURITE_LOCATION/azurite.log)"
	node_modules/.bin/azurite --location "$AZURITE_LOCATION" --silent --disableTelemetry --skipApiVersionCheck \
		>"$AZURITE_LOCATION/azurite.log" 2>&1 &
	azurite_pid=$!
	deadline=$((SECONDS + AZURITE_READY_TIMEOUT))
	for p in "${AZURITE_PORTS[@]}"; do
		until port_open "$p"; do
			if ! kill -0 "$azurite_pid" 2>/dev/null; then
				tail -n 20 "$AZURITE_LOCATION/azurite.log" >&2 || true
				azurite_pid=""
				die "Azurite exited during startup (log above)"
			fi
			[ "$SECONDS" -lt "$deadline" ] || die "Azurite did not open port $p within ${AZURITE_READY_TIMEOUT}s"
			sleep 0.2
		done
	done
	say "Azurite is ready (blob 10000, queue 10001, table 10002)"
fi

url="${GRAPH_NOTIFICATION_URL:-}"
if [ -z "$url" ] && command -v jq >/dev/null 2>&1; then
	url="$(jq -r '.Values.GRAPH_NOTIFICATION_URL // ""' local.settings.json 2>/dev/null || true)"
fi
case "$url" in
https://*"<"* | "") warn "GRAPH_NOTIFICATION_URL is not set to a real URL yet: the renew timer cannot subscribe" ;;
https://*) ;;
*) warn "GRAPH_NOTIFICATION_URL must be an https URL that Graph can reach (a dev tunnel), not '$url'" ;;
esac
# The clientState: the template holds none, so that no deployment runs on a value everyone knows. Only
# whether it is set is read here; the handler itself warns at start-up when it is weak.
state_set="${GRAPH_CLIENT_STATE:+yes}"
if [ -z "$state_set" ] && command -v jq >/dev/null 2>&1; then
	state_set="$(jq -r 'if (.Values.GRAPH_CLIENT_STATE // "") == "" then "" else "yes" end' local.settings.json 2>/dev/null || true)"
fi
[ -n "$state_set" ] || warn "GRAPH_CLIENT_STATE is not set: generate one with 'openssl rand -base64 32' and put it in local.settings.json (Values.GRAPH_CLIENT_STATE)"
notification_url_reminder

# 5. The Functions host. Not exec: the EXIT trap must stop Azurite afterwards.
say "running: $FUNC start $*"
set +e
"$FUNC" start "$@"
rc=$?
set -e
exit "$rc"
