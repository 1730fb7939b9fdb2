// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Devices and their addresses over rtnetlink (libmnl). Not /sys/class/net:
 * sysfs shows the namespace of whoever mounted it, which is wrong under
 * `nsenter --net`; a netlink socket always answers for the caller's netns.
 */
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/*
 * One datagram into @buf, grown to its size first: a link message can be far
 * bigger than MNL_SOCKET_BUFFER_SIZE (a device's alternative names alone may
 * take up to 64 KiB), and a datagram read short is lost. Returns its length,
 * -EMSGSIZE if it was truncated all the same (nothing left to read), or
 * -errno (-ENOBUFS: the socket overran and messages were dropped).
 */
long dh_rtnl_recv(int fd, struct dh_rtnl_buf *buf)
{
	struct sockaddr_nl addr;
	struct iovec iov;
	struct msghdr msg = { .msg_name = &addr, .msg_namelen = sizeof(addr), .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t len;

	/* MSG_TRUNC with MSG_PEEK: the datagram's real length, left queued. */
	len = recv(fd, NULL, 0, MSG_PEEK | MSG_TRUNC);
	if (len < 0)
		return -errno;
	if ((size_t)len > buf->size) {
		char *bigger = realloc(buf->data, len);

		if (bigger) {
			buf->data = bigger;
			buf->size = len;
		}
	}
	iov = (struct iovec){ buf->data, buf->size };
	len = recvmsg(fd, &msg, 0);
	if (len < 0)
		return -errno;
	if (msg.msg_flags & MSG_TRUNC)
		return -EMSGSIZE;
	return len;
}

int dh_rtnl_buf_init(struct dh_rtnl_buf *buf)
{
	/* Dumps come in datagrams of up to 32 KiB when the reader's buffer
	 * takes them (the kernel sizes them by the largest read seen). */
	buf->size = 32768;
	buf->data = malloc(buf->size);
	return buf->data ? 0 : -ENOMEM;
}

void dh_rtnl_buf_free(struct dh_rtnl_buf *buf)
{
	free(buf->data);
	buf->data = NULL;
	buf->size = 0;
}

/* One request, answers handed to @cb until done. Returns 0 or -errno. */
int dh_rtnl_talk(struct nlmsghdr *req, mnl_cb_t cb, void *data)
{
	return dh_netlink_talk(NETLINK_ROUTE, req, cb, data);
}

int dh_netlink_talk(int bus, struct nlmsghdr *req, mnl_cb_t cb, void *data)
{
	struct dh_rtnl_buf buf;
	struct mnl_socket *nl;
	unsigned int portid, seq;
	int ret;

	if (dh_rtnl_buf_init(&buf))
		return -ENOMEM;
	nl = mnl_socket_open(bus);
	if (!nl) {
		ret = -errno;
		dh_rtnl_buf_free(&buf);
		return ret;
	}
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		ret = -errno;
		goto out;
	}
	portid = mnl_socket_get_portid(nl);
	seq = req->nlmsg_seq = time(NULL);
	if (mnl_socket_sendto(nl, req, req->nlmsg_len) < 0) {
		ret = -errno;
		goto out;
	}
	/* A dump ends with NLMSG_DONE (mnl_cb_run returns 0); a plain request
	 * gets one answer and no end marker. */
	do {
		ret = dh_rtnl_recv(mnl_socket_get_fd(nl), &buf);
		if (ret <= 0)
			break;
		ret = mnl_cb_run(buf.data, ret, seq, portid, cb, data);
		if (ret < 0)
			ret = -errno;
	} while (ret > 0 && (req->nlmsg_flags & NLM_F_DUMP));
out:
	mnl_socket_close(nl);
	dh_rtnl_buf_free(&buf);
	return ret;
}

/* Attributes by type, for mnl_attr_parse(): types above @max are skipped. */
struct attr_table {
	const struct nlattr **tb;
	int max;
};

static int attr_table_cb(const struct nlattr *attr, void *data)
{
	const struct attr_table *table = data;
	int type = mnl_attr_get_type(attr);

	if (type <= table->max)
		table->tb[type] = attr;
	return MNL_CB_OK;
}

static int link_cb(const struct nlmsghdr *nlh, void *data)
{
	struct ifinfomsg *ifm = mnl_nlmsg_get_payload(nlh);
	const struct nlattr *tb[IFLA_MAX + 1] = {}, *info[IFLA_INFO_MAX + 1] = {};
	struct attr_table link = { tb, IFLA_MAX }, linkinfo = { info, IFLA_INFO_MAX };
	struct dh_netdev *dev = data;

	dev->ifindex = ifm->ifi_index;
	mnl_attr_parse(nlh, sizeof(*ifm), attr_table_cb, &link);
	if (tb[IFLA_IFNAME])
		snprintf(dev->name, sizeof(dev->name), "%s", mnl_attr_get_str(tb[IFLA_IFNAME]));
	if (tb[IFLA_LINKINFO]) {
		mnl_attr_parse_nested(tb[IFLA_LINKINFO], attr_table_cb, &linkinfo);
		if (info[IFLA_INFO_KIND])
			snprintf(dev->kind, sizeof(dev->kind), "%s",
				 mnl_attr_get_str(info[IFLA_INFO_KIND]));
	}
	dev->is_bridge = !strcmp(dev->kind, "bridge");
	return MNL_CB_OK;
}

int dh_netdev_lookup(const char *name, struct dh_netdev *dev)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ifinfomsg *ifm;
	int ret;

	memset(dev, 0, sizeof(*dev));
	nlh->nlmsg_type = RTM_GETLINK;
	nlh->nlmsg_flags = NLM_F_REQUEST;
	ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
	ifm->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	ret = dh_rtnl_talk(nlh, link_cb, dev);
	if (ret == -ENODEV || (ret >= 0 && !dev->ifindex))
		return -ENODEV;
	return ret < 0 ? ret : 0;
}

struct bridge_dump {
	struct dh_netdev *devs;
	int max;
	int count;
};

static int bridge_dump_cb(const struct nlmsghdr *nlh, void *data)
{
	struct bridge_dump *dump = data;
	struct dh_netdev dev = {};

	link_cb(nlh, &dev);
	if (dev.is_bridge && dump->count < dump->max)
		dump->devs[dump->count++] = dev;
	return MNL_CB_OK;
}

int dh_rtnl_link_dump(int (*cb)(const struct nlmsghdr *, void *), void *data)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ifinfomsg *ifm;

	nlh->nlmsg_type = RTM_GETLINK;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
	ifm->ifi_family = AF_UNSPEC;
	/* Without an extension mask the kernel sizes the dump's datagrams
	 * for ordinary links and silently leaves out a bigger one (many
	 * alternative names): with it, each fits its largest link. */
	mnl_attr_put_u32(nlh, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
	return dh_rtnl_talk(nlh, cb, data);
}

int dh_netdev_bridges(struct dh_netdev *devs, int max)
{
	struct bridge_dump dump = { devs, max, 0 };
	int ret = dh_rtnl_link_dump(bridge_dump_cb, &dump);

	return ret < 0 ? ret : dump.count;
}

struct addr_dump {
	int ifindex;
	struct dh_ip *addrs;
	int max;
	int count;
};

static int addr_cb(const struct nlmsghdr *nlh, void *data)
{
	struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
	const struct nlattr *tb[IFA_MAX + 1] = {};
	struct attr_table table = { tb, IFA_MAX };
	struct addr_dump *dump = data;
	const struct nlattr *attr;
	struct dh_ip ip = { .family = ifa->ifa_family };

	if ((ifa->ifa_family != AF_INET && ifa->ifa_family != AF_INET6) || (int)ifa->ifa_index != dump->ifindex)
		return MNL_CB_OK;
	mnl_attr_parse(nlh, sizeof(*ifa), attr_table_cb, &table);
	/* IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer
	 * on point-to-point links; IPv6 has only IFA_ADDRESS here). */
	attr = tb[IFA_LOCAL] ? tb[IFA_LOCAL] : tb[IFA_ADDRESS];
	if (!attr)
		return MNL_CB_OK;
	if (ifa->ifa_family == AF_INET && mnl_attr_get_payload_len(attr) == sizeof(ip.v4))
		ip.v4 = mnl_attr_get_u32(attr);
	else if (ifa->ifa_family == AF_INET6 && mnl_attr_get_payload_len(attr) == sizeof(ip.v6))
		memcpy(ip.v6, mnl_attr_get_payload(attr), sizeof(ip.v6));
	else
		return MNL_CB_OK;
	/* Link-local IPv6 (every bridge has one) is no gateway: see
	 * dh_gateway_unusable(). */
	if (dh_gateway_unusable(&ip) && ip.family == AF_INET6)
		return MNL_CB_OK;
	if (dump->count < dump->max)
		dump->addrs[dump->count++] = ip;
	return MNL_CB_OK;
}

int dh_netdev_addrs(int ifindex, struct dh_ip *addrs, int max)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct addr_dump dump = { .ifindex = ifindex, .addrs = addrs, .max = max };
	struct ifaddrmsg *ifa;
	const char *fail;
	int ret;

	/* Test-only: DH_TEST_FAIL_ADDR_DUMP=1 makes every address read fail,
	 * as a transient netlink error would, to test that attach and watch
	 * keep a bridge's gateways then. It can only remove redirects. */
	fail = getenv("DH_TEST_FAIL_ADDR_DUMP");
	if (fail && !strcmp(fail, "1"))
		return -EIO;
	nlh->nlmsg_type = RTM_GETADDR;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = AF_UNSPEC;
	ret = dh_rtnl_talk(nlh, addr_cb, &dump);
	return ret < 0 ? ret : dump.count;
}
