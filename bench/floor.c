/*
 * floor.c - what librdkafka alone costs per record, with the plugin's producer settings
 * and record shape, without the plugin: the floor under "the plugin's CPU per forwarded
 * record" (issue 20: ≤ 1.5 µs over all of mosquitto's threads).
 *
 *   build/bench/mqk-bench-librdkafka-floor -b 127.0.0.1:9092 -n 1000000 -r 250000
 *   build/bench/mqk-bench-librdkafka-floor -b 127.0.0.1:9092 -H none -X linger.ms=20
 *
 * DESIGN
 *
 * The producer is configured as plugin/producer_defaults.h (enable.idempotence, so
 * acks=all; message.timeout.ms 0; murmur2_random; linger.ms 5; one request in flight per
 * connection; queue.buffering.max.messages 2000), then -X name=value in order, as the
 * plugin applies plugin_opt_kafka.* after its defaults. Each record is what plugin/record.c
 * builds for a route with the default key (clientid) and format raw, from an MQTT 3.1.1
 * client without a username and without properties: key "ue-<n>", value the payload
 * (RD_KAFKA_MSG_F_COPY: librdkafka copies it), a CreateTime timestamp, an opaque, and with
 * -H plugin the same 8 headers build_headers adds, by the same names (mosquitto_kafka.h)
 * and value sizes: mqtt.topic "devices/ue-<n>/data", mqtt.client_id "ue-<n>", mqtt.qos
 * "0", mqtt.retain "0", mqtt.broker "bench" and mqtt.route "all" (bench/overhead.py's
 * broker_id and route), mqtt.seq the record's number in decimal, mqtt.boot the start time
 * in µs in decimal. -H none: no headers, to show what they cost.
 *
 * One thread produces and serves the delivery reports, as the plugin's Kafka thread does,
 * and like it not the process's main thread: on the main thread, the same run with
 * headers measured 3x the CPU per record here (13.5 against 4.6 µs at 40,000 records/s,
 * most of the difference in malloc and free of the headers; glibc's main arena is the
 * likely cause, not investigated further). It hands what is due to rd_kafka_producev,
 * calls rd_kafka_poll(rk, 0) every 1024 records and after each round, and naps until the
 * next 1 ms slice (-r: the records due by then; -r 0: flat out, no nap). On QUEUE_FULL
 * it waits in rd_kafka_poll until a delivery report frees room and tries the same record
 * again (the plugin sleeps on its eventfd, which librdkafka's main queue wakes, for the
 * same effect).
 *
 * Measured: one record is produced and delivered first (connection, metadata, producer
 * id), then the clock starts; it stops when the last of the -n records has its delivery
 * report. Printed, one line on stdout: records, seconds, records/s, the process's CPU
 * per record (getrusage RUSAGE_SELF, user + system), the producing thread's
 * (CLOCK_THREAD_CPUTIME_ID), and the rest, i.e. librdkafka's own threads (rdk:main,
 * rdk:broker*). A record that fails, or a report that does not come within 60 s of the
 * last produce, is an error: exit 1.
 *
 * A benchmark, not a test: compare numbers from the same run on the same machine.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "mosquitto_kafka.h"

#include "cli.h"
#include "cli_kafka.h"
#include "producer_defaults.h" /* the plugin's: the same settings */

#define PROG "mqk-bench-librdkafka-floor"
#define SLICE_NS 1000000L  /* pacing: every 1 ms, the records due */
#define POLL_EVERY 1024    /* as plugin/producer.c: reports served at least this often */
#define FIXED_HEADERS 12   /* as plugin/record.c: rd_kafka_headers_new's initial size */
#define WARMUP_TIMEOUT_MS 30000
#define DRAIN_TIMEOUT_MS 60000
#define BROKER_ID "bench" /* bench/overhead.py's broker_id */
#define ROUTE_NAME "all"  /* and its route (route_all) */

struct counts {
	uint64_t delivered;
	uint64_t failed;
	rd_kafka_resp_err_t first_err; /* the first failure's error */
};

static void usage(FILE *fp)
{
	fprintf(fp,
		"Usage: " PROG " -b <bootstrap> [options]\n"
		"\n"
		"Produces records as the plugin's Kafka thread does (its producer defaults, its\n"
		"record shape) and prints the CPU librdkafka needs per record: the floor under\n"
		"the plugin's own cost. One line on stdout per run.\n"
		"\n"
		"Options:\n"
		"  -b <host:port,...>   Kafka bootstrap servers (required)\n"
		"  -t <topic>           Topic (default bench); it must exist or be auto-created\n"
		"  -n <records>         Records measured, 1..1000000000 (default 100000)\n"
		"  -r <msg/s>           Rate, paced every 1 ms; 0 = flat out (default 0)\n"
		"  -s <bytes>           Payload size, 0..1000000 (default 200)\n"
		"  -d <devices>         Client ids ue-0..ue-<devices-1>, round robin: the keys\n"
		"                       (default 1000)\n"
		"  -H none|plugin       Headers: none, or the plugin's 8 (default plugin)\n"
		"  -X <name=value>      librdkafka property, after the plugin's defaults\n"
		"                       (repeatable)\n"
		"  -q                   Quiet: no progress on stderr\n"
		"  -V                   Print versions and exit\n"
		"  -h, --help           Print this help and exit\n"
		"\n"
		"Output: records=<n> seconds=<s> rate=<records/s> cpu_us=<all threads, per\n"
		"record> thread_us=<producing thread> rest_us=<librdkafka's threads> headers=<H>\n"
		"size=<bytes>. Exit 1 on a bad argument or when a record failed.\n");
}

static double cpu_process_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static double clock_s(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t realtime_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Delivery report: counts it. Producing thread (inside rd_kafka_poll). */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
	struct counts *c = opaque;

	(void)rk;
	if (rkm->err) {
		if (c->failed++ == 0) {
			c->first_err = rkm->err;
		}
	} else {
		c->delivered++;
	}
}

/* What one record needs besides the payload; the strings are reused from record to record. */
/*
 * A device's strings, made once (the plugin has them from mosquitto and its templates):
 * what is measured is librdkafka's work, not this program's formatting.
 */
struct device {
	char id[24];    /* "ue-<n>": the key and mqtt.client_id */
	char topic[48]; /* "devices/ue-<n>/data": mqtt.topic */
	int id_len;
	int topic_len;
};

struct shape {
	bool headers;
	uint64_t devices;
	const struct device *device; /* [devices], main's */
	const char *payload;
	size_t payload_len;
	char boot[24];
	size_t boot_len;
};

/* n in decimal into out (at least 21 bytes), as plugin/record.c's record__u64_to_str. */
static size_t u64_to_str(uint64_t n, char *out)
{
	char tmp[20];
	size_t len = 0;

	do {
		tmp[len++] = (char)('0' + n % 10);
		n /= 10;
	} while (n);
	for (size_t i = 0; i < len; i++) {
		out[i] = tmp[len - 1 - i];
	}
	out[len] = '\0';
	return len;
}

/*
 * Produces record number seq (its device: seq % devices), with ts as its timestamp.
 * Retries on QUEUE_FULL after serving delivery reports. Returns 0, or the error of a
 * producev that failed otherwise.
 */
static rd_kafka_resp_err_t produce_one(rd_kafka_t *rk, rd_kafka_topic_t *rkt,
				       const struct shape *sh, uint64_t seq, int64_t ts)
{
	const struct device *d = &sh->device[seq % sh->devices];
	rd_kafka_headers_t *hdrs = NULL;
	rd_kafka_resp_err_t err;

	if (sh->headers) {
		/* As plugin/record.c's build_headers; librdkafka copies names and values. */
		char seq_str[24];
		size_t seq_len = u64_to_str(seq, seq_str);
		hdrs = rd_kafka_headers_new(FIXED_HEADERS);
		rd_kafka_header_add(hdrs, MQK_HDR_TOPIC, -1, d->topic, d->topic_len);
		rd_kafka_header_add(hdrs, MQK_HDR_CLIENT_ID, -1, d->id, d->id_len);
		rd_kafka_header_add(hdrs, MQK_HDR_QOS, -1, "0", 1);
		rd_kafka_header_add(hdrs, MQK_HDR_RETAIN, -1, "0", 1);
		rd_kafka_header_add(hdrs, MQK_HDR_BROKER, -1, BROKER_ID, sizeof(BROKER_ID) - 1);
		rd_kafka_header_add(hdrs, MQK_HDR_ROUTE, -1, ROUTE_NAME, sizeof(ROUTE_NAME) - 1);
		rd_kafka_header_add(hdrs, MQK_HDR_SEQ, -1, seq_str, (ssize_t)seq_len);
		rd_kafka_header_add(hdrs, MQK_HDR_BOOT, -1, sh->boot, (ssize_t)sh->boot_len);
	}
	for (;;) {
		/* librdkafka takes hdrs only when producev succeeds: on QUEUE_FULL, still ours. */
		if (hdrs) {
			err = rd_kafka_producev(
				rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
				RD_KAFKA_V_VALUE((void *)sh->payload, sh->payload_len),
				RD_KAFKA_V_KEY(d->id, (size_t)d->id_len), RD_KAFKA_V_HEADERS(hdrs),
				RD_KAFKA_V_TIMESTAMP(ts),
				RD_KAFKA_V_OPAQUE((void *)(uintptr_t)(seq + 1)),
				RD_KAFKA_V_END);
		} else {
			err = rd_kafka_producev(
				rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
				RD_KAFKA_V_VALUE((void *)sh->payload, sh->payload_len),
				RD_KAFKA_V_KEY(d->id, (size_t)d->id_len), RD_KAFKA_V_TIMESTAMP(ts),
				RD_KAFKA_V_OPAQUE((void *)(uintptr_t)(seq + 1)), RD_KAFKA_V_END);
		}
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
			break;
		}
		rd_kafka_poll(rk, 10); /* returns once a report (or anything) was served */
	}
	if (err && hdrs) {
		rd_kafka_headers_destroy(hdrs);
	}
	return err;
}

/* Serves reports until done() reports are in, at most timeout_ms. Returns whether they are. */
static bool wait_reports(rd_kafka_t *rk, const struct counts *c, uint64_t done, int timeout_ms)
{
	uint64_t deadline = cli_mono_us() + (uint64_t)timeout_ms * 1000u;

	while (c->delivered + c->failed < done) {
		if (cli_mono_us() >= deadline) {
			return false;
		}
		rd_kafka_poll(rk, 100);
	}
	return true;
}

/* The producer and what one run needs; main's, lent to the producing thread. */
struct bench {
	rd_kafka_t *rk;
	rd_kafka_topic_t *rkt;
	struct shape sh;
	struct counts *counts; /* main's: the delivery reports' opaque */
	uint64_t records;
	uint64_t rate;
	bool quiet;
	bool ok; /* set by the thread: the run was measured and printed */
};

/*
 * The producing thread: a thread of its own, as the plugin's Kafka thread is (and so with
 * a malloc arena of its own, as there). Warms up, then produces and measures; prints the
 * result line. Leaves b->ok false after printing why not.
 */
static void *run(void *arg)
{
	struct bench *b = arg;
	rd_kafka_resp_err_t err = produce_one(b->rk, b->rkt, &b->sh, 0, realtime_ms());
	if (err) {
		cli_fail("producing the first record: %s", rd_kafka_err2str(err));
		return NULL;
	}
	if (!wait_reports(b->rk, b->counts, 1, WARMUP_TIMEOUT_MS) || b->counts->failed) {
		if (b->counts->failed) {
			cli_fail("the first record failed: %s",
				 rd_kafka_err2str(b->counts->first_err));
		} else {
			cli_fail("the first record has no delivery report after %d s (is Kafka at "
				 "-b?)",
				 WARMUP_TIMEOUT_MS / 1000);
		}
		return NULL;
	}

	/* The clock starts: the connection, the metadata and the producer id are done. */
	double t0 = clock_s(CLOCK_MONOTONIC), p0 = cpu_process_s();
	double th0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
	uint64_t sent = 0, last_progress = cli_mono_us();
	struct timespec slice;
	clock_gettime(CLOCK_MONOTONIC, &slice);
	while (sent < b->records) {
		uint64_t due = b->records;
		if (b->rate > 0) {
			double due_f = (clock_s(CLOCK_MONOTONIC) - t0) * (double)b->rate;
			due = due_f < (double)b->records ? (uint64_t)due_f + 1 : b->records;
		}
		int64_t ts = realtime_ms();
		while (sent < due) {
			err = produce_one(b->rk, b->rkt, &b->sh, sent + 1, ts);
			if (err) {
				cli_fail("record %" PRIu64 ": %s", sent + 1, rd_kafka_err2str(err));
				return NULL;
			}
			if (++sent % POLL_EVERY == 0) {
				rd_kafka_poll(b->rk, 0);
			}
		}
		rd_kafka_poll(b->rk, 0);
		if (!b->quiet && cli_mono_us() - last_progress >= 1000000) {
			last_progress = cli_mono_us();
			fprintf(stderr, "%" PRIu64 " produced, %" PRIu64 " delivered\n", sent,
				b->counts->delivered - 1);
		}
		if (b->rate > 0 && sent < b->records) {
			slice.tv_nsec += SLICE_NS;
			if (slice.tv_nsec >= 1000000000L) {
				slice.tv_sec++;
				slice.tv_nsec -= 1000000000L;
			}
			while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &slice, NULL) ==
			       EINTR) {
			}
		}
	}
	if (!wait_reports(b->rk, b->counts, b->records + 1, DRAIN_TIMEOUT_MS)) {
		cli_fail("%" PRIu64 " of %" PRIu64 " records without a delivery report %d s after "
			 "the last was produced",
			 b->records + 1 - b->counts->delivered - b->counts->failed, b->records,
			 DRAIN_TIMEOUT_MS / 1000);
		return NULL;
	}
	double t1 = clock_s(CLOCK_MONOTONIC), p1 = cpu_process_s();
	double th1 = clock_s(CLOCK_THREAD_CPUTIME_ID);
	if (b->counts->failed) {
		cli_fail("%" PRIu64 " of %" PRIu64 " records failed, the first with: %s",
			 b->counts->failed, b->records, rd_kafka_err2str(b->counts->first_err));
		return NULL;
	}
	double per = 1e6 / (double)b->records;
	printf("records=%" PRIu64 " seconds=%.3f rate=%.0f cpu_us=%.3f thread_us=%.3f "
	       "rest_us=%.3f headers=%s size=%" PRIu64 "\n",
	       b->records, t1 - t0, (double)b->records / (t1 - t0), (p1 - p0) * per,
	       (th1 - th0) * per, ((p1 - p0) - (th1 - th0)) * per,
	       b->sh.headers ? "plugin" : "none",
	       (uint64_t)b->sh.payload_len);
	fflush(stdout);
	b->ok = true;
	return NULL;
}

int main(int argc, char **argv)
{
	const char *bootstrap = NULL, *topic_name = "bench";
	uint64_t records = 100000, rate = 0, size = 200, devices = 1000;
	bool headers = true, quiet = false;
	struct cli_props props = {0};
	struct counts counts = {0};
	struct shape sh = {0};
	char errstr[512];
	int c;

	static const struct option long_opts[] = {{"help", no_argument, NULL, 'h'},
						  {NULL, 0, NULL, 0}};

	cli_init(PROG);
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":b:t:n:r:s:d:H:X:qVh", long_opts, NULL)) != -1) {
		switch (c) {
		case 'b':
			if (optarg[0] == '\0') {
				return cli_fail("-b: empty bootstrap servers");
			}
			bootstrap = optarg;
			break;
		case 't':
			if (optarg[0] == '\0') {
				return cli_fail("-t: empty topic");
			}
			topic_name = optarg;
			break;
		case 'n':
			if (!cli_parse_uint(optarg, 1, 1000000000, &records)) {
				return cli_fail(
					"-n: '%s' is not a number of records (1..1000000000)",
					optarg);
			}
			break;
		case 'r':
			if (!cli_parse_uint(optarg, 0, 100000000, &rate)) {
				return cli_fail("-r: '%s' is not a rate in msg/s (0..100000000, 0: "
						"flat out)",
						optarg);
			}
			break;
		case 's':
			if (!cli_parse_uint(optarg, 0, 1000000, &size)) {
				return cli_fail(
					"-s: '%s' is not a payload size in bytes (0..1000000)",
					optarg);
			}
			break;
		case 'd':
			if (!cli_parse_uint(optarg, 1, 1000000, &devices)) {
				return cli_fail("-d: '%s' is not a number of devices (1..1000000)",
						optarg);
			}
			break;
		case 'H':
			if (strcmp(optarg, "none") == 0) {
				headers = false;
			} else if (strcmp(optarg, "plugin") == 0) {
				headers = true;
			} else {
				return cli_fail("-H: '%s' is not a headers mode (none, plugin)",
						optarg);
			}
			break;
		case 'X':
			if (cli_props_add(&props, optarg)) {
				return CLI_EXIT_USAGE;
			}
			break;
		case 'q':
			quiet = true;
			break;
		case 'V':
			printf(PROG " %s (librdkafka %s)\n", MQK_VERSION, rd_kafka_version_str());
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			return cli_getopt_fail(c, argv);
		}
	}
	if (optind < argc) {
		return cli_fail("unexpected argument '%s' (see -h)", argv[optind]);
	}
	if (bootstrap == NULL) {
		return cli_fail("-b: bootstrap servers are required (see -h)");
	}

	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	for (size_t i = 0; i < MQK_PRODUCER_DEFAULT_COUNT; i++) {
		if (cli_conf_set(conf, mqk_producer_defaults[i].name, mqk_producer_defaults[i].value,
				 errstr, sizeof(errstr))) {
			rd_kafka_conf_destroy(conf);
			return cli_fail("plugin default %s", errstr);
		}
	}
	if (cli_kafka_apply(conf, bootstrap, &props, errstr, sizeof(errstr))) {
		rd_kafka_conf_destroy(conf);
		return cli_fail("%s", errstr);
	}
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	rd_kafka_conf_set_opaque(conf, &counts);
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (rk == NULL) { /* conf is still ours */
		rd_kafka_conf_destroy(conf);
		return cli_fail("librdkafka refused the configuration: %s", errstr);
	}
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic_name, NULL);
	if (rkt == NULL) {
		rd_kafka_destroy(rk);
		return cli_fail("-t %s: %s", topic_name, rd_kafka_err2str(rd_kafka_last_error()));
	}

	char *payload = malloc(size ? size : 1); /* main's; freed at the end */
	if (payload == NULL) {
		cli_die("out of memory");
	}
	for (uint64_t i = 0; i < size; i++) {
		payload[i] = (char)('a' + i % 26);
	}
	struct device *device = calloc(devices, sizeof(*device)); /* main's; freed at the end */
	if (device == NULL) {
		cli_die("out of memory");
	}
	for (uint64_t i = 0; i < devices; i++) {
		device[i].id_len = snprintf(device[i].id, sizeof(device[i].id), "ue-%" PRIu64, i);
		device[i].topic_len = snprintf(device[i].topic, sizeof(device[i].topic),
					       "devices/ue-%" PRIu64 "/data", i);
	}
	sh.device = device;
	sh.headers = headers;
	sh.devices = devices;
	sh.payload = payload;
	sh.payload_len = size;
	struct timespec boot;
	clock_gettime(CLOCK_REALTIME, &boot); /* the plugin's boot string: µs, in decimal */
	sh.boot_len = u64_to_str((uint64_t)boot.tv_sec * 1000000u + (uint64_t)boot.tv_nsec / 1000u,
				 sh.boot);

	struct bench b = {.rk = rk,
			  .rkt = rkt,
			  .sh = sh,
			  .counts = &counts,
			  .records = records,
			  .rate = rate,
			  .quiet = quiet};
	pthread_t thread;
	int rc = pthread_create(&thread, NULL, run, &b);
	if (rc != 0) {
		cli_fail("pthread_create: %s", strerror(rc));
	} else {
		pthread_join(thread, NULL);
	}
	int status = b.ok ? 0 : 1;
	rd_kafka_topic_destroy(rkt);
	if (status != 0) {
		rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	}
	rd_kafka_flush(rk, 5000);
	rd_kafka_destroy(rk);
	free(payload);
	free(device);
	return status;
}
