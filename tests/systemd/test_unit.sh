#!/usr/bin/env bash
# make test-systemd: dockhost-bpf.service under a real systemd. A Debian 12
# root (built once, cached: build_root.sh) is booted with systemd-nspawn
# and --private-network; inside it a bridge br-dh0 (the unit's watch follows
# br-*), a "container" namespace on it and 127.0.0.1 services stand in for
# Docker's. The root is never written: each boot runs on an overlay whose
# upper layer lives in this run's directory, kept across the "reboot" (the
# container ended and booted again) and removed at the end.
# Output: PASS/FAIL/SKIP lines and "N passed, N failed, N skipped"; exits
# non-zero on any failure. Everything runs in a private mount namespace, so
# the overlay and the bpffs mounts go with this process whatever happens;
# the trap ends the container and removes the run's directory.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${DH_OUTPUT:-$root/.output}

if [ "$(id -u)" -ne 0 ]; then
	echo "test-systemd: nothing tested: it needs root (systemd-nspawn), running as uid $(id -u)" >&2
	exit 1
fi
if [ -z "${DH_TEST_UNSHARED:-}" ]; then
	DH_TEST_UNSHARED=1 exec unshare --mount --propagation private "$0" "$@"
fi

started=$(date +%s)
passed=0 failed=0 skipped=0
run=$(mktemp -d "$out/systemd/run-XXXXXX" 2>/dev/null) ||
	{ mkdir -p "$out/systemd" && run=$(mktemp -d "$out/systemd/run-XXXXXX"); }
machine=dh-test-${run##*-}
nspawn_pid= leader=
merged=$run/merged
GW=10.201.0.1 CTR=10.201.0.2
BOOT_TIMEOUT=${DH_BOOT_TIMEOUT:-180}

finish() {
	stop_container
	umount "$run/bpffs" "$merged" 2>/dev/null
	rm -rf --one-file-system "$run"
	# nspawn's own leftovers for this machine name, if it was killed.
	rm -rf "/run/systemd/nspawn/propagate/$machine" "/run/systemd/nspawn/unix-export/$machine" 2>/dev/null
	echo "test-systemd: $(($(date +%s) - started)) s"
	echo "$passed passed, $failed failed, $skipped skipped"
	[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
}
trap 'exit 143' TERM
trap 'exit 130' INT
trap 'finish; exit $?' EXIT

# One check: a function run in a subshell (set -e); its output is shown only
# when it fails. A check that fails leaves the container as it was: the next
# ones still run, each asserting on its own.
check() {  # NAME FUNC [ARGS...]
	local name=$1 rc
	shift
	("$@") >"$run/log" 2>&1
	rc=$?
	case $rc in
	0) echo "PASS systemd/$name"; passed=$((passed + 1)) ;;
	77) echo "SKIP systemd/$name: $(tail -n1 "$run/log")"; skipped=$((skipped + 1)) ;;
	*)
		echo "FAIL systemd/$name"
		sed 's/^/    /' "$run/log"
		failed=$((failed + 1))
		;;
	esac
}

fail() {
	echo "FAILED: $*" >&2
	exit 1
}

expect_eq() {  # GOT WANT WHAT
	[ "$1" = "$2" ] || fail "$3: got '$1', want '$2'"
}

expect_contains() {  # HAYSTACK NEEDLE WHAT
	case "$1" in *"$2"*) ;; *) fail "$3: '$2' not in: $1" ;; esac
}

# A command inside the booted container (every namespace of its PID 1), never
# longer than 60 s: a hang fails the check instead of the run.
in_machine() {
	timeout 60 nsenter -t "$leader" -a "$@"
}

in_ctr() { in_machine ip netns exec ctr "$@"; }

tcp_get() {  # PORT
	in_ctr timeout 4 socat -T2 - "TCP4:$GW:$1,connect-timeout=2" </dev/null 2>&1
}

# Polls a shell snippet run inside the container for up to 20 s.
wait_in() {  # WHAT SNIPPET
	local i
	for i in $(seq 100); do
		in_machine sh -c "$2" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	fail "timed out waiting for: $1; unit log: $(in_machine journalctl -u dockhost-bpf -n 20 --no-pager 2>&1)"
}

# The configuration the unit reads, in one place: the declarative config (/etc/dockhost-bpf.conf: br-dh* in MODE, each PORT
# mapped) and the unit's other watch options (/etc/default/dockhost-bpf).
write_config() {  # [--detach-on-exit] MODE PORT... (MODE: socket or nat)
	local args="" conf p
	if [ "$1" = --detach-on-exit ]; then
		args="--detach-on-exit"
		shift
	fi
	conf="# written by test-systemd\nmatch br-dh* --mode $1\n"
	shift
	for p in "$@"; do conf+="port $p\n"; done
	in_machine sh -c "printf '$conf' >/etc/dockhost-bpf.conf &&
		printf 'DOCKHOST_WATCH_ARGS=\"%s\"\n' '$args' >/etc/default/dockhost-bpf"
}

# Never route_localnet=1 without our programs on the bridge: checked after
# every step. Prints the sysctl.
guard_ok() {
	local rl st
	rl=$(in_machine sysctl -n net.ipv4.conf.br-dh0.route_localnet)
	st=$(in_machine dockhost-bpf status 2>&1)
	case $st in *WARNING*) fail "status warns: $st" ;; esac
	if [ "$rl" = 1 ] && ! echo "$st" | grep -q 'br-dh0'; then
		fail "route_localnet=1 on br-dh0 with no attachment of ours: $st"
	fi
	echo "$rl"
}

stop_container() {
	local i
	[ -n "$nspawn_pid" ] || return 0
	# SIGTERM: nspawn asks the container's systemd to power off.
	kill -TERM "$nspawn_pid" 2>/dev/null
	for i in $(seq 150); do
		[ -d "/proc/$nspawn_pid" ] || break
		sleep 0.2
	done
	if [ -d "/proc/$nspawn_pid" ]; then
		echo "test-systemd: container $machine did not power off in 30 s: killed" >&2
		kill -KILL "$nspawn_pid" 2>/dev/null
		[ -n "$leader" ] && kill -KILL "$leader" 2>/dev/null
	fi
	wait "$nspawn_pid" 2>/dev/null
	nspawn_pid= leader=
	umount "$run/bpffs" 2>/dev/null
}

# Boots the overlay. WITH_BPFFS=1: a fresh, empty bpffs on the container's
# /sys/fs/bpf, as a Debian host's PID 1 mounts one at boot (nspawn mounts
# none, and its /sys is read-only). Waits, with a timeout, for systemd to
# settle: "running", or fails with what did not start.
boot() {  # WITH_BPFFS
	local deadline state bind=() i
	if [ "$1" = 1 ]; then
		mkdir -p "$run/bpffs"
		mount -t bpf bpf "$run/bpffs" || { echo "cannot mount a bpffs"; return 1; }
		bind=(--bind="$run/bpffs:/sys/fs/bpf")
	fi
	systemd-nspawn -q -D "$merged" -M "$machine" -b --private-network \
		--system-call-filter=bpf --capability=CAP_BPF --register=no --keep-unit "${bind[@]}" \
		</dev/null >"$run/console" 2>&1 &
	nspawn_pid=$!
	deadline=$(($(date +%s) + BOOT_TIMEOUT))
	# The container's PID 1: nspawn's child once it has exec'd systemd.
	while [ -z "$leader" ]; do
		[ -d "/proc/$nspawn_pid" ] || { echo "nspawn exited while booting: $(tail -n 5 "$run/console")"; return 1; }
		[ "$(date +%s)" -lt "$deadline" ] || { echo "no PID 1 in $BOOT_TIMEOUT s"; return 1; }
		for i in $(cat "/proc/$nspawn_pid/task/"*/children 2>/dev/null); do
			[ "$(cat "/proc/$i/comm" 2>/dev/null)" = systemd ] && leader=$i
		done
		[ -n "$leader" ] || sleep 0.2
	done
	# is-system-running --wait blocks until startup ends; the bus may not be
	# up on the first tries.
	while :; do
		state=$(timeout 30 nsenter -t "$leader" -a systemctl is-system-running --wait 2>/dev/null)
		case $state in
		running) break ;;
		degraded)
			echo "booted degraded: $(in_machine systemctl --failed --no-legend --no-pager)"
			return 1
			;;
		esac
		[ "$(date +%s)" -lt "$deadline" ] || { echo "systemd did not settle in $BOOT_TIMEOUT s (state '$state')"; return 1; }
		sleep 0.5
	done
}

# A boot in this shell (the checks run in subshells, and nspawn must stay
# this shell's child); a failed boot ends the run: everything needs it.
boot_step() {  # NAME WITH_BPFFS
	local t0 why
	t0=$(date +%s)
	stop_container
	if boot "$2" >"$run/log" 2>&1 && (make_network) >>"$run/log" 2>&1; then
		echo "PASS systemd/$1 (booted in $(($(date +%s) - t0)) s)"
		passed=$((passed + 1))
		return 0
	fi
	echo "FAIL systemd/$1"
	sed 's/^/    /' "$run/log"
	failed=$((failed + 1))
	exit 1
}

# What a Docker host has after boot, rebuilt after every boot (a reboot
# loses it): br-dh0 with the gateway, a "container" on it, services on
# 127.0.0.1 (transient units: they go with the container).
make_network() {
	in_machine ip link add br-dh0 type bridge
	in_machine ip addr add "$GW/24" dev br-dh0
	in_machine ip link set br-dh0 up
	in_machine ip netns add ctr
	in_machine ip link add veth-dh0 type veth peer name eth0 netns ctr
	in_machine ip link set veth-dh0 master br-dh0 up
	in_ctr ip link set lo up
	in_ctr ip addr add "$CTR/24" dev eth0
	in_ctr ip link set eth0 up
	in_ctr ip route add default via "$GW"
	in_machine systemd-run -q --unit dh-svc socat TCP4-LISTEN:8088,bind=127.0.0.1,reuseaddr,fork \
		"SYSTEM:read -r _; echo hello-8088"
	# One flow for the "established flows" checks: whatever the client
	# sends is appended to /run/flow.log; no fork: one connection only.
	in_machine systemd-run -q --unit dh-flow-svc socat -u TCP4-LISTEN:8089,bind=127.0.0.1,reuseaddr \
		OPEN:/run/flow.log,creat,append
	wait_in "services listening" "ss -Hlnt 'sport = :8088' | grep -q . && ss -Hlnt 'sport = :8089' | grep -q ."
}

# A client in "ctr" writing a line every 0.2 s on one TCP connection; it
# exits when the connection breaks (SIGPIPE, which systemd ignores unless told).
start_flow() {
	in_machine systemd-run -q --unit dh-flow -p IgnoreSIGPIPE=no ip netns exec ctr sh -c \
		"i=0; while :; do i=\$((i+1)); echo \$i; sleep 0.2; done | socat -u - TCP4:$GW:8089"
	wait_in "the flow's first lines" "[ \$(wc -l </run/flow.log) -gt 2 ]"
}

# The flow is alive: its client still runs and the server got new lines.
flow_alive() {  # WHAT
	local before
	before=$(in_machine sh -c 'wc -l </run/flow.log')
	sleep 1
	in_machine systemctl is-active -q dh-flow || fail "$1: the flow's client ended: $(in_machine journalctl -u dh-flow -n 5 --no-pager)"
	[ "$(in_machine sh -c 'wc -l </run/flow.log')" -gt "$before" ] || fail "$1: no new data on the flow"
}

# ----------------------------------------------------------------------------
# The checks, in order; each leaves the container in the state the next expects.

check_apt_installs_the_deb() {
	in_machine sh -c "DEBIAN_FRONTEND=noninteractive cd /root && apt-get install -y -q ./${deb##*/}" >&2 ||
		fail "apt-get install ./${deb##*/} failed"
	in_machine dockhost-bpf --version >&2
	in_machine systemctl is-enabled -q dockhost-bpf || fail "the package did not enable the unit"
	# It also started it, with the stock config: stopped, for start below.
	in_machine systemctl stop dockhost-bpf
}

check_start_attaches() {
	in_machine systemctl daemon-reload
	in_machine systemctl enable -q dockhost-bpf
	write_config socket 8088/tcp 8089/tcp
	in_machine systemctl start dockhost-bpf
	wait_in "br-dh0 attached" "dockhost-bpf status | grep -q br-dh0"
	expect_eq "$(tcp_get 8088)" hello-8088 "a 127.0.0.1 service through the gateway"
	expect_eq "$(guard_ok)" 0 "route_localnet (socket mode)"
	# The pins are in the container's /sys/fs/bpf, not a bpffs of the unit's.
	in_machine test -e /sys/fs/bpf/dockhost-bpf/meta || fail "no pins in /sys/fs/bpf: $(in_machine ls /sys/fs/bpf)"
	start_flow
}

check_stop_keeps_attached() {
	# README: stop ends watch only; bridges stay attached, mappings and
	# established flows keep working (detach, or --detach-on-exit, ends them).
	in_machine systemctl stop dockhost-bpf
	in_machine systemctl is-active -q dockhost-bpf && fail "still active"
	expect_contains "$(in_machine dockhost-bpf status)" br-dh0 "status after stop"
	expect_eq "$(tcp_get 8088)" hello-8088 "after stop"
	guard_ok >/dev/null
	flow_alive "after stop"
}

check_restart_restores_mappings() {
	# A mapping removed by hand while the unit was stopped comes back with
	# it: watch applies the declared ports to the bridges it finds attached.
	in_machine dockhost-bpf port del 8088/tcp >/dev/null
	[ "$(tcp_get 8088)" != hello-8088 ] || fail "8088 still reachable after port del"
	in_machine systemctl start dockhost-bpf
	wait_in "8088 mapped again" "dockhost-bpf port list | grep -q 8088"
	expect_eq "$(tcp_get 8088)" hello-8088 "after start"
	in_machine systemctl restart dockhost-bpf
	wait_in "active after restart" "systemctl is-active -q dockhost-bpf"
	expect_eq "$(tcp_get 8088)" hello-8088 "after restart"
	guard_ok >/dev/null
	flow_alive "after restart"
}

check_reload_applies_the_edit() {
	# systemctl reload converges to the edited file: a new port (9088, to
	# the service on 8088) comes in; the flow on the unchanged 8089 stays.
	write_config socket 8088/tcp 8089/tcp "9088/tcp --to 8088"
	in_machine systemctl reload dockhost-bpf
	wait_in "9088 mapped by the reload" "dockhost-bpf port list | grep -q 9088"
	expect_eq "$(tcp_get 9088)" hello-8088 "the port the reload added"
	flow_alive "after reload"
	write_config socket 8088/tcp 8089/tcp
	in_machine systemctl reload dockhost-bpf
	wait_in "9088 unmapped by the reload" "! dockhost-bpf port list | grep -q 9088"
	[ "$(tcp_get 9088)" != hello-8088 ] || fail "9088 still reachable after the reload removed it"
	expect_eq "$(tcp_get 8088)" hello-8088 "8088 after the reloads"
	flow_alive "after the second reload"
	in_machine systemctl is-active -q dockhost-bpf || fail "not active after the reloads"
}

check_hardening() {
	local pid caps score
	pid=$(in_machine systemctl show -P MainPID dockhost-bpf)
	[ "$pid" -gt 0 ] || fail "no MainPID"
	# Exactly CAP_SYS_ADMIN (21), CAP_NET_ADMIN (12), CAP_BPF (39).
	caps=$(in_machine sed -n 's/^CapBnd:\t//p' "/proc/$pid/status")
	expect_eq "$caps" 0000008000201000 "bounding set"
	# Its mount namespace: the pins and the sysctls writable, the rest not.
	in_machine nsenter -t "$pid" -m sh -c 'touch /etc/dh-x || touch /usr/dh-x || touch /var/dh-x || touch /root/dh-x' 2>/dev/null &&
		fail "the unit's namespace can write outside /sys/fs/bpf and /proc/sys"
	in_machine nsenter -t "$pid" -m sh -c 'test -w /proc/sys/net/ipv4/conf/br-dh0/route_localnet' ||
		fail "route_localnet not writable for the unit"
	in_machine nsenter -t "$pid" -m sh -c 'mkdir /sys/fs/bpf/dh-x && rmdir /sys/fs/bpf/dh-x' ||
		fail "/sys/fs/bpf not writable for the unit"
	score=$(in_machine systemd-analyze security dockhost-bpf --no-pager | sed -n 's/.*Overall exposure level for dockhost-bpf.service: \([0-9.]*\).*/\1/p')
	echo "systemd-analyze security: exposure $score" >&2
	[ -n "$score" ] || fail "no exposure level from systemd-analyze security"
	# 4.0 today (9.6 unhardened): a setting dropped shows here.
	awk -v s="$score" 'BEGIN { exit !(s <= 4.0) }' || fail "exposure level $score, was 4.0"
	echo "$score" >"$run/exposure"
}

check_reboot_restores_mappings() {
	# Nobody ran the CLI: the enabled unit's watch saw br-dh0 appear.
	in_machine systemctl is-enabled -q dockhost-bpf || fail "not enabled"
	wait_in "br-dh0 attached after reboot" "dockhost-bpf port list | grep -q 8088"
	expect_eq "$(tcp_get 8088)" hello-8088 "after reboot"
	expect_eq "$(guard_ok)" 0 "route_localnet after reboot"
}

check_nat_mode() {
	# NAT mode on a new bridge (a reboot's): route_localnet 1 only with the
	# programs; stop and restart keep both, and established flows; a stop
	# with --detach-on-exit takes both away and ends the flows.
	wait_in "br-dh0 attached (nat)" "dockhost-bpf status | grep -q 'nat mode'"
	expect_eq "$(tcp_get 8088)" hello-8088 "NAT mode"
	expect_eq "$(guard_ok)" 1 "route_localnet (NAT mode)"
	start_flow
	in_machine systemctl stop dockhost-bpf
	expect_eq "$(guard_ok)" 1 "route_localnet after stop (programs stay)"
	expect_eq "$(tcp_get 8088)" hello-8088 "NAT mode after stop"
	flow_alive "NAT mode, after stop"
	write_config --detach-on-exit nat 8088/tcp 8089/tcp
	in_machine systemctl start dockhost-bpf
	expect_eq "$(guard_ok)" 1 "route_localnet after start"
	flow_alive "NAT mode, after start"
	in_machine systemctl stop dockhost-bpf
	in_machine journalctl -u dockhost-bpf -n 10 --no-pager >&2
	expect_eq "$(guard_ok)" 0 "route_localnet after stop with --detach-on-exit"
	[ "$(tcp_get 8088)" != hello-8088 ] || fail "8088 still reachable after a detaching stop"
	in_machine dockhost-bpf status | grep -q br-dh0 && fail "br-dh0 still attached"
	wait_in "the flow ended by the detach" "! systemctl is-active -q dh-flow"
}

# Our programs on br-dh0, read from the kernel (the root has no bpftool):
# tcx chains through the host's tcxctl in the container's netns, and tc.
programs_on_bridge() {
	nsenter -t "$leader" -n "$out/tcxctl" list br-dh0 2>/dev/null | grep dh_ || true
	in_machine tc filter show dev br-dh0 ingress | grep -o 'dh_[a-z_]*' || true
}

check_upgrade_keeps_flows() {
	# apt-get install of a newer .deb: the unit is restarted (a new
	# MainPID), adopts what is pinned, and the established flow goes on.
	local pid_before pid_after
	start_flow
	pid_before=$(in_machine systemctl show -P MainPID dockhost-bpf)
	in_machine sh -c "cd /root && DEBIAN_FRONTEND=noninteractive apt-get install -y -q ./${deb2##*/}" >&2 ||
		fail "apt-get install ./${deb2##*/} failed"
	expect_eq "$(in_machine dockhost-bpf --version)" "dockhost-bpf $version2" "the upgraded binary"
	wait_in "active after the upgrade" "systemctl is-active -q dockhost-bpf"
	pid_after=$(in_machine systemctl show -P MainPID dockhost-bpf)
	[ "$pid_after" != "$pid_before" ] || fail "the unit was not restarted by the upgrade (MainPID $pid_before)"
	flow_alive "after the upgrade"
	expect_eq "$(tcp_get 8088)" hello-8088 "after the upgrade"
	expect_eq "$(guard_ok)" 0 "route_localnet after the upgrade"
}

check_remove_detaches() {
	# apt-get remove: the unit stopped, every bridge detached (programs,
	# pins, route_localnet as it was), the service unreachable; the
	# configuration stays until purge.
	[ -n "$(programs_on_bridge)" ] || fail "no program of ours on br-dh0 before the remove"
	in_machine sh -c "DEBIAN_FRONTEND=noninteractive apt-get remove -y -q dockhost-bpf" >&2 ||
		fail "apt-get remove failed"
	in_machine systemctl is-active -q dockhost-bpf && fail "the unit still runs after remove"
	expect_eq "$(programs_on_bridge)" "" "our programs on br-dh0 after remove"
	in_machine test -e /sys/fs/bpf/dockhost-bpf && fail "pins left: $(in_machine ls /sys/fs/bpf/dockhost-bpf)"
	expect_eq "$(in_machine sysctl -n net.ipv4.conf.br-dh0.route_localnet)" 0 "route_localnet after remove"
	[ "$(tcp_get 8088)" != hello-8088 ] || fail "8088 still reachable after remove"
	in_machine test -e /etc/dockhost-bpf.conf || fail "remove took the configuration (purge's job)"
	in_machine sh -c "dpkg --purge dockhost-bpf" >&2 || fail "dpkg --purge failed"
	in_machine test -e /etc/dockhost-bpf.conf && fail "/etc/dockhost-bpf.conf left after purge"
	return 0
}

check_refuses_without_bpffs() {
	# No bpffs on /sys/fs/bpf (no sys-fs-bpf.mount): the unit does not
	# start, and a watch in the unit's private mount namespace would not
	# mount its own (its pins would die with the namespace).
	in_machine systemctl start dockhost-bpf 2>/dev/null && fail "started without /sys/fs/bpf"
	expect_eq "$(guard_ok)" 0 "route_localnet"
	# Without the unit's dependency, the CLI itself refuses in a unit's
	# private namespace: /sys/fs/bpf mounted there would die with it.
	local out
	out=$(in_machine systemd-run -q --wait --pipe -p ProtectSystem=strict -p PrivateTmp=yes \
		dockhost-bpf attach br-dh0 2>&1) && fail "attach in a private namespace worked: $out"
	expect_contains "$out" "would vanish" "message"
	# Nor with a bpffs the unit mounts itself, on an explicit --pin-dir.
	out=$(in_machine systemd-run -q --wait --pipe -p PrivateTmp=yes sh -c \
		'mkdir /tmp/b && mount -t bpf bpf /tmp/b && exec dockhost-bpf --pin-dir /tmp/b/p attach br-dh0' 2>&1) &&
		fail "attach on a private bpffs worked: $out"
	expect_contains "$out" "not shared" "message"
	expect_eq "$(guard_ok)" 0 "route_localnet"
}

# ----------------------------------------------------------------------------

for tool in systemd-nspawn debootstrap nsenter; do
	command -v $tool >/dev/null || { echo "test-systemd: $tool missing (scripts/install-deps.sh systemd)" >&2; exit 1; }
done
t0=$(date +%s)
"$root/tests/systemd/build_root.sh" "$out/systemd/root" || { failed=$((failed + 1)); exit 1; }
echo "test-systemd: root ready in $(($(date +%s) - t0)) s ($out/systemd/root)"

mkdir -p "$run/upper" "$run/work" "$merged"
mount -t overlay overlay -o "lowerdir=$out/systemd/root,upperdir=$run/upper,workdir=$run/work" "$merged" ||
	{ echo "SKIP systemd/all: cannot mount an overlay on $out (overlayfs)"; skipped=1; exit 0; }
# Can nspawn run anything here? If not, it cannot boot either: skip.
if ! probe=$(timeout 60 systemd-nspawn -q -D "$merged" --register=no --keep-unit --private-network /bin/true 2>&1); then
	echo "SKIP systemd/all: systemd-nspawn cannot run a container here: $(echo "$probe" | tail -n1)"
	skipped=1
	exit 0
fi
# The package, as a user installs it: built here (make deb), installed
# inside the booted container with apt-get, which finds every dependency
# already in the root (the container has no network).
make -s -C "$root" OUTPUT="$out" deb >"$run/log" 2>&1 ||
	{ echo "FAIL systemd/deb"; sed 's/^/    /' "$run/log"; failed=1; exit 1; }
deb=$(ls -t "$out"/dockhost-bpf_*.deb | head -n1)
cp "$deb" "$merged/root/"
# A newer version of the same tree, for the upgrade: a changelog entry on
# top of a copy, built the same way.
version=$(sed -n '1s/^[^ ]* (\([^)]*\)).*/\1/p' "$root/debian/changelog")
version2=$version+upgradetest1
mkdir -p "$run/src2"
(cd "$root" && tar -c --exclude=./.git --exclude='./.output*' .) | tar -x -C "$run/src2"
{
	printf 'dockhost-bpf (%s) unstable; urgency=medium\n\n  * test-systemd: an upgrade.\n\n' "$version2"
	printf ' -- test-systemd <root@localhost>  %s\n\n' "$(date -R)"
	cat "$root/debian/changelog"
} >"$run/src2/debian/changelog"
make -s -C "$run/src2" OUTPUT="$run/out2" deb >"$run/log" 2>&1 ||
	{ echo "FAIL systemd/deb_upgrade"; sed 's/^/    /' "$run/log"; failed=1; exit 1; }
deb2=$(ls "$run/out2"/dockhost-bpf_*.deb)
cp "$deb2" "$merged/root/"

boot_step boot 1
check apt_installs_the_deb check_apt_installs_the_deb
check start_attaches check_start_attaches
check stop_keeps_attached check_stop_keeps_attached
check restart_restores_mappings check_restart_restores_mappings
check reload_applies_the_edit check_reload_applies_the_edit
check hardening check_hardening
[ -s "$run/exposure" ] && echo "test-systemd: systemd-analyze security: exposure $(cat "$run/exposure")"
boot_step reboot 1
check reboot_restores_mappings check_reboot_restores_mappings
(write_config nat 8088/tcp 8089/tcp)
boot_step reboot_nat 1
check nat_mode check_nat_mode
boot_step boot_without_bpffs 0
check refuses_without_bpffs check_refuses_without_bpffs
# Last: the upgrade, then the package removed and purged.
(write_config socket 8088/tcp 8089/tcp)
boot_step reboot_for_upgrade 1
check upgrade_keeps_flows check_upgrade_keeps_flows
check remove_detaches check_remove_detaches
