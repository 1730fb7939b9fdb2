#!/usr/bin/env bash
# Real Docker: containers started with --add-host host.docker.internal:host-gateway
# reach a 127.0.0.1-only host service through dockhost-bpf, on the default
# bridge and on user-defined networks. This suite drives the host's dockerd
# (starting a private one if none runs) and so touches the root network
# namespace: it snapshots links, iptables and sysctls first, puts back
# everything it changed, and fails if the host does not read the same after.
# A private dockerd mounts below the suite's temporary directory (its data
# root bound on itself, overlays, netns files); the suite unmounts them,
# removes the directory and fails if anything of it is left.
# DH_DOCKER_TEST_CRASH=1 SIGKILLs the private dockerd with a container
# running before the teardown, leaving its mounts and shim behind: a test of
# that cleanup.
. "$(dirname "$0")/../lib.sh"
export DOCKER_HOST=unix:///var/run/docker.sock  # lib.sh hides Docker from the other suites
DH_SUITE=docker/test_docker

docker_bin=/usr/bin/docker  # Debian's client, matching Debian's daemon
image=dockhost-bpf-test:$$
label=dockhost-bpf-test
port_tcp=18088
port_udp=18089
port_secret=18090
state=""  # the temporary directory, made once the suite runs (below)
started_dockerd=""

say() { printf '%s\n' "$*" >&2; }

# Skips the whole suite, saying why (finish() still puts the host back).
skip_all() {
	echo "SKIP $DH_SUITE: $*"
	exit 0
}

host_snapshot() {
	{
		ip -br link | awk '{ print $1 }' | sort
		iptables-save 2>/dev/null | grep -v -E '^#|^:' | sed 's/\[[0-9:]*\]//'
		nft list tables 2>/dev/null
		sysctl -a 2>/dev/null | grep -E '^net\.ipv4\.(ip_forward|conf\.[^.]+\.route_localnet)|bridge-nf-call' | sort
	}
}

setup_docker() {
	if ! command -v dockerd >/dev/null || [ ! -x "$docker_bin" ]; then
		"$DH_ROOT/scripts/install-deps.sh" docker >&2 || skip_all "cannot install docker.io"
	fi
	[ -x /bin/busybox ] && [ -x /bin/bash-static ] || "$DH_ROOT/scripts/install-deps.sh" docker >&2
	host_snapshot >"$state/before"
	if ! "$docker_bin" info >/dev/null 2>&1; then
		# A private daemon: its own data root and run dir, our socket.
		dockerd --data-root "$state/data" --exec-root "$state/exec" --pidfile "$state/dockerd.pid" \
			-H "$DOCKER_HOST" >"$state/dockerd.log" 2>&1 &
		started_dockerd=$!
		local i
		for i in $(seq 100); do "$docker_bin" info >/dev/null 2>&1 && break; sleep 0.2; done
		"$docker_bin" info >/dev/null 2>&1 ||
			skip_all "dockerd does not start here: $(tail -1 "$state/dockerd.log")"
	fi
	# The image: busybox and bash (for /dev/udp: busybox nc has no UDP here).
	mkdir -p "$state/rootfs/bin"
	cp /bin/busybox "$state/rootfs/bin/busybox"
	cp /bin/bash-static "$state/rootfs/bin/bash"
	local tool
	for tool in sh nc ip sleep cat grep echo head timeout sed; do ln -s busybox "$state/rootfs/bin/$tool"; done
	tar -C "$state/rootfs" -c . | "$docker_bin" import - "$image" >/dev/null
}

# A process that has not exited (a zombie has).
alive() {  # PID
	local stat
	stat=$(ps -o stat= -p "$1" 2>/dev/null)
	[ -n "$stat" ] && [[ $stat != Z* ]]
}

# What a private dockerd left running: every process whose command line
# names the state directory (containerd, its shims) and their descendants
# (the containers). The state path reaches awk through the environment, so
# that awk itself does not match.
daemon_leftovers() {
	[ -n "$state" ] || return 0  # an empty path would match every process
	ps -e -o pid=,ppid=,args= | STATE="$state/" SELF=$$ awk '
		{ pid[NR] = $1; ppid[NR] = $2; if ($1 != ENVIRON["SELF"] && index($0, ENVIRON["STATE"])) mark[$1] = 1 }
		END {
			do {
				more = 0
				for (i in pid)
					if (!(pid[i] in mark) && (ppid[i] in mark)) { mark[pid[i]] = 1; more = 1 }
			} while (more)
			for (p in mark) print p
		}'
}

# Stops the private dockerd (SIGTERM, SIGKILL after 30 s) and whatever it
# left running, so that nothing holds a mount below $state any more.
stop_dockerd() {
	local i pids
	kill -TERM "$started_dockerd" 2>/dev/null
	for i in $(seq 150); do alive "$started_dockerd" || break; sleep 0.2; done
	alive "$started_dockerd" && say "dockerd ignored SIGTERM for 30 s: killing it" &&
		kill -KILL "$started_dockerd"
	wait "$started_dockerd"
	for i in $(seq 50); do
		pids=$(daemon_leftovers)
		[ -z "$pids" ] && return 0
		# shellcheck disable=SC2086
		kill -KILL $pids 2>/dev/null
		sleep 0.1
	done
	say "still running after the daemon: $pids"
}

# Mount points at or below $state, deepest first.
mounts_under_state() {
	[ -n "$state" ] || return 0  # an empty path would match every mount
	awk -v dir="$state" '$5 == dir || index($5, dir "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

# Unmounts everything below $state: what dockerd mounted and, after a crash,
# never unmounted (the data root bound on itself, a container's overlay and
# netns file). Deepest first; lazily if something still holds one.
unmount_state() {
	local _ m mounts
	for _ in 1 2 3 4 5; do
		mapfile -t mounts < <(mounts_under_state)
		[ ${#mounts[@]} -eq 0 ] && return 0
		for m in "${mounts[@]}"; do
			umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || say "cannot unmount $m"
		done
	done
}

teardown_docker() {
	set +e
	"$docker_bin" ps -aq --filter "label=$label" | xargs -r "$docker_bin" rm -f >/dev/null
	"$docker_bin" network ls -q --filter "label=$label" | xargs -r "$docker_bin" network rm >/dev/null
	if [ -n "${DH_DOCKER_TEST_CRASH:-}" ] && [ -n "$started_dockerd" ]; then
		# No network: its bridge would outlive the daemon.
		"$docker_bin" run -d --label "$label" --network none "$image" sleep 600 >/dev/null
		kill -KILL "$started_dockerd"
	fi
	"$docker_bin" rmi "$image" >/dev/null 2>&1
	if [ -n "$started_dockerd" ]; then
		stop_dockerd
		# dockerd leaves docker0, its iptables chains and ip_forward behind.
		grep -qx docker0 "$state/before" || ip link del docker0 2>/dev/null
		local table
		for table in filter nat; do
			if ! grep -q "^\*$table" "$state/before"; then
				nft delete table ip "$table" 2>/dev/null
			fi
		done
		sysctl -qw "net.ipv4.ip_forward=$(sed -n 's/^net.ipv4.ip_forward = //p' "$state/before")"
	fi
	host_snapshot >"$state/after"
}

# A container on NETWORK runs a shell snippet; prints what it printed.
in_container() {  # NETWORK [docker run options]... -- SNIPPET
	local network=$1 opts=()
	shift
	while [ "$1" != -- ]; do opts+=("$1"); shift; done
	shift
	timeout 20 "$docker_bin" run --rm --label "$label" --network "$network" --dns 127.0.0.1 \
		--add-host host.docker.internal:host-gateway "${opts[@]}" "$image" sh -c "$1" 2>>"$state/docker.err"
}

tcp_from() {  # NETWORK PORT
	in_container "$1" -- "echo | nc -w 2 host.docker.internal $2"
}

udp_from() {  # NETWORK PORT
	# head, not bash's read: read takes one byte per recv(), which on a
	# datagram socket throws the rest of the datagram away.
	in_container "$1" -- "bash -c 'exec 3<>/dev/udp/host.docker.internal/$2; echo ping >&3; timeout 2 head -n 1 <&3'"
}

# dockhost-bpf against the host's bridges, with the suite's own pin dir.
dhd() { "$DH_BIN" --pin-dir "$PIN" "$@"; }

test_docker() {
	# Services bound to 127.0.0.1 only, in the root namespace (loopback only).
	# (read first: see serve_tcp in lib.sh)
	socat "TCP4-LISTEN:$port_tcp,bind=127.0.0.1,reuseaddr,fork" SYSTEM:"read -r _; echo tcp-pong" &
	socat "UDP4-RECVFROM:$port_udp,bind=127.0.0.1,fork" SYSTEM:"read -r _; echo udp-pong" &
	socat "TCP4-LISTEN:$port_secret,bind=127.0.0.1,reuseaddr,fork" SYSTEM:"read -r _; echo secret" &
	local i
	for i in $(seq 50); do
		[ "$(ss -H -ln "sport = :$port_tcp or sport = :$port_udp or sport = :$port_secret" | wc -l)" -ge 3 ] && break
		sleep 0.05
	done

	expect_not_contains "$(tcp_from bridge $port_tcp)" tcp-pong "default bridge before attach"
	dhd attach bridge  # the network's name: docker0
	dhd port add $port_tcp
	dhd port add $port_udp/udp
	expect_eq "$(tcp_from bridge $port_tcp)" tcp-pong "default bridge, TCP"
	expect_eq "$(udp_from bridge $port_udp)" udp-pong "default bridge, UDP"
	expect_not_contains "$(tcp_from bridge $port_secret)" secret "an unmapped port"

	# The attack: NET_ADMIN, 127.0.0.1 routed via the gateway. The route
	# must really be there, and the packets must meet the guard.
	local attack
	attack=$(in_container bridge --cap-add NET_ADMIN --sysctl net.ipv4.conf.all.route_localnet=1 \
		--sysctl net.ipv4.conf.eth0.route_localnet=1 -- "
		ip route del 127.0.0.0/8 dev lo table local
		ip route del local 127.0.0.1 dev lo table local
		ip route add 127.0.0.1/32 via \$(ip route | sed -n 's/^default via \([0-9.]*\).*/\1/p') dev eth0
		ip route get 127.0.0.1
		echo | nc -w 2 127.0.0.1 $port_secret") || true
	expect_contains "$attack" "127.0.0.1 via 172.17.0.1 dev eth0" "the attacker's route"
	expect_not_contains "$attack" secret "127.0.0.1 routed via the gateway"
	[ "$(dhd --json stats | sed -n 's/.*"dropped_loopback_dst":\([0-9]*\).*/\1/p')" -ge 1 ] ||
		fail "the guard saw no packet: $(dhd stats)"

	# User-defined networks: Docker's br-<id> and a custom bridge name.
	"$docker_bin" network create --label "$label" dhtest-default >/dev/null
	"$docker_bin" network create --label "$label" -o com.docker.network.bridge.name=dhtest-custom \
		dhtest-custom >/dev/null
	dhd attach dhtest-default
	dhd attach dhtest-custom
	expect_eq "$(tcp_from dhtest-default $port_tcp)" tcp-pong "br-<id> network, TCP"
	expect_eq "$(udp_from dhtest-default $port_udp)" udp-pong "br-<id> network, UDP"
	expect_eq "$(tcp_from dhtest-custom $port_tcp)" tcp-pong "custom bridge name, TCP"
	expect_eq "$(udp_from dhtest-custom $port_udp)" udp-pong "custom bridge name, UDP"
	expect_not_contains "$(tcp_from dhtest-custom $port_secret)" secret "unmapped port, custom network"

	# watch picks up a network created after it started.
	"$DH_BIN" --pin-dir "$PIN" watch --match 'dhtest-*' --port $port_tcp >"$state/watch.log" 2>&1 &
	local watch=$! i
	for i in $(seq 50); do grep -q following "$state/watch.log" && break; sleep 0.1; done
	"$docker_bin" network create --label "$label" -o com.docker.network.bridge.name=dhtest-late \
		dhtest-late >/dev/null
	for i in $(seq 50); do dhd --json status | grep -q '"bridge":"dhtest-late"' && break; sleep 0.1; done
	expect_eq "$(tcp_from dhtest-late $port_tcp)" tcp-pong "a network created after watch started"
	"$docker_bin" network rm dhtest-late >/dev/null
	for i in $(seq 50); do dhd --json status | grep -q '"bridge":"dhtest-late"' || break; sleep 0.1; done
	expect_not_contains "$(dhd --json status)" dhtest-late "watch forgot the removed network"
	kill -TERM "$watch"
	wait "$watch" || fail "watch exited $?: $(cat "$state/watch.log")"

	dhd detach dhtest-custom
	dhd detach dhtest-default
	dhd detach bridge
	[ ! -e "$PIN" ] || fail "pins left: $(ls "$PIN")"
}

# Puts the host back and checks it reads as before, whatever happened.
finish() {
	trap - EXIT INT TERM
	teardown_docker
	if ! diff -u "$state/before" "$state/after" >"$state/diff"; then
		echo "FAIL $DH_SUITE/host_left_as_found"
		sed 's/^/    /' "$state/diff"
	else
		echo "PASS $DH_SUITE/host_left_as_found"
	fi
	# The state directory last: nothing may hold it any more. Never through
	# a mount that would not go: the check below reports it instead.
	unmount_state
	rm -rf --one-file-system "$state"
	local left
	left=$(
		[ "$(compgen -G "${TMPDIR:-/tmp}/dh-docker-*" || true)" = "$tmp_before" ] || echo "directories: $(ls -d "${TMPDIR:-/tmp}"/dh-docker-*)"
		mounts_under_state | sed 's/^/mount: /'
		[ -z "$started_dockerd" ] || daemon_leftovers | xargs -r ps -o pid=,args= -p | sed 's/^ */process: /'
	)
	if [ -n "$left" ]; then
		echo "FAIL $DH_SUITE/left_nothing_behind"
		printf '%s\n' "$left" | sed 's/^/    /'
	else
		echo "PASS $DH_SUITE/left_nothing_behind"
	fi
}

[ "$(id -u)" -eq 0 ] || skip_all "needs root"
tmp_before=$(compgen -G "${TMPDIR:-/tmp}/dh-docker-*" || true)  # what earlier runs left, not ours to judge
state=$(mktemp -d "${TMPDIR:-/tmp}"/dh-docker-XXXXXX)
trap finish EXIT INT TERM
setup_docker
# One test, run like the others (own bpffs pin dir, cleanup on exit), but
# with no namespaces of its own: Docker's bridges live in the root one.
setup_topology() { DH_NETNS=(); }
run_tests
