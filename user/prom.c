// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Prometheus' text exposition format (version 0.0.4), for `stats --format
 * prometheus` and `metrics`. Built from the same JSON as `status --json`
 * (bridges, ports) and from the counters X-macro, so the three views never
 * disagree. Every family has HELP and TYPE lines, counters end in _total,
 * and a family's samples are written together (the format requires it).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/*
 * The datapath's counters, grouped into families. A counter not listed
 * here (one added to DH_COUNTER_FIELDS later) still gets exported: a
 * dropped_X becomes reason="X" of dockhost_packets_dropped_total, a
 * passed_X reason="X" of dockhost_packets_passed_total, anything else a
 * family of its own, dockhost_NAME_total.
 */
struct prom_family {
	const char *name;
	const char *label;  /* the label that tells its counters apart, or NULL */
	const char *help;
};

static const struct prom_family families[] = {
	{ "dockhost_packets_dropped_total", "reason",
	  "Packets the datapath dropped, by reason (include/dockhost.h names each)." },
	{ "dockhost_packets_passed_total", "reason",
	  "Packets the datapath left to the stack unredirected, by reason." },
	{ "dockhost_packets_redirected_total", NULL,
	  "NAT mode: packets from containers rewritten toward loopback." },
	{ "dockhost_sk_lookup_assigned_total", NULL,
	  "Socket mode: new connections and datagrams sk_lookup handed to the target socket." },
	{ "dockhost_replies_rewritten_total", "kind",
	  "NAT mode: packets from loopback services turned back into the gateway address, by kind." },
	{ "dockhost_flows_recreated_total", NULL,
	  "NAT mode: TCP flow state lost and rebuilt from a packet." },
	{ "dockhost_udp_replies_sourced_total", NULL,
	  "Socket mode: UDP replies whose source cgroup/sendmsg set to the gateway." },
	{ "dockhost_udp_connects_unsupported_total", NULL,
	  "Socket mode: UDP servers that connect()ed to a container (use NAT mode for them)." },
};
#define N_FAMILIES (sizeof(families) / sizeof(families[0]))

/* Counters whose family or label value the prefix rule would not give. */
static const struct {
	const char *counter, *family, *value;
} placed[] = {
	{ "passed", "dockhost_packets_passed_total", "not_for_us" },
	{ "flow_origin_conflicts", "dockhost_packets_dropped_total", "flow_origin_conflict" },
	{ "redirected", "dockhost_packets_redirected_total", NULL },
	{ "assigned", "dockhost_sk_lookup_assigned_total", NULL },
	{ "replies_rewritten", "dockhost_replies_rewritten_total", "reply" },
	{ "replies_guessed", "dockhost_replies_rewritten_total", "guessed" },
	{ "reply_fragments_rewritten", "dockhost_replies_rewritten_total", "fragment" },
	{ "icmp_errors_rewritten", "dockhost_replies_rewritten_total", "icmp_error" },
};


/* Where counter @name goes: its family (fills @own for one of its own)
 * and the label value, NULL for a family without a label. */
static const char *counter_place(const char *name, char *own, size_t own_len, const char **value)
{
	size_t i;

	for (i = 0; i < sizeof(placed) / sizeof(placed[0]); i++) {
		if (!strcmp(placed[i].counter, name)) {
			*value = placed[i].value;
			return placed[i].family;
		}
	}
	if (!strncmp(name, "dropped_", 8)) {
		*value = name + 8;
		return "dockhost_packets_dropped_total";
	}
	if (!strncmp(name, "passed_", 7)) {
		*value = name + 7;
		return "dockhost_packets_passed_total";
	}
	*value = NULL;
	snprintf(own, own_len, "dockhost_%s_total", name);
	return own;
}

/* A label value as the format wants it: \, " and newline escaped. */
static void put_value(FILE *out, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fprintf(out, "\\%c", *s);
		else if (*s == '\n')
			fputs("\\n", out);
		else
			fputc(*s, out);
	}
}

static void put_header(FILE *out, const char *name, const char *type, const char *help)
{
	fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void put_counters(FILE *out, const struct dh_counters *sum)
{
	const __u64 *values = (const __u64 *)sum;
	char own[DH_N_COUNTERS][64], *done = calloc(DH_N_COUNTERS, 1);
	const char *family[DH_N_COUNTERS], *value[DH_N_COUNTERS];
	size_t i, j, f;

	for (i = 0; i < DH_N_COUNTERS; i++)
		family[i] = counter_place(dh_counter_names[i], own[i], sizeof(own[i]), &value[i]);
	/* Each family once, in the order of its first counter. */
	for (i = 0; i < DH_N_COUNTERS; i++) {
		const char *help = "A dockhost-bpf datapath counter (include/dockhost.h).", *label = NULL;

		if (done && done[i])
			continue;
		for (f = 0; f < N_FAMILIES; f++) {
			if (!strcmp(families[f].name, family[i])) {
				help = families[f].help;
				label = families[f].label;
			}
		}
		put_header(out, family[i], "counter", help);
		for (j = i; j < DH_N_COUNTERS; j++) {
			if (strcmp(family[j], family[i]))
				continue;
			if (done)
				done[j] = 1;
			fputs(family[j], out);
			if (label && value[j]) {
				fprintf(out, "{%s=\"", label);
				put_value(out, value[j]);
				fputs("\"}", out);
			}
			fprintf(out, " %llu\n", (unsigned long long)values[j]);
		}
		if (!done)
			break;  /* out of memory: the first family at least */
	}
	free(done);
}

static const char *json_str(struct json_object *obj, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(obj, key, &v) && v ? json_object_get_string(v) : "";
}

static long long json_int(struct json_object *obj, const char *key, long long missing)
{
	struct json_object *v;

	return json_object_object_get_ex(obj, key, &v) && v ? json_object_get_int64(v) : missing;
}

/* One family over every port (status --json's "ports"): @what is the
 * field, NULL for the mapping itself (a gauge of 1 with its target). */
static void put_ports(FILE *out, struct json_object *ports, const char *name, const char *type,
		      const char *help, const char *what)
{
	size_t i, n = json_object_array_length(ports);

	put_header(out, name, type, help);
	for (i = 0; i < n; i++) {
		struct json_object *p = json_object_array_get_idx(ports, i);

		fprintf(out, "%s{bridge=\"", name);
		put_value(out, json_str(p, "bridge"));
		fprintf(out, "\",port=\"%lld\",protocol=\"%s\"", json_int(p, "port", 0), json_str(p, "proto"));
		if (what) {
			struct json_object *v;
			unsigned long long count = 0;

			if (json_object_object_get_ex(p, what, &v))
				count = json_object_get_uint64(v);
			fprintf(out, "} %llu\n", count);
			continue;
		}
		fputs(",to_addr=\"", out);
		put_value(out, json_str(p, "to_addr"));
		fputs("\",to_addr6=\"", out);
		put_value(out, json_str(p, "to_addr6"));
		fprintf(out, "\",to_port=\"%lld\"} 1\n", json_int(p, "to_port", 0));
	}
}

/* A gauge per attached bridge (status --json's "bridges"), from @key; a
 * bridge without the field (or where it is -1, unknown) has no sample. */
static void put_bridges(FILE *out, struct json_object *bridges, const char *name, const char *help,
			const char *key)
{
	size_t i, n = json_object_array_length(bridges);

	put_header(out, name, "gauge", help);
	for (i = 0; i < n; i++) {
		struct json_object *b = json_object_array_get_idx(bridges, i), *v;
		long long value;

		if (!json_object_object_get_ex(b, key, &v))
			continue;
		value = json_object_is_type(v, json_type_boolean) ? json_object_get_boolean(v)
			: json_object_is_type(v, json_type_array) ? (long long)json_object_array_length(v)
								  : json_object_get_int64(v);
		if (value < 0)
			continue;
		fprintf(out, "%s{bridge=\"", name);
		put_value(out, json_str(b, "bridge"));
		fprintf(out, "\"} %lld\n", value);
	}
}

/* Each bridge's mode as a state set: one sample per mode, 1 for its own. */
static void put_modes(FILE *out, struct json_object *bridges)
{
	static const char *const modes[] = { "nat", "socket" };
	size_t i, m, n = json_object_array_length(bridges);

	put_header(out, "dockhost_bridge_mode", "gauge",
		   "The datapath mode of each attached bridge: 1 for its mode, 0 for the others.");
	for (i = 0; i < n; i++) {
		struct json_object *b = json_object_array_get_idx(bridges, i);

		for (m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
			fputs("dockhost_bridge_mode{bridge=\"", out);
			put_value(out, json_str(b, "bridge"));
			fprintf(out, "\",mode=\"%s\"} %d\n", modes[m], !strcmp(json_str(b, "mode"), modes[m]));
		}
	}
}

/* One family of the per-source counters (stats --by-source's rows):
 * @field of each row, with @reason as a label if given. */
static void put_source_family(FILE *out, struct json_object *rows, const char *name, const char *help,
			      const char *field, const char *reason, bool header)
{
	size_t i, n = json_object_array_length(rows);

	if (header)
		put_header(out, name, "counter", help);
	for (i = 0; i < n; i++) {
		struct json_object *r = json_object_array_get_idx(rows, i);

		fprintf(out, "%s{bridge=\"", name);
		put_value(out, json_str(r, "bridge"));
		fputs("\",source=\"", out);
		put_value(out, json_str(r, "source"));
		fprintf(out, "\",port=\"%lld\",protocol=\"%s\"", json_int(r, "port", 0), json_str(r, "proto"));
		if (reason)
			fprintf(out, ",reason=\"%s\"", reason);
		fprintf(out, "} %lld\n", json_int(r, field, 0));
	}
}

/*
 * --per-source: the `sources` LRU (stats --by-source), one series per
 * (bridge, source address, port, protocol). Off by default: a busy bridge
 * has many sources, and each is a series for the Prometheus server to
 * keep. No container label: naming needs a Docker call, and this runs
 * under the pin directory's lock (stats --by-source has the names).
 */
static void put_per_source(FILE *out, const struct dh_state *st)
{
	struct json_object *rows = dh_sources_rows_json(st);

	if (!rows)
		return;
	put_source_family(out, rows, "dockhost_source_packets_total",
			  "Packets a source sent to a mapped port, delivered.", "packets", NULL, true);
	put_source_family(out, rows, "dockhost_source_bytes_total",
			  "Bytes a source sent to a mapped port, delivered.", "bytes", NULL, true);
	put_source_family(out, rows, "dockhost_source_flows_total",
			  "New flows (TCP SYNs, new UDP flows) a source started to a mapped port.", "flows", NULL,
			  true);
	put_source_family(out, rows, "dockhost_source_refused_total",
			  "New flows refused: nothing at the target (no_socket), or a source the allow-list leaves out (not_allowed).",
			  "refused_no_socket", "no_socket", true);
	put_source_family(out, rows, "dockhost_source_refused_total", NULL, "refused_not_allowed", "not_allowed",
			  false);
	json_object_put(rows);
}

int dh_prom_write(FILE *out, const struct dh_state *st, bool per_source)
{
	struct json_object *bridges = NULL, *ports = NULL;
	struct dh_counters sum = {};
	int err = 0;

	if (st) {
		err = dh_state_sum_counters(st, &sum);
		if (err)
			return err;
		bridges = dh_bridges_json(st);
		ports = dh_ports_json(st);
	} else {
		/* No pin set: nothing attached, every counter zero. */
		bridges = json_object_new_array();
		ports = json_object_new_array();
	}
	put_counters(out, &sum);
	put_ports(out, ports, "dockhost_port_packets_total", "counter",
		  "Packets containers sent to a mapped port, delivered (bridge \"*\": the entry for every bridge).", "packets");
	put_ports(out, ports, "dockhost_port_bytes_total", "counter",
		  "Bytes containers sent to a mapped port, delivered (bridge \"*\": the entry for every bridge).", "bytes");
	put_ports(out, ports, "dockhost_port_mapping", "gauge",
		  "1 for each mapped port, with where it goes (to_addr IPv4, to_addr6 IPv6, \"\": not mapped).",
		  NULL);
	fprintf(out, "# HELP dockhost_bridges_attached Bridges dockhost-bpf is attached to.\n"
		"# TYPE dockhost_bridges_attached gauge\ndockhost_bridges_attached %zu\n",
		json_object_array_length(bridges));
	put_modes(out, bridges);
	put_bridges(out, bridges, "dockhost_bridge_route_localnet",
		    "The bridge's net.ipv4.conf.BRIDGE.route_localnet now (socket mode keeps it 0, NAT mode sets 1).",
		    "route_localnet");
	put_bridges(out, bridges, "dockhost_bridge_programs_attached",
		    "1 if the bridge's programs are in place, 0 if they went missing (attach again).", "attached");
	put_bridges(out, bridges, "dockhost_bridge_gateways",
		    "Gateway addresses (IPv4 and IPv6) redirected on the bridge.", "gateways");
	if (per_source && st)
		put_per_source(out, st);
	json_object_put(bridges);
	json_object_put(ports);
	return ferror(out) ? -EIO : 0;
}

/* The whole exposition in a buffer (the caller frees *buf), read under the
 * pin dir's lock, which is held only for the read. */
int dh_prom_collect(const struct dh_cli *cli, bool per_source, char **buf, size_t *len)
{
	struct dh_state st;
	FILE *out;
	int err;

	*buf = NULL;
	*len = 0;
	out = open_memstream(buf, len);
	if (!out)
		return -errno;
	err = dh_state_open(cli, &st, DH_OPEN_EXISTING);
	if (err == -ENOENT) {
		err = dh_prom_write(out, NULL, per_source);
	} else if (!err) {
		err = dh_prom_write(out, &st, per_source);
		dh_state_close(&st);
	}
	if (fclose(out) && !err)
		err = -errno;
	if (err) {
		free(*buf);
		*buf = NULL;
		*len = 0;
	}
	return err;
}
