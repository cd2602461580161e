/*
 * test_latency.c - latency.c's bucket search at each bound, against the linear scan it
 * replaced, and what an observation costs.
 *
 *   ctest --test-dir build -R unit_latency --output-on-failure   # -V shows the timings
 *
 * The bounds are written out here on purpose: they are /metrics' le="..." labels, which
 * dashboards rely on; a change to latency.c's table fails this test.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <cmocka.h>

#include "mqk.h"

static const int64_t bounds[] = {
	100,	200,	 300,	  500,	   700,	    1000,    1500,    2000,	3000,
	5000,	7000,	 10000,	  15000,   20000,   30000,   50000,   70000,	100000,
	200000, 500000, 1000000, 2000000, 5000000, 10000000,
};
#define NBOUNDS (sizeof(bounds) / sizeof(bounds[0]))

/* The linear scan latency.c used before: the oracle. Not inlined, as latency__bucket. */
__attribute__((noinline)) static size_t linear(int64_t us)
{
	size_t i = 0;

	while (i < NBOUNDS && us > bounds[i]) {
		i++;
	}
	return i;
}

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Each bound's own bucket, the next one above it; 0; the largest values. */
static void test_bucket_bounds(void **state)
{
	(void)state;
	assert_int_equal(latency__bucket(0), 0);
	assert_int_equal(latency__bucket(1), 0);
	assert_int_equal(latency__bucket(-1), 0);
	for (size_t i = 0; i < NBOUNDS; i++) {
		assert_int_equal(latency__bucket(bounds[i] - 1), i);
		assert_int_equal(latency__bucket(bounds[i]), i);
		assert_int_equal(latency__bucket(bounds[i] + 1), i + 1);
	}
	assert_int_equal(latency__bucket(bounds[NBOUNDS - 1] + 1), NBOUNDS); /* +Inf */
	assert_int_equal(latency__bucket(INT64_C(3600) * 1000000), NBOUNDS);
	assert_int_equal(latency__bucket(INT64_MAX), NBOUNDS);
}

/* Every µs from 0 to just past 10 s lands where the linear scan put it. */
static void test_bucket_matches_linear(void **state)
{
	(void)state;
	for (int64_t us = 0; us <= bounds[NBOUNDS - 1] + 2; us++) {
		if (latency__bucket(us) != linear(us)) {
			fail_msg("%lld µs: bucket %zu, the linear scan %zu", (long long)us,
				 latency__bucket(us), linear(us));
		}
	}
}

/*
 * Cost: the bare loop, N observations spread over the buckets (a value table walked in order, as
 * reports mix fast and slow records), the linear scan alone and the binary search alone
 * over the same values, and N CLOCK_REALTIME reads. Printed, not asserted (a shared
 * machine's timings are noise); what is asserted is that all N were counted.
 */
static void test_cost(void **state)
{
	enum { N = 4000000, VALUES = 4096 };
	static int64_t values[VALUES];
	volatile size_t sink = 0;
	struct timespec ts;
	double t0, t_loop, t_observe, t_linear, t_binary, t_clock;
	uint64_t seed = 88172645463325252ULL;

	(void)state;
	for (size_t i = 0; i < VALUES; i++) {
		/* xorshift, log-spread over 10 µs .. ~20 s */
		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		values[i] = (int64_t)10 << (seed % 21);
		values[i] += (int64_t)(seed >> 40) % values[i];
	}
	latency__reset();
	t0 = now_ns();
	for (int i = 0; i < N; i++) {
		sink += (size_t)values[i % VALUES]; /* the loop alone */
	}
	t_loop = now_ns() - t0;
	t0 = now_ns();
	for (int i = 0; i < N; i++) {
		latency__observe(MQK_LATENCY_produce_to_ack, values[i % VALUES]);
	}
	t_observe = now_ns() - t0;
	t0 = now_ns();
	for (int i = 0; i < N; i++) {
		sink += linear(values[i % VALUES]);
	}
	t_linear = now_ns() - t0;
	t0 = now_ns();
	for (int i = 0; i < N; i++) {
		sink += latency__bucket(values[i % VALUES]);
	}
	t_binary = now_ns() - t0;
	t0 = now_ns();
	for (int i = 0; i < N; i++) {
		clock_gettime(CLOCK_REALTIME, &ts);
		sink += (size_t)ts.tv_nsec;
	}
	t_clock = now_ns() - t0;
	printf("latency.c cost, %d calls each, the bare loop's %.1f ns taken off: observe %.1f ns, "
	       "linear scan %.1f ns, binary search %.1f ns, CLOCK_REALTIME read %.1f ns\n",
	       N, t_loop / N, (t_observe - t_loop) / N, (t_linear - t_loop) / N,
	       (t_binary - t_loop) / N, (t_clock - t_loop) / N);
	(void)sink;
	assert_int_equal(latency__count(MQK_LATENCY_produce_to_ack), N);
	latency__reset();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bucket_bounds),
		cmocka_unit_test(test_bucket_matches_linear),
		cmocka_unit_test(test_cost),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
