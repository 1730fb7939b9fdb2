/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Per-source counters: who reached which mapped port. One `sources` entry
 * per (bridge, container address, mapped port, protocol), counted at tc
 * ingress in both modes, for the packets of a mapped port only:
 *
 * - packets, bytes: what went on to the target (as port_stats counts it);
 * - flows: a new flow's first packet: a TCP SYN, a UDP datagram that added
 *   its flow (sock_flows in socket mode, nat_state in NAT mode);
 * - refused_no_socket: a new flow's first packet with nothing at the
 *   target (no listener, no UDP socket), counted instead of the above.
 *   Socket mode knows it from the target lookup it makes anyway; NAT mode
 *   looks the target up for a new flow only, never per packet.
 * - refused_not_allowed: a new flow's first packet from a source the
 *   mapping's allow-list leaves out (counted where passed_not_allowed is).
 *
 * The cost on the hot path is one LRU lookup and atomic adds; only a
 * source's first packet (or its first after an eviction) adds an entry.
 * Included by dockhost.bpf.c after its maps, before lib/steer.bpf.h.
 */
#ifndef DH_SOURCES_BPF_H
#define DH_SOURCES_BPF_H

#ifndef DH_F_CURRENT_NETNS
#define DH_F_CURRENT_NETNS (-1L)  /* BPF_F_CURRENT_NETNS, a macro in uapi */
#endif

enum dh_source_what {
	DH_SRC_PACKET             = 1 << 0,
	DH_SRC_FLOW               = 1 << 1,
	DH_SRC_REFUSED_NO_SOCKET  = 1 << 2,
	DH_SRC_REFUSED_NOT_ALLOWED = 1 << 3,
};

/* @what: enum dh_source_what bits; @v6 a constant at each call. */
static __always_inline void dh_count_source(struct __sk_buff *skb, const struct dh_packet *pkt, bool v6,
					    __u32 what)
{
	struct dh_source_key key;
	struct dh_source_stats *stats;

	__builtin_memset(&key, 0, sizeof(key));
	key.ifindex = skb->ifindex;
	if (v6) {
		__builtin_memcpy(key.addr, pkt->saddr6, sizeof(key.addr));
		key.family = DH_AF_INET6;
	} else {
		key.addr[0] = pkt->saddr;
		key.family = DH_AF_INET;
	}
	key.port = pkt->dport;
	key.proto = pkt->proto;
	stats = bpf_map_lookup_elem(&sources, &key);
	if (!stats) {
		struct dh_source_stats zero = {};

		/* NOEXIST: a CPU racing us for the same new source keeps
		 * the entry it made, and both add to it. */
		bpf_map_update_elem(&sources, &key, &zero, BPF_NOEXIST);
		stats = bpf_map_lookup_elem(&sources, &key);
		if (!stats)
			return;
	}
	if (what & DH_SRC_PACKET) {
		__sync_fetch_and_add(&stats->packets, 1);
		__sync_fetch_and_add(&stats->bytes, skb->len);
	}
	if (what & DH_SRC_FLOW)
		__sync_fetch_and_add(&stats->flows, 1);
	if (what & DH_SRC_REFUSED_NO_SOCKET)
		__sync_fetch_and_add(&stats->refused_no_socket, 1);
	if (what & DH_SRC_REFUSED_NOT_ALLOWED)
		__sync_fetch_and_add(&stats->refused_not_allowed, 1);
}

/* NAT mode: is anything at @target for the rewritten packet (IPv4 only:
 * NAT mode redirects no IPv6)? The kernel's own lookup after the rewrite
 * finds the same socket, or answers with a RST or port unreachable. */
static __always_inline bool dh_nat_target_open(struct __sk_buff *skb, const struct dh_packet *pkt,
					       const struct dh_port_target *target)
{
	struct bpf_sock_tuple tuple;
	struct bpf_sock *sk;

	__builtin_memset(&tuple, 0, sizeof(tuple));
	tuple.ipv4.saddr = pkt->saddr;
	tuple.ipv4.daddr = target->addr;
	tuple.ipv4.sport = pkt->sport;
	tuple.ipv4.dport = target->port;
	if (pkt->proto == IPPROTO_TCP)
		sk = bpf_sk_lookup_tcp(skb, &tuple, sizeof(tuple.ipv4), DH_F_CURRENT_NETNS, 0);
	else
		sk = bpf_sk_lookup_udp(skb, &tuple, sizeof(tuple.ipv4), DH_F_CURRENT_NETNS, 0);
	if (!sk)
		return false;
	bpf_sk_release(sk);
	return true;
}

/* NAT mode, a packet about to be redirected; @created: dh_remember_flow
 * added or replaced its flow's entry. A TCP segment other than a SYN that
 * re-created an evicted entry is no new flow. */
static __always_inline void dh_count_source_nat(struct __sk_buff *skb, const struct dh_packet *pkt,
						const struct dh_port_target *target, bool created)
{
	if (!created || (pkt->proto == IPPROTO_TCP && !pkt->tcp_syn)) {
		dh_count_source(skb, pkt, false, DH_SRC_PACKET);
		return;
	}
	if (dh_nat_target_open(skb, pkt, target))
		dh_count_source(skb, pkt, false, DH_SRC_PACKET | DH_SRC_FLOW);
	else
		dh_count_source(skb, pkt, false, DH_SRC_REFUSED_NO_SOCKET);
}

#endif /* DH_SOURCES_BPF_H */
