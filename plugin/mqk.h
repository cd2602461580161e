/*
 * mqk.h - the plugin's private header: its data and the functions one file offers
 * another. Read plugin.c first for the design; the files follow a message:
 *
 *   plugin.c    entry points, callback wiring (MESSAGE, TICK)
 *   options.c   plugin_opt_* lines -> struct mqk_config
 *   route.c     does a PUBLISH go to Kafka, and by which routes    (mosquitto's thread)
 *   reload.c    routes_file: the routes changed without a restart   (mosquitto's thread)
 *   capture.c   the message copied into the buffer, one entry per route
 *   buffer.c    the ring between mosquitto's thread and the Kafka thread
 *   journal.c   ... or its bytes in segment files, replayed after a crash (durability journal)
 *   producer.c  the Kafka thread: entries -> records -> librdkafka, delivery reports
 *   topics.c    the Kafka topics already created or found to exist      (Kafka thread)
 *   record.c    the Kafka record: topic, key, headers, value       (Kafka thread)
 *   template.c  Kafka topic and key templates ({1}, {clientid}, ...)
 *   envelope.c  the JSON value of format=json routes
 *
 * and the other way, Kafka -> one device (docs/commands.md):
 *
 *   commands.c  the commands thread: Kafka consumer -> hand-off; returns, dead letters
 *   handoff.c   the queue between the commands thread and mosquitto's thread
 *   deliver.c   on the TICK: a command -> mosquitto_broker_publish to its client id
 *   clients.c   which clients are connected to this broker (BASIC_AUTH, DISCONNECT)
 *   presence.c  connected/disconnected records for targeted mode's router
 *   redistribute.c  redistribute mode: where a command not for this broker goes
 *   wake.c      the loopback connection that wakes mosquitto's loop
 *
 * and Kafka -> every subscriber (inbound routes, docs/inbound.md):
 *
 *   inbound.c          the inbound thread: consumer -> expanded MQTT topic -> hand-off
 *   inbound_publish.c  on the TICK: mosquitto_broker_publish to every subscriber
 *
 *   stats.c     counters, $SYS/broker/kafka/..., the shutdown summary
 *   metrics.c   Prometheus /metrics, /healthz (its own HTTP thread), the textfile
 *   kstats.c    librdkafka's statistics JSON, parsed for the metrics
 *   profile.c   plugin_opt_profile: librdkafka's settings for latency or throughput
 *   latency.c   histograms of a record's time: capture -> producev -> ack (Kafka thread)
 *   log.c       log lines with the plugin's prefix, rate-limited where they can flood
 *
 * Each function says which thread it runs on when that is not mosquitto's.
 */
#ifndef MQK_H
#define MQK_H

#include <pthread.h>
#include <signal.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <string.h>

#include <librdkafka/rdkafka.h>
#include <xxhash.h>

#define MQK_LOG_PREFIX "mosquitto_kafka: "

/* ---- templates ------------------------------------------------------------- */

enum mqk_tpl_kind {
	MQK_TPL_LITERAL,  /* text */
	MQK_TPL_LEVEL,    /* {N}: the N-th wildcard of the route's filter, from 1 */
	MQK_TPL_CLIENTID, /* {clientid} */
	MQK_TPL_USERNAME, /* {username}: empty when the client gave none */
	MQK_TPL_TOPIC,    /* {topic}: the whole MQTT topic */
	MQK_TPL_BROKER,   /* {broker}: broker_id */
	/* Inbound routes' MQTT topic templates only (template__compile_inbound): */
	MQK_TPL_KEY,       /* {key}: the Kafka record's key */
	MQK_TPL_PARTITION, /* {partition}: its partition, in decimal */
	MQK_TPL_HEADER,    /* {header:<name>}: its last header <name> (text: the name) */
};

struct mqk_tpl_part {
	enum mqk_tpl_kind kind;
	int level;        /* MQK_TPL_LEVEL */
	const char *text; /* MQK_TPL_LITERAL: points into mqk_template.source, not NUL-terminated */
	size_t len;
};

/* A compiled template. Owns source and parts. */
struct mqk_template {
	char *source; /* as written in the option */
	struct mqk_tpl_part *parts;
	int part_count;
	bool is_static; /* only literals: the expansion is source itself */
};

/* What a template expands against: one message. Strings are the broker's. */
struct mqk_msg_ctx {
	const char *topic;
	const char *client_id;
	const char *username; /* NULL when none */
	const char *broker_id;
	const char *filter; /* the route's filter, for {N} */
};

/*
 * Compiles `source` for a route whose filter is `filter`. kafka_topic: literals must be
 * legal in a Kafka topic name ([A-Za-z0-9._-]) and a static name at most 249 bytes.
 * Returns 0, or -1 with a message (without the option's name) in errstr.
 */
int template__compile(struct mqk_template *tpl, const char *source, const char *filter,
		      bool kafka_topic, char *errstr, size_t errstr_size);
/*
 * Expands tpl for ctx into buf (NUL-terminated). Returns the length, or -1 when it
 * does not fit in buf_size.
 */
int template__expand(const struct mqk_template *tpl, const struct mqk_msg_ctx *ctx, char *buf,
		     size_t buf_size);
void template__free(struct mqk_template *tpl);
/*
 * Compiles an inbound route's MQTT topic template (plugin_opt_inbound_<name>): literal
 * text and {key}, {partition}, {header:<name>}, {broker}. Literals may not hold '+', '#'
 * or start the topic with '$'. Returns 0, or -1 with a message in errstr.
 */
int template__compile_inbound(struct mqk_template *tpl, const char *source, char *errstr,
			      size_t errstr_size);
/*
 * Expands an inbound template for Kafka record rkm into buf (NUL-terminated). Returns the
 * length, or -1 with *cause set to static text: "no key", "no header <name>" (in
 * cause_buf), "NUL in key/header", "too long". Any thread (the inbound thread).
 */
int template__expand_record(const struct mqk_template *tpl, const rd_kafka_message_t *rkm,
			    const char *broker_id, char *buf, size_t buf_size, const char **cause,
			    char *cause_buf, size_t cause_size);
/* Is name a legal Kafka topic name (1..249 bytes of [A-Za-z0-9._-], not "." or "..")? */
bool template__is_kafka_topic(const char *name, size_t len);
/*
 * Finds the n-th (from 1) wildcard level of topic under filter, which must match it.
 * '+' gives one level, '#' the rest of the topic. Returns false when filter has fewer
 * wildcards or the level is absent ("a/#" matching "a").
 */
bool template__wildcard_level(const char *filter, const char *topic, int n, const char **start,
			      size_t *len);

/* ---- configuration ------------------------------------------------------------ */

enum mqk_format {
	MQK_FORMAT_RAW,  /* the payload unchanged */
	MQK_FORMAT_JSON, /* the envelope of envelope.c */
};

/*
 * The counters, one list per family: each X(name, help) gives a struct field (an
 * atomic_uint_least64_t), its $SYS topic (.../<name>), its Prometheus metric
 * (mosquitto_kafka_<name>_total, HELP text help) and its word in the shutdown summary.
 * stats.c turns the lists into one table (families[]: names, HELP, offsets, prefixes) that
 * the $SYS topics, the summary, the getters and metrics.c read. README's Counters table
 * lists exactly these (ctest readme_counters).
 *
 * MQK_ROUTE_COUNTERS: per route ($SYS .../routes/<name>/<name>, label route) and the
 * totals. Each has one writer, but refused: mosquitto's thread for matched, buffer_full
 * and rejected, the Kafka thread for the others; readers load them relaxed.
 * counter__inc is a plain load and store (no lock on the hot path), so only a single
 * writer may use it; refused, which both threads write, takes atomic_fetch_add.
 */
#define MQK_ROUTE_COUNTERS(X)                                                                      \
	X(matched, "Messages the route matched (totals: messages one route or more matched).")     \
	X(produced, "Records handed to librdkafka.")                                               \
	X(delivered, "Records Kafka acknowledged.")                                                \
	X(failed, "Records librdkafka reported failed (or purged at shutdown).")                   \
	X(buffer_full, "Messages not forwarded because the journal (buffer) was full.")            \
	X(bad_topic, "Records never produced: the expanded Kafka topic is not a legal name.")      \
	X(too_large, "Records never produced: larger than message.max.bytes.")                     \
	X(refused, "Records never produced for another reason (out of memory, key too long).")     \
	X(dropped_oldest, "overflow drop_oldest: records dropped to make room.")                   \
	X(rejected, "overflow reject: QoS 1/2 PUBLISHes refused (the client sends them again).")

/* Totals only (fields of struct mqk_stats); mosquitto's thread is their one writer. */
#define MQK_MESSAGE_COUNTERS(X)                                                                    \
	X(received, "MESSAGE events seen.")                                                        \
	X(unrouted, "Messages no route matched.")                                                  \
	X(excluded, "Messages an exclude filter matched.")

/* The journal's, totals only ($SYS .../journal_<name>). Writers: named. */
#define MQK_JOURNAL_COUNTERS(X)                                                                    \
	X(replayed, "Records found in the journal at start-up, to send (init).")                   \
	X(errors, "Journal segments that could not be created, grown or synced.")

/* The command path's ($SYS .../commands/<name>). Each has one writer thread, named. */
#define MQK_COMMAND_COUNTERS(X)                                                                    \
	X(consumed, "Command records read from Kafka (commands thread).")                          \
	X(delivered, "Commands handed to a connected client (mosquitto's thread).")                \
	X(skipped, "Broadcast: commands for a client not connected here (mosquitto's thread).")    \
	X(returned, "Targeted: commands sent back to the router (commands thread).")               \
	X(forwarded, "Redistribute: commands Kafka took for a back-channel (commands thread).")     \
	X(held, "Redistribute: commands for a client known nowhere, held (commands thread).")      \
	X(presence_read, "Redistribute: presence records read (commands thread).")                 \
	X(dead_lettered, "Commands sent to the dead-letter topic (commands thread).")              \
	X(invalid, "Commands with no target, a bad target or topic (commands thread).")            \
	X(presence, "Presence records Kafka took (commands thread).")                              \
	X(wakes, "PINGREQs that woke mosquitto's loop (commands thread).")                         \
	X(lost, "Returns, dead letters or presence records Kafka refused (commands thread).")

/* Inbound routes' ($SYS .../inbound/<name>), totals. Each has one writer thread, named. */
#define MQK_INBOUND_COUNTERS(X)                                                                    \
	X(consumed, "Inbound records read from Kafka (inbound thread).")                           \
	X(published, "Inbound records published to MQTT subscribers (mosquitto's thread).")       \
	X(skipped, "Inbound records not published: bad topic, no key/header (mosquitto's).")     \
	X(paused, "Times the hand-off queue was full and the partitions paused (inbound).")       \
	X(wakes, "PINGREQs of the inbound thread that woke mosquitto's loop (inbound thread).")

#define MQK_COUNTER_FIELD(name, help) atomic_uint_least64_t name;

/* Counters of one route, or the totals (MQK_ROUTE_COUNTERS). */
struct mqk_counters {
	MQK_ROUTE_COUNTERS(MQK_COUNTER_FIELD)
};

/* The wall clock in ms since the epoch (CLOCK_REALTIME), as the metrics and Kafka show it. */
static inline int64_t mqk_realtime_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A clock for intervals and deadlines in ms (CLOCK_MONOTONIC: no jumps). */
static inline int64_t mqk_monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Starts one of the plugin's threads (named for top -H and perf) with every signal
 * blocked: it inherits the mask, so signals stay mosquitto's business. true when started.
 */
static inline bool mqk_thread_start(pthread_t *thread, void *(*fn)(void *), void *arg,
				    const char *name)
{
	sigset_t all, old;
	bool started;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	started = pthread_create(thread, NULL, fn, arg) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (started) {
		pthread_setname_np(*thread, name);
	}
	return started;
}

static inline void counter__inc(atomic_uint_least64_t *c)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

static inline void counter__dec(atomic_uint_least64_t *c)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) - 1,
			      memory_order_relaxed);
}

static inline uint64_t counter__get(const atomic_uint_least64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

/* Records librdkafka holds, not yet reported: produced - delivered - failed ($SYS
 * .../in_flight, the gauge mosquitto_kafka_in_flight; the producer's drain waits on it). */
static inline uint64_t counters__in_flight(const struct mqk_counters *c)
{
	return counter__get(&c->produced) - counter__get(&c->delivered) - counter__get(&c->failed);
}

/* A route filter's shape, found once (route__classify): the common ones are matched
 * without the general matcher, which re-validates the filter at every message. */
enum mqk_filter_shape {
	MQK_FILTER_GENERAL, /* mosquitto_topic_matches_sub */
	MQK_FILTER_LITERAL, /* no wildcard: the topic itself */
	MQK_FILTER_PREFIX,  /* "<no wildcard>/#": that level and everything under it */
	MQK_FILTER_ALL,     /* "#": every topic not starting with '$' */
};

struct mqk_route {
	char *name;   /* the <name> of plugin_opt_route_<name> */
	char *filter; /* MQTT topic filter */
	enum mqk_filter_shape shape;
	size_t prefix_len; /* LITERAL: the filter's length; PREFIX: the length before "/#" */
	struct mqk_template topic;
	struct mqk_template key; /* part_count == 0: the record has a null key */
	enum mqk_format format;
	rd_kafka_topic_t *rkt; /* a static topic of a start-up route: created by producer.c */
	uint64_t seq;          /* last mqtt.seq given (mosquitto's thread) */
	struct mqk_counters counters;
	/* Selectors after the topic (route__selects); zero: any. */
	char *sel_clientid; /* clientid=<glob> ('*', '?'), or NULL */
	char *sel_username; /* username=<glob>; "" matches clients without a username */
	uint8_t sel_qos;    /* qos=N: N + 1 */
	uint8_t sel_retain; /* retain=false: 1, retain=true: 2 */
	bool has_selectors;
	bool from_file; /* read from routes_file (reload.c) */
	/* The earlier definition of this name in cfg->routes, plus 1 (0: none): a reload
	   changed the route; its counters add up along this chain (stats.c). */
	int prev;
};

/*
 * Route definitions one plugin run may hold (cfg->routes after routes__start): a
 * reload adds a definition for each route it adds or changes, and never frees one
 * before shutdown (reload.c), so an entry's route index stays valid. A buffer entry
 * names its route in 16 bits (0xFFFE, 0xFFFF are markers).
 */
#define MQK_MAX_ROUTES 4096

struct mqk_kafka_prop {
	char *name; /* without "kafka." */
	char *value;
	int line; /* plugin_opt_kafka_config_file's line; 0: a plugin_opt_ line */
};

enum mqk_cmd_mode {
	MQK_CMD_OFF,       /* no commands_topic: the plugin only forwards */
	MQK_CMD_BROADCAST, /* every broker reads every command, delivers its own */
	MQK_CMD_TARGETED,  /* mqk-router sends each broker its own commands */
	MQK_CMD_REDISTRIBUTE, /* one shared group; each broker forwards what is not its own */
};

/* The commands_* and presence_topic options (docs/commands.md). */
struct mqk_cmd_config {
	enum mqk_cmd_mode mode;
	char *topic;                    /* commands_topic, {broker} expanded */
	char *group;                    /* commands_group: the consumer group, {broker} expanded */
	char *target;                   /* commands_target as given, or NULL */
	char *target_header;            /* commands_target header:<name>; NULL: the record key */
	struct mqk_template mqtt_topic; /* commands_mqtt_topic: {clientid}, {broker} */
	int qos;
	int expiry;              /* commands_expiry: seconds; 0: no Message Expiry Interval */
	char *return_topic;      /* targeted: where "not here" goes back to the router */
	char *dead_letter_topic; /* targeted: commands that can never be delivered */
	int max_hops;            /* targeted: returns before a dead letter */
	char *broker_topic;      /* redistribute: commands_topic_broker, {broker} kept */
	char *own_topic;         /* redistribute: broker_topic for this broker */
	char *own_group;         /* redistribute: group of own_topic and presence: group-<id> */
	char *presence_topic;    /* NULL: no presence records */
	char *wake;              /* "auto", "off" or host:port */
	struct mqk_kafka_prop *kafka_props; /* commands_kafka.*: the consumer's own */
	int kafka_prop_count;
};

/* One plugin_opt_inbound_<name>: a Kafka topic -> MQTT topics (docs/inbound.md). */
struct mqk_inbound_route {
	char *name;                     /* the <name> */
	char *kafka_topic;              /* read by every broker, all partitions */
	struct mqk_template mqtt_topic; /* {key}, {partition}, {header:<name>}, {broker} */
	int qos;                        /* of the PUBLISH to subscribers */
	bool retain;
};

/* The inbound_* options. */
struct mqk_inbound_config {
	struct mqk_inbound_route *routes;
	int count;  /* 0: no inbound routes, no inbound thread */
	char *group; /* inbound_group, {broker} expanded */
	char *wake;  /* inbound_wake: "auto", "off" or host:port */
	struct mqk_kafka_prop *kafka_props; /* inbound_kafka.*: the inbound consumer's own */
	int kafka_prop_count;
};

/* Everything plugin_opt_* says. Owns every pointer in it. */
struct mqk_config {
	char *bootstrap_servers;
	char *broker_id;
	/*
	 * Every route definition of this run, in the order defined: mosquitto.conf's, the
	 * routes_file's, then those later reloads added. After routes__start the array has
	 * room for MQK_MAX_ROUTES and never moves: the Kafka thread reads a definition by
	 * its index (entry->live_route); mosquitto's thread only appends (reload.c), before
	 * it commits the first entry naming the new one.
	 */
	struct mqk_route *routes;
	int route_count;
	int conf_route_count; /* routes[0..conf_route_count) are mosquitto.conf's */
	/* The routes in force, in configuration order: indexes into routes (mosquitto's
	   thread only). NULL before routes__start: routes[0..route_count) are. */
	int *active;
	int active_count;
	char **excludes; /* mosquitto.conf's, then the routes_file's */
	int exclude_count;
	int conf_exclude_count;
	char *routes_file;                       /* plugin_opt_routes_file: NULL: none */
	char *kafka_config_file;                 /* NULL: none */
	struct mqk_kafka_prop *kafka_file_props; /* read from kafka_config_file at start-up */
	int kafka_file_prop_count;
	struct mqk_kafka_prop *kafka_props; /* plugin_opt_kafka.*: applied after the file's */
	int kafka_prop_count;
	int stats_interval;   /* seconds; 0: no $SYS statistics */
	int flush_timeout_ms; /* how long cleanup waits for Kafka */
	int buffer_mb;        /* the buffer between mosquitto's thread and the Kafka thread */
	int durability;       /* enum mqk_durability */
	int overflow;         /* enum mqk_overflow */
	int profile;          /* enum mqk_profile (profile.c) */
	char *journal_dir;    /* journal: where its files are */
	int journal_fsync_ms; /* journal: msync every so many ms; 0: always; -1: never */
	int journal_max_mb;   /* journal: its size limit */
	int journal_segment_mb;
	bool create_topics;           /* create missing Kafka topics (Admin API) before producing */
	int topic_partitions;         /* ... with this many partitions */
	int topic_replication_factor; /* ... and this factor; -1: the brokers' default */
	struct mqk_cmd_config commands;
	struct mqk_inbound_config inbound;
	char *metrics_listen;     /* host:port of the /metrics and /healthz listener; NULL: none */
	char *metrics_textfile;   /* the metrics written there every stats_interval; NULL: none */
	int health_max_unacked_s; /* /healthz: Kafka silent, or a record unacknowledged, longer */
};

/*
 * Parses mosquitto's options into cfg (zeroed by the caller). Values are trimmed.
 * Returns 0, or -1 with one line in errstr that names the option, e.g.
 * "plugin_opt_route_x: 'a/#/b' is not a valid MQTT topic filter". On error cfg may be
 * half filled: options__free it.
 */
struct mosquitto_opt;
int options__parse(struct mqk_config *cfg, const struct mosquitto_opt *opts, int opt_count,
		   char *errstr, size_t errstr_size);
void options__free(struct mqk_config *cfg);
/*
 * Parses one line of a routes file into cfg's routes and excludes: "route_<name> ..." or
 * "exclude <filter>", the plugin_opt_ syntax without the prefix. Returns 0, or -1 with
 * errstr naming the option, as for plugin_opt_ lines but without "plugin_opt_".
 */
int options__parse_route_line(struct mqk_config *cfg, const char *line, char *errstr,
			      size_t errstr_size);
/*
 * Reads path (a routes file: route_<name> and exclude lines, blank lines, # comments)
 * into out (zeroed by the caller; options__free it). A name also in conf (mosquitto.conf's
 * routes, or NULL) is an error. Returns 0, or -1 with one line naming the file and line.
 */
int options__read_routes_file(const char *path, const struct mqk_config *conf,
			      struct mqk_config *out, char *errstr, size_t errstr_size);
/* Frees one route's strings and templates (not its topic handle). */
void options__free_route(struct mqk_route *r);

/* ---- routes changed without a restart (reload.c) ---------------------------------- */

/*
 * At init, after options__parse (which read routes_file): gives cfg->routes room for
 * MQK_MAX_ROUTES definitions and makes every route active. 0, or -1 (out of memory).
 */
int routes__start(struct mqk_config *cfg);
/* What a reload did, for its log line. */
struct mqk_reload_result {
	int added, changed, removed, unchanged;
	int excludes;
};
/*
 * Mosquitto's thread, between two messages: reads cfg->routes_file again and, if it is
 * valid, makes its routes the ones in force (mosquitto.conf's stay). A route that
 * stays keeps its definition; a changed one gets a new definition that continues its
 * name's mqtt.seq and counters; a removed one stays in cfg->routes for the records
 * still to send. Returns 0, or -1 with errstr (nothing changed).
 */
int routes__reload(struct mqk_config *cfg, struct mqk_reload_result *res, char *errstr,
		   size_t errstr_size);
/* The routes in force (for $SYS, metrics, the summary): how many, and the i-th's index in
   cfg->routes. Before routes__start: every route. Mosquitto's thread. */
int routes__in_force_count(const struct mqk_config *cfg);
int routes__in_force(const struct mqk_config *cfg, int i);
/*
 * The counters of the route at index r in cfg->routes, added up with those of the earlier
 * definitions of its name (a reload that changed the route made a new one: `prev`), into
 * out: what $SYS and metrics show for the route's name. Any thread that may read cfg->routes.
 */
void routes__counters(const struct mqk_config *cfg, int r, struct mqk_counters *out);
/* What routes__file_changed saw of a file. */
struct mqk_file_id {
	bool exists;
	uint64_t dev, ino, size;
	int64_t mtime_ns;
};
/* stat()s path: has it changed (inode, size, mtime; or appeared, gone) since *id? Updates *id. */
bool routes__file_changed(const char *path, struct mqk_file_id *id);

/* One option as README's option tables show it, from options.c's table. */
struct mqk_option_doc {
	const char *name;  /* "stats_interval"; a prefix as "route_<name>", "kafka.<property>" */
	const char *table; /* README's table: "Configuration" or "Commands" */
	bool repeat;       /* may be given more than once */
	bool number;       /* a number: min..max is what the parser accepts */
	int min, max;
	char value[128]; /* the value column, without README's code marks and escapes */
	char dflt[128];  /* the default column, the same way */
	const char *doc; /* the meaning column, as README writes it (markdown), "|" unescaped */
};
/*
 * The i-th option of options.c's table (from 0) into doc; false past the last. For
 * tests/docs/print_options.c, which ctest options_doc compares with README.
 */
bool options__doc(size_t i, struct mqk_option_doc *doc);

/* ---- Kafka client configuration (kafka_conf.c) ------------------------------------ */

/*
 * rd_kafka_conf_set, with librdkafka's refusal reported as "<origin>: <why>" in errstr
 * (a secret's value never shown). Returns 0 or -1. Any thread.
 */
int kafka_conf__set(rd_kafka_conf_t *conf, const char *origin, const char *name, const char *value,
		    char *errstr, size_t errstr_size);
/*
 * Applies what the admin set for every Kafka client of the plugin: the config file's
 * properties, then the plugin_opt_kafka.* lines (later wins). 0, or -1 with errstr.
 */
int kafka_conf__apply(rd_kafka_conf_t *conf, const struct mqk_config *cfg, char *errstr,
		      size_t errstr_size);
/* plugin_opt_profile: what the producer's librdkafka settings favour (profile.c). */
enum mqk_profile {
	MQK_PROFILE_THROUGHPUT, /* linger.ms 5: fewer, larger batches; less CPU per record */
	MQK_PROFILE_LATENCY,    /* linger.ms 0: each record sent at once */
};

/*
 * Sets profile's librdkafka properties on the producer's conf: after the plugin's
 * defaults and before kafka_conf__apply, so kafka_config_file and plugin_opt_kafka.*
 * win over it. 0, or -1 with errstr.
 */
int profile__apply(rd_kafka_conf_t *conf, int profile, char *errstr, size_t errstr_size);

/* Applies commands_kafka.* (the commands consumer's own, after kafka_conf__apply). */
int kafka_conf__apply_commands(rd_kafka_conf_t *conf, const struct mqk_cmd_config *cc, char *errstr,
			       size_t errstr_size);
/*
 * Reads plugin_opt_kafka_config_file: one <property>=<value> a line, white space around
 * both trimmed, blank lines and lines starting with # ignored (kcat -F's format). Refuses
 * a file others than its owner and group may read or change, a reserved property, and a
 * property given twice. Appends to list (its strings owned by it). 0, or -1 with errstr
 * naming the file and the line. Mosquitto's thread, at start-up.
 */
int kafka_conf__read_file(const char *path, struct mqk_kafka_prop **list, int *count, char *errstr,
			  size_t errstr_size);
/* Set by the plugin: the admin may not. NULL if not; else advice ("" or " (use ...)"). */
const char *kafka_conf__reserved(const char *name);
/* Is the property's value a secret (password, key, client secret), never to be shown? */
bool kafka_conf__is_secret(const char *name);
/* Logs the known problems of this configuration with the linked librdkafka (SCRAM with
   librdkafka < 2.6.1 against Kafka 4.x). Mosquitto's thread, at start-up. */
void kafka_conf__warn(const struct mqk_config *cfg);
/*
 * What a client error means for the configuration: for authentication and TLS errors
 * (err: librdkafka's error_cb code, reason its text), the cause in a few words, with
 * *check set to what to check; NULL for other errors. Any thread.
 */
const char *kafka_conf__explain(int err, const char *reason, const char **check);
/*
 * An error_cb's log line, through the mailbox (any of librdkafka's threads): a cause
 * kafka_conf__explain knows at ERR, "<who><cause>: <reason> (<check>); <meanwhile>",
 * rate-limited by rl_known; any other at WARNING, "<who>Kafka: <reason> (<code>)", by
 * rl_other. who: "" or "commands: " and the like.
 */
struct mqk_ratelimit;
void kafka_conf__log_error(struct mqk_ratelimit *rl_known, struct mqk_ratelimit *rl_other,
			   const char *who, const char *meanwhile, int err, const char *reason);

/* ---- routing -------------------------------------------------------------------- */

enum mqk_verdict {
	MQK_FORWARD,  /* matched one route or more: see the routes array */
	MQK_NO_ROUTE, /* matched no route */
	MQK_EXCLUDED, /* matched an exclude filter */
	MQK_RESERVED, /* $SYS/... or $CONTROL/...: never forwarded */
};

struct mqk_message;
/*
 * Which routes take msg (its topic; client id, username, QoS and retain for routes with
 * selectors). Fills matches (at most max) with the indexes in cfg->routes of the
 * matching routes in force, in configuration order, and sets *count.
 */
enum mqk_verdict route__match(const struct mqk_config *cfg, const struct mqk_message *msg,
			      int *matches, int max, int *count);
/* Do route's selectors (clientid=, username=, qos=, retain=) take msg? */
bool route__selects(const struct mqk_route *route, const struct mqk_message *msg);
/* Does text match pattern, where '*' is any run of characters and '?' any one? */
bool route__glob(const char *pattern, const char *text);
/* Is filter a valid MQTT subscription filter that may be routed ($SYS/$CONTROL may not)? */
bool route__filter_is_valid(const char *filter);

/* Sets route->shape and prefix_len from route->filter, a valid filter. */
void route__classify(struct mqk_route *route);
/* Is the first level of topic (or filter) $SYS or $CONTROL? */
bool route__is_reserved(const char *topic);

/* ---- records ---------------------------------------------------------------------- */

/*
 * One MQTT message. On mosquitto's thread its strings are the broker's; on the Kafka
 * thread they point into a buffer entry. Properties are in capture.c's compact form.
 */
struct mqk_message {
	const char *topic;
	const char *client_id;
	const char *username; /* NULL when none */
	const void *payload;  /* may be NULL when payloadlen is 0 */
	uint32_t payloadlen;
	uint8_t qos;
	bool retain;
	int64_t timestamp_ms; /* broker receive time */
	uint16_t timestamp_sub_us; /* its sub-millisecond part, 0..999 (latency.c) */
	const char *props;    /* capture__props output, or NULL */
	uint32_t props_len;
};

/* ---- the buffer between the threads ------------------------------------------------ */

struct mqk_origin;
struct mqk_journal;
struct mqk_segment;

/*
 * One message for one route, as mosquitto's thread left it for the Kafka thread:
 * this header, then topic, client id and username (each NUL-terminated), the
 * properties, and the payload (unless it is too large for the memory ring: then
 * `external` holds a malloc'd copy, which the entry owns). In the journal the entry is
 * on disk as it is in memory; its first fields are the Kafka thread's working state
 * and are not covered by `check`.
 */
struct mqk_entry {
	/* First, so that a padding entry of 8 bytes holds them (buffer.c): */
	uint32_t size;  /* of the whole entry, 8-aligned: buffer.c's */
	uint16_t route; /* index in the writing run's routes; MQK_ROUTE_PAD, _HEADER */
	uint8_t qos;
	uint8_t flags; /* MQK_ENTRY_* */
	/* The Kafka thread's, rewritten freely (outside the checksum): */
	uint64_t check;      /* journal: entry__checksum */
	uint32_t state;      /* MQK_ENTRY_NEW, _IN_KAFKA, _SETTLED */
	uint16_t live_route; /* index in this run's cfg->routes; MQK_ROUTE_GONE */
	uint16_t alone;      /* sent again in a batch of its own (producer.c) */
	void *external;
	const struct mqk_origin *origin; /* the run that received it; NULL: this one */
	/* Written once by mosquitto's thread, like the first four: */
	uint64_t pos; /* its position in the buffer: stale bytes of an older lap never match */
	uint64_t seq;
	int64_t timestamp_ms;
	uint32_t topic_len;
	uint32_t client_id_len;
	uint32_t username_len;
	uint32_t props_len;
	uint32_t payload_len;
	uint32_t capture_sub_us; /* timestamp_ms's sub-millisecond part (latency.c) */
	char data[];
};

#define MQK_ROUTE_PAD 0xFFFF    /* padding to the end of the memory ring */
#define MQK_ROUTE_HEADER 0xFFFE /* a journal segment's header (journal.c) */
#define MQK_ROUTE_GONE 0xFFFF   /* live_route: the route is no longer configured */

/* The bytes of e from `pos` to the end of its data. */
static inline size_t entry__checked_len(const struct mqk_entry *e)
{
	return sizeof(struct mqk_entry) - offsetof(struct mqk_entry, pos) + (size_t)e->topic_len +
	       e->client_id_len + e->username_len + 3 + e->props_len +
	       (e->external ? 0 : e->payload_len);
}

/*
 * A journal entry's checksum: XXH3 of its bytes from `pos` on, seeded with its first 8
 * (size, route, qos, flags). The fields in between are the Kafka thread's.
 */
static inline uint64_t entry__checksum(const struct mqk_entry *e, size_t checked_len)
{
	uint64_t first;
	memcpy(&first, e, sizeof(first));
	return XXH3_64bits_withSeed(&e->pos, checked_len, first);
}

#define MQK_ENTRY_NEW 0      /* not handed to librdkafka (again) yet */
#define MQK_ENTRY_IN_KAFKA 1 /* handed to librdkafka, no delivery report yet */
#define MQK_ENTRY_SETTLED 2  /* delivered, or failed for good: its room can go back */
#define MQK_ENTRY_ALONE 3    /* its batch was too large for Kafka: to be sent alone */

#define MQK_ENTRY_RETAIN 0x01
#define MQK_ENTRY_USERNAME 0x02

/*
 * The buffer: a memory ring, or the journal's segment files (journal.c). Positions are
 * 64-bit byte offsets that only grow. Fields marked (P) are the producer's (mosquitto's
 * thread), (C) the consumer's (the Kafka thread).
 *
 * Three cache lines: what neither thread writes under load, what P writes, what C
 * writes. Sharing one, each commit of P and each release of C took the line from the
 * other core, a miss on mosquitto's thread for every message. Each side also keeps the
 * other's position as last read (tail_seen, head_seen) and reads it again only when that
 * runs out (the ring looks full, or everything seen was taken).
 */
#define MQK_CACHE_LINE 64
struct mqk_buffer {
	char *data;                  /* memory: the ring; NULL with a journal */
	size_t capacity;             /* memory: a power of 2; journal: journal_max_mb */
	size_t max_entry;            /* the largest entry that can ever fit */
	struct mqk_journal *journal; /* NULL: memory */
	int wake_fd;                 /* eventfd C sleeps on */
	atomic_bool sleeping;        /* C is (about to be) asleep in buffer__sleep */
	atomic_bool want_room;       /* overflow drop_oldest: P found it full, C makes room */
	/* Payloads copied outside the ring (capture.c): they count against the capacity. */
	atomic_size_t external_bytes;

	/* (P) mosquitto's thread writes these. head: the committed end. */
	alignas(MQK_CACHE_LINE) atomic_uint_least64_t head;
	uint64_t head_local;
	uint64_t tail_seen;              /* tail when P last read it: tail is at least that */
	struct mqk_segment *wseg;        /* journal: the segment being written */
	bool next_segment;               /* journal: start a new one before the next entry */
	uint32_t reserved;               /* size of the entry being written */
	atomic_uint_least64_t committed; /* entries committed (and replayed): for the metrics */

	/* (C) the Kafka thread writes these. tail: the released start. (The struct's
	 * alignment pads the rest of the line.) */
	alignas(MQK_CACHE_LINE) atomic_uint_least64_t tail;
	uint64_t tail_local;            /* oldest entry not settled */
	uint64_t send_local;            /* next entry to hand to librdkafka */
	uint64_t head_seen;             /* head when C last read it: head is at least that */
	atomic_uint_least64_t released; /* entries settled and released: for the metrics */
	/* For /healthz and the metrics (CLOCK_REALTIME ms), read by any thread: */
	atomic_int_least64_t oldest_ms; /* capture time of the oldest entry not settled; 0: none */
	atomic_int_least64_t acked_ms;  /* when a delivery report last said success; 0: never */
};

/* A memory ring of at least capacity bytes. 0, or -1 (out of memory). */
int buffer__init(struct mqk_buffer *b, size_t capacity);
/*
 * The buffer in journal j's segments (journal__open found what is to be replayed:
 * it comes first). 0, or -1.
 */
int buffer__init_journal(struct mqk_buffer *b, struct mqk_journal *j);
void buffer__free(struct mqk_buffer *b);
/* (P) Room for an entry of size bytes, or NULL when the ring is full. */
struct mqk_entry *buffer__reserve(struct mqk_buffer *b, size_t size);
/*
 * (P) Publishes the entry buffer__reserve returned (its fields filled in); wakes C if
 * it sleeps. In a journal, checksums it first.
 */
void buffer__commit(struct mqk_buffer *b, struct mqk_entry *e);
/* Any thread: wakes C. */
void buffer__wake(struct mqk_buffer *b);
/* (P) journal: the next entry goes to a new segment (its header names the routes anew). */
void buffer__next_segment(struct mqk_buffer *b);
/* (C) The oldest entry (skipping and releasing padding), or NULL. */
struct mqk_entry *buffer__peek(struct mqk_buffer *b);
/* (C) Gives the oldest entry's room back to P. */
void buffer__release(struct mqk_buffer *b, struct mqk_entry *e);
/* (C) The entry at consumer position *pos, skipping padding, or NULL at the end. */
struct mqk_entry *buffer__at(struct mqk_buffer *b, uint64_t *pos);
/* (C) The next entry to hand to librdkafka, or NULL; buffer__mark_sent moves past it. */
struct mqk_entry *buffer__next_unsent(struct mqk_buffer *b);
void buffer__mark_sent(struct mqk_buffer *b, struct mqk_entry *e);
/* (C) Everything from the oldest unsettled entry on is to be sent again. */
void buffer__rewind(struct mqk_buffer *b);
/* No entry at all / none left to send. */
bool buffer__is_empty(struct mqk_buffer *b);
bool buffer__all_sent(struct mqk_buffer *b);
/*
 * (C) overflow drop_oldest: should the oldest records make room? Memory: less than an
 * eighth free. Journal: at journal_max_mb, and the tail still in the oldest segment.
 */
bool buffer__nearly_full(struct mqk_buffer *b);
/* Bytes in use, payloads kept outside the ring included (a snapshot for other threads). */
size_t buffer__used(struct mqk_buffer *b);
/*
 * (C) Sleeps until woken or timeout_ms. wake_on_commit: returns at once if an entry is
 * left to send, and a commit wakes it; else only the eventfd's other writers
 * (librdkafka's events) or the timeout end the sleep.
 */
void buffer__sleep(struct mqk_buffer *b, int timeout_ms, bool wake_on_commit);

/* ---- the journal: the buffer in segment files (journal.c, docs/journal.md) ------------ */

enum mqk_durability {
	MQK_DURABILITY_MEMORY,  /* the buffer is a ring in memory (buffer_mb) */
	MQK_DURABILITY_JOURNAL, /* the buffer is the journal's files (journal_*) */
};

enum mqk_overflow {
	MQK_OVERFLOW_REJECT,      /* QoS >= 1 refused (no PUBACK, connection closed) */
	MQK_OVERFLOW_DROP_OLDEST, /* the oldest records not yet in Kafka make room */
	MQK_OVERFLOW_DROP_NEW,    /* the new message is not forwarded */
};

/* Counters of the journal, totals only (MQK_JOURNAL_COUNTERS). */
struct mqk_journal_counters {
	MQK_JOURNAL_COUNTERS(MQK_COUNTER_FIELD)
};

/* One segment file, mapped read-write (MAP_SHARED): page cache survives a crash. */
struct mqk_segment {
	uint64_t number;           /* its file name: <16 hex digits>.mqkj */
	uint64_t start;            /* the position of its first byte (its header) */
	atomic_uint_least64_t end; /* the position after its last entry; UINT64_MAX while written */
	char *map;
	size_t size; /* of the file */
	int fd;      /* -1 once mapped: a segment keeps no descriptor (journal.c) */
	uint64_t synced;           /* journal_fsync: msync'd up to this position */
	struct mqk_origin *origin; /* written by an earlier run: that run (owned); else NULL */
};

/* What journal__scan_image found in the bytes of a segment file. */
struct mqk_journal_scan {
	uint64_t number; /* from its header */
	uint64_t start;
	int64_t boot_us;       /* the run that wrote it */
	const char *broker_id; /* NUL-terminated, in the image */
	const char *routes;    /* that run's route names, each NUL-terminated, in the image */
	size_t routes_len;
	int route_count;
	size_t end;       /* offset after the last valid entry */
	uint64_t entries; /* valid entries after the header */
	bool torn;        /* what follows end is neither zeros nor an older lap: cut off */
};

/*
 * Reads a segment's bytes: its header, then entries while each is whole, at its own
 * position and matches its checksum. Returns 0, or -1 when the image has no valid
 * header (an unused file). Never reads outside image[0..len).
 */
int journal__scan_image(const char *image, size_t len, struct mqk_journal_scan *out);
/*
 * Opens (creates) cfg->journal_dir, locks it, reads what earlier runs left: entries not
 * acknowledged yet are kept for buffer__init_journal, each with its route mapped to this
 * run's by name (a route no longer configured: MQK_ROUTE_GONE). A torn tail is cut off
 * and logged. Returns NULL with one line in errstr. Mosquitto's thread (init).
 */
struct mqk_journal *journal__open(const struct mqk_config *cfg, const struct mqk_origin *origin,
				  struct mqk_journal_counters *ctr, char *errstr,
				  size_t errstr_size);
/* The positions to replay, [*from, *to), from journal__open. */
void journal__replay_range(const struct mqk_journal *j, uint64_t *from, uint64_t *to);
/* The largest entry a segment takes. */
size_t journal__max_entry(const struct mqk_journal *j);
/*
 * (P) Ends the write segment `old` (may be NULL) at *head and starts the next one there:
 * its header is written and *head moved past it. Returns NULL when the journal is at
 * journal_max_mb, or a segment cannot be made (counted and logged: full disk, ...).
 */
struct mqk_segment *journal__next_segment(struct mqk_journal *j, struct mqk_segment *old,
					  uint64_t *head);
/*
 * (C) The entry at position *pos (< head), moving *pos to the next segment when the one
 * it is in ends there.
 */
struct mqk_entry *journal__entry(struct mqk_journal *j, uint64_t *pos);
/*
 * (C) Kafka thread, each round: records tail as acknowledged, gives back segments it has
 * passed (one is kept, renamed, as the next segment; the others are deleted), prepares
 * the next segment, and msyncs per journal_fsync. now_ms: monotonic.
 */
void journal__housekeeping(struct mqk_journal *j, uint64_t tail, uint64_t head, int64_t now_ms);
/* (P) journal_fsync always: msyncs what was written to s up to head. */
void journal__sync(struct mqk_journal *j, struct mqk_segment *s, uint64_t head);
/* Is journal_fsync always? */
bool journal__sync_always(const struct mqk_journal *j);
/* Syncs everything, records tail as acknowledged, unmaps and frees (after producer__close). */
void journal__close(struct mqk_journal *j, uint64_t tail);
/* (C) At journal_max_mb: the position where the oldest segment ends; else 0. */
uint64_t journal__full_until(const struct mqk_journal *j);
/*
 * (P) A reload added route definitions (reload.c): the header of the segments written from
 * now on names every definition in cfg->routes. The caller starts a new segment before the
 * next entry (buffer__next_segment) and updates the buffer's max_entry. 0, or -1 (out of
 * memory, or the names take more than half a segment): the old header stays.
 */
int journal__routes_changed(struct mqk_journal *j);
/* Segment files in use (for the log). */
size_t journal__segment_count(const struct mqk_journal *j);
/* The journal directory's descriptor: both threads make segment files in it (side.c). */
int journal__dir_fd(const struct mqk_journal *j);

/* ---- capture (mosquitto's thread) and its reading (Kafka thread) -------------------- */

/* Growable bytes for capture__props. Owned by whoever holds it. */
struct mqk_bytes {
	char *data;
	size_t len;
	size_t size;
};

/* MQTT v5 properties carried with a record (ids as in mqtt_protocol.h). */
enum mqk_prop_id {
	MQK_PROP_PAYLOAD_FORMAT = 1,
	MQK_PROP_CONTENT_TYPE = 3,
	MQK_PROP_RESPONSE_TOPIC = 8,
	MQK_PROP_CORRELATION_DATA = 9,
	MQK_PROP_USER_PROPERTY = 38,
};

/*
 * mosquitto's thread: the properties a record carries (user properties, content
 * type, response topic, correlation data, payload format), read from the broker's
 * list into out in a compact form. Returns 0, or -1 when out of memory.
 */
int capture__props(const void *mosquitto_props, struct mqk_bytes *out);
/*
 * Iterates capture__props's output: returns false at the end. name is NULL for
 * properties that have only a value; neither is NUL-terminated.
 */
bool capture__next_prop(const char **cursor, const char *end, int *id, const char **name,
			uint32_t *name_len, const char **value, uint32_t *value_len);
/*
 * mosquitto's thread: copies msg for route into the buffer. Returns 0, -1 when the
 * buffer is full, -2 when out of memory (a payload too large for the ring is copied
 * outside it), -3 when the message is larger than the whole buffer.
 */
int capture__message(struct mqk_buffer *b, int route, uint64_t seq, const struct mqk_message *msg);
/* Kafka thread: the message an entry holds (pointers into the entry). */
void capture__read(const struct mqk_entry *e, struct mqk_message *msg);
/* Kafka thread: frees what the entry owns outside the ring. */
void capture__discard(struct mqk_buffer *b, struct mqk_entry *e);

/* A Kafka record ready for the Kafka thread's send (producer.c, send_record). */
struct mqk_record {
	const char *topic;     /* expanded name; NULL when rkt is set */
	rd_kafka_topic_t *rkt; /* the route's static topic, or NULL */
	const void *key;       /* NULL: null key */
	size_t key_len;
	const void *value; /* never NULL: an empty payload is "" with length 0 */
	size_t value_len;
	rd_kafka_headers_t *headers; /* owned by the record until librdkafka takes it */
	int64_t timestamp_ms;
	struct mqk_route *route; /* delivery reports count against it */
	struct mqk_entry *entry; /* the buffer entry it was built from (producer.c's) */
};

/*
 * Scratch space the record builder reuses from message to message, so that the hot
 * path allocates nothing it can avoid. Owned by the producer (record__scratch_init, _free).
 */
struct mqk_scratch {
	char topic[256]; /* an expanded Kafka topic: at most 249 bytes */
	char *key;       /* an expanded key: room for 3 MQTT topics' worth */
	size_t key_size;
	char *name; /* a user property's header name */
	size_t name_size;
	char *json; /* the envelope, grown as needed */
	size_t json_size;
};

/* Who produced a record: the same for every record of one plugin run. */
struct mqk_origin {
	const char *broker_id;
	size_t broker_id_len;
	int64_t boot_us;
	char boot_str[24]; /* boot_us in decimal */
	size_t boot_len;
};

int record__scratch_init(struct mqk_scratch *scratch);
void record__scratch_free(struct mqk_scratch *scratch);

/*
 * Formats v in decimal into buf (at least 21 bytes), returns the length. Here, not in
 * record.c, because the envelope and the $SYS counters use it too.
 */
static inline size_t record__u64_to_str(uint64_t v, char *buf)
{
	char tmp[20];
	size_t n = 0, len;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	len = n;
	for (size_t i = 0; i < len; i++) {
		buf[i] = tmp[--n];
	}
	buf[len] = '\0';
	return len;
}

/* Here, not in record.c, because the journal (its segment headers) makes origins too. */
static inline void record__origin_init(struct mqk_origin *origin, const char *broker_id,
				       int64_t boot_us)
{
	origin->broker_id = broker_id;
	origin->broker_id_len = strlen(broker_id);
	origin->boot_us = boot_us;
	origin->boot_len = record__u64_to_str((uint64_t)boot_us, origin->boot_str);
}

enum mqk_build_error {
	MQK_BUILD_OK,
	MQK_BUILD_BAD_TOPIC, /* the expanded Kafka topic is not a legal name */
	MQK_BUILD_REFUSED,   /* out of memory, or a key longer than the scratch buffer */
};

/*
 * Kafka thread: builds route's record for msg (whose mqtt.seq is seq) into rec, using
 * scratch for its strings.
 */
enum mqk_build_error record__build(struct mqk_record *rec, struct mqk_route *route,
				   const struct mqk_message *msg, uint64_t seq,
				   const struct mqk_origin *origin, struct mqk_scratch *scratch);
/* Frees what record__build allocated that librdkafka did not take (send_record). */
void record__discard(struct mqk_record *rec);

/*
 * Encodes msg as the JSON envelope into *buf (reallocated as needed, owned by the
 * caller). Returns the length, or -1 when out of memory.
 */
int envelope__encode(const struct mqk_message *msg, const struct mqk_origin *origin,
		     const char *route, uint64_t seq, char **buf, size_t *buf_size);
/* Standard base64 of len bytes into out (at least 4*((len+2)/3)+1 bytes), NUL-terminated. */
size_t envelope__base64(const void *data, size_t len, char *out);

/* ---- producer ------------------------------------------------------------------------ */

struct mqk_producer;

/*
 * Creates the librdkafka producer with the plugin's defaults and cfg's kafka.* props,
 * a topic handle for each static route topic, and the Kafka thread, which takes the
 * entries of buf, produces them and serves librdkafka's delivery reports, logs and
 * errors. With cfg->create_topics, the Kafka thread creates missing topics (Admin API)
 * before it produces to them. Returns NULL with one line in errstr that names the option librdkafka
 * refused.
 */
struct mqk_producer *producer__new(struct mqk_config *cfg, struct mqk_buffer *buf,
				   const struct mqk_origin *origin, struct mqk_counters *totals,
				   char *errstr, size_t errstr_size);
/*
 * Lets the Kafka thread produce what the buffer holds, waits for librdkafka to deliver
 * it, all within timeout_ms; gives up on the rest (counted as failed; a journal keeps
 * it for the next start) and destroys the producer. Returns how many records were not
 * delivered. The buffer's tail is then the journal's acknowledged position.
 */
int producer__close(struct mqk_producer *p, int timeout_ms);

/* ---- known Kafka topics (Kafka thread) ---------------------------------------------- */

struct mqk_topic_slot {
	char *name; /* NULL: empty slot; owned by the set */
	uint32_t hash;
	int64_t retry_at_ms; /* 0: the topic exists; else its creation failed: try again then */
};

/*
 * The Kafka topics the Kafka thread has created or found to exist, and those whose
 * creation failed (with when to try again). Bounded: holding max_names names, it
 * forgets them all before it takes a new one.
 */
struct mqk_topics {
	struct mqk_topic_slot *slots;
	size_t slot_count; /* 0 or a power of 2 */
	size_t count;
	size_t max_names;
};

int topics__init(struct mqk_topics *t, size_t max_names);
void topics__free(struct mqk_topics *t);
/* Forgets every name. */
void topics__clear(struct mqk_topics *t);
/*
 * Is name in the set? If so, *retry_at_ms is 0 when the topic exists, or the monotonic
 * time (ms) after which a failed creation may be tried again.
 */
bool topics__get(const struct mqk_topics *t, const char *name, int64_t *retry_at_ms);
/*
 * Adds or updates name (copied). Returns 0; 1 when the set was full and forgot every
 * other name first; -1 when out of memory (the set is unchanged, or emptied).
 */
int topics__put(struct mqk_topics *t, const char *name, int64_t retry_at_ms);
size_t topics__count(const struct mqk_topics *t);

/* ---- commands: Kafka -> one device (docs/commands.md) ---------------------------------- */

/* The command path's counters (MQK_COMMAND_COUNTERS). */
struct mqk_cmd_counters {
	MQK_COMMAND_COUNTERS(MQK_COUNTER_FIELD)
};

enum mqk_cmd_state {
	MQK_CMD_QUEUED,    /* waiting for mosquitto's thread */
	MQK_CMD_DONE,      /* delivered, skipped, or its return/dead letter is in Kafka */
	MQK_CMD_RETURN,    /* targeted, not here: to go back to the router */
	MQK_CMD_DEAD,      /* to the dead-letter topic; reason says why */
	MQK_CMD_PRODUCING, /* its return or dead letter is with librdkafka */
};

/*
 * One command record on its way to a device. One allocation: the struct, then
 * client_id and topic. Owned by the hand-off queue from handoff__push until its thread
 * takes it off with handoff__pop (and frees it with its rkm); while its state is
 * MQK_CMD_QUEUED after handoff__take, mosquitto's thread may read it and set its state
 * (once, with release order).
 */
struct mqk_command {
	struct mqk_command *next;
	rd_kafka_message_t *rkm; /* the record: payload and headers are read from it */
	const char *client_id;   /* the target */
	const char *topic;       /* the MQTT topic; "" when dead on arrival */
	int hops;                /* its mqk.hops header */
	const char *reason;      /* MQK_CMD_DEAD: static text, the mqk.reason header */
	atomic_int state;        /* enum mqk_cmd_state */
};

/* A client came or went, for presence records. One allocation. */
struct mqk_presence_event {
	struct mqk_presence_event *next;
	int64_t timestamp_ms;
	bool connected;
	char client_id[];
};

/*
 * The queue between the commands thread and mosquitto's thread, in Kafka order. The
 * commands thread appends (handoff__push) and releases settled commands from the head;
 * mosquitto's thread takes what it has not seen yet (handoff__take). Commands are few
 * next to messages: a mutex is cheap enough, and mosquitto's thread only takes it when
 * `pending` says there is something.
 */
struct mqk_handoff {
	pthread_mutex_t lock;
	struct mqk_command *head; /* oldest not released */
	struct mqk_command *tail;
	struct mqk_command *next; /* oldest not taken by mosquitto's thread, or NULL */
	size_t count;             /* commands in the queue */
	atomic_bool pending;      /* next != NULL: lets the TICK skip the lock */
	struct mqk_presence_event *events, *events_tail; /* for the commands thread */
	atomic_uint_least64_t ticks; /* TICKs seen (deliver__tick, inbound__tick): the commands
					thread checks they come */
	int wake_fd; /* eventfd the commands thread sleeps on (also librdkafka's queues') */
};

int handoff__init(struct mqk_handoff *h);
/* Frees every command (destroying its record) and event left. */
void handoff__free(struct mqk_handoff *h);
/* Commands thread: appends cmd. Returns true when mosquitto's thread has to be woken. */
bool handoff__push(struct mqk_handoff *h, struct mqk_command *cmd);
/*
 * Mosquitto's thread: takes up to max commands not taken yet; returns the first and
 * sets *count. Follow ->next exactly *count - 1 times; each is mosquitto's thread's to
 * settle (its state) until then.
 */
struct mqk_command *handoff__take(struct mqk_handoff *h, size_t max, size_t *count);
/* Any thread: wakes the commands thread. */
void handoff__signal(struct mqk_handoff *h);
/* Commands thread: the oldest command, or NULL. */
struct mqk_command *handoff__head(struct mqk_handoff *h);
/* Commands thread: removes the head (settled: MQK_CMD_DONE) and returns it, for freeing. */
struct mqk_command *handoff__pop(struct mqk_handoff *h);
/* Mosquitto's thread: queues a presence event (copied) and wakes the commands thread. */
int handoff__push_event(struct mqk_handoff *h, const char *client_id, bool connected,
			int64_t timestamp_ms);
/* Commands thread: takes every queued event (a list it then owns). */
struct mqk_presence_event *handoff__take_events(struct mqk_handoff *h);

/* ---- who is connected here (mosquitto's thread) ------------------------------------ */

struct mqk_clients;

/* Returns NULL when out of memory. */
struct mqk_clients *clients__new(void);
void clients__free(struct mqk_clients *c);
/* MOSQ_EVT_BASIC_AUTH: client (not dereferenced) is connecting as id. 0, or -1 (no memory). */
int clients__connecting(struct mqk_clients *c, const void *client, const char *id);
/*
 * MOSQ_EVT_DISCONNECT for client. Calls gone(arg, id) when that was the id's last
 * connection counted as connected.
 */
void clients__disconnected(struct mqk_clients *c, const void *client,
			   void (*gone)(void *arg, const char *id), void *arg);
/*
 * TICK: the connections that were not refused since their BASIC_AUTH now count as
 * connected; calls came(arg, id) for each id that was connected nowhere here before.
 * O(1) when nothing connected.
 */
void clients__tick(struct mqk_clients *c, void (*came)(void *arg, const char *id), void *arg);
/* Is a client with this id connected here (and past its CONNECT)? */
bool clients__is_connected(const struct mqk_clients *c, const char *id);
/* How many distinct ids are connected here. */
size_t clients__count(const struct mqk_clients *c);

/* ---- delivery (mosquitto's thread) ---------------------------------------------------- */

/*
 * TICK: settles up to max queued commands: mosquitto_broker_publish to the connected
 * client with the record's v5 properties (MQK_CMD_DONE); not connected here: broadcast
 * skips (MQK_CMD_DONE, counted), targeted returns (MQK_CMD_RETURN). Wakes the commands
 * thread when it leaves anything for it. Returns how many it settled.
 */
size_t deliver__tick(struct mqk_handoff *h, const struct mqk_cmd_config *cc,
		     const struct mqk_clients *clients, struct mqk_cmd_counters *ctr, size_t max);
/*
 * mosquitto_broker_publish_copy, with the copy made by mosquitto_malloc. mosquitto 2.0's
 * own _copy allocates with calloc but the broker frees with its counting free, so every
 * payload sank $SYS/broker/heap/current (on 2.0.11 below zero, where it wraps around:
 * docs/mosquitto-2.0.21.md). The broker owns properties on success. Mosquitto's thread.
 */
struct mqtt5__property; /* mosquitto_property */
int deliver__publish(const char *clientid, const char *topic, size_t len, const void *payload,
		     int qos, bool retain, struct mqtt5__property *properties);

/* ---- presence records (commands thread) ---------------------------------------------- */

/*
 * The record for a client event: key "<broker>/<client>", a JSON value when connected,
 * NULL (a tombstone) when not. *key and *value are malloc'd, the caller's.
 * Returns 0, or -1 when out of memory.
 */
int presence__client_record(const struct mqk_origin *origin, const struct mqk_presence_event *ev,
			    char **key, size_t *key_len, char **value, size_t *value_len);
/* The record for the broker itself: key "<broker>", state "up" or "down". */
int presence__broker_record(const struct mqk_origin *origin, bool up, int64_t timestamp_ms,
			    char **key, size_t *key_len, char **value, size_t *value_len);

/* ---- the wake connection (commands thread) -------------------------------------------- */

struct mqk_wake {
	const char *who; /* set after wake__init: "inbound"; NULL: "commands" (its log lines) */
	int fd;         /* the connection, -1 when none */
	bool off;       /* commands_wake off */
	bool automatic; /* commands_wake auto: look for a listener */
	char host[256]; /* commands_wake host:port */
	char port[8];
	int64_t next_try_ms;    /* (re)connect not before */
	bool warned;            /* "cannot connect" logged */
	int64_t quiet_until_ms; /* no such warning before */
	int keepalive_s;        /* the connection's keepalive; 0: none */
	int max_keepalive_s;    /* mosquitto's Server Keep Alive (max_keepalive); 0: none */
	int64_t last_send_ms;   /* the last PINGREQ (or the CONNECT) */
	/* Random, made once: only the plugin's BASIC_AUTH accepts them (read by any thread). */
	char client_id[40];
	char password[40];
};

/* Parses commands_wake ("auto", "off", host:port) and makes the credentials. */
int wake__init(struct mqk_wake *w, const char *spec, char *errstr, size_t errstr_size);
/* Mosquitto's thread (BASIC_AUTH): are these the wake connection's credentials? */
bool wake__is_own(const struct mqk_wake *w, const char *username, const char *password);
/* Commands thread: ends mosquitto's wait now; connects first when needed. */
void wake__ping(struct mqk_wake *w, struct mqk_cmd_counters *ctr);
/* Commands thread: reads and drops PINGRESPs, notices a closed connection. */
void wake__drain(struct mqk_wake *w);
/* Commands thread: a PINGREQ when quiet for half of mosquitto's Server Keep Alive. */
void wake__keepalive(struct mqk_wake *w);
void wake__close(struct mqk_wake *w);

/* ---- redistribute mode: where a command not for this broker goes (commands thread) ---- */

struct mqk_redistributor;

/* The presence table and the hold queue, empty. NULL when out of memory. */
struct mqk_redistributor *redistribute__new(const struct mqk_cmd_config *cc,
					    const char *broker_id);
/*
 * Applies one presence record (the caller keeps rkm). Returns 0, or -1 when it is
 * malformed or memory ran out (the table unchanged, why in errstr).
 */
int redistribute__presence(struct mqk_redistributor *r, const rd_kafka_message_t *rkm,
			   char *errstr, size_t errstr_size);
/* Presence records applied so far: what a hold remembers of the table. */
uint64_t redistribute__seq(const struct mqk_redistributor *r);
/*
 * The back-channel topic of the broker the presence table places cmd's client at, in
 * buf (commands_topic_broker expanded), or NULL when it is known nowhere, or only here
 * with no news since seq (mosquitto's thread just found it not here).
 */
const char *redistribute__topic(const struct mqk_redistributor *r, const struct mqk_command *cmd,
				uint64_t seq, char *buf, size_t size);
/* Holds cmd until due_ms (monotonic); seq as for redistribute__topic. 0, or -1: no memory. */
int redistribute__hold(struct mqk_redistributor *r, struct mqk_command *cmd, int64_t due_ms,
		       uint64_t seq);
/* The oldest held command whose time came (and its seq), taken off the queue; or NULL. */
struct mqk_command *redistribute__due(struct mqk_redistributor *r, int64_t now_ms, uint64_t *seq);
/* Frees the table and the queue (not the commands held: the hand-off queue owns them). */
void redistribute__free(struct mqk_redistributor *r);

/* ---- the commands thread ------------------------------------------------------------- */

struct mqk_commands;

/*
 * Starts the command path: its consumer (cfg->commands.topic, consumer group), its
 * producer (returns, dead letters, presence) and the commands thread. Returns NULL
 * with one line in errstr (a librdkafka property refused, out of memory).
 */
struct mqk_commands *commands__new(const struct mqk_config *cfg, const struct mqk_origin *origin,
				   struct mqk_cmd_counters *ctr, char *errstr, size_t errstr_size);
struct mqk_handoff *commands__handoff(struct mqk_commands *c);
const struct mqk_wake *commands__wake(const struct mqk_commands *c);
/*
 * Asks the thread to stop (a "down" presence record, returns and presence records
 * flushed within timeout_ms) without waiting for it: the forwarding producer can flush
 * meanwhile. Mosquitto's thread.
 */
void commands__stop(struct mqk_commands *c, int timeout_ms);
/*
 * Stops the thread (commands__stop, unless done): a "down" presence record, the consumer closed
 * (its stored offsets committed), returns and presence records flushed within timeout_ms. Frees c.
 */
void commands__close(struct mqk_commands *c, int timeout_ms);

/* ---- inbound routes: Kafka -> MQTT subscribers (docs/inbound.md) ---------------------- */

/* The inbound path's counters (MQK_INBOUND_COUNTERS). */
struct mqk_inbound_counters {
	MQK_INBOUND_COUNTERS(MQK_COUNTER_FIELD)
};

/*
 * One inbound record on its way to subscribers. One allocation: this struct, then the
 * expanded MQTT topic. It travels through a struct mqk_handoff as its `cmd` (first
 * member: handoff.c frees the command pointer, which is this allocation): cmd.rkm is the
 * record, cmd.topic the expanded topic ("" with cmd.reason set when it could not be
 * expanded), cmd.client_id "". Owned as struct mqk_command is (handoff.c).
 */
struct mqk_inbound_msg {
	struct mqk_command cmd;
	int route;      /* index in cfg->inbound.routes; -1 (no route for its Kafka topic)
			   only with cmd.reason set: a record without a reason has its route */
	char cause[96]; /* cmd.reason points here (a cause of inbound.c's) */
};

struct mqk_inbound;

/*
 * Starts the inbound thread: its consumer (group cfg->inbound.group) of every inbound
 * route's Kafka topic, its wake connection, the hand-off queue. Returns NULL with one line
 * in errstr. Mosquitto's thread (init).
 */
struct mqk_inbound *inbound__new(const struct mqk_config *cfg, struct mqk_inbound_counters *ctr,
				 char *errstr, size_t errstr_size);
struct mqk_handoff *inbound__handoff(struct mqk_inbound *in);
/* The wake connection's credentials, for BASIC_AUTH (NULL in: none). */
const struct mqk_wake *inbound__wake(const struct mqk_inbound *in);
/* Stops the thread, closes the consumer (stored offsets committed), frees in (NULL: nothing). */
void inbound__close(struct mqk_inbound *in);

/*
 * TICK (mosquitto's thread): publishes up to max queued inbound records to every
 * subscriber (mosquitto_broker_publish, client id NULL) with their route's QoS and
 * retain, in queue order; skips (counts, logs rate-limited) those whose topic is not a
 * valid MQTT topic. Marks each settled and wakes the inbound thread. Returns how many.
 */
size_t inbound__tick(struct mqk_handoff *h, const struct mqk_inbound_config *ic,
		     struct mqk_inbound_counters *ctr, size_t max);

/* ---- statistics ----------------------------------------------------------------------- */

struct mqk_stats {
	struct mqk_counters totals;
	struct mqk_cmd_counters commands;    /* all zero when commands are off */
	struct mqk_journal_counters journal; /* all zero in memory durability */
	struct mqk_inbound_counters inbound; /* all zero without inbound routes */
	MQK_MESSAGE_COUNTERS(MQK_COUNTER_FIELD) /* mosquitto's thread's, counter__inc */
	time_t next_publish;
	char **topics; /* the $SYS topic of each published value, built once */
	int topic_count;
};

int stats__init(struct mqk_stats *st, const struct mqk_config *cfg);
/* The routes in force changed (reload.c): the $SYS topics are built again; values stay.
   0, or -1 (out of memory). */
int stats__routes_changed(struct mqk_stats *st, const struct mqk_config *cfg);
/* Publishes the counters under $SYS/broker/kafka when stats_interval has passed. */
void stats__tick(struct mqk_stats *st, const struct mqk_config *cfg, time_t now,
		 size_t buffered_bytes);
/* The counter lists of this header, in the order stats__each_counter visits them. */
enum mqk_counter_family {
	MQK_COUNTERS_MESSAGE, /* MQK_MESSAGE_COUNTERS: struct mqk_stats's own fields */
	MQK_COUNTERS_ROUTE,   /* MQK_ROUTE_COUNTERS: totals (stats.totals) and per route */
	MQK_COUNTERS_JOURNAL, /* MQK_JOURNAL_COUNTERS: stats.journal */
	MQK_COUNTERS_COMMAND, /* MQK_COMMAND_COUNTERS: stats.commands */
	MQK_COUNTERS_INBOUND, /* MQK_INBOUND_COUNTERS: stats.inbound */
	MQK_COUNTER_FAMILIES
};
/* One counter, as stats__each_counter hands it to its callback (strings valid during it). */
struct mqk_counter_info {
	enum mqk_counter_family family;
	size_t index;	       /* in its list: for stats__value, stats__route_counter */
	const char *help;      /* the list's HELP text */
	const char *sys_topic; /* $SYS/broker/kafka/...: per route, the totals' topic (routes
				  have .../routes/<name>/<counter>) */
	const char *metric;    /* mosquitto_kafka_..._total (per route, also
				  mosquitto_kafka_route_<counter>_total) */
};
/* Calls fn once per counter of the lists in this header, family by family, in order. */
void stats__each_counter(void (*fn)(void *arg, const struct mqk_counter_info *counter), void *arg);
/* The i-th counter of family f's totals in st (in the list's order). */
uint64_t stats__value(const struct mqk_stats *st, enum mqk_counter_family f, size_t i);
/* The i-th counter of MQK_ROUTE_COUNTERS in c (a route's, or the totals). */
uint64_t stats__route_counter(const struct mqk_counters *c, size_t i);
/* Logs the totals and each route's counters (at shutdown). */
void stats__log_summary(const struct mqk_stats *st, const struct mqk_config *cfg);
void stats__free(struct mqk_stats *st);

/* ---- metrics: Prometheus text, /healthz, the textfile (metrics.c, kstats.c) ---------- */

struct mqk_metrics;

/*
 * Starts what cfg->metrics_listen and cfg->metrics_textfile ask for: the HTTP listener
 * (libmicrohttpd, its own thread) and the textfile thread. buf: the plugin's, read by
 * other threads only through its atomics. Returns NULL with one line in errstr naming the
 * option and the cause (bad host, port in use, missing directory, ...). Mosquitto's
 * thread (init). The caller owns the result: metrics__free.
 */
struct mqk_metrics *metrics__new(const struct mqk_config *cfg, struct mqk_buffer *buf, char *errstr,
				 size_t errstr_size);
/*
 * TICK: when the second (now) changed, renders the metrics from st and cfg (the only place that
 * reads cfg->routes for them) and hands the text to the other threads (a pointer swap
 * under a mutex). Mosquitto's thread.
 */
void metrics__tick(struct mqk_metrics *m, const struct mqk_stats *st, const struct mqk_config *cfg,
		   bool commands_on, time_t now);
/* Renders the metrics into out (reset first). Mosquitto's thread. 0, or -1 (no memory). */
int metrics__render(struct mqk_metrics *m, const struct mqk_stats *st, const struct mqk_config *cfg,
		    bool commands_on, struct mqk_bytes *out);
/*
 * The /healthz verdict now: 200 or 503, with a one-line JSON body in body. Any thread:
 * it reads only atomics and librdkafka's parsed statistics.
 */
int metrics__health(struct mqk_metrics *m, char *body, size_t body_size);
/* Stops the listener and the textfile thread, frees m (NULL: nothing). Mosquitto's thread. */
void metrics__free(struct mqk_metrics *m);

/* Which Kafka client a statistics JSON is from. */
enum mqk_kclient { MQK_KCLIENT_PRODUCER, MQK_KCLIENT_COMMANDS, MQK_KCLIENT_COUNT };

/*
 * librdkafka's statistics (statistics.interval.ms), parsed with cJSON into a small
 * struct per client, kept under a mutex of kstats.c (one plugin per process).
 * kstats__enable(ms) before the clients are made: they set statistics.interval.ms to ms
 * (unless the admin set it) and the callback; 0 (the default): off.
 */
void kstats__enable(int interval_ms);
int kstats__interval_ms(void);
/* librdkafka's stats_cb: parses json (not kept). Returns 0. librdkafka's calling thread. */
int kstats__on_stats(rd_kafka_t *rk, char *json, size_t json_len, void *opaque);
/* Parses json as client's statistics and stores it. 0, or -1 (not librdkafka's JSON). */
int kstats__store(enum mqk_kclient client, const char *json, size_t len);
/* Renders the parsed statistics as Prometheus metrics with label broker="broker_id". */
void kstats__render(struct mqk_bytes *out, const char *broker_id);
/* CLOCK_REALTIME ms of the last statistics with a Kafka broker up; 0: never. Any thread. */
int64_t kstats__last_up_ms(void);
/* Forgets everything (cleanup, tests). */
void kstats__reset(void);

/*
 * A record's time inside the plugin, as Prometheus histograms (latency.c): one stage
 * a line, name and help; the metric is mosquitto_kafka_<name>_seconds.
 */
#define MQK_LATENCY_STAGES(X)                                                                      \
	X(capture_to_produce, "Seconds from mosquitto's receipt of a message to "                  \
			      "rd_kafka_producev of its record (delivered records).")             \
	X(produce_to_ack, "Seconds from rd_kafka_producev to the delivery report of a record "     \
			  "Kafka acknowledged.")                                                  \
	X(capture_to_append, "Seconds from mosquitto's receipt of a message to Kafka's append " \
			     "of its record (topics with message.timestamp.type=LogAppendTime).")
#define MQK_LATENCY_ENUM(name, help) MQK_LATENCY_##name,
enum mqk_latency_stage { MQK_LATENCY_STAGES(MQK_LATENCY_ENUM) MQK_LATENCY_COUNT };

/* Counts us (µs; negative counts as 0) in stage's histogram. Kafka thread (one writer). */
void latency__observe(enum mqk_latency_stage stage, int64_t us);
/*
 * The histogram bucket of us: the index of the first upper bound >= us (0 for us <= 100 µs),
 * or the number of bounds (+Inf) above the last. Any thread.
 */
size_t latency__bucket(int64_t us);
/*
 * Bracket one rd_kafka_poll call: the delivery reports it serves share one CLOCK_REALTIME
 * read (made at the first of them). Outside, each report reads its own. Kafka thread.
 */
void latency__round_begin(void);
void latency__round_end(void);
/*
 * The delivery report m of entry e, which Kafka acknowledged: observes every stage it
 * carries (capture_to_append only with LogAppendTime). Kafka thread, in on_delivery.
 */
void latency__acked(const struct mqk_entry *e, const rd_kafka_message_t *m);
/* Records observed in stage so far. Any thread. */
uint64_t latency__count(enum mqk_latency_stage stage);
/* Renders the histograms as Prometheus text with label broker="broker" (escaped). */
void latency__render(struct mqk_bytes *out, const char *broker);
/* Forgets everything (tests). */
void latency__reset(void);
/* Appends printf output to b (grown as needed). 0, or -1 (out of memory). */
int bytes__printf(struct mqk_bytes *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- logging -------------------------------------------------------------------------- */

/* A log line that may repeat once per message: logged at most once per interval. */
struct mqk_ratelimit {
	time_t last;
	uint64_t suppressed;
};

/* mosquitto_log_printf with the plugin's prefix. */
void log__printf(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same, unless rl logged within the last 10 s: then it only counts. */
void log__ratelimited(struct mqk_ratelimit *rl, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/*
 * Any thread: queues a line for log__drain (the next TICK). The ratelimited form's rl
 * must belong to the calling thread.
 */
void log__deferred(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log__deferred_ratelimited(struct mqk_ratelimit *rl, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Logs the queued lines. O(1) when there are none. */
void log__drain(void);
/* From now on this thread's log__printf and log__ratelimited lines are deferred (side.c). */
void log__defer_this_thread(void);
/*
 * A librdkafka log line (its log_cb: syslog level, facility, text) for mosquitto's log,
 * deferred; client ("" or "commands: ") says which client wrote it. Any thread.
 */
void log__librdkafka(const char *client, int level, const char *fac, const char *buf);
/* Any thread: may a rate-limited line be logged now? *suppressed: how many were not. */
bool log__ratelimit_pass(struct mqk_ratelimit *rl, uint64_t *suppressed);

/* ---- side.c: the plugin's threads on a descriptor table of their own ---------------- */

/*
 * mosquitto's thread, in init: starts the side thread, which unshares its descriptor
 * table and keeps, of mosquitto's descriptors, 0-2 and the `shared` ones (made by
 * mosquitto's thread, used by both sides); `eventfds` eventfds
 * are made ahead, shared, for side__eventfd. Returns 0 when the split is made, else -1
 * with the cause in why (the jobs then run on mosquitto's thread, as without a side).
 */
int side__start(const int *shared, int shared_count, int eventfds, char *why, size_t why_size);
/* mosquitto's thread: runs fn(arg) on the side and waits for it (init and cleanup only);
   without a split, on mosquitto's thread. Logs what fn logged. fn's return. */
int side__run(int (*fn)(void *), void *arg);
/* An eventfd that both sides may use under the same number: one made ahead by
   side__start if any is left, else a new one. The caller owns it (closes its copy). */
int side__eventfd(void);
/* mosquitto's thread: ends the side thread (its jobs done) and closes mosquitto's copies
   of the eventfds made ahead. No-op without a side. */
void side__stop(void);
/* Is the split made? */
bool side__split(void);

#endif
