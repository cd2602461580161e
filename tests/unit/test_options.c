/*
 * test_options.c - options__parse: every option, its default, trimming, and every
 * error message options.c can produce, asserted in full. Route selectors, the routes
 * file (options__read_routes_file) and its reload (routes__reload, reload.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#include "fake_broker.h"
#include "mqk.h"

#define MAX_OPTS 32

static struct mqk_config cfg;
static char err[1024];

/* Parses the NULL-terminated key, value, key, value, ... list into cfg. */
static int parse_list(const char *first_key, va_list ap)
{
	struct mosquitto_opt opts[MAX_OPTS];
	int n = 0;

	for (const char *key = first_key; key != NULL; key = va_arg(ap, const char *)) {
		assert_true(n < MAX_OPTS);
		opts[n].key = (char *)key;
		opts[n].value = (char *)va_arg(ap, const char *);
		n++;
	}
	options__free(&cfg);
	memset(err, 0, sizeof(err));
	return options__parse(&cfg, opts, n, err, sizeof(err));
}

static int parse_raw(const char *first_key, ...)
{
	va_list ap;
	int rc;

	va_start(ap, first_key);
	rc = parse_list(first_key, ap);
	va_end(ap);
	return rc;
}

/* Options as given; PARSE_BS() prepends a valid bootstrap_servers. */
#define PARSE(...) parse_raw(__VA_ARGS__, NULL)
#define PARSE_BS(...) parse_raw("bootstrap_servers", "kafka:9092", __VA_ARGS__, NULL)

#define assert_ok(rc)                                                                              \
	do {                                                                                       \
		int rc_ = (rc);                                                                    \
		if (rc_ != 0) {                                                                    \
			print_error("errstr: %s\n", err);                                          \
		}                                                                                  \
		assert_int_equal(rc_, 0);                                                          \
	} while (0)

#define assert_fails(rc, message)                                                                  \
	do {                                                                                       \
		assert_int_equal((rc), -1);                                                        \
		assert_string_equal(err, message);                                                 \
	} while (0)

static int setup(void **state)
{
	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	fake_broker_reset();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	options__free(&cfg);
	return 0;
}

/* ---- valid options ---------------------------------------------------------------- */

static void test_minimal_defaults(void **state)
{
	char host[256] = "";

	(void)state;
	assert_ok(PARSE("bootstrap_servers", "k1:9092,k2:9092"));
	assert_string_equal(cfg.bootstrap_servers, "k1:9092,k2:9092");
	assert_int_equal(gethostname(host, sizeof(host) - 1), 0);
	assert_string_equal(cfg.broker_id, host);
	assert_int_equal(cfg.route_count, 0);
	assert_int_equal(cfg.exclude_count, 0);
	assert_int_equal(cfg.kafka_prop_count, 0);
	assert_int_equal(cfg.stats_interval, 10);
	assert_int_equal(cfg.flush_timeout_ms, 10000);
	assert_int_equal(cfg.buffer_mb, 64);
	assert_false(cfg.create_topics);
	assert_int_equal(cfg.topic_partitions, 6);
	assert_int_equal(cfg.topic_replication_factor, -1);
	/* The journal by default, in a directory named after the broker. */
	char dir[512];
	snprintf(dir, sizeof(dir), "/var/lib/mosquitto/mosquitto-kafka/%s", host);
	assert_int_equal(cfg.durability, MQK_DURABILITY_JOURNAL);
	assert_string_equal(cfg.journal_dir, dir);
	assert_int_equal(cfg.journal_fsync_ms, 1000);
	assert_int_equal(cfg.journal_max_mb, 1024);
	assert_int_equal(cfg.journal_segment_mb, 64);
	assert_int_equal(cfg.overflow, MQK_OVERFLOW_REJECT);
}

static void test_no_options_at_all(void **state)
{
	(void)state;
	assert_int_equal(options__parse(&cfg, NULL, 0, err, sizeof(err)), -1);
	assert_string_equal(err, "plugin_opt_bootstrap_servers: required: the Kafka brokers to "
				 "connect to, e.g. plugin_opt_bootstrap_servers "
				 "kafka1:9092,kafka2:9092");
}

static void test_bootstrap_missing(void **state)
{
	(void)state;
	assert_fails(PARSE("broker_id", "a", "route_r", "a/# -> t"),
		     "plugin_opt_bootstrap_servers: required: the Kafka brokers to connect to, "
		     "e.g. plugin_opt_bootstrap_servers kafka1:9092,kafka2:9092");
}

static void test_broker_id(void **state)
{
	char id64[65], id65[66];

	(void)state;
	assert_ok(PARSE_BS("broker_id", "broker-a.eu_1"));
	assert_string_equal(cfg.broker_id, "broker-a.eu_1");

	memset(id64, 'b', 64);
	id64[64] = '\0';
	assert_ok(PARSE_BS("broker_id", id64));
	assert_string_equal(cfg.broker_id, id64);

	memset(id65, 'b', 65);
	id65[65] = '\0';
	char expected[256];
	snprintf(expected, sizeof(expected),
		 "plugin_opt_broker_id: '%s' is not a valid broker id (1..64 characters "
		 "[A-Za-z0-9._-])",
		 id65);
	assert_fails(PARSE_BS("broker_id", id65), expected);
	assert_fails(PARSE_BS("broker_id", "my broker"),
		     "plugin_opt_broker_id: 'my broker' is not a valid broker id (1..64 "
		     "characters [A-Za-z0-9._-])");
	assert_fails(PARSE_BS("broker_id", "a/b"),
		     "plugin_opt_broker_id: 'a/b' is not a valid broker id (1..64 characters "
		     "[A-Za-z0-9._-])");
}

static void test_trimming(void **state)
{
	(void)state;
	/* mosquitto keeps trailing spaces (and strips only CR/LF). */
	assert_ok(PARSE("bootstrap_servers", " \tk:9092 \t ", "broker_id", "b1   ", "route_r",
			"  a/+ -> t-{1}  key=topic \t format=json  ", "exclude", "a/x/#\t",
			"kafka.linger.ms", " 20 ", "stats_interval", "5 ", "flush_timeout_ms",
			"\t250\t"));
	assert_string_equal(cfg.bootstrap_servers, "k:9092");
	assert_string_equal(cfg.broker_id, "b1");
	assert_int_equal(cfg.route_count, 1);
	assert_string_equal(cfg.routes[0].filter, "a/+");
	assert_string_equal(cfg.routes[0].topic.source, "t-{1}");
	assert_string_equal(cfg.routes[0].key.source, "{topic}");
	assert_int_equal(cfg.routes[0].format, MQK_FORMAT_JSON);
	assert_int_equal(cfg.exclude_count, 1);
	assert_string_equal(cfg.excludes[0], "a/x/#");
	assert_int_equal(cfg.kafka_prop_count, 1);
	assert_string_equal(cfg.kafka_props[0].value, "20");
	assert_int_equal(cfg.stats_interval, 5);
	assert_int_equal(cfg.flush_timeout_ms, 250);
}

static void test_route_defaults(void **state)
{
	struct mqk_route *r;

	(void)state;
	assert_ok(PARSE_BS("route_spectrum", "sensors/+/spectrum -> spectrum"));
	assert_int_equal(cfg.route_count, 1);
	r = &cfg.routes[0];
	assert_string_equal(r->name, "spectrum");
	assert_string_equal(r->filter, "sensors/+/spectrum");
	assert_string_equal(r->topic.source, "spectrum");
	assert_true(r->topic.is_static);
	/* key=clientid is the default. */
	assert_string_equal(r->key.source, "{clientid}");
	assert_int_equal(r->key.part_count, 1);
	assert_int_equal(r->key.parts[0].kind, MQK_TPL_CLIENTID);
	assert_int_equal(r->format, MQK_FORMAT_RAW);
	assert_null(r->rkt);
	assert_int_equal(r->seq, 0);
}

static void test_route_keys(void **state)
{
	static const struct {
		const char *attr;
		const char *source;     /* NULL: null key */
		enum mqk_tpl_kind kind; /* of the first part */
		int parts;
	} cases[] = {
		{"key=clientid", "{clientid}", MQK_TPL_CLIENTID, 1},
		{"key=username", "{username}", MQK_TPL_USERNAME, 1},
		{"key=topic", "{topic}", MQK_TPL_TOPIC, 1},
		{"key=broker", "{broker}", MQK_TPL_BROKER, 1},
		{"key=none", NULL, MQK_TPL_LITERAL, 0},
		{"key={1}", "{1}", MQK_TPL_LEVEL, 1},
		{"key={clientid}-{2}", "{clientid}-{2}", MQK_TPL_CLIENTID, 3},
		{"key=dev/{1}:{username}", "dev/{1}:{username}", MQK_TPL_LITERAL, 4},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char value[128];
		snprintf(value, sizeof(value), "a/+/+ -> t %s", cases[i].attr);
		assert_ok(PARSE_BS("route_r", value));
		struct mqk_template *key = &cfg.routes[0].key;
		assert_int_equal(key->part_count, cases[i].parts);
		if (cases[i].source == NULL) {
			assert_null(key->source);
			assert_null(key->parts);
		} else {
			assert_string_equal(key->source, cases[i].source);
			assert_int_equal(key->parts[0].kind, cases[i].kind);
		}
	}
}

static void test_route_formats_and_order(void **state)
{
	(void)state;
	assert_ok(PARSE_BS("route_a", "a/# -> ta format=raw", "route_b",
			   "b/# -> tb format=json key=none", "route_c-2", "c -> tc key=topic"));
	assert_int_equal(cfg.route_count, 3);
	assert_string_equal(cfg.routes[0].name, "a");
	assert_int_equal(cfg.routes[0].format, MQK_FORMAT_RAW);
	assert_string_equal(cfg.routes[1].name, "b");
	assert_int_equal(cfg.routes[1].format, MQK_FORMAT_JSON);
	assert_int_equal(cfg.routes[1].key.part_count, 0);
	assert_string_equal(cfg.routes[2].name, "c-2");
	assert_string_equal(cfg.routes[2].filter, "c");
	assert_int_equal(cfg.routes[2].format, MQK_FORMAT_RAW);
}

static void test_route_topic_templates(void **state)
{
	(void)state;
	assert_ok(PARSE_BS("route_r", "sensors/+/x/# -> mqtt.{1}.{2}-{clientid}_{broker}"));
	assert_false(cfg.routes[0].topic.is_static);
	assert_int_equal(cfg.routes[0].topic.part_count, 8);
}

static void test_route_filter_with_spaces(void **state)
{
	(void)state;
	/* The filter ends at " -> ": spaces inside it, and several before the arrow. */
	assert_ok(PARSE_BS("route_r", "my sensors/+/room 1   \t->  t"));
	assert_string_equal(cfg.routes[0].filter, "my sensors/+/room 1");
	assert_string_equal(cfg.routes[0].topic.source, "t");
	/* "->" without spaces around it belongs to the filter. */
	assert_ok(PARSE_BS("route_r", "a->b/+ -> t"));
	assert_string_equal(cfg.routes[0].filter, "a->b/+");
	/* Only the first " -> " splits. */
	assert_ok(PARSE_BS("route_r", "a/+ -> t key=x->{1}"));
	assert_string_equal(cfg.routes[0].key.source, "x->{1}");
	assert_fails(PARSE_BS("route_r", "a -> t -> u"),
		     "plugin_opt_route_r: unknown route attribute '->' (use key=<key>, "
		     "format=raw|json, and the "
		     "selectors clientid=<glob>, username=<glob>, qos=0|1|2, retain=true|false)");
}

static void test_route_name_limits(void **state)
{
	char key[80];

	(void)state;
	strcpy(key, "route_");
	memset(key + 6, 'n', 64);
	key[70] = '\0';
	assert_ok(PARSE_BS(key, "a -> t"));
	assert_int_equal(strlen(cfg.routes[0].name), 64);

	key[70] = 'n';
	key[71] = '\0';
	char expected[256];
	snprintf(expected, sizeof(expected),
		 "plugin_opt_%s: a route needs a name of 1..64 characters [A-Za-z0-9_-] after "
		 "route_, e.g. plugin_opt_route_sensors",
		 key);
	assert_fails(PARSE_BS(key, "a -> t"), expected);
}

static void test_excludes(void **state)
{
	(void)state;
	assert_ok(PARSE_BS("exclude", "a/+/debug/#", "exclude", "#", "exclude", "x y/z"));
	assert_int_equal(cfg.exclude_count, 3);
	assert_string_equal(cfg.excludes[0], "a/+/debug/#");
	assert_string_equal(cfg.excludes[1], "#");
	assert_string_equal(cfg.excludes[2], "x y/z");
}

static void test_kafka_props(void **state)
{
	(void)state;
	assert_ok(PARSE_BS("kafka.compression.type", "lz4", "kafka.linger.ms", "50",
			   "kafka.enable.idempotence", "false", "kafka.x", "a b c"));
	assert_int_equal(cfg.kafka_prop_count, 4);
	assert_string_equal(cfg.kafka_props[0].name, "compression.type");
	assert_string_equal(cfg.kafka_props[0].value, "lz4");
	assert_string_equal(cfg.kafka_props[1].name, "linger.ms");
	assert_string_equal(cfg.kafka_props[1].value, "50");
	assert_string_equal(cfg.kafka_props[2].name, "enable.idempotence");
	assert_string_equal(cfg.kafka_props[2].value, "false");
	/* Not validated here: librdkafka does it in producer__new. */
	assert_string_equal(cfg.kafka_props[3].name, "x");
	assert_string_equal(cfg.kafka_props[3].value, "a b c");
}

static void test_numbers_in_range(void **state)
{
	(void)state;
	assert_ok(PARSE_BS("stats_interval", "0", "flush_timeout_ms", "0"));
	assert_int_equal(cfg.stats_interval, 0);
	assert_int_equal(cfg.flush_timeout_ms, 0);
	assert_ok(PARSE_BS("stats_interval", "86400", "flush_timeout_ms", "600000"));
	assert_int_equal(cfg.stats_interval, 86400);
	assert_int_equal(cfg.flush_timeout_ms, 600000);
	assert_ok(PARSE_BS("stats_interval", "1", "flush_timeout_ms", "1"));
	assert_int_equal(cfg.stats_interval, 1);
	assert_int_equal(cfg.flush_timeout_ms, 1);
	/* buffer_mb is durability memory's (the default is journal). */
	assert_ok(PARSE_BS("durability", "memory", "buffer_mb", "1"));
	assert_int_equal(cfg.buffer_mb, 1);
	assert_ok(PARSE_BS("buffer_mb", " 4096\t", "durability", "memory"));
	assert_int_equal(cfg.buffer_mb, 4096);
	/* The numbers share a table: each lands in its own field. */
	assert_ok(PARSE_BS("buffer_mb", "7", "stats_interval", "8", "flush_timeout_ms", "9",
			   "durability", "memory"));
	assert_int_equal(cfg.buffer_mb, 7);
	assert_int_equal(cfg.stats_interval, 8);
	assert_int_equal(cfg.flush_timeout_ms, 9);
	assert_int_equal(cfg.journal_max_mb, 1024);
	assert_int_equal(cfg.journal_segment_mb, 64);
	assert_ok(PARSE_BS("journal_max_mb", "10", "stats_interval", "11", "journal_segment_mb",
			   "3", "flush_timeout_ms", "12"));
	assert_int_equal(cfg.journal_max_mb, 10);
	assert_int_equal(cfg.journal_segment_mb, 3);
	assert_int_equal(cfg.stats_interval, 11);
	assert_int_equal(cfg.flush_timeout_ms, 12);
	assert_int_equal(cfg.buffer_mb, 64);
}

static void test_create_topics(void **state)
{
	(void)state;
	assert_ok(PARSE_BS("create_topics", "false"));
	assert_false(cfg.create_topics);
	assert_int_equal(cfg.topic_partitions, 6);
	assert_int_equal(cfg.topic_replication_factor, -1);
	assert_ok(PARSE_BS("create_topics", " true\t"));
	assert_true(cfg.create_topics);
	assert_int_equal(cfg.topic_partitions, 6);
	assert_int_equal(cfg.topic_replication_factor, -1);
	assert_ok(PARSE_BS("create_topics", "true", "topic_partitions", "3",
			   "topic_replication_factor", "3"));
	assert_int_equal(cfg.topic_partitions, 3);
	assert_int_equal(cfg.topic_replication_factor, 3);
	/* Order does not matter: the check waits for every option. */
	assert_ok(PARSE_BS("topic_partitions", "1", "topic_replication_factor", "-1",
			   "create_topics", "true"));
	assert_int_equal(cfg.topic_partitions, 1);
	assert_int_equal(cfg.topic_replication_factor, -1);
	assert_ok(PARSE_BS("create_topics", "true", "topic_partitions", "10000",
			   "topic_replication_factor", "32767"));
	assert_int_equal(cfg.topic_partitions, 10000);
	assert_int_equal(cfg.topic_replication_factor, 32767);
	assert_ok(PARSE_BS("create_topics", "true", "topic_replication_factor", "1"));
	assert_int_equal(cfg.topic_replication_factor, 1);
}

static void test_create_topics_errors(void **state)
{
	static const struct {
		const char *key, *value, *expected;
	} cases[] = {
		{"create_topics", "yes", "plugin_opt_create_topics: 'yes' is not true or false"},
		{"create_topics", "1", "plugin_opt_create_topics: '1' is not true or false"},
		{"create_topics", "TRUE", "plugin_opt_create_topics: 'TRUE' is not true or false"},
		{"topic_partitions", "0",
		 "plugin_opt_topic_partitions: '0' is not a number of partitions (1..10000)"},
		{"topic_partitions", "10001",
		 "plugin_opt_topic_partitions: '10001' is not a number of partitions (1..10000)"},
		{"topic_partitions", "-1",
		 "plugin_opt_topic_partitions: '-1' is not a number of partitions (1..10000)"},
		{"topic_partitions", "3x",
		 "plugin_opt_topic_partitions: '3x' is not a number of partitions (1..10000)"},
		{"topic_replication_factor", "0",
		 "plugin_opt_topic_replication_factor: '0' is not a replication factor (-1 for the "
		 "brokers' default, or 1..32767)"},
		{"topic_replication_factor", "-2",
		 "plugin_opt_topic_replication_factor: '-2' is not a replication factor (-1 for "
		 "the brokers' default, or 1..32767)"},
		{"topic_replication_factor", "32768",
		 "plugin_opt_topic_replication_factor: '32768' is not a replication factor (-1 for "
		 "the brokers' default, or 1..32767)"},
		{"topic_replication_factor", "three",
		 "plugin_opt_topic_replication_factor: 'three' is not a replication factor (-1 for "
		 "the brokers' default, or 1..32767)"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (!strcmp(cases[i].key, "create_topics")) {
			assert_fails(PARSE_BS(cases[i].key, cases[i].value), cases[i].expected);
		} else {
			assert_fails(
				PARSE_BS("create_topics", "true", cases[i].key, cases[i].value),
				cases[i].expected);
		}
	}
	assert_fails(PARSE_BS("create_topics", "true", "create_topics", "true"),
		     "plugin_opt_create_topics: given twice");
	assert_fails(
		PARSE_BS("create_topics", "true", "topic_partitions", "3", "topic_partitions", "3"),
		"plugin_opt_topic_partitions: given twice");
	assert_fails(PARSE_BS("create_topics", "true", "topic_replication_factor", "3",
			      "topic_replication_factor", "1"),
		     "plugin_opt_topic_replication_factor: given twice");
	assert_fails(PARSE_BS("create_topics", ""), "plugin_opt_create_topics: empty value");
	/* Without create_topics true, the topic settings would silently do nothing. */
	assert_fails(PARSE_BS("topic_partitions", "3"),
		     "plugin_opt_topic_partitions: only used when the plugin creates topics: add "
		     "plugin_opt_create_topics true, or remove it");
	assert_fails(PARSE_BS("create_topics", "false", "topic_replication_factor", "3"),
		     "plugin_opt_topic_replication_factor: only used when the plugin creates "
		     "topics: add plugin_opt_create_topics true, or remove it");
	assert_fails(PARSE_BS("topic_replication_factor", "-1", "topic_partitions", "2"),
		     "plugin_opt_topic_partitions: only used when the plugin creates topics: add "
		     "plugin_opt_create_topics true, or remove it");
}

/* ---- metrics_listen, metrics_textfile, health_max_unacked_s ---------------------- */

static void test_metrics_options(void **state)
{
	(void)state;
	assert_ok(PARSE("bootstrap_servers", "kafka:9092"));
	assert_null(cfg.metrics_listen);
	assert_null(cfg.metrics_textfile);
	assert_int_equal(cfg.health_max_unacked_s, 30);
	assert_ok(PARSE_BS("metrics_listen", " 127.0.0.1:9883 ", "metrics_textfile",
			   "/var/lib/node/mqk.prom", "health_max_unacked_s", "5"));
	assert_string_equal(cfg.metrics_listen, "127.0.0.1:9883");
	assert_string_equal(cfg.metrics_textfile, "/var/lib/node/mqk.prom");
	assert_int_equal(cfg.health_max_unacked_s, 5);
	assert_ok(PARSE_BS("metrics_listen", "[::1]:0"));
	assert_ok(PARSE_BS("metrics_listen", "localhost:65535"));
}

static void test_metrics_errors(void **state)
{
	static const struct {
		const char *key, *value, *expected;
	} cases[] = {
		{"metrics_listen", "9883",
		 "plugin_opt_metrics_listen: '9883' is not <host>:<port> (e.g. 127.0.0.1:9883, "
		 "[::1]:9883)"},
		{"metrics_listen", ":9883",
		 "plugin_opt_metrics_listen: ':9883' is not <host>:<port> (e.g. 127.0.0.1:9883, "
		 "[::1]:9883)"},
		{"metrics_listen", "host:",
		 "plugin_opt_metrics_listen: 'host:' is not <host>:<port> (e.g. 127.0.0.1:9883, "
		 "[::1]:9883)"},
		{"metrics_listen", "::1:9883",
		 "plugin_opt_metrics_listen: '::1:9883' is not <host>:<port> (an IPv6 address goes "
		 "in brackets: [::1]:9883)"},
		{"metrics_listen", "127.0.0.1:65536",
		 "plugin_opt_metrics_listen: '127.0.0.1:65536': the port '65536' is not a number "
		 "in 0..65535"},
		{"metrics_listen", "127.0.0.1:http",
		 "plugin_opt_metrics_listen: '127.0.0.1:http': the port 'http' is not a number in "
		 "0..65535"},
		{"metrics_listen", "127.0.0.1:-1",
		 "plugin_opt_metrics_listen: '127.0.0.1:-1': the port '-1' is not a number in "
		 "0..65535"},
		{"metrics_textfile", "mqk.prom",
		 "plugin_opt_metrics_textfile: 'mqk.prom' is not an absolute path of a file"},
		{"metrics_textfile", "/var/lib/node/",
		 "plugin_opt_metrics_textfile: '/var/lib/node/' is not an absolute path of a file"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_fails(PARSE_BS(cases[i].key, cases[i].value), cases[i].expected);
	}
	assert_fails(PARSE_BS("metrics_listen", "127.0.0.1:0", "health_max_unacked_s", "0"),
		     "plugin_opt_health_max_unacked_s: '0' is not a number of seconds (1..86400)");
	assert_fails(PARSE_BS("metrics_listen", "127.0.0.1:0", "health_max_unacked_s", "86401"),
		     "plugin_opt_health_max_unacked_s: '86401' is not a number of seconds "
		     "(1..86400)");
	assert_fails(PARSE_BS("health_max_unacked_s", "5"),
		     "plugin_opt_health_max_unacked_s: only used by /healthz: add "
		     "plugin_opt_metrics_listen <host:port>, or remove it");
	assert_fails(PARSE_BS("metrics_listen", "a:1", "metrics_listen", "b:2"),
		     "plugin_opt_metrics_listen: given twice");
}

/* ---- errors ------------------------------------------------------------------------ */

/* ---- durability, overflow and the journal's options ------------------------------ */

static void test_durability_options(void **state)
{
	(void)state;
	/* memory: the ring of buffer_mb; no journal directory. */
	assert_ok(PARSE_BS("durability", "memory"));
	assert_int_equal(cfg.durability, MQK_DURABILITY_MEMORY);
	assert_null(cfg.journal_dir);
	assert_int_equal(cfg.buffer_mb, 64);
	assert_int_equal(cfg.overflow, MQK_OVERFLOW_REJECT);
	/* journal, explicitly: the default directory follows broker_id. */
	assert_ok(PARSE_BS("broker_id", "b-1", "durability", " journal "));
	assert_int_equal(cfg.durability, MQK_DURABILITY_JOURNAL);
	assert_string_equal(cfg.journal_dir, "/var/lib/mosquitto/mosquitto-kafka/b-1");
	assert_ok(PARSE_BS("journal_dir", " /tmp/mqk journal/x/ \t", "broker_id", "b-2"));
	assert_string_equal(cfg.journal_dir, "/tmp/mqk journal/x/");
	assert_ok(PARSE_BS("journal_dir", "/"));
	assert_string_equal(cfg.journal_dir, "/");

	/* journal_fsync: always (0), never (-1), or milliseconds. */
	static const struct {
		const char *value;
		int ms;
	} fsyncs[] = {{"always", 0}, {"never", -1}, {"1", 1}, {"250", 250}, {" 60000\t", 60000}};
	for (size_t i = 0; i < sizeof(fsyncs) / sizeof(fsyncs[0]); i++) {
		assert_ok(PARSE_BS("durability", "journal", "journal_fsync", fsyncs[i].value));
		assert_int_equal(cfg.journal_fsync_ms, fsyncs[i].ms);
	}

	/* overflow, with either durability. */
	static const struct {
		const char *value;
		int overflow;
	} overflows[] = {{"reject", MQK_OVERFLOW_REJECT},
			 {"drop_oldest", MQK_OVERFLOW_DROP_OLDEST},
			 {"drop_new", MQK_OVERFLOW_DROP_NEW}};
	for (size_t i = 0; i < sizeof(overflows) / sizeof(overflows[0]); i++) {
		assert_ok(PARSE_BS("overflow", overflows[i].value));
		assert_int_equal(cfg.overflow, overflows[i].overflow);
		assert_ok(PARSE_BS("durability", "memory", "buffer_mb", "2", "overflow",
				   overflows[i].value));
		assert_int_equal(cfg.overflow, overflows[i].overflow);
		assert_int_equal(cfg.buffer_mb, 2);
	}

	/* Sizes: the segment defaults to 64 MiB, or half of a smaller journal_max_mb. */
	static const struct {
		const char *max, *segment;
		int max_mb, segment_mb;
	} sizes[] = {
		{NULL, NULL, 1024, 64},
		{"2", NULL, 2, 1},
		{"3", NULL, 3, 1},
		{"100", NULL, 100, 50},
		{"128", NULL, 128, 64},
		{"129", NULL, 129, 64},
		{"1048576", NULL, 1048576, 64},
		{"2", "1", 2, 1},
		{"11", "5", 11, 5},
		{"1048576", "1024", 1048576, 1024},
		{NULL, "512", 1024, 512},
		{NULL, "1", 1024, 1},
	};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		if (sizes[i].max && sizes[i].segment) {
			assert_ok(PARSE_BS("journal_max_mb", sizes[i].max, "journal_segment_mb",
					   sizes[i].segment));
		} else if (sizes[i].max) {
			assert_ok(PARSE_BS("journal_max_mb", sizes[i].max));
		} else if (sizes[i].segment) {
			assert_ok(PARSE_BS("journal_segment_mb", sizes[i].segment));
		} else {
			assert_ok(PARSE_BS("durability", "journal"));
		}
		if (cfg.journal_max_mb != sizes[i].max_mb ||
		    cfg.journal_segment_mb != sizes[i].segment_mb) {
			fail_msg(
				"journal_max_mb %s, journal_segment_mb %s: got %d and %d, expected "
				"%d and %d",
				sizes[i].max ? sizes[i].max : "(default)",
				sizes[i].segment ? sizes[i].segment : "(default)",
				cfg.journal_max_mb, cfg.journal_segment_mb, sizes[i].max_mb,
				sizes[i].segment_mb);
		}
	}
}

/* plugin_opt_profile: throughput (the default) or latency; anything else named. */
static void test_profile(void **state)
{
	(void)state;
	assert_ok(PARSE_BS("route_a", "a/# -> a"));
	assert_int_equal(cfg.profile, MQK_PROFILE_THROUGHPUT);
	assert_ok(PARSE_BS("profile", "latency"));
	assert_int_equal(cfg.profile, MQK_PROFILE_LATENCY);
	assert_ok(PARSE_BS("profile", "throughput"));
	assert_int_equal(cfg.profile, MQK_PROFILE_THROUGHPUT);
	/* The profile is the plugin's; a kafka.* line stays as given (it wins: producer.c). */
	assert_ok(PARSE_BS("profile", "latency", "kafka.linger.ms", "3"));
	assert_int_equal(cfg.profile, MQK_PROFILE_LATENCY);
	assert_int_equal(cfg.kafka_prop_count, 1);
	assert_string_equal(cfg.kafka_props[0].value, "3");
	assert_fails(PARSE_BS("profile", "fast"),
		     "plugin_opt_profile: 'fast' is not throughput or latency");
	assert_fails(PARSE_BS("profile", "Latency"),
		     "plugin_opt_profile: 'Latency' is not throughput or latency");
	assert_fails(PARSE_BS("profile", ""), "plugin_opt_profile: empty value");
	assert_int_equal(PARSE_BS("profile", "latency", "profile", "throughput"), -1);
	assert_non_null(strstr(err, "plugin_opt_profile"));
}

static void test_durability_errors(void **state)
{
	static const struct {
		const char *key, *value, *expected;
	} values[] = {
		{"durability", "disk", "plugin_opt_durability: 'disk' is not journal or memory"},
		{"durability", "Journal",
		 "plugin_opt_durability: 'Journal' is not journal or memory"},
		{"durability", "memory journal",
		 "plugin_opt_durability: 'memory journal' is not journal or memory"},
		{"overflow", "drop",
		 "plugin_opt_overflow: 'drop' is not reject, drop_oldest or drop_new"},
		{"overflow", "drop-oldest",
		 "plugin_opt_overflow: 'drop-oldest' is not reject, drop_oldest or drop_new"},
		{"overflow", "block",
		 "plugin_opt_overflow: 'block' is not reject, drop_oldest or drop_new"},
		{"journal_fsync", "soon",
		 "plugin_opt_journal_fsync: 'soon' is not always, never or a number of "
		 "milliseconds (1..60000)"},
		{"journal_fsync", "0",
		 "plugin_opt_journal_fsync: '0' is not always, never or a number of milliseconds "
		 "(1..60000)"},
		{"journal_fsync", "60001",
		 "plugin_opt_journal_fsync: '60001' is not always, never or a number of "
		 "milliseconds (1..60000)"},
		{"journal_fsync", "-1",
		 "plugin_opt_journal_fsync: '-1' is not always, never or a number of milliseconds "
		 "(1..60000)"},
		{"journal_fsync", "100ms",
		 "plugin_opt_journal_fsync: '100ms' is not always, never or a number of "
		 "milliseconds (1..60000)"},
		{"journal_fsync", "1.5",
		 "plugin_opt_journal_fsync: '1.5' is not always, never or a number of "
		 "milliseconds (1..60000)"},
		{"journal_fsync", "99999999999999999999",
		 "plugin_opt_journal_fsync: '99999999999999999999' is not always, never or a "
		 "number of milliseconds (1..60000)"},
		{"journal_dir", "var/lib/j",
		 "plugin_opt_journal_dir: 'var/lib/j' is not an absolute path"},
		{"journal_dir", "./j", "plugin_opt_journal_dir: './j' is not an absolute path"},
		{"journal_dir", "~/j", "plugin_opt_journal_dir: '~/j' is not an absolute path"},
		{"journal_max_mb", "1",
		 "plugin_opt_journal_max_mb: '1' is not a number of MiB (2..1048576)"},
		{"journal_max_mb", "1048577",
		 "plugin_opt_journal_max_mb: '1048577' is not a number of MiB (2..1048576)"},
		{"journal_max_mb", "1G",
		 "plugin_opt_journal_max_mb: '1G' is not a number of MiB (2..1048576)"},
		{"journal_segment_mb", "0",
		 "plugin_opt_journal_segment_mb: '0' is not a number of MiB (1..1024)"},
		{"journal_segment_mb", "1025",
		 "plugin_opt_journal_segment_mb: '1025' is not a number of MiB (1..1024)"},
		{"journal_segment_mb", "-64",
		 "plugin_opt_journal_segment_mb: '-64' is not a number of MiB (1..1024)"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		assert_fails(PARSE_BS(values[i].key, values[i].value), values[i].expected);
		assert_null(strchr(err, '\n'));
	}
	assert_fails(PARSE_BS("durability", ""), "plugin_opt_durability: empty value");
	assert_fails(PARSE_BS("journal_dir", " "), "plugin_opt_journal_dir: empty value");

	/* buffer_mb is memory's: with the journal (the default, or said) it is an error. */
	assert_fails(PARSE_BS("buffer_mb", "64"),
		     "plugin_opt_buffer_mb: only used with durability memory (the journal's size "
		     "is journal_max_mb)");
	assert_fails(PARSE_BS("durability", "journal", "buffer_mb", "8"),
		     "plugin_opt_buffer_mb: only used with durability memory (the journal's size "
		     "is journal_max_mb)");
	/* The journal's options are the journal's: with memory, each is an error. */
	assert_fails(PARSE_BS("durability", "memory", "journal_dir", "/tmp/j"),
		     "plugin_opt_journal_dir: only used with plugin_opt_durability journal");
	assert_fails(PARSE_BS("journal_fsync", "always", "durability", "memory"),
		     "plugin_opt_journal_fsync: only used with plugin_opt_durability journal");
	assert_fails(PARSE_BS("durability", "memory", "journal_max_mb", "100"),
		     "plugin_opt_journal_max_mb: only used with plugin_opt_durability journal");
	assert_fails(PARSE_BS("durability", "memory", "journal_segment_mb", "8"),
		     "plugin_opt_journal_segment_mb: only used with plugin_opt_durability journal");
	/* Two of them: one line, naming one. */
	assert_fails(
		PARSE_BS("durability", "memory", "journal_fsync", "never", "journal_dir", "/tmp/j"),
		"plugin_opt_journal_dir: only used with plugin_opt_durability journal");

	/* Two segments at least. */
	assert_fails(PARSE_BS("journal_max_mb", "10", "journal_segment_mb", "6"),
		     "plugin_opt_journal_segment_mb: 6 is more than half of journal_max_mb (10): "
		     "the journal needs two segments at least");
	assert_fails(PARSE_BS("journal_segment_mb", "3", "journal_max_mb", "5"),
		     "plugin_opt_journal_segment_mb: 3 is more than half of journal_max_mb (5): "
		     "the journal needs two segments at least");
	assert_fails(PARSE_BS("journal_segment_mb", "513"),
		     "plugin_opt_journal_segment_mb: 513 is more than half of journal_max_mb "
		     "(1024): the journal needs two segments at least");
	assert_fails(PARSE_BS("journal_segment_mb", "1024", "journal_max_mb", "2047"),
		     "plugin_opt_journal_segment_mb: 1024 is more than half of journal_max_mb "
		     "(2047): the journal needs two segments at least");
}

static void test_numbers_out_of_range(void **state)
{
	static const struct {
		const char *key, *value, *expected;
	} cases[] = {
		{"stats_interval", "0x",
		 "plugin_opt_stats_interval: '0x' is not a number of seconds (0..86400)"},
		{"stats_interval", "-1",
		 "plugin_opt_stats_interval: '-1' is not a number of seconds (0..86400)"},
		{"stats_interval", "86401",
		 "plugin_opt_stats_interval: '86401' is not a number of seconds (0..86400)"},
		{"stats_interval", "10s",
		 "plugin_opt_stats_interval: '10s' is not a number of seconds (0..86400)"},
		{"stats_interval", "1 0",
		 "plugin_opt_stats_interval: '1 0' is not a number of seconds (0..86400)"},
		{"stats_interval", "99999999999999999999",
		 "plugin_opt_stats_interval: '99999999999999999999' is not a number of seconds "
		 "(0..86400)"},
		{"flush_timeout_ms", "0x",
		 "plugin_opt_flush_timeout_ms: '0x' is not a number of milliseconds (0..600000)"},
		{"flush_timeout_ms", "600001",
		 "plugin_opt_flush_timeout_ms: '600001' is not a number of milliseconds "
		 "(0..600000)"},
		{"flush_timeout_ms", "-5",
		 "plugin_opt_flush_timeout_ms: '-5' is not a number of milliseconds (0..600000)"},
		{"flush_timeout_ms", "1.5",
		 "plugin_opt_flush_timeout_ms: '1.5' is not a number of milliseconds (0..600000)"},
		{"buffer_mb", "0", "plugin_opt_buffer_mb: '0' is not a number of MiB (1..4096)"},
		{"buffer_mb", "4097",
		 "plugin_opt_buffer_mb: '4097' is not a number of MiB (1..4096)"},
		{"buffer_mb", "-1", "plugin_opt_buffer_mb: '-1' is not a number of MiB (1..4096)"},
		{"buffer_mb", "64M",
		 "plugin_opt_buffer_mb: '64M' is not a number of MiB (1..4096)"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_fails(PARSE_BS(cases[i].key, cases[i].value), cases[i].expected);
	}
}

static void test_empty_values(void **state)
{
	(void)state;
	assert_fails(PARSE_BS("exclude", ""), "plugin_opt_exclude: empty value");
	assert_fails(PARSE_BS("route_r", " \t  "), "plugin_opt_route_r: empty value");
	assert_fails(PARSE_BS("kafka.linger.ms", NULL), "plugin_opt_kafka.linger.ms: empty value");
	assert_fails(PARSE("bootstrap_servers", "  "), "plugin_opt_bootstrap_servers: empty value");
	assert_fails(PARSE_BS("stats_interval", "\t"), "plugin_opt_stats_interval: empty value");
}

/* The list of the "unknown option" message: options.c's table, in README's order. */
#define KNOWN_OPTIONS                                                                              \
	"bootstrap_servers, broker_id, route_<name>, exclude, routes_file, kafka.<property>, "     \
	"kafka_config_file, profile, stats_interval, flush_timeout_ms, durability, journal_dir, "           \
	"journal_fsync, journal_max_mb, journal_segment_mb, buffer_mb, overflow, create_topics, "  \
	"topic_partitions, topic_replication_factor, metrics_listen, metrics_textfile, "           \
	"health_max_unacked_s, inbound_<name>, inbound_group, inbound_wake, "                      \
	"inbound_kafka.<property>, commands_topic, commands_mode, "                                \
	"commands_group, commands_target, commands_mqtt_topic, commands_qos, commands_expiry, "    \
	"commands_return_topic, commands_dead_letter_topic, commands_max_hops, "                \
	"commands_topic_broker, presence_topic, "   \
	"commands_wake, commands_kafka.<property>"

static void test_unknown_option(void **state)
{
	(void)state;
	assert_fails(PARSE_BS("bootstrap_server", "k:9092"),
		     "plugin_opt_bootstrap_server: unknown option, did you mean "
		     "plugin_opt_bootstrap_servers? (known: " KNOWN_OPTIONS ")");
	assert_fails(PARSE_BS("route", "a -> t"),
		     "plugin_opt_route: unknown option, did you mean plugin_opt_route_<name>? "
		     "(known: " KNOWN_OPTIONS ")");
	assert_fails(PARSE_BS("kafka", "x"),
		     "plugin_opt_kafka: unknown option, did you mean plugin_opt_kafka.<property>? "
		     "(known: " KNOWN_OPTIONS ")");
	/* Near misses of the journal's options are not taken for them, nor suggested when
	   more than 2 letters away. */
	assert_fails(PARSE_BS("journal", "/tmp/j"),
		     "plugin_opt_journal: unknown option (known: " KNOWN_OPTIONS ")");
	assert_fails(PARSE_BS("journal_size_mb", "10"),
		     "plugin_opt_journal_size_mb: unknown option (known: " KNOWN_OPTIONS ")");
	assert_fails(PARSE_BS("colour", "blue"),
		     "plugin_opt_colour: unknown option (known: " KNOWN_OPTIONS ")");
	/* Options are case-sensitive; the suggestion is not. */
	assert_fails(PARSE_BS("Durability", "memory"),
		     "plugin_opt_Durability: unknown option, did you mean plugin_opt_durability? "
		     "(known: " KNOWN_OPTIONS ")");
	assert_fails(PARSE_BS("journal_max_mib", "10"),
		     "plugin_opt_journal_max_mib: unknown option, did you mean "
		     "plugin_opt_journal_max_mb? (known: " KNOWN_OPTIONS ")");
	assert_fails(PARSE_BS("kafka_config_fil", "/k"),
		     "plugin_opt_kafka_config_fil: unknown option, did you mean "
		     "plugin_opt_kafka_config_file? (known: " KNOWN_OPTIONS ")");
	/* A prefix option with another separator: the property kept. */
	assert_fails(PARSE_BS("kafka_linger.ms", "5"),
		     "plugin_opt_kafka_linger.ms: unknown option, did you mean "
		     "plugin_opt_kafka.linger.ms? (known: " KNOWN_OPTIONS ")");
	assert_fails(PARSE_BS("commands_kafka_fetch.wait.max.ms", "5"),
		     "plugin_opt_commands_kafka_fetch.wait.max.ms: unknown option, did you mean "
		     "plugin_opt_commands_kafka.fetch.wait.max.ms? (known: " KNOWN_OPTIONS ")");
	assert_fails(PARSE_BS("route-x", "a -> t"),
		     "plugin_opt_route-x: unknown option, did you mean plugin_opt_route_x? "
		     "(known: " KNOWN_OPTIONS ")");
	/* A name far longer than any option. */
	char key[300];
	memset(key, 'k', sizeof(key) - 1);
	key[sizeof(key) - 1] = '\0';
	assert_int_equal(PARSE_BS(key, "v"), -1);
	assert_non_null(strstr(err, ": unknown option (known: bootstrap_servers, "));
}

/* options__doc: README's columns as the table gives them (ctest options_doc compares). */
static const struct mqk_option_doc *doc_of(const char *name)
{
	static struct mqk_option_doc doc;

	for (size_t i = 0; options__doc(i, &doc); i++) {
		if (!strcmp(doc.name, name)) {
			return &doc;
		}
	}
	fail_msg("option %s not in the table", name);
	return NULL;
}

static void test_option_docs(void **state)
{
	const struct mqk_option_doc *d;
	struct mqk_option_doc doc;
	size_t n = 0;

	(void)state;
	while (options__doc(n, &doc)) {
		n++;
	}
	assert_true(n >= 31); /* 31 before metrics_* and routes_file */
	assert_true(options__doc(0, &doc));
	assert_string_equal(doc.name, "bootstrap_servers");
	assert_string_equal(doc.dflt, "required");
	/* A number: its range and default from what the parser uses. */
	d = doc_of("flush_timeout_ms");
	assert_string_equal(d->value, "0..600000");
	assert_string_equal(d->dflt, "10000");
	assert_true(d->number && d->min == 0 && d->max == 600000);
	d = doc_of("topic_replication_factor");
	assert_string_equal(d->dflt, "-1");
	assert_true(d->min == 1 && d->max == 32767); /* -1, or 1..32767 */
	/* Choices: a|b, the default by name. */
	d = doc_of("durability");
	assert_string_equal(d->value, "journal|memory");
	assert_string_equal(d->dflt, "journal");
	assert_false(d->number);
	d = doc_of("overflow");
	assert_string_equal(d->value, "reject|drop_oldest|drop_new");
	d = doc_of("create_topics");
	assert_string_equal(d->value, "true|false");
	assert_string_equal(d->dflt, "false");
	/* Prefixes, repeatable options, the Commands table. */
	d = doc_of("route_<name>");
	assert_true(d->repeat);
	assert_string_equal(d->table, "Configuration");
	d = doc_of("commands_kafka.<property>");
	assert_true(d->repeat);
	assert_string_equal(d->table, "Commands");
	d = doc_of("commands_group");
	assert_string_equal(d->dflt,
			    "mosquitto-kafka-commands-{broker}; redistribute: mosquitto-kafka-commands");
	assert_false(d->repeat);
	assert_false(options__doc(n, &doc));
}

static void test_duplicates(void **state)
{
	(void)state;
	assert_fails(PARSE("bootstrap_servers", "a:1", "bootstrap_servers", "b:2"),
		     "plugin_opt_bootstrap_servers: given twice ('a:1' and 'b:2')");
	assert_fails(PARSE_BS("broker_id", "x", "broker_id", "y"),
		     "plugin_opt_broker_id: given twice ('x' and 'y')");
	assert_fails(PARSE_BS("stats_interval", "5", "stats_interval", "5"),
		     "plugin_opt_stats_interval: given twice");
	assert_fails(PARSE_BS("flush_timeout_ms", "5", "flush_timeout_ms", "6"),
		     "plugin_opt_flush_timeout_ms: given twice");
	assert_fails(PARSE_BS("buffer_mb", "5", "buffer_mb", "5"),
		     "plugin_opt_buffer_mb: given twice");
	assert_fails(PARSE_BS("durability", "journal", "durability", "journal"),
		     "plugin_opt_durability: given twice");
	assert_fails(PARSE_BS("overflow", "reject", "overflow", "drop_new"),
		     "plugin_opt_overflow: given twice");
	assert_fails(PARSE_BS("journal_dir", "/a", "journal_dir", "/b"),
		     "plugin_opt_journal_dir: given twice ('/a' and '/b')");
	assert_fails(PARSE_BS("journal_fsync", "always", "journal_fsync", "never"),
		     "plugin_opt_journal_fsync: given twice");
	assert_fails(PARSE_BS("journal_max_mb", "10", "journal_max_mb", "10"),
		     "plugin_opt_journal_max_mb: given twice");
	assert_fails(PARSE_BS("journal_segment_mb", "1", "journal_segment_mb", "2"),
		     "plugin_opt_journal_segment_mb: given twice");
	assert_fails(PARSE_BS("kafka.linger.ms", "5", "kafka.linger.ms", "10"),
		     "plugin_opt_kafka.linger.ms: given twice ('5' and '10')");
	assert_fails(PARSE_BS("route_r", "a -> t", "route_r", "b -> u"),
		     "plugin_opt_route_r: route 'r' is defined twice");
}

static void test_route_name_invalid(void **state)
{
	(void)state;
	assert_fails(PARSE_BS("route_", "a -> t"),
		     "plugin_opt_route_: a route needs a name of 1..64 characters [A-Za-z0-9_-] "
		     "after route_, e.g. plugin_opt_route_sensors");
	assert_fails(PARSE_BS("route_a.b", "a -> t"),
		     "plugin_opt_route_a.b: a route needs a name of 1..64 characters "
		     "[A-Za-z0-9_-] after route_, e.g. plugin_opt_route_sensors");
}

static void test_route_missing_arrow(void **state)
{
	(void)state;
	assert_fails(PARSE_BS("route_r", "a/b"),
		     "plugin_opt_route_r: 'a/b' is not '<mqtt-filter> -> <kafka-topic> "
		     "[key=<key>] [format=raw|json] [clientid=<glob>] [username=<glob>] "
		     "[qos=0|1|2] [retain=true|false]'");
	assert_fails(PARSE_BS("route_r", "a/b->t"),
		     "plugin_opt_route_r: 'a/b->t' is not '<mqtt-filter> -> <kafka-topic> "
		     "[key=<key>] [format=raw|json] [clientid=<glob>] [username=<glob>] "
		     "[qos=0|1|2] [retain=true|false]'");
	assert_fails(PARSE_BS("route_r", "a/b ->"),
		     "plugin_opt_route_r: 'a/b ->' is not '<mqtt-filter> -> <kafka-topic> "
		     "[key=<key>] [format=raw|json] [clientid=<glob>] [username=<glob>] "
		     "[qos=0|1|2] [retain=true|false]'");
	/* An arrow with nothing before it: the filter is what is missing. */
	assert_fails(PARSE_BS("route_r", "-> t"),
		     "plugin_opt_route_r: '' is not a valid MQTT topic filter");
}

static void test_route_bad_filter(void **state)
{
	(void)state;
	assert_fails(PARSE_BS("route_x", "a/#/b -> t"),
		     "plugin_opt_route_x: 'a/#/b' is not a valid MQTT topic filter");
	assert_fails(PARSE_BS("route_x", "a/b+ -> t"),
		     "plugin_opt_route_x: 'a/b+' is not a valid MQTT topic filter");
	assert_fails(PARSE_BS("route_x", "a/\xff -> t"),
		     "plugin_opt_route_x: 'a/\xff' is not a valid MQTT topic filter");
}

static void test_route_sys_control(void **state)
{
	(void)state;
	assert_fails(PARSE_BS("route_x", "$SYS/# -> t"),
		     "plugin_opt_route_x: '$SYS/#': $SYS and $CONTROL topics are never forwarded");
	assert_fails(PARSE_BS("route_x", "$SYS -> t"),
		     "plugin_opt_route_x: '$SYS': $SYS and $CONTROL topics are never forwarded");
	assert_fails(PARSE_BS("route_x", "$CONTROL/dynamic-security/# -> t"),
		     "plugin_opt_route_x: '$CONTROL/dynamic-security/#': $SYS and $CONTROL "
		     "topics are never forwarded");
}

/*
 * Only the $SYS and $CONTROL levels are reserved (route.c's rule, README.md:
 * "Filters on $SYS/... and $CONTROL/... are refused"): a topic tree such as
 * "$SYSTEM/..." is an ordinary '$' topic that a route may name explicitly.
 */
static void test_route_dollar_topic_not_reserved(void **state)
{
	(void)state;
	assert_ok(PARSE_BS("route_x", "$SYSTEM/# -> t"));
	assert_string_equal(cfg.routes[0].filter, "$SYSTEM/#");
	assert_ok(PARSE_BS("route_x", "$CONTROLLER/+ -> t"));
	assert_ok(PARSE_BS("route_x", "$share-like/+ -> t"));
}

static void test_route_bad_kafka_topic(void **state)
{
	char topic250[251], value[300];

	(void)state;
	/* The topic ends at white space: "topic!" is taken for an attribute. */
	assert_fails(PARSE_BS("route_x", "a -> bad topic!"),
		     "plugin_opt_route_x: unknown route attribute 'topic!' (use key=<key>, "
		     "format=raw|json, and the "
		     "selectors clientid=<glob>, username=<glob>, qos=0|1|2, retain=true|false)");
	assert_fails(PARSE_BS("route_x", "a -> bad!"),
		     "plugin_opt_route_x: 'bad!' is not a valid Kafka topic name: '!' is not "
		     "allowed (use [A-Za-z0-9._-] and placeholders)");
	assert_fails(PARSE_BS("route_x", "a/+ -> t/{1}"),
		     "plugin_opt_route_x: 't/{1}' is not a valid Kafka topic name: '/' is not "
		     "allowed (use [A-Za-z0-9._-] and placeholders)");
	assert_fails(PARSE_BS("route_x", "a -> ."),
		     "plugin_opt_route_x: '.' is not a valid Kafka topic name (1..249 bytes, not "
		     "'.' or '..')");
	assert_fails(PARSE_BS("route_x", "a -> .."),
		     "plugin_opt_route_x: '..' is not a valid Kafka topic name (1..249 bytes, not "
		     "'.' or '..')");
	memset(topic250, 't', 250);
	topic250[249] = '\0';
	snprintf(value, sizeof(value), "a -> %s", topic250);
	assert_ok(PARSE_BS("route_x", value));
	assert_int_equal(strlen(cfg.routes[0].topic.source), 249);
}

/* The message for a name that is too long is whole: it names the problem. */
static void test_route_long_kafka_topic_message(void **state)
{
	char topic250[251], value[300], expected[600];

	(void)state;
	memset(topic250, 't', 250);
	topic250[250] = '\0';
	snprintf(value, sizeof(value), "a -> %s", topic250);
	snprintf(expected, sizeof(expected),
		 "plugin_opt_route_x: '%s' is not a valid Kafka topic name (1..249 bytes, not "
		 "'.' or '..')",
		 topic250);
	assert_fails(PARSE_BS("route_x", value), expected);
}

/* The same for a key template: "key: " and the whole reason. */
static void test_route_long_key_message(void **state)
{
	char key[300], value[400], expected[800];

	(void)state;
	memset(key, 'k', 240);
	strcpy(key + 240, "{nope}");
	snprintf(value, sizeof(value), "a -> t key=%s", key);
	snprintf(expected, sizeof(expected),
		 "plugin_opt_route_x: key: unknown placeholder '{nope}' in '%s' (use {1}, {2}, ... "
		 "for the filter's wildcards, "
		 "{clientid}, {username}, {topic} or {broker})",
		 key);
	assert_fails(PARSE_BS("route_x", value), expected);
}

/*
 * Nothing but white space before the arrow: an empty filter (trimming removes spaces
 * and tabs; the white space around the arrow is any isspace()). MQTT-4.7.3-1: a topic
 * filter is at least one character long.
 */
static void test_route_empty_filter(void **state)
{
	(void)state;
	assert_fails(PARSE_BS("route_x", "\v -> t"),
		     "plugin_opt_route_x: '' is not a valid MQTT topic filter");
}

static void test_route_bad_placeholders(void **state)
{
	(void)state;
	assert_fails(PARSE_BS("route_x", "a/+ -> t-{3}"),
		     "plugin_opt_route_x: '{3}' in 't-{3}': the filter has 1 wildcard");
	assert_fails(PARSE_BS("route_x", "a/+/# -> t-{3}"),
		     "plugin_opt_route_x: '{3}' in 't-{3}': the filter has 2 wildcards");
	assert_fails(PARSE_BS("route_x", "a -> t-{1}"),
		     "plugin_opt_route_x: '{1}' in 't-{1}': the filter has 0 wildcards");
	assert_fails(PARSE_BS("route_x", "a/+ -> t-{0}"),
		     "plugin_opt_route_x: '{0}' in 't-{0}': the filter has 1 wildcard");
	assert_fails(PARSE_BS("route_x", "a/+ -> t-{foo}"),
		     "plugin_opt_route_x: unknown placeholder '{foo}' in 't-{foo}' (use "
		     "{1}, {2}, ... for the filter's wildcards, {clientid}, {username}, {topic} or "
		     "{broker})");
	assert_fails(PARSE_BS("route_x", "a/+ -> t-{}"),
		     "plugin_opt_route_x: unknown placeholder '{}' in 't-{}' (use {1}, {2}, ... "
		     "for the filter's wildcards, "
		     "{clientid}, {username}, {topic} or {broker})");
	assert_fails(PARSE_BS("route_x", "a/+ -> t-{1"),
		     "plugin_opt_route_x: unclosed '{' in 't-{1'");
	assert_fails(PARSE_BS("route_x", "a/+ -> t-}"),
		     "plugin_opt_route_x: unmatched '}' in 't-}'");
}

static void test_route_bad_key(void **state)
{
	(void)state;
	assert_fails(PARSE_BS("route_x", "a/+ -> t key=device"),
		     "plugin_opt_route_x: unknown key 'device' (use clientid, username, topic, "
		     "broker, none or a template such as {1})");
	assert_fails(PARSE_BS("route_x", "a/+ -> t key="),
		     "plugin_opt_route_x: unknown key '' (use clientid, username, topic, broker, "
		     "none or a template such as {1})");
	assert_fails(PARSE_BS("route_x", "a/+ -> t key={2}"),
		     "plugin_opt_route_x: key: '{2}' in '{2}': the filter has 1 wildcard");
	assert_fails(PARSE_BS("route_x", "a/+ -> t key={client}"),
		     "plugin_opt_route_x: key: unknown placeholder '{client}' in '{client}' (use "
		     "{1}, {2}, ... for the filter's wildcards, {clientid}, {username}, {topic} or "
		     "{broker})");
	assert_fails(PARSE_BS("route_x", "a/+ -> t key=x{1"),
		     "plugin_opt_route_x: key: unclosed '{' in 'x{1'");
}

static void test_route_bad_attributes(void **state)
{
	(void)state;
	assert_fails(PARSE_BS("route_x", "a -> t format=xml"),
		     "plugin_opt_route_x: unknown format 'xml' (use raw or json)");
	assert_fails(PARSE_BS("route_x", "a -> t format="),
		     "plugin_opt_route_x: unknown format '' (use raw or json)");
	assert_fails(PARSE_BS("route_x", "a -> t partition=1"),
		     "plugin_opt_route_x: unknown route attribute 'partition=1' (use key=<key>, "
		     "format=raw|json, and the selectors clientid=<glob>, username=<glob>, "
		     "qos=0|1|2, retain=true|false)");
	assert_fails(PARSE_BS("route_x", "a -> t key=topic key=clientid"),
		     "plugin_opt_route_x: 'key=clientid' given twice");
	assert_fails(PARSE_BS("route_x", "a -> t format=raw format=json"),
		     "plugin_opt_route_x: 'format=json' given twice");
}

static void test_exclude_bad_filter(void **state)
{
	(void)state;
	assert_fails(PARSE_BS("exclude", "a/#/b"),
		     "plugin_opt_exclude: 'a/#/b' is not a valid MQTT topic filter");
	assert_fails(PARSE_BS("exclude", "a/+x"),
		     "plugin_opt_exclude: 'a/+x' is not a valid MQTT topic filter");
	assert_fails(PARSE_BS("exclude", "a\xc0\xaf"),
		     "plugin_opt_exclude: 'a\xc0\xaf' is not a valid MQTT topic filter");
}

static void test_kafka_prop_errors(void **state)
{
	(void)state;
	assert_fails(PARSE_BS("kafka.", "x"),
		     "plugin_opt_kafka.: a librdkafka property name must follow 'kafka.', e.g. "
		     "plugin_opt_kafka.compression.type");
	assert_fails(PARSE_BS("kafka.bootstrap.servers", "k:1"),
		     "plugin_opt_kafka.bootstrap.servers: 'bootstrap.servers' is set by the "
		     "plugin and cannot be changed (use plugin_opt_bootstrap_servers)");
	assert_fails(PARSE_BS("kafka.log.queue", "false"),
		     "plugin_opt_kafka.log.queue: 'log.queue' is set by the plugin and cannot be "
		     "changed");
	assert_fails(PARSE_BS("kafka.enabled_events", "0"),
		     "plugin_opt_kafka.enabled_events: 'enabled_events' is set by the plugin and "
		     "cannot be changed");
}

/* Whatever fails, the half-filled config frees cleanly and a new parse starts afresh. */
static void test_error_then_reparse(void **state)
{
	(void)state;
	assert_int_equal(PARSE_BS("route_a", "a -> t", "exclude", "x", "kafka.a", "1", "route_b",
				  "b -> {9}"),
			 -1);
	assert_ok(PARSE_BS("route_c", "c -> t"));
	assert_int_equal(cfg.route_count, 1);
	assert_int_equal(cfg.exclude_count, 0);
	assert_int_equal(cfg.kafka_prop_count, 0);
}

/* errstr is always NUL-terminated, even when too small for the message. */
static void test_small_errstr(void **state)
{
	struct mosquitto_opt opt = {.key = (char *)"nope", .value = (char *)"1"};
	char small[16];

	(void)state;
	memset(small, 'x', sizeof(small));
	assert_int_equal(options__parse(&cfg, &opt, 1, small, sizeof(small)), -1);
	assert_string_equal(small, "plugin_opt_nope");
}

static void test_commands_off_by_default(void **state)
{
	(void)state;
	assert_ok(PARSE_BS("broker_id", "b1"));
	assert_int_equal(cfg.commands.mode, MQK_CMD_OFF);
	assert_null(cfg.commands.topic);
}

static void test_commands_broadcast_defaults(void **state)
{
	const struct mqk_cmd_config *cc = &cfg.commands;

	(void)state;
	assert_ok(PARSE_BS("broker_id", "b1", "commands_topic", "mqtt-commands"));
	assert_int_equal(cc->mode, MQK_CMD_BROADCAST);
	assert_string_equal(cc->topic, "mqtt-commands");
	assert_string_equal(cc->group, "mosquitto-kafka-commands-b1");
	assert_null(cc->target_header);
	assert_string_equal(cc->mqtt_topic.source, "devices/{clientid}/commands");
	assert_int_equal(cc->qos, 1);
	assert_int_equal(cc->expiry, 0);
	assert_string_equal(cc->wake, "auto");
	assert_null(cc->presence_topic);
	assert_null(cc->return_topic);
	assert_null(cc->dead_letter_topic);
}

static void test_commands_targeted(void **state)
{
	const struct mqk_cmd_config *cc = &cfg.commands;

	(void)state;
	assert_ok(PARSE_BS("broker_id", "b-2", "commands_topic", "cmd.{broker}", "commands_mode",
			   "targeted", "commands_target", "header:device", "commands_mqtt_topic",
			   "c/{broker}/{clientid}", "commands_qos", "2", "commands_expiry", "60",
			   "commands_max_hops", "3", "commands_group", "g-{broker}",
			   "commands_kafka.fetch.wait.max.ms", "10", "commands_wake",
			   "127.0.0.1:1883"));
	assert_int_equal(cc->mode, MQK_CMD_TARGETED);
	assert_string_equal(cc->topic, "cmd.b-2");
	assert_string_equal(cc->group, "g-b-2");
	assert_string_equal(cc->target_header, "device");
	assert_string_equal(cc->mqtt_topic.source, "c/{broker}/{clientid}");
	assert_int_equal(cc->qos, 2);
	assert_int_equal(cc->expiry, 60);
	assert_int_equal(cc->max_hops, 3);
	assert_string_equal(cc->return_topic, "mqtt-commands");
	assert_string_equal(cc->dead_letter_topic, "mqtt-commands.dead");
	assert_string_equal(cc->presence_topic, "mqtt-presence");
	assert_int_equal(cc->kafka_prop_count, 1);
	assert_string_equal(cc->kafka_props[0].name, "fetch.wait.max.ms");
	assert_string_equal(cc->wake, "127.0.0.1:1883");
	/* Redistribute: one shared group, a back-channel and a group of each broker's own. */
	assert_ok(PARSE_BS("broker_id", "b-3", "commands_topic", "cmd", "commands_mode",
			   "redistribute"));
	assert_int_equal(cc->mode, MQK_CMD_REDISTRIBUTE);
	assert_string_equal(cc->topic, "cmd");
	assert_string_equal(cc->group, "mosquitto-kafka-commands");
	assert_string_equal(cc->broker_topic, "mqtt-commands.{broker}");
	assert_string_equal(cc->own_topic, "mqtt-commands.b-3");
	assert_string_equal(cc->own_group, "mosquitto-kafka-commands-b-3");
	assert_string_equal(cc->presence_topic, "mqtt-presence");
	assert_string_equal(cc->dead_letter_topic, "mqtt-commands.dead");
	assert_int_equal(cc->max_hops, 5);
	assert_ok(PARSE_BS("broker_id", "b-3", "commands_topic", "cmd", "commands_mode",
			   "redistribute", "commands_group", "g", "commands_topic_broker",
			   "cmd.to.{broker}", "commands_max_hops", "2"));
	assert_string_equal(cc->own_topic, "cmd.to.b-3");
	assert_string_equal(cc->own_group, "g-b-3");
	assert_int_equal(cc->max_hops, 2);
	/* commands_target key is the default, given explicitly. */
	assert_ok(PARSE_BS("commands_topic", "c", "commands_target", "key"));
	assert_null(cfg.commands.target_header);
}

/*
 * finish_commands' steps, in the order their errors are reported: the mode's topic rule,
 * commands_topic, the group, then the return, dead-letter and presence topics, each
 * {broker}-expanded and checked as a Kafka topic name.
 */
static void test_commands_side_topics(void **state)
{
	const struct mqk_cmd_config *cc = &cfg.commands;

	(void)state;
	/* targeted: the return topic is checked before the dead-letter topic. */
	assert_fails(PARSE_BS("broker_id", "b", "commands_topic", "c.{broker}", "commands_mode",
			      "targeted", "commands_return_topic", "bad r",
			      "commands_dead_letter_topic", "bad d"),
		     "plugin_opt_commands_return_topic: 'bad r' is not a legal Kafka topic name "
		     "(1..249 of [A-Za-z0-9._-]; {broker} is the broker_id)");
	assert_fails(PARSE_BS("broker_id", "b", "commands_topic", "c.{broker}", "commands_mode",
			      "targeted", "commands_dead_letter_topic", "bad d",
			      "presence_topic", "bad p"),
		     "plugin_opt_commands_dead_letter_topic: 'bad d' is not a legal Kafka topic "
		     "name (1..249 of [A-Za-z0-9._-]; {broker} is the broker_id)");
	assert_fails(PARSE_BS("broker_id", "b", "commands_topic", "c.{broker}", "commands_mode",
			      "targeted", "presence_topic", "p {broker}"),
		     "plugin_opt_presence_topic: 'p b' is not a legal Kafka topic name (1..249 of "
		     "[A-Za-z0-9._-]; {broker} is the broker_id)");
	/* The mode's topic rule comes before commands_topic's own check. */
	assert_fails(PARSE_BS("commands_topic", "bad topic", "commands_mode", "targeted"),
		     "plugin_opt_commands_topic: 'bad topic': in targeted mode each broker reads "
		     "its own topic: put {broker} in it, e.g. mqtt-commands.{broker}");
	/* redistribute: the back-channel before the dead-letter topic. */
	assert_fails(PARSE_BS("broker_id", "b", "commands_topic", "c", "commands_mode",
			      "redistribute", "commands_topic_broker", "x {broker}",
			      "commands_dead_letter_topic", "bad d"),
		     "plugin_opt_commands_topic_broker: 'x b' is not a legal Kafka topic name "
		     "(1..249 of [A-Za-z0-9._-]; {broker} is the broker_id)");
	assert_fails(PARSE_BS("broker_id", "b", "commands_topic", "c", "commands_mode",
			      "redistribute", "commands_dead_letter_topic", "d!"),
		     "plugin_opt_commands_dead_letter_topic: 'd!' is not a legal Kafka topic name "
		     "(1..249 of [A-Za-z0-9._-]; {broker} is the broker_id)");
	assert_ok(PARSE_BS("broker_id", "b", "commands_topic", "c", "commands_mode",
			   "redistribute", "commands_dead_letter_topic", "dead.{broker}",
			   "presence_topic", "p.{broker}"));
	assert_string_equal(cc->dead_letter_topic, "dead.b");
	assert_string_equal(cc->presence_topic, "p.b");
	assert_null(cc->return_topic);
	/* broadcast: a presence topic only when given, expanded and checked. */
	assert_ok(PARSE_BS("broker_id", "b", "commands_topic", "c.{broker}", "presence_topic",
			   "p.{broker}", "commands_group", "g.{broker}"));
	assert_string_equal(cc->topic, "c.b");
	assert_string_equal(cc->presence_topic, "p.b");
	assert_string_equal(cc->group, "g.b");
	assert_null(cc->dead_letter_topic);
	assert_fails(PARSE_BS("broker_id", "b", "commands_topic", "c", "presence_topic", "p q"),
		     "plugin_opt_presence_topic: 'p q' is not a legal Kafka topic name (1..249 of "
		     "[A-Za-z0-9._-]; {broker} is the broker_id)");
}

/* A routes_file line is a route_<name> or an exclude, found through the option table. */
static void test_route_line_kinds(void **state)
{
	(void)state;
	assert_int_equal(options__parse_route_line(&cfg, "kafka.acks all", err, sizeof(err)), -1);
	assert_string_equal(err, "kafka.acks: not a route_<name> or exclude line");
	assert_int_equal(options__parse_route_line(&cfg, "routes_file /x", err, sizeof(err)), -1);
	assert_string_equal(err, "routes_file: not a route_<name> or exclude line");
	assert_int_equal(options__parse_route_line(&cfg, "inbound_x t -> a", err, sizeof(err)),
			 -1);
	assert_string_equal(err, "inbound_x: not a route_<name> or exclude line");
	assert_int_equal(options__parse_route_line(&cfg, "excludes a/#", err, sizeof(err)), -1);
	assert_string_equal(err, "excludes: not a route_<name> or exclude line");
	assert_int_equal(options__parse_route_line(&cfg, "route_ a -> b", err, sizeof(err)), -1);
	assert_string_equal(err, "route_: a route needs a name of 1..64 characters [A-Za-z0-9_-] "
				 "after route_, e.g. plugin_opt_route_sensors");
	assert_int_equal(options__parse_route_line(&cfg, "route_r a/# -> b", err, sizeof(err)), 0);
	assert_int_equal(options__parse_route_line(&cfg, "exclude a/x", err, sizeof(err)), 0);
	assert_int_equal(cfg.route_count, 1);
	assert_int_equal(cfg.exclude_count, 1);
}

static void test_commands_errors(void **state)
{
	(void)state;
	assert_fails(
		PARSE_BS("commands_mode", "broadcast"),
		"plugin_opt_commands_mode: only used with plugin_opt_commands_topic (the Kafka "
		"topic of commands for devices): add it, or remove this option");
	assert_fails(PARSE_BS("presence_topic", "p"),
		     "plugin_opt_presence_topic: only used with plugin_opt_commands_topic (the "
		     "Kafka topic of commands for devices): add it, or remove this option");
	assert_fails(PARSE_BS("commands_topic", "c", "commands_mode", "sideways"),
		     "plugin_opt_commands_mode: 'sideways' is not broadcast, targeted or redistribute");
	/* Redistribute mode (docs/commands.md). */
	assert_fails(PARSE_BS("commands_topic", "c.{broker}", "commands_mode", "redistribute"),
		     "plugin_opt_commands_topic: 'c.{broker}': in redistribute mode the brokers "
		     "share one topic and group: leave {broker} out of it (each broker's own topic "
		     "is commands_topic_broker)");
	assert_fails(PARSE_BS("commands_topic", "c", "commands_mode", "redistribute",
			      "commands_group", "g-{broker}"),
		     "plugin_opt_commands_group: 'g-{broker}': in redistribute mode the brokers "
		     "share one group: leave {broker} out of it (each broker's own group is "
		     "<commands_group>-<broker_id>)");
	assert_fails(PARSE_BS("commands_topic", "c", "commands_mode", "redistribute",
			      "commands_topic_broker", "c.all"),
		     "plugin_opt_commands_topic_broker: 'c.all': each broker needs a topic of its "
		     "own: put {broker} in it, e.g. mqtt-commands.{broker}");
	assert_fails(PARSE_BS("commands_topic", "c", "commands_topic_broker", "c.{broker}"),
		     "plugin_opt_commands_topic_broker: only used with plugin_opt_commands_mode "
		     "redistribute");
	assert_fails(PARSE_BS("commands_topic", "c", "commands_mode", "targeted",
			      "commands_topic_broker", "c.{broker}"),
		     "plugin_opt_commands_topic_broker: only used with plugin_opt_commands_mode "
		     "redistribute");
	assert_fails(PARSE_BS("commands_topic", "c", "commands_max_hops", "3"),
		     "plugin_opt_commands_max_hops: only used with plugin_opt_commands_mode "
		     "targeted or redistribute");
	assert_fails(PARSE_BS("commands_topic", "c", "commands_mode", "redistribute",
			      "commands_return_topic", "r"),
		     "plugin_opt_commands_return_topic: only used with plugin_opt_commands_mode "
		     "targeted");
	assert_fails(PARSE_BS("broker_id", "b", "commands_topic", "c.b", "commands_mode",
			      "redistribute", "commands_topic_broker", "c.{broker}"),
		     "plugin_opt_commands_topic_broker: 'c.b' is commands_topic itself: a broker's "
		     "own topic must be another");
	assert_fails(PARSE_BS("broker_id", "b-1", "commands_topic", "c", "commands_mode",
			      "redistribute", "commands_topic_broker", "bad {broker}"),
		     "plugin_opt_commands_topic_broker: 'bad b-1' is not a legal Kafka topic name "
		     "(1..249 of [A-Za-z0-9._-]; {broker} is the broker_id)");
	assert_fails(PARSE_BS("commands_topic", "c", "commands_mode", "targeted"),
		     "plugin_opt_commands_topic: 'c': in targeted mode each broker reads its own "
		     "topic: put {broker} in it, e.g. mqtt-commands.{broker}");
	assert_fails(PARSE_BS("commands_topic", "c", "commands_return_topic", "r"),
		     "plugin_opt_commands_return_topic: only used with plugin_opt_commands_mode "
		     "targeted");
	assert_fails(PARSE_BS("commands_topic", "c", "commands_qos", "3"),
		     "plugin_opt_commands_qos: '3' is not an MQTT QoS (0..2)");
	assert_fails(PARSE_BS("commands_topic", "c", "commands_max_hops", "0"),
		     "plugin_opt_commands_max_hops: '0' is not a number of hops (1..100)");
	assert_fails(PARSE_BS("commands_topic", "c", "commands_target", "header:"),
		     "plugin_opt_commands_target: 'header:' is not key or header:<name>");
	assert_fails(PARSE_BS("commands_topic", "c", "commands_mqtt_topic", "d/+/c"),
		     "plugin_opt_commands_mqtt_topic: 'd/+/c' is not a topic to publish to (no +, "
		     "# or leading $)");
	assert_fails(PARSE_BS("commands_topic", "bad topic"),
		     "plugin_opt_commands_topic: 'bad topic' is not a legal Kafka topic name "
		     "(1..249 of [A-Za-z0-9._-]; {broker} is the broker_id)");
	assert_fails(PARSE_BS("commands_topic", "c", "commands_topic", "d"),
		     "plugin_opt_commands_topic: given twice ('c' and 'd')");
	assert_fails(PARSE_BS("commands_topic", "c", "commands_qos", "1", "commands_qos", "1"),
		     "plugin_opt_commands_qos: given twice");
	assert_fails(
		PARSE_BS("commands_topic", "c", "commands_kafka.bootstrap.servers", "x"),
		"plugin_opt_commands_kafka.bootstrap.servers: 'bootstrap.servers' is set by the "
		"plugin and cannot be changed (use plugin_opt_bootstrap_servers)");
	assert_fails(PARSE_BS("commands_topic", "c", "commands_nope", "x"),
		     "plugin_opt_commands_nope: unknown option, did you mean "
		     "plugin_opt_commands_mode? (known: " KNOWN_OPTIONS ")");
	assert_fails(PARSE_BS("commands_topic", "c", "commands_wakeup", "off"),
		     "plugin_opt_commands_wakeup: unknown option, did you mean "
		     "plugin_opt_commands_wake? (known: " KNOWN_OPTIONS ")");
}

/* ---- selectors, routes_file and its reload (reload.c) --------------------------------- */

static void test_route_selectors(void **state)
{
	(void)state;
	assert_ok(PARSE_BS("route_fleet", "fleet/# -> fleet key=clientid clientid=truck-* qos=1",
			   "route_ops", "ops/# -> ops username= retain=true", "route_any",
			   "x/# -> x username=op?-* qos=0 retain=false format=json"));
	assert_int_equal(cfg.route_count, 3);
	assert_true(cfg.routes[0].has_selectors);
	assert_string_equal(cfg.routes[0].sel_clientid, "truck-*");
	assert_null(cfg.routes[0].sel_username);
	assert_int_equal(cfg.routes[0].sel_qos, 2);
	assert_int_equal(cfg.routes[0].sel_retain, 0);
	assert_string_equal(cfg.routes[0].key.source, "{clientid}");
	assert_string_equal(cfg.routes[1].sel_username, "");
	assert_int_equal(cfg.routes[1].sel_retain, 2);
	assert_string_equal(cfg.routes[2].sel_username, "op?-*");
	assert_int_equal(cfg.routes[2].sel_qos, 1);
	assert_int_equal(cfg.routes[2].sel_retain, 1);
	assert_int_equal(cfg.routes[2].format, MQK_FORMAT_JSON);
	assert_ok(PARSE_BS("route_plain", "a/# -> a"));
	assert_false(cfg.routes[0].has_selectors);
}

static void test_route_bad_selectors(void **state)
{
	(void)state;
	assert_fails(PARSE_BS("route_x", "a -> t qos=3"),
		     "plugin_opt_route_x: qos='3' is not 0, 1 or 2");
	assert_fails(PARSE_BS("route_x", "a -> t qos="),
		     "plugin_opt_route_x: qos='' is not 0, 1 or 2");
	assert_fails(PARSE_BS("route_x", "a -> t qos=1 qos=2"),
		     "plugin_opt_route_x: 'qos=' given twice");
	assert_fails(PARSE_BS("route_x", "a -> t retain=yes"),
		     "plugin_opt_route_x: retain='yes' is not true or false");
	assert_fails(PARSE_BS("route_x", "a -> t retain=true retain=true"),
		     "plugin_opt_route_x: 'retain=' given twice");
	assert_fails(PARSE_BS("route_x", "a -> t clientid="),
		     "plugin_opt_route_x: clientid='' is not a client id pattern (1 or more "
		     "characters, '*' any run, '?' any one)");
	assert_fails(PARSE_BS("route_x", "a -> t clientid=a clientid=b"),
		     "plugin_opt_route_x: 'clientid=' given twice");
	assert_fails(PARSE_BS("route_x", "a -> t username=a username=b"),
		     "plugin_opt_route_x: 'username=' given twice");
	assert_fails(PARSE_BS("route_x", "a -> t clientid"),
		     "plugin_opt_route_x: unknown route attribute 'clientid' (use key=<key>, "
		     "format=raw|json, and the selectors clientid=<glob>, username=<glob>, "
		     "qos=0|1|2, retain=true|false)");
	assert_fails(PARSE_BS("route_x", "a -> t client=x"),
		     "plugin_opt_route_x: unknown route attribute 'client=x' (use key=<key>, "
		     "format=raw|json, and the selectors clientid=<glob>, username=<glob>, "
		     "qos=0|1|2, retain=true|false)");
}

static char rdir[64];   /* mkdtemp */
static char rpath[128]; /* rdir/routes.conf */

static int setup_file(void **state)
{
	setup(state);
	fake_tempdir(rdir, sizeof(rdir), "test-routes-file");
	snprintf(rpath, sizeof(rpath), "%s/routes.conf", rdir);
	return 0;
}

static int teardown_file(void **state)
{
	teardown(state);
	fake_tempdir_remove(rdir);
	return 0;
}

static void write_routes(const char *text)
{
	char tmp[160];
	snprintf(tmp, sizeof(tmp), "%s.tmp", rpath);
	FILE *f = fopen(tmp, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(rename(tmp, rpath), 0); /* as an admin's tool would: atomically */
}

static void test_routes_file(void **state)
{
	char expected[512];

	(void)state;
	write_routes("# routes of the fleet\n"
		     "\n"
		     "   route_fleet fleet/# -> fleet key=clientid clientid=truck-* qos=1  \n"
		     "exclude fleet/debug/#\n"
		     "\t# indented comment\n"
		     "route_b b/+ -> b.{1}\n");
	assert_ok(PARSE_BS("route_a", "a/# -> a", "exclude", "a/secret/#", "routes_file", rpath));
	assert_string_equal(cfg.routes_file, rpath);
	assert_int_equal(cfg.route_count, 3);
	assert_int_equal(cfg.conf_route_count, 1);
	assert_string_equal(cfg.routes[0].name, "a");
	assert_false(cfg.routes[0].from_file);
	assert_string_equal(cfg.routes[1].name, "fleet");
	assert_true(cfg.routes[1].from_file);
	assert_string_equal(cfg.routes[1].sel_clientid, "truck-*");
	assert_string_equal(cfg.routes[2].name, "b");
	assert_string_equal(cfg.routes[2].topic.source, "b.{1}");
	assert_int_equal(cfg.exclude_count, 2);
	assert_int_equal(cfg.conf_exclude_count, 1);
	assert_string_equal(cfg.excludes[1], "fleet/debug/#");

	/* Errors name the file and the line. */
	write_routes("route_ok a -> a\n\nroute_bad a/#/b -> t\n");
	assert_int_equal(PARSE_BS("routes_file", rpath), -1);
	snprintf(expected, sizeof(expected),
		 "plugin_opt_routes_file %s:3: route_bad: 'a/#/b' is not a valid MQTT topic filter",
		 rpath);
	assert_string_equal(err, expected);
	write_routes("route_x a -> a\nroute_x b -> b\n");
	assert_int_equal(PARSE_BS("routes_file", rpath), -1);
	snprintf(expected, sizeof(expected),
		 "plugin_opt_routes_file %s:2: route_x: route 'x' is defined twice", rpath);
	assert_string_equal(err, expected);
	write_routes("bootstrap_servers k:9092\n");
	assert_int_equal(PARSE_BS("routes_file", rpath), -1);
	snprintf(expected, sizeof(expected),
		 "plugin_opt_routes_file %s:1: bootstrap_servers: not a route_<name> or exclude "
		 "line",
		 rpath);
	assert_string_equal(err, expected);
	write_routes("route_x\n");
	assert_int_equal(PARSE_BS("routes_file", rpath), -1);
	snprintf(expected, sizeof(expected), "plugin_opt_routes_file %s:1: route_x: empty value",
		 rpath);
	assert_string_equal(err, expected);
	write_routes("exclude a/#/b\n");
	assert_int_equal(PARSE_BS("routes_file", rpath), -1);
	snprintf(expected, sizeof(expected),
		 "plugin_opt_routes_file %s:1: exclude: 'a/#/b' is not a valid MQTT topic filter",
		 rpath);
	assert_string_equal(err, expected);
	/* A name in both places. */
	write_routes("route_a a/# -> other\n");
	assert_int_equal(PARSE_BS("route_a", "a/# -> a", "routes_file", rpath), -1);
	snprintf(expected, sizeof(expected),
		 "plugin_opt_routes_file %s:1: route 'a' is also plugin_opt_route_a in "
		 "mosquitto.conf: a "
		 "route is defined in one place",
		 rpath);
	assert_string_equal(err, expected);
	assert_fails(PARSE_BS("routes_file", "routes.conf"),
		     "plugin_opt_routes_file: 'routes.conf' is not an absolute path");
	assert_fails(PARSE_BS("routes_file", "/a", "routes_file", "/b"),
		     "plugin_opt_routes_file: given twice ('/a' and '/b')");
	assert_int_equal(PARSE_BS("routes_file", rdir), -1);
	snprintf(expected, sizeof(expected),
		 "plugin_opt_routes_file %s: not a regular file of at most 16 MiB", rdir);
	assert_string_equal(err, expected);
	assert_int_equal(PARSE_BS("routes_file", "/nonexistent/routes.conf"), -1);
	assert_string_equal(
		err, "plugin_opt_routes_file /nonexistent/routes.conf: cannot open: No such file "
		     "or directory");
}

/* The index of the route in force named name, or -1. */
static int in_force(const char *name)
{
	for (int i = 0; i < cfg.active_count; i++) {
		if (!strcmp(cfg.routes[cfg.active[i]].name, name)) {
			return cfg.active[i];
		}
	}
	return -1;
}

static void test_routes_reload(void **state)
{
	struct mqk_reload_result res;

	(void)state;
	write_routes("route_keep k/# -> k\nroute_change c/# -> c1\nroute_drop d/# -> d\n"
		     "exclude k/x/#\n");
	assert_ok(PARSE_BS("route_conf", "conf/# -> conf", "routes_file", rpath));
	assert_int_equal(routes__start(&cfg), 0);
	assert_int_equal(cfg.active_count, 4);
	int keep = in_force("keep"), change = in_force("change"), drop = in_force("drop");
	cfg.routes[keep].seq = 10;
	cfg.routes[change].seq = 20;
	cfg.routes[change].counters.delivered = 7;
	struct mqk_route *keep_def = &cfg.routes[keep];

	/* Changed, added, removed; the exclude replaced. */
	write_routes("route_change c/# -> c2 qos=1\nroute_keep k/# -> k\nroute_new n/# -> n\n"
		     "exclude n/x/#\n");
	assert_ok(routes__reload(&cfg, &res, err, sizeof(err)));
	assert_int_equal(res.added, 1);
	assert_int_equal(res.changed, 1);
	assert_int_equal(res.removed, 1);
	assert_int_equal(res.unchanged, 1);
	assert_int_equal(res.excludes, 1);
	assert_int_equal(cfg.active_count, 4);
	assert_int_equal(cfg.route_count, 6); /* 4 + the changed one's and the new one's */
	assert_string_equal(cfg.routes[cfg.active[0]].name, "conf");
	assert_string_equal(cfg.routes[cfg.active[1]].name, "change");
	assert_string_equal(cfg.routes[cfg.active[2]].name, "keep");
	assert_string_equal(cfg.routes[cfg.active[3]].name, "new");
	assert_int_equal(in_force("keep"), keep); /* the same definition */
	assert_ptr_equal(&cfg.routes[keep], keep_def);
	assert_int_equal(in_force("drop"), -1);
	int changed = in_force("change");
	assert_true(changed != change);
	assert_int_equal(cfg.routes[changed].seq, 20); /* mqtt.seq continues */
	assert_int_equal(cfg.routes[changed].prev, change + 1);
	assert_string_equal(cfg.routes[changed].topic.source, "c2");
	/* The name's counters add up over its definitions. */
	struct mqk_counters sum;
	cfg.routes[changed].counters.delivered = 3;
	cfg.routes[changed].counters.matched = 4;
	routes__counters(&cfg, changed, &sum);
	assert_int_equal(counter__get(&sum.delivered), 10);
	assert_int_equal(counter__get(&sum.matched), 4);
	routes__counters(&cfg, keep, &sum);
	assert_int_equal(counter__get(&sum.delivered), 0);
	assert_int_equal(routes__in_force_count(&cfg), 4);
	assert_int_equal(routes__in_force(&cfg, 1), changed);
	/* The old definitions stay for the records still to send. */
	assert_string_equal(cfg.routes[change].topic.source, "c1");
	assert_string_equal(cfg.routes[drop].name, "drop");
	assert_int_equal(cfg.exclude_count, 1);
	assert_string_equal(cfg.excludes[0], "n/x/#");

	/* A bad file changes nothing. */
	write_routes("route_change c/# -> c3\nroute_broken x ->\n");
	assert_int_equal(routes__reload(&cfg, &res, err, sizeof(err)), -1);
	char expected[512];
	snprintf(expected, sizeof(expected),
		 "routes_file %s:2: route_broken: 'x ->' is not "
		 "'<mqtt-filter> -> <kafka-topic> [key=<key>] [format=raw|json] "
		 "[clientid=<glob>] [username=<glob>] [qos=0|1|2] [retain=true|false]'",
		 rpath);
	assert_string_equal(err, expected);
	assert_int_equal(cfg.active_count, 4);
	assert_int_equal(cfg.route_count, 6);
	assert_int_equal(in_force("change"), changed);
	assert_int_equal(cfg.exclude_count, 1);
	write_routes("route_conf conf/# -> elsewhere\n");
	assert_int_equal(routes__reload(&cfg, &res, err, sizeof(err)), -1);
	assert_int_equal(cfg.active_count, 4);

	/* A route removed and added again continues its name's seq. */
	cfg.routes[in_force("new")].seq = 5;
	write_routes("route_keep k/# -> k\n");
	assert_ok(routes__reload(&cfg, &res, err, sizeof(err)));
	assert_int_equal(res.removed, 2);
	assert_int_equal(res.unchanged, 1);
	assert_int_equal(cfg.active_count, 2);
	assert_int_equal(cfg.exclude_count, 0);
	write_routes("route_keep k/# -> k\nroute_new n/# -> n\n");
	assert_ok(routes__reload(&cfg, &res, err, sizeof(err)));
	assert_int_equal(res.added, 1);
	assert_int_equal(cfg.routes[in_force("new")].seq, 5);
	/* Nothing changed: no new definition. */
	int defined = cfg.route_count;
	assert_ok(routes__reload(&cfg, &res, err, sizeof(err)));
	assert_int_equal(res.unchanged, 2);
	assert_int_equal(cfg.route_count, defined);
}

/* Definitions are kept until shutdown: a reload past MQK_MAX_ROUTES is refused. */
static void test_routes_reload_limit(void **state)
{
	struct mqk_reload_result res;
	char text[64];
	int i;

	(void)state;
	write_routes("route_r r/# -> t0\n");
	assert_ok(PARSE_BS("routes_file", rpath));
	assert_int_equal(routes__start(&cfg), 0);
	for (i = 1; cfg.route_count < MQK_MAX_ROUTES; i++) {
		snprintf(text, sizeof(text), "route_r r/# -> t%d\n", i);
		write_routes(text);
		assert_ok(routes__reload(&cfg, &res, err, sizeof(err)));
		assert_int_equal(res.changed, 1);
	}
	assert_int_equal(cfg.routes[cfg.active[0]].prev, MQK_MAX_ROUTES - 1);
	snprintf(text, sizeof(text), "route_r r/# -> t%d\n", i);
	write_routes(text);
	assert_int_equal(routes__reload(&cfg, &res, err, sizeof(err)), -1);
	char expected[512];
	snprintf(expected, sizeof(expected),
		 "routes_file %s: this run has defined 4096 routes, a reload adds 1: at most "
		 "4096 per run (restart mosquitto to apply it)",
		 rpath);
	assert_string_equal(err, expected);
	assert_int_equal(cfg.active_count, 1);
}

static void test_inbound_routes(void **state)
{
	(void)state;
	assert_ok(PARSE_BS("broker_id", "b1", "inbound_config",
			   "device-config -> config/{key} qos=1 retain=true", "inbound_notice",
			   "fleet.notices  ->  notices/{header:region}/{partition}",
			   "inbound_kafka.auto.offset.reset", "earliest"));
	assert_int_equal(cfg.inbound.count, 2);
	assert_string_equal(cfg.inbound.routes[0].name, "config");
	assert_string_equal(cfg.inbound.routes[0].kafka_topic, "device-config");
	assert_string_equal(cfg.inbound.routes[0].mqtt_topic.source, "config/{key}");
	assert_int_equal(cfg.inbound.routes[0].qos, 1);
	assert_true(cfg.inbound.routes[0].retain);
	assert_string_equal(cfg.inbound.routes[1].kafka_topic, "fleet.notices");
	assert_int_equal(cfg.inbound.routes[1].qos, 0);
	assert_false(cfg.inbound.routes[1].retain);
	assert_string_equal(cfg.inbound.group, "mosquitto-kafka-inbound-b1");
	assert_string_equal(cfg.inbound.wake, "auto");
	assert_int_equal(cfg.inbound.kafka_prop_count, 1);
	assert_string_equal(cfg.inbound.kafka_props[0].name, "auto.offset.reset");
	assert_int_equal(cfg.route_count, 0); /* inbound_ is not route_ */

	assert_ok(PARSE_BS("broker_id", "b2", "inbound_x", "t -> a", "inbound_group",
			   "g-{broker}", "inbound_wake", "off"));
	assert_string_equal(cfg.inbound.group, "g-b2");
	assert_string_equal(cfg.inbound.wake, "off");
}

static void test_inbound_errors(void **state)
{
	(void)state;
	assert_fails(PARSE_BS("inbound_x", "t a/b"),
		     "plugin_opt_inbound_x: 't a/b' is not '<kafka-topic> -> <mqtt-topic> "
		     "[qos=0|1|2] [retain=true|false]'");
	assert_fails(PARSE_BS("inbound_x", "bad! -> a/b"),
		     "plugin_opt_inbound_x: 'bad!' is not a legal Kafka topic name (1..249 "
		     "of [A-Za-z0-9._-])");
	assert_fails(PARSE_BS("inbound_x", "t -> a/+/b"),
		     "plugin_opt_inbound_x: 'a/+/b' is not an MQTT topic to publish to: no '+' or "
		     "'#'");
	assert_fails(PARSE_BS("inbound_x", "t -> a/{clientid}"),
		     "plugin_opt_inbound_x: unknown placeholder '{clientid}' in 'a/{clientid}' "
		     "(use {key}, {partition}, {header:<name>} or {broker})");
	assert_fails(PARSE_BS("inbound_x", "t ->"), "plugin_opt_inbound_x: 't ->' is not "
						     "'<kafka-topic> -> <mqtt-topic> [qos=0|1|2] "
						     "[retain=true|false]'");
	assert_fails(PARSE_BS("inbound_x", "t -> a qos=3"),
		     "plugin_opt_inbound_x: qos='3' is not 0, 1 or 2");
	assert_fails(PARSE_BS("inbound_x", "t -> a retain=yes"),
		     "plugin_opt_inbound_x: retain='yes' is not true or false");
	assert_fails(PARSE_BS("inbound_x", "t -> a qos=1 qos=2"),
		     "plugin_opt_inbound_x: 'qos=2' given twice");
	assert_fails(PARSE_BS("inbound_x", "t -> a key=clientid"),
		     "plugin_opt_inbound_x: unknown inbound route attribute 'key=clientid' (use "
		     "qos=0|1|2, retain=true|false)");
	assert_fails(PARSE_BS("inbound_x", "t -> a", "inbound_x", "u -> b"),
		     "plugin_opt_inbound_x: inbound route 'x' is defined twice");
	assert_fails(PARSE_BS("inbound_x", "t -> a", "inbound_y", "t -> b"),
		     "plugin_opt_inbound_y: Kafka topic 't' is already read by "
		     "plugin_opt_inbound_x: one inbound route per Kafka topic");
	assert_fails(PARSE_BS("inbound_a.b", "t -> a"),
		     "plugin_opt_inbound_a.b: an inbound route needs a name of 1..64 characters "
		     "[A-Za-z0-9_-] after inbound_, e.g. plugin_opt_inbound_config");
	assert_fails(PARSE_BS("inbound_group", "g"),
		     "plugin_opt_inbound_group: only used with inbound routes: add "
		     "plugin_opt_inbound_<name> <kafka-topic> -> <mqtt-topic>, or remove it");
	assert_fails(PARSE_BS("inbound_kafka.fetch.min.bytes", "1"),
		     "plugin_opt_inbound_kafka.*: only used with inbound routes: add "
		     "plugin_opt_inbound_<name> <kafka-topic> -> <mqtt-topic>, or remove it");
	assert_fails(PARSE_BS("inbound_x", "t -> a", "inbound_kafka.bootstrap.servers", "k:1"),
		     "plugin_opt_inbound_kafka.bootstrap.servers: 'bootstrap.servers' is set by "
		     "the plugin and cannot be changed (use plugin_opt_bootstrap_servers)");
	assert_fails(PARSE_BS("broker_id", "b", "commands_topic", "c", "inbound_x", "t -> a",
			      "inbound_group", "mosquitto-kafka-commands-{broker}"),
		     "plugin_opt_inbound_group: 'mosquitto-kafka-commands-b' is commands_group "
		     "too: the inbound consumer needs a group of its own");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_inbound_routes),
		T(test_inbound_errors),
		T(test_minimal_defaults),
		T(test_no_options_at_all),
		T(test_bootstrap_missing),
		T(test_broker_id),
		T(test_trimming),
		T(test_route_defaults),
		T(test_route_keys),
		T(test_route_formats_and_order),
		T(test_route_topic_templates),
		T(test_route_filter_with_spaces),
		T(test_route_name_limits),
		T(test_excludes),
		T(test_kafka_props),
		T(test_numbers_in_range),
		T(test_create_topics),
		T(test_create_topics_errors),
		T(test_numbers_out_of_range),
		T(test_metrics_options),
		T(test_metrics_errors),
		T(test_durability_options),
		T(test_durability_errors),
		T(test_profile),
		T(test_empty_values),
		T(test_unknown_option),
		T(test_option_docs),
		T(test_duplicates),
		T(test_route_name_invalid),
		T(test_route_missing_arrow),
		T(test_route_bad_filter),
		T(test_route_sys_control),
		T(test_route_dollar_topic_not_reserved),
		T(test_route_bad_kafka_topic),
		T(test_route_long_kafka_topic_message),
		T(test_route_long_key_message),
		T(test_route_empty_filter),
		T(test_route_bad_placeholders),
		T(test_route_bad_key),
		T(test_route_bad_attributes),
		T(test_exclude_bad_filter),
		T(test_kafka_prop_errors),
		T(test_error_then_reparse),
		T(test_small_errstr),
		T(test_commands_off_by_default),
		T(test_commands_broadcast_defaults),
		T(test_commands_targeted),
		T(test_commands_errors),
		T(test_commands_side_topics),
		T(test_route_line_kinds),
		T(test_route_selectors),
		T(test_route_bad_selectors),
#undef T
#define F(f) cmocka_unit_test_setup_teardown(f, setup_file, teardown_file)
		F(test_routes_file),
		F(test_routes_reload),
		F(test_routes_reload_limit),
#undef F
	};
	return cmocka_run_group_tests_name("options", tests, NULL, NULL);
}
