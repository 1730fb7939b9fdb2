// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * tcx (kernel 6.6+): our programs in the bridge's tcx chains, first in
 * line. Cheaper per packet than clsact with cls_bpf (no qdisc, no
 * classifier walk), and nothing to collide with (no handles or priorities).
 *
 * Attached with BPF_PROG_ATTACH, not as BPF links: a program attached so
 * stays on the device until detached or the device goes, like a clsact
 * filter. A link lives only as long as its pin, and a pin only as long as
 * its bpffs: a bpffs private to one process (`ip netns exec` mounts one)
 * took the guard with it when the process ended, leaving route_localnet=1
 * on a bridge with nothing guarding it. Programs are ours by name, so
 * detach also finds those of a pin set that was lost.
 *
 * Debian 12's libbpf 1.1 predates tcx: the attach types and flags are
 * defined here, and the chain is queried with the kernel's own layout.
 */
#include <bpf/bpf.h>
#include <errno.h>
#include <linux/bpf.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cli.h"

/* From the kernel's uapi linux/bpf.h (6.6+). */
#define DH_BPF_TCX_INGRESS 46
#define DH_BPF_TCX_EGRESS  47
#define DH_BPF_F_BEFORE    (1U << 3)

/* BPF_PROG_QUERY's part of union bpf_attr as of 6.6. libbpf 1.1's
 * bpf_prog_query() would pass a shorter attr without link_ids/revision. */
struct dh_query_attr {
	__u32 target_ifindex;
	__u32 attach_type;
	__u32 query_flags;
	__u32 attach_flags;
	__aligned_u64 prog_ids;
	__u32 count;
	__u32 pad;
	__aligned_u64 prog_attach_flags;
	__aligned_u64 link_ids;
	__aligned_u64 link_attach_flags;
	__u64 revision;
};

static const struct {
	__u32 attach_type;
	const char *prog_name;  /* as in bpf/dockhost.bpf.c */
} tcx_dirs[2] = {
	{ DH_BPF_TCX_INGRESS, "dh_ingress" },
	{ DH_BPF_TCX_EGRESS, "dh_egress" },
};

/* The program ids in one of @ifindex's tcx chains, in run order. Returns
 * how many (at most @max), 0 for an empty chain, or -errno (-EINVAL:
 * a kernel without tcx). */
static int query_chain(int ifindex, __u32 attach_type, __u32 *ids, __u32 max)
{
	struct dh_query_attr attr = {
		.target_ifindex = ifindex,
		.attach_type = attach_type,
		.prog_ids = (__u64)(unsigned long)ids,
		.count = max,
	};

	if (syscall(__NR_bpf, BPF_PROG_QUERY, &attr, sizeof(attr)) && errno != ENOSPC)
		return -errno;
	return attr.count < max ? attr.count : max;
}

static bool prog_named(__u32 id, const char *name)
{
	struct bpf_prog_info info = {};
	__u32 len = sizeof(info);
	int fd = bpf_prog_get_fd_by_id(id);
	bool match;

	if (fd < 0)
		return false;
	match = bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && !strcmp(info.name, name);
	close(fd);
	return match;
}

static __u32 prog_id(int prog_fd)
{
	struct bpf_prog_info info = {};
	__u32 len = sizeof(info);

	return bpf_obj_get_info_by_fd(prog_fd, &info, &len) ? 0 : info.id;
}

#define DH_TCX_MAX_PROGS 64  /* the kernel's own limit per chain */

/* True if @prog_fd's program is in the chain. */
static bool in_chain(int ifindex, int dir, int prog_fd)
{
	__u32 ids[DH_TCX_MAX_PROGS], id = prog_id(prog_fd);
	int n = query_chain(ifindex, tcx_dirs[dir].attach_type, ids, DH_TCX_MAX_PROGS), i;

	for (i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

/* Our pinned ingress program in the chain, and (@egress) the egress one. */
bool dh_tcx_attached(const struct dh_state *st, int ifindex, bool egress)
{
	return in_chain(ifindex, 0, st->prog_ingress_fd) && (!egress || in_chain(ifindex, 1, st->prog_egress_fd));
}

/* The ids of our programs (by name) in one chain of @ifindex; how many,
 * or -errno (-EINVAL: no tcx on this kernel). */
static int ours_in_chain(int ifindex, int dir, __u32 *ids)
{
	int n = query_chain(ifindex, tcx_dirs[dir].attach_type, ids, DH_TCX_MAX_PROGS), i, ours = 0;

	for (i = 0; i < n; i++)
		if (prog_named(ids[i], tcx_dirs[dir].prog_name))
			ids[ours++] = ids[i];
	return n < 0 ? n : ours;
}

int dh_tcx_count_ours(int ifindex)
{
	__u32 ids[DH_TCX_MAX_PROGS];
	int dir, n, count = 0;

	for (dir = 0; dir < 2; dir++) {
		n = ours_in_chain(ifindex, dir, ids);
		if (n < 0)
			return n;
		count += n;
	}
	return count;
}

/* True if an ingress program of ours (by name) is in the chain: a guard. */
bool dh_tcx_guard_present(int ifindex)
{
	__u32 ids[DH_TCX_MAX_PROGS];

	return ours_in_chain(ifindex, 0, ids) > 0;
}

/* Removes every program of ours (by name) from one chain: the pinned one
 * and any left by a lost pin set. -EINVAL: no tcx on this kernel. */
static int detach_chain(int ifindex, int dir)
{
	__u32 ids[DH_TCX_MAX_PROGS];
	int i, n, fd, err = 0;

	n = ours_in_chain(ifindex, dir, ids);
	if (n < 0)
		return n;
	for (i = 0; i < n; i++) {
		fd = bpf_prog_get_fd_by_id(ids[i]);
		if ((fd < 0 || bpf_prog_detach2(fd, ifindex, tcx_dirs[dir].attach_type)) && errno != ENOENT &&
		    !err)
			err = -errno;
		if (fd >= 0)
			close(fd);
	}
	return err;
}

/* Removes every program of ours (by name) from both chains. */
int dh_tcx_detach(int ifindex)
{
	int err = detach_chain(ifindex, 0), egress_err = detach_chain(ifindex, 1);

	return err ? err : egress_err;
}

/* BPF_F_BEFORE with no anchor: first in line, so the loopback guard runs
 * before any other tcx program. */
static int attach_first(int prog_fd, int ifindex, int dir)
{
	LIBBPF_OPTS(bpf_prog_attach_opts, opts, .flags = DH_BPF_F_BEFORE);

	return bpf_prog_attach_opts(prog_fd, ifindex, tcx_dirs[dir].attach_type, &opts) ? -errno : 0;
}

/* -EOPNOTSUPP when the kernel has no tcx: the caller falls back to clsact.
 * The egress program only with @egress (NAT mode: see dh_hook_attach). */
int dh_tcx_attach(const struct dh_state *st, int ifindex, bool egress)
{
	const int prog_fds[2] = { st->prog_ingress_fd, st->prog_egress_fd };
	int dir, err;

	/* Earlier programs of ours (a lost pin set, an interrupted attach):
	 * one guard per chain, and it is this one. */
	err = dh_tcx_detach(ifindex);
	if (err)
		return err == -EINVAL ? -EOPNOTSUPP : err;
	dh_test_kill_point("tcx-old-removed");  /* no guard of ours until the next one */
	for (dir = 0; dir < (egress ? 2 : 1); dir++) {
		err = attach_first(prog_fds[dir], ifindex, dir);
		if (err) {
			/* Kernels without tcx reject the attach type itself. */
			if (err == -EINVAL && dir == 0)
				err = -EOPNOTSUPP;
			dh_tcx_detach(ifindex);
			return err;
		}
	}
	return 0;
}

/* NAT mode's egress program on a bridge whose guard is in place (a
 * conversion from socket mode): ours, the pinned one, first in the egress
 * chain. Any other of ours there (a lost pin set's) goes first: it reads
 * maps nobody writes any more. */
int dh_tcx_egress_attach(const struct dh_state *st, int ifindex)
{
	int err;

	if (in_chain(ifindex, 1, st->prog_egress_fd))
		return 0;
	err = detach_chain(ifindex, 1);
	return err ? err : attach_first(st->prog_egress_fd, ifindex, 1);
}

/* Every egress program of ours, pinned or not (socket mode has none). */
int dh_tcx_egress_detach(int ifindex)
{
	return detach_chain(ifindex, 1);
}

/* How many programs run before our guard in @ifindex's tcx ingress chain
 * (with clsact, every tcx program does); 0 if our guard is not in the
 * chain at all (status says MISSING for that). @first_foreign gets the
 * first one's id. -errno if the chain cannot be read. */
int dh_tcx_before_guard(int ifindex, bool guard_in_tcx, __u32 *first_foreign)
{
	__u32 ids[DH_TCX_MAX_PROGS];
	int n = query_chain(ifindex, DH_BPF_TCX_INGRESS, ids, DH_TCX_MAX_PROGS), i;

	if (n < 0)
		return n == -EINVAL ? 0 : n;  /* no tcx: nothing runs before clsact */
	for (i = 0; i < n; i++) {
		if (guard_in_tcx && prog_named(ids[i], tcx_dirs[0].prog_name))
			break;
		if (i == 0)
			*first_foreign = ids[0];
	}
	return guard_in_tcx && i == n ? 0 : i;
}
