/*
 * redistribute.c - redistribute mode: where a command that is not for this broker goes.
 *
 * Commands thread only. In redistribute mode (docs/commands.md) the brokers share one
 * consumer group on commands_topic, so each reads only its partitions, and every broker
 * reads the presence topic in full. A command whose client mosquitto's thread did not
 * find here comes to redistribute__topic: the presence table says which broker holds
 * the client now, and the command is produced to that broker's own back-channel topic
 * (commands_topic_broker, {broker} expanded), which only that broker reads.
 *
 * The table is mqk-router's (tools/router/presence.c, the library mqk_router_core):
 * the same reader's rule, the same code and unit tests. A client that the table places
 * nowhere, or only here with no news since mosquitto's thread found it missing, is held
 * HOLD_MS on a queue of this file, then looked up again (commands.c decides: forward,
 * or retry through this broker's own back-channel with mqk.hops + 1, or dead-letter at
 * commands_max_hops). A held command keeps its place in the hand-off queue (its
 * offset is not stored), so a crash while it is held reads it again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqk.h"
#include "router.h"

#define KEY_MAX 2048

struct hold_entry {
	struct mqk_command *cmd; /* the hand-off queue's; only pointed to */
	int64_t due_ms;
	uint64_t seq;
};

struct mqk_redistributor {
	const struct mqk_cmd_config *cc;
	const char *broker_id;  /* the plugin's */
	struct presence table;  /* owned */
	struct hold_entry *held;      /* a ring of cap entries, owned */
	size_t cap, first, count;
};

struct mqk_redistributor *redistribute__new(const struct mqk_cmd_config *cc, const char *broker_id)
{
	struct mqk_redistributor *r = calloc(1, sizeof(*r));

	if (r == NULL) {
		return NULL;
	}
	r->cc = cc;
	r->broker_id = broker_id;
	return r;
}

int redistribute__presence(struct mqk_redistributor *r, const rd_kafka_message_t *rkm,
			   char *errstr, size_t errstr_size)
{
	char key[KEY_MAX];

	if (rkm->key == NULL || rkm->key_len == 0 || rkm->key_len >= sizeof(key) ||
	    memchr(rkm->key, '\0', rkm->key_len) != NULL) {
		snprintf(errstr, errstr_size, "a record with no key, a key of %zu bytes or a NUL",
			 rkm->key_len);
		return -1;
	}
	memcpy(key, rkm->key, rkm->key_len);
	key[rkm->key_len] = '\0';
	int rc = presence__apply(&r->table, key, rkm->payload, rkm->len, errstr, errstr_size);
	if (rc == PRES_OOM) {
		snprintf(errstr, errstr_size, "key '%.200s': out of memory", key);
	}
	return rc < 0 ? -1 : 0;
}

uint64_t redistribute__seq(const struct mqk_redistributor *r)
{
	return r->table.seq;
}

/* template with {broker} replaced by id, in buf; false when it does not fit. */
static bool expand(const char *template, const char *id, char *buf, size_t size)
{
	const char *at = strstr(template, "{broker}");
	int n;

	if (at == NULL) {
		return false; /* options.c refuses such a commands_topic_broker */
	}
	n = snprintf(buf, size, "%.*s%s%s", (int)(at - template), template, id,
		     at + sizeof("{broker}") - 1);
	return n > 0 && (size_t)n < size;
}

const char *redistribute__topic(const struct mqk_redistributor *r, const struct mqk_command *cmd,
				uint64_t seq, char *buf, size_t size)
{
	/* Here, as far as the table knows, but not found here: wait for news of the client. */
	struct pres_return ret = {.by = r->broker_id, .timestamp = -1, .seq = seq};
	const struct pres_broker *b = presence__where(&r->table, cmd->client_id, &ret);

	if (b == NULL || !expand(r->cc->broker_topic, b->id, buf, size)) {
		return NULL;
	}
	return buf;
}

int redistribute__hold(struct mqk_redistributor *r, struct mqk_command *cmd, int64_t due_ms,
		       uint64_t seq)
{
	if (r->count == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 64;
		struct hold_entry *h = malloc(cap * sizeof(*h));
		if (h == NULL) {
			return -1;
		}
		for (size_t i = 0; i < r->count; i++) {
			h[i] = r->held[(r->first + i) % r->cap];
		}
		free(r->held);
		r->held = h;
		r->cap = cap;
		r->first = 0;
	}
	/* Every hold lasts as long: the queue is in due order. */
	r->held[(r->first + r->count) % r->cap] =
		(struct hold_entry){.cmd = cmd, .due_ms = due_ms, .seq = seq};
	r->count++;
	return 0;
}

struct mqk_command *redistribute__due(struct mqk_redistributor *r, int64_t now_ms, uint64_t *seq)
{
	struct hold_entry *h;

	if (r->count == 0 || r->held[r->first].due_ms > now_ms) {
		return NULL;
	}
	h = &r->held[r->first];
	r->first = (r->first + 1) % r->cap;
	r->count--;
	*seq = h->seq;
	return h->cmd;
}

void redistribute__free(struct mqk_redistributor *r)
{
	if (r == NULL) {
		return;
	}
	presence__free(&r->table);
	free(r->held);
	free(r);
}
