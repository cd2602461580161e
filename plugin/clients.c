/*
 * clients.c - which clients are connected to this broker.
 *
 * Mosquitto 2.0 has no CONNECT event. MOSQ_EVT_BASIC_AUTH fires for every CONNECT
 * (the client id is already set) before mosquitto decides whether to accept it, and
 * MOSQ_EVT_DISCONNECT fires when a connection ends, refused ones included (with the id
 * already freed on 2.0.11; 2.0.13 and later keep it). docs/commands-facts.md has the
 * measurements this table relies on, docs/mosquitto-2.0.21.md their check on 2.0.21
 * (the same, except that 2.0.21 reuses a freed struct for the next client at once: the
 * table is safe because a struct's DISCONNECT always comes before it is freed):
 *
 * - A connection is known by its struct mosquitto pointer (never dereferenced here),
 *   not by its id: on a takeover, and when a persistent session comes back, DISCONNECT
 *   fires for the old struct after BASIC_AUTH fired for the new one, with the same id;
 *   a persistent session raises DISCONNECT twice (going offline, and when its old
 *   struct is dropped at the return), the second time for a pointer already gone here.
 * - A connection counts from the TICK after its BASIC_AUTH: a refused CONNECT raises
 *   its DISCONNECT within the same loop iteration, before that TICK, so it never counts.
 * - An id is delivered to while one of its connections counts. For presence (came,
 *   gone) it stays connected through a takeover: the new connection, not yet counted,
 *   keeps it from being announced gone between the old one's DISCONNECT and the TICK.
 *
 * Two chained hash tables: connections by pointer, ids by name (each id entry owns its
 * string; connections point to it). Everything here runs on mosquitto's thread.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mqk.h"

struct id_entry {
	struct id_entry *next;
	uint32_t hash;
	int connected;  /* confirmed connections */
	int refs;       /* connections, confirmed or not */
	bool announced; /* came() was called, gone() not since: what presence says */
	char id[];
};

struct conn {
	struct conn *next;    /* hash chain */
	const void *client;   /* NULL once disconnected while still pending */
	struct id_entry *ide; /* its id */
	bool confirmed;
};

struct mqk_clients {
	struct conn **conns; /* by pointer */
	size_t conn_buckets, conn_count;
	struct id_entry **ids; /* by id */
	size_t id_buckets, id_count;
	size_t connected_ids;  /* ids announced */
	struct conn **pending; /* connections since the last TICK */
	size_t pending_count, pending_size;
};

#define INITIAL_BUCKETS 1024

static uint32_t hash_str(const char *s)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (; *s; s++) {
		h = (h ^ (uint8_t)*s) * 16777619u;
	}
	return h;
}

static size_t hash_ptr(const void *p, size_t buckets)
{
	uint64_t v = (uint64_t)(uintptr_t)p;
	return (size_t)((v * 0x9E3779B97F4A7C15ull) >> 32) & (buckets - 1);
}

struct mqk_clients *clients__new(void)
{
	struct mqk_clients *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		return NULL;
	}
	c->conn_buckets = c->id_buckets = INITIAL_BUCKETS;
	c->conns = calloc(c->conn_buckets, sizeof(*c->conns));
	c->ids = calloc(c->id_buckets, sizeof(*c->ids));
	if (c->conns == NULL || c->ids == NULL) {
		clients__free(c);
		return NULL;
	}
	return c;
}

void clients__free(struct mqk_clients *c)
{
	if (c == NULL) {
		return;
	}
	/* Before the table: a pending connection still in it is freed there. */
	for (size_t i = 0; i < c->pending_count; i++) {
		if (c->pending[i]->client == NULL) {
			free(c->pending[i]); /* disconnected, so no longer in the table */
		}
	}
	for (size_t b = 0; c->conns && b < c->conn_buckets; b++) {
		for (struct conn *x = c->conns[b], *next; x; x = next) {
			next = x->next;
			free(x);
		}
	}
	for (size_t b = 0; c->ids && b < c->id_buckets; b++) {
		for (struct id_entry *e = c->ids[b], *next; e; e = next) {
			next = e->next;
			free(e);
		}
	}
	free(c->conns);
	free(c->ids);
	free(c->pending);
	free(c);
}

/* Doubles a table when it holds more entries than buckets. */
static void grow_ids(struct mqk_clients *c)
{
	size_t n = c->id_buckets * 2;
	struct id_entry **ids = calloc(n, sizeof(*ids));

	if (ids == NULL) {
		return; /* longer chains, still correct */
	}
	for (size_t b = 0; b < c->id_buckets; b++) {
		for (struct id_entry *e = c->ids[b], *next; e; e = next) {
			next = e->next;
			e->next = ids[e->hash & (n - 1)];
			ids[e->hash & (n - 1)] = e;
		}
	}
	free(c->ids);
	c->ids = ids;
	c->id_buckets = n;
}

static void grow_conns(struct mqk_clients *c)
{
	size_t n = c->conn_buckets * 2;
	struct conn **conns = calloc(n, sizeof(*conns));

	if (conns == NULL) {
		return;
	}
	for (size_t b = 0; b < c->conn_buckets; b++) {
		for (struct conn *x = c->conns[b], *next; x; x = next) {
			next = x->next;
			size_t i = hash_ptr(x->client, n);
			x->next = conns[i];
			conns[i] = x;
		}
	}
	free(c->conns);
	c->conns = conns;
	c->conn_buckets = n;
}

static struct id_entry *find_id(const struct mqk_clients *c, const char *id, uint32_t hash)
{
	for (struct id_entry *e = c->ids[hash & (c->id_buckets - 1)]; e; e = e->next) {
		if (e->hash == hash && !strcmp(e->id, id)) {
			return e;
		}
	}
	return NULL;
}

/* Drops e when no connection refers to it any more. */
static void unref_id(struct mqk_clients *c, struct id_entry *e)
{
	if (--e->refs > 0) {
		return;
	}
	struct id_entry **pp = &c->ids[e->hash & (c->id_buckets - 1)];
	while (*pp != e) {
		pp = &(*pp)->next;
	}
	*pp = e->next;
	c->id_count--;
	free(e);
}

/* Removes and returns the connection of client, or NULL. */
static struct conn *take_conn(struct mqk_clients *c, const void *client)
{
	struct conn **pp = &c->conns[hash_ptr(client, c->conn_buckets)];

	for (; *pp; pp = &(*pp)->next) {
		if ((*pp)->client == client) {
			struct conn *x = *pp;
			*pp = x->next;
			c->conn_count--;
			return x;
		}
	}
	return NULL;
}

int clients__connecting(struct mqk_clients *c, const void *client, const char *id)
{
	uint32_t hash = hash_str(id);
	struct id_entry *e = find_id(c, id, hash);
	struct conn *x;

	/* A struct that authenticates twice is not in 2.0.11; be safe if it ever is. */
	clients__disconnected(c, client, NULL, NULL);
	e = find_id(c, id, hash); /* that may have dropped it */
	if (c->pending_count == c->pending_size) {
		size_t n = c->pending_size ? c->pending_size * 2 : 64;
		struct conn **p = realloc(c->pending, n * sizeof(*p));
		if (p == NULL) {
			return -1;
		}
		c->pending = p;
		c->pending_size = n;
	}
	x = calloc(1, sizeof(*x));
	if (x == NULL) {
		return -1;
	}
	if (e == NULL) {
		size_t len = strlen(id);
		e = calloc(1, sizeof(*e) + len + 1);
		if (e == NULL) {
			free(x);
			return -1;
		}
		e->hash = hash;
		memcpy(e->id, id, len + 1);
		e->next = c->ids[hash & (c->id_buckets - 1)];
		c->ids[hash & (c->id_buckets - 1)] = e;
		if (++c->id_count > c->id_buckets) {
			grow_ids(c);
		}
	}
	e->refs++;
	x->client = client;
	x->ide = e;
	size_t i = hash_ptr(client, c->conn_buckets);
	x->next = c->conns[i];
	c->conns[i] = x;
	if (++c->conn_count > c->conn_buckets) {
		grow_conns(c);
	}
	c->pending[c->pending_count++] = x;
	return 0;
}

void clients__disconnected(struct mqk_clients *c, const void *client,
			   void (*gone)(void *arg, const char *id), void *arg)
{
	struct conn *x = take_conn(c, client);

	if (x == NULL) {
		return; /* never seen, or gone already (a persistent session's second DISCONNECT) */
	}
	struct id_entry *e = x->ide;
	if (x->confirmed) {
		e->connected--;
		free(x);
	} else {
		x->client = NULL; /* still in the pending list: the TICK frees it */
	}
	/* Gone for the world only when no other connection of the id is left or coming. */
	if (e->announced && e->connected == 0 && e->refs == 1) {
		e->announced = false;
		c->connected_ids--;
		if (gone != NULL) {
			gone(arg, e->id);
		}
	}
	unref_id(c, e);
}

void clients__tick(struct mqk_clients *c, void (*came)(void *arg, const char *id), void *arg)
{
	for (size_t i = 0; i < c->pending_count; i++) {
		struct conn *x = c->pending[i];
		if (x->client == NULL) {
			free(x); /* refused, or gone before it counted */
			continue;
		}
		x->confirmed = true;
		x->ide->connected++;
		if (!x->ide->announced) {
			x->ide->announced = true;
			c->connected_ids++;
			if (came != NULL) {
				came(arg, x->ide->id);
			}
		}
	}
	c->pending_count = 0;
}

bool clients__is_connected(const struct mqk_clients *c, const char *id)
{
	const struct id_entry *e = find_id(c, id, hash_str(id));
	return e != NULL && e->connected > 0;
}

size_t clients__count(const struct mqk_clients *c)
{
	return c->connected_ids;
}
