// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * libFuzzer target: /etc/docker/daemon.json's text
 * (dh_docker_parse_daemon_json, user/docker_parse.c): at most @max
 * addresses, never a write past them, each one usable as a gateway
 * (IPv4 or IPv6), a warning in one line.
 */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dh_ip *addrs;
	char why[256];
	char *text;
	int n, max, i;

	if (size < 1)
		return 0;
	max = data[0] % 4;  /* 0 included: nothing may be written */
	text = malloc(size - 1 ? size - 1 : 1);
	/* Exact size: ASan catches an address written past @max. */
	addrs = malloc(max ? max * sizeof(*addrs) : 1);
	if (!text || !addrs)
		abort();
	memcpy(text, data + 1, size - 1);
	n = dh_docker_parse_daemon_json(text, size - 1, addrs, max, why, sizeof(why));
	if (n < 0 || n > max || strchr(why, '\n'))
		abort();
	/* Only addresses that can be gateways, of a family the maps hold. */
	for (i = 0; i < n; i++)
		if ((addrs[i].family != AF_INET && addrs[i].family != AF_INET6) || dh_gateway_unusable(&addrs[i]))
			abort();
	free(addrs);
	free(text);
	return 0;
}
