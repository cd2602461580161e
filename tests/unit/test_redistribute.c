/*
 * test_redistribute.c - redistribute mode's look-up and hold queue (redistribute.c), fed
 * with the presence records the plugin itself writes (presence.c): what one broker
 * produces, another reads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fake_broker.h"
#include "mosquitto_kafka.h"
#include "mqk.h"

static struct mqk_cmd_config cc = {.broker_topic = "cmd.{broker}.in"};
static struct mqk_redistributor *r;
static char err[512];

static int setup(void **state)
{
	(void)state;
	r = redistribute__new(&cc, "me");
	return r == NULL;
}

static int teardown(void **state)
{
	(void)state;
	redistribute__free(r);
	return 0;
}

/* Applies a record, as the consumer would hand it over. */
static int apply(const char *key, size_t key_len, const char *value, size_t value_len)
{
	rd_kafka_message_t rkm = {.key = (void *)key,
				  .key_len = key_len,
				  .payload = (void *)value,
				  .len = value_len};
	return redistribute__presence(r, &rkm, err, sizeof(err));
}

/* broker's "up" (boot) or "down" record, made by presence.c. */
static void broker(const char *id, int64_t boot, bool up)
{
	struct mqk_origin origin;
	char *key, *value;
	size_t key_len, value_len;

	record__origin_init(&origin, id, boot);
	assert_int_equal(
		presence__broker_record(&origin, up, 1000, &key, &key_len, &value, &value_len), 0);
	assert_int_equal(apply(key, key_len, value, value_len), 0);
	free(key);
	free(value);
}

/* client connected to (or left) broker of that boot at ts ms, made by presence.c. */
static void client(const char *id, const char *broker_id, int64_t boot, bool connected,
		   int64_t ts)
{
	struct mqk_origin origin;
	struct mqk_presence_event *ev = calloc(1, sizeof(*ev) + strlen(id) + 1);
	char *key, *value;
	size_t key_len, value_len;

	assert_non_null(ev);
	record__origin_init(&origin, broker_id, boot);
	strcpy(ev->client_id, id);
	ev->connected = connected;
	ev->timestamp_ms = ts;
	assert_int_equal(presence__client_record(&origin, ev, &key, &key_len, &value, &value_len),
			 0);
	assert_int_equal(apply(key, key_len, value, value_len), 0);
	free(key);
	free(value);
	free(ev);
}

static const char *where(const char *id, uint64_t seq)
{
	static char buf[256];
	struct mqk_command cmd = {.client_id = id};
	return redistribute__topic(r, &cmd, seq, buf, sizeof(buf));
}

static void test_where(void **state)
{
	(void)state;
	assert_null(where("dev", 0)); /* nobody knows it */
	broker("b1", 10, true);
	broker("b2", 20, true);
	client("dev", "b1", 10, true, 100);
	assert_string_equal(where("dev", 0), "cmd.b1.in");
	/* It moved: the newer timestamp wins; then b2's tombstone leaves b1's record. */
	client("dev", "b2", 20, true, 200);
	assert_string_equal(where("dev", 0), "cmd.b2.in");
	client("dev", "b1", 10, false, 0);
	assert_string_equal(where("dev", 0), "cmd.b2.in");
	/* b2 stops cleanly: nowhere. It starts again: its old boot's records do not count. */
	broker("b2", 20, false);
	assert_null(where("dev", 0));
	broker("b2", 21, true);
	assert_null(where("dev", 0));
	client("dev", "b2", 21, true, 300);
	assert_string_equal(where("dev", 0), "cmd.b2.in");
}

static void test_not_here_after_all(void **state)
{
	uint64_t seq;

	(void)state;
	broker("me", 1, true);
	client("dev", "me", 1, true, 100);
	/* The table says here, mosquitto's thread said not: wait for news of the client. */
	seq = redistribute__seq(r);
	assert_null(where("dev", seq));
	assert_string_equal(where("dev", 0), "cmd.me.in"); /* no such doubt: here */
	client("dev", "b3", 5, true, 150);
	assert_string_equal(where("dev", seq), "cmd.b3.in");
}

static void test_malformed(void **state)
{
	(void)state;
	assert_int_equal(apply(NULL, 0, "x", 1), -1);
	assert_non_null(strstr(err, "no key"));
	assert_int_equal(apply("b1/x", 4, "{nope", 5), -1);
	assert_string_equal(err, "key 'b1/x': the value is not JSON");
	assert_int_equal(apply("b\0x", 3, "{}", 2), -1);
	const char *v = "{\"broker\":\"b1\",\"state\":\"sideways\",\"boot\":1,\"timestamp\":1}";
	assert_int_equal(apply("b1", 2, v, strlen(v)), -1);
	assert_non_null(strstr(err, "is not \"up\" or \"down\""));
	assert_int_equal(redistribute__seq(r), 0); /* none applied */
}

static void test_hold_queue(void **state)
{
	struct mqk_command cmds[200];
	uint64_t seq;

	(void)state;
	assert_null(redistribute__due(r, 1000000, &seq));
	/* Past the first allocation (64) while some are taken: order kept. */
	for (int i = 0; i < 50; i++) {
		assert_int_equal(redistribute__hold(r, &cmds[i], 100 + i, (uint64_t)i), 0);
	}
	for (int i = 0; i < 30; i++) {
		assert_ptr_equal(redistribute__due(r, 1000, &seq), &cmds[i]);
		assert_int_equal(seq, i);
	}
	for (int i = 50; i < 200; i++) {
		assert_int_equal(redistribute__hold(r, &cmds[i], 100 + i, (uint64_t)i), 0);
	}
	assert_null(redistribute__due(r, 129, &seq)); /* cmds[30] is due at 130 */
	for (int i = 30; i < 200; i++) {
		assert_ptr_equal(redistribute__due(r, 100 + i, &seq), &cmds[i]);
		assert_int_equal(seq, i);
	}
	assert_null(redistribute__due(r, 1000000, &seq));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_where, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_here_after_all, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hold_queue, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
