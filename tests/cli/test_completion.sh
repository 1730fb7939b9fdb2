#!/usr/bin/env bash
# Bash completion (user/dockhost-bpf.bash), driven as bash drives it on TAB:
# COMP_LINE, COMP_POINT, COMP_WORDS and COMP_CWORD set, the function that
# 'complete -p dockhost-bpf' names called, COMPREPLY read. It runs in the
# test's host namespace (its bridges in sysfs) against the test's pin dir.
. "$(dirname "$0")/../lib.sh"

COMPLETION=$DH_ROOT/user/dockhost-bpf.bash

# Completes LINE, the cursor at its end: COMP_WORDS split at blanks and at
# '=' (as COMP_WORDBREAKS splits them), an empty last word after a blank.
# bash-completion is loaded first, as it is where it loads the file from
# /usr/share/bash-completion/completions; DH_BARE=1: without it (the file
# sourced by hand). 'dockhost-bpf' is this build. Leaves COMPREPLY, sorted,
# on one line, in $GOT. A completion that hangs fails: 20 s is far beyond
# the second or two it may take (each of its waits is bounded).
complete_line() {  # LINE
	local out rc=0
	out=$(in_host timeout 20 env PATH="$(dirname "$DH_BIN"):$PATH" bash -c '
		[ -n "${DH_BARE:-}" ] || . /usr/share/bash-completion/bash_completion
		. "$1"
		func=$(complete -p dockhost-bpf | sed -n "s/.* -F \([^ ]*\) .*/\1/p")
		[ -n "$func" ] || exit 3
		COMP_LINE=$2
		COMP_POINT=${#COMP_LINE}
		read -r -a COMP_WORDS <<<"${COMP_LINE//=/ = }"
		[[ $COMP_LINE == *" " ]] && COMP_WORDS+=("")
		COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
		COMPREPLY=()
		"$func" dockhost-bpf "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
		[ ${#COMPREPLY[@]} -eq 0 ] || printf "%s\n" "${COMPREPLY[@]}" | sort
	' _ "$COMPLETION" "$1") || rc=$?
	[ "$rc" = 0 ] || fail "completing '$1': exited $rc (124: it hung)"
	GOT=$(printf '%s\n' "$out" | tr '\n' ' ' | sed 's/ *$//')
}

expect_completion() {  # LINE WANT
	complete_line "$1"
	expect_eq "$GOT" "$2" "completion of '$1'"
}

sorted() { tr ' ' '\n' | sed '/^$/d' | sort -u | tr '\n' ' ' | sed 's/ *$//'; }

# The commands as --help lists them (the command table), and 'help'.
help_commands() {
	{
		"$DH_BIN" --help | sed -n '/^Commands:/,/^$/p' | sed '1d;/^$/d' | awk '{ print $1 }'
		echo help
	} | sorted
}

# The global options, as --help's Options section lists them.
GLOBALS=$("$DH_BIN" --help | awk '/^Options:/ { on = 1; next } /^[^ ]/ { on = 0 } on' |
	grep -o -- '--[a-z][a-z-]*' | sorted)

test_completion_is_registered() {
	expect_exit 0 bash -c '. /usr/share/bash-completion/bash_completion; . "$1"; complete -p dockhost-bpf' _ "$COMPLETION"
	expect_eq "$OUT" "complete -F _dockhost_bpf dockhost-bpf" "complete -p, with bash-completion"
	expect_exit 0 bash -c '. "$1"; complete -p dockhost-bpf' _ "$COMPLETION"
	expect_eq "$OUT" "complete -F _dockhost_bpf dockhost-bpf" "complete -p, without"
}

test_completes_commands() {
	local commands
	commands=$(help_commands)
	expect_contains " $commands " " attach detach help metrics port " "--help's commands"
	expect_completion "dockhost-bpf " "$commands"
	expect_completion "dockhost-bpf st" "stats status"
	expect_completion "dockhost-bpf --json --pin-dir $PIN -v " "$commands"
	expect_completion "dockhost-bpf --pin-dir=$PIN d" "detach"
	expect_completion "dockhost-bpf help " "$commands"
	expect_completion "dockhost-bpf help port " ""
	expect_completion "dockhost-bpf port " "add del list"
	expect_completion "dockhost-bpf port d" "del"
	DH_BARE=1 expect_completion "dockhost-bpf " "$commands"
	DH_BARE=1 expect_completion "dockhost-bpf --pin-dir=$PIN port " "add del list"
}

# Every command's options are those its --help lists (read here with a
# grep of its own), with the global ones; 'port' per action.
test_completes_each_commands_options() {
	local cmd line key n=0
	local -A want=()
	# A key's options are those of every usage line it leads ('detach
	# BRIDGE [--force]' and 'detach --all [--force]').
	for cmd in $(help_commands); do
		[ "$cmd" = help ] && continue
		while IFS= read -r line; do
			key=$(awk '{ for (i = 1; i <= NF && $i ~ /^[a-z][a-z-]*$/; i++) printf "%s ", $i }' <<<"$line")
			want[$key]+=" $(grep -o -- '--[a-z][a-z0-9-]*' <<<"$line" | tr '\n' ' ' || true)"
			n=$((n + 1))
		done < <("$DH_BIN" "$cmd" --help | sed -n 's/^.*\[OPTIONS\] //p')
	done
	[ "$n" -ge 11 ] || fail "only $n usage lines read"
	for key in "${!want[@]}"; do
		expect_completion "dockhost-bpf --pin-dir $PIN $key--" "$(echo "$GLOBALS ${want[$key]}" | sorted)"
	done
	expect_completion "dockhost-bpf --" "$GLOBALS"
	expect_completion "dockhost-bpf attach br0 --gateway 10.201.0.9 --h" "--help --hook"
	expect_completion "dockhost-bpf watch --d" "--detach-on-exit --docker-labels"
	# After '--', nothing is an option.
	expect_completion "dockhost-bpf stats -- --" ""
}

# Values: the fixed ones from --help (a|b|c), directories for --pin-dir,
# nothing for a free-form one.
test_completes_option_values() {
	mkdir "$DH_SCRATCH/pins-a" "$DH_SCRATCH/pins-b"
	expect_completion "dockhost-bpf attach br0 --hook " "auto clsact tcx"
	expect_completion "dockhost-bpf attach br0 --mode " "nat socket"
	expect_completion "dockhost-bpf attach br0 --mode=s" "socket"
	expect_completion "dockhost-bpf watch --mode n" "nat"
	expect_completion "dockhost-bpf stats --format " "json prometheus text"
	expect_completion "dockhost-bpf --pin-dir $DH_SCRATCH/pins-" "$DH_SCRATCH/pins-a $DH_SCRATCH/pins-b"
	expect_completion "dockhost-bpf status --pin-dir=$DH_SCRATCH/pins-" "$DH_SCRATCH/pins-a $DH_SCRATCH/pins-b"
	expect_completion "dockhost-bpf attach br0 --gateway " ""
	expect_completion "dockhost-bpf top --interval " ""
	# A value is not the command: what follows is.
	expect_completion "dockhost-bpf --pin-dir $PIN port " "add del list"
	DH_BARE=1 expect_completion "dockhost-bpf attach br0 --hook=" "auto clsact tcx"
}

# Attached bridges from 'status --json' with the --pin-dir on the line
# (before or after the command, either spelling); attach offers the
# host's bridges.
test_completes_attached_bridges() {
	make_bridge "$H" br1 10.202.0.1
	dh attach br0 >/dev/null
	expect_completion "dockhost-bpf --pin-dir $PIN detach " "br0"
	expect_completion "dockhost-bpf --pin-dir=$PIN detach " "br0"
	expect_completion "dockhost-bpf detach --pin-dir $PIN " "br0"
	expect_completion "dockhost-bpf --pin-dir $PIN port add 80 --bridge " "br0"
	expect_completion "dockhost-bpf --pin-dir $PIN port del 80 --bridge=" "br0"
	expect_completion "dockhost-bpf --pin-dir $PIN detach br0 " ""
	expect_completion "dockhost-bpf --pin-dir $PIN attach " "br0 br1"
	expect_completion "dockhost-bpf --pin-dir $PIN attach br" "br0 br1"
	DH_BARE=1 expect_completion "dockhost-bpf --pin-dir=$PIN detach " "br0"
	# Another pin dir (on the same bpffs) has nothing attached.
	expect_completion "dockhost-bpf --pin-dir $DH_BPFFS/other detach " ""
}

test_completes_mapped_ports() {
	dh attach br0 --port 8088 >/dev/null
	dh port add 53/udp --from 10.0.0.0/8 >/dev/null
	dh port add 9000 --bridge br0 >/dev/null
	expect_completion "dockhost-bpf --pin-dir $PIN port del " "53/udp 8088/tcp 9000/tcp"
	expect_completion "dockhost-bpf --pin-dir $PIN port del 8" "8088/tcp"
	# With --bridge, that bridge's own entries: what del --bridge removes.
	expect_completion "dockhost-bpf --pin-dir $PIN port del --bridge br0 " "8088/tcp 9000/tcp"
	expect_completion "dockhost-bpf --pin-dir $PIN port del 53/udp --from " "10.0.0.0/8"
	expect_completion "dockhost-bpf --pin-dir $PIN port del 8088 --from " ""
	expect_completion "dockhost-bpf --pin-dir $PIN port add " ""
	expect_completion "dockhost-bpf --pin-dir $PIN port add 80 --from " "any"
	dh port del 53/udp >/dev/null
	expect_completion "dockhost-bpf --pin-dir $PIN port del " "8088/tcp 9000/tcp"
}

# Docker's bridge networks for attach, containers and networks for --from,
# from the fake API on the socket $DOCKER_HOST names.
test_completes_docker_names() {
	command -v curl >/dev/null || skip "curl not installed (the completion asks Docker through it)"
	serve_fake_docker
	expect_completion "dockhost-bpf --pin-dir $PIN attach " "br0 bridge mynet"
	expect_completion "dockhost-bpf --pin-dir $PIN attach m" "mynet"
	expect_completion "dockhost-bpf --pin-dir $PIN port add 80 --from " "any bridge mynet nonet web weird"
}

# No Docker, a Docker that never answers, a pin dir whose lock another
# call holds: completion offers what it has and returns (complete_line
# fails a hang).
test_completion_returns_without_docker() {
	local sock=$DH_SCRATCH/hung.sock i
	dh attach br0 --port 8088 >/dev/null
	export DOCKER_HOST=unix:///nonexistent/docker.sock
	expect_completion "dockhost-bpf --pin-dir $PIN attach " "br0"
	# Listening, never accepting: a connect succeeds, no answer comes.
	python3 -c 'import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(64)
time.sleep(600)' "$sock" &
	for i in $(seq 50); do [ -S "$sock" ] && break; sleep 0.05; done
	export DOCKER_HOST=unix://$sock
	expect_completion "dockhost-bpf --pin-dir $PIN attach " "br0"
	expect_completion "dockhost-bpf --pin-dir $PIN port add 80 --from " "any"
	# The pin dir locked by a long call: no bridges, no wait.
	python3 -c 'import fcntl, os, sys, time
fcntl.flock(os.open(sys.argv[1], os.O_RDONLY), fcntl.LOCK_EX)
time.sleep(600)' "$PIN" &
	wait_for "the lock taken" "! flock -n '$PIN' true"
	expect_completion "dockhost-bpf --pin-dir $PIN detach " ""
	expect_completion "dockhost-bpf --pin-dir $PIN port del " ""
}

run_tests
