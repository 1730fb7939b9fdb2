// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * watch and Docker: what Docker's events change in the allow-lists.
 *
 * Every event (and every new connection to the stream: events may have
 * been missed) leads to one full pass, not to an edit per event: the
 * allow-lists are brought in line with what Docker says now, so a lost or
 * reordered event costs nothing. Docker is asked first, without the pin
 * dir's lock; the lock is held only while the changes are written.
 *
 * - Sources of kind container or network (port add --from NAME) are
 *   resolved again by name. A container that stopped, or is gone, keeps
 *   its record with no prefix: the mapping stays closed to it, and a
 *   container of that name that runs again gets its access back.
 * - With --docker-labels, a running container labelled
 *   DH_DOCKER_PORTS_LABEL=SPEC[,SPEC]... is a source "label:<short id>"
 *   of each SPEC on its networks' bridges that watch follows: in the list
 *   of the mapping that serves it there (the bridge's own entry, else
 *   the all-bridges one), or in a mapping of its own on the bridge
 *   (LABEL_MAPPED) where SPEC is not mapped. A mapping open to all is
 *   left alone: the container reaches it already. When the container
 *   stops, its sources go, and a mapping it made goes with the last
 *   label source; nothing a user put in is ever removed or opened.
 */
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

#define MAX_RECORDS  4096
#define MAX_LABELLED 256

struct record {
	struct dh_allow_source_key key;
	struct dh_allow_source src;
};

static bool is_label(__u32 kind)
{
	return kind == DH_ALLOW_LABEL || kind == DH_ALLOW_LABEL_MAPPED;
}

/* Every allow_sources record (of @want: docker kinds, or labels). */
static int read_records(const struct dh_state *st, bool labels, struct record *out, int max)
{
	struct dh_allow_source_key key, prev_key;
	void *prev = NULL;
	__u32 kind;
	int n = 0;

	while (n < max && bpf_map_get_next_key(st->allow_sources_fd, prev, &key) == 0) {
		prev_key = key;
		prev = &prev_key;
		if (bpf_map_lookup_elem(st->allow_sources_fd, &key, &out[n].src))
			continue;
		/* The configuration's container and network sources (owner
		 * bit over the kind) are re-resolved as a user's are. */
		kind = out[n].src.kind & DH_ALLOW_KIND_MASK;
		if (labels ? !is_label(out[n].src.kind) : kind != DH_ALLOW_CONTAINER && kind != DH_ALLOW_NETWORK)
			continue;
		if (out[n].src.count > DH_ALLOW_PREFIXES)
			out[n].src.count = DH_ALLOW_PREFIXES;
		out[n].key = key;
		n++;
	}
	return n;
}


static const char *prefixes_text(const struct dh_allow_source *src, char *buf, size_t size)
{
	char one[64];
	size_t len = 0;
	__u32 i;

	buf[0] = '\0';
	for (i = 0; i < src->count && len < size; i++)
		len += snprintf(buf + len, size - len, "%s%s", i ? " " : "",
				dh_prefix_str(&src->prefixes[i], one, sizeof(one)));
	if (!src->count)
		snprintf(buf, size, "no address");
	return buf;
}

/* "8088/tcp on br0" or "on all bridges". */
static const char *where(const struct dh_state *st, const struct dh_port_key *key, char *buf, size_t size)
{
	struct dh_bridge bridge;
	__u32 ifindex = key->ifindex;

	if (!ifindex)
		snprintf(buf, size, "%u/%s on all bridges", ntohs(key->port), dh_proto_name(key->proto));
	else if (bpf_map_lookup_elem(st->bridges_fd, &ifindex, &bridge) == 0)
		snprintf(buf, size, "%u/%s on %s", ntohs(key->port), dh_proto_name(key->proto), bridge.name);
	else
		snprintf(buf, size, "%u/%s on if%u", ntohs(key->port), dh_proto_name(key->proto), ifindex);
	return buf;
}

static void apply(const struct dh_state *st, const struct dh_port_key *key, const char *name,
		  const struct dh_allow_source *src, const char *what)
{
	struct dh_allow_arg arg = {};
	char at[64], text[DH_ALLOW_PREFIXES * 48];
	int err;

	snprintf(arg.name, sizeof(arg.name), "%s", name);
	arg.src = *src;
	arg.src.resolved_at = time(NULL);
	err = dh_allow_add(st, key, &arg);
	if (err)
		dh_warn("watch: %s: from %s: %s", where(st, key, at, sizeof(at)), name, strerror(-err));
	else
		printf("watch: %s: from %s (%s): %s\n", where(st, key, at, sizeof(at)), name, what,
		       prefixes_text(src, text, sizeof(text)));
}

/*
 * Container and network sources, by name: resolved again; a record whose
 * prefixes changed is rewritten. Docker not answering changes nothing.
 */
static void follow_sources(const struct dh_cli *cli)
{
	static struct record recs[MAX_RECORDS];
	struct dh_allow_source *resolved;
	struct dh_state st;
	char why[256];
	int *state, n, i, j, changed = 0;

	if (dh_state_open(cli, &st, DH_OPEN_EXISTING))
		return;  /* nothing attached (or said why) */
	n = read_records(&st, false, recs, MAX_RECORDS);
	dh_state_close(&st);
	if (!n)
		return;
	resolved = calloc(n, sizeof(*resolved));
	state = calloc(n, sizeof(*state));  /* 0: not asked, 1: answer, -1: keep */
	if (!resolved || !state)
		goto out;
	for (i = 0; i < n; i++) {
		for (j = 0; j < i && strcmp(recs[j].key.name, recs[i].key.name); j++)
			;
		if (j < i && recs[j].src.kind == recs[i].src.kind) {  /* asked already */
			resolved[i] = resolved[j];
			state[i] = state[j];
		} else {
			bool network = (recs[i].src.kind & DH_ALLOW_KIND_MASK) == DH_ALLOW_NETWORK;
			int err = dh_docker_source_of_kind(recs[i].key.name, network,
							   &resolved[i], why, sizeof(why));

			/* Gone (404): no address, as a stopped container. */
			if (err == -ENOENT)
				memset(&resolved[i], 0, sizeof(resolved[i]));
			state[i] = err && err != -ENOENT ? -1 : 1;
			if (state[i] < 0)
				dh_debug("watch: %s: %s: kept as it was", recs[i].key.name, why);
		}
		resolved[i].kind = recs[i].src.kind;
		if (state[i] > 0 && !dh_allow_same_prefixes(&resolved[i], &recs[i].src))
			changed++;
	}
	if (!changed || dh_state_open(cli, &st, DH_OPEN_EXISTING))
		goto out;
	fflush(stdout);
	for (i = 0; i < n; i++) {
		struct dh_allow_source now;

		if (state[i] <= 0 || dh_allow_same_prefixes(&resolved[i], &recs[i].src))
			continue;
		/* Still there, and still what we read (port del meanwhile)? */
		if (bpf_map_lookup_elem(st.allow_sources_fd, &recs[i].key, &now) ||
		    !dh_allow_same_prefixes(&now, &recs[i].src))
			continue;
		apply(&st, &recs[i].key.port, recs[i].key.name, &resolved[i],
		      (resolved[i].kind & DH_ALLOW_KIND_MASK) == DH_ALLOW_NETWORK ? "network" : resolved[i].count ? "container" :
		      "container, not running or gone: closed to it");
	}
	fflush(stdout);
	dh_state_close(&st);
out:
	free(resolved);
	free(state);
}

/* One SPEC[,SPEC]... label value; false if any part is not a spec. */
static bool parse_label_ports(const char *value, struct dh_port_spec *specs, int max, int *n)
{
	char copy[128], *part, *save = NULL;

	snprintf(copy, sizeof(copy), "%s", value);
	*n = 0;
	for (part = strtok_r(copy, ",", &save); part; part = strtok_r(NULL, ",", &save)) {
		part += strspn(part, " ");
		part[strcspn(part, " ")] = '\0';
		if (*n == max || !dh_parse_port_spec(part, &specs[*n]))
			return false;
		(*n)++;
	}
	return *n > 0;
}

/* A label's error is said once per container, not at every pass. */
static bool warn_once(const char *id)
{
	static char warned[64][13];
	static int next;
	int i;

	for (i = 0; i < 64; i++)
		if (!strcmp(warned[i], id))
			return false;
	snprintf(warned[next], sizeof(warned[0]), "%s", id);
	next = (next + 1) % 64;
	return true;
}

struct wanted {
	struct dh_port_key key;
	char name[DH_ALLOW_NAME_LEN];
	struct dh_allow_source src;
	const char *container;
	bool make_mapping;
};

static bool has_record(const struct dh_state *st, const struct dh_port_key *key, const char *name,
		       struct dh_allow_source *src)
{
	struct dh_allow_source_key skey = { .port = *key };

	snprintf(skey.name, sizeof(skey.name), "%s", name);
	return bpf_map_lookup_elem(st->allow_sources_fd, &skey, src) == 0;
}

/*
 * Where a label's SPEC on a bridge goes: @out filled, or false where
 * nothing is to be done (a mapping open to all serves the container).
 */
static bool place(const struct dh_state *st, __u32 ifindex, const struct dh_port_spec *spec, const char *name,
		  struct wanted *out)
{
	struct dh_port_key keys[2] = {
		{ .ifindex = ifindex, .port = htons(spec->port), .proto = spec->proto },
		{ .ifindex = 0, .port = htons(spec->port), .proto = spec->proto },
	};
	struct dh_port_target target;
	struct dh_allow_source src;
	int i;

	for (i = 0; i < 2; i++) {
		if (bpf_map_lookup_elem(st->ports_fd, &keys[i], &target))
			continue;
		out->key = keys[i];
		if (has_record(st, &keys[i], name, &src)) {
			out->src.kind = src.kind;  /* what it was */
			return true;
		}
		if (!(target.flags & DH_PORT_ALLOW_LIST))
			return false;
		out->src.kind = DH_ALLOW_LABEL;
		return true;
	}
	out->key = keys[0];
	out->src.kind = DH_ALLOW_LABEL_MAPPED;
	out->make_mapping = true;
	return true;
}

/* Takes a label source out; a mapping it made goes with the last one. */
static void remove_label(const struct dh_state *st, const struct record *rec)
{
	static struct record others[MAX_RECORDS];
	char at[64];
	int n, i;
	bool any = false;

	dh_allow_del(st, &rec->key.port, rec->key.name);
	if (rec->src.kind != DH_ALLOW_LABEL_MAPPED) {
		printf("watch: %s: from %s: removed (container stopped)\n", where(st, &rec->key.port, at, sizeof(at)),
		       rec->key.name);
		return;
	}
	/* The mapping is a label's: another label source of it inherits
	 * that; any other source (a user's --from) keeps it as it is. */
	n = read_records(st, true, others, MAX_RECORDS);
	for (i = 0; i < n; i++) {
		if (memcmp(&others[i].key.port, &rec->key.port, sizeof(rec->key.port)))
			continue;
		others[i].src.kind = DH_ALLOW_LABEL_MAPPED;
		bpf_map_update_elem(st->allow_sources_fd, &others[i].key, &others[i].src, BPF_EXIST);
		any = true;
		break;
	}
	if (!any) {
		struct json_object *list = dh_allow_json(st, &rec->key.port);
		struct dh_port_target target;

		/* A mapping the configuration adopted is the configuration's. */
		if (bpf_map_lookup_elem(st->ports_fd, &rec->key.port, &target) == 0 &&
		    (target.flags & DH_PORT_CONFIG))
			any = true;

		any = json_object_array_length(list) > 0;
		json_object_put(list);
	}
	if (any) {
		printf("watch: %s: from %s: removed (container stopped)\n", where(st, &rec->key.port, at, sizeof(at)),
		       rec->key.name);
		return;
	}
	where(st, &rec->key.port, at, sizeof(at));
	bpf_map_delete_elem(st->ports_fd, &rec->key.port);
	bpf_map_delete_elem(st->port_stats_fd, &rec->key.port);
	dh_allow_forget(st, &rec->key.port);
	printf("watch: %s: unmapped (container stopped: %s)\n", at, rec->key.name);
}

/* What the labels want, given the mappings now: fills @want. */
static int plan(const struct dh_state *st, const struct dh_docker_labelled *items, int n_items,
		char (*bridge_of)[8][DH_IFNAMSIZ], const struct dh_watched_bridge *bridges, int n_bridges,
		struct wanted *want, int max, bool say)
{
	struct dh_port_spec specs[16];
	int n_want = 0, n_specs, i, j, k, b;

	for (i = 0; i < n_items; i++) {
		if (!parse_label_ports(items[i].value, specs, 16, &n_specs)) {
			if (say && warn_once(items[i].id))
				dh_warn("watch: container %s: label %s='%s': not SPEC[,SPEC]... (PORT, PORT/tcp, PORT/udp; at most 16): ignored",
					items[i].name, DH_DOCKER_PORTS_LABEL, items[i].value);
			continue;
		}
		for (j = 0; j < items[i].n_networks; j++) {
			for (b = 0; b < n_bridges && strcmp(bridges[b].name, bridge_of[i][j]); b++)
				;
			if (b == n_bridges || !bridge_of[i][j][0])
				continue;  /* not a bridge watch follows */
			for (k = 0; k < n_specs && n_want < max; k++) {
				struct wanted *w = &want[n_want];

				memset(w, 0, sizeof(*w));
				snprintf(w->name, sizeof(w->name), "label:%s", items[i].id);
				w->container = items[i].name;
				if (!place(st, bridges[b].ifindex, &specs[k], w->name, w))
					continue;
				memcpy(w->src.prefixes, items[i].src.prefixes, sizeof(w->src.prefixes));
				w->src.count = items[i].src.count;
				n_want++;
			}
		}
	}
	return n_want;
}

static void follow_labels(const struct dh_cli *cli, const struct dh_watched_bridge *bridges, int n_bridges)
{
	static struct dh_docker_labelled items[MAX_LABELLED];
	static struct wanted want[MAX_LABELLED * 8];
	static struct record have[MAX_RECORDS];
	static char bridge_of[MAX_LABELLED][8][DH_IFNAMSIZ];
	char why[256], path[256], *body = NULL;
	int n_items, n_want, n_have, i, j;
	struct dh_state st;
	size_t len;
	long status;

	/* {"label":["dockhost.ports"]}, URL-encoded: running containers
	 * with the label (whatever its value). */
	snprintf(path, sizeof(path), "/containers/json?filters=%%7B%%22label%%22%%3A%%5B%%22%s%%22%%5D%%7D",
		 DH_DOCKER_PORTS_LABEL);
	if (dh_docker_get(path, &body, &len, &status, why, sizeof(why))) {
		dh_debug("watch: labels: %s", why);
		return;  /* no answer: change nothing */
	}
	n_items = dh_docker_parse_labelled(status, body, len, DH_DOCKER_PORTS_LABEL, items, MAX_LABELLED, why,
					   sizeof(why));
	free(body);
	if (n_items < 0) {
		dh_debug("watch: labels: %s", why);
		return;
	}
	/* Each network's bridge, asked before the lock is taken. */
	for (i = 0; i < n_items; i++)
		for (j = 0; j < items[i].n_networks; j++)
			if (dh_docker_network_bridge(items[i].networks[j], bridge_of[i][j], why, sizeof(why)))
				bridge_of[i][j][0] = '\0';

	if (dh_state_open(cli, &st, DH_OPEN_EXISTING))
		return;
	fflush(stdout);
	/* Gone first: sources no running container's label wants. */
	n_want = plan(&st, items, n_items, bridge_of, bridges, n_bridges, want, MAX_LABELLED * 8, true);
	n_have = read_records(&st, true, have, MAX_RECORDS);
	for (i = 0; i < n_have; i++) {
		for (j = 0; j < n_want; j++)
			if (!memcmp(&want[j].key, &have[i].key.port, sizeof(want[j].key)) &&
			    !strcmp(want[j].name, have[i].key.name))
				break;
		if (j == n_want)
			remove_label(&st, &have[i]);
	}
	/* Then placed again: a mapping a removal took may be needed anew. */
	n_want = plan(&st, items, n_items, bridge_of, bridges, n_bridges, want, MAX_LABELLED * 8, false);
	for (j = 0; j < n_want; j++) {
		struct wanted *w = &want[j];
		struct dh_allow_source now;
		char what[96];

		if (has_record(&st, &w->key, w->name, &now) && dh_allow_same_prefixes(&now, &w->src))
			continue;
		snprintf(what, sizeof(what), "label of container %s", w->container);
		apply(&st, &w->key, w->name, &w->src, what);
		if (w->make_mapping) {
			struct dh_port_spec spec = { .port = ntohs(w->key.port), .proto = w->key.proto };
			struct dh_port_target target = {};
			const char *result;

			dh_parse_target("1", &target);
			target.port = w->key.port;
			target.flags = DH_PORT_ALLOW_LIST;
			if (dh_port_apply(&st, w->key.ifindex, &spec, &target, &result))
				dh_allow_del(&st, &w->key, w->name);
		}
	}
	fflush(stdout);
	dh_state_close(&st);
}

void dh_watch_docker_sync(const struct dh_cli *cli, bool labels, const struct dh_watched_bridge *bridges,
			  int n_bridges)
{
	follow_sources(cli);
	if (labels)
		follow_labels(cli, bridges, n_bridges);
}
