#!/usr/bin/env bash
# The linter: golangci-lint at the version pinned here, with .golangci.yml.
# Built from the Go module proxy on first use (go install, about ten
# minutes on two cores) into a cache outside the repository, and reused
# while the pin stays. Run by scripts/test.sh; by hand: bash scripts/lint.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

version=v2.15.0
dir="${BERTH_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/berth-tools}/golangci-lint-$version"
lint="$dir/golangci-lint"
if ! "$lint" version 2>/dev/null | grep -q "version ${version#v} "; then
	echo "building golangci-lint $version"
	mkdir -p "$dir"
	# Its own go.mod and go.sum decide its dependencies (go install
	# pkg@version ignores berth's module); GOFLAGS from the environment
	# (-mod=...) would not apply to it.
	GOBIN="$dir" GOFLAGS=-buildvcs=false go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$version"
fi
exec "$lint" run "$@" ./...
