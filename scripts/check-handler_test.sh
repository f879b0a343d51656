#!/usr/bin/env bash
# Tests of scripts/check-handler.sh and of `make publish` (make test-scripts). They build tiny Go programs
# (seconds with a warm build cache), never the handler, and run no Core Tools: `make publish` is checked
# with `make -n` for the order of its steps, and for refusing to start without APP.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHECK="$ROOT/scripts/check-handler.sh"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

failures=0
fail() {
	printf 'FAIL: %s\n' "$*" >&2
	failures=$((failures + 1))
}
pass() { printf 'ok: %s\n' "$*"; }
accepted() {
	if out="$("$CHECK" "$2" 2>&1)"; then pass "$1: accepted"; else fail "$1: refused: $out"; fi
}
# refused NAME FILE REASON: the check must fail and say REASON.
refused() {
	if out="$("$CHECK" "$2" 2>&1)"; then
		fail "$1: accepted"
	elif [[ "$out" != *"$3"* ]] || [[ "$out" != *"make build-linux"* ]]; then
		fail "$1: message lacks \"$3\" or the fix: $out"
	else
		pass "$1: refused ($3)"
	fi
}

cd "$tmp"
printf 'module example.com/tiny\n\ngo 1.21\n' >go.mod
printf 'package main\n\nfunc main() { println("tiny") }\n' >main.go

# What `make build-linux` makes: accepted.
GOOS=linux GOARCH=amd64 CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o static .
accepted "linux/amd64 CGO_ENABLED=0, stripped" static

# Built with cgo on: refused by its build settings even when nothing needed the dynamic loader.
if GOOS=linux GOARCH=amd64 CGO_ENABLED=1 go build -o cgo-on . 2>/dev/null; then
	refused "CGO_ENABLED=1" cgo-on "lack CGO_ENABLED=0"
else
	printf 'skip: CGO_ENABLED=1 (no C toolchain here)\n'
fi

# A dynamically linked ELF x86-64 executable: refused by its program interpreter.
if [ "$(od -An -tx1 -N4 /bin/sh | tr -d ' \n')" = 7f454c46 ] && [ "$(od -An -tu2 -j18 -N2 /bin/sh | tr -d ' ')" = 62 ]; then
	cp /bin/sh dynamic
	refused "dynamic executable" dynamic "dynamically linked"
else
	printf 'skip: dynamic executable (this machine is not x86-64 Linux)\n'
fi

# The static build with its ELF machine changed to AArch64 (183): refused by the header.
cp static arm
printf '\267' | dd of=arm bs=1 seek=18 conv=notrunc status=none
refused "ELF for another machine" arm "not x86-64"

# A Windows build starts with MZ; a script with #!: neither is ELF.
printf 'MZ\220\0' >handler.exe
chmod +x handler.exe
refused "Windows binary" handler.exe "not an ELF file"
printf '#!/bin/sh\necho hi\n' >script
chmod +x script
refused "script" script "not an ELF file"

cp static noexec
chmod -x noexec
refused "not executable" noexec "not executable"
refused "missing" "$tmp/nothing-here" "no such file"

# make publish: builds for Linux, checks, and only then publishes; refuses to start without APP.
cd "$ROOT"
plan="$(make -n publish APP=myapp 2>&1)"
build_at="$(grep -n 'GOOS=linux GOARCH=amd64 CGO_ENABLED=0 .* build' <<<"$plan" | head -n1 | cut -d: -f1)"
check_at="$(grep -n 'scripts/check-handler.sh handler' <<<"$plan" | head -n1 | cut -d: -f1)"
publish_at="$(grep -n 'func azure functionapp publish myapp' <<<"$plan" | head -n1 | cut -d: -f1)"
if [ -n "$build_at" ] && [ -n "$check_at" ] && [ -n "$publish_at" ] && [ "$build_at" -lt "$check_at" ] && [ "$check_at" -lt "$publish_at" ]; then
	pass "make publish: build-linux, then the check, then func publish"
else
	fail "make publish: steps out of order or missing: $plan"
fi
if out="$(make publish APP= 2>&1)"; then fail "make publish without APP: succeeded"; else
	if [[ "$out" == *"make publish APP="* ]] && [[ "$out" != *"go build"* ]]; then pass "make publish without APP: usage, nothing built"; else
		fail "make publish without APP: $out"
	fi
fi

if [ "$failures" -gt 0 ]; then
	printf '%d failure(s)\n' "$failures" >&2
	exit 1
fi
echo "check-handler_test: all passed"
