/*
 * options.c - plugin_opt_* lines -> struct mqk_config.
 *
 * Everything the admin can get wrong is found here, at start-up, and reported in one
 * line that names the option, the value and what is allowed; the caller logs it and
 * init fails, which stops mosquitto. Unknown options are errors: a typo must not pass
 * silently. librdkafka properties (kafka.*) are only collected here; producer.c hands
 * them to rd_kafka_conf_set, which validates them.
 */
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#include "mqk.h"

#define NAME_MAX_LEN 64
#define DEFAULT_STATS_INTERVAL 10
#define DEFAULT_FLUSH_TIMEOUT_MS 10000
#define DEFAULT_BUFFER_MB 64
#define DEFAULT_JOURNAL_DIR "/var/lib/mosquitto/mosquitto-kafka/" /* + broker_id */
#define DEFAULT_JOURNAL_FSYNC_MS 1000
#define DEFAULT_JOURNAL_MAX_MB 1024
#define DEFAULT_JOURNAL_SEGMENT_MB 64
#define DEFAULT_TOPIC_PARTITIONS 6
#define DEFAULT_TOPIC_REPLICATION_FACTOR -1 /* the brokers' default.replication.factor */

#define FAIL(...)                                                                                  \
	do {                                                                                       \
		snprintf(errstr, errstr_size, "plugin_opt_" __VA_ARGS__);                          \
		return -1;                                                                         \
	} while (0)

/* Trims white space at both ends into a new string (owned by the caller). */
static char *trimmed(const char *value)
{
	const char *end;

	if (value == NULL) {
		return strdup("");
	}
	while (isspace((unsigned char)*value)) {
		value++;
	}
	end = value + strlen(value);
	while (end > value && isspace((unsigned char)end[-1])) {
		end--;
	}
	return strndup(value, (size_t)(end - value));
}

static bool is_name(const char *s, const char *extra)
{
	size_t len = strlen(s);

	if (len == 0 || len > NAME_MAX_LEN) {
		return false;
	}
	for (; *s; s++) {
		if (!isalnum((unsigned char)*s) && !strchr(extra, *s)) {
			return false;
		}
	}
	return true;
}

static int parse_int(const char *key, const char *value, int min, int max, const char *what,
		     int *out, char *errstr, size_t errstr_size)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(value, &end, 10);
	if (errno || end == value || *end != '\0' || v < min || v > max) {
		FAIL("%s: '%s' is not %s (%d..%d)", key, value, what, min, max);
	}
	*out = (int)v;
	return 0;
}

/* Finds the "->" of a route: the first one with white space on both sides. */
static char *find_arrow(char *value)
{
	for (char *p = strstr(value, "->"); p; p = strstr(p + 1, "->")) {
		if ((p == value || isspace((unsigned char)p[-1])) && isspace((unsigned char)p[2])) {
			return p;
		}
	}
	return NULL;
}

static const char *const key_shorthands[][2] = {
	{"clientid", "{clientid}"},
	{"username", "{username}"},
	{"topic", "{topic}"},
	{"broker", "{broker}"},
};

static int parse_key(struct mqk_route *route, const char *key, const char *value, char *errstr,
		     size_t errstr_size)
{
	char why[1024];

	template__free(&route->key);
	if (!strcmp(value, "none")) {
		return 0;
	}
	for (size_t i = 0; i < sizeof(key_shorthands) / sizeof(key_shorthands[0]); i++) {
		if (!strcmp(value, key_shorthands[i][0])) {
			value = key_shorthands[i][1];
			break;
		}
	}
	if (!strchr(value, '{')) {
		FAIL("%s: unknown key '%s' (use clientid, username, topic, broker, none or a "
		     "template such as {1})",
		     key, value);
	}
	if (template__compile(&route->key, value, route->filter, false, why, sizeof(why))) {
		FAIL("%s: key: %s", key, why);
	}
	return 0;
}

/* A glob of clientid= or username=: '*', '?' and printable characters. */
static bool is_glob(const char *s)
{
	for (; *s; s++) {
		if ((unsigned char)*s < 0x20 || *s == 0x7f) {
			return false;
		}
	}
	return true;
}

/* A selector after the topic: clientid=<glob>, username=<glob>, qos=<0|1|2>, retain=<bool>. */
static int parse_selector(struct mqk_route *route, const char *key, const char *tok, char *errstr,
			  size_t errstr_size)
{
	const char *eq = strchr(tok, '=');
	const char *v = eq ? eq + 1 : "";
	size_t n = eq ? (size_t)(eq - tok) : 0;

	if (n == 8 && !strncmp(tok, "clientid", n)) {
		if (route->sel_clientid) {
			FAIL("%s: 'clientid=' given twice", key);
		}
		if (*v == '\0' || !is_glob(v) ||
		    mosquitto_validate_utf8(v, (int)strlen(v)) != MOSQ_ERR_SUCCESS) {
			FAIL("%s: clientid='%s' is not a client id pattern (1 or more characters, "
			     "'*' any run, '?' any one)",
			     key, v);
		}
		route->sel_clientid = strdup(v);
		if (route->sel_clientid == NULL) {
			FAIL("%s: out of memory", key);
		}
	} else if (n == 8 && !strncmp(tok, "username", n)) {
		if (route->sel_username) {
			FAIL("%s: 'username=' given twice", key);
		}
		if (!is_glob(v) || mosquitto_validate_utf8(v, (int)strlen(v)) != MOSQ_ERR_SUCCESS) {
			FAIL("%s: username='%s' is not a username pattern ('*' any run, '?' any "
			     "one; empty: clients without a username)",
			     key, v);
		}
		route->sel_username = strdup(v);
		if (route->sel_username == NULL) {
			FAIL("%s: out of memory", key);
		}
	} else if (n == 3 && !strncmp(tok, "qos", n)) {
		if (route->sel_qos) {
			FAIL("%s: 'qos=' given twice", key);
		}
		if (v[0] < '0' || v[0] > '2' || v[1] != '\0') {
			FAIL("%s: qos='%s' is not 0, 1 or 2", key, v);
		}
		route->sel_qos = (uint8_t)(v[0] - '0' + 1);
	} else if (n == 6 && !strncmp(tok, "retain", n)) {
		if (route->sel_retain) {
			FAIL("%s: 'retain=' given twice", key);
		}
		if (!strcmp(v, "true")) {
			route->sel_retain = 2;
		} else if (!strcmp(v, "false")) {
			route->sel_retain = 1;
		} else {
			FAIL("%s: retain='%s' is not true or false", key, v);
		}
	} else {
		FAIL("%s: unknown route attribute '%s' (use key=<key>, format=raw|json, and the "
		     "selectors clientid=<glob>, username=<glob>, qos=0|1|2, retain=true|false)",
		     key, tok);
	}
	route->has_selectors = true;
	return 0;
}

/* "<filter> -> <topic> [key=...] [format=...] [selectors]" */
static int parse_route(struct mqk_config *cfg, const char *key, char *value, char *errstr,
		       size_t errstr_size)
{
	const char *name = key + strlen("route_");
	struct mqk_route *route;
	char why[1024];
	char *arrow, *tok, *save = NULL;
	char *end;

	if (!is_name(name, "_-")) {
		FAIL("%s: a route needs a name of 1..64 characters [A-Za-z0-9_-] after route_, "
		     "e.g. plugin_opt_route_sensors",
		     key);
	}
	for (int i = 0; i < cfg->route_count; i++) {
		if (!strcmp(cfg->routes[i].name, name)) {
			FAIL("%s: route '%s' is defined twice", key, name);
		}
	}
	if (cfg->route_count >= MQK_MAX_ROUTES) {
		FAIL("%s: more than %d routes", key, MQK_MAX_ROUTES);
	}
	arrow = find_arrow(value);
	if (arrow == NULL) {
		FAIL("%s: '%s' is not '<mqtt-filter> -> <kafka-topic> [key=<key>] "
		     "[format=raw|json] [clientid=<glob>] [username=<glob>] [qos=0|1|2] "
		     "[retain=true|false]'",
		     key, value);
	}
	route = realloc(cfg->routes, sizeof(*route) * (size_t)(cfg->route_count + 1));
	if (route == NULL) {
		FAIL("%s: out of memory", key);
	}
	cfg->routes = route;
	route = &cfg->routes[cfg->route_count++];
	memset(route, 0, sizeof(*route));
	route->name = strdup(name);

	end = arrow;
	while (end > value && isspace((unsigned char)end[-1])) {
		end--;
	}
	route->filter = strndup(value, (size_t)(end - value));
	if (route->name == NULL || route->filter == NULL) {
		FAIL("%s: out of memory", key);
	}
	if (route__is_reserved(route->filter)) {
		FAIL("%s: '%s': $SYS and $CONTROL topics are never forwarded", key, route->filter);
	}
	if (!route__filter_is_valid(route->filter)) {
		FAIL("%s: '%s' is not a valid MQTT topic filter", key, route->filter);
	}
	route__classify(route);

	tok = strtok_r(arrow + 2, " \t", &save);
	if (tok == NULL) {
		FAIL("%s: no Kafka topic after '->'", key);
	}
	if (template__compile(&route->topic, tok, route->filter, true, why, sizeof(why))) {
		FAIL("%s: %s", key, why);
	}
	if (parse_key(route, key, "clientid", errstr, errstr_size)) {
		return -1;
	}
	bool have_key = false, have_format = false;
	while ((tok = strtok_r(NULL, " \t", &save)) != NULL) {
		if (!strncmp(tok, "key=", 4) && !have_key) {
			have_key = true;
			if (parse_key(route, key, tok + 4, errstr, errstr_size)) {
				return -1;
			}
		} else if (!strncmp(tok, "format=", 7) && !have_format) {
			have_format = true;
			if (!strcmp(tok + 7, "raw")) {
				route->format = MQK_FORMAT_RAW;
			} else if (!strcmp(tok + 7, "json")) {
				route->format = MQK_FORMAT_JSON;
			} else {
				FAIL("%s: unknown format '%s' (use raw or json)", key, tok + 7);
			}
		} else if (!strncmp(tok, "key=", 4) || !strncmp(tok, "format=", 7)) {
			FAIL("%s: '%s' given twice", key, tok);
		} else if (parse_selector(route, key, tok, errstr, errstr_size)) {
			return -1;
		}
	}
	return 0;
}

static int parse_exclude(struct mqk_config *cfg, const char *key, const char *value, char *errstr,
			 size_t errstr_size)
{
	char **excludes;

	if (mosquitto_sub_topic_check(value) != MOSQ_ERR_SUCCESS ||
	    mosquitto_validate_utf8(value, (int)strlen(value)) != MOSQ_ERR_SUCCESS) {
		FAIL("%s: '%s' is not a valid MQTT topic filter", key, value);
	}
	excludes = realloc(cfg->excludes, sizeof(*excludes) * (size_t)(cfg->exclude_count + 1));
	if (excludes == NULL || (excludes[cfg->exclude_count] = strdup(value)) == NULL) {
		if (excludes) {
			cfg->excludes = excludes;
		}
		FAIL("%s: out of memory", key);
	}
	cfg->excludes = excludes;
	cfg->exclude_count++;
	return 0;
}

/* kafka.<prop> (all the plugin's Kafka clients) or commands_kafka.<prop> (its consumer). */
static int parse_kafka(struct mqk_kafka_prop **list, int *count, const char *key, const char *value,
		       char *errstr, size_t errstr_size)
{
	const char *prop = strchr(key, '.') + 1;
	const char *instead = kafka_conf__reserved(prop);
	struct mqk_kafka_prop *props;

	if (*prop == '\0') {
		FAIL("%s: a librdkafka property name must follow '%s', e.g. "
		     "plugin_opt_kafka.compression.type",
		     key, key);
	}
	if (instead != NULL) {
		FAIL("%s: '%s' is set by the plugin and cannot be changed%s", key, prop, instead);
	}
	for (int i = 0; i < *count; i++) {
		if (!strcmp((*list)[i].name, prop)) {
			if (kafka_conf__is_secret(prop)) {
				FAIL("%s: given twice (values not shown: secrets)", key);
			}
			FAIL("%s: given twice ('%s' and '%s')", key, (*list)[i].value, value);
		}
	}
	props = realloc(*list, sizeof(*props) * (size_t)(*count + 1));
	if (props == NULL) {
		FAIL("%s: out of memory", key);
	}
	*list = props;
	props[*count] = (struct mqk_kafka_prop){strdup(prop), strdup(value), 0};
	(*count)++;
	if (!props[*count - 1].name || !props[*count - 1].value) {
		FAIL("%s: out of memory", key);
	}
	return 0;
}

/* A single-valued string option: set once. */
static int set_once(char **field, const char *key, const char *value, char *errstr,
		    size_t errstr_size)
{
	if (*field != NULL) {
		FAIL("%s: given twice ('%s' and '%s')", key, *field, value);
	}
	*field = strdup(value);
	if (*field == NULL) {
		FAIL("%s: out of memory", key);
	}
	return 0;
}

/* The numeric options: each may be given once. range: what the message says is allowed. */
static const struct {
	const char *name;
	size_t offset;
	int min, max;
	const char *what;
	const char *range; /* NULL: "min..max" */
	bool not_zero;
} numbers[] = {
	{"stats_interval", offsetof(struct mqk_config, stats_interval), 0, 86400,
	 "a number of seconds", NULL, false},
	{"flush_timeout_ms", offsetof(struct mqk_config, flush_timeout_ms), 0, 600000,
	 "a number of milliseconds", NULL, false},
	{"buffer_mb", offsetof(struct mqk_config, buffer_mb), 1, 4096, "a number of MiB", NULL,
	 false},
	{"journal_max_mb", offsetof(struct mqk_config, journal_max_mb), 2, 1048576,
	 "a number of MiB", NULL, false},
	{"journal_segment_mb", offsetof(struct mqk_config, journal_segment_mb), 1, 1024,
	 "a number of MiB", NULL, false},
	{"topic_partitions", offsetof(struct mqk_config, topic_partitions), 1, 10000,
	 "a number of partitions", NULL, false},
	{"topic_replication_factor", offsetof(struct mqk_config, topic_replication_factor), -1,
	 32767, "a replication factor", "-1 for the brokers' default, or 1..32767", true},
};
#define N_NUMBERS (sizeof(numbers) / sizeof(numbers[0]))
/* The numbers that only mean something with create_topics true. */
#define FIRST_TOPIC_NUMBER 5
/* buffer_mb: memory only; the journal's two: journal only. */
#define BUFFER_NUMBER 2
#define FIRST_JOURNAL_NUMBER 3

static int parse_number(struct mqk_config *cfg, size_t i, const char *key, const char *value,
			char *errstr, size_t errstr_size)
{
	int *field = (int *)((char *)cfg + numbers[i].offset);

	if (numbers[i].range == NULL) {
		return parse_int(key, value, numbers[i].min, numbers[i].max, numbers[i].what, field,
				 errstr, errstr_size);
	}
	if (parse_int(key, value, numbers[i].min, numbers[i].max, numbers[i].what, field, errstr,
		      errstr_size) ||
	    (numbers[i].not_zero && *field == 0)) {
		FAIL("%s: '%s' is not %s (%s)", key, value, numbers[i].what, numbers[i].range);
	}
	return 0;
}

static int parse_bool(const char *key, const char *value, bool *out, char *errstr,
		      size_t errstr_size)
{
	if (!strcmp(value, "true")) {
		*out = true;
	} else if (!strcmp(value, "false")) {
		*out = false;
	} else {
		FAIL("%s: '%s' is not true or false", key, value);
	}
	return 0;
}

/* ---- commands_* and presence_topic (docs/commands.md) ---- */

#define DEFAULT_COMMANDS_GROUP "mosquitto-kafka-commands-{broker}"
#define DEFAULT_COMMANDS_MQTT_TOPIC "devices/{clientid}/commands"
#define DEFAULT_COMMANDS_QOS 1
#define DEFAULT_RETURN_TOPIC "mqtt-commands"
#define DEFAULT_DEAD_LETTER_TOPIC "mqtt-commands.dead"
#define DEFAULT_PRESENCE_TOPIC "mqtt-presence"
#define DEFAULT_MAX_HOPS 5
#define UNSET -2 /* a number option not given */

/* s with every "{broker}" replaced by broker, malloc'd; NULL when out of memory. */
static char *expand_broker(const char *s, const char *broker)
{
	size_t n = 1;
	char *out, *o;

	for (const char *p = s; *p;) {
		if (!strncmp(p, "{broker}", 8)) {
			n += strlen(broker);
			p += 8;
		} else {
			n++;
			p++;
		}
	}
	out = o = malloc(n);
	if (out == NULL) {
		return NULL;
	}
	for (const char *p = s; *p;) {
		if (!strncmp(p, "{broker}", 8)) {
			o = stpcpy(o, broker);
			p += 8;
		} else {
			*o++ = *p++;
		}
	}
	*o = '\0';
	return out;
}

static int parse_commands(struct mqk_config *cfg, const char *key, const char *value, char *errstr,
			  size_t errstr_size)
{
	struct mqk_cmd_config *cc = &cfg->commands;

	if (!strncmp(key, "commands_kafka.", 15)) {
		return parse_kafka(&cc->kafka_props, &cc->kafka_prop_count, key, value, errstr,
				   errstr_size);
	}
	if (!strcmp(key, "commands_topic")) {
		return set_once(&cc->topic, key, value, errstr, errstr_size);
	}
	if (!strcmp(key, "commands_mode")) {
		if (cc->mode != MQK_CMD_OFF) {
			FAIL("%s: given twice", key);
		}
		if (!strcmp(value, "broadcast")) {
			cc->mode = MQK_CMD_BROADCAST;
		} else if (!strcmp(value, "targeted")) {
			cc->mode = MQK_CMD_TARGETED;
		} else {
			FAIL("%s: '%s' is not broadcast or targeted", key, value);
		}
		return 0;
	}
	if (!strcmp(key, "commands_group")) {
		return set_once(&cc->group, key, value, errstr, errstr_size);
	}
	if (!strcmp(key, "commands_target")) {
		if (strcmp(value, "key") && (strncmp(value, "header:", 7) || value[7] == '\0')) {
			FAIL("%s: '%s' is not key or header:<name>", key, value);
		}
		return set_once(&cc->target, key, value, errstr, errstr_size);
	}
	if (!strcmp(key, "commands_mqtt_topic")) {
		if (cc->mqtt_topic.source != NULL) {
			FAIL("%s: given twice", key);
		}
		if (strchr(value, '+') || strchr(value, '#') || value[0] == '$') {
			FAIL("%s: '%s' is not a topic to publish to (no +, # or leading $)", key,
			     value);
		}
		if (template__compile(&cc->mqtt_topic, value, "", false, errstr, errstr_size)) {
			char why[512];
			snprintf(why, sizeof(why), "%s", errstr);
			FAIL("%s: %s", key, why);
		}
		return 0;
	}
	if (!strcmp(key, "commands_qos") || !strcmp(key, "commands_expiry") ||
	    !strcmp(key, "commands_max_hops")) {
		int *field = key[9] == 'q' ? &cc->qos : key[9] == 'e' ? &cc->expiry : &cc->max_hops;
		int max = key[9] == 'q' ? 2 : key[9] == 'e' ? 2147483647 : 100;
		if (*field != UNSET) {
			FAIL("%s: given twice", key);
		}
		return parse_int(key, value, key[9] == 'm' ? 1 : 0, max,
				 key[9] == 'q'   ? "an MQTT QoS"
				 : key[9] == 'e' ? "a number of seconds"
						 : "a number of hops",
				 field, errstr, errstr_size);
	}
	if (!strcmp(key, "commands_return_topic")) {
		return set_once(&cc->return_topic, key, value, errstr, errstr_size);
	}
	if (!strcmp(key, "commands_dead_letter_topic")) {
		return set_once(&cc->dead_letter_topic, key, value, errstr, errstr_size);
	}
	if (!strcmp(key, "presence_topic")) {
		return set_once(&cc->presence_topic, key, value, errstr, errstr_size);
	}
	if (!strcmp(key, "commands_wake")) {
		return set_once(&cc->wake, key, value, errstr, errstr_size);
	}
	FAIL("%s: unknown option (known commands_* options: commands_topic, commands_mode, "
	     "commands_group, commands_target, commands_mqtt_topic, commands_qos, "
	     "commands_expiry, commands_return_topic, commands_dead_letter_topic, "
	     "commands_max_hops, commands_wake, commands_kafka.<librdkafka property>)",
	     key);
}

/* A topic option's value, {broker} expanded, must be a legal Kafka topic name. */
static int finish_topic(char **field, const char *dflt, const char *option, const char *broker,
			char *errstr, size_t errstr_size)
{
	char *expanded = expand_broker(*field ? *field : dflt, broker);

	if (expanded == NULL) {
		FAIL("%s: out of memory", option);
	}
	if (!template__is_kafka_topic(expanded, strlen(expanded))) {
		snprintf(errstr, errstr_size,
			 "plugin_opt_%s: '%s' is not a legal Kafka topic name (1..249 of "
			 "[A-Za-z0-9._-]; {broker} is the broker_id)",
			 option, expanded);
		free(expanded);
		return -1;
	}
	free(*field);
	*field = expanded;
	return 0;
}

/* After every option: defaults, {broker}, what needs what. */
static int finish_commands(struct mqk_config *cfg, char *errstr, size_t errstr_size)
{
	struct mqk_cmd_config *cc = &cfg->commands;
	bool targeted = cc->mode == MQK_CMD_TARGETED;
	const char *given = NULL;

	if (cc->topic == NULL) {
		if (cc->mode != MQK_CMD_OFF) {
			given = "commands_mode";
		} else if (cc->group) {
			given = "commands_group";
		} else if (cc->target) {
			given = "commands_target";
		} else if (cc->qos != UNSET) {
			given = "commands_qos";
		} else if (cc->mqtt_topic.source) {
			given = "commands_mqtt_topic";
		} else if (cc->expiry != UNSET) {
			given = "commands_expiry";
		} else if (cc->return_topic) {
			given = "commands_return_topic";
		} else if (cc->dead_letter_topic) {
			given = "commands_dead_letter_topic";
		} else if (cc->max_hops != UNSET) {
			given = "commands_max_hops";
		} else if (cc->presence_topic) {
			given = "presence_topic";
		} else if (cc->wake) {
			given = "commands_wake";
		} else if (cc->kafka_prop_count) {
			given = "commands_kafka.*";
		}
		if (given != NULL) {
			FAIL("%s: only used with plugin_opt_commands_topic (the Kafka topic of "
			     "commands for devices): add it, or remove this option",
			     given);
		}
		cc->mode = MQK_CMD_OFF;
		return 0;
	}
	if (cc->mode == MQK_CMD_OFF) {
		cc->mode = MQK_CMD_BROADCAST;
	}
	if (!targeted) {
		given = cc->return_topic        ? "commands_return_topic"
			: cc->dead_letter_topic ? "commands_dead_letter_topic"
			: cc->max_hops != UNSET ? "commands_max_hops"
						: NULL;
		if (given != NULL) {
			FAIL("%s: only used with plugin_opt_commands_mode targeted", given);
		}
	} else if (!strstr(cc->topic, "{broker}")) {
		FAIL("commands_topic: '%s': in targeted mode each broker reads its own topic: put "
		     "{broker} in it, e.g. mqtt-commands.{broker}",
		     cc->topic);
	}
	if (cc->target != NULL && !strncmp(cc->target, "header:", 7) &&
	    (cc->target_header = strdup(cc->target + 7)) == NULL) {
		FAIL("commands_target: out of memory");
	}
	if (cc->qos == UNSET) {
		cc->qos = DEFAULT_COMMANDS_QOS;
	}
	if (cc->expiry == UNSET) {
		cc->expiry = 0;
	}
	if (cc->max_hops == UNSET) {
		cc->max_hops = DEFAULT_MAX_HOPS;
	}
	if (cc->wake == NULL && (cc->wake = strdup("auto")) == NULL) {
		FAIL("commands_wake: out of memory");
	}
	if (cc->mqtt_topic.source == NULL &&
	    template__compile(&cc->mqtt_topic, DEFAULT_COMMANDS_MQTT_TOPIC, "", false, errstr,
			      errstr_size)) {
		return -1;
	}
	if (finish_topic(&cc->topic, NULL, "commands_topic", cfg->broker_id, errstr, errstr_size)) {
		return -1;
	}
	char *group = expand_broker(cc->group ? cc->group : DEFAULT_COMMANDS_GROUP, cfg->broker_id);
	if (group == NULL) {
		FAIL("commands_group: out of memory");
	}
	free(cc->group);
	cc->group = group;
	if (targeted &&
	    (finish_topic(&cc->return_topic, DEFAULT_RETURN_TOPIC, "commands_return_topic",
			  cfg->broker_id, errstr, errstr_size) ||
	     finish_topic(&cc->dead_letter_topic, DEFAULT_DEAD_LETTER_TOPIC,
			  "commands_dead_letter_topic", cfg->broker_id, errstr, errstr_size) ||
	     finish_topic(&cc->presence_topic, DEFAULT_PRESENCE_TOPIC, "presence_topic",
			  cfg->broker_id, errstr, errstr_size))) {
		return -1;
	}
	if (!targeted && cc->presence_topic != NULL &&
	    finish_topic(&cc->presence_topic, NULL, "presence_topic", cfg->broker_id, errstr,
			 errstr_size)) {
		return -1;
	}
	return 0;
}

/* durability, overflow, journal_dir, journal_fsync: each once. */
static int parse_durability(struct mqk_config *cfg, const char *key, const char *value,
			    char *errstr, size_t errstr_size)
{
	if (!strcmp(key, "journal_dir")) {
		if (value[0] != '/') {
			FAIL("%s: '%s' is not an absolute path", key, value);
		}
		return set_once(&cfg->journal_dir, key, value, errstr, errstr_size);
	}
	if (!strcmp(key, "durability")) {
		if (cfg->durability != UNSET) {
			FAIL("%s: given twice", key);
		}
		if (!strcmp(value, "memory")) {
			cfg->durability = MQK_DURABILITY_MEMORY;
		} else if (!strcmp(value, "journal")) {
			cfg->durability = MQK_DURABILITY_JOURNAL;
		} else {
			FAIL("%s: '%s' is not memory or journal", key, value);
		}
		return 0;
	}
	if (!strcmp(key, "overflow")) {
		if (cfg->overflow != UNSET) {
			FAIL("%s: given twice", key);
		}
		if (!strcmp(value, "reject")) {
			cfg->overflow = MQK_OVERFLOW_REJECT;
		} else if (!strcmp(value, "drop_oldest")) {
			cfg->overflow = MQK_OVERFLOW_DROP_OLDEST;
		} else if (!strcmp(value, "drop_new")) {
			cfg->overflow = MQK_OVERFLOW_DROP_NEW;
		} else {
			FAIL("%s: '%s' is not reject, drop_oldest or drop_new", key, value);
		}
		return 0;
	}
	/* journal_fsync always | never | <milliseconds> */
	char *end;
	long ms;
	if (cfg->journal_fsync_ms != UNSET) {
		FAIL("%s: given twice", key);
	}
	if (!strcmp(value, "always")) {
		cfg->journal_fsync_ms = 0;
		return 0;
	}
	if (!strcmp(value, "never")) {
		cfg->journal_fsync_ms = -1;
		return 0;
	}
	errno = 0;
	ms = strtol(value, &end, 10);
	if (errno || *end != '\0' || end == value || ms < 1 || ms > 60000) {
		FAIL("%s: '%s' is not always, never or a number of milliseconds (1..60000)", key,
		     value);
	}
	cfg->journal_fsync_ms = (int)ms;
	return 0;
}

/* The durability options' defaults and combinations. */
static int finish_durability(struct mqk_config *cfg, const bool *seen, char *errstr,
			     size_t errstr_size)
{
	bool journal;

	if (cfg->durability == UNSET) {
		cfg->durability = MQK_DURABILITY_JOURNAL; /* README: "Durability" */
	}
	if (cfg->overflow == UNSET) {
		cfg->overflow = MQK_OVERFLOW_REJECT;
	}
	journal = cfg->durability == MQK_DURABILITY_JOURNAL;
	if (journal && seen[BUFFER_NUMBER]) {
		FAIL("buffer_mb: only used with durability memory (the journal's size is "
		     "journal_max_mb)");
	}
	for (size_t i = FIRST_JOURNAL_NUMBER; i < FIRST_TOPIC_NUMBER; i++) {
		if (seen[i] && !journal) {
			FAIL("%s: only used with plugin_opt_durability journal", numbers[i].name);
		}
	}
	if (!journal && (cfg->journal_dir != NULL || cfg->journal_fsync_ms != UNSET)) {
		FAIL("%s: only used with plugin_opt_durability journal",
		     cfg->journal_dir != NULL ? "journal_dir" : "journal_fsync");
	}
	if (cfg->journal_fsync_ms == UNSET) {
		cfg->journal_fsync_ms = DEFAULT_JOURNAL_FSYNC_MS;
	}
	if (!seen[FIRST_JOURNAL_NUMBER]) {
		cfg->journal_max_mb = DEFAULT_JOURNAL_MAX_MB;
	}
	if (!seen[FIRST_JOURNAL_NUMBER + 1]) {
		cfg->journal_segment_mb = DEFAULT_JOURNAL_SEGMENT_MB;
		if (cfg->journal_segment_mb > cfg->journal_max_mb / 2) {
			cfg->journal_segment_mb = cfg->journal_max_mb / 2;
		}
	}
	if (cfg->journal_segment_mb > cfg->journal_max_mb / 2) {
		FAIL("journal_segment_mb: %d is more than half of journal_max_mb (%d): the journal "
		     "needs two segments at least",
		     cfg->journal_segment_mb, cfg->journal_max_mb);
	}
	if (journal && cfg->journal_dir == NULL) {
		size_t n = strlen(DEFAULT_JOURNAL_DIR) + strlen(cfg->broker_id) + 1;
		cfg->journal_dir = malloc(n);
		if (cfg->journal_dir == NULL) {
			FAIL("journal_dir: out of memory");
		}
		snprintf(cfg->journal_dir, n, "%s%s", DEFAULT_JOURNAL_DIR, cfg->broker_id);
	}
	return 0;
}

static int parse_one(struct mqk_config *cfg, const char *key, char *value, bool *seen,
		     bool *seen_create, char *errstr, size_t errstr_size)
{
	if (*value == '\0') {
		FAIL("%s: empty value", key);
	}
	if (!strcmp(key, "bootstrap_servers")) {
		return set_once(&cfg->bootstrap_servers, key, value, errstr, errstr_size);
	}
	if (!strcmp(key, "broker_id")) {
		if (!is_name(value, "._-")) {
			FAIL("%s: '%s' is not a valid broker id (1..64 characters [A-Za-z0-9._-])",
			     key, value);
		}
		return set_once(&cfg->broker_id, key, value, errstr, errstr_size);
	}
	if (!strncmp(key, "route_", 6)) {
		return parse_route(cfg, key, value, errstr, errstr_size);
	}
	if (!strcmp(key, "exclude")) {
		return parse_exclude(cfg, key, value, errstr, errstr_size);
	}
	if (!strncmp(key, "kafka.", 6)) {
		return parse_kafka(&cfg->kafka_props, &cfg->kafka_prop_count, key, value, errstr,
				   errstr_size);
	}
	if (!strcmp(key, "routes_file")) {
		if (value[0] != '/') {
			FAIL("%s: '%s' is not an absolute path", key, value);
		}
		return set_once(&cfg->routes_file, key, value, errstr, errstr_size);
	}
	if (!strcmp(key, "kafka_config_file")) {
		if (value[0] != '/') {
			FAIL("%s: '%s' is not an absolute path", key, value);
		}
		return set_once(&cfg->kafka_config_file, key, value, errstr, errstr_size);
	}
	if (!strncmp(key, "commands_", 9) || !strcmp(key, "presence_topic")) {
		return parse_commands(cfg, key, value, errstr, errstr_size);
	}
	if (!strcmp(key, "durability") || !strcmp(key, "overflow") || !strcmp(key, "journal_dir") ||
	    !strcmp(key, "journal_fsync")) {
		return parse_durability(cfg, key, value, errstr, errstr_size);
	}
	if (!strcmp(key, "create_topics")) {
		if (*seen_create) {
			FAIL("%s: given twice", key);
		}
		*seen_create = true;
		return parse_bool(key, value, &cfg->create_topics, errstr, errstr_size);
	}
	for (size_t i = 0; i < N_NUMBERS; i++) {
		if (!strcmp(key, numbers[i].name)) {
			if (seen[i]) {
				FAIL("%s: given twice", key);
			}
			seen[i] = true;
			return parse_number(cfg, i, key, value, errstr, errstr_size);
		}
	}
	FAIL("%s: unknown option (known: bootstrap_servers, broker_id, route_<name>, exclude, "
	     "routes_file, kafka.<librdkafka property>, kafka_config_file, stats_interval, "
	     "flush_timeout_ms, "
	     "buffer_mb, "
	     "durability, overflow, journal_dir, journal_fsync, journal_max_mb, "
	     "journal_segment_mb, create_topics, topic_partitions, topic_replication_factor, "
	     "commands_topic, "
	     "commands_mode, commands_group, commands_target, commands_mqtt_topic, "
	     "commands_qos, commands_expiry, commands_return_topic, commands_dead_letter_topic, "
	     "commands_max_hops, commands_wake, commands_kafka.<librdkafka property>, "
	     "presence_topic)",
	     key);
}

/* routes_file at start-up: its routes and excludes after mosquitto.conf's. */
static int merge_routes_file(struct mqk_config *cfg, char *errstr, size_t errstr_size)
{
	struct mqk_config file = {0};
	struct mqk_route *routes;

	if (routes__read_file(cfg->routes_file, cfg, &file, errstr, errstr_size)) {
		options__free(&file);
		return -1;
	}
	if (cfg->route_count + file.route_count > MQK_MAX_ROUTES) {
		options__free(&file);
		FAIL("routes_file: %s: more than %d routes with mosquitto.conf's", cfg->routes_file,
		     MQK_MAX_ROUTES);
	}
	routes = realloc(cfg->routes,
			 sizeof(*routes) * (size_t)(cfg->route_count + file.route_count + 1));
	char **excludes = routes ? realloc(cfg->excludes,
					   sizeof(*excludes) * (size_t)(cfg->exclude_count +
									file.exclude_count + 1))
				 : NULL;
	if (routes) {
		cfg->routes = routes;
	}
	if (excludes == NULL) {
		options__free(&file);
		FAIL("routes_file: out of memory");
	}
	cfg->excludes = excludes;
	/* Moved: file's strings are cfg's now. */
	memcpy(&cfg->routes[cfg->route_count], file.routes,
	       sizeof(*routes) * (size_t)file.route_count);
	cfg->route_count += file.route_count;
	memcpy(&cfg->excludes[cfg->exclude_count], file.excludes,
	       sizeof(*excludes) * (size_t)file.exclude_count);
	cfg->exclude_count += file.exclude_count;
	file.route_count = file.exclude_count = 0;
	options__free(&file);
	return 0;
}

int options__parse_route_line(struct mqk_config *cfg, const char *line, char *errstr,
			      size_t errstr_size)
{
	size_t n = strcspn(line, " \t");
	char key[NAME_MAX_LEN + 16];
	char *value;
	int rc;

	if (n >= sizeof(key)) {
		n = sizeof(key) - 1;
	}
	memcpy(key, line, n);
	key[n] = '\0';
	if (strncmp(key, "route_", 6) && strcmp(key, "exclude")) {
		snprintf(errstr, errstr_size, "%s: not a route_<name> or exclude line", key);
		return -1;
	}
	value = trimmed(line + n);
	if (value == NULL) {
		snprintf(errstr, errstr_size, "%s: out of memory", key);
		return -1;
	}
	if (*value == '\0') {
		rc = -1;
		snprintf(errstr, errstr_size, "plugin_opt_%s: empty value", key);
	} else if (key[0] == 'r') {
		rc = parse_route(cfg, key, value, errstr, errstr_size);
	} else {
		rc = parse_exclude(cfg, key, value, errstr, errstr_size);
	}
	free(value);
	if (rc && !strncmp(errstr, "plugin_opt_", 11)) {
		memmove(errstr, errstr + 11, strlen(errstr + 11) + 1);
	}
	return rc;
}

void options__free_route(struct mqk_route *r)
{
	free(r->name);
	free(r->filter);
	free(r->sel_clientid);
	free(r->sel_username);
	template__free(&r->topic);
	template__free(&r->key);
}

int options__parse(struct mqk_config *cfg, const struct mosquitto_opt *opts, int opt_count,
		   char *errstr, size_t errstr_size)
{
	bool seen[N_NUMBERS] = {false};
	bool seen_create = false;

	cfg->stats_interval = DEFAULT_STATS_INTERVAL;
	cfg->flush_timeout_ms = DEFAULT_FLUSH_TIMEOUT_MS;
	cfg->buffer_mb = DEFAULT_BUFFER_MB;
	cfg->topic_partitions = DEFAULT_TOPIC_PARTITIONS;
	cfg->topic_replication_factor = DEFAULT_TOPIC_REPLICATION_FACTOR;
	cfg->commands.qos = cfg->commands.expiry = cfg->commands.max_hops = UNSET;
	cfg->durability = cfg->overflow = cfg->journal_fsync_ms = UNSET;
	for (int i = 0; i < opt_count; i++) {
		const char *key = opts[i].key ? opts[i].key : "";
		char *value = trimmed(opts[i].value);
		int rc;

		if (value == NULL) {
			FAIL("%s: out of memory", key);
		}
		rc = parse_one(cfg, key, value, seen, &seen_create, errstr, errstr_size);
		free(value);
		if (rc) {
			return -1;
		}
	}
	cfg->conf_route_count = cfg->route_count;
	cfg->conf_exclude_count = cfg->exclude_count;
	if (cfg->routes_file != NULL && merge_routes_file(cfg, errstr, errstr_size)) {
		return -1;
	}
	if (cfg->kafka_config_file != NULL &&
	    kafka_conf__read_file(cfg->kafka_config_file, &cfg->kafka_file_props,
				  &cfg->kafka_file_prop_count, errstr, errstr_size)) {
		return -1;
	}
	if (cfg->bootstrap_servers == NULL) {
		FAIL("bootstrap_servers: required: the Kafka brokers to connect to, e.g. "
		     "plugin_opt_bootstrap_servers kafka1:9092,kafka2:9092");
	}
	for (size_t i = FIRST_TOPIC_NUMBER; i < N_NUMBERS; i++) {
		if (seen[i] && !cfg->create_topics) {
			FAIL("%s: only used when the plugin creates topics: add "
			     "plugin_opt_create_topics "
			     "true, or remove it",
			     numbers[i].name);
		}
	}
	if (cfg->broker_id == NULL) {
		char host[256] = "";
		if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') {
			strcpy(host, "mosquitto");
		}
		cfg->broker_id = strdup(host);
		if (cfg->broker_id == NULL) {
			FAIL("broker_id: out of memory");
		}
	}
	if (finish_durability(cfg, seen, errstr, errstr_size)) {
		return -1;
	}
	return finish_commands(cfg, errstr, errstr_size);
}

void options__free(struct mqk_config *cfg)
{
	for (int i = 0; i < cfg->route_count; i++) {
		options__free_route(&cfg->routes[i]);
	}
	free(cfg->routes);
	free(cfg->active);
	free(cfg->routes_file);
	for (int i = 0; i < cfg->exclude_count; i++) {
		free(cfg->excludes[i]);
	}
	free(cfg->excludes);
	for (int i = 0; i < cfg->kafka_prop_count; i++) {
		free(cfg->kafka_props[i].name);
		free(cfg->kafka_props[i].value);
	}
	free(cfg->kafka_props);
	for (int i = 0; i < cfg->kafka_file_prop_count; i++) {
		free(cfg->kafka_file_props[i].name);
		free(cfg->kafka_file_props[i].value);
	}
	free(cfg->kafka_file_props);
	free(cfg->kafka_config_file);
	struct mqk_cmd_config *cc = &cfg->commands;
	free(cc->topic);
	free(cc->group);
	free(cc->target);
	free(cc->target_header);
	template__free(&cc->mqtt_topic);
	free(cc->return_topic);
	free(cc->dead_letter_topic);
	free(cc->presence_topic);
	free(cc->wake);
	for (int i = 0; i < cc->kafka_prop_count; i++) {
		free(cc->kafka_props[i].name);
		free(cc->kafka_props[i].value);
	}
	free(cc->kafka_props);
	free(cfg->bootstrap_servers);
	free(cfg->broker_id);
	free(cfg->journal_dir);
	memset(cfg, 0, sizeof(*cfg));
}
