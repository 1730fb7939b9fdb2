// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * libFuzzer target: what users type for ports, targets, hooks and devices
 * (user/spec.c): dh_parse_port_spec, dh_parse_port_number, dh_parse_target
 * (--to, with dh_target_str), dh_parse_hook, dh_ifname_valid.
 * Besides not crashing, whatever is accepted must be in range and read back
 * the same from its canonical form.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1), canon[32], shown[80], *comma;
	struct dh_port_target target, target2;
	struct dh_port_spec spec, again;
	enum dh_hook hook;
	__u16 port, port2;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';  /* an embedded NUL just ends the string early */

	if (dh_parse_port_spec(text, &spec)) {
		if (spec.port == 0 || (spec.proto != IPPROTO_TCP && spec.proto != IPPROTO_UDP))
			abort();
		snprintf(canon, sizeof(canon), "%u/%s", spec.port, dh_proto_name(spec.proto));
		if (!dh_parse_port_spec(canon, &again) || again.port != spec.port || again.proto != spec.proto)
			abort();
	}
	if (dh_parse_port_number(text, &port)) {
		if (port == 0)
			abort();
		snprintf(canon, sizeof(canon), "%u", port);
		if (!dh_parse_port_number(canon, &port2) || port2 != port)
			abort();
	}
	/* --to: only loopback targets, at least one family, and what
	 * dh_target_str prints (each family's part) parses back the same. */
	if (dh_parse_target(text, &target)) {
		if (!target.addr && dh_ipv6_unset(target.addr6))
			abort();
		if (target.addr && !dh_is_loopback_addr(target.addr))
			abort();
		if (!dh_ipv6_unset(target.addr6) && !dh_ipv6_is_loopback_addr(target.addr6))
			abort();
		if (target.flags)  /* --to never opens or closes an allow-list */
			abort();
		if (!target.port)
			target.port = htons(1);
		dh_target_str(&target, shown, sizeof(shown));
		comma = strchr(shown, ',');
		if (comma) {
			/* Both families: what a bare PORT gives. */
			snprintf(canon, sizeof(canon), "%u", ntohs(target.port));
		} else {
			snprintf(canon, sizeof(canon), "%s", shown);
		}
		if (!dh_parse_target(canon, &target2) || memcmp(&target, &target2, sizeof(target)))
			abort();
	}
	/* --from's CIDRs: what prints parses back the same; a host-bits
	 * refusal names a prefix that parses. */
	{
		struct dh_allow_prefix prefix, again;
		char cidr[64];
		int err = dh_parse_cidr(text, &prefix);

		if (err != 0 && err != -EINVAL && err != -ERANGE)
			abort();
		if (err != -EINVAL && (dh_parse_cidr(dh_prefix_str(&prefix, cidr, sizeof(cidr)), &again) ||
				       memcmp(&prefix, &again, sizeof(again))))
			abort();
	}
	if (dh_parse_hook(text, &hook) && hook != DH_HOOK_AUTO && hook != DH_HOOK_TCX && hook != DH_HOOK_CLSACT)
		abort();
	if (dh_ifname_valid(text) && (strlen(text) == 0 || strlen(text) >= DH_IFNAMSIZ || strchr(text, '/')))
		abort();
	free(text);
	return 0;
}
