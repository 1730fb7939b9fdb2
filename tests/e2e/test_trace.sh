#!/usr/bin/env bash
# `dockhost-bpf trace`: a line per event kind, in both modes and both
# families, --json line by line, SIGTERM ends it with exit 0 and every
# line written, tracing is off again once it has ended, and it never holds
# the pin dir's lock.
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"

RAWFRAME=${DH_RAWFRAME:-$DH_ROOT/.output/rawframe}

# trace_ctl's entry as "ENABLED PID", read through bpftool (BTF names).
trace_ctl() {
	bpftool --json map lookup pinned "$PIN/trace_ctl" key 0 0 0 0 |
		python3 -c 'import json,sys; v=json.load(sys.stdin)["formatted"]["value"]; print(v["enabled"], v["pid"])'
}

# Starts `trace ARGS...` in the background, output to FILE; returns once
# it has enabled tracing. Its pid is in $TRACE_PID.
trace_start() {  # FILE ARGS...
	local file=$1 i
	shift
	# Not through dh(): $! must be the CLI's pid (ip netns exec execs it).
	ip netns exec "$H" "$DH_BIN" --pin-dir "$PIN" trace "$@" >"$file" 2>"$file.err" &
	TRACE_PID=$!
	for i in $(seq 100); do
		[ "$(trace_ctl)" = "1 $TRACE_PID" ] && return 0
		kill -0 "$TRACE_PID" 2>/dev/null || fail "trace exited: $(cat "$file.err")"
		sleep 0.05
	done
	fail "trace never enabled trace_ctl: $(trace_ctl)"
}

# Sends SIGTERM; expects exit 0 and tracing off.
trace_stop() {
	local rc=0
	kill -TERM "$TRACE_PID"
	wait "$TRACE_PID" || rc=$?
	expect_eq "$rc" 0 "trace's exit code on SIGTERM"
	expect_eq "$(trace_ctl)" "0 0" "trace_ctl after trace ended"
}

# Waits (bounded) for a line of FILE matching the extended regex RE.
wait_line() {  # FILE RE
	local i
	for i in $(seq 100); do
		grep -qE "$2" "$1" && return 0
		sleep 0.05
	done
	fail "no line matching '$2' in: $(cat "$1")"
}

attach_mode() {  # MODE
	add_ipv6
	ip netns exec "$H" "$DH_BIN" --pin-dir "$PIN" attach br0 --mode "$1" >/dev/null
	dh port add 8080 >/dev/null
	dh port add 8080/udp >/dev/null
	dh port add 8081 >/dev/null  # nothing listens behind it
}

test_socket_mode_flows_and_refusals() {
	local out=$DH_SCRATCH/trace
	attach_mode socket
	serve_tcp 8080 127.0.0.1 four
	serve_tcp6 8080 ::1 six
	serve_udp 8080 127.0.0.1 four-udp
	serve_udp6 8080 ::1 six-udp
	trace_start "$out"
	expect_eq "$(tcp_get $GW 8080)" four "IPv4 TCP through the trace"
	expect_eq "$(tcp6_get $GW6 8080)" six "IPv6 TCP"
	expect_eq "$(udp_get $GW 8080)" four-udp "IPv4 UDP"
	expect_eq "$(udp6_get $GW6 8080)" six-udp "IPv6 UDP"
	tcp_get $GW 8081 >/dev/null || true
	tcp6_get $GW6 8081 >/dev/null || true
	wait_line "$out" "refused +br0 tcp \[$CTR6\]:[0-9]+ \[$GW6\]:8081 -> \[::1\]:8081 passed_no_socket$"
	trace_stop
	grep -qE "^[0-9:.]+ flow +br0 tcp $CTR:[0-9]+ $GW:8080 -> 127\.0\.0\.1:8080 assigned$" "$out" ||
		fail "no IPv4 TCP flow line: $(cat "$out")"
	grep -qE "^[0-9:.]+ flow +br0 tcp \[$CTR6\]:[0-9]+ \[$GW6\]:8080 -> \[::1\]:8080 assigned$" "$out" ||
		fail "no IPv6 TCP flow line: $(cat "$out")"
	grep -qE "^[0-9:.]+ flow +br0 udp $CTR:[0-9]+ $GW:8080 -> 127\.0\.0\.1:8080 assigned$" "$out" ||
		fail "no IPv4 UDP flow line: $(cat "$out")"
	grep -qE "^[0-9:.]+ flow +br0 udp \[$CTR6\]:[0-9]+ \[$GW6\]:8080 -> \[::1\]:8080 assigned$" "$out" ||
		fail "no IPv6 UDP flow line: $(cat "$out")"
	grep -qE "^[0-9:.]+ refused +br0 tcp $CTR:[0-9]+ $GW:8081 -> 127\.0\.0\.1:8081 passed_no_socket$" "$out" ||
		fail "no IPv4 refusal line: $(cat "$out")"
	# One flow each: a connection is one event, not one per packet.
	expect_eq "$(grep -c ' flow ' "$out")" 4 "flow lines"
}

test_nat_mode_flows_and_refusals() {
	local out=$DH_SCRATCH/trace
	attach_mode nat
	serve_tcp 8080 127.0.0.1 four
	serve_udp 8080 127.0.0.1 four-udp
	trace_start "$out"
	expect_eq "$(tcp_get $GW 8080)" four "IPv4 TCP through the trace"
	expect_eq "$(udp_get $GW 8080)" four-udp "IPv4 UDP"
	tcp_get $GW 8081 >/dev/null || true
	wait_line "$out" "refused +br0 tcp $CTR:[0-9]+ $GW:8081 -> 127\.0\.0\.1:8081 passed_no_socket$"
	trace_stop
	grep -qE "^[0-9:.]+ flow +br0 tcp $CTR:[0-9]+ $GW:8080 -> 127\.0\.0\.1:8080 redirected$" "$out" ||
		fail "no TCP flow line: $(cat "$out")"
	grep -qE "^[0-9:.]+ flow +br0 udp $CTR:[0-9]+ $GW:8080 -> 127\.0\.0\.1:8080 redirected$" "$out" ||
		fail "no UDP flow line: $(cat "$out")"
	expect_eq "$(grep -c ' flow ' "$out")" 2 "flow lines"
}

# A source the port's allow-list does not name: one disallowed line per
# attempt, the container gets what an unmapped port gives.
test_disallowed_sources() {
	local out=$DH_SCRATCH/trace mode
	add_ipv6
	serve_tcp 8080 127.0.0.1 four
	for mode in socket nat; do
		ip netns exec "$H" "$DH_BIN" --pin-dir "$PIN" attach br0 --mode $mode >/dev/null
		dh port add 8080 --from 10.201.0.99/32 >/dev/null
		dh port add 8080 --from fd42:201::99/128 >/dev/null
		dh port add 8080/udp --from 10.201.0.99/32 >/dev/null
		trace_start "$out.$mode"
		tcp_get $GW 8080 >/dev/null || true
		udp_get $GW 8080 >/dev/null || true
		wait_line "$out.$mode" "disallowed +br0 tcp $CTR:[0-9]+ $GW:8080 passed_not_allowed$"
		wait_line "$out.$mode" "disallowed +br0 udp $CTR:[0-9]+ $GW:8080 passed_not_allowed$"
		if [ $mode = socket ]; then
			tcp6_get $GW6 8080 >/dev/null || true
			wait_line "$out.$mode" "disallowed +br0 tcp \[$CTR6\]:[0-9]+ \[$GW6\]:8080 passed_not_allowed$"
		fi
		trace_stop
		expect_eq "$(grep -cE ' (flow|refused) ' "$out.$mode")" 0 "flows or refusals of a disallowed source ($mode)"
		dh detach br0 >/dev/null
	done
}

# A crafted frame with a loopback source: a guard_drop line with the
# container's MAC, in both families.
test_guard_drop() {
	local out=$DH_SCRATCH/trace mac br_mac
	[ -x "$RAWFRAME" ] || fail "$RAWFRAME missing: run make"
	attach_mode socket
	mac=$(ip -n "$C" -br link show eth0 | awk '{print $3}')
	br_mac=$(ip -n "$H" -br link show br0 | awk '{print $3}')
	trace_start "$out"
	in_ctr "$RAWFRAME" eth0 --dst-mac "$br_mac" --src 127.0.0.1 --dst $GW --proto tcp --sport 1 --dport 8080
	in_ctr "$RAWFRAME" eth0 --dst-mac "$br_mac" --src $CTR6 --dst ::1 --proto udp --sport 1 --dport 8080
	wait_line "$out" "guard_drop +br0 $mac 127\.0\.0\.1 -> $GW dropped_loopback_src$"
	wait_line "$out" "guard_drop +br0 $mac $CTR6 -> ::1 dropped_loopback_dst$"
	trace_stop
}

# Container names come from Docker (a stand-in API here).
test_container_name_from_docker() {
	local out=$DH_SCRATCH/trace
	serve_fake_docker "$DH_ROOT/tests/e2e/fake_docker_containers.sh"
	attach_mode socket
	serve_tcp 8080 127.0.0.1 four
	serve_tcp6 8080 ::1 six
	trace_start "$out"
	expect_eq "$(tcp_get $GW 8080)" four "IPv4 TCP"
	expect_eq "$(tcp6_get $GW6 8080)" six "IPv6 TCP"
	wait_line "$out" "flow +br0 tcp \[$CTR6\]:[0-9]+ \(web-1\) \[$GW6\]:8080 -> \[::1\]:8080 assigned$"
	wait_line "$out" "flow +br0 tcp $CTR:[0-9]+ \(web-1\) $GW:8080 -> 127\.0\.0\.1:8080 assigned$"
	trace_stop
}

# --json after the command name: one object per line, each parseable.
test_json_lines() {
	local out=$DH_SCRATCH/trace
	attach_mode socket
	serve_tcp 8080 127.0.0.1 four
	trace_start "$out" --json
	expect_eq "$(tcp_get $GW 8080)" four "IPv4 TCP"
	tcp6_get $GW6 8081 >/dev/null || true
	wait_line "$out" '"event":"refused"'
	trace_stop
	python3 - "$out" "$CTR" "$GW" <<'EOF' || fail "trace --json: $(cat "$out")"
import json, sys
events = [json.loads(line) for line in open(sys.argv[1])]
flow = [e for e in events if e["event"] == "flow"][0]
want = {"bridge": "br0", "mode": "socket", "protocol": "tcp", "source": sys.argv[2],
        "container": None, "gateway": sys.argv[3], "gateway_port": 8080,
        "target": "127.0.0.1", "target_port": 8080, "reason": "assigned"}
for key, value in want.items():
    assert flow[key] == value, (key, flow)
assert isinstance(flow["source_port"], int) and flow["time"].endswith("Z"), flow
refused = [e for e in events if e["event"] == "refused"][0]
assert refused["target"] == "::1" and refused["reason"] == "passed_no_socket", refused
EOF
}

# SIGTERM right after traffic: every event written before it is in the
# file (each line flushed, the ring drained on the way out), exit 0.
test_sigterm_flushes_everything() {
	local out=$DH_SCRATCH/trace i
	attach_mode socket
	serve_tcp 8080 127.0.0.1 four
	trace_start "$out"
	for i in 1 2 3 4 5; do
		expect_eq "$(tcp_get $GW 8080)" four "connection $i"
	done
	trace_stop
	expect_eq "$(grep -c ' flow ' "$out")" 5 "flow lines after SIGTERM"
	expect_eq "$(cat "$out.err")" "" "trace's standard error"
}

# A trace killed with SIGKILL cannot clear trace_ctl: the next trace takes
# over from its dead pid; while a trace lives, another is refused.
test_one_trace_at_a_time() {
	local out=$DH_SCRATCH/trace dead
	attach_mode socket
	trace_start "$out"
	expect_exit 1 dh trace
	expect_contains "$OUT" "pid $TRACE_PID is tracing already" "second trace"
	dead=$TRACE_PID
	kill -KILL "$TRACE_PID"
	wait "$TRACE_PID" || true
	expect_eq "$(trace_ctl)" "1 $dead" "trace_ctl after SIGKILL"
	trace_start "$out.2"
	trace_stop
}

# The pin dir's lock is never held while tracing: port edits and stats run.
test_trace_never_holds_the_lock() {
	local out=$DH_SCRATCH/trace
	attach_mode socket
	trace_start "$out"
	expect_exit 0 timeout 20 ip netns exec "$H" "$DH_BIN" --pin-dir "$PIN" port add 9090
	expect_exit 0 timeout 20 ip netns exec "$H" "$DH_BIN" --pin-dir "$PIN" stats
	trace_stop
}

# SIGINT ends it the same way.
test_sigint_exits_zero() {
	local out=$DH_SCRATCH/trace rc=0
	attach_mode nat
	trace_start "$out"
	kill -INT "$TRACE_PID"
	wait "$TRACE_PID" || rc=$?
	expect_eq "$rc" 0 "exit code on SIGINT"
	expect_eq "$(trace_ctl)" "0 0" "trace_ctl after SIGINT"
}

# A reader that goes away (trace | head): the next write fails, trace ends
# and clears trace_ctl instead of dying of SIGPIPE with tracing on.
test_closed_pipe_disables_tracing() {
	local i
	attach_mode socket
	serve_tcp 8080 127.0.0.1 four
	ip netns exec "$H" "$DH_BIN" --pin-dir "$PIN" trace 2>/dev/null | head -n 1 >/dev/null &
	for i in $(seq 100); do
		[ "$(trace_ctl | cut -d' ' -f1)" = 1 ] && break
		sleep 0.05
	done
	expect_eq "$(trace_ctl | cut -d' ' -f1)" 1 "trace_ctl enabled"
	for i in $(seq 100); do
		[ "$(trace_ctl)" = "0 0" ] && return 0
		tcp_get $GW 8080 >/dev/null
		sleep 0.05
	done
	fail "trace_ctl still $(trace_ctl) after its reader went away"
}

test_nothing_attached() {
	expect_exit 1 dh trace
	expect_contains "$OUT" "no bridge attached" "trace without a pin set"
}

run_tests
