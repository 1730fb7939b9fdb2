// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * libFuzzer target: Docker's answer to GET /networks/NAME
 * (dh_docker_parse_network, user/docker_parse.c). The first byte picks the
 * HTTP status, the rest is the body, as libcurl hands it over (no NUL).
 * A bridge name it returns must be a valid interface name; an error must
 * be one line. The same body goes through dh_docker_parse_allow_source
 * (container and network answers for --from): at most DH_ALLOW_PREFIXES
 * prefixes, each one that prints and parses back the same; and through
 * dh_docker_parse_container_addrs (a /containers/json answer: names for
 * trace and stats --by-source): at most the room given, every name a
 * string that ends within its field.
 */
#include <errno.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const long statuses[] = { 200, 404, 500, 200 };
	char bridge[DH_IFNAMSIZ], why[256];
	long status;
	char *body;
	int err;

	if (size < 1)
		return 0;
	status = statuses[data[0] % 4];
	/* An exact-size copy, so ASan sees any read past the body. */
	body = malloc(size - 1 ? size - 1 : 1);
	if (!body)
		return 0;
	memcpy(body, data + 1, size - 1);
	memset(bridge, 'X', sizeof(bridge));
	why[0] = '\0';
	err = dh_docker_parse_network(status, body, size - 1, bridge, why, sizeof(why));
	if (err == 0) {
		if (status != 200 || !memchr(bridge, '\0', sizeof(bridge)) || !dh_ifname_valid(bridge))
			abort();
	} else {
		if (err != -ENOENT && err != -EHOSTUNREACH && err != -EINVAL)
			abort();
		if ((err == -ENOENT) != (status == 404))
			abort();
		if (!why[0] || strchr(why, '\n'))
			abort();
	}
	for (int network = 0; network < 2; network++) {
		struct dh_allow_source src;
		struct dh_allow_prefix again;
		char text[64];
		__u32 i;

		err = dh_docker_parse_allow_source(status, body, size - 1, network, &src, why, sizeof(why));
		if (err && err != -ENOENT && err != -EHOSTUNREACH && err != -EINVAL)
			abort();
		if (err ? !why[0] : src.count > DH_ALLOW_PREFIXES)
			abort();
		if (strchr(why, '\n'))
			abort();
		for (i = 0; !err && i < src.count; i++)
			if (dh_parse_cidr(dh_prefix_str(&src.prefixes[i], text, sizeof(text)), &again) ||
			    memcmp(&again, &src.prefixes[i], sizeof(again)))
				abort();
	}
	{
		struct dh_docker_addr addrs[4];
		int n, i;

		memset(addrs, 'X', sizeof(addrs));
		n = dh_docker_parse_container_addrs(status, body, size - 1, addrs, 4, why, sizeof(why));
		if (n < 0 ? n != -EHOSTUNREACH || !why[0] : n > 4)
			abort();
		for (i = 0; i < n; i++)
			if (!memchr(addrs[i].name, '\0', sizeof(addrs[i].name)) ||
			    (addrs[i].addr.family != AF_INET && addrs[i].addr.family != AF_INET6))
				abort();
	}
	free(body);
	return 0;
}
