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

# The sendmsg and connect programs on the cgroup v2 root, by id. The root
# is mounted for the call and unmounted at once (never removed with rm -r:
# that would remove the host's empty cgroups).
cgroup_root_ids() {
	local dir
	dir=$(mktemp -d /tmp/dh-test-cgroup2-XXXXXX)
	mount -t cgroup2 none "$dir" || { rmdir "$dir"; fail "cannot mount cgroup2"; }
	bpftool cgroup show "$dir" 2>/dev/null | awk '$2 ~ /sendmsg|connect/ { print $1 }'
	umount "$dir"
	rmdir "$dir"
}

our_cgroup_id() {  # HOOK (one of DH_CGROUP_HOOKS)
	bpftool prog show pinned "$PIN/prog_$1" | sed -n 's/^\([0-9]*\): .*/\1/p'
}

# The ids of our pinned cgroup programs, one a line.
our_cgroup_ids() {
	local hook
	for hook in $DH_CGROUP_HOOKS; do
		our_cgroup_id $hook
	done
}

# How many of IDS (one a line) are on the cgroup root.
cgroup_root_count() {  # IDS
	local root id n=0
	root=$(cgroup_root_ids)
	for id in $1; do
		n=$((n + $(grep -c -x "$id" <<<"$root" || true)))
	done
	echo $n
}

# The programs each mode hangs on br0, as the kernel says: the ingress
# guard in both, the egress program in NAT mode only (socket mode's
# replies leave from the gateway, and nothing leaves from loopback).
expect_programs_of() {  # socket|nat WHAT
	local progs want_egress=1
	progs=$(our_programs | paste -s -d, -)
	[ "$1" = socket ] && want_egress=0
	expect_eq "$(echo "$progs" | tr , '\n' | grep -c '^ingress dh_ingress$')" 1 "$2: one ingress program ($progs)"
	expect_eq "$(echo "$progs" | tr , '\n' | grep -c '^egress dh_egress$')" $want_egress \
		"$2: egress programs in $1 mode ($progs)"
}

# The fail-closed rule, at any moment: route_localnet=1 only under both
# programs; and the ingress guard, never off while br0 is attached.
expect_guarded() {  # WHAT
	local progs
	progs=$(our_programs)
	expect_contains "$progs" "ingress dh_ingress" "$1: the ingress guard"
	if [ "$(route_localnet br0)" != 0 ]; then
		expect_contains "$progs" "egress dh_egress" "$1: route_localnet=$(route_localnet br0) and the egress program"
	fi
}

status_mode() { dh --json status | sed -n 's/.*"mode":"\([a-z]*\)".*/\1/p'; }

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
	expect_exit 0 dh attach br0 --mode nat --port 8088 --port 8089/udp
	expect_contains "$(dh --json status)" '"mode":"nat"' "status --json"
	[ ! -e "$PIN/link_sk_lookup" ] || fail "NAT mode made an sk_lookup link"
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
	expect_contains "$(dh --json status)" '"socket_delivery":true' "status --json"
	[ -e "$PIN/link_sk_lookup" ] || fail "no sk_lookup link in socket mode"
	expect_eq "$(tcp_get $GW 8088)" pong "socket mode: tcp"
	expect_eq "$(udp_get $GW 8089)" upong "socket mode: udp"
	expect_eq "$(cgroup_root_count "$(our_cgroup_ids)")" 4 "sendmsg4/6 and connect4/6 on the cgroup root"

	expect_exit 0 dh attach br0
	expect_contains "$OUT" "already attached" "plain attach"
	expect_contains "$(dh --json status)" '"mode":"socket"' "plain attach keeps the mode"

	expect_exit 0 dh attach br0 --mode nat
	expect_contains "$OUT" "converted to nat mode" "conversion back"
	expect_eq "$(prog_ids)" "$ids" "programs kept"
	expect_eq "$(route_localnet br0)" 1 "NAT mode again"
	expect_eq "$(tcp_get $GW 8088)" pong "NAT mode again: tcp"
	expect_eq "$(udp_get $GW 8089)" upong "NAT mode again: udp"
	expect_eq "$(cgroup_root_count "$(our_cgroup_ids)")" 0 "the cgroup programs left with the last socket-mode bridge"
	[ ! -e "$PIN/link_sk_lookup" ] || fail "the sk_lookup link stayed after the last socket-mode bridge"
	dh detach br0
	expect_eq "$(route_localnet br0)" 0 "after detach"
}

# A socket-mode bridge carries the ingress guard only; converting it to
# NAT mode adds the egress program (before route_localnet=1), converting
# it back removes it (after route_localnet is back to 0). Both hooks.
socket_mode_has_no_egress_program() {  # HOOK
	serve_tcp 8088 127.0.0.1 pong
	serve_udp 8089 127.0.0.1 upong
	expect_exit 0 dh attach br0 --mode socket --hook "$1" --port 8088 --port 8089/udp
	expect_contains "$(dh --json status)" "\"hook\":\"$1\"" "hook"
	expect_programs_of socket "socket mode"
	expect_contains "$(dh status)" "programs attached" "status in socket mode"
	expect_contains "$(dh --json status)" '"attached":true' "status --json in socket mode"
	expect_eq "$(tcp_get $GW 8088)" pong "socket mode: tcp"
	expect_eq "$(udp_get $GW 8089)" upong "socket mode: udp"
	expect_exit 0 dh attach br0 --hook "$1"
	expect_contains "$OUT" "already attached" "a plain attach adds nothing"
	expect_programs_of socket "socket mode, attached again"

	expect_exit 0 dh attach br0 --mode nat --hook "$1"
	expect_contains "$OUT" "converted to nat mode" "conversion"
	expect_programs_of nat "converted to NAT mode"
	expect_eq "$(route_localnet br0)" 1 "NAT mode"
	expect_contains "$(dh status)" "programs attached" "status in NAT mode"
	expect_eq "$(tcp_get $GW 8088)" pong "NAT mode: tcp"
	expect_eq "$(udp_get $GW 8089)" upong "NAT mode: udp"

	expect_exit 0 dh attach br0 --mode socket --hook "$1"
	expect_contains "$OUT" "converted to socket mode" "conversion back"
	expect_programs_of socket "converted back to socket mode"
	expect_eq "$(route_localnet br0)" 0 "socket mode again"
	expect_contains "$(dh status)" "programs attached" "status in socket mode again"
	expect_eq "$(tcp_get $GW 8088)" pong "socket mode again: tcp"
	expect_eq "$(udp_get $GW 8089)" upong "socket mode again: udp"
	expect_exit 0 dh detach br0
	expect_eq "$(our_programs)" "" "after detach"
}

test_socket_mode_has_no_egress_program_tcx() { need_tcx; socket_mode_has_no_egress_program tcx; }
test_socket_mode_has_no_egress_program_clsact() { socket_mode_has_no_egress_program clsact; }

# NAT mode needs both programs: its egress program removed behind our
# back is MISSING in status (socket mode's absent one is not), and the
# next attach puts it back.
test_nat_mode_egress_program_removed_is_missing() {
	dh attach br0 --mode nat
	remove_our_program egress
	expect_contains "$(dh status)" "MISSING" "status without NAT mode's egress program"
	expect_exit 0 dh attach br0
	expect_contains "$OUT" "re-attached" "repair"
	expect_programs_of nat "repaired"
	expect_eq "$(route_localnet br0)" 1 "repaired"
}

# kill -9 at every step of a conversion, both ways, both hooks: at every
# kill the guard is on and route_localnet=1 only with both programs; a
# plain attach (which keeps the mode the record has), the conversion run
# again, or a detach converges to what that mode carries, or to nothing.
conversion_kill_everywhere() {  # HOOK
	local from to steps step next rc mode
	for to in socket nat; do
		if [ $to = socket ]; then
			from=nat
			steps="attach-gateways attach-ports attach-mode attach-sysctl-restored attach-egress-removed"
		else
			from=socket
			steps="attach-gateways attach-ports attach-mode attach-egress-added attach-sysctl"
		fi
		for step in $steps; do
			for next in attach convert detach; do
				expect_exit 0 dh attach br0 --mode $from --hook "$1" --port 8088
				expect_programs_of $from "$from mode before the conversion"
				rc=0
				DH_TEST_KILL_AT=$step dh attach br0 --mode $to --hook "$1" >/dev/null 2>&1 || rc=$?
				expect_eq "$rc" 137 "$from -> $to killed at $step"
				expect_guarded "$from -> $to killed at $step"
				expect_exit 0 dh status
				expect_guarded "status after $from -> $to killed at $step"
				case $next in
				attach) expect_exit 0 dh attach br0 --hook "$1" ;;
				convert) expect_exit 0 dh attach br0 --mode $to --hook "$1" ;;
				detach) expect_exit 0 dh detach br0 ;;
				esac
				if [ $next != detach ]; then
					mode=$(status_mode)
					[ $next = attach ] || expect_eq "$mode" $to "killed at $step, converted again"
					expect_programs_of "$mode" "$from -> $to killed at $step, then $next"
					if [ "$mode" = nat ]; then
						expect_eq "$(route_localnet br0)" 1 "killed at $step, then $next: NAT mode"
					else
						expect_eq "$(route_localnet br0)" 0 "killed at $step, then $next: socket mode"
					fi
					expect_not_contains "$(dh status)" MISSING "killed at $step, then $next: status"
					expect_exit 0 dh detach br0
				fi
				[ ! -e "$PIN" ] || fail "killed at $step, then $next: pins left: $(ls "$PIN")"
				expect_eq "$(our_programs)" "" "killed at $step, then $next: programs left"
				expect_eq "$(route_localnet br0)" 0 "killed at $step, then $next, detached"
			done
		done
	done
}

test_kill_at_every_step_of_a_conversion_tcx() { need_tcx; conversion_kill_everywhere tcx; }
test_kill_at_every_step_of_a_conversion_clsact() { conversion_kill_everywhere clsact; }

# The sk_lookup link lives as long as its pin: removed, socket mode
# delivers nothing (closed, never open), status says so, and a plain
# attach puts it back.
test_socket_mode_lost_sk_lookup_link() {
	serve_tcp 8088 127.0.0.1 pong
	dh attach br0 --port 8088
	expect_eq "$(tcp_get $GW 8088)" pong "with the link"
	rm "$PIN/link_sk_lookup"
	sleep 1  # the kernel releases a link whose last pin went a moment later
	expect_contains "$(tcp_get $GW 8088)" "Connection refused" "without the link"
	expect_contains "$(dh status)" "sk_lookup delivery MISSING" "status"
	expect_contains "$(dh --json status)" '"socket_delivery":false' "status --json"
	expect_exit 0 dh attach br0
	expect_eq "$(tcp_get $GW 8088)" pong "attach put the link back"
	expect_contains "$(dh --json status)" '"socket_delivery":true' "status --json after attach"
}

# A new bridge gets socket mode unless --mode says otherwise; watch takes
# --mode for the bridges it attaches.
test_socket_mode_is_the_default() {
	serve_tcp 8088 127.0.0.1 pong
	expect_exit 0 dh attach br0 --port 8088
	expect_contains "$OUT" "socket mode" "attach"
	expect_contains "$(dh --json status)" '"mode":"socket"' "status --json"
	expect_eq "$(tcp_get $GW 8088)" pong "tcp"
	expect_eq "$(route_localnet br0)" 0 "route_localnet"
}

# A killed conversion from NAT mode (record and entry in socket mode,
# route_localnet still 1): the next attach or detach puts the saved 0 back.
test_socket_mode_repairs_a_killed_conversion() {
	dh attach br0 --mode nat
	expect_eq "$(route_localnet br0)" 1 "NAT mode"
	DH_TEST_KILL_AT=attach-mode dh attach br0 --mode socket >/dev/null 2>&1 || true
	expect_contains "$(dh --json status)" '"mode":"socket"' "the mode entry went in before the kill"
	expect_eq "$(route_localnet br0)" 1 "the kill left the sysctl"
	expect_programs_of nat "the kill left NAT mode's egress program, as route_localnet=1 needs"
	expect_contains "$(dh status)" "programs attached" "status: a stray egress program is no harm"
	expect_exit 0 dh attach br0
	expect_eq "$(route_localnet br0)" 0 "repaired by a plain attach"
	expect_programs_of socket "the stray egress program removed by a plain attach"
	in_host sysctl -qw net.ipv4.conf.br0.route_localnet=1
	dh detach br0
	expect_eq "$(route_localnet br0)" 0 "repaired by detach"
}

# Socket mode answers UDP from the socket's own port: a mapping to
# another port is refused, at port add and at a conversion.
test_socket_mode_refuses_udp_to_another_port() {
	dh attach br0 --mode nat --port 8089/udp
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

# The sendmsg4/6 and connect4/6 programs stay on the host-wide cgroup root
# only while a socket-mode bridge needs them.
test_cgroup_programs_detached_with_the_last_socket_bridge() {
	local c2=dh-c2-$RANDOM$RANDOM id ids
	make_bridge "$H" br1 10.202.0.1
	make_container "$c2" br1 10.202.0.2 10.202.0.1
	dh attach br0 --mode socket
	dh attach br1 --mode socket
	ids=$(our_cgroup_ids)
	expect_eq "$(wc -w <<<"$ids")" 4 "pinned cgroup programs"
	for id in $ids; do
		expect_eq "$(cgroup_root_count "$id")" 1 "$id attached once for two bridges"
	done
	dh detach br0
	for id in $ids; do
		expect_eq "$(cgroup_root_count "$id")" 1 "$id kept for br1"
	done
	dh detach br1
	for id in $ids; do
		expect_eq "$(cgroup_root_count "$id")" 0 "$id gone with the last bridge"
	done
}

# A lost pin set: detach finds the programs no record explains, the
# cgroup programs on the root included (by their modes entry for br0 in
# this namespace), and leaves nothing on the host-wide root.
test_socket_mode_detach_of_a_lost_pin_set() {
	local ids
	serve_tcp 8088 127.0.0.1 pong
	dh attach br0 --mode socket --port 8088
	ids=$(our_cgroup_ids)
	note_cgroup_ids  # for cleanup, should detach fail
	expect_eq "$(tcp_get $GW 8088)" pong "socket mode with its pins"
	rm -rf "$PIN"
	expect_eq "$(cgroup_root_count "$ids")" 4 "still attached without pins"
	# sk_lookup went with its link's pin: closed, never open.
	expect_contains "$(tcp_get $GW 8088)" "Connection refused" "socket mode without its pins"
	expect_exit 0 dh detach br0
	expect_contains "$OUT" "no record" "detach of a bridge whose state was lost"
	expect_eq "$(cgroup_root_count "$ids")" 0 "sendmsg4/6 and connect4/6 removed"
}

# status's audit of bridges no record explains, with route_localnet on: a
# lost socket-mode pin set left its ingress guard alone (socket mode has
# no egress program), which keeps 127/8 out: not exposed. A NAT-mode egress
# program alone keeps nothing out: exposed.
test_status_audit_of_a_lost_socket_mode_pin_set() {
	dh attach br0 --mode socket
	note_cgroup_ids  # for cleanup, should detach fail
	rm -rf "$PIN"
	expect_programs_of socket "without its pins"
	in_host sysctl -qw net.ipv4.conf.br0.route_localnet=1
	expect_exit 0 dh status
	expect_contains "$OUT" "br0: dockhost programs with no record" "status"
	expect_not_contains "$OUT" "WARNING br0" "status"
	expect_exit 0 dh detach br0
	expect_contains "$OUT" "no record" "detach"
	expect_eq "$(our_programs)" "" "after detach"
	expect_eq "$(route_localnet br0)" 0 "after detach"

	dh attach br0 --mode nat
	rm -rf "$PIN"
	remove_our_program ingress
	expect_exit 0 dh status
	expect_contains "$OUT" "WARNING br0: route_localnet on and no dockhost guard" "an egress program alone"
	expect_exit 0 dh detach br0
	expect_eq "$(our_programs)" "" "after detach"
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

# A UDP server that connect()s its loopback-bound socket to the client
# after recvfrom(), then send()s: ADDR PORT. It logs each connect's
# outcome to LOG, and takes a fresh socket for each client.
serve_udp_connecting() {  # ADDR PORT LOG
	in_host python3 -c '
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
while True:
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((sys.argv[1], int(sys.argv[2])))
    data, addr = s.recvfrom(100)
    try:
        s.connect(addr)
        s.send(b"connected\n")
        print("connected", flush=True)
    except OSError as e:
        print("connect failed:", e, flush=True)
    s.close()
' "$1" "$2" >>"$3" 2>&1 &
	wait_listening udp "$2"
}

# Waits (5 s at most) until FILE has N lines: a server's log.
wait_lines() {  # FILE N
	local i
	for i in $(seq 100); do
		[ "$(wc -l <"$1")" -ge "$2" ] && return 0
		sleep 0.05
	done
	fail "$1: $(wc -l <"$1") lines, want $2: $(cat "$1")"
}

# Such a server cannot answer in socket mode: over IPv4 the connect itself
# fails (EINVAL: route_localnet=0); over IPv6 it succeeds and the answer
# leaves from ::1, which never reaches the container; sendmsg4/6 never see
# a connected socket's sends.
# connect4/connect6 count it in udp_connects_unsupported; NAT mode, the
# documented way for such servers, serves it. A loopback-bound socket
# connecting to anything that is no flow of ours is not counted.
test_udp_server_that_connects_needs_nat_mode() {
	local log4=$DH_SCRATCH/server4.log log6=$DH_SCRATCH/server6.log
	add_ipv6
	: >"$log4"
	: >"$log6"
	serve_udp_connecting 127.0.0.1 8089 "$log4"
	serve_udp_connecting ::1 8090 "$log6"
	dh attach br0 --mode socket --port 8089/udp --port 8090/udp
	expect_eq "$(counter udp_connects_unsupported)" 0 "before"
	in_host python3 -c '
import socket
for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((addr, 0))
    s.connect((addr, 9))
'
	expect_eq "$(counter udp_connects_unsupported)" 0 "a local client's connect"

	expect_not_contains "$(udp_get $GW 8089)" connected "socket mode: an answer"
	wait_lines "$log4" 1
	expect_contains "$(cat "$log4")" "connect failed" "socket mode: the server's connect"
	expect_eq "$(counter udp_connects_unsupported)" 1 "socket mode: counted"
	expect_not_contains "$(udp6_get $GW6 8090)" connected "socket mode, IPv6: an answer"
	wait_lines "$log6" 1
	expect_eq "$(counter udp_connects_unsupported)" 2 "socket mode, IPv6: counted"
	expect_eq "$(counter udp_replies_sourced)" 0 "no reply to source"

	dh attach br0 --mode nat
	expect_eq "$(udp_get $GW 8089)" connected "NAT mode: the answer"
	wait_lines "$log4" 2
	expect_eq "$(tail -n 1 "$log4")" connected "NAT mode: the server's connect"
	expect_eq "$(counter udp_connects_unsupported)" 2 "NAT mode counts nothing"
}

# kill -9 at every step of a socket-mode attach: route_localnet is never
# 1, and the next attach or detach converges; after the detach nothing of
# ours is left, on the bridge, in the pins or on the host-wide cgroup root.
test_socket_mode_kill_at_every_step() {
	local step next rc ids
	for step in meta-pinned maps-pinned prog-pinned attach-recorded attach-gateways port-stats-added \
		port-added attach-ports attach-mode attach-sysctl-closed attach-hooked attach-hook-recorded \
		attach-sysctl-restored attach-egress-removed; do
		for next in attach detach; do
			rc=0
			DH_TEST_KILL_AT=$step dh attach br0 --mode socket --port 8088 >/dev/null 2>&1 || rc=$?
			expect_eq "$rc" 137 "killed at $step"
			expect_eq "$(route_localnet br0)" 0 "killed at $step: route_localnet"
			ids=$(our_cgroup_ids 2>/dev/null || true)
			note_cgroup_ids
			expect_eq "$(our_programs | grep -c '^egress')" 0 "killed at $step: socket mode hung an egress program"
			if [ $next = attach ]; then
				expect_exit 0 dh attach br0 --mode socket --port 8088
				expect_contains "$(dh --json status)" '"mode":"socket"' "killed at $step, attach again"
				expect_eq "$(route_localnet br0)" 0 "killed at $step, attach again: route_localnet"
				expect_programs_of socket "killed at $step, attach again"
			fi
			OUT=$(dh detach br0 2>&1) || expect_contains "$OUT" "'br0': not attached" "killed at $step, $next, detach"
			[ ! -e "$PIN" ] || fail "killed at $step, $next: pins left: $(ls "$PIN")"
			expect_eq "$(in_host tc filter show dev br0 ingress)$(in_host "$DH_TCXCTL" list br0 | grep dh_)" "" \
				"killed at $step, $next: programs left"
			[ -z "$ids" ] || expect_eq "$(cgroup_root_count "$ids")" 0 \
				"killed at $step, $next: cgroup programs left on the cgroup root"
			expect_eq "$(route_localnet br0)" 0 "killed at $step, $next: route_localnet"
		done
	done
}

# --- IPv6 -------------------------------------------------------------------

# Socket mode, IPv6: a container reaches [::1] services through the
# bridge's IPv6 address, TCP and UDP; the UDP reply leaves from the gateway
# (the container's socket is connected to it: a reply from ::1 would not
# match, and ::1 does not leave lo), set by sendmsg6.
test_socket_mode_ipv6_tcp_and_udp() {
	add_ipv6
	serve_tcp6 8088 ::1 pong6
	serve_udp6 8089 ::1 upong6
	dh attach br0 --mode socket --port 8088 --port 8089/udp
	expect_contains "$(dh status)" "gateway $GW6" "the bridge's IPv6 address is a gateway"
	expect_eq "$(tcp6_get $GW6 8088)" pong6 "tcp over IPv6"
	expect_eq "$(udp6_get $GW6 8089)" upong6 "udp over IPv6"
	[ "$(counter udp_replies_sourced)" -ge 1 ] || fail "udp_replies_sourced: $(counter udp_replies_sourced)"
	[ "$(counter assigned)" -ge 2 ] || fail "assigned: $(counter assigned)"
	# IPv4 on the same ports still goes to 127.0.0.1, where nothing listens.
	expect_contains "$(tcp_get $GW 8088)" "Connection refused" "IPv4 to the same port"
}

# Nothing at [::1]:P: the packet goes on, and the kernel refuses it from
# the gateway (RST, ICMPv6 port unreachable).
test_socket_mode_ipv6_refused_when_nothing_listens() {
	add_ipv6
	dh attach br0 --mode socket --port 8090 --port 8090/udp
	expect_contains "$(tcp6_get $GW6 8090)" "Connection refused" "tcp over IPv6"
	expect_contains "$(udp6_get $GW6 8090)" "Connection refused" "udp over IPv6"
	[ "$(counter passed_no_socket)" -ge 2 ] || fail "passed_no_socket: $(counter passed_no_socket)"
}

# --to [::1]:Q maps IPv6 alone; --to 127.0.0.1:Q IPv4 alone; a bare port both.
test_socket_mode_ipv6_to() {
	add_ipv6
	serve_tcp6 9000 ::1 remapped6
	serve_tcp 9000 127.0.0.1 remapped4
	dh attach br0 --mode socket
	expect_exit 0 dh port add 8088 --to '[::1]:9000'
	expect_contains "$OUT" "-> [::1]:9000: added" "port add's report"
	expect_eq "$(tcp6_get $GW6 8088)" remapped6 "IPv6 remapped"
	expect_contains "$(tcp_get $GW 8088)" "Connection refused" "IPv4 not mapped by an IPv6 --to"
	expect_exit 0 dh port add 8088 --to 9000
	expect_eq "$(tcp6_get $GW6 8088)" remapped6 "--to PORT: IPv6"
	expect_eq "$(tcp_get $GW 8088)" remapped4 "--to PORT: IPv4"
	expect_contains "$(dh port list)" "127.0.0.1:9000,[::1]:9000" "port list"
	expect_contains "$(dh --json port list)" '"to_addr6":"::1"' "port list --json"
	expect_exit 0 dh port add 8088 --to 127.0.0.1:9000
	expect_contains "$(tcp6_get $GW6 8088)" "Connection refused" "IPv6 not mapped by an IPv4 --to"
}

# NAT mode cannot redirect IPv6 (the kernel never routes ::1 off lo): an
# IPv6 packet to a mapped port goes on to the gateway untouched, and an
# IPv6-only mapping for a NAT bridge is refused.
test_nat_mode_does_not_redirect_ipv6() {
	add_ipv6
	serve_tcp6 8088 ::1 pong6
	serve_udp6 8089 ::1 upong6
	dh attach br0 --mode nat --port 8088 --port 8089/udp
	expect_contains "$(dh status)" "gateway $GW6" "IPv6 gateway listed"
	expect_contains "$(tcp6_get $GW6 8088)" "Connection refused" "tcp over IPv6"
	expect_contains "$(udp6_get $GW6 8089)" "Connection refused" "udp over IPv6"
	expect_eq "$(counter redirected)" 0 "redirected"
	expect_exit 1 dh port add 8090 --to '[::1]:8090' --bridge br0
	expect_contains "$OUT" "NAT mode, which cannot redirect IPv6" "IPv6-only mapping on a NAT bridge"
	# Converted to socket mode, the same mappings carry IPv6.
	dh attach br0 --mode socket
	expect_eq "$(tcp6_get $GW6 8088)" pong6 "tcp over IPv6 after the conversion"
	expect_eq "$(udp6_get $GW6 8089)" upong6 "udp over IPv6 after the conversion"
}

# An IPV6_PKTINFO server names its source itself (the gateway, from the
# request's own pktinfo): sendmsg6 leaves it alone.
test_socket_mode_udp6_pktinfo_server() {
	add_ipv6
	in_host python3 -c '
import socket, struct
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
s.bind(("::1", 8089))
while True:
    data, anc, flags, addr = s.recvmsg(100, 256)
    pkt = [a for a in anc if a[0] == socket.IPPROTO_IPV6 and a[1] == socket.IPV6_PKTINFO][0][2]
    s.sendmsg([b"pktinfo6 " + socket.inet_ntop(socket.AF_INET6, pkt[:16]).encode() + b"\n"],
              [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, pkt[:16] + struct.pack("I", 0))], 0, addr)
' &
	wait_listening udp 8089
	dh attach br0 --mode socket --port 8089/udp
	expect_eq "$(udp6_get $GW6 8089)" "pktinfo6 $GW6" "the server's own source"
	expect_eq "$(counter udp_replies_sourced)" 0 "sendmsg6 left the server's own source alone"
}

# Docker's netfilter, all of it, in the test's host namespace: NAT chains
# for both families (MASQUERADE: every Docker host has one, and with it
# netfilter's NAT hook at LOCAL_IN, which orphans a socket tc assigned to
# a packet unless its remote port is the flow's: the first design of
# socket mode, which refused every connection here), br_netfilter on, and
# an INVALID-drop rule. Socket mode delivers in the stack's own lookup,
# after netfilter: TCP and UDP over IPv4 and IPv6 work, and status has
# nothing to warn of. Control: the NAT table saw each new flow.
test_socket_mode_with_docker_netfilter() {
	[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] || skip "no br_netfilter in this kernel"
	command -v ip6tables >/dev/null || skip "no ip6tables"
	add_ipv6
	serve_tcp 8088 127.0.0.1 pong
	serve_udp 8089 127.0.0.1 upong
	serve_tcp6 8088 ::1 pong6
	serve_udp6 8089 ::1 upong6
	in_host sysctl -qw net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1
	local t
	for t in iptables ip6tables; do
		in_host $t -t nat -A POSTROUTING -o lo -j MASQUERADE
		in_host $t -t nat -A PREROUTING -i br0 -p tcp --dport 8088
		in_host $t -t nat -A PREROUTING -i br0 -p udp --dport 8089
		in_host $t -A INPUT -m conntrack --ctstate INVALID -j DROP
	done
	dh attach br0 --mode socket --port 8088 --port 8089/udp
	expect_eq "$(tcp_get $GW 8088)" pong "tcp"
	expect_eq "$(udp_get $GW 8089)" upong "udp"
	expect_eq "$(tcp6_get $GW6 8088)" pong6 "tcp over IPv6"
	expect_eq "$(udp6_get $GW6 8089)" upong6 "udp over IPv6"
	for t in iptables ip6tables; do
		expect_eq "$(in_host $t -t nat -L PREROUTING -v -n -x | awk '/dpt:808[89]/ { n += $1 } END { print n }')" 2 \
			"control: $t's NAT table saw both new flows"
	done
	expect_not_contains "$(dh status)" "MISSING" "status"
}

run_tests
