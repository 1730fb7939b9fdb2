// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Property test of the datapath: random and mutated frames through
 * BPF_PROG_TEST_RUN on one freshly loaded skeleton, every output judged by
 * what the kernel would make of it after tc:
 *
 *   ingress_no_loopback       ingress passes nothing with a loopback source
 *                             or destination at L3, the IPv4 header found past
 *                             any stack of 802.1Q/802.1ad tags (the stack
 *                             strips VID-0 tags after tc and hands the rest
 *                             to ip_rcv), except a redirect: a gateway of the
 *                             bridge, a mapped (proto, port), and the output
 *                             going exactly to the mapped target;
 *   ingress_no_source_route   ingress passes no IPv4 packet carrying an LSRR
 *                             or SSRR option;
 *   egress_no_loopback_source egress passes nothing with a loopback source;
 *                             a loopback reply it rewrites belongs to a flow
 *                             one of our redirects created, and leaves with
 *                             that flow's gateway address and port, or, with
 *                             no flow, is a TCP segment (not a pure SYN) from
 *                             the target of a port mapped here without a port
 *                             change, and leaves from the bridge's primary
 *                             gateway with that port (a flow evicted from
 *                             nat_state, recorded again as guessed);
 *   checksums_kept            an IPv4 header, TCP, UDP (unless 0) or ICMP
 *                             checksum valid on input is valid on output.
 *
 * "Passes" is any verdict but TC_ACT_SHOT, so TC_ACT_OK and TC_ACT_UNSPEC
 * both count. Frames the test run refuses with EINVAL (shorter than
 * Ethernet, cut inside the IPv4 header) never reach tc: counted, not judged.
 *
 * Environment: DH_PROP_FRAMES (100000), DH_PROP_SEED (random, printed: give
 * it back to replay a run), DH_PROP_SKIP=vlan,srr,... leaves generators out
 * (and discards mutants that grew what they make), DH_PROP_SHOW (3)
 * violations printed per property.
 */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "dockhost.h"
#include "dockhost.skel.h"
#include "packet.h"

#define TC_ACT_SHOT   2
#define LO_IFINDEX    1  /* test runs see the netns's loopback device */
#define OTHER_IFINDEX 77 /* a bridge the frames never arrive on */

#define IPOPT_LSRR_T 131
#define IPOPT_SSRR_T 137

/* ---- configuration the datapath is loaded with ---------------------------- */

struct mapping {
	uint32_t ifindex;  /* 0: every bridge */
	uint8_t proto;
	uint16_t port;     /* host order, as are the targets' ports */
	const char *to;
	uint16_t to_port;
	uint32_t to_addr;  /* filled in from @to */
};

static struct mapping mappings[] = {
	{ 0, IPPROTO_TCP, 8088, "127.0.0.1", 8088, 0 },
	{ LO_IFINDEX, IPPROTO_TCP, 8088, "127.0.0.9", 9000, 0 },  /* overrides the global one */
	{ 0, IPPROTO_TCP, 5432, "127.0.0.7", 6543, 0 },
	{ 0, IPPROTO_UDP, 53, "127.0.0.53", 5300, 0 },
	{ LO_IFINDEX, IPPROTO_UDP, 8089, "127.0.0.3", 9089, 0 },
	{ OTHER_IFINDEX, IPPROTO_TCP, 9090, "127.0.0.1", 9090, 0 },  /* not this bridge's */
	{ 0, IPPROTO_TCP, 3000, "127.0.0.1", 3000, 0 },  /* no port change: replies guessable */
};
static const uint16_t interesting_ports[] = { 8088, 5432, 53, 8089, 9090, 22, 80, 3000 };

static const char *const gateway_names[] = { "10.0.0.1", "172.17.0.1" };  /* LO_IFINDEX */
#define N_GATEWAYS (sizeof(gateway_names) / sizeof(gateway_names[0]))
static uint32_t gateways[N_GATEWAYS];
static const char *const other_gateway_name = "10.0.9.1";  /* OTHER_IFINDEX */
static uint32_t other_gateway;

static const char *const container_names[] = { "10.0.0.2", "10.0.0.3", "172.17.0.5" };
static const char *const other_names[] = { "8.8.8.8", "10.0.0.255", "255.255.255.255",
					   "224.0.0.1", "0.0.0.0", "192.168.1.1" };
static const char *const loopback_names[] = { "127.0.0.1", "127.0.0.53", "127.0.0.9",
					      "127.255.255.255", "127.1.2.3" };

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static uint32_t ip(const char *text)
{
	uint32_t addr;

	inet_pton(AF_INET, text, &addr);
	return addr;
}

static bool is_loopback(uint32_t addr)
{
	return (ntohl(addr) >> 24) == 127;
}

static bool is_gateway(uint32_t addr)
{
	size_t i;

	for (i = 0; i < N_GATEWAYS; i++)
		if (gateways[i] == addr)
			return true;
	return false;
}

/* The datapath's lookup: the bridge's own entry, then the global one. */
static const struct mapping *lookup_mapping(uint32_t ifindex, uint8_t proto, uint16_t port)
{
	const struct mapping *global = NULL;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(mappings); i++) {
		if (mappings[i].proto != proto || mappings[i].port != port)
			continue;
		if (mappings[i].ifindex == ifindex)
			return &mappings[i];
		if (mappings[i].ifindex == 0)
			global = &mappings[i];
	}
	return global;
}

static int setup_maps(struct dockhost *skel)
{
	struct dh_gateway value = { .origin = DH_GW_BRIDGE };
	int ncpus = libbpf_num_possible_cpus();
	struct dh_port_stats zero[ncpus];
	size_t i;

	memset(zero, 0, sizeof(zero));
	for (i = 0; i < N_GATEWAYS; i++) {
		struct dh_gateway_key key = { .ifindex = LO_IFINDEX, .addr = gateways[i] };

		if (bpf_map__update_elem(skel->maps.gateways, &key, sizeof(key), &value, sizeof(value), 0))
			return -1;
	}
	struct dh_gateway_key other = { .ifindex = OTHER_IFINDEX, .addr = other_gateway };

	if (bpf_map__update_elem(skel->maps.gateways, &other, sizeof(other), &value, sizeof(value), 0))
		return -1;
	for (i = 0; i < ARRAY_SIZE(mappings); i++) {
		const struct mapping *m = &mappings[i];
		struct dh_port_key key = { .ifindex = m->ifindex, .port = htons(m->port), .proto = m->proto };
		struct dh_port_target target = { .addr = m->to_addr, .port = htons(m->to_port) };

		if (bpf_map__update_elem(skel->maps.ports, &key, sizeof(key), &target, sizeof(target), 0) ||
		    bpf_map__update_elem(skel->maps.port_stats, &key, sizeof(key), zero, sizeof(zero), 0))
			return -1;
	}
	return 0;
}

/* ---- random numbers --------------------------------------------------------- */

struct rng {
	uint64_t s;
};

static uint64_t rnd(struct rng *r)  /* splitmix64 */
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint32_t below(struct rng *r, uint32_t n)
{
	return n ? rnd(r) % n : 0;
}

static bool chance(struct rng *r, unsigned int percent)
{
	return below(r, 100) < percent;
}

#define PICK(r, a) ((a)[below((r), ARRAY_SIZE(a))])

/* ---- generators and what DH_PROP_SKIP can leave out ------------------------ */

enum {
	G_VLAN   = 1 << 0,  /* 802.1Q/802.1ad tag stacks */
	G_SRR    = 1 << 1,  /* LSRR/SSRR options */
	G_OPTS   = 1 << 2,  /* every IPv4 option */
	G_FRAG   = 1 << 3,
	G_IPV6   = 1 << 4,
	G_TRUNC  = 1 << 5,
	G_MUTATE = 1 << 6,
	G_EGRESS = 1 << 7,
	G_INGRESS = 1 << 8,
};

static const struct {
	const char *name;
	unsigned int bit;
} generator_names[] = {
	{ "vlan", G_VLAN }, { "srr", G_SRR }, { "opts", G_OPTS }, { "frag", G_FRAG },
	{ "ipv6", G_IPV6 }, { "trunc", G_TRUNC }, { "mutate", G_MUTATE },
	{ "egress", G_EGRESS }, { "ingress", G_INGRESS },
};

struct gen {
	struct rng r;
	unsigned int skip;
	bool ingress;
	char desc[256];
};

static void describe(struct gen *g, const char *fmt, ...)
{
	size_t used = strlen(g->desc);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(g->desc + used, sizeof(g->desc) - used, fmt, ap);
	va_end(ap);
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v & 0xff;
}

static uint16_t get16(const uint8_t *p)
{
	return (p[0] << 8) | p[1];
}

/* Ethernet and, sometimes, a stack of 1 to 4 tags; returns the L3 offset. */
static uint32_t put_eth(struct gen *g, struct frame *f, uint16_t ethertype)
{
	uint32_t off = 12;

	memset(f, 0, sizeof(*f));
	memcpy(f->data, "\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02", 12);
	if (!(g->skip & G_VLAN) && chance(&g->r, 25)) {
		unsigned int n = 1 + below(&g->r, 4), i;

		describe(g, " tags[");
		for (i = 0; i < n; i++) {
			uint16_t tpid = chance(&g->r, 50) ? ETH_P_8021Q : ETH_P_8021AD;
			uint16_t vid = chance(&g->r, 60) ? 0 : 1 + below(&g->r, 4094);

			put16(f->data + off, tpid);
			put16(f->data + off + 2, (below(&g->r, 8) << 13) | vid);
			off += 4;
			describe(g, "%s%04x/%u", i ? " " : "", tpid, vid);
		}
		describe(g, "]");
	}
	put16(f->data + off, ethertype);
	return off + 2;
}

/* IPv4 options, a multiple of 4 bytes; returns their length. */
static uint32_t put_ip_options(struct gen *g, uint8_t *opt)
{
	uint32_t len = 0, n = 1 + below(&g->r, 3), i, k;

	describe(g, " opts[");
	for (i = 0; i < n && len < 36; i++) {
		uint32_t room = 40 - len;
		unsigned int kind = below(&g->r, 8);

		if ((kind == 0 || kind == 1) && (g->skip & G_SRR))
			kind = 2;
		switch (kind) {
		case 0:
		case 1: {  /* LSRR / SSRR with 1 to 3 hops */
			uint32_t hops = 1 + below(&g->r, 3), optlen = 3 + 4 * hops;

			if (optlen > room)
				continue;
			opt[len] = kind == 0 ? IPOPT_LSRR_T : IPOPT_SSRR_T;
			opt[len + 1] = optlen;
			opt[len + 2] = chance(&g->r, 80) ? 4 : below(&g->r, 256);
			for (k = 0; k < hops; k++) {
				uint32_t hop = chance(&g->r, 50) ? ip(PICK(&g->r, loopback_names))
								 : gateways[below(&g->r, N_GATEWAYS)];

				memcpy(opt + len + 3 + 4 * k, &hop, 4);
			}
			describe(g, "%s%s", i ? "," : "", kind == 0 ? "lsrr" : "ssrr");
			len += optlen;
			break;
		}
		case 2: {  /* record route */
			uint32_t optlen = 3 + 4 * (1 + below(&g->r, 3));

			if (optlen > room)
				continue;
			opt[len] = 7;
			opt[len + 1] = optlen;
			opt[len + 2] = 4;
			len += optlen;
			describe(g, "%srr", i ? "," : "");
			break;
		}
		case 3: {  /* timestamp */
			uint32_t optlen = 4 + 4 * (1 + below(&g->r, 2));

			if (optlen > room)
				continue;
			opt[len] = 68;
			opt[len + 1] = optlen;
			opt[len + 2] = 5;
			len += optlen;
			describe(g, "%sts", i ? "," : "");
			break;
		}
		case 4:  /* router alert */
			if (room < 4)
				continue;
			memcpy(opt + len, "\x94\x04\x00\x00", 4);
			len += 4;
			describe(g, "%sra", i ? "," : "");
			break;
		case 5:  /* end of list, then whatever */
			opt[len++] = 0;
			describe(g, "%seol", i ? "," : "");
			break;
		case 6: {  /* an unknown option with a random length */
			uint32_t optlen = below(&g->r, room + 1);

			opt[len] = 0x1e + below(&g->r, 4);
			if (optlen > 1)
				opt[len + 1] = optlen;
			len += optlen ? optlen : 1;
			describe(g, "%s?%u", i ? "," : "", optlen);
			break;
		}
		default:
			opt[len++] = 1;
			describe(g, "%snop", i ? "," : "");
			break;
		}
	}
	describe(g, "]");
	while (len % 4)
		opt[len++] = chance(&g->r, 80) ? 1 : 0;
	return len;
}

struct l4_spec {
	uint8_t proto;
	uint16_t sport, dport;  /* host order */
	uint8_t tcp_flags;
	bool udp_no_csum;
	uint8_t icmp_type, icmp_code;
	const uint8_t *quote;  /* ICMP errors: the packet they are about */
	uint32_t quote_len;
};

/* The L4 header and payload at @l4, checksum field 0; returns the length
 * and sets *csum_off (-1: no checksum of ours to fill in). */
static uint32_t put_l4(struct gen *g, uint8_t *l4, const struct l4_spec *s, int *csum_off)
{
	uint32_t len, payload = chance(&g->r, 50) ? 0 : below(&g->r, 48), i;

	*csum_off = -1;
	switch (s->proto) {
	case IPPROTO_TCP:
		put16(l4, s->sport);
		put16(l4 + 2, s->dport);
		for (i = 4; i < 12; i++)
			l4[i] = rnd(&g->r);
		l4[12] = 5 << 4;
		l4[13] = s->tcp_flags;
		put16(l4 + 14, 65535);
		*csum_off = 16;
		len = 20;
		describe(g, " tcp %u>%u flags %#x", s->sport, s->dport, s->tcp_flags);
		break;
	case IPPROTO_UDP:
		put16(l4, s->sport);
		put16(l4 + 2, s->dport);
		put16(l4 + 4, 8 + payload);
		if (!s->udp_no_csum)
			*csum_off = 6;
		len = 8;
		describe(g, " udp %u>%u%s", s->sport, s->dport, s->udp_no_csum ? " nocsum" : "");
		break;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		l4[0] = s->icmp_type;
		l4[1] = s->icmp_code;
		for (i = 4; i < 8; i++)
			l4[i] = s->quote ? 0 : rnd(&g->r);
		*csum_off = 2;
		len = 8;
		if (s->quote) {
			memcpy(l4 + len, s->quote, s->quote_len);
			len += s->quote_len;
			payload = 0;
		}
		describe(g, " icmp %u/%u%s", s->icmp_type, s->icmp_code, s->quote ? " quote" : "");
		break;
	case 4:   /* IPIP */
	case 47:  /* GRE */ {
		/* To the gateway with an inner loopback destination: that is
		 * decapsulated on a tunnel device, out of our reach, but it
		 * must not trip the datapath. */
		struct iphdr inner = { .version = 4, .ihl = 5, .ttl = 64, .protocol = IPPROTO_UDP,
				       .tot_len = htons(28), .saddr = ip("10.0.0.2"),
				       .daddr = ip("127.0.0.1") };

		len = 0;
		if (s->proto == 47) {
			memcpy(l4, "\x00\x00\x08\x00", 4);
			len = 4;
		}
		memcpy(l4 + len, &inner, sizeof(inner));
		put16(l4 + len + 10, csum_fold(csum_add(0, &inner, sizeof(inner))));
		len += sizeof(inner);
		memcpy(l4 + len, "\x9c\x40\x1f\x98\x00\x08\x00\x00", 8);
		len += 8;
		describe(g, " %s", s->proto == 4 ? "ipip" : "gre");
		break;
	}
	default:
		len = 0;
		describe(g, " proto %u", s->proto);
		break;
	}
	for (i = 0; i < payload; i++)
		l4[len + i] = rnd(&g->r);
	return len + payload;
}

struct ipv4_spec {
	uint32_t saddr, daddr;
	uint16_t frag_off;  /* host order */
	struct l4_spec l4;
};

static void put_ipv4(struct gen *g, struct frame *f, const struct ipv4_spec *s)
{
	uint32_t l3 = put_eth(g, f, ETH_P_IP), opt_len = 0, l4_len;
	uint8_t *hdr = f->data + l3;
	struct iphdr iph = {};
	char src[16], dst[16];
	int csum_off;

	inet_ntop(AF_INET, &s->saddr, src, sizeof(src));
	inet_ntop(AF_INET, &s->daddr, dst, sizeof(dst));
	describe(g, " ipv4 %s>%s", src, dst);
	if (!(g->skip & G_OPTS) && chance(&g->r, 30))
		opt_len = put_ip_options(g, hdr + sizeof(iph));
	if (s->frag_off)
		describe(g, " frag %#x", s->frag_off);
	f->l3_off = l3;
	f->l4_off = l3 + sizeof(iph) + opt_len;
	l4_len = put_l4(g, f->data + f->l4_off, &s->l4, &csum_off);

	iph.version = 4;
	iph.ihl = (sizeof(iph) + opt_len) / 4;
	iph.tot_len = htons(sizeof(iph) + opt_len + l4_len);
	iph.id = rnd(&g->r);
	iph.frag_off = htons(s->frag_off);
	iph.ttl = 64;
	iph.protocol = s->l4.proto;
	iph.saddr = s->saddr;
	iph.daddr = s->daddr;
	memcpy(hdr, &iph, sizeof(iph));
	f->len = f->l4_off + l4_len;
	memcpy(hdr + offsetof(struct iphdr, check), &(uint16_t){ ip_csum_expected(f) }, 2);

	/* Later fragments carry no L4 header: their bytes stay as drawn. */
	if (csum_off >= 0 && !(s->frag_off & 0x1fff)) {
		uint8_t *l4 = f->data + f->l4_off;
		uint32_t sum = s->l4.proto == IPPROTO_ICMP ? 0
						  : csum_pseudo_ipv4(&iph, s->l4.proto, l4_len);
		uint16_t check = csum_fold(csum_add(sum, l4, l4_len));

		if (s->l4.proto == IPPROTO_UDP && check == 0)
			check = 0xffff;
		put16(l4 + csum_off, check);
	}
}

static void put_ipv6(struct gen *g, struct frame *f)
{
	static const char *const dsts[] = { "::1", "::ffff:127.0.0.1", "::127.0.0.1",
					    "::ffff:10.0.0.1", "fe80::1", "fd00::1" };
	static const char *const srcs[] = { "fd00::2", "::ffff:10.0.0.2", "::1", "fe80::2" };
	static const uint8_t protos[] = { IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6 };
	uint32_t l3 = put_eth(g, f, ETH_P_IPV6), l4_len;
	const char *src = PICK(&g->r, srcs), *dst = PICK(&g->r, dsts);
	struct l4_spec s = { .proto = PICK(&g->r, protos), .sport = 40000 + below(&g->r, 32),
			     .dport = PICK(&g->r, interesting_ports), .tcp_flags = 0x02,
			     .icmp_type = 128 };
	uint8_t *hdr = f->data + l3, *l4 = hdr + 40;
	int csum_off;

	describe(g, " ipv6 %s>%s", src, dst);
	l4_len = put_l4(g, l4, &s, &csum_off);
	hdr[0] = 0x60;
	put16(hdr + 4, l4_len);
	hdr[6] = s.proto;
	hdr[7] = 64;
	inet_pton(AF_INET6, src, hdr + 8);
	inet_pton(AF_INET6, dst, hdr + 24);
	if (csum_off >= 0) {
		uint16_t check = csum_fold(csum_add(csum_pseudo_ipv6(hdr + 8, s.proto, l4_len), l4, l4_len));

		put16(l4 + csum_off, check ? check : 0xffff);
	}
	f->l3_off = l3;
	f->l4_off = l3 + 40;
	f->len = f->l4_off + l4_len;
}

static void put_other(struct gen *g, struct frame *f)
{
	static const uint16_t types[] = { 0x0806, 0x8035, 0x88cc, 0x0801, 0x8847 };
	uint16_t type = PICK(&g->r, types);
	uint32_t l3 = put_eth(g, f, type), len = below(&g->r, 64), i;

	describe(g, " ethertype %#06x", type);
	for (i = 0; i < len; i++)
		f->data[l3 + i] = rnd(&g->r);
	f->len = l3 + len;
}

static uint16_t pick_port(struct gen *g)
{
	return chance(&g->r, 60) ? PICK(&g->r, interesting_ports) : below(&g->r, 65536);
}

static uint8_t pick_tcp_flags(struct gen *g)
{
	static const uint8_t flags[] = { 0x02, 0x02, 0x02, 0x10, 0x12, 0x18, 0x04, 0x11 };

	return chance(&g->r, 90) ? PICK(&g->r, flags) : rnd(&g->r);
}

static uint16_t pick_frag_off(struct gen *g)
{
	if ((g->skip & G_FRAG) || !chance(&g->r, 12))
		return chance(&g->r, 30) ? 0x4000 /* DF */ : 0;
	switch (below(&g->r, 3)) {
	case 0:
		return 0x2000;  /* first: MF, offset 0 */
	case 1:
		return 0x2000 | (1 + below(&g->r, 100));
	default:
		return 1 + below(&g->r, 100);  /* last */
	}
}

static void pick_l4(struct gen *g, struct l4_spec *s)
{
	static const uint8_t others[] = { 4 /* IPIP */, 47 /* GRE */, 41, 132, 255 };
	unsigned int p = below(&g->r, 100);

	s->proto = p < 40 ? IPPROTO_TCP : p < 75 ? IPPROTO_UDP : p < 90 ? IPPROTO_ICMP : PICK(&g->r, others);
	s->sport = chance(&g->r, 70) ? 40000 + below(&g->r, 32) : below(&g->r, 65536);
	s->dport = pick_port(g);
	s->tcp_flags = pick_tcp_flags(g);
	s->udp_no_csum = chance(&g->r, 10);
	s->icmp_type = chance(&g->r, 70) ? 8 : below(&g->r, 20);
}

/* ---- flows our redirects created ------------------------------------------ */

/* The reply's view, host-order ports; both ports 0: any flow between
 * these addresses, for fragments. */
struct flow_key {
	uint32_t container, loopback;
	uint16_t container_port, loopback_port;
	uint8_t proto;
};

#define MAX_ORIGINS 4
struct tracked {
	bool used;
	struct flow_key key;
	uint8_t n;
	uint32_t gateway[MAX_ORIGINS];
	uint16_t gateway_port[MAX_ORIGINS];
};

#define TRACK_SLOTS (1u << 17)
static struct tracked *tracked;
static uint32_t n_tracked;

static bool key_eq(const struct flow_key *a, const struct flow_key *b)
{
	return a->container == b->container && a->loopback == b->loopback &&
	       a->container_port == b->container_port && a->loopback_port == b->loopback_port &&
	       a->proto == b->proto;
}

static struct tracked *track_slot(const struct flow_key *k)
{
	uint64_t h = ((uint64_t)k->container * 0x9e3779b97f4a7c15ULL) ^ k->loopback ^
		     ((uint64_t)k->container_port << 32) ^ ((uint64_t)k->loopback_port << 16) ^ k->proto;
	uint32_t i = (h ^ (h >> 29)) * 0xbf58476dULL;

	for (;; i++) {
		struct tracked *t = &tracked[i % TRACK_SLOTS];

		if (!t->used || key_eq(&t->key, k))
			return t;
	}
}

static const struct tracked *track_find(const struct flow_key *k)
{
	const struct tracked *t = track_slot(k);

	return t->used ? t : NULL;
}

static void track_add(const struct flow_key *k, uint32_t gateway, uint16_t gateway_port)
{
	struct tracked *t = track_slot(k);
	unsigned int i;

	if (!t->used) {
		if (n_tracked >= TRACK_SLOTS / 2)
			return;  /* never with the default frame count */
		t->used = true;
		t->key = *k;
		n_tracked++;
	}
	for (i = 0; i < t->n; i++)
		if (t->gateway[i] == gateway && t->gateway_port[i] == gateway_port)
			return;
	if (t->n < MAX_ORIGINS) {
		t->gateway[t->n] = gateway;
		t->gateway_port[t->n++] = gateway_port;
	}
}

static bool track_has_origin(const struct tracked *t, uint32_t gateway, int gateway_port)
{
	unsigned int i;

	for (i = 0; t && i < t->n; i++)
		if (t->gateway[i] == gateway && (gateway_port < 0 || t->gateway_port[i] == gateway_port))
			return true;
	return false;
}

/* Recent redirects, for egress replies and ICMP errors about them. */
struct recent {
	struct flow_key key;
	uint8_t quote[68];  /* the redirected request's IPv4 header and 8 bytes */
	uint32_t quote_len;
};

#define N_RECENT 64
static struct recent recent[N_RECENT];
static uint32_t n_recent;

/* ---- frames ----------------------------------------------------------------- */

static void gen_ingress(struct gen *g, struct frame *f)
{
	unsigned int kind = below(&g->r, 100), d;
	struct ipv4_spec s = {};

	describe(g, "ingress");
	if (kind < 8 && !(g->skip & G_IPV6))
		return put_ipv6(g, f);
	if (kind < 12)
		return put_other(g, f);

	d = below(&g->r, 100);
	if (d < 85)
		s.saddr = ip(PICK(&g->r, container_names));
	else if (d < 93)
		s.saddr = ip(PICK(&g->r, loopback_names));
	else
		s.saddr = ip(PICK(&g->r, other_names));
	d = below(&g->r, 100);
	if (d < 45)
		s.daddr = gateways[below(&g->r, N_GATEWAYS)];
	else if (d < 65)
		s.daddr = chance(&g->r, 70) ? ip(PICK(&g->r, loopback_names))
					    : htonl(0x7f000000 | below(&g->r, 1 << 24));
	else if (d < 70)
		s.daddr = other_gateway;
	else
		s.daddr = ip(PICK(&g->r, other_names));
	s.frag_off = pick_frag_off(g);
	pick_l4(g, &s.l4);
	put_ipv4(g, f, &s);
}

static void gen_egress(struct gen *g, struct frame *f)
{
	unsigned int kind = below(&g->r, 100);
	struct ipv4_spec s = {};

	describe(g, "egress");
	if (kind < 45 && n_recent) {
		/* A reply of a flow we redirected (or nearly: a wrong port). */
		const struct recent *rc = &recent[below(&g->r, n_recent < N_RECENT ? n_recent : N_RECENT)];

		describe(g, " reply");
		s.saddr = rc->key.loopback;
		s.daddr = rc->key.container;
		s.frag_off = chance(&g->r, 5) ? pick_frag_off(g) : 0;
		s.l4.proto = rc->key.proto;
		s.l4.sport = rc->key.loopback_port;
		s.l4.dport = rc->key.container_port;
		if (chance(&g->r, 10))
			s.l4.dport = below(&g->r, 65536);
		s.l4.tcp_flags = chance(&g->r, 70) ? 0x12 : pick_tcp_flags(g);
		s.l4.udp_no_csum = chance(&g->r, 10);
		return put_ipv4(g, f, &s);
	}
	if (kind < 60 && n_recent) {
		/* An ICMP error from the target about the redirected request. */
		const struct recent *rc = &recent[below(&g->r, n_recent < N_RECENT ? n_recent : N_RECENT)];
		static const uint8_t types[] = { 3, 3, 11, 12, 0, 5 };

		describe(g, " icmp-error");
		s.saddr = chance(&g->r, 85) ? rc->key.loopback : ip(PICK(&g->r, loopback_names));
		s.daddr = rc->key.container;
		s.l4.proto = IPPROTO_ICMP;
		s.l4.icmp_type = PICK(&g->r, types);
		s.l4.icmp_code = s.l4.icmp_type == 3 ? below(&g->r, 5) : 0;
		s.l4.quote = rc->quote;
		s.l4.quote_len = rc->quote_len;
		return put_ipv4(g, f, &s);
	}
	s.saddr = chance(&g->r, 50) ? ip(PICK(&g->r, loopback_names))
				    : chance(&g->r, 50) ? gateways[below(&g->r, N_GATEWAYS)]
							: ip(PICK(&g->r, other_names));
	s.daddr = chance(&g->r, 85) ? ip(PICK(&g->r, container_names)) : ip(PICK(&g->r, other_names));
	s.frag_off = pick_frag_off(g);
	pick_l4(g, &s.l4);
	s.l4.icmp_type = below(&g->r, 20);
	put_ipv4(g, f, &s);
}

static void mutate(struct gen *g, struct frame *f)
{
	static const uint8_t values[] = { 0x00, 0xff, 0x7f, 0x83, 0x89, 0x81, 0x88, 0xa8,
					  0x08, 0x45, 0x01, 0x46, 0x4f };
	unsigned int n = 1 + below(&g->r, 3), i;

	describe(g, " mutated[");
	for (i = 0; i < n && f->len; i++) {
		/* Headers matter more than payload: aim most changes there. */
		uint32_t hot = f->len < 100 ? f->len : 100;
		uint32_t at = chance(&g->r, 80) ? below(&g->r, hot) : below(&g->r, f->len);
		uint32_t k = 1 + below(&g->r, 8), j;

		switch (below(&g->r, 6)) {
		case 0:
			f->data[at] ^= 1 << below(&g->r, 8);
			describe(g, "%sflip@%u", i ? " " : "", at);
			break;
		case 1:
			f->data[at] = chance(&g->r, 50) ? PICK(&g->r, values) : rnd(&g->r);
			describe(g, "%sset@%u", i ? " " : "", at);
			break;
		case 2:
			if (f->len + k > sizeof(f->data))
				break;
			memmove(f->data + at + k, f->data + at, f->len - at);
			for (j = 0; j < k; j++)
				f->data[at + j] = rnd(&g->r);
			f->len += k;
			describe(g, "%sins@%u+%u", i ? " " : "", at, k);
			break;
		case 3:
			if (at + k > f->len)
				k = f->len - at;
			memmove(f->data + at, f->data + at + k, f->len - at - k);
			f->len -= k;
			describe(g, "%sdel@%u+%u", i ? " " : "", at, k);
			break;
		case 4:
			f->len = at;
			describe(g, "%scut@%u", i ? " " : "", at);
			break;
		default:  /* an IPv4 header with a wrong length field */
			if (at + 1 < f->len) {
				f->data[at + 1] = below(&g->r, 256);
				describe(g, "%sbyte2@%u", i ? " " : "", at);
			}
			break;
		}
	}
	describe(g, "]");
}

/* ---- what the kernel sees --------------------------------------------------- */

/* The IPv4 header the stack would hand to ip_rcv: past the tags when
 * @skip_tags, version 4 and a sane IHL (ip_rcv drops anything else). */
struct view {
	bool ipv4;
	uint32_t l3, hlen;  /* hlen: IHL * 4, maybe past the frame's end */
	struct iphdr ip;
	uint32_t tags;
};

static struct view view_of(const struct frame *f, bool skip_tags)
{
	struct view v = {};
	uint32_t off = 12;

	if (f->len < off + 2)
		return v;
	while (skip_tags && (get16(f->data + off) == ETH_P_8021Q || get16(f->data + off) == ETH_P_8021AD)) {
		off += 4;
		v.tags++;
		if (f->len < off + 2)
			return v;
	}
	if (get16(f->data + off) != ETH_P_IP || f->len < off + 2 + sizeof(v.ip))
		return v;
	v.l3 = off + 2;
	memcpy(&v.ip, f->data + v.l3, sizeof(v.ip));
	v.hlen = v.ip.ihl * 4;
	v.ipv4 = v.ip.version == 4 && v.hlen >= sizeof(v.ip);
	return v;
}

static bool is_fragment(const struct view *v)
{
	return ntohs(v->ip.frag_off) & 0x3fff;
}

/* TCP/UDP ports of an unfragmented packet, host order. */
static bool ports_of(const struct frame *f, const struct view *v, uint16_t *sport, uint16_t *dport)
{
	uint32_t l4 = v->l3 + v->hlen;

	if (!v->ipv4 || is_fragment(v) || l4 + 4 > f->len)
		return false;
	*sport = get16(f->data + l4);
	*dport = get16(f->data + l4 + 2);
	return true;
}

/* Walks the options as ip_options_compile() does, up to where it would
 * stop; a malformed list gets the packet dropped there anyway. */
static bool has_source_route(const struct frame *f, const struct view *v)
{
	uint32_t end = v->l3 + v->hlen, off;

	if (end > f->len)
		end = f->len;
	for (off = v->l3 + sizeof(struct iphdr); off < end;) {
		uint8_t type = f->data[off];

		if (type == 0)
			break;
		if (type == 1) {
			off++;
			continue;
		}
		if (type == IPOPT_LSRR_T || type == IPOPT_SSRR_T)
			return true;
		if (off + 1 >= end || f->data[off + 1] < 2)
			break;
		off += f->data[off + 1];
	}
	return false;
}

enum { CS_NONE, CS_BAD, CS_OK };

struct csums {
	int ip, l4;
	int quote_ip;  /* the IPv4 header an ICMP error quotes */
	bool udp_zero;
};

/* Checksum states as the receiver would check them: the IPv4 header over
 * IHL, L4 over what the total length (UDP: its own length) covers. */
static struct csums csums_of(const struct frame *f, const struct view *v)
{
	struct csums c = { CS_NONE, CS_NONE, CS_NONE, false };
	uint32_t tot = ntohs(v->ip.tot_len), l4 = v->l3 + v->hlen, l4_len;
	const uint8_t *p = f->data + l4;

	if (!v->ipv4 || v->l3 + v->hlen > f->len)
		return c;
	c.ip = csum_valid(0, f->data + v->l3, v->hlen) ? CS_OK : CS_BAD;
	if (is_fragment(v) || tot < v->hlen || v->l3 + tot > f->len)
		return c;
	l4_len = tot - v->hlen;
	switch (v->ip.protocol) {
	case IPPROTO_TCP:
		if (l4_len >= sizeof(struct tcphdr))
			c.l4 = csum_valid(csum_pseudo_ipv4(&v->ip, IPPROTO_TCP, l4_len), p, l4_len) ? CS_OK : CS_BAD;
		break;
	case IPPROTO_UDP: {
		uint32_t ulen = l4_len >= 8 ? get16(p + 4) : 0;

		if (ulen < 8 || ulen > l4_len)
			break;
		if (get16(p + 6) == 0) {
			c.udp_zero = true;
			break;
		}
		c.l4 = csum_valid(csum_pseudo_ipv4(&v->ip, IPPROTO_UDP, ulen), p, ulen) ? CS_OK : CS_BAD;
		break;
	}
	case IPPROTO_ICMP:
		if (l4_len < 8)
			break;
		c.l4 = csum_valid(0, p, l4_len) ? CS_OK : CS_BAD;
		if (l4_len >= 8 + sizeof(struct iphdr) && (p[8] >> 4) == 4 && (p[8] & 0xf) >= 5 &&
		    8 + (p[8] & 0xf) * 4u <= l4_len)
			c.quote_ip = csum_valid(0, p + 8, (p[8] & 0xf) * 4) ? CS_OK : CS_BAD;
		break;
	}
	return c;
}

/* ---- judging ------------------------------------------------------------------ */

enum { P_INGRESS_LOOPBACK, P_SOURCE_ROUTE, P_EGRESS_LOOPBACK, P_CHECKSUMS, N_PROPS };
static const char *const prop_names[N_PROPS] = {
	"property_ingress_no_loopback", "property_ingress_no_source_route",
	"property_egress_no_loopback_source", "property_checksums_kept",
};

static struct {
	uint64_t seed;
	uint32_t index, show;
	const struct gen *g;
	const struct frame *in, *out;
	int verdict;
	uint32_t violations[N_PROPS];
} cur;

static void violation(int prop, const char *fmt, ...)
{
	va_list ap;

	if (cur.violations[prop]++ >= cur.show)
		return;
	printf("    %s: seed %#llx frame %u: %s verdict %d: ", prop_names[prop],
	       (unsigned long long)cur.seed, cur.index, cur.g->ingress ? "ingress" : "egress", cur.verdict);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n      frame:%s\n", cur.g->desc + strlen(cur.g->ingress ? "ingress" : "egress"));
	printf("      in (%u bytes):\n", cur.in->len);
	hex_dump("        ", cur.in->data, cur.in->len);
	printf("      out (%u bytes):\n", cur.out->len);
	hex_dump("        ", cur.out->data, cur.out->len);
	printf("      replay: DH_PROP_SEED=%#llx DH_PROP_FRAMES=%u\n", (unsigned long long)cur.seed,
	       cur.index + 1);
}

static const char *addr_str(uint32_t addr)
{
	static char buf[4][16];
	static int n;

	return inet_ntop(AF_INET, &addr, buf[n++ % 4], 16);
}

static struct {
	uint64_t runs, not_runnable, dropped, passed, redirects, replies, icmp_errors, guessed;
	uint64_t csums_judged, tagged_loopback, source_routed, run_errors;
} stats;

static void judge_checksums(const struct frame *in, const struct frame *out)
{
	struct view vi = view_of(in, true), vo = view_of(out, true);
	struct csums ci, co;

	if (!vi.ipv4)
		return;
	ci = csums_of(in, &vi);
	co = csums_of(out, &vo);
	if (ci.ip == CS_OK) {
		stats.csums_judged++;
		if (co.ip != CS_OK)
			violation(P_CHECKSUMS, "IPv4 header checksum %s on output",
				  co.ip == CS_BAD ? "wrong" : "not found");
	}
	if (ci.l4 == CS_OK) {
		stats.csums_judged++;
		if (co.l4 != CS_OK)
			violation(P_CHECKSUMS, "protocol %u checksum %s on output", vi.ip.protocol,
				  co.l4 == CS_BAD ? "wrong" : co.udp_zero ? "turned 0" : "not found");
	}
	if (ci.quote_ip == CS_OK) {
		stats.csums_judged++;
		if (co.quote_ip != CS_OK)
			violation(P_CHECKSUMS, "the quoted IPv4 header's checksum %s on output",
				  co.quote_ip == CS_BAD ? "wrong" : "not found");
	}
}

static void judge_ingress(const struct frame *in, const struct frame *out)
{
	struct view vi = view_of(in, true), vo = view_of(out, true);
	uint16_t sport, dport, out_sport, out_dport;
	const struct mapping *m;

	if (!vo.ipv4)
		return;
	if (has_source_route(out, &vo))
		violation(P_SOURCE_ROUTE, "an LSRR/SSRR option passes (%s > %s)", addr_str(vo.ip.saddr),
			  addr_str(vo.ip.daddr));
	if (is_loopback(vo.ip.saddr))
		violation(P_INGRESS_LOOPBACK, "loopback source %s passes%s", addr_str(vo.ip.saddr),
			  vo.tags ? " (inside tags)" : "");
	if (!is_loopback(vo.ip.daddr))
		return;

	/* A loopback destination: only our redirect may have put it there. */
	if (!vi.ipv4 || !is_gateway(vi.ip.daddr) || is_loopback(vi.ip.saddr) ||
	    !ports_of(in, &vi, &sport, &dport) ||
	    !(m = lookup_mapping(LO_IFINDEX, vi.ip.protocol, dport))) {
		violation(P_INGRESS_LOOPBACK, "destination %s passes%s, not a redirect of a mapped port",
			  addr_str(vo.ip.daddr), vo.tags ? " (inside tags)" : "");
		return;
	}
	if (vo.ip.daddr != m->to_addr || !ports_of(out, &vo, &out_sport, &out_dport) ||
	    out_dport != m->to_port || out_sport != sport || vo.ip.protocol != vi.ip.protocol) {
		violation(P_INGRESS_LOOPBACK, "%u/%u to %s redirected to %s:%u, mapped to %s:%u",
			  vi.ip.protocol, dport, addr_str(vi.ip.daddr), addr_str(vo.ip.daddr),
			  ports_of(out, &vo, &out_sport, &out_dport) ? out_dport : 0, m->to, m->to_port);
		return;
	}

	/* A redirect: the flow may see replies now. */
	struct flow_key key = { .container = vi.ip.saddr, .loopback = vo.ip.daddr, .container_port = sport,
				.loopback_port = out_dport, .proto = vi.ip.protocol };
	struct recent *rc = &recent[n_recent++ % N_RECENT];
	uint32_t quote_len = vo.hlen + 8;

	stats.redirects++;
	track_add(&key, vi.ip.daddr, dport);
	track_add(&(struct flow_key){ .container = key.container, .loopback = key.loopback,
				      .proto = key.proto }, vi.ip.daddr, 0);
	rc->key = key;
	if (vo.l3 + quote_len > out->len)
		quote_len = out->len - vo.l3;
	if (quote_len > sizeof(rc->quote))
		quote_len = sizeof(rc->quote);
	memcpy(rc->quote, out->data + vo.l3, quote_len);
	rc->quote_len = quote_len;
}

/* The bridge's own addresses first (all of ours are), then the lowest. */
static uint32_t primary_gateway(void)
{
	uint32_t best = gateways[0];
	size_t i;

	for (i = 1; i < N_GATEWAYS; i++)
		if (ntohl(gateways[i]) < ntohl(best))
			best = gateways[i];
	return best;
}

/* A TCP segment with no flow that egress may send from the primary
 * gateway: not a pure SYN, from the exact target of a port mapped on this
 * bridge without a port change. */
static bool guessable(const struct frame *in, const struct view *vi, uint16_t sport)
{
	const struct mapping *m = lookup_mapping(LO_IFINDEX, IPPROTO_TCP, sport);
	uint32_t flags_at = vi->l3 + vi->hlen + 13;

	if (vi->ip.protocol != IPPROTO_TCP || is_fragment(vi) || flags_at >= in->len ||
	    (in->data[flags_at] & 0x12) == 0x02)
		return false;
	return m && m->to_addr == vi->ip.saddr && m->to_port == sport && m->port == sport;
}

static void judge_egress(const struct frame *in, const struct frame *out)
{
	/* Untagged only: the host's own stack puts tags in the skb's
	 * metadata, not in the frame, and a VLAN device has its own
	 * route_localnet. */
	struct view vi = view_of(in, false), vo = view_of(out, false);
	uint16_t sport, dport, out_sport, out_dport;

	if (!vo.ipv4)
		return;
	if (is_loopback(vo.ip.saddr)) {
		violation(P_EGRESS_LOOPBACK, "loopback source %s passes to %s", addr_str(vo.ip.saddr),
			  addr_str(vo.ip.daddr));
		return;
	}
	if (!vi.ipv4 || !is_loopback(vi.ip.saddr))
		return;

	/* Rewritten from a loopback source: only a reply of our flows. */
	if (vi.ip.protocol == IPPROTO_ICMP) {
		uint32_t q = vi.l3 + vi.hlen + 8;
		struct iphdr inner;
		struct flow_key key = {};

		if (q + sizeof(inner) + 4 <= in->len) {
			memcpy(&inner, in->data + q, sizeof(inner));
			q += inner.ihl * 4;
			if (q + 4 <= in->len) {
				key = (struct flow_key){ .container = inner.saddr, .loopback = inner.daddr,
							 .container_port = get16(in->data + q),
							 .loopback_port = get16(in->data + q + 2),
							 .proto = inner.protocol };
			}
		}
		if (!track_has_origin(track_find(&key), vo.ip.saddr, -1))
			violation(P_EGRESS_LOOPBACK, "ICMP from %s rewritten to %s, not about a tracked flow "
				  "from that gateway", addr_str(vi.ip.saddr), addr_str(vo.ip.saddr));
		else if (vo.ip.daddr != key.container)
			violation(P_EGRESS_LOOPBACK, "ICMP error about a flow of %s rewritten and sent to %s",
				  addr_str(key.container), addr_str(vo.ip.daddr));
		else
			stats.icmp_errors++;
		return;
	}
	if (is_fragment(&vi)) {
		/* Fragments carry no ports (or only the first does): the
		 * addresses must be those of a tracked flow. */
		struct flow_key pair = { .container = vi.ip.daddr, .loopback = vi.ip.saddr,
					 .proto = vi.ip.protocol };

		if (!track_has_origin(track_find(&pair), vo.ip.saddr, -1))
			violation(P_EGRESS_LOOPBACK, "fragment from %s rewritten to %s, not a tracked flow's gateway",
				  addr_str(vi.ip.saddr), addr_str(vo.ip.saddr));
		return;
	}
	if (!ports_of(in, &vi, &sport, &dport) || !ports_of(out, &vo, &out_sport, &out_dport)) {
		violation(P_EGRESS_LOOPBACK, "protocol %u from %s rewritten to %s", vi.ip.protocol,
			  addr_str(vi.ip.saddr), addr_str(vo.ip.saddr));
		return;
	}
	struct flow_key key = { .container = vi.ip.daddr, .loopback = vi.ip.saddr, .container_port = dport,
				.loopback_port = sport, .proto = vi.ip.protocol };

	if (track_has_origin(track_find(&key), vo.ip.saddr, out_sport)) {
		stats.replies++;
	} else if (guessable(in, &vi, sport) && vo.ip.saddr == primary_gateway() && out_sport == sport &&
		   vo.ip.daddr == vi.ip.daddr && out_dport == dport) {
		/* The datapath recorded the flow: its later replies are tracked. */
		stats.guessed++;
		track_add(&key, vo.ip.saddr, out_sport);
		track_add(&(struct flow_key){ .container = key.container, .loopback = key.loopback,
					      .proto = key.proto }, vo.ip.saddr, 0);
	} else {
		violation(P_EGRESS_LOOPBACK, "%u/%s:%u rewritten to %s:%u, not a tracked flow's gateway",
			  vi.ip.protocol, addr_str(vi.ip.saddr), sport, addr_str(vo.ip.saddr), out_sport);
	}
}

/* ---- runner ------------------------------------------------------------------- */

static unsigned int parse_skip(const char *list)
{
	unsigned int skip = 0;
	char *copy = strdup(list), *save = NULL, *name;
	size_t i;

	for (name = strtok_r(copy, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
		for (i = 0; i < ARRAY_SIZE(generator_names); i++)
			if (!strcmp(name, generator_names[i].name))
				break;
		if (i == ARRAY_SIZE(generator_names)) {
			fprintf(stderr, "DH_PROP_SKIP: unknown generator '%s' (known: vlan srr opts frag ipv6 "
				"trunc mutate egress ingress)\n", name);
			exit(2);
		}
		skip |= generator_names[i].bit;
	}
	free(copy);
	return skip;
}

static unsigned long long env_number(const char *name, unsigned long long fallback)
{
	const char *text = getenv(name);
	char *end;
	unsigned long long v;

	if (!text || !*text)
		return fallback;
	errno = 0;
	v = strtoull(text, &end, 0);
	if (errno || *end) {
		fprintf(stderr, "%s: not a number: '%s'\n", name, text);
		exit(2);
	}
	return v;
}

/* A frame a skipped generator would have made (mutations can grow one). */
static bool made_by_skipped(unsigned int skip, const struct frame *f)
{
	struct view v = view_of(f, true);

	if ((skip & G_VLAN) && f->len >= 14 &&
	    (get16(f->data + 12) == ETH_P_8021Q || get16(f->data + 12) == ETH_P_8021AD))
		return true;
	if ((skip & (G_SRR | G_OPTS)) && v.ipv4 && has_source_route(f, &v))
		return true;
	if ((skip & G_OPTS) && v.ipv4 && v.hlen > sizeof(struct iphdr))
		return true;
	return false;
}

static void generate(struct gen *g, struct frame *f)
{
	do {
		g->desc[0] = '\0';
		g->ingress = (g->skip & G_EGRESS) || (!(g->skip & G_INGRESS) && chance(&g->r, 70));
		if (g->ingress)
			gen_ingress(g, f);
		else
			gen_egress(g, f);
		if (!(g->skip & G_TRUNC) && chance(&g->r, 6)) {
			f->len = below(&g->r, f->len);
			describe(g, " cut@%u", f->len);
		}
		if (!(g->skip & G_MUTATE) && chance(&g->r, 30))
			mutate(g, f);
	} while (made_by_skipped(g->skip, f));
}

static int quiet_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	return level == LIBBPF_WARN ? vfprintf(stderr, fmt, args) : 0;
}

int main(void)
{
	uint64_t seed = env_number("DH_PROP_SEED", 0);
	uint32_t frames = env_number("DH_PROP_FRAMES", 100000), i;
	const char *skip_text = getenv("DH_PROP_SKIP");
	unsigned int skip = skip_text ? parse_skip(skip_text) : 0;
	int ingress_fd, egress_fd, passed = 0, failures = 0, p;
	struct dockhost *skel;
	char coverage[256] = "";
	struct timespec t0, t1;

	if (geteuid() != 0) {
		printf("SKIP unit/property: BPF_PROG_TEST_RUN needs root\n");
		printf("0 passed, 0 failed, 1 skipped\n");
		return 0;
	}
	if (!getenv("DH_PROP_SEED")) {
		struct rng r = { (uint64_t)time(NULL) << 20 ^ getpid() };

		clock_gettime(CLOCK_MONOTONIC, &t0);
		r.s ^= t0.tv_nsec;
		seed = rnd(&r);
	}
	cur.seed = seed;
	cur.show = env_number("DH_PROP_SHOW", 3);
	for (i = 0; i < ARRAY_SIZE(mappings); i++)
		mappings[i].to_addr = ip(mappings[i].to);
	for (i = 0; i < N_GATEWAYS; i++)
		gateways[i] = ip(gateway_names[i]);
	other_gateway = ip(other_gateway_name);
	tracked = calloc(TRACK_SLOTS, sizeof(*tracked));

	libbpf_set_print(quiet_print);
	skel = dockhost__open_and_load();
	if (!skel || !tracked || setup_maps(skel)) {
		printf("    cannot load the BPF object or fill its maps: %s\n", strerror(errno));
		printf("FAIL unit/property\n0 passed, 1 failed\n");
		return 1;
	}
	ingress_fd = bpf_program__fd(skel->progs.dh_ingress);
	egress_fd = bpf_program__fd(skel->progs.dh_egress);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < frames; i++) {
		struct gen g = { .r.s = seed ^ ((uint64_t)(i + 1) * 0xd1b54a32d192ed03ULL), .skip = skip };
		struct frame in, out;
		struct view v;
		int err;

		rnd(&g.r);
		generate(&g, &in);
		out = in;
		LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = in.data, .data_size_in = in.len,
			    .data_out = out.data, .data_size_out = sizeof(out.data), .repeat = 1);
		err = bpf_prog_test_run_opts(g.ingress ? ingress_fd : egress_fd, &opts);
		if (err == -EINVAL) {
			stats.not_runnable++;
			continue;
		}
		if (err) {
			if (stats.run_errors++ < cur.show)
				printf("    seed %#llx frame %u: BPF_PROG_TEST_RUN: %s\n",
				       (unsigned long long)seed, i, strerror(-err));
			continue;
		}
		stats.runs++;
		out.len = opts.data_size_out;

		v = view_of(&in, true);
		if (g.ingress && v.ipv4 && v.tags && (is_loopback(v.ip.daddr) || is_loopback(v.ip.saddr)))
			stats.tagged_loopback++;
		if (g.ingress && v.ipv4 && has_source_route(&in, &v))
			stats.source_routed++;
		if ((int)opts.retval == TC_ACT_SHOT) {
			stats.dropped++;
			continue;
		}
		stats.passed++;
		cur.index = i;
		cur.g = &g;
		cur.in = &in;
		cur.out = &out;
		cur.verdict = (int)opts.retval;
		if (g.ingress)
			judge_ingress(&in, &out);
		else
			judge_egress(&in, &out);
		judge_checksums(&in, &out);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);

	printf("    property: seed %#llx, %u frames in %.2fs (skip: %s): %llu run, %llu not runnable "
	       "(EINVAL), %llu dropped, %llu passed, %llu redirects, %llu replies and %llu ICMP errors "
	       "rewritten, %llu guessed, %llu checksums judged\n",
	       (unsigned long long)seed, frames,
	       (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9, skip_text ? skip_text : "none",
	       (unsigned long long)stats.runs, (unsigned long long)stats.not_runnable,
	       (unsigned long long)stats.dropped, (unsigned long long)stats.passed,
	       (unsigned long long)stats.redirects, (unsigned long long)stats.replies,
	       (unsigned long long)stats.icmp_errors, (unsigned long long)stats.guessed,
	       (unsigned long long)stats.csums_judged);
	for (p = 0; p < N_PROPS; p++) {
		if (cur.violations[p])
			printf("    %s: %u violations (the first %u shown above)\n", prop_names[p],
			       cur.violations[p], cur.violations[p] < cur.show ? cur.violations[p] : cur.show);
		printf("%s unit/%s\n", cur.violations[p] ? "FAIL" : "PASS", prop_names[p]);
		cur.violations[p] ? failures++ : passed++;
	}

	/* A generator that stopped making what the properties are about
	 * would leave them passing without testing anything. */
	if (stats.run_errors)
		snprintf(coverage + strlen(coverage), sizeof(coverage) - strlen(coverage),
			 " %llu runs failed;", (unsigned long long)stats.run_errors);
	if (frames >= 10000) {
		if (!stats.redirects && !(skip & G_INGRESS))
			strcat(coverage, " no redirect;");
		if (!stats.replies && !(skip & (G_INGRESS | G_EGRESS)))
			strcat(coverage, " no reply rewritten;");
		if (!stats.icmp_errors && !(skip & (G_INGRESS | G_EGRESS)))
			strcat(coverage, " no ICMP error rewritten;");
		if (!stats.guessed && !(skip & G_EGRESS))
			strcat(coverage, " no reply without state guessed;");
		if (!stats.tagged_loopback && !(skip & (G_VLAN | G_INGRESS)))
			strcat(coverage, " no tagged loopback frame;");
		if (!stats.source_routed && !(skip & (G_SRR | G_OPTS | G_INGRESS)))
			strcat(coverage, " no source-routed frame;");
		if (stats.csums_judged < frames / 10)
			strcat(coverage, " few checksums judged;");
	}
	if (*coverage)
		printf("    coverage:%s\n", coverage);
	printf("%s unit/property_coverage\n", *coverage ? "FAIL" : "PASS");
	*coverage ? failures++ : passed++;

	dockhost__destroy(skel);
	free(tracked);
	printf("%d passed, %d failed\n", passed, failures);
	return failures ? 1 : 0;
}
