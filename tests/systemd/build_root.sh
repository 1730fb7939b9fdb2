#!/usr/bin/env bash
# Builds, once, the Debian 12 root that tests/systemd/test_unit.sh boots with
# systemd-nspawn: systemd, dbus, iproute2, socat, and the CLI's runtime
# libraries (so `apt-get install ./dockhost-bpf_*.deb` or `make install
# DESTDIR=` needs no network inside). Usage: build_root.sh DIR.
# DIR appears only complete: debootstrap writes into DIR.tmp-PID and the
# result is renamed when it is done, so an interrupted build is never reused
# (its leftover is removed by the next build).
set -euo pipefail
dir=${1:?usage: build_root.sh DIR}

# The machine's own Debian mirror (deb822 sources), else Debian's default.
mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | grep -v security | head -n1)
mirror=${mirror:-http://deb.debian.org/debian}
packages=(
	# PID 1, the bus systemctl talks over, what systemd-analyze security reads
	systemd systemd-sysv dbus
	# the test's bridge, namespaces, veths and loopback services
	iproute2 procps socat
	# dockhost-bpf's runtime libraries (libcurl4: Docker's API, dlopen()ed)
	libbpf1 libelf1 libmnl0 libjson-c5 zlib1g libcurl4
	# what the package recommends besides (its completion)
	bash-completion curl
)
# A root built from this very list is reused; another list builds anew.
[ -e "$dir/etc/os-release" ] && [ "$(cat "$dir/.dh-packages" 2>/dev/null)" = "${packages[*]}" ] && exit 0
rm -rf --one-file-system "$dir"

rm -rf --one-file-system "$dir".tmp-* 2>/dev/null || true
tmp=$dir.tmp-$$
trap 'rm -rf --one-file-system "$tmp"' EXIT
mkdir -p "$tmp"
echo "  ROOT     debootstrap bookworm into $dir (once; from $mirror)"
if ! debootstrap --variant=minbase --include="$(
	IFS=,
	echo "${packages[*]}"
)" bookworm "$tmp" "$mirror" >"$tmp.log" 2>&1; then
	tail -n 20 "$tmp.log" >&2
	rm -f "$tmp.log"
	echo "build_root: debootstrap into $tmp failed" >&2
	exit 1
fi
rm -f "$tmp.log"
# What a booted test container needs and a stock root lacks: a root with no
# password prompts nothing (the test drives it with systemd-run and
# nsenter), no getty on the console, apt's lists not needed, a fixed
# hostname and machine-id written at first boot.
echo dh-systemd-test >"$tmp/etc/hostname"
: >"$tmp/etc/machine-id"
ln -sf /dev/null "$tmp/etc/systemd/system/console-getty.service"
ln -sf /dev/null "$tmp/etc/systemd/system/getty@.service"
ln -sf /dev/null "$tmp/etc/systemd/system/systemd-networkd-wait-online.service"
apt-get clean -o RootDir="$tmp" 2>/dev/null || rm -rf "$tmp/var/cache/apt/archives"/*.deb
echo "${packages[*]}" >"$tmp/.dh-packages"
mv "$tmp" "$dir"
trap - EXIT
