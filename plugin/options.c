/*
 * options.c - plugin_opt_* lines -> struct mqk_config.
 *
 * Everything the admin can get wrong is found here, at start-up, and reported in one
 * line that names the option, the value and what is allowed; the caller logs it and
 * init fails, which stops mosquitto. Unknown options are errors: a typo must not pass
 * silently (the message lists the known names, and suggests the closest one). librdkafka
 * properties (kafka.*) are only collected here; producer.c hands them to
 * rd_kafka_conf_set, which validates them.
 *
 * Every option is one entry of `options[]` below: its name, its parser and what the parser
 * needs (the field it sets, a range, the choices), its default, what it needs besides
 * (durability journal, commands_topic, ...), and its value and default as README's
 * option tables show them. The parser, the unknown-option message and the test that
 * compares README with this table (tests/docs/check_options.py, ctest options_doc) all
 * read that one list. What an option means is written once, in README.
 */
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#include "mqk.h"

#define NAME_MAX_LEN 64
/* The defaults that are not numbers in options[] (README shows these too). */
#define DEFAULT_JOURNAL_DIR "/var/lib/mosquitto/mosquitto-kafka/" /* + broker_id */
#define DEFAULT_JOURNAL_SEGMENT_MB 64 /* at most half of journal_max_mb */
#define DEFAULT_COMMANDS_GROUP "mosquitto-kafka-commands-{broker}"
#define DEFAULT_COMMANDS_MQTT_TOPIC "devices/{clientid}/commands"
#define DEFAULT_RETURN_TOPIC "mqtt-commands"
#define DEFAULT_DEAD_LETTER_TOPIC "mqtt-commands.dead"
#define DEFAULT_PRESENCE_TOPIC "mqtt-presence"
/* Redistribute mode: one group for the cluster, and each broker's back-channel. */
#define DEFAULT_SHARED_GROUP "mosquitto-kafka-commands"
#define DEFAULT_BROKER_TOPIC "mqtt-commands.{broker}"
#define DEFAULT_WAKE "auto"
#define DEFAULT_INBOUND_GROUP "mosquitto-kafka-inbound-{broker}"

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

struct option_spec;

/* route_<name> "<filter> -> <topic> [key=...] [format=...] [selectors]" */
static int parse_route(struct mqk_config *cfg, const struct option_spec *opt, const char *key,
		       char *value, char *errstr, size_t errstr_size)
{
	const char *name = key + strlen("route_");
	struct mqk_route *route;
	char why[1024];
	char *arrow, *tok, *save = NULL;
	char *end;

	(void)opt;
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

static int parse_exclude(struct mqk_config *cfg, const struct option_spec *opt, const char *key,
			 char *value, char *errstr, size_t errstr_size)
{
	char **excludes;

	(void)opt;
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

static int kafka_producer(struct mqk_config *cfg, const struct option_spec *opt, const char *key,
			  char *value, char *errstr, size_t errstr_size)
{
	(void)opt;
	return parse_kafka(&cfg->kafka_props, &cfg->kafka_prop_count, key, value, errstr,
			   errstr_size);
}

static int kafka_commands(struct mqk_config *cfg, const struct option_spec *opt, const char *key,
			  char *value, char *errstr, size_t errstr_size)
{
	struct mqk_cmd_config *cc = &cfg->commands;

	(void)opt;
	return parse_kafka(&cc->kafka_props, &cc->kafka_prop_count, key, value, errstr,
			   errstr_size);
}

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

/* inbound_<name> "<kafka-topic> -> <mqtt-topic-template> [qos=0|1|2] [retain=true|false]" */
static int parse_inbound(struct mqk_config *cfg, const struct option_spec *opt, const char *key,
			 char *value, char *errstr, size_t errstr_size)
{
	struct mqk_inbound_config *ic = &cfg->inbound;
	const char *name = key + strlen("inbound_");
	struct mqk_inbound_route *r;
	char why[1024];
	char *arrow, *tok, *save = NULL, *end;
	bool have_qos = false, have_retain = false;

	(void)opt;
	if (!is_name(name, "_-")) {
		FAIL("%s: an inbound route needs a name of 1..64 characters [A-Za-z0-9_-] after "
		     "inbound_, e.g. plugin_opt_inbound_config",
		     key);
	}
	for (int i = 0; i < ic->count; i++) {
		if (!strcmp(ic->routes[i].name, name)) {
			FAIL("%s: inbound route '%s' is defined twice", key, name);
		}
	}
	arrow = find_arrow(value);
	if (arrow == NULL) {
		FAIL("%s: '%s' is not '<kafka-topic> -> <mqtt-topic> [qos=0|1|2] "
		     "[retain=true|false]'",
		     key, value);
	}
	r = realloc(ic->routes, sizeof(*r) * (size_t)(ic->count + 1));
	if (r == NULL) {
		FAIL("%s: out of memory", key);
	}
	ic->routes = r;
	r = &ic->routes[ic->count++];
	memset(r, 0, sizeof(*r));
	end = arrow;
	while (end > value && isspace((unsigned char)end[-1])) {
		end--;
	}
	r->name = strdup(name);
	r->kafka_topic = strndup(value, (size_t)(end - value));
	if (r->name == NULL || r->kafka_topic == NULL) {
		FAIL("%s: out of memory", key);
	}
	if (!template__is_kafka_topic(r->kafka_topic, strlen(r->kafka_topic))) {
		FAIL("%s: '%s' is not a legal Kafka topic name (1..249 of [A-Za-z0-9._-])", key,
		     r->kafka_topic);
	}
	for (int i = 0; i < ic->count - 1; i++) {
		if (!strcmp(ic->routes[i].kafka_topic, r->kafka_topic)) {
			FAIL("%s: Kafka topic '%s' is already read by plugin_opt_inbound_%s: one "
			     "inbound route per Kafka topic",
			     key, r->kafka_topic, ic->routes[i].name);
		}
	}
	tok = strtok_r(arrow + 2, " \t", &save);
	if (tok == NULL) {
		FAIL("%s: no MQTT topic after '->'", key);
	}
	if (template__compile_inbound(&r->mqtt_topic, tok, why, sizeof(why))) {
		FAIL("%s: %s", key, why);
	}
	if (mosquitto_validate_utf8(tok, (int)strlen(tok)) != MOSQ_ERR_SUCCESS ||
	    (r->mqtt_topic.is_static && mosquitto_pub_topic_check(tok) != MOSQ_ERR_SUCCESS)) {
		FAIL("%s: '%s' is not a valid MQTT topic", key, tok);
	}
	while ((tok = strtok_r(NULL, " \t", &save)) != NULL) {
		if (!strncmp(tok, "qos=", 4) && !have_qos) {
			have_qos = true;
			if (tok[4] < '0' || tok[4] > '2' || tok[5] != '\0') {
				FAIL("%s: qos='%s' is not 0, 1 or 2", key, tok + 4);
			}
			r->qos = tok[4] - '0';
		} else if (!strncmp(tok, "retain=", 7) && !have_retain) {
			have_retain = true;
			if (!strcmp(tok + 7, "true")) {
				r->retain = true;
			} else if (strcmp(tok + 7, "false")) {
				FAIL("%s: retain='%s' is not true or false", key, tok + 7);
			}
		} else if (!strncmp(tok, "qos=", 4) || !strncmp(tok, "retain=", 7)) {
			FAIL("%s: '%s' given twice", key, tok);
		} else {
			FAIL("%s: unknown inbound route attribute '%s' (use qos=0|1|2, "
			     "retain=true|false)",
			     key, tok);
		}
	}
	return 0;
}

static int kafka_inbound(struct mqk_config *cfg, const struct option_spec *opt, const char *key,
			 char *value, char *errstr, size_t errstr_size)
{
	struct mqk_inbound_config *ic = &cfg->inbound;

	(void)opt;
	return parse_kafka(&ic->kafka_props, &ic->kafka_prop_count, key, value, errstr,
			   errstr_size);
}

/* ---- the table's parsers -------------------------------------------------------- */

/* One value of a choice option and what the field gets for it. */
struct choice {
	const char *name;
	int value;
};

/* What else an option needs: given without it, the configuration is refused. */
enum needs {
	NEEDS_NOTHING,
	NEEDS_JOURNAL,       /* durability journal */
	NEEDS_MEMORY,        /* durability memory */
	NEEDS_CREATE_TOPICS, /* create_topics true */
	NEEDS_COMMANDS,      /* commands_topic */
	NEEDS_TARGETED,      /* commands_topic and commands_mode targeted */
	NEEDS_HOPS,          /* commands_topic and commands_mode targeted or redistribute */
	NEEDS_REDISTRIBUTE,  /* commands_topic and commands_mode redistribute */
	NEEDS_METRICS,       /* metrics_listen */
	NEEDS_INBOUND,       /* an inbound_<name> route */
};

/*
 * Parses one option's value (trimmed, not empty) into cfg. key is the option as given
 * (for a prefix: route_x, kafka.acks). Returns 0, or -1 with errstr.
 */
typedef int parse_fn(struct mqk_config *cfg, const struct option_spec *opt, const char *key,
		     char *value, char *errstr, size_t errstr_size);

/* One plugin_opt_ option: see options[]. */
struct option_spec {
	const char *name; /* as README writes it; ending in "<...>": a prefix (route_<name>) */
	parse_fn *parse;
	size_t field;     /* offsetof(struct mqk_config, ...) of what parse sets, if it is one */
	bool repeat;      /* may be given more than once; else "given twice" */
	enum needs needs; /* given without this: an error */
	/* text: "'<value>' is not <is_not>" unless valid(value) */
	bool (*valid)(const char *value);
	const char *is_not;
	/* number: "'<value>' is not <unit> (<min>..<max>, or range)" */
	int min, max;
	const char *unit;
	const char *range; /* set: the words for min..max, and 0 is refused */
	/* choice: one of these names (and bool: true or false) */
	const struct choice *choices; /* ends with {NULL} */
	int dflt;                     /* number, choice, bool: the field before parsing */
	/* README's table: the value and default columns (its code marks and escapes left out) */
	const char *value;   /* NULL: min..max, or the choices a|b */
	const char *shown;   /* the default; NULL: dflt, as a number or a choice */
	bool commands_table; /* README's Commands table; else Configuration */
};

#define FIELD(f) .field = offsetof(struct mqk_config, f)
#define FIELD_AT(cfg, opt, type) ((type *)((char *)(cfg) + (opt)->field))

/* A string option: a copy of the value, if valid. */
static int parse_text(struct mqk_config *cfg, const struct option_spec *opt, const char *key,
		      char *value, char *errstr, size_t errstr_size)
{
	char **field = FIELD_AT(cfg, opt, char *);

	if (opt->valid != NULL && !opt->valid(value)) {
		FAIL("%s: '%s' is not %s", key, value, opt->is_not);
	}
	*field = strdup(value);
	if (*field == NULL) {
		FAIL("%s: out of memory", key);
	}
	return 0;
}

static int parse_number(struct mqk_config *cfg, const struct option_spec *opt, const char *key,
			char *value, char *errstr, size_t errstr_size)
{
	int *field = FIELD_AT(cfg, opt, int);

	if (opt->range == NULL) {
		return parse_int(key, value, opt->min, opt->max, opt->unit, field, errstr,
				 errstr_size);
	}
	if (parse_int(key, value, opt->min, opt->max, opt->unit, field, errstr, errstr_size) ||
	    *field == 0) {
		FAIL("%s: '%s' is not %s (%s)", key, value, opt->unit, opt->range);
	}
	return 0;
}

/* "a", "a or b", "a, b or c" */
static void list_choices(const struct choice *c, const char *sep, const char *last, char *buf,
			 size_t size)
{
	size_t n = 0;

	buf[0] = '\0';
	for (int i = 0; c[i].name != NULL && n < size; i++) {
		const char *s = i == 0 ? "" : c[i + 1].name == NULL ? last : sep;
		n += (size_t)snprintf(buf + n, size - n, "%s%s", s, c[i].name);
	}
}

static int parse_choice(struct mqk_config *cfg, const struct option_spec *opt, const char *key,
			char *value, char *errstr, size_t errstr_size)
{
	char names[256];

	for (int i = 0; opt->choices[i].name != NULL; i++) {
		if (!strcmp(value, opt->choices[i].name)) {
			*FIELD_AT(cfg, opt, int) = opt->choices[i].value;
			return 0;
		}
	}
	list_choices(opt->choices, ", ", " or ", names, sizeof(names));
	FAIL("%s: '%s' is not %s", key, value, names);
}

static const struct choice booleans[] = {{"true", 1}, {"false", 0}, {NULL, 0}};

static int parse_bool(struct mqk_config *cfg, const struct option_spec *opt, const char *key,
		      char *value, char *errstr, size_t errstr_size)
{
	bool *field = FIELD_AT(cfg, opt, bool);

	if (!strcmp(value, "true")) {
		*field = true;
	} else if (!strcmp(value, "false")) {
		*field = false;
	} else {
		FAIL("%s: '%s' is not true or false", key, value);
	}
	return 0;
}

/* journal_fsync always | never | <milliseconds>: 0, -1 or the number. */
static int parse_fsync(struct mqk_config *cfg, const struct option_spec *opt, const char *key,
		       char *value, char *errstr, size_t errstr_size)
{
	int *field = FIELD_AT(cfg, opt, int);
	char *end;
	long ms;

	if (!strcmp(value, "always")) {
		*field = 0;
		return 0;
	}
	if (!strcmp(value, "never")) {
		*field = -1;
		return 0;
	}
	errno = 0;
	ms = strtol(value, &end, 10);
	if (errno || *end != '\0' || end == value || ms < opt->min || ms > opt->max) {
		FAIL("%s: '%s' is not always, never or a number of milliseconds (%d..%d)", key,
		     value, opt->min, opt->max);
	}
	*field = (int)ms;
	return 0;
}

static int parse_mqtt_topic(struct mqk_config *cfg, const struct option_spec *opt, const char *key,
			    char *value, char *errstr, size_t errstr_size)
{
	struct mqk_template *tpl = FIELD_AT(cfg, opt, struct mqk_template);
	char why[512];

	if (strchr(value, '+') || strchr(value, '#') || value[0] == '$') {
		FAIL("%s: '%s' is not a topic to publish to (no +, # or leading $)", key, value);
	}
	if (template__compile(tpl, value, "", false, why, sizeof(why))) {
		FAIL("%s: %s", key, why);
	}
	return 0;
}

static bool is_absolute(const char *value)
{
	return value[0] == '/';
}

/* metrics_textfile: a file, not a directory. */
static bool is_file_path(const char *value)
{
	return value[0] == '/' && value[strlen(value) - 1] != '/';
}

/*
 * metrics_listen: <host>:<port> or [<IPv6>]:<port>, port 0..65535 (0: any free port,
 * logged). The host is resolved when the listener starts (metrics.c).
 */
static int parse_listen(struct mqk_config *cfg, const struct option_spec *opt, const char *key,
			char *value, char *errstr, size_t errstr_size)
{
	const char *colon = strrchr(value, ':');
	char *end;
	long port;

	if (colon == NULL || colon == value || colon[1] == '\0') {
		FAIL("%s: '%s' is not <host>:<port> (e.g. 127.0.0.1:9883, [::1]:9883)", key, value);
	}
	if (value[0] == '[' ? colon[-1] != ']' || colon - value < 3
			    : memchr(value, ':', (size_t)(colon - value)) != NULL) {
		FAIL("%s: '%s' is not <host>:<port> (an IPv6 address goes in brackets: "
		     "[::1]:9883)",
		     key, value);
	}
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (errno || *end != '\0' || port < 0 || port > 65535 ||
	    !isdigit((unsigned char)colon[1])) {
		FAIL("%s: '%s': the port '%s' is not a number in 0..65535", key, value, colon + 1);
	}
	return parse_text(cfg, opt, key, value, errstr, errstr_size);
}

static bool is_broker_id(const char *value)
{
	return is_name(value, "._-");
}

static bool is_target(const char *value)
{
	return !strcmp(value, "key") || (!strncmp(value, "header:", 7) && value[7] != '\0');
}

/* ---- every option ------------------------------------------------------------------ */

/*
 * Every plugin_opt_ option, in the order of README's tables (Configuration, then
 * Commands); the unknown-option message lists them in this order too.
 *
 * To add an option: add its entry here, at the place its README row has, and the row
 * (name, value and default columns as `value` and `shown` say, or as derived from the
 * range and choices; the meaning only in README). A text, number, choice or bool option
 * needs nothing else: parse_text and the others set `field`, numbers and choices get
 * `dflt` before parsing, "given twice" and `needs` are checked for every entry. Another
 * kind of value gets a parse_fn of its own above. ctest options_doc fails, naming the
 * difference, until README and this table agree.
 */
static const struct choice durabilities[] = {
	{"journal", MQK_DURABILITY_JOURNAL}, {"memory", MQK_DURABILITY_MEMORY}, {NULL, 0}};
static const struct choice overflows[] = {{"reject", MQK_OVERFLOW_REJECT},
					  {"drop_oldest", MQK_OVERFLOW_DROP_OLDEST},
					  {"drop_new", MQK_OVERFLOW_DROP_NEW},
					  {NULL, 0}};
static const struct choice command_modes[] = {
	{"broadcast", MQK_CMD_BROADCAST},
	{"targeted", MQK_CMD_TARGETED},
	{"redistribute", MQK_CMD_REDISTRIBUTE},
	{NULL, 0}};

static const struct option_spec options[] = {
	/* README: Configuration */
	{"bootstrap_servers", parse_text, FIELD(bootstrap_servers),
	 .value = "host:port[,host:port...]", .shown = "required"},
	{"broker_id", parse_text, FIELD(broker_id), .valid = is_broker_id,
	 .is_not = "a valid broker id (1..64 characters [A-Za-z0-9._-])",
	 .value = "1..64 of [A-Za-z0-9._-]", .shown = "the host name"},
	{"route_<name>", parse_route, .repeat = true,
	 .value = "<filter> -> <topic> [key=<key>] [format=raw|json] [clientid=<glob>] "
		  "[username=<glob>] [qos=0|1|2] [retain=true|false]",
	 .shown = "none"},
	{"exclude", parse_exclude, .repeat = true, .value = "MQTT topic filter", .shown = "none"},
	{"routes_file", parse_text, FIELD(routes_file), .valid = is_absolute,
	 .is_not = "an absolute path", .value = "absolute path", .shown = "none"},
	{"kafka.<property>", kafka_producer, .repeat = true, .value = "librdkafka's",
	 .shown = "see below"},
	{"kafka_config_file", parse_text, FIELD(kafka_config_file), .valid = is_absolute,
	 .is_not = "an absolute path", .value = "absolute path", .shown = "none"},
	{"stats_interval", parse_number, FIELD(stats_interval), .min = 0, .max = 86400,
	 .unit = "a number of seconds", .dflt = 10, .value = "seconds, 0..86400"},
	{"flush_timeout_ms", parse_number, FIELD(flush_timeout_ms), .min = 0, .max = 600000,
	 .unit = "a number of milliseconds", .dflt = 10000},
	{"durability", parse_choice, FIELD(durability), .choices = durabilities,
	 .dflt = MQK_DURABILITY_JOURNAL},
	{"journal_dir", parse_text, FIELD(journal_dir), .needs = NEEDS_JOURNAL,
	 .valid = is_absolute, .is_not = "an absolute path", .value = "absolute path",
	 .shown = DEFAULT_JOURNAL_DIR "<broker_id>"},
	{"journal_fsync", parse_fsync, FIELD(journal_fsync_ms), .needs = NEEDS_JOURNAL, .min = 1,
	 .max = 60000, .dflt = 1000, .value = "always|never|1..60000 ms"},
	{"journal_max_mb", parse_number, FIELD(journal_max_mb), .needs = NEEDS_JOURNAL, .min = 2,
	 .max = 1048576, .unit = "a number of MiB", .dflt = 1024},
	{"journal_segment_mb", parse_number, FIELD(journal_segment_mb), .needs = NEEDS_JOURNAL,
	 .min = 1, .max = 1024, .unit = "a number of MiB", .dflt = DEFAULT_JOURNAL_SEGMENT_MB},
	{"buffer_mb", parse_number, FIELD(buffer_mb), .needs = NEEDS_MEMORY, .min = 1, .max = 4096,
	 .unit = "a number of MiB", .dflt = 64},
	{"overflow", parse_choice, FIELD(overflow), .choices = overflows,
	 .dflt = MQK_OVERFLOW_REJECT},
	{"create_topics", parse_bool, FIELD(create_topics), .choices = booleans, .dflt = false},
	{"topic_partitions", parse_number, FIELD(topic_partitions), .needs = NEEDS_CREATE_TOPICS,
	 .min = 1, .max = 10000, .unit = "a number of partitions", .dflt = 6},
	{"topic_replication_factor", parse_number, FIELD(topic_replication_factor),
	 .needs = NEEDS_CREATE_TOPICS, .min = -1, .max = 32767, .unit = "a replication factor",
	 .range = "-1 for the brokers' default, or 1..32767", .dflt = -1,
	 .value = "-1, or 1..32767"},
	{"metrics_listen", parse_listen, FIELD(metrics_listen), .value = "host:port",
	 .shown = "none"},
	{"metrics_textfile", parse_text, FIELD(metrics_textfile), .valid = is_file_path,
	 .is_not = "an absolute path of a file", .value = "absolute path", .shown = "none"},
	{"health_max_unacked_s", parse_number, FIELD(health_max_unacked_s), .needs = NEEDS_METRICS,
	 .min = 1, .max = 86400, .unit = "a number of seconds", .dflt = 30},
	/* Inbound routes: Kafka -> MQTT subscribers (docs/inbound.md) */
	{"inbound_<name>", parse_inbound, .repeat = true,
	 .value = "<kafka-topic> -> <mqtt-topic> [qos=0|1|2] [retain=true|false]", .shown = "none"},
	{"inbound_group", parse_text, FIELD(inbound.group), .needs = NEEDS_INBOUND,
	 .value = "consumer group id; {broker}", .shown = DEFAULT_INBOUND_GROUP},
	{"inbound_wake", parse_text, FIELD(inbound.wake), .needs = NEEDS_INBOUND,
	 .value = "auto|off|host:port", .shown = DEFAULT_WAKE},
	{"inbound_kafka.<property>", kafka_inbound, .repeat = true, .needs = NEEDS_INBOUND,
	 .value = "librdkafka's", .shown = "—"},

	/* README: Commands (docs/commands.md) */
	{"commands_topic", parse_text, FIELD(commands.topic), .commands_table = true,
	 .value = "Kafka topic; {broker} is broker_id", .shown = "none: no commands"},
	{"commands_mode", parse_choice, FIELD(commands.mode), .needs = NEEDS_COMMANDS,
	 .choices = command_modes, .dflt = MQK_CMD_BROADCAST, .commands_table = true},
	{"commands_group", parse_text, FIELD(commands.group), .needs = NEEDS_COMMANDS,
	 .value = "consumer group id; {broker}",
	 .shown = DEFAULT_COMMANDS_GROUP "; redistribute: " DEFAULT_SHARED_GROUP,
	 .commands_table = true},
	{"commands_target", parse_text, FIELD(commands.target), .needs = NEEDS_COMMANDS,
	 .valid = is_target, .is_not = "key or header:<name>", .value = "key|header:<name>",
	 .shown = "key", .commands_table = true},
	{"commands_mqtt_topic", parse_mqtt_topic, FIELD(commands.mqtt_topic),
	 .needs = NEEDS_COMMANDS, .value = "MQTT topic; {clientid}, {broker}",
	 .shown = DEFAULT_COMMANDS_MQTT_TOPIC, .commands_table = true},
	{"commands_qos", parse_number, FIELD(commands.qos), .needs = NEEDS_COMMANDS, .min = 0,
	 .max = 2, .unit = "an MQTT QoS", .dflt = 1, .commands_table = true},
	{"commands_expiry", parse_number, FIELD(commands.expiry), .needs = NEEDS_COMMANDS, .min = 0,
	 .max = 2147483647, .unit = "a number of seconds", .dflt = 0,
	 .value = "seconds, 0..2147483647", .commands_table = true},
	{"commands_return_topic", parse_text, FIELD(commands.return_topic), .needs = NEEDS_TARGETED,
	 .value = "Kafka topic", .shown = DEFAULT_RETURN_TOPIC, .commands_table = true},
	{"commands_dead_letter_topic", parse_text, FIELD(commands.dead_letter_topic),
	 .needs = NEEDS_HOPS, .value = "Kafka topic", .shown = DEFAULT_DEAD_LETTER_TOPIC,
	 .commands_table = true},
	{"commands_max_hops", parse_number, FIELD(commands.max_hops), .needs = NEEDS_HOPS,
	 .min = 1, .max = 100, .unit = "a number of hops", .dflt = 5, .commands_table = true},
	{"commands_topic_broker", parse_text, FIELD(commands.broker_topic),
	 .needs = NEEDS_REDISTRIBUTE, .value = "Kafka topic with {broker}",
	 .shown = DEFAULT_BROKER_TOPIC, .commands_table = true},
	{"presence_topic", parse_text, FIELD(commands.presence_topic), .needs = NEEDS_COMMANDS,
	 .value = "Kafka topic (compacted)",
	 .shown = DEFAULT_PRESENCE_TOPIC " in targeted and redistribute mode, else none",
	 .commands_table = true},
	{"commands_wake", parse_text, FIELD(commands.wake), .needs = NEEDS_COMMANDS,
	 .value = "auto|off|host:port", .shown = DEFAULT_WAKE, .commands_table = true},
	{"commands_kafka.<property>", kafka_commands, .repeat = true, .needs = NEEDS_COMMANDS,
	 .value = "librdkafka's", .shown = "—", .commands_table = true},
};
#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

/* commands.mode is set through an int, as a choice. */
_Static_assert(sizeof(enum mqk_cmd_mode) == sizeof(int), "commands_mode is an int");

/* The length of a prefix option's prefix ("route_" of route_<name>); 0: not a prefix. */
static size_t prefix_len(const struct option_spec *opt)
{
	const char *lt = strchr(opt->name, '<');

	return lt ? (size_t)(lt - opt->name) : 0;
}

/* The option key is (a name, or a prefix key starts with), or NULL. */
static const struct option_spec *lookup(const char *key)
{
	for (size_t i = 0; i < N_OPTIONS; i++) {
		if (prefix_len(&options[i]) == 0 && !strcmp(key, options[i].name)) {
			return &options[i];
		}
	}
	/* The longest prefix: inbound_kafka.<property> before inbound_<name>. */
	const struct option_spec *best = NULL;
	for (size_t i = 0; i < N_OPTIONS; i++) {
		size_t n = prefix_len(&options[i]);
		if (n > 0 && !strncmp(key, options[i].name, n) &&
		    (best == NULL || n > prefix_len(best))) {
			best = &options[i];
		}
	}
	return best;
}

/* ---- an unknown option --------------------------------------------------------------- */

/* The edit distance (Levenshtein) of a and b, ignoring case; 3 when it is more than 2. */
static int distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	int row[NAME_MAX_LEN * 2 + 1];

	if (lb >= sizeof(row) / sizeof(row[0]) || la > lb + 2 || lb > la + 2) {
		return 3;
	}
	for (size_t j = 0; j <= lb; j++) {
		row[j] = (int)j;
	}
	for (size_t i = 1; i <= la; i++) {
		int diag = row[0], best;
		row[0] = (int)i;
		best = row[0];
		for (size_t j = 1; j <= lb; j++) {
			int up = row[j];
			int cost = tolower((unsigned char)a[i - 1]) !=
				   tolower((unsigned char)b[j - 1]);
			int d = diag + cost;
			if (up + 1 < d) {
				d = up + 1;
			}
			if (row[j - 1] + 1 < d) {
				d = row[j - 1] + 1;
			}
			diag = up;
			row[j] = d;
			if (d < best) {
				best = d;
			}
		}
		if (best > 2) {
			return 3;
		}
	}
	return row[lb] > 2 ? 3 : row[lb];
}

/*
 * The option an unknown key was probably meant to be, into buf: a name at most 2 edits
 * away (bootstrap_server), a prefix option for its prefix (route, kafka), or a prefix
 * with another separator, as 1 edit (kafka_linger.ms: kafka.linger.ms). false: none.
 */
static bool closest(const char *key, char *buf, size_t size)
{
	const struct option_spec *sep = NULL; /* a prefix with another separator */
	int best = 3;

	for (size_t i = 0; i < N_OPTIONS; i++) {
		const struct option_spec *o = &options[i];
		size_t n = prefix_len(o);
		char bare[NAME_MAX_LEN + 1];
		int d;

		if (n == 0) {
			d = distance(key, o->name);
		} else {
			snprintf(bare, sizeof(bare), "%.*s", (int)(n - 1), o->name);
			d = distance(key, bare); /* route, kafka: the name without what follows */
		}
		if (d < best) {
			best = d;
			snprintf(buf, size, "%s", o->name);
		}
		if (n > 1 && strlen(key) > n && !strncmp(key, o->name, n - 1) &&
		    strchr("._-", key[n - 1])) {
			sep = o;
		}
	}
	if (sep != NULL && best > 1) {
		size_t n = prefix_len(sep);
		snprintf(buf, size, "%.*s%s", (int)n, sep->name, key + n);
		return true;
	}
	return best <= 2;
}

static int unknown_option(const char *key, char *errstr, size_t errstr_size)
{
	char known[4096], near[256];
	size_t n = 0;

	known[0] = '\0';
	for (size_t i = 0; i < N_OPTIONS && n < sizeof(known); i++) {
		n += (size_t)snprintf(known + n, sizeof(known) - n, "%s%s", i ? ", " : "",
				      options[i].name);
	}
	if (closest(key, near, sizeof(near))) {
		FAIL("%s: unknown option, did you mean plugin_opt_%s? (known: %s)", key, near,
		     known);
	}
	FAIL("%s: unknown option (known: %s)", key, known);
}

/* ---- after every option -------------------------------------------------------------- */

/* What opt needs and cfg does not have, as the end of the error message; NULL: nothing. */
static const char *unmet(const struct option_spec *opt, const struct mqk_config *cfg)
{
	bool journal = cfg->durability == MQK_DURABILITY_JOURNAL;
	bool commands = cfg->commands.topic != NULL;

	switch (opt->needs) {
	case NEEDS_NOTHING:
		break;
	case NEEDS_JOURNAL:
		return journal ? NULL : "only used with plugin_opt_durability journal";
	case NEEDS_MEMORY:
		return !journal ? NULL
				: "only used with durability memory (the journal's size is "
				  "journal_max_mb)";
	case NEEDS_CREATE_TOPICS:
		return cfg->create_topics ? NULL
					  : "only used when the plugin creates topics: add "
					    "plugin_opt_create_topics true, or remove it";
	case NEEDS_INBOUND:
		return cfg->inbound.count > 0 ? NULL
					      : "only used with inbound routes: add "
						"plugin_opt_inbound_<name> <kafka-topic> -> "
						"<mqtt-topic>, or remove it";
	case NEEDS_METRICS:
		return cfg->metrics_listen != NULL ? NULL
						   : "only used by /healthz: add "
						     "plugin_opt_metrics_listen <host:port>, "
						     "or remove it";
	case NEEDS_TARGETED:
		if (commands && cfg->commands.mode != MQK_CMD_TARGETED) {
			return "only used with plugin_opt_commands_mode targeted";
		}
		/* fall through */
	case NEEDS_HOPS:
		if (commands && cfg->commands.mode == MQK_CMD_BROADCAST) {
			return "only used with plugin_opt_commands_mode targeted or redistribute";
		}
		/* fall through */
	case NEEDS_REDISTRIBUTE:
		if (opt->needs == NEEDS_REDISTRIBUTE && commands &&
		    cfg->commands.mode != MQK_CMD_REDISTRIBUTE) {
			return "only used with plugin_opt_commands_mode redistribute";
		}
		/* fall through */
	case NEEDS_COMMANDS:
		return commands ? NULL
				: "only used with plugin_opt_commands_topic (the Kafka topic of "
				  "commands for devices): add it, or remove this option";
	}
	return NULL;
}

/* Every option given whose needs are met? The first one whose are not is the error. */
static int check_needs(const struct mqk_config *cfg, const bool *seen, char *errstr,
		       size_t errstr_size)
{
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const char *why = seen[i] ? unmet(&options[i], cfg) : NULL;
		size_t n = prefix_len(&options[i]);
		if (why != NULL && n > 0) {
			FAIL("%.*s*: %s", (int)n, options[i].name, why); /* commands_kafka.* */
		}
		if (why != NULL) {
			FAIL("%s: %s", options[i].name, why);
		}
	}
	return 0;
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

/*
 * Redistribute mode: commands_topic_broker (checked as a topic with a sample broker id,
 * kept with {broker} for the others), this broker's own topic, and the group of the
 * back-channel and presence consumer: <commands_group>-<broker_id>.
 */
static int finish_redistribute(struct mqk_config *cfg, char *errstr, size_t errstr_size)
{
	struct mqk_cmd_config *cc = &cfg->commands;
	const char *group = cc->group ? cc->group : DEFAULT_SHARED_GROUP;
	size_t n = strlen(group) + 1 + strlen(cfg->broker_id) + 1;

	if (cc->broker_topic == NULL && (cc->broker_topic = strdup(DEFAULT_BROKER_TOPIC)) == NULL) {
		FAIL("commands_topic_broker: out of memory");
	}
	if ((cc->own_topic = strdup(cc->broker_topic)) == NULL) {
		FAIL("commands_topic_broker: out of memory");
	}
	if (finish_topic(&cc->own_topic, NULL, "commands_topic_broker", cfg->broker_id, errstr,
			 errstr_size)) {
		return -1;
	}
	if (!strcmp(cc->own_topic, cc->topic)) {
		FAIL("commands_topic_broker: '%s' is commands_topic itself: a broker's own "
		     "topic must be another",
		     cc->own_topic);
	}
	cc->own_group = malloc(n);
	if (cc->own_group == NULL) {
		FAIL("commands_group: out of memory");
	}
	snprintf(cc->own_group, n, "%s-%s", group, cfg->broker_id);
	return 0;
}

/* The command path's defaults and {broker}, once check_needs passed. */
static int finish_commands(struct mqk_config *cfg, char *errstr, size_t errstr_size)
{
	struct mqk_cmd_config *cc = &cfg->commands;
	bool targeted = cc->mode == MQK_CMD_TARGETED;
	bool redistribute = cc->mode == MQK_CMD_REDISTRIBUTE;

	if (cc->topic == NULL) {
		cc->mode = MQK_CMD_OFF;
		return 0;
	}
	if (targeted && !strstr(cc->topic, "{broker}")) {
		FAIL("commands_topic: '%s': in targeted mode each broker reads its own topic: put "
		     "{broker} in it, e.g. mqtt-commands.{broker}",
		     cc->topic);
	}
	if (redistribute && strstr(cc->topic, "{broker}")) {
		FAIL("commands_topic: '%s': in redistribute mode the brokers share one topic and "
		     "group: leave {broker} out of it (each broker's own topic is "
		     "commands_topic_broker)",
		     cc->topic);
	}
	if (redistribute && cc->broker_topic != NULL && !strstr(cc->broker_topic, "{broker}")) {
		FAIL("commands_topic_broker: '%s': each broker needs a topic of its own: put "
		     "{broker} in it, e.g. mqtt-commands.{broker}",
		     cc->broker_topic);
	}
	if (cc->target != NULL && !strncmp(cc->target, "header:", 7) &&
	    (cc->target_header = strdup(cc->target + 7)) == NULL) {
		FAIL("commands_target: out of memory");
	}
	if (cc->wake == NULL && (cc->wake = strdup(DEFAULT_WAKE)) == NULL) {
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
	if (redistribute && finish_redistribute(cfg, errstr, errstr_size)) {
		return -1;
	}
	char *group = expand_broker(cc->group ? cc->group
					      : redistribute ? DEFAULT_SHARED_GROUP
							     : DEFAULT_COMMANDS_GROUP,
				    cfg->broker_id);
	if (group == NULL) {
		FAIL("commands_group: out of memory");
	}
	free(cc->group);
	cc->group = group;
	if (redistribute &&
	    (finish_topic(&cc->dead_letter_topic, DEFAULT_DEAD_LETTER_TOPIC,
			  "commands_dead_letter_topic", cfg->broker_id, errstr, errstr_size) ||
	     finish_topic(&cc->presence_topic, DEFAULT_PRESENCE_TOPIC, "presence_topic",
			  cfg->broker_id, errstr, errstr_size))) {
		return -1;
	}
	if (targeted &&
	    (finish_topic(&cc->return_topic, DEFAULT_RETURN_TOPIC, "commands_return_topic",
			  cfg->broker_id, errstr, errstr_size) ||
	     finish_topic(&cc->dead_letter_topic, DEFAULT_DEAD_LETTER_TOPIC,
			  "commands_dead_letter_topic", cfg->broker_id, errstr, errstr_size) ||
	     finish_topic(&cc->presence_topic, DEFAULT_PRESENCE_TOPIC, "presence_topic",
			  cfg->broker_id, errstr, errstr_size))) {
		return -1;
	}
	if (!targeted && !redistribute && cc->presence_topic != NULL &&
	    finish_topic(&cc->presence_topic, NULL, "presence_topic", cfg->broker_id, errstr,
			 errstr_size)) {
		return -1;
	}
	return 0;
}

/* The inbound path's defaults and {broker}, once check_needs passed. */
static int finish_inbound(struct mqk_config *cfg, char *errstr, size_t errstr_size)
{
	struct mqk_inbound_config *ic = &cfg->inbound;

	if (ic->count == 0) {
		return 0;
	}
	if (ic->wake == NULL && (ic->wake = strdup(DEFAULT_WAKE)) == NULL) {
		FAIL("inbound_wake: out of memory");
	}
	char *group = expand_broker(ic->group ? ic->group : DEFAULT_INBOUND_GROUP, cfg->broker_id);
	if (group == NULL) {
		FAIL("inbound_group: out of memory");
	}
	free(ic->group);
	ic->group = group;
	if (cfg->commands.topic != NULL && !strcmp(group, cfg->commands.group)) {
		FAIL("inbound_group: '%s' is commands_group too: the inbound consumer needs a "
		     "group of its own",
		     group);
	}
	return 0;
}

/* The journal's segment size and directory, once check_needs passed. */
static int finish_durability(struct mqk_config *cfg, bool segment_given, char *errstr,
			     size_t errstr_size)
{
	if (!segment_given && cfg->journal_segment_mb > cfg->journal_max_mb / 2) {
		cfg->journal_segment_mb = cfg->journal_max_mb / 2;
	}
	if (cfg->journal_segment_mb > cfg->journal_max_mb / 2) {
		FAIL("journal_segment_mb: %d is more than half of journal_max_mb (%d): the journal "
		     "needs two segments at least",
		     cfg->journal_segment_mb, cfg->journal_max_mb);
	}
	if (cfg->durability == MQK_DURABILITY_JOURNAL && cfg->journal_dir == NULL) {
		size_t n = strlen(DEFAULT_JOURNAL_DIR) + strlen(cfg->broker_id) + 1;
		cfg->journal_dir = malloc(n);
		if (cfg->journal_dir == NULL) {
			FAIL("journal_dir: out of memory");
		}
		snprintf(cfg->journal_dir, n, "%s%s", DEFAULT_JOURNAL_DIR, cfg->broker_id);
	}
	return 0;
}

/* One plugin_opt_<key> <value> line: its table entry's parser; seen[i]: options[i] given. */
static int parse_one(struct mqk_config *cfg, const char *key, char *value, bool *seen, char *errstr,
		     size_t errstr_size)
{
	const struct option_spec *opt;

	if (*value == '\0') {
		FAIL("%s: empty value", key);
	}
	opt = lookup(key);
	if (opt == NULL) {
		return unknown_option(key, errstr, errstr_size);
	}
	if (seen[opt - options] && !opt->repeat) {
		if (opt->parse == parse_text) {
			FAIL("%s: given twice ('%s' and '%s')", key, *FIELD_AT(cfg, opt, char *),
			     value);
		}
		FAIL("%s: given twice", key);
	}
	seen[opt - options] = true;
	return opt->parse(cfg, opt, key, value, errstr, errstr_size);
}

/* routes_file: every line through options__parse_route_line (below). */
#define MAX_FILE_BYTES (16 << 20) /* a routes file; thousands of routes take far less */

int options__read_routes_file(const char *path, const struct mqk_config *conf,
			      struct mqk_config *out, char *errstr, size_t errstr_size)
{
	FILE *f = fopen(path, "r");
	char *line = NULL, why[1024];
	size_t size = 0;
	int lineno = 0, rc = 0;

	struct stat st;

	if (f == NULL) {
		snprintf(errstr, errstr_size, "routes_file %s: cannot open: %s", path,
			 strerror(errno));
		return -1;
	}
	if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_FILE_BYTES) {
		snprintf(errstr, errstr_size,
			 "routes_file %s: not a regular file of at most %d MiB", path,
			 MAX_FILE_BYTES >> 20);
		fclose(f);
		return -1;
	}
	while (getline(&line, &size, f) >= 0) {
		char *p = line, *end;

		lineno++;
		while (isspace((unsigned char)*p)) {
			p++;
		}
		end = p + strlen(p);
		while (end > p && isspace((unsigned char)end[-1])) {
			*--end = '\0';
		}
		if (*p == '\0' || *p == '#') {
			continue;
		}
		int before = out->route_count;
		if (options__parse_route_line(out, p, why, sizeof(why))) {
			snprintf(errstr, errstr_size, "routes_file %s:%d: %s", path, lineno, why);
			rc = -1;
			break;
		}
		for (int i = 0; conf && out->route_count > before && i < conf->conf_route_count;
		     i++) {
			const char *name = out->routes[before].name;
			if (!strcmp(conf->routes[i].name, name)) {
				snprintf(errstr, errstr_size,
					 "routes_file %s:%d: route '%s' is also "
					 "plugin_opt_route_%s in mosquitto.conf: a route is "
					 "defined in one place",
					 path, lineno, name, name);
				rc = -1;
				break;
			}
		}
		if (rc) {
			break;
		}
	}
	if (rc == 0 && ferror(f)) {
		snprintf(errstr, errstr_size, "routes_file %s: cannot read: %s", path,
			 strerror(errno));
		rc = -1;
	}
	for (int i = 0; rc == 0 && i < out->route_count; i++) {
		out->routes[i].from_file = true;
	}
	free(line);
	fclose(f);
	return rc;
}

/* routes_file at start-up: its routes and excludes after mosquitto.conf's. */
static int merge_routes_file(struct mqk_config *cfg, char *errstr, size_t errstr_size)
{
	struct mqk_config file = {0};
	struct mqk_route *routes;

	if (options__read_routes_file(cfg->routes_file, cfg, &file, errstr, errstr_size)) {
		char why[1024];
		snprintf(why, sizeof(why), "%s", errstr); /* "routes_file <path>:<line>: ..." */
		options__free(&file);
		FAIL("%s", why);
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
	if (file.route_count > 0) {
		memcpy(&cfg->routes[cfg->route_count], file.routes,
		       sizeof(*routes) * (size_t)file.route_count);
	}
	cfg->route_count += file.route_count;
	if (file.exclude_count > 0) {
		memcpy(&cfg->excludes[cfg->exclude_count], file.excludes,
		       sizeof(*excludes) * (size_t)file.exclude_count);
	}
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
		rc = parse_route(cfg, NULL, key, value, errstr, errstr_size);
	} else {
		rc = parse_exclude(cfg, NULL, key, value, errstr, errstr_size);
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
	bool seen[N_OPTIONS] = {false};

	for (size_t i = 0; i < N_OPTIONS; i++) {
		const struct option_spec *o = &options[i];
		if (o->parse == parse_number || o->parse == parse_choice ||
		    o->parse == parse_fsync) {
			*FIELD_AT(cfg, o, int) = o->dflt;
		} else if (o->parse == parse_bool) {
			*FIELD_AT(cfg, o, bool) = o->dflt;
		}
	}
	for (int i = 0; i < opt_count; i++) {
		const char *key = opts[i].key ? opts[i].key : "";
		char *value = trimmed(opts[i].value);
		int rc;

		if (value == NULL) {
			FAIL("%s: out of memory", key);
		}
		rc = parse_one(cfg, key, value, seen, errstr, errstr_size);
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
	if (check_needs(cfg, seen, errstr, errstr_size)) {
		return -1;
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
	if (finish_durability(cfg, seen[lookup("journal_segment_mb") - options], errstr,
			      errstr_size)) {
		return -1;
	}
	if (finish_commands(cfg, errstr, errstr_size)) {
		return -1;
	}
	return finish_inbound(cfg, errstr, errstr_size);
}

bool options__doc(size_t i, struct mqk_option_doc *doc)
{
	const struct option_spec *o;

	if (i >= N_OPTIONS) {
		return false;
	}
	o = &options[i];
	memset(doc, 0, sizeof(*doc));
	doc->name = o->name;
	doc->table = o->commands_table ? "Commands" : "Configuration";
	doc->repeat = o->repeat;
	doc->number = o->parse == parse_number || o->parse == parse_fsync;
	doc->min = o->range ? 1 : o->min; /* range: 0 is refused, the range in words */
	doc->max = o->max;
	if (o->value != NULL) {
		snprintf(doc->value, sizeof(doc->value), "%s", o->value);
	} else if (o->choices != NULL) {
		list_choices(o->choices, "|", "|", doc->value, sizeof(doc->value));
	} else {
		snprintf(doc->value, sizeof(doc->value), "%d..%d", o->min, o->max);
	}
	if (o->shown != NULL) {
		snprintf(doc->dflt, sizeof(doc->dflt), "%s", o->shown);
	} else if (o->choices != NULL) {
		for (int c = 0; o->choices[c].name != NULL; c++) {
			if (o->choices[c].value == o->dflt) {
				snprintf(doc->dflt, sizeof(doc->dflt), "%s", o->choices[c].name);
			}
		}
	} else {
		snprintf(doc->dflt, sizeof(doc->dflt), "%d", o->dflt);
	}
	return true;
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
	free(cfg->metrics_listen);
	free(cfg->metrics_textfile);
	struct mqk_cmd_config *cc = &cfg->commands;
	free(cc->topic);
	free(cc->group);
	free(cc->target);
	free(cc->target_header);
	template__free(&cc->mqtt_topic);
	free(cc->return_topic);
	free(cc->dead_letter_topic);
	free(cc->presence_topic);
	free(cc->broker_topic);
	free(cc->own_topic);
	free(cc->own_group);
	free(cc->wake);
	for (int i = 0; i < cc->kafka_prop_count; i++) {
		free(cc->kafka_props[i].name);
		free(cc->kafka_props[i].value);
	}
	free(cc->kafka_props);
	struct mqk_inbound_config *ic = &cfg->inbound;
	for (int i = 0; i < ic->count; i++) {
		free(ic->routes[i].name);
		free(ic->routes[i].kafka_topic);
		template__free(&ic->routes[i].mqtt_topic);
	}
	free(ic->routes);
	free(ic->group);
	free(ic->wake);
	for (int i = 0; i < ic->kafka_prop_count; i++) {
		free(ic->kafka_props[i].name);
		free(ic->kafka_props[i].value);
	}
	free(ic->kafka_props);
	free(cfg->bootstrap_servers);
	free(cfg->broker_id);
	free(cfg->journal_dir);
	memset(cfg, 0, sizeof(*cfg));
}
