/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Packet parsing for the tc programs: Ethernet, VLAN tag stacks, IPv4 and
 * IPv6 (its fixed header: a packet with extension headers is not ours to
 * steer), then TCP/UDP ports. */
#ifndef DH_PARSE_BPF_H
#define DH_PARSE_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* libbpf 1.1's offsetof() is the null-pointer idiom; inside a ?: clang 14
 * compiles it into a load from address 16. The builtin is a constant. */
#undef offsetof
#define offsetof(type, member) __builtin_offsetof(type, member)

#define ETH_HLEN     14
#define ETH_P_IP     0x0800
#define ETH_P_IPV6   0x86dd
#define ETH_P_8021Q  0x8100
#define ETH_P_8021AD 0x88a8
#define VLAN_VID_MASK 0x0fff
#define IP_MF        0x2000
#define IP_OFFSET    0x1fff
#define IPV4_MIN_HLEN 20
#define IPV4_MAX_HLEN 60
#define IPV6_HLEN    40
#define NEXTHDR_FRAGMENT 44

/*
 * In-frame VLAN tags walked before the network header. After tc, the
 * kernel strips every VID-0 tag (__netif_receive_skb_core, check_vlan_id)
 * and hands what is inside to ip_rcv on the bridge itself: a guard that
 * stopped at the first tag could be walked past with two. A frame with
 * more tags than this is dropped, since what it carries is unproven.
 */
#define DH_MAX_VLAN_TAGS 4

/* ICMP errors, which quote the packet that caused them (macros, so not in vmlinux.h). */
#define ICMP_DEST_UNREACH  3
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12

/* What the network header turned out to be. */
enum dh_l3 {
	DH_L3_OTHER,      /* neither IPv4 nor IPv6: not for ip_rcv, not ours */
	DH_L3_IPV4,
	DH_L3_IPV6,
	DH_L3_MALFORMED,  /* claims to be IP (or a tag) but cannot be read */
	DH_L3_TOO_DEEP,   /* more VLAN tags than DH_MAX_VLAN_TAGS */
};

/* What the datapath needs of a packet; offsets are from skb->data. */
struct dh_packet {
	__u32 l3_off;
	__u32 l4_off;
	__u32 saddr;  /* IPv4, network order */
	__u32 daddr;
	__u32 saddr6[4];  /* IPv6, network order */
	__u32 daddr6[4];
	__u16 sport;  /* network order, valid when dh_parse_ports() succeeded */
	__u16 dport;
	__u8 proto;
	__u8 vlan_tags;  /* in the frame, not counting an offloaded outer tag */
	bool fragment;
	bool later_fragment;  /* offset above 0: no L4 header */
	bool last_fragment;   /* offset above 0, no more fragments */
	__u16 ip_id;
	bool ip_options;
	bool tcp_syn;  /* a TCP SYN without ACK: a new connection */
	__u8 tcp_flags;
};

#define DH_TCP_FLAGS_OFF 13
#define DH_TCP_FIN 0x01
#define DH_TCP_SYN 0x02
#define DH_TCP_RST 0x04
#define DH_TCP_ACK 0x10

/* Offsets of the fields we rewrite, for bpf_skb_store_bytes(). Only
 * untagged frames are rewritten, so the IPv4 header is right after
 * Ethernet (see dh_ingress). */
#define DH_IP_SADDR_OFF (ETH_HLEN + offsetof(struct iphdr, saddr))
#define DH_IP_DADDR_OFF (ETH_HLEN + offsetof(struct iphdr, daddr))
#define DH_IP_CSUM_OFF  (ETH_HLEN + offsetof(struct iphdr, check))

/*
 * skb->data and skb->data_end read with one load each, right here. Plain
 * field reads let clang 14 hoist `skb + offset` into a register and load
 * through it later, which the verifier rejects ("dereference of modified
 * ctx ptr").
 */
#define DH_CTX_LOAD(skb, field)                                              \
	({                                                                   \
		void *__v;                                                   \
		asm volatile("%0 = *(u32 *)(%1 + %2)"                        \
			     : "=r"(__v)                                     \
			     : "r"(skb), "i"(offsetof(struct __sk_buff, field))); \
		__v;                                                         \
	})
#define dh_data(skb)     DH_CTX_LOAD(skb, data)
#define dh_data_end(skb) DH_CTX_LOAD(skb, data_end)

static __always_inline bool dh_is_loopback(__u32 addr)
{
	return (addr & bpf_htonl(0xff000000)) == bpf_htonl(0x7f000000);
}

static __always_inline bool dh_is_vlan(__u16 proto_be)
{
	return proto_be == bpf_htons(ETH_P_8021Q) || proto_be == bpf_htons(ETH_P_8021AD);
}

/*
 * Makes the first @len bytes linear and readable. Headers are almost always
 * in the linear area already; when not, pulling them is cheaper than the
 * per-byte bpf_skb_load_bytes() path. Returns false if the packet is shorter.
 */
static __always_inline bool dh_ensure_linear(struct __sk_buff *skb, __u32 len)
{
	if (dh_data(skb) + len <= dh_data_end(skb))
		return true;
	if (len > skb->len)
		return false;
	return bpf_skb_pull_data(skb, len) == 0 &&
	       dh_data(skb) + len <= dh_data_end(skb);
}

/* The IPv4 header at pkt->l3_off. False for anything ip_rcv would drop
 * as malformed too (short, not version 4, header length under 20). */
static __always_inline bool dh_parse_ipv4(struct __sk_buff *skb, struct dh_packet *pkt)
{
	struct iphdr *ip;
	__u32 ihl_bytes, off = pkt->l3_off;

	/* At most DH_MAX_VLAN_TAGS tags: a bound the verifier can follow. */
	if (off > ETH_HLEN + DH_MAX_VLAN_TAGS * sizeof(struct vlan_hdr))
		return false;
	if (!dh_ensure_linear(skb, off + IPV4_MIN_HLEN))
		return false;
	ip = dh_data(skb) + off;
	if ((void *)(ip + 1) > dh_data_end(skb))
		return false;
	if (ip->version != 4)
		return false;
	ihl_bytes = ip->ihl * 4;
	if (ihl_bytes < IPV4_MIN_HLEN)
		return false;

	pkt->l4_off = off + ihl_bytes;
	pkt->saddr = ip->saddr;
	pkt->daddr = ip->daddr;
	pkt->proto = ip->protocol;
	pkt->fragment = (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)) != 0;
	pkt->later_fragment = (ip->frag_off & bpf_htons(IP_OFFSET)) != 0;
	pkt->last_fragment = pkt->later_fragment && !(ip->frag_off & bpf_htons(IP_MF));
	pkt->ip_id = ip->id;
	pkt->ip_options = ihl_bytes > IPV4_MIN_HLEN;
	return true;
}

/* The IPv6 fixed header at pkt->l3_off: addresses and next header. The
 * version is not checked, as before: ipv6_rcv drops a wrong one, and the
 * guard looks at the addresses whatever it says. A fragment header makes
 * the packet a fragment (never steered); any other extension header is
 * left in proto, which is then neither TCP nor UDP: never steered either. */
static __always_inline bool dh_parse_ipv6(struct __sk_buff *skb, struct dh_packet *pkt)
{
	struct ipv6hdr *ip6;
	__u32 off = pkt->l3_off;

	if (off > ETH_HLEN + DH_MAX_VLAN_TAGS * sizeof(struct vlan_hdr))
		return false;
	if (!dh_ensure_linear(skb, off + IPV6_HLEN))
		return false;
	ip6 = dh_data(skb) + off;
	if ((void *)(ip6 + 1) > dh_data_end(skb))
		return false;
	__builtin_memcpy(pkt->saddr6, &ip6->saddr, sizeof(pkt->saddr6));
	__builtin_memcpy(pkt->daddr6, &ip6->daddr, sizeof(pkt->daddr6));
	pkt->proto = ip6->nexthdr;
	pkt->fragment = ip6->nexthdr == NEXTHDR_FRAGMENT;
	pkt->l4_off = off + IPV6_HLEN;
	return true;
}

/*
 * Walks the frame as the kernel will after tc: skb->protocol (the
 * ethertype behind an offloaded outer tag), then each in-frame 802.1Q or
 * 802.1ad tag, to the network header, and fills pkt from it.
 */
static __always_inline enum dh_l3 dh_parse(struct __sk_buff *skb, struct dh_packet *pkt)
{
	__u16 proto = skb->protocol;
	struct vlan_hdr tag;
	__u32 off = ETH_HLEN;
	int i;

	__builtin_memset(pkt, 0, sizeof(*pkt));
	for (i = 0; i < DH_MAX_VLAN_TAGS && dh_is_vlan(proto); i++) {
		if (bpf_skb_load_bytes(skb, off, &tag, sizeof(tag)))
			return DH_L3_MALFORMED;
		proto = tag.h_vlan_encapsulated_proto;
		off += sizeof(tag);
	}
	if (dh_is_vlan(proto))
		return DH_L3_TOO_DEEP;
	pkt->vlan_tags = i;
	pkt->l3_off = off;
	if (proto == bpf_htons(ETH_P_IP))
		return dh_parse_ipv4(skb, pkt) ? DH_L3_IPV4 : DH_L3_MALFORMED;
	if (proto == bpf_htons(ETH_P_IPV6))
		return dh_parse_ipv6(skb, pkt) ? DH_L3_IPV6 : DH_L3_MALFORMED;
	return DH_L3_OTHER;
}

/* TCP or UDP ports, after dh_parse() found IPv4 or IPv6. Requires the whole L4 header
 * (checksum included) so a later rewrite can never stop half-way. A first
 * fragment has one (callers that must not redirect fragments check
 * pkt->fragment first); a later fragment has none. */
static __always_inline bool dh_parse_ports(struct __sk_buff *skb, struct dh_packet *pkt)
{
	__u32 l4_len, off = pkt->l4_off;
	__u16 *ports;

	if (pkt->proto == IPPROTO_TCP)
		l4_len = sizeof(struct tcphdr);
	else if (pkt->proto == IPPROTO_UDP)
		l4_len = sizeof(struct udphdr);
	else
		return false;
	if (pkt->later_fragment)
		return false;

	/* Tags and IPv4 options make the offset variable: bound it for the verifier. */
	if (off > ETH_HLEN + DH_MAX_VLAN_TAGS * sizeof(struct vlan_hdr) + IPV4_MAX_HLEN)
		return false;
	if (!dh_ensure_linear(skb, off + l4_len))
		return false;
	ports = dh_data(skb) + off;
	/* The second check is the one the verifier needs for ports[0..1]. */
	if ((void *)ports + l4_len > dh_data_end(skb) ||
	    (void *)(ports + 2) > dh_data_end(skb))
		return false;
	pkt->sport = ports[0];
	pkt->dport = ports[1];
	if (pkt->proto == IPPROTO_TCP) {
		__u8 *flags = (__u8 *)ports + DH_TCP_FLAGS_OFF;

		if ((void *)(flags + 1) > dh_data_end(skb))
			return false;
		pkt->tcp_flags = *flags;
		pkt->tcp_syn = (*flags & (DH_TCP_SYN | DH_TCP_ACK)) == DH_TCP_SYN;
	}
	return true;
}

#endif /* DH_PARSE_BPF_H */
