/*
 * mqk-hybrid - the study's HybridClient (architecture A3): an MQTT subscriber beside one
 * broker that pushes every data message it receives into Kafka, from where a controller
 * pulls. It exists so that a benchmark can compare that architecture with the plugin,
 * which forwards from inside mosquitto.
 *
 *   mqk-hybrid -b 127.0.0.1:9092 -T sensors -p 1883
 *   mqk-hybrid -b 127.0.0.1:9092 -T sensors -t 'devices/+/data' --poll-sleep-ms 200 -d 60
 *
 * DESIGN
 *
 * One thread. The MQTT connection is served by a poll(2) loop on the main thread
 * (mqtt.c), not by libmosquitto's own thread (mosquitto_loop_start): so no mosquitto_*
 * call is ever made from two threads, the queue between MQTT and Kafka needs no lock,
 * and the counters need no atomics. librdkafka runs threads of its own, but its
 * delivery reports and error callbacks are served only by rd_kafka_poll() and
 * rd_kafka_flush(), which this loop calls (kafka.c); only its log callback runs on its
 * threads, and that just writes to stderr.
 *
 * The queue. on_message() copies each message into an in-memory FIFO (queue.c), which
 * owns it until rd_kafka_producev() takes the payload (RD_KAFKA_MSG_F_FREE) and the node
 * is freed; a message still queued at the end is freed and counted as dropped. The
 * callback does not produce itself: it runs in the middle of mosquitto_loop_read(), and
 * a QUEUE_FULL wait there would hold libmosquitto inside a packet. Both modes then take
 * one path, and differ only in when the loop empties the queue:
 *
 *   --poll-sleep-ms 0 (the default): after every read, so a message is handed to
 *     librdkafka as soon as it arrived (then linger.ms, 5 ms, batches it).
 *   --poll-sleep-ms N: every N ms, as the study's HybridClient did (a loop that slept,
 *     then pushed what had arrived meanwhile). The connection is still served while
 *     "sleeping", as paho's network thread served it in the study: keepalives and
 *     PUBACKs go on, messages wait in the queue. A message waits N/2 ms on average:
 *     the extra latency the study measured and blamed on those sleeps.
 *
 * Blocking, not dropping. When librdkafka's queue is full (Kafka down for long), the
 * producing loop waits in rd_kafka_poll() and MQTT is not read meanwhile; the broker
 * queues for us, and drops by its own limits (max_queued_messages), which the
 * devices' own counts show.
 *
 * Stopping (SIGINT, SIGTERM, -d): disconnect from the broker first, so that nothing
 * more comes; produce what is still queued; flush for up to 10 s; then settle: records
 * without a delivery report by then count as failed, messages never handed to
 * librdkafka as dropped. So that received == delivered + failed + dropped, always. The
 * summary is one JSON object on stdout. Exit 0 when nothing failed or was dropped, 2
 * when something was, 1 on a bad argument or a Kafka configuration librdkafka rejects.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <librdkafka/rdkafka.h>
#include <mosquitto.h>

#include <mosquitto_kafka.h>

#include "cli.h"
#include "hybrid.h"
#include "kafka_topic.h"

#define DEFAULT_HOST "127.0.0.1"
#define DEFAULT_PORT 1883
#define DEFAULT_FILTER "devices/+/data"
#define FLUSH_MS 10000
#define MAX_POLL_SLEEP_MS 10000
#define TICK_MS 100 /* the longest the loop blocks: -d and signals are looked at this often */

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

/* ---- arguments ---- */

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: mqk-hybrid -b BOOTSTRAP -T KAFKA_TOPIC [options]\n"
		"\n"
		"The study's HybridClient (architecture A3): subscribes to one MQTT broker and\n"
		"produces every message it receives to a Kafka topic, the payload unchanged.\n"
		"Prints a JSON summary on stdout when it stops (SIGINT, SIGTERM or -d).\n"
		"\n"
		"MQTT:\n"
		"  -h, --host HOST          the broker (default " DEFAULT_HOST ")\n"
		"  -p, --port PORT          its port (default %d)\n"
		"  -t, --filter FILTER      a subscription; repeat it (default " DEFAULT_FILTER
		")\n"
		"  -q, --qos 0|1|2          subscription QoS (default 1)\n"
		"  -i, --id ID              client id (default mqk-hybrid-<pid>); clean session\n"
		"Kafka:\n"
		"  -b, --bootstrap SERVERS  Kafka bootstrap servers (required)\n"
		"  -T, --kafka-topic TOPIC  the topic to produce to (required)\n"
		"      --key none|topic     record key: the MQTT topic, or none (default topic)\n"
		"  -X NAME=VALUE            a librdkafka producer property; repeat it (applied\n"
		"                           after the defaults acks=all, enable.idempotence=true,\n"
		"                           linger.ms=5, max.in.flight.requests.per.connection=1)\n"
		"Run:\n"
		"      --poll-sleep-ms N    0: produce each message at once (default); N: sleep-\n"
		"                           poll as the study did, producing what arrived every\n"
		"                           N ms (1..%d)\n"
		"  -d, --duration S         stop after S seconds (default: at SIGINT/SIGTERM)\n"
		"      --help               this text\n"
		"  -V, --version            versions\n"
		"\n"
		"Exit status: 0 when every message received was delivered, 2 when some failed or\n"
		"were dropped, 1 on a bad argument.\n",
		DEFAULT_PORT, MAX_POLL_SLEEP_MS);
}

enum {
	OPT_KEY = 256,
	OPT_POLL_SLEEP,
	OPT_HELP,
};

static const struct option long_options[] = {
	{"host", required_argument, NULL, 'h'},
	{"port", required_argument, NULL, 'p'},
	{"filter", required_argument, NULL, 't'},
	{"qos", required_argument, NULL, 'q'},
	{"id", required_argument, NULL, 'i'},
	{"bootstrap", required_argument, NULL, 'b'},
	{"kafka-topic", required_argument, NULL, 'T'},
	{"key", required_argument, NULL, OPT_KEY},
	{"poll-sleep-ms", required_argument, NULL, OPT_POLL_SLEEP},
	{"duration", required_argument, NULL, 'd'},
	{"help", no_argument, NULL, OPT_HELP},
	{"version", no_argument, NULL, 'V'},
	{NULL, 0, NULL, 0},
};

/* Parses argv into set. Returns -1 to go on, else the exit status. */
static int parse(int argc, char **argv, struct settings *set)
{
	int c;
	uint64_t v;

	set->host = DEFAULT_HOST;
	set->port = DEFAULT_PORT;
	set->qos = 1;
	set->key = KEY_TOPIC;
	opterr = 0; /* our own error lines (cli.h) */

	while ((c = getopt_long(argc, argv, ":h:p:t:q:i:b:T:X:d:V", long_options, NULL)) != -1) {
		switch (c) {
		case 'h':
			if (optarg[0] == '\0') {
				return cli_fail("-h: the host is empty");
			}
			set->host = optarg;
			break;
		case 'p':
			if (!cli_parse_uint(optarg, 1, 65535, &v)) {
				return cli_fail("-p: '%s' is not a port (1..65535)", optarg);
			}
			set->port = (int)v;
			break;
		case 't':
			if (mosquitto_sub_topic_check(optarg) != MOSQ_ERR_SUCCESS) {
				return cli_fail("-t: '%s' is not a valid MQTT topic filter",
						optarg);
			}
			if (set->n_filters == MAX_FILTERS) {
				return cli_fail("-t: at most %d filters", MAX_FILTERS);
			}
			set->filters[set->n_filters++] = optarg;
			break;
		case 'q':
			if (!cli_parse_uint(optarg, 0, 2, &v)) {
				return cli_fail("-q: '%s' is not a QoS (0, 1 or 2)", optarg);
			}
			set->qos = (int)v;
			break;
		case 'i':
			if (optarg[0] == '\0' || strlen(optarg) > 65535) {
				return cli_fail("-i: a client id of 1..65535 bytes, not '%s'",
						optarg);
			}
			set->client_id = optarg;
			break;
		case 'b':
			if (optarg[0] == '\0') {
				return cli_fail("-b: the bootstrap servers are empty");
			}
			set->bootstrap = optarg;
			break;
		case 'T':
			if (!kafka_topic__is_legal(optarg, strlen(optarg))) {
				return cli_fail("-T: '%s' is not a Kafka topic name "
						"(" KAFKA_TOPIC_RULE ")",
						optarg);
			}
			set->topic = optarg;
			break;
		case 'X':
			if (cli_props_add(&set->props, optarg) != 0) {
				return CLI_EXIT_USAGE;
			}
			break;
		case OPT_KEY:
			if (strcmp(optarg, "topic") == 0) {
				set->key = KEY_TOPIC;
			} else if (strcmp(optarg, "none") == 0) {
				set->key = KEY_NONE;
			} else {
				return cli_fail("--key: '%s' is not none or topic", optarg);
			}
			break;
		case OPT_POLL_SLEEP:
			if (!cli_parse_uint(optarg, 0, MAX_POLL_SLEEP_MS, &v)) {
				return cli_fail(
					"--poll-sleep-ms: '%s' is not a number of milliseconds "
					"(0..%d)",
					optarg, MAX_POLL_SLEEP_MS);
			}
			set->poll_sleep_ms = (int)v;
			break;
		case 'd':
			if (!cli_parse_seconds(optarg, 1e-3, 1e7, &set->duration)) {
				return cli_fail(
					"-d: '%s' is not a number of seconds (0.001 or more)",
					optarg);
			}
			break;
		case OPT_HELP:
			usage(stdout);
			return 0;
		case 'V': {
			int major, minor, rev;
			mosquitto_lib_version(&major, &minor, &rev);
			printf(HYBRID_NAME " %s (librdkafka %s, libmosquitto %d.%d.%d)\n",
			       MQK_VERSION, rd_kafka_version_str(), major, minor, rev);
			return 0;
		}
		default:
			return cli_getopt_fail(c, argv);
		}
	}
	if (optind < argc) {
		return cli_fail("unexpected argument '%s'", argv[optind]);
	}
	if (set->bootstrap == NULL) {
		return cli_fail("-b: the Kafka bootstrap servers are required");
	}
	if (set->topic == NULL) {
		return cli_fail("-T: the Kafka topic is required");
	}
	if (set->n_filters == 0) {
		set->filters[set->n_filters++] = DEFAULT_FILTER;
	}
	return -1;
}

/* ---- run ---- */

/* ms until at (cli_mono_us()), rounded up, at most cap; 0 when at has passed. */
static int ms_until(uint64_t at, uint64_t now, int cap)
{
	if (at <= now) {
		return 0;
	}
	uint64_t ms = (at - now + 999) / 1000;
	return ms < (uint64_t)cap ? (int)ms : cap;
}

static void print_summary(const struct counts *c)
{
	cJSON *o = cJSON_CreateObject();
	char *text;

	cJSON_AddNumberToObject(o, "received", (double)c->received);
	cJSON_AddNumberToObject(o, "produced", (double)c->produced);
	cJSON_AddNumberToObject(o, "delivered", (double)c->delivered);
	cJSON_AddNumberToObject(o, "failed", (double)c->failed);
	cJSON_AddNumberToObject(o, "dropped", (double)c->dropped);
	cJSON_AddNumberToObject(o, "connects", (double)c->connects);
	cJSON_AddNumberToObject(o, "disconnects", (double)c->disconnects);
	text = cJSON_PrintUnformatted(o);
	if (text) {
		printf("%s\n", text);
	} else {
		/* cJSON out of memory: the same object by hand. */
		printf("{\"received\":%" PRIu64 ",\"produced\":%" PRIu64 ",\"delivered\":%" PRIu64
		       ",\"failed\":%" PRIu64 ",\"dropped\":%" PRIu64 ",\"connects\":%" PRIu64
		       ",\"disconnects\":%" PRIu64 "}\n",
		       c->received, c->produced, c->delivered, c->failed, c->dropped, c->connects,
		       c->disconnects);
	}
	fflush(stdout);
	free(text);
	cJSON_Delete(o);
}

/*
 * After the loop: no more MQTT, what is queued produced (QUEUE_FULL waits bounded by
 * the flush's 10 s), the producer flushed, and every message received settled as
 * delivered, failed or dropped.
 */
static void stop(struct mqtt *m, struct kafka *k, struct queue *q, struct counts *c)
{
	uint64_t end = cli_mono_us() + (uint64_t)FLUSH_MS * 1000;

	mqtt__close(m);
	kafka__produce(k, q, end, NULL);
	uint64_t unreported = kafka__flush(k, ms_until(end, cli_mono_us(), FLUSH_MS));
	if (unreported > 0) {
		fprintf(stderr,
			HYBRID_NAME ": %" PRIu64 " records without a delivery report after %d ms: "
				    "counted as failed\n",
			unreported, FLUSH_MS);
		c->failed += unreported;
	}
	size_t left = queue__clear(q);
	if (left > 0) {
		fprintf(stderr,
			HYBRID_NAME ": %zu messages received and never produced (librdkafka's "
				    "queue stayed full): counted as dropped\n",
			left);
		c->dropped += left;
	}
	kafka__close(k);
}

static int run(const struct settings *set)
{
	struct counts c = {0};
	struct queue q = {0};
	struct kafka *k;
	struct mqtt *m;
	char err[512];
	int status = 0;

	k = kafka__open(set, &c, err, sizeof(err));
	if (k == NULL) {
		return cli_fail("%s", err);
	}
	m = mqtt__open(set, &q, &c, err, sizeof(err));
	if (m == NULL) {
		kafka__close(k);
		return cli_fail("%s", err);
	}
	uint64_t start = cli_mono_us();
	uint64_t end = set->duration > 0 ? start + (uint64_t)(set->duration * 1e6) : 0;
	uint64_t sleep_us = (uint64_t)set->poll_sleep_ms * 1000;
	uint64_t next_round = start + sleep_us;

	while (!stopping) {
		uint64_t now = cli_mono_us();
		int timeout = TICK_MS;
		if (end) {
			if (now >= end) {
				break;
			}
			timeout = ms_until(end, now, timeout);
		}
		if (sleep_us) {
			timeout = ms_until(next_round, now, timeout);
		}
		if (mqtt__poll(m, timeout) < 0) {
			fprintf(stderr, HYBRID_NAME ": poll: %s\n", strerror(errno));
			status = 1;
			break;
		}
		if (sleep_us == 0) {
			kafka__produce(k, &q, 0, &stopping);
		} else if (cli_mono_us() >= next_round) {
			kafka__produce(k, &q, 0, &stopping);
			next_round = cli_mono_us() + sleep_us; /* then sleep again */
		}
		kafka__poll(k);
	}
	stop(m, k, &q, &c);
	print_summary(&c);
	if (status == 0 && (c.failed > 0 || c.dropped > 0)) {
		status = 2;
	}
	return status;
}

int main(int argc, char **argv)
{
	struct settings set = {0};
	int status;

	cli_init(HYBRID_NAME);
	status = parse(argc, argv, &set);
	if (status >= 0) {
		return status;
	}
	cli_on_stop(on_signal);
	signal(SIGPIPE, SIG_IGN); /* a broker gone mid-write: an error, not a death */

	mosquitto_lib_init();
	status = run(&set);
	mosquitto_lib_cleanup();
	return status;
}
