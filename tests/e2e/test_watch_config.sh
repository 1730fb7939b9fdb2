#!/usr/bin/env bash
# watch --config: converged to the configuration at start and on SIGHUP
# only (a reload), so edits made with the CLI in between stay; flows on
# unchanged ports outlive a reload; bridges a match line names are
# attached as they appear, as the configuration says.
. "$(dirname "$0")/../lib.sh"

conf() {  # writes its standard input to the test's configuration
	CONF=$DH_SCRATCH/dh.conf
	cat >"$CONF"
}

# A reload is done when watch prints its outcome: the summary of what it
# changed, or why the file it read stays unused. Counted before the signal
# with the same pattern as after (the start's summary matches it too).
reload_watch() {
	local n done_re='config: [0-9]* change(s) made\|config: nothing to change\|reload: '
	n=$(grep -c "$done_re" "$WATCH_LOG" || true)
	kill -HUP "$WATCH_PID"
	wait_for "watch to reload" "[ \$(grep -c '$done_re' '$WATCH_LOG') -gt $n ]"
	kill -0 "$WATCH_PID" 2>/dev/null || fail "watch ended on SIGHUP: $(cat "$WATCH_LOG")"
}

mapped() {  # SPEC BRIDGE-OR-*: in port list
	dh --json port list | tr -d ' \n' | grep -qF "\"bridge\":\"$2\",\"port\":${1%/*},\"proto\":\"${1#*/}\""
}

test_converges_at_start_and_on_reload_only() {
	serve_tcp 8088 127.0.0.1 pong
	serve_tcp 9090 127.0.0.1 pong90
	conf <<-EOF
	match br*
	port 8088
	EOF
	start_watch --config "$CONF"
	wait_for "br0 attached, 8088 mapped" "mapped 8088/tcp '*'"
	expect_eq "$(tcp_get $GW 8088)" pong "8088 after start"
	grep -q "watch: br0: attach (socket mode)" "$WATCH_LOG" || fail "watch did not say it attached br0: $(cat "$WATCH_LOG")"

	# By hand, between reloads: one port added, the configuration's deleted.
	dh port add 7777
	dh port del 8088
	conf <<-EOF
	match br*
	port 8088
	port 9090
	EOF
	sleep 1  # no reload yet: the file alone changes nothing
	mapped 9090/tcp '*' && fail "9090 mapped before the reload"
	mapped 8088/tcp '*' && fail "8088, deleted by hand, back before the reload"
	reload_watch
	wait_for "9090 mapped" "mapped 9090/tcp '*'"
	expect_eq "$(tcp_get $GW 9090)" pong90 "9090 after the reload"
	mapped 8088/tcp '*' || fail "8088 not back after the reload"
	mapped 7777/tcp '*' || fail "7777, added by hand, gone after the reload"

	# A file that does not parse changes nothing, and watch goes on.
	echo "port 1 --bogus" >>"$CONF"
	reload_watch
	grep -q "reload: $CONF:4: port: unexpected '--bogus'" "$WATCH_LOG" || fail "no FILE:LINE: $(cat "$WATCH_LOG")"
	mapped 9090/tcp '*' || fail "9090 gone after a bad reload"
	stop_watch
}

# An established TCP connection on a port the reload leaves as it is goes
# on, in both modes (the configuration converts nothing here).
test_reload_keeps_established_flows() {
	local mode
	for mode in socket nat; do
		serve_tcp_echo 8088 127.0.0.1
		conf <<-EOF
		bridge br0 --mode $mode
		port 8088
		EOF
		start_watch --config "$CONF"
		wait_for "8088 mapped" "mapped 8088/tcp '*'"
		mkfifo "$DH_SCRATCH/in"
		in_ctr socat -T30 STDIO "TCP4:$GW:8088" <"$DH_SCRATCH/in" >"$DH_SCRATCH/out" 2>&1 &
		exec 3>"$DH_SCRATCH/in"
		echo one >&3
		wait_for "the first echo" "grep -q one '$DH_SCRATCH/out'"
		conf <<-EOF
		bridge br0 --mode $mode
		port 8088
		port 9090 --from $CTR
		EOF
		reload_watch
		wait_for "9090 mapped" "mapped 9090/tcp '*'"
		echo two >&3
		wait_for "the second echo, same connection ($mode mode)" "grep -q two '$DH_SCRATCH/out'"
		exec 3>&-
		stop_watch
		dh detach br0 >/dev/null
		in_host pkill -f 'TCP4-LISTEN:8088' || true
		rm -f "$DH_SCRATCH/in" "$DH_SCRATCH/out"
	done
}

# A bridge a match line names that appears later: attached by watch as the
# configuration says (its mode), the configuration's; a bridge line's own
# ports come with it.
test_match_bridges_appear_later() {
	conf <<-EOF
	match br0
	match brx* --mode nat
	bridge br9 --gateway 10.209.0.9
	port 8088
	port 5432 --bridge br9
	EOF
	start_watch --config "$CONF"
	wait_for "br0 attached" "mapped 8088/tcp '*'"
	grep -q "br9: not there yet" "$WATCH_LOG" || fail "br9 missing, not said: $(cat "$WATCH_LOG")"
	make_bridge "$H" brx1 10.208.0.1
	make_bridge "$H" br9 10.209.0.1
	wait_for "brx1 attached" "dh --json status | tr -d ' \n' | grep -q '\"bridge\":\"brx1\"'"
	dh --json status | python3 -c 'import json, sys
b = [b for b in json.load(sys.stdin)["bridges"] if b["bridge"] == "brx1"][0]
assert b["mode"] == "nat" and b["config"], b' || fail "brx1 not in NAT mode, or not the configuration's"
	wait_for "br9 attached, its port" "mapped 5432/tcp br9"
	dh --json status | tr -d ' \n' | grep -q '"addr":"10.209.0.9","origin":"config"' || fail "br9's gateway: $(dh status)"
	make_bridge "$H" lxc0 10.207.0.1
	sleep 1
	dh --json status | grep -q lxc0 && fail "lxc0, not declared, attached"
	stop_watch
}

DB_ID=abcdef0123456789abcdef0123456789

# The fake Docker API of tests/cli (as test_watch_docker.sh runs it), with
# one running container at $CTR labelled dockhost.ports=LABEL-VALUE.
fake_labelled_docker() {  # LABEL-VALUE
	FAKE=$DH_SCRATCH/docker
	mkdir -p "$FAKE/containers" "$FAKE/gone"
	: >"$FAKE/events"
	printf '[{"Id":"%s","Names":["/db"],"Labels":{"dockhost.ports":"%s"},"State":"running","NetworkSettings":{"Networks":{"bridge":{"NetworkID":"f00d","IPAddress":"%s","GlobalIPv6Address":""}}}}]' \
		"$DB_ID" "$1" "$CTR" >"$FAKE/list"
	DH_FAKE_DOCKER_DIR=$FAKE serve_fake_docker
}

# What a Docker label made, and what was made by hand, outlive a reload
# and an apply that no longer declares anything: neither is theirs.
test_reload_and_apply_leave_label_and_hand_state() {
	local short=${DB_ID:0:12}
	fake_labelled_docker 8089
	serve_tcp 8089 127.0.0.1 pong89
	conf <<-EOF
	bridge br0
	port 8088
	EOF
	start_watch --config "$CONF" --docker-labels
	wait_for "the label's port" "dh port list | grep -q 'label:$short'"
	dh port add 7777 --bridge br0
	conf <<<"bridge br0"
	reload_watch
	wait_for "8088 unmapped by the reload" "! mapped 8088/tcp '*'"
	dh port list | grep -q "from: label:$short" || fail "the label's source went: $(dh port list)"
	mapped 7777/tcp br0 || fail "7777, made by hand, went"
	expect_eq "$(tcp_get $GW 8089)" pong89 "8089 from the labelled container"
	stop_watch
	conf <<<"bridge br0"
	dh apply "$CONF" >/dev/null
	dh port list | grep -q "from: label:$short" || fail "apply removed the label's source: $(dh port list)"
	mapped 7777/tcp br0 || fail "apply removed 7777, made by hand"
}

# A Docker source that does not resolve at start (no Docker yet: the
# test's DOCKER_HOST answers nothing) keeps no other line out: its mapping
# is closed to it until Docker answers; apply itself refuses it.
test_unresolved_docker_source_at_start() {
	conf <<-EOF
	bridge br0
	port 8088 --from app
	port 9090
	EOF
	expect_exit 1 dh apply "$CONF"
	expect_contains "$OUT" "dh.conf:2: --from 'app'" "apply's error"
	start_watch --config "$CONF"
	wait_for "9090 mapped" "mapped 9090/tcp '*'"
	wait_for "8088 mapped" "mapped 8088/tcp '*'"
	dh port list | grep -q "from: app (container: no address now)" || fail "8088's source: $(dh port list)"
	grep -q "dh.conf:2: --from 'app': .*closed to it until Docker says more" "$WATCH_LOG" ||
		fail "not said: $(cat "$WATCH_LOG")"
	stop_watch
}

# A bad file at start: exit 2, FILE:LINE, nothing attached.
test_bad_config_at_start() {
	conf <<<"bridge br0 --mode"
	local rc=0 out
	out=$(ip netns exec "$H" "$DH_BIN" --pin-dir "$PIN" watch --config "$CONF" 2>&1) || rc=$?
	expect_eq "$rc" 2 "watch's exit code"
	expect_contains "$out" "$CONF:1: option '--mode' needs a value" "watch's error"
	[ ! -e "$PIN" ] || fail "attached with a bad configuration"
}

run_tests
