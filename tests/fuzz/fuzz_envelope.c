/*
 * fuzz_envelope.c - libFuzzer harness of envelope.c: envelope__encode of a message with
 * any topic, ids, payload (UTF-8 or not) and MQTT v5 properties.
 *
 * Input, in order:
 *   1 byte   flags: bits 0-1 QoS, 2 retain, 3 no username, 4 properties given in
 *            capture.c's compact form as they are (else built, see below), 5 payload
 *            NULL when empty
 *   8 bytes  seq, 8 bytes timestamp (little-endian; missing bytes are 0)
 *   topic NUL client id NUL username NUL route NUL
 *   2 bytes  properties length n (little-endian), then n bytes of properties
 *   the rest: the payload.
 * Built properties: a sequence of id (1 byte), name length (1), name, value length
 * (1), value; each becomes the broker's property (mosquitto_property_add_*, which
 * refuses what a client could not send, such as a string that is not UTF-8), and the
 * list goes through capture__props as on mosquitto's thread.
 *
 * Checks: the output is the length returned, parses back as a JSON object, and gives
 * the payload back byte for byte ("payload" when it is text, else "payload_base64").
 *
 *   build-fuzz/tests/fuzz/fuzz_envelope -max_total_time=600 tests/fuzz/corpus/envelope
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <mqtt_protocol.h>

#include "fuzz_common.h"
#include "mosquitto_kafka.h"
#include "mqk.h"

struct reader {
	const uint8_t *p, *end;
};

static uint64_t read_u64(struct reader *r)
{
	uint64_t v = 0;
	for (int i = 0; i < 8 && r->p < r->end; i++) {
		v |= (uint64_t)*r->p++ << (8 * i);
	}
	return v;
}

/* A NUL-terminated copy of the bytes up to the next NUL (or the end). */
static char *read_string(struct reader *r)
{
	const uint8_t *nul = memchr(r->p, 0, (size_t)(r->end - r->p));
	size_t len = nul ? (size_t)(nul - r->p) : (size_t)(r->end - r->p);
	char *s = strndup((const char *)r->p, len);
	CHECK(s != NULL);
	r->p += len + (nul ? 1 : 0);
	return s;
}

/* The next len-prefixed (1 byte) field of a built property, NUL-terminated. */
static char *read_field(struct reader *r, size_t *len)
{
	*len = r->p < r->end ? *r->p++ : 0;
	if (*len > (size_t)(r->end - r->p)) {
		*len = (size_t)(r->end - r->p);
	}
	char *s = malloc(*len + 1);
	CHECK(s != NULL);
	memcpy(s, r->p, *len);
	s[*len] = '\0';
	r->p += *len;
	return s;
}

static mosquitto_property *build_props(struct reader *r)
{
	static const int ids[] = {MQTT_PROP_PAYLOAD_FORMAT_INDICATOR,
				  MQTT_PROP_CONTENT_TYPE,
				  MQTT_PROP_RESPONSE_TOPIC,
				  MQTT_PROP_CORRELATION_DATA,
				  MQTT_PROP_USER_PROPERTY,
				  MQTT_PROP_MESSAGE_EXPIRY_INTERVAL};
	mosquitto_property *list = NULL;

	while (r->p < r->end) {
		int id = ids[*r->p++ % (sizeof(ids) / sizeof(ids[0]))];
		size_t name_len, value_len;
		char *name = read_field(r, &name_len);
		char *value = read_field(r, &value_len);

		switch (id) {
		case MQTT_PROP_PAYLOAD_FORMAT_INDICATOR:
			mosquitto_property_add_byte(&list, id, value_len ? (uint8_t)value[0] : 0);
			break;
		case MQTT_PROP_CONTENT_TYPE:
		case MQTT_PROP_RESPONSE_TOPIC:
			mosquitto_property_add_string(&list, id, value);
			break;
		case MQTT_PROP_CORRELATION_DATA:
			mosquitto_property_add_binary(&list, id, value, (uint16_t)value_len);
			break;
		case MQTT_PROP_USER_PROPERTY:
			mosquitto_property_add_string_pair(&list, id, name, value);
			break;
		default: /* one the plugin does not carry */
			mosquitto_property_add_int32(&list, id, (uint32_t)value_len);
			break;
		}
		free(name);
		free(value);
	}
	return list;
}

static size_t base64_decode(const char *in, uint8_t *out)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	uint32_t acc = 0;
	int bits = 0;
	size_t n = 0;

	for (; *in && *in != '='; in++) {
		const char *c = strchr(alphabet, *in);
		CHECK(c != NULL);
		acc = acc << 6 | (uint32_t)(c - alphabet);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (uint8_t)(acc >> bits);
		}
	}
	return n;
}

static void check_output(const char *json, int len, const struct mqk_message *msg)
{
	CHECK(len >= 0 && strlen(json) == (size_t)len);
	cJSON *obj = cJSON_ParseWithLength(json, (size_t)len);
	CHECK(obj != NULL && cJSON_IsObject(obj));
	const cJSON *text = cJSON_GetObjectItemCaseSensitive(obj, MQK_ENV_PAYLOAD);
	const cJSON *b64 = cJSON_GetObjectItemCaseSensitive(obj, MQK_ENV_PAYLOAD_BASE64);
	CHECK((text == NULL) != (b64 == NULL));
	if (text) {
		CHECK(cJSON_IsString(text));
		CHECK(strlen(text->valuestring) == msg->payloadlen);
		CHECK(memcmp(text->valuestring, msg->payload ? msg->payload : "",
			     msg->payloadlen) == 0);
	} else {
		CHECK(cJSON_IsString(b64));
		uint8_t *decoded = malloc(msg->payloadlen + 3);
		CHECK(decoded != NULL);
		CHECK(base64_decode(b64->valuestring, decoded) == msg->payloadlen);
		CHECK(msg->payloadlen == 0 || memcmp(decoded, msg->payload, msg->payloadlen) == 0);
		free(decoded);
	}
	CHECK(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(obj, MQK_ENV_QOS)));
	CHECK(cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(obj, MQK_ENV_RETAIN)));
	cJSON_Delete(obj);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char *buf;
	static size_t buf_size;
	struct reader r = {data, data + size};
	struct mqk_bytes props = {0};
	struct mqk_origin origin;
	mosquitto_property *list = NULL;
	uint8_t flags;

	if (size < 1) {
		return 0;
	}
	flags = *r.p++;
	uint64_t seq = read_u64(&r);
	uint64_t ts = read_u64(&r);
	char *topic = read_string(&r);
	char *client_id = read_string(&r);
	char *username = read_string(&r);
	char *route = read_string(&r);
	size_t props_len = 0;
	for (int i = 0; i < 2 && r.p < r.end; i++) {
		props_len |= (size_t)*r.p++ << (8 * i);
	}
	if (props_len > (size_t)(r.end - r.p)) {
		props_len = (size_t)(r.end - r.p);
	}
	struct reader pr = {r.p, r.p + props_len};
	r.p += props_len;

	struct mqk_message msg = {
		.topic = topic,
		.client_id = client_id,
		.username = (flags & 8) ? NULL : username,
		.payload = r.p,
		.payloadlen = (uint32_t)(r.end - r.p),
		.qos = flags & 3,
		.retain = (flags & 4) != 0,
		.timestamp_ms = (int64_t)ts,
	};
	if (msg.payloadlen == 0 && (flags & 32)) {
		msg.payload = NULL;
	}
	if (flags & 16) {
		msg.props = (const char *)pr.p;
		msg.props_len = (uint32_t)props_len;
	} else {
		list = build_props(&pr);
		CHECK(capture__props(list, &props) == 0);
		msg.props = props.data;
		msg.props_len = (uint32_t)props.len;
	}

	record__origin_init(&origin, "broker-a", INT64_C(1763912300000000));
	int len = envelope__encode(&msg, &origin, route, seq, &buf, &buf_size);
	check_output(buf, len, &msg);

	mosquitto_property_free_all(&list);
	free(props.data);
	free(topic);
	free(client_id);
	free(username);
	free(route);
	return 0;
}
