"""
test_outage.py - Kafka goes away under load and comes back: what mosquitto acknowledged
waits (in librdkafka's queue, then in the plugin's buffer) and reaches Kafka in order;
only a full buffer drops, and then every drop is counted and shows as an mqtt.seq gap.

The outage is the session's Kafka's (conftest.py's kafka, by MQK_KAFKA): real Kafka's
nodes are stopped and started again on the same ports with their data; mqk-devkafka's
brokers go down on SIGUSR1 and come back on SIGUSR2. kafka_up_after brings it back
even when a test fails half-way.
"""

import time
from collections import defaultdict

import harness
from harness import HDR, V311, V5


def publish_all(port, prefix, clients, per_client, payload_size, protocol=V311):
    """Each client publishes per_client QoS 1 messages numbered from 0 and waits for every
    PUBACK. Returns {client_id: count}."""
    sent = {}
    for i in range(clients):
        cid = f"{prefix}-{i}"
        c = harness.Client(port, cid, protocol, max_inflight=20)
        infos = [c.publish(f"o/{cid}", str(n).encode().ljust(payload_size, b"."), qos=1)
                 for n in range(per_client)]
        harness.wait_published(infos, 60)
        c.close()
        sent[cid] = per_client
    return sent


def test_outage_records_wait_and_arrive(kafka_up_after, start_broker):
    kafka = kafka_up_after
    topic = harness.unique("outage")
    kafka.create_topic(topic, 4)
    b = start_broker([
        ("bootstrap_servers", kafka.bootstrap),
        ("broker_id", "itest-outage"),
        ("route_o", f"o/# -> {topic}"),
        # A small librdkafka queue, so that the plugin's buffer takes the rest.
        ("kafka.queue.buffering.max.messages", "500"),
        ("stats_interval", "1"),
    ], name="mosquitto-outage")
    stats = harness.SysCounters(b.port)

    before = publish_all(b.port, "pre", 1, 100, 50)
    stats.wait_for({"delivered": 100})

    kafka.down()
    during = publish_all(b.port, "dev", 3, 1000, 50)
    # Every message was acknowledged by mosquitto while Kafka was away: where is it now?
    got = stats.wait_for({"matched": 3100, "in_flight": 500}, timeout=15)
    waiting = dict(stats.values)
    print(f"Kafka down: 3000 acknowledged; in librdkafka {waiting.get('in_flight')}, "
          f"buffered_bytes {waiting.get('buffered_bytes')}, delivered {waiting.get('delivered')}")
    assert got == {"matched": 3100, "in_flight": 500}, got
    assert int(waiting["buffered_bytes"]) > 0, "the buffer holds what librdkafka could not"
    assert int(waiting["delivered"]) == 100

    time.sleep(3)  # an outage of some seconds: librdkafka backs off its reconnects
    kafka.up()

    expect = sum(before.values()) + sum(during.values())
    records = harness.read_topic(kafka.bootstrap, topic, expect, timeout=90, grace=2)
    per_client = defaultdict(list)
    for r in records:
        cid = r.header_str(HDR.CLIENT_ID)
        per_client[cid].append((r.partition, r.offset, int(r.value.split(b".")[0])))
    seq = harness.one_sequence([int(r.header_str(HDR.SEQ)) for r in records], expect)
    print(f"{expect} acknowledged, {len(records)} in Kafka, {len(seq.missing)} lost, "
          f"{seq.duplicates} duplicates")
    assert len(seq.missing) == 0, f"mqtt.seq missing: {seq.missing[:20]}"
    assert seq.duplicates == 0 and not seq.unexpected, seq
    assert len(records) == expect
    for cid, items in per_client.items():
        assert len({p for p, _, _ in items}) == 1, f"{cid}: records in several partitions"
        numbers = [n for _, _, n in sorted(items)]
        assert numbers == list(range(len(numbers))), f"{cid}: not in publish order"

    final = stats.wait_for({"delivered": expect, "in_flight": 0, "buffered_bytes": 0,
                            "buffer_full": 0, "failed": 0}, timeout=15)
    stats.close()
    assert final == {"delivered": expect, "in_flight": 0, "buffered_bytes": 0, "buffer_full": 0,
                     "failed": 0}, final


def test_full_buffer_drops_are_counted(kafka_up_after, start_broker):
    kafka = kafka_up_after
    topic = harness.unique("overflow")
    kafka.create_topic(topic, 4)
    b = start_broker([
        ("bootstrap_servers", kafka.bootstrap),
        ("broker_id", "itest-overflow"),
        ("route_o", f"o/# -> {topic}"),
        ("kafka.queue.buffering.max.messages", "100"),
        ("durability", "memory"),
        ("buffer_mb", "1"),
        ("overflow", "drop_new"),  # counted drops; reject has tests of its own (test_journal)
        ("stats_interval", "1"),
    ], name="mosquitto-overflow")
    stats = harness.SysCounters(b.port)

    kafka.down()
    # 400 messages of 10 KiB: 100 fit in librdkafka's queue, ~100 in a 1 MiB buffer.
    sent = publish_all(b.port, "ovf", 1, 400, 10 * 1024, V5)
    n = sum(sent.values())
    b.wait_log(r"mosquitto_kafka: the buffer \(buffer_mb\) is full", 10)
    time.sleep(1.5)
    dropped = int(stats.values.get("buffer_full", "0"))
    print(f"Kafka down: {n} acknowledged, {dropped} dropped for Kafka (buffer_full)")
    assert 0 < dropped < n

    kafka.up()
    records = harness.read_topic(kafka.bootstrap, topic, n - dropped, timeout=90, grace=2)
    seq = harness.one_sequence([int(r.header_str(HDR.SEQ)) for r in records], n)
    print(f"{len(records)} in Kafka + {dropped} counted as dropped = {len(records) + dropped}; "
          f"{len(seq.missing)} mqtt.seq gaps")
    assert len(records) + dropped == n
    assert len(seq.missing) == dropped, "every drop shows as a gap in mqtt.seq, and nothing else"
    assert seq.duplicates == 0 and not seq.unexpected, f"no duplicates: {seq}"
    final = stats.wait_for({"delivered": n - dropped, "in_flight": 0, "buffered_bytes": 0},
                           timeout=15)
    stats.close()
    assert final == {"delivered": n - dropped, "in_flight": 0, "buffered_bytes": 0}, final
