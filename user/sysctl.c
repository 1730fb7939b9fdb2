// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* net.ipv4.conf.<bridge>.route_localnet: the one sysctl attach changes;
 * net.bridge.bridge-nf-call-iptables: one it only reads. */
#include <errno.h>
#include <stdio.h>

#include "cli.h"

static void route_localnet_path(const char *ifname, char *path, size_t size)
{
	/* /proc/sys/net is the caller's network namespace. */
	snprintf(path, size, "/proc/sys/net/ipv4/conf/%s/route_localnet", ifname);
}

int dh_route_localnet_get(const char *ifname, int *value)
{
	char path[128];
	FILE *f;
	int ok;

	route_localnet_path(ifname, path, sizeof(path));
	f = fopen(path, "r");
	if (!f)
		return -errno;
	ok = fscanf(f, "%d", value) == 1;
	fclose(f);
	return ok ? 0 : -EINVAL;
}

int dh_route_localnet_set(const char *ifname, int value)
{
	char path[128];
	FILE *f;
	int err = 0;

	route_localnet_path(ifname, path, sizeof(path));
	f = fopen(path, "w");
	if (!f)
		return -errno;
	if (fprintf(f, "%d\n", value) < 0)
		err = -errno;
	if (fclose(f) && !err)
		err = -errno;
	return err;
}

/* -ENOENT when br_netfilter is not loaded: then nothing calls iptables. */
int dh_bridge_nf_call_iptables(int *value)
{
	FILE *f = fopen("/proc/sys/net/bridge/bridge-nf-call-iptables", "r");
	int ok;

	if (!f)
		return -errno;
	ok = fscanf(f, "%d", value) == 1;
	fclose(f);
	return ok ? 0 : -EINVAL;
}
