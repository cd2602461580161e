"""
test_router.py - mqk-router (tools/router, docs/commands.md "targeted mode") on real
Kafka: synthetic presence records and commands produced with confluent_kafka, the router
run as a process, and what it produced read back from the brokers' topics and the dead
letter topic.

  routing       commands go to the topic of the broker their target is at, unchanged (key,
                value, every header in order, repeats and binary ones, timestamp, a null
                value), each device's in order; with --target header:NAME the header names
                the target;
  start         the presence topic is read to its end before a command is routed: commands
                produced before the router started, for the last of 1,000 clients, are
                routed without being held;
  hold          a command for a device connected nowhere waits, and goes (in order) as soon
                as a presence record shows the device; after --hold it is a dead letter with
                mqk.reason "not connected" and mqk.broker "mqk-router"; no target (null or
                empty key, no header): a dead letter at once; --max-held: the oldest go
                first, "router full";
  returns       a command sent back by broker A (mqk.broker = A) while presence still says A
                waits for news of the device: a newer record at B sends it to B, one at A
                again to A (mqk.hops and mqk.broker kept as they were); sent back by B while
                presence says A, it goes to A at once; with no news it is a dead letter;
  presence      a broker's new boot invalidates its old "connected" records, "down" and a
                tombstone mean nowhere, a record of a new boot read before its "up" counts,
                and malformed records are counted and logged (rate-limited), never fatal;
  offsets       a command's offset is committed only once it is settled, in order per
                partition: after a restart with the same group, what was routed is not read
                again, a command held at the stop is read again (and routed once), and so is
                a routed one behind it in its partition; a second router joining the group
                mid-run: 200 commands routed exactly once between the two;
  arguments     bad ones exit 1 with a one-line "Error: " naming the option; a presence topic
                that does not exist too, after its bounded wait.

Kafka is the session's (conftest.py): one for this file.
"""

import json
import os
import re
import signal
import subprocess
import time

import confluent_kafka as ck
import pytest

import harness

ROUTER = os.path.join(harness.BUILD_DIR, "tools", "mqk-router")
HOLD = 2.0  # --hold, seconds
SLOW_HOLD = 8.0  # where the test looks at several topics (~1 s each) before the news comes
REASON, BY, HOPS = "mqk.reason", "mqk.broker", "mqk.hops"


def now_ms():
    return int(time.time() * 1000)


class Setup:
    """The topics of one test (presence compacted, the controller's commands, three
    brokers' topics, the dead letters), a producer, and the routers it starts."""

    def __init__(self, kafka, tools):
        self.kafka = kafka
        self.tools = tools
        t = self.tag = harness.unique("rt")
        self.presence, self.commands, self.dead = f"{t}.presence", f"{t}.commands", f"{t}.dead"
        kafka.create_topics([self.presence], 4, config={"cleanup.policy": "compact"})
        kafka.create_topics([self.commands, self.dead] + [self.topic(b) for b in "ABC"], 4)
        self.p = ck.Producer({"bootstrap.servers": kafka.bootstrap, "enable.idempotence": True,
                              "linger.ms": 0, "log_level": 3})
        self.errors = []

    def topic(self, broker):
        return f"{self.tag}.commands.{broker}"

    # ---- presence records, as the plugin writes them ----

    def produce(self, topic, **kw):
        self.p.produce(topic, on_delivery=lambda err, msg: err and self.errors.append(err), **kw)

    def _presence(self, key, value):
        self.produce(self.presence, key=key,
                     value=None if value is None else json.dumps(value).encode())

    def up(self, broker, boot, state="up"):
        self._presence(broker, {"broker": broker, "state": state, "boot": boot,
                                "timestamp": now_ms()})

    def down(self, broker, boot):
        self.up(broker, boot, state="down")

    def connected(self, broker, client, boot, ts=None):
        self._presence(f"{broker}/{client}", {"broker": broker, "client_id": client,
                                              "state": "connected", "boot": boot,
                                              "timestamp": now_ms() if ts is None else ts})

    def gone(self, broker, client):
        self._presence(f"{broker}/{client}", None)

    # ---- commands ----

    def command(self, key, value, headers=None, **kw):
        self.produce(self.commands, key=key, value=value, headers=headers or [], **kw)

    def flush(self):
        assert self.p.flush(30) == 0, "the test's producer could not deliver"
        assert not self.errors, f"the test's producer: {self.errors}"

    # ---- the router ----

    def start(self, *extra, hold=HOLD, group=None, quiet=True):
        argv = [ROUTER, "-b", self.kafka.bootstrap, "--presence", self.presence,
                "--commands", self.commands, "--broker-topic", f"{self.tag}.commands.{{broker}}",
                "--dead-letter", self.dead, "--group", group or harness.unique("router"),
                "--hold", str(hold), "-v", *(["-q"] if quiet else []), *extra]
        r = self.tools("mqk-router", argv)
        self.wait_log(r, r"presence: \S+ read to its end")
        self.wait_log(r, r"commands: consuming \S+ partitions \[0,1,2,3\]")
        return r

    @staticmethod
    def wait_log(r, pattern, timeout=30):
        def found():
            m = re.search(pattern, r.log())
            if m is None and not r.alive():
                raise harness.HarnessError(f"mqk-router exited ({r.proc.returncode}) without "
                                           f"logging /{pattern}/:\n{r.log()}")
            return m
        return harness.wait_for(found, timeout, what=f"mqk-router to log /{pattern}/")

    @staticmethod
    def stop(r, sig=signal.SIGTERM):
        """Signals the router; returns its summary (exit status 0 checked)."""
        os.kill(r.proc.pid, sig)
        rc, summary = r.wait(30)
        assert rc == 0, f"mqk-router exited {rc}:\n{r.log()}"
        assert summary is not None, r.log()
        print(json.dumps(summary))
        return summary

    def read(self, topic, expect, timeout=20.0, grace=0.5):
        return harness.read_topic(self.kafka.bootstrap, topic, expect, timeout, grace)

    def nothing_in(self, topic, seconds=1.0, but=0):
        """Waits seconds for records in topic: there must be `but` of them, no more."""
        got = self.read(topic, but + 1, timeout=seconds, grace=0)
        assert len(got) == but, f"{topic} should have {but} records: {got}"


@pytest.fixture
def rt(kafka, tools):
    return Setup(kafka, tools)


def headers_of(rec):
    return [(n, v) for n, v in rec.headers]


# ---- routing --------------------------------------------------------------------------------

def test_routes_unchanged_in_order(rt):
    rt.up("A", 1000)
    rt.up("B", 2000)
    rt.connected("A", "ue-a", 1000)
    rt.connected("B", "ue-b", 2000)
    rt.flush()
    r = rt.start()
    hdrs = [("mqtt.response_topic", b"devices/x/answers"),
            ("mqtt.correlation_data", b"\x00\xff\x01"),
            ("mqtt.user.k", b"1"), ("mqtt.user.k", b"2"), ("empty", b"")]
    ts = now_ms() - 3600 * 1000  # an hour ago: the router must keep it, not stamp its own
    for i in range(50):
        for dev in ("ue-a", "ue-b"):
            rt.command(dev, f"{dev}:{i}".encode(), hdrs, timestamp=ts + i)
    rt.command("ue-a", None)  # a null value stays null
    rt.command("ue-b", b"")   # an empty one stays empty
    rt.flush()
    a = rt.read(rt.topic("A"), 51)
    b = rt.read(rt.topic("B"), 51)
    assert [x.value for x in a] == [f"ue-a:{i}".encode() for i in range(50)] + [None]
    assert [x.value for x in b] == [f"ue-b:{i}".encode() for i in range(50)] + [b""]
    for recs, dev in ((a, b"ue-a"), (b, b"ue-b")):
        assert all(x.key == dev for x in recs)
        assert len({x.partition for x in recs}) == 1  # one key, one partition: in order
        for i, x in enumerate(recs[:50]):
            assert headers_of(x) == hdrs, x
            assert x.timestamp == ts + i and x.timestamp_type == ck.TIMESTAMP_CREATE_TIME
        assert recs[50].headers == []
    rt.nothing_in(rt.topic("C"), 0.5)
    rt.nothing_in(rt.dead, 0.5)
    s = rt.stop(r)
    assert s["records_read"] == 102 and s["routed"] == 102, s
    assert s["routed_by_broker"] == {"A": 51, "B": 51}, s
    assert s["held"] == 0 and s["dead_lettered"] == 0 and s["unsettled_at_exit"] == 0, s
    assert s["presence_records"] == 4 and s["malformed"] == 0, s
    assert s["clients_connected"] == 2 and s["brokers"]["A"] == {"state": "up", "boot": 1000}, s


def test_target_header(rt):
    rt.up("A", 1)
    rt.connected("A", "ue-h", 1)
    rt.flush()
    r = rt.start("--target", "header:device")
    rt.command(b"some-key", b"by-header", [("device", b"ue-h")])
    rt.command(b"ue-h", b"no-header")         # the key is not the target here
    rt.command(b"k", b"empty-header", [("device", b"")])
    rt.flush()
    a = rt.read(rt.topic("A"), 1)
    assert [(x.key, x.value) for x in a] == [(b"some-key", b"by-header")]
    dead = rt.read(rt.dead, 2)
    assert sorted(x.value for x in dead) == [b"empty-header", b"no-header"]
    assert all(x.header_str(REASON) == "no target" for x in dead)
    s = rt.stop(r, signal.SIGINT)
    assert s["routed"] == 1 and s["dead_lettered_by_reason"]["no target"] == 2, s


def test_presence_read_to_the_end_first(rt):
    """1,000 clients; the commands, produced before the router starts, are for the last
    ones: routed at once, none held (the table was complete before the first decision)."""
    rt.up("A", 7)
    rt.up("B", 8)
    for i in range(1000):
        rt.connected("AB"[i % 2], f"ue-{i:04d}", 7 + i % 2)
    rt.flush()
    for i in range(990, 1000):
        rt.command(f"ue-{i:04d}".encode(), f"early-{i}".encode())
    rt.flush()
    r = rt.start()
    a, b = rt.read(rt.topic("A"), 5), rt.read(rt.topic("B"), 5)
    assert sorted(x.value for x in a + b) == sorted(f"early-{i}".encode() for i in range(990, 1000))
    assert all(int(x.key[3:]) % 2 == 0 for x in a) and all(int(x.key[3:]) % 2 for x in b)
    s = rt.stop(r)
    assert s["held"] == 0 and s["routed"] == 10 and s["presence_records"] == 1002, s
    assert s["clients_connected"] == 1000, s


# ---- hold and dead letters -------------------------------------------------------------------

def test_hold_then_route_in_order(rt):
    rt.up("A", 1)
    rt.flush()
    r = rt.start(hold=30, quiet=False)
    for i in range(5):
        rt.command(b"ue-late", f"late-{i}".encode())
    rt.flush()
    rt.wait_log(r, r"hold ue-late \[\d+@\d+\]: behind its target's held commands")
    rt.nothing_in(rt.topic("A"), 1.0)
    t0 = time.monotonic()
    rt.connected("A", "ue-late", 1)
    rt.flush()
    a = rt.read(rt.topic("A"), 5)
    took = time.monotonic() - t0
    assert [x.value for x in a] == [f"late-{i}".encode() for i in range(5)]
    assert took < 10, f"routed {took:.1f} s after the presence record"
    # The live line (no -q), every 5 s.
    rt.wait_log(r, r"read 5 \(0 sent back\), routed 5, held now 0, dead letters 0", 10)
    s = rt.stop(r)
    assert s["held"] == 5 and s["routed"] == 5 and s["dead_lettered"] == 0, s
    print(f"held commands routed {took:.2f} s after the presence record was produced")


def test_dead_letters(rt):
    rt.up("A", 1)
    rt.flush()
    r = rt.start()
    hdrs = [("mqtt.correlation_data", b"\x01\x02"), ("x", b"y")]
    t0 = time.monotonic()
    rt.command(b"ue-never", b"never", hdrs)
    rt.command(None, b"null-key")
    rt.command(b"", b"empty-key")
    rt.command(b"a\x00b", b"nul-in-key")
    rt.command(b"x" * 1024, b"too-long")
    rt.flush()
    quick = rt.read(rt.dead, 4, timeout=HOLD * 0.75, grace=0)
    assert sorted((x.value, x.header_str(REASON)) for x in quick) == sorted([
        (b"empty-key", "no target"), (b"null-key", "no target"),
        (b"nul-in-key", "bad target"), (b"too-long", "bad target")])
    late = [x for x in rt.read(rt.dead, 5, timeout=HOLD + 10) if x.value == b"never"]
    took = time.monotonic() - t0
    assert len(late) == 1, late
    d = late[0]
    assert d.key == b"ue-never"
    assert headers_of(d) == hdrs + [(REASON, b"not connected"), (BY, b"mqk-router")]
    assert HOLD - 0.2 <= took <= HOLD + 10, took
    s = rt.stop(r)
    assert s["dead_lettered"] == 5 and s["routed"] == 0, s
    assert s["dead_lettered_by_reason"] == {"no target": 2, "bad target": 2,
                                            "not connected": 1, "router full": 0,
                                            "bad topic": 0}, s


def test_max_held(rt):
    r = rt.start("--max-held", "3", hold=30)
    for i in range(5):  # one partition: the router reads them in this order
        rt.command(f"ue-{i}".encode(), f"c{i}".encode(), partition=0)
    rt.flush()
    full = rt.read(rt.dead, 2, timeout=10)
    assert sorted(x.value for x in full) == [b"c0", b"c1"], full  # the oldest two
    assert all(x.header_str(REASON) == "router full" for x in full)
    # The three still held go as soon as their devices show up.
    rt.up("C", 5)
    for i in range(2, 5):
        rt.connected("C", f"ue-{i}", 5)
    rt.flush()
    c = rt.read(rt.topic("C"), 3)
    assert sorted(x.value for x in c) == [b"c2", b"c3", b"c4"]
    s = rt.stop(r)
    assert s["dead_lettered_by_reason"]["router full"] == 2 and s["routed"] == 3, s


# ---- commands sent back by a broker ------------------------------------------------------------

def test_returned_commands(rt):
    rt.up("A", 10)
    rt.up("B", 20)
    before = now_ms() - 5000  # the devices connected before the commands came back
    for dev in ("ue-move", "ue-back", "ue-stuck", "ue-other"):
        rt.connected("A", dev, 10, ts=before)
    rt.flush()
    r = rt.start(hold=SLOW_HOLD)
    back = lambda by: [(BY, by), (HOPS, b"1"), ("mqtt.user.k", b"v")]  # noqa: E731
    rt.command(b"ue-move", b"move", back(b"A"))
    rt.command(b"ue-back", b"back", back(b"A"))
    rt.command(b"ue-stuck", b"stuck", back(b"A"))
    rt.command(b"ue-other", b"other", back(b"B"))  # B sent it back, presence says A: go
    rt.flush()
    a = rt.read(rt.topic("A"), 1)
    assert [x.value for x in a] == [b"other"]
    assert headers_of(a[0]) == back(b"B")  # nothing stripped, nothing added
    rt.wait_log(r, r"hold ue-stuck \[\d+@\d+\]: sent back, and presence has no news")
    time.sleep(0.5)
    rt.nothing_in(rt.topic("A"), 0.5, but=1)  # the three others still wait
    # News: ue-move is at B now; ue-back connected to A again.
    rt.connected("B", "ue-move", 20)
    rt.connected("A", "ue-back", 10)
    rt.flush()
    b = rt.read(rt.topic("B"), 1)
    assert [(x.key, x.value) for x in b] == [(b"ue-move", b"move")]
    assert headers_of(b[0]) == back(b"A")  # mqk.hops as it was: the plugin counts
    a = rt.read(rt.topic("A"), 2)
    assert sorted(x.value for x in a) == [b"back", b"other"]
    # No news of ue-stuck: a dead letter after --hold, mqk.broker now the router's.
    dead = rt.read(rt.dead, 1, timeout=SLOW_HOLD + 10)
    assert [x.value for x in dead] == [b"stuck"]
    assert headers_of(dead[0]) == [(HOPS, b"1"), ("mqtt.user.k", b"v"),
                                   (REASON, b"not connected"), (BY, b"mqk-router")]
    s = rt.stop(r)
    assert s["returns_read"] == 4 and s["routed"] == 3 and s["held"] == 3, s
    assert s["routed_by_broker"] == {"A": 2, "B": 1}, s


# ---- the presence rules ----------------------------------------------------------------------

def test_presence_rules(rt):
    rt.up("A", 100)
    rt.connected("A", "ue-crash", 100)    # A crashes: no tombstone
    rt.connected("A", "ue-left", 100)
    rt.gone("A", "ue-left")               # left
    rt.up("B", 200)
    rt.connected("B", "ue-down", 200)
    rt.down("B", 200)                     # B stopped cleanly
    rt.up("C", 300)
    rt.connected("C", "ue-new", 400)      # C restarted; its "up" comes later
    rt.flush()
    r = rt.start("-v", hold=SLOW_HOLD)
    rt.up("A", 101)                       # A is back with a new boot
    rt.flush()
    rt.wait_log(r, r'presence: A \{.*"boot": 101')
    for dev in ("ue-crash", "ue-left", "ue-down", "ue-new"):
        rt.command(dev.encode(), dev.encode())
    rt.flush()
    c = rt.read(rt.topic("C"), 1)
    assert [x.value for x in c] == [b"ue-new"]
    rt.nothing_in(rt.topic("A"), 0.5)
    rt.nothing_in(rt.topic("B"), 0.5)
    # ue-crash reconnects to A's new run: its held command goes there.
    rt.connected("A", "ue-crash", 101)
    rt.flush()
    a = rt.read(rt.topic("A"), 1)
    assert [x.value for x in a] == [b"ue-crash"]
    dead = rt.read(rt.dead, 2, timeout=SLOW_HOLD + 10)
    assert sorted(x.value for x in dead) == [b"ue-down", b"ue-left"]
    assert all(x.header_str(REASON) == "not connected" for x in dead)
    s = rt.stop(r)
    assert s["routed_by_broker"] == {"A": 1, "C": 1}, s
    assert s["brokers"] == {"A": {"state": "up", "boot": 101}, "B": {"state": "down", "boot": 200},
                            "C": {"state": "up", "boot": 400}}, s
    assert s["clients_connected"] == 2, s


def test_malformed_presence(rt):
    rt.up("A", 1)
    bad = [(b"A/x", b"not json"), (b"A/x", b"[]"), (b"", b"{}"), (b"A", None),
           (b"A/y", json.dumps({"broker": "B", "client_id": "y", "state": "connected",
                                "boot": 1, "timestamp": 1}).encode()),
           (b"A/z", json.dumps({"broker": "A", "client_id": "z", "state": "connected",
                                "boot": "1", "timestamp": 1}).encode())]
    for k, v in bad:
        rt.produce(rt.presence, key=k, value=v)
    rt.connected("A", "ue-ok", 1)
    rt.flush()
    r = rt.start()
    rt.command(b"ue-ok", b"still works")
    rt.flush()
    assert [x.value for x in rt.read(rt.topic("A"), 1)] == [b"still works"]
    s = rt.stop(r)
    assert s["malformed"] == len(bad) and s["presence_records"] == len(bad) + 2, s
    # Logged, at most one line per 10 s: the first one, with the count of the rest later.
    lines = re.findall(r"presence: malformed record at .*", r.log())
    assert len(lines) == 1, r.log()


# ---- offsets -----------------------------------------------------------------------------

def test_offsets_committed_when_settled(rt):
    """Partition 0: a command held at the stop, then a routed one; partition 1: routed
    ones. After a restart of the group: partition 0 is read again from the held command
    (which is routed once its device shows up; the routed one behind it goes again), and
    partition 1 not at all."""
    rt.up("A", 1)
    rt.connected("A", "ue-here", 1)
    rt.flush()
    group = harness.unique("router")
    r = rt.start(group=group, hold=60)
    rt.command(b"ue-later", b"held", partition=0)
    rt.command(b"ue-here", b"p0-after", partition=0)
    for i in range(10):
        rt.command(b"ue-here", f"p1-{i}".encode(), partition=1)
    rt.flush()
    first = rt.read(rt.topic("A"), 11)
    assert sorted(x.value for x in first) == sorted([b"p0-after"] + [f"p1-{i}".encode()
                                                                     for i in range(10)])
    time.sleep(2.5)  # auto commit every second
    s = rt.stop(r)
    assert s["routed"] == 11 and s["held"] == 1, s
    assert s["unsettled_at_exit"] == 1, s  # the held one: not committed

    r = rt.start(group=group, hold=60)
    rt.connected("A", "ue-later", 1)
    rt.flush()
    all_a = rt.read(rt.topic("A"), 13)
    values = [x.value for x in all_a]
    assert values.count(b"held") == 1, values
    assert values.count(b"p0-after") == 2, values  # behind the held one: read again
    assert all(values.count(f"p1-{i}".encode()) == 1 for i in range(10)), values
    s = rt.stop(r)
    assert s["records_read"] == 2 and s["routed"] == 2, s


def test_two_routers_share_the_commands(rt):
    """A second router of the group mid-run: a rebalance, the first commits what it routed
    before giving partitions up, and 200 commands reach broker A exactly once between them."""
    rt.up("A", 1)
    for i in range(20):
        rt.connected("A", f"ue-{i}", 1)
    rt.flush()
    group = harness.unique("router")
    r1 = rt.start(group=group)
    for i in range(100):
        rt.command(f"ue-{i % 20}".encode(), f"first-{i}".encode())
    rt.flush()
    assert len(rt.read(rt.topic("A"), 100)) == 100
    r2 = rt.tools("mqk-router", [ROUTER, "-b", rt.kafka.bootstrap, "--presence", rt.presence,
                                 "--commands", rt.commands, "--broker-topic",
                                 f"{rt.tag}.commands.{{broker}}", "--dead-letter", rt.dead,
                                 "--group", group, "-q"])
    rt.wait_log(r2, r"commands: consuming \S+ partitions \[\d")
    rt.wait_log(r1, r"(?m)commands: consuming \S+ partitions \[\d(,\d)?\]$")  # its share
    for i in range(100):
        rt.command(f"ue-{i % 20}".encode(), f"second-{i}".encode())
    rt.flush()
    a = rt.read(rt.topic("A"), 200, grace=1.0)
    values = sorted(x.value for x in a)
    assert values == sorted([f"first-{i}".encode() for i in range(100)]
                            + [f"second-{i}".encode() for i in range(100)]), len(values)
    s1, s2 = rt.stop(r1), rt.stop(r2)
    assert s1["routed"] + s2["routed"] == 200 and s2["routed"] > 0, (s1, s2)
    assert "partitions [0,1,2,3] given up" in r1.log()


# ---- arguments ---------------------------------------------------------------------------

@pytest.mark.parametrize("args,message", [
    ([], "--bootstrap is required"),
    (["-b", "x:1", "--hold", "soon"], "--hold: 'soon' is not a number of seconds"),
    (["-b", "x:1", "--hold", "-1"], "--hold: '-1'"),
    (["-b", "x:1", "--max-held", "0"], "--max-held: '0'"),
    (["-b", "x:1", "--flush-timeout", "x"], "--flush-timeout: 'x'"),
    (["-b", "x:1", "--broker-topic", "cmds"], "--broker-topic: 'cmds' is not a Kafka topic name "
                                              "with {broker}"),
    (["-b", "x:1", "--broker-topic", "a b.{broker}"], "--broker-topic: 'a b.{broker}'"),
    (["-b", "x:1", "--target", "header:"], "--target: 'header:' is not key or header:NAME"),
    (["-b", "x:1", "--presence", "bad/topic"], "--presence: 'bad/topic' is not a Kafka topic"),
    (["-b", "x:1", "--commands", ""], "--commands: '' is not a Kafka topic"),
    (["-b", "x:1", "--dead-letter", "mqtt-commands"], "--dead-letter: 'mqtt-commands' is also "
                                                      "--commands"),
    (["-b", "x:1", "-X", "novalue"], "-X: 'novalue' is not name=value"),
    (["-b", "x:1", "-X", "nonsense.property=1"], "No such configuration property"),
    (["-b", "x:1", "extra"], "unexpected argument 'extra'"),
])
def test_bad_arguments(args, message):
    out = subprocess.run([ROUTER, *args], capture_output=True, text=True, timeout=30)
    assert out.returncode == 1, (args, out.returncode, out.stderr)
    assert out.stderr.startswith("Error: ") and message in out.stderr, out.stderr
    assert out.stderr.count("\n") == 1 and out.stdout == "", out.stderr


def test_help_version_and_missing_presence_topic(kafka):
    out = subprocess.run([ROUTER, "-h"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0 and out.stdout.startswith("Usage: mqk-router")
    assert "(default mqtt-commands.{broker})" in out.stdout
    out = subprocess.run([ROUTER, "-V"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0 and re.match(r"mqk-router \S+ \(librdkafka 2\.", out.stdout)
    missing = harness.unique("no-such-presence")
    t0 = time.monotonic()
    out = subprocess.run([ROUTER, "-b", kafka.bootstrap, "--presence", missing, "-q"],
                         capture_output=True, text=True, timeout=60)
    took = time.monotonic() - t0
    assert out.returncode == 1, out.stderr
    assert f"Error: --presence: topic {missing}: " in out.stderr, out.stderr
    assert "Unknown topic" in out.stderr and out.stdout == "", out.stderr
    assert took < 30, took
