#!/usr/bin/env bash
# The e2e and cli suites again, against the CLI built with ASan and UBSan
# (make asan, in .output-asan; make test-all runs this after make test).
# Every sanitizer report, a leak included, ends the CLI with exit code 86
# (not 1, which tests expect for runtime errors) and is written to a log;
# tests/run.sh then fails the run for each log (check_reports.sh).
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
export DH_BIN=${DH_BIN:-$root/.output-asan/dockhost-bpf}
[ -x "$DH_BIN" ] || { echo "FAIL sanitizer: $DH_BIN not built (make asan)"; exit 1; }
DH_SANITIZER_LOGS=$(mktemp -d /tmp/dh-sanitizer-XXXXXX)
chmod 0755 "$DH_SANITIZER_LOGS"
export DH_SANITIZER_LOGS
trap 'rm -rf "$DH_SANITIZER_LOGS"' EXIT
opts="halt_on_error=1:print_stacktrace=1:exitcode=86:log_path=$DH_SANITIZER_LOGS/report"
export ASAN_OPTIONS="$opts:detect_leaks=1:abort_on_error=0"
export UBSAN_OPTIONS="$opts"
DH_SUITES="e2e cli sanitizer" "$root/tests/run.sh"
