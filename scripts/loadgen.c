// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * loadgen: the load generator and server of `make bench` (netperf is not in
 * Debian 12). Transactions are small request/response exchanges:
 *
 *   crr  TCP connect, request, response, close (with RST: SO_LINGER 0, so
 *        TIME_WAIT never builds up and skews later runs)
 *   rr   request/response on one persistent TCP connection per thread
 *   udp  request/response over UDP
 *
 *   loadgen server [--tcp ADDR:PORT]... [--udp ADDR:PORT]...
 *   loadgen client crr|rr|udp ADDR:PORT [--seconds S] [--threads N]
 *
 * The client is bounded by time, every socket call has a timeout, and it
 * prints "<transactions per second> <errors>" on one line.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MSG_SIZE    64
#define TIMEOUT_MS  1000
#define MAX_LISTEN  16
#define MAX_THREADS 64

static void die(const char *what)
{
	fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
	exit(1);
}

static bool parse_endpoint(const char *text, struct sockaddr_in *sa)
{
	char addr[INET_ADDRSTRLEN];
	const char *colon = strrchr(text, ':');
	char *end;
	long port;

	if (!colon || (size_t)(colon - text) >= sizeof(addr))
		return false;
	memcpy(addr, text, colon - text);
	addr[colon - text] = '\0';
	port = strtol(colon + 1, &end, 10);
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons(port);
	return *end == '\0' && port > 0 && port < 65536 && inet_pton(AF_INET, addr, &sa->sin_addr) == 1;
}

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void set_timeouts(int fd)
{
	struct timeval tv = { .tv_sec = TIMEOUT_MS / 1000, .tv_usec = (TIMEOUT_MS % 1000) * 1000 };

	/* SO_SNDTIMEO also bounds a blocking connect(). */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* ---- server: one epoll loop, TCP echo and UDP echo --------------------- */

static int listen_on(const char *spec, int type)
{
	struct sockaddr_in sa;
	int fd, one = 1;

	if (!parse_endpoint(spec, &sa)) {
		fprintf(stderr, "loadgen: '%s': not ADDR:PORT\n", spec);
		exit(2);
	}
	fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)))
		die(spec);
	if (type == SOCK_STREAM && listen(fd, 4096))
		die("listen");
	return fd;
}

static int run_server(int argc, char **argv)
{
	bool is_listener[65536] = {}, is_udp[65536] = {};
	struct epoll_event ev, events[64];
	char buf[MSG_SIZE * 4];
	int ep, i, n;

	signal(SIGPIPE, SIG_IGN);
	ep = epoll_create1(EPOLL_CLOEXEC);
	for (i = 0; i + 1 < argc; i += 2) {
		bool udp = !strcmp(argv[i], "--udp");
		int fd;

		if (!udp && strcmp(argv[i], "--tcp")) {
			fprintf(stderr, "loadgen server: unknown option '%s'\n", argv[i]);
			return 2;
		}
		fd = listen_on(argv[i + 1], udp ? SOCK_DGRAM : SOCK_STREAM);
		is_listener[fd] = !udp;
		is_udp[fd] = udp;
		ev = (struct epoll_event){ .events = EPOLLIN, .data.fd = fd };
		epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
	}
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		n = epoll_wait(ep, events, 64, -1);
		for (i = 0; i < n; i++) {
			int fd = events[i].data.fd, conn, one = 1;
			struct sockaddr_in peer;
			socklen_t len = sizeof(peer);
			ssize_t got;

			if (is_listener[fd]) {
				while ((conn = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
					if (conn >= 65536) {
						close(conn);
						continue;
					}
					setsockopt(conn, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
					ev = (struct epoll_event){ .events = EPOLLIN, .data.fd = conn };
					epoll_ctl(ep, EPOLL_CTL_ADD, conn, &ev);
				}
			} else if (is_udp[fd]) {
				while ((got = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&peer, &len)) > 0) {
					sendto(fd, buf, got, 0, (struct sockaddr *)&peer, len);
					len = sizeof(peer);
				}
			} else {
				got = read(fd, buf, sizeof(buf));
				if (got > 0) {
					if (write(fd, buf, got) != got)
						got = -1;
				}
				if (got <= 0 && !(got < 0 && errno == EAGAIN))
					close(fd);  /* EOF, RST or error; closing also unregisters */
			}
		}
	}
}

/* ---- client --------------------------------------------------------------- */

enum mode { MODE_CRR, MODE_RR, MODE_UDP };

struct worker {
	pthread_t thread;
	enum mode mode;
	struct sockaddr_in to;
	double deadline;
	unsigned long long transactions, errors;
};

/* One request/response on @fd; false on error or timeout. */
static bool exchange(int fd)
{
	char msg[MSG_SIZE] = "dockhost-bpf loadgen", reply[MSG_SIZE];
	size_t got = 0;
	ssize_t n;

	if (send(fd, msg, sizeof(msg), MSG_NOSIGNAL) != sizeof(msg))
		return false;
	while (got < sizeof(reply)) {
		n = recv(fd, reply + got, sizeof(reply) - got, 0);
		if (n <= 0)
			return false;
		got += n;
	}
	return true;
}

static int open_connected(const struct worker *w)
{
	int fd = socket(AF_INET, (w->mode == MODE_UDP ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
	int one = 1;

	if (fd < 0)
		return -1;
	set_timeouts(fd);
	if (w->mode == MODE_CRR) {
		struct linger reset = { .l_onoff = 1, .l_linger = 0 };

		setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
	}
	if (w->mode != MODE_UDP)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (const struct sockaddr *)&w->to, sizeof(w->to))) {
		close(fd);
		return -1;
	}
	return fd;
}

static void *work(void *arg)
{
	struct worker *w = arg;
	int fd = -1;

	while (now_seconds() < w->deadline) {
		if (fd < 0 && (fd = open_connected(w)) < 0) {
			w->errors++;
			usleep(1000);  /* a refused connect returns at once: don't spin */
			continue;
		}
		if (exchange(fd)) {
			w->transactions++;
		} else {
			w->errors++;
			if (w->mode == MODE_UDP)
				continue;  /* a lost datagram: the socket is fine */
			close(fd);
			fd = -1;
			continue;
		}
		if (w->mode == MODE_CRR) {
			close(fd);
			fd = -1;
		}
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

static int run_client(int argc, char **argv)
{
	struct worker workers[MAX_THREADS];
	unsigned long long transactions = 0, errors = 0;
	double seconds = 2, start;
	int threads = 2, i;
	struct sockaddr_in to;
	enum mode mode;

	if (argc < 2)
		goto usage;
	if (!strcmp(argv[0], "crr"))
		mode = MODE_CRR;
	else if (!strcmp(argv[0], "rr"))
		mode = MODE_RR;
	else if (!strcmp(argv[0], "udp"))
		mode = MODE_UDP;
	else
		goto usage;
	if (!parse_endpoint(argv[1], &to))
		goto usage;
	for (i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--seconds"))
			seconds = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--threads"))
			threads = atoi(argv[i + 1]);
		else
			goto usage;
	}
	if (i != argc || seconds <= 0 || seconds > 600 || threads < 1 || threads > MAX_THREADS)
		goto usage;

	signal(SIGPIPE, SIG_IGN);
	start = now_seconds();
	for (i = 0; i < threads; i++) {
		workers[i] = (struct worker){ .mode = mode, .to = to, .deadline = start + seconds };
		if (pthread_create(&workers[i].thread, NULL, work, &workers[i]))
			die("pthread_create");
	}
	for (i = 0; i < threads; i++) {
		pthread_join(workers[i].thread, NULL);
		transactions += workers[i].transactions;
		errors += workers[i].errors;
	}
	printf("%.1f %llu\n", transactions / (now_seconds() - start), errors);
	return 0;
usage:
	fprintf(stderr, "usage: loadgen client crr|rr|udp ADDR:PORT [--seconds S] [--threads N]\n");
	return 2;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "server"))
		return run_server(argc - 2, argv + 2);
	if (argc >= 2 && !strcmp(argv[1], "client"))
		return run_client(argc - 2, argv + 2);
	fprintf(stderr, "usage: loadgen server [--tcp ADDR:PORT]... [--udp ADDR:PORT]...\n"
			"       loadgen client crr|rr|udp ADDR:PORT [--seconds S] [--threads N]\n");
	return 2;
}
