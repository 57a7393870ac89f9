#!/usr/bin/env bash
# Runs opencontainers/runtime-tools' validation suite against an OCI runtime
# and compares the result with the checked-in expectations (the harness is
# test/conformance; its -h lists every flag).
#
#   scripts/conformance.sh                  build bin/berth and validate it
#   scripts/conformance.sh runc             validate Debian's runc (reference run)
#   scripts/conformance.sh --update [RT]    rewrite the expectations from a run
#   scripts/conformance.sh -run 'kill|state' [RT]   a subset of the tests
#
# The expectations file is test/conformance/expected-failures.txt, or
# expected-failures-runc.txt when the runtime is named runc; -expect FILE
# overrides it. The built suite is cached in
# ${XDG_CACHE_HOME:-/var/cache}/berth-conformance. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

runtime=""
cache="${XDG_CACHE_HOME:-/var/cache}/berth-conformance"
args=()
while (($#)); do
	case "$1" in
	--update | -update) args+=(-update) ;;
	-run | --run | -expect | --expect | -timeout | --timeout | -cache | --cache | -logs | --logs | -retries | --retries | -total | --total)
		(($# >= 2)) || { echo "conformance.sh: $1 needs a value" >&2; exit 2; }
		args+=("-${1#--}" "$2")
		[[ "$1" == -cache || "$1" == --cache ]] && cache="$2"
		shift
		;;
	-h | --help)
		sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
		echo
		echo "Harness flags (pass them here as -flag VALUE):"
		go run ./test/conformance -h 2>&1 | sed -n '/^  -/,$p'
		exit 0
		;;
	-*) echo "conformance.sh: unknown option $1 (see -h)" >&2; exit 2 ;;
	*)
		[[ -z "$runtime" ]] || { echo "conformance.sh: more than one runtime given" >&2; exit 2; }
		runtime="$1"
		;;
	esac
	shift
done

if [[ -z "$runtime" ]]; then
	mkdir -p bin
	bash scripts/build.sh bin/berth
	runtime="$PWD/bin/berth"
fi
if ! resolved="$(command -v -- "$runtime")"; then
	echo "conformance.sh: runtime $runtime not found" >&2
	exit 2
fi
runtime="$(realpath -- "$resolved")"

expect=test/conformance/expected-failures.txt
[[ "$(basename -- "$runtime")" == runc ]] && expect=test/conformance/expected-failures-runc.txt

mkdir -p "$cache"
go build -o "$cache/harness" ./test/conformance
# The harness binary lives in the cache too; -expect comes first so that an
# -expect in args wins.
exec "$cache/harness" -runtime "$runtime" -expect "$expect" ${args[@]+"${args[@]}"}
