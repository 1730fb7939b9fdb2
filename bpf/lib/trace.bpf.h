/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Trace events for `dockhost-bpf trace` (struct dh_trace_event), written
 * into trace_events only while trace_ctl says a trace is running: with
 * nobody tracing, an emitting path pays one array lookup (inlined by the
 * verifier) and never reserves. Only rare paths emit: a flow's first
 * packet, a refusal, a drop; no per-packet path of an established flow.
 *
 * Included by dockhost.bpf.c after its maps and counter macros.
 */
#ifndef DH_TRACE_BPF_H
#define DH_TRACE_BPF_H

#ifndef DH_F_CURRENT_NETNS
#define DH_F_CURRENT_NETNS (-1L)  /* BPF_F_CURRENT_NETNS, a macro in uapi */
#endif
/* dh_trace_packet's @mode when the caller has not looked it up: only a
 * traced event pays for the lookup. */
#define DH_TRACE_MODE_LOOKUP 0xff

/*
 * Submits without waking the reader: a wakeup from inside the datapath
 * (irq_work, then the reader's scheduling) cost some 6 us per event in
 * sk_lookup, measured, where the reservation costs a few dozen ns. trace
 * reads the ring every DH_TRACE_POLL_MS instead; a quarter-full ring wakes
 * it at once, so a burst never waits for the timer to make room.
 */
static __always_inline void dh_trace_submit(struct dh_trace_event *ev)
{
	__u64 flags = BPF_RB_NO_WAKEUP;

	if (bpf_ringbuf_query(&trace_events, BPF_RB_AVAIL_DATA) >= DH_TRACE_RING_SIZE / 4)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(ev, flags);
}

/* A zeroed event with its time, kind, bridge and reason filled in, to be
 * completed and bpf_ringbuf_submit()ted; NULL when nobody traces. A full
 * ring turns tracing off (see DH_TRACE_RING_SIZE): a trace killed without
 * clearing trace_ctl costs at most one ring of events. */
static __always_inline struct dh_trace_event *dh_trace_reserve(__u8 kind, __u32 ifindex, __u16 reason)
{
	struct dh_trace_event *ev;
	struct dh_trace_ctl *ctl;
	__u32 zero = 0;

	ctl = bpf_map_lookup_elem(&trace_ctl, &zero);
	if (!ctl || !ctl->enabled)
		return NULL;
	ev = bpf_ringbuf_reserve(&trace_events, sizeof(*ev), 0);
	if (!ev) {
		ctl->enabled = 0;
		__sync_fetch_and_add(&ctl->lost, 1);
		return NULL;
	}
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->ktime_ns = bpf_ktime_get_ns();
	ev->kind = kind;
	ev->ifindex = ifindex;
	ev->reason = reason;
	return ev;
}

static __always_inline bool dh_tracing(void)
{
	struct dh_trace_ctl *ctl;
	__u32 zero = 0;

	ctl = bpf_map_lookup_elem(&trace_ctl, &zero);
	return ctl && ctl->enabled;
}

/*
 * An event about a packet at tc ingress: its addresses and ports (as far
 * as they were read: @l3 from dh_parse()), source MAC, and @target's
 * address for @pkt's family (NULL: none). For the allow-lists, a source
 * that is not allowed is reported with
 *	dh_trace_packet(skb, pkt, l3, mode, DH_TRACE_DISALLOWED, DH_COUNTER_INDEX(counter), NULL);
 * where the check refuses it (and, in socket mode, with dh_trace_sk_lookup
 * if dh_sk_lookup refuses it too).
 */
static __always_inline void dh_trace_packet(struct __sk_buff *skb, const struct dh_packet *pkt,
					    enum dh_l3 l3, __u32 mode, __u8 kind, __u16 reason,
					    const struct dh_port_target *target)
{
	struct dh_trace_event *ev = dh_trace_reserve(kind, skb->ifindex, reason);

	if (!ev)
		return;
	if (mode == DH_TRACE_MODE_LOOKUP) {
		__u32 ifindex = skb->ifindex;
		struct dh_bridge_mode *known = bpf_map_lookup_elem(&modes, &ifindex);

		mode = known ? known->mode : DH_MODE_NAT;
	}
	ev->mode = mode;
	/* tc ingress sees the frame from its Ethernet header. */
	bpf_skb_load_bytes(skb, 6, ev->smac, sizeof(ev->smac));
	if (l3 == DH_L3_IPV6) {
		ev->family = DH_AF_INET6;
		__builtin_memcpy(ev->saddr, pkt->saddr6, sizeof(ev->saddr));
		__builtin_memcpy(ev->daddr, pkt->daddr6, sizeof(ev->daddr));
		if (target)
			__builtin_memcpy(ev->taddr, target->addr6, sizeof(ev->taddr));
	} else if (l3 == DH_L3_IPV4) {
		ev->family = DH_AF_INET;
		ev->saddr[0] = pkt->saddr;
		ev->daddr[0] = pkt->daddr;
		if (target)
			ev->taddr[0] = target->addr;
	}
	if (ev->family) {
		ev->proto = pkt->proto;
		ev->sport = pkt->sport;
		ev->dport = pkt->dport;
	}
	if (target)
		ev->tport = target->port;
	dh_trace_submit(ev);
}

/* An event from dh_sk_lookup: the stack's lookup names the packet. */
static __always_inline void dh_trace_sk_lookup(struct bpf_sk_lookup *ctx, __u8 kind, __u16 reason,
					       const struct dh_port_target *target)
{
	struct dh_trace_event *ev = dh_trace_reserve(kind, ctx->ingress_ifindex, reason);

	if (!ev)
		return;
	ev->mode = DH_MODE_SOCKET;
	ev->proto = ctx->protocol;
	if (ctx->family == DH_AF_INET6) {
		ev->family = DH_AF_INET6;
		/* One word at a time: the context takes no wider loads. */
		ev->saddr[0] = ctx->remote_ip6[0];
		ev->saddr[1] = ctx->remote_ip6[1];
		ev->saddr[2] = ctx->remote_ip6[2];
		ev->saddr[3] = ctx->remote_ip6[3];
		ev->daddr[0] = ctx->local_ip6[0];
		ev->daddr[1] = ctx->local_ip6[1];
		ev->daddr[2] = ctx->local_ip6[2];
		ev->daddr[3] = ctx->local_ip6[3];
		if (target)
			__builtin_memcpy(ev->taddr, target->addr6, sizeof(ev->taddr));
	} else {
		ev->family = DH_AF_INET;
		ev->saddr[0] = ctx->remote_ip4;
		ev->daddr[0] = ctx->local_ip4;
		if (target)
			ev->taddr[0] = target->addr;
	}
	/* remote_port is in network order, local_port in host order. */
	ev->sport = (__u16)ctx->remote_port;
	ev->dport = bpf_htons(ctx->local_port);
	if (target)
		ev->tport = target->port;
	dh_trace_submit(ev);
}

/*
 * NAT mode's new flow, just rewritten toward @target: a flow event, or a
 * refusal if no socket is there to take it (the kernel will answer with a
 * RST or a port unreachable). The lookup costs only while tracing. Any
 * socket matching the rewritten tuple counts: a listener, a UDP socket,
 * or the established socket a recreated flow still has.
 */
static __always_inline void dh_trace_nat_flow(struct __sk_buff *skb, const struct dh_packet *pkt,
					      const struct dh_port_target *target)
{
	bool found;

	if (!dh_tracing())
		return;
	found = dh_nat_target_open(skb, pkt, target);  /* lib/sources.bpf.h */
	dh_trace_packet(skb, pkt, DH_L3_IPV4, DH_MODE_NAT, found ? DH_TRACE_FLOW : DH_TRACE_REFUSED,
			found ? DH_COUNTER_INDEX(redirected) : DH_COUNTER_INDEX(passed_no_socket), target);
}

#endif /* DH_TRACE_BPF_H */
