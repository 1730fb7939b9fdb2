// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * libFuzzer target: IPv4 addresses as typed (--gateway, --to's address,
 * daemon.json's host-gateway-ip): dh_parse_ipv4 and dh_is_loopback_addr.
 * An accepted address must print back as the very text that was parsed:
 * only dotted quads, no "127.1", "0x7f.0.0.1" or spaces.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1), back[INET_ADDRSTRLEN];
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
	free(text);
	return 0;
}
