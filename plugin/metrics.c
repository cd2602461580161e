/*
 * metrics.c - the plugin's state for Prometheus: GET /metrics (text format 0.0.4) and
 * GET /healthz on plugin_opt_metrics_listen, and the same text in
 * plugin_opt_metrics_textfile for node-exporter's textfile collector.
 *
 * Threads. The counters' names and the routes are mosquitto's thread's (a reload swaps
 * cfg->routes there), so only mosquitto's thread renders the text: on the TICK, at most
 * once a second (metrics__tick), into a buffer of its own, which it then swaps with the
 * shown one under a mutex (double buffer, a pointer swap). The HTTP thread
 * (libmicrohttpd's internal polling thread) copies the shown text under that mutex and
 * never reads cfg; the textfile thread does the same every stats_interval and writes the
 * file (a temporary file in the same directory, then rename: readers see the old or the
 * new file, never half of one). /healthz is decided on the HTTP thread at each request
 * from atomics only (metrics__health), so it stays true even if mosquitto's loop stalls.
 *
 * Cost on mosquitto's thread: one rendering a second, a few KB of snprintf; the
 * rendering's own duration is a metric (mosquitto_kafka_metrics_render_seconds).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <microhttpd.h>
#include <mosquitto.h>
#include <mosquitto_broker.h>

#include "mqk.h"

#if MHD_VERSION < 0x00097002
typedef int MHD_Result_t;
#else
typedef enum MHD_Result MHD_Result_t;
#endif

/* The journal (buffer) counts as full for /healthz from this share of its limit. */
#define HEALTH_FULL_PERCENT 90

struct mqk_metrics {
	/* Written at init, then read-only (any thread): */
	struct mqk_buffer *buf;
	char broker_id[128];
	int max_unacked_s;
	int64_t start_ms; /* when the plugin started: the first contact's stand-in */
	size_t limit_bytes;
	struct MHD_Daemon *mhd;
	int listen_fd;
	/* The shown text, under lock: */
	pthread_mutex_t lock;
	pthread_cond_t cond; /* the textfile thread waits on it */
	struct mqk_bytes shown;
	bool rendered; /* shown holds a rendering */
	bool stop;
	/* Mosquitto's thread's: */
	struct mqk_bytes work;
	time_t rendered_at;
	double render_s; /* the last rendering's duration */
	/* The textfile thread's: */
	char *textfile;
	char *textfile_tmp;
	int textfile_interval_s;
	pthread_t textfile_thread;
	bool textfile_started;
	struct mqk_ratelimit rl_textfile;
	atomic_uint_least64_t textfile_writes, textfile_errors;
};

static double monotonic_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- /healthz (any thread) ---------------------------------------------------------- */

int metrics__health(struct mqk_metrics *m, char *body, size_t body_size)
{
	int64_t now = mqk_realtime_ms();
	int64_t oldest = atomic_load(&m->buf->oldest_ms);
	int64_t acked = atomic_load(&m->buf->acked_ms);
	int64_t up = kstats__last_up_ms();
	int64_t contact = acked > up ? acked : up;
	int64_t limit_ms = (int64_t)m->max_unacked_s * 1000;
	size_t used = buffer__used(m->buf);
	unsigned percent = m->limit_bytes ? (unsigned)((double)used * 100 / m->limit_bytes) : 0;
	const char *what = m->buf->journal ? "journal" : "buffer";

	if (contact == 0) {
		contact = m->start_ms; /* none yet: the limit runs from the start */
	}
	if (oldest != 0 && now - oldest > limit_ms) {
		snprintf(body, body_size,
			 "{\"status\":\"unhealthy\",\"reason\":\"oldest record not acknowledged "
			 "by Kafka for %lld s (limit %d)\"}\n",
			 (long long)((now - oldest) / 1000), m->max_unacked_s);
		return 503;
	}
	if (now - contact > limit_ms) {
		snprintf(body, body_size,
			 "{\"status\":\"unhealthy\",\"reason\":\"no acknowledgement from Kafka "
			 "and no Kafka broker up for %lld s (limit %d)\"}\n",
			 (long long)((now - contact) / 1000), m->max_unacked_s);
		return 503;
	}
	if (percent >= HEALTH_FULL_PERCENT) {
		snprintf(body, body_size,
			 "{\"status\":\"unhealthy\",\"reason\":\"the %s is %u %% full (limit "
			 "%d %%)\"}\n",
			 what, percent, HEALTH_FULL_PERCENT);
		return 503;
	}
	if (oldest != 0) {
		snprintf(body, body_size,
			 "{\"status\":\"ok\",\"reason\":\"oldest record not acknowledged for %lld "
			 "s, Kafka last heard from %lld s ago, %s %u %% full\"}\n",
			 (long long)((now - oldest) / 1000), (long long)((now - contact) / 1000),
			 what, percent);
	} else {
		snprintf(body, body_size,
			 "{\"status\":\"ok\",\"reason\":\"every record acknowledged, Kafka last "
			 "heard from %lld s ago, %s %u %% full\"}\n",
			 (long long)((now - contact) / 1000), what, percent);
	}
	return 200;
}

/* ---- the HTTP thread (libmicrohttpd's) ------------------------------------------------- */

static MHD_Result_t reply(struct MHD_Connection *conn, unsigned status, const char *type,
			  const char *text, size_t len)
{
#if MHD_VERSION >= 0x00097701
	struct MHD_Response *r = MHD_create_response_from_buffer_copy(len, text);
#else
	struct MHD_Response *r =
		MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
#endif
	MHD_Result_t rc;

	if (r == NULL) {
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", type);
	if (status == 405) {
		MHD_add_response_header(r, "Allow", "GET, HEAD");
	}
	rc = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return rc;
}

/* libmicrohttpd's access handler. HTTP thread. */
static MHD_Result_t on_request(void *cls, struct MHD_Connection *conn, const char *url,
			       const char *method, const char *version, const char *upload_data,
			       size_t *upload_data_size, void **con_cls)
{
	struct mqk_metrics *m = cls;
	static const char text[] = "text/plain; charset=utf-8";

	(void)version;
	(void)upload_data;
	(void)con_cls;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		*upload_data_size = 0; /* a body, if any, is ignored */
		return reply(conn, 405, text, "method not allowed: GET only\n", 29);
	}
	if (!strcmp(url, "/metrics")) {
		MHD_Result_t rc;
		pthread_mutex_lock(&m->lock);
		if (m->rendered) {
			rc = reply(conn, 200, "text/plain; version=0.0.4; charset=utf-8",
				   m->shown.data, m->shown.len);
		} else {
			rc = reply(conn, 503, text, "not rendered yet\n", 17);
		}
		pthread_mutex_unlock(&m->lock);
		return rc;
	}
	if (!strcmp(url, "/healthz")) {
		char body[512];
		int status = metrics__health(m, body, sizeof(body));
		return reply(conn, (unsigned)status, "application/json", body, strlen(body));
	}
	return reply(conn, 404, text, "not found: GET /metrics or /healthz\n", 36);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];

	(void)cls;
	vsnprintf(line, sizeof(line), fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	log__deferred(MOSQ_LOG_WARNING, "metrics_listen: %s", line);
}

/*
 * Binds and listens on spec (host:port, [v6]:port). Returns the socket, or -1 with the
 * cause in errstr.
 */
static int listen_on(const char *spec, char *errstr, size_t errstr_size)
{
	char host[256];
	const char *colon = strrchr(spec, ':');
	size_t hlen = (size_t)(colon - spec);
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
			*res, *ai;
	int fd = -1, err = 0, one = 1;

	if (spec[0] == '[') {
		spec++;
		hlen -= 2;
	}
	snprintf(host, sizeof(host), "%.*s", (int)hlen, spec);
	int rc = getaddrinfo(host, colon + 1, &hints, &res);
	if (rc != 0) {
		snprintf(errstr, errstr_size, "cannot resolve '%s': %s", host, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			err = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 64) == 0) {
			break;
		}
		err = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(errstr, errstr_size, "cannot listen on %s port %s: %s", host, colon + 1,
			 strerror(err));
	}
	return fd;
}

/* ---- the textfile thread ----------------------------------------------------------------- */

/* Writes text to the textfile: temporary file, then rename. 0, or -1 with errno set. */
static int write_textfile(struct mqk_metrics *m, const char *text, size_t len)
{
	int fd = open(m->textfile_tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	size_t off = 0;

	if (fd < 0) {
		return -1;
	}
	while (off < len) {
		ssize_t n = write(fd, text + off, len - off);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			int e = n < 0 ? errno : EIO;
			close(fd);
			unlink(m->textfile_tmp);
			errno = e;
			return -1;
		}
		off += (size_t)n;
	}
	if (close(fd) != 0 || rename(m->textfile_tmp, m->textfile) != 0) {
		int e = errno;
		unlink(m->textfile_tmp);
		errno = e;
		return -1;
	}
	return 0;
}

/* Every textfile_interval_s: the shown text to the file. Textfile thread. */
static void *textfile_thread(void *arg)
{
	struct mqk_metrics *m = arg;
	struct mqk_bytes copy = {0};

	pthread_mutex_lock(&m->lock);
	while (!m->stop) {
		if (!m->rendered) {
			pthread_cond_wait(&m->cond, &m->lock); /* the first rendering */
			continue;
		}
		copy.len = 0;
		int rc = bytes__printf(&copy, "%.*s", (int)m->shown.len, m->shown.data);
		pthread_mutex_unlock(&m->lock);
		if (rc == 0 && write_textfile(m, copy.data, copy.len) == 0) {
			counter__inc(&m->textfile_writes);
		} else {
			counter__inc(&m->textfile_errors);
			log__deferred_ratelimited(&m->rl_textfile, MOSQ_LOG_ERR,
						  "metrics_textfile: cannot write '%s': %s",
						  m->textfile,
						  rc ? "out of memory" : strerror(errno));
		}
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += m->textfile_interval_s;
		pthread_mutex_lock(&m->lock);
		while (!m->stop &&
		       pthread_cond_timedwait(&m->cond, &m->lock, &until) != ETIMEDOUT) {
		}
	}
	pthread_mutex_unlock(&m->lock);
	free(copy.data);
	return NULL;
}

/* Is the textfile's directory there and writable? 0, or -1 with errstr. */
static int check_textfile_dir(const char *path, char *errstr, size_t errstr_size)
{
	char *copy = strdup(path);
	struct stat sb;
	int rc = -1;

	if (copy == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		return -1;
	}
	const char *dir = dirname(copy);
	if (stat(dir, &sb) != 0) {
		snprintf(errstr, errstr_size, "directory '%s': %s", dir, strerror(errno));
	} else if (!S_ISDIR(sb.st_mode)) {
		snprintf(errstr, errstr_size, "'%s' is not a directory", dir);
	} else if (access(dir, W_OK | X_OK) != 0) {
		snprintf(errstr, errstr_size, "directory '%s' is not writable by this user: %s",
			 dir, strerror(errno));
	} else {
		rc = 0;
	}
	free(copy);
	return rc;
}

/* ---- mosquitto's thread ----------------------------------------------------------------- */

struct mqk_metrics *metrics__new(const struct mqk_config *cfg, struct mqk_buffer *buf, char *errstr,
				 size_t errstr_size)
{
	struct mqk_metrics *m;
	char why[512];
	sigset_t all, old;

	if (cfg->metrics_listen == NULL && cfg->metrics_textfile == NULL) {
		return NULL;
	}
	if (cfg->metrics_textfile != NULL &&
	    check_textfile_dir(cfg->metrics_textfile, why, sizeof(why))) {
		snprintf(errstr, errstr_size, "plugin_opt_metrics_textfile: %s", why);
		return NULL;
	}
	m = calloc(1, sizeof(*m));
	if (m == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		return NULL;
	}
	m->buf = buf;
	m->listen_fd = -1;
	snprintf(m->broker_id, sizeof(m->broker_id), "%s", cfg->broker_id);
	m->max_unacked_s = cfg->health_max_unacked_s;
	m->start_ms = mqk_realtime_ms();
	m->limit_bytes = cfg->durability == MQK_DURABILITY_JOURNAL
				 ? (size_t)cfg->journal_max_mb << 20
				 : (size_t)cfg->buffer_mb << 20;
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	sigfillset(&all);
	if (cfg->metrics_listen != NULL) {
		m->listen_fd = listen_on(cfg->metrics_listen, why, sizeof(why));
		if (m->listen_fd < 0) {
			snprintf(errstr, errstr_size, "plugin_opt_metrics_listen: '%s': %s",
				 cfg->metrics_listen, why);
			metrics__free(m);
			return NULL;
		}
		/* Its thread inherits this mask: signals stay mosquitto's business. */
		pthread_sigmask(SIG_SETMASK, &all, &old);
		m->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0,
					  NULL, NULL, on_request, m, MHD_OPTION_LISTEN_SOCKET,
					  m->listen_fd, MHD_OPTION_CONNECTION_TIMEOUT,
					  (unsigned int)10, MHD_OPTION_CONNECTION_LIMIT,
					  (unsigned int)64, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log,
					  NULL, MHD_OPTION_END);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (m->mhd == NULL) {
			snprintf(errstr, errstr_size,
				 "plugin_opt_metrics_listen: '%s': libmicrohttpd did not start",
				 cfg->metrics_listen);
			metrics__free(m);
			return NULL;
		}
		int fd = m->listen_fd;
		m->listen_fd = -1; /* libmicrohttpd's now: MHD_stop_daemon closes it */
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		char addr[INET6_ADDRSTRLEN] = "?";
		int port = 0;
		if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
			if (ss.ss_family == AF_INET6) {
				struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
				inet_ntop(AF_INET6, &s6->sin6_addr, addr, sizeof(addr));
				port = ntohs(s6->sin6_port);
			} else {
				struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
				inet_ntop(AF_INET, &s4->sin_addr, addr, sizeof(addr));
				port = ntohs(s4->sin_port);
			}
		}
		log__printf(
			MOSQ_LOG_NOTICE,
			"metrics: GET /metrics and /healthz on %s port %d (health_max_unacked_s "
			"%d)",
			addr, port, m->max_unacked_s);
	}
	if (cfg->metrics_textfile != NULL) {
		size_t n = strlen(cfg->metrics_textfile) + 8;
		m->textfile = strdup(cfg->metrics_textfile);
		m->textfile_tmp = malloc(n);
		if (m->textfile == NULL || m->textfile_tmp == NULL) {
			snprintf(errstr, errstr_size, "out of memory");
			metrics__free(m);
			return NULL;
		}
		/* node-exporter reads only *.prom: the temporary file is not read half-written. */
		snprintf(m->textfile_tmp, n, "%s.tmp", cfg->metrics_textfile);
		m->textfile_interval_s = cfg->stats_interval > 0 ? cfg->stats_interval : 10;
		m->textfile_started = mqk_thread_start(&m->textfile_thread, textfile_thread, m,
						       "mqk-textfile");
		if (!m->textfile_started) {
			snprintf(errstr, errstr_size,
				 "plugin_opt_metrics_textfile: cannot start its thread");
			metrics__free(m);
			return NULL;
		}
		log__printf(MOSQ_LOG_NOTICE, "metrics: written to %s every %d s", m->textfile,
			    m->textfile_interval_s);
	}
	return m;
}

/* Prometheus label value escaping (\, ", newline). Names here never need it; be safe. */
static const char *label(const char *s, char *buf, size_t size)
{
	size_t n = 0;
	for (; *s && n + 2 < size; s++) {
		if (*s == '\\' || *s == '"' || *s == '\n') {
			buf[n++] = '\\';
			buf[n++] = *s == '\n' ? 'n' : *s;
		} else {
			buf[n++] = *s;
		}
	}
	buf[n] = '\0';
	return buf;
}

struct render_ctx {
	struct mqk_bytes *out;
	const struct mqk_stats *st;
	const struct mqk_config *cfg;
	const char *broker;
	bool commands_on;
};

/* stats__each_counter's callback: one counter's HELP, TYPE and samples. */
static void render_counter(void *arg, const struct mqk_counter_info *k)
{
	struct render_ctx *x = arg;
	struct mqk_bytes *out = x->out;
	const char *metric = k->metric;
	char name[64];

	if ((k->family == MQK_COUNTERS_COMMAND && !x->commands_on) ||
	    (k->family == MQK_COUNTERS_INBOUND && x->cfg->inbound.count == 0)) {
		return;
	}
	bytes__printf(out, "# HELP %s %s\n# TYPE %s counter\n%s{broker=\"%s\"} %llu\n", metric,
		      k->help, metric, metric, x->broker,
		      (unsigned long long)stats__value(x->st, k->family, k->index));
	if (k->family != MQK_COUNTERS_ROUTE) {
		return;
	}
	/* mosquitto_kafka_<c>_total -> mosquitto_kafka_route_<c>_total */
	char rmetric[160];
	snprintf(rmetric, sizeof(rmetric), "mosquitto_kafka_route_%s",
		 metric + strlen("mosquitto_kafka_"));
	bytes__printf(out, "# HELP %s Per route: %s\n# TYPE %s counter\n", rmetric, k->help,
		      rmetric);
	for (int i = 0; i < routes__in_force_count(x->cfg); i++) {
		int r = routes__in_force(x->cfg, i);
		struct mqk_counters c;
		routes__counters(x->cfg, r, &c);
		bytes__printf(out, "%s{broker=\"%s\",route=\"%s\"} %llu\n", rmetric, x->broker,
			      label(x->cfg->routes[r].name, name, sizeof(name)),
			      (unsigned long long)stats__route_counter(&c, k->index));
	}
}

static void gauge(struct mqk_bytes *out, const char *metric, const char *help, const char *broker,
		  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void gauge(struct mqk_bytes *out, const char *metric, const char *help, const char *broker,
		  const char *fmt, ...)
{
	char value[64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(value, sizeof(value), fmt, ap);
	va_end(ap);
	bytes__printf(out, "# HELP %s %s\n# TYPE %s gauge\n%s{broker=\"%s\"} %s\n", metric, help,
		      metric, metric, broker, value);
}

int metrics__render(struct mqk_metrics *m, const struct mqk_stats *st, const struct mqk_config *cfg,
		    bool commands_on, struct mqk_bytes *out)
{
	struct render_ctx x = {.out = out, .st = st, .cfg = cfg, .commands_on = commands_on};
	char broker[160], name[64], health[512];
	struct mqk_buffer *b = m->buf;
	int64_t now = mqk_realtime_ms();
	int64_t oldest = atomic_load(&b->oldest_ms);
	int64_t acked = atomic_load(&b->acked_ms);
	uint64_t committed = counter__get(&b->committed), released = counter__get(&b->released);

	out->len = 0;
	x.broker = label(m->broker_id, broker, sizeof(broker));
	stats__each_counter(render_counter, &x);
	bytes__printf(out,
		      "# HELP mosquitto_kafka_in_flight Records in librdkafka: produced - "
		      "delivered - failed.\n# TYPE mosquitto_kafka_in_flight gauge\n"
		      "mosquitto_kafka_in_flight{broker=\"%s\"} %llu\n",
		      broker, (unsigned long long)counters__in_flight(&st->totals));
	bytes__printf(out, "# HELP mosquitto_kafka_route_in_flight Per route: records in "
			   "librdkafka.\n# TYPE mosquitto_kafka_route_in_flight gauge\n");
	for (int k = 0; k < routes__in_force_count(cfg); k++) {
		int r = routes__in_force(cfg, k);
		struct mqk_counters c;
		routes__counters(cfg, r, &c);
		bytes__printf(out,
			      "mosquitto_kafka_route_in_flight{broker=\"%s\",route=\"%s\"} %llu\n",
			      broker, label(cfg->routes[r].name, name, sizeof(name)),
			      (unsigned long long)counters__in_flight(&c));
	}
	gauge(out, "mosquitto_kafka_buffer_used_bytes",
	      "Bytes in the journal (or memory buffer): records not yet acknowledged by Kafka.",
	      broker, "%zu", buffer__used(b));
	gauge(out, "mosquitto_kafka_buffer_limit_bytes",
	      "The journal's (journal_max_mb) or memory buffer's (buffer_mb) size limit.", broker,
	      "%zu", m->limit_bytes);
	gauge(out, "mosquitto_kafka_buffer_records",
	      "Records waiting in the journal (buffer): not yet acknowledged by Kafka.", broker,
	      "%llu", (unsigned long long)(committed > released ? committed - released : 0));
	gauge(out, "mosquitto_kafka_oldest_unacked_age_seconds",
	      "Age of the oldest record Kafka has not acknowledged yet; 0 when there is none.",
	      broker, "%.3f", oldest ? (double)(now - oldest) / 1000 : 0.0);
	gauge(out, "mosquitto_kafka_last_ack_timestamp_seconds",
	      "When Kafka last acknowledged a record (Unix time); 0: not since the start.", broker,
	      "%.3f", (double)acked / 1000);
	gauge(out, "mosquitto_kafka_healthy",
	      "1 when GET /healthz answers 200 (see the README's health rule), else 0.", broker,
	      "%d", metrics__health(m, health, sizeof(health)) == 200 ? 1 : 0);
	gauge(out, "mosquitto_kafka_metrics_render_seconds",
	      "How long mosquitto's thread took to render the previous metrics text.", broker,
	      "%.6f", m->render_s);
	if (m->textfile != NULL) {
		bytes__printf(out,
			      "# HELP mosquitto_kafka_textfile_errors_total Writes of "
			      "metrics_textfile that failed.\n# TYPE "
			      "mosquitto_kafka_textfile_errors_total counter\n"
			      "mosquitto_kafka_textfile_errors_total{broker=\"%s\"} %llu\n",
			      broker, (unsigned long long)counter__get(&m->textfile_errors));
	}
	kstats__render(out, broker);
	latency__render(out, broker);
	return out->data == NULL ? -1 : 0;
}

void metrics__tick(struct mqk_metrics *m, const struct mqk_stats *st, const struct mqk_config *cfg,
		   bool commands_on, time_t now)
{
	struct mqk_bytes swap;

	if (m == NULL || now == m->rendered_at) {
		return;
	}
	m->rendered_at = now;
	double t0 = monotonic_s();
	if (metrics__render(m, st, cfg, commands_on, &m->work) != 0) {
		return;
	}
	m->render_s = monotonic_s() - t0;
	pthread_mutex_lock(&m->lock);
	swap = m->shown;
	m->shown = m->work;
	m->work = swap;
	bool first = !m->rendered;
	m->rendered = true;
	pthread_mutex_unlock(&m->lock);
	if (first) {
		pthread_cond_broadcast(&m->cond);
	}
}

void metrics__free(struct mqk_metrics *m)
{
	if (m == NULL) {
		return;
	}
	if (m->mhd != NULL) {
		MHD_stop_daemon(m->mhd);
	}
	if (m->listen_fd >= 0) {
		close(m->listen_fd);
	}
	if (m->textfile_started) {
		pthread_mutex_lock(&m->lock);
		m->stop = true;
		pthread_cond_broadcast(&m->cond);
		pthread_mutex_unlock(&m->lock);
		pthread_join(m->textfile_thread, NULL);
	}
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->cond);
	free(m->shown.data);
	free(m->work.data);
	free(m->textfile);
	free(m->textfile_tmp);
	free(m);
}
