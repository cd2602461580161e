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
 * matches it builds a Kafka record (record.c: key, headers with the MQTT metadata,
 * the payload or a JSON envelope) and hands it to librdkafka (producer.c). This is
 * the study's architecture A3 without the "hybrid client" processes: the broker
 * itself is the Kafka producer, so there is no extra hop, no extra subscriber queue
 * to overflow, and no process to run beside each broker.
 *
 * Threads. Mosquitto's functions are not thread-safe, so the plugin touches the
 * broker only from mosquitto's own thread: MESSAGE, TICK, init and cleanup. librdkafka
 * runs its network threads on its own. One thread is the plugin's, the delivery
 * thread (producer.c): it serves librdkafka's main queue (delivery reports, log lines,
 * errors), counts deliveries in two atomic counters and leaves log lines in a mailbox
 * (log.c) that the TICK writes to mosquitto's log. Everything else (routes, the other
 * counters, rate limits, $SYS) belongs to mosquitto's thread and has no locks.
 *
 * Cost. The MESSAGE callback never blocks: matching walks the filters with
 * mosquitto's own matcher, templates are compiled at start-up, strings are expanded
 * into reused buffers, and rd_kafka_producev only enqueues (it copies the payload,
 * which stays the broker's); destroying delivered records is the delivery thread's
 * work. The TICK does O(1) work: a look at the log mailbox, and the $SYS counters
 * once per stats_interval.
 *
 * Ordering. librdkafka keeps the order of records per partition, and idempotence
 * keeps it through retries. With the default key (the client id) all records of one
 * device land in one partition in the order the broker received them.
 *
 * When Kafka is down. librdkafka keeps records in its queue and retries forever
 * (message.timeout.ms=0) until Kafka is back; nothing is dropped while the queue has
 * room (queue.buffering.max.*). When it is full, producev refuses the record: it is
 * counted (queue_full), logged at most every 10 s, and lost. That refusal is handled
 * in forward() below, the one place a local journal will take over.
 *
 * What is guaranteed. Mosquitto 2.0 acknowledges a PUBLISH as soon as MESSAGE returns;
 * it cannot wait for Kafka. A record is in librdkafka's queue before the PUBACK, and
 * from there it reaches Kafka at least once and in order per partition (exactly once
 * per producer session thanks to idempotence) while the broker keeps running. What is
 * not guaranteed, and counted: records refused when the queue is full, and records
 * still queued when mosquitto stops and Kafka does not take them within
 * flush_timeout_ms (logged at shutdown). A QoS 2 PUBLISH retransmitted with DUP raises
 * MESSAGE again (mosquitto 2.0.11 gives the plugin no message id or DUP flag), so it
 * is forwarded again: the pipeline is at-least-once, and mqtt.seq tells the copies
 * apart from losses.
 */
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
	struct mqk_producer *producer;
	struct mqk_stats stats;
	struct mqk_scratch scratch;
	int *matches; /* route__match's output: one slot per route */
	struct mqk_ratelimit rl_queue_full;
	struct mqk_ratelimit rl_bad_topic;
	struct mqk_ratelimit rl_refused;
};

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Counts a record that was never produced, for its route and in the totals. */
#define COUNT(pl, route, field) ((route)->counters.field++, (pl)->stats.totals.field++)

/* One message, one route: build the record and hand it to the producer. */
static void forward(struct mqk_plugin *pl, struct mqk_route *route, const struct mqk_message *msg)
{
	struct mqk_record rec;
	rd_kafka_resp_err_t err;

	route->counters.matched++;
	switch (record__build(&rec, route, msg, &pl->origin, &pl->scratch)) {
	case MQK_BUILD_OK:
		break;
	case MQK_BUILD_BAD_TOPIC:
		COUNT(pl, route, bad_topic);
		log__ratelimited(&pl->rl_bad_topic, MOSQ_LOG_WARNING,
				 "route %s: '%s' from client '%s' gives an invalid Kafka topic "
				 "name for '%s': not forwarded",
				 route->name, msg->topic, msg->client_id, route->topic.source);
		return;
	case MQK_BUILD_REFUSED:
		COUNT(pl, route, refused);
		log__ratelimited(&pl->rl_refused, MOSQ_LOG_ERR,
				 "route %s: could not build a record for '%s' (out of memory, or "
				 "a key over %zu bytes): not forwarded",
				 route->name, msg->topic, pl->scratch.key_size);
		return;
	}

	err = producer__send(pl->producer, &rec);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		route->counters.produced++;
		pl->stats.totals.produced++;
		return;
	}
	record__discard(&rec);
	/* The seam for a local journal: a record librdkafka would not take. */
	if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
		COUNT(pl, route, queue_full);
		log__ratelimited(&pl->rl_queue_full, MOSQ_LOG_ERR,
				 "librdkafka's queue is full (Kafka unreachable or too slow; see "
				 "kafka.queue.buffering.max.messages/kbytes): records are dropped");
	} else if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
		COUNT(pl, route, too_large);
		log__ratelimited(&pl->rl_refused, MOSQ_LOG_ERR,
				 "route %s: a %zu-byte record for '%s' is over message.max.bytes: "
				 "not forwarded",
				 route->name, rec.value_len, msg->topic);
	} else {
		COUNT(pl, route, refused);
		log__ratelimited(&pl->rl_refused, MOSQ_LOG_ERR,
				 "route %s: librdkafka refused a record for '%s': %s", route->name,
				 msg->topic, rd_kafka_err2str(err));
	}
}

/* MOSQ_EVT_MESSAGE: the hot path. The event is the broker's and read-only. */
static int on_message(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_message *ev = event_data;
	struct mqk_plugin *pl = userdata;
	int count;

	(void)event;
	pl->stats.received++;
	switch (route__match(&pl->cfg, ev->topic, pl->matches, pl->cfg.route_count, &count)) {
	case MQK_FORWARD:
		break;
	case MQK_NO_ROUTE:
		pl->stats.unrouted++;
		return MOSQ_ERR_SUCCESS;
	case MQK_EXCLUDED:
		pl->stats.excluded++;
		return MOSQ_ERR_SUCCESS;
	case MQK_RESERVED:
		return MOSQ_ERR_SUCCESS;
	}

	const struct mqk_message msg = {
		.topic = ev->topic,
		.client_id = mosquitto_client_id(ev->client),
		.username = mosquitto_client_username(ev->client),
		.payload = ev->payload,
		.payloadlen = ev->payloadlen,
		.qos = ev->qos,
		.retain = ev->retain,
		.timestamp_ms = now_us() / 1000,
		.properties = ev->properties,
	};
	pl->stats.totals.matched++;
	for (int i = 0; i < count; i++) {
		forward(pl, &pl->cfg.routes[pl->matches[i]], &msg);
	}
	/* Success whatever happened to the records: the message still goes to subscribers. */
	return MOSQ_ERR_SUCCESS;
}

/*
 * MOSQ_EVT_TICK: ~10/s idle, once per loop iteration under load. O(1), never blocks:
 * logs what the delivery thread left for mosquitto's thread, publishes the counters
 * when it is time.
 */
static int on_tick(int event, void *event_data, void *userdata)
{
	struct mqk_plugin *pl = userdata;

	(void)event;
	(void)event_data; /* all zero in 2.0.11 */
	log__drain();
	stats__tick(&pl->stats, &pl->cfg, time(NULL));
	return MOSQ_ERR_SUCCESS;
}

static void log_configuration(const struct mqk_plugin *pl)
{
	const struct mqk_config *cfg = &pl->cfg;

	log__printf(MOSQ_LOG_NOTICE,
		    "version %s (librdkafka %s): broker_id %s, %d route%s, %d exclude%s, "
		    "bootstrap_servers %s",
		    MQK_VERSION, rd_kafka_version_str(), cfg->broker_id, cfg->route_count,
		    cfg->route_count == 1 ? "" : "s", cfg->exclude_count,
		    cfg->exclude_count == 1 ? "" : "s", cfg->bootstrap_servers);
	for (int i = 0; i < cfg->route_count; i++) {
		const struct mqk_route *r = &cfg->routes[i];
		log__printf(MOSQ_LOG_NOTICE, "route %s: %s -> %s key=%s format=%s", r->name,
			    r->filter, r->topic.source, r->key.part_count ? r->key.source : "none",
			    r->format == MQK_FORMAT_JSON ? "json" : "raw");
	}
	if (cfg->route_count == 0) {
		log__printf(MOSQ_LOG_WARNING, "no plugin_opt_route_* given: nothing is forwarded");
	}
}

static void plugin_free(struct mqk_plugin *pl)
{
	stats__free(&pl->stats);
	record__scratch_free(&pl->scratch);
	free(pl->matches);
	options__free(&pl->cfg);
	free(pl);
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
	struct mqk_plugin *pl = calloc(1, sizeof(*pl));
	char errstr[2048];

	if (pl == NULL) {
		log__printf(MOSQ_LOG_ERR, "out of memory");
		return MOSQ_ERR_NOMEM;
	}
	pl->id = identifier;
	if (options__parse(&pl->cfg, options, option_count, errstr, sizeof(errstr))) {
		log__printf(MOSQ_LOG_ERR, "%s", errstr);
		plugin_free(pl);
		return MOSQ_ERR_INVAL;
	}
	record__origin_init(&pl->origin, pl->cfg.broker_id, now_us());
	pl->matches = calloc((size_t)pl->cfg.route_count + 1, sizeof(int));
	if (pl->matches == NULL || record__scratch_init(&pl->scratch) ||
	    stats__init(&pl->stats, &pl->cfg)) {
		log__printf(MOSQ_LOG_ERR, "out of memory");
		plugin_free(pl);
		return MOSQ_ERR_NOMEM;
	}
	pl->producer = producer__new(&pl->cfg, &pl->stats.totals, errstr, sizeof(errstr));
	if (pl->producer == NULL) {
		log__printf(MOSQ_LOG_ERR, "%s", errstr);
		plugin_free(pl);
		return MOSQ_ERR_INVAL;
	}
	if (mosquitto_callback_register(identifier, MOSQ_EVT_MESSAGE, on_message, NULL, pl) ||
	    mosquitto_callback_register(identifier, MOSQ_EVT_TICK, on_tick, NULL, pl)) {
		log__printf(MOSQ_LOG_ERR, "cannot register callbacks (is the plugin loaded twice?)");
		mosquitto_callback_unregister(identifier, MOSQ_EVT_MESSAGE, on_message, NULL);
		producer__close(pl->producer, 0);
		plugin_free(pl);
		return MOSQ_ERR_INVAL;
	}
	log_configuration(pl);
	*userdata = pl;
	return MOSQ_ERR_SUCCESS;
}

EXPORT int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options,
				    int option_count)
{
	struct mqk_plugin *pl = userdata;
	int left;

	(void)options;
	(void)option_count;
	if (pl == NULL) {
		return MOSQ_ERR_SUCCESS;
	}
	mosquitto_callback_unregister(pl->id, MOSQ_EVT_MESSAGE, on_message, NULL);
	mosquitto_callback_unregister(pl->id, MOSQ_EVT_TICK, on_tick, NULL);
	left = producer__close(pl->producer, pl->cfg.flush_timeout_ms);
	log__printf(left ? MOSQ_LOG_ERR : MOSQ_LOG_NOTICE,
		    "shutdown: %d records not delivered to Kafka%s", left,
		    left ? " within flush_timeout_ms: they are lost" : "");
	stats__log_summary(&pl->stats, &pl->cfg);
	plugin_free(pl);
	return MOSQ_ERR_SUCCESS;
}
