/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The ABI shared by the BPF programs and the CLI: map keys and values, the
 * counter struct and the pin names. Every struct here lands in the object's
 * BTF, which is why `bpftool map dump` prints field names for our maps.
 *
 * Addresses and ports are kept in network byte order everywhere: the
 * datapath compares them against packet bytes without swapping.
 */
#ifndef DOCKHOST_H
#define DOCKHOST_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define DH_PIN_DIR_DEFAULT "/sys/fs/bpf/dockhost-bpf"

/* Pin names under the pin directory (bpffs refuses names with a '.'). */
#define DH_PIN_PROG_INGRESS "prog_ingress"
#define DH_PIN_PROG_EGRESS  "prog_egress"
#define DH_PIN_PROG_SENDMSG4 "prog_sendmsg4"  /* socket mode's UDP reply source */
#define DH_PIN_PROG_SENDMSG6 "prog_sendmsg6"  /* the same for IPv6 */
#define DH_PIN_PROG_SK_LOOKUP "prog_sk_lookup" /* socket mode's delivery */
#define DH_PIN_PROG_CONNECT4 "prog_connect4"  /* socket mode: counts connect()ing UDP servers */
#define DH_PIN_PROG_CONNECT6 "prog_connect6"  /* the same for IPv6 */
/* The netns attachment of prog_sk_lookup: a BPF link, the only way to
 * attach sk_lookup, so it lives as long as this pin (or an open fd). */
#define DH_PIN_LINK_SK_LOOKUP "link_sk_lookup"
/* Maps are pinned under the names of their definitions in bpf/dockhost.bpf.c. */
#define DH_MAP_PORTS      "ports"
#define DH_MAP_PORT_STATS "port_stats"
#define DH_MAP_GATEWAYS   "gateways"
#define DH_MAP_GATEWAYS6  "gateways6"
#define DH_MAP_NAT_STATE  "nat_state"
#define DH_MAP_COUNTERS   "counters"
#define DH_MAP_BRIDGES    "bridges"
#define DH_MAP_MODES      "modes"
#define DH_MAP_SOCK_FLOWS "sock_flows"
#define DH_MAP_TARGETS    "targets"
#define DH_MAP_TRACE_EVENTS "trace_events"
#define DH_MAP_TRACE_CTL    "trace_ctl"
#define DH_MAP_ALLOW4     "allow4"
#define DH_MAP_ALLOW6     "allow6"
#define DH_MAP_ALLOW_SOURCES "allow_sources"
#define DH_MAP_SOURCES    "sources"

/*
 * The pin set's version, in the style of libxdp's dispatcher: a one-entry
 * array pinned as "meta" holds a magic and the ABI version. It is pinned
 * before anything else and removed after everything else. A CLI refuses a
 * pin set of another version (or without meta) rather than read its maps
 * with the wrong sizes, and checks every map's type, key and value size.
 * Bump DH_ABI_VERSION with any change to a pinned map (its name, type, key
 * or value layout, the meaning of a field) or to what the pinned programs
 * expect of the maps. Version 1 is the pin set from before meta existed.
 * For ever: the magic at offset 0 and the version at offset 4 of meta's
 * value, whatever else a later version adds after them.
 */
#define DH_PIN_META     "meta"
#define DH_ABI_MAGIC    0x66626864  /* "dhbf" in memory on little endian */
#define DH_ABI_VERSION  6  /* 6: socket mode delivers through sk_lookup and the targets sockhash;
			    * trace_events and trace_ctl (dockhost-bpf trace);
			    * allow-lists (allow4, allow6, allow_sources, dh_port_target.flags);
			    * per-source counters (sources), and dh_bridge_mode.flags
			    * to turn them off per bridge;
			    * owner tags of the declarative config (apply): DH_BRIDGE_CONFIG,
			    * DH_PORT_CONFIG, DH_ALLOW_CONFIG, DH_GW_CONFIG (bits no earlier
			    * build of 6 set, and that the programs never read) */

struct dh_meta {
	__u32 magic;        /* DH_ABI_MAGIC */
	__u32 abi_version;  /* DH_ABI_VERSION of the CLI that pinned the set */
};

/* With clsact (kernels without tcx, or --hook clsact): one handle and
 * priority on both hooks, so detach removes exactly what attach added.
 * Priority 1 runs the loopback guard before any other filter. */
#define DH_TC_HANDLE   0xd0c8
#define DH_TC_PRIORITY 1

#define DH_MAX_PORTS    65536
#define DH_MAX_GATEWAYS 1024
#define DH_MAX_BRIDGES  256
#define DH_NAT_ENTRIES  65536
#define DH_SOCK_FLOWS   65536
/* New flows one container address may start per window (see nat_sources
 * in bpf/dockhost.bpf.c): a quarter of nat_state per window of
 * 2^DH_NAT_WINDOW_SHIFT ns (about 4.3 s). Flows that close give theirs back. */
#define DH_NAT_SOURCE_MAX    (DH_NAT_ENTRIES / 4)
#define DH_NAT_WINDOW_SHIFT  32
#define DH_NAT_SOURCES       16384

#define DH_IFNAMSIZ 16

/* ports: which (bridge, proto, gateway port) is redirected where.
 * ifindex 0 applies to every attached bridge; a per-bridge entry wins. */
struct dh_port_key {
	__u32 ifindex;
	__u16 port;  /* gateway port the container connects to */
	__u8 proto;  /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad;
};

/* Address families as the kernel numbers them (macros, so not in vmlinux.h). */
#define DH_AF_INET  2
#define DH_AF_INET6 10

/*
 * One mapping serves both families: IPv4 packets go to addr, IPv6 packets
 * (socket mode only) to addr6, both on port. An address left zero leaves
 * that family unmapped: `--to 127.0.0.2:Q` names IPv4 only, `--to
 * [::1]:Q` IPv6 only, a bare PORT (or none) both.
 */
struct dh_port_target {
	__u32 addr;      /* IPv4 loopback address, 127.0.0.0/8, or 0 */
	__u16 port;
	__u16 flags;     /* enum dh_port_flags */
	__u32 addr6[4];  /* IPv6 loopback address (only ::1), or all zero */
};

enum dh_port_flags {
	/* Only sources in allow4/allow6 under this entry's key may use it;
	 * set with the first --from and kept until the mapping goes, so an
	 * emptied list is closed to all, never open. */
	DH_PORT_ALLOW_LIST = 1 << 0,
	/* Declared by the configuration (apply, watch --config), which
	 * owns it: a mapping without it is a user's or a label's, and
	 * apply leaves it alone. The programs never read it. */
	DH_PORT_CONFIG = 1 << 1,
};

/*
 * allow4, allow6: the allow-lists, one LPM trie per family. The key is the
 * mapping's dh_port_key (the entry the packet matched: a bridge's own, or
 * ifindex 0) followed by the source prefix, and prefixlen counts the
 * DH_ALLOW_KEY_BITS of the mapping's key first: one lookup with the
 * packet's source, at full length, finds whether any prefix of that
 * mapping's list holds it, however long the list. The value counts the
 * sources (allow_sources) that put the prefix there.
 */
#define DH_ALLOW_KEY_BITS 64  /* dh_port_key, whole */
#define DH_MAX_ALLOW      65536

struct dh_allow4_key {
	__u32 prefixlen;  /* DH_ALLOW_KEY_BITS + the source's prefix length */
	struct dh_port_key port;
	__u32 addr;
};

struct dh_allow6_key {
	__u32 prefixlen;
	struct dh_port_key port;
	__u32 addr[4];
};

/* allow_sources: not read by the programs. What each --from of a mapping
 * was (a CIDR, a Docker container or network, by the name typed) and the
 * prefixes it put in allow4/allow6, for port del --from and port list. */
#define DH_ALLOW_NAME_LEN  80  /* a 64-digit Docker id fits */
#define DH_ALLOW_PREFIXES  16

enum dh_allow_kind {
	DH_ALLOW_CIDR      = 1,
	DH_ALLOW_CONTAINER = 2,
	DH_ALLOW_NETWORK   = 3,
	/* watch --docker-labels, named "label:<short id>": a container's
	 * label put it in a list that was there (LABEL), or made the mapping
	 * (LABEL_MAPPED: the mapping goes with the last label source). */
	DH_ALLOW_LABEL        = 4,
	DH_ALLOW_LABEL_MAPPED = 5,
};
/* An owner bit over the kind: the source is the configuration's (apply),
 * of kind (kind & DH_ALLOW_KIND_MASK): a CIDR, container or network,
 * re-resolved by watch like any other. Without it: a user's or a label's. */
#define DH_ALLOW_KIND_MASK 0xff
#define DH_ALLOW_CONFIG    (1 << 8)

struct dh_allow_source_key {
	struct dh_port_key port;
	char name[DH_ALLOW_NAME_LEN];  /* a CIDR as printed, or a Docker name or id as typed */
};

struct dh_allow_prefix {
	__u8 family;     /* DH_AF_INET or DH_AF_INET6 */
	__u8 prefixlen;  /* of the address alone */
	__u8 pad[2];
	__u32 addr[4];   /* IPv4 in the first word */
};

struct dh_allow_source {
	__u32 kind;   /* enum dh_allow_kind */
	__u32 count;  /* prefixes used */
	__u64 resolved_at;  /* seconds since the epoch */
	struct dh_allow_prefix prefixes[DH_ALLOW_PREFIXES];
};

/* port_stats: per-CPU traffic for one ports entry, same key. */
struct dh_port_stats {
	__u64 packets;
	__u64 bytes;
};

/* gateways: the addresses on a bridge that containers use to reach the host. */
struct dh_gateway_key {
	__u32 ifindex;
	__u32 addr;
};

/* gateways6: the same for IPv6, same values. A map of its own so that the
 * IPv4 lookup stays an 8-byte key. Never link-local (fe80::/10): see
 * README "IPv6". */
struct dh_gateway6_key {
	__u32 ifindex;
	__u32 addr[4];
};

enum dh_gateway_origin {
	DH_GW_BRIDGE  = 1 << 0, /* an address of the bridge itself */
	DH_GW_DOCKER0 = 1 << 1, /* docker0's address: Docker's host-gateway */
	DH_GW_USER    = 1 << 2, /* given with --gateway */
	DH_GW_DOCKER_CONFIG = 1 << 3, /* host-gateway-ip in Docker's daemon.json */
	DH_GW_CONFIG  = 1 << 4, /* a bridge line's --gateway in the configuration (apply) */
};

struct dh_gateway {
	__u32 origin; /* enum dh_gateway_origin bits */
};

/* nat_state: one entry per redirected flow, written at ingress, read at
 * egress to turn the loopback reply back into the gateway address. The key
 * is the reply's view: loopback side and container side. */
struct dh_nat_key {
	__u32 ifindex;
	__u32 container_addr;
	__u32 loopback_addr;
	__u16 container_port;
	__u16 loopback_port;
	__u8 proto;
	__u8 pad[3];
};

enum dh_nat_flags {
	DH_NAT_CLOSING = 1 << 0, /* the loopback side sent FIN or RST */
	DH_NAT_GUESSED = 1 << 1, /* recreated at egress with the primary gateway */
};

struct dh_nat_origin {
	__u32 gateway_addr;
	__u16 gateway_port;
	__u8 flags;  /* enum dh_nat_flags */
	__u8 pad;
	__u32 seen;  /* last request, bpf_ktime_get_coarse_ns() >> DH_NAT_SEEN_SHIFT */
};

/*
 * A live flow's origin is never overwritten by a packet naming another
 * gateway (flow_origin_conflicts counts those, and they are dropped):
 * replies carry no gateway, so the first one the flow used stays. A flow
 * is live until the service closed it (TCP), or until no request came for
 * DH_NAT_*_IDLE units of 2^DH_NAT_SEEN_SHIFT ns (about seconds).
 */
#define DH_NAT_SEEN_SHIFT 30
#define DH_NAT_UDP_IDLE   30   /* like conntrack's UDP timeout */
#define DH_NAT_TCP_IDLE   600  /* TCP: only for a SYN, see dh_nat_replaceable() */

/* nat_sources (not pinned): new flows per (bridge, container address) in
 * the current window, the bound on what one source takes of nat_state. */
struct dh_nat_source_key {
	__u32 ifindex;
	__u32 addr;
};

struct dh_nat_source {
	__u32 window;   /* bpf_ktime_get_coarse_ns() >> DH_NAT_WINDOW_SHIFT */
	__s32 created;  /* entries created in it, less flows that closed */
};

/* nat_fragments (not pinned): the gateway a fragmented reply's first
 * fragment was sent from, for its later fragments, which carry no ports.
 * Keyed as IPv4 reassembly is, by addresses, protocol and IP id. */
#define DH_NAT_FRAGMENTS 4096

struct dh_frag_key {
	__u32 ifindex;
	__u32 loopback_addr;
	__u32 container_addr;
	__u16 id;
	__u8 proto;
	__u8 pad;
};

/* bridges: what attach changed on a bridge, so any later detach restores it.
 * For ever, in every ABI version: the key is the ifindex, and name,
 * saved_route_localnet and flags lead the value at these offsets, so that
 * 'detach --force' can leave an older version's pin set. */
enum dh_bridge_flags {
	DH_BRIDGE_CREATED_CLSACT = 1 << 0, /* we added the clsact qdisc */
	DH_BRIDGE_TCX            = 1 << 1, /* attached with tcx links, not clsact */
	DH_BRIDGE_CONFIG         = 1 << 2, /* the configuration's (apply): detached when no longer declared */
};

/* What the datapath does with a packet for a mapped port on a gateway. */
enum dh_mode {
	DH_MODE_NAT    = 0, /* rewrite to loopback, route_localnet=1, flow state */
	DH_MODE_SOCKET = 1, /* sk_lookup hands it to the loopback socket, no rewrite */
};

struct dh_bridge {
	char name[DH_IFNAMSIZ];
	__s32 saved_route_localnet; /* value before attach */
	__u32 flags;                /* enum dh_bridge_flags */
	__u64 attached_at;          /* seconds since the epoch */
	__u32 mode;                 /* enum dh_mode */
	__u32 pad;
	__u64 netns_cookie;         /* the bridge's netns (SO_NETNS_COOKIE) */
};

/* modes: what the datapath reads of a bridge, by ifindex. No entry is NAT
 * mode (what a bridge runs while attach has not written its entry yet). A
 * bridge changes mode by changing this entry, never by reloading the
 * programs other bridges use. */
struct dh_bridge_mode {
	__u32 mode;          /* enum dh_mode */
	__u32 flags;         /* enum dh_bridge_mode_flags */
	__u64 netns_cookie;  /* for cgroup/sendmsg4/6: act only in this netns */
};

enum dh_bridge_mode_flags {
	/* attach --per-source off: the bridge's packets add nothing to
	 * `sources` (port_stats and the counters still count them). Zero,
	 * what an entry without flags holds, is on. */
	DH_MODE_NO_SOURCES = 1 << 0,
};

/*
 * sock_flows: socket mode's UDP flows, written at ingress for each datagram
 * handed to a socket, read by cgroup/sendmsg4/6 when that socket answers: a
 * socket bound to loopback cannot send to a container (IPv4: EINVAL; IPv6:
 * it leaves from ::1 and the container drops it), so the reply's source
 * becomes the gateway the container used. The key is what the sending
 * socket sees: its own bound address and port (the target's, or the
 * wildcard) and the container's. Addresses of either family: an IPv4 one
 * in the first word, the rest zero, told apart by family.
 */
struct dh_sock_flow_key {
	__u32 container_addr[4];
	__u32 sock_addr[4];
	__u16 container_port;
	__u16 sock_port;
	__u8 proto;
	__u8 family;  /* DH_AF_INET or DH_AF_INET6 */
	__u8 pad[2];
};

struct dh_sock_flow {
	__u32 gateway_addr[4];
	__u32 ifindex;  /* its bridge: the netns check goes through modes */
	__u32 seen;     /* last datagram, like dh_nat_origin's: a live flow
			 * keeps its gateway for DH_NAT_UDP_IDLE */
};

/*
 * targets: socket mode's target sockets (a sockhash: sk_lookup programs
 * can only take a socket from one), by what a mapping points to. The
 * value is the socket; read from user space it is the socket's cookie.
 */
struct dh_target_key {
	__u32 addr[4];  /* 127.x in the first word (the rest zero), or ::1 */
	__u16 port;     /* network byte order */
	__u8 proto;
	__u8 family;    /* DH_AF_INET or DH_AF_INET6 */
};

/*
 * sources: per-source counters, by (bridge, container address, mapped
 * port). An LRU of DH_SOURCE_ENTRIES: at the bound the least recently
 * active sources are evicted, and their counts with them. Every packet of
 * a mapped port costs one lookup; only a source's first packet adds an
 * entry. Shared values with atomic adds, not per-CPU ones: a per-CPU LRU
 * preallocates DH_SOURCE_ENTRIES values per possible CPU.
 */
#define DH_SOURCE_ENTRIES 16384

struct dh_source_key {
	__u32 ifindex;  /* the bridge */
	__u32 addr[4];  /* the source: IPv4 in the first word (the rest zero), or IPv6 */
	__u16 port;     /* the mapped (gateway) port, network order */
	__u8 proto;     /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 family;    /* DH_AF_INET or DH_AF_INET6 */
};

struct dh_source_stats {
	__u64 packets;           /* delivered to the target (refused attempts not counted) */
	__u64 bytes;
	__u64 flows;             /* new flows: TCP SYNs, new UDP flows */
	__u64 refused_no_socket; /* new flows with nothing at the target */
	__u64 refused_not_allowed; /* new flows from a source the allow-list leaves out */
};

/* counters: one per-CPU struct, a field per outcome and per drop reason.
 * X-macro so the CLI prints exactly the fields the datapath counts. */
#define DH_COUNTER_FIELDS(X)                                                   \
	/* ingress: from containers into the host */                          \
	X(redirected)             /* rewritten toward loopback */              \
	X(passed)                 /* not for us: left untouched */             \
	X(passed_fragment)        /* fragment to a gateway: not redirected */  \
	X(passed_tagged)          /* VLAN-tagged: guarded, never redirected */ \
	X(dropped_loopback_src)   /* source 127/8, ::1 (CVE-2020-8558) */      \
	X(dropped_loopback_dst)   /* destination 127/8, ::1 (CVE-2020-8558) */ \
	X(dropped_vlan_too_deep)  /* more VLAN tags than the guard walks */    \
	X(dropped_malformed)      /* IP or tag header that cannot be read */   \
	X(dropped_ip_options)     /* IPv4 source route, or broken options */   \
	X(dropped_rewrite_failed) /* a helper failed mid-rewrite */            \
	X(flows_recreated)        /* TCP flow state lost, rebuilt from a packet */ \
	X(dropped_nat_source_limit) /* the source started too many flows */    \
	X(flow_origin_conflicts)  /* live flow sent to another gateway: dropped */ \
	X(assigned)               /* socket mode: sk_lookup chose the target */ \
	X(passed_no_socket)       /* socket mode: nothing at the target */      \
	X(passed_assign_failed)   /* socket mode: the target cannot take it */  \
	X(udp_replies_sourced)    /* socket mode: sendmsg4/6 set the gateway */ \
	X(udp_connects_unsupported) /* socket mode: UDP server connect()ed: use NAT */ \
	X(passed_not_allowed)     /* source not in the port's allow-list */     \
	/* egress: from the host to containers */                             \
	X(replies_rewritten)      /* loopback reply turned into gateway */     \
	X(icmp_errors_rewritten)  /* ICMP error about a redirected flow */     \
	X(replies_guessed)        /* TCP reply without state: primary gateway */ \
	X(reply_fragments_rewritten) /* fragment of a reply, first or later */ \
	X(dropped_reply_no_state) /* loopback source, no flow: never leaks */  \
	X(dropped_reply_rewrite_failed)

struct dh_counters {
#define DH_COUNTER_MEMBER(name) __u64 name;
	DH_COUNTER_FIELDS(DH_COUNTER_MEMBER)
#undef DH_COUNTER_MEMBER
};

/* The counter a field of struct dh_counters is, by number: what an event's
 * reason names (the CLI prints the field's name). */
#define DH_COUNTER_INDEX(name) (__builtin_offsetof(struct dh_counters, name) / sizeof(__u64))

/*
 * `dockhost-bpf trace`: the datapath writes events into the trace_events
 * ring buffer only while trace_ctl's entry is enabled, so that nobody
 * tracing costs one array lookup on the paths that would emit (new flows,
 * refusals, drops), never a reservation. trace sets it when it starts and
 * clears it when it ends. A trace that dies without clearing it (SIGKILL)
 * leaves it on only until the ring is full: the program that finds no room
 * turns it off itself and counts the loss, so at most one ring of events
 * is ever written with nobody reading. A running trace sees that, reports
 * the loss and turns it back on; a new trace takes over from a dead pid.
 */
#define DH_TRACE_RING_SIZE (256 * 1024)  /* about 2900 events */
#define DH_TRACE_POLL_MS   100  /* trace reads the ring this often (no wakeup per event) */

enum dh_trace_kind {
	DH_TRACE_FLOW       = 1, /* a new redirected flow */
	DH_TRACE_REFUSED    = 2, /* a mapped port with no socket (listener) at the target */
	DH_TRACE_DISALLOWED = 3, /* a source the port's allow-list does not name */
	DH_TRACE_GUARD_DROP = 4, /* the loopback guard dropped it */
};

struct dh_trace_ctl {
	__u32 enabled;  /* the programs emit only while non-zero */
	__u32 pid;      /* the trace that enabled it */
	__u64 lost;     /* events that found the ring full (each turned tracing off) */
};

struct dh_trace_event {
	__u64 ktime_ns;   /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 ifindex;    /* the bridge */
	__u8 kind;        /* enum dh_trace_kind */
	__u8 proto;       /* IPPROTO_TCP, IPPROTO_UDP; 0 if not read */
	__u8 family;      /* DH_AF_INET, DH_AF_INET6; 0 if not read */
	__u8 mode;        /* enum dh_mode of the bridge */
	__u32 saddr[4];   /* the container (IPv4 in the first word) */
	__u32 daddr[4];   /* the gateway */
	__u32 taddr[4];   /* the target, if any */
	__u16 sport;      /* network order, like the addresses */
	__u16 dport;
	__u16 tport;
	__u16 reason;     /* DH_COUNTER_INDEX() of the counter that counted it */
	__u8 smac[6];     /* tc only: the frame's source MAC */
	__u8 pad[2];
};

#endif /* DOCKHOST_H */
