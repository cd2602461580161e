/*
 * producer.c - the Kafka thread: buffer entries -> records -> librdkafka, and back.
 *
 * mosquitto's thread only copies each routed message into the buffer (capture.c).
 * This file owns the thread that does everything else, in order:
 *
 *   1. takes the next entry from the buffer, builds its record (record.c) and hands
 *      it to rd_kafka_producev (RD_KAFKA_MSG_F_COPY: librdkafka copies the payload);
 *   2. serves librdkafka's main queue with rd_kafka_poll: delivery reports (counted;
 *      each settles its entry, and settled entries at the buffer's tail give their
 *      room back to mosquitto's thread), librdkafka's log lines (log.queue=true) and
 *      errors (both through log.c's mailbox, since only mosquitto's thread may log);
 *   3. sleeps on the buffer's eventfd when there is nothing to do; a commit on
 *      mosquitto's thread and a new event in librdkafka's main queue
 *      (rd_kafka_queue_io_event_enable) both wake it.
 *
 * When librdkafka's queue is full (Kafka away for a while), the thread stops taking
 * entries and waits for delivery reports: records wait in the buffer, in order, and
 * nothing is dropped until the buffer is full too (then mosquitto's thread counts
 * buffer_full). One thread, one FIFO: the order of records is the order mosquitto
 * received the messages.
 *
 * Why a thread: building a record takes a dozen allocations (librdkafka's headers) and
 * destroying it as many frees; bench/hotpath.c measured that work at ~2-3 µs per message,
 * which mosquitto's thread now spends on a memcpy instead.
 *
 * Defaults that lose nothing: idempotence (acks=all, retries without duplicates or
 * reordering), message.timeout.ms=0 (retry forever), the Java client's murmur2
 * partitioner. The admin's kafka.* properties are applied after them.
 *
 * Topics that do not exist. With create_topics false (the default) the routed topics
 * must exist: librdkafka fails a record for a missing topic after
 * topic.metadata.propagation.max.ms, with UNKNOWN_TOPIC_OR_PART in its delivery report
 * (then, once it knows the topic is missing, at once from rd_kafka_producev with
 * _UNKNOWN_TOPIC, without a report); both are counted as failed and logged as a missing
 * topic. With create_topics true the thread creates each topic through the Admin API
 * (CreateTopics on the producer handle, topic_partitions and topic_replication_factor),
 * before it produces the first record for it: every static route topic when it starts,
 * each expanded (dynamic) topic the first time a record needs it. It waits for the answer
 * (at most CREATE_TIMEOUT_MS, serving delivery reports meanwhile) while the entry stays
 * in the buffer: nothing is dropped and the order is kept. TOPIC_ALREADY_EXISTS is
 * success. topics.c remembers the outcome. A failed creation is logged with Kafka's
 * reason and tried again at most every CREATE_RETRY_MS; the record is produced anyway
 * (and librdkafka fails it as above if the topic is still missing).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>

#include "mqk.h"
#include "producer_defaults.h"

/*
 * How the thread waits. Busy (entries came within ACTIVE_MS): it naps NAP_MS between
 * rounds without asking mosquitto's thread to wake it, so that at a few thousand
 * messages per second it wakes ~1000 times a second, not once per message (each
 * wake-up is a system call on mosquitto's thread and two context switches); librdkafka
 * batches for linger.ms anyway. Idle: it sleeps until a commit wakes it. Blocked (a full
 * librdkafka queue): until a delivery report frees room. When linger.ms is below NAP_MS
 * (profile latency: 0), librdkafka sends a record at once and so does this thread: its
 * busy nap is woken by a commit too, for a system call on mosquitto's thread per
 * message while the thread sleeps (at most NAP_MS of latency saved per record).
 */
#define NAP_MS 1
#define ACTIVE_MS 100
#define IDLE_SLEEP_MS 1000
#define BLOCKED_SLEEP_MS 10
/* Under sustained load, serve delivery reports at least every so many records. */
#define POLL_EVERY 1024
/*
 * create_topics: one CreateTopics request is given CREATE_TIMEOUT_MS (the broker itself
 * CREATE_OPERATION_MS to create the partitions); the thread waits for its answer in slices
 * of CREATE_POLL_MS, serving delivery reports in between. A failed creation is not tried
 * again before CREATE_RETRY_MS. The set of known topics forgets everything when it holds
 * KNOWN_TOPICS_MAX names.
 */
#define CREATE_TIMEOUT_MS 10000
#define CREATE_OPERATION_MS 8000
#define CREATE_POLL_MS 100
#define CREATE_RETRY_MS 10000
#define KNOWN_TOPICS_MAX 100000

struct mqk_producer {
	rd_kafka_t *rk;
	struct mqk_config *cfg; /* the plugin's; records count against its routes */
	/* cfg->route_count at start: those routes have topic handles (rkt). A reload's new
	   definitions (reload.c) have none: their records take the dynamic-topic path. */
	int start_routes;
	struct mqk_buffer *buf; /* the plugin's */
	const struct mqk_origin *origin;
	struct mqk_counters *totals; /* the plugin's */
	pthread_t thread;
	bool thread_started;
	atomic_bool stop;
	atomic_int_least64_t deadline_ms; /* when stopping: give up on the buffer then */
	/* The Kafka thread's (mosquitto's thread's once the Kafka thread has stopped): */
	struct mqk_scratch scratch;
	bool closing;             /* purged records are summed up, not logged one by one */
	bool fatal;               /* librdkafka raised a fatal error: replace the producer */
	bool alone_pending;       /* entries are MQK_ENTRY_ALONE: send_alone */
	bool nap_wakes;           /* linger.ms < NAP_MS: a commit ends the busy nap too */
	struct mqk_topics topics; /* create_topics: topics created or known to exist */
	struct mqk_ratelimit rl_failed, rl_error, rl_bad_topic, rl_too_large, rl_refused;
	struct mqk_ratelimit rl_missing, rl_create, rl_dropped;
	struct mqk_ratelimit rl_security; /* authentication and TLS errors: their own limit */
	int64_t oldest_ms;                /* the last buf->oldest_ms stored */
	uint64_t delivered_seen;          /* totals->delivered when buf->acked_ms was stored */
};

/* The errors librdkafka fails a record with when its topic does not exist. */
static bool topic_is_missing(rd_kafka_resp_err_t err)
{
	return err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
	       err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
}

/*
 * A record failed because its topic does not exist. Kafka thread (mosquitto's thread in
 * producer__close, once the Kafka thread has stopped).
 */
static void topic_missing(struct mqk_producer *p, const struct mqk_route *route, const char *topic)
{
	int64_t retry_at;

	if (!p->cfg->create_topics) {
		log__deferred_ratelimited(&p->rl_missing, MOSQ_LOG_ERR,
					  "route %s: Kafka topic '%s' does not exist (topic "
					  "auto-creation is off?): create it, or set "
					  "plugin_opt_create_topics true",
					  route->name, topic);
		return;
	}
	log__deferred_ratelimited(&p->rl_missing, MOSQ_LOG_ERR,
				  "route %s: Kafka topic '%s' does not exist and could not be "
				  "created (see the lines above): its records fail",
				  route->name, topic);
	/* Created once, deleted since? Created again, CREATE_RETRY_MS from now at the earliest. */
	if (topics__get(&p->topics, topic, &retry_at) && retry_at == 0) {
		topics__put(&p->topics, topic, mqk_monotonic_ms() + CREATE_RETRY_MS);
	}
}

/*
 * rd_kafka_poll as one round: the delivery reports it serves share one clock read for
 * latency.c (latency__round_begin). Kafka thread, or mosquitto's in producer__close.
 */
static void poll_round(struct mqk_producer *p, int timeout_ms)
{
	latency__round_begin();
	rd_kafka_poll(p->rk, timeout_ms);
	latency__round_end();
}

/*
 * Delivery report. Kafka thread (inside rd_kafka_poll). The record's buffer entry is
 * settled (its room can go back), or, when the producer failed fatally and is being
 * replaced, made new again so that it is sent again.
 */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	struct mqk_producer *p = opaque;
	struct mqk_entry *e = m->_private;
	struct mqk_route *route = &p->cfg->routes[e->live_route];

	(void)rk;
	if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		e->state = MQK_ENTRY_SETTLED;
		latency__acked(e, m);
		counter__inc(&route->counters.delivered);
		counter__inc(&p->totals->delivered);
		return;
	}
	if (!p->closing && m->err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE && !e->alone) {
		/*
		 * Kafka refuses a whole batch when one record in it is over the topic's
		 * max.message.bytes: each record of it is sent again alone (send_alone), so that
		 * only those really too large fail.
		 */
		e->state = MQK_ENTRY_ALONE;
		p->alone_pending = true;
		counter__dec(&route->counters.produced);
		counter__dec(&p->totals->produced);
		return;
	}
	if (!p->closing && (p->fatal || m->err == RD_KAFKA_RESP_ERR__FATAL)) {
		/* Taken back from librdkafka: it goes out again through the new producer. */
		e->state = MQK_ENTRY_NEW;
		counter__dec(&route->counters.produced);
		counter__dec(&p->totals->produced);
		return;
	}
	if (p->closing && p->buf->journal != NULL) {
		return; /* not acknowledged: it stays in the journal for the next start */
	}
	e->state = MQK_ENTRY_SETTLED;
	if (!p->closing && m->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE) {
		/* overflow drop_oldest made room (make_room) */
		counter__inc(&route->counters.dropped_oldest);
		counter__inc(&p->totals->dropped_oldest);
		return;
	}
	counter__inc(&route->counters.failed);
	counter__inc(&p->totals->failed);
	if (!p->closing && topic_is_missing(m->err)) {
		topic_missing(p, route, rd_kafka_topic_name(m->rkt));
	} else if (!p->closing && m->err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
		log__deferred_ratelimited(
			&p->rl_too_large, MOSQ_LOG_ERR,
			"route %s: a %zu-byte record is over the max.message.bytes "
			"of Kafka topic %s: failed",
			route->name, m->len, rd_kafka_topic_name(m->rkt));
	} else if (!p->closing) {
		log__deferred_ratelimited(&p->rl_failed, MOSQ_LOG_ERR,
					  "route %s: a record to Kafka topic %s failed: %s",
					  route->name, rd_kafka_topic_name(m->rkt),
					  rd_kafka_err2str(m->err));
	}
}

/* librdkafka's log lines, to mosquitto's log. Kafka thread. */
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void)rk;
	log__librdkafka("", level, fac, buf);
}

/* Errors not tied to one record: brokers down, authentication, ... Kafka thread. */
static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	struct mqk_producer *p = opaque;
	char fatal[512];

	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
		log__deferred(MOSQ_LOG_ERR, "Kafka producer fatal error: %s", fatal);
		p->fatal = true; /* the Kafka thread replaces the producer (recover()) */
		return;
	}
	kafka_conf__log_error(&p->rl_security, &p->rl_error, "",
			      p->buf->journal != NULL
				      ? "records wait in the journal until Kafka takes them"
				      : "records wait in the buffer until Kafka takes them",
			      err, reason);
}

static rd_kafka_conf_t *build_conf(struct mqk_producer *p, struct mqk_config *cfg, char *errstr,
				   size_t errstr_size)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char client_id[128];

	snprintf(client_id, sizeof(client_id), "mosquitto_kafka-%s", cfg->broker_id);
	for (size_t i = 0; i < MQK_PRODUCER_DEFAULT_COUNT; i++) {
		if (kafka_conf__set(conf, "plugin defaults", mqk_producer_defaults[i].name,
				    mqk_producer_defaults[i].value, errstr, errstr_size)) {
			goto error;
		}
	}
	if (profile__apply(conf, cfg->profile, errstr, errstr_size)) {
		goto error; /* then the admin's kafka.* (kafka_conf__apply) win over it */
	}
	if (kafka_conf__set(conf, "plugin defaults", "client.id", client_id, errstr, errstr_size) ||
	    kafka_conf__set(conf, "plugin_opt_bootstrap_servers", "bootstrap.servers",
			    cfg->bootstrap_servers, errstr, errstr_size) ||
	    kafka_conf__set(conf, "plugin defaults", "log.queue", "true", errstr, errstr_size)) {
		goto error;
	}
	if (kstats__interval_ms() > 0) {
		/* The metrics' view of Kafka (kstats.c); an admin's value below wins. */
		char ms[16];
		snprintf(ms, sizeof(ms), "%d", kstats__interval_ms());
		if (kafka_conf__set(conf, "plugin defaults", "statistics.interval.ms", ms, errstr,
				    errstr_size)) {
			goto error;
		}
	}
	if (kafka_conf__apply(conf, cfg, errstr, errstr_size)) {
		goto error;
	}
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	if (kstats__interval_ms() > 0) {
		rd_kafka_conf_set_stats_cb(conf, kstats__on_stats); /* metrics on */
	}
	rd_kafka_conf_set_log_cb(conf, on_log);
	rd_kafka_conf_set_error_cb(conf, on_error);
	rd_kafka_conf_set_opaque(conf, p);
	return conf;
error:
	rd_kafka_conf_destroy(conf);
	return NULL;
}

/*
 * create_topics: asks Kafka to create topic name (CreateTopics on the producer handle)
 * and waits for the answer, at most CREATE_TIMEOUT_MS and never past the shutdown
 * deadline, serving the main queue (delivery reports, logs) meanwhile. Kafka thread.
 * Returns Kafka's error for the topic (TOPIC_ALREADY_EXISTS included), with its reason
 * in why.
 */
static rd_kafka_resp_err_t create_topic(struct mqk_producer *p, const char *name, char *why,
					size_t why_size)
{
	int64_t deadline = mqk_monotonic_ms() + CREATE_TIMEOUT_MS + 2 * CREATE_POLL_MS;
	rd_kafka_NewTopic_t *nt;
	rd_kafka_AdminOptions_t *opts;
	rd_kafka_queue_t *q;
	rd_kafka_event_t *ev = NULL;
	rd_kafka_resp_err_t err;
	const rd_kafka_topic_result_t **results;
	size_t n = 0;

	nt = rd_kafka_NewTopic_new(name, p->cfg->topic_partitions, p->cfg->topic_replication_factor,
				   why, why_size);
	if (nt == NULL) {
		return RD_KAFKA_RESP_ERR__INVALID_ARG;
	}
	opts = rd_kafka_AdminOptions_new(p->rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
	if (opts == NULL ||
	    rd_kafka_AdminOptions_set_request_timeout(opts, CREATE_TIMEOUT_MS, why, why_size) ||
	    rd_kafka_AdminOptions_set_operation_timeout(opts, CREATE_OPERATION_MS, why, why_size)) {
		if (opts == NULL) {
			snprintf(why, why_size, "out of memory");
		}
		rd_kafka_AdminOptions_destroy(opts);
		rd_kafka_NewTopic_destroy(nt);
		return RD_KAFKA_RESP_ERR__INVALID_ARG;
	}
	/* A queue of its own: the answer cannot mix with the main queue's events. */
	q = rd_kafka_queue_new(p->rk);
	rd_kafka_CreateTopics(p->rk, &nt, 1, opts, q); /* copies nt and opts */
	rd_kafka_AdminOptions_destroy(opts);
	rd_kafka_NewTopic_destroy(nt);
	for (;;) {
		ev = rd_kafka_queue_poll(q, CREATE_POLL_MS);
		poll_round(p, 0);
		if (ev != NULL) {
			break;
		}
		int64_t now = mqk_monotonic_ms();
		if (now >= deadline ||
		    (atomic_load(&p->stop) && now >= atomic_load(&p->deadline_ms))) {
			break;
		}
	}
	/* librdkafka holds its own reference until the request ends: safe while pending. */
	rd_kafka_queue_destroy(q);
	if (ev == NULL) {
		snprintf(why, why_size, "no answer within %d ms", CREATE_TIMEOUT_MS);
		return RD_KAFKA_RESP_ERR__TIMED_OUT;
	}
	err = rd_kafka_event_error(ev);
	if (err) {
		snprintf(why, why_size, "%s", rd_kafka_event_error_string(ev));
	} else {
		const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
		results = rd_kafka_CreateTopics_result_topics(res, &n);
		if (n < 1) {
			err = RD_KAFKA_RESP_ERR__FAIL;
			snprintf(why, why_size, "an answer without the topic");
		} else {
			const char *msg = rd_kafka_topic_result_error_string(results[0]);
			err = rd_kafka_topic_result_error(results[0]);
			snprintf(why, why_size, "%s", msg ? msg : rd_kafka_err2str(err));
		}
	}
	rd_kafka_event_destroy(ev);
	return err;
}

/*
 * create_topics: makes sure Kafka topic name exists before a record for it is produced:
 * creates it the first time, and again after a failure once CREATE_RETRY_MS have passed.
 * Kafka thread. Blocks up to CREATE_TIMEOUT_MS when it asks Kafka; the caller's entry
 * waits in the buffer meanwhile. Whatever Kafka says, the caller produces the record.
 */
static void ensure_topic(struct mqk_producer *p, const struct mqk_route *route, const char *name)
{
	int64_t retry_at;
	rd_kafka_resp_err_t err;
	char why[512] = "";
	char rf[48];

	if (!p->cfg->create_topics) {
		return;
	}
	if (topics__get(&p->topics, name, &retry_at) &&
	    (retry_at == 0 || mqk_monotonic_ms() < retry_at)) {
		return;
	}
	err = create_topic(p, name, why, sizeof(why));
	if (p->cfg->topic_replication_factor < 0) {
		snprintf(rf, sizeof(rf), "the brokers' default");
	} else {
		snprintf(rf, sizeof(rf), "%d", p->cfg->topic_replication_factor);
	}
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		log__deferred(MOSQ_LOG_NOTICE,
			      "route %s: created Kafka topic '%s' (%d partitions, replication "
			      "factor %s)",
			      route->name, name, p->cfg->topic_partitions, rf);
	} else if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
		log__deferred(MOSQ_LOG_INFO, "route %s: Kafka topic '%s' exists", route->name,
			      name);
	} else {
		log__deferred_ratelimited(
			&p->rl_create, MOSQ_LOG_ERR,
			"route %s: cannot create Kafka topic '%s' (%d partitions, "
			"replication factor %s): %s (%s); its records are "
			"produced anyway, next try in %d s at the earliest",
			route->name, name, p->cfg->topic_partitions, rf, why,
			rd_kafka_err2name(err), CREATE_RETRY_MS / 1000);
	}
	bool exists =
		err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS;
	switch (topics__put(&p->topics, name, exists ? 0 : mqk_monotonic_ms() + CREATE_RETRY_MS)) {
	case 1:
		log__deferred(MOSQ_LOG_NOTICE,
			      "%d Kafka topic names known: forgotten, each is checked again "
			      "(CreateTopics) when a record needs it",
			      KNOWN_TOPICS_MAX);
		break;
	case -1:
		/* Not remembered: the next record asks Kafka again. */
		log__deferred_ratelimited(&p->rl_create, MOSQ_LOG_ERR,
					  "out of memory: Kafka topic '%s' not remembered", name);
		break;
	}
}

/* create_topics: every static route topic, before anything is produced. Kafka thread. */
static void ensure_static_topics(struct mqk_producer *p)
{
	for (int i = 0; i < p->start_routes && !atomic_load(&p->stop); i++) {
		const struct mqk_route *r = &p->cfg->routes[i];
		if (r->topic.is_static) {
			ensure_topic(p, r, r->topic.source);
		}
	}
}

/* Hands rec to librdkafka. Kafka thread. On success the headers are librdkafka's. */
static rd_kafka_resp_err_t send_record(struct mqk_producer *p, struct mqk_record *rec)
{
	/* A dynamic topic's handle: librdkafka's cached one, with a reference for this call. */
	rd_kafka_topic_t *rkt = rec->rkt ? rec->rkt : rd_kafka_topic_new(p->rk, rec->topic, NULL);
	rd_kafka_resp_err_t err;

	if (rkt == NULL) {
		return rd_kafka_last_error();
	}
	/* The entry owns rec->value: RD_KAFKA_MSG_F_COPY makes librdkafka copy it. */
	err = rd_kafka_producev(
		p->rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
		RD_KAFKA_V_VALUE((void *)rec->value, rec->value_len),
		RD_KAFKA_V_KEY(rec->key, rec->key_len), RD_KAFKA_V_HEADERS(rec->headers),
		RD_KAFKA_V_TIMESTAMP(rec->timestamp_ms), RD_KAFKA_V_OPAQUE(rec->entry),
		RD_KAFKA_V_END);
	if (rkt != rec->rkt) {
		rd_kafka_topic_destroy(rkt);
	}
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		rec->headers = NULL;
	}
	return err;
}

/*
 * One entry -> one record -> librdkafka. Kafka thread. Returns false when librdkafka's
 * queue is full: the entry stays in the buffer and is tried again.
 */
static bool produce_entry(struct mqk_producer *p, struct mqk_entry *e)
{
	struct mqk_route *route;
	struct mqk_message msg;
	struct mqk_record rec;
	rd_kafka_resp_err_t err;

	capture__read(e, &msg);
	/* Settled unless librdkafka takes it (below), or it is to be tried again. */
	e->state = MQK_ENTRY_SETTLED;
	if (e->live_route == MQK_ROUTE_GONE) {
		/* Journaled by an earlier run for a route this configuration no longer has. */
		atomic_fetch_add(&p->totals->refused, 1);
		log__deferred_ratelimited(
			&p->rl_refused, MOSQ_LOG_WARNING,
			"journal: a record for '%.200s' from an earlier run belongs "
			"to a route no longer configured: not forwarded",
			msg.topic);
		return true;
	}
	route = &p->cfg->routes[e->live_route];
	switch (record__build(&rec, route, &msg, e->seq, e->origin ? e->origin : p->origin,
			      &p->scratch)) {
	case MQK_BUILD_OK:
		break;
	case MQK_BUILD_BAD_TOPIC:
		counter__inc(&route->counters.bad_topic);
		counter__inc(&p->totals->bad_topic);
		log__deferred_ratelimited(
			&p->rl_bad_topic, MOSQ_LOG_WARNING,
			"route %s: '%.200s' from client '%.200s' gives an invalid Kafka "
			"topic name for '%.200s': not forwarded",
			route->name, msg.topic, msg.client_id, route->topic.source);
		return true;
	case MQK_BUILD_REFUSED:
		atomic_fetch_add(&route->counters.refused, 1);
		atomic_fetch_add(&p->totals->refused, 1);
		log__deferred_ratelimited(&p->rl_refused, MOSQ_LOG_ERR,
					  "route %s: could not build a record for '%.200s' (out of "
					  "memory, or a key over %zu bytes): not forwarded",
					  route->name, msg.topic, p->scratch.key_size);
		return true;
	}

	const char *topic = rec.rkt ? route->topic.source : rec.topic;
	ensure_topic(p, route, topic);
	rec.entry = e;
	e->state = MQK_ENTRY_IN_KAFKA; /* before: a delivery report may come at once */
	err = send_record(p, &rec);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		counter__inc(&route->counters.produced);
		counter__inc(&p->totals->produced);
		return true;
	}
	record__discard(&rec);
	e->state = MQK_ENTRY_SETTLED;
	if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL || err == RD_KAFKA_RESP_ERR__FATAL) {
		/* Tried again: when librdkafka has room, or through a new producer. */
		e->state = MQK_ENTRY_NEW;
		if (err == RD_KAFKA_RESP_ERR__FATAL) {
			p->fatal = true;
		}
		return false;
	}
	if (topic_is_missing(err)) {
		/*
		 * librdkafka knows the topic is missing and fails the record at once, without a
		 * delivery report: counted as produced and failed, like one it failed later.
		 */
		counter__inc(&route->counters.produced);
		counter__inc(&p->totals->produced);
		counter__inc(&route->counters.failed);
		counter__inc(&p->totals->failed);
		topic_missing(p, route, topic);
		return true;
	}
	if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
		counter__inc(&route->counters.too_large);
		counter__inc(&p->totals->too_large);
		log__deferred_ratelimited(&p->rl_too_large, MOSQ_LOG_ERR,
					  "route %s: a %zu-byte record for '%.200s' is over "
					  "message.max.bytes: not forwarded",
					  route->name, rec.value_len, msg.topic);
	} else {
		atomic_fetch_add(&route->counters.refused, 1);
		atomic_fetch_add(&p->totals->refused, 1);
		log__deferred_ratelimited(&p->rl_refused, MOSQ_LOG_ERR,
					  "route %s: librdkafka refused a record for '%.200s': %s",
					  route->name, msg.topic, rd_kafka_err2str(err));
	}
	return true;
}

/* Gives the room of the oldest settled entries back to mosquitto's thread. Kafka thread. */
static void release_settled(struct mqk_producer *p)
{
	struct mqk_entry *e;

	while ((e = buffer__peek(p->buf)) != NULL && e->state == MQK_ENTRY_SETTLED) {
		capture__discard(p->buf, e);
		buffer__release(p->buf, e);
		counter__inc(&p->buf->released);
	}
	/* For /healthz and the metrics: the oldest record not acknowledged, the last ack. */
	int64_t oldest = e != NULL ? e->timestamp_ms : 0;
	if (oldest != p->oldest_ms) {
		p->oldest_ms = oldest;
		atomic_store_explicit(&p->buf->oldest_ms, oldest, memory_order_relaxed);
	}
	uint64_t delivered = counter__get(&p->totals->delivered);
	if (delivered != p->delivered_seen) {
		p->delivered_seen = delivered;
		atomic_store_explicit(&p->buf->acked_ms, mqk_realtime_ms(), memory_order_relaxed);
	}
}

/*
 * Hands what the buffer holds to librdkafka, in order. Kafka thread. Returns false when
 * blocked: librdkafka's queue is full, or its producer failed fatally.
 */
static bool drain(struct mqk_producer *p)
{
	struct mqk_entry *e;
	int n = 0;

	while (!p->fatal && (e = buffer__next_unsent(p->buf)) != NULL) {
		/*
		 * After a rewind, entries Kafka acknowledged meanwhile are skipped, and those
		 * send_alone handles.
		 */
		if (e->state == MQK_ENTRY_NEW && !produce_entry(p, e)) {
			return false;
		}
		buffer__mark_sent(p->buf, e);
		if (++n % POLL_EVERY == 0) {
			poll_round(p, 0);
			release_settled(p);
		}
	}
	return !p->fatal;
}

/* Whether conf's linger.ms (after the profile and the admin's kafka.* lines) is below ms. */
static bool linger_below(const rd_kafka_conf_t *conf, int ms)
{
	char value[32];
	size_t size = sizeof(value);

	return rd_kafka_conf_get(conf, "linger.ms", value, &size) == RD_KAFKA_CONF_OK &&
	       strtod(value, NULL) < ms;
}

/*
 * Creates the librdkafka handle, routes its main queue's events to the buffer's
 * eventfd, and a topic handle for each static route topic. Returns 0, or -1 with one
 * line in errstr.
 */
static int create_handle(struct mqk_producer *p, char *errstr, size_t errstr_size)
{
	/* An eventfd wants 8-byte writes: librdkafka writes this when its queue wakes up. */
	static const uint64_t one = 1;
	rd_kafka_conf_t *conf = build_conf(p, p->cfg, errstr, errstr_size);
	rd_kafka_queue_t *mainq;
	char why[512];

	if (conf == NULL) {
		return -1;
	}
	p->nap_wakes = linger_below(conf, NAP_MS);
	p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why)); /* takes conf on success */
	if (p->rk == NULL) {
		rd_kafka_conf_destroy(conf);
		snprintf(errstr, errstr_size,
			 "plugin_opt_kafka.*: librdkafka refused the configuration: %s", why);
		return -1;
	}
	/* Logs come out of rd_kafka_poll on the Kafka thread, not from librdkafka's. */
	rd_kafka_set_log_queue(p->rk, NULL);
	mainq = rd_kafka_queue_get_main(p->rk);
	rd_kafka_queue_io_event_enable(mainq, p->buf->wake_fd, &one, sizeof(one));
	rd_kafka_queue_destroy(mainq);

	for (int i = 0; i < p->start_routes; i++) {
		struct mqk_route *r = &p->cfg->routes[i];
		if (r->topic.is_static) {
			r->rkt = rd_kafka_topic_new(p->rk, r->topic.source, NULL);
			if (r->rkt == NULL) {
				snprintf(errstr, errstr_size, "plugin_opt_route_%s: topic '%s': %s",
					 r->name, r->topic.source,
					 rd_kafka_err2str(rd_kafka_last_error()));
				return -1;
			}
		}
	}
	return 0;
}

/* Destroys the librdkafka handle and the route topic handles made from it. */
static void destroy_handle(struct mqk_producer *p)
{
	for (int i = 0; i < p->start_routes; i++) {
		if (p->cfg->routes[i].rkt) {
			rd_kafka_topic_destroy(p->cfg->routes[i].rkt);
			p->cfg->routes[i].rkt = NULL;
		}
	}
	if (p->rk) {
		rd_kafka_destroy(p->rk);
		p->rk = NULL;
	}
}

/*
 * librdkafka's idempotent producer raised a fatal error (librdkafka 2.0 can, when a
 * partition leader fails over mid-request: "sequence desynchronization"). The handle
 * cannot send any more, so it is replaced, and every record not yet acknowledged is sent
 * again, in order, from the buffer, which still holds it. Records Kafka had stored
 * without our seeing the acknowledgement reach it twice (the new producer has a new
 * producer id): at least once, not exactly once; mqtt.seq tells the copies apart.
 * Kafka thread.
 */
static void recover(struct mqk_producer *p)
{
	char reason[512] = "", errstr[1024];
	uint64_t resent = 0;

	rd_kafka_fatal_error(p->rk, reason, sizeof(reason));
	/* The records librdkafka holds come back through delivery reports (on_delivery). */
	rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	for (int i = 0; i < 50 && counters__in_flight(p->totals) > 0; i++) {
		poll_round(p, 100);
	}
	destroy_handle(p);
	/* Those it did not report are taken back too. */
	for (uint64_t pos = p->buf->tail_local; pos < p->buf->send_local;) {
		struct mqk_entry *e = buffer__at(p->buf, &pos);
		if (e == NULL) {
			break;
		}
		if (e->state == MQK_ENTRY_IN_KAFKA) {
			e->state = MQK_ENTRY_NEW;
			counter__dec(&p->cfg->routes[e->live_route].counters.produced);
			counter__dec(&p->totals->produced);
		}
		if (e->state == MQK_ENTRY_NEW) {
			resent++;
		}
		pos += e->size;
	}
	buffer__rewind(p->buf);
	while (create_handle(p, errstr, sizeof(errstr)) != 0) {
		destroy_handle(p);
		log__deferred_ratelimited(&p->rl_error, MOSQ_LOG_ERR,
					  "cannot create a new Kafka producer: %s", errstr);
		if (atomic_load(&p->stop)) {
			return; /* producer__close finds no handle: the buffer's records are lost */
		}
		buffer__sleep(p->buf, 1000, false);
	}
	p->fatal = false;
	log__deferred(MOSQ_LOG_WARNING,
		      "replaced the Kafka producer after a fatal error (%s): %llu records not yet "
		      "acknowledged are sent again (Kafka may receive some twice)",
		      reason, (unsigned long long)resent);
}

/*
 * The records of a batch Kafka refused as too large (MQK_ENTRY_ALONE), each sent again
 * with nothing else in flight, in buffer order: librdkafka cannot batch it with another.
 * The one really over the topic's max.message.bytes fails then (too_large); the others
 * are delivered, after records that were sent meanwhile (their order is lost: a
 * misconfiguration, logged, see README). Kafka thread; waits at most ALONE_WAIT_MS for
 * each, serving delivery reports.
 */
#define ALONE_WAIT_MS 10000
static void send_alone(struct mqk_producer *p)
{
	p->alone_pending = false;
	for (uint64_t pos = p->buf->tail_local; pos < p->buf->send_local;) {
		struct mqk_entry *e = buffer__at(p->buf, &pos);
		if (e == NULL) {
			break;
		}
		pos += e->size;
		if (e->state != MQK_ENTRY_ALONE) {
			continue;
		}
		/* Nothing else in flight: the record travels in a batch of its own. */
		rd_kafka_flush(p->rk, ALONE_WAIT_MS);
		e->alone = 1;
		e->state = MQK_ENTRY_NEW;
		if (!produce_entry(p, e)) {
			e->state = MQK_ENTRY_ALONE; /* queue full or fatal: later */
			p->alone_pending = true;
			return;
		}
		rd_kafka_flush(p->rk, ALONE_WAIT_MS);
		if (e->state == MQK_ENTRY_ALONE) {
			p->alone_pending = true; /* failed again in a batch: tried again later */
		}
		if (atomic_load(&p->stop) || p->fatal) {
			p->alone_pending = true;
			return;
		}
	}
}

/*
 * overflow drop_oldest: frees room by dropping the oldest records not yet in Kafka.
 * First those librdkafka holds and has not sent (purged: their reports count them),
 * then, if that was not enough, the oldest not handed to librdkafka yet. Memory: until
 * an eighth of the buffer is free. Journal: until the oldest segment is passed. Kafka
 * thread; runs when mosquitto's thread found the buffer full (want_room) or it is
 * nearly so.
 */
static void make_room(struct mqk_producer *p)
{
	struct mqk_buffer *b = p->buf;
	struct mqk_entry *e;
	/* Loaded before it is exchanged: mosquitto's thread reads this cache line at every
	 * commit, and an exchange would write it every round. */
	bool asked = atomic_load_explicit(&b->want_room, memory_order_relaxed) &&
		     atomic_exchange(&b->want_room, false);
	uint64_t before = counter__get(&p->totals->dropped_oldest);

	if (!asked && !buffer__nearly_full(b)) {
		return;
	}
	if (counters__in_flight(p->totals) > 0) {
		rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE);
		for (int i = 0;
		     i < 10 && rd_kafka_outq_len(p->rk) > 0 && counters__in_flight(p->totals) > 0;
		     i++) {
			poll_round(p, 10);
		}
		poll_round(p, 0);
		release_settled(p);
	}
	/* Only while librdkafka holds nothing older: each drop gives its room back at once. */
	while (buffer__nearly_full(b) && b->tail_local == b->send_local &&
	       (e = buffer__next_unsent(b)) != NULL) {
		if (e->state == MQK_ENTRY_NEW && e->live_route != MQK_ROUTE_GONE) {
			struct mqk_route *route = &p->cfg->routes[e->live_route];
			counter__inc(&route->counters.dropped_oldest);
			counter__inc(&p->totals->dropped_oldest);
		}
		e->state = MQK_ENTRY_SETTLED;
		buffer__mark_sent(b, e);
		release_settled(p);
	}
	if (counter__get(&p->totals->dropped_oldest) == before) {
		return;
	}
	log__deferred_ratelimited(
		&p->rl_dropped, MOSQ_LOG_ERR,
		"the %s is full (Kafka unreachable or too slow): the oldest "
		"records not yet in Kafka are dropped (overflow drop_oldest), %llu "
		"so far",
		b->journal ? "journal" : "buffer",
		(unsigned long long)counter__get(&p->totals->dropped_oldest));
}

static void *kafka_thread(void *arg)
{
	struct mqk_producer *p = arg;
	int64_t last_work = 0;

	ensure_static_topics(p);
	for (;;) {
		bool had_work = !buffer__all_sent(p->buf);
		bool blocked = !drain(p);
		poll_round(p, 0);
		release_settled(p);
		if (p->fatal) {
			recover(p);
			continue;
		}
		if (p->alone_pending) {
			send_alone(p);
			release_settled(p);
		}
		if (p->cfg->overflow == MQK_OVERFLOW_DROP_OLDEST) {
			make_room(p);
		}
		if (p->buf->journal != NULL) {
			journal__housekeeping(p->buf->journal, p->buf->tail_local,
					      atomic_load(&p->buf->head), mqk_monotonic_ms());
		}
		if (atomic_load(&p->stop)) {
			if (buffer__all_sent(p->buf)) {
				break;
			}
			if (mqk_monotonic_ms() >= atomic_load(&p->deadline_ms)) {
				break; /* what is left is counted by producer__close */
			}
		}
		int64_t now = mqk_monotonic_ms();
		if (had_work) {
			last_work = now;
		}
		if (blocked) {
			buffer__sleep(p->buf, BLOCKED_SLEEP_MS, false);
		} else if (now - last_work < ACTIVE_MS) {
			buffer__sleep(p->buf, NAP_MS, p->nap_wakes);
		} else {
			buffer__sleep(p->buf, IDLE_SLEEP_MS, true);
		}
	}
	return NULL;
}

struct mqk_producer *producer__new(struct mqk_config *cfg, struct mqk_buffer *buf,
				   const struct mqk_origin *origin, struct mqk_counters *totals,
				   char *errstr, size_t errstr_size)
{
	struct mqk_producer *p = calloc(1, sizeof(*p));

	if (p == NULL || record__scratch_init(&p->scratch)) {
		snprintf(errstr, errstr_size, "out of memory");
		free(p);
		return NULL;
	}
	topics__init(&p->topics, KNOWN_TOPICS_MAX);
	p->cfg = cfg;
	p->start_routes = cfg->route_count;
	p->buf = buf;
	p->origin = origin;
	p->totals = totals;
	if (create_handle(p, errstr, errstr_size) != 0) {
		producer__close(p, 0);
		return NULL;
	}

	p->thread_started = mqk_thread_start(&p->thread, kafka_thread, p, "mqk-kafka");
	if (!p->thread_started) {
		snprintf(errstr, errstr_size, "cannot start the Kafka thread");
		producer__close(p, 0);
		return NULL;
	}
	return p;
}

int producer__close(struct mqk_producer *p, int timeout_ms)
{
	int64_t deadline = mqk_monotonic_ms() + timeout_ms;
	uint64_t left = 0;

	if (p == NULL) {
		return 0;
	}
	if (p->thread_started) {
		/* The thread hands what the buffer holds to librdkafka, until the deadline. */
		atomic_store(&p->deadline_ms, deadline);
		atomic_store(&p->stop, true);
		buffer__wake(p->buf);
		pthread_join(p->thread, NULL);
	}
	/* From here on mosquitto's thread serves librdkafka's main queue. */
	if (p->rk) {
		int64_t remaining = deadline - mqk_monotonic_ms();
		rd_kafka_flush(p->rk, remaining > 0 ? (int)remaining : 0);
		release_settled(p); /* the journal's acknowledged position: buf->tail_local */
		left = counters__in_flight(p->totals);
		if (left > 0) {
			/* What Kafka did not take in time: reported as failed (purged), and lost.
			 */
			p->closing = true;
			rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
			rd_kafka_flush(p->rk, 1000); /* serves the purge reports */
		}
	}
	destroy_handle(p);
	/* And what never reached librdkafka: lost too (a journal keeps it). */
	if (p->buf->journal != NULL) {
		left = 0;
	}
	for (uint64_t pos = p->buf->tail_local;;) {
		struct mqk_entry *e = buffer__at(p->buf, &pos);
		if (e == NULL) {
			break;
		}
		left += p->buf->journal != NULL ? e->state != MQK_ENTRY_SETTLED
						: e->state == MQK_ENTRY_NEW;
		pos += e->size;
	}
	log__drain();
	record__scratch_free(&p->scratch);
	topics__free(&p->topics);
	free(p);
	return (int)left;
}
