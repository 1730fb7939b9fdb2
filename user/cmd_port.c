// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* port add / del / list: runtime edits of the pinned port map. Each entry
 * is one hash update, so flows on other ports never notice. */
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Adds or updates one entry. Its per-port counters are created first so
 * the datapath counts from the first redirected packet. */
int dh_port_apply(const struct dh_state *st, __u32 ifindex, const struct dh_port_spec *spec,
		  const struct dh_port_target *target, const char **result)
{
	struct dh_port_key key = { .ifindex = ifindex, .port = htons(spec->port), .proto = spec->proto };
	struct dh_port_target old;
	bool existed;

	existed = bpf_map_lookup_elem(st->ports_fd, &key, &old) == 0;
	if (existed && old.addr == target->addr && old.port == target->port) {
		*result = "unchanged";
		return 0;
	}
	if (!existed) {
		int err = dh_state_zero_percpu(st->port_stats_fd, &key, sizeof(struct dh_port_stats), BPF_ANY);

		if (err)
			return dh_runtime_error("port %u/%s: cannot add counters: %s", spec->port,
						dh_proto_name(spec->proto), strerror(-err));
	}
	if (bpf_map_update_elem(st->ports_fd, &key, target, BPF_ANY)) {
		int saved = errno;

		if (!existed)
			bpf_map_delete_elem(st->port_stats_fd, &key);
		return dh_runtime_error("port %u/%s: cannot add: %s", spec->port, dh_proto_name(spec->proto),
					strerror(saved));
	}
	*result = existed ? "updated" : "added";
	return 0;
}

static void scope_name(__u32 ifindex, const struct dh_state *st, char name[DH_IFNAMSIZ])
{
	struct dh_bridge bridge;

	if (!ifindex)
		snprintf(name, DH_IFNAMSIZ, "*");
	else if (bpf_map_lookup_elem(st->bridges_fd, &ifindex, &bridge) == 0)
		snprintf(name, DH_IFNAMSIZ, "%s", bridge.name);
	else
		snprintf(name, DH_IFNAMSIZ, "if%u", ifindex);
}

struct port_row {
	struct dh_port_key key;
	struct dh_port_target target;
	struct dh_port_stats stats;
};

static int cmp_rows(const void *a, const void *b)
{
	const struct port_row *x = a, *y = b;

	if (x->key.ifindex != y->key.ifindex)
		return x->key.ifindex < y->key.ifindex ? -1 : 1;
	if (x->key.port != y->key.port)
		return ntohs(x->key.port) < ntohs(y->key.port) ? -1 : 1;
	return x->key.proto - y->key.proto;
}

/* All entries, sorted by bridge, port, proto. Caller frees. */
static struct port_row *read_ports(const struct dh_state *st, size_t *count)
{
	struct port_row *rows = NULL;
	struct dh_port_key key, *prev = NULL;
	size_t n = 0, cap = 0;

	while (bpf_map_get_next_key(st->ports_fd, prev, &key) == 0) {
		if (n == cap) {
			struct port_row *grown = realloc(rows, (cap = cap ? cap * 2 : 64) * sizeof(*rows));

			if (!grown)
				break;
			rows = grown;
		}
		rows[n].key = key;
		prev = &rows[n].key;
		if (bpf_map_lookup_elem(st->ports_fd, &key, &rows[n].target))
			continue;  /* deleted meanwhile */
		if (dh_state_sum_port_stats(st, &key, &rows[n].stats))
			memset(&rows[n].stats, 0, sizeof(rows[n].stats));
		n++;
	}
	if (n)  /* qsort(NULL, 0) is undefined: UBSan */
		qsort(rows, n, sizeof(*rows), cmp_rows);
	*count = n;
	return rows;
}

struct json_object *dh_ports_json(const struct dh_state *st)
{
	struct json_object *list = json_object_new_array();
	struct port_row *rows;
	char scope[DH_IFNAMSIZ];
	size_t n, i;

	rows = read_ports(st, &n);
	for (i = 0; i < n; i++) {
		struct json_object *obj = json_object_new_object();

		scope_name(rows[i].key.ifindex, st, scope);
		json_object_object_add(obj, "bridge", json_object_new_string(scope));
		json_object_object_add(obj, "port", json_object_new_int(ntohs(rows[i].key.port)));
		json_object_object_add(obj, "proto", json_object_new_string(dh_proto_name(rows[i].key.proto)));
		json_object_object_add(obj, "to_addr", json_object_new_string(dh_ipv4_str(rows[i].target.addr)));
		json_object_object_add(obj, "to_port", json_object_new_int(ntohs(rows[i].target.port)));
		json_object_object_add(obj, "packets", json_object_new_uint64(rows[i].stats.packets));
		json_object_object_add(obj, "bytes", json_object_new_uint64(rows[i].stats.bytes));
		json_object_array_add(list, obj);
	}
	free(rows);
	return list;
}

void dh_ports_print(const struct dh_state *st)
{
	struct port_row *rows;
	char scope[DH_IFNAMSIZ], spec[16], to[32];
	size_t n, i;

	rows = read_ports(st, &n);
	if (!n)
		printf("no ports mapped\n");
	else
		printf("%-15s %-10s %-21s %12s %14s\n", "BRIDGE", "PORT", "TO", "PACKETS", "BYTES");
	for (i = 0; i < n; i++) {
		scope_name(rows[i].key.ifindex, st, scope);
		snprintf(spec, sizeof(spec), "%u/%s", ntohs(rows[i].key.port), dh_proto_name(rows[i].key.proto));
		snprintf(to, sizeof(to), "%s:%u", dh_ipv4_str(rows[i].target.addr), ntohs(rows[i].target.port));
		printf("%-15s %-10s %-21s %12llu %14llu\n", scope, spec, to,
		       (unsigned long long)rows[i].stats.packets, (unsigned long long)rows[i].stats.bytes);
	}
	free(rows);
}

/* --to [ADDR:]PORT, ADDR in 127.0.0.0/8. */
static bool parse_target(const char *text, struct dh_port_target *target)
{
	const char *colon = strrchr(text, ':');
	char addr[INET_ADDRSTRLEN];
	__u16 port;

	target->addr = htonl(INADDR_LOOPBACK);
	if (colon) {
		if ((size_t)(colon - text) >= sizeof(addr))
			return false;
		memcpy(addr, text, colon - text);
		addr[colon - text] = '\0';
		if (!dh_parse_ipv4(addr, &target->addr) || !dh_is_loopback_addr(target->addr))
			return false;
	}
	if (!dh_parse_port_number(colon ? colon + 1 : text, &port))
		return false;
	target->port = htons(port);
	return true;
}

struct port_args {
	const char *action;
	struct dh_port_spec spec;
	const char *spec_text;
	const char *to;
	const char *bridge;     /* as typed */
	char bridge_name[DH_IFNAMSIZ];  /* the device */
};

static int parse_port_args(int argc, char **argv, struct port_args *args)
{
	static const struct option options[] = {
		{ "to", required_argument, NULL, 't' },
		{ "bridge", required_argument, NULL, 'b' },
		{}
	};
	int opt;

	memset(args, 0, sizeof(*args));
	if (argc < 2)
		return dh_usage_error("port: expected add, del or list (see 'port --help')");
	args->action = argv[1];
	if (strcmp(args->action, "add") && strcmp(args->action, "del") && strcmp(args->action, "list"))
		return dh_usage_error("port: unknown action '%s' (add, del or list)", args->action);
	argc--;
	argv++;
	optind = 0;
	while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
		switch (opt) {
		case 't':
			args->to = optarg;
			break;
		case 'b':
			args->bridge = optarg;
			break;
		case ':':
			return dh_usage_error("port %s: option '%s' needs a value", args->action, argv[optind - 1]);
		default:
			return dh_usage_error("port %s: unknown option '%s'", args->action, argv[optind - 1]);
		}
	}
	if (!strcmp(args->action, "list")) {
		if (optind != argc || args->to || args->bridge)
			return dh_usage_error("port list: takes no arguments");
		return 0;
	}
	if (optind != argc - 1)
		return dh_usage_error("port %s: expected one SPEC (PORT, PORT/tcp or PORT/udp)", args->action);
	args->spec_text = argv[optind];
	if (!dh_parse_port_spec(args->spec_text, &args->spec))
		return dh_usage_error("port %s: '%s': not PORT, PORT/tcp or PORT/udp (1-65535)", args->action,
				      args->spec_text);
	if (args->to && strcmp(args->action, "add"))
		return dh_usage_error("port %s: --to goes with add", args->action);
	if (args->bridge)
		return dh_resolve_bridge_arg(!strcmp(args->action, "add") ? "port add --bridge" : "port del --bridge",
					     args->bridge, args->bridge_name);
	return 0;
}

/* ifindex of an attached bridge, by name (the entry, not the device: a
 * bridge gone since attach can still have its entries deleted). */
static int attached_ifindex(const struct dh_state *st, const char *name, __u32 *ifindex)
{
	struct dh_bridge bridge;
	struct dh_netdev dev;

	if (dh_netdev_lookup(name, &dev) == 0 && bpf_map_lookup_elem(st->bridges_fd, &dev.ifindex, &bridge) == 0) {
		*ifindex = dev.ifindex;
		return 0;
	}
	if (dh_state_find_bridge(st, name, ifindex, &bridge))
		return 0;
	return dh_runtime_error("--bridge '%s': not attached (run 'attach %s' first)", name, name);
}

int dh_cmd_port(const struct dh_cli *cli, int argc, char **argv)
{
	struct dh_port_target target = {};
	struct port_args args;
	struct dh_port_key key;
	const char *result = "deleted";
	struct dh_state st;
	__u32 ifindex = 0;
	int err;

	err = parse_port_args(argc, argv, &args);
	if (!err && args.to && !parse_target(args.to, &target))
		err = dh_usage_error("port add: --to '%s': not [ADDR:]PORT with ADDR in 127.0.0.0/8", args.to);
	if (!err)
		err = dh_require_root();
	if (err)
		return err;

	err = dh_state_open(cli, &st, DH_OPEN_EXISTING);
	if (err == -ENOENT) {
		if (!strcmp(args.action, "list")) {
			if (cli->json)
				dh_print_json(json_object_new_array());
			else
				printf("no bridge attached\n");
			return 0;
		}
		return dh_runtime_error("port %s: no bridge attached (run 'attach BRIDGE' first)", args.action);
	}
	if (err)
		return err;

	if (!strcmp(args.action, "list")) {
		if (cli->json)
			dh_print_json(dh_ports_json(&st));
		else
			dh_ports_print(&st);
		goto out;
	}
	if (args.bridge) {
		err = attached_ifindex(&st, args.bridge_name, &ifindex);
		if (err)
			goto out;
	}
	if (!strcmp(args.action, "add")) {
		if (!args.to)
			target = (struct dh_port_target){ .addr = htonl(INADDR_LOOPBACK), .port = htons(args.spec.port) };
		err = dh_port_apply(&st, ifindex, &args.spec, &target, &result);
	} else {
		key = (struct dh_port_key){ .ifindex = ifindex, .port = htons(args.spec.port), .proto = args.spec.proto };
		if (bpf_map_delete_elem(st.ports_fd, &key)) {
			err = errno == ENOENT
				? dh_runtime_error("port del: %u/%s%s%s: not mapped", args.spec.port,
						   dh_proto_name(args.spec.proto), args.bridge ? " on " : "",
						   args.bridge ? args.bridge : "")
				: dh_runtime_error("port del: %s: %s", args.spec_text, strerror(errno));
			goto out;
		}
		bpf_map_delete_elem(st.port_stats_fd, &key);
	}
	if (err)
		goto out;

	if (cli->json) {
		struct json_object *obj = json_object_new_object();

		json_object_object_add(obj, "port", json_object_new_int(args.spec.port));
		json_object_object_add(obj, "proto", json_object_new_string(dh_proto_name(args.spec.proto)));
		json_object_object_add(obj, "bridge", json_object_new_string(args.bridge ? args.bridge : "*"));
		if (!strcmp(args.action, "add")) {
			json_object_object_add(obj, "to_addr", json_object_new_string(dh_ipv4_str(target.addr)));
			json_object_object_add(obj, "to_port", json_object_new_int(ntohs(target.port)));
		}
		json_object_object_add(obj, "result", json_object_new_string(result));
		dh_print_json(obj);
	} else if (!strcmp(args.action, "add")) {
		printf("%u/%s on %s -> %s:%u: %s\n", args.spec.port, dh_proto_name(args.spec.proto),
		       args.bridge ? args.bridge : "all bridges", dh_ipv4_str(target.addr), ntohs(target.port),
		       result);
	} else {
		printf("%u/%s on %s: deleted\n", args.spec.port, dh_proto_name(args.spec.proto),
		       args.bridge ? args.bridge : "all bridges");
	}
out:
	dh_state_close(&st);
	return err;
}
