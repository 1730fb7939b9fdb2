#!/usr/bin/env bash
# Security suite: the attack matrix. From a "container" namespace, crafted
# packets aim at host services bound to 127.0.0.1 and [::1] on ports that
# are NOT mapped. Each attack runs three times, on its own port each time,
# so a half-open connection or a datagram of one run never counts for
# another:
#   control  route_localnet=1 on br0 and no program (the recipe alone):
#            the attack must land, which proves it can; or, where the kernel
#            drops it whatever we do, nothing may land (said at the attack)
#   tcx      attach --hook tcx: nothing may land, the drop reason is counted
#   clsact   attach --hook clsact: the same
# With the guard on, the mapped port 8088 must still work.
#
# Judged at the host's sockets, not on the wire: a UDP recorder appends
# whatever it receives to a file, the TCP listener records every connection
# it accepts, and `ss state syn-recv` shows any SYN that reached it. Frames
# are sent with tests/e2e/rawframe.c (AF_PACKET, CAP_NET_RAW only) or
# routed by the container's own kernel.
. "$(dirname "$0")/../lib.sh"

RAWFRAME=${DH_RAWFRAME:-$DH_ROOT/.output/rawframe}
P_CONTROL=20001
P_TCX=20002
P_CLSACT=20003
P_REACH=20009  # the same frames to an address they may reach
SENTINEL=7777
GW6=fd00:201::1
CTR6=fd00:201::2
# IPv6 frames come from an address nobody answers for: the SYN-ACK is never
# delivered, so the container cannot reset the half-open connection.
SRC6=fd00:201::99

# The services, the bridge's MAC, IPv6 on the bridge. Files live in $SEC_DIR.
sec_setup() {
	local port
	[ -x "$RAWFRAME" ] || fail "$RAWFRAME missing: run make"
	SEC_DIR=$(mktemp -d "${TMPDIR:-/tmp}"/dh-sec-XXXXXX)
	trap 'cleanup; rm -rf "$SEC_DIR"' EXIT
	ip -n "$H" addr add $GW6/64 dev br0 nodad
	ip -n "$C" addr add $CTR6/64 dev eth0 nodad
	BR_MAC=$(ip -n "$H" -br link show br0 | awk '{print $3}')
	serve_tcp 8088 127.0.0.1 host
	for port in $P_CONTROL $P_TCX $P_CLSACT; do
		victim 127.0.0.1 "$port"
		victim "[::1]" "$port"
	done
	# The sentinel: a UDP service on the gateway that every run reaches
	# after its attack, through the same veth and the same hooks.
	in_host socat -u "UDP4-RECV:$SENTINEL,bind=$GW" "OPEN:$SEC_DIR/sentinel,creat,append" &
	wait_sockets udp $SENTINEL 1
}

# A TCP listener that records each connection it accepts and a UDP service
# that appends what it receives, both on ADDR:PORT.
victim() {  # ADDR PORT
	local fam=4 want
	[[ $1 == \[* ]] && fam=6
	want=$(($(in_host ss -Hlnt "sport = :$2" | wc -l) + 1))
	in_host socat "TCP$fam-LISTEN:$2,bind=$1,reuseaddr,fork" \
		SYSTEM:"echo accepted >>$SEC_DIR/accept-$2" &
	in_host socat -u "UDP$fam-RECV:$2,bind=$1" "OPEN:$SEC_DIR/udp-$2,creat,append" &
	wait_sockets tcp "$2" "$want"
	wait_sockets udp "$2" "$want"
}

wait_sockets() {  # tcp|udp PORT COUNT: COUNT sockets listening on PORT
	local flag=-Hlnt i
	[ "$1" = udp ] && flag=-Hlnu
	for i in $(seq 100); do
		[ "$(in_host ss $flag "sport = :$2" | wc -l)" -ge "$3" ] && return 0
		sleep 0.05
	done
	fail "fewer than $3 $1 sockets on port $2"
}

# What reached the host's sockets on PORT, one line per kind; empty if nothing.
landed() {  # PORT
	[ -s "$SEC_DIR/udp-$1" ] && echo "UDP datagram received on port $1"
	[ -n "$(in_host ss -Htn state syn-recv "sport = :$1")" ] && echo "SYN_RECV on port $1"
	[ -s "$SEC_DIR/accept-$1" ] && echo "TCP connection accepted on port $1"
	return 0
}

# Every packet sent before it has been through the bridge's hooks and ip_rcv
# once a datagram sent after it, on the same path, has been received.
settle() {
	local mark=mark-$RANDOM$RANDOM i
	in_ctr "$RAWFRAME" eth0 --dst-mac "$BR_MAC" --src $CTR --dst $GW --proto udp \
		--sport 40999 --dport $SENTINEL --payload "$mark"
	for i in $(seq 100); do
		grep -q "$mark" "$SEC_DIR/sentinel" 2>/dev/null && { sleep 0.1; return 0; }
		sleep 0.05
	done
	fail "the sentinel datagram to $GW:$SENTINEL never arrived"
}

expect_landed() {  # PORT WHAT: a UDP datagram and a SYN (or a connection) arrived
	local i got
	for i in $(seq 50); do
		got=$(landed "$1")
		[[ $got == *UDP* && ($got == *SYN_RECV* || $got == *accepted*) ]] && return 0
		sleep 0.1
	done
	fail "$2: the attack did not land (${got:-nothing arrived}); the test cannot attack"
}

expect_nothing_landed() {  # PORT WHAT
	local got
	got=$(landed "$1")
	[ -z "$got" ] || fail "$2: the attack landed: $got"
}

# The matrix for one attack. ATTACK PORT sends it (TCP and UDP) to PORT.
# CONTROL: "lands", or "kernel-drops" where the kernel drops it even with
# route_localnet=1 and no program. COUNTER N: the guard's drop reason and
# how many packets of one run it must count ("-" where the guard has
# nothing to judge and the kernel drops the packet). Both hooks always run;
# their failures are reported together.
attack_matrix() {  # ATTACK CONTROL COUNTER N
	local attack=$1 control=$2 counter=$3 n=$4 hook port before after got errors=()

	in_host sysctl -qw net.ipv4.conf.br0.route_localnet=1
	"$attack" $P_CONTROL
	settle
	if [ "$control" = lands ]; then
		expect_landed $P_CONTROL "control, route_localnet=1 without a program"
	else
		expect_nothing_landed $P_CONTROL "control: the kernel should drop it without our help"
	fi
	in_host sysctl -qw net.ipv4.conf.br0.route_localnet=0

	for hook in $(hooks); do
		port=$P_TCX
		[ $hook = clsact ] && port=$P_CLSACT
		dh attach br0 --hook $hook --port 8088 >/dev/null
		expect_eq "$(tcp_get $GW 8088)" host "$hook: the mapped port"
		[ "$counter" = - ] || before=$(counter "$counter")
		"$attack" "$port"
		settle
		got=$(landed "$port")
		[ -z "$got" ] || errors+=("$hook: the attack landed: ${got//$'\n'/, }")
		if [ "$counter" != - ]; then
			after=$(counter "$counter")
			[ "$((${after:-0} - ${before:-0}))" -ge "$n" ] ||
				errors+=("$hook: $counter counted $((${after:-0} - ${before:-0})), want $n")
		fi
		dh detach br0 >/dev/null
	done
	[ ${#errors[@]} -eq 0 ] || fail "$(printf '%s; ' "${errors[@]}")"
	tcx_half_skipped
}

# A raw frame from the container to the bridge's MAC.
raw() { in_ctr "$RAWFRAME" eth0 --dst-mac "$BR_MAC" "$@"; }

# A TCP SYN and a UDP datagram to PORT, with the frame shape in ARGS.
raw_pair() {  # PORT ARGS...
	local port=$1
	shift
	raw --proto tcp --sport 40001 --dport "$port" "$@"
	raw --proto udp --sport 40002 --dport "$port" --payload "leaked-$port" "$@"
}

# --- VLAN tag stacks --------------------------------------------------------
# The host-side veth moves the outer tag into skb metadata (rx-vlan-offload,
# the real path); the bridge passes the frame up to br0 as it is; after tc,
# __netif_receive_skb_core strips each VID-0 tag and hands IPv4 to ip_rcv on
# br0, where route_localnet=1.

vlan_1() { raw_pair "$1" --src $CTR --dst 127.0.0.1 --tag 8100:0; }
vlan_2() { raw_pair "$1" --src $CTR --dst 127.0.0.1 --tag 8100:0 --tag 8100:0; }
vlan_qinq() { raw_pair "$1" --src $CTR --dst 127.0.0.1 --tag 88a8:0 --tag 8100:0; }
vlan_3() { raw_pair "$1" --src $CTR --dst 127.0.0.1 --tag 88a8:0 --tag 8100:0 --tag 8100:0; }
# One offloaded tag and five in the frame: deeper than the guard walks.
vlan_6() {
	raw_pair "$1" --src $CTR --dst 127.0.0.1 --tag 88a8:0 --tag 8100:0 --tag 8100:0 \
		--tag 8100:0 --tag 8100:0 --tag 8100:0
}
vlan_vid() { raw_pair "$1" --src $CTR --dst 127.0.0.1 --tag 8100:100; }
vlan_0_vid() { raw_pair "$1" --src $CTR --dst 127.0.0.1 --tag 8100:0 --tag 8100:100; }

test_vlan_one_tag_vid0() { sec_setup; attack_matrix vlan_1 lands dropped_loopback_dst 2; }
test_vlan_two_tags_vid0() { sec_setup; attack_matrix vlan_2 lands dropped_loopback_dst 2; }
test_vlan_qinq_vid0() { sec_setup; attack_matrix vlan_qinq lands dropped_loopback_dst 2; }
test_vlan_three_tags_vid0() { sec_setup; attack_matrix vlan_3 lands dropped_loopback_dst 2; }
test_vlan_six_tags_too_deep() { sec_setup; attack_matrix vlan_6 lands dropped_vlan_too_deep 2; }

# A VID other than 0 with no VLAN device on br0: the kernel marks the frame
# PACKET_OTHERHOST and ip_rcv drops it, guard or not.
test_vlan_vid_not_zero() { sec_setup; attack_matrix vlan_vid kernel-drops dropped_loopback_dst 2; }
test_vlan_vid0_then_vid_not_zero() {
	sec_setup
	attack_matrix vlan_0_vid kernel-drops dropped_loopback_dst 2
}

# --- IPv4 options -----------------------------------------------------------
# A source route names 127.0.0.1 as the next hop of a packet "to the
# gateway": where accept_source_route=1 (set here in the test's host
# namespace only), ip_options_rcv_srr() routes it on to 127.0.0.1 after tc.

lsrr() { raw_pair "$1" --src $CTR --dst $GW --ip-opt 8307047f000001; }
ssrr() { raw_pair "$1" --src $CTR --dst $GW --ip-opt 8907047f000001; }
# NOP, then Record Route with room for two addresses.
nop_rr() { raw_pair "$1" --src $CTR --dst 127.0.0.1 --ip-opt 01070b040000000000000000; }

accept_source_route() {
	in_host sysctl -qw net.ipv4.conf.all.accept_source_route=1 net.ipv4.conf.br0.accept_source_route=1
}

test_ipv4_lsrr_via_loopback() { sec_setup; accept_source_route; attack_matrix lsrr lands dropped_ip_options 2; }
test_ipv4_ssrr_via_loopback() { sec_setup; accept_source_route; attack_matrix ssrr lands dropped_ip_options 2; }
test_ipv4_nop_rr_to_loopback() { sec_setup; attack_matrix nop_rr lands dropped_loopback_dst 2; }

# --- IPv4 fragments ---------------------------------------------------------
# A first fragment (ports, MF) and a later one (offset) of each, reassembled
# by ip_local_deliver after routing: the guard must drop both, 4 in all.

frags() {
	raw --proto tcp --sport 40001 --dport "$1" --src $CTR --dst 127.0.0.1 --frag both --frag-at 8
	raw --proto udp --sport 40002 --dport "$1" --src $CTR --dst 127.0.0.1 --frag both --frag-at 16 \
		--payload "leaked-in-fragments-$1"
}
# The later fragment first: each is judged alone, whatever came before.
frags_reversed() {
	raw --proto tcp --sport 40001 --dport "$1" --src $CTR --dst 127.0.0.1 --frag later --frag-at 8
	raw --proto tcp --sport 40001 --dport "$1" --src $CTR --dst 127.0.0.1 --frag first --frag-at 8
	raw --proto udp --sport 40002 --dport "$1" --src $CTR --dst 127.0.0.1 --frag later --frag-at 16 \
		--payload "leaked-in-fragments-$1"
	raw --proto udp --sport 40002 --dport "$1" --src $CTR --dst 127.0.0.1 --frag first --frag-at 16 \
		--payload "leaked-in-fragments-$1"
}

test_ipv4_fragments_to_loopback() { sec_setup; attack_matrix frags lands dropped_loopback_dst 4; }
test_ipv4_fragments_later_first() { sec_setup; attack_matrix frags_reversed lands dropped_loopback_dst 4; }

# --- Routed by the container's kernel ---------------------------------------
# The CVE-2020-8558 recipe: a container with NET_ADMIN routes 127.0.0.1 via
# its gateway (as test_datapath.sh's test_guard_blocks_crafted_loopback_destination).

route_loopback_via_gateway() {
	in_ctr ip route del 127.0.0.0/8 dev lo table local
	in_ctr ip route del local 127.0.0.1 dev lo table local
	in_ctr ip route add 127.0.0.1/32 via $GW dev eth0
	in_ctr sysctl -qw net.ipv4.conf.all.route_localnet=1 net.ipv4.conf.eth0.route_localnet=1
}

routed() {
	in_ctr timeout 1 socat - "TCP4:127.0.0.1:$1,connect-timeout=1" </dev/null >/dev/null 2>&1 || true
	echo "leaked-$1" | in_ctr timeout 1 socat -u - "UDP4:127.0.0.1:$1" 2>/dev/null || true
}
# A 3000-byte datagram: the container's kernel sends it in three fragments.
routed_frags() {
	in_ctr timeout 1 socat - "TCP4:127.0.0.1:$1,connect-timeout=1" </dev/null >/dev/null 2>&1 || true
	printf '%3000s\n' "leaked-$1" | in_ctr timeout 1 socat -u - "UDP4:127.0.0.1:$1" 2>/dev/null || true
}

test_routed_to_loopback() { sec_setup; route_loopback_via_gateway; attack_matrix routed lands dropped_loopback_dst 2; }
test_routed_fragments_to_loopback() {
	sec_setup
	route_loopback_via_gateway
	attack_matrix routed_frags lands dropped_loopback_dst 4
}

# --- IPv6 -------------------------------------------------------------------
# ipv6_rcv drops ::1 from a device that is not loopback, and nothing routes
# ::ffff:127.0.0.1 to a local socket: the kernel drops both, guard or not.
# The guard drops them anyway. The same frames to the bridge's own address
# reach a service there, which proves they are well formed.

ipv6_reach() { raw_pair "$1" --src $SRC6 --dst $GW6; }
ipv6_loopback() { raw_pair "$1" --src $SRC6 --dst ::1; }
ipv6_mapped() { raw_pair "$1" --src $SRC6 --dst ::ffff:127.0.0.1; }

reach_ipv6() {
	victim "[$GW6]" $P_REACH
	ipv6_reach $P_REACH
	settle
	expect_landed $P_REACH "IPv6 to $GW6"
}

# The container's kernel sends ::1 out of eth0 once its own route says so.
route_ipv6_loopback_via_gateway() {
	in_ctr ip -6 route del local ::1 dev lo table local
	in_ctr ip -6 route add ::1/128 via $GW6 dev eth0
}

routed_ipv6() {
	in_ctr timeout 1 socat - "TCP6:[::1]:$1,connect-timeout=1" </dev/null >/dev/null 2>&1 || true
	echo "leaked-$1" | in_ctr timeout 1 socat -u - "UDP6:[::1]:$1" 2>/dev/null || true
}

test_routed_ipv6_to_loopback() {
	sec_setup
	route_ipv6_loopback_via_gateway
	attack_matrix routed_ipv6 kernel-drops dropped_loopback_dst 2
}
test_ipv6_to_loopback() { sec_setup; reach_ipv6; attack_matrix ipv6_loopback kernel-drops dropped_loopback_dst 2; }
test_ipv6_to_v4_mapped_loopback() { sec_setup; reach_ipv6; attack_matrix ipv6_mapped kernel-drops dropped_loopback_dst 2; }

# --- Tunnels ----------------------------------------------------------------
# IPIP, GRE and VXLAN to the gateway with an inner 127.0.0.1 destination,
# with a tunnel device in the host namespace so the kernel decapsulates.
# The inner packet is received on the tunnel device, whose route_localnet
# is 0: ip_route_input drops it as martian, guard or not (the guard sees
# only the outer header, to the gateway, and passes it). A run with
# route_localnet=1 on the tunnel device proves the inner packet would land.

tunnel_device() {  # ipip|gre|vxlan
	case $1 in
	ipip | gre) ip -n "$H" link add dhtun type "$1" local $GW remote $CTR 2>/dev/null ||
		skip "the kernel has no $1 tunnels" ;;
	vxlan) ip -n "$H" link add dhtun type vxlan id 42 dstport 4789 local $GW dev br0 ;;
	esac
	ip -n "$H" link set dhtun up
	TUN_MAC=$(ip -n "$H" -br link show dhtun | awk '{print $3}')
}

tunnel() {  # PORT
	local encap=(--encap "$TUN" --outer-src $CTR --outer-dst $GW)
	[ "$TUN" = vxlan ] && encap+=(--vni 42 --inner-mac "$TUN_MAC")
	raw_pair "$1" --src $CTR --dst 127.0.0.1 "${encap[@]}"
}

tunnel_matrix() {  # ipip|gre|vxlan
	TUN=$1
	sec_setup
	tunnel_device "$TUN"
	victim 127.0.0.1 $P_REACH
	# br0 too: the SYN-ACK from 127.0.0.1 leaves through it.
	in_host sysctl -qw net.ipv4.conf.dhtun.route_localnet=1 net.ipv4.conf.br0.route_localnet=1
	tunnel $P_REACH
	settle
	expect_landed $P_REACH "$TUN with route_localnet=1 on the tunnel device"
	in_host sysctl -qw net.ipv4.conf.dhtun.route_localnet=0 net.ipv4.conf.br0.route_localnet=0
	attack_matrix tunnel kernel-drops - 0
}

test_tunnel_ipip_inner_loopback() { tunnel_matrix ipip; }
test_tunnel_gre_inner_loopback() { tunnel_matrix gre; }
test_tunnel_vxlan_inner_loopback() { tunnel_matrix vxlan; }

run_tests
