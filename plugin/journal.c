/*
 * journal.c - the buffer on disk: what mosquitto acknowledged survives a crash.
 *
 * Mosquitto 2.0 sends the PUBACK as soon as MOSQ_EVT_MESSAGE returns, with no way to
 * wait for Kafka. With durability journal, the buffer between mosquitto's thread and the
 * Kafka thread (buffer.c) keeps its bytes in files instead of a malloc'd ring, so
 * "PUBACK sent" means "in the journal", and from there the record reaches Kafka at least
 * once, across a crash of mosquitto too.
 *
 * Layout. journal_dir holds journal.state (locked with flock while a broker uses the
 * directory; it holds the acknowledged position) and segment files <16 hex>.mqkj of
 * journal_segment_mb each, numbered in the order they were started. A segment is
 * mapped with MAP_SHARED: writing an entry is the same memcpy as into the memory ring,
 * and the page cache, which outlives the process, has it the moment the callback
 * returns. When it reaches the disk is journal_fsync's business: always (msync before
 * the callback returns, on mosquitto's thread), every N ms (the Kafka thread msyncs), or
 * never (the kernel writes it back on its own). The disk blocks are allocated
 * (posix_fallocate) when a segment is made, so a full disk is an error there, counted
 * and logged, and never a SIGBUS while writing into the map.
 *
 * Positions. An entry's position is the byte offset in the buffer's never-ending stream
 * (64 bits); a segment covers [start, end) of it. Segment k+1 starts where segment k's
 * last entry ends, so positions are contiguous and buffer.c's arithmetic (used = head -
 * tail) holds; the space left at the end of a segment file is simply not used. Each
 * segment starts with a header entry (MQK_ROUTE_HEADER): the segment's number and start,
 * the run that wrote it (broker id, boot time) and that run's route names, since an
 * entry names its route by index and the next run's configuration may differ.
 *
 * Checks. Each entry carries its own position and an XXH3 of its bytes (libxxhash,
 * ~25 ns for a 200-byte entry; checked at start-up only). Reading a segment stops at the
 * first entry that is not whole: zeros (never written), an entry of an older lap (a
 * recycled file: its position is not the expected one), or anything else, a torn or
 * corrupt tail, which is cut off with a log line. Nothing before it is lost.
 *
 * Acknowledged position. The Kafka thread releases entries in order once Kafka has
 * acknowledged them (or failed them for good); the position before which everything is
 * released, the buffer's tail, is stored in journal.state's mapped page at each round
 * and synced with the segments. A stale value only means records sent twice at the next
 * start (at least once), never lost. A segment the tail has passed is given back: the
 * most recent one is kept (renamed) as the next segment to write, so that its pages are
 * already allocated (its bytes zeroed, as unwritten extents), the others are deleted.
 *
 * Start-up. journal__open reads every segment, cuts what is torn, and keeps the entries
 * from the acknowledged position on, in order: buffer__init_journal makes them the
 * buffer's content, so the Kafka thread sends them before anything new. New entries go
 * to a new segment.
 *
 * Page faults. The first write to each 4 KiB page of a mapped file is a page fault
 * (~1 µs: a page-cache page found or zeroed, mapped, marked dirty), one every dozen
 * entries. The Kafka thread takes them instead: at each round it faults in the next
 * FAULT_AHEAD bytes after the head (MADV_POPULATE_WRITE, Linux 5.14), so mosquitto's
 * memcpy finds the pages mapped. Where the kernel cannot, mosquitto's thread takes them.
 *
 * Threads. journal__open and journal__next_segment (when the write segment is full)
 * and journal__sync run on mosquitto's thread; journal__entry and
 * journal__housekeeping on the Kafka thread. The segment list is a ring of descriptors
 * with one writer at each end: mosquitto's thread appends (publishing `last` with
 * release), the Kafka thread removes from `first`. The spare segment, which both may
 * make, is handed over under `lock`; that lock is taken once per segment.
 *
 * Descriptors. The Kafka thread runs on a descriptor table of its own (side.c), so a
 * segment keeps none: whichever thread makes, maps or zeroes a segment file opens it by
 * name in the journal's directory and closes it before it returns; the mapping keeps
 * the file. The directory's descriptor is made on mosquitto's thread before the split,
 * in both tables; it and journal.state's are closed by journal__close on mosquitto's
 * thread.
 *
 * Errors, one convention. A step on the disk (making, mapping, listing, syncing files)
 * returns 0 or an errno value, which its caller logs or counts (journal_errors); any other
 * step returns 0 or -1 (out of memory, not valid), and a step of journal__open writes the
 * cause into errstr. A step that fails releases what it took (goto cleanup).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/falloc.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>

#include "mqk.h"

/* Faulted in ahead of the head by the Kafka thread: ~15 ms of writing at 200k msg/s. */
#define FAULT_AHEAD (4u << 20)
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define STATE_FILE "journal.state"
#define SEGMENT_SUFFIX ".mqkj"
#define HEADER_TOPIC "mosquitto-kafka journal 1"
#define STATE_MAGIC "mosquitto-kafka journal state 1"

/* journal.state: one page, mapped. */
struct journal_state {
	char magic[32];
	atomic_uint_least64_t acked; /* everything before this position is in Kafka */
};

struct mqk_journal {
	char *dir;
	int dir_fd;
	int state_fd;
	struct journal_state *state;
	int fsync_ms; /* 0: always, -1: never */
	size_t segment_size;
	uint64_t max_segments;
	const struct mqk_config *cfg;
	const struct mqk_origin *origin;
	struct mqk_journal_counters *ctr;
	char *header;      /* this run's segment header entry, written at each segment start */
	size_t header_len; /* its size (8-aligned) */
	/* The segments, oldest first: a ring of descriptors. */
	struct mqk_segment *segs;
	uint64_t seg_cap;
	atomic_uint_least64_t first; /* (C) the oldest segment in use */
	atomic_uint_least64_t last;  /* (P) one past the newest */
	uint64_t cursor;             /* (C) the segment journal__entry looked at last */
	/* The next segment, made ahead (by either thread); under lock. */
	pthread_mutex_t lock;
	struct mqk_segment spare;
	atomic_uint_least64_t next_number;
	/* Start-up: what is to be replayed. */
	uint64_t replay_from, replay_to;
	/* (C) */
	uint64_t acked;
	uint64_t synced; /* every N ms: msync'd up to this position */
	int64_t next_sync_ms;
	uint64_t faulted;  /* pages before this position are faulted in (fault_ahead) */
	bool cannot_fault; /* the kernel has no MADV_POPULATE_WRITE */
	struct mqk_ratelimit rl_error, rl_full;
	/* (P) journal_fsync always */
	struct mqk_ratelimit rl_sync;
};

/* ---- reading -------------------------------------------------------------------- */

static uint64_t checksum(const struct mqk_entry *e)
{
	return entry__checksum(e, entry__checked_len(e));
}

/*
 * Is the entry at image[off] whole: inside the image, at position pos, its strings where
 * its lengths say, its checksum right? It must have no external payload (a journal's
 * never has).
 */
static bool entry_is_whole(const char *image, size_t len, size_t off, uint64_t pos)
{
	const struct mqk_entry *e = (const struct mqk_entry *)(image + off);
	uint64_t data;

	if (len - off < sizeof(struct mqk_entry) || e->pos != pos || e->size % 8 != 0 ||
	    e->size < sizeof(struct mqk_entry) || e->size > len - off) {
		return false;
	}
	data = (uint64_t)e->topic_len + e->client_id_len + e->username_len + 3 + e->props_len +
	       e->payload_len;
	if (data > e->size - sizeof(struct mqk_entry)) {
		return false;
	}
	if (e->data[e->topic_len] != '\0' || e->data[e->topic_len + 1 + e->client_id_len] != '\0' ||
	    e->data[e->topic_len + 1 + e->client_id_len + 1 + e->username_len] != '\0') {
		return false;
	}
	return entry__checksum(e, sizeof(struct mqk_entry) - offsetof(struct mqk_entry, pos) +
					  data) == e->check;
}

/* Nothing was ever written at image[off..]: zeros, or the end. */
static bool is_blank(const char *image, size_t len, size_t off)
{
	size_t n = len - off < sizeof(struct mqk_entry) ? len - off : sizeof(struct mqk_entry);

	for (size_t i = 0; i < n; i++) {
		if (image[off + i] != 0) {
			return false;
		}
	}
	return true;
}

int journal__scan_image(const char *image, size_t len, struct mqk_journal_scan *out)
{
	const struct mqk_entry *h = (const struct mqk_entry *)image;
	size_t off;

	memset(out, 0, sizeof(*out));
	if ((uintptr_t)image % 8 != 0 || len < sizeof(struct mqk_entry) ||
	    !entry_is_whole(image, len, 0, h->pos) || h->route != MQK_ROUTE_HEADER ||
	    h->topic_len != strlen(HEADER_TOPIC) || memcmp(h->data, HEADER_TOPIC, h->topic_len)) {
		return -1;
	}
	out->number = h->seq;
	out->start = h->pos;
	out->boot_us = h->timestamp_ms;
	out->broker_id = h->data + h->topic_len + 1;
	out->routes = out->broker_id + h->client_id_len + 1 + h->username_len + 1;
	out->routes_len = h->props_len;
	for (size_t i = 0; i < out->routes_len; i++) {
		out->route_count += out->routes[i] == '\0';
	}
	if (out->routes_len > 0 && out->routes[out->routes_len - 1] != '\0') {
		return -1;
	}
	for (off = h->size; off < len; off += ((const struct mqk_entry *)(image + off))->size) {
		const struct mqk_entry *e = (const struct mqk_entry *)(image + off);
		if (!entry_is_whole(image, len, off, out->start + off) ||
		    e->route >= out->route_count) {
			break;
		}
		out->entries++;
	}
	out->end = off;
	if (off < len && !is_blank(image, len, off)) {
		/* An older lap's entry (a recycled file) ends the segment cleanly too. */
		const struct mqk_entry *e = (const struct mqk_entry *)(image + off);
		out->torn = !(len - off >= sizeof(*e) && e->pos < out->start + off &&
			      entry_is_whole(image, len, off, e->pos));
	}
	return 0;
}

/* ---- files ------------------------------------------------------------------------ */

static void segment_name(char *buf, size_t size, uint64_t number)
{
	snprintf(buf, size, "%016" PRIx64 SEGMENT_SUFFIX, number);
}

static void unmap(struct mqk_segment *s)
{
	if (s->map != NULL) {
		munmap(s->map, s->size);
	}
	if (s->fd >= 0) {
		close(s->fd);
	}
	free(s->origin);
	memset(s, 0, sizeof(*s));
	s->fd = -1;
}

/*
 * Makes segment file `number`: its blocks allocated, mapped. Any thread. Returns 0, or
 * an errno value (the file is removed again).
 */
static int make_segment(struct mqk_journal *j, uint64_t number, struct mqk_segment *s)
{
	char name[64];
	int err;

	memset(s, 0, sizeof(*s));
	segment_name(name, sizeof(name), number);
	s->fd = openat(j->dir_fd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (s->fd < 0) {
		return errno;
	}
	/* Blocks allocated now: a full disk is this error, not a SIGBUS in a memcpy later. */
	err = posix_fallocate(s->fd, 0, (off_t)j->segment_size);
	if (err == 0) {
		s->map = mmap(NULL, j->segment_size, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
		if (s->map == MAP_FAILED) {
			s->map = NULL;
			err = errno;
		}
	}
	/* The map keeps the file: the descriptor goes now, on the thread that made it. */
	close(s->fd);
	s->fd = -1;
	if (err != 0) {
		unlinkat(j->dir_fd, name, 0);
		return err;
	}
	s->number = number;
	s->size = j->segment_size;
	return 0;
}

static void drop_segment_file(struct mqk_journal *j, struct mqk_segment *s)
{
	char name[64];

	segment_name(name, sizeof(name), s->number);
	unlinkat(j->dir_fd, name, 0);
	unmap(s);
}

/* A segment error: counted, logged (rate-limited), the overflow policy applies. */
static void segment_error(struct mqk_journal *j, struct mqk_ratelimit *rl, bool deferred,
			  const char *what, int err)
{
	atomic_fetch_add(&j->ctr->errors, 1);
	if (deferred) {
		log__deferred_ratelimited(rl, MOSQ_LOG_ERR, "journal: %s in %s: %s", what, j->dir,
					  strerror(err));
	} else {
		log__ratelimited(rl, MOSQ_LOG_ERR, "journal: %s in %s: %s", what, j->dir,
				 strerror(err));
	}
}

/* ---- this run's segment header ------------------------------------------------------- */

/* The header entry of this run's segments: route names, broker, boot. Built at open and
   again when a reload adds route definitions (mosquitto's thread, as write_header). */
static int build_header(struct mqk_journal *j)
{
	const struct mqk_config *cfg = j->cfg;
	size_t routes_len = 0, topic_len = strlen(HEADER_TOPIC);
	size_t broker_len = strlen(cfg->broker_id);
	struct mqk_entry *h;
	char *p;

	for (int i = 0; i < cfg->route_count; i++) {
		routes_len += strlen(cfg->routes[i].name) + 1;
	}
	size_t header_len = (sizeof(*h) + topic_len + broker_len + 3 + routes_len + 7) & ~(size_t)7;
	if (header_len > j->segment_size / 2) {
		return -1;
	}
	h = calloc(1, header_len);
	if (h == NULL) {
		return -1;
	}
	free(j->header);
	j->header = (char *)h;
	j->header_len = header_len;
	h->size = (uint32_t)j->header_len;
	h->route = MQK_ROUTE_HEADER;
	h->timestamp_ms = j->origin->boot_us;
	h->topic_len = (uint32_t)topic_len;
	h->client_id_len = (uint32_t)broker_len;
	h->props_len = (uint32_t)routes_len;
	p = h->data;
	memcpy(p, HEADER_TOPIC, topic_len + 1);
	p += topic_len + 1;
	memcpy(p, cfg->broker_id, broker_len + 1);
	p += broker_len + 2; /* and an empty username */
	for (int i = 0; i < cfg->route_count; i++) {
		size_t n = strlen(cfg->routes[i].name) + 1;
		memcpy(p, cfg->routes[i].name, n);
		p += n;
	}
	return 0;
}

int journal__routes_changed(struct mqk_journal *j)
{
	return build_header(j);
}

/* Writes this run's header at the start of s, for position start. */
static void write_header(struct mqk_journal *j, struct mqk_segment *s, uint64_t start)
{
	struct mqk_entry *h = (struct mqk_entry *)s->map;

	memcpy(h, j->header, j->header_len);
	h->pos = start;
	h->seq = s->number;
	h->check = checksum(h);
}

/* (P) msyncs s from what was synced last up to head. */
static void sync_own(struct mqk_journal *j, struct mqk_segment *s, uint64_t head)
{
	long page = sysconf(_SC_PAGESIZE);
	uint64_t from = s->synced > s->start ? s->synced : s->start;
	size_t off = (size_t)(from - s->start) & ~(size_t)(page - 1);

	if (head > from && msync(s->map + off, (size_t)(head - s->start) - off, MS_SYNC) != 0) {
		segment_error(j, &j->rl_sync, false, "msync failed", errno);
		return;
	}
	s->synced = head;
}

/* ---- the segment ring -------------------------------------------------------------- */

static struct mqk_segment *seg_at(struct mqk_journal *j, uint64_t index)
{
	return &j->segs[index % j->seg_cap];
}

struct mqk_segment *journal__next_segment(struct mqk_journal *j, struct mqk_segment *old,
					  uint64_t *head)
{
	uint64_t last = atomic_load_explicit(&j->last, memory_order_relaxed);
	uint64_t first = atomic_load_explicit(&j->first, memory_order_acquire);
	struct mqk_segment next = {.fd = -1};
	struct mqk_segment *s;
	int err;

	if (last - first >= j->max_segments || last - first >= j->seg_cap) {
		return NULL; /* journal_max_mb: the overflow policy decides */
	}
	pthread_mutex_lock(&j->lock);
	if (j->spare.map != NULL) {
		next = j->spare;
		memset(&j->spare, 0, sizeof(j->spare));
		j->spare.fd = -1;
	}
	pthread_mutex_unlock(&j->lock);
	if (next.map == NULL) {
		/* The Kafka thread had none ready (it makes one ahead): made here, once. */
		err = make_segment(j, atomic_fetch_add(&j->next_number, 1), &next);
		if (err != 0) {
			segment_error(j, &j->rl_error, false, "cannot make a segment file", err);
			return NULL;
		}
	}
	if (old != NULL && j->fsync_ms == 0) {
		sync_own(j, old, *head); /* before the Kafka thread may give it back */
	}
	next.start = *head;
	next.synced = *head;
	atomic_init(&next.end, UINT64_MAX);
	write_header(j, &next, *head);
	s = seg_at(j, last);
	*s = next;
	if (old != NULL) {
		atomic_store_explicit(&old->end, *head, memory_order_release);
	}
	atomic_store_explicit(&j->last, last + 1, memory_order_release);
	*head += j->header_len;
	return s;
}

struct mqk_entry *journal__entry(struct mqk_journal *j, uint64_t *pos)
{
	uint64_t first = atomic_load_explicit(&j->first, memory_order_relaxed);
	uint64_t last = atomic_load_explicit(&j->last, memory_order_acquire);
	uint64_t i = j->cursor;

	/* The segment holding *pos: the newest that starts at or before it. */
	if (i < first || i >= last || seg_at(j, i)->start > *pos) {
		i = first;
	}
	while (i + 1 < last && seg_at(j, i + 1)->start <= *pos) {
		i++;
	}
	for (;;) {
		struct mqk_segment *s = seg_at(j, i);
		if (*pos < atomic_load_explicit(&s->end, memory_order_acquire) || i + 1 >= last) {
			j->cursor = i;
			return (struct mqk_entry *)(s->map + (*pos - s->start));
		}
		/* Past its last entry (or a cut tail): the next segment. */
		i++;
		*pos = seg_at(j, i)->start;
	}
}

/*
 * (C) Zeroes segment file `number` (unwritten extents). It is opened by name here and
 * closed again: a segment keeps no descriptor, so that no thread closes one another
 * thread made (side.c). 0, or -1.
 */
static int zero_segment(struct mqk_journal *j, uint64_t number, size_t size)
{
	char name[64];
	int rc = -1;

	segment_name(name, sizeof(name), number);
	int fd = openat(j->dir_fd, name, O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		rc = fallocate(fd, FALLOC_FL_ZERO_RANGE, 0, (off_t)size);
		close(fd);
	}
	return rc;
}

/* (C) Gives back the segments the tail has passed: one kept as the spare. */
static void release_segments(struct mqk_journal *j, uint64_t tail)
{
	uint64_t first = atomic_load_explicit(&j->first, memory_order_relaxed);
	uint64_t last = atomic_load_explicit(&j->last, memory_order_acquire);

	while (first + 1 < last && seg_at(j, first + 1)->start <= tail) {
		struct mqk_segment *s = seg_at(j, first);
		struct mqk_segment old = *s;
		char from[64], to[64];
		bool kept = false;

		memset(s, 0, sizeof(*s));
		s->fd = -1;
		atomic_store_explicit(&j->first, ++first, memory_order_release);
		/*
		 * Zeroed first (unwritten extents: the blocks stay allocated, no data is
		 * written), so that the next start does not take its old entries for a torn
		 * tail. Where the file system cannot (tmpfs), the file is deleted instead.
		 */
		if (old.size == j->segment_size && old.origin == NULL &&
		    zero_segment(j, old.number, old.size) == 0) {
			pthread_mutex_lock(&j->lock);
			if (j->spare.map == NULL) {
				uint64_t number = atomic_fetch_add(&j->next_number, 1);
				segment_name(from, sizeof(from), old.number);
				segment_name(to, sizeof(to), number);
				if (renameat(j->dir_fd, from, j->dir_fd, to) == 0) {
					old.number = number;
					j->spare = old;
					kept = true;
				}
			}
			pthread_mutex_unlock(&j->lock);
		}
		if (!kept) {
			drop_segment_file(j, &old);
		}
	}
}

/* (C) Makes the next segment ahead, so that mosquitto's thread does not have to. */
static void prepare_spare(struct mqk_journal *j)
{
	uint64_t first = atomic_load_explicit(&j->first, memory_order_relaxed);
	uint64_t last = atomic_load_explicit(&j->last, memory_order_acquire);
	struct mqk_segment s;
	bool have;
	int err;

	pthread_mutex_lock(&j->lock);
	have = j->spare.map != NULL;
	pthread_mutex_unlock(&j->lock);
	if (have || last - first >= j->max_segments) {
		return;
	}
	err = make_segment(j, atomic_fetch_add(&j->next_number, 1), &s);
	if (err != 0) {
		segment_error(j, &j->rl_error, true, "cannot make a segment file", err);
		return;
	}
	pthread_mutex_lock(&j->lock);
	have = j->spare.map != NULL;
	if (!have) {
		j->spare = s;
	}
	pthread_mutex_unlock(&j->lock);
	if (have) {
		drop_segment_file(j, &s);
	}
}

/*
 * msyncs [from, to) of the segments that hold it. Returns 0 or an errno value.
 *
 * The pages are taken out of the process's page tables first (MADV_DONTNEED: for a shared
 * file mapping only the mapping goes; the page cache keeps the bytes, dirty, and msync
 * writes them). Writing back a page that is mapped writable write-protects it, and that
 * TLB flush interrupts every core running one of mosquitto's threads, mosquitto's own
 * among them: about one interrupt per page, ~7,000 a second at full ingest (journal.md).
 * Unmapped, they cost one flush per call. Only whole pages before `to` go: mosquitto's
 * thread writes at `to` and after, never before; the Kafka thread (this one) faults back
 * in what it reads or marks later.
 */
static int sync_range(struct mqk_journal *j, uint64_t from, uint64_t to)
{
	uint64_t first = atomic_load_explicit(&j->first, memory_order_relaxed);
	uint64_t last = atomic_load_explicit(&j->last, memory_order_acquire);
	long page = sysconf(_SC_PAGESIZE);
	int err = 0;

	for (uint64_t i = first; i < last; i++) {
		struct mqk_segment *s = seg_at(j, i);
		uint64_t end = i + 1 < last ? seg_at(j, i + 1)->start : to;
		uint64_t a = from > s->start ? from : s->start;
		uint64_t b = to < end ? to : end;
		if (a >= b) {
			continue;
		}
		size_t off = (size_t)(a - s->start) & ~(size_t)(page - 1);
		size_t whole = ((size_t)(b - s->start) & ~(size_t)(page - 1)) - off;
		if (whole > 0) { /* a hint: if it fails, msync syncs them all the same */
			(void)madvise(s->map + off, whole, MADV_DONTNEED);
		}
		if (msync(s->map + off, (size_t)(b - s->start) - off, MS_SYNC) != 0) {
			err = errno;
		}
	}
	return err;
}

/* (C) Faults in the pages of the newest segment from head to head + FAULT_AHEAD. */
static void fault_ahead(struct mqk_journal *j, uint64_t head)
{
	uint64_t last = atomic_load_explicit(&j->last, memory_order_acquire);
	const size_t page = 4096;

	if (j->cannot_fault || last == atomic_load_explicit(&j->first, memory_order_relaxed)) {
		return;
	}
	/* Its descriptor stays until this thread releases it (release_segments). */
	struct mqk_segment *s = seg_at(j, last - 1);
	uint64_t end = s->start + s->size;
	uint64_t to = head + FAULT_AHEAD < end ? head + FAULT_AHEAD : end;
	uint64_t from = j->faulted > head && j->faulted >= s->start ? j->faulted : head;

	from -= (from - s->start) % page;
	if (from >= to || (to - from < FAULT_AHEAD / 4 && to < end)) {
		return; /* enough ahead still: a call per megabyte, not per round */
	}
	if (madvise(s->map + (from - s->start), (size_t)(to - from), MADV_POPULATE_WRITE) != 0) {
		j->cannot_fault = errno == EINVAL; /* other errors: try again next round */
		return;
	}
	j->faulted = to;
}

void journal__housekeeping(struct mqk_journal *j, uint64_t tail, uint64_t head, int64_t now_ms)
{
	fault_ahead(j, head);
	if (tail != j->acked) {
		j->acked = tail;
		atomic_store_explicit(&j->state->acked, tail, memory_order_relaxed);
		release_segments(j, tail);
	}
	prepare_spare(j);
	if (j->fsync_ms > 0 && now_ms >= j->next_sync_ms) {
		j->next_sync_ms = now_ms + j->fsync_ms;
		if (head != j->synced) {
			int err = sync_range(j, j->synced > tail ? j->synced : tail, head);
			if (err == 0) {
				err = msync(j->state, sizeof(*j->state), MS_SYNC) ? errno : 0;
			}
			if (err != 0) {
				segment_error(j, &j->rl_error, true, "msync failed", err);
			} else {
				j->synced = head;
			}
		}
	}
}

bool journal__sync_always(const struct mqk_journal *j)
{
	return j->fsync_ms == 0;
}

void journal__sync(struct mqk_journal *j, struct mqk_segment *s, uint64_t head)
{
	if (s != NULL) {
		sync_own(j, s, head);
	}
}

/* ---- opening: what earlier runs left ------------------------------------------------ */

/* The segment files in dir, by number, into *numbers (malloc'd, the caller's) and *count.
   0, or an errno value. */
static int list_segments(struct mqk_journal *j, uint64_t **numbers, int *count)
{
	int fd = dup(j->dir_fd);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	struct dirent *de;
	int n = 0, cap = 0;

	*numbers = NULL;
	*count = 0;
	if (d == NULL) {
		int err = errno;
		if (fd >= 0) {
			close(fd);
		}
		return err;
	}
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		char *end;
		if (len != 16 + strlen(SEGMENT_SUFFIX) || strcmp(de->d_name + 16, SEGMENT_SUFFIX)) {
			continue;
		}
		uint64_t number = strtoull(de->d_name, &end, 16);
		if (end != de->d_name + 16) {
			continue;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			uint64_t *grown = realloc(*numbers, (size_t)cap * sizeof(**numbers));
			if (grown == NULL) {
				closedir(d);
				return ENOMEM;
			}
			*numbers = grown;
		}
		(*numbers)[n++] = number;
	}
	closedir(d);
	for (int a = 1; a < n; a++) { /* insertion sort: a handful of files */
		uint64_t v = (*numbers)[a];
		int b = a - 1;
		for (; b >= 0 && (*numbers)[b] > v; b--) {
			(*numbers)[b + 1] = (*numbers)[b];
		}
		(*numbers)[b + 1] = v;
	}
	*count = n;
	return 0;
}

/* Maps an existing segment file. 0, or an errno value. */
static int map_existing(struct mqk_journal *j, uint64_t number, struct mqk_segment *s)
{
	char name[64];
	struct stat st;

	memset(s, 0, sizeof(*s));
	segment_name(name, sizeof(name), number);
	int fd = openat(j->dir_fd, name, O_RDWR | O_CLOEXEC);
	int err = 0;

	s->fd = -1; /* the map keeps the file: see zero_segment */
	if (fd < 0) {
		return errno;
	}
	if (fstat(fd, &st) != 0 || st.st_size < (off_t)sizeof(struct mqk_entry)) {
		s->size = 0;
		close(fd);
		return 0; /* empty: not a segment */
	}
	s->size = (size_t)st.st_size;
	s->map = mmap(NULL, s->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (s->map == MAP_FAILED) {
		s->map = NULL;
		err = errno;
	}
	close(fd);
	if (err != 0) {
		return err;
	}
	s->number = number;
	return 0;
}

/* The index of name in this run's routes, or MQK_ROUTE_GONE. */
static uint16_t route_index(const struct mqk_config *cfg, const char *name)
{
	for (int i = 0; i < cfg->route_count; i++) {
		if (!strcmp(cfg->routes[i].name, name)) {
			return (uint16_t)i;
		}
	}
	return MQK_ROUTE_GONE;
}

/*
 * Prepares the entries of s from position from on for the Kafka thread: state new,
 * route mapped to this run's, origin. Returns how many, or -1 (out of memory).
 */
static int64_t adopt_entries(struct mqk_journal *j, struct mqk_segment *s,
			     const struct mqk_journal_scan *scan, uint64_t from)
{
	uint16_t *map = calloc((size_t)scan->route_count + 1, sizeof(*map));
	const char *name = scan->routes;
	int64_t n = 0;

	if (map == NULL) {
		return -1;
	}
	for (int i = 0; i < scan->route_count; i++) {
		map[i] = route_index(j->cfg, name);
		name += strlen(name) + 1;
	}
	for (size_t at = ((struct mqk_entry *)s->map)->size; at < scan->end;) {
		struct mqk_entry *e = (struct mqk_entry *)(s->map + at);
		if (s->start + at >= from) {
			e->state = MQK_ENTRY_NEW;
			e->alone = 0;
			e->external = NULL;
			e->origin = s->origin;
			e->live_route = map[e->route]; /* journal__scan_image checked the index */
			n++;
		}
		at += e->size;
	}
	free(map);
	return n;
}

/*
 * The tail's position: acked if it is an entry boundary of s (or s's start), else the
 * last boundary before it (some records sent twice rather than one lost).
 */
static uint64_t boundary_at_or_before(const struct mqk_segment *s,
				      const struct mqk_journal_scan *scan, uint64_t acked)
{
	uint64_t at = s->start;

	for (size_t off = 0; off < scan->end;) {
		const struct mqk_entry *e = (const struct mqk_entry *)(s->map + off);
		if (s->start + off + e->size > acked) {
			break;
		}
		off += e->size;
		at = s->start + off;
	}
	return at;
}

static int open_state(struct mqk_journal *j, char *errstr, size_t errstr_size)
{
	struct stat st;

	j->state_fd = openat(j->dir_fd, STATE_FILE, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	if (j->state_fd < 0) {
		snprintf(errstr, errstr_size, "journal_dir: cannot open %s/%s: %s", j->dir,
			 STATE_FILE, strerror(errno));
		return -1;
	}
	if (flock(j->state_fd, LOCK_EX | LOCK_NB) != 0) {
		snprintf(errstr, errstr_size,
			 "journal_dir: %s is in use by another mosquitto (%s is locked): give each "
			 "broker its own journal_dir",
			 j->dir, STATE_FILE);
		return -1;
	}
	if (fstat(j->state_fd, &st) != 0 ||
	    (st.st_size < (off_t)sizeof(*j->state) &&
	     (errno = posix_fallocate(j->state_fd, 0, sizeof(*j->state))) != 0)) {
		snprintf(errstr, errstr_size, "journal_dir: cannot write %s/%s: %s", j->dir,
			 STATE_FILE, strerror(errno));
		return -1;
	}
	j->state =
		mmap(NULL, sizeof(*j->state), PROT_READ | PROT_WRITE, MAP_SHARED, j->state_fd, 0);
	if (j->state == MAP_FAILED) {
		j->state = NULL;
		snprintf(errstr, errstr_size, "journal_dir: cannot map %s/%s: %s", j->dir,
			 STATE_FILE, strerror(errno));
		return -1;
	}
	if (memcmp(j->state->magic, STATE_MAGIC, sizeof(STATE_MAGIC)) != 0) {
		/* New, or not ours: everything in the segments is to be sent. */
		if (j->state->magic[0] != '\0') {
			log__printf(MOSQ_LOG_WARNING,
				    "journal: %s/%s is not a journal state: every record found is "
				    "sent",
				    j->dir, STATE_FILE);
		}
		memset(j->state, 0, sizeof(*j->state));
		memcpy(j->state->magic, STATE_MAGIC, sizeof(STATE_MAGIC));
	}
	return 0;
}

/* mkdir -p, with the mode of a private directory. 0, or an errno value. */
static int make_dirs(const char *path)
{
	char buf[4096];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(buf)) {
		return ENAMETOOLONG;
	}
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p == '/') {
			*p = '\0';
			if (mkdir(buf, 0750) != 0 && errno != EEXIST) {
				return errno;
			}
			*p = '/';
		}
	}
	if (mkdir(buf, 0750) != 0 && errno != EEXIST) {
		return errno;
	}
	return 0;
}

/*
 * What to do about a journal_dir this process may not create or open (err: make_dirs's
 * or open's errno), written to hint: the user mosquitto runs the plugin as, the first
 * directory on the way that stops it, and the command that fixes the common cases. The
 * journal directory itself exists: it is given to that user. A directory on the way
 * cannot be entered: it is given to that user (the package's own parent,
 * /var/lib/mosquitto/mosquitto-kafka, made by root by hand, is the usual one). One cannot
 * be written: the journal directory is made for that user, with install -d.
 */
static void unwritable_hint(const char *dir, int err, char *hint, size_t hint_size)
{
	const struct passwd *pw = getpwuid(geteuid());
	const struct group *gr = getgrgid(getegid());
	char user[64], group[64], path[4096], blocker[4096] = "";
	struct stat st;
	bool enter = false;

	snprintf(user, sizeof(user), "%s", pw ? pw->pw_name : "?");
	snprintf(group, sizeof(group), "%s", gr ? gr->gr_name : "?");
	if (err != EACCES && err != EPERM) {
		snprintf(hint, hint_size,
			 "mosquitto runs the plugin as user %s: that user must be able to write "
			 "there",
			 user);
		return;
	}
	if (stat(dir, &st) == 0) {
		snprintf(hint, hint_size,
			 "user %s may not write in it (owner uid %u, mode %04o); as root, run: "
			 "chown -R %s:%s '%s'",
			 user, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777), user, group,
			 dir);
		return;
	}
	/* The first directory on the way that this user cannot enter, else the deepest
	   one that exists (where the next one would have to be made). */
	snprintf(path, sizeof(path), "%s", dir);
	for (char *p = path + 1;; p++) {
		char c = *p;
		if (c != '/' && c != '\0') {
			continue;
		}
		*p = '\0';
		if (stat(path, &st) != 0) {
			break;
		}
		snprintf(blocker, sizeof(blocker), "%s", path);
		if (faccessat(AT_FDCWD, path, X_OK, AT_EACCESS) != 0) {
			enter = true;
			break;
		}
		*p = c;
		if (c == '\0') {
			break;
		}
	}
	if (blocker[0] == '\0' || stat(blocker, &st) != 0) {
		snprintf(hint, hint_size, "user %s may not create it", user);
	} else if (enter) {
		snprintf(hint, hint_size,
			 "user %s may not enter '%s' (owner uid %u, mode %04o); as root, run: "
			 "chown %s:%s '%s'",
			 user, blocker, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777), user,
			 group, blocker);
	} else {
		snprintf(hint, hint_size,
			 "user %s may not create directories in '%s' (owner uid %u, mode %04o); as "
			 "root, run: install -d -o %s -g %s -m 0750 '%s'",
			 user, blocker, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777), user,
			 group, dir);
	}
}

/* Reads the segments earlier runs left. 0, or -1 with errstr. */
/* What read_segments has found so far: the replay range and its size. */
struct replay_scan {
	uint64_t acked;	   /* the state file's acknowledged position */
	uint64_t from;	   /* the first position to send again; UINT64_MAX: none yet */
	uint64_t head;	   /* where the last kept segment ends */
	uint64_t replayed; /* records to send */
	uint64_t bytes;	   /* their bytes */
};

/* What read_segment did with one segment file. */
enum segment_read {
	SEGMENT_KEPT,	   /* *s holds it, with entries to send */
	SEGMENT_SKIPPED,   /* unreadable (left alone) or nothing to send (removed) */
	SEGMENT_NO_MEMORY, /* nothing kept, *s released */
};

/* Reads segment file number into *s and adopts its entries not yet in Kafka. */
static enum segment_read read_segment(struct mqk_journal *j, uint64_t number,
				      struct replay_scan *r, struct mqk_segment *s)
{
	struct mqk_journal_scan scan;
	char name[64];
	int err;

	segment_name(name, sizeof(name), number);
	err = map_existing(j, number, s);
	if (err != 0) {
		log__printf(MOSQ_LOG_ERR, "journal: cannot read %s/%s: %s: left alone", j->dir,
			    name, strerror(err));
		unmap(s);
		return SEGMENT_SKIPPED;
	}
	if (s->map == NULL || journal__scan_image(s->map, s->size, &scan) != 0 ||
	    scan.number != number) {
		/* Never started (a spare), or not a segment: nothing in it to send. */
		drop_segment_file(j, s);
		return SEGMENT_SKIPPED;
	}
	s->start = scan.start;
	atomic_init(&s->end, scan.start + scan.end);
	if (scan.torn) {
		log__printf(MOSQ_LOG_WARNING,
			    "journal: %s/%s: the bytes at offset %zu are not a whole entry "
			    "(a crash mid-write, or damage): cut off there; the %" PRIu64
			    " entries before it are kept",
			    j->dir, name, scan.end, scan.entries);
	}
	if (scan.start + scan.end <= r->acked || scan.entries == 0) {
		drop_segment_file(j, s); /* all in Kafka already */
		return SEGMENT_SKIPPED;
	}
	if (scan.boot_us != j->origin->boot_us) {
		s->origin = malloc(sizeof(*s->origin));
		if (s->origin == NULL) {
			goto no_memory;
		}
		record__origin_init(s->origin, scan.broker_id, scan.boot_us);
		/* broker_id points into the map, which outlives the origin. */
	}
	if (r->from == UINT64_MAX) {
		r->from = r->acked > scan.start ? boundary_at_or_before(s, &scan, r->acked)
						: scan.start;
	}
	int64_t adopted = adopt_entries(j, s, &scan, r->from);
	if (adopted < 0) {
		goto no_memory;
	}
	r->replayed += (uint64_t)adopted;
	r->bytes += scan.start + scan.end - (r->from > scan.start ? r->from : scan.start);
	r->head = scan.start + scan.end;
	return SEGMENT_KEPT;

no_memory:
	unmap(s); /* frees s->origin too */
	return SEGMENT_NO_MEMORY;
}

/* Reads what earlier runs left: the segments with entries to send, in order, and the
   replay range. 0, or -1 with errstr. */
static int read_segments(struct mqk_journal *j, char *errstr, size_t errstr_size)
{
	uint64_t *numbers = NULL;
	int n = 0, err = list_segments(j, &numbers, &n);
	uint64_t acked = atomic_load(&j->state->acked);
	struct replay_scan r = {.acked = acked, .from = UINT64_MAX, .head = acked};
	uint64_t max_number = 0, count = 0;
	int rc = -1;

	if (err != 0) {
		snprintf(errstr, errstr_size, "journal_dir: cannot read %s: %s", j->dir,
			 strerror(err));
		goto out;
	}
	j->seg_cap = j->max_segments + (uint64_t)n + 2;
	j->segs = calloc(j->seg_cap, sizeof(*j->segs));
	if (j->segs == NULL) {
		goto no_memory;
	}
	for (int i = 0; i < n; i++) {
		struct mqk_segment s;
		max_number = numbers[i] > max_number ? numbers[i] : max_number;
		switch (read_segment(j, numbers[i], &r, &s)) {
		case SEGMENT_KEPT:
			*seg_at(j, count++) = s;
			break;
		case SEGMENT_SKIPPED:
			break;
		case SEGMENT_NO_MEMORY:
			goto no_memory;
		}
	}
	atomic_init(&j->first, 0);
	atomic_init(&j->last, count);
	atomic_init(&j->next_number, max_number + 1);
	j->replay_from = r.from == UINT64_MAX ? r.head : r.from;
	j->replay_to = r.head;
	j->acked = j->replay_from;
	atomic_store(&j->ctr->replayed, r.replayed);
	if (r.replayed > 0) {
		log__printf(MOSQ_LOG_NOTICE,
			    "journal: replaying %" PRIu64 " records (%" PRIu64
			    " bytes) from %s: they go to Kafka before new ones",
			    r.replayed, r.bytes, j->dir);
	}
	rc = 0;
	goto out;

no_memory:
	snprintf(errstr, errstr_size, "out of memory");
out:
	free(numbers);
	return rc;
}

struct mqk_journal *journal__open(const struct mqk_config *cfg, const struct mqk_origin *origin,
				  struct mqk_journal_counters *ctr, char *errstr,
				  size_t errstr_size)
{
	struct mqk_journal *j = calloc(1, sizeof(*j));
	int err;

	if (j == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		return NULL;
	}
	j->dir_fd = j->state_fd = -1;
	j->spare.fd = -1;
	pthread_mutex_init(&j->lock, NULL);
	j->cfg = cfg;
	j->origin = origin;
	j->ctr = ctr;
	j->fsync_ms = cfg->journal_fsync_ms;
	j->segment_size = (size_t)cfg->journal_segment_mb << 20;
	j->max_segments = (uint64_t)(cfg->journal_max_mb / cfg->journal_segment_mb);
	j->dir = strdup(cfg->journal_dir);
	if (j->dir == NULL || build_header(j) != 0) {
		snprintf(errstr, errstr_size, "out of memory");
		goto error;
	}
	err = make_dirs(j->dir);
	if (err == 0) {
		j->dir_fd = open(j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		err = j->dir_fd < 0 ? errno : 0;
	}
	if (err != 0) {
		char hint[9000];

		unwritable_hint(j->dir, err, hint, sizeof(hint));
		snprintf(errstr, errstr_size, "journal_dir: cannot create or open '%s': %s: %s",
			 j->dir, strerror(err), hint);
		goto error;
	}
	if (open_state(j, errstr, errstr_size) != 0 || read_segments(j, errstr, errstr_size) != 0) {
		goto error;
	}
	return j;
error:
	journal__close(j, UINT64_MAX);
	return NULL;
}

void journal__replay_range(const struct mqk_journal *j, uint64_t *from, uint64_t *to)
{
	*from = j->replay_from;
	*to = j->replay_to;
}

size_t journal__max_entry(const struct mqk_journal *j)
{
	return j->segment_size - j->header_len;
}

uint64_t journal__full_until(const struct mqk_journal *j)
{
	uint64_t first = atomic_load_explicit(&j->first, memory_order_relaxed);
	uint64_t last = atomic_load_explicit(&j->last, memory_order_acquire);

	if (last - first < j->max_segments || last - first < 2) {
		return 0; /* room for another segment: nothing to drop */
	}
	return j->segs[(first + 1) % j->seg_cap].start;
}

int journal__dir_fd(const struct mqk_journal *j)
{
	return j->dir_fd;
}

size_t journal__segment_count(const struct mqk_journal *j)
{
	return (size_t)(atomic_load(&j->last) - atomic_load(&j->first));
}

void journal__close(struct mqk_journal *j, uint64_t tail)
{
	if (j == NULL) {
		return;
	}
	if (j->segs != NULL) {
		uint64_t last = atomic_load(&j->last);
		if (tail != UINT64_MAX) {
			atomic_store(&j->state->acked, tail);
			release_segments(j, tail);
			/* Everything reaches the disk at a clean stop, whatever journal_fsync. */
			for (uint64_t i = atomic_load(&j->first); i < last; i++) {
				struct mqk_segment *s = seg_at(j, i);
				if (s->map != NULL && msync(s->map, s->size, MS_SYNC) != 0) {
					log__printf(MOSQ_LOG_ERR, "journal: msync failed in %s: %s",
						    j->dir, strerror(errno));
				}
			}
		}
		for (uint64_t i = atomic_load(&j->first); i < last; i++) {
			unmap(seg_at(j, i));
		}
		free(j->segs);
	}
	if (j->spare.map != NULL) {
		unmap(&j->spare);
	}
	if (j->state != NULL) {
		msync(j->state, sizeof(*j->state), MS_SYNC);
		munmap(j->state, sizeof(*j->state));
	}
	if (j->state_fd >= 0) {
		close(j->state_fd); /* and the lock with it */
	}
	if (j->dir_fd >= 0) {
		close(j->dir_fd);
	}
	pthread_mutex_destroy(&j->lock);
	free(j->header);
	free(j->dir);
	free(j);
}
