// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * tcx (kernel 6.6+): our programs on a bridge as two BPF links, pinned in
 * the pin directory so they outlive the CLI. Cheaper per packet than clsact
 * with cls_bpf (no qdisc, no classifier walk), nothing to collide with (no
 * handles or priorities) and nothing to clean up in the qdisc layer.
 *
 * Debian 12's libbpf 1.1 predates tcx: the attach types and flags are
 * defined here, and link state is read with the kernel's own layout.
 */
#include <bpf/bpf.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* From the kernel's uapi linux/bpf.h (6.6+). */
#define DH_BPF_TCX_INGRESS 46
#define DH_BPF_TCX_EGRESS  47
#define DH_BPF_F_BEFORE    (1U << 3)

/* The head of struct bpf_link_info with its tcx member (6.6+). */
struct dh_tcx_link_info {
	__u32 type;
	__u32 id;
	__u32 prog_id;
	union {
		struct {
			__u32 ifindex;  /* 0 once the device is gone */
			__u32 attach_type;
		} tcx;
		__u64 align;
	};
};

static const struct {
	__u32 attach_type;
	const char *pin;
} tcx_dirs[2] = {
	{ DH_BPF_TCX_INGRESS, "link_ingress" },
	{ DH_BPF_TCX_EGRESS, "link_egress" },
};

static void link_pin_path(const struct dh_state *st, int ifindex, int dir, char *path, size_t size)
{
	/* One pair of links per bridge; bpffs names may not contain '.'. */
	snprintf(path, size, "%s/%s_%d", st->pin_dir, tcx_dirs[dir].pin, ifindex);
}

/* True if the pinned link for @dir is attached to @ifindex. */
static bool link_alive(const struct dh_state *st, int ifindex, int dir)
{
	struct dh_tcx_link_info info = {};
	__u32 len = sizeof(info);
	char path[4096];
	bool alive;
	int fd;

	link_pin_path(st, ifindex, dir, path, sizeof(path));
	fd = bpf_obj_get(path);
	if (fd < 0)
		return false;
	alive = bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && info.tcx.ifindex == (__u32)ifindex;
	close(fd);
	return alive;
}

bool dh_tcx_attached(const struct dh_state *st, int ifindex)
{
	return link_alive(st, ifindex, 0) && link_alive(st, ifindex, 1);
}

int dh_tcx_detach(const struct dh_state *st, int ifindex)
{
	char path[4096];
	int dir, fd, err = 0;

	for (dir = 0; dir < 2; dir++) {
		link_pin_path(st, ifindex, dir, path, sizeof(path));
		fd = bpf_obj_get(path);
		if (fd < 0)
			continue;
		/* Detach explicitly: a link fd somebody else holds would
		 * otherwise keep the program on the bridge. */
		if (bpf_link_detach(fd) && errno != ENOLINK && !err)
			err = -errno;
		close(fd);
		if (unlink(path) && !err)
			err = -errno;
	}
	return err;
}

/* -EOPNOTSUPP when the kernel has no tcx: the caller falls back to clsact. */
int dh_tcx_attach(const struct dh_state *st, int ifindex)
{
	const int prog_fds[2] = { st->prog_ingress_fd, st->prog_egress_fd };
	char path[4096];
	int dir, fd, err = 0;

	dh_tcx_detach(st, ifindex);  /* stale links of an earlier attach */
	for (dir = 0; dir < 2 && !err; dir++) {
		/* BPF_F_BEFORE with no anchor: first in line, so the loopback
		 * guard runs before any other tcx program. */
		LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = DH_BPF_F_BEFORE);

		fd = bpf_link_create(prog_fds[dir], ifindex, tcx_dirs[dir].attach_type, &opts);
		if (fd < 0) {
			/* Kernels without tcx reject the attach type itself. */
			err = (errno == EINVAL && dir == 0) ? -EOPNOTSUPP : -errno;
			break;
		}
		link_pin_path(st, ifindex, dir, path, sizeof(path));
		if (bpf_obj_pin(fd, path))
			err = -errno;
		close(fd);  /* the pin holds the link */
	}
	if (err)
		dh_tcx_detach(st, ifindex);
	return err;
}
