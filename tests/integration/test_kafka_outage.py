"""
test_kafka_outage.py - a real 1-node Kafka stops for 20 s under steady QoS 1 load and
starts again on the same port with its data: everything mosquitto acknowledged meanwhile
waited (in librdkafka's queue, retrying forever) and is in Kafka afterwards, once, in
publish order per key. Longer outages than librdkafka's queue holds are the journal's.

Always a real cluster of its own, whatever MQK_KAFKA says (test_outage.py covers the
plugin's buffer against the switch's Kafka).
"""

import re
import time

import pytest

import harness
from harness import HDR

CLIENTS = 5
RATE = 500      # messages per second, all clients together
BEFORE = 5.0    # seconds of load before Kafka stops
OUTAGE = 20.0   # seconds Kafka is down, under load
AFTER = 5.0     # seconds of load once it is back


@pytest.fixture(scope="module")
def kafka1():
    k = harness.RealKafka(nodes=1)
    yield k
    k.cleanup()


def test_kafka_stopped_20s_under_load_nothing_lost(kafka1, start_broker):
    topic = harness.unique("koutage")
    kafka1.create_topic(topic, 4)
    broker = start_broker([
        ("bootstrap_servers", kafka1.bootstrap),
        ("broker_id", "itest-koutage"),
        ("route_ko", f"ko/# -> {topic}"),
        ("stats_interval", "1"),
    ], name="mosquitto-koutage")
    stats = harness.SysCounters(broker.port)

    load = harness.Load(broker.port, CLIENTS, RATE, "ko", prefix="ko").start()
    try:
        time.sleep(BEFORE)
        kafka1.down()
        down_at = time.monotonic()
        at_down = load.published()
        time.sleep(OUTAGE)
        during = load.published() - at_down
        waiting = dict(stats.values)
        up_s = kafka1.up()
        outage_s = time.monotonic() - down_at
        time.sleep(AFTER)
    finally:
        published = load.stop(wait_acks=True, timeout=60)
    total = sum(published.values())
    print(f"Kafka down {outage_s:.1f} s (back in {up_s:.1f} s) under load: {during} "
          f"published meanwhile; at the end of the outage in_flight "
          f"{waiting.get('in_flight')}, buffered_bytes {waiting.get('buffered_bytes')}, "
          f"delivered {waiting.get('delivered')}")
    assert not load.errors and not load.disconnected, (load.errors, load.disconnected)

    records = harness.read_topic(kafka1.bootstrap, topic, total, timeout=120, grace=2)
    rep = harness.sequence_report(records, published)
    seq = harness.one_sequence([int(r.header_str(HDR.SEQ)) for r in records], total)
    seq_gaps = len(seq.missing)
    print(harness.format_report(rep) + f"; mqtt.seq gaps {seq_gaps}")
    for line in rep["examples"]:
        print("  " + line)
    final = stats.wait_for({"delivered": total, "in_flight": 0, "failed": 0,
                            "buffer_full": 0}, timeout=30)
    stats.close()
    print(f"counters after: {final}")

    rc = broker.stop()
    m = re.search(r"mosquitto_kafka: shutdown: (\d+) records not delivered", broker.log())
    assert (rep["lost"], rep["duplicates"], rep["out_of_order"], rep["unexpected"]) == \
        (0, 0, 0, 0), harness.format_report(rep) + "\n" + "\n".join(rep["examples"])
    assert rep["in_kafka"] == total and seq_gaps == 0
    assert during > 0.5 * RATE * OUTAGE, f"only {during} published during the outage"
    assert int(waiting.get("in_flight", "0")) > 0, "records should wait while Kafka is down"
    assert final == {"delivered": total, "in_flight": 0, "failed": 0, "buffer_full": 0}, final
    assert rc == 0 and m and m.group(1) == "0", f"exit {rc}, shutdown line {m and m.group(0)}"
