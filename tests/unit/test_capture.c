/*
 * test_capture.c - what mosquitto's thread keeps of a message (capture.c): the entry
 * capture__message writes and capture__read reads back (topic, client id, username
 * NULL or "", payloads empty, 1 byte, binary, inline or external, retain, QoS, seq,
 * receive time, properties), and the compact property form: capture__props from
 * libmosquitto's property list, capture__next_prop over it, truncated input included.
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
#include <mqtt_protocol.h>

#include "fake_broker.h"
#include "mqk.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define RING 65536    /* external payloads: over RING / 8 */
#define PROP_HEADER 9 /* id, name length, value length */

static struct mqk_buffer b;
static struct mqk_bytes props;

static int setup(void **state)
{
	(void)state;
	fake_broker_reset();
	assert_int_equal(buffer__init(&b, RING), 0);
	assert_int_equal(b.capacity, RING);
	memset(&props, 0, sizeof(props));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	/* Every test leaves the ring empty: nothing owned outside it is left behind. */
	assert_null(buffer__peek(&b));
	buffer__free(&b);
	free(props.data);
	memset(&props, 0, sizeof(props));
	return 0;
}

static struct mqk_message message(const char *topic, const void *payload, uint32_t len)
{
	return (struct mqk_message){
		.topic = topic,
		.client_id = "dev-1",
		.username = "alice",
		.payload = payload,
		.payloadlen = len,
		.qos = 1,
		.retain = false,
		.timestamp_ms = INT64_C(1763912345678),
		.timestamp_sub_us = 987, /* latency.c's sub-millisecond part, kept too */
	};
}

static bool inside(const struct mqk_entry *e, const void *p, size_t len)
{
	return (const char *)p >= (const char *)e &&
	       (const char *)p + len <= (const char *)e + e->size;
}

/*
 * capture__message, then what the Kafka thread does: peek, read, compare with `in`,
 * discard, release. Returns whether the payload was external.
 */
static bool round_trip(struct mqk_buffer *buf, const struct mqk_message *in, int route,
		       uint64_t seq)
{
	struct mqk_message out;
	struct mqk_entry *e;
	bool external;
	size_t used = buffer__used(buf);

	assert_int_equal(capture__message(buf, route, seq, in), 0);
	e = buffer__peek(buf);
	assert_non_null(e);
	assert_int_equal(e->route, route);
	/* Written by this run: its route is this run's, no origin of an earlier run. */
	assert_int_equal(e->live_route, route);
	assert_null(e->origin);
	assert_int_equal(e->seq, seq);
	external = e->external != NULL;
	assert_int_equal(external, in->payloadlen > buf->capacity / 8);
	/* The entry's room, and an external payload's bytes: both count as buffered. */
	assert_int_equal(buffer__used(buf), used + e->size + (external ? in->payloadlen : 0));

	memset(&out, 0xa5, sizeof(out));
	capture__read(e, &out);
	/* Copies in the entry, not the broker's strings. */
	assert_string_equal(out.topic, in->topic);
	assert_true(inside(e, out.topic, strlen(in->topic) + 1));
	assert_string_equal(out.client_id, in->client_id);
	assert_true(inside(e, out.client_id, strlen(in->client_id) + 1));
	if (in->username == NULL) {
		assert_null(out.username);
	} else {
		assert_non_null(out.username);
		assert_string_equal(out.username, in->username);
		assert_true(inside(e, out.username, strlen(in->username) + 1));
	}
	assert_int_equal(out.payloadlen, in->payloadlen);
	if (in->payloadlen) {
		assert_non_null(out.payload);
		assert_ptr_not_equal(out.payload, in->payload);
		assert_memory_equal(out.payload, in->payload, in->payloadlen);
		if (external) {
			assert_ptr_equal(out.payload, e->external);
			/* The entry holds no room for it. */
			assert_true(e->size < in->payloadlen);
		} else {
			assert_true(inside(e, out.payload, in->payloadlen));
		}
	}
	assert_int_equal(out.qos, in->qos);
	assert_int_equal(out.retain, in->retain);
	assert_int_equal(out.timestamp_ms, in->timestamp_ms);
	assert_int_equal(out.timestamp_sub_us, in->timestamp_sub_us);
	assert_int_equal(e->capture_sub_us, in->timestamp_sub_us);
	assert_int_equal(out.props_len, in->props_len);
	if (in->props_len) {
		assert_non_null(out.props);
		assert_true(inside(e, out.props, in->props_len));
		assert_memory_equal(out.props, in->props, in->props_len);
	} else {
		assert_null(out.props);
	}

	capture__discard(buf, e);
	assert_null(e->external);
	assert_int_equal(buffer__used(buf), used + e->size);
	capture__discard(buf, e); /* twice is harmless, and counted once */
	assert_int_equal(buffer__used(buf), used + e->size);
	buffer__release(buf, e);
	assert_int_equal(buffer__used(buf), used);
	return external;
}

/* ---- capture__message / capture__read ----------------------------------------------------- */

static void test_round_trip_fields(void **state)
{
	struct mqk_message m = message("sensors/ue-1/spectrum", "{\"dbm\":-71}", 11);

	(void)state;
	assert_false(round_trip(&b, &m, 0, 1));
	assert_int_equal(buffer__used(&b), 0);

	/* Username: NULL is none, "" is an empty one. */
	m.username = NULL;
	round_trip(&b, &m, 1, 2);
	m.username = "";
	round_trip(&b, &m, 2, 3);
	m.client_id = "";
	round_trip(&b, &m, 3, 4);

	/* QoS, retain, seq and receive time as given. */
	for (uint8_t qos = 0; qos <= 2; qos++) {
		m.qos = qos;
		m.retain = qos != 1;
		/* The last route index (65534 routes): 0xFFFE and 0xFFFF are markers. */
		round_trip(&b, &m, 65533, qos);
	}
	m.timestamp_ms = 0;
	round_trip(&b, &m, 0, UINT64_MAX);
	m.timestamp_ms = INT64_MAX;
	round_trip(&b, &m, 0, 0);
	m.timestamp_ms = -1;
	round_trip(&b, &m, 0, UINT64_C(9007199254740993));

	/* Topics: one level, long, UTF-8. */
	m.topic = "a";
	round_trip(&b, &m, 0, 1);
	m.topic = "caf\xc3\xa9/\xe2\x82\xac/x";
	round_trip(&b, &m, 0, 1);
	char *long_topic = malloc(20001);
	memset(long_topic, 't', 20000);
	long_topic[20000] = '\0';
	m.topic = long_topic;
	round_trip(&b, &m, 0, 1);
	free(long_topic);
	assert_int_equal(buffer__used(&b), 0);
}

static void test_round_trip_payloads(void **state)
{
	static const char bin[] = {'a', 0, (char)0xff, 0, 'b', 0};
	struct mqk_message m = message("a/b", NULL, 0);
	char one = 'x';

	(void)state;
	/* Empty: the broker gives NULL, 0. */
	round_trip(&b, &m, 0, 1);
	/* Empty, with a pointer. */
	m.payload = "";
	round_trip(&b, &m, 0, 2);
	m.payload = &one;
	m.payloadlen = 1;
	round_trip(&b, &m, 0, 3);
	/* Binary, NULs inside and at the end: all of payloadlen, not up to a NUL. */
	m.payload = bin;
	m.payloadlen = sizeof(bin);
	round_trip(&b, &m, 0, 4);
	/* Every length 0..300: the entry's 8-byte alignment whatever the length. */
	unsigned char *p = malloc(300);
	for (uint32_t len = 0; len <= 300; len++) {
		for (uint32_t i = 0; i < len; i++) {
			p[i] = (unsigned char)(len * 7 + i);
		}
		m.payload = p;
		m.payloadlen = len;
		round_trip(&b, &m, 0, len);
	}
	free(p);
	assert_int_equal(buffer__used(&b), 0);
}

static void test_external_payload(void **state)
{
	const uint32_t limit = RING / 8;
	unsigned char *p = malloc(limit * 4);
	struct mqk_message m = message("big/one", NULL, 0);

	(void)state;
	for (uint32_t i = 0; i < limit * 4; i++) {
		p[i] = (unsigned char)(i ^ (i >> 8) ^ (i >> 16));
	}
	p[0] = 0;
	m.payload = p;
	/* Up to an eighth of the ring: inside the entry. */
	m.payloadlen = limit;
	assert_false(round_trip(&b, &m, 0, 1));
	/* One byte more: a malloc'd copy the entry owns, freed by capture__discard. */
	m.payloadlen = limit + 1;
	assert_true(round_trip(&b, &m, 0, 2));
	/* Half the ring. */
	m.payloadlen = limit * 4;
	assert_true(round_trip(&b, &m, 0, 3));
	assert_int_equal(buffer__used(&b), 0);

	/*
	 * External payloads count against the capacity: two of half the ring fill it, a
	 * third is refused (-1, as when the ring is full) and copied nowhere.
	 */
	assert_int_equal(capture__message(&b, 0, 10, &m), 0);
	assert_int_equal(capture__message(&b, 0, 11, &m), -1); /* + its entry: over */
	assert_true(buffer__used(&b) > limit * 4);
	m.payloadlen = limit * 4 - 1024;
	assert_int_equal(capture__message(&b, 0, 11, &m), 0);
	assert_true(buffer__used(&b) <= RING);
	m.payloadlen = limit + 1;
	assert_int_equal(capture__message(&b, 0, 12, &m), -1);
	for (uint64_t seq = 10; seq <= 11; seq++) {
		struct mqk_entry *x = buffer__peek(&b);
		assert_int_equal(x->seq, seq);
		capture__discard(&b, x);
		buffer__release(&b, x);
	}
	assert_int_equal(buffer__used(&b), 0);
	/* So one larger than the whole ring never fits: -3, not "full" (-1). */
	unsigned char *huge = calloc(1, RING + 1);
	struct mqk_message h = message("big/huge", huge, RING + 1);
	assert_int_equal(capture__message(&b, 0, 13, &h), -3);
	assert_null(buffer__peek(&b));
	assert_int_equal(buffer__used(&b), 0);
	free(huge);
	m.payloadlen = limit * 4;

	/* A copy: the broker's payload may change once MESSAGE returns. */
	assert_int_equal(capture__message(&b, 0, 4, &m), 0);
	unsigned char *saved = malloc(limit * 4);
	memcpy(saved, p, limit * 4);
	memset(p, 0x55, limit * 4);
	struct mqk_entry *e = buffer__peek(&b);
	struct mqk_message out;
	capture__read(e, &out);
	assert_int_equal(out.payloadlen, limit * 4);
	assert_memory_equal(out.payload, saved, limit * 4);
	capture__discard(&b, e);
	buffer__release(&b, e);
	free(saved);
	free(p);
}

static void test_strings_copied(void **state)
{
	char topic[] = "a/b/c";
	char client[] = "dev-9";
	char user[] = "bob";
	char payload[] = "hello";
	struct mqk_message m = message(topic, payload, 5);
	struct mqk_message out;

	(void)state;
	m.client_id = client;
	m.username = user;
	assert_int_equal(capture__message(&b, 1, 1, &m), 0);
	/* The event's data is gone after the callback. */
	memset(topic, 'X', sizeof(topic) - 1);
	memset(client, 'X', sizeof(client) - 1);
	memset(user, 'X', sizeof(user) - 1);
	memset(payload, 'X', sizeof(payload) - 1);
	struct mqk_entry *e = buffer__peek(&b);
	capture__read(e, &out);
	assert_string_equal(out.topic, "a/b/c");
	assert_string_equal(out.client_id, "dev-9");
	assert_string_equal(out.username, "bob");
	assert_memory_equal(out.payload, "hello", 5);
	capture__discard(&b, e);
	buffer__release(&b, e);
}

static void test_round_trip_props(void **state)
{
	mosquitto_property *list = NULL;
	struct mqk_message m = message("a", "x", 1);

	(void)state;
	assert_int_equal(
		mosquitto_property_add_string_pair(&list, MQTT_PROP_USER_PROPERTY, "site", "lab"),
		MOSQ_ERR_SUCCESS);
	assert_int_equal(mosquitto_property_add_string(&list, MQTT_PROP_CONTENT_TYPE, "text/plain"),
			 MOSQ_ERR_SUCCESS);
	assert_int_equal(capture__props(list, &props), 0);
	mosquitto_property_free_all(&list);
	m.props = props.data;
	m.props_len = (uint32_t)props.len;
	round_trip(&b, &m, 5, 6);
	/* With an external payload too. */
	unsigned char *big = calloc(1, RING / 2);
	m.payload = big;
	m.payloadlen = RING / 2;
	assert_true(round_trip(&b, &m, 5, 7));
	free(big);
}

static void test_full_ring(void **state)
{
	struct mqk_buffer small;
	struct mqk_message m = message("t", "0123456789", 10);
	unsigned char big[1000] = {0};
	uint64_t seq = 0;

	(void)state;
	assert_int_equal(buffer__init(&small, 4096), 0);
	while (capture__message(&small, 0, seq, &m) == 0) {
		seq++;
	}
	assert_true(seq > 10);
	size_t used = buffer__used(&small);
	/* Full: -1, nothing written; an external payload is not copied either (no leak). */
	assert_int_equal(capture__message(&small, 0, seq, &m), -1);
	m.payload = big;
	m.payloadlen = sizeof(big);
	assert_int_equal(capture__message(&small, 0, seq, &m), -1);
	assert_int_equal(buffer__used(&small), used);
	/* Room again once the Kafka thread has released an entry. */
	struct mqk_entry *e = buffer__peek(&small);
	assert_int_equal(e->seq, 0);
	capture__discard(&small, e);
	buffer__release(&small, e);
	m.payload = "0123456789";
	m.payloadlen = 10;
	assert_int_equal(capture__message(&small, 0, seq, &m), 0);
	for (uint64_t s = 1; s <= seq; s++) {
		e = buffer__peek(&small);
		assert_non_null(e);
		assert_int_equal(e->seq, s);
		capture__discard(&small, e);
		buffer__release(&small, e);
	}
	assert_null(buffer__peek(&small));
	buffer__free(&small);
}

static void test_many_through_small_ring(void **state)
{
	struct mqk_buffer small;
	unsigned char *payload = malloc(1200);
	char topic[64], client[32], user[32];
	uint64_t x = 88172645463325252u;
	int external = 0, wraps;

	(void)state;
	/* 4 KiB: payloads over 512 bytes are external, entries wrap every few messages. */
	assert_int_equal(buffer__init(&small, 4096), 0);
	for (uint64_t seq = 1; seq <= 20000; seq++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		uint32_t len = (uint32_t)(x % 1200);
		for (uint32_t i = 0; i < len; i++) {
			payload[i] = (unsigned char)(seq + i * 3);
		}
		snprintf(topic, sizeof(topic), "site/%llu/%.*s", (unsigned long long)(x % 1000),
			 (int)(x % 40), "levels/levels/levels/levels/levels/levels");
		snprintf(client, sizeof(client), "c%llu", (unsigned long long)(x % 77));
		snprintf(user, sizeof(user), "%.*s", (int)(x % 9), "username");
		struct mqk_message m = message(topic, payload, len);
		m.client_id = client;
		m.username = x % 3 ? user : NULL;
		m.qos = (uint8_t)(x % 3);
		m.retain = x % 5 == 0;
		m.timestamp_ms = (int64_t)seq * 1000;
		external += round_trip(&small, &m, (int)(seq % 100), seq);
	}
	wraps = (int)(atomic_load(&small.head) / small.capacity);
	print_message("20000 messages through a 4 KiB ring: %d external, %d laps\n", external,
		      wraps);
	assert_true(external > 5000);
	assert_true(wraps > 500);
	assert_int_equal(buffer__used(&small), 0);
	buffer__free(&small);
	free(payload);
}

/* ---- capture__props / capture__next_prop -------------------------------------------------- */

struct prop {
	int id;
	const char *name; /* NULL: none */
	uint32_t name_len;
	const char *value;
	uint32_t value_len;
};

#define USER(n, v)                                                                                 \
	{                                                                                          \
		MQK_PROP_USER_PROPERTY, n, sizeof(n) - 1, v, sizeof(v) - 1                         \
	}
#define VALUE(id, v)                                                                               \
	{                                                                                          \
		id, NULL, 0, v, sizeof(v) - 1                                                      \
	}

/* Asserts capture__next_prop gives exactly `want` over data, then stops at the end. */
static void assert_props(const char *data, size_t len, const struct prop *want, size_t n)
{
	const char *cursor = data, *end = data + len;
	const char *name, *value;
	uint32_t name_len, value_len;
	size_t i = 0, expected_len = 0;
	int id;

	while (capture__next_prop(&cursor, end, &id, &name, &name_len, &value, &value_len)) {
		if (i >= n) {
			fail_msg("property %zu (id %d) beyond the %zu expected", i, id, n);
		}
		assert_int_equal(id, want[i].id);
		assert_int_equal(name_len, want[i].name_len);
		if (want[i].name_len == 0) {
			assert_null(name);
		} else {
			assert_memory_equal(name, want[i].name, name_len);
		}
		assert_int_equal(value_len, want[i].value_len);
		assert_non_null(value);
		if (value_len) {
			assert_memory_equal(value, want[i].value, value_len);
		}
		expected_len += PROP_HEADER + want[i].name_len + want[i].value_len;
		i++;
	}
	assert_int_equal(i, n);
	assert_ptr_equal(cursor, end);
	/* The documented layout: a 9-byte header, the name, the value. */
	assert_int_equal(len, expected_len);
}

static void test_props_none(void **state)
{
	const char *cursor = NULL, *name, *value;
	uint32_t name_len, value_len;
	int id;

	(void)state;
	assert_int_equal(capture__props(NULL, &props), 0);
	assert_int_equal(props.len, 0);
	/* NULL, or an empty range: no property. */
	assert_false(capture__next_prop(&cursor, NULL, &id, &name, &name_len, &value, &value_len));
	cursor = "abc";
	const char *start = cursor;
	assert_false(capture__next_prop(&cursor, start, &id, &name, &name_len, &value, &value_len));
	assert_ptr_equal(cursor, start);

	/* Only properties a record does not carry: nothing. */
	mosquitto_property *list = NULL;
	assert_int_equal(mosquitto_property_add_int32(&list, MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, 60),
			 0);
	assert_int_equal(mosquitto_property_add_int16(&list, MQTT_PROP_TOPIC_ALIAS, 3), 0);
	assert_int_equal(mosquitto_property_add_varint(&list, MQTT_PROP_SUBSCRIPTION_IDENTIFIER, 9),
			 0);
	assert_int_equal(capture__props(list, &props), 0);
	assert_int_equal(props.len, 0);
	mosquitto_property_free_all(&list);
}

static void test_props_all_kinds(void **state)
{
	static const char corr[] = {0x00, 0x01, (char)0xfe, (char)0xff, 0x00};
	mosquitto_property *list = NULL;

	(void)state;
	assert_int_equal(
		mosquitto_property_add_string_pair(&list, MQTT_PROP_USER_PROPERTY, "site", "lab"),
		0);
	assert_int_equal(
		mosquitto_property_add_string(&list, MQTT_PROP_CONTENT_TYPE, "application/json"),
		0);
	assert_int_equal(mosquitto_property_add_int32(&list, MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, 60),
			 0);
	assert_int_equal(mosquitto_property_add_string_pair(&list, MQTT_PROP_USER_PROPERTY, "unit",
							    "d\xc3\xa9"),
			 0);
	assert_int_equal(
		mosquitto_property_add_string(&list, MQTT_PROP_RESPONSE_TOPIC, "replies/dev-1"), 0);
	assert_int_equal(mosquitto_property_add_binary(&list, MQTT_PROP_CORRELATION_DATA, corr,
						       sizeof(corr)),
			 0);
	assert_int_equal(mosquitto_property_add_byte(&list, MQTT_PROP_PAYLOAD_FORMAT_INDICATOR, 1),
			 0);
	/* Repeats keep their place, in the order the client sent them. */
	assert_int_equal(
		mosquitto_property_add_string_pair(&list, MQTT_PROP_USER_PROPERTY, "site", "roof"),
		0);
	assert_int_equal(
		mosquitto_property_add_string_pair(&list, MQTT_PROP_USER_PROPERTY, "site", "lab"),
		0);
	assert_int_equal(mosquitto_property_add_string_pair(&list, MQTT_PROP_USER_PROPERTY, "", ""),
			 0);
	assert_int_equal(
		mosquitto_property_add_string_pair(&list, MQTT_PROP_USER_PROPERTY, "k", ""), 0);
	assert_int_equal(
		mosquitto_property_add_string_pair(&list, MQTT_PROP_USER_PROPERTY, "", "v"), 0);

	/* Stale contents from an earlier message are replaced, not appended to. */
	assert_int_equal(capture__props(list, &props), 0);
	assert_int_equal(capture__props(list, &props), 0);
	mosquitto_property_free_all(&list);

	const struct prop want[] = {
		USER("site", "lab"),
		VALUE(MQK_PROP_CONTENT_TYPE, "application/json"),
		USER("unit", "d\xc3\xa9"),
		VALUE(MQK_PROP_RESPONSE_TOPIC, "replies/dev-1"),
		{MQK_PROP_CORRELATION_DATA, NULL, 0, corr, sizeof(corr)},
		{MQK_PROP_PAYLOAD_FORMAT, NULL, 0, "\x01", 1},
		USER("site", "roof"),
		USER("site", "lab"),
		USER("", ""),
		USER("k", ""),
		USER("", "v"),
	};
	assert_props(props.data, props.len, want, N(want));
	/* The ids are MQTT's. */
	assert_int_equal(MQK_PROP_USER_PROPERTY, MQTT_PROP_USER_PROPERTY);
	assert_int_equal(MQK_PROP_CONTENT_TYPE, MQTT_PROP_CONTENT_TYPE);
	assert_int_equal(MQK_PROP_RESPONSE_TOPIC, MQTT_PROP_RESPONSE_TOPIC);
	assert_int_equal(MQK_PROP_CORRELATION_DATA, MQTT_PROP_CORRELATION_DATA);
	assert_int_equal(MQK_PROP_PAYLOAD_FORMAT, MQTT_PROP_PAYLOAD_FORMAT_INDICATOR);
}

static void test_props_edge_values(void **state)
{
	mosquitto_property *list = NULL;

	(void)state;
	assert_int_equal(mosquitto_property_add_binary(&list, MQTT_PROP_CORRELATION_DATA, NULL, 0),
			 0);
	assert_int_equal(mosquitto_property_add_byte(&list, MQTT_PROP_PAYLOAD_FORMAT_INDICATOR, 0),
			 0);
	assert_int_equal(mosquitto_property_add_string(&list, MQTT_PROP_CONTENT_TYPE, ""), 0);
	assert_int_equal(capture__props(list, &props), 0);
	mosquitto_property_free_all(&list);
	const struct prop want[] = {
		{MQK_PROP_CORRELATION_DATA, NULL, 0, "", 0},
		{MQK_PROP_PAYLOAD_FORMAT, NULL, 0, "\x00", 1},
		{MQK_PROP_CONTENT_TYPE, NULL, 0, "", 0},
	};
	assert_props(props.data, props.len, want, N(want));
}

static void test_props_many_and_long(void **state)
{
	mosquitto_property *list = NULL;
	struct prop want[301];
	char names[300][8], values[300][64];
	char *long_name = malloc(65536), *long_value = malloc(65536);

	(void)state;
	/* 300 user properties: the output grows past its first 256 bytes many times. */
	for (int i = 0; i < 300; i++) {
		snprintf(names[i], sizeof(names[i]), "k%03d", i);
		snprintf(values[i], sizeof(values[i]), "%.*s", i % 60,
			 "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv");
		assert_int_equal(mosquitto_property_add_string_pair(&list, MQTT_PROP_USER_PROPERTY,
								    names[i], values[i]),
				 0);
		want[i] = (struct prop){MQK_PROP_USER_PROPERTY, names[i], 4, values[i],
					(uint32_t)strlen(values[i])};
	}
	/* The longest MQTT strings: 65535 bytes. */
	memset(long_name, 'n', 65535);
	long_name[65535] = '\0';
	memset(long_value, 'w', 65535);
	long_value[65535] = '\0';
	assert_int_equal(mosquitto_property_add_string_pair(&list, MQTT_PROP_USER_PROPERTY,
							    long_name, long_value),
			 0);
	want[300] = (struct prop){MQK_PROP_USER_PROPERTY, long_name, 65535, long_value, 65535};
	assert_int_equal(capture__props(list, &props), 0);
	mosquitto_property_free_all(&list);
	assert_true(props.size >= props.len);
	assert_props(props.data, props.len, want, N(want));

	/* Through a ring large enough (an entry takes at most half of it) and back. */
	struct mqk_buffer big;
	struct mqk_message m = message("a", "x", 1);
	assert_int_equal(buffer__init(&big, 1 << 20), 0);
	m.props = props.data;
	m.props_len = (uint32_t)props.len;
	round_trip(&big, &m, 0, 1);
	buffer__free(&big);
	free(long_name);
	free(long_value);
}

static void test_next_prop_truncated(void **state)
{
	static const char corr[] = {0x00, 0x09};
	mosquitto_property *list = NULL;
	size_t ends[8];
	size_t n = 0;

	(void)state;
	assert_int_equal(
		mosquitto_property_add_string_pair(&list, MQTT_PROP_USER_PROPERTY, "site", "lab"),
		0);
	assert_int_equal(mosquitto_property_add_binary(&list, MQTT_PROP_CORRELATION_DATA, corr,
						       sizeof(corr)),
			 0);
	assert_int_equal(mosquitto_property_add_string_pair(&list, MQTT_PROP_USER_PROPERTY, "", ""),
			 0);
	assert_int_equal(mosquitto_property_add_string(&list, MQTT_PROP_CONTENT_TYPE, "text/x"), 0);
	assert_int_equal(capture__props(list, &props), 0);
	mosquitto_property_free_all(&list);
	/* Where each property ends. */
	ends[n++] = PROP_HEADER + 4 + 3;
	ends[n++] = ends[0] + PROP_HEADER + 2;
	ends[n++] = ends[1] + PROP_HEADER;
	ends[n++] = ends[2] + PROP_HEADER + 6;
	assert_int_equal(props.len, ends[3]);

	/*
	 * Every prefix, in a buffer of exactly that size (valgrind sees a read past it): the
	 * whole properties in it, then false, the cursor left at the first cut one.
	 */
	for (size_t len = 0; len <= props.len; len++) {
		char *cut = malloc(len ? len : 1);
		const char *cursor = cut, *name, *value;
		uint32_t name_len, value_len;
		size_t whole = 0;
		int id;

		memcpy(cut, props.data, len);
		while (capture__next_prop(&cursor, cut + len, &id, &name, &name_len, &value,
					  &value_len)) {
			assert_true(value + value_len <= cut + len);
			assert_true(whole < n);
			whole++;
		}
		size_t expected = 0;
		while (expected < n && ends[expected] <= len) {
			expected++;
		}
		if (whole != expected) {
			fail_msg("%zu of %zu bytes: %zu properties, expected %zu", len, props.len,
				 whole, expected);
		}
		assert_ptr_equal(cursor, cut + (expected ? ends[expected - 1] : 0));
		free(cut);
	}
}

static void test_next_prop_bad_lengths(void **state)
{
	static const struct {
		uint32_t name_len, value_len;
		size_t have; /* bytes after the header */
	} cases[] = {
		{0xffffffffu, 0xffffffffu, 16},
		{0x80000000u, 0x80000000u, 16}, /* sums to 2^32: no wrap to 0 */
		{0xffffffffu, 1, 16},
		{1, 0xffffffffu, 16},
		{8, 9, 16},
		{17, 0, 16},
		{0, 17, 16},
	};

	(void)state;
	for (size_t i = 0; i < N(cases); i++) {
		size_t len = PROP_HEADER + cases[i].have;
		char *data = calloc(1, len);
		const char *cursor = data, *name, *value;
		uint32_t name_len, value_len;
		int id;

		data[0] = MQK_PROP_USER_PROPERTY;
		memcpy(data + 1, &cases[i].name_len, 4);
		memcpy(data + 5, &cases[i].value_len, 4);
		if (capture__next_prop(&cursor, data + len, &id, &name, &name_len, &value,
				       &value_len)) {
			fail_msg("case %zu: a property of %u + %u bytes in %zu", i,
				 cases[i].name_len, cases[i].value_len, cases[i].have);
		}
		assert_ptr_equal(cursor, data);
		free(data);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_round_trip_fields),       T(test_round_trip_payloads),
		T(test_external_payload),        T(test_strings_copied),
		T(test_round_trip_props),        T(test_full_ring),
		T(test_many_through_small_ring), T(test_props_none),
		T(test_props_all_kinds),         T(test_props_edge_values),
		T(test_props_many_and_long),     T(test_next_prop_truncated),
		T(test_next_prop_bad_lengths),
#undef T
	};
	return cmocka_run_group_tests_name("capture", tests, NULL, NULL);
}
