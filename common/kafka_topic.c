/*
 * kafka_topic.c - Kafka's topic-name rule (kafka_topic.h).
 */
#include "kafka_topic.h"

bool kafka_topic__is_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-';
}

bool kafka_topic__is_legal(const char *name, size_t len)
{
	if (len == 0 || len > KAFKA_TOPIC_MAX) {
		return false;
	}
	if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.')) {
		return false;
	}
	for (size_t i = 0; i < len; i++) {
		if (!kafka_topic__is_char(name[i])) {
			return false;
		}
	}
	return true;
}
