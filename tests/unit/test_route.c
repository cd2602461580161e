/*
 * test_route.c - route__match and route__filter_is_valid: wildcards, '$' topics, the
 * reserved $SYS/$CONTROL trees, exclude precedence, several routes, empty levels; the
 * selectors (clientid=, username=, qos=, retain=) and their glob; the routes in force
 * (cfg->active) after a reload.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <mosquitto.h>

#include "fake_broker.h"
#include "mqk.h"

#define MAX_ROUTES 16

static struct mqk_route routes[MAX_ROUTES];
static char *excludes[MAX_ROUTES];
static struct mqk_config cfg;

/* A config with the NULL-terminated route filters, and exclude filters. */
static void configure(const char *const *filters, const char *const *exclude_filters)
{
	memset(&cfg, 0, sizeof(cfg));
	memset(routes, 0, sizeof(routes));
	cfg.routes = routes;
	cfg.excludes = excludes;
	for (int i = 0; filters && filters[i]; i++) {
		routes[i].name = (char *)"r";
		routes[i].filter = (char *)filters[i];
		route__classify(&routes[i]);
		cfg.route_count++;
	}
	for (int i = 0; exclude_filters && exclude_filters[i]; i++) {
		excludes[i] = (char *)exclude_filters[i];
		cfg.exclude_count++;
	}
}

/* A message on topic from client "c1" (no username), QoS 0, not retained. */
#define MSG(t) (&(const struct mqk_message){.topic = (t), .client_id = "c1"})

#define ROUTES(...) ((const char *const[]){__VA_ARGS__, NULL})
#define NONE NULL

/* Matches topic; asserts the verdict and the matched route indexes (-1 terminated). */
static void expect(const char *topic, enum mqk_verdict verdict, const int *indexes)
{
	int matched[MAX_ROUTES];
	int count = -1, n = 0;

	memset(matched, 0xff, sizeof(matched));
	enum mqk_verdict v = route__match(&cfg, MSG(topic), matched, MAX_ROUTES, &count);
	if (v != verdict) {
		print_error("topic '%s': verdict %d, expected %d\n", topic, v, verdict);
	}
	assert_int_equal(v, verdict);
	while (indexes && indexes[n] >= 0) {
		n++;
	}
	if (count != n) {
		print_error("topic '%s': %d routes matched, expected %d\n", topic, count, n);
	}
	assert_int_equal(count, n);
	for (int i = 0; i < n; i++) {
		assert_int_equal(matched[i], indexes[i]);
	}
}

#define IDX(...) ((const int[]){__VA_ARGS__, -1})

static void test_plus_and_hash(void **state)
{
	(void)state;
	configure(ROUTES("sensors/+/spectrum", "devices/#"), NONE);
	expect("sensors/ue-1/spectrum", MQK_FORWARD, IDX(0));
	expect("sensors/ue-1/spectrum/x", MQK_NO_ROUTE, NULL);
	expect("sensors/spectrum", MQK_NO_ROUTE, NULL);
	expect("devices/a/b/c", MQK_FORWARD, IDX(1));
	expect("devices", MQK_FORWARD, IDX(1)); /* '#' matches the parent level */
	expect("devices/", MQK_FORWARD, IDX(1));
	expect("device", MQK_NO_ROUTE, NULL);
	expect("Devices/a", MQK_NO_ROUTE, NULL);
}

static void test_dollar_topics(void **state)
{
	(void)state;
	configure(ROUTES("#", "+/x", "$foo/#"), NONE);
	/* A filter beginning with a wildcard does not match '$' topics. */
	expect("$bar", MQK_NO_ROUTE, NULL);
	expect("$bar/x", MQK_NO_ROUTE, NULL);
	expect("$foo", MQK_FORWARD, IDX(2)); /* '#' matches the parent level */
	expect("$foo/x", MQK_FORWARD, IDX(2));
	expect("$foo/y/z", MQK_FORWARD, IDX(2));
	expect("a/x", MQK_FORWARD, IDX(0, 1));
	expect("a$/x", MQK_FORWARD, IDX(0, 1));
	/* Only the first level's '$' counts. */
	expect("a/$x", MQK_FORWARD, IDX(0));
}

static void test_reserved(void **state)
{
	(void)state;
	/* Routes on the reserved trees cannot be configured; even if they were, nothing
	 * under them is forwarded. */
	configure(ROUTES("#", "$SYS/#", "$CONTROL/#", "$SYSTEM/#", "$SYS"), NONE);
	expect("$SYS/broker/uptime", MQK_RESERVED, NULL);
	expect("$SYS", MQK_RESERVED, NULL);
	expect("$SYS/", MQK_RESERVED, NULL);
	expect("$CONTROL/dynamic-security/v1", MQK_RESERVED, NULL);
	expect("$CONTROL", MQK_RESERVED, NULL);
	/* Other '$' trees are not reserved. */
	expect("$SYSTEM/x", MQK_FORWARD, IDX(3));
	expect("$SYSx", MQK_NO_ROUTE, NULL);
	expect("$sys/broker", MQK_NO_ROUTE, NULL);
	expect("$CONTROLLER/x", MQK_NO_ROUTE, NULL);
	expect("a/$SYS/x", MQK_FORWARD, IDX(0));

	/* Reserved wins over an exclude filter that would match. */
	configure(ROUTES("#"), ROUTES("$SYS/#"));
	expect("$SYS/broker/uptime", MQK_RESERVED, NULL);
}

static void test_exclude_precedence(void **state)
{
	(void)state;
	configure(ROUTES("devices/#", "devices/+/debug/#", "#"), ROUTES("devices/+/debug/#", "x"));
	expect("devices/d1/debug/trace", MQK_EXCLUDED, NULL);
	expect("devices/d1/debug", MQK_EXCLUDED, NULL);
	expect("devices/d1/data", MQK_FORWARD, IDX(0, 2));
	expect("x", MQK_EXCLUDED, NULL);
	expect("x/y", MQK_FORWARD, IDX(2));

	/* An exclude matching everything empties every route. */
	configure(ROUTES("#"), ROUTES("#"));
	expect("a", MQK_EXCLUDED, NULL);
	expect("a/b", MQK_EXCLUDED, NULL);
	/* ... but '#' does not match '$' topics. */
	configure(ROUTES("$app/#"), ROUTES("#"));
	expect("$app/x", MQK_FORWARD, IDX(0));

	/* Excludes without routes still say EXCLUDED (counted apart from unrouted). */
	configure(NULL, ROUTES("a/+"));
	expect("a/b", MQK_EXCLUDED, NULL);
	expect("a/b/c", MQK_NO_ROUTE, NULL);
}

static void test_several_routes_in_order(void **state)
{
	int matched[MAX_ROUTES];
	int count;

	(void)state;
	configure(ROUTES("a/#", "x/#", "a/+/c", "#", "a/b/c", "+/+/+", "a/b"), NONE);
	expect("a/b/c", MQK_FORWARD, IDX(0, 2, 3, 4, 5));
	expect("a/b", MQK_FORWARD, IDX(0, 3, 6));
	expect("q", MQK_FORWARD, IDX(3));

	/* At most max are returned, the first ones in configuration order. */
	count = -1;
	assert_int_equal(route__match(&cfg, MSG("a/b/c"), matched, 2, &count), MQK_FORWARD);
	assert_int_equal(count, 2);
	assert_int_equal(matched[0], 0);
	assert_int_equal(matched[1], 2);

	configure(NULL, NULL);
	expect("a", MQK_NO_ROUTE, NULL);
}

static void test_empty_levels(void **state)
{
	(void)state;
	configure(ROUTES("a/+/b", "+/+", "a/+", "/#", "a//b"), NONE);
	expect("a//b", MQK_FORWARD, IDX(0, 4));
	expect("/x", MQK_FORWARD, IDX(1, 3));
	expect("a/", MQK_FORWARD, IDX(1, 2));
	expect("/", MQK_FORWARD, IDX(1, 3));
	expect("//", MQK_FORWARD, IDX(3));
	expect("a", MQK_NO_ROUTE, NULL);

	configure(ROUTES("+"), NONE);
	expect("a", MQK_FORWARD, IDX(0));
	expect("/", MQK_NO_ROUTE, NULL);
	expect("a/", MQK_NO_ROUTE, NULL);
}

/* The shapes route__classify finds, and the same answers as mosquitto's own matcher for
 * each of them, on topics chosen to sit at their edges. */
static void test_shapes_agree_with_mosquitto(void **state)
{
	static const char *const filters[] = {
		"a",    "a/b", "$x/y", "a/#", "a/b/#", "/#", "#",     "$x/#",
		"a//#", "+",   "a/+",  "+/#", "a/+/#", "//", "a/b/c",
	};
	static const enum mqk_filter_shape shapes[] = {
		MQK_FILTER_LITERAL, MQK_FILTER_LITERAL, MQK_FILTER_LITERAL, MQK_FILTER_PREFIX,
		MQK_FILTER_PREFIX,  MQK_FILTER_PREFIX,  MQK_FILTER_ALL,     MQK_FILTER_PREFIX,
		MQK_FILTER_PREFIX,  MQK_FILTER_GENERAL, MQK_FILTER_GENERAL, MQK_FILTER_GENERAL,
		MQK_FILTER_GENERAL, MQK_FILTER_LITERAL, MQK_FILTER_LITERAL,
	};
	static const char *const topics[] = {
		"a",  "a/",  "a/b",  "a/bc", "ab",   "ab/c",  "a/b/c", "a/b/c/d", "/",     "/a",
		"//", "a//", "a//b", "$x",   "$x/y", "$x/yz", "$xy",   "b",       "$SYSX", "x/a",
	};
	(void)state;
	for (size_t f = 0; f < sizeof(filters) / sizeof(filters[0]); f++) {
		configure((const char *const[]){filters[f], NULL}, NONE);
		assert_int_equal(routes[0].shape, shapes[f]);
		for (size_t t = 0; t < sizeof(topics) / sizeof(topics[0]); t++) {
			bool want = false;
			int matched[1], count;
			assert_int_equal(mosquitto_topic_matches_sub(filters[f], topics[t], &want),
					 MOSQ_ERR_SUCCESS);
			bool got = route__match(&cfg, MSG(topics[t]), matched, 1, &count) ==
				   MQK_FORWARD;
			if (got != want) {
				print_error("filter '%s', topic '%s': %d, mosquitto says %d\n",
					    filters[f], topics[t], got, want);
			}
			assert_int_equal(got, want);
		}
	}
}

static void test_glob(void **state)
{
	(void)state;
	assert_true(route__glob("truck-*", "truck-1"));
	assert_true(route__glob("truck-*", "truck-"));
	assert_false(route__glob("truck-*", "truck"));
	assert_false(route__glob("truck-*", "car-1"));
	assert_true(route__glob("*", ""));
	assert_true(route__glob("*", "anything"));
	assert_true(route__glob("a?c", "abc"));
	assert_false(route__glob("a?c", "ac"));
	assert_false(route__glob("a?c", "abbc"));
	assert_true(route__glob("*-eu-*", "truck-eu-42"));
	assert_false(route__glob("*-eu-*", "truck-us-42"));
	assert_true(route__glob("a*b*c", "axxbyyc"));
	assert_true(route__glob("a*b*c", "abcbc"));
	assert_false(route__glob("a*b*c", "axxbyy"));
	assert_true(route__glob("*a", "aaaa"));
	assert_false(route__glob("exact", "exactly"));
	assert_true(route__glob("exact", "exact"));
	/* No brackets or escapes: '[' and '\\' are plain characters. */
	assert_true(route__glob("id[1]", "id[1]"));
	assert_false(route__glob("id[1]", "id1"));
	assert_true(route__glob("a\\b", "a\\b"));
	assert_true(route__glob("**?", "x"));
	assert_false(route__glob("**?", ""));
}

static void test_selectors(void **state)
{
	struct mqk_message m = {.topic = "fleet/x", .client_id = "truck-7", .qos = 1};
	int matched[MAX_ROUTES], count;

	(void)state;
	configure(ROUTES("fleet/#", "fleet/#", "fleet/#", "fleet/#", "fleet/#", "fleet/#"), NONE);
	routes[0].sel_clientid = (char *)"truck-*";
	routes[1].sel_username = (char *)"";
	routes[2].sel_username = (char *)"op?";
	routes[3].sel_qos = 1 + 1;
	routes[4].sel_retain = 2;
	routes[5].sel_clientid = (char *)"truck-*";
	routes[5].sel_qos = 0 + 1;
	for (int i = 0; i < 6; i++) {
		routes[i].has_selectors = true;
	}
	/* truck-7, no username, QoS 1, not retained: clientid, username= empty, qos=1. */
	assert_int_equal(route__match(&cfg, &m, matched, MAX_ROUTES, &count), MQK_FORWARD);
	assert_int_equal(count, 3);
	assert_int_equal(matched[0], 0);
	assert_int_equal(matched[1], 1);
	assert_int_equal(matched[2], 3);

	m.client_id = "car-1";
	m.username = "op1";
	m.qos = 0;
	m.retain = true;
	/* username op1 (not empty: route 1 no more), op? yes, retain=true yes. */
	assert_int_equal(route__match(&cfg, &m, matched, MAX_ROUTES, &count), MQK_FORWARD);
	assert_int_equal(count, 2);
	assert_int_equal(matched[0], 2);
	assert_int_equal(matched[1], 4);

	m.client_id = "truck-1";
	m.username = "operator";
	m.retain = false;
	/* clientid and qos=0 together: route 5; username 'operator' is not 'op?'. */
	assert_int_equal(route__match(&cfg, &m, matched, MAX_ROUTES, &count), MQK_FORWARD);
	assert_int_equal(count, 2);
	assert_int_equal(matched[0], 0);
	assert_int_equal(matched[1], 5);

	/* The topic still decides first. */
	m.topic = "other";
	assert_int_equal(route__match(&cfg, &m, matched, MAX_ROUTES, &count), MQK_NO_ROUTE);
}

/* After routes__start or a reload, only the routes in cfg->active match, by their index. */
static void test_active(void **state)
{
	int active[] = {3, 1};
	int matched[MAX_ROUTES], count;

	(void)state;
	configure(ROUTES("a/#", "a/#", "b/#", "a/#"), NONE);
	cfg.active = active;
	cfg.active_count = 2;
	assert_int_equal(route__match(&cfg, MSG("a/x"), matched, MAX_ROUTES, &count), MQK_FORWARD);
	assert_int_equal(count, 2);
	assert_int_equal(matched[0], 3);
	assert_int_equal(matched[1], 1);
	assert_int_equal(route__match(&cfg, MSG("b/x"), matched, MAX_ROUTES, &count), MQK_NO_ROUTE);
}

static void test_filter_is_valid(void **state)
{
	static const char *const valid[] = {
		"a",     "a/b",       "+",      "#",      "a/+/b",  "a/#",
		"+/+/#", "/",         "//",     "a//b",   "/#",     "with space/+",
		"é/+",   "$SYSTEM/#", "$foo/+", "$sys/#", "a/$SYS",
	};
	static const char *const invalid[] = {
		"a/#/b",
		"#/a",
		"a#",
		"a/b#",
		"a+",
		"+a",
		"a/+b",
		"a/b+/c",
		"$SYS",
		"$SYS/#",
		"$SYS/broker/+",
		"$CONTROL",
		"$CONTROL/dynamic-security/#",
		"a/\xff",
		"\xc0\xaf",
		"\xed\xa0\x80",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		if (!route__filter_is_valid(valid[i])) {
			print_error("'%s' should be valid\n", valid[i]);
		}
		assert_true(route__filter_is_valid(valid[i]));
	}
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		if (route__filter_is_valid(invalid[i])) {
			print_error("'%s' should be invalid\n", invalid[i]);
		}
		assert_false(route__filter_is_valid(invalid[i]));
	}
}

/* MQTT-4.7.3-1: a topic filter is at least one character long. */
static void test_empty_filter_is_invalid(void **state)
{
	(void)state;
	assert_false(route__filter_is_valid(""));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plus_and_hash),
		cmocka_unit_test(test_dollar_topics),
		cmocka_unit_test(test_reserved),
		cmocka_unit_test(test_exclude_precedence),
		cmocka_unit_test(test_several_routes_in_order),
		cmocka_unit_test(test_empty_levels),
		cmocka_unit_test(test_shapes_agree_with_mosquitto),
		cmocka_unit_test(test_glob),
		cmocka_unit_test(test_selectors),
		cmocka_unit_test(test_active),
		cmocka_unit_test(test_filter_is_valid),
		cmocka_unit_test(test_empty_filter_is_invalid),
	};
	return cmocka_run_group_tests_name("route", tests, NULL, NULL);
}
