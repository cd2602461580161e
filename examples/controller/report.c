/*
 * report.c - what a controller run saw, as a live line and as a JSON report.
 *
 * Every data message is counted three ways: per device (the payload's device id and
 * sequence number: lost = numbers never filled below the highest seen, duplicates, out
 * of order), per (broker, route, boot) from the plugin's mqtt.* headers (the loss
 * audit: a gap in mqtt.seq is a record the plugin numbered and Kafka never got), and in
 * the latency histogram (arrival time minus the payload's send time, both this
 * machine's CLOCK_REALTIME).
 *
 * Commands (commands.c): sent, failed, answered by their own device once, unanswered
 * (sent minus answered), duplicates, misdelivered and unmatched answers, and two
 * histograms: the round trip (command sent -> answer here) and the delivery (command
 * sent -> the device's answer time in its payload: one way, one machine's clock).
 *
 * The report with "detail" carries the ranges and histogram buckets themselves, so
 * that `mqk-controller merge` can add up several instances exactly: a device whose
 * partition moved from one instance to another mid-run has its numbers split over two
 * reports, and only their union says whether one is missing.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mqk_payload.h>

#include "controller.h"

#define BROKER_SEP '\t'

uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void report__init(struct report *r, const char *mode)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->mode, sizeof(r->mode), "%s", mode);
	r->instances = 1;
	r->devices.first_seq = 0;
	r->brokers.first_seq = 1;
}

void report__free(struct report *r)
{
	hist__free(&r->latency);
	hist__free(&r->rtt);
	hist__free(&r->delivery);
	tally__free(&r->devices);
	tally__free(&r->brokers);
}

void report__message(struct report *r, const void *payload, size_t len, uint64_t now,
		     const char *broker, const char *route, const char *boot, uint64_t seq)
{
	struct mqk_payload p;
	struct track *tr;

	if (broker != NULL) {
		char key[512];
		int n = snprintf(key, sizeof(key), "%s%c%s%c%s", broker, BROKER_SEP,
				 route ? route : "", BROKER_SEP, boot ? boot : "");
		if (n > 0 && (size_t)n < sizeof(key) &&
		    (tr = tally__get(&r->brokers, key, (size_t)n))) {
			track__arrive(tr, seq);
		}
	}
	if (mqk_payload_decode(payload, len, &p) != 0) {
		r->foreign++;
		return;
	}
	tr = tally__get(&r->devices, p.device, p.device_len);
	if (tr == NULL) {
		return;
	}
	enum arrival a = track__arrive(tr, p.seq);
	if (a == ARRIVAL_NEW || a == ARRIVAL_LATE) {
		r->distinct++;
	}
	r->received++;
	if (r->first_us == 0) {
		r->first_us = now;
	}
	r->last_us = now;
	if (now < p.sent_us) {
		r->early++;
		hist__record(&r->latency, 0);
	} else {
		hist__record(&r->latency, now - p.sent_us);
	}
}

/* ---- totals over tracks ---- */

struct sums {
	uint64_t first_seq;
	uint64_t unique, lost, duplicates, out_of_order, lossy_tracks;
};

static void add_track(const struct track *tr, void *arg)
{
	struct sums *s = arg;
	uint64_t gaps = seqset__gaps(&tr->seen, s->first_seq);

	s->unique += seqset__count(&tr->seen);
	s->lost += gaps;
	s->duplicates += tr->duplicates;
	s->out_of_order += tr->out_of_order;
	s->lossy_tracks += gaps > 0;
}

static struct sums sum_tally(const struct tally *t)
{
	struct sums s = {.first_seq = t->first_seq};
	tally__each(t, add_track, &s);
	return s;
}

uint64_t report__unique(const struct report *r)
{
	return r->distinct;
}

bool report__lossy(const struct report *r)
{
	struct sums d = sum_tally(&r->devices), b = sum_tally(&r->brokers);
	return d.lost > 0 || b.lost > 0 || (r->expect > 0 && d.unique < r->expect);
}

uint64_t report__unanswered(const struct report *r)
{
	return r->commands_sent > r->answers ? r->commands_sent - r->answers : 0;
}

bool report__commands_lossy(const struct report *r)
{
	return r->commands_sent > 0 && (report__unanswered(r) > 0 || r->answers_duplicate > 0 ||
					r->answers_misdelivered > 0);
}

void report__live(const struct report *r, uint64_t now, uint64_t *prev_received, uint64_t *prev_us,
		  char *buf, size_t size)
{
	double secs = *prev_us ? (double)(now - *prev_us) / 1e6 : 0;
	double rate = secs > 0 ? (double)(r->received - *prev_received) / secs : 0;
	struct sums d = sum_tally(&r->devices);

	snprintf(buf, size,
		 "received %" PRIu64 " (%.0f/s)  devices %zu  lost %" PRIu64 "  dup %" PRIu64
		 "  p99 %.1f ms  answers %" PRIu64 "/%" PRIu64 " (dup %" PRIu64
		 ", misdelivered %" PRIu64 ")  delivery p99 %.1f ms",
		 r->received, rate, r->devices.n, d.lost, d.duplicates,
		 (double)hist__percentile(&r->latency, 99) / 1000.0, r->answers, r->commands_sent,
		 r->answers_duplicate, r->answers_misdelivered,
		 (double)hist__percentile(&r->delivery, 99) / 1000.0);
	*prev_received = r->received;
	*prev_us = now;
}

/* ---- JSON ---- */

static cJSON *percentiles(const struct hist *h)
{
	cJSON *o = cJSON_CreateObject();
	static const struct {
		const char *name;
		double p;
	} ps[] = {{"p50", 50}, {"p90", 90}, {"p99", 99}, {"p99_9", 99.9}};

	cJSON_AddNumberToObject(o, "count", (double)h->total);
	for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
		cJSON_AddNumberToObject(o, ps[i].name, (double)hist__percentile(h, ps[i].p));
	}
	cJSON_AddNumberToObject(o, "min", (double)h->min);
	cJSON_AddNumberToObject(o, "max", (double)h->max);
	cJSON_AddNumberToObject(o, "mean", h->total ? (double)h->sum / (double)h->total : 0);
	return o;
}

static cJSON *hist_detail(const struct hist *h)
{
	cJSON *o = cJSON_CreateObject(), *buckets = cJSON_AddArrayToObject(o, "buckets");

	cJSON_AddNumberToObject(o, "min", (double)h->min);
	cJSON_AddNumberToObject(o, "max", (double)h->max);
	cJSON_AddNumberToObject(o, "sum", (double)h->sum);
	for (size_t i = 0; h->counts && i < HIST_BUCKETS; i++) {
		if (h->counts[i]) {
			cJSON *pair = cJSON_CreateArray();
			cJSON_AddItemToArray(pair, cJSON_CreateNumber((double)i));
			cJSON_AddItemToArray(pair, cJSON_CreateNumber((double)h->counts[i]));
			cJSON_AddItemToArray(buckets, pair);
		}
	}
	return o;
}

static void track_detail(const struct track *tr, void *arg)
{
	cJSON *o = cJSON_CreateObject(), *ranges = cJSON_AddArrayToObject(o, "ranges");

	for (size_t i = 0; i < tr->seen.n; i++) {
		cJSON *pair = cJSON_CreateArray();
		cJSON_AddItemToArray(pair, cJSON_CreateNumber((double)tr->seen.r[i].lo));
		cJSON_AddItemToArray(pair, cJSON_CreateNumber((double)tr->seen.r[i].hi));
		cJSON_AddItemToArray(ranges, pair);
	}
	cJSON_AddNumberToObject(o, "received", (double)tr->received);
	cJSON_AddNumberToObject(o, "duplicates", (double)tr->duplicates);
	cJSON_AddNumberToObject(o, "out_of_order", (double)tr->out_of_order);
	cJSON_AddItemToObject((cJSON *)arg, tr->key, o);
}

/* One entry of "brokers": the loss audit of one (broker, route, boot). */
static void broker_audit(const struct track *tr, void *arg)
{
	cJSON *o = cJSON_CreateObject();
	char *key = strdup(tr->key);
	char *route = key ? strchr(key, BROKER_SEP) : NULL;
	char *boot = route ? strchr(route + 1, BROKER_SEP) : NULL;

	if (boot != NULL) {
		*route++ = '\0';
		*boot++ = '\0';
		cJSON_AddStringToObject(o, "broker", key);
		cJSON_AddStringToObject(o, "route", route);
		cJSON_AddStringToObject(o, "boot", boot);
	}
	free(key);
	cJSON_AddNumberToObject(o, "received", (double)tr->received);
	cJSON_AddNumberToObject(o, "first_seq", tr->seen.n ? (double)tr->seen.r[0].lo : 0);
	cJSON_AddNumberToObject(o, "last_seq", (double)seqset__max(&tr->seen));
	cJSON_AddNumberToObject(o, "lost", (double)seqset__gaps(&tr->seen, 1));
	cJSON_AddNumberToObject(o, "duplicates", (double)tr->duplicates);
	cJSON_AddNumberToObject(o, "out_of_order", (double)tr->out_of_order);
	cJSON_AddItemToArray((cJSON *)arg, o);
}

cJSON *report__json(const struct report *r, bool detail)
{
	cJSON *o = cJSON_CreateObject();
	struct sums d = sum_tally(&r->devices), b = sum_tally(&r->brokers);
	double secs = r->last_us > r->first_us ? (double)(r->last_us - r->first_us) / 1e6 : 0;

	cJSON_AddStringToObject(o, "mode", r->mode);
	cJSON_AddNumberToObject(o, "instances", r->instances);
	cJSON_AddNumberToObject(o, "received", (double)r->received);
	cJSON_AddNumberToObject(o, "unique", (double)d.unique);
	cJSON_AddNumberToObject(o, "lost", (double)d.lost);
	cJSON_AddNumberToObject(o, "duplicates", (double)d.duplicates);
	cJSON_AddNumberToObject(o, "out_of_order", (double)d.out_of_order);
	cJSON_AddNumberToObject(o, "foreign", (double)r->foreign);
	if (r->expect > 0) {
		cJSON_AddNumberToObject(o, "expected", (double)r->expect);
		cJSON_AddNumberToObject(o, "missing",
					d.unique < r->expect ? (double)(r->expect - d.unique) : 0);
	}
	cJSON_AddNumberToObject(o, "devices", (double)r->devices.n);
	cJSON_AddNumberToObject(o, "devices_with_loss", (double)d.lossy_tracks);
	cJSON_AddNumberToObject(o, "duration_s", secs);
	cJSON_AddNumberToObject(o, "throughput", secs > 0 ? (double)r->received / secs : 0);
	cJSON_AddItemToObject(o, "latency_us", percentiles(&r->latency));
	cJSON_AddNumberToObject(o, "early", (double)r->early);

	cJSON *audit = cJSON_AddObjectToObject(o, "audit");
	cJSON_AddNumberToObject(audit, "records", (double)(b.unique + b.duplicates));
	cJSON_AddNumberToObject(audit, "lost", (double)b.lost);
	cJSON_AddNumberToObject(audit, "duplicates", (double)b.duplicates);
	tally__each(&r->brokers, broker_audit, cJSON_AddArrayToObject(audit, "brokers"));

	cJSON *cmd = cJSON_AddObjectToObject(o, "commands");
	cJSON_AddNumberToObject(cmd, "sent", (double)r->commands_sent);
	cJSON_AddNumberToObject(cmd, "failed", (double)r->commands_failed);
	cJSON_AddNumberToObject(cmd, "answered", (double)r->answers);
	cJSON_AddNumberToObject(cmd, "unanswered", (double)report__unanswered(r));
	cJSON_AddNumberToObject(cmd, "duplicates", (double)r->answers_duplicate);
	cJSON_AddNumberToObject(cmd, "misdelivered", (double)r->answers_misdelivered);
	cJSON_AddNumberToObject(cmd, "unmatched", (double)r->answers_unmatched);
	cJSON_AddItemToObject(cmd, "rtt_us", percentiles(&r->rtt));
	cJSON_AddItemToObject(cmd, "delivery_us", percentiles(&r->delivery));

	if (detail) {
		cJSON *det = cJSON_AddObjectToObject(o, "detail");
		cJSON_AddNumberToObject(det, "first_us", (double)r->first_us);
		cJSON_AddNumberToObject(det, "last_us", (double)r->last_us);
		tally__each(&r->devices, track_detail, cJSON_AddObjectToObject(det, "devices"));
		tally__each(&r->brokers, track_detail, cJSON_AddObjectToObject(det, "brokers"));
		cJSON_AddItemToObject(det, "latency", hist_detail(&r->latency));
		cJSON_AddItemToObject(det, "rtt", hist_detail(&r->rtt));
		cJSON_AddItemToObject(det, "delivery", hist_detail(&r->delivery));
	}
	return o;
}

/* ---- merge ---- */

static bool get_u64(const cJSON *o, const char *name, uint64_t *out)
{
	const cJSON *n = cJSON_GetObjectItemCaseSensitive(o, name);
	if (!cJSON_IsNumber(n) || n->valuedouble < 0 || n->valuedouble > 9007199254740992.0) {
		return false;
	}
	*out = (uint64_t)n->valuedouble;
	return true;
}

/* Like get_u64, but a counter that is absent (a report saved by an older version) is 0. */
static bool get_u64_or_0(const cJSON *o, const char *name, uint64_t *out)
{
	*out = 0;
	return !cJSON_HasObjectItem(o, name) || get_u64(o, name, out);
}

static int load_hist(struct hist *h, const cJSON *o)
{
	struct hist in = {0};
	const cJSON *pair;
	uint64_t i, count;

	cJSON_ArrayForEach(pair, cJSON_GetObjectItemCaseSensitive(o, "buckets"))
	{
		cJSON *a = cJSON_GetArrayItem(pair, 0), *b = cJSON_GetArrayItem(pair, 1);
		if (!cJSON_IsNumber(a) || !cJSON_IsNumber(b) || a->valuedouble < 0 ||
		    b->valuedouble < 0) {
			hist__free(&in);
			return -1;
		}
		i = (uint64_t)a->valuedouble;
		count = (uint64_t)b->valuedouble;
		if (i >= HIST_BUCKETS || hist__add_bucket(&in, (size_t)i, count) != 0) {
			hist__free(&in);
			return -1;
		}
	}
	if (in.total > 0 && get_u64(o, "min", &in.min) && get_u64(o, "max", &in.max)) {
		get_u64(o, "sum", &in.sum);
	}
	int rc = hist__merge(h, &in);
	hist__free(&in);
	return rc;
}

static int load_tally(struct tally *t, const cJSON *o)
{
	struct tally in = {.first_seq = t->first_seq};
	const cJSON *dev;

	cJSON_ArrayForEach(dev, o)
	{
		struct track *tr = tally__get(&in, dev->string, strlen(dev->string));
		const cJSON *pair;
		if (tr == NULL) {
			goto error;
		}
		cJSON_ArrayForEach(pair, cJSON_GetObjectItemCaseSensitive(dev, "ranges"))
		{
			cJSON *a = cJSON_GetArrayItem(pair, 0), *b = cJSON_GetArrayItem(pair, 1);
			if (!cJSON_IsNumber(a) || !cJSON_IsNumber(b) || a->valuedouble < 0 ||
			    b->valuedouble < a->valuedouble ||
			    seqset__add_range(&tr->seen, (uint64_t)a->valuedouble,
					      (uint64_t)b->valuedouble) < 0) {
				goto error;
			}
		}
		if (!get_u64(dev, "received", &tr->received) ||
		    !get_u64(dev, "duplicates", &tr->duplicates) ||
		    !get_u64(dev, "out_of_order", &tr->out_of_order)) {
			goto error;
		}
	}
	int rc = tally__merge(t, &in);
	tally__free(&in);
	return rc;
error:
	tally__free(&in);
	return -1;
}

int report__merge_json(struct report *r, const cJSON *json, char *errstr, size_t errstr_size)
{
	const cJSON *det = cJSON_GetObjectItemCaseSensitive(json, "detail");
	const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(json, "commands");
	uint64_t instances = 0, received = 0, foreign = 0, early = 0, first = 0, last = 0;
	uint64_t sent = 0, failed = 0, answered = 0, unmatched = 0, duplicates = 0,
		 misdelivered = 0;

	if (!cJSON_IsObject(det) || !get_u64(json, "instances", &instances) ||
	    !get_u64(json, "received", &received) || !get_u64(json, "foreign", &foreign) ||
	    !get_u64(json, "early", &early) || !get_u64(det, "first_us", &first) ||
	    !get_u64(det, "last_us", &last) || !get_u64(cmd, "sent", &sent) ||
	    !get_u64(cmd, "failed", &failed) || !get_u64(cmd, "answered", &answered) ||
	    !get_u64(cmd, "unmatched", &unmatched) ||
	    !get_u64_or_0(cmd, "duplicates", &duplicates) ||
	    !get_u64_or_0(cmd, "misdelivered", &misdelivered)) {
		snprintf(errstr, errstr_size,
			 "not a report saved by mqk-controller --save (no \"detail\" or a counter "
			 "missing)");
		return -1;
	}
	if (load_tally(&r->devices, cJSON_GetObjectItemCaseSensitive(det, "devices")) != 0 ||
	    load_tally(&r->brokers, cJSON_GetObjectItemCaseSensitive(det, "brokers")) != 0 ||
	    load_hist(&r->latency, cJSON_GetObjectItemCaseSensitive(det, "latency")) != 0 ||
	    load_hist(&r->rtt, cJSON_GetObjectItemCaseSensitive(det, "rtt")) != 0 ||
	    load_hist(&r->delivery, cJSON_GetObjectItemCaseSensitive(det, "delivery")) != 0) {
		snprintf(errstr, errstr_size, "a malformed range, histogram or device entry");
		return -1;
	}
	r->distinct = sum_tally(&r->devices).unique;
	r->instances += (unsigned)instances;
	r->received += received;
	r->foreign += foreign;
	r->early += early;
	if (first && (r->first_us == 0 || first < r->first_us)) {
		r->first_us = first;
	}
	if (last > r->last_us) {
		r->last_us = last;
	}
	r->commands_sent += sent;
	r->commands_failed += failed;
	r->answers += answered;
	r->answers_unmatched += unmatched;
	r->answers_duplicate += duplicates;
	r->answers_misdelivered += misdelivered;
	return 0;
}
