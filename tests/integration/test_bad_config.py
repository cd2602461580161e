"""
test_bad_config.py - a configuration mistake stops mosquitto, at once, with one log line
that names the option: "mosquitto_kafka: plugin_opt_<option>: ...".
"""

import re

import pytest

import harness

BOOT = ("bootstrap_servers", "127.0.0.1:9")  # never contacted: init fails first
ROUTE = ("route_ok", "ok/# -> ok-topic")

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
