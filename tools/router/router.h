/*
 * router.h - mqk-router's private header.
 *
 * The flow (docs/commands.md, targeted mode): kafka.c reads two topics. Presence records
 * go to the table (presence.c), which answers "which broker holds client C now". Command
 * records go to the engine (route.c), which produces each one (send.c), unchanged, to the
 * topic of the broker holding its target, or parks it in the hold queue (held.c) until a
 * presence record shows the target somewhere or --hold runs out (then a dead letter). A
 * command's offset is stored (send.c) only when Kafka acknowledged what was produced for
 * it, in read order per partition (window.c). main.c parses the options, runs the loop and
 * prints the summary; log.c writes the diagnostics.
 *
 * Everything runs on the main thread: librdkafka's own threads only write a byte to a pipe
 * when one of the three queues (presence consumer, commands consumer, producer) has
 * something, and the loop serves them with non-blocking calls.
 *
 * presence.c, held.c, window.c and map.c do not call librdkafka: they are the library
 * mqk_router_core, which the unit tests (tests/unit/test_router.c) link as well.
 */
#ifndef MQK_ROUTER_H
#define MQK_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ROUTER_NAME "mqk-router"

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* ---- map.c: a string-keyed hash table of nodes embedded in the values ---- */

struct map_node {
	struct map_node *next;
	uint64_t hash;
	const char *key; /* owned by the value the node is embedded in */
};

struct map {
	struct map_node **buckets; /* owned */
	size_t count, cap;
};

/* The node whose key is key, or NULL. */
struct map_node *map__get(const struct map *m, const char *key);
/* Adds node (node->key set, not in the map yet). Returns 0, or -1 when out of memory. */
int map__add(struct map *m, struct map_node *node);
/* Takes node (which is in the map) out. The value is the caller's to free. */
void map__remove(struct map *m, struct map_node *node);
/* Frees the table itself; the values are the caller's. */
void map__free(struct map *m);

/* ---- presence.c: where every client is connected, from the presence records ---- */

struct pres_broker {
	struct map_node node;
	char *id;          /* owned */
	int64_t boot;      /* the run we know of (its "up" record, or its clients' records) */
	int64_t timestamp; /* of its latest broker record, 0 when none came */
	bool down;         /* its latest record for that boot is "down" */
	uint64_t routed;   /* commands routed to it (route.c counts them) */
	struct pres_broker *next; /* all brokers, first seen first */
};

struct pres_entry {
	struct pres_broker *broker;
	int64_t boot, timestamp;
	uint64_t seq; /* presence records applied before and with it: the newest wins ties */
	struct pres_entry *next;
};

struct pres_client {
	struct map_node node;
	char *id;                   /* owned */
	struct pres_entry *entries; /* one per broker with a "connected" record; owned */
	uint64_t version;           /* seq of the latest record of this client */
};

struct presence {
	struct map brokers, clients;
	struct pres_broker *broker_list, *broker_last;
	uint64_t seq;       /* records applied */
	uint64_t malformed; /* records refused */
};

enum pres_kind {
	PRES_MALFORMED = -1,
	PRES_OOM = -2,
	PRES_CLIENT = 1, /* "<broker>/<client>": the client's location may have changed */
	PRES_BROKER = 2, /* "<broker>", or a client record of a new boot of its broker: every
			    client's location may have changed */
};

/*
 * Applies one presence record: key (NUL-terminated; the caller refuses keys with a NUL in
 * them) and value (value_len bytes, not NUL-terminated; NULL for a tombstone). Returns
 * PRES_CLIENT or PRES_BROKER, or PRES_MALFORMED (counted in p->malformed, the table
 * unchanged) with why in errstr, or PRES_OOM.
 */
int presence__apply(struct presence *p, const char *key, const void *value, size_t value_len,
		    char *errstr, size_t errstr_size);

/* What a returned command brings to the look-up (NULL for an ordinary command). */
struct pres_return {
	const char *by;    /* the broker that sent it back (header mqk.broker) */
	int64_t timestamp; /* when it was sent back (its CreateTime, ms), or -1 */
	uint64_t seq;      /* p->seq when the router read it */
};

/*
 * The broker client_id is connected to now, or NULL when none: among the brokers whose
 * latest record of "<broker>/<client_id>" is "connected" with the broker's current boot,
 * the broker not being down, the newest timestamp (then the latest record) wins. With
 * ret, the broker that sent the command back does not count as "here" until a newer
 * record of the client came (after ret->seq, or stamped after ret->timestamp): the
 * command waits instead of going round again.
 */
struct pres_broker *presence__where(const struct presence *p, const char *client_id,
				    const struct pres_return *ret);
/* How many clients presence__where places somewhere (a walk over every client). */
size_t presence__connected(const struct presence *p);
/* How many clients are in the table (connected somewhere or not). */
size_t presence__clients(const struct presence *p);
void presence__free(struct presence *p);

/* Whether s is 1..64 of [A-Za-z0-9._-], as the plugin's broker_id. */
bool presence__valid_broker_id(const char *s, size_t len);

/* ---- held.c: commands waiting for their target to show up ---- */

struct held_device;

/* Embedded in what is held (route.c's struct command). */
struct held_item {
	struct held_item *older, *newer;       /* every item, in arrival order */
	struct held_item *dev_prev, *dev_next; /* the items of its target, in arrival order */
	struct held_device *dev;
	uint64_t deadline_us;
};

struct held_device {
	struct map_node node;
	char *target; /* owned */
	struct held_item *head, *tail;
	size_t count;
};

struct held {
	struct map devices;
	struct held_item *oldest, *newest;
	size_t count;
};

/*
 * Appends it behind every item held so far, and behind the items of its target.
 * deadline_us must not be earlier than the newest item's (one --hold for all: arrival
 * order is deadline order). Returns 0, or -1 when out of memory (nothing held).
 */
int held__add(struct held *h, struct held_item *it, const char *target, uint64_t deadline_us);
/* Takes it out, wherever it is; frees its device when it was the last of it. */
void held__remove(struct held *h, struct held_item *it);
/* The oldest item held for target, or NULL. */
struct held_item *held__head(const struct held *h, const char *target);
/* The oldest item held, or NULL. */
struct held_item *held__oldest(const struct held *h);
/* The target of an item held. */
const char *held__target(const struct held_item *it);
/*
 * A copy of the targets that have items held, in the order of their oldest item (the
 * caller frees each string and the array); NULL with *n = 0 when none or out of memory.
 */
char **held__targets(const struct held *h, size_t *n);
/* Moves every deadline earlier than min_deadline_us up to it (order is kept). */
void held__defer(struct held *h, uint64_t min_deadline_us);
void held__free(struct held *h); /* the table; the items are the caller's */

/* ---- window.c: offsets stored in read order, per partition ---- */

struct window_slot {
	int64_t offset;
	bool settled;
};

struct window {
	uint64_t epoch; /* changes when the partition is (re)assigned or revoked */
	bool assigned;
	struct window_slot *ring; /* owned; cap a power of two */
	uint64_t head, tail;      /* slots [head, tail) are the records not stored yet */
	size_t cap;
};

struct windows {
	struct window *w; /* indexed by partition; owned */
	int32_t n;
};

/* The window of partition (created empty when new), or NULL when out of memory. */
struct window *windows__get(struct windows *ws, int32_t partition);
void windows__free(struct windows *ws);
/* Appends a record read at offset. Returns 0 with its slot in *slot, or -1 (out of memory). */
int window__push(struct window *w, int64_t offset, uint64_t *slot);
/*
 * Marks the record of slot settled (slot must be in the window). Returns the offset of
 * the last record of the settled run that now leaves the window (store offset + 1), or
 * -1 when an earlier record is still pending.
 */
int64_t window__settle(struct window *w, uint64_t slot);
/* Forgets every record (a revoke or a new assignment): epoch + 1. */
void window__reset(struct window *w);
/* Records read and not stored yet. */
size_t window__pending(const struct window *w);

/* ====================================================================================
 * The Kafka side: not in mqk_router_core.
 * ==================================================================================== */

#include <signal.h>

#include <librdkafka/rdkafka.h>

#include "cli_kafka.h"

/* Why a command is a dead letter (header mqk.reason). */
enum reason {
	REASON_NO_TARGET,     /* null or empty key, or no target header */
	REASON_BAD_TARGET,    /* a target the plugin cannot take: a NUL in it, 1024 bytes or more */
	REASON_NOT_CONNECTED, /* connected nowhere for --hold seconds */
	REASON_ROUTER_FULL,   /* the oldest held when --max-held were held */
	REASON_BAD_TOPIC,     /* the broker's topic is not a valid name, or Kafka refused it */
	REASON_N
};
extern const char *const router__reasons[REASON_N];

/* main.c: the command line. */
struct settings {
	const char *bootstrap;
	const char *presence_topic;
	const char *commands_topic;
	const char *group;
	const char *broker_topic; /* a template with {broker} */
	const char *dead_letter;
	const char *target_header; /* --target header:NAME, else NULL (the key) */
	double hold_s, flush_timeout_s;
	size_t max_held;
	struct cli_props props; /* -X name=value */
	int verbose;
	bool quiet;
};

struct counters {
	uint64_t records_read; /* command records read */
	uint64_t returns_read; /* of which carried mqk.broker (sent back by a broker) */
	uint64_t routed;       /* acknowledged by Kafka in a broker's topic */
	uint64_t held;         /* commands that had to wait (counted once each) */
	uint64_t dead[REASON_N];
	uint64_t dead_lettered; /* acknowledged by Kafka in the dead letter topic */
	uint64_t presence_records;
	uint64_t retries;  /* produce attempts repeated (Kafka refused or timed out) */
	uint64_t released; /* held or unsettled commands given up because their partition was
			      revoked (the next owner reads them again) */
};

enum cmd_state {
	CMD_NEW,
	CMD_HELD,    /* in the hold queue */
	CMD_ROUTING, /* produced to a broker's topic, waiting for its delivery report */
	CMD_DEAD,    /* produced to the dead letter topic, waiting for its delivery report */
};

/*
 * One command record, from its read to its settling: a copy of what it is made of (the
 * consumer's message is destroyed at once, so that a command held for --hold seconds does
 * not keep librdkafka's whole fetch buffer alive).
 */
struct command {
	struct held_item hold;
	void *key, *value; /* in data; NULL when null */
	size_t key_len, value_len;
	rd_kafka_headers_t *hdrs; /* owned; NULL when none */
	int64_t timestamp;        /* -1 when none */
	int64_t offset;
	char *target;      /* owned; NULL when it has none */
	char *returned_by; /* owned: header mqk.broker, or NULL */
	struct pres_return ret;
	int32_t partition;
	uint64_t epoch, slot; /* its place in its partition's window */
	enum cmd_state state;
	struct pres_broker *broker; /* CMD_ROUTING: where to */
	enum reason reason;         /* CMD_DEAD: why */
	uint64_t retry_at;          /* on the retry list: not before (mono µs) */
	struct command *next;       /* the retry list */
	char data[];                /* key and value */
};

struct ratelimit {
	uint64_t last_us;
	uint64_t suppressed;
};

struct router {
	const struct settings *set;
	volatile sig_atomic_t *stopping;
	rd_kafka_t *presence_rk, *commands_rk, *producer;
	rd_kafka_queue_t *queues[3]; /* theirs, for the wake-ups: owned references */
	int wake[2]; /* librdkafka writes a byte to wake[1] when a queue has something */

	struct presence presence;
	struct held held;
	struct windows windows;
	struct counters c;

	/* The presence topic: read to its end once before commands are routed. */
	int32_t presence_parts; /* partitions assigned */
	bool *eof;              /* per initial partition: its end was reached once */
	int32_t eof_parts;      /* the initial partitions (eof's size) */
	int32_t eof_left;
	bool caught_up, slow_said;
	uint64_t started_us, caught_up_us, next_metadata_us;

	struct command *retry_head, *retry_tail; /* to produce again, in order */
	size_t in_flight;                        /* produced, no delivery report yet */
	size_t unflushed;                        /* in flight after the final flush */
	bool fatal;                              /* a fatal error: the loop ends, exit 1 */

	struct ratelimit rl_presence, rl_produce, rl_consume;
};

/* log.c: diagnostics. */
void router__log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Logs at most one line every 10 s per rl, saying how many were left out. */
void router__logrl(struct ratelimit *rl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* kafka.c: the three handles. */
/* Creates the producer and both consumers. Returns 0, or -1 with errstr. */
int kafka__open(struct router *r, char *errstr, size_t errstr_size);
/* Serves what the three queues hold, without blocking. Returns true when more is left. */
bool kafka__serve(struct router *r);
/* Waits up to timeout_ms for any of the three queues. */
void kafka__wait(struct router *r, int timeout_ms);
/* Looks for partitions added to the presence topic, now and then. */
void kafka__refresh_presence(struct router *r, uint64_t now);
/* Stop: waits for what is in flight (--flush-timeout), commits, closes, frees. Call
 * route__drop_all first. */
void kafka__close(struct router *r);

/* send.c: what the engine writes. */
/* Stores offset + 1 of partition for the next commit. */
void send__store(struct router *r, int32_t partition, int64_t offset);
/*
 * Produces cmd's record to topic with hdrs (taken on success, else the caller's), the
 * command as its opaque. Retries while librdkafka's queue is full (serving delivery
 * reports meanwhile), unless stopping.
 */
rd_kafka_resp_err_t send__produce(struct router *r, struct command *cmd, const char *topic,
				  rd_kafka_headers_t *hdrs);

/* route.c: the engine. */
/* A command record read (the caller keeps rkm). */
void route__command(struct router *r, rd_kafka_message_t *rkm);
/* A presence record read (the caller keeps rkm). */
void route__presence(struct router *r, const rd_kafka_message_t *rkm);
/* The presence topic was read to its end: route what waited for that. */
void route__caught_up(struct router *r);
/* The delivery report of cmd's record. */
void route__delivered(struct router *r, struct command *cmd, rd_kafka_resp_err_t err);
/* Retries due, holds expired. */
void route__tick(struct router *r, uint64_t now);
/* When route__tick has something to do next (mono µs), or UINT64_MAX. */
uint64_t route__next_due(const struct router *r);
/* Partitions of the commands topic assigned to, or taken from, this router. */
void route__assigned(struct router *r, const rd_kafka_topic_partition_list_t *parts);
void route__revoked(struct router *r, const rd_kafka_topic_partition_list_t *parts);
/* At the end: frees every command held or waiting for a retry (not settled). */
size_t route__drop_all(struct router *r);

#endif
