// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* status and stats: read-only views of the pinned state (stats --reset
 * aside). */
#include <bpf/bpf.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

const char *const dh_counter_names[] = {
#define DH_COUNTER_NAME(name) #name,
	DH_COUNTER_FIELDS(DH_COUNTER_NAME)
#undef DH_COUNTER_NAME
};
_Static_assert(sizeof(dh_counter_names) / sizeof(dh_counter_names[0]) == DH_N_COUNTERS, "one name per counter");

static struct json_object *counters_json(const struct dh_counters *sum)
{
	struct json_object *obj = json_object_new_object();
	const __u64 *values = (const __u64 *)sum;
	size_t i;

	for (i = 0; i < DH_N_COUNTERS; i++)
		json_object_object_add(obj, dh_counter_names[i], json_object_new_uint64(values[i]));
	return obj;
}

static void counters_print(const struct dh_counters *sum)
{
	const __u64 *values = (const __u64 *)sum;
	size_t i;

	for (i = 0; i < DH_N_COUNTERS; i++)
		printf("  %-30s %llu\n", dh_counter_names[i], (unsigned long long)values[i]);
}

static const char *origin_text(__u32 origin)
{
	static char buf[64];

	snprintf(buf, sizeof(buf), "%s%s%s%s%s", origin & DH_GW_BRIDGE ? ",bridge" : "",
		 origin & DH_GW_DOCKER0 ? ",docker0" : "", origin & DH_GW_DOCKER_CONFIG ? ",host-gateway-ip" : "",
		 origin & DH_GW_USER ? ",user" : "", origin & DH_GW_CONFIG ? ",config" : "");
	return buf[0] ? buf + 1 : "?";
}

/* One attached bridge: its record, the device's state now, its gateways. */
static struct json_object *bridge_json(const struct dh_state *st, __u32 ifindex,
				       const struct dh_bridge *bridge)
{
	struct json_object *obj = json_object_new_object(), *gws = json_object_new_array();
	struct dh_gateway_entry have[DH_MAX_GATEWAYS];
	struct dh_bridge_mode mode;
	struct dh_netdev dev;
	bool present;
	int now = -1, n, i;

	present = dh_netdev_lookup(bridge->name, &dev) == 0 && dev.ifindex == (int)ifindex;
	if (present)
		dh_route_localnet_get(bridge->name, &now);
	json_object_object_add(obj, "bridge", json_object_new_string(bridge->name));
	json_object_object_add(obj, "ifindex", json_object_new_int(ifindex));
	json_object_object_add(obj, "present", json_object_new_boolean(present));
	json_object_object_add(obj, "attached", json_object_new_boolean(present && dh_hook_attached(st, ifindex, bridge)));
	if (present) {
		__u32 first = 0;
		int before = dh_tcx_before_guard(ifindex, bridge->flags & DH_BRIDGE_TCX, &first);

		json_object_object_add(obj, "before_guard", json_object_new_int(before));
		if (before > 0)
			json_object_object_add(obj, "before_guard_first_id", json_object_new_int64(first));
	}
	json_object_object_add(obj, "hook", json_object_new_string(dh_hook_name(bridge)));
	json_object_object_add(obj, "mode", json_object_new_string(dh_mode_name(bridge->mode)));
	json_object_object_add(obj, "per_source",
			       json_object_new_boolean(bpf_map_lookup_elem(st->modes_fd, &ifindex, &mode) ||
						       !(mode.flags & DH_MODE_NO_SOURCES)));
	if (bridge->mode == DH_MODE_SOCKET) {
		json_object_object_add(obj, "socket_delivery",
				       json_object_new_boolean(dh_socket_delivery_attached(st) == 1));
		json_object_object_add(obj, "udp_reply_source",
				       json_object_new_boolean(dh_cgroup_sendmsg_attached(st) == 1));
	}
	json_object_object_add(obj, "route_localnet", json_object_new_int(now));
	json_object_object_add(obj, "saved_route_localnet", json_object_new_int(bridge->saved_route_localnet));
	json_object_object_add(obj, "attached_at", json_object_new_int64(bridge->attached_at));
	n = dh_gateways_of(st, ifindex, have, DH_MAX_GATEWAYS);
	for (i = 0; i < n; i++) {
		struct json_object *g = json_object_new_object();

		json_object_object_add(g, "addr", json_object_new_string(dh_ip_str(&have[i].addr)));
		json_object_object_add(g, "origin", json_object_new_string(origin_text(have[i].origin)));
		json_object_array_add(gws, g);
	}
	json_object_object_add(obj, "gateways", gws);
	json_object_object_add(obj, "config", json_object_new_boolean(bridge->flags & DH_BRIDGE_CONFIG));
	return obj;
}

static struct json_object *bridges_json(const struct dh_state *st)
{
	struct json_object *list = json_object_new_array();
	struct dh_bridge bridge;
	__u32 key, *prev = NULL;

	while (bpf_map_get_next_key(st->bridges_fd, prev, &key) == 0) {
		prev = &key;
		if (bpf_map_lookup_elem(st->bridges_fd, &key, &bridge) == 0)
			json_object_array_add(list, bridge_json(st, key, &bridge));
	}
	return list;
}

struct json_object *dh_bridges_json(const struct dh_state *st)
{
	return bridges_json(st);
}

/* Text view, built from the same JSON so both always agree. */
static void bridges_print(struct json_object *list)
{
	size_t i, j, n = json_object_array_length(list);

	if (!n)
		printf("no bridge attached\n");
	for (i = 0; i < n; i++) {
		struct json_object *b = json_object_array_get_idx(list, i), *v, *gws;

		json_object_object_get_ex(b, "bridge", &v);
		printf("%s", json_object_get_string(v));
		json_object_object_get_ex(b, "ifindex", &v);
		printf(" (ifindex %d)", json_object_get_int(v));
		json_object_object_get_ex(b, "present", &v);
		if (!json_object_get_boolean(v)) {
			printf(": device gone since attach; 'detach' forgets it\n");
			continue;
		}
		json_object_object_get_ex(b, "attached", &v);
		printf(": programs %s", json_object_get_boolean(v) ? "attached" : "MISSING (attach again)");
		json_object_object_get_ex(b, "hook", &v);
		printf(" (%s", json_object_get_string(v));
		json_object_object_get_ex(b, "mode", &v);
		printf(", %s mode)", json_object_get_string(v));
		if (json_object_object_get_ex(b, "per_source", &v) && !json_object_get_boolean(v))
			printf(", per-source counters off");
		if (json_object_object_get_ex(b, "socket_delivery", &v) && !json_object_get_boolean(v))
			printf(", sk_lookup delivery MISSING (attach again)");
		if (json_object_object_get_ex(b, "udp_reply_source", &v) && !json_object_get_boolean(v))
			printf(", UDP reply source MISSING (attach again)");
		if (json_object_object_get_ex(b, "before_guard", &v) && json_object_get_int(v) > 0) {
			int n = json_object_get_int(v);

			json_object_object_get_ex(b, "before_guard_first_id", &v);
			printf(", %d program%s before the guard (first: id %lld)", n, n == 1 ? " runs" : "s run",
			       (long long)json_object_get_int64(v));
		}
		json_object_object_get_ex(b, "route_localnet", &v);
		printf(", route_localnet %d", json_object_get_int(v));
		json_object_object_get_ex(b, "saved_route_localnet", &v);
		printf(" (restored to %d on detach)\n", json_object_get_int(v));
		json_object_object_get_ex(b, "gateways", &gws);
		for (j = 0; j < json_object_array_length(gws); j++) {
			struct json_object *g = json_object_array_get_idx(gws, j), *addr, *origin;

			json_object_object_get_ex(g, "addr", &addr);
			json_object_object_get_ex(g, "origin", &origin);
			printf("  gateway %-15s (%s)\n", json_object_get_string(addr), json_object_get_string(origin));
		}
	}
}

/*
 * Bridges of this netns that no record of ours covers and where
 * route_localnet is on (the kernel ORs the bridge's value with
 * conf/all's): with no guard of ours, the host's loopback is open to the
 * bridge (CVE-2020-8558); with one, its pin set was lost. (Programs of a
 * lost pin set on a bridge with route_localnet off expose nothing; they go
 * at the next attach or detach.) The sysctl is read first, so hosts with
 * many bridges pay one file read each. @st may be NULL (no pin dir).
 */
static struct json_object *unrecorded_json(const struct dh_state *st)
{
	struct json_object *list = json_object_new_array();
	struct dh_netdev devs[DH_MAX_BRIDGES];
	struct dh_bridge bridge;
	int n = dh_netdev_bridges(devs, DH_MAX_BRIDGES), i, route_localnet, all = 0;

	if (n < 0)
		dh_warn("status: cannot list the bridges to look for unguarded ones: %s", strerror(-n));
	else if (n == DH_MAX_BRIDGES)
		dh_warn("status: only the first %d bridges were looked at for unguarded ones", n);
	if (dh_route_localnet_get("all", &all) == 0 && all)
		dh_warn("net.ipv4.conf.all.route_localnet=%d: every interface, not only attached bridges, "
			"lets 127/8 in (CVE-2020-8558): set it to 0", all);

	for (i = 0; i < n; i++) {
		__u32 key = devs[i].ifindex;
		struct json_object *obj;
		bool programs, guard;

		if (st && bpf_map_lookup_elem(st->bridges_fd, &key, &bridge) == 0)
			continue;
		if (dh_route_localnet_get(devs[i].name, &route_localnet))
			continue;
		route_localnet |= all;
		if (!route_localnet)
			continue;
		programs = dh_hook_unrecorded_present(devs[i].ifindex);
		/* Exposed unless an ingress guard of ours is there: a lost
		 * socket-mode pin set leaves only that one (socket mode has
		 * no egress program), and it keeps 127/8 out; an egress
		 * program alone keeps nothing out. */
		guard = programs && dh_hook_unrecorded_guard(devs[i].ifindex);
		obj = json_object_new_object();
		json_object_object_add(obj, "bridge", json_object_new_string(devs[i].name));
		json_object_object_add(obj, "ifindex", json_object_new_int(devs[i].ifindex));
		json_object_object_add(obj, "route_localnet", json_object_new_int(route_localnet));
		json_object_object_add(obj, "programs", json_object_new_boolean(programs));
		json_object_object_add(obj, "exposed", json_object_new_boolean(!guard));
		json_object_array_add(list, obj);
	}
	return list;
}

static void unrecorded_print(struct json_object *list)
{
	size_t i;

	for (i = 0; i < json_object_array_length(list); i++) {
		struct json_object *b = json_object_array_get_idx(list, i), *name, *exposed;

		json_object_object_get_ex(b, "bridge", &name);
		json_object_object_get_ex(b, "exposed", &exposed);
		if (json_object_get_boolean(exposed))
			printf("WARNING %s: route_localnet on and no dockhost guard: the host's loopback is open "
			       "to this bridge (CVE-2020-8558); 'attach %s' guards it\n",
			       json_object_get_string(name), json_object_get_string(name));
		else
			printf("%s: dockhost programs with no record (their pin set was lost); "
			       "'detach %s' removes them\n",
			       json_object_get_string(name), json_object_get_string(name));
	}
}

int dh_cmd_status(const struct dh_cli *cli, int argc, char **argv)
{
	struct dh_counters sum = {};
	struct json_object *bridges;
	struct dh_state st;
	int err;

	if (argc != 1)
		return dh_usage_error("status: takes no arguments, got '%s'", argv[1]);
	err = dh_require_root();
	if (err)
		return err;
	err = dh_state_open(cli, &st, DH_OPEN_EXISTING);
	if (err == -ENOENT) {
		struct json_object *unrecorded = unrecorded_json(NULL);

		if (cli->json) {
			struct json_object *obj = json_object_new_object();

			json_object_object_add(obj, "pin_dir", json_object_new_string(cli->pin_dir));
			json_object_object_add(obj, "bridges", json_object_new_array());
			json_object_object_add(obj, "unrecorded", unrecorded);
			json_object_object_add(obj, "ports", json_object_new_array());
			dh_print_json(obj);
		} else {
			printf("no bridge attached (pin dir %s)\n", cli->pin_dir);
			unrecorded_print(unrecorded);
			json_object_put(unrecorded);
		}
		return 0;
	}
	if (err)
		return err;

	bridges = bridges_json(&st);
	dh_state_sum_counters(&st, &sum);
	if (cli->json) {
		struct json_object *obj = json_object_new_object();

		json_object_object_add(obj, "pin_dir", json_object_new_string(cli->pin_dir));
		json_object_object_add(obj, "bridges", bridges);
		json_object_object_add(obj, "unrecorded", unrecorded_json(&st));
		json_object_object_add(obj, "ports", dh_ports_json(&st));
		json_object_object_add(obj, "counters", counters_json(&sum));
		dh_print_json(obj);
	} else {
		printf("pin dir %s\n", cli->pin_dir);
		bridges_print(bridges);
		json_object_put(bridges);
		bridges = unrecorded_json(&st);
		unrecorded_print(bridges);
		json_object_put(bridges);
		printf("\n");
		dh_ports_print(&st);
		printf("\ncounters:\n");
		counters_print(&sum);
	}
	dh_state_close(&st);
	return 0;
}

static int reset_counters(const struct dh_state *st)
{
	struct dh_port_key key, *prev = NULL;
	__u32 zero_key = 0;
	int err;

	err = dh_state_zero_percpu(st->counters_fd, &zero_key, sizeof(struct dh_counters), BPF_ANY);
	while (!err && bpf_map_get_next_key(st->port_stats_fd, prev, &key) == 0) {
		prev = &key;
		err = dh_state_zero_percpu(st->port_stats_fd, &key, sizeof(struct dh_port_stats), BPF_EXIST);
	}
	return err;
}

int dh_cmd_stats(const struct dh_cli *cli, int argc, char **argv)
{
	static const struct option options[] = {
		{ "reset", no_argument, NULL, 'r' },
		{ "format", required_argument, NULL, 'f' },
		{ "per-source", no_argument, NULL, 's' },
		{ "by-source", no_argument, NULL, 'b' },
		{}
	};
	struct dh_counters sum = {};
	bool reset = false, by_source = false;
	struct dh_sources *sources = NULL;
	struct dh_state st;
	bool json = cli->json, prometheus = false, per_source = false;
	int opt, err;

	while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
		switch (opt) {
		case 'r':
			reset = true;
			break;
		case 'f':
			if (!strcmp(optarg, "prometheus"))
				prometheus = true;
			else if (!strcmp(optarg, "json"))
				json = true;
			else if (strcmp(optarg, "text"))
				return dh_usage_error("stats: --format '%s': expected text, json or prometheus", optarg);
			break;
		case 's':
			per_source = true;
			break;
		case 'b':
			by_source = true;
			break;
		case ':':
			return dh_usage_error("stats: option '%s' needs a value", argv[optind - 1]);
		default:
			return dh_usage_error("stats: unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind != argc)
		return dh_usage_error("stats: unexpected argument '%s'", argv[optind]);
	/* A textfile collector that reset what it exports would only ever
	 * show the counts since its last run. */
	if (prometheus && reset)
		return dh_usage_error("stats: --reset with --format prometheus: run them apart");
	if (per_source && !prometheus)
		return dh_usage_error("stats: --per-source goes with --format prometheus");
	if (by_source && prometheus)
		return dh_usage_error("stats: --by-source is a table: with --format prometheus, use --per-source");
	err = dh_require_root();
	if (err)
		return err;
	if (prometheus) {
		char *buf;
		size_t len;

		err = dh_prom_collect(cli, per_source, &buf, &len);
		if (err < 0)
			return dh_runtime_error("stats: %s", strerror(-err));
		if (err)
			return err;
		fwrite(buf, 1, len, stdout);
		free(buf);
		return 0;
	}
	err = dh_state_open(cli, &st, DH_OPEN_EXISTING);
	if (err && err != -ENOENT)
		return err;
	if (!err) {
		/* Read before a reset, so the numbers shown are the ones cleared. */
		if (by_source)
			err = dh_sources_snapshot(&st, &sources);
		else
			err = dh_state_sum_counters(&st, &sum);
		if (!err && reset)
			err = reset_counters(&st);
		if (!err && reset)
			err = dh_sources_reset(&st);
		dh_state_close(&st);
		if (err) {
			dh_sources_free(sources);
			return dh_runtime_error("stats: %s", strerror(-err));
		}
	}
	if (by_source) {
		struct dh_cli as = *cli;

		as.json = json;
		return dh_sources_print(&as, sources);
	}
	if (json) {
		dh_print_json(counters_json(&sum));
	} else {
		printf("counters%s:\n", reset ? " (now reset)" : "");
		counters_print(&sum);
	}
	return 0;
}
