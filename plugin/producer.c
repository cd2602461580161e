/*
 * producer.c - the librdkafka producer: configuration, produce, delivery reports, flush.
 *
 * mosquitto's thread only hands records over: producer__send calls rd_kafka_producev
 * with RD_KAFKA_MSG_F_COPY (librdkafka copies the payload, the broker keeps its own)
 * and returns at once; librdkafka's threads do the network.
 *
 * Delivery reports, librdkafka's log lines (log.queue=true) and its errors wait in
 * librdkafka's main queue. A thread of the plugin's own, the delivery thread, serves
 * that queue with rd_kafka_poll, so that destroying delivered records (a dozen frees
 * each) and counting them costs mosquitto's thread nothing: measured with
 * bench/hotpath.c, serving them on the TICK instead took ~0.75 µs per message off
 * mosquitto's thread. The callbacks below therefore run on the delivery thread (and on
 * mosquitto's thread during producer__close, after the delivery thread is stopped):
 * they touch only the atomic delivered/failed counters and log through log__deferred.
 *
 * Defaults that lose nothing: idempotence (acks=all, retries without duplicates or
 * reordering), message.timeout.ms=0 (retry forever), the Java client's murmur2
 * partitioner. The admin's kafka.* properties are applied after them.
 */
#include <signal.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>

#include "mqk.h"

struct mqk_producer {
	rd_kafka_t *rk;
	struct mqk_config *cfg;      /* the plugin's; its routes' counters are updated */
	struct mqk_counters *totals; /* the plugin's */
	pthread_t thread;            /* the delivery thread */
	bool thread_started;
	atomic_bool stop;            /* tells the delivery thread to return */
	/* Used by whichever thread serves the main queue (one at a time): */
	bool closing; /* purged records are summed up, not logged one by one */
	struct mqk_ratelimit rl_failed;
	struct mqk_ratelimit rl_error;
};

/* How long the delivery thread blocks in rd_kafka_poll: bounds how long stopping takes. */
#define DELIVERY_POLL_MS 100

static const struct {
	const char *name;
	const char *value;
} defaults[] = {
	{"enable.idempotence", "true"},
	{"message.timeout.ms", "0"},
	{"partitioner", "murmur2_random"},
	{"linger.ms", "5"},
};

/* Delivery report. Runs on the delivery thread (inside rd_kafka_poll). */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	struct mqk_producer *p = opaque;
	struct mqk_route *route = m->_private;

	(void)rk;
	if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		atomic_fetch_add_explicit(&route->counters.delivered, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&p->totals->delivered, 1, memory_order_relaxed);
		return;
	}
	atomic_fetch_add_explicit(&route->counters.failed, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&p->totals->failed, 1, memory_order_relaxed);
	if (!p->closing) {
		log__deferred_ratelimited(&p->rl_failed, MOSQ_LOG_ERR,
					  "route %s: a record to Kafka topic %s failed: %s",
					  route->name, rd_kafka_topic_name(m->rkt),
					  rd_kafka_err2str(m->err));
	}
}

/* librdkafka's log lines, to mosquitto's log. Runs on the delivery thread. */
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	int mosq_level = level <= LOG_ERR       ? MOSQ_LOG_ERR
			 : level == LOG_WARNING ? MOSQ_LOG_WARNING
			 : level <= LOG_INFO    ? MOSQ_LOG_NOTICE
						: MOSQ_LOG_DEBUG;
	(void)rk;
	log__deferred(mosq_level, "librdkafka %s: %s", fac, buf);
}

/* Errors not tied to one record: brokers down, authentication, ... Delivery thread. */
static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	struct mqk_producer *p = opaque;
	char fatal[512];

	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
		log__deferred(MOSQ_LOG_ERR, "Kafka producer fatal error, records are no longer sent: %s",
			      fatal);
		return;
	}
	log__deferred_ratelimited(&p->rl_error, MOSQ_LOG_WARNING, "Kafka: %s (%s)", reason,
				  rd_kafka_err2name((rd_kafka_resp_err_t)err));
}

static int conf_set(rd_kafka_conf_t *conf, const char *option, const char *name,
		    const char *value, char *errstr, size_t errstr_size)
{
	char why[512];

	if (rd_kafka_conf_set(conf, name, value, why, sizeof(why)) != RD_KAFKA_CONF_OK) {
		snprintf(errstr, errstr_size, "%s: %s", option, why);
		return -1;
	}
	return 0;
}

static rd_kafka_conf_t *build_conf(struct mqk_producer *p, struct mqk_config *cfg, char *errstr,
				   size_t errstr_size)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char option[300];
	char client_id[128];

	snprintf(client_id, sizeof(client_id), "mosquitto_kafka-%s", cfg->broker_id);
	for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++) {
		if (conf_set(conf, "plugin defaults", defaults[i].name, defaults[i].value, errstr,
			     errstr_size)) {
			goto error;
		}
	}
	if (conf_set(conf, "plugin defaults", "client.id", client_id, errstr, errstr_size) ||
	    conf_set(conf, "plugin_opt_bootstrap_servers", "bootstrap.servers",
		     cfg->bootstrap_servers, errstr, errstr_size) ||
	    conf_set(conf, "plugin defaults", "log.queue", "true", errstr, errstr_size)) {
		goto error;
	}
	for (int i = 0; i < cfg->kafka_prop_count; i++) {
		snprintf(option, sizeof(option), "plugin_opt_kafka.%s", cfg->kafka_props[i].name);
		if (conf_set(conf, option, cfg->kafka_props[i].name, cfg->kafka_props[i].value,
			     errstr, errstr_size)) {
			goto error;
		}
	}
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	rd_kafka_conf_set_log_cb(conf, on_log);
	rd_kafka_conf_set_error_cb(conf, on_error);
	rd_kafka_conf_set_opaque(conf, p);
	return conf;
error:
	rd_kafka_conf_destroy(conf);
	return NULL;
}

/* The delivery thread: serves librdkafka's main queue until producer__close. */
static void *delivery_thread(void *arg)
{
	struct mqk_producer *p = arg;

	while (!atomic_load_explicit(&p->stop, memory_order_relaxed)) {
		rd_kafka_poll(p->rk, DELIVERY_POLL_MS);
	}
	return NULL;
}

struct mqk_producer *producer__new(struct mqk_config *cfg, struct mqk_counters *totals,
				   char *errstr, size_t errstr_size)
{
	struct mqk_producer *p = calloc(1, sizeof(*p));
	rd_kafka_conf_t *conf;
	sigset_t all, old;
	char why[512];

	if (p == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		return NULL;
	}
	p->cfg = cfg;
	p->totals = totals;
	conf = build_conf(p, cfg, errstr, errstr_size);
	if (conf == NULL) {
		free(p);
		return NULL;
	}
	/* librdkafka's threads and ours inherit this mask: signals stay mosquitto's. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why)); /* takes conf on success */
	if (p->rk != NULL) {
		/* Logs come out of rd_kafka_poll, on the delivery thread, not librdkafka's. */
		rd_kafka_set_log_queue(p->rk, NULL);
		p->thread_started = pthread_create(&p->thread, NULL, delivery_thread, p) == 0;
		if (p->thread_started) {
			pthread_setname_np(p->thread, "mqk-delivery"); /* for top -H, perf */
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (p->rk == NULL) {
		rd_kafka_conf_destroy(conf);
		snprintf(errstr, errstr_size,
			 "plugin_opt_kafka.*: librdkafka refused the configuration: %s", why);
		free(p);
		return NULL;
	}
	if (!p->thread_started) {
		snprintf(errstr, errstr_size, "cannot start the delivery thread");
		producer__close(p, 0);
		return NULL;
	}

	for (int i = 0; i < cfg->route_count; i++) {
		struct mqk_route *r = &cfg->routes[i];
		if (r->topic.is_static) {
			r->rkt = rd_kafka_topic_new(p->rk, r->topic.source, NULL);
			if (r->rkt == NULL) {
				snprintf(errstr, errstr_size, "plugin_opt_route_%s: topic '%s': %s",
					 r->name, r->topic.source,
					 rd_kafka_err2str(rd_kafka_last_error()));
				producer__close(p, 0);
				return NULL;
			}
		}
	}
	return p;
}

rd_kafka_resp_err_t producer__send(struct mqk_producer *p, struct mqk_record *rec)
{
	rd_kafka_resp_err_t err;

	/* The broker owns rec->value: RD_KAFKA_MSG_F_COPY makes librdkafka copy it. */
	if (rec->rkt) {
		err = rd_kafka_producev(p->rk, RD_KAFKA_V_RKT(rec->rkt),
					RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
					RD_KAFKA_V_VALUE((void *)rec->value, rec->value_len),
					RD_KAFKA_V_KEY(rec->key, rec->key_len),
					RD_KAFKA_V_HEADERS(rec->headers),
					RD_KAFKA_V_TIMESTAMP(rec->timestamp_ms),
					RD_KAFKA_V_OPAQUE(rec->route), RD_KAFKA_V_END);
	} else {
		err = rd_kafka_producev(p->rk, RD_KAFKA_V_TOPIC(rec->topic),
					RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
					RD_KAFKA_V_VALUE((void *)rec->value, rec->value_len),
					RD_KAFKA_V_KEY(rec->key, rec->key_len),
					RD_KAFKA_V_HEADERS(rec->headers),
					RD_KAFKA_V_TIMESTAMP(rec->timestamp_ms),
					RD_KAFKA_V_OPAQUE(rec->route), RD_KAFKA_V_END);
	}
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		rec->headers = NULL; /* librdkafka's now */
	}
	return err;
}

int producer__in_flight(struct mqk_producer *p)
{
	const struct mqk_counters *t = p->totals;
	return (int)(t->produced - atomic_load_explicit(&t->delivered, memory_order_relaxed) -
		     atomic_load_explicit(&t->failed, memory_order_relaxed));
}

int producer__close(struct mqk_producer *p, int timeout_ms)
{
	int left;

	if (p == NULL) {
		return 0;
	}
	if (p->thread_started) {
		atomic_store(&p->stop, true);
		pthread_join(p->thread, NULL);
	}
	/* From here on this thread serves the main queue. */
	rd_kafka_flush(p->rk, timeout_ms); /* serves delivery reports while it waits */
	left = producer__in_flight(p);
	if (left > 0) {
		/* What Kafka did not take in time: reported as failed (purged), and lost. */
		p->closing = true;
		rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
		rd_kafka_flush(p->rk, 1000); /* serves the purge reports */
	}
	for (int i = 0; i < p->cfg->route_count; i++) {
		if (p->cfg->routes[i].rkt) {
			rd_kafka_topic_destroy(p->cfg->routes[i].rkt);
			p->cfg->routes[i].rkt = NULL;
		}
	}
	rd_kafka_destroy(p->rk);
	log__drain();
	free(p);
	return left;
}
