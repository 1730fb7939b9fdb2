// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * watch: follow bridges as they come and go (Docker creates br-<id> at
 * `docker network create`, removes it at `network rm`). rtnetlink link and
 * IPv4 address events, read with libmnl, drive the same attach and detach
 * as the commands; each CLI call's lock is taken per event, so other
 * commands keep working while watch runs. Docker's own events (a thread
 * reads them, docker.c) keep allow-list sources and labelled containers'
 * ports current (watch_docker.c).
 */
#include <errno.h>
#include <fnmatch.h>
#include <getopt.h>
#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli.h"

#define MAX_MATCHES 32

struct watch {
	const struct dh_cli *cli;
	const char *matches[MAX_MATCHES];
	int n_matches;
	struct dh_attach_opts opts;  /* bridge name and port count set per call */
	int n_ports;                 /* --port given: opts.ports[0..n_ports) */
	bool mode_given;             /* --mode: for a bridge's first attach only */
	bool detach_on_exit;
	bool docker_labels;          /* --docker-labels */
	long long docker_again;      /* monotonic ms of the pass after an event's, or 0 */
	/* Bridges attached by this watch, by ifindex, for --detach-on-exit
	 * and to tell which deletions are ours. */
	struct dh_watched_bridge seen[DH_MAX_BRIDGES];  /* no more can be attached: the bridges map's size */
	int n_seen;
	bool resync_pending;  /* the last listing failed: try again soon */
	const char *config_path;  /* --config: converged to at start and on SIGHUP only */
	struct dh_config cfg;     /* as loaded last (empty without --config) */
};

/* How often, with no event, watch checks that its bridges still have
 * their programs (and pins): a removed program sends no event. */
#define DH_WATCH_CHECK_MS 5000

static long long monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static bool matches(const struct watch *w, const char *name)
{
	int i;

	for (i = 0; i < w->n_matches; i++)
		if (fnmatch(w->matches[i], name, 0) == 0)
			return true;
	return dh_config_bridge(&w->cfg, name, false) != NULL;
}

static int find_seen(const struct watch *w, int ifindex)
{
	int i;

	for (i = 0; i < w->n_seen; i++)
		if (w->seen[i].ifindex == ifindex)
			return i;
	return -1;
}

/*
 * Attaches a bridge not watched yet, with the --port specs and --mode; refreshes one
 * already watched (gateways from its addresses, programs back if removed),
 * without them: after the first attach the port map is the user's, and a
 * 'port del --bridge' or 'port add --to' must not be undone by the next
 * address change.
 */
static void attach_bridge(struct watch *w, int ifindex, const char *name)
{
	const struct dh_config_bridge *decl = dh_config_bridge(&w->cfg, name, false);
	bool first = find_seen(w, ifindex) < 0;

	/* A bridge the configuration declares or matches: attached as it
	 * says (its mode, gateways and own ports), by the configuration's
	 * apply, for this bridge alone; the refresh below is then quiet. */
	if (decl && first) {
		struct dh_apply_opts apply = { .missing_ok = true, .only = name, .prefix = "watch: " };

		fflush(stdout);
		if (dh_config_apply(w->cli, &w->cfg, &apply))
			return;
	}
	snprintf(w->opts.bridge, sizeof(w->opts.bridge), "%s", name);
	w->opts.n_ports = first ? w->n_ports : 0;
	w->opts.mode_given = first && w->mode_given && !decl;
	w->opts.quiet_if_unchanged = !first || decl;
	fflush(stdout);
	if (dh_attach(w->cli, &w->opts) == 0 && first && w->n_seen < DH_MAX_BRIDGES) {
		w->seen[w->n_seen].ifindex = ifindex;
		snprintf(w->seen[w->n_seen].name, DH_IFNAMSIZ, "%s", name);
		w->n_seen++;
	}
	fflush(stdout);
}

static void forget_bridge(struct watch *w, int slot)
{
	fflush(stdout);
	dh_detach(w->cli, w->seen[slot].name);  /* device gone: forgets its state */
	fflush(stdout);
	w->seen[slot] = w->seen[--w->n_seen];
}

/* Addresses changed on docker0 affect every bridge's gateway set. */
static void refresh_all(struct watch *w)
{
	int i;

	for (i = 0; i < w->n_seen; i++)
		attach_bridge(w, w->seen[i].ifindex, w->seen[i].name);
}

struct link_event {
	int ifindex;
	bool is_bridge;
	char name[IF_NAMESIZE];
};

static int link_attr(const struct nlattr *attr, void *data)
{
	struct link_event *ev = data;

	if (mnl_attr_get_type(attr) == IFLA_IFNAME)
		snprintf(ev->name, sizeof(ev->name), "%s", mnl_attr_get_str(attr));
	if (mnl_attr_get_type(attr) == IFLA_LINKINFO) {
		const struct nlattr *info;

		mnl_attr_for_each_nested(info, attr)
			if (mnl_attr_get_type(info) == IFLA_INFO_KIND)
				ev->is_bridge = !strcmp(mnl_attr_get_str(info), "bridge");
	}
	return MNL_CB_OK;
}

static int on_message(const struct nlmsghdr *nlh, void *data)
{
	struct watch *w = data;

	if (nlh->nlmsg_type == RTM_NEWLINK || nlh->nlmsg_type == RTM_DELLINK) {
		struct ifinfomsg *ifm = mnl_nlmsg_get_payload(nlh);
		struct link_event ev = { .ifindex = ifm->ifi_index };
		int slot;

		mnl_attr_parse(nlh, sizeof(*ifm), link_attr, &ev);
		slot = find_seen(w, ev.ifindex);
		if (nlh->nlmsg_type == RTM_DELLINK && slot >= 0)
			forget_bridge(w, slot);
		else if (nlh->nlmsg_type == RTM_NEWLINK && slot < 0 && ev.is_bridge && matches(w, ev.name))
			attach_bridge(w, ev.ifindex, ev.name);
	} else if (nlh->nlmsg_type == RTM_NEWADDR || nlh->nlmsg_type == RTM_DELADDR) {
		struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
		char name[IF_NAMESIZE];
		int slot = find_seen(w, ifa->ifa_index);

		/* A device being deleted loses its addresses first: leave it to
		 * the RTM_DELLINK that follows. IPv6 link-local addresses are
		 * never gateways (see dh_gateway_unusable). */
		if ((ifa->ifa_family != AF_INET && ifa->ifa_family != AF_INET6) ||
		    (ifa->ifa_family == AF_INET6 && ifa->ifa_scope == RT_SCOPE_LINK) ||
		    !if_indextoname(ifa->ifa_index, name))
			return MNL_CB_OK;
		if (!strcmp(name, "docker0"))
			refresh_all(w);
		else if (slot >= 0)
			attach_bridge(w, w->seen[slot].ifindex, w->seen[slot].name);
	}
	return MNL_CB_OK;
}

struct link_list {
	struct link_event *links;
	int count, max;
};

static int list_link_cb(const struct nlmsghdr *nlh, void *data)
{
	struct ifinfomsg *ifm = mnl_nlmsg_get_payload(nlh);
	struct link_list *list = data;
	struct link_event *ev;

	if (nlh->nlmsg_type != RTM_NEWLINK)
		return MNL_CB_OK;
	if (list->count == list->max) {
		int max = list->max ? 2 * list->max : 64;
		struct link_event *links = realloc(list->links, max * sizeof(*links));

		if (!links) {
			errno = ENOMEM;
			return MNL_CB_ERROR;
		}
		list->links = links;
		list->max = max;
	}
	ev = &list->links[list->count++];
	*ev = (struct link_event){ .ifindex = ifm->ifi_index };
	mnl_attr_parse(nlh, sizeof(*ifm), link_attr, ev);
	return MNL_CB_OK;
}

/*
 * Lists every link and brings watch in line with it: bridges gone are
 * forgotten, matching ones not yet attached are attached, the others
 * refreshed (addresses re-read). Runs at start and whenever events were
 * lost (the socket overran, or a message did not fit). Returns 0 or -errno;
 * on failure it is retried shortly.
 */
static int resync(struct watch *w)
{
	struct link_list list = {};
	int i, j, err;

	err = dh_rtnl_link_dump(list_link_cb, &list);
	w->resync_pending = err < 0;
	if (err < 0) {
		free(list.links);
		return err;
	}
	for (i = w->n_seen - 1; i >= 0; i--) {
		for (j = 0; j < list.count && list.links[j].ifindex != w->seen[i].ifindex; j++)
			;
		if (j == list.count)
			forget_bridge(w, i);
	}
	for (j = 0; j < list.count; j++) {
		const struct link_event *ev = &list.links[j];
		int slot = find_seen(w, ev->ifindex);

		if (slot >= 0)
			attach_bridge(w, ev->ifindex, w->seen[slot].name);
		else if (ev->is_bridge && matches(w, ev->name))
			attach_bridge(w, ev->ifindex, ev->name);
	}
	free(list.links);
	return 0;
}

/* Test-only: DH_TEST_WATCH_RCVBUF=BYTES shrinks the event socket's receive
 * buffer so that a burst of events overruns it (ENOBUFS) for sure. */
static void test_rcvbuf(int fd)
{
	const char *env = getenv("DH_TEST_WATCH_RCVBUF");
	int size;

	if (env) {
		size = atoi(env);
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	}
}

/* Test-only: DH_TEST_WATCH_WAIT_DELAY_MS=N sleeps N ms before each wait for
 * events, to widen the window where a signal once went unnoticed (checked
 * a flag, then blocked in recvfrom). It only slows watch down. */
static void test_wait_delay(void)
{
	static int delay_ms = -1;

	if (delay_ms < 0) {
		const char *env = getenv("DH_TEST_WATCH_WAIT_DELAY_MS");

		delay_ms = env ? atoi(env) : 0;
	}
	if (delay_ms > 0)
		usleep(delay_ms * 1000);
}

#define DH_WATCH_DOCKER_AGAIN_MS 1000

/* Docker's events: container start, die, destroy; network connect and
 * disconnect ({"type":[...],"event":[...]}, URL-encoded). */
#define DOCKER_EVENTS_PATH \
	"/events?filters=%7B%22type%22%3A%5B%22container%22%2C%22network%22%5D%2C%22event%22%3A%5B%22start%22%2C" \
	"%22die%22%2C%22destroy%22%2C%22connect%22%2C%22disconnect%22%5D%7D"

/* Reads what the Docker thread sent; one pass over Docker's state if
 * anything may have changed. Outages are said once each (the thread
 * sends one record per outage). */
static void docker_events(struct watch *w, struct dh_docker_events *ev)
{
	struct dh_docker_event rec;
	bool sync = false;

	while (dh_docker_events_read(ev, &rec)) {
		rec.text[sizeof(rec.text) - 1] = '\0';
		if (rec.type == DH_DOCKER_CONNECTED) {
			printf("watch: following Docker's events%s\n", w->docker_labels ? " and labels" : "");
			sync = true;  /* events may have been missed meanwhile */
		} else if (rec.type == DH_DOCKER_LOST) {
			printf("watch: %s: no Docker events until it answers (trying again)\n", rec.text);
		} else {
			dh_debug("watch: docker: %s", rec.text);
			sync = true;
		}
	}
	fflush(stdout);
	if (!sync)
		return;
	dh_watch_docker_sync(w->cli, w->docker_labels, w->seen, w->n_seen);
	/* Docker sends "die" before its container list says so (the list
	 * is a snapshot written after the event): look again in a second. */
	w->docker_again = monotonic_ms() + DH_WATCH_DOCKER_AGAIN_MS;
}

/*
 * SIGHUP: the configuration again, and the host converged to it. A file
 * that does not parse changes nothing (the one loaded before stays).
 * Bridges no longer declared nor matched are no longer watch's (apply
 * detached those that were the configuration's); new ones are attached
 * by the listing that follows. Mappings on unchanged ports are not
 * touched: their flows go on.
 */
static void reload(struct watch *w)
{
	struct dh_apply_opts apply = { .missing_ok = true, .prefix = "watch: " };
	struct dh_config next;
	char why[512];
	int i;

	if (!w->config_path) {
		printf("watch: SIGHUP: no --config to reload\n");
		fflush(stdout);
		return;
	}
	if (dh_config_load(w->config_path, &next, why, sizeof(why))) {
		dh_warn("watch: reload: %s: the configuration loaded before stays", why);
		return;
	}
	printf("watch: reloading %s\n", w->config_path);
	fflush(stdout);
	dh_config_free(&w->cfg);
	w->cfg = next;
	dh_config_apply(w->cli, &w->cfg, &apply);
	for (i = w->n_seen - 1; i >= 0; i--)
		if (!matches(w, w->seen[i].name))
			w->seen[i] = w->seen[--w->n_seen];
	if (resync(w) < 0)
		w->resync_pending = true;
	fflush(stdout);
}

/*
 * Reads events until SIGTERM, SIGINT or SIGHUP; a listing of existing links
 * goes first. The signals stay blocked and arrive on @sig_fd, read in the
 * same poll() as the events: one that comes while an event is handled, or
 * just before the wait, is still pending there, so none can be missed.
 */
/*
 * Type=notify: tells systemd the first pass is done (the bridges present at
 * start attached), so that `systemctl start` returns only then and a stop
 * right after it finds the signals taken over. sd_notify(3)'s protocol, one
 * datagram to $NOTIFY_SOCKET ('@': abstract), without linking libsystemd.
 */
static void notify_ready(void)
{
	const char *path = getenv("NOTIFY_SOCKET"), *msg = "READY=1";
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	socklen_t len;
	int fd;

	if (!path || (path[0] != '/' && path[0] != '@') || strlen(path) >= sizeof(sun.sun_path))
		return;
	memcpy(sun.sun_path, path, strlen(path));
	if (path[0] == '@')
		sun.sun_path[0] = '\0';
	len = offsetof(struct sockaddr_un, sun_path) + strlen(path);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sun, len) < 0)
		dh_debug("watch: cannot notify systemd on %s: %s", path, strerror(errno));
	close(fd);
}

static int run(struct watch *w, int sig_fd)
{
	struct dh_docker_events *docker = NULL;
	struct mnl_socket *events;
	struct dh_rtnl_buf buf;
	struct pollfd fds[3];
	char why[256];
	nfds_t n_fds = 2;
	long long next_check;
	long ret;
	int err = 0;

	if (dh_rtnl_buf_init(&buf))
		return dh_runtime_error("watch: out of memory");
	events = mnl_socket_open2(NETLINK_ROUTE, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (!events || mnl_socket_bind(events, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR, MNL_SOCKET_AUTOPID) < 0) {
		err = dh_runtime_error("watch: cannot listen to rtnetlink: %s", strerror(errno));
		goto out;
	}
	test_rcvbuf(mnl_socket_get_fd(events));

	/* Subscribed first, listed second: a bridge created in between shows
	 * up twice, and attach is idempotent. */
	printf("watch: following bridges matching");
	for (ret = 0; ret < w->n_matches; ret++)
		printf(" '%s'", w->matches[ret]);
	if (w->config_path)
		printf("%s the bridge and match lines of %s", w->n_matches ? " and" : "", w->config_path);
	printf("\n");
	fflush(stdout);
	if (w->config_path) {
		struct dh_apply_opts apply = { .missing_ok = true, .prefix = "watch: " };

		/* Converged to once now; a failure is said, and SIGHUP tries again. */
		dh_config_apply(w->cli, &w->cfg, &apply);
	}
	ret = resync(w);
	if (ret < 0) {
		err = dh_runtime_error("watch: cannot list links: %s", strerror(-ret));
		goto out;
	}
	notify_ready();

	/* After the first listing: the stream's first pass then finds the
	 * bridges watch follows. */
	docker = dh_docker_events_start(DOCKER_EVENTS_PATH, why, sizeof(why));
	if (!docker)
		printf("watch: %s: not following Docker's events\n", why);
	fflush(stdout);

	fds[0] = (struct pollfd){ .fd = sig_fd, .events = POLLIN };
	fds[1] = (struct pollfd){ .fd = mnl_socket_get_fd(events), .events = POLLIN };
	if (docker)
		fds[n_fds++] = (struct pollfd){ .fd = dh_docker_events_fd(docker), .events = POLLIN };
	next_check = monotonic_ms() + DH_WATCH_CHECK_MS;
	for (;;) {
		long long left = next_check - monotonic_ms();

		if (w->docker_again && w->docker_again - monotonic_ms() <= 0) {
			w->docker_again = 0;
			dh_watch_docker_sync(w->cli, w->docker_labels, w->seen, w->n_seen);
			continue;
		}
		if (left <= 0) {
			/* Removing a program or the pins sends no event: look
			 * again now and then, however busy events keep us, and
			 * put back what went. */
			if (!w->resync_pending)
				refresh_all(w);
			next_check = monotonic_ms() + DH_WATCH_CHECK_MS;
			continue;
		}
		if (w->docker_again && w->docker_again - monotonic_ms() < left)
			left = w->docker_again - monotonic_ms() + 1;
		test_wait_delay();
		ret = poll(fds, n_fds, w->resync_pending && left > 1000 ? 1000 : (int)left);
		if (ret == 0) {
			if (w->resync_pending)
				resync(w);
			continue;
		}
		if (ret < 0) {
			if (errno == EINTR)
				continue;
			err = dh_runtime_error("watch: waiting for events: %s", strerror(errno));
			break;
		}
		if (fds[0].revents) {
			struct signalfd_siginfo info;

			if (read(sig_fd, &info, sizeof(info)) != sizeof(info))
				continue;
			dh_debug("watch: signal %u", info.ssi_signo);
			if (info.ssi_signo == SIGHUP) {
				reload(w);
				continue;
			}
			break;
		}
		if (n_fds > 2 && fds[2].revents)
			docker_events(w, docker);
		if (!fds[1].revents)
			continue;
		ret = dh_rtnl_recv(fds[1].fd, &buf);
		if (ret == -EAGAIN || ret == -EINTR)
			continue;
		if (ret == -ENOBUFS || ret == -EMSGSIZE) {
			/* Events were lost: list everything again. */
			dh_warn("watch: %s: listing links again",
				ret == -ENOBUFS ? "netlink overrun, events lost" : "netlink message truncated");
			ret = resync(w);
			if (ret < 0)
				dh_warn("watch: cannot list links: %s; trying again in a second", strerror(-ret));
			continue;
		}
		if (ret < 0) {
			err = dh_runtime_error("watch: reading rtnetlink: %s", strerror(-ret));
			break;
		}
		mnl_cb_run(buf.data, ret, 0, 0, on_message, w);
	}
out:
	dh_docker_events_stop(docker);  /* the thread ends before watch does */
	if (events)
		mnl_socket_close(events);
	dh_rtnl_buf_free(&buf);
	return err;
}

int dh_cmd_watch(const struct dh_cli *cli, int argc, char **argv)
{
	static const struct option options[] = {
		{ "match", required_argument, NULL, 'm' },
		{ "port", required_argument, NULL, 'p' },
		{ "hook", required_argument, NULL, 'k' },
		{ "mode", required_argument, NULL, 'o' },
		{ "detach-on-exit", no_argument, NULL, 'd' },
		{ "docker-labels", no_argument, NULL, 'l' },
		{ "config", required_argument, NULL, 'c' },
		{}
	};
	static struct watch w;
	int opt, err, i, sig_fd;

	memset(&w, 0, sizeof(w));
	w.cli = cli;
	while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
		switch (opt) {
		case 'm':
			if (w.n_matches == MAX_MATCHES)
				return dh_usage_error("watch: at most %d --match", MAX_MATCHES);
			w.matches[w.n_matches++] = optarg;
			break;
		case 'p':
			if (w.opts.n_ports == DH_MAX_ARGS)
				return dh_usage_error("watch: at most %d --port", DH_MAX_ARGS);
			if (!dh_parse_port_spec(optarg, &w.opts.ports[w.opts.n_ports]))
				return dh_usage_error("watch: --port '%s': not PORT, PORT/tcp or PORT/udp (1-65535)",
						      optarg);
			w.opts.n_ports++;
			w.n_ports = w.opts.n_ports;
			break;
		case 'k':
			if (!dh_parse_hook(optarg, &w.opts.hook))
				return dh_usage_error("watch: --hook '%s': not auto, tcx or clsact", optarg);
			break;
		case 'o':
			if (!dh_parse_mode(optarg, &w.opts.mode))
				return dh_usage_error("watch: --mode '%s': not socket or nat", optarg);
			w.mode_given = true;
			break;
		case 'd':
			w.detach_on_exit = true;
			break;
		case 'l':
			w.docker_labels = true;
			break;
		case 'c':
			w.config_path = optarg;
			break;
		case ':':
			return dh_usage_error("watch: option '%s' needs a value", argv[optind - 1]);
		default:
			return dh_usage_error("watch: unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind != argc)
		return dh_usage_error("watch: unexpected argument '%s'", argv[optind]);
	if (w.config_path) {
		char why[512];

		/* A bad line is bad input, as for apply: nothing attached. */
		if (dh_config_load(w.config_path, &w.cfg, why, sizeof(why)))
			return dh_usage_error("watch: %s", why);
	} else if (!w.n_matches) {
		w.matches[w.n_matches++] = "docker0";
		w.matches[w.n_matches++] = "br-*";
	}
	err = dh_require_root();
	if (err) {
		dh_config_free(&w.cfg);
		return err;
	}

	/* Blocked before anything is attached: from here on they only end
	 * the loop, and --detach-on-exit always runs. */
	if ((sig_fd = dh_stop_signals_fd()) < 0) {
		dh_config_free(&w.cfg);
		return dh_runtime_error("watch: cannot take over SIGTERM: %s", strerror(errno));
	}
	err = run(&w, sig_fd);
	close(sig_fd);

	if (w.detach_on_exit) {
		for (i = w.n_seen - 1; i >= 0; i--)
			dh_detach(cli, w.seen[i].name);
	} else {
		printf("watch: stopping; %d bridge(s) stay attached\n", w.n_seen);
	}
	dh_config_free(&w.cfg);
	return err;
}
