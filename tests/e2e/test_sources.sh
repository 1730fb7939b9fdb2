#!/usr/bin/env bash
# Per-source counters: exact counts for a known number of connections and
# datagrams from two "containers", refused attempts, container names from
# Docker's API, `stats --by-source` and `top`. Each case in both modes.
. "$(dirname "$0")/../lib.sh"


# One field of the sources entry (SOURCE, PORT/PROTO) in 'stats
# --by-source --json'; "none" if there is no such entry.
source_field() {  # SOURCE PORT PROTO FIELD
	dh --json stats --by-source | python3 -c '
import json, sys
src, port, proto, field = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
rows = [r for r in json.load(sys.stdin)["sources"]
        if r["source"] == src and r["port"] == port and r["proto"] == proto]
assert len(rows) <= 1, rows
print(rows[0][field] if rows else "none")' "$@"
}

# Two containers on br0, services on 127.0.0.1 (8088/tcp, 8089/udp), and
# two mapped ports with nothing behind them (8090/tcp, 8091/udp).
setup_sources() {  # MODE
	C2=dh-c2-${H#dh-h-}
	make_container "$C2" br0 "$CTR2" "$GW"
	[ "$1" = socket ] && add_ipv6
	serve_tcp 8088 127.0.0.1 hello
	serve_udp 8089 127.0.0.1 pong
	[ "$1" = socket ] && serve_tcp6 8088 ::1 hello6
	dh attach br0 --mode "$1" >/dev/null
	dh port add 8088 >/dev/null
	dh port add 8089/udp >/dev/null
	dh port add 8090 >/dev/null
	dh port add 8091/udp >/dev/null
}

# Known traffic: C makes 3 TCP connections and sends 2 datagrams (each
# from its own socket: a flow each), 2 refused connections and 1 refused
# datagram; C2 makes 1 connection and sends 4 datagrams.
send_known_traffic() {
	local i
	for i in 1 2 3; do expect_eq "$(tcp_get $GW 8088)" hello "C connection $i"; done
	for i in 1 2; do expect_eq "$(udp_get $GW 8089)" pong "C datagram $i"; done
	for i in 1 2; do expect_contains "$(tcp_get $GW 8090)" "refused" "C refused connection $i"; done
	udp_get $GW 8091 >/dev/null || true
	expect_eq "$(tcp_get $GW 8088 "$C2")" hello "C2 connection"
	for i in 1 2 3 4; do expect_eq "$(udp_get $GW 8089 "$C2")" pong "C2 datagram $i"; done
}

check_exact_counts() {
	local f
	expect_eq "$(source_field $CTR 8088 tcp flows)" 3 "C: TCP flows"
	expect_eq "$(source_field $CTR 8088 tcp refused)" 0 "C: TCP refused"
	expect_eq "$(source_field $CTR 8089 udp flows)" 2 "C: UDP flows"
	expect_eq "$(source_field $CTR 8089 udp packets)" 2 "C: UDP packets"
	# A datagram of "ping\n": 14 + 20 + 8 + 5 bytes on the wire.
	expect_eq "$(source_field $CTR 8089 udp bytes)" $((2 * 47)) "C: UDP bytes"
	expect_eq "$(source_field $CTR 8090 tcp refused)" 2 "C: refused connections"
	expect_eq "$(source_field $CTR 8090 tcp refused_no_socket)" 2 "C: refused, no socket"
	expect_eq "$(source_field $CTR 8090 tcp flows)" 0 "C: a refused attempt is no flow"
	expect_eq "$(source_field $CTR 8090 tcp packets)" 0 "C: nor traffic"
	expect_eq "$(source_field $CTR 8091 udp refused)" 1 "C: refused datagram"
	expect_eq "$(source_field $CTR2 8088 tcp flows)" 1 "C2: TCP flows"
	expect_eq "$(source_field $CTR2 8089 udp flows)" 4 "C2: UDP flows"
	expect_eq "$(source_field $CTR2 8089 udp packets)" 4 "C2: UDP packets"
	expect_eq "$(source_field $CTR2 8090 tcp refused)" none "C2 tried no closed port"
	# TCP: at least the SYN, the ACK, the request and a FIN per connection
	# (how the ACKs fall is the stacks' business).
	f=$(source_field $CTR 8088 tcp packets)
	[ "$f" -ge 12 ] || fail "C: TCP packets $f, want at least 12"
	f=$(source_field $CTR2 8088 tcp packets)
	[ "$f" -ge 4 ] || fail "C2: TCP packets $f, want at least 4"
	expect_eq "$(source_field $CTR 8088 tcp refused_not_allowed)" 0 "C: nothing refused by an allow-list"
}

# An allow-list that leaves C2 out: its attempts count as refused_not_allowed
# (a new flow's first packet: each SYN, each datagram), C's as flows.
test_refused_not_allowed() {
	local i
	setup_sources "$(mode)"
	dh port add 8088 --from "$CTR/32" >/dev/null
	dh port add 8089/udp --from "$CTR/32" >/dev/null
	expect_eq "$(tcp_get $GW 8088)" hello "C, allowed"
	for i in 1 2; do expect_contains "$(tcp_get $GW 8088 "$C2")" "refused" "C2 connection $i"; done
	udp_get $GW 8089 "$C2" >/dev/null || true
	expect_eq "$(source_field $CTR2 8088 tcp refused_not_allowed)" 2 "C2: TCP not allowed"
	expect_eq "$(source_field $CTR2 8089 udp refused_not_allowed)" 1 "C2: UDP not allowed"
	expect_eq "$(source_field $CTR2 8088 tcp flows)" 0 "C2: no flow"
	expect_eq "$(source_field $CTR2 8088 tcp packets)" 0 "C2: no traffic"
	expect_eq "$(source_field $CTR 8088 tcp flows)" 1 "C: its flow"
	expect_eq "$(source_field $CTR 8088 tcp refused_not_allowed)" 0 "C: allowed"
}

test_exact_counts() {
	setup_sources "$(mode)"
	send_known_traffic
	check_exact_counts
	expect_eq "$(dh --json stats --by-source | python3 -c 'import json,sys; print(json.load(sys.stdin)["max_entries"])')" \
		16384 "the bound"
	[ "$(mode)" = socket ] || return 0
	# IPv6 (socket mode only: NAT mode redirects no IPv6).
	expect_eq "$(tcp6_get $GW6 8088)" hello6 "IPv6 connection 1"
	expect_eq "$(tcp6_get $GW6 8088)" hello6 "IPv6 connection 2"
	expect_eq "$(source_field $CTR6 8088 tcp flows)" 2 "C over IPv6: TCP flows"
	expect_eq "$(source_field $CTR 8088 tcp flows)" 3 "IPv4 counts stay apart"
}

# The text table, Docker absent (lib.sh points DOCKER_HOST at nothing):
# no names, no error.
test_stats_by_source_table() {
	local out
	setup_sources "$(mode)"
	send_known_traffic
	expect_exit 0 dh stats --by-source
	out=$OUT
	expect_not_contains "$out" "warning" "no complaint without Docker"
	expect_contains "$out" "BRIDGE" "header"
	expect_eq "$(grep -c "^br0 " <<<"$out")" 6 "one row per source and port: $out"
	expect_contains "$(grep " $CTR2 " <<<"$out" | grep 8089/udp)" " - " "no name without Docker"
	read -r -a row <<<"$(grep " $CTR " <<<"$out" | grep 8090/tcp)"
	expect_eq "${row[*]}" "br0 $CTR - 8090/tcp 0 0 0 2" "refused row"
	# --reset forgets them.
	dh stats --reset >/dev/null
	expect_eq "$(dh stats --by-source)" "no traffic to a mapped port from any source yet" "after --reset"
}

# Names where Docker knows the address (a stand-in for its API).
test_container_names() {
	local out
	serve_fake_docker
	setup_sources "$(mode)"
	send_known_traffic
	out=$(dh stats --by-source)
	expect_contains "$(grep " $CTR2 " <<<"$out" | head -1)" " web " "C2 is the container 'web': $out"
	expect_contains "$(grep " $CTR " <<<"$out" | head -1)" " - " "C is no container Docker knows: $out"
	expect_eq "$(source_field $CTR2 8089 udp container)" web "--json names it"
	expect_eq "$(source_field $CTR 8089 udp container)" None "--json: null without a name"
}

test_top_once_plain() {
	local out
	setup_sources "$(mode)"
	send_known_traffic
	# Captured: not a terminal, so plain text, no escape codes.
	expect_exit 0 dh top --count 1 --interval 0.1
	out=$OUT
	expect_not_contains "$out" $'\033' "no escape codes when not a terminal"
	expect_contains "$out" "top - " "title line"
	expect_contains "$out" "PKT/S" "rate columns"
	expect_eq "$(grep -c "^br0 " <<<"$out")" 6 "every source: $out"
	expect_eq "$(grep -c "top - " <<<"$out")" 1 "one refresh"
	expect_exit 0 dh --json top --count 2 --interval 0.05
	expect_eq "$(wc -l <<<"$OUT")" 2 "--json: one line per refresh"
	python3 -c '
import json, sys
for line in sys.stdin:
    obj = json.loads(line)
    assert len(obj["sources"]) == 6, obj
    assert all("bytes_per_second" in r for r in obj["sources"]), obj' <<<"$OUT" ||
		fail "top --json: $OUT"
}

# top ranks by rate: the source busy during the refresh comes first, though
# C has more bytes in all (and comes first in address order).
test_top_sorted_by_rate() {
	local out first busy
	setup_sources "$(mode)"
	send_known_traffic
	# C2 keeps sending for as long as top looks: whenever its interval
	# falls, C2 is the only source with traffic in it.
	( while :; do udp_get $GW 8089 "$C2" >/dev/null; sleep 0.05; done ) &
	busy=$!
	out=$(dh top --count 1 --interval 1)
	kill $busy
	wait $busy || true
	first=$(grep "^br0 " <<<"$out" | head -1)
	expect_contains "$first" " $CTR2 " "busiest first: $out"
	expect_contains "$first" "8089/udp" "busiest first: $out"
}

# Detach forgets the bridge's sources (br1 keeps the pin set).
test_detach_forgets_sources() {
	make_bridge "$H" br1 10.202.0.1
	setup_sources "$(mode)"
	dh attach br1 >/dev/null
	send_known_traffic
	expect_eq "$(source_field $CTR 8088 tcp flows)" 3 "before detach"
	dh detach br0 >/dev/null
	expect_exit 0 dh stats --by-source
	expect_eq "$OUT" "no traffic to a mapped port from any source yet" "after detach"
}

# attach --per-source off: nothing counted per source (the traffic still
# flows), what was counted goes, a plain attach keeps the setting, on
# counts again.
test_per_source_off() {
	local per
	setup_sources "$(mode)"
	expect_eq "$(tcp_get $GW 8088)" hello "counted connection"
	expect_eq "$(source_field $CTR 8088 tcp flows)" 1 "counting by default"
	expect_exit 0 dh attach br0 --per-source off
	expect_eq "$(source_field $CTR 8088 tcp flows)" none "off forgets what was counted"
	per=$(dh --json status | python3 -c 'import json,sys; print(json.load(sys.stdin)["bridges"][0]["per_source"])')
	expect_eq "$per" False "status --json per_source"
	expect_contains "$(dh status)" "per-source counters off" "status"
	send_known_traffic
	dh attach br0 >/dev/null
	expect_eq "$(tcp_get $GW 8088)" hello "after a plain attach"
	expect_exit 0 dh stats --by-source
	expect_eq "$OUT" "no traffic to a mapped port from any source yet" "nothing counted while off"
	expect_exit 0 dh attach br0 --per-source on
	expect_eq "$(tcp_get $GW 8088)" hello "counted again"
	expect_eq "$(source_field $CTR 8088 tcp flows)" 1 "on counts again"
	expect_error 2 "--per-source 'maybe'" attach br0 --per-source maybe
}

for DH_MODE in socket nat; do
	export DH_MODE
	DH_SUITE="e2e/test_sources[$DH_MODE]"
	run_tests
done
