/*
 * hybrid.h - mqk-hybrid's private header.
 *
 * The flow: mqtt.c (a libmosquitto subscriber to one broker) copies every message it
 * receives into the queue (queue.c); main.c decides when the queue is emptied (at once,
 * or every --poll-sleep-ms); kafka.c produces what was queued and counts the delivery
 * reports. Everything runs on the main thread (see the top of main.c).
 */
#ifndef MQK_HYBRID_H
#define MQK_HYBRID_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cli.h"
#include "cli_kafka.h"

#define HYBRID_NAME "mqk-hybrid"
#define MAX_FILTERS 32

enum key_mode {
	KEY_TOPIC, /* the MQTT topic: a device's messages stay in one partition, in order */
	KEY_NONE,
};

/* The command line. The strings point into argv. */
struct settings {
	const char *host;
	int port;
	const char *filters[MAX_FILTERS];
	size_t n_filters;
	int qos;
	const char *client_id; /* NULL: mqk-hybrid-<pid> */
	const char *bootstrap;
	const char *topic;
	struct cli_props props; /* -X name=value, in order */
	enum key_mode key;
	int poll_sleep_ms;
	double duration; /* 0: until SIGINT/SIGTERM */
};

/*
 * What the summary reports. Every message received ends in exactly one of delivered,
 * failed and dropped once the producer was flushed (main.c settles the rest).
 */
struct counts {
	uint64_t received;  /* MQTT messages received (on_message) */
	uint64_t produced;  /* handed to librdkafka (rd_kafka_producev() succeeded) */
	uint64_t delivered; /* delivery reports without error */
	uint64_t failed;    /* delivery reports with an error, and produce errors */
	uint64_t dropped;   /* received and never produced */
	uint64_t connects, disconnects;
};

/* ---- queue.c: received messages waiting to be produced, oldest first ---- */

/*
 * One received message. The queue owns the node and its payload; kafka__produce() hands
 * the payload over to librdkafka (RD_KAFKA_MSG_F_FREE: librdkafka frees it) and sets
 * payload to NULL, then frees the node with qmsg__free().
 */
struct qmsg {
	struct qmsg *next;
	void *payload; /* NULL when len is 0, or once librdkafka owns it */
	size_t len;
	char topic[]; /* NUL-terminated */
};

struct queue {
	struct qmsg *head, *tail;
	size_t n;
};

/* Appends a copy of topic and payload. Returns 0, or -1 when out of memory. */
int queue__push(struct queue *q, const char *topic, const void *payload, size_t len);
/* Removes the oldest message and returns it (the caller owns it now), or NULL. */
struct qmsg *queue__pop(struct queue *q);
/* Puts m, just popped, back at the head: the next pop returns it again. */
void queue__unpop(struct queue *q, struct qmsg *m);
/* Frees every queued message; returns how many there were. */
size_t queue__clear(struct queue *q);
/* Frees m and its payload (if it still owns one). */
void qmsg__free(struct qmsg *m);

/* ---- mqtt.c: the subscriber ---- */

struct mqtt;

/*
 * Creates the client and starts the first (asynchronous) connection attempt; a broker
 * that cannot be reached is retried by mqtt__poll(). Messages go into q, the counters
 * into c; set, q and c must outlive the client. Returns NULL with errstr filled on an
 * error that retrying cannot fix (out of memory, a bad host name).
 */
struct mqtt *mqtt__open(const struct settings *set, struct queue *q, struct counts *c, char *errstr,
			size_t errstr_size);
/*
 * Serves the connection for up to timeout_ms: reads (received messages are queued),
 * writes, keepalive, and reconnection attempts when it is down. Returns how many
 * messages were received, or -1 on a poll(2) error.
 */
int mqtt__poll(struct mqtt *m, int timeout_ms);
/* Disconnects (counted as a disconnect when connected) and frees the client. NULL is fine. */
void mqtt__close(struct mqtt *m);

/* ---- kafka.c: the producer ---- */

struct kafka;

/*
 * Creates the producer: our defaults, then every -X in order. Returns NULL with errstr
 * filled (the -X or librdkafka's own text) when the configuration is rejected.
 */
struct kafka *kafka__open(const struct settings *set, struct counts *c, char *errstr,
			  size_t errstr_size);
/*
 * Produces every message of q, oldest first; a message librdkafka refuses is counted as
 * failed and freed. On QUEUE_FULL it waits in rd_kafka_poll() and tries again: it
 * blocks the loop rather than drop. It gives up, leaving the rest queued, when
 * deadline_us (cli_mono_us; 0: none) passes or *interrupt (NULL: none) becomes true.
 * Returns how many were handed to librdkafka.
 */
size_t kafka__produce(struct kafka *k, struct queue *q, uint64_t deadline_us,
		      const volatile sig_atomic_t *interrupt);
/* Serves delivery reports and errors without blocking. */
void kafka__poll(struct kafka *k);
/*
 * Waits up to timeout_ms for every message produced to be reported. Returns how many
 * produced messages have no delivery report yet.
 */
uint64_t kafka__flush(struct kafka *k, int timeout_ms);
/* Destroys the producer; nothing is counted any more. NULL is fine. */
void kafka__close(struct kafka *k);

#endif
