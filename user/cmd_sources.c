// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Per-source counters (the pinned `sources` LRU, see bpf/lib/sources.bpf.h):
 * `stats --by-source` prints them once, `top` refreshes them sorted by
 * traffic rate. Container names come from Docker where it knows the
 * address; without Docker there are no names and no error.
 */
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define DH_TOP_INTERVAL_MAX 3600.0
#define DH_TOP_COUNT_MAX    1000000000UL
#define DH_NAMES_MAX        4096
#define DH_NAMES_REFRESH_S  5  /* at most this often asks Docker again */

struct source_row {
	struct dh_source_key key;
	struct dh_source_stats stats;
	char bridge[DH_IFNAMSIZ + 8];
	double pps, bps;  /* top only: since the previous refresh */
};

struct dh_sources {
	struct source_row *rows;
	size_t n;
};

/* Docker's names, asked once, then again when an unnamed source appears. */
struct names {
	struct dh_docker_addr *v;
	int n;
	time_t fetched;  /* 0: never */
};

/* qsort() and bsearch() take no NULL, even for no rows (UBSan checks). */
static void sort_rows(struct dh_sources *s, int (*cmp)(const void *, const void *))
{
	if (s->n)
		qsort(s->rows, s->n, sizeof(*s->rows), cmp);
}

static void sources_free(struct dh_sources *s)
{
	free(s->rows);
	s->rows = NULL;
	s->n = 0;
}

static int key_cmp(const void *a, const void *b)
{
	return memcmp(&((const struct source_row *)a)->key, &((const struct source_row *)b)->key,
		      sizeof(struct dh_source_key));
}

/* Bridge, then family, address, port, protocol: a stable order. */
static int row_order(const void *pa, const void *pb)
{
	const struct source_row *a = pa, *b = pb;
	int c = strcmp(a->bridge, b->bridge), i;

	if (c)
		return c;
	if (a->key.family != b->key.family)
		return a->key.family < b->key.family ? -1 : 1;
	for (i = 0; i < 4; i++)
		if (a->key.addr[i] != b->key.addr[i])
			return ntohl(a->key.addr[i]) < ntohl(b->key.addr[i]) ? -1 : 1;
	if (a->key.port != b->key.port)
		return ntohs(a->key.port) < ntohs(b->key.port) ? -1 : 1;
	return (int)a->key.proto - (int)b->key.proto;
}

/* Busiest first: bytes per second, packets per second, then totals. */
static int rate_order(const void *pa, const void *pb)
{
	const struct source_row *a = pa, *b = pb;

	if (a->bps != b->bps)
		return a->bps > b->bps ? -1 : 1;
	if (a->pps != b->pps)
		return a->pps > b->pps ? -1 : 1;
	if (a->stats.bytes != b->stats.bytes)
		return a->stats.bytes > b->stats.bytes ? -1 : 1;
	return row_order(pa, pb);
}

/* Every entry of the pinned map, with its bridge's name. */
static int sources_read(const struct dh_state *st, struct dh_sources *out)
{
	struct dh_source_key key, *prev = NULL;
	size_t cap = 0;

	out->rows = NULL;
	out->n = 0;
	while (bpf_map_get_next_key(st->sources_fd, prev, &key) == 0) {
		struct source_row *row;
		struct dh_bridge bridge;

		prev = &key;
		if (out->n == cap) {
			struct source_row *grown;

			cap = cap ? cap * 2 : 64;
			grown = realloc(out->rows, cap * sizeof(*grown));
			if (!grown) {
				sources_free(out);
				return -ENOMEM;
			}
			out->rows = grown;
		}
		row = &out->rows[out->n];
		memset(row, 0, sizeof(*row));
		row->key = key;
		/* Evicted between the two calls: skipped. */
		if (bpf_map_lookup_elem(st->sources_fd, &key, &row->stats))
			continue;
		if (bpf_map_lookup_elem(st->bridges_fd, &key.ifindex, &bridge) == 0)
			snprintf(row->bridge, sizeof(row->bridge), "%.*s", DH_IFNAMSIZ - 1, bridge.name);
		else
			snprintf(row->bridge, sizeof(row->bridge), "if%u", key.ifindex);
		out->n++;
	}
	return 0;
}

static struct dh_ip row_ip(const struct source_row *row)
{
	struct dh_ip ip = {};

	if (row->key.family == DH_AF_INET6) {
		ip.family = AF_INET6;
		memcpy(ip.v6, row->key.addr, sizeof(ip.v6));
	} else {
		ip.family = AF_INET;
		ip.v4 = row->key.addr[0];
	}
	return ip;
}

static const char *name_of(const struct names *names, const struct source_row *row)
{
	struct dh_ip ip = row_ip(row);
	int i;

	for (i = 0; i < names->n; i++)
		if (dh_ip_equal(&names->v[i].addr, &ip))
			return names->v[i].name;
	return NULL;
}

/* Asks Docker when a source has no name yet, at most every few seconds:
 * a container started since the last answer gets its name. */
static void names_update(struct names *names, const struct dh_sources *s)
{
	time_t now = time(NULL);
	bool unnamed = false;
	char why[256];
	size_t i;
	int n;

	for (i = 0; i < s->n && !unnamed; i++)
		unnamed = !name_of(names, &s->rows[i]);
	if (!unnamed || (names->fetched && now - names->fetched < DH_NAMES_REFRESH_S))
		return;
	if (!names->v) {
		names->v = calloc(DH_NAMES_MAX, sizeof(*names->v));
		if (!names->v)
			return;
	}
	names->fetched = now;
	n = dh_docker_container_addrs(names->v, DH_NAMES_MAX, why, sizeof(why));
	if (n < 0)
		dh_debug("no container names: %s", why);
	names->n = n > 0 ? n : 0;
}

static const char *proto_port(const struct source_row *row)
{
	static char buf[4][16];
	static unsigned int next;
	char *out = buf[next++ % 4];

	snprintf(out, sizeof(buf[0]), "%u/%s", ntohs(row->key.port), dh_proto_name(row->key.proto));
	return out;
}

static __u64 refused(const struct source_row *row)
{
	return row->stats.refused_no_socket + row->stats.refused_not_allowed;
}

static struct json_object *row_json(const struct source_row *row, const struct names *names, bool rates)
{
	struct json_object *obj = json_object_new_object();
	struct dh_ip ip = row_ip(row);
	const char *name = name_of(names, row);

	json_object_object_add(obj, "bridge", json_object_new_string(row->bridge));
	json_object_object_add(obj, "ifindex", json_object_new_int64(row->key.ifindex));
	json_object_object_add(obj, "source", json_object_new_string(dh_ip_str(&ip)));
	json_object_object_add(obj, "container", name ? json_object_new_string(name) : NULL);
	json_object_object_add(obj, "port", json_object_new_int(ntohs(row->key.port)));
	json_object_object_add(obj, "proto", json_object_new_string(dh_proto_name(row->key.proto)));
	json_object_object_add(obj, "packets", json_object_new_uint64(row->stats.packets));
	json_object_object_add(obj, "bytes", json_object_new_uint64(row->stats.bytes));
	json_object_object_add(obj, "flows", json_object_new_uint64(row->stats.flows));
	json_object_object_add(obj, "refused", json_object_new_uint64(refused(row)));
	json_object_object_add(obj, "refused_no_socket", json_object_new_uint64(row->stats.refused_no_socket));
	json_object_object_add(obj, "refused_not_allowed", json_object_new_uint64(row->stats.refused_not_allowed));
	if (rates) {
		json_object_object_add(obj, "packets_per_second", json_object_new_double(row->pps));
		json_object_object_add(obj, "bytes_per_second", json_object_new_double(row->bps));
	}
	return obj;
}

static struct json_object *sources_json(const struct dh_sources *s, const struct names *names, bool rates)
{
	struct json_object *list = json_object_new_array();
	size_t i;

	for (i = 0; i < s->n; i++)
		json_object_array_add(list, row_json(&s->rows[i], names, rates));
	return list;
}

static int widest(int now, const char *text)
{
	int len = (int)strlen(text);

	return len > now ? len : now;
}

/* The table; @rates adds top's two columns. @max rows at most (0: all).
 * Text columns are as wide as their widest entry. */
static void sources_print(const struct dh_sources *s, const struct names *names, bool rates, size_t max)
{
	size_t i, n = max && max < s->n ? max : s->n;
	int wb = 6, ws = 6, wc = 9, wp = 4;

	for (i = 0; i < n; i++) {
		const struct source_row *row = &s->rows[i];
		struct dh_ip ip = row_ip(row);
		const char *name = name_of(names, row);

		wb = widest(wb, row->bridge);
		ws = widest(ws, dh_ip_str(&ip));
		wc = widest(wc, name ? name : "-");
		wp = widest(wp, proto_port(row));
	}
	printf("%-*s  %-*s  %-*s  %-*s", wb, "BRIDGE", ws, "SOURCE", wc, "CONTAINER", wp, "PORT");
	if (rates)
		printf(" %9s %11s", "PKT/S", "BYTES/S");
	printf(" %10s %13s %8s %8s\n", "PACKETS", "BYTES", "FLOWS", "REFUSED");
	for (i = 0; i < n; i++) {
		const struct source_row *row = &s->rows[i];
		struct dh_ip ip = row_ip(row);
		const char *name = name_of(names, row);

		printf("%-*s  %-*s  %-*s  %-*s", wb, row->bridge, ws, dh_ip_str(&ip), wc, name ? name : "-", wp,
		       proto_port(row));
		if (rates)
			printf(" %9.1f %11.0f", row->pps, row->bps);
		printf(" %10llu %13llu %8llu %8llu\n", (unsigned long long)row->stats.packets,
		       (unsigned long long)row->stats.bytes, (unsigned long long)row->stats.flows,
		       (unsigned long long)refused(row));
	}
	if (n < s->n)
		printf("... %zu more\n", s->n - n);
}

int dh_sources_snapshot(const struct dh_state *st, struct dh_sources **out)
{
	struct dh_sources *s = calloc(1, sizeof(*s));
	int err;

	*out = NULL;
	if (!s)
		return -ENOMEM;
	err = sources_read(st, s);
	if (err) {
		free(s);
		return err;
	}
	*out = s;
	return 0;
}

void dh_sources_free(struct dh_sources *snapshot)
{
	if (snapshot)
		sources_free(snapshot);
	free(snapshot);
}

/* Every row of a fresh snapshot, as stats --by-source --json prints them
 * but without container names (no Docker call under the caller's lock),
 * sorted by bridge, source and port; NULL if the map cannot be read. */
struct json_object *dh_sources_rows_json(const struct dh_state *st)
{
	struct dh_sources *s;
	struct names none = {};
	struct json_object *rows;

	if (dh_sources_snapshot(st, &s))
		return NULL;
	sort_rows(s, row_order);
	rows = sources_json(s, &none, false);
	dh_sources_free(s);
	return rows;
}

/* After the pin directory's lock is released: Docker may take its time. */
int dh_sources_print(const struct dh_cli *cli, struct dh_sources *snapshot)
{
	struct dh_sources none = {}, *s = snapshot ? snapshot : &none;
	struct names names = {};

	sort_rows(s, row_order);
	names_update(&names, s);
	if (cli->json) {
		struct json_object *obj = json_object_new_object();

		json_object_object_add(obj, "max_entries", json_object_new_int(DH_SOURCE_ENTRIES));
		json_object_object_add(obj, "sources", sources_json(s, &names, false));
		dh_print_json(obj);
	} else if (!s->n) {
		printf("no traffic to a mapped port from any source yet\n");
	} else {
		sources_print(s, &names, false, 0);
	}
	dh_sources_free(snapshot);
	free(names.v);
	return 0;
}

/* stats --reset: every entry goes (not zeroed: a zeroed entry would keep
 * its place in the LRU for a source that may never come back). */
int dh_sources_reset(const struct dh_state *st)
{
	struct dh_source_key key;

	while (bpf_map_get_next_key(st->sources_fd, NULL, &key) == 0)
		if (bpf_map_delete_elem(st->sources_fd, &key) && errno != ENOENT)
			return -errno;
	return 0;
}

/* One look at the pins, under their lock for that moment only: other
 * commands run between refreshes. Nothing attached: no rows. */
static int top_sample(const struct dh_cli *cli, struct dh_sources *s)
{
	struct dh_state st;
	int err = dh_state_open(cli, &st, DH_OPEN_EXISTING);

	s->rows = NULL;
	s->n = 0;
	if (err == -ENOENT)
		return 0;
	if (err)
		return err;
	err = sources_read(&st, s);
	dh_state_close(&st);
	if (err)
		return dh_runtime_error("top: %s", strerror(-err));
	sort_rows(s, key_cmp);
	return 0;
}

/* Rates against @prev (sorted by key); a source new since then counts
 * from zero, one whose counts went down (evicted and back, or reset) from
 * its counts now. */
static void top_rates(struct dh_sources *cur, const struct dh_sources *prev, double seconds)
{
	size_t i;

	for (i = 0; i < cur->n; i++) {
		struct source_row *row = &cur->rows[i];
		const struct source_row *was =
			prev->n ? bsearch(row, prev->rows, prev->n, sizeof(*row), key_cmp) : NULL;
		__u64 packets = row->stats.packets, bytes = row->stats.bytes;

		if (was && was->stats.packets <= packets && was->stats.bytes <= bytes) {
			packets -= was->stats.packets;
			bytes -= was->stats.bytes;
		}
		row->pps = packets / seconds;
		row->bps = bytes / seconds;
	}
}

static bool parse_interval(const char *text, double *seconds)
{
	char *end;

	errno = 0;
	*seconds = strtod(text, &end);
	return !errno && end != text && !*end && isfinite(*seconds) && *seconds >= 0.01 &&
	       *seconds <= DH_TOP_INTERVAL_MAX;
}

static bool parse_count(const char *text, unsigned long *count)
{
	char *end;

	if (*text < '0' || *text > '9')
		return false;
	errno = 0;
	*count = strtoul(text, &end, 10);
	return !errno && !*end && *count >= 1 && *count <= DH_TOP_COUNT_MAX;
}

static double monotonic_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_seconds(double seconds)
{
	struct timespec ts = { .tv_sec = (time_t)seconds,
			       .tv_nsec = (long)((seconds - (time_t)seconds) * 1e9) };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static void top_print(const struct dh_cli *cli, struct dh_sources *s, const struct names *names, double interval,
		      bool tty)
{
	char stamp[32];
	time_t now = time(NULL);
	struct winsize ws;
	size_t max = 0;

	strftime(stamp, sizeof(stamp), "%H:%M:%S", localtime(&now));
	if (cli->json) {
		struct json_object *obj = json_object_new_object();

		json_object_object_add(obj, "time", json_object_new_int64(now));
		json_object_object_add(obj, "interval", json_object_new_double(interval));
		json_object_object_add(obj, "sources", sources_json(s, names, true));
		puts(json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(obj);
		fflush(stdout);
		return;
	}
	if (tty) {
		/* Home and clear: a terminal gets one screen, the busiest
		 * sources that fit. */
		printf("\033[H\033[2J");
		if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 4)
			max = ws.ws_row - 4;
	}
	printf("%s top - %s, every %gs, %zu source%s (max %d), by bytes/s\n\n", DH_PROG, stamp, interval, s->n,
	       s->n == 1 ? "" : "s", DH_SOURCE_ENTRIES);
	sources_print(s, names, true, max);
	if (!tty)
		printf("\n");
	fflush(stdout);
}

int dh_cmd_top(const struct dh_cli *cli, int argc, char **argv)
{
	static const struct option options[] = {
		{ "interval", required_argument, NULL, 'i' },
		{ "count", required_argument, NULL, 'c' },
		{}
	};
	bool tty = isatty(STDOUT_FILENO);
	struct dh_sources prev = {}, cur = {};
	struct names names = {};
	unsigned long count = 0, done;
	double interval = 1, then, now;
	int opt, err;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
		switch (opt) {
		case 'i':
			if (!parse_interval(optarg, &interval))
				return dh_usage_error("top: --interval '%s': not a number of seconds from 0.01 to %g",
						      optarg, DH_TOP_INTERVAL_MAX);
			break;
		case 'c':
			if (!parse_count(optarg, &count))
				return dh_usage_error("top: --count '%s': not a number of refreshes from 1 to %lu",
						      optarg, DH_TOP_COUNT_MAX);
			break;
		case ':':
			return dh_usage_error("top: option '%s' needs a value", argv[optind - 1]);
		default:
			return dh_usage_error("top: unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind != argc)
		return dh_usage_error("top: unexpected argument '%s'", argv[optind]);
	err = dh_require_root();
	if (err)
		return err;

	err = top_sample(cli, &prev);
	then = monotonic_seconds();
	for (done = 0; !err && (!count || done < count); done++) {
		sleep_seconds(interval);
		err = top_sample(cli, &cur);
		if (err)
			break;
		now = monotonic_seconds();
		top_rates(&cur, &prev, now - then > 0 ? now - then : interval);
		then = now;
		sources_free(&prev);
		prev = cur;
		/* Printed in rate order; the next refresh needs key order. */
		cur.rows = malloc((prev.n ? prev.n : 1) * sizeof(*cur.rows));
		if (!cur.rows) {
			err = dh_runtime_error("top: %s", strerror(ENOMEM));
			break;
		}
		if (prev.n)
			memcpy(cur.rows, prev.rows, prev.n * sizeof(*cur.rows));
		cur.n = prev.n;
		sort_rows(&cur, rate_order);
		names_update(&names, &cur);
		top_print(cli, &cur, &names, interval, tty);
		sources_free(&cur);
	}
	sources_free(&prev);
	free(names.v);
	return err;
}
