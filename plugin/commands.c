/*
 * commands.c - the commands thread: Kafka command records -> the hand-off queue, and
 * what has to go back to Kafka.
 *
 * The thread ("mqk-commands") owns a consumer of commands_topic (consumer group
 * commands_group, one per broker by default) and a small idempotent producer. In a
 * loop that sleeps on one eventfd (written by librdkafka's queues, by mosquitto's
 * thread after a TICK settled commands, and by presence events):
 *
 *   1. it reads command records (rd_kafka_consumer_poll, never blocking), finds each
 *      one's target client id (the key, or a header) and MQTT topic (the
 *      commands_mqtt_topic template), appends it to the hand-off queue (handoff.c) and
 *      wakes mosquitto's loop (wake.c); at most QUEUE_MAX wait there;
 *   2. mosquitto's thread delivers them on the TICK (deliver.c) and marks each one;
 *   3. it produces what came back marked: a command to return to the router
 *      (targeted mode, the device is not here) with mqk.hops + 1, or a dead letter with
 *      mqk.reason; and the presence records of clients that came and went (presence.c);
 *   4. it releases settled commands from the head of the queue, in Kafka order, and
 *      stores their offsets (enable.auto.offset.store=false; librdkafka commits what
 *      is stored every auto.commit.interval.ms and at close). A command's offset is
 *      committed only when it was handed to mosquitto, skipped, or its return or dead
 *      letter is acknowledged by Kafka: a crash before re-reads it (at-least-once).
 *
 * Redistribute mode (redistribute.c) adds a second consumer, of this broker's own
 * back-channel topic and of the presence topic (group <commands_group>-<broker_id>, so
 * it gets every partition of both; the presence topic is read from the beginning at
 * every assignment and its offsets are never stored). Its command records go to the
 * same hand-off queue; its presence records to the redistributor's table. A command
 * mosquitto's thread did not find here is produced, in step 3, to the back-channel of
 * the broker the table places its client at, or held and retried (redistribute.c).
 *
 * A new consumer group starts at the end of the topic (auto.offset.reset=latest): a
 * broker joining the cluster must not replay old commands to devices. Change it with
 * plugin_opt_commands_kafka.auto.offset.reset. The kafka.* options (addresses, TLS,
 * SASL) apply to these clients too; commands_kafka.* only to the consumer.
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

#include "mosquitto_kafka.h"
#include "mqk.h"

/* Commands waiting for mosquitto's thread, at most: then the thread stops consuming. */
#define QUEUE_MAX 10000
/* Records read per round, so that settling and presence are served in between. */
#define READ_BATCH 500
#define IDLE_WAIT_MS 100
/* Queued commands that see no TICK for this long: per_listener_settings true on a
   mosquitto before 2.0.15? */
#define NO_TICK_MS 5000
#define TOPIC_MAX 65536
/* Redistribute: how long a command for a client known nowhere waits before a retry. */
#define HOLD_MS 1000

struct mqk_commands {
	const struct mqk_config *cfg; /* the plugin's */
	const struct mqk_cmd_config *cc;
	const struct mqk_origin *origin;
	struct mqk_cmd_counters *ctr; /* the plugin's */
	rd_kafka_t *consumer;
	rd_kafka_t *producer;
	rd_kafka_t *own;              /* redistribute: back-channel and presence; else NULL */
	struct mqk_redistributor *rd; /* redistribute: presence table, held commands; owned */
	struct mqk_handoff handoff;
	struct mqk_wake wake;
	pthread_t thread;
	bool thread_started;
	atomic_bool stop;
	int close_timeout_ms;
	/* The commands thread's: */
	struct mqk_command *scan; /* the oldest command whose mark it has not read yet */
	uint64_t ticks_seen;
	int64_t ticks_changed_ms;
	bool no_tick_logged;
	struct mqk_ratelimit rl_error, rl_invalid, rl_lost;
	struct mqk_ratelimit rl_security; /* authentication and TLS errors: their own limit */
	struct mqk_ratelimit rl_presence; /* malformed presence records */
	char topic_buf[TOPIC_MAX];
};

/* librdkafka's log lines, from any of its threads: to the mailbox. */
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void)rk;
	log__librdkafka("commands: ", level, fac, buf);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	struct mqk_commands *c = opaque;

	(void)rk;
	kafka_conf__log_error(&c->rl_security, &c->rl_error, "commands: ",
			      "no commands are read until it succeeds", err, reason);
}

/* Partitions assigned or revoked. Commands thread (served by consumer_poll). */
static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
			 rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	struct mqk_commands *c = opaque;
	const char *presence = c->cc->mode == MQK_CMD_REDISTRIBUTE ? c->cc->presence_topic : NULL;
	char list[512] = "";
	size_t len = 0;

	for (int i = 0; i < parts->cnt && len < sizeof(list) - 16; i++) {
		len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%d", i ? "," : "",
					parts->elems[i].partition);
		if (presence != NULL && !strcmp(parts->elems[i].topic, presence)) {
			/* Redistribute: the presence table is read in full at every start. */
			parts->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING;
		}
	}
	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		log__deferred(MOSQ_LOG_NOTICE, "commands: consuming %s partitions [%s]",
			      parts->cnt ? parts->elems[0].topic : "(none)", list);
		rd_kafka_assign(rk, parts);
	} else {
		/* What was settled is stored: commit it before another member takes over. */
		rd_kafka_commit(rk, NULL, 0);
		rd_kafka_assign(rk, NULL);
	}
}

/* Delivery report of a return, a dead letter or a presence record. Commands thread. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
	struct mqk_commands *c = opaque;
	struct mqk_command *cmd = rkm->_private;

	(void)rk;
	if (rkm->err) {
		counter__inc(&c->ctr->lost);
		log__deferred_ratelimited(
			&c->rl_lost, MOSQ_LOG_ERR, "commands: Kafka refused a %s record for %s: %s",
			cmd == NULL ? "presence" : "command", rd_kafka_topic_name(rkm->rkt),
			rd_kafka_err2str(rkm->err));
	} else if (cmd == NULL) {
		counter__inc(&c->ctr->presence);
	} else if (cmd->reason != NULL) {
		counter__inc(&c->ctr->dead_lettered);
	} else if (c->cc->mode == MQK_CMD_REDISTRIBUTE) {
		counter__inc(&c->ctr->forwarded);
	} else {
		counter__inc(&c->ctr->returned);
	}
	if (cmd != NULL) {
		atomic_store_explicit(&cmd->state, MQK_CMD_DONE, memory_order_relaxed);
	}
}

/* A consumer (of group; own: redistribute's second consumer) or the producer. */
static rd_kafka_t *new_client(struct mqk_commands *c, rd_kafka_type_t type, const char *group,
			      bool own, char *errstr, size_t errstr_size)
{
	const struct mqk_config *cfg = c->cfg;
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char client_id[128];
	char why[512];
	rd_kafka_t *rk;

	snprintf(client_id, sizeof(client_id), "mosquitto_kafka-%s-commands", cfg->broker_id);
	if (kafka_conf__set(conf, "plugin defaults", "client.id", client_id, errstr, errstr_size) ||
	    kafka_conf__set(conf, "plugin_opt_bootstrap_servers", "bootstrap.servers",
			    cfg->bootstrap_servers, errstr, errstr_size)) {
		goto error;
	}
	if (type == RD_KAFKA_CONSUMER) {
		/* The back-channel is read from its start: what was forwarded before the
		   broker's first assignment is this broker's too. */
		if (kafka_conf__set(conf, "plugin_opt_commands_group", "group.id", group, errstr,
				    errstr_size) ||
		    kafka_conf__set(conf, "plugin defaults", "enable.auto.offset.store", "false",
				    errstr, errstr_size) ||
		    kafka_conf__set(conf, "plugin defaults", "auto.offset.reset",
				    own ? "earliest" : "latest", errstr, errstr_size) ||
		    kafka_conf__set(conf, "plugin defaults", "auto.commit.interval.ms", "1000",
				    errstr, errstr_size)) {
			goto error;
		}
		if (!own && kstats__interval_ms() > 0) {
			/* The metrics' consumer lag (kstats.c; one consumer's: commands_topic's);
			   an admin's value wins. */
			char ms[16];
			snprintf(ms, sizeof(ms), "%d", kstats__interval_ms());
			if (kafka_conf__set(conf, "plugin defaults", "statistics.interval.ms", ms,
					    errstr, errstr_size)) {
				goto error;
			}
			rd_kafka_conf_set_stats_cb(conf, kstats__on_stats);
		}
		if (kafka_conf__apply(conf, cfg, errstr, errstr_size) ||
		    kafka_conf__apply_commands(conf, c->cc, errstr, errstr_size)) {
			goto error;
		}
		rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
	} else {
		if (kafka_conf__set(conf, "plugin defaults", "enable.idempotence", "true", errstr,
				    errstr_size) ||
		    kafka_conf__set(conf, "plugin defaults", "message.timeout.ms", "0", errstr,
				    errstr_size) ||
		    kafka_conf__set(conf, "plugin defaults", "linger.ms", "1", errstr,
				    errstr_size) ||
		    kafka_conf__apply(conf, cfg, errstr, errstr_size)) {
			goto error;
		}
		rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	}
	rd_kafka_conf_set_log_cb(conf, on_log);
	rd_kafka_conf_set_error_cb(conf, on_error);
	rd_kafka_conf_set_opaque(conf, c);
	rk = rd_kafka_new(type, conf, why, sizeof(why));
	if (rk == NULL) {
		snprintf(errstr, errstr_size, "commands: cannot create the Kafka %s: %s",
			 type == RD_KAFKA_CONSUMER ? "consumer" : "producer", why);
		goto error;
	}
	return rk; /* conf is rk's now */
error:
	rd_kafka_conf_destroy(conf);
	return NULL;
}

/* A header's value, or NULL. */
static const void *header(const rd_kafka_message_t *rkm, const char *name, size_t *len)
{
	rd_kafka_headers_t *hdrs;
	const void *value;

	if (rd_kafka_message_headers(rkm, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
	    rd_kafka_header_get_last(hdrs, name, &value, len) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		return NULL;
	}
	return value;
}

/*
 * A command record -> a command (one allocation: struct, target, topic). One the
 * plugin cannot deliver gets a reason and is dead-lettered after passing through
 * mosquitto's thread like the others (handoff.c).
 */
static struct mqk_command *make_command(struct mqk_commands *c, rd_kafka_message_t *rkm)
{
	const void *target;
	size_t target_len = 0;
	const char *reason = NULL;
	int topic_len = 0;
	char target_str[1024];
	int hops = 0;
	size_t hops_len;
	const char *hops_value = header(rkm, MQK_HDR_HOPS, &hops_len);

	if (c->cc->target_header != NULL) {
		target = header(rkm, c->cc->target_header, &target_len);
	} else {
		target = rkm->key;
		target_len = rkm->key_len;
	}
	if (hops_value != NULL && hops_len > 0 && hops_len < 10) {
		for (size_t i = 0; i < hops_len && hops >= 0; i++) {
			hops = hops_value[i] >= '0' && hops_value[i] <= '9'
				       ? hops * 10 + (hops_value[i] - '0')
				       : -1;
		}
		if (hops < 0) {
			hops = 0;
		}
	}
	if (target == NULL || target_len == 0) {
		reason = "no target";
		target_len = 0;
	} else if (target_len >= sizeof(target_str) || memchr(target, '\0', target_len)) {
		reason = "bad target";
		target_len = 0;
	} else {
		memcpy(target_str, target, target_len);
		target_str[target_len] = '\0';
		struct mqk_msg_ctx ctx = {
			.topic = "",
			.client_id = target_str,
			.broker_id = c->cfg->broker_id,
			.filter = "",
		};
		topic_len = template__expand(&c->cc->mqtt_topic, &ctx, c->topic_buf,
					     sizeof(c->topic_buf));
		if (topic_len < 0) {
			reason = "bad topic";
			topic_len = 0;
		}
	}
	struct mqk_command *cmd = malloc(sizeof(*cmd) + target_len + 1 + (size_t)topic_len + 1);
	if (cmd == NULL) {
		return NULL;
	}
	char *p = (char *)(cmd + 1);
	memcpy(p, target_str, target_len);
	p[target_len] = '\0';
	cmd->client_id = p;
	p += target_len + 1;
	memcpy(p, c->topic_buf, (size_t)topic_len);
	p[topic_len] = '\0';
	cmd->topic = p;
	cmd->next = NULL;
	cmd->rkm = rkm;
	cmd->hops = hops;
	cmd->reason = reason;
	atomic_init(&cmd->state, MQK_CMD_QUEUED);
	return cmd;
}

/* Redistribute: a presence record for the table (the caller keeps rkm). */
static void read_presence(struct mqk_commands *c, const rd_kafka_message_t *rkm)
{
	char why[512];

	counter__inc(&c->ctr->presence_read);
	if (redistribute__presence(c->rd, rkm, why, sizeof(why))) {
		log__deferred_ratelimited(&c->rl_presence, MOSQ_LOG_WARNING,
					  "commands: %s [%d] offset %lld: presence record ignored: %s",
					  rd_kafka_topic_name(rkm->rkt), (int)rkm->partition,
					  (long long)rkm->offset, why);
	}
}

/* Reads what consumer has, up to the queue's bound. Returns true when it queued. */
static bool read_commands(struct mqk_commands *c, rd_kafka_t *consumer)
{
	bool wake = false;

	for (int n = 0; n < READ_BATCH && c->handoff.count < QUEUE_MAX; n++) {
		rd_kafka_message_t *rkm = rd_kafka_consumer_poll(consumer, 0);
		if (rkm == NULL) {
			break;
		}
		if (rkm->err) {
			if (rkm->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
				log__deferred_ratelimited(&c->rl_error, MOSQ_LOG_WARNING,
							  "commands: consumer: %s",
							  rd_kafka_message_errstr(rkm));
			}
			rd_kafka_message_destroy(rkm);
			continue;
		}
		if (consumer == c->own &&
		    !strcmp(rd_kafka_topic_name(rkm->rkt), c->cc->presence_topic)) {
			read_presence(c, rkm);
			rd_kafka_message_destroy(rkm);
			continue;
		}
		counter__inc(&c->ctr->consumed);
		struct mqk_command *cmd = make_command(c, rkm);
		if (cmd == NULL) {
			/* Not stored: it is read again after a restart. */
			log__deferred_ratelimited(&c->rl_error, MOSQ_LOG_ERR,
						  "commands: out of memory: a command is skipped");
			rd_kafka_message_destroy(rkm);
			continue;
		}
		if (handoff__push(&c->handoff, cmd)) {
			wake = true;
		}
		if (c->scan == NULL) {
			c->scan = cmd;
		}
	}
	return wake;
}

/* The record's headers, plus the pipeline's: mqk.hops, mqk.broker, mqk.reason. */
static rd_kafka_headers_t *headers_for(const struct mqk_commands *c, const struct mqk_command *cmd,
				       int hops)
{
	rd_kafka_headers_t *src, *hdrs;
	char hops_str[16];

	if (rd_kafka_message_headers(cmd->rkm, &src) == RD_KAFKA_RESP_ERR_NO_ERROR) {
		hdrs = rd_kafka_headers_copy(src);
		rd_kafka_header_remove(hdrs, MQK_HDR_HOPS);
		rd_kafka_header_remove(hdrs, MQK_HDR_BY);
		rd_kafka_header_remove(hdrs, MQK_HDR_REASON);
	} else {
		hdrs = rd_kafka_headers_new(3);
	}
	snprintf(hops_str, sizeof(hops_str), "%d", hops);
	rd_kafka_header_add(hdrs, MQK_HDR_HOPS, -1, hops_str, -1);
	rd_kafka_header_add(hdrs, MQK_HDR_BY, -1, c->cfg->broker_id, -1);
	if (cmd->reason != NULL) {
		rd_kafka_header_add(hdrs, MQK_HDR_REASON, -1, cmd->reason, -1);
	}
	return hdrs;
}

/* A returned or dead command into Kafka; its delivery report settles it. */
static void produce_back(struct mqk_commands *c, struct mqk_command *cmd, const char *topic,
			 int hops)
{
	rd_kafka_message_t *rkm = cmd->rkm;
	rd_kafka_headers_t *hdrs = headers_for(c, cmd, hops);
	rd_kafka_resp_err_t err;

	atomic_store_explicit(&cmd->state, MQK_CMD_PRODUCING, memory_order_relaxed);
	err = rd_kafka_producev(
		c->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(rkm->key, rkm->key_len),
		RD_KAFKA_V_VALUE(rkm->payload, rkm->len), RD_KAFKA_V_HEADERS(hdrs),
		RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(cmd), RD_KAFKA_V_END);
	if (err) {
		rd_kafka_headers_destroy(hdrs); /* not taken */
		counter__inc(&c->ctr->lost);
		log__deferred_ratelimited(&c->rl_lost, MOSQ_LOG_ERR,
					  "commands: cannot produce to %s: %s", topic,
					  rd_kafka_err2str(err));
		atomic_store_explicit(&cmd->state, MQK_CMD_DONE, memory_order_relaxed);
	}
}

/*
 * Redistribute: a command whose client is not here (seq: the presence table's when
 * mosquitto's thread said so). To the back-channel of the broker the table places the
 * client at; known nowhere: held HOLD_MS once (held false), then a retry through this
 * broker's own back-channel. Each goes with mqk.hops + 1; past commands_max_hops it is
 * dead-lettered. Returns the reason to dead-letter, or NULL when it is on its way.
 */
static const char *redistribute(struct mqk_commands *c, struct mqk_command *cmd, uint64_t seq,
				bool held)
{
	char buf[512];
	const char *topic = redistribute__topic(c->rd, cmd, seq, buf, sizeof(buf));

	if (topic == NULL && !held &&
	    redistribute__hold(c->rd, cmd, mqk_monotonic_ms() + HOLD_MS, seq) == 0) {
		counter__inc(&c->ctr->held);
		atomic_store_explicit(&cmd->state, MQK_CMD_PRODUCING, memory_order_relaxed);
		return NULL; /* not settled: its offset waits (redistribute__due brings it back) */
	}
	if (cmd->hops + 1 > c->cc->max_hops) {
		return topic == NULL ? "not connected" : "too many hops";
	}
	produce_back(c, cmd, topic != NULL ? topic : c->cc->own_topic, cmd->hops + 1);
	return NULL;
}

/* Redistribute: held commands whose time came, looked up again. */
static void serve_held(struct mqk_commands *c)
{
	struct mqk_command *cmd;
	uint64_t seq;

	while ((cmd = redistribute__due(c->rd, mqk_monotonic_ms(), &seq)) != NULL) {
		const char *reason = redistribute(c, cmd, seq, true);
		if (reason != NULL) {
			cmd->reason = reason;
			counter__inc(&c->ctr->invalid);
			produce_back(c, cmd, c->cc->dead_letter_topic, cmd->hops);
		}
	}
}

/* A command mosquitto's thread marked RETURN or DEAD. */
static void send_back(struct mqk_commands *c, struct mqk_command *cmd, int state)
{
	const struct mqk_cmd_config *cc = c->cc;

	if (state == MQK_CMD_RETURN && cc->mode == MQK_CMD_REDISTRIBUTE) {
		cmd->reason = redistribute(c, cmd, redistribute__seq(c->rd), false);
		if (cmd->reason == NULL) {
			return;
		}
		state = MQK_CMD_DEAD;
	} else if (state == MQK_CMD_RETURN && cmd->hops + 1 > cc->max_hops) {
		cmd->reason = "too many hops";
		state = MQK_CMD_DEAD;
	}
	if (state == MQK_CMD_RETURN) {
		produce_back(c, cmd, cc->return_topic, cmd->hops + 1);
		return;
	}
	counter__inc(&c->ctr->invalid);
	if (cc->dead_letter_topic == NULL) {
		/* broadcast: every broker sees it; counted and logged, not dead-lettered N times.
		 */
		log__deferred_ratelimited(
			&c->rl_invalid, MOSQ_LOG_WARNING,
			"commands: a command for '%.200s' cannot be delivered: %s", cmd->client_id,
			cmd->reason);
		atomic_store_explicit(&cmd->state, MQK_CMD_DONE, memory_order_relaxed);
		return;
	}
	produce_back(c, cmd, cc->dead_letter_topic, cmd->hops);
}

/*
 * Reads the marks mosquitto's thread left (in queue order: it settles in that order),
 * sends back what has to go back, then releases settled commands from the head and
 * stores their offsets.
 */
static void settle(struct mqk_commands *c)
{
	struct mqk_command *cmd;

	while (c->scan != NULL) {
		int state = atomic_load_explicit(&c->scan->state, memory_order_acquire);
		if (state == MQK_CMD_QUEUED) {
			break;
		}
		if (state == MQK_CMD_RETURN || state == MQK_CMD_DEAD) {
			send_back(c, c->scan, state);
		}
		c->scan = c->scan->next; /* pushes, which set ->next, are this thread's */
	}
	while ((cmd = handoff__head(&c->handoff)) != NULL && cmd != c->scan &&
	       atomic_load_explicit(&cmd->state, memory_order_acquire) == MQK_CMD_DONE) {
		handoff__pop(&c->handoff);
		rd_kafka_offset_store(cmd->rkm->rkt, cmd->rkm->partition, cmd->rkm->offset);
		rd_kafka_message_destroy(cmd->rkm);
		free(cmd);
	}
}

static void produce_presence(struct mqk_commands *c, char *key, size_t key_len, char *value,
			     size_t value_len)
{
	rd_kafka_resp_err_t err = rd_kafka_producev(
		c->producer, RD_KAFKA_V_TOPIC(c->cc->presence_topic), RD_KAFKA_V_KEY(key, key_len),
		RD_KAFKA_V_VALUE(value, value_len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
		RD_KAFKA_V_OPAQUE(NULL), RD_KAFKA_V_END);

	free(key); /* the value is librdkafka's now (F_FREE), the key was copied */
	if (err) {
		free(value);
		counter__inc(&c->ctr->lost);
		log__deferred_ratelimited(&c->rl_lost, MOSQ_LOG_ERR,
					  "commands: cannot produce to %s: %s",
					  c->cc->presence_topic, rd_kafka_err2str(err));
	}
}

static void send_presence(struct mqk_commands *c)
{
	struct mqk_presence_event *ev = handoff__take_events(&c->handoff);

	while (ev != NULL) {
		struct mqk_presence_event *next = ev->next;
		char *key, *value;
		size_t key_len, value_len;
		if (c->cc->presence_topic != NULL &&
		    presence__client_record(c->origin, ev, &key, &key_len, &value, &value_len) ==
			    0) {
			produce_presence(c, key, key_len, value, value_len);
		}
		free(ev);
		ev = next;
	}
}

static void broker_presence(struct mqk_commands *c, bool up)
{
	char *key, *value;
	size_t key_len, value_len;

	if (c->cc->presence_topic != NULL &&
	    presence__broker_record(c->origin, up, mqk_realtime_ms(), &key, &key_len, &value,
				    &value_len) == 0) {
		produce_presence(c, key, key_len, value, value_len);
	}
}

/* Queued commands with no TICK for NO_TICK_MS: say so once. */
static void check_ticks(struct mqk_commands *c)
{
	uint64_t ticks = atomic_load_explicit(&c->handoff.ticks, memory_order_relaxed);
	int64_t now = mqk_monotonic_ms();

	if (ticks != c->ticks_seen || !atomic_load(&c->handoff.pending)) {
		c->ticks_seen = ticks;
		c->ticks_changed_ms = now;
		return;
	}
	if (now - c->ticks_changed_ms > NO_TICK_MS && !c->no_tick_logged) {
		c->no_tick_logged = true;
		log__deferred(MOSQ_LOG_ERR,
			      "commands: mosquitto has not run the plugin's tick for %d s, so "
			      "commands are not delivered (mosquitto before 2.0.15 never does with "
			      "per_listener_settings true)",
			      NO_TICK_MS / 1000);
		/*
		 * Only mosquitto's thread may write that line, and without TICKs nothing makes it
		 * do so: reconnecting the wake connection raises BASIC_AUTH, which does.
		 */
		wake__close(&c->wake);
		c->wake.next_try_ms = 0;
		wake__ping(&c->wake, c->ctr);
	}
}

static void *commands_thread(void *arg)
{
	struct mqk_commands *c = arg;
	struct pollfd pfd = {.fd = c->handoff.wake_fd, .events = POLLIN};
	uint64_t drain;

	broker_presence(c, true);
	c->ticks_changed_ms = mqk_monotonic_ms();
	while (!atomic_load(&c->stop)) {
		if (poll(&pfd, 1, IDLE_WAIT_MS) > 0) {
			ssize_t rc = read(c->handoff.wake_fd, &drain, sizeof(drain));
			(void)rc;
		}
		wake__drain(&c->wake);
		wake__keepalive(&c->wake);
		bool queued = read_commands(c, c->consumer);
		if (c->own != NULL) {
			queued |= read_commands(c, c->own);
		}
		if (queued) {
			wake__ping(&c->wake, c->ctr);
		} else if (c->wake.fd < 0) {
			wake__ping(&c->wake, c->ctr); /* connects ahead of the first command */
		}
		send_presence(c);
		rd_kafka_poll(c->producer, 0); /* delivery reports settle returns */
		settle(c);
		if (c->rd != NULL) {
			serve_held(c);
		}
		check_ticks(c);
		if (c->handoff.count >= QUEUE_MAX) {
			/* The eventfd stays quiet while the consumer is not read: nap instead. */
			struct timespec ts = {0, 5 * 1000000};
			nanosleep(&ts, NULL);
		}
	}

	/* Stopping (mosquitto's thread waits in commands__close). */
	int64_t deadline = mqk_monotonic_ms() + c->close_timeout_ms;
	send_presence(c);
	broker_presence(c, false);
	while (rd_kafka_outq_len(c->producer) > 0 && mqk_monotonic_ms() < deadline) {
		rd_kafka_poll(c->producer, 50);
		settle(c);
	}
	settle(c);
	return NULL;
}

/* Redistribute: the back-channel and presence consumer, and the table. */
static int open_own(struct mqk_commands *c, char *errstr, size_t errstr_size)
{
	static const uint64_t one = 1;
	rd_kafka_topic_partition_list_t *topics;
	rd_kafka_resp_err_t err;
	rd_kafka_queue_t *q;

	c->rd = redistribute__new(c->cc, c->cfg->broker_id);
	if (c->rd == NULL) {
		snprintf(errstr, errstr_size, "commands: out of memory");
		return -1;
	}
	c->own = new_client(c, RD_KAFKA_CONSUMER, c->cc->own_group, true, errstr, errstr_size);
	if (c->own == NULL) {
		return -1;
	}
	rd_kafka_poll_set_consumer(c->own);
	topics = rd_kafka_topic_partition_list_new(2);
	rd_kafka_topic_partition_list_add(topics, c->cc->own_topic, RD_KAFKA_PARTITION_UA);
	rd_kafka_topic_partition_list_add(topics, c->cc->presence_topic, RD_KAFKA_PARTITION_UA);
	err = rd_kafka_subscribe(c->own, topics);
	rd_kafka_topic_partition_list_destroy(topics);
	if (err) {
		snprintf(errstr, errstr_size, "commands: cannot subscribe to %s and %s: %s",
			 c->cc->own_topic, c->cc->presence_topic, rd_kafka_err2str(err));
		return -1;
	}
	q = rd_kafka_queue_get_consumer(c->own);
	rd_kafka_queue_io_event_enable(q, c->handoff.wake_fd, &one, sizeof(one));
	rd_kafka_queue_destroy(q);
	return 0;
}

struct mqk_commands *commands__new(const struct mqk_config *cfg, const struct mqk_origin *origin,
				   struct mqk_cmd_counters *ctr, char *errstr, size_t errstr_size)
{
	struct mqk_commands *c = calloc(1, sizeof(*c));
	rd_kafka_topic_partition_list_t *topics;
	rd_kafka_queue_t *q;
	rd_kafka_resp_err_t err;
	static const uint64_t one = 1;

	if (c == NULL || handoff__init(&c->handoff)) {
		snprintf(errstr, errstr_size, "commands: out of memory");
		free(c);
		return NULL;
	}
	c->cfg = cfg;
	c->cc = &cfg->commands;
	c->origin = origin;
	c->ctr = ctr;
	if (wake__init(&c->wake, c->cc->wake, errstr, errstr_size)) {
		goto error;
	}
	c->consumer = new_client(c, RD_KAFKA_CONSUMER, c->cc->group, false, errstr, errstr_size);
	c->producer = c->consumer ? new_client(c, RD_KAFKA_PRODUCER, NULL, false, errstr,
					       errstr_size)
				  : NULL;
	if (c->producer == NULL) {
		goto error;
	}
	if (c->cc->mode == MQK_CMD_REDISTRIBUTE && open_own(c, errstr, errstr_size)) {
		goto error;
	}
	rd_kafka_poll_set_consumer(c->consumer);
	topics = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(topics, c->cc->topic, RD_KAFKA_PARTITION_UA);
	err = rd_kafka_subscribe(c->consumer, topics);
	rd_kafka_topic_partition_list_destroy(topics);
	if (err) {
		snprintf(errstr, errstr_size, "commands: cannot subscribe to %s: %s", c->cc->topic,
			 rd_kafka_err2str(err));
		goto error;
	}
	/* New records and delivery reports wake the thread through the same eventfd. */
	q = rd_kafka_queue_get_consumer(c->consumer);
	rd_kafka_queue_io_event_enable(q, c->handoff.wake_fd, &one, sizeof(one));
	rd_kafka_queue_destroy(q);
	q = rd_kafka_queue_get_main(c->producer);
	rd_kafka_queue_io_event_enable(q, c->handoff.wake_fd, &one, sizeof(one));
	rd_kafka_queue_destroy(q);

	c->thread_started = mqk_thread_start(&c->thread, commands_thread, c, "mqk-commands");
	if (!c->thread_started) {
		snprintf(errstr, errstr_size, "commands: cannot start a thread");
		goto error;
	}
	return c;
error:
	commands__close(c, 0);
	return NULL;
}

struct mqk_handoff *commands__handoff(struct mqk_commands *c)
{
	return &c->handoff;
}

const struct mqk_wake *commands__wake(const struct mqk_commands *c)
{
	return &c->wake;
}

void commands__stop(struct mqk_commands *c, int timeout_ms)
{
	if (c == NULL || atomic_load(&c->stop)) {
		return;
	}
	c->close_timeout_ms = timeout_ms; /* read by the thread after it sees stop */
	atomic_store(&c->stop, true);
	if (c->thread_started) {
		handoff__signal(&c->handoff);
	}
}

void commands__close(struct mqk_commands *c, int timeout_ms)
{
	struct mqk_command *cmd;

	if (c == NULL) {
		return;
	}
	commands__stop(c, timeout_ms);
	if (c->thread_started) {
		pthread_join(c->thread, NULL);
	}
	/*
	 * Commands still queued were not settled: their offsets are not stored, so they are
	 * read again at the next start. Their records go before the handles (librdkafka
	 * waits for every message of a handle to be destroyed).
	 */
	if (c->producer != NULL && rd_kafka_outq_len(c->producer) > 0) {
		/* Their delivery reports (purged) still point at queued commands: before those go.
		 */
		log__printf(MOSQ_LOG_WARNING,
			    "commands: %d records for Kafka (returns, dead letters, presence) not "
			    "delivered within flush_timeout_ms",
			    rd_kafka_outq_len(c->producer));
		rd_kafka_purge(c->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
		rd_kafka_poll(c->producer, 0);
	}
	while ((cmd = handoff__pop(&c->handoff)) != NULL) {
		rd_kafka_message_destroy(cmd->rkm);
		free(cmd);
	}
	if (c->consumer != NULL) {
		rd_kafka_consumer_close(c->consumer); /* commits the stored offsets */
		rd_kafka_destroy(c->consumer);
	}
	if (c->own != NULL) {
		rd_kafka_consumer_close(c->own);
		rd_kafka_destroy(c->own);
	}
	redistribute__free(c->rd); /* the commands it held were the hand-off queue's: freed */
	if (c->producer != NULL) {
		rd_kafka_destroy(c->producer);
	}
	wake__close(&c->wake);
	handoff__free(&c->handoff);
	free(c);
}
