/*
 * test_envelope.c - envelope__encode and envelope__base64: every field of the JSON
 * envelope (parsed back with cJSON), UTF-8 payloads as strings and anything else as
 * base64, escaping, MQTT v5 properties, exact 64-bit integers, RFC 4648 vectors.
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

#define N(a) (sizeof(a) / sizeof((a)[0]))

static struct mqk_origin origin;
static struct mqk_bytes props_buf; /* capture__props's output for the current test */
static char *buf;
static size_t buf_size;
static int buf_len;

static int setup(void **state)
{
	(void)state;
	fake_broker_reset();
	record__origin_init(&origin, "broker-a", INT64_C(1763912300000000));
	buf = NULL;
	buf_size = 0;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	free(buf);
	buf = NULL;
	buf_size = 0;
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

static struct mqk_message message(const char *topic, const void *payload, size_t len)
{
	return (struct mqk_message){
		.topic = topic,
		.client_id = "ue-1",
		.username = NULL,
		.payload = payload,
		.payloadlen = (uint32_t)len,
		.qos = 1,
		.retain = false,
		.timestamp_ms = INT64_C(1763912345678),
	};
}

/* Encodes msg and parses the result back; the caller cJSON_Deletes it. */
static cJSON *encode(const struct mqk_message *msg, const char *route, uint64_t seq)
{
	buf_len = envelope__encode(msg, &origin, route, seq, &buf, &buf_size);
	assert_true(buf_len > 0);
	assert_non_null(buf);
	assert_int_equal((size_t)buf_len, strlen(buf));
	assert_true((size_t)buf_len < buf_size);
	cJSON *obj = cJSON_ParseWithLength(buf, (size_t)buf_len);
	if (obj == NULL) {
		fail_msg("not JSON: %s", buf);
	}
	assert_true(cJSON_IsObject(obj));
	return obj;
}

static cJSON *field(const cJSON *obj, const char *name)
{
	return cJSON_GetObjectItemCaseSensitive(obj, name);
}

static const char *string_field(const cJSON *obj, const char *name)
{
	cJSON *f = field(obj, name);
	if (!cJSON_IsString(f)) {
		fail_msg("field '%s' is not a string in %s", name, buf);
	}
	return f->valuestring;
}

/* Standard base64 decoder (RFC 4648, padding required). Returns the length or -1. */
static long b64_decode(const char *in, unsigned char *out)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t len = strlen(in);
	long o = 0;

	if (len % 4) {
		return -1;
	}
	for (size_t i = 0; i < len; i += 4) {
		uint32_t v = 0;
		int pad = 0;
		for (int k = 0; k < 4; k++) {
			const char *p;
			v <<= 6;
			if (in[i + k] == '=' && i + 4 == len && k >= 2) {
				pad++;
			} else if (pad || in[i + k] == '\0' ||
				   (p = strchr(alphabet, in[i + k])) == NULL) {
				return -1;
			} else {
				v |= (uint32_t)(p - alphabet);
			}
		}
		out[o++] = (unsigned char)(v >> 16);
		if (pad < 2) {
			out[o++] = (unsigned char)(v >> 8);
		}
		if (pad < 1) {
			out[o++] = (unsigned char)v;
		}
	}
	return o;
}

/* Asserts obj carries the payload as text (and not as base64). */
static void assert_text_payload(const cJSON *obj, const void *payload, size_t len)
{
	assert_null(field(obj, MQK_ENV_PAYLOAD_BASE64));
	const char *s = string_field(obj, MQK_ENV_PAYLOAD);
	assert_int_equal(strlen(s), len);
	assert_memory_equal(s, payload, len);
}

/* Asserts obj carries the payload as base64 (and not as text). */
static void assert_b64_payload(const cJSON *obj, const void *payload, size_t len)
{
	unsigned char *decoded = malloc(len + 4);

	assert_null(field(obj, MQK_ENV_PAYLOAD));
	long n = b64_decode(string_field(obj, MQK_ENV_PAYLOAD_BASE64), decoded);
	assert_int_equal(n, (long)len);
	assert_memory_equal(decoded, payload, len);
	free(decoded);
}

/* ---- fields ------------------------------------------------------------------------ */

static void test_all_fields(void **state)
{
	struct mqk_message msg = message("sensors/ue-1/spectrum", "{\"dbm\":-71}", 11);

	(void)state;
	cJSON *obj = encode(&msg, "spectrum", 42);
	assert_string_equal(string_field(obj, MQK_ENV_TOPIC), "sensors/ue-1/spectrum");
	assert_string_equal(string_field(obj, MQK_ENV_CLIENT_ID), "ue-1");
	assert_true(cJSON_IsNull(field(obj, MQK_ENV_USERNAME)));
	assert_true(cJSON_IsNumber(field(obj, MQK_ENV_QOS)));
	assert_int_equal(field(obj, MQK_ENV_QOS)->valueint, 1);
	assert_true(cJSON_IsFalse(field(obj, MQK_ENV_RETAIN)));
	assert_string_equal(string_field(obj, MQK_ENV_BROKER), "broker-a");
	assert_string_equal(string_field(obj, MQK_ENV_ROUTE), "spectrum");
	assert_true(cJSON_IsNumber(field(obj, MQK_ENV_TIMESTAMP)));
	assert_true(cJSON_IsNumber(field(obj, MQK_ENV_SEQ)));
	assert_true(cJSON_IsNumber(field(obj, MQK_ENV_BOOT)));
	assert_int_equal(field(obj, MQK_ENV_SEQ)->valuedouble, 42);
	assert_text_payload(obj, "{\"dbm\":-71}", 11);
	/* Absent without MQTT v5 properties. */
	assert_null(field(obj, MQK_ENV_USER_PROPERTIES));
	assert_null(field(obj, MQK_ENV_CONTENT_TYPE));
	assert_null(field(obj, MQK_ENV_RESPONSE_TOPIC));
	assert_null(field(obj, MQK_ENV_CORRELATION_DATA_BASE64));
	assert_int_equal(cJSON_GetArraySize(obj), 11);
	cJSON_Delete(obj);

	/* The exact text: field order and integer forms. */
	assert_string_equal(buf, "{\"topic\":\"sensors/ue-1/spectrum\",\"client_id\":\"ue-1\","
				 "\"username\":null,\"qos\":1,\"retain\":false,\"broker\":"
				 "\"broker-a\",\"route\":\"spectrum\",\"timestamp\":1763912345678,"
				 "\"seq\":42,\"boot\":1763912300000000,\"payload\":"
				 "\"{\\\"dbm\\\":-71}\"}");
}

static void test_username_qos_retain(void **state)
{
	struct mqk_message msg = message("a", "x", 1);

	(void)state;
	msg.username = "alice";
	msg.qos = 2;
	msg.retain = true;
	cJSON *obj = encode(&msg, "r", 1);
	assert_string_equal(string_field(obj, MQK_ENV_USERNAME), "alice");
	assert_int_equal(field(obj, MQK_ENV_QOS)->valueint, 2);
	assert_true(cJSON_IsTrue(field(obj, MQK_ENV_RETAIN)));
	cJSON_Delete(obj);

	msg.username = "";
	msg.qos = 0;
	msg.client_id = NULL;
	obj = encode(&msg, "r", 1);
	assert_string_equal(string_field(obj, MQK_ENV_USERNAME), "");
	assert_string_equal(string_field(obj, MQK_ENV_CLIENT_ID), "");
	assert_int_equal(field(obj, MQK_ENV_QOS)->valueint, 0);
	cJSON_Delete(obj);
}

static void test_exact_integers(void **state)
{
	struct mqk_message msg = message("a", "x", 1);

	(void)state;
	/* 2^53 + 1: a double would print 9007199254740992. */
	msg.timestamp_ms = INT64_C(9007199254740995);
	origin.boot_us = INT64_C(9007199254740997);
	cJSON_Delete(encode(&msg, "r", UINT64_C(9007199254740993)));
	assert_non_null(strstr(buf, "\"seq\":9007199254740993,"));
	assert_non_null(strstr(buf, "\"timestamp\":9007199254740995,"));
	assert_non_null(strstr(buf, "\"boot\":9007199254740997,"));

	cJSON_Delete(encode(&msg, "r", UINT64_MAX));
	assert_non_null(strstr(buf, "\"seq\":18446744073709551615,"));
	cJSON_Delete(encode(&msg, "r", 0));
	assert_non_null(strstr(buf, "\"seq\":0,"));
	msg.timestamp_ms = 0;
	origin.boot_us = INT64_MAX;
	cJSON_Delete(encode(&msg, "r", 1));
	assert_non_null(strstr(buf, "\"timestamp\":0,"));
	assert_non_null(strstr(buf, "\"boot\":9223372036854775807,"));
}

/* ---- payloads ------------------------------------------------------------------------ */

static void test_payload_utf8_text(void **state)
{
	static const char *const texts[] = {
		"plain",
		"caf\xc3\xa9",      /* U+00E9 */
		"\xe2\x82\xac 5",   /* U+20AC */
		"\xf0\x9d\x84\x9e", /* U+1D11E */
		"\xef\xbf\xbf",     /* U+FFFF */
		"\xf4\x8f\xbf\xbf", /* U+10FFFF, the last code point */
		"\xc2\x80",         /* U+0080, the first 2-byte one */
		"\xe0\xa0\x80",     /* U+0800 */
		"\xf0\x90\x80\x80", /* U+10000 */
		"\xed\x9f\xbf",     /* U+D7FF, just below the surrogates */
		"\xee\x80\x80",     /* U+E000, just above */
		"\x7f",
		"quote \" backslash \\ slash / tab \t nl \n cr \r bs \b ff \f",
		"\x01\x02\x1f control",
		"{\"json\": [1, 2.5, null]}",
	};

	(void)state;
	for (size_t i = 0; i < N(texts); i++) {
		struct mqk_message msg = message("a", texts[i], strlen(texts[i]));
		cJSON *obj = encode(&msg, "r", 1);
		assert_text_payload(obj, texts[i], strlen(texts[i]));
		cJSON_Delete(obj);
	}
}

static void test_payload_not_text(void **state)
{
	static const struct {
		const char *bytes;
		size_t len;
	} cases[] = {
		{"\xff", 1},
		{"\xfe\xff", 2},
		{"a\0b", 3}, /* NUL */
		{"\0", 1},
		{"abc\0", 4},
		{"\xc0\xaf", 2},                 /* overlong '/' */
		{"\xc1\xbf", 2},                 /* overlong */
		{"\xe0\x80\xaf", 3},             /* overlong '/' */
		{"\xe0\x9f\xbf", 3},             /* overlong U+07FF */
		{"\xf0\x80\x80\xaf", 4},         /* overlong '/' */
		{"\xf0\x8f\xbf\xbf", 4},         /* overlong U+FFFF */
		{"\xed\xa0\x80", 3},             /* U+D800, a surrogate */
		{"\xed\xbf\xbf", 3},             /* U+DFFF */
		{"\xed\xa0\xbd\xed\xb8\x80", 6}, /* a CESU-8 surrogate pair */
		{"\xf4\x90\x80\x80", 4},         /* U+110000 */
		{"\xf7\xbf\xbf\xbf", 4},
		{"\xf8\x88\x80\x80\x80", 5}, /* 5-byte form */
		{"\xe2\x82", 2},             /* truncated */
		{"ab\xe2\x82", 4},
		{"\xc3", 1},
		{"\x80", 1}, /* lone continuation byte */
		{"a\xbf", 2},
		{"\xc3\x28", 2}, /* bad continuation */
		{"\xe2\x28\xa1", 3},
		{"\xf0\x9d\x84", 3},
	};

	(void)state;
	for (size_t i = 0; i < N(cases); i++) {
		struct mqk_message msg = message("a", cases[i].bytes, cases[i].len);
		cJSON *obj = encode(&msg, "r", 1);
		if (field(obj, MQK_ENV_PAYLOAD)) {
			fail_msg("case %zu: bytes taken for text: %s", i, buf);
		}
		assert_b64_payload(obj, cases[i].bytes, cases[i].len);
		cJSON_Delete(obj);
	}
}

static void test_payload_all_bytes(void **state)
{
	unsigned char bytes[256];

	(void)state;
	for (int i = 0; i < 256; i++) {
		bytes[i] = (unsigned char)i;
	}
	/* Every length mod 3, and the largest payloads grow the buffer. */
	for (size_t len = 1; len <= 256; len++) {
		struct mqk_message msg = message("a", bytes + 256 - len, len);
		cJSON *obj = encode(&msg, "r", 1);
		/* Every tail of 0..255 holds 0xff, and 0x80 follows any ASCII: never text. */
		assert_b64_payload(obj, bytes + 256 - len, len);
		cJSON_Delete(obj);
	}
}

static void test_payload_empty(void **state)
{
	struct mqk_message msg = message("a", NULL, 0);

	(void)state;
	cJSON *obj = encode(&msg, "r", 1);
	assert_text_payload(obj, "", 0);
	cJSON_Delete(obj);
	assert_non_null(strstr(buf, "\"payload\":\"\""));

	msg.payload = "ignored";
	obj = encode(&msg, "r", 1);
	assert_text_payload(obj, "", 0);
	cJSON_Delete(obj);
}

static void test_payload_large(void **state)
{
	/* 200,000 control characters: each becomes \u00XX, 6 bytes: the buffer grows. */
	size_t len = 200000;
	char *payload = malloc(len);

	(void)state;
	memset(payload, 0x01, len);
	struct mqk_message msg = message("a", payload, len);
	cJSON *obj = encode(&msg, "r", 1);
	assert_text_payload(obj, payload, len);
	assert_true(buf_len > 6 * 200000);
	cJSON_Delete(obj);

	/* The grown buffer is reused for a small one. */
	size_t grown = buf_size;
	msg = message("a", "x", 1);
	obj = encode(&msg, "r", 1);
	assert_text_payload(obj, "x", 1);
	assert_int_equal(buf_size, grown);
	cJSON_Delete(obj);

	/* 1 MB of binary: base64. */
	len = 1 << 20;
	payload = realloc(payload, len);
	for (size_t i = 0; i < len; i++) {
		payload[i] = (char)(0x80 | (i & 0x7f));
	}
	msg = message("a", payload, len);
	obj = encode(&msg, "r", 1);
	assert_b64_payload(obj, payload, len);
	cJSON_Delete(obj);
	free(payload);
}

/* ---- escaping ------------------------------------------------------------------------ */

static void test_escaping(void **state)
{
	static const char topic[] = "sensors/caf\xc3\xa9/\xe2\x98\x83/\"q\"/b\\s/ /\x7f";
	struct mqk_message msg = message(topic, "x", 1);

	(void)state;
	msg.client_id = "id \"with\" \\ and \t tab";
	msg.username = "\xc3\xbcser\n";
	origin.broker_id = "b\"r";
	cJSON *obj = encode(&msg, "r\\1", 1);
	assert_string_equal(string_field(obj, MQK_ENV_TOPIC), topic);
	assert_string_equal(string_field(obj, MQK_ENV_CLIENT_ID), "id \"with\" \\ and \t tab");
	assert_string_equal(string_field(obj, MQK_ENV_USERNAME), "\xc3\xbcser\n");
	assert_string_equal(string_field(obj, MQK_ENV_BROKER), "b\"r");
	assert_string_equal(string_field(obj, MQK_ENV_ROUTE), "r\\1");
	cJSON_Delete(obj);
	/* No raw control character in the text. */
	for (int i = 0; i < buf_len; i++) {
		assert_true((unsigned char)buf[i] >= 0x20);
	}
	assert_non_null(strstr(buf, "\\\"q\\\""));
	assert_non_null(strstr(buf, "b\\\\s"));
	assert_non_null(strstr(buf, "\\t tab"));
}

/* ---- MQTT v5 properties ------------------------------------------------------------- */

static void test_properties(void **state)
{
	struct mqk_message msg = message("a", "x", 1);
	mosquitto_property *props = NULL;
	static const unsigned char corr[] = {0x00, 0xff, 0x10, 'z'};
	unsigned char decoded[16];

	(void)state;
	assert_int_equal(
		mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, "site", "lab"),
		0);
	assert_int_equal(mosquitto_property_add_string(&props, MQTT_PROP_CONTENT_TYPE,
						       "text/plain; charset=\"utf-8\""),
			 0);
	assert_int_equal(mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, "unit",
							    "d\xc3\xa9"),
			 0);
	assert_int_equal(
		mosquitto_property_add_string(&props, MQTT_PROP_RESPONSE_TOPIC, "replies/ue-1"), 0);
	assert_int_equal(mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, corr,
						       sizeof(corr)),
			 0);
	assert_int_equal(mosquitto_property_add_byte(&props, MQTT_PROP_PAYLOAD_FORMAT_INDICATOR, 1),
			 0);
	assert_int_equal(
		mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, "site", "roof"),
		0);
	assert_int_equal(
		mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, "", ""), 0);
	set_props(&msg, props);

	cJSON *obj = encode(&msg, "r", 1);
	cJSON *pairs = field(obj, MQK_ENV_USER_PROPERTIES);
	assert_true(cJSON_IsArray(pairs));
	static const char *const want[][2] = {
		{"site", "lab"}, {"unit", "d\xc3\xa9"}, {"site", "roof"}, {"", ""}};
	assert_int_equal(cJSON_GetArraySize(pairs), (int)N(want));
	for (int i = 0; i < (int)N(want); i++) {
		cJSON *pair = cJSON_GetArrayItem(pairs, i);
		assert_true(cJSON_IsArray(pair));
		assert_int_equal(cJSON_GetArraySize(pair), 2);
		assert_true(cJSON_IsString(cJSON_GetArrayItem(pair, 0)));
		assert_true(cJSON_IsString(cJSON_GetArrayItem(pair, 1)));
		assert_string_equal(cJSON_GetArrayItem(pair, 0)->valuestring, want[i][0]);
		assert_string_equal(cJSON_GetArrayItem(pair, 1)->valuestring, want[i][1]);
	}
	assert_string_equal(string_field(obj, MQK_ENV_CONTENT_TYPE),
			    "text/plain; charset=\"utf-8\"");
	assert_string_equal(string_field(obj, MQK_ENV_RESPONSE_TOPIC), "replies/ue-1");
	const char *b64 = string_field(obj, MQK_ENV_CORRELATION_DATA_BASE64);
	assert_string_equal(b64, "AP8Qeg==");
	assert_int_equal(b64_decode(b64, decoded), sizeof(corr));
	assert_memory_equal(decoded, corr, sizeof(corr));
	/* The payload format indicator is a header only; the payload is still text. */
	assert_null(field(obj, "payload_format"));
	assert_text_payload(obj, "x", 1);
	assert_int_equal(cJSON_GetArraySize(obj), 11 + 4);
	cJSON_Delete(obj);
	mosquitto_property_free_all(&props);

	/* Empty correlation data: "". */
	assert_int_equal(mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, NULL, 0),
			 0);
	set_props(&msg, props);
	obj = encode(&msg, "r", 1);
	assert_string_equal(string_field(obj, MQK_ENV_CORRELATION_DATA_BASE64), "");
	assert_null(field(obj, MQK_ENV_USER_PROPERTIES));
	cJSON_Delete(obj);
	mosquitto_property_free_all(&props);
}

/* ---- base64 --------------------------------------------------------------------------- */

static void test_base64_rfc4648(void **state)
{
	static const char *const vectors[][2] = {
		{"", ""},
		{"f", "Zg=="},
		{"fo", "Zm8="},
		{"foo", "Zm9v"},
		{"foob", "Zm9vYg=="},
		{"fooba", "Zm9vYmE="},
		{"foobar", "Zm9vYmFy"},
	};
	char out[32];

	(void)state;
	for (size_t i = 0; i < N(vectors); i++) {
		memset(out, 'x', sizeof(out));
		size_t n = envelope__base64(vectors[i][0], strlen(vectors[i][0]), out);
		assert_int_equal(n, strlen(vectors[i][1]));
		assert_string_equal(out, vectors[i][1]);
		/* Exactly 4*((len+2)/3)+1 bytes written. */
		assert_int_equal(out[n + 1], 'x');
	}
}

static void test_base64_all_bytes(void **state)
{
	unsigned char in[256], back[260];
	char out[400];

	(void)state;
	for (int i = 0; i < 256; i++) {
		in[i] = (unsigned char)(255 - i);
	}
	for (size_t len = 0; len <= 256; len++) {
		size_t n = envelope__base64(in, len, out);
		assert_int_equal(n, 4 * ((len + 2) / 3));
		assert_int_equal(b64_decode(out, back), (long)len);
		assert_memory_equal(back, in, len);
	}
	assert_int_equal(envelope__base64("\xff\xff\xff", 3, out), 4);
	assert_string_equal(out, "////");
	assert_int_equal(envelope__base64("\xfb\xef\xbe", 3, out), 4);
	assert_string_equal(out, "++++");
	assert_int_equal(envelope__base64("\0\0\0", 3, out), 4);
	assert_string_equal(out, "AAAA");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_all_fields),        T(test_username_qos_retain), T(test_exact_integers),
		T(test_payload_utf8_text), T(test_payload_not_text),    T(test_payload_all_bytes),
		T(test_payload_empty),     T(test_payload_large),       T(test_escaping),
		T(test_properties),        T(test_base64_rfc4648),      T(test_base64_all_bytes),
#undef T
	};
	return cmocka_run_group_tests_name("envelope", tests, NULL, NULL);
}
