/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The loopback guard's checks, for packets arriving from the bridge. With
 * route_localnet=1 the kernel's martian check no longer stops 127/8 on the
 * bridge, so everything that could reach ip_rcv there with a loopback
 * address, or be steered to one, must be stopped here. Each check returns
 * true for "drop"; the caller counts the reason.
 */
#ifndef DH_GUARD_BPF_H
#define DH_GUARD_BPF_H

#include "parse.bpf.h"

#define IPOPT_END  0
#define IPOPT_NOOP 1
#define IPOPT_LSRR 131
#define IPOPT_SSRR 137
#define DH_IP_OPTS_MAX (IPV4_MAX_HLEN - IPV4_MIN_HLEN)
#define DH_IP_OPTS_BUF 64  /* a power of two above DH_IP_OPTS_MAX: indexes are masked */

struct dh_opts_walk {
	__u8 opts[DH_IP_OPTS_BUF];
	__u32 len;
	__u32 at;
	bool unsafe;
};

/* One option per call; returns 1 to stop. */
static long dh_opts_step(__u64 index, void *ctx)
{
	struct dh_opts_walk *w = ctx;
	__u32 at = w->at;
	__u8 type, opt_len;

	if (at >= w->len)
		return 1;
	type = w->opts[at & (DH_IP_OPTS_BUF - 1)];
	if (type == IPOPT_END)
		return 1;
	if (type == IPOPT_NOOP) {
		w->at = at + 1;
		return 0;
	}
	opt_len = w->opts[(at + 1) & (DH_IP_OPTS_BUF - 1)];
	if (type == IPOPT_LSRR || type == IPOPT_SSRR || at + 1 >= w->len || opt_len < 2 ||
	    at + opt_len > w->len) {
		w->unsafe = true;
		return 1;
	}
	w->at = at + opt_len;
	return 0;
}

/*
 * True if the IPv4 options carry a loose or strict source route, or cannot
 * be walked. A source route names the next hop in the options, not in the
 * destination: where accept_source_route=1, ip_rcv would route a packet
 * "to the gateway" on to 127.0.0.1 after we looked. Options that cannot be
 * walked are rejected by ip_options_compile() anyway, so dropping them
 * here loses nothing. The walk is a bpf_loop() callback: as an inline loop
 * its variable stride made the verifier explore every path (over 1M insns).
 */
static __always_inline bool dh_ipv4_options_unsafe(struct __sk_buff *skb, const struct dh_packet *pkt)
{
	struct dh_opts_walk walk = {};
	/* 64 bits, so the register checked is the one passed: with a __u32,
	 * clang checked a zero-extended copy and passed the original, whose
	 * bounds the verifier did not know. */
	__u64 len = (__u64)pkt->l4_off - pkt->l3_off - IPV4_MIN_HLEN;
	/* Verifier workaround (6.1): it learns nothing from "len != 0", so
	 * it saw 0..40 and refused a possibly zero-sized bpf_skb_load_bytes().
	 * One unsigned bound on len - 1 (0..39), kept apart by barrier_var()
	 * so clang cannot fold the + 1 back into len, gives 1..40. */
	__u64 len_1 = len - 1;

	if (len_1 >= DH_IP_OPTS_MAX)
		return true;
	barrier_var(len_1);
	if (bpf_skb_load_bytes(skb, pkt->l3_off + IPV4_MIN_HLEN, walk.opts, len_1 + 1))
		return true;
	walk.len = len;
	bpf_loop(DH_IP_OPTS_MAX, dh_opts_step, &walk, 0);
	return walk.unsafe;
}

/* ::1, or an IPv4-mapped 127/8 (::ffff:127.0.0.1). */
static __always_inline bool dh_ipv6_is_loopback(const __u32 addr[4])
{
	if (addr[0] || addr[1])
		return false;
	if (!addr[2])
		return addr[3] == bpf_htonl(1);
	return addr[2] == bpf_htonl(0xffff) && dh_is_loopback(addr[3]);
}


#endif /* DH_GUARD_BPF_H */
