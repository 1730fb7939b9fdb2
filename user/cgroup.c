// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Socket mode's cgroup/sendmsg4 program at the cgroup v2 root, and what
 * socket mode needs of the kernel.
 *
 * The root holds every process of the host, whatever its hierarchy: on a
 * cgroup v1 host (no cgroup2 mounted) it is mounted for the call in a
 * private directory, opened, and unmounted at once; the attachment lives
 * in the kernel, not in the mount. The program is attached without a link
 * (BPF_F_ALLOW_MULTI), like our tcx programs: it stays until detach
 * removes it, found by the id of the pinned program.
 */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
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

static int prog_id(int fd, __u32 *id)
{
	struct bpf_prog_info info = {};
	__u32 len = sizeof(info);

	if (bpf_obj_get_info_by_fd(fd, &info, &len))
		return -errno;
	*id = info.id;
	return 0;
}

static int attached_on(int cg_fd, __u32 id)
{
	__u32 ids[64], count = 64, flags = 0, i;

	if (bpf_prog_query(cg_fd, BPF_CGROUP_UDP4_SENDMSG, 0, &flags, ids, &count))
		return -errno;
	for (i = 0; i < count && i < 64; i++)
		if (ids[i] == id)
			return 1;
	return 0;
}

int dh_cgroup_sendmsg_attached(const struct dh_state *st)
{
	int cg_fd, ret;
	__u32 id;

	ret = prog_id(st->prog_sendmsg4_fd, &id);
	if (ret)
		return ret;
	cg_fd = open_cgroup2_root();
	if (cg_fd < 0)
		return cg_fd;
	ret = attached_on(cg_fd, id);
	close(cg_fd);
	return ret;
}

int dh_cgroup_sendmsg_attach(const struct dh_state *st)
{
	int cg_fd, ret;
	__u32 id;

	ret = prog_id(st->prog_sendmsg4_fd, &id);
	if (ret)
		return ret;
	cg_fd = open_cgroup2_root();
	if (cg_fd < 0)
		return cg_fd;
	ret = attached_on(cg_fd, id);
	if (ret == 0 && bpf_prog_attach(st->prog_sendmsg4_fd, cg_fd, BPF_CGROUP_UDP4_SENDMSG, BPF_F_ALLOW_MULTI))
		ret = -errno;
	close(cg_fd);
	return ret < 0 ? ret : 0;
}

int dh_cgroup_sendmsg_detach(const struct dh_state *st)
{
	int cg_fd, ret = 0;

	cg_fd = open_cgroup2_root();
	if (cg_fd < 0)
		return cg_fd;
	if (bpf_prog_detach2(st->prog_sendmsg4_fd, cg_fd, BPF_CGROUP_UDP4_SENDMSG) && errno != ENOENT)
		ret = -errno;
	close(cg_fd);
	return ret;
}

const char *dh_socket_mode_unsupported(void)
{
	if (libbpf_probe_bpf_helper(BPF_PROG_TYPE_SCHED_CLS, BPF_FUNC_sk_assign, NULL) != 1)
		return "bpf_sk_assign at tc (Linux 5.7+)";
	if (libbpf_probe_bpf_helper(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_FUNC_get_netns_cookie, NULL) != 1)
		return "bpf_get_netns_cookie in cgroup/sendmsg4 (Linux 5.7+)";
	if (dh_netns_cookie() == 0)
		return "SO_NETNS_COOKIE (Linux 5.14+)";
	return NULL;
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
 * A lost pin set (see detach_unrecorded) leaves its sendmsg4 program on
 * the cgroup root with nothing recording it. Ours for @ifindex is the
 * dh_sendmsg4 whose own modes map holds @ifindex in socket mode with this
 * namespace's cookie: that entry goes, and the program with its last one.
 * Another pin set's program (another netns, another pin dir) is left alone.
 */
int dh_cgroup_remove_unrecorded(__u32 ifindex)
{
	__u32 ids[64], count = 64, flags = 0, i, j;
	__u64 cookie = dh_netns_cookie();
	int cg_fd, removed = 0;

	cg_fd = open_cgroup2_root();
	if (cg_fd < 0)
		return cg_fd;
	if (bpf_prog_query(cg_fd, BPF_CGROUP_UDP4_SENDMSG, 0, &flags, ids, &count))
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
		if (bpf_obj_get_info_by_fd(prog_fd, &info, &len) || strcmp(info.name, "dh_sendmsg4")) {
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
			bpf_map_delete_elem(modes_fd, &ifindex);
			if (!others && bpf_prog_detach2(prog_fd, cg_fd, BPF_CGROUP_UDP4_SENDMSG) == 0)
				removed++;
		}
		if (modes_fd >= 0)
			close(modes_fd);
		close(prog_fd);
	}
	close(cg_fd);
	return removed;
}
