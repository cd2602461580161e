/*
 * fuzz_options.c - libFuzzer harness of options__parse (plugin/options.c): the input is
 * a list of plugin options, one "key value" a line (fuzz_common.h), parsed as mosquitto
 * hands them to the plugin's init.
 *
 * Besides memory errors, leaks and undefined behaviour (the sanitizers), it checks what
 * the rest of the plugin relies on: a refusal has a one-line message naming a
 * plugin_opt_; an accepted configuration has a broker id, routes with valid filters
 * and unique names, Kafka topic templates whose static names are legal, and valid
 * exclude filters.
 *
 *   build-fuzz/tests/fuzz/fuzz_options -max_total_time=600 tests/fuzz/corpus/options
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"
#include "mqk.h"

static void check_config(const struct mqk_config *cfg)
{
	CHECK(cfg->bootstrap_servers && cfg->bootstrap_servers[0]);
	CHECK(cfg->broker_id && cfg->broker_id[0]);
	CHECK(cfg->route_count >= 0 && (cfg->route_count == 0 || cfg->routes));
	for (int i = 0; i < cfg->route_count; i++) {
		const struct mqk_route *r = &cfg->routes[i];
		CHECK(r->name && r->filter);
		CHECK(route__filter_is_valid(r->filter));
		CHECK(r->format == MQK_FORMAT_RAW || r->format == MQK_FORMAT_JSON);
		CHECK(r->topic.source && r->topic.part_count > 0);
		if (r->topic.is_static) {
			CHECK(template__is_kafka_topic(r->topic.source, strlen(r->topic.source)));
		}
		for (int j = 0; j < i; j++) {
			CHECK(strcmp(cfg->routes[j].name, r->name) != 0);
		}
	}
	for (int i = 0; i < cfg->exclude_count; i++) {
		CHECK(cfg->excludes[i] && cfg->excludes[i][0]);
		CHECK(mosquitto_sub_topic_check(cfg->excludes[i]) == MOSQ_ERR_SUCCESS);
	}
	for (int i = 0; i < cfg->kafka_prop_count; i++) {
		CHECK(cfg->kafka_props[i].name && cfg->kafka_props[i].name[0]);
		CHECK(cfg->kafka_props[i].value);
	}
	CHECK(cfg->buffer_mb >= 1);
	CHECK(cfg->stats_interval >= 0 && cfg->flush_timeout_ms >= 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_opts o;
	struct mqk_config cfg;
	char errstr[1024];

	if (fuzz_opts_split(&o, data, size, 0)) {
		return 0;
	}
	memset(&cfg, 0, sizeof(cfg));
	memset(errstr, 0x55, sizeof(errstr));
	errstr[sizeof(errstr) - 1] = '\0';
	if (options__parse(&cfg, o.opts, o.count, errstr, sizeof(errstr)) == 0) {
		check_config(&cfg);
	} else {
		CHECK(memchr(errstr, '\0', sizeof(errstr)) != NULL);
		CHECK(!strncmp(errstr, "plugin_opt_", 11));
	}
	options__free(&cfg);
	fuzz_opts_free(&o);
	return 0;
}
