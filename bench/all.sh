#!/usr/bin/env bash
# Runs every benchmark of the project side by side with its anchor and
# prints one table of ratios (berth / the tool it replaces; below 1 means
# berth is faster). Each benchmark's full output is kept in $OUT.
#
#   bench/all.sh            # as root; a few minutes on an idle 2-core machine
#   QUICK=1 bench/all.sh    # fewer rounds, for a smoke run
set -uo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "bench/all.sh: run as root" >&2; exit 1; }
OUT=${OUT:-$(mktemp -d /tmp/berth-bench-XXXXXX)}
mkdir -p "$OUT"
# rounds per benchmark: normal, or QUICK=1 for a smoke run
if [[ -n "${QUICK:-}" ]]; then rt_n=10 img_n=3 unp_n=3 net_n=5; else rt_n=40 img_n=7 unp_n=5 net_n=20; fi

rows=()
row() { rows+=("$(printf '%-34s %-22s %-10s %s' "$1" "$2" "$3" "$4")"); }
run() { # name, log file, command...
	local name=$1 log=$2; shift 2
	echo "== $name" >&2
	if ! "$@" >"$OUT/$log" 2>&1; then
		echo "   FAILED (see $OUT/$log)" >&2
	fi
}

bash scripts/build.sh bin/berth || exit 1

run runtime runtime.txt bash bench/runtime/run.sh -n "$rt_n" --berth bin/berth
mapfile -t rt < <(grep -oE 'ratio berth/runc \(medians\): [0-9.]+x' "$OUT/runtime.txt" | grep -oE '[0-9.]+x$')
row "run /bin/true (create..delete)" "runc $(runc --version | head -1 | awk '{print $3}')" "${rt[0]:-n/a}" "target <= 0.5x"
row "exec /bin/true" "runc" "${rt[1]:-n/a}" "target <= 0.5x"
run runtime-seccomp runtime-seccomp.txt bash bench/runtime/run.sh -n "$rt_n" --berth bin/berth --seccomp --only run
sr=$(grep -oE 'ratio berth/runc \(medians\): [0-9.]+x' "$OUT/runtime-seccomp.txt" | grep -oE '[0-9.]+x')
row "run /bin/true, docker seccomp" "runc (libseccomp)" "${sr:-n/a}" "start-up cost of seccomp"

ROUNDS=$img_n run image image.txt bash bench/image/run.sh
ir=$(grep -oE 'ratio berth/skopeo: [0-9.]+' "$OUT/image.txt" | awk '{print $3}')
row "copy registry -> oci layout" "skopeo copy" "${ir:-n/a}" "target <= 0.8x"

RUNS=$unp_n run unpack unpack.txt bash bench/unpack/bench.sh
while read -r img bu bt; do
	row "unpack ($img)" "umoci / tar -xzf" "$bu / $bt" "targets <= 0.30x / <= 0.90x"
done < <(sed -nE 's/^([^:]+): wall berth\/umoci = ([0-9.]+x) .*berth\/tar = ([0-9.]+x).*/\1 \2 \3/p' "$OUT/unpack.txt")
while read -r img bu bt; do
	row "unpack ($img), BERTH_NO_IGZIP=1" "umoci / tar -xzf" "$bu / $bt" "Go inflate, no igzip"
done < <(sed -nE 's/^([^:]+): wall without igzip .*berth\/umoci = ([0-9.]+x), berth\/tar = ([0-9.]+x).*/\1 \2 \3/p' "$OUT/unpack.txt")
ov=$(sed -nE "s/^overlay bundle from cached image .* median ([0-9]+) ms.*/\1 ms/p" "$OUT/unpack.txt" | head -1)
row "overlay bundle from cache" "(absolute)" "${ov:-n/a}" "target <= 50 ms"

run network network.txt bash bench/network/run.sh -n "$net_n"
nr=$(grep -oiE 'ratio berth/hand[^0-9]*[0-9.]+' "$OUT/network.txt" | head -1 | grep -oE '[0-9.]+$')
cm=$(grep -oE 'in-process [0-9.]+ ms' "$OUT/network.txt" | head -1 | grep -oE '[0-9.]+ ms')
fl=$(grep -oE 'kernel floor: .* = [0-9.]+ of' "$OUT/network.txt" | grep -oE '[0-9.]+ of$' | grep -oE '^[0-9.]+')
row "network create+connect+teardown" "ip/brctl/iptables" "${nr:-n/a}" "target <= 0.05x"
row "  kernel floor: delete one bridge" "ip/brctl/iptables" "${fl:-n/a}" "in-process netlink, same run"
row "network connect (library)" "(absolute)" "${cm:-n/a}" "target <= 5 ms"

echo
printf '%-34s %-22s %-10s %s\n' "benchmark" "anchor" "ratio" "note"
printf '%s\n' "${rows[@]}"
echo
echo "full outputs: $OUT"
