/*
 * handoff.c - the queue between the commands thread and mosquitto's thread.
 *
 * The commands thread appends each command record it consumed; mosquitto's thread,
 * on the TICK, takes the ones it has not seen (handoff__take) and settles each: the
 * command was handed to mosquitto, skipped, or has to go back to Kafka. The commands
 * thread releases settled commands from the head, in Kafka order, and only then stores
 * their offsets: a command leaves the queue, and its offset is committed, only when
 * nothing is left to do for it or for any command before it.
 *
 * One rule keeps the two threads apart: after handoff__push only mosquitto's thread
 * changes a command's state from MQK_CMD_QUEUED, after it has read the command's
 * ->next; from then on the command is the commands thread's again. Even a command that
 * is dead on arrival (no target) passes through mosquitto's thread that way.
 *
 * The same lock guards the presence events mosquitto's thread leaves for the commands
 * thread. Either side wakes the commands thread through wake_fd, an eventfd that
 * librdkafka's queues write to as well.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mqk.h"

int handoff__init(struct mqk_handoff *h)
{
	memset(h, 0, sizeof(*h));
	/* Shared with mosquitto's thread, which writes it (side.c). */
	h->wake_fd = side__eventfd();
	if (h->wake_fd < 0) {
		return -1;
	}
	if (pthread_mutex_init(&h->lock, NULL) != 0) {
		close(h->wake_fd);
		h->wake_fd = -1;
		return -1;
	}
	return 0;
}

void handoff__free(struct mqk_handoff *h)
{
	struct mqk_command *cmd = h->head;
	struct mqk_presence_event *ev = h->events;

	while (cmd != NULL) {
		struct mqk_command *next = cmd->next;
		if (cmd->rkm != NULL) {
			rd_kafka_message_destroy(cmd->rkm);
		}
		free(cmd);
		cmd = next;
	}
	while (ev != NULL) {
		struct mqk_presence_event *next = ev->next;
		free(ev);
		ev = next;
	}
	if (h->wake_fd >= 0) {
		close(h->wake_fd);
		pthread_mutex_destroy(&h->lock);
	}
	memset(h, 0, sizeof(*h));
	h->wake_fd = -1;
}

bool handoff__push(struct mqk_handoff *h, struct mqk_command *cmd)
{
	bool wake;

	cmd->next = NULL;
	pthread_mutex_lock(&h->lock);
	if (h->tail != NULL) {
		h->tail->next = cmd;
	} else {
		h->head = cmd;
	}
	h->tail = cmd;
	h->count++;
	/* Only the first command since the last TICK needs a wake-up. */
	wake = h->next == NULL;
	if (h->next == NULL) {
		h->next = cmd;
		atomic_store_explicit(&h->pending, true, memory_order_release);
	}
	pthread_mutex_unlock(&h->lock);
	return wake;
}

struct mqk_command *handoff__take(struct mqk_handoff *h, size_t max, size_t *count)
{
	struct mqk_command *first, *cmd;
	size_t n = 0;

	*count = 0;
	if (!atomic_load_explicit(&h->pending, memory_order_acquire)) {
		return NULL;
	}
	pthread_mutex_lock(&h->lock);
	first = cmd = h->next;
	while (cmd != NULL && n < max) {
		n++;
		cmd = cmd->next;
	}
	h->next = cmd;
	atomic_store_explicit(&h->pending, cmd != NULL, memory_order_release);
	pthread_mutex_unlock(&h->lock);
	*count = n;
	return first;
}

void handoff__signal(struct mqk_handoff *h)
{
	uint64_t one = 1;
	ssize_t rc = write(h->wake_fd, &one, sizeof(one));
	(void)rc; /* EAGAIN: the counter is already non-zero, the thread will wake */
}

struct mqk_command *handoff__head(struct mqk_handoff *h)
{
	struct mqk_command *head;

	pthread_mutex_lock(&h->lock);
	head = h->head;
	pthread_mutex_unlock(&h->lock);
	return head;
}

struct mqk_command *handoff__pop(struct mqk_handoff *h)
{
	struct mqk_command *head;

	pthread_mutex_lock(&h->lock);
	head = h->head;
	if (head != NULL) {
		h->head = head->next;
		if (h->head == NULL) {
			h->tail = NULL;
		}
		h->count--;
	}
	pthread_mutex_unlock(&h->lock);
	return head;
}

int handoff__push_event(struct mqk_handoff *h, const char *client_id, bool connected,
			int64_t timestamp_ms)
{
	size_t len = strlen(client_id);
	struct mqk_presence_event *ev = malloc(sizeof(*ev) + len + 1);

	if (ev == NULL) {
		return -1;
	}
	ev->next = NULL;
	ev->timestamp_ms = timestamp_ms;
	ev->connected = connected;
	memcpy(ev->client_id, client_id, len + 1);
	pthread_mutex_lock(&h->lock);
	if (h->events_tail != NULL) {
		h->events_tail->next = ev;
	} else {
		h->events = ev;
	}
	h->events_tail = ev;
	pthread_mutex_unlock(&h->lock);
	handoff__signal(h);
	return 0;
}

struct mqk_presence_event *handoff__take_events(struct mqk_handoff *h)
{
	struct mqk_presence_event *events;

	pthread_mutex_lock(&h->lock);
	events = h->events;
	h->events = h->events_tail = NULL;
	pthread_mutex_unlock(&h->lock);
	return events;
}
