#!/usr/bin/env bash
# Socket mode and NAT mode side by side: what only socket mode promises,
# and moving a bridge between the modes. (Every datapath case runs in both
# modes in test_datapath.sh.)
. "$(dirname "$0")/../lib.sh"

route_localnet() { in_host sysctl -n "net.ipv4.conf.$1.route_localnet"; }

# route_localnet of every interface of the host namespace, "all" and
# "default" included, as "name=value" lines.
all_route_localnet() {
	in_host sh -c 'for f in /proc/sys/net/ipv4/conf/*/route_localnet; do
		n=${f%/route_localnet}; echo "${n##*/}=$(cat "$f")"; done'
}

# The sendmsg4 programs on the cgroup v2 root, by id. The root is mounted
# for the call and unmounted at once (never removed with rm -r: that would
# remove the host's empty cgroups).
cgroup_sendmsg4_ids() {
	local dir
	dir=$(mktemp -d /tmp/dh-test-cgroup2-XXXXXX)
	mount -t cgroup2 none "$dir" || { rmdir "$dir"; fail "cannot mount cgroup2"; }
	bpftool cgroup show "$dir" 2>/dev/null | awk '$2 ~ /sendmsg/ { print $1 }'
	umount "$dir"
	rmdir "$dir"
}

our_sendmsg4_id() {
	bpftool prog show pinned "$PIN/prog_sendmsg4" | sed -n 's/^\([0-9]*\): .*/\1/p'
}

# Socket mode never changes a sysctl: route_localnet is 0 on every
# interface, sampled all along attach, traffic, edits, re-attach and detach.
test_socket_mode_route_localnet_stays_0() {
	local samples=$DH_SCRATCH/samples
	serve_tcp 8088 127.0.0.1 pong
	serve_udp 8089 127.0.0.1 upong
	( while :; do all_route_localnet >>"$samples"; sleep 0.02; done ) &
	dh attach br0 --mode socket --port 8088 --port 8089/udp
	expect_eq "$(tcp_get $GW 8088)" pong "tcp"
	expect_eq "$(udp_get $GW 8089)" upong "udp"
	dh port add 9000
	dh port del 9000
	expect_exit 0 dh attach br0
	expect_contains "$OUT" "already attached" "second attach"
	expect_eq "$(all_route_localnet | grep -v '=0$')" "" "route_localnet while attached"
	dh detach br0
	kill %1
	wait %1 2>/dev/null || true
	[ -s "$samples" ] || fail "no samples taken"
	expect_eq "$(grep -v '=0$' "$samples" | sort -u)" "" "route_localnet at any sample"
	expect_contains "$(cat "$samples")" "br0=0" "br0 sampled"
}

# Docker's br_netfilter setting with a firewall that drops INVALID (ufw's,
# firewalld's default), in the test's host namespace only. NAT mode: the
# reply comes from 127.0.0.1 to a flow conntrack saw as gateway:port, the
# container's ACK is INVALID and dropped: TCP fails every time. Socket
# mode rewrites nothing: conntrack sees one flow.
test_conntrack_invalid_drop_socket_mode_passes() {
	[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] || skip "no br_netfilter in this kernel"
	command -v iptables >/dev/null || skip "no iptables"
	serve_tcp 8088 127.0.0.1 pong
	serve_udp 8089 127.0.0.1 upong
	in_host sysctl -qw net.bridge.bridge-nf-call-iptables=1
	in_host iptables -A INPUT -m conntrack --ctstate INVALID -j DROP

	expect_exit 0 dh attach br0 --mode nat --port 8088 --port 8089/udp
	expect_contains "$OUT" "bridge-nf-call-iptables=1" "NAT mode warns"
	expect_not_contains "$(tcp_get $GW 8088)" pong "NAT mode: TCP through an INVALID drop (the known failure)"
	expect_eq "$(udp_get $GW 8089)" upong "NAT mode: UDP"

	expect_exit 0 dh attach br0 --mode socket
	expect_not_contains "$OUT" "bridge-nf-call-iptables" "socket mode does not warn"
	expect_eq "$(tcp_get $GW 8088)" pong "socket mode: TCP"
	expect_eq "$(udp_get $GW 8089)" upong "socket mode: UDP"
	[ "$(in_host iptables -L INPUT -v -n | awk '/INVALID/ { print $1 }')" -ge 1 ] ||
		fail "control: the INVALID rule never matched"
}

# Established TCP flows are found by their own tuple: unmapping the port
# stops new connections, not the live one.
test_socket_mode_port_del_keeps_live_tcp_flow() {
	local line
	serve_tcp_echo 8088 127.0.0.1
	dh attach br0 --mode socket --port 8088
	coproc FLOW { in_ctr timeout 20 socat - TCP4:$GW:8088; }
	echo one >&"${FLOW[1]}"
	read -r -t 3 line <&"${FLOW[0]}" || fail "no echo before port del"
	expect_eq "$line" one "echo before port del"
	dh port del 8088
	echo two >&"${FLOW[1]}"
	read -r -t 3 line <&"${FLOW[0]}" || fail "no echo after port del"
	expect_eq "$line" two "echo after port del"
	expect_contains "$(tcp_get $GW 8088 </dev/null)" "Connection refused" "new connection refused"
}

# attach --mode converts an attached bridge with its programs in place
# (the same programs throughout: the guard is never off); a plain attach
# keeps the mode; status shows it.
test_convert_between_modes() {
	local ids
	serve_tcp 8088 127.0.0.1 pong
	serve_udp 8089 127.0.0.1 upong
	expect_exit 0 dh attach br0 --port 8088 --port 8089/udp
	expect_contains "$OUT" "nat mode" "the default mode"
	expect_contains "$(dh --json status)" '"mode":"nat"' "status --json"
	expect_eq "$(route_localnet br0)" 1 "NAT mode"
	expect_eq "$(tcp_get $GW 8088)" pong "NAT mode: tcp"
	ids=$(prog_ids)

	expect_exit 0 dh attach br0 --mode socket
	expect_contains "$OUT" "converted to socket mode" "conversion"
	expect_eq "$(prog_ids)" "$ids" "programs kept"
	expect_eq "$(route_localnet br0)" 0 "socket mode: route_localnet back to the saved 0"
	expect_contains "$(dh status)" "socket mode" "status"
	expect_contains "$(dh --json status)" '"mode":"socket"' "status --json"
	expect_contains "$(dh --json status)" '"udp_reply_source":true' "status --json"
	expect_eq "$(tcp_get $GW 8088)" pong "socket mode: tcp"
	expect_eq "$(udp_get $GW 8089)" upong "socket mode: udp"
	expect_contains "$(cgroup_sendmsg4_ids)" "$(our_sendmsg4_id)" "sendmsg4 on the cgroup root"

	expect_exit 0 dh attach br0
	expect_contains "$OUT" "already attached" "plain attach"
	expect_contains "$(dh --json status)" '"mode":"socket"' "plain attach keeps the mode"

	expect_exit 0 dh attach br0 --mode nat
	expect_contains "$OUT" "converted to nat mode" "conversion back"
	expect_eq "$(prog_ids)" "$ids" "programs kept"
	expect_eq "$(route_localnet br0)" 1 "NAT mode again"
	expect_eq "$(tcp_get $GW 8088)" pong "NAT mode again: tcp"
	expect_eq "$(udp_get $GW 8089)" upong "NAT mode again: udp"
	expect_not_contains "$(cgroup_sendmsg4_ids)" "$(our_sendmsg4_id)" "sendmsg4 left with the last socket-mode bridge"
	dh detach br0
	expect_eq "$(route_localnet br0)" 0 "after detach"
}

# A killed conversion from NAT mode (record and entry in socket mode,
# route_localnet still 1): the next attach or detach puts the saved 0 back.
test_socket_mode_repairs_a_killed_conversion() {
	dh attach br0 --mode nat
	expect_eq "$(route_localnet br0)" 1 "NAT mode"
	DH_TEST_KILL_AT=attach-mode dh attach br0 --mode socket >/dev/null 2>&1 || true
	expect_contains "$(dh --json status)" '"mode":"socket"' "the mode entry went in before the kill"
	expect_eq "$(route_localnet br0)" 1 "the kill left the sysctl"
	expect_exit 0 dh attach br0
	expect_eq "$(route_localnet br0)" 0 "repaired by a plain attach"
	in_host sysctl -qw net.ipv4.conf.br0.route_localnet=1
	dh detach br0
	expect_eq "$(route_localnet br0)" 0 "repaired by detach"
}

# Socket mode answers UDP from the socket's own port: a mapping to
# another port is refused, at port add and at a conversion.
test_socket_mode_refuses_udp_to_another_port() {
	dh attach br0 --port 8089/udp
	dh port add 8090/udp --to 127.0.0.1:9001 --bridge br0
	expect_exit 1 dh attach br0 --mode socket
	expect_contains "$OUT" "port 8090/udp goes to 127.0.0.1:9001" "conversion refused"
	expect_contains "$(dh --json status)" '"mode":"nat"' "still NAT mode"
	expect_eq "$(route_localnet br0)" 1 "still NAT mode's sysctl"
	dh port del 8090/udp
	expect_exit 0 dh attach br0 --mode socket
	expect_exit 1 dh port add 8090/udp --to 127.0.0.1:9001
	expect_contains "$OUT" "socket mode cannot answer a UDP port from another port" "port add refused"
	expect_exit 0 dh port add 8090 --to 127.0.0.1:9001
	expect_contains "$OUT" "added" "TCP to another port is fine"
}

# The sendmsg4 program stays on the host-wide cgroup root only while a
# socket-mode bridge needs it.
test_sendmsg4_detached_with_the_last_socket_bridge() {
	local c2=dh-c2-$RANDOM$RANDOM id
	make_bridge "$H" br1 10.202.0.1
	make_container "$c2" br1 10.202.0.2 10.202.0.1
	dh attach br0 --mode socket
	dh attach br1 --mode socket
	id=$(our_sendmsg4_id)
	expect_eq "$(cgroup_sendmsg4_ids | grep -c -x "$id")" 1 "attached once for two bridges"
	dh detach br0
	expect_eq "$(cgroup_sendmsg4_ids | grep -c -x "$id")" 1 "kept for br1"
	dh detach br1
	expect_eq "$(cgroup_sendmsg4_ids | grep -c -x "$id")" 0 "gone with the last bridge"
}

# A lost pin set: detach finds the programs no record explains, the
# sendmsg4 on the cgroup root included (by its modes entry for br0 in
# this namespace), and leaves nothing on the host-wide root.
test_socket_mode_detach_of_a_lost_pin_set() {
	local id
	dh attach br0 --mode socket
	id=$(our_sendmsg4_id)
	echo "$id" >>"$DH_SCRATCH/sendmsg4_ids"  # for cleanup, should detach fail
	rm -rf "$PIN"
	expect_eq "$(cgroup_sendmsg4_ids | grep -c -x "$id")" 1 "still attached without pins"
	expect_exit 0 dh detach br0
	expect_contains "$OUT" "no record" "detach of a bridge whose state was lost"
	expect_eq "$(cgroup_sendmsg4_ids | grep -c -x "$id")" 0 "sendmsg4 removed"
}

# A server that answers with IP_PKTINFO (as dnsmasq does): it names the
# source itself (the gateway, from the request's own pktinfo), which
# sendmsg4 leaves alone; it must keep working.
test_socket_mode_udp_pktinfo_server() {
	in_host python3 -c '
import socket, struct
IP_PKTINFO = 8  # linux/in.h; Python 3.11 has no name for it
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
s.bind(("127.0.0.1", 8089))
while True:
    data, anc, flags, addr = s.recvmsg(100, 256)
    pkt = [a for a in anc if a[0] == socket.IPPROTO_IP and a[1] == IP_PKTINFO][0][2]
    ifindex, spec_dst, dst = struct.unpack("I4s4s", pkt)
    reply = struct.pack("I4s4s", 0, dst, dst)  # from the address it came to
    s.sendmsg([b"pktinfo " + socket.inet_ntoa(dst).encode() + b"\n"],
              [(socket.IPPROTO_IP, IP_PKTINFO, reply)], 0, addr)
' &
	wait_listening udp 8089
	dh attach br0 --mode socket --port 8089/udp
	expect_eq "$(udp_get $GW 8089)" "pktinfo $GW" "reply with IP_PKTINFO"
	expect_eq "$(counter udp_replies_sourced)" 0 "sendmsg4 left the server's own source alone"
}

# kill -9 at every step of a socket-mode attach: route_localnet is never
# 1, and the next attach or detach converges; after the detach nothing of
# ours is left, on the bridge, in the pins or on the host-wide cgroup root.
test_socket_mode_kill_at_every_step() {
	local step next rc id
	for step in meta-pinned maps-pinned prog-pinned attach-recorded attach-gateways port-stats-added \
		port-added attach-ports attach-mode attach-hooked attach-hook-recorded; do
		for next in attach detach; do
			rc=0
			DH_TEST_KILL_AT=$step dh attach br0 --mode socket --port 8088 >/dev/null 2>&1 || rc=$?
			expect_eq "$rc" 137 "killed at $step"
			expect_eq "$(route_localnet br0)" 0 "killed at $step: route_localnet"
			id=$(our_sendmsg4_id 2>/dev/null || true)
			[ -z "$id" ] || echo "$id" >>"$DH_SCRATCH/sendmsg4_ids"
			if [ $next = attach ]; then
				expect_exit 0 dh attach br0 --mode socket --port 8088
				expect_contains "$(dh --json status)" '"mode":"socket"' "killed at $step, attach again"
				expect_eq "$(route_localnet br0)" 0 "killed at $step, attach again: route_localnet"
			fi
			OUT=$(dh detach br0 2>&1) || expect_contains "$OUT" "'br0': not attached" "killed at $step, $next, detach"
			[ ! -e "$PIN" ] || fail "killed at $step, $next: pins left: $(ls "$PIN")"
			expect_eq "$(in_host tc filter show dev br0 ingress)$(in_host "$DH_TCXCTL" list br0 | grep dh_)" "" \
				"killed at $step, $next: programs left"
			[ -z "$id" ] || expect_eq "$(cgroup_sendmsg4_ids | grep -c -x "$id")" 0 \
				"killed at $step, $next: sendmsg4 left on the cgroup root"
			expect_eq "$(route_localnet br0)" 0 "killed at $step, $next: route_localnet"
		done
	done
}

run_tests
