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
#include "lib/csum.bpf.h"
#include "lib/nat.bpf.h"

#define TC_ACT_OK   0
#define TC_ACT_SHOT 2

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

	dh_nat_key_request(&key, skb->ifindex, pkt, target);
	/* Write only on change: every packet of a flow looks the entry up,
	 * which keeps it fresh in the LRU, but updates cost far more. */
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

SEC("tc")
int dh_ingress(struct __sk_buff *skb)
{
	struct dh_port_target *found, target;
	struct dh_gateway_key gw_key;
	struct dh_port_key port_key;
	struct dh_packet pkt;

	if (!dh_parse_ipv4(skb, &pkt)) {
		DH_COUNT(passed);
		return TC_ACT_OK;
	}
	/* Only our own rewrite may put a loopback address on a packet from
	 * the bridge; anything arriving with one is crafted. */
	if (dh_is_loopback(pkt.saddr)) {
		DH_COUNT(dropped_loopback_src);
		return TC_ACT_SHOT;
	}
	if (dh_is_loopback(pkt.daddr)) {
		DH_COUNT(dropped_loopback_dst);
		return TC_ACT_SHOT;
	}

	gw_key.ifindex = skb->ifindex;
	gw_key.addr = pkt.daddr;
	if (!bpf_map_lookup_elem(&gateways, &gw_key)) {
		DH_COUNT(passed);
		return TC_ACT_OK;
	}
	if (pkt.fragment) {
		/* Later fragments carry no ports: we cannot tell whether the
		 * datagram is for a mapped port, so none of it is redirected. */
		DH_COUNT(passed_fragment);
		return TC_ACT_OK;
	}
	if (!dh_parse_ports(skb, &pkt)) {
		DH_COUNT(passed);
		return TC_ACT_OK;
	}

	__builtin_memset(&port_key, 0, sizeof(port_key));
	port_key.ifindex = skb->ifindex;
	port_key.proto = pkt.proto;
	port_key.port = pkt.dport;
	found = dh_lookup_port(&port_key);
	if (!found) {
		DH_COUNT(passed);
		return TC_ACT_OK;
	}
	/* Copy: the CLI may change the entry while we rewrite. */
	target = *found;

	dh_remember_flow(skb, &pkt, &target);
	if (dh_rewrite_addr(skb, &pkt, DH_IP_DADDR_OFF, pkt.daddr, target.addr) ||
	    dh_rewrite_port(skb, &pkt, DH_L4_DPORT_OFF, pkt.dport, target.port)) {
		DH_COUNT(dropped_rewrite_failed);
		return TC_ACT_SHOT;
	}
	dh_count_port(skb, &port_key);
	DH_COUNT(redirected);
	return TC_ACT_OK;
}

SEC("tc")
int dh_egress(struct __sk_buff *skb)
{
	struct dh_nat_origin *found, origin;
	struct dh_nat_key key;
	struct dh_packet pkt;

	if (!dh_parse_ipv4(skb, &pkt) || !dh_is_loopback(pkt.saddr))
		return TC_ACT_OK;

	/* Only replies of flows we redirected may leave with a loopback
	 * source: route_localnet=1 would otherwise let any loopback-sourced
	 * packet out onto the bridge. */
	if (!dh_parse_ports(skb, &pkt)) {
		DH_COUNT(dropped_reply_no_state);
		return TC_ACT_SHOT;
	}
	dh_nat_key_reply(&key, skb->ifindex, &pkt);
	found = bpf_map_lookup_elem(&nat_state, &key);
	if (!found) {
		DH_COUNT(dropped_reply_no_state);
		return TC_ACT_SHOT;
	}
	origin = *found;

	if (dh_rewrite_addr(skb, &pkt, DH_IP_SADDR_OFF, pkt.saddr, origin.gateway_addr) ||
	    dh_rewrite_port(skb, &pkt, DH_L4_SPORT_OFF, pkt.sport, origin.gateway_port)) {
		DH_COUNT(dropped_reply_rewrite_failed);
		return TC_ACT_SHOT;
	}
	DH_COUNT(replies_rewritten);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
