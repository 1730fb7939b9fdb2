// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Socket mode's hooks off the bridge: dh_sk_lookup on the caller's network
 * namespace, which delivers (see bpf/lib/steer.bpf.h), and the sendmsg
 * programs at the cgroup v2 root (cgroup.c), which source UDP replies.
 * They go on with the first socket-mode bridge and off with the last:
 * "the socket hooks" below.
 *
 * sk_lookup attaches only through a BPF link, which lives as long as its
 * pin: a lost pin set takes it along, and socket mode then delivers
 * nothing (the host is closed, not open: route_localnet was never set).
 */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static void link_pin_path(const struct dh_state *st, char *path, size_t size)
{
	snprintf(path, size, "%s/%s", st->pin_dir, DH_PIN_LINK_SK_LOOKUP);
}

/* 1 if the pinned link holds our program on the caller's netns, 0 if not
 * (no pin, or a link on another netns or program), or -errno. */
static int sk_lookup_attached(const struct dh_state *st)
{
	struct bpf_prog_info prog = {};
	struct bpf_link_info info = {};
	__u32 len = sizeof(info), prog_len = sizeof(prog);
	char path[4096];
	struct stat ns;
	int fd, ret = 0;

	if (stat("/proc/self/ns/net", &ns))
		return -errno;
	if (bpf_obj_get_info_by_fd(st->prog_sk_lookup_fd, &prog, &prog_len))
		return -errno;
	link_pin_path(st, path, sizeof(path));
	fd = bpf_obj_get(path);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (bpf_obj_get_info_by_fd(fd, &info, &len))
		ret = -errno;
	else
		ret = info.type == BPF_LINK_TYPE_NETNS && info.netns.netns_ino == ns.st_ino &&
		      info.netns.attach_type == BPF_SK_LOOKUP && info.prog_id == prog.id;
	close(fd);
	return ret;
}

/* Unpins the link and detaches it, so a stray fd cannot keep it alive. */
static int sk_lookup_detach(const struct dh_state *st)
{
	char path[4096];
	int fd, err = 0;

	link_pin_path(st, path, sizeof(path));
	fd = bpf_obj_get(path);
	if (fd >= 0) {
		if (bpf_link_detach(fd) && errno != ENOLINK)
			err = -errno;
		close(fd);
	}
	if (unlink(path) && errno != ENOENT && !err)
		err = -errno;
	return err;
}

/* 1 if it made the link, 0 if it was there, or -errno. */
static int sk_lookup_attach(const struct dh_state *st)
{
	char path[4096];
	int ret, ns_fd, link_fd;

	ret = sk_lookup_attached(st);
	if (ret)
		return ret < 0 ? ret : 0;
	/* A link on another program (a stale pin) or netns goes first. */
	ret = sk_lookup_detach(st);
	if (ret)
		return ret;
	ns_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (ns_fd < 0)
		return -errno;
	link_fd = bpf_link_create(st->prog_sk_lookup_fd, ns_fd, BPF_SK_LOOKUP, NULL);
	ret = link_fd < 0 ? -errno : 0;
	close(ns_fd);
	if (ret)
		return ret;
	link_pin_path(st, path, sizeof(path));
	if (bpf_obj_pin(link_fd, path))
		ret = -errno;
	close(link_fd);  /* without a pin, this ends the link */
	return ret ? ret : 1;
}

/* The targets map holds the servers' sockets (a sockhash changes how the
 * kernel handles a member): emptied when no bridge needs it. */
static void targets_clear(const struct dh_state *st)
{
	struct dh_target_key key;

	while (bpf_map_get_next_key(st->targets_fd, NULL, &key) == 0)
		if (bpf_map_delete_elem(st->targets_fd, &key))
			break;
}

int dh_socket_hooks_attach(const struct dh_state *st, const char **failed)
{
	int made, err;

	*failed = "sk_lookup on this network namespace";
	made = sk_lookup_attach(st);
	if (made < 0)
		return made;
	*failed = "cgroup/sendmsg4, sendmsg6, connect4 and connect6 at the cgroup v2 root";
	err = dh_cgroup_sendmsg_attach(st);
	if (err && made)
		sk_lookup_detach(st);
	return err;
}

int dh_socket_hooks_detach(const struct dh_state *st)
{
	int err = sk_lookup_detach(st), err2 = dh_cgroup_sendmsg_detach(st);

	targets_clear(st);
	return err ? err : err2;
}

int dh_socket_delivery_attached(const struct dh_state *st)
{
	return sk_lookup_attached(st);
}

const char *dh_socket_mode_unsupported(void)
{
	if (libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SK_LOOKUP, NULL) != 1)
		return "sk_lookup programs (Linux 5.9+)";
	if (libbpf_probe_bpf_helper(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_FUNC_get_netns_cookie, NULL) != 1)
		return "bpf_get_netns_cookie in cgroup/sendmsg4/6 (Linux 5.7+)";
	if (dh_netns_cookie() == 0)
		return "SO_NETNS_COOKIE (Linux 5.14+)";
	return NULL;
}
