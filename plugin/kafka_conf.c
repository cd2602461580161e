/*
 * kafka_conf.c - the librdkafka configuration of the plugin's Kafka clients.
 *
 * Each client (the producer, and the commands consumer and its producer) is configured
 * in one order: the plugin's defaults, then plugin_opt_kafka_config_file, then the
 * plugin_opt_kafka.* lines (then, for the consumer, commands_kafka.*). A later setting
 * wins, so a line in mosquitto.conf overrides the file. librdkafka validates every
 * property; its refusal is reported with where the setting came from.
 *
 * Secrets. The config file is where passwords and keys belong: mosquitto.conf is often
 * world-readable, and the plugin refuses a config file that is. No message of the
 * plugin shows the value of a secret property (kafka_conf__is_secret), and librdkafka
 * itself writes "[redacted]" for them in its configuration dump (debug=conf).
 *
 * Known problems. librdkafka before 2.6.1 puts the client nonce twice into SCRAM's
 * client-final-message; Kafka 4.x checks it and refuses the login as "invalid
 * credentials" (confluentinc/librdkafka#4895). kafka_conf__warn says so at start-up.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>

#include "mqk.h"

/* The first librdkafka release whose SCRAM Kafka 4.x accepts (0xMMmmrrxx). */
#define SCRAM_FIXED_VERSION 0x02060100
/* A config file line longer than this is an error, not a truncation. */
#define LINE_MAX_LEN 65536

/* librdkafka properties the plugin sets and depends on: not for the admin to change. */
static const struct {
	const char *name;
	const char *instead;
} reserved[] = {
	{"bootstrap.servers", " (use plugin_opt_bootstrap_servers)"}, /* broker list */
	{"log.queue", ""},      /* logs must reach mosquitto's thread */
	{"enabled_events", ""}, /* the plugin serves its own queues */
};

const char *kafka_conf__reserved(const char *name)
{
	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
		if (!strcmp(name, reserved[i].name)) {
			return reserved[i].instead;
		}
	}
	return NULL;
}

bool kafka_conf__is_secret(const char *name)
{
	/* sasl.password, ssl.key.password, ssl.keystore.password, sasl.oauthbearer.client.secret,
	   ssl.key.pem (a private key), sasl.oauthbearer.config (may hold a client secret). */
	return strstr(name, "password") != NULL || strstr(name, "secret") != NULL ||
	       !strcmp(name, "ssl.key.pem") || !strcmp(name, "sasl.oauthbearer.config");
}

int kafka_conf__set(rd_kafka_conf_t *conf, const char *origin, const char *name, const char *value,
		    char *errstr, size_t errstr_size)
{
	char why[512];

	if (rd_kafka_conf_set(conf, name, value, why, sizeof(why)) != RD_KAFKA_CONF_OK) {
		if (kafka_conf__is_secret(name) && *value && strstr(why, value) != NULL) {
			snprintf(why, sizeof(why),
				 "librdkafka refuses the value of %s (not shown: "
				 "it is a secret)",
				 name);
		}
		snprintf(errstr, errstr_size, "%s: %s", origin, why);
		return -1;
	}
	return 0;
}

static int set_props(rd_kafka_conf_t *conf, const char *file, const char *prefix,
		     const struct mqk_kafka_prop *p, int n, char *errstr, size_t errstr_size)
{
	char origin[4200];

	for (int i = 0; i < n; i++) {
		if (file != NULL) {
			snprintf(origin, sizeof(origin), "plugin_opt_kafka_config_file %s line %d",
				 file, p[i].line);
		} else {
			snprintf(origin, sizeof(origin), "plugin_opt_%s%s", prefix, p[i].name);
		}
		if (kafka_conf__set(conf, origin, p[i].name, p[i].value, errstr, errstr_size)) {
			return -1;
		}
	}
	return 0;
}

int kafka_conf__apply(rd_kafka_conf_t *conf, const struct mqk_config *cfg, char *errstr,
		      size_t errstr_size)
{
	if (set_props(conf, cfg->kafka_config_file, NULL, cfg->kafka_file_props,
		      cfg->kafka_file_prop_count, errstr, errstr_size) ||
	    set_props(conf, NULL, "kafka.", cfg->kafka_props, cfg->kafka_prop_count, errstr,
		      errstr_size)) {
		return -1;
	}
	return 0;
}

int kafka_conf__apply_commands(rd_kafka_conf_t *conf, const struct mqk_cmd_config *cc, char *errstr,
			       size_t errstr_size)
{
	return set_props(conf, NULL, "commands_kafka.", cc->kafka_props, cc->kafka_prop_count,
			 errstr, errstr_size);
}

/* Adds name=value (line's) to the list; 0, or -1 with errstr. */
static int add_prop(struct mqk_kafka_prop **list, int *count, const char *name, const char *value,
		    int line, const char *where, char *errstr, size_t errstr_size)
{
	struct mqk_kafka_prop *props;
	const char *instead = kafka_conf__reserved(name);

	if (instead != NULL) {
		snprintf(errstr, errstr_size,
			 "%s: '%s' is set by the plugin and cannot be changed%s", where, name,
			 instead);
		return -1;
	}
	for (int i = 0; i < *count; i++) {
		if (!strcmp((*list)[i].name, name)) {
			snprintf(errstr, errstr_size, "%s: %s given twice (line %d and line %d)",
				 where, name, (*list)[i].line, line);
			return -1;
		}
	}
	props = realloc(*list, sizeof(*props) * (size_t)(*count + 1));
	if (props == NULL) {
		snprintf(errstr, errstr_size, "%s: out of memory", where);
		return -1;
	}
	*list = props;
	props[*count] = (struct mqk_kafka_prop){strdup(name), strdup(value), line};
	(*count)++;
	if (props[*count - 1].name == NULL || props[*count - 1].value == NULL) {
		snprintf(errstr, errstr_size, "%s: out of memory", where);
		return -1;
	}
	return 0;
}

/* s without white space at both ends, in place. */
static char *trim(char *s)
{
	char *end = s + strlen(s);

	while (isspace((unsigned char)*s)) {
		s++;
	}
	while (end > s && isspace((unsigned char)end[-1])) {
		end--;
	}
	*end = '\0';
	return s;
}

int kafka_conf__read_file(const char *path, struct mqk_kafka_prop **list, int *count, char *errstr,
			  size_t errstr_size)
{
	char where[4200];
	struct stat st;
	char *buf = NULL;
	int line = 0, rc = -1;
	FILE *f;

	snprintf(where, sizeof(where), "plugin_opt_kafka_config_file %s", path);
	f = fopen(path, "re");
	if (f == NULL) {
		snprintf(errstr, errstr_size,
			 "plugin_opt_kafka_config_file: cannot read '%s': %s (mosquitto runs the "
			 "plugin as its own user: let it read the file, e.g. chgrp mosquitto and "
			 "chmod 0640)",
			 path, strerror(errno));
		return -1;
	}
	if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(errstr, errstr_size, "plugin_opt_kafka_config_file: '%s' is not a file",
			 path);
		goto done;
	}
	if (st.st_mode & (S_IROTH | S_IWOTH)) {
		snprintf(errstr, errstr_size,
			 "plugin_opt_kafka_config_file: '%s' may be %s by every user (mode %04o): "
			 "it holds Kafka credentials; let only its owner and group use it, e.g. "
			 "chmod o-rwx '%s'",
			 path, (st.st_mode & S_IROTH) ? "read" : "changed",
			 (unsigned)(st.st_mode & 07777), path);
		goto done;
	}
	buf = malloc(LINE_MAX_LEN + 2);
	if (buf == NULL) {
		snprintf(errstr, errstr_size, "%s: out of memory", where);
		goto done;
	}
	while (fgets(buf, LINE_MAX_LEN + 2, f) != NULL) {
		size_t len = strlen(buf);
		char *s, *eq;

		line++;
		if (len > LINE_MAX_LEN && buf[len - 1] != '\n') {
			snprintf(errstr, errstr_size, "%s line %d: longer than %d bytes", where,
				 line, LINE_MAX_LEN);
			goto done;
		}
		s = trim(buf);
		if (*s == '\0' || *s == '#') {
			continue;
		}
		eq = strchr(s, '=');
		if (eq == NULL || eq == s) {
			/* The line may be a secret: it is not quoted. */
			snprintf(errstr, errstr_size,
				 "%s line %d: expected <librdkafka property>=<value>", where, line);
			goto done;
		}
		*eq = '\0';
		if (add_prop(list, count, trim(s), trim(eq + 1), line, where, errstr,
			     errstr_size)) {
			goto done;
		}
	}
	if (ferror(f)) {
		snprintf(errstr, errstr_size, "%s: read error: %s", where, strerror(errno));
		goto done;
	}
	rc = 0;
done:
	free(buf);
	fclose(f);
	return rc;
}

/* The value a client gets for name: kafka.* wins over the file. NULL: not set. */
static const char *effective(const struct mqk_config *cfg, const char *name)
{
	for (int i = cfg->kafka_prop_count - 1; i >= 0; i--) {
		if (!strcmp(cfg->kafka_props[i].name, name)) {
			return cfg->kafka_props[i].value;
		}
	}
	for (int i = cfg->kafka_file_prop_count - 1; i >= 0; i--) {
		if (!strcmp(cfg->kafka_file_props[i].name, name)) {
			return cfg->kafka_file_props[i].value;
		}
	}
	return NULL;
}

void kafka_conf__warn(const struct mqk_config *cfg)
{
	const char *mechanisms = effective(cfg, "sasl.mechanisms");

	if (mechanisms == NULL) {
		mechanisms = effective(cfg, "sasl.mechanism"); /* librdkafka's alias */
	}
	if (mechanisms != NULL && !strncasecmp(mechanisms, "SCRAM-", 6) &&
	    rd_kafka_version() < SCRAM_FIXED_VERSION) {
		log__printf(MOSQ_LOG_WARNING,
			    "sasl.mechanisms %s with librdkafka %s: Kafka 4.x refuses SCRAM logins "
			    "from librdkafka older than 2.6.1 as 'invalid credentials' (it sends "
			    "the client nonce twice, confluentinc/librdkafka#4895); Kafka 3.x "
			    "accepts them. Use librdkafka 2.6.1 or later (Debian 13 has 2.8.0), or "
			    "SASL PLAIN over TLS with Kafka 4.x",
			    mechanisms, rd_kafka_version_str());
	}
}

/*
 * A TLS alert about a certificate, from the broker: it did not accept this client's. With
 * TLS 1.3 the client's side of the handshake is over before the broker checks the client
 * certificate, so librdkafka sees the alert on its first read, as a transport error:
 * "Receive failed: ...:sslv3 alert certificate unknown: SSL alert number 46" (what
 * Kafka 4.4 sends for an expired one).
 */
static bool refused_certificate(const char *reason)
{
	return strstr(reason, " alert ") != NULL &&
	       (strstr(reason, "certificate") != NULL || strstr(reason, "unknown ca") != NULL ||
		strstr(reason, "access denied") != NULL);
}

const char *kafka_conf__explain(int err, const char *reason, const char **check)
{
	if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION) {
		*check = rd_kafka_version() < SCRAM_FIXED_VERSION && strstr(reason, "SCRAM")
				 ? "check sasl.mechanisms, sasl.username and sasl.password; with "
				   "Kafka 4.x, SCRAM needs librdkafka 2.6.1 or later"
				 : "check sasl.mechanisms, sasl.username and sasl.password";
		return "Kafka authentication failed";
	}
	if (refused_certificate(reason)) {
		*check = "check ssl.certificate.location and ssl.key.location: the certificate may "
			 "have expired, or be signed by a CA the broker does not trust";
		return "Kafka TLS: the broker refused this client's certificate";
	}
	if (err != RD_KAFKA_RESP_ERR__SSL) {
		return NULL;
	}
	if (strstr(reason, "certificate verify failed") != NULL) {
		*check = "check ssl.ca.location: it must hold the CA that signed the broker's "
			 "certificate, and the certificate must name the host of bootstrap_servers";
		return "Kafka TLS: the broker's certificate could not be verified";
	}
	*check = "check security.protocol and the ssl.* properties";
	return "Kafka TLS handshake failed";
}

void kafka_conf__log_error(struct mqk_ratelimit *rl_known, struct mqk_ratelimit *rl_other,
			   const char *who, const char *meanwhile, int err, const char *reason)
{
	const char *check, *cause = kafka_conf__explain(err, reason, &check);

	if (cause != NULL) {
		log__deferred_ratelimited(rl_known, MOSQ_LOG_ERR, "%s%s: %s (%s); %s", who, cause,
					  reason, check, meanwhile);
		return;
	}
	log__deferred_ratelimited(rl_other, MOSQ_LOG_WARNING, "%sKafka: %s (%s)", who, reason,
				  rd_kafka_err2name((rd_kafka_resp_err_t)err));
}
