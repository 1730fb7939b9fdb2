#!/usr/bin/env bash
# kill -9 at every step of attach, detach and port edits: whatever runs
# next converges. DH_TEST_KILL_AT=STEP (test only) makes the CLI SIGKILL
# itself at STEP; an unknown STEP would let it finish, which fails here.
. "$(dirname "$0")/../lib.sh"

# NAT mode's steps, where route_localnet is at stake (socket mode's are
# in test_modes.sh): every attach here is --mode nat (lib.sh's dh).
DH_MODE=nat

# Steps on the way of 'attach br0 --port 8088' (a first attach: loads and
# pins), of 'detach br0' (the last one: removes the pins), of port edits.
ATTACH_STEPS="meta-pinned maps-pinned prog-pinned attach-recorded attach-gateways port-stats-added
	port-added attach-ports attach-mode attach-sysctl-closed attach-hooked attach-hook-recorded
	attach-egress-added attach-sysctl"
DETACH_STEPS="detach-sysctl detach-unhooked detach-forgetting detach-forgotten pins-removing"

route_localnet() { in_host sysctl -n net.ipv4.conf.br0.route_localnet; }

# The one rule at every moment: route_localnet=1 only under our programs.
expect_guarded() {  # WHAT
	local progs
	progs=$(our_programs)
	if [ "$(route_localnet)" != 0 ]; then
		expect_contains "$progs" "ingress dh_ingress" "$1: route_localnet=$(route_localnet) and the ingress guard"
		expect_contains "$progs" "egress dh_egress" "$1: route_localnet=$(route_localnet) and the egress program"
	fi
}

expect_attached() {  # WHAT
	local progs
	progs=$(our_programs)
	expect_eq "$(route_localnet)" 1 "$1: route_localnet"
	expect_eq "$(echo "$progs" | grep -c '^ingress dh_ingress$')" 1 "$1: one ingress program: $progs"
	expect_eq "$(echo "$progs" | grep -c '^egress dh_egress$')" 1 "$1: one egress program: $progs"
	expect_exit 0 dh status
	expect_contains "$OUT" "br0 (ifindex" "$1: status"
	expect_contains "$OUT" "programs attached" "$1: status"
	expect_contains "$(dh port list)" "8088/tcp" "$1: the port"
}

# Nothing of ours anywhere: no pin, no program on br0, route_localnet 0.
# (A clsact qdisc that a killed attach created may stay: it is empty.)
expect_clean() {  # WHAT
	[ ! -e "$PIN" ] || fail "$1: pins left: $(ls "$PIN")"
	expect_eq "$(our_programs)" "" "$1: our programs on br0"
	expect_eq "$(route_localnet)" 0 "$1: route_localnet"
}

killed_at() {  # STEP ARGS...: the CLI must die there
	local step=$1 rc=0
	shift
	DH_TEST_KILL_AT=$step dh "$@" >/dev/null 2>&1 || rc=$?
	expect_eq "$rc" 137 "'$*' killed at $step"
	expect_guarded "killed at $step"
	expect_exit 0 dh status  # sane, whatever was left
	expect_guarded "status after the kill at $step"
}

# After a kill: either attach again (then detach), or detach right away.
converge() {  # HOOK NEXT WHAT
	if [ "$2" = attach ]; then
		expect_exit 0 dh attach br0 --hook "$1" --port 8088
		expect_attached "$3, attach again"
		expect_exit 0 dh detach br0
	else
		local rc=0
		OUT=$(dh detach br0 2>&1) || rc=$?
		if [ "$rc" = 1 ]; then
			expect_contains "$OUT" "'br0': not attached" "$3, detach"
		else
			expect_eq "$rc" 0 "$3, detach: $OUT"
		fi
	fi
	expect_clean "$3, then $2"
}

kill_everywhere() {  # HOOK
	local step next
	for step in $ATTACH_STEPS; do
		for next in attach detach; do
			killed_at "$step" attach br0 --hook "$1" --port 8088
			converge "$1" "$next" "attach killed at $step"
		done
	done
	for step in $DETACH_STEPS; do
		for next in attach detach; do
			dh attach br0 --hook "$1" --port 8088 >/dev/null 2>&1
			killed_at "$step" detach br0
			converge "$1" "$next" "detach killed at $step"
		done
	done

	dh attach br0 --hook "$1" --port 8088 >/dev/null 2>&1
	killed_at port-stats-added port add 9000
	expect_exit 0 dh port add 9000
	expect_contains "$OUT" "added" "port add after a kill before the entry"
	killed_at port-added port add 9001
	expect_exit 0 dh port add 9001
	expect_contains "$OUT" "unchanged" "port add after a kill after the entry"
	killed_at port-deleted port del 9000
	expect_not_contains "$(dh port list)" "9000/tcp" "port list after a killed port del"
	expect_exit 1 dh port del 9000
	expect_contains "$OUT" "not mapped" "port del after a kill after the delete"
	expect_attached "after the port edits"
	expect_exit 0 dh detach br0
	expect_clean "port edits, then detach"
}

test_kill_at_every_step_tcx() {
	need_tcx
	kill_everywhere tcx
}

test_kill_at_every_step_clsact() {
	kill_everywhere clsact
}

# Re-attaching replaces our programs (here: a foreign tcx program now runs
# before the guard): between taking the old ones out and putting the new
# ones in, route_localnet must already be 0.
test_kill_while_replacing_the_guard() {
	need_tcx
	dh attach br0 --hook tcx --port 8088 >/dev/null 2>&1
	in_host "$DH_TCXCTL" attach br0 ingress "$DH_USER_FILTER" user_filter first
	expect_eq "$(route_localnet)" 1 "attached"
	killed_at tcx-old-removed attach br0 --hook tcx
	expect_exit 0 dh attach br0 --hook tcx
	expect_attached "attach after the kill"
	dh detach br0 >/dev/null
	expect_clean "detach"
}

run_tests
