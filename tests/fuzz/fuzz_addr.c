// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * libFuzzer target: addresses as typed (--gateway, --to's address,
 * daemon.json's host-gateway-ip(s)): dh_parse_ipv4, dh_parse_ip,
 * dh_is_loopback_addr and dh_gateway_unusable. An accepted IPv4 address
 * must print back as the very text that was parsed: only dotted quads, no
 * "127.1", "0x7f.0.0.1" or spaces. An accepted IPv6 address must parse
 * back from its printed form to the same bytes, and a usable gateway is
 * never loopback, unspecified, multicast, link-local or IPv4-mapped.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1), back[INET6_ADDRSTRLEN];
	struct dh_ip ip, again;
	const __u8 *b;
	__u32 addr;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (dh_parse_ipv4(text, &addr)) {
		if (!inet_ntop(AF_INET, &addr, back, sizeof(back)) || strcmp(back, text))
			abort();
		if (dh_is_loopback_addr(addr) != !strncmp(text, "127.", 4))
			abort();
	}
	if (dh_parse_ip(text, &ip)) {
		if (ip.family == AF_INET ? !dh_parse_ipv4(text, &addr) || addr != ip.v4 : ip.family != AF_INET6)
			abort();
		if (!dh_parse_ip(dh_ip_str(&ip), &again) || !dh_ip_equal(&ip, &again))
			abort();
		b = (const __u8 *)ip.v6;
		if (ip.family == AF_INET6 && !dh_gateway_unusable(&ip) &&
		    (dh_ipv6_unset(ip.v6) || dh_ipv6_is_loopback_addr(ip.v6) || b[0] == 0xff ||
		     (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) ||
		     (!ip.v6[0] && !ip.v6[1] && ip.v6[2] == htonl(0xffff))))
			abort();
		if (ip.family == AF_INET && !dh_gateway_unusable(&ip) && dh_is_loopback_addr(ip.v4))
			abort();
	} else if (dh_parse_ipv4(text, &addr)) {
		abort();
	}
	free(text);
	return 0;
}
