/*
 * held.c - the hold queue: commands whose target is connected nowhere (yet), waiting for a
 * presence record that shows it somewhere, or for --hold to run out.
 *
 * Every item is on two doubly linked lists: all items in arrival order, and its target's
 * items in arrival order (a device in the table of targets). One --hold applies to all, so
 * arrival order is deadline order: the oldest item is the first to expire, and the one
 * taken out when the queue is full. A target's commands leave in their order: route.c only
 * ever routes the head of a target's list, and a new command for a target that has items
 * held queues behind them, even when the target is connected by then.
 */
#include <stdlib.h>
#include <string.h>

#include "router.h"

static struct held_device *device(const struct held *h, const char *target)
{
	struct map_node *n = map__get(&h->devices, target);
	return n ? container_of(n, struct held_device, node) : NULL;
}

int held__add(struct held *h, struct held_item *it, const char *target, uint64_t deadline_us)
{
	struct held_device *d = device(h, target);

	if (d == NULL) {
		d = calloc(1, sizeof(*d));
		if (d == NULL || (d->target = strdup(target)) == NULL) {
			free(d);
			return -1;
		}
		d->node.key = d->target;
		if (map__add(&h->devices, &d->node) != 0) {
			free(d->target);
			free(d);
			return -1;
		}
	}
	it->deadline_us = deadline_us;
	it->dev = d;
	it->dev_next = NULL;
	it->dev_prev = d->tail;
	if (d->tail) {
		d->tail->dev_next = it;
	} else {
		d->head = it;
	}
	d->tail = it;
	d->count++;

	it->newer = NULL;
	it->older = h->newest;
	if (h->newest) {
		h->newest->newer = it;
	} else {
		h->oldest = it;
	}
	h->newest = it;
	h->count++;
	return 0;
}

void held__remove(struct held *h, struct held_item *it)
{
	struct held_device *d = it->dev;

	if (it->older) {
		it->older->newer = it->newer;
	} else {
		h->oldest = it->newer;
	}
	if (it->newer) {
		it->newer->older = it->older;
	} else {
		h->newest = it->older;
	}
	h->count--;

	if (it->dev_prev) {
		it->dev_prev->dev_next = it->dev_next;
	} else {
		d->head = it->dev_next;
	}
	if (it->dev_next) {
		it->dev_next->dev_prev = it->dev_prev;
	} else {
		d->tail = it->dev_prev;
	}
	if (--d->count == 0) {
		map__remove(&h->devices, &d->node);
		free(d->target);
		free(d);
	}
	it->older = it->newer = it->dev_prev = it->dev_next = NULL;
	it->dev = NULL;
}

struct held_item *held__head(const struct held *h, const char *target)
{
	struct held_device *d = device(h, target);
	return d ? d->head : NULL;
}

struct held_item *held__oldest(const struct held *h)
{
	return h->oldest;
}

const char *held__target(const struct held_item *it)
{
	return it->dev->target;
}

char **held__targets(const struct held *h, size_t *n)
{
	char **out = h->devices.count ? malloc(h->devices.count * sizeof(*out)) : NULL;
	size_t k = 0;

	*n = 0;
	if (out == NULL) {
		return NULL;
	}
	/* A target's oldest item is its list's head: list each target at its head. */
	for (struct held_item *it = h->oldest; it && k < h->devices.count; it = it->newer) {
		if (it->dev->head != it) {
			continue;
		}
		out[k] = strdup(it->dev->target);
		if (out[k] == NULL) {
			while (k > 0) {
				free(out[--k]);
			}
			free(out);
			return NULL;
		}
		k++;
	}
	*n = k;
	return out;
}

void held__defer(struct held *h, uint64_t min_deadline_us)
{
	for (struct held_item *it = h->oldest; it && it->deadline_us < min_deadline_us;
	     it = it->newer) {
		it->deadline_us = min_deadline_us;
	}
}

void held__free(struct held *h)
{
	for (size_t i = 0; i < h->devices.cap; i++) {
		struct map_node *m = h->devices.buckets[i];
		while (m) {
			struct map_node *next = m->next;
			struct held_device *d = container_of(m, struct held_device, node);
			free(d->target);
			free(d);
			m = next;
		}
	}
	map__free(&h->devices);
	memset(h, 0, sizeof(*h));
}
