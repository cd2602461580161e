"""
test_shutdown.py - at SIGTERM the plugin flushes within flush_timeout_ms and says what it
could not deliver: "mosquitto_kafka: shutdown: N records not delivered to Kafka", then a
summary of its counters.
"""

import re
import time

import harness
from harness import V311, V5

SHUTDOWN_RX = r"mosquitto_kafka: shutdown: (\d+) records not delivered to Kafka"


def summary(log, scope):
    """The counters of the shutdown summary line of scope ("totals", "route x")."""
    m = re.search(r"mosquitto_kafka: " + re.escape(scope) + r": (matched \d+.*)$", log, re.M)
    assert m, f"no summary line for {scope!r} in the log:\n{log}"
    return {k: int(v) for k, v in re.findall(r"(\w+) (\d+)", m.group(1))}


def test_clean_shutdown_delivers_everything(kafka, start_broker):
    topic = harness.unique("shut")
    kafka.create_topic(topic)
    b = start_broker([
        ("bootstrap_servers", kafka.bootstrap),
        ("route_all", f"s/# -> {topic}"),
        ("stats_interval", "0"),
    ], name="mosquitto-shut")
    n = 3000
    clients = [harness.Client(b.port, harness.unique("sh"), V5 if i else V311)
               for i in range(3)]
    infos = []
    for i in range(n):
        c = clients[i % 3]
        infos.append(c.publish(f"s/{i % 7}", str(i).encode(), qos=i % 3))
        if i % 300 == 299:
            harness.wait_published(infos[-300:], 30)
    harness.wait_published(infos, 60)
    for c in clients:
        c.close()
    # SIGTERM right away: whatever is still queued in librdkafka must be flushed now.
    rc = b.stop()
    log = b.log()
    m = re.search(SHUTDOWN_RX, log)
    assert m, f"no shutdown line /{SHUTDOWN_RX}/ in the log:\n{log}"
    undelivered = int(m.group(1))
    totals = summary(log, "totals")
    route = summary(log, "route all")
    recs = harness.read_topic(kafka.bootstrap, topic, n, timeout=60)
    values = [r.value for r in recs]
    print(f"{n} sent, {len(recs)} in Kafka, {len(values) - len(set(values))} duplicates, "
          f"shutdown line: {undelivered} not delivered, totals {totals}")
    assert rc == 0, f"mosquitto exited {rc} after SIGTERM, expected 0"
    assert undelivered == 0, f"0 undelivered expected, the plugin says {undelivered}"
    want = {"matched": n, "produced": n, "delivered": n, "failed": 0, "in_flight": 0}
    assert {k: totals.get(k) for k in want} == want, f"totals: expected {want}, got {totals}"
    assert {k: route.get(k) for k in want} == want, f"route all: expected {want}, got {route}"
    assert sorted(values) == sorted(str(i).encode() for i in range(n)), \
        f"Kafka: {n} distinct records expected, {len(set(values))} distinct of {len(values)}"


def test_kafka_down_at_shutdown_counts_the_lost(kafka_up_after, start_broker):
    """Memory durability: Kafka stops; the records published after it are reported lost,
    exactly."""
    kafka = kafka_up_after
    topic = harness.unique("down")
    kafka.create_topic(topic)
    flush_ms = 1000
    b = start_broker([
        ("durability", "memory"),
        ("bootstrap_servers", kafka.bootstrap),
        ("route_all", f"d/# -> {topic}"),
        ("flush_timeout_ms", str(flush_ms)),
        ("stats_interval", "0"),
    ], name="mosquitto-down")
    c = harness.Client(b.port, harness.unique("dn"), V311)
    # While Kafka is up: 10 records, all delivered (the producer is connected).
    for i in range(10):
        c.publish_wait("d/up", f"up{i}".encode())
    before = harness.read_topic(kafka.bootstrap, topic, 10, timeout=30)
    assert len(before) == 10, f"10 records expected while Kafka is up, got {len(before)}"

    kafka.down()
    n = 200
    for i in range(n):
        c.publish_wait("d/down", f"down{i}".encode())
    c.close()
    t0 = time.monotonic()
    rc = b.stop(timeout=30)
    took = time.monotonic() - t0
    log = b.log()
    m = re.search(SHUTDOWN_RX, log)
    assert m, f"no shutdown line /{SHUTDOWN_RX}/ in the log:\n{log}"
    undelivered = int(m.group(1))
    totals = summary(log, "totals")
    print(f"{n + 10} sent, 10 delivered before Kafka stopped, shutdown after {took:.1f} s "
          f"(flush_timeout_ms {flush_ms}): {undelivered} not delivered; totals {totals}")
    assert rc == 0, f"mosquitto exited {rc}, expected 0"
    assert undelivered == n, f"{n} records were never delivered, the plugin says {undelivered}"
    assert totals.get("delivered") == 10 and totals.get("failed") == n, (
        f"totals: delivered 10 and failed {n} expected, got {totals}")
    assert took < flush_ms / 1000 + 10 * harness.SLOW, (
        f"shutdown took {took:.1f} s with flush_timeout_ms {flush_ms}")


def test_kafka_down_at_shutdown_the_journal_keeps_them(kafka_up_after, start_broker):
    """Journal durability (the default): Kafka stops, 200 records are published, mosquitto
    stops. The shutdown line says they stay in the journal; the next start, Kafka back,
    sends them: all 210 in Kafka, once each."""
    kafka = kafka_up_after
    topic = harness.unique("jdown")
    kafka.create_topic(topic)
    journal = harness.make_journal_dir(harness.make_tempdir("mqk-jdown-"))
    options = [
        ("bootstrap_servers", kafka.bootstrap),
        ("broker_id", "itest-jdown"),
        ("route_all", f"d/# -> {topic}"),
        ("journal_dir", journal),
        ("flush_timeout_ms", "1000"),
        ("stats_interval", "0"),
    ]
    b = start_broker(options, name="mosquitto-jdown")
    c = harness.Client(b.port, harness.unique("jd"), V311)
    for i in range(10):
        c.publish_wait("d/up", f"up{i}".encode())
    assert len(harness.read_topic(kafka.bootstrap, topic, 10, timeout=30)) == 10

    kafka.down()
    n = 200
    for i in range(n):
        c.publish_wait("d/down", f"down{i}".encode())
    c.close()
    assert b.stop(timeout=30) == 0
    m = re.search(SHUTDOWN_RX + r" yet: they stay in the journal", b.log())
    assert m, f"no journal shutdown line in the log:\n{b.log()[-3000:]}"
    kept = int(m.group(1))
    assert kept == n, f"{n} records not delivered, the plugin says {kept}"

    kafka.up()
    b2 = start_broker(options, name="mosquitto-jdown-2")
    b2.wait_log(r"mosquitto_kafka: journal: replaying %d records" % n, 10)
    records = harness.read_topic(kafka.bootstrap, topic, n + 10, timeout=60, grace=2)
    values = sorted(r.value for r in records)
    expected = sorted([f"up{i}".encode() for i in range(10)] +
                      [f"down{i}".encode() for i in range(n)])
    print(f"{n} kept in the journal at shutdown, replayed at the next start: "
          f"{len(records)} records in Kafka")
    assert values == expected, f"{len(values)} records, expected {len(expected)}, once each"
