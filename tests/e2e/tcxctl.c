// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Test helper: puts somebody else's program into a device's tcx chain, or
 * takes programs out by name (bpftool 7.1 knows no tcx).
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
	fprintf(stderr, "usage: tcxctl attach DEV ingress|egress OBJ PROG [first|last]\n"
			"       tcxctl detach DEV ingress|egress PROG\n");
	return 2;
}

static int detach_by_name(int ifindex, __u32 type, const char *name)
{
	__u32 ids[64];
	struct query_attr q = { .target_ifindex = ifindex, .attach_type = type,
				.prog_ids = (__u64)(unsigned long)ids, .count = 64 };
	int removed = 0;
	__u32 i;

	if (syscall(__NR_bpf, BPF_PROG_QUERY, &q, sizeof(q))) {
		perror("tcxctl: query");
		return 1;
	}
	for (i = 0; i < q.count && i < 64; i++) {
		struct bpf_prog_info info = {};
		__u32 len = sizeof(info);
		int fd = bpf_prog_get_fd_by_id(ids[i]);

		if (fd < 0)
			continue;
		if (!bpf_obj_get_info_by_fd(fd, &info, &len) && !strcmp(info.name, name) &&
		    !bpf_prog_detach2(fd, ifindex, type))
			removed++;
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

	if (argc < 5)
		return usage();
	ifindex = if_nametoindex(argv[2]);
	if (!ifindex) {
		fprintf(stderr, "tcxctl: %s: no such device\n", argv[2]);
		return 1;
	}
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
