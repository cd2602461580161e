/*
 * fuzz_journal.c - libFuzzer harness of journal__scan_image (plugin/journal.c): the
 * input is the bytes of a segment file (or the start of one), as journal__open finds
 * it on disk after a crash, a full disk or damage.
 *
 * The bytes are copied to an 8-aligned buffer of exactly their size (ASan sees any read
 * past it). Besides memory errors and undefined behaviour, it checks what journal__open
 * and the Kafka thread rely on when the image has a valid header: the broker id and the
 * route names are inside the image and NUL-terminated, route_count is their number, and
 * every entry it accepted, walked from the header to `end`, is 8-aligned, whole, at its
 * own position, for a route the header names, with its checksum right; capture__read
 * of it (as the Kafka thread reads a replayed entry) gives strings and a payload inside
 * the entry, and its properties iterate inside it. The fields outside the checksum are
 * then rewritten as journal__open does (state, external, origin, live_route), and a
 * second scan must find the same. Each input is checked twice: as it is, and with every
 * entry's position and checksum made right (repair), so that mutations reach the
 * checks behind the checksum.
 *
 *   build-fuzz/tests/fuzz/fuzz_journal -max_total_time=600 tests/fuzz/corpus/journal
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "mqk.h"

static volatile unsigned sink;

/* Reads every byte of [p, p + len), which must lie inside [lo, hi). */
static void touch(const char *lo, const char *hi, const char *p, size_t len)
{
	unsigned sum = 0;

	CHECK(p >= lo && p <= hi && len <= (size_t)(hi - p));
	for (size_t i = 0; i < len; i++) {
		sum += (unsigned char)p[i];
	}
	sink += sum;
}

static void check_entry(const char *image, const struct mqk_journal_scan *scan, size_t off)
{
	struct mqk_entry *e = (struct mqk_entry *)(image + off);
	const char *lo = (const char *)e, *hi = (const char *)e + e->size;
	struct mqk_message m;

	CHECK(e->size >= sizeof(*e) && e->size % 8 == 0 && e->size <= scan->end - off);
	CHECK(e->pos == scan->start + off);
	CHECK(e->route < scan->route_count);
	CHECK(e->route != MQK_ROUTE_PAD && e->route != MQK_ROUTE_HEADER);
	/* As journal__open prepares a replayed entry for the Kafka thread. */
	e->state = MQK_ENTRY_NEW;
	e->alone = 0;
	e->external = NULL;
	e->origin = NULL;
	e->live_route = (uint16_t)(e->route ^ 0x5a5a);
	CHECK(entry__checksum(e, entry__checked_len(e)) == e->check);

	capture__read(e, &m);
	touch(lo, hi, m.topic, (size_t)e->topic_len + 1);
	CHECK(m.topic[e->topic_len] == '\0');
	touch(lo, hi, m.client_id, (size_t)e->client_id_len + 1);
	CHECK(m.client_id[e->client_id_len] == '\0');
	if (m.username != NULL) {
		touch(lo, hi, m.username, (size_t)e->username_len + 1);
		CHECK(m.username[e->username_len] == '\0');
	}
	if (m.payloadlen > 0) {
		touch(lo, hi, m.payload, m.payloadlen);
	}
	if (m.props != NULL) {
		const char *cursor = m.props, *end = m.props + m.props_len;
		const char *name, *value;
		uint32_t name_len, value_len;
		int id, n = 0;

		touch(lo, hi, m.props, m.props_len);
		while (capture__next_prop(&cursor, end, &id, &name, &name_len, &value,
					  &value_len)) {
			if (name != NULL) {
				touch(m.props, end, name, name_len);
			}
			touch(m.props, end, value, value_len);
			CHECK(cursor > m.props && cursor <= end);
			CHECK(++n <= (int)m.props_len); /* each takes 9 bytes at least */
		}
	}
}

/*
 * Random bytes almost never carry a right XXH3: so that the fuzzer also explores what
 * lies behind the checksum (lengths, NULs, routes, sizes), the second pass gives every
 * entry, chained by its size from the start, its own position and a right checksum,
 * wherever the bytes it covers are inside the image.
 */
static void repair(char *image, size_t len)
{
	uint64_t start = 0;

	for (size_t off = 0; len - off >= sizeof(struct mqk_entry);) {
		struct mqk_entry *e = (struct mqk_entry *)(image + off);
		uint64_t checked;

		if (e->size < sizeof(*e) || e->size % 8 != 0 || e->size > len - off) {
			break;
		}
		if (off == 0) {
			start = e->pos;
		} else {
			e->pos = start + off;
		}
		checked = (uint64_t)(sizeof(*e) - offsetof(struct mqk_entry, pos)) + e->topic_len +
			  e->client_id_len + e->username_len + 3 + e->props_len + e->payload_len;
		if (checked <= len - off - offsetof(struct mqk_entry, pos)) {
			e->check = entry__checksum(e, (size_t)checked);
		}
		off += e->size;
	}
}

static void check_image(char *image, size_t size)
{
	struct mqk_journal_scan scan, again;

	if (journal__scan_image(image, size, &scan) == 0) {
		const struct mqk_entry *h = (const struct mqk_entry *)image;
		const char *hi = image + size;
		uint64_t n = 0;
		size_t off;

		CHECK(h->route == MQK_ROUTE_HEADER);
		CHECK(scan.start == h->pos && scan.number == h->seq);
		CHECK(scan.end >= h->size && scan.end <= size && scan.end % 8 == 0);
		/* The broker id and route names: NUL-terminated, inside the header. */
		touch(image, hi, scan.broker_id, strlen(scan.broker_id) + 1);
		CHECK(scan.broker_id + strlen(scan.broker_id) < image + h->size);
		touch(image, image + h->size, scan.routes, scan.routes_len);
		CHECK(scan.routes_len == 0 || scan.routes[scan.routes_len - 1] == '\0');
		int names = 0;
		for (size_t i = 0; i < scan.routes_len; i++) {
			names += scan.routes[i] == '\0';
		}
		CHECK(names == scan.route_count);
		for (off = h->size; off < scan.end;
		     off += ((struct mqk_entry *)(image + off))->size) {
			check_entry(image, &scan, off);
			n++;
		}
		CHECK(off == scan.end);
		CHECK(n == scan.entries);
		/* The fields journal__open rewrote are outside the checksum: the same result. */
		CHECK(journal__scan_image(image, size, &again) == 0);
		CHECK(again.end == scan.end && again.entries == scan.entries &&
		      again.torn == scan.torn && again.number == scan.number &&
		      again.start == scan.start && again.route_count == scan.route_count);
	} else {
		/* No header: nothing of it is used. */
		CHECK(scan.entries == 0 && scan.end == 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* malloc's memory is 16-aligned; at least 1 byte so that it is never NULL. */
	char *image = malloc(size ? size : 1);

	if (image == NULL) {
		return 0;
	}
	CHECK((uintptr_t)image % 8 == 0);
	memcpy(image, data, size);
	check_image(image, size);
	memcpy(image, data, size);
	repair(image, size);
	check_image(image, size);
	free(image);
	return 0;
}
