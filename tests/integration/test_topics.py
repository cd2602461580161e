"""
test_topics.py - routed Kafka topics that do not exist, on a REAL Apache Kafka (a 1-node
KRaft cluster from tests/kafka/kafka.py, topic auto-creation off):

  create_topics false (the default): records for a missing topic are failed by librdkafka,
      counted in $SYS/broker/kafka/failed, and the log says what to do;
  create_topics true: the plugin creates the static topic at start and each dynamic
      (templated) topic before its first record, with topic_partitions partitions, and
      every message arrives; a second broker finds the topics there (TOPIC_ALREADY_EXISTS);
  a creation Kafka refuses (replication factor 3 on one node) is logged with Kafka's
      reason, and the records are failed and counted, not lost silently; the broker goes on.
"""

import importlib.util
import os
import re
import sys
import time

import pytest

import harness
from harness import V311

KAFKA_PY = os.path.join(harness.SOURCE_DIR, "tests", "kafka", "kafka.py")


def _kafka_module():
    """tests/kafka/kafka.py, imported by path under a name of its own."""
    name = "mqk_test_topics_kafka"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, KAFKA_PY)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


@pytest.fixture(scope="module")
def real_kafka():
    """One real 1-node Kafka for the module (auto.create.topics.enable=false)."""
    km = _kafka_module()
    km.fetch()
    cluster = km.KafkaCluster(nodes=1, die_with_parent=True)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def plugin_lines(broker, *words):
    """The plugin's log lines that contain one of words (for the test's output)."""
    return [ln for ln in broker.log().splitlines()
            if "mosquitto_kafka:" in ln and any(w in ln for w in words)]


def topic_names(cluster):
    return {t["topic"] for t in cluster.metadata().get("topics", [])}


def partition_count(cluster, topic):
    return len(cluster.partitions(topic))


def test_missing_topic_is_a_counted_error(real_kafka, start_broker):
    topic = harness.unique("mqk-missing")
    b = start_broker([
        ("bootstrap_servers", real_kafka.bootstrap),
        ("broker_id", "itest-topics-missing"),
        ("route_gone", f"gone/# -> {topic}"),
        ("stats_interval", "1"),
        # librdkafka fails a record for a missing topic after this (default 30 s).
        ("kafka.topic.metadata.propagation.max.ms", "1000"),
    ], name="mosquitto-missing")
    stats = harness.SysCounters(b.port)
    c = harness.Client(b.port, harness.unique("missing"), V311)
    # First batch: librdkafka does not know yet, and fails them in delivery reports.
    for i in range(5):
        c.publish_wait("gone/a", b"first-%d" % i, qos=1)
    line = (rf"mosquitto_kafka: route gone: Kafka topic '{re.escape(topic)}' does not exist "
            r"\(topic auto-creation is off\?\): create it, or set plugin_opt_create_topics "
            r"true")
    b.wait_log(line, timeout=30)
    # Second batch: librdkafka now knows the topic is missing and refuses them at once.
    for i in range(5):
        c.publish_wait("gone/b", b"second-%d" % i, qos=1)
    c.close()
    expect = {"matched": 10, "produced": 10, "delivered": 0, "failed": 10,
              "routes/gone/failed": 10, "routes/gone/delivered": 0, "refused": 0}
    got = stats.wait_for(expect, timeout=30)
    stats.close()
    print(f"missing topic: 10 published, {got['failed']} failed, {got['delivered']} delivered")
    print("\n".join(plugin_lines(b, "does not exist")))
    assert got == expect
    # The log line is rate-limited: one line for ten failures within 10 s, not ten.
    assert len(re.findall(line, b.log())) <= 2
    # The plugin did not create the topic.
    assert topic not in topic_names(real_kafka)


def test_create_topics(real_kafka, start_broker):
    p = harness.unique("mqk-create")
    static = f"{p}.static"
    dyn = [f"{p}.dyn.a", f"{p}.dyn.b"]
    options = [
        ("bootstrap_servers", real_kafka.bootstrap),
        ("create_topics", "true"),
        ("topic_partitions", "3"),
        ("route_static", f"s/# -> {static}"),
        ("route_dyn", f"t/+ -> {p}.dyn.{{1}}"),
        ("stats_interval", "1"),
    ]
    b = start_broker(options + [("broker_id", "itest-topics-create")],
                     name="mosquitto-create")
    # The static topic is created at start, before any message.
    b.wait_log(rf"route static: created Kafka topic '{re.escape(static)}' \(3 partitions, "
               r"replication factor the brokers' default\)", timeout=30)
    real_kafka.wait_topic(static, 3, timeout=30)
    for t in dyn:
        assert t not in topic_names(real_kafka), f"{t} exists before any message"

    stats = harness.SysCounters(b.port)
    c = harness.Client(b.port, harness.unique("create"), V311)
    n = 40
    sent = {static: [], dyn[0]: [], dyn[1]: []}
    infos = []
    for i in range(n):
        for mqtt_topic, kafka_topic in (("s/x", static), ("t/a", dyn[0]), ("t/b", dyn[1])):
            payload = b"%s-%d" % (mqtt_topic.encode(), i)
            infos.append(c.publish(mqtt_topic, payload, qos=1))
            sent[kafka_topic].append(payload)
    harness.wait_published(infos, 30)
    c.close()

    for t in dyn:
        b.wait_log(rf"route dyn: created Kafka topic '{re.escape(t)}' \(3 partitions",
                   timeout=30)
    total = 0
    for t, want in sent.items():
        assert partition_count(real_kafka, t) == 3, f"{t}: {real_kafka.partitions(t)}"
        got = harness.read_topic(real_kafka.bootstrap, t, len(want), timeout=30, grace=1)
        values = [r.value for r in got]
        print(f"{t}: 3 partitions, {len(want)} sent, {len(values)} received")
        # One client, key=clientid: one partition, in publish order, no duplicate.
        assert values == want
        total += len(values)
    expect = {"delivered": 3 * n, "failed": 0, "routes/static/delivered": n,
              "routes/dyn/delivered": 2 * n, "refused": 0}
    got = stats.wait_for(expect, timeout=30)
    stats.close()
    assert got == expect
    assert total == 3 * n
    print("\n".join(plugin_lines(b, "Kafka topic", "created with")))
    assert "cannot create Kafka topic" not in b.log()

    # A second broker with the same routes finds the topic there: TOPIC_ALREADY_EXISTS is
    # success, and its records are delivered.
    b2 = start_broker(options + [("broker_id", "itest-topics-create2")],
                      name="mosquitto-create2")
    b2.wait_log(rf"route static: Kafka topic '{re.escape(static)}' exists", timeout=30)
    c2 = harness.Client(b2.port, harness.unique("create2"), V311)
    c2.publish_wait("t/a", b"from-b2", qos=1)
    c2.close()
    b2.wait_log(rf"route dyn: Kafka topic '{re.escape(dyn[0])}' exists", timeout=30)
    got = harness.read_topic(real_kafka.bootstrap, dyn[0], n + 1, timeout=30, grace=1)
    # Another client id, so maybe another partition: not necessarily read last.
    assert [r.value for r in got].count(b"from-b2") == 1
    assert len(got) == n + 1
    assert "created Kafka topic" not in b2.log()


def test_create_refused_by_kafka(real_kafka, start_broker):
    topic = harness.unique("mqk-refused")
    b = start_broker([
        ("bootstrap_servers", real_kafka.bootstrap),
        ("broker_id", "itest-topics-refused"),
        ("create_topics", "true"),
        ("topic_replication_factor", "3"),  # one node: Kafka refuses
        ("route_r", f"r/# -> {topic}"),
        ("stats_interval", "1"),
        ("kafka.topic.metadata.propagation.max.ms", "1000"),
    ], name="mosquitto-refused")
    b.wait_log(rf"route r: cannot create Kafka topic '{re.escape(topic)}' \(6 partitions, "
               r"replication factor 3\): .*INVALID_REPLICATION_FACTOR", timeout=30)
    stats = harness.SysCounters(b.port)
    c = harness.Client(b.port, harness.unique("refused"), V311)
    started = time.monotonic()
    for i in range(5):
        c.publish_wait("r/x", b"%d" % i, qos=1)
    c.close()
    expect = {"matched": 5, "failed": 5, "delivered": 0}
    got = stats.wait_for(expect, timeout=30)
    stats.close()
    print(f"refused creation: 5 published, {got['failed']} failed in "
          f"{time.monotonic() - started:.1f} s")
    assert got == expect
    b.wait_log(rf"route r: Kafka topic '{re.escape(topic)}' does not exist and could not be "
               r"created", timeout=10)
    print("\n".join(plugin_lines(b, "Kafka topic")))
    assert topic not in topic_names(real_kafka)
