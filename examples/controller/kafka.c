/*
 * kafka.c - the controller as a Kafka consumer group member, and its command producer.
 *
 * The study's controller slept between polls and so added latency to every message.
 * This one blocks in rd_kafka_consumer_poll(), which returns the moment a record is
 * there: it pulls at its own pace and waits for nothing else. The caller bounds the
 * wait by when its next command is due, and a batch of records by the same time.
 *
 * Nothing counted twice, nothing skipped, across rebalances: offsets are stored
 * (enable.auto.offset.store=false) only after a record was counted, and committed from
 * those stored offsets, every auto.commit.interval.ms and synchronously in the
 * rebalance callback before partitions are given up. An instance that takes a
 * partition over starts right after the last record counted by the one that had it.
 * (A controller killed with -9 has not committed its last second: the next one counts
 * those records again. The merged report shows them as duplicates.)
 *
 * Commands are produced by a second handle, an idempotent producer created on first
 * use: key = the device id, value = the command payload, headers mqtt.correlation_data
 * (the command's id) and mqtt.response_topic (where the device should answer).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include <mosquitto_kafka.h>

#include "controller.h"

struct kafka {
	rd_kafka_t *consumer;
	rd_kafka_t *producer; /* created by the first command */
	const struct settings *set;
	int undelivered; /* commands produced and not yet acknowledged */
	int failed;      /* commands Kafka refused for good (delivery report error) */
	bool warned_unknown;
};

/* Eager rebalancing: commit what was counted, then give the partitions up. */
static void rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
		      rd_kafka_topic_partition_list_t *partitions, void *opaque)
{
	(void)opaque;
	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		fprintf(stderr, "mqk-controller: assigned %d partitions\n", partitions->cnt);
		rd_kafka_assign(rk, partitions);
		return;
	}
	rd_kafka_resp_err_t cerr = rd_kafka_commit(rk, NULL, 0);
	if (cerr && cerr != RD_KAFKA_RESP_ERR__NO_OFFSET) {
		fprintf(stderr, "mqk-controller: commit before revocation: %s\n",
			rd_kafka_err2str(cerr));
	}
	fprintf(stderr, "mqk-controller: revoked %d partitions\n", partitions->cnt);
	rd_kafka_assign(rk, NULL);
}

struct kafka *kafka__open(const struct settings *set, char *errstr, size_t errstr_size)
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
	/* Ours first, so that -X can change any of them. */
	if (cli_conf_set(conf, "group.id", set->group, errstr, errstr_size) ||
	    cli_conf_set(conf, "client.id", "mqk-controller", errstr, errstr_size) ||
	    cli_conf_set(conf, "enable.auto.offset.store", "false", errstr, errstr_size) ||
	    cli_conf_set(conf, "auto.offset.reset", "earliest", errstr, errstr_size) ||
	    cli_conf_set(conf, "auto.commit.interval.ms", "1000", errstr, errstr_size) ||
	    cli_kafka_apply(conf, set->bootstrap, &set->props, errstr, errstr_size)) {
		goto error;
	}
	rd_kafka_conf_set_rebalance_cb(conf, rebalance);
	if (set->n_topics == 0) {
		rd_kafka_conf_destroy(conf); /* only commands to send */
		return k;
	}
	k->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
	if (k->consumer == NULL) {
		snprintf(errstr, errstr_size, "%s", err);
		goto error;
	}
	conf = NULL; /* owned by the consumer now */
	rd_kafka_poll_set_consumer(k->consumer);

	rd_kafka_topic_partition_list_t *topics =
		rd_kafka_topic_partition_list_new((int)set->n_topics);
	for (size_t i = 0; i < set->n_topics; i++) {
		rd_kafka_topic_partition_list_add(topics, set->topics[i], RD_KAFKA_PARTITION_UA);
	}
	rd_kafka_resp_err_t rerr = rd_kafka_subscribe(k->consumer, topics);
	rd_kafka_topic_partition_list_destroy(topics);
	if (rerr) {
		snprintf(errstr, errstr_size, "subscribe: %s", rd_kafka_err2str(rerr));
		goto error;
	}
	return k;

error:
	if (conf) {
		rd_kafka_conf_destroy(conf);
	}
	if (k->consumer) {
		rd_kafka_destroy(k->consumer);
	}
	free(k);
	return NULL;
}

/* The value of header name as a NUL-terminated string in buf, or NULL when absent. */
static const char *header(rd_kafka_headers_t *hdrs, const char *name, char *buf, size_t size)
{
	const void *value;
	size_t len;

	if (hdrs == NULL || rd_kafka_header_get_last(hdrs, name, &value, &len) != 0 ||
	    len >= size) {
		return NULL;
	}
	memcpy(buf, value, len);
	buf[len] = '\0';
	return buf;
}

static void handle(struct kafka *k, struct controller *ctl, rd_kafka_message_t *rkm)
{
	rd_kafka_headers_t *hdrs = NULL;
	char topic[1024], broker[256], route[256], boot[32], seq[32];
	const char *b;
	uint64_t n = 0;

	rd_kafka_message_headers(rkm, &hdrs);
	b = header(hdrs, MQK_HDR_BROKER, broker, sizeof(broker));
	if (b && header(hdrs, MQK_HDR_SEQ, seq, sizeof(seq))) {
		n = strtoull(seq, NULL, 10);
	} else {
		b = NULL; /* not from the plugin: no audit */
	}
	controller__deliver(ctl, header(hdrs, MQK_HDR_TOPIC, topic, sizeof(topic)), rkm->payload,
			    rkm->len, b, header(hdrs, MQK_HDR_ROUTE, route, sizeof(route)),
			    header(hdrs, MQK_HDR_BOOT, boot, sizeof(boot)), n);

	rd_kafka_resp_err_t err = rd_kafka_offset_store(rkm->rkt, rkm->partition, rkm->offset);
	if (err && !k->warned_unknown) {
		fprintf(stderr, "mqk-controller: storing an offset: %s\n", rd_kafka_err2str(err));
	}
}

int kafka__poll(struct kafka *k, struct controller *ctl, int timeout_ms)
{
	int handled = 0;

	if (k->producer) {
		rd_kafka_poll(k->producer, 0);
		ctl->report.commands_failed += (uint64_t)k->failed;
		k->failed = 0;
	}
	if (k->consumer == NULL) {
		return 0;
	}
	/*
	 * Block for the first record, then take what is already there, up to a batch of
	 * 10,000 or for as long as timeout_ms (at least 1 ms) after the first record came:
	 * the caller may have a command due then.
	 */
	uint64_t until = 0;
	for (int i = 0; i < 10000; i++) {
		if (i > 0 && (i & 63) == 0 && cli_mono_us() >= until) {
			break;
		}
		rd_kafka_message_t *rkm = rd_kafka_consumer_poll(k->consumer, i ? 0 : timeout_ms);
		if (rkm == NULL) {
			break;
		}
		if (i == 0) {
			until = cli_mono_us() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 1) * 1000;
		}
		if (rkm->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
			handle(k, ctl, rkm);
			handled++;
		} else if (rkm->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
			   rkm->err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION) {
			if (!k->warned_unknown) {
				fprintf(stderr, "mqk-controller: %s (waiting for it to appear)\n",
					rd_kafka_message_errstr(rkm));
				k->warned_unknown = true;
			}
		} else if (rkm->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
			char fatal[512];
			fprintf(stderr, "mqk-controller: %s\n", rd_kafka_message_errstr(rkm));
			if (rd_kafka_fatal_error(k->consumer, fatal, sizeof(fatal))) {
				fprintf(stderr, "mqk-controller: fatal: %s\n", fatal);
				rd_kafka_message_destroy(rkm);
				return -1;
			}
		}
		rd_kafka_message_destroy(rkm);
	}
	return handled;
}

static void delivered(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
	struct kafka *k = opaque;
	(void)rk;
	k->undelivered--;
	if (rkm->err) {
		k->failed++;
		fprintf(stderr, "mqk-controller: command to %.*s not delivered: %s\n",
			(int)rkm->key_len, (const char *)rkm->key, rd_kafka_err2str(rkm->err));
	}
}

static int open_producer(struct kafka *k, char *errstr, size_t errstr_size)
{
	char err[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();

	if (cli_conf_set(conf, "enable.idempotence", "true", errstr, errstr_size) ||
	    cli_conf_set(conf, "linger.ms", "0", errstr, errstr_size) ||
	    cli_conf_set(conf, "client.id", "mqk-controller", errstr, errstr_size) ||
	    cli_kafka_apply(conf, k->set->bootstrap, &k->set->props, errstr, errstr_size)) {
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	rd_kafka_conf_set_opaque(conf, k);
	rd_kafka_conf_set_dr_msg_cb(conf, delivered);
	k->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
	if (k->producer == NULL) {
		snprintf(errstr, errstr_size, "%s", err);
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	return 0;
}

int kafka__command(struct kafka *k, struct controller *ctl, const struct command *cmd, char *errstr,
		   size_t errstr_size)
{
	(void)ctl;
	if (k->producer == NULL && open_producer(k, errstr, errstr_size) != 0) {
		return -1;
	}
	rd_kafka_resp_err_t err = rd_kafka_producev(
		k->producer, RD_KAFKA_V_TOPIC(k->set->command_topic),
		RD_KAFKA_V_KEY(cmd->device, strlen(cmd->device)),
		RD_KAFKA_V_VALUE(cmd->payload, strlen(cmd->payload)),
		RD_KAFKA_V_HEADER(MQK_HDR_CORRELATION_DATA, cmd->id, (ssize_t)strlen(cmd->id)),
		RD_KAFKA_V_HEADER(MQK_HDR_RESPONSE_TOPIC, cmd->response_topic,
				  (ssize_t)strlen(cmd->response_topic)),
		RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
	if (err) {
		snprintf(errstr, errstr_size, "%s", rd_kafka_err2str(err));
		return -1;
	}
	k->undelivered++;
	return 0;
}

int kafka__flush(struct kafka *k, struct controller *ctl, int timeout_ms)
{
	if (k->producer) {
		rd_kafka_flush(k->producer, timeout_ms);
	}
	ctl->report.commands_failed += (uint64_t)k->failed;
	k->failed = 0;
	return k->undelivered;
}

void kafka__close(struct kafka *k)
{
	if (k->producer) {
		rd_kafka_destroy(k->producer);
	}
	if (k->consumer) {
		rd_kafka_consumer_close(k->consumer);
		rd_kafka_destroy(k->consumer);
	}
	free(k);
}
