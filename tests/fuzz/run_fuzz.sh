#!/usr/bin/env bash
# Runs each libFuzzer target (built by make into .output/fuzz) for
# FUZZ_SECONDS (default 3): first every committed input (corpus/TARGET,
# regressions/TARGET), then new ones. Prints "PASS fuzz/TARGET" or
# "FAIL fuzz/TARGET" with the crash and the input that caused it, kept in
# .output/fuzz/artifacts. A crash found becomes a regression input:
#   cp .output/fuzz/artifacts/crash-... tests/fuzz/regressions/TARGET/
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
bins=${DH_FUZZ_DIR:-$root/.output/fuzz}
seconds=${FUZZ_SECONDS:-3}
artifacts=$bins/artifacts
mkdir -p "$artifacts"
# Any report ends the run; a leak is a failure too.
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:detect_leaks=1:print_stacktrace=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

status=0
for src in "$root"/tests/fuzz/fuzz_*.c; do
	target=$(basename "$src" .c)
	target=${target#fuzz_}
	bin=$bins/fuzz_$target
	if [ ! -x "$bin" ]; then
		echo "FAIL fuzz/$target: $bin not built (make fuzz)"
		status=1
		continue
	fi
	work=$(mktemp -d "${TMPDIR:-/tmp}"/dh-fuzz-XXXXXX)
	dirs=("$root/tests/fuzz/corpus/$target")
	[ -d "$root/tests/fuzz/regressions/$target" ] && dirs+=("$root/tests/fuzz/regressions/$target")
	# New inputs go to the first directory, a scratch one: the committed
	# corpus stays as it is. -runs=0 replays the inputs only.
	if [ "$seconds" -gt 0 ]; then limit=(-max_total_time="$seconds"); else limit=(-runs=0); fi
	# TARGET.dict: tokens the fuzzer cannot find by coverage (json-c's keys).
	[ -f "$root/tests/fuzz/$target.dict" ] && limit+=(-dict="$root/tests/fuzz/$target.dict")
	"$bin" "${limit[@]}" -timeout=10 -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 \
		-artifact_prefix="$artifacts/${target}-" "$work" "${dirs[@]}" >"$work.log" 2>&1
	rc=$?
	if [ "$rc" -eq 0 ]; then
		runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work.log")
		echo "PASS fuzz/$target: ${runs:-?} inputs in ${seconds}s"
	else
		echo "FAIL fuzz/$target: exited $rc; input kept in $artifacts"
		grep -E '^(==[0-9]+==|SUMMARY|    #[0-9]|.*runtime error|artifact_prefix|Test unit written)' "$work.log" |
			head -40 | sed 's/^/    /'
		status=1
	fi
	rm -rf "$work" "$work.log"
done
exit $status
