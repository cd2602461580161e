/*
 * mqtt.c - the HybridClient's MQTT side: one libmosquitto subscriber to one broker.
 *
 * MQTT 3.1.1 with a clean session: as in the study, a hybrid that reconnects starts
 * afresh, and what the broker received for it while it was away is not kept for it.
 * That, and the messages acknowledged here but not yet in Kafka when the process dies
 * (libmosquitto sends a QoS 1 PUBACK before on_message() runs), is this architecture's
 * loss window; the plugin has neither.
 *
 * The connection is served from the main thread's loop (mqtt__poll: poll(2), then
 * mosquitto_loop_read/_write/_misc), so connecting must not block it: the first attempt
 * is mosquitto_connect_async() and the later ones mosquitto_reconnect_async(), which
 * open a non-blocking socket and queue CONNECT; CONNACK arrives through the loop.
 * libmosquitto's own reconnect_delay_set() only applies to its own loops
 * (mosquitto_loop_forever, mosquitto_loop_start), so the same backoff is done here:
 * 1 s after a loss or a failed attempt, doubling up to 5 s, back to 1 s once connected.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mosquitto.h>

#include "hybrid.h"

#define RETRY_FIRST_US 1000000
#define RETRY_MAX_US 5000000
#define KEEPALIVE_S 60

struct mqtt {
	struct mosquitto *mosq;
	const struct settings *set;
	struct queue *q;          /* not owned: main.c's */
	struct counts *c;         /* not owned: main.c's */
	char client_id[64];       /* when -i was not given */
	bool attempted;           /* connect_async done once: reconnect_async from then on */
	bool connected;           /* CONNACK accepted and not lost since */
	bool closing;             /* mqtt__close() runs: no more logging, no retries */
	uint64_t retry_at;        /* cli_mono_us() of the next attempt; 0: none scheduled */
	uint64_t retry_us;        /* the backoff */
	int received;             /* messages received during the current mqtt__poll */
	int sub_mid[MAX_FILTERS]; /* the SUBSCRIBE of each filter, to name it in its SUBACK */
};

/* Schedules the next attempt after the current backoff, and doubles the backoff. */
static uint64_t schedule_retry(struct mqtt *m)
{
	uint64_t delay = m->retry_us;

	m->retry_at = cli_mono_us() + delay;
	m->retry_us = delay * 2 > RETRY_MAX_US ? RETRY_MAX_US : delay * 2;
	return delay;
}

static void on_connect(struct mosquitto *mosq, void *obj, int rc)
{
	struct mqtt *m = obj;
	const struct settings *set = m->set;

	if (rc != 0) {
		/* libmosquitto closes the connection next; on_disconnect schedules a retry. */
		fprintf(stderr, HYBRID_NAME ": %s:%d refused the connection: %s\n", set->host,
			set->port, mosquitto_connack_string(rc));
		return;
	}
	m->connected = true;
	m->retry_us = RETRY_FIRST_US;
	m->c->connects++;
	fprintf(stderr, HYBRID_NAME ": connected to %s:%d as %s\n", set->host, set->port,
		set->client_id ? set->client_id : m->client_id);
	for (size_t i = 0; i < set->n_filters; i++) {
		m->sub_mid[i] = 0;
		int src = mosquitto_subscribe(mosq, &m->sub_mid[i], set->filters[i], set->qos);
		if (src != MOSQ_ERR_SUCCESS) {
			fprintf(stderr, HYBRID_NAME ": subscribing to %s: %s\n", set->filters[i],
				mosquitto_strerror(src));
		}
	}
}

/* One SUBACK per filter (they are subscribed one by one): says what was granted. */
static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int qos_count,
			 const int *granted_qos)
{
	struct mqtt *m = obj;
	const char *filter = "?";
	(void)mosq;

	for (size_t i = 0; i < m->set->n_filters; i++) {
		if (m->sub_mid[i] == mid) {
			filter = m->set->filters[i];
		}
	}
	for (int i = 0; i < qos_count; i++) {
		if (granted_qos[i] > 2) {
			fprintf(stderr,
				HYBRID_NAME
				": the broker refused the subscription to %s (0x%02x)\n",
				filter, granted_qos[i]);
		} else {
			fprintf(stderr, HYBRID_NAME ": subscribed to %s (QoS %d)\n", filter,
				granted_qos[i]);
		}
	}
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc)
{
	struct mqtt *m = obj;
	const struct settings *set = m->set;
	(void)mosq;

	if (m->closing) {
		return;
	}
	if (m->connected) {
		m->connected = false;
		m->c->disconnects++;
		m->retry_us = RETRY_FIRST_US;
		uint64_t delay = schedule_retry(m);
		fprintf(stderr, HYBRID_NAME ": lost %s:%d (%s), reconnecting in %.0f s\n",
			set->host, set->port, mosquitto_strerror(rc), (double)delay / 1e6);
	} else {
		uint64_t delay = schedule_retry(m);
		fprintf(stderr, HYBRID_NAME ": cannot connect to %s:%d (%s), retrying in %.0f s\n",
			set->host, set->port, mosquitto_strerror(rc), (double)delay / 1e6);
	}
}

/*
 * libmosquitto frees msg when this returns: the topic and payload are copied into the
 * queue, which owns them from here on. A copy that fails for want of memory is counted
 * as dropped at once (received, never produced), so that no message goes uncounted.
 */
static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg)
{
	struct mqtt *m = obj;
	(void)mosq;

	m->c->received++;
	m->received++;
	if (queue__push(m->q, msg->topic, msg->payload, (size_t)msg->payloadlen) != 0) {
		m->c->dropped++;
		fprintf(stderr, HYBRID_NAME ": out of memory: a message of %s dropped\n",
			msg->topic);
	}
}

struct mqtt *mqtt__open(const struct settings *set, struct queue *q, struct counts *c, char *errstr,
			size_t errstr_size)
{
	struct mqtt *m = calloc(1, sizeof(*m));

	if (m == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		return NULL;
	}
	m->set = set;
	m->q = q;
	m->c = c;
	m->retry_us = RETRY_FIRST_US;
	snprintf(m->client_id, sizeof(m->client_id), HYBRID_NAME "-%ld", (long)getpid());
	m->mosq = mosquitto_new(set->client_id ? set->client_id : m->client_id, true, m);
	if (m->mosq == NULL) {
		snprintf(errstr, errstr_size, "mosquitto_new: %s", strerror(errno));
		free(m);
		return NULL;
	}
	mosquitto_int_option(m->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
	/* PUBACKs leave at once: the broker sends at most 20 unacknowledged QoS 1 messages. */
	mosquitto_int_option(m->mosq, MOSQ_OPT_TCP_NODELAY, 1);
	mosquitto_connect_callback_set(m->mosq, on_connect);
	mosquitto_disconnect_callback_set(m->mosq, on_disconnect);
	mosquitto_subscribe_callback_set(m->mosq, on_subscribe);
	mosquitto_message_callback_set(m->mosq, on_message);
	m->retry_at = cli_mono_us(); /* the first attempt: at the first mqtt__poll */
	return m;
}

/* A connection attempt whose time has come. */
static void attempt(struct mqtt *m)
{
	const struct settings *set = m->set;
	int rc;

	m->retry_at = 0;
	errno = 0;
	if (!m->attempted) {
		m->attempted = true;
		rc = mosquitto_connect_async(m->mosq, set->host, set->port, KEEPALIVE_S);
	} else {
		rc = mosquitto_reconnect_async(m->mosq);
	}
	if (rc != MOSQ_ERR_SUCCESS || mosquitto_socket(m->mosq) < 0) {
		const char *why = rc == MOSQ_ERR_ERRNO && errno ? strerror(errno)
				  : rc != MOSQ_ERR_SUCCESS      ? mosquitto_strerror(rc)
								: "no socket";
		uint64_t delay = schedule_retry(m);
		fprintf(stderr, HYBRID_NAME ": cannot connect to %s:%d (%s), retrying in %.0f s\n",
			set->host, set->port, why, (double)delay / 1e6);
	}
}

int mqtt__poll(struct mqtt *m, int timeout_ms)
{
	struct pollfd pfd;
	int fd;

	m->received = 0;
	fd = mosquitto_socket(m->mosq);
	if (fd < 0) {
		uint64_t now = cli_mono_us();
		if (m->retry_at == 0) {
			schedule_retry(m); /* closed without on_disconnect: still retry */
		} else if (now >= m->retry_at) {
			attempt(m);
		}
		fd = mosquitto_socket(m->mosq);
		if (fd < 0) {
			/* Down: wait for the next attempt or the caller's timeout. */
			uint64_t wait_ms = m->retry_at > now ? (m->retry_at - now + 999) / 1000 : 0;
			if (wait_ms < (uint64_t)timeout_ms) {
				timeout_ms = (int)wait_ms;
			}
			poll(NULL, 0, timeout_ms);
			return 0;
		}
	}
	pfd.fd = fd;
	pfd.events = POLLIN | (mosquitto_want_write(m->mosq) ? POLLOUT : 0);
	pfd.revents = 0;
	if (poll(&pfd, 1, timeout_ms) < 0 && errno != EINTR) {
		return -1;
	}
	if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
		mosquitto_loop_read(m->mosq, 1);
	}
	if (mosquitto_socket(m->mosq) >= 0 && (pfd.revents & POLLOUT)) {
		mosquitto_loop_write(m->mosq, 1);
	}
	if (mosquitto_socket(m->mosq) >= 0) {
		mosquitto_loop_misc(m->mosq);
	}
	return m->received;
}

void mqtt__close(struct mqtt *m)
{
	if (m == NULL) {
		return;
	}
	m->closing = true;
	if (m->connected) {
		/* Our own disconnect: counted here, so that on_disconnect does not log a loss. */
		m->connected = false;
		m->c->disconnects++;
		fprintf(stderr, HYBRID_NAME ": disconnecting from %s:%d\n", m->set->host,
			m->set->port);
	}
	/* DISCONNECT is written at once (we are not in a callback): no loop needed. */
	mosquitto_disconnect(m->mosq);
	mosquitto_destroy(m->mosq);
	free(m);
}
