/*
 * fuzz_template.c - libFuzzer harness of template.c: template__compile, then
 * template__expand (and template__wildcard_level) for a message.
 *
 * Input: one flags byte (bit 0: compile as a Kafka topic, else as a key; bit 1: the
 * client has no username), then lines: template, MQTT filter, MQTT topic, client id,
 * username, broker id (missing ones are ""). As in the plugin, templates are compiled
 * only for a filter route__filter_is_valid accepts, and expanded only for a topic the
 * broker accepts that the filter matches (the contract of template__wildcard_level).
 *
 * Checks: a static Kafka topic template is a legal name; an expansion is the same in a
 * buffer of exactly its size, and -1 in a buffer one byte short; {N} levels lie inside
 * the topic.
 *
 *   build-fuzz/tests/fuzz/fuzz_template -max_total_time=600 tests/fuzz/corpus/template
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "mqk.h"

#define FIELDS 6

static void expand(const struct mqk_template *tpl, const struct mqk_msg_ctx *ctx)
{
	size_t big = strlen(ctx->topic) * 8 + strlen(ctx->client_id) * 8 +
		     (ctx->username ? strlen(ctx->username) * 8 : 0) + strlen(ctx->broker_id) * 8 +
		     strlen(tpl->source) + 64;
	char *buf = malloc(big);
	CHECK(buf != NULL);
	int n = template__expand(tpl, ctx, buf, big);

	if (n >= 0) {
		CHECK((size_t)n < big && buf[n] == '\0');
		/* Exactly the room it needs, and one byte less. */
		char *exact = malloc((size_t)n + 1);
		CHECK(exact != NULL);
		CHECK(template__expand(tpl, ctx, exact, (size_t)n + 1) == n);
		CHECK(memcmp(exact, buf, (size_t)n + 1) == 0);
		if (n > 0) {
			CHECK(template__expand(tpl, ctx, exact, (size_t)n) == -1);
		}
		free(exact);
		if (tpl->is_static) {
			CHECK(!strcmp(buf, tpl->source));
		}
	}
	CHECK(template__expand(tpl, ctx, buf, 0) == -1);
	free(buf);

	size_t topic_len = strlen(ctx->topic);
	for (int level = 0; level <= 4; level++) {
		const char *start = NULL;
		size_t len = 0;
		if (template__wildcard_level(ctx->filter, ctx->topic, level, &start, &len)) {
			CHECK(level >= 1);
			CHECK(start >= ctx->topic && start + len <= ctx->topic + topic_len);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *fields[FIELDS] = {"", "", "", "", "", ""};
	struct mqk_template tpl;
	char errstr[1024];
	uint8_t flags;
	char *text, *line;

	if (size < 1) {
		return 0;
	}
	flags = data[0];
	text = malloc(size);
	CHECK(text != NULL);
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';
	line = text;
	for (int i = 0; i < FIELDS && line; i++) {
		char *next = strchr(line, '\n');
		if (next) {
			*next++ = '\0';
		}
		fields[i] = line;
		line = next;
	}

	const char *source = fields[0], *filter = fields[1], *topic = fields[2];
	bool kafka_topic = flags & 1;
	if (!route__filter_is_valid(filter)) {
		free(text);
		return 0;
	}
	if (template__compile(&tpl, source, filter, kafka_topic, errstr, sizeof(errstr)) != 0) {
		CHECK(memchr(errstr, '\0', sizeof(errstr)) != NULL && errstr[0] != '\0');
		CHECK(tpl.source == NULL && tpl.parts == NULL);
		free(text);
		return 0;
	}
	if (kafka_topic && tpl.is_static) {
		CHECK(template__is_kafka_topic(tpl.source, strlen(tpl.source)));
	}

	bool result = false;
	size_t topic_len = strlen(topic);
	if (topic_len > 0 && topic_len <= 65535 &&
	    mosquitto_validate_utf8(topic, (int)topic_len) == MOSQ_ERR_SUCCESS &&
	    mosquitto_pub_topic_check(topic) == MOSQ_ERR_SUCCESS &&
	    mosquitto_topic_matches_sub(filter, topic, &result) == MOSQ_ERR_SUCCESS && result) {
		const struct mqk_msg_ctx ctx = {
			.topic = topic,
			.client_id = fields[3],
			.username = (flags & 2) ? NULL : fields[4],
			.broker_id = fields[5],
			.filter = filter,
		};
		expand(&tpl, &ctx);
	}
	template__free(&tpl);
	free(text);
	return 0;
}
