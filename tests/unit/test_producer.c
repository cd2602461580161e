/*
 * test_producer.c - the Kafka thread end to end, and its recovery from a fatal error.
 *
 * plugin/plugin.c is compiled in, so the test drives the real MESSAGE callback; Kafka is
 * librdkafka's in-process mock cluster (kafka.test.mock.num.brokers). The fatal error is
 * librdkafka's own test hook, rd_kafka_test_fatal_error: the plugin must replace its
 * producer and send every record not yet acknowledged again, losing none.
 */
#include "../../plugin/plugin.c"
#include "../../plugin/producer.c" /* struct mqk_producer: the test reaches its handle */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <unistd.h>

#include <cmocka.h>

#include "fake_broker.h"

#define CLIENTS 10

static struct mosquitto clients[CLIENTS];
static char scratch[64]; /* the journal_dir's parent, removed by stop() */

static void *start(int extra, const char *const *opts_kv)
{
	static struct mosquitto_opt opts[16];
	static char keys[16][64], values[16][128];
	static char journal_dir[96];
	int n = 0;
	void *userdata = NULL;
	const char *base[] = {
		"bootstrap_servers",
		"127.0.0.1:9",
		"kafka.test.mock.num.brokers",
		"1",
		"route_all",
		"t/# -> all",
		"stats_interval",
		"0",
	};

	for (size_t i = 0; i < sizeof(base) / sizeof(base[0]); i += 2, n++) {
		snprintf(keys[n], sizeof(keys[n]), "%s", base[i]);
		snprintf(values[n], sizeof(values[n]), "%s", base[i + 1]);
		opts[n] = (struct mosquitto_opt){keys[n], values[n]};
	}
	fake_tempdir(scratch, sizeof(scratch), "test-producer");
	snprintf(journal_dir, sizeof(journal_dir), "%s/j", scratch);
	opts[n++] = (struct mosquitto_opt){"journal_dir", journal_dir};
	for (int i = 0; i < extra; i += 2, n++) {
		snprintf(keys[n], sizeof(keys[n]), "%s", opts_kv[i]);
		snprintf(values[n], sizeof(values[n]), "%s", opts_kv[i + 1]);
		opts[n] = (struct mosquitto_opt){keys[n], values[n]};
	}
	for (int c = 0; c < CLIENTS; c++) {
		snprintf(clients[c].id, sizeof(clients[c].id), "ue-%02d", c);
	}
	assert_int_equal(mosquitto_plugin_init(NULL, &userdata, opts, n), MOSQ_ERR_SUCCESS);
	return userdata;
}

static void publish(struct mqk_plugin *pl, int from, int count)
{
	char topic[32], payload[32];

	for (int i = from; i < from + count; i++) {
		struct mosquitto_evt_message ev = {
			.client = &clients[i % CLIENTS],
			.topic = topic,
			.payload = payload,
			.qos = 1,
		};
		snprintf(topic, sizeof(topic), "t/%s", clients[i % CLIENTS].id);
		ev.payloadlen = (uint32_t)snprintf(payload, sizeof(payload), "%d", i);
		on_message(MOSQ_EVT_MESSAGE, &ev, pl);
		if (i % 16 == 0) {
			on_tick(MOSQ_EVT_TICK, NULL, pl);
		}
	}
}

static void stop(struct mqk_plugin *pl)
{
	mosquitto_plugin_cleanup(pl, NULL, 0);
	fake_tempdir_remove(scratch);
}

/* Ticks until `delivered` records are delivered, 20 s at most. */
static uint64_t wait_delivered(struct mqk_plugin *pl, uint64_t delivered)
{
	for (int i = 0; i < 2000 && counter__get(&pl->stats.totals.delivered) < delivered; i++) {
		on_tick(MOSQ_EVT_TICK, NULL, pl);
		usleep(10000);
	}
	on_tick(MOSQ_EVT_TICK, NULL, pl);
	return counter__get(&pl->stats.totals.delivered);
}

/* 20,000 messages in, 20,000 delivered, buffer empty, 0 left at shutdown. */
static void test_all_delivered(void **state)
{
	(void)state;
	fake_broker_reset();
	struct mqk_plugin *pl = start(0, NULL);

	publish(pl, 0, 20000);
	assert_int_equal(wait_delivered(pl, 20000), 20000);
	assert_int_equal(counter__get(&pl->stats.totals.failed), 0);
	assert_int_equal(counters__in_flight(&pl->stats.totals), 0);
	for (int i = 0; i < 100 && buffer__used(&pl->buffer) > 0; i++) {
		usleep(10000); /* the Kafka thread releases settled entries after its poll */
	}
	assert_int_equal(buffer__used(&pl->buffer), 0);
	stop(pl);
	assert_non_null(fake_log_find("shutdown: 0 records not delivered"));
}

/*
 * A fatal error mid-stream: the producer is replaced, and every record published, before
 * and after, is delivered exactly as many times as the counters say (no loss).
 */
static void test_fatal_error_recovered(void **state)
{
	(void)state;
	fake_broker_reset();
	/* A long linger keeps records inside librdkafka when the fatal error strikes. */
	const char *opts[] = {"kafka.linger.ms", "200"};
	struct mqk_plugin *pl = start(2, opts);

	publish(pl, 0, 5000);
	/* All 5000 in librdkafka's hands (lingering), none acknowledged yet. */
	for (int i = 0; i < 500 && counter__get(&pl->stats.totals.produced) < 5000; i++) {
		usleep(1000);
	}
	assert_int_equal(counter__get(&pl->stats.totals.produced), 5000);
	assert_true(counter__get(&pl->stats.totals.delivered) < 5000);
	rd_kafka_test_fatal_error(pl->producer->rk, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
				  "test_producer: a fatal error on purpose");
	publish(pl, 5000, 5000);
	assert_int_equal(wait_delivered(pl, 10000), 10000);
	assert_int_equal(counter__get(&pl->stats.totals.failed), 0);
	assert_int_equal(counter__get(&pl->stats.totals.produced), 10000);
	assert_int_equal(counters__in_flight(&pl->stats.totals), 0);
	const struct fake_log_line *l = fake_log_find("replaced the Kafka producer after a fatal");
	assert_non_null(l);
	print_message("%s\n", l->text);
	/* "...: N records not yet acknowledged are sent again": N > 0, what was in flight. */
	const char *n = strstr(l->text, "): ");
	assert_non_null(n);
	assert_true(atoi(n + 3) > 0);
	stop(pl);
	assert_non_null(fake_log_find("shutdown: 0 records not delivered"));
}

/*
 * plugin_opt_profile: the producer's linger.ms as build_conf makes it, for each profile,
 * and a kafka.linger.ms line (or a kafka_config_file property) winning over the profile.
 */
static const char *conf_linger(const char *const *kv, char *value, size_t size)
{
	struct mosquitto_opt opts[8];
	struct mqk_config cfg;
	struct mqk_producer p;
	char errstr[512] = "";
	int n = 0;

	memset(&cfg, 0, sizeof(cfg));
	memset(&p, 0, sizeof(p));
	opts[n].key = "bootstrap_servers";
	opts[n++].value = "127.0.0.1:9";
	for (; kv[0] != NULL; kv += 2) {
		opts[n].key = (char *)kv[0];
		opts[n++].value = (char *)kv[1];
	}
	assert_int_equal(options__parse(&cfg, opts, n, errstr, sizeof(errstr)), 0);
	rd_kafka_conf_t *conf = build_conf(&p, &cfg, errstr, sizeof(errstr));
	assert_non_null(conf);
	assert_int_equal(rd_kafka_conf_get(conf, "linger.ms", value, &size), RD_KAFKA_CONF_OK);
	rd_kafka_conf_destroy(conf);
	options__free(&cfg);
	return value;
}

static void test_profile_precedence(void **state)
{
	char v[32];

	(void)state;
	assert_string_equal(conf_linger((const char *[]){NULL}, v, sizeof(v)), "5");
	assert_string_equal(conf_linger((const char *[]){"profile", "throughput", NULL}, v,
					sizeof(v)),
			    "5");
	assert_string_equal(conf_linger((const char *[]){"profile", "latency", NULL}, v, sizeof(v)),
			    "0");
	/* The admin's kafka.* line wins, before or after the profile line. */
	assert_string_equal(conf_linger((const char *[]){"profile", "latency", "kafka.linger.ms",
							 "20", NULL},
					v, sizeof(v)),
			    "20");
	assert_string_equal(conf_linger((const char *[]){"kafka.linger.ms", "2", "profile",
							 "latency", NULL},
					v, sizeof(v)),
			    "2");
	assert_string_equal(conf_linger((const char *[]){"profile", "throughput",
							 "kafka.linger.ms", "0", NULL},
					v, sizeof(v)),
			    "0");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_all_delivered),
		cmocka_unit_test(test_fatal_error_recovered),
		cmocka_unit_test(test_profile_precedence),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
