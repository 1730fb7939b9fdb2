// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Docker's answers and daemon.json, parsed from a buffer: no I/O here, so
 * the fuzz targets (tests/fuzz) call exactly what the CLI runs.
 *
 * Both are outside input. Any member may be missing, null or of another
 * type ("Driver": null, "Options": [], "Id": 42): each access checks the
 * type and treats a wrong one as absent, never hands NULL to a string
 * function, and never truncates a name silently.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

#define DOCKER_BRIDGE_OPTION "com.docker.network.bridge.name"
#define MAX_JSON_TEXT        (1 << 20)

/* Parses @len bytes (no NUL needed) as one JSON value, or NULL. */
static struct json_object *parse_json(const char *text, size_t len)
{
	struct json_tokener *tok;
	struct json_object *obj;

	if (len > MAX_JSON_TEXT)
		return NULL;
	tok = json_tokener_new();
	if (!tok)
		return NULL;
	obj = json_tokener_parse_ex(tok, text, (int)len);
	/* A bare number at the very end is complete only once the tokener
	 * sees its end: feed the NUL a C string would have had. */
	if (!obj && json_tokener_get_error(tok) == json_tokener_continue)
		obj = json_tokener_parse_ex(tok, "", 1);
	json_tokener_free(tok);
	return obj;
}

/* @v's text if it is a string without an embedded NUL ("br0\u0000x" must
 * not become "br0"), else NULL. */
static const char *string_value(struct json_object *v)
{
	const char *s;

	if (!json_object_is_type(v, json_type_string))
		return NULL;
	s = json_object_get_string(v);
	return s && strlen(s) == (size_t)json_object_get_string_len(v) ? s : NULL;
}

/* @obj's member @key if @obj is an object and the member has @type. */
static struct json_object *member(struct json_object *obj, const char *key, enum json_type type)
{
	struct json_object *v;

	if (!json_object_is_type(obj, json_type_object) || !json_object_object_get_ex(obj, key, &v) ||
	    !json_object_is_type(v, type))
		return NULL;
	return v;
}

static const char *string_member(struct json_object *obj, const char *key)
{
	return string_value(member(obj, key, json_type_string));
}

/* @s cut to 40 bytes, control bytes as '?': errors stay one line. */
static const char *printable(const char *s, char buf[41])
{
	size_t i;

	for (i = 0; s[i] && i < 40; i++)
		buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
	buf[i] = '\0';
	return buf;
}

int dh_docker_parse_network(long status, const char *body, size_t len, char bridge[DH_IFNAMSIZ],
			    char *why, size_t why_len)
{
	struct json_object *net = parse_json(body, len);
	const char *driver, *name, *id, *msg;
	char derived[DH_IFNAMSIZ + 16], shown[41];
	int err = 0;

	if (status != 200 || !net) {
		msg = string_member(net, "message");
		snprintf(why, why_len, "Docker answered %ld%s%s", status, msg ? ": " : "",
			 msg ? printable(msg, shown) : "");
		json_object_put(net);
		return status == 404 ? -ENOENT : -EHOSTUNREACH;
	}
	driver = string_member(net, "Driver");
	name = string_member(member(net, "Options", json_type_object), DOCKER_BRIDGE_OPTION);
	id = string_member(net, "Id");
	if (!json_object_is_type(net, json_type_object)) {
		snprintf(why, why_len, "Docker's answer is not a JSON object");
		err = -EINVAL;
	} else if (!driver) {
		snprintf(why, why_len, "Docker's answer has no \"Driver\" string");
		err = -EINVAL;
	} else if (strcmp(driver, "bridge")) {
		snprintf(why, why_len, "a '%s' network, not a bridge network", printable(driver, shown));
		err = -EINVAL;
	} else if (name && *name) {
		/* An empty option means Docker's default name, as in dockerd. */
		snprintf(derived, sizeof(derived), "%s", name);
	} else if (id && strlen(id) >= 12) {
		/* Docker's own rule for user-defined networks. */
		snprintf(derived, sizeof(derived), "br-%.12s", id);
	} else {
		snprintf(why, why_len, "Docker's answer has no bridge name or id");
		err = -EINVAL;
	}
	if (!err && (strlen(derived) >= DH_IFNAMSIZ || !dh_ifname_valid(derived))) {
		snprintf(why, why_len, "Docker names its bridge '%s', not a valid interface name",
			 printable(name && *name ? name : derived, shown));
		err = -EINVAL;
	}
	if (!err)
		memcpy(bridge, derived, strlen(derived) + 1);  /* fits: checked above */
	json_object_put(net);
	return err;
}

/* One host-gateway address, IPv4 or IPv6; anything else is a
 * configuration error, noted in @why, as is an address that cannot be a
 * gateway (Docker would hand containers ::1 or a link-local one as is). */
static void take_gateway(struct json_object *v, const char *key, struct dh_ip *addrs, int max, int *n,
			 char *why, size_t why_len)
{
	const char *text = string_value(v), *unusable;
	char shown[41];
	struct dh_ip ip;

	if (text && dh_parse_ip(text, &ip)) {
		unusable = dh_gateway_unusable(&ip);
		if (unusable && !why[0])
			snprintf(why, why_len, "\"%s\" has '%s': %s: ignored", key, printable(text, shown),
				 unusable);
		if (!unusable && *n < max)
			addrs[(*n)++] = ip;
		return;  /* taken, unusable, or more than @max */
	}
	if (!why[0])
		snprintf(why, why_len, "\"%s\" has %s%s%s, not an IP address: ignored", key,
			 text ? "'" : json_type_to_name(json_object_get_type(v)),
			 text ? printable(text, shown) : "", text ? "'" : "");
}

int dh_docker_parse_daemon_json(const char *text, size_t len, struct dh_ip *addrs, int max, char *why,
				size_t why_len)
{
	struct json_object *conf, *v;
	int n = 0;
	size_t i;

	why[0] = '\0';
	if (len == 0)
		return 0;
	conf = parse_json(text, len);
	if (!json_object_is_type(conf, json_type_object)) {
		snprintf(why, why_len, "not a JSON object: ignored");
		json_object_put(conf);
		return 0;
	}
	if (json_object_object_get_ex(conf, "host-gateway-ip", &v))
		take_gateway(v, "host-gateway-ip", addrs, max, &n, why, why_len);
	if (json_object_object_get_ex(conf, "host-gateway-ips", &v)) {
		if (json_object_is_type(v, json_type_array)) {
			for (i = 0; i < json_object_array_length(v); i++)
				take_gateway(json_object_array_get_idx(v, i), "host-gateway-ips", addrs, max,
					     &n, why, why_len);
		} else if (!why[0]) {
			snprintf(why, why_len, "\"host-gateway-ips\" is %s, not an array: ignored",
				 json_type_to_name(json_object_get_type(v)));
		}
	}
	json_object_put(conf);
	return n;
}

/* One address (container) or subnet (network) into @src: false when it
 * is no address or @src is full (noted in @why once). */
static void take_source_prefix(const char *text, bool host, struct dh_allow_source *src, char *why,
			       size_t why_len)
{
	struct dh_allow_prefix prefix;
	char shown[41];
	__u32 i;

	if (!text || !*text)
		return;  /* "IPAddress": "" on a network without IPv4, say */
	/* A host's address is the whole prefix: "IPPrefixLen" says the
	 * subnet's size, not who the container is. */
	if ((host && strchr(text, '/')) || dh_parse_cidr(text, &prefix)) {
		if (!why[0])
			snprintf(why, why_len, "'%s' is not an address: ignored", printable(text, shown));
		return;
	}
	for (i = 0; i < src->count; i++)
		if (!memcmp(&src->prefixes[i], &prefix, sizeof(prefix)))
			return;
	if (src->count >= DH_ALLOW_PREFIXES) {
		if (!why[0])
			snprintf(why, why_len, "more than %d addresses: '%s' and later ones ignored",
				 DH_ALLOW_PREFIXES, printable(text, shown));
		return;
	}
	src->prefixes[src->count++] = prefix;
}

/* A container's addresses, IPv4 and global IPv6 on each of its networks
 * (NetworkSettings.Networks), into @src; with @labelled, the networks'
 * names too (as many as it holds). @why says what was skipped. */
static void take_container_prefixes(struct json_object *container, struct dh_allow_source *src,
				    struct dh_docker_labelled *labelled, char *why, size_t why_len)
{
	struct json_object *nets = member(member(container, "NetworkSettings", json_type_object), "Networks",
					  json_type_object);
	struct json_object_iterator it, end;

	if (!nets)
		return;
	it = json_object_iter_begin(nets);
	end = json_object_iter_end(nets);
	for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
		struct json_object *net = json_object_iter_peek_value(&it);
		const char *name = json_object_iter_peek_name(&it);

		if (labelled && labelled->n_networks < (int)(sizeof(labelled->networks) / sizeof(labelled->networks[0])) &&
		    strlen(name) < sizeof(labelled->networks[0]))
			snprintf(labelled->networks[labelled->n_networks++], sizeof(labelled->networks[0]), "%s", name);
		take_source_prefix(string_member(net, "IPAddress"), true, src, why, why_len);
		take_source_prefix(string_member(net, "GlobalIPv6Address"), true, src, why, why_len);
	}
}

int dh_docker_parse_allow_source(long status, const char *body, size_t len, bool network,
				 struct dh_allow_source *src, char *why, size_t why_len)
{
	struct json_object *obj = parse_json(body, len), *config;
	const char *msg;
	char shown[41];
	size_t i;

	memset(src, 0, sizeof(*src));
	why[0] = '\0';
	if (status != 200 || !json_object_is_type(obj, json_type_object)) {
		msg = string_member(obj, "message");
		snprintf(why, why_len, "Docker answered %ld%s%s", status, msg ? ": " : "",
			 msg ? printable(msg, shown) : "");
		json_object_put(obj);
		return status == 404 ? -ENOENT : status == 200 ? -EINVAL : -EHOSTUNREACH;
	}
	if (network) {
		src->kind = DH_ALLOW_NETWORK;
		config = member(member(obj, "IPAM", json_type_object), "Config", json_type_array);
		for (i = 0; config && i < json_object_array_length(config); i++)
			take_source_prefix(string_member(json_object_array_get_idx(config, i), "Subnet"), false,
					   src, why, why_len);
	} else {
		src->kind = DH_ALLOW_CONTAINER;
		take_container_prefixes(obj, src, NULL, why, why_len);
	}
	json_object_put(obj);
	return 0;
}

/* "/web" -> "web": Docker's names lead with a slash. */
static void copy_name(char *dst, size_t size, const char *name)
{
	if (*name == '/')
		name++;
	snprintf(dst, size, "%s", name);
}

/* The answer to GET /containers/json: its list, or NULL with @why. */
static struct json_object *container_list(long status, const char *body, size_t len, char *why, size_t why_len)
{
	struct json_object *list = parse_json(body, len);

	why[0] = '\0';
	if (status != 200 || !json_object_is_type(list, json_type_array)) {
		snprintf(why, why_len, "Docker answered %ld to GET /containers/json", status);
		json_object_put(list);
		return NULL;
	}
	return list;
}

int dh_docker_parse_labelled(long status, const char *body, size_t len, const char *label,
			     struct dh_docker_labelled *out, int max, char *why, size_t why_len)
{
	struct json_object *list = container_list(status, body, len, why, why_len);
	int n = 0;
	size_t i;

	if (!list)
		return -EHOSTUNREACH;
	for (i = 0; i < json_object_array_length(list) && n < max; i++) {
		struct json_object *c = json_object_array_get_idx(list, i), *names;
		struct dh_docker_labelled *item = &out[n];
		const char *id = string_member(c, "Id");
		const char *value = string_member(member(c, "Labels", json_type_object), label);
		char ignored[128];

		if (!id || strlen(id) < 12 || !value)
			continue;
		memset(item, 0, sizeof(*item));
		snprintf(item->id, sizeof(item->id), "%.12s", id);
		snprintf(item->value, sizeof(item->value), "%s", value);
		names = member(c, "Names", json_type_array);
		if (names && json_object_array_length(names) && string_value(json_object_array_get_idx(names, 0)))
			copy_name(item->name, sizeof(item->name), string_value(json_object_array_get_idx(names, 0)));
		else
			snprintf(item->name, sizeof(item->name), "%s", item->id);
		item->src.kind = DH_ALLOW_LABEL;
		ignored[0] = '\0';
		take_container_prefixes(c, &item->src, item, ignored, sizeof(ignored));
		if (ignored[0] && !why[0])
			snprintf(why, why_len, "%s: %s", item->name, ignored);
		n++;
	}
	json_object_put(list);
	return n;
}

int dh_docker_parse_container_addrs(long status, const char *body, size_t len, struct dh_docker_addr *out,
				    int max, char *why, size_t why_len)
{
	struct json_object *list = container_list(status, body, len, why, why_len);
	int n = 0;
	size_t i;
	__u32 j;

	if (!list)
		return -EHOSTUNREACH;
	for (i = 0; i < json_object_array_length(list) && n < max; i++) {
		struct json_object *c = json_object_array_get_idx(list, i);
		struct json_object *names = member(c, "Names", json_type_array);
		struct dh_allow_source addrs = {};
		char name[sizeof(out->name)], ignored[128] = "";

		if (!names || !json_object_array_length(names) || !string_value(json_object_array_get_idx(names, 0)))
			continue;
		copy_name(name, sizeof(name), string_value(json_object_array_get_idx(names, 0)));
		take_container_prefixes(c, &addrs, NULL, ignored, sizeof(ignored));
		for (j = 0; j < addrs.count && n < max; j++, n++) {
			const struct dh_allow_prefix *p = &addrs.prefixes[j];

			memset(&out[n], 0, sizeof(out[n]));
			out[n].addr.family = p->family == DH_AF_INET6 ? AF_INET6 : AF_INET;
			memcpy(out[n].addr.v6, p->addr, sizeof(out[n].addr.v6));
			snprintf(out[n].name, sizeof(out[n].name), "%s", name);
		}
	}
	json_object_put(list);
	return n;
}
