#!/usr/bin/env bash
# A fake Azure CLI for the script tests (deploy/deploy_test.sh, deploy/grant-graph-permission_test.sh),
# installed as `az` first on PATH. It logs every call to $AZ_LOG (with the JSON files passed as
# --settings @file and --body @file), keeps what it created in $FAKE_STATE, and answers the queries the
# scripts make with values shaped like the real CLI's.
#
# It also refuses what the real CLI refuses, with the real CLI's messages, so a script that depends on a
# call Azure would reject fails here too:
#   - `functionapp create --flexconsumption-location … --runtime custom --runtime-version V`: the CLI resolves
#     Flex runtimes from the stacks API and turns each minor version's value into a version by keeping only
#     digits and dots; the custom stack's value is "custom", so its only version is "" and any V is refused
#     (azure-cli appservice/custom.py, _FlexFunctionAppStackRuntimeHelper.resolve).
#   - `functionapp identity assign` and the generic `functionapp update --set` on a Flex Consumption app:
#     both read the site and write it back whole with an API version older than 2023-12-01, and Flex answers
#     "Site.FunctionAppConfig is invalid" (Azure/azure-cli#30380, #31414).
#   - `functionapp list-flexconsumption-runtimes --runtime R` for a runtime the region lacks (FAKE_NO_CUSTOM=1
#     makes "custom" one of them): the CLI's ValidationError.
#
# Knobs (environment): FAKE_EXISTING_APP=flex|premium (the function app exists before the run),
# FAKE_APP_IDENTITIES (identity resource ids already attached to it), FAKE_NO_CUSTOM=1, FAKE_NO_GRAPH_SP=1
# (Graph Change Tracking's service principal is missing), FAKE_NO_CERT=1 (no such Key Vault certificate),
# FAKE_OLD_CLI=1 (a CLI build whose Flex create fails attaching the identity), FAKE_GRANTED (Graph
# permissions already granted, comma-separated).
set -u
printf 'az %s\n' "$*" >>"$AZ_LOG"
state="${FAKE_STATE:?FAKE_STATE must name a directory}"
[ -d "$state" ] || mkdir -p "$state"
if [ ! -e "$state/.init" ]; then
	touch "$state/.init"
	if [ -n "${FAKE_EXISTING_APP:-}" ]; then
		printf '%s' "$FAKE_EXISTING_APP" >"$state/app"
		# One id per word.
		# shellcheck disable=SC2086
		printf '%s\n' ${FAKE_APP_IDENTITIES:-} >"$state/identities"
	fi
fi

sub=/subscriptions/00000000-0000-0000-0000-000000000000
# o[NAME]: the value after option NAME in this call (parsed once: no subshell per lookup).
declare -A o=()
prev=""
for a in "$@"; do
	[[ "$prev" != --* ]] || o[$prev]="$a"
	prev="$a"
done
has() { [[ " ${args[*]} " == *" $1 "* ]]; }
fail() {
	printf 'ERROR: %s\n' "$1" >&2
	exit 1
}
log_file() { # log_file OPTION: appends the @file given to OPTION to the log (an inline value is logged already)
	local f="${o[$1]:-}"
	[[ "$f" == @* ]] || return 0
	cat "${f#@}" >>"$AZ_LOG"
	printf '\n' >>"$AZ_LOG"
}
flex_refusal="(BadRequest) Site.FunctionAppConfig is invalid.  It is only supported for 2023-12-01 api-version or newer."

args=("$@")
rg="${o[--resource-group]:-}"
name="${o[--name]:-}"
case "$*" in
"account show --output none") ;;
"account show --query tenantId"*) echo "11111111-1111-1111-1111-111111111111" ;;
"account show --query name"*) echo "Test subscription" ;;
"cloud show"*) echo "https://graph.microsoft.com/" ;;

"functionapp list-flexconsumption-locations"*) echo 1 ;;
"functionapp list-flexconsumption-runtimes"*)
	runtime="${o[--runtime]:-}"
	if [ "$runtime" != custom ] || [ -n "${FAKE_NO_CUSTOM:-}" ]; then
		fail "Runtime '$runtime' not supported for function apps on the Flex Consumption plan."
	fi
	# What `-o json` prints for the custom stack: the CLI's Runtime objects, keys camel-cased.
	json='[{"name": "custom", "version": "", "appInsights": true, "default": false, "sku": {"skuCode": "FC1", "instanceMemoryMB": [{"size": "512", "isDefault": false}, {"size": "2048", "isDefault": true}, {"size": "4096", "isDefault": false}], "maximumInstanceCount": {"lowestMaximumInstanceCount": 40, "highestMaximumInstanceCount": 1000, "defaultValue": 100}, "functionAppConfigProperties": {"runtime": {"name": "custom", "version": "1.0"}}}, "endOfLifeDate": null, "githubActionsProperties": {"isSupported": false, "supportedVersion": null}}]'
	case "${o[--query]:-}" in
	"") echo "$json" ;;
	"[].version") echo "" ;;
	"[?name=='custom'] | [0].sku.functionAppConfigProperties.runtime.version") echo "1.0" ;;
	*) fail "fake az: no answer for query ${o[--query]:-}" ;;
	esac
	;;

"functionapp show"*"--output none"*) [ -e "$state/app" ] || exit 3 ;;
"functionapp show"*"--query id"*) echo "$sub/resourceGroups/$rg/providers/Microsoft.Web/sites/$name" ;;
"functionapp show"*"--query defaultHostName"*) echo "$name.azurewebsites.net" ;;
"functionapp create"*)
	if has --flexconsumption-location; then
		runtime="${o[--runtime]:-}"
		version="${o[--runtime-version]:-}"
		if [ "$runtime" = custom ] && has --runtime-version; then
			fail "Invalid version $version for runtime custom for function apps on the Flex Consumption plan. Supported versions for runtime custom are ['']."
		fi
		printf flex >"$state/app"
		# Older CLI builds make the app, then fail attaching its identity (Azure/azure-cli#30380).
		[ -z "${FAKE_OLD_CLI:-}" ] || [ "${o[--deployment-storage-auth-type]:-}" != UserAssignedIdentity ] || fail "$flex_refusal"
		if [ "${o[--deployment-storage-auth-type]:-}" = UserAssignedIdentity ]; then
			printf '%s' "${o[--deployment-storage-auth-value]:-}" >>"$state/identities"
			echo >>"$state/identities"
		fi
	else
		printf premium >"$state/app"
	fi
	;;
"functionapp identity show"*"--query userAssignedIdentities"*)
	# ARM may spell the resource group segment in lower case; callers compare ids case-insensitively.
	printf '{'
	sep=""
	while read -r id; do
		[ -n "$id" ] || continue
		printf '%s"%s": {"clientId": "identity-client-id", "principalId": "identity-principal-id"}' "$sep" "${id/resourceGroups/resourcegroups}"
		sep=", "
	done <"$state/identities" 2>/dev/null
	printf '}\n'
	;;
"functionapp identity assign"*)
	[ "$(cat "$state/app" 2>/dev/null)" != flex ] || fail "$flex_refusal"
	printf '%s' "${o[--identities]:-}" >>"$state/identities"
	echo >>"$state/identities"
	;;
"functionapp update"*)
	[ "$(cat "$state/app" 2>/dev/null)" != flex ] || fail "$flex_refusal"
	;;
"functionapp config appsettings set"*) log_file --settings ;;
"functionapp config appsettings list"*) ;;
"functionapp plan show"*) exit 3 ;;

"identity show"*"--query id"*) echo "$sub/resourceGroups/$rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/$name" ;;
"identity show"*"--query clientId"*) echo "identity-client-id" ;;
"identity show"*"--query principalId"*) echo "identity-principal-id" ;;
"storage account show"*"--query id"*) echo "$sub/resourceGroups/$rg/providers/Microsoft.Storage/storageAccounts/$name" ;;
"keyvault certificate show"*) [ -z "${FAKE_NO_CERT:-}" ] || { echo "ERROR: (CertificateNotFound) A certificate with (name/id) $name was not found in this key vault." >&2; exit 3; } ;;
"keyvault show"*"--query id"*) echo "$sub/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/$name" ;;
"keyvault show"*"--query properties.vaultUri"*) echo "https://$name.vault.azure.net/" ;;
"eventhubs namespace show"* | "eventhubs eventhub show"*"--output none"*) exit 3 ;;
"eventhubs eventhub show"*"--query id"*) echo "$sub/resourceGroups/$rg/providers/Microsoft.EventHub/namespaces/ns/eventhubs/$name" ;;
"role assignment list"*) echo 0 ;;

"ad sp show --id 0bf30f3b-4a52-48df-9a82-234910c4a086"*)
	[ -z "${FAKE_NO_GRAPH_SP:-}" ] || exit 3
	echo "graph-sp-object-id"
	;;
"ad sp create"*) echo "graph-sp-object-id" ;;
"ad sp show --id 00000003-0000-0000-c000-000000000000 --query id"*) echo "msgraph-sp-object-id" ;;
"ad sp show --id 00000003-0000-0000-c000-000000000000 --query appRoles"*)
	# Graph's application permissions that the scripts may ask for; any other name has no app role.
	perm="${o[--query]:-}"
	perm="${perm#*value==\'}"
	perm="${perm%%\'*}"
	case "$perm" in
	User.Read.All | Group.Read.All | GroupMember.Read.All | Files.Read.All | Mail.Read | Calendars.Read | \
		ChannelMessage.Read.All | Chat.Read.All) echo "role-$perm" ;;
	*) echo "" ;;
	esac
	;;

"rest"*)
	method="${o[--method]:-}"
	url="${o[--url]:-${o[--uri]:-}}"
	case "${method,,} $url" in
	"get https://graph.microsoft.com/v1.0/organization") echo "contoso.onmicrosoft.com" ;;
	"get "*"/appRoleAssignments")
		q="${o[--query]:-}"
		n=0
		granted="${FAKE_GRANTED:-}"
		for p in ${granted//,/ }; do
			[[ "$q" != *"'role-$p'"* ]] || n=1
		done
		echo "$n"
		;;
	"post "*"/appRoleAssignments") log_file --body ;;
	"patch $sub/"*"/providers/Microsoft.Web/sites/"*"?api-version="*) log_file --body ;;
	*) fail "fake az: unexpected rest call: $*" ;;
	esac
	;;
esac
exit 0
