#!/usr/bin/env bash
# make test-kernels: the unit and e2e suites on Debian 12's stock kernel
# (linux-image-amd64, 6.1), booted under QEMU. The kernel package is fetched
# with apt-get download and unpacked into $OUTPUT/kernels (never installed:
# that would run the host's initramfs and bootloader hooks), once. The guest
# is the host's own root, shared read-only over virtio 9p under a tmpfs
# overlay (tests/kernels/init, busybox), and runs tests/run.sh there
# (tests/kernels/guest.sh) against the binaries built on the host.
#
# DH_SUITES (default "unit e2e") and DH_TEST_FILTER (default: the cases
# listed in tests/kernels/e2e-subset; "all" for all) go to the guest's
# tests/run.sh (DH_KERNEL_CMD, a shell command, runs instead of it: for
# development). DH_KERNEL_PKG names another kernel package, DH_KERNEL_TIMEOUT
# (seconds) bounds the whole guest run, DH_QEMU_ACCEL (default tcg: no KVM on
# this machine kind) and DH_QEMU_MEM tune QEMU; DH_KERNEL_BOOT_TIMEOUT
# (seconds) bounds the boot up to the guest's first report.
# Prints the guest's uname -r and the suite's "N passed, N failed, N skipped";
# exits non-zero on any failure, a timeout, or a guest that never reported.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${OUTPUT:-$root/.output}" && cd "${OUTPUT:-$root/.output}" && pwd)
suites=${DH_SUITES:-unit e2e}
# The e2e cases of tests/kernels/e2e-subset unless DH_TEST_FILTER says
# which (DH_TEST_FILTER=all: every one, for well over an hour).
filter=${DH_TEST_FILTER:-$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$root/tests/kernels/e2e-subset" | paste -sd '|')}
[ "$filter" = all ] && filter=
timeout_s=${DH_KERNEL_TIMEOUT:-2100}
accel=${DH_QEMU_ACCEL:-tcg}
mem=${DH_QEMU_MEM:-3072}

if [ "$(id -u)" -ne 0 ]; then
	echo "test-kernels: must run as root (the guest's tests, apt-get download)" >&2
	exit 1
fi
for t in qemu-system-x86_64 busybox depmod modprobe; do
	command -v "$t" >/dev/null 2>&1 || { "$root/scripts/install-deps.sh" kernels; break; }
done
# busybox-static is the initramfs: it must not need the host's libraries.
bb=$(command -v busybox)
if ldd "$bb" >/dev/null 2>&1; then
	echo "test-kernels: $bb is dynamically linked; the initramfs needs busybox-static" >&2
	exit 1
fi

# The kernel package linux-image-amd64 depends on (linux-image-6.1.0-NN-amd64).
pkg=${DH_KERNEL_PKG:-$(apt-cache depends linux-image-amd64 2>/dev/null |
	sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n 1)}
if [ -z "$pkg" ]; then
	echo "test-kernels: apt-cache names no kernel package for linux-image-amd64 (apt-get update?)" >&2
	exit 1
fi
kdir=$out/kernels/$pkg
if [ ! -e "$kdir/.unpacked" ]; then
	echo "  KERNEL  $pkg: apt-get download, dpkg-deb -x into $kdir"
	rm -rf "$kdir"
	mkdir -p "$kdir/deb"
	# _apt cannot write here; apt-get then downloads as root and says so.
	(cd "$kdir/deb" && apt-get download -q "$pkg" 2>&1 | grep -v 'unsandboxed as root' || true)
	deb=$(ls "$kdir"/deb/*.deb)
	dpkg-deb -x "$deb" "$kdir/root"
	rel=$(ls "$kdir/root/lib/modules")
	depmod -b "$kdir/root" "$rel"
	rm -f "$deb"
	touch "$kdir/.unpacked"
fi
rel=$(ls "$kdir/root/lib/modules")
kernel=$kdir/root/boot/vmlinuz-$rel
modules=$kdir/root/lib/modules/$rel

# The initramfs: busybox, tests/kernels/init, and the modules that mount
# the root (rebuilt when init changes).
initrd=$kdir/initramfs.cpio.gz
if [ ! -e "$initrd" ] || [ "$root/tests/kernels/init" -nt "$initrd" ]; then
	echo "  INITRD  $initrd"
	stage=$(mktemp -d)
	mkdir -p "$stage/bin" "$stage/modules" "$stage/proc" "$stage/sys" "$stage/dev"
	cp "$bb" "$stage/bin/busybox"
	cp "$root/tests/kernels/init" "$stage/init"
	for m in virtio_pci 9pnet_virtio 9p overlay; do
		modprobe -d "$kdir/root" -S "$rel" --show-depends "$m" | awk '$1 == "insmod" { print $2 }'
	done | awk '!seen[$0]++' | while read -r ko; do
		cp "$ko" "$stage/modules/"
		basename "$ko" >>"$stage/modules/order"
	done
	(cd "$stage" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1) >"$initrd.tmp"
	mv "$initrd.tmp" "$initrd"
	rm -rf "$stage"
fi

# The run directory, the guest's writable share: settings in, results out
# (kept after a failure, for its console.log).
run=$(mktemp -d "$out/kernels/run.XXXXXX")
{
	printf 'DH_ROOT=%q\n' "$root"
	printf 'DH_KERNEL_MODULES=%q\n' "$modules"
	printf 'DH_SUITES=%q\n' "$suites"
	printf 'DH_TEST_FILTER=%q\n' "$filter"
	printf 'FUZZ_SECONDS=%q\n' "${FUZZ_SECONDS:-3}"
	printf 'DH_KERNEL_CMD=%q\n' "${DH_KERNEL_CMD:-}"
} >"$run/env"

echo "  QEMU    $pkg ($rel), accel $accel, 2 cpus, ${mem} MiB, timeout ${timeout_s} s"
# A hung guest must fail, not hang: timeout kills QEMU (and -no-reboot
# turns a panic or a guest that powers off into QEMU's exit). A boot that
# never reaches guest.sh (seen once in ~20 boots here, TCG spinning with
# nothing on the console) is killed after DH_KERNEL_BOOT_TIMEOUT seconds
# and tried once more, saying so.
boot_qemu() {
	local waited=0 qpid tpid
	: >"$run/console.log"
	timeout -k 10 "$timeout_s" qemu-system-x86_64 \
		-accel "$accel" -cpu "${DH_QEMU_CPU:-max}" -smp 2 -m "$mem" \
		-nographic -no-reboot -nic none -monitor none -serial stdio \
		-kernel "$kernel" -initrd "$initrd" \
		-append "console=ttyS0 panic=-1 quiet loglevel=4 rdinit=/init" \
		-fsdev local,id=hostroot,path=/,security_model=passthrough,readonly=on,multidevs=remap \
		-device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
		-fsdev local,id=dhout,path="$run",security_model=passthrough \
		-device virtio-9p-pci,fsdev=dhout,mount_tag=dhout \
		</dev/null >"$run/console.log" 2>&1 &
	qpid=$!
	tail -n +1 -f --pid="$qpid" "$run/console.log" &
	tpid=$!
	boot_hung=
	while [ ! -e "$run/uname" ] && kill -0 "$qpid" 2>/dev/null; do
		if [ "$waited" -ge "$boot_timeout" ]; then
			boot_hung=1
			kill "$qpid"
			break
		fi
		sleep 1
		waited=$((waited + 1))
	done
	rc=0
	wait "$qpid" || rc=$?
	wait "$tpid" || true
}
boot_timeout=${DH_KERNEL_BOOT_TIMEOUT:-180}
start=$(date +%s)
boot_qemu
if [ -n "$boot_hung" ]; then
	echo "test-kernels: the guest did not boot within ${boot_timeout} s; booting it once more"
	boot_qemu
fi
elapsed=$(($(date +%s) - start))

echo
echo "test-kernels: guest uname -r: $(cat "$run/uname" 2>/dev/null || echo '(never reported)')"
summary=$(grep -a -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped' "$run/console.log" | tail -n 1 | tr -d '\r' || true)
echo "test-kernels: ${summary:-no summary line}, in ${elapsed} s"
if [ -n "$boot_hung" ]; then
	echo "test-kernels: FAIL: the guest did not boot within ${boot_timeout} s, twice (DH_KERNEL_BOOT_TIMEOUT)" >&2
	exit 1
fi
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
	echo "test-kernels: FAIL: the guest did not finish within ${timeout_s} s (DH_KERNEL_TIMEOUT)" >&2
	exit 1
fi
if [ ! -e "$run/status" ]; then
	echo "test-kernels: FAIL: the guest ended without reporting a status (qemu exited $rc); see $run/console.log" >&2
	exit 1
fi
status=$(cat "$run/status")
if [ "$status" != 0 ]; then
	echo "test-kernels: FAIL: tests/run.sh exited $status in the guest; see $run/console.log" >&2
	exit 1
fi
rm -rf "$run"
