/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Socket mode: a packet for a mapped port on a gateway is handed to the
 * loopback socket behind the port with bpf_sk_assign(), untouched. Its
 * destination stays the gateway's address, which the kernel delivers
 * locally like any packet to the bridge's address: route_localnet stays
 * 0, and the kernel's martian check stays the barrier for everything that
 * is not ours. An accepted TCP socket's local address and port are the
 * gateway's, so its replies need nothing; a UDP socket bound to loopback
 * gets its reply source from dh_sendmsg4/6 (sock_flows). No socket at the
 * target: the packet goes on as it came, and the kernel answers it from
 * the gateway (RST, port unreachable) as for any closed port. IPv4 and
 * IPv6 take the same path: only the tuple's size and addresses differ.
 *
 * Included by dockhost.bpf.c after its maps and counter macros.
 */
#ifndef DH_STEER_BPF_H
#define DH_STEER_BPF_H

#include <bpf/bpf_core_read.h>

#define DH_F_CURRENT_NETNS (-1L)  /* BPF_F_CURRENT_NETNS, a macro in uapi */
#define DH_SOCK_STREAM 1
#define DH_SOCK_DGRAM  2

static __always_inline __u32 dh_bridge_mode(__u32 ifindex)
{
	struct dh_bridge_mode *mode = bpf_map_lookup_elem(&modes, &ifindex);

	return mode ? mode->mode : DH_MODE_NAT;
}

/* Hands the packet to @sk and releases it, whatever the outcome. */
static __always_inline int dh_assign(struct __sk_buff *skb, struct bpf_sock *sk,
				     const struct dh_port_key *port_key)
{
	long err = bpf_sk_assign(skb, sk, 0);

	bpf_sk_release(sk);
	/* A reuseport group before about 6.5 (-ESOCKTNOSUPPORT), a socket
	 * going away: the packet goes on unassigned, to be answered as a
	 * closed port. */
	if (err)
		return DH_PASS(passed_assign_failed);
	dh_count_port(skb, port_key);
	DH_COUNT(assigned);
	return TC_ACT_OK;
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
 * another one, which is dropped.
 */
static __always_inline bool dh_sock_flow_note(struct __sk_buff *skb, const struct dh_packet *pkt,
					      struct bpf_sock *sk, bool v6)
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
	return true;
}

/*
 * TCP: first the flow's own socket, by the packet's real tuple (a request,
 * established or timewait socket: its local address is the gateway's).
 * Assigning the listener to every packet would make the handshake's final
 * ACK draw a RST. A listener found there (0.0.0.0:P, say) is not ours to
 * use: only the target's listener may take a new connection. UDP: the
 * target socket itself, never by the real tuple, which would find a
 * wildcard socket on the gateway port and bypass the mapping.
 */
static __always_inline void dh_tuple_dst(struct bpf_sock_tuple *tuple, bool v6, const __u32 *addr,
					 __u16 port)
{
	if (v6) {
		__builtin_memcpy(tuple->ipv6.daddr, addr, sizeof(tuple->ipv6.daddr));
		tuple->ipv6.dport = port;
	} else {
		tuple->ipv4.daddr = addr[0];
		tuple->ipv4.dport = port;
	}
}

/* @v6 is a constant at each call: the compiler keeps one path per family. */
static __always_inline int dh_steer(struct __sk_buff *skb, const struct dh_packet *pkt,
				    const struct dh_port_target *target, const struct dh_port_key *port_key,
				    bool v6)
{
	__u32 size = v6 ? sizeof(struct bpf_sock_tuple) : sizeof(((struct bpf_sock_tuple *)0)->ipv4);
	struct bpf_sock_tuple tuple;
	struct bpf_sock *sk;

	/* Kernels without tc bpf_sk_assign (before 5.7) load the object
	 * with this branch dead; attach refuses socket mode there. */
	if (!bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_sk_assign))
		return DH_PASS(passed_assign_failed);

	__builtin_memset(&tuple, 0, sizeof(tuple));
	if (v6) {
		__builtin_memcpy(tuple.ipv6.saddr, pkt->saddr6, sizeof(tuple.ipv6.saddr));
		tuple.ipv6.sport = pkt->sport;
	} else {
		tuple.ipv4.saddr = pkt->saddr;
		tuple.ipv4.sport = pkt->sport;
	}
	if (pkt->proto == IPPROTO_TCP) {
		dh_tuple_dst(&tuple, v6, v6 ? pkt->daddr6 : &pkt->daddr, pkt->dport);
		sk = bpf_skc_lookup_tcp(skb, &tuple, size, DH_F_CURRENT_NETNS, 0);
		if (sk) {
			if (sk->state != BPF_TCP_LISTEN)
				return dh_assign(skb, sk, port_key);
			bpf_sk_release(sk);
		}
		dh_tuple_dst(&tuple, v6, v6 ? target->addr6 : &target->addr, target->port);
		sk = bpf_skc_lookup_tcp(skb, &tuple, size, DH_F_CURRENT_NETNS, 0);
		if (sk && sk->state != BPF_TCP_LISTEN) {
			bpf_sk_release(sk);
			sk = NULL;
		}
	} else {
		dh_tuple_dst(&tuple, v6, v6 ? target->addr6 : &target->addr, target->port);
		sk = bpf_sk_lookup_udp(skb, &tuple, size, DH_F_CURRENT_NETNS, 0);
		if (sk && !dh_sock_flow_note(skb, pkt, sk, v6)) {
			bpf_sk_release(sk);
			return DH_DROP(flow_origin_conflicts);
		}
	}
	if (!sk)
		return DH_PASS(passed_no_socket);
	return dh_assign(skb, sk, port_key);
}

#endif /* DH_STEER_BPF_H */
