/*
 * send.c - what the engine (route.c) writes to Kafka: a command's record to a broker's
 * topic or the dead-letter topic, and the offset of a settled command for the next commit.
 * The handles are kafka.c's (which also hands route.c what it reads and the delivery
 * reports); this file only uses them. Main thread only.
 */
#include <inttypes.h>

#include "router.h"

void send__store(struct router *r, int32_t partition, int64_t offset)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);

	rd_kafka_topic_partition_list_add(list, r->set->commands_topic, partition)->offset =
		offset + 1;
	rd_kafka_resp_err_t err = rd_kafka_offsets_store(r->commands_rk, list);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		err = list->elems[0].err;
	}
	if (err) {
		router__logrl(&r->rl_consume,
			      "commands: storing offset %" PRId64 " of partition "
			      "%" PRId32 ": %s",
			      offset + 1, partition, rd_kafka_err2str(err));
	}
	rd_kafka_topic_partition_list_destroy(list);
}

rd_kafka_resp_err_t send__produce(struct router *r, struct command *cmd, const char *topic,
				  rd_kafka_headers_t *hdrs)
{
	rd_kafka_vu_t vu[8];
	size_t n = 0;

	vu[n].vtype = RD_KAFKA_VTYPE_TOPIC;
	vu[n++].u.cstr = topic;
	if (cmd->key != NULL) { /* else a null key, as it came */
		vu[n].vtype = RD_KAFKA_VTYPE_KEY;
		vu[n].u.mem.ptr = cmd->key;
		vu[n++].u.mem.size = cmd->key_len;
	}
	if (cmd->value != NULL) { /* else a null value */
		vu[n].vtype = RD_KAFKA_VTYPE_VALUE;
		vu[n].u.mem.ptr = cmd->value;
		vu[n++].u.mem.size = cmd->value_len;
	}
	if (hdrs != NULL) {
		vu[n].vtype = RD_KAFKA_VTYPE_HEADERS;
		vu[n++].u.headers = hdrs;
	}
	if (cmd->timestamp >= 0) {
		vu[n].vtype = RD_KAFKA_VTYPE_TIMESTAMP;
		vu[n++].u.i64 = cmd->timestamp;
	}
	vu[n].vtype = RD_KAFKA_VTYPE_OPAQUE;
	vu[n++].u.ptr = cmd;
	vu[n].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
	vu[n++].u.i = RD_KAFKA_MSG_F_COPY;

	for (;;) {
		rd_kafka_error_t *error = rd_kafka_produceva(r->producer, vu, n);
		if (error == NULL) {
			r->in_flight++;
			return RD_KAFKA_RESP_ERR_NO_ERROR;
		}
		rd_kafka_resp_err_t err = rd_kafka_error_code(error);
		rd_kafka_error_destroy(error);
		if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL && !*r->stopping && !r->fatal) {
			rd_kafka_poll(r->producer, 100); /* delivery reports make room */
			continue;
		}
		if (err == RD_KAFKA_RESP_ERR__FATAL) {
			char fatal[512];
			rd_kafka_fatal_error(r->producer, fatal, sizeof(fatal));
			router__log("fatal error (producer): %s", fatal);
			r->fatal = true;
		}
		return err;
	}
}
