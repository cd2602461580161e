/*
 * buffer.c - the hand-off between mosquitto's thread and the Kafka thread.
 *
 * A single-producer single-consumer ring of bytes. mosquitto's thread (the only
 * producer) reserves room for one entry, copies the message into it and commits it.
 * The Kafka thread (the only consumer) keeps two positions: send, the next entry to
 * hand to librdkafka, and tail, the oldest entry Kafka has not acknowledged yet. An
 * entry's room goes back to the producer only when the entry is settled (delivered, or
 * failed for good), so that everything not yet acknowledged can be sent again from
 * tail (buffer__rewind) when librdkafka's producer has to be replaced. Entries are
 * contiguous: one that does not fit before the end of the ring is preceded by a padding
 * entry and starts again at offset 0.
 *
 * head and tail only grow (64-bit byte offsets, reduced modulo the capacity when used),
 * so used = head - tail needs no other state. The producer writes head, the consumer
 * tail; each reads the other's with acquire ordering, which makes the bytes of an entry
 * visible before its commit is, and only when the value it read last has run out (the
 * producer's tail_seen says the ring is full, the consumer has reached head_seen): under
 * load mosquitto's thread does not touch the consumer's cache line at all.
 *
 * With durability journal the bytes are not a ring in memory but the journal's segment
 * files (journal.c): positions work the same, an entry that does not fit in the rest of
 * the write segment starts the next segment instead of wrapping, and each entry gets its
 * checksum at commit. The consumer's view of a position is journal__entry.
 *
 * Waking: the consumer sleeps in poll() on an eventfd. Before sleeping it sets
 * `sleeping` and checks the ring once more; after a commit the producer checks
 * `sleeping` and writes the eventfd only then. Both are sequentially consistent, so one
 * of the two always sees the other: no lost wake-up, and under load (the consumer busy)
 * no system call on mosquitto's thread.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "mqk.h"

static uint32_t aligned(size_t n)
{
	return (uint32_t)((n + 7) & ~(size_t)7);
}

int buffer__init(struct mqk_buffer *b, size_t capacity)
{
	size_t cap = 4096;

	memset(b, 0, sizeof(*b));
	while (cap < capacity) {
		cap <<= 1;
	}
	/* Pages are only touched as the ring fills: an idle plugin does not cost them. */
	b->data = malloc(cap);
	b->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (b->data == NULL || b->wake_fd < 0) {
		buffer__free(b);
		return -1;
	}
	b->capacity = cap;
	b->max_entry = cap / 2;
	return 0;
}

int buffer__init_journal(struct mqk_buffer *b, struct mqk_journal *j)
{
	uint64_t from, to;

	memset(b, 0, sizeof(*b));
	b->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (b->wake_fd < 0) {
		return -1;
	}
	b->journal = j;
	b->max_entry = journal__max_entry(j);
	/* What an earlier run left comes first. */
	journal__replay_range(j, &from, &to);
	atomic_init(&b->head, to);
	atomic_init(&b->tail, from);
	b->head_local = b->head_seen = to;
	b->tail_local = b->send_local = b->tail_seen = from;
	return 0;
}

void buffer__free(struct mqk_buffer *b)
{
	free(b->data);
	if (b->wake_fd >= 0) {
		close(b->wake_fd);
	}
	memset(b, 0, sizeof(*b));
	b->wake_fd = -1;
}

/* (P) journal: room in the write segment, or the next segment. */
static struct mqk_entry *reserve_journal(struct mqk_buffer *b, uint32_t need)
{
	struct mqk_segment *s = b->wseg;

	if (s == NULL || b->next_segment || b->head_local + need > s->start + s->size) {
		s = journal__next_segment(b->journal, s, &b->head_local);
		if (s == NULL) {
			return NULL;
		}
		b->wseg = s;
		b->next_segment = false;
	}
	b->reserved = need;
	struct mqk_entry *e = (struct mqk_entry *)(s->map + (b->head_local - s->start));
	e->pos = b->head_local;
	return e;
}

void buffer__next_segment(struct mqk_buffer *b)
{
	b->next_segment = b->journal != NULL;
}

struct mqk_entry *buffer__reserve(struct mqk_buffer *b, size_t size)
{
	if (size > b->max_entry) {
		return NULL;
	}
	uint32_t need = aligned(size);
	if (b->journal != NULL) {
		return reserve_journal(b, need);
	}
	uint64_t head = b->head_local;
	size_t pos = (size_t)(head & (b->capacity - 1));
	size_t to_end = b->capacity - pos;
	size_t pad = need > to_end ? to_end : 0;

	if (head + pad + need - b->tail_seen > b->capacity) {
		/* Full as far as we knew: what has the consumer released since? */
		b->tail_seen = atomic_load_explicit(&b->tail, memory_order_acquire);
		if (head + pad + need - b->tail_seen > b->capacity) {
			return NULL;
		}
	}
	if (pad) {
		struct mqk_entry *p = (struct mqk_entry *)(b->data + pos);
		p->size = (uint32_t)pad;
		p->route = MQK_ROUTE_PAD;
		head += pad;
		pos = 0;
	}
	b->head_local = head;
	b->reserved = need;
	struct mqk_entry *e = (struct mqk_entry *)(b->data + pos);
	e->pos = head;
	return e;
}

void buffer__commit(struct mqk_buffer *b, struct mqk_entry *e)
{
	e->size = b->reserved;
	if (b->journal != NULL) {
		e->check = entry__checksum(e, entry__checked_len(e));
	}
	b->head_local += b->reserved;
	counter__inc(&b->committed);
	atomic_store_explicit(&b->head, b->head_local, memory_order_seq_cst);
	if (atomic_load_explicit(&b->sleeping, memory_order_seq_cst)) {
		buffer__wake(b);
	}
}

void buffer__wake(struct mqk_buffer *b)
{
	uint64_t one = 1;
	/* EAGAIN: the counter is saturated, a wake-up is pending anyway. */
	(void)!write(b->wake_fd, &one, sizeof(one));
}

/* (C) Whether position pos has caught up with head: head read again only then. */
static bool reached_head(struct mqk_buffer *b, uint64_t pos)
{
	if (pos != b->head_seen) {
		return false;
	}
	b->head_seen = atomic_load_explicit(&b->head, memory_order_acquire);
	return pos == b->head_seen;
}

struct mqk_entry *buffer__at(struct mqk_buffer *b, uint64_t *pos)
{
	while (!reached_head(b, *pos)) {
		struct mqk_entry *e =
			b->journal ? journal__entry(b->journal, pos)
				   : (struct mqk_entry *)(b->data + (*pos & (b->capacity - 1)));
		if (e->route != MQK_ROUTE_PAD && e->route != MQK_ROUTE_HEADER) {
			return e;
		}
		*pos += e->size;
	}
	return NULL;
}

struct mqk_entry *buffer__peek(struct mqk_buffer *b)
{
	uint64_t tail = b->tail_local;
	struct mqk_entry *e = buffer__at(b, &tail);

	if (tail != b->tail_local) { /* padding skipped: its room goes back at once */
		b->tail_local = tail;
		if (b->send_local < tail) {
			b->send_local = tail;
		}
		atomic_store_explicit(&b->tail, tail, memory_order_release);
	}
	return e;
}

void buffer__release(struct mqk_buffer *b, struct mqk_entry *e)
{
	b->tail_local += e->size;
	if (b->send_local < b->tail_local) {
		b->send_local = b->tail_local;
	}
	atomic_store_explicit(&b->tail, b->tail_local, memory_order_release);
}

struct mqk_entry *buffer__next_unsent(struct mqk_buffer *b)
{
	return buffer__at(b, &b->send_local);
}

void buffer__mark_sent(struct mqk_buffer *b, struct mqk_entry *e)
{
	b->send_local += e->size;
}

void buffer__rewind(struct mqk_buffer *b)
{
	b->send_local = b->tail_local;
}

bool buffer__is_empty(struct mqk_buffer *b)
{
	return reached_head(b, b->tail_local);
}

bool buffer__all_sent(struct mqk_buffer *b)
{
	return reached_head(b, b->send_local);
}

bool buffer__nearly_full(struct mqk_buffer *b)
{
	if (b->journal != NULL) {
		return b->tail_local < journal__full_until(b->journal);
	}
	return buffer__used(b) > b->capacity - b->capacity / 8;
}

size_t buffer__used(struct mqk_buffer *b)
{
	return (size_t)(atomic_load_explicit(&b->head, memory_order_relaxed) -
			atomic_load_explicit(&b->tail, memory_order_relaxed)) +
	       atomic_load_explicit(&b->external_bytes, memory_order_relaxed);
}

void buffer__sleep(struct mqk_buffer *b, int timeout_ms, bool wake_on_commit)
{
	struct pollfd pfd = {.fd = b->wake_fd, .events = POLLIN};
	uint64_t count;

	if (wake_on_commit) {
		atomic_store_explicit(&b->sleeping, true, memory_order_seq_cst);
	}
	if (!wake_on_commit ||
	    atomic_load_explicit(&b->head, memory_order_seq_cst) == b->send_local) {
		while (poll(&pfd, 1, timeout_ms) < 0 && errno == EINTR) {
		}
	}
	if (wake_on_commit) {
		/* Only then: mosquitto's thread reads this line at every commit. */
		atomic_store_explicit(&b->sleeping, false, memory_order_relaxed);
	}
	(void)!read(b->wake_fd, &count, sizeof(count));
}
