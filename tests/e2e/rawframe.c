// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * rawframe: sends crafted Ethernet frames on an interface with an
 * AF_PACKET/SOCK_RAW socket, for the security suite (tests/e2e/test_security.sh).
 * It needs only CAP_NET_RAW, which Docker gives every container.
 *
 *   rawframe IFACE --hex HEX
 *   rawframe IFACE --dst-mac MAC [--tag TPID:VID]... --src ADDR --dst ADDR
 *            --proto tcp|udp --sport N --dport N [--payload TEXT]
 *            [--ip-opt HEX] [--frag first|later|both --frag-at N]
 *            [--encap ipip|gre|vxlan --outer-src ADDR --outer-dst ADDR
 *             [--vni N --inner-mac MAC]]
 *
 * --hex sends the bytes as given. Otherwise the frame is built: Ethernet to
 * --dst-mac from the interface's own MAC, the tags outermost first (TPID
 * 8100 or 88a8, in the frame, never as skb metadata: the sending veth puts
 * them on the wire as they are), then IPv4 or IPv6 (by the addresses), then
 * a TCP SYN or a UDP datagram. IPv4 header, TCP and UDP checksums are
 * computed here; for a source route (LSRR/SSRR in --ip-opt) the L4
 * checksum uses the route's last address, the packet's final destination.
 * --frag splits the IPv4 payload at byte N (a multiple of 8) into a first
 * fragment (MF) and a later one, and sends either or both. --encap wraps
 * the IPv4 packet in IPIP, GRE or VXLAN (UDP 4789, an inner Ethernet
 * header to --inner-mac) addressed --outer-src -> --outer-dst.
 *
 * Exit code: 0 sent, 1 the kernel refused, 2 bad arguments.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../unit/csum.h"

#define FRAME_MAX 2048
#define MAX_TAGS  8
#define VXLAN_PORT 4789

struct frame {
	uint8_t b[FRAME_MAX];
	size_t len;
};

static struct {
	const char *ifname;
	uint8_t dst_mac[6], src_mac[6], inner_mac[6];
	bool have_dst_mac;
	uint16_t tags[MAX_TAGS][2]; /* TPID, TCI */
	int ntags;
	int family;
	uint8_t src[16], dst[16];
	int proto;
	uint16_t sport, dport;
	const char *payload;
	uint8_t opts[40];
	size_t opts_len;
	const char *frag;
	size_t frag_at;
	const char *encap;
	uint8_t outer_src[4], outer_dst[4];
	uint32_t vni;
} arg = { .payload = "", .vni = 1 };

static void usage(const char *fmt, const char *value)
{
	fprintf(stderr, "rawframe: ");
	fprintf(stderr, fmt, value);
	fputc('\n', stderr);
	exit(2);
}

static size_t parse_hex(const char *text, uint8_t *out, size_t max)
{
	size_t n = 0;
	unsigned int byte;

	for (; *text; text += 2) {
		if (n == max || sscanf(text, "%2x", &byte) != 1 || !text[1])
			usage("bad or too long hex: '%s'", text);
		out[n++] = byte;
	}
	return n;
}

static void parse_mac(const char *text, uint8_t mac[6])
{
	if (sscanf(text, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &mac[0], &mac[1], &mac[2], &mac[3],
		   &mac[4], &mac[5]) != 6)
		usage("bad MAC address: '%s'", text);
}

static long parse_num(const char *text, long max)
{
	char *end;
	long v = strtol(text, &end, 0);

	if (*text == '\0' || *end != '\0' || v < 0 || v > max)
		usage("bad number: '%s'", text);
	return v;
}

static int parse_addr(const char *text, uint8_t out[16])
{
	if (inet_pton(AF_INET, text, out) == 1)
		return AF_INET;
	if (inet_pton(AF_INET6, text, out) == 1)
		return AF_INET6;
	usage("bad address: '%s'", text);
	return 0;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v & 0xff;
}

/* The address an L4 checksum covers: a source route's last hop, else --dst. */
static const uint8_t *final_dst(void)
{
	size_t at = 0, len;

	while (at < arg.opts_len && arg.opts[at] != 0) {
		if (arg.opts[at] == 1) {
			at++;
			continue;
		}
		if (at + 1 >= arg.opts_len)
			break;
		len = arg.opts[at + 1];
		if ((arg.opts[at] == 131 || arg.opts[at] == 137) && len >= 7 && at + len <= arg.opts_len)
			return &arg.opts[at + len - 4];
		if (len < 2)
			break;
		at += len;
	}
	return arg.dst;
}

/* TCP SYN or UDP datagram with its checksum; returns its length. */
static size_t build_l4(uint8_t *l4)
{
	size_t plen = strlen(arg.payload);
	size_t hlen = arg.proto == IPPROTO_TCP ? 20 : 8;
	size_t len = hlen + plen;
	int alen = arg.family == AF_INET ? 4 : 16;
	uint8_t pseudo[4];
	uint32_t sum;

	if (len > 1400)
		usage("payload too long: '%s'", arg.payload);
	memset(l4, 0, hlen);
	put16(l4, arg.sport);
	put16(l4 + 2, arg.dport);
	if (arg.proto == IPPROTO_TCP) {
		l4[7] = 1;            /* sequence number 1 */
		l4[12] = 5 << 4;      /* data offset: 20 bytes */
		l4[13] = 0x02;        /* SYN */
		put16(l4 + 14, 64240); /* window */
	} else {
		put16(l4 + 4, len);
	}
	memcpy(l4 + hlen, arg.payload, plen);

	/* Pseudo header: addresses, protocol, length (the IPv6 one orders
	 * them differently but sums the same). */
	sum = csum_add(0, arg.src, alen);
	sum = csum_add(sum, arg.family == AF_INET ? final_dst() : arg.dst, alen);
	put16(pseudo, arg.proto);
	put16(pseudo + 2, len);
	sum = csum_add(sum, pseudo, sizeof(pseudo));
	sum = csum_add(sum, l4, len);
	memcpy(l4 + (arg.proto == IPPROTO_TCP ? 16 : 6), &(uint16_t){ htons(csum_fold(sum)) }, 2);
	if (arg.proto == IPPROTO_UDP && l4[6] == 0 && l4[7] == 0)
		l4[6] = l4[7] = 0xff; /* 0 means "no checksum" */
	return len;
}

/* An IPv4 header (with options) in front of @data; returns the packet length. */
static size_t build_ipv4(uint8_t *out, const uint8_t src[4], const uint8_t dst[4], int proto,
			 const uint8_t *opts, size_t opts_len, uint16_t frag, const uint8_t *data,
			 size_t len)
{
	size_t hlen = 20 + ((opts_len + 3) & ~3u);
	uint16_t check;

	memset(out, 0, hlen);
	out[0] = 0x40 | hlen / 4;
	put16(out + 2, hlen + len);
	put16(out + 4, 0x1234); /* id, the same for both fragments */
	put16(out + 6, frag);
	out[8] = 64;
	out[9] = proto;
	memcpy(out + 12, src, 4);
	memcpy(out + 16, dst, 4);
	memcpy(out + 20, opts, opts_len); /* padded with END (0) */
	check = htons(csum_fold(csum_add(0, out, hlen)));
	memcpy(out + 10, &check, 2);
	memmove(out + hlen, data, len);
	return hlen + len;
}

static size_t build_ipv6(uint8_t *out, const uint8_t *data, size_t len)
{
	memset(out, 0, 40);
	out[0] = 0x60;
	put16(out + 4, len);
	out[6] = arg.proto;
	out[7] = 64;
	memcpy(out + 8, arg.src, 16);
	memcpy(out + 24, arg.dst, 16);
	memmove(out + 40, data, len);
	return 40 + len;
}

/* Wraps an IPv4 packet for --encap; returns the new length. */
static size_t encap(uint8_t *pkt, size_t len)
{
	uint8_t inner[FRAME_MAX], hdr[64];
	size_t hlen = 0;
	int proto;

	if (len + 100 > sizeof(inner))
		usage("packet too long to encapsulate: '%s'", arg.encap);
	if (!strcmp(arg.encap, "ipip")) {
		proto = 4;
	} else if (!strcmp(arg.encap, "gre")) {
		proto = 47;
		memset(hdr, 0, 4);          /* no checksum, key or sequence */
		put16(hdr + 2, ETH_P_IP);
		hlen = 4;
	} else if (!strcmp(arg.encap, "vxlan")) {
		proto = IPPROTO_UDP;
		memset(hdr, 0, 8 + 8 + 14);
		put16(hdr, 40000);
		put16(hdr + 2, VXLAN_PORT);
		put16(hdr + 4, 8 + 8 + 14 + len);
		/* UDP checksum 0: allowed over IPv4, and accepted by vxlan. */
		hdr[8] = 0x08;               /* VNI present */
		hdr[12] = arg.vni >> 16;
		hdr[13] = arg.vni >> 8;
		hdr[14] = arg.vni;
		memcpy(hdr + 16, arg.inner_mac, 6);
		memcpy(hdr + 22, arg.src_mac, 6);
		put16(hdr + 28, ETH_P_IP);
		hlen = 8 + 8 + 14;
	} else {
		usage("bad --encap: '%s' (ipip, gre or vxlan)", arg.encap);
	}
	memcpy(inner, hdr, hlen);
	memcpy(inner + hlen, pkt, len);
	return build_ipv4(pkt, arg.outer_src, arg.outer_dst, proto, NULL, 0, 0, inner, hlen + len);
}

static void send_frame(int fd, int ifindex, const uint8_t *l3, size_t l3_len)
{
	struct sockaddr_ll to = { .sll_family = AF_PACKET, .sll_ifindex = ifindex, .sll_halen = 6 };
	struct frame f;
	size_t off = 12;
	int i;

	memcpy(f.b, arg.dst_mac, 6);
	memcpy(f.b + 6, arg.src_mac, 6);
	for (i = 0; i < arg.ntags; i++, off += 4) {
		put16(f.b + off, arg.tags[i][0]);
		put16(f.b + off + 2, arg.tags[i][1]);
	}
	put16(f.b + off, arg.family == AF_INET6 ? ETH_P_IPV6 : ETH_P_IP);
	off += 2;
	if (off + l3_len > sizeof(f.b))
		usage("frame too long on '%s'", arg.ifname);
	memcpy(f.b + off, l3, l3_len);
	f.len = off + l3_len;
	memcpy(to.sll_addr, arg.dst_mac, 6);
	if (sendto(fd, f.b, f.len, 0, (struct sockaddr *)&to, sizeof(to)) != (ssize_t)f.len) {
		fprintf(stderr, "rawframe: send on %s: %s\n", arg.ifname, strerror(errno));
		exit(1);
	}
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "hex", required_argument, NULL, 'x' },
		{ "dst-mac", required_argument, NULL, 'm' },
		{ "tag", required_argument, NULL, 't' },
		{ "src", required_argument, NULL, 's' },
		{ "dst", required_argument, NULL, 'd' },
		{ "proto", required_argument, NULL, 'p' },
		{ "sport", required_argument, NULL, 'S' },
		{ "dport", required_argument, NULL, 'D' },
		{ "payload", required_argument, NULL, 'P' },
		{ "ip-opt", required_argument, NULL, 'o' },
		{ "frag", required_argument, NULL, 'f' },
		{ "frag-at", required_argument, NULL, 'F' },
		{ "encap", required_argument, NULL, 'e' },
		{ "outer-src", required_argument, NULL, 'O' },
		{ "outer-dst", required_argument, NULL, 'T' },
		{ "vni", required_argument, NULL, 'v' },
		{ "inner-mac", required_argument, NULL, 'i' },
		{},
	};
	uint8_t hex[FRAME_MAX], l4[FRAME_MAX], pkt[FRAME_MAX], part[FRAME_MAX];
	size_t hex_len = 0, l4_len, len;
	struct sockaddr_ll to = { .sll_family = AF_PACKET };
	struct ifreq ifr = {};
	int opt, fd;
	unsigned int tpid, vid;
	uint8_t outer[16];

	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'x': hex_len = parse_hex(optarg, hex, sizeof(hex)); break;
		case 'm': parse_mac(optarg, arg.dst_mac); arg.have_dst_mac = true; break;
		case 't':
			if (arg.ntags == MAX_TAGS || sscanf(optarg, "%x:%u", &tpid, &vid) != 2 ||
			    (tpid != 0x8100 && tpid != 0x88a8) || vid > 4095)
				usage("bad --tag: '%s' (8100:VID or 88a8:VID, at most 8)", optarg);
			arg.tags[arg.ntags][0] = tpid;
			arg.tags[arg.ntags++][1] = vid;
			break;
		case 's': arg.family = parse_addr(optarg, arg.src); break;
		case 'd':
			if (parse_addr(optarg, arg.dst) != arg.family)
				usage("--src and --dst are not the same family: '%s'", optarg);
			break;
		case 'p':
			if (!strcmp(optarg, "tcp"))
				arg.proto = IPPROTO_TCP;
			else if (!strcmp(optarg, "udp"))
				arg.proto = IPPROTO_UDP;
			else
				usage("bad --proto: '%s' (tcp or udp)", optarg);
			break;
		case 'S': arg.sport = parse_num(optarg, 65535); break;
		case 'D': arg.dport = parse_num(optarg, 65535); break;
		case 'P': arg.payload = optarg; break;
		case 'o': arg.opts_len = parse_hex(optarg, arg.opts, sizeof(arg.opts)); break;
		case 'f': arg.frag = optarg; break;
		case 'F': arg.frag_at = parse_num(optarg, 1400); break;
		case 'e': arg.encap = optarg; break;
		case 'O':
		case 'T':
			if (parse_addr(optarg, outer) != AF_INET)
				usage("outer address is not IPv4: '%s'", optarg);
			memcpy(opt == 'O' ? arg.outer_src : arg.outer_dst, outer, 4);
			break;
		case 'v': arg.vni = parse_num(optarg, 0xffffff); break;
		case 'i': parse_mac(optarg, arg.inner_mac); break;
		default: exit(2);
		}
	}
	if (optind != argc - 1)
		usage("%s", "usage: rawframe IFACE --hex HEX | --dst-mac MAC --src A --dst A --proto P ...");
	arg.ifname = argv[optind];

	fd = socket(AF_PACKET, SOCK_RAW, 0); /* protocol 0: send only, receive nothing */
	if (fd < 0) {
		perror("rawframe: AF_PACKET socket");
		return 1;
	}
	to.sll_ifindex = if_nametoindex(arg.ifname);
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", arg.ifname);
	if (!to.sll_ifindex || ioctl(fd, SIOCGIFHWADDR, &ifr)) {
		fprintf(stderr, "rawframe: no such interface: '%s'\n", arg.ifname);
		return 1;
	}
	memcpy(arg.src_mac, ifr.ifr_hwaddr.sa_data, 6);

	if (hex_len) {
		if (sendto(fd, hex, hex_len, 0, (struct sockaddr *)&to, sizeof(to)) != (ssize_t)hex_len) {
			perror("rawframe: send");
			return 1;
		}
		return 0;
	}
	if (!arg.have_dst_mac || !arg.family || !arg.proto)
		usage("%s", "--dst-mac, --src, --dst and --proto are needed without --hex");
	if (arg.family == AF_INET6 && (arg.opts_len || arg.frag || arg.encap))
		usage("%s", "--ip-opt, --frag and --encap are IPv4 only");

	l4_len = build_l4(l4);
	if (arg.family == AF_INET6) {
		send_frame(fd, to.sll_ifindex, pkt, build_ipv6(pkt, l4, l4_len));
		return 0;
	}
	if (!arg.frag) {
		len = build_ipv4(pkt, arg.src, arg.dst, arg.proto, arg.opts, arg.opts_len, 0, l4, l4_len);
		if (arg.encap)
			len = encap(pkt, len);
		send_frame(fd, to.sll_ifindex, pkt, len);
		return 0;
	}

	/* Fragments: the same id, offsets in units of 8 bytes. */
	if (!arg.frag_at || arg.frag_at % 8 || arg.frag_at >= l4_len)
		usage("--frag-at must be a multiple of 8 inside the L4 segment: '%s'", arg.frag);
	if (strcmp(arg.frag, "first") && strcmp(arg.frag, "later") && strcmp(arg.frag, "both"))
		usage("bad --frag: '%s' (first, later or both)", arg.frag);
	if (strcmp(arg.frag, "later")) {
		memcpy(part, l4, arg.frag_at);
		len = build_ipv4(pkt, arg.src, arg.dst, arg.proto, arg.opts, arg.opts_len,
				 0x2000 /* MF */, part, arg.frag_at);
		if (arg.encap)
			len = encap(pkt, len);
		send_frame(fd, to.sll_ifindex, pkt, len);
	}
	if (strcmp(arg.frag, "first")) {
		memcpy(part, l4 + arg.frag_at, l4_len - arg.frag_at);
		len = build_ipv4(pkt, arg.src, arg.dst, arg.proto, arg.opts, arg.opts_len,
				 arg.frag_at / 8, part, l4_len - arg.frag_at);
		if (arg.encap)
			len = encap(pkt, len);
		send_frame(fd, to.sll_ifindex, pkt, len);
	}
	return 0;
}
