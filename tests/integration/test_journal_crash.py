"""
test_journal_crash.py - the journal with the real mosquitto and a real 1-node Kafka of its
own (docs/journal.md):

- Kafka down 60 s under 2,000 msg/s QoS 1: when it returns, every acknowledged message is
  in Kafka (librdkafka's queue kept small, so that the journal holds most of them);
- kill -9 of mosquitto while Kafka is down: started again on the same journal, with Kafka
  back, it replays, and every message a publisher got a PUBACK for is in Kafka;
- garbage appended to the last segment (a crash mid-write): start-up logs the cut and goes
  on, nothing before it lost;
- a full journal: overflow reject (QoS 1 gets no PUBACK and the client resends, v3.1.1 and
  v5), drop_new and drop_oldest, each counted;
- journal_dir that mosquitto's user cannot write: mosquitto refuses to start, one line.
"""

import os
import re
import shutil
import signal
import subprocess
import time

import pytest

import harness
from harness import V311, V5

REPLAY_RX = r"mosquitto_kafka: journal: replaying (\d+) records"


@pytest.fixture(scope="module")
def kafka1():
    k = harness.RealKafka(nodes=1)
    yield k
    k.cleanup()


@pytest.fixture
def kafka_back(kafka1):
    yield kafka1
    kafka1.up()


def journal_options(kafka, topic, journal, name, *extra):
    return [
        ("bootstrap_servers", kafka.bootstrap),
        ("broker_id", name),
        ("route_j", f"j/# -> {topic}"),
        ("journal_dir", journal),
        ("stats_interval", "1"),
    ] + list(extra)


def check_sequences(kafka, topic, published, timeout=120):
    total = sum(published.values())
    records = harness.read_topic(kafka.bootstrap, topic, total, timeout=timeout, grace=2)
    rep = harness.sequence_report(records, published)
    print(harness.format_report(rep))
    assert rep["lost"] == 0 and rep["unexpected"] == 0, rep["examples"]
    return rep


def test_kafka_down_60s_at_2000_per_s(kafka_back, start_broker):
    kafka = kafka_back
    topic = harness.unique("j60")
    kafka.create_topic(topic, 4)
    journal = harness.make_journal_dir(harness.make_tempdir("mqk-j60-"))
    b = start_broker(journal_options(kafka, topic, journal, "itest-j60"), name="mosquitto-j60")
    stats = harness.SysCounters(b.port)
    load = harness.Load(b.port, 20, 2000, "j", prefix="j60").start()
    try:
        time.sleep(3)
        kafka.down()
        time.sleep(60)
        held = dict(stats.values)
        kafka.up()
        time.sleep(3)
    finally:
        published = load.stop(wait_acks=True, timeout=120)
    total = sum(published.values())
    buffered = int(held.get("buffered_bytes", "0"))
    print(f"{total} published and acknowledged; at the end of the outage the journal held "
          f"{buffered} bytes, librdkafka {held.get('in_flight')} records")
    assert total > 100000, "the load hardly ran"
    assert buffered > 5 * 1024 * 1024, "the journal should have held the outage's records"
    check_sequences(kafka, topic, published, timeout=180)
    final = stats.wait_for({"in_flight": 0, "buffered_bytes": 0, "rejected": 0,
                            "buffer_full": 0, "journal_errors": 0}, timeout=60)
    stats.close()
    assert final == {"in_flight": 0, "buffered_bytes": 0, "rejected": 0, "buffer_full": 0,
                     "journal_errors": 0}, final


def test_kill_9_while_kafka_down_replays(kafka_back, start_broker):
    kafka = kafka_back
    topic = harness.unique("jkill")
    kafka.create_topic(topic, 4)
    journal = harness.make_journal_dir(harness.make_tempdir("mqk-jkill-"))
    options = journal_options(kafka, topic, journal, "itest-jkill")
    b = start_broker(options, name="mosquitto-jkill")
    kafka.down()
    load = harness.Load(b.port, 10, 1000, "j", prefix="jk").start()
    time.sleep(5)
    b.expect_exit = -signal.SIGKILL
    os.kill(b.pid, signal.SIGKILL)
    b.process.wait_exit(10)
    acked = load.stop(wait_acks=False)
    total = sum(acked.values())
    print(f"kill -9 with Kafka down: {total} messages had a PUBACK")
    assert total > 2000

    kafka.up()
    b2 = start_broker(options, name="mosquitto-jkill-2")
    m = b2.wait_log(REPLAY_RX, 15)
    replayed = int(re.search(REPLAY_RX, b2.log()).group(1))
    print(f"restarted: replaying {replayed} records")
    assert replayed >= total, f"{total} acknowledged, only {replayed} in the journal"
    # Acknowledged ones are all there; what was in flight without a PUBACK may be too.
    records = harness.read_topic(kafka.bootstrap, topic, total, timeout=120, grace=2)
    values = {r.value for r in records}
    missing = [f"{cid}:{n}" for cid, k in acked.items() for n in range(k)
               if f"{cid}:{n}".encode() not in values]
    print(f"{len(records)} records in Kafka; {len(missing)} acknowledged ones missing")
    assert not missing, missing[:10]
    assert m


def test_garbage_at_the_tail_is_cut(kafka_back, start_broker):
    kafka = kafka_back
    topic = harness.unique("jtail")
    kafka.create_topic(topic, 1)
    journal = harness.make_journal_dir(harness.make_tempdir("mqk-jtail-"))
    options = journal_options(kafka, topic, journal, "itest-jtail",
                              ("flush_timeout_ms", "500"))
    b = start_broker(options, name="mosquitto-jtail")
    kafka.down()
    c = harness.Client(b.port, harness.unique("jt"), V311)
    n = 300
    for i in range(n):
        c.publish_wait("j/t", f"t{i}".encode(), qos=1)
    c.close()
    assert b.stop(timeout=30) == 0
    # The segment written last (the spare made ahead is all zeros).
    segments = []
    for name in sorted(f for f in os.listdir(journal) if f.endswith(".mqkj")):
        with open(os.path.join(journal, name), "rb") as f:
            if f.read(8).strip(b"\0"):
                segments.append(name)
    assert segments, os.listdir(journal)
    # A crash mid-write: the size field of a next entry and garbage after the last one.
    last = os.path.join(journal, segments[-1])
    with open(last, "r+b") as f:
        data = f.read()
        end = len(data.rstrip(b"\0"))
        end = (end + 7) // 8 * 8
        f.seek(end)
        f.write(b"\x58\x02\x00\x00" + os.urandom(200))

    kafka.up()
    b2 = start_broker(options, name="mosquitto-jtail-2")
    b2.wait_log(r"journal: .*\.mqkj: the bytes at offset \d+ are not a whole entry", 15)
    b2.wait_log(REPLAY_RX, 15)
    replayed = int(re.search(REPLAY_RX, b2.log()).group(1))
    records = harness.read_topic(kafka.bootstrap, topic, n, timeout=60, grace=2)
    print(f"{n} kept at the stop, garbage appended: replayed {replayed}, {len(records)} in "
          f"Kafka")
    assert replayed == n
    assert sorted(r.value for r in records) == sorted(f"t{i}".encode() for i in range(n))


def fill(kafka, start_broker, overflow, name):
    """A broker with a 2 MiB journal (1 MiB segments) and Kafka down."""
    topic = harness.unique(name)
    kafka.create_topic(topic, 1)
    journal = harness.make_journal_dir(harness.make_tempdir(f"mqk-{name}-"))
    b = start_broker(journal_options(kafka, topic, journal, f"itest-{name}",
                                     ("journal_max_mb", "2"), ("journal_segment_mb", "1"),
                                     ("overflow", overflow)), name=f"mosquitto-{name}")
    kafka.down()
    return topic, b


@pytest.mark.parametrize("protocol", [V311, V5], ids=["v311", "v5"])
def test_full_journal_reject(kafka_back, start_broker, protocol):
    """QoS 1 beyond the journal gets no PUBACK: the connection is closed (the v3.1.1 client
    would get a PUBACK for ACL_DENIED, hence this); the client resends after reconnecting,
    and once Kafka is back every message is in Kafka. QoS 0 is counted as buffer_full."""
    kafka = kafka_back
    topic, b = fill(kafka, start_broker, "reject", "jrej")
    stats = harness.SysCounters(b.port)
    disconnects = []
    c = harness.Client(b.port, harness.unique("jr"), protocol, clean=False)
    c.c.on_disconnect = lambda *a: disconnects.append(a[2])
    payload = b"r" * 1000
    infos = [c.c.publish("j/r", payload + str(i).encode(), qos=1) for i in range(3000)]
    harness.wait_for(lambda: int(stats.values.get("rejected", "0")) > 0, 30,
                     what="a rejected PUBLISH")
    acked = sum(1 for i in infos if i.is_published())
    rejected = int(stats.values["rejected"])
    print(f"{protocol}: journal full after {acked} PUBACKs; {rejected} rejected so far, "
          f"{len(disconnects)} disconnects (rc {disconnects[:3]})")
    assert 1000 < acked < 3000 and disconnects
    q0 = harness.Client(b.port, harness.unique("jq0"), V311)
    q0.publish_wait("j/q0", payload, qos=0)
    harness.wait_for(lambda: int(stats.values.get("buffer_full", "0")) >= 1, 10,
                     what="QoS 0 counted as buffer_full")
    q0.close()

    kafka.up()
    harness.wait_published(infos, 120)
    c.close()
    records = harness.read_topic(kafka.bootstrap, topic, 3000, timeout=120, grace=2)
    values = {r.value for r in records}
    missing = [i for i in range(3000) if payload + str(i).encode() not in values]
    print(f"Kafka back: all 3000 acknowledged in the end, {len(records)} records in Kafka, "
          f"{len(missing)} missing")
    assert not missing, missing[:10]
    stats.close()


@pytest.mark.parametrize("overflow", ["drop_new", "drop_oldest"])
def test_full_journal_drops_counted(kafka_back, start_broker, overflow):
    kafka = kafka_back
    topic, b = fill(kafka, start_broker, overflow, "jdrop" + overflow[5])
    stats = harness.SysCounters(b.port)
    c = harness.Client(b.port, harness.unique("jd"), V311)
    n = 4000
    payload = b"d" * 1000
    for i in range(n):
        c.publish_wait("j/d", payload + str(i).encode(), qos=1)
    counter = "buffer_full" if overflow == "drop_new" else "dropped_oldest"
    harness.wait_for(lambda: int(stats.values.get(counter, "0")) > 0, 15,
                     what=f"{counter} counted")
    time.sleep(1.5)
    v = dict(stats.values)
    dropped = int(v.get("buffer_full", "0")) + int(v.get("dropped_oldest", "0"))
    kafka.up()
    records = harness.read_topic(kafka.bootstrap, topic, n - dropped, timeout=120, grace=3)
    got = sorted(int(r.value[len(payload):]) for r in records)
    print(f"{overflow}: {n} acknowledged, {dropped} dropped ({v.get('buffer_full')} new, "
          f"{v.get('dropped_oldest')} oldest), {len(records)} in Kafka")
    assert len(records) + dropped == n and len(set(got)) == len(got)
    if overflow == "drop_new":
        assert got == list(range(len(got))), "drop_new keeps the oldest"
    else:
        assert got[-1] == n - 1, "drop_oldest keeps the newest"
    c.close()
    stats.close()


@pytest.mark.parametrize("layout", ["parent-not-enterable", "parent-not-writable"])
def test_unwritable_journal_dir(kafka1, layout):
    """mosquitto runs the plugin as user mosquitto: a journal_dir it cannot make stops
    mosquitto with a line naming the directory in the way and the command that fixes it;
    run as root, that command lets the next start succeed. parent-not-enterable is what a
    root-made /var/lib/mosquitto/mosquitto-kafka (0750) does to the default journal_dir."""
    if os.geteuid() != 0:
        raise AssertionError("run as root: mosquitto drops to user mosquitto only then")
    top = harness.make_tempdir("mqk-jro-")
    parent = os.path.join(top, "mosquitto-kafka")
    os.makedirs(parent)
    os.chmod(parent, 0o750 if layout == "parent-not-enterable" else 0o755)  # root's
    journal_dir = os.path.join(parent, "broker-1")
    options = [("bootstrap_servers", kafka1.bootstrap), ("route_j", "j/# -> jro"),
               ("journal_dir", journal_dir)]
    b = harness.Mosquitto(options, wait=False, name="mosquitto-jro")
    try:
        harness.wait_for(lambda: not b.process.alive(), 15, what="mosquitto to refuse to start")
        log = b.log()
        m = re.search(r"mosquitto_kafka: journal_dir: cannot create or open '([^']+)': "
                      r"Permission denied: user mosquitto may not (enter|create directories "
                      r"in) '([^']+)' \(owner uid 0, mode (\d+)\); as root, run: (.*)$",
                      log, re.M)
        assert m, log
        print(m.group(0))
        assert m.group(1) == journal_dir and m.group(3) == parent
        if layout == "parent-not-enterable":
            assert m.group(5) == f"chown mosquitto:mosquitto '{parent}'"
        else:
            assert m.group(5) == f"install -d -o mosquitto -g mosquitto -m 0750 '{journal_dir}'"
        fix = subprocess.run(["sh", "-c", m.group(5)], capture_output=True, text=True,
                             timeout=30)
        assert fix.returncode == 0, fix.stderr
    finally:
        b.cleanup()
    b = harness.Mosquitto(options, name="mosquitto-jro-fixed")
    try:
        assert os.path.isfile(os.path.join(journal_dir, "journal.state")), os.listdir(journal_dir)
        print(f"after '{m.group(5)}': mosquitto started, journal in {journal_dir}")
    finally:
        b.cleanup()
        shutil.rmtree(top, ignore_errors=True)
