/*
 * cli_kafka.c - librdkafka properties from the command line (cli_kafka.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_kafka.h"

int cli_props_add(struct cli_props *props, const char *arg)
{
	if (strchr(arg, '=') == NULL || arg[0] == '=') {
		return cli_fail("-X: '%s' is not name=value", arg);
	}
	if (props->n == CLI_MAX_PROPS) {
		return cli_fail("-X: at most %d properties", CLI_MAX_PROPS);
	}
	props->items[props->n++] = arg;
	return 0;
}

int cli_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errstr,
		 size_t errstr_size)
{
	char err[512];

	if (rd_kafka_conf_set(conf, name, value, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
		snprintf(errstr, errstr_size, "%s=%s: %s", name, value, err);
		return -1;
	}
	return 0;
}

int cli_kafka_apply(rd_kafka_conf_t *conf, const char *bootstrap, const struct cli_props *props,
		    char *errstr, size_t errstr_size)
{
	char err[512];

	if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err)) !=
	    RD_KAFKA_CONF_OK) {
		snprintf(errstr, errstr_size, "--bootstrap: %s", err);
		return -1;
	}
	return cli_props_apply(conf, props, errstr, errstr_size);
}

int cli_props_apply(rd_kafka_conf_t *conf, const struct cli_props *props, char *errstr,
		    size_t errstr_size)
{
	char err[512];

	for (size_t i = 0; i < props->n; i++) {
		const char *arg = props->items[i];
		const char *eq = strchr(arg, '=');
		char *name = eq ? strndup(arg, (size_t)(eq - arg)) : NULL;
		if (name == NULL) {
			snprintf(errstr, errstr_size, "-X %s: %s", arg,
				 eq ? "out of memory" : "expected name=value");
			return -1;
		}
		rd_kafka_conf_res_t res = rd_kafka_conf_set(conf, name, eq + 1, err, sizeof(err));
		free(name);
		if (res != RD_KAFKA_CONF_OK) {
			snprintf(errstr, errstr_size, "-X %s: %s", arg, err);
			return -1;
		}
	}
	return 0;
}
