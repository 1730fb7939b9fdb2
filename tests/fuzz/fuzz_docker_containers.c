// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * libFuzzer target: Docker's answer to GET /containers/json
 * (dh_docker_parse_containers, user/docker_parse.c), for the container
 * names of stats --by-source and top. The first byte picks the HTTP
 * status, the rest is the body (no NUL). Every name it returns must be a
 * NUL-terminated, non-empty string of the buffer's size, every address of
 * a family.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cli.h"

#define MAX_NAMES 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const long statuses[] = { 200, 404, 500, 200 };
	struct dh_docker_name names[MAX_NAMES];
	long status;
	char *body;
	int n, i;

	if (size < 1)
		return 0;
	status = statuses[data[0] % 4];
	body = malloc(size - 1 ? size - 1 : 1);
	if (!body)
		return 0;
	memcpy(body, data + 1, size - 1);
	memset(names, 'X', sizeof(names));
	n = dh_docker_parse_containers(status, body, size - 1, names, MAX_NAMES);
	if (n < 0 && (n != -EHOSTUNREACH))
		abort();
	if (n > MAX_NAMES || (n > 0 && status != 200))
		abort();
	for (i = 0; i < n; i++) {
		if (!memchr(names[i].name, '\0', sizeof(names[i].name)) || !names[i].name[0])
			abort();
		if (names[i].addr.family != AF_INET && names[i].addr.family != AF_INET6)
			abort();
	}
	free(body);
	return 0;
}
