/*
 * test_journal.c - durability journal (journal.c, and buffer.c in a journal): real
 * segment files in a mkdtemp directory.
 *
 * journal__open on an empty (missing) directory; thousands of entries written through
 * capture__message across several 1 MiB segments, read back with buffer__peek /
 * capture__read / buffer__release; journal__housekeeping giving passed segments back
 * (files deleted, one kept as the spare); journal__close and a reopen that replays
 * exactly what was not released, in order, with journal_replayed counted and each
 * entry's route mapped by name to the new run's routes (renamed, removed:
 * MQK_ROUTE_GONE); an unclean stop (all replayed); a torn tail (bytes overwritten, a
 * size too large, a truncated file, garbage after the last entry, in the last segment or
 * one before it) cut off with the entries before it kept; a recycled segment's older
 * lap not replayed; a foreign journal.state (all replayed); a full journal
 * (journal__next_segment NULL at journal_max_mb) and room again once released; a second
 * journal__open of the same directory refused ('in use'); a directory that cannot be
 * made; journal__scan_image on hand-made images; a sync (journal_fsync 1 ms) that takes
 * the pages it writes back out of the process's page tables (/proc/self/smaps Rss) and
 * loses none of their bytes.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pwd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <mosquitto.h>
#include <mosquitto_broker.h>

#include "fake_broker.h"
#include "mqk.h"

#define HEADER_TOPIC "mosquitto-kafka journal 1" /* journal.c's */
/* Segment files are numbered from 1 in an empty directory. */
#define FIRST_SEGMENT "0000000000000001.mqkj"
#define BOOT_1 INT64_C(1763900000000001)
#define BOOT_2 INT64_C(1763900000000002)

static char base[64]; /* the mkdtemp directory */
static char dir[128]; /* journal_dir: base/j, made by journal__open */
static struct mqk_route routes[3];
static struct mqk_config cfg;
static struct mqk_origin origin;
static struct mqk_journal_counters ctr;
static struct mqk_buffer b;
static struct mqk_journal *j;

static void use_routes(const char *a, const char *b_, const char *c)
{
	const char *names[3] = {a, b_, c};

	cfg.route_count = 0;
	for (int i = 0; i < 3 && names[i]; i++) {
		routes[i].name = (char *)names[i];
		cfg.route_count++;
	}
}

static int setup(void **state)
{
	(void)state;
	fake_broker_reset();
	fake_tempdir(base, sizeof(base), "test-journal");
	snprintf(dir, sizeof(dir), "%s/j", base);
	memset(&cfg, 0, sizeof(cfg));
	memset(routes, 0, sizeof(routes));
	memset(&ctr, 0, sizeof(ctr));
	memset(&b, 0, sizeof(b));
	b.wake_fd = -1;
	cfg.broker_id = (char *)"b-test";
	cfg.routes = routes;
	use_routes("alpha", "beta", "gamma");
	cfg.durability = MQK_DURABILITY_JOURNAL;
	cfg.journal_dir = dir;
	cfg.journal_fsync_ms = -1; /* never: the tests need no disk writes */
	cfg.journal_max_mb = 16;
	cfg.journal_segment_mb = 1;
	record__origin_init(&origin, cfg.broker_id, BOOT_1);
	j = NULL;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (j != NULL) {
		journal__close(j, UINT64_MAX);
		j = NULL;
	}
	if (b.wake_fd >= 0) {
		buffer__free(&b);
	}
	fake_tempdir_remove(base);
	fake_broker_reset();
	return 0;
}

static int64_t monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t aligned(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

/* The segment files (*.mqkj) in dir. */
static int count_segment_files(void)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		n += len > 5 && !strcmp(de->d_name + len - 5, ".mqkj");
	}
	closedir(d);
	return n;
}

static bool file_exists(const char *name)
{
	char path[256];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return stat(path, &st) == 0;
}

/* Opens the journal of cfg (asserting success) and the buffer in it. */
static void open_journal(void)
{
	char errstr[512] = "";

	j = journal__open(&cfg, &origin, &ctr, errstr, sizeof(errstr));
	if (j == NULL) {
		fail_msg("journal__open: %s", errstr);
	}
	assert_int_equal(buffer__init_journal(&b, j), 0);
}

/* Closes the journal with everything released so far acknowledged. */
static void close_journal(void)
{
	journal__close(j, atomic_load(&b.tail));
	j = NULL;
	buffer__free(&b);
}

/* A deterministic byte of entry seq's payload. */
static char pattern(uint64_t seq, size_t i)
{
	return (char)((seq * 131 + i * 7 + (i >> 8)) & 0xff);
}

/* capture__message of message seq for route, payload of len bytes. Returns its code. */
static int put(uint64_t seq, int route, size_t len)
{
	char topic[64], client[32];
	char *payload = malloc(len ? len : 1);
	struct mqk_message m = {
		.topic = topic,
		.client_id = client,
		.username = seq % 3 == 0 ? NULL : "user",
		.payload = len ? payload : NULL,
		.payloadlen = (uint32_t)len,
		.qos = (uint8_t)(seq % 3),
		.retain = seq % 5 == 0,
		.timestamp_ms = 1763912345678 + (int64_t)seq,
	};
	int rc;

	assert_non_null(payload);
	snprintf(topic, sizeof(topic), "sensors/%" PRIu64 "/data", seq);
	snprintf(client, sizeof(client), "dev-%" PRIu64, seq % 17);
	for (size_t i = 0; i < len; i++) {
		payload[i] = pattern(seq, i);
	}
	rc = capture__message(&b, route, seq, &m);
	free(payload);
	return rc;
}

/* Asserts that e holds message seq (as put wrote it) for the writing run's route. */
static void check_entry(const struct mqk_entry *e, uint64_t seq, int route)
{
	struct mqk_message m;
	char topic[64], client[32];

	assert_non_null(e);
	if (e->seq != seq) {
		fail_msg("entry seq %" PRIu64 ", expected %" PRIu64, e->seq, seq);
	}
	assert_int_equal(e->route, route);
	assert_int_equal(e->state, MQK_ENTRY_NEW);
	assert_null(e->external);
	capture__read(e, &m);
	snprintf(topic, sizeof(topic), "sensors/%" PRIu64 "/data", seq);
	snprintf(client, sizeof(client), "dev-%" PRIu64, seq % 17);
	assert_string_equal(m.topic, topic);
	assert_string_equal(m.client_id, client);
	if (seq % 3 == 0) {
		assert_null(m.username);
	} else {
		assert_string_equal(m.username, "user");
	}
	assert_int_equal(m.qos, seq % 3);
	assert_int_equal(m.retain, seq % 5 == 0);
	assert_int_equal(m.timestamp_ms, 1763912345678 + (int64_t)seq);
	for (size_t i = 0; i < m.payloadlen; i++) {
		if (((const char *)m.payload)[i] != pattern(seq, i)) {
			fail_msg("entry %" PRIu64 ": payload byte %zu differs", seq, i);
		}
	}
}

/* Takes the oldest entry: it is seq; released. Returns it (still mapped). */
static struct mqk_entry *take(uint64_t seq, int route)
{
	struct mqk_entry *e = buffer__peek(&b);

	check_entry(e, seq, route);
	buffer__release(&b, e);
	return e;
}

/* ---- open, write, read, give back, reopen ---------------------------------------- */

static void test_open_empty(void **state)
{
	uint64_t from = 1, to = 2;
	struct stat st;

	(void)state;
	/* The directory does not exist yet: made. */
	assert_int_equal(stat(dir, &st), -1);
	open_journal();
	assert_int_equal(stat(dir, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_true(file_exists("journal.state"));
	journal__replay_range(j, &from, &to);
	assert_int_equal(from, 0);
	assert_int_equal(to, 0);
	assert_int_equal(atomic_load(&ctr.replayed), 0);
	assert_int_equal(atomic_load(&ctr.errors), 0);
	assert_int_equal(journal__segment_count(j), 0);
	assert_int_equal(count_segment_files(), 0);
	assert_true(buffer__is_empty(&b));
	assert_null(buffer__peek(&b));
	/* An entry takes a segment at most, less its header. */
	assert_true(journal__max_entry(j) < ((size_t)1 << 20));
	assert_true(journal__max_entry(j) > ((size_t)1 << 20) - 4096);
	assert_int_equal(b.max_entry, journal__max_entry(j));
	assert_false(journal__sync_always(j));
	/* Nothing logged: no replay. */
	assert_null(fake_log_find("journal:"));
	close_journal();
	/* Opened again: still nothing. */
	open_journal();
	journal__replay_range(j, &from, &to);
	assert_int_equal(to - from, 0);
	assert_int_equal(atomic_load(&ctr.replayed), 0);
	close_journal();
}

static void test_write_read_reopen(void **state)
{
	const uint64_t total = 4000, first_read = 2500, more = 200;
	uint64_t from, to, tail_at_close, head_at_close;
	size_t segments;
	int routes_of[3] = {0, 1, 2};

	(void)state;
	open_journal();
	/* ~1.1 KiB entries in 1 MiB segments: about 930 a segment. */
	for (uint64_t seq = 0; seq < total; seq++) {
		assert_int_equal(put(seq, routes_of[seq % 3], 1000 + seq % 64), 0);
	}
	segments = journal__segment_count(j);
	print_message("%" PRIu64 " entries in %zu segments\n", total, segments);
	assert_true(segments >= 4);
	/* Mosquitto's thread made each itself (no housekeeping ran): no spare yet. */
	assert_int_equal(count_segment_files(), (int)segments);
	assert_true(file_exists(FIRST_SEGMENT));
	assert_int_equal(atomic_load(&ctr.errors), 0);

	/* Read back in order, positions growing, this run's own entries. */
	uint64_t last_pos = 0;
	for (uint64_t seq = 0; seq < first_read; seq++) {
		struct mqk_entry *e = take(seq, routes_of[seq % 3]);
		assert_true(seq == 0 || e->pos > last_pos);
		last_pos = e->pos;
		assert_int_equal(e->live_route, e->route);
		assert_null(e->origin);
	}
	/* The Kafka thread's round: segments passed are given back, one kept as the spare. */
	journal__housekeeping(j, atomic_load(&b.tail), atomic_load(&b.head), monotonic_ms());
	size_t left = journal__segment_count(j);
	assert_true(left < segments);
	assert_true(left >= 2);
	assert_int_equal(count_segment_files(), (int)left + 1);
	assert_false(file_exists(FIRST_SEGMENT));
	/* Again: nothing more to give back, the spare is still one. */
	journal__housekeeping(j, atomic_load(&b.tail), atomic_load(&b.head), monotonic_ms());
	assert_int_equal(journal__segment_count(j), left);
	assert_int_equal(count_segment_files(), (int)left + 1);

	/* More entries, then a clean stop with first_read released. */
	for (uint64_t seq = total; seq < total + more; seq++) {
		assert_int_equal(put(seq, routes_of[seq % 3], 1000), 0);
	}
	tail_at_close = atomic_load(&b.tail);
	head_at_close = atomic_load(&b.head);
	close_journal();

	/* The next run: gamma first, alpha second, beta gone; another boot. */
	use_routes("gamma", "alpha", NULL);
	record__origin_init(&origin, "b-test", BOOT_2);
	fake_broker_reset();
	open_journal();
	journal__replay_range(j, &from, &to);
	assert_int_equal(from, tail_at_close);
	assert_int_equal(to, head_at_close);
	assert_int_equal(atomic_load(&ctr.replayed), total + more - first_read);
	char line[256];
	snprintf(line, sizeof(line),
		 "journal: replaying %" PRIu64 " records (%" PRIu64 " bytes) from %s",
		 total + more - first_read, to - from, dir);
	if (fake_log_find(line) == NULL) {
		fail_msg("no log line '%s'", line);
	}
	assert_null(fake_log_find("cut off"));
	assert_int_equal(atomic_load(&b.head), to);
	assert_int_equal(atomic_load(&b.tail), from);

	static const uint16_t live[3] = {1, MQK_ROUTE_GONE, 0}; /* alpha, beta, gamma */
	uint64_t gone = 0;
	for (uint64_t seq = first_read; seq < total + more; seq++) {
		struct mqk_entry *e = buffer__peek(&b);
		check_entry(e, seq, routes_of[seq % 3]);
		assert_int_equal(e->live_route, live[e->route]);
		gone += e->live_route == MQK_ROUTE_GONE;
		/* Written by the earlier run: its origin says so. */
		assert_non_null(e->origin);
		assert_int_equal(e->origin->boot_us, BOOT_1);
		assert_string_equal(e->origin->broker_id, "b-test");
		buffer__release(&b, e);
	}
	assert_int_equal(gone, (total + more - first_read + 2) / 3);
	assert_null(buffer__peek(&b));

	/* New entries of this run come after, in a segment of this run. */
	for (uint64_t seq = 10000; seq < 10010; seq++) {
		assert_int_equal(put(seq, (int)(seq % 2), 100), 0);
	}
	for (uint64_t seq = 10000; seq < 10010; seq++) {
		struct mqk_entry *e = take(seq, (int)(seq % 2));
		assert_int_equal(e->live_route, e->route);
		assert_null(e->origin);
		assert_true(e->pos >= to);
	}
	journal__housekeeping(j, atomic_load(&b.tail), atomic_load(&b.head), monotonic_ms());
	assert_int_equal(journal__segment_count(j), 1);
	close_journal();

	/* Everything was released: nothing to replay, and no segment file is kept. */
	fake_broker_reset();
	open_journal();
	journal__replay_range(j, &from, &to);
	assert_int_equal(from, to);
	assert_int_equal(atomic_load(&ctr.replayed), 0);
	assert_null(fake_log_find("replaying"));
	assert_int_equal(count_segment_files(), 0);
	assert_null(buffer__peek(&b));
	close_journal();
}

/* An unclean stop: closed with UINT64_MAX (nothing recorded), all is replayed. */
static void test_unclean_stop_replays_all(void **state)
{
	uint64_t from, to;

	(void)state;
	open_journal();
	for (uint64_t seq = 0; seq < 100; seq++) {
		assert_int_equal(put(seq, 2, 300), 0);
	}
	/* Taken but never acknowledged in journal.state (no housekeeping, no clean close). */
	for (uint64_t seq = 0; seq < 40; seq++) {
		take(seq, 2);
	}
	journal__close(j, UINT64_MAX);
	j = NULL;
	buffer__free(&b);

	open_journal();
	journal__replay_range(j, &from, &to);
	assert_int_equal(atomic_load(&ctr.replayed), 100);
	for (uint64_t seq = 0; seq < 100; seq++) {
		struct mqk_entry *e = take(seq, 2);
		assert_int_equal(e->live_route, 2);
	}
	assert_null(buffer__peek(&b));
	close_journal();
}

/* ---- torn tails ----------------------------------------------------------------------- */

/* The byte offsets of the first n entries in the first segment file (after its header). */
static void entry_offsets(size_t *offsets, int n, size_t *end)
{
	char path[256];
	char *img = aligned_alloc(8, (size_t)1 << 20);
	int fd;
	size_t off;

	assert_non_null(img);
	snprintf(path, sizeof(path), "%s/" FIRST_SEGMENT, dir);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, img, (size_t)1 << 20, 0), (ssize_t)1 << 20);
	close(fd);
	off = ((struct mqk_entry *)img)->size;
	for (int i = 0; i < n; i++) {
		offsets[i] = off;
		off += ((struct mqk_entry *)(img + off))->size;
	}
	*end = off;
	free(img);
}

/* Writes n entries and stops cleanly with none released. */
static void write_unreleased(int n)
{
	open_journal();
	for (int seq = 0; seq < n; seq++) {
		assert_int_equal(put((uint64_t)seq, seq % 3, 200 + (size_t)seq), 0);
	}
	close_journal();
	assert_int_equal(count_segment_files(), 1);
}

static void damage(off_t at, const void *bytes, size_t len)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/" FIRST_SEGMENT, dir);
	fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, bytes, len, at), (ssize_t)len);
	close(fd);
}

/* Reopens: `kept` entries (0 .. kept-1) replayed; a cut logged at `cut` (or none). */
static void reopen_expect(uint64_t kept, long cut)
{
	char line[512];

	fake_broker_reset();
	open_journal();
	assert_int_equal(atomic_load(&ctr.replayed), kept);
	if (cut >= 0) {
		snprintf(line, sizeof(line),
			 "journal: %s/" FIRST_SEGMENT ": the bytes at offset %ld are not a "
			 "whole entry (a crash mid-write, or damage): cut off there; the %" PRIu64
			 " entries before it are kept",
			 dir, cut, kept);
		if (fake_log_find(line) == NULL) {
			fail_msg("no log line '%s'", line);
		}
		assert_int_equal(fake_log_find(line)->level, MOSQ_LOG_WARNING);
	} else {
		assert_null(fake_log_find("cut off"));
	}
	for (uint64_t seq = 0; seq < kept; seq++) {
		take(seq, (int)(seq % 3));
	}
	assert_null(buffer__peek(&b));
	/* The next entry goes after what was kept, and reads back. */
	assert_int_equal(put(777, 1, 10), 0);
	take(777, 1);
	close_journal();
}

static void test_torn_overwritten(void **state)
{
	size_t offs[50], end;
	const char junk[] = "\x13\x37garbage";

	(void)state;
	write_unreleased(50);
	entry_offsets(offs, 50, &end);
	/* Bytes inside entry 30's payload changed: its checksum fails; 0..29 kept. */
	damage((off_t)offs[30] + (off_t)sizeof(struct mqk_entry) + 40, junk, sizeof(junk) - 1);
	reopen_expect(30, (long)offs[30]);
}

static void test_torn_header_fields(void **state)
{
	size_t offs[50], end;
	uint32_t big = 1u << 30;

	(void)state;
	write_unreleased(50);
	entry_offsets(offs, 50, &end);
	/* Entry 12's size says more than the file holds: 0..11 kept. */
	damage((off_t)offs[12], &big, sizeof(big));
	reopen_expect(12, (long)offs[12]);
}

static void test_torn_truncated(void **state)
{
	size_t offs[50], end;
	char path[256];

	(void)state;
	write_unreleased(50);
	entry_offsets(offs, 50, &end);
	/* The file ends in the middle of entry 45 (a short file: not recycled later). */
	snprintf(path, sizeof(path), "%s/" FIRST_SEGMENT, dir);
	assert_int_equal(truncate(path, (off_t)offs[45] + 100), 0);
	reopen_expect(45, (long)offs[45]);
}

static void test_torn_garbage_appended(void **state)
{
	size_t offs[50], end;
	char junk[300];

	(void)state;
	write_unreleased(50);
	entry_offsets(offs, 50, &end);
	for (size_t i = 0; i < sizeof(junk); i++) {
		junk[i] = (char)(i * 37 + 11);
	}
	/* All 50 kept; what follows the last is cut. */
	damage((off_t)end, junk, sizeof(junk));
	reopen_expect(50, (long)end);
}

/*
 * A torn tail in a segment that is not the last (damage): the entries after the cut in
 * that segment are lost, those of the later segments are kept, and the reader passes
 * the gap in positions.
 */
static void test_torn_middle_segment(void **state)
{
	const uint64_t total = 2500;
	size_t offs[101], end;
	char path[256];
	char *img = aligned_alloc(8, (size_t)1 << 20);
	struct mqk_journal_scan scan;
	int fd;

	(void)state;
	assert_non_null(img);
	open_journal();
	for (uint64_t seq = 0; seq < total; seq++) {
		assert_int_equal(put(seq, (int)(seq % 3), 1000), 0);
	}
	assert_int_equal(journal__segment_count(j), 3);
	close_journal();
	snprintf(path, sizeof(path), "%s/" FIRST_SEGMENT, dir);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, img, (size_t)1 << 20, 0), (ssize_t)1 << 20);
	close(fd);
	assert_int_equal(journal__scan_image(img, (size_t)1 << 20, &scan), 0);
	uint64_t in_first = scan.entries;
	free(img);
	assert_true(in_first > 900 && in_first < 1000);

	entry_offsets(offs, 101, &end);
	damage((off_t)offs[100] + 200, "\xff", 1);
	fake_broker_reset();
	open_journal();
	assert_int_equal(atomic_load(&ctr.replayed), 100 + total - in_first);
	assert_non_null(fake_log_find("cut off there; the 100 entries before it are kept"));
	for (uint64_t seq = 0; seq < 100; seq++) {
		take(seq, (int)(seq % 3));
	}
	for (uint64_t seq = in_first; seq < total; seq++) {
		take(seq, (int)(seq % 3));
	}
	assert_null(buffer__peek(&b));
	assert_int_equal(put(5555, 2, 10), 0);
	take(5555, 2);
	close_journal();
	fake_broker_reset();
	open_journal();
	assert_int_equal(atomic_load(&ctr.replayed), 0);
	assert_int_equal(count_segment_files(), 0);
	close_journal();
}

static void test_zeros_after_last_entry_not_torn(void **state)
{
	size_t offs[50], end;

	(void)state;
	write_unreleased(50);
	entry_offsets(offs, 50, &end);
	/* The rest of the file is zeros (never written): a clean end, nothing logged. */
	reopen_expect(50, -1);
}

/*
 * A recycled segment (the spare, renamed): its new entries are followed by an older
 * lap's bytes. Reopened, exactly the unreleased entries are replayed, the older lap's
 * are not.
 */
static void test_recycled_segment(void **state)
{
	uint64_t seq = 0, first_new;
	struct mqk_segment *s;

	(void)state;
	cfg.journal_max_mb = 4;
	open_journal();
	assert_int_equal(put(seq++, 0, 1000), 0);
	s = b.wseg;
	uint64_t first_number = s->number;
	while (b.wseg->number == first_number) {
		assert_int_equal(put(seq++, 1, 1000), 0);
	}
	uint64_t second_number = b.wseg->number;
	for (uint64_t t = 0; t < seq; t++) {
		take(t, t == 0 ? 0 : 1);
	}
	/* The first segment passed: kept as the spare, renamed. */
	journal__housekeeping(j, atomic_load(&b.tail), atomic_load(&b.head), monotonic_ms());
	assert_int_equal(journal__segment_count(j), 1);
	assert_int_equal(count_segment_files(), 2);
	/* Fill the second; the next is the recycled first, holding its old entries. */
	first_new = seq;
	while (b.wseg->number == second_number) {
		assert_int_equal(put(seq, 2, 1000 + seq % 50), 0);
		seq++;
	}
	assert_int_equal(count_segment_files(), 2);
	assert_int_equal(put(seq++, 0, 20), 0);
	assert_int_equal(put(seq++, 1, 3), 0);
	uint64_t unreleased = seq - first_new;
	close_journal();

	fake_broker_reset();
	open_journal();
	assert_int_equal(atomic_load(&ctr.replayed), unreleased);
	for (uint64_t t = first_new; t < seq - 2; t++) {
		take(t, 2);
	}
	take(seq - 2, 0);
	take(seq - 1, 1);
	assert_null(buffer__peek(&b));
	/* A recycled segment is zeroed: its older lap is not taken for a torn tail. */
	assert_null(fake_log_find("cut off"));
	close_journal();
}

/* ---- full, locked, unwritable ---------------------------------------------------- */

static void test_full(void **state)
{
	uint64_t seq = 0, head;
	int rc;

	(void)state;
	cfg.journal_max_mb = 2; /* two segments of 1 MiB */
	open_journal();
	/* Larger than a segment: could never fit. */
	assert_int_equal(put(99999, 0, (size_t)1 << 20), -3);
	while ((rc = put(seq, 0, 4000)) == 0) {
		seq++;
	}
	assert_int_equal(rc, -1);
	print_message("full after %" PRIu64 " entries of 4000 bytes\n", seq);
	assert_true(seq > 400 && seq < 530);
	assert_int_equal(journal__segment_count(j), 2);
	assert_int_equal(count_segment_files(), 2);
	/* At journal_max_mb: no next segment, and that is not an error. */
	head = b.head_local;
	assert_null(journal__next_segment(j, b.wseg, &head));
	assert_int_equal(head, b.head_local);
	assert_int_equal(atomic_load(&ctr.errors), 0);
	/* Still full: refused again, nothing changed. */
	assert_int_equal(put(seq, 0, 4000), -1);
	/* drop_oldest's question: yes, the tail is in the oldest segment. */
	assert_true(journal__full_until(j) > 0);
	assert_true(buffer__nearly_full(&b));

	/* The oldest segment's entries released and given back: room again. */
	uint64_t until = journal__full_until(j), taken = 0;
	while (b.tail_local < until) {
		take(taken++, 0);
	}
	journal__housekeeping(j, atomic_load(&b.tail), atomic_load(&b.head), monotonic_ms());
	assert_int_equal(journal__segment_count(j), 1);
	assert_int_equal(journal__full_until(j), 0);
	assert_false(buffer__nearly_full(&b));
	assert_int_equal(put(seq, 0, 4000), 0);
	assert_int_equal(journal__segment_count(j), 2);
	/* The spare was used: the directory holds the two in use. */
	assert_int_equal(count_segment_files(), 2);
	for (uint64_t s = taken; s <= seq; s++) {
		take(s, 0);
	}
	assert_null(buffer__peek(&b));
	assert_int_equal(atomic_load(&ctr.errors), 0);
	close_journal();
}

static void test_second_open_refused(void **state)
{
	struct mqk_journal_counters ctr2 = {0};
	char errstr[512] = "", want[512];

	(void)state;
	open_journal();
	assert_null(journal__open(&cfg, &origin, &ctr2, errstr, sizeof(errstr)));
	snprintf(want, sizeof(want),
		 "journal_dir: %s is in use by another mosquitto (journal.state is locked): give "
		 "each broker its own journal_dir",
		 dir);
	assert_string_equal(errstr, want);
	/* The first one is unharmed. */
	assert_int_equal(put(1, 0, 10), 0);
	take(1, 0);
	close_journal();
	/* Free again once closed. */
	open_journal();
	close_journal();
}

static void test_unwritable_dir(void **state)
{
	char file[128], errstr[512] = "", want[768];
	int fd;

	(void)state;
	/* A path under a regular file cannot be a directory (root or not). */
	snprintf(file, sizeof(file), "%s/a-file", base);
	fd = open(file, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);
	snprintf(dir, sizeof(dir), "%s/a-file/j", base);
	assert_null(journal__open(&cfg, &origin, &ctr, errstr, sizeof(errstr)));
	snprintf(want, sizeof(want),
		 "journal_dir: cannot create or open '%s': Not a directory: mosquitto runs the "
		 "plugin as user %s: that user must be able to write there",
		 dir, getpwuid(geteuid())->pw_name);
	assert_string_equal(errstr, want);

	if (geteuid() != 0) { /* root writes anywhere: only for others */
		char ro[128];
		snprintf(ro, sizeof(ro), "%s/ro", base);
		assert_int_equal(mkdir(ro, 0500), 0);
		snprintf(dir, sizeof(dir), "%s/ro/j", base);
		assert_null(journal__open(&cfg, &origin, &ctr, errstr, sizeof(errstr)));
		assert_non_null(strstr(errstr, "Permission denied"));
		chmod(ro, 0700);
	}
	snprintf(dir, sizeof(dir), "%s/j", base);
}

static void test_foreign_state_file(void **state)
{
	char path[256];
	int fd;

	(void)state;
	open_journal();
	for (uint64_t seq = 0; seq < 10; seq++) {
		assert_int_equal(put(seq, (int)(seq % 3), 50), 0);
	}
	for (uint64_t seq = 0; seq < 4; seq++) {
		take(seq, (int)(seq % 3));
	}
	close_journal(); /* 4 acknowledged */
	/* journal.state overwritten: not ours, so every record found is sent again. */
	snprintf(path, sizeof(path), "%s/journal.state", dir);
	fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "something else entirely", 23, 0), 23);
	close(fd);
	fake_broker_reset();
	open_journal();
	assert_non_null(fake_log_find("journal.state is not a journal state: every record found "
				      "is sent"));
	assert_int_equal(atomic_load(&ctr.replayed), 10);
	for (uint64_t seq = 0; seq < 10; seq++) {
		take(seq, (int)(seq % 3));
	}
	close_journal();
}

/* ---- journal__scan_image on hand-made images ---------------------------------------- */

static uint64_t img_words[8192]; /* 64 KiB, 8-aligned */
#define IMG ((char *)img_words)

/*
 * Writes an entry at IMG + off, for position pos, its checksum right. Returns its size.
 * username NULL: "" without the flag; props: props_len bytes.
 */
static size_t craft(size_t off, uint64_t pos, uint16_t route, const char *topic, const char *client,
		    const char *props, size_t props_len, const char *payload, size_t payload_len)
{
	struct mqk_entry *e = (struct mqk_entry *)(IMG + off);
	size_t tl = strlen(topic), cl = strlen(client);
	size_t size = aligned(sizeof(*e) + tl + cl + 3 + props_len + payload_len);
	char *p;

	memset(e, 0, size);
	e->size = (uint32_t)size;
	e->route = route;
	e->pos = pos;
	e->seq = pos * 10;
	e->topic_len = (uint32_t)tl;
	e->client_id_len = (uint32_t)cl;
	e->props_len = (uint32_t)props_len;
	e->payload_len = (uint32_t)payload_len;
	p = e->data;
	memcpy(p, topic, tl + 1);
	p += tl + 1;
	memcpy(p, client, cl + 1);
	p += cl + 2; /* empty username */
	memcpy(p, props, props_len);
	p += props_len;
	memcpy(p, payload, payload_len);
	e->check = entry__checksum(e, entry__checked_len(e));
	return size;
}

/* A segment header at offset 0: number, start, broker "b-x", routes "r0", "r1", "r2". */
static size_t craft_header(uint64_t number, uint64_t start)
{
	static const char routes_list[] = "r0\0r1\0r2"; /* with its final NUL: 9 bytes */
	size_t size = craft(0, start, MQK_ROUTE_HEADER, HEADER_TOPIC, "b-x", routes_list,
			    sizeof(routes_list), "", 0);
	struct mqk_entry *h = (struct mqk_entry *)IMG;

	h->seq = number;
	h->timestamp_ms = BOOT_1;
	h->check = entry__checksum(h, entry__checked_len(h));
	return size;
}

static const char payload_bytes[64] = "0123456789abcdefghijklmnopqrstuvwxyz";

static void recheck(size_t off)
{
	struct mqk_entry *e = (struct mqk_entry *)(IMG + off);
	e->check = entry__checksum(e, entry__checked_len(e));
}

static void test_scan_no_header(void **state)
{
	struct mqk_journal_scan scan;

	(void)state;
	memset(img_words, 0, sizeof(img_words));
	/* Zeros: a spare never started. */
	assert_int_equal(journal__scan_image(IMG, sizeof(img_words), &scan), -1);
	/* Shorter than an entry header. */
	craft_header(1, 0);
	assert_int_equal(journal__scan_image(IMG, sizeof(struct mqk_entry) - 1, &scan), -1);
	assert_int_equal(journal__scan_image(IMG, 0, &scan), -1);
	/* Shorter than the header entry. */
	assert_int_equal(journal__scan_image(IMG, ((struct mqk_entry *)IMG)->size - 8, &scan), -1);
	/* Misaligned. */
	memmove(IMG + 4, IMG, 4096);
	assert_int_equal(journal__scan_image(IMG + 4, 4096, &scan), -1);
	/* A whole entry, but not a header: a route, or another topic. */
	memset(img_words, 0, sizeof(img_words));
	craft(0, 0, 1, HEADER_TOPIC, "b-x", "r0", 3, "", 0);
	assert_int_equal(journal__scan_image(IMG, sizeof(img_words), &scan), -1);
	memset(img_words, 0, sizeof(img_words));
	craft(0, 0, MQK_ROUTE_HEADER, "mosquitto-kafka journal 2", "b-x", "r0", 3, "", 0);
	assert_int_equal(journal__scan_image(IMG, sizeof(img_words), &scan), -1);
	/* A header with a wrong checksum. */
	memset(img_words, 0, sizeof(img_words));
	craft_header(1, 0);
	((struct mqk_entry *)IMG)->check ^= 1;
	assert_int_equal(journal__scan_image(IMG, sizeof(img_words), &scan), -1);
	/* Route names not NUL-terminated. */
	memset(img_words, 0, sizeof(img_words));
	craft(0, 0, MQK_ROUTE_HEADER, HEADER_TOPIC, "b-x", "r0\0r1", 5, "", 0);
	assert_int_equal(journal__scan_image(IMG, sizeof(img_words), &scan), -1);
}

static void test_scan_entries(void **state)
{
	struct mqk_journal_scan scan;
	const uint64_t start = 1 << 20;
	size_t off, offs[4];

	(void)state;
	memset(img_words, 0, sizeof(img_words));
	off = craft_header(7, start);
	/* The header alone. */
	assert_int_equal(journal__scan_image(IMG, sizeof(img_words), &scan), 0);
	assert_int_equal(scan.number, 7);
	assert_int_equal(scan.start, start);
	assert_int_equal(scan.boot_us, BOOT_1);
	assert_string_equal(scan.broker_id, "b-x");
	assert_int_equal(scan.route_count, 3);
	assert_int_equal(scan.routes_len, 9);
	assert_memory_equal(scan.routes, "r0\0r1\0r2", 9);
	assert_int_equal(scan.end, off);
	assert_int_equal(scan.entries, 0);
	assert_false(scan.torn);
	/* The header exactly fills the image. */
	assert_int_equal(journal__scan_image(IMG, off, &scan), 0);
	assert_int_equal(scan.end, off);
	assert_false(scan.torn);

	/* Four entries, each at its own position, routes 0..2. */
	for (int i = 0; i < 4; i++) {
		offs[i] = off;
		off += craft(off, start + off, (uint16_t)(i % 3), "a/b", "c", "", 0, payload_bytes,
			     (size_t)i * 5);
	}
	assert_int_equal(journal__scan_image(IMG, sizeof(img_words), &scan), 0);
	assert_int_equal(scan.entries, 4);
	assert_int_equal(scan.end, off);
	assert_false(scan.torn);
	/* The image ends exactly after the last. */
	assert_int_equal(journal__scan_image(IMG, off, &scan), 0);
	assert_int_equal(scan.entries, 4);
	assert_false(scan.torn);
	/* The image ends inside the last: three, and the rest is torn. */
	assert_int_equal(journal__scan_image(IMG, off - 8, &scan), 0);
	assert_int_equal(scan.entries, 3);
	assert_int_equal(scan.end, offs[3]);
	assert_true(scan.torn);

	/* The Kafka thread's fields are outside the checksum: rewriting them is fine. */
	struct mqk_entry *e = (struct mqk_entry *)(IMG + offs[1]);
	e->state = MQK_ENTRY_SETTLED;
	e->live_route = 2;
	e->alone = 1;
	assert_int_equal(journal__scan_image(IMG, sizeof(img_words), &scan), 0);
	assert_int_equal(scan.entries, 4);
	/* A byte of a payload changed: cut there. */
	e = (struct mqk_entry *)(IMG + offs[2]);
	e->data[e->topic_len + 4] ^= 0x20;
	assert_int_equal(journal__scan_image(IMG, sizeof(img_words), &scan), 0);
	assert_int_equal(scan.entries, 2);
	assert_int_equal(scan.end, offs[2]);
	assert_true(scan.torn);
	e->data[e->topic_len + 4] ^= 0x20;
	/* The checked fields: seq, flags. */
	e->seq++;
	assert_int_equal(journal__scan_image(IMG, sizeof(img_words), &scan), 0);
	assert_int_equal(scan.entries, 2);
	e->seq--;
	e->flags ^= MQK_ENTRY_RETAIN;
	assert_int_equal(journal__scan_image(IMG, sizeof(img_words), &scan), 0);
	assert_int_equal(scan.entries, 2);
	e->flags ^= MQK_ENTRY_RETAIN;
	assert_int_equal(journal__scan_image(IMG, sizeof(img_words), &scan), 0);
	assert_int_equal(scan.entries, 4);

	/* A route the header does not name: cut. */
	e->route = 3;
	recheck(offs[2]);
	assert_int_equal(journal__scan_image(IMG, sizeof(img_words), &scan), 0);
	assert_int_equal(scan.entries, 2);
	assert_true(scan.torn);
	/* A size not 8-aligned, or smaller than an entry header. */
	e->route = 2;
	e->size += 4;
	recheck(offs[2]);
	assert_int_equal(journal__scan_image(IMG, sizeof(img_words), &scan), 0);
	assert_int_equal(scan.entries, 2);
	e->size = 8;
	recheck(offs[2]);
	assert_int_equal(journal__scan_image(IMG, sizeof(img_words), &scan), 0);
	assert_int_equal(scan.entries, 2);
	e->size = (uint32_t)(offs[3] - offs[2]);
	/* Lengths that say more than the entry holds. */
	e->payload_len += 64;
	recheck(offs[2]);
	assert_int_equal(journal__scan_image(IMG, sizeof(img_words), &scan), 0);
	assert_int_equal(scan.entries, 2);
	e->payload_len -= 64;
	/* The topic's NUL missing. */
	e->data[e->topic_len] = 'x';
	recheck(offs[2]);
	assert_int_equal(journal__scan_image(IMG, sizeof(img_words), &scan), 0);
	assert_int_equal(scan.entries, 2);
	e->data[e->topic_len] = '\0';
	recheck(offs[2]);
	assert_int_equal(journal__scan_image(IMG, sizeof(img_words), &scan), 0);
	assert_int_equal(scan.entries, 4);

	/* At the wrong position (a later one): torn. */
	e->pos += 8;
	recheck(offs[2]);
	assert_int_equal(journal__scan_image(IMG, sizeof(img_words), &scan), 0);
	assert_int_equal(scan.entries, 2);
	assert_true(scan.torn);
	/* An older lap's entry (a recycled file): a clean end, not torn. */
	e->pos = offs[2] + start - (1 << 20);
	recheck(offs[2]);
	assert_int_equal(journal__scan_image(IMG, sizeof(img_words), &scan), 0);
	assert_int_equal(scan.entries, 2);
	assert_int_equal(scan.end, offs[2]);
	assert_false(scan.torn);
	/* ... but an older lap's entry that is not whole is torn. */
	e->data[0] ^= 1;
	assert_int_equal(journal__scan_image(IMG, sizeof(img_words), &scan), 0);
	assert_true(scan.torn);
	e->data[0] ^= 1;
	e->pos = start + offs[2];
	recheck(offs[2]);

	/* After the last entry: zeros are a clean end, anything else torn. */
	assert_int_equal(journal__scan_image(IMG, sizeof(img_words), &scan), 0);
	assert_false(scan.torn);
	IMG[off + sizeof(struct mqk_entry) - 1] = 1;
	assert_int_equal(journal__scan_image(IMG, sizeof(img_words), &scan), 0);
	assert_int_equal(scan.entries, 4);
	assert_int_equal(scan.end, off);
	assert_true(scan.torn);
	/* A few non-zero bytes at the very end of the image, after the last entry. */
	IMG[off + sizeof(struct mqk_entry) - 1] = 0;
	IMG[off + 3] = 1;
	assert_int_equal(journal__scan_image(IMG, off + 8, &scan), 0);
	assert_int_equal(scan.entries, 4);
	assert_true(scan.torn);
}

/* ---- a sync takes the written pages out of the page tables ------------------------- */

/* Rss (bytes) of this process's mapping that holds addr (/proc/self/smaps), or -1. */
static long mapped_bytes(const void *addr)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	bool inside = false;
	long rss = -1;

	assert_non_null(f);
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned long lo, hi;
		long kb;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) { /* a mapping's first line */
			inside = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
		} else if (inside && sscanf(line, "Rss: %ld kB", &kb) == 1) {
			rss = kb * 1024;
			break;
		}
	}
	fclose(f);
	return rss;
}

/*
 * Writing back a page mapped writable makes the kernel flush the TLB of every core running
 * one of the process's threads (mosquitto's among them): journal.c unmaps the pages before
 * it syncs them. 6 MiB written into an 8 MiB segment, then one housekeeping round with
 * journal_fsync 1: the 6 MiB leave the mapping (the 2 MiB after the head are faulted in
 * for mosquitto's thread), and every entry reads back whole through the page cache.
 */
static void test_sync_unmaps_written_pages(void **state)
{
	const uint64_t total = 6000; /* ~1.1 KiB each */
	const long page = sysconf(_SC_PAGESIZE);

	(void)state;
	cfg.journal_fsync_ms = 1;
	cfg.journal_segment_mb = 8;
	open_journal();
	for (uint64_t seq = 0; seq < total; seq++) {
		assert_int_equal(put(seq, 0, 1000), 0);
	}
	assert_int_equal(journal__segment_count(j), 1);
	const struct mqk_entry *first = buffer__peek(&b);
	uint64_t written = atomic_load(&b.head) - first->pos;
	long before = mapped_bytes(first);
	print_message("%" PRIu64 " bytes written, %ld mapped before the sync\n", written, before);
	assert_true(before >= (long)written - page);

	journal__housekeeping(j, atomic_load(&b.tail), atomic_load(&b.head), monotonic_ms());
	long after = mapped_bytes(first);
	long ahead = (8l << 20) - (long)(atomic_load(&b.head) - first->pos); /* fault_ahead's */
	print_message("%ld mapped after it (%ld of them after the head)\n", after, ahead);
	assert_int_equal(atomic_load(&ctr.errors), 0);
	assert_true(after <= ahead + 3 * page);

	/* Nothing lost: each entry faults back in from the page cache, whole. */
	for (uint64_t seq = 0; seq < total; seq++) {
		take(seq, 0);
	}
	assert_null(buffer__peek(&b));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_open_empty),
		T(test_write_read_reopen),
		T(test_unclean_stop_replays_all),
		T(test_torn_overwritten),
		T(test_torn_header_fields),
		T(test_torn_truncated),
		T(test_torn_garbage_appended),
		T(test_torn_middle_segment),
		T(test_zeros_after_last_entry_not_torn),
		T(test_recycled_segment),
		T(test_full),
		T(test_second_open_refused),
		T(test_unwritable_dir),
		T(test_foreign_state_file),
		T(test_scan_no_header),
		T(test_scan_entries),
		T(test_sync_unmaps_written_pages),
#undef T
	};
	return cmocka_run_group_tests_name("journal", tests, NULL, NULL);
}
