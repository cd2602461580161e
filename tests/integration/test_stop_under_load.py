"""
test_stop_under_load.py - mosquitto gets SIGTERM while clients publish QoS 1 at a steady
rate. Its shutdown line "mosquitto_kafka: shutdown: N records not delivered to Kafka" must
be exactly what Kafka lacks: of the mqtt.seq numbers 1..matched (matched: the plugin's
shutdown summary, one route, so one sequence), N are missing from Kafka and no other,
none is there twice, and none beyond matched exists.

- Kafka up: the flush (flush_timeout_ms 10 s) delivers everything; N is 0.
- Kafka stopped under load 3 s before the SIGTERM, flush_timeout_ms 500, durability memory:
  what the plugin holds then (in librdkafka's queue and its buffer) is lost and counted; Kafka, started
  again after mosquitto exited, shows the same number missing.

Always a real 1-node Kafka of its own, whatever MQK_KAFKA says.
"""

import re
import time

import pytest

import harness
from harness import HDR

SHUTDOWN_RX = r"mosquitto_kafka: shutdown: (\d+) records not delivered to Kafka"
CLIENTS = 5
RATE = 1000


@pytest.fixture(scope="module")
def kafka1():
    k = harness.RealKafka(nodes=1)
    yield k
    k.up()
    k.cleanup()


# Records stored by Kafka whose acknowledgement was lost when it went away (see below).
POSSIBLY_PERSISTED_MAX = 200


def totals(log):
    m = re.search(r"mosquitto_kafka: totals: (matched \d+.*)$", log, re.M)
    assert m, f"no shutdown summary (totals) in the log:\n{log}"
    return {k: int(v) for k, v in re.findall(r"(\w+) (\d+)", m.group(1))}


def stop_and_compare(kafka, broker, load, topic, before_stop=None):
    """SIGTERMs mosquitto under load; returns (N from the log, missing seqs, the rest)."""
    if before_stop:
        before_stop()
    published = load.published()
    t0 = time.monotonic()
    rc = broker.stop(timeout=60)
    took = time.monotonic() - t0
    load.stop(wait_acks=False)
    log = broker.log()
    m = re.search(SHUTDOWN_RX, log)
    assert m, f"no shutdown line /{SHUTDOWN_RX}/ in the log:\n{log}"
    n_lost = int(m.group(1))
    tot = totals(log)
    kafka.up()
    matched = tot["matched"]
    records = harness.read_topic(kafka.bootstrap, topic, matched - n_lost, timeout=60, grace=3)
    seq = harness.one_sequence([int(r.header_str(HDR.SEQ)) for r in records], matched)
    missing, beyond, dups = set(seq.missing), set(seq.unexpected), seq.duplicates
    print(f"SIGTERM after {published} publishes: mosquitto exited {rc} in {took:.1f} s; "
          f"matched {matched}, totals {tot}; shutdown line: {n_lost} not delivered; "
          f"Kafka: {len(records)} records, {len(missing)} of mqtt.seq 1..{matched} missing, "
          f"{dups} duplicates, {len(beyond)} beyond")
    assert rc == 0, f"mosquitto exited {rc} after SIGTERM"
    assert dups == 0 and not beyond, f"{dups} duplicates, {len(beyond)} unexpected seqs"
    # The shutdown line counts the records Kafka did not acknowledge. When Kafka goes away
    # mid-request, a few of those may have been stored with the acknowledgement lost
    # ("possibly persisted"): at most the requests in flight then (max.in.flight 5 per
    # connection, a few records each per partition). Never more missing than counted.
    assert len(missing) <= n_lost <= len(missing) + POSSIBLY_PERSISTED_MAX, (
        f"the shutdown line says {n_lost} not delivered, Kafka lacks {len(missing)} "
        f"(e.g. {sorted(missing)[:10]})")
    assert tot.get("failed", 0) + tot.get("delivered", 0) + tot.get("buffer_full", 0) <= matched
    return n_lost, missing, tot


def test_sigterm_under_load_kafka_up(kafka1, start_broker):
    topic = harness.unique("stopup")
    kafka1.create_topic(topic, 4)
    broker = start_broker([
        ("bootstrap_servers", kafka1.bootstrap),
        ("broker_id", "itest-stop-up"),
        ("route_s", f"s/# -> {topic}"),
        ("stats_interval", "0"),
    ], name="mosquitto-stop-up")
    load = harness.Load(broker.port, CLIENTS, RATE, "s", prefix="su").start()
    time.sleep(4)
    n_lost, missing, tot = stop_and_compare(kafka1, broker, load, topic)
    assert n_lost == 0, f"Kafka was up: nothing should be lost, the plugin says {n_lost}"
    assert tot["matched"] > 2000, f"only {tot['matched']} messages under load"


def test_sigterm_under_load_kafka_down(kafka1, start_broker):
    topic = harness.unique("stopdown")
    kafka1.create_topic(topic, 4)
    broker = start_broker([
        ("durability", "memory"),  # lost and counted; the journal keeps them (test_shutdown)
        ("bootstrap_servers", kafka1.bootstrap),
        ("broker_id", "itest-stop-down"),
        ("route_s", f"s/# -> {topic}"),
        ("flush_timeout_ms", "500"),
        ("stats_interval", "0"),
    ], name="mosquitto-stop-down")
    load = harness.Load(broker.port, CLIENTS, RATE, "s", prefix="sd").start()
    time.sleep(3)

    def kafka_down_a_while():
        kafka1.down()
        time.sleep(3)
    n_lost, missing, tot = stop_and_compare(kafka1, broker, load, topic, kafka_down_a_while)
    assert n_lost > 1000, f"Kafka was down for 3 s under load: {n_lost} lost is too few"
