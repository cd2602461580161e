/*
 * test_record.c - record__build: topics (static, dynamic, bad), keys, raw and json
 * values, seq, and every header, MQTT v5 properties included (in capture.c's compact
 * form, made from libmosquitto's property list by capture__props); record__discard and
 * record__u64_to_str.
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
#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "fake_broker.h"
#include "mosquitto_kafka.h"
#include "mqk.h"

#define BOOT_US INT64_C(1763912300000000)
#define BOOT_STR "1763912300000000"

static struct mqk_scratch scratch;
static struct mqk_origin origin;
static struct mqk_bytes props_buf; /* capture__props's output for the current test */

static int setup(void **state)
{
	(void)state;
	fake_broker_reset();
	assert_int_equal(record__scratch_init(&scratch), 0);
	record__origin_init(&origin, "broker-a", BOOT_US);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	record__scratch_free(&scratch);
	free(props_buf.data);
	memset(&props_buf, 0, sizeof(props_buf));
	return 0;
}

/* Gives msg the properties of a broker list, as mosquitto's thread does (plugin.c). */
static void set_props(struct mqk_message *msg, const mosquitto_property *props)
{
	assert_int_equal(capture__props(props, &props_buf), 0);
	msg->props = props_buf.data;
	msg->props_len = (uint32_t)props_buf.len;
}

/* A route as options.c would make it; key NULL: key=none. */
static void make_route(struct mqk_route *r, const char *name, const char *filter, const char *topic,
		       const char *key, enum mqk_format format)
{
	char err[512];

	memset(r, 0, sizeof(*r));
	r->name = (char *)name;
	r->filter = (char *)filter;
	r->format = format;
	if (template__compile(&r->topic, topic, filter, true, err, sizeof(err))) {
		fail_msg("topic template: %s", err);
	}
	if (key && template__compile(&r->key, key, filter, false, err, sizeof(err))) {
		fail_msg("key template: %s", err);
	}
}

static void free_route(struct mqk_route *r)
{
	template__free(&r->topic);
	template__free(&r->key);
}

static struct mqk_message message(const char *topic, const char *payload)
{
	return (struct mqk_message){
		.topic = topic,
		.client_id = "dev-1",
		.username = "alice",
		.payload = payload,
		.payloadlen = payload ? (uint32_t)strlen(payload) : 0,
		.qos = 1,
		.retain = false,
		.timestamp_ms = INT64_C(1763912345678),
		.props = NULL,
		.props_len = 0,
	};
}

struct hdr {
	const char *name;
	const char *value;
	size_t size; /* 0: strlen(value) */
};

/* Asserts the record's headers are exactly `expected`, in order. */
static void assert_headers(const rd_kafka_headers_t *hdrs, const struct hdr *expected, size_t n)
{
	assert_non_null(hdrs);
	if (rd_kafka_header_cnt(hdrs) != n) {
		for (size_t i = 0; i < rd_kafka_header_cnt(hdrs); i++) {
			const char *name;
			const void *value;
			size_t size;
			rd_kafka_header_get_all(hdrs, i, &name, &value, &size);
			print_error("header %zu: %s = %.*s\n", i, name, (int)size,
				    value ? (const char *)value : "(null)");
		}
	}
	assert_int_equal(rd_kafka_header_cnt(hdrs), n);
	for (size_t i = 0; i < n; i++) {
		const char *name;
		const void *value;
		size_t size;
		size_t want = expected[i].size ? expected[i].size : strlen(expected[i].value);

		assert_int_equal(rd_kafka_header_get_all(hdrs, i, &name, &value, &size),
				 RD_KAFKA_RESP_ERR_NO_ERROR);
		assert_string_equal(name, expected[i].name);
		if (size != want) {
			print_error("header %s: %zu bytes, expected %zu\n", name, size, want);
		}
		assert_int_equal(size, want);
		assert_non_null(value);
		assert_memory_equal(value, expected[i].value, want);
	}
}

/* The value of the last header called name, NUL-terminated (for text headers). */
static const char *header(const rd_kafka_headers_t *hdrs, const char *name)
{
	static char buf[512];
	const void *value;
	size_t size;

	if (rd_kafka_header_get_last(hdrs, name, &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		return NULL;
	}
	assert_true(size < sizeof(buf));
	memcpy(buf, value, size);
	buf[size] = '\0';
	return buf;
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- topics --------------------------------------------------------------------------- */

static void test_static_topic(void **state)
{
	struct mqk_route r;
	struct mqk_record rec;
	struct mqk_message msg = message("sensors/ue-1/spectrum", "{\"dbm\":-71}");

	(void)state;
	make_route(&r, "spectrum", "sensors/+/spectrum", "spectrum", "{clientid}", MQK_FORMAT_RAW);
	/* Without a topic handle, the static name itself. */
	assert_int_equal(record__build(&rec, &r, &msg, 1, &origin, &scratch), MQK_BUILD_OK);
	assert_null(rec.rkt);
	assert_string_equal(rec.topic, "spectrum");
	assert_ptr_equal(rec.route, &r);
	assert_int_equal(rec.timestamp_ms, INT64_C(1763912345678));
	record__discard(&rec);

	/* With producer.c's handle: only copied (never dereferenced here). */
	r.rkt = (rd_kafka_topic_t *)(uintptr_t)0x1234;
	assert_int_equal(record__build(&rec, &r, &msg, 1, &origin, &scratch), MQK_BUILD_OK);
	assert_ptr_equal(rec.rkt, (rd_kafka_topic_t *)(uintptr_t)0x1234);
	assert_null(rec.topic);
	record__discard(&rec);
	free_route(&r);
}

static void test_dynamic_topic(void **state)
{
	static const struct {
		const char *filter, *topic_tpl, *topic, *expected;
	} cases[] = {
		{"sensors/+/spectrum", "spectrum-{1}", "sensors/ue-1/spectrum", "spectrum-ue-1"},
		/* MQTT levels become dotted Kafka names. */
		{"a/#", "mqtt.{1}", "a/b/c/d", "mqtt.b.c.d"},
		{"#", "{1}", "x/y", "x.y"},
		{"+/#", "{2}_{1}", "p/q/r", "q.r_p"},
		{"a/#", "t.{1}", "a/b//", "t.b.."},
		{"#", "{broker}-{clientid}", "z", "broker-a-dev-1"},
		{"#", "{topic}", "a/b", "a.b"},
		{"#", "u.{username}", "a", "u.alice"},
	};

	(void)state;
	for (size_t i = 0; i < N(cases); i++) {
		struct mqk_route r;
		struct mqk_record rec;
		struct mqk_message msg = message(cases[i].topic, "x");

		make_route(&r, "r", cases[i].filter, cases[i].topic_tpl, NULL, MQK_FORMAT_RAW);
		assert_int_equal(record__build(&rec, &r, &msg, 1, &origin, &scratch), MQK_BUILD_OK);
		assert_null(rec.rkt);
		assert_string_equal(rec.topic, cases[i].expected);
		/* The header keeps the MQTT topic unchanged. */
		assert_string_equal(header(rec.headers, MQK_HDR_TOPIC), cases[i].topic);
		record__discard(&rec);
		free_route(&r);
	}
}

static void test_bad_topic(void **state)
{
	static const struct {
		const char *filter, *topic_tpl, *topic;
		bool no_username;
	} cases[] = {
		{"+/x", "t-{1}", "a b/x", false}, /* illegal characters */
		{"+/x", "t-{1}", "caf\xc3\xa9/x", false},
		{"+/x", "t-{1}", "a:b/x", false},
		{"a/#", "{1}", "a", false},     /* empty name */
		{"#", "{username}", "a", true}, /* empty name */
		{"+/x", "{1}", "./x", false},   /* "." */
		{"+/x", "{1}", "../x", false},  /* ".." */
		{"#", "{1}", "/", false},       /* "/" becomes "." */
		{"a/#", "{1}", "a/./", false},  /* "./" becomes ".." */
	};
	char long_level[300];

	(void)state;
	for (size_t i = 0; i < N(cases); i++) {
		struct mqk_route r;
		struct mqk_record rec;
		struct mqk_message msg = message(cases[i].topic, "x");

		if (cases[i].no_username) {
			msg.username = NULL;
		}
		make_route(&r, "r", cases[i].filter, cases[i].topic_tpl, NULL, MQK_FORMAT_RAW);
		r.seq = 41;
		if (record__build(&rec, &r, &msg, 42, &origin, &scratch) != MQK_BUILD_BAD_TOPIC) {
			fail_msg("case %zu: '%s' for '%s' gave Kafka topic '%s'", i,
				 cases[i].topic_tpl, cases[i].topic, rec.topic);
		}
		/*
		 * The seq was taken by mosquitto's thread (plugin.c) before the entry reached
		 * the Kafka thread: record__build leaves the route's counter alone.
		 */
		assert_int_equal(r.seq, 41);
		assert_null(rec.headers);
		record__discard(&rec);
		free_route(&r);
	}

	/* 249 bytes is the longest name; 250 is refused, and so is more than the buffer. */
	struct mqk_route r;
	struct mqk_record rec;
	make_route(&r, "r", "+/x", "{1}", NULL, MQK_FORMAT_RAW);
	for (size_t len = 248; len <= 257; len++) {
		memset(long_level, 'k', len);
		strcpy(long_level + len, "/x");
		struct mqk_message msg = message(long_level, "x");
		enum mqk_build_error e = record__build(&rec, &r, &msg, len, &origin, &scratch);
		assert_int_equal(e, len <= 249 ? MQK_BUILD_OK : MQK_BUILD_BAD_TOPIC);
		if (e == MQK_BUILD_OK) {
			assert_int_equal(strlen(rec.topic), len);
		}
		record__discard(&rec);
	}
	assert_int_equal(r.seq, 0);
	free_route(&r);
}

/* ---- keys ------------------------------------------------------------------------------ */

static void test_keys(void **state)
{
	static const struct {
		const char *key_tpl; /* NULL: key=none */
		const char *expected;
	} cases[] = {
		{"{clientid}", "dev-1"},
		{"{username}", "alice"},
		{"{topic}", "sensors/ue-1/spectrum"},
		{"{broker}", "broker-a"},
		{NULL, NULL},
		{"{1}", "ue-1"},
		{"{clientid}-{1}/x", "dev-1-ue-1/x"},
	};

	(void)state;
	for (size_t i = 0; i < N(cases); i++) {
		struct mqk_route r;
		struct mqk_record rec;
		struct mqk_message msg = message("sensors/ue-1/spectrum", "x");

		make_route(&r, "r", "sensors/+/spectrum", "t", cases[i].key_tpl, MQK_FORMAT_RAW);
		assert_int_equal(record__build(&rec, &r, &msg, 1, &origin, &scratch), MQK_BUILD_OK);
		if (cases[i].expected == NULL) {
			assert_null(rec.key);
			assert_int_equal(rec.key_len, 0);
		} else {
			assert_non_null(rec.key);
			assert_int_equal(rec.key_len, strlen(cases[i].expected));
			assert_memory_equal(rec.key, cases[i].expected, rec.key_len);
		}
		record__discard(&rec);
		free_route(&r);
	}
}

static void test_key_empty_values(void **state)
{
	struct mqk_route r;
	struct mqk_record rec;
	struct mqk_message msg = message("a", "x");

	(void)state;
	/* key=username without a username: an empty key, not a null one. */
	msg.username = NULL;
	make_route(&r, "r", "#", "t", "{username}", MQK_FORMAT_RAW);
	assert_int_equal(record__build(&rec, &r, &msg, 1, &origin, &scratch), MQK_BUILD_OK);
	assert_non_null(rec.key);
	assert_int_equal(rec.key_len, 0);
	record__discard(&rec);
	free_route(&r);

	/* No client id (NULL) counts as "". */
	msg = message("a", "x");
	msg.client_id = NULL;
	make_route(&r, "r", "#", "t", "{clientid}", MQK_FORMAT_RAW);
	assert_int_equal(record__build(&rec, &r, &msg, 1, &origin, &scratch), MQK_BUILD_OK);
	assert_non_null(rec.key);
	assert_int_equal(rec.key_len, 0);
	assert_string_equal(header(rec.headers, MQK_HDR_CLIENT_ID), "");
	record__discard(&rec);
	free_route(&r);
}

static void test_key_too_long(void **state)
{
	struct mqk_route r;
	struct mqk_record rec;
	size_t len = 65535;
	char *topic = malloc(len + 1);

	(void)state;
	memset(topic, 'a', len);
	topic[len] = '\0';
	struct mqk_message msg = message(topic, "x");

	/* Three full-length topics fit in the key buffer ... */
	make_route(&r, "r", "#", "t", "{topic}{topic}{topic}", MQK_FORMAT_RAW);
	assert_int_equal(record__build(&rec, &r, &msg, 1, &origin, &scratch), MQK_BUILD_OK);
	assert_int_equal(rec.key_len, 3 * len);
	record__discard(&rec);
	free_route(&r);

	/* ... four do not: refused (its seq, taken on mosquitto's thread, is a gap). */
	make_route(&r, "r", "#", "t", "{topic}{topic}{topic}{topic}", MQK_FORMAT_RAW);
	assert_int_equal(record__build(&rec, &r, &msg, 1, &origin, &scratch), MQK_BUILD_REFUSED);
	assert_int_equal(r.seq, 0);
	assert_null(rec.headers);
	record__discard(&rec);
	free_route(&r);
	free(topic);
}

/* ---- values ----------------------------------------------------------------------------- */

static void test_raw_value(void **state)
{
	struct mqk_route r;
	struct mqk_record rec;
	static const char bin[] = {'a', 0, (char)0xff, 'b'};
	struct mqk_message msg = message("a", NULL);

	(void)state;
	make_route(&r, "r", "#", "t", NULL, MQK_FORMAT_RAW);
	msg.payload = bin;
	msg.payloadlen = sizeof(bin);
	assert_int_equal(record__build(&rec, &r, &msg, 1, &origin, &scratch), MQK_BUILD_OK);
	/* Not copied: producer.c has librdkafka copy it once. */
	assert_ptr_equal(rec.value, bin);
	assert_int_equal(rec.value_len, 4);
	record__discard(&rec);

	/* An empty payload (the broker gives NULL, 0) is "" with length 0, not a tombstone. */
	msg.payload = NULL;
	msg.payloadlen = 0;
	assert_int_equal(record__build(&rec, &r, &msg, 1, &origin, &scratch), MQK_BUILD_OK);
	assert_non_null(rec.value);
	assert_int_equal(rec.value_len, 0);
	assert_string_equal(rec.value, "");
	record__discard(&rec);
	free_route(&r);
}

static void test_json_value(void **state)
{
	struct mqk_route r;
	struct mqk_record rec;
	struct mqk_message msg = message("sensors/ue-1/spectrum", "{\"dbm\":-71}");

	(void)state;
	make_route(&r, "spectrum", "sensors/+/spectrum", "spectrum", "{clientid}", MQK_FORMAT_JSON);
	assert_int_equal(record__build(&rec, &r, &msg, 7, &origin, &scratch), MQK_BUILD_OK);
	assert_non_null(rec.value);
	assert_int_equal(rec.value_len, strlen(rec.value));
	assert_ptr_equal(rec.value, scratch.json);
	cJSON *obj = cJSON_ParseWithLength(rec.value, rec.value_len);
	assert_non_null(obj);
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(obj, MQK_ENV_TOPIC)->valuestring,
			    "sensors/ue-1/spectrum");
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(obj, MQK_ENV_ROUTE)->valuestring,
			    "spectrum");
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(obj, MQK_ENV_PAYLOAD)->valuestring,
			    "{\"dbm\":-71}");
	/* The envelope's seq is the header's. */
	assert_int_equal(cJSON_GetObjectItemCaseSensitive(obj, MQK_ENV_SEQ)->valuedouble, 7);
	assert_string_equal(header(rec.headers, MQK_HDR_SEQ), "7");
	assert_non_null(strstr(rec.value, "\"boot\":" BOOT_STR));
	cJSON_Delete(obj);
	/* The key does not change with the format. */
	assert_int_equal(rec.key_len, 5);
	assert_memory_equal(rec.key, "dev-1", 5);
	record__discard(&rec);
	free_route(&r);
}

/* ---- seq ---------------------------------------------------------------------------------- */

static void test_seq_per_route(void **state)
{
	struct mqk_route a, b;
	struct mqk_record rec;
	struct mqk_message msg = message("x/y", "p");
	char want[24];

	(void)state;
	make_route(&a, "a", "x/#", "ta", NULL, MQK_FORMAT_RAW);
	make_route(&b, "b", "#", "tb", NULL, MQK_FORMAT_RAW);
	/* Each route numbers its messages: mosquitto's thread does (plugin.c, forward). */
	for (int i = 1; i <= 5; i++) {
		assert_int_equal(record__build(&rec, &a, &msg, ++a.seq, &origin, &scratch),
				 MQK_BUILD_OK);
		snprintf(want, sizeof(want), "%d", i);
		assert_string_equal(header(rec.headers, MQK_HDR_SEQ), want);
		assert_string_equal(header(rec.headers, MQK_HDR_ROUTE), "a");
		record__discard(&rec);
	}
	assert_int_equal(record__build(&rec, &b, &msg, ++b.seq, &origin, &scratch), MQK_BUILD_OK);
	assert_string_equal(header(rec.headers, MQK_HDR_SEQ), "1");
	assert_string_equal(header(rec.headers, MQK_HDR_ROUTE), "b");
	record__discard(&rec);
	/* record__build only reads the seq it is given. */
	assert_int_equal(a.seq, 5);
	assert_int_equal(b.seq, 1);

	/* The header is the seq given, whatever the route's counter says. */
	assert_int_equal(record__build(&rec, &a, &msg, 1234567, &origin, &scratch), MQK_BUILD_OK);
	assert_string_equal(header(rec.headers, MQK_HDR_SEQ), "1234567");
	record__discard(&rec);
	assert_int_equal(a.seq, 5);

	/* Near the top of the range: exact decimal. */
	assert_int_equal(record__build(&rec, &a, &msg, UINT64_MAX, &origin, &scratch),
			 MQK_BUILD_OK);
	assert_string_equal(header(rec.headers, MQK_HDR_SEQ), "18446744073709551615");
	record__discard(&rec);
	free_route(&a);
	free_route(&b);
}

/* ---- headers ------------------------------------------------------------------------------- */

static void test_headers_fixed(void **state)
{
	struct mqk_route r;
	struct mqk_record rec;
	struct mqk_message msg = message("sensors/ue-1/spectrum", "x");

	(void)state;
	make_route(&r, "spectrum", "sensors/+/spectrum", "spectrum", "{clientid}", MQK_FORMAT_RAW);
	msg.qos = 2;
	msg.retain = true;
	assert_int_equal(record__build(&rec, &r, &msg, 1, &origin, &scratch), MQK_BUILD_OK);
	const struct hdr all[] = {
		{MQK_HDR_TOPIC, "sensors/ue-1/spectrum", 0},
		{MQK_HDR_CLIENT_ID, "dev-1", 0},
		{MQK_HDR_USERNAME, "alice", 0},
		{MQK_HDR_QOS, "2", 0},
		{MQK_HDR_RETAIN, "1", 0},
		{MQK_HDR_BROKER, "broker-a", 0},
		{MQK_HDR_ROUTE, "spectrum", 0},
		{MQK_HDR_SEQ, "1", 0},
		{MQK_HDR_BOOT, BOOT_STR, 0},
	};
	assert_headers(rec.headers, all, N(all));
	record__discard(&rec);

	/* No username: no header. QoS 0, retain 0. */
	msg.username = NULL;
	msg.qos = 0;
	msg.retain = false;
	assert_int_equal(record__build(&rec, &r, &msg, 2, &origin, &scratch), MQK_BUILD_OK);
	const struct hdr no_user[] = {
		{MQK_HDR_TOPIC, "sensors/ue-1/spectrum", 0},
		{MQK_HDR_CLIENT_ID, "dev-1", 0},
		{MQK_HDR_QOS, "0", 0},
		{MQK_HDR_RETAIN, "0", 0},
		{MQK_HDR_BROKER, "broker-a", 0},
		{MQK_HDR_ROUTE, "spectrum", 0},
		{MQK_HDR_SEQ, "2", 0},
		{MQK_HDR_BOOT, BOOT_STR, 0},
	};
	assert_headers(rec.headers, no_user, N(no_user));
	assert_null(header(rec.headers, MQK_HDR_USERNAME));
	record__discard(&rec);

	/* An empty username is a username. */
	msg.username = "";
	msg.qos = 1;
	assert_int_equal(record__build(&rec, &r, &msg, 1, &origin, &scratch), MQK_BUILD_OK);
	assert_string_equal(header(rec.headers, MQK_HDR_USERNAME), "");
	assert_string_equal(header(rec.headers, MQK_HDR_QOS), "1");
	record__discard(&rec);
	free_route(&r);
}

static void test_headers_v5_properties(void **state)
{
	struct mqk_route r;
	struct mqk_record rec;
	struct mqk_message msg = message("a/b", "x");
	mosquitto_property *props = NULL;
	static const unsigned char corr[] = {0x00, 0x01, 0xfe, 0xff, 'c'};

	(void)state;
	assert_int_equal(
		mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, "site", "lab"),
		MOSQ_ERR_SUCCESS);
	assert_int_equal(
		mosquitto_property_add_string(&props, MQTT_PROP_CONTENT_TYPE, "application/json"),
		MOSQ_ERR_SUCCESS);
	assert_int_equal(
		mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, "unit", "dBm"),
		MOSQ_ERR_SUCCESS);
	assert_int_equal(
		mosquitto_property_add_string(&props, MQTT_PROP_RESPONSE_TOPIC, "replies/dev-1"),
		MOSQ_ERR_SUCCESS);
	assert_int_equal(mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, corr,
						       sizeof(corr)),
			 MOSQ_ERR_SUCCESS);
	assert_int_equal(mosquitto_property_add_byte(&props, MQTT_PROP_PAYLOAD_FORMAT_INDICATOR, 1),
			 MOSQ_ERR_SUCCESS);
	/* A repeat keeps its place; a name that imitates the plugin's stays prefixed. */
	assert_int_equal(
		mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, "site", "roof"),
		MOSQ_ERR_SUCCESS);
	assert_int_equal(
		mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, "mqtt.seq", ""),
		MOSQ_ERR_SUCCESS);
	/* Properties the plugin does not map are ignored. */
	assert_int_equal(
		mosquitto_property_add_int32(&props, MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, 60),
		MOSQ_ERR_SUCCESS);
	set_props(&msg, props);
	/* The compact form stands alone: the broker's list may be gone. */
	mosquitto_property_free_all(&props);

	make_route(&r, "r", "#", "t", NULL, MQK_FORMAT_RAW);
	assert_int_equal(record__build(&rec, &r, &msg, 1, &origin, &scratch), MQK_BUILD_OK);
	const struct hdr all[] = {
		{MQK_HDR_TOPIC, "a/b", 0},
		{MQK_HDR_CLIENT_ID, "dev-1", 0},
		{MQK_HDR_USERNAME, "alice", 0},
		{MQK_HDR_QOS, "1", 0},
		{MQK_HDR_RETAIN, "0", 0},
		{MQK_HDR_BROKER, "broker-a", 0},
		{MQK_HDR_ROUTE, "r", 0},
		{MQK_HDR_SEQ, "1", 0},
		{MQK_HDR_BOOT, BOOT_STR, 0},
		{MQK_HDR_USER_PREFIX "site", "lab", 0},
		{MQK_HDR_CONTENT_TYPE, "application/json", 0},
		{MQK_HDR_USER_PREFIX "unit", "dBm", 0},
		{MQK_HDR_RESPONSE_TOPIC, "replies/dev-1", 0},
		{MQK_HDR_CORRELATION_DATA, (const char *)corr, sizeof(corr)},
		{MQK_HDR_PAYLOAD_FORMAT, "1", 0},
		{MQK_HDR_USER_PREFIX "site", "roof", 0},
		{"mqtt.user.mqtt.seq", "", 0},
	};
	assert_headers(rec.headers, all, N(all));
	record__discard(&rec);
	assert_null(rec.headers);
	record__discard(&rec); /* twice is harmless */
	free_route(&r);
}

static void test_headers_v5_edge_values(void **state)
{
	struct mqk_route r;
	struct mqk_record rec;
	struct mqk_message msg = message("a", "x");
	mosquitto_property *props = NULL;
	const void *value;
	size_t size;

	(void)state;
	assert_int_equal(
		mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, "", ""),
		MOSQ_ERR_SUCCESS);
	assert_int_equal(mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, NULL, 0),
			 MOSQ_ERR_SUCCESS);
	assert_int_equal(mosquitto_property_add_byte(&props, MQTT_PROP_PAYLOAD_FORMAT_INDICATOR, 0),
			 MOSQ_ERR_SUCCESS);
	set_props(&msg, props);
	make_route(&r, "r", "#", "t", NULL, MQK_FORMAT_RAW);
	assert_int_equal(record__build(&rec, &r, &msg, 1, &origin, &scratch), MQK_BUILD_OK);
	assert_int_equal(rd_kafka_header_cnt(rec.headers), 9 + 3);

	const char *name;
	assert_int_equal(rd_kafka_header_get_all(rec.headers, 9, &name, &value, &size), 0);
	assert_string_equal(name, "mqtt.user.");
	assert_int_equal(size, 0);
	rd_kafka_header_get_all(rec.headers, 10, &name, &value, &size);
	assert_string_equal(name, MQK_HDR_CORRELATION_DATA);
	assert_int_equal(size, 0);
	rd_kafka_header_get_all(rec.headers, 11, &name, &value, &size);
	assert_string_equal(name, MQK_HDR_PAYLOAD_FORMAT);
	assert_int_equal(size, 1);
	assert_memory_equal(value, "0", 1);
	record__discard(&rec);
	free_route(&r);
	mosquitto_property_free_all(&props);
}

static void test_headers_user_property_long_name(void **state)
{
	struct mqk_route r;
	struct mqk_record rec;
	struct mqk_message msg = message("a", "x");
	mosquitto_property *props = NULL;
	char *name = malloc(65536);
	char *hdr_name = malloc(65536 + 16);
	const void *value;
	size_t size;

	(void)state;
	/* The longest name MQTT allows: 65535 bytes. */
	memset(name, 'n', 65535);
	name[65535] = '\0';
	assert_int_equal(
		mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, name, "v"),
		MOSQ_ERR_SUCCESS);
	set_props(&msg, props);
	make_route(&r, "r", "#", "t", NULL, MQK_FORMAT_RAW);
	assert_int_equal(record__build(&rec, &r, &msg, 1, &origin, &scratch), MQK_BUILD_OK);
	snprintf(hdr_name, 65536 + 16, MQK_HDR_USER_PREFIX "%s", name);
	assert_int_equal(rd_kafka_header_get_last(rec.headers, hdr_name, &value, &size), 0);
	assert_int_equal(size, 1);
	assert_memory_equal(value, "v", 1);
	record__discard(&rec);
	free_route(&r);
	mosquitto_property_free_all(&props);
	free(name);
	free(hdr_name);
}

/* ---- helpers --------------------------------------------------------------------------------- */

static void test_u64_to_str(void **state)
{
	static const struct {
		uint64_t v;
		const char *s;
	} cases[] = {
		{0, "0"},
		{9, "9"},
		{10, "10"},
		{99, "99"},
		{100, "100"},
		{UINT64_C(9007199254740993), "9007199254740993"},
		{UINT64_MAX - 1, "18446744073709551614"},
		{UINT64_MAX, "18446744073709551615"},
	};
	char buf[32];

	(void)state;
	for (size_t i = 0; i < N(cases); i++) {
		memset(buf, 'x', sizeof(buf));
		assert_int_equal(record__u64_to_str(cases[i].v, buf), strlen(cases[i].s));
		assert_string_equal(buf, cases[i].s);
	}
	/* 21 bytes are enough for the largest. */
	memset(buf, 'x', sizeof(buf));
	record__u64_to_str(UINT64_MAX, buf);
	assert_int_equal(buf[20], '\0');
	assert_int_equal(buf[21], 'x');
}

static void test_origin(void **state)
{
	struct mqk_origin o;

	(void)state;
	record__origin_init(&o, "b-1", 0);
	assert_string_equal(o.boot_str, "0");
	assert_int_equal(o.boot_len, 1);
	assert_int_equal(o.broker_id_len, 3);
	record__origin_init(&o, "b", INT64_MAX);
	assert_string_equal(o.boot_str, "9223372036854775807");
	assert_int_equal(o.boot_len, 19);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_static_topic),
		T(test_dynamic_topic),
		T(test_bad_topic),
		T(test_keys),
		T(test_key_empty_values),
		T(test_key_too_long),
		T(test_raw_value),
		T(test_json_value),
		T(test_seq_per_route),
		T(test_headers_fixed),
		T(test_headers_v5_properties),
		T(test_headers_v5_edge_values),
		T(test_headers_user_property_long_name),
		T(test_u64_to_str),
		T(test_origin),
#undef T
	};
	return cmocka_run_group_tests_name("record", tests, NULL, NULL);
}
