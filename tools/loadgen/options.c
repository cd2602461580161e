/*
 * options.c - mqk-loadgen's command line: getopt_long into struct options, with every
 * number, host, pattern and template checked before anything connects. A bad argument
 * is one line, "Error: --option: 'value' is not ...", and exit status 1 (tools/lib/cli.h,
 * the error style of every tool).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <mosquitto.h>

#include "mosquitto_kafka.h"
#include "mqk_payload.h"
#include "cli.h"
#include "loadgen.h"

#define DEFAULT_HOST "127.0.0.1:1883"
#define DEFAULT_DEVICES 10
#define DEFAULT_ID_PATTERN "ue-%05d"
#define DEFAULT_THREADS 2
#define DEFAULT_QOS 1
#define DEFAULT_RATE 1.0
#define DEFAULT_DURATION 10.0 /* when neither --duration nor --count */
#define DEFAULT_SIZE 64
#define DEFAULT_TOPIC "devices/{id}/data"
#define DEFAULT_COMMANDS "devices/{id}/commands"
#define DEFAULT_ANSWERS "devices/{id}/answers"
#define DEFAULT_KEEPALIVE 60
#define DEFAULT_MAX_INFLIGHT 20
#define DEFAULT_MAX_QUEUED 100
#define DEFAULT_DRAIN 30.0
#define DEFAULT_CONNECT_TIMEOUT 30.0
#define DEFAULT_SESSION_EXPIRY UINT32_MAX

#define MAX_DEVICES 1000000LL
#define MAX_THREADS 64
#define MAX_HOSTS 64
#define MAX_SIZE (16 * 1024 * 1024)
#define MAX_RATE 1000000.0
#define MAX_SECONDS 31536000.0 /* a year */
#define MAX_FIRST 1000000000000LL
#define MAX_COUNT 1000000000000LL
/* Data mids and answer mids share libmosquitto's 16-bit space: stay well inside it. */
#define MAX_QUEUED 30000

enum {
	OPT_HOST = 256,
	OPT_FIRST,
	OPT_TOTAL_RATE,
	OPT_RAMP_UP,
	OPT_COMMANDS,
	OPT_ANSWERS,
	OPT_PASSWORD,
	OPT_CLEAN,
	OPT_SESSION_EXPIRY,
	OPT_MAX_INFLIGHT,
	OPT_MAX_QUEUED,
	OPT_DRAIN,
	OPT_CONNECT_TIMEOUT,
};

static void usage(FILE *fp)
{
	fprintf(fp,
		"Usage: %s [options]\n"
		"\n"
		"Simulates devices (phones, sensors) that each keep an MQTT connection and\n"
		"publish numbered, timestamped payloads (include/mqk_payload.h) at a steady rate,\n"
		"and answer commands. Prints a JSON summary on stdout at the end.\n"
		"\n"
		"Devices and connections:\n"
		"      --host <h:p[,h:p..]>     Brokers or HAProxy; devices spread round-robin\n"
		"                               (default %s)\n"
		"  -n, --devices <n>            Number of devices, 1..%lld (default %d)\n"
		"  -i, --id-pattern <pattern>   Client ids, printf-like with one integer\n"
		"                               conversion (%%d %%i %%u %%x %%X, flags 0 and -, "
		"width)\n"
		"                               (default %s)\n"
		"      --first <n>              Number of the first device (default 0)\n"
		"  -T, --threads <n>            Threads, each with its own event loop, 1..%d\n"
		"                               (default %d)\n"
		"  -P, --protocol <311|5>       MQTT version (default 311)\n"
		"  -u, --username <name>        Username for every device\n"
		"      --password <secret>      Password for every device\n"
		"  -k, --keepalive <s>          Keepalive, 0 or 5..65535 seconds (default %d)\n"
		"      --clean                  Clean sessions (default: persistent sessions; v5:\n"
		"                               clean start 0 with --session-expiry)\n"
		"      --session-expiry <s>     MQTT v5 session expiry interval\n"
		"                               (default %u, never)\n"
		"      --ramp-up <s>            Spread the first connects over <s> seconds\n"
		"                               (default 0)\n"
		"      --connect-timeout <s>    A device that cannot (re)connect for <s> seconds\n"
		"                               gives up (default %g)\n"
		"\n"
		"Publishing:\n"
		"  -t, --topic <template>       Data topic, {id} is the client id\n"
		"                               (default %s)\n"
		"  -Q, --qos <0|1|2>            QoS of data messages (default %d)\n"
		"  -r, --rate <msg/s>           Messages per second per device, 0..%g\n"
		"                               (default %g)\n"
		"  -R, --total-rate <msg/s>     Messages per second of all devices together\n"
		"                               (instead of --rate)\n"
		"  -d, --duration <s>           Publish for <s> seconds after the ramp-up\n"
		"                               (default %g unless --count is given)\n"
		"  -c, --count <n>              Messages per device; ends the run when every\n"
		"                               device has sent them (with -d: what comes first)\n"
		"  -s, --size <bytes>           Payload size, at least 20 + the id's length\n"
		"                               (the header), at most %d (default %d)\n"
		"      --max-inflight <n>       QoS>0 messages in flight per device, 1..65535\n"
		"                               (default %d, mosquitto's max_inflight_messages)\n"
		"      --max-queued <n>         A device with <n> unacknowledged QoS>0 messages\n"
		"                               skips its turns, 1..%d (default %d)\n"
		"      --drain <s>              After publishing, wait up to <s> seconds for the\n"
		"                               acknowledgements (default %g)\n"
		"\n"
		"Commands:\n"
		"      --commands <template>    Command topic each device subscribes to (QoS 1);\n"
		"                               '' disables commands\n"
		"                               (default %s)\n"
		"      --answers <template>     Answer topic when a command has no MQTT v5\n"
		"                               response topic; '' answers only those that do\n"
		"                               (default %s)\n"
		"\n"
		"Other:\n"
		"  -q                           Quiet: no progress line, only errors on stderr\n"
		"  -v                           Verbose: every connection event on stderr\n"
		"  -V, --version                Print versions and exit\n"
		"  -h, --help                   Print this help and exit\n"
		"\n"
		"A progress line is redrawn on stderr once a second when it is a terminal.\n"
		"SIGINT/SIGTERM stop publishing, drain and print the summary (twice: no drain).\n"
		"Exit status 0 when every device connected, no publish failed and every QoS>0\n"
		"message was acknowledged; 1 otherwise, or on a bad argument.\n"
		"\n"
		"Example:\n"
		"  %s --host 127.0.0.1:1883 -n 2000 --ramp-up 5 -r 1 -d 60 -Q 1\n",
		LOADGEN_NAME, DEFAULT_HOST, MAX_DEVICES, DEFAULT_DEVICES, DEFAULT_ID_PATTERN,
		MAX_THREADS, DEFAULT_THREADS, DEFAULT_KEEPALIVE, DEFAULT_SESSION_EXPIRY,
		DEFAULT_CONNECT_TIMEOUT, DEFAULT_TOPIC, DEFAULT_QOS, MAX_RATE, DEFAULT_RATE,
		DEFAULT_DURATION, MAX_SIZE, DEFAULT_SIZE, DEFAULT_MAX_INFLIGHT, MAX_QUEUED,
		DEFAULT_MAX_QUEUED, DEFAULT_DRAIN, DEFAULT_COMMANDS, DEFAULT_ANSWERS, LOADGEN_NAME);
}

static void print_versions(void)
{
	int major, minor, revision;

	mosquitto_lib_version(&major, &minor, &revision);
	printf("%s %s (mosquitto-kafka)\n", LOADGEN_NAME, MQK_VERSION);
	printf("libmosquitto %d.%d.%d (built against %d.%d.%d)\n", major, minor, revision,
	       LIBMOSQUITTO_MAJOR, LIBMOSQUITTO_MINOR, LIBMOSQUITTO_REVISION);
	printf("cJSON %s\n", cJSON_Version());
	printf("payload codec version %d\n", MQK_PAYLOAD_VERSION);
}

/* A whole decimal number in min..max (cli.h), or the usage error "<what> (min..max)". */
static long long ll_arg(const char *name, const char *s, long long min, long long max,
			const char *what)
{
	uint64_t v;

	if (!cli_parse_uint(s, (uint64_t)min, (uint64_t)max, &v)) {
		cli_usage_exit("%s: '%s' is not %s (%lld..%lld)", name, s, what, min, max);
	}
	return (long long)v;
}

static int int_arg(const char *name, const char *s, int min, int max)
{
	return (int)ll_arg(name, s, min, max, "a whole number");
}

static double seconds_arg(const char *name, const char *s, double min, double max)
{
	double v;

	if (!cli_parse_seconds(s, min, max, &v)) {
		cli_usage_exit("%s: '%s' is not a number of seconds in %g..%g", name, s, min, max);
	}
	return v;
}

static double rate_arg(const char *name, const char *s, double max)
{
	double v;

	if (!cli_parse_seconds(s, 0, max, &v)) {
		cli_usage_exit("%s: '%s' is not a number of messages per second (0..%g)", name, s,
			       max);
	}
	return v;
}

/* "host:port,host:port,[v6]:port"; a missing port is 1883 (cli_parse_hostport). */
static void parse_hosts(struct options *opt, const char *arg)
{
	const char *item = arg;
	int n = 1;

	for (const char *p = arg; *p; p++) {
		n += *p == ',';
	}
	if (n > MAX_HOSTS) {
		cli_usage_exit("--host: %d hosts, at most %d", n, MAX_HOSTS);
	}
	opt->hosts = calloc((size_t)n, sizeof(*opt->hosts));
	if (opt->hosts == NULL) {
		cli_die("out of memory");
	}
	opt->host_count = 0;
	for (;;) {
		size_t len = strcspn(item, ",");
		char name[256];
		struct host *h = &opt->hosts[opt->host_count++];
		const char *why;

		if (len == 0) {
			cli_usage_exit("--host: '%s' has an empty host (expected "
				       "host:port[,host:port...])",
				       arg);
		}
		why = cli_parse_hostport(item, len, 1883, name, sizeof(name), &h->port);
		if (why != NULL) {
			cli_usage_exit("--host: '%.*s': %s", (int)len, item, why);
		}
		h->name = strdup(name);
		if (h->name == NULL) {
			cli_die("out of memory");
		}
		if (item[len] == '\0') {
			break;
		}
		item += len + 1;
	}
}

/* Copies s[0..len) into a new string with "%%" turned into "%". */
static char *unescape(const char *s, size_t len)
{
	char *out = malloc(len + 1);
	size_t j = 0;

	if (out == NULL) {
		cli_die("out of memory");
	}
	for (size_t i = 0; i < len; i++) {
		out[j++] = s[i];
		if (s[i] == '%' && i + 1 < len && s[i + 1] == '%') {
			i++;
		}
	}
	out[j] = '\0';
	return out;
}

static void parse_id_pattern(struct id_pattern *p, const char *src)
{
	const char *spec = NULL, *spec_end = NULL;
	int conversions = 0;

	memset(p, 0, sizeof(*p));
	p->source = (char *)src;
	for (const char *s = src; *s; s++) {
		const char *start = s;
		if (*s != '%') {
			continue;
		}
		s++;
		if (*s == '%') {
			continue;
		}
		while (*s == '0' || *s == '-') {
			if (*s == '0') {
				p->zero_pad = true;
			} else {
				p->left = true;
			}
			s++;
		}
		while (*s >= '0' && *s <= '9') {
			p->width = p->width * 10 + (*s - '0');
			if (p->width > 64) {
				cli_usage_exit("--id-pattern: '%s': a width of at most 64, please",
					       src);
			}
			s++;
		}
		if (*s == '\0' || strchr("diuxX", *s) == NULL) {
			cli_usage_exit("--id-pattern: '%s': '%.*s' is not an integer conversion "
				       "(%%d, %%i, %%u, %%x or %%X with flags 0 or - and a width, "
				       "e.g. ue-%%05d)",
				       src, (int)(s - start + (*s != '\0')), start);
		}
		p->conv = *s;
		conversions++;
		spec = start;
		spec_end = s + 1;
	}
	if (conversions != 1) {
		cli_usage_exit("--id-pattern: '%s' has %d integer conversions, it needs exactly "
			       "one (e.g. ue-%%05d)",
			       src, conversions);
	}
	p->prefix = unescape(src, (size_t)(spec - src));
	p->suffix = unescape(spec_end, strlen(spec_end));
}

int options__format_id(const struct id_pattern *p, long long number, char *buf, size_t size)
{
	char digits[32];
	int n, pad, len;
	size_t plen = strlen(p->prefix), slen = strlen(p->suffix);

	if (p->conv == 'x') {
		n = snprintf(digits, sizeof(digits), "%llx", (unsigned long long)number);
	} else if (p->conv == 'X') {
		n = snprintf(digits, sizeof(digits), "%llX", (unsigned long long)number);
	} else {
		n = snprintf(digits, sizeof(digits), "%lld", number);
	}
	pad = p->width > n ? p->width - n : 0;
	len = (int)plen + pad + n + (int)slen;
	if ((size_t)len + 1 > size) {
		return -1;
	}
	memcpy(buf, p->prefix, plen);
	if (p->left) {
		memcpy(buf + plen, digits, (size_t)n);
		memset(buf + plen + n, ' ', (size_t)pad);
	} else {
		memset(buf + plen, p->zero_pad ? '0' : ' ', (size_t)pad);
		memcpy(buf + plen + pad, digits, (size_t)n);
	}
	memcpy(buf + plen + pad + n, p->suffix, slen + 1);
	return len;
}

size_t options__payload_size(const struct options *opt, size_t id_len)
{
	size_t min = mqk_payload_min_size(id_len);
	return opt->size > min ? opt->size : min;
}

/* Checks what a template expands to, for the client id `id`. */
static void check_topic(const char *name, const char *tmpl, const char *id, bool filter)
{
	char *t = expand_id(tmpl, id);
	int rc;

	if (t == NULL) {
		cli_die("out of memory");
	}
	if (*t == '\0') {
		cli_usage_exit("%s: '%s' is empty", name, tmpl);
	}
	if (strlen(t) > 65535) {
		cli_usage_exit("%s: '%s' is longer than MQTT allows (65535 bytes)", name, tmpl);
	}
	rc = filter ? mosquitto_sub_topic_check(t) : mosquitto_pub_topic_check(t);
	if (rc == MOSQ_ERR_SUCCESS) {
		rc = mosquitto_validate_utf8(t, (int)strlen(t));
	}
	if (rc != MOSQ_ERR_SUCCESS) {
		cli_usage_exit("%s: '%s' gives '%s' for %s, which is not a valid MQTT topic%s",
			       name, tmpl, t, id,
			       filter ? " filter" : " to publish to (no + or #)");
	}
	free(t);
}

static const struct option long_opts[] = {
	{"host", required_argument, NULL, OPT_HOST},
	{"devices", required_argument, NULL, 'n'},
	{"id-pattern", required_argument, NULL, 'i'},
	{"first", required_argument, NULL, OPT_FIRST},
	{"threads", required_argument, NULL, 'T'},
	{"protocol", required_argument, NULL, 'P'},
	{"qos", required_argument, NULL, 'Q'},
	{"rate", required_argument, NULL, 'r'},
	{"total-rate", required_argument, NULL, 'R'},
	{"duration", required_argument, NULL, 'd'},
	{"count", required_argument, NULL, 'c'},
	{"size", required_argument, NULL, 's'},
	{"ramp-up", required_argument, NULL, OPT_RAMP_UP},
	{"topic", required_argument, NULL, 't'},
	{"commands", required_argument, NULL, OPT_COMMANDS},
	{"answers", required_argument, NULL, OPT_ANSWERS},
	{"username", required_argument, NULL, 'u'},
	{"password", required_argument, NULL, OPT_PASSWORD},
	{"keepalive", required_argument, NULL, 'k'},
	{"clean", no_argument, NULL, OPT_CLEAN},
	{"session-expiry", required_argument, NULL, OPT_SESSION_EXPIRY},
	{"max-inflight", required_argument, NULL, OPT_MAX_INFLIGHT},
	{"max-queued", required_argument, NULL, OPT_MAX_QUEUED},
	{"drain", required_argument, NULL, OPT_DRAIN},
	{"connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{NULL, 0, NULL, 0},
};

/* What the options that depend on others need once all are read. */
struct given {
	const char *host;
	const char *id_pattern;
	double total_rate; /* -1: not given */
	bool rate, duration, expiry;
};

static void set_defaults(struct options *opt, struct given *g)
{
	memset(opt, 0, sizeof(*opt));
	opt->devices = DEFAULT_DEVICES;
	opt->threads = DEFAULT_THREADS;
	opt->protocol = MQTT_PROTOCOL_V311;
	opt->qos = DEFAULT_QOS;
	opt->rate = DEFAULT_RATE;
	opt->size = DEFAULT_SIZE;
	opt->topic = DEFAULT_TOPIC;
	opt->commands = DEFAULT_COMMANDS;
	opt->answers = DEFAULT_ANSWERS;
	opt->keepalive = DEFAULT_KEEPALIVE;
	opt->session_expiry = DEFAULT_SESSION_EXPIRY;
	opt->max_inflight = DEFAULT_MAX_INFLIGHT;
	opt->max_queued = DEFAULT_MAX_QUEUED;
	opt->drain = DEFAULT_DRAIN;
	opt->connect_timeout = DEFAULT_CONNECT_TIMEOUT;
	opt->verbosity = 1;
	*g = (struct given){.host = DEFAULT_HOST, .id_pattern = DEFAULT_ID_PATTERN,
			    .total_rate = -1.0};
}

/* The load: devices, their ids, threads, rates, sizes and times. False: not one of them. */
static bool load_option(struct options *opt, struct given *g, int o)
{
	switch (o) {
	case 'n':
		opt->devices = ll_arg("--devices", optarg, 1, MAX_DEVICES, "a number of devices");
		return true;
	case 'i':
		g->id_pattern = optarg;
		return true;
	case OPT_FIRST:
		opt->first = ll_arg("--first", optarg, 0, MAX_FIRST, "a whole number");
		return true;
	case 'T':
		opt->threads = int_arg("--threads", optarg, 1, MAX_THREADS);
		return true;
	case 'r':
		opt->rate = rate_arg("--rate", optarg, MAX_RATE);
		g->rate = true;
		return true;
	case 'R':
		g->total_rate = rate_arg("--total-rate", optarg, MAX_RATE * 1000);
		return true;
	case 'd':
		opt->duration = seconds_arg("--duration", optarg, 0.001, MAX_SECONDS);
		g->duration = true;
		return true;
	case 'c':
		opt->count = ll_arg("--count", optarg, 1, MAX_COUNT, "a number of messages");
		return true;
	case 's':
		opt->size = (size_t)ll_arg("--size", optarg, 0, LLONG_MAX, "a number of bytes");
		if (opt->size > MAX_SIZE) {
			cli_usage_exit("--size: '%s' is too big (at most %d bytes)", optarg,
				       MAX_SIZE);
		}
		return true;
	case OPT_RAMP_UP:
		opt->ramp_up = seconds_arg("--ramp-up", optarg, 0, MAX_SECONDS);
		return true;
	case OPT_MAX_INFLIGHT:
		opt->max_inflight = int_arg("--max-inflight", optarg, 1, 65535);
		return true;
	case OPT_MAX_QUEUED:
		opt->max_queued = int_arg("--max-queued", optarg, 1, MAX_QUEUED);
		return true;
	case OPT_DRAIN:
		opt->drain = seconds_arg("--drain", optarg, 0, MAX_SECONDS);
		return true;
	}
	return false;
}

/* MQTT: brokers, protocol, QoS, topics, credentials, sessions. False: not one of them. */
static bool mqtt_option(struct options *opt, struct given *g, int o)
{
	switch (o) {
	case OPT_HOST:
		g->host = optarg;
		return true;
	case 'P':
		if (strcmp(optarg, "311") == 0 || strcmp(optarg, "3.1.1") == 0) {
			opt->protocol = MQTT_PROTOCOL_V311;
		} else if (strcmp(optarg, "5") == 0 || strcmp(optarg, "5.0") == 0) {
			opt->protocol = MQTT_PROTOCOL_V5;
		} else {
			cli_usage_exit("--protocol: '%s' is not 311 or 5", optarg);
		}
		return true;
	case 'Q':
		if (strcmp(optarg, "0") != 0 && strcmp(optarg, "1") != 0 &&
		    strcmp(optarg, "2") != 0) {
			cli_usage_exit("--qos: '%s' is not 0, 1 or 2", optarg);
		}
		opt->qos = optarg[0] - '0';
		return true;
	case 't':
		opt->topic = optarg;
		return true;
	case OPT_COMMANDS:
		opt->commands = optarg;
		return true;
	case OPT_ANSWERS:
		opt->answers = optarg;
		return true;
	case 'u':
		opt->username = optarg;
		return true;
	case OPT_PASSWORD:
		opt->password = optarg;
		return true;
	case 'k':
		opt->keepalive = int_arg("--keepalive", optarg, 0, 65535);
		if (opt->keepalive > 0 && opt->keepalive < 5) {
			cli_usage_exit("--keepalive: '%s' is not 0 or 5..65535 seconds "
				       "(libmosquitto's rule)",
				       optarg);
		}
		return true;
	case OPT_CLEAN:
		opt->clean = true;
		return true;
	case OPT_SESSION_EXPIRY:
		opt->session_expiry = (uint32_t)ll_arg("--session-expiry", optarg, 0, UINT32_MAX,
						       "a number of seconds");
		g->expiry = true;
		return true;
	case OPT_CONNECT_TIMEOUT:
		opt->connect_timeout = seconds_arg("--connect-timeout", optarg, 1, MAX_SECONDS);
		return true;
	}
	return false;
}

/* -q, -v, -V, -h and getopt's complaints. */
static void other_option(struct options *opt, int o, char **argv)
{
	switch (o) {
	case 'q':
		opt->verbosity = 0;
		return;
	case 'v':
		opt->verbosity++;
		return;
	case 'V':
		print_versions();
		exit(0);
	case 'h':
		usage(stdout);
		exit(0);
	default:
		exit(cli_getopt_fail(o, argv));
	}
}

/* The first and last client ids of the pattern, checked against the payload's limit. */
static void check_ids(struct options *opt, const char *id_pattern, char *first_id,
		      char *last_id, size_t id_size)
{
	parse_id_pattern(&opt->ids, id_pattern);
	if (options__format_id(&opt->ids, opt->first, first_id, id_size) < 0 ||
	    options__format_id(&opt->ids, opt->first + opt->devices - 1, last_id, id_size) < 0 ||
	    strlen(first_id) > MQK_PAYLOAD_MAX_DEVICE || strlen(last_id) > MQK_PAYLOAD_MAX_DEVICE) {
		cli_usage_exit("--id-pattern: '%s' makes client ids longer than %d bytes (the "
			       "payload's limit)",
			       id_pattern, MQK_PAYLOAD_MAX_DEVICE);
	}
	if (mosquitto_validate_utf8(first_id, (int)strlen(first_id)) != MOSQ_ERR_SUCCESS) {
		cli_usage_exit("--id-pattern: '%s' is not valid UTF-8", id_pattern);
	}
}

/* The options that depend on each other: rates, count and duration, session, password. */
static void check_together(struct options *opt, const struct given *g)
{
	if (g->total_rate >= 0) {
		if (g->rate) {
			cli_usage_exit("--rate and --total-rate: give one of them");
		}
		opt->rate = g->total_rate / (double)opt->devices;
		if (opt->rate > MAX_RATE) {
			cli_usage_exit("--total-rate: '%g' is more than %g per device",
				       g->total_rate, MAX_RATE);
		}
	}
	if (opt->count > 0 && opt->rate <= 0) {
		cli_usage_exit("--count: no message is ever sent at a rate of 0");
	}
	if (!g->duration && opt->count == 0) {
		opt->duration = DEFAULT_DURATION;
	}
	if (opt->protocol != MQTT_PROTOCOL_V5 && g->expiry) {
		cli_usage_exit("--session-expiry: MQTT v5 only (add --protocol 5)");
	}
	if (opt->password != NULL && opt->username == NULL) {
		cli_usage_exit("--password: needs --username");
	}
	if (opt->threads > opt->devices) {
		opt->threads = (int)opt->devices;
	}
}

/* Each topic template, for the first and the last device; "" turns commands/answers off. */
static void check_topics(struct options *opt, const char *first_id, const char *last_id)
{
	check_topic("--topic", opt->topic, first_id, false);
	check_topic("--topic", opt->topic, last_id, false);
	if (*opt->commands == '\0') {
		opt->commands = NULL;
	} else {
		check_topic("--commands", opt->commands, first_id, true);
		check_topic("--commands", opt->commands, last_id, true);
	}
	if (*opt->answers == '\0') {
		opt->answers = NULL;
	} else {
		check_topic("--answers", opt->answers, first_id, false);
		check_topic("--answers", opt->answers, last_id, false);
	}
}

void options__parse(struct options *opt, int argc, char **argv)
{
	struct given g;
	char first_id[300], last_id[300];
	int o;

	set_defaults(opt, &g);
	opterr = 0; /* our own messages (cli.h) */
	while ((o = getopt_long(argc, argv, ":n:i:T:P:Q:r:R:d:c:s:t:u:k:qvVh", long_opts, NULL)) !=
	       -1) {
		if (!load_option(opt, &g, o) && !mqtt_option(opt, &g, o)) {
			other_option(opt, o, argv);
		}
	}
	if (optind < argc) {
		cli_usage_exit("unexpected argument '%s'", argv[optind]);
	}
	parse_hosts(opt, g.host);
	check_ids(opt, g.id_pattern, first_id, last_id, sizeof(first_id));
	check_together(opt, &g);
	check_topics(opt, first_id, last_id);
	if (opt->size < mqk_payload_min_size(strlen(last_id)) && opt->verbosity > 0) {
		fprintf(stderr,
			"%s: --size %zu is less than a payload with id %s needs: %zu bytes are "
			"sent\n",
			LOADGEN_NAME, opt->size, last_id, mqk_payload_min_size(strlen(last_id)));
	}
	opt->progress = opt->verbosity > 0 && isatty(STDERR_FILENO);
}

void options__free(struct options *opt)
{
	for (int i = 0; i < opt->host_count; i++) {
		free(opt->hosts[i].name);
	}
	free(opt->hosts);
	free(opt->ids.prefix);
	free(opt->ids.suffix);
	memset(opt, 0, sizeof(*opt));
}
