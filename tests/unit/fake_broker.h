/*
 * fake_broker.h - the broker-only mosquitto_* functions the plugin calls, faked for the
 * unit tests, which run without a broker. libmosquitto (linked too) provides the rest:
 * topic checks and matching, UTF-8 validation, MQTT v5 properties.
 *
 * Log lines and publishes are recorded, in order, so a test can assert on them. Each
 * test calls fake_broker_reset() first.
 */
#ifndef FAKE_BROKER_H
#define FAKE_BROKER_H

#include <stdbool.h>
#include <stddef.h>

#define FAKE_MAX_RECORDS 4096

struct fake_log_line {
	int level;
	char *text; /* as mosquitto would print it, without a newline */
};

struct fake_publish {
	char *clientid; /* NULL: to everyone */
	char *topic;
	char *payload; /* NUL-terminated copy of the payloadlen bytes */
	int payloadlen;
	int qos;
	bool retain;
};

/*
 * The broker's client object is opaque to plugins: the fake's holds what the plugin
 * asks of it (mosquitto_client_id, mosquitto_client_username).
 */
struct mosquitto {
	char id[32];
	const char *username; /* NULL: none */
};

/* Forgets every recorded line and publish. */
void fake_broker_reset(void);

int fake_log_count(void);
const struct fake_log_line *fake_log_get(int i);
/* The first line that contains `needle`, or NULL. */
const struct fake_log_line *fake_log_find(const char *needle);

int fake_publish_count(void);
const struct fake_publish *fake_publish_get(int i);
/* The last publish to `topic`, or NULL. */
const struct fake_publish *fake_publish_find(const char *topic);

/*
 * A scratch directory of the test's own, /tmp/mqk-<prefix>-XXXXXX (mkdtemp), written to
 * dir (dir_size >= 64). A plugin started by a unit test gets a journal_dir inside it: the
 * default, /var/lib/mosquitto/..., is the system's and no test may write there.
 */
void fake_tempdir(char *dir, size_t dir_size, const char *prefix);
/* Removes dir and everything in it. */
void fake_tempdir_remove(const char *dir);

#endif
