#!/bin/bash
# Unpack benchmark: berth unpack vs umoci unpack vs tar -xzf of the same
# layers, in one run, on the same images; prints medians and their ratios,
# then the latency of an overlay bundle made from an already cached image.
#
# Images are built offline from host directories (no debootstrap without a
# network): a large single-layer image and a multi-layer image of the same
# files, one directory per layer, gzip-compressed like registry images.
#
#   sudo bench/unpack/bench.sh                 # defaults
#   RUNS=7 DIRS="/usr/bin /usr/lib/python3.11" MULTI_DIRS="/usr/include /etc" sudo bench/unpack/bench.sh
#   OUT_ON_DISK=1 sudo bench/unpack/bench.sh   # extract to disk, not tmpfs
#
# By default extraction goes to a tmpfs so the numbers measure the
# unpackers, not the shared disk's writeback; OUT_ON_DISK=1 extracts under
# $WORK instead. berth inflates gzip with igzip when installed (the "berth"
# rows) and is also timed with BERTH_NO_IGZIP=1 ("berth-go": klauspost's
# inflate in-process). Targets (issue 6): berth <= 0.3x umoci, <= 0.9x tar,
# overlay bundle from cache <= 50 ms.
set -euo pipefail

RUNS=${RUNS:-5}
# The single-layer image: these directories in one layer (~400 MB).
DIRS=${DIRS:-"/usr/bin /usr/sbin /usr/lib/python3.11 /usr/share/zoneinfo /usr/share/perl5 /etc"}
# The multi-layer image: one layer per directory, of similar sizes, as in
# real images (base, libraries, runtime, app, config).
MULTI_DIRS=${MULTI_DIRS:-"/usr/include /usr/share/doc /usr/lib/python3.11 /usr/sbin /usr/share/perl5 /etc"}
WORK=${WORK:-/var/tmp/berth-bench-unpack}
REPO=$(cd "$(dirname "$0")/../.." && pwd)

[ "$(id -u)" = 0 ] || { echo "run as root (umoci and tar restore owners; overlay mounts)" >&2; exit 1; }
command -v igzip >/dev/null || echo "note: igzip (Debian package isal) is not installed: berth inflates gzip in Go" >&2
for t in umoci tar jq go; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }; done

rm -rf "$WORK"; mkdir -p "$WORK"
OUT="$WORK/out"; mkdir -p "$OUT"
if [ -z "${OUT_ON_DISK:-}" ]; then
	mount -t tmpfs -o size=12g,mode=0700 berth-bench "$OUT"
fi
cleanup() {
	for b in "$OUT"/ovl-*; do [ -d "$b" ] && "$WORK/berth" bundle rm "$b" >/dev/null 2>&1 || true; done
	mountpoint -q "$OUT" && umount "$OUT"
	rm -rf "$WORK"
}
trap cleanup EXIT

echo "building berth and mkimage..." >&2
(cd "$REPO" && bash scripts/build.sh "$WORK/berth" && go build -o "$WORK/mkimage" ./bench/unpack/mkimage)
BERTH="$WORK/berth"
LAYOUT="$WORK/layout"

single="" multi=()
for d in $DIRS; do
	[ -d "$d" ] && single="${single:+$single+}$d@${d#/}"
done
for d in $MULTI_DIRS; do
	[ -d "$d" ] && multi+=(-layer "$d@${d#/}:gzip")
done
echo "building images: single = $DIRS; multi = $MULTI_DIRS" >&2
"$WORK/mkimage" -o "$LAYOUT" -ref single -layer "$single:gzip"
"$WORK/mkimage" -o "$LAYOUT" -ref multi "${multi[@]}"

layers_of() { # blob paths of a tag's layers, bottom first
	local m
	m=$(jq -r --arg r "$1" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]==$r) | .digest' "$LAYOUT/index.json" | cut -d: -f2)
	jq -r '.layers[].digest' "$LAYOUT/blobs/sha256/$m" | cut -d: -f2 | sed "s|^|$LAYOUT/blobs/sha256/|"
}

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.0f", m}'; }

# run_once CMD...: one timed run into a fresh $OUT/x; prints "wall_ms cpu_ms"
# (cpu = user + sys of the command and its children: on a shared machine the
# wall time also measures the neighbours, the cpu time does not).
run_once() {
	rm -rf "$OUT/x"
	sync
	local t0 t1
	t0=$(now)
	/usr/bin/time -o "$WORK/time" -f "%U %S" "$@" >/dev/null 2>&1 || { echo "FAILED: $*" >&2; exit 1; }
	t1=$(now)
	echo "$(((t1 - t0) / 1000000)) $(awk '{printf "%.0f", ($1+$2)*1000}' "$WORK/time")"
}

tar_layers() { # tar -xzf every layer in order into $OUT/x/rootfs (whiteouts are not applied: tar does not know them)
	mkdir -p "$OUT/x/rootfs"
	for b in $(layers_of "$1"); do tar -xzf "$b" -C "$OUT/x/rootfs"; done
}

for img in single multi; do
	size=$(du -sm --apparent-size $(layers_of $img) | awk '{s+=$1} END {print s}')
	n=$(layers_of $img | wc -l)
	declare -A ms=() cpu=()
	for tool in berth berth-go umoci tar; do
		ts=() cs=()
		for i in $(seq 0 "$RUNS"); do # run 0 warms the page cache and is dropped
			case $tool in
			berth) r=$(run_once "$BERTH" unpack --image "$LAYOUT:$img" "$OUT/x") ;;
			berth-go) r=$(BERTH_NO_IGZIP=1 run_once "$BERTH" unpack --image "$LAYOUT:$img" "$OUT/x") ;;
			umoci) r=$(run_once umoci unpack --image "$LAYOUT:$img" "$OUT/x") ;;
			tar) r=$(run_once bash -c "$(declare -f layers_of tar_layers); LAYOUT='$LAYOUT' OUT='$OUT' tar_layers $img") ;;
			esac
			if [ "$i" -gt 0 ]; then
				ts+=("${r% *}")
				cs+=("${r#* }")
			fi
		done
		ms[$tool]=$(printf '%s\n' "${ts[@]}" | median)
		cpu[$tool]=$(printf '%s\n' "${cs[@]}" | median)
		echo "$img ($n layers, ${size} MiB compressed) $tool: wall ${ts[*]} ms, median ${ms[$tool]} ms; cpu median ${cpu[$tool]} ms"
	done
	awk -v b="${ms[berth]}" -v u="${ms[umoci]}" -v t="${ms[tar]}" -v img="$img" \
		'BEGIN {printf "%s: wall berth/umoci = %.2fx (target <= 0.30), berth/tar = %.2fx (target <= 0.90)\n", img, b/u, b/t}'
	awk -v b="${ms[berth-go]}" -v u="${ms[umoci]}" -v t="${ms[tar]}" -v img="$img" \
		'BEGIN {printf "%s: wall without igzip (BERTH_NO_IGZIP=1): berth/umoci = %.2fx, berth/tar = %.2fx\n", img, b/u, b/t}'
	awk -v b="${cpu[berth]}" -v u="${cpu[umoci]}" -v t="${cpu[tar]}" -v img="$img" \
		'BEGIN {printf "%s: cpu  berth/umoci = %.2fx, berth/tar = %.2fx\n", img, b/u, b/t}'
	uptime
	rm -rf "$OUT/x"
done

# Overlay bundles from a cached image: the first call fills the cache.
export BERTH_LAYERS="$WORK/layers"
for img in single multi; do
	"$BERTH" unpack --overlay --image "$LAYOUT:$img" "$OUT/ovl-warm-$img" >/dev/null
	ts=()
	for i in $(seq 1 "$RUNS"); do
		t0=$(now)
		"$BERTH" unpack --overlay --image "$LAYOUT:$img" "$OUT/ovl-$img-$i"
		t1=$(now)
		ts+=($(((t1 - t0) / 1000000)))
	done
	echo "overlay bundle from cached image '$img': runs ${ts[*]} ms, median $(printf '%s\n' "${ts[@]}" | median) ms (target <= 50)"
	t0=$(now)
	for i in $(seq 1 "$RUNS"); do "$BERTH" bundle rm "$OUT/ovl-$img-$i"; done
	t1=$(now)
	echo "bundle rm (unmount + delete) per bundle: $(((t1 - t0) / 1000000 / RUNS)) ms"
done
