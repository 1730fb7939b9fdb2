// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * dockhost-bpf datapath: tc programs on a bridge device.
 *
 * ingress (container -> host): drop anything carrying a loopback address
 *   (CVE-2020-8558), then rewrite TCP/UDP aimed at a gateway address and a
 *   mapped port toward its loopback target, remembering the flow.
 * egress (host -> container): turn replies from a loopback target back into
 *   the gateway address and port the container used; any other packet with
 *   a loopback source is dropped so loopback never leaks onto the bridge.
 *
 * Bridged container-to-container frames never reach the bridge device's own
 * hooks, so they cost nothing.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "dockhost.h"
#include "lib/parse.bpf.h"
#include "lib/guard.bpf.h"
#include "lib/csum.bpf.h"
#include "lib/nat.bpf.h"

/*
 * Verdicts. A packet we changed ends the chain with TC_ACT_OK (it is ours
 * now). Anything else goes on with TC_ACT_UNSPEC, which is TCX_NEXT in a
 * tcx chain and "next filter" for cls_bpf: TC_ACT_OK there would end the
 * tcx chain and skip every clsact filter, hiding the packet from other
 * programs on the bridge.
 */
#define TC_ACT_UNSPEC (-1)
#define TC_ACT_OK     0
#define TC_ACT_SHOT   2

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DH_MAX_PORTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct dh_port_key);
	__type(value, struct dh_port_target);
} ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, DH_MAX_PORTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct dh_port_key);
	__type(value, struct dh_port_stats);
} port_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DH_MAX_GATEWAYS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct dh_gateway_key);
	__type(value, struct dh_gateway);
} gateways SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, DH_NAT_ENTRIES);
	__type(key, struct dh_nat_key);
	__type(value, struct dh_nat_origin);
} nat_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dh_counters);
} counters SEC(".maps");

/* Not used by the programs: the CLI's record of what attach changed. Kept in
 * the object so it is pinned beside the rest and typed by the same BTF. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DH_MAX_BRIDGES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct dh_bridge);
} bridges SEC(".maps");

#define DH_COUNT(field)                                                    \
	({                                                                 \
		__u32 __zero = 0;                                          \
		struct dh_counters *__c = bpf_map_lookup_elem(&counters, &__zero); \
		if (__c)                                                   \
			__c->field++;                                      \
	})
#define DH_DROP(reason) ({ DH_COUNT(reason); TC_ACT_SHOT; })
#define DH_PASS(reason) ({ DH_COUNT(reason); TC_ACT_UNSPEC; })

static __always_inline struct dh_port_target *dh_lookup_port(struct dh_port_key *key)
{
	struct dh_port_target *target;

	/* A bridge's own entry overrides the one for every bridge. */
	target = bpf_map_lookup_elem(&ports, key);
	if (target)
		return target;
	key->ifindex = 0;
	return bpf_map_lookup_elem(&ports, key);
}

static __always_inline void dh_remember_flow(struct __sk_buff *skb, const struct dh_packet *pkt,
					     const struct dh_port_target *target)
{
	struct dh_nat_origin origin = { .gateway_addr = pkt->daddr, .gateway_port = pkt->dport };
	struct dh_nat_origin *known;
	struct dh_nat_key key;

	/* A TCP flow is recorded by its SYN; later packets need no lookup
	 * here (the replies' lookups at egress keep the entry fresh in the
	 * LRU). A packet of a flow that started before its port was mapped
	 * reaches no socket on loopback and draws a RST, state or not. */
	if (pkt->proto == IPPROTO_TCP && !pkt->tcp_syn)
		return;
	dh_nat_key_request(&key, skb->ifindex, pkt, target);
	/* UDP has no handshake: look first, write only on change, since an
	 * update costs far more than a lookup. */
	known = bpf_map_lookup_elem(&nat_state, &key);
	if (known && known->gateway_addr == origin.gateway_addr &&
	    known->gateway_port == origin.gateway_port)
		return;
	bpf_map_update_elem(&nat_state, &key, &origin, BPF_ANY);
}

static __always_inline void dh_count_port(struct __sk_buff *skb, const struct dh_port_key *key)
{
	struct dh_port_stats *stats = bpf_map_lookup_elem(&port_stats, key);

	if (stats) {
		stats->packets++;
		stats->bytes += skb->len;
	}
}

/*
 * The loopback guard, for everything from the bridge that the kernel could
 * hand to ip_rcv or ipv6_rcv there: tag stacks are walked to the inner
 * header, and what cannot be read is dropped rather than passed.
 */
static __always_inline int dh_guard(struct __sk_buff *skb, struct dh_packet *pkt, enum dh_l3 l3)
{
	bool src = false, dst = false;

	switch (l3) {
	case DH_L3_OTHER:
		return DH_PASS(passed);
	case DH_L3_MALFORMED:
		return DH_DROP(dropped_malformed);
	case DH_L3_TOO_DEEP:
		return DH_DROP(dropped_vlan_too_deep);
	case DH_L3_IPV6:
		if (!dh_ipv6_loopback_addrs(skb, pkt, &src, &dst))
			return DH_DROP(dropped_malformed);
		break;
	case DH_L3_IPV4:
		src = dh_is_loopback(pkt->saddr);
		dst = dh_is_loopback(pkt->daddr);
		break;
	}
	/* Only our own rewrite may put a loopback address on a packet from
	 * the bridge; anything arriving with one is crafted. */
	if (src)
		return DH_DROP(dropped_loopback_src);
	if (dst)
		return DH_DROP(dropped_loopback_dst);
	if (l3 == DH_L3_IPV4 && pkt->ip_options && dh_ipv4_options_unsafe(skb, pkt))
		return DH_DROP(dropped_ip_options);
	if (l3 != DH_L3_IPV4)
		return DH_PASS(passed);
	/* Only frames the kernel delivers on the bridge itself are ours to
	 * redirect: untagged, or with an offloaded priority tag (VID 0). */
	if (pkt->vlan_tags || (skb->vlan_tci & VLAN_VID_MASK))
		return DH_PASS(passed_tagged);
	return 0;
}

SEC("tc")
int dh_ingress(struct __sk_buff *skb)
{
	struct dh_port_target *found, target;
	struct dh_gateway_key gw_key;
	struct dh_port_key port_key;
	struct dh_packet pkt;
	int verdict;

	verdict = dh_guard(skb, &pkt, dh_parse(skb, &pkt));
	if (verdict)
		return verdict;

	gw_key.ifindex = skb->ifindex;
	gw_key.addr = pkt.daddr;
	if (!bpf_map_lookup_elem(&gateways, &gw_key))
		return DH_PASS(passed);
	if (pkt.fragment) {
		/* Later fragments carry no ports: we cannot tell whether the
		 * datagram is for a mapped port, so none of it is redirected. */
		return DH_PASS(passed_fragment);
	}
	if (!dh_parse_ports(skb, &pkt))
		return DH_PASS(passed);

	__builtin_memset(&port_key, 0, sizeof(port_key));
	port_key.ifindex = skb->ifindex;
	port_key.proto = pkt.proto;
	port_key.port = pkt.dport;
	found = dh_lookup_port(&port_key);
	if (!found)
		return DH_PASS(passed);
	/* Copy: the CLI may change the entry while we rewrite. */
	target = *found;

	dh_remember_flow(skb, &pkt, &target);
	if (dh_rewrite_addr(skb, &pkt, DH_IP_DADDR_OFF, pkt.daddr, target.addr) ||
	    dh_rewrite_port(skb, &pkt, DH_L4_DPORT_OFF, pkt.dport, target.port))
		return DH_DROP(dropped_rewrite_failed);
	dh_count_port(skb, &port_key);
	DH_COUNT(redirected);
	return TC_ACT_OK;
}

/* What an ICMP error quotes of the packet that caused it: the IPv4 header
 * (without options) and the first 8 bytes of TCP or UDP. */
struct dh_quoted {
	struct iphdr ip;
	__u16 sport;
	__u16 dport;
	__u16 udp_len;   /* TCP: sequence number, untouched */
	__u16 udp_check;
};

#define DH_ICMP_HLEN 8

/*
 * An ICMP error from a loopback target (port unreachable for UDP, say)
 * quotes the rewritten request. Turn the quote back into what the container
 * sent, so its socket matches the error: a closed UDP port then reads as
 * "connection refused" instead of a timeout. Any other ICMP from loopback
 * is dropped, like every loopback-sourced packet that is not ours.
 */
static __always_inline int dh_egress_icmp(struct __sk_buff *skb, const struct dh_packet *pkt)
{
	struct dh_quoted quoted, restored;
	struct dh_nat_origin *found, origin;
	__u32 quote_off = pkt->l4_off + DH_ICMP_HLEN;
	struct dh_packet inner = {};
	struct dh_nat_key key;
	__u8 type;
	__s64 diff;

	if (pkt->fragment || bpf_skb_load_bytes(skb, pkt->l4_off, &type, sizeof(type)) ||
	    (type != ICMP_DEST_UNREACH && type != ICMP_TIME_EXCEEDED && type != ICMP_PARAMETERPROB) ||
	    bpf_skb_load_bytes(skb, quote_off, &quoted, sizeof(quoted)))
		goto no_state;
	if (quoted.ip.version != 4 || quoted.ip.ihl != 5 || quoted.ip.saddr != pkt->daddr ||
	    (quoted.ip.protocol != IPPROTO_TCP && quoted.ip.protocol != IPPROTO_UDP))
		goto no_state;

	inner.proto = quoted.ip.protocol;
	inner.saddr = quoted.ip.daddr;  /* seen as the reply would be */
	inner.daddr = quoted.ip.saddr;
	inner.sport = quoted.dport;
	inner.dport = quoted.sport;
	dh_nat_key_reply(&key, skb->ifindex, &inner);
	found = bpf_map_lookup_elem(&nat_state, &key);
	if (!found)
		goto no_state;
	origin = *found;

	restored = quoted;
	restored.ip.daddr = origin.gateway_addr;
	restored.dport = origin.gateway_port;
	restored.ip.check = 0;
	restored.ip.check = dh_csum_fold(bpf_csum_diff(NULL, 0, (void *)&restored.ip,
						       sizeof(restored.ip), 0));
	if (inner.proto == IPPROTO_UDP && quoted.udp_check) {
		__u16 check = dh_csum16_replace4(quoted.udp_check, quoted.ip.daddr, origin.gateway_addr);

		check = dh_csum16_replace(check, quoted.dport, origin.gateway_port);
		restored.udp_check = check ? check : 0xffff;
	}

	/* The ICMP checksum covers the quote but no pseudo header. */
	diff = bpf_csum_diff((void *)&quoted, sizeof(quoted), (void *)&restored, sizeof(restored), 0);
	if (diff < 0 ||
	    bpf_skb_store_bytes(skb, quote_off, &restored, sizeof(restored), 0) ||
	    bpf_l4_csum_replace(skb, pkt->l4_off + offsetof(struct icmphdr, checksum), 0, diff, 0) ||
	    dh_rewrite_ip_addr(skb, DH_IP_SADDR_OFF, pkt->saddr, origin.gateway_addr))
		return DH_DROP(dropped_reply_rewrite_failed);
	DH_COUNT(icmp_errors_rewritten);
	return TC_ACT_OK;

no_state:
	return DH_DROP(dropped_reply_no_state);
}

SEC("tc")
int dh_egress(struct __sk_buff *skb)
{
	struct dh_nat_origin *found, origin;
	struct dh_nat_key key;
	struct dh_packet pkt;

	/* The host's own traffic: only a loopback source is our business,
	 * in any frame shape. A tagged one is never a reply of ours. */
	if (dh_parse(skb, &pkt) != DH_L3_IPV4 || !dh_is_loopback(pkt.saddr))
		return TC_ACT_UNSPEC;
	if (pkt.vlan_tags)
		return DH_DROP(dropped_reply_no_state);

	/* Only replies of flows we redirected may leave with a loopback
	 * source: route_localnet=1 would otherwise let any loopback-sourced
	 * packet out onto the bridge. */
	if (pkt.proto == IPPROTO_ICMP)
		return dh_egress_icmp(skb, &pkt);
	if (!dh_parse_ports(skb, &pkt))
		return DH_DROP(dropped_reply_no_state);
	dh_nat_key_reply(&key, skb->ifindex, &pkt);
	found = bpf_map_lookup_elem(&nat_state, &key);
	if (!found)
		return DH_DROP(dropped_reply_no_state);
	origin = *found;

	if (dh_rewrite_addr(skb, &pkt, DH_IP_SADDR_OFF, pkt.saddr, origin.gateway_addr) ||
	    dh_rewrite_port(skb, &pkt, DH_L4_SPORT_OFF, pkt.sport, origin.gateway_port))
		return DH_DROP(dropped_reply_rewrite_failed);
	DH_COUNT(replies_rewritten);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
