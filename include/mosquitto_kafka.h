/*
 * mosquitto_kafka.h - what a Kafka consumer of mosquitto-kafka records relies on.
 *
 * Every record the plugin produces carries its MQTT metadata as Kafka headers (both
 * formats), and with format=json its value is an envelope object. The names of those
 * headers and fields are defined here once; the plugin, the tools in tools/, examples/ and
 * the tests use these macros, and nothing here depends on mosquitto or librdkafka.
 *
 * Header values are UTF-8 text without a terminating NUL, except the ones marked
 * binary. Numbers are decimal ASCII ("1", "18446744073709551615").
 */
#ifndef MOSQUITTO_KAFKA_H
#define MOSQUITTO_KAFKA_H

#define MQK_VERSION "0.1.0"

/* ---- Kafka record headers ------------------------------------------------ */

/* The MQTT topic the message was published to. Always present. */
#define MQK_HDR_TOPIC "mqtt.topic"
/* The publishing client's id. Always present. */
#define MQK_HDR_CLIENT_ID "mqtt.client_id"
/* The publishing client's username; absent when the client gave none. */
#define MQK_HDR_USERNAME "mqtt.username"
/* The QoS the message was published with: "0", "1" or "2". Always present. */
#define MQK_HDR_QOS "mqtt.qos"
/* The PUBLISH retain flag: "0" or "1". Always present. */
#define MQK_HDR_RETAIN "mqtt.retain"
/* The broker_id of the mosquitto that received the message. Always present. */
#define MQK_HDR_BROKER "mqtt.broker"
/* The route (plugin_opt_route_<name>) that produced this record. Always present. */
#define MQK_HDR_ROUTE "mqtt.route"
/*
 * A counter per (broker, route, plugin start), from 1 with no gaps: every message a
 * route matched takes the next number before it is produced, so a number missing
 * between two records of one (mqtt.broker, mqtt.route, mqtt.boot) proves a record
 * was lost, and a number seen twice proves a duplicate. Always present.
 */
#define MQK_HDR_SEQ "mqtt.seq"
/*
 * When the plugin started, in microseconds since the Unix epoch: identifies one run
 * of one broker, so that mqtt.seq restarting from 1 is not taken for duplicates.
 * Always present.
 */
#define MQK_HDR_BOOT "mqtt.boot"
/* MQTT v5 PUBLISH properties, present only when the client set them. */
#define MQK_HDR_CONTENT_TYPE "mqtt.content_type"
#define MQK_HDR_RESPONSE_TOPIC "mqtt.response_topic"
#define MQK_HDR_CORRELATION_DATA "mqtt.correlation_data" /* binary, as sent */
#define MQK_HDR_PAYLOAD_FORMAT "mqtt.payload_format"     /* "0" bytes, "1" UTF-8 */
/*
 * MQTT v5 user properties: each (name, value) pair becomes one header named
 * MQK_HDR_USER_PREFIX + name, in the order the client sent them, repeats kept. The
 * prefix keeps a client from forging the plugin's own mqtt.* headers.
 */
#define MQK_HDR_USER_PREFIX "mqtt.user."

/* ---- JSON envelope (format=json) ------------------------------------------- */

/* string: the MQTT topic */
#define MQK_ENV_TOPIC "topic"
/* string: the publishing client's id */
#define MQK_ENV_CLIENT_ID "client_id"
/* string, or null when the client gave no username */
#define MQK_ENV_USERNAME "username"
/* number: 0, 1 or 2 */
#define MQK_ENV_QOS "qos"
/* boolean */
#define MQK_ENV_RETAIN "retain"
/* string: broker_id */
#define MQK_ENV_BROKER "broker"
/* string: the route's name */
#define MQK_ENV_ROUTE "route"
/* number: broker receive time, milliseconds since the Unix epoch (= record timestamp) */
#define MQK_ENV_TIMESTAMP "timestamp"
/* number: the same value as the mqtt.seq header */
#define MQK_ENV_SEQ "seq"
/* number: the same value as the mqtt.boot header */
#define MQK_ENV_BOOT "boot"
/*
 * Exactly one of the two payload fields is present: "payload", a string, when the
 * payload is valid UTF-8 (an empty payload is ""), else "payload_base64", the bytes
 * in standard base64 (RFC 4648, with padding).
 */
#define MQK_ENV_PAYLOAD "payload"
#define MQK_ENV_PAYLOAD_BASE64 "payload_base64"
/* array of [name, value] string pairs in the order sent; absent when there are none */
#define MQK_ENV_USER_PROPERTIES "user_properties"
/* strings, present only when the client set them; correlation data in base64 */
#define MQK_ENV_CONTENT_TYPE "content_type"
#define MQK_ENV_RESPONSE_TOPIC "response_topic"
#define MQK_ENV_CORRELATION_DATA_BASE64 "correlation_data_base64"

/* ---- commands: Kafka -> one device (docs/commands.md) ------------------------ */

/*
 * A command record's key is its target client id (unless the plugin's
 * commands_target names a header). These headers become MQTT v5 properties of the
 * PUBLISH to the device: MQK_HDR_RESPONSE_TOPIC, MQK_HDR_CORRELATION_DATA,
 * MQK_HDR_CONTENT_TYPE, MQK_HDR_PAYLOAD_FORMAT and MQK_HDR_USER_PREFIX + name.
 * The pipeline adds its own:
 */
/* How many times a broker sent the command back to the router: "0", "1", ... */
#define MQK_HDR_HOPS "mqk.hops"
/* Who sent it back, or gave up on it (a dead letter): a broker_id, or "mqk-router". */
#define MQK_HDR_BY "mqk.broker"
/* Why a dead letter is one: "no target", "bad topic", "not connected", ... */
#define MQK_HDR_REASON "mqk.reason"

/*
 * Presence records (targeted mode), for a compacted topic. Key "<broker>/<client id>":
 * the client is connected to that broker (a JSON object, below) or left it (a null
 * value). Key "<broker>": the broker's plugin is "up" or "down".
 */
#define MQK_PRESENCE_BROKER "broker"       /* string */
#define MQK_PRESENCE_CLIENT_ID "client_id" /* string; client records only */
#define MQK_PRESENCE_STATE "state"         /* string: one of the four below */
#define MQK_PRESENCE_BOOT "boot"           /* number: the broker's mqtt.boot */
#define MQK_PRESENCE_TIMESTAMP "timestamp" /* number: ms since the Unix epoch */
#define MQK_PRESENCE_CONNECTED "connected"
#define MQK_PRESENCE_UP "up"
#define MQK_PRESENCE_DOWN "down"

/* ---- $SYS statistics --------------------------------------------------------- */

/* Totals are published under MQK_SYS_PREFIX "/<counter>", each route's under
 * MQK_SYS_PREFIX "/routes/<name>/<counter>", retained, every stats_interval seconds. */
#define MQK_SYS_PREFIX "$SYS/broker/kafka"

#endif
