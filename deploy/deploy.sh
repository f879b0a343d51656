#!/usr/bin/env bash
# Provisions and publishes the Graph change-notification receiver to Azure Functions with the Azure CLI.
# Idempotent: run it again to converge (existing resources are kept; app settings are re-applied; an existing
# GRAPH_CLIENT_STATE is kept, so the Graph subscription is not recreated for nothing).
#
#   resource group -> storage account (host storage + the handler's queues and checkpoint blob)
#   -> user-assigned managed identity (storage, deployment package, optionally Graph and Key Vault)
#   -> role assignments on the storage account -> function app on the chosen plan, Linux, "custom" runtime
#   -> identity-based AzureWebJobsStorage and every app setting of the design -> build + publish
#   -> GRAPH_NOTIFICATION_URL = https://<default host name>/api/webhook?code=<webhook function key>
#
# Usage: deploy/deploy.sh --app NAME [options]     (every option also reads an environment variable)
#   --app NAME              APP_NAME              function app name (globally unique)            required
#   --resource-group RG     RESOURCE_GROUP        default: rg-<app>
#   --location REGION       LOCATION              default: eastus2 (must support the chosen plan)
#   --storage NAME          STORAGE_ACCOUNT       default: st<app, letters and digits only, <=22 chars>
#   --identity NAME         IDENTITY_NAME         user-assigned identity; default: id-<app>
#   --plan flex|premium|dedicated  PLAN           default: flex (Flex Consumption)
#   --sku SKU               PLAN_SKU              premium: EP1 (default), dedicated: B1 (default)
#   --graph-auth mi|secret  GRAPH_AUTH            how the app authenticates to Graph; default: mi
#   --client-id ID          GRAPH_APP_CLIENT_ID   app registration id (graph-auth=secret)
#   --key-vault NAME        KEY_VAULT_NAME        store the client secret in Key Vault and reference it
#   --secret-name NAME      KEY_VAULT_SECRET_NAME default: graph-client-secret
#   --encryption-cert NAME  ENCRYPTION_CERT_NAME  a certificate in --key-vault for rich notifications (Teams):
#                                                 GRAPH_ENCRYPTION_CERTIFICATE references it, and
#                                                 GRAPH_ENCRYPTION_CERTIFICATE_ID defaults to NAME
#                           GRAPH_APP_CLIENT_SECRET  the secret itself (environment only, never a flag)
#   --tenant ID             AZURE_TENANT_ID       default: the signed-in tenant
#   --grant-graph                                 also run deploy/grant-graph-permission.sh (graph-auth=mi)
#                                                 for the permissions GRAPH_RESOURCE and GRAPH_MAILBOXES need
#   --skip-publish                                provision and configure only
#   --zip-deploy                                  publish with az (zip deploy) even when func is installed
#   --event-hubs            EVENT_HUBS=true       Graph delivers through Azure Event Hubs (off by default): creates
#                                                 the namespace (Standard) and hub, gives Microsoft Graph Change
#                                                 Tracking "Azure Event Hubs Data Sender" and the identity "Data
#                                                 Receiver", sets GRAPH_EVENTHUB__* and GRAPH_EVENTHUB_NAME,
#                                                 enables the eventhub function, subscribes with an EventHub: URL
#   --eventhubs-namespace NAME  EVENTHUBS_NAMESPACE  default: ehns-<app>
#   --event-hub NAME        EVENT_HUB_NAME        default: graph-notifications
#   --tenant-domain DOMAIN  EVENTHUB_TENANT_DOMAIN  the tenant's primary domain for the EventHub: URL;
#                                                 default: looked up with az rest (Graph /organization)
# Graph settings with design defaults: GRAPH_RESOURCE, GRAPH_CHANGE_TYPE, GRAPH_USER_SELECT, GRAPH_BASE_URL,
# RENEW_SCHEDULE (hourly), RESYNC_INITIAL, RESYNC_CONTAINER; GRAPH_CLIENT_STATE (64 random characters,
# generated once when absent, then kept). Passed on when set: AZURE_AUTHORITY_HOST,
# GRAPH_LIFECYCLE_NOTIFICATION_URL, GRAPH_CLIENT_STATE_PREVIOUS, GRAPH_MAILBOXES, GRAPH_MAILBOX_RESOURCES,
# GRAPH_TEAMS_MODEL, GRAPH_GROUP_SELECT, GRAPH_DRIVEITEM_SELECT, GRAPH_MESSAGE_SELECT, GRAPH_EVENT_SELECT,
# GRAPH_CHATMESSAGE_SELECT, GRAPH_ENCRYPTION_CERTIFICATE_ID, GRAPH_ENCRYPTION_CERTIFICATE_PREVIOUS_ID, and
# GRAPH_ENCRYPTION_CERTIFICATE[_PREVIOUS] as Key Vault references (@Microsoft.KeyVault(...)) only.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

APP_NAME="${APP_NAME:-}"
RESOURCE_GROUP="${RESOURCE_GROUP:-}"
LOCATION="${LOCATION:-eastus2}"
STORAGE_ACCOUNT="${STORAGE_ACCOUNT:-}"
IDENTITY_NAME="${IDENTITY_NAME:-}"
PLAN="${PLAN:-flex}"
PLAN_SKU="${PLAN_SKU:-}"
GRAPH_AUTH="${GRAPH_AUTH:-mi}"
GRAPH_APP_CLIENT_ID="${GRAPH_APP_CLIENT_ID:-}"
GRAPH_APP_CLIENT_SECRET="${GRAPH_APP_CLIENT_SECRET:-}"
KEY_VAULT_NAME="${KEY_VAULT_NAME:-}"
KEY_VAULT_SECRET_NAME="${KEY_VAULT_SECRET_NAME:-graph-client-secret}"
ENCRYPTION_CERT_NAME="${ENCRYPTION_CERT_NAME:-}"
AZURE_TENANT_ID="${AZURE_TENANT_ID:-}"
GRANT_GRAPH="${GRANT_GRAPH:-false}"
SKIP_PUBLISH="${SKIP_PUBLISH:-false}"
ZIP_DEPLOY="${ZIP_DEPLOY:-false}"
EVENT_HUBS="${EVENT_HUBS:-false}"
EVENTHUBS_NAMESPACE="${EVENTHUBS_NAMESPACE:-}"
EVENT_HUB_NAME="${EVENT_HUB_NAME:-graph-notifications}"
EVENTHUB_TENANT_DOMAIN="${EVENTHUB_TENANT_DOMAIN:-}"
# Microsoft Graph Change Tracking, the service principal that sends Graph's events to a hub.
GRAPH_CHANGE_TRACKING_APP_ID="0bf30f3b-4a52-48df-9a82-234910c4a086"
# The custom-handler stack, as the Functions stacks API and `az functionapp create --runtime` name it.
# On Flex Consumption the CLI turns each minor version's value into a version by dropping everything but
# digits and dots; this stack's only value is "custom", so its version is the empty string and the create
# passes no --runtime-version (the CLI refuses "1.0"). The app still runs runtime custom 1.0: the CLI copies
# name and version from the stack's FC1 entry into the app's functionAppConfig.
RUNTIME=custom

GRAPH_BASE_URL="${GRAPH_BASE_URL:-https://graph.microsoft.com/v1.0}"
GRAPH_RESOURCE="${GRAPH_RESOURCE:-users}"
GRAPH_CHANGE_TYPE="${GRAPH_CHANGE_TYPE:-updated,deleted}"
GRAPH_USER_SELECT="${GRAPH_USER_SELECT:-id,displayName,userPrincipalName,mail,accountEnabled,jobTitle,department}"
RENEW_SCHEDULE="${RENEW_SCHEDULE:-0 0 * * * *}"
RESYNC_INITIAL="${RESYNC_INITIAL:-latest}"
RESYNC_CONTAINER="${RESYNC_CONTAINER:-graph-webhooks}"

say() { printf '\n==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
warn() { printf 'deploy: warning: %s\n' "$*" >&2; }
die() {
	printf 'deploy: error: %s\n' "$*" >&2
	exit 1
}
usage() { sed -n '2,/^set -euo pipefail$/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
	case "$1" in
	--app) APP_NAME="${2:?}"; shift 2 ;;
	-g | --resource-group) RESOURCE_GROUP="${2:?}"; shift 2 ;;
	-l | --location) LOCATION="${2:?}"; shift 2 ;;
	--storage) STORAGE_ACCOUNT="${2:?}"; shift 2 ;;
	--identity) IDENTITY_NAME="${2:?}"; shift 2 ;;
	--plan) PLAN="${2:?}"; shift 2 ;;
	--sku) PLAN_SKU="${2:?}"; shift 2 ;;
	--graph-auth) GRAPH_AUTH="${2:?}"; shift 2 ;;
	--client-id) GRAPH_APP_CLIENT_ID="${2:?}"; shift 2 ;;
	--key-vault) KEY_VAULT_NAME="${2:?}"; shift 2 ;;
	--secret-name) KEY_VAULT_SECRET_NAME="${2:?}"; shift 2 ;;
	--encryption-cert) ENCRYPTION_CERT_NAME="${2:?}"; shift 2 ;;
	--tenant) AZURE_TENANT_ID="${2:?}"; shift 2 ;;
	--grant-graph) GRANT_GRAPH=true; shift ;;
	--skip-publish) SKIP_PUBLISH=true; shift ;;
	--zip-deploy) ZIP_DEPLOY=true; shift ;;
	--event-hubs) EVENT_HUBS=true; shift ;;
	--eventhubs-namespace) EVENTHUBS_NAMESPACE="${2:?}"; shift 2 ;;
	--event-hub) EVENT_HUB_NAME="${2:?}"; shift 2 ;;
	--tenant-domain) EVENTHUB_TENANT_DOMAIN="${2:?}"; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
done

# ---- inputs -----------------------------------------------------------------------------------------------
[ -n "$APP_NAME" ] || { usage >&2; die "--app (or APP_NAME) is required"; }
[[ "$APP_NAME" =~ ^[a-z0-9][a-z0-9-]{0,58}[a-z0-9]$ ]] || die "app name: 2-60 lowercase letters, digits and hyphens"
RESOURCE_GROUP="${RESOURCE_GROUP:-rg-$APP_NAME}"
IDENTITY_NAME="${IDENTITY_NAME:-id-$APP_NAME}"
if [ -z "$STORAGE_ACCOUNT" ]; then
	STORAGE_ACCOUNT="st$(printf '%s' "$APP_NAME" | tr -cd 'a-z0-9' | cut -c1-22)"
fi
[[ "$STORAGE_ACCOUNT" =~ ^[a-z0-9]{3,24}$ ]] || die "storage account name: 3-24 lowercase letters and digits"
case "$PLAN" in
flex) ;;
premium) PLAN_SKU="${PLAN_SKU:-EP1}" ;;
dedicated) PLAN_SKU="${PLAN_SKU:-B1}" ;;
*) die "--plan must be flex, premium or dedicated" ;;
esac
case "$GRAPH_AUTH" in
mi) ;;
secret)
	[ -n "$GRAPH_APP_CLIENT_ID" ] || die "graph-auth=secret needs --client-id (the app registration's application id)"
	if [ -z "$GRAPH_APP_CLIENT_SECRET" ] && [ -z "$KEY_VAULT_NAME" ]; then
		die "graph-auth=secret needs GRAPH_APP_CLIENT_SECRET in the environment, or --key-vault with the secret already in it"
	fi
	;;
*) die "--graph-auth must be mi or secret" ;;
esac
case "$EVENT_HUBS" in
true)
	EVENTHUBS_NAMESPACE="${EVENTHUBS_NAMESPACE:-ehns-$APP_NAME}"
	[[ "$EVENTHUBS_NAMESPACE" =~ ^[a-zA-Z][a-zA-Z0-9-]{4,48}[a-zA-Z0-9]$ ]] ||
		die "Event Hubs namespace name: 6-50 letters, digits and hyphens, starting with a letter"
	[[ "$EVENT_HUB_NAME" =~ ^[a-zA-Z0-9][a-zA-Z0-9._-]{0,255}$ ]] || die "event hub name: letters, digits, '.', '_' and '-'"
	;;
false) ;;
*) die "EVENT_HUBS must be true or false" ;;
esac
if [ -n "$ENCRYPTION_CERT_NAME" ]; then
	[ -n "$KEY_VAULT_NAME" ] || die "--encryption-cert needs --key-vault (the vault that holds the certificate)"
	[[ "$ENCRYPTION_CERT_NAME" =~ ^[a-zA-Z0-9-]{1,127}$ ]] || die "--encryption-cert: a Key Vault certificate name (letters, digits and hyphens)"
fi
# The private key reaches the app only through Key Vault, never as an app setting's clear value.
for name in GRAPH_ENCRYPTION_CERTIFICATE GRAPH_ENCRYPTION_CERTIFICATE_PREVIOUS; do
	[[ -z "${!name:-}" || "${!name}" == "@Microsoft.KeyVault("* ]] ||
		die "$name must be a Key Vault reference (@Microsoft.KeyVault(SecretUri=...)); or use --key-vault with --encryption-cert"
done
# The Graph application permissions the settings need, from the one mapping in grant-graph-permission.sh.
grant_args=(--resources "$GRAPH_RESOURCE")
[ -z "${GRAPH_MAILBOXES:-}" ] || grant_args+=(--mailboxes "$GRAPH_MAILBOXES" --mailbox-resources "${GRAPH_MAILBOX_RESOURCES:-messages}")
graph_permissions="$("$ROOT/deploy/grant-graph-permission.sh" "${grant_args[@]}" --print | paste -sd, - | sed 's/,/, /g')" ||
	die "GRAPH_RESOURCE or GRAPH_MAILBOXES: see the message above"

command -v az >/dev/null 2>&1 || die "the Azure CLI (az) is not installed: https://learn.microsoft.com/cli/azure/install-azure-cli"
az account show --output none 2>/dev/null || die "not signed in: run az login"
AZURE_TENANT_ID="${AZURE_TENANT_ID:-$(az account show --query tenantId --output tsv)}"
subscription="$(az account show --query name --output tsv)"

tmp="$(mktemp -d)"
chmod 700 "$tmp"
trap 'rm -rf "$tmp"' EXIT

# json_escape TEXT: TEXT as a JSON string body (app settings go through a file, never the command line,
# so secrets and keys do not show in the process list).
json_escape() {
	local s="$1"
	s="${s//\\/\\\\}"
	s="${s//\"/\\\"}"
	s="${s//$'\n'/\\n}"
	s="${s//$'\r'/\\r}"
	s="${s//$'\t'/\\t}"
	printf '%s' "$s"
}

# set_settings NAME=VALUE...: sets app settings in one call (one restart), through a 0600 JSON file.
set_settings() {
	local f="$tmp/settings.json" first=true kv
	{
		printf '['
		for kv in "$@"; do
			$first || printf ','
			first=false
			printf '{"name":"%s","value":"%s","slotSetting":false}' "$(json_escape "${kv%%=*}")" "$(json_escape "${kv#*=}")"
		done
		printf ']'
	} >"$f"
	az functionapp config appsettings set --name "$APP_NAME" --resource-group "$RESOURCE_GROUP" \
		--settings "@$f" --output none
	rm -f "$f"
}

# get_setting NAME: the app setting's current value, or nothing.
get_setting() {
	az functionapp config appsettings list --name "$APP_NAME" --resource-group "$RESOURCE_GROUP" \
		--query "[?name=='$1'].value | [0]" --output tsv 2>/dev/null || true
}

# ensure_role ROLE SCOPE PRINCIPAL_OBJECT_ID
ensure_role() {
	local n
	n="$(az role assignment list --assignee "$3" --role "$1" --scope "$2" --query "length(@)" --output tsv 2>/dev/null || echo 0)"
	if [ "${n:-0}" = "0" ]; then
		az role assignment create --assignee-object-id "$3" --assignee-principal-type ServicePrincipal \
			--role "$1" --scope "$2" --output none
		info "granted $1"
	else
		info "$1: already granted"
	fi
}

# set_key_vault_reference_identity: Key Vault references resolve with the user-assigned identity, not the
# (absent) system-assigned one. Set with an ARM PATCH of that one property (Learn's own method for it):
# `az functionapp update --set` writes the whole site back with an API version older than Flex, which Flex
# refuses (Azure/azure-cli#30380, #31414). 2023-12-01 is the version the CLI itself creates Flex apps with.
set_key_vault_reference_identity() {
	printf '{"properties":{"keyVaultReferenceIdentity":"%s"}}' "$(json_escape "$identity_id")" >"$tmp/kvref.json"
	az rest --method patch --url "$app_id?api-version=2023-12-01" --body "@$tmp/kvref.json" --output none
	info "Key Vault references resolve with $IDENTITY_NAME"
}

# shell_words ARGS...: ARGS as a shell reads them back, single-quoted where needed (for printed commands).
shell_words() {
	local a q="'\\''"
	for a in "$@"; do
		if [[ "$a" =~ ^[A-Za-z0-9_./:=@,+-]+$ ]]; then printf ' %s' "$a"; else printf " '%s'" "${a//\'/$q}"; fi
	done
}

urlencode() {
	local s="$1" out="" c i
	for ((i = 0; i < ${#s}; i++)); do
		c="${s:i:1}"
		case "$c" in
		[a-zA-Z0-9.~_-]) out+="$c" ;;
		*) out+="$(printf '%%%02X' "'$c")" ;;
		esac
	done
	printf '%s' "$out"
}

say "Deploying $APP_NAME to subscription '$subscription', tenant $AZURE_TENANT_ID"
info "resource group $RESOURCE_GROUP, region $LOCATION, plan $PLAN${PLAN_SKU:+ ($PLAN_SKU)}, storage $STORAGE_ACCOUNT, identity $IDENTITY_NAME, Graph auth: $GRAPH_AUTH"

# ---- resource group, storage, identity ---------------------------------------------------------------------
if [ "$PLAN" = flex ]; then
	say "Checking Flex Consumption availability in $LOCATION"
	if ! az functionapp list-flexconsumption-locations --query "[?name=='$LOCATION'] | length(@)" --output tsv | grep -qx '[1-9][0-9]*'; then
		die "$LOCATION does not offer Flex Consumption (az functionapp list-flexconsumption-locations), or choose --plan premium"
	fi
	# The CLI lists the region's FC1 stacks for the runtime (an error when there are none); for "custom" the
	# listed version is empty, and the runtime the app will get is sku.functionAppConfigProperties.runtime.
	if flex_runtime="$(az functionapp list-flexconsumption-runtimes --location "$LOCATION" --runtime "$RUNTIME" \
		--query "[?name=='$RUNTIME'] | [0].sku.functionAppConfigProperties.runtime.version" \
		--output tsv 2>"$tmp/runtimes.err")" && [ -n "$flex_runtime" ]; then
		info "Flex Consumption in $LOCATION runs custom handlers (the app's runtime will be $RUNTIME $flex_runtime)"
	else
		die "Flex Consumption in $LOCATION does not list the '$RUNTIME' runtime ($(tr -s '\n' ' ' <"$tmp/runtimes.err")); check with: az functionapp list-flexconsumption-runtimes -l $LOCATION --runtime $RUNTIME -o json, or choose another --location or --plan premium"
	fi
fi

say "Resource group"
az group create --name "$RESOURCE_GROUP" --location "$LOCATION" --output none
info "$RESOURCE_GROUP"

say "Storage account"
if az storage account show --name "$STORAGE_ACCOUNT" --resource-group "$RESOURCE_GROUP" --output none 2>/dev/null; then
	info "$STORAGE_ACCOUNT exists"
else
	# Shared keys stay on for Premium, whose content file share still needs a connection string.
	shared_key=true
	[ "$PLAN" = premium ] || shared_key=false
	az storage account create --name "$STORAGE_ACCOUNT" --resource-group "$RESOURCE_GROUP" --location "$LOCATION" \
		--sku Standard_LRS --kind StorageV2 --min-tls-version TLS1_2 --allow-blob-public-access false \
		--allow-shared-key-access "$shared_key" --output none
	info "created $STORAGE_ACCOUNT (shared key access: $shared_key)"
fi
storage_id="$(az storage account show --name "$STORAGE_ACCOUNT" --resource-group "$RESOURCE_GROUP" --query id --output tsv)"

say "User-assigned managed identity"
if ! az identity show --name "$IDENTITY_NAME" --resource-group "$RESOURCE_GROUP" --output none 2>/dev/null; then
	az identity create --name "$IDENTITY_NAME" --resource-group "$RESOURCE_GROUP" --location "$LOCATION" --output none
	info "created $IDENTITY_NAME"
fi
identity_id="$(az identity show --name "$IDENTITY_NAME" --resource-group "$RESOURCE_GROUP" --query id --output tsv)"
identity_client_id="$(az identity show --name "$IDENTITY_NAME" --resource-group "$RESOURCE_GROUP" --query clientId --output tsv)"
identity_principal_id="$(az identity show --name "$IDENTITY_NAME" --resource-group "$RESOURCE_GROUP" --query principalId --output tsv)"
info "$IDENTITY_NAME: client id $identity_client_id"

say "Storage roles for the identity (host storage, queues, the checkpoint blob and the state table)"
# Blob Data Owner: host coordination, keys, timer locks, deployment package, delta checkpoint.
# Queue Data Contributor: the queue trigger and output bindings, and the handler's own re-enqueues.
# Table Data Contributor: the host's diagnostic events, and the handler's state table (STATE_TABLE,
# default graphstate), where it keeps each object's last emitted state.
for role in "Storage Blob Data Owner" "Storage Queue Data Contributor" "Storage Table Data Contributor"; do
	ensure_role "$role" "$storage_id" "$identity_principal_id"
done

# ---- function app -------------------------------------------------------------------------------------------
say "Function app ($PLAN)"
if az functionapp show --name "$APP_NAME" --resource-group "$RESOURCE_GROUP" --output none 2>/dev/null; then
	info "$APP_NAME exists"
else
	case "$PLAN" in
	flex)
		# No --runtime-version: see RUNTIME above. The create also attaches the identity to the app and gives
		# it Storage Blob Data Contributor on the deployment container's account; CLI builds whose identity
		# code writes the site with an API version older than Flex fail right there (Azure/azure-cli#30380).
		if ! az functionapp create --name "$APP_NAME" --resource-group "$RESOURCE_GROUP" \
			--storage-account "$STORAGE_ACCOUNT" --flexconsumption-location "$LOCATION" --runtime "$RUNTIME" \
			--deployment-storage-auth-type UserAssignedIdentity --deployment-storage-auth-value "$identity_id" \
			--output none 2>"$tmp/create.err"; then
			cat "$tmp/create.err" >&2
			! grep -q 'FunctionAppConfig is invalid' "$tmp/create.err" ||
				die "this Azure CLI cannot attach an identity to a Flex Consumption app (Azure/azure-cli#30380): update it (az upgrade), delete the half-made app (az functionapp delete -g $RESOURCE_GROUP -n $APP_NAME), and run this script again"
			die "az functionapp create failed (above)"
		fi
		;;
	premium | dedicated)
		plan_name="plan-$APP_NAME"
		if ! az functionapp plan show --name "$plan_name" --resource-group "$RESOURCE_GROUP" --output none 2>/dev/null; then
			az functionapp plan create --name "$plan_name" --resource-group "$RESOURCE_GROUP" --location "$LOCATION" \
				--sku "$PLAN_SKU" --is-linux true --output none
		fi
		az functionapp create --name "$APP_NAME" --resource-group "$RESOURCE_GROUP" --plan "$plan_name" \
			--storage-account "$STORAGE_ACCOUNT" --os-type Linux --runtime "$RUNTIME" --functions-version 4 \
			--output none
		;;
	esac
	info "created $APP_NAME"
fi
app_id="$(az functionapp show --name "$APP_NAME" --resource-group "$RESOURCE_GROUP" --query id --output tsv)"
# Attach the identity only when it is missing: a Flex create attached it already, and on Flex the CLI's
# `identity assign` (a read-modify-write of the whole site with an API version older than Flex) has been
# reported to fail with "Site.FunctionAppConfig is invalid" (Azure/azure-cli#30380).
attached="$(az functionapp identity show --name "$APP_NAME" --resource-group "$RESOURCE_GROUP" \
	--query "userAssignedIdentities" --output json 2>/dev/null || true)"
if [[ "${attached,,}" == *"\"${identity_id,,}\""* ]]; then
	info "identity $IDENTITY_NAME already attached"
elif az functionapp identity assign --name "$APP_NAME" --resource-group "$RESOURCE_GROUP" \
	--identities "$identity_id" --output none 2>"$tmp/assign.err"; then
	info "identity $IDENTITY_NAME attached"
else
	cat "$tmp/assign.err" >&2
	die "could not attach $IDENTITY_NAME to $APP_NAME. On Flex Consumption some Azure CLI versions fail here (Site.FunctionAppConfig is invalid: Azure/azure-cli#30380); attach it in the portal (Function app > Settings > Identity > User assigned > Add), then run this script again"
fi

# Application Insights (az functionapp create makes one named like the app): authenticate with the identity.
ai_id="$(az resource list --resource-group "$RESOURCE_GROUP" --resource-type microsoft.insights/components \
	--query "[?name=='$APP_NAME'].id | [0]" --output tsv 2>/dev/null || true)"
ai_settings=()
if [ -n "$ai_id" ]; then
	ensure_role "Monitoring Metrics Publisher" "$ai_id" "$identity_principal_id"
	ai_settings=("APPLICATIONINSIGHTS_AUTHENTICATION_STRING=ClientId=$identity_client_id;Authorization=AAD")
fi

# ---- Key Vault (client secret, encryption certificate) ------------------------------------------------
if [ -n "$KEY_VAULT_NAME" ]; then
	say "Key Vault $KEY_VAULT_NAME"
	if ! az keyvault show --name "$KEY_VAULT_NAME" --output none 2>/dev/null; then
		az keyvault create --name "$KEY_VAULT_NAME" --resource-group "$RESOURCE_GROUP" --location "$LOCATION" \
			--enable-rbac-authorization true --output none
		info "created $KEY_VAULT_NAME (Azure RBAC)"
	fi
	vault_id="$(az keyvault show --name "$KEY_VAULT_NAME" --query id --output tsv)"
	vault_uri="$(az keyvault show --name "$KEY_VAULT_NAME" --query properties.vaultUri --output tsv)"
	ensure_role "Key Vault Secrets User" "$vault_id" "$identity_principal_id"
fi

# ---- Graph credential -------------------------------------------------------------------------------------
graph_settings=()
if [ "$GRAPH_AUTH" = mi ]; then
	# AZURE_CLIENT_ID names the user-assigned identity: the handler asks it for Graph tokens, and checks
	# Graph's validation tokens against it. No secret, no certificate.
	graph_settings=("AZURE_CLIENT_ID=$identity_client_id")
	graph_client_principal="$identity_principal_id"
else
	graph_settings=("AZURE_CLIENT_ID=$GRAPH_APP_CLIENT_ID")
	graph_client_principal=""
	if [ -n "$KEY_VAULT_NAME" ]; then
		if [ -n "$GRAPH_APP_CLIENT_SECRET" ]; then
			umask 077
			printf '%s' "$GRAPH_APP_CLIENT_SECRET" >"$tmp/secret"
			az keyvault secret set --vault-name "$KEY_VAULT_NAME" --name "$KEY_VAULT_SECRET_NAME" \
				--file "$tmp/secret" --encoding utf-8 --output none
			rm -f "$tmp/secret"
			info "stored the client secret as $KEY_VAULT_SECRET_NAME"
		fi
		# Versionless: the app picks up a rotated secret.
		graph_settings+=("AZURE_CLIENT_SECRET=@Microsoft.KeyVault(SecretUri=${vault_uri%/}/secrets/$KEY_VAULT_SECRET_NAME/)")
	else
		warn "the client secret goes into an app setting in clear; prefer --key-vault"
		graph_settings+=("AZURE_CLIENT_SECRET=$GRAPH_APP_CLIENT_SECRET")
	fi
fi

# ---- rich notifications' certificate (Teams) ----------------------------------------------------------------
# A Key Vault certificate's secret (secrets/NAME) is the certificate with its private key, PKCS#12 by
# default; a versionless reference follows its renewals. Graph gets the public part only, from the handler.
if [ -n "$ENCRYPTION_CERT_NAME" ]; then
	az keyvault certificate show --vault-name "$KEY_VAULT_NAME" --name "$ENCRYPTION_CERT_NAME" --output none 2>/dev/null ||
		die "no certificate $ENCRYPTION_CERT_NAME in $KEY_VAULT_NAME; create one (RSA 2048, self-signed is fine) with: az keyvault certificate create --vault-name $KEY_VAULT_NAME --name $ENCRYPTION_CERT_NAME --policy \"\$(az keyvault certificate get-default-policy)\""
	GRAPH_ENCRYPTION_CERTIFICATE="@Microsoft.KeyVault(SecretUri=${vault_uri%/}/secrets/$ENCRYPTION_CERT_NAME/)"
	GRAPH_ENCRYPTION_CERTIFICATE_ID="${GRAPH_ENCRYPTION_CERTIFICATE_ID:-$ENCRYPTION_CERT_NAME}"
	info "GRAPH_ENCRYPTION_CERTIFICATE references $ENCRYPTION_CERT_NAME in $KEY_VAULT_NAME (id $GRAPH_ENCRYPTION_CERTIFICATE_ID)"
elif [ -n "${GRAPH_ENCRYPTION_CERTIFICATE:-}${GRAPH_ENCRYPTION_CERTIFICATE_PREVIOUS:-}" ] && [ -z "$KEY_VAULT_NAME" ]; then
	warn "GRAPH_ENCRYPTION_CERTIFICATE references a vault this script does not manage: $IDENTITY_NAME needs Key Vault Secrets User on it"
fi
resources_lc=",${GRAPH_RESOURCE// /},"
if [[ "${resources_lc,,}" =~ ,/?(teams|chats)/ ]] && [ -z "${GRAPH_ENCRYPTION_CERTIFICATE:-}" ] &&
	[ -z "$(get_setting GRAPH_ENCRYPTION_CERTIFICATE)" ]; then
	die "GRAPH_RESOURCE names Teams messages, which Graph sends encrypted: give a certificate with --key-vault NAME --encryption-cert CERT"
fi
# Key Vault references (the client secret, the certificates) resolve with the user-assigned identity.
if [[ "${graph_settings[*]} ${GRAPH_ENCRYPTION_CERTIFICATE:-} ${GRAPH_ENCRYPTION_CERTIFICATE_PREVIOUS:-}" == *"@Microsoft.KeyVault("* ]]; then
	set_key_vault_reference_identity
fi

# ---- Event Hubs (optional) -------------------------------------------------------------------------------
# Graph delivers into the hub with its own identity (Microsoft Graph Change Tracking), so that service
# principal needs the Sender role on the hub; the app reads with its user-assigned identity. Standard tier:
# Basic caps events at 256 KB, below the 1 MB Graph may send.
eventhub_settings=("AzureWebJobs.eventhub.Disabled=true")
if [ "$EVENT_HUBS" = true ]; then
	say "Event Hubs namespace $EVENTHUBS_NAMESPACE and hub $EVENT_HUB_NAME"
	if az eventhubs namespace show --name "$EVENTHUBS_NAMESPACE" --resource-group "$RESOURCE_GROUP" --output none 2>/dev/null; then
		info "$EVENTHUBS_NAMESPACE exists"
	else
		az eventhubs namespace create --name "$EVENTHUBS_NAMESPACE" --resource-group "$RESOURCE_GROUP" \
			--location "$LOCATION" --sku Standard --disable-local-auth true --output none
		info "created $EVENTHUBS_NAMESPACE (Standard, Entra ID authentication only)"
	fi
	if az eventhubs eventhub show --name "$EVENT_HUB_NAME" --namespace-name "$EVENTHUBS_NAMESPACE" \
		--resource-group "$RESOURCE_GROUP" --output none 2>/dev/null; then
		info "$EVENT_HUB_NAME exists"
	else
		az eventhubs eventhub create --name "$EVENT_HUB_NAME" --namespace-name "$EVENTHUBS_NAMESPACE" \
			--resource-group "$RESOURCE_GROUP" --partition-count 4 --output none
		info "created $EVENT_HUB_NAME (4 partitions)"
	fi
	hub_id="$(az eventhubs eventhub show --name "$EVENT_HUB_NAME" --namespace-name "$EVENTHUBS_NAMESPACE" \
		--resource-group "$RESOURCE_GROUP" --query id --output tsv)"

	say "Event Hubs roles"
	graph_sp="$(az ad sp show --id "$GRAPH_CHANGE_TRACKING_APP_ID" --query id --output tsv 2>/dev/null || true)"
	if [ -z "$graph_sp" ]; then
		# Tenants that never used change notifications lack it; creating it needs Application Administrator.
		graph_sp="$(az ad sp create --id "$GRAPH_CHANGE_TRACKING_APP_ID" --query id --output tsv)" ||
			die "could not create the Microsoft Graph Change Tracking service principal ($GRAPH_CHANGE_TRACKING_APP_ID): ask an admin to run: az ad sp create --id $GRAPH_CHANGE_TRACKING_APP_ID"
		info "created the Microsoft Graph Change Tracking service principal"
	fi
	ensure_role "Azure Event Hubs Data Sender" "$hub_id" "$graph_sp"
	ensure_role "Azure Event Hubs Data Receiver" "$hub_id" "$identity_principal_id"

	if [ -z "$EVENTHUB_TENANT_DOMAIN" ]; then
		EVENTHUB_TENANT_DOMAIN="$(az rest --method get --url https://graph.microsoft.com/v1.0/organization \
			--query "value[0].verifiedDomains[?isDefault].name | [0]" --output tsv 2>/dev/null || true)"
		[ -n "$EVENTHUB_TENANT_DOMAIN" ] || die "could not read the tenant's primary domain: pass --tenant-domain"
	fi
	eventhub_url="EventHub:https://$EVENTHUBS_NAMESPACE.servicebus.windows.net/eventhubname/$EVENT_HUB_NAME?tenantId=$EVENTHUB_TENANT_DOMAIN"
	eventhub_settings=(
		"AzureWebJobs.eventhub.Disabled=false"
		"GRAPH_EVENTHUB__fullyQualifiedNamespace=$EVENTHUBS_NAMESPACE.servicebus.windows.net"
		"GRAPH_EVENTHUB__credential=managedidentity"
		"GRAPH_EVENTHUB__clientId=$identity_client_id"
		"GRAPH_EVENTHUB_NAME=$EVENT_HUB_NAME"
		"GRAPH_NOTIFICATION_URL=$eventhub_url"
	)
	info "notifications will go to $eventhub_url"
elif [ -z "$(get_setting GRAPH_EVENTHUB_NAME)" ]; then
	# %GRAPH_EVENTHUB_NAME% must resolve even while the function is disabled, or the host reports it in error.
	eventhub_settings+=("GRAPH_EVENTHUB_NAME=not-configured")
fi

# ---- app settings ---------------------------------------------------------------------------------------
say "App settings"
client_state="${GRAPH_CLIENT_STATE:-$(get_setting GRAPH_CLIENT_STATE)}"
if [ -z "$client_state" ]; then
	# 48 random bytes as base64url without padding: 64 characters, 384 bits (Graph takes up to 128).
	client_state="$(head -c 48 /dev/urandom | base64 | tr -d '\n=' | tr '+/' '-_')"
	info "generated GRAPH_CLIENT_STATE (64 random characters, not shown)"
elif [ "${#client_state}" -lt 16 ] || [ "${#client_state}" -gt 128 ]; then
	die "GRAPH_CLIENT_STATE must be 16 to 128 characters long (the handler refuses it otherwise); leave it unset to generate one"
elif [ "${#client_state}" -lt 32 ]; then
	warn "GRAPH_CLIENT_STATE has under 32 characters: handler status will report it weak; leave it unset to generate one"
fi
settings=(
	"AzureWebJobsStorage__accountName=$STORAGE_ACCOUNT"
	"AzureWebJobsStorage__credential=managedidentity"
	"AzureWebJobsStorage__clientId=$identity_client_id"
	"AZURE_TENANT_ID=$AZURE_TENANT_ID"
	"GRAPH_BASE_URL=$GRAPH_BASE_URL"
	"GRAPH_CLIENT_STATE=$client_state"
	"GRAPH_RESOURCE=$GRAPH_RESOURCE"
	"GRAPH_CHANGE_TYPE=$GRAPH_CHANGE_TYPE"
	"GRAPH_USER_SELECT=$GRAPH_USER_SELECT"
	"RENEW_SCHEDULE=$RENEW_SCHEDULE"
	"RESYNC_INITIAL=$RESYNC_INITIAL"
	"RESYNC_CONTAINER=$RESYNC_CONTAINER"
	"${graph_settings[@]}"
	"${eventhub_settings[@]}"
)
[ "${#ai_settings[@]}" -eq 0 ] || settings+=("${ai_settings[@]}")
# Optional settings, passed on when set; the handler's defaults apply otherwise.
for name in AZURE_AUTHORITY_HOST GRAPH_LIFECYCLE_NOTIFICATION_URL GRAPH_CLIENT_STATE_PREVIOUS \
	GRAPH_MAILBOXES GRAPH_MAILBOX_RESOURCES GRAPH_TEAMS_MODEL \
	GRAPH_GROUP_SELECT GRAPH_DRIVEITEM_SELECT GRAPH_MESSAGE_SELECT GRAPH_EVENT_SELECT GRAPH_CHATMESSAGE_SELECT \
	GRAPH_ENCRYPTION_CERTIFICATE GRAPH_ENCRYPTION_CERTIFICATE_ID \
	GRAPH_ENCRYPTION_CERTIFICATE_PREVIOUS GRAPH_ENCRYPTION_CERTIFICATE_PREVIOUS_ID; do
	[ -z "${!name:-}" ] || settings+=("$name=${!name}")
done
if [ "$PLAN" != flex ]; then
	# Flex Consumption takes the runtime from the app's configuration and rejects these two settings.
	settings+=("FUNCTIONS_WORKER_RUNTIME=custom" "FUNCTIONS_EXTENSION_VERSION=~4")
fi
set_settings "${settings[@]}"
if [ -n "$(get_setting AzureWebJobsStorage)" ]; then
	# Host storage through the identity only: drop the key-bearing connection string az created.
	az functionapp config appsettings delete --name "$APP_NAME" --resource-group "$RESOURCE_GROUP" \
		--setting-names AzureWebJobsStorage --output none
	info "removed the AzureWebJobsStorage connection string (identity-based now)"
fi
info "set ${#settings[@]} settings (values not shown)"

# ---- build and publish --------------------------------------------------------------------------------------
if [ "$SKIP_PUBLISH" = true ]; then
	say "Publish skipped (--skip-publish)"
else
	say "Building ./handler for Linux x64"
	command -v go >/dev/null 2>&1 || die "Go is not installed (https://go.dev/dl/)"
	(cd "$ROOT" && GOOS=linux GOARCH=amd64 CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o handler .)
	chmod +x "$ROOT/handler"
	"$ROOT/scripts/check-handler.sh" "$ROOT/handler" # what make publish checks too: nothing else is uploaded

	if [ "$ZIP_DEPLOY" != true ] && command -v func >/dev/null 2>&1; then
		say "Publishing with Core Tools (func azure functionapp publish)"
		(cd "$ROOT" && func azure functionapp publish "$APP_NAME")
	else
		[ "$ZIP_DEPLOY" = true ] || warn "Core Tools (func) not found: publishing with az zip deploy instead"
		say "Publishing with az functionapp deployment source config-zip"
		command -v zip >/dev/null 2>&1 || die "zip is not installed (it packages host.json, function.json files and handler)"
		# Exactly what .funcignore lets through: host.json, the handler (execute bit kept) and each function.json.
		(cd "$ROOT" && zip -q -X "$tmp/app.zip" host.json handler webhook/function.json queueworker/function.json renewtimer/function.json eventhub/function.json)
		az functionapp deployment source config-zip --name "$APP_NAME" --resource-group "$RESOURCE_GROUP" \
			--src "$tmp/app.zip" --output none
	fi
fi
if [ "$SKIP_PUBLISH" != true ] && [ "$EVENT_HUBS" != true ]; then
	say "Notification URL"
	host="$(az functionapp show --name "$APP_NAME" --resource-group "$RESOURCE_GROUP" --query defaultHostName --output tsv)"
	key=""
	for _ in $(seq 1 24); do
		key="$(az functionapp function keys list --name "$APP_NAME" --resource-group "$RESOURCE_GROUP" \
			--function-name webhook --query default --output tsv 2>/dev/null || true)"
		[ -n "$key" ] || key="$(az functionapp keys list --name "$APP_NAME" --resource-group "$RESOURCE_GROUP" \
			--query functionKeys.default --output tsv 2>/dev/null || true)"
		[ -z "$key" ] || break
		sleep 5
	done
	if [ -z "$key" ]; then
		warn "no function key yet (the host may still be starting); run this script again with --skip-publish to set GRAPH_NOTIFICATION_URL"
	else
		url="https://$host/api/webhook?code=$(urlencode "$key")"
		if [ "$(get_setting GRAPH_NOTIFICATION_URL)" = "$url" ]; then
			info "GRAPH_NOTIFICATION_URL is up to date"
		else
			set_settings "GRAPH_NOTIFICATION_URL=$url"
			info "GRAPH_NOTIFICATION_URL set to https://$host/api/webhook?code=<webhook key>"
		fi
	fi
fi

if [ "$GRAPH_AUTH" = mi ] && [ "$GRANT_GRAPH" = true ]; then
	say "Granting Microsoft Graph $graph_permissions to $IDENTITY_NAME"
	"$ROOT/deploy/grant-graph-permission.sh" --principal-id "$graph_client_principal" "${grant_args[@]}"
fi

# ---- next steps -------------------------------------------------------------------------------------------
say "Done. Next steps"
if [ "$GRAPH_AUTH" = mi ]; then
	cat <<EOF
  1. Grant Microsoft Graph $graph_permissions (application) to the identity $IDENTITY_NAME, as a
     tenant admin (the portal cannot grant Graph permissions to a managed identity; skip if you used
     --grant-graph):
       deploy/grant-graph-permission.sh --identity-name $IDENTITY_NAME --resource-group $RESOURCE_GROUP$(shell_words "${grant_args[@]}")
EOF
else
	cat <<EOF
  1. In the app registration $GRAPH_APP_CLIENT_ID: API permissions > Microsoft Graph > Application
     permissions > $graph_permissions, then "Grant admin consent" for the tenant.
EOF
fi
cat <<EOF
  2. Watch the renew timer create the subscription (it runs at start-up and hourly) in Live Metrics:
       func azure functionapp logstream $APP_NAME --browser
     or Application Insights > Logs. (Without --browser, logstream reads the Kudu log stream: it needs
     basic authentication on the app's SCM site, often off, and shows one instance only.)
  3. Do not put authentication (App Service Authentication / EasyAuth) in front of /api/webhook: Graph's
     validation request carries no token, only the function key in ?code=.
  4. After rotating the webhook's function key, run this script again: it updates GRAPH_NOTIFICATION_URL,
     and the next timer run moves the subscription to it.
EOF
if [ "$EVENT_HUBS" = true ]; then
	cat <<EOF
  5. Event Hubs: Graph now delivers to $EVENT_HUB_NAME in $EVENTHUBS_NAMESPACE and the eventhub function
     reads it; the webhook stays deployed but receives nothing. Role assignments can take a few minutes to
     apply: until then the timer's subscription create fails and is retried at its next run.
EOF
fi
