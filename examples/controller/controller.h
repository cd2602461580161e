/*
 * controller.h - mqk-controller's private header.
 *
 * The flow: a source (kafka.c: a consumer group member; mqtt.c: a subscriber to one or
 * more brokers) hands every message to report__message() (report.c), which decodes the
 * mqk-loadgen payload (include/mqk_payload.h) and counts it per device (seqset.c), per
 * (broker, route, boot) from the plugin's headers, and into a latency histogram
 * (hist.c). commands.c sends control commands and pairs the devices' answers with them,
 * counting answers that come twice or from another device than the command's.
 * report.c prints the live line and the final JSON report, saves the mergeable detail
 * and merges several instances' saved reports.
 *
 * Everything runs on the main thread: the sources are polled from one loop (main.c).
 */
#ifndef MQK_CONTROLLER_H
#define MQK_CONTROLLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "cli_kafka.h"
#include "expand_id.h"

/* ---- seqset.c: a set of sequence numbers as sorted, disjoint, inclusive ranges ---- */

struct seqrange {
	uint64_t lo, hi;
};

struct seqset {
	struct seqrange *r; /* owned */
	size_t n, cap;
};

/*
 * Adds [lo, hi] (lo <= hi). Returns how many of those numbers were already in the set
 * (0 when all are new), or -1 when out of memory (the set is unchanged).
 */
int64_t seqset__add_range(struct seqset *s, uint64_t lo, uint64_t hi);
/* Adds one number: 1 when it is new, 0 when it was there, -1 out of memory. */
int seqset__add(struct seqset *s, uint64_t seq);
/* How many numbers the set holds. */
uint64_t seqset__count(const struct seqset *s);
/* The largest number in the set; 0 when it is empty. */
uint64_t seqset__max(const struct seqset *s);
/* How many numbers in [from, max] are missing (gaps never filled). */
uint64_t seqset__gaps(const struct seqset *s, uint64_t from);
void seqset__free(struct seqset *s);

/* ---- hist.c: a log-linear latency histogram (values in µs, ~0.2% precision) ---- */

#define HIST_LINEAR 1024 /* values below are counted exactly */
#define HIST_SUB 512     /* buckets per power of two above */
#define HIST_MAX_EXP 41  /* values of 2^41 µs (25 days) and above share the last bucket */
#define HIST_BUCKETS (HIST_LINEAR + (HIST_MAX_EXP - 10) * HIST_SUB)

struct hist {
	uint64_t *counts; /* HIST_BUCKETS, allocated on the first record; owned */
	uint64_t total, min, max, sum;
};

/* Records one value. Returns 0, or -1 when out of memory (not recorded). */
int hist__record(struct hist *h, uint64_t v);
/* Adds count values that fall into bucket i (for loading saved reports). */
int hist__add_bucket(struct hist *h, size_t i, uint64_t count);
/* The value at percentile p (0 < p <= 100): the highest value of its bucket, at most max. */
uint64_t hist__percentile(const struct hist *h, double p);
/* Adds src into dst. Returns 0 or -1 (out of memory). */
int hist__merge(struct hist *dst, const struct hist *src);
/* The bucket of v, and the lowest and highest value of bucket i (for the tests). */
size_t hist__bucket(uint64_t v);
uint64_t hist__lowest(size_t i);
uint64_t hist__highest(size_t i);
void hist__free(struct hist *h);

/* ---- tally.c: what was seen of one sender, by key (a device, a broker's route) ---- */

struct track {
	char *key; /* owned; NUL-terminated */
	struct seqset seen;
	uint64_t received;     /* every arrival, duplicates included */
	uint64_t duplicates;   /* arrivals of a number already seen */
	uint64_t out_of_order; /* new numbers below the highest seen before them */
};

struct tally {
	struct track *slots; /* open addressing, cap a power of two; owned */
	size_t cap, n;
	uint64_t first_seq; /* where sequences start: 0 (devices) or 1 (mqtt.seq) */
};

enum arrival { ARRIVAL_NEW, ARRIVAL_LATE, ARRIVAL_DUPLICATE, ARRIVAL_NOMEM };

/* The track of key (len bytes), created empty when new; NULL when out of memory. */
struct track *tally__get(struct tally *t, const char *key, size_t len);
/* Counts the arrival of seq on tr. */
enum arrival track__arrive(struct track *tr, uint64_t seq);
/* Calls fn on every track, in no particular order. */
void tally__each(const struct tally *t, void (*fn)(const struct track *, void *), void *arg);
/* Merges src into dst: unions the sets, sums the counters, overlaps count as duplicates. */
int tally__merge(struct tally *dst, const struct tally *src);
void tally__free(struct tally *t);

/* ---- report.c: the run's counts, the live line, the JSON report ---- */

struct report {
	char mode[8];       /* "kafka", "mqtt" or "merged" */
	unsigned instances; /* how many controller runs this report covers */
	uint64_t received;  /* data messages (decoded payloads), duplicates included */
	uint64_t distinct;  /* of those, distinct (device, seq): the devices' set sizes summed */
	uint64_t foreign;   /* messages that are not mqk-loadgen payloads */
	uint64_t early;     /* latencies below 0 (clocks apart), counted as 0 */
	uint64_t first_us, last_us; /* first and last arrival, µs since the epoch */
	uint64_t expect;            /* --expect, 0 when not given */
	struct hist latency;
	struct tally devices; /* by device id, sequences from 0 */
	struct tally brokers; /* by "broker\troute\tboot", sequences from 1 (Kafka mode) */
	/* commands (commands.c): sent = handed to Kafka or a broker; failed = refused then
	 * or later; answers = commands answered by their own device, once each */
	uint64_t commands_sent, commands_failed, answers, answers_unmatched;
	uint64_t answers_duplicate, answers_misdelivered;
	struct hist rtt;      /* command sent -> answer here */
	struct hist delivery; /* command sent -> the device answered (its payload's send time) */
};

void report__init(struct report *r, const char *mode);
void report__free(struct report *r);
/*
 * Counts one message: payload (len bytes) arrived at now_us. broker, route and boot
 * are the plugin's mqtt.broker/mqtt.route/mqtt.boot headers and seq its mqtt.seq, or
 * broker NULL when there are none (MQTT mode, or a record produced by something else).
 */
void report__message(struct report *r, const void *payload, size_t len, uint64_t now_us,
		     const char *broker, const char *route, const char *boot, uint64_t seq);
/* Unique data messages so far (what --expect compares with): O(1), r->distinct. */
uint64_t report__unique(const struct report *r);
/* One status line (no newline) for the terminal: totals and the rate since *prev. */
void report__live(const struct report *r, uint64_t now_us, uint64_t *prev_received,
		  uint64_t *prev_us, char *buf, size_t size);
/*
 * The report as JSON; with detail, everything merge needs (per device and per broker
 * ranges, the histograms). The caller owns the result (cJSON_Delete).
 */
cJSON *report__json(const struct report *r, bool detail);
/*
 * Reads a report saved with detail into r (initialised by the caller) and merges it in.
 * Returns 0, or -1 with a reason in errstr.
 */
int report__merge_json(struct report *r, const cJSON *json, char *errstr, size_t errstr_size);
/* Whether the report shows data loss: gaps, or fewer unique messages than expected. */
bool report__lossy(const struct report *r);
/* Commands sent and not answered by their device (sent minus answered, at least 0). */
uint64_t report__unanswered(const struct report *r);
/*
 * Whether the commands were not each delivered exactly once to their own device: some
 * sent, and unanswered, duplicate or misdelivered answers. False when none was sent.
 */
bool report__commands_lossy(const struct report *r);

/* ---- commands.c: control commands out, answers back, round trips ---- */

/* A command sent, answered or not (kept for the whole run, to catch duplicates). */
struct sent {
	char *id;            /* one allocation holding id, payload and device; owned */
	const char *payload; /* as sent (v3.1.1 devices echo it); in id's allocation */
	const char *device;  /* the target; in id's allocation */
	uint64_t sent_us;
	uint32_t same_payload; /* the previous command with this payload: index + 1, or 0 */
	bool answered;
};

struct commands {
	struct sent *s; /* every command sent, in sending order; owned */
	size_t n, cap;
	uint32_t *by_id, *by_payload; /* hash tables of index + 1 (0: empty); owned */
	size_t index_cap;             /* slots of each, a power of two */
	uint64_t answered;            /* commands answered by their device */
	uint64_t next;                /* number of the next command */
	char prefix[48];              /* makes ids unique across controller instances */
};

/* A command ready to send. Every string is owned by the struct (command__free). */
struct command {
	char *device, *id, *payload, *response_topic;
};

/* What an answer turned out to be. */
enum answer {
	ANSWER_OK,           /* the first answer of its command, from its device */
	ANSWER_DUPLICATE,    /* its command was already answered by its device */
	ANSWER_MISDELIVERED, /* from another device than the command's target */
	ANSWER_UNMATCHED,    /* no command sent has its id or payload (or not a payload) */
};

/*
 * Prepares a command for device: a new id, and the payload with that id added as
 * "cid" when payload is a JSON object. answers_tpl gives the response topic ({id} is
 * the device). Returns 0, or -1 when out of memory.
 */
int commands__make(struct commands *c, const char *device, const char *payload,
		   const char *answers_tpl, struct command *out);
/*
 * Remembers a command as sent at sent_us (CLOCK_REALTIME µs), to pair its answers with:
 * the strings are copied. Returns 0, or -1 when out of memory or the id was sent before.
 */
int commands__sent(struct commands *c, const struct command *cmd, uint64_t sent_us);
/*
 * Pairs an answer payload arrived at now (CLOCK_REALTIME µs) with its command, in O(1)
 * (by id, then by payload), and counts it in r: answers with the round trip (r->rtt) and
 * the delivery time (the answer's send time minus the command's, r->delivery), or
 * answers_duplicate, answers_misdelivered, answers_unmatched. Returns which.
 */
enum answer commands__answer(struct commands *c, struct report *r, const void *payload, size_t len,
			     uint64_t now);
void command__free(struct command *cmd);
void commands__free(struct commands *c);

/* ---- settings (main.c) and the two sources (kafka.c, mqtt.c) ---- */

#define MAX_LIST 32

struct settings {
	/* Kafka mode */
	const char *bootstrap;
	const char *topics[MAX_LIST];
	size_t n_topics;
	const char *group;
	struct cli_props props; /* -X name=value */
	const char *command_topic;
	/* MQTT mode */
	const char *mqtt_hosts;
	const char *filters[MAX_LIST];
	size_t n_filters;
	int qos;
	int protocol; /* MQTT_PROTOCOL_V311 or MQTT_PROTOCOL_V5 */
	const char *command_mqtt;
	/* both */
	const char *answers;        /* answer topic template */
	const char *answers_filter; /* answers with {id} as + */
};

struct controller {
	const struct settings *set;
	struct report report;
	struct commands commands;
	uint64_t refused; /* commands refused as they were sent (counted in commands_failed too) */
};

/*
 * Hands one message to the counts: an answer when its MQTT topic matches the answers
 * filter, else data. topic may be NULL (a Kafka record without mqtt.topic: data).
 */
void controller__deliver(struct controller *ctl, const char *topic, const void *payload, size_t len,
			 const char *broker, const char *route, const char *boot, uint64_t seq);

struct kafka;
/* A consumer group member subscribed to set->topics. NULL with a reason in errstr. */
struct kafka *kafka__open(const struct settings *set, char *errstr, size_t errstr_size);
/*
 * Waits up to timeout_ms for records (a blocking poll, no sleeping) and hands each to
 * controller__deliver, storing its offset after: the offset is committed only once
 * the record was counted. Once one came, it takes those already there for up to
 * timeout_ms more (at least 1 ms; 10,000 at most). Returns how many records it handled,
 * or -1 on a fatal error.
 */
int kafka__poll(struct kafka *k, struct controller *ctl, int timeout_ms);
/* Produces a command to set->command_topic (key: the device). 0, or -1 with errstr. */
int kafka__command(struct kafka *k, struct controller *ctl, const struct command *cmd, char *errstr,
		   size_t errstr_size);
/* Waits up to timeout_ms for the commands produced so far to be delivered; how many are not. */
int kafka__flush(struct kafka *k, struct controller *ctl, int timeout_ms);
/* Leaves the group (committing what was counted) and frees k. */
void kafka__close(struct kafka *k);

struct mqtt;
/* One connection per broker of set->mqtt_hosts, subscribed to the filters and answers. */
struct mqtt *mqtt__open(const struct settings *set, struct controller *ctl, char *errstr,
			size_t errstr_size);
/* Serves every connection for up to timeout_ms (poll(2)); reconnects lost ones. Returns
 * the number of messages handled, or -1 on a fatal error. */
int mqtt__poll(struct mqtt *m, int timeout_ms);
/* Publishes a command to every connected broker (the device is on one of them).
 * Returns 0, or -1 with errstr when no broker took it. */
int mqtt__command(struct mqtt *m, const struct command *cmd, char *errstr, size_t errstr_size);
/* Waits up to timeout_ms for the commands' PUBACKs; how many are still unacknowledged. */
int mqtt__flush(struct mqtt *m, int timeout_ms);
void mqtt__close(struct mqtt *m);

/* ---- now ---- */

/* CLOCK_REALTIME in µs (comparable with mqk-loadgen's send times on this machine). */
uint64_t now_us(void);

#endif
