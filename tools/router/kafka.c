/*
 * kafka.c - mqk-router's three librdkafka handles.
 *
 *   presence  a consumer without a group: it assigns itself every partition of the
 *             presence topic from the beginning (no subscription, so no group is joined
 *             and nothing is committed: every router reads the whole table at start) and
 *             keeps reading. When every partition was read to its end once
 *             (enable.partition.eof), the table is complete and commands may be routed.
 *             Partitions added to the topic later are picked up within 30 s.
 *   commands  a consumer group member (--group) on --commands. Offsets are stored by
 *             route.c (enable.auto.offset.store=false) once a command is settled, and
 *             committed every second, before partitions are given up in a rebalance (after
 *             waiting for the records in flight, --flush-timeout) and at the end.
 *   producer  idempotent (no duplicates, no reordering on retries) with
 *             message.timeout.ms=0 (a record is never given up because Kafka was away),
 *             the Java client's partitioner (murmur2_random: the key lands where every
 *             Kafka client would put it).
 *
 * -X properties apply to all three; the ones the design rests on are set after them on
 * the consumers: the presence consumer's enable.auto.commit=false and
 * enable.partition.eof=true, the commands consumer's enable.auto.offset.store=false.
 *
 * Each handle's queue writes a byte to one pipe when it goes from empty to not empty
 * (rd_kafka_queue_io_event_enable): the main loop sleeps in poll() on that pipe and serves
 * every queue without blocking, so no handle waits for another one's timeout.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "router.h"

#define BATCH 1000                 /* records per queue per round */
#define METADATA_EVERY_US 30000000 /* new partitions of the presence topic */
#define SLOW_CATCH_UP_US 30000000  /* say so when the presence topic takes longer */
#define METADATA_WAIT_MS 10000     /* at start: how long the presence topic may be missing */

/* Client errors (transport, authentication...): logged; a fatal one ends the run. */
static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	struct router *r = opaque;

	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		char fatal[512];
		rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
		router__log("fatal error (%s): %s", rd_kafka_name(rk), fatal);
		r->fatal = true;
		return;
	}
	router__logrl(&r->rl_consume, "Kafka: %s", reason);
}

static void delivered(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
	(void)rk;
	route__delivered(opaque, rkm->_private, rkm->err);
}

static void list_partitions(const rd_kafka_topic_partition_list_t *parts, char *buf, size_t size)
{
	size_t n = 0;

	buf[0] = '\0';
	for (int i = 0; i < parts->cnt && n + 16 < size; i++) {
		n += (size_t)snprintf(buf + n, size - n, "%s%" PRId32, i ? "," : "",
				      parts->elems[i].partition);
	}
}

/*
 * The commands consumer's rebalances. Before partitions are given up: wait for what is in
 * flight (so that its offsets are stored), commit, and let route.c drop what it held of
 * them (the next owner reads those again).
 */
static void rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
		      rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	struct router *r = opaque;
	bool coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
	char list[256];
	rd_kafka_error_t *error = NULL;
	rd_kafka_resp_err_t aerr = RD_KAFKA_RESP_ERR_NO_ERROR;

	list_partitions(parts, list, sizeof(list));
	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		route__assigned(r, parts);
		router__log("commands: consuming %s partitions [%s]", r->set->commands_topic, list);
		if (coop) {
			error = rd_kafka_incremental_assign(rk, parts);
		} else {
			aerr = rd_kafka_assign(rk, parts);
		}
	} else {
		if (r->in_flight > 0 && !*r->stopping) {
			rd_kafka_flush(r->producer, (int)(r->set->flush_timeout_s * 1000));
		}
		rd_kafka_resp_err_t cerr = rd_kafka_commit(rk, NULL, 0);
		if (cerr && cerr != RD_KAFKA_RESP_ERR__NO_OFFSET) {
			router__log("commands: commit before giving partitions up: %s",
				    rd_kafka_err2str(cerr));
		}
		route__revoked(r, parts);
		router__log("commands: partitions [%s] given up", list);
		if (coop) {
			error = rd_kafka_incremental_unassign(rk, parts);
		} else {
			aerr = rd_kafka_assign(rk, NULL);
		}
	}
	if (error) {
		router__log("commands: %s", rd_kafka_error_string(error));
		rd_kafka_error_destroy(error);
	} else if (aerr) {
		router__log("commands: assign: %s", rd_kafka_err2str(aerr));
	}
}

static rd_kafka_t *new_handle(struct router *r, rd_kafka_type_t type, rd_kafka_conf_t *conf,
			      char *errstr, size_t errstr_size)
{
	char err[512];
	rd_kafka_t *rk;

	rd_kafka_conf_set_opaque(conf, r);
	rd_kafka_conf_set_error_cb(conf, on_error);
	rk = rd_kafka_new(type, conf, err, sizeof(err));
	if (rk == NULL) {
		snprintf(errstr, errstr_size, "%s", err);
		rd_kafka_conf_destroy(conf);
	}
	return rk; /* the conf is the handle's now */
}

static int open_producer(struct router *r, char *errstr, size_t errstr_size)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();

	if (cli_conf_set(conf, "client.id", ROUTER_NAME, errstr, errstr_size) ||
	    cli_conf_set(conf, "enable.idempotence", "true", errstr, errstr_size) ||
	    cli_conf_set(conf, "message.timeout.ms", "0", errstr, errstr_size) ||
	    cli_conf_set(conf, "partitioner", "murmur2_random", errstr, errstr_size) ||
	    cli_conf_set(conf, "linger.ms", "1", errstr, errstr_size) ||
	    cli_kafka_apply(conf, r->set->bootstrap, &r->set->props, errstr, errstr_size)) {
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	rd_kafka_conf_set_dr_msg_cb(conf, delivered);
	r->producer = new_handle(r, RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
	return r->producer ? 0 : -1;
}

/* The presence topic's partition count, or -1 with errstr. */
static int presence_partitions(struct router *r, int timeout_ms, char *errstr, size_t errstr_size)
{
	const struct rd_kafka_metadata *md;
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(r->presence_rk, r->set->presence_topic, NULL);
	int n = -1;

	if (rkt == NULL) {
		snprintf(errstr, errstr_size, "%s", rd_kafka_err2str(rd_kafka_last_error()));
		return -1;
	}
	rd_kafka_resp_err_t err = rd_kafka_metadata(r->presence_rk, 0, rkt, &md, timeout_ms);
	rd_kafka_topic_destroy(rkt);
	if (err) {
		snprintf(errstr, errstr_size, "metadata: %s", rd_kafka_err2str(err));
		return -1;
	}
	if (md->topic_cnt != 1) {
		snprintf(errstr, errstr_size, "metadata: no topic in the answer");
	} else if (md->topics[0].err) {
		snprintf(errstr, errstr_size, "%s", rd_kafka_err2str(md->topics[0].err));
	} else if (md->topics[0].partition_cnt == 0) {
		snprintf(errstr, errstr_size, "no partitions");
	} else {
		n = md->topics[0].partition_cnt;
	}
	rd_kafka_metadata_destroy(md);
	return n;
}

static int open_presence(struct router *r, char *errstr, size_t errstr_size)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char group[96], err[512];
	int n = -1;

	/* A group id only because librdkafka's consumer API needs one: nothing joins it. */
	snprintf(group, sizeof(group), "%s-presence-%ld-%" PRIu64, ROUTER_NAME, (long)getpid(),
		 cli_mono_us());
	if (cli_conf_set(conf, "client.id", ROUTER_NAME, errstr, errstr_size) ||
	    cli_conf_set(conf, "auto.offset.reset", "earliest", errstr, errstr_size) ||
	    cli_kafka_apply(conf, r->set->bootstrap, &r->set->props, errstr, errstr_size) ||
	    cli_conf_set(conf, "group.id", group, errstr, errstr_size) ||
	    cli_conf_set(conf, "enable.auto.commit", "false", errstr, errstr_size) ||
	    cli_conf_set(conf, "enable.auto.offset.store", "false", errstr, errstr_size) ||
	    cli_conf_set(conf, "enable.partition.eof", "true", errstr, errstr_size)) {
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	r->presence_rk = new_handle(r, RD_KAFKA_CONSUMER, conf, errstr, errstr_size);
	if (r->presence_rk == NULL) {
		return -1;
	}
	rd_kafka_poll_set_consumer(r->presence_rk);

	uint64_t until = cli_mono_us() + METADATA_WAIT_MS * 1000ULL;
	bool said = false;
	while ((n = presence_partitions(r, 5000, err, sizeof(err))) < 0) {
		if (*r->stopping || cli_mono_us() >= until) {
			snprintf(errstr, errstr_size, "--presence: topic %s: %s",
				 r->set->presence_topic, err);
			return -1;
		}
		if (!said) {
			router__log("presence: topic %s: %s (waiting up to %d s)",
				    r->set->presence_topic, err, METADATA_WAIT_MS / 1000);
			said = true;
		}
		usleep(500000);
	}
	rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(n);
	for (int32_t i = 0; i < n; i++) {
		rd_kafka_topic_partition_list_add(parts, r->set->presence_topic, i)->offset =
			RD_KAFKA_OFFSET_BEGINNING;
	}
	rd_kafka_resp_err_t aerr = rd_kafka_assign(r->presence_rk, parts);
	rd_kafka_topic_partition_list_destroy(parts);
	if (aerr) {
		snprintf(errstr, errstr_size, "--presence: assign: %s", rd_kafka_err2str(aerr));
		return -1;
	}
	r->presence_parts = n;
	r->eof = calloc((size_t)n, sizeof(*r->eof));
	if (r->eof == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		return -1;
	}
	r->eof_left = r->eof_parts = n;
	r->next_metadata_us = cli_mono_us() + METADATA_EVERY_US;
	router__log("presence: reading %s, %d partitions, from the beginning",
		    r->set->presence_topic, n);
	return 0;
}

static int open_commands(struct router *r, char *errstr, size_t errstr_size)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();

	if (cli_conf_set(conf, "client.id", ROUTER_NAME, errstr, errstr_size) ||
	    cli_conf_set(conf, "group.id", r->set->group, errstr, errstr_size) ||
	    cli_conf_set(conf, "auto.offset.reset", "earliest", errstr, errstr_size) ||
	    cli_conf_set(conf, "auto.commit.interval.ms", "1000", errstr, errstr_size) ||
	    cli_kafka_apply(conf, r->set->bootstrap, &r->set->props, errstr, errstr_size) ||
	    cli_conf_set(conf, "enable.auto.offset.store", "false", errstr, errstr_size)) {
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	rd_kafka_conf_set_rebalance_cb(conf, rebalance);
	r->commands_rk = new_handle(r, RD_KAFKA_CONSUMER, conf, errstr, errstr_size);
	if (r->commands_rk == NULL) {
		return -1;
	}
	rd_kafka_poll_set_consumer(r->commands_rk);
	rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(topics, r->set->commands_topic, RD_KAFKA_PARTITION_UA);
	rd_kafka_resp_err_t err = rd_kafka_subscribe(r->commands_rk, topics);
	rd_kafka_topic_partition_list_destroy(topics);
	if (err) {
		snprintf(errstr, errstr_size, "--commands: subscribe: %s", rd_kafka_err2str(err));
		return -1;
	}
	return 0;
}

int kafka__open(struct router *r, char *errstr, size_t errstr_size)
{
	if (pipe2(r->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
		snprintf(errstr, errstr_size, "pipe: %s", strerror(errno));
		r->wake[0] = r->wake[1] = -1;
		return -1;
	}
	if (open_producer(r, errstr, errstr_size) || open_presence(r, errstr, errstr_size) ||
	    open_commands(r, errstr, errstr_size)) {
		return -1;
	}
	r->queues[0] = rd_kafka_queue_get_consumer(r->presence_rk);
	r->queues[1] = rd_kafka_queue_get_consumer(r->commands_rk);
	r->queues[2] = rd_kafka_queue_get_main(r->producer);
	for (int i = 0; i < 3; i++) {
		rd_kafka_queue_io_event_enable(r->queues[i], r->wake[1], "1", 1);
	}
	return 0;
}

static void presence_error(struct router *r, const rd_kafka_message_t *rkm)
{
	if (rkm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
		if (!r->caught_up && rkm->partition >= 0 && rkm->partition < r->eof_parts &&
		    !r->eof[rkm->partition]) {
			r->eof[rkm->partition] = true;
			if (--r->eof_left == 0) {
				route__caught_up(r);
			}
		}
		return;
	}
	router__logrl(&r->rl_consume, "presence: %s", rd_kafka_message_errstr(rkm));
}

static void commands_error(struct router *r, const rd_kafka_message_t *rkm)
{
	if (rkm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
		return;
	}
	router__logrl(&r->rl_consume, "commands: %s%s", rd_kafka_message_errstr(rkm),
		      rkm->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
				      rkm->err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION
			      ? " (waiting for it)"
			      : "");
}

bool kafka__serve(struct router *r)
{
	char buf[256];
	bool more = false;
	int i;

	while (read(r->wake[0], buf, sizeof(buf)) > 0) {
	}
	/* Presence first: news of where clients are, before the commands that need it. */
	for (i = 0; i < BATCH; i++) {
		rd_kafka_message_t *rkm = rd_kafka_consumer_poll(r->presence_rk, 0);
		if (rkm == NULL) {
			break;
		}
		if (rkm->err) {
			presence_error(r, rkm);
		} else {
			route__presence(r, rkm);
		}
		rd_kafka_message_destroy(rkm);
	}
	more |= i == BATCH;
	/*
	 * Commands only once the table is complete: until the commands consumer is polled,
	 * its group join goes on in the background but no partition is assigned, so nothing
	 * is fetched and no command waits for a table still being read.
	 */
	for (i = 0; i < BATCH && r->caught_up && !*r->stopping && !r->fatal; i++) {
		rd_kafka_message_t *rkm = rd_kafka_consumer_poll(r->commands_rk, 0);
		if (rkm == NULL) {
			break;
		}
		if (rkm->err) {
			commands_error(r, rkm);
		} else {
			route__command(r, rkm);
		}
		rd_kafka_message_destroy(rkm);
	}
	more |= i == BATCH;
	rd_kafka_poll(r->producer, 0);
	return more;
}

void kafka__wait(struct router *r, int timeout_ms)
{
	struct pollfd pfd = {.fd = r->wake[0], .events = POLLIN};

	poll(&pfd, 1, timeout_ms); /* EINTR: a signal, the loop looks at it */
}

/* Once, when the presence topic takes long to read: which partitions never ended. */
static void slow_catch_up(struct router *r, uint64_t now)
{
	char list[256];
	size_t n = 0;

	if (r->caught_up || r->slow_said || now - r->started_us < SLOW_CATCH_UP_US) {
		return;
	}
	r->slow_said = true;
	list[0] = '\0';
	for (int32_t i = 0; i < r->eof_parts && n + 16 < sizeof(list); i++) {
		if (!r->eof[i]) {
			n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%" PRId32,
					      n ? "," : "", i);
		}
	}
	router__log("presence: %s not read to its end after %d s (partitions [%s]): commands "
		    "are not read until it is",
		    r->set->presence_topic, SLOW_CATCH_UP_US / 1000000, list);
}

void kafka__refresh_presence(struct router *r, uint64_t now)
{
	char err[512];
	int n;

	slow_catch_up(r, now);
	if (now < r->next_metadata_us) {
		return;
	}
	r->next_metadata_us = now + METADATA_EVERY_US;
	n = presence_partitions(r, 1000, err, sizeof(err));
	if (n <= r->presence_parts) {
		return;
	}
	rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(n);
	for (int32_t i = r->presence_parts; i < n; i++) {
		rd_kafka_topic_partition_list_add(parts, r->set->presence_topic, i)->offset =
			RD_KAFKA_OFFSET_BEGINNING;
	}
	rd_kafka_error_t *error = rd_kafka_incremental_assign(r->presence_rk, parts);
	rd_kafka_topic_partition_list_destroy(parts);
	if (error) {
		router__logrl(&r->rl_consume, "presence: new partitions: %s",
			      rd_kafka_error_string(error));
		rd_kafka_error_destroy(error);
		return;
	}
	router__log("presence: %s has %d partitions now (was %" PRId32 "): reading the new ones",
		    r->set->presence_topic, n, r->presence_parts);
	r->presence_parts = n;
}

void kafka__close(struct router *r)
{
	int flush_ms = (int)(r->set->flush_timeout_s * 1000);

	if (r->producer && r->in_flight > 0) {
		rd_kafka_flush(r->producer, flush_ms);
		r->unflushed = r->in_flight;
		if (r->in_flight > 0) {
			router__log("%zu records not acknowledged after %d ms: their commands are "
				    "read again by the next router",
				    r->in_flight, flush_ms);
		}
	}
	if (r->commands_rk) {
		rd_kafka_resp_err_t err = rd_kafka_commit(r->commands_rk, NULL, 0);
		if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
			router__log("commands: commit: %s", rd_kafka_err2str(err));
		}
	}
	for (int i = 0; i < 3; i++) {
		if (r->queues[i]) {
			rd_kafka_queue_destroy(r->queues[i]);
			r->queues[i] = NULL;
		}
	}
	if (r->commands_rk) {
		rd_kafka_consumer_close(r->commands_rk); /* revokes: route.c drops what it held */
		rd_kafka_destroy(r->commands_rk);
		r->commands_rk = NULL;
	}
	if (r->presence_rk) {
		rd_kafka_consumer_close(r->presence_rk);
		rd_kafka_destroy(r->presence_rk);
		r->presence_rk = NULL;
	}
	if (r->producer) {
		/* What is left gets a delivery report (purged), which frees its command. */
		rd_kafka_purge(r->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
		uint64_t until = cli_mono_us() + 1000000;
		while (r->in_flight > 0 && cli_mono_us() < until) {
			rd_kafka_poll(r->producer, 50);
		}
		rd_kafka_destroy(r->producer);
		r->producer = NULL;
	}
	free(r->eof);
	r->eof = NULL;
	for (int i = 0; i < 2; i++) {
		if (r->wake[i] >= 0) {
			close(r->wake[i]);
		}
	}
}
