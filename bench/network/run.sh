#!/bin/bash
# Paired benchmark: the hand-typed bridge/veth/netns/iptables sequence vs
# berth, inside a throw-away network namespace (never the real host's).
# Usage: bench/network/run.sh [-n ROUNDS] [-v]     (as root)
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
ns="berthbench-$$"
cleanup() {
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
bash scripts/build.sh "$tmp/berth"
go build -o "$tmp/netbench" ./bench/network
ip netns add "$ns"
ip -n "$ns" link set lo up
# Only the network namespace changes: named netns the benchmark pins stay in
# the host mount namespace, where `ip netns` and berth both look for them.
nsenter --net="/run/netns/$ns" "$tmp/netbench" -berth "$tmp/berth" "$@"
