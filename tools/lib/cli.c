/*
 * cli.c - the command line of the tools (cli.h).
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static const char *prog = "mqk";

void cli_init(const char *name)
{
	prog = name;
}

const char *cli_prog(void)
{
	return prog;
}

static void vfail(const char *fmt, va_list ap)
{
	fputs("Error: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

int cli_fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(fmt, ap);
	va_end(ap);
	return CLI_EXIT_USAGE;
}

void cli_usage_exit(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(fmt, ap);
	va_end(ap);
	exit(CLI_EXIT_USAGE);
}

void cli_die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(fmt, ap);
	va_end(ap);
	exit(1);
}

int cli_getopt_fail(int c, char **argv)
{
	/* getopt_long has moved optind past what it complains about. */
	const char *arg = argv[optind - 1];
	char text[64];

	if (strncmp(arg, "--", 2) != 0 && optopt > 0 && optopt < 128) {
		snprintf(text, sizeof(text), "-%c", optopt);
	} else {
		snprintf(text, sizeof(text), "%.*s", (int)strcspn(arg, "="), arg);
	}
	if (c == ':') {
		return cli_fail("option '%s' needs a value (see --help)", text);
	}
	return cli_fail("unknown option '%s' (see --help)", text);
}

bool cli_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (*s < '0' || *s > '9') {
		return false;
	}
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max) {
		return false;
	}
	*out = v;
	return true;
}

bool cli_parse_seconds(const char *s, double min, double max, double *out)
{
	char *end;
	double v;

	const char *dot = strchr(s, '.');

	/* Digits and at most one '.', with a digit somewhere. */
	if (s[strspn(s, "0123456789.")] != '\0' || dot != strrchr(s, '.')) {
		return false;
	}
	if (strspn(s, "0123456789") == 0 && (dot == NULL || dot[1] < '0' || dot[1] > '9')) {
		return false;
	}
	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < min || v > max) {
		return false;
	}
	*out = v;
	return true;
}

const char *cli_parse_hostport(const char *s, size_t len, int default_port, char *host,
			       size_t host_size, int *port)
{
	const char *name = s, *colon = NULL;
	size_t name_len;

	if (len > 0 && s[0] == '[') {
		const char *close = memchr(s, ']', len);
		if (close == NULL || close == s + 1 ||
		    (close + 1 < s + len && close[1] != ':')) {
			return "not [ipv6]:port";
		}
		name = s + 1;
		name_len = (size_t)(close - name);
		colon = close + 1 < s + len ? close + 1 : NULL;
	} else {
		colon = memchr(s, ':', len);
		if (colon != NULL && memchr(colon + 1, ':', (size_t)(s + len - colon - 1))) {
			return "write IPv6 addresses as [addr]:port";
		}
		name_len = colon ? (size_t)(colon - s) : len;
	}
	if (name_len == 0) {
		return "an empty host";
	}
	if (name_len >= host_size) {
		return "host too long";
	}
	if (colon == NULL) {
		if (default_port == 0) {
			return "no port";
		}
		*port = default_port;
	} else {
		char digits[8];
		size_t n = (size_t)(s + len - colon - 1);
		uint64_t v;
		if (n == 0 || n >= sizeof(digits)) {
			return "not a port (1..65535)";
		}
		memcpy(digits, colon + 1, n);
		digits[n] = '\0';
		if (!cli_parse_uint(digits, 1, 65535, &v)) {
			return "not a port (1..65535)";
		}
		*port = (int)v;
	}
	memcpy(host, name, name_len);
	host[name_len] = '\0';
	return NULL;
}

void cli_on_stop(void (*handler)(int))
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

uint64_t cli_mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}
