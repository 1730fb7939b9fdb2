// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Errors, warnings and output helpers: every error is one line on stderr. */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>

#include "cli.h"

static bool verbose;

void dh_set_verbose(bool on)
{
	verbose = on;
}

static void vreport(const char *prefix, const char *fmt, va_list ap)
{
	fprintf(stderr, "%s: %s", DH_PROG, prefix);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

/* Both error kinds print the same way; the return value is the exit code. */
#define DH_ERROR(code)                       \
	({                                   \
		va_list ap;                  \
		va_start(ap, fmt);           \
		vreport("", fmt, ap);        \
		va_end(ap);                  \
		code;                        \
	})

int dh_usage_error(const char *fmt, ...)
{
	return DH_ERROR(DH_EXIT_USAGE);
}

int dh_runtime_error(const char *fmt, ...)
{
	return DH_ERROR(DH_EXIT_RUNTIME);
}

void dh_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport("warning: ", fmt, ap);
	va_end(ap);
}

void dh_debug(const char *fmt, ...)
{
	va_list ap;

	if (!verbose)
		return;
	va_start(ap, fmt);
	vreport("debug: ", fmt, ap);
	va_end(ap);
}

void dh_print_json(struct json_object *obj)
{
	puts(json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(obj);
}
