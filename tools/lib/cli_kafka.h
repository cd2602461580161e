/*
 * cli_kafka.h - librdkafka properties from the command line: kcat's "-X name=value",
 * collected while parsing and applied in order after a tool's own settings (so that -X can
 * change any of them), with one error text for all the tools.
 */
#ifndef MQK_CLI_KAFKA_H
#define MQK_CLI_KAFKA_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

#define CLI_MAX_PROPS 64

/* The -X arguments, in order; the strings are argv's (not copied). */
struct cli_props {
	const char *items[CLI_MAX_PROPS];
	size_t n;
};

/*
 * Adds one -X argument. Returns 0, or CLI_EXIT_USAGE after printing why (not name=value,
 * too many).
 */
int cli_props_add(struct cli_props *props, const char *arg);

/*
 * Sets name=value on conf. Returns 0, or -1 with "<name>=<value>: <librdkafka's reason>"
 * in errstr.
 */
int cli_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errstr,
		 size_t errstr_size);

/*
 * Sets bootstrap.servers to bootstrap (-b), then every -X property in order: what a tool sets
 * after its own defaults, so that -X can change them. Returns 0, or -1 with "--bootstrap:
 * <reason>" or cli_props_apply's text in errstr.
 */
int cli_kafka_apply(rd_kafka_conf_t *conf, const char *bootstrap, const struct cli_props *props,
		    char *errstr, size_t errstr_size);

/*
 * Sets every -X property on conf, in order. Returns 0, or -1 with "-X <name=value>:
 * <librdkafka's reason>" in errstr.
 */
int cli_props_apply(rd_kafka_conf_t *conf, const struct cli_props *props, char *errstr,
		    size_t errstr_size);

#endif
