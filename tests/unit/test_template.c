/*
 * test_template.c - template__compile / __expand / __is_kafka_topic /
 * __wildcard_level: literals, {1}..{N} with '+' and '#', empty levels, the message's
 * strings, buffer limits and Kafka topic name rules.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "fake_broker.h"
#include "mqk.h"

static char err[512];

/* Compiles source for filter (must succeed) and expands it for topic. */
static const char *expand_for(const char *source, const char *filter, bool kafka_topic,
			      const char *topic, const char *client_id, const char *username)
{
	static char buf[1024];
	struct mqk_template tpl;
	struct mqk_msg_ctx ctx = {
		.topic = topic,
		.client_id = client_id,
		.username = username,
		.broker_id = "broker-1",
		.filter = filter,
	};
	int rc = template__compile(&tpl, source, filter, kafka_topic, err, sizeof(err));
	if (rc != 0) {
		print_error("template__compile('%s', '%s'): %s\n", source, filter, err);
	}
	assert_int_equal(rc, 0);
	int n = template__expand(&tpl, &ctx, buf, sizeof(buf));
	assert_true(n >= 0);
	assert_int_equal((size_t)n, strlen(buf));
	template__free(&tpl);
	return buf;
}

#define EXPAND(source, filter, topic) expand_for(source, filter, false, topic, "dev-1", "alice")

static void test_literal(void **state)
{
	struct mqk_template tpl;

	(void)state;
	assert_int_equal(template__compile(&tpl, "events.raw", "a/#", true, err, sizeof(err)), 0);
	assert_true(tpl.is_static);
	assert_int_equal(tpl.part_count, 1);
	assert_int_equal(tpl.parts[0].kind, MQK_TPL_LITERAL);
	assert_int_equal(tpl.parts[0].len, 10);
	assert_string_equal(tpl.source, "events.raw");
	template__free(&tpl);
	assert_null(tpl.source);
	assert_null(tpl.parts);
	assert_int_equal(tpl.part_count, 0);
	template__free(&tpl); /* twice is harmless */

	assert_string_equal(EXPAND("events.raw", "a/#", "a/b"), "events.raw");
	/* Keys may hold any character. */
	assert_string_equal(EXPAND("k e/y:é!", "a/#", "a/b"), "k e/y:é!");
}

static void test_levels_plus(void **state)
{
	(void)state;
	assert_string_equal(EXPAND("t-{1}", "sensors/+/spectrum", "sensors/ue-1/spectrum"),
			    "t-ue-1");
	assert_string_equal(EXPAND("{2}.{1}", "+/x/+", "a/x/b"), "b.a");
	assert_string_equal(EXPAND("{1}{1}", "+", "abc"), "abcabc");
	assert_string_equal(EXPAND("{1}-{2}-{3}", "+/+/+", "a/bb/ccc"), "a-bb-ccc");
}

static void test_levels_hash(void **state)
{
	(void)state;
	assert_string_equal(EXPAND("{1}", "a/#", "a/b/c"), "b/c");
	assert_string_equal(EXPAND("[{1}]", "#", "a/b/c"), "[a/b/c]");
	assert_string_equal(EXPAND("{1}|{2}", "+/#", "x/y/z"), "x|y/z");
	assert_string_equal(EXPAND("{1}|{2}|{3}", "+/a/+/#", "p/a/q/r/s"), "p|q|r/s");
	/* '#' also matches the parent level: nothing for {1}. */
	assert_string_equal(EXPAND("t-{1}-", "a/#", "a"), "t--");
	assert_string_equal(EXPAND("{1}|{2}", "+/#", "x"), "x|");
	/* '#' after an empty level. */
	assert_string_equal(EXPAND("[{1}]", "a/#", "a/"), "[]");
}

static void test_empty_levels(void **state)
{
	(void)state;
	assert_string_equal(EXPAND("[{1}][{2}]", "a/+/+", "a//b"), "[][b]");
	assert_string_equal(EXPAND("[{1}][{2}]", "a/+/+", "a/b/"), "[b][]");
	assert_string_equal(EXPAND("[{1}][{2}]", "+/+", "/x"), "[][x]");
	assert_string_equal(EXPAND("[{1}]", "+/+/x", "//x"), "[]");
	assert_string_equal(EXPAND("[{1}]", "+", ""), "[]");
	assert_string_equal(EXPAND("[{1}]", "#", "/"), "[/]");
	assert_string_equal(EXPAND("[{1}]", "/#", "/"), "[]");
	assert_string_equal(EXPAND("[{1}]", "/+/#", "/a"), "[a]");
	assert_string_equal(EXPAND("[{1}]", "a//+", "a//z"), "[z]");
}

static void test_message_placeholders(void **state)
{
	(void)state;
	assert_string_equal(expand_for("{clientid}|{username}|{topic}|{broker}", "#", false, "a/b",
				       "dev-1", "alice"),
			    "dev-1|alice|a/b|broker-1");
	/* No username: empty. */
	assert_string_equal(expand_for("<{username}>", "#", false, "a", "dev-1", NULL), "<>");
	assert_string_equal(expand_for("<{clientid}>", "#", false, "a", "", NULL), "<>");
	assert_string_equal(expand_for("<{clientid}>", "#", false, "a", NULL, NULL), "<>");
	assert_string_equal(expand_for("mqtt.{broker}.{1}", "+/x", true, "a/x", "c", NULL),
			    "mqtt.broker-1.a");
}

static void test_parts(void **state)
{
	struct mqk_template tpl;

	(void)state;
	assert_int_equal(
		template__compile(&tpl, "a{1}b{clientid}{2}", "+/+", true, err, sizeof(err)), 0);
	assert_false(tpl.is_static);
	assert_int_equal(tpl.part_count, 5);
	assert_int_equal(tpl.parts[0].kind, MQK_TPL_LITERAL);
	assert_int_equal(tpl.parts[1].kind, MQK_TPL_LEVEL);
	assert_int_equal(tpl.parts[1].level, 1);
	assert_int_equal(tpl.parts[2].kind, MQK_TPL_LITERAL);
	assert_int_equal(tpl.parts[3].kind, MQK_TPL_CLIENTID);
	assert_int_equal(tpl.parts[4].kind, MQK_TPL_LEVEL);
	assert_int_equal(tpl.parts[4].level, 2);
	template__free(&tpl);

	/* A lone placeholder is not static. */
	assert_int_equal(template__compile(&tpl, "{broker}", "a", true, err, sizeof(err)), 0);
	assert_false(tpl.is_static);
	assert_int_equal(tpl.part_count, 1);
	template__free(&tpl);
}

static void test_buffer_too_small(void **state)
{
	struct mqk_template tpl;
	struct mqk_msg_ctx ctx = {.topic = "a/bcd", .client_id = "c", .filter = "a/+"};
	char buf[16];

	(void)state;
	assert_int_equal(template__compile(&tpl, "xy{1}", "a/+", true, err, sizeof(err)), 0);
	/* "xybcd" is 5 bytes: it needs 6 with the NUL. */
	memset(buf, '#', sizeof(buf));
	assert_int_equal(template__expand(&tpl, &ctx, buf, 6), 5);
	assert_string_equal(buf, "xybcd");
	assert_int_equal(template__expand(&tpl, &ctx, buf, 5), -1);
	assert_int_equal(template__expand(&tpl, &ctx, buf, 3), -1);
	assert_int_equal(template__expand(&tpl, &ctx, buf, 2), -1);
	assert_int_equal(template__expand(&tpl, &ctx, buf, 1), -1);
	assert_int_equal(template__expand(&tpl, &ctx, buf, 0), -1);
	template__free(&tpl);

	/* The key template's null key: zero parts expands to "" (and needs 1 byte). */
	memset(&tpl, 0, sizeof(tpl));
	buf[0] = 'x';
	assert_int_equal(template__expand(&tpl, &ctx, buf, 1), 0);
	assert_string_equal(buf, "");
	assert_int_equal(template__expand(&tpl, &ctx, buf, 0), -1);
}

static void test_compile_errors(void **state)
{
	static const struct {
		const char *source, *filter;
		bool kafka_topic;
		const char *expected;
	} cases[] = {
		{"t-{3}", "a/+", true, "'{3}' in 't-{3}': the filter has 1 wildcard"},
		{"t-{3}", "+/#", true, "'{3}' in 't-{3}': the filter has 2 wildcards"},
		{"{1}", "a/b", false, "'{1}' in '{1}': the filter has 0 wildcards"},
		{"{0}", "+", false, "'{0}' in '{0}': the filter has 1 wildcard"},
		{"{foo}", "+", false,
		 "unknown placeholder '{foo}' in '{foo}' (use {1}, {2}, ... for the filter's "
		 "wildcards, {clientid}, {username}, "
		 "{topic} or {broker})"},
		{"{CLIENTID}", "+", false,
		 "unknown placeholder '{CLIENTID}' in '{CLIENTID}' (use {1}, {2}, ... for the "
		 "filter's wildcards, {clientid}, "
		 "{username}, {topic} or {broker})"},
		{"{1000}", "+", false,
		 "unknown placeholder '{1000}' in '{1000}' (use {1}, {2}, ... for the filter's "
		 "wildcards, {clientid}, "
		 "{username}, {topic} or {broker})"},
		{"{-1}", "+", false,
		 "unknown placeholder '{-1}' in '{-1}' (use {1}, {2}, ... for the filter's "
		 "wildcards, {clientid}, {username}, "
		 "{topic} or {broker})"},
		{"{ 1}", "+", false,
		 "unknown placeholder '{ 1}' in '{ 1}' (use {1}, {2}, ... for the filter's "
		 "wildcards, {clientid}, {username}, "
		 "{topic} or {broker})"},
		{"a{1", "+", false, "unclosed '{' in 'a{1'"},
		{"a{", "+", false, "unclosed '{' in 'a{'"},
		{"a}", "+", false, "unmatched '}' in 'a}'"},
		{"{1}}", "+", false, "unmatched '}' in '{1}}'"},
		{"t t", "+", true,
		 "'t t' is not a valid Kafka topic name: ' ' is not allowed (use [A-Za-z0-9._-] "
		 "and placeholders)"},
		{"t/{1}", "+", true,
		 "'t/{1}' is not a valid Kafka topic name: '/' is not allowed (use "
		 "[A-Za-z0-9._-] and placeholders)"},
		{".", "+", true,
		 "'.' is not a valid Kafka topic name (1..249 bytes, not '.' or '..')"},
		{"..", "+", true,
		 "'..' is not a valid Kafka topic name (1..249 bytes, not '.' or '..')"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mqk_template tpl;
		memset(err, 0, sizeof(err));
		assert_int_equal(template__compile(&tpl, cases[i].source, cases[i].filter,
						   cases[i].kafka_topic, err, sizeof(err)),
				 -1);
		assert_string_equal(err, cases[i].expected);
		/* Nothing is left allocated. */
		assert_null(tpl.source);
		assert_null(tpl.parts);
		assert_int_equal(tpl.part_count, 0);
	}
}

static void test_compile_ok_edge_cases(void **state)
{
	struct mqk_template tpl;

	(void)state;
	/* "..." is a legal name; "." inside a dynamic template is fine. */
	assert_int_equal(template__compile(&tpl, "...", "+", true, err, sizeof(err)), 0);
	template__free(&tpl);
	assert_int_equal(template__compile(&tpl, ".{1}", "+", true, err, sizeof(err)), 0);
	template__free(&tpl);
	/* Leading zeros: {01} is level 1. */
	assert_int_equal(template__compile(&tpl, "{01}", "+", true, err, sizeof(err)), 0);
	assert_int_equal(tpl.parts[0].kind, MQK_TPL_LEVEL);
	assert_int_equal(tpl.parts[0].level, 1);
	template__free(&tpl);
	/* Key templates (kafka_topic false) take any literal. */
	assert_int_equal(template__compile(&tpl, "a b/c!{1}", "+", false, err, sizeof(err)), 0);
	template__free(&tpl);
}

static void test_is_kafka_topic(void **state)
{
	char name[300];

	(void)state;
	memset(name, 'a', sizeof(name));
	assert_true(template__is_kafka_topic(name, 1));
	assert_true(template__is_kafka_topic(name, 249));
	assert_false(template__is_kafka_topic(name, 250));
	assert_false(template__is_kafka_topic(name, 0));
	assert_false(template__is_kafka_topic("", 0));
	assert_false(template__is_kafka_topic(".", 1));
	assert_false(template__is_kafka_topic("..", 2));
	assert_true(template__is_kafka_topic("...", 3));
	assert_true(template__is_kafka_topic(".a", 2));
	assert_true(template__is_kafka_topic("a..", 3));
	assert_true(template__is_kafka_topic("AZaz09._-", 9));
	/* len is what counts, not the NUL. */
	assert_true(template__is_kafka_topic("ab cd", 2));
	assert_false(template__is_kafka_topic("..x", 2));
	static const char *const bad[] = {"a b",  "a/b", "a:b", "a+b", "a#b", "é",
					  "a\tb", "a{b", "a}b", "a,b", "a@b", "a\x7f"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_false(template__is_kafka_topic(bad[i], strlen(bad[i])));
	}
	assert_false(template__is_kafka_topic("a\0b", 3));
}

static void test_wildcard_level(void **state)
{
	static const struct {
		const char *filter, *topic;
		int n;
		const char *expected; /* NULL: false */
	} cases[] = {
		{"a/+/c", "a/b/c", 1, "b"},  {"a/+/c", "a/b/c", 2, NULL},
		{"a/+/c", "a/b/c", 0, NULL}, {"+/+", "x/y", 1, "x"},
		{"+/+", "x/y", 2, "y"},      {"+/+", "x/y", 3, NULL},
		{"a/#", "a/b/c", 1, "b/c"},  {"a/#", "a", 1, NULL},
		{"a/#", "a/", 1, ""},        {"#", "a/b", 1, "a/b"},
		{"#", "/", 1, "/"},          {"+/#", "x", 1, "x"},
		{"+/#", "x", 2, NULL},       {"+/#", "x/y/z", 2, "y/z"},
		{"a/+/+", "a//b", 1, ""},    {"a/+/+", "a//b", 2, "b"},
		{"+/+", "/", 1, ""},         {"+/+", "/", 2, ""},
		{"a/b", "a/b", 1, NULL},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *start = NULL;
		size_t len = 12345;
		bool found = template__wildcard_level(cases[i].filter, cases[i].topic, cases[i].n,
						      &start, &len);
		if (found != (cases[i].expected != NULL)) {
			print_error("case %zu: '%s' '%s' %d\n", i, cases[i].filter, cases[i].topic,
				    cases[i].n);
		}
		assert_int_equal(found, cases[i].expected != NULL);
		if (found) {
			assert_int_equal(len, strlen(cases[i].expected));
			assert_memory_equal(start, cases[i].expected, len);
			/* start points into the topic. */
			assert_true(start >= cases[i].topic &&
				    start + len <= cases[i].topic + strlen(cases[i].topic));
		}
	}
}

/* ---- inbound templates ({key}, {partition}, {header:<name>}) ------------------------- */

/*
 * A consumer-side record for template__expand_record. librdkafka has no public
 * constructor; its messages are an rd_kafka_message_t at the start of a larger internal
 * struct, which rd_kafka_message_set_headers writes into: a zeroed block big enough
 * stands in for it (the headers are destroyed by hand, never rd_kafka_message_destroy).
 */
struct fake_record {
	rd_kafka_message_t rkm;
	char internal[4096];
};

static void record_init(struct fake_record *f, const char *key, int partition)
{
	memset(f, 0, sizeof(*f));
	f->rkm.key = (void *)key;
	f->rkm.key_len = key ? strlen(key) : 0;
	f->rkm.partition = partition;
}

static int expand_inbound(const char *source, rd_kafka_message_t *rkm, char *buf, size_t size,
			  const char **cause)
{
	struct mqk_template tpl;
	char why[256], cause_buf[96];
	int n;

	assert_int_equal(template__compile_inbound(&tpl, source, why, sizeof(why)), 0);
	n = template__expand_record(&tpl, rkm, "b1", buf, size, cause, cause_buf,
				    sizeof(cause_buf));
	static char keep[96];
	if (*cause == cause_buf) {
		snprintf(keep, sizeof(keep), "%s", cause_buf);
		*cause = keep;
	}
	template__free(&tpl);
	return n;
}

static void test_inbound_expand(void **state)
{
	struct fake_record f;
	char buf[256];
	const char *cause;
	rd_kafka_headers_t *hdrs = rd_kafka_headers_new(2);

	(void)state;
	record_init(&f, "dev-7", 3);
	rd_kafka_header_add(hdrs, "site", -1, "paris", -1);
	rd_kafka_header_add(hdrs, "site", -1, "lyon", -1); /* the last one counts */
	rd_kafka_message_set_headers(&f.rkm, hdrs);        /* f owns hdrs now */
	assert_int_equal(expand_inbound("config/{key}/p{partition}/{header:site}/{broker}", &f.rkm,
					buf, sizeof(buf), &cause),
			 (int)strlen("config/dev-7/p3/lyon/b1"));
	assert_string_equal(buf, "config/dev-7/p3/lyon/b1");
	assert_null(cause);
	assert_int_equal(expand_inbound("static/topic", &f.rkm, buf, sizeof(buf), &cause), 12);
	assert_string_equal(buf, "static/topic");

	/* Missing header, then too long for the buffer. */
	assert_int_equal(expand_inbound("x/{header:zone}", &f.rkm, buf, sizeof(buf), &cause), -1);
	assert_string_equal(cause, "no header zone");
	assert_int_equal(expand_inbound("x/{key}", &f.rkm, buf, 5, &cause), -1);
	assert_string_equal(cause, "too long");
	rd_kafka_headers_destroy(hdrs);

	/* No key (a null key), a key with a NUL byte. */
	record_init(&f, NULL, 0);
	assert_int_equal(expand_inbound("x/{key}", &f.rkm, buf, sizeof(buf), &cause), -1);
	assert_string_equal(cause, "no key");
	record_init(&f, "ab", 0);
	f.rkm.key = (void *)"a\0b";
	f.rkm.key_len = 3;
	assert_int_equal(expand_inbound("x/{key}", &f.rkm, buf, sizeof(buf), &cause), -1);
	assert_string_equal(cause, "NUL in the key");
	/* An empty key expands to an empty level: inbound_publish.c judges the topic. */
	f.rkm.key_len = 0;
	assert_int_equal(expand_inbound("x/{key}", &f.rkm, buf, sizeof(buf), &cause), 2);
	assert_string_equal(buf, "x/");
}

static void test_inbound_compile_errors(void **state)
{
	struct mqk_template tpl;
	char why[256];

	(void)state;
	assert_int_equal(template__compile_inbound(&tpl, "a/+/b", why, sizeof(why)), -1);
	assert_string_equal(why, "'a/+/b' is not an MQTT topic to publish to: no '+' or '#'");
	assert_int_equal(template__compile_inbound(&tpl, "a/#", why, sizeof(why)), -1);
	assert_int_equal(template__compile_inbound(&tpl, "$SYS/x", why, sizeof(why)), -1);
	assert_string_equal(why,
			    "'$SYS/x': topics starting with '$' are the broker's, not for inbound "
			    "records");
	assert_int_equal(template__compile_inbound(&tpl, "a/{clientid}", why, sizeof(why)), -1);
	assert_string_equal(why, "unknown placeholder '{clientid}' in 'a/{clientid}' (use {key}, "
				 "{partition}, {header:<name>} or {broker})");
	assert_int_equal(template__compile_inbound(&tpl, "a/{header:}", why, sizeof(why)), -1);
	assert_int_equal(template__compile_inbound(&tpl, "a/{key", why, sizeof(why)), -1);
	assert_string_equal(why, "unclosed '{' in 'a/{key'");
	assert_int_equal(template__compile_inbound(&tpl, "a/key}", why, sizeof(why)), -1);
	assert_string_equal(why, "unmatched '}' in 'a/key}'");
	assert_int_equal(template__compile_inbound(&tpl, "{key}", why, sizeof(why)), 0);
	assert_false(tpl.is_static);
	template__free(&tpl);
	assert_int_equal(template__compile_inbound(&tpl, "notices/all", why, sizeof(why)), 0);
	assert_true(tpl.is_static);
	template__free(&tpl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_literal),
		cmocka_unit_test(test_inbound_expand),
		cmocka_unit_test(test_inbound_compile_errors),
		cmocka_unit_test(test_levels_plus),
		cmocka_unit_test(test_levels_hash),
		cmocka_unit_test(test_empty_levels),
		cmocka_unit_test(test_message_placeholders),
		cmocka_unit_test(test_parts),
		cmocka_unit_test(test_buffer_too_small),
		cmocka_unit_test(test_compile_errors),
		cmocka_unit_test(test_compile_ok_edge_cases),
		cmocka_unit_test(test_is_kafka_topic),
		cmocka_unit_test(test_wildcard_level),
	};
	return cmocka_run_group_tests_name("template", tests, NULL, NULL);
}
