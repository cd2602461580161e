/*
 * log.c - the plugin's log lines, through mosquitto's log.
 *
 * Every line starts with "mosquitto_kafka: " so an admin can grep for it. Lines that
 * could repeat once per message (a delivery failure, a full queue) go through
 * log__ratelimited: the first is logged at once, the next ones at most every 10 s
 * with how many were not logged in between, so a Kafka outage cannot flood the log.
 */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>

#include "mqk.h"

#define RATELIMIT_SECONDS 10

static void vlog(int level, const char *fmt, va_list ap, uint64_t suppressed)
{
	char line[1024];

	vsnprintf(line, sizeof(line), fmt, ap);
	if (suppressed > 0) {
		mosquitto_log_printf(level, MQK_LOG_PREFIX "%s (%llu more like it not logged)", line,
				     (unsigned long long)suppressed);
	} else {
		mosquitto_log_printf(level, MQK_LOG_PREFIX "%s", line);
	}
}

void log__printf(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(level, fmt, ap, 0);
	va_end(ap);
}

void log__ratelimited(struct mqk_ratelimit *rl, int level, const char *fmt, ...)
{
	va_list ap;
	time_t now = time(NULL);

	if (rl->last != 0 && now - rl->last < RATELIMIT_SECONDS) {
		rl->suppressed++;
		return;
	}
	va_start(ap, fmt);
	vlog(level, fmt, ap, rl->suppressed);
	va_end(ap);
	rl->last = now;
	rl->suppressed = 0;
}
