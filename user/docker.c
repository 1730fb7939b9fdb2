// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Docker, asked over its API socket (libcurl speaks HTTP over a unix
 * socket; json-c reads the answer): which bridge device a network uses,
 * and which host-gateway addresses the daemon is configured with.
 * A plain bridge name never needs any of this.
 *
 * libcurl is opened with dlopen() on first use, not linked: it pulls in
 * some 30 libraries whose loading added 3.3 ms to every CLI call (port add
 * with a linked libcurl: 4.4 ms of start-up instead of 1.1 ms, measured).
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* The libcurl calls we make, resolved at run time. */
static struct {
	CURL *(*easy_init)(void);
	CURLcode (*easy_setopt)(CURL *curl, CURLoption option, ...);
	CURLcode (*easy_perform)(CURL *curl);
	CURLcode (*easy_getinfo)(CURL *curl, CURLINFO info, ...);
	const char *(*easy_strerror)(CURLcode code);
	char *(*easy_escape)(CURL *curl, const char *string, int length);
	void (*easy_cleanup)(CURL *curl);
	void (*free)(void *ptr);
} curl;

static bool curl_load(char *why, size_t why_len)
{
	static void *lib;
	static const char *const names[] = { "curl_easy_init", "curl_easy_setopt", "curl_easy_perform",
					     "curl_easy_getinfo", "curl_easy_strerror", "curl_easy_escape",
					     "curl_easy_cleanup", "curl_free" };
	void **slots = (void **)&curl;
	unsigned int i;

	if (lib)
		return true;
	lib = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		snprintf(why, why_len, "cannot load libcurl to ask Docker: %s", dlerror());
		return false;
	}
	_Static_assert(sizeof(curl) == sizeof(names) / sizeof(names[0]) * sizeof(void *), "one name per call");
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		slots[i] = dlsym(lib, names[i]);
		if (!slots[i]) {
			snprintf(why, why_len, "libcurl has no %s", names[i]);
			dlclose(lib);
			lib = NULL;
			return false;
		}
	}
	return true;
}

#define DOCKER_SOCKET_DEFAULT "/var/run/docker.sock"
#define DOCKER_DAEMON_JSON    "/etc/docker/daemon.json"
#define MAX_RESPONSE          (1 << 20)

struct buffer {
	char *data;
	size_t len;
};

static size_t collect(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct buffer *buf = userdata;
	size_t n = size * nmemb;
	char *grown;

	if (buf->len + n > MAX_RESPONSE)
		return 0;  /* aborts the transfer */
	grown = realloc(buf->data, buf->len + n + 1);
	if (!grown)
		return 0;
	buf->data = grown;
	memcpy(buf->data + buf->len, ptr, n);
	buf->len += n;
	buf->data[buf->len] = '\0';
	return n;
}

/* The daemon's socket: $DOCKER_HOST if it is unix://, else the default. */
static const char *docker_socket(void)
{
	const char *host = getenv("DOCKER_HOST");

	if (host && *host)
		return strncmp(host, "unix://", 7) ? NULL : host + 7;
	return DOCKER_SOCKET_DEFAULT;
}

/* GET @path into @buf (the caller frees buf->data); fills @status, or
 * returns false with @why set when Docker did not answer at all. */
static bool docker_get(const char *path, struct buffer *buf, long *status, char *why, size_t why_len)
{
	const char *socket_path = docker_socket();
	char url[512];
	CURLcode rc;
	CURL *handle;

	*status = 0;
	if (!curl_load(why, why_len))
		return false;
	if (!socket_path) {
		snprintf(why, why_len, "DOCKER_HOST '%s' is not unix:// (the only kind supported)",
			 getenv("DOCKER_HOST"));
		return false;
	}
	handle = curl.easy_init();
	if (!handle) {
		snprintf(why, why_len, "cannot initialise libcurl");
		return false;
	}
	snprintf(url, sizeof(url), "http://docker%s", path);
	curl.easy_setopt(handle, CURLOPT_UNIX_SOCKET_PATH, socket_path);
	curl.easy_setopt(handle, CURLOPT_URL, url);
	curl.easy_setopt(handle, CURLOPT_TIMEOUT_MS, 5000L);
	curl.easy_setopt(handle, CURLOPT_WRITEFUNCTION, collect);
	curl.easy_setopt(handle, CURLOPT_WRITEDATA, buf);
	rc = curl.easy_perform(handle);
	if (rc != CURLE_OK)
		snprintf(why, why_len, "Docker is not reachable at %s (%s)", socket_path, curl.easy_strerror(rc));
	else
		curl.easy_getinfo(handle, CURLINFO_RESPONSE_CODE, status);
	curl.easy_cleanup(handle);
	return rc == CURLE_OK;
}

int dh_docker_network_bridge(const char *network, char bridge[DH_IFNAMSIZ], char *why, size_t why_len)
{
	struct buffer buf = {};
	char *escaped, path[300];
	CURL *handle;
	long status;
	int err;

	if (!curl_load(why, why_len))
		return -EHOSTUNREACH;
	handle = curl.easy_init();
	escaped = handle ? curl.easy_escape(handle, network, 0) : NULL;
	if (handle)
		curl.easy_cleanup(handle);
	if (!escaped) {
		snprintf(why, why_len, "cannot initialise libcurl");
		return -ENOMEM;
	}
	snprintf(path, sizeof(path), "/networks/%s", escaped);
	curl.free(escaped);

	if (!docker_get(path, &buf, &status, why, why_len))
		err = -EHOSTUNREACH;
	else
		err = dh_docker_parse_network(status, buf.data ? buf.data : "", buf.len, bridge, why, why_len);
	free(buf.data);
	return err;
}

/*
 * The daemon's configured host-gateway address(es): "host-gateway-ip"
 * (Docker 20.10+) or "host-gateway-ips" (newer), from daemon.json. Without
 * them Docker uses docker0's address, which attach adds anyway.
 */
int dh_docker_host_gateways(struct dh_ip *addrs, int max)
{
	const char *path = getenv("DOCKHOST_DOCKER_DAEMON_JSON");
	struct buffer buf = {};
	char chunk[4096], why[256];
	size_t got;
	FILE *f;
	int n;

	if (!path || !*path)
		path = DOCKER_DAEMON_JSON;
	f = fopen(path, "re");
	if (!f) {
		if (errno != ENOENT)
			dh_warn("%s: %s: host-gateway-ip not read", path, strerror(errno));
		return 0;
	}
	while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0)
		if (collect(chunk, 1, got, &buf) != got)
			break;
	if (ferror(f) || !feof(f)) {
		dh_warn("%s: unreadable or larger than %d bytes: host-gateway-ip not read", path, MAX_RESPONSE);
		n = 0;
	} else {
		n = dh_docker_parse_daemon_json(buf.data ? buf.data : "", buf.len, addrs, max, why, sizeof(why));
		if (why[0])
			dh_warn("%s: %s", path, why);
	}
	fclose(f);
	free(buf.data);
	return n;
}

int dh_resolve_bridge_arg(const char *cmd, const char *arg, char name[DH_IFNAMSIZ])
{
	bool valid = dh_ifname_valid(arg);
	struct dh_netdev dev;
	char why[256];
	int err;

	if (valid && dh_netdev_lookup(arg, &dev) == 0) {
		snprintf(name, DH_IFNAMSIZ, "%s", arg);
		return 0;
	}
	err = dh_docker_network_bridge(arg, name, why, sizeof(why));
	if (!err) {
		dh_debug("Docker network '%s' is bridge '%s'", arg, name);
		return 0;
	}
	if (err == -EINVAL)
		return dh_runtime_error("%s: '%s': %s", cmd, arg, why);
	dh_debug("'%s' as a Docker network: %s", arg, why);
	if (!valid)
		return dh_usage_error("%s: '%s': not a valid interface name (1-15 characters)%s",
				      cmd, arg, err == -ENOENT ? " nor a Docker network" : "");
	/* Not a device now, not a network: the command says what that means
	 * (a bridge gone since attach can still be detached by name). */
	snprintf(name, DH_IFNAMSIZ, "%s", arg);
	return 0;
}

/* One member of a json object, if it has type @type. */
static struct json_object *member(struct json_object *obj, const char *key, json_type type)
{
	struct json_object *value;

	if (!obj || !json_object_is_type(obj, json_type_object) ||
	    !json_object_object_get_ex(obj, key, &value) || !json_object_is_type(value, type))
		return NULL;
	return value;
}

static int add_container_addr(struct dh_docker_addr *out, int n, int max, const char *text,
			      const char *name)
{
	if (n >= max || !text || !*text || !dh_parse_ip(text, &out[n].addr))
		return n;
	snprintf(out[n].name, sizeof(out[n].name), "%s", name);
	return n + 1;
}

/*
 * The running containers' addresses on their networks, with their names
 * (GET /containers/json): how `trace` names a source. Fills up to @max;
 * returns how many, or -EHOSTUNREACH with @why when Docker did not answer
 * as expected. Members of the wrong type are skipped, never trusted.
 */
int dh_docker_container_addrs(struct dh_docker_addr *out, int max, char *why, size_t why_len)
{
	struct json_object *root, *item, *names, *networks;
	struct buffer buf = {};
	long status;
	size_t i;
	int n = 0;

	if (!docker_get("/containers/json", &buf, &status, why, why_len)) {
		free(buf.data);
		return -EHOSTUNREACH;
	}
	root = buf.data && status == 200 ? json_tokener_parse(buf.data) : NULL;
	free(buf.data);
	if (!root || !json_object_is_type(root, json_type_array)) {
		snprintf(why, why_len, "Docker's /containers/json: HTTP %ld, not a list", status);
		json_object_put(root);
		return -EHOSTUNREACH;
	}
	for (i = 0; i < json_object_array_length(root); i++) {
		struct json_object *first, *settings;
		const char *name;

		item = json_object_array_get_idx(root, i);
		names = member(item, "Names", json_type_array);
		first = names && json_object_array_length(names) ? json_object_array_get_idx(names, 0) : NULL;
		if (!first || !json_object_is_type(first, json_type_string))
			continue;
		name = json_object_get_string(first);
		name += *name == '/';  /* Docker's names start with '/' */
		settings = member(item, "NetworkSettings", json_type_object);
		networks = member(settings, "Networks", json_type_object);
		if (!networks)
			continue;
		json_object_object_foreach(networks, key, net) {
			struct json_object *v4 = member(net, "IPAddress", json_type_string);
			struct json_object *v6 = member(net, "GlobalIPv6Address", json_type_string);

			(void)key;
			n = add_container_addr(out, n, max, v4 ? json_object_get_string(v4) : NULL, name);
			n = add_container_addr(out, n, max, v6 ? json_object_get_string(v6) : NULL, name);
		}
	}
	json_object_put(root);
	return n;
}

/* GET /containers/NAME/json or /networks/NAME, parsed as an allow-list
 * source. */
static int docker_source_get(const char *name, bool network, struct dh_allow_source *src, char *why,
			     size_t why_len)
{
	struct buffer buf = {};
	char *escaped, path[300];
	CURL *handle;
	long status;
	int err;

	if (!curl_load(why, why_len))
		return -EHOSTUNREACH;
	handle = curl.easy_init();
	escaped = handle ? curl.easy_escape(handle, name, 0) : NULL;
	if (handle)
		curl.easy_cleanup(handle);
	if (!escaped) {
		snprintf(why, why_len, "cannot initialise libcurl");
		return -ENOMEM;
	}
	snprintf(path, sizeof(path), network ? "/networks/%s" : "/containers/%s/json", escaped);
	curl.free(escaped);
	if (!docker_get(path, &buf, &status, why, why_len))
		err = -EHOSTUNREACH;
	else
		err = dh_docker_parse_allow_source(status, buf.data ? buf.data : "", buf.len, network, src, why,
						   why_len);
	free(buf.data);
	return err;
}

int dh_docker_allow_source(const char *name, struct dh_allow_source *src, char *why, size_t why_len)
{
	int err = docker_source_get(name, false, src, why, why_len);

	if (err == -ENOENT)
		err = docker_source_get(name, true, src, why, why_len);
	return err;
}
