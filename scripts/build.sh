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

# The version (berth --version, features): the newest release tag as git
# describe gives it (1.2.0, or 1.2.0-3-gabcdef012345 three commits on),
# 0.0.0-N-gREV before the first tag, -dirty for uncommitted changes; the
# commit is the full revision. Outside a git checkout the binary falls back
# to its Go build info (internal/cli/version.go).
version="" commit=""
if git rev-parse --git-dir >/dev/null 2>&1; then
	commit="$(git rev-parse HEAD)"
	dirty=""
	if [[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
		dirty="-dirty"
		commit+="-dirty"
	fi
	if tag="$(git describe --tags --match 'v[0-9]*' --abbrev=12 2>/dev/null)"; then
		version="${tag#v}$dirty"
	else
		version="0.0.0-$(git rev-list --count HEAD)-g$(git rev-parse --short=12 HEAD)$dirty"
	fi
fi
pkg=berth/internal/cli
exec go build -tags netgo,osusergo \
	-ldflags "-linkmode external -extldflags -static -X $pkg.Version=$version -X $pkg.Commit=$commit" \
	-o "$out" ./cmd/berth
