/*
 * presence.c - the presence table: which broker each client is connected to, kept from
 * the records the plugins produce to the compacted presence topic (docs/commands.md,
 * "Presence records"; the plugin's side is plugin/presence.c).
 *
 *   key "<broker>/<client>", value {"broker","client_id","state":"connected","boot",
 *       "timestamp"}: the client connected to that broker; a null value: it left.
 *   key "<broker>", value {"broker","state":"up"|"down","boot","timestamp"}: the broker's
 *       plugin started (a new boot) or stopped cleanly.
 *
 * The table keeps, per broker, the boot of its current run and whether it is down, and per
 * client the latest "connected" record of each broker that has one (a tombstone removes
 * it). The reader's rule: C is at B when B's record of C is from B's current boot and B is
 * not down; when several brokers qualify, the newest timestamp wins. A broker that crashed
 * and came back announces a new boot, which invalidates every record of its previous run at
 * once, without waiting for tombstones that will never come.
 *
 * Records of one key are in order (one partition), but a broker's own record and its
 * clients' records are in different partitions, read in no particular order: a client
 * record whose boot is newer than the broker's known one means the broker started again and
 * its "up" record has not been read yet, so that boot becomes the broker's current one. For
 * the same reason a broker record of an older boot than the one known is a late record of a
 * previous run and changes nothing.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include <mosquitto_kafka.h>

#include "router.h"

bool presence__valid_broker_id(const char *s, size_t len)
{
	if (len == 0 || len > 64) {
		return false;
	}
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-')) {
			return false;
		}
	}
	return true;
}

static struct pres_broker *get_broker(struct presence *p, const char *id, bool create)
{
	struct map_node *n = map__get(&p->brokers, id);

	if (n != NULL || !create) {
		return n ? container_of(n, struct pres_broker, node) : NULL;
	}
	struct pres_broker *b = calloc(1, sizeof(*b));
	if (b == NULL || (b->id = strdup(id)) == NULL) {
		free(b);
		return NULL;
	}
	b->node.key = b->id;
	if (map__add(&p->brokers, &b->node) != 0) {
		free(b->id);
		free(b);
		return NULL;
	}
	if (p->broker_last) {
		p->broker_last->next = b;
	} else {
		p->broker_list = b;
	}
	p->broker_last = b;
	return b;
}

static struct pres_client *get_client(const struct presence *p, const char *id)
{
	struct map_node *n = map__get(&p->clients, id);
	return n ? container_of(n, struct pres_client, node) : NULL;
}

static void free_client(struct pres_client *c)
{
	while (c->entries) {
		struct pres_entry *next = c->entries->next;
		free(c->entries);
		c->entries = next;
	}
	free(c->id);
	free(c);
}

/* A JSON number that is a whole number of 0..2^62 (boot µs, timestamp ms). */
static bool get_int(const cJSON *o, const char *name, int64_t *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 0 ||
	    v->valuedouble > 4.6e18 || v->valuedouble != floor(v->valuedouble)) {
		return false;
	}
	*out = (int64_t)v->valuedouble;
	return true;
}

static const char *get_string(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int malformed(struct presence *p, char *errstr, size_t errstr_size, const char *key,
		     const char *why)
{
	snprintf(errstr, errstr_size, "key '%.200s': %s", key, why);
	p->malformed++;
	return PRES_MALFORMED;
}

/* The fields every non-null value has. Returns why not, or NULL. */
static const char *check_common(const cJSON *o, const char *broker, const char **state,
				int64_t *boot, int64_t *timestamp)
{
	const char *b;

	if (!cJSON_IsObject(o)) {
		return "the value is not a JSON object";
	}
	b = get_string(o, MQK_PRESENCE_BROKER);
	if (b == NULL || strcmp(b, broker) != 0) {
		return "\"" MQK_PRESENCE_BROKER "\" is not the broker of the key";
	}
	*state = get_string(o, MQK_PRESENCE_STATE);
	if (*state == NULL) {
		return "no \"" MQK_PRESENCE_STATE "\" string";
	}
	if (!get_int(o, MQK_PRESENCE_BOOT, boot)) {
		return "\"" MQK_PRESENCE_BOOT "\" is not a whole number";
	}
	if (!get_int(o, MQK_PRESENCE_TIMESTAMP, timestamp)) {
		return "\"" MQK_PRESENCE_TIMESTAMP "\" is not a whole number";
	}
	return NULL;
}

/* A tombstone: client c (NULL: not known) left broker. */
static int client_left(struct presence *p, struct pres_client *c, const char *broker)
{
	p->seq++;
	if (c == NULL) {
		return PRES_CLIENT;
	}
	c->version = p->seq;
	for (struct pres_entry **e = &c->entries; *e; e = &(*e)->next) {
		if (strcmp((*e)->broker->id, broker) == 0) {
			struct pres_entry *gone = *e;
			*e = gone->next;
			free(gone);
			break;
		}
	}
	if (c->entries == NULL) {
		map__remove(&p->clients, &c->node);
		free_client(c);
	}
	return PRES_CLIENT;
}

/*
 * Checks a client record's JSON value against its key (broker, client_id). Returns NULL
 * with *boot and *ts, or what is wrong (static text).
 */
static const char *check_client_record(const void *value, size_t value_len, const char *broker,
				       const char *client_id, int64_t *boot, int64_t *ts)
{
	const char *state, *why;
	cJSON *o = cJSON_ParseWithLength(value, value_len);

	if (o == NULL) {
		return "the value is not JSON";
	}
	why = check_common(o, broker, &state, boot, ts);
	if (why == NULL && strcmp(state, MQK_PRESENCE_CONNECTED) != 0) {
		why = "a client record's \"" MQK_PRESENCE_STATE
		      "\" is not \"" MQK_PRESENCE_CONNECTED "\"";
	}
	if (why == NULL) {
		const char *id = get_string(o, MQK_PRESENCE_CLIENT_ID);
		if (id == NULL || strcmp(id, client_id) != 0) {
			why = "\"" MQK_PRESENCE_CLIENT_ID "\" is not the client of the key";
		}
	}
	cJSON_Delete(o); /* state and id pointed into it */
	return why;
}

/*
 * Client c (NULL: new, client_id) is connected to broker b since boot: its entry for b,
 * made or updated. Returns PRES_CLIENT, PRES_BROKER when b started again, or PRES_OOM
 * (the table is then as it was).
 */
static int client_connected(struct presence *p, struct pres_client *c, const char *client_id,
			    struct pres_broker *b, int64_t boot, int64_t ts)
{
	bool new_client = c == NULL;

	if (new_client) {
		c = calloc(1, sizeof(*c));
		if (c == NULL || (c->id = strdup(client_id)) == NULL) {
			free(c);
			return PRES_OOM;
		}
		c->node.key = c->id;
	}
	struct pres_entry *e = c->entries;
	while (e && e->broker != b) {
		e = e->next;
	}
	if (e == NULL) {
		e = calloc(1, sizeof(*e));
		if (e == NULL || (new_client && map__add(&p->clients, &c->node) != 0)) {
			free(e);
			if (new_client) {
				free_client(c);
			}
			return PRES_OOM;
		}
		e->broker = b;
		e->next = c->entries;
		c->entries = e;
	}
	e->boot = boot;
	e->timestamp = ts;
	e->seq = c->version = ++p->seq;
	if (boot > b->boot) { /* the broker started again; its "up" is still on its way */
		b->boot = boot;
		b->down = false;
		return PRES_BROKER; /* its other clients' records are of its previous run now */
	}
	return PRES_CLIENT;
}

/* A client record: key "<broker>/<client id>" (slash in key), value JSON or NULL. */
static int apply_client(struct presence *p, const char *key, const char *slash, const void *value,
			size_t value_len, char *errstr, size_t errstr_size)
{
	size_t blen = (size_t)(slash - key);
	const char *client_id = slash + 1;
	char broker[65];
	const char *why;
	int64_t boot, ts;

	if (!presence__valid_broker_id(key, blen)) {
		return malformed(p, errstr, errstr_size, key,
				 "the broker id is not 1..64 of "
				 "[A-Za-z0-9._-]");
	}
	if (*client_id == '\0') {
		return malformed(p, errstr, errstr_size, key, "the client id is empty");
	}
	memcpy(broker, key, blen);
	broker[blen] = '\0';

	struct pres_client *c = get_client(p, client_id);
	if (value == NULL) {
		return client_left(p, c, broker);
	}
	why = check_client_record(value, value_len, broker, client_id, &boot, &ts);
	if (why != NULL) {
		return malformed(p, errstr, errstr_size, key, why);
	}
	struct pres_broker *b = get_broker(p, broker, true);
	if (b == NULL) {
		return PRES_OOM;
	}
	return client_connected(p, c, client_id, b, boot, ts);
}

static int apply_broker(struct presence *p, const char *key, const void *value, size_t value_len,
			char *errstr, size_t errstr_size)
{
	const char *state, *why;
	int64_t boot, ts;
	bool down = false;

	if (!presence__valid_broker_id(key, strlen(key))) {
		return malformed(p, errstr, errstr_size, key,
				 "the broker id is not 1..64 of [A-Za-z0-9._-]");
	}
	if (value == NULL) {
		return malformed(p, errstr, errstr_size, key, "a broker record with a null value");
	}
	cJSON *o = cJSON_ParseWithLength(value, value_len);
	if (o == NULL) {
		return malformed(p, errstr, errstr_size, key, "the value is not JSON");
	}
	why = check_common(o, key, &state, &boot, &ts);
	if (why == NULL) {
		if (strcmp(state, MQK_PRESENCE_DOWN) == 0) {
			down = true;
		} else if (strcmp(state, MQK_PRESENCE_UP) != 0) {
			why = "a broker record's \"" MQK_PRESENCE_STATE
			      "\" is not \"" MQK_PRESENCE_UP "\" or \"" MQK_PRESENCE_DOWN "\"";
		}
	}
	cJSON_Delete(o);
	if (why != NULL) {
		return malformed(p, errstr, errstr_size, key, why);
	}
	struct pres_broker *b = get_broker(p, key, true);
	if (b == NULL) {
		return PRES_OOM;
	}
	p->seq++;
	if (boot >= b->boot) { /* an older boot: a late record of a previous run */
		b->boot = boot;
		b->down = down;
		b->timestamp = ts;
	}
	return PRES_BROKER;
}

int presence__apply(struct presence *p, const char *key, const void *value, size_t value_len,
		    char *errstr, size_t errstr_size)
{
	const char *slash = strchr(key, '/');

	if (*key == '\0') {
		return malformed(p, errstr, errstr_size, key, "an empty key");
	}
	return slash ? apply_client(p, key, slash, value, value_len, errstr, errstr_size)
		     : apply_broker(p, key, value, value_len, errstr, errstr_size);
}

static bool current(const struct pres_entry *e)
{
	return e->boot == e->broker->boot && !e->broker->down;
}

struct pres_broker *presence__where(const struct presence *p, const char *client_id,
				    const struct pres_return *ret)
{
	const struct pres_client *c = get_client(p, client_id);
	const struct pres_entry *best = NULL;

	if (c == NULL) {
		return NULL;
	}
	for (const struct pres_entry *e = c->entries; e; e = e->next) {
		if (current(e) && (best == NULL || e->timestamp > best->timestamp ||
				   (e->timestamp == best->timestamp && e->seq > best->seq))) {
			best = e;
		}
	}
	if (best == NULL) {
		return NULL;
	}
	if (ret != NULL && ret->by != NULL && strcmp(best->broker->id, ret->by) == 0 &&
	    c->version <= ret->seq && (ret->timestamp < 0 || best->timestamp <= ret->timestamp)) {
		return NULL; /* it was just there: wait for news of the client */
	}
	return best->broker;
}

size_t presence__connected(const struct presence *p)
{
	size_t n = 0;

	for (size_t i = 0; i < p->clients.cap; i++) {
		for (struct map_node *m = p->clients.buckets[i]; m; m = m->next) {
			n += presence__where(p, m->key, NULL) != NULL;
		}
	}
	return n;
}

size_t presence__clients(const struct presence *p)
{
	return p->clients.count;
}

void presence__free(struct presence *p)
{
	for (size_t i = 0; i < p->clients.cap; i++) {
		struct map_node *m = p->clients.buckets[i];
		while (m) {
			struct map_node *next = m->next;
			free_client(container_of(m, struct pres_client, node));
			m = next;
		}
	}
	while (p->broker_list) {
		struct pres_broker *next = p->broker_list->next;
		free(p->broker_list->id);
		free(p->broker_list);
		p->broker_list = next;
	}
	map__free(&p->clients);
	map__free(&p->brokers);
	memset(p, 0, sizeof(*p));
}
