/*
 * profile.c - plugin_opt_profile: the producer's librdkafka settings for low latency or
 * for throughput, as one choice instead of a set of kafka.* lines.
 *
 * The trade is linger.ms: how long librdkafka waits to fill a batch. bench/latency.py and
 * docs/linger.md have the numbers: with 5 ms, librdkafka sends fewer, larger requests and
 * costs less CPU per record, and every record waits up to 5 ms more; with less, a record
 * leaves at once and Kafka's round trip is most of what is left, for more produce
 * requests: more CPU in librdkafka and in Kafka, and a lower ceiling on a machine whose
 * cores are full.
 *
 * Order: the plugin's defaults (producer.c), then the profile's settings here, then
 * kafka_config_file and the plugin_opt_kafka.* lines (kafka_conf__apply): a property the
 * admin sets always wins over the profile.
 */
#include "mqk.h"

static const struct {
	int profile;
	const char *name;
	const char *value;
} settings[] = {
	{MQK_PROFILE_THROUGHPUT, "linger.ms", "5"},
	{MQK_PROFILE_LATENCY, "linger.ms", "0"},
};

int profile__apply(rd_kafka_conf_t *conf, int profile, char *errstr, size_t errstr_size)
{
	for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
		if (settings[i].profile == profile &&
		    kafka_conf__set(conf, "plugin_opt_profile", settings[i].name, settings[i].value,
				    errstr, errstr_size)) {
			return -1;
		}
	}
	return 0;
}
