/*
 * commands.c - control commands for one device, and the answers that come back.
 *
 * Each command gets an id, "<prefix>-<n>", unique to this controller run. It travels as
 * the command's correlation data (MQTT v5 property, or Kafka header
 * mqtt.correlation_data for the plugin to carry), and inside a JSON object payload as
 * "cid", because an MQTT v3.1.1 device has no correlation data and echoes the whole
 * payload instead. mqk-loadgen answers with its usual payload whose trailer is that id
 * or that payload (include/mqk_payload.h), so an answer is paired by looking its
 * trailer up among the ids, then among the payloads, of the commands sent.
 *
 * Exactly once, and to the right device: every command sent is kept for the whole run,
 * answered or not, in an array indexed by two hash tables (open addressing, FNV-1a,
 * linear probing, at most half full, never a removal): one by id, one by payload. Each
 * answer costs one look-up, whatever the number of commands. The answer's device id is
 * compared with the command's target:
 *
 *   - another device: misdelivered (the command reached a device it was not for; the
 *     command itself stays unanswered until its own device answers);
 *   - its device, the command already answered: a duplicate;
 *   - its device, first time: answered; the round trip (arrival here minus the send time)
 *     and the delivery (the answer's send time, i.e. when the device had the command,
 *     minus the send time; one machine's clock) are recorded;
 *   - nothing matches: unmatched.
 *
 * A payload that is not a JSON object gets no "cid", so several commands may share it.
 * The payload table then holds the newest of them and each command links to the previous
 * one with the same payload; an echo of that payload pairs with the oldest unanswered one
 * of the answering device (a walk along that chain). Such answers cannot be told from
 * duplicates exactly: use MQTT v5 (correlation data) or JSON object payloads for that.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mqk_payload.h>

#include "controller.h"

void command__free(struct command *cmd)
{
	free(cmd->device);
	free(cmd->id);
	free(cmd->payload);
	free(cmd->response_topic);
	memset(cmd, 0, sizeof(*cmd));
}

/* payload with "cid": id added when it is a JSON object without one; else a copy. */
static char *with_id(const char *payload, const char *id)
{
	cJSON *json = cJSON_Parse(payload);
	char *out;

	if (cJSON_IsObject(json) && !cJSON_HasObjectItem(json, "cid")) {
		cJSON_AddStringToObject(json, "cid", id);
		out = cJSON_PrintUnformatted(json);
	} else {
		out = strdup(payload);
	}
	cJSON_Delete(json);
	return out;
}

int commands__make(struct commands *c, const char *device, const char *payload,
		   const char *answers_tpl, struct command *out)
{
	char id[96];

	if (c->prefix[0] == '\0') {
		snprintf(c->prefix, sizeof(c->prefix), "mqkc-%ld-%" PRIx64, (long)getpid(),
			 now_us() & 0xffffff);
	}
	snprintf(id, sizeof(id), "%s-%" PRIu64, c->prefix, c->next++);
	memset(out, 0, sizeof(*out));
	out->device = strdup(device);
	out->id = strdup(id);
	out->payload = with_id(payload, id);
	out->response_topic = expand_id(answers_tpl, device);
	if (!out->device || !out->id || !out->payload || !out->response_topic) {
		command__free(out);
		return -1;
	}
	return 0;
}

/* ---- the two indexes ---- */

static uint64_t hash(const void *bytes, size_t len)
{
	const unsigned char *p = bytes;
	uint64_t h = 14695981039346656037ULL;
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 1099511628211ULL;
	}
	return h;
}

static bool same(const char *s, const void *bytes, size_t len)
{
	return strlen(s) == len && memcmp(s, bytes, len) == 0;
}

/* The command's id (which == 0) or payload (which == 1). */
static const char *key_of(const struct sent *s, int which)
{
	return which == 0 ? s->id : s->payload;
}

/*
 * The slot of index (which: 0 by id, 1 by payload) that holds the command whose key is
 * those len bytes, or the empty slot where it would go.
 */
static uint32_t *find(const struct commands *c, uint32_t *index, int which, const void *key,
		      size_t len)
{
	size_t mask = c->index_cap - 1, i = (size_t)hash(key, len) & mask;

	while (index[i] != 0 && !same(key_of(&c->s[index[i] - 1], which), key, len)) {
		i = (i + 1) & mask;
	}
	return &index[i];
}

/* Doubles both indexes (at least 64 slots) and puts back what they held. */
static int grow_index(struct commands *c)
{
	size_t cap = c->index_cap ? c->index_cap * 2 : 64;
	uint32_t *old[2] = {c->by_id, c->by_payload}, *fresh[2];
	size_t old_cap = c->index_cap;

	fresh[0] = calloc(cap, sizeof(uint32_t));
	fresh[1] = calloc(cap, sizeof(uint32_t));
	if (fresh[0] == NULL || fresh[1] == NULL) {
		free(fresh[0]);
		free(fresh[1]);
		return -1;
	}
	c->by_id = fresh[0];
	c->by_payload = fresh[1];
	c->index_cap = cap;
	for (int which = 0; which < 2; which++) {
		for (size_t i = 0; i < old_cap; i++) {
			uint32_t v = old[which][i];
			if (v != 0) {
				const char *k = key_of(&c->s[v - 1], which);
				*find(c, fresh[which], which, k, strlen(k)) = v;
			}
		}
		free(old[which]);
	}
	return 0;
}

int commands__sent(struct commands *c, const struct command *cmd, uint64_t sent_us)
{
	if (c->n >= UINT32_MAX - 1) {
		return -1;
	}
	if ((c->n + 1) * 2 > c->index_cap && grow_index(c) != 0) {
		return -1;
	}
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		struct sent *s = realloc(c->s, cap * sizeof(*s));
		if (s == NULL) {
			return -1;
		}
		c->s = s;
		c->cap = cap;
	}
	/* One allocation for the three strings: id, payload, device. */
	size_t li = strlen(cmd->id) + 1, lp = strlen(cmd->payload) + 1;
	size_t ld = strlen(cmd->device) + 1;
	char *mem = malloc(li + lp + ld);
	if (mem == NULL) {
		return -1;
	}
	struct sent *s = &c->s[c->n];
	memcpy(mem, cmd->id, li);
	memcpy(mem + li, cmd->payload, lp);
	memcpy(mem + li + lp, cmd->device, ld);
	s->id = mem;
	s->payload = mem + li;
	s->device = mem + li + lp;
	s->sent_us = sent_us;
	s->answered = false;

	uint32_t me = (uint32_t)c->n + 1;
	uint32_t *slot = find(c, c->by_id, 0, s->id, li - 1);
	if (*slot != 0) {
		free(mem); /* the same id twice: not from commands__make */
		return -1;
	}
	*slot = me;
	slot = find(c, c->by_payload, 1, s->payload, lp - 1);
	s->same_payload = *slot; /* the previous command with this payload, or 0 */
	*slot = me;
	c->n++;
	return 0;
}

/* The command an answer of device (dlen bytes) with that payload trailer is for. */
static struct sent *by_payload(struct commands *c, const void *trailer, size_t len,
			       const char *device, size_t dlen)
{
	uint32_t v = *find(c, c->by_payload, 1, trailer, len);
	struct sent *oldest_pending = NULL, *answered = NULL, *other = NULL;

	for (; v != 0; v = c->s[v - 1].same_payload) {
		struct sent *s = &c->s[v - 1];
		if (!same(s->device, device, dlen)) {
			other = s;
		} else if (!s->answered) {
			oldest_pending = s; /* the chain goes from newest to oldest */
		} else {
			answered = s;
		}
	}
	return oldest_pending ? oldest_pending : answered ? answered : other;
}

enum answer commands__answer(struct commands *c, struct report *r, const void *payload, size_t len,
			     uint64_t now)
{
	struct mqk_payload a;
	struct sent *s = NULL;

	if (c->n > 0 && mqk_payload_decode(payload, len, &a) == 0) {
		uint32_t v = *find(c, c->by_id, 0, a.trailer, a.trailer_len);
		s = v ? &c->s[v - 1]
		      : by_payload(c, a.trailer, a.trailer_len, a.device, a.device_len);
	}
	if (s == NULL) {
		r->answers_unmatched++;
		return ANSWER_UNMATCHED;
	}
	if (!same(s->device, a.device, a.device_len)) {
		r->answers_misdelivered++;
		return ANSWER_MISDELIVERED;
	}
	if (s->answered) {
		r->answers_duplicate++;
		return ANSWER_DUPLICATE;
	}
	s->answered = true;
	c->answered++;
	r->answers++;
	hist__record(&r->rtt, now > s->sent_us ? now - s->sent_us : 0);
	hist__record(&r->delivery, a.sent_us > s->sent_us ? a.sent_us - s->sent_us : 0);
	return ANSWER_OK;
}

void commands__free(struct commands *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->s[i].id);
	}
	free(c->s);
	free(c->by_id);
	free(c->by_payload);
	memset(c, 0, sizeof(*c));
}
