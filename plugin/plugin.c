/*
 * mosquitto-kafka: a Mosquitto 2.x plugin that streams MQTT PUBLISHes into Kafka.
 *
 * Use in config with:
 *
 *   plugin /usr/lib/x86_64-linux-gnu/mosquitto_kafka.so
 *   plugin_opt_bootstrap_servers kafka1:9092,kafka2:9092
 *   plugin_opt_route_spectrum sensors/+/spectrum -> spectrum key=clientid
 *
 * DESIGN
 * ------
 * What. Every PUBLISH the broker accepts raises MOSQ_EVT_MESSAGE. The plugin checks
 * it against the exclude filters and the routes (route.c); for each route that
 * matches, a Kafka record is produced with the MQTT metadata in headers and the
 * payload (or a JSON envelope) as value. This is the study's architecture A3 without
 * the "hybrid client" processes: the broker itself is the Kafka producer, so there is
 * no extra hop, no extra subscriber queue to overflow, no process beside each broker.
 *
 * Threads. Mosquitto's functions are not thread-safe, so only mosquitto's own thread
 * calls them: MESSAGE, TICK, init and cleanup. The MESSAGE callback does the least it
 * can: it matches the routes and copies the message, once per matching route, into a
 * ring buffer (capture.c, buffer.c): a memcpy, no allocation, no lock, no system call
 * under load. The Kafka thread (producer.c) takes the entries in order, builds the
 * records (record.c: templates, headers, envelope), hands them to librdkafka, and
 * serves librdkafka's delivery reports, log lines and errors. Log lines from it wait
 * in a mailbox (log.c) that the TICK writes to mosquitto's log. Counters are atomics
 * with one writer each. librdkafka runs its network threads on its own.
 *
 * Cost. Measured with bench/hotpath.c: building a record and producing it takes a
 * dozen allocations and ~2-3 µs; the copy into the buffer is a fraction of that, and
 * it is all mosquitto's thread does. The TICK is O(1): a look at the log mailbox and,
 * once per stats_interval, the $SYS counters.
 *
 * Ordering. One buffer, one Kafka thread: records reach librdkafka in the order the
 * broker received the messages, librdkafka keeps that order per partition, and
 * idempotence keeps it through retries. With the default key (the client id) all
 * records of one device land in one partition in publish order.
 *
 * When Kafka is down. librdkafka keeps records in its queue and retries forever
 * (message.timeout.ms=0). When its queue is full, the Kafka thread stops taking
 * entries: records wait in the buffer. An entry leaves the buffer only when Kafka has
 * acknowledged its record, so when librdkafka's idempotent producer fails fatally
 * (librdkafka 2.0 can, on a leader failover) the Kafka thread replaces it and sends
 * everything not yet acknowledged again. When the buffer is full, plugin_opt_overflow
 * decides: reject (the callback returns an error, so QoS 1/2 gets no PUBACK and its
 * client sends it again), drop_new or drop_oldest; every drop is counted and logged.
 *
 * The journal (journal.c, durability journal, the default). The buffer's bytes live in
 * mmap'd segment files instead of RAM: the same memcpy, plus a checksum, and the page
 * cache keeps them when mosquitto dies. journal_fsync says when they reach the disk. At
 * start-up what Kafka had not acknowledged is replayed before anything new.
 *
 * Topics that do not exist. Kafka admins usually turn topic auto-creation off, and by
 * default (create_topics false) the plugin does not create topics either: a record for
 * a missing topic is failed by librdkafka, counted (failed) and logged as "topic does
 * not exist". With create_topics true the Kafka thread creates each topic through the
 * Admin API before it produces the first record for it (static topics at start, dynamic
 * ones when first needed), with topic_partitions and topic_replication_factor; records
 * wait in the buffer, in order, while it does (producer.c, topics.c).
 *
 * What is guaranteed. Mosquitto 2.0 acknowledges a PUBLISH as soon as MESSAGE returns;
 * it cannot wait for Kafka. A record is in the plugin's buffer before the PUBACK, and
 * from there it reaches Kafka at least once and in order per partition (exactly once
 * per producer session thanks to idempotence): with the journal across a crash of
 * mosquitto too, with durability memory while it runs. What is not guaranteed, and
 * counted: QoS 0 messages when the buffer is full (they cannot be refused), drops under
 * overflow drop_new/drop_oldest, and with durability memory the records still buffered
 * when mosquitto stops and Kafka does not take them within flush_timeout_ms. A QoS 2
 * PUBLISH retransmitted with DUP raises MESSAGE again (mosquitto 2.0.11 gives the plugin
 * no message id or DUP flag), so it is forwarded again: the pipeline is at-least-once,
 * and mqtt.seq tells the copies apart from losses.
 *
 * Routes changed without a restart (routes_file; reload.c). Mosquitto gives plugins no
 * options on a reload, so routes that change live in a file of the plugin's own, read
 * again on MOSQ_EVT_RELOAD (SIGHUP) and when the TICK, once a second, sees it changed.
 * A valid file swaps the routes in force on mosquitto's thread between two messages;
 * every route definition stays until shutdown, because buffer and journal entries name
 * theirs by index and the Kafka thread reads it when it builds the record. A route's
 * name carries its mqtt.seq and counters across changes.
 *
 * Commands, the other way (commands_topic; docs/commands.md). A second thread of the
 * plugin (commands.c) consumes command records and queues them (handoff.c); it wakes
 * mosquitto's loop with a PINGREQ on a loopback connection of its own (wake.c), and
 * the TICK publishes each command to its client id with mosquitto_broker_publish
 * (deliver.c), if that client is connected here (clients.c, kept from BASIC_AUTH and
 * DISCONNECT, since mosquitto 2.0 has no CONNECT event). What is not for this broker is
 * skipped (broadcast: every broker reads every command) or sent back to the router
 * (targeted: mqk-router picks the broker from the presence records, presence.c), or
 * forwarded by the commands thread to the back-channel topic of the broker that holds
 * the client (redistribute: the brokers share one consumer group and each reads every
 * presence record, redistribute.c). A command's offset is committed only once it is
 * settled: at-least-once.
 *
 * Inbound routes (inbound_<name>; docs/inbound.md). A third thread (inbound.c) consumes
 * the inbound routes' Kafka topics in a consumer group of this broker's own, expands each
 * record's MQTT topic and queues it (a hand-off queue of its own, handoff.c), waking
 * mosquitto's loop with a wake connection of its own; the TICK publishes each record to
 * every subscriber (inbound_publish.c, mosquitto_broker_publish without a client id). A
 * record's offset is committed once it is handed over; a full queue pauses the
 * partitions. Plugin publishes raise no MESSAGE event, so outbound routes never see them.
 *
 * Metrics (metrics_listen, metrics_textfile; metrics.c, kstats.c). The TICK renders the
 * Prometheus text at most once a second, on mosquitto's thread because the routes are
 * its own, and swaps it under a mutex for the HTTP thread (libmicrohttpd's) and the
 * textfile thread, which never read the configuration. /healthz is decided on the HTTP
 * thread from atomics: the oldest record Kafka has not acknowledged (the Kafka thread
 * keeps its capture time), the last acknowledgement, and librdkafka's statistics.
 *
 * Descriptor tables (side.c). Every thread above but mosquitto's is started by the side
 * thread, which unshared its descriptor table first: mosquitto's thread keeps a table of
 * its own, and Linux takes no file reference at each of its read()s and write()s (one
 * idle thread sharing it costs plain mosquitto 7-8 % of its ingest). So init opens the
 * journal and the buffer on mosquitto's thread, starts the side, and runs the rest of
 * its setup there (start_side); cleanup runs the teardown there (stop_side). Only the
 * eventfds and the journal's directory are in both tables (side.c says why).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#include "mosquitto_kafka.h"
#include "mqk.h"

#define PLUGIN_API_VERSION 5
#define EXPORT __attribute__((visibility("default")))

/* One loaded plugin. Owned by mosquitto's userdata pointer from init to cleanup. */
struct mqk_plugin {
	mosquitto_plugin_id_t *id;
	struct mqk_config cfg;
	struct mqk_origin origin;
	struct mqk_buffer buffer;    /* its bytes: a ring in memory, or the journal's files */
	struct mqk_journal *journal; /* durability journal; else NULL */
	struct mqk_producer *producer;
	struct mqk_stats stats;
	struct mqk_bytes props; /* the current message's properties, reused */
	int *matches;           /* route__match's output: MQK_MAX_ROUTES slots */
	/* routes_file (reload.c): what it was when last read, when it was last looked at. */
	struct mqk_file_id routes_file_id;
	time_t routes_file_checked;
	struct mqk_ratelimit rl_buffer_full;
	struct mqk_ratelimit rl_refused;
	/* Commands (cfg.commands.mode != MQK_CMD_OFF), docs/commands.md: */
	struct mqk_commands *commands;
	struct mqk_clients *clients;
	struct mqk_ratelimit rl_clients;
	struct mqk_metrics *metrics; /* metrics_listen or metrics_textfile; else NULL */
	/* Inbound routes (cfg.inbound.count > 0), docs/inbound.md: */
	struct mqk_inbound *inbound;
};

/* Commands delivered per TICK at most: a burst does not stall mosquitto's loop. */
#define DELIVER_PER_TICK 1000
/* Inbound records published per TICK at most, for the same reason. */
#define INBOUND_PER_TICK 1000

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * One message, one route: into the buffer, for the Kafka thread. Returns false when the
 * buffer is full and overflow reject refuses the message.
 */
static bool forward(struct mqk_plugin *pl, int index, const struct mqk_message *msg)
{
	struct mqk_route *route = &pl->cfg.routes[index];
	/* The number is taken even if the message is dropped: the gap shows the loss. */
	uint64_t seq = ++route->seq;
	const char *where = pl->journal ? "journal (journal_max_mb" : "buffer (buffer_mb";

	counter__inc(&route->counters.matched);
	int rc = capture__message(&pl->buffer, index, seq, msg);
	switch (rc) {
	case 0:
		return true;
	case -1:
		/* Kafka away long enough to fill the buffer: the overflow policy. */
		if (pl->cfg.overflow == MQK_OVERFLOW_REJECT && msg->qos > 0) {
			route->seq--; /* the client sends it again: it keeps its number */
			counter__inc(&route->counters.rejected);
			counter__inc(&pl->stats.totals.rejected);
			log__ratelimited(&pl->rl_buffer_full, MOSQ_LOG_ERR,
					 "the %s) is full (Kafka unreachable or too slow): QoS 1 "
					 "and 2 PUBLISHes are refused, their clients disconnected "
					 "to send them again (overflow reject); QoS 0 ones are not "
					 "forwarded",
					 where);
			return false;
		}
		if (pl->cfg.overflow == MQK_OVERFLOW_DROP_OLDEST) {
			atomic_store_explicit(&pl->buffer.want_room, true, memory_order_relaxed);
			buffer__wake(&pl->buffer);
		}
		counter__inc(&route->counters.buffer_full);
		counter__inc(&pl->stats.totals.buffer_full);
		log__ratelimited(
			&pl->rl_buffer_full, MOSQ_LOG_ERR,
			"the %s) is full (Kafka unreachable or too slow): new messages "
			"are not forwarded%s",
			where,
			pl->cfg.overflow == MQK_OVERFLOW_REJECT ? " (QoS 0, overflow reject)" : "");
		return true;
	default:
		atomic_fetch_add(&route->counters.refused, 1);
		atomic_fetch_add(&pl->stats.totals.refused, 1);
		log__ratelimited(&pl->rl_refused, MOSQ_LOG_ERR,
				 "route %s: a %u-byte message on '%.200s' is dropped: %s",
				 route->name, msg->payloadlen, msg->topic,
				 rc != -3 ? "out of memory"
				 : pl->journal
					 ? "larger than a journal segment (journal_segment_mb)"
					 : "larger than the whole buffer (buffer_mb)");
		return true;
	}
}

/* MOSQ_EVT_MESSAGE: the hot path. The event is the broker's and read-only. */
static int on_message(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_message *ev = event_data;
	struct mqk_plugin *pl = userdata;
	int count;

	(void)event;
	counter__inc(&pl->stats.received);
	struct mqk_message msg = {
		.topic = ev->topic,
		.client_id = mosquitto_client_id(ev->client),
		.username = mosquitto_client_username(ev->client),
		.payload = ev->payload,
		.payloadlen = ev->payloadlen,
		.qos = ev->qos,
		.retain = ev->retain,
	};
	if (msg.client_id == NULL) {
		msg.client_id = "";
	}
	switch (route__match(&pl->cfg, &msg, pl->matches, MQK_MAX_ROUTES, &count)) {
	case MQK_FORWARD:
		break;
	case MQK_NO_ROUTE:
		counter__inc(&pl->stats.unrouted);
		return MOSQ_ERR_SUCCESS;
	case MQK_EXCLUDED:
		counter__inc(&pl->stats.excluded);
		return MOSQ_ERR_SUCCESS;
	case MQK_RESERVED:
		return MOSQ_ERR_SUCCESS;
	}

	/* The one clock read per message: the record's timestamp, and latency.c's stamp. */
	int64_t received_us = now_us();
	msg.timestamp_ms = received_us / 1000;
	msg.timestamp_sub_us = (uint16_t)(received_us % 1000);
	/* Properties are read once for all routes (only MQTT v5 clients send them). */
	if (ev->properties && capture__props(ev->properties, &pl->props) == 0) {
		msg.props = pl->props.data;
		msg.props_len = (uint32_t)pl->props.len;
	}
	counter__inc(&pl->stats.totals.matched);
	bool accepted = true;
	for (int i = 0; i < count && accepted; i++) {
		accepted = forward(pl, pl->matches[i], &msg);
	}
	if (pl->journal != NULL && journal__sync_always(pl->journal)) {
		journal__sync(pl->journal, pl->buffer.wseg, pl->buffer.head_local);
	}
	/*
	 * overflow reject: no PUBACK/PUBREC, the connection closed (docs/journal.md, overflow;
	 * measured in docs/mosquitto-2.0.21.md, rows 7 and 8):
	 * a client with a persistent session sends it again. (MOSQ_ERR_ACL_DENIED would
	 * give v3.1.1 clients a PUBACK: a loss that looks like success.)
	 */
	if (!accepted) {
		return MOSQ_ERR_UNKNOWN;
	}
	/* Success whatever else happened to the records: the message goes to subscribers. */
	return MOSQ_ERR_SUCCESS;
}

/* A client's presence record goes through the commands thread. */
static void presence_event(struct mqk_plugin *pl, const char *id, bool connected)
{
	if (pl->cfg.commands.presence_topic == NULL) {
		return;
	}
	if (handoff__push_event(commands__handoff(pl->commands), id, connected, now_us() / 1000)) {
		log__ratelimited(&pl->rl_clients, MOSQ_LOG_ERR,
				 "commands: out of memory: a presence record is lost");
	}
}

static void client_came(void *arg, const char *id)
{
	presence_event(arg, id, true);
}

static void client_gone(void *arg, const char *id)
{
	presence_event(arg, id, false);
}

/*
 * MOSQ_EVT_BASIC_AUTH: mosquitto 2.0's only sign of a CONNECT. The plugin does not
 * decide (MOSQ_ERR_PLUGIN_DEFER), except for its own wake connection; it notes the
 * client, which counts as connected from the next TICK if it was not refused.
 */
static int on_basic_auth(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *ev = event_data;
	struct mqk_plugin *pl = userdata;
	const char *id = mosquitto_client_id(ev->client);

	(void)event;
	log__drain(); /* before mosquitto 2.0.15, per_listener_settings true has no TICK to */
	if ((pl->commands != NULL &&
	     wake__is_own(commands__wake(pl->commands), ev->username, ev->password)) ||
	    (pl->inbound != NULL &&
	     wake__is_own(inbound__wake(pl->inbound), ev->username, ev->password))) {
		return MOSQ_ERR_SUCCESS;
	}
	if (pl->clients == NULL) {
		return MOSQ_ERR_PLUGIN_DEFER; /* registered for the inbound wake connection only */
	}
	if (id != NULL && clients__connecting(pl->clients, ev->client, id)) {
		log__ratelimited(&pl->rl_clients, MOSQ_LOG_ERR,
				 "commands: out of memory: client '%s' will not get commands", id);
	}
	return MOSQ_ERR_PLUGIN_DEFER;
}

/* MOSQ_EVT_DISCONNECT: also for refused CONNECTs; the client struct tells them apart. */
static int on_disconnect(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_disconnect *ev = event_data;
	struct mqk_plugin *pl = userdata;

	(void)event;
	log__drain();
	/* Registered with commands only (register_callbacks), which come with pl->clients. */
	clients__disconnected(pl->clients, ev->client, client_gone, pl);
	return MOSQ_ERR_SUCCESS;
}

/*
 * Reads routes_file again and swaps the routes (reload.c), here on mosquitto's thread,
 * between two messages. why: what noticed it, for the log line.
 */
static void reload_routes(struct mqk_plugin *pl, const char *why)
{
	struct mqk_reload_result res;
	char errstr[2048];
	int defined = pl->cfg.route_count;

	(void)routes__file_changed(pl->cfg.routes_file, &pl->routes_file_id);
	pl->routes_file_checked = time(NULL);
	if (routes__reload(&pl->cfg, &res, errstr, sizeof(errstr))) {
		log__printf(MOSQ_LOG_ERR, "%s (%s): the routes are unchanged", errstr, why);
		return;
	}
	if (pl->cfg.route_count > defined && pl->journal != NULL) {
		/* New definitions: segments from now on name them (a restart maps by name). */
		if (journal__routes_changed(pl->journal) == 0) {
			pl->buffer.max_entry = journal__max_entry(pl->journal);
			buffer__next_segment(&pl->buffer);
		} else {
			log__printf(MOSQ_LOG_ERR,
				    "journal: cannot name the new routes in its segment header "
				    "(out of memory, or names longer than half a segment): after a "
				    "restart, records of routes added since start-up may be sent "
				    "under the wrong route");
		}
	}
	if (stats__routes_changed(&pl->stats, &pl->cfg)) {
		log__printf(MOSQ_LOG_ERR, "out of memory: $SYS/broker/kafka is not published");
	}
	log__printf(MOSQ_LOG_NOTICE,
		    "routes_file %s reloaded (%s): %d added, %d changed, %d removed, %d unchanged, "
		    "%d exclude%s; %d route%s in force",
		    pl->cfg.routes_file, why, res.added, res.changed, res.removed, res.unchanged,
		    res.excludes, res.excludes == 1 ? "" : "s", pl->cfg.active_count,
		    pl->cfg.active_count == 1 ? "" : "s");
}

/* MOSQ_EVT_RELOAD: mosquitto re-read its configuration (SIGHUP). */
static int on_reload(int event, void *event_data, void *userdata)
{
	struct mqk_plugin *pl = userdata;

	(void)event;
	(void)event_data; /* its options are the start-up ones: mosquitto does not re-read them */
	log__drain();
	reload_routes(pl, "mosquitto reloaded");
	return MOSQ_ERR_SUCCESS;
}

/*
 * MOSQ_EVT_TICK: ~10/s idle, once per loop iteration under load. O(1), never blocks:
 * logs what the Kafka thread left for mosquitto's thread, publishes the counters
 * when it is time.
 */
static int on_tick(int event, void *event_data, void *userdata)
{
	struct mqk_plugin *pl = userdata;

	(void)event;
	(void)event_data; /* all zero in 2.0.11 */
	log__drain();
	if (pl->commands != NULL) {
		struct mqk_handoff *h = commands__handoff(pl->commands);
		/* First who came since the last TICK: a command for them may be queued. */
		clients__tick(pl->clients, client_came, pl);
		deliver__tick(h, &pl->cfg.commands, pl->clients, &pl->stats.commands,
			      DELIVER_PER_TICK);
	}
	if (pl->inbound != NULL) {
		inbound__tick(inbound__handoff(pl->inbound), &pl->cfg.inbound, &pl->stats.inbound,
			      INBOUND_PER_TICK);
	}
	time_t now = time(NULL);
	/* routes_file: one stat() a second at most. */
	if (pl->cfg.routes_file != NULL && now != pl->routes_file_checked) {
		pl->routes_file_checked = now;
		struct mqk_file_id seen = pl->routes_file_id;
		if (routes__file_changed(pl->cfg.routes_file, &seen)) {
			reload_routes(pl, "the file changed");
		}
	}
	stats__tick(&pl->stats, &pl->cfg, now, buffer__used(&pl->buffer));
	metrics__tick(pl->metrics, &pl->stats, &pl->cfg, pl->commands != NULL, now);
	return MOSQ_ERR_SUCCESS;
}

static void log_configuration(const struct mqk_plugin *pl)
{
	const struct mqk_config *cfg = &pl->cfg;

	log__printf(MOSQ_LOG_NOTICE,
		    "version %s (librdkafka %s): broker_id %s, %d route%s, %d exclude%s, "
		    "bootstrap_servers %s, create_topics %s",
		    MQK_VERSION, rd_kafka_version_str(), cfg->broker_id, cfg->route_count,
		    cfg->route_count == 1 ? "" : "s", cfg->exclude_count,
		    cfg->exclude_count == 1 ? "" : "s", cfg->bootstrap_servers,
		    cfg->create_topics ? "true" : "false");
	if (cfg->kafka_config_file != NULL) {
		log__printf(MOSQ_LOG_NOTICE, "kafka_config_file %s: %d librdkafka propert%s",
			    cfg->kafka_config_file, cfg->kafka_file_prop_count,
			    cfg->kafka_file_prop_count == 1 ? "y" : "ies");
	}
	kafka_conf__warn(cfg);
	static const char *const overflow[] = {"reject", "drop_oldest", "drop_new"};
	if (pl->journal != NULL) {
		char fsync[32];
		snprintf(fsync, sizeof(fsync), "every %d ms", cfg->journal_fsync_ms);
		log__printf(MOSQ_LOG_NOTICE,
			    "durability journal: %s, %d MiB at most in %d MiB segments, fsync %s, "
			    "overflow %s",
			    cfg->journal_dir, cfg->journal_max_mb, cfg->journal_segment_mb,
			    cfg->journal_fsync_ms == 0  ? "always"
			    : cfg->journal_fsync_ms < 0 ? "never"
							: fsync,
			    overflow[cfg->overflow]);
	} else {
		log__printf(MOSQ_LOG_NOTICE,
			    "durability memory: a %d MiB buffer, overflow %s (records not yet in "
			    "Kafka are lost if mosquitto dies)",
			    cfg->buffer_mb, overflow[cfg->overflow]);
	}
	if (cfg->create_topics) {
		char rf[16];
		snprintf(rf, sizeof(rf), "%d", cfg->topic_replication_factor);
		log__printf(MOSQ_LOG_NOTICE,
			    "missing Kafka topics are created with %d partitions, replication "
			    "factor %s",
			    cfg->topic_partitions,
			    cfg->topic_replication_factor < 0 ? "the brokers' default" : rf);
	}
	if (cfg->routes_file != NULL) {
		log__printf(MOSQ_LOG_NOTICE,
			    "routes_file %s: %d route%s, %d exclude%s; read again on mosquitto's "
			    "reload (SIGHUP) and when it changes",
			    cfg->routes_file, cfg->route_count - cfg->conf_route_count,
			    cfg->route_count - cfg->conf_route_count == 1 ? "" : "s",
			    cfg->exclude_count - cfg->conf_exclude_count,
			    cfg->exclude_count - cfg->conf_exclude_count == 1 ? "" : "s");
	}
	for (int i = 0; i < cfg->route_count; i++) {
		const struct mqk_route *r = &cfg->routes[i];
		log__printf(
			MOSQ_LOG_NOTICE, "route %s: %s -> %s key=%s format=%s%s%s%s%s%s%s%s",
			r->name, r->filter, r->topic.source,
			r->key.part_count ? r->key.source : "none",
			r->format == MQK_FORMAT_JSON ? "json" : "raw",
			r->sel_clientid ? " clientid=" : "", r->sel_clientid ? r->sel_clientid : "",
			r->sel_username ? " username=" : "", r->sel_username ? r->sel_username : "",
			r->sel_qos ? (const char *[]){" qos=0", " qos=1", " qos=2"}[r->sel_qos - 1]
				   : "",
			r->sel_retain == 2   ? " retain=true"
			: r->sel_retain == 1 ? " retain=false"
					     : "",
			r->from_file ? " (routes_file)" : "");
	}
	if (cfg->route_count == 0) {
		log__printf(MOSQ_LOG_WARNING, "no plugin_opt_route_* given%s: nothing is forwarded",
			    cfg->routes_file ? " and none in routes_file" : "");
	}
	const struct mqk_cmd_config *cc = &cfg->commands;
	if (cc->mode != MQK_CMD_OFF) {
		log__printf(MOSQ_LOG_NOTICE,
			    "commands: %s mode, from Kafka topic %s (group %s), to %s QoS %d%s%s",
			    cc->mode == MQK_CMD_TARGETED       ? "targeted"
			    : cc->mode == MQK_CMD_REDISTRIBUTE ? "redistribute"
								: "broadcast",
			    cc->topic,
			    cc->group, cc->mqtt_topic.source, cc->qos,
			    cc->presence_topic ? ", presence to " : "",
			    cc->presence_topic ? cc->presence_topic : "");
		log__printf(MOSQ_LOG_NOTICE,
			    "commands: the plugin sees CONNECTs through BASIC_AUTH and leaves the "
			    "decision to the password_file or auth plugins; with neither, "
			    "mosquitto 2.0 refuses clients that give a username");
	}
	for (int i = 0; i < cfg->inbound.count; i++) {
		const struct mqk_inbound_route *r = &cfg->inbound.routes[i];
		log__printf(MOSQ_LOG_NOTICE, "inbound %s: Kafka %s -> MQTT %s qos=%d retain=%s",
			    r->name, r->kafka_topic, r->mqtt_topic.source, r->qos,
			    r->retain ? "true" : "false");
	}
	if (cfg->inbound.count > 0) {
		log__printf(MOSQ_LOG_NOTICE, "inbound: consumer group %s, wake %s",
			    cfg->inbound.group, cfg->inbound.wake);
	}
}

/*
 * (side) Starts what makes descriptors or threads: metrics, the producer and its Kafka
 * thread, commands, inbound. On failure, errstr says why; what started is left for
 * stop_side. MOSQ_ERR_SUCCESS, or MOSQ_ERR_INVAL.
 */
struct start_job {
	struct mqk_plugin *pl;
	char errstr[2048];
};

static int start_side(void *arg)
{
	struct start_job *job = arg;
	struct mqk_plugin *pl = job->pl;
	char *errstr = job->errstr;
	size_t errstr_size = sizeof(job->errstr);

	if (pl->cfg.metrics_listen != NULL || pl->cfg.metrics_textfile != NULL) {
		/* Before any Kafka client is made: they report their statistics to kstats.c. */
		kstats__enable(1000);
		pl->metrics = metrics__new(&pl->cfg, &pl->buffer, errstr, errstr_size);
		if (pl->metrics == NULL) {
			return MOSQ_ERR_INVAL;
		}
	}
	pl->producer = producer__new(&pl->cfg, &pl->buffer, &pl->origin, &pl->stats.totals, errstr,
				     errstr_size);
	if (pl->producer == NULL) {
		return MOSQ_ERR_INVAL;
	}
	if (pl->cfg.commands.mode != MQK_CMD_OFF) {
		pl->commands =
			commands__new(&pl->cfg, &pl->origin, &pl->stats.commands, errstr, errstr_size);
		if (pl->commands == NULL) {
			return MOSQ_ERR_INVAL;
		}
	}
	if (pl->cfg.inbound.count > 0) {
		pl->inbound = inbound__new(&pl->cfg, &pl->stats.inbound, errstr, errstr_size);
		if (pl->inbound == NULL) {
			return MOSQ_ERR_INVAL;
		}
	}
	return MOSQ_ERR_SUCCESS;
}

/*
 * (side) Stops and frees what start_side started, whatever it got to. The commands and
 * the producer flush at the same time, within job->timeout_ms; job->left: the records
 * the producer did not deliver. The job is the caller's (on its stack: side__run waits
 * for it, and stopping has no allocation that could fail).
 */
struct stop_job {
	struct mqk_plugin *pl;
	int timeout_ms; /* in: the flush bound */
	int left;	/* out: what producer__close left undelivered */
};

static int stop_side(void *arg)
{
	struct stop_job *job = arg;
	struct mqk_plugin *pl = job->pl;

	inbound__close(pl->inbound); /* what it queued and did not publish is read again */
	pl->inbound = NULL;
	commands__stop(pl->commands, job->timeout_ms);
	job->left = producer__close(pl->producer, job->timeout_ms);
	pl->producer = NULL;
	commands__close(pl->commands, 0);
	pl->commands = NULL;
	metrics__free(pl->metrics); /* its threads read the buffer, freed after */
	pl->metrics = NULL;
	return 0;
}

/*
 * Starts the side thread (side.c) with the descriptors both sides use: the buffer's
 * eventfd, the journal's, an eventfd for each hand-off queue. Logs whether the split is
 * made.
 */
static void split(struct mqk_plugin *pl)
{
	int shared[2];
	int n = 0;
	char why[256];

	shared[n++] = pl->buffer.wake_fd;
	if (pl->journal != NULL) {
		shared[n++] = journal__dir_fd(pl->journal);
	}
	int eventfds = (pl->cfg.commands.mode != MQK_CMD_OFF) + (pl->cfg.inbound.count > 0);
	if (side__start(shared, n, eventfds, why, sizeof(why)) == 0) {
		log__printf(MOSQ_LOG_NOTICE, "the plugin's threads run on a descriptor table of "
					     "their own: mosquitto's thread keeps its own");
	} else {
		log__printf(MOSQ_LOG_WARNING,
			    "the plugin's threads share mosquitto's descriptor table (%s): "
			    "correct, but each of mosquitto's reads and writes costs more",
			    why);
	}
}

static void plugin_free(struct mqk_plugin *pl)
{
	metrics__free(pl->metrics);
	kstats__reset();
	clients__free(pl->clients);
	stats__free(&pl->stats);
	buffer__free(&pl->buffer);
	journal__close(pl->journal, UINT64_MAX); /* cleanup closed it already, unless init failed */
	free(pl->props.data);
	free(pl->matches);
	options__free(&pl->cfg);
	free(pl);
}

/* Does the inbound thread's wake connection need the plugin's BASIC_AUTH? */
static bool inbound_auth(const struct mqk_plugin *pl)
{
	return pl->inbound != NULL && strcmp(pl->cfg.inbound.wake, "off") != 0;
}

/* MESSAGE and TICK; with commands, BASIC_AUTH and DISCONNECT too. 0, or -1. */
static int register_callbacks(struct mqk_plugin *pl)
{
	if (mosquitto_callback_register(pl->id, MOSQ_EVT_MESSAGE, on_message, NULL, pl) ||
	    mosquitto_callback_register(pl->id, MOSQ_EVT_TICK, on_tick, NULL, pl)) {
		return -1;
	}
	if (pl->cfg.routes_file != NULL &&
	    mosquitto_callback_register(pl->id, MOSQ_EVT_RELOAD, on_reload, NULL, pl)) {
		return -1;
	}
	if (pl->commands != NULL &&
	    (mosquitto_callback_register(pl->id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, pl) ||
	     mosquitto_callback_register(pl->id, MOSQ_EVT_DISCONNECT, on_disconnect, NULL, pl))) {
		return -1;
	}
	/* Inbound alone: BASIC_AUTH lets its wake connection in (allow_anonymous false). */
	if (pl->commands == NULL && inbound_auth(pl) &&
	    mosquitto_callback_register(pl->id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, pl)) {
		return -1;
	}
	return 0;
}

/* Unregisters what register_callbacks registered (what it did not is refused, harmless). */
static void unregister_callbacks(struct mqk_plugin *pl)
{
	mosquitto_callback_unregister(pl->id, MOSQ_EVT_MESSAGE, on_message, NULL);
	mosquitto_callback_unregister(pl->id, MOSQ_EVT_TICK, on_tick, NULL);
	if (pl->cfg.routes_file != NULL) {
		mosquitto_callback_unregister(pl->id, MOSQ_EVT_RELOAD, on_reload, NULL);
	}
	if (pl->commands != NULL) {
		mosquitto_callback_unregister(pl->id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
		mosquitto_callback_unregister(pl->id, MOSQ_EVT_DISCONNECT, on_disconnect, NULL);
	} else if (inbound_auth(pl)) {
		mosquitto_callback_unregister(pl->id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
	}
}

EXPORT int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for (int i = 0; i < supported_version_count; i++) {
		if (supported_versions[i] == PLUGIN_API_VERSION) {
			return PLUGIN_API_VERSION;
		}
	}
	return -1;
}

EXPORT int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
				 struct mosquitto_opt *options, int option_count)
{
	/* Aligned: the buffer's positions live on cache lines of their own (mqk.h). */
	struct mqk_plugin *pl = aligned_alloc(MQK_CACHE_LINE, sizeof(*pl));
	char errstr[2048];

	if (pl == NULL) {
		log__printf(MOSQ_LOG_ERR, "out of memory");
		return MOSQ_ERR_NOMEM;
	}
	memset(pl, 0, sizeof(*pl));
	pl->id = identifier;
	pl->buffer.wake_fd = -1;
	if (options__parse(&pl->cfg, options, option_count, errstr, sizeof(errstr))) {
		log__printf(MOSQ_LOG_ERR, "%s", errstr);
		plugin_free(pl);
		return MOSQ_ERR_INVAL;
	}
	record__origin_init(&pl->origin, pl->cfg.broker_id, now_us());
	pl->matches = calloc(MQK_MAX_ROUTES, sizeof(int));
	if (pl->cfg.routes_file != NULL) {
		(void)routes__file_changed(pl->cfg.routes_file, &pl->routes_file_id);
		pl->routes_file_checked = time(NULL);
	}
	if (pl->matches == NULL || routes__start(&pl->cfg) || stats__init(&pl->stats, &pl->cfg)) {
		log__printf(MOSQ_LOG_ERR, "out of memory");
		plugin_free(pl);
		return MOSQ_ERR_NOMEM;
	}
	if (pl->cfg.durability == MQK_DURABILITY_JOURNAL) {
		pl->journal = journal__open(&pl->cfg, &pl->origin, &pl->stats.journal, errstr,
					    sizeof(errstr));
		if (pl->journal == NULL) {
			log__printf(MOSQ_LOG_ERR, "%s", errstr);
			plugin_free(pl);
			return MOSQ_ERR_INVAL;
		}
	}
	if (pl->journal ? buffer__init_journal(&pl->buffer, pl->journal)
			: buffer__init(&pl->buffer, (size_t)pl->cfg.buffer_mb << 20)) {
		log__printf(MOSQ_LOG_ERR, "out of memory");
		plugin_free(pl);
		return MOSQ_ERR_NOMEM;
	}
	/* Records replayed from the journal wait too (the metrics' buffer_records). */
	atomic_store(&pl->buffer.committed, counter__get(&pl->stats.journal.replayed));
	if (pl->cfg.commands.mode != MQK_CMD_OFF && (pl->clients = clients__new()) == NULL) {
		log__printf(MOSQ_LOG_ERR, "out of memory");
		plugin_free(pl);
		return MOSQ_ERR_NOMEM;
	}
	/* From here on, threads and their descriptors are the side's (side.c). */
	split(pl);
	struct start_job *job = malloc(sizeof(*job));
	int rc = MOSQ_ERR_NOMEM;
	if (job != NULL) {
		job->pl = pl;
		snprintf(job->errstr, sizeof(job->errstr), "out of memory");
		rc = side__run(start_side, job);
		if (rc != MOSQ_ERR_SUCCESS) {
			log__printf(MOSQ_LOG_ERR, "%s", job->errstr);
		}
		free(job);
	} else {
		log__printf(MOSQ_LOG_ERR, "out of memory");
	}
	if (rc == MOSQ_ERR_SUCCESS && register_callbacks(pl)) {
		log__printf(MOSQ_LOG_ERR,
			    "cannot register callbacks (is the plugin loaded twice?)");
		unregister_callbacks(pl);
		rc = MOSQ_ERR_INVAL;
	}
	if (rc != MOSQ_ERR_SUCCESS) {
		struct stop_job stop = {.pl = pl, .timeout_ms = 0};
		side__run(stop_side, &stop);
		side__stop();
		plugin_free(pl);
		return rc;
	}
	log_configuration(pl);
	*userdata = pl;
	return MOSQ_ERR_SUCCESS;
}

EXPORT int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	struct mqk_plugin *pl = userdata;
	struct stop_job stop = {.pl = pl};
	int left;

	(void)options;
	(void)option_count;
	if (pl == NULL) {
		return MOSQ_ERR_SUCCESS;
	}
	unregister_callbacks(pl);
	/*
	 * No DISCONNECT comes for the clients still connected: the "down" presence record says
	 * they are gone. Both threads flush at the same time, within flush_timeout_ms. On the
	 * side: its threads' descriptors are closed there (side.c).
	 */
	stop.timeout_ms = pl->cfg.flush_timeout_ms;
	side__run(stop_side, &stop);
	side__stop();
	left = stop.left;
	if (pl->journal != NULL) {
		log__printf(left ? MOSQ_LOG_WARNING : MOSQ_LOG_NOTICE,
			    "shutdown: %d records not delivered to Kafka%s", left,
			    left ? " yet: they stay in the journal and are sent at the next start"
				 : "");
		journal__close(pl->journal, pl->buffer.tail_local);
		pl->journal = NULL;
	} else {
		log__printf(left ? MOSQ_LOG_ERR : MOSQ_LOG_NOTICE,
			    "shutdown: %d records not delivered to Kafka%s", left,
			    left ? " within flush_timeout_ms: they are lost" : "");
	}
	stats__log_summary(&pl->stats, &pl->cfg);
	plugin_free(pl);
	return MOSQ_ERR_SUCCESS;
}
