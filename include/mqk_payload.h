/*
 * mqk_payload.h - the payload mqk-loadgen publishes, and how to decode it.
 *
 * Every simulated device publishes messages that carry who sent them, their place in
 * the device's sequence and when they were sent, so that any consumer (mqk-controller,
 * a Kafka Streams job, a test) can count loss, duplicates, reordering and latency
 * without knowing anything else about the run. Header only, C99, no dependencies:
 * copy it next to your consumer if you like.
 *
 * Layout, integers big-endian (network order):
 *
 *   offset  size  field
 *   0       2     magic, the bytes 'M' 'Q'
 *   2       1     version, MQK_PAYLOAD_VERSION (1)
 *   3       1     device id length L (1..255 bytes)
 *   4       8     sequence number: the device's messages are numbered from 0 with no gaps
 *   12      8     send time, microseconds since the Unix epoch (CLOCK_REALTIME)
 *   20      L     device id (the MQTT client id), not NUL-terminated
 *   20+L    ...   trailer: zero bytes up to the requested payload size (data), or the
 *                 command's id (an answer, see below); ignore it unless you pair answers
 *
 * A payload shorter than 20+L bytes, or with another magic or version, is not one of
 * these: mqk_payload_decode() says so and the consumer counts it as foreign.
 *
 * A command answer (a device's reply to a control command, see mqk-loadgen(1)) is a
 * payload of the answering device whose sequence number counts the commands it has
 * answered, from 0, whose send time is when it answered, and whose trailer is the
 * command's id: its MQTT v5 correlation data when it had some, else the whole command
 * payload. A controller pairs an answer with its command by that trailer, in MQTT and
 * in Kafka (where the plugin also carries correlation data as mqtt.correlation_data).
 */
#ifndef MQK_PAYLOAD_H
#define MQK_PAYLOAD_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define MQK_PAYLOAD_VERSION 1
#define MQK_PAYLOAD_HEADER 20 /* bytes before the device id */
#define MQK_PAYLOAD_MAX_DEVICE 255

/* A decoded payload. device and trailer point into the buffer that was decoded. */
struct mqk_payload {
	const char *device;
	size_t device_len;
	uint64_t seq;
	uint64_t sent_us;
	const void *trailer;
	size_t trailer_len;
};

/* The smallest payload that carries a device id of device_len bytes. */
static inline size_t mqk_payload_min_size(size_t device_len)
{
	return MQK_PAYLOAD_HEADER + device_len;
}

static inline void mqk_payload__put64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (unsigned char)(v & 0xff);
		v >>= 8;
	}
}

static inline uint64_t mqk_payload__get64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++) {
		v = (v << 8) | p[i];
	}
	return v;
}

/*
 * Writes a data payload (trailer of zero bytes) of max(size, mqk_payload_min_size(device_len))
 * bytes into buf. Returns the number of bytes written, or 0 (nothing written) when the device id is
 * empty or longer than MQK_PAYLOAD_MAX_DEVICE, or when buf is smaller than that.
 */
static inline size_t mqk_payload_encode(void *buf, size_t bufsize, const char *device,
					size_t device_len, uint64_t seq, uint64_t sent_us,
					size_t size)
{
	unsigned char *p = (unsigned char *)buf;
	size_t need = mqk_payload_min_size(device_len);

	if (device_len == 0 || device_len > MQK_PAYLOAD_MAX_DEVICE) {
		return 0;
	}
	if (size < need) {
		size = need;
	}
	if (bufsize < size) {
		return 0;
	}
	p[0] = 'M';
	p[1] = 'Q';
	p[2] = MQK_PAYLOAD_VERSION;
	p[3] = (unsigned char)device_len;
	mqk_payload__put64(p + 4, seq);
	mqk_payload__put64(p + 12, sent_us);
	memcpy(p + MQK_PAYLOAD_HEADER, device, device_len);
	memset(p + need, 0, size - need);
	return size;
}

/*
 * Decodes len bytes at buf into *out. Returns 0, or -1 (out untouched) when they are
 * not an mqk-loadgen payload of this version.
 */
static inline int mqk_payload_decode(const void *buf, size_t len, struct mqk_payload *out)
{
	const unsigned char *p = (const unsigned char *)buf;

	if (buf == NULL || len < MQK_PAYLOAD_HEADER || p[0] != 'M' || p[1] != 'Q' ||
	    p[2] != MQK_PAYLOAD_VERSION || p[3] == 0 || len < mqk_payload_min_size(p[3])) {
		return -1;
	}
	out->device_len = p[3];
	out->device = (const char *)(p + MQK_PAYLOAD_HEADER);
	out->seq = mqk_payload__get64(p + 4);
	out->sent_us = mqk_payload__get64(p + 12);
	out->trailer = p + mqk_payload_min_size(p[3]);
	out->trailer_len = len - mqk_payload_min_size(p[3]);
	return 0;
}

/*
 * Writes an answer: a payload whose trailer is the id_len bytes at id. Returns its
 * size, or 0 (nothing written) as mqk_payload_encode() does when it does not fit.
 */
static inline size_t mqk_payload_encode_answer(void *buf, size_t bufsize, const char *device,
					       size_t device_len, uint64_t seq, uint64_t sent_us,
					       const void *id, size_t id_len)
{
	size_t head = mqk_payload_min_size(device_len);

	if (bufsize < head || id_len > bufsize - head ||
	    mqk_payload_encode(buf, bufsize, device, device_len, seq, sent_us, head) == 0) {
		return 0;
	}
	if (id_len > 0) {
		memcpy((unsigned char *)buf + head, id, id_len);
	}
	return head + id_len;
}

#endif
