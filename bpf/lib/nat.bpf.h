/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The flow key shared by both directions. Ingress builds it from the
 * rewritten request (container -> loopback), egress from the reply
 * (loopback -> container); both must produce the same bytes, so both go
 * through dh_nat_key() and differ only in which side is which.
 */
#ifndef DH_NAT_BPF_H
#define DH_NAT_BPF_H

#include "parse.bpf.h"
#include "dockhost.h"

static __always_inline void dh_nat_key(struct dh_nat_key *key, __u32 ifindex, __u8 proto,
				       __u32 container_addr, __u16 container_port,
				       __u32 loopback_addr, __u16 loopback_port)
{
	__builtin_memset(key, 0, sizeof(*key));
	key->ifindex = ifindex;
	key->proto = proto;
	key->container_addr = container_addr;
	key->container_port = container_port;
	key->loopback_addr = loopback_addr;
	key->loopback_port = loopback_port;
}

/* Request seen at ingress, about to be sent to @target. */
static __always_inline void dh_nat_key_request(struct dh_nat_key *key, __u32 ifindex,
					       const struct dh_packet *pkt,
					       const struct dh_port_target *target)
{
	dh_nat_key(key, ifindex, pkt->proto, pkt->saddr, pkt->sport, target->addr, target->port);
}

/* Reply seen at egress. */
static __always_inline void dh_nat_key_reply(struct dh_nat_key *key, __u32 ifindex,
					     const struct dh_packet *pkt)
{
	dh_nat_key(key, ifindex, pkt->proto, pkt->daddr, pkt->dport, pkt->saddr, pkt->sport);
}

#endif /* DH_NAT_BPF_H */
