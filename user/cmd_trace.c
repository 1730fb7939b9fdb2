// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * trace: one line per datapath event (a new redirected flow, a refusal, a
 * disallowed source, a guard drop) from the pinned trace_events ring
 * buffer, until SIGTERM, SIGINT or SIGHUP. The datapath writes events only
 * while trace_ctl is enabled (include/dockhost.h): trace enables it when
 * it starts and clears it when it ends, and the pin dir's lock is held
 * only to open the maps and claim trace_ctl, never while tracing, so
 * attach, port and the rest run beside a trace. One trace at a time: a
 * ring buffer has one reader.
 */
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define TRACE_CHECK_MS     1000  /* the pin set and trace_ctl, looked at this often */
#define TRACE_NAMES_MAX    1024  /* container addresses kept from Docker */
#define TRACE_NAMES_MIN_MS 2000  /* between two questions to Docker */


static const char *const kind_names[] = {
	[DH_TRACE_FLOW] = "flow",
	[DH_TRACE_REFUSED] = "refused",
	[DH_TRACE_DISALLOWED] = "disallowed",
	[DH_TRACE_GUARD_DROP] = "guard_drop",
};

struct trace {
	const struct dh_cli *cli;
	int events_fd, ctl_fd, bridges_fd;
	__u32 events_id;  /* the ring's map id: a pin set made afresh has another */
	char events_path[PATH_MAX];
	struct dh_docker_addr *names;
	int n_names;
	long long names_at_ms;  /* last asked, or 0 */
	bool write_failed;      /* stdout is gone (a closed pipe, a full disk) */
};

static long long clock_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* An event's bpf_ktime_get_ns() time (CLOCK_MONOTONIC), on the wall clock. */
static struct timespec event_time(__u64 ktime_ns)
{
	long long real = clock_ns(CLOCK_REALTIME) - (clock_ns(CLOCK_MONOTONIC) - (long long)ktime_ns);

	return (struct timespec){ .tv_sec = real / 1000000000LL, .tv_nsec = real % 1000000000LL };
}

/* True if @pid is a live dockhost-bpf (a trace): a dead one's, or a pid
 * reused by another program since, no longer holds trace_ctl. */
static bool trace_alive(__u32 pid)
{
	char path[64], comm[32] = "";
	FILE *f;

	if (!pid || (kill(pid, 0) && errno == ESRCH))
		return false;
	snprintf(path, sizeof(path), "/proc/%u/comm", pid);
	f = fopen(path, "re");
	if (!f)
		return true;  /* another pid namespace's /proc, say: assume it is */
	if (!fgets(comm, sizeof(comm), f))
		comm[0] = '\0';
	fclose(f);
	comm[strcspn(comm, "\n")] = '\0';
	return !strcmp(comm, DH_PROG);
}

static int ctl_get(const struct trace *t, struct dh_trace_ctl *ctl)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(t->ctl_fd, &zero, ctl) ? -errno : 0;
}

static int ctl_set(const struct trace *t, const struct dh_trace_ctl *ctl)
{
	__u32 zero = 0;

	return bpf_map_update_elem(t->ctl_fd, &zero, ctl, BPF_ANY) ? -errno : 0;
}

static __u32 map_id(int fd)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);

	return bpf_obj_get_info_by_fd(fd, &info, &len) ? 0 : info.id;
}

/* The pinned ring is still ours: no last detach removed it since. */
static bool pins_still_ours(const struct trace *t)
{
	int fd = bpf_obj_get(t->events_path);
	bool same;

	if (fd < 0)
		return false;
	same = map_id(fd) == t->events_id;
	close(fd);
	return same;
}

static const char *bridge_name(const struct trace *t, __u32 ifindex, char *buf, size_t size)
{
	struct dh_bridge bridge;

	if (bpf_map_lookup_elem(t->bridges_fd, &ifindex, &bridge) == 0 && bridge.name[0]) {
		snprintf(buf, size, "%.*s", DH_IFNAMSIZ, bridge.name);
		return buf;
	}
	snprintf(buf, size, "if%u", ifindex);
	return buf;
}

static const char *find_name(const struct trace *t, const struct dh_ip *addr)
{
	int i;

	for (i = 0; i < t->n_names; i++)
		if (dh_ip_equal(&t->names[i].addr, addr))
			return t->names[i].name;
	return NULL;
}

/* The container Docker knows at @addr, or NULL. An address not known asks
 * Docker again, at most every TRACE_NAMES_MIN_MS: a container started
 * since gets its name, and a busy trace does not hammer the daemon. */
static const char *container_name(struct trace *t, const struct dh_ip *addr)
{
	long long now = clock_ns(CLOCK_MONOTONIC) / 1000000;
	const char *name = find_name(t, addr);
	char why[256];
	int n;

	if (name || (t->names_at_ms && now - t->names_at_ms < TRACE_NAMES_MIN_MS))
		return name;
	t->names_at_ms = now;
	n = dh_docker_container_addrs(t->names, TRACE_NAMES_MAX, why, sizeof(why));
	if (n < 0) {
		dh_debug("trace: no container names: %s", why);
		n = 0;
	}
	t->n_names = n;
	return find_name(t, addr);
}

static void event_addr(const struct dh_trace_event *ev, const __u32 *words, struct dh_ip *ip)
{
	memset(ip, 0, sizeof(*ip));
	ip->family = ev->family == DH_AF_INET6 ? AF_INET6 : AF_INET;
	if (ip->family == AF_INET6)
		memcpy(ip->v6, words, sizeof(ip->v6));
	else
		ip->v4 = words[0];
}

/* "10.0.0.2:40000", "[fd00::2]:40000", or the address alone for port 0. */
static const char *endpoint(const struct dh_ip *ip, __u16 port_be, char *buf, size_t size)
{
	const char *text = dh_ip_str(ip);

	if (!port_be)
		snprintf(buf, size, "%s", text);
	else if (ip->family == AF_INET6)
		snprintf(buf, size, "[%s]:%u", text, ntohs(port_be));
	else
		snprintf(buf, size, "%s:%u", text, ntohs(port_be));
	return buf;
}

static const char *reason_name(__u16 reason)
{
	return reason < DH_N_COUNTERS ? dh_counter_names[reason] : "unknown";
}

static void flush_line(struct trace *t)
{
	/* Every line goes out as it is written: a trace redirected to a
	 * file and ended by a signal loses nothing. */
	if (fflush(stdout) || ferror(stdout))
		t->write_failed = true;
}

static void print_json_line(struct trace *t, struct json_object *obj)
{
	puts(json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(obj);
	flush_line(t);
}

static struct json_object *json_time(struct timespec ts)
{
	char text[64], date[40];
	struct tm tm;

	gmtime_r(&ts.tv_sec, &tm);
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(text, sizeof(text), "%s.%06dZ", date, (int)(ts.tv_nsec / 1000 % 1000000));
	return json_object_new_string(text);
}

static void text_time(struct timespec ts, char *buf, size_t size)
{
	char clock[16];
	struct tm tm;

	localtime_r(&ts.tv_sec, &tm);
	strftime(clock, sizeof(clock), "%H:%M:%S", &tm);
	snprintf(buf, size, "%s.%06d", clock, (int)(ts.tv_nsec / 1000 % 1000000));
}

static void add_str(struct json_object *obj, const char *key, const char *value)
{
	json_object_object_add(obj, key, value ? json_object_new_string(value) : NULL);
}

static int on_event(void *ctx, void *data, size_t size)
{
	const struct dh_trace_event *ev = data;
	struct trace *t = ctx;
	char bridge[DH_IFNAMSIZ + 8], mac[18], when[48], src[64], gw[64], target[64], shown[200];
	struct dh_ip saddr, daddr, taddr;
	const char *kind, *name = NULL;
	struct timespec ts;

	if (size < sizeof(*ev) || t->write_failed)
		return 0;
	kind = ev->kind < sizeof(kind_names) / sizeof(kind_names[0]) && kind_names[ev->kind] ?
		       kind_names[ev->kind] : "unknown";
	ts = event_time(ev->ktime_ns);
	bridge_name(t, ev->ifindex, bridge, sizeof(bridge));
	snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", ev->smac[0], ev->smac[1], ev->smac[2],
		 ev->smac[3], ev->smac[4], ev->smac[5]);
	event_addr(ev, ev->saddr, &saddr);
	event_addr(ev, ev->daddr, &daddr);
	event_addr(ev, ev->taddr, &taddr);
	if (ev->family)
		name = container_name(t, &saddr);
	/* A guard drop's ports were never read: addresses only. */
	endpoint(&saddr, ev->kind == DH_TRACE_GUARD_DROP ? 0 : ev->sport, src, sizeof(src));
	endpoint(&daddr, ev->kind == DH_TRACE_GUARD_DROP ? 0 : ev->dport, gw, sizeof(gw));
	endpoint(&taddr, ev->tport, target, sizeof(target));

	if (t->cli->json) {
		struct json_object *obj = json_object_new_object();
		bool ports = ev->family && ev->kind != DH_TRACE_GUARD_DROP;

		json_object_object_add(obj, "time", json_time(ts));
		add_str(obj, "event", kind);
		add_str(obj, "bridge", bridge);
		add_str(obj, "mode", dh_mode_name(ev->mode));
		if (ev->kind != DH_TRACE_GUARD_DROP)
			add_str(obj, "protocol", ev->family ? dh_proto_name(ev->proto) : NULL);
		add_str(obj, "source", ev->family ? dh_ip_str(&saddr) : NULL);
		if (ports)
			json_object_object_add(obj, "source_port", json_object_new_int(ntohs(ev->sport)));
		add_str(obj, "container", name);
		if (ev->kind == DH_TRACE_GUARD_DROP) {
			add_str(obj, "source_mac", mac);
			add_str(obj, "destination", ev->family ? dh_ip_str(&daddr) : NULL);
		} else {
			add_str(obj, "gateway", ev->family ? dh_ip_str(&daddr) : NULL);
			if (ports)
				json_object_object_add(obj, "gateway_port", json_object_new_int(ntohs(ev->dport)));
		}
		if (ev->kind == DH_TRACE_FLOW || ev->kind == DH_TRACE_REFUSED) {
			add_str(obj, "target", dh_ip_str(&taddr));
			json_object_object_add(obj, "target_port", json_object_new_int(ntohs(ev->tport)));
		}
		add_str(obj, "reason", reason_name(ev->reason));
		print_json_line(t, obj);
		return 0;
	}

	text_time(ts, when, sizeof(when));
	if (name)
		snprintf(shown, sizeof(shown), "%s (%s)", src, name);
	else
		snprintf(shown, sizeof(shown), "%s", src);
	switch (ev->kind) {
	case DH_TRACE_FLOW:
	case DH_TRACE_REFUSED:
		printf("%s %-10s %s %s %s %s -> %s %s\n", when, kind, bridge, dh_proto_name(ev->proto), shown, gw,
		       target, reason_name(ev->reason));
		break;
	case DH_TRACE_GUARD_DROP:
		if (ev->family)
			printf("%s %-10s %s %s %s -> %s %s\n", when, kind, bridge, mac, shown, gw,
			       reason_name(ev->reason));
		else
			printf("%s %-10s %s %s - %s\n", when, kind, bridge, mac, reason_name(ev->reason));
		break;
	default:  /* disallowed, and kinds of a newer datapath */
		printf("%s %-10s %s %s %s %s %s\n", when, kind, bridge, dh_proto_name(ev->proto), shown, gw,
		       reason_name(ev->reason));
		break;
	}
	flush_line(t);
	return 0;
}

static int discard(void *ctx, void *data, size_t size)
{
	return 0;
}

/* Events the ring had no room for turned tracing off (see
 * DH_TRACE_RING_SIZE): say how many, in the stream, and turn it on again. */
static void check_lost(struct trace *t, __u64 *lost_seen)
{
	struct dh_trace_ctl ctl;
	struct timespec ts;
	char when[48];

	if (ctl_get(t, &ctl) || ctl.pid != (__u32)getpid() || ctl.enabled)
		return;
	ts = event_time(clock_ns(CLOCK_MONOTONIC));
	if (t->cli->json) {
		struct json_object *obj = json_object_new_object();

		json_object_object_add(obj, "time", json_time(ts));
		add_str(obj, "event", "lost");
		json_object_object_add(obj, "count", json_object_new_int64(ctl.lost - *lost_seen));
		print_json_line(t, obj);
	} else {
		text_time(ts, when, sizeof(when));
		printf("%s %-10s %llu events: the ring buffer was full\n", when, "lost",
		       (unsigned long long)(ctl.lost - *lost_seen));
		flush_line(t);
	}
	*lost_seen = ctl.lost;
	ctl.enabled = 1;
	ctl_set(t, &ctl);
}

/* Clears trace_ctl if it is still ours. */
static void trace_disable(const struct trace *t)
{
	struct dh_trace_ctl ctl;

	if (ctl_get(t, &ctl) == 0 && ctl.pid == (__u32)getpid()) {
		ctl.enabled = 0;
		ctl.pid = 0;
		ctl_set(t, &ctl);
	}
}

static int dup_fd(int fd)
{
	return fcntl(fd, F_DUPFD_CLOEXEC, 0);
}

/*
 * Under the pin dir's lock, only for this: opens the maps, claims
 * trace_ctl, empties the ring of what a trace before us left, enables.
 */
static int trace_open(struct trace *t, struct ring_buffer **rb, __u64 *lost_seen)
{
	struct dh_trace_ctl ctl;
	struct dh_state st;
	int err;

	err = dh_state_open(t->cli, &st, DH_OPEN_EXISTING);
	if (err == -ENOENT)
		return dh_runtime_error("trace: no bridge attached (pin dir %s)", t->cli->pin_dir);
	if (err)
		return err;
	t->events_fd = dup_fd(st.trace_events_fd);
	t->ctl_fd = dup_fd(st.trace_ctl_fd);
	t->bridges_fd = dup_fd(st.bridges_fd);
	snprintf(t->events_path, sizeof(t->events_path), "%s/%s", t->cli->pin_dir, DH_MAP_TRACE_EVENTS);
	if (t->events_fd < 0 || t->ctl_fd < 0 || t->bridges_fd < 0) {
		err = dh_runtime_error("trace: %s", strerror(errno));
		goto out;
	}
	t->events_id = map_id(t->events_fd);
	err = ctl_get(t, &ctl);
	if (err) {
		err = dh_runtime_error("trace: reading %s: %s", DH_MAP_TRACE_CTL, strerror(-err));
		goto out;
	}
	if (ctl.enabled && ctl.pid != (__u32)getpid() && trace_alive(ctl.pid)) {
		err = dh_runtime_error("trace: pid %u is tracing already (one trace at a time)", ctl.pid);
		goto out;
	}
	if (ctl.pid)
		dh_debug("trace: taking over from pid %u, which is gone", ctl.pid);
	*rb = ring_buffer__new(t->events_fd, discard, NULL, NULL);
	if (!*rb) {
		err = dh_runtime_error("trace: cannot map the ring buffer: %s", strerror(errno));
		goto out;
	}
	ring_buffer__consume(*rb);  /* a dead trace's leftovers */
	ring_buffer__free(*rb);
	*rb = ring_buffer__new(t->events_fd, on_event, t, NULL);
	if (!*rb) {
		err = dh_runtime_error("trace: cannot map the ring buffer: %s", strerror(errno));
		goto out;
	}
	*lost_seen = ctl.lost;
	ctl.enabled = 1;
	ctl.pid = getpid();
	err = ctl_set(t, &ctl);
	if (err)
		err = dh_runtime_error("trace: enabling %s: %s", DH_MAP_TRACE_CTL, strerror(-err));
out:
	dh_state_close(&st);  /* the lock goes with it */
	return err;
}

static int trace_loop(struct trace *t, struct ring_buffer *rb, int sig_fd, __u64 *lost_seen)
{
	long long next_check = clock_ns(CLOCK_MONOTONIC) / 1000000 + TRACE_CHECK_MS;
	struct pollfd fds[2] = {
		{ .fd = sig_fd, .events = POLLIN },
		{ .fd = ring_buffer__epoll_fd(rb), .events = POLLIN },
	};
	int ret;

	for (;;) {
		long long left = next_check - clock_ns(CLOCK_MONOTONIC) / 1000000;

		if (left <= 0) {
			if (!pins_still_ours(t)) {
				dh_warn("trace: %s is gone (the last detach): nothing left to trace",
					t->events_path);
				return 0;
			}
			check_lost(t, lost_seen);
			next_check = clock_ns(CLOCK_MONOTONIC) / 1000000 + TRACE_CHECK_MS;
			continue;
		}
		/* Events come without a wakeup (see dh_trace_submit): look
		 * every DH_TRACE_POLL_MS, or sooner when the ring fills. */
		ret = poll(fds, 2, left > DH_TRACE_POLL_MS ? DH_TRACE_POLL_MS : (int)left);
		if (ret < 0) {
			if (errno == EINTR)
				continue;
			return dh_runtime_error("trace: waiting for events: %s", strerror(errno));
		}
		if (ret == 0 || fds[1].revents) {
			ret = ring_buffer__consume(rb);
			if (ret < 0)
				return dh_runtime_error("trace: reading events: %s", strerror(-ret));
			check_lost(t, lost_seen);
		}
		if (t->write_failed)
			return dh_runtime_error("trace: writing events: %s", strerror(errno ? errno : EIO));
		if (fds[0].revents) {
			struct signalfd_siginfo info;

			if (read(sig_fd, &info, sizeof(info)) == sizeof(info))
				dh_debug("trace: signal %u", info.ssi_signo);
			/* What came before the signal still goes out. */
			ring_buffer__consume(rb);
			return t->write_failed ? DH_EXIT_RUNTIME : 0;
		}
	}
}

int dh_cmd_trace(const struct dh_cli *cli, int argc, char **argv)
{
	struct trace t = { .cli = cli, .events_fd = -1, .ctl_fd = -1, .bridges_fd = -1 };
	struct ring_buffer *rb = NULL;
	__u64 lost_seen = 0;
	int err, sig_fd = -1;

	if (getopt_long(argc, argv, "", (const struct option[]){ {} }, NULL) != -1)
		return dh_usage_error("trace: unknown option '%s'", argv[optind - 1]);
	if (optind != argc)
		return dh_usage_error("trace: unexpected argument '%s'", argv[optind]);
	err = dh_require_root();
	if (err)
		return err;
	t.names = calloc(TRACE_NAMES_MAX, sizeof(*t.names));
	if (!t.names)
		return dh_runtime_error("trace: out of memory");

	/* Blocked before tracing is enabled: from then on a signal only ends
	 * the loop, and tracing is always disabled on the way out. A closed
	 * pipe is a write error, not a death that leaves tracing on. */
	signal(SIGPIPE, SIG_IGN);
	if ((sig_fd = dh_stop_signals_fd()) < 0) {
		err = dh_runtime_error("trace: cannot take over SIGTERM: %s", strerror(errno));
		goto out;
	}
	err = trace_open(&t, &rb, &lost_seen);
	if (err)
		goto out;
	if (!cli->json) {
		printf("trace: following %s (SIGINT or SIGTERM ends it)\n", t.events_path);
		flush_line(&t);
	}
	err = trace_loop(&t, rb, sig_fd, &lost_seen);
	trace_disable(&t);
out:
	ring_buffer__free(rb);
	if (sig_fd >= 0)
		close(sig_fd);
	if (t.events_fd >= 0)
		close(t.events_fd);
	if (t.ctl_fd >= 0)
		close(t.ctl_fd);
	if (t.bridges_fd >= 0)
		close(t.bridges_fd);
	free(t.names);
	return err;
}
