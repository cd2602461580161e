/*
 * test_handoff.c - the queue between the commands thread and mosquitto's thread
 * (handoff.c), the presence records (presence.c) and the wake connection's parsing and
 * credentials (wake.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "fake_broker.h"
#include "mosquitto_kafka.h"
#include "mqk.h"

static struct mqk_handoff h;

static int setup(void **state)
{
	(void)state;
	return handoff__init(&h);
}

static int teardown(void **state)
{
	(void)state;
	handoff__free(&h);
	return 0;
}

static struct mqk_command *command(const char *id)
{
	struct mqk_command *cmd = calloc(1, sizeof(*cmd));
	assert_non_null(cmd);
	cmd->client_id = id;
	cmd->topic = "t";
	atomic_init(&cmd->state, MQK_CMD_QUEUED);
	return cmd;
}

static void test_push_take_pop_in_order(void **state)
{
	struct mqk_command *a = command("a"), *b = command("b"), *c = command("c");
	size_t n;

	(void)state;
	assert_null(handoff__take(&h, 10, &n));
	assert_int_equal(n, 0);
	assert_true(handoff__push(&h, a));  /* the first since the last TICK: wake */
	assert_false(handoff__push(&h, b)); /* mosquitto's thread is woken already */
	assert_ptr_equal(handoff__take(&h, 1, &n), a);
	assert_int_equal(n, 1);
	assert_true(handoff__push(&h, c) == false); /* b still not taken */
	assert_ptr_equal(handoff__take(&h, 10, &n), b);
	assert_int_equal(n, 2);
	assert_ptr_equal(b->next, c);
	assert_null(handoff__take(&h, 10, &n)); /* all taken */
	assert_int_equal(h.count, 3);
	assert_ptr_equal(handoff__head(&h), a);
	assert_ptr_equal(handoff__pop(&h), a);
	assert_ptr_equal(handoff__pop(&h), b);
	assert_ptr_equal(handoff__pop(&h), c);
	assert_null(handoff__pop(&h));
	assert_int_equal(h.count, 0);
	free(a);
	free(b);
	free(c);
	/* Empty again: the next push wakes. */
	struct mqk_command *d = command("d");
	assert_true(handoff__push(&h, d));
	/* handoff__free frees what is left. */
}

static void test_events(void **state)
{
	struct mqk_presence_event *ev;

	(void)state;
	assert_null(handoff__take_events(&h));
	assert_int_equal(handoff__push_event(&h, "dev1", true, 1000), 0);
	assert_int_equal(handoff__push_event(&h, "dev1", false, 2000), 0);
	ev = handoff__take_events(&h);
	assert_non_null(ev);
	assert_string_equal(ev->client_id, "dev1");
	assert_true(ev->connected);
	assert_int_equal(ev->timestamp_ms, 1000);
	assert_non_null(ev->next);
	assert_false(ev->next->connected);
	assert_null(ev->next->next);
	assert_null(handoff__take_events(&h));
	free(ev->next);
	free(ev);
}

static void test_presence_records(void **state)
{
	struct mqk_origin origin;
	struct mqk_presence_event *ev = calloc(1, sizeof(*ev) + 8);
	char *key, *value;
	size_t key_len, value_len;
	cJSON *json;

	(void)state;
	record__origin_init(&origin, "b1", 1700000000000000);
	strcpy(ev->client_id, "a/b+c");
	ev->connected = true;
	ev->timestamp_ms = 1700000000123;
	assert_int_equal(presence__client_record(&origin, ev, &key, &key_len, &value, &value_len),
			 0);
	assert_int_equal(key_len, 8);
	assert_memory_equal(key, "b1/a/b+c", 8);
	json = cJSON_ParseWithLength(value, value_len);
	assert_string_equal(cJSON_GetObjectItem(json, MQK_PRESENCE_BROKER)->valuestring, "b1");
	assert_string_equal(cJSON_GetObjectItem(json, MQK_PRESENCE_CLIENT_ID)->valuestring,
			    "a/b+c");
	assert_string_equal(cJSON_GetObjectItem(json, MQK_PRESENCE_STATE)->valuestring,
			    MQK_PRESENCE_CONNECTED);
	assert_true(cJSON_GetObjectItem(json, MQK_PRESENCE_BOOT)->valuedouble ==
		    1700000000000000.0);
	assert_true(cJSON_GetObjectItem(json, MQK_PRESENCE_TIMESTAMP)->valuedouble ==
		    1700000000123.0);
	cJSON_Delete(json);
	free(key);
	free(value);

	ev->connected = false; /* a tombstone */
	assert_int_equal(presence__client_record(&origin, ev, &key, &key_len, &value, &value_len),
			 0);
	assert_memory_equal(key, "b1/a/b+c", 8);
	assert_null(value);
	assert_int_equal(value_len, 0);
	free(key);
	free(ev);

	assert_int_equal(
		presence__broker_record(&origin, false, 5, &key, &key_len, &value, &value_len), 0);
	assert_string_equal(key, "b1");
	json = cJSON_ParseWithLength(value, value_len);
	assert_string_equal(cJSON_GetObjectItem(json, MQK_PRESENCE_STATE)->valuestring,
			    MQK_PRESENCE_DOWN);
	assert_null(cJSON_GetObjectItem(json, MQK_PRESENCE_CLIENT_ID));
	cJSON_Delete(json);
	free(key);
	free(value);
}

static void test_wake_options_and_credentials(void **state)
{
	struct mqk_wake w, w2;
	char err[256];

	(void)state;
	assert_int_equal(wake__init(&w, "auto", err, sizeof(err)), 0);
	assert_true(w.automatic);
	assert_int_equal(strncmp(w.client_id, "mqk-wake-", 9), 0);
	assert_int_equal(strlen(w.client_id), 9 + 16);
	assert_int_equal(strlen(w.password), 32);
	assert_true(wake__is_own(&w, w.client_id, w.password));
	assert_false(wake__is_own(&w, w.client_id, "x"));
	assert_false(wake__is_own(&w, "someone", w.password));
	assert_false(wake__is_own(&w, NULL, NULL));
	assert_int_equal(wake__init(&w2, "off", err, sizeof(err)), 0);
	assert_true(w2.off);
	assert_string_not_equal(w.client_id, w2.client_id); /* random */
	assert_string_not_equal(w.password, w2.password);
	assert_int_equal(wake__init(&w, "127.0.0.1:1883", err, sizeof(err)), 0);
	assert_string_equal(w.host, "127.0.0.1");
	assert_string_equal(w.port, "1883");
	assert_int_equal(wake__init(&w, "[::1]:1884", err, sizeof(err)), 0);
	assert_string_equal(w.host, "::1");
	assert_string_equal(w.port, "1884");
	const char *bad[] = {"sometimes", "host:", ":1883", "h:0", "h:65536", "h:12x"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(wake__init(&w, bad[i], err, sizeof(err)), -1);
		char expected[256];
		snprintf(expected, sizeof(expected),
			 "plugin_opt_commands_wake: '%s' is not auto, off or host:port", bad[i]);
		assert_string_equal(err, expected);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_push_take_pop_in_order),
		T(test_events),
		T(test_presence_records),
		T(test_wake_options_and_credentials),
#undef T
	};
	return cmocka_run_group_tests_name("handoff", tests, NULL, NULL);
}
