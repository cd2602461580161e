/*
 * window.c - the offsets of one partition of the commands topic, stored in read order.
 *
 * A command settles when Kafka acknowledged its route or its dead letter; commands of one
 * partition settle out of order (one is held while later ones are routed at once, two
 * brokers acknowledge at different times). The consumer's committed offset must never
 * pass a command that is not settled, or a restart would skip it. So every record read
 * takes a slot at the tail of its partition's window, settling marks its slot, and the
 * settled run at the head leaves the window: its last offset + 1 is what may be stored.
 *
 * A ring of (offset, settled) slots, doubled when full; a slot is named by its position
 * since the window began (head <= slot < tail), which stays valid across growth. The
 * epoch changes when the partition is revoked or assigned again: a command that settles
 * after that belongs to an assignment that is over, and stores nothing.
 */
#include <stdlib.h>
#include <string.h>

#include "router.h"

struct window *windows__get(struct windows *ws, int32_t partition)
{
	if (partition < 0) {
		return NULL;
	}
	if (partition >= ws->n) {
		int32_t n = partition + 1;
		struct window *w = realloc(ws->w, (size_t)n * sizeof(*w));
		if (w == NULL) {
			return NULL;
		}
		memset(w + ws->n, 0, (size_t)(n - ws->n) * sizeof(*w));
		ws->w = w;
		ws->n = n;
	}
	return &ws->w[partition];
}

void windows__free(struct windows *ws)
{
	for (int32_t i = 0; i < ws->n; i++) {
		free(ws->w[i].ring);
	}
	free(ws->w);
	ws->w = NULL;
	ws->n = 0;
}

int window__push(struct window *w, int64_t offset, uint64_t *slot)
{
	if (w->tail - w->head == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 64;
		struct window_slot *ring = malloc(cap * sizeof(*ring));
		if (ring == NULL) {
			return -1;
		}
		for (uint64_t i = w->head; i < w->tail; i++) {
			ring[i & (cap - 1)] = w->ring[i & (w->cap - 1)];
		}
		free(w->ring);
		w->ring = ring;
		w->cap = cap;
	}
	w->ring[w->tail & (w->cap - 1)] = (struct window_slot){.offset = offset, .settled = false};
	*slot = w->tail++;
	return 0;
}

int64_t window__settle(struct window *w, uint64_t slot)
{
	int64_t last = -1;

	if (slot < w->head || slot >= w->tail) {
		return -1;
	}
	w->ring[slot & (w->cap - 1)].settled = true;
	while (w->head < w->tail && w->ring[w->head & (w->cap - 1)].settled) {
		last = w->ring[w->head & (w->cap - 1)].offset;
		w->head++;
	}
	return last;
}

void window__reset(struct window *w)
{
	w->head = w->tail = 0;
	w->epoch++;
}

size_t window__pending(const struct window *w)
{
	return (size_t)(w->tail - w->head);
}
