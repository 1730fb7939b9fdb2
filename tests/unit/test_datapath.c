// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Unit tests of the datapath: crafted frames (and, for dh_sk_lookup,
 * socket lookups) through BPF_PROG_TEST_RUN, each test on a freshly loaded
 * (never attached, never pinned) skeleton, in a network namespace of the
 * run's own: its sockets are the only ones the programs can find.
 * Output: one "PASS name" / "FAIL name" line per test, then the summary.
 */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <net/if.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dockhost.h"
#include "dockhost.skel.h"
#include "packet.h"

#define TC_ACT_UNSPEC (-1)  /* not ours: on to the next program or filter */
#define TC_ACT_OK     0
#define TC_ACT_SHOT   2
#define LO_IFINDEX  1  /* test runs see the netns's loopback device */

#define GATEWAY   "10.0.0.1"
#define CONTAINER "10.0.0.2"

static bool failed;

#define CHECK(cond, fmt, ...)                                                         \
	do {                                                                          \
		if (!(cond)) {                                                        \
			printf("    %s:%d: %s: " fmt "\n", __FILE__, __LINE__, #cond,     \
			       ##__VA_ARGS__);                                        \
			failed = true;                                                \
		}                                                                     \
	} while (0)
#define CHECK_EQ(got, want)                                                           \
	do {                                                                          \
		unsigned long long __g = (got), __w = (want);                         \
		if (__g != __w) {                                                     \
			printf("    %s:%d: %s: got %llu (0x%llx), want %llu (0x%llx)\n", \
			       __FILE__, __LINE__, #got, __g, __g, __w, __w);         \
			failed = true;                                                \
		}                                                                     \
	} while (0)

static uint32_t ip(const char *text)
{
	uint32_t addr;

	inet_pton(AF_INET, text, &addr);
	return addr;
}

static struct iphdr *iph(struct frame *f)
{
	return (void *)(f->data + f->l3_off);
}

static uint16_t *ports(struct frame *f)
{
	return (uint16_t *)(f->data + f->l4_off);
}

/* Runs @prog_fd on @f; the frame is replaced by what the program left. */
static int run(int prog_fd, struct frame *f)
{
	struct frame out = *f;
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = f->data, .data_size_in = f->len,
		    .data_out = out.data, .data_size_out = sizeof(out.data), .repeat = 1);
	int err = bpf_prog_test_run_opts(prog_fd, &opts);

	if (err) {
		printf("    bpf_prog_test_run_opts: %s\n", strerror(-err));
		failed = true;
		return -1;
	}
	out.len = opts.data_size_out;
	*f = out;
	return opts.retval;
}

static void add_gateway(struct dockhost *skel, const char *addr)
{
	struct dh_gateway_key key = { .ifindex = LO_IFINDEX, .addr = ip(addr) };
	struct dh_gateway value = { .origin = DH_GW_BRIDGE };

	CHECK_EQ(bpf_map__update_elem(skel->maps.gateways, &key, sizeof(key), &value, sizeof(value), 0), 0);
}

static void add_port(struct dockhost *skel, uint32_t ifindex, uint8_t proto, uint16_t port,
		     const char *to_addr, uint16_t to_port)
{
	struct dh_port_key key = { .ifindex = ifindex, .port = htons(port), .proto = proto };
	struct dh_port_target target = { .addr = ip(to_addr), .port = htons(to_port) };
	int ncpus = libbpf_num_possible_cpus();
	struct dh_port_stats zero[ncpus];

	memset(zero, 0, sizeof(zero));
	CHECK_EQ(bpf_map__update_elem(skel->maps.ports, &key, sizeof(key), &target, sizeof(target), 0), 0);
	CHECK_EQ(bpf_map__update_elem(skel->maps.port_stats, &key, sizeof(key), zero, sizeof(zero), 0), 0);
}

static struct dh_counters counters(struct dockhost *skel)
{
	int ncpus = libbpf_num_possible_cpus(), cpu;
	struct dh_counters per_cpu[ncpus], sum = {};
	__u32 zero = 0;
	size_t i;

	CHECK_EQ(bpf_map__lookup_elem(skel->maps.counters, &zero, sizeof(zero), per_cpu, sizeof(per_cpu), 0), 0);
	for (cpu = 0; cpu < ncpus; cpu++)
		for (i = 0; i < sizeof(sum) / sizeof(__u64); i++)
			((__u64 *)&sum)[i] += ((__u64 *)&per_cpu[cpu])[i];
	return sum;
}

static struct dh_port_stats port_stats(struct dockhost *skel, uint32_t ifindex, uint8_t proto, uint16_t port)
{
	struct dh_port_key key = { .ifindex = ifindex, .port = htons(port), .proto = proto };
	int ncpus = libbpf_num_possible_cpus(), cpu;
	struct dh_port_stats per_cpu[ncpus], sum = {};

	if (bpf_map__lookup_elem(skel->maps.port_stats, &key, sizeof(key), per_cpu, sizeof(per_cpu), 0))
		return sum;
	for (cpu = 0; cpu < ncpus; cpu++) {
		sum.packets += per_cpu[cpu].packets;
		sum.bytes += per_cpu[cpu].bytes;
	}
	return sum;
}

static void check_checksums(struct frame *f)
{
	CHECK_EQ(ntohs(iph(f)->check), ntohs(ip_csum_expected(f)));
	if (iph(f)->protocol == IPPROTO_UDP && *l4_csum_field(f) == 0)
		return;  /* "no checksum": checked by the caller when it matters */
	CHECK_EQ(ntohs(*l4_csum_field(f)), ntohs(l4_csum_expected(f)));
}

/* Expects @prog to leave the frame untouched and to let the next program
 * see it (TC_ACT_UNSPEC: TC_ACT_OK would end a tcx chain). */
static void expect_untouched(int prog_fd, struct frame *f)
{
	struct frame before = *f;

	CHECK_EQ(run(prog_fd, f), TC_ACT_UNSPEC);
	CHECK_EQ(f->len, before.len);
	CHECK(!memcmp(f->data, before.data, before.len), "frame was modified");
}

static const struct flow tcp_to_gateway = {
	.saddr = CONTAINER, .daddr = GATEWAY, .sport = 40000, .dport = 8088, .proto = IPPROTO_TCP,
};

/* ---- tests ---------------------------------------------------------------- */

static void test_tcp_redirect(struct dockhost *skel)
{
	struct frame f;

	add_gateway(skel, GATEWAY);
	add_port(skel, 0, IPPROTO_TCP, 8088, "127.0.0.1", 8088);
	build_ipv4(&f, &tcp_to_gateway);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_ingress), &f), TC_ACT_OK);
	CHECK_EQ(iph(&f)->daddr, ip("127.0.0.1"));
	CHECK_EQ(iph(&f)->saddr, ip(CONTAINER));
	CHECK_EQ(ntohs(ports(&f)[1]), 8088);
	check_checksums(&f);
	CHECK_EQ(counters(skel).redirected, 1);
	CHECK_EQ(port_stats(skel, 0, IPPROTO_TCP, 8088).packets, 1);
	CHECK_EQ(port_stats(skel, 0, IPPROTO_TCP, 8088).bytes, f.len);
}

static void test_udp_redirect_remapped(struct dockhost *skel)
{
	struct flow fl = { .saddr = CONTAINER, .daddr = GATEWAY, .sport = 5353, .dport = 53,
			   .proto = IPPROTO_UDP, .payload = "query" };
	struct frame f;

	add_gateway(skel, GATEWAY);
	add_port(skel, 0, IPPROTO_UDP, 53, "127.0.0.53", 5300);
	build_ipv4(&f, &fl);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_ingress), &f), TC_ACT_OK);
	CHECK_EQ(iph(&f)->daddr, ip("127.0.0.53"));
	CHECK_EQ(ntohs(ports(&f)[1]), 5300);
	CHECK_EQ(ntohs(ports(&f)[0]), 5353);
	CHECK(*l4_csum_field(&f) != 0, "UDP checksum became 0 (\"none\")");
	check_checksums(&f);
}

static void test_udp_zero_checksum_stays_zero(struct dockhost *skel)
{
	struct flow fl = { .saddr = CONTAINER, .daddr = GATEWAY, .sport = 5000, .dport = 8089,
			   .proto = IPPROTO_UDP, .udp_no_csum = true, .payload = "x" };
	struct frame f;

	add_gateway(skel, GATEWAY);
	add_port(skel, 0, IPPROTO_UDP, 8089, "127.0.0.1", 9089);
	build_ipv4(&f, &fl);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_ingress), &f), TC_ACT_OK);
	CHECK_EQ(iph(&f)->daddr, ip("127.0.0.1"));
	CHECK_EQ(ntohs(ports(&f)[1]), 9089);
	CHECK_EQ(*l4_csum_field(&f), 0);
	check_checksums(&f);
}

static void test_reply_rewritten_back(struct dockhost *skel)
{
	struct flow reply = { .saddr = "127.0.0.1", .daddr = CONTAINER, .sport = 8088, .dport = 40000,
			      .proto = IPPROTO_TCP };
	struct frame f;

	add_gateway(skel, GATEWAY);
	add_port(skel, 0, IPPROTO_TCP, 8088, "127.0.0.1", 8088);
	build_ipv4(&f, &tcp_to_gateway);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_ingress), &f), TC_ACT_OK);

	build_ipv4(&f, &reply);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_egress), &f), TC_ACT_OK);
	CHECK_EQ(iph(&f)->saddr, ip(GATEWAY));
	CHECK_EQ(iph(&f)->daddr, ip(CONTAINER));
	CHECK_EQ(ntohs(ports(&f)[0]), 8088);
	check_checksums(&f);
	CHECK_EQ(counters(skel).replies_rewritten, 1);
}

static bool nat_entry(struct dockhost *skel, const char *container, uint16_t container_port,
		      const char *loopback, uint16_t loopback_port, uint8_t proto,
		      struct dh_nat_origin *origin)
{
	struct dh_nat_key key = { .ifindex = LO_IFINDEX, .container_addr = ip(container),
				  .loopback_addr = ip(loopback), .container_port = htons(container_port),
				  .loopback_port = htons(loopback_port), .proto = proto };
	struct dh_nat_origin unused;

	return bpf_map__lookup_elem(skel->maps.nat_state, &key, sizeof(key), origin ? origin : &unused,
				    sizeof(unused), 0) == 0;
}

/* Expects @f to be exactly the frame @want describes (every byte, both
 * checksums recomputed from scratch). */
static void expect_frame(const struct frame *f, const struct flow *want)
{
	struct frame expected;

	build_ipv4(&expected, want);
	CHECK_EQ(f->len, expected.len);
	if (f->len == expected.len && memcmp(f->data, expected.data, f->len)) {
		printf("    frame differs; got:\n");
		hex_dump("      ", f->data, f->len);
		printf("    want:\n");
		hex_dump("      ", expected.data, expected.len);
		failed = true;
	}
}

/* The LRU may evict a live flow: any later segment of it (not only a SYN)
 * records it again, so the replies find their way back. */
static void test_tcp_flow_recreated_by_any_segment(struct dockhost *skel)
{
	struct flow ack = tcp_to_gateway, reply = { .saddr = "127.0.0.7", .daddr = CONTAINER, .sport = 6543,
						   .dport = 40000, .proto = IPPROTO_TCP, .tcp_flags = 0x18,
						   .payload = "data" };
	struct flow want = reply, rst = tcp_to_gateway;
	struct dh_nat_origin origin;
	struct frame f;

	ack.tcp_flags = 0x10;
	ack.dport = 5432;
	add_gateway(skel, GATEWAY);
	add_port(skel, 0, IPPROTO_TCP, 5432, "127.0.0.7", 6543);

	/* Mid-flow segment, no state (evicted): redirected and recorded. */
	build_ipv4(&f, &ack);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_ingress), &f), TC_ACT_OK);
	CHECK_EQ(iph(&f)->daddr, ip("127.0.0.7"));
	CHECK_EQ(counters(skel).flows_recreated, 1);
	CHECK(nat_entry(skel, CONTAINER, 40000, "127.0.0.7", 6543, IPPROTO_TCP, &origin), "no entry");
	CHECK_EQ(origin.gateway_addr, ip(GATEWAY));
	CHECK_EQ(ntohs(origin.gateway_port), 5432);
	CHECK_EQ(origin.flags, 0);
	build_ipv4(&f, &reply);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_egress), &f), TC_ACT_OK);
	want.saddr = GATEWAY;
	want.sport = 5432;
	expect_frame(&f, &want);

	/* Once it is there, further segments only look it up. */
	build_ipv4(&f, &ack);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_ingress), &f), TC_ACT_OK);
	CHECK_EQ(counters(skel).flows_recreated, 1);

	/* A lone RST needs no reply: redirected, nothing recorded. */
	rst.sport = 40001;
	rst.dport = 5432;
	rst.tcp_flags = 0x04;
	build_ipv4(&f, &rst);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_ingress), &f), TC_ACT_OK);
	CHECK(!nat_entry(skel, CONTAINER, 40001, "127.0.0.7", 6543, IPPROTO_TCP, NULL), "RST recorded");
}

/*
 * A segment from loopback whose flow was evicted, the container silent
 * (waiting for the service): it must not hang. The mapped port's target
 * without a port change says which service; it leaves from the bridge's
 * primary gateway and the flow is recorded as guessed.
 */
static void test_reply_without_state_gets_primary_gateway(struct dockhost *skel)
{
	struct flow reply = { .saddr = "127.0.0.1", .daddr = CONTAINER, .sport = 8088, .dport = 40000,
			      .proto = IPPROTO_TCP, .tcp_flags = 0x18, .payload = "late" };
	struct flow want = reply, req = tcp_to_gateway;
	struct dh_gateway_key key = { .ifindex = LO_IFINDEX, .addr = ip("10.0.0.0") };
	struct dh_gateway value = { .origin = DH_GW_DOCKER0 };
	struct dh_nat_origin origin;
	struct frame f;

	/* Lower than GATEWAY but docker0's; 10.0.0.200 the bridge's own too. */
	CHECK_EQ(bpf_map__update_elem(skel->maps.gateways, &key, sizeof(key), &value, sizeof(value), 0), 0);
	add_gateway(skel, "10.0.0.200");
	add_gateway(skel, GATEWAY);
	add_port(skel, 0, IPPROTO_TCP, 8088, "127.0.0.1", 8088);

	build_ipv4(&f, &reply);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_egress), &f), TC_ACT_OK);
	want.saddr = GATEWAY;
	expect_frame(&f, &want);
	CHECK_EQ(counters(skel).replies_guessed, 1);
	CHECK(nat_entry(skel, CONTAINER, 40000, "127.0.0.1", 8088, IPPROTO_TCP, &origin), "no entry");
	CHECK_EQ(origin.gateway_addr, ip(GATEWAY));
	CHECK_EQ(origin.flags, DH_NAT_GUESSED);
	/* The next reply finds the entry. */
	build_ipv4(&f, &reply);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_egress), &f), TC_ACT_OK);
	expect_frame(&f, &want);
	CHECK_EQ(counters(skel).replies_rewritten, 1);

	/* The container really used docker0's address: its next segment
	 * replaces the guess. */
	req.daddr = "10.0.0.0";
	req.tcp_flags = 0x10;
	build_ipv4(&f, &req);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_ingress), &f), TC_ACT_OK);
	CHECK(nat_entry(skel, CONTAINER, 40000, "127.0.0.1", 8088, IPPROTO_TCP, &origin), "no entry");
	CHECK_EQ(origin.gateway_addr, ip("10.0.0.0"));
	CHECK_EQ(origin.flags, 0);
	CHECK_EQ(counters(skel).dropped_reply_no_state, 0);
}

static void test_reply_without_state_not_guessed(struct dockhost *skel)
{
	struct flow syn = { .saddr = "127.0.0.1", .daddr = CONTAINER, .sport = 8088, .dport = 40000,
			    .proto = IPPROTO_TCP, .tcp_flags = 0x02 };
	struct flow remapped = { .saddr = "127.0.0.1", .daddr = CONTAINER, .sport = 9000, .dport = 40000,
				 .proto = IPPROTO_TCP, .tcp_flags = 0x10 };
	struct flow other_addr = remapped, udp = remapped, overridden = remapped;
	struct frame f;

	add_gateway(skel, GATEWAY);
	add_port(skel, 0, IPPROTO_TCP, 8088, "127.0.0.1", 8088);
	add_port(skel, 0, IPPROTO_TCP, 8090, "127.0.0.1", 9000);  /* a port change: not reversible */
	add_port(skel, 0, IPPROTO_TCP, 8091, "127.0.0.2", 8091);
	add_port(skel, 0, IPPROTO_UDP, 8092, "127.0.0.1", 8092);
	add_port(skel, 0, IPPROTO_TCP, 8093, "127.0.0.1", 8093);
	add_port(skel, LO_IFINDEX, IPPROTO_TCP, 8093, "127.0.0.1", 9093);  /* overrides it here */
	other_addr.sport = 8091;  /* mapped to 127.0.0.2, sent from 127.0.0.1 */
	udp.proto = IPPROTO_UDP;
	udp.sport = 8092;
	overridden.sport = 8093;

	build_ipv4(&f, &syn);  /* the host opening a connection */
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_egress), &f), TC_ACT_SHOT);
	build_ipv4(&f, &remapped);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_egress), &f), TC_ACT_SHOT);
	build_ipv4(&f, &other_addr);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_egress), &f), TC_ACT_SHOT);
	build_ipv4(&f, &udp);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_egress), &f), TC_ACT_SHOT);
	build_ipv4(&f, &overridden);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_egress), &f), TC_ACT_SHOT);
	CHECK_EQ(counters(skel).dropped_reply_no_state, 5);
	CHECK_EQ(counters(skel).replies_guessed, 0);
}

/* One container starting more new flows than its share is refused; its
 * neighbours are not. */
static void test_source_limited_to_its_share(struct dockhost *skel)
{
	struct flow syn = { .saddr = CONTAINER, .daddr = GATEWAY, .dport = 8088, .proto = IPPROTO_TCP };
	struct flow other = syn;
	int prog = bpf_program__fd(skel->progs.dh_ingress), verdict = TC_ACT_OK;
	uint32_t i;
	struct frame f;

	add_gateway(skel, GATEWAY);
	add_port(skel, 0, IPPROTO_TCP, 8088, "127.0.0.1", 8088);
	/* A window may end during the loop: then the drop comes later, but
	 * no later than two windows' worth. */
	for (i = 0; i <= 2 * DH_NAT_SOURCE_MAX && verdict == TC_ACT_OK; i++) {
		syn.sport = 1024 + i % 60000;
		build_ipv4(&f, &syn);
		verdict = run(prog, &f);
	}
	CHECK_EQ(verdict, TC_ACT_SHOT);
	CHECK(i > DH_NAT_SOURCE_MAX, "refused after %u flows, the share is %u", i, DH_NAT_SOURCE_MAX);
	CHECK_EQ(counters(skel).dropped_nat_source_limit, 1);
	CHECK(!nat_entry(skel, CONTAINER, syn.sport, "127.0.0.1", 8088, IPPROTO_TCP, NULL),
	      "refused flow recorded");
	other.saddr = "10.0.0.3";
	other.sport = 40000;
	build_ipv4(&f, &other);
	CHECK_EQ(run(prog, &f), TC_ACT_OK);
}

/* Connection churn is never limited: a flow the service closed gives its
 * share back (make bench's CRR opens thousands a second from one source). */
static void test_closed_flows_give_their_share_back(struct dockhost *skel)
{
	struct flow syn = { .saddr = CONTAINER, .daddr = GATEWAY, .dport = 8088, .proto = IPPROTO_TCP };
	struct flow fin = { .saddr = "127.0.0.1", .daddr = CONTAINER, .sport = 8088, .proto = IPPROTO_TCP,
			    .tcp_flags = 0x11 };
	int in = bpf_program__fd(skel->progs.dh_ingress), out = bpf_program__fd(skel->progs.dh_egress);
	uint32_t i, refused = 0;
	struct frame f;

	add_gateway(skel, GATEWAY);
	add_port(skel, 0, IPPROTO_TCP, 8088, "127.0.0.1", 8088);
	for (i = 0; i < DH_NAT_SOURCE_MAX + 256; i++) {
		syn.sport = fin.dport = 1024 + i;
		build_ipv4(&f, &syn);
		refused += run(in, &f) != TC_ACT_OK;
		build_ipv4(&f, &fin);
		refused += run(out, &f) != TC_ACT_OK;
	}
	CHECK_EQ(refused, 0);
	/* And a closed flow's ports taken again (after TIME_WAIT) work. */
	syn.sport = fin.dport = 1024;
	build_ipv4(&f, &syn);
	CHECK_EQ(run(in, &f), TC_ACT_OK);
	CHECK_EQ(counters(skel).dropped_nat_source_limit, 0);
}

/* Moves a flow's last request @units (about seconds) into the past. */
static void age_flow(struct dockhost *skel, const char *container, uint16_t container_port,
		     const char *loopback, uint16_t loopback_port, uint8_t proto, uint32_t units)
{
	struct dh_nat_key key = { .ifindex = LO_IFINDEX, .container_addr = ip(container),
				  .loopback_addr = ip(loopback), .container_port = htons(container_port),
				  .loopback_port = htons(loopback_port), .proto = proto };
	struct dh_nat_origin origin;

	CHECK_EQ(bpf_map__lookup_elem(skel->maps.nat_state, &key, sizeof(key), &origin, sizeof(origin), 0), 0);
	origin.seen -= units;
	CHECK_EQ(bpf_map__update_elem(skel->maps.nat_state, &key, sizeof(key), &origin, sizeof(origin), 0), 0);
}

/* One UDP socket talking to two gateway addresses: the second may not
 * take the flow over while it lives, or the first one's replies would come
 * from the wrong address. */
static void test_udp_origin_kept_while_live(struct dockhost *skel)
{
	struct flow req = { .saddr = CONTAINER, .daddr = GATEWAY, .sport = 5353, .dport = 53,
			    .proto = IPPROTO_UDP, .payload = "q1" };
	struct flow reply = { .saddr = "127.0.0.53", .daddr = CONTAINER, .sport = 5300, .dport = 5353,
			      .proto = IPPROTO_UDP, .payload = "a1" };
	struct flow other = req, want = reply;
	struct dh_nat_origin origin;
	struct frame f;

	add_gateway(skel, GATEWAY);
	add_gateway(skel, "172.17.0.1");
	add_port(skel, 0, IPPROTO_UDP, 53, "127.0.0.53", 5300);
	build_ipv4(&f, &req);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_ingress), &f), TC_ACT_OK);
	other.daddr = "172.17.0.1";
	build_ipv4(&f, &other);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_ingress), &f), TC_ACT_SHOT);
	CHECK_EQ(counters(skel).flow_origin_conflicts, 1);
	CHECK_EQ(counters(skel).redirected, 1);
	build_ipv4(&f, &reply);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_egress), &f), TC_ACT_OK);
	want.saddr = GATEWAY;
	want.sport = 53;
	expect_frame(&f, &want);

	/* Idle for longer than the UDP timeout: the flow is over, and the
	 * next datagram starts it again from wherever it is sent. */
	age_flow(skel, CONTAINER, 5353, "127.0.0.53", 5300, IPPROTO_UDP, DH_NAT_UDP_IDLE + 1);
	build_ipv4(&f, &other);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_ingress), &f), TC_ACT_OK);
	CHECK(nat_entry(skel, CONTAINER, 5353, "127.0.0.53", 5300, IPPROTO_UDP, &origin), "no entry");
	CHECK_EQ(origin.gateway_addr, ip("172.17.0.1"));
	CHECK_EQ(counters(skel).flow_origin_conflicts, 1);
}

/* A SYN for a live TCP flow through another gateway (a neighbour spoofing
 * the victim's address and port) changes nothing; after the service
 * closed the flow, the same ports may start a new one anywhere. */
static void test_tcp_origin_kept_while_live(struct dockhost *skel)
{
	struct flow syn = tcp_to_gateway, spoofed = tcp_to_gateway;
	struct flow reply = { .saddr = "127.0.0.1", .daddr = CONTAINER, .sport = 8088, .dport = 40000,
			      .proto = IPPROTO_TCP, .tcp_flags = 0x10 };
	struct flow fin = reply, ack = tcp_to_gateway, want = reply;
	struct dh_nat_origin origin;
	struct frame f;

	add_gateway(skel, GATEWAY);
	add_gateway(skel, "172.17.0.1");
	add_port(skel, 0, IPPROTO_TCP, 8088, "127.0.0.1", 8088);
	build_ipv4(&f, &syn);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_ingress), &f), TC_ACT_OK);
	spoofed.daddr = "172.17.0.1";
	build_ipv4(&f, &spoofed);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_ingress), &f), TC_ACT_SHOT);
	ack.daddr = "172.17.0.1";
	ack.tcp_flags = 0x10;
	build_ipv4(&f, &ack);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_ingress), &f), TC_ACT_SHOT);
	CHECK_EQ(counters(skel).flow_origin_conflicts, 2);
	build_ipv4(&f, &reply);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_egress), &f), TC_ACT_OK);
	want.saddr = GATEWAY;
	expect_frame(&f, &want);

	/* The service closes; the container reuses the ports via docker0's
	 * address (a new connection after TIME_WAIT). */
	fin.tcp_flags = 0x11;
	build_ipv4(&f, &fin);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_egress), &f), TC_ACT_OK);
	build_ipv4(&f, &spoofed);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_ingress), &f), TC_ACT_OK);
	CHECK(nat_entry(skel, CONTAINER, 40000, "127.0.0.1", 8088, IPPROTO_TCP, &origin), "no entry");
	CHECK_EQ(origin.gateway_addr, ip("172.17.0.1"));
	CHECK_EQ(origin.flags, 0);

	/* Silent for longer than DH_NAT_TCP_IDLE: a SYN may move it again,
	 * but a mid-flow segment never does. */
	age_flow(skel, CONTAINER, 40000, "127.0.0.1", 8088, IPPROTO_TCP, DH_NAT_TCP_IDLE + 1);
	ack.daddr = GATEWAY;
	build_ipv4(&f, &ack);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_ingress), &f), TC_ACT_SHOT);
	build_ipv4(&f, &syn);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_ingress), &f), TC_ACT_OK);
	CHECK(nat_entry(skel, CONTAINER, 40000, "127.0.0.1", 8088, IPPROTO_TCP, &origin), "no entry");
	CHECK_EQ(origin.gateway_addr, ip(GATEWAY));
	CHECK_EQ(counters(skel).flow_origin_conflicts, 3);
}

static void test_remapped_reply_gets_gateway_port(struct dockhost *skel)
{
	struct flow req = { .saddr = CONTAINER, .daddr = GATEWAY, .sport = 41000, .dport = 5432,
			    .proto = IPPROTO_UDP, .payload = "hi" };
	struct flow reply = { .saddr = "127.0.0.7", .daddr = CONTAINER, .sport = 6543, .dport = 41000,
			      .proto = IPPROTO_UDP, .payload = "hello" };
	struct frame f;

	add_gateway(skel, GATEWAY);
	add_port(skel, 0, IPPROTO_UDP, 5432, "127.0.0.7", 6543);
	build_ipv4(&f, &req);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_ingress), &f), TC_ACT_OK);
	build_ipv4(&f, &reply);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_egress), &f), TC_ACT_OK);
	CHECK_EQ(iph(&f)->saddr, ip(GATEWAY));
	CHECK_EQ(ntohs(ports(&f)[0]), 5432);
	check_checksums(&f);
}

static void test_reply_without_flow_dropped(struct dockhost *skel)
{
	struct flow stray = { .saddr = "127.0.0.1", .daddr = CONTAINER, .sport = 9999, .dport = 40000,
			      .proto = IPPROTO_TCP };
	struct flow icmp = { .saddr = "127.0.0.1", .daddr = CONTAINER, .proto = IPPROTO_ICMP };
	struct frame f;

	build_ipv4(&f, &stray);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_egress), &f), TC_ACT_SHOT);
	build_ipv4(&f, &icmp);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_egress), &f), TC_ACT_SHOT);
	CHECK_EQ(counters(skel).dropped_reply_no_state, 2);
}

/* The kernel's "port unreachable" from the loopback target quotes the
 * rewritten request; after egress the quote must be exactly what the
 * container sent, so its socket recognises the error. */
static void test_icmp_error_quote_restored(struct dockhost *skel)
{
	struct flow req = { .saddr = CONTAINER, .daddr = GATEWAY, .sport = 41000, .dport = 8089,
			    .proto = IPPROTO_UDP, .payload = "hello?" };
	struct frame sent, rewritten, f;

	add_gateway(skel, GATEWAY);
	add_port(skel, 0, IPPROTO_UDP, 8089, "127.0.0.3", 9089);
	build_ipv4(&sent, &req);
	rewritten = sent;
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_ingress), &rewritten), TC_ACT_OK);

	build_icmp_error(&f, "127.0.0.3", CONTAINER, 3 /* dest unreachable */, 3 /* port */, &rewritten);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_egress), &f), TC_ACT_OK);
	CHECK_EQ(iph(&f)->saddr, ip(GATEWAY));
	CHECK_EQ(ntohs(iph(&f)->check), ntohs(ip_csum_expected(&f)));
	CHECK(icmp_csum_valid(&f), "ICMP checksum wrong");
	CHECK(!memcmp(f.data + f.l4_off + 8, sent.data + sent.l3_off, ICMP_QUOTE_LEN),
	      "quote differs from what the container sent");
	CHECK_EQ(counters(skel).icmp_errors_rewritten, 1);
}

static void test_icmp_error_tcp_quote_restored(struct dockhost *skel)
{
	struct frame sent, rewritten, f;

	add_gateway(skel, GATEWAY);
	add_port(skel, 0, IPPROTO_TCP, 8088, "127.0.0.1", 8088);
	build_ipv4(&sent, &tcp_to_gateway);
	rewritten = sent;
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_ingress), &rewritten), TC_ACT_OK);
	build_icmp_error(&f, "127.0.0.1", CONTAINER, 3, 4 /* frag needed */, &rewritten);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_egress), &f), TC_ACT_OK);
	CHECK(icmp_csum_valid(&f), "ICMP checksum wrong");
	CHECK(!memcmp(f.data + f.l4_off + 8, sent.data + sent.l3_off, ICMP_QUOTE_LEN),
	      "quote differs from what the container sent");
}

static void test_icmp_error_for_unknown_flow_dropped(struct dockhost *skel)
{
	struct flow other = { .saddr = CONTAINER, .daddr = "127.0.0.1", .sport = 1, .dport = 2,
			      .proto = IPPROTO_UDP };
	struct frame cause, f;

	build_ipv4(&cause, &other);
	build_icmp_error(&f, "127.0.0.1", CONTAINER, 3, 3, &cause);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_egress), &f), TC_ACT_SHOT);
	build_icmp_error(&f, "127.0.0.1", CONTAINER, 0 /* echo reply */, 0, &cause);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_egress), &f), TC_ACT_SHOT);
	CHECK_EQ(counters(skel).dropped_reply_no_state, 2);
}

static void test_egress_non_loopback_untouched(struct dockhost *skel)
{
	struct flow fl = { .saddr = GATEWAY, .daddr = CONTAINER, .sport = 22, .dport = 40000,
			   .proto = IPPROTO_TCP };
	struct frame f;

	build_ipv4(&f, &fl);
	expect_untouched(bpf_program__fd(skel->progs.dh_egress), &f);
}

static void test_unmapped_port_untouched(struct dockhost *skel)
{
	struct flow fl = tcp_to_gateway;
	struct frame f;

	fl.dport = 8089;
	add_gateway(skel, GATEWAY);
	add_port(skel, 0, IPPROTO_TCP, 8088, "127.0.0.1", 8088);
	add_port(skel, 0, IPPROTO_UDP, 8089, "127.0.0.1", 8089);  /* other proto */
	build_ipv4(&f, &fl);
	expect_untouched(bpf_program__fd(skel->progs.dh_ingress), &f);
	CHECK_EQ(counters(skel).passed, 1);
	CHECK_EQ(counters(skel).redirected, 0);
}

static void set_mode(struct dockhost *skel, __u32 mode)
{
	__u32 key = LO_IFINDEX;
	struct dh_bridge_mode value = { .mode = mode };

	CHECK_EQ(bpf_map__update_elem(skel->maps.modes, &key, sizeof(key), &value, sizeof(value), 0), 0);
}

/* Socket mode with nothing listening at the target: the packet goes on as
 * it came (the kernel refuses it from the gateway), no rewrite, no flow
 * state; TCP and UDP. */
static void test_socket_mode_no_socket_untouched(struct dockhost *skel)
{
	struct flow fl = tcp_to_gateway;
	struct frame f;

	set_mode(skel, DH_MODE_SOCKET);
	add_gateway(skel, GATEWAY);
	add_port(skel, 0, IPPROTO_TCP, 8088, "127.0.0.1", 8088);
	add_port(skel, 0, IPPROTO_UDP, 8088, "127.0.0.1", 8088);
	build_ipv4(&f, &fl);
	expect_untouched(bpf_program__fd(skel->progs.dh_ingress), &f);
	fl.proto = IPPROTO_UDP;
	build_ipv4(&f, &fl);
	expect_untouched(bpf_program__fd(skel->progs.dh_ingress), &f);
	CHECK_EQ(counters(skel).passed_no_socket, 2);
	CHECK_EQ(counters(skel).redirected, 0);
	CHECK_EQ(counters(skel).assigned, 0);
	{
		struct dh_nat_key key, next;

		CHECK(bpf_map__get_next_key(skel->maps.nat_state, NULL, &next, sizeof(key)) != 0,
		      "socket mode wrote nat_state");
	}
}

/* The guard runs first in socket mode too. */
static void test_socket_mode_guard_first(struct dockhost *skel)
{
	struct flow fl = { .saddr = CONTAINER, .daddr = "127.0.0.1", .sport = 1, .dport = 8088,
			   .proto = IPPROTO_TCP };
	struct frame f;

	set_mode(skel, DH_MODE_SOCKET);
	add_gateway(skel, GATEWAY);
	add_port(skel, 0, IPPROTO_TCP, 8088, "127.0.0.1", 8088);
	build_ipv4(&f, &fl);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_ingress), &f), TC_ACT_SHOT);
	fl.saddr = "127.0.0.1";
	fl.daddr = GATEWAY;
	build_ipv4(&f, &fl);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_ingress), &f), TC_ACT_SHOT);
	CHECK_EQ(counters(skel).dropped_loopback_dst, 1);
	CHECK_EQ(counters(skel).dropped_loopback_src, 1);
}

/* Socket mode's egress rewrites nothing: a loopback-sourced segment that
 * NAT mode would guess a gateway for is dropped. */
static void test_socket_mode_egress_never_rewrites(struct dockhost *skel)
{
	struct flow fl = { .saddr = "127.0.0.1", .daddr = CONTAINER, .sport = 8088, .dport = 40000,
			   .proto = IPPROTO_TCP, .tcp_flags = 0x10 /* ACK */ };
	struct frame f;

	set_mode(skel, DH_MODE_SOCKET);
	add_gateway(skel, GATEWAY);
	add_port(skel, 0, IPPROTO_TCP, 8088, "127.0.0.1", 8088);
	build_ipv4(&f, &fl);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_egress), &f), TC_ACT_SHOT);
	CHECK_EQ(counters(skel).replies_guessed, 0);
	CHECK_EQ(counters(skel).dropped_reply_no_state, 1);
	/* A reply from the gateway (what socket mode sends) is not ours. */
	fl.saddr = GATEWAY;
	build_ipv4(&f, &fl);
	expect_untouched(bpf_program__fd(skel->progs.dh_egress), &f);
}

static void test_non_gateway_destination_untouched(struct dockhost *skel)
{
	struct flow fl = tcp_to_gateway;
	struct frame f;

	fl.daddr = "10.9.9.9";  /* a remote host on a mapped port: never hijacked */
	add_gateway(skel, GATEWAY);
	add_port(skel, 0, IPPROTO_TCP, 8088, "127.0.0.1", 8088);
	build_ipv4(&f, &fl);
	expect_untouched(bpf_program__fd(skel->progs.dh_ingress), &f);
}

static void test_gateway_of_other_bridge_untouched(struct dockhost *skel)
{
	struct dh_gateway_key key = { .ifindex = 77, .addr = ip(GATEWAY) };
	struct dh_gateway value = { .origin = DH_GW_BRIDGE };
	struct frame f;

	bpf_map__update_elem(skel->maps.gateways, &key, sizeof(key), &value, sizeof(value), 0);
	add_port(skel, 0, IPPROTO_TCP, 8088, "127.0.0.1", 8088);
	build_ipv4(&f, &tcp_to_gateway);
	expect_untouched(bpf_program__fd(skel->progs.dh_ingress), &f);
}

static void test_bridge_entry_overrides_global(struct dockhost *skel)
{
	struct frame f;

	add_gateway(skel, GATEWAY);
	add_port(skel, 0, IPPROTO_TCP, 8088, "127.0.0.1", 8088);
	add_port(skel, LO_IFINDEX, IPPROTO_TCP, 8088, "127.0.0.9", 9000);
	build_ipv4(&f, &tcp_to_gateway);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_ingress), &f), TC_ACT_OK);
	CHECK_EQ(iph(&f)->daddr, ip("127.0.0.9"));
	CHECK_EQ(ntohs(ports(&f)[1]), 9000);
	check_checksums(&f);
	CHECK_EQ(port_stats(skel, LO_IFINDEX, IPPROTO_TCP, 8088).packets, 1);
	CHECK_EQ(port_stats(skel, 0, IPPROTO_TCP, 8088).packets, 0);
}

static void test_loopback_source_dropped(struct dockhost *skel)
{
	static const uint8_t protos[] = { IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP };
	struct frame f;
	size_t i;

	add_gateway(skel, GATEWAY);
	add_port(skel, 0, IPPROTO_TCP, 8088, "127.0.0.1", 8088);
	for (i = 0; i < sizeof(protos); i++) {
		struct flow fl = { .saddr = "127.0.0.1", .daddr = GATEWAY, .sport = 1, .dport = 8088,
				   .proto = protos[i] };

		build_ipv4(&f, &fl);
		CHECK_EQ(run(bpf_program__fd(skel->progs.dh_ingress), &f), TC_ACT_SHOT);
	}
	CHECK_EQ(counters(skel).dropped_loopback_src, 3);
}

static void test_loopback_destination_dropped(struct dockhost *skel)
{
	static const char *const dsts[] = { "127.0.0.1", "127.255.255.254", "127.1.2.3" };
	static const uint8_t protos[] = { IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP };
	struct frame f;
	size_t i;

	/* No port mapped at all: the guard does not depend on configuration. */
	for (i = 0; i < 3; i++) {
		struct flow fl = { .saddr = CONTAINER, .daddr = dsts[i], .sport = 1, .dport = 9999,
				   .proto = protos[i] };

		build_ipv4(&f, &fl);
		CHECK_EQ(run(bpf_program__fd(skel->progs.dh_ingress), &f), TC_ACT_SHOT);
	}
	CHECK_EQ(counters(skel).dropped_loopback_dst, 3);
}

static void test_ipv6_and_arp_untouched(struct dockhost *skel)
{
	struct frame f = {};
	struct ethhdr *eth = (void *)f.data;

	add_gateway(skel, GATEWAY);
	eth->h_proto = htons(ETH_P_IPV6);
	f.len = 14 + 40 + 20;
	f.data[14] = 0x60;
	expect_untouched(bpf_program__fd(skel->progs.dh_ingress), &f);
	expect_untouched(bpf_program__fd(skel->progs.dh_egress), &f);

	memset(&f, 0, sizeof(f));
	eth->h_proto = htons(ETH_P_ARP);
	f.len = 14 + 28;
	expect_untouched(bpf_program__fd(skel->progs.dh_ingress), &f);
	expect_untouched(bpf_program__fd(skel->progs.dh_egress), &f);
}

static void test_truncated_headers_untouched(struct dockhost *skel)
{
	struct flow udp = { .saddr = CONTAINER, .daddr = GATEWAY, .sport = 1, .dport = 8089,
			    .proto = IPPROTO_UDP };
	struct frame f;

	add_gateway(skel, GATEWAY);
	add_port(skel, 0, IPPROTO_TCP, 8088, "127.0.0.1", 8088);
	add_port(skel, 0, IPPROTO_UDP, 8089, "127.0.0.1", 8089);

	build_ipv4(&f, &tcp_to_gateway);
	/* (A frame cut inside the IPv4 header never reaches tc: the test run
	 * refuses it as the stack's ip_rcv would.) */
	f.len = f.l4_off;  /* IPv4 header, no TCP header at all */
	expect_untouched(bpf_program__fd(skel->progs.dh_ingress), &f);

	build_ipv4(&f, &tcp_to_gateway);
	f.len = f.l4_off + 10;  /* ports present, TCP checksum not */
	expect_untouched(bpf_program__fd(skel->progs.dh_ingress), &f);

	build_ipv4(&f, &udp);
	f.len = f.l4_off + 4;  /* UDP without length and checksum */
	expect_untouched(bpf_program__fd(skel->progs.dh_ingress), &f);
	CHECK_EQ(counters(skel).redirected, 0);
}

/* What the guard cannot read it drops (ip_rcv would drop these too). */
static void test_malformed_ipv4_dropped(struct dockhost *skel)
{
	struct frame f;

	add_gateway(skel, GATEWAY);
	add_port(skel, 0, IPPROTO_TCP, 8088, "127.0.0.1", 8088);
	build_ipv4(&f, &tcp_to_gateway);
	iph(&f)->ihl = 4;  /* shorter than the minimum header */
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_ingress), &f), TC_ACT_SHOT);
	build_ipv4(&f, &tcp_to_gateway);
	iph(&f)->version = 6;  /* IPv4 ethertype, IPv6 version */
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_ingress), &f), TC_ACT_SHOT);
	CHECK_EQ(counters(skel).dropped_malformed, 2);
	build_ipv4(&f, &tcp_to_gateway);
	iph(&f)->ihl = 15;  /* options run past the end of the frame */
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_ingress), &f), TC_ACT_SHOT);
	CHECK_EQ(counters(skel).dropped_ip_options, 1);
	CHECK_EQ(counters(skel).redirected, 0);
}

/*
 * Tag stacks as the bridge device's tc sees them (the veth moved any outer
 * tag into skb metadata; what remains is in the frame). The kernel strips
 * VID-0 tags after tc and delivers the inner IPv4 on the bridge, so the
 * guard must judge the inner header at any depth it walks.
 */
static void test_vlan_tag_stacks(struct dockhost *skel)
{
	static const struct {
		const char *what;
		int n;
		uint16_t tpids[5], vids[5];
		const char *daddr;
		int verdict;
	} cases[] = {
		{ "one 8100/0 to loopback", 1, { 0x8100 }, { 0 }, "127.0.0.1", TC_ACT_SHOT },
		{ "8100/0 8100/0 to loopback", 2, { 0x8100, 0x8100 }, { 0, 0 }, "127.0.0.1", TC_ACT_SHOT },
		{ "88a8/0 8100/0 to loopback", 2, { 0x88a8, 0x8100 }, { 0, 0 }, "127.0.0.1", TC_ACT_SHOT },
		{ "three VID-0 tags to loopback", 3, { 0x8100, 0x8100, 0x8100 }, { 0, 0, 0 }, "127.1.2.3",
		  TC_ACT_SHOT },
		{ "VID 5 then VID 0 to loopback", 2, { 0x88a8, 0x8100 }, { 5, 0 }, "127.0.0.1", TC_ACT_SHOT },
		{ "four tags (the most walked) to loopback", 4, { 0x8100, 0x8100, 0x8100, 0x8100 },
		  { 0, 0, 0, 0 }, "127.0.0.1", TC_ACT_SHOT },
		{ "five tags, deeper than walked", 5, { 0x8100, 0x8100, 0x8100, 0x8100, 0x8100 },
		  { 0, 0, 0, 0, 0 }, GATEWAY, TC_ACT_SHOT },
		{ "two tags to the gateway: passed, never redirected", 2, { 0x8100, 0x8100 }, { 0, 0 },
		  GATEWAY, TC_ACT_UNSPEC },
		{ "VLAN 10 traffic to another host", 1, { 0x8100 }, { 10 }, "10.9.9.9", TC_ACT_UNSPEC },
	};
	struct flow fl = tcp_to_gateway;
	struct frame f, before;
	size_t i;

	add_gateway(skel, GATEWAY);
	add_port(skel, 0, IPPROTO_TCP, 8088, "127.0.0.1", 8088);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got;

		fl.daddr = cases[i].daddr;
		build_ipv4(&f, &fl);
		push_vlan_tags(&f, cases[i].tpids, cases[i].vids, cases[i].n);
		before = f;
		got = run(bpf_program__fd(skel->progs.dh_ingress), &f);
		CHECK(got == cases[i].verdict, "%s: verdict %d, want %d", cases[i].what, got, cases[i].verdict);
		CHECK(!memcmp(f.data, before.data, before.len), "%s: frame modified", cases[i].what);
	}
	CHECK_EQ(counters(skel).dropped_loopback_dst, 6);
	CHECK_EQ(counters(skel).dropped_vlan_too_deep, 1);
	CHECK_EQ(counters(skel).passed_tagged, 2);
	CHECK_EQ(counters(skel).redirected, 0);

	/* A tag cut short: ip_rcv never sees it, and neither does anything else. */
	build_ipv4(&f, &fl);
	push_vlan_tags(&f, (uint16_t[]){ 0x8100, 0x8100 }, (uint16_t[]){ 0, 0 }, 2);
	f.len = 14 + 4 + 2;
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_ingress), &f), TC_ACT_SHOT);
	CHECK_EQ(counters(skel).dropped_malformed, 1);

	/* Nor a stack deeper than walked, or a header that cannot be read:
	 * its source might be loopback, and the host's stack makes neither. */
	build_ipv4(&f, &fl);
	push_vlan_tags(&f, (uint16_t[]){ 0x8100, 0x8100, 0x8100, 0x8100, 0x8100 },
		       (uint16_t[]){ 0, 0, 0, 0, 0 }, 5);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_egress), &f), TC_ACT_SHOT);
	CHECK_EQ(counters(skel).dropped_vlan_too_deep, 2);
	build_ipv4(&f, &fl);
	iph(&f)->ihl = 4;
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_egress), &f), TC_ACT_SHOT);
	CHECK_EQ(counters(skel).dropped_malformed, 2);

	/* A tagged loopback-sourced frame never leaves: replies are untagged. */
	fl = (struct flow){ .saddr = "127.0.0.1", .daddr = CONTAINER, .sport = 8088, .dport = 40000,
			    .proto = IPPROTO_TCP };
	build_ipv4(&f, &fl);
	push_vlan_tags(&f, (uint16_t[]){ 0x8100 }, (uint16_t[]){ 0 }, 1);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_egress), &f), TC_ACT_SHOT);
}

/* LSRR/SSRR could steer a packet aimed at the gateway on to 127/8 after tc
 * (accept_source_route=1); other options are harmless and stay redirectable. */
static void test_source_route_options_dropped(struct dockhost *skel)
{
	static const struct {
		const char *what;
		uint8_t opts[8];
		int verdict;
	} cases[] = {
		{ "LSRR via 127.0.0.1", { 131, 7, 4, 127, 0, 0, 1, 0 }, TC_ACT_SHOT },
		{ "SSRR via 127.0.0.1", { 137, 7, 4, 127, 0, 0, 1, 0 }, TC_ACT_SHOT },
		{ "NOP, NOP, then LSRR", { 1, 1, 131, 3, 4, 0, 0, 0 }, TC_ACT_SHOT },
		{ "option length 1", { 7, 1, 0, 0, 0, 0, 0, 0 }, TC_ACT_SHOT },
		{ "option past the header", { 7, 11, 4, 0, 0, 0, 0, 0 }, TC_ACT_SHOT },
		{ "record route", { 7, 7, 4, 0, 0, 0, 0, 0 }, TC_ACT_OK },
		{ "LSRR after the end of options", { 0, 131, 7, 4, 127, 0, 0, 1 }, TC_ACT_OK },
	};
	struct flow fl = tcp_to_gateway;
	struct frame f;
	size_t i;

	fl.ip_option_words = 2;
	add_gateway(skel, GATEWAY);
	add_port(skel, 0, IPPROTO_TCP, 8088, "127.0.0.1", 8088);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got;

		build_ipv4(&f, &fl);
		set_ip_options(&f, cases[i].opts, sizeof(cases[i].opts));
		got = run(bpf_program__fd(skel->progs.dh_ingress), &f);
		CHECK(got == cases[i].verdict, "%s: verdict %d, want %d", cases[i].what, got, cases[i].verdict);
	}
	CHECK_EQ(counters(skel).dropped_ip_options, 5);
	CHECK_EQ(counters(skel).redirected, 2);
}

/* The kernel drops these on a non-loopback device itself; the guard does
 * not lean on that. */
static void test_ipv6_loopback_dropped(struct dockhost *skel)
{
	static const char *const addrs[][2] = {
		{ "fd00::2", "::1" },
		{ "fd00::2", "::ffff:127.0.0.1" },
		{ "::1", "fd00::1" },
		{ "::ffff:127.9.9.9", "fd00::1" },
	};
	struct frame f;
	size_t i;

	for (i = 0; i < 4; i++) {
		memset(&f, 0, sizeof(f));
		((struct ethhdr *)f.data)->h_proto = htons(ETH_P_IPV6);
		f.data[14] = 0x60;
		f.data[14 + 6] = IPPROTO_UDP;
		inet_pton(AF_INET6, addrs[i][0], f.data + 14 + 8);
		inet_pton(AF_INET6, addrs[i][1], f.data + 14 + 24);
		f.len = 14 + 40 + 8;
		CHECK_EQ(run(bpf_program__fd(skel->progs.dh_ingress), &f), TC_ACT_SHOT);
	}
	CHECK_EQ(counters(skel).dropped_loopback_dst, 2);
	CHECK_EQ(counters(skel).dropped_loopback_src, 2);
}

static void add_gateway6(struct dockhost *skel, const char *addr)
{
	struct dh_gateway6_key key = { .ifindex = LO_IFINDEX };
	struct dh_gateway value = { .origin = DH_GW_BRIDGE };

	inet_pton(AF_INET6, addr, key.addr);
	CHECK_EQ(bpf_map__update_elem(skel->maps.gateways6, &key, sizeof(key), &value, sizeof(value), 0), 0);
}

/* An IPv6 frame, fd00::2 -> @daddr, TCP or UDP to @dport (checksums are
 * not the point: nothing here delivers it), or with a fragment header. */
static void build_ipv6(struct frame *f, const char *daddr, uint8_t proto, uint16_t dport)
{
	uint16_t *l4;

	memset(f, 0, sizeof(*f));
	((struct ethhdr *)f->data)->h_proto = htons(ETH_P_IPV6);
	f->data[14] = 0x60;
	f->data[14 + 6] = proto;
	f->data[14 + 7] = 64;
	inet_pton(AF_INET6, "fd00::2", f->data + 14 + 8);
	inet_pton(AF_INET6, daddr, f->data + 14 + 24);
	f->l4_off = 14 + 40;
	l4 = (uint16_t *)(f->data + f->l4_off);
	l4[0] = htons(40000);
	l4[1] = htons(dport);
	if (proto == IPPROTO_TCP)
		f->data[f->l4_off + 13] = 0x02;  /* SYN */
	f->len = f->l4_off + 20;
	f->data[14 + 5] = f->len - 14 - 40;  /* payload length, low byte */
}

/* Socket mode, IPv6: a packet for a mapped port on an IPv6 gateway goes to
 * the [::1] target's socket; with none (nothing listens in the test's
 * namespace) it goes on untouched, counted. A mapping for IPv4 alone, a
 * fragment and an address that is not a gateway are not steered at all. */
static void test_socket_mode_ipv6_no_socket_untouched(struct dockhost *skel)
{
	struct dh_port_key key = { .ifindex = 0, .port = htons(8090), .proto = IPPROTO_TCP };
	struct dh_port_target v4_only = { .addr = ip("127.0.0.1"), .port = htons(8090) };
	int prog = bpf_program__fd(skel->progs.dh_ingress);
	struct frame f;

	set_mode(skel, DH_MODE_SOCKET);
	add_gateway6(skel, "fd00::1");
	add_port(skel, 0, IPPROTO_TCP, 8088, "127.0.0.1", 8088);
	add_port(skel, 0, IPPROTO_UDP, 8088, "127.0.0.1", 8088);
	{
		/* add_port maps IPv4; these two get [::1] as well. */
		struct dh_port_target both = { .addr = ip("127.0.0.1"), .port = htons(8088) };

		inet_pton(AF_INET6, "::1", both.addr6);
		key.port = htons(8088);
		CHECK_EQ(bpf_map__update_elem(skel->maps.ports, &key, sizeof(key), &both, sizeof(both), 0), 0);
		key.proto = IPPROTO_UDP;
		CHECK_EQ(bpf_map__update_elem(skel->maps.ports, &key, sizeof(key), &both, sizeof(both), 0), 0);
		key.proto = IPPROTO_TCP;
		key.port = htons(8090);
	}
	CHECK_EQ(bpf_map__update_elem(skel->maps.ports, &key, sizeof(key), &v4_only, sizeof(v4_only), 0), 0);
	build_ipv6(&f, "fd00::1", IPPROTO_TCP, 8088);
	expect_untouched(prog, &f);
	build_ipv6(&f, "fd00::1", IPPROTO_UDP, 8088);
	expect_untouched(prog, &f);
	CHECK_EQ(counters(skel).passed_no_socket, 2);
	build_ipv6(&f, "fd00::1", IPPROTO_TCP, 8090);  /* IPv4 alone */
	expect_untouched(prog, &f);
	build_ipv6(&f, "fd00::9", IPPROTO_TCP, 8088);  /* not a gateway */
	expect_untouched(prog, &f);
	build_ipv6(&f, "fd00::1", 44, 8088);  /* a fragment header */
	expect_untouched(prog, &f);
	CHECK_EQ(counters(skel).passed_no_socket, 2);
	CHECK_EQ(counters(skel).passed_fragment, 1);
	CHECK_EQ(counters(skel).passed, 2);
	CHECK_EQ(counters(skel).assigned, 0);
}

/* NAT mode cannot redirect IPv6: a mapped port on an IPv6 gateway goes on
 * untouched, never looked up as a socket. */
static void test_nat_mode_ipv6_passed(struct dockhost *skel)
{
	struct dh_port_key key = { .ifindex = 0, .port = htons(8088), .proto = IPPROTO_TCP };
	struct dh_port_target both = { .addr = ip("127.0.0.1"), .port = htons(8088) };
	struct frame f;

	inet_pton(AF_INET6, "::1", both.addr6);
	add_gateway6(skel, "fd00::1");
	CHECK_EQ(bpf_map__update_elem(skel->maps.ports, &key, sizeof(key), &both, sizeof(both), 0), 0);
	build_ipv6(&f, "fd00::1", IPPROTO_TCP, 8088);
	expect_untouched(bpf_program__fd(skel->progs.dh_ingress), &f);
	CHECK_EQ(counters(skel).passed, 1);
	CHECK_EQ(counters(skel).passed_no_socket, 0);
	CHECK_EQ(counters(skel).redirected, 0);
}

/* A mapping for IPv6 alone leaves IPv4 to the gateway untouched, in NAT
 * mode (never a rewrite to 0.0.0.0) and in socket mode. */
static void test_ipv6_only_target_passes_ipv4(struct dockhost *skel)
{
	struct dh_port_key key = { .ifindex = 0, .port = htons(8088), .proto = IPPROTO_TCP };
	struct dh_port_target v6_only = { .port = htons(8088) };
	struct flow fl = tcp_to_gateway;
	struct frame f;

	inet_pton(AF_INET6, "::1", v6_only.addr6);
	add_gateway(skel, GATEWAY);
	CHECK_EQ(bpf_map__update_elem(skel->maps.ports, &key, sizeof(key), &v6_only, sizeof(v6_only), 0), 0);
	build_ipv4(&f, &fl);
	expect_untouched(bpf_program__fd(skel->progs.dh_ingress), &f);
	set_mode(skel, DH_MODE_SOCKET);
	build_ipv4(&f, &fl);
	expect_untouched(bpf_program__fd(skel->progs.dh_ingress), &f);
	CHECK_EQ(counters(skel).passed, 2);
	CHECK_EQ(counters(skel).redirected, 0);
	CHECK_EQ(counters(skel).passed_no_socket, 0);
}

static void test_ip_options_redirected(struct dockhost *skel)
{
	struct flow fl = tcp_to_gateway;
	struct frame f;

	fl.ip_option_words = 3;
	add_gateway(skel, GATEWAY);
	add_port(skel, 0, IPPROTO_TCP, 8088, "127.0.0.2", 18088);
	build_ipv4(&f, &fl);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_ingress), &f), TC_ACT_OK);
	CHECK_EQ(iph(&f)->daddr, ip("127.0.0.2"));
	CHECK_EQ(ntohs(ports(&f)[1]), 18088);
	CHECK_EQ(ntohs(ports(&f)[0]), 40000);
	check_checksums(&f);
}

static void test_fragments_untouched(struct dockhost *skel)
{
	struct flow first = { .saddr = CONTAINER, .daddr = GATEWAY, .sport = 1, .dport = 8089,
			      .proto = IPPROTO_UDP, .frag_off = 0x2000 /* MF */, .payload = "part" };
	struct flow later = first;
	struct frame f;

	later.frag_off = 3;  /* offset 24 bytes, last fragment */
	add_gateway(skel, GATEWAY);
	add_port(skel, 0, IPPROTO_UDP, 8089, "127.0.0.1", 8089);
	build_ipv4(&f, &first);
	expect_untouched(bpf_program__fd(skel->progs.dh_ingress), &f);
	build_ipv4(&f, &later);
	expect_untouched(bpf_program__fd(skel->progs.dh_ingress), &f);
	CHECK_EQ(counters(skel).passed_fragment, 2);
}

/*
 * One UDP datagram (header and @len bytes of payload) split as
 * ip_do_fragment() would, 40 bytes of it per fragment: a whole-datagram
 * UDP checksum in the first, every IPv4 header checksum computed.
 */
#define FRAG_DATA 40
static int build_udp_fragments(struct frame *frags, const struct flow *fl, const uint8_t *payload,
			       size_t len)
{
	uint8_t datagram[256] = {};
	struct udphdr *udp = (void *)datagram;
	struct iphdr pseudo = {};
	size_t total = sizeof(*udp) + len, off;
	int n = 0;

	udp->source = htons(fl->sport);
	udp->dest = htons(fl->dport);
	udp->len = htons(total);
	memcpy(datagram + sizeof(*udp), payload, len);
	inet_pton(AF_INET, fl->saddr, &pseudo.saddr);
	inet_pton(AF_INET, fl->daddr, &pseudo.daddr);
	udp->check = htons(csum_fold(csum_add(csum_pseudo_ipv4(&pseudo, IPPROTO_UDP, total), datagram, total)));
	for (off = 0; off < total; off += FRAG_DATA, n++) {
		size_t chunk = total - off < FRAG_DATA ? total - off : FRAG_DATA;
		struct flow part = { .saddr = fl->saddr, .daddr = fl->daddr, .proto = 253 /* raw */ };
		struct frame *f = &frags[n];
		struct iphdr *iph_;

		build_ipv4(f, &part);
		iph_ = (void *)(f->data + f->l3_off);
		iph_->protocol = IPPROTO_UDP;
		iph_->frag_off = htons((off / 8) | (off + chunk < total ? 0x2000 : 0));
		memcpy(f->data + f->l4_off, datagram + off, chunk);
		f->len = f->l4_off + chunk;
		iph_->tot_len = htons(f->len - f->l3_off);
		iph_->check = 0;
		iph_->check = ip_csum_expected(f);
	}
	return n;
}

/* A reply larger than the MTU reaches tc egress as fragments: the first
 * gets address and port (its checksum covers the whole datagram), the
 * others the address, found by IP id. */
static void test_fragmented_reply_rewritten(struct dockhost *skel)
{
	struct flow req = { .saddr = CONTAINER, .daddr = GATEWAY, .sport = 5353, .dport = 53,
			    .proto = IPPROTO_UDP, .payload = "query" };
	struct flow reply = { .saddr = "127.0.0.53", .daddr = CONTAINER, .sport = 5300, .dport = 5353 };
	struct flow want = { .saddr = GATEWAY, .daddr = CONTAINER, .sport = 53, .dport = 5353 };
	struct frame frags[4], expected[4], f;
	uint8_t payload[100];
	int n, i;

	for (i = 0; i < (int)sizeof(payload); i++)
		payload[i] = 'a' + i % 26;
	add_gateway(skel, GATEWAY);
	add_port(skel, 0, IPPROTO_UDP, 53, "127.0.0.53", 5300);
	build_ipv4(&f, &req);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_ingress), &f), TC_ACT_OK);

	n = build_udp_fragments(frags, &reply, payload, sizeof(payload));
	CHECK_EQ(n, 3);  /* first, middle, last */
	CHECK_EQ(build_udp_fragments(expected, &want, payload, sizeof(payload)), n);
	for (i = 0; i < n; i++) {
		f = frags[i];
		CHECK(run(bpf_program__fd(skel->progs.dh_egress), &f) == TC_ACT_OK, "fragment %d dropped", i);
		CHECK_EQ(f.len, expected[i].len);
		if (f.len == expected[i].len && memcmp(f.data, expected[i].data, f.len)) {
			printf("    fragment %d differs; got:\n", i);
			hex_dump("      ", f.data, f.len);
			printf("    want:\n");
			hex_dump("      ", expected[i].data, expected[i].len);
			failed = true;
		}
	}
	CHECK_EQ(counters(skel).reply_fragments_rewritten, 3);
	/* The last fragment took the datagram's entry with it: a later
	 * datagram that reuses the IP id (it wraps) cannot match it. */
	f = frags[1];
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_egress), &f), TC_ACT_SHOT);

	/* Later fragments of another datagram (another IP id) whose first was
	 * not seen, and a first fragment of a flow we do not know: dropped. */
	f = frags[1];
	iph(&f)->id = htons(0x4321);
	iph(&f)->check = 0;
	iph(&f)->check = ip_csum_expected(&f);
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_egress), &f), TC_ACT_SHOT);
	reply.dport = 5354;
	build_udp_fragments(frags, &reply, payload, sizeof(payload));
	CHECK_EQ(run(bpf_program__fd(skel->progs.dh_egress), &frags[0]), TC_ACT_SHOT);
	CHECK_EQ(counters(skel).dropped_reply_no_state, 3);
}

static void test_port_entry_removed_stops_redirect(struct dockhost *skel)
{
	struct dh_port_key key = { .ifindex = 0, .port = htons(8088), .proto = IPPROTO_TCP };
	struct frame f;

	add_gateway(skel, GATEWAY);
	add_port(skel, 0, IPPROTO_TCP, 8088, "127.0.0.1", 8088);
	CHECK_EQ(bpf_map__delete_elem(skel->maps.ports, &key, sizeof(key), 0), 0);
	build_ipv4(&f, &tcp_to_gateway);
	expect_untouched(bpf_program__fd(skel->progs.dh_ingress), &f);
}

/* ---- socket mode: targets and dh_sk_lookup -------------------------------- */

/*
 * Real sockets in the test's own network namespace (main() makes one): a
 * TCP listener or a bound UDP socket at @addr (127.x or ::1) and @port.
 */
static int open_target(int type, const char *addr, uint16_t port)
{
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_port = htons(port) };
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
	bool v6 = strchr(addr, ':') != NULL;
	int one = 1, fd = socket(v6 ? AF_INET6 : AF_INET, type | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		printf("    socket: %s\n", strerror(errno));
		failed = true;
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	inet_pton(AF_INET6, addr, &sin6.sin6_addr);
	inet_pton(AF_INET, addr, &sin.sin_addr);
	if ((v6 ? bind(fd, (struct sockaddr *)&sin6, sizeof(sin6)) : bind(fd, (struct sockaddr *)&sin, sizeof(sin))) ||
	    (type == SOCK_STREAM && listen(fd, 8))) {
		printf("    bind or listen %s port %u: %s\n", addr, port, strerror(errno));
		failed = true;
		close(fd);
		return -1;
	}
	return fd;
}

static uint64_t sock_cookie(int fd)
{
	uint64_t cookie = 0;
	socklen_t len = sizeof(cookie);

	CHECK_EQ(getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len), 0);
	CHECK(cookie != 0, "no cookie for fd %d", fd);
	return cookie;
}

static struct dh_target_key target_key(uint8_t proto, const char *addr, uint16_t port)
{
	struct dh_target_key key = { .port = htons(port), .proto = proto };

	if (strchr(addr, ':')) {
		inet_pton(AF_INET6, addr, key.addr);
		key.family = DH_AF_INET6;
	} else {
		key.addr[0] = ip(addr);
		key.family = DH_AF_INET;
	}
	return key;
}

/* What user space reads of a sockhash entry: the socket's cookie; 0 if none. */
static uint64_t target_cookie(struct dockhost *skel, uint8_t proto, const char *addr, uint16_t port)
{
	struct dh_target_key key = target_key(proto, addr, port);
	uint64_t cookie = 0;

	if (bpf_map__lookup_elem(skel->maps.targets, &key, sizeof(key), &cookie, sizeof(cookie), 0))
		return 0;
	return cookie;
}

/* Puts socket @fd in targets as the target (@proto, @addr, @port), as
 * dh_ingress would: from user space the value is the fd. */
static void put_target(struct dockhost *skel, uint8_t proto, const char *addr, uint16_t port, int fd)
{
	struct dh_target_key key = target_key(proto, addr, port);
	uint64_t value = fd;

	CHECK_EQ(bpf_map__update_elem(skel->maps.targets, &key, sizeof(key), &value, sizeof(value), 0), 0);
}

static bool targets_empty(struct dockhost *skel)
{
	struct dh_target_key key;

	return bpf_map__get_next_key(skel->maps.targets, NULL, &key, sizeof(key)) != 0;
}

static void add_gateway_at(struct dockhost *skel, uint32_t ifindex, const char *addr)
{
	struct dh_gateway6_key key6 = { .ifindex = ifindex };
	struct dh_gateway_key key = { .ifindex = ifindex, .addr = ip(addr) };
	struct dh_gateway value = { .origin = DH_GW_BRIDGE };

	if (!strchr(addr, ':')) {
		CHECK_EQ(bpf_map__update_elem(skel->maps.gateways, &key, sizeof(key), &value, sizeof(value), 0), 0);
		return;
	}
	inet_pton(AF_INET6, addr, key6.addr);
	CHECK_EQ(bpf_map__update_elem(skel->maps.gateways6, &key6, sizeof(key6), &value, sizeof(value), 0), 0);
}

/* A ports entry for either family or both: @to4, @to6 NULL leave that
 * family unmapped. */
static void map_port(struct dockhost *skel, uint32_t ifindex, uint8_t proto, uint16_t port,
		     const char *to4, const char *to6, uint16_t to_port)
{
	struct dh_port_key key = { .ifindex = ifindex, .port = htons(port), .proto = proto };
	struct dh_port_target target = { .addr = to4 ? ip(to4) : 0, .port = htons(to_port) };

	if (to6)
		inet_pton(AF_INET6, to6, target.addr6);
	CHECK_EQ(bpf_map__update_elem(skel->maps.ports, &key, sizeof(key), &target, sizeof(target), 0), 0);
}

/* The modes entry of @ifindex: socket or NAT mode, or (-1) none. */
static void set_mode_at(struct dockhost *skel, uint32_t ifindex, int mode)
{
	struct dh_bridge_mode value = { .mode = mode };

	if (mode < 0) {
		bpf_map__delete_elem(skel->maps.modes, &ifindex, sizeof(ifindex), 0);
		return;
	}
	CHECK_EQ(bpf_map__update_elem(skel->maps.modes, &ifindex, sizeof(ifindex), &value, sizeof(value), 0), 0);
}

/*
 * Runs dh_sk_lookup on the stack's lookup for a @proto packet to @local
 * (IPv4 or IPv6) and @port, from a container. Returns the cookie of the
 * socket it selected, 0 for none; *retval gets the verdict.
 *
 * The kernel's test run (bpf_prog_test_run_sk_lookup) refuses a context
 * with any field after local_port set (EINVAL): ingress_ifindex is 0 in
 * every test run, so the bridge is ifindex 0 here. It reports the
 * selected socket as its cookie in the output context's `cookie`, and
 * runs in the caller's network namespace.
 */
static const char *skl_remote4 = CONTAINER, *skl_remote6 = "fd00::2";  /* the lookup's source */

static uint64_t run_sk_lookup(struct dockhost *skel, uint8_t proto, const char *local, uint16_t port,
			      int *retval)
{
	struct bpf_sk_lookup ctx = { .protocol = proto, .local_port = port, .remote_port = htons(40000) };
	LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &ctx, .ctx_size_in = sizeof(ctx), .ctx_out = &ctx,
		    .ctx_size_out = sizeof(ctx), .repeat = 1);
	int err;

	if (strchr(local, ':')) {
		ctx.family = AF_INET6;
		inet_pton(AF_INET6, local, ctx.local_ip6);
		inet_pton(AF_INET6, skl_remote6, ctx.remote_ip6);
	} else {
		ctx.family = AF_INET;
		ctx.local_ip4 = ip(local);
		ctx.remote_ip4 = ip(skl_remote4);
	}
	err = bpf_prog_test_run_opts(bpf_program__fd(skel->progs.dh_sk_lookup), &opts);
	if (err) {
		printf("    bpf_prog_test_run_opts(sk_lookup): %s\n", strerror(-err));
		failed = true;
		return 0;
	}
	*retval = opts.retval;
	return ctx.cookie;
}

#define SKL_BRIDGE 0   /* the ingress_ifindex of every sk_lookup test run */
#define SKL_OTHER  77  /* another bridge */
#define SKL_TARGET 18088

enum { TCP4, UDP4, TCP6, UDP6, N_TARGETS };

/*
 * dh_sk_lookup's decision table. One setup: a listener and a UDP socket
 * at 127.0.0.1 and at ::1 (port SKL_TARGET) in targets, gateways of the
 * bridge (10.0.0.1, fd00::1) and of another one (10.0.0.77, fd00::77):
 *   8088 tcp, udp  -> both families, the entry for every bridge (ifindex
 *                     0, which is also the tested bridge's own: see
 *                     run_sk_lookup)
 *   8090 tcp       -> both, but only for the other bridge
 *   8091 tcp       -> 127.0.0.1 only;  8092 tcp -> [::1] only
 *   8093 tcp       -> a target with no socket in targets
 *   8094 tcp       -> a target whose targets entry is the UDP socket
 *   8095 udp       -> both (no TCP mapping)
 *   8096 sctp      -> 127.0.0.1, whose targets entry (for SCTP) is the
 *                     listener: entries the CLI never makes, so that only
 *                     the program's own checks keep these cases out
 * and in targets, as well, the TCP listeners under the unset address of
 * their family (0.0.0.0, ::), where the unmapped family of a one-family
 * mapping would look.
 * Each case sets the bridge's mode and looks up one destination: the
 * socket it must get (or none), and the one counter that moves: assigned,
 * passed_assign_failed for FAILS, none for NONE (every counter stays).
 */
static void test_sk_lookup_decision_table(struct dockhost *skel)
{
	enum { NONE = -1, FAILS = -2 };  /* nothing selected; bpf_sk_assign refused the socket */
	enum { MODE_NONE = -1, MODE_SOCKET = DH_MODE_SOCKET, MODE_NAT = DH_MODE_NAT, MODE_OTHER = 2 };
	static const struct {
		const char *what;
		int mode;       /* the bridge's modes entry; MODE_OTHER: only the other bridge's */
		uint8_t proto;
		const char *local;
		uint16_t port;
		int want;       /* TCP4 ... UDP6, NONE or FAILS */
	} cases[] = {
		{ "tcp4, mapped for every bridge", MODE_SOCKET, IPPROTO_TCP, "10.0.0.1", 8088, TCP4 },
		{ "udp4, mapped for every bridge", MODE_SOCKET, IPPROTO_UDP, "10.0.0.1", 8088, UDP4 },
		{ "tcp6, mapped for every bridge", MODE_SOCKET, IPPROTO_TCP, "fd00::1", 8088, TCP6 },
		{ "udp6, mapped for every bridge", MODE_SOCKET, IPPROTO_UDP, "fd00::1", 8088, UDP6 },
		{ "NAT mode", MODE_NAT, IPPROTO_TCP, "10.0.0.1", 8088, NONE },
		{ "NAT mode, udp6", MODE_NAT, IPPROTO_UDP, "fd00::1", 8088, NONE },
		{ "no modes entry (NAT mode)", MODE_NONE, IPPROTO_TCP, "10.0.0.1", 8088, NONE },
		{ "only another bridge in socket mode", MODE_OTHER, IPPROTO_TCP, "10.0.0.1", 8088, NONE },
		{ "not a gateway", MODE_SOCKET, IPPROTO_TCP, "10.0.0.9", 8088, NONE },
		{ "not a gateway, IPv6", MODE_SOCKET, IPPROTO_UDP, "fd00::9", 8088, NONE },
		{ "another bridge's gateway", MODE_SOCKET, IPPROTO_TCP, "10.0.0.77", 8088, NONE },
		{ "another bridge's gateway, IPv6", MODE_SOCKET, IPPROTO_TCP, "fd00::77", 8088, NONE },
		{ "loopback destination", MODE_SOCKET, IPPROTO_TCP, "127.0.0.1", SKL_TARGET, NONE },
		{ "unmapped port", MODE_SOCKET, IPPROTO_TCP, "10.0.0.1", 8089, NONE },
		{ "mapped for another bridge only", MODE_SOCKET, IPPROTO_TCP, "10.0.0.1", 8090, NONE },
		{ "IPv4-only mapping, IPv4", MODE_SOCKET, IPPROTO_TCP, "10.0.0.1", 8091, TCP4 },
		{ "IPv4-only mapping, IPv6", MODE_SOCKET, IPPROTO_TCP, "fd00::1", 8091, NONE },
		{ "IPv6-only mapping, IPv6", MODE_SOCKET, IPPROTO_TCP, "fd00::1", 8092, TCP6 },
		{ "IPv6-only mapping, IPv4", MODE_SOCKET, IPPROTO_TCP, "10.0.0.1", 8092, NONE },
		{ "no socket in targets", MODE_SOCKET, IPPROTO_TCP, "10.0.0.1", 8093, NONE },
		{ "no socket in targets, IPv6", MODE_SOCKET, IPPROTO_TCP, "fd00::1", 8093, NONE },
		{ "targets holds a UDP socket for TCP", MODE_SOCKET, IPPROTO_TCP, "10.0.0.1", 8094, FAILS },
		{ "TCP to a port mapped for UDP only", MODE_SOCKET, IPPROTO_TCP, "10.0.0.1", 8095, NONE },
		{ "UDP to it", MODE_SOCKET, IPPROTO_UDP, "10.0.0.1", 8095, UDP4 },
		{ "SCTP to a port mapped for TCP", MODE_SOCKET, IPPROTO_SCTP, "10.0.0.1", 8088, NONE },
		{ "SCTP with entries for SCTP", MODE_SOCKET, IPPROTO_SCTP, "10.0.0.1", 8096, NONE },
	};
	static const struct { int type; uint8_t proto; const char *addr; } sockets[N_TARGETS] = {
		[TCP4] = { SOCK_STREAM, IPPROTO_TCP, "127.0.0.1" },
		[UDP4] = { SOCK_DGRAM, IPPROTO_UDP, "127.0.0.1" },
		[TCP6] = { SOCK_STREAM, IPPROTO_TCP, "::1" },
		[UDP6] = { SOCK_DGRAM, IPPROTO_UDP, "::1" },
	};
	int fds[N_TARGETS], i, n = 0;
	uint64_t cookies[N_TARGETS];
	size_t c;

	for (i = 0; i < N_TARGETS; i++) {
		fds[i] = open_target(sockets[i].type, sockets[i].addr, SKL_TARGET);
		if (fds[i] < 0)
			goto out;
		n++;
		cookies[i] = sock_cookie(fds[i]);
		put_target(skel, sockets[i].proto, sockets[i].addr, SKL_TARGET, fds[i]);
	}
	put_target(skel, IPPROTO_TCP, "127.0.0.4", SKL_TARGET, fds[UDP4]);
	put_target(skel, IPPROTO_SCTP, "127.0.0.1", SKL_TARGET, fds[TCP4]);
	put_target(skel, IPPROTO_TCP, "0.0.0.0", SKL_TARGET, fds[TCP4]);
	put_target(skel, IPPROTO_TCP, "::", SKL_TARGET, fds[TCP6]);
	add_gateway_at(skel, SKL_BRIDGE, "10.0.0.1");
	add_gateway_at(skel, SKL_BRIDGE, "fd00::1");
	add_gateway_at(skel, SKL_OTHER, "10.0.0.77");
	add_gateway_at(skel, SKL_OTHER, "fd00::77");
	map_port(skel, 0, IPPROTO_TCP, 8088, "127.0.0.1", "::1", SKL_TARGET);
	map_port(skel, 0, IPPROTO_UDP, 8088, "127.0.0.1", "::1", SKL_TARGET);
	map_port(skel, SKL_OTHER, IPPROTO_TCP, 8090, "127.0.0.1", "::1", SKL_TARGET);
	map_port(skel, 0, IPPROTO_TCP, 8091, "127.0.0.1", NULL, SKL_TARGET);
	map_port(skel, 0, IPPROTO_TCP, 8092, NULL, "::1", SKL_TARGET);
	map_port(skel, 0, IPPROTO_TCP, 8093, "127.0.0.1", "::1", SKL_TARGET + 1);
	map_port(skel, 0, IPPROTO_TCP, 8094, "127.0.0.4", NULL, SKL_TARGET);
	map_port(skel, 0, IPPROTO_UDP, 8095, "127.0.0.1", "::1", SKL_TARGET);
	map_port(skel, 0, IPPROTO_SCTP, 8096, "127.0.0.1", NULL, SKL_TARGET);

	for (c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct dh_counters before, after, want;
		uint64_t got, expect = cases[c].want < 0 ? 0 : cookies[cases[c].want];
		int retval = -1;

		set_mode_at(skel, SKL_BRIDGE, cases[c].mode == MODE_OTHER ? MODE_NONE : cases[c].mode);
		set_mode_at(skel, SKL_OTHER, cases[c].mode == MODE_OTHER ? MODE_SOCKET : MODE_NONE);
		before = counters(skel);
		got = run_sk_lookup(skel, cases[c].proto, cases[c].local, cases[c].port, &retval);
		after = counters(skel);
		want = before;
		want.assigned += cases[c].want >= 0;
		want.passed_assign_failed += cases[c].want == FAILS;
		CHECK(got == expect, "%s: selected cookie %llu, want %llu%s", cases[c].what,
		      (unsigned long long)got, (unsigned long long)expect, expect ? "" : " (none)");
		CHECK(retval == SK_PASS, "%s: verdict %d, want SK_PASS", cases[c].what, retval);
		CHECK(!memcmp(&after, &want, sizeof(want)),
		      "%s: counters: assigned %llu -> %llu, passed_assign_failed %llu -> %llu, or another moved",
		      cases[c].what, before.assigned, after.assigned, before.passed_assign_failed,
		      after.passed_assign_failed);
	}
out:
	for (i = 0; i < n; i++)
		close(fds[i]);
}

/* A closed socket leaves targets by itself (a sockhash drops a member
 * that closes): the lookup then hands over nothing. */
static void test_sk_lookup_closed_target_not_assigned(struct dockhost *skel)
{
	int fd = open_target(SOCK_STREAM, "127.0.0.1", SKL_TARGET), retval;

	if (fd < 0)
		return;
	put_target(skel, IPPROTO_TCP, "127.0.0.1", SKL_TARGET, fd);
	set_mode_at(skel, SKL_BRIDGE, DH_MODE_SOCKET);
	add_gateway_at(skel, SKL_BRIDGE, "10.0.0.1");
	map_port(skel, 0, IPPROTO_TCP, 8088, "127.0.0.1", NULL, SKL_TARGET);
	CHECK_EQ(run_sk_lookup(skel, IPPROTO_TCP, "10.0.0.1", 8088, &retval), sock_cookie(fd));
	close(fd);
	CHECK(targets_empty(skel), "a closed socket stayed in targets");
	CHECK_EQ(run_sk_lookup(skel, IPPROTO_TCP, "10.0.0.1", 8088, &retval), 0);
	CHECK_EQ(counters(skel).assigned, 1);
}

/*
 * dh_ingress in socket mode, TCP: a SYN to a mapped port puts the target's
 * listener in targets, for dh_sk_lookup; a segment after the SYN leaves
 * the map alone (its flow's own socket takes it); nothing listening at the
 * target: passed_no_socket, nothing put in. IPv4 and IPv6.
 */
static void test_socket_mode_syn_puts_listener_in_targets(struct dockhost *skel)
{
	int prog = bpf_program__fd(skel->progs.dh_ingress);
	int fd4 = open_target(SOCK_STREAM, "127.0.0.1", SKL_TARGET);
	int fd6 = open_target(SOCK_STREAM, "::1", SKL_TARGET);
	struct flow ack = tcp_to_gateway, syn = tcp_to_gateway;
	struct frame f;

	if (fd4 < 0 || fd6 < 0)
		goto out;
	set_mode(skel, DH_MODE_SOCKET);
	add_gateway(skel, GATEWAY);
	add_gateway6(skel, "fd00::1");
	map_port(skel, 0, IPPROTO_TCP, 8088, "127.0.0.1", "::1", SKL_TARGET);
	map_port(skel, 0, IPPROTO_TCP, 8089, "127.0.0.1", "::1", SKL_TARGET + 1);  /* nothing there */

	ack.tcp_flags = 0x10;
	build_ipv4(&f, &ack);
	expect_untouched(prog, &f);
	build_ipv6(&f, "fd00::1", IPPROTO_TCP, 8088);
	f.data[f.l4_off + 13] = 0x10;  /* ACK */
	expect_untouched(prog, &f);
	CHECK(targets_empty(skel), "a segment after the SYN touched targets");
	CHECK_EQ(counters(skel).passed_no_socket, 0);

	build_ipv4(&f, &syn);
	expect_untouched(prog, &f);
	CHECK_EQ(target_cookie(skel, IPPROTO_TCP, "127.0.0.1", SKL_TARGET), sock_cookie(fd4));
	CHECK_EQ(target_cookie(skel, IPPROTO_TCP, "::1", SKL_TARGET), 0);
	build_ipv6(&f, "fd00::1", IPPROTO_TCP, 8088);
	expect_untouched(prog, &f);
	CHECK_EQ(target_cookie(skel, IPPROTO_TCP, "::1", SKL_TARGET), sock_cookie(fd6));
	CHECK_EQ(counters(skel).passed_no_socket, 0);

	syn.dport = 8089;
	build_ipv4(&f, &syn);
	expect_untouched(prog, &f);
	build_ipv6(&f, "fd00::1", IPPROTO_TCP, 8089);
	expect_untouched(prog, &f);
	CHECK_EQ(counters(skel).passed_no_socket, 2);
	CHECK_EQ(target_cookie(skel, IPPROTO_TCP, "127.0.0.1", SKL_TARGET + 1), 0);
	CHECK_EQ(target_cookie(skel, IPPROTO_TCP, "::1", SKL_TARGET + 1), 0);
	CHECK_EQ(counters(skel).passed_assign_failed, 0);
	CHECK_EQ(counters(skel).assigned, 0);  /* dh_sk_lookup's, not tc's */
out:
	if (fd4 >= 0)
		close(fd4);
	if (fd6 >= 0)
		close(fd6);
}

/* dh_ingress in socket mode, UDP: a datagram puts the target's socket in
 * targets and notes its flow in sock_flows, keyed as the socket sees it
 * (for dh_sendmsg4's reply source and dh_connect4's count). */
static void test_socket_mode_udp_notes_flow(struct dockhost *skel)
{
	struct flow fl = { .saddr = CONTAINER, .daddr = GATEWAY, .sport = 5353, .dport = 8089,
			   .proto = IPPROTO_UDP, .payload = "q" };
	struct dh_sock_flow_key key = { .container_port = htons(5353), .sock_port = htons(SKL_TARGET),
					.proto = IPPROTO_UDP, .family = DH_AF_INET };
	int fd = open_target(SOCK_DGRAM, "127.0.0.1", SKL_TARGET);
	struct dh_sock_flow flow = {};
	struct frame f;

	if (fd < 0)
		return;
	key.container_addr[0] = ip(CONTAINER);
	key.sock_addr[0] = ip("127.0.0.1");
	set_mode(skel, DH_MODE_SOCKET);
	add_gateway(skel, GATEWAY);
	map_port(skel, 0, IPPROTO_UDP, 8089, "127.0.0.1", NULL, SKL_TARGET);
	build_ipv4(&f, &fl);
	expect_untouched(bpf_program__fd(skel->progs.dh_ingress), &f);
	CHECK_EQ(target_cookie(skel, IPPROTO_UDP, "127.0.0.1", SKL_TARGET), sock_cookie(fd));
	CHECK_EQ(bpf_map__lookup_elem(skel->maps.sock_flows, &key, sizeof(key), &flow, sizeof(flow), 0), 0);
	CHECK_EQ(flow.gateway_addr[0], ip(GATEWAY));
	CHECK_EQ(flow.gateway_addr[1] | flow.gateway_addr[2] | flow.gateway_addr[3], 0);
	CHECK_EQ(flow.ifindex, LO_IFINDEX);
	CHECK_EQ(counters(skel).passed_no_socket, 0);
	close(fd);
}

/* ---- per-source counters ------------------------------------------------- */

/* The sources entry of (@addr, @proto, gateway @port) on LO_IFINDEX; all
 * zero if there is none. */
static struct dh_source_stats source_stats(struct dockhost *skel, const char *addr, uint8_t proto,
					   uint16_t port)
{
	struct dh_source_key key = { .ifindex = LO_IFINDEX, .port = htons(port), .proto = proto };
	struct dh_source_stats stats = {};

	if (strchr(addr, ':')) {
		inet_pton(AF_INET6, addr, key.addr);
		key.family = DH_AF_INET6;
	} else {
		key.addr[0] = ip(addr);
		key.family = DH_AF_INET;
	}
	bpf_map__lookup_elem(skel->maps.sources, &key, sizeof(key), &stats, sizeof(stats), 0);
	return stats;
}

static size_t source_entries(struct dockhost *skel)
{
	struct dh_source_key key, *prev = NULL;
	size_t n = 0;

	while (bpf_map__get_next_key(skel->maps.sources, prev, &key, sizeof(key)) == 0) {
		prev = &key;
		n++;
	}
	return n;
}

/*
 * The same traffic through either mode: a SYN, its retransmission and an
 * ACK to a port with a listener, a SYN to a port with nothing behind it,
 * three UDP datagrams from two source ports, a packet to an unmapped port.
 */
static void sources_traffic(struct dockhost *skel, int prog, uint32_t *tcp_len, uint32_t *udp_len)
{
	struct flow fl = tcp_to_gateway;
	struct frame f;

	build_ipv4(&f, &fl);  /* SYN */
	*tcp_len = f.len;
	run(prog, &f);
	build_ipv4(&f, &fl);
	run(prog, &f);
	fl.tcp_flags = 0x10;
	build_ipv4(&f, &fl);
	run(prog, &f);
	fl.tcp_flags = 0;
	fl.sport = 40001;
	fl.dport = 8089;  /* nothing listens at its target */
	build_ipv4(&f, &fl);
	run(prog, &f);
	fl.dport = 8090;  /* unmapped */
	build_ipv4(&f, &fl);
	run(prog, &f);

	fl = (struct flow){ .saddr = CONTAINER, .daddr = GATEWAY, .sport = 5000, .dport = 8088,
			    .proto = IPPROTO_UDP, .payload = "q" };
	build_ipv4(&f, &fl);
	*udp_len = f.len;
	run(prog, &f);
	fl.sport = 5001;
	build_ipv4(&f, &fl);
	run(prog, &f);
	fl.sport = 5000;
	build_ipv4(&f, &fl);
	run(prog, &f);
}

static void check_sources_traffic(struct dockhost *skel, uint32_t tcp_len, uint32_t udp_len,
				  uint64_t tcp_flows)
{
	struct dh_source_stats tcp = source_stats(skel, CONTAINER, IPPROTO_TCP, 8088);
	struct dh_source_stats closed = source_stats(skel, CONTAINER, IPPROTO_TCP, 8089);
	struct dh_source_stats udp = source_stats(skel, CONTAINER, IPPROTO_UDP, 8088);

	CHECK_EQ(tcp.packets, 3);
	CHECK_EQ(tcp.bytes, 3 * tcp_len);
	CHECK_EQ(tcp.flows, tcp_flows);
	CHECK_EQ(tcp.refused_no_socket, 0);
	CHECK_EQ(closed.packets, 0);
	CHECK_EQ(closed.flows, 0);
	CHECK_EQ(closed.refused_no_socket, 1);
	CHECK_EQ(udp.packets, 3);
	CHECK_EQ(udp.bytes, 3 * udp_len);
	CHECK_EQ(udp.flows, 2);
	CHECK_EQ(udp.refused_no_socket, 0);
	CHECK_EQ(tcp.refused_not_allowed + closed.refused_not_allowed + udp.refused_not_allowed, 0);
}

/* NAT mode counts at the rewrite; a retransmitted SYN finds its flow's
 * entry and is no new flow; a refusal is found by a socket lookup for a
 * new flow only. */
static void test_sources_counted_nat_mode(struct dockhost *skel)
{
	int tcp = open_target(SOCK_STREAM, "127.0.0.1", SKL_TARGET);
	int udp = open_target(SOCK_DGRAM, "127.0.0.1", SKL_TARGET);
	uint32_t tcp_len, udp_len;

	if (tcp < 0 || udp < 0)
		goto out;
	add_gateway(skel, GATEWAY);
	map_port(skel, 0, IPPROTO_TCP, 8088, "127.0.0.1", NULL, SKL_TARGET);
	map_port(skel, 0, IPPROTO_TCP, 8089, "127.0.0.1", NULL, SKL_TARGET + 1);
	map_port(skel, 0, IPPROTO_UDP, 8088, "127.0.0.1", NULL, SKL_TARGET);
	sources_traffic(skel, bpf_program__fd(skel->progs.dh_ingress), &tcp_len, &udp_len);
	check_sources_traffic(skel, tcp_len, udp_len, 1);
	CHECK_EQ(counters(skel).redirected, 7);
	CHECK_EQ(source_entries(skel), 3);
out:
	if (tcp >= 0)
		close(tcp);
	if (udp >= 0)
		close(udp);
}

/* Socket mode counts at the target lookup, IPv4 and IPv6; it cannot tell
 * a retransmitted SYN from a new one. */
static void test_sources_counted_socket_mode(struct dockhost *skel)
{
	int prog = bpf_program__fd(skel->progs.dh_ingress);
	int tcp = open_target(SOCK_STREAM, "127.0.0.1", SKL_TARGET);
	int udp = open_target(SOCK_DGRAM, "127.0.0.1", SKL_TARGET);
	int tcp6 = open_target(SOCK_STREAM, "::1", SKL_TARGET);
	uint32_t tcp_len, udp_len;
	struct dh_source_stats v6;
	struct frame f;

	if (tcp < 0 || udp < 0 || tcp6 < 0)
		goto out;
	set_mode(skel, DH_MODE_SOCKET);
	add_gateway(skel, GATEWAY);
	add_gateway6(skel, "fd00::1");
	map_port(skel, 0, IPPROTO_TCP, 8088, "127.0.0.1", "::1", SKL_TARGET);
	map_port(skel, 0, IPPROTO_TCP, 8089, "127.0.0.1", "::1", SKL_TARGET + 1);
	map_port(skel, 0, IPPROTO_UDP, 8088, "127.0.0.1", NULL, SKL_TARGET);
	sources_traffic(skel, prog, &tcp_len, &udp_len);
	check_sources_traffic(skel, tcp_len, udp_len, 2);
	CHECK_EQ(counters(skel).passed_no_socket, 1);

	build_ipv6(&f, "fd00::1", IPPROTO_TCP, 8088);
	expect_untouched(prog, &f);
	build_ipv6(&f, "fd00::1", IPPROTO_TCP, 8089);
	expect_untouched(prog, &f);
	v6 = source_stats(skel, "fd00::2", IPPROTO_TCP, 8088);
	CHECK_EQ(v6.packets, 1);
	CHECK_EQ(v6.flows, 1);
	CHECK_EQ(source_stats(skel, "fd00::2", IPPROTO_TCP, 8089).refused_no_socket, 1);
	CHECK_EQ(source_entries(skel), 5);
out:
	if (tcp >= 0)
		close(tcp);
	if (udp >= 0)
		close(udp);
	if (tcp6 >= 0)
		close(tcp6);
}

/* ---- runner --------------------------------------------------------------- */

struct test {
	const char *name;
	void (*fn)(struct dockhost *skel);
};

/* ---- trace ---------------------------------------------------------------- */

static int count_event(void *ctx, void *data, size_t size)
{
	struct dh_trace_event *events = ctx;
	int *n = (int *)&events[8];

	if (*n < 8 && size >= sizeof(*events))
		events[*n] = *(struct dh_trace_event *)data;
	(*n)++;
	return 0;
}

/* Reads every event in the ring: how many; the first 8 into @events. */
static int drain_events(struct bpf_map *ring, struct dh_trace_event events[9])
{
	struct ring_buffer *rb;
	int *n = (int *)&events[8];

	*n = 0;
	rb = ring_buffer__new(bpf_map__fd(ring), count_event, events, NULL);
	CHECK(rb != NULL, "ring_buffer__new: %s", strerror(errno));
	if (!rb)
		return -1;
	ring_buffer__consume(rb);
	ring_buffer__free(rb);
	return *n;
}

static void set_trace(struct bpf_map *ctl_map, uint32_t enabled)
{
	struct dh_trace_ctl ctl = { .enabled = enabled, .pid = enabled ? getpid() : 0 };
	__u32 zero = 0;

	CHECK_EQ(bpf_map__update_elem(ctl_map, &zero, sizeof(zero), &ctl, sizeof(ctl), 0), 0);
}

static struct dh_trace_ctl get_trace(struct bpf_map *ctl_map)
{
	struct dh_trace_ctl ctl = {};
	__u32 zero = 0;

	CHECK_EQ(bpf_map__lookup_elem(ctl_map, &zero, sizeof(zero), &ctl, sizeof(ctl), 0), 0);
	return ctl;
}

/* A NAT-mode SYN (a new flow, refused: nothing listens), a socket-mode
 * one (refused), a UDP datagram to a UDP socket (a flow), a loopback
 * source (a guard drop) and a SYN from a source port 8090's allow-list
 * does not name (disallowed), on ifindex 1. */
static void run_traced_packets(struct dockhost *skel)
{
	struct flow guard = { .saddr = "127.0.0.1", .daddr = GATEWAY, .sport = 1, .dport = 8088,
			      .proto = IPPROTO_TCP };
	struct flow udp = { .saddr = CONTAINER, .daddr = GATEWAY, .sport = 5353, .dport = 8089,
			    .proto = IPPROTO_UDP, .payload = "x" };
	struct flow disallowed = { .saddr = CONTAINER, .daddr = GATEWAY, .sport = 40001, .dport = 8090,
				   .proto = IPPROTO_TCP };
	int prog = bpf_program__fd(skel->progs.dh_ingress);
	struct frame f;

	set_mode(skel, DH_MODE_NAT);
	build_ipv4(&f, &tcp_to_gateway);
	CHECK_EQ(run(prog, &f), TC_ACT_OK);
	set_mode(skel, DH_MODE_SOCKET);
	build_ipv4(&f, &tcp_to_gateway);
	CHECK_EQ(run(prog, &f), TC_ACT_UNSPEC);
	build_ipv4(&f, &udp);
	CHECK_EQ(run(prog, &f), TC_ACT_UNSPEC);
	build_ipv4(&f, &guard);
	CHECK_EQ(run(prog, &f), TC_ACT_SHOT);
	build_ipv4(&f, &disallowed);
	CHECK_EQ(run(prog, &f), TC_ACT_UNSPEC);
}

/* Nobody tracing: the programs write nothing, whatever happens. Then the
 * same packets with tracing on: an event each. */
static void test_trace_nothing_when_disabled(struct dockhost *skel)
{
	struct dh_trace_event events[9];
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(8089) };
	int udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	addr.sin_addr.s_addr = ip("127.0.0.1");
	CHECK(udp >= 0 && bind(udp, (struct sockaddr *)&addr, sizeof(addr)) == 0, "UDP socket: %s",
	      strerror(errno));
	add_gateway(skel, GATEWAY);
	add_port(skel, 0, IPPROTO_TCP, 8088, "127.0.0.1", 8088);
	add_port(skel, 0, IPPROTO_UDP, 8089, "127.0.0.1", 8089);
	add_port(skel, 0, IPPROTO_TCP, 8090, "127.0.0.1", 8090);
	{
		/* 8090: an allow-list naming nobody. */
		struct dh_port_key key = { .port = htons(8090), .proto = IPPROTO_TCP };
		struct dh_port_target target;

		CHECK_EQ(bpf_map__lookup_elem(skel->maps.ports, &key, sizeof(key), &target, sizeof(target), 0), 0);
		target.flags = DH_PORT_ALLOW_LIST;
		CHECK_EQ(bpf_map__update_elem(skel->maps.ports, &key, sizeof(key), &target, sizeof(target), 0), 0);
	}

	run_traced_packets(skel);
	CHECK_EQ(drain_events(skel->maps.trace_events, events), 0);

	/* New flows again: the NAT entry and the UDP flow are forgotten. */
	{
		struct dh_nat_key key;
		struct dh_sock_flow_key flow_key;

		while (bpf_map__get_next_key(skel->maps.nat_state, NULL, &key, sizeof(key)) == 0)
			bpf_map__delete_elem(skel->maps.nat_state, &key, sizeof(key), 0);
		while (bpf_map__get_next_key(skel->maps.sock_flows, NULL, &flow_key, sizeof(flow_key)) == 0)
			bpf_map__delete_elem(skel->maps.sock_flows, &flow_key, sizeof(flow_key), 0);
	}
	set_trace(skel->maps.trace_ctl, 1);
	run_traced_packets(skel);
	CHECK_EQ(drain_events(skel->maps.trace_events, events), 5);
	CHECK_EQ(events[0].kind, DH_TRACE_REFUSED);
	CHECK_EQ(events[0].mode, DH_MODE_NAT);
	CHECK_EQ(events[0].reason, DH_COUNTER_INDEX(passed_no_socket));
	CHECK_EQ(events[0].saddr[0], ip(CONTAINER));
	CHECK_EQ(events[0].daddr[0], ip(GATEWAY));
	CHECK_EQ(ntohs(events[0].dport), 8088);
	CHECK_EQ(events[0].taddr[0], ip("127.0.0.1"));
	CHECK_EQ(ntohs(events[0].tport), 8088);
	CHECK_EQ(events[1].kind, DH_TRACE_REFUSED);
	CHECK_EQ(events[1].mode, DH_MODE_SOCKET);
	CHECK_EQ(events[2].kind, DH_TRACE_FLOW);
	CHECK_EQ(events[2].proto, IPPROTO_UDP);
	CHECK_EQ(events[2].reason, DH_COUNTER_INDEX(assigned));
	CHECK_EQ(ntohs(events[2].sport), 5353);
	CHECK_EQ(events[3].kind, DH_TRACE_GUARD_DROP);
	CHECK_EQ(events[3].reason, DH_COUNTER_INDEX(dropped_loopback_src));
	CHECK_EQ(events[3].saddr[0], ip("127.0.0.1"));
	CHECK_EQ(events[3].ifindex, LO_IFINDEX);
	CHECK_EQ(events[4].kind, DH_TRACE_DISALLOWED);
	CHECK_EQ(events[4].reason, DH_COUNTER_INDEX(passed_not_allowed));
	CHECK_EQ(events[4].saddr[0], ip(CONTAINER));
	CHECK_EQ(ntohs(events[4].dport), 8090);
	if (udp >= 0)
		close(udp);
}

/* A trace that died with tracing on: the programs fill the ring once,
 * then turn tracing off themselves and count what they lost. */
static void test_trace_full_ring_turns_tracing_off(struct dockhost *unused)
{
	struct flow guard = { .saddr = "127.0.0.1", .daddr = GATEWAY, .sport = 1, .dport = 8088,
			      .proto = IPPROTO_TCP };
	struct dh_trace_event events[9];
	struct dh_trace_ctl ctl;
	struct dockhost *skel;
	struct frame f;
	int i, stored;

	/* One page of ring: 46 events of 88 bytes with their headers. */
	skel = dockhost__open();
	CHECK(skel != NULL, "dockhost__open: %s", strerror(errno));
	if (!skel)
		return;
	CHECK_EQ(bpf_map__set_max_entries(skel->maps.trace_events, getpagesize()), 0);
	CHECK_EQ(dockhost__load(skel), 0);
	set_trace(skel->maps.trace_ctl, 1);
	for (i = 0; i < 100; i++) {
		build_ipv4(&f, &guard);
		CHECK_EQ(run(bpf_program__fd(skel->progs.dh_ingress), &f), TC_ACT_SHOT);
	}
	ctl = get_trace(skel->maps.trace_ctl);
	stored = drain_events(skel->maps.trace_events, events);
	CHECK_EQ(ctl.enabled, 0);
	CHECK(stored > 0 && stored < 100, "%d events stored", stored);
	CHECK_EQ(ctl.lost, 1);  /* off at the first miss: no more tries */
	CHECK_EQ(counters(skel).dropped_loopback_src, 100);
	dockhost__destroy(skel);
}

/* ---- allow-lists ------------------------------------------------------------ */

/* Puts @cidr (IPv4 or IPv6, "ADDR/LEN") in the list of the mapping
 * (@ifindex, @proto, @port), as the CLI does. */
static void allow(struct dockhost *skel, uint32_t ifindex, uint8_t proto, uint16_t port, const char *cidr)
{
	struct dh_port_key port_key = { .ifindex = ifindex, .port = htons(port), .proto = proto };
	char addr[64];
	const char *slash = strchr(cidr, '/');
	__u32 refs = 1, len = atoi(slash + 1);

	snprintf(addr, sizeof(addr), "%.*s", (int)(slash - cidr), cidr);
	if (strchr(addr, ':')) {
		struct dh_allow6_key key = { .prefixlen = DH_ALLOW_KEY_BITS + len, .port = port_key };

		inet_pton(AF_INET6, addr, key.addr);
		CHECK_EQ(bpf_map__update_elem(skel->maps.allow6, &key, sizeof(key), &refs, sizeof(refs), 0), 0);
	} else {
		struct dh_allow4_key key = { .prefixlen = DH_ALLOW_KEY_BITS + len, .port = port_key, .addr = ip(addr) };

		CHECK_EQ(bpf_map__update_elem(skel->maps.allow4, &key, sizeof(key), &refs, sizeof(refs), 0), 0);
	}
}

/* Sets (or clears) the mapping's DH_PORT_ALLOW_LIST flag. */
static void set_listed(struct dockhost *skel, uint32_t ifindex, uint8_t proto, uint16_t port, bool listed)
{
	struct dh_port_key key = { .ifindex = ifindex, .port = htons(port), .proto = proto };
	struct dh_port_target target;

	CHECK_EQ(bpf_map__lookup_elem(skel->maps.ports, &key, sizeof(key), &target, sizeof(target), 0), 0);
	target.flags = listed ? DH_PORT_ALLOW_LIST : 0;
	CHECK_EQ(bpf_map__update_elem(skel->maps.ports, &key, sizeof(key), &target, sizeof(target), 0), 0);
}

/*
 * NAT mode: a listed mapping redirects only its sources; any other goes on
 * untouched (the kernel answers it as for an unmapped port), counted in
 * passed_not_allowed, with no flow state. The list is the matched entry's:
 * another port's list, or a global list under a bridge's own entry, does
 * not count. Without the flag the trie is never read (open to all); with
 * it and an empty list, closed to all.
 */
static void test_allow_list_nat_mode(struct dockhost *skel)
{
	int prog = bpf_program__fd(skel->progs.dh_ingress);
	static const struct {
		const char *what, *saddr;
		uint16_t dport;
		bool redirected;
	} cases[] = {
		{ "in 10.0.0.0/30", "10.0.0.2", 8088, true },
		{ "the /32 entry", "10.0.0.9", 8088, true },
		{ "in no prefix", "10.0.0.10", 8088, false },
		{ "in another port's list only", "10.0.0.66", 8088, false },
		{ "unlisted port (list absent: open)", "10.0.0.10", 8090, true },
		{ "bridge entry: its own list", "10.0.0.77", 8091, true },
		{ "bridge entry: global list ignored", "10.0.0.2", 8091, false },
		{ "listed, empty list: closed", "10.0.0.2", 8092, false },
	};
	__u64 refused = 0, redirected = 0;
	size_t c;

	add_gateway(skel, GATEWAY);
	add_port(skel, 0, IPPROTO_TCP, 8088, "127.0.0.1", 8088);
	add_port(skel, 0, IPPROTO_TCP, 8089, "127.0.0.1", 8089);
	add_port(skel, 0, IPPROTO_TCP, 8090, "127.0.0.1", 8090);
	add_port(skel, 0, IPPROTO_TCP, 8091, "127.0.0.1", 8091);
	add_port(skel, LO_IFINDEX, IPPROTO_TCP, 8091, "127.0.0.1", 8091);
	add_port(skel, 0, IPPROTO_TCP, 8092, "127.0.0.1", 8092);
	allow(skel, 0, IPPROTO_TCP, 8088, "10.0.0.0/30");
	allow(skel, 0, IPPROTO_TCP, 8088, "10.0.0.9/32");
	allow(skel, 0, IPPROTO_TCP, 8088, "fd00::/64");
	allow(skel, 0, IPPROTO_TCP, 8089, "10.0.0.66/32");
	allow(skel, 0, IPPROTO_UDP, 8088, "10.0.0.66/32");
	allow(skel, 0, IPPROTO_TCP, 8090, "10.0.0.99/32");  /* not listed: never read */
	allow(skel, 0, IPPROTO_TCP, 8091, "10.0.0.0/24");
	allow(skel, LO_IFINDEX, IPPROTO_TCP, 8091, "10.0.0.77/32");
	set_listed(skel, 0, IPPROTO_TCP, 8088, true);
	set_listed(skel, 0, IPPROTO_TCP, 8089, true);
	set_listed(skel, 0, IPPROTO_TCP, 8091, true);
	set_listed(skel, LO_IFINDEX, IPPROTO_TCP, 8091, true);
	set_listed(skel, 0, IPPROTO_TCP, 8092, true);

	for (c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct flow fl = tcp_to_gateway;
		struct frame f;

		fl.saddr = cases[c].saddr;
		fl.dport = cases[c].dport;
		build_ipv4(&f, &fl);
		if (cases[c].redirected) {
			CHECK(run(prog, &f) == TC_ACT_OK, "%s: not redirected", cases[c].what);
			CHECK(iph(&f)->daddr == ip("127.0.0.1"), "%s: not rewritten", cases[c].what);
			redirected++;
		} else {
			expect_untouched(prog, &f);
			refused++;
		}
		CHECK(counters(skel).passed_not_allowed == refused, "%s: passed_not_allowed %llu, want %llu",
		      cases[c].what, counters(skel).passed_not_allowed, refused);
		CHECK_EQ(counters(skel).redirected, redirected);
	}
	CHECK(!nat_entry(skel, "10.0.0.10", 40000, "127.0.0.1", 8088, IPPROTO_TCP, NULL), "a refused source got flow state");
}

/*
 * Socket mode at tc, IPv4 and IPv6: a source off the list puts no socket
 * in targets (counted in passed_not_allowed); a listed one does.
 */
static void test_allow_list_socket_mode_ingress(struct dockhost *skel)
{
	int prog = bpf_program__fd(skel->progs.dh_ingress);
	int fd4 = open_target(SOCK_STREAM, "127.0.0.1", SKL_TARGET);
	int fd6 = open_target(SOCK_STREAM, "::1", SKL_TARGET);
	struct flow syn = tcp_to_gateway;
	struct frame f;

	if (fd4 < 0 || fd6 < 0)
		goto out;
	set_mode(skel, DH_MODE_SOCKET);
	add_gateway(skel, GATEWAY);
	add_gateway6(skel, "fd00::1");
	map_port(skel, 0, IPPROTO_TCP, 8088, "127.0.0.1", "::1", SKL_TARGET);
	allow(skel, 0, IPPROTO_TCP, 8088, "10.0.0.3/32");
	allow(skel, 0, IPPROTO_TCP, 8088, "fd00::3/128");
	set_listed(skel, 0, IPPROTO_TCP, 8088, true);

	build_ipv4(&f, &syn);  /* from 10.0.0.2 */
	expect_untouched(prog, &f);
	build_ipv6(&f, "fd00::1", IPPROTO_TCP, 8088);  /* from fd00::2 */
	expect_untouched(prog, &f);
	CHECK_EQ(counters(skel).passed_not_allowed, 2);
	CHECK(targets_empty(skel), "a refused source put a socket in targets");

	allow(skel, 0, IPPROTO_TCP, 8088, "10.0.0.0/24");
	allow(skel, 0, IPPROTO_TCP, 8088, "fd00::/120");
	build_ipv4(&f, &syn);
	expect_untouched(prog, &f);
	build_ipv6(&f, "fd00::1", IPPROTO_TCP, 8088);
	expect_untouched(prog, &f);
	CHECK_EQ(counters(skel).passed_not_allowed, 2);
	CHECK_EQ(target_cookie(skel, IPPROTO_TCP, "127.0.0.1", SKL_TARGET), sock_cookie(fd4));
	CHECK_EQ(target_cookie(skel, IPPROTO_TCP, "::1", SKL_TARGET), sock_cookie(fd6));
out:
	if (fd4 >= 0)
		close(fd4);
	if (fd6 >= 0)
		close(fd6);
}

/*
 * dh_sk_lookup checks the source itself (targets may hold the socket an
 * allowed source's packet put there): by remote_ip4/6, against the list
 * of the entry it matched. No flag: open.
 */
static void test_sk_lookup_allow_list(struct dockhost *skel)
{
	static const struct {
		const char *what, *remote4, *remote6, *local;
		uint16_t port;
		bool assigned;
	} cases[] = {
		{ "v4 listed source", "10.0.0.2", "fd00::2", "10.0.0.1", 8088, true },
		{ "v4 source off the list", "10.0.0.5", "fd00::2", "10.0.0.1", 8088, false },
		{ "v6 listed source", "10.0.0.5", "fd00::2", "fd00::1", 8088, true },
		{ "v6 source off the list", "10.0.0.2", "fd00::5", "fd00::1", 8088, false },
		{ "unlisted mapping: open, v4", "10.0.0.5", "fd00::5", "10.0.0.1", 8089, true },
		{ "unlisted mapping: open, v6", "10.0.0.5", "fd00::5", "fd00::1", 8089, true },
	};
	int fd4 = open_target(SOCK_STREAM, "127.0.0.1", SKL_TARGET);
	int fd6 = open_target(SOCK_STREAM, "::1", SKL_TARGET);
	__u64 assigned = 0;
	size_t c;

	if (fd4 < 0 || fd6 < 0)
		goto out;
	put_target(skel, IPPROTO_TCP, "127.0.0.1", SKL_TARGET, fd4);
	put_target(skel, IPPROTO_TCP, "::1", SKL_TARGET, fd6);
	set_mode_at(skel, SKL_BRIDGE, DH_MODE_SOCKET);
	add_gateway_at(skel, SKL_BRIDGE, "10.0.0.1");
	add_gateway_at(skel, SKL_BRIDGE, "fd00::1");
	map_port(skel, 0, IPPROTO_TCP, 8088, "127.0.0.1", "::1", SKL_TARGET);
	map_port(skel, 0, IPPROTO_TCP, 8089, "127.0.0.1", "::1", SKL_TARGET);
	allow(skel, 0, IPPROTO_TCP, 8088, "10.0.0.2/32");
	allow(skel, 0, IPPROTO_TCP, 8088, "fd00::2/128");
	allow(skel, 0, IPPROTO_TCP, 8089, "10.0.0.2/32");  /* not listed: never read */
	set_listed(skel, 0, IPPROTO_TCP, 8088, true);

	for (c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		bool v6 = strchr(cases[c].local, ':') != NULL;
		uint64_t want = cases[c].assigned ? sock_cookie(v6 ? fd6 : fd4) : 0, got;
		int retval = -1;

		skl_remote4 = cases[c].remote4;
		skl_remote6 = cases[c].remote6;
		got = run_sk_lookup(skel, IPPROTO_TCP, cases[c].local, cases[c].port, &retval);
		assigned += cases[c].assigned;
		CHECK(got == want, "%s: selected cookie %llu, want %llu", cases[c].what, (unsigned long long)got,
		      (unsigned long long)want);
		CHECK(retval == SK_PASS, "%s: verdict %d", cases[c].what, retval);
		CHECK_EQ(counters(skel).assigned, assigned);
	}
out:
	skl_remote4 = CONTAINER;
	skl_remote6 = "fd00::2";
	if (fd4 >= 0)
		close(fd4);
	if (fd6 >= 0)
		close(fd6);
}

#define TEST(fn) { #fn, fn }
static const struct test tests[] = {
	TEST(test_tcp_redirect),
	TEST(test_udp_redirect_remapped),
	TEST(test_udp_zero_checksum_stays_zero),
	TEST(test_reply_rewritten_back),
	TEST(test_remapped_reply_gets_gateway_port),
	TEST(test_tcp_flow_recreated_by_any_segment),
	TEST(test_reply_without_state_gets_primary_gateway),
	TEST(test_reply_without_state_not_guessed),
	TEST(test_source_limited_to_its_share),
	TEST(test_closed_flows_give_their_share_back),
	TEST(test_udp_origin_kept_while_live),
	TEST(test_tcp_origin_kept_while_live),
	TEST(test_reply_without_flow_dropped),
	TEST(test_icmp_error_quote_restored),
	TEST(test_icmp_error_tcp_quote_restored),
	TEST(test_icmp_error_for_unknown_flow_dropped),
	TEST(test_egress_non_loopback_untouched),
	TEST(test_unmapped_port_untouched),
	TEST(test_socket_mode_no_socket_untouched),
	TEST(test_socket_mode_guard_first),
	TEST(test_socket_mode_egress_never_rewrites),
	TEST(test_non_gateway_destination_untouched),
	TEST(test_gateway_of_other_bridge_untouched),
	TEST(test_bridge_entry_overrides_global),
	TEST(test_loopback_source_dropped),
	TEST(test_loopback_destination_dropped),
	TEST(test_ipv6_and_arp_untouched),
	TEST(test_truncated_headers_untouched),
	TEST(test_malformed_ipv4_dropped),
	TEST(test_vlan_tag_stacks),
	TEST(test_source_route_options_dropped),
	TEST(test_ipv6_loopback_dropped),
	TEST(test_socket_mode_ipv6_no_socket_untouched),
	TEST(test_nat_mode_ipv6_passed),
	TEST(test_ipv6_only_target_passes_ipv4),
	TEST(test_ip_options_redirected),
	TEST(test_fragments_untouched),
	TEST(test_fragmented_reply_rewritten),
	TEST(test_port_entry_removed_stops_redirect),
	TEST(test_sk_lookup_decision_table),
	TEST(test_sk_lookup_closed_target_not_assigned),
	TEST(test_socket_mode_syn_puts_listener_in_targets),
	TEST(test_socket_mode_udp_notes_flow),
	TEST(test_trace_nothing_when_disabled),
	TEST(test_trace_full_ring_turns_tracing_off),
	TEST(test_allow_list_nat_mode),
	TEST(test_allow_list_socket_mode_ingress),
	TEST(test_sk_lookup_allow_list),
	TEST(test_sources_counted_nat_mode),
	TEST(test_sources_counted_socket_mode),
};

/* A network namespace of our own, its lo up (for 127.0.0.1 and ::1): the
 * programs' socket lookups then find only the sockets the tests open, and
 * the host's are never touched. */
static int own_netns(void)
{
	struct ifreq ifr = { .ifr_name = "lo" };
	int fd, err = 0;

	if (unshare(CLONE_NEWNET))
		return -errno;
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		err = -errno;
	ifr.ifr_flags |= IFF_UP;
	if (!err && ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
		err = -errno;
	close(fd);
	return err;
}

static int quiet_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	return level == LIBBPF_WARN ? vfprintf(stderr, fmt, args) : 0;
}

int main(void)
{
	int passed = 0, failures = 0, err;
	size_t i;

	/* Not a skip: a run that tested nothing must not look green. */
	if (geteuid() != 0) {
		fprintf(stderr, "test_datapath: nothing tested: BPF_PROG_TEST_RUN needs root, running as uid %u\n",
			geteuid());
		return 1;
	}
	err = own_netns();
	if (err) {
		fprintf(stderr, "test_datapath: nothing tested: cannot make a network namespace: %s\n", strerror(-err));
		return 1;
	}
	libbpf_set_print(quiet_print);
	for (i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		struct dockhost *skel = dockhost__open_and_load();

		failed = false;
		if (!skel) {
			printf("    cannot load the BPF object: %s\n", strerror(errno));
			failed = true;
		} else {
			tests[i].fn(skel);
			dockhost__destroy(skel);
		}
		printf("%s unit/%s\n", failed ? "FAIL" : "PASS", tests[i].name + 5);
		failed ? failures++ : passed++;
	}
	printf("%d passed, %d failed\n", passed, failures);
	return failures ? 1 : 0;
}
