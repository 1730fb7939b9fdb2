#!/usr/bin/env bash
# apply: the host converged to a configuration file (user/config.c), all or
# nothing, owning only what the file declares; the same namespaces as the
# e2e tests (tests/lib.sh).
. "$(dirname "$0")/../lib.sh"

CONF=  # set by conf()

conf() {  # writes its standard input to the test's configuration
	CONF=$DH_SCRATCH/dh.conf
	cat >"$CONF"
}

# A second bridge, br1, with its own address (no container on it).
second_bridge() {
	make_bridge "$H" br1 10.202.0.1
}

# What status says of bridge $1 (its JSON object on one line), or nothing.
bridge_json() {  # NAME
	dh --json status | python3 -c 'import json, sys
for b in json.load(sys.stdin)["bridges"]:
    if b["bridge"] == sys.argv[1]:
        print(json.dumps(b, separators=(",", ":")))' "$1"
}

mapped() {  # PORT/PROTO BRIDGE-OR-*: its port list JSON object, on one line
	local port=${1%/*} proto=${1#*/}
	dh --json port list | tr -d ' \n' | sed 's/},{/}\n{/g' |
		grep -F "\"bridge\":\"$2\",\"port\":$port,\"proto\":\"$proto\"" || true
}

test_apply_attaches_maps_and_converges() {
	second_bridge
	add_ipv6
	serve_tcp 9000 127.0.0.1 pong9000
	serve_tcp6 9000 ::1 pong6
	serve_udp 5353 127.0.0.1 dns
	conf <<-EOF
	# the test's configuration
	bridge br0 --gateway 10.201.0.9   # a comment after a line
	match br1*
	port 8088 --to 9000
	port 5353/udp --bridge br0 --from $CTR/32
	EOF
	expect_exit 0 dh apply "$CONF"
	expect_contains "$OUT" "br0: attach (socket mode)" "apply's output"
	expect_contains "$OUT" "br0: add gateway 10.201.0.9" "apply's output"
	expect_contains "$OUT" "br1: attach (socket mode)" "apply's output"
	expect_contains "$OUT" "8088/tcp on all bridges: add -> 127.0.0.1:9000,[::1]:9000 (open to all)" "apply's output"
	expect_contains "$OUT" "5353/udp on br0: add source $CTR/32" "apply's output"
	expect_contains "$OUT" "apply: 6 change(s) made" "apply's output"
	expect_contains "$(bridge_json br0)" '"config":true' "br0 is the configuration's"
	expect_contains "$(bridge_json br1)" '"config":true' "br1 is the configuration's"
	expect_contains "$(mapped 8088/tcp '*')" '"config":true' "8088 is the configuration's"
	expect_eq "$(tcp_get $GW 8088)" pong9000 "8088 -> 9000"
	expect_eq "$(tcp6_get $GW6 8088)" pong6 "8088 -> [::1]:9000 over IPv6"
	expect_eq "$(udp_get $GW 5353)" dns "5353/udp from the listed container"
	expect_contains "$(bridge_json br0)" '{"addr":"10.201.0.9","origin":"config"}' "the declared gateway"

	# Edited: br1 no longer matched, br0 converted to NAT mode, 8088 to
	# IPv4 alone and closed to all but the container, 5353 no longer declared.
	conf <<-EOF
	bridge br0 --mode nat
	port 8088 --to 127.0.0.1:9000 --from $CTR
	EOF
	expect_exit 0 dh apply "$CONF"
	expect_contains "$OUT" "br0: convert to nat mode" "apply's output"
	expect_contains "$OUT" "br0: remove gateway 10.201.0.9" "apply's output"
	expect_contains "$OUT" "8088/tcp on all bridges: add source $CTR/32" "apply's output"
	expect_contains "$OUT" "8088/tcp on all bridges: update -> 127.0.0.1:9000" "apply's output"
	expect_contains "$OUT" "5353/udp on br0: remove (no longer declared)" "apply's output"
	expect_contains "$OUT" "br1: detach (no longer declared)" "apply's output"
	expect_eq "$(bridge_json br1)" "" "br1 detached"
	expect_contains "$(bridge_json br0)" '"mode":"nat"' "br0 converted"
	expect_eq "$(mapped 5353/udp br0)" "" "5353/udp unmapped"
	expect_eq "$(tcp_get $GW 8088)" pong9000 "8088 in NAT mode, from the listed container"
	second_container
	expect_refused "8088 from a container not listed" tcp_get $GW 8088 "$C2"

	# Nothing declared: everything the configuration made goes.
	conf <<<"# nothing"
	expect_exit 0 dh apply "$CONF"
	expect_contains "$OUT" "br0: detach (no longer declared)" "apply's output"
	expect_eq "$(dh --json status | tr -d ' \n' | grep -o '"bridges":\[\]')" '"bridges":[]' "nothing attached"
	[ ! -e "$PIN" ] || fail "pins left after the last detach: $(ls "$PIN")"
}

test_apply_twice_changes_nothing() {
	second_bridge
	conf <<-EOF
	bridge br0 --mode nat --gateway 10.201.0.9
	bridge br1
	match br*
	port 8088 --from 10.201.0.0/24 --from any
	port 53/udp --bridge br1 --to 127.0.0.1
	port 5432 --to [::1]:5433 --bridge br1
	EOF
	expect_exit 0 dh apply "$CONF"
	local before
	before=$(config_snapshot)
	expect_exit 0 dh apply "$CONF"
	expect_eq "$OUT" "apply: nothing to change" "a second apply"
	expect_exit 0 dh --json apply "$CONF"
	expect_eq "$(echo "$OUT" | tr -d ' \n')" '{"dry_run":false,"ok":true,"changes":[]}' "a second apply, --json"
	expect_eq "$(config_snapshot)" "$before" "status after a second apply"
}

test_apply_dry_run_changes_nothing() {
	conf <<-EOF
	bridge br0
	port 8088
	EOF
	local before
	before=$(dh --json status)
	expect_exit 0 dh apply --dry-run "$CONF"
	expect_contains "$OUT" "br0: attach (socket mode)" "dry run's output"
	expect_contains "$OUT" "apply: dry run: 2 change(s) to make, none made" "dry run's output"
	expect_eq "$(dh --json status)" "$before" "status after a dry run on an empty host"
	[ ! -e "$PIN" ] || fail "a dry run made pins"

	expect_exit 0 dh apply "$CONF"
	conf <<-EOF
	bridge br0 --mode nat
	port 9090/udp
	EOF
	before=$(config_snapshot)
	expect_exit 0 dh --json apply --dry-run "$CONF"
	expect_contains "$(echo "$OUT" | tr -d ' \n')" '"dry_run":true' "--json --dry-run"
	expect_contains "$(echo "$OUT" | tr -d ' \n')" '"action":"convert","bridge":"br0"' "--json --dry-run"
	expect_contains "$(echo "$OUT" | tr -d ' \n')" '"action":"remove_port","bridge":"*","port":8088' "--json --dry-run"
	expect_eq "$(config_snapshot)" "$before" "status after a dry run"
}

test_apply_bad_line_changes_nothing() {
	conf <<-EOF
	bridge br0
	port 8088
	EOF
	mkdir "$DH_SCRATCH/dh.d"
	printf 'port 9000\n' >"$DH_SCRATCH/dh.d/10-good.conf"
	printf '# ok\n\nport 9001 --to 127.0.0.2:9002 --form 10.0.0.0/8\n' >"$DH_SCRATCH/dh.d/20-bad.conf"
	printf 'port 80 --nonsense\n' >"$DH_SCRATCH/dh.d/30-not-read.txt"
	expect_error 2 "$DH_SCRATCH/dh.d/20-bad.conf:3: port: unexpected '--form'" apply "$CONF"
	[ ! -e "$PIN" ] || fail "a bad line changed something: $(dh status)"

	local line
	for line in "bridge" "bridge br0/x" "brige br0" "port 0" "port 8088/sctp" "port 80 --to 10.0.0.1" \
		"port 80 --from 10.0.0.1/8" "port 80 --from 10.0.0" "port 80 --bridge nope" "match br* --gateway 10.0.0.1" \
		"bridge br0 --mode fast" "bridge br0 --gateway 127.0.0.1" "port 80 --to" "bridge br1 --mode nat
port 80 --bridge br1 --to ::1" "port 80
port 80/tcp"; do
		printf 'bridge br0\n%s\n' "$line" >"$DH_SCRATCH/dh.d/20-bad.conf"
		expect_exit 2 dh apply "$CONF"
		expect_contains "$OUT" "$DH_SCRATCH/dh.d/20-bad.conf:" "the error names the file"
		[ "$(printf '%s\n' "$OUT" | wc -l)" = 1 ] || fail "more than one line: $OUT"
	done
	[ ! -e "$PIN" ] || fail "a bad line changed something: $(dh status)"
	rm "$DH_SCRATCH/dh.d/20-bad.conf"

	# All or nothing on the host too: a bridge that is not there, br0 stays
	# unattached although it is.
	printf 'bridge br7\n' >"$DH_SCRATCH/dh.d/20-missing.conf"
	expect_error 1 "$DH_SCRATCH/dh.d/20-missing.conf:1: bridge 'br7': no such device" apply "$CONF"
	[ ! -e "$PIN" ] || fail "a missing bridge changed something: $(dh status)"
	expect_error 2 "cannot read" apply "$DH_SCRATCH/nonexistent.conf"
	expect_error 2 "apply: unknown option '--force'" apply --force "$CONF"
}

test_apply_leaves_hand_made_state() {
	second_bridge
	dh attach br1 --gateway 10.202.0.7
	dh port add 7777
	dh port add 8088 --bridge br1 --from 10.202.0.0/24
	conf <<-EOF
	bridge br0
	port 8088 --from $CTR
	EOF
	expect_exit 0 dh apply "$CONF"
	expect_not_contains "$OUT" "br1" "apply on br1, made by hand"
	expect_not_contains "$OUT" "7777" "apply on 7777, made by hand"
	conf <<<"# nothing"
	expect_exit 0 dh apply "$CONF"
	expect_contains "$OUT" "br0: detach" "the configuration's bridge"
	expect_contains "$OUT" "8088/tcp on all bridges: remove" "the configuration's mapping"
	expect_contains "$(bridge_json br1)" '"config":false' "br1, made by hand, stays"
	expect_contains "$(dh --json status | tr -d ' \n')" '"addr":"10.202.0.7"' "br1's hand-made gateway stays"
	expect_contains "$(mapped 7777/tcp '*')" '"config":false' "7777, made by hand, stays"
	expect_contains "$(mapped 8088/tcp br1)" '"source":"10.202.0.0/24"' "br1's 8088, made by hand, stays"
	expect_eq "$(mapped 8088/tcp '*')" "" "the configuration's 8088 went"
}

# What the configuration declares that exists already, made by hand, is
# adopted: converged, then removed when no longer declared. A hand-made
# source beside it stays, and keeps its mapping when the configuration lets go.
test_apply_adopts_what_it_declares() {
	serve_tcp 9001 127.0.0.1 pong
	dh attach br0
	dh port add 8088 --to 9000
	dh port add 5432 --from 10.201.0.0/24
	conf <<-EOF
	bridge br0
	port 8088 --to 9001
	port 5432 --from $CTR
	EOF
	expect_exit 0 dh apply "$CONF"
	expect_contains "$OUT" "br0: adopt (attached by hand before)" "apply's output"
	expect_contains "$OUT" "8088/tcp on all bridges: adopt (mapped by hand before) -> 127.0.0.1:9001" "apply's output"
	expect_contains "$(bridge_json br0)" '"config":true' "br0 adopted"
	expect_eq "$(tcp_get $GW 8088)" pong "8088 converged to 9001"
	expect_exit 0 dh apply "$CONF"
	expect_eq "$OUT" "apply: nothing to change" "after adopting"
	conf <<<"bridge br0"
	expect_exit 0 dh apply "$CONF"
	expect_contains "$OUT" "8088/tcp on all bridges: remove (no longer declared)" "apply's output"
	expect_contains "$OUT" "5432/tcp on all bridges: release" "apply's output"
	expect_eq "$(mapped 8088/tcp '*')" "" "8088 removed"
	expect_contains "$(mapped 5432/tcp '*')" '"source":"10.201.0.0/24"' "5432 kept for its hand-made source"
	expect_not_contains "$(mapped 5432/tcp '*')" "\"source\":\"$CTR/32\"" "the configuration's source went"
	expect_contains "$(mapped 5432/tcp '*')" '"config":false' "5432 released"
}

# A change that fails half-way undoes what apply added: the host is as
# before (DH_TEST_APPLY_FAIL_AT fails the Nth step).
test_apply_undoes_a_failed_change() {
	second_bridge
	dh attach br1
	dh port add 7777
	conf <<-EOF
	bridge br0
	port 8088
	port 8089 --from $CTR
	EOF
	local before step
	before=$(config_snapshot)
	for step in 1 2 3 4; do
		DH_TEST_APPLY_FAIL_AT=$step expect_exit 1 dh apply "$CONF"
		expect_contains "$OUT" "apply failed" "step $step"
		expect_eq "$(config_snapshot)" "$before" "status after a failure at step $step"
	done
	expect_exit 0 dh apply "$CONF"
	expect_contains "$(mapped 8089/tcp '*')" '"config":true' "then applied"
}

# The bridges' modes check the ports the configuration maps on them.
test_apply_checks_ports_against_modes() {
	conf <<-EOF
	bridge br0 --mode nat
	port 8088 --bridge br0 --to [::1]:8088
	EOF
	expect_error 2 "dh.conf:2: port 8088/tcp: br0 is in NAT mode, which cannot redirect IPv6" apply "$CONF"
	conf <<-EOF
	bridge br0
	port 53/udp --to 5353
	EOF
	expect_error 1 "dh.conf:2: port 53/udp: socket mode cannot answer a UDP port from another port (br0 is in socket mode)" \
		apply "$CONF"
	[ ! -e "$PIN" ] || fail "a refused configuration changed something"
	conf <<-EOF
	port 8088
	EOF
	expect_error 1 "no bridge is declared or attached to map it on" apply "$CONF"
	# --bridge names a bridge a match line fits: there, or an error.
	conf <<-EOF
	match brz*
	port 22 --bridge brz0
	EOF
	expect_error 1 "dh.conf:2: port 22/tcp --bridge brz0: no such bridge" apply "$CONF"
	[ ! -e "$PIN" ] || fail "a refused configuration changed something"
	conf <<-EOF
	match br*
	port 22 --bridge br0
	EOF
	expect_exit 0 dh apply "$CONF"
	expect_contains "$OUT" "22/tcp on br0: add" "a port on a matched bridge"
}

run_tests
