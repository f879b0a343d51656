#!/usr/bin/env bash
# Grants a Microsoft Graph *application* permission (default User.Read.All) to a managed identity's service
# principal. The Azure portal cannot do this for a managed identity (it has no "API permissions" page), so it
# is an app role assignment made through Graph: POST /servicePrincipals/{id}/appRoleAssignments.
#
# Who may run it: someone who can grant admin consent for application permissions in the tenant, e.g. a
# Privileged Role Administrator, Cloud Application Administrator or Global Administrator (az login first).
# Idempotent: an existing assignment is reported and left as it is.
#
# Usage:
#   deploy/grant-graph-permission.sh --identity-name NAME --resource-group RG     # user-assigned identity
#   deploy/grant-graph-permission.sh --app NAME --resource-group RG               # a function app's system-assigned identity
#   deploy/grant-graph-permission.sh --principal-id OBJECT_ID                     # any service principal, by object id
# Options: --permission NAME (default User.Read.All; repeat for several), --resources LIST (the app's
# GRAPH_RESOURCE, e.g. users,groups: grants User.Read.All for users and Group.Read.All for groups), --dry-run.
set -euo pipefail

GRAPH_APP_ID="00000003-0000-0000-c000-000000000000" # Microsoft Graph's well-known application id

principal_id=""
identity_name=""
app_name=""
resource_group=""
dry_run=false
permissions=()

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
die() {
	printf 'grant-graph-permission: error: %s\n' "$*" >&2
	exit 1
}
say() { printf 'grant-graph-permission: %s\n' "$*"; }

while [ $# -gt 0 ]; do
	case "$1" in
	--principal-id) principal_id="${2:?--principal-id needs a value}"; shift 2 ;;
	--identity-name) identity_name="${2:?--identity-name needs a value}"; shift 2 ;;
	--app) app_name="${2:?--app needs a value}"; shift 2 ;;
	-g | --resource-group) resource_group="${2:?--resource-group needs a value}"; shift 2 ;;
	--permission) permissions+=("${2:?--permission needs a value}"); shift 2 ;;
	--resources)
		IFS=',' read -r -a resources <<<"${2:?--resources needs a value}"
		for r in "${resources[@]}"; do
			case "${r%%/*}" in
			users) permissions+=(User.Read.All) ;;
			groups) permissions+=(Group.Read.All) ;;
			*) die "--resources: $r is neither users nor groups" ;;
			esac
		done
		shift 2
		;;
	--dry-run) dry_run=true; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
done
[ "${#permissions[@]}" -gt 0 ] || permissions=(User.Read.All)

command -v az >/dev/null 2>&1 || die "the Azure CLI (az) is not installed: https://learn.microsoft.com/cli/azure/install-azure-cli"
az account show --output none 2>/dev/null || die "not signed in: run az login (as an administrator of the tenant)"

if [ -z "$principal_id" ]; then
	if [ -n "$identity_name" ]; then
		[ -n "$resource_group" ] || die "--identity-name needs --resource-group"
		principal_id="$(az identity show --name "$identity_name" --resource-group "$resource_group" --query principalId --output tsv)"
	elif [ -n "$app_name" ]; then
		[ -n "$resource_group" ] || die "--app needs --resource-group"
		principal_id="$(az functionapp identity show --name "$app_name" --resource-group "$resource_group" --query principalId --output tsv)"
		[ -n "$principal_id" ] || die "function app $app_name has no system-assigned identity (az functionapp identity assign)"
	else
		usage >&2
		die "say whose service principal: --identity-name, --app or --principal-id"
	fi
fi
[ -n "$principal_id" ] || die "could not find the identity's principal (object) id"

# The Graph endpoint of the current cloud (public, US Gov, China...), without a trailing slash.
graph="$(az cloud show --query endpoints.microsoftGraphResourceId --output tsv 2>/dev/null || true)"
graph="${graph:-https://graph.microsoft.com/}"
graph="${graph%/}"

graph_sp_id="$(az ad sp show --id "$GRAPH_APP_ID" --query id --output tsv)"
[ -n "$graph_sp_id" ] || die "Microsoft Graph's service principal was not found in this tenant"

for permission in "${permissions[@]}"; do
	role_id="$(az ad sp show --id "$GRAPH_APP_ID" \
		--query "appRoles[?value=='$permission' && contains(allowedMemberTypes, 'Application')].id | [0]" --output tsv)"
	[ -n "$role_id" ] || die "Microsoft Graph has no application permission named $permission"

	existing="$(az rest --method GET \
		--uri "$graph/v1.0/servicePrincipals/$principal_id/appRoleAssignments" \
		--query "length(value[?appRoleId=='$role_id' && resourceId=='$graph_sp_id'])" --output tsv)"
	if [ "${existing:-0}" != "0" ]; then
		say "$permission is already granted to service principal $principal_id"
		continue
	fi
	body="{\"principalId\":\"$principal_id\",\"resourceId\":\"$graph_sp_id\",\"appRoleId\":\"$role_id\"}"
	if $dry_run; then
		say "dry run: would POST $graph/v1.0/servicePrincipals/$principal_id/appRoleAssignments $body"
		continue
	fi
	az rest --method POST \
		--uri "$graph/v1.0/servicePrincipals/$principal_id/appRoleAssignments" \
		--headers "Content-Type=application/json" --body "$body" --output none
	say "granted Microsoft Graph $permission (application) to service principal $principal_id"
done

cat <<'EOF'
An app role assignment is admin consent: nothing more to approve. A managed identity's tokens are cached by
the platform, so a running app may keep getting tokens without the new role for a while (up to hours);
the renew timer retries every run, and a 403 in its log until then is expected.
EOF
