// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Socket mode's cgroup/sendmsg4 and sendmsg6 programs at the cgroup v2
 * root, with connect4 and connect6 (which count the UDP servers that only
 * NAT mode serves), and what socket mode needs of the kernel. The four go
 * on and off together: "the sendmsg programs" below.
 *
 * The root holds every process of the host, whatever its hierarchy: on a
 * cgroup v1 host (no cgroup2 mounted) it is mounted for the call in a
 * private directory, opened, and unmounted at once; the attachment lives
 * in the kernel, not in the mount. The programs are attached without a
 * link (BPF_F_ALLOW_MULTI), like our tcx programs: they stay until detach
 * removes them, found by the ids of the pinned programs.
 */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

/* An fd on the cgroup v2 root, or -errno. */
static int open_cgroup2_root(void)
{
	char line[4096], root[4096], point[4096], type[64], tmp[] = "/tmp/dockhost-bpf-cgroup2-XXXXXX";
	FILE *mounts = fopen("/proc/self/mountinfo", "re");
	int fd = -ENOENT, err;

	/* A mount of the whole hierarchy (its root "/"): "ID PARENT M:N ROOT
	 * POINT OPTS... - TYPE SOURCE SUPER". */
	while (mounts && fd < 0 && fgets(line, sizeof(line), mounts)) {
		char *dash = strstr(line, " - ");

		if (!dash || sscanf(dash, " - %63s", type) != 1 || strcmp(type, "cgroup2") ||
		    sscanf(line, "%*s %*s %*s %4095s %4095s", root, point) != 2 || strcmp(root, "/"))
			continue;
		fd = open(point, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			fd = -errno;
	}
	if (mounts)
		fclose(mounts);
	if (fd >= 0)
		return fd;
	if (!mkdtemp(tmp))
		return -errno;
	if (mount("none", tmp, "cgroup2", 0, NULL)) {
		err = -errno;
		rmdir(tmp);
		return err;
	}
	fd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		fd = -errno;
	umount2(tmp, MNT_DETACH);
	rmdir(tmp);
	dh_debug("cgroup2 root mounted for the call on %s", tmp);
	return fd;
}

static const struct {
	enum bpf_attach_type type;
	const char *name;  /* the function in dockhost.bpf.c */
	size_t fd_offset;  /* of its pinned program's fd in struct dh_state */
} hooks[] = {
	{ BPF_CGROUP_UDP4_SENDMSG, "dh_sendmsg4", offsetof(struct dh_state, prog_sendmsg4_fd) },
	{ BPF_CGROUP_UDP6_SENDMSG, "dh_sendmsg6", offsetof(struct dh_state, prog_sendmsg6_fd) },
	{ BPF_CGROUP_INET4_CONNECT, "dh_connect4", offsetof(struct dh_state, prog_connect4_fd) },
	{ BPF_CGROUP_INET6_CONNECT, "dh_connect6", offsetof(struct dh_state, prog_connect6_fd) },
};
#define N_HOOKS (sizeof(hooks) / sizeof(hooks[0]))

static int hook_prog_fd(const struct dh_state *st, unsigned int i)
{
	return *(const int *)((const char *)st + hooks[i].fd_offset);
}

static int prog_id(int fd, __u32 *id)
{
	struct bpf_prog_info info = {};
	__u32 len = sizeof(info);

	if (bpf_obj_get_info_by_fd(fd, &info, &len))
		return -errno;
	*id = info.id;
	return 0;
}

static int attached_on(int cg_fd, enum bpf_attach_type type, __u32 id)
{
	__u32 ids[64], count = 64, flags = 0, i;

	if (bpf_prog_query(cg_fd, type, 0, &flags, ids, &count))
		return -errno;
	for (i = 0; i < count && i < 64; i++)
		if (ids[i] == id)
			return 1;
	return 0;
}

/* 1 if all are attached, 0 if any is missing, or -errno. */
int dh_cgroup_sendmsg_attached(const struct dh_state *st)
{
	int cg_fd, ret = 1;
	unsigned int i;
	__u32 id;

	cg_fd = open_cgroup2_root();
	if (cg_fd < 0)
		return cg_fd;
	for (i = 0; i < N_HOOKS && ret == 1; i++) {
		ret = prog_id(hook_prog_fd(st, i), &id);
		if (!ret)
			ret = attached_on(cg_fd, hooks[i].type, id);
	}
	close(cg_fd);
	return ret;
}

/* All or none: those attached come off again if one fails. */
int dh_cgroup_sendmsg_attach(const struct dh_state *st)
{
	bool added[N_HOOKS] = {};
	int cg_fd, ret = 0;
	unsigned int i;
	__u32 id;

	cg_fd = open_cgroup2_root();
	if (cg_fd < 0)
		return cg_fd;
	for (i = 0; i < N_HOOKS && ret == 0; i++) {
		int fd = hook_prog_fd(st, i);

		ret = prog_id(fd, &id);
		if (!ret)
			ret = attached_on(cg_fd, hooks[i].type, id);
		if (ret == 0) {
			if (bpf_prog_attach(fd, cg_fd, hooks[i].type, BPF_F_ALLOW_MULTI))
				ret = -errno;
			else
				added[i] = true;
		}
		if (ret == 1)
			ret = 0;
	}
	for (i = 0; ret < 0 && i < N_HOOKS; i++)
		if (added[i])
			bpf_prog_detach2(hook_prog_fd(st, i), cg_fd, hooks[i].type);
	close(cg_fd);
	return ret;
}

int dh_cgroup_sendmsg_detach(const struct dh_state *st)
{
	int cg_fd, ret = 0;
	unsigned int i;

	cg_fd = open_cgroup2_root();
	if (cg_fd < 0)
		return cg_fd;
	for (i = 0; i < N_HOOKS; i++)
		if (bpf_prog_detach2(hook_prog_fd(st, i), cg_fd, hooks[i].type) && errno != ENOENT && !ret)
			ret = -errno;
	close(cg_fd);
	return ret;
}

__u64 dh_netns_cookie(void)
{
	__u64 cookie = 0;
	socklen_t len = sizeof(cookie);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return 0;
	if (getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len))
		cookie = 0;
	close(fd);
	return cookie;
}

/*
 * A lost pin set (see detach_unrecorded) leaves its sendmsg programs on
 * the cgroup root with nothing recording them. Ours for @ifindex is the
 * dh_sendmsg4 (dh_sendmsg6, ...) whose own modes map holds @ifindex in socket
 * mode with this namespace's cookie: the program goes with the last such
 * entry, and the entry once both hooks were looked at. Another pin set's
 * program (another netns, another pin dir) is left alone.
 */
static int remove_unrecorded(int cg_fd, unsigned int hook, __u32 ifindex)
{
	__u32 ids[64], count = 64, flags = 0, i, j;
	__u64 cookie = dh_netns_cookie();
	int removed = 0;

	if (bpf_prog_query(cg_fd, hooks[hook].type, 0, &flags, ids, &count))
		count = 0;
	for (i = 0; i < count && i < 64; i++) {
		__u32 map_ids[16] = {}, key, next, *prev = NULL;
		struct bpf_prog_info info = {};
		__u32 len = sizeof(info);
		struct dh_bridge_mode mode;
		int prog_fd, modes_fd = -1;
		bool ours = false, others = false;

		prog_fd = bpf_prog_get_fd_by_id(ids[i]);
		if (prog_fd < 0)
			continue;
		info.nr_map_ids = 16;
		info.map_ids = (__u64)(unsigned long)map_ids;
		if (bpf_obj_get_info_by_fd(prog_fd, &info, &len) || strcmp(info.name, hooks[hook].name)) {
			close(prog_fd);
			continue;
		}
		for (j = 0; j < info.nr_map_ids && j < 16 && modes_fd < 0; j++) {
			struct bpf_map_info map_info = {};
			__u32 map_len = sizeof(map_info);
			int fd = bpf_map_get_fd_by_id(map_ids[j]);

			if (fd >= 0 && bpf_obj_get_info_by_fd(fd, &map_info, &map_len) == 0 &&
			    !strcmp(map_info.name, DH_MAP_MODES) && map_info.key_size == sizeof(__u32) &&
			    map_info.value_size == sizeof(mode))
				modes_fd = fd;
			else if (fd >= 0)
				close(fd);
		}
		while (modes_fd >= 0 && bpf_map_get_next_key(modes_fd, prev, &next) == 0) {
			key = next;
			prev = &key;
			if (bpf_map_lookup_elem(modes_fd, &key, &mode) || mode.mode != DH_MODE_SOCKET)
				continue;
			if (key == ifindex && mode.netns_cookie == cookie)
				ours = true;
			else
				others = true;
		}
		if (ours) {
			if (!others && bpf_prog_detach2(prog_fd, cg_fd, hooks[hook].type) == 0)
				removed++;
			/* Cleared with the last hook: the one before must find it too. */
			if (hook == N_HOOKS - 1)
				bpf_map_delete_elem(modes_fd, &ifindex);
		}
		if (modes_fd >= 0)
			close(modes_fd);
		close(prog_fd);
	}
	return removed;
}

int dh_cgroup_remove_unrecorded(__u32 ifindex)
{
	int cg_fd, removed = 0;
	unsigned int i;

	cg_fd = open_cgroup2_root();
	if (cg_fd < 0)
		return cg_fd;
	for (i = 0; i < N_HOOKS; i++)
		removed += remove_unrecorded(cg_fd, i, ifindex);
	close(cg_fd);
	return removed;
}
