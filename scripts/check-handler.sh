#!/usr/bin/env bash
# Refuses a handler binary that Azure's Linux x64 workers cannot run as it is. It must be:
#   - an executable ELF file, 64-bit, little-endian, for x86-64 (machine 62);
#   - statically linked: no program interpreter (a PT_INTERP header names the dynamic loader, which a
#     binary built with cgo needs and the Functions image need not have in a matching version);
#   - built by Go for linux/amd64 with CGO_ENABLED=0, as `go version -m` reads the build settings.
# `make build` builds for this machine with cgo; `make build-linux` builds the one Azure runs, and
# `make publish` and deploy/deploy.sh run this check before anything is uploaded.
#
# Usage: scripts/check-handler.sh [PATH]    (default: ./handler)
set -euo pipefail

f="${1:-handler}"
refuse() {
	printf 'check-handler: %s is not a static Linux x64 build: %s\n' "$f" "$*" >&2
	printf 'check-handler: build it with: make build-linux\n' >&2
	exit 1
}

[ -f "$f" ] || refuse "no such file"
[ -x "$f" ] || refuse "not executable (chmod +x $f)"

# u8 OFFSET / u16 OFFSET / u32 OFFSET / u64 OFFSET: little-endian unsigned integers read from the file.
u() { od -An -tu"$1" -j "$2" -N "$1" -v "$f" | tr -d ' \n'; }
[ "$(od -An -tx1 -N4 -v "$f" | tr -d ' \n')" = 7f454c46 ] || refuse "not an ELF file (a Windows or macOS build, or a script?)"
[ "$(u 1 4)" = 2 ] || refuse "not a 64-bit ELF file"
[ "$(u 1 5)" = 1 ] || refuse "not little-endian"
machine="$(u 2 18)"
[ "$machine" = 62 ] || refuse "built for ELF machine $machine, not x86-64 (62): GOARCH must be amd64"

# Program headers: any PT_INTERP (type 3) means the binary needs a dynamic loader.
phoff="$(u 8 32)"
phentsize="$(u 2 54)"
phnum="$(u 2 56)"
for ((i = 0; i < phnum; i++)); do
	[ "$(u 4 $((phoff + i * phentsize)))" != 3 ] || refuse "dynamically linked (it names a program interpreter, as a cgo build does)"
done

command -v go >/dev/null 2>&1 || refuse "cannot read its build settings: Go is not installed"
info="$(go version -m "$f" 2>/dev/null)" || refuse "no Go build information in it"
for want in GOOS=linux GOARCH=amd64 CGO_ENABLED=0; do
	grep -qxF "$(printf '\tbuild\t%s' "$want")" <<<"$info" || refuse "its build settings lack $want"
done
printf 'check-handler: %s is a static linux/amd64 Go build (CGO_ENABLED=0)\n' "$f"
