#!/bin/bash
# Stage 2 of the guest of scripts/test-kernels.sh: pid 1 on the host's root
# (read-only 9p under a tmpfs overlay), on the kernel under test. Mounts
# what the host has and the tests expect, loads the modules the host's
# kernel has built in, runs tests/run.sh against the binaries built on the
# host, and leaves its exit status and the kernel's release in /dh-out.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# shellcheck source=/dev/null
. /dh-out/env

finish() {  # RC
	echo "$1" >/dh-out/status
	sync
	echo o >/proc/sysrq-trigger
	sleep 10
}
trap 'finish 1' ERR
set -eE

mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t debugfs debugfs /sys/kernel/debug
mount -t tracefs tracefs /sys/kernel/tracing
ip link set lo up
hostname dh-guest

# The kernel's modules, from its unpacked package (depmod ran on the host):
# modprobe, and the kernel's own requests (tc asks for sch_ingress and
# cls_bpf, iptables for its tables and matches), find them.
release=$(uname -r)
mkdir -p /lib/modules
ln -sfn "$DH_KERNEL_MODULES" "/lib/modules/$release"
echo /sbin/modprobe >/proc/sys/kernel/modprobe
# What the host's kernel has built in and the tests rely on without asking
# for it: br_netfilter's sysctls, veth and bridge devices, clsact, cls_bpf.
for m in veth bridge br_netfilter sch_ingress cls_bpf nf_tables nf_conntrack \
	iptable_filter ip6table_filter; do
	modprobe "$m"
done
echo "$release" >/dh-out/uname
echo "dh-guest: kernel $release, $(nproc) cpus, DH_SUITES=\"$DH_SUITES\"${DH_TEST_FILTER:+, $(tr '|' '\n' <<<"$DH_TEST_FILTER" | wc -l) DH_TEST_FILTER names}"

set +eE
trap - ERR
cd "$DH_ROOT"
start=$(date +%s)
if [ -n "${DH_KERNEL_CMD:-}" ]; then
	# For development: a command of one's own instead of the suites.
	bash -c "$DH_KERNEL_CMD"
else
	DH_SUITES=$DH_SUITES DH_TEST_FILTER=${DH_TEST_FILTER:-} FUZZ_SECONDS=${FUZZ_SECONDS:-3} tests/run.sh
fi
rc=$?
echo "dh-guest: ${DH_KERNEL_CMD:-tests/run.sh} exited $rc after $(($(date +%s) - start)) s"
finish "$rc"
