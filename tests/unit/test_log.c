/*
 * test_log.c - log__printf's prefix and level, log__ratelimited's window and its
 * count of the lines it did not log.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <mosquitto.h>

#include "fake_broker.h"
#include "mqk.h"

static int setup(void **state)
{
	(void)state;
	fake_broker_reset();
	return 0;
}

static void test_printf(void **state)
{
	(void)state;
	log__printf(MOSQ_LOG_WARNING, "route %s: %d records, %s", "r1", 42, "100%");
	log__printf(MOSQ_LOG_ERR, "plain");
	assert_int_equal(fake_log_count(), 2);
	assert_int_equal(fake_log_get(0)->level, MOSQ_LOG_WARNING);
	assert_string_equal(fake_log_get(0)->text, "mosquitto_kafka: route r1: 42 records, 100%");
	assert_int_equal(fake_log_get(1)->level, MOSQ_LOG_ERR);
	assert_string_equal(fake_log_get(1)->text, "mosquitto_kafka: plain");
}

static void test_printf_long_line(void **state)
{
	char arg[2000];

	(void)state;
	memset(arg, 'a', sizeof(arg) - 1);
	arg[sizeof(arg) - 1] = '\0';
	log__printf(MOSQ_LOG_INFO, "%s", arg);
	assert_int_equal(fake_log_count(), 1);
	/* Cut at 1023 bytes after the prefix, not overflowing. */
	assert_int_equal(strlen(fake_log_get(0)->text), strlen(MQK_LOG_PREFIX) + 1023);
}

static void test_ratelimited(void **state)
{
	struct mqk_ratelimit rl = {0};

	(void)state;
	/* The first line is logged at once. */
	log__ratelimited(&rl, MOSQ_LOG_WARNING, "queue full (%d)", 1);
	assert_int_equal(fake_log_count(), 1);
	assert_string_equal(fake_log_get(0)->text, "mosquitto_kafka: queue full (1)");
	assert_int_equal(rl.suppressed, 0);
	assert_true(rl.last != 0);

	/* Then, within 10 s, only counted. */
	for (int i = 2; i <= 1000; i++) {
		log__ratelimited(&rl, MOSQ_LOG_WARNING, "queue full (%d)", i);
	}
	assert_int_equal(fake_log_count(), 1);
	assert_int_equal(rl.suppressed, 999);

	/* 9 s later: still counted. */
	rl.last = time(NULL) - 9;
	log__ratelimited(&rl, MOSQ_LOG_WARNING, "queue full (%d)", 1001);
	assert_int_equal(fake_log_count(), 1);
	assert_int_equal(rl.suppressed, 1000);

	/* 10 s later: logged, with how many were not. */
	rl.last = time(NULL) - 10;
	log__ratelimited(&rl, MOSQ_LOG_ERR, "queue full (%d)", 1002);
	assert_int_equal(fake_log_count(), 2);
	assert_int_equal(fake_log_get(1)->level, MOSQ_LOG_ERR);
	assert_string_equal(fake_log_get(1)->text,
			    "mosquitto_kafka: queue full (1002) (1000 more like it not logged)");
	assert_int_equal(rl.suppressed, 0);

	/* And the window starts again. */
	log__ratelimited(&rl, MOSQ_LOG_ERR, "x");
	assert_int_equal(fake_log_count(), 2);
	assert_int_equal(rl.suppressed, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_printf, setup),
		cmocka_unit_test_setup(test_printf_long_line, setup),
		cmocka_unit_test_setup(test_ratelimited, setup),
	};
	return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
