/*
 * producer_defaults.h - the librdkafka settings the plugin's producer starts from, before
 * plugin_opt_profile's and the user's kafka.* ones (producer.c). bench/floor.c measures
 * librdkafka alone with the same table.
 */
#ifndef MQK_PRODUCER_DEFAULTS_H
#define MQK_PRODUCER_DEFAULTS_H

static const struct {
	const char *name;
	const char *value;
} mqk_producer_defaults[] = {
	{"enable.idempotence", "true"},
	{"message.timeout.ms", "0"},
	{"partitioner", "murmur2_random"},
	{"linger.ms", "5"},
	/*
	 * One ProduceRequest in flight per broker. With librdkafka 2.0.2's default of 5 (the
	 * most idempotence allows), 6 of ~40 runs of test_forwarding on a freshly created
	 * topic lost the first record of a partition although its delivery report said
	 * success (the high watermark one short); with 1, 0 of 14 (docs/journal.md).
	 */
	{"max.in.flight.requests.per.connection", "1"},
	/*
	 * A record in librdkafka's queue costs ~1.3 KB (its message, the payload's copy and a
	 * dozen header allocations); the same record waiting in the buffer ~350 bytes, in one
	 * piece. 100,000 (librdkafka's default) held 140 MB through a Kafka outage. The depth
	 * also sets the CPU per record: the Kafka thread allocates a record's headers, the
	 * broker thread reads them to build the request, the delivery report frees them, and
	 * the deeper the queue the colder they are by then. 10,000 cost ~2 µs more per record
	 * than 2,000 at mosquitto's full ingest, and delivered no more to a real Kafka of 1 or
	 * 3 nodes here (bench/README.md, "What a forwarded record costs"). The rest wait in
	 * the buffer, in order.
	 */
	{"queue.buffering.max.messages", "2000"},
};

#define MQK_PRODUCER_DEFAULT_COUNT (sizeof(mqk_producer_defaults) / sizeof(mqk_producer_defaults[0]))

#endif
