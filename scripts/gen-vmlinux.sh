#!/usr/bin/env bash
# Regenerates the committed vmlinux.h from the running kernel's BTF.
# The BPF object uses CO-RE-free types only (packet headers, __sk_buff), so a
# vmlinux.h from any recent kernel builds a program that loads on others.
set -euo pipefail
out=${1:-"$(dirname "$0")/../vmlinux.h"}
btf=/sys/kernel/btf/vmlinux
[ -r "$btf" ] || { echo "gen-vmlinux: $btf not readable: kernel built without BTF" >&2; exit 1; }
bpftool btf dump file "$btf" format c > "$out.tmp"
mv "$out.tmp" "$out"
echo "gen-vmlinux: wrote $out ($(wc -l < "$out") lines) from $(uname -r)"
