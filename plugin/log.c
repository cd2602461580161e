/*
 * log.c - the plugin's log lines, through mosquitto's log.
 *
 * Every line starts with "mosquitto_kafka: " so an admin can grep for it. Lines that
 * could repeat once per message (a delivery failure, a full buffer) are rate-limited:
 * the first is logged at once, the next ones at most every 10 s with how many were not
 * logged in between, so a Kafka outage cannot flood the log.
 *
 * mosquitto_log_printf may only be called on mosquitto's thread. A thread of the
 * plugin's own (the Kafka thread, see producer.c) uses log__deferred instead: the
 * line waits in a small mailbox until log__drain, on the next TICK, logs it. When the
 * mailbox is full, lines are counted and the count is logged instead.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>

#include "mqk.h"

#define RATELIMIT_SECONDS 10
#define MAILBOX_LINES 64
/* Lines name topics and client ids (up to 64 KiB): callers cut those at 200 bytes (%.200s). */
#define LINE_MAX_LEN 1024

/* Lines from other threads, for mosquitto's thread. Guarded by lock. */
static struct {
	pthread_mutex_t lock;
	int level[MAILBOX_LINES];
	char line[MAILBOX_LINES][LINE_MAX_LEN];
	int count;
	uint64_t dropped;
	atomic_bool pending; /* lets log__drain see "nothing to do" without the lock */
} mailbox = {.lock = PTHREAD_MUTEX_INITIALIZER};

/*
 * The side thread (side.c), which runs init's and cleanup's jobs: its log__printf lines go
 * through the mailbox, drained by mosquitto's thread when the job is done. Its id, not a
 * _Thread_local flag: a thread-local variable in a dlopen'ed plugin gives mosquitto's thread
 * a dynamic TLS block, and LeakSanitizer (gcc 12, glibc 2.36) crashed reading it at the exit
 * of a mosquitto whose plugin init had failed (tests/sanitize, test_bad_config).
 */
static pthread_t defer_thread;
static atomic_bool defer_set;

static void defer(int level, const char *fmt, va_list ap, uint64_t suppressed);

void log__defer_this_thread(void)
{
	defer_thread = pthread_self();
	atomic_store(&defer_set, true); /* publishes defer_thread */
}

static bool defer_here(void)
{
	return atomic_load(&defer_set) && pthread_equal(defer_thread, pthread_self());
}

void log__librdkafka(const char *client, int level, const char *fac, const char *buf)
{
	/* A broker connection's failure (FAIL) also reaches the client's error callback,
	   which says what it means, rate-limited: its FAIL line is debug. */
	int mosq_level = !strcmp(fac, "FAIL")   ? MOSQ_LOG_DEBUG
			 : level <= LOG_ERR     ? MOSQ_LOG_ERR
			 : level == LOG_WARNING ? MOSQ_LOG_WARNING
			 : level <= LOG_INFO    ? MOSQ_LOG_NOTICE
						: MOSQ_LOG_DEBUG;

	log__deferred(mosq_level, "%slibrdkafka %s: %s", client, fac, buf);
}

bool log__ratelimit_pass(struct mqk_ratelimit *rl, uint64_t *suppressed)
{
	time_t now = time(NULL);

	if (rl->last != 0 && now - rl->last < RATELIMIT_SECONDS) {
		rl->suppressed++;
		return false;
	}
	*suppressed = rl->suppressed;
	rl->last = now;
	rl->suppressed = 0;
	return true;
}

static void format_line(char *line, size_t size, const char *fmt, va_list ap, uint64_t suppressed)
{
	int n = vsnprintf(line, size, fmt, ap);
	if (suppressed > 0 && n >= 0 && (size_t)n < size) {
		snprintf(line + n, size - (size_t)n, " (%llu more like it not logged)",
			 (unsigned long long)suppressed);
	}
}

void log__printf(int level, const char *fmt, ...)
{
	char line[LINE_MAX_LEN];
	va_list ap;

	va_start(ap, fmt);
	if (defer_here()) {
		defer(level, fmt, ap, 0);
		va_end(ap);
		return;
	}
	format_line(line, sizeof(line), fmt, ap, 0);
	va_end(ap);
	mosquitto_log_printf(level, MQK_LOG_PREFIX "%s", line);
}

void log__ratelimited(struct mqk_ratelimit *rl, int level, const char *fmt, ...)
{
	char line[LINE_MAX_LEN];
	uint64_t suppressed;
	va_list ap;

	if (!log__ratelimit_pass(rl, &suppressed)) {
		return;
	}
	va_start(ap, fmt);
	if (defer_here()) {
		defer(level, fmt, ap, suppressed);
		va_end(ap);
		return;
	}
	format_line(line, sizeof(line), fmt, ap, suppressed);
	va_end(ap);
	mosquitto_log_printf(level, MQK_LOG_PREFIX "%s", line);
}

/* Runs on any thread. */
static void defer(int level, const char *fmt, va_list ap, uint64_t suppressed)
{
	pthread_mutex_lock(&mailbox.lock);
	if (mailbox.count < MAILBOX_LINES) {
		mailbox.level[mailbox.count] = level;
		format_line(mailbox.line[mailbox.count], LINE_MAX_LEN, fmt, ap, suppressed);
		mailbox.count++;
	} else {
		mailbox.dropped++;
	}
	atomic_store_explicit(&mailbox.pending, true, memory_order_release);
	pthread_mutex_unlock(&mailbox.lock);
}

void log__deferred(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	defer(level, fmt, ap, 0);
	va_end(ap);
}

void log__deferred_ratelimited(struct mqk_ratelimit *rl, int level, const char *fmt, ...)
{
	uint64_t suppressed;
	va_list ap;

	if (!log__ratelimit_pass(rl, &suppressed)) {
		return;
	}
	va_start(ap, fmt);
	defer(level, fmt, ap, suppressed);
	va_end(ap);
}

void log__drain(void)
{
	if (!atomic_load_explicit(&mailbox.pending, memory_order_acquire)) {
		return;
	}
	pthread_mutex_lock(&mailbox.lock);
	for (int i = 0; i < mailbox.count; i++) {
		mosquitto_log_printf(mailbox.level[i], MQK_LOG_PREFIX "%s", mailbox.line[i]);
	}
	if (mailbox.dropped > 0) {
		mosquitto_log_printf(MOSQ_LOG_WARNING,
				     MQK_LOG_PREFIX "%llu log lines from librdkafka were dropped "
						    "(more than %d between two ticks)",
				     (unsigned long long)mailbox.dropped, MAILBOX_LINES);
	}
	mailbox.count = 0;
	mailbox.dropped = 0;
	atomic_store_explicit(&mailbox.pending, false, memory_order_relaxed);
	pthread_mutex_unlock(&mailbox.lock);
}
