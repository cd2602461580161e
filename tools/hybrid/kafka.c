/*
 * kafka.c - the HybridClient's Kafka side: one idempotent librdkafka producer.
 *
 * Each queued message becomes one record of -T: the MQTT payload unchanged as the value
 * (what the plugin calls format=raw, so mqk-controller decodes it the same way), the
 * MQTT topic as the key (--key topic: librdkafka's partitioner sends a device's
 * messages to one partition, in order) or no key (--key none), and no headers.
 *
 * Defaults, before any -X: acks=all and enable.idempotence=true (a retried batch is
 * neither lost nor written twice, and a device's order survives retries), linger.ms=5
 * (small batches at a few ms of latency, as the plugin does),
 * max.in.flight.requests.per.connection=1 (as the plugin does: with librdkafka 2.0.2's 5,
 * three hybrids at 10,000 msg/s spent 2-6x the CPU and the controller saw records
 * seconds late, p99 0.8-10 s against 10-14 ms with 1; see docs/study.md),
 * client.id=mqk-hybrid.
 * librdkafka's own defaults are kept on purpose for the rest: message.timeout.ms
 * (300 s: a Kafka outage shorter than that loses nothing) and
 * queue.buffering.max.messages (100,000: beyond that rd_kafka_producev() says
 * QUEUE_FULL and the producing loop waits; MQTT is not read meanwhile, so the broker
 * queues for us, as far as its max_queued_messages lets it).
 *
 * Everything here runs on the main thread: delivery reports and errors are served by
 * rd_kafka_poll() and rd_kafka_flush(), which only main.c's loop calls. The one
 * exception is the log callback (see logger()).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "hybrid.h"

#define LOG_FIRST_FAILURES 10 /* delivery failures logged one by one; then every 10,000th */

struct kafka {
	rd_kafka_t *rk;
	rd_kafka_topic_t *rkt; /* -T, made at the start: see kafka__open() */
	const struct settings *set;
	struct counts *c;   /* not owned: main.c's */
	uint64_t reports;   /* delivery reports received, with or without an error */
	uint64_t dr_failed; /* of which with an error (also counted in c->failed) */
	bool closing;       /* kafka__close() runs: nothing is counted any more */
};

/* The delivery report of one record: served by rd_kafka_poll()/_flush(), main thread. */
static void delivered(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
	struct kafka *k = opaque;
	(void)rk;

	if (k->closing) {
		return;
	}
	k->reports++;
	if (rkm->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		k->c->delivered++;
		return;
	}
	k->c->failed++;
	k->dr_failed++;
	if (k->dr_failed <= LOG_FIRST_FAILURES || k->dr_failed % 10000 == 0) {
		fprintf(stderr, HYBRID_NAME ": a record not delivered: %s (%" PRIu64 " so far)\n",
			rd_kafka_err2str(rkm->err), k->dr_failed);
	}
}

/* Errors librdkafka reports outside a delivery (brokers down, a fatal idempotence error). */
static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	char fatal[512];
	(void)opaque;

	fprintf(stderr, HYBRID_NAME ": kafka: %s: %s\n", rd_kafka_err2name(err), reason);
	if (err == RD_KAFKA_RESP_ERR__FATAL && rd_kafka_fatal_error(rk, fatal, sizeof(fatal))) {
		fprintf(stderr, HYBRID_NAME ": kafka: fatal: %s (every later record fails)\n",
			fatal);
	}
}

/*
 * librdkafka's log lines, with our prefix.
 * @locality any librdkafka thread: it only writes to stderr (stdio locks the stream).
 */
static void logger(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void)rk;
	fprintf(stderr, HYBRID_NAME ": kafka: %d %s: %s\n", level, fac, buf);
}

struct kafka *kafka__open(const struct settings *set, struct counts *c, char *errstr,
			  size_t errstr_size)
{
	char err[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	struct kafka *k = calloc(1, sizeof(*k));

	if (k == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	k->set = set;
	k->c = c;
	if (cli_conf_set(conf, "client.id", HYBRID_NAME, errstr, errstr_size) != 0 ||
	    cli_conf_set(conf, "acks", "all", errstr, errstr_size) != 0 ||
	    cli_conf_set(conf, "enable.idempotence", "true", errstr, errstr_size) != 0 ||
	    cli_conf_set(conf, "linger.ms", "5", errstr, errstr_size) != 0 ||
	    cli_conf_set(conf, "max.in.flight.requests.per.connection", "1", errstr,
			 errstr_size) != 0 ||
	    /* -b, then every -X in order, after our defaults, so that -X can change them. */
	    cli_kafka_apply(conf, set->bootstrap, &set->props, errstr, errstr_size) != 0) {
		goto error;
	}
	rd_kafka_conf_set_opaque(conf, k);
	rd_kafka_conf_set_dr_msg_cb(conf, delivered);
	rd_kafka_conf_set_error_cb(conf, on_error);
	rd_kafka_conf_set_log_cb(conf, logger);
	/* On success rd_kafka_new() owns conf; on failure it is still ours. */
	k->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
	if (k->rk == NULL) {
		snprintf(errstr, errstr_size, "Kafka producer: %s", err);
		goto error;
	}
	/*
	 * The topic handle now rather than at the first message: making it starts the
	 * topic's metadata lookup, so that the first messages do not wait for it (half a
	 * second against the mock cluster, measured as latency by the controller).
	 */
	k->rkt = rd_kafka_topic_new(k->rk, set->topic, NULL);
	if (k->rkt == NULL) {
		snprintf(errstr, errstr_size, "-T %s: %s", set->topic,
			 rd_kafka_err2str(rd_kafka_last_error()));
		rd_kafka_destroy(k->rk);
		free(k);
		return NULL;
	}
	return k;

error:
	rd_kafka_conf_destroy(conf);
	free(k);
	return NULL;
}

size_t kafka__produce(struct kafka *k, struct queue *q, uint64_t deadline_us,
		      const volatile sig_atomic_t *interrupt)
{
	const struct settings *set = k->set;
	size_t n = 0;
	struct qmsg *m;

	while ((m = queue__pop(q)) != NULL) {
		const char *key = set->key == KEY_TOPIC ? m->topic : NULL;
		size_t key_len = key ? strlen(key) : 0;
		rd_kafka_resp_err_t err;
		bool waited = false;

		for (;;) {
			/* On success librdkafka owns (and will free) m->payload. */
			err = rd_kafka_producev(
				k->rk, RD_KAFKA_V_RKT(k->rkt), RD_KAFKA_V_KEY(key, key_len),
				RD_KAFKA_V_VALUE(m->payload, m->len),
				RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE), RD_KAFKA_V_END);
			if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
				break;
			}
			if ((deadline_us && cli_mono_us() >= deadline_us) ||
			    (interrupt && *interrupt)) {
				queue__unpop(q, m); /* still ours; the caller decides */
				return n;
			}
			if (!waited) {
				waited = true;
				fprintf(stderr,
					HYBRID_NAME ": librdkafka's queue is full: waiting for "
						    "deliveries (%zu messages queued here)\n",
					q->n + 1);
			}
			rd_kafka_poll(k->rk, 100);
		}
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
			m->payload = NULL;
			k->c->produced++;
			n++;
		} else {
			k->c->failed++;
			if (k->c->failed <= LOG_FIRST_FAILURES) {
				fprintf(stderr, HYBRID_NAME ": producing a record of %s: %s\n",
					m->topic, rd_kafka_err2str(err));
			}
		}
		qmsg__free(m);
	}
	return n;
}

void kafka__poll(struct kafka *k)
{
	rd_kafka_poll(k->rk, 0);
}

uint64_t kafka__flush(struct kafka *k, int timeout_ms)
{
	rd_kafka_flush(k->rk, timeout_ms);
	return k->c->produced - k->reports;
}

void kafka__close(struct kafka *k)
{
	if (k == NULL) {
		return;
	}
	k->closing = true;
	rd_kafka_topic_destroy(k->rkt);
	rd_kafka_destroy(k->rk);
	free(k);
}
