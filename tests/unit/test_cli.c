/*
 * test_cli.c - what the tools share (tools/lib: cli.h, cli_kafka.h) and the Kafka topic-name
 * rule the plugin and the tools share (common/kafka_topic.h): numbers, seconds, host:port,
 * -X properties and their errors, each edge accepted or refused as documented.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cli.h"
#include "cli_kafka.h"
#include "kafka_topic.h"

static void test_uint(void **state)
{
	uint64_t v = 7;

	(void)state;
	assert_true(cli_parse_uint("0", 0, 10, &v) && v == 0);
	assert_true(cli_parse_uint("10", 0, 10, &v) && v == 10);
	assert_true(cli_parse_uint("18446744073709551615", 0, UINT64_MAX, &v) &&
		    v == UINT64_MAX);
	v = 7;
	const char *bad[] = {"", "-1", "+1", " 1", "1 ", "0x1", "1.0", "1e3",
			     "18446744073709551616"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_false(cli_parse_uint(bad[i], 0, UINT64_MAX, &v));
	}
	assert_false(cli_parse_uint("11", 0, 10, &v));
	assert_false(cli_parse_uint("0", 1, 10, &v));
	assert_int_equal(v, 7); /* untouched on failure */
}

static void test_seconds(void **state)
{
	double v = -1;

	(void)state;
	assert_true(cli_parse_seconds("0", 0, 10, &v) && v == 0);
	assert_true(cli_parse_seconds("2.5", 0, 10, &v) && v == 2.5);
	assert_true(cli_parse_seconds(".5", 0, 10, &v) && v == 0.5);
	assert_true(cli_parse_seconds("5.", 0, 10, &v) && v == 5.0);
	v = -1;
	const char *bad[] = {"", ".", "-1", "+1", "1e3", "inf", "nan", "1.2.3", " 1", "x",
			     "10.001", "0x10"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_false(cli_parse_seconds(bad[i], 0, 10, &v));
	}
	assert_false(cli_parse_seconds("0.0001", 0.001, 10, &v));
	assert_true(v == -1);
}

static void test_hostport(void **state)
{
	char host[16];
	int port = 0;
	const char *s;

	(void)state;
	s = "example.org:1884";
	assert_null(cli_parse_hostport(s, strlen(s), 1883, host, sizeof(host), &port));
	assert_string_equal(host, "example.org");
	assert_int_equal(port, 1884);
	s = "h";
	assert_null(cli_parse_hostport(s, strlen(s), 1883, host, sizeof(host), &port));
	assert_string_equal(host, "h");
	assert_int_equal(port, 1883);
	s = "[::1]:9";
	assert_null(cli_parse_hostport(s, strlen(s), 0, host, sizeof(host), &port));
	assert_string_equal(host, "::1");
	assert_int_equal(port, 9);
	s = "a:1,b:2"; /* len picks the first of a list */
	assert_null(cli_parse_hostport(s, 3, 0, host, sizeof(host), &port));
	assert_string_equal(host, "a");
	assert_int_equal(port, 1);

	struct {
		const char *s;
		int default_port;
		const char *why;
	} bad[] = {
		{"h", 0, "no port"},
		{":1883", 1883, "an empty host"},
		{"h:", 1883, "not a port (1..65535)"},
		{"h:0", 1883, "not a port (1..65535)"},
		{"h:65536", 1883, "not a port (1..65535)"},
		{"h:-1", 1883, "not a port (1..65535)"},
		{"::1:1883", 1883, "write IPv6 addresses as [addr]:port"},
		{"[::1", 1883, "not [ipv6]:port"},
		{"[]:1", 1883, "not [ipv6]:port"},
		{"[::1]x", 1883, "not [ipv6]:port"},
		{"a-host-name-too-long:1", 1883, "host too long"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *why = cli_parse_hostport(bad[i].s, strlen(bad[i].s), bad[i].default_port,
						     host, sizeof(host), &port);
		assert_non_null(why);
		assert_string_equal(why, bad[i].why);
	}
}

static void test_props(void **state)
{
	struct cli_props props = {0};
	char errstr[512];
	char buf[64];
	size_t size = sizeof(buf);
	rd_kafka_conf_t *conf = rd_kafka_conf_new();

	(void)state;
	cli_init("test_cli");
	assert_string_equal(cli_prog(), "test_cli");
	assert_int_equal(cli_props_add(&props, "linger.ms=7"), 0);
	assert_int_equal(cli_props_add(&props, "client.id=a=b"), 0); /* the first '=' splits */
	assert_int_equal(cli_props_add(&props, "noequals"), CLI_EXIT_USAGE);
	assert_int_equal(cli_props_add(&props, "=value"), CLI_EXIT_USAGE);
	assert_int_equal(props.n, 2);
	assert_int_equal(cli_kafka_apply(conf, "127.0.0.1:9", &props, errstr, sizeof(errstr)), 0);
	assert_int_equal(rd_kafka_conf_get(conf, "linger.ms", buf, &size), RD_KAFKA_CONF_OK);
	assert_string_equal(buf, "7");
	size = sizeof(buf);
	assert_int_equal(rd_kafka_conf_get(conf, "client.id", buf, &size), RD_KAFKA_CONF_OK);
	assert_string_equal(buf, "a=b");
	size = sizeof(buf);
	assert_int_equal(rd_kafka_conf_get(conf, "bootstrap.servers", buf, &size),
			 RD_KAFKA_CONF_OK);
	assert_string_equal(buf, "127.0.0.1:9");

	assert_int_equal(cli_props_add(&props, "no.such.property=1"), 0);
	assert_int_equal(cli_props_apply(conf, &props, errstr, sizeof(errstr)), -1);
	assert_non_null(strstr(errstr, "-X no.such.property=1: "));
	assert_non_null(strstr(errstr, "No such configuration property"));
	assert_int_equal(cli_conf_set(conf, "linger.ms", "soon", errstr, sizeof(errstr)), -1);
	assert_non_null(strstr(errstr, "linger.ms=soon: "));

	props.n = 0;
	for (int i = 0; i < CLI_MAX_PROPS; i++) {
		assert_int_equal(cli_props_add(&props, "linger.ms=1"), 0);
	}
	assert_int_equal(cli_props_add(&props, "linger.ms=1"), CLI_EXIT_USAGE);
	rd_kafka_conf_destroy(conf);
}

static void test_kafka_topic(void **state)
{
	char name[251];

	(void)state;
	memset(name, 'a', sizeof(name));
	assert_true(kafka_topic__is_legal(name, 1));
	assert_true(kafka_topic__is_legal(name, KAFKA_TOPIC_MAX));
	assert_false(kafka_topic__is_legal(name, KAFKA_TOPIC_MAX + 1));
	assert_false(kafka_topic__is_legal("", 0));
	assert_false(kafka_topic__is_legal(".", 1));
	assert_false(kafka_topic__is_legal("..", 2));
	assert_true(kafka_topic__is_legal("...", 3));
	assert_true(kafka_topic__is_legal("AZaz09._-", 9));
	assert_false(kafka_topic__is_legal("a/b", 3));
	assert_false(kafka_topic__is_legal("a b", 3));
	assert_false(kafka_topic__is_legal("a\0b", 3));
	assert_true(kafka_topic__is_char('_') && kafka_topic__is_char('Z'));
	assert_false(kafka_topic__is_char('{') || kafka_topic__is_char('\0'));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uint),     cmocka_unit_test(test_seconds),
		cmocka_unit_test(test_hostport), cmocka_unit_test(test_props),
		cmocka_unit_test(test_kafka_topic),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
