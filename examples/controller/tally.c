/*
 * tally.c - one track per sender: which numbers arrived, how many twice, how many late.
 *
 * A hash table (open addressing, FNV-1a, linear probing, at most 3/4 full) from a key to
 * its track: a device id for the loadgen's per-device sequences, or a broker's
 * "broker\troute\tboot" for the plugin's mqtt.seq. Tracks are never removed.
 */
#include <stdlib.h>
#include <string.h>

#include "controller.h"

static uint64_t hash(const char *key, size_t len)
{
	uint64_t h = 14695981039346656037ULL;
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)key[i];
		h *= 1099511628211ULL;
	}
	return h;
}

/* The slot of key, or the empty slot where it would go. */
static struct track *slot(struct track *slots, size_t cap, const char *key, size_t len)
{
	size_t i = (size_t)hash(key, len) & (cap - 1);
	while (slots[i].key != NULL &&
	       (strncmp(slots[i].key, key, len) != 0 || slots[i].key[len] != '\0')) {
		i = (i + 1) & (cap - 1);
	}
	return &slots[i];
}

static int grow(struct tally *t)
{
	size_t cap = t->cap ? t->cap * 2 : 64;
	struct track *slots = calloc(cap, sizeof(*slots));
	if (slots == NULL) {
		return -1;
	}
	for (size_t i = 0; i < t->cap; i++) {
		if (t->slots[i].key != NULL) {
			*slot(slots, cap, t->slots[i].key, strlen(t->slots[i].key)) = t->slots[i];
		}
	}
	free(t->slots);
	t->slots = slots;
	t->cap = cap;
	return 0;
}

struct track *tally__get(struct tally *t, const char *key, size_t len)
{
	if ((t->n + 1) * 4 > t->cap * 3 && grow(t) != 0) {
		return NULL;
	}
	struct track *tr = slot(t->slots, t->cap, key, len);
	if (tr->key == NULL) {
		tr->key = strndup(key, len);
		if (tr->key == NULL) {
			return NULL;
		}
		t->n++;
	}
	return tr;
}

enum arrival track__arrive(struct track *tr, uint64_t seq)
{
	bool late = tr->seen.n > 0 && seq < seqset__max(&tr->seen);
	int rc = seqset__add(&tr->seen, seq);

	if (rc < 0) {
		return ARRIVAL_NOMEM;
	}
	tr->received++;
	if (rc == 0) {
		tr->duplicates++;
		return ARRIVAL_DUPLICATE;
	}
	if (late) {
		tr->out_of_order++;
		return ARRIVAL_LATE;
	}
	return ARRIVAL_NEW;
}

void tally__each(const struct tally *t, void (*fn)(const struct track *, void *), void *arg)
{
	for (size_t i = 0; i < t->cap; i++) {
		if (t->slots[i].key != NULL) {
			fn(&t->slots[i], arg);
		}
	}
}

int tally__merge(struct tally *dst, const struct tally *src)
{
	for (size_t i = 0; i < src->cap; i++) {
		const struct track *s = &src->slots[i];
		if (s->key == NULL) {
			continue;
		}
		struct track *d = tally__get(dst, s->key, strlen(s->key));
		if (d == NULL) {
			return -1;
		}
		for (size_t k = 0; k < s->seen.n; k++) {
			int64_t overlap =
				seqset__add_range(&d->seen, s->seen.r[k].lo, s->seen.r[k].hi);
			if (overlap < 0) {
				return -1;
			}
			d->duplicates += (uint64_t)overlap;
		}
		d->received += s->received;
		d->duplicates += s->duplicates;
		d->out_of_order += s->out_of_order;
	}
	return 0;
}

void tally__free(struct tally *t)
{
	for (size_t i = 0; i < t->cap; i++) {
		free(t->slots[i].key);
		seqset__free(&t->slots[i].seen);
	}
	free(t->slots);
	t->slots = NULL;
	t->cap = t->n = 0;
}
