/*
 * stats.c - the plugin's counters, where an admin can see them.
 *
 * Counters are plain integers touched only on mosquitto's thread. Every
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

static const char *const counter_names[] = {
	"matched",   "produced",  "delivered", "failed",         "buffer_full",
	"bad_topic", "too_large", "refused",   "dropped_oldest", "rejected",
};
#define N_COUNTERS (sizeof(counter_names) / sizeof(counter_names[0]))
/* Per scope (totals, then each route): the counters, then in_flight. */
#define PER_SCOPE (N_COUNTERS + 1)
/* Totals only: received, unrouted, excluded, buffered_bytes, the journal's two. */
#define TOTALS_ONLY 6

/* The command path's, under MQK_SYS_PREFIX "/commands/" (only when commands are on). */
static const char *const command_names[] = {
	"consumed", "delivered", "skipped", "returned", "dead_lettered",
	"invalid",  "presence",  "wakes",   "lost",
};
#define N_COMMAND_COUNTERS (sizeof(command_names) / sizeof(command_names[0]))

static uint64_t get_command(const struct mqk_cmd_counters *c, size_t i)
{
	const atomic_uint_least64_t *fields[N_COMMAND_COUNTERS] = {
		&c->consumed, &c->delivered, &c->skipped, &c->returned, &c->dead_lettered,
		&c->invalid,  &c->presence,  &c->wakes,   &c->lost,
	};
	return counter__get(fields[i]);
}

/* The i-th of counter_names. */
static uint64_t get(const struct mqk_counters *c, size_t i)
{
	const atomic_uint_least64_t *fields[N_COUNTERS] = {
		&c->matched,   &c->produced,  &c->delivered, &c->failed,         &c->buffer_full,
		&c->bad_topic, &c->too_large, &c->refused,   &c->dropped_oldest, &c->rejected,
	};
	return counter__get(fields[i]);
}

int stats__init(struct mqk_stats *st, const struct mqk_config *cfg)
{
	memset(st, 0, sizeof(*st));
	return stats__routes_changed(st, cfg);
}

int stats__routes_changed(struct mqk_stats *st, const struct mqk_config *cfg)
{
	static const char *const totals_only[TOTALS_ONLY] = {"received",         "unrouted",
							     "excluded",         "buffered_bytes",
							     "journal_replayed", "journal_errors"};
	int n = 0;
	char topic[256];

	for (int i = 0; i < st->topic_count && st->topics; i++) {
		free(st->topics[i]);
	}
	free(st->topics);
	st->topic_count = TOTALS_ONLY + (int)PER_SCOPE * (1 + routes__in_force_count(cfg)) +
			  (cfg->commands.mode != MQK_CMD_OFF ? (int)N_COMMAND_COUNTERS : 0);
	st->topics = calloc((size_t)st->topic_count, sizeof(char *));
	if (st->topics == NULL) {
		return -1;
	}
	for (int i = 0; i < TOTALS_ONLY; i++) {
		snprintf(topic, sizeof(topic), MQK_SYS_PREFIX "/%s", totals_only[i]);
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

static void publish(const char *topic, uint64_t value)
{
	char payload[24];
	size_t len = record__u64_to_str(value, payload);

	deliver__publish(NULL, topic, len, payload, 0, true, NULL);
}

static void publish_scope(char **topics, const struct mqk_counters *c)
{
	for (size_t i = 0; i < N_COUNTERS; i++) {
		publish(topics[i], get(c, i));
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
	publish(t[0], st->received);
	publish(t[1], st->unrouted);
	publish(t[2], st->excluded);
	publish(t[3], buffered_bytes);
	publish(t[4], counter__get(&st->journal.replayed));
	publish(t[5], counter__get(&st->journal.errors));
	publish_scope(t + TOTALS_ONLY, &st->totals);
	for (int r = 0; r < routes__in_force_count(cfg); r++) {
		struct mqk_counters c;
		routes__counters(cfg, routes__in_force(cfg, r), &c);
		publish_scope(t + TOTALS_ONLY + PER_SCOPE * (size_t)(r + 1), &c);
	}
	if (cfg->commands.mode != MQK_CMD_OFF) {
		t += TOTALS_ONLY + PER_SCOPE * (size_t)(routes__in_force_count(cfg) + 1);
		for (size_t i = 0; i < N_COMMAND_COUNTERS; i++) {
			publish(t[i], get_command(&st->commands, i));
		}
	}
}

static void log_scope(const char *scope, const struct mqk_counters *c)
{
	char line[512];
	size_t len = 0;

	for (size_t i = 0; i < N_COUNTERS; i++) {
		len += (size_t)snprintf(line + len, sizeof(line) - len, "%s %llu, ",
					counter_names[i], (unsigned long long)get(c, i));
	}
	log__printf(MOSQ_LOG_NOTICE, "%s: %sin_flight %llu", scope, line,
		    (unsigned long long)producer__in_flight(c));
}

void stats__log_summary(const struct mqk_stats *st, const struct mqk_config *cfg)
{
	char scope[128];

	log__printf(MOSQ_LOG_NOTICE, "totals: received %llu, unrouted %llu, excluded %llu",
		    (unsigned long long)st->received, (unsigned long long)st->unrouted,
		    (unsigned long long)st->excluded);
	log_scope("totals", &st->totals);
	if (cfg->durability == MQK_DURABILITY_JOURNAL) {
		log__printf(MOSQ_LOG_NOTICE, "journal: replayed %llu, errors %llu",
			    (unsigned long long)counter__get(&st->journal.replayed),
			    (unsigned long long)counter__get(&st->journal.errors));
	}
	for (int r = 0; r < routes__in_force_count(cfg); r++) {
		struct mqk_counters c;
		routes__counters(cfg, routes__in_force(cfg, r), &c);
		snprintf(scope, sizeof(scope), "route %s",
			 cfg->routes[routes__in_force(cfg, r)].name);
		log_scope(scope, &c);
	}
	if (cfg->commands.mode != MQK_CMD_OFF) {
		char line[512];
		size_t len = 0;
		for (size_t i = 0; i < N_COMMAND_COUNTERS; i++) {
			len += (size_t)snprintf(line + len, sizeof(line) - len, "%s%s %llu",
						i ? ", " : "", command_names[i],
						(unsigned long long)get_command(&st->commands, i));
		}
		log__printf(MOSQ_LOG_NOTICE, "commands: %s", line);
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
