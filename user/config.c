// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The declarative configuration (apply, watch --config): /etc/dockhost-bpf.conf
 * and then each /etc/dockhost-bpf.d/NAME.conf in name order, one declaration a line:
 *
 *   bridge NAME [--mode socket|nat] [--gateway ADDR]...
 *   match GLOB [--mode socket|nat]
 *   port SPEC [--to TARGET] [--from SOURCE]... [--bridge NAME]
 *
 * the words and values of the CLI's attach and port add, parsed by the same
 * functions (spec.c). '#' begins a comment. Parsing is all or nothing and
 * has no side effect: the first bad line fails the whole configuration,
 * named as FILE:LINE, and nothing is resolved or changed here (Docker
 * sources are resolved by apply, before it changes anything). No I/O but
 * in dh_config_load, so that the fuzz target runs the parser alone.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

#define MAX_WORDS (4 + 2 * (DH_CONFIG_MAX_FROM + DH_CONFIG_MAX_GATEWAYS + 4))

void dh_config_free(struct dh_config *cfg)
{
	free(cfg->bridges);
	free(cfg->ports);
	memset(cfg, 0, sizeof(*cfg));
}

static int say(char *why, size_t why_len, const struct dh_config *cfg, int line, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/* "FILE:LINE: what": the one line every configuration error is. */
static int say(char *why, size_t why_len, const struct dh_config *cfg, int line, const char *fmt, ...)
{
	va_list ap;
	int len;

	len = snprintf(why, why_len, "%s:%d: ", cfg->files[cfg->n_files - 1], line);
	if (len < 0 || (size_t)len >= why_len)
		return -EINVAL;
	va_start(ap, fmt);
	vsnprintf(why + len, why_len - len, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

const char *dh_config_where(const struct dh_config *cfg, int file, int line, char *buf, size_t size)
{
	snprintf(buf, size, "%s:%d", file >= 0 && file < cfg->n_files ? cfg->files[file] : "?", line);
	return buf;
}

/* Meant as an address: has '/' or ':', or only digits and dots (allow.c's rule). */
static bool looks_like_cidr(const char *text)
{
	return strchr(text, '/') || strchr(text, ':') || strspn(text, "0123456789.") == strlen(text);
}

/* --from's value as the record's name: 'any', a CIDR as printed, or a
 * Docker name as typed (resolved by apply). */
static int parse_from(const struct dh_config *cfg, int line, const char *text, char name[DH_ALLOW_NAME_LEN],
		      char *why, size_t why_len)
{
	struct dh_allow_prefix prefix;
	char shown[64];
	int err;

	if (!strcmp(text, "any")) {
		snprintf(name, DH_ALLOW_NAME_LEN, "any");
		return 0;
	}
	err = dh_parse_cidr(text, &prefix);
	if (err == -ERANGE)
		return say(why, why_len, cfg, line, "--from '%s': host bits set (did you mean %s?)", text,
			   dh_prefix_str(&prefix, shown, sizeof(shown)));
	if (!err) {
		dh_prefix_str(&prefix, name, DH_ALLOW_NAME_LEN);
		return 0;
	}
	if (looks_like_cidr(text))
		return say(why, why_len, cfg, line, "--from '%s': not a CIDR (ADDR or ADDR/LEN, IPv4 or IPv6)", text);
	if (!dh_docker_name_valid(text))
		return say(why, why_len, cfg, line,
			   "--from '%s': not a CIDR, 'any', nor a Docker container or network name", text);
	snprintf(name, DH_ALLOW_NAME_LEN, "%s", text);
	return 0;
}

/* The value of words[*i] (an option), moving past it. */
static const char *option_value(const struct dh_config *cfg, int line, char **words, int n, int *i,
				const char *name, char *why, size_t why_len)
{
	size_t len = strlen(name);

	if (!strncmp(words[*i], name, len) && words[*i][len] == '=')
		return words[*i] + len + 1;
	if (*i + 1 >= n) {
		say(why, why_len, cfg, line, "option '%s' needs a value", name);
		return NULL;
	}
	return words[++*i];
}

static bool is_option(const char *word, const char *name)
{
	size_t len = strlen(name);

	return !strncmp(word, name, len) && (word[len] == '\0' || word[len] == '=');
}

static void *grow(void *array, int n, int *max, size_t size)
{
	void *grown;

	if (n < *max)
		return array;
	grown = realloc(array, (size_t)(*max ? *max * 2 : 16) * size);
	if (grown)
		*max = *max ? *max * 2 : 16;
	return grown;
}

static int parse_bridge(struct dh_config *cfg, int line, char **words, int n, bool match, char *why,
			size_t why_len)
{
	struct dh_config_bridge *b, *grown;
	const char *value, *unusable;
	int i;

	if (n < 2)
		return say(why, why_len, cfg, line, "%s: expected a %s", words[0], match ? "GLOB" : "bridge NAME");
	if (match ? strlen(words[1]) >= sizeof(b->name) : !dh_ifname_valid(words[1]))
		return say(why, why_len, cfg, line, "%s '%s': not a %s", words[0], words[1],
			   match ? "glob of at most 63 bytes" : "device name (1-15 bytes, no '/', ':' or space)");
	for (i = 0; i < cfg->n_bridges; i++)
		if (!strcmp(cfg->bridges[i].name, words[1]) && cfg->bridges[i].is_match == match)
			return say(why, why_len, cfg, line, "%s '%s': declared already, at %s:%d", words[0], words[1],
				   cfg->files[cfg->bridges[i].file], cfg->bridges[i].line);
	if (cfg->n_bridges >= DH_CONFIG_MAX_BRIDGES)
		return say(why, why_len, cfg, line, "more than %d bridge and match lines", DH_CONFIG_MAX_BRIDGES);
	grown = grow(cfg->bridges, cfg->n_bridges, &cfg->max_bridges, sizeof(*b));
	if (!grown)
		return say(why, why_len, cfg, line, "out of memory");
	cfg->bridges = grown;
	b = &cfg->bridges[cfg->n_bridges];
	memset(b, 0, sizeof(*b));
	snprintf(b->name, sizeof(b->name), "%s", words[1]);
	b->is_match = match;
	b->file = cfg->n_files - 1;
	b->line = line;
	for (i = 2; i < n; i++) {
		if (is_option(words[i], "--mode")) {
			if (!(value = option_value(cfg, line, words, n, &i, "--mode", why, why_len)))
				return -EINVAL;
			if (b->mode_given)
				return say(why, why_len, cfg, line, "--mode given twice");
			if (!dh_parse_mode(value, &b->mode))
				return say(why, why_len, cfg, line, "--mode '%s': not socket or nat", value);
			b->mode_given = true;
		} else if (!match && is_option(words[i], "--gateway")) {
			if (!(value = option_value(cfg, line, words, n, &i, "--gateway", why, why_len)))
				return -EINVAL;
			if (b->n_gateways == DH_CONFIG_MAX_GATEWAYS)
				return say(why, why_len, cfg, line, "at most %d --gateway", DH_CONFIG_MAX_GATEWAYS);
			if (!dh_parse_ip(value, &b->gateways[b->n_gateways]))
				return say(why, why_len, cfg, line, "--gateway '%s': not an IPv4 or IPv6 address", value);
			if ((unusable = dh_gateway_unusable(&b->gateways[b->n_gateways])))
				return say(why, why_len, cfg, line, "--gateway '%s': %s", value, unusable);
			b->n_gateways++;
		} else {
			return say(why, why_len, cfg, line, "%s: unexpected '%s' (%s)", words[0], words[i],
				   match ? "--mode" : "--mode or --gateway");
		}
	}
	cfg->n_bridges++;
	return 0;
}

static int parse_port(struct dh_config *cfg, int line, char **words, int n, char *why, size_t why_len)
{
	struct dh_config_port *p, *grown;
	const char *value;
	bool to_given = false;
	int i, j;

	if (n < 2)
		return say(why, why_len, cfg, line, "port: expected a SPEC (PORT, PORT/tcp or PORT/udp)");
	if (cfg->n_ports >= DH_CONFIG_MAX_PORTS)
		return say(why, why_len, cfg, line, "more than %d port lines", DH_CONFIG_MAX_PORTS);
	grown = grow(cfg->ports, cfg->n_ports, &cfg->max_ports, sizeof(*p));
	if (!grown)
		return say(why, why_len, cfg, line, "out of memory");
	cfg->ports = grown;
	p = &cfg->ports[cfg->n_ports];
	memset(p, 0, sizeof(*p));
	p->file = cfg->n_files - 1;
	p->line = line;
	if (!dh_parse_port_spec(words[1], &p->spec))
		return say(why, why_len, cfg, line, "port '%s': not PORT, PORT/tcp or PORT/udp (1-65535)", words[1]);
	for (i = 2; i < n; i++) {
		if (is_option(words[i], "--to")) {
			if (!(value = option_value(cfg, line, words, n, &i, "--to", why, why_len)))
				return -EINVAL;
			if (to_given)
				return say(why, why_len, cfg, line, "--to given twice");
			if (!dh_parse_target(value, &p->target))
				return say(why, why_len, cfg, line,
					   "--to '%s': not PORT, ADDR[:PORT] or [::1][:PORT] with ADDR in 127.0.0.0/8 or ::1",
					   value);
			to_given = true;
		} else if (is_option(words[i], "--from")) {
			if (!(value = option_value(cfg, line, words, n, &i, "--from", why, why_len)))
				return -EINVAL;
			if (p->n_from == DH_CONFIG_MAX_FROM)
				return say(why, why_len, cfg, line, "at most %d --from", DH_CONFIG_MAX_FROM);
			if (parse_from(cfg, line, value, p->from[p->n_from], why, why_len))
				return -EINVAL;
			for (j = 0; j < p->n_from; j++)
				if (!strcmp(p->from[j], p->from[p->n_from]))
					return say(why, why_len, cfg, line, "--from '%s' given twice", value);
			p->n_from++;
		} else if (is_option(words[i], "--bridge")) {
			if (!(value = option_value(cfg, line, words, n, &i, "--bridge", why, why_len)))
				return -EINVAL;
			if (p->bridge[0])
				return say(why, why_len, cfg, line, "--bridge given twice");
			if (!dh_ifname_valid(value))
				return say(why, why_len, cfg, line, "--bridge '%s': not a device name", value);
			snprintf(p->bridge, sizeof(p->bridge), "%s", value);
		} else {
			return say(why, why_len, cfg, line, "port: unexpected '%s' (--to, --from or --bridge)", words[i]);
		}
	}
	if (!to_given)
		dh_parse_target("1", &p->target);  /* both families, the port below */
	if (!to_given || !p->target.port)
		p->target.port = htons(p->spec.port);
	for (j = 0; j < cfg->n_ports; j++) {
		const struct dh_config_port *q = &cfg->ports[j];

		if (q->spec.port == p->spec.port && q->spec.proto == p->spec.proto && !strcmp(q->bridge, p->bridge))
			return say(why, why_len, cfg, line, "port %u/%s on %s: declared already, at %s:%d", p->spec.port,
				   dh_proto_name(p->spec.proto), p->bridge[0] ? p->bridge : "all bridges",
				   cfg->files[q->file], q->line);
	}
	cfg->n_ports++;
	return 0;
}

/* One line, its comment cut off; @line is its number. */
static int parse_line(struct dh_config *cfg, int line, char *text, char *why, size_t why_len)
{
	char *words[MAX_WORDS], *save = NULL, *word;
	int n = 0;

	for (word = strtok_r(text, " \t\r\v\f", &save); word; word = strtok_r(NULL, " \t\r\v\f", &save)) {
		if (word[0] == '#')
			break;
		if (n == MAX_WORDS)
			return say(why, why_len, cfg, line, "too many words");
		words[n++] = word;
	}
	if (!n)
		return 0;
	if (!strcmp(words[0], "bridge"))
		return parse_bridge(cfg, line, words, n, false, why, why_len);
	if (!strcmp(words[0], "match"))
		return parse_bridge(cfg, line, words, n, true, why, why_len);
	if (!strcmp(words[0], "port"))
		return parse_port(cfg, line, words, n, why, why_len);
	return say(why, why_len, cfg, line, "unknown declaration '%s' (bridge, match or port)", words[0]);
}

int dh_config_parse(struct dh_config *cfg, const char *file, const char *text, size_t len, char *why,
		    size_t why_len)
{
	size_t start = 0, end;
	char *copy;
	int line = 0, err = 0;

	if (cfg->n_files == DH_CONFIG_MAX_FILES) {
		snprintf(why, why_len, "%s: more than %d configuration files", file, DH_CONFIG_MAX_FILES);
		return -EINVAL;
	}
	snprintf(cfg->files[cfg->n_files++], sizeof(cfg->files[0]), "%s", file);
	copy = malloc(len + 1);
	if (!copy) {
		snprintf(why, why_len, "%s: out of memory", file);
		return -ENOMEM;
	}
	while (!err && start < len) {
		for (end = start; end < len && text[end] != '\n'; end++)
			;
		line++;
		memcpy(copy, text + start, end - start);
		copy[end - start] = '\0';
		if (strlen(copy) != end - start)
			err = say(why, why_len, cfg, line, "a NUL byte");
		else
			err = parse_line(cfg, line, copy, why, why_len);
		start = end + 1;
	}
	free(copy);
	return err;
}

/*
 * What only the whole configuration can tell: a port line's --bridge names
 * a bridge that a bridge line declares or a match line fits, which may come
 * later or in another file, and what that line's mode cannot serve.
 */
int dh_config_check(const struct dh_config *cfg, char *why, size_t why_len)
{
	int i;

	for (i = 0; i < cfg->n_ports; i++) {
		const struct dh_config_port *p = &cfg->ports[i];
		const struct dh_config_bridge *b;
		char at[300];

		if (!p->bridge[0])
			continue;
		b = dh_config_bridge(cfg, p->bridge, false);
		dh_config_where(cfg, p->file, p->line, at, sizeof(at));
		if (!b) {
			snprintf(why, why_len, "%s: --bridge '%s': no bridge or match line names it", at, p->bridge);
			return -EINVAL;
		}
		if (b->mode_given && b->mode == DH_MODE_NAT && !p->target.addr) {
			snprintf(why, why_len, "%s: port %u/%s: %s is in NAT mode, which cannot redirect IPv6 (its --to maps IPv6 only)",
				 at, p->spec.port, dh_proto_name(p->spec.proto), p->bridge);
			return -EINVAL;
		}
		if (b->mode_given && b->mode == DH_MODE_SOCKET && p->spec.proto == IPPROTO_UDP &&
		    p->target.port != htons(p->spec.port)) {
			snprintf(why, why_len, "%s: port %u/udp: socket mode cannot answer a UDP port from another port (%s is in socket mode)",
				 at, p->spec.port, p->bridge);
			return -EINVAL;
		}
	}
	return 0;
}

/* The line that declares @name: a bridge line by name first, else the
 * first match line whose glob it fits (unless @exact). */
const struct dh_config_bridge *dh_config_bridge(const struct dh_config *cfg, const char *name, bool exact)
{
	int i;

	for (i = 0; i < cfg->n_bridges; i++)
		if (!cfg->bridges[i].is_match && !strcmp(cfg->bridges[i].name, name))
			return &cfg->bridges[i];
	for (i = 0; !exact && i < cfg->n_bridges; i++)
		if (cfg->bridges[i].is_match && fnmatch(cfg->bridges[i].name, name, 0) == 0)
			return &cfg->bridges[i];
	return NULL;
}

static int read_file(const char *path, char **text, size_t *len)
{
	size_t cap = 4096;
	ssize_t got;
	int fd = open(path, O_RDONLY | O_CLOEXEC), err = 0;

	if (fd < 0)
		return -errno;
	*len = 0;
	*text = malloc(cap);
	while (*text) {
		if (*len == cap) {
			char *grown = cap >= (1 << 24) ? NULL : realloc(*text, cap *= 2);

			if (!grown) {
				err = -EFBIG;
				break;
			}
			*text = grown;
		}
		got = read(fd, *text + *len, cap - *len);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			err = -errno;
			break;
		}
		if (got == 0)
			break;
		*len += got;
	}
	if (!*text)
		err = -ENOMEM;
	close(fd);
	if (err) {
		free(*text);
		*text = NULL;
	}
	return err;
}

static int parse_file(struct dh_config *cfg, const char *path, char *why, size_t why_len)
{
	char *text = NULL;
	size_t len = 0;
	int err = read_file(path, &text, &len);

	if (err) {
		snprintf(why, why_len, "%s: cannot read: %s", path, strerror(-err));
		return err;
	}
	err = dh_config_parse(cfg, path, text, len, why, why_len);
	free(text);
	return err;
}

static int conf_entry(const struct dirent *entry)
{
	size_t len = strlen(entry->d_name);

	return entry->d_name[0] != '.' && len > 5 && !strcmp(entry->d_name + len - 5, ".conf");
}

int dh_config_load(const char *path, struct dh_config *cfg, char *why, size_t why_len)
{
	struct dirent **entries = NULL;
	char dir[256], file[512];
	size_t len = strlen(path);
	int n = 0, i, err;

	memset(cfg, 0, sizeof(*cfg));
	err = parse_file(cfg, path, why, why_len);
	/* FILE.conf's drop-ins: FILE.d/NAME.conf, in name order. */
	if (!err && len > 5 && len < sizeof(dir) && !strcmp(path + len - 5, ".conf")) {
		snprintf(dir, sizeof(dir), "%.*s.d", (int)(len - 5), path);
		n = scandir(dir, &entries, conf_entry, alphasort);
		if (n < 0 && errno != ENOENT && errno != ENOTDIR) {
			snprintf(why, why_len, "%s: cannot read: %s", dir, strerror(errno));
			err = -errno;
		}
		for (i = 0; i < n; i++) {
			struct stat st;

			snprintf(file, sizeof(file), "%s/%s", dir, entries[i]->d_name);
			if (!err && stat(file, &st) == 0 && S_ISREG(st.st_mode))
				err = parse_file(cfg, file, why, why_len);
			free(entries[i]);
		}
		free(entries);
	}
	if (!err)
		err = dh_config_check(cfg, why, why_len);
	if (err)
		dh_config_free(cfg);
	return err;
}
