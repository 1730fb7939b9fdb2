// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Allow-lists: which sources may use a mapping (port add --from).
 *
 * The datapath reads allow4/allow6, an LPM trie per family keyed by the
 * mapping's key and a source prefix (include/dockhost.h): one lookup per
 * packet, whatever the list's length. allow_sources records each --from
 * (a CIDR, "any", a Docker container or network by the name typed) with
 * the prefixes it resolved to, so that port del --from takes out exactly
 * what that source put in. Two sources may put in the same prefix (a
 * container and its network's subnet, say): the trie's value counts them,
 * and the prefix goes with the last one.
 *
 * Order of writes: prefixes are added before the mapping gets its
 * DH_PORT_ALLOW_LIST flag (cmd_port.c), and a source's new prefixes before
 * its old ones go, so an allowed source is never refused in between.
 */
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

union allow_key {
	struct dh_allow4_key v4;
	struct dh_allow6_key v6;
};

/* The trie of @prefix's family and its key; returns the map's fd. */
static int trie_key(const struct dh_state *st, const struct dh_port_key *port, const struct dh_allow_prefix *prefix,
		    union allow_key *key)
{
	memset(key, 0, sizeof(*key));
	if (prefix->family == DH_AF_INET6) {
		key->v6.prefixlen = DH_ALLOW_KEY_BITS + prefix->prefixlen;
		key->v6.port = *port;
		memcpy(key->v6.addr, prefix->addr, sizeof(key->v6.addr));
		return st->allow6_fd;
	}
	key->v4.prefixlen = DH_ALLOW_KEY_BITS + prefix->prefixlen;
	key->v4.port = *port;
	key->v4.addr = prefix->addr[0];
	return st->allow4_fd;
}

/* One more (@delta 1) or one less (-1) source holding @prefix. */
static int trie_ref(const struct dh_state *st, const struct dh_port_key *port, const struct dh_allow_prefix *prefix,
		    int delta)
{
	union allow_key key;
	int fd = trie_key(st, port, prefix, &key);
	__u32 refs = 0;
	bool found = bpf_map_lookup_elem(fd, &key, &refs) == 0;

	if (delta > 0) {
		refs = found ? refs + 1 : 1;
		return bpf_map_update_elem(fd, &key, &refs, BPF_ANY) ? -errno : 0;
	}
	if (!found)
		return 0;
	if (refs <= 1)
		return bpf_map_delete_elem(fd, &key) && errno != ENOENT ? -errno : 0;
	refs--;
	return bpf_map_update_elem(fd, &key, &refs, BPF_EXIST) ? -errno : 0;
}

static void source_key(struct dh_allow_source_key *key, const struct dh_port_key *port, const char *name)
{
	memset(key, 0, sizeof(*key));
	key->port = *port;
	snprintf(key->name, sizeof(key->name), "%s", name);
}

/* Meant as an address: has '/' or ':', or only digits and dots. */
static bool looks_like_cidr(const char *text)
{
	return strchr(text, '/') || strchr(text, ':') || strspn(text, "0123456789.") == strlen(text);
}

bool dh_allow_same_prefixes(const struct dh_allow_source *a, const struct dh_allow_source *b)
{
	__u32 i, j;

	if (a->count != b->count || a->count > DH_ALLOW_PREFIXES)
		return false;
	for (i = 0; i < a->count; i++) {
		for (j = 0; j < b->count && memcmp(&a->prefixes[i], &b->prefixes[j], sizeof(a->prefixes[i])); j++)
			;
		if (j == b->count)
			return false;
	}
	return true;
}

int dh_allow_parse(const char *cmd, const char *text, bool docker, struct dh_allow_arg *arg)
{
	struct dh_allow_prefix prefix;
	char why[256], shown[64];
	int err;

	memset(arg, 0, sizeof(*arg));
	arg->src.resolved_at = time(NULL);
	if (!strcmp(text, "any")) {
		/* Open to all on purpose: both families' whole space. */
		snprintf(arg->name, sizeof(arg->name), "any");
		arg->src.kind = DH_ALLOW_CIDR;
		arg->src.count = 2;
		arg->src.prefixes[0].family = DH_AF_INET;
		arg->src.prefixes[1].family = DH_AF_INET6;
		return 0;
	}
	err = dh_parse_cidr(text, &prefix);
	if (err == -ERANGE)
		return dh_usage_error("%s: --from '%s': host bits set (did you mean %s?)", cmd, text,
				      dh_prefix_str(&prefix, shown, sizeof(shown)));
	if (!err) {
		dh_prefix_str(&prefix, arg->name, sizeof(arg->name));
		arg->src.kind = DH_ALLOW_CIDR;
		arg->src.count = 1;
		arg->src.prefixes[0] = prefix;
		return 0;
	}
	if (looks_like_cidr(text))
		return dh_usage_error("%s: --from '%s': not a CIDR (ADDR or ADDR/LEN, IPv4 or IPv6)", cmd, text);
	if (!dh_docker_name_valid(text))
		return dh_usage_error("%s: --from '%s': not a CIDR, 'any', nor a Docker container or network name",
				      cmd, text);
	snprintf(arg->name, sizeof(arg->name), "%s", text);
	if (!docker)
		return 0;
	err = dh_docker_allow_source(text, &arg->src, why, sizeof(why));
	arg->src.resolved_at = time(NULL);
	if (err == -ENOENT)
		return dh_usage_error("%s: --from '%s': not a CIDR, nor a Docker container or network", cmd, text);
	if (err)
		return dh_runtime_error("%s: --from '%s': %s", cmd, text, why);
	if (why[0])
		dh_warn("%s: --from '%s': %s", cmd, text, why);
	if (!arg->src.count)
		return dh_runtime_error("%s: --from '%s': this Docker %s has no address%s", cmd, text,
					arg->src.kind == DH_ALLOW_NETWORK ? "network" : "container",
					arg->src.kind == DH_ALLOW_NETWORK ? " (no IPAM subnet)" : " (not running?)");
	return 0;
}

int dh_allow_add(const struct dh_state *st, const struct dh_port_key *port, const struct dh_allow_arg *arg)
{
	struct dh_allow_source_key key;
	struct dh_allow_source old;
	bool existed;
	__u32 i;
	int err;

	source_key(&key, port, arg->name);
	existed = bpf_map_lookup_elem(st->allow_sources_fd, &key, &old) == 0;
	for (i = 0; i < arg->src.count; i++) {
		err = trie_ref(st, port, &arg->src.prefixes[i], 1);
		if (err) {
			while (i--)
				trie_ref(st, port, &arg->src.prefixes[i], -1);
			return err;
		}
	}
	if (bpf_map_update_elem(st->allow_sources_fd, &key, &arg->src, BPF_ANY)) {
		err = -errno;
		for (i = 0; i < arg->src.count; i++)
			trie_ref(st, port, &arg->src.prefixes[i], -1);
		return err;
	}
	/* The same source again (a container re-resolved): what it had goes. */
	for (i = 0; existed && i < old.count && i < DH_ALLOW_PREFIXES; i++)
		trie_ref(st, port, &old.prefixes[i], -1);
	return 0;
}

int dh_allow_del(const struct dh_state *st, const struct dh_port_key *port, const char *name)
{
	struct dh_allow_source_key key;
	struct dh_allow_source old;
	__u32 i;

	source_key(&key, port, name);
	if (bpf_map_lookup_elem(st->allow_sources_fd, &key, &old))
		return -ENOENT;
	for (i = 0; i < old.count && i < DH_ALLOW_PREFIXES; i++)
		trie_ref(st, port, &old.prefixes[i], -1);
	bpf_map_delete_elem(st->allow_sources_fd, &key);
	return 0;
}

/* Deletes every key of @fd (@key_size bytes) whose dh_port_key at
 * @port_off matches @port (or, with @any_port, whose ifindex is @ifindex).
 * Keys are collected first: deleting while walking skips some. */
static void delete_matching(int fd, size_t key_size, size_t port_off, const struct dh_port_key *port,
			    bool any_port)
{
	char *keys = NULL, *grown, cur[sizeof(struct dh_allow_source_key)], next[sizeof(cur)];
	size_t n = 0, cap = 0, i;
	void *prev = NULL;

	while (bpf_map_get_next_key(fd, prev, next) == 0) {
		const struct dh_port_key *k = (const void *)(next + port_off);

		memcpy(cur, next, key_size);
		prev = cur;
		if (any_port ? k->ifindex != port->ifindex : memcmp(k, port, sizeof(*k)))
			continue;
		if (n == cap) {
			grown = realloc(keys, (cap = cap ? cap * 2 : 64) * key_size);
			if (!grown)
				break;
			keys = grown;
		}
		memcpy(keys + n++ * key_size, next, key_size);
	}
	for (i = 0; i < n; i++)
		bpf_map_delete_elem(fd, keys + i * key_size);
	free(keys);
}

static void forget(const struct dh_state *st, const struct dh_port_key *port, bool any_port)
{
	delete_matching(st->allow4_fd, sizeof(struct dh_allow4_key), offsetof(struct dh_allow4_key, port), port,
			any_port);
	delete_matching(st->allow6_fd, sizeof(struct dh_allow6_key), offsetof(struct dh_allow6_key, port), port,
			any_port);
	delete_matching(st->allow_sources_fd, sizeof(struct dh_allow_source_key),
			offsetof(struct dh_allow_source_key, port), port, any_port);
}

void dh_allow_forget(const struct dh_state *st, const struct dh_port_key *port)
{
	forget(st, port, false);
}

void dh_allow_forget_bridge(const struct dh_state *st, __u32 ifindex)
{
	struct dh_port_key port = { .ifindex = ifindex };

	forget(st, &port, true);
}

struct source_row {
	struct dh_allow_source_key key;
	struct dh_allow_source src;
};

static int cmp_sources(const void *a, const void *b)
{
	return strcmp(((const struct source_row *)a)->key.name, ((const struct source_row *)b)->key.name);
}

/* @port's sources, sorted by name. Caller frees. */
static struct source_row *read_sources(const struct dh_state *st, const struct dh_port_key *port, size_t *count)
{
	struct dh_allow_source_key key, prev_key;
	struct source_row *rows = NULL, *grown;
	size_t n = 0, cap = 0;
	void *prev = NULL;

	while (bpf_map_get_next_key(st->allow_sources_fd, prev, &key) == 0) {
		prev_key = key;
		prev = &prev_key;
		if (memcmp(&key.port, port, sizeof(*port)))
			continue;
		if (n == cap) {
			grown = realloc(rows, (cap = cap ? cap * 2 : 16) * sizeof(*rows));
			if (!grown)
				break;
			rows = grown;
		}
		rows[n].key = key;
		if (bpf_map_lookup_elem(st->allow_sources_fd, &key, &rows[n].src))
			continue;
		if (rows[n].src.count > DH_ALLOW_PREFIXES)
			rows[n].src.count = DH_ALLOW_PREFIXES;
		n++;
	}
	if (n)
		qsort(rows, n, sizeof(*rows), cmp_sources);
	*count = n;
	return rows;
}

static const char *kind_name(__u32 kind)
{
	kind &= DH_ALLOW_KIND_MASK;  /* the owner bit aside */
	if (kind == DH_ALLOW_LABEL || kind == DH_ALLOW_LABEL_MAPPED)
		return "label";
	return kind == DH_ALLOW_CONTAINER ? "container" : kind == DH_ALLOW_NETWORK ? "network" : "cidr";
}

struct json_object *dh_allow_json(const struct dh_state *st, const struct dh_port_key *port)
{
	struct json_object *list = json_object_new_array();
	struct source_row *rows;
	char text[64];
	size_t n, i;
	__u32 j;

	rows = read_sources(st, port, &n);
	for (i = 0; i < n; i++) {
		struct json_object *obj = json_object_new_object(), *addrs = json_object_new_array();

		json_object_object_add(obj, "source", json_object_new_string(rows[i].key.name));
		json_object_object_add(obj, "kind", json_object_new_string(kind_name(rows[i].src.kind)));
		for (j = 0; j < rows[i].src.count; j++)
			json_object_array_add(addrs, json_object_new_string(
						      dh_prefix_str(&rows[i].src.prefixes[j], text, sizeof(text))));
		json_object_object_add(obj, "prefixes", addrs);
		json_object_object_add(obj, "resolved_at", json_object_new_uint64(rows[i].src.resolved_at));
		json_object_object_add(obj, "config", json_object_new_boolean(rows[i].src.kind & DH_ALLOW_CONFIG));
		json_object_array_add(list, obj);
	}
	free(rows);
	return list;
}

void dh_allow_print(const struct dh_state *st, const struct dh_port_key *port, const char *indent)
{
	struct source_row *rows;
	char text[64];
	size_t n, i;
	__u32 j;

	rows = read_sources(st, port, &n);
	if (!n)
		printf("%sfrom: nobody (allow-list empty: closed to all)\n", indent);
	for (i = 0; i < n; i++) {
		__u32 kind = rows[i].src.kind & DH_ALLOW_KIND_MASK;

		printf("%sfrom: %s", indent, rows[i].key.name);
		if (kind != DH_ALLOW_CIDR || !strcmp(rows[i].key.name, "any")) {
			printf(" (%s:", kind == DH_ALLOW_CIDR ? "all" : kind_name(kind));
			for (j = 0; j < rows[i].src.count; j++)
				printf(" %s", dh_prefix_str(&rows[i].src.prefixes[j], text, sizeof(text)));
			/* A container watch found stopped or removed: its
			 * addresses went, the name stays for its return. */
			if (!rows[i].src.count)
				printf(" no address now");
			printf(")");
		}
		printf("%s\n", rows[i].src.kind & DH_ALLOW_CONFIG ? " [config]" : "");
	}
	free(rows);
}
