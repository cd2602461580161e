/*
 * inbound.c - the inbound thread: Kafka records of the inbound routes -> the hand-off
 * queue, for mosquitto's thread to publish to every subscriber (docs/inbound.md).
 *
 * The thread ("mqk-inbound") owns a consumer of every plugin_opt_inbound_<name> Kafka
 * topic, in a consumer group of this broker's own (inbound_group, by default
 * mosquitto-kafka-inbound-{broker}): each broker reads every partition, since a
 * subscriber may be connected to any of them. It never calls a mosquitto_* function. In
 * a loop that sleeps on one eventfd (written by librdkafka's consumer queue and by
 * mosquitto's thread after a TICK settled records):
 *
 *   1. it reads records (rd_kafka_consumer_poll, never blocking), expands each one's
 *      route's MQTT topic template ({key}, {partition}, {header:<name>}) and appends it
 *      to the hand-off queue (handoff.c: one queue, in Kafka order, so each partition's
 *      order reaches every subscriber), then wakes mosquitto's loop with a PINGREQ on a
 *      loopback connection of its own (wake.c);
 *   2. mosquitto's thread publishes them on the TICK (inbound_publish.c) and marks each
 *      one settled;
 *   3. it releases settled records from the head of the queue, in Kafka order, and only
 *      then stores their offsets (enable.auto.offset.store=false; librdkafka commits what
 *      is stored every second and at close): a record is committed once mosquitto has
 *      taken it, so a crash before re-reads it (at-least-once).
 *
 * The queue is bounded (QUEUE_MAX records). When it is full the thread pauses its
 * partitions (rd_kafka_pause_partitions: librdkafka drops what it fetched ahead and
 * fetches again from the next record on resume), and resumes them when the queue is
 * down to half: nothing is dropped, the order is kept. It keeps calling consumer_poll
 * meanwhile, so the group does not evict it (max.poll.interval.ms).
 *
 * A new group starts at the end of the topics (auto.offset.reset=latest), like the
 * commands consumer: a broker that joins must not replay old notices to everyone.
 * plugin_opt_inbound_kafka.auto.offset.reset earliest changes that.
 */
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>

#include "mqk.h"

/* Records waiting for mosquitto's thread, at most: then the partitions are paused. */
#define QUEUE_MAX 10000
/* Records read per round, so that settling is served in between. */
#define READ_BATCH 500
#define IDLE_WAIT_MS 100
/* MQTT allows 65535 bytes of topic. */
#define TOPIC_MAX 65536

struct mqk_inbound {
	const struct mqk_config *cfg; /* the plugin's */
	const struct mqk_inbound_config *ic;
	struct mqk_inbound_counters *ctr; /* the plugin's */
	rd_kafka_t *consumer;
	struct mqk_handoff handoff;
	struct mqk_wake wake;
	struct mqk_cmd_counters wake_ctr; /* wake__ping counts here: copied to ctr->wakes */
	pthread_t thread;
	bool thread_started;
	atomic_bool stop;
	/* The inbound thread's: */
	bool paused;
	struct mqk_ratelimit rl_error, rl_security, rl_pause;
	char topic_buf[TOPIC_MAX];
};

/* librdkafka's log lines, from any of its threads: to the mailbox. */
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void)rk;
	log__librdkafka("inbound: ", level, fac, buf);
}

/* librdkafka's error_cb. Any of librdkafka's threads: rl_security/rl_error are only used here. */
static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	struct mqk_inbound *in = opaque;

	(void)rk;
	kafka_conf__log_error(&in->rl_security, &in->rl_error, "inbound: ",
			      "no inbound records are read until it succeeds", err, reason);
}

/* Partitions assigned or revoked. Inbound thread (served by consumer_poll). */
static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
			 rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	struct mqk_inbound *in = opaque;

	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		log__deferred(MOSQ_LOG_NOTICE, "inbound: consuming %d partition%s of %d topic%s",
			      parts->cnt, parts->cnt == 1 ? "" : "s", in->ic->count,
			      in->ic->count == 1 ? "" : "s");
		rd_kafka_assign(rk, parts);
		if (in->paused) {
			rd_kafka_pause_partitions(rk, parts);
		}
	} else {
		/* What was settled is stored: commit it before the partitions go. */
		rd_kafka_commit(rk, NULL, 0);
		rd_kafka_assign(rk, NULL);
	}
}

/* Pauses (or resumes) every assigned partition. Inbound thread. */
static void set_paused(struct mqk_inbound *in, bool pause)
{
	rd_kafka_topic_partition_list_t *parts = NULL;

	if (rd_kafka_assignment(in->consumer, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		return; /* tried again next round */
	}
	if (pause) {
		rd_kafka_pause_partitions(in->consumer, parts);
		counter__inc(&in->ctr->paused);
		log__deferred_ratelimited(&in->rl_pause, MOSQ_LOG_NOTICE,
					  "inbound: %zu records wait for mosquitto's thread: "
					  "partitions paused until half of them are published",
					  in->handoff.count);
	} else {
		rd_kafka_resume_partitions(in->consumer, parts);
	}
	rd_kafka_topic_partition_list_destroy(parts);
	in->paused = pause;
}

static rd_kafka_t *new_consumer(struct mqk_inbound *in, char *errstr, size_t errstr_size)
{
	const struct mqk_config *cfg = in->cfg;
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char client_id[128], origin[320], why[512];
	rd_kafka_t *rk;

	snprintf(client_id, sizeof(client_id), "mosquitto_kafka-%s-inbound", cfg->broker_id);
	if (kafka_conf__set(conf, "plugin defaults", "client.id", client_id, errstr, errstr_size) ||
	    kafka_conf__set(conf, "plugin_opt_bootstrap_servers", "bootstrap.servers",
			    cfg->bootstrap_servers, errstr, errstr_size) ||
	    kafka_conf__set(conf, "plugin_opt_inbound_group", "group.id", in->ic->group, errstr,
			    errstr_size) ||
	    kafka_conf__set(conf, "plugin defaults", "enable.auto.offset.store", "false", errstr,
			    errstr_size) ||
	    kafka_conf__set(conf, "plugin defaults", "auto.offset.reset", "latest", errstr,
			    errstr_size) ||
	    kafka_conf__set(conf, "plugin defaults", "auto.commit.interval.ms", "1000", errstr,
			    errstr_size) ||
	    kafka_conf__apply(conf, cfg, errstr, errstr_size)) {
		goto error;
	}
	for (int i = 0; i < in->ic->kafka_prop_count; i++) {
		const struct mqk_kafka_prop *p = &in->ic->kafka_props[i];
		snprintf(origin, sizeof(origin), "plugin_opt_inbound_kafka.%s", p->name);
		if (kafka_conf__set(conf, origin, p->name, p->value, errstr, errstr_size)) {
			goto error;
		}
	}
	rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
	rd_kafka_conf_set_log_cb(conf, on_log);
	rd_kafka_conf_set_error_cb(conf, on_error);
	rd_kafka_conf_set_opaque(conf, in);
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why));
	if (rk == NULL) {
		snprintf(errstr, errstr_size, "inbound: cannot create the Kafka consumer: %s", why);
		goto error;
	}
	return rk; /* conf is rk's now */
error:
	rd_kafka_conf_destroy(conf);
	return NULL;
}

/* The inbound route reading this record's topic (one route per Kafka topic), or -1. */
static int route_of(const struct mqk_inbound *in, const rd_kafka_message_t *rkm)
{
	const char *topic = rd_kafka_topic_name(rkm->rkt);

	for (int i = 0; i < in->ic->count; i++) {
		if (!strcmp(in->ic->routes[i].kafka_topic, topic)) {
			return i;
		}
	}
	return -1;
}

/*
 * A record -> a queued message (one allocation: struct, then topic). One whose template
 * does not expand gets a reason and passes through mosquitto's thread like the others,
 * which counts and logs it, so that its offset is stored in order.
 */
static struct mqk_inbound_msg *make_msg(struct mqk_inbound *in, rd_kafka_message_t *rkm)
{
	int route = route_of(in, rkm);
	const char *cause = NULL;
	char cause_buf[sizeof(((struct mqk_inbound_msg *)0)->cause)];
	int len = -1;

	if (route < 0) {
		cause = "no inbound route for its topic";
	} else {
		len = template__expand_record(&in->ic->routes[route].mqtt_topic, rkm,
					      in->cfg->broker_id, in->topic_buf,
					      sizeof(in->topic_buf), &cause, cause_buf,
					      sizeof(cause_buf));
	}
	if (len < 0) {
		len = 0;
	}
	struct mqk_inbound_msg *m = malloc(sizeof(*m) + (size_t)len + 1);
	if (m == NULL) {
		return NULL;
	}
	char *topic = (char *)(m + 1);
	memcpy(topic, in->topic_buf, (size_t)len);
	topic[len] = '\0';
	memset(&m->cmd, 0, sizeof(m->cmd));
	m->cmd.rkm = rkm;
	m->cmd.client_id = "";
	m->cmd.topic = topic;
	m->cmd.reason = NULL;
	m->route = route;
	if (cause != NULL) {
		snprintf(m->cause, sizeof(m->cause), "%s", cause);
		m->cmd.reason = m->cause;
	}
	atomic_init(&m->cmd.state, MQK_CMD_QUEUED);
	return m;
}

/*
 * Reads what the consumer has (a batch). Returns true when it queued anything; *more:
 * a whole batch was read, so more may wait (librdkafka writes the eventfd only when its
 * queue turns non-empty: the next round must not sleep).
 */
static bool read_records(struct mqk_inbound *in, bool *more)
{
	bool wake = false;

	*more = false;
	for (int n = 0; n < READ_BATCH; n++) {
		rd_kafka_message_t *rkm = rd_kafka_consumer_poll(in->consumer, 0);
		if (rkm == NULL) {
			break;
		}
		*more = n + 1 == READ_BATCH;
		if (rkm->err) {
			if (rkm->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
				log__deferred_ratelimited(&in->rl_error, MOSQ_LOG_WARNING,
							  "inbound: consumer: %s",
							  rd_kafka_message_errstr(rkm));
			}
			rd_kafka_message_destroy(rkm);
			continue;
		}
		counter__inc(&in->ctr->consumed);
		struct mqk_inbound_msg *m = make_msg(in, rkm);
		if (m == NULL) {
			/*
			 * Its offset is never stored, nor any later one of its partition: out of
			 * memory, and the records are read again after a restart.
			 */
			log__deferred_ratelimited(&in->rl_error, MOSQ_LOG_ERR,
						  "inbound: out of memory: a record is not "
						  "published");
			rd_kafka_message_destroy(rkm);
			continue;
		}
		if (handoff__push(&in->handoff, &m->cmd)) {
			wake = true;
		}
		if (in->handoff.count >= QUEUE_MAX) {
			break;
		}
	}
	return wake;
}

/* Releases settled records from the head, in Kafka order, storing their offsets. */
static void settle(struct mqk_inbound *in)
{
	struct mqk_command *cmd;

	while ((cmd = handoff__head(&in->handoff)) != NULL &&
	       atomic_load_explicit(&cmd->state, memory_order_acquire) == MQK_CMD_DONE) {
		handoff__pop(&in->handoff);
		rd_kafka_offset_store(cmd->rkm->rkt, cmd->rkm->partition, cmd->rkm->offset);
		rd_kafka_message_destroy(cmd->rkm);
		free(cmd); /* the struct mqk_inbound_msg: cmd is its first member */
	}
}

static void *inbound_thread(void *arg)
{
	struct mqk_inbound *in = arg;
	struct pollfd pfd = {.fd = in->handoff.wake_fd, .events = POLLIN};
	uint64_t drain;
	bool more = false;

	while (!atomic_load(&in->stop)) {
		/* A full queue waits for mosquitto's thread, which writes the eventfd. */
		bool busy = more && in->handoff.count < QUEUE_MAX;
		if (poll(&pfd, 1, busy ? 0 : IDLE_WAIT_MS) > 0) {
			ssize_t rc = read(in->handoff.wake_fd, &drain, sizeof(drain));
			(void)rc;
		}
		wake__drain(&in->wake);
		wake__keepalive(&in->wake);
		settle(in);
		if (!in->paused && in->handoff.count >= QUEUE_MAX) {
			set_paused(in, true);
		} else if (in->paused && in->handoff.count <= QUEUE_MAX / 2) {
			set_paused(in, false);
		}
		/* Paused, it still polls: rebalances, errors, and the group's liveness. */
		if (read_records(in, &more) || in->wake.fd < 0) {
			uint64_t before = counter__get(&in->wake_ctr.wakes);
			wake__ping(&in->wake, &in->wake_ctr);
			if (counter__get(&in->wake_ctr.wakes) != before) {
				counter__inc(&in->ctr->wakes);
			}
		}
	}
	settle(in);
	return NULL;
}

struct mqk_inbound *inbound__new(const struct mqk_config *cfg, struct mqk_inbound_counters *ctr,
				 char *errstr, size_t errstr_size)
{
	struct mqk_inbound *in = calloc(1, sizeof(*in));
	rd_kafka_topic_partition_list_t *topics;
	rd_kafka_queue_t *q;
	rd_kafka_resp_err_t err;
	static const uint64_t one = 1;

	if (in == NULL || handoff__init(&in->handoff)) {
		snprintf(errstr, errstr_size, "inbound: out of memory");
		free(in);
		return NULL;
	}
	in->cfg = cfg;
	in->ic = &cfg->inbound;
	in->ctr = ctr;
	if (wake__init(&in->wake, in->ic->wake, errstr, errstr_size)) {
		snprintf(errstr, errstr_size,
			 "plugin_opt_inbound_wake: '%s' is not auto, off or host:port",
			 in->ic->wake);
		goto error;
	}
	in->wake.who = "inbound";
	in->consumer = new_consumer(in, errstr, errstr_size);
	if (in->consumer == NULL) {
		goto error;
	}
	rd_kafka_poll_set_consumer(in->consumer);
	topics = rd_kafka_topic_partition_list_new(in->ic->count);
	for (int i = 0; i < in->ic->count; i++) {
		rd_kafka_topic_partition_list_add(topics, in->ic->routes[i].kafka_topic,
						  RD_KAFKA_PARTITION_UA);
	}
	err = rd_kafka_subscribe(in->consumer, topics);
	rd_kafka_topic_partition_list_destroy(topics);
	if (err) {
		snprintf(errstr, errstr_size, "inbound: cannot subscribe: %s",
			 rd_kafka_err2str(err));
		goto error;
	}
	/* New records wake the thread through the hand-off's eventfd. */
	q = rd_kafka_queue_get_consumer(in->consumer);
	rd_kafka_queue_io_event_enable(q, in->handoff.wake_fd, &one, sizeof(one));
	rd_kafka_queue_destroy(q);

	in->thread_started = mqk_thread_start(&in->thread, inbound_thread, in, "mqk-inbound");
	if (!in->thread_started) {
		snprintf(errstr, errstr_size, "inbound: cannot start a thread");
		goto error;
	}
	return in;
error:
	inbound__close(in);
	return NULL;
}

struct mqk_handoff *inbound__handoff(struct mqk_inbound *in)
{
	return &in->handoff;
}

const struct mqk_wake *inbound__wake(const struct mqk_inbound *in)
{
	return in ? &in->wake : NULL;
}

void inbound__close(struct mqk_inbound *in)
{
	struct mqk_command *cmd;

	if (in == NULL) {
		return;
	}
	atomic_store(&in->stop, true);
	if (in->thread_started) {
		handoff__signal(&in->handoff);
		pthread_join(in->thread, NULL);
	}
	/*
	 * Records still queued were not published: their offsets are not stored, so they are
	 * read again at the next start. Their messages go before the consumer (librdkafka
	 * waits for every message of a handle to be destroyed).
	 */
	while ((cmd = handoff__pop(&in->handoff)) != NULL) {
		rd_kafka_message_destroy(cmd->rkm);
		free(cmd);
	}
	if (in->consumer != NULL) {
		rd_kafka_consumer_close(in->consumer); /* commits the stored offsets */
		rd_kafka_destroy(in->consumer);
	}
	wake__close(&in->wake);
	handoff__free(&in->handoff);
	free(in);
}
