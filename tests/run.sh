#!/usr/bin/env bash
# Runs every test: unit (BPF_PROG_TEST_RUN), e2e (network namespaces), cli,
# docker (a real dockerd; skipped where Docker cannot run) and fuzz.
# DH_SUITES="e2e cli" runs only those directories' suites; "fuzz" is the
# libFuzzer targets (tests/fuzz).
# Ends with "N passed, N failed, N skipped"; exits non-zero on any failure,
# when nothing passed, and when not run as root.
# DH_TEST_FILTER=substring runs only the matching e2e/cli tests.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)

# A run that tests nothing must not read as green: no summary line, a
# reason, and a non-zero exit.
if [ "$(id -u)" -ne 0 ]; then
	echo "tests/run.sh: nothing tested: the tests need root (network namespaces, BPF programs), running as uid $(id -u)" >&2
	exit 1
fi
# A private mount namespace: the bpffs each test mounts for its pin dir
# disappears with this process even if it is killed before its cleanup.
if [ -z "${DH_TEST_UNSHARED:-}" ]; then
	DH_TEST_UNSHARED=1 exec unshare --mount --propagation private "$0" "$@"
fi

results=$(mktemp /tmp/dh-test-results-XXXXXX)
# Every test removes what it writes, even on failure. They write under
# TMPDIR, this run's own directory, so that a run next to this one (another
# checkout's) cannot be mistaken for a leak; it must be empty at the end.
DH_RUN_TMP=$(mktemp -d /tmp/dh-run-XXXXXX)
export TMPDIR=$DH_RUN_TMP
trap 'rm -f "$results" "$results.suite"; rm -rf --one-file-system "$DH_RUN_TMP"' EXIT
# A run stopped by a signal cleans up too (bash runs no EXIT trap for an
# unhandled one).
trap 'exit 143' TERM
trap 'exit 130' INT

# One suite: its lines go to the screen and the results; a suite that dies
# without reporting a failure (a crash, a syntax error) counts as one.
run_suite() {  # NAME CMD...
	local name=$1 rc
	shift
	"$@" 2>&1 | grep --line-buffered -v -E '^[0-9]+ passed, [0-9]+ failed' | tee "$results.suite"
	rc=${PIPESTATUS[0]}
	cat "$results.suite" >>"$results"
	if [ "$rc" -ne 0 ] && ! grep -q '^FAIL ' "$results.suite"; then
		echo "FAIL $name: exited $rc" | tee -a "$results"
	fi
}

wanted() { [ -z "${DH_SUITES:-}" ] || [[ " $DH_SUITES " == *" $1 "* ]]; }
wanted unit && run_suite unit "$root/.output/test_datapath"
wanted unit && run_suite unit/property "$root/.output/test_property"
for suite in "$root"/tests/e2e/test_*.sh "$root"/tests/cli/test_*.sh "$root"/tests/docker/test_*.sh; do
	name=${suite#"$root"/tests/}
	wanted "${name%%/*}" || continue
	case $name in
	e2e/test_datapath.sh | e2e/test_security.sh | e2e/test_allow.sh | e2e/test_watch_docker.sh)
		# The datapath's cases, once per mode (tests/lib.sh: DH_MODE).
		for mode in nat socket; do
			run_suite "$name[$mode]" env DH_MODE=$mode DH_SUITE="${name%.sh}[$mode]" bash "$suite"
		done
		;;
	*) run_suite "$name" bash "$suite" ;;
	esac
done
# libFuzzer targets, FUZZ_SECONDS each (make builds them into .output/fuzz).
wanted fuzz && run_suite fuzz bash "$root/tests/fuzz/run_fuzz.sh"
# Under tests/sanitizer/run.sh: each ASan/UBSan/LSan report is a failure.
[ -n "${DH_SANITIZER_LOGS:-}" ] && wanted sanitizer &&
	run_suite sanitizer bash "$root/tests/sanitizer/check_reports.sh" "$DH_SANITIZER_LOGS"

tmp_left=$(find "$DH_RUN_TMP" -mindepth 1 -maxdepth 1 | tr '\n' ' ')
if [ -n "$tmp_left" ]; then
	echo "FAIL run/nothing_left_in_tmp: $tmp_left" | tee -a "$results"
else
	echo "PASS run/nothing_left_in_tmp" | tee -a "$results"
fi

passed=$(grep -c '^PASS ' "$results")
failed=$(grep -c '^FAIL ' "$results")
skipped=$(grep -c '^SKIP ' "$results")
echo
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
