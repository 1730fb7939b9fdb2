// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Test helper: prints "ingress NAME" / "egress NAME" for every program on
 * IFNAME's tcx hooks, in the caller's network namespace, read from the
 * kernel itself rather than from anybody's pins. Debian 12's bpftool and
 * libbpf predate tcx, and libbpf 1.1's bpf_attr is shorter than the one the
 * kernel writes back for a tcx query: the attr here has the kernel's size.
 */
#include <bpf/bpf.h>
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

struct query_attr {  /* bpf_attr's query member, kernel 6.6+ */
	__u32 target_ifindex;
	__u32 attach_type;
	__u32 query_flags;
	__u32 attach_flags;
	__u64 prog_ids;
	__u32 prog_cnt;
	__u32 pad;
	__u64 prog_attach_flags;
	__u64 link_ids;
	__u64 link_attach_flags;
	__u64 revision;
};

int main(int argc, char **argv)
{
	static const struct { __u32 type; const char *name; } hooks[] = { { 46, "ingress" }, { 47, "egress" } };
	unsigned int ifindex, h, i;

	if (argc != 2 || !(ifindex = if_nametoindex(argv[1]))) {
		fprintf(stderr, "usage: tcx_progs IFNAME (an existing device)\n");
		return 2;
	}
	for (h = 0; h < 2; h++) {
		__u32 ids[64];
		struct query_attr attr = { .target_ifindex = ifindex, .attach_type = hooks[h].type,
					   .prog_ids = (unsigned long)ids, .prog_cnt = 64 };

		if (syscall(__NR_bpf, BPF_PROG_QUERY, &attr, sizeof(attr))) {
			fprintf(stderr, "tcx_progs: %s %s: %s\n", argv[1], hooks[h].name, strerror(errno));
			return 1;
		}
		for (i = 0; i < attr.prog_cnt && i < 64; i++) {
			struct bpf_prog_info info = {};
			__u32 len = sizeof(info);
			int fd = bpf_prog_get_fd_by_id(ids[i]);

			if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &len))
				snprintf(info.name, sizeof(info.name), "id-%u", ids[i]);
			printf("%s %s\n", hooks[h].name, info.name);
			if (fd >= 0)
				close(fd);
		}
	}
	return 0;
}
