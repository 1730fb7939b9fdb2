// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Whether this network namespace has a NAT chain, which socket mode cannot
 * live with. Once any nat-type chain exists, netfilter's NAT hook runs at
 * LOCAL_IN (nf_nat_ipv4_local_in) for every tracked packet, and drops the
 * socket a packet carries when that socket's remote port differs from the
 * flow's (a check written for early demux, skipped only for IP_TRANSPARENT
 * sockets). The listener or unconnected UDP socket socket mode assigns has
 * no remote port, so the packet always loses it and then finds nothing at
 * the gateway's port: "connection refused". Docker's MASQUERADE rules make
 * such a chain on every Docker host.
 *
 * nftables chains (iptables-nft, Debian's default, makes those too) are
 * read over nfnetlink; legacy iptables tables from /proc.
 */
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"

struct nat_scan {
	bool ipv4, ipv6;
};

static int chain_cb(const struct nlmsghdr *nlh, void *data)
{
	const struct nfgenmsg *nfg = mnl_nlmsg_get_payload(nlh);
	struct nat_scan *scan = data;
	const struct nlattr *attr;

	mnl_attr_for_each(attr, nlh, sizeof(*nfg)) {
		if (mnl_attr_get_type(attr) != NFTA_CHAIN_TYPE ||
		    mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) < 0 || strcmp(mnl_attr_get_str(attr), "nat"))
			continue;
		scan->ipv4 |= nfg->nfgen_family == NFPROTO_IPV4 || nfg->nfgen_family == NFPROTO_INET;
		scan->ipv6 |= nfg->nfgen_family == NFPROTO_IPV6 || nfg->nfgen_family == NFPROTO_INET;
	}
	return MNL_CB_OK;
}

/* A legacy iptables "nat" table, from /proc/net/ip{,6}_tables_names. */
static bool legacy_nat_table(const char *names)
{
	char line[64];
	bool found = false;
	FILE *f = fopen(names, "re");

	while (f && !found && fgets(line, sizeof(line), f))
		found = !strcmp(line, "nat\n");
	if (f)
		fclose(f);
	return found;
}

int dh_netns_nat_chains(bool *ipv4, bool *ipv6)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct nat_scan scan = {};
	struct nfgenmsg *nfg;
	int err;

	nlh->nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETCHAIN;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	nfg = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfg));
	nfg->nfgen_family = NFPROTO_UNSPEC;  /* every family */
	nfg->version = NFNETLINK_V0;
	err = dh_netlink_talk(NETLINK_NETFILTER, nlh, chain_cb, &scan);
	/* A kernel without nf_tables has no such chains. */
	if (err < 0 && err != -EPROTONOSUPPORT && err != -ENOENT)
		return err;
	*ipv4 = scan.ipv4 || legacy_nat_table("/proc/net/ip_tables_names");
	*ipv6 = scan.ipv6 || legacy_nat_table("/proc/net/ip6_tables_names");
	return 0;
}

const char *dh_socket_mode_blocked(void)
{
	bool ipv4, ipv6;

	/* Unreadable counts as nothing: this refuses what cannot work, and
	 * what it would let through fails closed ("connection refused"). */
	if (dh_netns_nat_chains(&ipv4, &ipv6))
		return NULL;
	return ipv4 && ipv6 ? "IPv4 and an IPv6" : ipv4 ? "IPv4" : ipv6 ? "IPv6" : NULL;
}
