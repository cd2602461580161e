/*
 * record.c - one captured message, one route -> one Kafka record: topic, key, headers,
 * value. Runs on the Kafka thread (producer.c), from a buffer entry.
 *
 * Templates are compiled at start-up, strings are expanded into scratch buffers reused
 * from record to record, constant header values are static strings, and the only
 * allocations are librdkafka's header list (which librdkafka takes over) and, for
 * format=json, cJSON's. The payload is not copied here: librdkafka copies it once.
 */
#include <stdlib.h>
#include <string.h>

#include "mosquitto_kafka.h"
#include "mqk.h"

#define KEY_BUFFER_SIZE (3 * 65536 + 1024)
#define NAME_BUFFER_SIZE (sizeof(MQK_HDR_USER_PREFIX) + 65536)
#define FIXED_HEADERS 12

static const char *const digits[] = {"0", "1", "2"};

/* A header whose name is a string literal: its length is known, librdkafka need not count. */
#define HEADER(hdrs, name, value, value_len)                                                       \
	rd_kafka_header_add((hdrs), (name), (ssize_t)sizeof(name) - 1, (value), (value_len))

int record__scratch_init(struct mqk_scratch *scratch)
{
	memset(scratch, 0, sizeof(*scratch));
	scratch->key = malloc(KEY_BUFFER_SIZE);
	scratch->name = malloc(NAME_BUFFER_SIZE);
	if (scratch->key == NULL || scratch->name == NULL) {
		record__scratch_free(scratch);
		return -1;
	}
	scratch->key_size = KEY_BUFFER_SIZE;
	scratch->name_size = NAME_BUFFER_SIZE;
	memcpy(scratch->name, MQK_HDR_USER_PREFIX, sizeof(MQK_HDR_USER_PREFIX) - 1);
	return 0;
}

void record__scratch_free(struct mqk_scratch *scratch)
{
	free(scratch->key);
	free(scratch->name);
	free(scratch->json);
	memset(scratch, 0, sizeof(*scratch));
}

/* MQTT v5 properties (capture.c's compact form) -> headers. */
static void add_property_headers(rd_kafka_headers_t *hdrs, const struct mqk_message *msg,
				 struct mqk_scratch *scratch)
{
	const size_t prefix = sizeof(MQK_HDR_USER_PREFIX) - 1;
	const char *cursor = msg->props, *end = msg->props ? msg->props + msg->props_len : NULL;
	const char *name, *value;
	uint32_t name_len, value_len;
	int id;

	while (capture__next_prop(&cursor, end, &id, &name, &name_len, &value, &value_len)) {
		switch (id) {
		case MQK_PROP_USER_PROPERTY:
			if (prefix + name_len < scratch->name_size) {
				if (name_len > 0) { /* an empty name is NULL: no memcpy from it */
					memcpy(scratch->name + prefix, name, name_len);
				}
				rd_kafka_header_add(hdrs, scratch->name,
						    (ssize_t)(prefix + name_len), value, value_len);
			}
			break;
		case MQK_PROP_CONTENT_TYPE:
			HEADER(hdrs, MQK_HDR_CONTENT_TYPE, value, value_len);
			break;
		case MQK_PROP_RESPONSE_TOPIC:
			HEADER(hdrs, MQK_HDR_RESPONSE_TOPIC, value, value_len);
			break;
		case MQK_PROP_CORRELATION_DATA:
			HEADER(hdrs, MQK_HDR_CORRELATION_DATA, value, value_len);
			break;
		case MQK_PROP_PAYLOAD_FORMAT:
			HEADER(hdrs, MQK_HDR_PAYLOAD_FORMAT, value_len && value[0] ? "1" : "0", 1);
			break;
		default:
			break;
		}
	}
}

static rd_kafka_headers_t *build_headers(const struct mqk_route *route,
					 const struct mqk_message *msg,
					 const struct mqk_origin *origin, uint64_t seq,
					 struct mqk_scratch *scratch)
{
	rd_kafka_headers_t *hdrs = rd_kafka_headers_new(FIXED_HEADERS);
	char seq_str[24];
	size_t seq_len = record__u64_to_str(seq, seq_str);

	/* librdkafka copies names and values: nothing here needs to outlive the call. */
	HEADER(hdrs, MQK_HDR_TOPIC, msg->topic, -1);
	HEADER(hdrs, MQK_HDR_CLIENT_ID, msg->client_id ? msg->client_id : "", -1);
	if (msg->username) {
		HEADER(hdrs, MQK_HDR_USERNAME, msg->username, -1);
	}
	HEADER(hdrs, MQK_HDR_QOS, digits[msg->qos > 2 ? 2 : msg->qos], 1);
	HEADER(hdrs, MQK_HDR_RETAIN, digits[msg->retain ? 1 : 0], 1);
	HEADER(hdrs, MQK_HDR_BROKER, origin->broker_id, (ssize_t)origin->broker_id_len);
	HEADER(hdrs, MQK_HDR_ROUTE, route->name, -1);
	HEADER(hdrs, MQK_HDR_SEQ, seq_str, (ssize_t)seq_len);
	HEADER(hdrs, MQK_HDR_BOOT, origin->boot_str, (ssize_t)origin->boot_len);
	if (msg->props_len) {
		add_property_headers(hdrs, msg, scratch);
	}
	return hdrs;
}

enum mqk_build_error record__build(struct mqk_record *rec, struct mqk_route *route,
				   const struct mqk_message *msg, uint64_t seq,
				   const struct mqk_origin *origin, struct mqk_scratch *scratch)
{
	const struct mqk_msg_ctx ctx = {
		.topic = msg->topic,
		.client_id = msg->client_id ? msg->client_id : "",
		.username = msg->username,
		.broker_id = origin->broker_id,
		.filter = route->filter,
	};
	int n;

	memset(rec, 0, sizeof(*rec));
	rec->route = route;
	rec->timestamp_ms = msg->timestamp_ms;

	if (route->rkt) {
		rec->rkt = route->rkt;
	} else {
		n = template__expand(&route->topic, &ctx, scratch->topic, sizeof(scratch->topic));
		/* MQTT levels become Kafka's dotted names: {1} of "a/b" gives "a.b". */
		for (char *c = scratch->topic; n > 0 && (c = strchr(c, '/')) != NULL; c++) {
			*c = '.';
		}
		if (n < 0 || !template__is_kafka_topic(scratch->topic, (size_t)n)) {
			return MQK_BUILD_BAD_TOPIC;
		}
		rec->topic = scratch->topic;
	}

	if (route->key.part_count > 0) {
		n = template__expand(&route->key, &ctx, scratch->key, scratch->key_size);
		if (n < 0) {
			return MQK_BUILD_REFUSED;
		}
		rec->key = scratch->key;
		rec->key_len = (size_t)n;
	}

	if (route->format == MQK_FORMAT_JSON) {
		n = envelope__encode(msg, origin, route->name, seq, &scratch->json,
				     &scratch->json_size);
		if (n < 0) {
			return MQK_BUILD_REFUSED;
		}
		rec->value = scratch->json;
		rec->value_len = (size_t)n;
	} else {
		/* Not NULL even when empty: a null value is a tombstone on compacted topics. */
		rec->value = msg->payloadlen ? msg->payload : "";
		rec->value_len = msg->payloadlen;
	}

	rec->headers = build_headers(route, msg, origin, seq, scratch);
	return MQK_BUILD_OK;
}

void record__discard(struct mqk_record *rec)
{
	if (rec->headers) {
		rd_kafka_headers_destroy(rec->headers);
		rec->headers = NULL;
	}
}
