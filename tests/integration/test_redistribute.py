"""
test_redistribute.py - commands_mode redistribute (docs/commands.md, "redistribute mode"):
one real Kafka, three mosquittos with the plugin, devices connected straight to them
(paho MQTT v5 clients).

The brokers share one consumer group on <tag>.commands (6 partitions), so each reads only
its partitions; each reads the presence topic in full, and its own back-channel
<tag>.commands.<broker id> (2 partitions) with a group of its own. A command whose device
is on another broker is forwarded there (mqk.hops + 1); a device known nowhere: held a
second, retried through the broker's own back-channel, dead-lettered at commands_max_hops.

  a. 300 commands to 30 devices spread over the 3 brokers: each delivered exactly once, to
     its device only; the brokers read the shared topic once between them (consumed -
     forwarded == 300, not 900) and their assignments are disjoint and cover it;
  b. a device that moves from broker A to broker B: the commands produced while it is
     nowhere and after the move reach it at B, exactly once;
  c. a device connected nowhere: its commands are held and retried, not spun, then
     dead-lettered with mqk.reason "not connected" and mqk.hops == commands_max_hops; one
     that connects within the retries gets its command, and no dead letter;
  d. a broker killed (kill -9) while commands flow: its shared partitions move to the
     other two through the group, its devices reconnect to them, it comes back with the
     same broker_id and reads what was forwarded to its back-channel meanwhile: every
     command delivered at least once (duplicates counted, printed).
"""

import collections
import re
import signal
import time

import confluent_kafka as ck
import pytest

import harness
from harness import HDR
from test_cluster_commands import Device

SHARED_PARTITIONS = 6
MAX_HOPS = 4
COUNTERS = ("consumed", "delivered", "skipped", "returned", "forwarded", "held",
            "presence_read", "dead_lettered", "invalid", "lost")
BROKER_EXTRA = ("set_tcp_nodelay true", "log_type none", "log_type error",
                "log_type warning", "log_type notice", "log_type information")


class Cluster:
    """Topics and three brokers in redistribute mode; names carry a tag unique to it."""

    def __init__(self, kafka, n_brokers=3):
        self.kafka = kafka
        self.tag = t = harness.unique("rd")
        self.commands, self.presence, self.dead = f"{t}.commands", f"{t}.presence", f"{t}.dead"
        self.broker_topic = f"{t}.commands.{{broker}}"
        self.group = f"{t}-group"
        self.broker_ids = [f"{t}-{chr(ord('a') + i)}" for i in range(n_brokers)]
        self.brokers, self.sys, self.old = [], [], []
        self._producer = None
        kafka.create_topics([self.commands], SHARED_PARTITIONS)
        kafka.create_topics([self.broker_topic.replace("{broker}", b) for b in self.broker_ids],
                            2)
        kafka.create_topics([self.presence], 3, config={"cleanup.policy": "compact"})
        kafka.create_topics([self.dead], 1)
        try:
            for i in range(n_brokers):
                self.brokers.append(self.start(i))
            self.sys = [harness.SysCounters(b.port) for b in self.brokers]
            self.wait_assigned(self.brokers)
            for b in self.brokers:
                self.probe(b)
        except BaseException:
            self.close(check=False)
            raise

    def options(self, bid):
        return [
            ("bootstrap_servers", self.kafka.bootstrap),
            ("broker_id", bid),
            ("stats_interval", "1"),
            ("commands_mode", "redistribute"),
            ("commands_topic", self.commands),
            ("commands_group", self.group),
            ("commands_topic_broker", self.broker_topic),
            ("presence_topic", self.presence),
            ("commands_dead_letter_topic", self.dead),
            ("commands_max_hops", str(MAX_HOPS)),
            # A dead member's partitions move after 3 s, not librdkafka's 45 s.
            ("commands_kafka.session.timeout.ms", "3000"),
            ("commands_kafka.heartbeat.interval.ms", "500"),
        ]

    def start(self, i):
        bid = self.broker_ids[i]
        return harness.Mosquitto(self.options(bid), extra=BROKER_EXTRA,
                                 name=f"mosquitto-{bid[-1]}")

    def assignment(self, broker):
        """The partitions of the shared topic broker's last assignment gave it, or None."""
        rx = re.compile(r"commands: consuming (\S+) partitions \[([0-9,]*)\]")
        last = None
        for topic, parts in rx.findall(broker.log()):
            # The back-channel consumer's lines name the broker's own topic or the
            # presence topic (an empty assignment, "(none)", does not happen with 6
            # partitions and 3 members).
            if topic == self.commands:
                last = {int(p) for p in parts.split(",") if p}
        return last

    def wait_assigned(self, brokers, timeout=60):
        """Until the brokers' last assignments are disjoint and cover the shared topic."""
        def covered():
            sets = [self.assignment(b) for b in brokers]
            if any(s is None for s in sets):
                return None
            union = set().union(*sets)
            if union == set(range(SHARED_PARTITIONS)) and sum(map(len, sets)) == len(union):
                return sets
            return None
        return harness.wait_for(covered, timeout, interval=0.2,
                                what="the shared topic's partitions spread over the brokers")

    def probe(self, broker, timeout=30.0):
        """A client on broker gets a command produced to the shared topic (again each second
        until one arrives): consumers, forwarding and presence all work."""
        cid = harness.unique(f"{self.tag}-probe")
        dev = Device(broker.port, cid)
        try:
            deadline = time.monotonic() + timeout
            while not dev.got:
                if time.monotonic() > deadline:
                    raise harness.HarnessError(f"no probe reached {cid} on {broker.name}")
                self.produce([(cid, b"probe")])
                end = time.monotonic() + 1.0
                while not dev.got and time.monotonic() < end:
                    time.sleep(0.05)
        finally:
            dev.close()

    def produce(self, pairs, partition=None):
        """Command records (device, payload) on the shared topic (to partition when given,
        else by key), acknowledged by Kafka."""
        if self._producer is None:
            self._producer = ck.Producer({"bootstrap.servers": self.kafka.bootstrap,
                                          "enable.idempotence": True, "linger.ms": 1,
                                          "log_level": 3})
        for device, payload in pairs:
            extra = {} if partition is None else {"partition": partition}
            self._producer.produce(self.commands, key=device.encode(), value=payload, **extra)
            self._producer.poll(0)
        if self._producer.flush(30) != 0:
            raise harness.HarnessError("commands not acknowledged in 30 s")
        return time.time()

    def counters(self):
        return [{c: int(s.values.get(f"commands/{c}", "0")) for c in COUNTERS}
                for s in self.sys]

    def settled(self, since, done, timeout=30.0):
        """Counter deltas from since, once done(deltas) holds and they stopped moving."""
        def deltas():
            return [{c: n[c] - s[c] for c in COUNTERS} for n, s in zip(self.counters(), since)]
        try:
            harness.wait_for(lambda: done(deltas()), timeout, interval=0.2,
                             what="the brokers' command counters")
        except harness.HarnessError:
            pass  # the caller asserts on what they are
        def moving(rows):
            return [{c: r[c] for c in COUNTERS if c != "presence_read"} for r in rows]
        last = deltas()
        for _ in range(10):
            time.sleep(1.3)
            now = deltas()
            if moving(now) == moving(last):
                return now
            last = now
        return last

    def stable(self):
        """The counters once they stopped moving (published every second)."""
        zero = [{c: 0 for c in COUNTERS} for _ in self.sys]
        return self.settled(zero, lambda d: True, timeout=0)

    def table(self, rows):
        keys = [c for c in COUNTERS if c not in ("skipped", "returned")]
        lines = ["  broker " + " ".join(f"{k:>13}" for k in keys)]
        for bid, r in zip(self.broker_ids, rows):
            lines.append(f"  {bid[-1]:>6} " + " ".join(f"{r[k]:>13}" for k in keys))
        return "\n".join(lines)

    def dead_letters(self, keys, expect, timeout):
        """[(arrival time.time(), harness.Record)] of dead letters keyed one of keys."""
        c = ck.Consumer({"bootstrap.servers": self.kafka.bootstrap,
                         "group.id": harness.unique("dead"), "enable.auto.commit": False,
                         "fetch.wait.max.ms": 50, "log_level": 3})
        out = []
        try:
            c.assign([ck.TopicPartition(self.dead, 0, ck.OFFSET_BEGINNING)])
            deadline = time.monotonic() + timeout
            while len(out) < expect and time.monotonic() < deadline:
                for m in c.consume(100, 0.1):
                    if m.error() is None and m.key() in keys:
                        out.append((time.time(), harness.Record(m)))
        finally:
            c.close()
        return out

    def back_channel(self, i, since, until):
        """Records of broker i's back-channel stamped between since and until (time.time())."""
        topic = self.broker_topic.replace("{broker}", self.broker_ids[i])
        c = ck.Consumer({"bootstrap.servers": self.kafka.bootstrap,
                         "group.id": harness.unique("bc"), "enable.auto.commit": False,
                         "enable.partition.eof": True, "log_level": 3})
        n, eof = 0, set()
        try:
            c.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in range(2)])
            deadline = time.monotonic() + 15
            while len(eof) < 2 and time.monotonic() < deadline:
                for m in c.consume(100, 0.2):
                    if m.error() is not None:
                        if m.error().code() == ck.KafkaError._PARTITION_EOF:
                            eof.add(m.partition())
                        continue
                    n += since * 1000 <= m.timestamp()[1] <= until * 1000
        finally:
            c.close()
        return n

    def close(self, check=True):
        problems = []
        for s in self.sys:
            try:
                s.close()
            except Exception:
                pass
        if self._producer is not None:
            self._producer.flush(5)
            self._producer = None
        for b in self.brokers:
            rc = b.stop()
            if rc != 0:
                problems.append(f"{b.name} exited with {rc}")
        for b in self.brokers + self.old:
            b.cleanup()
        if check:
            assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def cluster(kafka):
    cl = Cluster(kafka)
    yield cl
    cl.close()


def spread(cluster, n_per_broker, prefix):
    """n_per_broker devices on each broker: [[Device]] per broker."""
    return [[Device(b.port, harness.unique(f"{cluster.tag}-{prefix}{i}"))
             for _ in range(n_per_broker)] for i, b in enumerate(cluster.brokers)]


def test_a_spread_over_three_brokers(cluster):
    """Each command exactly once at its device; the shared topic read once, not 3 times."""
    sets = cluster.wait_assigned(cluster.brokers)
    per = spread(cluster, 10, "ue")
    devices = [d for row in per for d in row]
    try:
        time.sleep(1.5)  # their presence records reach every broker's table
        before = cluster.stable()
        n = 300
        want = collections.defaultdict(list)
        pairs = []
        for i in range(n):
            d = devices[i % len(devices)]
            p = f"{d.client_id}:{i}".encode()
            want[d.client_id].append(p)
            pairs.append((d.client_id, p))
        cluster.produce(pairs)
        got = {d.client_id: d.wait(want[d.client_id], timeout=30, grace=0) for d in devices}
        d = cluster.settled(before, lambda d: sum(x["delivered"] for x in d) >= n)
        total = {k: sum(x[k] for x in d) for k in COUNTERS}
        wrong = {cid: c for cid, c in got.items() if c != collections.Counter(want[cid])}
        print(f"[redistribute] shared partitions per broker: {[sorted(s) for s in sets]}")
        print(f"[redistribute] {n} commands to {len(devices)} devices on 3 brokers: "
              f"delivered {total['delivered']}, forwarded {total['forwarded']}, consumed "
              f"{total['consumed']} (shared {total['consumed'] - total['forwarded']}), held "
              f"{total['held']}; devices with a wrong set: {len(wrong)}\n{cluster.table(d)}")
        assert not wrong, wrong
        assert total["delivered"] == n, total
        # Each record of the shared topic was read by one broker; each forward once more.
        assert total["consumed"] - total["forwarded"] == n, total
        assert total["consumed"] < 2 * n, total
        # Devices are spread evenly and partitions by key: most commands are forwarded.
        assert n // 3 <= total["forwarded"] < n, total
        assert all(x["consumed"] > 0 and x["delivered"] > 0 for x in d), d
        assert total["dead_lettered"] + total["invalid"] + total["lost"] == 0, total
    finally:
        for dev in devices:
            dev.close()


def test_b_device_moves(cluster):
    """A device that moves from A to B gets what was produced meanwhile and after, once."""
    a, b = cluster.brokers[0], cluster.brokers[1]
    cid = harness.unique(f"{cluster.tag}-mover")
    dev = Device(a.port, cid)
    try:
        first = [f"{cid}:A:{i}".encode() for i in range(5)]
        time.sleep(1.0)
        cluster.produce([(cid, p) for p in first])
        got = dev.wait(first, grace=0.5)
        assert got == collections.Counter(first), f"at broker A: {got}"
        before = cluster.stable()
        dev.close()
        a.wait_log(rf"Client {re.escape(cid)} disconnected", 10)
        # Produced while it is nowhere: held, or forwarded to A (whose table may not show
        # it gone yet), then to B once B's presence record is read.
        gap = [f"{cid}:gap:{i}".encode() for i in range(5)]
        cluster.produce([(cid, p) for p in gap])
        time.sleep(0.5)
        dev = Device(b.port, cid)
        later = [f"{cid}:B:{i}".encode() for i in range(5)]
        cluster.produce([(cid, p) for p in later])
        got = dev.wait(gap + later, timeout=30)
        d = cluster.settled(before, lambda d: d[1]["delivered"] >= len(gap + later))
        total = {k: sum(x[k] for x in d) for k in COUNTERS}
        print(f"[redistribute] moved A -> B: received at B {sum(got.values())} "
              f"({len(gap)} produced between, {len(later)} after); forwarded "
              f"{total['forwarded']}, held {total['held']}; counters since the move:\n"
              f"{cluster.table(d)}")
        assert got == collections.Counter(gap + later), got
        assert d[1]["delivered"] == len(gap + later) and d[0]["delivered"] == 0, d
        assert total["dead_lettered"] + total["invalid"] + total["lost"] == 0, total
    finally:
        dev.close()


def test_c_device_nowhere(cluster):
    """Held and retried (about a second a hop), then dead-lettered; a late device gets it."""
    ghost = harness.unique(f"{cluster.tag}-ghost")
    payloads = [f"{ghost}:{i}".encode() for i in range(3)]
    before = cluster.stable()
    produced = cluster.produce([(ghost, p) for p in payloads])
    arrivals = cluster.dead_letters({ghost.encode()}, len(payloads), timeout=MAX_HOPS * 3 + 20)
    for at, r in arrivals:
        print(f"[redistribute] dead letter {r.value!r}: {HDR.REASON}="
              f"{r.header_str(HDR.REASON)!r} {HDR.HOPS}={r.header_str(HDR.HOPS)!r} "
              f"{HDR.BY}={r.header_str(HDR.BY)!r}, {at - produced:.1f} s after it was produced")
    d = cluster.settled(before, lambda d: sum(x["dead_lettered"] for x in d) >= len(payloads))
    total = {k: sum(x[k] for x in d) for k in COUNTERS}
    print(f"[redistribute] {len(payloads)} commands for a device connected nowhere "
          f"(commands_max_hops {MAX_HOPS}):\n{cluster.table(d)}")
    mine = [r for _, r in arrivals]
    assert sorted(r.value for r in mine) == sorted(payloads), mine
    assert all(r.header_str(HDR.REASON) == "not connected" for r in mine), mine
    assert all(r.header_str(HDR.HOPS) == str(MAX_HOPS) for r in mine), mine
    assert all(r.header_str(HDR.BY) in cluster.broker_ids for r in mine), mine
    # Not spun: each of the MAX_HOPS + 1 rounds held it a second.
    assert all(at - produced >= MAX_HOPS for at, _ in arrivals), \
        [at - produced for at, _ in arrivals]
    assert total["held"] == len(payloads) * (MAX_HOPS + 1), total
    assert total["forwarded"] == len(payloads) * MAX_HOPS, total
    assert total["dead_lettered"] == len(payloads) and total["delivered"] == 0, total

    # Connected while its command is being retried: delivered once, no dead letter.
    late = harness.unique(f"{cluster.tag}-late")
    before = cluster.stable()
    cluster.produce([(late, b"late-1")])
    time.sleep(2.0)
    dev = Device(cluster.brokers[2].port, late)
    try:
        got = dev.wait([b"late-1"], timeout=MAX_HOPS + 10)
    finally:
        dev.close()
    dead = cluster.dead_letters({late.encode()}, 1, timeout=MAX_HOPS + 3)
    d = cluster.settled(before, lambda d: sum(x["delivered"] for x in d) >= 1)
    print(f"[redistribute] connected 2 s after its command: got {dict(got)}, dead letters "
          f"{len(dead)}")
    assert got == collections.Counter([b"late-1"]), got
    assert not dead, dead
    assert sum(x["delivered"] for x in d) == 1, d


def test_d_broker_killed(cluster):
    """kill -9 of one broker while commands flow: nothing lost (at-least-once)."""
    per = spread(cluster, 5, "k")
    devices = [d for row in per for d in row]
    victim = 2
    killed = cluster.brokers[victim]
    try:
        sets = cluster.wait_assigned(cluster.brokers)
        time.sleep(1.5)
        want = collections.defaultdict(list)
        n, rate, seconds = 0, 25, 12  # 5 commands a round
        started = time.monotonic()
        killed_at = restarted_at = None
        moved = []
        while time.monotonic() - started < seconds:
            batch = []
            for _ in range(rate // 5):
                dev = devices[n % len(devices)]
                p = f"{dev.client_id}:{n}".encode()
                want[dev.client_id].append(p)
                batch.append((dev.client_id, p))
                n += 1
            cluster.produce(batch)
            elapsed = time.monotonic() - started
            if killed_at is None and elapsed >= 3:
                killed.process.signal(signal.SIGKILL)
                killed.process.wait_exit(10)
                killed_at = elapsed
                cluster.sys[victim].close()
                killed_wall = time.time()
                # Commands for its devices, on a partition of broker A, while the others
                # still place them at the dead broker: to its back-channel, to wait there.
                batch = []
                for old in per[victim]:
                    for j in range(2):
                        p = f"{old.client_id}:dead:{j}".encode()
                        want[old.client_id].append(p)
                        batch.append((old.client_id, p))
                        n += 1
                cluster.produce(batch, partition=min(sets[0]))
                time.sleep(1.0)
                # Its devices reconnect to the other two (as HAProxy would send them).
                for i, old in enumerate(per[victim]):
                    old.c.c.loop_stop()
                    dev = Device(cluster.brokers[i % 2].port, old.client_id)
                    dev.got = old.got  # what it had received before
                    moved.append(dev)
                    devices[devices.index(old)] = dev
            if restarted_at is None and killed_at is not None and elapsed >= 8:
                cluster.old.append(killed)
                restarted_wall = time.time()
                cluster.brokers[victim] = cluster.start(victim)
                cluster.sys[victim] = harness.SysCounters(cluster.brokers[victim].port)
                restarted_at = elapsed
            time.sleep(0.2)
        got = {d.client_id: d.wait(want[d.client_id], timeout=60, grace=0) for d in devices}
        missing = {cid: [p for p in want[cid] if p not in got[cid]] for cid in want}
        missing = {cid: m for cid, m in missing.items() if m}
        dups = sum(c - 1 for cnt in got.values() for c in cnt.values() if c > 1)
        wrong = sum(1 for cid, cnt in got.items() for p in cnt if p not in want[cid])
        sets = cluster.wait_assigned(cluster.brokers)
        back = cluster.stable()
        waiting = cluster.back_channel(victim, killed_wall, restarted_wall)
        print(f"[redistribute] {n} commands in {seconds} s to {len(devices)} "
              f"devices; broker {killed.name} killed at {killed_at:.1f} s (its "
              f"{len(moved)} devices moved to the others), started again at "
              f"{restarted_at:.1f} s, {waiting} records waiting in its back-channel "
              f"then; missing {sum(map(len, missing.values()))}, duplicates "
              f"{dups}, misdelivered {wrong}; shared partitions now "
              f"{[sorted(s) for s in sets]}; counters since each broker's start:\n"
              f"{cluster.table(back)}")
        assert not missing, missing
        assert wrong == 0
        # The restarted broker took part again: partitions of the shared topic, records.
        assert sets[victim], sets
        # What was forwarded to it while it was dead, it read when it came back.
        assert waiting > 0, "nothing was forwarded to the dead broker: the case is not tested"
        assert back[victim]["consumed"] >= waiting, (waiting, back)
    finally:
        for dev in devices:
            dev.close()
