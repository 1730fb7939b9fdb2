/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Socket mode. A packet for a mapped port on a gateway goes up the stack
 * untouched: its destination stays the gateway's address, which the kernel
 * delivers locally like any packet to the bridge's address, so
 * route_localnet stays 0 and the kernel's martian check stays the barrier
 * for everything that is not ours. The stack's own socket lookup then
 * finds it a socket: a TCP flow's established (request, timewait) socket
 * by its real tuple, as for any flow, since that socket's local address
 * and port are the gateway's; anything else goes to the listener lookup,
 * where dh_sk_lookup (an sk_lookup program on the bridge's netns) hands it
 * the target's socket. No target socket: the lookup goes on as if we were
 * not there, and the kernel answers from the gateway (RST, port
 * unreachable) as for any closed port. TCP replies need nothing; a UDP
 * socket bound to loopback gets its reply source from dh_sendmsg4/6
 * (sock_flows).
 *
 * Why not bpf_sk_assign() at tc, which was the first design: a socket
 * assigned there rides the skb through netfilter, and in a netns with a
 * NAT chain (every Docker host: MASQUERADE) nf_nat_ipv4_local_in() orphans
 * it unless the socket's remote port is the flow's. A listener's, or an
 * unconnected UDP socket's, is 0: every connection was refused. sk_lookup
 * runs after netfilter, inside the lookup itself.
 *
 * sk_lookup can take a socket only from a sockmap or sockhash, and cannot
 * look one up by address; tc can do both. So tc puts the target's socket
 * in `targets` when a new flow's first packet (a TCP SYN, any UDP
 * datagram) finds it missing there. A socket leaves the map when it
 * closes, and the next such packet puts its successor in.
 *
 * Included by dockhost.bpf.c after its maps and counter macros.
 */
#ifndef DH_STEER_BPF_H
#define DH_STEER_BPF_H

#define DH_F_CURRENT_NETNS (-1L)  /* BPF_F_CURRENT_NETNS, a macro in uapi */
#define DH_SOCK_STREAM 1
#define DH_SOCK_DGRAM  2

/* The bridge's mode, and in *@per_source whether it counts per source
 * (attach --per-source): both from the one lookup. */
static __always_inline __u32 dh_bridge_mode_of(__u32 ifindex, bool *per_source)
{
	struct dh_bridge_mode *mode = bpf_map_lookup_elem(&modes, &ifindex);

	*per_source = !mode || !(mode->flags & DH_MODE_NO_SOURCES);
	return mode ? mode->mode : DH_MODE_NAT;
}

/* The mode alone, where per-source counting does not matter. */
static __always_inline __u32 dh_bridge_mode(__u32 ifindex)
{
	bool per_source;

	return dh_bridge_mode_of(ifindex, &per_source);
}

static __always_inline bool dh_same_gateway(const __u32 a[4], const __u32 b[4])
{
	return !((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]));
}

/*
 * The gateway a UDP flow's container used, for its replies (dh_sendmsg4/6).
 * One lookup per datagram; an update only when the flow is new, moved, or
 * `seen` changes unit. As in NAT mode, a live flow keeps its first gateway
 * (a reply cannot say which one it answers, and a neighbour spoofing the
 * flow's source must not move its replies): false for a datagram naming
 * another one, which is dropped. *@created says whether this datagram
 * started a flow (a new entry, or one that replaced an idle one).
 */
static __always_inline bool dh_sock_flow_note(struct __sk_buff *skb, const struct dh_packet *pkt,
					      struct bpf_sock *sk, bool v6, bool *created)
{
	__u32 now = bpf_ktime_get_coarse_ns() >> DH_NAT_SEEN_SHIFT;
	struct dh_sock_flow flow = { .ifindex = skb->ifindex, .seen = now };
	struct dh_sock_flow_key key;
	struct dh_sock_flow *known;

	__builtin_memset(&key, 0, sizeof(key));
	if (v6) {
		key.family = DH_AF_INET6;
		__builtin_memcpy(key.container_addr, pkt->saddr6, sizeof(key.container_addr));
		/* One word at a time: bpf_sock takes no wider loads. */
		key.sock_addr[0] = sk->src_ip6[0];
		key.sock_addr[1] = sk->src_ip6[1];
		key.sock_addr[2] = sk->src_ip6[2];
		key.sock_addr[3] = sk->src_ip6[3];
		__builtin_memcpy(flow.gateway_addr, pkt->daddr6, sizeof(flow.gateway_addr));
	} else {
		key.family = DH_AF_INET;
		key.container_addr[0] = pkt->saddr;
		key.sock_addr[0] = sk->src_ip4;
		flow.gateway_addr[0] = pkt->daddr;
	}
	key.container_port = pkt->sport;
	key.sock_port = bpf_htons(sk->src_port);
	key.proto = IPPROTO_UDP;
	known = bpf_map_lookup_elem(&sock_flows, &key);
	if (known && dh_same_gateway(known->gateway_addr, flow.gateway_addr) && known->ifindex == flow.ifindex) {
		if (known->seen != now)
			known->seen = now;
		return true;
	}
	if (known && known->ifindex == flow.ifindex && now - known->seen <= DH_NAT_UDP_IDLE)
		return false;
	bpf_map_update_elem(&sock_flows, &key, &flow, BPF_ANY);
	*created = true;
	return true;
}

/* @addr: one word for IPv4, four for IPv6. */
static __always_inline void dh_target_key(struct dh_target_key *key, __u8 proto, const __u32 *addr,
					  __u16 port, bool v6)
{
	__builtin_memset(key, 0, sizeof(*key));
	if (v6) {
		__builtin_memcpy(key->addr, addr, sizeof(key->addr));
		key->family = DH_AF_INET6;
	} else {
		key->addr[0] = addr[0];
		key->family = DH_AF_INET;
	}
	key->port = port;
	key->proto = proto;
}

/*
 * The socket at the target, from `targets`, else looked up there and put
 * in: a TCP listener, or a UDP socket. Looked up by the target's address
 * only, never by the packet's own destination, which would find a wildcard
 * socket on the gateway port and bypass the mapping. NULL if there is
 * none; the caller releases what it gets.
 */
static __always_inline struct bpf_sock *dh_target_socket(struct __sk_buff *skb, const struct dh_packet *pkt,
							 const struct dh_port_target *target, bool v6)
{
	__u32 size = v6 ? sizeof(struct bpf_sock_tuple) : sizeof(((struct bpf_sock_tuple *)0)->ipv4);
	const __u32 *addr = v6 ? target->addr6 : &target->addr;
	struct bpf_sock_tuple tuple;
	struct dh_target_key key;
	struct bpf_sock *sk;

	dh_target_key(&key, pkt->proto, addr, target->port, v6);
	sk = bpf_map_lookup_elem(&targets, &key);
	if (sk)
		return sk;

	__builtin_memset(&tuple, 0, sizeof(tuple));
	if (v6) {
		__builtin_memcpy(tuple.ipv6.saddr, pkt->saddr6, sizeof(tuple.ipv6.saddr));
		__builtin_memcpy(tuple.ipv6.daddr, addr, sizeof(tuple.ipv6.daddr));
		tuple.ipv6.sport = pkt->sport;
		tuple.ipv6.dport = target->port;
	} else {
		tuple.ipv4.saddr = pkt->saddr;
		tuple.ipv4.daddr = addr[0];
		tuple.ipv4.sport = pkt->sport;
		tuple.ipv4.dport = target->port;
	}
	if (pkt->proto == IPPROTO_TCP) {
		sk = bpf_sk_lookup_tcp(skb, &tuple, size, DH_F_CURRENT_NETNS, 0);
		if (sk && sk->state != BPF_TCP_LISTEN) {
			bpf_sk_release(sk);
			return NULL;
		}
	} else {
		sk = bpf_sk_lookup_udp(skb, &tuple, size, DH_F_CURRENT_NETNS, 0);
	}
	/* A socket the map refuses (a connected UDP socket, say) is still
	 * the target's: dh_sk_lookup then finds nothing, and the packet is
	 * answered as for a closed port. */
	if (sk && bpf_map_update_elem(&targets, &key, sk, BPF_ANY))
		DH_COUNT(passed_assign_failed);
	return sk;
}

/* @v6 is a constant at each call: the compiler keeps one path per family.
 * @per_source: the bridge counts in `sources` (dh_bridge_mode_of). */
static __always_inline int dh_steer(struct __sk_buff *skb, const struct dh_packet *pkt,
				    const struct dh_port_target *target, const struct dh_port_key *port_key,
				    bool per_source, bool v6)
{
	bool created = false;
	struct bpf_sock *sk;

	/* Only a new flow's first packet needs the target's socket: a TCP
	 * segment after the SYN belongs to a socket the stack finds by its
	 * own tuple. */
	if (pkt->proto == IPPROTO_TCP && !pkt->tcp_syn) {
		dh_count_port(skb, port_key);
		if (per_source)
			dh_count_source(skb, pkt, v6, DH_SRC_PACKET);
		return TC_ACT_UNSPEC;
	}
	/* A source off the list gets no socket into `targets` (dh_sk_lookup
	 * checks again: another source's packet may have put it there). */
	if (!dh_source_allowed(target, port_key, v6 ? pkt->saddr6 : &pkt->saddr, v6)) {
		/* Traced here only: dh_sk_lookup's own check of the same
		 * packet stays silent. */
		dh_trace_packet(skb, pkt, v6 ? DH_L3_IPV6 : DH_L3_IPV4, DH_MODE_SOCKET, DH_TRACE_DISALLOWED,
				DH_COUNTER_INDEX(passed_not_allowed), NULL);
		if (per_source)
			dh_count_source(skb, pkt, v6, DH_SRC_REFUSED_NOT_ALLOWED);
		return DH_PASS(passed_not_allowed);
	}
	sk = dh_target_socket(skb, pkt, target, v6);
	if (!sk) {
		if (per_source)
			dh_count_source(skb, pkt, v6, DH_SRC_REFUSED_NO_SOCKET);
		dh_trace_packet(skb, pkt, v6 ? DH_L3_IPV6 : DH_L3_IPV4, DH_MODE_SOCKET, DH_TRACE_REFUSED,
				DH_COUNTER_INDEX(passed_no_socket), target);
		return DH_PASS(passed_no_socket);
	}
	if (pkt->proto == IPPROTO_UDP && !dh_sock_flow_note(skb, pkt, sk, v6, &created)) {
		bpf_sk_release(sk);
		return DH_DROP(flow_origin_conflicts);
	}
	bpf_sk_release(sk);
	/* A TCP flow is traced by dh_sk_lookup when it assigns the SYN; a
	 * UDP flow here, once, when its sock_flows entry is made: tracing
	 * every datagram would flood the ring with one busy flow. */
	if (created)
		dh_trace_packet(skb, pkt, v6 ? DH_L3_IPV6 : DH_L3_IPV4, DH_MODE_SOCKET, DH_TRACE_FLOW,
				DH_COUNTER_INDEX(assigned), target);
	dh_count_port(skb, port_key);
	/* Here a TCP packet is a SYN: a new flow. */
	if (per_source)
		dh_count_source(skb, pkt, v6,
				DH_SRC_PACKET | (pkt->proto == IPPROTO_TCP || created ? DH_SRC_FLOW : 0));
	return TC_ACT_UNSPEC;
}

#endif /* DH_STEER_BPF_H */
