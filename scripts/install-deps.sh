#!/usr/bin/env bash
# Installs the Debian 12 packages dockhost-bpf needs to build, test, demo and bench.
# Called by the Makefile only when a tool is missing; safe to run again (apt-get is idempotent).
set -euo pipefail

# Core: build, test, demo. `install-deps.sh bench` adds what make bench needs,
# `install-deps.sh docker` what the real-Docker test needs, `install-deps.sh
# deb` what make deb needs, `install-deps.sh systemd` what make test-systemd
# needs, `install-deps.sh kernels` what make test-kernels needs.
packages=(
	# build: BPF compiler and llvm-strip, libbpf and what it links, bpftool for skeletons
	clang llvm libbpf-dev libelf-dev zlib1g-dev bpftool make gcc
	# the CLI: netlink through libmnl, JSON through json-c, Docker's API through libcurl
	libmnl-dev libjson-c-dev libcurl4-openssl-dev
	# tests and demo: namespaces, tc, ss, nstat (iproute2), sysctl (procps), socat services, ethtool offloads
	iproute2 procps socat ethtool
	# tests/fuzz: clang's libFuzzer and sanitizer runtimes (clang only recommends them)
	libclang-rt-14-dev
	# e2e tests that need one UDP socket talking to two addresses
	python3
	# tests of the bash completion: bash-completion's helpers it runs under,
	# curl, through which it asks Docker's socket for names
	bash-completion curl
	# tests of the Prometheus output: promtool, and a real server scraping
	# `metrics` inside a test's namespace (its service is not wanted: below)
	prometheus
)
case ${1:-} in
bench)
	# baselines (the iptables recipe, Docker's docker-proxy), iperf3, the chart
	packages+=(iptables docker.io iperf3 gnuplot-nox) ;;
deb)
	# make deb: dpkg-buildpackage and debhelper (compat 13), lintian for
	# make test-deb; the Build-Depends (debian/control) are core packages
	packages+=(dpkg-dev debhelper fakeroot lintian) ;;
docker)
	# the real-Docker test: the daemon, a local image's contents (busybox,
	# bash for /dev/udp), nft to remove the tables a private dockerd made
	packages+=(docker.io busybox-static bash-static nftables iptables) ;;
systemd)
	# make test-systemd: a Debian 12 root built once (debootstrap) and
	# booted with systemd-nspawn; machinectl and systemd-run come with it
	packages+=(systemd-container debootstrap) ;;
kernels)
	# make test-kernels: QEMU (TCG) for Debian 12's stock kernel, whose
	# package is only downloaded and unpacked; busybox-static for the
	# guest's initramfs; kmod's depmod and modprobe for its modules; the
	# iptables the e2e suite uses
	packages+=(qemu-system-x86 busybox-static kmod iptables) ;;
esac

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: must run as root to apt-get install: ${packages[*]}" >&2
	exit 1
fi

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Other runs may hold the dpkg lock (parallel make targets on one machine): wait for it.
apt-get install -o DPkg::Lock::Timeout=600 -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian's prometheus package enables and starts a server on :9090, on every
# interface. The tests start their own, in a namespace; a machine where this
# script installed the package gets no server it did not ask for.
if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null 2>&1; then
	systemctl disable --now prometheus.service >/dev/null 2>&1 || true
fi
