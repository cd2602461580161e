/*
 * mqtt.c - the controller as the study's A1/A2 controller: an MQTT subscriber.
 *
 * One libmosquitto connection per broker (A1: one broker; A2: every broker behind the
 * proxy, since open-source mosquitto brokers share no subscriptions), all served by one
 * poll(2) loop on the main thread with mosquitto_loop_read/_write/_misc. Each
 * connection subscribes to the data filters and to the answers filter. A lost
 * connection is retried once a second with a clean session: what the broker dropped
 * meanwhile is what this architecture loses, and the report counts it.
 *
 * Commands are published to every connected broker: the device is connected to exactly
 * one of them and only that one has a subscriber for its command topic.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "controller.h"

struct conn {
	struct mosquitto *mosq;
	struct mqtt *m;
	char host[256];
	int port;
	bool connected;    /* CONNACK received and not disconnected since */
	uint64_t retry_at; /* cli_mono_us() of the next reconnection attempt */
	int unacked;       /* commands published and not acknowledged yet */
};

struct mqtt {
	const struct settings *set;
	struct controller *ctl;
	struct conn *c; /* n of them; owned */
	size_t n;
	int handled; /* messages delivered during the current mqtt__poll */
};

static void on_connect(struct mosquitto *mosq, void *obj, int rc, int flags,
		       const mosquitto_property *props)
{
	struct conn *c = obj;
	const struct settings *set = c->m->set;
	(void)flags;
	(void)props;

	if (rc != 0) {
		fprintf(stderr, "mqk-controller: %s:%d refused the connection: %s\n", c->host,
			c->port, mosquitto_reason_string(rc));
		return;
	}
	c->connected = true;
	for (size_t i = 0; i < set->n_filters; i++) {
		mosquitto_subscribe(mosq, NULL, set->filters[i], set->qos);
	}
	mosquitto_subscribe(mosq, NULL, set->answers_filter, 1);
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc,
			  const mosquitto_property *props)
{
	struct conn *c = obj;
	(void)mosq;
	(void)props;
	if (c->connected && rc != 0) { /* 0: our own DISCONNECT, at the end */
		fprintf(stderr, "mqk-controller: lost %s:%d (%s), reconnecting\n", c->host, c->port,
			mosquitto_strerror(rc));
	}
	c->connected = false;
	c->retry_at = cli_mono_us() + 1000000;
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg,
		       const mosquitto_property *props)
{
	struct conn *c = obj;
	(void)mosq;
	(void)props;
	controller__deliver(c->m->ctl, msg->topic, msg->payload, (size_t)msg->payloadlen, NULL,
			    NULL, NULL, 0);
	c->m->handled++;
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid, int reason,
		       const mosquitto_property *props)
{
	struct conn *c = obj;
	(void)mosq;
	(void)mid;
	(void)props;
	c->unacked--;
	if (reason >= 0x80) {
		c->m->ctl->report.commands_failed++;
	}
}

struct mqtt *mqtt__open(const struct settings *set, struct controller *ctl, char *errstr,
			size_t errstr_size)
{
	struct mqtt *m = calloc(1, sizeof(*m));
	const char *s = set->mqtt_hosts;

	if (m == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		return NULL;
	}
	m->set = set;
	m->ctl = ctl;
	/* Sized once: each mosquitto handle keeps a pointer to its conn as userdata. */
	size_t hosts = 1;
	for (const char *p = s; *p; p++) {
		hosts += *p == ',';
	}
	m->c = calloc(hosts, sizeof(*m->c));
	if (m->c == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		goto error;
	}
	while (*s) {
		size_t len = strcspn(s, ",");
		struct conn *c = &m->c[m->n];
		char id[64];
		c->m = m;
		const char *why = cli_parse_hostport(s, len, 0, c->host, sizeof(c->host), &c->port);
		if (why != NULL) {
			snprintf(errstr, errstr_size, "--mqtt: '%.*s' is not host:port (%s)",
				 (int)len, s, why);
			goto error;
		}
		m->n++;
		snprintf(id, sizeof(id), "mqk-controller-%ld-%zu", (long)getpid(), m->n);
		c->mosq = mosquitto_new(id, true, c);
		if (c->mosq == NULL) {
			snprintf(errstr, errstr_size, "mosquitto_new: %s", strerror(errno));
			goto error;
		}
		mosquitto_int_option(c->mosq, MOSQ_OPT_PROTOCOL_VERSION, set->protocol);
		/* Without it a command waits ~40 ms for the previous packet's delayed ACK. */
		mosquitto_int_option(c->mosq, MOSQ_OPT_TCP_NODELAY, 1);
		mosquitto_connect_v5_callback_set(c->mosq, on_connect);
		mosquitto_disconnect_v5_callback_set(c->mosq, on_disconnect);
		mosquitto_message_v5_callback_set(c->mosq, on_message);
		mosquitto_publish_v5_callback_set(c->mosq, on_publish);
		int rc = mosquitto_connect(c->mosq, c->host, c->port, 60);
		if (rc != MOSQ_ERR_SUCCESS) {
			snprintf(errstr, errstr_size, "--mqtt: %s:%d: %s", c->host, c->port,
				 rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
			goto error;
		}
		s += len;
		s += *s == ',';
	}
	if (m->n == 0) {
		snprintf(errstr, errstr_size, "--mqtt: no broker given");
		goto error;
	}
	return m;

error:
	mqtt__close(m);
	return NULL;
}

/* Reconnects the connections whose retry time has come. */
static void reconnect(struct mqtt *m)
{
	uint64_t now = cli_mono_us();

	for (size_t i = 0; i < m->n; i++) {
		struct conn *c = &m->c[i];
		if (mosquitto_socket(c->mosq) < 0 && now >= c->retry_at) {
			if (mosquitto_reconnect(c->mosq) != MOSQ_ERR_SUCCESS) {
				c->retry_at = now + 1000000;
			}
		}
	}
}

int mqtt__poll(struct mqtt *m, int timeout_ms)
{
	struct pollfd fds[MAX_LIST];
	struct conn *owner[MAX_LIST];
	nfds_t n = 0;

	m->handled = 0;
	reconnect(m);
	for (size_t i = 0; i < m->n && n < MAX_LIST; i++) {
		int fd = mosquitto_socket(m->c[i].mosq);
		if (fd >= 0) {
			fds[n].fd = fd;
			fds[n].events = POLLIN | (mosquitto_want_write(m->c[i].mosq) ? POLLOUT : 0);
			fds[n].revents = 0;
			owner[n++] = &m->c[i];
		}
	}
	if (n == 0) {
		/* Nothing connected: wait for the next reconnection attempt. */
		struct pollfd none;
		poll(&none, 0, timeout_ms < 100 ? timeout_ms : 100);
		return 0;
	}
	if (poll(fds, n, timeout_ms) < 0 && errno != EINTR) {
		return -1;
	}
	for (nfds_t i = 0; i < n; i++) {
		struct mosquitto *mosq = owner[i]->mosq;
		if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) {
			mosquitto_loop_read(mosq, 100);
		}
		if (mosquitto_socket(mosq) >= 0 && (fds[i].revents & POLLOUT)) {
			mosquitto_loop_write(mosq, 100);
		}
		if (mosquitto_socket(mosq) >= 0) {
			mosquitto_loop_misc(mosq);
		}
	}
	return m->handled;
}

int mqtt__command(struct mqtt *m, const struct command *cmd, char *errstr, size_t errstr_size)
{
	char *topic = expand_id(m->set->command_mqtt, cmd->device);
	mosquitto_property *props = NULL;
	int taken = 0, rc = MOSQ_ERR_NO_CONN;

	if (topic == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		return -1;
	}
	if (m->set->protocol == MQTT_PROTOCOL_V5) {
		mosquitto_property_add_string(&props, MQTT_PROP_RESPONSE_TOPIC,
					      cmd->response_topic);
		mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, cmd->id,
					      (uint16_t)strlen(cmd->id));
	}
	for (size_t i = 0; i < m->n; i++) {
		struct conn *c = &m->c[i];
		if (!c->connected) {
			continue;
		}
		rc = mosquitto_publish_v5(c->mosq, NULL, topic, (int)strlen(cmd->payload),
					  cmd->payload, 1, false, props);
		if (rc == MOSQ_ERR_SUCCESS) {
			c->unacked++;
			taken++;
		}
	}
	mosquitto_property_free_all(&props);
	if (taken == 0) {
		snprintf(errstr, errstr_size, "%s: %s", topic, mosquitto_strerror(rc));
	}
	free(topic);
	return taken ? 0 : -1;
}

int mqtt__flush(struct mqtt *m, int timeout_ms)
{
	uint64_t end = cli_mono_us() + (uint64_t)timeout_ms * 1000;
	int unacked;

	for (;;) {
		unacked = 0;
		for (size_t i = 0; i < m->n; i++) {
			unacked += m->c[i].connected ? m->c[i].unacked : 0;
		}
		if (unacked == 0 || cli_mono_us() >= end) {
			return unacked;
		}
		mqtt__poll(m, 50);
	}
}

void mqtt__close(struct mqtt *m)
{
	if (m == NULL) {
		return;
	}
	for (size_t i = 0; i < m->n; i++) {
		if (m->c[i].mosq) {
			mosquitto_disconnect(m->c[i].mosq);
			mosquitto_destroy(m->c[i].mosq);
		}
	}
	free(m->c);
	free(m);
}
