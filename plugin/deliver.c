/*
 * deliver.c - on the TICK, commands from the hand-off queue to their devices.
 *
 * Mosquitto's thread. For each command the commands thread queued: is its client
 * connected here (clients.c)? Then the record's MQTT v5 properties are built from its
 * headers and mosquitto_broker_publish() queues it for that client id alone:
 * mosquitto writes it to the socket right after this TICK, and no subscriber, ACL or
 * MOSQ_EVT_MESSAGE sees it (docs/commands-facts.md). Not connected here: broadcast
 * mode skips it (another broker has it, or nobody), targeted mode sends it back to the
 * router, redistribute mode to the commands thread, which finds where it goes. The
 * topic and the properties are checked here because only mosquitto's thread may call
 * mosquitto's functions: a bad one dead-letters the command.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mqtt_protocol.h>

#include "mosquitto_kafka.h"
#include "mqk.h"

#define USER_PREFIX_LEN (sizeof(MQK_HDR_USER_PREFIX) - 1)

/* A header value as a NUL-terminated string in buf; false when it does not fit. */
static bool header_string(const void *value, size_t len, char *buf, size_t size)
{
	if (value == NULL || len >= size || memchr(value, '\0', len) != NULL) {
		return false;
	}
	memcpy(buf, value, len);
	buf[len] = '\0';
	return true;
}

/*
 * The PUBLISH properties the record's headers ask for (docs/commands.md), and the
 * Message Expiry Interval of commands_expiry. Returns 0, or -1 when a header value is not
 * a valid property (the list built so far is freed).
 */
static int build_properties(const rd_kafka_message_t *rkm, int expiry, mosquitto_property **props)
{
	rd_kafka_headers_t *hdrs = NULL;
	const char *name;
	const void *value;
	size_t len;
	/* Mosquitto's thread only: static keeps 128 KiB off its stack. */
	static char text[65536];
	static char pair_name[65536];
	int rc = MOSQ_ERR_SUCCESS;

	*props = NULL;
	if (expiry > 0) {
		rc = mosquitto_property_add_int32(props, MQTT_PROP_MESSAGE_EXPIRY_INTERVAL,
						  (uint32_t)expiry);
	}
	if (rd_kafka_message_headers(rkm, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		hdrs = NULL;
	}
	for (size_t i = 0; hdrs && rc == MOSQ_ERR_SUCCESS &&
			   !rd_kafka_header_get_all(hdrs, i, &name, &value, &len);
	     i++) {
		if (!strcmp(name, MQK_HDR_CORRELATION_DATA)) {
			if (len > UINT16_MAX) {
				rc = MOSQ_ERR_INVAL;
			} else {
				rc = mosquitto_property_add_binary(
					props, MQTT_PROP_CORRELATION_DATA, value, (uint16_t)len);
			}
		} else if (!strcmp(name, MQK_HDR_RESPONSE_TOPIC)) {
			rc = header_string(value, len, text, sizeof(text)) &&
					     mosquitto_pub_topic_check(text) == MOSQ_ERR_SUCCESS
				     ? mosquitto_property_add_string(props,
								     MQTT_PROP_RESPONSE_TOPIC, text)
				     : MOSQ_ERR_INVAL;
		} else if (!strcmp(name, MQK_HDR_CONTENT_TYPE)) {
			rc = header_string(value, len, text, sizeof(text))
				     ? mosquitto_property_add_string(props, MQTT_PROP_CONTENT_TYPE,
								     text)
				     : MOSQ_ERR_INVAL;
		} else if (!strcmp(name, MQK_HDR_PAYLOAD_FORMAT)) {
			if (len == 1 &&
			    (*(const char *)value == '0' || *(const char *)value == '1')) {
				rc = mosquitto_property_add_byte(
					props, MQTT_PROP_PAYLOAD_FORMAT_INDICATOR,
					(uint8_t)(*(const char *)value - '0'));
			} else {
				rc = MOSQ_ERR_INVAL;
			}
		} else if (!strncmp(name, MQK_HDR_USER_PREFIX, USER_PREFIX_LEN)) {
			snprintf(pair_name, sizeof(pair_name), "%s", name + USER_PREFIX_LEN);
			rc = header_string(value, len, text, sizeof(text))
				     ? mosquitto_property_add_string_pair(
					       props, MQTT_PROP_USER_PROPERTY, pair_name, text)
				     : MOSQ_ERR_INVAL;
		}
		/* Other headers (the pipeline's mqk.*, anything else) are not for the device. */
	}
	if (rc != MOSQ_ERR_SUCCESS) {
		mosquitto_property_free_all(props);
		return -1;
	}
	return 0;
}

int deliver__publish(const char *clientid, const char *topic, size_t len, const void *payload,
		     int qos, bool retain, mosquitto_property *properties)
{
	void *copy = NULL;
	int rc;

	if (len > INT32_MAX) {
		return MOSQ_ERR_INVAL;
	}
	if (len > 0) {
		copy = mosquitto_malloc(len);
		if (copy == NULL) {
			return MOSQ_ERR_NOMEM;
		}
		memcpy(copy, payload, len);
	}
	/* On success the broker owns copy (and properties). */
	rc = mosquitto_broker_publish(clientid, topic, (int)len, copy, qos, retain, properties);
	if (rc != MOSQ_ERR_SUCCESS) {
		mosquitto_free(copy);
	}
	return rc;
}

/* The command's client is connected here: publish it to that client id alone. */
static enum mqk_cmd_state publish(struct mqk_command *cmd, const struct mqk_cmd_config *cc,
				  struct mqk_cmd_counters *ctr)
{
	const rd_kafka_message_t *rkm = cmd->rkm;
	mosquitto_property *props;
	int rc;

	if (cmd->topic[0] == '\0' || cmd->topic[0] == '$' ||
	    mosquitto_pub_topic_check(cmd->topic) != MOSQ_ERR_SUCCESS) {
		cmd->reason = "bad topic";
		return MQK_CMD_DEAD;
	}
	if (build_properties(rkm, cc->expiry, &props)) {
		cmd->reason = "bad property";
		return MQK_CMD_DEAD;
	}
	/* The payload stays the record's: mosquitto gets a copy. It owns props on success. */
	rc = deliver__publish(cmd->client_id, cmd->topic, rkm->len, rkm->payload, cc->qos, false,
			      props);
	if (rc != MOSQ_ERR_SUCCESS) {
		mosquitto_property_free_all(&props);
		cmd->reason = "publish failed";
		return MQK_CMD_DEAD;
	}
	counter__inc(&ctr->delivered);
	return MQK_CMD_DONE;
}

size_t deliver__tick(struct mqk_handoff *h, const struct mqk_cmd_config *cc,
		     const struct mqk_clients *clients, struct mqk_cmd_counters *ctr, size_t max)
{
	size_t count;
	struct mqk_command *cmd;
	bool signal = false;

	atomic_fetch_add_explicit(&h->ticks, 1, memory_order_relaxed); /* check_ticks reads it */
	cmd = handoff__take(h, max, &count);

	for (size_t i = 0; i < count; i++) {
		/* Read before the state is set: from then on the commands thread may free it. */
		struct mqk_command *next = i + 1 < count ? cmd->next : NULL;
		enum mqk_cmd_state state;

		if (cmd->reason != NULL) {
			state = MQK_CMD_DEAD; /* dead on arrival (no target) */
		} else if (clients__is_connected(clients, cmd->client_id)) {
			state = publish(cmd, cc, ctr);
		} else if (cc->mode == MQK_CMD_TARGETED || cc->mode == MQK_CMD_REDISTRIBUTE) {
			state = MQK_CMD_RETURN;
		} else {
			counter__inc(&ctr->skipped);
			state = MQK_CMD_DONE;
		}
		atomic_store_explicit(&cmd->state, (int)state, memory_order_release);
		signal = true; /* even DONE: the commands thread stores the offset */
		cmd = next;
	}
	if (signal) {
		handoff__signal(h);
	}
	return count;
}
