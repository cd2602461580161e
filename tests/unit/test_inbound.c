/*
 * test_inbound.c - the inbound thread against librdkafka's in-process mock cluster, with
 * mosquitto's thread played by the test: nothing calls inbound__tick until the hand-off
 * queue is full, so the thread must pause its partitions (and read no more), then the
 * test drains it TICK by TICK and every record must come out once, in order per partition.
 * The integration test (test_inbound.py) cannot make mosquitto's thread that slow.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#include "fake_broker.h"
#include "mqk.h" /* rdkafka.h, which rdkafka_mock.h needs first */

#include <librdkafka/rdkafka_mock.h>

#define RECORDS 25000
#define PARTITIONS 2
#define QUEUE_MAX 10000 /* inbound.c's */

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

/* A producer whose mock cluster holds topic "news" with RECORDS records "<p>:<seq>". */
static rd_kafka_t *mock_with_records(void)
{
	char errstr[512], value[32];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;

	assert_int_equal(rd_kafka_conf_set(conf, "test.mock.num.brokers", "1", errstr,
					   sizeof(errstr)),
			 RD_KAFKA_CONF_OK);
	rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr));
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	assert_non_null(rk);
	assert_int_equal(rd_kafka_mock_topic_create(rd_kafka_handle_mock_cluster(rk), "news",
						    PARTITIONS, 1),
			 RD_KAFKA_RESP_ERR_NO_ERROR);
	for (int i = 0; i < RECORDS; i++) {
		int len = snprintf(value, sizeof(value), "%d:%d", i % PARTITIONS, i / PARTITIONS);
		rd_kafka_resp_err_t err;
		while ((err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("news"),
						RD_KAFKA_V_PARTITION(i % PARTITIONS),
						RD_KAFKA_V_VALUE(value, (size_t)len),
						RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
						RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
			rd_kafka_poll(rk, 10);
		}
		assert_int_equal(err, RD_KAFKA_RESP_ERR_NO_ERROR);
	}
	assert_int_equal(rd_kafka_flush(rk, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
	return rk;
}

static void test_pause_when_full_then_everything_in_order(void **state)
{
	struct mqk_config cfg = {0};
	struct mqk_inbound_counters ctr = {0};
	char errstr[1024];
	rd_kafka_t *mock = mock_with_records();
	const char *bootstraps =
		rd_kafka_mock_cluster_bootstraps(rd_kafka_handle_mock_cluster(mock));
	struct mosquitto_opt opts[] = {
		{"bootstrap_servers", (char *)bootstraps},
		{"broker_id", "unit"},
		{"inbound_news", "news -> news/{partition}"},
		{"inbound_wake", "off"},
		{"inbound_kafka.auto.offset.reset", "earliest"},
	};
	int next[PARTITIONS] = {0};
	int bad = 0;

	(void)state;
	fake_broker_reset();
	assert_int_equal(options__parse(&cfg, opts, 5, errstr, sizeof(errstr)), 0);
	struct mqk_inbound *in = inbound__new(&cfg, &ctr, errstr, sizeof(errstr));
	if (in == NULL) {
		print_error("%s\n", errstr);
	}
	assert_non_null(in);

	/* Nobody drains: the queue fills, the partitions are paused. */
	int64_t deadline = now_ms() + 30000;
	while (counter__get(&ctr.paused) == 0 && now_ms() < deadline) {
		sleep_ms(10);
	}
	assert_int_equal(counter__get(&ctr.paused), 1);
	sleep_ms(1000); /* paused: nothing more is read */
	uint64_t read_while_full = counter__get(&ctr.consumed);
	print_message("queue full: %llu records read, paused %llu time(s)\n",
		      (unsigned long long)read_while_full,
		      (unsigned long long)counter__get(&ctr.paused));
	assert_true(read_while_full >= QUEUE_MAX && read_while_full < QUEUE_MAX + 500);
	assert_int_equal(counter__get(&ctr.published), 0);

	/* Mosquitto's thread comes back: TICKs of 1,000 until everything is published. */
	deadline = now_ms() + 60000;
	while (counter__get(&ctr.published) < RECORDS && now_ms() < deadline) {
		size_t n = inbound__tick(inbound__handoff(in), &cfg.inbound, &ctr, 1000);
		for (int i = 0; i < fake_publish_count(); i++) {
			const struct fake_publish *p = fake_publish_get(i);
			int part = -1, seq = -1;
			char topic[32];
			sscanf(p->payload, "%d:%d", &part, &seq);
			snprintf(topic, sizeof(topic), "news/%d", part);
			if (part < 0 || part >= PARTITIONS || seq != next[part] ||
			    strcmp(p->topic, topic) != 0) {
				bad++;
			} else {
				next[part]++;
			}
		}
		fake_broker_reset(); /* it records at most FAKE_MAX_RECORDS */
		if (n == 0) {
			sleep_ms(5);
		}
	}
	print_message("%d records: published %llu, consumed %llu, skipped %llu, paused %llu "
		      "time(s); per partition %d and %d in order, %d out of order or wrong\n",
		      RECORDS, (unsigned long long)counter__get(&ctr.published),
		      (unsigned long long)counter__get(&ctr.consumed),
		      (unsigned long long)counter__get(&ctr.skipped),
		      (unsigned long long)counter__get(&ctr.paused), next[0], next[1], bad);
	assert_int_equal(bad, 0);
	assert_int_equal(next[0], RECORDS / PARTITIONS);
	assert_int_equal(next[1], RECORDS / PARTITIONS);
	assert_int_equal(counter__get(&ctr.consumed), RECORDS); /* none read twice */
	assert_int_equal(counter__get(&ctr.skipped), 0);
	assert_true(counter__get(&ctr.paused) >= 1);

	inbound__close(in);
	options__free(&cfg);
	rd_kafka_destroy(mock);
	log__drain();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pause_when_full_then_everything_in_order),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
