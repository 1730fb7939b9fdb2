/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* The Internet checksum from scratch (RFC 1071), for the tests' frames:
 * the unit tests check the datapath's incremental fix-ups against it, and
 * tests/e2e/rawframe.c builds attack frames with it. */
#ifndef DH_TEST_CSUM_H
#define DH_TEST_CSUM_H

#include <stddef.h>
#include <stdint.h>

/* One's-complement sum of 16-bit big-endian words, folded by csum_fold(). */
static inline uint32_t csum_add(uint32_t sum, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	size_t i;

	for (i = 0; i + 1 < len; i += 2)
		sum += (p[i] << 8) | p[i + 1];
	if (len & 1)
		sum += p[len - 1] << 8;
	return sum;
}

static inline uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

#endif /* DH_TEST_CSUM_H */
