/*
 * test_controller.c - mqk-controller's counting: sequence sets (gaps, duplicates,
 * reordering, merging ranges), the latency histogram (buckets, percentiles against a
 * sorted copy), the per-sender tally, the report (loss audit per broker, JSON) and the
 * merge of two instances' reports (the commands' counters and histograms too), and
 * command/answer pairing: by id and by echoed payload, duplicates, answers from another
 * device, unmatched ones, round trip and delivery times, 50,000 commands.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <mqk_payload.h>

#include "controller.h"

/* ---- seqset ---- */

static void test_seqset_in_order(void **state)
{
	struct seqset s = {0};

	(void)state;
	for (uint64_t i = 0; i < 100000; i++) {
		assert_int_equal(seqset__add(&s, i), 1);
	}
	assert_int_equal(s.n, 1); /* one range */
	assert_int_equal(seqset__count(&s), 100000);
	assert_int_equal(seqset__max(&s), 99999);
	assert_int_equal(seqset__gaps(&s, 0), 0);
	assert_int_equal(seqset__add(&s, 500), 0); /* a duplicate */
	seqset__free(&s);
}

static void test_seqset_gaps_filled(void **state)
{
	struct seqset s = {0};

	(void)state;
	/* 0..9 without 3, 4 and 7; then 20. */
	for (uint64_t i = 0; i < 10; i++) {
		if (i != 3 && i != 4 && i != 7) {
			seqset__add(&s, i);
		}
	}
	seqset__add(&s, 20);
	assert_int_equal(s.n, 4);                      /* 0-2, 5-6, 8-9, 20 */
	assert_int_equal(seqset__gaps(&s, 0), 3 + 10); /* 3,4,7 and 10..19 */
	assert_int_equal(seqset__gaps(&s, 1), 13);
	assert_int_equal(seqset__gaps(&s, 8), 10); /* from 8: only 10..19 */
	assert_int_equal(seqset__add(&s, 4), 1);
	assert_int_equal(seqset__add(&s, 3), 1); /* joins 0-2 and 4-6 */
	assert_int_equal(seqset__add(&s, 7), 1);
	assert_int_equal(s.n, 2);
	assert_int_equal(seqset__gaps(&s, 0), 10);
	for (uint64_t i = 19; i >= 10; i--) { /* backwards */
		assert_int_equal(seqset__add(&s, i), 1);
	}
	assert_int_equal(s.n, 1);
	assert_int_equal(seqset__count(&s), 21);
	/* A set starting above `from` has a gap before it. */
	struct seqset t = {0};
	seqset__add(&t, 5);
	assert_int_equal(seqset__gaps(&t, 1), 4);
	seqset__free(&t);
	seqset__free(&s);
}

static void test_seqset_ranges(void **state)
{
	struct seqset s = {0};

	(void)state;
	assert_int_equal(seqset__add_range(&s, 10, 19), 0);
	assert_int_equal(seqset__add_range(&s, 30, 39), 0);
	assert_int_equal(seqset__add_range(&s, 15, 34), 5 + 5); /* 15-19, 30-34 were there */
	assert_int_equal(s.n, 1);
	assert_int_equal(seqset__count(&s), 30);
	assert_int_equal(seqset__add_range(&s, 0, 100), 30);
	assert_int_equal(seqset__count(&s), 101);
	assert_int_equal(seqset__add_range(&s, UINT64_MAX - 1, UINT64_MAX), 0);
	assert_int_equal(seqset__add(&s, UINT64_MAX), 0);
	assert_int_equal(s.n, 2);
	seqset__free(&s);
}

/* ---- hist ---- */

static int cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void test_hist_buckets(void **state)
{
	(void)state;
	/* Buckets tile the values: each starts right after the previous one ends. */
	for (size_t i = 0; i + 1 < HIST_BUCKETS; i++) {
		assert_int_equal(hist__highest(i) + 1, hist__lowest(i + 1));
		assert_int_equal(hist__bucket(hist__lowest(i)), i);
		assert_int_equal(hist__bucket(hist__highest(i)), i);
	}
	assert_int_equal(hist__bucket(0), 0);
	assert_int_equal(hist__bucket(1023), 1023);
	assert_int_equal(hist__bucket(1024), 1024);
	assert_int_equal(hist__bucket(UINT64_MAX), HIST_BUCKETS - 1);
	/* Width at most 1/512 of the value above the linear range. */
	for (size_t i = HIST_LINEAR; i + 1 < HIST_BUCKETS; i += 97) {
		assert_true((hist__highest(i) - hist__lowest(i) + 1) * 512 <= hist__lowest(i));
	}
}

static void test_hist_percentiles(void **state)
{
	enum { N = 100000 };
	static uint64_t v[N];
	struct hist h = {0};

	(void)state;
	srandom(42);
	for (size_t i = 0; i < N; i++) {
		/* Mostly around 2 ms, a tail to a second. */
		v[i] = (uint64_t)(random() % 4000) +
		       (i % 100 == 0 ? (uint64_t)(random() % 1000000) : 0);
		hist__record(&h, v[i]);
	}
	qsort(v, N, sizeof(v[0]), cmp);
	double ps[] = {50, 90, 99, 99.9, 100};
	for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
		size_t rank = (size_t)(ps[i] / 100.0 * N + 0.999999);
		uint64_t exact = v[rank - 1], got = hist__percentile(&h, ps[i]);
		assert_true(got >= exact);
		assert_true(got <= exact + exact / 512 + 1);
	}
	assert_int_equal(h.total, N);
	assert_int_equal(h.min, v[0]);
	assert_int_equal(h.max, v[N - 1]);
	assert_int_equal(hist__percentile(&h, 100), v[N - 1]);

	struct hist empty = {0}, both = {0};
	assert_int_equal(hist__percentile(&empty, 99), 0);
	hist__merge(&both, &h);
	hist__merge(&both, &h);
	assert_int_equal(both.total, 2 * N);
	assert_int_equal(hist__percentile(&both, 50), hist__percentile(&h, 50));
	hist__free(&both);
	hist__free(&h);
}

/* ---- tally ---- */

static void test_tally_arrivals(void **state)
{
	struct tally t = {0};
	char key[32];

	(void)state;
	for (int d = 0; d < 5000; d++) { /* growth */
		snprintf(key, sizeof(key), "ue-%05d", d);
		struct track *tr = tally__get(&t, key, strlen(key));
		assert_non_null(tr);
		assert_int_equal(track__arrive(tr, 0), ARRIVAL_NEW);
	}
	assert_int_equal(t.n, 5000);
	struct track *tr = tally__get(&t, "ue-00042xyz", 8); /* length counts, not the NUL */
	assert_string_equal(tr->key, "ue-00042");
	assert_int_equal(t.n, 5000);
	assert_int_equal(track__arrive(tr, 2), ARRIVAL_NEW);
	assert_int_equal(track__arrive(tr, 1), ARRIVAL_LATE);
	assert_int_equal(track__arrive(tr, 1), ARRIVAL_DUPLICATE);
	assert_int_equal(tr->received, 4);
	assert_int_equal(tr->duplicates, 1);
	assert_int_equal(tr->out_of_order, 1);
	tally__free(&t);
}

/* ---- report ---- */

static void arrive(struct report *r, const char *device, uint64_t seq, uint64_t sent, uint64_t now,
		   const char *broker, uint64_t bseq)
{
	unsigned char buf[64];
	size_t n = mqk_payload_encode(buf, sizeof(buf), device, strlen(device), seq, sent, 40);
	report__message(r, buf, n, now, broker, broker ? "data" : NULL, broker ? "1700" : NULL,
			bseq);
}

static double num(const cJSON *o, const char *path)
{
	char copy[128], *save = NULL;
	snprintf(copy, sizeof(copy), "%s", path);
	for (char *part = strtok_r(copy, ".", &save); part; part = strtok_r(NULL, ".", &save)) {
		o = cJSON_GetObjectItemCaseSensitive(o, part);
	}
	assert_true(cJSON_IsNumber(o));
	return o->valuedouble;
}

static void test_report_counts(void **state)
{
	struct report r;

	(void)state;
	report__init(&r, "kafka");
	r.expect = 12;
	/* a: 0..4 in order; b: 0,2,1,2 (one late, one duplicate) then 5 (3 and 4 lost). */
	for (uint64_t i = 0; i < 5; i++) {
		arrive(&r, "a", i, 1000, 1000 + 100 * (i + 1), "broker-1", i + 1);
	}
	uint64_t b[] = {0, 2, 1, 2, 5};
	for (size_t i = 0; i < 5; i++) {
		arrive(&r, "b", b[i], 1000, 3000, "broker-2", i + 1);
	}
	report__message(&r, "not a payload", 13, 4000, NULL, NULL, NULL, 0);
	arrive(&r, "c", 0, 5000, 4000, NULL, 0); /* arrives "before" it was sent */
	assert_int_equal(report__unique(&r), 5 + 4 + 1);
	assert_true(report__lossy(&r));

	cJSON *j = report__json(&r, false);
	assert_int_equal(num(j, "received"), 11);
	assert_int_equal(num(j, "unique"), 10);
	assert_int_equal(num(j, "lost"), 2);
	assert_int_equal(num(j, "duplicates"), 1);
	assert_int_equal(num(j, "out_of_order"), 1);
	assert_int_equal(num(j, "foreign"), 1);
	assert_int_equal(num(j, "missing"), 2);
	assert_int_equal(num(j, "devices"), 3);
	assert_int_equal(num(j, "devices_with_loss"), 1);
	assert_int_equal(num(j, "early"), 1);
	assert_int_equal(num(j, "latency_us.count"), 11);
	assert_int_equal(num(j, "latency_us.max"), 2000);
	assert_int_equal(num(j, "latency_us.min"), 0);
	/* The audit: every record had the next mqtt.seq of its broker, the foreign one too. */
	assert_int_equal(num(j, "audit.records"), 10);
	assert_int_equal(num(j, "audit.lost"), 0);
	cJSON *brokers = cJSON_GetObjectItemCaseSensitive(
		cJSON_GetObjectItemCaseSensitive(j, "audit"), "brokers");
	assert_int_equal(cJSON_GetArraySize(brokers), 2);
	cJSON *first = cJSON_GetArrayItem(brokers, 0);
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(first, "route")->valuestring, "data");
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(first, "boot")->valuestring, "1700");
	cJSON_Delete(j);
	report__free(&r);
}

static void test_report_audit_gap(void **state)
{
	struct report r;

	(void)state;
	report__init(&r, "kafka");
	arrive(&r, "a", 0, 1, 2, "b1", 1);
	arrive(&r, "a", 1, 1, 2, "b1", 3); /* mqtt.seq 2 never came: the plugin lost one */
	arrive(&r, "a", 2, 1, 2, "b1", 3); /* and 3 came twice */
	cJSON *j = report__json(&r, false);
	assert_int_equal(num(j, "lost"), 0); /* the device's own numbers are complete */
	assert_int_equal(num(j, "audit.lost"), 1);
	assert_int_equal(num(j, "audit.duplicates"), 1);
	assert_true(report__lossy(&r));
	cJSON_Delete(j);
	report__free(&r);
}

/* Two controllers share a device's partition: one saw 0..59, the other 50..99. */
static void test_merge(void **state)
{
	struct report a, b, m;
	char err[256];

	(void)state;
	report__init(&a, "kafka");
	report__init(&b, "kafka");
	for (uint64_t i = 0; i < 60; i++) {
		arrive(&a, "d1", i, 100, 100 + i, "x", i + 1);
	}
	for (uint64_t i = 50; i < 100; i++) {
		arrive(&b, "d1", i, 100, 100 + i, "x", i + 1);
	}
	arrive(&b, "d2", 0, 100, 5000, NULL, 0);
	arrive(&b, "d2", 2, 100, 5000, NULL, 0); /* 1 lost */
	a.commands_sent = 3;
	b.answers = 2;
	b.commands_sent = 1;
	hist__record(&b.rtt, 777);
	a.answers_duplicate = 1;
	b.answers_duplicate = 2;
	b.answers_misdelivered = 4;
	a.answers_unmatched = 5;
	hist__record(&a.delivery, 300);
	hist__record(&b.delivery, 100);
	hist__record(&b.delivery, 200);

	report__init(&m, "merged");
	m.instances = 0;
	cJSON *ja = report__json(&a, true), *jb = report__json(&b, true);
	/* Through text, as the files are. */
	char *ta = cJSON_PrintUnformatted(ja), *tb = cJSON_PrintUnformatted(jb);
	cJSON *pa = cJSON_Parse(ta), *pb = cJSON_Parse(tb);
	assert_int_equal(report__merge_json(&m, pa, err, sizeof(err)), 0);
	assert_int_equal(report__merge_json(&m, pb, err, sizeof(err)), 0);

	cJSON *j = report__json(&m, false);
	assert_int_equal(num(j, "instances"), 2);
	assert_int_equal(num(j, "received"), 112);
	assert_int_equal(num(j, "unique"), 100 + 2);
	assert_int_equal(report__unique(&m), 100 + 2);
	assert_int_equal(num(j, "duplicates"), 10); /* 50..59 seen by both */
	assert_int_equal(num(j, "lost"), 1);
	assert_int_equal(num(j, "audit.lost"), 0);
	assert_int_equal(num(j, "audit.duplicates"), 10);
	assert_int_equal(num(j, "latency_us.count"), 112);
	assert_int_equal(num(j, "latency_us.max"), 4900);
	assert_int_equal(num(j, "commands.sent"), 4);
	assert_int_equal(num(j, "commands.answered"), 2);
	assert_int_equal(num(j, "commands.unanswered"), 2);
	assert_int_equal(num(j, "commands.duplicates"), 3);
	assert_int_equal(num(j, "commands.misdelivered"), 4);
	assert_int_equal(num(j, "commands.unmatched"), 5);
	assert_int_equal(num(j, "commands.rtt_us.p50"), 777);
	assert_int_equal(num(j, "commands.delivery_us.count"), 3);
	assert_int_equal(num(j, "commands.delivery_us.p50"), 200);
	assert_int_equal(num(j, "commands.delivery_us.max"), 300);
	assert_int_equal(num(j, "commands.delivery_us.min"), 100);
	assert_true(report__commands_lossy(&m));
	cJSON_Delete(j);

	/* A report saved before duplicates, misdelivered and delivery existed still merges. */
	struct report old;
	report__init(&old, "merged");
	old.instances = 0;
	cJSON *po = cJSON_Parse(tb);
	cJSON *pcmd = cJSON_GetObjectItemCaseSensitive(po, "commands");
	cJSON_DeleteItemFromObjectCaseSensitive(pcmd, "duplicates");
	cJSON_DeleteItemFromObjectCaseSensitive(pcmd, "misdelivered");
	cJSON_DeleteItemFromObjectCaseSensitive(pcmd, "delivery_us");
	cJSON_DeleteItemFromObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(po, "detail"),
						"delivery");
	assert_int_equal(report__merge_json(&old, po, err, sizeof(err)), 0);
	assert_int_equal(old.answers, 2);
	assert_int_equal(old.answers_duplicate, 0);
	assert_int_equal(old.delivery.total, 0);
	assert_int_equal(old.rtt.total, 1);
	/* But a counter that is there must be a number. */
	cJSON_AddStringToObject(pcmd, "duplicates", "two");
	assert_int_equal(report__merge_json(&old, po, err, sizeof(err)), -1);
	cJSON_Delete(po);
	report__free(&old);

	/* A report without detail, or broken, is refused with a reason. */
	cJSON *plain = report__json(&a, false);
	assert_int_equal(report__merge_json(&m, plain, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "--save"));
	cJSON_Delete(plain);
	cJSON *bad = cJSON_Parse(ta);
	cJSON *ranges = cJSON_GetObjectItemCaseSensitive(
		cJSON_GetObjectItemCaseSensitive(
			cJSON_GetObjectItemCaseSensitive(
				cJSON_GetObjectItemCaseSensitive(bad, "detail"), "devices"),
			"d1"),
		"ranges");
	cJSON_ReplaceItemInArray(ranges, 0, cJSON_CreateString("x"));
	assert_int_equal(report__merge_json(&m, bad, err, sizeof(err)), -1);
	cJSON_Delete(bad);

	free(ta);
	free(tb);
	cJSON_Delete(ja);
	cJSON_Delete(jb);
	cJSON_Delete(pa);
	cJSON_Delete(pb);
	report__free(&a);
	report__free(&b);
	report__free(&m);
}

/* ---- commands ---- */

/* An answer of device to the command whose id (or echoed payload) is id, sent at sent. */
static enum answer answer_at(struct commands *c, struct report *r, const char *device,
			     const char *id, uint64_t sent, uint64_t now)
{
	unsigned char buf[512];
	size_t n = mqk_payload_encode_answer(buf, sizeof(buf), device, strlen(device), 0, sent, id,
					     strlen(id));
	assert_true(n > 0);
	return commands__answer(c, r, buf, n, now);
}

static enum answer answer(struct commands *c, struct report *r, const char *device, const char *id)
{
	return answer_at(c, r, device, id, 1, 1000);
}

static void test_commands(void **state)
{
	struct commands c = {0};
	struct report r;
	struct command json, text;

	(void)state;
	report__init(&r, "mqtt");
	assert_int_equal(
		commands__make(&c, "ue-1", "{\"action\":\"scan\"}", "devices/{id}/answers", &json),
		0);
	assert_int_equal(commands__make(&c, "ue-2", "reboot", "a/{id}/{id}", &text), 0);
	assert_string_equal(json.response_topic, "devices/ue-1/answers");
	assert_string_equal(text.response_topic, "a/ue-2/ue-2");
	assert_string_not_equal(json.id, text.id);
	char expected[256];
	snprintf(expected, sizeof(expected), "{\"action\":\"scan\",\"cid\":\"%s\"}", json.id);
	assert_string_equal(json.payload, expected);
	assert_string_equal(text.payload, "reboot"); /* not JSON: as given */

	/* Nothing sent yet: whatever comes is unmatched. */
	assert_int_equal(answer(&c, &r, "ue-1", json.id), ANSWER_UNMATCHED);
	assert_int_equal(commands__sent(&c, &json, 400), 0);
	assert_int_equal(commands__sent(&c, &text, 600), 0);
	assert_int_equal(commands__sent(&c, &text, 700), -1); /* the same id twice */
	assert_int_equal(c.n, 2);
	assert_int_equal(answer_at(&c, &r, "ue-2", "reboot", 650, 1000),
			 ANSWER_OK); /* v3.1.1: the payload echoed */
	assert_int_equal(answer_at(&c, &r, "ue-1", json.id, 420, 1000),
			 ANSWER_OK); /* v5: the correlation data */
	assert_int_equal(answer(&c, &r, "ue-1", json.id), ANSWER_DUPLICATE);
	assert_int_equal(answer(&c, &r, "ue-1", json.payload), ANSWER_DUPLICATE); /* echoed */
	assert_int_equal(answer(&c, &r, "ue-9", json.id), ANSWER_MISDELIVERED);
	assert_int_equal(commands__answer(&c, &r, "junk", 4, 1000), ANSWER_UNMATCHED);
	assert_int_equal(answer(&c, &r, "ue-1", "mqkc-not-ours-1"), ANSWER_UNMATCHED);
	assert_int_equal(r.answers, 2);
	assert_int_equal(c.answered, 2);
	assert_int_equal(r.answers_duplicate, 2);
	assert_int_equal(r.answers_misdelivered, 1);
	assert_int_equal(r.answers_unmatched, 3);
	assert_int_equal(r.rtt.min, 400);
	assert_int_equal(r.rtt.max, 600);
	assert_int_equal(r.delivery.total, 2);
	assert_int_equal(r.delivery.min, 20); /* ue-1 answered 20 µs after it was sent */
	assert_int_equal(r.delivery.max, 50);

	r.commands_sent = 2;
	cJSON *j = report__json(&r, false);
	assert_int_equal(num(j, "commands.answered"), 2);
	assert_int_equal(num(j, "commands.unanswered"), 0);
	assert_int_equal(num(j, "commands.duplicates"), 2);
	assert_int_equal(num(j, "commands.misdelivered"), 1);
	assert_int_equal(num(j, "commands.unmatched"), 3);
	assert_int_equal(num(j, "commands.rtt_us.count"), 2);
	assert_int_equal(num(j, "commands.delivery_us.count"), 2);
	assert_int_equal(num(j, "commands.delivery_us.max"), 50);
	assert_int_equal(num(j, "commands.delivery_us.p99"), 50);
	assert_true(num(j, "commands.delivery_us.p99_9") >= 50);
	cJSON_Delete(j);
	char line[256];
	uint64_t prev_received = 0, prev_us = 0;
	report__live(&r, 2000000, &prev_received, &prev_us, line, sizeof(line));
	assert_non_null(strstr(line, "answers 2/2 (dup 2, misdelivered 1)  delivery p99 0.1 ms"));
	assert_true(report__commands_lossy(&r)); /* duplicates, misdelivered */
	assert_false(report__lossy(&r));         /* data loss is another matter */

	char *e = expand_id("no-placeholder", "x");
	assert_string_equal(e, "no-placeholder");
	free(e);
	command__free(&json);
	command__free(&text);
	commands__free(&c);
	report__free(&r);
}

/* Commands whose payload is not a JSON object share it: pairing by device, oldest first. */
static void test_commands_same_payload(void **state)
{
	struct commands c = {0};
	struct report r;
	struct command cmd;
	const char *targets[] = {"ue-1", "ue-2", "ue-1"};

	(void)state;
	report__init(&r, "mqtt");
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(commands__make(&c, targets[i], "reboot", "a/{id}", &cmd), 0);
		assert_int_equal(commands__sent(&c, &cmd, 100 * (i + 1)), 0);
		command__free(&cmd);
	}
	assert_int_equal(answer_at(&c, &r, "ue-3", "reboot", 1, 1000), ANSWER_MISDELIVERED);
	assert_int_equal(answer_at(&c, &r, "ue-1", "reboot", 1, 1000), ANSWER_OK); /* sent 100 */
	assert_int_equal(answer_at(&c, &r, "ue-2", "reboot", 1, 1000), ANSWER_OK); /* 200 */
	assert_int_equal(answer_at(&c, &r, "ue-1", "reboot", 1, 1000), ANSWER_OK); /* 300 */
	assert_int_equal(answer_at(&c, &r, "ue-1", "reboot", 1, 1000), ANSWER_DUPLICATE);
	assert_int_equal(r.rtt.min, 700);
	assert_int_equal(r.rtt.max, 900);
	assert_int_equal(r.answers, 3);
	commands__free(&c);
	report__free(&r);
}

/*
 * 50,000 commands to 1,000 devices, answered in a shuffled order: each once (half by
 * id, half by echoed payload), then duplicates, answers from the wrong device, and the
 * wrong device first then the right one. With a linear scan this is 10^9 comparisons.
 */
static void test_commands_many(void **state)
{
	enum { N = 50000, DEVICES = 1000 };
	struct commands c = {0};
	struct report r;
	static struct command cmds[N];
	static size_t order[N];
	char device[32];

	(void)state;
	report__init(&r, "kafka");
	for (size_t i = 0; i < N; i++) {
		snprintf(device, sizeof(device), "ue-%05zu", i % DEVICES);
		assert_int_equal(commands__make(&c, device, "{\"action\":\"ping\"}",
						"devices/{id}/answers", &cmds[i]),
				 0);
		assert_int_equal(commands__sent(&c, &cmds[i], 1000000 + i), 0);
		r.commands_sent++;
		order[i] = i;
	}
	srandom(7);
	for (size_t i = N - 1; i > 0; i--) {
		size_t k = (size_t)random() % (i + 1), t = order[i];
		order[i] = order[k];
		order[k] = t;
	}
	assert_true(report__commands_lossy(&r)); /* all unanswered */
	/* The first 100 in the shuffled order get an answer from the next device first. */
	for (size_t i = 0; i < 100; i++) {
		struct command *cmd = &cmds[order[i]];
		snprintf(device, sizeof(device), "ue-%05zu", (order[i] + 1) % DEVICES);
		assert_int_equal(answer(&c, &r, device, i % 2 ? cmd->id : cmd->payload),
				 ANSWER_MISDELIVERED);
	}
	for (size_t i = 0; i < N; i++) {
		struct command *cmd = &cmds[order[i]];
		/* The device answers 250 µs after the command was sent, the answer is here
		 * 1,000 µs after that. */
		uint64_t sent = 1000000 + order[i];
		assert_int_equal(answer_at(&c, &r, cmd->device, i % 2 ? cmd->id : cmd->payload,
					   sent + 250, sent + 1250),
				 ANSWER_OK);
	}
	assert_int_equal(r.answers, N);
	assert_int_equal(report__unanswered(&r), 0);
	for (size_t i = 0; i < 10; i++) {
		assert_int_equal(answer(&c, &r, cmds[i].device, cmds[i].id), ANSWER_DUPLICATE);
	}
	assert_int_equal(r.answers, N);
	assert_int_equal(r.answers_duplicate, 10);
	assert_int_equal(r.answers_misdelivered, 100);
	assert_int_equal(r.answers_unmatched, 0);
	assert_int_equal(r.delivery.total, N);
	assert_int_equal(r.delivery.min, 250);
	assert_int_equal(r.delivery.max, 250);
	assert_int_equal(hist__percentile(&r.rtt, 99), 1250);
	assert_true(report__commands_lossy(&r));

	/* Without the duplicates and misdelivered answers: exact. */
	r.answers_duplicate = r.answers_misdelivered = 0;
	assert_false(report__commands_lossy(&r));
	/* And a run that sent nothing is never command-lossy. */
	struct report none;
	report__init(&none, "kafka");
	none.answers_unmatched = 3;
	assert_false(report__commands_lossy(&none));
	report__free(&none);

	for (size_t i = 0; i < N; i++) {
		command__free(&cmds[i]);
	}
	commands__free(&c);
	report__free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seqset_in_order),
		cmocka_unit_test(test_seqset_gaps_filled),
		cmocka_unit_test(test_seqset_ranges),
		cmocka_unit_test(test_hist_buckets),
		cmocka_unit_test(test_hist_percentiles),
		cmocka_unit_test(test_tally_arrivals),
		cmocka_unit_test(test_report_counts),
		cmocka_unit_test(test_report_audit_gap),
		cmocka_unit_test(test_merge),
		cmocka_unit_test(test_commands),
		cmocka_unit_test(test_commands_same_payload),
		cmocka_unit_test(test_commands_many),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
