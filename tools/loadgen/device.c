/*
 * device.c - one simulated device: its libmosquitto client, its connection's life
 * (connect, CONNACK, loss, backoff, reconnect, give up), its publishing turns, and its
 * answers to commands. Everything here runs on the worker thread that owns the device,
 * mostly inside libmosquitto's callbacks (which run inside mosquitto_loop_read/_write/
 * _misc, mosquitto_publish and mosquitto_disconnect called by this file).
 *
 * Sequence numbers. A data message takes the device's next number only when it is
 * handed to libmosquitto: a device that is not connected skips its turn without taking
 * one (skipped_offline), so the numbers a consumer sees have no gaps other than real
 * losses. At QoS 1 and 2 "handed over" includes mosquitto_publish() returning
 * MOSQ_ERR_NO_CONN, MOSQ_ERR_CONN_LOST or MOSQ_ERR_ERRNO: libmosquitto 2.0.11 queues
 * the message (message__queue) before it tries to write it, keeps it when the write
 * fails, and sends it again after the next CONNACK; so such a message is counted sent,
 * not failed. At QoS 0 the same errors lose the message (it is counted sent and failed).
 *
 * Offline at QoS 1/2. libmosquitto would accept and queue new QoS>0 messages while the
 * device is disconnected, without a bound. This simulator does not hand it any: an
 * offline device skips its turns at every QoS, like a phone that samples only while it
 * has a connection, and memory stays bounded (at most --max-queued unacknowledged
 * messages per device). What was in flight or queued when the connection dropped stays
 * in libmosquitto and is sent again after the reconnect (counted in `resent`).
 *
 * The socket pair. mosquitto_new() in libmosquitto 2.0.11 opens a socket pair per client
 * and writes one byte into it for every packet it queues, so that mosquitto_loop() (a
 * select() loop) wakes up when another thread publishes. This program never calls
 * mosquitto_loop() and makes a device's calls on one thread, so the pair is of no use;
 * it would cost two descriptors per device (30,000 for 10,000 devices, beyond common
 * limits) and, since nothing reads it, kernel memory: measured here, ~216 kB per client
 * once it is full (~280 packets), 2 GB for 10,000 devices. libmosquitto runs without
 * it when socketpair() fails (it logs "Unable to open socket pair" and checks for
 * INVALID_SOCKET at every use), so worker.c creates the clients while RLIMIT_NOFILE
 * is 0 and no other thread opens descriptors: socketpair() fails with EMFILE, nothing
 * else in mosquitto_new() needs one.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "mqk_payload.h"
#include "loadgen.h"

/* A connection attempt without CONNACK for this long is abandoned and retried. */
#define ATTEMPT_TIMEOUT 10.0
#define BACKOFF_FIRST 0.1
#define BACKOFF_MAX 5.0
/* Answers waiting for their PUBACK, per device. */
#define MAX_PENDING_ANSWERS 1000

static double rand01(struct worker *w)
{
	w->rand_state = w->rand_state * 1103515245u + 12345u;
	return (double)((w->rand_state >> 8) & 0xffffff) / (double)0x1000000;
}

/* What a MOSQ_ERR_* (with errno for MOSQ_ERR_ERRNO) means, for a log line. */
static const char *describe(int rc, int err)
{
	if (rc == MOSQ_ERR_ERRNO && err != 0) {
		return strerror(err);
	}
	return mosquitto_strerror(rc);
}

static void set_error(struct device *d, const char *what, const char *why)
{
	snprintf(d->last_error, sizeof(d->last_error), "%s: %s", what, why);
	if (d->w->first_error[0] == '\0') {
		snprintf(d->w->first_error, sizeof(d->w->first_error), "%s %s: %s", d->id, what,
			 why);
	}
}

/* Is a publish with this return code in libmosquitto's hands (see the top)? */
static bool handed_over(int rc, int qos)
{
	if (rc == MOSQ_ERR_SUCCESS) {
		return true;
	}
	return qos > 0 &&
	       (rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_LOST || rc == MOSQ_ERR_ERRNO);
}

/* Keeps the epoll registration in step with what libmosquitto wants to write. */
static void update_events(struct device *d)
{
	uint32_t want;

	if (d->fd < 0) {
		return;
	}
	want = EPOLLIN | (mosquitto_want_write(d->mosq) ? EPOLLOUT : 0);
	if (want != d->events) {
		loop__watch(d->w, d, want);
	}
}

static void make_done(struct device *d)
{
	if (!d->done) {
		d->done = true;
		d->w->done_count++;
	}
}

static void give_up(struct device *d, double now)
{
	struct worker *w = d->w;

	if (d->fd >= 0) {
		loop__watch(w, d, 0);
	}
	d->state = DEV_CLOSED;
	d->gave_up = true;
	make_done(d);
	counter__add(&w->c.gave_up, 1);
	w->unacked_live -= device__unacked(d);
	/* Each with -v; else the first few of each thread (10,000 could give up). */
	if (w->opt->verbosity > 1 || (w->opt->verbosity > 0 && counter__get(&w->c.gave_up) <= 3)) {
		loop__log(w, "%s: gave up after %.0f s without a connection (%s)", d->id,
			    now - d->offline_since,
			    d->last_error[0] ? d->last_error : "no error seen");
	} else if (w->opt->verbosity > 0 && counter__get(&w->c.gave_up) == 4) {
		loop__log(w, "more devices give up (-v shows each)");
	}
}

/* Not connected: try again after a growing, jittered delay (or stop trying). */
static void schedule_retry(struct device *d, double now)
{
	struct worker *w = d->w;
	double delay;

	if (w->phase >= PHASE_CLOSING || (w->phase == PHASE_DRAIN && device__unacked(d) == 0)) {
		d->state = DEV_CLOSED;
		return;
	}
	delay = BACKOFF_FIRST * ldexp(1.0, d->backoff_step);
	if (delay > BACKOFF_MAX) {
		delay = BACKOFF_MAX;
	} else {
		d->backoff_step++;
	}
	d->state = DEV_BACKOFF;
	d->retry_at = now + delay * (0.5 + 0.5 * rand01(w));
}

static void connect_failed(struct device *d, double now, const char *why)
{
	struct worker *w = d->w;

	counter__add(&w->c.connect_errors, 1);
	set_error(d, "connect", why);
	if (w->opt->verbosity > 1) {
		loop__log(w, "%s: connect to %s:%d failed: %s", d->id, d->host->name,
			    d->host->port, why);
	}
	schedule_retry(d, now);
}

/* ---- libmosquitto callbacks (on the worker thread, inside its calls) ------------- */

static void on_connect(struct mosquitto *mosq, void *obj, int rc, int flags,
		       const mosquitto_property *props)
{
	struct device *d = obj;
	struct worker *w = d->w;

	(void)props;
	if (rc != 0) {
		/* libmosquitto closes the connection next and calls on_disconnect. */
		set_error(d, "refused",
			  w->opt->protocol == MQTT_PROTOCOL_V5 ? mosquitto_reason_string(rc)
							       : mosquitto_connack_string(rc));
		return;
	}
	d->state = DEV_CONNECTED;
	d->backoff_step = 0;
	d->offline_since = 0;
	atomic_fetch_add_explicit(&w->c.connected, 1, memory_order_relaxed);
	if (d->ever_connected) {
		counter__add(&w->c.reconnects, 1);
		counter__add(&w->c.resent, device__unacked(d));
	} else {
		d->ever_connected = true;
		atomic_fetch_add_explicit(&w->c.ever_connected, 1, memory_order_relaxed);
	}
	if (!d->active && !d->done && w->phase == PHASE_RUN) {
		loop__activate(w, d);
	}
	/* Without a session the broker forgot the subscription (or never had it). */
	if (d->commands != NULL && (flags & 1) == 0) {
		rc = mosquitto_subscribe(mosq, NULL, d->commands, 1);
		if (rc != MOSQ_ERR_SUCCESS) {
			counter__add(&w->c.subscribe_failed, 1);
			set_error(d, "subscribe", mosquitto_strerror(rc));
		}
	}
	if (w->opt->verbosity > 1) {
		loop__log(w, "%s: connected to %s:%d (session %s, %llu unacknowledged)", d->id,
			    d->host->name, d->host->port, (flags & 1) ? "present" : "new",
			    (unsigned long long)device__unacked(d));
	}
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc,
			  const mosquitto_property *props)
{
	struct device *d = obj;
	struct worker *w = d->w;
	int err = errno;
	double now = loop__now();

	(void)mosq;
	(void)props;
	/* libmosquitto has closed the socket, which took it out of the epoll set. */
	d->fd = -1;
	d->events = 0;
	switch (d->state) {
	case DEV_CONNECTED:
		atomic_fetch_sub_explicit(&w->c.connected, 1, memory_order_relaxed);
		counter__add(&w->c.disconnects, 1);
		set_error(d, "connection lost", describe(rc, err));
		if (w->opt->verbosity > 1) {
			loop__log(w, "%s: connection to %s:%d lost: %s", d->id, d->host->name,
				    d->host->port, describe(rc, err));
		}
		d->offline_since = now;
		d->backoff_step = 0;
		schedule_retry(d, now);
		break;
	case DEV_CONNECTING:
		connect_failed(d, now,
			       strncmp(d->last_error, "refused: ", 9) == 0 ? d->last_error + 9
									   : describe(rc, err));
		break;
	case DEV_CLOSING:
		d->state = DEV_CLOSED;
		break;
	default:
		break;
	}
}

static bool take_answer_mid(struct device *d, int mid)
{
	for (uint32_t i = 0; i < d->answer_count; i++) {
		if (d->answer_mids[i] == (uint16_t)mid) {
			d->answer_mids[i] = d->answer_mids[--d->answer_count];
			return true;
		}
	}
	return false;
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid, int reason,
		       const mosquitto_property *props)
{
	struct device *d = obj;
	struct worker *w = d->w;

	(void)mosq;
	(void)props;
	if (take_answer_mid(d, mid)) {
		counter__add(reason >= 0x80 ? &w->c.answers_rejected : &w->c.answers_acked, 1);
		if (!d->gave_up) {
			w->unacked_live--;
		}
		return;
	}
	if (w->opt->qos == 0 || d->unacked == 0) {
		return; /* a QoS 0 message was written */
	}
	d->unacked--;
	if (!d->gave_up) {
		w->unacked_live--;
	}
	counter__add(reason >= 0x80 ? &w->c.rejected : &w->c.acked, 1);
	if (reason >= 0x80 && w->opt->verbosity > 0 && counter__get(&w->c.rejected) == 1) {
		loop__log(w, "%s: the broker refused a message: %s", d->id,
			    mosquitto_reason_string(reason));
	}
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int count, const int *granted,
			 const mosquitto_property *props)
{
	struct device *d = obj;

	(void)mosq;
	(void)mid;
	(void)props;
	for (int i = 0; i < count; i++) {
		if (granted[i] >= 0x80) {
			counter__add(&d->w->c.subscribe_failed, 1);
			set_error(d, "subscribe", mosquitto_reason_string(granted[i]));
			if (d->w->opt->verbosity > 0) {
				loop__log(d->w, "%s: subscription to %s refused: %s", d->id,
					    d->commands, mosquitto_reason_string(granted[i]));
			}
		}
	}
}

/*
 * A command: answer it with mqk_payload_encode_answer() at QoS 1, on its response topic
 * with its correlation data (MQTT v5), else on the device's answer topic. The command's
 * id is its correlation data when it has some, else its whole payload.
 */
static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg,
		       const mosquitto_property *props)
{
	struct device *d = obj;
	struct worker *w = d->w;
	char *response_topic = NULL;
	void *correlation = NULL;
	uint16_t correlation_len = 0;
	const mosquitto_property *cd;
	mosquitto_property *out_props = NULL;
	const void *id;
	size_t id_len, size, len;
	const char *topic;
	unsigned char *buf;
	int mid = 0, rc;

	counter__add(&w->c.commands_received, 1);
	mosquitto_property_read_string(props, MQTT_PROP_RESPONSE_TOPIC, &response_topic, false);
	cd = mosquitto_property_read_binary(props, MQTT_PROP_CORRELATION_DATA, &correlation,
					    &correlation_len, false);
	if (cd != NULL) {
		id = correlation;
		id_len = correlation_len;
	} else {
		id = msg->payload;
		id_len = msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0;
	}
	topic = response_topic != NULL ? response_topic : d->answers;
	if (topic == NULL) {
		goto cleanup; /* --answers '' and no response topic: nowhere to answer */
	}
	if (d->answer_count == MAX_PENDING_ANSWERS) {
		counter__add(&w->c.answers_failed, 1);
		set_error(d, "answer", "too many answers waiting for their PUBACK");
		goto cleanup;
	}
	if (d->answer_count == d->answer_cap) {
		uint32_t cap = d->answer_cap ? d->answer_cap * 2 : 4;
		uint16_t *mids = realloc(d->answer_mids, cap * sizeof(*mids));
		if (mids == NULL) {
			counter__add(&w->c.answers_failed, 1);
			goto cleanup;
		}
		d->answer_mids = mids;
		d->answer_cap = cap;
	}
	size = mqk_payload_min_size(d->id_len) + id_len;
	buf = malloc(size);
	if (buf == NULL) {
		counter__add(&w->c.answers_failed, 1);
		goto cleanup;
	}
	len = mqk_payload_encode_answer(buf, size, d->id, d->id_len, d->answers_seq,
					loop__realtime_us(), id, id_len);
	if (cd != NULL && w->opt->protocol == MQTT_PROTOCOL_V5) {
		mosquitto_property_add_binary(&out_props, MQTT_PROP_CORRELATION_DATA, correlation,
					      correlation_len);
	}
	rc = len > 0 ? mosquitto_publish_v5(mosq, &mid, topic, (int)len, buf, 1, false, out_props)
		     : MOSQ_ERR_PAYLOAD_SIZE;
	free(buf);
	mosquitto_property_free_all(&out_props);
	if (handed_over(rc, 1)) {
		d->answers_seq++;
		d->answer_mids[d->answer_count++] = (uint16_t)mid;
		counter__add(&w->c.answers_sent, 1);
		if (!d->gave_up) {
			w->unacked_live++;
		}
	} else {
		counter__add(&w->c.answers_failed, 1);
		set_error(d, "answer", len == 0 ? "does not fit" : mosquitto_strerror(rc));
		if (w->opt->verbosity > 0) {
			loop__log(w, "%s: cannot answer on %s: %s", d->id, topic,
				    len == 0 ? "does not fit" : mosquitto_strerror(rc));
		}
	}
cleanup:
	free(response_topic);
	free(correlation);
}

/* ---- the device's life ------------------------------------------------------------- */

int device__init(struct device *d, struct worker *w, long long index, char *errstr,
		 size_t errstr_size)
{
	const struct options *opt = w->opt;
	char id[300];
	int len;

	memset(d, 0, sizeof(*d));
	d->w = w;
	d->index = index;
	d->fd = -1;
	d->state = DEV_IDLE;
	d->host = &opt->hosts[(index / w->run->worker_count) % opt->host_count];
	len = options__format_id(&opt->ids, opt->first + index, id, sizeof(id));
	if (len <= 0) {
		snprintf(errstr, errstr_size, "client id of device %lld does not fit", index);
		return -1;
	}
	d->id = strdup(id);
	d->id_len = (size_t)len;
	d->topic = expand_id(opt->topic, id);
	d->commands = opt->commands ? expand_id(opt->commands, id) : NULL;
	d->answers = opt->answers ? expand_id(opt->answers, id) : NULL;
	if (d->id == NULL || d->topic == NULL || (opt->commands && d->commands == NULL) ||
	    (opt->answers && d->answers == NULL)) {
		snprintf(errstr, errstr_size, "out of memory");
		return -1;
	}

	d->mosq = mosquitto_new(d->id, opt->clean, d);
	if (d->mosq == NULL) {
		snprintf(errstr, errstr_size, "mosquitto_new(%s): %s", d->id, strerror(errno));
		return -1;
	}

	mosquitto_int_option(d->mosq, MOSQ_OPT_PROTOCOL_VERSION, opt->protocol);
	mosquitto_int_option(d->mosq, MOSQ_OPT_SEND_MAXIMUM, opt->max_inflight);
	mosquitto_int_option(d->mosq, MOSQ_OPT_TCP_NODELAY, 1);
	if (opt->username != NULL &&
	    mosquitto_username_pw_set(d->mosq, opt->username, opt->password) != MOSQ_ERR_SUCCESS) {
		snprintf(errstr, errstr_size, "out of memory");
		return -1;
	}
	mosquitto_connect_v5_callback_set(d->mosq, on_connect);
	mosquitto_disconnect_v5_callback_set(d->mosq, on_disconnect);
	mosquitto_publish_v5_callback_set(d->mosq, on_publish);
	mosquitto_subscribe_v5_callback_set(d->mosq, on_subscribe);
	if (d->commands != NULL) {
		mosquitto_message_v5_callback_set(d->mosq, on_message);
	}
	return 0;
}

void device__cleanup(struct device *d)
{
	if (d->mosq != NULL) {
		mosquitto_destroy(d->mosq); /* closes the socket */
	}
	free(d->id);
	free(d->topic);
	free(d->commands);
	free(d->answers);
	free(d->answer_mids);
	memset(d, 0, sizeof(*d));
	d->fd = -1;
}

/*
 * The first attempt uses mosquitto_connect_async(), which in libmosquitto 2.0.11 opens a
 * non-blocking socket, queues CONNECT and returns: the CONNACK arrives through the event
 * loop. MQTT v5 with a persistent session needs the Session Expiry Interval property,
 * and the only call that takes CONNECT properties, mosquitto_connect_bind_v5(), connects
 * the TCP socket blocking (then waits for CONNACK asynchronously like the rest): fast or
 * refused at once on loopback and LAN, paced by --ramp-up. Later attempts use
 * mosquitto_reconnect_async(), which keeps the properties, host and port.
 */
void device__connect(struct device *d, double now)
{
	const struct options *opt = d->w->opt;
	mosquitto_property *props = NULL;
	int rc;

	if (d->fd >= 0) {
		loop__watch(d->w, d, 0); /* before libmosquitto closes it */
	}
	if (d->offline_since == 0) {
		d->offline_since = now;
	}
	d->last_error[0] = '\0';
	errno = 0;
	if (!d->attempted) {
		d->attempted = true;
		if (opt->protocol == MQTT_PROTOCOL_V5 && !opt->clean) {
			mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL,
						     opt->session_expiry);
			rc = mosquitto_connect_bind_v5(d->mosq, d->host->name, d->host->port,
						       opt->keepalive, NULL, props);
			mosquitto_property_free_all(&props);
		} else {
			rc = mosquitto_connect_async(d->mosq, d->host->name, d->host->port,
						     opt->keepalive);
		}
	} else {
		rc = mosquitto_reconnect_async(d->mosq);
	}
	d->attempt_at = now;
	if (rc != MOSQ_ERR_SUCCESS || mosquitto_socket(d->mosq) < 0) {
		d->state = DEV_CONNECTING; /* for the counting in connect_failed() */
		connect_failed(d, now,
			       describe(rc != MOSQ_ERR_SUCCESS ? rc : MOSQ_ERR_NO_CONN, errno));
		return;
	}
	d->state = DEV_CONNECTING;
	d->fd = mosquitto_socket(d->mosq);
	d->events = 0;
	loop__watch(d->w, d, EPOLLIN | (mosquitto_want_write(d->mosq) ? EPOLLOUT : 0));
}

void device__on_events(struct device *d, uint32_t events)
{
	if (d->fd < 0) {
		return; /* closed since epoll_wait() returned */
	}
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
		mosquitto_loop_read(d->mosq, 1);
		if (d->fd < 0) {
			return;
		}
	}
	if (events & EPOLLOUT) {
		mosquitto_loop_write(d->mosq, 1);
		if (d->fd < 0) {
			return;
		}
	}
	update_events(d);
}

void device__turn(struct device *d, double now)
{
	struct worker *w = d->w;
	const struct options *opt = w->opt;
	size_t len;
	int rc;

	(void)now;
	if (d->state != DEV_CONNECTED) {
		counter__add(&w->c.skipped_offline, 1);
		return;
	}
	if (opt->qos > 0 && d->unacked >= (uint64_t)opt->max_queued) {
		counter__add(&w->c.skipped_backlog, 1);
		return;
	}
	len = mqk_payload_encode(w->buf, w->buf_size, d->id, d->id_len, d->seq,
				 loop__realtime_us(), opt->size);
	rc = mosquitto_publish(d->mosq, NULL, d->topic, (int)len, w->buf, opt->qos, false);
	/* QoS 0: a connection error came after the packet was queued; it is lost. */
	if (handed_over(rc, opt->qos) ||
	    (opt->qos == 0 && (rc == MOSQ_ERR_CONN_LOST || rc == MOSQ_ERR_ERRNO))) {
		d->seq++;
		counter__add(&w->c.sent, 1);
		if (opt->qos > 0) {
			d->unacked++;
			w->unacked_live++;
		}
	}
	if (rc != MOSQ_ERR_SUCCESS && !handed_over(rc, opt->qos)) {
		counter__add(&w->c.failed, 1);
		set_error(d, "publish", mosquitto_strerror(rc));
	}
	update_events(d);
	if (opt->count > 0 && d->seq >= (uint64_t)opt->count) {
		make_done(d);
	}
}

void device__sweep(struct device *d, double now)
{
	switch (d->state) {
	case DEV_CONNECTING:
		if (now - d->attempt_at > ATTEMPT_TIMEOUT) {
			loop__watch(d->w, d, 0); /* the socket stays open until the retry */
			connect_failed(d, now, "no CONNACK in time");
			break;
		}
		mosquitto_loop_misc(d->mosq);
		update_events(d);
		break;
	case DEV_CONNECTED:
	case DEV_CLOSING:
		mosquitto_loop_misc(d->mosq); /* keepalive: PINGREQ, or a dead connection */
		update_events(d);
		break;
	case DEV_BACKOFF:
		if (now >= d->retry_at) {
			device__connect(d, now);
		}
		break;
	default:
		break;
	}
	if ((d->state == DEV_CONNECTING || d->state == DEV_BACKOFF) && d->offline_since > 0 &&
	    now - d->offline_since > d->w->opt->connect_timeout) {
		give_up(d, now);
	}
}

void device__close(struct device *d)
{
	struct worker *w = d->w;

	switch (d->state) {
	case DEV_CONNECTED:
		atomic_fetch_sub_explicit(&w->c.connected, 1, memory_order_relaxed);
		d->state = DEV_CLOSING;
		/* Writes DISCONNECT now if it can, and then on_disconnect() closes. */
		if (mosquitto_disconnect(d->mosq) != MOSQ_ERR_SUCCESS) {
			if (d->fd >= 0) {
				loop__watch(w, d, 0);
			}
			d->state = DEV_CLOSED;
		}
		update_events(d);
		break;
	case DEV_CONNECTING:
		if (d->fd >= 0) {
			loop__watch(w, d, 0);
		}
		d->state = DEV_CLOSED;
		break;
	case DEV_CLOSING:
	case DEV_CLOSED:
		break;
	default:
		d->state = DEV_CLOSED;
		break;
	}
}

uint64_t device__unacked(const struct device *d)
{
	return d->unacked + d->answer_count;
}
