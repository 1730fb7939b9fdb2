#!/usr/bin/env bash
# watch: bridges attached as they appear, forgotten as they go, gateway
# sets following address changes; the same namespaces as the other e2e tests.
. "$(dirname "$0")/../lib.sh"

attached() {  # BRIDGE
	dh --json status | grep -q "\"bridge\":\"$1\""
}

test_follows_bridges_and_addresses() {
	serve_tcp 8088 127.0.0.1 pong
	make_bridge "$H" lxcbr0 10.209.0.1  # does not match
	start_watch --match 'br*' --port 8088
	wait_for "br0, present at start, attached" "attached br0"
	expect_eq "$(tcp_get $GW 8088)" pong "br0 after start"
	attached lxcbr0 && fail "lxcbr0 does not match 'br*' but was attached"

	# A bridge created later, its address a moment after (as Docker does).
	local c5=dh-c5-$RANDOM$RANDOM
	in_host ip link add br5 type bridge
	in_host ip link set br5 up
	wait_for "br5 attached" "attached br5"
	in_host ip addr add 10.205.0.1/24 dev br5
	make_container "$c5" br5 10.205.0.2 10.205.0.1
	wait_for "br5's gateway" "dh --json status | grep -q '10.205.0.1'"
	expect_eq "$(tcp_get 10.205.0.1 8088 "$c5")" pong "br5's container, --port from watch"

	# A second address comes and goes; the gateway set follows.
	in_host ip addr add 10.205.1.1/24 dev br5
	wait_for "new gateway" "dh --json status | grep -q '10.205.1.1'"
	in_host ip addr del 10.205.1.1/24 dev br5
	wait_for "gateway removed" "! dh --json status | grep -q '10.205.1.1'"

	in_host ip link del br5
	wait_for "br5 forgotten" "! attached br5"
	stop_watch
	attached br0 || fail "br0 detached by stopping watch"
	expect_eq "$(tcp_get $GW 8088)" pong "br0 after watch stopped"
}

# True once PID blocks or catches SIGTERM (watch took it over). PID must
# be watch itself by then: before exec it is still bash, or ip, whose
# signal masks say nothing about watch.
sigterm_taken() {  # PID
	local blk cgt
	[ "$(cat "/proc/$1/comm" 2>/dev/null)" = dockhost-bpf ] || return 1
	blk=$(sed -n 's/^SigBlk:\t//p' "/proc/$1/status" 2>/dev/null) || return 1
	cgt=$(sed -n 's/^SigCgt:\t//p' "/proc/$1/status" 2>/dev/null) || return 1
	[ -n "$blk" ] && (( (0x$blk | 0x$cgt) & (1 << 14) ))
}

# SIGTERM at a random moment once watch has taken it over (during the
# listing, an attach, or just before it waits for events) ends it, with
# --detach-on-exit done, every time. Odd runs stretch the gap before each
# wait (a test-only delay), where a signal used to be missed: watch then
# slept in recvfrom until the next netlink event, and here none comes.
test_sigterm_at_any_moment() {
	local i pid rc delay log=$DH_SCRATCH/watch.log
	for i in $(seq 20); do
		delay=0.0$((RANDOM % 10))$((RANDOM % 10))
		if (( i % 2 )); then
			export DH_TEST_WATCH_WAIT_DELAY_MS=20
		else
			unset DH_TEST_WATCH_WAIT_DELAY_MS
		fi
		ip netns exec "$H" "$DH_BIN" --pin-dir "$PIN" watch --match 'br*' --detach-on-exit >"$log" 2>&1 &
		pid=$!
		wait_for "watch $i to take over SIGTERM" "sigterm_taken $pid"
		sleep "$delay"
		kill -TERM "$pid"
		if ! timeout 10 tail -s 0.05 --pid="$pid" -f /dev/null; then
			kill -KILL "$pid"
			fail "run $i: watch still running 10 s after SIGTERM ${delay}s after start: $(cat "$log")"
		fi
		rc=0
		wait "$pid" || rc=$?
		expect_eq "$rc" 0 "run $i: exit code after SIGTERM ${delay}s after start ($(cat "$log"))"
		[ ! -e "$PIN" ] || fail "run $i: pins left after --detach-on-exit: $(cat "$log")"
		expect_eq "$(in_host sysctl -n net.ipv4.conf.br0.route_localnet)" 0 "run $i: route_localnet"
	done
	unset DH_TEST_WATCH_WAIT_DELAY_MS
}

test_repairs_a_removed_guard() {
	# Nothing tells watch that a program or the pins went: it checks every
	# few seconds and puts them back.
	start_watch --match 'br*'
	wait_for "br0 attached" "attached br0"
	remove_our_program ingress
	expect_contains "$(dh status)" MISSING "status right after the removal"
	wait_for "the guard back on br0" "! dh status | grep -q MISSING"
	expect_contains "$(cat "$WATCH_LOG")" "br0: re-attached" "watch says so"
	expect_eq "$(our_programs)" "ingress dh_ingress" "repaired as socket mode attaches: the guard alone"
	note_cgroup_ids  # the lost pin set's stay on the cgroup root
	rm -rf "$PIN"
	wait_for "a new pin set with br0" "dh --json status | grep -q '\"attached\":true'"
	kill -0 "$WATCH_PID" 2>/dev/null || fail "watch ended: $(cat "$WATCH_LOG")"
	stop_watch
}

test_detach_on_exit() {
	start_watch --match 'br*' --mode nat --detach-on-exit
	wait_for "br0 attached" "attached br0"
	expect_eq "$(in_host sysctl -n net.ipv4.conf.br0.route_localnet)" 1 "route_localnet while watched"
	stop_watch
	[ ! -e "$PIN" ] || fail "pins left after --detach-on-exit: $(ls "$PIN")"
	expect_eq "$(in_host sysctl -n net.ipv4.conf.br0.route_localnet)" 0 "route_localnet restored"
}

# Link messages far larger than a page: 280 alternative names of 127 bytes
# make each RTM_NEWLINK about br0 some 38 KiB (the kernel allows 64 KiB).
# Watch must read them whole (its initial listing, the attach's lookup and
# later events), not die of a truncated read.
test_oversized_link_messages() {
	local batch=$DH_SCRATCH/altnames k i line
	for k in $(seq 40); do
		line="link property add dev br0"
		for i in $(seq 7); do
			line+=" altname $(printf 'a%02d%d_%0120d' "$k" "$i" 0)"
		done
		echo "$line"
	done >"$batch"
	in_host ip -batch "$batch"
	rm -f "$batch"
	expect_eq "$(in_host ip link show br0 | grep -c altname)" 280 "altnames on br0"

	start_watch --match 'br*'
	wait_for "br0 attached" "attached br0"
	in_host ip link set br0 mtu 1400  # one more oversized event
	in_host ip addr add 10.201.9.1/24 dev br0
	wait_for "br0's new gateway" "dh --json status | grep -q '10.201.9.1'"
	kill -0 "$WATCH_PID" 2>/dev/null || fail "watch ended: $(cat "$WATCH_LOG")"
	expect_not_contains "$(cat "$WATCH_LOG")" truncated "watch's log"
	stop_watch
}

# Events lost to a receive buffer overrun (ENOBUFS): watch lists links and
# addresses again. A test-only knob shrinks its buffer to a few KiB, then
# one burst creates 120 bridges outside the match, two bridges with addresses, deletes a
# watched bridge and adds an address to another: watch must end up right.
test_resync_after_overrun() {
	local batch=$DH_SCRATCH/batch i
	make_bridge "$H" br9 10.209.0.1
	DH_TEST_WATCH_RCVBUF=1 start_watch --match 'br*'
	wait_for "br0 attached" "attached br0"
	wait_for "br9 attached" "attached br9"
	{
		for i in $(seq 60); do echo "link add nb$i type bridge"; done
		echo "link add br1 type bridge"
		echo "link add br2 type bridge"
		echo "address add 10.211.0.1/24 dev br1"
		echo "address add 10.212.0.1/24 dev br2"
		echo "link del br9"
		echo "address add 10.201.3.1/24 dev br0"
		for i in $(seq 61 120); do echo "link add nb$i type bridge"; done
	} >"$batch"
	in_host ip -batch "$batch"
	rm -f "$batch"
	wait_for "an overrun reported" "grep -q 'overrun' '$WATCH_LOG'"
	wait_for "br1 attached with its gateway" "dh --json status | grep -q '10.211.0.1'"
	wait_for "br2 attached with its gateway" "dh --json status | grep -q '10.212.0.1'"
	wait_for "br0's new gateway" "dh --json status | grep -q '10.201.3.1'"
	wait_for "br9 forgotten" "! attached br9"
	kill -0 "$WATCH_PID" 2>/dev/null || fail "watch ended: $(cat "$WATCH_LOG")"
	stop_watch
}

# --port is applied when watch first attaches a bridge, never on a later
# refresh: a user's 'port add --to' and 'port del --bridge' outlive the next
# address change. A bridge that appears later still gets --port.
test_port_edits_survive_refresh() {
	local ports
	serve_tcp 8088 127.0.0.1 pong
	serve_tcp 9099 127.0.0.1 moved
	start_watch --match 'br*' --port 8088 --port 8089
	wait_for "br0 attached" "attached br0"
	expect_eq "$(tcp_get $GW 8088)" pong "8088 from --port"
	dh port add 8088 --to 9099 --bridge br0 >/dev/null
	dh port del 8089 --bridge br0 >/dev/null

	in_host ip addr add 10.201.4.1/24 dev br0  # a refresh of br0
	wait_for "br0's new gateway" "dh --json status | grep -q '10.201.4.1'"
	ports=$(dh --json port list | tr -d ' \n')
	expect_contains "$ports" '"bridge":"br0","port":8088,"proto":"tcp","to_addr":"127.0.0.1","to_addr6":"::1","to_port":9099' \
		"8088 --to 9099 after the refresh"
	expect_not_contains "$ports" '"port":8089' "8089 deleted, after the refresh"
	expect_eq "$(tcp_get $GW 8088)" moved "8088 after the refresh"

	in_host ip link add br5 type bridge
	wait_for "br5 attached" "attached br5"
	ports=$(dh --json port list | tr -d ' \n')
	expect_contains "$ports" '"bridge":"br5","port":8089' "--port on a bridge that appeared later"
	stop_watch
}

# A failed read of a bridge's addresses is not "no addresses": attach's and
# watch's refreshes keep the gateways and say so. The failure is injected
# with the test-only DH_TEST_FAIL_ADDR_DUMP=1 (every address read fails).
test_addr_read_error_keeps_gateways() {
	serve_tcp 8088 127.0.0.1 pong
	in_host ip addr add 10.201.6.1/24 dev br0
	dh attach br0 --port 8088 >/dev/null
	expect_exit 0 env DH_TEST_FAIL_ADDR_DUMP=1 ip netns exec "$H" "$DH_BIN" --pin-dir "$PIN" attach br0
	expect_contains "$OUT" "cannot read br0's addresses" "attach's warning"
	expect_contains "$OUT" "gateways 10.201" "attach's report"
	expect_contains "$(dh --json status)" '10.201.0.1' "first gateway after attach"
	expect_contains "$(dh --json status)" '10.201.6.1' "second gateway after attach"
	expect_eq "$(tcp_get $GW 8088)" pong "after the failed read"

	DH_TEST_FAIL_ADDR_DUMP=1 start_watch --match 'br*'
	in_host ip addr add 10.201.7.1/24 dev br0  # a refresh of br0, whose read fails
	wait_for "watch's refresh" "[ \$(grep -c 'keeping the gateways' '$WATCH_LOG') -ge 2 ]"
	expect_contains "$(dh --json status)" '10.201.0.1' "first gateway after watch's refresh"
	expect_contains "$(dh --json status)" '10.201.6.1' "second gateway after watch's refresh"
	expect_eq "$(tcp_get $GW 8088)" pong "after watch's failed read"
	stop_watch
}

test_watch_bad_input() {
	expect_exit 2 dh watch --port 0
	expect_contains "$OUT" "'0'" "bad port"
	expect_exit 2 dh watch extra
	expect_contains "$OUT" "'extra'" "extra argument"
	expect_exit 2 dh watch --hook nope
	expect_contains "$OUT" "'nope'" "bad hook"
}

run_tests
