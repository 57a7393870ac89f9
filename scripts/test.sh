#!/usr/bin/env bash
# The test command (README): installs what the tests need, then runs every
# test. Root-only tests run when this runs as root; CI=true turns their skips
# into failures.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
while read -r pkg; do
	[[ -z "$pkg" || "$pkg" == \#* ]] && continue
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done < scripts/apt-packages.txt
if ((${#missing[@]})); then
	echo "installing: ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

go mod download
test -z "$(gofmt -l cmd internal test bench 2>/dev/null)" || { echo "gofmt needed:"; gofmt -l cmd internal test bench; exit 1; }
go vet ./...
go test -count=1 -timeout 40m ./... "$@"
