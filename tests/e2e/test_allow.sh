#!/usr/bin/env bash
# Allow-lists (port add --from): a mapping with a list serves its sources
# only; any other container gets what an unmapped port gives (RST, port
# unreachable from the gateway), counted in passed_not_allowed. The runner
# runs this file once per mode (DH_MODE=nat, DH_MODE=socket).
. "$(dirname "$0")/../lib.sh"

CTR2_6=fd42:201::3

test_allowed_and_disallowed_cidrs() {
	serve_tcp 8088 127.0.0.1 pong
	serve_udp 8089 127.0.0.1 upong
	second_container
	dh attach br0
	dh port add 8088 --from "$CTR/32"
	dh port add 8089/udp --from "$CTR"
	expect_eq "$(tcp_get $GW 8088)" pong "tcp, listed container"
	expect_eq "$(udp_get $GW 8089)" upong "udp, listed container"
	expect_refused "tcp, second container" tcp_get $GW 8088 "$C2"
	expect_refused "udp, second container" udp_get $GW 8089 "$C2"
	[ "$(counter passed_not_allowed)" -ge 2 ] || fail "passed_not_allowed: $(counter passed_not_allowed)"
	# Still served after the refusals (socket mode: targets holds the
	# socket the first container's SYN put there; sk_lookup says no).
	expect_eq "$(tcp_get $GW 8088)" pong "tcp, listed container, again"
	expect_refused "tcp, second container, again" tcp_get $GW 8088 "$C2"

	# A wider prefix lets both in; taking it out leaves the /32.
	dh port add 8088 --from 10.201.0.0/24
	expect_eq "$(tcp_get $GW 8088 "$C2")" pong "second container, /24 added"
	dh port del 8088 --from 10.201.0.0/24
	expect_refused "second container, /24 removed" tcp_get $GW 8088 "$C2"
	expect_eq "$(tcp_get $GW 8088)" pong "first container, /24 removed"

	# The last source out: closed to all, never open.
	expect_exit 0 dh port del 8088 --from "$CTR/32"
	expect_contains "$OUT" "closed to all" "port del of the last source"
	expect_refused "first container, list empty" tcp_get $GW 8088
	expect_refused "second container, list empty" tcp_get $GW 8088 "$C2"
	expect_contains "$(dh port list)" "from: nobody (allow-list empty: closed to all)" "port list, empty list"
	# A plain port add (a new --to) keeps the list: still closed.
	dh port add 8088 --to 8088
	expect_refused "first container, after a plain port add" tcp_get $GW 8088
	# Open to all on purpose.
	dh port add 8088 --from any
	expect_eq "$(tcp_get $GW 8088)" pong "first container, --from any"
	expect_eq "$(tcp_get $GW 8088 "$C2")" pong "second container, --from any"
	# port del without --from removes the mapping and its list: a new
	# port add is open to all, as a mapping that never had --from.
	dh port del 8088
	expect_not_contains "$(dh port list)" "8088/tcp" "port del removed the mapping"
	dh port add 8088
	expect_eq "$(tcp_get $GW 8088 "$C2")" pong "second container, list gone with the mapping"
	expect_eq "$(dh --json port list | grep -c '"allow":null')" 1 "an open mapping show allow null"
}

# A bridge's own entry (attach --port, port add --bridge) has its own list.
test_bridge_entry_list() {
	serve_tcp 8088 127.0.0.1 pong
	second_container
	dh attach br0 --port 8088
	dh port add 8088 --bridge br0 --from "$CTR2"
	expect_eq "$(tcp_get $GW 8088 "$C2")" pong "listed on the bridge entry"
	expect_refused "not listed on the bridge entry" tcp_get $GW 8088
	# A re-attach (watch does it) keeps the list.
	dh attach br0 --port 8088
	expect_refused "not listed, after a re-attach" tcp_get $GW 8088
	expect_contains "$(dh --json status | tr -d ' \n')" '"source":"10.201.0.3/32"' "status --json shows the source"
	# Detach forgets the bridge's lists (another bridge keeps the pin set).
	make_bridge "$H" br1 10.203.0.1
	dh attach br1
	[ "$(bpftool -j map dump pinned "$PIN/allow4" | grep -o '"key"' | wc -l)" -gt 0 ] || fail "allow4 empty before detach"
	dh detach br0
	expect_eq "$(bpftool -j map dump pinned "$PIN/allow4" | grep -o '"key"' | wc -l)" 0 "allow4 after detach"
	expect_eq "$(bpftool -j map dump pinned "$PIN/allow_sources" | grep -o '"key"' | wc -l)" 0 "allow_sources after detach"
}

# port add --from without --bridge lists SPEC everywhere it is mapped: a
# bridge's own entry wins over the all-bridges one, and must not stay open.
test_global_from_covers_bridge_entries() {
	serve_tcp 8088 127.0.0.1 pong
	second_container
	dh attach br0 --port 8088
	expect_exit 0 dh port add 8088 --from "$CTR2"
	expect_contains "$OUT" "8088/tcp on br0 (its own entry): allow-list updated" "port add says where"
	expect_eq "$(tcp_get $GW 8088 "$C2")" pong "listed"
	expect_refused "not listed, br0's own entry" tcp_get $GW 8088
	dh port del 8088 --from "$CTR2"
	expect_refused "list emptied everywhere" tcp_get $GW 8088 "$C2"
}

test_ipv6_sources() {
	[ "$(mode)" = socket ] || exit 78  # NAT mode never redirects IPv6
	add_ipv6
	second_container
	in_ctr_ip6() { ip -n "$C2" addr add "$CTR2_6/64" dev eth0 nodad; }
	in_ctr_ip6
	serve_tcp6 8088 ::1 pong6
	serve_udp6 8089 ::1 upong6
	dh attach br0
	dh port add 8088 --from "$CTR6/128"
	dh port add 8089/udp --from fd42:201::/126 --from 10.201.0.0/24
	expect_eq "$(tcp6_get $GW6 8088)" pong6 "tcp6, listed"
	expect_refused "tcp6, not listed" tcp6_get $GW6 8088 "$C2"
	expect_eq "$(udp6_get $GW6 8089 "$C2")" upong6 "udp6, in the /126"
	dh port del 8089/udp --from fd42:201::/126
	expect_refused "udp6, /126 removed" udp6_get $GW6 8089 "$C2"
}

# --from a Docker container or network, resolved through the API (here
# the fake one of tests/cli, which knows $CTR as container "web").
test_docker_sources() {
	serve_fake_docker
	serve_tcp 8088 127.0.0.1 pong
	second_container
	dh attach br0
	expect_exit 0 dh port add 8088 --from web
	expect_contains "$OUT" "from: web (container: 10.201.0.2/32 fd42:201::2/128 10.209.0.5/32)" "port add --from web"
	expect_eq "$(tcp_get $GW 8088)" pong "container web"
	expect_refused "not container web" tcp_get $GW 8088 "$C2"
	dh --json port list | tr -d ' \n' | grep -q '"source":"web","kind":"container","prefixes":\["10.201.0.2/32"' ||
		fail "port list --json: $(dh --json port list)"
	# The network's subnet lets the second one in; out again with it.
	dh port add 8088 --from appnet
	expect_eq "$(tcp_get $GW 8088 "$C2")" pong "network appnet"
	dh port del 8088 --from appnet
	expect_refused "network appnet removed" tcp_get $GW 8088 "$C2"
	# A prefix two sources hold stays until both are gone.
	dh port add 8088 --from 10.201.0.2
	dh port del 8088 --from web
	expect_eq "$(tcp_get $GW 8088)" pong "10.201.0.2 still listed on its own"
	dh port del 8088 --from 10.201.0.2/32
	expect_refused "both gone" tcp_get $GW 8088
}

run_tests
