#!/usr/bin/env bash
# Tests of deploy/grant-graph-permission.sh against the fake Azure CLI in deploy/testdata/fake-az.sh (make
# test-scripts). The fake knows Graph's application permissions by name (any other has no app role, as in
# Graph), answers whether one is already granted (FAKE_GRANTED), and logs each grant's request body.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GRANT="$ROOT/deploy/grant-graph-permission.sh"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

failures=0
fail() {
	printf 'FAIL: %s\n' "$*" >&2
	failures=$((failures + 1))
}
pass() { printf 'ok: %s\n' "$*"; }
check() { # check NAME COMMAND...: passes when COMMAND succeeds
	local name="$1"
	shift
	if "$@"; then pass "$name"; else fail "$name"; fi
}

mkdir -p "$tmp/bin"
cp "$ROOT/deploy/testdata/fake-az.sh" "$tmp/bin/az"
chmod +x "$tmp/bin/az"

# grant NAME [VAR=value...] -- ARGS...: runs the script for principal sp-1; sets rc, out and log.
grant() {
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
		bash "$GRANT" --principal-id sp-1 "$@" 2>&1)"
	rc=$?
	set -e
}
ok_run() { if [ "$rc" -eq 0 ]; then pass "$1: exits 0"; else fail "$1: exit $rc: $out"; fi; }
# granted NAME PERMISSION: the log holds exactly one grant of it, to sp-1, with Graph as the resource.
granted() {
	local n
	n="$(grep -cF "{\"principalId\":\"sp-1\",\"resourceId\":\"msgraph-sp-object-id\",\"appRoleId\":\"role-$2\"}" "$log" || true)"
	if [ "$n" = 1 ]; then pass "$1: $2 granted once"; else fail "$1: $2 granted $n times"; fi
}
not_granted() { if grep -qF "\"appRoleId\":\"role-$2\"" "$log"; then fail "$1: $2 granted"; else pass "$1: $2 not granted"; fi; }
grants() { grep -c '"appRoleId"' "$log" || true; }
says() { [[ "$out" == *"$1"* ]]; }

grant default --
ok_run default
granted default User.Read.All
check "default: one grant" test "$(grants)" = 1

grant directory -- --resources users,groups/7f1c2d3e-0000-4000-8000-000000000001
ok_run directory
granted directory User.Read.All
granted directory Group.Read.All

# Every family of this round, from the app's settings as given.
grant families -- \
	--resources 'drives/b!-RIj2DuyvEyV1T4NlOaMHk8XkS_I8MdFlUCq1BlcjgmhRfAj3,teams/getAllMessages,chats/getAllMessages,teams/0b5d1b2a-0000-4000-8000-000000000002/channels/19:abc@thread.tacv2/messages,chats/19:xyz@thread.v2/messages' \
	--mailboxes 'user-1, group:0b5d1b2a-0000-4000-8000-000000000003' --mailbox-resources messages,events
ok_run families
for p in Files.Read.All ChannelMessage.Read.All Chat.Read.All Mail.Read Calendars.Read GroupMember.Read.All; do
	granted families "$p"
done
not_granted families User.Read.All
check "families: six grants" test "$(grants)" = 6
check "families: mailbox scope advice" says "application access"

# As the app reads its settings: any case, spaces, outer slashes.
grant cases -- --resources ' Users , /Drives/b!x/,TEAMS/getallmessages' --mailboxes 'u1, GROUP:g1' --mailbox-resources 'Events'
ok_run cases
for p in User.Read.All Files.Read.All ChannelMessage.Read.All Calendars.Read GroupMember.Read.All; do
	granted cases "$p"
done
not_granted cases Mail.Read

# Mailboxes default to messages; user ids alone need no group permission.
grant mail -- --mailboxes user-1,user-2
ok_run mail
granted mail Mail.Read
not_granted mail Calendars.Read
not_granted mail GroupMember.Read.All
not_granted mail User.Read.All

# One channel only: the channel permission alone.
grant channel -- --resources teams/t1/channels/19:c@thread.tacv2/messages
ok_run channel
granted channel ChannelMessage.Read.All
not_granted channel Chat.Read.All

# Already granted: left alone, and said so.
grant existing FAKE_GRANTED=Mail.Read -- --mailboxes user-1 --mailbox-resources messages,events
ok_run existing
not_granted existing Mail.Read
granted existing Calendars.Read
check "existing: reported" says "Mail.Read is already granted"

# Dry run: looked up, nothing granted.
grant dry -- --resources 'drives/b!x' --dry-run
ok_run dry
check "dry: nothing granted" test "$(grants)" = 0
check "dry: says what it would grant" says "role-Files.Read.All"

# --print: the list, no Azure call.
grant print -- --resources users,chats/getAllMessages --mailboxes group:g1 --print
check "print: exits 0" test "$rc" = 0
check "print: the permissions in order" test "$out" = "$(printf 'User.Read.All\nChat.Read.All\nMail.Read\nGroupMember.Read.All')"
check "print: no az call" test ! -s "$log"

# Refused before any Azure call: unknown resources, a bare drives, unknown mailbox resources.
for bad in "--resources contacts" "--resources drives" "--resources teams/t1/messages" \
	"--mailboxes u1 --mailbox-resources contacts" "--mailbox-resources events" "--mailboxes group:"; do
	# shellcheck disable=SC2086 # the case's words are separate arguments
	grant bad -- $bad
	if [ "$rc" -ne 0 ] && [ ! -s "$log" ] && says "error:"; then pass "refused: $bad"; else fail "not refused: $bad: rc $rc: $out"; fi
done

# A permission Graph does not have stops the run.
grant unknown -- --permission Mail.ReadEverything
if [ "$rc" -ne 0 ] && says "no application permission named Mail.ReadEverything"; then pass "unknown permission refused"; else
	fail "unknown permission: rc $rc: $out"
fi

if [ "$failures" -gt 0 ]; then
	printf '%d failure(s)\n' "$failures" >&2
	exit 1
fi
echo "grant-graph-permission_test: all passed"
