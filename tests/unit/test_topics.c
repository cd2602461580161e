/*
 * test_topics.c - the set of known Kafka topics (topics.c): lookups, updates, growth past
 * many names, and the bound (a full set forgets everything before it takes a new name).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mqk.h"

static void test_empty(void **state)
{
	struct mqk_topics t;
	int64_t retry_at = 42;

	(void)state;
	assert_int_equal(topics__init(&t, 10), 0);
	assert_false(topics__get(&t, "a", &retry_at));
	assert_int_equal(retry_at, 42); /* untouched when absent */
	assert_int_equal(topics__count(&t), 0);
	topics__free(&t);
	topics__free(&t); /* twice is harmless */
}

static void test_put_get_update(void **state)
{
	struct mqk_topics t;
	int64_t retry_at = -1;

	(void)state;
	topics__init(&t, 10);
	assert_int_equal(topics__put(&t, "mqtt.a", 0), 0);
	assert_int_equal(topics__put(&t, "mqtt.b", 12345), 0);
	assert_int_equal(topics__count(&t), 2);
	assert_true(topics__get(&t, "mqtt.a", &retry_at));
	assert_int_equal(retry_at, 0);
	assert_true(topics__get(&t, "mqtt.b", &retry_at));
	assert_int_equal(retry_at, 12345);
	assert_false(topics__get(&t, "mqtt.c", &retry_at));
	assert_false(topics__get(&t, "mqtt.", &retry_at));   /* a prefix is another name */
	assert_false(topics__get(&t, "mqtt.aa", &retry_at)); /* and so is a longer one */
	/* A failed creation that succeeds later: updated in place, not added twice. */
	assert_int_equal(topics__put(&t, "mqtt.b", 0), 0);
	assert_true(topics__get(&t, "mqtt.b", &retry_at));
	assert_int_equal(retry_at, 0);
	assert_int_equal(topics__count(&t), 2);
	/* The set keeps its own copy of the name. */
	char name[] = "mqtt.copy";
	assert_int_equal(topics__put(&t, name, 0), 0);
	name[0] = 'X';
	assert_true(topics__get(&t, "mqtt.copy", &retry_at));
	assert_false(topics__get(&t, name, &retry_at));
	topics__free(&t);
}

/* 20,000 names: the table doubles many times and every name is still found. */
static void test_many_names(void **state)
{
	struct mqk_topics t;
	char name[64];
	int64_t retry_at;

	(void)state;
	topics__init(&t, 100000);
	for (int i = 0; i < 20000; i++) {
		snprintf(name, sizeof(name), "dyn.device-%d", i);
		assert_int_equal(topics__put(&t, name, i % 3 ? 0 : 1000 + i), 0);
	}
	assert_int_equal(topics__count(&t), 20000);
	for (int i = 0; i < 20000; i++) {
		snprintf(name, sizeof(name), "dyn.device-%d", i);
		assert_true(topics__get(&t, name, &retry_at));
		assert_int_equal(retry_at, i % 3 ? 0 : 1000 + i);
	}
	for (int i = 20000; i < 21000; i++) {
		snprintf(name, sizeof(name), "dyn.device-%d", i);
		assert_false(topics__get(&t, name, &retry_at));
	}
	/* At most half full. */
	assert_true(t.slot_count >= 2 * t.count);
	topics__free(&t);
}

/* Bounded: with max_names names in, a new one makes the set forget the others. */
static void test_bound_forgets_all(void **state)
{
	struct mqk_topics t;
	int64_t retry_at;

	(void)state;
	topics__init(&t, 3);
	assert_int_equal(topics__put(&t, "a", 0), 0);
	assert_int_equal(topics__put(&t, "b", 0), 0);
	assert_int_equal(topics__put(&t, "c", 0), 0);
	/* Updating a name already in is not a new name: nothing is forgotten. */
	assert_int_equal(topics__put(&t, "c", 77), 0);
	assert_int_equal(topics__count(&t), 3);
	assert_int_equal(topics__put(&t, "d", 0), 1);
	assert_int_equal(topics__count(&t), 1);
	assert_true(topics__get(&t, "d", &retry_at));
	assert_false(topics__get(&t, "a", &retry_at));
	assert_false(topics__get(&t, "b", &retry_at));
	assert_false(topics__get(&t, "c", &retry_at));
	/* And it fills again. */
	assert_int_equal(topics__put(&t, "a", 0), 0);
	assert_int_equal(topics__put(&t, "b", 0), 0);
	assert_int_equal(topics__count(&t), 3);
	topics__free(&t);
}

static void test_clear(void **state)
{
	struct mqk_topics t;
	int64_t retry_at;

	(void)state;
	topics__init(&t, 10);
	topics__put(&t, "a", 0);
	topics__clear(&t);
	assert_int_equal(topics__count(&t), 0);
	assert_false(topics__get(&t, "a", &retry_at));
	assert_int_equal(topics__put(&t, "a", 5), 0);
	assert_true(topics__get(&t, "a", &retry_at));
	assert_int_equal(retry_at, 5);
	topics__free(&t);
}

/* Names of the longest legal length (249 bytes), and names that differ in one byte. */
static void test_long_and_similar_names(void **state)
{
	struct mqk_topics t;
	char a[250], b[250];
	int64_t retry_at;

	(void)state;
	memset(a, 'x', 249);
	a[249] = '\0';
	memcpy(b, a, sizeof(b));
	b[248] = 'y';
	topics__init(&t, 10);
	assert_int_equal(topics__put(&t, a, 0), 0);
	assert_true(topics__get(&t, a, &retry_at));
	assert_false(topics__get(&t, b, &retry_at));
	assert_int_equal(topics__put(&t, b, 9), 0);
	assert_true(topics__get(&t, b, &retry_at));
	assert_int_equal(retry_at, 9);
	assert_true(topics__get(&t, a, &retry_at));
	assert_int_equal(retry_at, 0);
	topics__free(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),      cmocka_unit_test(test_put_get_update),
		cmocka_unit_test(test_many_names), cmocka_unit_test(test_bound_forgets_all),
		cmocka_unit_test(test_clear),      cmocka_unit_test(test_long_and_similar_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
