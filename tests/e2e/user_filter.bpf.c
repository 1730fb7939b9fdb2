// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Somebody else's tc programs, for tests that check we leave them alone
 * and let them see traffic. (This kernel has no u32 or matchall
 * classifier to stand in for them.) */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define TC_ACT_UNSPEC (-1)
#define TC_ACT_SHOT   2
#define USER_DROP_PORT 7777

SEC("tc")
int user_filter(struct __sk_buff *skb)
{
	return TC_ACT_UNSPEC; /* carry on with the next filter */
}

/* Drops UDP to port 7777: a test sees that this program ran by a datagram
 * that does not arrive. Plain Ethernet + IPv4 without options only. */
SEC("classifier")
int user_drop_7777(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);

	if ((void *)(udp + 1) > end || eth->h_proto != bpf_htons(0x0800) || ip->ihl != 5 ||
	    ip->protocol != IPPROTO_UDP)
		return TC_ACT_UNSPEC;
	return udp->dest == bpf_htons(USER_DROP_PORT) ? TC_ACT_SHOT : TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
