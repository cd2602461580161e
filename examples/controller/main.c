/*
 * mqk-controller - the sample controller: gathers what the devices publish, measures
 * it, and sends control commands to specific devices.
 *
 *   mqk-controller -b 127.0.0.1:9092 -t sensors -t answers --expect 10000
 *   mqk-controller --mqtt 127.0.0.1:1883 -f 'devices/+/data' --idle 5
 *   mqk-controller command -b 127.0.0.1:9092 --device ue-00042 '{"action":"scan"}'
 *   mqk-controller merge a.json b.json
 *
 * It is the study's Controller and ConsumerStats in one program. In Kafka mode (the
 * default) it joins a consumer group and pulls at its own pace with a blocking poll;
 * several instances share the partitions and can come and go (kafka.c). In MQTT mode it
 * subscribes straight to the brokers, as the study's A1/A2 controller did (mqtt.c), so
 * that the same numbers compare the architectures.
 *
 * What it measures (report.c): per device, from mqk-loadgen's payloads
 * (include/mqk_payload.h), messages received, lost (sequence numbers never filled below
 * the highest seen), duplicates and out of order; latency (arrival minus send time) as
 * percentiles from a histogram; throughput; and, in Kafka mode, a loss audit per broker
 * and route from the plugin's mqtt.broker/mqtt.seq headers. A live line on stderr when
 * it is a terminal; a JSON report on stdout at the end. --save keeps the detail so that
 * `mqk-controller merge` can add several instances' reports up exactly.
 *
 * With --command-every it also sends commands to random devices seen, and pairs their
 * answers (commands.c): each command answered once by its own device, none twice, none
 * by another device; round trip and delivery (command -> device) times.
 *
 * A run ends on --expect (that many distinct data messages) and --commands (that many
 * commands sent and answered) when both given ones are reached, on --idle (no message
 * for so many seconds, once one arrived), --duration, or SIGINT/SIGTERM. Then, but for a
 * signal, it waits up to --wait seconds for the answers still due. The exit status is 0
 * when the report shows no loss, 2 when it does (data lost, or commands unanswered,
 * answered twice or by another device), 1 on an error.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <mosquitto.h>

#include <mosquitto_kafka.h>

#include "cli.h"
#include "controller.h"

#define DEFAULT_GROUP "mqk-controller"
#define DEFAULT_FILTER "devices/+/data"
#define DEFAULT_COMMAND_TOPIC "mqtt-commands"
#define DEFAULT_COMMAND_MQTT "devices/{id}/commands"
#define DEFAULT_ANSWERS "devices/{id}/answers"
#define DEFAULT_COMMAND_PAYLOAD "{\"action\":\"ping\"}"
#define FLUSH_MS 10000
#define DEFAULT_ANSWER_WAIT 5.0 /* run: seconds to wait for answers still due at the end */
#define MAX_BURST 1000          /* commands sent per loop iteration, catching up */

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

/* ---- arguments ---- */

struct run_opts {
	uint64_t expect;
	uint64_t commands; /* --commands: at most that many, then end once all are answered */
	double idle, duration, command_every;
	const char *command_payload;
	const char *save;
	const char *device; /* command */
	double wait;        /* seconds to wait for answers (command: 0; run: see --wait) */
	bool wait_given;
	bool quiet;
};

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: mqk-controller [run] [options]          consume, measure, report\n"
		"       mqk-controller command --device ID [options] PAYLOAD\n"
		"       mqk-controller merge [--expect N] REPORT.json...\n"
		"\n"
		"Kafka mode (the default):\n"
		"  -b, --bootstrap SERVERS  Kafka bootstrap servers (required)\n"
		"  -t, --topic TOPIC        a topic to consume; repeat it; ^regex allowed\n"
		"  -g, --group ID           consumer group (default " DEFAULT_GROUP ")\n"
		"  -X NAME=VALUE            a librdkafka property, for consumer and producer\n"
		"      --command-topic T    where commands are produced "
		"(default " DEFAULT_COMMAND_TOPIC ")\n"
		"MQTT mode:\n"
		"  -m, --mqtt HOST:PORT,... subscribe to each of these brokers directly\n"
		"  -f, --filter FILTER      a data topic filter; repeat it (default " DEFAULT_FILTER
		")\n"
		"      --qos 0|1|2          subscription QoS (default 1)\n"
		"      --protocol 311|5     MQTT version (default 5)\n"
		"      --command-mqtt TPL   a device's command topic (default " DEFAULT_COMMAND_MQTT
		")\n"
		"Both:\n"
		"      --answers TPL        where devices answer; {id} is the device "
		"(default " DEFAULT_ANSWERS ")\n"
		"  -e, --expect N           stop once N distinct data messages arrived\n"
		"  -i, --idle S             stop after S seconds without a message (once one "
		"came)\n"
		"  -d, --duration S         stop after S seconds\n"
		"      --command-every S    send a command every S seconds (fractions too: 0.002)\n"
		"                           to a random device seen\n"
		"      --commands N         send at most N commands; stop once all N are answered\n"
		"      --command-payload P  its payload (default " DEFAULT_COMMAND_PAYLOAD ")\n"
		"      --wait S             at the end, wait up to S seconds for answers still "
		"due\n"
		"                           (default 5; 0: do not wait)\n"
		"  -s, --save FILE          also write the report with the detail merge needs\n"
		"  -q, --quiet              no live line\n"
		"Command:\n"
		"      --device ID          the device (MQTT client id) to command\n"
		"      --wait S             MQTT mode: wait up to S seconds for its answer "
		"(default 0)\n"
		"  -h, --help               this text\n"
		"  -V, --version            versions\n");
}

/* A whole decimal number (cli.h). */
static bool parse_u64(const char *s, uint64_t *out)
{
	return cli_parse_uint(s, 0, UINT64_MAX, out);
}

/* answers_tpl with {id} as "+" (a filter matching every device's answers). */
static char *answers_filter(const char *tpl)
{
	char *f = expand_id(tpl, "+");
	if (f && mosquitto_sub_topic_check(f) != MOSQ_ERR_SUCCESS) {
		free(f);
		return NULL;
	}
	return f;
}

enum {
	OPT_COMMAND_TOPIC = 256,
	OPT_QOS,
	OPT_PROTOCOL,
	OPT_COMMAND_MQTT,
	OPT_ANSWERS,
	OPT_COMMAND_EVERY,
	OPT_COMMANDS,
	OPT_COMMAND_PAYLOAD,
	OPT_DEVICE,
	OPT_WAIT,
};

static const struct option long_options[] = {
	{"bootstrap", required_argument, NULL, 'b'},
	{"topic", required_argument, NULL, 't'},
	{"group", required_argument, NULL, 'g'},
	{"command-topic", required_argument, NULL, OPT_COMMAND_TOPIC},
	{"mqtt", required_argument, NULL, 'm'},
	{"filter", required_argument, NULL, 'f'},
	{"qos", required_argument, NULL, OPT_QOS},
	{"protocol", required_argument, NULL, OPT_PROTOCOL},
	{"command-mqtt", required_argument, NULL, OPT_COMMAND_MQTT},
	{"answers", required_argument, NULL, OPT_ANSWERS},
	{"expect", required_argument, NULL, 'e'},
	{"idle", required_argument, NULL, 'i'},
	{"duration", required_argument, NULL, 'd'},
	{"command-every", required_argument, NULL, OPT_COMMAND_EVERY},
	{"commands", required_argument, NULL, OPT_COMMANDS},
	{"command-payload", required_argument, NULL, OPT_COMMAND_PAYLOAD},
	{"save", required_argument, NULL, 's'},
	{"quiet", no_argument, NULL, 'q'},
	{"device", required_argument, NULL, OPT_DEVICE},
	{"wait", required_argument, NULL, OPT_WAIT},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{NULL, 0, NULL, 0},
};

static bool add(const char **list, size_t *n, const char *value)
{
	if (*n == MAX_LIST) {
		return false;
	}
	list[(*n)++] = value;
	return true;
}

/* Parses argv into set and o. Returns -1 to go on, else the exit status. */
static int parse(int argc, char **argv, struct settings *set, struct run_opts *o)
{
	int c;
	uint64_t v;

	set->group = DEFAULT_GROUP;
	set->command_topic = DEFAULT_COMMAND_TOPIC;
	set->command_mqtt = DEFAULT_COMMAND_MQTT;
	set->answers = DEFAULT_ANSWERS;
	set->qos = 1;
	set->protocol = MQTT_PROTOCOL_V5;
	o->command_payload = DEFAULT_COMMAND_PAYLOAD;

	opterr = 0; /* our own error lines (cli.h) */
	while ((c = getopt_long(argc, argv, ":b:t:g:X:m:f:e:i:d:s:qhV", long_options, NULL)) !=
	       -1) {
		switch (c) {
		case 'b':
			set->bootstrap = optarg;
			break;
		case 't':
			if (!add(set->topics, &set->n_topics, optarg)) {
				return cli_fail("-t: at most %d topics", MAX_LIST);
			}
			break;
		case 'g':
			set->group = optarg;
			break;
		case 'X':
			if (cli_props_add(&set->props, optarg) != 0) {
				return CLI_EXIT_USAGE;
			}
			break;
		case OPT_COMMAND_TOPIC:
			set->command_topic = optarg;
			break;
		case 'm':
			set->mqtt_hosts = optarg;
			break;
		case 'f':
			if (mosquitto_sub_topic_check(optarg) != MOSQ_ERR_SUCCESS) {
				return cli_fail("--filter: '%s' is not a valid MQTT topic filter",
						optarg);
			}
			if (!add(set->filters, &set->n_filters, optarg)) {
				return cli_fail("--filter: at most %d filters", MAX_LIST);
			}
			break;
		case OPT_QOS:
			if (!parse_u64(optarg, &v) || v > 2) {
				return cli_fail("--qos: '%s' is not 0, 1 or 2", optarg);
			}
			set->qos = (int)v;
			break;
		case OPT_PROTOCOL:
			if (strcmp(optarg, "311") == 0) {
				set->protocol = MQTT_PROTOCOL_V311;
			} else if (strcmp(optarg, "5") == 0) {
				set->protocol = MQTT_PROTOCOL_V5;
			} else {
				return cli_fail("--protocol: '%s' is not 311 or 5", optarg);
			}
			break;
		case OPT_COMMAND_MQTT:
			set->command_mqtt = optarg;
			break;
		case OPT_ANSWERS:
			set->answers = optarg;
			break;
		case 'e':
			if (!parse_u64(optarg, &o->expect) || o->expect == 0) {
				return cli_fail(
					"--expect: '%s' is not a positive number of messages",
					optarg);
			}
			break;
		case 'i':
			if (!cli_parse_seconds(optarg, 1e-6, 1e7, &o->idle)) {
				return cli_fail("--idle: '%s' is not a positive number of seconds",
						optarg);
			}
			break;
		case 'd':
			if (!cli_parse_seconds(optarg, 1e-6, 1e7, &o->duration)) {
				return cli_fail(
					"--duration: '%s' is not a positive number of seconds",
					optarg);
			}
			break;
		case OPT_COMMAND_EVERY:
			if (!cli_parse_seconds(optarg, 1e-6, 1e7, &o->command_every)) {
				return cli_fail("--command-every: '%s' is not a number of seconds "
						"(0.000001 or more)",
						optarg);
			}
			break;
		case OPT_COMMANDS:
			if (!parse_u64(optarg, &o->commands) || o->commands == 0 ||
			    o->commands >= UINT32_MAX - 1) {
				return cli_fail(
					"--commands: '%s' is not a positive number of commands",
					optarg);
			}
			break;
		case OPT_COMMAND_PAYLOAD:
			o->command_payload = optarg;
			break;
		case 's':
			o->save = optarg;
			break;
		case 'q':
			o->quiet = true;
			break;
		case OPT_DEVICE:
			if (optarg[0] == '\0' || strpbrk(optarg, "+#/")) {
				return cli_fail(
					"--device: '%s' is not a client id ('+', '#', '/' and "
					"empty "
					"are not allowed)",
					optarg);
			}
			o->device = optarg;
			break;
		case OPT_WAIT:
			if (!cli_parse_seconds(optarg, 0, 1e7, &o->wait)) {
				return cli_fail("--wait: '%s' is not a number of seconds", optarg);
			}
			o->wait_given = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V': {
			int major, minor, rev;
			mosquitto_lib_version(&major, &minor, &rev);
			printf("mqk-controller %s (librdkafka %s, libmosquitto %d.%d.%d)\n",
			       MQK_VERSION, rd_kafka_version_str(), major, minor, rev);
			return 0;
		}
		default:
			return cli_getopt_fail(c, argv);
		}
	}
	if (set->bootstrap && set->mqtt_hosts) {
		return cli_fail("--bootstrap and --mqtt: choose Kafka mode or MQTT mode");
	}
	if (!set->bootstrap && !set->mqtt_hosts) {
		return cli_fail("--bootstrap (Kafka mode) or --mqtt (MQTT mode) is required");
	}
	if (strstr(set->answers, "{id}") == NULL) {
		return cli_fail("--answers: '%s' has no {id}", set->answers);
	}
	if (strstr(set->command_mqtt, "{id}") == NULL) {
		return cli_fail("--command-mqtt: '%s' has no {id}", set->command_mqtt);
	}
	if (o->commands > 0 && o->command_every == 0) {
		return cli_fail("--commands: needs --command-every (how often to send them)");
	}
	if (set->mqtt_hosts && set->n_filters == 0) {
		set->filters[set->n_filters++] = DEFAULT_FILTER;
	}
	return -1;
}

/* ---- delivery ---- */

void controller__deliver(struct controller *ctl, const char *topic, const void *payload, size_t len,
			 const char *broker, const char *route, const char *boot, uint64_t seq)
{
	bool answer = false;
	uint64_t now = now_us();

	if (topic != NULL) {
		mosquitto_topic_matches_sub(ctl->set->answers_filter, topic, &answer);
	}
	if (answer) {
		commands__answer(&ctl->commands, &ctl->report, payload, len, now);
	} else {
		report__message(&ctl->report, payload, len, now, broker, route, boot, seq);
	}
}

/* ---- the two sources behind one interface ---- */

struct source {
	struct kafka *kafka;
	struct mqtt *mqtt;
};

static int source_open(struct source *src, struct controller *ctl)
{
	char err[512];

	if (ctl->set->bootstrap) {
		src->kafka = kafka__open(ctl->set, err, sizeof(err));
	} else {
		src->mqtt = mqtt__open(ctl->set, ctl, err, sizeof(err));
	}
	if (!src->kafka && !src->mqtt) {
		return cli_fail("%s", err);
	}
	return 0;
}

static int source_poll(struct source *src, struct controller *ctl, int timeout_ms)
{
	return src->kafka ? kafka__poll(src->kafka, ctl, timeout_ms)
			  : mqtt__poll(src->mqtt, timeout_ms);
}

static int source_command(struct source *src, struct controller *ctl, const struct command *cmd)
{
	char err[512];
	uint64_t at = now_us(); /* the delivery and round trip times start here */
	int rc = src->kafka ? kafka__command(src->kafka, ctl, cmd, err, sizeof(err))
			    : mqtt__command(src->mqtt, cmd, err, sizeof(err));
	if (rc != 0) {
		fprintf(stderr, "mqk-controller: command to %s: %s\n", cmd->device, err);
		ctl->report.commands_failed++;
		ctl->refused++;
		return -1;
	}
	ctl->report.commands_sent++;
	if (commands__sent(&ctl->commands, cmd, at) != 0) {
		fprintf(stderr,
			"mqk-controller: out of memory: the answer to %s will not be paired\n",
			cmd->id);
	}
	return 0;
}

/* Waits for commands still on their way; counts those that never made it as failed. */
static void source_flush(struct source *src, struct controller *ctl)
{
	int left = src->kafka ? kafka__flush(src->kafka, ctl, FLUSH_MS)
			      : mqtt__flush(src->mqtt, FLUSH_MS);
	if (left > 0) {
		fprintf(stderr, "mqk-controller: %d commands not acknowledged after %d ms\n", left,
			FLUSH_MS);
		ctl->report.commands_failed += (uint64_t)left;
	}
}

static void source_close(struct source *src)
{
	if (src->kafka) {
		kafka__close(src->kafka);
	}
	mqtt__close(src->mqtt);
}

/* ---- run ---- */

/*
 * A random device seen so far, or NULL when none was. Every device is as likely: random
 * slots of the table are tried until one holds a device (the table is at least 3/8 full
 * once past 64 slots, so that takes a few tries, whatever the number of devices).
 */
static const char *random_device(const struct tally *devices)
{
	if (devices->n == 0) {
		return NULL;
	}
	for (int tries = 0; tries < 10000; tries++) {
		size_t i = (size_t)random() & (devices->cap - 1);
		if (devices->slots[i].key != NULL) {
			return devices->slots[i].key;
		}
	}
	for (size_t i = 0; i < devices->cap; i++) { /* never in practice */
		if (devices->slots[i].key != NULL) {
			return devices->slots[i].key;
		}
	}
	return NULL;
}

static int print_report(const struct report *r, const char *save)
{
	cJSON *json = report__json(r, false);
	char *text = cJSON_Print(json);
	int rc = 0;

	if (text == NULL) {
		cJSON_Delete(json);
		return cli_fail("out of memory printing the report");
	}
	printf("%s\n", text);
	free(text);
	cJSON_Delete(json);
	if (save) {
		FILE *f = fopen(save, "w");
		json = report__json(r, true);
		text = cJSON_PrintUnformatted(json);
		if (f == NULL || text == NULL || fprintf(f, "%s\n", text) < 0 || fclose(f) != 0) {
			rc = cli_fail("--save: %s: %s", save, strerror(errno));
			f = NULL;
		}
		free(text);
		cJSON_Delete(json);
	}
	return rc;
}

/* Whether the goals given (--expect, --commands) are all reached; false when none is. */
static bool goals_reached(const struct run_opts *o, const struct report *r)
{
	if (o->expect == 0 && o->commands == 0) {
		return false;
	}
	if (o->expect > 0 && report__unique(r) < o->expect) {
		return false;
	}
	return o->commands == 0 || (r->commands_sent >= o->commands && r->answers >= o->commands);
}

/*
 * How long the source may block: until the next command is due (rounded up to a
 * millisecond, the poll's unit; commands that fell due meanwhile go out together), at
 * most 100 ms so that the end conditions and the live line are looked at.
 */
static int poll_timeout(uint64_t next_command)
{
	uint64_t now = cli_mono_us();

	if (next_command == 0) {
		return 100;
	}
	if (now >= next_command) {
		return 0;
	}
	uint64_t ms = (next_command - now + 999) / 1000;
	return ms < 100 ? (int)ms : 100;
}

/*
 * Sends the commands due at now, every `every` µs from next on, up to MAX_BURST of them:
 * at high rates several per loop iteration, so that the rate holds whatever the poll
 * took. Returns when the next one is due, or 0 when --commands were all sent.
 */
static uint64_t send_due(struct source *src, struct controller *ctl, const struct run_opts *o,
			 uint64_t next, uint64_t every, uint64_t now)
{
	struct report *r = &ctl->report;

	for (int i = 0; i < MAX_BURST && next <= now; i++) {
		if (o->commands > 0 && r->commands_sent >= o->commands) {
			return 0;
		}
		const char *device = random_device(&r->devices);
		struct command cmd;
		if (device == NULL) {
			return now + every; /* no device seen yet: no backlog either */
		}
		if (commands__make(&ctl->commands, device, o->command_payload, ctl->set->answers,
				   &cmd) == 0) {
			source_command(src, ctl, &cmd);
			command__free(&cmd);
		}
		next += every;
	}
	return o->commands > 0 && r->commands_sent >= o->commands ? 0 : next;
}

/*
 * After the run: waits up to secs for the answers still due (commands sent that neither
 * were answered nor failed), sending nothing more. The messages that come meanwhile are
 * counted as usual.
 */
static int wait_for_answers(struct source *src, struct controller *ctl, double secs)
{
	const struct report *r = &ctl->report;
	uint64_t end = cli_mono_us() + (uint64_t)(secs * 1e6);

	for (;;) {
		uint64_t lost = r->commands_failed - ctl->refused; /* failed after sending */
		if (stopping || r->answers + lost >= r->commands_sent || cli_mono_us() >= end) {
			return 0;
		}
		if (source_poll(src, ctl, 100) < 0) {
			return 1;
		}
	}
}

static int run(struct controller *ctl, const struct run_opts *o)
{
	struct source src = {0};
	bool live = !o->quiet && isatty(STDERR_FILENO);
	uint64_t start = cli_mono_us(), last_msg = 0, next_live = start + 1000000;
	/* At least 1 µs: parse_secs refuses less. */
	uint64_t every = o->command_every > 0 ? (uint64_t)(o->command_every * 1e6 + 0.5) : 0;
	uint64_t next_command = every ? start + every : 0;
	uint64_t live_received = 0, live_us = 0;
	double wait = o->wait_given ? o->wait : DEFAULT_ANSWER_WAIT;
	int status = 0;

	if (ctl->set->bootstrap && ctl->set->n_topics == 0) {
		return cli_fail("-t: no topic to consume");
	}
	if (source_open(&src, ctl) != 0) {
		return 1;
	}
	while (!stopping) {
		int n = source_poll(&src, ctl, poll_timeout(next_command));
		uint64_t now = cli_mono_us();
		if (n < 0) {
			status = 1;
			break;
		}
		if (n > 0) {
			last_msg = now;
		}
		if (goals_reached(o, &ctl->report)) {
			break;
		}
		if (o->idle > 0 && last_msg && now - last_msg >= (uint64_t)(o->idle * 1e6)) {
			break;
		}
		if (o->duration > 0 && now - start >= (uint64_t)(o->duration * 1e6)) {
			break;
		}
		if (next_command && now >= next_command) {
			next_command = send_due(&src, ctl, o, next_command, every, now);
		}
		if (live && now >= next_live) {
			char line[256];
			report__live(&ctl->report, now_us(), &live_received, &live_us, line,
				     sizeof(line));
			fprintf(stderr, "\r%-100s", line);
			next_live += 1000000;
		}
	}
	if (live) {
		fputc('\n', stderr);
	}
	if (ctl->report.commands_sent > 0) {
		source_flush(&src, ctl);
		if (status == 0 && wait > 0) {
			status = wait_for_answers(&src, ctl, wait);
		}
	}
	source_close(&src);

	int rc = print_report(&ctl->report, o->save);
	if (status == 0 && rc != 0) {
		status = rc;
	} else if (status == 0 &&
		   (report__lossy(&ctl->report) || report__commands_lossy(&ctl->report))) {
		status = 2;
	}
	return status;
}

/* ---- command ---- */

static int command(struct controller *ctl, const struct run_opts *o, const char *payload)
{
	struct source src = {0};
	struct command cmd;
	int status = 0;

	if (o->device == NULL) {
		return cli_fail("command: --device is required");
	}
	if (o->wait > 0 && ctl->set->bootstrap) {
		return cli_fail(
			"--wait: only in MQTT mode (answers reach Kafka through the plugin)");
	}
	if (source_open(&src, ctl) != 0) {
		return 1;
	}
	if (ctl->set->mqtt_hosts) {
		/* Wait for the subscriptions, so that the answer is not missed. */
		mqtt__flush(src.mqtt, 0);
		for (int i = 0; i < 20; i++) {
			mqtt__poll(src.mqtt, 50);
		}
	}
	if (commands__make(&ctl->commands, o->device, payload, ctl->set->answers, &cmd) != 0) {
		source_close(&src);
		return cli_fail("out of memory");
	}
	if (source_command(&src, ctl, &cmd) != 0) {
		status = 1;
	} else {
		source_flush(&src, ctl);
		if (ctl->report.commands_failed > 0) {
			status = 1;
		}
	}
	uint64_t end = cli_mono_us() + (uint64_t)(o->wait * 1e6);
	while (status == 0 && o->wait > 0 && ctl->report.answers == 0 && cli_mono_us() < end &&
	       !stopping) {
		mqtt__poll(src.mqtt, 100);
	}
	source_close(&src);

	cJSON *out = cJSON_CreateObject();
	cJSON_AddStringToObject(out, "device", cmd.device);
	cJSON_AddStringToObject(out, "id", cmd.id);
	cJSON_AddStringToObject(out, "payload", cmd.payload);
	cJSON_AddStringToObject(out, "response_topic", cmd.response_topic);
	cJSON_AddBoolToObject(out, "sent", status == 0);
	if (o->wait > 0) {
		cJSON_AddBoolToObject(out, "answered", ctl->report.answers > 0);
		if (ctl->report.answers > 0) {
			cJSON_AddNumberToObject(out, "rtt_us", (double)ctl->report.rtt.max);
		} else if (status == 0) {
			status = 2;
		}
	}
	char *text = cJSON_PrintUnformatted(out);
	printf("%s\n", text ? text : "{}");
	free(text);
	cJSON_Delete(out);
	command__free(&cmd);
	return status;
}

/* ---- merge ---- */

static int merge(int argc, char **argv, int first, uint64_t expect, const char *save)
{
	struct report r;
	int status = 0;

	if (first >= argc) {
		return cli_fail("merge: no report file given");
	}
	report__init(&r, "merged");
	r.instances = 0;
	r.expect = expect;
	for (int i = first; i < argc && status == 0; i++) {
		FILE *f = fopen(argv[i], "r");
		char *text = NULL, err[256];
		size_t size = 0;
		if (f == NULL) {
			status = cli_fail("merge: %s: %s", argv[i], strerror(errno));
			break;
		}
		ssize_t len = getdelim(&text, &size, '\0', f);
		fclose(f);
		cJSON *json = len > 0 ? cJSON_Parse(text) : NULL;
		free(text);
		if (json == NULL) {
			status = cli_fail("merge: %s: not JSON", argv[i]);
		} else if (report__merge_json(&r, json, err, sizeof(err)) != 0) {
			status = cli_fail("merge: %s: %s", argv[i], err);
		}
		cJSON_Delete(json);
	}
	if (status == 0) {
		status = print_report(&r, save);
		if (status == 0 && (report__lossy(&r) || report__commands_lossy(&r))) {
			status = 2;
		}
	}
	report__free(&r);
	return status;
}

int main(int argc, char **argv)
{
	struct settings set = {0};
	struct run_opts o = {0};
	struct controller ctl = {.set = &set};
	const char *sub = "run";
	int status;

	cli_init("mqk-controller");
	if (argc > 1 && (strcmp(argv[1], "run") == 0 || strcmp(argv[1], "command") == 0 ||
			 strcmp(argv[1], "merge") == 0)) {
		sub = argv[1];
		argv[1] = argv[0];
		argv++;
		argc--;
	}
	if (strcmp(sub, "merge") == 0) {
		static const struct option merge_options[] = {
			{"expect", required_argument, NULL, 'e'},
			{"save", required_argument, NULL, 's'},
			{"help", no_argument, NULL, 'h'},
			{NULL, 0, NULL, 0},
		};
		int c;
		opterr = 0; /* our own error lines (cli.h) */
		while ((c = getopt_long(argc, argv, ":e:s:h", merge_options, NULL)) != -1) {
			if (c == 'e' && parse_u64(optarg, &o.expect) && o.expect > 0) {
				continue;
			}
			if (c == 's') {
				o.save = optarg;
				continue;
			}
			if (c == 'h') {
				usage(stdout);
				return 0;
			}
			return c == 'e'
				       ? cli_fail("--expect: '%s' is not a positive number", optarg)
				       : cli_getopt_fail(c, argv);
		}
		return merge(argc, argv, optind, o.expect, o.save);
	}

	status = parse(argc, argv, &set, &o);
	if (status >= 0) {
		return status;
	}
	if (strcmp(sub, "command") == 0 && optind != argc - 1) {
		return cli_fail("command: give exactly one PAYLOAD");
	}
	if (strcmp(sub, "command") != 0 && optind != argc) {
		return cli_fail("unexpected argument '%s'", argv[optind]);
	}
	char *filter = answers_filter(set.answers);
	if (filter == NULL) {
		return cli_fail("--answers: '%s' does not make a valid topic filter", set.answers);
	}
	set.answers_filter = filter;

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	srandom((unsigned)now_us());
	mosquitto_lib_init();
	report__init(&ctl.report, set.bootstrap ? "kafka" : "mqtt");
	ctl.report.expect = o.expect;

	if (strcmp(sub, "command") == 0) {
		status = command(&ctl, &o, argv[optind]);
	} else {
		status = run(&ctl, &o);
	}

	report__free(&ctl.report);
	commands__free(&ctl.commands);
	free(filter);
	mosquitto_lib_cleanup();
	return status;
}
