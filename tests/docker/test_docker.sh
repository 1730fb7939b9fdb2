#!/usr/bin/env bash
# Real Docker: containers started with --add-host host.docker.internal:host-gateway
# reach a 127.0.0.1-only host service through dockhost-bpf, on the default
# bridge and on user-defined networks. This suite drives the host's dockerd
# (starting a private one if none runs) and so touches the root network
# namespace: it snapshots links, iptables and sysctls first, puts back
# everything it changed, and fails if the host does not read the same after.
# A private dockerd mounts below the suite's temporary directory (its data
# root bound on itself, overlays, netns files); the suite unmounts them,
# removes the directory and fails if anything of it is left.
# DH_DOCKER_TEST_CRASH=1 SIGKILLs the private dockerd with a container
# running before the teardown, leaving its mounts and shim behind: a test of
# that cleanup.
. "$(dirname "$0")/../lib.sh"
export DOCKER_HOST=unix:///var/run/docker.sock  # lib.sh hides Docker from the other suites
DH_SUITE=docker/test_docker

docker_bin=/usr/bin/docker  # Debian's client, matching Debian's daemon
image=dockhost-bpf-test:$$
label=dockhost-bpf-test
port_tcp=18088
port_udp=18089
port_secret=18090
state=""  # the temporary directory, made once the suite runs (below)
fw_comment=dockhost-bpf-test-$$  # marks the suite's iptables rules (no spaces: see host_leftovers)
started_dockerd=""

say() { printf '%s\n' "$*" >&2; }

# Skips the whole suite, saying why (finish() still puts the host back).
skip_all() {
	echo "SKIP $DH_SUITE: $*"
	exit 0
}

host_snapshot() {
	{
		ip -br link | awk '{ print $1 }' | sort
		iptables-save 2>/dev/null | grep -v -E '^#|^:' | sed 's/\[[0-9:]*\]//'
		nft list tables 2>/dev/null
		sysctl -a 2>/dev/null | grep -E '^net\.ipv4\.(ip_forward|conf\.[^.]+\.route_localnet)|bridge-nf-call' | sort
		# The cgroup v2 root's attachments, but dockhost-bpf's sendmsg
		# and connect programs: other checkouts' tests attach and detach
		# theirs at any time. The suite's own are checked by id (host_leftovers).
		cgroup_root_attachments | awk '$NF !~ /^dh_(sendmsg|connect)/ { $1 = "cgroup root:"; print }'
	}
}

# The cgroup v2 root's BPF attachments, "ID TYPE [FLAGS] NAME" lines. A
# cgroup2 hierarchy is mounted below the suite's directory for the call
# and unmounted at once (this host may run cgroup v1 only).
cgroup_root_attachments() {
	local dir
	dir=$(mktemp -d "$state/cgroup2-XXXXXX")
	if mount -t cgroup2 none "$dir"; then
		bpftool cgroup show "$dir" 2>/dev/null | awk 'NR > 1'
		umount "$dir"
	else
		echo "cannot mount cgroup2"
	fi
	rmdir "$dir"
}

setup_docker() {
	if ! command -v dockerd >/dev/null || [ ! -x "$docker_bin" ]; then
		"$DH_ROOT/scripts/install-deps.sh" docker >&2 || skip_all "cannot install docker.io"
	fi
	[ -x /bin/busybox ] && [ -x /bin/bash-static ] || "$DH_ROOT/scripts/install-deps.sh" docker >&2
	host_snapshot >"$state/before"
	if ! "$docker_bin" info >/dev/null 2>&1; then
		# A private daemon: its own data root and run dir, our socket.
		dockerd --data-root "$state/data" --exec-root "$state/exec" --pidfile "$state/dockerd.pid" \
			-H "$DOCKER_HOST" >"$state/dockerd.log" 2>&1 &
		started_dockerd=$!
		local i
		for i in $(seq 100); do "$docker_bin" info >/dev/null 2>&1 && break; sleep 0.2; done
		"$docker_bin" info >/dev/null 2>&1 ||
			skip_all "dockerd does not start here: $(tail -1 "$state/dockerd.log")"
	fi
	# The image: busybox and bash (for /dev/udp: busybox nc has no UDP here).
	mkdir -p "$state/rootfs/bin"
	cp /bin/busybox "$state/rootfs/bin/busybox"
	cp /bin/bash-static "$state/rootfs/bin/bash"
	local tool
	for tool in sh nc ip sleep cat grep echo head timeout sed; do ln -s busybox "$state/rootfs/bin/$tool"; done
	tar -C "$state/rootfs" -c . | "$docker_bin" import - "$image" >/dev/null
	# User-defined networks for every test: Docker's br-<id> and a custom
	# bridge name.
	"$docker_bin" network create --label "$label" dhtest-default >/dev/null
	"$docker_bin" network create --label "$label" -o com.docker.network.bridge.name=dhtest-custom \
		dhtest-custom >/dev/null
}

# A process that has not exited (a zombie has).
alive() {  # PID
	local stat
	stat=$(ps -o stat= -p "$1" 2>/dev/null)
	[ -n "$stat" ] && [[ $stat != Z* ]]
}

# What a private dockerd left running: every process whose command line
# names the state directory (containerd, its shims) and their descendants
# (the containers). The state path reaches awk through the environment, so
# that awk itself does not match.
daemon_leftovers() {
	[ -n "$state" ] || return 0  # an empty path would match every process
	ps -e -o pid=,ppid=,args= | STATE="$state/" SELF=$$ awk '
		{ pid[NR] = $1; ppid[NR] = $2; if ($1 != ENVIRON["SELF"] && index($0, ENVIRON["STATE"])) mark[$1] = 1 }
		END {
			do {
				more = 0
				for (i in pid)
					if (!(pid[i] in mark) && (ppid[i] in mark)) { mark[pid[i]] = 1; more = 1 }
			} while (more)
			for (p in mark) print p
		}'
}

# Stops the private dockerd (SIGTERM, SIGKILL after 30 s) and whatever it
# left running, so that nothing holds a mount below $state any more.
stop_dockerd() {
	local i pids
	kill -TERM "$started_dockerd" 2>/dev/null
	for i in $(seq 150); do alive "$started_dockerd" || break; sleep 0.2; done
	alive "$started_dockerd" && say "dockerd ignored SIGTERM for 30 s: killing it" &&
		kill -KILL "$started_dockerd"
	wait "$started_dockerd"
	for i in $(seq 50); do
		pids=$(daemon_leftovers)
		[ -z "$pids" ] && return 0
		# shellcheck disable=SC2086
		kill -KILL $pids 2>/dev/null
		sleep 0.1
	done
	say "still running after the daemon: $pids"
}

# Mount points at or below $state, deepest first.
mounts_under_state() {
	[ -n "$state" ] || return 0  # an empty path would match every mount
	awk -v dir="$state" '$5 == dir || index($5, dir "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

# Unmounts everything below $state: what dockerd mounted and, after a crash,
# never unmounted (the data root bound on itself, a container's overlay and
# netns file). Deepest first; lazily if something still holds one.
unmount_state() {
	local _ m mounts
	for _ in 1 2 3 4 5; do
		mapfile -t mounts < <(mounts_under_state)
		[ ${#mounts[@]} -eq 0 ] && return 0
		for m in "${mounts[@]}"; do
			umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || say "cannot unmount $m"
		done
	done
}

teardown_docker() {
	set +e
	"$docker_bin" ps -aq --filter "label=$label" | xargs -r "$docker_bin" rm -f >/dev/null
	"$docker_bin" network ls -q --filter "label=$label" | xargs -r "$docker_bin" network rm >/dev/null
	if [ -n "${DH_DOCKER_TEST_CRASH:-}" ] && [ -n "$started_dockerd" ]; then
		# No network: its bridge would outlive the daemon.
		"$docker_bin" run -d --label "$label" --network none "$image" sleep 600 >/dev/null
		kill -KILL "$started_dockerd"
	fi
	"$docker_bin" rmi "$image" >/dev/null 2>&1
	if [ -n "$started_dockerd" ]; then
		stop_dockerd
		# dockerd leaves docker0, its iptables chains and ip_forward behind.
		grep -qx docker0 "$state/before" || ip link del docker0 2>/dev/null
		local table
		for table in filter nat; do
			if ! grep -q "^\*$table" "$state/before"; then
				nft delete table ip "$table" 2>/dev/null
			fi
		done
		sysctl -qw "net.ipv4.ip_forward=$(sed -n 's/^net.ipv4.ip_forward = //p' "$state/before")"
	fi
	host_snapshot >"$state/after"
}

# A container on NETWORK runs a shell snippet; prints what it printed.
in_container() {  # NETWORK [docker run options]... -- SNIPPET
	local network=$1 opts=()
	shift
	while [ "$1" != -- ]; do opts+=("$1"); shift; done
	shift
	timeout 20 "$docker_bin" run --rm --label "$label" --network "$network" --dns 127.0.0.1 \
		--add-host host.docker.internal:host-gateway "${opts[@]}" "$image" sh -c "$1" 2>>"$state/docker.err"
}

tcp_from() {  # NETWORK PORT
	# nc's -w bounds the connect only: a connection whose segments a
	# firewall drops would wait for the server for ever, and timeout(1)
	# around docker run cannot end a container's PID 1.
	in_container "$1" -- "echo | timeout 5 nc -w 2 host.docker.internal $2"
}

udp_from() {  # NETWORK PORT
	# head, not bash's read: read takes one byte per recv(), which on a
	# datagram socket throws the rest of the datagram away.
	in_container "$1" -- "bash -c 'exec 3<>/dev/udp/host.docker.internal/$2; echo ping >&3; timeout 2 head -n 1 <&3'"
}

# dockhost-bpf against the host's bridges, with the suite's own pin dir.
dhd() { "$DH_BIN" --pin-dir "$PIN" "$@"; }

# Services bound to 127.0.0.1 only, in the root namespace (loopback only),
# as background jobs of the test (its cleanup stops them).
# (read first: see serve_tcp in lib.sh)
start_services() {
	socat "TCP4-LISTEN:$port_tcp,bind=127.0.0.1,reuseaddr,fork" SYSTEM:"read -r _; echo tcp-pong" &
	socat "UDP4-RECVFROM:$port_udp,bind=127.0.0.1,fork" SYSTEM:"read -r _; echo udp-pong" &
	socat "TCP4-LISTEN:$port_secret,bind=127.0.0.1,reuseaddr,fork" SYSTEM:"read -r _; echo secret" &
	local i
	for i in $(seq 50); do
		[ "$(ss -H -ln "sport = :$port_tcp or sport = :$port_udp or sport = :$port_secret" | wc -l)" -ge 3 ] && return 0
		sleep 0.05
	done
	fail "the services do not listen"
}

# The bridge device of a network the suite uses.
bridge_of() {  # NETWORK
	case $1 in
	bridge) echo docker0 ;;
	dhtest-custom) echo dhtest-custom ;;
	*) echo "br-$("$docker_bin" network inspect -f '{{.Id}}' "$1" | cut -c1-12)" ;;
	esac
}

# A bridge's mode as status --json reports it.
mode_of() {  # BRIDGE
	dhd --json status | tr -d ' \n' | grep -o "\"bridge\":\"$1\"[^{}]*\"mode\":\"[a-z]*\"" |
		sed 's/.*"mode":"\([a-z]*\)"/\1/'
}

counter() {  # NAME: one of stats --json's counters (all bridges)
	dhd --json stats | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"
}

# A NET_ADMIN container on NETWORK routes 127.0.0.1 via its gateway and
# asks for the unmapped service (the CVE): the route must really be there,
# the packets must meet the guard, and nothing may answer.
attack_from() {  # NETWORK
	local out gw dropped
	dropped=$(counter dropped_loopback_dst)
	out=$(in_container "$1" --cap-add NET_ADMIN --sysctl net.ipv4.conf.all.route_localnet=1 \
		--sysctl net.ipv4.conf.eth0.route_localnet=1 -- "
		gw=\$(ip route | sed -n 's/^default via \([0-9.]*\).*/\1/p')
		echo gateway \$gw
		ip route del 127.0.0.0/8 dev lo table local
		ip route del local 127.0.0.1 dev lo table local
		ip route add 127.0.0.1/32 via \$gw dev eth0
		ip route get 127.0.0.1
		echo | nc -w 2 127.0.0.1 $port_secret") || true
	gw=$(printf '%s\n' "$out" | sed -n 's/^gateway \([0-9.]*\)$/\1/p')
	[ -n "$gw" ] || fail "$1: the attacker found no gateway: $out"
	expect_contains "$out" "127.0.0.1 via $gw dev eth0" "$1: the attacker's route"
	expect_not_contains "$out" secret "$1: 127.0.0.1 routed via the gateway"
	[ "$(counter dropped_loopback_dst)" -gt "$dropped" ] ||
		fail "$1: the guard saw no packet: $(dhd stats)"
}

# Every network in NAT mode: Docker's default bridge (docker0), a network
# with Docker's br-<id> and one with a custom bridge name, each attached by
# its network name. host.docker.internal is host-gateway, docker0's
# address, on every network.
test_mode_nat() {
	local mode=nat net br
	start_services
	expect_not_contains "$(tcp_from bridge $port_tcp)" tcp-pong "default bridge before attach"
	for net in bridge dhtest-default dhtest-custom; do
		dhd attach "$net" --mode "$mode" >/dev/null
	done
	dhd port add $port_tcp
	dhd port add $port_udp/udp
	for net in bridge dhtest-default dhtest-custom; do
		br=$(bridge_of "$net")
		expect_eq "$(mode_of "$br")" "$mode" "$net ($br): status"
		expect_eq "$(sysctl -n "net.ipv4.conf.$br.route_localnet")" 1 "$net ($br): route_localnet"
		expect_eq "$(tcp_from "$net" $port_tcp)" tcp-pong "$net ($br), $mode mode: TCP"
		expect_eq "$(udp_from "$net" $port_udp)" udp-pong "$net ($br), $mode mode: UDP"
		expect_not_contains "$(tcp_from "$net" $port_secret)" secret "$net ($br), $mode mode: an unmapped port"
	done
	attack_from bridge
	attack_from dhtest-default
	for net in dhtest-custom dhtest-default bridge; do
		dhd detach "$net" >/dev/null
	done
	[ ! -e "$PIN" ] || fail "pins left: $(ls "$PIN")"
}

# Docker's MASQUERADE rules make a NAT chain on every Docker host, and
# with one socket mode cannot work (user/netfilter.c says why): attach
# refuses it, naming the reason, and changes nothing, on every network.
test_mode_socket_refused_on_a_docker_host() {
	local net br
	start_services
	for net in bridge dhtest-default dhtest-custom; do
		br=$(bridge_of "$net")
		expect_exit 1 dhd attach "$net" --mode socket --port $port_tcp
		expect_contains "$OUT" "has an IPv4 NAT chain" "$net ($br): socket mode refused"
		expect_eq "$(sysctl -n "net.ipv4.conf.$br.route_localnet")" 0 "$net ($br): route_localnet"
	done
	[ ! -e "$PIN" ] || fail "pins left: $(ls "$PIN")"
}

# A test that failed leaves no bridge attached (tcx programs without links
# outlive their pins) and no firewall rule: lib.sh's cleanup, after ours.
eval "lib_$(declare -f cleanup)"
cleanup() {
	local net
	set +e
	if [ -e "${PIN:-/nonexistent}" ]; then
		for net in bridge dhtest-default dhtest-custom; do dhd detach "$net" >/dev/null 2>&1; done
	fi
	[ -n "$state" ] && firewall_off
	lib_cleanup
}

# The INVALID-drop rule of a firewall (ufw's and firewalld's default), as
# narrow as it can be: packets in from BRIDGE to the suite's TCP or UDP
# service, marked with the suite's comment. OP is -I (first in INPUT) or -D.
invalid_drop() {  # OP BRIDGE tcp|udp
	local port=$port_tcp
	[ "$3" = udp ] && port=$port_udp
	iptables "$1" INPUT -i "$2" -p "$3" --dport "$port" -m conntrack --ctstate INVALID \
		-m comment --comment "$fw_comment" -j DROP
}

# How many packets the TCP rule on BRIDGE dropped.
invalid_drops() {  # BRIDGE
	iptables -L INPUT -v -n -x | awk -v br=" $1 " -v c="/* $fw_comment */" \
		'index($0, c) && / tcp / && index($0, br) { print $1 }'
}

# Takes the suite's rules out and puts bridge-nf-call-iptables back: from
# the test's EXIT trap, whatever happened, and from finish() in case the
# test never got there.
firewall_off() {
	local br proto
	if [ -e "$state/fw_bridges" ]; then
		while read -r br; do
			for proto in tcp udp; do
				while invalid_drop -D "$br" $proto 2>/dev/null; do :; done
			done
		done <"$state/fw_bridges"
		rm -f "$state/fw_bridges"
	fi
	if [ -e "$state/bridge_nf" ]; then
		sysctl -qw "net.bridge.bridge-nf-call-iptables=$(cat "$state/bridge_nf")"
		rm -f "$state/bridge_nf"
	fi
}

# Docker's br_netfilter (bridge-nf-call-iptables=1) with an INVALID-drop
# rule in INPUT: conntrack sees a NAT-mode flow as container -> gateway:P
# on the bridge, before the rewrite, and its reply from 127.0.0.1:P, so the
# container's ACK is INVALID and dropped. NAT mode's TCP fails (asserted:
# it is documented); UDP works. Socket mode, which would not have this
# problem, cannot run on a Docker host (its NAT chain): refused.
test_firewall_invalid_drop() {
	local net br
	[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] || skip "no br_netfilter loaded"
	start_services
	sysctl -n net.bridge.bridge-nf-call-iptables >"$state/bridge_nf"
	sysctl -qw net.bridge.bridge-nf-call-iptables=1
	for net in bridge dhtest-default; do
		br=$(bridge_of "$net")
		dhd attach "$net" --mode nat --port $port_tcp --port $port_udp/udp >/dev/null
		expect_eq "$(tcp_from "$net" $port_tcp)" tcp-pong "$net ($br), NAT mode, no rule yet (control)"
		echo "$br" >>"$state/fw_bridges"
		invalid_drop -I "$br" tcp && invalid_drop -I "$br" udp || fail "cannot add the INVALID-drop rules on $br"
		expect_not_contains "$(tcp_from "$net" $port_tcp)" tcp-pong \
			"$net ($br), NAT mode: TCP through the INVALID drop (the known failure)"
		[ "$(invalid_drops "$br")" -ge 1 ] || fail "$net ($br): the INVALID rule never matched"
		expect_eq "$(udp_from "$net" $port_udp)" udp-pong "$net ($br), NAT mode: UDP through the INVALID drop"
		expect_exit 1 dhd attach "$net" --mode socket
		expect_contains "$OUT" "NAT chain" "$net ($br): no conversion to socket mode on a Docker host"
		dhd detach "$net" >/dev/null
	done
	firewall_off
	[ ! -e "$PIN" ] || fail "pins left: $(ls "$PIN")"
}

# watch picks up a network created after it started, and forgets it when
# it is removed.
test_watch() {
	local watch i
	start_services
	"$DH_BIN" --pin-dir "$PIN" watch --match 'dhtest-*' --port $port_tcp >"$state/watch.log" 2>&1 &
	watch=$!
	for i in $(seq 50); do grep -q following "$state/watch.log" && break; sleep 0.1; done
	"$docker_bin" network create --label "$label" -o com.docker.network.bridge.name=dhtest-late \
		dhtest-late >/dev/null
	for i in $(seq 50); do dhd --json status | grep -q '"bridge":"dhtest-late"' && break; sleep 0.1; done
	expect_eq "$(tcp_from dhtest-late $port_tcp)" tcp-pong "a network created after watch started"
	"$docker_bin" network rm dhtest-late >/dev/null
	for i in $(seq 50); do dhd --json status | grep -q '"bridge":"dhtest-late"' || break; sleep 0.1; done
	expect_not_contains "$(dhd --json status)" dhtest-late "watch forgot the removed network"
	kill -TERM "$watch"
	wait "$watch" || fail "watch exited $?: $(cat "$state/watch.log")"
	dhd detach dhtest-custom >/dev/null  # watch's: its bridge matches dhtest-*
	[ ! -e "$PIN" ] || fail "pins left: $(ls "$PIN")"
}

# What the tests changed on the host and did not put back, which the
# snapshot cannot show: an iptables rule in a private dockerd's table goes
# with the table. Prints each one and removes it.
host_leftovers() {
	local line
	firewall_off
	iptables-save 2>/dev/null | grep -F -e "--comment $fw_comment" | while read -r line; do
		echo "iptables rule: $line"
		# shellcheck disable=SC2086  # the rule's words, as iptables-save wrote them
		iptables ${line/#-A /-D }
	done
}

# Puts the host back and checks it reads as before, whatever happened.
finish() {
	trap - EXIT INT TERM
	local leftovers
	leftovers=$(host_leftovers)
	teardown_docker
	if ! diff -u "$state/before" "$state/after" >"$state/diff" || [ -n "$leftovers" ]; then
		echo "FAIL $DH_SUITE/host_left_as_found"
		sed 's/^/    /' "$state/diff"
		[ -z "$leftovers" ] || printf '%s\n' "$leftovers" | sed 's/^/    left: /'
	else
		echo "PASS $DH_SUITE/host_left_as_found"
	fi
	# The state directory last: nothing may hold it any more. Never through
	# a mount that would not go: the check below reports it instead.
	unmount_state
	rm -rf --one-file-system "$state"
	local left
	left=$(
		[ "$(compgen -G "${TMPDIR:-/tmp}/dh-docker-*" || true)" = "$tmp_before" ] || echo "directories: $(ls -d "${TMPDIR:-/tmp}"/dh-docker-*)"
		mounts_under_state | sed 's/^/mount: /'
		[ -z "$started_dockerd" ] || daemon_leftovers | xargs -r ps -o pid=,args= -p | sed 's/^ */process: /'
	)
	if [ -n "$left" ]; then
		echo "FAIL $DH_SUITE/left_nothing_behind"
		printf '%s\n' "$left" | sed 's/^/    /'
	else
		echo "PASS $DH_SUITE/left_nothing_behind"
	fi
}

[ "$(id -u)" -eq 0 ] || skip_all "needs root"
tmp_before=$(compgen -G "${TMPDIR:-/tmp}/dh-docker-*" || true)  # what earlier runs left, not ours to judge
state=$(mktemp -d "${TMPDIR:-/tmp}"/dh-docker-XXXXXX)
trap finish EXIT INT TERM
setup_docker
# One test, run like the others (own bpffs pin dir, cleanup on exit), but
# with no namespaces of its own: Docker's bridges live in the root one.
setup_topology() { DH_NETNS=(); }
run_tests
