/*
 * mqk-example-consumer.c - the smallest reader of mosquitto-kafka's records, to copy.
 *
 * Reads a Kafka topic the plugin produces to and prints one line per record: the MQTT
 * client id, topic and QoS (Kafka headers, include/mosquitto_kafka.h) and the payload,
 * tab-separated, the payload with bytes outside printable ASCII as \xNN:
 *
 *   ue-00042	devices/ue-00042/data	1	hello
 *
 * In the plugin's raw format the record's value is the payload; with format=json (-j) the
 * value is an envelope and the payload its "payload" field (or "payload_base64", printed
 * as it is). Built by CMake; by hand:
 *
 *   cc -o mqk-example-consumer mqk-example-consumer.c \
 *      $(pkg-config --cflags --libs rdkafka libcjson)
 *   mqk-example-consumer -b 127.0.0.1:9092 -t sensors [-g GROUP] [-n COUNT] [-j]
 *
 * It joins consumer group GROUP (default mqk-example-consumer), starts at the earliest
 * offset when the group has none, and stops after COUNT records (default: never) or on
 * SIGINT/SIGTERM.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <librdkafka/rdkafka.h>

#include <mosquitto_kafka.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

/* Prints len bytes at p, each outside printable ASCII (and the backslash) as \xNN. */
static void print_bytes(const void *p, size_t len)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < len; i++) {
		if (b[i] >= 0x20 && b[i] < 0x7f && b[i] != '\\') {
			putchar(b[i]);
		} else {
			printf("\\x%02x", b[i]);
		}
	}
}

/* Prints the value of header name, or "-" when the record has none. */
static void print_header(rd_kafka_headers_t *hdrs, const char *name)
{
	const void *value;
	size_t size;

	if (hdrs != NULL &&
	    rd_kafka_header_get_last(hdrs, name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR) {
		print_bytes(value, size);
	} else {
		putchar('-');
	}
}

/* The payload: the value itself, or the envelope's payload field (json). */
static void print_payload(const rd_kafka_message_t *rkm, int json)
{
	if (!json) {
		print_bytes(rkm->payload, rkm->len);
		return;
	}
	cJSON *env = cJSON_ParseWithLength(rkm->payload, rkm->len);
	const cJSON *text = cJSON_GetObjectItemCaseSensitive(env, MQK_ENV_PAYLOAD);
	const cJSON *b64 = cJSON_GetObjectItemCaseSensitive(env, MQK_ENV_PAYLOAD_BASE64);
	if (cJSON_IsString(text)) {
		print_bytes(text->valuestring, strlen(text->valuestring));
	} else if (cJSON_IsString(b64)) {
		printf("base64:%s", b64->valuestring);
	} else {
		printf("(not an envelope)");
	}
	cJSON_Delete(env);
}

int main(int argc, char **argv)
{
	const char *bootstrap = NULL, *topic = NULL, *group = "mqk-example-consumer";
	long count = -1, seen = 0;
	int json = 0, c;
	char err[512];

	while ((c = getopt(argc, argv, "b:t:g:n:j")) != -1) {
		if (c == 'b') {
			bootstrap = optarg;
		} else if (c == 't') {
			topic = optarg;
		} else if (c == 'g') {
			group = optarg;
		} else if (c == 'n') {
			count = atol(optarg);
		} else if (c == 'j') {
			json = 1;
		} else {
			return 1; /* getopt said why */
		}
	}
	if (bootstrap == NULL || topic == NULL) {
		fprintf(stderr, "usage: %s -b BOOTSTRAP -t TOPIC [-g GROUP] [-n COUNT] [-j]\n",
			argv[0]);
		return 1;
	}

	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err)) ||
	    rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err)) ||
	    rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", err, sizeof(err))) {
		fprintf(stderr, "%s: %s\n", argv[0], err);
		rd_kafka_conf_destroy(conf);
		return 1;
	}
	/* rd_kafka_new owns conf from here on success. */
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
	if (rk == NULL) {
		fprintf(stderr, "%s: %s\n", argv[0], err);
		rd_kafka_conf_destroy(conf);
		return 1;
	}
	rd_kafka_poll_set_consumer(rk);
	rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(topics, topic, RD_KAFKA_PARTITION_UA);
	rd_kafka_resp_err_t rc = rd_kafka_subscribe(rk, topics);
	rd_kafka_topic_partition_list_destroy(topics);
	if (rc) {
		fprintf(stderr, "%s: subscribe %s: %s\n", argv[0], topic, rd_kafka_err2str(rc));
		rd_kafka_destroy(rk);
		return 1;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	while (!stop && seen != count) {
		rd_kafka_message_t *rkm = rd_kafka_consumer_poll(rk, 500);
		if (rkm == NULL) {
			continue;
		}
		if (rkm->err) {
			fprintf(stderr, "%s: %s\n", argv[0], rd_kafka_message_errstr(rkm));
		} else {
			rd_kafka_headers_t *hdrs = NULL;
			rd_kafka_message_headers(rkm, &hdrs); /* hdrs stays rkm's */
			print_header(hdrs, MQK_HDR_CLIENT_ID);
			putchar('\t');
			print_header(hdrs, MQK_HDR_TOPIC);
			putchar('\t');
			print_header(hdrs, MQK_HDR_QOS);
			putchar('\t');
			print_payload(rkm, json);
			putchar('\n');
			fflush(stdout);
			seen++;
		}
		rd_kafka_message_destroy(rkm);
	}
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	return 0;
}
