// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * dockhost-bpf datapath: tc programs on a bridge device, and for socket
 * mode an sk_lookup program on the bridge's netns and cgroup programs for
 * its UDP replies.
 *
 * ingress (container -> host): drop anything carrying a loopback address
 *   (CVE-2020-8558), then, for TCP/UDP aimed at a gateway address and a
 *   mapped port, per the bridge's mode (the modes map):
 *   - NAT mode: rewrite toward its loopback target, remembering the flow
 *     (IPv4 only: the kernel never routes ::1 off lo, so IPv6 is guarded
 *     and left alone);
 *   - socket mode, IPv4 and IPv6: leave it as it is, and have the target's
 *     socket ready for dh_sk_lookup (lib/steer.bpf.h).
 * egress (host -> container), NAT mode: turn replies from a loopback target
 *   back into the gateway address and port the container used; any other
 *   packet with a loopback source is dropped so loopback never leaks onto
 *   the bridge. Socket mode's replies leave from the gateway already.
 * sk_lookup (socket mode): the stack's own socket lookup for a packet from
 *   the bridge to a gateway and a mapped port picks the target's socket.
 * cgroup/sendmsg4, sendmsg6 (socket mode): a UDP socket bound to loopback
 *   answering a container sends from the gateway the container used.
 * cgroup/connect4, connect6 (socket mode): count the UDP servers that
 *   connect() to a container instead, which only NAT mode serves.
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
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DH_MAX_GATEWAYS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct dh_gateway6_key);
	__type(value, struct dh_gateway);
} gateways6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, DH_NAT_ENTRIES);
	__type(key, struct dh_nat_key);
	__type(value, struct dh_nat_origin);
} nat_state SEC(".maps");

/*
 * What one source may take of nat_state. The LRU cannot tell us when it
 * evicts, so a count of live entries per source would only ever grow;
 * instead each (bridge, container address) may start DH_NAT_SOURCE_MAX
 * flows per window, and a TCP flow gives its share back when the loopback
 * side closes it. Connection churn (open, close, open) is never limited;
 * what is, is one container holding or spraying more new flows than a
 * quarter of the table per window, which would push everyone else's idle
 * flows out. Not pinned: it lives and dies with the programs.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, DH_NAT_SOURCES);
	__type(key, struct dh_nat_source_key);
	__type(value, struct dh_nat_source);
} nat_sources SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dh_counters);
} counters SEC(".maps");

/* Later fragments of a reply, by IP id: see dh_egress_fragment(). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, DH_NAT_FRAGMENTS);
	__type(key, struct dh_frag_key);
	__type(value, __u32);  /* the gateway address the first fragment got */
} nat_fragments SEC(".maps");

/* Not used by the programs: the CLI's record of what attach changed. Kept in
 * the object so it is pinned beside the rest and typed by the same BTF. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DH_MAX_BRIDGES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct dh_bridge);
} bridges SEC(".maps");

/* Socket mode's per-bridge switch, read by ifindex: see dh_bridge_mode(). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DH_MAX_BRIDGES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct dh_bridge_mode);
} modes SEC(".maps");

/* Socket mode's UDP flows, for dh_sendmsg4/6. Bounded and LRU like
 * nat_state: a flow evicted under load costs its next reply's source
 * until the container's next datagram writes it again. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, DH_SOCK_FLOWS);
	__type(key, struct dh_sock_flow_key);
	__type(value, struct dh_sock_flow);
} sock_flows SEC(".maps");

/* Socket mode's target sockets: see lib/steer.bpf.h. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, DH_MAX_PORTS);
	__type(key, struct dh_target_key);
	__type(value, __u64);
} targets SEC(".maps");

/* `dockhost-bpf trace`: see lib/trace.bpf.h. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, DH_TRACE_RING_SIZE);
} trace_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dh_trace_ctl);
} trace_ctl SEC(".maps");
/* Allow-lists: see include/dockhost.h. Only an entry with
 * DH_PORT_ALLOW_LIST costs a lookup: one, in the trie of its family. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, DH_MAX_ALLOW);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct dh_allow4_key);
	__type(value, __u32);
} allow4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, DH_MAX_ALLOW);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct dh_allow6_key);
	__type(value, __u32);
} allow6 SEC(".maps");

/* Not used by the programs: the CLI's record of each --from, pinned and
 * typed like bridges. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DH_MAX_ALLOW);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct dh_allow_source_key);
	__type(value, struct dh_allow_source);
} allow_sources SEC(".maps");
/* Per-source counters: see lib/sources.bpf.h. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, DH_SOURCE_ENTRIES);
	__type(key, struct dh_source_key);
	__type(value, struct dh_source_stats);
} sources SEC(".maps");

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

/*
 * May @saddr (one word for IPv4, four for IPv6) use the mapping @target
 * found under @port_key (its key as matched: ifindex 0 for a global one)?
 * A mapping without a list is open to all.
 */
static __always_inline bool dh_source_allowed(const struct dh_port_target *target,
					      const struct dh_port_key *port_key, const __u32 *saddr, bool v6)
{
	struct dh_allow6_key key6;
	struct dh_allow4_key key;

	if (!(target->flags & DH_PORT_ALLOW_LIST))
		return true;
	if (v6) {
		key6.prefixlen = DH_ALLOW_KEY_BITS + 128;
		key6.port = *port_key;
		__builtin_memcpy(key6.addr, saddr, sizeof(key6.addr));
		return bpf_map_lookup_elem(&allow6, &key6) != NULL;
	}
	key.prefixlen = DH_ALLOW_KEY_BITS + 32;
	key.port = *port_key;
	key.addr = saddr[0];
	return bpf_map_lookup_elem(&allow4, &key) != NULL;
}

/* Charges a new flow to its source: false when the source has started
 * DH_NAT_SOURCE_MAX flows in this window already. Racing CPUs may let a
 * few more through; the bound is on the order of magnitude. */
static __always_inline bool dh_source_charge(__u32 ifindex, __u32 addr)
{
	struct dh_nat_source_key key = { .ifindex = ifindex, .addr = addr };
	__u32 window = bpf_ktime_get_coarse_ns() >> DH_NAT_WINDOW_SHIFT;
	struct dh_nat_source *src, fresh = { .window = window, .created = 1 };

	src = bpf_map_lookup_elem(&nat_sources, &key);
	if (!src)
		return bpf_map_update_elem(&nat_sources, &key, &fresh, BPF_ANY) == 0;
	if (src->window != window) {
		src->window = window;
		src->created = 1;
		return true;
	}
	if (src->created >= DH_NAT_SOURCE_MAX)
		return false;
	__sync_fetch_and_add(&src->created, 1);
	return true;
}

/* A TCP flow closed by the loopback side gives its share back. */
static __always_inline void dh_source_refund(__u32 ifindex, __u32 addr)
{
	struct dh_nat_source_key key = { .ifindex = ifindex, .addr = addr };
	struct dh_nat_source *src = bpf_map_lookup_elem(&nat_sources, &key);

	if (src && src->created > 0)
		__sync_fetch_and_add(&src->created, -1);
}

/*
 * May a packet naming another gateway take over a flow's entry? The reply
 * cannot say which gateway it is for, so a live flow keeps its first one:
 * otherwise one UDP socket talking to two gateway addresses, or a SYN a
 * neighbour spoofs with a victim's address and port, would move the
 * victim's replies to the wrong address (and a challenge ACK sent there
 * draws the victim's RST, which ends its connection).
 *
 * - A guessed entry (see dh_egress_guess) is replaced by what the
 *   container really uses.
 * - UDP: once the flow has been idle for DH_NAT_UDP_IDLE.
 * - TCP: only a SYN, once the service closed the flow (FIN or RST seen at
 *   egress: the port reuse after TIME_WAIT) or it has been idle for
 *   DH_NAT_TCP_IDLE. A reuse after the container itself aborted with a RST
 *   through another gateway waits for that idle time: the service says
 *   nothing then, and a container's RST does not count, since a neighbour
 *   could spoof it as easily as the SYN.
 */
static __always_inline bool dh_nat_replaceable(const struct dh_nat_origin *known,
					       const struct dh_packet *pkt, __u32 now)
{
	if (known->flags & DH_NAT_GUESSED)
		return true;
	if (pkt->proto == IPPROTO_UDP)
		return now - known->seen > DH_NAT_UDP_IDLE;
	return pkt->tcp_syn && ((known->flags & DH_NAT_CLOSING) || now - known->seen > DH_NAT_TCP_IDLE);
}

/*
 * Keeps the flow of a packet about to be redirected in nat_state. Returns
 * 0 to go on with the redirect, or a verdict for a packet whose flow may
 * not be recorded.
 *
 * Every packet looks its flow up (one lookup: the fast path); an update,
 * far dearer, happens only when the entry is missing or changes, and
 * `seen` is stored at most once per unit. A TCP packet that is not a SYN
 * re-creates a missing entry: the LRU may have evicted it under load, and
 * without it every reply would be dropped and the connection would hang.
 * Its origin is the one the container uses right now, so it is as good as
 * the SYN's. *@created says whether an entry was made (for the trace).
 */
static __always_inline int dh_remember_flow(struct __sk_buff *skb, const struct dh_packet *pkt,
					    const struct dh_port_target *target, bool *created)
{
	__u32 now = bpf_ktime_get_coarse_ns() >> DH_NAT_SEEN_SHIFT;
	struct dh_nat_origin origin = { .gateway_addr = pkt->daddr, .gateway_port = pkt->dport,
					.seen = now };
	bool tcp = pkt->proto == IPPROTO_TCP;
	struct dh_nat_origin *known;
	struct dh_nat_key key;

	dh_nat_key_request(&key, skb->ifindex, pkt, target);
	known = bpf_map_lookup_elem(&nat_state, &key);
	if (known) {
		if (known->gateway_addr == origin.gateway_addr &&
		    known->gateway_port == origin.gateway_port) {
			if (known->seen != now)
				known->seen = now;
			if (known->flags & DH_NAT_GUESSED)
				known->flags &= ~DH_NAT_GUESSED;  /* confirmed */
			if (!(pkt->tcp_syn && (known->flags & DH_NAT_CLOSING)))
				return 0;
		} else if (!dh_nat_replaceable(known, pkt, now)) {
			return DH_DROP(flow_origin_conflicts);
		}
		/* A closed flow gave its share back: a new connection on its
		 * ports (after TIME_WAIT) takes one again. */
		if ((known->flags & DH_NAT_CLOSING) && !dh_source_charge(skb->ifindex, pkt->saddr))
			return DH_DROP(dropped_nat_source_limit);
		bpf_map_update_elem(&nat_state, &key, &origin, BPF_ANY);
		*created = true;
		return 0;
	}
	/* A lone RST needs no reply, so no state. */
	if (tcp && (pkt->tcp_flags & DH_TCP_RST))
		return 0;
	if (!dh_source_charge(skb->ifindex, pkt->saddr))
		return DH_DROP(dropped_nat_source_limit);
	if (tcp && !pkt->tcp_syn)
		DH_COUNT(flows_recreated);
	bpf_map_update_elem(&nat_state, &key, &origin, BPF_ANY);
	*created = true;
	return 0;
}

static __always_inline void dh_count_port(struct __sk_buff *skb, const struct dh_port_key *key)
{
	struct dh_port_stats *stats = bpf_map_lookup_elem(&port_stats, key);

	if (stats) {
		stats->packets++;
		stats->bytes += skb->len;
	}
}

#include "lib/sources.bpf.h"
#include "lib/trace.bpf.h"
#include "lib/steer.bpf.h"

/* A guard drop is traced with its reason, the frame's source MAC and
 * address (as far as it was read). */
#define DH_GUARD_DROP(reason)                                                          \
	({                                                                             \
		dh_trace_packet(skb, pkt, l3, DH_TRACE_MODE_LOOKUP, DH_TRACE_GUARD_DROP, \
				DH_COUNTER_INDEX(reason), NULL);                       \
		DH_COUNT(reason);                                                      \
		TC_ACT_SHOT;                                                           \
	})

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
		return DH_GUARD_DROP(dropped_malformed);
	case DH_L3_TOO_DEEP:
		return DH_GUARD_DROP(dropped_vlan_too_deep);
	case DH_L3_IPV6:
		/* ipv6_rcv drops both on a device that is not loopback, but
		 * the guard does not lean on that: it is the promise. */
		src = dh_ipv6_is_loopback(pkt->saddr6);
		dst = dh_ipv6_is_loopback(pkt->daddr6);
		break;
	case DH_L3_IPV4:
		src = dh_is_loopback(pkt->saddr);
		dst = dh_is_loopback(pkt->daddr);
		break;
	}
	/* Only our own rewrite may put a loopback address on a packet from
	 * the bridge; anything arriving with one is crafted. */
	if (src)
		return DH_GUARD_DROP(dropped_loopback_src);
	if (dst)
		return DH_GUARD_DROP(dropped_loopback_dst);
	if (l3 == DH_L3_IPV4 && pkt->ip_options && dh_ipv4_options_unsafe(skb, pkt))
		return DH_GUARD_DROP(dropped_ip_options);
	/* Only frames the kernel delivers on the bridge itself are ours to
	 * redirect: untagged, or with an offloaded priority tag (VID 0). */
	if (pkt->vlan_tags || (skb->vlan_tci & VLAN_VID_MASK))
		return DH_PASS(passed_tagged);
	return 0;
}

/* Is @addr (one word for IPv4, four for IPv6) one of the bridge's
 * gateways? One map per family: the IPv4 key stays 8 bytes. */
static __always_inline bool dh_is_gateway(__u32 ifindex, const __u32 *addr, bool v6)
{
	struct dh_gateway6_key key6 = { .ifindex = ifindex };
	struct dh_gateway_key key = { .ifindex = ifindex, .addr = addr[0] };

	if (!v6)
		return bpf_map_lookup_elem(&gateways, &key) != NULL;
	__builtin_memcpy(key6.addr, addr, sizeof(key6.addr));
	return bpf_map_lookup_elem(&gateways6, &key6) != NULL;
}

static __always_inline bool dh_ipv6_unset(const __u32 addr[4])
{
	return !(addr[0] | addr[1] | addr[2] | addr[3]);
}

SEC("tc")
int dh_ingress(struct __sk_buff *skb)
{
	struct dh_port_target *found, target;
	struct dh_port_key port_key;
	bool created = false, per_source;
	struct dh_packet pkt;
	enum dh_l3 l3;
	int verdict;
	__u32 mode;

	l3 = dh_parse(skb, &pkt);
	verdict = dh_guard(skb, &pkt, l3);
	if (verdict)
		return verdict;

	if (!dh_is_gateway(skb->ifindex, l3 == DH_L3_IPV6 ? pkt.daddr6 : &pkt.daddr, l3 == DH_L3_IPV6))
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

	/* One lookup for the bridge's mode and flags, mapped packets only. */
	mode = dh_bridge_mode_of(skb->ifindex, &per_source);
	if (l3 == DH_L3_IPV6) {
		/* NAT mode cannot redirect IPv6 (the kernel never routes ::1
		 * off lo): its packets go on to the gateway as they came. */
		if (dh_ipv6_unset(target.addr6) || mode != DH_MODE_SOCKET)
			return DH_PASS(passed);
		return dh_steer(skb, &pkt, &target, &port_key, per_source, true);
	}
	/* A mapping for IPv6 only. */
	if (!target.addr)
		return DH_PASS(passed);
	if (mode == DH_MODE_SOCKET)
		return dh_steer(skb, &pkt, &target, &port_key, per_source, false);
	/* Checked on every packet, before the rewrite: a source taken off
	 * the list loses even the flows it had, and what it sends goes on to
	 * the gateway untouched, answered as for an unmapped port. */
	if (!dh_source_allowed(&target, &port_key, &pkt.saddr, false)) {
		/* Traced and counted per source as a new flow's first packet
		 * is: a SYN, any UDP datagram. */
		if (pkt.proto != IPPROTO_TCP || pkt.tcp_syn) {
			dh_trace_packet(skb, &pkt, l3, DH_MODE_NAT, DH_TRACE_DISALLOWED,
					DH_COUNTER_INDEX(passed_not_allowed), NULL);
			if (per_source)
				dh_count_source(skb, &pkt, false, DH_SRC_REFUSED_NOT_ALLOWED);
		}
		return DH_PASS(passed_not_allowed);
	}

	verdict = dh_remember_flow(skb, &pkt, &target, &created);
	if (verdict)
		return verdict;
	/* Before the rewrite: the target's socket is looked up as the
	 * rewritten packet will find it, and the rewrite changes skb->len
	 * for no one. */
	if (per_source)
		dh_count_source_nat(skb, &pkt, &target, created);
	if (dh_rewrite_addr(skb, &pkt, DH_IP_DADDR_OFF, pkt.daddr, target.addr) ||
	    dh_rewrite_port(skb, &pkt, DH_L4_DPORT_OFF, pkt.dport, target.port))
		return DH_DROP(dropped_rewrite_failed);
	if (created)
		dh_trace_nat_flow(skb, &pkt, &target);
	dh_count_port(skb, &port_key);
	DH_COUNT(redirected);
	return TC_ACT_OK;
}

/*
 * Socket mode's delivery, in the stack's own socket lookup: a TCP SYN (or
 * the ACK of a SYN cookie) that no established socket took, or a UDP
 * datagram no connected socket took, sent from a socket-mode bridge to one
 * of its gateways and a mapped port, goes to the target's socket. The
 * kernel then picks within the target's SO_REUSEPORT group, if any. The
 * ingress program has vetted the packet (the guard) and put the socket in
 * `targets`; ingress_ifindex is the bridge's (the device the packet came
 * up on), so a packet to the same address from any other interface is not
 * ours. Never SK_DROP: what we do not hand over is looked up as usual.
 */
SEC("sk_lookup")
int dh_sk_lookup(struct bpf_sk_lookup *ctx)
{
	__u32 ifindex = ctx->ingress_ifindex, local[4], remote[4];
	bool v6 = ctx->family == DH_AF_INET6;
	struct dh_port_target *found;
	struct dh_port_key port_key;
	struct dh_target_key key;
	struct bpf_sock *sk;
	long err;

	if ((ctx->protocol != IPPROTO_TCP && ctx->protocol != IPPROTO_UDP) ||
	    dh_bridge_mode(ifindex) != DH_MODE_SOCKET)
		return SK_PASS;
	/* One word at a time: the context takes no wider loads. */
	if (v6) {
		local[0] = ctx->local_ip6[0];
		local[1] = ctx->local_ip6[1];
		local[2] = ctx->local_ip6[2];
		local[3] = ctx->local_ip6[3];
	} else {
		local[0] = ctx->local_ip4;
	}
	if (!dh_is_gateway(ifindex, local, v6))
		return SK_PASS;

	__builtin_memset(&port_key, 0, sizeof(port_key));
	port_key.ifindex = ifindex;
	port_key.proto = ctx->protocol;
	port_key.port = bpf_htons(ctx->local_port);
	found = dh_lookup_port(&port_key);
	if (!found || (v6 ? dh_ipv6_unset(found->addr6) : !found->addr))
		return SK_PASS;
	/* The deliverer checks the source itself: `targets` may hold the
	 * socket an allowed source's packet put there. Counted at tc. */
	if (found->flags & DH_PORT_ALLOW_LIST) {
		if (v6) {
			remote[0] = ctx->remote_ip6[0];
			remote[1] = ctx->remote_ip6[1];
			remote[2] = ctx->remote_ip6[2];
			remote[3] = ctx->remote_ip6[3];
		} else {
			remote[0] = ctx->remote_ip4;
		}
		if (!dh_source_allowed(found, &port_key, remote, v6))
			return SK_PASS;
	}
	dh_target_key(&key, ctx->protocol, v6 ? found->addr6 : &found->addr, found->port, v6);
	sk = bpf_map_lookup_elem(&targets, &key);
	if (!sk)
		return SK_PASS;
	err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	if (err) {
		DH_COUNT(passed_assign_failed);
		dh_trace_sk_lookup(ctx, DH_TRACE_REFUSED, DH_COUNTER_INDEX(passed_assign_failed), found);
	} else {
		DH_COUNT(assigned);
		/* A new TCP connection; UDP flows are traced at tc ingress,
		 * once per flow, not here for every datagram. */
		if (ctx->protocol == IPPROTO_TCP)
			dh_trace_sk_lookup(ctx, DH_TRACE_FLOW, DH_COUNTER_INDEX(assigned), found);
	}
	return SK_PASS;
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

/* The bridge's primary gateway: its own address (DH_GW_BRIDGE) before
 * docker0's or a user's, then the lowest. Deterministic, so every reply of
 * a flow gets the same one. */
struct dh_primary {
	__u32 ifindex;
	__u32 addr;
	__u32 origin;
};

static long dh_primary_cb(struct bpf_map *map, struct dh_gateway_key *key, struct dh_gateway *gw,
			  struct dh_primary *best)
{
	bool own = gw->origin & DH_GW_BRIDGE, best_own = best->origin & DH_GW_BRIDGE;

	if (key->ifindex != best->ifindex)
		return 0;
	if (!best->addr || (own && !best_own) ||
	    (own == best_own && bpf_ntohl(key->addr) < bpf_ntohl(best->addr))) {
		best->addr = key->addr;
		best->origin = gw->origin;
	}
	return 0;
}

/*
 * A TCP segment from loopback with no flow state: the LRU evicted the flow
 * (or the segment is not ours). Dropping it would leave the container's
 * connection hanging until its own timeout, since nothing it sends may
 * come back. If the loopback address and port are the target of a port
 * mapped on this bridge without a port change, the reply can only be to a
 * container that connected to that port on one of the bridge's gateways:
 * send it from the primary one and record the flow as guessed. When the
 * container had used another gateway, its stack answers with a RST, which
 * reaches the service (the flow ends there instead of hanging), and the
 * container's next packet replaces the guessed entry with what it really
 * uses. A pure SYN is the host opening a connection, never a reply.
 */
static __always_inline int dh_egress_guess(struct __sk_buff *skb, const struct dh_packet *pkt)
{
	struct dh_primary best = { .ifindex = skb->ifindex };
	struct dh_nat_origin origin = {};
	struct dh_port_target *target;
	struct dh_port_key port_key;
	struct dh_nat_key key;

	if (pkt->proto != IPPROTO_TCP || pkt->tcp_syn || pkt->fragment)
		return DH_DROP(dropped_reply_no_state);
	__builtin_memset(&port_key, 0, sizeof(port_key));
	port_key.ifindex = skb->ifindex;
	port_key.proto = IPPROTO_TCP;
	port_key.port = pkt->sport;
	target = dh_lookup_port(&port_key);
	if (!target || target->addr != pkt->saddr || target->port != pkt->sport)
		return DH_DROP(dropped_reply_no_state);
	bpf_for_each_map_elem(&gateways, dh_primary_cb, &best, 0);
	if (!best.addr)
		return DH_DROP(dropped_reply_no_state);

	origin.gateway_addr = best.addr;
	origin.gateway_port = pkt->sport;
	origin.flags = DH_NAT_GUESSED;
	origin.seen = bpf_ktime_get_coarse_ns() >> DH_NAT_SEEN_SHIFT;
	if (pkt->tcp_flags & (DH_TCP_FIN | DH_TCP_RST))
		origin.flags |= DH_NAT_CLOSING;  /* closing already: nothing to charge */
	else if (!dh_source_charge(skb->ifindex, pkt->daddr))
		return DH_DROP(dropped_nat_source_limit);
	dh_nat_key_reply(&key, skb->ifindex, pkt);
	bpf_map_update_elem(&nat_state, &key, &origin, BPF_NOEXIST);
	if (dh_rewrite_addr(skb, pkt, DH_IP_SADDR_OFF, pkt->saddr, origin.gateway_addr))
		return DH_DROP(dropped_reply_rewrite_failed);
	DH_COUNT(replies_guessed);
	return TC_ACT_OK;
}

static __always_inline void dh_frag_key(struct dh_frag_key *key, __u32 ifindex,
					const struct dh_packet *pkt)
{
	__builtin_memset(key, 0, sizeof(*key));
	key->ifindex = ifindex;
	key->loopback_addr = pkt->saddr;
	key->container_addr = pkt->daddr;
	key->id = pkt->ip_id;
	key->proto = pkt->proto;
}

/*
 * A reply larger than the bridge's MTU (UDP, say 3000 bytes) is fragmented
 * by ip_do_fragment() before tc egress, so each fragment comes here alone.
 * The first one carries the L4 header: it is rewritten like any reply
 * (the checksum covers the whole datagram, but the incremental fix-up of
 * the pseudo header and the port is the same) and its gateway remembered
 * under the IP id. Later fragments carry no ports and only get their
 * source address, with the IPv4 header checksum. Linux sends a datagram's
 * fragments in order, first one first (both ip_do_fragment() paths); a
 * later fragment that came before its first would find nothing and be
 * dropped, and the container's reassembly would time out.
 */
static __always_inline void dh_egress_first_fragment(struct __sk_buff *skb, const struct dh_packet *pkt,
						     __u32 gateway_addr)
{
	struct dh_frag_key key;

	dh_frag_key(&key, skb->ifindex, pkt);
	bpf_map_update_elem(&nat_fragments, &key, &gateway_addr, BPF_ANY);
	DH_COUNT(reply_fragments_rewritten);
}

static __always_inline int dh_egress_later_fragment(struct __sk_buff *skb, const struct dh_packet *pkt)
{
	struct dh_frag_key key;
	__u32 *found, gateway_addr;

	dh_frag_key(&key, skb->ifindex, pkt);
	found = bpf_map_lookup_elem(&nat_fragments, &key);
	if (!found)
		return DH_DROP(dropped_reply_no_state);
	gateway_addr = *found;
	/* Gone with the datagram's last fragment: once the IP id wraps, a
	 * stale entry would match an unrelated datagram's fragments. */
	if (pkt->last_fragment)
		bpf_map_delete_elem(&nat_fragments, &key);
	if (dh_rewrite_ip_addr(skb, DH_IP_SADDR_OFF, pkt->saddr, gateway_addr))
		return DH_DROP(dropped_reply_rewrite_failed);
	DH_COUNT(reply_fragments_rewritten);
	return TC_ACT_OK;
}

SEC("tc")
int dh_egress(struct __sk_buff *skb)
{
	struct dh_nat_origin *found, origin;
	struct dh_nat_key key;
	struct dh_packet pkt;

	/* The host's own traffic: only a loopback source is our business,
	 * in any frame shape. A tagged one is never a reply of ours, and a
	 * frame whose source cannot be read might be one of those: the host's
	 * stack makes neither, so neither leaves. */
	switch (dh_parse(skb, &pkt)) {
	case DH_L3_MALFORMED:
		return DH_DROP(dropped_malformed);
	case DH_L3_TOO_DEEP:
		return DH_DROP(dropped_vlan_too_deep);
	case DH_L3_IPV4:
		break;
	default:
		return TC_ACT_UNSPEC;
	}
	if (!dh_is_loopback(pkt.saddr))
		return TC_ACT_UNSPEC;
	if (pkt.vlan_tags)
		return DH_DROP(dropped_reply_no_state);
	/* Socket mode rewrites nothing: its replies leave from the gateway,
	 * and with route_localnet=0 nothing leaves from loopback, so a
	 * socket-mode bridge carries no egress program. This one sees such a
	 * bridge only between steps of a conversion (attach adds it before
	 * route_localnet=1 and removes it after route_localnet is back), or
	 * until the next attach removes a stray one. Defence in depth: a
	 * loopback source then is no reply of ours, never guessed, never
	 * rewritten. */
	if (dh_bridge_mode(skb->ifindex) == DH_MODE_SOCKET)
		return DH_DROP(dropped_reply_no_state);

	/* Only replies of flows we redirected may leave with a loopback
	 * source: route_localnet=1 would otherwise let any loopback-sourced
	 * packet out onto the bridge. */
	if (pkt.proto == IPPROTO_ICMP)
		return dh_egress_icmp(skb, &pkt);
	if (pkt.later_fragment)
		return dh_egress_later_fragment(skb, &pkt);
	if (!dh_parse_ports(skb, &pkt))
		return DH_DROP(dropped_reply_no_state);
	dh_nat_key_reply(&key, skb->ifindex, &pkt);
	found = bpf_map_lookup_elem(&nat_state, &key);
	if (!found)
		return dh_egress_guess(skb, &pkt);
	origin = *found;
	if ((pkt.tcp_flags & (DH_TCP_FIN | DH_TCP_RST)) && !(origin.flags & DH_NAT_CLOSING)) {
		found->flags |= DH_NAT_CLOSING;
		dh_source_refund(skb->ifindex, pkt.daddr);
	}

	if (dh_rewrite_addr(skb, &pkt, DH_IP_SADDR_OFF, pkt.saddr, origin.gateway_addr) ||
	    dh_rewrite_port(skb, &pkt, DH_L4_SPORT_OFF, pkt.sport, origin.gateway_port))
		return DH_DROP(dropped_reply_rewrite_failed);
	if (pkt.fragment)
		dh_egress_first_fragment(skb, &pkt, origin.gateway_addr);
	DH_COUNT(replies_rewritten);
	return TC_ACT_OK;
}

/*
 * Socket mode's UDP replies. A socket bound to 127.0.0.1 that answers a
 * container with sendto() fails with EINVAL (a loopback source may not
 * leave on the bridge); one bound to ::1 sends from ::1, which the
 * container drops. Its source becomes the gateway address the container
 * sent the request to, from the flow ingress noted, so the container's
 * socket matches the reply. Attached at the cgroup v2 root, these run for
 * every unconnected UDP send on the host: they act only on a flow of ours,
 * in the network namespace of that flow's bridge (the cookie attach
 * recorded), and leave a source the server chose itself (IP_PKTINFO,
 * IPV6_PKTINFO with a non-loopback address) alone. They always allow the
 * send.
 */

/* The flow @key (addresses and family filled in by the caller) names, if
 * it is a socket-mode flow of ours seen from @ctx's netns; else NULL. The
 * port and protocol come from @ctx: the peer's (user_port) and the
 * socket's own. Counts nothing: what a match means is the caller's. */
static __always_inline struct dh_sock_flow *dh_sock_flow_ours(struct bpf_sock_addr *ctx,
							       struct dh_sock_flow_key *key)
{
	struct dh_bridge_mode *mode;
	struct dh_sock_flow *flow;

	key->container_port = (__u16)ctx->user_port;
	key->sock_port = bpf_htons(ctx->sk->src_port);
	key->proto = IPPROTO_UDP;
	flow = bpf_map_lookup_elem(&sock_flows, key);
	if (!flow)
		return NULL;
	mode = bpf_map_lookup_elem(&modes, &flow->ifindex);
	if (!mode || mode->mode != DH_MODE_SOCKET || mode->netns_cookie != bpf_get_netns_cookie(ctx))
		return NULL;
	return flow;
}

/* The IPv4 flow between @ctx's socket (its bound address) and its peer. */
static __always_inline struct dh_sock_flow *dh_sock_flow_ours4(struct bpf_sock_addr *ctx)
{
	struct dh_sock_flow_key key;

	__builtin_memset(&key, 0, sizeof(key));
	key.family = DH_AF_INET;
	key.container_addr[0] = ctx->user_ip4;
	key.sock_addr[0] = ctx->sk->src_ip4;
	return dh_sock_flow_ours(ctx, &key);
}

/* The same for IPv6. One word at a time: the context takes no wider loads. */
static __always_inline struct dh_sock_flow *dh_sock_flow_ours6(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	struct dh_sock_flow_key key;

	__builtin_memset(&key, 0, sizeof(key));
	key.family = DH_AF_INET6;
	key.container_addr[0] = ctx->user_ip6[0];
	key.container_addr[1] = ctx->user_ip6[1];
	key.container_addr[2] = ctx->user_ip6[2];
	key.container_addr[3] = ctx->user_ip6[3];
	key.sock_addr[0] = sk->src_ip6[0];
	key.sock_addr[1] = sk->src_ip6[1];
	key.sock_addr[2] = sk->src_ip6[2];
	key.sock_addr[3] = sk->src_ip6[3];
	return dh_sock_flow_ours(ctx, &key);
}

SEC("cgroup/sendmsg4")
int dh_sendmsg4(struct bpf_sock_addr *ctx)
{
	struct dh_sock_flow *flow;
	__u32 src = ctx->msg_src_ip4;

	if (ctx->type != DH_SOCK_DGRAM || (src && !dh_is_loopback(src)))
		return 1;
	flow = dh_sock_flow_ours4(ctx);
	if (flow) {
		ctx->msg_src_ip4 = flow->gateway_addr[0];
		DH_COUNT(udp_replies_sourced);
	}
	return 1;
}

SEC("cgroup/sendmsg6")
int dh_sendmsg6(struct bpf_sock_addr *ctx)
{
	struct dh_sock_flow *flow;
	__u32 src[4];

	if (ctx->type != DH_SOCK_DGRAM)
		return 1;
	src[0] = ctx->msg_src_ip6[0];
	src[1] = ctx->msg_src_ip6[1];
	src[2] = ctx->msg_src_ip6[2];
	src[3] = ctx->msg_src_ip6[3];
	if (!dh_ipv6_unset(src) && !dh_ipv6_is_loopback(src))
		return 1;
	flow = dh_sock_flow_ours6(ctx);
	if (flow) {
		ctx->msg_src_ip6[0] = flow->gateway_addr[0];
		ctx->msg_src_ip6[1] = flow->gateway_addr[1];
		ctx->msg_src_ip6[2] = flow->gateway_addr[2];
		ctx->msg_src_ip6[3] = flow->gateway_addr[3];
		DH_COUNT(udp_replies_sourced);
	}
	return 1;
}

/*
 * A UDP server that connect()s its loopback-bound socket to the container
 * that wrote to it cannot be helped in socket mode: the connect itself
 * fails (IPv4: no route from a loopback source off lo with route_localnet
 * 0; IPv6: its sends leave from ::1), and a connected socket's sends carry
 * no address for sendmsg4/6 to act on. Such servers need NAT mode: these
 * count them (udp_connects_unsupported), so `stats` says why the
 * container got no answer. Attached beside sendmsg4/6, with the same
 * checks; they always allow the connect.
 */
SEC("cgroup/connect4")
int dh_connect4(struct bpf_sock_addr *ctx)
{
	if (ctx->type != DH_SOCK_DGRAM || !dh_is_loopback(ctx->sk->src_ip4))
		return 1;
	if (dh_sock_flow_ours4(ctx))
		DH_COUNT(udp_connects_unsupported);
	return 1;
}

SEC("cgroup/connect6")
int dh_connect6(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	__u32 src[4];

	if (ctx->type != DH_SOCK_DGRAM)
		return 1;
	src[0] = sk->src_ip6[0];
	src[1] = sk->src_ip6[1];
	src[2] = sk->src_ip6[2];
	src[3] = sk->src_ip6[3];
	if (!dh_ipv6_is_loopback(src))
		return 1;
	if (dh_sock_flow_ours6(ctx))
		DH_COUNT(udp_connects_unsupported);
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
