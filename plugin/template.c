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

#include "kafka_topic.h"
#include "mqk.h"

/* The rule is common/kafka_topic.c's, shared with the tools. */
bool template__is_kafka_topic(const char *name, size_t len)
{
	return kafka_topic__is_legal(name, len);
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

static int add_part(struct mqk_template *tpl, enum mqk_tpl_kind kind, int level, const char *text,
		    size_t len)
{
	struct mqk_tpl_part *parts =
		realloc(tpl->parts, sizeof(*parts) * (size_t)(tpl->part_count + 1));
	if (parts == NULL) {
		return -1;
	}
	tpl->parts = parts;
	parts[tpl->part_count++] = (struct mqk_tpl_part){kind, level, text, len};
	return 0;
}

/* A placeholder's part: add_part, or -1 with errstr. */
static int add_placeholder_part(struct mqk_template *tpl, enum mqk_tpl_kind kind, int level,
				const char *text, size_t len, char *errstr, size_t errstr_size)
{
	if (add_part(tpl, kind, level, text, len)) {
		snprintf(errstr, errstr_size, "out of memory");
		return -1;
	}
	return 0;
}

/* The placeholders written {name}, of each kind of template. */
struct named_placeholder {
	const char *name;
	enum mqk_tpl_kind kind;
};
static const struct named_placeholder placeholders[] = {
	{"clientid", MQK_TPL_CLIENTID},
	{"username", MQK_TPL_USERNAME},
	{"topic", MQK_TPL_TOPIC},
	{"broker", MQK_TPL_BROKER},
};
static const struct named_placeholder inbound_placeholders[] = {
	{"key", MQK_TPL_KEY},
	{"partition", MQK_TPL_PARTITION},
	{"broker", MQK_TPL_BROKER},
};

#define TABLE(t) t, sizeof(t) / sizeof(t[0])

/* The kind of the placeholder [name, name+len) in table, or MQK_TPL_LITERAL: none. */
static enum mqk_tpl_kind named(const struct named_placeholder *table, size_t count,
			       const char *name, size_t len)
{
	for (size_t i = 0; i < count; i++) {
		if (strlen(table[i].name) == len && !strncmp(table[i].name, name, len)) {
			return table[i].kind;
		}
	}
	return MQK_TPL_LITERAL;
}

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
		return add_placeholder_part(tpl, MQK_TPL_LEVEL, level, NULL, 0, errstr,
					    errstr_size);
	}
	enum mqk_tpl_kind kind = named(TABLE(placeholders), name, len);
	if (kind != MQK_TPL_LITERAL) {
		return add_placeholder_part(tpl, kind, 0, NULL, 0, errstr, errstr_size);
	}
	snprintf(errstr, errstr_size,
		 "unknown placeholder '{%.*s}' in '%s' (use {1}, {2}, ... for the filter's "
		 "wildcards, {clientid}, {username}, {topic} or {broker})",
		 (int)len, name, tpl->source);
	return -1;
}

/* A placeholder's name in [name, name+len) made a part of tpl (add_placeholder,
   add_inbound_placeholder). 0, or -1 with errstr. */
typedef int (*placeholder_fn)(struct mqk_template *tpl, const char *name, size_t len,
			      int wildcards, char *errstr, size_t errstr_size);
/* A literal [text, text+len) of source allowed? 0, or -1 with errstr. */
typedef int (*literal_fn)(const char *source, const char *text, size_t len, char *errstr,
			  size_t errstr_size);

/*
 * The one parser of both kinds of template: source into tpl's parts, literal text and
 * {placeholders} (placeholder makes each), each literal checked by literal (NULL: any).
 * 0, or -1 with errstr and tpl freed.
 */
static int parse(struct mqk_template *tpl, const char *source, placeholder_fn placeholder,
		 int wildcards, literal_fn literal, char *errstr, size_t errstr_size)
{
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
			if (placeholder(tpl, p + 1, (size_t)(close - p - 1), wildcards, errstr,
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
		if (literal != NULL && literal(source, p, len, errstr, errstr_size)) {
			goto error;
		}
		if (add_part(tpl, MQK_TPL_LITERAL, 0, p, len)) {
			snprintf(errstr, errstr_size, "out of memory");
			goto error;
		}
		p += len;
	}
	tpl->is_static = tpl->part_count <= 1 &&
			 (tpl->part_count == 0 || tpl->parts[0].kind == MQK_TPL_LITERAL);
	return 0;
error:
	template__free(tpl);
	return -1;
}

/* A Kafka topic template's literal: only characters legal in a Kafka topic name. */
static int kafka_literal(const char *source, const char *text, size_t len, char *errstr,
			 size_t errstr_size)
{
	for (size_t i = 0; i < len; i++) {
		if (!kafka_topic__is_char(text[i])) {
			snprintf(errstr, errstr_size,
				 "'%s' is not a valid Kafka topic name: '%c' is not allowed (use "
				 "[A-Za-z0-9._-] and placeholders)",
				 source, text[i]);
			return -1;
		}
	}
	return 0;
}

int template__compile(struct mqk_template *tpl, const char *source, const char *filter,
		      bool kafka_topic, char *errstr, size_t errstr_size)
{
	if (parse(tpl, source, add_placeholder, count_wildcards(filter),
		  kafka_topic ? kafka_literal : NULL, errstr, errstr_size)) {
		return -1;
	}
	if (kafka_topic && tpl->is_static && !template__is_kafka_topic(source, strlen(source))) {
		snprintf(errstr, errstr_size,
			 "'%s' is not a valid Kafka topic name (1..249 bytes, not '.' or '..')",
			 source);
		template__free(tpl);
		return -1;
	}
	return 0;
}

/*
 * Where a placeholder's text comes from: sets *s and *len for part (not a literal), with
 * arg the expansion's source. false, with *cause set, when the part has no text.
 */
typedef bool (*part_value_fn)(const struct mqk_tpl_part *part, void *arg, const void **s,
			      size_t *len, const char **cause);

/* The one expansion loop, of both kinds of template: the literals and value's texts into
   buf (NUL-terminated). The length, or -1 with *cause set. */
static int expand_parts(const struct mqk_template *tpl, part_value_fn value, void *arg,
			char *buf, size_t buf_size, const char **cause)
{
	size_t out = 0;

	*cause = NULL;
	for (int i = 0; i < tpl->part_count; i++) {
		const struct mqk_tpl_part *part = &tpl->parts[i];
		const void *s = part->text;
		size_t len = part->len;

		if (part->kind != MQK_TPL_LITERAL && !value(part, arg, &s, &len, cause)) {
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
	if (out >= buf_size) {
		*cause = "too long";
		return -1;
	}
	buf[out] = '\0';
	return (int)out;
}

/* An outbound template's placeholders, from the message (an absent one is empty). */
static bool message_value(const struct mqk_tpl_part *part, void *arg, const void **s,
			  size_t *len, const char **cause)
{
	const struct mqk_msg_ctx *ctx = arg;
	const char *text = NULL;

	(void)cause;
	switch (part->kind) {
	case MQK_TPL_LEVEL: {
		const char *start;
		size_t n;
		if (template__wildcard_level(ctx->filter, ctx->topic, part->level, &start, &n)) {
			*s = start;
			*len = n;
		} else {
			*len = 0;
		}
		return true;
	}
	case MQK_TPL_CLIENTID:
		text = ctx->client_id;
		break;
	case MQK_TPL_USERNAME:
		text = ctx->username;
		break;
	case MQK_TPL_TOPIC:
		text = ctx->topic;
		break;
	case MQK_TPL_BROKER:
		text = ctx->broker_id;
		break;
	case MQK_TPL_LITERAL:
	case MQK_TPL_KEY: /* inbound templates' (template__expand_record) */
	case MQK_TPL_PARTITION:
	case MQK_TPL_HEADER:
		break;
	}
	*s = text;
	*len = text ? strlen(text) : 0;
	return true;
}

int template__expand(const struct mqk_template *tpl, const struct mqk_msg_ctx *ctx, char *buf,
		     size_t buf_size)
{
	const char *cause;

	return expand_parts(tpl, message_value, (void *)ctx, buf, buf_size, &cause);
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
				   int wildcards, char *errstr, size_t errstr_size)
{
	enum mqk_tpl_kind kind = named(TABLE(inbound_placeholders), name, len);

	(void)wildcards; /* an inbound template has no filter */
	if (kind != MQK_TPL_LITERAL) {
		return add_placeholder_part(tpl, kind, 0, NULL, 0, errstr, errstr_size);
	}
	if (len > 7 && !strncmp(name, "header:", 7)) {
		/* The name points into tpl->source; a NUL-terminated copy is made at expansion. */
		return add_placeholder_part(tpl, MQK_TPL_HEADER, 0, name + 7, len - 7, errstr,
					    errstr_size);
	}
	snprintf(errstr, errstr_size,
		 "unknown placeholder '{%.*s}' in '%s' (use {key}, {partition}, "
		 "{header:<name>} or {broker})",
		 (int)len, name, tpl->source);
	return -1;
}

/* An inbound template's literal: an MQTT topic to publish to. */
static int mqtt_literal(const char *source, const char *text, size_t len, char *errstr,
			size_t errstr_size)
{
	if (memchr(text, '+', len) || memchr(text, '#', len)) {
		snprintf(errstr, errstr_size,
			 "'%s' is not an MQTT topic to publish to: no '+' or '#'", source);
		return -1;
	}
	return 0;
}

int template__compile_inbound(struct mqk_template *tpl, const char *source, char *errstr,
			      size_t errstr_size)
{
	if (source[0] == '$') {
		memset(tpl, 0, sizeof(*tpl));
		snprintf(errstr, errstr_size,
			 "'%s': topics starting with '$' are the broker's, not for inbound records",
			 source);
		return -1;
	}
	if (parse(tpl, source, add_inbound_placeholder, 0, mqtt_literal, errstr, errstr_size)) {
		return -1;
	}
	if (tpl->part_count == 0) {
		snprintf(errstr, errstr_size, "an empty MQTT topic");
		template__free(tpl);
		return -1;
	}
	return 0;
}

/* What an inbound template expands against: one Kafka record. */
struct record_source {
	const rd_kafka_message_t *rkm;
	const char *broker_id;
	char *cause_buf; /* "no header <name>" */
	size_t cause_size;
	char number[16]; /* {partition}'s text */
};

/* An inbound template's placeholders, from the record: a key or header that is absent or
   holds a NUL has no text. */
static bool record_value(const struct mqk_tpl_part *part, void *arg, const void **s,
			 size_t *len, const char **cause)
{
	struct record_source *src = arg;
	const rd_kafka_message_t *rkm = src->rkm;

	switch (part->kind) {
	case MQK_TPL_KEY:
		*s = rkm->key;
		*len = rkm->key_len;
		if (*s == NULL) {
			*cause = "no key";
			return false;
		}
		if (*len > 0 && memchr(*s, '\0', *len) != NULL) {
			*cause = "NUL in the key";
			return false;
		}
		return true;
	case MQK_TPL_PARTITION:
		*len = (size_t)snprintf(src->number, sizeof(src->number), "%d",
					(int)rkm->partition);
		*s = src->number;
		return true;
	case MQK_TPL_HEADER: {
		rd_kafka_headers_t *hdrs;
		char name[256];
		snprintf(name, sizeof(name), "%.*s", (int)part->len, part->text);
		if (rd_kafka_message_headers(rkm, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
		    rd_kafka_header_get_last(hdrs, name, s, len) != RD_KAFKA_RESP_ERR_NO_ERROR ||
		    *s == NULL) {
			snprintf(src->cause_buf, src->cause_size, "no header %s", name);
			*cause = src->cause_buf;
			return false;
		}
		if (*len > 0 && memchr(*s, '\0', *len) != NULL) {
			*cause = "NUL in a header";
			return false;
		}
		return true;
	}
	case MQK_TPL_BROKER:
		*s = src->broker_id;
		*len = strlen(src->broker_id);
		return true;
	default: /* outbound placeholders: template__compile_inbound never makes them */
		*cause = "bad template";
		return false;
	}
}

int template__expand_record(const struct mqk_template *tpl, const rd_kafka_message_t *rkm,
			    const char *broker_id, char *buf, size_t buf_size, const char **cause,
			    char *cause_buf, size_t cause_size)
{
	struct record_source src = {.rkm = rkm,
				    .broker_id = broker_id,
				    .cause_buf = cause_buf,
				    .cause_size = cause_size};

	return expand_parts(tpl, record_value, &src, buf, buf_size, cause);
}
