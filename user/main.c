// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* dockhost-bpf: global options and the command table (xdp-tools style). */
#include <bpf/libbpf.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>

#include "cli.h"

/* From debian/changelog's top entry, by the Makefile: the one version. */
#ifndef DH_VERSION
#error "DH_VERSION: build with the Makefile (it reads debian/changelog)"
#endif

struct command {
	const char *name;
	int (*run)(const struct dh_cli *cli, int argc, char **argv);
	const char *usage;  /* one line per form; its --OPTIONs are the command's for
			     * bash completion and tests/cli/test_manpage.sh */
	const char *help;
};

static const struct command commands[] = {
	{ "attach", dh_cmd_attach,
	  "attach BRIDGE [--gateway ADDR]... [--port SPEC]... [--hook auto|tcx|clsact] [--mode socket|nat] [--per-source on|off]",
	  "Attach the programs to BRIDGE. --mode socket (the default for a new bridge)\n"
	  "hands the packets, unchanged, to the loopback socket behind the port and never\n"
	  "sets a sysctl; --mode nat rewrites them to loopback and sets route_localnet to\n"
	  "1 (the old value is saved and restored by detach): for a UDP server that\n"
	  "connect()s to its client, or a UDP port mapped to another port. An attached\n"
	  "bridge keeps its mode unless --mode converts it, with the guard on throughout. Gateways are the bridge's\n"
	  "own addresses, docker0's (Docker's host-gateway), daemon.json's host-gateway-ips\n"
	  "and each --gateway ADDR, IPv4 or IPv6 (never IPv6 link-local). Socket mode\n"
	  "carries IPv6 to [::1]; NAT mode passes IPv6 unredirected.\n"
	  "--port maps SPEC on this bridge, as 'port add SPEC --bridge BRIDGE'. --hook:\n"
	  "tcx (kernel 6.6+), clsact filters, or auto (tcx if the kernel has it).\n"
	  "--per-source off: the bridge's traffic is not counted per source (stats\n"
	  "--by-source, top), and what was counted goes; on (a new bridge's default)\n"
	  "counts again; an attached bridge keeps its setting without the option.\n"
	  "Attaching again changes nothing but adds new gateways and ports, and\n"
	  "re-attaches programs removed behind its back." },
	{ "detach", dh_cmd_detach, "detach BRIDGE [--force]\ndetach --all [--force]",
	  "Remove our programs from BRIDGE, restore its route_localnet and forget its\n"
	  "gateways and ports. The last detach removes the pinned programs and maps.\n"
	  "--force also detaches from the pins of an older dockhost-bpf (which every\n"
	  "other command refuses), reading only their stable part, with\n"
	  "route_localnet set to 0.\n"
	  "--all detaches every bridge the pin dir records, one line each (what\n"
	  "removing the package runs); none attached is no error. It goes on past a\n"
	  "bridge that fails, and then exits 1." },
	{ "port", dh_cmd_port,
	  "port add SPEC [--to PORT|ADDR[:PORT]|[::1][:PORT]] [--from SOURCE]... [--bridge BRIDGE]\n"
	  "port del SPEC [--from SOURCE]... [--bridge BRIDGE]\n"
	  "port list",
	  "Edit the pinned port map at runtime. SPEC is PORT, PORT/tcp or PORT/udp (bare\n"
	  "PORT means tcp). Packets to a gateway on SPEC go to 127.0.0.1 (IPv6: [::1])\n"
	  "on the same port, or per --to: PORT for both families, ADDR[:PORT] with ADDR\n"
	  "in 127.0.0.0/8 for IPv4 alone, ::1 or [::1]:PORT for IPv6 alone (socket mode;\n"
	  "refused with --bridge of a NAT-mode bridge). Without --bridge the entry\n"
	  "applies to every attached bridge; a bridge's own entry wins. del without\n"
	  "--bridge removes SPEC wherever it is mapped (the all-bridges entry and each\n"
	  "bridge's own, as from attach --port) and says where; with --bridge, only that\n"
	  "bridge's entry. Either fails (exit 1) if there is nothing to remove.\n"
	  "--from SOURCE (repeatable) puts SOURCE in SPEC's allow-list (without\n"
	  "--bridge, also every bridge's own entry's), creating the mapping if\n"
	  "needed: a CIDR (ADDR or ADDR/LEN, IPv4 or IPv6), 'any' (everyone,\n"
	  "on purpose), or a Docker container or network (name or id), resolved now to\n"
	  "its addresses (a network: its subnets). A mapping with a list serves only\n"
	  "its sources; others get what an unmapped port gives. One that never had\n"
	  "--from is open to all. del SPEC --from SOURCE takes one source out; the\n"
	  "last one out leaves the port mapped and closed to all (--from any opens it,\n"
	  "a plain del unmaps it and drops the list)." },
	{ "watch", dh_cmd_watch,
	  "watch [--match GLOB]... [--port SPEC]... [--hook auto|tcx|clsact] [--mode socket|nat] [--detach-on-exit]"
	  " [--docker-labels] [--config FILE]",
	  "Stay in the foreground: attach every bridge whose name matches a GLOB (default\n"
	  "'docker0' and 'br-*') now and whenever one appears, forget bridges that\n"
	  "disappear, and keep gateway sets current as addresses change. --port maps\n"
	  "SPEC, and --mode sets the mode, on each bridge when watch first attaches it,\n"
	  "never again on later refreshes: 'port' edits and conversions made meanwhile\n"
	  "stay. SIGTERM or SIGINT ends it; the bridges stay attached unless\n"
	  "--detach-on-exit. One line per event on standard output.\n"
	  "--config FILE: the configuration of 'apply' (no default --match then): watch\n"
	  "converges to it at start and on SIGHUP (a file that does not parse changes\n"
	  "nothing), and only then, so edits made with the CLI meanwhile stay; bridges\n"
	  "its bridge and match lines name are attached as they appear, as it says.\n"
	  "Without --config, SIGHUP changes nothing.\n"
	  "It follows Docker's events too: allow-list sources that are Docker containers\n"
	  "or networks are re-resolved by name after each one (a restarted container\n"
	  "keeps its access; a stopped or removed one has no address, closed to it).\n"
	  "--docker-labels: a running container labelled dockhost.ports=SPEC[,SPEC]...\n"
	  "gets those ports on its networks' watched bridges, from it alone, until it\n"
	  "stops; hand-made mappings are never opened or removed. Without Docker it\n"
	  "says so once and retries." },
	{ "apply", dh_cmd_apply, "apply [FILE] [--dry-run]",
	  "Converge the host to the configuration FILE (default " DH_CONFIG_DEFAULT ", then\n"
	  "each FILE.d/NAME.conf in name order; the format is in dockhost-bpf(8),\n"
	  "CONFIGURATION): attach the bridges it declares or matches, detach those it\n"
	  "declared before and no longer does, add, update and remove its ports and\n"
	  "their sources, and print each change; what already matches is left as it is.\n"
	  "It owns only what it declared: bridges, ports and sources made by hand or by\n"
	  "Docker labels stay; one it declares that exists already is adopted (said so).\n"
	  "All or nothing: a bad line (exit 2, named FILE:LINE), a missing bridge or an\n"
	  "unresolvable Docker source (exit 1) changes nothing; a change that fails\n"
	  "undoes what this apply added. --dry-run prints what it would change and\n"
	  "changes nothing; --json prints the changes as objects." },
	{ "status", dh_cmd_status, "status",
	  "Show attached bridges (programs, route_localnet now and saved, gateways), the\n"
	  "port map with per-port traffic, and the counters." },
	{ "stats", dh_cmd_stats, "stats [--reset] [--by-source] [--format text|json|prometheus [--per-source]]",
	  "Show the datapath counters summed over CPUs; --reset zeroes them and the\n"
	  "per-port counters, and forgets the per-source ones. --format prometheus prints\n"
	  "every counter, per-port traffic and each bridge's mode and route_localnet in\n"
	  "Prometheus' text format (for node_exporter's textfile collector); --per-source\n"
	  "adds the per-source counters. --format json is --json. --by-source shows the\n"
	  "per-source counters instead: packets, bytes, new flows and refused attempts\n"
	  "per bridge, source address and mapped port, with the container's name where\n"
	  "Docker knows the address. The least recently active sources beyond\n"
	  "16384 are forgotten." },
	{ "metrics", dh_cmd_metrics, "metrics [--listen ADDR:PORT] [--per-source]",
	  "Serve what 'stats --format prometheus' prints over HTTP, at /metrics on\n"
	  "ADDR:PORT (default 127.0.0.1:9469; [ADDR6]:PORT for IPv6), read afresh for\n"
	  "each scrape. Answers GET and HEAD /metrics, one request at a time, and 404\n"
	  "to any other path. SIGTERM, SIGINT or SIGHUP ends it (exit 0)." },
	{ "trace", dh_cmd_trace, "trace",
	  "Stream one line per datapath event until SIGINT or SIGTERM (exit 0): a new\n"
	  "redirected flow (flow), a mapped port with nothing listening at its target\n"
	  "(refused), a source the port's allow-list refuses (disallowed), a frame the\n"
	  "loopback guard dropped (guard_drop, with its source MAC). Each line names\n"
	  "the bridge, the source and its container where Docker knows the address,\n"
	  "the gateway and port, the target and the counter that counted the packet;\n"
	  "--json prints one object per line. Every line is flushed as it is written.\n"
	  "The datapath emits only while a trace runs; one trace at a time." },
	{ "top", dh_cmd_top, "top [--interval SECONDS] [--count N]",
	  "Show the per-source counters as 'stats --by-source' does, busiest first (bytes\n"
	  "per second since the previous refresh), every --interval SECONDS (default 1),\n"
	  "until interrupted or for --count N refreshes. On a terminal it redraws one\n"
	  "screen; otherwise it prints one plain table per refresh. --json prints one\n"
	  "object per refresh, one per line." },
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

/* The long-running commands (watch, trace, metrics) end on SIGTERM, SIGINT
 * or SIGHUP (which watch takes as a reload) through a signalfd: blocked from
 * here on, a signal only ends their loop, and their way out (detach,
 * tracing off) always runs. */
int dh_stop_signals_fd(void)
{
	sigset_t stop_signals;

	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGINT);
	sigaddset(&stop_signals, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &stop_signals, NULL))
		return -1;
	return signalfd(-1, &stop_signals, SFD_CLOEXEC);
}

/* Prints each line of a command's usage, the first after @first. */
static void print_usage_lines(FILE *out, const char *first, const char *rest, const char *usage)
{
	const char *line = usage, *end;

	for (; *line; line = *end ? end + 1 : end) {
		end = strchrnul(line, '\n');
		fprintf(out, "%s%.*s\n", line == usage ? first : rest, (int)(end - line), line);
	}
}

static void print_usage(FILE *out)
{
	unsigned int i;

	fprintf(out,
		"Usage: %s [--pin-dir DIR] [--json] [-v] COMMAND ...\n\n"
		"Lets containers on a Linux bridge reach host services bound to 127.0.0.1,\n"
		"through the bridge's gateway address, with tc BPF programs.\n\n"
		"Commands:\n", DH_PROG);
	for (i = 0; i < N_COMMANDS; i++)
		print_usage_lines(out, "  ", "  ", commands[i].usage);
	fprintf(out,
		"\nOptions:\n"
		"  --pin-dir DIR  pinned programs and maps (default %s)\n"
		"  --json         machine-readable output\n"
		"  -v, --verbose  debug messages and libbpf's log\n"
		"  -h, --help     this text; '%s COMMAND --help' for one command\n"
		"  -V, --version  print the version and exit\n"
		"Options may also follow the command name ('%s trace --json'), before any\n"
		"'--'; a command's value that looks like one is written --OPTION=VALUE.\n",
		DH_PIN_DIR_DEFAULT, DH_PROG, DH_PROG);
}

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	return vfprintf(stderr, fmt, args);
}

static const struct command *find_command(const char *name)
{
	unsigned int i;

	for (i = 0; i < N_COMMANDS; i++)
		if (!strcmp(commands[i].name, name))
			return &commands[i];
	return NULL;
}

static void print_command_help(const struct command *cmd)
{
	print_usage_lines(stdout, "Usage: " DH_PROG " [OPTIONS] ", "       " DH_PROG " [OPTIONS] ", cmd->usage);
	printf("\n%s\n", cmd->help);
}

/*
 * Global options after the command name ('trace --json', 'stats --pin-dir
 * DIR'): taken out of the command's arguments, which never use these
 * names, so every command accepts them without knowing them. "--" ends
 * the search: what follows it is the command's alone. Returns 0, or an
 * exit code for a --pin-dir without its value.
 */
static int take_global_options(struct dh_cli *cli, int *argc, char **argv)
{
	int from, to = 1;

	for (from = 1; from < *argc; from++) {
		const char *arg = argv[from];

		if (!strcmp(arg, "--")) {
			while (from < *argc)
				argv[to++] = argv[from++];
			break;
		}
		if (!strcmp(arg, "--json")) {
			cli->json = true;
		} else if (!strcmp(arg, "--verbose") || !strcmp(arg, "-v")) {
			cli->verbose = true;
		} else if (!strncmp(arg, "--pin-dir=", 10)) {
			cli->pin_dir = arg + 10;
		} else if (!strcmp(arg, "--pin-dir")) {
			if (from + 1 >= *argc)
				return dh_usage_error("option '%s' needs a value", arg);
			cli->pin_dir = argv[++from];
		} else {
			argv[to++] = argv[from];
		}
	}
	argv[to] = NULL;
	*argc = to;
	return 0;
}

/* True if the command's own arguments ask for help. */
static bool wants_help(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return true;
	return false;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "pin-dir", required_argument, NULL, 'p' },
		{ "json", no_argument, NULL, 'j' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{}
	};
	struct dh_cli cli = { .pin_dir = DH_PIN_DIR_DEFAULT };
	const struct command *cmd;
	int opt;

	/* '+': stop at the command; its options are its own. */
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+:vhV", options, NULL)) != -1) {
		switch (opt) {
		case 'p':
			cli.pin_dir = optarg;
			break;
		case 'j':
			cli.json = true;
			break;
		case 'v':
			cli.verbose = true;
			break;
		case 'h':
			print_usage(stdout);
			return DH_EXIT_OK;
		case 'V':
			printf("%s %s\n", DH_PROG, DH_VERSION);
			return DH_EXIT_OK;
		case ':':
			return dh_usage_error("option '%s' needs a value", argv[optind - 1]);
		default:
			return dh_usage_error("unknown option '%s' (see --help)", argv[optind - 1]);
		}
	}
	if (optind >= argc) {
		print_usage(stderr);
		return DH_EXIT_USAGE;
	}
	if (!strcmp(argv[optind], "help")) {
		if (optind + 1 < argc && (cmd = find_command(argv[optind + 1]))) {
			print_command_help(cmd);
			return DH_EXIT_OK;
		}
		print_usage(stdout);
		return DH_EXIT_OK;
	}
	cmd = find_command(argv[optind]);
	if (!cmd)
		return dh_usage_error("unknown command '%s' (see --help)", argv[optind]);
	argc -= optind;
	argv += optind;
	opt = take_global_options(&cli, &argc, argv);
	if (opt)
		return opt;
	if (cli.pin_dir[0] != '/' || strlen(cli.pin_dir) >= 4000)
		return dh_usage_error("--pin-dir '%s': must be an absolute path", cli.pin_dir);
	dh_set_verbose(cli.verbose);
	/* libbpf reports expected failures too (querying a hook that does not
	 * exist yet): its log is for -v only; our own errors say what failed. */
	libbpf_set_print(cli.verbose ? libbpf_print : NULL);

	if (wants_help(argc, argv)) {
		print_command_help(cmd);
		return DH_EXIT_OK;
	}
	optind = 0;  /* commands run getopt_long again on their own argv */
	return cmd->run(&cli, argc, argv);
}
