/*
 * mqk-router - the "intelligent router" of targeted mode (docs/commands.md): reads the
 * controller's commands and sends each one to the broker that holds its device.
 *
 *   mqk-router -b kafka1:9092
 *   mqk-router -b kafka1:9092 --commands mqtt-commands --presence mqtt-presence \
 *              --broker-topic 'mqtt-commands.{broker}' --hold 30 -v
 *
 * Each mosquitto of the cluster runs the plugin with commands_mode targeted: it produces
 * presence records (which clients are connected to it) and consumes only its own commands
 * topic, mqtt-commands.<broker_id>. mqk-router keeps the cluster-wide presence table
 * (presence.c), reads the commands topic in a consumer group, and produces every command,
 * unchanged, to the topic of the broker holding its target (route.c). A command whose
 * device is connected nowhere waits (held.c) until a presence record shows it somewhere
 * or --hold runs out, then becomes a dead letter; a broker that finds its device gone
 * sends the command back here. A command's offset is committed only once Kafka has the
 * record produced for it (window.c): nothing is lost when the router stops or crashes,
 * and several routers of one group share the partitions.
 *
 * On SIGINT or SIGTERM it stops reading, waits up to --flush-timeout for what is in
 * flight, commits, and prints its counters as one JSON object on stdout; exit status 0,
 * or 1 on a fatal error or bad arguments.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <librdkafka/rdkafka.h>

#include <mosquitto_kafka.h>

#include "cli.h"
#include "kafka_topic.h"
#include "router.h"

#define DEFAULT_PRESENCE "mqtt-presence"
#define DEFAULT_COMMANDS "mqtt-commands"
#define DEFAULT_GROUP ROUTER_NAME
#define DEFAULT_BROKER_TOPIC "mqtt-commands.{broker}"
#define DEFAULT_DEAD_LETTER "mqtt-commands.dead"
#define DEFAULT_HOLD 30.0
#define DEFAULT_MAX_HELD 100000
#define DEFAULT_FLUSH_TIMEOUT 10.0
#define LIVE_EVERY_US 5000000

static volatile sig_atomic_t signalled; /* SIGINT or SIGTERM */

static void on_signal(int sig)
{
	(void)sig;
	signalled = 1;
}

/* ---- arguments ---- */

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: mqk-router -b SERVERS [options]\n"
		"\n"
		"Routes each command of --commands to the topic of the broker its target is\n"
		"connected to, from the brokers' presence records (targeted mode).\n"
		"\n"
		"  -b, --bootstrap SERVERS   Kafka bootstrap servers (required)\n"
		"      --presence TOPIC      the presence topic (default " DEFAULT_PRESENCE ")\n"
		"      --commands TOPIC      the controller's commands (default " DEFAULT_COMMANDS
		")\n"
		"  -g, --group ID            consumer group for --commands (default " DEFAULT_GROUP
		")\n"
		"      --broker-topic TPL    a broker's commands topic, {broker} its broker_id\n"
		"                            (default " DEFAULT_BROKER_TOPIC ")\n"
		"      --target key|header:NAME  where a command names its target client id\n"
		"                            (default key)\n"
		"      --hold S              hold a command for a device connected nowhere up to\n"
		"                            S seconds (default 30; fractions too)\n"
		"      --dead-letter TOPIC   where commands that cannot be routed go\n"
		"                            (default " DEFAULT_DEAD_LETTER ")\n"
		"      --max-held N          hold at most N commands; beyond, the oldest is a\n"
		"                            dead letter (default 100000)\n"
		"      --flush-timeout S     at exit, wait up to S seconds for Kafka to "
		"acknowledge\n"
		"                            what is in flight (default 10)\n"
		"  -X NAME=VALUE             a librdkafka property, for all three clients\n"
		"  -q, --quiet               no live line on stderr every 5 s\n"
		"  -v, --verbose             log every routing decision (twice: presence records "
		"too)\n"
		"  -h, --help                this text\n"
		"  -V, --version             versions\n");
}

static bool valid_topic(const char *s)
{
	return kafka_topic__is_legal(s, strlen(s));
}

/* --broker-topic: a topic name with {broker} at least once and no other placeholder. */
static bool valid_template(const char *tpl)
{
	char buf[512];
	size_t n = 0;
	bool has = false;

	for (const char *p = tpl; *p && n < sizeof(buf) - 2;) {
		if (strncmp(p, "{broker}", 8) == 0) {
			buf[n++] = 'b'; /* a broker id is [A-Za-z0-9._-] */
			p += 8;
			has = true;
		} else {
			buf[n++] = *p++;
		}
	}
	buf[n] = '\0';
	return has && valid_topic(buf);
}

enum {
	OPT_PRESENCE = 256,
	OPT_COMMANDS,
	OPT_BROKER_TOPIC,
	OPT_TARGET,
	OPT_HOLD,
	OPT_DEAD_LETTER,
	OPT_MAX_HELD,
	OPT_FLUSH_TIMEOUT,
};

static const struct option long_options[] = {
	{"bootstrap", required_argument, NULL, 'b'},
	{"presence", required_argument, NULL, OPT_PRESENCE},
	{"commands", required_argument, NULL, OPT_COMMANDS},
	{"group", required_argument, NULL, 'g'},
	{"broker-topic", required_argument, NULL, OPT_BROKER_TOPIC},
	{"target", required_argument, NULL, OPT_TARGET},
	{"hold", required_argument, NULL, OPT_HOLD},
	{"dead-letter", required_argument, NULL, OPT_DEAD_LETTER},
	{"max-held", required_argument, NULL, OPT_MAX_HELD},
	{"flush-timeout", required_argument, NULL, OPT_FLUSH_TIMEOUT},
	{"quiet", no_argument, NULL, 'q'},
	{"verbose", no_argument, NULL, 'v'},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{NULL, 0, NULL, 0},
};

/* Parses argv into s. Returns -1 to go on, else the exit status. */
static int parse(int argc, char **argv, struct settings *s)
{
	int c;

	s->presence_topic = DEFAULT_PRESENCE;
	s->commands_topic = DEFAULT_COMMANDS;
	s->group = DEFAULT_GROUP;
	s->broker_topic = DEFAULT_BROKER_TOPIC;
	s->dead_letter = DEFAULT_DEAD_LETTER;
	s->hold_s = DEFAULT_HOLD;
	s->max_held = DEFAULT_MAX_HELD;
	s->flush_timeout_s = DEFAULT_FLUSH_TIMEOUT;

	opterr = 0; /* our own error lines (cli.h) */
	while ((c = getopt_long(argc, argv, ":b:g:X:qvhV", long_options, NULL)) != -1) {
		switch (c) {
		case 'b':
			if (optarg[0] == '\0') {
				return cli_fail("--bootstrap: empty");
			}
			s->bootstrap = optarg;
			break;
		case OPT_PRESENCE:
			if (!valid_topic(optarg)) {
				return cli_fail("--presence: '%s' is not a Kafka topic name "
						"(" KAFKA_TOPIC_RULE ")",
						optarg);
			}
			s->presence_topic = optarg;
			break;
		case OPT_COMMANDS:
			if (!valid_topic(optarg)) {
				return cli_fail("--commands: '%s' is not a Kafka topic name "
						"(" KAFKA_TOPIC_RULE ")",
						optarg);
			}
			s->commands_topic = optarg;
			break;
		case 'g':
			if (optarg[0] == '\0') {
				return cli_fail("--group: empty");
			}
			s->group = optarg;
			break;
		case OPT_BROKER_TOPIC:
			if (!valid_template(optarg)) {
				return cli_fail(
					"--broker-topic: '%s' is not a Kafka topic name with "
					"{broker} in it",
					optarg);
			}
			s->broker_topic = optarg;
			break;
		case OPT_TARGET:
			if (strcmp(optarg, "key") == 0) {
				s->target_header = NULL;
			} else if (strncmp(optarg, "header:", 7) == 0 && optarg[7] != '\0') {
				s->target_header = optarg + 7;
			} else {
				return cli_fail("--target: '%s' is not key or header:NAME", optarg);
			}
			break;
		case OPT_HOLD:
			if (!cli_parse_seconds(optarg, 0, 86400, &s->hold_s)) {
				return cli_fail(
					"--hold: '%s' is not a number of seconds (0..86400)",
					optarg);
			}
			break;
		case OPT_DEAD_LETTER:
			if (!valid_topic(optarg)) {
				return cli_fail("--dead-letter: '%s' is not a Kafka topic name "
						"(" KAFKA_TOPIC_RULE ")",
						optarg);
			}
			s->dead_letter = optarg;
			break;
		case OPT_MAX_HELD: {
			uint64_t v;
			if (!cli_parse_uint(optarg, 1, 100000000, &v)) {
				return cli_fail("--max-held: '%s' is not a number of commands "
						"(1..100000000)",
						optarg);
			}
			s->max_held = (size_t)v;
			break;
		}
		case OPT_FLUSH_TIMEOUT:
			if (!cli_parse_seconds(optarg, 0, 3600, &s->flush_timeout_s)) {
				return cli_fail("--flush-timeout: '%s' is not a number of seconds "
						"(0..3600)",
						optarg);
			}
			break;
		case 'X':
			if (cli_props_add(&s->props, optarg) != 0) {
				return CLI_EXIT_USAGE;
			}
			break;
		case 'q':
			s->quiet = true;
			break;
		case 'v':
			s->verbose++;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf(ROUTER_NAME " %s (librdkafka %s, cJSON %s)\n", MQK_VERSION,
			       rd_kafka_version_str(), cJSON_Version());
			return 0;
		default:
			return cli_getopt_fail(c, argv);
		}
	}
	if (optind < argc) {
		return cli_fail("unexpected argument '%s'", argv[optind]);
	}
	if (s->bootstrap == NULL) {
		return cli_fail("--bootstrap is required");
	}
	if (strcmp(s->dead_letter, s->commands_topic) == 0) {
		return cli_fail(
			"--dead-letter: '%s' is also --commands (dead letters would come back)",
			s->dead_letter);
	}
	return -1;
}

/* ---- the summary ---- */

static void live_line(const struct router *r)
{
	uint64_t dead = 0;

	for (int i = 0; i < REASON_N; i++) {
		dead += r->c.dead[i];
	}
	router__log("read %" PRIu64 " (%" PRIu64 " sent back), routed %" PRIu64 ", held now %zu, "
		    "dead letters %" PRIu64 ", in flight %zu; presence %" PRIu64
		    " records (%" PRIu64 " malformed), %zu clients connected",
		    r->c.records_read, r->c.returns_read, r->c.routed, r->held.count, dead,
		    r->in_flight, r->c.presence_records, r->presence.malformed,
		    presence__connected(&r->presence));
}

static cJSON *summary(const struct router *r, size_t unsettled, double seconds)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *by_broker = cJSON_CreateObject();
	cJSON *by_reason = cJSON_CreateObject();
	cJSON *brokers = cJSON_CreateObject();

	cJSON_AddNumberToObject(o, "records_read", (double)r->c.records_read);
	cJSON_AddNumberToObject(o, "returns_read", (double)r->c.returns_read);
	cJSON_AddNumberToObject(o, "routed", (double)r->c.routed);
	for (const struct pres_broker *b = r->presence.broker_list; b; b = b->next) {
		if (b->routed > 0) {
			cJSON_AddNumberToObject(by_broker, b->id, (double)b->routed);
		}
	}
	cJSON_AddItemToObject(o, "routed_by_broker", by_broker);
	cJSON_AddNumberToObject(o, "held", (double)r->c.held);
	cJSON_AddNumberToObject(o, "dead_lettered", (double)r->c.dead_lettered);
	for (int i = 0; i < REASON_N; i++) {
		cJSON_AddNumberToObject(by_reason, router__reasons[i], (double)r->c.dead[i]);
	}
	cJSON_AddItemToObject(o, "dead_lettered_by_reason", by_reason);
	cJSON_AddNumberToObject(o, "retries", (double)r->c.retries);
	cJSON_AddNumberToObject(o, "released", (double)r->c.released);
	cJSON_AddNumberToObject(o, "unsettled_at_exit", (double)unsettled);
	cJSON_AddNumberToObject(o, "presence_records", (double)r->c.presence_records);
	cJSON_AddNumberToObject(o, "malformed", (double)r->presence.malformed);
	cJSON_AddBoolToObject(o, "presence_caught_up", r->caught_up);
	cJSON_AddNumberToObject(o, "clients_connected", (double)presence__connected(&r->presence));
	for (const struct pres_broker *b = r->presence.broker_list; b; b = b->next) {
		cJSON *one = cJSON_CreateObject();
		char boot[24];
		snprintf(boot, sizeof(boot), "%" PRId64, b->boot);
		cJSON_AddStringToObject(one, "state",
					b->down ? MQK_PRESENCE_DOWN : MQK_PRESENCE_UP);
		cJSON_AddRawToObject(one, "boot", boot); /* not 1.79e+15 */
		cJSON_AddItemToObject(brokers, b->id, one);
	}
	cJSON_AddItemToObject(o, "brokers", brokers);
	cJSON_AddNumberToObject(o, "duration_s", (double)(int64_t)(seconds * 1000) / 1000);
	return o;
}

/* ---- the loop ---- */

/* Milliseconds until `until` (mono µs), rounded up, at most 100: the loop looks at the
 * signal flag at least that often. */
static int poll_timeout(uint64_t now, uint64_t until)
{
	if (until <= now) {
		return 0;
	}
	uint64_t ms = (until - now + 999) / 1000;
	return ms < 100 ? (int)ms : 100;
}

static int run(struct router *r)
{
	char err[512];
	uint64_t next_live;
	bool more = false;

	r->started_us = cli_mono_us();
	next_live = r->started_us + LIVE_EVERY_US;
	if (kafka__open(r, err, sizeof(err)) != 0) {
		if (signalled) {
			router__log("stopped while starting");
			return 0;
		}
		cli_fail("%s", err);
		return 1;
	}
	while (!signalled && !r->fatal) {
		uint64_t now = cli_mono_us();
		if (!more) {
			uint64_t due = route__next_due(r);
			kafka__wait(r, poll_timeout(now, r->set->quiet || due < next_live
								 ? due
								 : next_live));
		}
		more = kafka__serve(r);
		now = cli_mono_us();
		route__tick(r, now);
		kafka__refresh_presence(r, now);
		if (!r->set->quiet && now >= next_live) {
			live_line(r);
			next_live = now + LIVE_EVERY_US;
		}
	}
	return r->fatal ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct settings set = {0};
	struct router r = {.set = &set, .stopping = &signalled, .wake = {-1, -1}};
	int status;

	cli_init(ROUTER_NAME);
	status = parse(argc, argv, &set);
	if (status >= 0) {
		return status;
	}
	cli_on_stop(on_signal);

	status = run(&r);
	bool opened = r.producer != NULL && r.commands_rk != NULL;
	/* Held and to retry: not settled, not committed, read again by the next router. */
	size_t unsettled = route__drop_all(&r);
	kafka__close(&r);
	if (opened) {
		cJSON *json = summary(&r, unsettled + r.unflushed,
				      (double)(cli_mono_us() - r.started_us) / 1e6);
		char *text = cJSON_Print(json);
		if (text) {
			printf("%s\n", text);
		}
		free(text);
		cJSON_Delete(json);
	}
	held__free(&r.held);
	presence__free(&r.presence);
	windows__free(&r.windows);
	return status;
}
