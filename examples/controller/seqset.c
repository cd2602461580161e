/*
 * seqset.c - which sequence numbers of a sender arrived, as few ranges as possible.
 *
 * A device's messages arrive mostly in order, so the set is usually one range that
 * grows at its end: adding the next number is O(1). A number out of order costs a
 * binary search and, when it opens or closes a gap, a memmove of the ranges after it.
 * Merging two controllers' sets adds whole ranges the same way.
 */
#include <stdlib.h>
#include <string.h>

#include "controller.h"

/* The first range whose hi + 1 >= v, i.e. that contains v or ends right before it. */
static size_t first_touching(const struct seqset *s, uint64_t v)
{
	size_t lo = 0, hi = s->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->r[mid].hi < v && s->r[mid].hi + 1 < v) {
			lo = mid + 1;
		} else {
			hi = mid;
		}
	}
	return lo;
}

static int reserve(struct seqset *s, size_t n)
{
	if (n <= s->cap) {
		return 0;
	}
	size_t cap = s->cap ? s->cap * 2 : 4;
	while (cap < n) {
		cap *= 2;
	}
	struct seqrange *r = realloc(s->r, cap * sizeof(*r));
	if (r == NULL) {
		return -1;
	}
	s->r = r;
	s->cap = cap;
	return 0;
}

static uint64_t min64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static uint64_t max64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

int64_t seqset__add_range(struct seqset *s, uint64_t lo, uint64_t hi)
{
	/* The fast path: the next numbers after the last range. */
	if (s->n > 0 && s->r[s->n - 1].hi < lo && s->r[s->n - 1].hi + 1 == lo) {
		s->r[s->n - 1].hi = hi;
		return 0;
	}

	/* Ranges [i, j) overlap [lo, hi] or touch it; they become one. */
	size_t i = first_touching(s, lo);
	size_t j = i;
	uint64_t overlap = 0;
	while (j < s->n && (hi == UINT64_MAX || s->r[j].lo <= hi + 1)) {
		uint64_t a = max64(lo, s->r[j].lo), b = min64(hi, s->r[j].hi);
		if (a <= b) {
			overlap += b - a + 1;
		}
		j++;
	}
	if (i == j) {
		if (reserve(s, s->n + 1) != 0) {
			return -1;
		}
		memmove(&s->r[i + 1], &s->r[i], (s->n - i) * sizeof(s->r[0]));
		s->r[i].lo = lo;
		s->r[i].hi = hi;
		s->n++;
		return 0;
	}
	struct seqrange merged = {min64(lo, s->r[i].lo), max64(hi, s->r[j - 1].hi)};
	s->r[i] = merged;
	memmove(&s->r[i + 1], &s->r[j], (s->n - j) * sizeof(s->r[0]));
	s->n -= j - i - 1;
	return (int64_t)overlap;
}

int seqset__add(struct seqset *s, uint64_t seq)
{
	int64_t rc = seqset__add_range(s, seq, seq);
	return rc < 0 ? -1 : rc == 0;
}

uint64_t seqset__count(const struct seqset *s)
{
	uint64_t count = 0;
	for (size_t i = 0; i < s->n; i++) {
		count += s->r[i].hi - s->r[i].lo + 1;
	}
	return count;
}

uint64_t seqset__max(const struct seqset *s)
{
	return s->n ? s->r[s->n - 1].hi : 0;
}

uint64_t seqset__gaps(const struct seqset *s, uint64_t from)
{
	uint64_t gaps = 0, next = from;

	for (size_t i = 0; i < s->n; i++) {
		if (s->r[i].hi < from) {
			continue;
		}
		if (s->r[i].lo > next) {
			gaps += s->r[i].lo - next;
		}
		next = s->r[i].hi + 1;
	}
	return gaps;
}

void seqset__free(struct seqset *s)
{
	free(s->r);
	memset(s, 0, sizeof(*s));
}
