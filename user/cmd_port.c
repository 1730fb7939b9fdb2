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
	struct dh_port_target old, next = *target;
	bool existed;

	existed = bpf_map_lookup_elem(st->ports_fd, &key, &old) == 0;
	/* A mapping keeps its allow-list (even an empty one: closed) until
	 * it is deleted; a new --to, or attach --port, never opens it. */
	if (existed)
		next.flags |= old.flags & (DH_PORT_ALLOW_LIST | DH_PORT_CONFIG);
	target = &next;
	if (existed && old.addr == target->addr && old.port == target->port && old.flags == target->flags &&
	    !memcmp(old.addr6, target->addr6, sizeof(old.addr6))) {
		*result = "unchanged";
		return 0;
	}
	if (!existed) {
		int err = dh_state_zero_percpu(st->port_stats_fd, &key, sizeof(struct dh_port_stats), BPF_ANY);

		if (err)
			return dh_runtime_error("port %u/%s: cannot add counters: %s", spec->port,
						dh_proto_name(spec->proto), strerror(-err));
		dh_test_kill_point("port-stats-added");
	}
	if (bpf_map_update_elem(st->ports_fd, &key, target, BPF_ANY)) {
		int saved = errno;

		if (!existed)
			bpf_map_delete_elem(st->port_stats_fd, &key);
		return dh_runtime_error("port %u/%s: cannot add: %s", spec->port, dh_proto_name(spec->proto),
					strerror(saved));
	}
	*result = existed ? "updated" : "added";
	dh_test_kill_point("port-added");
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

/* to_addr (IPv4) and to_addr6 (IPv6): null for a family not mapped. */
static void target_json(struct json_object *obj, const struct dh_port_target *target)
{
	json_object_object_add(obj, "to_addr", target->addr ? json_object_new_string(dh_ipv4_str(target->addr)) : NULL);
	json_object_object_add(obj, "to_addr6",
			       dh_ipv6_unset(target->addr6) ? NULL : json_object_new_string(dh_ipv6_str(target->addr6)));
	json_object_object_add(obj, "to_port", json_object_new_int(ntohs(target->port)));
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
		target_json(obj, &rows[i].target);
		/* null: open to all; an array (maybe empty: closed to all). */
		json_object_object_add(obj, "allow", rows[i].target.flags & DH_PORT_ALLOW_LIST ?
						     dh_allow_json(st, &rows[i].key) : NULL);
		json_object_object_add(obj, "packets", json_object_new_uint64(rows[i].stats.packets));
		json_object_object_add(obj, "bytes", json_object_new_uint64(rows[i].stats.bytes));
		/* Last: what parsers of the older output match stays as it was. */
		json_object_object_add(obj, "config", json_object_new_boolean(rows[i].target.flags & DH_PORT_CONFIG));
		json_object_array_add(list, obj);
	}
	free(rows);
	return list;
}

void dh_ports_print(const struct dh_state *st)
{
	struct port_row *rows;
	char scope[DH_IFNAMSIZ], spec[16], to[80];
	size_t n, i;

	rows = read_ports(st, &n);
	if (!n)
		printf("no ports mapped\n");
	else
		printf("%-15s %-10s %-27s %12s %14s\n", "BRIDGE", "PORT", "TO", "PACKETS", "BYTES");
	for (i = 0; i < n; i++) {
		scope_name(rows[i].key.ifindex, st, scope);
		snprintf(spec, sizeof(spec), "%u/%s", ntohs(rows[i].key.port), dh_proto_name(rows[i].key.proto));
		printf("%-15s %-10s %-27s %12llu %14llu\n", scope, spec, dh_target_str(&rows[i].target, to, sizeof(to)),
		       (unsigned long long)rows[i].stats.packets, (unsigned long long)rows[i].stats.bytes);
		if (rows[i].target.flags & DH_PORT_ALLOW_LIST)
			dh_allow_print(st, &rows[i].key, "  ");
	}
	free(rows);
}

struct port_args {
	const char *action;
	struct dh_port_spec spec;
	const char *spec_text;
	const char *to;
	const char *from[DH_MAX_ARGS];  /* --from, as typed */
	int n_from;
	const char *bridge;     /* as typed */
	char bridge_name[DH_IFNAMSIZ];  /* the device */
};

static int parse_port_args(int argc, char **argv, struct port_args *args)
{
	static const struct option options[] = {
		{ "to", required_argument, NULL, 't' },
		{ "bridge", required_argument, NULL, 'b' },
		{ "from", required_argument, NULL, 'f' },
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
		case 'f':
			if (args->n_from == DH_MAX_ARGS)
				return dh_usage_error("port %s: --from '%s': more than %d at once", args->action,
						      optarg, DH_MAX_ARGS);
			args->from[args->n_from++] = optarg;
			break;
		case ':':
			return dh_usage_error("port %s: option '%s' needs a value", args->action, argv[optind - 1]);
		default:
			return dh_usage_error("port %s: unknown option '%s'", args->action, argv[optind - 1]);
		}
	}
	if (!strcmp(args->action, "list")) {
		if (optind != argc || args->to || args->bridge || args->n_from)
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

static bool socket_mode(const struct dh_state *st, __u32 ifindex)
{
	struct dh_bridge bridge;

	return bpf_map_lookup_elem(st->bridges_fd, &ifindex, &bridge) == 0 && bridge.mode == DH_MODE_SOCKET;
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

/* One place a spec was deleted from: the global entry or a bridge's. */
struct del_scope {
	__u32 ifindex;
	char name[DH_IFNAMSIZ];  /* as port list shows it: '*' or the bridge */
};

/* Deletes one entry and its counters; -errno from the ports map. */
static int delete_entry(const struct dh_state *st, __u32 ifindex, const struct dh_port_spec *spec)
{
	struct dh_port_key key = { .ifindex = ifindex, .port = htons(spec->port), .proto = spec->proto };

	if (bpf_map_delete_elem(st->ports_fd, &key))
		return -errno;
	dh_test_kill_point("port-deleted");
	bpf_map_delete_elem(st->port_stats_fd, &key);
	dh_allow_forget(st, &key);
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	__u32 x = *(const __u32 *)a, y = *(const __u32 *)b;

	return x < y ? -1 : x > y;
}

/*
 * port del without --bridge: the spec goes wherever it is mapped, the
 * global entry and every attached bridge's own one (attach --port writes
 * those), so that `port list` no longer shows it anywhere. One lookup per
 * attached bridge, not a walk of the ports map: deleting stays as cheap
 * with thousands of ports mapped. Fills @done; returns how many, or -errno.
 */
static int delete_everywhere(const struct dh_state *st, const struct dh_port_spec *spec,
			     struct del_scope *done, int max)
{
	__u32 ifindexes[DH_MAX_BRIDGES + 1], key, next;
	void *prev = NULL;
	int n = 0, found = 0, i, err;

	ifindexes[n++] = 0;
	while (n <= DH_MAX_BRIDGES && bpf_map_get_next_key(st->bridges_fd, prev, &next) == 0) {
		key = next;
		prev = &key;
		ifindexes[n++] = key;
	}
	/* The global entry first, then bridges as they were created. */
	qsort(ifindexes + 1, n - 1, sizeof(ifindexes[0]), cmp_u32);
	for (i = 0; i < n && found < max; i++) {
		err = delete_entry(st, ifindexes[i], spec);
		if (err == -ENOENT)
			continue;
		if (err)
			return err;
		done[found].ifindex = ifindexes[i];
		scope_name(ifindexes[i], st, done[found].name);
		found++;
	}
	return found;
}

/* "all bridges, br0": where a deleted spec was mapped, in words. */
static void scopes_text(const struct del_scope *done, int n, char *text, size_t size)
{
	size_t len = 0;
	int i;

	text[0] = '\0';
	for (i = 0; i < n && len < size; i++)
		len += snprintf(text + len, size - len, "%s%s", i ? ", " : "",
				done[i].ifindex ? done[i].name : "all bridges");
}

/* Does any source remain in the list of the entry @key? */
static bool list_empty(const struct dh_state *st, const struct dh_port_key *key)
{
	struct json_object *list = dh_allow_json(st, key);
	bool empty = json_object_array_length(list) == 0;

	json_object_put(list);
	return empty;
}

/*
 * port del SPEC --from SOURCE... [--bridge B]: takes sources out of the
 * list of the global entry and every bridge's own one (or, with --bridge,
 * that bridge's), never the mapping itself. A list left empty stays a
 * list: the port is closed to all until `port add SPEC --from any` opens
 * it or `port del SPEC` unmaps it. Every source must be in some list, or
 * nothing changes.
 */
static int port_del_from(const struct dh_cli *cli, const struct dh_state *st, const struct port_args *args,
			 __u32 ifindex)
{
	static struct dh_allow_arg parsed[DH_MAX_ARGS];
	__u32 scopes[DH_MAX_BRIDGES + 1], next, prev_key;
	struct dh_allow_source_key skey;
	struct dh_allow_source src;
	struct json_object *removed = NULL;
	bool closed = false;
	void *prev = NULL;
	int n = 0, i, j, err;

	for (i = 0; i < args->n_from; i++) {
		err = dh_allow_parse("port del", args->from[i], false, &parsed[i]);
		if (err)
			return err;
	}
	scopes[n++] = ifindex;
	while (!args->bridge && n <= DH_MAX_BRIDGES && bpf_map_get_next_key(st->bridges_fd, prev, &next) == 0) {
		prev_key = next;
		prev = &prev_key;
		scopes[n++] = next;
	}
	for (i = 0; i < args->n_from; i++) {
		bool found = false;

		for (j = 0; j < n && !found; j++) {
			memset(&skey, 0, sizeof(skey));
			skey.port = (struct dh_port_key){ .ifindex = scopes[j], .port = htons(args->spec.port),
							  .proto = args->spec.proto };
			memcpy(skey.name, parsed[i].name, sizeof(skey.name));
			found = bpf_map_lookup_elem(st->allow_sources_fd, &skey, &src) == 0;
		}
		if (!found)
			return dh_runtime_error("port del: %u/%s --from '%s': not in its allow-list%s%s", args->spec.port,
						dh_proto_name(args->spec.proto), args->from[i],
						args->bridge ? " on " : "", args->bridge ? args->bridge : "");
	}
	if (cli->json)
		removed = json_object_new_array();
	for (i = 0; i < args->n_from; i++) {
		for (j = 0; j < n; j++) {
			struct dh_port_key key = { .ifindex = scopes[j], .port = htons(args->spec.port),
						   .proto = args->spec.proto };

			if (dh_allow_del(st, &key, parsed[i].name))
				continue;
			closed |= list_empty(st, &key);
		}
		if (removed)
			json_object_array_add(removed, json_object_new_string(parsed[i].name));
		else
			printf("%u/%s on %s: %s removed from the allow-list\n", args->spec.port,
			       dh_proto_name(args->spec.proto), args->bridge ? args->bridge : "all bridges",
			       parsed[i].name);
	}
	if (removed) {
		struct json_object *obj = json_object_new_object();

		json_object_object_add(obj, "port", json_object_new_int(args->spec.port));
		json_object_object_add(obj, "proto", json_object_new_string(dh_proto_name(args->spec.proto)));
		json_object_object_add(obj, "bridge", json_object_new_string(args->bridge ? args->bridge : "*"));
		json_object_object_add(obj, "removed", removed);
		json_object_object_add(obj, "closed", json_object_new_boolean(closed));
		json_object_object_add(obj, "result", json_object_new_string("removed"));
		dh_print_json(obj);
	} else if (closed) {
		printf("%u/%s: allow-list empty: closed to all ('port add %u/%s --from any' opens it, 'port del %u/%s' unmaps it)\n",
		       args->spec.port, dh_proto_name(args->spec.proto), args->spec.port,
		       dh_proto_name(args->spec.proto), args->spec.port, dh_proto_name(args->spec.proto));
	}
	return 0;
}

/* port del SPEC [--bridge B]: prints where the spec was deleted from. */
static int port_del(const struct dh_cli *cli, const struct dh_state *st, const struct port_args *args,
		    __u32 ifindex)
{
	struct del_scope done[DH_MAX_BRIDGES + 1];
	char where[DH_MAX_BRIDGES * (DH_IFNAMSIZ + 2) + 16];
	int n, i, err;

	if (args->bridge) {
		/* Scoped: the bridge's own entry only, never the global one. */
		err = delete_entry(st, ifindex, &args->spec);
		if (err == -ENOENT)
			return dh_runtime_error("port del: %u/%s on %s: not mapped", args->spec.port,
						dh_proto_name(args->spec.proto), args->bridge);
		if (err)
			return dh_runtime_error("port del: %s: %s", args->spec_text, strerror(-err));
		done[0].ifindex = ifindex;
		scope_name(ifindex, st, done[0].name);
		n = 1;
	} else {
		n = delete_everywhere(st, &args->spec, done, DH_MAX_BRIDGES + 1);
		if (n < 0)
			return dh_runtime_error("port del: %s: %s", args->spec_text, strerror(-n));
		if (n == 0)
			return dh_runtime_error("port del: %u/%s: not mapped on any bridge", args->spec.port,
						dh_proto_name(args->spec.proto));
	}

	if (cli->json) {
		struct json_object *obj = json_object_new_object();
		struct json_object *from = json_object_new_array();

		for (i = 0; i < n; i++)
			json_object_array_add(from, json_object_new_string(done[i].name));
		json_object_object_add(obj, "port", json_object_new_int(args->spec.port));
		json_object_object_add(obj, "proto", json_object_new_string(dh_proto_name(args->spec.proto)));
		json_object_object_add(obj, "bridge", json_object_new_string(args->bridge ? args->bridge : "*"));
		json_object_object_add(obj, "deleted_from", from);
		json_object_object_add(obj, "result", json_object_new_string("deleted"));
		dh_print_json(obj);
	} else {
		/* --bridge as typed (a Docker network's name, say), as add prints it. */
		if (args->bridge)
			snprintf(where, sizeof(where), "%s", args->bridge);
		else
			scopes_text(done, n, where, sizeof(where));
		printf("%u/%s on %s: deleted\n", args->spec.port, dh_proto_name(args->spec.proto), where);
	}
	return 0;
}

/*
 * port add SPEC --from ... without --bridge: a bridge's own entry for SPEC
 * (attach --port writes those) wins over the all-bridges one, so the
 * sources go in its list too, or SPEC would stay open on that bridge.
 * Prints each bridge so listed; 0 or an exit code.
 */
static int add_to_bridge_entries(const struct dh_cli *cli, const struct dh_state *st, const struct port_args *args,
				 const struct dh_allow_arg *from)
{
	__u32 next, prev_key;
	void *prev = NULL;
	int i, err;

	while (bpf_map_get_next_key(st->bridges_fd, prev, &next) == 0) {
		struct dh_port_key key = { .ifindex = next, .port = htons(args->spec.port), .proto = args->spec.proto };
		struct dh_port_target entry;
		char name[DH_IFNAMSIZ];

		prev_key = next;
		prev = &prev_key;
		if (bpf_map_lookup_elem(st->ports_fd, &key, &entry))
			continue;
		for (i = 0; i < args->n_from; i++) {
			err = dh_allow_add(st, &key, &from[i]);
			if (err)
				return dh_runtime_error("port add: %s --from '%s': %s", args->spec_text, args->from[i],
							strerror(-err));
		}
		entry.flags |= DH_PORT_ALLOW_LIST;
		if (bpf_map_update_elem(st->ports_fd, &key, &entry, BPF_EXIST) && errno != ENOENT)
			return dh_runtime_error("port add: %s: %s: %s", args->spec_text, "bridge entry", strerror(errno));
		scope_name(next, st, name);
		if (!cli->json)
			printf("%u/%s on %s (its own entry): allow-list updated\n", args->spec.port,
			       dh_proto_name(args->spec.proto), name);
	}
	return 0;
}

int dh_cmd_port(const struct dh_cli *cli, int argc, char **argv)
{
	static struct dh_allow_arg from[DH_MAX_ARGS];  /* ~25 KiB: not on the stack */
	struct dh_port_target target = {};
	struct dh_port_key port_key;
	struct port_args args;
	const char *result = "";
	struct dh_state st;
	__u32 ifindex = 0;
	int err, i;

	err = parse_port_args(argc, argv, &args);
	if (!err && args.to && !dh_parse_target(args.to, &target))
		err = dh_usage_error("port add: --to '%s': not PORT, ADDR[:PORT] or [::1][:PORT] with ADDR in 127.0.0.0/8 or ::1",
				     args.to);
	/* Sources are checked before anything else, resolved through Docker
	 * before the pin dir is opened: a bad one changes nothing. */
	for (i = 0; !err && !strcmp(args.action, "add") && i < args.n_from; i++)
		err = dh_allow_parse("port add", args.from[i], true, &from[i]);
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
	if (!strcmp(args.action, "del")) {
		err = args.n_from ? port_del_from(cli, &st, &args, ifindex) : port_del(cli, &st, &args, ifindex);
		goto out;
	}
	if (!args.to)
		dh_parse_target("1", &target);  /* both families, the port below */
	if (!args.to || !target.port)
		target.port = htons(args.spec.port);
	/* NAT mode cannot redirect IPv6: a mapping of IPv6 alone for a NAT
	 * bridge would never match. (A global one serves the socket-mode
	 * bridges; NAT bridges leave its IPv6 half alone.) */
	if (!target.addr && ifindex && !socket_mode(&st, ifindex)) {
		err = dh_runtime_error("port add: %s --to %s: %s is in NAT mode, which cannot redirect IPv6; attach it with --mode socket",
				       args.spec_text, args.to, args.bridge_name);
		goto out;
	}
	/* Socket mode answers UDP from the socket's own port: a reply from
	 * another port than the one the container used would not match. */
	if (args.spec.proto == IPPROTO_UDP && target.port != htons(args.spec.port) &&
	    (ifindex ? socket_mode(&st, ifindex) : dh_state_socket_bridges(&st, 0) > 0)) {
		err = dh_runtime_error("port add: %u/udp --to %s: socket mode cannot answer a UDP port from another port (%s in socket mode); map it to the same port, or attach with --mode nat",
				       args.spec.port, args.to, ifindex ? args.bridge_name : "a bridge is");
		goto out;
	}
	/* The sources go in before the mapping gets its list flag: an open
	 * mapping never refuses the source being added. */
	port_key = (struct dh_port_key){ .ifindex = ifindex, .port = htons(args.spec.port), .proto = args.spec.proto };
	for (i = 0; i < args.n_from; i++) {
		err = dh_allow_add(&st, &port_key, &from[i]);
		if (err) {
			err = dh_runtime_error("port add: %s --from '%s': %s", args.spec_text, args.from[i],
					       strerror(-err));
			goto out;
		}
	}
	if (args.n_from)
		target.flags |= DH_PORT_ALLOW_LIST;
	err = dh_port_apply(&st, ifindex, &args.spec, &target, &result);
	if (err)
		goto out;
	if (args.n_from && !strcmp(result, "unchanged"))
		result = "allow-list updated";
	if (args.n_from && !args.bridge) {
		err = add_to_bridge_entries(cli, &st, &args, from);
		if (err)
			goto out;
	}

	if (cli->json) {
		struct json_object *obj = json_object_new_object();

		json_object_object_add(obj, "port", json_object_new_int(args.spec.port));
		json_object_object_add(obj, "proto", json_object_new_string(dh_proto_name(args.spec.proto)));
		json_object_object_add(obj, "bridge", json_object_new_string(args.bridge ? args.bridge : "*"));
		target_json(obj, &target);
		if (bpf_map_lookup_elem(st.ports_fd, &port_key, &target) == 0)
			json_object_object_add(obj, "allow", target.flags & DH_PORT_ALLOW_LIST ?
							     dh_allow_json(&st, &port_key) : NULL);
		json_object_object_add(obj, "result", json_object_new_string(result));
		dh_print_json(obj);
	} else {
		char to[80];

		printf("%u/%s on %s -> %s: %s\n", args.spec.port, dh_proto_name(args.spec.proto),
		       args.bridge ? args.bridge : "all bridges", dh_target_str(&target, to, sizeof(to)), result);
		if (bpf_map_lookup_elem(st.ports_fd, &port_key, &target) == 0 && (target.flags & DH_PORT_ALLOW_LIST))
			dh_allow_print(&st, &port_key, "  ");
	}
out:
	dh_state_close(&st);
	return err;
}
