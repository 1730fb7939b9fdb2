// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * libFuzzer target: the declarative configuration (user/config.c), a file
 * anyone with write access to /etc/dockhost-bpf.d can feed to the daemon.
 * Besides not crashing: an error is one line naming FILE:LINE, and a
 * configuration accepted is in range and, written back in its canonical
 * form, parses to the same declarations.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* The canonical text of @cfg: one line per declaration, every option spelt out. */
static size_t canonical(const struct dh_config *cfg, char *out, size_t size)
{
	char to[80], cidr[64];
	size_t len = 0;
	int i, j;

#define PUT(...) (len += snprintf(out + len, len < size ? size - len : 0, __VA_ARGS__))
	for (i = 0; i < cfg->n_bridges; i++) {
		const struct dh_config_bridge *b = &cfg->bridges[i];

		PUT("%s %s", b->is_match ? "match" : "bridge", b->name);
		if (b->mode_given)
			PUT(" --mode %s", dh_mode_name(b->mode));
		for (j = 0; j < b->n_gateways; j++)
			PUT(" --gateway %s", dh_ip_str(&b->gateways[j]));
		PUT("\n");
	}
	for (i = 0; i < cfg->n_ports; i++) {
		const struct dh_config_port *p = &cfg->ports[i];

		PUT("port %u/%s", p->spec.port, dh_proto_name(p->spec.proto));
		dh_target_str(&p->target, to, sizeof(to));
		/* Both families: a bare PORT says it; one family: its ADDR:PORT. */
		if (strchr(to, ','))
			PUT(" --to %u", ntohs(p->target.port));
		else
			PUT(" --to %s", to);
		for (j = 0; j < p->n_from; j++)
			PUT(" --from %s", p->from[j]);
		if (p->bridge[0])
			PUT(" --bridge %s", p->bridge);
		PUT("\n");
	}
	(void)cidr;
	return len;
#undef PUT
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct dh_config cfg, again;
	static char text[1 << 20];
	char why[512], why2[512];
	size_t len;
	int err, i;

	memset(&cfg, 0, sizeof(cfg));
	err = dh_config_parse(&cfg, "fuzz.conf", (const char *)data, size, why, sizeof(why));
	if (!err)
		err = dh_config_check(&cfg, why, sizeof(why));
	if (err) {
		if (strncmp(why, "fuzz.conf:", 10) || strchr(why, '\n'))
			abort();
		dh_config_free(&cfg);
		return 0;
	}
	for (i = 0; i < cfg.n_ports; i++) {
		const struct dh_config_port *p = &cfg.ports[i];

		if (!p->spec.port || (p->spec.proto != IPPROTO_TCP && p->spec.proto != IPPROTO_UDP) ||
		    !p->target.port || p->target.flags || p->n_from > DH_CONFIG_MAX_FROM)
			abort();
		if (p->bridge[0] && !dh_config_bridge(&cfg, p->bridge, false))
			abort();
	}
	for (i = 0; i < cfg.n_bridges; i++)
		if (!cfg.bridges[i].is_match && !dh_ifname_valid(cfg.bridges[i].name))
			abort();
	len = canonical(&cfg, text, sizeof(text));
	if (len < sizeof(text)) {
		memset(&again, 0, sizeof(again));
		if (dh_config_parse(&again, "fuzz.conf", text, len, why2, sizeof(why2)) ||
		    dh_config_check(&again, why2, sizeof(why2)))
			abort();
		if (again.n_bridges != cfg.n_bridges || again.n_ports != cfg.n_ports)
			abort();
		for (i = 0; i < cfg.n_bridges; i++) {
			again.bridges[i].line = cfg.bridges[i].line;
			if (memcmp(&again.bridges[i], &cfg.bridges[i], sizeof(cfg.bridges[i])))
				abort();
		}
		for (i = 0; i < cfg.n_ports; i++) {
			again.ports[i].line = cfg.ports[i].line;
			if (memcmp(&again.ports[i], &cfg.ports[i], sizeof(cfg.ports[i])))
				abort();
		}
		dh_config_free(&again);
	}
	dh_config_free(&cfg);
	return 0;
}
