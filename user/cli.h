/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Declarations shared by the CLI's files: one header, one concern per .c. */
#ifndef DH_CLI_H
#define DH_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <json-c/json.h>
#include <linux/types.h>

#include "dockhost.h"

#define DH_PROG "dockhost-bpf"

/* Exit codes: usage errors name the bad value; runtime errors say what failed. */
enum { DH_EXIT_OK = 0, DH_EXIT_RUNTIME = 1, DH_EXIT_USAGE = 2 };

struct dh_cli {
	const char *pin_dir;
	bool json;
	bool verbose;
};

/* report.c */
int dh_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int dh_runtime_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void dh_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void dh_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void dh_set_verbose(bool verbose);
void dh_print_json(struct json_object *obj); /* prints and releases */
const char *dh_ipv4_str(__u32 addr_be);      /* spec.c; static buffer per call site is not needed: rotates */
const char *dh_ipv6_str(const __u32 addr[4]); /* rotates like dh_ipv4_str */

/* An address of either family, as gateways are handled in the CLI. */
struct dh_ip {
	int family;  /* AF_INET or AF_INET6 */
	union {
		__u32 v4;     /* network order */
		__u32 v6[4];
	};
};
const char *dh_ip_str(const struct dh_ip *ip);
bool dh_ip_equal(const struct dh_ip *a, const struct dh_ip *b);

/* spec.c: parsing of user input, no side effects */
struct dh_port_spec {
	__u16 port;  /* host order */
	__u8 proto;  /* IPPROTO_TCP / IPPROTO_UDP */
};
bool dh_parse_port_spec(const char *text, struct dh_port_spec *spec);
bool dh_parse_port_number(const char *text, __u16 *port);
bool dh_parse_ipv4(const char *text, __u32 *addr_be);
/* An IPv4 dotted quad or an IPv6 address (no brackets, no scope). */
bool dh_parse_ip(const char *text, struct dh_ip *ip);
/* NULL if @ip may be a gateway, else why not (loopback, link-local, ...). */
const char *dh_gateway_unusable(const struct dh_ip *ip);
/* --to: PORT, ADDR, ADDR:PORT, [::1] or [::1]:PORT, ADDR in 127.0.0.0/8
 * or ::1. Fills the families it names (a bare PORT: both); port 0 when
 * none is given (the caller's spec port). */
bool dh_parse_target(const char *text, struct dh_port_target *target);
bool dh_ipv6_is_loopback_addr(const __u32 addr[4]);  /* ::1 */
/* ADDR or ADDR/LEN, IPv4 or IPv6: 0, -EINVAL, or -ERANGE when host bits
 * are set (@prefix then holds the network, for the hint). */
int dh_parse_cidr(const char *text, struct dh_allow_prefix *prefix);
const char *dh_prefix_str(const struct dh_allow_prefix *prefix, char *buf, size_t size);
bool dh_ipv6_unset(const __u32 addr[4]);             /* :: */
/* "127.0.0.1:80", "[::1]:80" or both, comma-separated: what @target maps. */
const char *dh_target_str(const struct dh_port_target *target, char *buf, size_t size);
const char *dh_proto_name(__u8 proto);
bool dh_ifname_valid(const char *name);
bool dh_is_loopback_addr(__u32 addr_be);

/* netdev.c: devices, via rtnetlink so it answers for the caller's netns */
struct dh_netdev {
	int ifindex;
	bool is_bridge;
	char kind[32];
	char name[DH_IFNAMSIZ];
};
int dh_netdev_lookup(const char *name, struct dh_netdev *dev); /* 0, -ENODEV, -errno */
struct nlmsghdr;
/* Every link of the caller's netns to @cb (a libmnl mnl_cb_t). */
int dh_rtnl_link_dump(int (*cb)(const struct nlmsghdr *, void *), void *data);
/* Fills up to @max bridges of the caller's netns; how many, or -errno. */
int dh_netdev_bridges(struct dh_netdev *devs, int max);
/* Fills up to @max addresses of @ifindex, IPv4 and IPv6 but link-local;
 * returns how many, or -errno. */
int dh_netdev_addrs(int ifindex, struct dh_ip *addrs, int max);
/* One rtnetlink request; every answer goes to @cb (a libmnl mnl_cb_t). */
int dh_rtnl_talk(struct nlmsghdr *req, int (*cb)(const struct nlmsghdr *, void *), void *data);
/* The same on another netlink bus (NETLINK_NETFILTER, say). */
int dh_netlink_talk(int bus, struct nlmsghdr *req, int (*cb)(const struct nlmsghdr *, void *), void *data);

/* A receive buffer that grows to the largest datagram read. */
struct dh_rtnl_buf {
	char *data;
	size_t size;
};
int dh_rtnl_buf_init(struct dh_rtnl_buf *buf);
void dh_rtnl_buf_free(struct dh_rtnl_buf *buf);
/* One datagram: its length, -EMSGSIZE (truncated, lost) or -errno. */
long dh_rtnl_recv(int fd, struct dh_rtnl_buf *buf);

/* sysctl.c */
int dh_route_localnet_get(const char *ifname, int *value);
int dh_route_localnet_set(const char *ifname, int value);
int dh_bridge_nf_call_iptables(int *value);  /* the caller's netns */

/* hook.c: where the programs hang on a bridge: tcx links where the kernel
 * has them (6.6+), clsact filters otherwise. */
enum dh_hook { DH_HOOK_AUTO, DH_HOOK_TCX, DH_HOOK_CLSACT };
struct dh_state;
/* Attaches per @hook (AUTO: tcx, else clsact) the programs @bridge->mode
 * needs, and records in @bridge->flags what it used. */
int dh_hook_attach(const struct dh_state *st, int ifindex, enum dh_hook hook, struct dh_bridge *bridge);
int dh_hook_detach(const struct dh_state *st, int ifindex, const struct dh_bridge *bridge);
/* True if the programs @bridge's mode needs are on it (socket mode: no egress one). */
bool dh_hook_attached(const struct dh_state *st, int ifindex, const struct dh_bridge *bridge);
int dh_hook_egress_sync(const struct dh_state *st, int ifindex, const struct dh_bridge *bridge);
const char *dh_hook_name(const struct dh_bridge *bridge);
/* Programs of ours on @ifindex that no record explains (a lost pin set):
 * found, and removed, by name in either hook. */
bool dh_hook_unrecorded_present(int ifindex);
bool dh_hook_unrecorded_guard(int ifindex);  /* an ingress program of ours */
int dh_hook_remove_unrecorded(int ifindex);
bool dh_parse_hook(const char *text, enum dh_hook *hook);  /* spec.c */

/* tc.c: clsact filters at DH_TC_HANDLE / DH_TC_PRIORITY */
enum dh_tc_presence { DH_TC_NONE, DH_TC_OURS, DH_TC_FOREIGN };
int dh_clsact_attach(int ifindex, int ingress_fd, int egress_fd, bool *created_clsact);
int dh_clsact_detach(int ifindex, bool destroy_clsact_if_empty);
enum dh_tc_presence dh_clsact_presence(int ifindex, bool egress);
int dh_clsact_egress_attach(int ifindex, int egress_fd);
int dh_clsact_egress_detach(int ifindex);
bool dh_clsact_any_ours(int ifindex);
bool dh_clsact_guard_ours(int ifindex);

/* tcx.c: our programs first in the tcx chains, attached without links so
 * they never depend on a pin; -EOPNOTSUPP from attach on kernels without tcx */
int dh_tcx_attach(const struct dh_state *st, int ifindex, bool egress);
int dh_tcx_detach(int ifindex);
bool dh_tcx_attached(const struct dh_state *st, int ifindex, bool egress);
int dh_tcx_egress_attach(const struct dh_state *st, int ifindex);
int dh_tcx_egress_detach(int ifindex);
int dh_tcx_before_guard(int ifindex, bool guard_in_tcx, __u32 *first_foreign);
int dh_tcx_count_ours(int ifindex);
bool dh_tcx_guard_present(int ifindex);

/* state.c: the pin directory, its lock, the pinned maps and programs */
struct dh_state {
	const char *pin_dir;
	int dir_fd;  /* holds the flock */
	int ports_fd, port_stats_fd, gateways_fd, nat_state_fd, counters_fd, bridges_fd;
	int modes_fd, sock_flows_fd, gateways6_fd, targets_fd;
	int trace_events_fd, trace_ctl_fd;  /* dockhost-bpf trace */
	int allow4_fd, allow6_fd, allow_sources_fd;
	int prog_ingress_fd, prog_egress_fd, prog_sendmsg4_fd, prog_sendmsg6_fd, prog_sk_lookup_fd;
	int prog_connect4_fd, prog_connect6_fd;
	int sources_fd;
	bool created;  /* this process loaded and pinned everything */
};
enum dh_open_mode { DH_OPEN_EXISTING, DH_OPEN_OR_CREATE };
int dh_state_open(const struct dh_cli *cli, struct dh_state *st, enum dh_open_mode mode);
void dh_state_close(struct dh_state *st);
int dh_state_remove_pins(struct dh_state *st);
int dh_state_bridge_count(const struct dh_state *st);
/* Bridges recorded in socket mode, but @except (an ifindex, or 0). */
int dh_state_socket_bridges(const struct dh_state *st, __u32 except);
/* Finds an attached bridge by name; fills key and value. */
bool dh_state_find_bridge(const struct dh_state *st, const char *name, __u32 *ifindex,
			  struct dh_bridge *bridge);
/* Deletes every ports/port_stats/gateways entry scoped to @ifindex. */
void dh_state_forget_bridge(const struct dh_state *st, __u32 ifindex);
/* Deletes @ifindex's entries in `sources` (attach --per-source off). */
void dh_state_forget_sources(const struct dh_state *st, __u32 ifindex);
/* Gateways of either family: one map each (gateways, gateways6). */
struct dh_gateway_entry {
	__u32 ifindex;
	struct dh_ip addr;
	__u32 origin;  /* enum dh_gateway_origin bits */
};
int dh_gateway_get(const struct dh_state *st, __u32 ifindex, const struct dh_ip *addr, struct dh_gateway *value);
int dh_gateway_set(const struct dh_state *st, __u32 ifindex, const struct dh_ip *addr,
		   const struct dh_gateway *value);  /* 0 or -errno */
void dh_gateway_del(const struct dh_state *st, __u32 ifindex, const struct dh_ip *addr);
/* @ifindex's gateways (every bridge's with 0), IPv4 first, each family
 * sorted; how many were filled. */
int dh_gateways_of(const struct dh_state *st, __u32 ifindex, struct dh_gateway_entry *out, int max);
int dh_state_sum_port_stats(const struct dh_state *st, const struct dh_port_key *key,
			    struct dh_port_stats *sum);
/* Sets a per-CPU map entry to zero on every CPU. Returns 0 or -errno. */
int dh_state_zero_percpu(int fd, const void *key, size_t value_size, __u64 flags);
int dh_state_sum_counters(const struct dh_state *st, struct dh_counters *sum);
/* Checks root and that nothing runs unprivileged half-way. */
int dh_require_root(void);
/* detach --force on a pin set of an older version (see state.c). */
int dh_state_open_older(const struct dh_cli *cli, struct dh_state *st);
bool dh_state_older_find_bridge(const struct dh_state *st, const char *name, __u32 *ifindex,
				struct dh_bridge *bridge);
int dh_state_remove_older(struct dh_state *st);
void dh_state_older_unlink(const struct dh_state *st, __u32 ifindex);
/* Test only: SIGKILLs the CLI at @step if DH_TEST_KILL_AT names it. */
void dh_test_kill_point(const char *step);

/* cgroup.c: socket mode's cgroup/sendmsg4, sendmsg6, connect4 and connect6 at
 * the cgroup v2 root (mounted in a private directory for the call where no
 * cgroup2 is mounted), "the sendmsg programs": all or none. They are
 * attached without a link, like tcx, so they never depend on a pin. */
int dh_cgroup_sendmsg_attach(const struct dh_state *st);
int dh_cgroup_sendmsg_detach(const struct dh_state *st);
int dh_cgroup_sendmsg_attached(const struct dh_state *st); /* 1 (all), 0 or -errno */
/* A lost pin set's program for @ifindex: how many were removed, or -errno. */
int dh_cgroup_remove_unrecorded(__u32 ifindex);
/* sk_lookup.c: socket mode's hooks off the bridge, dh_sk_lookup on the
 * caller's netns (a pinned link) and the sendmsg programs: both or neither.
 * On failure, *failed names the hook. */
int dh_socket_hooks_attach(const struct dh_state *st, const char **failed);
int dh_socket_hooks_detach(const struct dh_state *st);
int dh_socket_delivery_attached(const struct dh_state *st); /* 1, 0 or -errno */
/* Can this kernel run socket mode? NULL, or what it lacks. */
const char *dh_socket_mode_unsupported(void);
/* The caller's network namespace cookie (SO_NETNS_COOKIE), or 0. */
__u64 dh_netns_cookie(void);
const char *dh_mode_name(__u32 mode);
bool dh_parse_mode(const char *text, __u32 *mode);  /* spec.c */

/* docker.c: Docker's API socket ($DOCKER_HOST unix:// or /var/run/docker.sock) */
/* A bridge network's device name; -ENOENT (no such network), -EINVAL (not a
 * bridge network), -EHOSTUNREACH (no daemon); @why says it in words. */
int dh_docker_network_bridge(const char *network, char bridge[DH_IFNAMSIZ], char *why, size_t why_len);
/* host-gateway-ip(s) from the daemon's configuration; how many were found. */
int dh_docker_host_gateways(struct dh_ip *addrs, int max);
/* Running containers' addresses (GET /containers/json), for naming a
 * source: how many were filled, or -EHOSTUNREACH with @why. */
struct dh_docker_addr {
	struct dh_ip addr;
	char name[128];
};
int dh_docker_container_addrs(struct dh_docker_addr *out, int max, char *why, size_t why_len);
/* docker_parse.c: the answer to GET /containers/json -> up to @max (address,
 * name) pairs, IPv4 and global IPv6 on each network; -EHOSTUNREACH with @why
 * for another status or a body that is not a list. */
int dh_docker_parse_container_addrs(long status, const char *body, size_t len, struct dh_docker_addr *out,
				    int max, char *why, size_t why_len);
/* docker_parse.c: the same answers parsed from a buffer (@len bytes, no
 * NUL needed), without I/O, for the fuzz targets. The answer to GET
 * /networks/NAME with HTTP @status -> its bridge device: 0, or -ENOENT
 * (404), -EHOSTUNREACH (another status, not JSON), -EINVAL (not a bridge
 * network, no usable name, a wrong-typed member), with @why in one line. */
int dh_docker_parse_network(long status, const char *body, size_t len, char bridge[DH_IFNAMSIZ],
			    char *why, size_t why_len);
/* daemon.json's text -> up to @max host-gateway addresses, IPv4 and IPv6;
 * returns how many. @why is empty, or names the first value ignored as
 * malformed or unusable as a gateway. */
int dh_docker_parse_daemon_json(const char *text, size_t len, struct dh_ip *addrs, int max, char *why,
				size_t why_len);
/* An allow-list source from Docker: a container's addresses (GET
 * /containers/NAME/json), else a network's subnets (GET /networks/NAME).
 * 0, -ENOENT (neither), -EHOSTUNREACH (no daemon), -EINVAL; @why says it. */
int dh_docker_allow_source(const char *name, struct dh_allow_source *src, char *why, size_t why_len);
/* docker_parse.c: one such answer, @network saying which it is. Fills
 * @src (kind, prefixes); @why is empty or names what was ignored. */
int dh_docker_parse_allow_source(long status, const char *body, size_t len, bool network,
				 struct dh_allow_source *src, char *why, size_t why_len);
/* dh_docker_allow_source for a known kind (container, else network). */
int dh_docker_source_of_kind(const char *name, bool network, struct dh_allow_source *src, char *why,
			     size_t why_len);
/* GET @path: 0 with *body (NUL-terminated, the caller frees), *len and
 * *status, or -EHOSTUNREACH with @why. */
int dh_docker_get(const char *path, char **body, size_t *len, long *status, char *why, size_t why_len);
/* Docker's event stream (GET @path), read by a thread: records on a pipe
 * (dh_docker_events_fd) for a poll() loop. The thread reconnects with a
 * bounded back-off; stop ends it at once. The caller blocks its signals
 * before start (the thread inherits the mask). */
enum { DH_DOCKER_CONNECTED = 'c', DH_DOCKER_EVENT = 'e', DH_DOCKER_LOST = 'x' };
struct dh_docker_event {
	char type;       /* DH_DOCKER_* */
	char text[255];  /* "container start NAME", or why the stream is down */
};
struct dh_docker_events;
struct dh_docker_events *dh_docker_events_start(const char *path, char *why, size_t why_len);
int dh_docker_events_fd(const struct dh_docker_events *ev);
bool dh_docker_events_read(struct dh_docker_events *ev, struct dh_docker_event *rec);
void dh_docker_events_stop(struct dh_docker_events *ev);
/* docker_parse.c: GET /containers/json (running containers) -> those
 * with @label: id, name, the label's value, networks and addresses. */
struct dh_docker_labelled {
	char id[13];    /* short id */
	char name[64];
	char value[128];  /* the label's value, as set */
	char networks[8][64];
	int n_networks;
	struct dh_allow_source src;  /* its addresses, all networks */
};
int dh_docker_parse_labelled(long status, const char *body, size_t len, const char *label,
			     struct dh_docker_labelled *out, int max, char *why, size_t why_len);
/* watch_docker.c: what Docker's events change (see there). */
#define DH_DOCKER_PORTS_LABEL "dockhost.ports"
struct dh_watched_bridge {
	int ifindex;
	char name[DH_IFNAMSIZ];
};
void dh_watch_docker_sync(const struct dh_cli *cli, bool labels, const struct dh_watched_bridge *bridges,
			  int n_bridges);
/* BRIDGE as typed: a device name, or a Docker network name or id. Fills
 * @name; returns 0 or an exit code after printing the error. */
int dh_resolve_bridge_arg(const char *cmd, const char *arg, char name[DH_IFNAMSIZ]);

/* cmd_attach.c, also used by watch */
#define DH_MAX_ARGS 64  /* --gateway / --port given at once */
struct dh_attach_opts {
	char bridge[DH_IFNAMSIZ];
	enum dh_hook hook;
	bool mode_given;  /* --mode: else a new bridge gets the default, an attached one keeps its mode */
	__u32 mode;       /* enum dh_mode */
	bool per_source_given;  /* --per-source: else a new bridge counts, an attached one keeps its setting */
	bool per_source;
	struct dh_ip gateways[DH_MAX_ARGS];
	int n_gateways;
	struct dh_port_spec ports[DH_MAX_ARGS];
	int n_ports;
	bool quiet_if_unchanged;  /* watch's refreshes: print only what changed */
	bool config;              /* apply: the bridge and its --gateway are the configuration's */
	const char **result;      /* apply: set to what attach did, and nothing printed */
};
int dh_attach(const struct dh_cli *cli, const struct dh_attach_opts *opts);
int dh_detach(const struct dh_cli *cli, const char *name);
int dh_detach_quiet(const struct dh_cli *cli, const char *name, bool quiet);

/* commands */
int dh_cmd_watch(const struct dh_cli *cli, int argc, char **argv);
int dh_cmd_attach(const struct dh_cli *cli, int argc, char **argv);
int dh_cmd_detach(const struct dh_cli *cli, int argc, char **argv);
int dh_cmd_port(const struct dh_cli *cli, int argc, char **argv);
int dh_cmd_status(const struct dh_cli *cli, int argc, char **argv);
int dh_cmd_stats(const struct dh_cli *cli, int argc, char **argv);
int dh_cmd_trace(const struct dh_cli *cli, int argc, char **argv);
int dh_cmd_metrics(const struct dh_cli *cli, int argc, char **argv);
int dh_cmd_top(const struct dh_cli *cli, int argc, char **argv);
/* cmd_sources.c: stats --by-source (a snapshot under the pin dir's lock,
 * printed after it: names come from Docker), and stats --reset's part. */
struct dh_sources;
int dh_sources_snapshot(const struct dh_state *st, struct dh_sources **out);  /* 0 or -errno */
int dh_sources_print(const struct dh_cli *cli, struct dh_sources *snapshot);   /* NULL: none; frees it */
void dh_sources_free(struct dh_sources *snapshot);
int dh_sources_reset(const struct dh_state *st);
struct json_object *dh_sources_rows_json(const struct dh_state *st);  /* for prom.c; NULL on error */

/* cmd_port.c, shared with attach --port */
int dh_port_apply(const struct dh_state *st, __u32 ifindex, const struct dh_port_spec *spec,
		  const struct dh_port_target *target, const char **result);
struct json_object *dh_ports_json(const struct dh_state *st);
void dh_ports_print(const struct dh_state *st);

/* main.c: a signalfd for SIGTERM, SIGINT and SIGHUP, blocked; -1 and errno */
int dh_stop_signals_fd(void);
/* cmd_status.c: the datapath counters' names, in struct dh_counters'
 * order (the X-macro), for every view of them */
extern const char *const dh_counter_names[];
#define DH_N_COUNTERS (sizeof(struct dh_counters) / sizeof(__u64))
/* cmd_status.c: status --json's "bridges" */
struct json_object *dh_bridges_json(const struct dh_state *st);

/* prom.c: Prometheus' text format. Write: every family, from @st (NULL: no
 * pin set, all zero); 0 or -errno. Collect: opens the pin set (its lock
 * only for the read) into *buf (the caller frees); 0, -errno, or an exit
 * code after dh_state_open printed why. */
#include <stdio.h>
int dh_prom_write(FILE *out, const struct dh_state *st, bool per_source);
int dh_prom_collect(const struct dh_cli *cli, bool per_source, char **buf, size_t *len);

/* allow.c: the allow-lists (allow4, allow6, allow_sources) */
struct dh_allow_arg {
	char name[DH_ALLOW_NAME_LEN];  /* the record's name: a CIDR as printed, "any", a Docker name */
	struct dh_allow_source src;
};
/* --from @text: a CIDR, "any", or (with @docker) a Docker container or
 * network, resolved now. Returns 0 or an exit code after the error. */
int dh_allow_parse(const char *cmd, const char *text, bool docker, struct dh_allow_arg *arg);
/* The same prefixes, in any order. */
bool dh_allow_same_prefixes(const struct dh_allow_source *a, const struct dh_allow_source *b);
/* Puts @arg's prefixes in the list of the mapping @port (replacing what
 * the same name put there before). 0 or -errno. */
int dh_allow_add(const struct dh_state *st, const struct dh_port_key *port, const struct dh_allow_arg *arg);
/* Takes the source @name out of @port's list: 0, -ENOENT. */
int dh_allow_del(const struct dh_state *st, const struct dh_port_key *port, const char *name);
/* Everything of @port's list, or of every mapping of @ifindex. */
void dh_allow_forget(const struct dh_state *st, const struct dh_port_key *port);
void dh_allow_forget_bridge(const struct dh_state *st, __u32 ifindex);
/* @port's sources: a JSON array, or a text line per source. */
struct json_object *dh_allow_json(const struct dh_state *st, const struct dh_port_key *port);
void dh_allow_print(const struct dh_state *st, const struct dh_port_key *port, const char *indent);

/* config.c: the declarative configuration (apply, watch --config); see
 * there for the format. Parsing has no side effect and does no I/O but
 * dh_config_load's reads; errors are one line, "FILE:LINE: what". */
#define DH_CONFIG_DEFAULT      "/etc/dockhost-bpf.conf"
#define DH_CONFIG_MAX_FILES    64
#define DH_CONFIG_MAX_BRIDGES  DH_MAX_BRIDGES
#define DH_CONFIG_MAX_PORTS    4096
#define DH_CONFIG_MAX_FROM     16
#define DH_CONFIG_MAX_GATEWAYS 8
struct dh_config_bridge {
	char name[64];      /* a device name, or (match) a glob */
	bool is_match;
	bool mode_given;
	__u32 mode;         /* enum dh_mode */
	struct dh_ip gateways[DH_CONFIG_MAX_GATEWAYS];
	int n_gateways;
	int file, line;     /* where: files[file], its line number */
};
struct dh_config_port {
	struct dh_port_spec spec;
	struct dh_port_target target;  /* port always set (the spec's without --to); flags 0 */
	char bridge[DH_IFNAMSIZ];      /* "": every bridge (the ifindex 0 entry) */
	char from[DH_CONFIG_MAX_FROM][DH_ALLOW_NAME_LEN];  /* as recorded: 'any', a CIDR as printed, a Docker name */
	int n_from;
	int file, line;
};
struct dh_config {
	char files[DH_CONFIG_MAX_FILES][256];
	int n_files;
	struct dh_config_bridge *bridges;  /* bridge and match lines, in order */
	int n_bridges, max_bridges;
	struct dh_config_port *ports;
	int n_ports, max_ports;
};
/* FILE, then FILE.d/ *.conf (for FILE.conf) in name order: 0, or -errno
 * with @why (and @cfg empty). */
int dh_config_load(const char *path, struct dh_config *cfg, char *why, size_t why_len);
/* One file's text (no NUL needed), added to @cfg; then dh_config_check. */
int dh_config_parse(struct dh_config *cfg, const char *file, const char *text, size_t len, char *why,
		    size_t why_len);
int dh_config_check(const struct dh_config *cfg, char *why, size_t why_len);
void dh_config_free(struct dh_config *cfg);
const struct dh_config_bridge *dh_config_bridge(const struct dh_config *cfg, const char *name, bool exact);
const char *dh_config_where(const struct dh_config *cfg, int file, int line, char *buf, size_t size);
bool dh_docker_name_valid(const char *text);  /* spec.c: [a-zA-Z0-9][a-zA-Z0-9_.-]*, shorter than DH_ALLOW_NAME_LEN */

/* cmd_apply.c: converges the host to a configuration, owning only what
 * it declares (see there); also watch --config's, at start and reload. */
struct dh_apply_opts {
	bool dry_run;
	bool missing_ok;     /* watch: a declared bridge not there yet is not an error */
	const char *only;    /* watch: just this bridge, as it appears */
	const char *prefix;  /* before each line printed: "" or "watch: " */
};
int dh_config_apply(const struct dh_cli *cli, const struct dh_config *cfg, const struct dh_apply_opts *opts);
int dh_cmd_apply(const struct dh_cli *cli, int argc, char **argv);

#endif /* DH_CLI_H */
