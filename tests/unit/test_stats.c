/*
 * test_stats.c - stats__init's $SYS topics, stats__tick's publishes through the fake
 * broker (interval, values, retain), stats__log_summary's lines.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <mosquitto.h>

#include "fake_broker.h"
#include "mosquitto_kafka.h"
#include "mqk.h"

static struct mqk_route routes[2];
static struct mqk_config cfg;
static struct mqk_stats st;

static const char *const counter_names[] = {"matched",        "produced",  "delivered", "failed",
					    "buffer_full",    "bad_topic", "too_large", "refused",
					    "dropped_oldest", "rejected",  "in_flight"};
#define PER_SCOPE 11
/* received, unrouted, excluded, buffered_bytes, journal_replayed, journal_errors */
#define TOTALS_ONLY 6
#define ALL_TOPICS (TOTALS_ONLY + PER_SCOPE * 3) /* totals and 2 routes */

static int setup(void **state)
{
	(void)state;
	fake_broker_reset();
	memset(&cfg, 0, sizeof(cfg));
	memset(routes, 0, sizeof(routes));
	routes[0].name = (char *)"spectrum";
	routes[1].name = (char *)"status-2";
	cfg.routes = routes;
	cfg.route_count = 2;
	cfg.stats_interval = 10;
	assert_int_equal(stats__init(&st, &cfg), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	stats__free(&st);
	assert_null(st.topics);
	fake_broker_reset();
	return 0;
}

static void test_topics(void **state)
{
	char want[256];
	int n = 0;

	(void)state;
	assert_int_equal(st.topic_count, ALL_TOPICS);
	assert_string_equal(st.topics[n++], "$SYS/broker/kafka/received");
	assert_string_equal(st.topics[n++], "$SYS/broker/kafka/unrouted");
	assert_string_equal(st.topics[n++], "$SYS/broker/kafka/excluded");
	assert_string_equal(st.topics[n++], "$SYS/broker/kafka/buffered_bytes");
	assert_string_equal(st.topics[n++], "$SYS/broker/kafka/journal_replayed");
	assert_string_equal(st.topics[n++], "$SYS/broker/kafka/journal_errors");
	for (int i = 0; i < PER_SCOPE; i++) {
		snprintf(want, sizeof(want), MQK_SYS_PREFIX "/%s", counter_names[i]);
		assert_string_equal(st.topics[n++], want);
	}
	for (int r = 0; r < 2; r++) {
		for (int i = 0; i < PER_SCOPE; i++) {
			snprintf(want, sizeof(want), MQK_SYS_PREFIX "/routes/%s/%s", routes[r].name,
				 counter_names[i]);
			assert_string_equal(st.topics[n++], want);
		}
	}
	assert_int_equal(n, st.topic_count);
	assert_int_equal(st.next_publish, 0);
}

static void test_tick_publishes_values(void **state)
{
	(void)state;
	st.received = 100;
	st.unrouted = 7;
	st.excluded = 3;
	st.totals = (struct mqk_counters){.matched = 90,
					  .produced = 88,
					  .delivered = 80,
					  .failed = 2,
					  .buffer_full = 1,
					  .bad_topic = 1,
					  .too_large = 0,
					  .refused = UINT64_MAX,
					  .dropped_oldest = 11,
					  .rejected = 12};
	st.journal = (struct mqk_journal_counters){.replayed = 42, .errors = 3};
	routes[0].counters = (struct mqk_counters){.matched = 60, .produced = 60, .delivered = 59};
	routes[1].counters = (struct mqk_counters){.matched = 30,
						   .produced = 28,
						   .delivered = 21,
						   .failed = 2,
						   .buffer_full = 1,
						   .bad_topic = 1,
						   .dropped_oldest = 4,
						   .rejected = 7};

	stats__tick(&st, &cfg, 1000, 123456789);
	assert_int_equal(fake_publish_count(), ALL_TOPICS);
	/* In the order of the topics; all retained, QoS 0, to everyone. */
	for (int i = 0; i < ALL_TOPICS; i++) {
		const struct fake_publish *p = fake_publish_get(i);
		assert_string_equal(p->topic, st.topics[i]);
		assert_true(p->retain);
		assert_int_equal(p->qos, 0);
		assert_null(p->clientid);
		assert_int_equal(p->payloadlen, (int)strlen(p->payload));
	}
	static const char *const want[][2] = {
		{"$SYS/broker/kafka/received", "100"},
		{"$SYS/broker/kafka/unrouted", "7"},
		{"$SYS/broker/kafka/excluded", "3"},
		{"$SYS/broker/kafka/buffered_bytes", "123456789"},
		{"$SYS/broker/kafka/journal_replayed", "42"},
		{"$SYS/broker/kafka/journal_errors", "3"},
		{"$SYS/broker/kafka/matched", "90"},
		{"$SYS/broker/kafka/produced", "88"},
		{"$SYS/broker/kafka/delivered", "80"},
		{"$SYS/broker/kafka/failed", "2"},
		{"$SYS/broker/kafka/buffer_full", "1"},
		{"$SYS/broker/kafka/bad_topic", "1"},
		{"$SYS/broker/kafka/too_large", "0"},
		{"$SYS/broker/kafka/refused", "18446744073709551615"},
		{"$SYS/broker/kafka/dropped_oldest", "11"},
		{"$SYS/broker/kafka/rejected", "12"},
		{"$SYS/broker/kafka/in_flight", "6"},
		{"$SYS/broker/kafka/routes/spectrum/matched", "60"},
		{"$SYS/broker/kafka/routes/spectrum/delivered", "59"},
		{"$SYS/broker/kafka/routes/spectrum/failed", "0"},
		{"$SYS/broker/kafka/routes/spectrum/dropped_oldest", "0"},
		{"$SYS/broker/kafka/routes/spectrum/rejected", "0"},
		{"$SYS/broker/kafka/routes/spectrum/in_flight", "1"},
		{"$SYS/broker/kafka/routes/status-2/matched", "30"},
		{"$SYS/broker/kafka/routes/status-2/produced", "28"},
		{"$SYS/broker/kafka/routes/status-2/failed", "2"},
		{"$SYS/broker/kafka/routes/status-2/buffer_full", "1"},
		{"$SYS/broker/kafka/routes/status-2/bad_topic", "1"},
		{"$SYS/broker/kafka/routes/status-2/dropped_oldest", "4"},
		{"$SYS/broker/kafka/routes/status-2/rejected", "7"},
		{"$SYS/broker/kafka/routes/status-2/in_flight", "5"},
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const struct fake_publish *p = fake_publish_find(want[i][0]);
		if (p == NULL) {
			fail_msg("nothing published to %s", want[i][0]);
		}
		assert_string_equal(p->payload, want[i][1]);
	}
}

static void test_tick_interval(void **state)
{
	(void)state;
	stats__tick(&st, &cfg, 1000, 0);
	assert_int_equal(fake_publish_count(), ALL_TOPICS);
	assert_int_equal(st.next_publish, 1010);
	assert_string_equal(fake_publish_find("$SYS/broker/kafka/buffered_bytes")->payload, "0");
	/* Not before stats_interval seconds have passed. */
	stats__tick(&st, &cfg, 1000, 1);
	stats__tick(&st, &cfg, 1005, 2);
	stats__tick(&st, &cfg, 1009, 3);
	assert_int_equal(fake_publish_count(), ALL_TOPICS);
	st.received = 1;
	stats__tick(&st, &cfg, 1010, 4096);
	assert_int_equal(fake_publish_count(), 2 * ALL_TOPICS);
	assert_string_equal(fake_publish_get(ALL_TOPICS)->topic, "$SYS/broker/kafka/received");
	assert_string_equal(fake_publish_get(ALL_TOPICS)->payload, "1");
	/* The value at the tick that publishes. */
	assert_string_equal(fake_publish_find("$SYS/broker/kafka/buffered_bytes")->payload, "4096");
	/* A late tick schedules the next one from now. */
	stats__tick(&st, &cfg, 1100, 0);
	assert_int_equal(fake_publish_count(), 3 * ALL_TOPICS);
	assert_int_equal(st.next_publish, 1110);
}

static void test_tick_disabled(void **state)
{
	(void)state;
	cfg.stats_interval = 0;
	for (time_t t = 0; t < 100000; t += 1000) {
		stats__tick(&st, &cfg, t, 100);
	}
	assert_int_equal(fake_publish_count(), 0);
}

static void test_no_routes(void **state)
{
	struct mqk_config none = {.stats_interval = 1};
	struct mqk_stats s;

	(void)state;
	assert_int_equal(stats__init(&s, &none), 0);
	assert_int_equal(s.topic_count, TOTALS_ONLY + PER_SCOPE);
	stats__tick(&s, &none, 5, 0);
	assert_int_equal(fake_publish_count(), TOTALS_ONLY + PER_SCOPE);
	stats__free(&s);
}

static void test_log_summary(void **state)
{
	(void)state;
	st.received = 100;
	st.unrouted = 7;
	st.excluded = 3;
	st.totals = (struct mqk_counters){.matched = 90,
					  .produced = 88,
					  .delivered = 80,
					  .failed = 2,
					  .buffer_full = 1,
					  .bad_topic = 1,
					  .too_large = 4,
					  .refused = 5,
					  .dropped_oldest = 6,
					  .rejected = 7};
	routes[1].counters = (struct mqk_counters){.matched = 1, .produced = 1, .rejected = 1};
	stats__log_summary(&st, &cfg);
	assert_int_equal(fake_log_count(), 4);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(fake_log_get(i)->level, MOSQ_LOG_NOTICE);
	}
	assert_string_equal(fake_log_get(0)->text,
			    "mosquitto_kafka: totals: received 100, unrouted 7, excluded 3");
	assert_string_equal(fake_log_get(1)->text,
			    "mosquitto_kafka: totals: matched 90, produced 88, delivered 80, "
			    "failed 2, buffer_full 1, bad_topic 1, too_large 4, refused 5, "
			    "dropped_oldest 6, rejected 7, in_flight 6");
	assert_string_equal(fake_log_get(2)->text,
			    "mosquitto_kafka: route spectrum: matched 0, produced 0, delivered 0, "
			    "failed 0, buffer_full 0, bad_topic 0, too_large 0, refused 0, "
			    "dropped_oldest 0, rejected 0, in_flight 0");
	assert_string_equal(fake_log_get(3)->text,
			    "mosquitto_kafka: route status-2: matched 1, produced 1, delivered 0, "
			    "failed 0, buffer_full 0, bad_topic 0, too_large 0, refused 0, "
			    "dropped_oldest 0, rejected 1, in_flight 1");
	/* Memory durability: no journal line. */
	assert_null(fake_log_find("mosquitto_kafka: journal:"));
	assert_int_equal(fake_publish_count(), 0);
}

static void test_log_summary_journal(void **state)
{
	(void)state;
	cfg.durability = MQK_DURABILITY_JOURNAL;
	st.journal = (struct mqk_journal_counters){.replayed = 46, .errors = 2};
	stats__log_summary(&st, &cfg);
	/* received, totals, the journal's line, then each route. */
	assert_int_equal(fake_log_count(), 5);
	assert_string_equal(fake_log_get(2)->text,
			    "mosquitto_kafka: journal: replayed 46, errors 2");
	assert_int_equal(fake_log_get(2)->level, MOSQ_LOG_NOTICE);
	assert_non_null(fake_log_find("mosquitto_kafka: route spectrum: matched 0,"));
}

static void test_long_route_name(void **state)
{
	struct mqk_route r = {.name = malloc(65)};
	struct mqk_config c = {.routes = &r, .route_count = 1, .stats_interval = 1};
	struct mqk_stats s;
	char want[256];

	(void)state;
	memset(r.name, 'n', 64);
	r.name[64] = '\0';
	assert_int_equal(stats__init(&s, &c), 0);
	snprintf(want, sizeof(want), MQK_SYS_PREFIX "/routes/%s/in_flight", r.name);
	assert_string_equal(s.topics[s.topic_count - 1], want);
	stats__log_summary(&s, &c);
	snprintf(want, sizeof(want), "mosquitto_kafka: route %s: matched 0,", r.name);
	assert_non_null(fake_log_find(want));
	stats__free(&s);
	free(r.name);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_topics),          T(test_tick_publishes_values),
		T(test_tick_interval),   T(test_tick_disabled),
		T(test_no_routes),       T(test_log_summary),
		T(test_long_route_name), T(test_log_summary_journal),
#undef T
	};
	return cmocka_run_group_tests_name("stats", tests, NULL, NULL);
}
