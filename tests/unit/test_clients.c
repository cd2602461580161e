/*
 * test_clients.c - the table of connected clients (clients.c), driven by the event
 * sequences mosquitto 2.0.11 produces (docs/commands-facts.md): connect, refusal,
 * takeover, a persistent session's two DISCONNECTs.
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
#include "mqk.h"

static struct mqk_clients *c;
/* What the callbacks reported: "+id" for came, "-id" for gone. */
static char events[4096];

static void came(void *arg, const char *id)
{
	(void)arg;
	strcat(events, "+");
	strcat(events, id);
	strcat(events, " ");
}

static void gone(void *arg, const char *id)
{
	(void)arg;
	strcat(events, "-");
	strcat(events, id);
	strcat(events, " ");
}

static int setup(void **state)
{
	(void)state;
	events[0] = '\0';
	c = clients__new();
	return c == NULL;
}

static int teardown(void **state)
{
	(void)state;
	clients__free(c);
	return 0;
}

/* Client structs: only their addresses matter. */
static char structs[8][16];
#define A ((const void *)structs[0])
#define B ((const void *)structs[1])
#define C ((const void *)structs[2])

static void test_connect_counts_from_the_tick(void **state)
{
	(void)state;
	assert_int_equal(clients__connecting(c, A, "dev1"), 0);
	assert_false(clients__is_connected(c, "dev1")); /* not before the TICK */
	clients__tick(c, came, NULL);
	assert_true(clients__is_connected(c, "dev1"));
	assert_false(clients__is_connected(c, "dev2"));
	assert_int_equal(clients__count(c), 1);
	clients__disconnected(c, A, gone, NULL);
	assert_false(clients__is_connected(c, "dev1"));
	assert_int_equal(clients__count(c), 0);
	assert_string_equal(events, "+dev1 -dev1 ");
}

static void test_refused_connect_never_counts(void **state)
{
	(void)state;
	clients__connecting(c, A, "dev1");
	clients__disconnected(c, A, gone, NULL); /* refused in the same loop iteration */
	clients__tick(c, came, NULL);
	assert_false(clients__is_connected(c, "dev1"));
	assert_string_equal(events, "");
}

static void test_refused_impostor_keeps_the_connected_one(void **state)
{
	(void)state;
	clients__connecting(c, A, "dev1");
	clients__tick(c, came, NULL);
	clients__connecting(c, B, "dev1"); /* same id, wrong password */
	clients__disconnected(c, B, gone, NULL);
	clients__tick(c, came, NULL);
	assert_true(clients__is_connected(c, "dev1"));
	assert_string_equal(events, "+dev1 ");
}

static void test_takeover_refused_then_old_gone(void **state)
{
	(void)state;
	clients__connecting(c, A, "dev1");
	clients__tick(c, came, NULL);
	clients__connecting(c, B, "dev1");
	clients__disconnected(c, A, gone, NULL);
	clients__disconnected(c, B, gone, NULL); /* the new one fails after all */
	clients__tick(c, came, NULL);
	assert_false(clients__is_connected(c, "dev1"));
	assert_string_equal(events, "+dev1 -dev1 ");
}

static void test_takeover_is_not_a_disconnect(void **state)
{
	(void)state;
	clients__connecting(c, A, "dev1");
	clients__tick(c, came, NULL);
	/* The order mosquitto gives: BASIC_AUTH(new), DISCONNECT(old), then the TICK. */
	clients__connecting(c, B, "dev1");
	clients__disconnected(c, A, gone, NULL);
	assert_false(clients__is_connected(c, "dev1")); /* no delivery before the TICK... */
	clients__tick(c, came, NULL);
	assert_true(clients__is_connected(c, "dev1"));
	assert_string_equal(events, "+dev1 "); /* ...but never announced gone */
	clients__disconnected(c, B, gone, NULL);
	assert_false(clients__is_connected(c, "dev1"));
}

static void test_persistent_session_second_disconnect_ignored(void **state)
{
	(void)state;
	clients__connecting(c, A, "p5");
	clients__tick(c, came, NULL);
	clients__disconnected(c, A, gone, NULL); /* goes offline */
	clients__connecting(c, B, "p5");         /* comes back */
	clients__disconnected(c, A, gone, NULL); /* the old struct, a second time */
	clients__tick(c, came, NULL);
	assert_true(clients__is_connected(c, "p5"));
	assert_string_equal(events, "+p5 -p5 +p5 ");
}

static void test_many_clients(void **state)
{
	enum { N = 5000 };
	static char many[N];
	char id[32];

	(void)state;
	for (int i = 0; i < N; i++) {
		snprintf(id, sizeof(id), "ue-%05d", i);
		assert_int_equal(clients__connecting(c, &many[i], id), 0);
	}
	clients__tick(c, NULL, NULL);
	assert_int_equal(clients__count(c), N);
	for (int i = 0; i < N; i += 2) {
		clients__disconnected(c, &many[i], NULL, NULL);
	}
	for (int i = 0; i < N; i++) {
		snprintf(id, sizeof(id), "ue-%05d", i);
		assert_int_equal(clients__is_connected(c, id), i % 2 == 1);
	}
	assert_int_equal(clients__count(c), N / 2);
	(void)C;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_connect_counts_from_the_tick),
		T(test_refused_connect_never_counts),
		T(test_refused_impostor_keeps_the_connected_one),
		T(test_takeover_is_not_a_disconnect),
		T(test_takeover_refused_then_old_gone),
		T(test_persistent_session_second_disconnect_ignored),
		T(test_many_clients),
#undef T
	};
	return cmocka_run_group_tests_name("clients", tests, NULL, NULL);
}
