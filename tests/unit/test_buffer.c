/*
 * test_buffer.c - the ring between mosquitto's thread and the Kafka thread (buffer.c):
 * capacity rounding, reserve/commit/peek/release order and contents, the padding entry
 * that makes an entry wrap to offset 0, a full ring, entries over half the capacity,
 * buffer__used, buffer__sleep's two modes, and two threads passing 1,000,000 numbered
 * entries through it (the wake-up protocol: a commit writes the eventfd only when the
 * consumer is, or is about to be, asleep with wake_on_commit).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "mqk.h"

#define HDR sizeof(struct mqk_entry)
#define PAD_ROUTE 0xFFFF
/* Routes 0 .. MAX_ROUTE: 0xFFFE is a journal segment's header, 0xFFFF padding. */
#define MAX_ROUTE (MQK_ROUTE_HEADER - 1)

static struct mqk_buffer b;

static int setup(void **state)
{
	(void)state;
	assert_int_equal(buffer__init(&b, 4096), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	buffer__free(&b);
	assert_null(b.data);
	assert_int_equal(b.wake_fd, -1);
	return 0;
}

static int64_t monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t aligned(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

/* A deterministic byte for entry `seq`, offset i: contents are checked after the copy. */
static char pattern(uint64_t seq, size_t i)
{
	return (char)((seq * 131 + i * 7 + (i >> 8)) & 0xff);
}

/* Reserves, fills (route, seq, len pattern bytes) and commits one entry. */
static struct mqk_entry *put(struct mqk_buffer *buf, uint16_t route, uint64_t seq, size_t len)
{
	struct mqk_entry *e = buffer__reserve(buf, HDR + len);

	if (e == NULL) {
		return NULL;
	}
	/* 8-aligned, inside the ring. */
	assert_int_equal((uintptr_t)e % 8, 0);
	assert_true((char *)e >= buf->data);
	assert_true((char *)e + HDR + len <= buf->data + buf->capacity);
	e->route = route;
	e->seq = seq;
	e->payload_len = (uint32_t)len;
	for (size_t i = 0; i < len; i++) {
		e->data[i] = pattern(seq, i);
	}
	buffer__commit(buf, e);
	assert_int_equal(e->size, aligned(HDR + len));
	return e;
}

/* Asserts the oldest entry is (route, seq) with intact contents, and releases it. */
static void take(struct mqk_buffer *buf, uint16_t route, uint64_t seq)
{
	struct mqk_entry *e = buffer__peek(buf);

	assert_non_null(e);
	assert_int_equal(e->route, route);
	if (e->seq != seq) {
		fail_msg("entry seq %llu, expected %llu", (unsigned long long)e->seq,
			 (unsigned long long)seq);
	}
	assert_int_equal(e->size, aligned(HDR + e->payload_len));
	for (size_t i = 0; i < e->payload_len; i++) {
		if (e->data[i] != pattern(seq, i)) {
			fail_msg("entry %llu: byte %zu is %02x, expected %02x",
				 (unsigned long long)seq, i, (unsigned char)e->data[i],
				 (unsigned char)pattern(seq, i));
		}
	}
	buffer__release(buf, e);
}

/* ---- init --------------------------------------------------------------------------------- */

static void test_init_capacity(void **state)
{
	static const struct {
		size_t asked, capacity;
	} cases[] = {
		{0, 4096},
		{1, 4096},
		{4095, 4096},
		{4096, 4096},
		{4097, 8192},
		{65536, 65536},
		{(size_t)64 << 20, (size_t)64 << 20},
		{((size_t)1 << 20) + 1, (size_t)2 << 20},
	};
	struct mqk_buffer x;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(buffer__init(&x, cases[i].asked), 0);
		if (x.capacity != cases[i].capacity) {
			fail_msg("buffer__init(%zu): capacity %zu, expected %zu", cases[i].asked,
				 x.capacity, cases[i].capacity);
		}
		assert_non_null(x.data);
		assert_true(x.wake_fd >= 0);
		assert_true(buffer__is_empty(&x));
		assert_null(buffer__peek(&x));
		assert_int_equal(buffer__used(&x), 0);
		buffer__free(&x);
	}
	/* Freeing twice is harmless (plugin.c frees a buffer it may not have set up). */
	buffer__free(&x);
	assert_int_equal(x.wake_fd, -1);
}

/* ---- order and contents ------------------------------------------------------------------- */

static void test_order_and_contents(void **state)
{
	static const size_t lens[] = {0, 1, 7, 8, 9, 100, 255, 1000};
	const size_t n = sizeof(lens) / sizeof(lens[0]);
	size_t used = 0;

	(void)state;
	for (size_t i = 0; i < n; i++) {
		assert_non_null(put(&b, (uint16_t)i, 1000 + i, lens[i]));
		used += aligned(HDR + lens[i]);
		assert_int_equal(buffer__used(&b), used);
		assert_false(buffer__is_empty(&b));
	}
	/* Peeking does not consume: the same entry until it is released. */
	struct mqk_entry *first = buffer__peek(&b);
	assert_ptr_equal(buffer__peek(&b), first);
	assert_ptr_equal(first, b.data);
	for (size_t i = 0; i < n; i++) {
		take(&b, (uint16_t)i, 1000 + i);
		used -= aligned(HDR + lens[i]);
		assert_int_equal(buffer__used(&b), used);
	}
	assert_int_equal(used, 0);
	assert_null(buffer__peek(&b));
	assert_true(buffer__is_empty(&b));

	/* Interleaved: the consumer sees entries in commit order, whatever the timing. */
	uint64_t next_put = 0, next_take = 0;
	for (int round = 0; round < 50; round++) {
		for (int k = 0; k < round % 5 + 1; k++) {
			assert_non_null(put(&b, 7, next_put, (size_t)(next_put % 50)));
			next_put++;
		}
		for (int k = 0; k < (round + 2) % 5 + 1 && next_take < next_put; k++) {
			take(&b, 7, next_take++);
		}
	}
	while (next_take < next_put) {
		take(&b, 7, next_take++);
	}
	assert_null(buffer__peek(&b));
	assert_int_equal(buffer__used(&b), 0);
}

static void test_reserved_not_committed(void **state)
{
	(void)state;
	/* A reserved entry is invisible until committed, and its room is not counted. */
	struct mqk_entry *e = buffer__reserve(&b, HDR + 40);
	assert_non_null(e);
	e->route = 1;
	assert_null(buffer__peek(&b));
	assert_true(buffer__is_empty(&b));
	assert_int_equal(buffer__used(&b), 0);
	/* Not committed (capture.c when malloc fails): the next reserve reuses the room. */
	struct mqk_entry *again = buffer__reserve(&b, HDR + 8);
	assert_ptr_equal(again, e);
	again->route = 2;
	again->seq = 5;
	again->payload_len = 0;
	buffer__commit(&b, again);
	assert_int_equal(buffer__used(&b), HDR + 8);
	struct mqk_entry *seen = buffer__peek(&b);
	assert_ptr_equal(seen, again);
	assert_int_equal(seen->route, 2);
	assert_int_equal(seen->size, HDR + 8);
	buffer__release(&b, seen);
	assert_int_equal(buffer__used(&b), 0);
}

/* ---- wrap-around -------------------------------------------------------------------------- */

/* Moves head and tail to `pos` by passing entries through (the ring is empty after). */
static void advance_to(size_t pos, uint64_t *seq)
{
	while ((size_t)(atomic_load(&b.head) % b.capacity) != pos) {
		size_t here = (size_t)(atomic_load(&b.head) % b.capacity);
		size_t step = pos > here ? pos - here : b.capacity - here;
		if (step > 1024) {
			step = step - 1024 >= HDR ? 1024 : 512;
		}
		if (step < HDR) {
			step = HDR; /* does not fit before the end: padded, wraps */
		}
		assert_non_null(put(&b, 3, *seq, step - HDR));
		take(&b, 3, (*seq)++);
	}
	assert_int_equal(buffer__used(&b), 0);
}

static void test_wrap_with_padding(void **state)
{
	uint64_t seq = 0;
	const size_t left = 128; /* bytes before the end: room for an entry header */
	const size_t near_end = 4096 - left;

	(void)state;
	advance_to(near_end, &seq);

	/* An entry that fits exactly before the end is not padded. */
	struct mqk_entry *e = put(&b, 1, 100, left - HDR);
	assert_ptr_equal(e, b.data + near_end);
	assert_int_equal(buffer__used(&b), left);
	take(&b, 1, 100);
	assert_int_equal(atomic_load(&b.head) % b.capacity, 0);

	advance_to(near_end, &seq);
	/* 8 bytes more: a padding entry fills the end, the entry starts at 0. */
	e = put(&b, 1, 101, left + 8 - HDR);
	assert_ptr_equal(e, b.data);
	const struct mqk_entry *pad = (const struct mqk_entry *)(b.data + near_end);
	assert_int_equal(pad->route, PAD_ROUTE);
	assert_int_equal(pad->size, left);
	/* The padding is room in use until the consumer passes it. */
	assert_int_equal(buffer__used(&b), left + left + 8);
	/* The consumer never sees the padding. */
	assert_ptr_equal(buffer__peek(&b), b.data);
	assert_int_equal(buffer__used(&b), left + 8);
	take(&b, 1, 101);
	assert_int_equal(buffer__used(&b), 0);
	assert_null(buffer__peek(&b));

	/* The smallest padding: 8 bytes before the end. */
	advance_to(4096 - 8, &seq);
	e = put(&b, 2, 102, 0);
	assert_ptr_equal(e, b.data);
	assert_int_equal(buffer__used(&b), 8 + HDR);
	take(&b, 2, 102);
	assert_int_equal(buffer__used(&b), 0);

	/* Entries committed before and after a wrap come out in order. */
	advance_to(4096 - 200, &seq);
	assert_non_null(put(&b, 4, 200, 100)); /* fits: 100 + HDR bytes */
	assert_non_null(put(&b, 4, 201, 100)); /* does not: padded, at 0 */
	assert_non_null(put(&b, 4, 202, 300));
	take(&b, 4, 200);
	take(&b, 4, 201);
	take(&b, 4, 202);
	assert_int_equal(buffer__used(&b), 0);
}

/* xorshift64: reproducible sizes and timings. */
static uint64_t rng_state = 0x9e3779b97f4a7c15u;
static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void test_many_wraps(void **state)
{
	const uint64_t total = 100000;
	uint64_t next_put = 0, next_take = 0, full = 0;
	uint64_t bytes = 0;

	(void)state;
	assert_int_equal(b.capacity, 4096);
	while (next_take < total) {
		/* Bursts of puts until the ring refuses, then bursts of takes. */
		int burst = (int)(rnd() % 12);
		for (int k = 0; k < burst && next_put < total; k++) {
			size_t len = (size_t)(rnd() % 700);
			if (put(&b, (uint16_t)(next_put % (MAX_ROUTE + 1)), next_put, len) ==
			    NULL) {
				/* Refused only when it does not fit, with its padding. */
				size_t need = aligned(HDR + len);
				size_t to_end = 4096 - (size_t)(atomic_load(&b.head) % 4096);
				size_t pad = need > to_end ? to_end : 0;
				assert_true(buffer__used(&b) + pad + need > 4096);
				full++;
				break;
			}
			bytes += aligned(HDR + len);
			next_put++;
		}
		burst = (int)(rnd() % 10);
		for (int k = 0; k < burst && next_take < next_put; k++) {
			take(&b, (uint16_t)(next_take % (MAX_ROUTE + 1)), next_take);
			next_take++;
		}
		assert_true(buffer__used(&b) <= b.capacity);
	}
	assert_null(buffer__peek(&b));
	assert_int_equal(buffer__used(&b), 0);
	/* Everything through, in order, many times round the ring, sometimes full. */
	assert_int_equal(next_put, total);
	assert_int_equal(next_take, total);
	uint64_t laps = atomic_load(&b.head) / b.capacity;
	print_message("100000 entries, %llu bytes, %llu laps of a 4 KiB ring, full %llu times\n",
		      (unsigned long long)bytes, (unsigned long long)laps,
		      (unsigned long long)full);
	assert_true(laps > 1000);
	assert_true(full > 0);
	/* head also counts the padding: more than the entries alone. */
	assert_true(atomic_load(&b.head) > bytes);
}

/* ---- full, too large ------------------------------------------------------------------ */

static void test_full(void **state)
{
	uint64_t seq = 0;
	size_t used = 0;

	(void)state;
	/* 4096 / 128: 32 entries fill it exactly. */
	while (put(&b, 0, seq, 128 - HDR) != NULL) {
		seq++;
		used += 128;
	}
	assert_int_equal(seq, 32);
	assert_int_equal(used, 4096);
	assert_int_equal(buffer__used(&b), 4096);
	/* Full: even the smallest entry is refused, and again. */
	assert_null(buffer__reserve(&b, HDR));
	assert_null(buffer__reserve(&b, 1));
	assert_null(buffer__reserve(&b, 128));
	assert_int_equal(buffer__used(&b), 4096);

	/* One released: one fits again, a larger one does not. */
	take(&b, 0, 0);
	assert_int_equal(buffer__used(&b), 4096 - 128);
	assert_null(buffer__reserve(&b, 129));
	assert_non_null(put(&b, 0, 32, 128 - HDR));
	assert_null(buffer__reserve(&b, 8));

	/* Released in the middle of the ring: a wrapping entry needs its padding's room too. */
	for (uint64_t s = 1; s <= 20; s++) {
		take(&b, 0, s);
	}
	assert_int_equal(buffer__used(&b), 4096 - 20 * 128);
	/* head is at 128 (wrapped once); tail at 21 * 128: 2560 bytes free, contiguous. */
	assert_non_null(put(&b, 0, 33, 2048 - HDR));
	assert_non_null(put(&b, 0, 34, 512 - HDR));
	assert_null(buffer__reserve(&b, 8));
	for (uint64_t s = 21; s <= 34; s++) {
		take(&b, 0, s);
	}
	assert_int_equal(buffer__used(&b), 0);
	assert_null(buffer__peek(&b));
}

static void test_full_needs_padding_room(void **state)
{
	uint64_t seq = 0;

	(void)state;
	advance_to(1024, &seq);
	assert_non_null(put(&b, 0, 500, 2048 - HDR));      /* 1024 .. 3072 */
	assert_non_null(put(&b, 0, 501, 1024 - 64 - HDR)); /* 3072 .. 4032 */
	assert_int_equal(buffer__used(&b), 4096 - 1024 - 64);
	/*
	 * 1088 bytes free, not contiguous: 64 at the end, 1024 at the start. 1032 would fit
	 * in 1088, but not after its 64 bytes of padding: refused, and nothing changes.
	 */
	assert_null(buffer__reserve(&b, 1032));
	assert_int_equal(buffer__used(&b), 4096 - 1024 - 64);
	assert_int_equal(atomic_load(&b.head) % 4096, 4032);
	/* 1024 fits with its padding, exactly: full. */
	assert_ptr_equal(put(&b, 0, 502, 1024 - HDR), b.data);
	assert_int_equal(buffer__used(&b), 4096);
	assert_null(buffer__reserve(&b, 8));
	take(&b, 0, 500);
	take(&b, 0, 501);
	take(&b, 0, 502);
	assert_int_equal(buffer__used(&b), 0);
}

static void test_too_large(void **state)
{
	struct mqk_buffer big;

	(void)state;
	/* Half the capacity is the most an entry may take, even in an empty ring. */
	assert_null(buffer__reserve(&b, 2048 + 1));
	assert_null(buffer__reserve(&b, 4096));
	assert_null(buffer__reserve(&b, 1 << 20));
	assert_int_equal(buffer__used(&b), 0);
	assert_non_null(put(&b, 0, 1, 2048 - HDR));
	take(&b, 0, 1);

	assert_int_equal(buffer__init(&big, 1 << 20), 0);
	assert_null(buffer__reserve(&big, (512 << 10) + 1));
	assert_non_null(buffer__reserve(&big, 512 << 10));
	buffer__free(&big);
}

static void test_too_large_beyond_32_bits(void **state)
{
	(void)state;
	/*
	 * Sizes are size_t: one of 4 GiB and more is larger than any ring, and refused like
	 * any entry over half the capacity (not narrowed to 32 bits first).
	 */
	assert_null(buffer__reserve(&b, ((size_t)1 << 32) + 64));
	assert_null(buffer__reserve(&b, SIZE_MAX - 3));
	assert_int_equal(buffer__used(&b), 0);
}

/* ---- sleep -------------------------------------------------------------------------------- */

static void test_sleep(void **state)
{
	int64_t t0;

	(void)state;
	/* Empty, nothing wakes it: the timeout. */
	t0 = monotonic_ms();
	buffer__sleep(&b, 50, true);
	assert_true(monotonic_ms() - t0 >= 45);
	assert_false(atomic_load(&b.sleeping));

	/* wake_on_commit, an entry waiting: at once, whatever the timeout. */
	assert_non_null(put(&b, 0, 1, 0));
	t0 = monotonic_ms();
	buffer__sleep(&b, 10000, true);
	assert_true(monotonic_ms() - t0 < 5000);

	/* Not wake_on_commit: an entry waiting does not end the sleep, only the eventfd does. */
	t0 = monotonic_ms();
	buffer__sleep(&b, 50, false);
	assert_true(monotonic_ms() - t0 >= 45);
	/* ... and a commit meanwhile does not write it (sleeping is not set). */
	assert_false(atomic_load(&b.sleeping));
	assert_non_null(put(&b, 0, 2, 0));
	t0 = monotonic_ms();
	buffer__sleep(&b, 50, false);
	assert_true(monotonic_ms() - t0 >= 45);

	/* buffer__wake (librdkafka's events, producer__close): at once, and consumed. */
	buffer__wake(&b);
	buffer__wake(&b);
	t0 = monotonic_ms();
	buffer__sleep(&b, 10000, false);
	assert_true(monotonic_ms() - t0 < 5000);
	t0 = monotonic_ms();
	buffer__sleep(&b, 50, false);
	assert_true(monotonic_ms() - t0 >= 45);

	take(&b, 0, 1);
	take(&b, 0, 2);
}

/* ---- two threads -------------------------------------------------------------------------- */

struct producer_arg {
	struct mqk_buffer *buf;
	uint64_t count;
	uint64_t round_trip; /* 0: as fast as it can; else wait for each release */
	int64_t deadline_ms;
	uint64_t full; /* reserve refused, tried again */
	bool timed_out;
};

static void *producer_thread(void *arg)
{
	struct producer_arg *a = arg;
	uint64_t x = 0x243f6a8885a308d3u;

	for (uint64_t seq = 0; seq < a->count; seq++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		size_t len = (size_t)(x % 97);
		struct mqk_entry *e;

		while ((e = buffer__reserve(a->buf, HDR + len)) == NULL) {
			a->full++;
			if (monotonic_ms() > a->deadline_ms) {
				a->timed_out = true;
				return NULL;
			}
			sched_yield();
		}
		e->route = 9;
		e->seq = seq;
		e->payload_len = (uint32_t)len;
		for (size_t i = 0; i < len; i++) {
			e->data[i] = pattern(seq, i);
		}
		buffer__commit(a->buf, e);
		if (a->round_trip) {
			/* Ping-pong: the consumer is asleep again before the next commit. */
			while (buffer__used(a->buf) != 0) {
				if (monotonic_ms() > a->deadline_ms) {
					a->timed_out = true;
					return NULL;
				}
				sched_yield();
			}
		}
	}
	return NULL;
}

struct consume_result {
	uint64_t received, out_of_order, sleeps, long_sleeps;
	int64_t max_sleep_ms;
	bool timed_out;
};

static void consume(struct mqk_buffer *buf, uint64_t count, int sleep_ms, bool wake_on_commit,
		    int64_t deadline_ms, struct consume_result *r)
{
	memset(r, 0, sizeof(*r));
	while (r->received < count) {
		struct mqk_entry *e = buffer__peek(buf);
		if (e == NULL) {
			if (monotonic_ms() > deadline_ms) {
				r->timed_out = true;
				return;
			}
			int64_t t0 = monotonic_ms();
			buffer__sleep(buf, sleep_ms, wake_on_commit);
			int64_t took = monotonic_ms() - t0;
			r->sleeps++;
			if (took > r->max_sleep_ms) {
				r->max_sleep_ms = took;
			}
			if (took >= sleep_ms) {
				r->long_sleeps++;
			}
			continue;
		}
		if (e->seq != r->received || e->route != 9) {
			if (r->out_of_order++ < 5) {
				print_error("entry %llu arrived as number %llu\n",
					    (unsigned long long)e->seq,
					    (unsigned long long)r->received);
			}
		}
		for (size_t i = 0; i < e->payload_len; i++) {
			if (e->data[i] != pattern(e->seq, i)) {
				fail_msg("entry %llu: byte %zu damaged", (unsigned long long)e->seq,
					 i);
			}
		}
		r->received++;
		buffer__release(buf, e);
	}
}

static void test_two_threads(void **state)
{
	const uint64_t count = 1000000;
	struct producer_arg a = {.buf = &b, .count = count, .deadline_ms = monotonic_ms() + 60000};
	struct consume_result r;
	pthread_t t;

	(void)state;
	assert_int_equal(pthread_create(&t, NULL, producer_thread, &a), 0);
	consume(&b, count, 10, true, a.deadline_ms, &r);
	assert_int_equal(pthread_join(t, NULL), 0);
	print_message("%llu sent, %llu received, %llu out of order; producer found the ring "
		      "full %llu times, consumer slept %llu times (%llu to the 10 ms timeout, "
		      "longest %lld ms)\n",
		      (unsigned long long)count, (unsigned long long)r.received,
		      (unsigned long long)r.out_of_order, (unsigned long long)a.full,
		      (unsigned long long)r.sleeps, (unsigned long long)r.long_sleeps,
		      (long long)r.max_sleep_ms);
	assert_false(a.timed_out);
	assert_false(r.timed_out);
	assert_int_equal(r.received, count);
	assert_int_equal(r.out_of_order, 0);
	assert_null(buffer__peek(&b));
	assert_int_equal(buffer__used(&b), 0);
}

static void test_wake_up_not_lost(void **state)
{
	/*
	 * One entry at a time, the consumer asleep (5 s timeout) before each commit: a lost
	 * wake-up costs 5 s, so the longest sleep tells. 20,000 hand-overs.
	 */
	const uint64_t count = 20000;
	struct producer_arg a = {
		.buf = &b, .count = count, .round_trip = 1, .deadline_ms = monotonic_ms() + 90000};
	struct consume_result r;
	pthread_t t;

	(void)state;
	assert_int_equal(pthread_create(&t, NULL, producer_thread, &a), 0);
	consume(&b, count, 5000, true, a.deadline_ms, &r);
	assert_int_equal(pthread_join(t, NULL), 0);
	print_message("%llu hand-overs, %llu sleeps, %llu to the 5 s timeout, longest %lld ms\n",
		      (unsigned long long)r.received, (unsigned long long)r.sleeps,
		      (unsigned long long)r.long_sleeps, (long long)r.max_sleep_ms);
	assert_false(a.timed_out);
	assert_false(r.timed_out);
	assert_int_equal(r.received, count);
	assert_int_equal(r.out_of_order, 0);
	assert_int_equal(r.long_sleeps, 0);
	assert_true(r.sleeps > 0);
}

static void test_two_threads_napping(void **state)
{
	/*
	 * The Kafka thread while busy: 1 ms naps that commits do not cut short (nothing
	 * writes the eventfd). Slower, but nothing lost or reordered either.
	 */
	const uint64_t count = 200000;
	struct producer_arg a = {.buf = &b, .count = count, .deadline_ms = monotonic_ms() + 60000};
	struct consume_result r;
	pthread_t t;
	uint64_t value;

	(void)state;
	assert_int_equal(pthread_create(&t, NULL, producer_thread, &a), 0);
	consume(&b, count, 1, false, a.deadline_ms, &r);
	assert_int_equal(pthread_join(t, NULL), 0);
	print_message("%llu sent, %llu received, %llu naps\n", (unsigned long long)count,
		      (unsigned long long)r.received, (unsigned long long)r.sleeps);
	assert_false(a.timed_out);
	assert_false(r.timed_out);
	assert_int_equal(r.received, count);
	assert_int_equal(r.out_of_order, 0);
	/* No commit wrote the eventfd. */
	assert_int_equal(read(b.wake_fd, &value, sizeof(value)), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_init_capacity),
		T(test_order_and_contents),
		T(test_reserved_not_committed),
		T(test_wrap_with_padding),
		T(test_many_wraps),
		T(test_full),
		T(test_full_needs_padding_room),
		T(test_too_large),
		T(test_too_large_beyond_32_bits),
		T(test_sleep),
		T(test_two_threads),
		T(test_wake_up_not_lost),
		T(test_two_threads_napping),
#undef T
	};
	return cmocka_run_group_tests_name("buffer", tests, NULL, NULL);
}
