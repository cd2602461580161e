/*
 * capture.c - what mosquitto's thread keeps of a message: one buffer entry per route.
 *
 * The MESSAGE event's data is the broker's and lives only during the callback, and
 * mosquitto's functions may only be called on mosquitto's thread. So the callback
 * copies what a record needs into the buffer (buffer.c) in one piece: a fixed header
 * (route, seq, QoS, retain, receive time), the topic, client id and username, the MQTT
 * v5 properties in a compact form read once per message, and the payload. That is a
 * few hundred bytes of memcpy and no allocation; building the Kafka record from it is
 * the Kafka thread's work (producer.c, record.c).
 *
 * The compact property form is a sequence of
 *     id (1 byte) | name length (4) | value length (4) | name | value
 * in the order the client sent them; properties without a name have length 0.
 */
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mqtt_protocol.h>

#include "mqk.h"

#define PROP_HEADER 9

/* A payload over this share of the ring is copied outside it. */
#define EXTERNAL_SHARE 8

static int append(struct mqk_bytes *out, const void *data, size_t len)
{
	if (out->len + len > out->size) {
		size_t size = out->size ? out->size : 256;
		while (size < out->len + len) {
			size *= 2;
		}
		char *grown = realloc(out->data, size);
		if (grown == NULL) {
			return -1;
		}
		out->data = grown;
		out->size = size;
	}
	if (len) {
		memcpy(out->data + out->len, data, len);
	}
	out->len += len;
	return 0;
}

static int append_prop(struct mqk_bytes *out, int id, const void *name, uint32_t name_len,
		       const void *value, uint32_t value_len)
{
	char head[PROP_HEADER];

	head[0] = (char)id;
	memcpy(head + 1, &name_len, 4);
	memcpy(head + 5, &value_len, 4);
	return append(out, head, sizeof(head)) || append(out, name, name_len) ||
	       append(out, value, value_len);
}

int capture__props(const void *mosquitto_props, struct mqk_bytes *out)
{
	int rc = 0;

	out->len = 0;
	for (const mosquitto_property *p = mosquitto_props; p && rc == 0;
	     p = mosquitto_property_next(p)) {
		int id = mosquitto_property_identifier(p);
		char *name = NULL, *value = NULL;
		void *data = NULL;
		uint16_t len = 0;
		uint8_t byte;

		/*
		 * The readers copy with plain calloc, in the broker (2.0.11 exports them) as in
		 * libmosquitto (2.0.21 does not): the copies are free()'d, as mosquitto.h says.
		 * mosquitto_free would count them off $SYS/broker/heap/current, where they were
		 * never counted.
		 */
		if (id == MQTT_PROP_USER_PROPERTY &&
		    mosquitto_property_read_string_pair(p, id, &name, &value, false)) {
			rc = append_prop(out, id, name, (uint32_t)strlen(name), value,
					 (uint32_t)strlen(value));
		} else if ((id == MQTT_PROP_CONTENT_TYPE || id == MQTT_PROP_RESPONSE_TOPIC) &&
			   mosquitto_property_read_string(p, id, &value, false)) {
			rc = append_prop(out, id, NULL, 0, value, (uint32_t)strlen(value));
		} else if (id == MQTT_PROP_CORRELATION_DATA &&
			   mosquitto_property_read_binary(p, id, &data, &len, false)) {
			rc = append_prop(out, id, NULL, 0, data, len);
		} else if (id == MQTT_PROP_PAYLOAD_FORMAT_INDICATOR &&
			   mosquitto_property_read_byte(p, id, &byte, false)) {
			rc = append_prop(out, id, NULL, 0, &byte, 1);
		}
		free(name);
		free(value);
		free(data);
	}
	return rc;
}

bool capture__next_prop(const char **cursor, const char *end, int *id, const char **name,
			uint32_t *name_len, const char **value, uint32_t *value_len)
{
	const char *p = *cursor;

	if (p == NULL || end - p < PROP_HEADER) {
		return false;
	}
	*id = (unsigned char)p[0];
	memcpy(name_len, p + 1, 4);
	memcpy(value_len, p + 5, 4);
	if ((uint64_t)(end - p - PROP_HEADER) < (uint64_t)*name_len + *value_len) {
		return false;
	}
	*name = *name_len ? p + PROP_HEADER : NULL;
	*value = p + PROP_HEADER + *name_len;
	*cursor = *value + *value_len;
	return true;
}

int capture__message(struct mqk_buffer *b, int route, uint64_t seq, const struct mqk_message *msg)
{
	uint32_t topic_len = (uint32_t)strlen(msg->topic);
	uint32_t client_id_len = (uint32_t)strlen(msg->client_id);
	uint32_t username_len = msg->username ? (uint32_t)strlen(msg->username) : 0;
	size_t fixed = sizeof(struct mqk_entry) + topic_len + client_id_len + username_len + 3 +
		       msg->props_len;
	/* In a journal the payload is in the entry, whatever its size: it is on disk. */
	bool external = b->journal == NULL && msg->payloadlen > b->capacity / EXTERNAL_SHARE;
	struct mqk_entry *e;
	char *p;

	if (b->journal != NULL ? fixed + msg->payloadlen > b->max_entry
			       : msg->payloadlen > b->capacity || fixed > b->max_entry) {
		return -3; /* could never fit, however empty the buffer */
	}
	/* Large payloads live outside the ring, but within its capacity all the same. */
	if (external && buffer__used(b) + msg->payloadlen > b->capacity) {
		return -1;
	}
	e = buffer__reserve(b, fixed + (external ? 0 : msg->payloadlen));
	if (e == NULL) {
		return -1;
	}
	e->route = e->live_route = (uint16_t)route;
	e->origin = NULL;
	e->alone = 0;
	e->qos = msg->qos;
	e->flags = (uint8_t)((msg->retain ? MQK_ENTRY_RETAIN : 0) |
			     (msg->username ? MQK_ENTRY_USERNAME : 0));
	e->seq = seq;
	e->timestamp_ms = msg->timestamp_ms;
	e->capture_sub_us = msg->timestamp_sub_us;
	e->topic_len = topic_len;
	e->client_id_len = client_id_len;
	e->username_len = username_len;
	e->props_len = msg->props_len;
	e->payload_len = msg->payloadlen;
	e->state = MQK_ENTRY_NEW;
	e->external = NULL;

	p = e->data;
	memcpy(p, msg->topic, topic_len + 1);
	p += topic_len + 1;
	memcpy(p, msg->client_id, client_id_len + 1);
	p += client_id_len + 1;
	if (msg->username) {
		memcpy(p, msg->username, username_len);
	}
	p[username_len] = '\0';
	p += username_len + 1;
	if (msg->props_len) {
		memcpy(p, msg->props, msg->props_len);
		p += msg->props_len;
	}
	if (external) {
		/* Owned by the entry until the Kafka thread has produced it. */
		e->external = malloc(msg->payloadlen);
		if (e->external == NULL) {
			return -2; /* reserved, not committed: the room is reused next time */
		}
		memcpy(e->external, msg->payload, msg->payloadlen);
		atomic_fetch_add(&b->external_bytes, msg->payloadlen);
	} else if (msg->payloadlen) {
		memcpy(p, msg->payload, msg->payloadlen);
	}
	buffer__commit(b, e);
	return 0;
}

void capture__read(const struct mqk_entry *e, struct mqk_message *msg)
{
	const char *p = e->data;

	msg->topic = p;
	p += e->topic_len + 1;
	msg->client_id = p;
	p += e->client_id_len + 1;
	msg->username = (e->flags & MQK_ENTRY_USERNAME) ? p : NULL;
	p += e->username_len + 1;
	msg->props = e->props_len ? p : NULL;
	msg->props_len = e->props_len;
	p += e->props_len;
	msg->payload = e->external ? e->external : p;
	msg->payloadlen = e->payload_len;
	msg->qos = e->qos;
	msg->retain = (e->flags & MQK_ENTRY_RETAIN) != 0;
	msg->timestamp_ms = e->timestamp_ms;
	msg->timestamp_sub_us = (uint16_t)e->capture_sub_us;
}

void capture__discard(struct mqk_buffer *b, struct mqk_entry *e)
{
	if (e->external) {
		atomic_fetch_sub(&b->external_bytes, e->payload_len);
		free(e->external);
		e->external = NULL;
	}
}
