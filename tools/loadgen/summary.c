/*
 * summary.c - the workers' counters added up: the progress line (stderr, a terminal
 * only, once a second), the JSON summary (stdout, once, cJSON) and the verdict (the exit
 * status, with its reasons on stderr). Runs on the main thread; the counters are
 * atomics that each worker alone writes, and the per-device figures (in flight at exit,
 * never connected) are read after the workers were joined.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <mosquitto.h>

#include "cli.h"
#include "loadgen.h"

struct totals {
	uint64_t sent, acked, rejected, failed, skipped_offline, skipped_backlog;
	uint64_t connect_errors, reconnects, disconnects, resent, gave_up, subscribe_failed;
	uint64_t commands_received, answers_sent, answers_acked, answers_rejected;
	uint64_t answers_failed;
	long long connected, ever_connected, connected_at_end;
};

static void add_up(const struct run *run, struct totals *t)
{
	memset(t, 0, sizeof(*t));
	for (int i = 0; i < run->worker_count; i++) {
		const struct counters *c = &run->workers[i].c;
		t->sent += counter__get(&c->sent);
		t->acked += counter__get(&c->acked);
		t->rejected += counter__get(&c->rejected);
		t->failed += counter__get(&c->failed);
		t->skipped_offline += counter__get(&c->skipped_offline);
		t->skipped_backlog += counter__get(&c->skipped_backlog);
		t->connect_errors += counter__get(&c->connect_errors);
		t->reconnects += counter__get(&c->reconnects);
		t->disconnects += counter__get(&c->disconnects);
		t->resent += counter__get(&c->resent);
		t->gave_up += counter__get(&c->gave_up);
		t->subscribe_failed += counter__get(&c->subscribe_failed);
		t->commands_received += counter__get(&c->commands_received);
		t->answers_sent += counter__get(&c->answers_sent);
		t->answers_acked += counter__get(&c->answers_acked);
		t->answers_rejected += counter__get(&c->answers_rejected);
		t->answers_failed += counter__get(&c->answers_failed);
		t->connected += atomic_load_explicit(&c->connected, memory_order_relaxed);
		t->ever_connected += atomic_load_explicit(&c->ever_connected, memory_order_relaxed);
		t->connected_at_end += atomic_load(&run->workers[i].connected_at_end);
	}
}

void summary__progress(struct run *run, double now)
{
	static uint64_t last_sent;
	static double last_at;
	struct totals t;
	double rate;
	uint64_t in_flight;

	add_up(run, &t);
	if (last_at == 0) {
		last_at = run->t0;
	}
	rate = now > last_at ? (double)(t.sent - last_sent) / (now - last_at) : 0;
	last_sent = t.sent;
	last_at = now;
	in_flight = run->opt.qos > 0 ? t.sent - t.acked - t.rejected : 0;
	pthread_mutex_lock(&run->stderr_lock);
	fprintf(stderr,
		"\r\033[K%s: %.0f msg/s, sent %llu, acked %llu, in flight %llu, connected "
		"%lld/%lld, errors %llu",
		LOADGEN_NAME, rate, (unsigned long long)t.sent, (unsigned long long)t.acked,
		(unsigned long long)in_flight, t.connected, run->opt.devices,
		(unsigned long long)(t.connect_errors + t.failed));
	fflush(stderr);
	pthread_mutex_unlock(&run->stderr_lock);
}

static void add_number(cJSON *obj, const char *name, double v)
{
	cJSON_AddNumberToObject(obj, name, v);
}

/* One line of the verdict: "mqk-loadgen: <reason>". */
static void reason(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void reason(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", LOADGEN_NAME);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int summary__print(struct run *run, bool interrupted)
{
	const struct options *opt = &run->opt;
	struct totals t;
	uint64_t in_flight = 0, answers_in_flight = 0;
	long long never_connected = 0;
	double ended = run->t0, duration;
	cJSON *root, *sent;
	char *text;
	bool ok;
	const char *qos_names[3] = {"qos0", "qos1", "qos2"};

	add_up(run, &t);
	for (int i = 0; i < run->worker_count; i++) {
		const struct worker *w = &run->workers[i];
		in_flight += w->in_flight_at_exit;
		answers_in_flight += w->answers_in_flight_at_exit;
		never_connected += w->never_connected;
		if (w->ended_at > ended) {
			ended = w->ended_at;
		}
	}
	duration = ended - run->t0;

	root = cJSON_CreateObject();
	if (root == NULL) {
		cli_fail("out of memory for the summary");
		return 1;
	}
	add_number(root, "devices", (double)opt->devices);
	add_number(root, "threads", run->worker_count);
	cJSON_AddStringToObject(root, "protocol",
				opt->protocol == MQTT_PROTOCOL_V5 ? "5" : "3.1.1");
	add_number(root, "qos", opt->qos);
	add_number(root, "connected", (double)t.connected_at_end);
	add_number(root, "ever_connected", (double)t.ever_connected);
	add_number(root, "never_connected", (double)never_connected);
	add_number(root, "duration_s", duration);
	sent = cJSON_AddObjectToObject(root, "sent");
	for (int q = 0; q < 3; q++) {
		add_number(sent, qos_names[q], q == opt->qos ? (double)t.sent : 0);
	}
	add_number(sent, "total", (double)t.sent);
	add_number(root, "acked", (double)t.acked);
	add_number(root, "rejected", (double)t.rejected);
	add_number(root, "in_flight", (double)in_flight);
	add_number(root, "failed", (double)t.failed);
	add_number(root, "skipped_offline", (double)t.skipped_offline);
	add_number(root, "skipped_backlog", (double)t.skipped_backlog);
	add_number(root, "connect_errors", (double)t.connect_errors);
	add_number(root, "reconnects", (double)t.reconnects);
	add_number(root, "disconnects", (double)t.disconnects);
	add_number(root, "resent", (double)t.resent);
	add_number(root, "gave_up", (double)t.gave_up);
	add_number(root, "subscribe_failed", (double)t.subscribe_failed);
	add_number(root, "commands_received", (double)t.commands_received);
	add_number(root, "answers_sent", (double)t.answers_sent);
	add_number(root, "answers_acked", (double)t.answers_acked);
	add_number(root, "answers_rejected", (double)t.answers_rejected);
	add_number(root, "answers_failed", (double)t.answers_failed);
	add_number(root, "answers_in_flight", (double)answers_in_flight);
	add_number(root, "rate", duration > 0 ? (double)t.sent / duration : 0);
	cJSON_AddBoolToObject(root, "interrupted", interrupted);

	ok = never_connected == 0 && t.failed == 0 && t.rejected == 0 && in_flight == 0 &&
	     answers_in_flight == 0 && t.answers_failed == 0 && t.answers_rejected == 0 &&
	     t.subscribe_failed == 0;
	cJSON_AddBoolToObject(root, "ok", ok);
	text = cJSON_Print(root);
	if (text == NULL) {
		cJSON_Delete(root);
		cli_fail("out of memory for the summary");
		return 1;
	}
	printf("%s\n", text);
	fflush(stdout);
	cJSON_free(text);
	cJSON_Delete(root);

	if (never_connected > 0) {
		reason("%lld of %lld devices never connected (%llu connect errors)",
		       never_connected, opt->devices, (unsigned long long)t.connect_errors);
	}
	if (t.failed > 0) {
		reason("%llu publish calls failed", (unsigned long long)t.failed);
	}
	if (t.rejected > 0) {
		reason("the broker refused %llu messages (MQTT v5 reason codes)",
		       (unsigned long long)t.rejected);
	}
	if (in_flight > 0) {
		reason("%llu QoS %d messages were not acknowledged (--drain %g s)",
		       (unsigned long long)in_flight, opt->qos, opt->drain);
	}
	if (answers_in_flight + t.answers_failed + t.answers_rejected > 0) {
		reason("answers: %llu not acknowledged, %llu failed, %llu refused",
		       (unsigned long long)answers_in_flight, (unsigned long long)t.answers_failed,
		       (unsigned long long)t.answers_rejected);
	}
	if (t.subscribe_failed > 0) {
		reason("%llu command subscriptions failed", (unsigned long long)t.subscribe_failed);
	}
	for (int i = 0; !ok && i < run->worker_count; i++) {
		if (run->workers[i].first_error[0] != '\0') {
			reason("first error seen: %s", run->workers[i].first_error);
			break;
		}
	}
	if (ok && opt->verbosity > 0) {
		fprintf(stderr,
			"%s: %llu sent in %.1f s (%.0f msg/s), %llu acknowledged, %llu "
			"reconnects\n",
			LOADGEN_NAME, (unsigned long long)t.sent, duration,
			duration > 0 ? (double)t.sent / duration : 0, (unsigned long long)t.acked,
			(unsigned long long)t.reconnects);
	}
	return ok ? 0 : 1;
}
