#!/usr/bin/env bash
# Grants Microsoft Graph *application* permissions to a managed identity's service principal. The Azure
# portal cannot do this for a managed identity (it has no "API permissions" page), so each is an app role
# assignment made through Graph: POST /servicePrincipals/{id}/appRoleAssignments.
#
# Who may run it: someone who can grant admin consent for application permissions in the tenant, e.g. a
# Privileged Role Administrator, Cloud Application Administrator or Global Administrator (az login first).
# Idempotent: an existing assignment is reported and left as it is.
#
# Usage:
#   deploy/grant-graph-permission.sh --identity-name NAME --resource-group RG     # user-assigned identity
#   deploy/grant-graph-permission.sh --app NAME --resource-group RG               # a function app's system-assigned identity
#   deploy/grant-graph-permission.sh --principal-id OBJECT_ID                     # any service principal, by object id
# Which permissions: from what the app follows (default: User.Read.All), or named with --permission NAME
# (repeatable):
#   --resources LIST          the app's GRAPH_RESOURCE: users, users/{id} -> User.Read.All; groups,
#                             groups/{id} -> Group.Read.All; drives/{id} -> Files.Read.All;
#                             teams/getAllMessages, teams/{id}/channels/{id}/messages -> ChannelMessage.Read.All;
#                             chats/getAllMessages, chats/{id}/messages -> Chat.Read.All
#   --mailboxes LIST          the app's GRAPH_MAILBOXES (user ids, group:{id}); group:{id} adds GroupMember.Read.All
#   --mailbox-resources LIST  the app's GRAPH_MAILBOX_RESOURCES (default messages): messages -> Mail.Read,
#                             events -> Calendars.Read
#   --print                   print the permissions, one a line, and stop (no Azure call)
#   --dry-run                 look everything up, grant nothing
set -euo pipefail

GRAPH_APP_ID="00000003-0000-0000-c000-000000000000" # Microsoft Graph's well-known application id

principal_id=""
identity_name=""
app_name=""
resource_group=""
dry_run=false
print_only=false
permissions=()
mailboxes=""
mailbox_resources=""

usage() { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; }
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
			# As the app reads them: spaces and outer slashes dropped, names in any case.
			r="${r// /}"
			r="${r#/}"
			r="${r%/}"
			[ -n "$r" ] || continue
			case "${r,,}" in
			users | users/?*) permissions+=(User.Read.All) ;;
			groups | groups/?*) permissions+=(Group.Read.All) ;;
			drives/?*) [[ "$r" != */*/* ]] || die "--resources: $r: a drive is drives/{drive-id}"; permissions+=(Files.Read.All) ;;
			teams/getallmessages | teams/?*/channels/?*/messages) permissions+=(ChannelMessage.Read.All) ;;
			chats/getallmessages | chats/?*/messages) permissions+=(Chat.Read.All) ;;
			*) die "--resources: $r is none of users, groups, drives/{id}, teams/getAllMessages, chats/getAllMessages, teams/{id}/channels/{id}/messages, chats/{id}/messages" ;;
			esac
		done
		shift 2
		;;
	--mailboxes) mailboxes="${2?--mailboxes needs a value}"; shift 2 ;;
	--mailbox-resources) mailbox_resources="${2?--mailbox-resources needs a value}"; shift 2 ;;
	--print) print_only=true; shift ;;
	--dry-run) dry_run=true; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
done

# Mailboxes: one permission per resource read in every mailbox, and the group's members for group:{id}.
if [ -n "${mailboxes// /}" ]; then
	IFS=',' read -r -a kinds <<<"${mailbox_resources:-messages}"
	for k in "${kinds[@]}"; do
		k="${k// /}"
		case "${k,,}" in
		messages) permissions+=(Mail.Read) ;;
		events) permissions+=(Calendars.Read) ;;
		"") ;;
		*) die "--mailbox-resources: $k is neither messages nor events" ;;
		esac
	done
	IFS=',' read -r -a boxes <<<"$mailboxes"
	for b in "${boxes[@]}"; do
		b="${b// /}"
		case "${b,,}" in
		group:?*) permissions+=(GroupMember.Read.All) ;;
		group:) die "--mailboxes: group: needs a group id" ;;
		esac
	done
elif [ -n "$mailbox_resources" ]; then
	die "--mailbox-resources needs --mailboxes (which mailboxes to read)"
fi
[ "${#permissions[@]}" -gt 0 ] || permissions=(User.Read.All)
# Each once, in the order first asked for.
unique=()
for p in "${permissions[@]}"; do
	[[ " ${unique[*]-} " == *" $p "* ]] || unique+=("$p")
done
permissions=("${unique[@]}")
if $print_only; then
	printf '%s\n' "${permissions[@]}"
	exit 0
fi

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
if [[ " ${permissions[*]} " == *" Mail.Read "* ]] || [[ " ${permissions[*]} " == *" Calendars.Read "* ]]; then
	cat <<'EOF'
Mail.Read and Calendars.Read reach every mailbox of the tenant; an Exchange Online application access
policy (or RBAC for Applications) can narrow them to the mailboxes in GRAPH_MAILBOXES.
EOF
fi
