#!/usr/bin/env bash
# Kubernetes CRI lifecycle benchmark: `critest -benchmark` (sigs.k8s.io/cri-tools
# v1.37.0) through containerd 1.6's CRI plugin, with the runc v2 shim running
# berth for one runtime handler and Debian's runc for the other, side by side
# in one run.
#
#   bench/cri/run.sh [-n SAMPLES] [--berth PATH]
#
# The pod lifecycle (RunPodSandbox, status, stop, remove) and the container
# lifecycle (create, start, status, stop, remove) benchmarks run in four
# rounds, berth, runc, runc, berth, SAMPLES each (default 20), so drift hits
# both alike. Prints the median of each CRI operation per handler and the
# ratio berth/runc. Most of each operation is containerd's and the shim's;
# the runtime's share is create, start, kill and delete.
#
# The world is test/clients' CRI suite (TestCRIBenchmark): a network
# namespace of its own with containerd, the pods' bridge and a local
# registry; nothing on the host's network changes. Needs root and the
# packages of scripts/apt-packages.txt; builds critest from the Go module
# proxy.
set -euo pipefail
cd "$(dirname "$0")/../.."

n=20
berth=""
while (($#)); do
	case "$1" in
	-n) n="${2:?-n needs a number}"; shift ;;
	--berth) berth="${2:?--berth needs a path}"; shift ;;
	-h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done
berth_tmp=""
out="$(mktemp)"
trap 'rm -f "$out"; [[ -z "$berth_tmp" ]] || rm -rf "$berth_tmp"' EXIT
if [[ -z "$berth" ]]; then
	berth_tmp="$(mktemp -d)"
	berth="$berth_tmp/berth"
	bash scripts/build.sh "$berth" >/dev/null
fi
BERTH_BIN="$berth" BERTH_CRITEST_BENCH=1 BERTH_CRITEST_BENCH_N="$n" BERTH_CRITEST_BENCH_OUT="$out" \
	go test -count=1 -timeout 60m -run '^TestCRIBenchmark$' ./test/clients >/dev/null
cat "$out"
