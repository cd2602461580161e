/*
 * test_payload.c - mqk-loadgen's payload codec (include/mqk_payload.h): round trips,
 * the exact bytes of the documented layout, padding, answers, and everything that must
 * be refused (short, foreign, other version, empty or too long device ids, small buffers).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <mqk_payload.h>

static void test_layout(void **state)
{
	unsigned char buf[64];
	static const unsigned char expected[] = {
		'M',  'Q',  1,    4,                            /* magic, version, id length */
		0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, /* seq */
		0x00, 0x05, 0xf0, 0x00, 0x00, 0x00, 0x00, 0x2a, /* sent_us */
		'u',  'e',  '-',  '1',                          /* device */
		0,    0,    0,    0,                            /* padding to 28 */
	};

	(void)state;
	memset(buf, 0xee, sizeof(buf));
	size_t n = mqk_payload_encode(buf, sizeof(buf), "ue-1", 4, 0x0102030405060708ULL,
				      0x0005f0000000002aULL, 28);
	assert_int_equal(n, 28);
	assert_memory_equal(buf, expected, sizeof(expected));
	assert_int_equal(buf[28], 0xee); /* nothing written past the size */
}

static void test_round_trip(void **state)
{
	unsigned char buf[300];
	struct mqk_payload p;
	char id[MQK_PAYLOAD_MAX_DEVICE];

	(void)state;
	memset(id, 'x', sizeof(id));
	uint64_t values[] = {0, 1, 255, 256, UINT32_MAX, (uint64_t)UINT32_MAX + 1, UINT64_MAX};
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		size_t n = mqk_payload_encode(buf, sizeof(buf), id, sizeof(id), values[i],
					      UINT64_MAX - values[i], 0);
		assert_int_equal(n, MQK_PAYLOAD_HEADER + sizeof(id)); /* size 0: the minimum */
		assert_int_equal(mqk_payload_decode(buf, n, &p), 0);
		assert_int_equal(p.seq, values[i]);
		assert_int_equal(p.sent_us, UINT64_MAX - values[i]);
		assert_int_equal(p.device_len, sizeof(id));
		assert_memory_equal(p.device, id, sizeof(id));
		assert_int_equal(p.trailer_len, 0);
	}
	/* Padding is ignored by the decoder but reported as the trailer. */
	size_t n = mqk_payload_encode(buf, sizeof(buf), "d", 1, 7, 9, 100);
	assert_int_equal(n, 100);
	assert_int_equal(mqk_payload_decode(buf, n, &p), 0);
	assert_int_equal(p.seq, 7);
	assert_int_equal(p.trailer_len, 100 - 21);
}

static void test_refused_encode(void **state)
{
	unsigned char buf[64];
	char longid[MQK_PAYLOAD_MAX_DEVICE + 1];

	(void)state;
	memset(longid, 'y', sizeof(longid));
	assert_int_equal(mqk_payload_encode(buf, sizeof(buf), "", 0, 1, 1, 30), 0);
	assert_int_equal(mqk_payload_encode(buf, sizeof(buf), longid, sizeof(longid), 1, 1, 0), 0);
	assert_int_equal(mqk_payload_encode(buf, 23, "ue-1", 4, 1, 1, 0), 0); /* needs 24 */
	assert_int_equal(mqk_payload_encode(buf, 24, "ue-1", 4, 1, 1, 0), 24);
	assert_int_equal(mqk_payload_encode(buf, sizeof(buf), "ue-1", 4, 1, 1, 65), 0);
}

static void test_refused_decode(void **state)
{
	unsigned char buf[64];
	struct mqk_payload p = {.seq = 12345};

	(void)state;
	size_t n = mqk_payload_encode(buf, sizeof(buf), "ue-1", 4, 1, 1, 0);
	assert_int_equal(mqk_payload_decode(NULL, 0, &p), -1);
	assert_int_equal(mqk_payload_decode(buf, n - 1, &p), -1); /* device id cut */
	assert_int_equal(mqk_payload_decode(buf, MQK_PAYLOAD_HEADER - 1, &p), -1);
	assert_int_equal(mqk_payload_decode("hello world, this is not it", 27, &p), -1);
	buf[2] = 2; /* another version */
	assert_int_equal(mqk_payload_decode(buf, n, &p), -1);
	buf[2] = 1;
	buf[3] = 0; /* empty device id */
	assert_int_equal(mqk_payload_decode(buf, n, &p), -1);
	buf[3] = 4;
	buf[1] = 'X';
	assert_int_equal(mqk_payload_decode(buf, n, &p), -1);
	assert_int_equal(p.seq, 12345); /* untouched by every refusal */
}

static void test_answer(void **state)
{
	unsigned char buf[64];
	struct mqk_payload p;

	(void)state;
	size_t n = mqk_payload_encode_answer(buf, sizeof(buf), "ue-7", 4, 3, 99, "cid-1", 5);
	assert_int_equal(n, 24 + 5);
	assert_int_equal(mqk_payload_decode(buf, n, &p), 0);
	assert_int_equal(p.seq, 3);
	assert_int_equal(p.sent_us, 99);
	assert_int_equal(p.trailer_len, 5);
	assert_memory_equal(p.trailer, "cid-1", 5);
	/* An empty id is a valid answer; one that does not fit is refused. */
	assert_int_equal(mqk_payload_encode_answer(buf, sizeof(buf), "ue-7", 4, 0, 0, "", 0), 24);
	assert_int_equal(mqk_payload_encode_answer(buf, 28, "ue-7", 4, 0, 0, "cid-1", 5), 0);
	assert_int_equal(mqk_payload_encode_answer(buf, 10, "ue-7", 4, 0, 0, "c", 1), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout),         cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_refused_encode), cmocka_unit_test(test_refused_decode),
		cmocka_unit_test(test_answer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
