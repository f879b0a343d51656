#!/usr/bin/env bash
# Quick tests of scripts/start.sh (make test-scripts). They need no network, no Core Tools and no free
# ports: each case runs start.sh with a PATH that has no `func` and checks that it fails at once, explains
# how to install Core Tools, points to `make demo`, and starts nothing (no Azurite, no build).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
START="$ROOT/scripts/start.sh"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

failures=0
fail() {
	printf 'FAIL: %s\n' "$*" >&2
	failures=$((failures + 1))
}
pass() { printf 'ok: %s\n' "$*"; }
# check MESSAGE-IF-TRUE MESSAGE-IF-FALSE COMMAND...: passes when COMMAND succeeds.
check() {
	local yes="$1" no="$2"
	shift 2
	if "$@"; then pass "$yes"; else fail "$no"; fi
}

# PATH without any directory that holds a `func`.
path_without_func() {
	local out="" dir
	local IFS=:
	for dir in $PATH; do
		[ -n "$dir" ] || continue
		[ -e "$dir/func" ] && continue
		out="${out:+$out:}$dir"
	done
	printf '%s' "$out"
}
NOFUNC_PATH="$(path_without_func)"

# run_case NAME [VAR=value...]: runs start.sh without func; sets rc and out.
run_case() {
	local name="$1"
	shift
	local loc="$tmp/$name-azurite"
	local start=$SECONDS
	set +e
	out="$(cd "$tmp" && env PATH="$NOFUNC_PATH" AZURITE_LOCATION="$loc" "$@" timeout 20 bash "$START" 2>&1)"
	rc=$?
	set -e
	elapsed=$((SECONDS - start))

	check "$name: exits non-zero ($rc)" "$name: exit code 0" [ "$rc" -ne 0 ]
	[ "$rc" -ne 124 ] || fail "$name: start.sh hung (timeout)"
	check "$name: fails fast (${elapsed}s)" "$name: took ${elapsed}s" [ "$elapsed" -le 5 ]
	local want
	for want in "npm i -g azure-functions-core-tools@4 --unsafe-perm true" "brew install azure-functions-core-tools@4" \
		"winget install Microsoft.Azure.FunctionsCoreTools" "cannot be installed offline" "make demo" \
		"GRAPH_NOTIFICATION_URL" "devtunnel host -p 7071 --allow-anonymous" "Nothing was started"; do
		case "$out" in
		*"$want"*) pass "$name: says '$want'" ;;
		*) fail "$name: output lacks '$want'" ;;
		esac
	done
	case "$out" in
	*"building ./handler"* | *"starting Azurite"* | *"npm ci"*) fail "$name: did work before checking for func" ;;
	*) pass "$name: builds and starts nothing" ;;
	esac
	check "$name: no Azurite workspace created" "$name: $loc was created" [ ! -e "$loc" ]
	# No Azurite (or anything else) left running with this case's workspace in its arguments.
	if pgrep -f -- "$loc" >/dev/null 2>&1; then
		fail "$name: a process with $loc in its command line is still running"
	else
		pass "$name: no Azurite left running"
	fi
}

run_case no-func-on-path
run_case func-override FUNC=func-not-installed-here

if [ "$failures" -ne 0 ]; then
	printf '%d check(s) failed\nlast output:\n%s\n' "$failures" "$out" >&2
	exit 1
fi
echo "start_test.sh: all checks passed"
