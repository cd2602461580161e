/*
 * inbound_publish.c - on the TICK, inbound records to every MQTT subscriber.
 *
 * Mosquitto's thread. For each record the inbound thread queued (inbound.c), in queue
 * order: its expanded topic is checked (mosquitto_pub_topic_check, UTF-8, not $...),
 * then mosquitto_broker_publish() with client id NULL queues it for every matching
 * subscription, with the route's QoS and retain flag (a retained one replaces the topic's
 * retained message, as a client's would). A record whose topic is not valid, or could
 * not be expanded (no key, no such header), is skipped: counted, and logged at most every
 * 10 s with its route, Kafka topic, partition, offset and the cause. Either way it is
 * marked settled, and the inbound thread stores its offset.
 *
 * mosquitto 2.0 raises no MOSQ_EVT_MESSAGE for what a plugin publishes, so an outbound
 * route (even "#") never sends these back to Kafka (test_inbound.py checks it).
 */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>

#include "mqk.h"

/* The cause of a topic that mosquitto would refuse, or NULL. */
static const char *bad_topic(const char *topic)
{
	size_t len = strlen(topic);

	if (len == 0) {
		return "empty topic";
	}
	if (len > 65535) {
		return "topic too long";
	}
	if (topic[0] == '$') {
		return "topic starts with '$'";
	}
	if (strpbrk(topic, "+#") != NULL) {
		return "'+' or '#' in the topic";
	}
	if (mosquitto_validate_utf8(topic, (int)len) != MOSQ_ERR_SUCCESS) {
		return "topic not valid UTF-8";
	}
	if (mosquitto_pub_topic_check(topic) != MOSQ_ERR_SUCCESS) {
		return "not a valid MQTT topic";
	}
	return NULL;
}

size_t inbound__tick(struct mqk_handoff *h, const struct mqk_inbound_config *ic,
		     struct mqk_inbound_counters *ctr, size_t max)
{
	static struct mqk_ratelimit rl_skipped; /* mosquitto's thread's */
	size_t count;
	struct mqk_command *cmd;

	atomic_fetch_add_explicit(&h->ticks, 1, memory_order_relaxed);
	cmd = handoff__take(h, max, &count);

	for (size_t i = 0; i < count; i++) {
		/* Read before the state is set: from then on the inbound thread may free it. */
		struct mqk_command *next = i + 1 < count ? cmd->next : NULL;
		struct mqk_inbound_msg *m = (struct mqk_inbound_msg *)cmd;
		const rd_kafka_message_t *rkm = cmd->rkm;
		const struct mqk_inbound_route *r = m->route >= 0 ? &ic->routes[m->route] : NULL;
		const char *cause = cmd->reason ? cmd->reason : bad_topic(cmd->topic);

		/* inbound.c gives a record no route only with a reason ("no inbound route for
		   its topic"), so one without a cause has its route. */
		assert(r != NULL || cmd->reason != NULL);
		if (cause == NULL) {
			/* The payload stays the record's: mosquitto gets a copy. */
			if (deliver__publish(NULL, cmd->topic, rkm->len, rkm->payload, r->qos,
					     r->retain, NULL) == MOSQ_ERR_SUCCESS) {
				counter__inc(&ctr->published);
			} else {
				cause = "publish failed (out of memory?)";
			}
		}
		if (cause != NULL) {
			counter__inc(&ctr->skipped);
			log__ratelimited(&rl_skipped, MOSQ_LOG_WARNING,
					 "inbound route %s: record %s [%d] offset %lld not "
					 "published: %s (topic '%.200s')",
					 r ? r->name : "?", rd_kafka_topic_name(rkm->rkt),
					 (int)rkm->partition, (long long)rkm->offset, cause,
					 cmd->topic);
		}
		atomic_store_explicit(&cmd->state, MQK_CMD_DONE, memory_order_release);
		cmd = next;
	}
	if (count > 0) {
		handoff__signal(h); /* the inbound thread stores the offsets */
	}
	return count;
}
