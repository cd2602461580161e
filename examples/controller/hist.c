/*
 * hist.c - latency percentiles without keeping every sample.
 *
 * HdrHistogram's idea in its simplest form: values below HIST_LINEAR µs get a bucket
 * each; above, every power of two is cut into HIST_SUB equal buckets, so a bucket is at
 * most 1/512 of its values wide (0.2%). 16,896 buckets of 8 bytes cover 0 µs to 25
 * days. A percentile is read by walking the cumulative counts, and histograms of
 * several controllers merge by adding their buckets.
 */
#include <stdlib.h>
#include <string.h>

#include "controller.h"

size_t hist__bucket(uint64_t v)
{
	if (v < HIST_LINEAR) {
		return (size_t)v;
	}
	int e = 63 - __builtin_clzll(v); /* 2^e <= v, e >= 10 */
	if (e >= HIST_MAX_EXP) {
		return HIST_BUCKETS - 1;
	}
	uint64_t sub = v >> (e - 9); /* 512..1023 */
	return HIST_LINEAR + (size_t)(e - 10) * HIST_SUB + (size_t)(sub - HIST_SUB);
}

uint64_t hist__lowest(size_t i)
{
	if (i < HIST_LINEAR) {
		return i;
	}
	size_t k = i - HIST_LINEAR;
	int e = 10 + (int)(k / HIST_SUB);
	uint64_t sub = HIST_SUB + k % HIST_SUB;
	return sub << (e - 9);
}

uint64_t hist__highest(size_t i)
{
	if (i == HIST_BUCKETS - 1) {
		return UINT64_MAX;
	}
	return hist__lowest(i + 1) - 1;
}

static int ensure(struct hist *h)
{
	if (h->counts == NULL) {
		h->counts = calloc(HIST_BUCKETS, sizeof(h->counts[0]));
		if (h->counts == NULL) {
			return -1;
		}
	}
	return 0;
}

int hist__add_bucket(struct hist *h, size_t i, uint64_t count)
{
	if (i >= HIST_BUCKETS || count == 0) {
		return i >= HIST_BUCKETS ? -1 : 0;
	}
	if (ensure(h) != 0) {
		return -1;
	}
	uint64_t lowest = hist__lowest(i), highest = hist__highest(i);
	if (h->total == 0 || lowest < h->min) {
		h->min = lowest;
	}
	if (h->total == 0 || highest > h->max) {
		h->max = highest;
	}
	h->counts[i] += count;
	h->total += count;
	h->sum += lowest * count;
	return 0;
}

int hist__record(struct hist *h, uint64_t v)
{
	if (ensure(h) != 0) {
		return -1;
	}
	if (h->total == 0 || v < h->min) {
		h->min = v;
	}
	if (h->total == 0 || v > h->max) {
		h->max = v;
	}
	h->counts[hist__bucket(v)]++;
	h->total++;
	h->sum += v;
	return 0;
}

uint64_t hist__percentile(const struct hist *h, double p)
{
	if (h->total == 0) {
		return 0;
	}
	uint64_t rank = (uint64_t)(p / 100.0 * (double)h->total + 0.999999);
	if (rank < 1) {
		rank = 1;
	}
	if (rank > h->total) {
		rank = h->total;
	}
	uint64_t seen = 0;
	for (size_t i = 0; i < HIST_BUCKETS; i++) {
		seen += h->counts[i];
		if (seen >= rank) {
			uint64_t v = hist__highest(i);
			if (v > h->max) {
				v = h->max;
			}
			return v < h->min ? h->min : v;
		}
	}
	return h->max;
}

int hist__merge(struct hist *dst, const struct hist *src)
{
	if (src->total == 0) {
		return 0;
	}
	if (ensure(dst) != 0) {
		return -1;
	}
	for (size_t i = 0; i < HIST_BUCKETS; i++) {
		dst->counts[i] += src->counts[i];
	}
	if (dst->total == 0 || src->min < dst->min) {
		dst->min = src->min;
	}
	if (dst->total == 0 || src->max > dst->max) {
		dst->max = src->max;
	}
	dst->total += src->total;
	dst->sum += src->sum;
	return 0;
}

void hist__free(struct hist *h)
{
	free(h->counts);
	memset(h, 0, sizeof(*h));
}
