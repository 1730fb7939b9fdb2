#!/usr/bin/env bash
# The CLI's contract: bad input gets one line naming the value, exit 2 for
# usage errors and 1 for runtime errors, and nothing changed on the host.
. "$(dirname "$0")/../lib.sh"

# Nothing attached anywhere: no pin dir, no filter, sysctl untouched.
expect_pristine() {
	[ ! -e "$PIN" ] || fail "pin dir left behind: $(ls "$PIN")"
	expect_eq "$(in_host tc filter show dev br0 ingress 2>/dev/null)" "" "filters on br0"
	expect_eq "$(in_host sysctl -n net.ipv4.conf.br0.route_localnet)" 0 "route_localnet"
}

test_bad_port_specs() {
	dh attach br0
	local spec
	for spec in 0 65536 abc 80/sctp -1 " 80" 80/ /tcp 99999999 8.5 80/TCP; do
		expect_error 2 "'$spec'" port add "$spec"
		expect_error 2 "'$spec'" port del "$spec"
		expect_error 2 "'$spec'" attach br0 --port "$spec"
	done
	expect_error 2 "expected one SPEC" port add
	expect_error 2 "expected one SPEC" port add 80 81
}

test_bad_to() {
	dh attach br0
	local to
	for to in 10.0.0.1:80 0.0.0.0:80 127.0.0.1:0 127.0.0.1:65536 127.0.0.1: :80 localhost:80 127.1:80 x \
		'[::1]:0' '[::1]:65536' '[::1]:' '[::1' '::1]:80' '[::2]:80' '[fd00::1]:80' '[127.0.0.1]:80' \
		'[::ffff:127.0.0.1]:80' '::1:80' '[::1]80' '[::1]:80x' '[]:80' '[::1%lo]:80' ::2; do
		expect_error 2 "'$to'" port add 8088 --to "$to"
	done
	expect_error 2 "--to goes with add" port del 8088 --to 9000
	expect_eq "$(dh port list)" "no ports mapped" "nothing added"
}

test_bad_bridge_names() {
	expect_error 2 "'abcdefghijklmnop'" attach abcdefghijklmnop
	expect_error 2 "'a/b'" attach a/b
	expect_error 2 "''" attach ""
	expect_error 1 "'nosuchbr': no such device" attach nosuchbr
	in_host ip link add dummy-veth type veth peer name dummy-peer
	expect_error 1 "'dummy-veth': not a bridge (kind 'veth')" attach dummy-veth
	expect_error 1 "'lo': not a bridge" attach lo
	expect_error 2 "expected one BRIDGE" attach
	expect_error 2 "expected one BRIDGE" attach br0 br1
	expect_error 2 "'abcdefghijklmnop'" detach abcdefghijklmnop
	expect_error 1 "'br0': not attached" detach br0
	expect_pristine
}

test_bad_gateways() {
	local gw
	for gw in 127.0.0.1 0.0.0.0 255.255.255.255 224.0.0.1 10.0.0 abc \
		::1 :: ff02::1 fe80::1 ::ffff:10.0.0.1 '[fd00::1]' fd00::1/64 fe80::1%br0 fd00:::1; do
		expect_error 2 "'$gw'" attach br0 --gateway "$gw"
	done
	expect_error 2 "link-local" attach br0 --gateway fe80::1
	expect_pristine
}

# --gateway takes IPv6: status and --json list it with IPv4's.
test_bad_from() {
	dh attach br0
	local from
	for from in 10.0.0.0/33 10.0.0.0/ 10.0.0.0/-1 10.0.0.0/+8 "10.0.0.0/ 8" 10.0.0.0/8x 10.0.0 1.2.3.4.5 \
		fd00::/129 fd00:::1 ::1/0x10 /8 '[::1]' 300.1.1.1 ""; do
		expect_error 2 "--from '$from': not a CIDR" port add 8088 --from "$from"
	done
	expect_error 2 "--from '10.0.0.1/8': host bits set (did you mean 10.0.0.0/8?)" port add 8088 --from 10.0.0.1/8
	expect_error 2 "--from 'fd00::1/64': host bits set (did you mean fd00::/64?)" port add 8088 --from fd00::1/64
	for from in "foo bar" -web _web 'a;b' "$(printf 'a%.0s' $(seq 80))"; do
		expect_error 2 "--from '$from': not a CIDR, 'any', nor a Docker container or network name" \
			port add 8088 --from "$from"
	done
	# No Docker here: a name cannot be resolved, a runtime error.
	expect_error 1 "--from 'web': Docker is not reachable" port add 8088 --from web
	# One bad source among good ones changes nothing.
	expect_error 2 "--from '10.0.0.0/33'" port add 8088 --from 10.0.0.0/8 --from 10.0.0.0/33
	expect_eq "$(dh port list)" "no ports mapped" "nothing added"
	expect_error 2 "port list: takes no arguments" port list --from 10.0.0.0/8
	expect_error 2 "option '--from' needs a value" port add 8088 --from
	# del --from: the source must be in a list; the mapping stays.
	dh port add 8088 --from 10.0.0.0/8
	expect_error 1 "port del: 8088/tcp --from '10.1.0.0/16': not in its allow-list" port del 8088 --from 10.1.0.0/16
	expect_error 1 "port del: 8089/tcp --from '10.0.0.0/8': not in its allow-list" port del 8089 --from 10.0.0.0/8
	expect_error 2 "--from '10.0.0.1/8': host bits set" port del 8088 --from 10.0.0.1/8
	expect_contains "$(dh port list)" "from: 10.0.0.0/8" "list after the failed dels"
	# The same source twice is one entry; its canonical form is its name.
	expect_exit 0 dh port add 8088 --from 10.0.0.0/08
	expect_contains "$OUT" "allow-list updated" "the same source again"
	expect_eq "$(dh port list | grep -c 'from:')" 1 "one source"
	expect_exit 0 dh --json port del 8088 --from 10.0.0.0/8
	expect_eq "$(printf '%s' "$OUT" | tr -d ' \n')" \
		'{"port":8088,"proto":"tcp","bridge":"*","removed":["10.0.0.0/8"],"closed":true,"result":"removed"}' "del --json"
	expect_contains "$(dh --json port list | tr -d ' \n')" '"allow":[]' "an empty list in --json"
}

# --from a Docker container or network: the fake API's answers, good and bad.
test_docker_allow_sources() {
	serve_fake_docker
	dh attach br0
	expect_exit 0 dh port add 8088 --from web --from appnet
	expect_contains "$OUT" "from: appnet (network: 10.201.0.0/24 fd42:201::/64)" "network source"
	expect_contains "$OUT" "from: web (container: 10.201.0.2/32 fd42:201::2/128 10.209.0.5/32)" "container source"
	# By id, as docker ps shows it: a source of its own name.
	expect_exit 0 dh port add 8088 --from 0fedcba987654321
	expect_contains "$(dh port list)" "from: 0fedcba987654321 (container: 10.201.0.2/32" "by id"
	expect_error 2 "--from 'nosuch': not a CIDR, nor a Docker container or network" port add 8088 --from nosuch
	expect_error 1 "--from 'stopped': this Docker container has no address (not running?)" port add 8088 --from stopped
	expect_error 1 "--from 'nullnets': this Docker container has no address" port add 8088 --from nullnets
	expect_error 1 "--from 'mynet': this Docker network has no address (no IPAM subnet)" port add 8088 --from mynet
	# An address Docker should never send is skipped, with a warning.
	expect_exit 0 dh port add 8089 --from badaddr
	expect_contains "$OUT" "'10.201.0.300' is not an address: ignored" "bad address warned"
	expect_contains "$OUT" "from: badaddr (container: 10.201.0.4/32)" "the good address kept"
	# del needs no Docker: the record says what the name put in.
	export DOCKER_HOST=tcp://127.0.0.1:2375
	expect_exit 0 dh port del 8088 --from web
	expect_not_contains "$(dh port list)" "from: web" "web removed"
	expect_contains "$(dh port list)" "from: appnet" "appnet kept"
}

test_ipv6_gateway() {
	expect_exit 0 dh attach br0 --gateway fd00:1::5 --gateway 10.201.0.7
	expect_contains "$OUT" "fd00:1::5" "attach's report"
	expect_contains "$(dh status)" "gateway fd00:1::5       (user)" "status"
	expect_contains "$(dh --json status)" '"addr":"fd00:1::5"' "status --json"
	# The bridge's link-local address (every bridge has one) is no gateway.
	expect_not_contains "$(dh status)" "fe80:" "link-local"
	in_host ip addr add fd00:2::1/64 dev br0 nodad
	dh attach br0 >/dev/null
	expect_contains "$(dh status)" "gateway fd00:2::1       (bridge)" "the bridge's IPv6 address"
	in_host ip addr del fd00:2::1/64 dev br0
	dh attach br0 >/dev/null
	expect_not_contains "$(dh status)" "fd00:2::1" "pruned with the address"
	expect_contains "$(dh status)" "fd00:1::5" "a --gateway stays"
}

test_port_commands_need_an_attached_bridge() {
	expect_error 1 "no bridge attached" port add 8088
	expect_error 1 "no bridge attached" port del 8088
	expect_exit 0 dh port list
	expect_contains "$OUT" "no bridge attached" "port list"
	dh attach br0
	expect_error 1 "'br9': not attached" port add 8088 --bridge br9
	expect_error 1 "8088/tcp: not mapped on any bridge" port del 8088
	expect_error 1 "8088/udp on br0: not mapped" port del 8088/udp --bridge br0
}

# port del without --bridge deletes the spec wherever port list shows it:
# the global entry and every bridge's own (attach --port writes those).
test_port_del_everywhere() {
	make_bridge "$H" br1 10.202.0.1
	dh attach br0 --port 8088
	expect_contains "$(dh port list)" "br0             8088/tcp" "attach --port"
	expect_exit 0 dh port del 8088
	expect_eq "$OUT" "8088/tcp on br0: deleted" "del of a per-bridge entry"
	expect_eq "$(dh port list)" "no ports mapped" "after del"
	expect_error 1 "port del: 8088/tcp: not mapped on any bridge" port del 8088

	# Global and two bridges at once; UDP on the same port stays.
	dh attach br1 --port 8088 --port 8088/udp
	dh port add 8088
	dh port add 8088 --bridge br0 --to 9000
	expect_exit 0 dh port del 8088
	expect_eq "$OUT" "8088/tcp on all bridges, br0, br1: deleted" "del everywhere"
	expect_eq "$(dh --json port list | grep -c '"port"')" 1 "entries left"
	expect_contains "$(dh port list)" "br1             8088/udp" "the udp entry"
	# Their per-port counters went with them (8088 as bpftool prints a
	# network-order __u16: 0x981f).
	expect_eq "$(bpftool -j map dump pinned "$PIN/port_stats" | grep -o '"port":38943,"proto":6' | wc -l)" 0 \
		"port_stats entries of 8088/tcp"
	expect_eq "$(bpftool -j map dump pinned "$PIN/port_stats" | grep -o '"port":38943,"proto":17' | wc -l)" 1 \
		"port_stats entry of 8088/udp"

	# --json names every place it was deleted from.
	dh port add 7000
	dh port add 7000 --bridge br1
	expect_exit 0 dh --json port del 7000
	expect_contains "$(printf '%s' "$OUT" | tr -d ' \n')" '"deleted_from":["*","br1"]' "--json del"
	expect_contains "$OUT" '"result":"deleted"' "--json del result"

	# --bridge stays scoped: the global entry survives a scoped del, and a
	# scoped del of a spec mapped only globally fails.
	dh port add 7001
	dh port add 7001 --bridge br0
	expect_exit 0 dh port del 7001 --bridge br0
	expect_eq "$OUT" "7001/tcp on br0: deleted" "scoped del"
	expect_contains "$(dh port list)" "*               7001/tcp" "the global entry after a scoped del"
	expect_error 1 "port del: 7001/tcp on br0: not mapped" port del 7001 --bridge br0
	expect_contains "$(dh port list)" "*               7001/tcp" "the global entry after a failed scoped del"
}

test_unknown_commands_and_options() {
	expect_error 2 "unknown command 'frobnicate'" frobnicate
	expect_error 2 "unknown option '--frob'" --frob status
	expect_error 2 "unknown option '--frob'" attach br0 --frob
	expect_error 2 "unknown action 'move'" port move 80
	expect_error 2 "needs a value" attach br0 --gateway
	expect_error 2 "--hook 'xdp'" attach br0 --hook xdp
	expect_error 2 "attach: --mode 'sockets': not socket or nat" attach br0 --mode sockets
	expect_error 2 "needs a value" attach br0 --mode
	expect_error 2 "must be an absolute path" --pin-dir relative/dir status
	expect_exit 2 dh
	expect_contains "$OUT" "Usage:" "no command"
}

test_help_for_every_command() {
	local cmd
	expect_exit 0 "$DH_BIN" --help
	for cmd in attach detach port status stats metrics trace; do
		expect_contains "$OUT" "$cmd" "--help lists $cmd"
	done
	for cmd in attach detach port status stats metrics trace; do
		expect_exit 0 "$DH_BIN" "$cmd" --help
		expect_contains "$OUT" "Usage: dockhost-bpf [OPTIONS] $cmd" "$cmd --help"
		expect_exit 0 "$DH_BIN" help "$cmd"
		expect_contains "$OUT" "Usage: dockhost-bpf [OPTIONS] $cmd" "help $cmd"
	done
}

test_not_root() {
	command -v setpriv >/dev/null || skip "setpriv (util-linux) not installed"
	local cmd
	for cmd in "attach br0" "detach br0" "port add 80" "port list" "status" "stats"; do
		# shellcheck disable=SC2086
		expect_exit 1 in_host setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all \
			"$DH_BIN" --pin-dir "$PIN" $cmd
		expect_contains "$OUT" "must run as root" "$cmd as nobody"
	done
	# Usage errors are found before privileges are checked.
	expect_exit 2 in_host setpriv --reuid=65534 --regid=65534 --clear-groups "$DH_BIN" port add 0
	expect_pristine
}

# The test runners themselves: run by a user who cannot test anything,
# they must say why and fail, never end with a summary that reads green.
test_test_runners_fail_when_not_root() {
	command -v setpriv >/dev/null || skip "setpriv (util-linux) not installed"
	local nobody=(setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all)
	local unit=$DH_ROOT/.output/test_datapath
	[ -x "$unit" ] || skip "$unit not built (make test builds it)"
	in_host "${nobody[@]}" test -r "$DH_ROOT/tests/run.sh" -a -x "$unit" ||
		skip "$DH_ROOT is not readable by uid 65534"
	expect_exit 1 in_host "${nobody[@]}" "$DH_ROOT/tests/run.sh"
	expect_contains "$OUT" "nothing tested: the tests need root" "run.sh as nobody"
	expect_not_contains "$OUT" " passed, " "a summary line from run.sh as nobody"
	expect_exit 1 in_host "${nobody[@]}" "$unit"
	expect_contains "$OUT" "nothing tested: BPF_PROG_TEST_RUN needs root" "the unit binary as nobody"
	expect_not_contains "$OUT" " passed, " "a summary line from the unit binary as nobody"
}

test_pin_dir_not_on_bpffs() {
	local dir
	dir=$(mktemp -d "${TMPDIR:-/tmp}"/dh-notbpf-XXXXXX)
	expect_exit 1 dh --pin-dir "$dir/pins" attach br0
	expect_contains "$OUT" "'$dir/pins': $dir is not a bpf filesystem" "message"
	expect_exit 1 dh --pin-dir "$dir/pins" status
	expect_contains "$OUT" "not a bpf filesystem" "status"
	[ ! -e "$dir/pins" ] || fail "created $dir/pins"
	rmdir "$dir"
	expect_pristine
}

test_default_pin_dir_mounts_bpffs() {
	# A private mount namespace with no bpffs on /sys/fs/bpf: attach mounts
	# it there, as it would on a host where systemd did not.
	local out
	# A process that is not the CLI's ancestor holds the namespace (as a
	# long-lived one would), so the bpffs attach mounts outlives the call.
	out=$(in_host unshare --mount --propagation private sh -c "
		umount /sys/fs/bpf 2>/dev/null
		mkdir -p /sys/fs/bpf
		sleep 60 & holder=\$!
		trap 'kill \$holder' EXIT
		$DH_BIN attach br0 >/dev/null || exit 1
		stat -f -c %T /sys/fs/bpf
		ls /sys/fs/bpf/dockhost-bpf
		$DH_BIN detach br0 >/dev/null")
	expect_contains "$out" "bpf_fs" "/sys/fs/bpf filesystem"
	expect_contains "$out" "prog_ingress" "default pin dir"
	expect_eq "$(in_host sysctl -n net.ipv4.conf.br0.route_localnet)" 0 "route_localnet after detach"
}

test_refuses_a_pin_dir_on_a_bpffs_that_dies_with_it() {
	# A unit's private mount namespace with a bpffs of its own for
	# --pin-dir: the pins, and the route_localnet to restore, would go
	# with the namespace while the programs stay. Refused.
	mkdir "$DH_SCRATCH/b"
	expect_exit 1 in_host unshare --mount --propagation private sh -c "
		mount -t bpf bpf $DH_SCRATCH/b && $DH_BIN --pin-dir $DH_SCRATCH/b/pins attach br0 --mode nat"
	expect_contains "$OUT" "not shared with the host" "message"
	expect_eq "$(printf '%s\n' "$OUT" | wc -l)" 1 "one line"
	expect_eq "$(in_host sysctl -n net.ipv4.conf.br0.route_localnet)" 0 "route_localnet"
	expect_eq "$(in_host "$DH_BIN" --pin-dir "$PIN" status | grep -c WARNING)" 0 "status: nothing exposed"
	# Held by a process that is not the CLI's ancestor, the namespace (and
	# its bpffs) outlives the call: allowed.
	expect_exit 0 in_host unshare --mount --propagation private sh -c "
		mount -t bpf bpf $DH_SCRATCH/b || exit 1
		sleep 60 & holder=\$!
		trap 'kill \$holder' EXIT
		$DH_BIN --pin-dir $DH_SCRATCH/b/pins attach br0 --mode nat >/dev/null || exit 1
		$DH_BIN --pin-dir $DH_SCRATCH/b/pins detach br0 >/dev/null"
	expect_eq "$(in_host sysctl -n net.ipv4.conf.br0.route_localnet)" 0 "route_localnet after detach"
	rmdir "$DH_SCRATCH/b"
}

test_refuses_a_bpffs_that_dies_with_it() {
	# The confirmed leak: 'ip netns exec' hides /sys/fs/bpf, attach
	# mounted a bpffs private to itself, and its pins (tcx links then)
	# died with it, leaving route_localnet=1 unguarded. Now it refuses.
	expect_exit 1 in_host "$DH_BIN" attach br0
	expect_contains "$OUT" "would vanish with this process" "message"
	expect_contains "$OUT" "nsenter --net" "the way out"
	# Nor from a shell there ('ip netns exec NS bash'): the shell is the
	# CLI's ancestor and goes with the namespace.
	expect_exit 1 in_host sh -c "$DH_BIN attach br0; exit \$?"
	expect_eq "$(in_host sysctl -n net.ipv4.conf.br0.route_localnet)" 0 "route_localnet"
	expect_eq "$(in_host "$DH_BIN" status | grep -c WARNING)" 0 "status: nothing exposed"
}

test_status_warns_of_an_unguarded_bridge() {
	in_host sysctl -qw net.ipv4.conf.br0.route_localnet=1
	expect_exit 0 dh status
	expect_contains "$OUT" "WARNING br0: route_localnet on and no dockhost guard" "status"
	expect_contains "$(dh --json status)" '"exposed":true' "status --json"
	dh attach br0
	expect_not_contains "$(dh status)" WARNING "attached"
	# The kernel ORs the bridge's value with conf/all's.
	in_host sysctl -qw net.ipv4.conf.all.route_localnet=1
	expect_exit 0 dh status
	expect_contains "$OUT" "net.ipv4.conf.all.route_localnet=1: every interface" "all"
	make_bridge "$H" br1 10.202.0.1
	expect_contains "$(dh status 2>/dev/null)" "WARNING br1: route_localnet on" "br1 through conf/all"
}

test_failed_attach_changes_nothing() {
	# Somebody else's filter at our handle and priority: attach must fail
	# after having loaded and pinned, and undo all of it.
	in_host tc qdisc add dev br0 clsact
	in_host tc filter add dev br0 ingress prio 1 handle 0xd0c8 bpf da obj "$DH_USER_FILTER" sec tc
	expect_error 1 "another program holds tc handle" attach br0 --hook clsact --port 8088 --gateway 10.9.9.9
	[ ! -e "$PIN" ] || fail "pin dir left behind: $(ls "$PIN")"
	expect_eq "$(in_host sysctl -n net.ipv4.conf.br0.route_localnet)" 0 "route_localnet"
	expect_contains "$(in_host tc filter show dev br0 ingress)" user_filter "the other filter"
	expect_eq "$(in_host tc filter show dev br0 egress)" "" "egress filters"

	# Same with another bridge attached: its state stays, ours is undone.
	make_bridge "$H" br1 10.202.0.1
	dh attach br1 --port 7000
	local before
	before=$(config_snapshot)
	expect_error 1 "another program holds tc handle" attach br0 --hook clsact --port 8088
	expect_eq "$(config_snapshot)" "$before" "state after a failed attach"
}

test_concurrent_calls_serialize() {
	dh attach br0
	local i pids=()
	for i in $(seq 20); do
		dh port add $((7000 + i)) >/dev/null &
		pids+=($!)
	done
	for i in "${pids[@]}"; do wait "$i" || fail "a concurrent port add failed"; done
	expect_eq "$(dh --json port list | grep -c '"port"')" 20 "entries after 20 concurrent adds"
	for i in $(seq 20); do
		dh port del $((7000 + i)) >/dev/null &
	done
	wait
	expect_eq "$(dh port list)" "no ports mapped" "after 20 concurrent deletes"
}

# --to in IPv6: [::1]:PORT and ::1 (the same port) map IPv6 alone, an
# IPv4 address IPv4 alone, a bare port both.
test_ipv6_to() {
	dh attach br0 --mode socket
	expect_exit 0 dh port add 8088 --to '[::1]:9000'
	expect_contains "$OUT" "8088/tcp on all bridges -> [::1]:9000: added" "[::1]:PORT"
	expect_exit 0 dh port add 8089 --to ::1
	expect_contains "$OUT" "-> [::1]:8089: added" "::1"
	expect_exit 0 dh port add 8090 --to '[::1]'
	expect_contains "$OUT" "-> [::1]:8090: added" "[::1]"
	expect_exit 0 dh port add 8091 --to 127.0.0.3
	expect_contains "$OUT" "-> 127.0.0.3:8091: added" "an IPv4 address alone"
	expect_exit 0 dh port add 8092
	expect_contains "$OUT" "-> 127.0.0.1:8092,[::1]:8092: added" "no --to: both"
	expect_exit 0 dh --json port list
	OUT=$(printf '%s' "$OUT" | tr -d ' \n\t')  # one entry a line, whatever the pretty-printing
	expect_contains "$OUT" '"port":8088,"proto":"tcp","to_addr":null,"to_addr6":"::1","to_port":9000' "json: IPv6 alone"
	expect_contains "$OUT" '"port":8091,"proto":"tcp","to_addr":"127.0.0.3","to_addr6":null' "json: IPv4 alone"
	expect_contains "$(dh port list)" "[::1]:9000" "port list"
	expect_exit 0 dh port add 8088 --to '[::1]:9000'
	expect_contains "$OUT" "unchanged" "the same again"
}

test_idempotent_port_add() {
	dh attach br0
	expect_exit 0 dh port add 8088
	expect_contains "$OUT" "added" "first add"
	expect_exit 0 dh port add 8088/tcp
	expect_contains "$OUT" "unchanged" "second add"
	expect_exit 0 dh port add 8088 --to 127.0.0.2:9000
	expect_contains "$OUT" "updated" "remap"
	expect_exit 0 dh --json port list
	expect_contains "$OUT" '"to_addr":"127.0.0.2"' "json list"
}

test_json_everywhere() {
	dh --json attach br0 --mode nat --port 8088 | grep -q '"result":"attached"' || fail "attach --json"
	dh --json port add 8089/udp | grep -q '"result":"added"' || fail "port add --json"
	dh --json status | grep -q '"route_localnet":1' || fail "status --json"
	dh --json stats | grep -q '"redirected":' || fail "stats --json"
	dh --json stats --reset | grep -q '"redirected":' || fail "stats --reset --json"
	dh --json port del 8089/udp | grep -q '"result":"deleted"' || fail "port del --json"
	dh --json detach br0 | grep -q '"result":"detached"' || fail "detach --json"
	dh --json status | grep -q '"bridges":\[' || fail "status --json, nothing attached"
}

# Global options after the command name, for every command: the same
# output as before it. "--" ends them: what follows is the command's.
test_global_options_after_the_command() {
	local other=$DH_SCRATCH/other-pins
	in_host "$DH_BIN" attach br0 --pin-dir "$PIN" --json --mode nat --port 8088 |
		grep -q '"result":"attached"' || fail "attach ... --pin-dir --json"
	in_host "$DH_BIN" port add 8089/udp --json --pin-dir="$PIN" | grep -q '"result":"added"' ||
		fail "port add ... --json --pin-dir="
	in_host "$DH_BIN" port list --pin-dir "$PIN" --json | python3 -c 'import json,sys; json.load(sys.stdin)' ||
		fail "port list ... --json"
	in_host "$DH_BIN" status --json --pin-dir "$PIN" | grep -q '"route_localnet":1' || fail "status ... --json"
	in_host "$DH_BIN" stats -v --json --pin-dir "$PIN" | grep -q '"redirected":' || fail "stats ... --json"
	in_host "$DH_BIN" stats --reset --pin-dir "$PIN" --verbose --json | grep -q '"redirected":' ||
		fail "stats --reset ... --json"
	# The same JSON object (its keys: the counters move with the
	# container's own IPv6 chatter between the two calls).
	expect_exit 0 dh stats --json
	expect_eq "$(python3 -c 'import json,sys; print(sorted(json.loads(sys.argv[1])))' "$OUT")" \
		"$(python3 -c 'import json,sys; print(sorted(json.load(sys.stdin)))' < <(dh --json stats))" \
		"stats --json after the command"
	# A later --pin-dir wins, as a repeated one before the command does.
	expect_exit 0 in_host "$DH_BIN" --pin-dir "$other" status --pin-dir "$PIN" --json
	expect_contains "$OUT" '"route_localnet":1' "--pin-dir after the command"
	expect_error 2 "needs a value" status --pin-dir
	expect_error 2 "must be an absolute path" status --pin-dir relative/dir
	expect_error 2 "unexpected argument '--json'" stats -- --json
	expect_error 2 "unknown option '--frob'" stats --json --frob
	in_host "$DH_BIN" detach br0 --pin-dir "$PIN" --json | grep -q '"result":"detached"' ||
		fail "detach ... --json"
	expect_exit 1 dh trace --json
	expect_contains "$OUT" "no bridge attached" "trace --json, nothing attached"
}

test_docker_network_names() {
	# A fake Docker API on a unix socket: names resolve to bridges as
	# dockerd would say, with no daemon on the machine.
	serve_fake_docker
	in_host ip link add br-0123456789ab type bridge
	in_host ip addr add 10.207.0.1/24 dev br-0123456789ab

	# "bridge" names docker0's equivalent here (br0, by its option).
	expect_exit 0 dh attach bridge --port 8088
	expect_contains "$OUT" "br0: attached" "network 'bridge'"
	# A user-defined network without the option: br-<first 12 hex of its id>,
	# by name or by id.
	expect_exit 0 dh attach mynet
	expect_contains "$OUT" "br-0123456789ab: attached" "network 'mynet'"
	expect_exit 0 dh port add 9000 --bridge mynet
	expect_contains "$(dh port list)" "br-0123456789ab 9000/tcp" "port --bridge NETWORK"
	expect_exit 0 dh port del 9000 --bridge 0123456789abcdef
	expect_exit 0 dh detach mynet
	expect_exit 0 dh detach bridge
	# Errors: not a bridge network, no such network, no daemon at all.
	expect_error 1 "'swarmnet': a 'overlay' network, not a bridge network" attach swarmnet
	expect_error 1 "'nosuchnet': no such device" attach nosuchnet
	expect_error 2 "'a-network-name-too-long': not a valid interface name (1-15 characters) nor a Docker network" \
		attach a-network-name-too-long
	export DOCKER_HOST=tcp://127.0.0.1:2375
	expect_error 2 "not a valid interface name" attach a-network-name-too-long
	expect_pristine
}

test_docker_answers_with_null_fields() {
	serve_fake_docker
	in_host ip link add br-abcdefabcdef type bridge
	# Members the CLI needs, null or of another type: an error, not a crash.
	expect_error 1 "'nulldriver': Docker's answer has no \"Driver\" string" attach nulldriver
	expect_error 1 "'nullid': Docker's answer has no bridge name or id" attach nullid
	expect_error 1 "'wrongtypes': Docker's answer has no bridge name or id" attach wrongtypes
	expect_error 1 "'array': Docker's answer is not a JSON object" attach array
	# A null or absent option: Docker's default name, br-<id>.
	expect_exit 0 dh attach nullopts
	expect_contains "$OUT" "br-abcdefabcdef: attached" "Options null"
	expect_exit 0 dh attach nullname
	expect_contains "$OUT" "br-abcdefabcdef: already attached" "bridge name option null"
	expect_exit 0 dh detach nullname
	# A name that is no interface name is refused, not truncated.
	expect_error 1 "'badname': Docker names its bridge 'a-bridge-name-too-long?x', not a valid interface name" \
		attach badname
	# An error answer with a null message: no daemon to speak of.
	expect_error 1 "'nulmsg': no such device" attach nulmsg
	expect_exit 1 dh -v detach nulmsg
	expect_contains "$OUT" "Docker answered 500" "error answer with a null message"
	expect_pristine
}

test_docker_host_gateway_ip_from_daemon_json() {
	local conf=$DH_SCRATCH/daemon.json
	echo '{"host-gateway-ip": "10.201.0.99", "bip": "172.30.0.1/16"}' >"$conf"
	DOCKHOST_DOCKER_DAEMON_JSON=$conf dh attach br0
	expect_contains "$(dh status)" "10.201.0.99     (host-gateway-ip)" "configured host-gateway"
	echo '{"host-gateway-ips": ["10.201.0.98", "fd00::1"]}' >"$conf"
	DOCKHOST_DOCKER_DAEMON_JSON=$conf dh attach br0 >/dev/null
	expect_contains "$(dh status)" "10.201.0.98" "host-gateway-ips"
	expect_not_contains "$(dh status)" "10.201.0.99" "the old configured address, pruned"
	expect_contains "$(dh status)" "fd00::1         (host-gateway-ip)" "an IPv6 host-gateway-ips entry"
	# Not gateways: Docker would hand them out, the datapath cannot use them.
	echo '{"host-gateway-ips": ["fe80::1", "::1", "fd00::2"]}' >"$conf"
	DOCKHOST_DOCKER_DAEMON_JSON=$conf expect_exit 0 dh attach br0
	expect_contains "$OUT" "\"host-gateway-ips\" has 'fe80::1': link-local" "a link-local entry, warned"
	expect_contains "$(dh status)" "fd00::2" "the usable entry"
	expect_not_contains "$(dh status)" "fe80::1" "the link-local entry"
	rm -f "$conf"
}

test_warns_about_bridge_netfilter() {
	# New network namespaces start with bridge-nf-call-iptables=1 here.
	[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] || skip "no br_netfilter in this kernel"
	in_host sysctl -qw net.bridge.bridge-nf-call-iptables=1
	expect_exit 0 dh attach br0 --mode nat
	expect_eq "$(printf '%s\n' "$OUT" | grep -c 'bridge-nf-call-iptables=1')" 1 "one warning line"
	expect_contains "$OUT" "br0: net.bridge.bridge-nf-call-iptables=1: conntrack sees" "warning"
	expect_contains "$OUT" "INVALID" "warning"
	expect_exit 0 dh attach br0
	expect_not_contains "$OUT" "bridge-nf-call-iptables" "already attached: said once"
	dh detach br0
	in_host sysctl -qw net.bridge.bridge-nf-call-iptables=0
	expect_exit 0 dh attach br0
	expect_not_contains "$OUT" "bridge-nf-call-iptables" "with the sysctl at 0"
}

# Pins, their kernel objects and every map's contents: what a refusal
# must leave exactly as it was.
pin_set_snapshot() {
	local m
	ls -i "$PIN"
	for m in ports port_stats gateways nat_state bridges; do
		bpftool map dump pinned "$PIN/$m"
	done
	# Stray packets (IPv6 solicitations) count as passed: not a change.
	bpftool map dump pinned "$PIN/counters" | grep -v '"passed"'
	in_host sysctl -n net.ipv4.conf.br0.route_localnet
}

# A meta map as another version of the CLI would pin it.
craft_meta() {  # VERSION [MAGIC_BYTES]
	rm -f "$PIN/meta"
	bpftool map create "$PIN/meta" type array key 4 value 8 entries 1 name dh_meta
	# shellcheck disable=SC2086
	bpftool map update pinned "$PIN/meta" key 0 0 0 0 value ${2:-100 104 98 102} "$1" 0 0 0
}

# Every command on a pin set it must not touch: exit 1, one line, no change.
expect_refused() {  # NEEDLE
	local before cmd
	before=$(pin_set_snapshot)
	for cmd in "status" "stats" "stats --reset" "port list" "port add 9000" "port del 8088" \
		"attach br0" "attach br0 --port 9001" "detach br0"; do
		# shellcheck disable=SC2086
		expect_error 1 "$1" $cmd
		expect_contains "$OUT" "nothing changed" "'$cmd'"
	done
	expect_eq "$(pin_set_snapshot)" "$before" "the pin set after the refusals"
}

test_pin_sets_of_other_versions_are_refused() {
	dh attach br0 --port 8088
	# A counter that a refused 'stats --reset' must leave alone.
	local value version size
	size=$(bpftool map show pinned "$PIN/counters" | sed -n 's/.* value \([0-9]*\)B .*/\1/p')
	# shellcheck disable=SC2046
	bpftool map update pinned "$PIN/counters" key 0 0 0 0 value 7 $(printf ' 0%.0s' $(seq $((size - 1))))
	value=$(bpftool map lookup pinned "$PIN/meta" key 0 0 0 0 | sed -n 's/.*value: //p')
	expect_eq "${value% ?? ?? ?? ??}" "64 68 62 66" "meta's magic"
	version=$((16#$(echo "$value" | awk '{print $5}')))
	[ "$version" -ge 2 ] || fail "ABI version $version"

	craft_meta $((version + 1))
	expect_refused "pinned by a newer dockhost-bpf (ABI $((version + 1)), this one has ABI $version): use that version or upgrade this one"
	craft_meta $((version - 1))
	expect_refused "pinned by an older dockhost-bpf (ABI $((version - 1)), this one has ABI $version): detach every bridge with the version that attached them"
	rm "$PIN/meta"  # a pin set from before versioning
	expect_refused "pinned by an older dockhost-bpf (ABI 1, this one has ABI $version)"
	craft_meta "$version" "1 2 3 4"
	expect_refused "meta: not the meta map of a dockhost-bpf pin set (magic 0x04030201)"
	rm "$PIN/meta"
	bpftool map create "$PIN/meta" type hash key 4 value 8 entries 1 name dh_meta
	expect_refused "meta: not the meta map of a dockhost-bpf pin set"
	craft_meta "$version"

	# The right version, but maps whose sizes differ from what the CLI
	# reads: refused before any read, never read with the wrong sizes.
	mv "$PIN/bridges" "$PIN/bridges_saved"
	bpftool map create "$PIN/bridges" type hash key 4 value 8 entries 4 name bridges
	expect_refused "/bridges: map type 1, key size 4, value size 8, where this dockhost-bpf expects 1, 4, "
	rm "$PIN/bridges"
	mv "$PIN/bridges_saved" "$PIN/bridges"
	mv "$PIN/counters" "$PIN/counters_saved"
	bpftool map create "$PIN/counters" type percpu_array key 4 value 16 entries 1 name counters
	expect_refused "/counters: map type 6, key size 4, value size 16"
	rm "$PIN/counters"
	bpftool map create "$PIN/counters" type array key 4 value 80 entries 1 name counters
	expect_refused "/counters: map type 2, key size 4, value size 80"
	rm "$PIN/counters"
	mv "$PIN/counters_saved" "$PIN/counters"

	# Put back as it was: everything works again.
	expect_exit 0 dh attach br0
	expect_contains "$OUT" "already attached" "attach after the refusals"
	expect_exit 0 dh detach br0
	[ ! -e "$PIN" ] || fail "pin dir left behind: $(ls "$PIN")"
}

test_detach_force_leaves_an_older_pin_set() {
	make_bridge "$H" br1 10.202.0.1
	dh attach br0 --mode nat --port 8088
	dh attach br1 --mode nat --hook clsact
	local version
	version=$((16#$(bpftool map lookup pinned "$PIN/meta" key 0 0 0 0 | awk '{print $11}')))
	craft_meta $((version - 1))
	expect_error 1 "or with 'detach --force BRIDGE'" detach br0
	expect_error 1 "'br9': not attached" detach --force br9
	expect_exit 0 dh detach --force br0
	expect_contains "$OUT" "br0: detached from an older dockhost-bpf's pins (route_localnet set to 0)" "detach --force"
	expect_eq "$(in_host sysctl -n net.ipv4.conf.br0.route_localnet)" 0 "br0's route_localnet"
	expect_eq "$(in_host "$DH_TCXCTL" list br0)" "" "programs on br0"
	# br1 stays as the older version left it, guarded.
	expect_eq "$(in_host sysctl -n net.ipv4.conf.br1.route_localnet)" 1 "br1's route_localnet"
	expect_contains "$(in_host tc filter show dev br1 ingress)" dh_ingress "br1's filter"
	rm "$PIN/meta"  # from before versioning, and the last bridge
	expect_exit 0 dh detach br1 --force
	expect_eq "$(in_host sysctl -n net.ipv4.conf.br1.route_localnet)" 0 "br1's route_localnet"
	expect_not_contains "$(in_host tc filter show dev br1 ingress)" dh_ingress "br1's filter"
	[ ! -e "$PIN" ] || fail "pin dir left behind: $(ls "$PIN")"

	# This version's pins: a plain detach. A newer version's: refused.
	dh attach br0
	expect_exit 0 dh detach --force br0
	expect_contains "$OUT" "br0: detached (route_localnet restored to 0)" "--force on current pins"
	dh attach br0
	craft_meta $((version + 1))
	expect_error 1 "pinned by a newer dockhost-bpf" detach --force br0
	craft_meta "$version"
	expect_exit 0 dh detach br0
	[ ! -e "$PIN" ] || fail "pin dir left behind: $(ls "$PIN")"
}

# What package removal runs (debian/dockhost-bpf.prerm): every bridge, in
# either mode and hook, restored; nothing attached is no error.
test_detach_all() {
	expect_exit 0 dh detach --all
	expect_eq "$OUT" "detach: no bridge attached" "detach --all with no pin dir"
	expect_error 2 "'br0': --all takes no BRIDGE" detach --all br0
	make_bridge "$H" br1 10.202.0.1
	dh attach br0 --mode socket --port 8088
	dh attach br1 --mode nat --hook clsact
	expect_eq "$(in_host sysctl -n net.ipv4.conf.br1.route_localnet)" 1 "br1's route_localnet attached"
	expect_exit 0 dh detach --all
	expect_contains "$OUT" "br0: detached (route_localnet restored to 0)" "detach --all, br0"
	expect_contains "$OUT" "br1: detached (route_localnet restored to 0)" "detach --all, br1"
	expect_eq "$(in_host sysctl -n net.ipv4.conf.br1.route_localnet)" 0 "br1's route_localnet"
	expect_eq "$(in_host "$DH_TCXCTL" list br0)" "" "programs on br0"
	expect_not_contains "$(in_host tc qdisc show dev br1)" clsact "br1's clsact qdisc"
	[ ! -e "$PIN" ] || fail "pin dir left behind: $(ls "$PIN")"

	# An older version's pins: refused without --force, detached with it.
	dh attach br0 --mode nat
	dh attach br1 --mode nat --hook clsact
	local version
	version=$((16#$(bpftool map lookup pinned "$PIN/meta" key 0 0 0 0 | awk '{print $11}')))
	craft_meta $((version - 1))
	expect_error 1 "pinned by an older dockhost-bpf" detach --all
	expect_exit 0 dh detach --all --force
	expect_contains "$OUT" "br0: detached from an older dockhost-bpf's pins" "detach --all --force, br0"
	expect_contains "$OUT" "br1: detached from an older dockhost-bpf's pins" "detach --all --force, br1"
	expect_eq "$(in_host sysctl -n net.ipv4.conf.br0.route_localnet)" 0 "br0's route_localnet"
	expect_eq "$(in_host sysctl -n net.ipv4.conf.br1.route_localnet)" 0 "br1's route_localnet"
	expect_not_contains "$(in_host tc filter show dev br1 ingress)" dh_ingress "br1's filter"
	[ ! -e "$PIN" ] || fail "pin dir left behind: $(ls "$PIN")"
}

# One version, debian/changelog's top entry, printed by --version and -V.
test_version_is_the_changelogs() {
	local want
	want=$(sed -n '1s/^dockhost-bpf (\([^)]*\)).*/\1/p' "$DH_ROOT/debian/changelog")
	[ -n "$want" ] || fail "no version in debian/changelog's first line"
	expect_exit 0 "$DH_BIN" --version
	expect_eq "$OUT" "dockhost-bpf $want" "--version"
	expect_exit 0 "$DH_BIN" -V
	expect_eq "$OUT" "dockhost-bpf $want" "-V"
}

# nat_state entries of one ifindex.
nat_count() {  # IFINDEX
	bpftool map dump pinned "$PIN/nat_state" | grep -c "^ *\"ifindex\": $1,\$" || true
}

test_detach_ends_with_a_full_nat_state_under_churn() {
	make_bridge "$H" br1 10.202.0.1
	dh attach br0
	dh attach br1
	local if0 if1 n0 n1 rc=0
	if0=$(in_host cat /sys/class/net/br0/ifindex)
	if1=$(in_host cat /sys/class/net/br1/ifindex)
	# 65536 flows, every other one on br1. The key: ifindex, container and
	# loopback address, their ports, the protocol; the value: the gateway,
	# flags and the time of the last request.
	awk -v pin="$PIN/nat_state" -v a="$if0" -v b="$if1" 'BEGIN {
		for (i = 0; i < 65536; i++)
			printf "map update pinned %s key %d 0 0 0 10 201 %d %d 127 0 0 1 31 144 31 144 6 0 0 0 value 10 201 0 1 31 144 0 0 0 0 0 0\n",
				pin, i % 2 ? b : a, int(i / 256), i % 256
	}' >"$DH_SCRATCH/batch"
	bpftool batch file "$DH_SCRATCH/batch" >/dev/null
	rm -f "$DH_SCRATCH/batch"
	n0=$(nat_count "$if0")
	n1=$(nat_count "$if1")
	# An LRU may evict a little before it is full.
	[ "$n0" -gt 30000 ] && [ "$n1" -gt 30000 ] || fail "nat_state not filled: $n0 + $n1 entries"

	# Every key the CLI's walk sees is evicted and the one before comes
	# back: a walk that restarts when its key goes never ends. The limits
	# only catch that (it normally takes well under a second). An ASan
	# build reserves terabytes of address space for its shadow: no memory
	# limit there (ASan's own allocator reports a runaway instead).
	local vmem=2000000
	[ -z "${ASAN_OPTIONS:-}" ] || vmem=unlimited
	in_host timeout 120 sh -c "ulimit -v $vmem; LD_PRELOAD='$DH_ROOT/.output/churn_preload.so' \
		exec '$DH_BIN' --pin-dir '$PIN' detach br0" || rc=$?
	expect_eq "$rc" 0 "detach br0 under churn (124: it never ended)"
	expect_eq "$(nat_count "$if0")" 0 "br0's flows left"
	# Churn in a full LRU evicts a few of them, detach none.
	[ "$(nat_count "$if1")" -ge $((n1 * 9 / 10)) ] || fail "br1's flows: $(nat_count "$if1") of $n1"
	expect_exit 0 dh detach br1
	[ ! -e "$PIN" ] || fail "pin dir left behind: $(ls "$PIN")"
}

test_docker_daemon_json_with_null_fields() {
	local conf=$DH_SCRATCH/daemon.json
	# Null or wrong-typed values are ignored with a warning; the valid ones count.
	echo '{"host-gateway-ip": null, "host-gateway-ips": [null, 5, {}, "10.201.0.97", "fd00::1"]}' >"$conf"
	DOCKHOST_DOCKER_DAEMON_JSON=$conf expect_exit 0 dh attach br0
	expect_contains "$OUT" "warning: $conf: \"host-gateway-ip\" has null, not an IP address: ignored" \
		"warning for a null host-gateway-ip"
	expect_contains "$(dh status)" "10.201.0.97     (host-gateway-ip)" "the valid host-gateway-ips entry"
	local json
	for json in '{"host-gateway-ips": null}' '{"host-gateway-ip": ["10.201.0.96"]}' \
		'{"host-gateway-ip": "10.201.0.96\u0000"}' '{"host-gateway-ips": "10.201.0.96"}' \
		'null' '[]' '"x"' '{' ''; do
		printf '%s' "$json" >"$conf"
		DOCKHOST_DOCKER_DAEMON_JSON=$conf expect_exit 0 dh attach br0
		expect_not_contains "$(dh status)" "(host-gateway-ip)" "daemon.json '$json'"
	done
	rm -f "$conf"
}

test_systemd_unit_verifies() {
	command -v systemd-analyze >/dev/null || skip "systemd-analyze (systemd) not installed"
	local unit=$DH_SCRATCH/unit/dockhost-bpf.service
	mkdir -p "${unit%/*}"
	# As make install writes it, pointing at this build.
	sed "s|@SBINDIR@|$(dirname "$DH_BIN")|" "$DH_ROOT/user/dockhost-bpf.service" >"$unit"
	expect_exit 0 systemd-analyze verify --man=no "$unit"
	expect_eq "$OUT" "" "systemd-analyze verify warnings"
	rm -rf "${unit%/*}"
}

run_tests
