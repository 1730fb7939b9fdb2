#!/usr/bin/env bash
# Fails once per sanitizer report the CLI wrote under DIR during the run
# (tests/sanitizer/run.sh): "FAIL sanitizer/report.PID" and the report.
set -u
dir=$1
found=0
for report in "$dir"/report*; do
	[ -e "$report" ] || continue
	found=1
	echo "FAIL sanitizer/$(basename "$report"): $(grep -m1 -E 'SUMMARY|ERROR' "$report")"
	sed 's/^/    /' "$report" | head -60
done
[ "$found" -eq 0 ] && echo "PASS sanitizer/no_reports"
exit 0
