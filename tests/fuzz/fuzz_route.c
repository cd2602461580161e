/*
 * fuzz_route.c - libFuzzer harness of route.c: route__filter_is_valid, and route__match
 * against a configuration options__parse accepted, followed, for each route a topic
 * matched, by record__build (template expansion of its Kafka topic and key, headers,
 * the JSON envelope) as the Kafka thread does it.
 *
 * Input: option lines as for fuzz_options (bootstrap_servers is added when missing),
 * a line "--", then one MQTT topic a line. Every option value and every topic line is
 * also given to route__filter_is_valid. Only topics the broker would accept from a
 * client (valid UTF-8, no wildcards, at most 65535 bytes) reach route__match, as only
 * those reach the plugin's MESSAGE callback.
 *
 * Checks: the verdict agrees with mosquitto_topic_matches_sub on the excludes and the
 * route filters (matched indexes in configuration order, each one matching), and a
 * route's record builds or is refused only for the documented reasons.
 *
 *   build-fuzz/tests/fuzz/fuzz_route -max_total_time=600 tests/fuzz/corpus/route
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "mqk.h"

#define MAX_TOPICS 64

static bool matches(const char *filter, const char *topic)
{
	bool result = false;
	return mosquitto_topic_matches_sub(filter, topic, &result) == MOSQ_ERR_SUCCESS && result;
}

/* At most how long route's key can expand to for topic (its placeholders' longest). */
static size_t key_bound(const struct mqk_template *key, const char *topic, const char *broker_id)
{
	size_t longest = strlen(topic) > strlen(broker_id) ? strlen(topic) : strlen(broker_id);
	size_t bound = 0;

	if (longest < 16) {
		longest = 16; /* the client id and username below */
	}
	for (int i = 0; i < key->part_count; i++) {
		bound += key->parts[i].kind == MQK_TPL_LITERAL ? key->parts[i].len : longest;
	}
	return bound + 1;
}

static void build_records(struct mqk_config *cfg, const char *topic, const int *matched, int count)
{
	static struct mqk_scratch scratch;
	static bool scratch_ready;
	struct mqk_origin origin;
	struct mqk_message msg = {
		.topic = topic,
		.client_id = "ue-00001",
		.username = "lab",
		.payload = "{\"dbm\":-71}",
		.payloadlen = 11,
		.qos = 1,
		.timestamp_ms = INT64_C(1763912345678),
	};

	if (!scratch_ready) {
		CHECK(record__scratch_init(&scratch) == 0);
		scratch_ready = true;
	}
	record__origin_init(&origin, cfg->broker_id, INT64_C(1763912300000000));
	for (int i = 0; i < count; i++) {
		struct mqk_route *route = &cfg->routes[matched[i]];
		struct mqk_record rec;
		enum mqk_build_error err = record__build(&rec, route, &msg, 42, &origin, &scratch);

		if (err == MQK_BUILD_OK) {
			CHECK(rec.topic && template__is_kafka_topic(rec.topic, strlen(rec.topic)));
			CHECK(rec.value != NULL);
			CHECK(route->key.part_count > 0 || rec.key == NULL);
		} else if (err == MQK_BUILD_BAD_TOPIC) {
			/* A static topic is legal (options.c checked it): only an expanded
			 * one can be refused as a name. */
			CHECK(!route->topic.is_static);
		} else {
			/* Refused: only a key longer than the scratch buffer (3 topics'
			 * worth), never here for want of memory. */
			CHECK(err == MQK_BUILD_REFUSED);
			CHECK(key_bound(&route->key, topic, cfg->broker_id) >= scratch.key_size);
		}
		record__discard(&rec);
	}
}

static bool is_publish_topic(const char *topic)
{
	size_t len = strlen(topic);
	return len > 0 && len <= 65535 &&
	       mosquitto_validate_utf8(topic, (int)len) == MOSQ_ERR_SUCCESS &&
	       mosquitto_pub_topic_check(topic) == MOSQ_ERR_SUCCESS;
}

static void match_topic(struct mqk_config *cfg, const char *topic)
{
	/* One slot per route, as plugin.c gives it. */
	int *matched = malloc(sizeof(int) * (size_t)(cfg->route_count + 1));
	int max = cfg->route_count;
	int count = -1;
	/* Selectors see a QoS 1 message, not retained, from client "fuzz" without a username. */
	const struct mqk_message msg = {.topic = topic, .client_id = "fuzz", .qos = 1};
	CHECK(matched != NULL);
	enum mqk_verdict v = route__match(cfg, &msg, matched, max, &count);
	bool excluded = false;
	int expected = 0;

	for (int i = 0; i < cfg->exclude_count; i++) {
		excluded = excluded || matches(cfg->excludes[i], topic);
	}
	CHECK(count >= 0 && count <= max);
	if (route__is_reserved(topic)) {
		CHECK(v == MQK_RESERVED && count == 0);
		free(matched);
		return;
	}
	if (excluded) {
		CHECK(v == MQK_EXCLUDED && count == 0);
		free(matched);
		return;
	}
	for (int i = 0; i < max; i++) {
		const struct mqk_route *r = &cfg->routes[i];
		if (matches(r->filter, topic) && (!r->has_selectors || route__selects(r, &msg))) {
			CHECK(expected < count && matched[expected] == i);
			expected++;
		}
	}
	CHECK(count == expected);
	CHECK(v == (count > 0 ? MQK_FORWARD : MQK_NO_ROUTE));
	build_records(cfg, topic, matched, count);
	free(matched);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_opts o;
	struct mqk_config cfg;
	char errstr[1024];
	bool have_bootstrap = false;

	if (fuzz_opts_split(&o, data, size, 1)) {
		return 0;
	}
	for (int i = 0; i < o.count; i++) {
		route__filter_is_valid(o.opts[i].value);
		have_bootstrap = have_bootstrap || !strcmp(o.opts[i].key, "bootstrap_servers");
	}
	if (!have_bootstrap && o.count < FUZZ_MAX_OPTS) {
		o.opts[o.count++] = (struct mosquitto_opt){"bootstrap_servers", "127.0.0.1:9092"};
	}
	memset(&cfg, 0, sizeof(cfg));
	bool parsed = options__parse(&cfg, o.opts, o.count, errstr, sizeof(errstr)) == 0;

	char *line = o.rest;
	for (int n = 0; line && n < MAX_TOPICS; n++) {
		char *next = strchr(line, '\n');
		if (next) {
			*next++ = '\0';
		}
		bool valid = route__filter_is_valid(line);
		if (valid) {
			CHECK(line[0] != '\0' && !route__is_reserved(line));
		}
		if (parsed && is_publish_topic(line)) {
			match_topic(&cfg, line);
		}
		line = next;
	}
	options__free(&cfg);
	fuzz_opts_free(&o);
	return 0;
}
