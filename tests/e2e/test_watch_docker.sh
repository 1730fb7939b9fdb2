#!/usr/bin/env bash
# watch and Docker's events, against the fake Docker API of tests/cli with
# a state the test changes (DH_FAKE_DOCKER_DIR): a container source that
# restarts with a new address keeps its access, one removed loses it;
# --docker-labels maps a labelled container's ports from it alone and
# takes them away when it dies, never touching what was mapped by hand;
# without Docker, watch says so once and picks the stream up when Docker
# comes. The runner runs this file once per mode.
. "$(dirname "$0")/../lib.sh"

DB_ID=abcdef0123456789abcdef0123456789

# The fake Docker on $DH_SCRATCH/docker.sock (DOCKER_HOST set to it), its
# state under $FAKE.
fake_docker() {
	FAKE=$DH_SCRATCH/docker
	mkdir -p "$FAKE/containers" "$FAKE/gone"
	: >"$FAKE/events"
	DH_FAKE_DOCKER_DIR=$FAKE serve_fake_docker
}

container_at() {  # NAME ADDR: what GET /containers/NAME/json answers
	printf '{"Id":"%s","Name":"/%s","NetworkSettings":{"Networks":{"bridge":{"IPAddress":"%s","GlobalIPv6Address":""}}}}' \
		"$DB_ID" "$1" "$2" >"$FAKE/containers/$1"
}

event() {  # TYPE ACTION NAME
	printf '{"Type":"%s","Action":"%s","Actor":{"ID":"%s","Attributes":{"name":"%s"}},"time":1}\n' \
		"$1" "$2" "$DB_ID" "$3" >>"$FAKE/events"
}

test_container_source_follows_restarts() {
	fake_docker
	container_at app "$CTR"
	serve_tcp 8088 127.0.0.1 pong
	second_container
	dh attach br0 --mode "$(mode)"
	dh port add 8088 --from app
	start_watch --mode "$(mode)" --match br0
	wait_for "watch to follow Docker" "grep -q \"following Docker's events\" '$WATCH_LOG'"
	expect_eq "$(tcp_get $GW 8088)" pong "app at its first address"
	expect_refused "another container" tcp_get $GW 8088 "$C2"
	# app restarts with another address (the second namespace's).
	container_at app "$CTR2"
	event container die app
	event container start app
	wait_for "app's new address" "dh port list | grep -q 'from: app (container: $CTR2/32)'"
	expect_eq "$(tcp_get $GW 8088 "$C2")" pong "app at its new address"
	expect_refused "app's old address" tcp_get $GW 8088
	expect_contains "$(cat "$WATCH_LOG")" "8088/tcp on all bridges: from app (container): $CTR2/32" "watch says so"
	# Stopped: no address; removed: 404. Either way closed to it, and the
	# source stays (a container of that name that runs again gets it back).
	container_at app ""
	event container die app
	wait_for "app stopped" "dh port list | grep -q 'from: app (container: no address now)'"
	expect_refused "app stopped" tcp_get $GW 8088 "$C2"
	container_at app "$CTR"
	event container start app
	wait_for "app running again" "dh port list | grep -q 'from: app (container: $CTR/32)'"
	expect_eq "$(tcp_get $GW 8088)" pong "app running again"
	rm "$FAKE/containers/app"
	touch "$FAKE/gone/app"
	event container destroy app
	wait_for "app removed" "dh port list | grep -q 'from: app (container: no address now)'"
	expect_refused "app removed" tcp_get $GW 8088
	expect_refused "app removed, the other address" tcp_get $GW 8088 "$C2"
	stop_watch
}

labelled() {  # LABEL-VALUE: the list of running containers with the label
	printf '[{"Id":"%s","Names":["/db"],"Labels":{"dockhost.ports":"%s"},"State":"running","NetworkSettings":{"Networks":{"bridge":{"NetworkID":"f00d","IPAddress":"%s","GlobalIPv6Address":""}}}}]' \
		"$DB_ID" "$1" "$CTR" >"$FAKE/list"
}

test_docker_labels() {
	local short=${DB_ID:0:12}
	fake_docker
	labelled "8088, 8089/udp,8090,9000"
	serve_tcp 8088 127.0.0.1 pong
	serve_udp 8089 127.0.0.1 upong
	serve_tcp 8090 127.0.0.1 pong90
	second_container
	dh attach br0 --mode "$(mode)"
	# By hand: 8090 on br0 for the second container only; 9000 open to all.
	dh port add 8090 --bridge br0 --from "$CTR2"
	dh port add 9000
	start_watch --mode "$(mode)" --match br0 --docker-labels
	wait_for "the label's ports" "dh port list | grep -q 'label:$short'"
	wait_for "8089/udp from the label" "dh port list | grep -q '8089/udp'"
	expect_eq "$(tcp_get $GW 8088)" pong "tcp from the labelled container"
	expect_eq "$(udp_get $GW 8089)" upong "udp from the labelled container"
	expect_refused "tcp, another container" tcp_get $GW 8088 "$C2"
	expect_eq "$(tcp_get $GW 8090)" pong90 "8090: the label joined the list made by hand"
	expect_eq "$(tcp_get $GW 8090 "$C2")" pong90 "8090: the hand-made source"
	expect_contains "$(dh port list)" "from: label:$short (label: $CTR/32)" "port list"
	dh --json port list | tr -d ' \n' | grep -q '"port":9000,"proto":"tcp","to_addr":"127.0.0.1","to_addr6":"::1","to_port":9000,"allow":null' ||
		fail "9000 (open to all) changed: $(dh --json port list)"
	# The container dies: what the label made goes, nothing else.
	echo '[]' >"$FAKE/list"
	event container die db
	wait_for "8088 unmapped" "! dh port list | grep -q '8088/tcp'"
	expect_not_contains "$(dh port list)" "8089/udp" "8089/udp unmapped"
	expect_not_contains "$(dh port list)" "label:" "no label source left"
	expect_refused "8088 from the dead container's address" tcp_get $GW 8088
	expect_refused "8090, the label's source gone" tcp_get $GW 8090
	expect_eq "$(tcp_get $GW 8090 "$C2")" pong90 "8090: the hand-made source stays"
	expect_contains "$(dh port list)" "9000/tcp" "9000 stays"
	expect_contains "$(cat "$WATCH_LOG")" "8088/tcp on br0: unmapped (container stopped: label:$short)" "watch says so"
	stop_watch
}

# A label that is no port list: one warning, nothing mapped.
test_docker_label_bad_value() {
	fake_docker
	labelled "8088,http"
	dh attach br0 --mode "$(mode)"
	start_watch --mode "$(mode)" --match br0 --docker-labels
	wait_for "the warning" "grep -q \"label dockhost.ports='8088,http': not SPEC\" '$WATCH_LOG'"
	event container start db
	event container start db
	sleep 1
	expect_eq "$(grep -c 'not SPEC' "$WATCH_LOG")" 1 "warned once"
	expect_eq "$(dh port list)" "no ports mapped" "nothing mapped"
	stop_watch
}

# No Docker: one line, watch works on; Docker appearing later is picked up.
test_without_docker() {
	export DOCKER_HOST=unix://$DH_SCRATCH/docker.sock  # nothing there yet
	start_watch --mode "$(mode)" --match br0
	wait_for "the one line" "grep -q 'no Docker events until it answers' '$WATCH_LOG'"
	sleep 2  # some retries
	expect_eq "$(grep -c 'not reachable' "$WATCH_LOG")" 1 "one line for the outage"
	expect_contains "$(dh status)" "br0" "watch attached br0 all the same"
	fake_docker
	wait_for "the stream once Docker answers" "grep -q \"following Docker's events\" '$WATCH_LOG'"
	stop_watch
}
run_tests
