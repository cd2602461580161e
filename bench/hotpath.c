/*
 * hotpath.c - what the plugin costs mosquitto's thread per message.
 *
 * It compiles plugin/plugin.c in (so it measures the real MOSQ_EVT_MESSAGE and TICK
 * callbacks, not a copy of them), loads the plugin with mosquitto_plugin_init as the
 * broker does, and calls the MESSAGE callback for N messages from 200 client ids, with
 * a TICK every 16 messages as under load. Kafka is librdkafka's in-process mock cluster
 * (kafka.test.mock.num.brokers=1). It prints, per scenario, the calling thread's CPU
 * time per message (CLOCK_THREAD_CPUTIME_ID: what the plugin costs mosquitto's thread;
 * the Kafka thread and librdkafka's run beside it), its wall time per message, how
 * many records per second reached Kafka end to end, and checks every record was
 * delivered. The "selector routes" scenarios have routes whose filter matches every
 * message and whose selectors (qos=1 clientid=ue-<n>-*) refuse it, but one
 * (clientid=ue-*): next to "topic routes", whose filters refuse it, they show what
 * selectors cost per route.
 *
 *   build/bench/mqk-bench-hotpath [messages [scenario]]   (default 200000, all scenarios)
 *
 * A benchmark, not a test: numbers depend on the machine; compare them in one run.
 */
#include "../plugin/plugin.c"

#include "fake_broker.h" /* struct mosquitto, the broker functions */

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define CLIENTS 200
#define TICK_EVERY 16

static double seconds(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct scenario {
	const char *name;
	const char *prefix; /* topics are <prefix>/<client id>/data */
	int extra_routes;   /* routes that never match, before the one that does */
	const char *route;  /* the route that matches */
	const char *fsync;  /* NULL: durability memory; else journal with this journal_fsync */
	bool selectors;     /* the extra routes match the topic, their selectors refuse it */
};

static int run(const struct scenario *sc, int messages)
{
	static struct mosquitto clients[CLIENTS];
	struct mosquitto_opt opts[1100];
	char names[1100][48], values[1100][96];
	int n = 0;
	void *userdata = NULL;
	char topics[CLIENTS][64];
	char payload[100];

	memset(payload, 'x', sizeof(payload));
#define OPT(k, v)                                                                                  \
	do {                                                                                       \
		snprintf(names[n], sizeof(names[n]), "%s", k);                                     \
		snprintf(values[n], sizeof(values[n]), "%s", v);                                   \
		opts[n] = (struct mosquitto_opt){names[n], values[n]};                             \
		n++;                                                                               \
	} while (0)
	OPT("bootstrap_servers", "127.0.0.1:9");
	OPT("broker_id", "bench");
	OPT("stats_interval", "1");
	OPT("kafka.test.mock.num.brokers", "1");
	OPT("kafka.queue.buffering.max.messages", "2000000");
	for (int i = 0; i < sc->extra_routes; i++) {
		char key[48], value[96];
		snprintf(key, sizeof(key), "route_other%d", i);
		if (sc->selectors) {
			/* The worst case for selectors: the filter matches, so qos= and the
			   clientid= glob are looked at, the glob refuses within its first
			   characters. */
			snprintf(value, sizeof(value), "%s/# -> other%d qos=1 clientid=ue-%d-*",
				 sc->prefix, i, i);
		} else {
			snprintf(value, sizeof(value), "other/%d/+/data -> other%d", i, i);
		}
		OPT(key, value);
	}
	OPT("route_bench", sc->route);
	char journal_dir[] = "/tmp/mqk-bench-journal-XXXXXX";
	if (sc->fsync == NULL) {
		OPT("durability", "memory");
	} else {
		if (mkdtemp(journal_dir) == NULL) {
			fprintf(stderr, "Error: mkdtemp: %s\n", strerror(errno));
			return -1;
		}
		OPT("durability", "journal");
		OPT("journal_dir", journal_dir);
		OPT("journal_fsync", sc->fsync);
	}

	if (mosquitto_plugin_init(NULL, &userdata, opts, n) != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "Error: init failed for %s\n", sc->name);
		return -1;
	}
	struct mqk_plugin *pl = userdata;
	for (int c = 0; c < CLIENTS; c++) {
		snprintf(clients[c].id, sizeof(clients[c].id), "ue-%05d", c);
		snprintf(topics[c], sizeof(topics[c]), "%s/%s/data", sc->prefix, clients[c].id);
	}

	double cpu0 = seconds(CLOCK_THREAD_CPUTIME_ID), wall0 = seconds(CLOCK_MONOTONIC);
	for (int i = 0; i < messages; i++) {
		struct mosquitto_evt_message ev = {
			.client = &clients[i % CLIENTS],
			.topic = topics[i % CLIENTS],
			.payload = payload,
			.payloadlen = sizeof(payload),
			.qos = 1,
		};
		on_message(MOSQ_EVT_MESSAGE, &ev, pl);
		if (i % TICK_EVERY == 0) {
			on_tick(MOSQ_EVT_TICK, NULL, pl);
		}
	}
	double cpu = seconds(CLOCK_THREAD_CPUTIME_ID) - cpu0;
	double wall = seconds(CLOCK_MONOTONIC) - wall0;

	/* The Kafka thread produces and counts deliveries; wait for it (30 s at most). */
	uint64_t expected = !strcmp(sc->prefix, "nothing") ? 0 : (uint64_t)messages;
	for (double end = seconds(CLOCK_MONOTONIC) + 30;
	     counter__get(&pl->stats.totals.delivered) < expected &&
	     seconds(CLOCK_MONOTONIC) < end;) {
		on_tick(MOSQ_EVT_TICK, NULL, pl);
		usleep(1000);
	}
	double drained = seconds(CLOCK_MONOTONIC) - wall0;
	uint64_t produced = counter__get(&pl->stats.totals.produced);
	uint64_t delivered = counter__get(&pl->stats.totals.delivered);
	printf("| %-34s | %7.0f | %7.0f | %8.0f | %9llu | %9llu |\n", sc->name,
	       cpu / messages * 1e9, wall / messages * 1e9, messages / drained,
	       (unsigned long long)produced, (unsigned long long)delivered);
	mosquitto_plugin_cleanup(userdata, opts, n);
	if (sc->fsync != NULL) {
		char cmd[64];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", journal_dir);
		(void)!system(cmd);
	}
	if (delivered != expected) {
		fprintf(stderr, "Error: %s: %llu delivered, %llu expected\n", sc->name,
			(unsigned long long)delivered, (unsigned long long)expected);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	int messages = argc > 1 ? atoi(argv[1]) : 200000;
	static const struct scenario scenarios[] = {
		{"no route matches", "nothing", 0, "bench/# -> bench", NULL, false},
		{"raw, 1 route", "bench", 0, "bench/# -> bench", NULL, false},
		{"raw, key=topic, topic mqtt.{1}", "bench", 0, "bench/+/data -> mqtt.{1} key=topic",
		 NULL, false},
		{"json envelope, 1 route", "bench", 0, "bench/# -> bench format=json", NULL, false},
		{"raw, 1 of 100 routes matches", "bench", 99, "bench/# -> bench", NULL, false},
		/* Routes by client (clientid=, qos=): the cost of selectors next to topics. */
		{"topic routes, 1 of 1 matches", "bench", 0, "bench/# -> bench", NULL, false},
		{"topic routes, 1 of 10 matches", "bench", 9, "bench/# -> bench", NULL, false},
		{"topic routes, 1 of 100 matches", "bench", 99, "bench/# -> bench", NULL, false},
		{"selector routes, 1 of 1 matches", "bench", 0, "bench/# -> bench clientid=ue-*",
		 NULL, true},
		{"selector routes, 1 of 10 matches", "bench", 9, "bench/# -> bench clientid=ue-*",
		 NULL, true},
		{"selector routes, 1 of 100 matches", "bench", 99, "bench/# -> bench clientid=ue-*",
		 NULL, true},
		{"raw, 1 route, journal fsync never", "bench", 0, "bench/# -> bench", "never",
		 false},
		{"raw, 1 route, journal fsync 1000", "bench", 0, "bench/# -> bench", "1000", false},
	};
	int rc = 0;

	if (messages <= 0) {
		fprintf(stderr, "Error: messages must be a positive number\n");
		return 1;
	}
	printf("%d messages of 100 bytes from %d clients, QoS 1, a TICK every %d messages\n\n",
	       messages, CLIENTS, TICK_EVERY);
	printf("| scenario                           | ns/msg CPU | ns/msg wall | records/s "
	       "| produced | delivered |\n");
	printf("|---|---:|---:|---:|---:|---:|\n");
	/* A name given whole runs that scenario alone; otherwise every one containing it. */
	size_t n = sizeof(scenarios) / sizeof(scenarios[0]);
	bool exact = false;
	for (size_t i = 0; argc > 2 && i < n; i++) {
		exact |= !strcmp(scenarios[i].name, argv[2]);
	}
	for (size_t i = 0; i < n; i++) {
		if (argc > 2 && (exact ? strcmp(scenarios[i].name, argv[2]) != 0
				       : !strstr(scenarios[i].name, argv[2]))) {
			continue;
		}
		rc |= run(&scenarios[i], messages);
	}
	return rc ? 1 : 0;
}
