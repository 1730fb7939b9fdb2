// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Parsing of what users type: port specs, addresses, interface names. */
#include <arpa/inet.h>
#include <netinet/in.h>
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
