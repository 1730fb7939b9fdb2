// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The pin directory: one per installation (xdp-tools style), on bpffs,
 * locked with flock() for the whole of a CLI call so two calls never
 * interleave. The first attach loads the skeleton and pins its maps and
 * programs; every later call works from the pins alone.
 */
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <dirent.h>
#include <unistd.h>

#include "cli.h"
#include "dockhost.skel.h"

struct pinned {
	const char *name;
	size_t fd_offset;       /* of the fd in struct dh_state */
	const char *prog_name;  /* for programs: the function in dockhost.bpf.c */
	/* For maps: what every read in user/ assumes. A pinned map that
	 * differs is refused at open, never read with the wrong sizes. */
	__u32 map_type, key_size, value_size;
};

#define MAP_PIN(name, fd, type, key, value) \
	{ name, offsetof(struct dh_state, fd), NULL, type, sizeof(key), sizeof(value) }

static const struct pinned pins[] = {
	MAP_PIN(DH_MAP_PORTS, ports_fd, BPF_MAP_TYPE_HASH, struct dh_port_key, struct dh_port_target),
	MAP_PIN(DH_MAP_PORT_STATS, port_stats_fd, BPF_MAP_TYPE_PERCPU_HASH, struct dh_port_key,
		struct dh_port_stats),
	MAP_PIN(DH_MAP_GATEWAYS, gateways_fd, BPF_MAP_TYPE_HASH, struct dh_gateway_key, struct dh_gateway),
	MAP_PIN(DH_MAP_NAT_STATE, nat_state_fd, BPF_MAP_TYPE_LRU_HASH, struct dh_nat_key,
		struct dh_nat_origin),
	MAP_PIN(DH_MAP_COUNTERS, counters_fd, BPF_MAP_TYPE_PERCPU_ARRAY, __u32, struct dh_counters),
	MAP_PIN(DH_MAP_BRIDGES, bridges_fd, BPF_MAP_TYPE_HASH, __u32, struct dh_bridge),
	MAP_PIN(DH_MAP_MODES, modes_fd, BPF_MAP_TYPE_HASH, __u32, struct dh_bridge_mode),
	MAP_PIN(DH_MAP_SOCK_FLOWS, sock_flows_fd, BPF_MAP_TYPE_LRU_HASH, struct dh_sock_flow_key,
		struct dh_sock_flow),
	MAP_PIN(DH_MAP_GATEWAYS6, gateways6_fd, BPF_MAP_TYPE_HASH, struct dh_gateway6_key, struct dh_gateway),
	MAP_PIN(DH_MAP_TARGETS, targets_fd, BPF_MAP_TYPE_SOCKHASH, struct dh_target_key, __u64),
	/* A ring buffer has no key or value: sizes 0. */
	{ DH_MAP_TRACE_EVENTS, offsetof(struct dh_state, trace_events_fd), NULL, BPF_MAP_TYPE_RINGBUF, 0, 0 },
	MAP_PIN(DH_MAP_TRACE_CTL, trace_ctl_fd, BPF_MAP_TYPE_ARRAY, __u32, struct dh_trace_ctl),
	MAP_PIN(DH_MAP_ALLOW4, allow4_fd, BPF_MAP_TYPE_LPM_TRIE, struct dh_allow4_key, __u32),
	MAP_PIN(DH_MAP_ALLOW6, allow6_fd, BPF_MAP_TYPE_LPM_TRIE, struct dh_allow6_key, __u32),
	MAP_PIN(DH_MAP_ALLOW_SOURCES, allow_sources_fd, BPF_MAP_TYPE_HASH, struct dh_allow_source_key,
		struct dh_allow_source),
	MAP_PIN(DH_MAP_SOURCES, sources_fd, BPF_MAP_TYPE_LRU_HASH, struct dh_source_key,
		struct dh_source_stats),
	{ DH_PIN_PROG_INGRESS, offsetof(struct dh_state, prog_ingress_fd), "dh_ingress", 0, 0, 0 },
	{ DH_PIN_PROG_EGRESS, offsetof(struct dh_state, prog_egress_fd), "dh_egress", 0, 0, 0 },
	{ DH_PIN_PROG_SENDMSG4, offsetof(struct dh_state, prog_sendmsg4_fd), "dh_sendmsg4", 0, 0, 0 },
	{ DH_PIN_PROG_SENDMSG6, offsetof(struct dh_state, prog_sendmsg6_fd), "dh_sendmsg6", 0, 0, 0 },
	{ DH_PIN_PROG_SK_LOOKUP, offsetof(struct dh_state, prog_sk_lookup_fd), "dh_sk_lookup", 0, 0, 0 },
	{ DH_PIN_PROG_CONNECT4, offsetof(struct dh_state, prog_connect4_fd), "dh_connect4", 0, 0, 0 },
	{ DH_PIN_PROG_CONNECT6, offsetof(struct dh_state, prog_connect6_fd), "dh_connect6", 0, 0, 0 },
};
#define N_PINS (sizeof(pins) / sizeof(pins[0]))

static int *pin_fd(struct dh_state *st, const struct pinned *pin)
{
	return (int *)((char *)st + pin->fd_offset);
}

static void pin_path(const struct dh_state *st, const char *name, char *path, size_t size)
{
	snprintf(path, size, "%s/%s", st->pin_dir, name);
}

/* Test only: DH_TEST_KILL_AT=STEP makes the CLI SIGKILL itself at STEP,
 * as kill -9 or a crash there would (tests/e2e/test_kill.sh). */
void dh_test_kill_point(const char *step)
{
	const char *at = getenv("DH_TEST_KILL_AT");

	if (at && !strcmp(at, step))
		kill(getpid(), SIGKILL);
}

int dh_require_root(void)
{
	if (geteuid() != 0)
		return dh_runtime_error("must run as root (needs CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN)");
	return 0;
}

static bool on_bpffs(const char *path)
{
	struct statfs fs;

	return statfs(path, &fs) == 0 && fs.f_type == BPF_FS_MAGIC;
}

/* True if @pid is this process or one of its ancestors. */
static bool is_ancestor(int pid)
{
	int at = getpid(), hops;

	for (hops = 0; at > 1 && hops < 64; hops++) {
		char path[64], line[128];
		FILE *f;

		if (at == pid)
			return true;
		snprintf(path, sizeof(path), "/proc/%d/status", at);
		f = fopen(path, "r");
		if (!f)
			return false;
		at = 0;
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "PPid: %d", &at) == 1)
				break;
		fclose(f);
	}
	return false;
}

/*
 * True if a bpffs mounted by this process would outlive it. It would not
 * in a mount namespace of its own, which is what `ip netns exec` makes (it
 * also hides the host's /sys/fs/bpf): the pins and the state would vanish
 * with it, or with the shell it was started from (`ip netns exec NS bash`).
 * The host's own namespace (pid 1's) always outlives us; any other one
 * only while a process that is not one of our ancestors is in it too.
 */
static bool mount_ns_outlives_us(void)
{
	struct stat self, other;
	struct dirent *ent;
	bool shared = false;
	char path[64];
	DIR *proc;

	if (stat("/proc/self/ns/mnt", &self))
		return false;
	if (stat("/proc/1/ns/mnt", &other) == 0 && other.st_ino == self.st_ino)
		return true;
	proc = opendir("/proc");
	if (!proc)
		return false;
	while (!shared && (ent = readdir(proc))) {
		int pid = atoi(ent->d_name);

		if (pid <= 0 || is_ancestor(pid))
			continue;
		snprintf(path, sizeof(path), "/proc/%d/ns/mnt", pid);
		shared = stat(path, &other) == 0 && other.st_ino == self.st_ino && other.st_dev == self.st_dev;
	}
	closedir(proc);
	return shared;
}

/*
 * The ids of the bpffs mounts of device @dev in /proc/@pid/mountinfo, up to
 * @max; -1 if it cannot be read. Ids are unique across mount namespaces: a
 * namespace copied from another gets new ones for the same filesystem.
 */
static int bpffs_mount_ids(const char *pid, dev_t dev, int *ids, int max)
{
	char path[64], line[4096], type[64];
	unsigned int maj, min;
	int id, n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%s/mountinfo", pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char *dash = strstr(line, " - ");

		if (!dash || sscanf(dash, " - %63s", type) != 1 || strcmp(type, "bpf") ||
		    sscanf(line, "%d %*d %u:%u", &id, &maj, &min) != 3 || makedev(maj, min) != dev)
			continue;
		if (n < max)
			ids[n] = id;
		n++;
	}
	fclose(f);
	return n < max ? n : max;
}

/*
 * False if the bpffs holding @dir would vanish with this process: mounted in
 * no mount namespace but ours, and ours goes with us (a service's private
 * namespace, 'unshare -m sh -c "mount -t bpf ..."'). Its pins would go, and
 * with them the record of what route_localnet to restore. True where it
 * cannot tell (no /proc).
 */
static bool bpffs_outlives_us(const char *dir)
{
	int ours[16], theirs[16], n_ours, n, i, j;
	struct dirent *ent;
	bool found = false;
	struct stat st;
	DIR *proc;

	if (stat(dir, &st) || mount_ns_outlives_us())
		return true;
	n_ours = bpffs_mount_ids("self", st.st_dev, ours, 16);
	if (n_ours <= 0)
		return true;
	proc = opendir("/proc");
	if (!proc)
		return true;
	/* A mount of it with an id we do not have is in another namespace
	 * (the host's, the test runner's), which outlives this process. */
	while (!found && (ent = readdir(proc))) {
		if (atoi(ent->d_name) <= 0 || atoi(ent->d_name) == getpid())
			continue;
		n = bpffs_mount_ids(ent->d_name, st.st_dev, theirs, 16);
		for (i = 0; i < n && !found; i++) {
			found = true;
			for (j = 0; j < n_ours; j++)
				found = found && theirs[i] != ours[j];
		}
	}
	closedir(proc);
	return found;
}

/*
 * Makes sure @pin_dir can live on bpffs. The default location's parent,
 * /sys/fs/bpf, is mounted when missing (systemd does it on most hosts, not
 * on all); an explicit --pin-dir must already be on bpffs.
 */
static int ensure_bpffs(const char *pin_dir, bool create)
{
	char parent[4096];
	char *slash;

	snprintf(parent, sizeof(parent), "%s", pin_dir);
	slash = strrchr(parent, '/');
	if (!slash || slash == parent)
		return dh_usage_error("--pin-dir '%s': must be a directory below a bpf filesystem", pin_dir);
	*slash = '\0';

	if (on_bpffs(parent)) {
		if (create && !bpffs_outlives_us(parent))
			return dh_runtime_error("--pin-dir '%s': the bpffs on %s is mounted in this mount namespace only, "
						"not shared with the host, and would vanish with this process, taking "
						"the state with it: use the host's /sys/fs/bpf (sys-fs-bpf.mount)",
						pin_dir, parent);
		return 0;
	}
	if (!strcmp(pin_dir, DH_PIN_DIR_DEFAULT) && create) {
		if (!mount_ns_outlives_us())
			return dh_runtime_error("%s is not a bpf filesystem in this mount namespace, and one mounted "
						"here would vanish with this process, taking the state with it "
						"('ip netns exec' does this): use 'nsenter --net=/run/netns/NAME', "
						"or --pin-dir on a bpffs that outlives the call",
						parent);
		if (mount("bpf", parent, "bpf", 0, "mode=0700"))
			return dh_runtime_error("%s: cannot mount bpffs: %s", parent, strerror(errno));
		dh_debug("mounted bpffs on %s", parent);
		return 0;
	}
	if (!create && access(parent, F_OK) == 0 && strcmp(pin_dir, DH_PIN_DIR_DEFAULT))
		return dh_runtime_error("--pin-dir '%s': %s is not a bpf filesystem (mount -t bpf bpf %s)",
					pin_dir, parent, parent);
	if (!create)
		return -ENOENT;
	return dh_runtime_error("--pin-dir '%s': %s is not a bpf filesystem (mount -t bpf bpf %s)",
				pin_dir, parent, parent);
}

/* Opens and flocks the pin directory; retries if a concurrent last detach
 * removed the directory while we waited for its lock. */
static int lock_pin_dir(struct dh_state *st, bool create)
{
	struct stat held, now;

	for (;;) {
		if (create && mkdir(st->pin_dir, 0700) && errno != EEXIST)
			return dh_runtime_error("%s: cannot create: %s", st->pin_dir, strerror(errno));
		st->dir_fd = open(st->pin_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (st->dir_fd < 0) {
			if (errno == ENOENT && !create)
				return -ENOENT;
			return dh_runtime_error("%s: cannot open: %s", st->pin_dir, strerror(errno));
		}
		if (flock(st->dir_fd, LOCK_EX))
			return dh_runtime_error("%s: cannot lock: %s", st->pin_dir, strerror(errno));
		if (fstat(st->dir_fd, &held) == 0 && stat(st->pin_dir, &now) == 0 &&
		    held.st_ino == now.st_ino && held.st_dev == now.st_dev)
			return 0;
		close(st->dir_fd);
		st->dir_fd = -1;
	}
}

/* Returns how many pins were found; fds of missing ones stay -1. */
static int open_pins(struct dh_state *st)
{
	char path[4096];
	unsigned int i;
	int found = 0;

	for (i = 0; i < N_PINS; i++) {
		pin_path(st, pins[i].name, path, sizeof(path));
		*pin_fd(st, &pins[i]) = bpf_obj_get(path);
		if (*pin_fd(st, &pins[i]) >= 0)
			found++;
	}
	return found;
}

static void close_pins(struct dh_state *st)
{
	unsigned int i;

	for (i = 0; i < N_PINS; i++) {
		int *fd = pin_fd(st, &pins[i]);

		if (*fd >= 0)
			close(*fd);
		*fd = -1;
	}
}

/* Every refusal of a pin set says this: the user must know nothing moved. */
#define UNTOUCHED "nothing changed"

/* A pin set of an older version: never read, and how to get out of it. */
static int older_pin_set(const struct dh_state *st, unsigned int version)
{
	return dh_runtime_error("%s: pinned by an older dockhost-bpf (ABI %u, this one has ABI %u): detach every bridge with the version that attached them (or with 'detach --force BRIDGE'), then attach with this one; " UNTOUCHED,
				st->pin_dir, version, DH_ABI_VERSION);
}

/*
 * Reads the pin set's version: 0 with *version (1 if there is no meta: a
 * pin set from before it), or an exit code after saying why this is no pin
 * set of ours. Only the magic and version are read, at the offsets every
 * version keeps, from a buffer of the map's own value size.
 */
static int read_meta(const struct dh_state *st, bool *present, __u32 *version)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info), key = 0;
	struct dh_meta meta = {};
	char path[4096];
	void *value;
	int fd, err = 0;

	*present = false;
	*version = 1;
	pin_path(st, DH_PIN_META, path, sizeof(path));
	fd = bpf_obj_get(path);
	if (fd < 0)
		return errno == ENOENT ? 0 : dh_runtime_error("%s: cannot open: %s", path, strerror(errno));
	*present = true;
	if (bpf_obj_get_info_by_fd(fd, &info, &len) || info.type != BPF_MAP_TYPE_ARRAY ||
	    info.key_size != sizeof(key) || info.value_size < sizeof(meta) || info.max_entries < 1) {
		close(fd);
		return dh_runtime_error("%s: not the meta map of a dockhost-bpf pin set: " UNTOUCHED, path);
	}
	value = calloc(1, info.value_size);
	if (!value || bpf_map_lookup_elem(fd, &key, value))
		err = dh_runtime_error("%s: cannot read: %s", path, strerror(value ? errno : ENOMEM));
	else
		memcpy(&meta, value, sizeof(meta));
	free(value);
	close(fd);
	if (err)
		return err;
	if (meta.magic != DH_ABI_MAGIC)
		return dh_runtime_error("%s: not the meta map of a dockhost-bpf pin set (magic 0x%08x): " UNTOUCHED,
					path, meta.magic);
	*version = meta.abi_version;
	return 0;
}

/* 0 if the pin set (if any) is of this version; else an exit code after
 * saying why this CLI must not touch it. */
static int check_meta(const struct dh_state *st, bool *present)
{
	struct dh_meta meta = {};
	int err;

	err = read_meta(st, present, &meta.abi_version);
	if (err || !*present)
		return err;
	if (meta.abi_version > DH_ABI_VERSION)
		return dh_runtime_error("%s: pinned by a newer dockhost-bpf (ABI %u, this one has ABI %u): use that version or upgrade this one; " UNTOUCHED,
					st->pin_dir, meta.abi_version, DH_ABI_VERSION);
	if (meta.abi_version < DH_ABI_VERSION)
		return older_pin_set(st, meta.abi_version);
	return 0;
}

/* The maps this CLI found must be the maps it reads (see pins[]). */
static int check_maps(const struct dh_state *st)
{
	unsigned int i;

	for (i = 0; i < N_PINS; i++) {
		struct bpf_map_info info = {};
		__u32 len = sizeof(info);
		int fd = *pin_fd((struct dh_state *)st, &pins[i]);

		if (pins[i].prog_name || fd < 0)
			continue;
		if (bpf_obj_get_info_by_fd(fd, &info, &len))
			return dh_runtime_error("%s/%s: cannot query: %s", st->pin_dir, pins[i].name, strerror(errno));
		if (info.type != pins[i].map_type || info.key_size != pins[i].key_size ||
		    info.value_size != pins[i].value_size)
			return dh_runtime_error("%s/%s: map type %u, key size %u, value size %u, where this dockhost-bpf expects %u, %u, %u (pinned by another version?): " UNTOUCHED,
						st->pin_dir, pins[i].name, info.type, info.key_size, info.value_size,
						pins[i].map_type, pins[i].key_size, pins[i].value_size);
	}
	return 0;
}

/* Pinned first, unpinned last: any pin set this version leaves has it. */
static int pin_meta(const struct dh_state *st)
{
	struct dh_meta meta = { .magic = DH_ABI_MAGIC, .abi_version = DH_ABI_VERSION };
	char path[4096];
	__u32 key = 0;
	int fd, err = 0;

	pin_path(st, DH_PIN_META, path, sizeof(path));
	fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "dh_meta", sizeof(key), sizeof(meta), 1, NULL);
	if (fd < 0)
		return dh_runtime_error("%s: cannot create: %s", path, strerror(errno));
	/* Frozen: no syscall can change the version under a running CLI. */
	if (bpf_map_update_elem(fd, &key, &meta, BPF_ANY) || bpf_map_freeze(fd) || bpf_obj_pin(fd, path))
		err = dh_runtime_error("%s: cannot pin: %s", path, strerror(errno));
	close(fd);
	return err;
}

/* The object this binary embeds must define its maps as pins[] says. */
static int check_object_maps(const struct dockhost *skel)
{
	unsigned int i;

	for (i = 0; i < N_PINS; i++) {
		const struct bpf_map *map;

		if (pins[i].prog_name)
			continue;
		map = bpf_object__find_map_by_name(skel->obj, pins[i].name);
		if (!map || bpf_map__type(map) != pins[i].map_type ||
		    bpf_map__key_size(map) != pins[i].key_size || bpf_map__value_size(map) != pins[i].value_size)
			return dh_runtime_error("map '%s': the BPF object and the CLI disagree on it (a build error)",
						pins[i].name);
	}
	return 0;
}

/* Is @name one of the maps the CLI works with? The datapath's own
 * (nat_sources, nat_fragments) are not pinned: the pinned programs hold
 * them, so they live and die with them, and detach has nothing to remove. */
static bool is_pinned_map(const char *name)
{
	unsigned int i;

	for (i = 0; i < N_PINS; i++)
		if (!pins[i].prog_name && !strcmp(pins[i].name, name))
			return true;
	return false;
}

/* Loads the skeleton; maps already pinned are reused (libbpf checks they
 * are compatible), the rest and both programs are pinned. */
static int load_and_pin(const struct dh_cli *cli, struct dh_state *st)
{
	struct dockhost *skel;
	struct bpf_map *map;
	char path[4096];
	unsigned int i;
	int err;

	skel = dockhost__open();
	if (!skel)
		return dh_runtime_error("cannot open the BPF object: %s", strerror(errno));
	err = check_object_maps(skel);
	if (err) {
		dockhost__destroy(skel);
		return err;
	}
	bpf_object__for_each_map(map, skel->obj) {
		if (!is_pinned_map(bpf_map__name(map)))
			continue;
		pin_path(st, bpf_map__name(map), path, sizeof(path));
		bpf_map__set_pin_path(map, path);
	}
	err = dockhost__load(skel);
	if (err) {
		dh_runtime_error("cannot load the BPF programs: %s (run with -v for the verifier log)",
				 strerror(-err));
		goto out;
	}
	dh_test_kill_point("maps-pinned");
	for (i = 0; i < N_PINS; i++) {
		struct bpf_program *prog;

		if (!pins[i].prog_name)
			continue;
		prog = bpf_object__find_program_by_name(skel->obj, pins[i].prog_name);
		pin_path(st, pins[i].name, path, sizeof(path));
		unlink(path);  /* a stale program left by an interrupted run */
		err = prog ? bpf_program__pin(prog, path) : -ENOENT;
		if (err) {
			dh_runtime_error("%s: cannot pin: %s", path, strerror(-err));
			goto out;
		}
		dh_test_kill_point("prog-pinned");
	}
	dh_debug("loaded and pinned the BPF object in %s", st->pin_dir);
	st->created = true;
	if (open_pins(st) != N_PINS)
		err = dh_runtime_error("%s: pins vanished while loading", st->pin_dir);
out:
	dockhost__destroy(skel);
	if (err && st->created) {
		dh_state_remove_pins(st);
		st->created = false;
	}
	return err ? DH_EXIT_RUNTIME : 0;
}

/* True if no bridge hangs off the pin set: no bridges entry. (Programs a
 * record does not explain are found by name: see dh_hook_remove_unrecorded.) */
static bool holds_nothing(const struct dh_state *st)
{
	return st->bridges_fd < 0 || dh_state_bridge_count(st) == 0;
}

/* No fd open yet; the pin dir on bpffs and locked. */
static int begin_open(const struct dh_cli *cli, struct dh_state *st, bool create)
{
	unsigned int i;
	int err;

	memset(st, 0, sizeof(*st));
	st->pin_dir = cli->pin_dir;
	st->dir_fd = -1;
	for (i = 0; i < N_PINS; i++)
		*pin_fd(st, &pins[i]) = -1;
	err = ensure_bpffs(st->pin_dir, create);
	return err ? err : lock_pin_dir(st, create);
}

int dh_state_open(const struct dh_cli *cli, struct dh_state *st, enum dh_open_mode mode)
{
	bool create = mode == DH_OPEN_OR_CREATE, has_meta;
	int err, found;

	err = begin_open(cli, st, create);
	if (err)
		return err;

	/* Versions first: nothing below may read or change another's pins. */
	err = check_meta(st, &has_meta);
	if (err)
		goto out;
	found = open_pins(st);
	if (found && !has_meta) {
		err = older_pin_set(st, 1);
		goto out;
	}
	err = check_maps(st);
	if (err)
		goto out;
	if (!create && holds_nothing(st)) {
		/* The remains of an attach or a last detach that was killed
		 * half-way: nothing hangs off them, so finish removing them. */
		if (found || has_meta)
			dh_debug("%s: removing the pins of an interrupted run", st->pin_dir);
		close_pins(st);
		dh_state_remove_pins(st);
		err = -ENOENT;
		goto out;
	}
	if (found == (int)N_PINS)
		return 0;
	if (create) {
		/* Nothing (or an interrupted attach's remains): load afresh. */
		close_pins(st);
		err = has_meta ? 0 : pin_meta(st);
		if (!err && !has_meta)
			dh_test_kill_point("meta-pinned");
		if (!err)
			err = load_and_pin(cli, st);
		if (err && !has_meta)
			dh_state_remove_pins(st);  /* nothing was here: leave nothing */
	} else if (found == 0) {
		err = -ENOENT;
	} else {
		err = dh_runtime_error("%s: incomplete pins (an interrupted run?): attach again to repair",
				       st->pin_dir);
	}
out:
	if (err)
		dh_state_close(st);
	return err;
}

_Static_assert(offsetof(struct dh_bridge, name) == 0 &&
	       offsetof(struct dh_bridge, saved_route_localnet) == DH_IFNAMSIZ &&
	       offsetof(struct dh_bridge, flags) == DH_IFNAMSIZ + 4, "the head of dh_bridge is for ever");

/*
 * detach --force: the way out of a pin set of an older version, which
 * dh_state_open refuses. Only what every version keeps is used: the pin
 * names, the bridges map's __u32 key and the head of its value (see struct
 * dh_bridge), read with the map's own sizes; only st->bridges_fd is open.
 * -EAGAIN if the pin set is of this version, -ENOENT if there is none.
 */
int dh_state_open_older(const struct dh_cli *cli, struct dh_state *st)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info), version;
	char path[4096];
	bool present;
	int err;

	err = begin_open(cli, st, false);
	if (err)
		return err;
	err = read_meta(st, &present, &version);
	if (!err && version >= DH_ABI_VERSION) {
		/* This version's (dh_state_open takes it), or a newer one's:
		 * that one's binary is there to detach with. */
		err = version == DH_ABI_VERSION ? -EAGAIN : check_meta(st, &present);
	}
	if (err)
		goto out;
	pin_path(st, DH_MAP_BRIDGES, path, sizeof(path));
	st->bridges_fd = bpf_obj_get(path);
	if (st->bridges_fd < 0) {
		err = errno == ENOENT ? -ENOENT : dh_runtime_error("%s: cannot open: %s", path, strerror(errno));
		goto out;
	}
	if (bpf_obj_get_info_by_fd(st->bridges_fd, &info, &len) || info.type != BPF_MAP_TYPE_HASH ||
	    info.key_size != sizeof(__u32) || info.value_size < offsetof(struct dh_bridge, flags) + sizeof(__u32))
		err = dh_runtime_error("%s: not a bridges map this dockhost-bpf can read: " UNTOUCHED, path);
out:
	if (err)
		dh_state_close(st);
	return err;
}

/* Finds @name in an older pin set's bridges map; fills the head of @bridge. */
bool dh_state_older_find_bridge(const struct dh_state *st, const char *name, __u32 *ifindex,
				struct dh_bridge *bridge)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info), key, *prev = NULL;
	bool found = false;
	char *value;

	if (bpf_obj_get_info_by_fd(st->bridges_fd, &info, &len))
		return false;
	value = calloc(1, info.value_size);
	while (value && !found && bpf_map_get_next_key(st->bridges_fd, prev, &key) == 0) {
		prev = &key;
		if (bpf_map_lookup_elem(st->bridges_fd, &key, value) || strncmp(value, name, DH_IFNAMSIZ))
			continue;
		memset(bridge, 0, sizeof(*bridge));
		memcpy(bridge, value, offsetof(struct dh_bridge, flags) + sizeof(bridge->flags));
		bridge->name[DH_IFNAMSIZ - 1] = '\0';
		*ifindex = key;
		found = true;
	}
	free(value);
	return found;
}

/* ABI 1 hung tcx programs on links pinned as link_{ingress,egress}_IFINDEX,
 * which a program detach cannot remove: detach and unpin them. */
void dh_state_older_unlink(const struct dh_state *st, __u32 ifindex)
{
	static const char *const names[] = { "link_ingress", "link_egress" };
	char path[4096];
	unsigned int i;
	int fd;

	for (i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "%s/%s_%u", st->pin_dir, names[i], ifindex);
		fd = bpf_obj_get(path);
		if (fd >= 0) {
			bpf_link_detach(fd);
			close(fd);
		}
		unlink(path);
	}
}

/* The last steps of removing a pin set, after the other pins (@err: how
 * that went): meta, which marks the set as ours until the end, then the
 * directory. */
static int remove_meta_and_dir(struct dh_state *st, int err)
{
	char path[4096];

	pin_path(st, DH_PIN_META, path, sizeof(path));
	if (!err && unlink(path) && errno != ENOENT)
		err = -errno;
	if (!err && rmdir(st->pin_dir) && errno != ENOENT)
		err = -errno;
	return err;
}

/* The last bridge of an older pin set is gone: every pin in the directory
 * is one of its (names this version may not know), meta last. */
int dh_state_remove_older(struct dh_state *st)
{
	struct dirent *entry;
	char path[4096];
	int err = 0;
	DIR *dir;

	dir = opendir(st->pin_dir);
	if (!dir)
		return -errno;
	while ((entry = readdir(dir))) {
		if (entry->d_name[0] == '.' || !strcmp(entry->d_name, DH_PIN_META))
			continue;
		pin_path(st, entry->d_name, path, sizeof(path));
		if (unlink(path) && errno != ENOENT)
			err = -errno;
	}
	closedir(dir);
	return remove_meta_and_dir(st, err);
}

void dh_state_close(struct dh_state *st)
{
	close_pins(st);
	if (st->dir_fd >= 0)
		close(st->dir_fd);  /* releases the flock */
	st->dir_fd = -1;
}

int dh_state_remove_pins(struct dh_state *st)
{
	char path[4096];
	unsigned int i;
	int err = 0;

	for (i = 0; i < N_PINS; i++) {
		pin_path(st, pins[i].name, path, sizeof(path));
		if (unlink(path) && errno != ENOENT)
			err = -errno;
		if (i == 0)
			dh_test_kill_point("pins-removing");
	}
	/* Only while a socket-mode bridge needs it; an interrupted run may
	 * leave it. */
	pin_path(st, DH_PIN_LINK_SK_LOOKUP, path, sizeof(path));
	if (unlink(path) && errno != ENOENT)
		err = -errno;
	/* meta last: remains of an interrupted removal stay ours to repair. */
	return remove_meta_and_dir(st, err);
}

int dh_state_bridge_count(const struct dh_state *st)
{
	__u32 key, next;
	int count = 0;
	void *prev = NULL;

	while (bpf_map_get_next_key(st->bridges_fd, prev, &next) == 0) {
		key = next;
		prev = &key;
		count++;
	}
	return count;
}

int dh_state_socket_bridges(const struct dh_state *st, __u32 except)
{
	struct dh_bridge bridge;
	__u32 key, next;
	void *prev = NULL;
	int count = 0;

	while (bpf_map_get_next_key(st->bridges_fd, prev, &next) == 0) {
		key = next;
		prev = &key;
		if (key != except && bpf_map_lookup_elem(st->bridges_fd, &key, &bridge) == 0 &&
		    bridge.mode == DH_MODE_SOCKET)
			count++;
	}
	return count;
}

bool dh_state_find_bridge(const struct dh_state *st, const char *name, __u32 *ifindex,
			  struct dh_bridge *bridge)
{
	__u32 key, next;
	void *prev = NULL;

	while (bpf_map_get_next_key(st->bridges_fd, prev, &next) == 0) {
		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(st->bridges_fd, &key, bridge) == 0 &&
		    !strncmp(bridge->name, name, DH_IFNAMSIZ)) {
			*ifindex = key;
			return true;
		}
	}
	return false;
}

static bool key_of_bridge(const void *key, __u32 ifindex)
{
	__u32 leading;

	memcpy(&leading, key, sizeof(leading));
	return leading == ifindex;
}

/* A get_next_key walk restarts from the first key whenever its current key
 * goes (deleted, evicted), so under churn it may never end: this one is
 * bounded to a few passes' worth of steps, and deletes each key only after
 * it has moved past it. For maps without batch lookups. */
static void delete_keys_walk(int fd, __u32 key_size, __u32 max_entries, __u32 ifindex)
{
	size_t steps, cap = 4 * (size_t)max_entries + 64;
	char cur[64], next[64];
	bool have = false;

	for (steps = 0; steps < cap; steps++) {
		if (bpf_map_get_next_key(fd, have ? cur : NULL, next))
			break;
		if (have && key_of_bridge(cur, ifindex))
			bpf_map_delete_elem(fd, cur);
		memcpy(cur, next, key_size);
		have = true;
	}
	if (steps == cap)
		dh_warn("map of %u entries changed too fast to walk: some of ifindex %u's entries may stay",
			max_entries, ifindex);
	else if (have && key_of_bridge(cur, ifindex))
		bpf_map_delete_elem(fd, cur);
}

/*
 * Deletes every key of @fd whose leading __u32 is @ifindex. The walk is
 * bpf_map_lookup_batch's, which moves on bucket by bucket: one pass ends
 * whatever the datapath inserts, evicts or deletes meanwhile, and sees
 * every entry present throughout. Keys are deleted after the walk.
 */
static void delete_keys_of_bridge(int fd, __u32 ifindex)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info), batch = 1024, count, i;
	__u64 in_token[8], out_token[8];  /* a bucket (hash) or a key (array) */
	char *keys = NULL, *values = NULL, *found = NULL;
	size_t n_found = 0, cap_found = 0, value_size;
	int ncpus = libbpf_num_possible_cpus(), err;
	bool first = true, percpu;

	if (bpf_obj_get_info_by_fd(fd, &info, &len) || info.key_size < sizeof(__u32) ||
	    info.key_size > 64 || ncpus <= 0)
		return;
	percpu = info.type == BPF_MAP_TYPE_PERCPU_HASH || info.type == BPF_MAP_TYPE_LRU_PERCPU_HASH ||
		 info.type == BPF_MAP_TYPE_PERCPU_ARRAY;
	value_size = percpu ? ((info.value_size + 7) & ~7UL) * ncpus : info.value_size;
	for (;;) {
		char *grown_keys = realloc(keys, (size_t)batch * info.key_size);
		char *grown_values = grown_keys ? realloc(values, (size_t)batch * value_size) : NULL;

		if (grown_keys)
			keys = grown_keys;
		if (grown_values)
			values = grown_values;
		if (!grown_keys || !grown_values)
			goto out;
		count = batch;
		err = bpf_map_lookup_batch(fd, first ? NULL : in_token, out_token, keys, values, &count, NULL);
		if (err && errno == ENOSPC && batch < info.max_entries) {
			batch *= 2;  /* one bucket holds more than a batch */
			continue;
		}
		if (err && errno != ENOENT) {
			if (first) {
				free(keys);
				free(values);
				delete_keys_walk(fd, info.key_size, info.max_entries, ifindex);
				return;
			}
			dh_warn("map of %u entries: cannot walk: %s", info.max_entries, strerror(errno));
			break;
		}
		for (i = 0; i < count; i++) {
			const char *key = keys + (size_t)i * info.key_size;

			if (!key_of_bridge(key, ifindex))
				continue;
			if (n_found == cap_found) {
				char *grown = realloc(found, (cap_found = cap_found ? cap_found * 2 : 64) * info.key_size);

				if (!grown)
					goto out;
				found = grown;
			}
			memcpy(found + n_found++ * info.key_size, key, info.key_size);
		}
		if (err)  /* ENOENT: that was the last batch */
			break;
		memcpy(in_token, out_token, sizeof(in_token));
		first = false;
	}
	for (i = 0; i < n_found; i++)
		bpf_map_delete_elem(fd, found + (size_t)i * info.key_size);
out:
	free(keys);
	free(values);
	free(found);
}

_Static_assert(offsetof(struct dh_port_key, ifindex) == 0, "ifindex leads the key");
_Static_assert(offsetof(struct dh_gateway_key, ifindex) == 0, "ifindex leads the key");
_Static_assert(offsetof(struct dh_gateway6_key, ifindex) == 0, "ifindex leads the key");
_Static_assert(offsetof(struct dh_nat_key, ifindex) == 0, "ifindex leads the key");

void dh_state_forget_sources(const struct dh_state *st, __u32 ifindex)
{
	delete_keys_of_bridge(st->sources_fd, ifindex);
}

void dh_state_forget_bridge(const struct dh_state *st, __u32 ifindex)
{
	delete_keys_of_bridge(st->ports_fd, ifindex);
	dh_test_kill_point("detach-forgetting");
	delete_keys_of_bridge(st->port_stats_fd, ifindex);
	delete_keys_of_bridge(st->gateways_fd, ifindex);
	delete_keys_of_bridge(st->gateways6_fd, ifindex);
	delete_keys_of_bridge(st->nat_state_fd, ifindex);
	dh_allow_forget_bridge(st, ifindex);
	dh_state_forget_sources(st, ifindex);
	/* sock_flows is keyed without the bridge: its entries for this one
	 * are inert without the modes entry, and age out of the LRU. */
	bpf_map_delete_elem(st->modes_fd, &ifindex);
	bpf_map_delete_elem(st->bridges_fd, &ifindex);
}

union gateway_key {
	struct dh_gateway_key v4;
	struct dh_gateway6_key v6;  /* ifindex leads both */
};

/* The map of @addr's family and its key; returns the map's fd. */
static int gateway_key(const struct dh_state *st, __u32 ifindex, const struct dh_ip *addr,
		       union gateway_key *key)
{
	memset(key, 0, sizeof(*key));
	if (addr->family == AF_INET6) {
		key->v6.ifindex = ifindex;
		memcpy(key->v6.addr, addr->v6, sizeof(key->v6.addr));
		return st->gateways6_fd;
	}
	key->v4.ifindex = ifindex;
	key->v4.addr = addr->v4;
	return st->gateways_fd;
}

int dh_gateway_get(const struct dh_state *st, __u32 ifindex, const struct dh_ip *addr, struct dh_gateway *value)
{
	union gateway_key key;
	int fd = gateway_key(st, ifindex, addr, &key);

	return bpf_map_lookup_elem(fd, &key, value) ? -errno : 0;
}

int dh_gateway_set(const struct dh_state *st, __u32 ifindex, const struct dh_ip *addr,
		   const struct dh_gateway *value)
{
	union gateway_key key;
	int fd = gateway_key(st, ifindex, addr, &key);

	return bpf_map_update_elem(fd, &key, value, BPF_ANY) ? -errno : 0;
}

void dh_gateway_del(const struct dh_state *st, __u32 ifindex, const struct dh_ip *addr)
{
	union gateway_key key;
	int fd = gateway_key(st, ifindex, addr, &key);

	bpf_map_delete_elem(fd, &key);
}

static int cmp_gateways(const void *a, const void *b)
{
	const struct dh_gateway_entry *x = a, *y = b;

	if (x->ifindex != y->ifindex)
		return x->ifindex < y->ifindex ? -1 : 1;
	if (x->addr.family != y->addr.family)
		return x->addr.family == AF_INET ? -1 : 1;
	if (x->addr.family == AF_INET)
		return ntohl(x->addr.v4) < ntohl(y->addr.v4) ? -1 : ntohl(x->addr.v4) > ntohl(y->addr.v4);
	return memcmp(x->addr.v6, y->addr.v6, sizeof(x->addr.v6));
}

int dh_gateways_of(const struct dh_state *st, __u32 ifindex, struct dh_gateway_entry *out, int max)
{
	union gateway_key key, prev;
	int fds[2] = { st->gateways_fd, st->gateways6_fd }, n = 0, i;
	struct dh_gateway value;

	for (i = 0; i < 2; i++) {
		bool first = true;

		while (n < max && bpf_map_get_next_key(fds[i], first ? NULL : &prev, &key) == 0) {
			struct dh_gateway_entry *e = &out[n];

			first = false;
			prev = key;
			if ((ifindex && key.v4.ifindex != ifindex) || bpf_map_lookup_elem(fds[i], &key, &value))
				continue;
			memset(e, 0, sizeof(*e));
			e->ifindex = key.v4.ifindex;
			e->origin = value.origin;
			e->addr.family = i ? AF_INET6 : AF_INET;
			if (i)
				memcpy(e->addr.v6, key.v6.addr, sizeof(e->addr.v6));
			else
				e->addr.v4 = key.v4.addr;
			n++;
		}
	}
	if (n)
		qsort(out, n, sizeof(*out), cmp_gateways);
	return n;
}

/* Per-CPU values come back as one __u64-aligned slot per possible CPU. */
static int sum_percpu(int fd, const void *key, __u64 *sum, size_t n_u64)
{
	int ncpus = libbpf_num_possible_cpus();
	__u64 *values;
	size_t cpu, i;
	int err;

	if (ncpus <= 0)
		return -EINVAL;
	values = calloc(ncpus, n_u64 * sizeof(__u64));
	if (!values)
		return -ENOMEM;
	err = bpf_map_lookup_elem(fd, key, values) ? -errno : 0;
	memset(sum, 0, n_u64 * sizeof(__u64));
	for (cpu = 0; !err && cpu < (size_t)ncpus; cpu++)
		for (i = 0; i < n_u64; i++)
			sum[i] += values[cpu * n_u64 + i];
	free(values);
	return err;
}

int dh_state_zero_percpu(int fd, const void *key, size_t value_size, __u64 flags)
{
	int ncpus = libbpf_num_possible_cpus();
	void *zero;
	int err;

	if (ncpus <= 0)
		return -EINVAL;
	/* One value per possible CPU, each rounded up to 8 bytes. */
	zero = calloc(ncpus, (value_size + 7) & ~(size_t)7);
	if (!zero)
		return -ENOMEM;
	err = bpf_map_update_elem(fd, key, zero, flags) ? -errno : 0;
	free(zero);
	return err;
}

int dh_state_sum_port_stats(const struct dh_state *st, const struct dh_port_key *key,
			    struct dh_port_stats *sum)
{
	return sum_percpu(st->port_stats_fd, key, (__u64 *)sum, sizeof(*sum) / sizeof(__u64));
}

int dh_state_sum_counters(const struct dh_state *st, struct dh_counters *sum)
{
	__u32 zero = 0;

	return sum_percpu(st->counters_fd, &zero, (__u64 *)sum, sizeof(*sum) / sizeof(__u64));
}
