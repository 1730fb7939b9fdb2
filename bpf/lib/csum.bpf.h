/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Address and port rewrites with incremental checksum fix-ups, as Cilium's
 * bpf/lib does. bpf_l4_csum_replace() handles CHECKSUM_PARTIAL skbs (veth
 * with tx offload) correctly when told which changes touch the pseudo
 * header; BPF_F_MARK_MANGLED_0 keeps a UDP checksum of 0 ("none") as 0 and
 * turns a computed 0 into 0xffff.
 */
#ifndef DH_CSUM_BPF_H
#define DH_CSUM_BPF_H

#include "parse.bpf.h"

#define DH_TCP_CSUM_OFF offsetof(struct tcphdr, check)
#define DH_UDP_CSUM_OFF offsetof(struct udphdr, check)

static __always_inline __u32 dh_l4_csum_off(const struct dh_packet *pkt)
{
	return pkt->l4_off + (pkt->proto == IPPROTO_TCP ? DH_TCP_CSUM_OFF : DH_UDP_CSUM_OFF);
}

static __always_inline __u64 dh_l4_csum_flags(const struct dh_packet *pkt)
{
	return pkt->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
}

/* Rewrites the IPv4 address at @addr_off (DH_IP_SADDR_OFF or DH_IP_DADDR_OFF)
 * and the IP header checksum only: for packets whose L4 checksum does not
 * cover it (ICMP), or after the caller fixed the L4 checksum itself. */
static __always_inline int dh_rewrite_ip_addr(struct __sk_buff *skb, __u32 addr_off,
					      __u32 old_addr, __u32 new_addr)
{
	int err;

	err = bpf_l3_csum_replace(skb, DH_IP_CSUM_OFF, old_addr, new_addr, sizeof(new_addr));
	if (err)
		return err;
	return bpf_skb_store_bytes(skb, addr_off, &new_addr, sizeof(new_addr), 0);
}

/* Rewrites the IPv4 address at @addr_off of a TCP or UDP packet, with both
 * checksums. Packet pointers are invalid afterwards: callers re-parse if
 * they need them. */
static __always_inline int dh_rewrite_addr(struct __sk_buff *skb, const struct dh_packet *pkt,
					   __u32 addr_off, __u32 old_addr, __u32 new_addr)
{
	int err;

	err = bpf_l4_csum_replace(skb, dh_l4_csum_off(pkt), old_addr, new_addr,
				  dh_l4_csum_flags(pkt) | BPF_F_PSEUDO_HDR | sizeof(new_addr));
	if (err)
		return err;
	return dh_rewrite_ip_addr(skb, addr_off, old_addr, new_addr);
}

/* Rewrites the L4 port at @port_off from the L4 header (0: source, 2: dest). */
static __always_inline int dh_rewrite_port(struct __sk_buff *skb, const struct dh_packet *pkt,
					   __u32 port_off, __u16 old_port, __u16 new_port)
{
	int err;

	if (old_port == new_port)
		return 0;
	err = bpf_l4_csum_replace(skb, dh_l4_csum_off(pkt), old_port, new_port,
				  dh_l4_csum_flags(pkt) | sizeof(new_port));
	if (err)
		return err;
	return bpf_skb_store_bytes(skb, pkt->l4_off + port_off, &new_port, sizeof(new_port), 0);
}

#define DH_L4_SPORT_OFF 0
#define DH_L4_DPORT_OFF 2

static __always_inline __u16 dh_csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* RFC 1624 incremental update of a 16-bit checksum for one 16-bit word. */
static __always_inline __u16 dh_csum16_replace(__u16 check, __u16 old, __u16 new)
{
	__u32 sum = (__u16)~check + (__u16)~old + new;

	return dh_csum_fold(sum);
}

static __always_inline __u16 dh_csum16_replace4(__u16 check, __u32 old, __u32 new)
{
	check = dh_csum16_replace(check, old >> 16, new >> 16);
	return dh_csum16_replace(check, old & 0xffff, new & 0xffff);
}

#endif /* DH_CSUM_BPF_H */
