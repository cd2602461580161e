/*
 * kstats.c - librdkafka's own view of Kafka, for the metrics: its statistics JSON
 * (statistics.interval.ms, stats_cb), parsed with cJSON into a small struct per client.
 *
 * librdkafka calls stats_cb from the thread that serves the client's main queue: the
 * Kafka thread for the producer (rd_kafka_poll), the commands thread for the consumer.
 * The JSON is parsed there, outside any lock; the new struct replaces the old one under
 * a mutex (a pointer swap). Mosquitto's thread renders it once a second (metrics.c)
 * under the same mutex; the HTTP thread reads only last_up_ms, an atomic.
 *
 * What is kept, per Kafka broker the client knows by id (nodeid >= 0; the bootstrap
 * entries, nodeid -1, and the consumer's logical GroupCoordinator are left out): its state (UP or
 * not), rtt avg and p99 (µs in the JSON, seconds here), requests waiting to be sent (outbuf_cnt)
 * and waiting for an answer (waitresp_cnt), txerrs, rxerrs, req_timeouts; for the consumer,
 * consumer_lag of each assigned partition (partition -1, librdkafka's internal one, and unknown
 * lags, -1, are left out). Both librdkafka 2.0.2 and 2.8.0 write these fields under these names.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "mqk.h"

struct kbroker {
	char name[160]; /* librdkafka's "name": host:port/nodeid */
	int nodeid;
	bool up;
	double rtt_avg_s, rtt_p99_s;
	int64_t outbuf_cnt, waitresp_cnt, txerrs, rxerrs, req_timeouts;
};

struct klag {
	char topic[256];
	int partition;
	int64_t lag;
};

/* One client's parsed statistics. One allocation each for the struct and the arrays. */
struct kclient {
	struct kbroker *brokers;
	int broker_count;
	struct klag *lags;
	int lag_count;
};

static struct {
	pthread_mutex_t lock;
	struct kclient *clients[MQK_KCLIENT_COUNT]; /* under lock; NULL: none yet */
	atomic_int interval_ms;
	atomic_int_least64_t last_up_ms;
} ks = {.lock = PTHREAD_MUTEX_INITIALIZER};

static const char *const client_names[MQK_KCLIENT_COUNT] = {"producer", "commands"};

void kstats__enable(int interval_ms)
{
	atomic_store(&ks.interval_ms, interval_ms);
}

int kstats__interval_ms(void)
{
	return atomic_load(&ks.interval_ms);
}

int64_t kstats__last_up_ms(void)
{
	return atomic_load(&ks.last_up_ms);
}

static void kclient_free(struct kclient *k)
{
	if (k != NULL) {
		free(k->brokers);
		free(k->lags);
		free(k);
	}
}

void kstats__reset(void)
{
	pthread_mutex_lock(&ks.lock);
	for (int i = 0; i < MQK_KCLIENT_COUNT; i++) {
		kclient_free(ks.clients[i]);
		ks.clients[i] = NULL;
	}
	pthread_mutex_unlock(&ks.lock);
	atomic_store(&ks.last_up_ms, 0);
	atomic_store(&ks.interval_ms, 0);
}

static int64_t get_int(const cJSON *obj, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
	return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
}

static void parse_brokers(struct kclient *k, const cJSON *brokers)
{
	const cJSON *b;
	int n = 0;

	cJSON_ArrayForEach(b, brokers)
	{
		n++;
	}
	k->brokers = calloc((size_t)n + 1, sizeof(*k->brokers));
	if (k->brokers == NULL) {
		return;
	}
	cJSON_ArrayForEach(b, brokers)
	{
		const cJSON *name = cJSON_GetObjectItemCaseSensitive(b, "name");
		const cJSON *state = cJSON_GetObjectItemCaseSensitive(b, "state");
		const cJSON *rtt = cJSON_GetObjectItemCaseSensitive(b, "rtt");
		const cJSON *source = cJSON_GetObjectItemCaseSensitive(b, "source");
		int nodeid = (int)get_int(b, "nodeid");
		/* The consumer's "GroupCoordinator" is a logical alias of a real broker. */
		if (nodeid < 0 || !cJSON_IsString(name) ||
		    (cJSON_IsString(source) && (!strcmp(source->valuestring, "logical") ||
						!strcmp(source->valuestring, "internal")))) {
			continue;
		}
		struct kbroker *kb = &k->brokers[k->broker_count++];
		snprintf(kb->name, sizeof(kb->name), "%s", name->valuestring);
		kb->nodeid = nodeid;
		kb->up = cJSON_IsString(state) && !strcmp(state->valuestring, "UP");
		kb->rtt_avg_s = (double)get_int(rtt, "avg") / 1e6;
		kb->rtt_p99_s = (double)get_int(rtt, "p99") / 1e6;
		kb->outbuf_cnt = get_int(b, "outbuf_cnt");
		kb->waitresp_cnt = get_int(b, "waitresp_cnt");
		kb->txerrs = get_int(b, "txerrs");
		kb->rxerrs = get_int(b, "rxerrs");
		kb->req_timeouts = get_int(b, "req_timeouts");
	}
}

static void parse_lags(struct kclient *k, const cJSON *topics)
{
	const cJSON *t, *p;
	int n = 0;

	cJSON_ArrayForEach(t, topics)
	{
		cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(t, "partitions"))
		{
			n++;
		}
	}
	k->lags = calloc((size_t)n + 1, sizeof(*k->lags));
	if (k->lags == NULL) {
		return;
	}
	cJSON_ArrayForEach(t, topics)
	{
		cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(t, "partitions"))
		{
			const cJSON *lag = cJSON_GetObjectItemCaseSensitive(p, "consumer_lag");
			int partition = (int)get_int(p, "partition");
			if (partition < 0 || !cJSON_IsNumber(lag) || lag->valuedouble < 0 ||
			    t->string == NULL) {
				continue;
			}
			struct klag *kl = &k->lags[k->lag_count++];
			snprintf(kl->topic, sizeof(kl->topic), "%s", t->string);
			kl->partition = partition;
			kl->lag = (int64_t)lag->valuedouble;
		}
	}
}

int kstats__store(enum mqk_kclient client, const char *json, size_t len)
{
	cJSON *root = cJSON_ParseWithLength(json, len);
	struct kclient *k, *old;
	bool up = false;

	if (root == NULL || !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(root, "brokers"))) {
		cJSON_Delete(root);
		return -1;
	}
	k = calloc(1, sizeof(*k));
	if (k == NULL) {
		cJSON_Delete(root);
		return -1;
	}
	parse_brokers(k, cJSON_GetObjectItemCaseSensitive(root, "brokers"));
	if (client == MQK_KCLIENT_COMMANDS) {
		parse_lags(k, cJSON_GetObjectItemCaseSensitive(root, "topics"));
	}
	cJSON_Delete(root);
	for (int i = 0; i < k->broker_count; i++) {
		up = up || k->brokers[i].up;
	}
	if (up && client == MQK_KCLIENT_PRODUCER) {
		atomic_store(&ks.last_up_ms, mqk_realtime_ms());
	}
	pthread_mutex_lock(&ks.lock);
	old = ks.clients[client];
	ks.clients[client] = k;
	pthread_mutex_unlock(&ks.lock);
	kclient_free(old);
	return 0;
}

int kstats__on_stats(rd_kafka_t *rk, char *json, size_t json_len, void *opaque)
{
	(void)opaque;
	kstats__store(rd_kafka_type(rk) == RD_KAFKA_CONSUMER ? MQK_KCLIENT_COMMANDS
							     : MQK_KCLIENT_PRODUCER,
		      json, json_len);
	return 0; /* librdkafka frees json */
}

int bytes__printf(struct mqk_bytes *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		size_t room = b->size - b->len;
		va_start(ap, fmt);
		n = vsnprintf(b->data ? b->data + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			return -1;
		}
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return 0;
		}
		size_t size = b->size ? b->size * 2 : 4096;
		while (size - b->len <= (size_t)n) {
			size *= 2;
		}
		char *data = realloc(b->data, size);
		if (data == NULL) {
			return -1;
		}
		b->data = data;
		b->size = size;
	}
}

/* One HELP/TYPE header. */
static void header(struct mqk_bytes *out, const char *metric, const char *type, const char *help)
{
	bytes__printf(out, "# HELP %s %s\n# TYPE %s %s\n", metric, help, metric, type);
}

#define BROKER_LABELS "broker=\"%s\",client=\"%s\",kafka_broker=\"%s\",kafka_node=\"%d\""

void kstats__render(struct mqk_bytes *out, const char *broker_id)
{
	static const struct {
		const char *metric, *type, *help;
	} broker_metrics[] = {
		{"mosquitto_kafka_kafka_broker_up", "gauge",
		 "1 when librdkafka's connection to the Kafka broker is UP, else 0."},
		{"mosquitto_kafka_kafka_broker_rtt_avg_seconds", "gauge",
		 "Average request round-trip time to the Kafka broker (librdkafka's window)."},
		{"mosquitto_kafka_kafka_broker_rtt_p99_seconds", "gauge",
		 "99th percentile request round-trip time to the Kafka broker."},
		{"mosquitto_kafka_kafka_broker_requests_waiting_send", "gauge",
		 "Requests waiting to be sent to the Kafka broker (outbuf_cnt)."},
		{"mosquitto_kafka_kafka_broker_requests_waiting_response", "gauge",
		 "Requests sent, waiting for the Kafka broker's response (waitresp_cnt)."},
		{"mosquitto_kafka_kafka_broker_tx_errors_total", "counter",
		 "Transmission errors to the Kafka broker (txerrs, since the client started)."},
		{"mosquitto_kafka_kafka_broker_rx_errors_total", "counter",
		 "Receive errors from the Kafka broker (rxerrs, since the client started)."},
		{"mosquitto_kafka_kafka_broker_request_timeouts_total", "counter",
		 "Requests to the Kafka broker that timed out (req_timeouts)."},
	};

	pthread_mutex_lock(&ks.lock);
	for (size_t m = 0; m < sizeof(broker_metrics) / sizeof(broker_metrics[0]); m++) {
		header(out, broker_metrics[m].metric, broker_metrics[m].type,
		       broker_metrics[m].help);
		for (int c = 0; c < MQK_KCLIENT_COUNT; c++) {
			const struct kclient *k = ks.clients[c];
			for (int i = 0; k != NULL && i < k->broker_count; i++) {
				const struct kbroker *b = &k->brokers[i];
				bytes__printf(out, "%s{" BROKER_LABELS "} ",
					      broker_metrics[m].metric, broker_id, client_names[c],
					      b->name, b->nodeid);
				switch (m) {
				case 0:
					bytes__printf(out, "%d\n", b->up ? 1 : 0);
					break;
				case 1:
					bytes__printf(out, "%.6f\n", b->rtt_avg_s);
					break;
				case 2:
					bytes__printf(out, "%.6f\n", b->rtt_p99_s);
					break;
				case 3:
					bytes__printf(out, "%lld\n", (long long)b->outbuf_cnt);
					break;
				case 4:
					bytes__printf(out, "%lld\n", (long long)b->waitresp_cnt);
					break;
				case 5:
					bytes__printf(out, "%lld\n", (long long)b->txerrs);
					break;
				case 6:
					bytes__printf(out, "%lld\n", (long long)b->rxerrs);
					break;
				default:
					bytes__printf(out, "%lld\n", (long long)b->req_timeouts);
					break;
				}
			}
		}
	}
	const struct kclient *k = ks.clients[MQK_KCLIENT_COMMANDS];
	if (k != NULL) {
		header(out, "mosquitto_kafka_commands_consumer_lag", "gauge",
		       "Command records not consumed yet, per partition of the commands topic "
		       "(librdkafka's consumer_lag).");
		for (int i = 0; i < k->lag_count; i++) {
			bytes__printf(
				out,
				"mosquitto_kafka_commands_consumer_lag{broker=\"%s\",topic=\"%s\","
				"partition=\"%d\"} %lld\n",
				broker_id, k->lags[i].topic, k->lags[i].partition,
				(long long)k->lags[i].lag);
		}
	}
	pthread_mutex_unlock(&ks.lock);
}
