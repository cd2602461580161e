/*
 * commands.c - control commands for one device, and the answers that come back.
 *
 * Each command gets an id, "<prefix>-<n>", unique to this controller run. It travels as
 * the command's correlation data (MQTT v5 property, or Kafka header
 * mqtt.correlation_data for the plugin to carry), and inside a JSON object payload as
 * "cid", because an MQTT v3.1.1 device has no correlation data and echoes the whole
 * payload instead. mqk-loadgen answers with its usual payload whose trailer is that id
 * or that payload (include/mqk_payload.h), so an answer is paired by comparing its
 * trailer with the ids and payloads of the commands still pending.
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

int commands__sent(struct commands *c, const struct command *cmd, uint64_t sent_us)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 16;
		struct pending *p = realloc(c->p, cap * sizeof(*p));
		if (p == NULL) {
			return -1;
		}
		c->p = p;
		c->cap = cap;
	}
	struct pending *p = &c->p[c->n];
	p->id = strdup(cmd->id);
	p->payload = strdup(cmd->payload);
	p->sent_us = sent_us;
	if (!p->id || !p->payload) {
		free(p->id);
		free(p->payload);
		return -1;
	}
	c->n++;
	return 0;
}

static bool same(const char *s, const void *bytes, size_t len)
{
	return strlen(s) == len && memcmp(s, bytes, len) == 0;
}

void commands__answer(struct commands *c, struct report *r, const void *payload, size_t len,
		      uint64_t now)
{
	struct mqk_payload a;

	if (mqk_payload_decode(payload, len, &a) == 0) {
		for (size_t i = 0; i < c->n; i++) {
			struct pending *p = &c->p[i];
			if (same(p->id, a.trailer, a.trailer_len) ||
			    same(p->payload, a.trailer, a.trailer_len)) {
				hist__record(&r->rtt, now > p->sent_us ? now - p->sent_us : 0);
				r->answers++;
				free(p->id);
				free(p->payload);
				c->p[i] = c->p[--c->n]; /* order does not matter */
				return;
			}
		}
	}
	r->answers_unmatched++;
}

void commands__free(struct commands *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->p[i].id);
		free(c->p[i].payload);
	}
	free(c->p);
	memset(c, 0, sizeof(*c));
}
