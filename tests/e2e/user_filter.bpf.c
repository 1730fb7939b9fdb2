// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Somebody else's tc filter, for tests that check we leave it alone.
 * (This kernel has no u32 or matchall classifier to stand in for it.) */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

SEC("tc")
int user_filter(struct __sk_buff *skb)
{
	return -1; /* TC_ACT_UNSPEC: carry on with the next filter */
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
