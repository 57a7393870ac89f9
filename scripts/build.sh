#!/usr/bin/env bash
# The release build of berth: scripts/build.sh [OUT] (default bin/berth).
#
# Statically linked (glibc's libc.a, package libc6-dev), with Go's own DNS
# resolver and user lookups (tags netgo, osusergo: no NSS modules to load at
# run time). berth starts a process of itself for every container and exec,
# and a dynamically linked start costs ~1 ms more here (ld.so mapping and
# relocating libc). `go build ./cmd/berth` and `go run` still work, dynamic.
# The tests, benchmarks and the conformance run use this build.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-bin/berth}"
mkdir -p "$(dirname "$out")"
exec go build -tags netgo,osusergo -ldflags '-linkmode external -extldflags -static' -o "$out" ./cmd/berth
