"""
test_bad_config.py - a configuration mistake stops mosquitto, at once, with one log line
that names the option: "mosquitto_kafka: plugin_opt_<option>: ...".
"""

import re
import socket

import pytest

import harness

BOOT = ("bootstrap_servers", "127.0.0.1:9")  # never contacted: init fails first
ROUTE = ("route_ok", "ok/# -> ok-topic")
CMD = ("commands_topic", "cmds")
CMD_B = ("commands_topic", "cmds.{broker}")
TARGETED = ("commands_mode", "targeted")

# (case id, options, the option the log line must name)
CASES = [
    ("missing-bootstrap", [ROUTE], "bootstrap_servers"),
    ("unknown-option", [BOOT, ("bootstrap_server", "127.0.0.1:9")], "bootstrap_server"),
    ("duplicate-bootstrap", [BOOT, BOOT], "bootstrap_servers"),
    ("bad-filter", [BOOT, ("route_x", "a/#/b -> t")], "route_x"),
    ("route-without-arrow", [BOOT, ("route_x", "a/b t")], "route_x"),
    ("route-without-topic", [BOOT, ("route_x", "a/b ->")], "route_x"),
    ("illegal-kafka-topic", [BOOT, ("route_x", "a/b -> bad!topic")], "route_x"),
    ("kafka-topic-with-space", [BOOT, ("route_x", "a/b -> bad topic!")], "route_x"),
    ("kafka-topic-dotdot", [BOOT, ("route_x", "a/b -> ..")], "route_x"),
    ("kafka-topic-too-long", [BOOT, ("route_x", "a/b -> " + "t" * 250)], "route_x"),
    ("level-without-wildcard", [BOOT, ("route_x", "a/+ -> t.{3}")], "route_x"),
    ("unknown-placeholder", [BOOT, ("route_x", "a/+ -> t.{nosuch}")], "route_x"),
    ("unknown-key-kind", [BOOT, ("route_x", "a/+ -> t key={nosuch}")], "route_x"),
    ("unknown-route-word", [BOOT, ("route_x", "a/+ -> t colour=blue")], "route_x"),
    ("bad-format", [BOOT, ("route_x", "a/+ -> t format=xml")], "route_x"),
    ("sys-route", [BOOT, ("route_x", "$SYS/# -> t")], "route_x"),
    ("control-route", [BOOT, ("route_x", "$CONTROL/# -> t")], "route_x"),
    ("duplicate-route", [BOOT, ("route_x", "a -> t"), ("route_x", "b -> u")], "route_x"),
    ("bad-route-name", [BOOT, ("route_bad!name", "a -> t")], "route_bad!name"),
    ("bad-exclude", [BOOT, ROUTE, ("exclude", "a/#/b")], "exclude"),
    ("unknown-kafka-prop", [BOOT, ("kafka.no.such.prop", "1")], "kafka.no.such.prop"),
    ("bad-kafka-value", [BOOT, ("kafka.acks", "banana")], "kafka.acks"),
    ("kafka-bootstrap-twice", [BOOT, ("kafka.bootstrap.servers", "127.0.0.1:9")],
     "kafka.bootstrap.servers"),
    ("stats-not-a-number", [BOOT, ("stats_interval", "0x")], "stats_interval"),
    ("stats-out-of-range", [BOOT, ("stats_interval", "86401")], "stats_interval"),
    ("stats-negative", [BOOT, ("stats_interval", "-1")], "stats_interval"),
    ("flush-out-of-range", [BOOT, ("flush_timeout_ms", "600001")], "flush_timeout_ms"),
    ("bad-broker-id-chars", [BOOT, ("broker_id", "a/b")], "broker_id"),
    ("bad-broker-id", [BOOT, ("broker_id", "has space!")], "broker_id"),
    ("duplicate-broker-id", [BOOT, ("broker_id", "a"), ("broker_id", "b")], "broker_id"),
    # The command path (docs/commands.md).
    ("commands-mode-without-topic", [BOOT, ("commands_mode", "broadcast")], "commands_mode"),
    ("presence-without-topic", [BOOT, ("presence_topic", "p")], "presence_topic"),
    ("commands-kafka-without-topic", [BOOT, ("commands_kafka.fetch.wait.max.ms", "10")],
     "commands_kafka"),
    ("duplicate-commands-topic", [BOOT, CMD, CMD], "commands_topic"),
    ("illegal-commands-topic", [BOOT, ("commands_topic", "bad topic!")], "commands_topic"),
    ("unknown-commands-mode", [BOOT, CMD, ("commands_mode", "unicast")], "commands_mode"),
    ("targeted-without-broker", [BOOT, CMD, TARGETED], "commands_topic"),
    ("commands-qos-3", [BOOT, CMD, ("commands_qos", "3")], "commands_qos"),
    ("commands-expiry-negative", [BOOT, CMD, ("commands_expiry", "-1")], "commands_expiry"),
    ("commands-max-hops-0", [BOOT, CMD_B, TARGETED, ("commands_max_hops", "0")],
     "commands_max_hops"),
    ("commands-wake-nonsense", [BOOT, CMD, ("commands_wake", "nonsense")], "commands_wake"),
    ("commands-wake-port-0", [BOOT, CMD, ("commands_wake", "127.0.0.1:0")], "commands_wake"),
    ("commands-target-empty-header", [BOOT, CMD, ("commands_target", "header:")],
     "commands_target"),
    ("commands-target-unknown", [BOOT, CMD, ("commands_target", "topic")], "commands_target"),
    ("return-topic-in-broadcast", [BOOT, CMD, ("commands_return_topic", "r")],
     "commands_return_topic"),
    ("dead-letter-topic-in-broadcast", [BOOT, CMD, ("commands_dead_letter_topic", "d")],
     "commands_dead_letter_topic"),
    ("max-hops-in-broadcast", [BOOT, CMD, ("commands_max_hops", "3")], "commands_max_hops"),
    ("commands-mqtt-topic-wildcard", [BOOT, CMD, ("commands_mqtt_topic", "devices/+/in")],
     "commands_mqtt_topic"),
    ("commands-mqtt-topic-sys", [BOOT, CMD, ("commands_mqtt_topic", "$SYS/{clientid}")],
     "commands_mqtt_topic"),
    ("commands-mqtt-topic-placeholder", [BOOT, CMD, ("commands_mqtt_topic", "d/{nosuch}")],
     "commands_mqtt_topic"),
    ("illegal-presence-topic", [BOOT, CMD_B, TARGETED, ("presence_topic", "bad presence")],
     "presence_topic"),
    ("illegal-return-topic", [BOOT, CMD_B, TARGETED, ("commands_return_topic", "r/x")],
     "commands_return_topic"),
    ("unknown-commands-option", [BOOT, CMD, ("commands_colour", "blue")], "commands_colour"),
    ("unknown-commands-kafka-prop", [BOOT, CMD, ("commands_kafka.no.such.prop", "1")],
     "commands_kafka.no.such.prop"),
    ("bad-commands-kafka-value", [BOOT, CMD, ("commands_kafka.fetch.wait.max.ms", "soon")],
     "commands_kafka.fetch.wait.max.ms"),
    # Metrics and health (README "Metrics and health").
    ("metrics-listen-no-port", [BOOT, ("metrics_listen", "127.0.0.1")], "metrics_listen"),
    ("metrics-listen-bad-port", [BOOT, ("metrics_listen", "127.0.0.1:99999")],
     "metrics_listen"),
    ("metrics-listen-foreign-address", [BOOT, ("metrics_listen", "192.0.2.1:9883")],
     "metrics_listen"),
    ("health-max-unacked-0", [BOOT, ("metrics_listen", "127.0.0.1:0"),
                              ("health_max_unacked_s", "0")], "health_max_unacked_s"),
    ("health-max-unacked-too-large", [BOOT, ("metrics_listen", "127.0.0.1:0"),
                                      ("health_max_unacked_s", "86401")],
     "health_max_unacked_s"),
    ("health-without-listen", [BOOT, ("health_max_unacked_s", "5")], "health_max_unacked_s"),
    ("metrics-textfile-relative", [BOOT, ("metrics_textfile", "m.prom")], "metrics_textfile"),
    ("metrics-textfile-missing-dir", [BOOT, ("metrics_textfile", "/nonexistent-mqk/m.prom")],
     "metrics_textfile"),
    # Inbound routes (docs/inbound.md).
    ("inbound-without-arrow", [BOOT, ("inbound_x", "t a/b")], "inbound_x"),
    ("inbound-wildcard-topic", [BOOT, ("inbound_x", "t -> a/+/b")], "inbound_x"),
    ("inbound-hash-topic", [BOOT, ("inbound_x", "t -> a/#")], "inbound_x"),
    ("inbound-sys-topic", [BOOT, ("inbound_x", "t -> $SYS/x")], "inbound_x"),
    ("inbound-illegal-kafka-topic", [BOOT, ("inbound_x", "bad! -> a")], "inbound_x"),
    ("inbound-unknown-placeholder", [BOOT, ("inbound_x", "t -> a/{clientid}")], "inbound_x"),
    ("inbound-qos-3", [BOOT, ("inbound_x", "t -> a qos=3")], "inbound_x"),
    ("inbound-retain-yes", [BOOT, ("inbound_x", "t -> a retain=yes")], "inbound_x"),
    ("inbound-same-kafka-topic", [BOOT, ("inbound_x", "t -> a"), ("inbound_y", "t -> b")],
     "inbound_y"),
    ("inbound-group-without-route", [BOOT, ("inbound_group", "g")], "inbound_group"),
    ("inbound-wake-nonsense", [BOOT, ("inbound_x", "t -> a"), ("inbound_wake", "nonsense")],
     "inbound_wake"),
    ("unknown-inbound-kafka-prop", [BOOT, ("inbound_x", "t -> a"),
                                    ("inbound_kafka.no.such.prop", "1")],
     "inbound_kafka.no.such.prop"),
]


def test_empty_value_stops_mosquitto(start_broker):
    """An empty (or all-blank) value: mosquitto 2.0.11 refuses it itself, before the plugin
    sees it, and names the option in its own words."""
    b = start_broker([BOOT, ("broker_id", " \t ")], wait=False, name="mosquitto-empty")
    b.expect_exit = None
    rc = b.process.wait_exit(10 * harness.SLOW)
    m = re.search(r"^(?:\d+: )?Error: Empty broker_id value in configuration\.$", b.log(), re.M)
    print(f"empty-value: exit code {rc}, line: {m.group(0) if m else None}")
    assert rc != 0 and m, f"exit code {rc} (non-zero expected), log:\n{b.log()}"


def test_unknown_option_suggests(start_broker):
    """A typo: the one line names it, suggests the option meant and lists the known ones
    (options.c's table, in README's order)."""
    b = start_broker([BOOT, ("stats_intervall", "5")], wait=False, name="mosquitto-typo")
    b.expect_exit = None
    rc = b.process.wait_exit(10 * harness.SLOW)
    m = re.search(r"^(?:\d+: )?mosquitto_kafka: plugin_opt_stats_intervall: unknown option, "
                  r"did you mean plugin_opt_stats_interval\? \(known: bootstrap_servers, "
                  r"broker_id, route_<name>, .*, commands_kafka\.<property>\)$", b.log(), re.M)
    print(f"typo: exit code {rc}, line: {m.group(0) if m else None}")
    assert rc != 0 and m, f"exit code {rc} (non-zero expected), log:\n{b.log()}"


@pytest.mark.parametrize("case,options,option", CASES, ids=[c[0] for c in CASES])
def test_bad_config_stops_mosquitto(start_broker, case, options, option):
    b = start_broker(options, wait=False, name=f"mosquitto-{case}")
    b.expect_exit = None  # checked here
    try:
        rc = b.process.wait_exit(10 * harness.SLOW)
    except harness.HarnessError:
        raise AssertionError(f"{case}: mosquitto still running 10 s after start; a bad "
                             f"plugin_opt_{option} must stop it. Log:\n{b.log()}") from None
    log = b.log()
    # mosquitto prefixes each line with "<unix time>: " (log_timestamp true).
    rx = re.compile(r"^(?:\d+: )?mosquitto_kafka: plugin_opt_" + re.escape(option) + r"\b.*$",
                    re.M)
    m = rx.search(log)
    print(f"{case}: exit code {rc}, line: {m.group(0) if m else None}")
    assert rc != 0, f"{case}: mosquitto exited 0, expected non-zero"
    assert m, (f"{case}: no log line starting 'mosquitto_kafka: plugin_opt_{option}'; "
               f"the log:\n{log}")
    # One precise line, not a cascade: the option is named once.
    lines = [ln for ln in log.splitlines() if "mosquitto_kafka: plugin_opt_" in ln]
    assert len(lines) == 1, f"{case}: expected 1 plugin_opt line, got {len(lines)}: {lines}"


def test_metrics_port_in_use_stops_mosquitto(start_broker):
    """metrics_listen on a port something else listens on: one line naming the option and
    the cause."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        b = start_broker([BOOT, ("metrics_listen", f"127.0.0.1:{port}")], wait=False,
                         name="mosquitto-metrics-in-use")
        b.expect_exit = None
        rc = b.process.wait_exit(10 * harness.SLOW)
    m = re.search(r"^(?:\d+: )?mosquitto_kafka: plugin_opt_metrics_listen: '127\.0\.0\.1:"
                  + str(port) + r"': cannot listen on 127\.0\.0\.1 port \d+: Address already "
                  r"in use$", b.log(), re.M)
    print(f"metrics-port-in-use: exit code {rc}, line: {m.group(0) if m else None}")
    assert rc != 0 and m, f"exit code {rc}, log:\n{b.log()}"


def test_good_config_starts(kafka, start_broker):
    """The control: the same base options, valid, start mosquitto (values are trimmed)."""
    b = start_broker([
        ("bootstrap_servers", kafka.bootstrap + "  "),
        ("broker_id", "\tgood-1 "),
        ("route_ok", "ok/# -> ok-topic key={1} format=json "),
        ("route_tpl", "a/+/b/# -> t.{1} key=none"),
        ("exclude", "ok/private/#"),
        ("kafka.acks", "all"),
        ("kafka.linger.ms", "10"),
        ("stats_interval", "0  "),
        ("flush_timeout_ms", "600000"),
    ], name="mosquitto-good")
    assert b.process.alive()
    assert "mosquitto_kafka: plugin_opt_" not in b.log()
    rc = b.stop()
    print(f"good config: started, stopped with exit code {rc}")
    assert rc == 0, f"mosquitto exited {rc} after SIGTERM, expected 0"


def test_good_commands_config_starts(kafka, start_broker):
    """The control for the command options: every broadcast-mode option, valid."""
    b = start_broker([
        ("bootstrap_servers", kafka.bootstrap),
        ("broker_id", "good-cmd"),
        ("commands_topic", "good-commands "),
        ("commands_mode", "broadcast"),
        ("commands_group", "good-group-{broker}"),
        ("commands_target", "header:device"),
        ("commands_mqtt_topic", "cmd/{broker}/{clientid}"),
        ("commands_qos", "0"),
        ("commands_expiry", "60"),
        ("commands_wake", "off"),
        ("commands_kafka.fetch.wait.max.ms", "100"),
    ], name="mosquitto-good-commands")
    m = re.search(r"mosquitto_kafka: commands: broadcast mode, from Kafka topic good-commands "
                  r"\(group good-group-good-cmd\), to cmd/\{broker\}/\{clientid\} QoS 0",
                  b.log())
    assert b.process.alive() and m, b.log()
    assert "mosquitto_kafka: plugin_opt_" not in b.log()
    rc = b.stop()
    print(f"good commands config: {m.group(0)}; stopped with exit code {rc}")
    assert rc == 0, f"mosquitto exited {rc} after SIGTERM, expected 0"
