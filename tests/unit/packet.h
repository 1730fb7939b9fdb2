/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Crafted frames for BPF_PROG_TEST_RUN, and checksums recomputed from
 * scratch to check the datapath's incremental fix-ups. */
#ifndef DH_TEST_PACKET_H
#define DH_TEST_PACKET_H

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "csum.h"

struct frame {
	uint8_t data[256];
	uint32_t len;
	uint32_t l3_off, l4_off;
};

struct flow {
	const char *saddr, *daddr;
	uint16_t sport, dport;  /* host order */
	uint8_t proto;
	uint8_t ip_option_words;  /* extra 32-bit words of IPv4 options */
	uint16_t frag_off;        /* host order, flags and offset */
	bool udp_no_csum;
	uint8_t tcp_flags;  /* 0: a SYN */
	const char *payload;
};

/* The IPv4 pseudo header of a TCP or UDP checksum: addresses from @ip. */
static inline uint32_t csum_pseudo_ipv4(const struct iphdr *ip, uint8_t proto, uint32_t l4_len)
{
	uint16_t rest[2] = { htons(proto), htons(l4_len) };

	return csum_add(csum_add(0, &ip->saddr, 8), rest, sizeof(rest));
}

/* The IPv6 one (RFC 8200 8.1); @addrs: source then destination, 32 bytes. */
static inline uint32_t csum_pseudo_ipv6(const void *addrs, uint8_t next_hdr, uint32_t l4_len)
{
	uint16_t rest[4] = { htons(l4_len >> 16), htons(l4_len & 0xffff), 0, htons(next_hdr) };

	return csum_add(csum_add(0, addrs, 32), rest, sizeof(rest));
}

/* A checksummed span (pseudo header sum @sum, then @len bytes with the
 * checksum field in place) is valid when it sums to all ones. */
static inline bool csum_valid(uint32_t sum, const void *buf, size_t len)
{
	return csum_fold(csum_add(sum, buf, len)) == 0;
}

/* The L4 checksum of the frame as it should be (network order), with the
 * checksum field itself counted as zero. */
static inline uint16_t l4_csum_expected(const struct frame *f)
{
	const struct iphdr *ip = (const void *)(f->data + f->l3_off);
	uint32_t l4_len = ntohs(ip->tot_len) - ip->ihl * 4;
	uint8_t copy[256];
	uint32_t sum = csum_pseudo_ipv4(ip, ip->protocol, l4_len);
	size_t csum_off = ip->protocol == IPPROTO_TCP ? offsetof(struct tcphdr, check)
						      : offsetof(struct udphdr, check);
	uint16_t result;

	memcpy(copy, f->data + f->l4_off, l4_len);
	memset(copy + csum_off, 0, 2);
	sum = csum_add(sum, copy, l4_len);
	result = csum_fold(sum);
	if (ip->protocol == IPPROTO_UDP && result == 0)
		result = 0xffff;  /* RFC 768: a computed 0 is sent as all ones */
	return htons(result);
}

static inline uint16_t ip_csum_expected(const struct frame *f)
{
	const struct iphdr *ip = (const void *)(f->data + f->l3_off);
	uint8_t copy[60];

	memcpy(copy, ip, ip->ihl * 4);
	memset(copy + offsetof(struct iphdr, check), 0, 2);
	return htons(csum_fold(csum_add(0, copy, ip->ihl * 4)));
}

static inline uint16_t *l4_csum_field(struct frame *f)
{
	const struct iphdr *ip = (const void *)(f->data + f->l3_off);

	return (uint16_t *)(f->data + f->l4_off +
			    (ip->protocol == IPPROTO_TCP ? offsetof(struct tcphdr, check)
							 : offsetof(struct udphdr, check)));
}

static inline void build_ipv4(struct frame *f, const struct flow *fl)
{
	struct ethhdr *eth = (void *)f->data;
	struct iphdr *ip;
	size_t payload_len = fl->payload ? strlen(fl->payload) : 0;
	size_t l4_len;

	memset(f, 0, sizeof(*f));
	memcpy(eth->h_dest, "\x02\x00\x00\x00\x00\x01", ETH_ALEN);
	memcpy(eth->h_source, "\x02\x00\x00\x00\x00\x02", ETH_ALEN);
	eth->h_proto = htons(ETH_P_IP);
	f->l3_off = sizeof(*eth);
	ip = (void *)(f->data + f->l3_off);
	ip->version = 4;
	ip->ihl = 5 + fl->ip_option_words;
	ip->ttl = 64;
	ip->protocol = fl->proto;
	ip->frag_off = htons(fl->frag_off);
	ip->id = htons(0x1234);
	inet_pton(AF_INET, fl->saddr, &ip->saddr);
	inet_pton(AF_INET, fl->daddr, &ip->daddr);
	/* NOP options: legal, and they move the L4 header. */
	memset(ip + 1, 1, fl->ip_option_words * 4);
	f->l4_off = f->l3_off + ip->ihl * 4;

	if (fl->proto == IPPROTO_TCP) {
		struct tcphdr *tcp = (void *)(f->data + f->l4_off);

		tcp->source = htons(fl->sport);
		tcp->dest = htons(fl->dport);
		tcp->seq = htonl(1000);
		tcp->doff = 5;
		((uint8_t *)tcp)[13] = fl->tcp_flags ? fl->tcp_flags : 0x02;
		tcp->window = htons(65535);
		l4_len = sizeof(*tcp);
	} else if (fl->proto == IPPROTO_UDP) {
		struct udphdr *udp = (void *)(f->data + f->l4_off);

		udp->source = htons(fl->sport);
		udp->dest = htons(fl->dport);
		udp->len = htons(sizeof(*udp) + payload_len);
		l4_len = sizeof(*udp);
	} else {
		l4_len = 8;  /* an ICMP echo-sized header of zeros */
		f->data[f->l4_off] = 8;
	}
	memcpy(f->data + f->l4_off + l4_len, fl->payload ? fl->payload : "", payload_len);
	ip->tot_len = htons(ip->ihl * 4 + l4_len + payload_len);
	f->len = f->l4_off + l4_len + payload_len;
	ip->check = ip_csum_expected(f);
	if (fl->proto == IPPROTO_TCP || (fl->proto == IPPROTO_UDP && !fl->udp_no_csum))
		*l4_csum_field(f) = l4_csum_expected(f);
}

#define ICMP_QUOTE_LEN (20 + 8)  /* IPv4 header and 8 bytes of L4 */

/* An ICMP error from @saddr to @daddr quoting the IPv4 packet in @cause. */
static inline void build_icmp_error(struct frame *f, const char *saddr, const char *daddr, uint8_t type,
			     uint8_t code, const struct frame *cause)
{
	const struct flow outer = { .saddr = saddr, .daddr = daddr, .proto = IPPROTO_ICMP };
	struct iphdr *ip;

	build_ipv4(f, &outer);  /* an 8-byte ICMP header of zeros */
	f->data[f->l4_off] = type;
	f->data[f->l4_off + 1] = code;
	memcpy(f->data + f->l4_off + 8, cause->data + cause->l3_off, ICMP_QUOTE_LEN);
	f->len = f->l4_off + 8 + ICMP_QUOTE_LEN;
	ip = (void *)(f->data + f->l3_off);
	ip->tot_len = htons(f->len - f->l3_off);
	ip->check = ip_csum_expected(f);
	*(uint16_t *)(f->data + f->l4_off + 2) = 0;
	*(uint16_t *)(f->data + f->l4_off + 2) =
		htons(csum_fold(csum_add(0, f->data + f->l4_off, f->len - f->l4_off)));
}

/* True if the ICMP message's checksum is right. */
static inline bool icmp_csum_valid(const struct frame *f)
{
	return csum_fold(csum_add(0, f->data + f->l4_off, f->len - f->l4_off)) == 0;
}

/* @len bytes as hex, 16 a line, each line indented by @indent. */
static inline void hex_dump(const char *indent, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	size_t i;

	for (i = 0; i < len; i++)
		printf("%s%02x%s", i % 16 ? "" : indent, p[i],
		       i % 16 == 15 || i + 1 == len ? "\n" : i % 2 ? " " : "");
}

/* Inserts @n 802.1Q/802.1ad tags after the MAC addresses: the frame as a
 * bridge device's tc sees it when a tag stack arrives (skb->protocol is
 * the first tag's TPID). */
static inline void push_vlan_tags(struct frame *f, const uint16_t *tpids, const uint16_t *vids, int n)
{
	uint8_t *p = f->data + 12;
	int i;

	memmove(p + 4 * n, p, f->len - 12);
	for (i = 0; i < n; i++) {
		uint16_t tpid = htons(tpids[i]), tci = htons(vids[i]);

		memcpy(p + 4 * i, &tpid, 2);
		memcpy(p + 4 * i + 2, &tci, 2);
	}
	f->len += 4 * n;
	f->l3_off += 4 * n;
	f->l4_off += 4 * n;
}

/* Writes @len bytes of IPv4 options (the header has room for them: see
 * flow.ip_option_words) and fixes the header checksum. */
static inline void set_ip_options(struct frame *f, const uint8_t *opts, size_t len)
{
	struct iphdr *ip = (void *)(f->data + f->l3_off);

	memcpy(ip + 1, opts, len);
	ip->check = ip_csum_expected(f);
}

#endif /* DH_TEST_PACKET_H */
