/*
 * log.c - mqk-router's diagnostics: one line on stderr, "mqk-router: ...", and the
 * rate-limited kind for what can repeat at the rate of records (at most one line every
 * 10 s per struct ratelimit, saying how many were left out). Main thread only.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "cli.h"
#include "router.h"

static void vlog(const char *fmt, va_list ap, uint64_t suppressed)
{
	char line[2048];

	vsnprintf(line, sizeof(line), fmt, ap);
	if (suppressed > 0) {
		fprintf(stderr,
			ROUTER_NAME ": %s (and %" PRIu64 " more like it in the last 10 s)\n", line,
			suppressed);
	} else {
		fprintf(stderr, ROUTER_NAME ": %s\n", line);
	}
}

void router__log(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(fmt, ap, 0);
	va_end(ap);
}

void router__logrl(struct ratelimit *rl, const char *fmt, ...)
{
	uint64_t now = cli_mono_us();
	va_list ap;

	if (rl->last_us != 0 && now - rl->last_us < 10000000) {
		rl->suppressed++;
		return;
	}
	va_start(ap, fmt);
	vlog(fmt, ap, rl->suppressed);
	va_end(ap);
	rl->last_us = now;
	rl->suppressed = 0;
}
