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
# Docker turns IPv6 forwarding on when it makes an IPv6 network (the
# IPv6 test's), and leaves it on.
v6_forwarding='net\.ipv6\.conf\.(all|default)\.forwarding'
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
		sysctl -a 2>/dev/null | grep -E "^net\.ipv4\.(ip_forward|conf\.[^.]+\.route_localnet)|^$v6_forwarding|bridge-nf-call" | sort
		ip6tables-save 2>/dev/null | grep -v -E '^#|^:' | sed 's/\[[0-9:]*\]//'
		# Socket mode's sk_lookup link on this (the root) netns.
		bpftool link show 2>/dev/null | grep -E "netns_ino $(stat -L -c %i /proc/self/ns/net) .*sk_lookup" |
			sed 's/^[[:space:]]*/sk_lookup link: /'
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
	# Any daemon's: the IPv6 network was ours. "all" first: writing it
	# sets "default" (and every device) too.
	local key
	for key in net.ipv6.conf.all.forwarding net.ipv6.conf.default.forwarding; do
		grep -q "^$key = " "$state/before" &&
			sysctl -qw "$key=$(sed -n "s/^$key = //p" "$state/before")"
	done
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

# HOST is host.docker.internal unless named; OPTIONS go to docker run (an
# --add-host for HOST, say).
tcp_from() {  # NETWORK PORT [HOST [OPTIONS]...]
	local net=$1 port=$2 host=${3:-host.docker.internal}
	shift $(($# < 3 ? $# : 3))
	# nc's -w bounds the connect only: a connection whose segments a
	# firewall drops would wait for the server for ever, and timeout(1)
	# around docker run cannot end a container's PID 1.
	in_container "$net" "$@" -- "echo | timeout 5 nc -w 2 $host $port"
}

udp_from() {  # NETWORK PORT [HOST [OPTIONS]...]
	local net=$1 port=$2 host=${3:-host.docker.internal}
	shift $(($# < 3 ? $# : 3))
	# head, not bash's read: read takes one byte per recv(), which on a
	# datagram socket throws the rest of the datagram away.
	in_container "$net" "$@" -- "bash -c 'exec 3<>/dev/udp/$host/$port; echo ping >&3; timeout 2 head -n 1 <&3'"
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
	wait_services 3
}

# The same on [::1], beside them on the same ports.
start_services6() {
	socat "TCP6-LISTEN:$port_tcp,bind=[::1],reuseaddr,fork" SYSTEM:"read -r _; echo tcp6-pong" &
	socat "UDP6-RECVFROM:$port_udp,bind=[::1],fork" SYSTEM:"read -r _; echo udp6-pong" &
	socat "TCP6-LISTEN:$port_secret,bind=[::1],reuseaddr,fork" SYSTEM:"read -r _; echo secret" &
	wait_services 6
}

wait_services() {  # COUNT: how many sockets listen on the suite's ports
	local i
	for i in $(seq 50); do
		[ "$(ss -H -ltun "sport = :$port_tcp or sport = :$port_udp or sport = :$port_secret" | wc -l)" -ge "$1" ] &&
			return 0
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
	dhd --json stats | sed -n "s/.*\"$1\": *\([0-9]*\).*/\1/p"
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

# The networks every mode is tested on: Docker's default bridge (docker0),
# a network with Docker's br-<id> and one with a custom bridge name.
networks="bridge dhtest-default dhtest-custom"

# What a MODE does to the bridge's route_localnet, and the counter that
# counts its deliveries (the other mode's stays 0).
route_localnet_in() {  # MODE
	case $1 in nat) echo 1 ;; *) echo 0 ;; esac
}

delivered_in() {  # MODE
	case $1 in nat) echo redirected ;; *) echo assigned ;; esac
}

expect_route_localnet() {  # BRIDGE WANT WHAT
	expect_eq "$(sysctl -n "net.ipv4.conf.$1.route_localnet")" "$2" "$3: route_localnet"
}

# The ids of socket mode's cgroup programs in the pin set (sendmsg4/6,
# connect4/6: lib.sh's DH_CGROUP_HOOKS).
cgroup_ids() {
	local hook
	for hook in $DH_CGROUP_HOOKS; do
		bpftool prog show pinned "$PIN/prog_$hook" 2>/dev/null | sed -n 's/^\([0-9]*\): .*/\1/p'
	done
}

# None of IDS is on the host's cgroup v2 root any more (host_snapshot
# leaves dockhost-bpf's programs out: other checkouts' come and go).
expect_off_cgroup_root() {  # WHAT IDS...
	local what=$1 attached id
	shift
	attached=$(cgroup_root_attachments | awk '{ print $1 }')
	for id in "$@"; do
		! grep -qx "$id" <<<"$attached" || fail "$what: cgroup program $id still on the cgroup root"
	done
}

# Every network in each mode, each attached by its network name: socket
# mode by a plain attach (the default, with Docker's NAT chain in the
# netns), NAT mode by --mode nat. host.docker.internal is host-gateway,
# docker0's address, on every network. Each mode delivers through its own
# counter and never the other's, keeps route_localnet as it should, closes
# unmapped ports and stops the attack; detach puts everything back.
test_modes() {
	local mode net br delivered other before ids
	local -a how
	start_services
	expect_not_contains "$(tcp_from bridge $port_tcp)" tcp-pong "default bridge before attach"
	for mode in socket nat; do
		how=(--mode "$mode")
		[ "$mode" = socket ] && how=()  # the default
		for net in $networks; do
			dhd attach "$net" "${how[@]}" >/dev/null
		done
		dhd port add $port_tcp
		dhd port add $port_udp/udp
		delivered=$(delivered_in $mode)
		for net in $networks; do
			br=$(bridge_of "$net")
			expect_eq "$(mode_of "$br")" "$mode" "$net ($br): status"
			before=$(counter "$delivered")
			expect_eq "$(tcp_from "$net" $port_tcp)" tcp-pong "$net ($br), $mode mode: TCP"
			expect_eq "$(udp_from "$net" $port_udp)" udp-pong "$net ($br), $mode mode: UDP"
			[ "$(counter "$delivered")" -ge $((before + 2)) ] ||
				fail "$net ($br), $mode mode: $delivered counted no TCP and UDP: $(dhd stats)"
			expect_not_contains "$(tcp_from "$net" $port_secret)" secret "$net ($br), $mode mode: an unmapped port"
			expect_route_localnet "$br" "$(route_localnet_in $mode)" "$net ($br), $mode mode"
		done
		other=$(delivered_in "$([ "$mode" = nat ] && echo socket || echo nat)")
		expect_eq "$(counter "$other")" 0 "$mode mode: $other, the other mode's counter"
		attack_from bridge
		attack_from dhtest-default
		mapfile -t ids < <(cgroup_ids)
		[ "$mode" = nat ] || [ ${#ids[@]} -gt 0 ] || fail "socket mode: no cgroup programs pinned"
		for net in dhtest-custom dhtest-default bridge; do
			dhd detach "$net" >/dev/null
			expect_route_localnet "$(bridge_of "$net")" 0 "$net, $mode mode, after detach"
		done
		[ ! -e "$PIN" ] || fail "$mode mode: pins left: $(ls "$PIN")"
		expect_off_cgroup_root "$mode mode, after detach" "${ids[@]}"
	done
}

# A test that failed leaves no bridge attached (tcx programs without links
# outlive their pins) and no firewall rule: lib.sh's cleanup, after ours.
eval "lib_$(declare -f cleanup)"
cleanup() {
	local net
	set +e
	if [ -e "${PIN:-/nonexistent}" ]; then
		for net in $networks dhtest-v6 dhtest-follow; do dhd detach "$net" >/dev/null 2>&1; done
	fi
	[ -n "$state" ] && firewall_off
	lib_cleanup
}

# The INVALID-drop rule of a firewall (ufw's and firewalld's default), as
# narrow as it can be: packets in from BRIDGE to the suite's TCP or UDP
# service, marked with the suite's comment. OP is -I (first in INPUT) or -D;
# TOOL iptables (the default) or ip6tables.
invalid_drop() {  # OP BRIDGE tcp|udp [TOOL]
	local port=$port_tcp
	[ "$3" = udp ] && port=$port_udp
	"${4:-iptables}" "$1" INPUT -i "$2" -p "$3" --dport "$port" -m conntrack --ctstate INVALID \
		-m comment --comment "$fw_comment" -j DROP
}

# How many packets the TCP rule on BRIDGE dropped.
invalid_drops() {  # BRIDGE [TOOL]
	"${2:-iptables}" -L INPUT -v -n -x | awk -v br=" $1 " -v c="/* $fw_comment */" \
		'index($0, c) && / tcp / && index($0, br) { print $1 }'
}

# Takes the suite's rules out, and the ip6 filter table if ip6tables made
# it, and puts bridge-nf-call-iptables and -ip6tables back: from the test's
# EXIT trap, whatever happened, and from finish() in case the test never
# got there.
firewall_off() {
	local br proto tool
	if [ -e "$state/fw_bridges" ]; then
		while read -r br; do
			for tool in iptables ip6tables; do
				for proto in tcp udp; do
					while invalid_drop -D "$br" $proto $tool 2>/dev/null; do :; done
				done
			done
		done <"$state/fw_bridges"
		rm -f "$state/fw_bridges"
	fi
	if nft list table ip6 filter >/dev/null 2>&1 && ! grep -qx 'table ip6 filter' "$state/before" &&
		! ip6tables-save 2>/dev/null | grep -q '^-A'; then
		nft delete table ip6 filter
	fi
	for tool in iptables ip6tables; do
		if [ -e "$state/bridge_nf.$tool" ]; then
			sysctl -qw "net.bridge.bridge-nf-call-$tool=$(cat "$state/bridge_nf.$tool")"
			rm -f "$state/bridge_nf.$tool"
		fi
	done
}

# br_netfilter on for TOOL's family (as Docker leaves it), put back by
# firewall_off.
bridge_nf_on() {  # iptables|ip6tables
	[ -e "/proc/sys/net/bridge/bridge-nf-call-$1" ] || skip "no br_netfilter loaded"
	sysctl -n "net.bridge.bridge-nf-call-$1" >"$state/bridge_nf.$1"
	sysctl -qw "net.bridge.bridge-nf-call-$1=1"
}

# Docker's br_netfilter (bridge-nf-call-iptables=1) with an INVALID-drop
# rule in INPUT (ufw's and firewalld's default), on every network. Socket
# mode leaves the packet alone: conntrack sees container -> gateway:P both
# ways, TCP and UDP work, the rule never matches, route_localnet stays 0.
# NAT mode: conntrack records the flow on the bridge before the rewrite,
# the reply comes from 127.0.0.1:P, the container's ACK is INVALID and
# dropped: TCP fails every time (asserted: the documented known failure),
# UDP works. Each network is attached in socket mode, then converted to
# NAT mode in place; once the rules are gone NAT-mode TCP works again (the
# control: the rule made the failure).
test_firewall_invalid_drop() {
	local net br mode drops
	start_services
	bridge_nf_on iptables
	for net in $networks; do
		br=$(bridge_of "$net")
		echo "$br" >>"$state/fw_bridges"
		invalid_drop -I "$br" tcp && invalid_drop -I "$br" udp || fail "cannot add the INVALID-drop rules on $br"
		for mode in socket nat; do
			dhd attach "$net" --mode "$mode" --port $port_tcp --port $port_udp/udp >/dev/null
			expect_eq "$(mode_of "$br")" "$mode" "$net ($br): status"
			drops=$(invalid_drops "$br")
			if [ "$mode" = socket ]; then
				expect_eq "$(tcp_from "$net" $port_tcp)" tcp-pong \
					"$net ($br), socket mode: TCP through the INVALID drop"
				expect_eq "$(invalid_drops "$br")" "$drops" "$net ($br), socket mode: INVALID packets dropped"
			else
				expect_not_contains "$(tcp_from "$net" $port_tcp)" tcp-pong \
					"$net ($br), NAT mode: TCP through the INVALID drop (the known failure)"
				[ "$(invalid_drops "$br")" -gt "$drops" ] ||
					fail "$net ($br), NAT mode: the INVALID rule never matched"
			fi
			expect_eq "$(udp_from "$net" $port_udp)" udp-pong "$net ($br), $mode mode: UDP through the INVALID drop"
			expect_route_localnet "$br" "$(route_localnet_in $mode)" "$net ($br), $mode mode"
		done
		invalid_drop -D "$br" tcp && invalid_drop -D "$br" udp || fail "cannot remove the INVALID-drop rules on $br"
		expect_eq "$(tcp_from "$net" $port_tcp)" tcp-pong "$net ($br), NAT mode, the rules gone (control)"
		dhd detach "$net" >/dev/null
		expect_route_localnet "$br" 0 "$net ($br), after detach"
	done
	firewall_off
	[ ! -e "$PIN" ] || fail "pins left: $(ls "$PIN")"
}

# IPv6: a network made with --ipv6 and a unique-local subnet (Docker 20.10
# needs nothing in daemon.json for a user-defined network), services on the
# host's [::1] beside the 127.0.0.1 ones, on the same ports, and one mapping
# for both families. Docker's host-gateway is a single address (docker0's
# IPv4, or daemon.json's host-gateway-ip; host-gateway-ips, for both
# families, is Docker 25+), so the container names the host over IPv6 by
# the network's IPv6 gateway, the bridge's address, through an --add-host
# of its own. Socket mode (the default): TCP and UDP reach [::1] (the
# replies tell the services apart), the UDP reply comes from the gateway
# (sendmsg6), route_localnet stays 0, IPv4 works beside it; then all of it
# again through br_netfilter and an ip6tables INVALID drop.
test_ipv6() {
	local net=dhtest-v6 subnet=fd42:d0c:6::/64 gw6=fd42:d0c:6::1 br before sourced ids i
	local -a host6=(host6.docker.internal --add-host "host6.docker.internal:$gw6")
	start_services
	start_services6
	"$docker_bin" network create --label "$label" --ipv6 --subnet "$subnet" "$net" >"$state/v6net" 2>&1 ||
		skip "docker network create --ipv6: $(cat "$state/v6net")"
	br=$(bridge_of "$net")
	# The gateway's address is tentative (DAD) for a second or two once
	# the bridge's first port comes up, and takes no packets until then:
	# a container keeps the bridge up, and the test waits for DAD to end.
	"$docker_bin" run -d --label "$label" --network "$net" "$image" sleep 600 >"$state/v6keeper"
	for i in $(seq 100); do
		[ -n "$(ip -6 addr show dev "$br" to "$gw6/128" -tentative)" ] && break
		sleep 0.1
	done
	[ -n "$(ip -6 addr show dev "$br" to "$gw6/128" -tentative)" ] ||
		fail "$net ($br): $gw6 still tentative: $(ip -6 addr show dev "$br")"
	dhd attach "$net" --port $port_tcp --port $port_udp/udp >/dev/null
	expect_eq "$(mode_of "$br")" socket "$net ($br): status"
	expect_contains "$(dhd --json status | tr -d ' \n')" "\"addr\":\"$gw6\"" "$net ($br): the IPv6 gateway"
	before=$(counter assigned)
	sourced=$(counter udp_replies_sourced)
	expect_eq "$(tcp_from "$net" $port_tcp "${host6[@]}")" tcp6-pong "$net ($br): TCP to [::1] via [$gw6]"
	expect_eq "$(udp_from "$net" $port_udp "${host6[@]}")" udp6-pong "$net ($br): UDP to [::1] via [$gw6]"
	[ "$(counter assigned)" -ge $((before + 2)) ] || fail "$net ($br): assigned counted no TCP and UDP: $(dhd stats)"
	[ "$(counter udp_replies_sourced)" -gt "$sourced" ] || fail "$net ($br): no UDP reply sourced: $(dhd stats)"
	expect_not_contains "$(tcp_from "$net" $port_secret "${host6[@]}")" secret "$net ($br): an unmapped port over IPv6"
	expect_eq "$(tcp_from "$net" $port_tcp)" tcp-pong "$net ($br): TCP over IPv4 beside it"
	# The same through br_netfilter and an INVALID drop for IPv6: socket
	# mode's flows are conntrack-clean in both families.
	if [ -e /proc/sys/net/bridge/bridge-nf-call-ip6tables ]; then
		bridge_nf_on ip6tables
		echo "$br" >>"$state/fw_bridges"
		invalid_drop -I "$br" tcp ip6tables && invalid_drop -I "$br" udp ip6tables ||
			fail "cannot add the IPv6 INVALID-drop rules on $br"
		expect_eq "$(tcp_from "$net" $port_tcp "${host6[@]}")" tcp6-pong \
			"$net ($br): TCP to [::1] through the INVALID drop"
		expect_eq "$(udp_from "$net" $port_udp "${host6[@]}")" udp6-pong \
			"$net ($br): UDP to [::1] through the INVALID drop"
		expect_eq "$(invalid_drops "$br" ip6tables)" 0 "$net ($br): INVALID packets dropped"
		firewall_off
	fi
	expect_route_localnet "$br" 0 "$net ($br)"
	mapfile -t ids < <(cgroup_ids)
	[ ${#ids[@]} -gt 0 ] || fail "$net ($br): no cgroup programs pinned"
	dhd detach "$net" >/dev/null
	[ ! -e "$PIN" ] || fail "pins left: $(ls "$PIN")"
	expect_off_cgroup_root "after detach" "${ids[@]}"
	"$docker_bin" rm -f "$(cat "$state/v6keeper")" >/dev/null
	"$docker_bin" network rm "$net" >/dev/null
}

# watch picks up a network created after it started (in socket mode, the
# default), and forgets it when it is removed.
# --from a container by name, resolved through the real API: in each mode,
# that container reaches the mapped port and a fresh container on the same
# network is refused as for an unmapped port (passed_not_allowed counts
# it); the network as a source lets it in; the last source out closes.
test_allow_from_container() {
	local mode name=dhtest-allowed-$$ refused
	start_services
	"$docker_bin" run -d --label "$label" --name "$name" --network dhtest-default \
		--add-host host.docker.internal:host-gateway "$image" sleep 600 >/dev/null
	for mode in socket nat; do
		dhd attach dhtest-default --mode "$mode" >/dev/null
		dhd port add $port_tcp --from "$name" >/dev/null
		expect_eq "$("$docker_bin" exec "$name" sh -c "echo | timeout 5 nc -w 2 host.docker.internal $port_tcp")" \
			tcp-pong "$mode mode: the listed container"
		refused=$(counter passed_not_allowed)
		expect_not_contains "$(tcp_from dhtest-default $port_tcp)" tcp-pong "$mode mode: another container"
		[ "$(counter passed_not_allowed)" -gt "$refused" ] || fail "$mode mode: passed_not_allowed: $(dhd stats)"
		dhd port add $port_tcp --from dhtest-default >/dev/null
		expect_eq "$(tcp_from dhtest-default $port_tcp)" tcp-pong "$mode mode: the network listed"
		dhd port del $port_tcp --from dhtest-default >/dev/null
		dhd port del $port_tcp --from "$name" >/dev/null
		expect_not_contains "$("$docker_bin" exec "$name" sh -c "echo | timeout 5 nc -w 2 host.docker.internal $port_tcp")" \
			tcp-pong "$mode mode: the list emptied"
		dhd detach dhtest-default >/dev/null
	done
	"$docker_bin" rm -f "$name" >/dev/null
}

test_watch() {
	local watch i
	start_services
	"$DH_BIN" --pin-dir "$PIN" watch --match 'dhtest-*' --port $port_tcp >"$state/watch.log" 2>&1 &
	watch=$!
	for i in $(seq 50); do grep -q following "$state/watch.log" && break; sleep 0.1; done
	"$docker_bin" network create --label "$label" -o com.docker.network.bridge.name=dhtest-late \
		dhtest-late >/dev/null
	for i in $(seq 50); do dhd --json status | grep -q '"bridge":"dhtest-late"' && break; sleep 0.1; done
	expect_eq "$(mode_of dhtest-late)" socket "watch's default mode"
	expect_eq "$(tcp_from dhtest-late $port_tcp)" tcp-pong "a network created after watch started"
	"$docker_bin" network rm dhtest-late >/dev/null
	for i in $(seq 50); do dhd --json status | grep -q '"bridge":"dhtest-late"' || break; sleep 0.1; done
	expect_not_contains "$(dhd --json status)" dhtest-late "watch forgot the removed network"
	kill -TERM "$watch"
	wait "$watch" || fail "watch exited $?: $(cat "$state/watch.log")"
	dhd detach dhtest-custom >/dev/null  # watch's: its bridge matches dhtest-*
	[ ! -e "$PIN" ] || fail "pins left: $(ls "$PIN")"
}

# Polls a shell snippet for up to 20 s.
until_true() {  # WHAT SNIPPET
	local i
	for i in $(seq 200); do
		eval "$2" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	fail "timed out waiting for: $1; watch said: $(cat "$state/watch.log" 2>/dev/null); port list: $(dhd port list)"
}

# A container's address on NETWORK.
address_of() {  # CONTAINER NETWORK
	"$docker_bin" inspect -f "{{(index .NetworkSettings.Networks \"$2\").IPAddress}}" "$1"
}

# From inside a running container: what the TCP service answers.
tcp_in() {  # CONTAINER
	"$docker_bin" exec "$1" sh -c "echo | timeout 5 nc -w 2 host.docker.internal $port_tcp" 2>&1 || true
}

# watch follows Docker's events, in each mode: a --from container that
# restarts with a new address (a squatter took its old one) keeps its
# access and the squatter gets none; removed, it loses it. With
# --docker-labels, a container labelled dockhost.ports gets its ports from
# it alone while it runs, and loses them when it is killed.
test_watch_follows_docker() {
	local net=dhtest-follow mode br name=dhtest-follow-$$ squat=dhtest-squat-$$ lab=dhtest-lab-$$ ip1 ip2 watch
	start_services
	"$docker_bin" network create --label "$label" --subnet 10.213.0.0/24 "$net" >/dev/null
	br=$(bridge_of "$net")
	for mode in socket nat; do
		"$DH_BIN" --pin-dir "$PIN" watch --match "$br" --mode "$mode" --docker-labels >"$state/watch.log" 2>&1 &
		watch=$!
		until_true "watch to follow Docker ($mode mode)" "grep -q \"following Docker's events\" '$state/watch.log'"
		until_true "watch to attach $br" "dhd --json status | grep -q '\"bridge\":\"$br\"'"
		"$docker_bin" run -d --label "$label" --name "$name" --network "$net" \
			--add-host host.docker.internal:host-gateway "$image" sleep 600 >/dev/null
		ip1=$(address_of "$name" "$net")
		dhd port add $port_tcp --from "$name" >/dev/null
		expect_eq "$(tcp_in "$name")" tcp-pong "$mode mode: the listed container"
		"$docker_bin" stop -t 0 "$name" >/dev/null
		until_true "$mode mode: $name stopped: no address" "dhd port list | grep -q 'from: $name (container: no address now)'"
		"$docker_bin" run -d --label "$label" --name "$squat" --network "$net" --ip "$ip1" \
			--add-host host.docker.internal:host-gateway "$image" sleep 600 >/dev/null
		"$docker_bin" start "$name" >/dev/null
		ip2=$(address_of "$name" "$net")
		[ -n "$ip2" ] && [ "$ip2" != "$ip1" ] || fail "$mode mode: $name came back at '$ip2', not a new address ($ip1)"
		until_true "$mode mode: $name's new address" "dhd port list | grep -q 'from: $name (container: $ip2/32)'"
		expect_eq "$(tcp_in "$name")" tcp-pong "$mode mode: the listed container at its new address"
		expect_not_contains "$(tcp_in "$squat")" tcp-pong "$mode mode: the squatter on its old address"
		"$docker_bin" rm -f "$name" >/dev/null
		until_true "$mode mode: $name removed" "dhd port list | grep -q 'from: $name (container: no address now)'"
		expect_not_contains "$(tcp_in "$squat")" tcp-pong "$mode mode: the squatter, $name removed"
		dhd port del $port_tcp >/dev/null
		# A labelled container: its ports, from it alone, while it runs.
		"$docker_bin" run -d --label "$label" --label "dockhost.ports=$port_tcp,$port_udp/udp" --name "$lab" \
			--network "$net" --add-host host.docker.internal:host-gateway "$image" sleep 600 >/dev/null
		until_true "$mode mode: the label's ports" "dhd port list | grep -q '$port_udp/udp'"
		expect_eq "$(tcp_in "$lab")" tcp-pong "$mode mode: the labelled container, TCP"
		expect_eq "$("$docker_bin" exec "$lab" bash -c "exec 3<>/dev/udp/host.docker.internal/$port_udp; echo ping >&3; timeout 2 head -n 1 <&3")" \
			udp-pong "$mode mode: the labelled container, UDP"
		expect_not_contains "$(tcp_in "$squat")" tcp-pong "$mode mode: another container, the label's port"
		"$docker_bin" kill "$lab" >/dev/null
		until_true "$mode mode: the label's ports gone" "! dhd port list | grep -q '$port_tcp/tcp'"
		expect_not_contains "$(dhd port list)" "$port_udp/udp" "$mode mode: the label's UDP port gone"
		"$docker_bin" rm -f "$lab" "$squat" >/dev/null
		kill -TERM "$watch"
		wait "$watch" || fail "$mode mode: watch exited $?: $(cat "$state/watch.log")"
		cat "$state/watch.log"
		dhd detach "$br" >/dev/null
		[ ! -e "$PIN" ] || fail "$mode mode: pins left: $(ls "$PIN")"
	done
	"$docker_bin" network rm "$net" >/dev/null
}

# What the tests changed on the host and did not put back, which the
# snapshot cannot show: an iptables rule in a private dockerd's table goes
# with the table. Prints each one and removes it.
host_leftovers() {
	local line tool
	firewall_off
	for tool in iptables ip6tables; do
		"$tool-save" 2>/dev/null | grep -F -e "--comment $fw_comment" | while read -r line; do
			echo "$tool rule: $line"
			# shellcheck disable=SC2086  # the rule's words, as iptables-save wrote them
			"$tool" ${line/#-A /-D }
		done
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
