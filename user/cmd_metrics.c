// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * metrics: an HTTP /metrics endpoint for a Prometheus server. A server of
 * our own, not a library's: it answers one request per connection, one
 * connection at a time, GET (or HEAD) /metrics and nothing else, which is
 * a hundred lines that read no more than DH_HTTP_MAX bytes of a request
 * and wait no longer than DH_HTTP_TIMEOUT_MS for it. Each scrape opens the
 * pin set, reads it under its lock and closes it again, as `stats` does.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define DH_METRICS_LISTEN "127.0.0.1:9469"
#define DH_HTTP_MAX 8192            /* request line and headers */
#define DH_HTTP_TIMEOUT_MS 5000     /* to read a request, and to write the answer */

struct listen_addr {
	struct sockaddr_storage sa;
	socklen_t len;
};

/* ADDR:PORT or [ADDR6]:PORT, a literal address (no names). */
static bool parse_listen(const char *text, struct listen_addr *out)
{
	char host[64];
	const char *colon, *port_text;
	struct dh_ip ip;
	__u16 port;
	size_t n;

	if (text[0] == '[') {
		colon = strstr(text, "]:");
		if (!colon)
			return false;
		n = colon - text - 1;
		port_text = colon + 2;
		if (n >= sizeof(host))
			return false;
		memcpy(host, text + 1, n);
	} else {
		colon = strrchr(text, ':');
		if (!colon || strchr(text, ':') != colon)
			return false;
		n = colon - text;
		port_text = colon + 1;
		if (n >= sizeof(host))
			return false;
		memcpy(host, text, n);
	}
	host[n] = '\0';
	if (!dh_parse_ip(host, &ip) || !dh_parse_port_number(port_text, &port))
		return false;
	if ((text[0] == '[') != (ip.family == AF_INET6))
		return false;
	memset(out, 0, sizeof(*out));
	if (ip.family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&out->sa;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		sin->sin_addr.s_addr = ip.v4;
		out->len = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->sa;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		memcpy(&sin6->sin6_addr, ip.v6, sizeof(ip.v6));
		out->len = sizeof(*sin6);
	}
	return true;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* Waits for @events on @fd until @deadline; 1 ready, 0 timed out, -1 a
 * stop signal arrived (left pending on @sig_fd for the main loop). */
static int wait_fd(int fd, short events, int sig_fd, long long deadline)
{
	for (;;) {
		struct pollfd fds[2] = { { .fd = fd, .events = events }, { .fd = sig_fd, .events = POLLIN } };
		long long left = deadline - now_ms();
		int n;

		if (left <= 0)
			return 0;
		n = poll(fds, 2, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return 0;
		if (fds[1].revents)
			return -1;
		if (fds[0].revents)
			return 1;
	}
}

static void send_all(int fd, const char *buf, size_t len, int sig_fd, long long deadline)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n > 0) {
			buf += n;
			len -= n;
		} else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			if (wait_fd(fd, POLLOUT, sig_fd, deadline) != 1)
				return;
		} else {
			return;
		}
	}
}

static void respond(int fd, int sig_fd, long long deadline, const char *status, const char *type,
		    const char *body, size_t len, bool head)
{
	char header[256];
	int n;

	n = snprintf(header, sizeof(header),
		     "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n",
		     status, type, len, !strncmp(status, "405", 3) ? "Allow: GET, HEAD\r\n" : "");
	send_all(fd, header, n, sig_fd, deadline);
	if (!head)
		send_all(fd, body, len, sig_fd, deadline);
}

static void respond_text(int fd, int sig_fd, long long deadline, const char *status, const char *text)
{
	respond(fd, sig_fd, deadline, status, "text/plain; charset=utf-8", text, strlen(text), false);
}

/* One connection: read the request head, answer, close. A client that is
 * slow, sends too much or sends nonsense gets a 4xx and is gone. */
static void serve(const struct dh_cli *cli, int fd, int sig_fd, bool per_source)
{
	long long deadline = now_ms() + DH_HTTP_TIMEOUT_MS;
	char req[DH_HTTP_MAX + 1], method[16], target[256], version[16];
	size_t got = 0;
	bool head;

	for (;;) {
		ssize_t n = recv(fd, req + got, DH_HTTP_MAX - got, MSG_DONTWAIT);
		int ready;

		if (n > 0) {
			got += n;
			req[got] = '\0';
			if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
				break;
			if (got == DH_HTTP_MAX) {
				respond_text(fd, sig_fd, deadline, "431 Request Header Fields Too Large",
					     "request too large\n");
				return;
			}
			continue;
		}
		if (n == 0)
			return;  /* the client went away */
		if (errno != EAGAIN && errno != EINTR)
			return;
		ready = wait_fd(fd, POLLIN, sig_fd, deadline);
		if (ready < 0)
			return;
		if (ready == 0) {
			respond_text(fd, sig_fd, now_ms() + 1000, "408 Request Timeout", "request timeout\n");
			return;
		}
	}
	if (sscanf(req, "%15[A-Z] %255[^ \r\n] %15[^ \r\n]", method, target, version) != 3 ||
	    strncmp(version, "HTTP/1.", 7) || target[0] != '/') {
		respond_text(fd, sig_fd, deadline, "400 Bad Request", "bad request\n");
		return;
	}
	dh_debug("metrics: %s %s", method, target);
	/* The path alone: a query string (?name[]=...) changes nothing. */
	target[strcspn(target, "?")] = '\0';
	if (strcmp(target, "/metrics")) {
		respond_text(fd, sig_fd, deadline, "404 Not Found", "not found: try /metrics\n");
		return;
	}
	head = !strcmp(method, "HEAD");
	if (strcmp(method, "GET") && !head) {
		respond_text(fd, sig_fd, deadline, "405 Method Not Allowed", "method not allowed\n");
		return;
	} else {
		char *buf;
		size_t len;
		int err = dh_prom_collect(cli, per_source, &buf, &len);

		if (err) {
			char why[160];

			snprintf(why, sizeof(why), "cannot read %s: %s\n", cli->pin_dir,
				 err < 0 ? strerror(-err) : "see the metrics server's log");
			if (err < 0)
				dh_warn("metrics: %s", why);
			respond_text(fd, sig_fd, deadline, "500 Internal Server Error", why);
			return;
		}
		respond(fd, sig_fd, deadline, "200 OK", "text/plain; version=0.0.4; charset=utf-8", buf, len, head);
		free(buf);
	}
}

int dh_cmd_metrics(const struct dh_cli *cli, int argc, char **argv)
{
	static const struct option options[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "per-source", no_argument, NULL, 's' },
		{}
	};
	const char *listen_text = DH_METRICS_LISTEN;
	struct listen_addr addr;
	bool per_source = false;
	int opt, err, lfd, sig_fd, one = 1;

	while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
		switch (opt) {
		case 'l':
			listen_text = optarg;
			break;
		case 's':
			per_source = true;
			break;
		case ':':
			return dh_usage_error("metrics: option '%s' needs a value", argv[optind - 1]);
		default:
			return dh_usage_error("metrics: unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind != argc)
		return dh_usage_error("metrics: unexpected argument '%s'", argv[optind]);
	if (!parse_listen(listen_text, &addr))
		return dh_usage_error("metrics: --listen '%s': expected ADDR:PORT or [ADDR6]:PORT, e.g. %s",
				      listen_text, DH_METRICS_LISTEN);
	err = dh_require_root();
	if (err)
		return err;

	lfd = socket(addr.sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (lfd < 0)
		return dh_runtime_error("metrics: socket: %s", strerror(errno));
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (addr.sa.ss_family == AF_INET6)
		setsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&addr.sa, addr.len) || listen(lfd, 16)) {
		err = errno;
		close(lfd);
		return dh_runtime_error("metrics: --listen %s: %s", listen_text, strerror(err));
	}
	/* The stop signals arrive on sig_fd, so that a signal during a
	 * request ends the wait for it too (watch does the same). */
	if ((sig_fd = dh_stop_signals_fd()) < 0) {
		err = errno;
		close(lfd);
		return dh_runtime_error("metrics: signals: %s", strerror(err));
	}
	printf("metrics: serving http://%s/metrics\n", listen_text);
	fflush(stdout);

	for (;;) {
		struct pollfd fds[2] = { { .fd = sig_fd, .events = POLLIN }, { .fd = lfd, .events = POLLIN } };
		int fd;

		if (poll(fds, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			err = dh_runtime_error("metrics: poll: %s", strerror(errno));
			break;
		}
		if (fds[0].revents) {
			struct signalfd_siginfo info;

			if (read(sig_fd, &info, sizeof(info)) == sizeof(info))
				dh_debug("metrics: signal %u", info.ssi_signo);
			err = 0;
			break;
		}
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			/* Gone before we took it; or out of fds, where
			 * poll would say "readable" again at once. */
			if (errno == EMFILE || errno == ENFILE)
				usleep(100000);
			continue;
		}
		serve(cli, fd, sig_fd, per_source);
		shutdown(fd, SHUT_WR);
		close(fd);
	}
	close(sig_fd);
	close(lfd);
	return err;
}
