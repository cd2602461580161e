/*
 * latency.c - where a record's milliseconds go inside the plugin, as Prometheus
 * histograms in /metrics.
 *
 * A record's way: mosquitto's thread captures the message (capture.c, stamped with
 * the receive time it already reads for the record's timestamp: CLOCK_REALTIME, µs,
 * kept as timestamp_ms plus the sub-millisecond part in the entry), the Kafka thread
 * hands it to rd_kafka_producev (librdkafka stamps that itself, CLOCK_MONOTONIC, µs)
 * and serves its delivery report when Kafka acknowledged it. At that report, on the
 * Kafka thread, this file observes
 *
 *   capture_to_produce  capture -> rd_kafka_producev  (the buffer, the Kafka thread's naps)
 *   produce_to_ack      rd_kafka_producev -> delivery report served (linger.ms, the
 *                       request, Kafka's acks=all, the report's way back)
 *   capture_to_append   capture -> Kafka appended it, when the topic has
 *                       message.timestamp.type=LogAppendTime (the report carries the
 *                       append time, in ms: taken as its middle, +0.5 ms)
 *
 * Cost per record, on the Kafka thread only: rd_kafka_message_latency (one monotonic
 * clock read in librdkafka), two bucket searches (latency__bucket: a branch-free halving
 * over the LATENCY_BUCKETS bounds, five steps) and plain stores into counters only this
 * thread writes (counter__inc). The CLOCK_REALTIME "now" is read once per poll round:
 * producer.c brackets each rd_kafka_poll with latency__round_begin/_end, and the reports
 * that call serves share the first one's read (they come out of one call within
 * microseconds; the finest bucket is 100 µs). Reports served elsewhere (rd_kafka_flush
 * at close or for records sent alone) read the clock each, as before. Measured with
 * tests/unit/test_latency.c's loop (ctest -R unit_latency -V prints it; 4 M calls each,
 * log-spread values, the bare loop taken off), 5 runs on this shared 2-core machine: an
 * observe 5-6 ns, the bucket search 6-7 ns (the linear scan it replaced: 6-8 ns, not
 * where the time went), a CLOCK_REALTIME read 23-25 ns. So a report after its round's
 * first costs one clock read less: about 25 ns of the ~60 ns a record measured before.
 * Nothing on mosquitto's thread: its clock read was already there.
 *
 * The histograms are process-wide, like kstats.c's statistics: one plugin per process
 * (the same .so loaded twice cannot register its callbacks). Writers: the Kafka thread,
 * or mosquitto's thread in producer__close once the Kafka thread has stopped; never both
 * at once. Reader: the metrics rendering on mosquitto's thread (relaxed loads: a
 * rendering may see a count and a sum from slightly different instants).
 */
#include <stdio.h>

#include "mqk.h"

/* Upper bounds in µs: 100 µs .. 10 s, about three a decade, then +Inf. */
static const int64_t bounds_us[] = {
	100,	 200,	  300,	   500,	    700,     1000,    1500,	2000,	  3000,
	5000,	 7000,	  10000,   15000,   20000,   30000,   50000,	70000,	  100000,
	200000,	 500000,  1000000, 2000000, 5000000, 10000000,
};
#define LATENCY_BUCKETS (sizeof(bounds_us) / sizeof(bounds_us[0]))

/*
 * The poll round's CLOCK_REALTIME, µs (latency__round_begin): 0 until its first report
 * reads it. in_round: false outside a round, where each report reads its own. Kafka
 * thread (or mosquitto's in producer__close, after the Kafka thread ended), as the
 * histograms.
 */
static bool in_round;
static int64_t round_now_us;

struct histogram {
	atomic_uint_least64_t bucket[LATENCY_BUCKETS + 1]; /* not cumulative; last: +Inf */
	atomic_uint_least64_t sum_us;
};

static struct histogram stages[MQK_LATENCY_COUNT];

#define MQK_LATENCY_INFO(name, help) {"mosquitto_kafka_" #name "_seconds", help},
static const struct {
	const char *metric;
	const char *help;
} info[] = {MQK_LATENCY_STAGES(MQK_LATENCY_INFO)};

size_t latency__bucket(int64_t us)
{
	const int64_t *b = bounds_us;
	size_t n = LATENCY_BUCKETS;

	/*
	 * The first bound >= us, by halving: it is in b[0..n] throughout. A conditional
	 * move rather than a branch (compilers make one of it): no misprediction when
	 * reports of fast and slow records mix.
	 */
	while (n > 1) {
		size_t half = n / 2;
		b = b[half - 1] < us ? b + half : b;
		n -= half;
	}
	return (size_t)(b - bounds_us) + (*b < us);
}

void latency__observe(enum mqk_latency_stage stage, int64_t us)
{
	struct histogram *hg = &stages[stage];

	if (us < 0) {
		us = 0; /* the wall clock stepped back between the two stamps */
	}
	counter__inc(&hg->bucket[latency__bucket(us)]);
	atomic_store_explicit(&hg->sum_us,
			      atomic_load_explicit(&hg->sum_us, memory_order_relaxed) +
				      (uint64_t)us,
			      memory_order_relaxed);
}

static int64_t realtime_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void latency__round_begin(void)
{
	in_round = true;
	round_now_us = 0;
}

void latency__round_end(void)
{
	in_round = false;
}

void latency__acked(const struct mqk_entry *e, const rd_kafka_message_t *m)
{
	int64_t since_produce = rd_kafka_message_latency(m);
	int64_t captured = e->timestamp_ms * 1000 + e->capture_sub_us;
	int64_t now, appended;
	rd_kafka_timestamp_type_t type;

	if (!in_round) {
		now = realtime_us();
	} else {
		if (round_now_us == 0) {
			round_now_us = realtime_us();
		}
		now = round_now_us;
	}
	if (since_produce >= 0) {
		latency__observe(MQK_LATENCY_produce_to_ack, since_produce);
		latency__observe(MQK_LATENCY_capture_to_produce, now - captured - since_produce);
	}
	appended = rd_kafka_message_timestamp(m, &type);
	if (type == RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME && appended > 0) {
		latency__observe(MQK_LATENCY_capture_to_append, appended * 1000 + 500 - captured);
	}
}

uint64_t latency__count(enum mqk_latency_stage stage)
{
	uint64_t n = 0;

	for (size_t i = 0; i <= LATENCY_BUCKETS; i++) {
		n += counter__get(&stages[stage].bucket[i]);
	}
	return n;
}

void latency__render(struct mqk_bytes *out, const char *broker)
{
	for (int s = 0; s < MQK_LATENCY_COUNT; s++) {
		const char *metric = info[s].metric;
		uint64_t cumulative = 0;

		bytes__printf(out, "# HELP %s %s\n# TYPE %s histogram\n", metric, info[s].help,
			      metric);
		for (size_t i = 0; i <= LATENCY_BUCKETS; i++) {
			char le[32];
			cumulative += counter__get(&stages[s].bucket[i]);
			if (i < LATENCY_BUCKETS) {
				snprintf(le, sizeof(le), "%g", (double)bounds_us[i] / 1e6);
			} else {
				snprintf(le, sizeof(le), "+Inf");
			}
			bytes__printf(out, "%s_bucket{broker=\"%s\",le=\"%s\"} %llu\n", metric,
				      broker, le, (unsigned long long)cumulative);
		}
		bytes__printf(out, "%s_sum{broker=\"%s\"} %.6f\n%s_count{broker=\"%s\"} %llu\n",
			      metric, broker, (double)counter__get(&stages[s].sum_us) / 1e6,
			      metric, broker, (unsigned long long)cumulative);
	}
}

void latency__reset(void)
{
	for (int s = 0; s < MQK_LATENCY_COUNT; s++) {
		for (size_t i = 0; i <= LATENCY_BUCKETS; i++) {
			atomic_store(&stages[s].bucket[i], 0);
		}
		atomic_store(&stages[s].sum_us, 0);
	}
}
