#!/usr/bin/env bash
# Tests of deploy/deploy.sh against a fake `az` that records every call (make test-scripts). No Azure
# account, no network: the fake answers the queries deploy.sh makes with fixed values, and says "not found"
# to the existence checks of the Event Hubs namespace and hub (and, when asked, of Graph's service
# principal) so the create paths run. Each case runs deploy.sh --skip-publish and checks the calls and the
# app settings it wrote.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPLOY="$ROOT/deploy/deploy.sh"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

failures=0
fail() {
	printf 'FAIL: %s\n' "$*" >&2
	failures=$((failures + 1))
}
pass() { printf 'ok: %s\n' "$*"; }

mkdir -p "$tmp/bin"
cat >"$tmp/bin/az" <<'FAKE'
#!/usr/bin/env bash
# Fake Azure CLI: logs each call to $AZ_LOG, and app settings files with it.
printf 'az %s\n' "$*" >>"$AZ_LOG"
args="$*"
case "$args" in
*"appsettings set"*)
	prev=""
	for a in "$@"; do
		if [ "$prev" = --settings ]; then cat "${a#@}" >>"$AZ_LOG"; printf '\n' >>"$AZ_LOG"; fi
		prev="$a"
	done
	;;
*"account show --query tenantId"*) echo "11111111-1111-1111-1111-111111111111" ;;
*"account show --query name"*) echo "Test subscription" ;;
*"list-flexconsumption-locations"*) echo 1 ;;
*"list-flexconsumption-runtimes"*) echo "1.0" ;;
*"ad sp show"*)
	[ -z "${FAKE_NO_GRAPH_SP:-}" ] || exit 3
	echo "graph-sp-object-id"
	;;
*"ad sp create"*) echo "graph-sp-object-id" ;;
*"eventhubs namespace show"* | *"eventhubs eventhub show"*"--output none"*) exit 3 ;;
*"--query id"*) echo "/subscriptions/s/resourceGroups/rg/providers/x/${args%% *}" ;;
*"--query clientId"*) echo "identity-client-id" ;;
*"--query principalId"*) echo "identity-principal-id" ;;
*"role assignment list"*) echo 0 ;;
*"az rest"* | rest*) echo "contoso.onmicrosoft.com" ;;
*"appsettings list"*) ;;
esac
exit 0
FAKE
chmod +x "$tmp/bin/az"

# run_deploy NAME [VAR=value...] -- ARGS...: runs deploy.sh with the fake az; sets rc, out and log.
run_deploy() {
	local name="$1"
	shift
	local envs=()
	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		envs+=("$1")
		shift
	done
	shift
	log="$tmp/$name.log"
	: >"$log"
	set +e
	out="$(env PATH="$tmp/bin:$PATH" AZ_LOG="$log" ${envs[@]+"${envs[@]}"} bash "$DEPLOY" --app ehtest --skip-publish "$@" 2>&1)"
	rc=$?
	set -e
	if [ "$rc" -eq 0 ]; then pass "$name: exits 0"; else fail "$name: exit $rc: $out"; fi
}

has() { if grep -qF -- "$2" "$log"; then pass "$1"; else fail "$1: log lacks: $2"; fi; }
lacks() { if grep -qF -- "$2" "$log"; then fail "$1: log has: $2"; else pass "$1"; fi; }

# Default: no Event Hubs resources, the function disabled, its hub name resolvable.
run_deploy default --
lacks "default: no Event Hubs calls" "az eventhubs"
has "default: eventhub function disabled" '"name":"AzureWebJobs.eventhub.Disabled","value":"true"'
has "default: GRAPH_EVENTHUB_NAME resolves" '"name":"GRAPH_EVENTHUB_NAME","value":"not-configured"'
lacks "default: no Event Hubs connection" "GRAPH_EVENTHUB__fullyQualifiedNamespace"

# --event-hubs: namespace (Standard) and hub, both roles, the settings, the function enabled.
run_deploy eventhubs -- --event-hubs
has "eventhubs: namespace on the Standard tier" "az eventhubs namespace create --name ehns-ehtest --resource-group rg-ehtest --location eastus2 --sku Standard"
has "eventhubs: hub created" "az eventhubs eventhub create --name graph-notifications --namespace-name ehns-ehtest"
has "eventhubs: Graph Change Tracking looked up" "az ad sp show --id 0bf30f3b-4a52-48df-9a82-234910c4a086"
lacks "eventhubs: Graph's service principal not created when present" "az ad sp create"
has "eventhubs: Data Sender for Graph" "role assignment create --assignee-object-id graph-sp-object-id --assignee-principal-type ServicePrincipal --role Azure Event Hubs Data Sender"
has "eventhubs: Data Receiver for the identity" "role assignment create --assignee-object-id identity-principal-id --assignee-principal-type ServicePrincipal --role Azure Event Hubs Data Receiver"
has "eventhubs: function enabled" '"name":"AzureWebJobs.eventhub.Disabled","value":"false"'
has "eventhubs: namespace setting" '"name":"GRAPH_EVENTHUB__fullyQualifiedNamespace","value":"ehns-ehtest.servicebus.windows.net"'
has "eventhubs: identity for the trigger" '"name":"GRAPH_EVENTHUB__clientId","value":"identity-client-id"'
has "eventhubs: hub setting" '"name":"GRAPH_EVENTHUB_NAME","value":"graph-notifications"'
has "eventhubs: EventHub: notification URL" '"name":"GRAPH_NOTIFICATION_URL","value":"EventHub:https://ehns-ehtest.servicebus.windows.net/eventhubname/graph-notifications?tenantId=contoso.onmicrosoft.com"'

# A tenant without Graph's change-tracking service principal gets one; names and domain as given.
run_deploy create-sp FAKE_NO_GRAPH_SP=1 -- --event-hubs --eventhubs-namespace myns-graph --event-hub hub1 --tenant-domain fabrikam.com
has "create-sp: service principal created" "az ad sp create --id 0bf30f3b-4a52-48df-9a82-234910c4a086"
has "create-sp: names used" "az eventhubs eventhub create --name hub1 --namespace-name myns-graph"
has "create-sp: domain used" "eventhubname/hub1?tenantId=fabrikam.com"
lacks "create-sp: no domain lookup" "az rest"

# Bad names are refused before any Azure call.
set +e
out="$(env PATH="$tmp/bin:$PATH" AZ_LOG="$tmp/bad.log" bash "$DEPLOY" --app ehtest --skip-publish --event-hubs --eventhubs-namespace 'x!' 2>&1)"
rc=$?
set -e
if [ "$rc" -ne 0 ] && [[ "$out" == *"Event Hubs namespace name"* ]]; then
	pass "bad namespace refused"
else
	fail "bad namespace: rc $rc: $out"
fi

if [ "$failures" -gt 0 ]; then
	printf '%d failure(s)\n' "$failures" >&2
	exit 1
fi
echo "deploy_test: all passed"
