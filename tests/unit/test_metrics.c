/*
 * test_metrics.c - metrics.c and kstats.c without a broker: the rendering (HELP/TYPE, the
 * counters of the lists, per route), librdkafka's statistics JSON parsed (brokers by node
 * id, consumer lag without partition -1 or unknown lags), the /healthz rule, and the
 * start-up errors of metrics_listen and metrics_textfile.
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
static struct mqk_buffer buf;
static struct mqk_metrics *m;
static char err[1024];

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int setup(void **state)
{
	(void)state;
	fake_broker_reset();
	kstats__reset();
	memset(&cfg, 0, sizeof(cfg));
	memset(routes, 0, sizeof(routes));
	memset(&buf, 0, sizeof(buf));
	routes[0].name = (char *)"spectrum";
	routes[1].name = (char *)"status-2";
	cfg.routes = routes;
	cfg.route_count = 2;
	cfg.broker_id = (char *)"b1";
	cfg.durability = MQK_DURABILITY_MEMORY;
	cfg.buffer_mb = 1;
	cfg.health_max_unacked_s = 30;
	cfg.metrics_listen = (char *)"127.0.0.1:0";
	assert_int_equal(stats__init(&st, &cfg), 0);
	m = metrics__new(&cfg, &buf, err, sizeof(err));
	assert_non_null(m);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	metrics__free(m);
	stats__free(&st);
	kstats__reset();
	return 0;
}

static char *render(bool commands_on)
{
	static struct mqk_bytes out;
	assert_int_equal(metrics__render(m, &st, &cfg, commands_on, &out), 0);
	assert_int_equal(bytes__printf(&out, "%c", '\0'), 0);
	return out.data;
}

static void test_render_counters(void **state)
{
	(void)state;
	st.received = 7;
	atomic_store(&st.totals.delivered, 5);
	atomic_store(&routes[0].counters.delivered, 3);
	atomic_store(&routes[1].counters.delivered, 2);
	atomic_store(&routes[1].counters.produced, 4);
	char *t = render(false);
	assert_non_null(strstr(t, "# HELP mosquitto_kafka_received_total MESSAGE events seen.\n"
				  "# TYPE mosquitto_kafka_received_total counter\n"
				  "mosquitto_kafka_received_total{broker=\"b1\"} 7\n"));
	assert_non_null(strstr(t, "mosquitto_kafka_delivered_total{broker=\"b1\"} 5\n"));
	assert_non_null(strstr(t, "# TYPE mosquitto_kafka_route_delivered_total counter\n"
				  "mosquitto_kafka_route_delivered_total{broker=\"b1\",route="
				  "\"spectrum\"} 3\n"
				  "mosquitto_kafka_route_delivered_total{broker=\"b1\",route="
				  "\"status-2\"} 2\n"));
	assert_non_null(strstr(t,
			       "mosquitto_kafka_route_in_flight{broker=\"b1\",route=\"status-2\"} "
			       "2\n"));
	assert_non_null(strstr(t, "mosquitto_kafka_buffer_limit_bytes{broker=\"b1\"} 1048576\n"));
	assert_non_null(strstr(t, "mosquitto_kafka_journal_errors_total{broker=\"b1\"} 0\n"));
	/* Commands off: no command counters. */
	assert_null(strstr(t, "mosquitto_kafka_commands_consumed_total"));
	atomic_store(&st.commands.dead_lettered, 9);
	t = render(true);
	assert_non_null(
		strstr(t, "mosquitto_kafka_commands_dead_lettered_total{broker=\"b1\"} 9\n"));
	/* Every sample has its HELP and TYPE before it. */
	for (char *line = strstr(t, "\nmosquitto_kafka_"); line; line = strstr(line + 1, "\nmos")) {
		char name[128];
		sscanf(line + 1, "%127[a-z_]", name);
		char help[160];
		snprintf(help, sizeof(help), "# TYPE %s ", name);
		if (strstr(t, help) == NULL) {
			/* A histogram's samples: <name>_bucket, _sum, _count. */
			char *suffix = strrchr(name, '_');
			assert_non_null(suffix);
			assert_true(!strcmp(suffix, "_bucket") || !strcmp(suffix, "_sum") ||
				    !strcmp(suffix, "_count"));
			*suffix = '\0';
			snprintf(help, sizeof(help), "# TYPE %s histogram\n", name);
			assert_non_null(strstr(t, help));
		}
	}
}

/* latency.c: observations land in the right bucket; the text is a Prometheus histogram. */
static void test_latency_histograms(void **state)
{
	(void)state;
	latency__reset();
	latency__observe(MQK_LATENCY_capture_to_produce, 50);      /* <= 100 µs */
	latency__observe(MQK_LATENCY_capture_to_produce, 100);     /* <= 100 µs: bounds hold */
	latency__observe(MQK_LATENCY_capture_to_produce, 101);     /* <= 200 µs */
	latency__observe(MQK_LATENCY_capture_to_produce, -5);      /* a clock step: 0 */
	latency__observe(MQK_LATENCY_produce_to_ack, 4200);        /* <= 5 ms */
	latency__observe(MQK_LATENCY_produce_to_ack, 20000000);    /* over 10 s: +Inf */
	assert_int_equal(latency__count(MQK_LATENCY_capture_to_produce), 4);
	assert_int_equal(latency__count(MQK_LATENCY_produce_to_ack), 2);
	assert_int_equal(latency__count(MQK_LATENCY_capture_to_append), 0);
	char *t = render(false);
	assert_non_null(strstr(t, "# TYPE mosquitto_kafka_capture_to_produce_seconds histogram\n"));
	assert_non_null(strstr(t, "mosquitto_kafka_capture_to_produce_seconds_bucket{broker=\"b1\","
				  "le=\"0.0001\"} 3\n"
				  "mosquitto_kafka_capture_to_produce_seconds_bucket{broker=\"b1\","
				  "le=\"0.0002\"} 4\n"));
	assert_non_null(strstr(t, "mosquitto_kafka_capture_to_produce_seconds_sum{broker=\"b1\"} "
				  "0.000251\nmosquitto_kafka_capture_to_produce_seconds_count{broker="
				  "\"b1\"} 4\n"));
	assert_non_null(strstr(t, "mosquitto_kafka_produce_to_ack_seconds_bucket{broker=\"b1\","
				  "le=\"0.003\"} 0\n"
				  "mosquitto_kafka_produce_to_ack_seconds_bucket{broker=\"b1\","
				  "le=\"0.005\"} 1\n"));
	assert_non_null(strstr(t, "mosquitto_kafka_produce_to_ack_seconds_bucket{broker=\"b1\","
				  "le=\"10\"} 1\n"
				  "mosquitto_kafka_produce_to_ack_seconds_bucket{broker=\"b1\","
				  "le=\"+Inf\"} 2\n"));
	assert_non_null(strstr(t, "mosquitto_kafka_capture_to_append_seconds_count{broker=\"b1\"} "
				  "0\n"));
	latency__reset();
	assert_int_equal(latency__count(MQK_LATENCY_capture_to_produce), 0);
}

/* Shaped as librdkafka 2.0.2 and 2.8.0 write it (fields cut to those read). */
static const char producer_json[] =
	"{\"name\":\"p#producer-1\",\"type\":\"producer\",\"brokers\":{"
	"\"127.0.0.1:9092/bootstrap\":{\"name\":\"127.0.0.1:9092/bootstrap\",\"nodeid\":-1,"
	"\"state\":\"UP\"},"
	"\"127.0.0.1:9092/1\":{\"name\":\"127.0.0.1:9092/1\",\"nodeid\":1,\"state\":\"UP\","
	"\"outbuf_cnt\":2,\"waitresp_cnt\":1,\"txerrs\":3,\"rxerrs\":4,\"req_timeouts\":5,"
	"\"rtt\":{\"avg\":1500,\"p99\":25000}},"
	"\"127.0.0.1:9093/2\":{\"name\":\"127.0.0.1:9093/2\",\"nodeid\":2,\"state\":\"DOWN\","
	"\"rtt\":{\"avg\":0,\"p99\":0}}},\"topics\":{}}";
static const char consumer_json[] =
	"{\"type\":\"consumer\",\"brokers\":{\"h:1/1\":{\"name\":\"h:1/1\",\"nodeid\":1,"
	"\"source\":\"learned\",\"state\":\"UP\"},\"GroupCoordinator\":{\"name\":"
	"\"GroupCoordinator\",\"nodeid\":1,\"source\":\"logical\",\"state\":\"UP\"}},\"topics\":{"
	"\"cmds\":{\"partitions\":{"
	"\"0\":{\"partition\":0,\"consumer_lag\":12,\"consumer_lag_stored\":13},"
	"\"1\":{\"partition\":1,\"consumer_lag\":-1},"
	"\"-1\":{\"partition\":-1,\"consumer_lag\":-1}}}}}";

static void test_librdkafka_statistics(void **state)
{
	(void)state;
	assert_int_equal(kstats__last_up_ms(), 0);
	assert_int_equal(kstats__store(MQK_KCLIENT_PRODUCER, "not json", 8), -1);
	assert_int_equal(kstats__store(MQK_KCLIENT_PRODUCER, "{}", 2), -1);
	assert_int_equal(kstats__store(MQK_KCLIENT_PRODUCER, producer_json, strlen(producer_json)),
			 0);
	assert_int_equal(kstats__store(MQK_KCLIENT_COMMANDS, consumer_json, strlen(consumer_json)),
			 0);
	assert_true(kstats__last_up_ms() > now_ms() - 5000);
	char *t = render(true);
#define L "{broker=\"b1\",client=\"producer\",kafka_broker=\"127.0.0.1:9092/1\",kafka_node=\"1\"}"
	assert_non_null(strstr(t, "mosquitto_kafka_kafka_broker_up" L " 1\n"));
	assert_non_null(strstr(t,
			       "mosquitto_kafka_kafka_broker_up{broker=\"b1\",client=\"producer\","
			       "kafka_broker=\"127.0.0.1:9093/2\",kafka_node=\"2\"} 0\n"));
	assert_non_null(strstr(t, "mosquitto_kafka_kafka_broker_rtt_avg_seconds" L " 0.001500\n"));
	assert_non_null(strstr(t, "mosquitto_kafka_kafka_broker_rtt_p99_seconds" L " 0.025000\n"));
	assert_non_null(strstr(t, "mosquitto_kafka_kafka_broker_requests_waiting_send" L " 2\n"));
	assert_non_null(
		strstr(t, "mosquitto_kafka_kafka_broker_requests_waiting_response" L " 1\n"));
	assert_non_null(strstr(t, "mosquitto_kafka_kafka_broker_tx_errors_total" L " 3\n"));
	assert_non_null(strstr(t, "mosquitto_kafka_kafka_broker_rx_errors_total" L " 4\n"));
	assert_non_null(strstr(t, "mosquitto_kafka_kafka_broker_request_timeouts_total" L " 5\n"));
#undef L
	assert_null(strstr(t, "bootstrap"));        /* nodeid -1 */
	assert_null(strstr(t, "GroupCoordinator")); /* logical */
	assert_non_null(strstr(t, "kafka_broker_up{broker=\"b1\",client=\"commands\",kafka_broker="
				  "\"h:1/1\",kafka_node=\"1\"} 1\n"));
	assert_non_null(strstr(t, "mosquitto_kafka_commands_consumer_lag{broker=\"b1\",topic="
				  "\"cmds\",partition=\"0\"} 12\n"));
	assert_null(strstr(t, "partition=\"1\"")); /* unknown lag */
	assert_null(strstr(t, "partition=\"-1\""));
}

static void test_health_rule(void **state)
{
	char body[512];

	(void)state;
	/* Just started, nothing heard yet: the limit runs from the start. */
	assert_int_equal(metrics__health(m, body, sizeof(body)), 200);
	assert_string_equal(body,
			    "{\"status\":\"ok\",\"reason\":\"every record acknowledged, Kafka "
			    "last heard from 0 s ago, buffer 0 % full\"}\n");
	/* A record unacknowledged for 40 s. */
	atomic_store(&buf.oldest_ms, now_ms() - 40000);
	atomic_store(&buf.acked_ms, now_ms());
	assert_int_equal(metrics__health(m, body, sizeof(body)), 503);
	assert_string_equal(body, "{\"status\":\"unhealthy\",\"reason\":\"oldest record not "
				  "acknowledged by Kafka for 40 s (limit 30)\"}\n");
	/* 29 s: still fine. */
	atomic_store(&buf.oldest_ms, now_ms() - 29000);
	assert_int_equal(metrics__health(m, body, sizeof(body)), 200);
	/* Idle, but Kafka silent for 31 s (no ack, no broker up). */
	atomic_store(&buf.oldest_ms, 0);
	atomic_store(&buf.acked_ms, now_ms() - 31000);
	assert_int_equal(metrics__health(m, body, sizeof(body)), 503);
	assert_string_equal(body, "{\"status\":\"unhealthy\",\"reason\":\"no acknowledgement from "
				  "Kafka and no Kafka broker up for 31 s (limit 30)\"}\n");
	/* Idle with a broker up in the statistics: healthy. */
	assert_int_equal(kstats__store(MQK_KCLIENT_PRODUCER, producer_json, strlen(producer_json)),
			 0);
	assert_int_equal(metrics__health(m, body, sizeof(body)), 200);
	/* 90 % of buffer_mb in use. */
	atomic_store(&buf.head, (uint64_t)(1048576 * 0.9) + 1);
	assert_int_equal(metrics__health(m, body, sizeof(body)), 503);
	assert_string_equal(body, "{\"status\":\"unhealthy\",\"reason\":\"the buffer is 90 % full "
				  "(limit 90 %)\"}\n");
	atomic_store(&buf.head, 0);
	assert_true(strstr(render(false), "mosquitto_kafka_healthy{broker=\"b1\"} 1\n") != NULL);
}

static void test_start_errors(void **state)
{
	struct mqk_config c = cfg;

	(void)state;
	c.metrics_listen = (char *)"192.0.2.1:9883"; /* not an address of this machine */
	assert_null(metrics__new(&c, &buf, err, sizeof(err)));
	assert_string_equal(err, "plugin_opt_metrics_listen: '192.0.2.1:9883': cannot listen on "
				 "192.0.2.1 port 9883: Cannot assign requested address");
	c.metrics_listen = NULL;
	c.metrics_textfile = (char *)"/nonexistent-mqk-dir/m.prom";
	assert_null(metrics__new(&c, &buf, err, sizeof(err)));
	assert_string_equal(err, "plugin_opt_metrics_textfile: directory '/nonexistent-mqk-dir': "
				 "No such file or directory");
	c.metrics_textfile = (char *)"/etc/passwd/m.prom";
	assert_null(metrics__new(&c, &buf, err, sizeof(err)));
	assert_string_equal(err, "plugin_opt_metrics_textfile: '/etc/passwd' is not a directory");
	c.metrics_textfile = NULL;
	assert_null(metrics__new(&c, &buf, err, sizeof(err))); /* neither: nothing to start */
}

/* One list per family: $SYS topics, metrics, and the routes' topics rebuilt after a swap. */
struct seen {
	int total, per_route;
	char first[128], last[128];
};

static void count(void *arg, const struct mqk_counter_info *c)
{
	struct seen *s = arg;
	assert_non_null(c->help);
	assert_int_equal(strncmp(c->metric, "mosquitto_kafka_", 16), 0);
	if (s->total++ == 0) {
		snprintf(s->first, sizeof(s->first), "%s %s", c->sys_topic, c->metric);
	}
	snprintf(s->last, sizeof(s->last), "%s %s", c->sys_topic, c->metric);
	s->per_route += c->family == MQK_COUNTERS_ROUTE;
}

static void test_counter_lists(void **state)
{
	struct seen s = {0};
	struct mqk_route three[3] = {
		{.name = (char *)"x"}, {.name = (char *)"y"}, {.name = (char *)"z"}};

	(void)state;
	stats__each_counter(count, &s);
	assert_int_equal(s.total, 3 + 10 + 2 + 12 + 5);
	assert_int_equal(s.per_route, 10);
	assert_string_equal(s.first, "$SYS/broker/kafka/received mosquitto_kafka_received_total");
	assert_string_equal(s.last,
			    "$SYS/broker/kafka/inbound/wakes mosquitto_kafka_inbound_wakes_total");
	/* Part B's reload swaps cfg->routes, then calls this. */
	int before = st.topic_count;
	cfg.routes = three;
	cfg.route_count = 3;
	assert_int_equal(stats__routes_changed(&st, &cfg), 0);
	assert_int_equal(st.topic_count, before + 11);
	assert_string_equal(st.topics[st.topic_count - 1], "$SYS/broker/kafka/routes/z/in_flight");
	assert_non_null(strstr(render(false), "route=\"z\""));
	cfg.routes = routes;
	cfg.route_count = 2;
}

/* What the TICK costs once a second: printed, bounded loosely (valgrind runs it too). */
static void test_render_cost(void **state)
{
	static struct mqk_route many[100];
	static char names[100][16];
	struct mqk_bytes out = {0};
	struct timespec t0, t1;

	(void)state;
	assert_int_equal(kstats__store(MQK_KCLIENT_PRODUCER, producer_json, strlen(producer_json)),
			 0);
	for (int n = 2; n <= 100; n += 98) {
		for (int i = 0; i < n; i++) {
			snprintf(names[i], sizeof(names[i]), "route-%d", i);
			memset(&many[i], 0, sizeof(many[i]));
			many[i].name = names[i];
			atomic_store(&many[i].counters.delivered, 123456789);
		}
		cfg.routes = many;
		cfg.route_count = n;
		int rounds = 200;
		assert_int_equal(metrics__render(m, &st, &cfg, true, &out), 0); /* grown once */
		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (int r = 0; r < rounds; r++) {
			assert_int_equal(metrics__render(m, &st, &cfg, true, &out), 0);
		}
		clock_gettime(CLOCK_MONOTONIC, &t1);
		double us = ((double)(t1.tv_sec - t0.tv_sec) * 1e6 +
			     (double)(t1.tv_nsec - t0.tv_nsec) / 1e3) /
			    rounds;
		printf("render: %d routes, %zu bytes, %.1f us per rendering\n", n, out.len, us);
		assert_true(us < 50000);
	}
	cfg.routes = routes;
	cfg.route_count = 2;
	free(out.data);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_render_counters), T(test_librdkafka_statistics), T(test_health_rule),
		T(test_start_errors),    T(test_counter_lists),         T(test_render_cost),
		T(test_latency_histograms),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
