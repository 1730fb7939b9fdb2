#!/usr/bin/env bash
# The man page against the CLI: for every command in the command table
# (what --help lists), the options 'COMMAND --help' shows are the options
# the man page's SYNOPSIS shows for it, and its entry under COMMANDS names
# each; the global options are those of OPTIONS; every option in --help is
# one the command takes, and every option the CLI's getopt tables know is
# in some --help. Each difference is named.
. "$(dirname "$0")/../lib.sh"

MAN=$DH_ROOT/user/dockhost-bpf.8

# Usage lines of every command, as 'COMMAND --help' prints them, without
# "Usage: dockhost-bpf [OPTIONS] ": "port add SPEC [--to ...]".
usage_lines() {
	local cmd
	for cmd in $("$DH_BIN" --help | awk '/^Commands:/ { on = 1; next } !NF { on = 0 } on { print $1 }' | sort -u); do
		"$DH_BIN" "$cmd" --help | awk '!NF { exit } { sub(/^.*\[OPTIONS\] /, ""); print }'
	done
}

# A usage line's key: its leading lowercase words ("port add", "attach").
line_key() {  # LINE
	local w key=
	for w in $1; do
		[[ $w =~ ^[a-z][a-z-]*$ ]] || break
		key+=${key:+ }$w
	done
	echo "$key"
}

line_options() {  # LINE
	{ grep -o -- '--[a-z][a-z0-9-]*' <<<"$1" || true; } | sort -u
}

# The man page's "KEY OPTION" pairs (KEY with '_' for blanks) of SECTION:
# SYNOPSIS by the '.B dockhost-bpf KEY' line each starts with, COMMANDS by
# the '.TP' entry '.B KEY'. KEYS are the keys an entry may have.
man_options() {  # SECTION KEYS
	awk -v section="$1" -v keys="|$2|" '
		/^\.SH / { in_section = ($2 == section); key = ""; next }
		!in_section { next }
		section == "SYNOPSIS" && /^\.B dockhost-bpf( |$)/ {
			key = $0; sub(/^\.B dockhost-bpf */, "", key); gsub(/ /, "_", key)
			print key " -"; next
		}
		section == "SYNOPSIS" && /^\.PP/ { key = ""; next }
		section == "COMMANDS" && tp && /^\.B / {
			k = $0; sub(/^\.B */, "", k)
			if (index(keys, "|" k "|")) { key = k; gsub(/ /, "_", key); print key " -" }
		}
		{ tp = /^\.TP/ }
		key != "" {
			line = $0; gsub(/\\-/, "-", line)
			while (match(line, /--[a-z][a-z0-9-]*/)) {
				print key " " substr(line, RSTART, RLENGTH)
				line = substr(line, RSTART + RLENGTH)
			}
		}' "$MAN" | sort -u
}

test_man_page_synopsis_and_commands_match_help() {
	local line key keys= opts man_syn man_cmd problems= opt
	local -A key_opts=()
	# A key's options: those of every usage line it leads ('detach BRIDGE
	# [--force]', 'detach --all [--force]').
	while IFS= read -r line; do
		key=$(line_key "$line")
		keys+=${keys:+|}$key
		key_opts[$key]=$(printf '%s\n%s\n' "${key_opts[$key]:-}" "$(line_options "$line")" | sed '/^$/d' | sort -u)
	done < <(usage_lines)
	[ -n "$keys" ] || fail "no command in --help"
	man_syn=$(man_options SYNOPSIS "$keys")
	man_cmd=$(man_options COMMANDS "$keys")
	while IFS= read -r line; do
		key=$(line_key "$line")
		opts=${key_opts[$key]}
		grep -qx "${key// /_} -" <<<"$man_syn" || problems+="
'$key' has no SYNOPSIS line '.B dockhost-bpf $key'"
		grep -qx "${key// /_} -" <<<"$man_cmd" || problems+="
'$key' has no entry '.TP .B $key' under COMMANDS"
		for opt in $opts; do
			grep -qx -- "${key// /_} $opt" <<<"$man_syn" || problems+="
$key: '$key --help' lists $opt, the man page's SYNOPSIS does not"
			grep -qx -- "${key// /_} $opt" <<<"$man_cmd" || problems+="
$key: '$key --help' lists $opt, its entry under COMMANDS does not describe it"
		done
		for opt in $(awk -v k="${key// /_}" '$1 == k && $2 != "-" { print $2 }' <<<"$man_syn"); do
			grep -qx -- "$opt" <<<"$opts" || problems+="
$key: the man page's SYNOPSIS lists $opt, '$key --help' does not"
		done
	done < <(usage_lines)
	# A command the man page describes that the CLI does not have.
	for key in $(awk '$1 != "" && $2 == "-" { print $1 }' <<<"$man_syn"); do
		[[ "|$keys|" == *"|${key//_/ }|"* ]] || problems+="
the man page's SYNOPSIS has 'dockhost-bpf ${key//_/ }', which --help does not list"
	done
	[ -z "$problems" ] || fail "the man page and --help differ:$problems"
}

# The global options: --help's Options and the man page's OPTIONS.
test_man_page_global_options_match_help() {
	local help man problems= opt
	help=$("$DH_BIN" --help | awk '/^Options:/ { on = 1; next } !/^  / { on = 0 } on' |
		sed 's/^  //; s/  .*//' | grep -o -- '-[a-zA-Z-]*' | sort -u)
	man=$(awk '/^\.SH / { on = ($2 == "OPTIONS"); next } on && /^\.(B|BI|BR|TP)/' "$MAN" |
		sed 's/\\-/-/g' | grep -oE -- '(^|[ "(])--?[a-zA-Z][a-z0-9-]*' | sed 's/^[ "(]//' | sort -u)
	[ -n "$help" ] || fail "no option in --help"
	for opt in $help; do
		grep -qx -- "$opt" <<<"$man" || problems+="
--help lists $opt, the man page's OPTIONS does not"
	done
	for opt in $man; do
		grep -qx -- "$opt" <<<"$help" || problems+="
the man page's OPTIONS lists $opt, --help does not"
	done
	[ -z "$problems" ] || fail "the man page and --help differ:$problems"
}

# --help must not promise an option the command refuses: one that takes a
# value, given without it, is refused for that (not as unknown); a flag
# followed by an unknown option gets as far as that one. Bounded: a command
# that ignored the unknown option would run (watch, for ever).
test_help_lists_only_options_the_command_takes() {
	local line key opt value problems=
	cli() { timeout 10 ip netns exec "$H" "$DH_BIN" --pin-dir "$PIN" "$@"; }
	while IFS= read -r line; do
		key=$(line_key "$line")
		for opt in $(line_options "$line"); do
			value=$(grep -o -- "$opt [A-Za-z][^] ]*" <<<"$line" || true)
			# shellcheck disable=SC2086
			if [ -n "$value" ]; then
				OUT=$(cli $key "$opt" 2>&1) && problems+="
'$key $opt' without its value succeeded" && continue
				[[ $OUT == *"'$opt' needs a value"* ]] || problems+="
'$key $opt' without its value: $OUT"
			else
				OUT=$(cli $key "$opt" --no-such-option 2>&1) && problems+="
'$key $opt --no-such-option' succeeded" && continue
				[[ $OUT == *"'--no-such-option'"* && $OUT != *"'$opt'"* ]] || problems+="
'$key $opt --no-such-option': $OUT"
			fi
		done
	done < <(usage_lines)
	[ -z "$problems" ] || fail "--help lists options the commands do not take:$problems"
}

# Every long option in the CLI's getopt tables is in some --help.
test_every_option_in_the_sources_is_in_help() {
	local all opt problems=
	all=$({
		"$DH_BIN" --help
		usage_lines
	} | grep -o -- '--[a-z][a-z0-9-]*' | sort -u)
	for opt in $(grep -ho '{ *"[a-z][a-z0-9-]*", *\(no\|required\|optional\)_argument' "$DH_ROOT"/user/*.c |
		sed 's/{ *"\([^"]*\)".*/\1/' | sort -u); do
		grep -qx -- "--$opt" <<<"$all" || problems+=" --$opt"
	done
	[ -z "$problems" ] || fail "options in user/*.c's getopt tables that no --help lists:$problems"
}

# EXIT STATUS gives the three codes; FILES names the pin dir, the
# configuration, the unit and the completion.
test_man_page_exit_status_and_files() {
	local files exits
	# One line: the text's line breaks are the page's business.
	exits=$(awk '/^\.SH / { on = ($2 == "EXIT") } on' "$MAN" | tr '\n' ' ')
	expect_contains "$exits" "0 on success" "EXIT STATUS"
	expect_contains "$exits" "1 on a runtime failure" "EXIT STATUS"
	expect_contains "$exits" "2 on a usage error" "EXIT STATUS"
	files=$(awk '/^\.SH / { on = ($2 == "FILES"); next } on' "$MAN")
	expect_contains "$files" "/sys/fs/bpf/dockhost-bpf" "FILES: the pin dir"
	expect_contains "$files" "/etc/dockhost-bpf.conf" "FILES: the configuration"
	expect_contains "$files" "dockhost-bpf.service" "FILES: the unit"
	expect_contains "$files" "bash-completion/completions/dockhost-bpf" "FILES: the completion"
	# The man page itself renders without a warning.
	if command -v groff >/dev/null; then
		expect_exit 0 groff -man -Tutf8 -ww -z "$MAN"
		expect_eq "$OUT" "" "groff's warnings"
	fi
}

run_tests
