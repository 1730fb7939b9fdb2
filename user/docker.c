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
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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

/* GET @format with @name (a user's word: escaped) in place of its %s;
 * 0, or -errno after saying why. The caller frees buf->data. */
static int docker_get_named(const char *format, const char *name, struct buffer *buf, long *status, char *why,
			    size_t why_len)
{
	char *escaped, path[300];
	CURL *handle;

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
	snprintf(path, sizeof(path), format, escaped);
	curl.free(escaped);
	return docker_get(path, buf, status, why, why_len) ? 0 : -EHOSTUNREACH;
}

int dh_docker_network_bridge(const char *network, char bridge[DH_IFNAMSIZ], char *why, size_t why_len)
{
	struct buffer buf = {};
	long status;
	int err;

	err = docker_get_named("/networks/%s", network, &buf, &status, why, why_len);
	if (!err)
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

/* The running containers' addresses with their names: how `trace` and
 * `stats --by-source` name a source (parsed in docker_parse.c). */
int dh_docker_container_addrs(struct dh_docker_addr *out, int max, char *why, size_t why_len)
{
	struct buffer buf = {};
	long status;
	int n;

	if (!docker_get("/containers/json", &buf, &status, why, why_len)) {
		free(buf.data);
		return -EHOSTUNREACH;
	}
	n = dh_docker_parse_container_addrs(status, buf.data ? buf.data : "", buf.len, out, max, why, why_len);
	free(buf.data);
	return n;
}

/* GET /containers/NAME/json or /networks/NAME, parsed as an allow-list
 * source. */
static int docker_source_get(const char *name, bool network, struct dh_allow_source *src, char *why,
			     size_t why_len)
{
	struct buffer buf = {};
	long status;
	int err;

	err = docker_get_named(network ? "/networks/%s" : "/containers/%s/json", name, &buf, &status, why, why_len);
	if (!err)
		err = dh_docker_parse_allow_source(status, buf.data ? buf.data : "", buf.len, network, src, why,
						   why_len);
	free(buf.data);
	return err;
}

int dh_docker_source_of_kind(const char *name, bool network, struct dh_allow_source *src, char *why,
			     size_t why_len)
{
	return docker_source_get(name, network, src, why, why_len);
}

int dh_docker_get(const char *path, char **body, size_t *len, long *status, char *why, size_t why_len)
{
	struct buffer buf = {};

	if (!docker_get(path, &buf, status, why, why_len)) {
		free(buf.data);
		return -EHOSTUNREACH;
	}
	*body = buf.data;
	*len = buf.len;
	return 0;
}

int dh_docker_allow_source(const char *name, struct dh_allow_source *src, char *why, size_t why_len)
{
	int err = docker_source_get(name, false, src, why, why_len);

	if (err == -ENOENT)
		err = docker_source_get(name, true, src, why, why_len);
	return err;
}

/*
 * Docker's event stream (GET /events: one JSON object a line, for as long
 * as the daemon runs), read by a thread of its own with the same blocking
 * easy_perform as every other call here. The thread turns what it reads
 * into records on a pipe that watch's poll() loop reads beside rtnetlink
 * and its signalfd; watch does all the work, in its own thread. Stopping
 * shuts the stream's socket down (the thread's recv() returns at once)
 * and wakes the thread from its back-off wait: no transfer has to time out.
 */
struct dh_docker_events {
	pthread_t thread;
	char *path;
	int pipe[2];  /* records: thread -> watch; the write end never blocks */
	int wake[2];  /* watch -> thread: stop now */
	pthread_mutex_t lock;
	int sock;     /* the stream's socket, -1 between connections */
	bool stop;
	bool connected;  /* this connection answered 200 */
	char line[4096];
	size_t line_len;
	bool line_long;  /* a line longer than line[]: skipped to its end */
};

static void events_send(struct dh_docker_events *ev, char type, const char *text)
{
	struct dh_docker_event rec = { .type = type };

	snprintf(rec.text, sizeof(rec.text), "%s", text);
	/* A full pipe already holds records that make watch look again:
	 * dropping this one loses nothing (watch re-reads everything). */
	if (write(ev->pipe[1], &rec, sizeof(rec)) < 0 && errno != EAGAIN)
		dh_debug("docker events: %s", strerror(errno));
}

static bool events_stopping(struct dh_docker_events *ev)
{
	bool stop;

	pthread_mutex_lock(&ev->lock);
	stop = ev->stop;
	pthread_mutex_unlock(&ev->lock);
	return stop;
}

static curl_socket_t events_open_socket(void *data, curlsocktype purpose, struct curl_sockaddr *addr)
{
	struct dh_docker_events *ev = data;
	curl_socket_t fd = CURL_SOCKET_BAD;

	(void)purpose;
	pthread_mutex_lock(&ev->lock);
	if (!ev->stop) {
		fd = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
		ev->sock = fd;
	}
	pthread_mutex_unlock(&ev->lock);
	return fd;
}

static int events_close_socket(void *data, curl_socket_t fd)
{
	struct dh_docker_events *ev = data;

	pthread_mutex_lock(&ev->lock);
	if (ev->sock == fd)
		ev->sock = -1;
	pthread_mutex_unlock(&ev->lock);
	return close(fd);
}

static size_t events_header(char *ptr, size_t size, size_t nmemb, void *data)
{
	struct dh_docker_events *ev = data;
	size_t n = size * nmemb;

	/* The status line: the stream is on once Docker says 200. */
	if (n > 12 && !strncmp(ptr, "HTTP/", 5) && !ev->connected) {
		const char *sp = memchr(ptr, ' ', n);

		if (sp && sp + 4 <= ptr + n && !strncmp(sp + 1, "200", 3)) {
			ev->connected = true;
			events_send(ev, DH_DOCKER_CONNECTED, "");
		}
	}
	return n;
}

/* One event: "container start web", for watch's debug log. */
static void events_line(struct dh_docker_events *ev, const char *line)
{
	struct json_object *obj = json_tokener_parse(line), *v, *actor, *attrs;
	const char *type = "?", *action = "?", *name = "";
	char text[sizeof(((struct dh_docker_event *)0)->text)];

	if (!obj)
		return;
	if (json_object_object_get_ex(obj, "Type", &v) && json_object_is_type(v, json_type_string))
		type = json_object_get_string(v);
	if (json_object_object_get_ex(obj, "Action", &v) && json_object_is_type(v, json_type_string))
		action = json_object_get_string(v);
	if (json_object_object_get_ex(obj, "Actor", &actor) &&
	    json_object_object_get_ex(actor, "Attributes", &attrs) &&
	    json_object_object_get_ex(attrs, "name", &v) && json_object_is_type(v, json_type_string))
		name = json_object_get_string(v);
	snprintf(text, sizeof(text), "%s %s %s", type, action, name);
	for (char *c = text; *c; c++)
		if ((unsigned char)*c < 0x20)
			*c = '?';
	events_send(ev, DH_DOCKER_EVENT, text);
	json_object_put(obj);
}

static size_t events_write(char *ptr, size_t size, size_t nmemb, void *data)
{
	struct dh_docker_events *ev = data;
	size_t n = size * nmemb, i;

	if (events_stopping(ev))
		return 0;  /* aborts the transfer */
	for (i = 0; i < n; i++) {
		if (ptr[i] != '\n') {
			if (ev->line_len + 1 < sizeof(ev->line))
				ev->line[ev->line_len++] = ptr[i];
			else
				ev->line_long = true;
			continue;
		}
		ev->line[ev->line_len] = '\0';
		if (ev->line_long)
			events_send(ev, DH_DOCKER_EVENT, "(an event too long to read)");
		else if (strspn(ev->line, " \r\t") != ev->line_len)
			events_line(ev, ev->line);
		ev->line_len = 0;
		ev->line_long = false;
	}
	return n;
}

/* Back-off between attempts: 0.25 s doubling to 5 s, reset by a
 * connection that Docker answered. */
#define EVENTS_BACKOFF_MIN_MS 250
#define EVENTS_BACKOFF_MAX_MS 5000

static void *events_thread(void *data)
{
	struct dh_docker_events *ev = data;
	const char *socket_path = docker_socket();
	int backoff = EVENTS_BACKOFF_MIN_MS;
	bool down_said = false;
	char why[256], url[600];

	snprintf(url, sizeof(url), "http://docker%s", ev->path);
	while (!events_stopping(ev)) {
		struct pollfd pfd = { .fd = ev->wake[0], .events = POLLIN };
		long status = 0;
		CURLcode rc;
		CURL *handle;

		ev->connected = false;
		ev->line_len = 0;
		ev->line_long = false;
		handle = curl.easy_init();
		if (!handle)
			break;
		curl.easy_setopt(handle, CURLOPT_UNIX_SOCKET_PATH, socket_path);
		curl.easy_setopt(handle, CURLOPT_URL, url);
		curl.easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
		curl.easy_setopt(handle, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
		curl.easy_setopt(handle, CURLOPT_OPENSOCKETFUNCTION, events_open_socket);
		curl.easy_setopt(handle, CURLOPT_OPENSOCKETDATA, ev);
		curl.easy_setopt(handle, CURLOPT_CLOSESOCKETFUNCTION, events_close_socket);
		curl.easy_setopt(handle, CURLOPT_CLOSESOCKETDATA, ev);
		curl.easy_setopt(handle, CURLOPT_HEADERFUNCTION, events_header);
		curl.easy_setopt(handle, CURLOPT_HEADERDATA, ev);
		curl.easy_setopt(handle, CURLOPT_WRITEFUNCTION, events_write);
		curl.easy_setopt(handle, CURLOPT_WRITEDATA, ev);
		rc = curl.easy_perform(handle);
		curl.easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &status);
		curl.easy_cleanup(handle);
		if (events_stopping(ev))
			break;
		if (ev->connected) {
			snprintf(why, sizeof(why), "Docker's event stream at %s ended (%s)", socket_path,
				 rc == CURLE_OK ? "closed" : curl.easy_strerror(rc));
			backoff = EVENTS_BACKOFF_MIN_MS;
			down_said = false;
		} else if (rc != CURLE_OK) {
			snprintf(why, sizeof(why), "Docker is not reachable at %s (%s)", socket_path,
				 curl.easy_strerror(rc));
		} else {
			snprintf(why, sizeof(why), "Docker at %s answered %ld to GET /events", socket_path, status);
		}
		/* One line per outage, not one per attempt. */
		if (!down_said)
			events_send(ev, DH_DOCKER_LOST, why);
		down_said = true;
		if (poll(&pfd, 1, backoff) != 0)
			break;
		backoff = backoff * 2 > EVENTS_BACKOFF_MAX_MS ? EVENTS_BACKOFF_MAX_MS : backoff * 2;
	}
	return NULL;
}

struct dh_docker_events *dh_docker_events_start(const char *path, char *why, size_t why_len)
{
	struct dh_docker_events *ev;
	int err;

	if (!curl_load(why, why_len))
		return NULL;
	if (!docker_socket()) {
		snprintf(why, why_len, "DOCKER_HOST '%s' is not unix:// (the only kind supported)",
			 getenv("DOCKER_HOST"));
		return NULL;
	}
	ev = calloc(1, sizeof(*ev));
	if (!ev || !(ev->path = strdup(path))) {
		free(ev);
		snprintf(why, why_len, "out of memory");
		return NULL;
	}
	ev->sock = -1;
	pthread_mutex_init(&ev->lock, NULL);
	if (pipe2(ev->pipe, O_CLOEXEC | O_NONBLOCK)) {
		ev->pipe[0] = ev->pipe[1] = -1;
		goto fail;
	}
	if (pipe2(ev->wake, O_CLOEXEC)) {
		ev->wake[0] = ev->wake[1] = -1;
		goto fail;
	}
	/* The caller blocks its stop signals first: the thread inherits the
	 * mask, so they always reach the caller's signalfd. */
	err = pthread_create(&ev->thread, NULL, events_thread, ev);
	if (err) {
		errno = err;
		goto fail;
	}
	return ev;
fail:
	snprintf(why, why_len, "cannot start reading Docker's events: %s", strerror(errno));
	if (ev->pipe[0] >= 0) {
		close(ev->pipe[0]);
		close(ev->pipe[1]);
	}
	if (ev->wake[0] >= 0) {
		close(ev->wake[0]);
		close(ev->wake[1]);
	}
	free(ev->path);
	free(ev);
	return NULL;
}

int dh_docker_events_fd(const struct dh_docker_events *ev)
{
	return ev->pipe[0];
}

bool dh_docker_events_read(struct dh_docker_events *ev, struct dh_docker_event *rec)
{
	return read(ev->pipe[0], rec, sizeof(*rec)) == sizeof(*rec);
}

void dh_docker_events_stop(struct dh_docker_events *ev)
{
	if (!ev)
		return;
	pthread_mutex_lock(&ev->lock);
	ev->stop = true;
	if (ev->sock >= 0)
		shutdown(ev->sock, SHUT_RDWR);
	pthread_mutex_unlock(&ev->lock);
	if (write(ev->wake[1], "x", 1) < 0)
		dh_debug("docker events: %s", strerror(errno));
	pthread_join(ev->thread, NULL);
	close(ev->pipe[0]);
	close(ev->pipe[1]);
	close(ev->wake[0]);
	close(ev->wake[1]);
	pthread_mutex_destroy(&ev->lock);
	free(ev->path);
	free(ev);
}
