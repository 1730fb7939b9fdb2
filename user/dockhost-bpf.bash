# bash completion for dockhost-bpf(8)                    -*- shell-script -*-
#
# Commands, their options and an option's fixed values (--hook
# auto|tcx|clsact) are read from the CLI's own help ('dockhost-bpf --help',
# 'dockhost-bpf help COMMAND'), the usage lines the man page is tested
# against: a new command or option completes without an edit here.
# Attached bridges, mapped ports and their allow-list sources come from
# 'status --json' (with the --pin-dir already on the line), the host's
# bridges from sysfs, Docker's networks and containers from its API socket
# through curl. Each of those is bounded in time (a pin dir locked by a
# long call, a Docker daemon that does not answer): completion never hangs,
# it offers less. Without root (or the docker group) there is nothing to
# read, and nothing is offered.

# The CLI's answers, bounded in time; stderr is not the user's business here.
_dockhost_bpf_run()  # PROG ARGS...
{
	timeout 2 "$@" 2>/dev/null
}

# The usage lines of COMMAND (the command's name first), "-" for the
# global options, or the command names, from the CLI's help.
_dockhost_bpf_usage()  # PROG COMMAND|-|commands
{
	case $2 in
	commands)
		_dockhost_bpf_run "$1" --help | awk '/^Commands:/ { on = 1; next } !NF { on = 0 } on { print $1 }' |
			sort -u
		;;
	-)
		# "  --pin-dir DIR  what it is": the option and its value only
		_dockhost_bpf_run "$1" --help | awk '/^Options:/ { on = 1; next } !/^  / { on = 0 } on' |
			sed 's/^  //; s/  .*//'
		;;
	*)
		_dockhost_bpf_run "$1" help "$2" | awk '!NF { exit } { sub(/^.*\[OPTIONS\] /, ""); print }'
		;;
	esac
}

# Options in usage text, one a line: "--NAME" for a flag, "--NAME VALUE"
# for one that takes a value ("[--hook auto|tcx|clsact]", "--pin-dir DIR").
_dockhost_bpf_options()  # < usage text
{
	awk '{
		for (i = 1; i <= NF; i++) {
			f = $i
			if (f !~ /^\[?--[a-z]/)
				continue
			name = f
			sub(/^\[/, "", name)
			sub(/[],.]*$/, "", name)
			if (name !~ /^--[a-z][a-z0-9-]*$/)
				continue
			# A value is a METAVAR or a list of choices: a|b|c.
			if (f ~ /\]/ || i == NF || $(i + 1) !~ /^[A-Z]|^[a-z0-9-]+\|/) {
				print name
				continue
			}
			value = $(i + 1)
			sub(/\]+(\.\.\.)?$/, "", value)
			print name " " value
		}
	}'
}

# GET PATH of Docker's API, as the CLI asks it ($DOCKER_HOST unix:// or
# /var/run/docker.sock), in a second at most; nothing without Docker.
_dockhost_bpf_docker()  # PATH
{
	local sock=/var/run/docker.sock
	case ${DOCKER_HOST-} in
	unix://*) sock=${DOCKER_HOST#unix://} ;;
	?*) return 0 ;;
	esac
	[ -S "$sock" ] && command -v curl >/dev/null 2>&1 || return 0
	curl -sf --max-time 1 --unix-socket "$sock" "http://localhost$1" 2>/dev/null
}

_dockhost_bpf_docker_networks()  # [bridge]
{
	local path=/networks
	# filters={"driver":{"bridge":true}}
	[ "${1-}" = bridge ] && path+='?filters=%7B%22driver%22%3A%7B%22bridge%22%3Atrue%7D%7D'
	_dockhost_bpf_docker "$path" | grep -o '"Name": *"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/'
}

_dockhost_bpf_docker_containers()
{
	_dockhost_bpf_docker /containers/json | grep -o '"Names": *\["/[^"]*"' | sed 's/.*"\/\([^"]*\)"$/\1/'
}

# What is attached, from 'status --json': "bridge NAME", "port BRIDGE
# PORT/PROTO" and "source PORT/PROTO NAME" lines.
_dockhost_bpf_state()  # PROG PIN_DIR
{
	local -a pin=()
	[ -n "$2" ] && pin=(--pin-dir "$2")
	_dockhost_bpf_run "$1" "${pin[@]}" --json status | awk '
		function value(line) { sub(/^[^:]*: *"?/, "", line); sub(/"?,?$/, "", line); return line }
		/^  "[a-z_]+":/ { section = $1 }
		section ~ /"bridges"/ && /^ *"bridge":/ { print "bridge " value($0) }
		section ~ /"ports"/ && /^ *"bridge":/ { bridge = value($0) }
		section ~ /"ports"/ && /^ *"port":/ { port = value($0) }
		section ~ /"ports"/ && /^ *"proto":/ { spec = port "/" value($0); print "port " bridge " " spec }
		section ~ /"ports"/ && /^ *"source":/ { print "source " spec " " value($0) }'
}

# COMPREPLY: compgen's words that start with $cur, one a line (a file
# name with blanks stays one).
_dockhost_bpf_reply()  # COMPGEN-ARGS...
{
	mapfile -t COMPREPLY < <(compgen "$@" -- "$cur")
}

# Values for METAVAR (of an option or a positional argument).
_dockhost_bpf_metavar()  # METAVAR
{
	case $1 in
	*FILE*) compopt -o filenames 2>/dev/null; _dockhost_bpf_reply -f ;;
	*DIR*) compopt -o filenames 2>/dev/null; _dockhost_bpf_reply -d ;;
	*) COMPREPLY=() ;;
	esac
}

_dockhost_bpf()
{
	# shellcheck disable=SC2034  # split: set by _init_completion -s
	local cur prev words cword split=false
	if declare -F _init_completion >/dev/null; then
		_init_completion -s || return
	else
		# Without bash-completion: COMP_WORDS as bash split them, '='
		# a word of its own.
		words=("${COMP_WORDS[@]}")
		cword=$COMP_CWORD
		cur=${words[cword]}
		prev=${words[cword - 1]}
		if [ "$cur" = = ]; then
			cur=
		elif [ "$prev" = = ]; then
			prev=${words[cword - 2]}
		fi
	fi
	local prog=${words[0]/#\~/$HOME}
	local globals usage options cmd= action= pin_dir= bridge= dashdash= i w value
	local -a pos=()

	globals=$(_dockhost_bpf_usage "$prog" - | _dockhost_bpf_options)
	options=$globals
	# The words before the cursor: global options (anywhere before '--'),
	# the command, then its options and positional arguments.
	for ((i = 1; i < cword; i++)); do
		w=${words[i]}
		if [ -n "$dashdash" ] || [[ $w != -* ]]; then
			if [ -z "$cmd" ]; then
				cmd=$w
				usage=$(_dockhost_bpf_usage "$prog" "$cmd")
				options+=$'\n'$(_dockhost_bpf_options <<<"$usage")
			else
				pos+=("$w")
			fi
			continue
		fi
		[ "$w" = -- ] && dashdash=1 && continue
		value=
		if [[ $w == --*=* ]]; then
			value=${w#*=}
			w=${w%%=*}
		elif grep -qx -- "$w .*" <<<"$options"; then
			# its value: the next word ('=' between them without bash-completion)
			[ "${words[i + 1]-}" = = ] && ((i++))
			((i + 1 < cword)) && value=${words[i + 1]}
			((i++))
		fi
		case $w in
		--pin-dir) pin_dir=$value ;;
		--bridge) bridge=$value ;;
		esac
	done
	[ "$cmd" = port ] && action=${pos[0]-}

	# An option's value.
	local spec
	spec=$(grep -x -- "$prev .*" <<<"$options" | head -n 1)
	if [ -n "$spec" ] && [ -z "$dashdash" ] && ((cword > 1)); then
		value=${spec#* }
		case $prev in
		--bridge)
			_dockhost_bpf_reply -W "$(_dockhost_bpf_state "$prog" "$pin_dir" | awk '$1 == "bridge" { print $2 }')"
			;;
		--from)
			if [ "$action" = del ]; then
				spec=${pos[1]-}
				[[ -n $spec && $spec != */* ]] && spec+=/tcp
				_dockhost_bpf_reply -W "$(_dockhost_bpf_state "$prog" "$pin_dir" |
					awk -v spec="$spec" '$1 == "source" && $2 == spec { print $3 }')"
			else
				_dockhost_bpf_reply -W "any $(_dockhost_bpf_docker_containers) $(_dockhost_bpf_docker_networks)"
			fi
			;;
		*)
			if [[ $value =~ ^[a-z0-9-]+(\|[a-z0-9-]+)+$ ]]; then
				_dockhost_bpf_reply -W "${value//|/ }"
			else
				_dockhost_bpf_metavar "$value"
			fi
			;;
		esac
		return 0
	fi

	# An option.
	if [[ $cur == -* ]] && [ -z "$dashdash" ]; then
		if [ -n "$action" ]; then
			options=$globals$'\n'$(grep "^$cmd $action\( \|$\)" <<<"$usage" | _dockhost_bpf_options)
		fi
		_dockhost_bpf_reply -W "$(cut -d' ' -f1 <<<"$options" | sort -u)"
		return 0
	fi

	# A positional argument.
	case $cmd in
	'' | help)
		[ "$cmd" = help ] && [ ${#pos[@]} -gt 0 ] && return 0
		_dockhost_bpf_reply -W "$(_dockhost_bpf_usage "$prog" commands) help"
		;;
	attach)
		[ ${#pos[@]} -eq 0 ] || return 0
		local dev bridges=
		for dev in /sys/class/net/*/bridge; do
			[ -d "$dev" ] && dev=${dev%/bridge} && bridges+=" ${dev##*/}"
		done
		_dockhost_bpf_reply -W "$bridges $(_dockhost_bpf_docker_networks bridge)"
		;;
	detach)
		[ ${#pos[@]} -eq 0 ] || return 0
		_dockhost_bpf_reply -W "$(_dockhost_bpf_state "$prog" "$pin_dir" | awk '$1 == "bridge" { print $2 }')"
		;;
	port)
		if [ ${#pos[@]} -eq 0 ]; then
			_dockhost_bpf_reply -W "$(awk '$1 == "port" { print $2 }' <<<"$usage")"
		elif [ ${#pos[@]} -eq 1 ] && [ "$action" = del ]; then
			# Mapped ports; with --bridge, that bridge's own entries (all
			# that 'port del --bridge' removes).
			_dockhost_bpf_reply -W "$(_dockhost_bpf_state "$prog" "$pin_dir" |
				awk -v bridge="$bridge" '$1 == "port" && (bridge == "" || $2 == bridge) { print $3 }' |
				sort -u)"
		fi
		;;
	*)
		# Any other command: its usage line's Nth argument, if it names
		# files or directories ('apply [FILE]').
		local -a args=() line
		read -r -a line <<<"$(head -n 1 <<<"$usage")"
		for w in "${line[@]}"; do
			[[ $w == \[-* ]] && break
			w=${w//[\[\]]/}
			w=${w%...}
			args+=("$w")
		done
		[ ${#args[@]} -gt $((${#pos[@]} + 1)) ] && _dockhost_bpf_metavar "${args[${#pos[@]} + 1]}"
		;;
	esac
	return 0
}
complete -F _dockhost_bpf dockhost-bpf
