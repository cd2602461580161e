/*
 * mqk-devkafka - a throw-away Kafka cluster on 127.0.0.1, for the demo, the tests and
 * your own experiments with mosquitto-kafka.
 *
 * It runs librdkafka's mock cluster (rdkafka_mock.h) in its own process: N brokers,
 * each a real TCP listener on 127.0.0.1 on an ephemeral port, that any Kafka client on
 * this machine can produce to and consume from (kcat, the plugin, confluent-kafka).
 * Nothing is written to disk and nothing listens beyond the loopback interface.
 *
 *   mqk-devkafka --brokers 3 --topic spectrum:6 --topic device-status:6 \
 *                --bootstrap-file /tmp/kafka.bootstrap &
 *   kcat -b "$(cat /tmp/kafka.bootstrap)" -L
 *   kill -USR1 %1                # every broker goes down (connections closed, refused)
 *   kill -USR2 %1                # and comes back, on the same ports, with its data
 *   kill %1                      # SIGINT or SIGTERM: exits 0
 *
 * It prints the bootstrap servers ("127.0.0.1:port,...") as one line on stdout as soon
 * as the cluster listens, and with --bootstrap-file also writes them to a file (written
 * to a temporary name and renamed, so a reader polling for the file never sees half of
 * it). Then it waits for signals: SIGUSR1 takes every broker down (an outage, as the
 * plugin sees one: connections closed and refused), SIGUSR2 brings them back on the same
 * ports with the data they had; SIGINT or SIGTERM stops it.
 *
 * Topics: --topic name:partitions creates a topic with that many partitions and a
 * replication factor of min(3, brokers). Any other topic is auto-created by the mock
 * cluster the first time a client names it in a metadata request: a producer (the
 * plugin included), a consumer, even `kcat -L -t name`. It then gets the mock cluster's
 * defaults: DEFAULT_AUTO_PARTITIONS (4) partitions, replication min(3, brokers). So a
 * typo in a topic name does not fail, it makes a new topic; pre-create the topics whose
 * partition count matters. Listing all topics (`kcat -L`) creates nothing.
 *
 * The bootstrap file is removed again when the tool exits on SIGINT/SIGTERM, so a file
 * that exists names a cluster that runs.
 *
 * What the mock cluster is not: it has no CreateTopics/Admin API, no SASL/TLS, no
 * persistence and no real replication (the replicas exist in metadata only).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "mosquitto_kafka.h"

#include "cli.h"
#include "kafka_topic.h"

#define DEFAULT_BROKERS 3
#define MAX_BROKERS 64
#define MAX_PARTITIONS 10000
#define MAX_TOPICS 256
/* The mock cluster's own default for topics it auto-creates (librdkafka 2.0.2). */
#define DEFAULT_AUTO_PARTITIONS 4

struct topic_spec {
	const char *name;
	int partitions;
};

static const char *progname = "mqk-devkafka";
static int verbosity = 1; /* 0: -q, 1: default, 2+: -v */

static void usage(FILE *fp)
{
	fprintf(fp,
		"Usage: %s [options]\n"
		"\n"
		"Runs a librdkafka mock Kafka cluster on 127.0.0.1 until SIGINT or SIGTERM.\n"
		"Prints the bootstrap servers as one line on stdout once it listens.\n"
		"\n"
		"Options:\n"
		"  -b, --brokers <n>            Number of brokers, 1..%d (default %d)\n"
		"  -t, --topic <name:parts>     Create a topic with <parts> partitions, 1..%d, and "
		"a\n"
		"                               replication factor of min(3, brokers). "
		"Repeatable.\n"
		"  -f, --bootstrap-file <path>  Also write the bootstrap servers to <path>\n"
		"                               (atomically: written to a temporary file, "
		"renamed;\n"
		"                               removed again at exit)\n"
		"  -q                           Quiet: no messages on stderr except errors\n"
		"  -v                           Verbose: librdkafka's debug log on stderr (repeat: "
		"more)\n"
		"  -V                           Print versions and exit\n"
		"  -h, --help                   Print this help and exit\n"
		"\n"
		"Any other topic is created the first time a client names it (a producer, a\n"
		"consumer, `kcat -L -t name`; not `kcat -L`), with %d partitions and a "
		"replication\n"
		"factor of min(3, brokers): a misspelt topic makes a new one, it does not fail.\n"
		"The bootstrap file is removed when the tool exits.\n"
		"Signals: SIGUSR1 takes every broker down (an outage), SIGUSR2 brings them back\n"
		"on the same ports with their data; SIGINT/SIGTERM stop the cluster.\n"
		"No disk, no TLS/SASL, no Admin API; replication exists only in metadata.\n"
		"\n"
		"Example:\n"
		"  %s --topic spectrum:6 --bootstrap-file /tmp/kafka.bootstrap &\n"
		"  kcat -b \"$(cat /tmp/kafka.bootstrap)\" -L\n",
		progname, MAX_BROKERS, DEFAULT_BROKERS, MAX_PARTITIONS, DEFAULT_AUTO_PARTITIONS,
		progname);
}

static void inform(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void inform(const char *fmt, ...)
{
	va_list ap;

	if (verbosity < 1)
		return;
	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* A whole decimal number in min..max (cli.h). */
static bool parse_int(const char *s, int min, int max, int *out)
{
	uint64_t v;

	if (!cli_parse_uint(s, (uint64_t)min, (uint64_t)max, &v))
		return false;
	*out = (int)v;
	return true;
}

/* "name:partitions" -> spec; the name is a copy, never freed (it lives until exit). */
static void parse_topic(const char *optval, struct topic_spec *spec)
{
	char *arg = strdup(optval);
	char *colon;

	if (arg == NULL)
		cli_die("out of memory");
	colon = strrchr(arg, ':');
	if (colon == NULL)
		cli_usage_exit("--topic '%s': expected <name>:<partitions>, e.g. spectrum:6", arg);
	*colon = '\0';
	if (!kafka_topic__is_legal(arg, strlen(arg)))
		cli_usage_exit("--topic '%s': not a legal Kafka topic name (" KAFKA_TOPIC_RULE ")",
			       arg);
	if (!parse_int(colon + 1, 1, MAX_PARTITIONS, &spec->partitions))
		cli_usage_exit("--topic %s: '%s' is not a number of partitions (1..%d)", arg,
			       colon + 1, MAX_PARTITIONS);
	spec->name = arg;
}

/* Writes "<bootstraps>\n" to path via path.tmp.<pid> and rename(2). */
static void write_bootstrap_file(const char *path, const char *bootstraps)
{
	char tmp[PATH_MAX];
	FILE *fp;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp))
		cli_die("--bootstrap-file '%s': path too long", path);
	fp = fopen(tmp, "w");
	if (fp == NULL)
		cli_die("--bootstrap-file: cannot create '%s': %s", tmp, strerror(errno));
	if (fprintf(fp, "%s\n", bootstraps) < 0 || fflush(fp) != 0 || fsync(fileno(fp)) != 0) {
		int err = errno;
		fclose(fp);
		unlink(tmp);
		cli_die("--bootstrap-file: cannot write '%s': %s", tmp, strerror(err));
	}
	if (fclose(fp) != 0) {
		int err = errno;
		unlink(tmp);
		cli_die("--bootstrap-file: cannot write '%s': %s", tmp, strerror(err));
	}
	if (rename(tmp, path) != 0) {
		int err = errno;
		unlink(tmp);
		cli_die("--bootstrap-file: cannot rename '%s' to '%s': %s", tmp, path,
			strerror(err));
	}
}

/*
 * librdkafka's log, from any of its threads. Its own handle never connects anywhere
 * (it only hosts the mock cluster), so its complaints about that are noise.
 */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void)rk;
	if (verbosity < 2 && level > 4 /* LOG_WARNING */)
		return;
	if (verbosity < 2 && strstr(buf, "bootstrap.servers") != NULL)
		return;
	fprintf(stderr, "%s: librdkafka %d %s: %s\n", progname, level, fac, buf);
}

int main(int argc, char **argv)
{
	static const struct option long_opts[] = {
		{"brokers", required_argument, NULL, 'b'},
		{"topic", required_argument, NULL, 't'},
		{"bootstrap-file", required_argument, NULL, 'f'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	struct topic_spec topics[MAX_TOPICS];
	int topic_count = 0;
	int brokers = DEFAULT_BROKERS;
	const char *bootstrap_file = NULL;
	char errstr[512];
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	rd_kafka_mock_cluster_t *mcluster;
	const char *bootstraps;
	sigset_t sigs;
	int sig = 0;
	int opt;

	if (argc > 0 && argv[0] != NULL) {
		const char *slash = strrchr(argv[0], '/');
		progname = slash != NULL ? slash + 1 : argv[0];
	}
	cli_init(progname);

	opterr = 0; /* our own error lines (cli.h) */
	while ((opt = getopt_long(argc, argv, ":b:t:f:qvVh", long_opts, NULL)) != -1) {
		switch (opt) {
		case 'b':
			if (!parse_int(optarg, 1, MAX_BROKERS, &brokers))
				cli_usage_exit("--brokers '%s': not a number of brokers (1..%d)",
					       optarg, MAX_BROKERS);
			break;
		case 't':
			if (topic_count == MAX_TOPICS)
				cli_usage_exit("--topic: at most %d topics", MAX_TOPICS);
			parse_topic(optarg, &topics[topic_count++]);
			break;
		case 'f':
			if (*optarg == '\0')
				cli_usage_exit("--bootstrap-file: empty path");
			bootstrap_file = optarg;
			break;
		case 'q':
			verbosity = 0;
			break;
		case 'v':
			verbosity++;
			break;
		case 'V':
			printf("%s %s (librdkafka %s)\n", progname, MQK_VERSION,
			       rd_kafka_version_str());
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			exit(cli_getopt_fail(opt, argv));
		}
	}
	if (optind < argc)
		cli_usage_exit("unexpected argument '%s'", argv[optind]);
	for (int i = 0; i < topic_count; i++)
		for (int j = 0; j < i; j++)
			if (strcmp(topics[i].name, topics[j].name) == 0)
				cli_usage_exit("--topic %s: given twice", topics[i].name);

	/*
	 * Block the signals before librdkafka starts its threads, which inherit the mask:
	 * only sigwait() below takes SIGINT/SIGTERM, on this thread.
	 */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGUSR1);
	sigaddset(&sigs, SIGUSR2);
	if (pthread_sigmask(SIG_BLOCK, &sigs, NULL) != 0)
		cli_die("cannot block SIGINT/SIGTERM/SIGUSR1/SIGUSR2");
	/* A reader of our stdout that goes away must not kill us silently mid-run. */
	signal(SIGPIPE, SIG_IGN);

	/* The mock cluster needs a client handle to live in; this one never connects. */
	conf = rd_kafka_conf_new();
	rd_kafka_conf_set_log_cb(conf, log_cb);
	if (verbosity >= 3 && rd_kafka_conf_set(conf, "debug", "broker,protocol,mock", errstr,
						sizeof(errstr)) != RD_KAFKA_CONF_OK)
		cli_die("%s", errstr);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (rk == NULL)
		cli_die("cannot create the librdkafka handle: %s", errstr); /* conf is still ours */

	mcluster = rd_kafka_mock_cluster_new(rk, brokers);
	if (mcluster == NULL) {
		rd_kafka_destroy(rk);
		cli_die("cannot create a mock cluster of %d brokers", brokers);
	}

	for (int i = 0; i < topic_count; i++) {
		int replication = brokers < 3 ? brokers : 3;
		rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(
			mcluster, topics[i].name, topics[i].partitions, replication);
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			rd_kafka_mock_cluster_destroy(mcluster);
			rd_kafka_destroy(rk);
			cli_die("cannot create topic %s: %s", topics[i].name,
				rd_kafka_err2str(err));
		}
		inform("topic %s: %d partitions, replication factor %d", topics[i].name,
		     topics[i].partitions, replication);
	}

	bootstraps = rd_kafka_mock_cluster_bootstraps(mcluster);
	if (bootstrap_file != NULL)
		write_bootstrap_file(bootstrap_file, bootstraps);
	printf("%s\n", bootstraps);
	fflush(stdout);
	inform("%d broker(s) listening on %s; SIGINT or SIGTERM to stop", brokers, bootstraps);

	for (;;) {
		int rc = sigwait(&sigs, &sig);
		if (rc != 0) {
			if (rc != EINTR)
				cli_die("sigwait: %s", strerror(rc));
			continue;
		}
		if (sig == SIGUSR1 || sig == SIGUSR2) {
			bool up = sig == SIGUSR2;
			rd_kafka_resp_err_t err = up ? rd_kafka_mock_broker_set_up(mcluster, -1)
						     : rd_kafka_mock_broker_set_down(mcluster, -1);
			if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
				cli_die("cannot set the brokers %s: %s", up ? "up" : "down",
					rd_kafka_err2str(err));
			inform("%s: every broker is %s", strsignal(sig), up ? "up" : "down");
			continue;
		}
		break;
	}
	inform("%s: stopping", strsignal(sig));

	rd_kafka_mock_cluster_destroy(mcluster);
	rd_kafka_destroy(rk);
	if (bootstrap_file != NULL)
		unlink(bootstrap_file);
	return 0;
}
