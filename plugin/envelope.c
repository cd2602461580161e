/*
 * envelope.c - the JSON value of format=json routes.
 *
 *   {"topic":"sensors/ue-1/spectrum","client_id":"ue-1","username":null,"qos":1,
 *    "retain":false,"broker":"broker-a","route":"spectrum","timestamp":1763912345678,
 *    "seq":42,"boot":1763912300000000,"payload":"{\"dbm\":-71}",
 *    "user_properties":[["site","lab"]]}
 *
 * The field names are MQK_ENV_* of include/mosquitto_kafka.h. The payload is a string
 * when it is valid UTF-8 without NUL bytes, else "payload_base64". Integers are written
 * as exact decimal (cJSON keeps numbers as doubles, which would round 64-bit ones).
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "mosquitto_kafka.h"
#include "mqk.h"

size_t envelope__base64(const void *data, size_t len, char *out)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *in = data;
	size_t o = 0, i = 0;

	for (; i + 2 < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = alphabet[v >> 18];
		out[o++] = alphabet[(v >> 12) & 63];
		out[o++] = alphabet[(v >> 6) & 63];
		out[o++] = alphabet[v & 63];
	}
	if (i < len) {
		uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0);
		out[o++] = alphabet[v >> 18];
		out[o++] = alphabet[(v >> 12) & 63];
		out[o++] = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
		out[o++] = '=';
	}
	out[o] = '\0';
	return o;
}

/* RFC 3629 UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF; and no NUL,
 * which a C string (and so cJSON) cannot hold. */
static bool is_text(const unsigned char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char c = s[i];
		uint32_t cp;
		int extra;

		if (c == 0) {
			return false;
		} else if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xE0) == 0xC0) {
			cp = c & 0x1F;
			extra = 1;
		} else if ((c & 0xF0) == 0xE0) {
			cp = c & 0x0F;
			extra = 2;
		} else if ((c & 0xF8) == 0xF0) {
			cp = c & 0x07;
			extra = 3;
		} else {
			return false;
		}
		if (i + (size_t)extra >= len) {
			return false;
		}
		for (int k = 1; k <= extra; k++) {
			if ((s[i + k] & 0xC0) != 0x80) {
				return false;
			}
			cp = cp << 6 | (s[i + k] & 0x3F);
		}
		if ((extra == 1 && cp < 0x80) || (extra == 2 && cp < 0x800) ||
		    (extra == 3 && cp < 0x10000) || cp > 0x10FFFF ||
		    (cp >= 0xD800 && cp <= 0xDFFF)) {
			return false;
		}
		i += (size_t)extra + 1;
	}
	return true;
}

/*
 * Adds len bytes as a string: to obj under name, or to the array obj when name is NULL.
 * The bytes are valid UTF-8 (MQTT strings are); they need a NUL-terminated copy.
 */
static bool add_string(cJSON *obj, const char *name, const char *data, size_t len)
{
	char *copy = malloc(len + 1);
	cJSON *item;

	if (copy == NULL) {
		return false;
	}
	if (len) {
		memcpy(copy, data, len);
	}
	copy[len] = '\0';
	item = cJSON_CreateString(copy);
	free(copy);
	if (item == NULL) {
		return false;
	}
	/* Adding to an object copies name: when that fails, item is still ours. */
	if (!(name ? cJSON_AddItemToObject(obj, name, item) : cJSON_AddItemToArray(obj, item))) {
		cJSON_Delete(item);
		return false;
	}
	return true;
}

/*
 * Adds data as a string field text_name when it is text, else as a base64 field
 * b64_name. text_name NULL: always base64.
 */
static bool add_bytes(cJSON *obj, const char *text_name, const char *b64_name, const void *data,
		      size_t len)
{
	if (text_name && is_text(data, len)) {
		return add_string(obj, text_name, data, len);
	}
	char *b64 = malloc(4 * ((len + 2) / 3) + 1);
	if (b64 == NULL) {
		return false;
	}
	envelope__base64(data, len, b64);
	bool ok = cJSON_AddStringToObject(obj, b64_name, b64) != NULL;
	free(b64);
	return ok;
}

static bool add_u64(cJSON *obj, const char *name, uint64_t v)
{
	char num[24];
	record__u64_to_str(v, num);
	return cJSON_AddRawToObject(obj, name, num) != NULL;
}

/* Adds the MQTT v5 properties (capture.c's compact form). */
static bool add_properties(cJSON *obj, const struct mqk_message *msg)
{
	const char *cursor = msg->props, *end = msg->props ? msg->props + msg->props_len : NULL;
	const char *name, *value;
	uint32_t name_len, value_len;
	cJSON *pairs = NULL;
	int id;

	while (capture__next_prop(&cursor, end, &id, &name, &name_len, &value, &value_len)) {
		bool ok = true;

		switch (id) {
		case MQK_PROP_USER_PROPERTY: {
			if (pairs == NULL) {
				pairs = cJSON_AddArrayToObject(obj, MQK_ENV_USER_PROPERTIES);
			}
			cJSON *pair = pairs ? cJSON_CreateArray() : NULL;
			ok = pair && cJSON_AddItemToArray(pairs, pair) &&
			     add_string(pair, NULL, name, name_len) &&
			     add_string(pair, NULL, value, value_len);
			break;
		}
		case MQK_PROP_CONTENT_TYPE:
			ok = add_string(obj, MQK_ENV_CONTENT_TYPE, value, value_len);
			break;
		case MQK_PROP_RESPONSE_TOPIC:
			ok = add_string(obj, MQK_ENV_RESPONSE_TOPIC, value, value_len);
			break;
		case MQK_PROP_CORRELATION_DATA:
			ok = add_bytes(obj, NULL, MQK_ENV_CORRELATION_DATA_BASE64, value,
				       value_len);
			break;
		default:
			break;
		}
		if (!ok) {
			return false;
		}
	}
	return true;
}

int envelope__encode(const struct mqk_message *msg, const struct mqk_origin *origin,
		     const char *route, uint64_t seq, char **buf, size_t *buf_size)
{
	cJSON *obj = cJSON_CreateObject();
	bool ok;
	int len = -1;

	ok = obj && cJSON_AddStringToObject(obj, MQK_ENV_TOPIC, msg->topic) &&
	     cJSON_AddStringToObject(obj, MQK_ENV_CLIENT_ID,
				     msg->client_id ? msg->client_id : "") &&
	     (msg->username ? cJSON_AddStringToObject(obj, MQK_ENV_USERNAME, msg->username) != NULL
			    : cJSON_AddNullToObject(obj, MQK_ENV_USERNAME) != NULL) &&
	     cJSON_AddNumberToObject(obj, MQK_ENV_QOS, msg->qos) &&
	     cJSON_AddBoolToObject(obj, MQK_ENV_RETAIN, msg->retain) &&
	     cJSON_AddStringToObject(obj, MQK_ENV_BROKER, origin->broker_id) &&
	     cJSON_AddStringToObject(obj, MQK_ENV_ROUTE, route) &&
	     add_u64(obj, MQK_ENV_TIMESTAMP, (uint64_t)msg->timestamp_ms) &&
	     add_u64(obj, MQK_ENV_SEQ, seq) &&
	     add_u64(obj, MQK_ENV_BOOT, (uint64_t)origin->boot_us) &&
	     add_bytes(obj, MQK_ENV_PAYLOAD, MQK_ENV_PAYLOAD_BASE64,
		       msg->payload ? msg->payload : "", msg->payloadlen) &&
	     add_properties(obj, msg);
	if (!ok) {
		goto done;
	}
	/* The printed form is at most ~6x the escaped input: grow until it fits. */
	for (;;) {
		if (*buf_size >= 256 && cJSON_PrintPreallocated(obj, *buf, (int)*buf_size, false)) {
			len = (int)strlen(*buf);
			break;
		}
		size_t size = *buf_size < 4096 ? 4096 : *buf_size * 2;
		if (size > (size_t)1 << 30) {
			break;
		}
		char *grown = realloc(*buf, size);
		if (grown == NULL) {
			break;
		}
		*buf = grown;
		*buf_size = size;
	}
done:
	cJSON_Delete(obj);
	return len;
}
