# shellcheck shell=bash
# Test helpers, sourced by tests/e2e/*.sh and tests/cli/*.sh.
#
# Every test runs in a subshell with its own network namespaces (random
# names), its own bpffs mount for --pin-dir, and a trap that removes all of
# it on exit, pass or fail. Nothing touches the root network namespace.
# Output: "PASS name", "FAIL name" (with the test's log), "SKIP name: why".

DH_ROOT=${DH_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
DH_BIN=${DH_BIN:-$DH_ROOT/.output/dockhost-bpf}
DH_USER_FILTER=$DH_ROOT/.output/user_filter.bpf.o  # a tc filter that is not ours
DH_TCXCTL=$DH_ROOT/.output/tcxctl  # tcx chains by hand (bpftool 7.1 has no tcx)
DH_SUITE=${DH_SUITE:-$(basename "$(dirname "$0")")/$(basename "$0" .sh)}

# The CLI must not ask the host's Docker about names in these tests.
export DOCKER_HOST=${DH_TEST_DOCKER_HOST:-unix:///nonexistent/docker.sock}

# Addresses live only inside the namespaces a test creates.
GW=10.201.0.1
CTR=10.201.0.2
CTR2=10.201.0.3  # second_container's
GW6=fd42:201::1
CTR6=fd42:201::2

fail() {
	echo "FAILED: $*" >&2
	exit 1
}

skip() {
	echo "$*" >"$DH_TEST_DIR/skip"
	exit 77
}

expect_eq() {  # GOT WANT WHAT
	[ "$1" = "$2" ] || fail "$3: got '$1', want '$2'"
}

expect_contains() {  # HAYSTACK NEEDLE WHAT
	case "$1" in *"$2"*) ;; *) fail "$3: '$2' not in: $1" ;; esac
}

# Runs a client command, expects "Connection refused" within a second: a
# timeout would mean the packet went somewhere, or was dropped, rather
# than answered (RST, port unreachable). The second does not count what
# starting a client costs (ip netns exec, timeout, socat, measured just
# before): a few ms here, about a second on the emulated CPU of make
# test-kernels.
expect_refused() {  # WHAT CMD...
	local what=$1 start out elapsed started
	shift
	start=$(date +%s%N)
	in_ctr timeout 4 socat -V >/dev/null 2>&1 || true
	started=$(($(date +%s%N) - start))
	start=$(date +%s%N)
	out=$("$@") || true
	elapsed=$((($(date +%s%N) - start - started) / 1000000))
	expect_contains "$out" "Connection refused" "$what"
	[ "$elapsed" -lt 1000 ] || fail "$what: took $elapsed ms more than starting a client, a timeout rather than a refusal"
}

# Polls CMD (a shell snippet) for up to 10 s (a loaded 2-core machine);
# a failure says what a running watch ($WATCH_LOG) printed.
wait_for() {  # WHAT CMD
	local i
	for i in $(seq 100); do
		eval "$2" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	fail "timed out waiting for: $1${WATCH_LOG:+; watch said: $(cat "$WATCH_LOG" 2>/dev/null)}"
}

# A stand-in for Docker's API on $DH_SCRATCH/docker.sock, answering with
# SCRIPT (default tests/cli/fake_docker_api.sh; DH_FAKE_DOCKER_DIR set for
# the call reaches it), DOCKER_HOST pointed at it once it listens.
serve_fake_docker() {  # [SCRIPT]
	local sock=$DH_SCRATCH/docker.sock i
	socat "UNIX-LISTEN:$sock,fork" EXEC:"${1:-$DH_ROOT/tests/cli/fake_docker_api.sh}" &
	for i in $(seq 50); do [ -S "$sock" ] && break; sleep 0.05; done
	[ -S "$sock" ] || fail "the fake Docker API did not listen on $sock"
	export DOCKER_HOST=unix://$sock
}

# `watch ARGS...` in the host namespace, its output in $WATCH_LOG, started
# once it says what it follows.
start_watch() {  # ARGS...
	WATCH_LOG=$DH_SCRATCH/watch.log
	ip netns exec "$H" "$DH_BIN" --pin-dir "$PIN" watch "$@" >"$WATCH_LOG" 2>&1 &
	WATCH_PID=$!
	wait_for "watch to start" "grep -q following '$WATCH_LOG'"
}

# SIGTERM ends watch (its Docker thread included) with exit 0: a watch
# still running 10 s later fails (and is killed), rather than hang the test.
# Prints what it said.
stop_watch() {
	local i rc=0
	kill -TERM "$WATCH_PID"
	for i in $(seq 100); do kill -0 "$WATCH_PID" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$WATCH_PID" 2>/dev/null; then
		kill -KILL "$WATCH_PID"
		fail "watch still running 10 s after SIGTERM: $(cat "$WATCH_LOG")"
	fi
	wait "$WATCH_PID" || rc=$?
	expect_eq "$rc" 0 "watch's exit code after SIGTERM"
	cat "$WATCH_LOG"
}

expect_not_contains() {  # HAYSTACK NEEDLE WHAT
	case "$1" in *"$2"*) fail "$3: '$2' unexpectedly in: $1" ;; esac
}

# Runs a command, expects exit code WANT; leaves stdout+stderr in $OUT.
expect_exit() {  # WANT CMD...
	local want=$1 rc=0
	shift
	OUT=$("$@" 2>&1) || rc=$?
	[ "$rc" = "$want" ] || fail "'$*' exited $rc, want $want; output: $OUT"
}

# Exit code and message of one call; the message must be a single line.
expect_error() {  # CODE NEEDLE ARGS...
	local code=$1 needle=$2
	shift 2
	expect_exit "$code" dh "$@"
	expect_contains "$OUT" "$needle" "message of 'dockhost-bpf $*'"
	[ "$(printf '%s\n' "$OUT" | wc -l)" = 1 ] || fail "'dockhost-bpf $*': more than one line: $OUT"
}

in_host() { ip netns exec "$H" "$@"; }
in_ctr() { ip netns exec "$C" "$@"; }
# The CLI in the host namespace, always with the test's own pin dir. With
# DH_MODE set (the runner runs a suite once per mode), an attach that names
# no --mode attaches in that mode.
dh() {
	local arg command=
	for arg in "$@"; do
		case $arg in
		--mode | --mode=*) command=has-mode; break ;;
		-*) ;;
		*) [ -z "$command" ] && command=$arg ;;
		esac
	done
	if [ -n "${DH_MODE:-}" ] && [ "$command" = attach ]; then
		set -- "$@" --mode "$DH_MODE"
	fi
	ip netns exec "$H" "$DH_BIN" --pin-dir "$PIN" "$@"
}

# tcx is 6.6+: on an older kernel (Debian 12's 6.1, make test-kernels)
# attach takes clsact, `--hook tcx` is refused, and what only tcx does is
# skipped with this reason. tcxctl's query is EINVAL there.
have_tcx() { in_host "$DH_TCXCTL" list lo >/dev/null 2>&1; }
need_tcx() {
	have_tcx || skip "no tcx on kernel $(uname -r) (6.6+): attach uses clsact, --hook tcx is refused"
}
# The hooks this kernel has, for cases run over each.
hooks() { if have_tcx; then echo tcx clsact; else echo clsact; fi; }
# The hook `attach` (auto) must choose on this kernel.
auto_hook() { if have_tcx; then echo tcx; else echo clsact; fi; }
# A case that runs over both hooks, on a kernel without tcx, has run its
# clsact half: it ends as a skip that says so, not as a pass.
tcx_half_skipped() {
	have_tcx || skip "tcx half not run, the clsact half passed: no tcx on kernel $(uname -r) (6.6+)"
}
# Our program in DIR (ingress or egress) taken off br0 behind the CLI's
# back, from whichever hook it is in.
remove_our_program() {  # DIR
	if in_host "$DH_TCXCTL" list br0 2>/dev/null | grep -q "^$1 dh_$1$"; then
		in_host "$DH_TCXCTL" detach br0 "$1" "dh_$1"
	else
		in_host tc filter del dev br0 "$1" pref 1 handle 0xd0c8 bpf
	fi
}

# The mode this run attaches in: DH_MODE, else the CLI's default.
mode() { echo "${DH_MODE:-socket}"; }

# Ends a case that tests what only NAT mode does, in another mode. It is
# not a skip (the machine can run it; the mode has nothing to test there),
# so the run does not count it at all. WHY stays in the code for readers.
nat_only() {  # WHY
	[ "$(mode)" = nat ] || exit 78
}

# NS IFNAME: a bridge with ADDR/24 in namespace NS.
make_bridge() {  # NS BRIDGE ADDR
	ip -n "$1" link add "$2" type bridge
	ip -n "$1" addr add "$3/24" dev "$2"
	ip -n "$1" link set "$2" up
}

# A "container": a namespace on a veth enslaved to BRIDGE in $H.
make_container() {  # NS BRIDGE ADDR GATEWAY
	local veth="v$RANDOM"
	ip netns add "$1"
	DH_NETNS+=("$1")
	ip -n "$H" link add "$veth" type veth peer name eth0 netns "$1"
	ip -n "$H" link set "$veth" master "$2" up
	ip -n "$1" link set lo up
	ip -n "$1" addr add "$3/24" dev eth0
	ip -n "$1" link set eth0 up
	ip -n "$1" route add default via "$4"
}

# A second "container" ($C2, $CTR2) on br0, beside $CTR's.
second_container() {
	C2=dh-c2-$RANDOM$RANDOM
	make_container "$C2" br0 "$CTR2" "$GW"
}

# IPv6 on br0 and the container's eth0 (before attach: attach reads the
# bridge's addresses). nodad: usable at once, no DAD wait.
add_ipv6() {
	in_host ip addr add "$GW6/64" dev br0 nodad
	in_ctr ip addr add "$CTR6/64" dev eth0 nodad
}

# Background servers in the host namespace. They answer REPLY to anything.
# The reply script reads the request line first: a plain 'echo' may exit
# before socat hands it the request, and socat's EPIPE then loses the reply.
serve_tcp() {  # PORT ADDR REPLY
	in_host socat "TCP4-LISTEN:$1,bind=$2,reuseaddr,fork" "SYSTEM:read -r _; echo $3" &
	wait_listening tcp "$1"
}

serve_udp() {  # PORT ADDR REPLY
	in_host socat "UDP4-RECVFROM:$1,bind=$2,fork" "SYSTEM:read -r _; echo $3" &
	wait_listening udp "$1"
}

# An echo server: returns every line it reads.
serve_tcp_echo() {  # PORT ADDR
	in_host socat "TCP4-LISTEN:$1,bind=$2,reuseaddr,fork" EXEC:cat &
	wait_listening tcp "$1"
}

serve_tcp6() {  # PORT ADDR REPLY (ADDR without brackets)
	in_host socat "TCP6-LISTEN:$1,bind=[$2],reuseaddr,fork" "SYSTEM:read -r _; echo $3" &
	wait_listening tcp "$1"
}

serve_udp6() {  # PORT ADDR REPLY
	in_host socat "UDP6-RECVFROM:$1,bind=[$2],fork" "SYSTEM:read -r _; echo $3" &
	wait_listening udp "$1"
}

wait_listening() {  # tcp|udp PORT [NS]
	local flag=-lnt i
	[ "$1" = udp ] && flag=-lnu
	for i in $(seq 50); do
		[ -n "$(ip netns exec "${3:-$H}" ss -H "$flag" "sport = :$2")" ] && return 0
		sleep 0.05
	done
	fail "nothing listening on $1 port $2"
}

# Client requests from the container; print the reply, fail quietly.
tcp_get() {  # ADDR PORT [NS]
	ip netns exec "${3:-$C}" timeout 4 socat -T2 - "TCP4:$1:$2,connect-timeout=2" </dev/null 2>&1
}

udp_get() {  # ADDR PORT [NS]
	echo ping | ip netns exec "${3:-$C}" timeout 4 socat -T1 - "UDP4:$1:$2" 2>&1
}

tcp6_get() {  # ADDR PORT [NS]
	ip netns exec "${3:-$C}" timeout 4 socat -T2 - "TCP6:[$1]:$2,connect-timeout=2" </dev/null 2>&1
}

udp6_get() {  # ADDR PORT [NS]
	echo ping | ip netns exec "${3:-$C}" timeout 4 socat -T1 - "UDP6:[$1]:$2" 2>&1
}

# What attach configured (bridges, gateways, ports), without anything
# traffic changes: counters, packets, bytes, timestamps.
config_snapshot() {
	dh --json status | sed '/"counters"/,$d' | grep -v -E '"(attached_at|packets|bytes)"'
}

# The kernel ids of our two pinned programs.
prog_ids() {
	local p
	for p in prog_ingress prog_egress; do
		bpftool prog show pinned "$PIN/$p" | sed -n 's/^\([0-9]*\): .*/\1/p'
	done
}

# Our programs on br0, as the kernel says (not our pins), tcx and clsact
# alike: "ingress dh_ingress" and "egress dh_egress", a line per program.
our_programs() {
	in_host "$DH_TCXCTL" list br0 | grep -E ' dh_(ingress|egress)$' || true
	in_host tc filter show dev br0 ingress | grep 'dh_ingress' | sed 's/.*/ingress dh_ingress/' || true
	in_host tc filter show dev br0 egress | grep 'dh_egress' | sed 's/.*/egress dh_egress/' || true
}

counter() {  # NAME: one field of 'stats --json'
	dh --json stats | sed -n "s/^ *\"$1\": *\([0-9]*\),*$/\1/p"
}

setup_topology() {
	local suffix
	suffix=$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
	H=dh-h-$suffix
	C=dh-c-$suffix
	DH_NETNS=("$H")
	ip netns add "$H"
	ip -n "$H" link set lo up
	make_bridge "$H" br0 "$GW"
	make_container "$C" br0 "$CTR" "$GW"
}

setup_pin_dir() {
	DH_BPFFS=$(mktemp -d "${TMPDIR:-/tmp}"/dh-test-bpffs-XXXXXX)
	mount -t bpf bpf "$DH_BPFFS"
	PIN=$DH_BPFFS/pins
	# Everything else a test writes goes here, and goes with it.
	DH_SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}"/dh-test-scratch-XXXXXX)
}

# Socket mode's cgroup programs, by the suffix of their pins (prog_HOOK),
# which is also bpftool's name of their attach type.
DH_CGROUP_HOOKS="sendmsg4 sendmsg6 connect4 connect6"

# This test's ids of cgroup program HOOK: the pinned one, and those a test
# that removes the pins first wrote to HOOK_ids.
cgroup_test_ids() {  # HOOK
	bpftool prog show pinned "$PIN/prog_$1" 2>/dev/null | sed -n 's/^\([0-9]*\): .*/\1/p'
	[ -n "${DH_SCRATCH:-}" ] && [ -e "$DH_SCRATCH/$1_ids" ] && cat "$DH_SCRATCH/$1_ids"
	return 0
}

# A test about to remove the pins notes its cgroup programs' ids first:
# nothing else would find them on the host-wide root.
note_cgroup_ids() {
	local hook
	for hook in $DH_CGROUP_HOOKS; do
		bpftool prog show pinned "$PIN/prog_$hook" 2>/dev/null |
			sed -n 's/^\([0-9]*\): .*/\1/p' >>"$DH_SCRATCH/${hook}_ids" || true
	done
}

# Socket mode's cgroup programs hang on the host-wide cgroup v2 root: a
# test that failed before its detach must not leave them there. Only the
# programs of this test's pin set are taken off.
cgroup_cleanup() {
	local id dir hook all=
	[ -n "${PIN:-}" ] || return 0
	for hook in $DH_CGROUP_HOOKS; do
		all="$all $(cgroup_test_ids $hook)"
	done
	[ -n "${all//[[:space:]]/}" ] || return 0
	dir=$(mktemp -d /tmp/dh-test-cgroup2-XXXXXX)
	if mount -t cgroup2 none "$dir"; then
		for hook in $DH_CGROUP_HOOKS; do
			for id in $(cgroup_test_ids $hook); do
				bpftool cgroup detach "$dir" "$hook" id "$id" 2>/dev/null
			done
		done
		umount "$dir"
	fi
	rmdir "$dir"
}

cleanup() {
	local ns pid
	set +e  # runs from the EXIT trap of a set -e test: every step must run
	for ns in "${DH_NETNS[@]}"; do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
	done
	# Background jobs outside the namespaces too (a fake API server, say).
	for pid in $(jobs -p); do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null
	# After the processes: a watch still converging would otherwise attach
	# a cgroup program behind the cleanup's back (seen: a dh_sendmsg4 left
	# on the host's cgroup root by a failed watch test).
	cgroup_cleanup
	for ns in "${DH_NETNS[@]}"; do ip netns del "$ns" 2>/dev/null; done
	if [ -n "${DH_BPFFS:-}" ]; then
		umount "$DH_BPFFS" 2>/dev/null
		rmdir "$DH_BPFFS" 2>/dev/null
	fi
	if [ -n "${DH_SCRATCH:-}" ]; then
		rm -rf "$DH_SCRATCH"
	fi
	return 0
}

# Is test NAME one DH_TEST_FILTER asks for: a substring of its name, or
# several separated by '|' (make test-kernels' subset)?
filter_wants() {  # NAME
	local want
	[ -n "${DH_TEST_FILTER:-}" ] || return 0
	IFS='|' read -ra want <<<"$DH_TEST_FILTER"
	for want in "${want[@]}"; do
		[ -n "$want" ] && [[ $1 == *"$want"* ]] && return 0
	done
	return 1
}

# Runs every function named test_* in the calling file (alphabetical order);
# DH_TEST_FILTER=substring runs only the matching ones.
run_tests() {
	local name rc log
	DH_TEST_DIR=$(mktemp -d "${TMPDIR:-/tmp}"/dh-test-log-XXXXXX)
	for name in $(declare -F | awk '{print $3}' | grep '^test_'); do
		filter_wants "$name" || continue
		log=$DH_TEST_DIR/log
		rm -f "$DH_TEST_DIR/skip"
		(
			set -euo pipefail
			DH_NETNS=()
			trap cleanup EXIT
			setup_pin_dir
			setup_topology
			"$name"
		) >"$log" 2>&1
		rc=$?
		case $rc in
		0) echo "PASS $DH_SUITE/${name#test_}" ;;
		77) echo "SKIP $DH_SUITE/${name#test_}: $(cat "$DH_TEST_DIR/skip")" ;;
		78) ;;  # not for this mode (nat_only)
		*)
			echo "FAIL $DH_SUITE/${name#test_}"
			sed 's/^/    /' "$log"
			;;
		esac
	done
	rm -rf "$DH_TEST_DIR"
}
