/*
 * queue.c - the received messages waiting to be produced, oldest first.
 *
 * on_message() (mqtt.c) cannot keep libmosquitto's message: it is freed when the
 * callback returns. So each message is copied here, one allocation for the node and its
 * topic and one for the payload, which librdkafka can take over without a second copy
 * (RD_KAFKA_MSG_F_FREE). Only the main thread touches the queue: no lock.
 */
#include <stdlib.h>
#include <string.h>

#include "hybrid.h"

int queue__push(struct queue *q, const char *topic, const void *payload, size_t len)
{
	size_t tlen = strlen(topic);
	struct qmsg *m = malloc(sizeof(*m) + tlen + 1);

	if (m == NULL) {
		return -1;
	}
	m->next = NULL;
	m->len = len;
	m->payload = NULL;
	if (len > 0) {
		m->payload = malloc(len);
		if (m->payload == NULL) {
			free(m);
			return -1;
		}
		memcpy(m->payload, payload, len);
	}
	memcpy(m->topic, topic, tlen + 1);
	if (q->tail) {
		q->tail->next = m;
	} else {
		q->head = m;
	}
	q->tail = m;
	q->n++;
	return 0;
}

struct qmsg *queue__pop(struct queue *q)
{
	struct qmsg *m = q->head;

	if (m == NULL) {
		return NULL;
	}
	q->head = m->next;
	if (q->head == NULL) {
		q->tail = NULL;
	}
	q->n--;
	m->next = NULL;
	return m;
}

void queue__unpop(struct queue *q, struct qmsg *m)
{
	m->next = q->head;
	q->head = m;
	if (q->tail == NULL) {
		q->tail = m;
	}
	q->n++;
}

void qmsg__free(struct qmsg *m)
{
	if (m) {
		free(m->payload);
		free(m);
	}
}

size_t queue__clear(struct queue *q)
{
	size_t n = 0;
	struct qmsg *m;

	while ((m = queue__pop(q)) != NULL) {
		qmsg__free(m);
		n++;
	}
	return n;
}
