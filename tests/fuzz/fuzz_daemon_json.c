// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * libFuzzer target: /etc/docker/daemon.json's text
 * (dh_docker_parse_daemon_json, user/docker_parse.c): at most @max
 * addresses, never a write past them, a warning in one line.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	__u32 *addrs;
	char why[256];
	char *text;
	int n, max;

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
	free(addrs);
	free(text);
	return 0;
}
