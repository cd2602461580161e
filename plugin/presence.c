/*
 * presence.c - the records that tell mqk-router where each client is connected.
 *
 * Commands thread. One record per change, for a compacted topic (docs/commands.md):
 * key "<broker_id>/<client_id>" with {"broker", "client_id", "state": "connected",
 * "boot", "timestamp"} when the client connected here, the same key with a null value
 * (a tombstone) when it left; key "<broker_id>" with "state" "up" when the plugin
 * starts and "down" when it stops. broker_id cannot contain '/', so the first '/'
 * splits the key.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "mosquitto_kafka.h"
#include "mqk.h"

/* key = broker_id [+ "/" + client_id], malloc'd. */
static char *make_key(const struct mqk_origin *origin, const char *client_id, size_t *len)
{
	size_t id_len = client_id ? strlen(client_id) : 0;
	size_t n = origin->broker_id_len + (client_id ? 1 + id_len : 0);
	char *key = malloc(n + 1);

	if (key == NULL) {
		return NULL;
	}
	memcpy(key, origin->broker_id, origin->broker_id_len);
	if (client_id != NULL) {
		key[origin->broker_id_len] = '/';
		memcpy(key + origin->broker_id_len + 1, client_id, id_len);
	}
	key[n] = '\0';
	*len = n;
	return key;
}

/* The JSON value, malloc'd (cJSON's allocator is malloc). */
static char *make_value(const struct mqk_origin *origin, const char *client_id, const char *state,
			int64_t timestamp_ms, size_t *len)
{
	cJSON *o = cJSON_CreateObject();
	char *out = NULL;
	char ts[24];

	snprintf(ts, sizeof(ts), "%" PRId64, timestamp_ms);

	if (o != NULL && cJSON_AddStringToObject(o, MQK_PRESENCE_BROKER, origin->broker_id) &&
	    (client_id == NULL || cJSON_AddStringToObject(o, MQK_PRESENCE_CLIENT_ID, client_id)) &&
	    cJSON_AddStringToObject(o, MQK_PRESENCE_STATE, state) &&
	    /* Raw decimals: cJSON prints a double ending in 0 as 1.79e+15. */
	    cJSON_AddRawToObject(o, MQK_PRESENCE_BOOT, origin->boot_str) &&
	    cJSON_AddRawToObject(o, MQK_PRESENCE_TIMESTAMP, ts)) {
		out = cJSON_PrintUnformatted(o);
	}
	cJSON_Delete(o);
	if (out != NULL) {
		*len = strlen(out);
	}
	return out;
}

int presence__client_record(const struct mqk_origin *origin, const struct mqk_presence_event *ev,
			    char **key, size_t *key_len, char **value, size_t *value_len)
{
	*value = NULL;
	*value_len = 0;
	*key = make_key(origin, ev->client_id, key_len);
	if (*key == NULL) {
		return -1;
	}
	if (ev->connected) {
		*value = make_value(origin, ev->client_id, MQK_PRESENCE_CONNECTED, ev->timestamp_ms,
				    value_len);
		if (*value == NULL) {
			free(*key);
			return -1;
		}
	}
	return 0;
}

int presence__broker_record(const struct mqk_origin *origin, bool up, int64_t timestamp_ms,
			    char **key, size_t *key_len, char **value, size_t *value_len)
{
	*key = make_key(origin, NULL, key_len);
	*value = make_value(origin, NULL, up ? MQK_PRESENCE_UP : MQK_PRESENCE_DOWN, timestamp_ms,
			    value_len);
	if (*key == NULL || *value == NULL) {
		free(*key);
		free(*value);
		return -1;
	}
	return 0;
}
