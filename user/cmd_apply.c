// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * apply: converges the host to the configuration (config.c), and watch
 * --config does the same at start and on SIGHUP.
 *
 * Ownership: apply owns only what a configuration declared, marked so in
 * the pins (DH_BRIDGE_CONFIG, DH_PORT_CONFIG, DH_ALLOW_CONFIG over a
 * source's kind, DH_GW_CONFIG). What the CLI made by hand, what watch
 * --docker-labels made, is never changed or removed, with one exception:
 * a bridge, mapping or source the configuration declares that exists
 * already, made by hand, is adopted (said so): from then on it is the
 * configuration's, converged to it, and removed when no longer declared.
 * A mapping the configuration no longer declares that still has sources
 * of another owner is released (its configuration sources go, it stays).
 *
 * All or nothing: the whole configuration is parsed, its bridges looked
 * up and its Docker sources resolved before anything changes; a bad line
 * changes nothing. Changes run in an order that never opens more than
 * declared: bridges first (each attach is itself all or nothing), then
 * mappings (a source before the list flag that restricts to it, removals
 * last), then detaches. If a change fails, the additions and updates made
 * before it are undone and new attaches detached; removals done stay done
 * (they only close).
 */
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

enum action {
	A_ATTACH, A_ADOPT, A_CONVERT, A_ADD_GATEWAY, A_REMOVE_GATEWAY,
	A_ADD_SOURCE, A_ADD_PORT, A_ADOPT_PORT, A_UPDATE_PORT, A_REMOVE_SOURCE, A_REMOVE_PORT, A_RELEASE_PORT,
	A_DETACH,
};

static const char *const action_names[] = {
	[A_ATTACH] = "attach", [A_ADOPT] = "adopt", [A_CONVERT] = "convert",
	[A_ADD_GATEWAY] = "add_gateway", [A_REMOVE_GATEWAY] = "remove_gateway",
	[A_ADD_SOURCE] = "add_source", [A_ADD_PORT] = "add_port", [A_ADOPT_PORT] = "adopt_port",
	[A_UPDATE_PORT] = "update_port", [A_REMOVE_SOURCE] = "remove_source", [A_REMOVE_PORT] = "remove_port",
	[A_RELEASE_PORT] = "release_port", [A_DETACH] = "detach",
};

/* A bridge the configuration wants attached. */
struct want {
	char name[DH_IFNAMSIZ];
	__u32 ifindex;
	const struct dh_config_bridge *decl;
	bool attached;           /* in the bridges map now */
	struct dh_bridge rec;    /* its record, if attached */
	__u32 mode;              /* the mode it will run in */
	bool run_attach;         /* one dh_attach does attach, adopt, convert, gateways */
};

struct change {
	enum action action;
	int want;                     /* bridge changes: index in wants */
	char bridge[DH_IFNAMSIZ];     /* its name; "" for all bridges (a mapping) */
	struct dh_ip gateway;
	struct dh_port_key key;       /* mapping and source changes */
	struct dh_port_target target; /* the mapping's new value */
	const struct dh_allow_arg *source;  /* add_source: resolved */
	char source_name[DH_ALLOW_NAME_LEN];
	char at[300];                 /* FILE:LINE of the declaration, or "" */
	char text[400];
};

struct plan {
	const struct dh_config *cfg;
	const struct dh_apply_opts *opts;
	struct want *wants;
	int n_wants;
	struct change *changes;
	int n_changes, max_changes;
	struct dh_allow_arg **from;  /* per config port: its resolved --from */
	bool *port_skipped;          /* per config port: not applied (its bridge is not there) */
	int n_attached;              /* bridges in the map before apply */
};

/* Phase two's changes, under the pin dir's lock (see run_plan). */
static bool phase_two(enum action action)
{
	return action == A_REMOVE_GATEWAY || (action >= A_ADD_SOURCE && action <= A_RELEASE_PORT);
}

static struct change *add_change(struct plan *p, enum action action, const char *at)
{
	struct change *c;

	if (p->n_changes == p->max_changes) {
		int max = p->max_changes ? 2 * p->max_changes : 32;
		struct change *grown = realloc(p->changes, max * sizeof(*grown));

		if (!grown)
			return NULL;
		p->changes = grown;
		p->max_changes = max;
	}
	c = &p->changes[p->n_changes++];
	memset(c, 0, sizeof(*c));
	c->action = action;
	c->want = -1;
	snprintf(c->at, sizeof(c->at), "%s", at ? at : "");
	return c;
}

static const char *where(const struct plan *p, int file, int line, char *buf, size_t size)
{
	return dh_config_where(p->cfg, file, line, buf, size);
}

/* "8088/tcp on all bridges" or "on br0". */
static const char *port_text(const struct dh_port_key *key, const char *bridge, char *buf, size_t size)
{
	snprintf(buf, size, "%u/%s on %s", ntohs(key->port), dh_proto_name(key->proto),
		 bridge[0] ? bridge : "all bridges");
	return buf;
}

static bool same_target(const struct dh_port_target *a, const struct dh_port_target *b)
{
	return a->addr == b->addr && a->port == b->port && a->flags == b->flags &&
	       !memcmp(a->addr6, b->addr6, sizeof(a->addr6));
}

/* Every allow_sources record of the mapping @key. */
struct record {
	struct dh_allow_source_key key;
	struct dh_allow_source src;
};

static int read_records(const struct dh_state *st, const struct dh_port_key *port, struct record **out)
{
	struct dh_allow_source_key key, prev_key;
	struct record *recs = NULL, *grown;
	void *prev = NULL;
	int n = 0, max = 0;

	while (st && bpf_map_get_next_key(st->allow_sources_fd, prev, &key) == 0) {
		prev_key = key;
		prev = &prev_key;
		if (memcmp(&key.port, port, sizeof(*port)))
			continue;
		if (n == max) {
			grown = realloc(recs, (max = max ? 2 * max : 16) * sizeof(*recs));
			if (!grown)
				break;
			recs = grown;
		}
		recs[n].key = key;
		if (bpf_map_lookup_elem(st->allow_sources_fd, &key, &recs[n].src) == 0)
			n++;
	}
	*out = recs;
	return n;
}

/* The bridges to attach: bridge lines, and present bridges a match line fits. */
static int plan_wants(struct plan *p)
{
	static struct dh_netdev devs[DH_MAX_BRIDGES];
	const struct dh_config *cfg = p->cfg;
	struct dh_netdev dev;
	char at[300];
	int n_devs, i, err;

	p->wants = calloc(DH_MAX_BRIDGES, sizeof(*p->wants));
	if (!p->wants)
		return dh_runtime_error("apply: out of memory");
	for (i = 0; i < cfg->n_bridges; i++) {
		const struct dh_config_bridge *b = &cfg->bridges[i];
		struct want *w;

		if (b->is_match || (p->opts->only && strcmp(p->opts->only, b->name)))
			continue;
		where(p, b->file, b->line, at, sizeof(at));
		err = dh_netdev_lookup(b->name, &dev);
		if (err == -ENODEV && p->opts->missing_ok) {
			if (!p->opts->only)
				printf("%s%s: not there yet: attached when it appears (%s)\n", p->opts->prefix, b->name, at);
			continue;
		}
		if (err == -ENODEV)
			return dh_runtime_error("%s: bridge '%s': no such device", at, b->name);
		if (err)
			return dh_runtime_error("%s: bridge '%s': cannot query: %s", at, b->name, strerror(-err));
		if (!dev.is_bridge)
			return dh_runtime_error("%s: bridge '%s': not a bridge (kind '%s')", at, b->name,
						dev.kind[0] ? dev.kind : "none");
		if (p->n_wants == DH_MAX_BRIDGES)
			return dh_runtime_error("%s: more than %d bridges", at, DH_MAX_BRIDGES);
		w = &p->wants[p->n_wants++];
		snprintf(w->name, sizeof(w->name), "%.15s", b->name);  /* dh_ifname_valid: < 16 */
		w->ifindex = dev.ifindex;
		w->decl = b;
	}
	n_devs = dh_netdev_bridges(devs, DH_MAX_BRIDGES);
	if (n_devs < 0)
		return dh_runtime_error("apply: cannot list bridges: %s", strerror(-n_devs));
	for (i = 0; i < n_devs; i++) {
		const struct dh_config_bridge *b = dh_config_bridge(cfg, devs[i].name, false);
		struct want *w;

		if (!b || !b->is_match || (p->opts->only && strcmp(p->opts->only, devs[i].name)))
			continue;
		if (p->n_wants == DH_MAX_BRIDGES)
			return dh_runtime_error("apply: more than %d bridges", DH_MAX_BRIDGES);
		w = &p->wants[p->n_wants++];
		snprintf(w->name, sizeof(w->name), "%s", devs[i].name);
		w->ifindex = devs[i].ifindex;
		w->decl = b;
	}
	return 0;
}

static int find_want(const struct plan *p, const char *name)
{
	int i;

	for (i = 0; i < p->n_wants; i++)
		if (!strcmp(p->wants[i].name, name))
			return i;
	return -1;
}

/* Attach, adopt, convert and gateways of each wanted bridge. */
static int plan_bridges(struct plan *p, const struct dh_state *st)
{
	const char *lacks = dh_socket_mode_unsupported();
	char at[300];
	int i, j, k;

	for (i = 0; i < p->n_wants; i++) {
		struct want *w = &p->wants[i];
		const struct dh_config_bridge *b = w->decl;
		struct dh_gateway_entry have[DH_MAX_GATEWAYS];
		int n_have = 0;
		struct change *c;

		where(p, b->file, b->line, at, sizeof(at));
		if (b->mode_given && b->mode == DH_MODE_SOCKET && lacks)
			return dh_runtime_error("%s: %s: socket mode needs %s, which this kernel lacks: use --mode nat", at,
						w->name, lacks);
		w->attached = st && bpf_map_lookup_elem(st->bridges_fd, &w->ifindex, &w->rec) == 0 &&
			      !strncmp(w->rec.name, w->name, DH_IFNAMSIZ);
		w->mode = b->mode_given ? b->mode : w->attached ? w->rec.mode : lacks ? DH_MODE_NAT : DH_MODE_SOCKET;
		if (!w->attached) {
			if (!(c = add_change(p, A_ATTACH, at)))
				return -ENOMEM;
			snprintf(c->text, sizeof(c->text), "%s: attach (%s mode)", w->name, dh_mode_name(w->mode));
		} else if (!(w->rec.flags & DH_BRIDGE_CONFIG)) {
			if (!(c = add_change(p, A_ADOPT, at)))
				return -ENOMEM;
			snprintf(c->text, sizeof(c->text), "%s: adopt (attached by hand before)", w->name);
		}
		if (w->attached && w->rec.mode != w->mode) {
			if (!(c = add_change(p, A_CONVERT, at)))
				return -ENOMEM;
			snprintf(c->text, sizeof(c->text), "%s: convert to %s mode", w->name, dh_mode_name(w->mode));
		}
		if (w->attached)
			n_have = dh_gateways_of(st, w->ifindex, have, DH_MAX_GATEWAYS);
		for (j = 0; j < b->n_gateways; j++) {
			for (k = 0; k < n_have; k++)
				if (dh_ip_equal(&have[k].addr, &b->gateways[j]) && have[k].ifindex == w->ifindex &&
				    (have[k].origin & DH_GW_CONFIG))
					break;
			if (k < n_have)
				continue;
			if (!(c = add_change(p, A_ADD_GATEWAY, at)))
				return -ENOMEM;
			c->gateway = b->gateways[j];
			snprintf(c->text, sizeof(c->text), "%s: add gateway %s", w->name, dh_ip_str(&b->gateways[j]));
		}
		for (k = 0; k < n_have; k++) {
			if (have[k].ifindex != w->ifindex || !(have[k].origin & DH_GW_CONFIG))
				continue;
			for (j = 0; j < b->n_gateways && !dh_ip_equal(&have[k].addr, &b->gateways[j]); j++)
				;
			if (j < b->n_gateways)
				continue;
			if (!(c = add_change(p, A_REMOVE_GATEWAY, at)))
				return -ENOMEM;
			c->gateway = have[k].addr;
			snprintf(c->bridge, sizeof(c->bridge), "%s", w->name);
			snprintf(c->text, sizeof(c->text), "%s: remove gateway %s", w->name, dh_ip_str(&have[k].addr));
		}
		for (j = 0; j < p->n_changes; j++) {
			if (p->changes[j].want < 0 && p->changes[j].action <= A_ADD_GATEWAY &&
			    p->changes[j].action != A_REMOVE_GATEWAY) {
				p->changes[j].want = i;
				snprintf(p->changes[j].bridge, sizeof(p->changes[j].bridge), "%s", w->name);
				w->run_attach = true;
			}
		}
		for (j = 0; j < p->n_changes; j++)
			if (p->changes[j].action == A_REMOVE_GATEWAY && p->changes[j].want < 0)
				p->changes[j].want = i;
	}
	return 0;
}

/* A mode check of the configuration against the host: what the CLI's
 * port add refuses, for the bridges that will be attached. */
static int check_port(const struct plan *p, const struct dh_state *st, const struct dh_config_port *cp,
		      const struct want *w, const char *at)
{
	bool udp_remap = cp->spec.proto == IPPROTO_UDP && cp->target.port != htons(cp->spec.port);
	struct dh_bridge rec;
	__u32 key, next;
	void *prev = NULL;
	int i;

	if (w) {
		if (w->mode == DH_MODE_NAT && !cp->target.addr)
			return dh_runtime_error("%s: port %u/%s: %s is in NAT mode, which cannot redirect IPv6 (its --to maps IPv6 only)",
						at, cp->spec.port, dh_proto_name(cp->spec.proto), w->name);
		if (w->mode == DH_MODE_SOCKET && udp_remap)
			return dh_runtime_error("%s: port %u/udp: socket mode cannot answer a UDP port from another port (%s is in socket mode)",
						at, cp->spec.port, w->name);
		return 0;
	}
	if (!udp_remap)
		return 0;
	for (i = 0; i < p->n_wants; i++)
		if (p->wants[i].mode == DH_MODE_SOCKET)
			return dh_runtime_error("%s: port %u/udp: socket mode cannot answer a UDP port from another port (%s is in socket mode)",
						at, cp->spec.port, p->wants[i].name);
	while (st && bpf_map_get_next_key(st->bridges_fd, prev, &next) == 0) {
		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(st->bridges_fd, &key, &rec) == 0 && rec.mode == DH_MODE_SOCKET &&
		    find_want(p, rec.name) < 0 && !(rec.flags & DH_BRIDGE_CONFIG))
			return dh_runtime_error("%s: port %u/udp: socket mode cannot answer a UDP port from another port (%s is in socket mode)",
						at, cp->spec.port, rec.name);
	}
	return 0;
}

/* Sources, then the mapping, of one declared port. */
static int plan_port(struct plan *p, const struct dh_state *st, int index)
{
	const struct dh_config_port *cp = &p->cfg->ports[index];
	struct dh_port_key key = { .port = htons(cp->spec.port), .proto = cp->spec.proto };
	struct dh_port_target have, want = cp->target;
	struct record *recs = NULL;
	struct change *c;
	char at[300], what[64], to[80];
	bool existed;
	int n_recs, n_other = 0, i, j, w = -1, err;

	where(p, cp->file, cp->line, at, sizeof(at));
	if (cp->bridge[0]) {
		w = find_want(p, cp->bridge);
		if (w < 0 && !p->opts->missing_ok && !p->opts->only)
			return dh_runtime_error("%s: port %u/%s --bridge %s: no such bridge (its match line fits no bridge there is)",
						at, cp->spec.port, dh_proto_name(cp->spec.proto), cp->bridge);
		if (w < 0) {
			p->port_skipped[index] = true;  /* watch: its bridge is not there */
			return 0;
		}
		key.ifindex = p->wants[w].ifindex;
	} else if (p->opts->only && p->n_attached) {
		p->port_skipped[index] = true;  /* watch: a new bridge takes the global entries as they are */
		return 0;
	}
	err = check_port(p, st, cp, w >= 0 ? &p->wants[w] : NULL, at);
	if (err)
		return err;
	port_text(&key, cp->bridge, what, sizeof(what));
	existed = st && bpf_map_lookup_elem(st->ports_fd, &key, &have) == 0;
	n_recs = read_records(existed ? st : NULL, &key, &recs);
	for (i = 0; i < n_recs; i++) {
		for (j = 0; j < cp->n_from && strcmp(cp->from[j], recs[i].key.name); j++)
			;
		if (j == cp->n_from && !(recs[i].src.kind & DH_ALLOW_CONFIG))
			n_other++;
	}
	/* Sources first: the list holds them before its flag restricts to it. */
	for (j = 0; j < cp->n_from; j++) {
		const struct dh_allow_arg *arg = &p->from[index][j];

		for (i = 0; i < n_recs && strcmp(recs[i].key.name, cp->from[j]); i++)
			;
		if (i < n_recs && (recs[i].src.kind & DH_ALLOW_CONFIG) &&
		    (recs[i].src.kind & DH_ALLOW_KIND_MASK) == arg->src.kind && dh_allow_same_prefixes(&recs[i].src, &arg->src))
			continue;
		if (!(c = add_change(p, A_ADD_SOURCE, at)))
			goto nomem;
		c->key = key;
		c->source = arg;
		snprintf(c->bridge, sizeof(c->bridge), "%s", cp->bridge);
		snprintf(c->source_name, sizeof(c->source_name), "%s", cp->from[j]);
		snprintf(c->text, sizeof(c->text), "%s: %s source %s%s", what, i < n_recs ? "update" : "add", cp->from[j],
			 i < n_recs && !(recs[i].src.kind & DH_ALLOW_CONFIG) ? " (adopted: it was added by hand)" : "");
	}
	want.flags = DH_PORT_CONFIG | (cp->n_from || n_other ? DH_PORT_ALLOW_LIST : 0);
	if (!existed || !same_target(&have, &want)) {
		enum action action = !existed ? A_ADD_PORT : !(have.flags & DH_PORT_CONFIG) ? A_ADOPT_PORT : A_UPDATE_PORT;

		if (!(c = add_change(p, action, at)))
			goto nomem;
		c->key = key;
		c->target = want;
		snprintf(c->bridge, sizeof(c->bridge), "%s", cp->bridge);
		snprintf(c->text, sizeof(c->text), "%s: %s -> %s%s", what,
			 action == A_ADD_PORT ? "add" : action == A_ADOPT_PORT ? "adopt (mapped by hand before)" : "update",
			 dh_target_str(&want, to, sizeof(to)),
			 want.flags & DH_PORT_ALLOW_LIST ? "" : " (open to all)");
	}
	for (i = 0; i < n_recs; i++) {
		if (!(recs[i].src.kind & DH_ALLOW_CONFIG))
			continue;
		for (j = 0; j < cp->n_from && strcmp(cp->from[j], recs[i].key.name); j++)
			;
		if (j < cp->n_from)
			continue;
		if (!(c = add_change(p, A_REMOVE_SOURCE, at)))
			goto nomem;
		c->key = key;
		snprintf(c->bridge, sizeof(c->bridge), "%s", cp->bridge);
		snprintf(c->source_name, sizeof(c->source_name), "%s", recs[i].key.name);
		snprintf(c->text, sizeof(c->text), "%s: remove source %s", what, recs[i].key.name);
	}
	free(recs);
	return 0;
nomem:
	free(recs);
	return -ENOMEM;
}

static bool declared_key(const struct plan *p, const struct dh_port_key *key)
{
	int i, w;

	for (i = 0; i < p->cfg->n_ports; i++) {
		const struct dh_config_port *cp = &p->cfg->ports[i];

		if (htons(cp->spec.port) != key->port || cp->spec.proto != key->proto)
			continue;
		if (!cp->bridge[0] ? key->ifindex == 0 :
				     (w = find_want(p, cp->bridge)) >= 0 && p->wants[w].ifindex == key->ifindex)
			return true;
		/* A bridge not there (watch): its entry is not the plan's to remove. */
		if (cp->bridge[0] && find_want(p, cp->bridge) < 0)
			return true;
	}
	return false;
}

/* The configuration's mappings no longer declared, and its bridges. */
static int plan_removals(struct plan *p, const struct dh_state *st)
{
	struct dh_port_key key, prev_key, *keys = NULL;
	struct dh_port_target target;
	struct dh_bridge rec;
	void *prev = NULL;
	__u32 ifindex, next;
	int n = 0, max = 0, i, j;
	struct change *c;

	if (!st || p->opts->only)
		return 0;
	while (bpf_map_get_next_key(st->ports_fd, prev, &key) == 0) {
		prev_key = key;
		prev = &prev_key;
		if (bpf_map_lookup_elem(st->ports_fd, &key, &target) || !(target.flags & DH_PORT_CONFIG))
			continue;
		if (declared_key(p, &key))
			continue;
		if (key.ifindex && bpf_map_lookup_elem(st->bridges_fd, &key.ifindex, &rec) == 0 &&
		    (rec.flags & DH_BRIDGE_CONFIG) && find_want(p, rec.name) < 0)
			continue;  /* goes with its bridge's detach */
		if (n == max) {
			struct dh_port_key *grown = realloc(keys, (max = max ? 2 * max : 32) * sizeof(*keys));

			if (!grown) {
				free(keys);
				return -ENOMEM;
			}
			keys = grown;
		}
		keys[n++] = key;
	}
	for (i = 0; i < n; i++) {
		struct record *recs;
		char what[64], name[DH_IFNAMSIZ] = "";
		int n_recs = read_records(st, &keys[i], &recs), n_other = 0;

		if (keys[i].ifindex && bpf_map_lookup_elem(st->bridges_fd, &keys[i].ifindex, &rec) == 0)
			snprintf(name, sizeof(name), "%s", rec.name);
		else if (keys[i].ifindex)
			snprintf(name, sizeof(name), "if%u", keys[i].ifindex);
		port_text(&keys[i], name, what, sizeof(what));
		for (j = 0; j < n_recs; j++)
			n_other += !(recs[j].src.kind & DH_ALLOW_CONFIG);
		c = add_change(p, n_other ? A_RELEASE_PORT : A_REMOVE_PORT, NULL);
		if (c) {
			c->key = keys[i];
			snprintf(c->bridge, sizeof(c->bridge), "%s", name);
			snprintf(c->text, sizeof(c->text), "%s: %s", what,
				 n_other ? "release (no longer declared; kept for its sources not from the configuration)" :
					   "remove (no longer declared)");
		}
		free(recs);
		if (!c) {
			free(keys);
			return -ENOMEM;
		}
	}
	free(keys);
	prev = NULL;
	while (bpf_map_get_next_key(st->bridges_fd, prev, &next) == 0) {
		ifindex = next;
		prev = &ifindex;
		if (bpf_map_lookup_elem(st->bridges_fd, &ifindex, &rec) || !(rec.flags & DH_BRIDGE_CONFIG))
			continue;
		rec.name[DH_IFNAMSIZ - 1] = '\0';
		if (find_want(p, rec.name) >= 0)
			continue;
		/* watch: a declared bridge not there yet keeps what it had. */
		if (p->opts->missing_ok && dh_config_bridge(p->cfg, rec.name, false))
			continue;
		if (!(c = add_change(p, A_DETACH, NULL)))
			return -ENOMEM;
		snprintf(c->bridge, sizeof(c->bridge), "%s", rec.name);
		snprintf(c->text, sizeof(c->text), "%s: detach (no longer declared)", rec.name);
	}
	return 0;
}

/* Docker sources resolved, and every other --from parsed, before any change. */
static int resolve_sources(struct plan *p)
{
	const struct dh_config *cfg = p->cfg;
	char at[300];
	int i, j, err;

	p->from = calloc(cfg->n_ports + 1, sizeof(*p->from));
	p->port_skipped = calloc(cfg->n_ports + 1, sizeof(*p->port_skipped));
	if (!p->from || !p->port_skipped)
		return dh_runtime_error("apply: out of memory");
	for (i = 0; i < cfg->n_ports; i++) {
		const struct dh_config_port *cp = &cfg->ports[i];

		if (!cp->n_from)
			continue;
		if (p->opts->only && cp->bridge[0] && strcmp(cp->bridge, p->opts->only))
			continue;
		p->from[i] = calloc(cp->n_from, sizeof(**p->from));
		if (!p->from[i])
			return dh_runtime_error("apply: out of memory");
		where(p, cp->file, cp->line, at, sizeof(at));
		for (j = 0; j < cp->n_from; j++) {
			struct dh_allow_arg *arg = &p->from[i][j];
			char why[256];

			/* watch, at boot say: a container not running yet, or
			 * Docker not answering yet, must not keep every other
			 * line out. Its source goes in with no address (closed
			 * to it), and watch resolves it again at Docker's
			 * next event, as any container source. */
			err = dh_allow_parse(at, cp->from[j], !p->opts->missing_ok, arg);
			if (err)
				return err;
			if (!p->opts->missing_ok || arg->src.kind)
				continue;
			err = dh_docker_allow_source(cp->from[j], &arg->src, why, sizeof(why));
			if (err || !arg->src.count) {
				printf("%s%s: --from '%s': %s: closed to it until Docker says more\n", p->opts->prefix, at,
				       cp->from[j], err ? why : "no address now");
				if (err)
					memset(&arg->src, 0, sizeof(arg->src));
				if (!arg->src.kind)
					arg->src.kind = DH_ALLOW_CONTAINER;
				arg->src.count = 0;
			}
			arg->src.resolved_at = time(NULL);
		}
	}
	return 0;
}

static void plan_free(struct plan *p)
{
	int i;

	for (i = 0; p->from && i < p->cfg->n_ports; i++)
		free(p->from[i]);
	free(p->from);
	free(p->port_skipped);
	free(p->wants);
	free(p->changes);
}

static struct json_object *change_json(const struct change *c)
{
	struct json_object *obj = json_object_new_object();
	char to[80];

	json_object_object_add(obj, "action", json_object_new_string(action_names[c->action]));
	if (c->action <= A_REMOVE_GATEWAY || c->action == A_DETACH) {
		json_object_object_add(obj, "bridge", json_object_new_string(c->bridge));
	} else {
		json_object_object_add(obj, "bridge", json_object_new_string(c->bridge[0] ? c->bridge : "*"));
		json_object_object_add(obj, "port", json_object_new_int(ntohs(c->key.port)));
		json_object_object_add(obj, "proto", json_object_new_string(dh_proto_name(c->key.proto)));
	}
	if (c->action == A_ADD_GATEWAY || c->action == A_REMOVE_GATEWAY)
		json_object_object_add(obj, "gateway", json_object_new_string(dh_ip_str(&c->gateway)));
	if (c->action == A_ADD_SOURCE || c->action == A_REMOVE_SOURCE)
		json_object_object_add(obj, "source", json_object_new_string(c->source_name));
	if (c->action == A_ADD_PORT || c->action == A_ADOPT_PORT || c->action == A_UPDATE_PORT) {
		json_object_object_add(obj, "to", json_object_new_string(dh_target_str(&c->target, to, sizeof(to))));
		json_object_object_add(obj, "open", json_object_new_boolean(!(c->target.flags & DH_PORT_ALLOW_LIST)));
	}
	json_object_object_add(obj, "declared_at", c->at[0] ? json_object_new_string(c->at) : NULL);
	json_object_object_add(obj, "text", json_object_new_string(c->text));
	return obj;
}

/* Test only: DH_TEST_APPLY_FAIL_AT=N fails the Nth step, to see the undo. */
static int test_failure(void)
{
	static int step;
	const char *env = getenv("DH_TEST_APPLY_FAIL_AT");

	return env && ++step == atoi(env) ? -EIO : 0;
}

/* What phase two changed, to undo if a later step fails. */
struct undo {
	enum { U_PORT, U_SOURCE, U_GATEWAY, U_FLAGS } what;
	struct dh_port_key key;
	bool existed;
	struct dh_port_target old_target;
	struct dh_allow_source_key skey;
	struct dh_allow_source old_source;
	__u32 ifindex;
	struct dh_ip gateway;
	struct dh_gateway old_gateway;
};

static int write_port(const struct dh_state *st, const struct dh_port_key *key, const struct dh_port_target *target,
		      bool existed)
{
	int err;

	if (!existed) {
		err = dh_state_zero_percpu(st->port_stats_fd, key, sizeof(struct dh_port_stats), BPF_ANY);
		if (err)
			return err;
	}
	if (bpf_map_update_elem(st->ports_fd, key, target, BPF_ANY)) {
		err = -errno;
		if (!existed)
			bpf_map_delete_elem(st->port_stats_fd, key);
		return err;
	}
	return 0;
}

static void undo_all(const struct dh_state *st, struct undo *log, int n)
{
	struct dh_allow_arg arg;

	while (n--) {
		struct undo *u = &log[n];

		switch (u->what) {
		case U_PORT:
			if (u->existed) {
				bpf_map_update_elem(st->ports_fd, &u->key, &u->old_target, BPF_ANY);
			} else {
				bpf_map_delete_elem(st->ports_fd, &u->key);
				bpf_map_delete_elem(st->port_stats_fd, &u->key);
			}
			break;
		case U_SOURCE:
			if (u->existed) {
				memset(&arg, 0, sizeof(arg));
				memcpy(arg.name, u->skey.name, sizeof(arg.name));
				arg.src = u->old_source;
				dh_allow_add(st, &u->key, &arg);
			} else {
				dh_allow_del(st, &u->key, u->skey.name);
			}
			break;
		case U_GATEWAY:
			dh_gateway_set(st, u->ifindex, &u->gateway, &u->old_gateway);
			break;
		case U_FLAGS:
			break;
		}
	}
}

/* Phase two, under the pin dir's lock: mappings and sources, removals of
 * gateways; @log records what to undo. Returns 0 or -errno with @failed. */
static int run_ports(const struct plan *p, const struct dh_state *st, struct undo *log, int *n_log, int *failed,
		     const char *prefix, bool json)
{
	int i, err = 0;

	for (i = 0; i < p->n_changes; i++) {
		const struct change *c = &p->changes[i];
		struct undo *u = &log[*n_log];
		struct dh_allow_arg arg;
		struct dh_gateway gw;
		__u32 ifindex;

		if (c->action == A_REMOVE_GATEWAY) {
			ifindex = p->wants[c->want].ifindex;
			if (dh_gateway_get(st, ifindex, &c->gateway, &gw))
				continue;
			*u = (struct undo){ .what = U_GATEWAY, .ifindex = ifindex, .gateway = c->gateway, .old_gateway = gw };
			gw.origin &= ~DH_GW_CONFIG;
			err = test_failure();
			if (!err && gw.origin)
				err = dh_gateway_set(st, ifindex, &c->gateway, &gw);
			else if (!err)
				dh_gateway_del(st, ifindex, &c->gateway);
		} else if (c->action == A_ADD_SOURCE) {
			*u = (struct undo){ .what = U_SOURCE, .key = c->key };
			u->skey.port = c->key;
			snprintf(u->skey.name, sizeof(u->skey.name), "%s", c->source_name);
			u->existed = bpf_map_lookup_elem(st->allow_sources_fd, &u->skey, &u->old_source) == 0;
			arg = *c->source;
			arg.src.kind |= DH_ALLOW_CONFIG;
			err = test_failure();
			if (!err)
				err = dh_allow_add(st, &c->key, &arg);
		} else if (c->action == A_ADD_PORT || c->action == A_ADOPT_PORT || c->action == A_UPDATE_PORT) {
			*u = (struct undo){ .what = U_PORT, .key = c->key };
			u->existed = bpf_map_lookup_elem(st->ports_fd, &c->key, &u->old_target) == 0;
			err = test_failure();
			if (!err)
				err = write_port(st, &c->key, &c->target, u->existed);
		} else if (c->action == A_REMOVE_SOURCE) {
			err = test_failure();
			if (!err)
				dh_allow_del(st, &c->key, c->source_name);
			u = NULL;
		} else if (c->action == A_REMOVE_PORT || c->action == A_RELEASE_PORT) {
			struct dh_port_target target;
			struct record *recs;
			int n_recs, j;

			err = test_failure();
			u = NULL;
			if (err || bpf_map_lookup_elem(st->ports_fd, &c->key, &target))
				goto done;
			if (c->action == A_REMOVE_PORT) {
				bpf_map_delete_elem(st->ports_fd, &c->key);
				bpf_map_delete_elem(st->port_stats_fd, &c->key);
				dh_allow_forget(st, &c->key);
				goto done;
			}
			n_recs = read_records(st, &c->key, &recs);
			for (j = 0; j < n_recs; j++)
				if (recs[j].src.kind & DH_ALLOW_CONFIG)
					dh_allow_del(st, &c->key, recs[j].key.name);
			free(recs);
			target.flags &= ~DH_PORT_CONFIG;
			if (bpf_map_update_elem(st->ports_fd, &c->key, &target, BPF_EXIST))
				err = -errno;
		} else {
			continue;  /* bridges: phases one and three */
		}
done:
		if (err) {
			*failed = i;
			return err;
		}
		if (u)
			(*n_log)++;
		if (!json)
			printf("%s%s\n", prefix, c->text);
	}
	return 0;
}

static int run_plan(const struct dh_cli *cli, struct plan *p, struct json_object *done)
{
	const char *prefix = p->opts->prefix;
	struct undo *log = NULL;
	struct dh_state st;
	bool *attached_now = calloc(p->n_wants + 1, sizeof(*attached_now));
	int i, j, err = 0, n_log = 0, failed = -1, opened = -1, n_detached = 0;

	log = calloc(p->n_changes + 1, sizeof(*log));
	if (!log || !attached_now) {
		err = dh_runtime_error("apply: out of memory");
		goto out;
	}
	/* One: bridges, each one attach (itself all or nothing). */
	for (i = 0; i < p->n_wants; i++) {
		struct want *w = &p->wants[i];
		const struct dh_config_bridge *b = w->decl;
		struct dh_attach_opts opts = {
			.mode_given = b->mode_given, .mode = b->mode, .config = true,
		};
		const char *result = NULL;

		if (!w->run_attach)
			continue;
		snprintf(opts.bridge, sizeof(opts.bridge), "%s", w->name);
		memcpy(opts.gateways, b->gateways, sizeof(b->gateways));
		opts.n_gateways = b->n_gateways;
		opts.result = &result;
		fflush(stdout);
		err = test_failure();
		if (err) {
			dh_runtime_error("%s: attach failed: %s (test)", w->name, strerror(-err));
			err = DH_EXIT_RUNTIME;
		} else {
			err = dh_attach(cli, &opts);
		}
		for (j = 0; j < p->n_changes; j++) {
			if (p->changes[j].want != i || p->changes[j].action == A_REMOVE_GATEWAY)
				continue;
			if (err) {
				failed = j;
				break;
			}
			if (done)
				json_object_array_add(done, change_json(&p->changes[j]));
			else
				printf("%s%s\n", prefix, p->changes[j].text);
		}
		if (err)
			goto undo;
		attached_now[i] = !w->attached;
	}
	/* Two: mappings and sources, under one lock. */
	for (i = 0; i < p->n_changes && opened < 0; i++) {
		if (!phase_two(p->changes[i].action))
			continue;
		opened = dh_state_open(cli, &st, DH_OPEN_EXISTING);
		if (opened) {
			err = opened == -ENOENT ? dh_runtime_error("apply: no bridge attached to map ports on") : opened;
			failed = i;
			goto undo;
		}
	}
	if (opened == 0) {
		fflush(stdout);
		err = run_ports(p, &st, log, &n_log, &failed, prefix, cli->json);
		if (err) {
			dh_runtime_error("%s%s: %s failed: %s", prefix, p->changes[failed].at[0] ? p->changes[failed].at : "apply",
					 p->changes[failed].text, strerror(-err));
			undo_all(&st, log, n_log);
			dh_state_close(&st);
			err = DH_EXIT_RUNTIME;
			goto undo;
		}
		if (done)
			for (i = 0; i < p->n_changes; i++)
				if (phase_two(p->changes[i].action))
					json_object_array_add(done, change_json(&p->changes[i]));
		dh_state_close(&st);
	}
	/* Three: bridges no longer declared. A failure here undoes nothing:
	 * what went before stands, and a detach only closes. */
	for (i = 0; i < p->n_changes; i++) {
		struct change *c = &p->changes[i];

		if (c->action != A_DETACH)
			continue;
		fflush(stdout);
		err = test_failure();
		if (!err && dh_detach_quiet(cli, c->bridge, true))
			err = -EIO;
		if (err) {
			err = dh_runtime_error("%s%s: failed (what came before it is done)", prefix, c->text);
			goto out;
		}
		if (done)
			json_object_array_add(done, change_json(c));
		else
			printf("%s%s\n", prefix, c->text);
	}
	goto out;

undo:
	/* Phase one's new attaches go; an adoption or conversion stays
	 * (the bridge keeps its guard either way). */
	for (i = p->n_wants - 1; i >= 0; i--) {
		if (attached_now[i]) {
			dh_detach_quiet(cli, p->wants[i].name, true);
			n_detached++;
		}
	}
	dh_runtime_error("%sapply failed%s%s: undid what it had added (%d bridge attach(es) and %d map change(s)); removals already done stay done",
			 prefix, failed >= 0 ? " at: " : "", failed >= 0 ? p->changes[failed].text : "",
			 n_detached, n_log);
	if (!err)
		err = DH_EXIT_RUNTIME;
out:
	free(log);
	free(attached_now);
	return err;
}

int dh_config_apply(const struct dh_cli *cli, const struct dh_config *cfg, const struct dh_apply_opts *opts)
{
	struct plan p = { .cfg = cfg, .opts = opts };
	struct json_object *done = NULL;
	struct dh_state st, *stp = NULL;
	struct dh_bridge rec;
	__u32 key, next;
	void *prev = NULL;
	int err, i;

	err = resolve_sources(&p);
	if (!err)
		err = plan_wants(&p);
	if (err)
		goto out;
	err = dh_state_open(cli, &st, DH_OPEN_EXISTING);
	if (err && err != -ENOENT)
		goto out;
	if (!err) {
		stp = &st;
		while (bpf_map_get_next_key(st.bridges_fd, prev, &next) == 0) {
			key = next;
			prev = &key;
			p.n_attached += bpf_map_lookup_elem(st.bridges_fd, &key, &rec) == 0;
		}
	}
	err = plan_bridges(&p, stp);
	for (i = 0; !err && i < cfg->n_ports; i++)
		err = plan_port(&p, stp, i);
	if (!err)
		err = plan_removals(&p, stp);
	if (stp)
		dh_state_close(stp);
	if (err == -ENOMEM)
		err = dh_runtime_error("apply: out of memory");
	if (err)
		goto out;
	/* A global mapping needs a pin set: some bridge attached at the end. */
	if (!p.n_wants && !p.n_attached) {
		for (i = 0; i < p.n_changes; i++) {
			if (p.changes[i].action == A_ADD_PORT || p.changes[i].action == A_ADD_SOURCE) {
				if (opts->missing_ok) {
					p.changes[i--] = p.changes[--p.n_changes];
					continue;
				}
				err = dh_runtime_error("%s: %s: no bridge is declared or attached to map it on",
						       p.changes[i].at, p.changes[i].text);
				goto out;
			}
		}
	}

	if (cli->json)
		done = json_object_new_array();
	if (opts->dry_run) {
		for (i = 0; i < p.n_changes; i++) {
			if (done)
				json_object_array_add(done, change_json(&p.changes[i]));
			else
				printf("%s%s\n", opts->prefix, p.changes[i].text);
		}
	} else {
		err = run_plan(cli, &p, done);
	}
	if (done) {
		struct json_object *obj = json_object_new_object();

		json_object_object_add(obj, "dry_run", json_object_new_boolean(opts->dry_run));
		json_object_object_add(obj, "ok", json_object_new_boolean(!err));
		json_object_object_add(obj, "changes", done);
		dh_print_json(obj);
	} else if (!opts->only && !err) {
		if (!p.n_changes)
			printf("%s%s: nothing to change\n", opts->prefix, opts->prefix[0] ? "config" : "apply");
		else if (opts->dry_run)
			printf("%sapply: dry run: %d change(s) to make, none made\n", opts->prefix, p.n_changes);
		else
			printf("%s%s: %d change(s) made\n", opts->prefix, opts->prefix[0] ? "config" : "apply", p.n_changes);
	}
	fflush(stdout);
out:
	plan_free(&p);
	return err;
}

int dh_cmd_apply(const struct dh_cli *cli, int argc, char **argv)
{
	static const struct option options[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{}
	};
	struct dh_apply_opts opts = { .prefix = "" };
	const char *path = DH_CONFIG_DEFAULT;
	struct dh_config cfg;
	char why[512];
	int opt, err;

	while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
		switch (opt) {
		case 'n':
			opts.dry_run = true;
			break;
		default:
			return dh_usage_error("apply: unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc - 1)
		return dh_usage_error("apply: expected at most one FILE, got '%s'", argv[optind + 1]);
	if (optind == argc - 1)
		path = argv[optind];
	/* A configuration with one bad line is bad input: exit 2, nothing changed. */
	if (dh_config_load(path, &cfg, why, sizeof(why)))
		return dh_usage_error("%s", why);
	err = dh_require_root();
	if (!err)
		err = dh_config_apply(cli, &cfg, &opts);
	dh_config_free(&cfg);
	return err;
}
