#!/usr/bin/env bash
# The test command (README): installs what the tests need, then runs the
# linters and every test: unit and integration tests (root-only ones run
# when this runs as root; CI=true turns their skips into failures),
# critest's CRI conformance set, short fuzz runs, and the runtime-tools
# validation suite against berth.
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
	# Packages with services (docker.io, containerd) must not start them:
	# the client suites start private daemons, and a system dockerd would
	# change the host's firewall and links. policy-rc.d says no to every
	# start while this script runs, where the machine has no policy of its own.
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

go mod download
unformatted="$(gofmt -l cmd internal test bench third_party 2>/dev/null || true)"
if [[ -n "$unformatted" ]]; then
	echo "gofmt needed:"; echo "$unformatted"; exit 1
fi
go vet ./...
# golangci-lint, pinned (scripts/lint.sh builds it from the module proxy on
# first use); the import rules are a test (internal/depcheck) and run below.
bash scripts/lint.sh
(cd third_party/md2man && go vet ./... && go test -count=1 ./...)
go test -count=1 -timeout 45m ./... "$@"
if [[ $(id -u) == 0 ]]; then
	# Kubernetes' CRI conformance (critest through containerd's CRI plugin)
	# with runc and with berth in one run, a step of its own: about ten
	# minutes, with time-sensitive specs that do better alone
	# (test/clients/README.md).
	BERTH_CRITEST=1 go test -count=1 -timeout 40m -run '^TestCRI$' ./test/clients "$@"
fi

# Short fuzz runs over the checked-in corpora. Budgets are execution counts
# (about 10 s each here), not durations: with a -fuzztime duration Go 1.26's
# fuzz coordinator can fail the run with "context deadline exceeded" at the
# deadline, having found nothing (go.dev/issue/75804, fixed in Go 1.27).
go test -run '^$' -fuzz '^FuzzParse$' -fuzztime 100000x ./internal/spec
go test -run '^$' -fuzz '^FuzzCompile$' -fuzztime 100000x ./internal/linux/seccomp

if [[ $(id -u) == 0 ]]; then
	bash scripts/conformance.sh
elif [[ "${CI:-}" == true ]]; then
	echo "runtime-tools validation needs root" >&2; exit 1
else
	echo "skipping runtime-tools validation (needs root)"
fi
