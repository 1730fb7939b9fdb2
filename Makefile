# dockhost-bpf build: bpf object -> bpftool skeleton -> CLI, in the style of
# libbpf-bootstrap. Quiet by default; `make V=1` shows every command.

OUTPUT   ?= .output
PREFIX   ?= /usr/local
DESTDIR  ?=
BINDIR   := $(PREFIX)/sbin
MANDIR   := $(PREFIX)/share/man/man8
UNITDIR  := $(PREFIX)/lib/systemd/system
COMPLETIONDIR := $(PREFIX)/share/bash-completion/completions
SYSCONFDIR ?= /etc
# The version, from its one source: debian/changelog's top entry (read with
# sed, so a tree without .git or dpkg-dev has it too).
VERSION  := ${shell sed -n '1s/^[^ ]* (\([^)]*\)).*/\1/p' debian/changelog 2>/dev/null}
ifeq ($(VERSION),)
$(error debian/changelog: no version in its first line, 'dockhost-bpf (VERSION) ...')
endif

CLANG    ?= clang
CC       ?= cc
BPFTOOL  ?= bpftool
LLVM_STRIP ?= llvm-strip

ARCH := $(shell uname -m | sed 's/x86_64/x86/; s/aarch64/arm64/; s/ppc64le/powerpc/; s/mips.*/mips/; s/riscv64/riscv/')

CFLAGS   ?= -O2 -g
CFLAGS   += -Wall -Wextra -Werror -Wno-unused-parameter -std=gnu11
# SANITIZE=1: ASan and UBSan, any report fatal (make asan builds that CLI
# in its own directory, ASAN_OUTPUT, for make test-all).
ifeq ($(SANITIZE),1)
CFLAGS   += -O1 -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
endif
ASAN_OUTPUT ?= .output-asan
CPPFLAGS += -Iinclude -I$(OUTPUT) -D_GNU_SOURCE
LDLIBS   += -lbpf -lelf -lz -lmnl -ljson-c -ldl
BPF_CFLAGS := -g -O2 -target bpf -D__TARGET_ARCH_$(ARCH) -Wall -Iinclude -I. -Ibpf

BPF_SRCS := bpf/dockhost.bpf.c
BPF_HDRS := $(wildcard bpf/lib/*.bpf.h) include/dockhost.h vmlinux.h
CLI_SRCS := $(wildcard user/*.c)
CLI_HDRS := $(wildcard user/*.h) include/dockhost.h
CLI_OBJS := $(patsubst user/%.c,$(OUTPUT)/user/%.o,$(CLI_SRCS))
UNIT_BIN := $(OUTPUT)/test_datapath
PROP_BIN := $(OUTPUT)/test_property
LOADGEN  := $(OUTPUT)/loadgen
BENCH_REQUIRED := iptables iptables-restore docker-proxy iperf3 gnuplot taskset
TEST_BPF := $(OUTPUT)/user_filter.bpf.o
# Test-only tools: tcx chains by hand (bpftool 7.1 has no tcx), crafted
# frames for the security suite, a preload that churns nat_state under the CLI.
TCXCTL   := $(OUTPUT)/tcxctl
RAWFRAME := $(OUTPUT)/rawframe
CHURN_SO := $(OUTPUT)/churn_preload.so
# libFuzzer targets, one per tests/fuzz/fuzz_*.c, over the parsers of
# outside input (spec.c, docker_parse.c, config.c); `make fuzz FUZZ_SECONDS=600` for long.
FUZZ_SECONDS ?= 3
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(OUTPUT)/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SRCS := user/spec.c user/docker_parse.c user/config.c
FUZZ_CFLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer -Wall -Wextra -Werror -Wno-unused-parameter -std=gnu11

# Tools that must exist before anything builds; a fresh machine gets them
# from scripts/install-deps.sh, run once, only when one is missing.
DEPS_STAMP := $(OUTPUT)/.deps-ok
REQUIRED := clang llvm-strip bpftool socat tc ip ss nstat sysctl ethtool python3 promtool prometheus curl
REQUIRED_HDRS := /usr/include/bpf/libbpf.h /usr/include/libmnl/libmnl.h \
	/usr/include/json-c/json.h /usr/include/gelf.h /usr/include/zlib.h \
	/usr/include/$(shell $(CC) -print-multiarch)/curl/curl.h $(LIBFUZZER) \
	/usr/share/bash-completion/bash_completion
# clang's libFuzzer (Debian: libclang-rt-14-dev, only recommended by clang).
LIBFUZZER = $(shell $(CLANG) --print-runtime-dir 2>/dev/null)/libclang_rt.fuzzer-$(shell uname -m).a

ifeq ($(V),1)
	Q =
	msg =
else
	Q = @
	msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

.DELETE_ON_ERROR:
.PHONY: all deps clean test test-all test-unit test-docker test-kernels fuzz asan demo bench install uninstall vmlinux deb test-deb test-systemd

all: $(OUTPUT)/dockhost-bpf

deps: $(DEPS_STAMP)

$(DEPS_STAMP): scripts/install-deps.sh
	$(Q)missing=""; \
	for t in $(REQUIRED); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	for h in $(REQUIRED_HDRS); do [ -e $$h ] || missing="$$missing $$h"; done; \
	if [ -n "$$missing" ]; then echo "  DEPS    missing:$$missing"; scripts/install-deps.sh; fi
	$(Q)mkdir -p $(OUTPUT) && touch $@

$(OUTPUT) $(OUTPUT)/user:
	$(Q)mkdir -p $@

$(OUTPUT)/dockhost.bpf.o: $(BPF_SRCS) $(BPF_HDRS) $(DEPS_STAMP) | $(OUTPUT)
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $(BPF_SRCS) -o $@
	$(Q)$(LLVM_STRIP) -g $@ 2>/dev/null || true

$(TEST_BPF): tests/e2e/user_filter.bpf.c vmlinux.h $(DEPS_STAMP) | $(OUTPUT)
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(TCXCTL): tests/e2e/tcxctl.c $(DEPS_STAMP) | $(OUTPUT)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $< $(LDLIBS) -o $@

$(CHURN_SO): tests/cli/churn_preload.c $(DEPS_STAMP) | $(OUTPUT)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -shared -fPIC $< -lbpf -ldl -o $@

$(RAWFRAME): tests/e2e/rawframe.c tests/unit/csum.h | $(OUTPUT)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $< -o $@

$(OUTPUT)/dockhost.skel.h: $(OUTPUT)/dockhost.bpf.o
	$(call msg,GEN-SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name dockhost > $@

$(OUTPUT)/user/%.o: user/%.c $(CLI_HDRS) $(OUTPUT)/dockhost.skel.h | $(OUTPUT)/user
	$(call msg,CC,$@)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

# --version prints it: rebuilt when the changelog changes.
$(OUTPUT)/user/main.o: CPPFLAGS += -DDH_VERSION='"$(VERSION)"'
$(OUTPUT)/user/main.o: debian/changelog

$(OUTPUT)/dockhost-bpf: $(CLI_OBJS)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(UNIT_BIN): tests/unit/test_datapath.c tests/unit/packet.h tests/unit/csum.h $(OUTPUT)/dockhost.skel.h
	$(call msg,CC,$@)
	$(Q)$(CC) $(CPPFLAGS) -Itests/unit $(CFLAGS) $< $(LDLIBS) -o $@

$(PROP_BIN): tests/unit/test_property.c tests/unit/packet.h tests/unit/csum.h $(OUTPUT)/dockhost.skel.h
	$(call msg,CC,$@)
	$(Q)$(CC) $(CPPFLAGS) -Itests/unit $(CFLAGS) $< $(LDLIBS) -o $@

$(OUTPUT)/fuzz:
	$(Q)mkdir -p $@

$(OUTPUT)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_SRCS) $(CLI_HDRS) $(DEPS_STAMP) | $(OUTPUT)/fuzz
	$(call msg,FUZZ-CC,$@)
	$(Q)$(CLANG) $(CPPFLAGS) -Iuser $(FUZZ_CFLAGS) $< $(FUZZ_SRCS) -ljson-c -o $@

test: $(OUTPUT)/dockhost-bpf $(UNIT_BIN) $(PROP_BIN) $(TEST_BPF) $(TCXCTL) $(CHURN_SO) $(RAWFRAME) $(FUZZ_BINS)
	$(Q)FUZZ_SECONDS=$(FUZZ_SECONDS) tests/run.sh

# make test, then the e2e and cli suites again against the CLI built with
# ASan and UBSan (tests/sanitizer/run.sh): what .ci/run runs.
test-all: test asan test-deb test-systemd test-kernels
	$(Q)DH_BIN=$(abspath $(ASAN_OUTPUT))/dockhost-bpf tests/sanitizer/run.sh

asan:
	$(Q)$(MAKE) --no-print-directory SANITIZE=1 CC=$(CLANG) OUTPUT=$(ASAN_OUTPUT) $(ASAN_OUTPUT)/dockhost-bpf

# Each fuzz target FUZZ_SECONDS long (make test runs them too).
fuzz: $(FUZZ_BINS)
	$(Q)FUZZ_SECONDS=$(FUZZ_SECONDS) DH_FUZZ_DIR=$(abspath $(OUTPUT))/fuzz tests/fuzz/run_fuzz.sh

test-unit: $(UNIT_BIN) $(PROP_BIN)
	$(Q)$(UNIT_BIN) && $(PROP_BIN)

# The unit and e2e suites on Debian 12's stock kernel (6.1) under QEMU
# (scripts/test-kernels.sh). DH_SUITES (default "unit e2e") and
# DH_TEST_FILTER as for make test: DH_SUITES=e2e DH_TEST_FILTER=name runs one.
test-kernels: $(OUTPUT)/dockhost-bpf $(UNIT_BIN) $(PROP_BIN) $(TEST_BPF) $(TCXCTL) $(CHURN_SO) $(RAWFRAME)
	$(Q)OUTPUT=$(OUTPUT) scripts/test-kernels.sh

# The real-Docker suite alone (make test runs it too).
test-docker: $(OUTPUT)/dockhost-bpf
	$(Q)DH_SUITES=docker tests/run.sh

# dockhost-bpf.service under a real systemd: a Debian 12 root, built once
# with debootstrap and cached in $(OUTPUT)/systemd/root, booted with
# systemd-nspawn (tests/systemd/test_unit.sh).
test-systemd: $(OUTPUT)/dockhost-bpf $(TCXCTL)
	$(Q)command -v systemd-nspawn >/dev/null && command -v debootstrap >/dev/null || scripts/install-deps.sh systemd
	$(Q)DH_OUTPUT=$(abspath $(OUTPUT)) tests/systemd/test_unit.sh

demo: $(OUTPUT)/dockhost-bpf
	$(Q)scripts/demo.sh

$(LOADGEN): scripts/loadgen.c | $(OUTPUT)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $< -lpthread -o $@

# QUICK=1 for a run under a minute; REPS=, SECONDS_PER=, THREADS= to tune.
bench: $(OUTPUT)/dockhost-bpf $(LOADGEN) $(TEST_BPF) $(TCXCTL)
	$(Q)missing=""; \
	for t in $(BENCH_REQUIRED); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then echo "  DEPS    missing:$$missing"; scripts/install-deps.sh bench; fi
	$(Q)QUICK=$(QUICK) scripts/bench.sh

vmlinux:
	$(Q)scripts/gen-vmlinux.sh

# The Debian package, by dpkg-buildpackage (debhelper, debian/) out of a copy
# of the tree under $(DEB_BUILD), so the tree stays clean:
# $(OUTPUT)/dockhost-bpf_VERSION_ARCH.deb, and in $(DEB_BUILD) the native
# source (.dsc, .tar.xz) and .changes. Its build dependencies come from
# `install-deps.sh deb` when dpkg-checkbuilddeps finds one missing.
DEB_ARCH  = $(shell dpkg --print-architecture)
DEB       = $(OUTPUT)/dockhost-bpf_$(VERSION)_$(DEB_ARCH).deb
DEB_BUILD := $(OUTPUT)/deb
DEB_REQUIRED := dpkg-buildpackage dpkg-checkbuilddeps dh lintian fakeroot

deb:
	$(Q)missing=""; \
	for t in $(DEB_REQUIRED); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	[ -n "$$missing" ] || dpkg-checkbuilddeps debian/control 2>/dev/null || missing=" (Build-Depends)"; \
	if [ -n "$$missing" ]; then echo "  DEPS    missing:$$missing"; scripts/install-deps.sh deb; fi
	$(call msg,DEB,$(DEB))
	$(Q)rm -rf $(DEB_BUILD) && mkdir -p $(DEB_BUILD)/dockhost-bpf-$(VERSION)
	$(Q)tar -c --exclude=./.git --exclude='./.output*' --exclude='./$(OUTPUT)' . | \
		tar -x -C $(DEB_BUILD)/dockhost-bpf-$(VERSION)
	$(Q)cd $(DEB_BUILD)/dockhost-bpf-$(VERSION) && \
		dpkg-buildpackage -us -uc >../build.log 2>&1 || \
		{ tail -n 40 ../build.log; echo "make deb: dpkg-buildpackage failed: $(DEB_BUILD)/build.log" >&2; exit 1; }
	$(Q)cp $(DEB_BUILD)/$(notdir $(DEB)) $(DEB)

# make deb (the tree unchanged by it), lintian (any error fails) and the
# package's contents and scripts, read with dpkg-deb: nothing installed.
test-deb:
	$(Q)MAKE="$(MAKE)" OUTPUT=$(OUTPUT) DH_DEB=$(DEB) DH_DEB_BUILD=$(DEB_BUILD) tests/deb/test_deb.sh

install: $(OUTPUT)/dockhost-bpf
	$(call msg,INSTALL,$(DESTDIR)$(BINDIR)/dockhost-bpf)
	$(Q)install -D -m 0755 $(OUTPUT)/dockhost-bpf $(DESTDIR)$(BINDIR)/dockhost-bpf
	$(Q)install -D -m 0644 user/dockhost-bpf.8 $(DESTDIR)$(MANDIR)/dockhost-bpf.8
	$(Q)install -D -m 0644 user/dockhost-bpf.bash $(DESTDIR)$(COMPLETIONDIR)/dockhost-bpf
	$(Q)install -d $(DESTDIR)$(UNITDIR)
	$(Q)sed 's|@SBINDIR@|$(BINDIR)|' user/dockhost-bpf.service > $(DESTDIR)$(UNITDIR)/dockhost-bpf.service
	@# The configuration is the admin's once installed: never overwritten.
	$(Q)[ -e $(DESTDIR)$(SYSCONFDIR)/dockhost-bpf.conf ] || \
		install -D -m 0644 user/dockhost-bpf.conf $(DESTDIR)$(SYSCONFDIR)/dockhost-bpf.conf

uninstall:
	$(Q)rm -f $(DESTDIR)$(BINDIR)/dockhost-bpf $(DESTDIR)$(MANDIR)/dockhost-bpf.8 \
		$(DESTDIR)$(UNITDIR)/dockhost-bpf.service $(DESTDIR)$(COMPLETIONDIR)/dockhost-bpf

clean:
	$(call msg,CLEAN,$(OUTPUT) $(ASAN_OUTPUT))
	$(Q)rm -rf $(OUTPUT) $(ASAN_OUTPUT)
