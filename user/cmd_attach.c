// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * attach and detach. attach is all or nothing: every change it makes is
 * logged in an undo list and reverted if a later step fails, so a failed
 * attach leaves no link or filter, no pin, no map entry and the sysctl
 * unchanged.
 */
#include <bpf/bpf.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"

#define MAX_GATEWAYS 64  /* per bridge, all origins */

struct gateway {
	struct dh_ip addr;
	__u32 origin;
};

/* What this attach changed, to undo on failure. */
struct undo {
	struct dh_ip gateways[MAX_GATEWAYS];
	int n_gateways;
	struct {
		struct dh_port_key key;
		struct dh_port_target old;
		bool existed;
	} ports[DH_MAX_ARGS];
	int n_ports;
	bool bridge_entry, hooked, sysctl;
	int saved_route_localnet;
	bool mode_entry;   /* the modes entry is this attach's */
	bool mode_changed; /* a conversion: old_mode is what to put back */
	__u32 old_mode;
	bool flags_changed; /* only the modes entry's flags: old_flags back */
	__u32 old_flags;
	bool socket_hooks; /* attached sk_lookup and sendmsg4/6 */
	bool egress_synced; /* the egress program as the new mode wants it */
};

static void add_gateway(struct gateway *gws, int *n, const struct dh_ip *addr, __u32 origin)
{
	int i;

	for (i = 0; i < *n; i++) {
		if (dh_ip_equal(&gws[i].addr, addr)) {
			gws[i].origin |= origin;
			return;
		}
	}
	if (*n < MAX_GATEWAYS)
		gws[(*n)++] = (struct gateway){ *addr, origin };
}

/* Returns 0, or -errno if the device's addresses could not be read. */
static int add_device_gateways(int ifindex, __u32 origin, struct gateway *gws, int *n)
{
	struct dh_ip addrs[MAX_GATEWAYS];
	int count, i;

	count = dh_netdev_addrs(ifindex, addrs, MAX_GATEWAYS);
	for (i = 0; i < count; i++)
		add_gateway(gws, n, &addrs[i], origin);
	return count < 0 ? count : 0;
}

/* The bridge's addresses, docker0's (Docker's host-gateway resolves to it
 * even on user-defined networks, so those packets arrive on br-<id> with
 * docker0's address as destination), the daemon's configured host-gateway
 * addresses, and the user's; IPv4 and IPv6, never IPv6 link-local. */
/* Returns 0, or -errno if a device's addresses could not be read: @gws is
 * then incomplete, and must not be used to prune. */
static int collect_gateways(const char *name, const struct dh_netdev *dev, const struct dh_ip *user,
			    int n_user, __u32 user_origin, struct gateway *gws, int *n, const char **failed)
{
	struct dh_ip configured[8];
	struct dh_netdev docker0;
	int i, n_configured, err, err0;

	*n = 0;
	err = add_device_gateways(dev->ifindex, DH_GW_BRIDGE, gws, n);
	if (err)
		*failed = name;
	if (dh_netdev_lookup("docker0", &docker0) == 0 && docker0.is_bridge &&
	    docker0.ifindex != dev->ifindex) {
		err0 = add_device_gateways(docker0.ifindex, DH_GW_DOCKER0, gws, n);
		if (err0 && !err) {
			err = err0;
			*failed = "docker0";
		}
	}
	n_configured = dh_docker_host_gateways(configured, 8);
	for (i = 0; i < n_configured; i++)
		add_gateway(gws, n, &configured[i], DH_GW_DOCKER_CONFIG);
	for (i = 0; i < n_user; i++)
		add_gateway(gws, n, &user[i], user_origin);
	return err;
}

static bool guard_first(int ifindex, const struct dh_bridge *bridge)
{
	__u32 first;

	return !(bridge->flags & DH_BRIDGE_TCX) || dh_tcx_before_guard(ifindex, true, &first) == 0;
}

static void undo_attach(const struct dh_state *st, const char *name, int ifindex,
			const struct dh_bridge *bridge, struct undo *u)
{
	int i;

	__u32 key = ifindex;

	if (u->sysctl)
		dh_route_localnet_set(name, bridge->saved_route_localnet);
	if (u->mode_changed) {
		/* Back to the old mode before anything else moves: a bridge
		 * going back to NAT mode gets its sysctl back below. */
		struct dh_bridge_mode old = { .mode = u->old_mode, .flags = u->old_flags,
					      .netns_cookie = dh_netns_cookie() };
		struct dh_bridge record;

		bpf_map_update_elem(st->modes_fd, &key, &old, BPF_ANY);
		if (bpf_map_lookup_elem(st->bridges_fd, &key, &record) == 0) {
			record.mode = u->old_mode;
			bpf_map_update_elem(st->bridges_fd, &key, &record, BPF_ANY);
		}
		/* Back to socket mode: the egress program this conversion
		 * added goes, now that route_localnet is back to its value. */
		if (u->egress_synced && !u->hooked) {
			record = *bridge;
			record.mode = u->old_mode;
			dh_hook_egress_sync(st, ifindex, &record);
		}
	}
	if (u->flags_changed) {
		struct dh_bridge_mode entry;

		if (bpf_map_lookup_elem(st->modes_fd, &key, &entry) == 0) {
			entry.flags = u->old_flags;
			bpf_map_update_elem(st->modes_fd, &key, &entry, BPF_ANY);
		}
	}
	if (u->hooked)
		dh_hook_detach(st, ifindex, bridge);
	if (u->mode_entry)
		bpf_map_delete_elem(st->modes_fd, &key);
	for (i = u->n_ports - 1; i >= 0; i--) {
		if (u->ports[i].existed) {
			bpf_map_update_elem(st->ports_fd, &u->ports[i].key, &u->ports[i].old, BPF_ANY);
		} else {
			bpf_map_delete_elem(st->ports_fd, &u->ports[i].key);
			bpf_map_delete_elem(st->port_stats_fd, &u->ports[i].key);
		}
	}
	for (i = 0; i < u->n_gateways; i++)
		dh_gateway_del(st, ifindex, &u->gateways[i]);
	if (u->bridge_entry)
		bpf_map_delete_elem(st->bridges_fd, &key);
	if (u->socket_hooks && dh_state_socket_bridges(st, 0) == 0)
		dh_socket_hooks_detach(st);
}

/* Fail closed: route_localnet=1 on a bridge without our programs is
 * CVE-2020-8558, whoever set it. Used where attach ends without the guard
 * on the bridge. */
static void close_exposure(const char *name)
{
	int now;

	if (dh_route_localnet_get(name, &now) || now == 0)
		return;
	if (dh_route_localnet_set(name, 0))
		dh_warn("%s: route_localnet is %d without our programs and cannot be reset: %s", name, now,
			strerror(errno));
	else
		dh_warn("%s: route_localnet set to 0: it must not stay %d without our programs", name, now);
}

/* With br_netfilter calling iptables, conntrack sees a redirected flow
 * before our rewrite (as gateway:port) and its reply after it: the flow is
 * INVALID to it, and ufw or firewalld drop INVALID. */
static void warn_bridge_netfilter(const char *name, bool socket)
{
	int on;

	/* Socket mode rewrites nothing: conntrack sees one flow. */
	if (!socket && dh_bridge_nf_call_iptables(&on) == 0 && on)
		dh_warn("%s: net.bridge.bridge-nf-call-iptables=1: conntrack sees redirected flows before the rewrite, so a firewall that drops INVALID packets (ufw, firewalld) breaks redirected TCP; set it to 0 if nothing needs it, or use --mode socket",
			name);
}

static int insert_gateways(const struct dh_state *st, int ifindex, const struct gateway *gws,
			   int n, struct undo *u)
{
	int i;

	for (i = 0; i < n; i++) {
		struct dh_gateway value;
		int err;

		if (dh_gateway_get(st, ifindex, &gws[i].addr, &value) == 0) {
			/* Where an address comes from can change; a --gateway
			 * (the CLI's or the configuration's) stays. */
			value.origin = gws[i].origin | (value.origin & (DH_GW_USER | DH_GW_CONFIG));
		} else {
			value.origin = gws[i].origin;
			u->gateways[u->n_gateways++] = gws[i].addr;
		}
		err = dh_gateway_set(st, ifindex, &gws[i].addr, &value);
		if (err)
			return dh_runtime_error("gateway %s: cannot add: %s", dh_ip_str(&gws[i].addr),
						strerror(-err));
	}
	return 0;
}

static int insert_ports(const struct dh_state *st, int ifindex, const struct dh_port_spec *specs,
			int n, struct undo *u)
{
	int i;

	for (i = 0; i < n; i++) {
		struct dh_port_target target = { .addr = htonl(INADDR_LOOPBACK), .port = htons(specs[i].port),
						 .addr6 = { 0, 0, 0, htonl(1) } };
		typeof(u->ports[0]) *entry = &u->ports[u->n_ports];
		const char *result;
		int err;

		entry->key = (struct dh_port_key){ .ifindex = ifindex, .port = htons(specs[i].port),
						   .proto = specs[i].proto };
		entry->existed = bpf_map_lookup_elem(st->ports_fd, &entry->key, &entry->old) == 0;
		err = dh_port_apply(st, ifindex, &specs[i], &target, &result);
		if (err)
			return err;
		u->n_ports++;
	}
	return 0;
}

/* Drops this bridge's gateways that are no longer among @gws (an address
 * removed from the bridge or docker0), except those given with --gateway.
 * Returns how many went. */
static int prune_gateways(const struct dh_state *st, int ifindex, const struct gateway *gws, int n)
{
	struct dh_gateway_entry have[DH_MAX_GATEWAYS];
	int n_have, n_stale = 0, i, j;

	n_have = dh_gateways_of(st, ifindex, have, DH_MAX_GATEWAYS);
	for (j = 0; j < n_have; j++) {
		if (have[j].origin & (DH_GW_USER | DH_GW_CONFIG))
			continue;
		for (i = 0; i < n && !dh_ip_equal(&gws[i].addr, &have[j].addr); i++)
			;
		if (i == n) {
			dh_gateway_del(st, ifindex, &have[j].addr);
			n_stale++;
		}
	}
	return n_stale;
}

/* The bridge's gateways as the map has them, to report what stays when its
 * addresses could not be read. */
static void read_gateways(const struct dh_state *st, int ifindex, struct gateway *gws, int *n)
{
	struct dh_gateway_entry have[MAX_GATEWAYS];
	int i;

	*n = dh_gateways_of(st, ifindex, have, MAX_GATEWAYS);
	for (i = 0; i < *n; i++)
		gws[i] = (struct gateway){ have[i].addr, have[i].origin };
}

static int parse_attach_args(int argc, char **argv, struct dh_attach_opts *args)
{
	static const struct option options[] = {
		{ "gateway", required_argument, NULL, 'g' },
		{ "port", required_argument, NULL, 'p' },
		{ "hook", required_argument, NULL, 'k' },
		{ "mode", required_argument, NULL, 'm' },
		{ "per-source", required_argument, NULL, 's' },
		{}
	};
	const char *why;
	int opt;

	memset(args, 0, sizeof(*args));
	while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
		switch (opt) {
		case 'g':
			if (args->n_gateways == DH_MAX_ARGS)
				return dh_usage_error("attach: at most %d --gateway", DH_MAX_ARGS);
			if (!dh_parse_ip(optarg, &args->gateways[args->n_gateways]))
				return dh_usage_error("attach: --gateway '%s': not an IPv4 or IPv6 address", optarg);
			why = dh_gateway_unusable(&args->gateways[args->n_gateways]);
			if (why)
				return dh_usage_error("attach: --gateway '%s': %s", optarg, why);
			args->n_gateways++;
			break;
		case 'p':
			if (args->n_ports == DH_MAX_ARGS)
				return dh_usage_error("attach: at most %d --port", DH_MAX_ARGS);
			if (!dh_parse_port_spec(optarg, &args->ports[args->n_ports]))
				return dh_usage_error("attach: --port '%s': not PORT, PORT/tcp or PORT/udp (1-65535)",
						      optarg);
			args->n_ports++;
			break;
		case 'k':
			if (!dh_parse_hook(optarg, &args->hook))
				return dh_usage_error("attach: --hook '%s': not auto, tcx or clsact", optarg);
			break;
		case 'm':
			if (!dh_parse_mode(optarg, &args->mode))
				return dh_usage_error("attach: --mode '%s': not socket or nat", optarg);
			args->mode_given = true;
			break;
		case 's':
			if (strcmp(optarg, "on") && strcmp(optarg, "off"))
				return dh_usage_error("attach: --per-source '%s': not on or off", optarg);
			args->per_source = !strcmp(optarg, "on");
			args->per_source_given = true;
			break;
		case ':':
			return dh_usage_error("attach: option '%s' needs a value", argv[optind - 1]);
		default:
			return dh_usage_error("attach: unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind != argc - 1)
		return dh_usage_error("attach: expected one BRIDGE (see 'attach --help')");
	return dh_resolve_bridge_arg("attach", argv[optind], args->bridge);
}

/* Resolves a bridge name; errors are one line naming it. */
static int resolve_bridge(const char *cmd, const char *name, struct dh_netdev *dev)
{
	int err = dh_netdev_lookup(name, dev);

	if (err == -ENODEV)
		return dh_runtime_error("%s: '%s': no such device", cmd, name);
	if (err)
		return dh_runtime_error("%s: '%s': cannot query: %s", cmd, name, strerror(-err));
	if (!dev->is_bridge)
		return dh_runtime_error("%s: '%s': not a bridge (kind '%s')", cmd, name,
					dev->kind[0] ? dev->kind : "none");
	return 0;
}

static void report_attach(const struct dh_cli *cli, const char *name, int ifindex, const char *result,
			  const struct gateway *gws, int n_gws, const struct dh_bridge *bridge)
{
	int saved = bridge->saved_route_localnet;
	int i;

	if (cli->json) {
		struct json_object *obj = json_object_new_object(), *list = json_object_new_array();

		json_object_object_add(obj, "bridge", json_object_new_string(name));
		json_object_object_add(obj, "ifindex", json_object_new_int(ifindex));
		json_object_object_add(obj, "result", json_object_new_string(result));
		for (i = 0; i < n_gws; i++)
			json_object_array_add(list, json_object_new_string(dh_ip_str(&gws[i].addr)));
		json_object_object_add(obj, "gateways", list);
		json_object_object_add(obj, "saved_route_localnet", json_object_new_int(saved));
		json_object_object_add(obj, "hook", json_object_new_string(dh_hook_name(bridge)));
		json_object_object_add(obj, "mode", json_object_new_string(dh_mode_name(bridge->mode)));
		dh_print_json(obj);
		return;
	}
	printf("%s: %s (ifindex %d, %s mode, %s, route_localnet was %d, gateways", name, result, ifindex,
	       dh_mode_name(bridge->mode), dh_hook_name(bridge), saved);
	for (i = 0; i < n_gws; i++)
		printf(" %s", dh_ip_str(&gws[i].addr));
	printf("%s)\n", n_gws ? "" : " none");
}

int dh_cmd_attach(const struct dh_cli *cli, int argc, char **argv)
{
	struct dh_attach_opts opts;
	int err;

	err = parse_attach_args(argc, argv, &opts);
	return err ? err : dh_attach(cli, &opts);
}

/*
 * Socket mode maps a UDP port only to the same port: the reply leaves
 * from the socket's own port (sendmsg4 can set the source address, not
 * the port), and the container would not match it. Returns 0, or an exit
 * code after naming the first entry that @ifindex would use against it.
 */
static int check_socket_ports(const struct dh_state *st, const char *name, __u32 ifindex)
{
	struct dh_port_key key, *prev = NULL;
	struct dh_port_target target;
	char to[80];

	while (bpf_map_get_next_key(st->ports_fd, prev, &key) == 0) {
		prev = &key;
		if ((key.ifindex && key.ifindex != ifindex) || key.proto != IPPROTO_UDP ||
		    bpf_map_lookup_elem(st->ports_fd, &key, &target) || target.port == key.port)
			continue;
		return dh_runtime_error("attach: %s: port %u/udp goes to %s: socket mode cannot answer a UDP port from another port; map it to the same port, or use --mode nat",
					name, ntohs(key.port), dh_target_str(&target, to, sizeof(to)));
	}
	return 0;
}

/* A new bridge's mode: socket mode wherever the kernel runs it, since it
 * sets no sysctl and conntrack sees one flow. */
static __u32 default_mode(void)
{
	return dh_socket_mode_unsupported() ? DH_MODE_NAT : DH_MODE_SOCKET;
}

/*
 * Puts @bridge's mode in place for the datapath: socket mode's hooks first
 * (delivery and replies must work from the first packet), then the modes
 * entry, then the record. A bridge leaving socket mode takes the hooks
 * with it when it was the last one. The entry's flags are --per-source's
 * where given, else the entry's own (a new entry: counting).
 */
static int set_mode(const struct dh_state *st, const struct dh_attach_opts *opts, __u32 ifindex,
		    struct dh_bridge *bridge, __u32 mode, bool existed, struct undo *u)
{
	struct dh_bridge_mode entry = { .mode = mode, .netns_cookie = bridge->netns_cookie };
	const char *name = opts->bridge;
	struct dh_bridge_mode old;
	bool had_entry;
	__u32 key = ifindex;
	int err;

	if (mode == DH_MODE_SOCKET) {
		const char *failed;

		err = dh_socket_hooks_attach(st, &failed);
		if (err)
			return dh_runtime_error("attach: %s: cannot attach %s: %s", name, failed, strerror(-err));
		u->socket_hooks = true;
	}
	had_entry = bpf_map_lookup_elem(st->modes_fd, &key, &old) == 0;
	if (opts->per_source_given)
		entry.flags = opts->per_source ? 0 : DH_MODE_NO_SOURCES;
	else if (had_entry)
		entry.flags = old.flags;
	if (had_entry) {
		/* Also what a conversion found by the record below puts back. */
		u->old_flags = old.flags;
		if (old.mode == mode && old.netns_cookie == entry.netns_cookie && old.flags == entry.flags)
			goto record;
		if (old.mode == mode && old.netns_cookie == entry.netns_cookie) {
			u->flags_changed = true;
		} else {
			u->mode_changed = true;
			u->old_mode = old.mode;
		}
	} else {
		u->mode_entry = true;
	}
	if (bpf_map_update_elem(st->modes_fd, &key, &entry, BPF_ANY))
		return dh_runtime_error("attach: %s: cannot set its mode: %s", name, strerror(errno));
	/* Counting stopped: what it counted goes, rather than stand still
	 * in `stats --by-source` as if no one had come since. */
	if (entry.flags & DH_MODE_NO_SOURCES)
		dh_state_forget_sources(st, ifindex);
record:
	if (bridge->mode != mode && existed && !u->mode_changed) {
		u->mode_changed = true;
		u->old_mode = bridge->mode;
	}
	bridge->mode = mode;
	if (bpf_map_update_elem(st->bridges_fd, &key, bridge, BPF_ANY))
		return dh_runtime_error("attach: %s: cannot record state: %s", name, strerror(errno));
	if (mode == DH_MODE_NAT && u->mode_changed && u->old_mode == DH_MODE_SOCKET &&
	    dh_state_socket_bridges(st, 0) == 0)
		dh_socket_hooks_detach(st);
	return 0;
}

int dh_attach(const struct dh_cli *cli, const struct dh_attach_opts *opts)
{
	struct gateway gws[MAX_GATEWAYS];
	struct dh_bridge bridge = {};
	struct undo u = {};
	struct dh_netdev dev;
	struct dh_state st;
	const char *result = "attached", *failed = NULL, *lacks;
	bool existed = false, need_hook = true, socket;
	__u32 key, mode;
	int err, n_gws, addr_err, n_pruned = 0;

	err = dh_require_root();
	if (!err)
		err = resolve_bridge("attach", opts->bridge, &dev);
	if (err)
		return err;
	if (opts->mode_given && opts->mode == DH_MODE_SOCKET) {
		if ((lacks = dh_socket_mode_unsupported()))
			return dh_runtime_error("attach: %s: socket mode needs %s, which this kernel lacks: use --mode nat",
						opts->bridge, lacks);
	}
	/* A failed read is not "no addresses": pruning by it would drop every
	 * gateway the bridge has, so its gateways stay until a read works. */
	addr_err = collect_gateways(opts->bridge, &dev, opts->gateways, opts->n_gateways,
				    opts->config ? DH_GW_CONFIG : DH_GW_USER, gws, &n_gws, &failed);
	if (addr_err)
		dh_warn("%s: cannot read %s's addresses (%s): keeping the gateways it has",
			opts->bridge, failed, strerror(-addr_err));
	else if (n_gws == 0)
		dh_warn("%s has no address: nothing is redirected until it gets one or --gateway names one",
			opts->bridge);

	err = dh_state_open(cli, &st, DH_OPEN_OR_CREATE);
	if (err)
		return err;

	key = dev.ifindex;
	if (bpf_map_lookup_elem(st.bridges_fd, &key, &bridge) == 0 &&
	    !strncmp(bridge.name, opts->bridge, DH_IFNAMSIZ)) {
		bool hooked = dh_hook_attached(&st, dev.ifindex, &bridge);

		existed = true;
		/* Attached before: keep the saved sysctl, the original one.
		 * Programs gone, or a tcx program put before our guard since:
		 * attach again, guard first. */
		need_hook = !(hooked && guard_first(dev.ifindex, &bridge));
		result = need_hook ? "re-attached" : "already attached";
		/* Our programs are gone: no route_localnet=1 until they are back. */
		if (!hooked)
			close_exposure(opts->bridge);
	} else {
		if (dh_route_localnet_get(opts->bridge, &u.saved_route_localnet)) {
			err = dh_runtime_error("attach: %s: cannot read route_localnet: %s", opts->bridge,
					       strerror(errno));
			goto fail;
		}
		memset(&bridge, 0, sizeof(bridge));
		snprintf(bridge.name, sizeof(bridge.name), "%s", opts->bridge);
		bridge.saved_route_localnet = u.saved_route_localnet;
		if (u.saved_route_localnet != 0) {
			/* No record explains it: an attach that died, another
			 * pin dir, or set by hand. Restoring it would leave the
			 * host exposed after detach, so 0 is what detach restores. */
			dh_warn("%s: route_localnet is already %d and no record of ours explains it: detach will set it to 0 (set it again by hand afterwards if something needs it)",
				opts->bridge, u.saved_route_localnet);
			bridge.saved_route_localnet = 0;
		}
		bridge.attached_at = time(NULL);
		/* The mode first: an attach killed before the modes entry
		 * is finished by the next plain attach in this mode. */
		bridge.mode = opts->mode_given ? opts->mode : default_mode();
		bridge.netns_cookie = dh_netns_cookie();
		if (bpf_map_update_elem(st.bridges_fd, &key, &bridge, BPF_ANY)) {
			err = dh_runtime_error("attach: %s: cannot record state: %s", opts->bridge,
					       strerror(errno));
			goto fail;
		}
		u.bridge_entry = true;
		dh_test_kill_point("attach-recorded");
	}
	/* The configuration's from now on (written with the record below):
	 * apply detaches it once no longer declared. */
	if (opts->config)
		bridge.flags |= DH_BRIDGE_CONFIG;
	/* A plain attach keeps the bridge's mode; --mode converts it. */
	mode = opts->mode_given ? opts->mode : bridge.mode;
	socket = mode == DH_MODE_SOCKET;
	if (socket) {
		err = check_socket_ports(&st, opts->bridge, dev.ifindex);
		if (err)
			goto fail;
	}

	err = insert_gateways(&st, dev.ifindex, gws, n_gws, &u);
	if (!err) {
		dh_test_kill_point("attach-gateways");
		err = insert_ports(&st, dev.ifindex, opts->ports, opts->n_ports, &u);
	}
	if (err)
		goto fail;
	dh_test_kill_point("attach-ports");

	/* The mode before the programs: the first packet they see is
	 * handled as this bridge's mode says. */
	if (existed && bridge.mode != mode)
		result = socket ? "converted to socket mode" : "converted to nat mode";
	bridge.netns_cookie = dh_netns_cookie();
	err = set_mode(&st, opts, dev.ifindex, &bridge, mode, existed, &u);
	if (err)
		goto fail;
	dh_test_kill_point("attach-mode");

	if (need_hook) {
		/* Hooking replaces any program of ours on the bridge (a guard
		 * no longer first, a lost pin set's): route_localnet stays 0
		 * until the new one is in, whatever set it to 1. With no guard
		 * there at all, a 1 was an open door: say so. */
		if (!dh_hook_unrecorded_present(dev.ifindex))
			close_exposure(opts->bridge);
		else if (dh_route_localnet_set(opts->bridge, 0)) {
			err = dh_runtime_error("attach: %s: cannot set route_localnet=0 before hooking: %s",
					       opts->bridge, strerror(errno));
			goto fail;
		}
		dh_test_kill_point("attach-sysctl-closed");
		/* Programs before the sysctl: route_localnet=1 without the
		 * loopback guard in place is exactly CVE-2020-8558. */
		err = dh_hook_attach(&st, dev.ifindex, opts->hook, &bridge);
		if (err == -EBUSY) {
			err = dh_runtime_error("attach: %s: another program holds tc handle 0x%x priority %d",
					       opts->bridge, DH_TC_HANDLE, DH_TC_PRIORITY);
			goto fail;
		}
		if (err == -EOPNOTSUPP) {
			err = dh_runtime_error("attach: %s: this kernel has no tcx (6.6+); use --hook clsact",
					       opts->bridge);
			goto fail;
		}
		if (err) {
			err = dh_runtime_error("attach: %s: cannot attach the programs: %s", opts->bridge,
					       strerror(-err));
			goto fail;
		}
		u.hooked = true;
		dh_test_kill_point("attach-hooked");
		if (bpf_map_update_elem(st.bridges_fd, &key, &bridge, BPF_ANY)) {
			err = dh_runtime_error("attach: %s: cannot record state: %s", opts->bridge,
					       strerror(errno));
			goto fail;
		}
		dh_test_kill_point("attach-hook-recorded");
	}
	if (!socket) {
		/* NAT mode: route_localnet=1 under our programs, both of them:
		 * the egress program keeps loopback sources from leaving but as
		 * replies of our flows. A bridge coming from socket mode has
		 * only its guard: the egress program goes in first. Also
		 * repairs an attach killed before its sysctl, or a detach
		 * killed after it, that left 0 with the programs in place. */
		int now;

		err = dh_hook_egress_sync(&st, dev.ifindex, &bridge);
		if (err == -EBUSY) {
			err = dh_runtime_error("attach: %s: another program holds tc handle 0x%x priority %d on egress",
					       opts->bridge, DH_TC_HANDLE, DH_TC_PRIORITY);
			goto fail;
		}
		if (err) {
			err = dh_runtime_error("attach: %s: cannot attach the egress program: %s", opts->bridge,
					       strerror(-err));
			goto fail;
		}
		u.egress_synced = true;
		dh_test_kill_point("attach-egress-added");
		u.sysctl = u.bridge_entry || u.mode_changed;
		if ((dh_route_localnet_get(opts->bridge, &now) || now != 1) &&
		    dh_route_localnet_set(opts->bridge, 1)) {
			err = dh_runtime_error("attach: %s: cannot set route_localnet: %s", opts->bridge,
					       strerror(errno));
			goto fail;
		}
		dh_test_kill_point("attach-sysctl");
	} else {
		/* Socket mode never sets a sysctl. It only puts back what a
		 * NAT mode attach changed, once the socket-mode entry is in
		 * place (above): until then the NAT datapath needed it. */
		int now;

		if (dh_route_localnet_get(opts->bridge, &now) == 0 && now != bridge.saved_route_localnet &&
		    dh_route_localnet_set(opts->bridge, bridge.saved_route_localnet)) {
			err = dh_runtime_error("attach: %s: cannot restore route_localnet=%d: %s", opts->bridge,
					       bridge.saved_route_localnet, strerror(errno));
			goto fail;
		}
		dh_test_kill_point("attach-sysctl-restored");
		/* Then NAT mode's egress program goes (socket mode has none),
		 * never before: route_localnet=1 wants both programs. One left
		 * here is harmless (with route_localnet=0 nothing leaves from
		 * loopback for it to see), and the next attach removes it. */
		err = dh_hook_egress_sync(&st, dev.ifindex, &bridge);
		if (err)
			dh_warn("%s: cannot remove NAT mode's egress program (harmless in socket mode; the next attach tries again): %s",
				opts->bridge, strerror(-err));
		err = 0;
		dh_test_kill_point("attach-egress-removed");
	}
	if (need_hook || u.mode_changed)
		warn_bridge_netfilter(opts->bridge, socket);
	if (!addr_err)
		n_pruned = prune_gateways(&st, dev.ifindex, gws, n_gws);
	else
		read_gateways(&st, dev.ifindex, gws, &n_gws);
	if (n_pruned + u.n_gateways > 0 && !strcmp(result, "already attached"))
		result = "gateways updated";
	if (opts->result)
		*opts->result = result;
	else if (!opts->quiet_if_unchanged || strcmp(result, "already attached"))
		report_attach(cli, opts->bridge, dev.ifindex, result, gws, n_gws, &bridge);
	dh_state_close(&st);
	return 0;

fail:
	undo_attach(&st, opts->bridge, dev.ifindex, &bridge, &u);
	if (!dh_hook_unrecorded_present(dev.ifindex))
		close_exposure(opts->bridge);  /* no program of ours on the bridge */
	if (st.created && dh_state_bridge_count(&st) == 0)
		dh_state_remove_pins(&st);
	dh_state_close(&st);
	return err;
}

/* Removes our programs the way the record says, then any left in either
 * hook: an attach killed between hooking and recording how left a record
 * that says otherwise. */
static int unhook(const struct dh_state *st, int ifindex, const struct dh_bridge *bridge)
{
	int err = dh_hook_detach(st, ifindex, bridge);

	return err ? err : dh_hook_remove_unrecorded(ifindex);
}

/* What every kind of detach says: JSON, or its one line of text. */
static void report_detach(const struct dh_cli *cli, const char *name, const char *result, int restored,
			  const char *text)
{
	if (cli->json) {
		struct json_object *obj = json_object_new_object();

		json_object_object_add(obj, "bridge", json_object_new_string(name));
		json_object_object_add(obj, "result", json_object_new_string(result));
		json_object_object_add(obj, "restored_route_localnet", json_object_new_int(restored));
		dh_print_json(obj);
	} else {
		printf("%s: %s\n", name, text);
	}
}

/*
 * detach --force: the way out of a pin set that an older version left
 * (which every other command refuses), without that version's binary. It
 * reads only what every version keeps (see dh_state_open_older), sets
 * route_localnet to 0, removes our links or filters and the record; the
 * last bridge takes every pin with it. On this version's pins: a detach.
 */
static int detach_older(const struct dh_cli *cli, const char *name)
{
	struct dh_bridge bridge;
	struct dh_netdev dev;
	struct dh_state st;
	bool present;
	__u32 ifindex;
	int err;

	err = dh_require_root();
	if (err)
		return err;
	err = dh_state_open_older(cli, &st);
	if (err == -EAGAIN)
		return dh_detach(cli, name);
	if (err == -ENOENT)
		return dh_runtime_error("detach: '%s': not attached", name);
	if (err)
		return err;
	if (!dh_state_older_find_bridge(&st, name, &ifindex, &bridge)) {
		dh_state_close(&st);
		return dh_runtime_error("detach: '%s': not attached", name);
	}
	present = dh_netdev_lookup(name, &dev) == 0 && dev.ifindex == (int)ifindex;
	if (present) {
		/* Older versions saved even an unexplained 1: fail closed. */
		if (dh_route_localnet_set(name, 0))
			err = dh_runtime_error("detach: %s: cannot set route_localnet=0: %s", name, strerror(errno));
		else if (bridge.saved_route_localnet != 0)
			dh_warn("%s: route_localnet was %d before the older version attached: set to 0 (set it again by hand if something needs it)",
				name, bridge.saved_route_localnet);
		if (!err)
			dh_state_older_unlink(&st, ifindex);
		if (!err && unhook(&st, ifindex, &bridge))
			err = dh_runtime_error("detach: %s: cannot remove the programs (%s)", name,
					       dh_hook_name(&bridge));
	} else {
		dh_state_older_unlink(&st, ifindex);  /* links gone with the device: their pins */
	}
	if (!err) {
		bpf_map_delete_elem(st.bridges_fd, &ifindex);
		if (dh_state_bridge_count(&st) == 0 && dh_state_remove_older(&st))
			dh_warn("%s: cannot remove all pins: %s", st.pin_dir, strerror(errno));
	}
	dh_state_close(&st);
	if (err)
		return err;
	report_detach(cli, name, "detached (older pin set)", 0,
		      present ? "detached from an older dockhost-bpf's pins (route_localnet set to 0)"
			      : "detached from an older dockhost-bpf's pins (route_localnet gone with the device)");
	return 0;
}

/*
 * The names of the bridges the pin dir records (with @force, an older
 * version's too, from the head of its records), for detach --all. Nothing
 * attached, or no pin dir at all, is none.
 */
static int recorded_bridges(const struct dh_cli *cli, bool force, char (*names)[DH_IFNAMSIZ], int *n)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info), key, *prev = NULL;
	struct dh_state st;
	char *value;
	int err;

	*n = 0;
	err = force ? dh_state_open_older(cli, &st) : -EAGAIN;
	if (err == -EAGAIN)
		err = dh_state_open(cli, &st, DH_OPEN_EXISTING);
	if (err == -ENOENT)
		return 0;
	if (err)
		return err;
	if (bpf_obj_get_info_by_fd(st.bridges_fd, &info, &len) || !(value = calloc(1, info.value_size))) {
		dh_state_close(&st);
		return dh_runtime_error("detach: %s: cannot read the bridges map", cli->pin_dir);
	}
	while (*n < DH_MAX_BRIDGES && bpf_map_get_next_key(st.bridges_fd, prev, &key) == 0) {
		prev = &key;
		if (bpf_map_lookup_elem(st.bridges_fd, &key, value))
			continue;
		snprintf(names[(*n)++], DH_IFNAMSIZ, "%.*s", DH_IFNAMSIZ - 1, value);
	}
	free(value);
	dh_state_close(&st);
	return 0;
}

/*
 * detach --all: every recorded bridge, one detach each, so each restores
 * its own route_localnet and the last removes the pins (what package
 * removal runs). The names are read first: each detach takes the lock
 * itself. Goes on past a failure; fails (exit 1) if any failed.
 */
static int detach_all(const struct dh_cli *cli, bool force)
{
	static char names[DH_MAX_BRIDGES][DH_IFNAMSIZ];
	int i, n, err, failed = 0;

	err = dh_require_root();
	if (err)
		return err;
	err = recorded_bridges(cli, force, names, &n);
	if (err)
		return err;
	if (n == 0 && !cli->json)
		printf("detach: no bridge attached\n");
	for (i = 0; i < n; i++) {
		err = force ? detach_older(cli, names[i]) : dh_detach(cli, names[i]);
		if (err && !failed)
			failed = err;
	}
	return failed;
}

int dh_cmd_detach(const struct dh_cli *cli, int argc, char **argv)
{
	char name[DH_IFNAMSIZ];
	bool force = false, all = false;
	const char *arg = NULL;
	int i, err;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--force"))
			force = true;
		else if (!strcmp(argv[i], "--all"))
			all = true;
		else if (argv[i][0] == '-')
			return dh_usage_error("detach: unknown option '%s'", argv[i]);
		else if (arg)
			return dh_usage_error("detach: expected one BRIDGE (see 'detach --help')");
		else
			arg = argv[i];
	}
	if (all && arg)
		return dh_usage_error("detach: '%s': --all takes no BRIDGE", arg);
	if (all)
		return detach_all(cli, force);
	if (!arg)
		return dh_usage_error("detach: expected one BRIDGE (see 'detach --help')");
	err = dh_resolve_bridge_arg("detach", arg, name);
	if (err)
		return err;
	return force ? detach_older(cli, name) : dh_detach(cli, name);
}

/*
 * A bridge that no record of ours explains, with programs of ours on it:
 * their pin set was lost (its bpffs unmounted, or private to a process
 * that has ended). The guard outlived it; detach removes it, and closes
 * route_localnet first, since the value from before attach went with the
 * record.
 */
static int detach_unrecorded(const struct dh_cli *cli, const char *name)
{
	struct dh_netdev dev;
	int err;

	if (dh_netdev_lookup(name, &dev) || !dh_hook_unrecorded_present(dev.ifindex))
		return dh_runtime_error("detach: '%s': not attached", name);
	if (dh_route_localnet_set(name, 0))
		return dh_runtime_error("detach: %s: cannot set route_localnet=0: %s", name, strerror(errno));
	err = dh_hook_remove_unrecorded(dev.ifindex);
	if (err)
		return dh_runtime_error("detach: %s: cannot remove the programs: %s", name, strerror(-err));
	if (dh_cgroup_remove_unrecorded(dev.ifindex) < 0)
		dh_warn("%s: cannot look for socket mode's cgroup programs at the cgroup v2 root", name);
	report_detach(cli, name, "detached (no record)", 0,
		      "detached programs with no record (their pin set was lost); route_localnet set to 0");
	return 0;
}

int dh_detach(const struct dh_cli *cli, const char *name)
{
	return dh_detach_quiet(cli, name, false);
}

/* apply says what it changed in its own words: @quiet prints nothing but errors. */
int dh_detach_quiet(const struct dh_cli *cli, const char *name, bool quiet)
{
	char text[64];
	struct dh_bridge bridge;
	struct dh_netdev dev;
	struct dh_state st;
	const char *result = "detached";
	bool device_present;
	__u32 ifindex;
	int err;

	err = dh_require_root();
	if (err)
		return err;
	err = dh_state_open(cli, &st, DH_OPEN_EXISTING);
	if (err == -ENOENT)
		return detach_unrecorded(cli, name);
	if (err)
		return err;
	/* A bridge deleted since attach (docker network rm) took our programs
	 * and sysctl with it; one re-created under the name is not ours. */
	ifindex = dh_netdev_lookup(name, &dev) == 0 ? dev.ifindex : 0;
	device_present = ifindex && bpf_map_lookup_elem(st.bridges_fd, &ifindex, &bridge) == 0 &&
			 !strncmp(bridge.name, name, DH_IFNAMSIZ);
	if (!device_present && !dh_state_find_bridge(&st, name, &ifindex, &bridge)) {
		err = detach_unrecorded(cli, name);
		dh_state_close(&st);
		return err;
	}
	if (device_present) {
		int now;

		/* Sysctl first: closes the loopback exposure before the guard
		 * goes. Socket mode set none: it only repairs what a killed
		 * conversion from NAT mode left. */
		if ((bridge.mode != DH_MODE_SOCKET ||
		     (dh_route_localnet_get(name, &now) == 0 && now != bridge.saved_route_localnet)) &&
		    dh_route_localnet_set(name, bridge.saved_route_localnet))
			err = dh_runtime_error("detach: %s: cannot restore route_localnet=%d: %s", name,
					       bridge.saved_route_localnet, strerror(errno));
		if (!err)
			dh_test_kill_point("detach-sysctl");
		if (!err && unhook(&st, ifindex, &bridge))
			err = dh_runtime_error("detach: %s: cannot remove the programs (%s)", name,
					       dh_hook_name(&bridge));
		if (err) {
			dh_state_close(&st);
			return err;
		}
		dh_test_kill_point("detach-unhooked");
	} else {
		/* Its programs went with the device. */
		result = "forgotten (device gone since attach)";
	}
	dh_state_forget_bridge(&st, ifindex);
	dh_test_kill_point("detach-forgotten");
	/* The last socket-mode bridge takes the socket hooks with it. */
	if (bridge.mode == DH_MODE_SOCKET && dh_state_socket_bridges(&st, 0) == 0 &&
	    (err = dh_socket_hooks_detach(&st)))
		dh_warn("%s: cannot detach socket mode's sk_lookup or cgroup programs: %s", name, strerror(-err));

	if (dh_state_bridge_count(&st) == 0 && dh_state_remove_pins(&st))
		dh_warn("%s: cannot remove all pins: %s", st.pin_dir, strerror(errno));
	dh_state_close(&st);

	if (device_present)
		snprintf(text, sizeof(text), "detached (route_localnet restored to %d)", bridge.saved_route_localnet);
	if (!quiet)
		report_detach(cli, name, result, bridge.saved_route_localnet, device_present ? text : result);
	return 0;
}
