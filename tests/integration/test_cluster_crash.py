"""
test_cluster_crash.py - issue 6 (d): three mosquittos with the plugin (durability journal,
each a journal_dir of its own, broker_id <tag>-b1..b3) behind one HAProxy (roundrobin, TCP
mode, MQTT health checks), one Kafka. 60 QoS 1 publishers with persistent sessions (half
MQTT 3.1.1 clean_session false, half MQTT 5 clean_start false with a session expiry), each
its own client id and its own sequence in the payload ("<client id>:<n>"), publish steadily
through HAProxy. One broker is killed with SIGKILL under that load:

  - its clients lose their connection; paho reconnects through HAProxy, which now sends
    them to the two brokers left, and sends again every PUBLISH not acknowledged (DUP);
  - what the dead broker had acknowledged (PUBACK) but Kafka had not yet taken is in its
    journal: the broker is started again with the same configuration and journal_dir,
    and replays it ("journal: replaying N records") before anything new.

Then every sequence number of every client that got a PUBACK is in Kafka (0 lost);
duplicates (a PUBLISH the dead broker had journaled but not acknowledged, sent again to
another broker; records Kafka had but the journal's acknowledged position did not say so
yet) are counted and printed, not failed. The brokers use linger.ms 500, so about half a
second of each broker's records is on its way to Kafka at any moment: the kill leaves the
journal something to replay, which is the path under test (the test still accepts, and
prints, a journal Kafka had emptied).

Real Kafka by default (MQK_KAFKA), like the other files. Runs alone (RUN_SERIAL): three
brokers, a JVM and 120 paho threads on a 2-core machine.
"""

import os
import re
import shutil
import signal
import threading
import time

import confluent_kafka as ck

import harness
from harness import HDR, V311, V5, mqtt

CLIENTS = 60
RATE = 10.0            # messages per second per client: 600 msg/s together
BEFORE_KILL = 6.0      # seconds of load before the kill
AFTER_KILL = 8.0       # seconds of load with two brokers (at least until all are back)
AFTER_RESTART = 3.0    # seconds of load once the killed broker is back
LINGER_MS = 500        # kafka.linger.ms of every broker: records on their way to Kafka
SESSION_EXPIRY = 600   # MQTT 5 session expiry interval, seconds
RECONNECT_BOUND = 30.0  # every client of the killed broker is connected again within this
# Notices and above: the "New client connected ... as <id>" lines and the plugin's, not
# mosquitto's two debug lines per message (600 msg/s).
BROKER_EXTRA = ("log_type none", "log_type error", "log_type warning", "log_type notice",
                "log_type information")
REPLAY_RX = r"mosquitto_kafka: journal: replaying (\d+) records \((\d+) bytes\) from (\S+):"
SUMMARY_RX = r"mosquitto_kafka: journal: replayed (\d+), errors (\d+)"
CONNECTED_RX = r"New client connected from \S+ as (\S+)"


def done(info):
    """Has the PUBLISH of info had its PUBACK? paho 1.6's info.is_published() raises for
    a message first published while disconnected (rc MQTT_ERR_NO_CONN), even once it was
    sent at the next CONNACK and acknowledged: read the flag it sets on the PUBACK."""
    return info._published


class Publisher:
    """One paho client with a persistent session through HAProxy: v3.1.1 clean_session
    false, or v5 clean_start false with a session expiry interval. It reconnects by
    itself (paho's loop thread) and then sends again what was not acknowledged. publish()
    keeps every MQTTMessageInfo, by sequence number."""

    def __init__(self, port, client_id, protocol, topic):
        self.client_id = client_id
        self.topic = topic
        self.protocol = protocol
        if protocol == V5:
            self.c = mqtt.Client(client_id=client_id, protocol=V5)
        else:
            self.c = mqtt.Client(client_id=client_id, protocol=V311, clean_session=False)
        self.c.max_inflight_messages_set(20)
        self.c.max_queued_messages_set(0)
        self.c.reconnect_delay_set(0.25, 2)
        self.connects = 0
        self.disconnects = 0
        self.session_present = []
        self.refused = []
        self.infos = []  # infos[n]: the MQTTMessageInfo of "<client id>:<n>"
        self.errors = []
        self._connected = threading.Event()
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        if protocol == V5:
            props = harness.Properties(harness.PacketTypes.CONNECT)
            props.SessionExpiryInterval = SESSION_EXPIRY
            self.c.connect("127.0.0.1", port, keepalive=15, clean_start=False,
                           properties=props)
        else:
            self.c.connect("127.0.0.1", port, keepalive=15)
        self.c.loop_start()

    def _on_connect(self, client, userdata, flags, rc, properties=None):
        rc = rc if isinstance(rc, int) else rc.value
        if rc == 0:
            self.connects += 1
            self.session_present.append(flags.get("session present", 0))
            self._connected.set()
        else:
            self.refused.append(rc)

    def _on_disconnect(self, client, userdata, rc, properties=None):
        self.disconnects += 1

    def wait_connected(self, timeout):
        if not self._connected.wait(timeout * harness.SLOW):
            raise harness.HarnessError(f"{self.client_id}: no CONNACK through HAProxy within "
                                       f"{timeout} s (refused: {self.refused})")

    def publish_next(self):
        n = len(self.infos)
        info = self.c.publish(self.topic, f"{self.client_id}:{n}".encode(), qos=1)
        # MQTT_ERR_NO_CONN: between connections; paho keeps the message and sends it at
        # the next CONNACK.
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self.errors.append(f"publish {n}: rc={info.rc}")
            return
        self.infos.append(info)

    def acked(self):
        return {n for n, info in enumerate(self.infos) if done(info)}

    def unacked(self):
        return sum(1 for info in self.infos if not done(info))

    def close(self):
        try:
            self.c.disconnect()
        finally:
            self.c.loop_stop()


class Steady:
    """One thread publishes the next message of every publisher RATE times a second."""

    def __init__(self, publishers):
        self.publishers = publishers
        self._stop = threading.Event()
        self._lock = threading.Lock()  # held around a round: snapshots see whole rounds
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.errors = []

    def start(self):
        self.thread.start()

    def _run(self):
        due = time.monotonic()
        try:
            while not self._stop.is_set():
                with self._lock:
                    for p in self.publishers:
                        p.publish_next()
                due += 1.0 / RATE
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                elif delay < -1.0:
                    due = time.monotonic()  # a second behind: no burst to catch up
        except Exception as e:
            self.errors.append(repr(e))

    def snapshot(self, fn):
        with self._lock:
            return fn()

    def stop(self):
        self._stop.set()
        self.thread.join(10)
        if self.thread.is_alive():
            self.errors.append("the publishing thread did not stop within 10 s")


def landed(log):
    return set(re.findall(CONNECTED_RX, log))


def restart(broker):
    """Starts broker again with its configuration file (same port, same journal_dir) in
    place of its dead process; its new log is broker.log()."""
    old = broker.process
    if old.alive():
        raise harness.HarnessError(f"{broker.name} (pid {old.pid}) is still running")
    log_path = os.path.join(broker.dir, "mosquitto-restarted.log")
    broker.process = harness.Process(broker.name + "-restarted", old.argv, log_path,
                                     env=harness.sanitizer_env() if harness.ASAN else None)
    broker.process.resend_term = harness.VALGRIND
    broker.wait_ready(15 * harness.SLOW)


def read_until_complete(bootstrap, topic, want, timeout, grace=2.0):
    """Reads topic from the beginning until every (client id, n) of want is in, or timeout
    seconds pass; then grace seconds more for duplicates. Returns the records."""
    parts = harness.topic_partitions(bootstrap, topic)
    c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": harness.unique("mqk-crash"),
                     "enable.auto.commit": False, "auto.offset.reset": "earliest",
                     "fetch.wait.max.ms": 50, "log_level": 3})
    records, seen, missing = [], set(), set(want)
    try:
        c.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in range(parts)])
        deadline = time.monotonic() + timeout
        end = None
        while True:
            now = time.monotonic()
            if end is None and (not missing or now >= deadline):
                end = now + grace
            if end is not None and now >= end:
                break
            for m in c.consume(num_messages=10000, timeout=0.2):
                if m.error():
                    if m.error().code() == ck.KafkaError._PARTITION_EOF:
                        continue
                    raise harness.HarnessError(f"consuming {topic}: {m.error()}")
                r = harness.Record(m)
                records.append(r)
                key = harness.load_value(r.value)
                if key is None:
                    continue
                seen.add(key)
                missing.discard(key)
    finally:
        c.close()
    return records


def test_broker_killed_under_qos1_load_nothing_acknowledged_is_lost(kafka, start_broker):
    tag = harness.unique("crash")
    topic = f"{tag}.data"
    kafka.create_topics([topic], 4)
    journal_root = harness.make_tempdir("mqk-crash-journals-")
    try:
        _run(kafka, start_broker, tag, topic, journal_root)
    finally:
        shutil.rmtree(journal_root, ignore_errors=True)


def _run(kafka, start_broker, tag, topic, journal_root):
    brokers = []
    for i in range(1, 4):
        bid = f"{tag}-b{i}"
        journal = harness.make_journal_dir(os.path.join(journal_root, f"b{i}"))
        brokers.append(start_broker([
            ("bootstrap_servers", kafka.bootstrap),
            ("broker_id", bid),
            ("route_data", f"crash/# -> {topic}"),
            ("durability", "journal"),
            ("journal_dir", journal),
            ("journal_segment_mb", "16"),
            ("journal_max_mb", "256"),
            ("kafka.linger.ms", str(LINGER_MS)),
            ("stats_interval", "0"),
        ], extra=BROKER_EXTRA, name=f"mosquitto-b{i}"))
        brokers[-1].broker_id = bid
        brokers[-1].journal = journal
    for b in brokers:
        b.wait_log(r"mosquitto_kafka: durability journal: " + re.escape(b.journal), 10)
    h = harness.HAProxy([b.port for b in brokers])
    try:
        _load_kill_restart(kafka, brokers, h, tag, topic)
    finally:
        h.cleanup()


def _load_kill_restart(kafka, brokers, h, tag, topic):
    # Every server must pass its health check before clients connect, or roundrobin
    # sends them all to those that are up.
    harness.wait_for(lambda: all(" as hc " in b.log() for b in brokers), 15,
                     what="HAProxy's health checks on every broker")
    pubs = []
    try:
        for i in range(CLIENTS):
            cid = f"{tag}-p{i:02d}"
            pubs.append(Publisher(h.port, cid, V5 if i % 2 else V311, f"crash/{cid}"))
        for p in pubs:
            p.wait_connected(15)
        _under_load(kafka, brokers, pubs, topic)
    finally:
        for p in pubs:
            try:
                p.close()
            except Exception:
                pass


def _under_load(kafka, brokers, pubs, topic):
    ids = {p.client_id for p in pubs}
    on = {b.broker_id: landed(b.log()) & ids for b in brokers}
    print("clients per broker before the kill: "
          + ", ".join(f"{bid} {len(c)}" for bid, c in on.items()))
    assert sum(len(c) for c in on.values()) == CLIENTS and all(on.values()), (
        f"roundrobin should spread the {CLIENTS} clients over the 3 brokers: {on}")

    load = Steady(pubs)
    load.start()
    try:
        time.sleep(BEFORE_KILL)
        # The victim: the broker with the most clients.
        victim = max(brokers, key=lambda b: len(on[b.broker_id]))
        survivors = [b for b in brokers if b is not victim]
        victims = [p for p in pubs if p.client_id in on[victim.broker_id]]
        before = {p.client_id: p.connects for p in victims}

        def at_kill():
            published = sum(len(p.infos) for p in pubs)
            in_flight = sum(p.unacked() for p in victims)
            os.kill(victim.pid, signal.SIGKILL)
            return published, in_flight
        published_at_kill, mqtt_in_flight = load.snapshot(at_kill)
        killed_at = time.monotonic()
        victim.process.wait_exit(10)
        victim.process.stop()  # reaps it, closes its log
        killed_log = victim.log()
        print(f"kill -9 {victim.broker_id} (pid {victim.pid}) after {BEFORE_KILL:.0f} s: "
              f"{published_at_kill} published so far by all; {len(victims)} clients on it, "
              f"{mqtt_in_flight} of their PUBLISHes in flight (no PUBACK yet) at the kill")

        # Its clients reconnect through HAProxy, which sends them to the survivors.
        harness.wait_for(lambda: all(p.connects > before[p.client_id] for p in victims),
                         RECONNECT_BOUND * harness.SLOW, interval=0.1,
                         what=f"the {len(victims)} clients of {victim.broker_id} to "
                              f"reconnect through HAProxy")
        back_in = time.monotonic() - killed_at
        moved = {b.broker_id: landed(b.log()) & set(before) for b in survivors}
        print(f"all {len(victims)} of its clients connected again within {back_in:.1f} s: "
              + ", ".join(f"{len(c)} on {bid}" for bid, c in moved.items()))
        assert set().union(*moved.values()) == set(before), (
            f"clients of {victim.broker_id} not seen on the survivors: "
            f"{set(before) - set().union(*moved.values())}")
        time.sleep(max(0.0, AFTER_KILL - (time.monotonic() - killed_at)))

        # The same configuration, the same journal_dir: the journal replays.
        restart(victim)
        victim.wait_log(r"mosquitto_kafka: durability journal: " + re.escape(victim.journal),
                        10)
        time.sleep(AFTER_RESTART)
    finally:
        load.stop()

    published = sum(len(p.infos) for p in pubs)
    # Every PUBLISH gets its PUBACK: from the broker it was first sent to, or after a
    # reconnect from another.
    deadline = time.monotonic() + 60 * harness.SLOW
    while time.monotonic() < deadline and any(p.unacked() for p in pubs):
        time.sleep(0.1)
    unacked = {p.client_id: p.unacked() for p in pubs if p.unacked()}
    acked = {(p.client_id, n) for p in pubs for n in p.acked()}
    errors = load.errors + [f"{p.client_id}: {e}" for p in pubs for e in p.errors]
    print(f"{published} published by {CLIENTS} clients, {len(acked)} acknowledged "
          f"(PUBACK), {sum(unacked.values())} never acknowledged")

    restarted_log = victim.log()
    m = re.search(REPLAY_RX, restarted_log, re.M)
    replayed = int(m.group(1)) if m else 0
    if m:
        print(f"restarted {victim.broker_id}: journal: replaying {replayed} records "
              f"({m.group(2)} bytes) from {m.group(3)}: acknowledged to their clients, "
              f"not yet confirmed by Kafka at the kill")
    else:
        print(f"restarted {victim.broker_id}: no replay line: Kafka had every record its "
              f"journal held (nothing left to replay)")

    records = read_until_complete(kafka.bootstrap, topic, acked, 90 * harness.SLOW)
    got, unexpected = [], []
    known = {p.client_id: len(p.infos) for p in pubs}
    per_broker = {}
    for r in records:
        v = harness.load_value(r.value)
        if v is None:
            unexpected.append(r.value)
            continue
        cid, n = v
        if cid not in known or not 0 <= n < known[cid]:
            unexpected.append(r.value)
            continue
        got.append((cid, n))
        brk = r.header_str(HDR.BROKER)
        per_broker[brk] = per_broker.get(brk, 0) + 1
    distinct = set(got)
    lost = acked - distinct
    duplicates = len(got) - len(distinct)
    print(f"Kafka: {len(records)} records, {len(distinct)} distinct, {duplicates} duplicates, "
          f"{len(lost)} of the {len(acked)} acknowledged lost, {len(unexpected)} unexpected; "
          f"per broker {per_broker}")

    # The brokers' own account, at SIGTERM: journal errors none, and the restarted
    # broker's replayed counter is what its replay line said.
    summaries = {}
    for b in brokers:
        rc = b.stop()
        s = re.search(SUMMARY_RX, b.log(), re.M)
        summaries[b.broker_id] = (rc, (int(s.group(1)), int(s.group(2))) if s else None)
    print("at SIGTERM (exit code, (journal replayed, errors)): "
          + ", ".join(f"{bid} {v}" for bid, v in summaries.items()))

    assert not errors, f"publishing errors: {errors[:10]}"
    assert not unacked, (f"{sum(unacked.values())} PUBLISHes never acknowledged after the "
                         f"reconnects, e.g. {list(unacked.items())[:5]}")
    assert not lost, (f"{len(lost)} acknowledged messages not in Kafka, e.g. "
                      f"{sorted(lost)[:10]}")
    assert not unexpected, f"records that were never published: {unexpected[:5]}"
    for bid, (rc, summary) in summaries.items():
        assert rc == 0, f"{bid} exited with {rc} after SIGTERM"
        assert summary is not None, f"{bid}: no 'journal: replayed N, errors M' line"
        assert summary[1] == 0, f"{bid}: {summary[1]} journal errors"
    assert summaries[victim.broker_id][1][0] == replayed, (
        f"{victim.broker_id}: the replay line says {replayed}, its counter "
        f"{summaries[victim.broker_id][1][0]}")
    # The killed broker's first run had no replay (a fresh journal), and its clients were
    # on the survivors when it came back.
    assert not re.search(REPLAY_RX, killed_log, re.M), "a fresh journal replayed records"
    assert all(p.connects >= 2 for p in pubs if p.client_id in on[victim.broker_id])
