/*
 * test_alloc_fail.c - every allocation of a path made to fail in turn, SQLite's way
 * (alloc_fail.h): for N = 1, 2, ... the Nth allocation the path makes returns NULL, until
 * a run completes without reaching N. At each N the path must return a clean error (or
 * cope and succeed), free everything (in the ASan build, tests/sanitize, LeakSanitizer
 * checks after each run; under valgrind, at exit), leave what it
 * works on usable (a journal directory opens and replays the same entries afterwards),
 * and not crash. Each path prints how many failure points it exercised.
 *
 * Paths: option parsing (options__parse with routes, a routes file, a Kafka properties
 * file, commands, presence, inbound routes), route lines and templates, a routes file's
 * reload (a failed one changes nothing), record building
 * (capture__props, record__build raw and JSON, envelope__encode), journal open and
 * replay (journal__open, buffer__init_journal on segments an earlier run left; a reload's
 * journal__routes_changed), and the
 * command path's pieces (presence events and records, the connected-clients table,
 * redistribute's hold queue, deliver__publish's copy, commands__new in both modes), and
 * start-up (stats__init, metrics__new and a render, producer__new, inbound__new).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <inttypes.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mqtt_protocol.h>

#include "alloc_fail.h"
#include "fake_broker.h"
#include "mqk.h"

#define BOOT_1 INT64_C(1763900000000001)

static char base[64]; /* the test's mkdtemp directory */

/*
 * A path: returns 0 when it completed, -1 when it failed cleanly (errstr, if it has one,
 * says why). Either way it has freed everything it made.
 */
typedef int (*path_fn)(void *arg);

/*
 * Runs path with allocation n failing, n = 1, 2, ..., until a run reaches no nth
 * allocation (then it must have completed). check_leaks: in the ASan build, a leak check
 * after each run (not for paths that start librdkafka's threads, whose memory may be in
 * flight); elsewhere leaks show at exit (ASan, or cmake -DMQK_UNIT_VALGRIND=ON).
 * Returns the number of failure points.
 */
static char last_error[1024]; /* the last path's errstr */

static long run_path(const char *name, path_fn path, void *arg, bool check_leaks)
{
	long n;
	int failed = 0;

	/* Once unarmed first: it must complete, and stdio and the like are warmed up. */
	if (path(arg) != 0) {
		fail_msg("%s: fails without any allocation failing: %s", name, last_error);
	}
	fake_broker_reset();
	for (n = 1;; n++) {
		alloc_fail_arm(n);
		int rc = path(arg);
		bool hit = alloc_fail_hit();
		alloc_fail_arm(0);
		fake_broker_reset();

		if (rc != 0 && rc != -1) {
			fail_msg("%s: allocation %ld failing: returned %d", name, n, rc);
		}
		if (check_leaks && alloc_fail_leaked()) {
			fail_msg(
				"%s: allocation %ld failing: memory leaked (LeakSanitizer's report "
				"above)",
				name, n);
		}
		if (!hit) {
			if (rc != 0) {
				fail_msg("%s: failed with no allocation failing (%ld made)", name,
					 alloc_fail_count());
			}
			break;
		}
		failed += rc != 0;
	}
	print_message("%s: %ld failure points exercised (%d clean errors, %ld coped with)\n", name,
		      n - 1, failed, n - 1 - failed);
	assert_true(n > 1);
	return n - 1;
}

/* An errstr filled on failure: the cause is named. */
static int checked(int rc, const char *errstr)
{
	snprintf(last_error, sizeof(last_error), "%s", rc != 0 ? errstr : "");
	if (rc != 0 && errstr[0] == '\0') {
		fail_msg("failed without a message");
	}
	return rc;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_true(fputs(text, f) >= 0);
	assert_int_equal(fclose(f), 0);
}

/* ---- option parsing ------------------------------------------------------------------ */

static struct mosquitto_opt opts[64];
static int opt_count;

static void opt(const char *key, const char *value)
{
	assert_true(opt_count < 64);
	opts[opt_count].key = (char *)key;
	opts[opt_count].value = (char *)value;
	opt_count++;
}

static int parse_options(void *arg)
{
	struct mqk_config cfg;
	char errstr[1024] = "";
	int rc;

	(void)arg;
	memset(&cfg, 0, sizeof(cfg));
	rc = options__parse(&cfg, opts, opt_count, errstr, sizeof(errstr));
	options__free(&cfg);
	return checked(rc, errstr);
}

static void test_options(void **state)
{
	static char routes_file[128], kafka_file[128], journal_dir[128];

	(void)state;
	snprintf(routes_file, sizeof(routes_file), "%s/routes.conf", base);
	snprintf(kafka_file, sizeof(kafka_file), "%s/kafka.properties", base);
	snprintf(journal_dir, sizeof(journal_dir), "%s/journal", base);
	write_file(routes_file, "# routes\n"
				"route_file_a fa/+/x -> fa.{1} key={clientid}\n"
				"route_file_b fb/# -> fb format=json qos=1\n"
				"exclude fb/secret/#\n");
	write_file(kafka_file, "compression.type=lz4\nlinger.ms=5\n");
	assert_int_equal(chmod(kafka_file, 0600), 0);
	opt_count = 0;
	opt("bootstrap_servers", "kafka1:9092,kafka2:9092");
	opt("broker_id", "broker-a");
	opt("route_spectrum", "sensors/+/spectrum -> spectrum key=clientid");
	opt("route_status", "devices/# -> device-status key=topic format=json");
	opt("route_dyn", "site/+/+/data -> site.{1}.{2} key={clientid}-{2} qos=2 retain=true "
			 "clientid=dev-* username=");
	opt("exclude", "devices/+/debug/#");
	opt("kafka.compression.type", "lz4");
	opt("kafka.linger.ms", "5");
	opt("kafka_config_file", kafka_file);
	opt("routes_file", routes_file);
	opt("durability", "journal");
	opt("journal_dir", journal_dir);
	opt("stats_interval", "5");
	opt("metrics_listen", "127.0.0.1:0");
	opt("commands_topic", "commands.{broker}");
	opt("commands_mode", "targeted");
	opt("commands_group", "mqk-{broker}");
	opt("commands_target", "header:device");
	opt("commands_mqtt_topic", "cmd/{clientid}");
	opt("commands_return_topic", "commands.return");
	opt("commands_dead_letter_topic", "commands.dead");
	opt("commands_wake", "off");
	opt("commands_kafka.fetch.wait.max.ms", "50");
	opt("presence_topic", "presence");
	opt("inbound_config", "config -> config/{key} qos=1");
	opt("inbound_alerts", "alerts -> alerts/{header:site}/{partition} retain=true");
	opt("inbound_kafka.auto.offset.reset", "earliest");
	run_path("options__parse", parse_options, NULL, true);
}

/* ---- route lines, routes files, templates ------------------------------------------- */

static const char *route_lines[] = {
	"route_a sensors/+/data -> mqtt.{1} key={clientid}-{1}",
	"route_b a/# -> t clientid=a*b?c qos=2 retain=true username=",
	"exclude a/b/#",
	"route_c x/+/+/# -> x.{2} key={topic} format=json",
};

static int parse_route_lines(void *arg)
{
	struct mqk_config cfg;
	char errstr[1024] = "";
	int rc = 0;

	(void)arg;
	memset(&cfg, 0, sizeof(cfg));
	for (size_t i = 0; rc == 0 && i < sizeof(route_lines) / sizeof(*route_lines); i++) {
		rc = options__parse_route_line(&cfg, route_lines[i], errstr, sizeof(errstr));
	}
	options__free(&cfg);
	return checked(rc, errstr);
}

static int read_routes_file(void *arg)
{
	struct mqk_config conf, out;
	char errstr[1024] = "";
	int rc;

	memset(&conf, 0, sizeof(conf));
	memset(&out, 0, sizeof(out));
	rc = options__read_routes_file(arg, &conf, &out, errstr, sizeof(errstr));
	options__free(&out);
	return checked(rc, errstr);
}

static int compile_templates(void *arg)
{
	struct mqk_template a, b, c;
	char errstr[512] = "";
	int rc;

	(void)arg;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	memset(&c, 0, sizeof(c));
	rc = template__compile(&a, "site.{1}.{2}-{clientid}", "site/+/+/#", true, errstr,
			       sizeof(errstr));
	if (rc == 0) {
		rc = template__compile(&b, "{topic}/{username}/{broker}/{3}", "a/+/+/#", false,
				       errstr, sizeof(errstr));
	}
	if (rc == 0) {
		rc = template__compile_inbound(&c, "cfg/{key}/{header:site}/{partition}/{broker}",
					       errstr, sizeof(errstr));
	}
	template__free(&a);
	template__free(&b);
	template__free(&c);
	return checked(rc, errstr);
}

static char reload_path[128]; /* the routes file */

static void write_routes(const char *text)
{
	char tmp[160];

	snprintf(tmp, sizeof(tmp), "%s.new", reload_path);
	write_file(tmp, text);
	assert_int_equal(rename(tmp, reload_path), 0);
}

/*
 * routes__reload: a route changed, one added, one removed, the exclude replaced. A failed
 * reload changes nothing (the routes in force and the excludes stay as they were).
 */
static int reload_routes(void *arg)
{
	struct mosquitto_opt o[] = {
		{(char *)"bootstrap_servers", (char *)"k:9092"},
		{(char *)"durability", (char *)"memory"},
		{(char *)"route_conf", (char *)"conf/# -> conf"},
		{(char *)"routes_file", reload_path},
	};
	struct mqk_config cfg;
	struct mqk_reload_result res;
	char errstr[1024] = "";
	int rc;

	(void)arg;
	alloc_fail_pause();
	memset(&cfg, 0, sizeof(cfg));
	write_routes("route_keep k/# -> k\nroute_change c/# -> c1\nroute_drop d/# -> d\n"
		     "exclude k/x/#\n");
	if (options__parse(&cfg, o, sizeof(o) / sizeof(*o), errstr, sizeof(errstr)) ||
	    routes__start(&cfg)) {
		fail_msg("set-up: %s", errstr);
	}
	write_routes("route_change c/# -> c2 qos=1\nroute_keep k/# -> k key={topic}\n"
		     "route_new n/+/x -> n.{1}\nexclude n/x/#\nexclude n/y/#\n");
	alloc_fail_resume();
	rc = routes__reload(&cfg, &res, errstr, sizeof(errstr));
	alloc_fail_pause();
	if (rc != 0) {
		assert_int_equal(cfg.active_count, 4);
		assert_int_equal(cfg.route_count, 4);
		assert_int_equal(cfg.exclude_count, 1);
		assert_string_equal(cfg.routes[cfg.active[3]].name, "drop");
	} else {
		assert_int_equal(res.added, 1);
		assert_int_equal(res.removed, 1);
		assert_int_equal(cfg.exclude_count, 2);
	}
	options__free(&cfg);
	alloc_fail_resume();
	return checked(rc, errstr);
}

static void test_routes_and_templates(void **state)
{
	static char path[128];

	(void)state;
	snprintf(path, sizeof(path), "%s/routes.conf", base);
	write_file(path, "# routes\n\n"
			 "route_a sensors/+/data -> mqtt.{1} key={clientid}-{1}\n"
			 "route_b a/# -> t qos=1 format=json\n"
			 "exclude a/secret/#\n"
			 "route_c x/+/+/# -> x.{2} key={topic}\n");
	run_path("options__parse_route_line", parse_route_lines, NULL, true);
	run_path("options__read_routes_file", read_routes_file, path, true);
	run_path("template__compile", compile_templates, NULL, true);
	snprintf(reload_path, sizeof(reload_path), "%s/reload.conf", base);
	run_path("routes__reload", reload_routes, NULL, true);
}

/* ---- record building ----------------------------------------------------------------- */

static struct mqk_config rec_cfg;
static mosquitto_property *rec_props;

static int build_records(void *arg)
{
	struct mqk_origin origin;
	struct mqk_scratch scratch;
	struct mqk_bytes props = {0};
	struct mqk_record rec;
	char *json = NULL;
	size_t json_size = 0;
	int rc = -1;
	static const char payload[] = "{\"dbm\":-71,\"bin\":\"\xff\xfe\"}";
	struct mqk_message msg = {
		.topic = "site/s1/dev-7/data",
		.client_id = "dev-7",
		.username = "alice",
		.payload = payload,
		.payloadlen = sizeof(payload) - 1,
		.qos = 1,
		.timestamp_ms = INT64_C(1763912345678),
	};

	(void)arg;
	record__origin_init(&origin, "broker-a", BOOT_1);
	if (record__scratch_init(&scratch)) {
		return -1;
	}
	if (capture__props(rec_props, &props)) {
		goto done;
	}
	msg.props = props.data;
	msg.props_len = (uint32_t)props.len;
	/* Every route: raw with a key, JSON envelope (binary payload: base64), dynamic topic. */
	rc = 0;
	for (int r = 0; r < rec_cfg.route_count; r++) {
		enum mqk_build_error e = record__build(&rec, &rec_cfg.routes[r], &msg,
						       41 + (uint64_t)r, &origin, &scratch);
		if (e == MQK_BUILD_REFUSED) {
			rc = -1;
			break;
		}
		assert_int_equal(e, MQK_BUILD_OK);
		record__discard(&rec);
	}
	if (rc == 0 && envelope__encode(&msg, &origin, "direct", 7, &json, &json_size) < 0) {
		rc = -1;
	}
	free(json);
done:
	free(props.data);
	record__scratch_free(&scratch);
	return rc;
}

static void test_records(void **state)
{
	struct mosquitto_opt o[] = {
		{(char *)"bootstrap_servers", (char *)"k:9092"},
		{(char *)"broker_id", (char *)"broker-a"},
		{(char *)"durability", (char *)"memory"},
		{(char *)"route_raw", (char *)"site/+/+/data -> raw key={clientid}-{2}"},
		{(char *)"route_json", (char *)"site/# -> json format=json key=topic"},
		{(char *)"route_dyn", (char *)"site/+/+/data -> site.{1}.{2}"},
	};
	char errstr[512] = "";

	(void)state;
	memset(&rec_cfg, 0, sizeof(rec_cfg));
	if (options__parse(&rec_cfg, o, sizeof(o) / sizeof(*o), errstr, sizeof(errstr))) {
		fail_msg("%s", errstr);
	}
	rec_props = NULL;
	assert_int_equal(mosquitto_property_add_string_pair(&rec_props, MQTT_PROP_USER_PROPERTY,
							    "site", "lab"),
			 MOSQ_ERR_SUCCESS);
	assert_int_equal(mosquitto_property_add_string(&rec_props, MQTT_PROP_CONTENT_TYPE,
						       "application/json"),
			 MOSQ_ERR_SUCCESS);
	assert_int_equal(mosquitto_property_add_string(&rec_props, MQTT_PROP_RESPONSE_TOPIC,
						       "replies/dev-7"),
			 MOSQ_ERR_SUCCESS);
	assert_int_equal(mosquitto_property_add_binary(&rec_props, MQTT_PROP_CORRELATION_DATA,
						       "\x00\x01", 2),
			 MOSQ_ERR_SUCCESS);
	run_path("record__build", build_records, NULL, true);
	mosquitto_property_free_all(&rec_props);
	options__free(&rec_cfg);
}

/* ---- journal open and replay --------------------------------------------------------- */

static struct mqk_route j_routes[2];
static struct mqk_config j_cfg;
static struct mqk_origin j_origin;
static uint64_t j_replayed; /* entries left to replay, as the first run left them */

/* capture__message of entry seq into b. */
static int put(struct mqk_buffer *b, uint64_t seq)
{
	char topic[64], payload[300];
	struct mqk_message m = {
		.topic = topic,
		.client_id = "dev-1",
		.username = seq % 2 ? "user" : NULL,
		.payload = payload,
		.payloadlen = sizeof(payload),
		.qos = (uint8_t)(seq % 3),
		.timestamp_ms = 1763912345678 + (int64_t)seq,
	};

	snprintf(topic, sizeof(topic), "sensors/%" PRIu64 "/data", seq);
	memset(payload, (int)seq, sizeof(payload));
	return capture__message(b, (int)(seq % 2), seq, &m);
}

/* Opens the journal, replays every entry (read, not acknowledged), closes it. */
static int open_replay(void *arg)
{
	struct mqk_journal_counters ctr;
	struct mqk_buffer b;
	struct mqk_journal *j;
	char errstr[512] = "";
	uint64_t from, to, n = 0, pos;

	(void)arg;
	memset(&ctr, 0, sizeof(ctr));
	memset(&b, 0, sizeof(b));
	b.wake_fd = -1;
	j = journal__open(&j_cfg, &j_origin, &ctr, errstr, sizeof(errstr));
	if (j == NULL) {
		return checked(-1, errstr);
	}
	journal__replay_range(j, &from, &to);
	if (buffer__init_journal(&b, j)) {
		journal__close(j, from);
		return -1;
	}
	(void)to;
	for (pos = from;;) {
		struct mqk_entry *e = buffer__at(&b, &pos);
		struct mqk_message m;

		if (e == NULL) {
			break;
		}
		capture__read(e, &m);
		assert_int_equal(e->seq, n);
		assert_int_equal(m.payloadlen, 300);
		n++;
		pos += e->size;
	}
	/* Nothing acknowledged: the next open replays the same. */
	journal__close(j, from);
	buffer__free(&b);
	if (j_replayed != 0 && n != j_replayed) {
		fail_msg("replayed %" PRIu64 " entries, expected %" PRIu64, n, j_replayed);
	}
	return 0;
}

/* journal__routes_changed (a reload added route definitions): the new segment header. */
static int journal_routes_changed(void *arg)
{
	struct mqk_journal_counters ctr;
	struct mqk_journal *j;
	struct mqk_route more[3];
	struct mqk_config cfg = j_cfg;
	char errstr[512] = "";
	uint64_t from, to;
	int rc;

	(void)arg;
	memset(&ctr, 0, sizeof(ctr));
	memset(more, 0, sizeof(more));
	more[0].name = (char *)"alpha";
	more[1].name = (char *)"beta";
	more[2].name = (char *)"gamma";
	cfg.routes = more;
	cfg.route_count = 2;
	alloc_fail_pause();
	j = journal__open(&cfg, &j_origin, &ctr, errstr, sizeof(errstr));
	if (j == NULL) {
		fail_msg("journal__open: %s", errstr);
	}
	cfg.route_count = 3;
	alloc_fail_resume();
	rc = journal__routes_changed(j);
	alloc_fail_pause();
	journal__replay_range(j, &from, &to);
	journal__close(j, from);
	alloc_fail_resume();
	return rc;
}

static void test_journal(void **state)
{
	static char dir[128];
	struct mqk_journal_counters ctr;
	struct mqk_buffer b;
	struct mqk_journal *j;
	char errstr[512] = "";
	uint64_t from, to;

	(void)state;
	snprintf(dir, sizeof(dir), "%s/j", base);
	memset(&j_cfg, 0, sizeof(j_cfg));
	memset(j_routes, 0, sizeof(j_routes));
	j_routes[0].name = (char *)"alpha";
	j_routes[1].name = (char *)"beta";
	j_cfg.broker_id = (char *)"b-test";
	j_cfg.routes = j_routes;
	j_cfg.route_count = 2;
	j_cfg.durability = MQK_DURABILITY_JOURNAL;
	j_cfg.journal_dir = dir;
	j_cfg.journal_fsync_ms = -1;
	j_cfg.journal_max_mb = 16;
	j_cfg.journal_segment_mb = 1;
	record__origin_init(&j_origin, j_cfg.broker_id, BOOT_1);

	/* A first run leaves 6000 entries (~2 MiB: three segments) unacknowledged. */
	memset(&ctr, 0, sizeof(ctr));
	memset(&b, 0, sizeof(b));
	b.wake_fd = -1;
	j = journal__open(&j_cfg, &j_origin, &ctr, errstr, sizeof(errstr));
	if (j == NULL) {
		fail_msg("journal__open: %s", errstr);
	}
	assert_int_equal(buffer__init_journal(&b, j), 0);
	for (uint64_t seq = 0; seq < 6000; seq++) {
		assert_int_equal(put(&b, seq), 0);
	}
	assert_true(journal__segment_count(j) >= 3);
	journal__replay_range(j, &from, &to);
	journal__close(j, from);
	buffer__free(&b);

	/* How many a reopen replays (the count every later open must find again). */
	j_replayed = 0;
	assert_int_equal(open_replay(NULL), 0);
	j = journal__open(&j_cfg, &j_origin, &ctr, errstr, sizeof(errstr));
	assert_non_null(j);
	journal__replay_range(j, &from, &to);
	journal__close(j, from);
	assert_true(to > from);
	j_replayed = 6000;
	run_path("journal__open and replay", open_replay, NULL, true);
	run_path("journal__routes_changed", journal_routes_changed, NULL, true);
}

/* ---- the command path ---------------------------------------------------------------- */

/* A presence event queued and taken, its record made (connected and gone), the broker's. */
static int presence_path(void *arg)
{
	struct mqk_handoff h;
	struct mqk_origin origin;
	struct mqk_presence_event *ev, *next;
	char *key = NULL, *value = NULL;
	size_t key_len, value_len;
	int rc = 0;

	(void)arg;
	record__origin_init(&origin, "broker-a", BOOT_1);
	if (handoff__init(&h)) {
		return -1;
	}
	if (handoff__push_event(&h, "dev-1", true, 1000) ||
	    handoff__push_event(&h, "dev-1", false, 2000)) {
		rc = -1;
	}
	for (ev = handoff__take_events(&h); ev != NULL; ev = next) {
		next = ev->next;
		/* On failure the record's strings are freed already (and not set to NULL). */
		if (rc == 0 &&
		    presence__client_record(&origin, ev, &key, &key_len, &value, &value_len) == 0) {
			free(key);
			free(value);
		} else {
			rc = -1;
		}
		free(ev);
	}
	if (rc == 0 &&
	    presence__broker_record(&origin, true, 3000, &key, &key_len, &value, &value_len) == 0) {
		free(key);
		free(value);
	} else {
		rc = -1;
	}
	handoff__free(&h);
	return rc;
}

/* Who is connected: 40 clients connecting (the tables grow), half of them twice. */
static int clients_path(void *arg)
{
	static struct mosquitto conns[60];
	struct mqk_clients *c = clients__new();
	int rc = 0;

	(void)arg;
	if (c == NULL) {
		return -1;
	}
	for (int i = 0; rc == 0 && i < 60; i++) {
		char id[16];

		snprintf(id, sizeof(id), "dev-%d", i % 40);
		rc = clients__connecting(c, &conns[i], id);
	}
	if (rc == 0) {
		clients__tick(c, NULL, NULL);
		assert_int_equal(clients__count(c), 40);
	}
	clients__free(c);
	return rc;
}

/* Redistribute mode's table and hold queue: 100 commands held (the queue grows). */
static int redistribute_path(void *arg)
{
	static struct mqk_command cmds[100];
	const struct mqk_cmd_config *cc = arg;
	struct mqk_redistributor *r = redistribute__new(cc, "broker-a");
	int rc = 0;

	if (r == NULL) {
		return -1;
	}
	for (int i = 0; rc == 0 && i < 100; i++) {
		cmds[i].client_id = "dev-1";
		cmds[i].topic = "cmd/dev-1";
		rc = redistribute__hold(r, &cmds[i], 100 + i, (uint64_t)i);
	}
	redistribute__free(r);
	return rc;
}

/* deliver__publish: the payload copied with mosquitto_malloc, the broker takes it. */
static int publish_path(void *arg)
{
	(void)arg;
	return deliver__publish("dev-1", "cmd/dev-1", 5, "hello", 1, false, NULL) ==
			       MOSQ_ERR_SUCCESS
		       ? 0
		       : -1;
}

/* commands__new in the mode of the configuration, closed at once (no Kafka reachable). */
static int commands_path(void *arg)
{
	const struct mqk_config *cfg = arg;
	struct mqk_origin origin;
	struct mqk_cmd_counters ctr;
	struct mqk_commands *c;
	char errstr[512] = "";

	memset(&ctr, 0, sizeof(ctr));
	record__origin_init(&origin, cfg->broker_id, BOOT_1);
	c = commands__new(cfg, &origin, &ctr, errstr, sizeof(errstr));
	/* What happens next (closing) is not the path under test. */
	alloc_fail_stop();
	if (c == NULL) {
		return checked(-1, errstr);
	}
	commands__close(c, 0);
	return 0;
}

static void parse_commands_config(struct mqk_config *cfg, const char *mode)
{
	struct mosquitto_opt o[] = {
		{(char *)"bootstrap_servers", (char *)"127.0.0.1:1"},
		{(char *)"broker_id", (char *)"broker-a"},
		{(char *)"durability", (char *)"memory"},
		{(char *)"commands_topic", (char *)"commands"},
		{(char *)"commands_mode", (char *)mode},
		{(char *)"commands_wake", (char *)"off"},
	};
	char errstr[512] = "";

	memset(cfg, 0, sizeof(*cfg));
	if (options__parse(cfg, o, sizeof(o) / sizeof(*o), errstr, sizeof(errstr))) {
		fail_msg("%s", errstr);
	}
}

static void test_commands(void **state)
{
	struct mqk_config cfg;

	(void)state;
	run_path("presence events and records", presence_path, NULL, true);
	run_path("clients__connecting", clients_path, NULL, true);
	parse_commands_config(&cfg, "redistribute");
	run_path("redistribute__hold", redistribute_path, &cfg.commands, true);
	run_path("deliver__publish", publish_path, NULL, true);
	run_path("commands__new (redistribute)", commands_path, &cfg, false);
	options__free(&cfg);
	parse_commands_config(&cfg, "broadcast");
	run_path("commands__new (broadcast)", commands_path, &cfg, false);
	options__free(&cfg);
}

/* ---- start-up: counters, metrics, the producer, the inbound consumer ---------------- */

static struct mqk_config su_cfg;

/* stats__init (the $SYS topics), a routes change, metrics__new and a render. */
static int stats_metrics_path(void *arg)
{
	struct mqk_stats st;
	struct mqk_buffer buf;
	struct mqk_metrics *m;
	struct mqk_bytes out = {0};
	char errstr[512] = "";
	int rc = -1;

	(void)arg;
	memset(&buf, 0, sizeof(buf));
	if (stats__init(&st, &su_cfg)) {
		return -1;
	}
	if (stats__routes_changed(&st, &su_cfg)) {
		goto done;
	}
	m = metrics__new(&su_cfg, &buf, errstr, sizeof(errstr));
	if (m == NULL) {
		rc = checked(-1, errstr);
		goto done;
	}
	rc = metrics__render(m, &st, &su_cfg, true, &out);
	free(out.data);
	metrics__free(m);
done:
	stats__free(&st);
	return rc;
}

/* producer__new on a memory buffer (no Kafka reachable), closed at once. */
static int producer_path(void *arg)
{
	struct mqk_buffer buf;
	struct mqk_origin origin;
	struct mqk_counters totals;
	struct mqk_producer *p;
	char errstr[512] = "";

	(void)arg;
	memset(&buf, 0, sizeof(buf));
	memset(&totals, 0, sizeof(totals));
	record__origin_init(&origin, "broker-a", BOOT_1);
	if (buffer__init(&buf, 1 << 20)) {
		return -1;
	}
	p = producer__new(&su_cfg, &buf, &origin, &totals, errstr, sizeof(errstr));
	alloc_fail_stop();
	if (p != NULL) {
		producer__close(p, 0);
	}
	buffer__free(&buf);
	return p ? 0 : checked(-1, errstr);
}

/* inbound__new (its consumer, hand-off queue), closed at once. */
static int inbound_path(void *arg)
{
	struct mqk_inbound_counters ctr;
	struct mqk_inbound *in;
	char errstr[512] = "";

	(void)arg;
	memset(&ctr, 0, sizeof(ctr));
	in = inbound__new(&su_cfg, &ctr, errstr, sizeof(errstr));
	alloc_fail_stop();
	if (in == NULL) {
		return checked(-1, errstr);
	}
	inbound__close(in);
	return 0;
}

static void test_startup(void **state)
{
	static char textfile[128];
	struct mosquitto_opt o[] = {
		{(char *)"bootstrap_servers", (char *)"127.0.0.1:1"},
		{(char *)"broker_id", (char *)"broker-a"},
		{(char *)"durability", (char *)"memory"},
		{(char *)"buffer_mb", (char *)"1"},
		{(char *)"route_raw", (char *)"site/+/+/data -> raw key={clientid}-{2}"},
		{(char *)"route_json", (char *)"site/# -> json format=json key=topic"},
		{(char *)"route_dyn", (char *)"site/+/+/data -> site.{1}.{2}"},
		{(char *)"metrics_listen", (char *)"127.0.0.1:0"},
		{(char *)"metrics_textfile", textfile},
		{(char *)"inbound_news", (char *)"news -> news/{partition}/{key}"},
		{(char *)"inbound_alerts", (char *)"alerts -> alerts/{header:site}"},
		{(char *)"inbound_wake", (char *)"off"},
	};
	char errstr[512] = "";

	(void)state;
	snprintf(textfile, sizeof(textfile), "%s/mqk.prom", base);
	memset(&su_cfg, 0, sizeof(su_cfg));
	if (options__parse(&su_cfg, o, sizeof(o) / sizeof(*o), errstr, sizeof(errstr))) {
		fail_msg("%s", errstr);
	}
	run_path("stats__init and metrics", stats_metrics_path, NULL, true);
	run_path("producer__new", producer_path, NULL, false);
	run_path("inbound__new", inbound_path, NULL, false);
	options__free(&su_cfg);
}

static int setup(void **state)
{
	(void)state;
	fake_broker_reset();
	fake_tempdir(base, sizeof(base), "test-alloc-fail");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	alloc_fail_arm(0);
	alloc_fail_resume();
	fake_tempdir_remove(base);
	fake_broker_reset();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_options, setup, teardown),
		cmocka_unit_test_setup_teardown(test_routes_and_templates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_records, setup, teardown),
		cmocka_unit_test_setup_teardown(test_journal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commands, setup, teardown),
		cmocka_unit_test_setup_teardown(test_startup, setup, teardown),
	};

	alloc_fail_hook_cjson();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
