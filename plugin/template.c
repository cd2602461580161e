/*
 * template.c - Kafka topic and key templates.
 *
 * A route's Kafka topic and key are templates compiled once at start-up into a list of
 * parts: literal text, and placeholders that take a value from the message: {1}..{N}
 * (what the route filter's wildcards matched), {clientid}, {username}, {topic},
 * {broker}. Expanding one is a walk over the parts into a caller's buffer: no
 * allocation, no parsing on the message path.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqk.h"

#define KAFKA_TOPIC_MAX 249

static bool is_kafka_topic_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-';
}

bool template__is_kafka_topic(const char *name, size_t len)
{
	if (len == 0 || len > KAFKA_TOPIC_MAX) {
		return false;
	}
	if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.')) {
		return false;
	}
	for (size_t i = 0; i < len; i++) {
		if (!is_kafka_topic_char(name[i])) {
			return false;
		}
	}
	return true;
}

static int count_wildcards(const char *filter)
{
	int n = 0;
	const char *level = filter;

	for (;;) {
		const char *end = strchrnul(level, '/');
		if (end - level == 1 && (level[0] == '+' || level[0] == '#')) {
			n++;
		}
		if (*end == '\0') {
			return n;
		}
		level = end + 1;
	}
}

bool template__wildcard_level(const char *filter, const char *topic, int n, const char **start,
			      size_t *len)
{
	const char *f = filter;
	const char *t = topic; /* NULL once the topic has no more levels */
	int seen = 0;

	for (;;) {
		const char *fe = strchrnul(f, '/');
		if (f[0] == '#') {
			if (++seen != n || t == NULL) {
				return false;
			}
			*start = t;
			*len = strlen(t);
			return true;
		}
		if (t == NULL) {
			return false;
		}
		const char *te = strchrnul(t, '/');
		if (fe - f == 1 && f[0] == '+' && ++seen == n) {
			*start = t;
			*len = (size_t)(te - t);
			return true;
		}
		if (*fe == '\0') {
			return false;
		}
		f = fe + 1;
		t = *te ? te + 1 : NULL;
	}
}

/* Appends a part. 0, or -1 with "out of memory" in errstr. */
static int add_part(struct mqk_template *tpl, enum mqk_tpl_kind kind, int level, const char *text,
		    size_t len, char *errstr, size_t errstr_size)
{
	struct mqk_tpl_part *parts =
		realloc(tpl->parts, sizeof(*parts) * (size_t)(tpl->part_count + 1));
	if (parts == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		return -1;
	}
	tpl->parts = parts;
	parts[tpl->part_count++] = (struct mqk_tpl_part){kind, level, text, len};
	return 0;
}

static const struct {
	const char *name;
	enum mqk_tpl_kind kind;
} placeholders[] = {
	{"clientid", MQK_TPL_CLIENTID},
	{"username", MQK_TPL_USERNAME},
	{"topic", MQK_TPL_TOPIC},
	{"broker", MQK_TPL_BROKER},
};

/* Parses the placeholder name in [name, name+len) into a part. */
static int add_placeholder(struct mqk_template *tpl, const char *name, size_t len, int wildcards,
			   char *errstr, size_t errstr_size)
{
	if (len > 0 && len <= 3 && strspn(name, "0123456789") >= len) {
		int level = atoi(name);
		if (level < 1 || level > wildcards) {
			snprintf(errstr, errstr_size,
				 "'{%.*s}' in '%s': the filter has %d wildcard%s", (int)len, name,
				 tpl->source, wildcards, wildcards == 1 ? "" : "s");
			return -1;
		}
		return add_part(tpl, MQK_TPL_LEVEL, level, NULL, 0, errstr, errstr_size);
	}
	for (size_t i = 0; i < sizeof(placeholders) / sizeof(placeholders[0]); i++) {
		if (strlen(placeholders[i].name) == len &&
		    !strncmp(placeholders[i].name, name, len)) {
			return add_part(tpl, placeholders[i].kind, 0, NULL, 0, errstr, errstr_size);
		}
	}
	snprintf(errstr, errstr_size,
		 "unknown placeholder '{%.*s}' in '%s' (use {1}, {2}, ... for the filter's "
		 "wildcards, {clientid}, {username}, {topic} or {broker})",
		 (int)len, name, tpl->source);
	return -1;
}

int template__compile(struct mqk_template *tpl, const char *source, const char *filter,
		      bool kafka_topic, char *errstr, size_t errstr_size)
{
	int wildcards = count_wildcards(filter);
	const char *p;

	memset(tpl, 0, sizeof(*tpl));
	tpl->source = strdup(source);
	if (tpl->source == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		return -1;
	}
	p = tpl->source;
	while (*p) {
		if (*p == '{') {
			const char *close = strchr(p, '}');
			if (close == NULL) {
				snprintf(errstr, errstr_size, "unclosed '{' in '%s'", source);
				goto error;
			}
			if (add_placeholder(tpl, p + 1, (size_t)(close - p - 1), wildcards, errstr,
					    errstr_size)) {
				goto error;
			}
			p = close + 1;
			continue;
		}
		size_t len = strcspn(p, "{}");
		if (len == 0) { /* a lone '}' */
			snprintf(errstr, errstr_size, "unmatched '}' in '%s'", source);
			goto error;
		}
		if (kafka_topic) {
			for (size_t i = 0; i < len; i++) {
				if (!is_kafka_topic_char(p[i])) {
					snprintf(
						errstr, errstr_size,
						"'%s' is not a valid Kafka topic name: '%c' is not "
						"allowed (use [A-Za-z0-9._-] and placeholders)",
						source, p[i]);
					goto error;
				}
			}
		}
		if (add_part(tpl, MQK_TPL_LITERAL, 0, p, len, errstr, errstr_size)) {
			goto error;
		}
		p += len;
	}
	tpl->is_static = tpl->part_count <= 1 &&
			 (tpl->part_count == 0 || tpl->parts[0].kind == MQK_TPL_LITERAL);
	if (kafka_topic && tpl->is_static && !template__is_kafka_topic(source, strlen(source))) {
		snprintf(errstr, errstr_size,
			 "'%s' is not a valid Kafka topic name (1..249 bytes, not '.' or '..')",
			 source);
		goto error;
	}
	return 0;
error:
	template__free(tpl);
	return -1;
}

int template__expand(const struct mqk_template *tpl, const struct mqk_msg_ctx *ctx, char *buf,
		     size_t buf_size)
{
	size_t out = 0;

	for (int i = 0; i < tpl->part_count; i++) {
		const struct mqk_tpl_part *part = &tpl->parts[i];
		const char *s = NULL;
		size_t len = 0;

		switch (part->kind) {
		case MQK_TPL_LITERAL:
			s = part->text;
			len = part->len;
			break;
		case MQK_TPL_LEVEL:
			if (!template__wildcard_level(ctx->filter, ctx->topic, part->level, &s,
						      &len)) {
				len = 0;
			}
			break;
		case MQK_TPL_CLIENTID:
			s = ctx->client_id;
			break;
		case MQK_TPL_USERNAME:
			s = ctx->username;
			break;
		case MQK_TPL_TOPIC:
			s = ctx->topic;
			break;
		case MQK_TPL_BROKER:
			s = ctx->broker_id;
			break;
		case MQK_TPL_KEY: /* inbound templates' (template__expand_record) */
		case MQK_TPL_PARTITION:
		case MQK_TPL_HEADER:
			break;
		}
		if (part->kind != MQK_TPL_LITERAL && part->kind != MQK_TPL_LEVEL) {
			len = s ? strlen(s) : 0;
		}
		if (out + len >= buf_size) {
			return -1;
		}
		if (len > 0) {
			memcpy(buf + out, s, len);
		}
		out += len;
	}
	if (out >= buf_size) {
		return -1;
	}
	buf[out] = '\0';
	return (int)out;
}

void template__free(struct mqk_template *tpl)
{
	free(tpl->parts);
	free(tpl->source);
	memset(tpl, 0, sizeof(*tpl));
}

/* ---- inbound routes' MQTT topic templates --------------------------------------------- */

/* One placeholder of an inbound template: {key}, {partition}, {broker}, {header:<name>}. */
static int add_inbound_placeholder(struct mqk_template *tpl, const char *name, size_t len,
				   char *errstr, size_t errstr_size)
{
	if (len == 3 && !strncmp(name, "key", 3)) {
		return add_part(tpl, MQK_TPL_KEY, 0, NULL, 0, errstr, errstr_size);
	}
	if (len == 9 && !strncmp(name, "partition", 9)) {
		return add_part(tpl, MQK_TPL_PARTITION, 0, NULL, 0, errstr, errstr_size);
	}
	if (len == 6 && !strncmp(name, "broker", 6)) {
		return add_part(tpl, MQK_TPL_BROKER, 0, NULL, 0, errstr, errstr_size);
	}
	if (len > 7 && !strncmp(name, "header:", 7)) {
		/* The name points into tpl->source; a NUL-terminated copy is made at expansion. */
		return add_part(tpl, MQK_TPL_HEADER, 0, name + 7, len - 7, errstr, errstr_size);
	}
	snprintf(errstr, errstr_size,
		 "unknown placeholder '{%.*s}' in '%s' (use {key}, {partition}, "
		 "{header:<name>} or {broker})",
		 (int)len, name, tpl->source);
	return -1;
}

int template__compile_inbound(struct mqk_template *tpl, const char *source, char *errstr,
			      size_t errstr_size)
{
	const char *p;

	memset(tpl, 0, sizeof(*tpl));
	tpl->source = strdup(source);
	if (tpl->source == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		return -1;
	}
	if (source[0] == '$') {
		snprintf(errstr, errstr_size,
			 "'%s': topics starting with '$' are the broker's, not for inbound records",
			 source);
		goto error;
	}
	p = tpl->source;
	while (*p) {
		if (*p == '{') {
			const char *close = strchr(p, '}');
			if (close == NULL) {
				snprintf(errstr, errstr_size, "unclosed '{' in '%s'", source);
				goto error;
			}
			if (add_inbound_placeholder(tpl, p + 1, (size_t)(close - p - 1), errstr,
						    errstr_size)) {
				goto error;
			}
			p = close + 1;
			continue;
		}
		size_t len = strcspn(p, "{}");
		if (len == 0) {
			snprintf(errstr, errstr_size, "unmatched '}' in '%s'", source);
			goto error;
		}
		if (memchr(p, '+', len) || memchr(p, '#', len)) {
			snprintf(errstr, errstr_size,
				 "'%s' is not an MQTT topic to publish to: no '+' or '#'", source);
			goto error;
		}
		if (add_part(tpl, MQK_TPL_LITERAL, 0, p, len, errstr, errstr_size)) {
			goto error;
		}
		p += len;
	}
	if (tpl->part_count == 0) {
		snprintf(errstr, errstr_size, "an empty MQTT topic");
		goto error;
	}
	tpl->is_static = tpl->part_count == 1 && tpl->parts[0].kind == MQK_TPL_LITERAL;
	return 0;
error:
	template__free(tpl);
	return -1;
}

int template__expand_record(const struct mqk_template *tpl, const rd_kafka_message_t *rkm,
			    const char *broker_id, char *buf, size_t buf_size, const char **cause,
			    char *cause_buf, size_t cause_size)
{
	size_t out = 0;
	char number[16];

	*cause = NULL;
	for (int i = 0; i < tpl->part_count; i++) {
		const struct mqk_tpl_part *part = &tpl->parts[i];
		const void *s = NULL;
		size_t len = 0;

		switch (part->kind) {
		case MQK_TPL_LITERAL:
			s = part->text;
			len = part->len;
			break;
		case MQK_TPL_KEY:
			s = rkm->key;
			len = rkm->key_len;
			if (s == NULL) {
				*cause = "no key";
				return -1;
			}
			break;
		case MQK_TPL_PARTITION:
			len = (size_t)snprintf(number, sizeof(number), "%d", (int)rkm->partition);
			s = number;
			break;
		case MQK_TPL_HEADER: {
			rd_kafka_headers_t *hdrs;
			char name[256];
			snprintf(name, sizeof(name), "%.*s", (int)part->len, part->text);
			if (rd_kafka_message_headers(rkm, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
			    rd_kafka_header_get_last(hdrs, name, &s, &len) !=
				    RD_KAFKA_RESP_ERR_NO_ERROR ||
			    s == NULL) {
				snprintf(cause_buf, cause_size, "no header %s", name);
				*cause = cause_buf;
				return -1;
			}
			break;
		}
		case MQK_TPL_BROKER:
			s = broker_id;
			len = strlen(broker_id);
			break;
		default: /* outbound placeholders: template__compile_inbound never makes them */
			*cause = "bad template";
			return -1;
		}
		if (len > 0 && memchr(s, '\0', len) != NULL) {
			*cause = part->kind == MQK_TPL_KEY ? "NUL in the key" : "NUL in a header";
			return -1;
		}
		if (out + len >= buf_size) {
			*cause = "too long";
			return -1;
		}
		if (len > 0) {
			memcpy(buf + out, s, len);
		}
		out += len;
	}
	buf[out] = '\0';
	return (int)out;
}
