#!/usr/bin/env bash
# Container start-up benchmark: berth against runc, side by side in one run.
#
#   bench/runtime/run.sh [-n ROUNDS] [--berth PATH] [--runc PATH] [--only run|exec|phases|userns] [--seccomp]
#   (--seccomp: both runtimes load docker's default seccomp profile)
#
# "run": `RT run` of /bin/true (terminal false) in a busybox bundle, the whole
# create/start/wait/delete cycle, as one command.
# "exec": `RT exec ID /bin/true` into a running container (`sleep` as init),
# one container per runtime, started once.
# "phases": where the time of "run" goes: `create`, `state`, `start` and
# `delete` of the same bundle timed one by one, plus `--version` (the floor:
# process start-up and package initialisation of the binary).
# "userns": "run" of the same rootfs in a user namespace (uid/gid 0 mapped
# to 100000, 65536 ids), berth against runc, and berth's user-namespaced
# run against its plain one (target <= 1.2x: the one-plan issue).
#
# The rounds are paired and alternate which runtime goes first, so drift
# (page cache, CPU frequency, other load on the machine) hits both equally.
# Prints both medians, the ratio berth/runc (target <= 0.5: issue 2 for run,
# issue 3 for exec) and the peak RSS of each (GNU time's %M: the largest of
# the runtime process and the children it waited for, i.e. its own init
# before that exec'd).
# Needs root, busybox-static, runc and GNU time (scripts/apt-packages.txt).
set -euo pipefail
cd "$(dirname "$0")/../.."

rounds=50
berth=""
runc_bin="$(command -v runc || true)"
only=""
seccomp=""
while (($#)); do
	case "$1" in
	-n) rounds="${2:?-n needs a number}"; shift ;;
	--berth) berth="${2:?--berth needs a path}"; shift ;;
	--runc) runc_bin="${2:?--runc needs a path}"; shift ;;
	--only) only="${2:?--only needs run, exec, phases or userns}"; shift ;;
	--seccomp) seccomp=1 ;;
	-h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: -n wants a positive number, got $rounds" >&2; exit 2; }
[[ -z "$only" || "$only" == run || "$only" == exec || "$only" == phases || "$only" == userns ]] || { echo "run.sh: --only wants run, exec, phases or userns, got $only" >&2; exit 2; }
((EUID == 0)) || { echo "run.sh: must run as root (it runs containers)" >&2; exit 2; }
[[ -x "$runc_bin" ]] || { echo "run.sh: runc not found (apt-get install runc, or --runc PATH)" >&2; exit 2; }
[[ -x /usr/bin/time ]] || { echo "run.sh: GNU time not found (apt-get install time)" >&2; exit 2; }
busybox_bin=/bin/busybox
[[ -x "$busybox_bin" ]] || { echo "run.sh: $busybox_bin not found (apt-get install busybox-static)" >&2; exit 2; }
ldd "$busybox_bin" >/dev/null 2>&1 && { echo "run.sh: $busybox_bin is dynamic; the rootfs needs busybox-static" >&2; exit 2; }
command -v jq >/dev/null || { echo "run.sh: jq not found (apt-get install jq)" >&2; exit 2; }

if [[ -z "$berth" ]]; then
	mkdir -p bin
	bash scripts/build.sh bin/berth
	berth="$PWD/bin/berth"
fi
berth="$(realpath "$berth")"
runc_bin="$(realpath "$runc_bin")"

work="$(mktemp -d /tmp/berth-bench-runtime.XXXXXX)"
# Containers to remove on exit, as "runtime-path|root|id": the long-lived
# exec targets, plus the one foreground run in flight (a finished `run`
# deletes its own container).
ids=()
pending=""
cleanup() {
	local e rt root id
	for e in ${ids[@]+"${ids[@]}"} ${pending:+"$pending"}; do
		IFS='|' read -r rt root id <<<"$e"
		"$rt" --root "$root" delete --force "$id" >/dev/null 2>&1 || true
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The bundle: busybox-static with its applets as symlinks, runc's default
# spec with terminal off and /bin/true as the process. Both runtimes run the
# very same bundle; each gets a private --root.
bundle="$work/bundle"
mkdir -p "$bundle/rootfs/bin"
cp "$busybox_bin" "$bundle/rootfs/bin/busybox"
chroot "$bundle/rootfs" /bin/busybox --install -s /bin
"$runc_bin" spec --bundle "$bundle"
jq '.process.terminal = false | .process.args = ["/bin/true"]' "$bundle/config.json" >"$bundle/config.json.new"
mv "$bundle/config.json.new" "$bundle/config.json"
if [[ -n "$seccomp" ]]; then
	# docker's default profile in both configs: the start-up cost of a
	# real-world filter (compile + load), side by side.
	go run ./bench/runtime/dockerprofile >"$work/profile.json"
	jq --slurpfile p "$work/profile.json" '.linux.seccomp = $p[0]' "$bundle/config.json" >"$bundle/config.json.new"
	mv "$bundle/config.json.new" "$bundle/config.json"
	echo "bundle uses docker's default seccomp profile"
fi
mkdir -p "$work/root-berth" "$work/root-runc"

name_of() { [[ "$1" == "$berth" ]] && echo berth || echo runc; }
root_of() { echo "$work/root-$(name_of "$1")"; }

# The timing helpers leave their result in REPLY instead of printing it: a
# command substitution would run them in a subshell, losing the container
# IDs recorded for cleanup. Time is read from $EPOCHREALTIME (microseconds,
# no fork), so the timed span holds nothing but the runtime command.
seq_id=0
new_id() {
	seq_id=$((seq_id + 1))
	REPLY="bench-$$-$seq_id-$(name_of "$1")"
	pending="$1|$(root_of "$1")|$REPLY"
}

# time_run RT [BUNDLE]: one `run` of the bundle; REPLY = elapsed microseconds.
time_run() {
	local rt="$1" b="${2:-$bundle}" root id t0 t1
	root="$(root_of "$rt")"
	new_id "$rt"
	id="$REPLY"
	t0=${EPOCHREALTIME/./}
	if ! "$rt" --root "$root" run --bundle "$b" "$id" </dev/null >"$work/out" 2>&1; then
		echo "run.sh: $(name_of "$rt") run failed: $(cat "$work/out")" >&2
		exit 1
	fi
	t1=${EPOCHREALTIME/./}
	pending=""
	REPLY=$((10#$t1 - 10#$t0))
}

# time_exec RT ID: one exec of /bin/true into container ID; REPLY = microseconds.
time_exec() {
	local rt="$1" id="$2" root t0 t1
	root="$(root_of "$rt")"
	t0=${EPOCHREALTIME/./}
	if ! "$rt" --root "$root" exec "$id" /bin/true </dev/null >"$work/out" 2>&1; then
		echo "run.sh: $(name_of "$rt") exec failed: $(cat "$work/out")" >&2
		exit 1
	fi
	t1=${EPOCHREALTIME/./}
	REPLY=$((10#$t1 - 10#$t0))
}

# peak_rss KIND RT [ID]: REPLY = largest %M (KiB) over 5 runs under GNU time.
peak_rss() {
	local kind="$1" rt="$2" cid="${3:-}" max=0 i kb root
	root="$(root_of "$rt")"
	for i in 1 2 3 4 5; do
		if [[ "$kind" == run ]]; then
			new_id "$rt"
			/usr/bin/time -o "$work/rss" -f %M "$rt" --root "$root" run --bundle "$bundle" "$REPLY" </dev/null >"$work/out" 2>&1 ||
				{ echo "run.sh: $(name_of "$rt") run failed: $(cat "$work/out")" >&2; exit 1; }
			pending=""
		else
			/usr/bin/time -o "$work/rss" -f %M "$rt" --root "$root" exec "$cid" /bin/true </dev/null >"$work/out" 2>&1 ||
				{ echo "run.sh: $(name_of "$rt") exec failed: $(cat "$work/out")" >&2; exit 1; }
		fi
		kb="$(tail -n1 "$work/rss")"
		((kb > max)) && max=$kb
	done
	REPLY=$max
}

# time_cmd RT ARGS...: one runtime command with the private root; REPLY =
# microseconds. stdio goes to a file: after create, the container holds it.
time_cmd() {
	local rt="$1" t0 t1
	shift
	t0=${EPOCHREALTIME/./}
	if ! "$rt" --root "$(root_of "$rt")" "$@" </dev/null >"$work/out" 2>&1; then
		echo "run.sh: $(name_of "$rt") $*: $(cat "$work/out")" >&2
		exit 1
	fi
	t1=${EPOCHREALTIME/./}
	REPLY=$((10#$t1 - 10#$t0))
}

# phase_round RT: create, state, start, (untimed wait for stopped), delete;
# appends to the <name>_<phase> arrays.
phase_round() {
	local rt="$1" n id i
	n="$(name_of "$rt")"
	new_id "$rt"
	id="$REPLY"
	time_cmd "$rt" create --bundle "$bundle" "$id"; eval "${n}_create+=($REPLY)"
	time_cmd "$rt" state "$id"; eval "${n}_state+=($REPLY)"
	time_cmd "$rt" start "$id"; eval "${n}_start+=($REPLY)"
	for ((i = 0; i < 500; i++)); do
		"$rt" --root "$(root_of "$rt")" state "$id" 2>/dev/null | grep -q '"status": "stopped"' && break
		sleep 0.01
	done
	time_cmd "$rt" delete "$id"; eval "${n}_delete+=($REPLY)"
	pending=""
	t0=${EPOCHREALTIME/./}
	"$rt" --version >/dev/null
	t1=${EPOCHREALTIME/./}
	eval "${n}_version+=($((10#$t1 - 10#$t0)))"
}

# median and p90 of microsecond samples, printed in milliseconds.
stats() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {m = (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2; p = v[int(NR*0.9+0.999)]; printf "%.2f %.2f %.2f\n", m/1000, v[1]/1000, p/1000}'; }

# report KIND "berth stats" "runc stats" BERTH_RSS RUNC_RSS
report() {
	local kind="$1" b_med b_min b_p90 r_med r_min r_p90 b_rss="$4" r_rss="$5"
	read -r b_med b_min b_p90 <<<"$2"
	read -r r_med r_min r_p90 <<<"$3"
	printf '%s: %d paired rounds, alternating order\n' "$kind" "$rounds"
	printf '  berth  median %7.2f ms  (min %.2f, p90 %.2f)  peak RSS %6s KiB   %s\n' "$b_med" "$b_min" "$b_p90" "$b_rss" "$berth"
	printf '  runc   median %7.2f ms  (min %.2f, p90 %.2f)  peak RSS %6s KiB   %s (%s)\n' "$r_med" "$r_min" "$r_p90" "$r_rss" "$runc_bin" "$("$runc_bin" --version | head -1)"
	local issue=2
	[[ "$kind" == exec* ]] && issue=3
	awk -v b="$b_med" -v r="$r_med" -v i="$issue" 'BEGIN {printf "  ratio berth/runc (medians): %.2fx  (issue %d target <= 0.5x)\n", b/r, i}'
}

echo "bench/runtime: $(nproc) cpus, kernel $(uname -r), $rounds rounds"
# A busy machine stretches both runtimes but not equally (the one that
# forks more suffers more): say so next to the numbers.
read -r load1 _ </proc/loadavg
if awk -v l="$load1" -v n="$(nproc)" 'BEGIN {exit !(l > n)}'; then
	echo "WARNING: load average $load1 exceeds $(nproc) cpus; the numbers below are noisy"
fi

if [[ -z "$only" || "$only" == run ]]; then
	for rt in "$berth" "$runc_bin"; do # warm-up: page cache, binary load
		for _ in 1 2 3; do time_run "$rt"; done
	done
	b=() r=()
	for ((i = 0; i < rounds; i++)); do
		if ((i % 2)); then
			time_run "$runc_bin"; r+=("$REPLY"); time_run "$berth"; b+=("$REPLY")
		else
			time_run "$berth"; b+=("$REPLY"); time_run "$runc_bin"; r+=("$REPLY")
		fi
	done
	peak_rss run "$berth"; b_rss=$REPLY
	peak_rss run "$runc_bin"; r_rss=$REPLY
	report "run /bin/true" "$(stats "${b[@]}")" "$(stats "${r[@]}")" "$b_rss" "$r_rss"
fi

if [[ -z "$only" || "$only" == exec ]]; then
	# exec needs a running container: the same rootfs, `sleep` as init.
	ebundle="$work/ebundle"
	mkdir -p "$ebundle"
	jq --arg root "$bundle/rootfs" '.root.path = $root | .process.args = ["/bin/sleep", "3600"]' "$bundle/config.json" >"$ebundle/config.json"
	exec_ok=1
	for rt in "$berth" "$runc_bin"; do
		new_id "$rt"
		id="$REPLY"
		ids+=("$pending")
		pending=""
		eval "eid_$(name_of "$rt")=\$id"
		# The container's stdio goes to a file: a pipe would be held open by
		# the sleeping init.
		if ! "$rt" --root "$(root_of "$rt")" run -d --bundle "$ebundle" "$id" </dev/null >"$work/$id.log" 2>&1; then
			echo "exec: skipped, $(name_of "$rt") cannot start a detached container: $(cat "$work/$id.log")"
			exec_ok=0
			break
		fi
		if ! "$rt" --root "$(root_of "$rt")" exec "$id" /bin/true </dev/null >"$work/out" 2>&1; then
			echo "exec: skipped, $(name_of "$rt") exec does not work yet: $(cat "$work/out")"
			exec_ok=0
			break
		fi
	done
	if ((exec_ok)); then
		for _ in 1 2 3; do time_exec "$berth" "$eid_berth"; time_exec "$runc_bin" "$eid_runc"; done
		b=() r=()
		for ((i = 0; i < rounds; i++)); do
			if ((i % 2)); then
				time_exec "$runc_bin" "$eid_runc"; r+=("$REPLY"); time_exec "$berth" "$eid_berth"; b+=("$REPLY")
			else
				time_exec "$berth" "$eid_berth"; b+=("$REPLY"); time_exec "$runc_bin" "$eid_runc"; r+=("$REPLY")
			fi
		done
		peak_rss exec "$berth" "$eid_berth"; b_rss=$REPLY
		peak_rss exec "$runc_bin" "$eid_runc"; r_rss=$REPLY
		report "exec /bin/true" "$(stats "${b[@]}")" "$(stats "${r[@]}")" "$b_rss" "$r_rss"
	fi
fi

if [[ -z "$only" || "$only" == phases ]]; then
	berth_create=() berth_state=() berth_start=() berth_delete=() berth_version=()
	runc_create=() runc_state=() runc_start=() runc_delete=() runc_version=()
	phase_round "$berth"; phase_round "$runc_bin" # warm-up, discarded
	berth_create=() berth_state=() berth_start=() berth_delete=() berth_version=()
	runc_create=() runc_state=() runc_start=() runc_delete=() runc_version=()
	for ((i = 0; i < rounds; i++)); do
		if ((i % 2)); then phase_round "$runc_bin"; phase_round "$berth"; else phase_round "$berth"; phase_round "$runc_bin"; fi
	done
	printf 'phases of run: %d paired rounds, medians in ms
' "$rounds"
	printf '  %-10s %8s %8s %7s\n' phase berth runc ratio
	for ph in create state start delete version; do
		eval 'b_s=("${berth_'"$ph"'[@]}") r_s=("${runc_'"$ph"'[@]}")'
		read -r bm _ <<<"$(stats "${b_s[@]}")"
		read -r rm _ <<<"$(stats "${r_s[@]}")"
		label=$ph
		[[ $ph == version ]] && label=--version
		awk -v p="$label" -v b="$bm" -v r="$rm" 'BEGIN {printf "  %-10s %8.2f %8.2f %6.2fx\n", p, b, r, b/r}'
	done
fi

if [[ -z "$only" || "$only" == userns ]]; then
	# The same rootfs in a user namespace: container root is host uid
	# 100000, so the work dir must be reachable by it.
	ubundle="$work/ubundle"
	mkdir -p "$ubundle"
	chmod 755 "$work"
	jq --arg root "$bundle/rootfs" '.root.path = $root | .linux.namespaces += [{"type": "user"}]
		| .linux.uidMappings = [{"containerID": 0, "hostID": 100000, "size": 65536}]
		| .linux.gidMappings = [{"containerID": 0, "hostID": 100000, "size": 65536}]' "$bundle/config.json" >"$ubundle/config.json"
	for _ in 1 2 3; do time_run "$berth"; time_run "$berth" "$ubundle"; time_run "$runc_bin" "$ubundle"; done
	p=() b=() r=()
	for ((i = 0; i < rounds; i++)); do
		if ((i % 2)); then
			time_run "$runc_bin" "$ubundle"; r+=("$REPLY"); time_run "$berth" "$ubundle"; b+=("$REPLY"); time_run "$berth"; p+=("$REPLY")
		else
			time_run "$berth"; p+=("$REPLY"); time_run "$berth" "$ubundle"; b+=("$REPLY"); time_run "$runc_bin" "$ubundle"; r+=("$REPLY")
		fi
	done
	read -r p_med p_min _ <<<"$(stats "${p[@]}")"
	read -r b_med b_min b_p90 <<<"$(stats "${b[@]}")"
	read -r r_med r_min r_p90 <<<"$(stats "${r[@]}")"
	printf 'run /bin/true in a user namespace: %d rounds of three, alternating order\n' "$rounds"
	printf '  berth userns  median %7.2f ms  (min %.2f, p90 %.2f)\n' "$b_med" "$b_min" "$b_p90"
	printf '  berth plain   median %7.2f ms  (min %.2f)\n' "$p_med" "$p_min"
	printf '  runc userns   median %7.2f ms  (min %.2f, p90 %.2f)\n' "$r_med" "$r_min" "$r_p90"
	awk -v b="$b_med" -v p="$p_med" -v r="$r_med" 'BEGIN {printf "  ratio berth userns/plain: %.2fx  (target <= 1.2x)\n  ratio berth/runc, both in a user namespace: %.2fx\n", b/p, b/r}'
fi
