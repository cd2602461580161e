/*
 * topics.c - the Kafka topic names the Kafka thread has already made sure of.
 *
 * With create_topics true, producer.c creates each Kafka topic (CreateTopics) the first
 * time a record needs it. This set remembers the outcome, so that a topic is created
 * once per run, not once per record: a name is either known to exist (created, or it
 * already existed), or its creation failed and may be tried again at a given time.
 *
 * An open-addressing hash table (FNV-1a, linear probing) that grows by doubling. It is
 * bounded: a dynamic topic template ({clientid}, say) can make one name per device, so
 * when the set holds max_names names and a new one comes, it forgets them all and starts
 * again. A forgotten topic costs one more CreateTopics round trip (TOPIC_ALREADY_EXISTS
 * counts as success), never a lost record.
 *
 * Kafka thread only: no lock, no mosquitto_* call.
 */
#include <stdlib.h>
#include <string.h>

#include "mqk.h"

#define FIRST_SLOTS 64

static uint32_t hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

int topics__init(struct mqk_topics *t, size_t max_names)
{
	memset(t, 0, sizeof(*t));
	t->max_names = max_names > 0 ? max_names : 1;
	return 0;
}

void topics__clear(struct mqk_topics *t)
{
	for (size_t i = 0; i < t->slot_count; i++) {
		free(t->slots[i].name);
	}
	free(t->slots);
	t->slots = NULL;
	t->slot_count = 0;
	t->count = 0;
}

void topics__free(struct mqk_topics *t)
{
	topics__clear(t);
}

/* The slot holding name, or the empty slot where it would go. slot_count > 0. */
static struct mqk_topic_slot *find_slot(const struct mqk_topics *t, const char *name, uint32_t h)
{
	size_t mask = t->slot_count - 1;

	for (size_t i = h & mask;; i = (i + 1) & mask) {
		struct mqk_topic_slot *s = &t->slots[i];
		if (s->name == NULL || (s->hash == h && !strcmp(s->name, name))) {
			return s;
		}
	}
}

/* Doubles the table (or makes the first one). Returns 0, or -1 when out of memory. */
static int grow(struct mqk_topics *t)
{
	size_t n = t->slot_count ? t->slot_count * 2 : FIRST_SLOTS;
	struct mqk_topics bigger = *t;

	bigger.slots = calloc(n, sizeof(*bigger.slots));
	if (bigger.slots == NULL) {
		return -1;
	}
	bigger.slot_count = n;
	for (size_t i = 0; i < t->slot_count; i++) {
		if (t->slots[i].name) {
			*find_slot(&bigger, t->slots[i].name, t->slots[i].hash) = t->slots[i];
		}
	}
	free(t->slots);
	*t = bigger;
	return 0;
}

bool topics__get(const struct mqk_topics *t, const char *name, int64_t *retry_at_ms)
{
	const struct mqk_topic_slot *s;

	if (t->slot_count == 0) {
		return false;
	}
	s = find_slot(t, name, hash(name));
	if (s->name == NULL) {
		return false;
	}
	*retry_at_ms = s->retry_at_ms;
	return true;
}

int topics__put(struct mqk_topics *t, const char *name, int64_t retry_at_ms)
{
	uint32_t h = hash(name);
	struct mqk_topic_slot *s;
	int forgot = 0;

	if (t->slot_count > 0) {
		s = find_slot(t, name, h);
		if (s->name != NULL) {
			s->retry_at_ms = retry_at_ms;
			return 0;
		}
	}
	if (t->count >= t->max_names) {
		topics__clear(t);
		forgot = 1;
	}
	/* At most half full: probes stay short. */
	if ((t->count + 1) * 2 > t->slot_count && grow(t)) {
		return -1;
	}
	s = find_slot(t, name, h);
	s->name = strdup(name);
	if (s->name == NULL) {
		return -1;
	}
	s->hash = h;
	s->retry_at_ms = retry_at_ms;
	t->count++;
	return forgot;
}

size_t topics__count(const struct mqk_topics *t)
{
	return t->count;
}
