/*
 * test_router.c - mqk-router's core (tools/router): the presence table (the reader's
 * rule of docs/commands.md: current boot, not down, newest timestamp; a broker's new boot
 * invalidating its old records; records of a new boot read before its "up"; tombstones;
 * the returned-command rule; malformed records refused and counted, 100,000 clients),
 * the hold queue (arrival order overall and per target, removal from anywhere, targets in
 * order, deferred deadlines) and the offset windows (stored in read order whatever the
 * settling order, growth, epochs).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "router.h"

/* ---- presence ---- */

static char errstr[512];

static int client(struct presence *p, const char *broker, const char *id, int64_t boot, int64_t ts)
{
	char key[256], value[512];

	snprintf(key, sizeof(key), "%s/%s", broker, id);
	snprintf(value, sizeof(value),
		 "{\"broker\":\"%s\",\"client_id\":\"%s\",\"state\":\"connected\",\"boot\":%lld,"
		 "\"timestamp\":%lld}",
		 broker, id, (long long)boot, (long long)ts);
	return presence__apply(p, key, value, strlen(value), errstr, sizeof(errstr));
}

static int gone(struct presence *p, const char *broker, const char *id)
{
	char key[256];

	snprintf(key, sizeof(key), "%s/%s", broker, id);
	return presence__apply(p, key, NULL, 0, errstr, sizeof(errstr));
}

static int broker(struct presence *p, const char *id, const char *state, int64_t boot, int64_t ts)
{
	char value[512];

	snprintf(value, sizeof(value),
		 "{\"broker\":\"%s\",\"state\":\"%s\",\"boot\":%lld,\"timestamp\":%lld}", id, state,
		 (long long)boot, (long long)ts);
	return presence__apply(p, id, value, strlen(value), errstr, sizeof(errstr));
}

/* Where id is, as a string ("" for nowhere). */
static const char *at(const struct presence *p, const char *id)
{
	struct pres_broker *b = presence__where(p, id, NULL);
	return b ? b->id : "";
}

static const char *at_ret(const struct presence *p, const char *id, const struct pres_return *ret)
{
	struct pres_broker *b = presence__where(p, id, ret);
	return b ? b->id : "";
}

static void test_presence_connect_and_leave(void **state)
{
	struct presence p = {0};

	(void)state;
	assert_int_equal(broker(&p, "A", "up", 100, 1), PRES_BROKER);
	assert_string_equal(at(&p, "ue-1"), "");
	assert_int_equal(client(&p, "A", "ue-1", 100, 10), PRES_CLIENT);
	assert_string_equal(at(&p, "ue-1"), "A");
	assert_string_equal(at(&p, "ue-2"), "");
	assert_int_equal(presence__connected(&p), 1);
	/* A tombstone: gone; one for a key never seen is fine too. */
	assert_int_equal(gone(&p, "A", "ue-1"), PRES_CLIENT);
	assert_string_equal(at(&p, "ue-1"), "");
	assert_int_equal(gone(&p, "A", "never"), PRES_CLIENT);
	assert_int_equal(presence__clients(&p), 0);
	/* Client ids may hold '/': the first one ends the broker id. */
	assert_int_equal(client(&p, "A", "dev/with/slashes", 100, 11), PRES_CLIENT);
	assert_string_equal(at(&p, "dev/with/slashes"), "A");
	assert_int_equal(p.seq, 5);
	assert_int_equal(p.malformed, 0);
	presence__free(&p);
}

static void test_presence_newest_wins(void **state)
{
	struct presence p = {0};

	(void)state;
	broker(&p, "A", "up", 100, 1);
	broker(&p, "B", "up", 200, 1);
	/* Moved from A to B: A's tombstone not read yet. */
	client(&p, "A", "ue-1", 100, 10);
	client(&p, "B", "ue-1", 200, 20);
	assert_string_equal(at(&p, "ue-1"), "B");
	/* Read in the other order: the same answer. */
	client(&p, "B", "ue-2", 200, 20);
	client(&p, "A", "ue-2", 100, 10);
	assert_string_equal(at(&p, "ue-2"), "B");
	/* Back to A later. */
	client(&p, "A", "ue-1", 100, 30);
	assert_string_equal(at(&p, "ue-1"), "A");
	gone(&p, "A", "ue-1");
	assert_string_equal(at(&p, "ue-1"), "B"); /* B's record is still there */
	gone(&p, "B", "ue-1");
	assert_string_equal(at(&p, "ue-1"), "");
	/* Equal timestamps: the record read last. */
	client(&p, "A", "ue-3", 100, 50);
	client(&p, "B", "ue-3", 200, 50);
	assert_string_equal(at(&p, "ue-3"), "B");
	client(&p, "A", "ue-3", 100, 50);
	assert_string_equal(at(&p, "ue-3"), "A");
	presence__free(&p);
}

static void test_presence_new_boot_invalidates(void **state)
{
	struct presence p = {0};

	(void)state;
	broker(&p, "A", "up", 100, 1);
	client(&p, "A", "ue-1", 100, 10);
	client(&p, "A", "ue-2", 100, 10);
	assert_int_equal(presence__connected(&p), 2);
	/* A crashed (no tombstones) and started again: its old clients are nowhere. */
	broker(&p, "A", "up", 300, 40);
	assert_string_equal(at(&p, "ue-1"), "");
	assert_string_equal(at(&p, "ue-2"), "");
	assert_int_equal(presence__connected(&p), 0);
	client(&p, "A", "ue-2", 300, 41); /* it reconnected */
	assert_string_equal(at(&p, "ue-2"), "A");
	/* A late record of the old run changes nothing. */
	client(&p, "A", "ue-1", 100, 12);
	assert_string_equal(at(&p, "ue-1"), "");
	broker(&p, "A", "down", 100, 13);
	assert_string_equal(at(&p, "ue-2"), "A");
	presence__free(&p);
}

static void test_presence_boot_before_up(void **state)
{
	struct presence p = {0};

	(void)state;
	broker(&p, "A", "up", 100, 1);
	client(&p, "A", "old", 100, 10);
	/* A client record of A's next run comes before A's "up" (another partition): every
	 * client of A may have moved (PRES_BROKER). */
	assert_int_equal(client(&p, "A", "ue-1", 300, 50), PRES_BROKER);
	assert_int_equal(client(&p, "A", "ue-2", 300, 51), PRES_CLIENT);
	assert_string_equal(at(&p, "ue-1"), "A");
	assert_string_equal(at(&p, "old"), "");
	broker(&p, "A", "up", 300, 49);
	assert_string_equal(at(&p, "ue-1"), "A");
	/* A broker unknown so far: its clients' boot is its boot. */
	assert_int_equal(client(&p, "C", "ue-9", 700, 5), PRES_BROKER);
	assert_string_equal(at(&p, "ue-9"), "C");
	presence__free(&p);
}

static void test_presence_down(void **state)
{
	struct presence p = {0};

	(void)state;
	broker(&p, "A", "up", 100, 1);
	broker(&p, "B", "up", 200, 1);
	client(&p, "A", "ue-1", 100, 10);
	client(&p, "B", "ue-1", 200, 5); /* older, but B stays up */
	assert_string_equal(at(&p, "ue-1"), "A");
	broker(&p, "A", "down", 100, 20);
	assert_string_equal(at(&p, "ue-1"), "B");
	gone(&p, "B", "ue-1");
	assert_string_equal(at(&p, "ue-1"), "");
	/* Up again with a new boot: the down run's records stay invalid. */
	broker(&p, "A", "up", 400, 30);
	assert_string_equal(at(&p, "ue-1"), "");
	/* A client of A's next run ends "down" too. */
	broker(&p, "A", "down", 400, 31);
	client(&p, "A", "ue-5", 500, 33);
	assert_string_equal(at(&p, "ue-5"), "A");
	presence__free(&p);
}

static void test_presence_returned(void **state)
{
	struct presence p = {0};
	struct pres_return ret = {.by = "A", .timestamp = 100, .seq = 0};

	(void)state;
	broker(&p, "A", "up", 100, 1);
	broker(&p, "B", "up", 200, 1);
	client(&p, "A", "ue-1", 100, 50);
	/* A sent it back, presence still says A and has no news: nowhere. */
	ret.seq = p.seq;
	assert_string_equal(at_ret(&p, "ue-1", &ret), "");
	assert_string_equal(at(&p, "ue-1"), "A"); /* ordinary commands still go to A */
	/* News of the client: the same A again (it came back), or B. */
	client(&p, "A", "ue-1", 100, 60);
	assert_string_equal(at_ret(&p, "ue-1", &ret), "A");
	ret.seq = p.seq;
	assert_string_equal(at_ret(&p, "ue-1", &ret), "");
	client(&p, "B", "ue-1", 200, 70);
	assert_string_equal(at_ret(&p, "ue-1", &ret), "B");
	/* News of another client is no news of this one. */
	ret.seq = p.seq;
	gone(&p, "B", "ue-1");
	client(&p, "A", "ue-2", 100, 80);
	ret.seq = p.seq;
	assert_string_equal(at_ret(&p, "ue-1", &ret), "");
	/* A record stamped after the command was sent back is news, even if read before it. */
	client(&p, "A", "ue-3", 100, 150);
	ret.seq = p.seq;
	assert_string_equal(at_ret(&p, "ue-3", &ret), "A");
	ret.timestamp = -1; /* no CreateTime: only records read later count */
	assert_string_equal(at_ret(&p, "ue-3", &ret), "");
	/* Sent back by B, at A: A. */
	ret.by = "B";
	assert_string_equal(at_ret(&p, "ue-3", &ret), "A");
	presence__free(&p);
}

static void test_presence_malformed(void **state)
{
	static const struct {
		const char *key, *value, *why;
	} bad[] = {
		{"", "{}", "an empty key"},
		{"A/x", "not json", "not JSON"},
		{"A/x", "[1]", "not a JSON object"},
		{"A/x",
		 "{\"broker\":\"B\",\"client_id\":\"x\",\"state\":\"connected\",\"boot\":1,"
		 "\"timestamp\":1}",
		 "not the broker of the key"},
		{"A/x",
		 "{\"broker\":\"A\",\"client_id\":\"y\",\"state\":\"connected\",\"boot\":1,"
		 "\"timestamp\":1}",
		 "not the client of the key"},
		{"A/x",
		 "{\"broker\":\"A\",\"client_id\":\"x\",\"state\":\"up\",\"boot\":1,"
		 "\"timestamp\":1}",
		 "is not \"connected\""},
		{"A/x",
		 "{\"broker\":\"A\",\"client_id\":\"x\",\"state\":\"connected\",\"boot\":\"1\","
		 "\"timestamp\":1}",
		 "\"boot\" is not a whole number"},
		{"A/x",
		 "{\"broker\":\"A\",\"client_id\":\"x\",\"state\":\"connected\",\"boot\":1.5,"
		 "\"timestamp\":1}",
		 "\"boot\" is not a whole number"},
		{"A/x", "{\"broker\":\"A\",\"client_id\":\"x\",\"state\":\"connected\",\"boot\":1}",
		 "\"timestamp\" is not a whole number"},
		{"A/x", "{\"broker\":\"A\",\"client_id\":\"x\",\"boot\":1,\"timestamp\":1}",
		 "no \"state\""},
		{"A/", "{}", "the client id is empty"},
		{"/x", "{}", "the broker id"},
		{"A b/x", "{}", "the broker id"},
		{"A", "{\"broker\":\"A\",\"state\":\"connected\",\"boot\":1,\"timestamp\":1}",
		 "is not \"up\" or \"down\""},
		{"A", "{\"broker\":\"A\",\"state\":\"up\",\"boot\":-1,\"timestamp\":1}",
		 "\"boot\" is not a whole number"},
		{"A", NULL, "a broker record with a null value"},
		{"A", "{\"broker\":\"B\",\"state\":\"up\",\"boot\":1,\"timestamp\":1}",
		 "not the broker of the key"},
		{"a-very-long-broker-id-that-is-longer-than-the-sixty-four-bytes-allowed", "{}",
		 "the broker id"},
	};
	struct presence p = {0};
	size_t n = sizeof(bad) / sizeof(bad[0]);

	(void)state;
	broker(&p, "A", "up", 1, 1);
	client(&p, "A", "x", 1, 1);
	uint64_t seq = p.seq;
	for (size_t i = 0; i < n; i++) {
		int rc = presence__apply(&p, bad[i].key, bad[i].value,
					 bad[i].value ? strlen(bad[i].value) : 0, errstr,
					 sizeof(errstr));
		if (rc != PRES_MALFORMED || strstr(errstr, bad[i].why) == NULL) {
			fail_msg("case %zu (%s): rc %d, '%s'", i, bad[i].key, rc, errstr);
		}
	}
	assert_int_equal(p.malformed, n);
	assert_int_equal(p.seq, seq); /* nothing applied */
	assert_string_equal(at(&p, "x"), "A");
	assert_int_equal(presence__clients(&p), 1);
	presence__free(&p);
}

static void test_presence_many(void **state)
{
	struct presence p = {0};
	char id[32];

	(void)state;
	broker(&p, "A", "up", 100, 1);
	broker(&p, "B", "up", 200, 1);
	for (int i = 0; i < 100000; i++) {
		snprintf(id, sizeof(id), "ue-%06d", i);
		assert_int_equal(client(&p, i % 2 ? "A" : "B", id, i % 2 ? 100 : 200, i),
				 PRES_CLIENT);
	}
	assert_int_equal(presence__connected(&p), 100000);
	for (int i = 0; i < 100000; i += 2) {
		snprintf(id, sizeof(id), "ue-%06d", i);
		gone(&p, "B", id);
	}
	assert_int_equal(presence__clients(&p), 50000);
	snprintf(id, sizeof(id), "ue-%06d", 77777);
	assert_string_equal(at(&p, id), "A");
	broker(&p, "A", "down", 100, 2);
	assert_int_equal(presence__connected(&p), 0);
	presence__free(&p);
}

/* ---- held ---- */

struct item {
	struct held_item hold;
	int n;
};

static int n_of(const struct held_item *it)
{
	return it ? container_of(it, struct item, hold)->n : -1;
}

static void test_held_order(void **state)
{
	struct held h = {0};
	struct item items[6];
	const char *targets[6] = {"a", "b", "a", "c", "a", "b"};

	(void)state;
	for (int i = 0; i < 6; i++) {
		items[i].n = i;
		assert_int_equal(held__add(&h, &items[i].hold, targets[i], 1000 + (uint64_t)i), 0);
	}
	assert_int_equal(h.count, 6);
	assert_int_equal(h.devices.count, 3);
	assert_int_equal(n_of(held__oldest(&h)), 0);
	assert_int_equal(n_of(held__head(&h, "a")), 0);
	assert_int_equal(n_of(held__head(&h, "b")), 1);
	assert_int_equal(n_of(held__head(&h, "c")), 3);
	assert_null(held__head(&h, "d"));
	assert_string_equal(held__target(&items[4].hold), "a");

	/* Targets in the order of their oldest item. */
	size_t n;
	char **t = held__targets(&h, &n);
	assert_int_equal(n, 3);
	assert_string_equal(t[0], "a");
	assert_string_equal(t[1], "b");
	assert_string_equal(t[2], "c");
	for (size_t i = 0; i < n; i++) {
		free(t[i]);
	}
	free(t);

	/* From the middle of a target's list and of the whole. */
	held__remove(&h, &items[2].hold);
	assert_int_equal(n_of(held__head(&h, "a")), 0);
	held__remove(&h, &items[0].hold);
	assert_int_equal(n_of(held__head(&h, "a")), 4);
	assert_int_equal(n_of(held__oldest(&h)), 1);
	held__remove(&h, &items[3].hold); /* c's last: c is gone */
	assert_null(held__head(&h, "c"));
	assert_int_equal(h.devices.count, 2);
	t = held__targets(&h, &n);
	assert_int_equal(n, 2);
	assert_string_equal(t[0], "b");
	assert_string_equal(t[1], "a");
	for (size_t i = 0; i < n; i++) {
		free(t[i]);
	}
	free(t);

	/* Deadlines: those earlier than the bound move up to it, in order. */
	held__defer(&h, 1004);
	assert_int_equal(items[1].hold.deadline_us, 1004);
	assert_int_equal(items[4].hold.deadline_us, 1004);
	assert_int_equal(items[5].hold.deadline_us, 1005);

	held__remove(&h, &items[5].hold);
	held__remove(&h, &items[1].hold);
	held__remove(&h, &items[4].hold);
	assert_int_equal(h.count, 0);
	assert_int_equal(h.devices.count, 0);
	assert_null(held__oldest(&h));
	t = held__targets(&h, &n);
	assert_null(t);
	assert_int_equal(n, 0);
	held__free(&h);
}

static void test_held_many(void **state)
{
	struct held h = {0};
	enum { N = 100000, TARGETS = 1000 };
	struct item *items = calloc(N, sizeof(*items));
	char target[32];

	(void)state;
	for (int i = 0; i < N; i++) {
		items[i].n = i;
		snprintf(target, sizeof(target), "ue-%d", i % TARGETS);
		assert_int_equal(held__add(&h, &items[i].hold, target, (uint64_t)i), 0);
	}
	/* Take each target's items in its order, target by target. */
	int taken = 0;
	for (int t = 0; t < TARGETS; t++) {
		snprintf(target, sizeof(target), "ue-%d", t);
		int expect = t;
		struct held_item *it;
		while ((it = held__head(&h, target)) != NULL) {
			assert_int_equal(n_of(it), expect);
			expect += TARGETS;
			held__remove(&h, it);
			taken++;
		}
	}
	assert_int_equal(taken, N);
	assert_int_equal(h.count, 0);
	held__free(&h);
	free(items);
}

/* ---- window ---- */

static void test_window_order(void **state)
{
	struct windows ws = {0};
	struct window *w = windows__get(&ws, 3);
	uint64_t s[5];

	(void)state;
	assert_non_null(w);
	assert_int_equal(ws.n, 4);
	/* Offsets need not be contiguous (compaction, transaction markers). */
	int64_t offsets[5] = {10, 11, 13, 14, 20};
	for (int i = 0; i < 5; i++) {
		assert_int_equal(window__push(w, offsets[i], &s[i]), 0);
	}
	assert_int_equal(window__pending(w), 5);
	assert_int_equal(window__settle(w, s[1]), -1); /* 10 still pending */
	assert_int_equal(window__settle(w, s[3]), -1);
	assert_int_equal(window__settle(w, s[0]), 11); /* 10 and 11: store 12 */
	assert_int_equal(window__pending(w), 3);
	assert_int_equal(window__settle(w, s[2]), 14); /* 13 and 14 */
	assert_int_equal(window__settle(w, s[4]), 20);
	assert_int_equal(window__pending(w), 0);
	assert_int_equal(window__settle(w, s[4]), -1); /* not in the window any more */

	/* A revoke: what settles later belongs to the old epoch, and the caller checks it. */
	uint64_t epoch = w->epoch;
	window__push(w, 30, &s[0]);
	window__reset(w);
	assert_int_equal(w->epoch, epoch + 1);
	assert_int_equal(window__pending(w), 0);
	windows__free(&ws);
}

static void test_window_grows(void **state)
{
	struct windows ws = {0};
	struct window *w = windows__get(&ws, 0);
	enum { N = 10000 };
	uint64_t *s = malloc(N * sizeof(*s));

	(void)state;
	/* The first one stays pending while 9,999 settle behind it. */
	for (int i = 0; i < N; i++) {
		assert_int_equal(window__push(w, i, &s[i]), 0);
		if (i > 0 && i % 3 == 0) {
			assert_int_equal(window__settle(w, s[i]), -1);
		}
	}
	for (int i = 1; i < N; i++) {
		if (i % 3 != 0) {
			assert_int_equal(window__settle(w, s[i]), -1);
		}
	}
	assert_int_equal(window__pending(w), N);
	assert_int_equal(window__settle(w, s[0]), N - 1);
	assert_int_equal(window__pending(w), 0);
	/* And wraps around the ring many times at a steady size. */
	for (int i = 0; i < 100000; i++) {
		uint64_t a, b;
		window__push(w, 2 * i, &a);
		window__push(w, 2 * i + 1, &b);
		assert_int_equal(window__settle(w, b), -1);
		assert_int_equal(window__settle(w, a), 2 * i + 1);
	}
	free(s);
	windows__free(&ws);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_presence_connect_and_leave),
		cmocka_unit_test(test_presence_newest_wins),
		cmocka_unit_test(test_presence_new_boot_invalidates),
		cmocka_unit_test(test_presence_boot_before_up),
		cmocka_unit_test(test_presence_down),
		cmocka_unit_test(test_presence_returned),
		cmocka_unit_test(test_presence_malformed),
		cmocka_unit_test(test_presence_many),
		cmocka_unit_test(test_held_order),
		cmocka_unit_test(test_held_many),
		cmocka_unit_test(test_window_order),
		cmocka_unit_test(test_window_grows),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
