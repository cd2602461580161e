/*
 * fake_broker.c - records what the plugin asks of the broker: see fake_broker.h.
 */
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>

#include "fake_broker.h"

static struct fake_log_line log_lines[FAKE_MAX_RECORDS];
static int log_count;
static struct fake_publish publishes[FAKE_MAX_RECORDS];
static int publish_count;

void fake_broker_reset(void)
{
	for (int i = 0; i < log_count; i++) {
		free(log_lines[i].text);
	}
	for (int i = 0; i < publish_count; i++) {
		free(publishes[i].clientid);
		free(publishes[i].topic);
		free(publishes[i].payload);
	}
	memset(log_lines, 0, sizeof(log_lines));
	memset(publishes, 0, sizeof(publishes));
	log_count = 0;
	publish_count = 0;
}

int fake_log_count(void)
{
	return log_count;
}

const struct fake_log_line *fake_log_get(int i)
{
	return i >= 0 && i < log_count ? &log_lines[i] : NULL;
}

const struct fake_log_line *fake_log_find(const char *needle)
{
	for (int i = 0; i < log_count; i++) {
		if (strstr(log_lines[i].text, needle)) {
			return &log_lines[i];
		}
	}
	return NULL;
}

int fake_publish_count(void)
{
	return publish_count;
}

const struct fake_publish *fake_publish_get(int i)
{
	return i >= 0 && i < publish_count ? &publishes[i] : NULL;
}

const struct fake_publish *fake_publish_find(const char *topic)
{
	for (int i = publish_count - 1; i >= 0; i--) {
		if (!strcmp(publishes[i].topic, topic)) {
			return &publishes[i];
		}
	}
	return NULL;
}

/* ---- the broker's functions ---------------------------------------------------- */

__attribute__((format(printf, 2, 3))) void mosquitto_log_printf(int level, const char *fmt, ...)
{
	char line[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (log_count < FAKE_MAX_RECORDS) {
		log_lines[log_count].level = level;
		log_lines[log_count].text = strdup(line);
		log_count++;
	}
}

int mosquitto_broker_publish_copy(const char *clientid, const char *topic, int payloadlen,
				  const void *payload, int qos, bool retain,
				  mosquitto_property *properties)
{
	struct fake_publish *p;

	if (topic == NULL || payloadlen < 0 || (payloadlen > 0 && payload == NULL) || qos < 0 ||
	    qos > 2) {
		return MOSQ_ERR_INVAL;
	}
	if (publish_count >= FAKE_MAX_RECORDS) {
		return MOSQ_ERR_NOMEM;
	}
	p = &publishes[publish_count++];
	p->clientid = clientid ? strdup(clientid) : NULL;
	p->topic = strdup(topic);
	p->payload = malloc((size_t)payloadlen + 1);
	if (payloadlen > 0) {
		memcpy(p->payload, payload, (size_t)payloadlen);
	}
	p->payload[payloadlen] = '\0';
	p->payloadlen = payloadlen;
	p->qos = qos;
	p->retain = retain;
	/* On success the broker owns the properties. */
	mosquitto_property_free_all(&properties);
	return MOSQ_ERR_SUCCESS;
}

/* Takes payload (the broker's, mosquitto_malloc'd) on success. */
int mosquitto_broker_publish(const char *clientid, const char *topic, int payloadlen, void *payload,
			     int qos, bool retain, mosquitto_property *properties)
{
	int rc = mosquitto_broker_publish_copy(clientid, topic, payloadlen, payload, qos, retain,
					       properties);
	if (rc == MOSQ_ERR_SUCCESS) {
		free(payload);
	}
	return rc;
}

void *mosquitto_malloc(size_t size)
{
	return malloc(size);
}

/* libmosquitto's property readers allocate with malloc: the broker's free is free(). */
void mosquitto_free(void *mem)
{
	free(mem);
}

const char *mosquitto_client_id(const struct mosquitto *client)
{
	return client->id;
}

const char *mosquitto_client_username(const struct mosquitto *client)
{
	return client->username;
}

/* Callbacks are called by the test itself: registering only succeeds. */
int mosquitto_callback_register(mosquitto_plugin_id_t *identifier, int event,
				MOSQ_FUNC_generic_callback cb_func, const void *event_data,
				void *userdata)
{
	(void)identifier, (void)event, (void)cb_func, (void)event_data, (void)userdata;
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_callback_unregister(mosquitto_plugin_id_t *identifier, int event,
				  MOSQ_FUNC_generic_callback cb_func, const void *event_data)
{
	(void)identifier, (void)event, (void)cb_func, (void)event_data;
	return MOSQ_ERR_SUCCESS;
}

void fake_tempdir(char *dir, size_t dir_size, const char *prefix)
{
	snprintf(dir, dir_size, "/tmp/mqk-%s-XXXXXX", prefix);
	if (mkdtemp(dir) == NULL) {
		perror(dir);
		abort();
	}
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void fake_tempdir_remove(const char *dir)
{
	if (dir[0] != '\0') {
		nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
	}
}
