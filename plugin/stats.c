/*
 * stats.c - the plugin's counters, where an admin can see them.
 *
 * The counters are listed once, in mqk.h (MQK_ROUTE_COUNTERS and the other families):
 * the struct fields, the $SYS topics, the shutdown summary and the Prometheus metrics
 * (metrics.c) all come from those lists. Every
 * stats_interval seconds the tick publishes them, retained, under
 * $SYS/broker/kafka/<counter> (totals) and $SYS/broker/kafka/routes/<name>/<counter>,
 * like mosquitto's own $SYS tree; the topic strings are built at start-up and after a
 * reload that changed the routes. A route's counters are those of every definition of
 * its name (reload.c), so they keep counting when a reload changes it. At shutdown they
 * are logged.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>

#include "mosquitto_kafka.h"
#include "mqk.h"

#define NAME(name, help) #name,
static const char *const counter_names[] = {MQK_ROUTE_COUNTERS(NAME)};
static const char *const command_names[] = {MQK_COMMAND_COUNTERS(NAME)};
static const char *const journal_names[] = {MQK_JOURNAL_COUNTERS(NAME)};
static const char *const message_names[] = {MQK_MESSAGE_COUNTERS(NAME)};
static const char *const inbound_names[] = {MQK_INBOUND_COUNTERS(NAME)};
#undef NAME
#define N_INBOUND_COUNTERS (sizeof(inbound_names) / sizeof(inbound_names[0]))
#define N_COUNTERS (sizeof(counter_names) / sizeof(counter_names[0]))
#define N_COMMAND_COUNTERS (sizeof(command_names) / sizeof(command_names[0]))
#define N_JOURNAL_COUNTERS (sizeof(journal_names) / sizeof(journal_names[0]))
#define N_MESSAGE_COUNTERS (sizeof(message_names) / sizeof(message_names[0]))
/* Per scope (totals, then each route): the counters, then in_flight. */
#define PER_SCOPE (N_COUNTERS + 1)
/* Totals only: the message counters, buffered_bytes, the journal's. */
#define TOTALS_ONLY (N_MESSAGE_COUNTERS + 1 + N_JOURNAL_COUNTERS)

#define FIELD(name, help) &c->name,
uint64_t stats__command_counter(const struct mqk_cmd_counters *c, size_t i)
{
	const atomic_uint_least64_t *fields[] = {MQK_COMMAND_COUNTERS(FIELD)};
	return counter__get(fields[i]);
}

uint64_t stats__inbound_counter(const struct mqk_inbound_counters *c, size_t i)
{
	const atomic_uint_least64_t *fields[] = {MQK_INBOUND_COUNTERS(FIELD)};
	return counter__get(fields[i]);
}

uint64_t stats__route_counter(const struct mqk_counters *c, size_t i)
{
	const atomic_uint_least64_t *fields[] = {MQK_ROUTE_COUNTERS(FIELD)};
	return counter__get(fields[i]);
}

uint64_t stats__journal_counter(const struct mqk_journal_counters *c, size_t i)
{
	const atomic_uint_least64_t *fields[] = {MQK_JOURNAL_COUNTERS(FIELD)};
	return counter__get(fields[i]);
}
#undef FIELD

uint64_t stats__message_counter(const struct mqk_stats *st, size_t i)
{
#define FIELD(name, help) st->name,
	const uint64_t values[] = {MQK_MESSAGE_COUNTERS(FIELD)};
#undef FIELD
	return values[i];
}

void stats__each_counter(void (*fn)(void *arg, const char *sys_topic, const char *metric,
				    const char *help, bool per_route),
			 void *arg)
{
	char topic[128], metric[128];
#define EMIT(name, help, prefix, mprefix, per_route)                                               \
	do {                                                                                       \
		snprintf(topic, sizeof(topic), MQK_SYS_PREFIX "/%s%s", prefix, #name);             \
		snprintf(metric, sizeof(metric), "mosquitto_kafka_%s%s_total", mprefix, #name);    \
		fn(arg, topic, metric, help, per_route);                                           \
	} while (0);
#define X(name, help) EMIT(name, help, "", "", false)
	MQK_MESSAGE_COUNTERS(X)
#undef X
#define X(name, help) EMIT(name, help, "", "", true)
	MQK_ROUTE_COUNTERS(X)
#undef X
#define X(name, help) EMIT(name, help, "journal_", "journal_", false)
	MQK_JOURNAL_COUNTERS(X)
#undef X
#define X(name, help) EMIT(name, help, "commands/", "commands_", false)
	MQK_COMMAND_COUNTERS(X)
#undef X
#define X(name, help) EMIT(name, help, "inbound/", "inbound_", false)
	MQK_INBOUND_COUNTERS(X)
#undef X
#undef EMIT
}

/* Builds the $SYS topic strings for cfg's routes into st->topics (replacing any). */
static int build_topics(struct mqk_stats *st, const struct mqk_config *cfg)
{
	int n = 0;
	char topic[256];

	for (int i = 0; i < st->topic_count && st->topics; i++) {
		free(st->topics[i]);
	}
	free(st->topics);
	st->topic_count = (int)TOTALS_ONLY + (int)PER_SCOPE * (1 + routes__in_force_count(cfg)) +
			  (cfg->commands.mode != MQK_CMD_OFF ? (int)N_COMMAND_COUNTERS : 0) +
			  (cfg->inbound.count > 0 ? (int)N_INBOUND_COUNTERS : 0);
	st->topics = calloc((size_t)st->topic_count, sizeof(char *));
	if (st->topics == NULL) {
		st->topic_count = 0;
		return -1;
	}
	for (size_t i = 0; i < N_MESSAGE_COUNTERS; i++) {
		snprintf(topic, sizeof(topic), MQK_SYS_PREFIX "/%s", message_names[i]);
		st->topics[n++] = strdup(topic);
	}
	st->topics[n++] = strdup(MQK_SYS_PREFIX "/buffered_bytes");
	for (size_t i = 0; i < N_JOURNAL_COUNTERS; i++) {
		snprintf(topic, sizeof(topic), MQK_SYS_PREFIX "/journal_%s", journal_names[i]);
		st->topics[n++] = strdup(topic);
	}
	for (int r = -1; r < routes__in_force_count(cfg); r++) {
		char scope[128] = MQK_SYS_PREFIX;
		if (r >= 0) {
			snprintf(scope, sizeof(scope), MQK_SYS_PREFIX "/routes/%s",
				 cfg->routes[routes__in_force(cfg, r)].name);
		}
		for (size_t i = 0; i < PER_SCOPE; i++) {
			snprintf(topic, sizeof(topic), "%s/%s", scope,
				 i < N_COUNTERS ? counter_names[i] : "in_flight");
			st->topics[n++] = strdup(topic);
		}
	}
	for (size_t i = 0; cfg->commands.mode != MQK_CMD_OFF && i < N_COMMAND_COUNTERS; i++) {
		snprintf(topic, sizeof(topic), MQK_SYS_PREFIX "/commands/%s", command_names[i]);
		st->topics[n++] = strdup(topic);
	}
	for (size_t i = 0; cfg->inbound.count > 0 && i < N_INBOUND_COUNTERS; i++) {
		snprintf(topic, sizeof(topic), MQK_SYS_PREFIX "/inbound/%s", inbound_names[i]);
		st->topics[n++] = strdup(topic);
	}
	for (int i = 0; i < n; i++) {
		if (st->topics[i] == NULL) {
			for (int j = 0; j < n; j++) {
				free(st->topics[j]);
			}
			free(st->topics);
			st->topics = NULL; /* nothing published */
			st->topic_count = 0;
			return -1;
		}
	}
	return 0;
}

int stats__init(struct mqk_stats *st, const struct mqk_config *cfg)
{
	memset(st, 0, sizeof(*st));
	return build_topics(st, cfg);
}

int stats__routes_changed(struct mqk_stats *st, const struct mqk_config *cfg)
{
	return build_topics(st, cfg);
}

static void publish(const char *topic, uint64_t value)
{
	char payload[24];
	size_t len = record__u64_to_str(value, payload);

	deliver__publish(NULL, topic, len, payload, 0, true, NULL);
}

static void publish_scope(char **topics, const struct mqk_counters *c)
{
	for (size_t i = 0; i < N_COUNTERS; i++) {
		publish(topics[i], stats__route_counter(c, i));
	}
	publish(topics[N_COUNTERS], producer__in_flight(c));
}

void stats__tick(struct mqk_stats *st, const struct mqk_config *cfg, time_t now,
		 size_t buffered_bytes)
{
	char **t = st->topics;

	if (cfg->stats_interval == 0 || now < st->next_publish || st->topics == NULL) {
		return;
	}
	st->next_publish = now + cfg->stats_interval;
	for (size_t i = 0; i < N_MESSAGE_COUNTERS; i++) {
		publish(*t++, stats__message_counter(st, i));
	}
	publish(*t++, buffered_bytes);
	for (size_t i = 0; i < N_JOURNAL_COUNTERS; i++) {
		publish(*t++, stats__journal_counter(&st->journal, i));
	}
	t = st->topics;
	publish_scope(t + TOTALS_ONLY, &st->totals);
	for (int r = 0; r < routes__in_force_count(cfg); r++) {
		struct mqk_counters c;
		routes__counters(cfg, routes__in_force(cfg, r), &c);
		publish_scope(t + TOTALS_ONLY + PER_SCOPE * (size_t)(r + 1), &c);
	}
	t += TOTALS_ONLY + PER_SCOPE * (size_t)(routes__in_force_count(cfg) + 1);
	if (cfg->commands.mode != MQK_CMD_OFF) {
		for (size_t i = 0; i < N_COMMAND_COUNTERS; i++) {
			publish(t[i], stats__command_counter(&st->commands, i));
		}
		t += N_COMMAND_COUNTERS;
	}
	for (size_t i = 0; cfg->inbound.count > 0 && i < N_INBOUND_COUNTERS; i++) {
		publish(t[i], stats__inbound_counter(&st->inbound, i));
	}
}

static void log_scope(const char *scope, const struct mqk_counters *c)
{
	char line[512];
	size_t len = 0;

	for (size_t i = 0; i < N_COUNTERS; i++) {
		len += (size_t)snprintf(line + len, sizeof(line) - len, "%s %llu, ",
					counter_names[i],
					(unsigned long long)stats__route_counter(c, i));
	}
	log__printf(MOSQ_LOG_NOTICE, "%s: %sin_flight %llu", scope, line,
		    (unsigned long long)producer__in_flight(c));
}

void stats__log_summary(const struct mqk_stats *st, const struct mqk_config *cfg)
{
	char scope[128];

	char line[512];
	size_t len = 0;

	for (size_t i = 0; i < N_MESSAGE_COUNTERS; i++) {
		len += (size_t)snprintf(line + len, sizeof(line) - len, "%s%s %llu", i ? ", " : "",
					message_names[i],
					(unsigned long long)stats__message_counter(st, i));
	}
	log__printf(MOSQ_LOG_NOTICE, "totals: %s", line);
	log_scope("totals", &st->totals);
	if (cfg->durability == MQK_DURABILITY_JOURNAL) {
		len = 0;
		for (size_t i = 0; i < N_JOURNAL_COUNTERS; i++) {
			len += (size_t)snprintf(
				line + len, sizeof(line) - len, "%s%s %llu", i ? ", " : "",
				journal_names[i],
				(unsigned long long)stats__journal_counter(&st->journal, i));
		}
		log__printf(MOSQ_LOG_NOTICE, "journal: %s", line);
	}
	for (int r = 0; r < routes__in_force_count(cfg); r++) {
		struct mqk_counters c;
		routes__counters(cfg, routes__in_force(cfg, r), &c);
		snprintf(scope, sizeof(scope), "route %s",
			 cfg->routes[routes__in_force(cfg, r)].name);
		log_scope(scope, &c);
	}
	if (cfg->commands.mode != MQK_CMD_OFF) {
		len = 0;
		for (size_t i = 0; i < N_COMMAND_COUNTERS; i++) {
			len += (size_t)snprintf(
				line + len, sizeof(line) - len, "%s%s %llu", i ? ", " : "",
				command_names[i],
				(unsigned long long)stats__command_counter(&st->commands, i));
		}
		log__printf(MOSQ_LOG_NOTICE, "commands: %s", line);
	}
	if (cfg->inbound.count > 0) {
		len = 0;
		for (size_t i = 0; i < N_INBOUND_COUNTERS; i++) {
			len += (size_t)snprintf(
				line + len, sizeof(line) - len, "%s%s %llu", i ? ", " : "",
				inbound_names[i],
				(unsigned long long)stats__inbound_counter(&st->inbound, i));
		}
		log__printf(MOSQ_LOG_NOTICE, "inbound: %s", line);
	}
}

void stats__free(struct mqk_stats *st)
{
	for (int i = 0; i < st->topic_count && st->topics; i++) {
		free(st->topics[i]);
	}
	free(st->topics);
	memset(st, 0, sizeof(*st));
}
