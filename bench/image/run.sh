#!/usr/bin/env bash
# Benchmark: `berth copy` against `skopeo copy` for the classic pull,
# docker://REGISTRY/IMAGE -> oci:LAYOUT:TAG, in the same run.
#
# Builds a multi-layer image offline (each layer a gzip'd tar of a host
# directory), pushes it as Docker schema2 (so both tools also convert the
# manifest to OCI) to Debian's docker-registry on 127.0.0.1, then copies it
# into a fresh layout with each tool, paired and alternating which goes
# first, ROUNDS times. Prints per-round times, the medians and
# berth/skopeo (lower is better; the target is <= 0.8).
#
#   bench/image/run.sh                 # ROUNDS=5, plain HTTP, anonymous
#   TLS=1 bench/image/run.sh           # HTTPS from a throwaway CA + htpasswd auth
#   ROUNDS=9 LAYER_DIRS="/usr/bin /usr/share" bench/image/run.sh
#
# Needs: go, skopeo, docker-registry, jq, sha256sum, gzip, bc, curl (and
# openssl, htpasswd for TLS=1). Run from anywhere.
set -euo pipefail

ROUNDS=${ROUNDS:-5}
LAYER_DIRS=${LAYER_DIRS:-"/usr/bin /usr/include /usr/lib/gcc /usr/share/locale /usr/share/doc /usr/lib/python3.11"}
repo_root=$(cd "$(dirname "$0")/../.." && pwd)

for tool in go skopeo docker-registry jq sha256sum gzip; do
	command -v "$tool" >/dev/null || { echo "bench: $tool not found" >&2; exit 1; }
done

work=$(mktemp -d /var/tmp/berth-bench-image.XXXXXX)
reg_pid=
cleanup() {
	if [[ -n "$reg_pid" ]]; then
		kill "$reg_pid" 2>/dev/null || true
		wait "$reg_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

berth=${BERTH_BIN:-$work/berth}
if [[ -z "${BERTH_BIN:-}" ]]; then
	(cd "$repo_root" && bash scripts/build.sh "$berth")
fi

# --- build the source image as an OCI layout by hand ---
src=$work/src
mkdir -p "$src/blobs/sha256"
echo '{"imageLayoutVersion":"1.0.0"}' >"$src/oci-layout"
layers_json=()
diff_ids=()
total=0
for d in $LAYER_DIRS; do
	[[ -d "$d" ]] || continue
	tmp=$work/layer.tgz
	diff=$(tar -C / -cf - "${d#/}" 2>/dev/null | tee >(gzip -1 >"$tmp") | sha256sum | cut -d' ' -f1)
	sleep 0.2 # let the gzip process substitution finish writing
	wait
	dg=$(sha256sum "$tmp" | cut -d' ' -f1)
	size=$(stat -c %s "$tmp")
	total=$((total + size))
	mv "$tmp" "$src/blobs/sha256/$dg"
	layers_json+=("{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$dg\",\"size\":$size}")
	diff_ids+=("\"sha256:$diff\"")
done
cfg=$(printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/usr/bin"]},"rootfs":{"type":"layers","diff_ids":[%s]}}' \
	"$(go env GOARCH)" "$(IFS=,; echo "${diff_ids[*]}")")
printf '%s' "$cfg" >"$work/cfg"
cdg=$(sha256sum "$work/cfg" | cut -d' ' -f1)
mv "$work/cfg" "$src/blobs/sha256/$cdg"
man=$(printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[%s]}' \
	"$cdg" "${#cfg}" "$(IFS=,; echo "${layers_json[*]}")")
printf '%s' "$man" >"$work/man"
mdg=$(sha256sum "$work/man" | cut -d' ' -f1)
msize=$(stat -c %s "$work/man")
mv "$work/man" "$src/blobs/sha256/$mdg"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"annotations":{"org.opencontainers.image.ref.name":"bench"}}]}' \
	"$mdg" "$msize" >"$src/index.json"
echo "image: ${#layers_json[@]} layers, $((total / 1024 / 1024)) MiB compressed"

# --- a local registry ---
port=$((20000 + RANDOM % 20000))
cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
EOF
scheme=http
src_flags=(--src-tls-verify=false)
dest_flags=(--dest-tls-verify=false)
curl_flags=()
if [[ "${TLS:-0}" == 1 ]]; then
	t=$work/tls
	mkdir -p "$t/certs"
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$t/ca.key" -out "$t/certs/ca.crt" -days 1 -subj "/CN=berth bench CA" 2>/dev/null
	openssl req -newkey rsa:2048 -nodes -keyout "$t/server.key" -out "$t/server.csr" -subj "/CN=127.0.0.1" 2>/dev/null
	echo "subjectAltName=IP:127.0.0.1" >"$t/ext"
	openssl x509 -req -in "$t/server.csr" -CA "$t/certs/ca.crt" -CAkey "$t/ca.key" -CAcreateserial -out "$t/server.crt" -days 1 -extfile "$t/ext" 2>/dev/null
	htpasswd -Bbn bench bench-pw >"$t/htpasswd"
	cat >>"$work/registry.yml" <<EOF
  tls:
    certificate: $t/server.crt
    key: $t/server.key
auth:
  htpasswd:
    realm: bench
    path: $t/htpasswd
EOF
	scheme=https
	src_flags=(--src-cert-dir "$t/certs" --src-creds bench:bench-pw)
	dest_flags=(--dest-cert-dir "$t/certs" --dest-creds bench:bench-pw)
	curl_flags=(--cacert "$t/certs/ca.crt" -u bench:bench-pw)
fi
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 50); do
	curl -sf "${curl_flags[@]}" "$scheme://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
	sleep 0.1
done
img="docker://127.0.0.1:$port/bench/image:v1"
skopeo copy -q --insecure-policy "${dest_flags[@]}" --format v2s2 "oci:$src:bench" "$img"
echo "registry: $scheme://127.0.0.1:$port"

# --- paired rounds ---
now() { date +%s%N; }
run_skopeo() { skopeo copy -q --insecure-policy "${src_flags[@]}" "$img" "oci:$work/dst-skopeo:v1"; }
run_berth() { "$berth" copy -q "${src_flags[@]}" "$img" "oci:$work/dst-berth:v1"; }
timed() { # name -> seconds on stdout
	rm -rf "$work/dst-$1"
	sync
	local t0 t1
	t0=$(now)
	"run_$1"
	t1=$(now)
	echo "scale=3; ($t1 - $t0) / 1000000000" | bc
}
# One untimed warm-up each, so both start with the registry's files cached.
timed skopeo >/dev/null
timed berth >/dev/null

bs=()
ss=()
for i in $(seq "$ROUNDS"); do
	if ((i % 2)); then
		s=$(timed skopeo)
		b=$(timed berth)
	else
		b=$(timed berth)
		s=$(timed skopeo)
	fi
	ss+=("$s")
	bs+=("$b")
	printf 'round %d: skopeo %6.3fs  berth %6.3fs\n' "$i" "$s" "$b"
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
ms=$(median "${ss[@]}")
mb=$(median "${bs[@]}")
echo "median: skopeo ${ms}s  berth ${mb}s"
printf "ratio berth/skopeo: %.3f\n" "$(echo "scale=4; $mb / $ms" | bc)"

# Both layouts must hold the same blobs (same layers, same config).
diff <(ls "$work/dst-skopeo/blobs/sha256" | sort) <(ls "$work/dst-berth/blobs/sha256" | sort) >/dev/null &&
	echo "layouts: same blobs, manifest digests $(jq -r '.manifests[0].digest' "$work/dst-skopeo/index.json" | cut -c1-19) (skopeo) $(jq -r '.manifests[0].digest' "$work/dst-berth/index.json" | cut -c1-19) (berth)" ||
	echo "layouts differ in blobs (see $work)"
