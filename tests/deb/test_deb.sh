#!/usr/bin/env bash
# make test-deb: builds the package with `make deb` and checks it without
# installing it (installing changes the host: the nspawn tests do that):
# the tree is as clean after the build as before, lintian reports no error,
# and dpkg-deb shows the files, conffiles, relations, unit and maintainer
# scripts the README promises. PASS/FAIL lines, then the usual summary.
# Called by the Makefile with MAKE, OUTPUT, DH_DEB and DH_DEB_BUILD set.
# shellcheck disable=SC2016  # check's eval arguments expand when they run
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
passed=0 failed=0
tmp_before=$(ls -A /tmp | sort)
work=$(mktemp -d /tmp/dh-deb-XXXXXX)
trap 'rm -rf "$work"' EXIT

pass() { echo "PASS deb/$1"; passed=$((passed + 1)); }
failure() { echo "FAIL deb/$1: $2"; failed=$((failed + 1)); }
check() {  # NAME WHAT-FAILED CMD...
	local name=$1 what=$2
	shift 2
	if "$@"; then pass "$name"; else failure "$name" "$what"; fi
}
summary() {
	echo
	echo "$passed passed, $failed failed, 0 skipped"
	[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
}

version=$(sed -n '1s/^dockhost-bpf (\([^)]*\)).*/\1/p' debian/changelog)
[ -n "$version" ] || { failure version "no version in debian/changelog's first line"; summary; exit 1; }

# The build, between two looks at the tree (git's, where there is a .git).
tree_state() { [ -d .git ] && git status --porcelain --ignored=no 2>/dev/null; }
before=$(tree_state)
if ! $MAKE --no-print-directory deb OUTPUT="$OUTPUT"; then
	failure build "make deb failed"
	summary
	exit 1
fi
pass build
check tree_unchanged_by_the_build "git status differs after make deb: $(tree_state)" \
	[ "$(tree_state)" = "$before" ]
check deb_name "$DH_DEB missing, or not dockhost-bpf_VERSION_ARCH.deb" \
	eval '[ -f "$DH_DEB" ] && [ "${DH_DEB##*/}" = "dockhost-bpf_${version}_$(dpkg --print-architecture).deb" ]'

# lintian over the .changes: the .deb, the .dsc and the .buildinfo. Errors
# fail; warnings are shown (each one left is explained in README's
# "Package" section); info tags are not.
changes=$DH_DEB_BUILD/dockhost-bpf_${version}_$(dpkg --print-architecture).changes
lintian_rc=0
# Its temporary files (mldbm-elf-*) in $work: lintian leaves them behind.
TMPDIR=$work lintian --no-tag-display-limit "$changes" >"$work/lintian" 2>&1 || lintian_rc=$?
grep '^[EW]:' "$work/lintian" | sed 's/^/  lintian: /'
check lintian_no_errors "lintian exited $lintian_rc: $(grep -v '^[WIN]:' "$work/lintian" | tr '\n' ' ')" \
	eval '[ "$lintian_rc" -eq 0 ] && ! grep -q "^E:" "$work/lintian"'
check lintian_checked_the_source "no .dsc in $changes" grep -q "dockhost-bpf_${version}.dsc" "$changes"

# Files: what `make install PREFIX=/usr` installs, at Debian 12's places.
dpkg-deb -c "$DH_DEB" >"$work/listing"
awk '{print $6}' "$work/listing" >"$work/files"
for f in ./usr/sbin/dockhost-bpf ./lib/systemd/system/dockhost-bpf.service ./etc/dockhost-bpf.conf \
	./usr/share/man/man8/dockhost-bpf.8.gz ./usr/share/doc/dockhost-bpf/copyright \
	./usr/share/doc/dockhost-bpf/changelog.gz ./usr/share/bash-completion/completions/dockhost-bpf; do
	check "contains:${f#./}" "not in the package" grep -qxF "$f" "$work/files"
done
check binary_mode "/usr/sbin/dockhost-bpf not 0755 root" \
	grep -q "^-rwxr-xr-x root/root .* ./usr/sbin/dockhost-bpf$" "$work/listing"

# Control: the version, the conffile, Depends from the linked libraries;
# libcurl (only dlopen()ed), bash-completion and curl (the completion's
# Docker names) Recommends.
field() { dpkg-deb -f "$DH_DEB" "$1"; }
check control_version "Version '$(field Version)', changelog says '$version'" [ "$(field Version)" = "$version" ]
check conffile "conffiles: $(dpkg-deb -I "$DH_DEB" conffiles 2>&1)" \
	eval '[ "$(dpkg-deb -I "$DH_DEB" conffiles)" = /etc/dockhost-bpf.conf ]'
depends=$(field Depends)
for lib in libbpf1 libc6 libjson-c5 libmnl0; do
	check "depends:$lib" "Depends: $depends" eval 'grep -qE "(^|, )$lib( |,|$)" <<<"$depends"'
done
check depends_no_libcurl "Depends: $depends" eval '! grep -q curl <<<"$depends"'
check recommends "Recommends: $(field Recommends)" eval '[ "$(field Recommends)" = "libcurl4, bash-completion, curl" ]'

# The package's own files, unpacked here (nothing installed).
dpkg-deb -x "$DH_DEB" "$work/root"
dpkg-deb -e "$DH_DEB" "$work/control"
check binary_version "--version: $("$work/root/usr/sbin/dockhost-bpf" --version 2>&1)" \
	eval '[ "$("$work/root/usr/sbin/dockhost-bpf" --version)" = "dockhost-bpf $version" ]'
check unit_execstart "$(grep ExecStart "$work/root/lib/systemd/system/dockhost-bpf.service")" \
	grep -qx 'ExecStart=/usr/sbin/dockhost-bpf watch --config /etc/dockhost-bpf.conf $DOCKHOST_WATCH_ARGS' \
	"$work/root/lib/systemd/system/dockhost-bpf.service"
# The unit's stop leaves bridges attached, so an upgrade's restart drops no
# flow: no --detach-on-exit anywhere in what the unit runs by default.
check unit_stop_keeps_bridges "--detach-on-exit in the unit or the default config" \
	eval '! grep -q "^[^#]*--detach-on-exit" "$work/root/lib/systemd/system/dockhost-bpf.service" \
		"$work/root/etc/dockhost-bpf.conf"'

# Maintainer scripts: POSIX sh with set -e; prerm stops the unit and then
# detaches on remove only; an upgrade stops nothing before unpacking and
# restarts the unit in postinst; purge removes the drop-in directory.
for s in prerm postinst postrm; do
	check "script:$s" "not a /bin/sh script with set -e, or sh -n fails" \
		eval 'head -1 "$work/control/$s" | grep -qx "#!/bin/sh" && grep -qx "set -e" "$work/control/$s" &&
			sh -n "$work/control/$s"'
done
# A shell with every command stubbed: what each script runs for each action.
mkdir -p "$work/stub"
for cmd in deb-systemd-invoke deb-systemd-helper systemctl dockhost-bpf rm; do
	printf '#!/bin/sh\necho "%s $*" >>"%s"\n' "$cmd" "$work/ran" >"$work/stub/$cmd"
	chmod +x "$work/stub/$cmd"
done
# Absolute paths point into $work: the script never reaches the host.
# /run/systemd/system is $systemd (a directory: systemd runs), the binary
# $binary (the stub, or a path with nothing: the package's files gone).
systemd=$work binary=$work/stub/dockhost-bpf
run_script() {  # SCRIPT ARGS...: the commands it ran, one a line
	local s=$1
	shift
	: >"$work/ran"
	sed -e "s|/usr/sbin/dockhost-bpf|$binary|g" \
		-e "s|/run/systemd/system|$systemd|g" "$work/control/$s" >"$work/$s.stubbed"
	PATH=$work/stub:$PATH sh -e "$work/$s.stubbed" "$@" >/dev/null 2>&1 || echo "exit $?" >>"$work/ran"
	cat "$work/ran"
}
ran=$(run_script prerm remove)
check prerm_remove_stops_then_detaches "ran: $ran" \
	[ "$(printf '%s\n' "$ran" | grep -v '^deb-systemd-helper')" = "$(printf '%s\n' \
		"deb-systemd-invoke stop dockhost-bpf.service" "dockhost-bpf detach --all --force")" ]
systemd=$work/no-systemd
ran=$(run_script prerm remove)
check prerm_remove_without_systemd_detaches "ran: $ran" [ "$ran" = "dockhost-bpf detach --all --force" ]
# A detach that fails stops the removal (the package stays, to detach with).
printf '#!/bin/sh\necho "dockhost-bpf $*" >>"%s"\nexit 1\n' "$work/ran" >"$work/stub/failing"
chmod +x "$work/stub/failing"
binary=$work/stub/failing
ran=$(run_script prerm remove)
check prerm_remove_fails_if_detach_fails "ran: $ran" \
	[ "$ran" = "$(printf '%s\n' "dockhost-bpf detach --all --force" "exit 1")" ]
binary=$work/gone
ran=$(run_script prerm remove)
check prerm_remove_without_the_binary "ran: $ran" [ -z "$ran" ]
ran=$(run_script postrm purge)
check postrm_purge_without_systemd "ran: $ran" eval 'grep -qx "rm -rf /etc/dockhost-bpf.d" <<<"$ran" && ! grep -q "^exit" <<<"$ran"'
systemd=$work binary=$work/stub/dockhost-bpf
ran=$(run_script prerm upgrade "$version")
check prerm_upgrade_does_nothing "ran: $ran" [ -z "$ran" ]
ran=$(run_script postinst configure "$version")
check postinst_upgrade_restarts "ran: $ran" eval 'grep -qx "deb-systemd-invoke restart dockhost-bpf.service" <<<"$ran"'
ran=$(run_script postinst configure "")
check postinst_install_starts "ran: $ran" eval 'grep -qx "deb-systemd-invoke start dockhost-bpf.service" <<<"$ran"'
ran=$(run_script postrm purge)
check postrm_purge_removes_config "ran: $ran" eval 'grep -qx "rm -rf /etc/dockhost-bpf.d" <<<"$ran"'
check postrm_never_runs_the_binary "postrm mentions dockhost-bpf's binary" \
	eval '! grep -q "sbin/dockhost-bpf" "$work/control/postrm"'

# The build and lintian leave nothing in /tmp but this run's own $work.
left=$(comm -13 <(echo "$tmp_before") <(ls -A /tmp | sort) | grep -vx "${work#/tmp/}")
check nothing_left_in_tmp "left in /tmp: $left" [ -z "$left" ]

summary
