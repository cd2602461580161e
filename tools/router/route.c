/*
 * route.c - the engine: every command record read is routed, held or dead-lettered here,
 * and settled when Kafka acknowledged what was produced for it.
 *
 * A command read takes a slot in its partition's window (window.c), then:
 *   - no target (null or empty key, or no --target header): a dead letter, "no target";
 *     a target the plugin would refuse (a NUL in it, 1024 bytes or more): "bad target";
 *   - its target has commands held: it queues behind them (a device's commands keep
 *     their order);
 *   - the presence table places the target at broker B: produced, unchanged (key, value,
 *     headers, timestamp), to --broker-topic with {broker} = B;
 *   - else it is held (held.c), for --hold seconds from when it was read (or from when the
 *     presence topic was first read to its end, if that came later). Each presence record
 *     about a client routes the client's held commands that it now places, oldest first;
 *     a broker record (a broker up with a new boot, or down) does that for every client
 *     with commands held. When --hold runs out: a dead letter, "not connected"; when more
 *     than --max-held are held: the oldest one, "router full".
 * A command carrying mqk.broker = B was sent back by B (the device was not there after
 * all): while the table still says B and no newer record of the client came, it is
 * treated as connected nowhere (presence__where), so that it does not go round in circles.
 *
 * Settling: the delivery report of the record produced for it. A success settles it (its
 * offset may be stored, window.c). A failure of a route (the broker's topic does not
 * exist, say) turns it into a dead letter, "bad topic"; a failed dead letter is produced
 * again every 5 s until Kafka takes it: a command is never settled without a record for
 * it in Kafka, and never stored before it is settled. With message.timeout.ms=0 (the
 * default here) librdkafka itself retries a record for as long as Kafka is away.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto_kafka.h>

#include "cli.h"
#include "router.h"

const char *const router__reasons[REASON_N] = {
	[REASON_NO_TARGET] = "no target",         [REASON_BAD_TARGET] = "bad target",
	[REASON_NOT_CONNECTED] = "not connected", [REASON_ROUTER_FULL] = "router full",
	[REASON_BAD_TOPIC] = "bad topic",
};

#define MAX_TARGET 1023          /* the plugin's limit: longer is "bad target" */
#define DEAD_RETRY_US 5000000    /* a dead letter Kafka refused: again after this */
#define TIMEOUT_RETRY_US 1000000 /* a record that timed out (-X message.timeout.ms) */
#define MAX_TOPIC 249            /* Kafka's limit on a topic name */

static bool stopping(const struct router *r)
{
	return *r->stopping || r->fatal;
}

static void free_command(struct command *cmd)
{
	if (cmd->hdrs) {
		rd_kafka_headers_destroy(cmd->hdrs);
	}
	free(cmd->target);
	free(cmd->returned_by);
	free(cmd);
}

/* Done with cmd: store its offset if that completes a run of settled ones, free it. */
static void settle(struct router *r, struct command *cmd)
{
	struct window *w = windows__get(&r->windows, cmd->partition);

	if (w != NULL && w->epoch == cmd->epoch) {
		int64_t offset = window__settle(w, cmd->slot);
		if (offset >= 0) {
			send__store(r, cmd->partition, offset);
		}
	}
	free_command(cmd);
}

static void append_retry(struct router *r, struct command *cmd)
{
	cmd->next = NULL;
	if (r->retry_tail) {
		r->retry_tail->next = cmd;
	} else {
		r->retry_head = cmd;
	}
	r->retry_tail = cmd;
}

static void retry_later(struct router *r, struct command *cmd, uint64_t delay_us)
{
	cmd->retry_at = cli_mono_us() + delay_us;
	append_retry(r, cmd);
}

/* --broker-topic with {broker} = broker into buf; false when longer than Kafka allows. */
static bool expand_topic(const char *tpl, const char *broker, char *buf, size_t size)
{
	size_t n = 0, blen = strlen(broker);

	for (const char *p = tpl; *p;) {
		if (strncmp(p, "{broker}", 8) == 0) {
			if (n + blen >= size) {
				return false;
			}
			memcpy(buf + n, broker, blen);
			n += blen;
			p += 8;
		} else {
			if (n + 1 >= size) {
				return false;
			}
			buf[n++] = *p++;
		}
	}
	buf[n] = '\0';
	return n > 0 && n <= MAX_TOPIC;
}

/* The command's headers for one produce call (which takes them). */
static rd_kafka_headers_t *copy_headers(const struct command *cmd)
{
	return cmd->hdrs ? rd_kafka_headers_copy(cmd->hdrs) : NULL;
}

static const char *target_str(const struct command *cmd)
{
	return cmd->target ? cmd->target : "(none)";
}

static void dead_letter(struct router *r, struct command *cmd, enum reason why)
{
	rd_kafka_headers_t *hdrs = copy_headers(cmd);

	cmd->state = CMD_DEAD;
	cmd->reason = why;
	if (r->set->verbose) {
		router__log("dead letter %s [%" PRId32 "@%" PRId64 "]: %s", target_str(cmd),
			    cmd->partition, cmd->offset, router__reasons[why]);
	}
	if (hdrs == NULL) {
		hdrs = rd_kafka_headers_new(2);
	}
	/* Who gave up and why: ours replace a broker's (mqk.hops stays as it is). */
	rd_kafka_header_remove(hdrs, MQK_HDR_REASON);
	rd_kafka_header_remove(hdrs, MQK_HDR_BY);
	rd_kafka_header_add(hdrs, MQK_HDR_REASON, -1, router__reasons[why], -1);
	rd_kafka_header_add(hdrs, MQK_HDR_BY, -1, ROUTER_NAME, -1);
	rd_kafka_resp_err_t err = send__produce(r, cmd, r->set->dead_letter, hdrs);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		return;
	}
	rd_kafka_headers_destroy(hdrs); /* not taken */
	if (stopping(r)) {
		free_command(cmd); /* not settled: read again after a restart */
		return;
	}
	router__logrl(&r->rl_produce, "dead letter topic %s: %s (again in %d s)",
		      r->set->dead_letter, rd_kafka_err2str(err), DEAD_RETRY_US / 1000000);
	r->c.retries++;
	retry_later(r, cmd, DEAD_RETRY_US);
}

static void route_to(struct router *r, struct command *cmd, struct pres_broker *b)
{
	char topic[MAX_TOPIC + 1];
	rd_kafka_headers_t *hdrs;

	cmd->state = CMD_ROUTING;
	cmd->broker = b;
	if (!expand_topic(r->set->broker_topic, b->id, topic, sizeof(topic))) {
		router__logrl(&r->rl_produce,
			      "--broker-topic %s for broker %s: longer than %d bytes",
			      r->set->broker_topic, b->id, MAX_TOPIC);
		dead_letter(r, cmd, REASON_BAD_TOPIC);
		return;
	}
	if (r->set->verbose) {
		router__log("route %s [%" PRId32 "@%" PRId64 "] -> %s (%s)%s", cmd->target,
			    cmd->partition, cmd->offset, b->id, topic,
			    cmd->returned_by ? " (it had come back)" : "");
	}
	hdrs = copy_headers(cmd);
	rd_kafka_resp_err_t err = send__produce(r, cmd, topic, hdrs);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		return;
	}
	if (hdrs) {
		rd_kafka_headers_destroy(hdrs);
	}
	if (stopping(r)) {
		free_command(cmd);
		return;
	}
	router__logrl(&r->rl_produce, "cannot produce to %s: %s: a dead letter instead", topic,
		      rd_kafka_err2str(err));
	dead_letter(r, cmd, REASON_BAD_TOPIC);
}

static struct pres_broker *where(const struct router *r, const struct command *cmd)
{
	if (!r->caught_up) {
		return NULL; /* the table is not complete yet */
	}
	return presence__where(&r->presence, cmd->target, cmd->returned_by ? &cmd->ret : NULL);
}

/* Routes target's held commands, oldest first, while the table places them. target must
 * not be the held device's own string (it is freed with the last item). */
static void flush_target(struct router *r, const char *target)
{
	struct held_item *it;

	while ((it = held__head(&r->held, target)) != NULL) {
		struct command *cmd = container_of(it, struct command, hold);
		struct pres_broker *b = where(r, cmd);
		if (b == NULL) {
			return;
		}
		held__remove(&r->held, it);
		route_to(r, cmd, b);
	}
}

static void flush_all(struct router *r)
{
	size_t n;
	char **targets = held__targets(&r->held, &n);

	if (targets == NULL && r->held.count > 0) {
		router__logrl(&r->rl_produce, "out of memory: held commands wait for their next "
					      "presence record");
	}
	for (size_t i = 0; i < n; i++) {
		flush_target(r, targets[i]);
		free(targets[i]);
	}
	free(targets);
}

/* Takes the oldest held command out of the queue and dead-letters it; the commands of
 * its target behind it may go now. */
static void give_up_oldest(struct router *r, enum reason why)
{
	struct command *cmd = container_of(held__oldest(&r->held), struct command, hold);
	char *target = strdup(cmd->target);

	held__remove(&r->held, &cmd->hold);
	dead_letter(r, cmd, why);
	if (target) {
		flush_target(r, target);
		free(target);
	}
}

static const char *why_held(const struct router *r, const struct command *cmd)
{
	if (!r->caught_up) {
		return "the presence topic is not read to its end yet";
	}
	if (&cmd->hold != cmd->hold.dev->head) {
		return "behind its target's held commands";
	}
	return cmd->returned_by ? "sent back, and presence has no news of the client yet"
				: "connected nowhere";
}

static void hold(struct router *r, struct command *cmd)
{
	uint64_t deadline = cli_mono_us() + (uint64_t)(r->set->hold_s * 1e6);

	if (held__add(&r->held, &cmd->hold, cmd->target, deadline) != 0) {
		router__logrl(&r->rl_produce, "out of memory holding a command for %s",
			      cmd->target);
		dead_letter(r, cmd, REASON_ROUTER_FULL);
		return;
	}
	cmd->state = CMD_HELD;
	r->c.held++;
	if (r->set->verbose) {
		router__log("hold %s [%" PRId32 "@%" PRId64 "]: %s", cmd->target, cmd->partition,
			    cmd->offset, why_held(r, cmd));
	}
	while (r->held.count > r->set->max_held) {
		give_up_oldest(r, REASON_ROUTER_FULL);
	}
}

void route__command(struct router *r, rd_kafka_message_t *rkm)
{
	size_t key_len = rkm->key ? rkm->key_len : 0, value_len = rkm->payload ? rkm->len : 0;
	struct command *cmd = calloc(1, sizeof(*cmd) + key_len + value_len);
	struct window *w = windows__get(&r->windows, rkm->partition);
	rd_kafka_headers_t *hdrs = NULL;
	const void *target = NULL, *by = NULL;
	size_t target_len = 0, by_len = 0;

	r->c.records_read++;
	if (cmd == NULL || w == NULL || window__push(w, rkm->offset, &cmd->slot) != 0) {
		/* Not in the window: a later offset could be stored past it. */
		router__log("out of memory reading a command: stopping");
		r->fatal = true;
		free(cmd);
		return;
	}
	if (rkm->key) {
		cmd->key = memcpy(cmd->data, rkm->key, key_len);
		cmd->key_len = key_len;
	}
	if (rkm->payload) {
		cmd->value = memcpy(cmd->data + key_len, rkm->payload, value_len);
		cmd->value_len = value_len;
	}
	if (rd_kafka_message_detach_headers(rkm, &cmd->hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		cmd->hdrs = NULL; /* none */
	}
	hdrs = cmd->hdrs;
	cmd->timestamp = rd_kafka_message_timestamp(rkm, NULL);
	cmd->offset = rkm->offset;
	cmd->partition = rkm->partition;
	cmd->epoch = w->epoch;

	if (r->set->target_header == NULL) {
		target = cmd->key;
		target_len = cmd->key_len;
	} else if (hdrs == NULL || rd_kafka_header_get_last(hdrs, r->set->target_header, &target,
							    &target_len) != 0) {
		target = NULL;
	}
	if (target == NULL || target_len == 0) {
		dead_letter(r, cmd, REASON_NO_TARGET);
		return;
	}
	if (target_len > MAX_TARGET || memchr(target, '\0', target_len) != NULL) {
		dead_letter(r, cmd, REASON_BAD_TARGET);
		return;
	}
	cmd->target = strndup(target, target_len);
	if (hdrs != NULL && rd_kafka_header_get_last(hdrs, MQK_HDR_BY, &by, &by_len) == 0 &&
	    by_len > 0) {
		rd_kafka_timestamp_type_t type;
		int64_t ts = rd_kafka_message_timestamp(rkm, &type);
		cmd->returned_by = strndup(by, by_len);
		cmd->ret.by = cmd->returned_by;
		cmd->ret.seq = r->presence.seq;
		cmd->ret.timestamp = type == RD_KAFKA_TIMESTAMP_CREATE_TIME ? ts : -1;
		r->c.returns_read++;
	}
	if (cmd->target == NULL || (by_len > 0 && cmd->returned_by == NULL)) {
		dead_letter(r, cmd, REASON_ROUTER_FULL); /* out of memory */
		return;
	}
	if (held__head(&r->held, cmd->target) != NULL) {
		hold(r, cmd); /* behind the ones already waiting */
		return;
	}
	struct pres_broker *b = where(r, cmd);
	if (b != NULL) {
		route_to(r, cmd, b);
	} else {
		hold(r, cmd);
	}
}

void route__presence(struct router *r, const rd_kafka_message_t *rkm)
{
	char buf[512], errstr[512];
	char *key = buf;
	int kind;

	r->c.presence_records++;
	if (rkm->key == NULL || rkm->key_len == 0 || memchr(rkm->key, '\0', rkm->key_len)) {
		r->presence.malformed++;
		router__logrl(&r->rl_presence,
			      "presence: malformed record at %s [%" PRId32 "] offset %" PRId64
			      ": no key, or a NUL in it",
			      rd_kafka_topic_name(rkm->rkt), rkm->partition, rkm->offset);
		return;
	}
	if (rkm->key_len >= sizeof(buf) && (key = malloc(rkm->key_len + 1)) == NULL) {
		router__logrl(&r->rl_presence, "presence: out of memory: a record is skipped");
		return;
	}
	memcpy(key, rkm->key, rkm->key_len);
	key[rkm->key_len] = '\0';
	kind = presence__apply(&r->presence, key, rkm->payload, rkm->len, errstr, sizeof(errstr));
	if (kind == PRES_MALFORMED) {
		router__logrl(&r->rl_presence,
			      "presence: malformed record at %s [%" PRId32 "] offset %" PRId64
			      ": %s",
			      rd_kafka_topic_name(rkm->rkt), rkm->partition, rkm->offset, errstr);
	} else if (kind == PRES_OOM) {
		router__logrl(&r->rl_presence, "presence: out of memory: a record is skipped");
	} else {
		if (r->set->verbose > 1) {
			router__log("presence: %s %.*s", key, rkm->payload ? (int)rkm->len : 4,
				    rkm->payload ? (const char *)rkm->payload : "null");
		}
		if (r->caught_up && kind == PRES_CLIENT) {
			flush_target(r, strchr(key, '/') + 1);
		} else if (r->caught_up && kind == PRES_BROKER) {
			flush_all(r);
		}
	}
	if (key != buf) {
		free(key);
	}
}

void route__caught_up(struct router *r)
{
	uint64_t now = cli_mono_us();

	r->caught_up = true;
	r->caught_up_us = now;
	router__log("presence: %s read to its end in %.1f s: %" PRIu64 " records, %zu clients "
		    "connected, %zu commands waited for it",
		    r->set->presence_topic, (double)(now - r->started_us) / 1e6,
		    r->c.presence_records, presence__connected(&r->presence), r->held.count);
	/* --hold counts from now for what came meanwhile. */
	held__defer(&r->held, now + (uint64_t)(r->set->hold_s * 1e6));
	flush_all(r);
}

void route__delivered(struct router *r, struct command *cmd, rd_kafka_resp_err_t err)
{
	r->in_flight--;
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		if (cmd->state == CMD_ROUTING) {
			r->c.routed++;
			cmd->broker->routed++;
		} else {
			r->c.dead[cmd->reason]++;
			r->c.dead_lettered++;
		}
		settle(r, cmd);
		return;
	}
	if (stopping(r)) {
		free_command(cmd); /* not settled: read again after a restart */
		return;
	}
	r->c.retries++;
	if (err == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT || err == RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE) {
		router__logrl(&r->rl_produce, "a record for %s timed out: producing it again",
			      target_str(cmd));
		retry_later(r, cmd, TIMEOUT_RETRY_US);
	} else if (cmd->state == CMD_ROUTING) {
		router__logrl(&r->rl_produce,
			      "a command for %s not taken by broker %s's topic: %s: "
			      "a dead letter instead",
			      target_str(cmd), cmd->broker->id, rd_kafka_err2str(err));
		cmd->state = CMD_DEAD;
		cmd->reason = REASON_BAD_TOPIC;
		retry_later(r, cmd, 0);
	} else {
		router__logrl(&r->rl_produce, "dead letter topic %s: %s (again in %d s)",
			      r->set->dead_letter, rd_kafka_err2str(err), DEAD_RETRY_US / 1000000);
		retry_later(r, cmd, DEAD_RETRY_US);
	}
}

void route__tick(struct router *r, uint64_t now)
{
	struct command *list = r->retry_head;

	/* Retries due, in the order they failed; the others stay in that order. */
	r->retry_head = r->retry_tail = NULL;
	while (list != NULL) {
		struct command *cmd = list;
		list = cmd->next;
		if (cmd->retry_at > now || stopping(r)) {
			append_retry(r, cmd);
		} else if (cmd->state == CMD_ROUTING) {
			route_to(r, cmd, cmd->broker);
		} else {
			dead_letter(r, cmd, cmd->reason);
		}
	}
	/* --hold ran out: the oldest first (arrival order is deadline order). */
	while (r->caught_up && !stopping(r) && r->held.oldest != NULL &&
	       r->held.oldest->deadline_us <= now) {
		give_up_oldest(r, REASON_NOT_CONNECTED);
	}
}

uint64_t route__next_due(const struct router *r)
{
	uint64_t due = UINT64_MAX;

	if (r->caught_up && r->held.oldest != NULL) {
		due = r->held.oldest->deadline_us;
	}
	for (const struct command *cmd = r->retry_head; cmd; cmd = cmd->next) {
		if (cmd->retry_at < due) {
			due = cmd->retry_at;
		}
	}
	return due;
}

void route__assigned(struct router *r, const rd_kafka_topic_partition_list_t *parts)
{
	for (int i = 0; i < parts->cnt; i++) {
		struct window *w = windows__get(&r->windows, parts->elems[i].partition);
		if (w != NULL) {
			window__reset(w);
			w->assigned = true;
		}
	}
}

static bool in_list(const rd_kafka_topic_partition_list_t *parts, int32_t partition)
{
	for (int i = 0; i < parts->cnt; i++) {
		if (parts->elems[i].partition == partition) {
			return true;
		}
	}
	return false;
}

void route__revoked(struct router *r, const rd_kafka_topic_partition_list_t *parts)
{
	size_t released = 0;

	/* Their next owner reads them again from the committed offset. */
	for (struct held_item *it = r->held.oldest, *next; it; it = next) {
		struct command *cmd = container_of(it, struct command, hold);
		next = it->newer;
		if (in_list(parts, cmd->partition)) {
			held__remove(&r->held, it);
			free_command(cmd);
			released++;
		}
	}
	struct command *list = r->retry_head;
	r->retry_head = r->retry_tail = NULL;
	while (list) {
		struct command *cmd = list;
		list = cmd->next;
		if (in_list(parts, cmd->partition)) {
			free_command(cmd);
			released++;
		} else {
			append_retry(r, cmd);
		}
	}
	for (int i = 0; i < parts->cnt; i++) {
		struct window *w = windows__get(&r->windows, parts->elems[i].partition);
		if (w != NULL) {
			window__reset(w); /* what is still in flight stores nothing */
			w->assigned = false;
		}
	}
	r->c.released += released;
	if (released > 0) {
		router__log("commands: %zu commands held or to retry left to the partitions' next "
			    "owner",
			    released);
		flush_all(r); /* those behind them may go */
	}
}

size_t route__drop_all(struct router *r)
{
	size_t n = 0;

	while (r->held.oldest) {
		struct command *cmd = container_of(r->held.oldest, struct command, hold);
		held__remove(&r->held, &cmd->hold);
		free_command(cmd);
		n++;
	}
	while (r->retry_head) {
		struct command *cmd = r->retry_head;
		r->retry_head = cmd->next;
		free_command(cmd);
		n++;
	}
	r->retry_tail = NULL;
	return n;
}
