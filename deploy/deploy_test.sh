#!/usr/bin/env bash
# Tests of deploy/deploy.sh against the fake Azure CLI in deploy/testdata/fake-az.sh (make test-scripts). No
# Azure account, no network. The fake records every call and refuses what the real CLI refuses on Flex
# Consumption (a --runtime-version for the custom stack, `identity assign` and `update --set` on a Flex
# app), so a deploy.sh that made those calls fails here. Each case runs deploy.sh --skip-publish and checks
# the calls and the app settings it wrote.
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
cp "$ROOT/deploy/testdata/fake-az.sh" "$tmp/bin/az"
chmod +x "$tmp/bin/az"
IDENTITY_ID="/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-ehtest/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-ehtest"

# deploy NAME [VAR=value...] -- ARGS...: runs deploy.sh (app ehtest, --skip-publish) with the fake az;
# sets rc, out (stdout and stderr) and log (the fake's call log).
deploy() {
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
	out="$(env PATH="$tmp/bin:$PATH" AZ_LOG="$log" FAKE_STATE="$tmp/$name.state" ${envs[@]+"${envs[@]}"} \
		bash "$DEPLOY" --app ehtest --skip-publish "$@" 2>&1)"
	rc=$?
	set -e
}
# run_deploy: deploy, and it must succeed.
run_deploy() {
	deploy "$@"
	if [ "$rc" -eq 0 ]; then pass "$1: exits 0"; else fail "$1: exit $rc: $out"; fi
}

has() { if grep -qF -- "$2" "$log"; then pass "$1"; else fail "$1: log lacks: $2"; fi; }
lacks() { if grep -qF -- "$2" "$log"; then fail "$1: log has: $2"; else pass "$1"; fi; }
says() { if [[ "$out" == *"$2"* ]]; then pass "$1"; else fail "$1: output lacks: $2: $out"; fi; }
# setting NAME: the value deploy.sh last wrote for app setting NAME, from the logged settings files.
setting() { grep -o "\"name\":\"$1\",\"value\":\"[^\"]*\"" "$log" | tail -n1 | sed 's/.*"value":"//; s/"$//'; }

# The fake refuses what Azure refuses: the calls deploy.sh used to make fail against it.
# refused NAME MESSAGE [VAR=value...] -- AZ-ARGS...: the fake, on a fresh state, must fail saying MESSAGE.
refused() {
	local name="$1" want="$2" envs=() msg
	shift 2
	while [ "$1" != -- ]; do
		envs+=("$1")
		shift
	done
	shift
	rm -rf "$tmp/fake.state"
	if msg="$(env AZ_LOG="$tmp/fake.log" FAKE_STATE="$tmp/fake.state" ${envs[@]+"${envs[@]}"} "$tmp/bin/az" "$@" 2>&1)"; then
		fail "fake: $name: succeeded"
	elif [[ "$msg" != *"$want"* ]]; then
		fail "fake: $name: message: $msg"
	else
		pass "fake: $name refused as the CLI does"
	fi
}
refused "Flex create of custom with --runtime-version" \
	"Invalid version 1.0 for runtime custom for function apps on the Flex Consumption plan" -- \
	functionapp create --name a --resource-group rg --storage-account st --flexconsumption-location eastus2 \
	--runtime custom --runtime-version 1.0 --deployment-storage-auth-type UserAssignedIdentity \
	--deployment-storage-auth-value "$IDENTITY_ID" --output none
refused "identity assign on a Flex app (azure-cli#30380)" "Site.FunctionAppConfig is invalid" FAKE_EXISTING_APP=flex -- \
	functionapp identity assign --name a --resource-group rg --identities "$IDENTITY_ID" --output none
refused "update --set on a Flex app (azure-cli#30380, #31414)" "Site.FunctionAppConfig is invalid" FAKE_EXISTING_APP=flex -- \
	functionapp update --name a --resource-group rg --set "keyVaultReferenceIdentity=$IDENTITY_ID" --output none
if [ -z "$(env AZ_LOG="$tmp/fake.log" FAKE_STATE="$tmp/fake.state" "$tmp/bin/az" functionapp list-flexconsumption-runtimes \
	--location eastus2 --runtime custom --query "[].version" --output tsv)" ]; then
	pass "fake: the custom stack's listed version is empty"
else
	fail "fake: [].version of the custom stack is not empty"
fi

# Default: Flex Consumption, created once, nothing the CLI refuses; no Event Hubs.
run_deploy default --
has "default: runtime availability asked of the CLI" "az functionapp list-flexconsumption-runtimes --location eastus2 --runtime custom"
says "default: availability check reports the runtime the app gets" "runs custom handlers (the app's runtime will be custom 1.0)"
has "default: Flex create with the custom runtime" "--flexconsumption-location eastus2 --runtime custom --deployment-storage-auth-type UserAssignedIdentity --deployment-storage-auth-value $IDENTITY_ID"
lacks "default: no --runtime-version" "--runtime-version"
has "default: attached identities read" "az functionapp identity show --name ehtest --resource-group rg-ehtest --query userAssignedIdentities"
lacks "default: no identity assign after the Flex create attached it" "functionapp identity assign"
says "default: identity reported attached" "identity id-ehtest already attached"
lacks "default: no generic update" "functionapp update"
lacks "default: no Event Hubs calls" "az eventhubs"
has "default: eventhub function disabled" '"name":"AzureWebJobs.eventhub.Disabled","value":"true"'
has "default: GRAPH_EVENTHUB_NAME resolves" '"name":"GRAPH_EVENTHUB_NAME","value":"not-configured"'
lacks "default: no Event Hubs connection" "GRAPH_EVENTHUB__fullyQualifiedNamespace"
lacks "default: no runtime settings on Flex" "FUNCTIONS_WORKER_RUNTIME"
# The next steps point to Live Metrics, which works on every plan, not the Kudu log stream.
says "default: next steps point to Live Metrics" "func azure functionapp logstream ehtest --browser"

# GRAPH_CLIENT_STATE: generated when absent, long and varied, never printed; a second run makes another.
cs="$(setting GRAPH_CLIENT_STATE)"
if [ "${#cs}" -ge 32 ] && [[ "$cs" =~ ^[A-Za-z0-9_-]+$ ]]; then pass "client state: ${#cs} base64url characters"; else
	fail "client state: length ${#cs} or alphabet: $cs"
fi
distinct="$(printf '%s' "$cs" | fold -w1 | sort -u | wc -l)"
classes=0
for class in '[A-Z]' '[a-z]' '[0-9]'; do [[ ! "$cs" =~ $class ]] || classes=$((classes + 1)); done
# 64 draws from 64 symbols give about 40 distinct ones; under 20, or one character class alone, is not random.
if [ "$distinct" -ge 20 ] && [ "$classes" -ge 2 ]; then pass "client state: $distinct distinct characters, $classes classes"; else
	fail "client state: $distinct distinct characters, $classes classes: not random-looking"
fi
# The handler's own bar for a strong clientState: the Shannon entropy of its characters' frequencies times
# its length, at least 128 bits (internal/config, StrongClientStateBits).
bits="$(printf '%s' "$cs" | fold -w1 | sort | uniq -c | awk -v n="${#cs}" '{ p = $1 / n; h -= p * log(p) / log(2) } END { printf "%d", h * n }')"
if [ "$bits" -ge 128 ]; then pass "client state: about $bits bits by the handler's measure"; else fail "client state: $bits bits"; fi
if [[ "$out" == *"$cs"* ]]; then fail "client state printed"; else pass "client state not printed"; fi
first_cs="$cs"
run_deploy default-again --
if [ "$(setting GRAPH_CLIENT_STATE)" != "$first_cs" ]; then pass "client state: a new one per generation"; else fail "client state: same value twice"; fi
deploy short-client-state GRAPH_CLIENT_STATE=tooshort --
if [ "$rc" -ne 0 ] && [[ "$out" == *"16 to 128 characters"* ]]; then pass "short GRAPH_CLIENT_STATE refused"; else fail "short client state: rc $rc: $out"; fi

# A region whose Flex stacks lack custom handlers: stop before creating anything, say how to check.
deploy no-custom FAKE_NO_CUSTOM=1 --
if [ "$rc" -ne 0 ]; then pass "no-custom: fails"; else fail "no-custom: exit 0"; fi
says "no-custom: names the CLI check" "az functionapp list-flexconsumption-runtimes -l eastus2 --runtime custom -o json"
says "no-custom: passes on the CLI's reason" "Runtime 'custom' not supported"
lacks "no-custom: nothing created" "az group create"

# A CLI build that cannot attach an identity on Flex: the create fails; the script says to update the CLI.
deploy old-cli FAKE_OLD_CLI=1 --
if [ "$rc" -ne 0 ] && [[ "$out" == *"az upgrade"* ]] && [[ "$out" == *"Site.FunctionAppConfig is invalid"* ]]; then
	pass "old-cli: refused, says to update the CLI"
else
	fail "old-cli: rc $rc: $out"
fi

# An existing Flex app already holding the identity (a rerun): no identity assign.
run_deploy rerun FAKE_EXISTING_APP=flex FAKE_APP_IDENTITIES="$IDENTITY_ID" --
lacks "rerun: no create" "functionapp create"
lacks "rerun: no identity assign" "functionapp identity assign"

# An existing Flex app without the identity: the CLI cannot attach it; the script says what to do.
deploy flex-no-identity FAKE_EXISTING_APP=flex --
if [ "$rc" -ne 0 ]; then pass "flex-no-identity: fails"; else fail "flex-no-identity: exit 0"; fi
has "flex-no-identity: assign tried" "functionapp identity assign"
says "flex-no-identity: the CLI's error shown" "Site.FunctionAppConfig is invalid"
says "flex-no-identity: the way out" "Settings > Identity > User assigned > Add"
lacks "flex-no-identity: stops before the settings" "appsettings set"

# Premium: the create does not attach the identity, so the script does; runtime settings set.
run_deploy premium -- --plan premium
has "premium: plan create" "az functionapp create --name ehtest --resource-group rg-ehtest --plan plan-ehtest --storage-account stehtest --os-type Linux --runtime custom --functions-version 4"
has "premium: identity attached" "az functionapp identity assign --name ehtest --resource-group rg-ehtest --identities $IDENTITY_ID"
has "premium: runtime setting" '"name":"FUNCTIONS_WORKER_RUNTIME","value":"custom"'
lacks "premium: no Flex runtime check" "list-flexconsumption-runtimes"

# Client secret in Key Vault on Flex: keyVaultReferenceIdentity set by an ARM PATCH, not update --set.
run_deploy keyvault GRAPH_APP_CLIENT_SECRET=s3cret-value -- --graph-auth secret --client-id app-id --key-vault kv-ehtest
has "keyvault: PATCH of the site with the Flex API version" "az rest --method patch --url /subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-ehtest/providers/Microsoft.Web/sites/ehtest?api-version=2023-12-01"
has "keyvault: body sets keyVaultReferenceIdentity" "{\"properties\":{\"keyVaultReferenceIdentity\":\"$IDENTITY_ID\"}}"
lacks "keyvault: no generic update" "functionapp update"
has "keyvault: secret as a versionless reference" '"name":"AZURE_CLIENT_SECRET","value":"@Microsoft.KeyVault(SecretUri=https://kv-ehtest.vault.azure.net/secrets/graph-client-secret/)"'
if [[ "$out" == *"s3cret-value"* ]] || grep -qF "s3cret-value" "$log"; then fail "keyvault: secret on a command line or printed"; else
	pass "keyvault: secret neither printed nor on a command line"
fi

# This round's families: their settings passed on, the Teams certificate as a Key Vault reference, the
# Graph permissions they need named in the next steps and granted with --grant-graph.
run_deploy families GRAPH_RESOURCE='users,drives/b!x,teams/getAllMessages' GRAPH_MAILBOXES='u1,group:g1' \
	GRAPH_MAILBOX_RESOURCES=messages,events GRAPH_TEAMS_MODEL=A GRAPH_DRIVEITEM_SELECT=id,name \
	GRAPH_MESSAGE_SELECT=id,subject GRAPH_EVENT_SELECT=id GRAPH_CHATMESSAGE_SELECT=id,body -- \
	--key-vault kv-ehtest --encryption-cert graph-enc --grant-graph
for kv in 'GRAPH_RESOURCE","value":"users,drives/b!x,teams/getAllMessages' 'GRAPH_MAILBOXES","value":"u1,group:g1' \
	'GRAPH_MAILBOX_RESOURCES","value":"messages,events' 'GRAPH_TEAMS_MODEL","value":"A' \
	'GRAPH_DRIVEITEM_SELECT","value":"id,name' 'GRAPH_MESSAGE_SELECT","value":"id,subject' \
	'GRAPH_EVENT_SELECT","value":"id' 'GRAPH_CHATMESSAGE_SELECT","value":"id,body' \
	'GRAPH_ENCRYPTION_CERTIFICATE","value":"@Microsoft.KeyVault(SecretUri=https://kv-ehtest.vault.azure.net/secrets/graph-enc/)' \
	'GRAPH_ENCRYPTION_CERTIFICATE_ID","value":"graph-enc'; do
	has "families: ${kv%%\"*} set" "\"name\":\"$kv\""
done
has "families: the certificate looked up" "az keyvault certificate show --vault-name kv-ehtest --name graph-enc"
has "families: the identity may read the vault" "--role Key Vault Secrets User"
has "families: references resolve with the identity" "{\"properties\":{\"keyVaultReferenceIdentity\":\"$IDENTITY_ID\"}}"
says "families: next steps name every permission" "User.Read.All, Files.Read.All, ChannelMessage.Read.All, Mail.Read, Calendars.Read, GroupMember.Read.All"
says "families: next steps give the grant command for them" "--resources 'users,drives/b!x,teams/getAllMessages' --mailboxes u1,group:g1 --mailbox-resources messages,events"
for p in User.Read.All Files.Read.All ChannelMessage.Read.All Mail.Read Calendars.Read GroupMember.Read.All; do
	has "families: --grant-graph grants $p" "\"principalId\":\"identity-principal-id\",\"resourceId\":\"msgraph-sp-object-id\",\"appRoleId\":\"role-$p\""
done

# Teams messages without a certificate: stopped before any setting is written.
deploy teams-no-cert GRAPH_RESOURCE='users, chats/getAllMessages' --
if [ "$rc" -ne 0 ] && [[ "$out" == *"--encryption-cert"* ]]; then pass "teams-no-cert: refused, says how"; else fail "teams-no-cert: rc $rc: $out"; fi
lacks "teams-no-cert: no settings written" "appsettings set"
deploy cert-missing FAKE_NO_CERT=1 -- --key-vault kv-ehtest --encryption-cert graph-enc
if [ "$rc" -ne 0 ] && [[ "$out" == *"az keyvault certificate create --vault-name kv-ehtest --name graph-enc"* ]]; then
	pass "cert-missing: refused, says how to create it"
else
	fail "cert-missing: rc $rc: $out"
fi

# A certificate already given as a Key Vault reference: passed on, resolved with the identity, and a
# reminder that the identity needs access to that vault.
ref='@Microsoft.KeyVault(SecretUri=https://other.vault.azure.net/secrets/enc/)'
run_deploy cert-ref GRAPH_RESOURCE=teams/getAllMessages GRAPH_ENCRYPTION_CERTIFICATE="$ref" GRAPH_ENCRYPTION_CERTIFICATE_ID=enc-2 --
has "cert-ref: passed on" "\"name\":\"GRAPH_ENCRYPTION_CERTIFICATE\",\"value\":\"$ref\""
has "cert-ref: id passed on" '"name":"GRAPH_ENCRYPTION_CERTIFICATE_ID","value":"enc-2"'
has "cert-ref: references resolve with the identity" "{\"properties\":{\"keyVaultReferenceIdentity\":\"$IDENTITY_ID\"}}"
says "cert-ref: vault access reminder" "needs Key Vault Secrets User"

# Refused before any Azure call: a certificate in clear, a certificate without a vault, an unknown resource.
for bad in "GRAPH_ENCRYPTION_CERTIFICATE=MIIKZgIBAzCCCiwGCSqGSIb3DQEHAaCCCh0Egg -- |must be a Key Vault reference" \
	"-- --encryption-cert graph-enc|--encryption-cert needs --key-vault" "GRAPH_RESOURCE=contacts --|contacts is none of"; do
	# shellcheck disable=SC2086 # the case's words are separate arguments
	deploy refused ${bad%|*}
	if [ "$rc" -ne 0 ] && [ ! -s "$log" ] && [[ "$out" == *"${bad#*|}"* ]]; then pass "refused before any az call: ${bad%|*}"; else
		fail "not refused as expected: ${bad%|*}: rc $rc: $out"
	fi
done

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
lacks "create-sp: no domain lookup" "organization"

# Bad names are refused before any Azure call.
deploy bad-namespace -- --event-hubs --eventhubs-namespace 'x!'
if [ "$rc" -ne 0 ] && [[ "$out" == *"Event Hubs namespace name"* ]] && [ ! -s "$log" ]; then
	pass "bad namespace refused before any az call"
else
	fail "bad namespace: rc $rc: $out"
fi

if [ "$failures" -gt 0 ]; then
	printf '%d failure(s)\n' "$failures" >&2
	exit 1
fi
echo "deploy_test: all passed"
