/*
 * test_kafka_conf.c - the Kafka clients' configuration: plugin_opt_kafka_config_file
 * (format, permissions, errors), the order defaults < file < kafka.* lines, secrets
 * kept out of messages, the SCRAM warning for librdkafka < 2.6.1, and what an
 * authentication or TLS error is said to mean.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#include "fake_broker.h"
#include "mqk.h"

static char dir[64];   /* mkdtemp */
static char path[128]; /* dir/kafka.properties */
static struct mqk_config cfg;
static char err[2048];

static int setup(void **state)
{
	(void)state;
	fake_broker_reset();
	fake_tempdir(dir, sizeof(dir), "test-kafka-conf");
	snprintf(path, sizeof(path), "%s/kafka.properties", dir);
	memset(&cfg, 0, sizeof(cfg));
	memset(err, 0, sizeof(err));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	options__free(&cfg);
	fake_tempdir_remove(dir);
	fake_broker_reset();
	return 0;
}

static void write_file(const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(chmod(path, mode), 0);
}

/* options__parse with bootstrap_servers, kafka_config_file path, and more pairs. */
static int parse(int extra, const char *const *kv)
{
	struct mosquitto_opt opts[16] = {{"bootstrap_servers", "k:9092"},
					 {"kafka_config_file", path}};
	int n = 2;

	for (int i = 0; i < extra; i += 2) {
		opts[n++] = (struct mosquitto_opt){(char *)kv[i], (char *)kv[i + 1]};
	}
	options__free(&cfg);
	memset(&cfg, 0, sizeof(cfg));
	return options__parse(&cfg, opts, n, err, sizeof(err));
}

/* What librdkafka holds for name after the plugin's configuration is applied. */
static const char *effective(rd_kafka_conf_t *conf, const char *name)
{
	static char value[512];
	size_t size = sizeof(value);

	if (rd_kafka_conf_get(conf, name, value, &size) != RD_KAFKA_CONF_OK) {
		return NULL;
	}
	return value;
}

static void test_file_read_and_applied_in_order(void **state)
{
	const char *kv[] = {"kafka.sasl.username", "from-mosquitto-conf"};
	rd_kafka_conf_t *conf = rd_kafka_conf_new();

	(void)state;
	write_file("# Kafka credentials for mosquitto\n"
		   "\n"
		   "security.protocol=SASL_SSL\n"
		   "  sasl.mechanisms = PLAIN  \n"
		   "sasl.username=from-file\n"
		   "sasl.password=p=a=s=s # not a comment\n"
		   "\t# indented comment\n"
		   "ssl.ca.location=/etc/ssl/certs/ca-certificates.crt",
		   0640);
	assert_int_equal(parse(2, kv), 0);
	assert_int_equal(cfg.kafka_file_prop_count, 5);
	assert_string_equal(cfg.kafka_file_props[1].name, "sasl.mechanisms");
	assert_string_equal(cfg.kafka_file_props[1].value, "PLAIN");
	assert_int_equal(cfg.kafka_file_props[1].line, 4);
	assert_string_equal(cfg.kafka_file_props[3].value, "p=a=s=s # not a comment");
	assert_int_equal(cfg.kafka_file_props[4].line, 8);
	/* The plugin's default first, then the file, then plugin_opt_kafka.* */
	assert_int_equal(kafka_conf__set(conf, "plugin defaults", "sasl.username", "default", err,
					 sizeof(err)),
			 0);
	assert_int_equal(kafka_conf__apply(conf, &cfg, err, sizeof(err)), 0);
	assert_string_equal(effective(conf, "sasl.username"), "from-mosquitto-conf");
	assert_string_equal(effective(conf, "security.protocol"), "sasl_ssl");
	assert_string_equal(effective(conf, "sasl.password"), "p=a=s=s # not a comment");
	rd_kafka_conf_destroy(conf);
}

static void test_file_readable_by_others_refused(void **state)
{
	char want[512];

	(void)state;
	write_file("sasl.password=hunter2\n", 0644);
	assert_int_equal(parse(0, NULL), -1);
	snprintf(want, sizeof(want),
		 "plugin_opt_kafka_config_file: '%s' may be read by every user (mode 0644): it "
		 "holds Kafka credentials; let only its owner and group use it, e.g. chmod o-rwx "
		 "'%s'",
		 path, path);
	assert_string_equal(err, want);
	write_file("sasl.password=hunter2\n", 0602);
	assert_int_equal(parse(0, NULL), -1);
	assert_non_null(strstr(err, "may be changed by every user (mode 0602)"));
	write_file("sasl.password=hunter2\n", 0600);
	assert_int_equal(parse(0, NULL), 0);
}

static void test_file_errors(void **state)
{
	char want[512];
	const char *twice[] = {"kafka_config_file", "/etc/other"};

	(void)state;
	assert_int_equal(parse(0, NULL), -1); /* not there */
	snprintf(want, sizeof(want),
		 "plugin_opt_kafka_config_file: cannot read '%s': No such file or directory "
		 "(mosquitto runs the plugin as its own user: let it read the file, e.g. chgrp "
		 "mosquitto and chmod 0640)",
		 path);
	assert_string_equal(err, want);

	write_file("acks=all\nthis line has no equals sign hunter2\n", 0600);
	assert_int_equal(parse(0, NULL), -1);
	snprintf(want, sizeof(want),
		 "plugin_opt_kafka_config_file %s line 2: expected <librdkafka property>=<value>",
		 path);
	assert_string_equal(err, want);
	assert_null(strstr(err, "hunter2")); /* a bad line may be a secret: not quoted */

	write_file("=value\n", 0600);
	assert_int_equal(parse(0, NULL), -1);
	assert_non_null(strstr(err, "line 1: expected <librdkafka property>=<value>"));

	write_file("bootstrap.servers=k:1\n", 0600);
	assert_int_equal(parse(0, NULL), -1);
	snprintf(want, sizeof(want),
		 "plugin_opt_kafka_config_file %s: 'bootstrap.servers' is set by the plugin and "
		 "cannot be changed (use plugin_opt_bootstrap_servers)",
		 path);
	assert_string_equal(err, want);

	write_file("sasl.password=a\n# again\nsasl.password=b\n", 0600);
	assert_int_equal(parse(0, NULL), -1);
	snprintf(want, sizeof(want),
		 "plugin_opt_kafka_config_file %s: sasl.password given twice (line 1 and line 3)",
		 path);
	assert_string_equal(err, want);

	write_file("acks=all\n", 0600);
	assert_int_equal(parse(2, twice), -1);
	snprintf(want, sizeof(want),
		 "plugin_opt_kafka_config_file: given twice ('%s' and "
		 "'/etc/other')",
		 path);
	assert_string_equal(err, want);

	assert_int_equal(unlink(path), 0); /* a directory where the file should be */
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(parse(0, NULL), -1);
	snprintf(want, sizeof(want), "plugin_opt_kafka_config_file: '%s' is not a file", path);
	assert_string_equal(err, want);
	rmdir(path);
}

static void test_relative_path_refused(void **state)
{
	struct mosquitto_opt opts[] = {{"bootstrap_servers", "k:9092"},
				       {"kafka_config_file", "kafka.properties"}};

	(void)state;
	assert_int_equal(options__parse(&cfg, opts, 2, err, sizeof(err)), -1);
	assert_string_equal(err, "plugin_opt_kafka_config_file: 'kafka.properties' is not an "
				 "absolute path");
}

/* A property librdkafka refuses is reported with the file and line it came from. */
static void test_librdkafka_refusal_names_the_line(void **state)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char want[512];

	(void)state;
	write_file("acks=all\n\nacks.typo=1\n", 0600);
	assert_int_equal(parse(0, NULL), 0);
	assert_int_equal(kafka_conf__apply(conf, &cfg, err, sizeof(err)), -1);
	snprintf(want, sizeof(want),
		 "plugin_opt_kafka_config_file %s line 3: No such configuration property: "
		 "\"acks.typo\"",
		 path);
	assert_string_equal(err, want);
	rd_kafka_conf_destroy(conf);
}

/* Secrets: named as such, never quoted in a message of the plugin's. */
static void test_secrets_not_shown(void **state)
{
	struct mosquitto_opt twice[] = {{"bootstrap_servers", "k:9092"},
					{"kafka.sasl.password", "hunter2"},
					{"kafka.sasl.password", "hunter3"}};
	struct mosquitto_opt acks[] = {
		{"bootstrap_servers", "k:9092"}, {"kafka.acks", "1"}, {"kafka.acks", "all"}};

	(void)state;
	assert_true(kafka_conf__is_secret("sasl.password"));
	assert_true(kafka_conf__is_secret("ssl.key.password"));
	assert_true(kafka_conf__is_secret("ssl.keystore.password"));
	assert_true(kafka_conf__is_secret("sasl.oauthbearer.client.secret"));
	assert_true(kafka_conf__is_secret("ssl.key.pem"));
	assert_false(kafka_conf__is_secret("sasl.username"));
	assert_false(kafka_conf__is_secret("ssl.certificate.pem"));
	assert_int_equal(options__parse(&cfg, twice, 3, err, sizeof(err)), -1);
	assert_string_equal(
		err, "plugin_opt_kafka.sasl.password: given twice (values not shown: secrets)");
	options__free(&cfg);
	memset(&cfg, 0, sizeof(cfg));
	assert_int_equal(options__parse(&cfg, acks, 3, err, sizeof(err)), -1);
	assert_string_equal(err, "plugin_opt_kafka.acks: given twice ('1' and 'all')");
}

/* librdkafka < 2.6.1 with SCRAM: one warning that says what fails, and what to do. */
static void test_scram_warning(void **state)
{
	struct mosquitto_opt opts[] = {{"bootstrap_servers", "k:9092"},
				       {"kafka.sasl.mechanisms", "SCRAM-SHA-512"}};
	bool old = rd_kafka_version() < 0x02060100;
	const struct fake_log_line *l;

	(void)state;
	assert_int_equal(options__parse(&cfg, opts, 2, err, sizeof(err)), 0);
	kafka_conf__warn(&cfg);
	l = fake_log_find("SCRAM");
	print_message("librdkafka %s: %s\n", rd_kafka_version_str(), l ? l->text : "no warning");
	if (old) {
		char want[1024];
		snprintf(want, sizeof(want),
			 "mosquitto_kafka: sasl.mechanisms SCRAM-SHA-512 with librdkafka %s: Kafka "
			 "4.x refuses SCRAM logins from librdkafka older than 2.6.1 as 'invalid "
			 "credentials' (it sends the client nonce twice, "
			 "confluentinc/librdkafka#4895); Kafka 3.x accepts them. Use librdkafka "
			 "2.6.1 or later (Debian 13 has 2.8.0), or SASL PLAIN over TLS with Kafka "
			 "4.x",
			 rd_kafka_version_str());
		assert_non_null(l);
		assert_int_equal(l->level, MOSQ_LOG_WARNING);
		assert_string_equal(l->text, want);
		assert_int_equal(fake_log_count(), 1);
	} else {
		assert_null(l);
	}
	/* PLAIN, or no SASL at all: nothing to say. */
	fake_broker_reset();
	options__free(&cfg);
	memset(&cfg, 0, sizeof(cfg));
	opts[1].value = "PLAIN";
	assert_int_equal(options__parse(&cfg, opts, 2, err, sizeof(err)), 0);
	kafka_conf__warn(&cfg);
	assert_int_equal(fake_log_count(), 0);
}

static void test_errors_explained(void **state)
{
	const char *check = NULL;
	const char *cause;

	(void)state;
	cause = kafka_conf__explain(RD_KAFKA_RESP_ERR__AUTHENTICATION,
				    "sasl_ssl://127.0.0.1:9093/bootstrap: SASL authentication "
				    "error: Authentication failed: Invalid username or password",
				    &check);
	assert_string_equal(cause, "Kafka authentication failed");
	assert_string_equal(check, "check sasl.mechanisms, sasl.username and sasl.password");
	cause = kafka_conf__explain(RD_KAFKA_RESP_ERR__SSL,
				    "ssl://127.0.0.1:9093/bootstrap: SSL handshake failed: "
				    "error:0A000086:SSL routines::certificate verify failed",
				    &check);
	assert_string_equal(cause, "Kafka TLS: the broker's certificate could not be verified");
	assert_non_null(strstr(check, "ssl.ca.location"));
	/* Kafka 4.4 and librdkafka 2.0.2, an expired client certificate (TLS 1.3). */
	cause = kafka_conf__explain(RD_KAFKA_RESP_ERR__TRANSPORT,
				    "ssl://127.0.0.1:60209/bootstrap: Receive failed: "
				    "error:0A000416:SSL routines::sslv3 alert certificate unknown: "
				    "SSL alert number 46 (after 8ms in state APIVERSION_QUERY)",
				    &check);
	assert_string_equal(cause, "Kafka TLS: the broker refused this client's certificate");
	cause = kafka_conf__explain(RD_KAFKA_RESP_ERR__SSL,
				    "ssl://127.0.0.1:9094/bootstrap: SSL handshake failed: "
				    "ssl/record/rec_layer_s3.c:1584: error:0A000415:SSL "
				    "routines::sslv3 alert certificate expired",
				    &check);
	assert_string_equal(cause, "Kafka TLS: the broker refused this client's certificate");
	assert_non_null(strstr(check, "ssl.certificate.location"));
	assert_null(
		kafka_conf__explain(RD_KAFKA_RESP_ERR__TRANSPORT,
				    "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: "
				    "Connection refused (after 0ms in state CONNECT)",
				    &check));
	assert_string_equal(kafka_conf__explain(RD_KAFKA_RESP_ERR__SSL,
						"ssl://k:9093/bootstrap: SSL handshake failed: "
						"wrong version number",
						&check),
			    "Kafka TLS handshake failed");
	assert_null(kafka_conf__explain(RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, "1/1 brokers are down",
					&check));
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_file_read_and_applied_in_order),
		T(test_file_readable_by_others_refused),
		T(test_file_errors),
		T(test_relative_path_refused),
		T(test_librdkafka_refusal_names_the_line),
		T(test_secrets_not_shown),
		T(test_scram_warning),
		T(test_errors_explained),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
