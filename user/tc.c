// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * clsact, for kernels without tcx (or --hook clsact): our filters on the
 * bridge's clsact qdisc, one on ingress, one on egress (NAT mode only), at
 * a fixed handle and priority (DH_TC_HANDLE, DH_TC_PRIORITY). A filter there
 * counts as ours only if its program is ours by name, so detach never
 * removes somebody else's filter, and the clsact qdisc is removed only if
 * attach created it and nothing else hangs off it.
 */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

struct direction {
	enum bpf_tc_attach_point point;
	const char *prog_name;  /* as in bpf/dockhost.bpf.c */
	__u32 parent_minor;
};

static const struct direction directions[] = {
	{ BPF_TC_INGRESS, "dh_ingress", TC_H_MIN_INGRESS },
	{ BPF_TC_EGRESS, "dh_egress", TC_H_MIN_EGRESS },
};

static void filter_opts(struct bpf_tc_opts *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->sz = sizeof(*opts);
	opts->handle = DH_TC_HANDLE;
	opts->priority = DH_TC_PRIORITY;
}

static void hook_opts(struct bpf_tc_hook *hook, int ifindex, enum bpf_tc_attach_point point)
{
	memset(hook, 0, sizeof(*hook));
	hook->sz = sizeof(*hook);
	hook->ifindex = ifindex;
	hook->attach_point = point;
}

/* DH_TC_NONE, DH_TC_OURS or DH_TC_FOREIGN for one direction. */
static enum dh_tc_presence filter_presence(int ifindex, const struct direction *dir)
{
	struct bpf_prog_info info = {};
	__u32 info_len = sizeof(info);
	struct bpf_tc_hook hook;
	struct bpf_tc_opts opts;
	int fd, err;

	hook_opts(&hook, ifindex, dir->point);
	filter_opts(&opts);
	if (bpf_tc_query(&hook, &opts))
		return DH_TC_NONE;
	fd = bpf_prog_get_fd_by_id(opts.prog_id);
	if (fd < 0)
		return DH_TC_FOREIGN;
	err = bpf_obj_get_info_by_fd(fd, &info, &info_len);
	close(fd);
	if (err || strcmp(info.name, dir->prog_name))
		return DH_TC_FOREIGN;
	return DH_TC_OURS;
}

/* Ours on ingress and, with @egress (NAT mode), on egress: DH_TC_OURS.
 * Without it, egress is none of its business (socket mode has no egress
 * program; a stray one of ours goes at the next attach). */
enum dh_tc_presence dh_clsact_presence(int ifindex, bool egress)
{
	enum dh_tc_presence in = filter_presence(ifindex, &directions[0]);
	enum dh_tc_presence out = egress ? filter_presence(ifindex, &directions[1]) : DH_TC_OURS;

	if (in == DH_TC_FOREIGN || out == DH_TC_FOREIGN)
		return DH_TC_FOREIGN;
	return in == DH_TC_OURS && out == DH_TC_OURS ? DH_TC_OURS : DH_TC_NONE;
}

bool dh_clsact_any_ours(int ifindex)
{
	return filter_presence(ifindex, &directions[0]) == DH_TC_OURS ||
	       filter_presence(ifindex, &directions[1]) == DH_TC_OURS;
}

bool dh_clsact_guard_ours(int ifindex)
{
	return filter_presence(ifindex, &directions[0]) == DH_TC_OURS;
}

static int count_cb(const struct nlmsghdr *nlh, void *data)
{
	(*(int *)data)++;
	return MNL_CB_OK;
}

/* How many filters hang off one clsact direction (any kind, anyone's). */
static int filter_count(int ifindex, __u32 parent_minor)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct tcmsg *tcm;
	int count = 0, err;

	nlh->nlmsg_type = RTM_GETTFILTER;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	tcm = mnl_nlmsg_put_extra_header(nlh, sizeof(*tcm));
	tcm->tcm_family = AF_UNSPEC;
	tcm->tcm_ifindex = ifindex;
	tcm->tcm_parent = TC_H_MAKE(TC_H_CLSACT, parent_minor);
	err = dh_rtnl_talk(nlh, count_cb, &count);
	return err < 0 ? err : count;
}

static int detach_direction(int ifindex, const struct direction *dir)
{
	struct bpf_tc_hook hook;
	struct bpf_tc_opts opts;

	if (filter_presence(ifindex, dir) != DH_TC_OURS)
		return 0;
	hook_opts(&hook, ifindex, dir->point);
	filter_opts(&opts);
	return bpf_tc_detach(&hook, &opts);
}

int dh_clsact_detach(int ifindex, bool destroy_clsact_if_empty)
{
	struct bpf_tc_hook hook;
	int err = 0, i;

	for (i = 0; i < 2; i++) {
		int ret = detach_direction(ifindex, &directions[i]);

		if (ret && !err)
			err = ret;
	}
	if (err || !destroy_clsact_if_empty)
		return err;
	for (i = 0; i < 2; i++)
		if (filter_count(ifindex, directions[i].parent_minor) != 0)
			return 0;  /* somebody else's filters, or unknown: keep */
	hook_opts(&hook, ifindex, BPF_TC_INGRESS | BPF_TC_EGRESS);
	err = bpf_tc_hook_destroy(&hook);
	return err == -ENOENT ? 0 : err;
}

static int attach_direction(int ifindex, const struct direction *dir, int prog_fd)
{
	struct bpf_tc_hook hook;
	struct bpf_tc_opts opts;

	hook_opts(&hook, ifindex, dir->point);
	filter_opts(&opts);
	opts.prog_fd = prog_fd;
	opts.flags = BPF_TC_F_REPLACE;  /* ours may be there already */
	return bpf_tc_attach(&hook, &opts);
}

/* @egress_fd -1: ingress only (socket mode). */
int dh_clsact_attach(int ifindex, int ingress_fd, int egress_fd, bool *created_clsact)
{
	const int fds[2] = { ingress_fd, egress_fd };
	int n = egress_fd < 0 ? 1 : 2;
	struct bpf_tc_hook hook;
	int err, i;

	*created_clsact = false;
	for (i = 0; i < n; i++)
		if (filter_presence(ifindex, &directions[i]) == DH_TC_FOREIGN)
			return -EBUSY;

	hook_opts(&hook, ifindex, BPF_TC_INGRESS | BPF_TC_EGRESS);
	err = bpf_tc_hook_create(&hook);
	if (err && err != -EEXIST)
		return err;
	*created_clsact = !err;
	err = 0;
	for (i = 0; i < n && !err; i++)
		err = attach_direction(ifindex, &directions[i], fds[i]);
	if (err)
		dh_clsact_detach(ifindex, *created_clsact);
	return err;
}

/* The id of the program in one direction's filter at our handle, or 0. */
static __u32 filter_prog_id(int ifindex, const struct direction *dir)
{
	struct bpf_tc_hook hook;
	struct bpf_tc_opts opts;

	hook_opts(&hook, ifindex, dir->point);
	filter_opts(&opts);
	return bpf_tc_query(&hook, &opts) ? 0 : opts.prog_id;
}

/* NAT mode's egress filter on a bridge whose ingress filter is in place
 * (so is the clsact qdisc): a conversion from socket mode. One of ours
 * from a lost pin set is replaced: it reads maps nobody writes any more. */
int dh_clsact_egress_attach(int ifindex, int egress_fd)
{
	struct bpf_prog_info info = {};
	__u32 len = sizeof(info);

	if (filter_presence(ifindex, &directions[1]) == DH_TC_FOREIGN)
		return -EBUSY;
	if (bpf_obj_get_info_by_fd(egress_fd, &info, &len) == 0 &&
	    filter_prog_id(ifindex, &directions[1]) == info.id)
		return 0;  /* the pinned one, there already */
	return attach_direction(ifindex, &directions[1], egress_fd);
}

/* Our egress filter, if there (socket mode has none). */
int dh_clsact_egress_detach(int ifindex)
{
	return detach_direction(ifindex, &directions[1]);
}
