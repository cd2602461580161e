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
 *
 * Threads. Every counter is an atomic_uint_least64_t written by one thread (mqk.h names
 * which: mosquitto's, the Kafka thread, the commands or the inbound thread; refused by
 * two, with atomic_fetch_add); this file reads them relaxed on mosquitto's thread.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>

#include "mosquitto_kafka.h"
#include "mqk.h"

/*
 * The counter families, one table: each list of mqk.h gives its counters' names, HELP
 * texts and places (offsets in the family's struct); a family says where its struct is
 * in struct mqk_stats and how its $SYS topics, metrics and summary line are prefixed.
 * The $SYS topics, the getters, the summary and metrics.c read only this table.
 */
struct counter_def {
	const char *name;
	const char *help;
	size_t offset; /* of its atomic_uint_least64_t in the family's struct */
};

#define DEF(type, name, help) {#name, help, offsetof(type, name)},
#define MESSAGE_DEF(name, help) DEF(struct mqk_stats, name, help)
#define ROUTE_DEF(name, help) DEF(struct mqk_counters, name, help)
#define JOURNAL_DEF(name, help) DEF(struct mqk_journal_counters, name, help)
#define COMMAND_DEF(name, help) DEF(struct mqk_cmd_counters, name, help)
#define INBOUND_DEF(name, help) DEF(struct mqk_inbound_counters, name, help)
static const struct counter_def message_defs[] = {MQK_MESSAGE_COUNTERS(MESSAGE_DEF)};
static const struct counter_def route_defs[] = {MQK_ROUTE_COUNTERS(ROUTE_DEF)};
static const struct counter_def journal_defs[] = {MQK_JOURNAL_COUNTERS(JOURNAL_DEF)};
static const struct counter_def command_defs[] = {MQK_COMMAND_COUNTERS(COMMAND_DEF)};
static const struct counter_def inbound_defs[] = {MQK_INBOUND_COUNTERS(INBOUND_DEF)};
#undef DEF
#undef MESSAGE_DEF
#undef ROUTE_DEF
#undef JOURNAL_DEF
#undef COMMAND_DEF
#undef INBOUND_DEF

#define LIST(defs) defs, sizeof(defs) / sizeof(defs[0])
static const struct family {
	size_t base;		   /* of the family's struct in struct mqk_stats (the totals) */
	const char *sys_prefix;	   /* $SYS/broker/kafka/<sys_prefix><name> */
	const char *metric_prefix; /* mosquitto_kafka_<metric_prefix><name>_total */
	const char *label;	   /* its line in the shutdown summary */
	const struct counter_def *defs;
	size_t count;
} families[MQK_COUNTER_FAMILIES] = {
	[MQK_COUNTERS_MESSAGE] = {0, "", "", "totals", LIST(message_defs)},
	[MQK_COUNTERS_ROUTE] = {offsetof(struct mqk_stats, totals), "", "", "totals",
				LIST(route_defs)},
	[MQK_COUNTERS_JOURNAL] = {offsetof(struct mqk_stats, journal), "journal_", "journal_",
				  "journal", LIST(journal_defs)},
	[MQK_COUNTERS_COMMAND] = {offsetof(struct mqk_stats, commands), "commands/", "commands_",
				  "commands", LIST(command_defs)},
	[MQK_COUNTERS_INBOUND] = {offsetof(struct mqk_stats, inbound), "inbound/", "inbound_",
				  "inbound", LIST(inbound_defs)},
};
#undef LIST

/* The i-th counter of family f in its struct at base. */
static uint64_t value_at(const void *base, enum mqk_counter_family f, size_t i)
{
	return counter__get(
		(const atomic_uint_least64_t *)((const char *)base + families[f].defs[i].offset));
}

/* Family f's struct of totals in st. */
static const void *totals_of(const struct mqk_stats *st, enum mqk_counter_family f)
{
	return (const char *)st + families[f].base;
}

uint64_t stats__value(const struct mqk_stats *st, enum mqk_counter_family f, size_t i)
{
	return value_at(totals_of(st, f), f, i);
}

uint64_t stats__route_counter(const struct mqk_counters *c, size_t i)
{
	return value_at(c, MQK_COUNTERS_ROUTE, i);
}

void stats__each_counter(void (*fn)(void *arg, const struct mqk_counter_info *counter), void *arg)
{
	char topic[128], metric[128];

	for (int f = 0; f < MQK_COUNTER_FAMILIES; f++) {
		const struct family *fam = &families[f];
		for (size_t i = 0; i < fam->count; i++) {
			snprintf(topic, sizeof(topic), MQK_SYS_PREFIX "/%s%s", fam->sys_prefix,
				 fam->defs[i].name);
			snprintf(metric, sizeof(metric), "mosquitto_kafka_%s%s_total",
				 fam->metric_prefix, fam->defs[i].name);
			struct mqk_counter_info c = {.family = (enum mqk_counter_family)f,
						     .index = i,
						     .help = fam->defs[i].help,
						     .sys_topic = topic,
						     .metric = metric};
			fn(arg, &c);
		}
	}
}

/* Whether family f is shown ($SYS, the summary) with cfg: the command path's with commands
   on, the inbound path's with inbound routes, the others always. */
static bool shown(const struct mqk_config *cfg, enum mqk_counter_family f)
{
	return (f != MQK_COUNTERS_COMMAND || cfg->commands.mode != MQK_CMD_OFF) &&
	       (f != MQK_COUNTERS_INBOUND || cfg->inbound.count > 0);
}

/*
 * The $SYS values, in this order (build_topics and stats__tick): the message counters,
 * buffered_bytes, the journal's; per scope (the totals, then each route in force) the
 * route counters and in_flight; then the command path's and the inbound path's when shown.
 */
#define PER_SCOPE (families[MQK_COUNTERS_ROUTE].count + 1)
#define TOTALS_ONLY                                                                                \
	(families[MQK_COUNTERS_MESSAGE].count + 1 + families[MQK_COUNTERS_JOURNAL].count)

/* Appends scope/<prefix><name> to st->topics; NULL (checked by the caller) if no memory. */
static void add_topic(struct mqk_stats *st, int *n, const char *scope, const char *prefix,
		      const char *name)
{
	char topic[256];

	snprintf(topic, sizeof(topic), "%s/%s%s", scope, prefix, name);
	st->topics[(*n)++] = strdup(topic);
}

static void add_family(struct mqk_stats *st, int *n, const char *scope, enum mqk_counter_family f)
{
	for (size_t i = 0; i < families[f].count; i++) {
		add_topic(st, n, scope, families[f].sys_prefix, families[f].defs[i].name);
	}
}

/* Builds the $SYS topic strings for cfg's routes into st->topics (replacing any). */
static int build_topics(struct mqk_stats *st, const struct mqk_config *cfg)
{
	int n = 0;

	for (int i = 0; i < st->topic_count && st->topics; i++) {
		free(st->topics[i]);
	}
	free(st->topics);
	st->topic_count = (int)TOTALS_ONLY + (int)PER_SCOPE * (1 + routes__in_force_count(cfg));
	for (int f = MQK_COUNTERS_COMMAND; f <= MQK_COUNTERS_INBOUND; f++) {
		st->topic_count += shown(cfg, f) ? (int)families[f].count : 0;
	}
	st->topics = calloc((size_t)st->topic_count, sizeof(char *));
	if (st->topics == NULL) {
		st->topic_count = 0;
		return -1;
	}
	add_family(st, &n, MQK_SYS_PREFIX, MQK_COUNTERS_MESSAGE);
	add_topic(st, &n, MQK_SYS_PREFIX, "", "buffered_bytes");
	add_family(st, &n, MQK_SYS_PREFIX, MQK_COUNTERS_JOURNAL);
	for (int r = -1; r < routes__in_force_count(cfg); r++) {
		char scope[128] = MQK_SYS_PREFIX;
		if (r >= 0) {
			snprintf(scope, sizeof(scope), MQK_SYS_PREFIX "/routes/%s",
				 cfg->routes[routes__in_force(cfg, r)].name);
		}
		add_family(st, &n, scope, MQK_COUNTERS_ROUTE);
		add_topic(st, &n, scope, "", "in_flight");
	}
	for (int f = MQK_COUNTERS_COMMAND; f <= MQK_COUNTERS_INBOUND; f++) {
		if (shown(cfg, f)) {
			add_family(st, &n, MQK_SYS_PREFIX, f);
		}
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

/* Publishes family f's counters of the struct at base under the next topics of *t. */
static void publish_family(char ***t, const void *base, enum mqk_counter_family f)
{
	for (size_t i = 0; i < families[f].count; i++) {
		publish(*(*t)++, value_at(base, f, i));
	}
}

static void publish_scope(char ***t, const struct mqk_counters *c)
{
	publish_family(t, c, MQK_COUNTERS_ROUTE);
	publish(*(*t)++, counters__in_flight(c));
}

void stats__tick(struct mqk_stats *st, const struct mqk_config *cfg, time_t now,
		 size_t buffered_bytes)
{
	char **t = st->topics;

	if (cfg->stats_interval == 0 || now < st->next_publish || st->topics == NULL) {
		return;
	}
	st->next_publish = now + cfg->stats_interval;
	publish_family(&t, totals_of(st, MQK_COUNTERS_MESSAGE), MQK_COUNTERS_MESSAGE);
	publish(*t++, buffered_bytes);
	publish_family(&t, totals_of(st, MQK_COUNTERS_JOURNAL), MQK_COUNTERS_JOURNAL);
	publish_scope(&t, &st->totals);
	for (int r = 0; r < routes__in_force_count(cfg); r++) {
		struct mqk_counters c;
		routes__counters(cfg, routes__in_force(cfg, r), &c);
		publish_scope(&t, &c);
	}
	for (int f = MQK_COUNTERS_COMMAND; f <= MQK_COUNTERS_INBOUND; f++) {
		if (shown(cfg, f)) {
			publish_family(&t, totals_of(st, f), f);
		}
	}
}

/* Logs "<label>: <name> <value>, ..." for family f's counters of the struct at base; with
   in_flight (a route scope), ", in_flight <n>" last. */
static void log_family(const char *label, const void *base, enum mqk_counter_family f,
		       bool in_flight)
{
	char line[512];
	size_t len = 0;

	for (size_t i = 0; i < families[f].count && len < sizeof(line); i++) {
		len += (size_t)snprintf(line + len, sizeof(line) - len, "%s%s %llu", i ? ", " : "",
					families[f].defs[i].name,
					(unsigned long long)value_at(base, f, i));
	}
	if (in_flight && len < sizeof(line)) {
		snprintf(line + len, sizeof(line) - len, ", in_flight %llu",
			 (unsigned long long)counters__in_flight(base));
	}
	log__printf(MOSQ_LOG_NOTICE, "%s: %s", label, line);
}

void stats__log_summary(const struct mqk_stats *st, const struct mqk_config *cfg)
{
	char scope[128];

	log_family("totals", totals_of(st, MQK_COUNTERS_MESSAGE), MQK_COUNTERS_MESSAGE, false);
	log_family("totals", &st->totals, MQK_COUNTERS_ROUTE, true);
	if (cfg->durability == MQK_DURABILITY_JOURNAL) {
		log_family("journal", &st->journal, MQK_COUNTERS_JOURNAL, false);
	}
	for (int r = 0; r < routes__in_force_count(cfg); r++) {
		struct mqk_counters c;
		routes__counters(cfg, routes__in_force(cfg, r), &c);
		snprintf(scope, sizeof(scope), "route %s",
			 cfg->routes[routes__in_force(cfg, r)].name);
		log_family(scope, &c, MQK_COUNTERS_ROUTE, true);
	}
	for (int f = MQK_COUNTERS_COMMAND; f <= MQK_COUNTERS_INBOUND; f++) {
		if (shown(cfg, f)) {
			log_family(families[f].label, totals_of(st, f), f, false);
		}
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
