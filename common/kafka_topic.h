/*
 * kafka_topic.h - Kafka's topic-name rule, written once for the plugin and the tools.
 *
 * A Kafka topic name is 1..249 bytes of [A-Za-z0-9._-], and neither "." nor "..". The plugin
 * checks its route topics with it (plugin/template.c), the tools their --topic arguments
 * (tools/). Built into the static library mqk_common, which both link; nothing here
 * depends on mosquitto or librdkafka.
 */
#ifndef MQK_KAFKA_TOPIC_H
#define MQK_KAFKA_TOPIC_H

#include <stdbool.h>
#include <stddef.h>

/* The longest legal Kafka topic name, in bytes. */
#define KAFKA_TOPIC_MAX 249

/* The rule as people read it, for error messages. */
#define KAFKA_TOPIC_RULE "1..249 bytes of [A-Za-z0-9._-], not '.' or '..'"

/* Is c one of the characters of a Kafka topic name, [A-Za-z0-9._-]? */
bool kafka_topic__is_char(char c);

/* Are the len bytes at name a legal Kafka topic name? (A NUL among them is not.) */
bool kafka_topic__is_legal(const char *name, size_t len);

#endif
