// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Parsing of what users type: port specs, addresses, interface names. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

bool dh_parse_port_number(const char *text, __u16 *port)
{
	unsigned long value;
	char *end;

	/* strtoul alone would accept " 80", "+80" and "-1". */
	if (!text[0] || strspn(text, "0123456789") != strlen(text) || strlen(text) > 5)
		return false;
	value = strtoul(text, &end, 10);
	if (value < 1 || value > 65535)
		return false;
	*port = value;
	return true;
}

/* PORT | PORT/tcp | PORT/udp; bare PORT means tcp. */
bool dh_parse_port_spec(const char *text, struct dh_port_spec *spec)
{
	const char *slash = strchr(text, '/');
	char number[8];
	size_t len;

	spec->proto = IPPROTO_TCP;
	if (slash) {
		if (!strcmp(slash + 1, "tcp"))
			spec->proto = IPPROTO_TCP;
		else if (!strcmp(slash + 1, "udp"))
			spec->proto = IPPROTO_UDP;
		else
			return false;
	}
	len = slash ? (size_t)(slash - text) : strlen(text);
	if (len >= sizeof(number))
		return false;
	memcpy(number, text, len);
	number[len] = '\0';
	return dh_parse_port_number(number, &spec->port);
}

bool dh_parse_ipv4(const char *text, __u32 *addr_be)
{
	struct in_addr addr;

	/* inet_pton takes only dotted quads: no "1", no "0x7f.1", no spaces. */
	if (inet_pton(AF_INET, text, &addr) != 1)
		return false;
	*addr_be = addr.s_addr;
	return true;
}

bool dh_parse_ip(const char *text, struct dh_ip *ip)
{
	memset(ip, 0, sizeof(*ip));
	if (dh_parse_ipv4(text, &ip->v4)) {
		ip->family = AF_INET;
		return true;
	}
	/* inet_pton takes no brackets, no %scope and no prefix length. */
	if (inet_pton(AF_INET6, text, ip->v6) == 1) {
		ip->family = AF_INET6;
		return true;
	}
	return false;
}

bool dh_ip_equal(const struct dh_ip *a, const struct dh_ip *b)
{
	if (a->family != b->family)
		return false;
	return a->family == AF_INET6 ? !memcmp(a->v6, b->v6, sizeof(a->v6)) : a->v4 == b->v4;
}

bool dh_ipv6_unset(const __u32 addr[4])
{
	return !(addr[0] | addr[1] | addr[2] | addr[3]);
}

bool dh_ipv6_is_loopback_addr(const __u32 addr[4])
{
	return !addr[0] && !addr[1] && !addr[2] && addr[3] == htonl(1);
}

/*
 * A gateway is an address containers send to: unicast, not loopback. For
 * IPv6 also not link-local (fe80::/10: it names a link, not the host, and
 * docker0's would not reach the host from another bridge) and not
 * IPv4-mapped (::ffff:0:0/96: such packets are IPv4 on the wire; name the
 * IPv4 address).
 */
const char *dh_gateway_unusable(const struct dh_ip *ip)
{
	const __u8 *b = (const __u8 *)ip->v6;

	if (ip->family == AF_INET) {
		if (dh_is_loopback_addr(ip->v4) || IN_MULTICAST(ntohl(ip->v4)) || ip->v4 == INADDR_ANY ||
		    ip->v4 == INADDR_BROADCAST)
			return "not a unicast, non-loopback address";
		return NULL;
	}
	if (dh_ipv6_unset(ip->v6) || dh_ipv6_is_loopback_addr(ip->v6) || b[0] == 0xff)
		return "not a unicast, non-loopback address";
	if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
		return "link-local: containers do not use it as a gateway";
	if (!ip->v6[0] && !ip->v6[1] && ip->v6[2] == htonl(0xffff))
		return "IPv4-mapped: give the IPv4 address";
	return NULL;
}

/*
 * --to: PORT (both families, 127.0.0.1 and ::1), ADDR or ADDR:PORT with
 * ADDR in 127.0.0.0/8 (IPv4 only), ::1, [::1] or [::1]:PORT (IPv6 only: the
 * only IPv6 loopback address). An IPv6 address with a port needs the
 * brackets: "::1:80" is another address. Port 0: none given.
 */
bool dh_parse_target(const char *text, struct dh_port_target *target)
{
	char addr[INET6_ADDRSTRLEN];
	const char *port_text = NULL, *end;
	bool bracketed = text[0] == '[';
	struct dh_ip ip;
	size_t len;
	__u16 port;

	memset(target, 0, sizeof(*target));
	if (dh_parse_port_number(text, &port)) {
		target->addr = htonl(INADDR_LOOPBACK);
		target->addr6[3] = htonl(1);
		target->port = htons(port);
		return true;
	}
	if (bracketed) {
		end = strchr(text, ']');
		if (!end || (end[1] && end[1] != ':'))
			return false;
		len = end - text - 1;
		if (end[1])
			port_text = end + 2;
		text++;
	} else if (strchr(text, ':') && strchr(text, '.')) {
		/* ADDR:PORT; a dotted quad has no colon of its own. */
		end = strrchr(text, ':');
		len = end - text;
		port_text = end + 1;
	} else {
		len = strlen(text);  /* ADDR alone, of either family */
	}
	if (len >= sizeof(addr))
		return false;
	memcpy(addr, text, len);
	addr[len] = '\0';
	if (!dh_parse_ip(addr, &ip))
		return false;
	/* Brackets only around IPv6 (needed only before a port). */
	if (bracketed && ip.family != AF_INET6)
		return false;
	if (ip.family == AF_INET6 ? !dh_ipv6_is_loopback_addr(ip.v6) : !dh_is_loopback_addr(ip.v4))
		return false;
	if (port_text) {
		if (!dh_parse_port_number(port_text, &port))
			return false;
		target->port = htons(port);
	}
	if (ip.family == AF_INET6)
		memcpy(target->addr6, ip.v6, sizeof(target->addr6));
	else
		target->addr = ip.v4;
	return true;
}

const char *dh_target_str(const struct dh_port_target *target, char *buf, size_t size)
{
	int len = 0;

	buf[0] = '\0';
	if (target->addr)
		len = snprintf(buf, size, "%s:%u", dh_ipv4_str(target->addr), ntohs(target->port));
	if (!dh_ipv6_unset(target->addr6) && len >= 0 && (size_t)len < size)
		snprintf(buf + len, size - len, "%s[%s]:%u", len ? "," : "", dh_ipv6_str(target->addr6),
			 ntohs(target->port));
	return buf;
}

const char *dh_ipv4_str(__u32 addr_be)
{
	/* A few rotating buffers so one printf can format several addresses. */
	static char bufs[4][INET_ADDRSTRLEN];
	static unsigned int next;
	char *buf = bufs[next++ % 4];

	return inet_ntop(AF_INET, &addr_be, buf, INET_ADDRSTRLEN);
}

const char *dh_ipv6_str(const __u32 addr[4])
{
	static char bufs[4][INET6_ADDRSTRLEN];
	static unsigned int next;
	char *buf = bufs[next++ % 4];

	return inet_ntop(AF_INET6, addr, buf, INET6_ADDRSTRLEN);
}

const char *dh_ip_str(const struct dh_ip *ip)
{
	return ip->family == AF_INET6 ? dh_ipv6_str(ip->v6) : dh_ipv4_str(ip->v4);
}

bool dh_is_loopback_addr(__u32 addr_be)
{
	return (ntohl(addr_be) >> 24) == 127;
}

const char *dh_proto_name(__u8 proto)
{
	return proto == IPPROTO_UDP ? "udp" : proto == IPPROTO_TCP ? "tcp" : "?";
}

bool dh_ifname_valid(const char *name)
{
	size_t len = strlen(name);

	/* The kernel's rules (dev_valid_name): 1..15 bytes, no '/', ':' or space. */
	if (len == 0 || len >= DH_IFNAMSIZ || !strcmp(name, ".") || !strcmp(name, ".."))
		return false;
	return strcspn(name, "/: \t\n") == len;
}

bool dh_parse_hook(const char *text, enum dh_hook *hook)
{
	static const char *const names[] = { [DH_HOOK_AUTO] = "auto", [DH_HOOK_TCX] = "tcx",
					     [DH_HOOK_CLSACT] = "clsact" };
	unsigned int i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!strcmp(text, names[i])) {
			*hook = i;
			return true;
		}
	}
	return false;
}

static const char *const mode_names[] = { [DH_MODE_NAT] = "nat", [DH_MODE_SOCKET] = "socket" };

bool dh_parse_mode(const char *text, __u32 *mode)
{
	unsigned int i;

	for (i = 0; i < sizeof(mode_names) / sizeof(mode_names[0]); i++) {
		if (!strcmp(text, mode_names[i])) {
			*mode = i;
			return true;
		}
	}
	return false;
}

const char *dh_mode_name(__u32 mode)
{
	return mode < sizeof(mode_names) / sizeof(mode_names[0]) ? mode_names[mode] : "unknown";
}

/* Zeroes @addr's bits past @len (the address alone, IPv4 in word 0);
 * true if any was set. */
static bool mask_prefix(__u32 *addr, int words, int len)
{
	bool host = false;
	int i;

	for (i = 0; i < words; i++) {
		int keep = len - i * 32;
		__u32 mask = keep >= 32 ? 0xffffffffu : keep <= 0 ? 0 : htonl(~0u << (32 - keep));

		if (addr[i] & ~mask)
			host = true;
		addr[i] &= mask;
	}
	return host;
}

int dh_parse_cidr(const char *text, struct dh_allow_prefix *prefix)
{
	char addr_text[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(text, '/');
	size_t addr_len = slash ? (size_t)(slash - text) : strlen(text);
	unsigned long len;
	struct dh_ip ip;
	char *end;
	int max;

	memset(prefix, 0, sizeof(*prefix));
	if (addr_len == 0 || addr_len >= sizeof(addr_text))
		return -EINVAL;
	memcpy(addr_text, text, addr_len);
	addr_text[addr_len] = '\0';
	if (!dh_parse_ip(addr_text, &ip))
		return -EINVAL;
	max = ip.family == AF_INET6 ? 128 : 32;
	len = max;
	if (slash) {
		/* Decimal digits only: no sign, no space, no "0x". */
		if (slash[1] < '0' || slash[1] > '9' || strlen(slash + 1) > 3)
			return -EINVAL;
		len = strtoul(slash + 1, &end, 10);
		if (*end || len > (unsigned long)max)
			return -EINVAL;
	}
	prefix->family = ip.family == AF_INET6 ? DH_AF_INET6 : DH_AF_INET;
	prefix->prefixlen = len;
	if (ip.family == AF_INET6)
		memcpy(prefix->addr, ip.v6, sizeof(ip.v6));
	else
		prefix->addr[0] = ip.v4;
	return mask_prefix(prefix->addr, ip.family == AF_INET6 ? 4 : 1, len) ? -ERANGE : 0;
}

const char *dh_prefix_str(const struct dh_allow_prefix *prefix, char *buf, size_t size)
{
	bool v6 = prefix->family == DH_AF_INET6;

	snprintf(buf, size, "%s/%u", v6 ? dh_ipv6_str(prefix->addr) : dh_ipv4_str(prefix->addr[0]),
		 prefix->prefixlen);
	return buf;
}

/* Docker's rule for names ([a-zA-Z0-9][a-zA-Z0-9_.-]*); ids fit it too. */
bool dh_docker_name_valid(const char *text)
{
	size_t i, len = strlen(text);

	if (len == 0 || len >= DH_ALLOW_NAME_LEN)
		return false;
	for (i = 0; i < len; i++) {
		char c = text[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');

		if (!alnum && (i == 0 || (c != '_' && c != '.' && c != '-')))
			return false;
	}
	return true;
}
