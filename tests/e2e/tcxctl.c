// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Test helper for a device's tcx chains, read from the kernel itself rather
 * than from anybody's pins (bpftool 7.1 and libbpf 1.1 know no tcx).
 *   tcxctl list DEV                 "ingress NAME" / "egress NAME", in run order
 *   tcxctl attach DEV ingress|egress OBJ PROG [first|last]
 *   tcxctl detach DEV ingress|egress PROG
 * Attached without a link, so the program stays after this exits.
 */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define TCX_INGRESS 46
#define TCX_EGRESS  47
#define F_BEFORE    (1U << 3)
#define F_AFTER     (1U << 4)

struct query_attr {  /* BPF_PROG_QUERY as of 6.6 */
	__u32 target_ifindex, attach_type, query_flags, attach_flags;
	__aligned_u64 prog_ids;
	__u32 count, pad;
	__aligned_u64 prog_attach_flags, link_ids, link_attach_flags;
	__u64 revision;
};

static int usage(void)
{
	fprintf(stderr, "usage: tcxctl list DEV\n"
			"       tcxctl attach DEV ingress|egress OBJ PROG [first|last]\n"
			"       tcxctl detach DEV ingress|egress PROG\n");
	return 2;
}

/* The chain's program ids in run order; how many, or -1 (printed). */
static int query(int ifindex, __u32 type, __u32 ids[64])
{
	struct query_attr q = { .target_ifindex = ifindex, .attach_type = type,
				.prog_ids = (__u64)(unsigned long)ids, .count = 64 };

	if (syscall(__NR_bpf, BPF_PROG_QUERY, &q, sizeof(q))) {
		perror("tcxctl: query");
		return -1;
	}
	return q.count < 64 ? q.count : 64;
}

static void prog_name(__u32 id, char name[BPF_OBJ_NAME_LEN])
{
	struct bpf_prog_info info = {};
	__u32 len = sizeof(info);
	int fd = bpf_prog_get_fd_by_id(id);

	if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &len))
		snprintf(info.name, sizeof(info.name), "id-%u", id);
	memcpy(name, info.name, BPF_OBJ_NAME_LEN);
	if (fd >= 0)
		close(fd);
}

static int list(int ifindex)
{
	static const char *const dirs[] = { "ingress", "egress" };
	char name[BPF_OBJ_NAME_LEN];
	__u32 ids[64];
	int d, i, n;

	for (d = 0; d < 2; d++) {
		n = query(ifindex, d ? TCX_EGRESS : TCX_INGRESS, ids);
		if (n < 0)
			return 1;
		for (i = 0; i < n; i++) {
			prog_name(ids[i], name);
			printf("%s %s\n", dirs[d], name);
		}
	}
	return 0;
}

static int detach_by_name(int ifindex, __u32 type, const char *name)
{
	char found[BPF_OBJ_NAME_LEN];
	int removed = 0, i, n, fd;
	__u32 ids[64];

	n = query(ifindex, type, ids);
	for (i = 0; i < n; i++) {
		prog_name(ids[i], found);
		if (strcmp(found, name))
			continue;
		fd = bpf_prog_get_fd_by_id(ids[i]);
		if (fd >= 0 && !bpf_prog_detach2(fd, ifindex, type))
			removed++;
		if (fd >= 0)
			close(fd);
	}
	if (!removed) {
		fprintf(stderr, "tcxctl: no program '%s' in that chain\n", name);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct bpf_object *obj;
	struct bpf_program *prog;
	int ifindex;
	__u32 type;

	if (argc < 3)
		return usage();
	ifindex = if_nametoindex(argv[2]);
	if (!ifindex) {
		fprintf(stderr, "tcxctl: %s: no such device\n", argv[2]);
		return 1;
	}
	if (!strcmp(argv[1], "list"))
		return list(ifindex);
	if (argc < 5)
		return usage();
	type = !strcmp(argv[3], "ingress") ? TCX_INGRESS : TCX_EGRESS;
	if (!strcmp(argv[1], "detach"))
		return detach_by_name(ifindex, type, argv[4]);
	if (strcmp(argv[1], "attach") || argc < 6)
		return usage();

	obj = bpf_object__open_file(argv[4], NULL);
	if (!obj || bpf_object__load(obj)) {
		fprintf(stderr, "tcxctl: %s: cannot load\n", argv[4]);
		return 1;
	}
	prog = bpf_object__find_program_by_name(obj, argv[5]);
	if (!prog) {
		fprintf(stderr, "tcxctl: %s: no program '%s'\n", argv[4], argv[5]);
		return 1;
	}
	LIBBPF_OPTS(bpf_prog_attach_opts, opts,
		    .flags = argc > 6 && !strcmp(argv[6], "first") ? F_BEFORE : F_AFTER);
	if (bpf_prog_attach_opts(bpf_program__fd(prog), ifindex, type, &opts)) {
		perror("tcxctl: attach");
		return 1;
	}
	bpf_object__close(obj);
	return 0;
}
