/*
 * map.c - a string-keyed hash table for mqk-router's tables (presence.c: brokers and
 * clients; held.c: targets with commands held).
 *
 * Chained buckets, FNV-1a hashes, doubled when as many nodes as buckets. The node is
 * embedded in the value (container_of), so adding allocates nothing but buckets and a
 * look-up touches one node per candidate.
 */
#include <stdlib.h>
#include <string.h>

#include "router.h"

static uint64_t hash(const char *key)
{
	uint64_t h = 14695981039346656037ULL;

	for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
		h = (h ^ *p) * 1099511628211ULL;
	}
	return h;
}

struct map_node *map__get(const struct map *m, const char *key)
{
	if (m->cap == 0) {
		return NULL;
	}
	uint64_t h = hash(key);
	for (struct map_node *n = m->buckets[h & (m->cap - 1)]; n; n = n->next) {
		if (n->hash == h && strcmp(n->key, key) == 0) {
			return n;
		}
	}
	return NULL;
}

static int grow(struct map *m)
{
	size_t cap = m->cap ? m->cap * 2 : 64;
	struct map_node **b = calloc(cap, sizeof(*b));

	if (b == NULL) {
		return -1;
	}
	for (size_t i = 0; i < m->cap; i++) {
		struct map_node *n = m->buckets[i];
		while (n) {
			struct map_node *next = n->next;
			n->next = b[n->hash & (cap - 1)];
			b[n->hash & (cap - 1)] = n;
			n = next;
		}
	}
	free(m->buckets);
	m->buckets = b;
	m->cap = cap;
	return 0;
}

int map__add(struct map *m, struct map_node *node)
{
	if (m->count >= m->cap && grow(m) != 0 && m->cap == 0) {
		return -1; /* a full table still takes nodes, only its chains get longer */
	}
	node->hash = hash(node->key);
	struct map_node **b = &m->buckets[node->hash & (m->cap - 1)];
	node->next = *b;
	*b = node;
	m->count++;
	return 0;
}

void map__remove(struct map *m, struct map_node *node)
{
	for (struct map_node **p = &m->buckets[node->hash & (m->cap - 1)]; *p; p = &(*p)->next) {
		if (*p == node) {
			*p = node->next;
			m->count--;
			return;
		}
	}
}

void map__free(struct map *m)
{
	free(m->buckets);
	m->buckets = NULL;
	m->count = m->cap = 0;
}
