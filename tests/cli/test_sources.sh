#!/usr/bin/env bash
# The per-source commands' contract: 'stats --by-source' and 'top'. Bad
# input gets one line naming the value and exit 2; with nothing attached
# both answer without error.
. "$(dirname "$0")/../lib.sh"

test_top_bad_options() {
	local bad
	for bad in 0 -1 abc 1s "" 0.001 3601 nan inf 1e9; do
		expect_error 2 "top: --interval '$bad'" top --interval "$bad"
	done
	for bad in 0 -1 x 1.5 "" 99999999999 +3; do
		expect_error 2 "top: --count '$bad'" top --count "$bad"
	done
	expect_error 2 "top: option '--interval' needs a value" top --interval
	expect_error 2 "top: option '--count' needs a value" top --count
	expect_error 2 "top: unknown option '--frob'" top --frob
	expect_error 2 "top: unexpected argument 'now'" top now
	expect_error 2 "stats: unknown option '--by-sauce'" stats --by-sauce
	expect_error 2 "stats: unexpected argument 'x'" stats --by-source x
}

test_help_lists_them() {
	expect_exit 0 "$DH_BIN" --help
	expect_contains "$OUT" "stats [--reset] [--by-source]" "--help: stats"
	expect_contains "$OUT" "top [--interval SECONDS] [--count N]" "--help: top"
	expect_exit 0 "$DH_BIN" top --help
	expect_contains "$OUT" "Usage: dockhost-bpf [OPTIONS] top" "top --help"
	OUT=$(cat "$DH_ROOT/user/dockhost-bpf.8")
	expect_contains "$OUT" '\-\-by\-source' "man page: stats --by-source"
	expect_contains "$OUT" '.B dockhost-bpf top' "man page: top"
}

# Nothing attached: an empty answer, exit 0, and no pin dir made.
test_nothing_attached() {
	expect_exit 0 dh stats --by-source
	expect_eq "$OUT" "no traffic to a mapped port from any source yet" "stats --by-source"
	expect_exit 0 dh --json stats --by-source
	expect_eq "$(python3 -c 'import json,sys; o=json.load(sys.stdin); print(o["sources"], o["max_entries"])' <<<"$OUT")" \
		"[] 16384" "--json"
	expect_exit 0 dh top --count 1 --interval 0.01
	expect_contains "$OUT" "0 sources" "top"
	[ ! -e "$PIN" ] || fail "pin dir made: $(ls "$PIN")"
}

# A terminal (script(1) gives it one) gets a redrawn screen; a pipe, above,
# gets none of that.
test_top_on_a_terminal() {
	local out
	out=$(script -qec "$DH_BIN --pin-dir $PIN top --count 2 --interval 0.01" /dev/null)
	expect_eq "$(grep -o $'\033\\[H\033\\[2J' <<<"$out" | wc -l)" 2 "one home-and-clear per refresh: $out"
	expect_contains "$out" "0 sources" "the table"
}

run_tests
