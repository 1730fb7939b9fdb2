#!/usr/bin/env bash
# make bench: dockhost-bpf side by side with native, the iptables recipe,
# docker-proxy and a socat relay, in one run on this machine.
#
# Every mode gets its own pair of network namespaces (a "host" with bridge
# br0 and a server bound to 127.0.0.1 only, a "container" on a veth), set up
# once; random names, all removed on exit. Client and everything in the host
# namespace run pinned to one CPU, so the numbers are CPU cost per
# transaction. Within each repetition the modes run back to back per metric,
# starting from a different mode each time; ratios are taken within a
# repetition, then the median over repetitions is reported.
#
#   make bench (about 10 minutes)    QUICK=1 make bench (about a minute)
#   REPS=9 SECONDS_PER=3 MODES="native native-aa dockhost" make bench
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/.output/dockhost-bpf
loadgen=$root/.output/loadgen
noop_bpf=$root/.output/user_filter.bpf.o
tcxctl=$root/.output/tcxctl
out=$root/.output/bench
if [ -n "${QUICK:-}" ]; then
	REPS=${REPS:-1} SECONDS_PER=${SECONDS_PER:-0.5}
fi
reps=${REPS:-5}
secs=${SECONDS_PER:-1.5}
tput_secs=$(awk -v s="$secs" 'BEGIN { t = int(s); print t < 1 ? 1 : t }')  # iperf3 -t is whole seconds
threads=${THREADS:-2}
cpu=${BENCH_CPU:-$(($(nproc) - 1))}
others=4095  # extra ports/rules in the -4096 modes
gw=10.77.0.1
ctr_addr=10.77.0.2

[ "$(id -u)" -eq 0 ] || { echo "bench: run as root (network namespaces, BPF, iptables)" >&2; exit 1; }
# A private mount namespace for the bpffs holding the pin dirs.
if [ -z "${DH_BENCH_UNSHARED:-}" ]; then
	DH_BENCH_UNSHARED=1 exec unshare --mount --propagation private "$0" "$@"
fi

suffix=$(od -An -N3 -tx1 /dev/urandom | tr -d ' ')
bpffs=$(mktemp -d /tmp/dh-bench-bpffs-XXXXXX)
mount -t bpf bpf "$bpffs"
namespaces=()
sock_modes=()  # socket-mode modes set up so far: their cgroup programs are on the cgroup root
cg2=""         # a cgroup v2 mount in this mount namespace, for bpftool cgroup

cleanup() {
	local ns pid m
	# Socket mode's cgroup programs hang on the host-wide cgroup v2 root,
	# not in a namespace: they must go before anything else, or they would
	# outlive the bench (no link holds them; deleting the namespaces and the
	# bpffs does not detach them).
	for m in "${sock_modes[@]}"; do
		dockhost "$m" detach br0 >/dev/null 2>&1 || true
		cgroup_detach "$m"
	done
	# Quietly: bash reports every killed background job on stderr.
	{
		for ns in "${namespaces[@]}"; do
			for pid in $(ip netns pids "$ns"); do kill "$pid" || true; done
		done
		wait || true
	} 2>/dev/null
	for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
	umount "$bpffs" 2>/dev/null || true
	rmdir "$bpffs" 2>/dev/null || true
	if [ -n "${cg2_tmp:-}" ]; then
		umount "$cg2_tmp" 2>/dev/null || true
		rmdir "$cg2_tmp" 2>/dev/null || true
	fi
}
trap cleanup EXIT

log() { printf '%s\n' "$*" >&2; }

# ---- topology and modes -------------------------------------------------------

host_ns() { echo "dhb-h-$1-$suffix"; }
ctr_ns() { echo "dhb-c-$1-$suffix"; }
# Mode names carry '+' (+ct, +fw: conntrack); namespace names may not.
ns_id() { echo "${1//+/-ct}"; }

in_host() { local m=$1; shift; ip netns exec "$(host_ns "$(ns_id "$m")")" "$@"; }
# A background server in the host namespace, started without a subshell
# (a subshell would print "Terminated" when cleanup kills it).
spawn_in_host() { local m=$1; shift; ip netns exec "$(host_ns "$(ns_id "$m")")" "${pin[@]}" "$@" & }
in_ctr() { local m=$1; shift; ip netns exec "$(ctr_ns "$(ns_id "$m")")" "$@"; }
pin=(taskset -c "$cpu")  # prefix: runs a command on the bench CPU

make_pair() {  # MODE
	local id h c
	id=$(ns_id "$1")
	h=$(host_ns "$id")
	c=$(ctr_ns "$id")
	ip netns add "$h"
	namespaces+=("$h")
	ip netns add "$c"
	namespaces+=("$c")
	ip -n "$h" link set lo up
	ip -n "$h" link add br0 type bridge
	ip -n "$h" addr add "$gw/24" dev br0
	ip -n "$h" link set br0 up
	ip -n "$h" link add veth0 type veth peer name eth0 netns "$c"
	ip -n "$h" link set veth0 master br0 up
	ip -n "$c" link set lo up
	ip -n "$c" addr add "$ctr_addr/24" dev eth0
	ip -n "$c" link set eth0 up
	ip -n "$c" route add default via "$gw"
}

# The service: request/response on 5000 (TCP and UDP), bound to 127.0.0.1
# (and wherever else the mode needs). iperf3 starts per measurement.
start_server() {  # MODE [extra loadgen args]
	local mode=$1
	shift
	spawn_in_host "$mode" "$loadgen" server --tcp 127.0.0.1:5000 --udp 127.0.0.1:5000 "$@" >/dev/null
}

# Modes whose service listens on the gateway address itself.
serves_on_gateway() {
	case ${1%+*} in
	native | native-aa | clsact-noop | tcx-noop | tcx-noop-ingress | dockhost-unmapped | socket-unmapped) return 0 ;;
	*) return 1 ;;
	esac
}

is_socket_mode() { case ${1%+*} in socket | socket-*) return 0 ;; *) return 1 ;; esac; }
attach_mode() { if is_socket_mode "$1"; then echo socket; else echo nat; fi; }  # MODE -> attach --mode

# ---- socket mode's cgroup programs: one set on the cgroup root at a time -------
#
# Every socket-mode pin set attaches its own sendmsg4/6 and connect4/6 at the
# cgroup v2 root, and that root is host-wide: each one runs (a map lookup
# that misses, or a type check) on every unconnected UDP send and every
# connect() of every mode here, the servers' replies and the CRR clients'
# connects included. With five socket modes that would tax native's rows
# with five sets no real host runs. So before each measurement only the
# measured mode's own set stays attached: none for the others, as on a host
# without dockhost, one for a socket mode, as on a host with it.

find_cgroup2() {
	cg2=$(awk '{ for (i = 7; i <= NF; i++) if ($i == "-") break; if ($(i + 1) == "cgroup2") { print $5; exit } }' /proc/self/mountinfo)
	if [ -z "$cg2" ]; then
		# A cgroup v1 host: mount the v2 hierarchy here (a private mount
		# namespace); its root is the same host-wide root the CLI attaches to.
		cg2_tmp=$(mktemp -d /tmp/dh-bench-cgroup2-XXXXXX)
		mount -t cgroup2 none "$cg2_tmp"
		cg2=$cg2_tmp
	fi
}

cgroup_hooks="sendmsg4 sendmsg6 connect4 connect6"  # bpftool's names, and our pins' prog_NAME

cgroup_detach() {  # MODE (not attached: nothing to do)
	local hook
	[ -n "$cg2" ] || return 0
	for hook in $cgroup_hooks; do
		bpftool cgroup detach "$cg2" $hook pinned "$bpffs/$(ns_id "$1")/prog_$hook" 2>/dev/null || true
	done
}

# Stateless (measure runs in a subshell, which would lose any state):
# detaching a program that is not attached fails harmlessly.
cgroup_only() {  # MODE: the cgroup root carries MODE's programs (if any), no other's
	local m hook
	for m in "${sock_modes[@]}"; do
		cgroup_detach "$m"
		if [ "$m" = "$1" ]; then
			for hook in $cgroup_hooks; do
				bpftool cgroup attach "$cg2" $hook pinned "$bpffs/$(ns_id "$m")/prog_$hook" multi
			done
		fi
	done
}

# An empty program on the bridge's tcx hooks (what dockhost uses where the
# kernel has tcx), or on clsact where it has none.
noop_attach() {  # MODE ingress|egress
	local h
	h=$(host_ns "$(ns_id "$1")")
	ip netns exec "$h" "$tcxctl" attach br0 "$2" "$noop_bpf" user_filter 2>/dev/null && return 0
	log "bench: $1: no tcx here, the empty program goes on clsact $2"
	ip netns exec "$h" tc qdisc add dev br0 clsact 2>/dev/null || true
	ip netns exec "$h" tc filter add dev br0 "$2" bpf da obj "$noop_bpf" sec tc
}

# --from for 64 sources: 63 other /32s and prefixes, then the client's /32.
allow64_args() {
	local i
	for ((i = 1; i <= 48; i++)); do printf -- '--from 10.77.1.%d ' "$i"; done
	for ((i = 1; i <= 15; i++)); do printf -- '--from 10.%d.0.0/16 ' $((100 + i)); done
	printf -- '--from %s/32' "$ctr_addr"
}

dockhost() {  # MODE ARGS...
	local mode=$1
	shift
	in_host "$mode" "$bin" --pin-dir "$bpffs/$(ns_id "$mode")" "$@"
}

conntrack_on() {  # MODE: a MASQUERADE rule that never matches, as on every Docker host
	in_host "$1" iptables -t nat -A POSTROUTING -s 192.0.2.0/24 ! -o br0 -j MASQUERADE
}

# Conntrack without a NAT chain: the INVALID-drop rule of ufw and firewalld.
# (NAT mode's TCP fails behind it while the bridge has
# bridge-nf-call-iptables=1, as every new netns here does.)
firewall_on() {  # MODE
	in_host "$1" iptables -A INPUT -m conntrack --ctstate INVALID -j DROP
}

iptables_recipe() {  # MODE OTHER_RULES
	local mode=$1 n=$2 i
	in_host "$mode" sysctl -qw net.ipv4.conf.br0.route_localnet=1
	{
		echo "*nat"
		for ((i = 0; i < n; i++)); do
			echo "-A PREROUTING -i br0 -p tcp --dport $((10000 + i)) -j DNAT --to-destination 127.0.0.1:$((10000 + i))"
		done
		echo "-A PREROUTING -i br0 -p tcp --dport 5000 -j DNAT --to-destination 127.0.0.1:5000"
		echo "-A PREROUTING -i br0 -p udp --dport 5000 -j DNAT --to-destination 127.0.0.1:5000"
		echo "-A PREROUTING -i br0 -p tcp --dport 5201 -j DNAT --to-destination 127.0.0.1:5201"
		echo "COMMIT"
	} | in_host "$mode" iptables-restore --noflush
}

# How each mode gets the container's packets to the 127.0.0.1 service.
setup_mode() {  # MODE
	local mode=$1 base=${1%+*} p
	make_pair "$mode"
	# Before the attach: cleanup must know cgroup programs may be on the root.
	is_socket_mode "$mode" && sock_modes+=("$mode")
	case $mode in
	*+ct) conntrack_on "$mode" ;;
	*+fw) firewall_on "$mode" ;;
	esac
	if serves_on_gateway "$mode"; then
		start_server "$mode" --tcp "$gw:5000" --udp "$gw:5000"
	else
		start_server "$mode"
	fi
	case $base in
	native | native-aa) ;;
	clsact-noop)
		# The floor of a tc datapath: clsact and a BPF program that does
		# nothing, on both hooks, with the service on the gateway.
		in_host "$mode" tc qdisc add dev br0 clsact
		in_host "$mode" tc filter add dev br0 ingress bpf da obj "$noop_bpf" sec tc
		in_host "$mode" tc filter add dev br0 egress bpf da obj "$noop_bpf" sec tc ;;
	tcx-noop)
		# The same on tcx, the hook dockhost takes on kernels that have it.
		noop_attach "$mode" ingress
		noop_attach "$mode" egress ;;
	tcx-noop-ingress)
		# Socket mode's floor: a program on ingress only, as socket mode
		# attaches (its replies leave from the gateway: no egress program).
		noop_attach "$mode" ingress ;;
	dockhost | socket | socket-trace | dockhost-nosources | socket-nosources)
		# dockhost* rows are NAT mode, socket* rows socket mode (the
		# default), each attached as it attaches: socket mode with the
		# ingress program only. *-nosources: per-source counters off,
		# what the rows without the suffix (counting) are measured against.
		dockhost "$mode" attach br0 --mode "$(attach_mode "$mode")" --port 5000 --port 5000/udp --port 5201 \
			--per-source "$(case $base in *-nosources) echo off ;; *) echo on ;; esac)" >/dev/null
		# socket-trace: socket with `trace` running (its lines discarded),
		# on the bench CPU: what tracing costs while somebody traces.
		# socket itself is the cost with nobody tracing.
		if [ "$base" = socket-trace ]; then
			spawn_in_host "$mode" "$bin" --pin-dir "$bpffs/$(ns_id "$mode")" trace >/dev/null 2>&1
		fi ;;
	dockhost-unmapped | socket-unmapped)
		# Traffic that does not match: a service on the gateway itself,
		# with dockhost attached and mapping other ports.
		dockhost "$mode" attach br0 --mode "$(attach_mode "$mode")" --port 5001 --port 5001/udp --port 5202 >/dev/null ;;
	dockhost-allow64 | socket-allow64)
		# Each port with an allow-list of 64 sources, the client's last.
		dockhost "$mode" attach br0 --mode "$(attach_mode "$mode")" >/dev/null
		for p in 5000 5000/udp 5201; do
			dockhost "$mode" port add "$p" $(allow64_args) >/dev/null
		done ;;
	dockhost-4096 | socket-4096)
		dockhost "$mode" attach br0 --mode "$(attach_mode "$mode")" >/dev/null
		# Map edits need no netns: skip ip netns exec for the bulk fill.
		for ((p = 0; p < others; p++)); do
			"$bin" --pin-dir "$bpffs/$(ns_id "$mode")" port add $((10000 + p)) >/dev/null
		done
		dockhost "$mode" port add 5000 >/dev/null
		dockhost "$mode" port add 5000/udp >/dev/null
		dockhost "$mode" port add 5201 >/dev/null ;;
	iptables)
		iptables_recipe "$mode" 0 ;;
	iptables-4096)
		iptables_recipe "$mode" "$others" ;;
	docker-proxy)
		# dockerd hands docker-proxy a pipe on fd 3 to report "started";
		# without one, the proxy closes its own listener when it reports.
		for p in tcp:5000 udp:5000 tcp:5201; do
			spawn_in_host "$mode" docker-proxy -proto "${p%%:*}" -host-ip "$gw" -host-port "${p#*:}" \
				-container-ip 127.0.0.1 -container-port "${p#*:}" >/dev/null 2>&1 3>/dev/null
		done ;;
	socat)
		# Relay errors (a peer's reset) are noise here: the client counts failures.
		spawn_in_host "$mode" socat "TCP4-LISTEN:5000,bind=$gw,reuseaddr,fork" TCP4:127.0.0.1:5000 2>/dev/null
		spawn_in_host "$mode" socat "UDP4-LISTEN:5000,bind=$gw,reuseaddr,fork" UDP4:127.0.0.1:5000 2>/dev/null
		spawn_in_host "$mode" socat "TCP4-LISTEN:5201,bind=$gw,reuseaddr,fork" TCP4:127.0.0.1:5201 2>/dev/null ;;
	*) log "bench: unknown mode $mode"; exit 1 ;;
	esac
}

measure() {  # MODE METRIC -> "value errors"
	local mode=$1 metric=$2 addr
	cgroup_only "$mode" >&2
	case $metric in
	tput)
		addr=127.0.0.1
		serves_on_gateway "$mode" && addr=$gw
		# -1: one client, then exit; a fresh server per measurement.
		in_host "$mode" "${pin[@]}" iperf3 -s -1 -D -B "$addr" -p 5201 >/dev/null 2>&1 || true
		sleep 0.1
		in_ctr "$mode" "${pin[@]}" timeout $((tput_secs + 10)) iperf3 -c "$gw" -p 5201 -t "$tput_secs" -J 2>/dev/null |
			awk '/"sum_received"/ { f = 1 } f && /"bits_per_second"/ { sub(/.*:[ \t]*/, ""); printf "%.3f 0\n", $0 / 1e9; exit }' |
			grep . || echo "0 1"
		;;
	*)
		in_ctr "$mode" "${pin[@]}" timeout $((${secs%.*} + 10)) "$loadgen" client "$metric" "$gw:5000" \
			--seconds "$secs" --threads "$threads" || echo "0 1"
		;;
	esac
}

# ---- CLI edit times with 4096 entries present --------------------------------

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

time_ms() {  # CMD... -> milliseconds of one run
	local start end
	start=$(date +%s%N)
	"$@" >/dev/null 2>&1
	end=$(date +%s%N)
	awk -v ns=$((end - start)) 'BEGIN { printf "%.2f\n", ns / 1e6 }'
}

cli_times() {
	local n=20 i
	ip -n "$(host_ns dockhost-4096)" link add br1 type bridge
	ip -n "$(host_ns dockhost-4096)" link set br1 up
	{
		echo "| operation, 4096 entries present | median ms (of $n) |"
		echo "|---|---|"
		printf '| dockhost-bpf attach + detach (2nd bridge) | %s |\n' "$(for ((i = 0; i < 5; i++)); do
			time_ms dockhost dockhost-4096 attach br1
			dockhost dockhost-4096 detach br1 >/dev/null; done | median)"
		printf '| dockhost-bpf port add | %s |\n' "$(for ((i = 0; i < n; i++)); do
			time_ms dockhost dockhost-4096 port add 7777
			dockhost dockhost-4096 port del 7777 >/dev/null; done | median)"
		printf '| dockhost-bpf port del | %s |\n' "$(for ((i = 0; i < n; i++)); do
			dockhost dockhost-4096 port add 7777 >/dev/null
			time_ms dockhost dockhost-4096 port del 7777; done | median)"
		local rule=(PREROUTING -i br0 -p tcp --dport 7777 -j DNAT --to-destination 127.0.0.1:7777)
		printf '| iptables -t nat -A | %s |\n' "$(for ((i = 0; i < n; i++)); do
			time_ms in_host iptables-4096 iptables -t nat -A "${rule[@]}"
			in_host iptables-4096 iptables -t nat -D "${rule[@]}"; done | median)"
		printf '| iptables -t nat -D | %s |\n' "$(for ((i = 0; i < n; i++)); do
			in_host iptables-4096 iptables -t nat -A "${rule[@]}"
			time_ms in_host iptables-4096 iptables -t nat -D "${rule[@]}"; done | median)"
	}
}

# ---- our programs' own cost, from the kernel's BPF run-time statistics --------

cost_progs="ingress egress sk_lookup sendmsg4 connect4"  # our pins' prog_NAME

prog_stats() {  # MODE -> "ns runs" per program of cost_progs, so far
	local mode=$1 p out=""
	for p in $cost_progs; do
		# bpftool leaves out run_time_ns and run_cnt while they are 0.
		out+=" $(bpftool -j prog show pinned "$bpffs/$(ns_id "$mode")/prog_$p" 2>/dev/null |
			awk '{ t = c = 0 }
			     match($0, /"run_time_ns":[0-9]+/) { t = substr($0, RSTART + 14, RLENGTH - 14) }
			     match($0, /"run_cnt":[0-9]+/) { c = substr($0, RSTART + 10, RLENGTH - 10) }
			     { print t, c }' || echo 0 0)"
	done
	echo "$out"
}

program_costs() {
	local mode metric before after
	echo "| our programs, ns per run (kernel.bpf_stats_enabled) | $(echo $cost_progs | sed 's/ / | /g') |"
	echo "|---|$(for p in $cost_progs; do printf -- '---|'; done)"
	sysctl -qw kernel.bpf_stats_enabled=1
	for mode in dockhost dockhost-unmapped dockhost-allow64 dockhost-nosources socket socket-trace socket-unmapped \
		socket-allow64 socket-nosources; do
		has_mode "$mode" || continue
		for metric in crr rr udp; do
			before=$(prog_stats "$mode")
			measure "$mode" "$metric" >/dev/null
			after=$(prog_stats "$mode")
			# The egress program runs only in NAT mode, sk_lookup and
			# the cgroup programs only in socket mode, sendmsg4 only on
			# UDP replies from an unconnected socket: "-" where a
			# program never ran.
			echo "$before $after" | awk -v m="$mode $metric" '{
				n = NF / 4; row = "| " m " |"
				for (i = 1; i < 2 * n; i += 2) {
					t = $(i + 2 * n) - $i; c = $(i + 2 * n + 1) - $(i + 1)
					row = row " " (c ? sprintf("%.0f", t / c) : "-") " |"
				}
				print row }'
		done
	done
	sysctl -qw kernel.bpf_stats_enabled=0
}

# ---- run ----------------------------------------------------------------------

modes=(native native-aa clsact-noop tcx-noop tcx-noop-ingress dockhost dockhost-unmapped dockhost-4096
	dockhost-allow64 dockhost-nosources socket socket-trace socket-unmapped socket-4096 socket-allow64 socket-nosources iptables iptables-4096 docker-proxy socat native+ct dockhost+ct
	socket+ct native+fw socket+fw)
# MODES="native dockhost ..." runs a subset (native is always needed: the baseline).
[ -z "${MODES:-}" ] || read -r -a modes <<<"$MODES"
metrics=(crr rr udp tput)
mkdir -p "$out"
raw=$out/raw.csv
: >"$raw"

start=$(date +%s)
find_cgroup2
log "bench: ${#modes[@]} modes, $reps repetitions, ${secs}s per measurement (throughput ${tput_secs}s), CPU $cpu, $threads client threads"
for mode in "${modes[@]}"; do
	setup_mode "$mode"
done
sleep 0.5
log "bench: set up in $(($(date +%s) - start))s"

for ((rep = 1; rep <= reps; rep++)); do
	# Rotate the order so no mode always runs first (or right after another).
	shift_by=$(((rep - 1) % ${#modes[@]}))
	order=("${modes[@]:shift_by}" "${modes[@]:0:shift_by}")
	for metric in "${metrics[@]}"; do
		for mode in "${order[@]}"; do
			read -r value errors < <(measure "$mode" "$metric")
			echo "$rep,$mode,$metric,$value,$errors" >>"$raw"
		done
	done
	log "bench: repetition $rep/$reps done ($(($(date +%s) - start))s)"
done
has_mode() { [[ " ${modes[*]} " == *" $1 "* ]]; }
cli="(CLI edit times need the dockhost-4096 and iptables-4096 modes.)"
if has_mode dockhost-4096 && has_mode iptables-4096; then
	cli=$(cli_times)
fi
prog_cost="(Program run times need the dockhost, dockhost-unmapped, socket or socket-unmapped modes.)"
if has_mode dockhost || has_mode dockhost-unmapped || has_mode socket || has_mode socket-unmapped; then
	prog_cost=$(program_costs)
fi

# ---- report -------------------------------------------------------------------

# The baseline for ratios: native, or native+ct / native+fw for the conntrack rows.
baseline_of() { case $1 in *+ct) echo native+ct ;; *+fw) echo native+fw ;; *) echo native ;; esac; }

ratio_median() {  # MODE METRIC BASE: median over repetitions of MODE/BASE
	awk -F, -v m="$1" -v k="$2" -v b="$3" '
		$3 == k && $2 == m { v[$1] = $4 }
		$3 == k && $2 == b { base[$1] = $4 }
		END { for (r in v) if (base[r] > 0) print v[r] / base[r] }' "$raw" | median
}

value_median() {  # MODE METRIC
	awk -F, -v m="$1" -v k="$2" '$2 == m && $3 == k { print $4 }' "$raw" | median
}

errors_total() {  # MODE
	awk -F, -v m="$1" '$2 == m { e += $5 } END { print e + 0 }' "$raw"
}

# The goals of issue 4: reported, never enforced (this is a noisy VM).
target_row() {  # WHAT VALUE OP GOAL
	local met
	met=$(awk -v v="$2" -v g="$4" -v op="$3" 'BEGIN { print (op == ">=" ? v >= g : v <= g) ? "yes" : "no" }')
	printf '| %s | %s | %s %s | %s |\n' "$1" "$2" "$3" "$4" "$met"
}

# One target row per metric (CRR, RR, UDP RR), MODE against BASE, when the
# run has both. LABEL has %s where the metric's name goes.
metric_targets() {  # LABEL MODE BASE GOAL
	local m
	has_mode "$2" && has_mode "$3" || return 0
	for m in crr rr udp; do
		# shellcheck disable=SC2059  # the label is the format
		target_row "$(printf "$1" $m)" "$(ratio_median "$2" $m "$3")" ">=" "$4"
	done
}

targets() {
	echo "| target | measured | goal | met |"
	echo "|---|---|---|---|"
	has_mode dockhost || { socket_targets; return 0; }
	metric_targets "dockhost %s / native" dockhost native 0.97
	target_row "dockhost throughput / native" "$(ratio_median dockhost tput native)" ">=" 0.95
	if has_mode dockhost+ct && has_mode native+ct; then
		target_row "dockhost+ct crr / native+ct" "$(ratio_median dockhost+ct crr native+ct)" ">=" 0.97
	fi
	metric_targets "dockhost-4096 %s / dockhost" dockhost-4096 dockhost 0.98
	metric_targets "dockhost-allow64 %s / dockhost (an allow-list of 64)" dockhost-allow64 dockhost 0.98
	metric_targets "dockhost %s / dockhost-nosources (per-source counters)" dockhost dockhost-nosources 0.98
	metric_targets "unmatched traffic %s, attached / not" dockhost-unmapped native 0.99
	metric_targets "(floor: empty clsact program %s / native)" clsact-noop native 0.99
	socket_targets
}

# Issue 8's goals for socket mode. "Not slower than NAT mode" is a ratio
# socket/dockhost >= 1.00 within noise: 0.98, since two identical modes
# differ by up to 2% here (native-aa / native, shown below as the noise).
socket_targets() {
	has_mode socket || return 0
	metric_targets "socket %s / native" socket native 0.97
	target_row "socket throughput / native" "$(ratio_median socket tput native)" ">=" 0.95
	metric_targets "socket %s / dockhost (NAT mode)" socket dockhost 0.98
	# With conntrack: a NAT chain as on every Docker host, and the
	# firewall (where NAT mode's TCP fails).
	metric_targets "socket+ct %s / native+ct" socket+ct native+ct 0.97
	metric_targets "socket+fw %s / native+fw" socket+fw native+fw 0.97
	metric_targets "socket-4096 %s / socket" socket-4096 socket 0.98
	metric_targets "socket-trace %s / socket (a trace running)" socket-trace socket 0.98
	metric_targets "socket-allow64 %s / socket (an allow-list of 64)" socket-allow64 socket 0.98
	metric_targets "socket %s / socket-nosources (per-source counters)" socket socket-nosources 0.98
	metric_targets "unmatched traffic %s, socket mode attached / not" socket-unmapped native 0.99
	metric_targets "(NAT mode's floor: empty tcx programs, both hooks, %s / native)" tcx-noop native 0.99
	metric_targets "(socket mode's floor: empty tcx program, ingress only, %s / native)" tcx-noop-ingress native 0.99
	metric_targets "(noise: native-aa %s / native)" native-aa native 0.98
}

results=$out/results.md
chart_data=$out/ratios.dat
rm -f "$chart_data.tmp"
{
	echo "dockhost-bpf bench, $(date -u '+%Y-%m-%d %H:%M UTC'): kernel $(uname -r), $(nproc) CPUs" \
		"($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), everything pinned to CPU $cpu;" \
		"$reps repetitions x ${secs}s (throughput ${tput_secs}s), $threads client threads, 64-byte messages."
	echo
	echo "Each cell: median absolute value, then the median of per-repetition ratios to native" \
		"(to native+ct on +ct rows, native+fw on +fw rows) and to iptables. CRR, RR and UDP in transactions/s; throughput in Gbit/s."
	echo
	echo "| mode | CRR/s | RR/s | UDP RR/s | TCP Gbit/s | errors |"
	echo "|---|---|---|---|---|---|"
	for mode in "${modes[@]}"; do
		row="| $mode"
		ratios=""
		for metric in "${metrics[@]}"; do
			format='%.0f'
			[ "$metric" = tput ] && format='%.1f'
			rn=$(ratio_median "$mode" "$metric" "$(baseline_of "$mode")")
			row+=$(printf " | $format (%.2f, %.2f)" "$(value_median "$mode" "$metric")" "$rn" \
				"$(ratio_median "$mode" "$metric" iptables)")
			ratios+=" $rn"
		done
		echo "$row | $(errors_total "$mode") |"
		echo "$mode$ratios" >>"$chart_data.tmp"
	done
	echo
	echo "$cli"
	echo
	echo "$prog_cost"
	echo
	targets
} >"$results"
mv "$chart_data.tmp" "$chart_data"
cat "$results"

if command -v gnuplot >/dev/null; then
	gnuplot <<-GNUPLOT
		set terminal pngcairo size 1200,600 font ",10"
		set output "$out/ratios.png"
		set title "dockhost-bpf bench: ratio to native (higher is better), median of $reps repetitions"
		set style data histograms
		set style histogram clustered gap 1
		set style fill solid 0.8 border -1
		set yrange [0:1.3]
		set ytics 0.1
		set grid ytics
		set xtics rotate by -30
		set key top right
		plot "$chart_data" using 2:xtic(1) title "CRR", "" using 3 title "RR", "" using 4 title "UDP RR", "" using 5 title "TCP throughput", 1 notitle lc rgb "black"
	GNUPLOT
	log "bench: chart in $out/ratios.png"
fi
log "bench: results in $results, raw numbers in $raw ($(($(date +%s) - start))s in all)"
