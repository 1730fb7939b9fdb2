#!/usr/bin/env bash
# make demo: a throwaway "host" namespace with a bridge, a "container" on it,
# and a service bound to 127.0.0.1 only. Shows the container failing to
# reach it, then reaching it through dockhost-bpf, the counters, and the
# loopback guard. Everything is removed on exit, even on failure; the root
# network namespace and the real /sys/fs/bpf are never touched.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/.output/dockhost-bpf
suffix=$(od -An -N3 -tx1 /dev/urandom | tr -d ' ')
host=dh-demo-host-$suffix
ctr=dh-demo-ctr-$suffix
gw=10.250.0.1
bpffs=""

[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (network namespaces, BPF)" >&2; exit 1; }

cleanup() {
	local ns pid
	for ns in "$host" "$ctr"; do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
	done
	wait 2>/dev/null || true
	ip netns del "$ctr" 2>/dev/null || true
	ip netns del "$host" 2>/dev/null || true
	if [ -n "$bpffs" ]; then umount "$bpffs" 2>/dev/null || true; rmdir "$bpffs" 2>/dev/null || true; fi
}
trap cleanup EXIT

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }
dockhost() {
	printf '$ dockhost-bpf %s\n' "$*"
	ip netns exec "$host" "$bin" --pin-dir "$pin" "$@"
}
from_container() {  # PORT [ADDR]
	printf '[container]$ socat - TCP4:%s:%s\n' "${2:-$gw}" "$1"
	ip netns exec "$ctr" timeout 3 socat -T2 - "TCP4:${2:-$gw}:$1,connect-timeout=2" </dev/null 2>&1 || true
}

step "A host namespace with bridge br0 ($gw/24) and a container namespace on it"
ip netns add "$host"
ip netns add "$ctr"
ip -n "$host" link set lo up
ip -n "$host" link add br0 type bridge
ip -n "$host" addr add "$gw/24" dev br0
ip -n "$host" link set br0 up
ip -n "$host" link add veth-ctr type veth peer name eth0 netns "$ctr"
ip -n "$host" link set veth-ctr master br0 up
ip -n "$ctr" link set lo up
ip -n "$ctr" addr add 10.250.0.2/24 dev eth0
ip -n "$ctr" link set eth0 up
ip -n "$ctr" route add default via "$gw"
echo "host: $host   container: $ctr"

# The demo's own bpffs, so it never meets a real installation's pins.
bpffs=$(mktemp -d /tmp/dh-demo-bpffs-XXXXXX)
mount -t bpf bpf "$bpffs"
pin=$bpffs/pins

step "A service on the host bound to 127.0.0.1:8088 only, and another on 127.0.0.1:9999"
ip netns exec "$host" socat TCP4-LISTEN:8088,bind=127.0.0.1,reuseaddr,fork \
	SYSTEM:'echo hello from the host service bound to 127.0.0.1 port 8088' &
ip netns exec "$host" socat TCP4-LISTEN:9999,bind=127.0.0.1,reuseaddr,fork SYSTEM:'echo SECRET' &
sleep 0.3
ip netns exec "$host" ss -ltn 'sport = :8088 or sport = :9999'

step "Before: the container cannot reach it through the gateway"
from_container 8088

step "Attach to the bridge and map port 8088/tcp"
dockhost attach br0
dockhost port add 8088

step "After: the container reaches the 127.0.0.1-only service at the gateway address"
from_container 8088
from_container 8088

step "Only mapped ports: 9999 is still closed"
from_container 9999

step "The loopback guard: a container routing 127.0.0.1 via its gateway (CVE-2020-8558)"
ip netns exec "$ctr" ip route del 127.0.0.0/8 dev lo table local
ip netns exec "$ctr" ip route del local 127.0.0.1 dev lo table local
ip netns exec "$ctr" ip route add 127.0.0.1/32 via "$gw" dev eth0
ip netns exec "$ctr" sysctl -qw net.ipv4.conf.all.route_localnet=1 net.ipv4.conf.eth0.route_localnet=1
printf '[container]$ socat - TCP4:127.0.0.1:9999   (routed via %s)\n' "$gw"
ip netns exec "$ctr" timeout 2 socat -T1 - TCP4:127.0.0.1:9999,connect-timeout=1 </dev/null 2>&1 || true

step "Status and counters"
dockhost status
step "The same counters, with their field names, straight from bpftool"
show bpftool map dump pinned "$pin/counters"

step "Detach: filters gone, route_localnet restored, pins removed"
dockhost detach br0
from_container 8088
printf '\nDemo done; removing the namespaces.\n'
